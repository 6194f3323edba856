"""Many backends from Python, written as grpcio code: three real grpcio
servers on 127.0.0.1, .2 and .3; round_robin chosen by
``grpc.lb_policy_name`` or by the service config spreads calls evenly
(the servers say who answered: ``fill_server_id``); a killed server's share
goes to the others; per-method service config settings apply; an invalid
config is refused. The spreading test runs the same code on grpcio's own
client too, so the two are compared on one run."""

import collections
import json
import time
import warnings

import grpc
import pytest

import rgrpc

HOSTS = ("127.0.0.1", "127.0.0.2", "127.0.0.3")


@pytest.fixture
def three(make_server):
    servers = [make_server(extra=("--host", h, "--server_id", "s%d" % (i + 1)))
               for i, h in enumerate(HOSTS)]
    target = "ipv4:" + ",".join("%s:%d" % (h, s.port) for h, s in zip(HOSTS, servers))
    return servers, target


def answer(stub, pb, **kw):
    kw.setdefault("wait_for_ready", True)
    kw.setdefault("timeout", 10)
    return stub.UnaryCall(pb.messages_pb2.SimpleRequest(fill_server_id=True), **kw).server_id


def warm_up(stub, pb):
    """Calls until every server has answered (all connected)."""
    seen = set()
    for _ in range(300):
        seen.add(answer(stub, pb))
        if len(seen) == len(HOSTS):
            return
    raise AssertionError("not every server answered: %s" % sorted(seen))


RR_OPTIONS = [
    [("grpc.lb_policy_name", "round_robin")],
    [("grpc.service_config", json.dumps({"loadBalancingConfig": [{"round_robin": {}}]}))],
]


@pytest.mark.parametrize("client", ["rgrpc", "grpcio"])
@pytest.mark.parametrize("options", RR_OPTIONS, ids=["lb_policy_name", "service_config"])
def test_round_robin_spreads_3000_calls_evenly(three, pb, client, options):
    _, target = three
    module = rgrpc if client == "rgrpc" else grpc
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "option ignored" warning any more
        ch = module.insecure_channel(target, options=options)
    with ch:
        stub = pb.test_pb2_grpc.TestServiceStub(ch)
        warm_up(stub, pb)
        counts = collections.Counter(answer(stub, pb) for _ in range(3000))
    print("%s, round_robin: %s" % (client, dict(sorted(counts.items()))))
    assert sorted(counts) == ["s1", "s2", "s3"]
    for sid, n in counts.items():
        assert 950 <= n <= 1050, counts


def test_pick_first_is_the_default(three, pb):
    _, target = three
    with rgrpc.insecure_channel(target) as ch:
        stub = pb.test_pb2_grpc.TestServiceStub(ch)
        assert {answer(stub, pb) for _ in range(30)} == {"s1"}


def test_a_killed_server_s_share_goes_to_the_others(three, pb):
    servers, target = three
    opts = [("grpc.lb_policy_name", "round_robin"), ("grpc.initial_reconnect_backoff_ms", 200)]
    with rgrpc.insecure_channel(target, options=opts) as ch:
        stub = pb.test_pb2_grpc.TestServiceStub(ch)
        warm_up(stub, pb)
        servers[1].proc.kill()
        servers[1].proc.wait()
        # Wait-for-ready calls made after the kill all succeed on the others.
        counts = collections.Counter(answer(stub, pb) for _ in range(300))
        assert set(counts) == {"s1", "s3"}, counts
        assert min(counts.values()) >= 130, counts


def test_the_snapshot_shows_a_killed_server(three, pb):
    servers, target = three
    opts = [("grpc.lb_policy_name", "round_robin"), ("grpc.initial_reconnect_backoff_ms", 5000)]
    ch = rgrpc.intercept_channel(rgrpc.insecure_channel(target, options=opts))
    stub = pb.test_pb2_grpc.TestServiceStub(ch)
    warm_up(stub, pb)
    snap = rgrpc.channel_snapshot(ch)
    assert snap["policy"] == "round_robin" and snap["state"] == "READY"
    assert snap["calls"]["failed"] == 0 and snap["calls"]["active"] == 0
    assert snap["calls"]["succeeded"] == snap["calls"]["started"] >= 3
    addresses = ["ipv4:%s" % a for a in target[len("ipv4:"):].split(",")]
    assert snap["resolution"]["addresses"] == addresses
    assert [s["state"] for s in snap["subchannels"]] == ["READY"] * 3
    servers[1].proc.kill()
    servers[1].proc.wait()
    deadline = time.monotonic() + 5
    while True:
        sc = rgrpc.channel_snapshot(ch)["subchannels"][1]
        if sc["breaks"] == 1 and sc["state"] != "READY" and sc["last_failure"]:
            break
        assert time.monotonic() < deadline, sc
        time.sleep(0.02)
    assert sc["address"] == addresses[1]
    with pytest.raises(TypeError):
        rgrpc.channel_snapshot(object())
    ch.close()


def test_service_config_method_settings(server, pb):
    config = {
        "methodConfig": [
            {"name": [{"service": "grpc.testing.TestService", "method": "UnaryCall"}],
             "timeout": "0.3s", "maxRequestMessageBytes": 1000},
        ]
    }
    opts = [("grpc.service_config", json.dumps(config))]
    with rgrpc.insecure_channel(server.target, options=opts) as ch:
        stub = pb.test_pb2_grpc.TestServiceStub(ch)
        req = pb.messages_pb2.SimpleRequest(response_size=1)
        with pytest.raises(rgrpc.RpcError) as e:
            stub.UnaryCall(req, metadata=(("x-rgrpc-sleep-ms", "3000"),))
        assert e.value.code() == rgrpc.StatusCode.DEADLINE_EXCEEDED
        big = pb.messages_pb2.SimpleRequest(
            response_size=1, payload=pb.messages_pb2.Payload(body=b"\0" * 2000))
        with pytest.raises(rgrpc.RpcError) as e:
            stub.UnaryCall(big, timeout=10)
        assert e.value.code() == rgrpc.StatusCode.RESOURCE_EXHAUSTED
        assert stub.UnaryCall(req, timeout=10).payload.body == b"\0"


def test_an_invalid_service_config_is_refused_with_its_path(server):
    bad = json.dumps({"methodConfig": [{"name": [{}], "timeout": "soon"}]})
    with pytest.raises(ValueError) as e:
        rgrpc.insecure_channel(server.target, options=[("grpc.service_config", bad)])
    assert "$.methodConfig[0].timeout" in str(e.value)


def test_dns_min_time_and_http_proxy_options_are_taken(server, pb):
    opts = [("grpc.dns_min_time_between_resolutions_ms", 1000),
            ("grpc.enable_http_proxy", 0)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with rgrpc.insecure_channel(server.target, options=opts) as ch:
            stub = pb.test_pb2_grpc.TestServiceStub(ch)
            assert stub.EmptyCall(pb.empty_pb2.Empty(), timeout=10) == pb.empty_pb2.Empty()


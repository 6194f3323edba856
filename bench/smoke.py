#!/usr/bin/env python3
"""Smoke test of rgrpc_bench (run by ctest as bench_smoke, not a benchmark).

    smoke.py RGRPC_BENCH HOST:PORT

Runs every scenario with small counts against a BenchmarkService (in CI the
grpcio test server of cbindings-tests/interop_server.py, started by
with_server.py) and checks the exit code and the JSON line: the measured
count, the fields each scenario must fill, the sizes echoed back. Catches a
client that hangs (each run is bounded by a timeout) or reports nonsense;
says nothing about speed.
"""
import json
import os
import subprocess
import sys

FIELDS = ["scenario", "calls", "seconds", "p50_us", "p90_us", "p99_us", "qps", "msgs_per_s",
          "MB_per_s", "cpu_user_s", "cpu_sys_s", "max_rss_kb", "concurrency", "req_size",
          "resp_size"]

# (scenario, extra flags, fields that must be numbers > 0, fields that must be null)
CASES = [
    ("unary_lat", [], ["p50_us", "p99_us", "qps"], ["msgs_per_s"]),
    ("pingpong_lat", ["--req-size", "10", "--resp-size", "20"], ["p50_us", "qps"], ["msgs_per_s"]),
    ("unary_tput", ["--concurrency", "8"], ["p50_us", "qps"], ["msgs_per_s"]),
    ("server_stream", [], ["msgs_per_s"], ["p50_us", "qps"]),
    ("server_stream", ["--resp-size", "1024"], ["msgs_per_s"], ["p50_us", "qps"]),
    ("client_stream", [], ["msgs_per_s"], ["p50_us", "qps"]),
    ("client_stream", ["--req-size", "1024"], ["msgs_per_s"], ["p50_us", "qps"]),
    ("large_unary", ["--req-size", "100000", "--resp-size", "200000", "--calls", "5"],
     ["p50_us", "qps", "MB_per_s"], ["msgs_per_s"]),
]


def run(bench, host, port, scenario, flags, env_extra=None):
    args = [bench, "--host", host, "--port", port, "--scenario", scenario,
            "--calls", "50", "--warmup", "5", "--duration", "20"] + flags
    env = dict(os.environ, **(env_extra or {}))
    p = subprocess.run(args, capture_output=True, text=True, timeout=60, env=env)
    if p.returncode != 0:
        raise AssertionError(f"{' '.join(args)}: exit {p.returncode}: {p.stderr.strip()}")
    return json.loads(p.stdout)


def main():
    bench, target = sys.argv[1], sys.argv[2]
    host, port = target.rsplit(":", 1)
    failures = 0
    runs = [(sc, fl, pos, null, None) for sc, fl, pos, null in CASES]
    # unary_tput's other two ways of keeping calls in flight
    runs += [("unary_tput", ["--concurrency", "8"], ["qps"], [], {"RGRPC_BENCH_TPUT": m})
             for m in ("async_pool", "threads")]
    # server_stream's recv loop (push mode is the default)
    runs += [("server_stream", fl, ["msgs_per_s"], ["p50_us", "qps"], {"RGRPC_BENCH_STREAM": "pull"})
             for fl in ([], ["--resp-size", "1024"])]
    for scenario, flags, positive, null, env in runs:
        name = " ".join([scenario] + flags + [f"{k}={v}" for k, v in (env or {}).items()])
        try:
            r = run(bench, host, port, scenario, flags, env)
            assert list(r) == FIELDS, f"fields {list(r)}"
            assert r["scenario"] == scenario, r["scenario"]
            want = int(flags[flags.index("--calls") + 1]) if "--calls" in flags else 50
            assert r["calls"] == want, f"calls {r['calls']} != {want}"
            for f in positive:
                assert isinstance(r[f], (int, float)) and r[f] > 0, f"{f} = {r[f]}"
            for f in null:
                assert r[f] is None, f"{f} = {r[f]} (expected null)"
            for f in ("req_size", "resp_size"):
                if f"--{f.replace('_', '-')}" in flags:
                    want = int(flags[flags.index(f"--{f.replace('_', '-')}") + 1])
                    assert r[f] == want, f"{f} {r[f]} != {want}"
            print(f"ok   {name}: {json.dumps(r)}")
        except (AssertionError, subprocess.TimeoutExpired, json.JSONDecodeError) as e:
            failures += 1
            print(f"FAIL {name}: {e}")
    # A scenario the client does not implement: exit code 3.
    p = subprocess.run([bench, "--host", host, "--port", port, "--scenario", "no_such"],
                       capture_output=True, timeout=30)
    if p.returncode != 3:
        failures += 1
        print(f"FAIL unknown scenario: exit {p.returncode} (expected 3)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

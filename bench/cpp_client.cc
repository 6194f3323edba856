// cpp_client: the reference client of the suite, on gRPC C++ / C-core
// (Debian's libgrpc++-dev). Same command line, output and exit codes as
// rgrpc_bench (bench_common.h).
//
// unary_lat, large_unary, pingpong_lat, server_stream, client_stream use the
// synchronous API (the caller's thread drives C-core's poller while it
// waits); unary_tput uses the async API: --concurrency calls in flight on
// one CompletionQueue driven by the main thread.
#include <grpc/testing/benchmark_service.grpc.pb.h>
#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>
#include <vector>

#include "bench_common.h"

using grpc::ClientContext;
using grpc::Status;
using grpc::testing::BenchmarkService;
using grpc::testing::SimpleRequest;
using grpc::testing::SimpleResponse;

namespace {

bench_args A;

bool CheckResponse(const SimpleResponse& r) {
  size_t got = r.has_payload() ? r.payload().body().size() : 0;
  if (got != static_cast<size_t>(A.resp_size)) {
    fprintf(stderr, "cpp_client: response payload %zu bytes, expected %ld\n", got, A.resp_size);
    return false;
  }
  return true;
}

int Fail(const char* what, const Status& s) {
  fprintf(stderr, "cpp_client: %s: %d %s\n", what, static_cast<int>(s.error_code()),
          s.error_message().c_str());
  return BENCH_EXIT_FAILED;
}

int RunUnaryBlocking(BenchmarkService::Stub* stub, const SimpleRequest& req, bench_result* res) {
  long total = A.warmup + A.calls;
  for (long i = 0; i < total; i++) {
    if (i == A.warmup) bench_start(res);
    uint64_t t0 = bench_now_ns();
    ClientContext ctx;
    SimpleResponse resp;
    Status s = stub->UnaryCall(&ctx, req, &resp);
    if (!s.ok()) return Fail("UnaryCall", s);
    if (!CheckResponse(resp)) return BENCH_EXIT_FAILED;
    uint64_t t1 = bench_now_ns();
    if (i >= A.warmup) {
      bench_record(res, t1 - t0);
      res->ops++;
      if (bench_expired(res, A.duration, t1)) break;
    }
  }
  bench_stop(res);
  return 0;
}

int RunPingPong(BenchmarkService::Stub* stub, const SimpleRequest& req, bench_result* res) {
  ClientContext ctx;
  auto stream = stub->StreamingCall(&ctx);
  long total = A.warmup + A.calls;
  SimpleResponse resp;
  for (long i = 0; i < total; i++) {
    if (i == A.warmup) bench_start(res);
    uint64_t t0 = bench_now_ns();
    if (!stream->Write(req) || !stream->Read(&resp)) return Fail("StreamingCall", stream->Finish());
    if (!CheckResponse(resp)) return BENCH_EXIT_FAILED;
    uint64_t t1 = bench_now_ns();
    if (i >= A.warmup) {
      bench_record(res, t1 - t0);
      res->ops++;
      if (bench_expired(res, A.duration, t1)) break;
    }
  }
  bench_stop(res);
  stream->WritesDone();
  Status s = stream->Finish();
  if (!s.ok()) return Fail("StreamingCall finish", s);
  return 0;
}

struct Slot {
  std::unique_ptr<ClientContext> ctx;
  std::unique_ptr<grpc::ClientAsyncResponseReader<SimpleResponse>> rpc;
  SimpleResponse resp;
  Status status;
  uint64_t t0 = 0;
};

int RunUnaryTput(BenchmarkService::Stub* stub, const SimpleRequest& req, bench_result* res) {
  grpc::CompletionQueue cq;
  std::vector<Slot> slots(static_cast<size_t>(A.concurrency));
  long issued = 0, completed = 0, inflight = 0;
  bool measuring = A.warmup == 0, done = false;
  const long total = A.warmup + A.calls;
  auto issue = [&](Slot* s) {
    s->ctx.reset(new ClientContext());
    s->resp.Clear();
    s->t0 = bench_now_ns();
    s->rpc = stub->PrepareAsyncUnaryCall(s->ctx.get(), req, &cq);
    s->rpc->StartCall();
    s->rpc->Finish(&s->resp, &s->status, s);
    issued++;
    inflight++;
  };
  if (measuring) bench_start(res);
  for (auto& s : slots)
    if (issued < total) issue(&s);
  int ret = 0;
  while (inflight > 0) {
    void* tag;
    bool ok;
    if (!cq.Next(&tag, &ok)) break;
    Slot* s = static_cast<Slot*>(tag);
    uint64_t now = bench_now_ns();
    inflight--;
    completed++;
    if (!ok || !s->status.ok()) {
      ret = Fail("UnaryCall (async)", s->status);
      done = true;
    } else if (!CheckResponse(s->resp)) {
      ret = BENCH_EXIT_FAILED;
      done = true;
    }
    if (!done) {
      if (measuring) {
        bench_record(res, now - s->t0);
        res->ops++;
        if (res->ops >= A.calls || bench_expired(res, A.duration, now)) {
          done = true;
          bench_stop(res);
        }
      } else if (completed >= A.warmup) {
        measuring = true;
        bench_start(res);
      }
    }
    if (!done && issued < total) issue(s);
  }
  if (!done && !ret) bench_stop(res);
  cq.Shutdown();
  void* tag;
  bool ok;
  while (cq.Next(&tag, &ok)) {
  }
  return ret;
}

int RunServerStream(BenchmarkService::Stub* stub, const SimpleRequest& req, bench_result* res) {
  ClientContext ctx;
  auto reader = stub->StreamingFromServer(&ctx, req);
  SimpleResponse resp;
  long total = A.warmup + A.calls;
  if (A.warmup == 0) bench_start(res);
  for (long i = 0; i < total; i++) {
    if (!reader->Read(&resp)) return Fail("StreamingFromServer", reader->Finish());
    if (!CheckResponse(resp)) return BENCH_EXIT_FAILED;
    if (i + 1 == A.warmup) {
      bench_start(res);
    } else if (i >= A.warmup) {
      res->ops++;
      if ((res->ops & 255) == 0 && bench_expired(res, A.duration, bench_now_ns())) break;
    }
  }
  bench_stop(res);
  ctx.TryCancel();
  reader->Finish();
  return 0;
}

// One StreamingFromClient call of `count` messages (fewer once `res` is
// measuring and --duration passes). Returns the number sent, or -1.
long ClientStreamCall(BenchmarkService::Stub* stub, const SimpleRequest& req, long count,
                      bench_result* res) {
  ClientContext ctx;
  SimpleResponse resp;
  auto writer = stub->StreamingFromClient(&ctx, &resp);
  long sent = 0;
  for (; sent < count; sent++) {
    if (!writer->Write(req)) break;
    if (res && (sent & 255) == 255 && bench_expired(res, A.duration, bench_now_ns())) {
      sent++;
      break;
    }
  }
  writer->WritesDone();
  Status s = writer->Finish();
  if (!s.ok()) {
    Fail("StreamingFromClient", s);
    return -1;
  }
  if (!CheckResponse(resp)) return -1;
  return sent;
}

int RunClientStream(BenchmarkService::Stub* stub, const SimpleRequest& req, bench_result* res) {
  if (A.warmup > 0 && ClientStreamCall(stub, req, A.warmup, nullptr) < 0) return BENCH_EXIT_FAILED;
  bench_start(res);
  long sent = ClientStreamCall(stub, req, A.calls, res);
  bench_stop(res);
  if (sent < 0) return BENCH_EXIT_FAILED;
  res->ops = sent;
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  int rc = bench_parse_args(argc, argv, &A);
  if (rc) return rc;
  if (A.scenario == SC_UNKNOWN) {
    fprintf(stderr, "cpp_client: scenario %s not implemented\n", A.scenario_name);
    return BENCH_EXIT_UNIMPLEMENTED;
  }
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(-1);
  args.SetMaxSendMessageSize(-1);
  auto channel = grpc::CreateCustomChannel(std::string(A.host) + ":" + std::to_string(A.port),
                                           grpc::InsecureChannelCredentials(), args);
  auto stub = BenchmarkService::NewStub(channel);

  SimpleRequest req;
  req.set_response_size(static_cast<int32_t>(A.resp_size));
  req.mutable_payload()->mutable_body()->assign(static_cast<size_t>(A.req_size), '\0');

  bench_result res;
  bool record = A.scenario != SC_SERVER_STREAM && A.scenario != SC_CLIENT_STREAM;
  if (bench_result_init(&res, A.calls, record)) return BENCH_EXIT_FAILED;
  switch (A.scenario) {
    case SC_UNARY_LAT:
    case SC_LARGE_UNARY: rc = RunUnaryBlocking(stub.get(), req, &res); break;
    case SC_PINGPONG_LAT: rc = RunPingPong(stub.get(), req, &res); break;
    case SC_UNARY_TPUT: rc = RunUnaryTput(stub.get(), req, &res); break;
    case SC_SERVER_STREAM: rc = RunServerStream(stub.get(), req, &res); break;
    case SC_CLIENT_STREAM: rc = RunClientStream(stub.get(), req, &res); break;
    default: rc = BENCH_EXIT_UNIMPLEMENTED; break;
  }
  if (rc == 0) {
    res.bytes = static_cast<double>(res.ops) * bench_bytes_per_op(&A);
    bench_report(&A, &res);
  }
  free(res.lat_ns);
  return rc;
}

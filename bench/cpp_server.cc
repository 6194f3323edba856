// cpp_server: grpc.testing.BenchmarkService on gRPC C++ (Debian's
// libgrpc++-dev), callback API. The peer every client of the suite talks to.
//
//   cpp_server [--port N]     (0: any free port; default 50051)
//
// Listens on 127.0.0.1 only and prints "LISTENING <port>" once it serves.
// Behaviour (as gRPC's own qps server):
//   UnaryCall            responds with a payload of request.response_size bytes
//   StreamingCall        one such response per request, in turn
//   StreamingFromClient  reads until the client half-closes, then one response
//                        sized by the last request
//   StreamingFromServer  writes responses sized by the request until the
//                        client cancels
//   StreamingBothWays    not implemented
#include <grpc/testing/benchmark_service.grpc.pb.h>
#include <grpcpp/grpcpp.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>

using grpc::CallbackServerContext;
using grpc::Status;
using grpc::testing::SimpleRequest;
using grpc::testing::SimpleResponse;

namespace {

void FillResponse(const SimpleRequest& req, SimpleResponse* resp) {
  if (req.response_size() > 0)
    resp->mutable_payload()->mutable_body()->assign(static_cast<size_t>(req.response_size()), '\0');
  else
    resp->Clear();
}

class PingPong final : public grpc::ServerBidiReactor<SimpleRequest, SimpleResponse> {
 public:
  PingPong() { StartRead(&req_); }
  void OnReadDone(bool ok) override {
    if (!ok) {
      Finish(Status::OK);
      return;
    }
    FillResponse(req_, &resp_);
    StartWrite(&resp_);
  }
  void OnWriteDone(bool ok) override {
    if (!ok) {
      Finish(Status(grpc::StatusCode::UNKNOWN, "write failed"));
      return;
    }
    StartRead(&req_);
  }
  void OnDone() override { delete this; }

 private:
  SimpleRequest req_;
  SimpleResponse resp_;
};

class FromClient final : public grpc::ServerReadReactor<SimpleRequest> {
 public:
  explicit FromClient(SimpleResponse* resp) : resp_(resp) { StartRead(&req_); }
  void OnReadDone(bool ok) override {
    if (ok) {
      last_size_ = req_.response_size();
      StartRead(&req_);
      return;
    }
    SimpleRequest last;
    last.set_response_size(last_size_);
    FillResponse(last, resp_);
    Finish(Status::OK);
  }
  void OnDone() override { delete this; }

 private:
  SimpleRequest req_;
  SimpleResponse* resp_;
  int32_t last_size_ = 0;
};

class FromServer final : public grpc::ServerWriteReactor<SimpleResponse> {
 public:
  FromServer(CallbackServerContext* ctx, const SimpleRequest& req) : ctx_(ctx) {
    FillResponse(req, &resp_);
    StartWrite(&resp_);
  }
  void OnWriteDone(bool ok) override {
    if (ok && !ctx_->IsCancelled()) {
      StartWrite(&resp_);
      return;
    }
    Finish(Status::OK);
  }
  void OnDone() override { delete this; }

 private:
  CallbackServerContext* ctx_;
  SimpleResponse resp_;
};

class Service final : public grpc::testing::BenchmarkService::CallbackService {
  grpc::ServerUnaryReactor* UnaryCall(CallbackServerContext* ctx, const SimpleRequest* req,
                                      SimpleResponse* resp) override {
    FillResponse(*req, resp);
    auto* r = ctx->DefaultReactor();
    r->Finish(Status::OK);
    return r;
  }
  grpc::ServerBidiReactor<SimpleRequest, SimpleResponse>* StreamingCall(CallbackServerContext*) override {
    return new PingPong();
  }
  grpc::ServerReadReactor<SimpleRequest>* StreamingFromClient(CallbackServerContext*,
                                                              SimpleResponse* resp) override {
    return new FromClient(resp);
  }
  grpc::ServerWriteReactor<SimpleResponse>* StreamingFromServer(CallbackServerContext* ctx,
                                                                const SimpleRequest* req) override {
    return new FromServer(ctx, *req);
  }
};

}  // namespace

int main(int argc, char** argv) {
  int port = 50051;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--port") && i + 1 < argc) {
      char* end = nullptr;
      long v = strtol(argv[++i], &end, 10);
      if (*end || v < 0 || v > 65535) {
        fprintf(stderr, "cpp_server: bad port %s\n", argv[i]);
        return 2;
      }
      port = static_cast<int>(v);
    } else {
      fprintf(stderr, "usage: %s [--port N]\n", argv[0]);
      return 2;
    }
  }
  Service service;
  grpc::ServerBuilder builder;
  int selected = 0;
  builder.AddListeningPort("127.0.0.1:" + std::to_string(port), grpc::InsecureServerCredentials(),
                           &selected);
  builder.SetMaxReceiveMessageSize(-1);
  builder.SetMaxSendMessageSize(-1);
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server || selected == 0) {
    fprintf(stderr, "cpp_server: cannot listen on 127.0.0.1:%d\n", port);
    return 1;
  }
  printf("LISTENING %d\n", selected);
  fflush(stdout);
  server->Wait();
  return 0;
}

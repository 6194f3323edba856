// cpp_server: grpc.testing.BenchmarkService on gRPC C++ (Debian's
// libgrpc++-dev), the peer every client of the suite talks to.
//
//   cpp_server [--port N] [--threads N] [--spin-us N]
//     --port N     0: any free port; default 50051
//     --threads N  completion-queue threads, each with a CQ of its own
//                  (default 1: the main thread does everything)
//     --spin-us N  after each event, poll the CQ without blocking for up to
//                  N microseconds before sleeping in the kernel (default 0:
//                  never spin; see below)
//
// Listens on 127.0.0.1 only and prints "LISTENING <port>" once it serves.
// Behaviour (as gRPC's own qps server):
//   UnaryCall            responds with a payload of request.response_size bytes
//   StreamingCall        one such response per request, in turn
//   StreamingFromClient  reads until the client half-closes, then one response
//                        sized by the last request
//   StreamingFromServer  writes responses sized by the request until the
//                        client cancels
//   StreamingBothWays    UNIMPLEMENTED
//
// Why it is written this way: the server must cost as little per operation
// as gRPC C++ allows, so that what the benchmarks measure is the client. The
// callback API (which this file used before) is served in gRPC C++ 1.51 by
// two "nexting" threads sharing one completion queue; they take turns
// polling and running reactions and wake each other through futexes and
// eventfd kicks, so each unary call went back and forth between them (~7
// context switches, ~14 syscalls and ~95 us of server CPU per unary call,
// against 1 context switch for the raw TCP echo server).
// Here the async API is used instead, and a single thread both polls the
// completion queue and handles every event inline, right where it comes out
// of Next(): the thread that drains the socket is the one that runs the
// handler and starts the reply, so nothing waits on another thread. With
// the default of one thread, C-core has no other poller to hand work to.
//
// Every method of the service is async (StreamingBothWays too, answered
// with UNIMPLEMENTED): a single sync method would make gRPC start its own
// polling threads, and with the epoll1 poller any of those could pick up our
// socket's events and hand them over through a wake-up.
//
// Each call is a small state machine (one object per call). Its tag is the
// object's address, with the low bit set for the AsyncNotifyWhenDone event
// of a server stream. As soon as a registered request is taken, a fresh one
// is posted for the same method, and several are kept outstanding per method
// so that concurrent calls (64 unary calls in flight from one client) never
// wait for a registration.
//
// Other per-operation savings, each measured on the suite:
//  - absl's mutex deadlock detection is switched off: Debian builds abseil
//    without NDEBUG, so every lock C-core takes also updates a lock graph
//    (15-20 % of the server's user-space instructions per call).
//  - grpc.minimal_stack and no channelz: no deadline, decompression or
//    compression filter (the message-size one is absent anyway with no
//    limits) and no per-call channelz counters (~4 % of the instructions).
//    The clients set no deadline and do not compress; a client that sent
//    compressed messages would not be served.
//  - glibc malloc keeps a few MiB of freed memory: 1 MiB messages would
//    otherwise be mmap'ed or trimmed back to the kernel after each call and
//    every call would fault its ~2 MiB in again (~500 page faults, 2/3 of
//    the server's CPU in large_unary). The trim threshold stays moderate so
//    that the peak of a client flooding a client stream (tens of MiB
//    buffered) is still given back.
//
// --spin-us trades CPU for latency: on this suite's VM a sleeping vCPU is
// expensive to wake (no guest halt polling), and the client pays the wake-up
// in its own CPU time and latency. A server that keeps polling for a while
// after each event is never asleep when the next request of a back-to-back
// client arrives. Off by default: it burns its CPU while a client runs and
// the TCP floor server (tcp_floor.c) does not do it either.
//
// Without effect here: SetSyncServerOption (no sync method, so no sync
// thread pool), a resource quota, grpc.optimization_target, disabling fork
// support, the C-core tcp_* experiments; disabling BDP probing slows the
// client-to-server direction down.
#include <absl/synchronization/mutex.h>
#include <grpc/grpc.h>
#include <grpc/testing/benchmark_service.grpc.pb.h>
#include <grpcpp/grpcpp.h>
#include <malloc.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

using grpc::ServerCompletionQueue;
using grpc::ServerContext;
using grpc::Status;
using grpc::testing::BenchmarkService;
using grpc::testing::SimpleRequest;
using grpc::testing::SimpleResponse;

namespace {

// Outstanding registrations per method and per completion queue.
constexpr int kUnaryRequests = 64;
constexpr int kStreamRequests = 4;

void FillResponse(int32_t size, SimpleResponse* resp) {
  if (size > 0)
    resp->mutable_payload()->mutable_body()->assign(static_cast<size_t>(size), '\0');
  else
    resp->Clear();
}

// The base of every call: Proceed(ok, done_event) gets each event of the call.
class Call {
 public:
  Call(BenchmarkService::AsyncService* svc, ServerCompletionQueue* cq) : svc_(svc), cq_(cq) {}
  virtual ~Call() = default;
  virtual void Proceed(bool ok, bool done_event) = 0;

  void* Tag() { return this; }
  void* DoneTag() { return reinterpret_cast<void*>(reinterpret_cast<uintptr_t>(this) | 1); }
  static void Dispatch(void* tag, bool ok) {
    auto v = reinterpret_cast<uintptr_t>(tag);
    reinterpret_cast<Call*>(v & ~uintptr_t{1})->Proceed(ok, (v & 1) != 0);
  }

 protected:
  BenchmarkService::AsyncService* svc_;
  ServerCompletionQueue* cq_;
  ServerContext ctx_;
};
static_assert(alignof(Call) >= 2, "the low bit of a Call* carries the event kind");

class Unary final : public Call {
 public:
  Unary(BenchmarkService::AsyncService* svc, ServerCompletionQueue* cq)
      : Call(svc, cq), responder_(&ctx_) {
    svc_->RequestUnaryCall(&ctx_, &req_, &responder_, cq_, cq_, Tag());
  }
  void Proceed(bool ok, bool) override {
    if (!started_ && ok) {
      started_ = true;
      FillResponse(req_.response_size(), &resp_);
      responder_.Finish(resp_, Status::OK, Tag());
      new Unary(svc_, cq_);  // after the reply is on its way: off the critical path
      return;
    }
    delete this;  // finished, or the request failed (shutdown)
  }

 private:
  bool started_ = false;
  SimpleRequest req_;
  SimpleResponse resp_;
  grpc::ServerAsyncResponseWriter<SimpleResponse> responder_;
};

class PingPong final : public Call {
 public:
  PingPong(BenchmarkService::AsyncService* svc, ServerCompletionQueue* cq)
      : Call(svc, cq), stream_(&ctx_) {
    svc_->RequestStreamingCall(&ctx_, &stream_, cq_, cq_, Tag());
  }
  void Proceed(bool ok, bool) override {
    switch (state_) {
      case kRequested:
        if (!ok) break;
        new PingPong(svc_, cq_);
        state_ = kReading;
        stream_.Read(&req_, Tag());
        return;
      case kReading:
        if (!ok) {  // half-closed (or cancelled: Finish then fails, fine)
          state_ = kFinishing;
          stream_.Finish(Status::OK, Tag());
          return;
        }
        FillResponse(req_.response_size(), &resp_);
        state_ = kWriting;
        stream_.Write(resp_, Tag());
        return;
      case kWriting:
        if (!ok) {
          state_ = kFinishing;
          stream_.Finish(Status(grpc::StatusCode::UNKNOWN, "write failed"), Tag());
          return;
        }
        state_ = kReading;
        stream_.Read(&req_, Tag());
        return;
      case kFinishing:
        break;
    }
    delete this;
  }

 private:
  enum { kRequested, kReading, kWriting, kFinishing } state_ = kRequested;
  SimpleRequest req_;
  SimpleResponse resp_;
  grpc::ServerAsyncReaderWriter<SimpleResponse, SimpleRequest> stream_;
};

class FromClient final : public Call {
 public:
  FromClient(BenchmarkService::AsyncService* svc, ServerCompletionQueue* cq)
      : Call(svc, cq), reader_(&ctx_) {
    svc_->RequestStreamingFromClient(&ctx_, &reader_, cq_, cq_, Tag());
  }
  void Proceed(bool ok, bool) override {
    switch (state_) {
      case kRequested:
        if (!ok) break;
        new FromClient(svc_, cq_);
        state_ = kReading;
        reader_.Read(&req_, Tag());
        return;
      case kReading:
        if (ok) {
          last_size_ = req_.response_size();
          reader_.Read(&req_, Tag());
          return;
        }
        FillResponse(last_size_, &resp_);
        state_ = kFinishing;
        reader_.Finish(resp_, Status::OK, Tag());
        return;
      case kFinishing:
        break;
    }
    delete this;
  }

 private:
  enum { kRequested, kReading, kFinishing } state_ = kRequested;
  int32_t last_size_ = 0;
  SimpleRequest req_;
  SimpleResponse resp_;
  grpc::ServerAsyncReader<SimpleResponse, SimpleRequest> reader_;
};

// Writes until the client cancels. Two events end it: the done notification
// (the client went away) and the completion of Finish; the object goes when
// both have arrived. The notification is delivered only for a call that
// started, so a failed request deletes at once.
class FromServer final : public Call {
 public:
  FromServer(BenchmarkService::AsyncService* svc, ServerCompletionQueue* cq)
      : Call(svc, cq), writer_(&ctx_) {
    ctx_.AsyncNotifyWhenDone(DoneTag());
    svc_->RequestStreamingFromServer(&ctx_, &req_, &writer_, cq_, cq_, Tag());
  }
  void Proceed(bool ok, bool done_event) override {
    if (done_event) {
      done_ = true;
      if (state_ == kFinished) delete this;
      return;  // a write in flight fails or completes; Finish follows it
    }
    switch (state_) {
      case kRequested:
        if (!ok) {
          delete this;
          return;
        }
        new FromServer(svc_, cq_);
        FillResponse(req_.response_size(), &resp_);
        state_ = kWriting;
        writer_.Write(resp_, Tag());
        return;
      case kWriting:
        if (ok && !done_) {
          writer_.Write(resp_, Tag());
          return;
        }
        state_ = kFinishing;
        writer_.Finish(Status::OK, Tag());
        return;
      case kFinishing:
        state_ = kFinished;
        if (done_) delete this;
        return;
      case kFinished:
        return;
    }
  }

 private:
  enum { kRequested, kWriting, kFinishing, kFinished } state_ = kRequested;
  bool done_ = false;
  SimpleRequest req_;
  SimpleResponse resp_;
  grpc::ServerAsyncWriter<SimpleResponse> writer_;
};

class BothWays final : public Call {
 public:
  BothWays(BenchmarkService::AsyncService* svc, ServerCompletionQueue* cq)
      : Call(svc, cq), stream_(&ctx_) {
    svc_->RequestStreamingBothWays(&ctx_, &stream_, cq_, cq_, Tag());
  }
  void Proceed(bool ok, bool) override {
    if (!started_ && ok) {
      started_ = true;
      new BothWays(svc_, cq_);
      stream_.Finish(Status(grpc::StatusCode::UNIMPLEMENTED, "StreamingBothWays"), Tag());
      return;
    }
    delete this;
  }

 private:
  bool started_ = false;
  grpc::ServerAsyncReaderWriter<SimpleResponse, SimpleRequest> stream_;
};

// Posts a completion queue's first registrations.
void Register(BenchmarkService::AsyncService* svc, ServerCompletionQueue* cq) {
  for (int i = 0; i < kUnaryRequests; i++) new Unary(svc, cq);
  for (int i = 0; i < kStreamRequests; i++) {
    new PingPong(svc, cq);
    new FromClient(svc, cq);
    new FromServer(svc, cq);
  }
  new BothWays(svc, cq);
}

// One completion-queue thread: handles every event inline until the queue
// shuts down. With spin_us > 0 it polls (AsyncNext with a past deadline)
// until spin_us have passed without an event, and only then blocks.
void Serve(ServerCompletionQueue* cq, long spin_us) {
  using Clock = std::chrono::steady_clock;
  const gpr_timespec past = gpr_inf_past(GPR_CLOCK_MONOTONIC);
  void* tag;
  bool ok;
  for (;;) {
    if (spin_us > 0) {
      auto until = Clock::now() + std::chrono::microseconds(spin_us);
      grpc::CompletionQueue::NextStatus st;
      do {
        st = cq->AsyncNext(&tag, &ok, past);
      } while (st == grpc::CompletionQueue::TIMEOUT && Clock::now() < until);
      if (st == grpc::CompletionQueue::SHUTDOWN) return;
      if (st == grpc::CompletionQueue::GOT_EVENT) {
        Call::Dispatch(tag, ok);
        continue;
      }
    }
    if (!cq->Next(&tag, &ok)) return;
    Call::Dispatch(tag, ok);
  }
}

bool ParseInt(const char* s, long lo, long hi, long* out) {
  char* end = nullptr;
  long v = strtol(s, &end, 10);
  if (!*s || *end || v < lo || v > hi) return false;
  *out = v;
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  long port = 50051, threads = 1, spin_us = 0;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--port") && i + 1 < argc) {
      if (!ParseInt(argv[++i], 0, 65535, &port)) {
        fprintf(stderr, "cpp_server: bad port %s\n", argv[i]);
        return 2;
      }
    } else if (!strcmp(argv[i], "--threads") && i + 1 < argc) {
      if (!ParseInt(argv[++i], 1, 64, &threads)) {
        fprintf(stderr, "cpp_server: bad thread count %s\n", argv[i]);
        return 2;
      }
    } else if (!strcmp(argv[i], "--spin-us") && i + 1 < argc) {
      if (!ParseInt(argv[++i], 0, 1000000, &spin_us)) {
        fprintf(stderr, "cpp_server: bad spin time %s\n", argv[i]);
        return 2;
      }
    } else {
      fprintf(stderr, "usage: %s [--port N] [--threads N] [--spin-us N]\n", argv[0]);
      return 2;
    }
  }
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  mallopt(M_MMAP_THRESHOLD, 32 << 20);  // the largest allowed; also stops its adaptation
  mallopt(M_TRIM_THRESHOLD, 16 << 20);

  BenchmarkService::AsyncService service;
  grpc::ServerBuilder builder;
  int selected = 0;
  builder.AddListeningPort("127.0.0.1:" + std::to_string(port), grpc::InsecureServerCredentials(),
                           &selected);
  builder.SetMaxReceiveMessageSize(-1);
  builder.SetMaxSendMessageSize(-1);
  builder.AddChannelArgument(GRPC_ARG_MINIMAL_STACK, 1);
  builder.AddChannelArgument(GRPC_ARG_ENABLE_CHANNELZ, 0);
  builder.RegisterService(&service);
  std::vector<std::unique_ptr<ServerCompletionQueue>> cqs;
  for (long i = 0; i < threads; i++) cqs.push_back(builder.AddCompletionQueue());
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server || selected == 0) {
    fprintf(stderr, "cpp_server: cannot listen on 127.0.0.1:%ld\n", port);
    return 1;
  }
  for (auto& cq : cqs) Register(&service, cq.get());
  printf("LISTENING %d\n", selected);
  fflush(stdout);
  std::vector<std::thread> extra;
  for (long i = 1; i < threads; i++) extra.emplace_back(Serve, cqs[i].get(), spin_us);
  Serve(cqs[0].get(), spin_us);
  for (auto& t : extra) t.join();
  return 0;
}

// cpp_soak: the C++ (gRPC C++ / C-core) side of bench/soak.c's "streams" and
// "channels" modes, same flags and JSON output, so memory per open stream and
// per channel can be compared side by side with the same server:
//   cpp_soak --port N --mode streams  [--count 10000] [--every 1000]
//   cpp_soak --port N --mode channels [--count 1000]  [--every 100]
// Streams: StreamingCall bidi streams on one channel, each after one
// request/response, kept open; then half-closed and finished. Channels: one
// per iteration (own subchannel pool argument so none is shared), connected
// by one unary call and kept; then all destroyed.
#include <grpc/testing/benchmark_service.grpc.pb.h>
#include <grpcpp/grpcpp.h>

#include <dirent.h>
#include <time.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

using grpc::testing::BenchmarkService;
using grpc::testing::SimpleRequest;
using grpc::testing::SimpleResponse;

namespace {

const char* MODE = "streams";
double T0;

double NowS() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

long RssKb() {
  long pages = 0, res = 0;
  if (FILE* f = fopen("/proc/self/statm", "r")) {
    if (fscanf(f, "%ld %ld", &pages, &res) != 2) res = 0;
    fclose(f);
  }
  return res * 4;
}

int Fds() {
  DIR* d = opendir("/proc/self/fd");
  int n = 0;
  if (!d) return -1;
  while (readdir(d)) n++;
  closedir(d);
  return n - 3;
}

int Threads() {
  int n = -1;
  char line[256];
  if (FILE* f = fopen("/proc/self/status", "r")) {
    while (fgets(line, sizeof line, f))
      if (sscanf(line, "Threads: %d", &n) == 1) break;
    fclose(f);
  }
  return n;
}

struct Sample {
  long n, rss;
};

Sample Take(long n) {
  Sample s{n, RssKb()};
  printf("{\"mode\":\"%s\",\"client\":\"cpp\",\"n\":%ld,\"rss_kb\":%ld,\"fds\":%d,\"threads\":%d,"
         "\"seconds\":%.2f}\n",
         MODE, n, s.rss, Fds(), Threads(), NowS() - T0);
  fflush(stdout);
  return s;
}

void Summary(Sample a, Sample b, const char* per) {
  double g = b.n > a.n ? (b.rss - a.rss) * 1024.0 / (b.n - a.n) : 0;
  printf("{\"mode\":\"%s\",\"client\":\"cpp\",\"summary\":true,\"from_n\":%ld,\"to_n\":%ld,"
         "\"rss_from_kb\":%ld,\"rss_to_kb\":%ld,\"bytes_per_%s\":%.1f}\n",
         MODE, a.n, b.n, a.rss, b.rss, per, g);
}

}  // namespace

int main(int argc, char** argv) {
  std::string host = "127.0.0.1", port = "50051";
  long count = -1, every = -1;
  double max_s = 600;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!strcmp(argv[i], "--port")) port = argv[i + 1];
    else if (!strcmp(argv[i], "--host")) host = argv[i + 1];
    else if (!strcmp(argv[i], "--mode")) MODE = argv[i + 1];
    else if (!strcmp(argv[i], "--count")) count = atol(argv[i + 1]);
    else if (!strcmp(argv[i], "--every")) every = atol(argv[i + 1]);
    else if (!strcmp(argv[i], "--max-seconds")) max_s = atof(argv[i + 1]);
  }
  std::string target = host + ":" + port;
  T0 = NowS();
  double deadline = NowS() + max_s;
  SimpleRequest req;
  req.set_response_size(10);
  int failed = 0;
  if (!strcmp(MODE, "channels")) {
    if (count <= 0) count = 1000;
    if (every <= 0) every = 100;
    std::vector<std::shared_ptr<grpc::Channel>> chs;
    Sample first = Take(0), last = first;
    for (long n = 0; n < count && NowS() < deadline; n++) {
      grpc::ChannelArguments args;
      args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
      auto ch = grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(), args);
      grpc::ClientContext ctx;
      SimpleResponse resp;
      if (!BenchmarkService::NewStub(ch)->UnaryCall(&ctx, req, &resp).ok()) {
        failed = 1;
        break;
      }
      chs.push_back(ch);
      if ((n + 1) % every == 0) {
        last = Take(n + 1);
        if (n + 1 == every) first = last;
      }
    }
    Summary(first, last, "channel");
    chs.clear();
    Take(0);
    return failed;
  }
  if (count <= 0) count = 10000;
  if (every <= 0) every = 1000;
  auto ch = grpc::CreateChannel(target, grpc::InsecureChannelCredentials());
  auto stub = BenchmarkService::NewStub(ch);
  struct Open {
    std::unique_ptr<grpc::ClientContext> ctx;
    std::unique_ptr<grpc::ClientReaderWriter<SimpleRequest, SimpleResponse>> rw;
  };
  std::vector<Open> open;
  Sample first = Take(0), last = first;
  for (long n = 0; n < count && NowS() < deadline; n++) {
    Open o;
    o.ctx.reset(new grpc::ClientContext);
    o.rw = stub->StreamingCall(o.ctx.get());
    SimpleResponse resp;
    if (!o.rw->Write(req) || !o.rw->Read(&resp)) {
      fprintf(stderr, "cpp_soak: stream %ld failed\n", n);
      failed = 1;
      break;
    }
    open.push_back(std::move(o));
    if ((n + 1) % every == 0) {
      last = Take(n + 1);
      if (n + 1 == every) first = last;
    }
  }
  Summary(first, last, "stream");
  for (auto& o : open) {
    o.rw->WritesDone();
    if (!o.rw->Finish().ok()) failed = 1;
  }
  open.clear();
  Take(0);
  return failed;
}

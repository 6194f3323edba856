/*
 * soak: long runs of rgrpc on one process, sampling its memory (RSS), open
 * file descriptors and threads, against a grpc.testing.BenchmarkService
 * server (bench/cpp_server, or the grpcio interop server).
 *
 *   soak --port N --mode unary    [--count 1000000] [--inflight 64] [--every 50000]
 *       unary calls kept --inflight at a time (rgrpc_call_unary_async with
 *       inline callbacks); a sample every --every calls: the curve.
 *   soak --port N --mode streams  [--count 10000] [--every 1000]
 *       --count bidi streams (StreamingCall) opened on one channel and kept
 *       open, each after one request/response round trip (so the server
 *       holds it too); samples while opening, then the streams are closed
 *       (half-close, finish) and freed, and a last sample is taken.
 *   soak --port N --mode channels [--count 1000] [--every 100]
 *       --count channels, each connected by one unary call and kept; then
 *       all freed.
 *
 * Output: one JSON object per sample on stdout
 *   {"mode":..,"n":..,"rss_kb":..,"fds":..,"threads":..,"seconds":..}
 * and a summary line {"mode":..,"summary":true,...} with the growth per
 * item between the first sample after warm-up and the last one while
 * items are held. Exit status 0, or 1 when a call failed.
 * Every loop is bounded by --count and by --max-seconds (600).
 */
#define _GNU_SOURCE
#include <rgrpc.h>

#include <dirent.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define M_UNARY "/grpc.testing.BenchmarkService/UnaryCall"
#define M_STREAM "/grpc.testing.BenchmarkService/StreamingCall"

/* SimpleRequest{response_size: 10} */
static const uint8_t REQ[] = {0x10, 0x0a};

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static long rss_kb(void) {
  FILE *f = fopen("/proc/self/statm", "r");
  long pages = 0, res = 0;
  if (f) {
    if (fscanf(f, "%ld %ld", &pages, &res) != 2) res = 0;
    fclose(f);
  }
  return res * 4; /* 4 KiB pages */
}

static int count_fds(void) {
  DIR *d = opendir("/proc/self/fd");
  int n = 0;
  if (!d) return -1;
  while (readdir(d)) n++;
  closedir(d);
  return n - 3; /* ".", "..", and the directory's own descriptor */
}

static int count_threads(void) {
  FILE *f = fopen("/proc/self/status", "r");
  char line[256];
  int n = -1;
  if (!f) return -1;
  while (fgets(line, sizeof line, f))
    if (sscanf(line, "Threads: %d", &n) == 1) break;
  fclose(f);
  return n;
}

static const char *MODE;
static double T0;

typedef struct {
  long n;
  long rss;
} sample;

static sample take_sample(long n) {
  sample s = {n, rss_kb()};
  printf("{\"mode\":\"%s\",\"n\":%ld,\"rss_kb\":%ld,\"fds\":%d,\"threads\":%d,\"seconds\":%.2f}\n",
         MODE, n, s.rss, count_fds(), count_threads(), now_s() - T0);
  fflush(stdout);
  return s;
}

static void summary(sample a, sample b, const char *per) {
  double growth = b.n > a.n ? (double)(b.rss - a.rss) * 1024.0 / (double)(b.n - a.n) : 0;
  printf("{\"mode\":\"%s\",\"summary\":true,\"from_n\":%ld,\"to_n\":%ld,\"rss_from_kb\":%ld,"
         "\"rss_to_kb\":%ld,\"bytes_per_%s\":%.1f}\n",
         MODE, a.n, b.n, a.rss, b.rss, per, growth);
}

/* ---- unary ---- */

static struct {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  long issued, done, inflight, count, every;
  int failed;
  rgrpc_channel *ch;
  rgrpc_call_options *opts;
  sample first, last;
  double deadline;
} U = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, 0, 0, 0, 0, NULL, NULL,
       {0, 0}, {0, 0}, 0};

static void unary_done(void *ud, const rgrpc_status *st, const uint8_t *resp, size_t len);

static void unary_issue(void) {
  if (rgrpc_call_unary_async(U.ch, M_UNARY, U.opts, REQ, sizeof REQ, unary_done, NULL, NULL)) {
    pthread_mutex_lock(&U.mu);
    U.failed = 1;
    U.inflight--;
    pthread_cond_signal(&U.cv);
    pthread_mutex_unlock(&U.mu);
  }
}

static void unary_done(void *ud, const rgrpc_status *st, const uint8_t *resp, size_t len) {
  (void)ud;
  (void)resp;
  (void)len;
  int ok = rgrpc_status_get_code(st) == RGRPC_STATUS_CODE_OK;
  pthread_mutex_lock(&U.mu);
  U.done++;
  U.inflight--;
  if (!ok) U.failed = 1;
  if (U.done % U.every == 0) {
    sample s = take_sample(U.done);
    if (U.first.n == 0 && U.done >= U.every * 2) U.first = s; /* after warm-up */
    U.last = s;
  }
  int again = !U.failed && U.issued < U.count && now_s() < U.deadline;
  if (again) {
    U.issued++;
    U.inflight++;
  }
  if (U.inflight == 0) pthread_cond_signal(&U.cv);
  pthread_mutex_unlock(&U.mu);
  if (again) unary_issue();
}

static int run_unary(rgrpc_channel *ch, long count, long inflight, long every, double max_s) {
  U.ch = ch;
  U.count = count;
  U.every = every;
  U.deadline = now_s() + max_s;
  U.opts = rgrpc_call_options_new();
  rgrpc_call_options_set_inline_callbacks(U.opts, true);
  take_sample(0);
  pthread_mutex_lock(&U.mu);
  long k = 0;
  for (; k < inflight && U.issued < count; k++) {
    U.issued++;
    U.inflight++;
  }
  pthread_mutex_unlock(&U.mu);
  for (long i = 0; i < k; i++) unary_issue();
  pthread_mutex_lock(&U.mu);
  while (U.inflight > 0) pthread_cond_wait(&U.cv, &U.mu);
  pthread_mutex_unlock(&U.mu);
  rgrpc_call_options_free(U.opts);
  summary(U.first, U.last, "call");
  return U.failed;
}

/* ---- streams ---- */

static int run_streams(rgrpc_channel *ch, long count, long every, double max_s) {
  rgrpc_call **calls = calloc((size_t)count, sizeof *calls);
  double deadline = now_s() + max_s;
  int failed = 0;
  long n = 0;
  sample first = take_sample(0), last = first;
  for (; n < count && now_s() < deadline; n++) {
    rgrpc_buffer *msg = NULL;
    if (rgrpc_call_start(ch, M_STREAM, NULL, &calls[n]) ||
        rgrpc_call_send(calls[n], REQ, sizeof REQ, 0) || rgrpc_call_recv(calls[n], &msg)) {
      fprintf(stderr, "soak: stream %ld failed: %s\n", n,
              calls[n] ? rgrpc_call_last_error(calls[n]) : "");
      failed = 1;
      rgrpc_call_free(calls[n]);
      break;
    }
    rgrpc_buffer_free(msg);
    if ((n + 1) % every == 0) {
      last = take_sample(n + 1);
      if (n + 1 == every) first = last; /* the first batch is warm-up */
    }
  }
  summary(first, last, "stream");
  for (long i = 0; i < n; i++) {
    const rgrpc_status *st = NULL;
    rgrpc_call_close_send(calls[i]);
    if (rgrpc_call_finish(calls[i], &st) != RGRPC_RESULT_OK) failed = 1;
    rgrpc_status_free(st);
    rgrpc_call_free(calls[i]);
  }
  free(calls);
  struct timespec pause = {0, 200000000};
  nanosleep(&pause, NULL); /* the runtime closes the streams */
  take_sample(0); /* after closing them all */
  return failed;
}

/* ---- channels ---- */

static int run_channels(const char *target, long count, long every, double max_s) {
  rgrpc_channel **chs = calloc((size_t)count, sizeof *chs);
  double deadline = now_s() + max_s;
  int failed = 0;
  long n = 0;
  sample first = take_sample(0), last = first;
  for (; n < count && now_s() < deadline; n++) {
    rgrpc_buffer *resp = NULL;
    const rgrpc_status *st = NULL;
    if (rgrpc_channel_new(target, NULL, NULL, &chs[n], NULL) ||
        rgrpc_call_unary(chs[n], M_UNARY, NULL, REQ, sizeof REQ, &resp, &st)) {
      fprintf(stderr, "soak: channel %ld failed\n", n);
      failed = 1;
      rgrpc_buffer_free(resp);
      rgrpc_status_free(st);
      rgrpc_channel_free(chs[n]);
      break;
    }
    rgrpc_buffer_free(resp);
    rgrpc_status_free(st);
    if ((n + 1) % every == 0) {
      last = take_sample(n + 1);
      if (n + 1 == every) first = last;
    }
  }
  summary(first, last, "channel");
  for (long i = 0; i < n; i++) rgrpc_channel_free(chs[i]);
  free(chs);
  struct timespec pause = {0, 200000000};
  nanosleep(&pause, NULL); /* the runtime closes the connections */
  take_sample(0);
  return failed;
}

int main(int argc, char **argv) {
  const char *host = "127.0.0.1", *port = "50051";
  long count = -1, inflight = 64, every = -1;
  double max_s = 600;
  MODE = "unary";
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!strcmp(argv[i], "--port")) port = argv[i + 1];
    else if (!strcmp(argv[i], "--host")) host = argv[i + 1];
    else if (!strcmp(argv[i], "--mode")) MODE = argv[i + 1];
    else if (!strcmp(argv[i], "--count")) count = atol(argv[i + 1]);
    else if (!strcmp(argv[i], "--inflight")) inflight = atol(argv[i + 1]);
    else if (!strcmp(argv[i], "--every")) every = atol(argv[i + 1]);
    else if (!strcmp(argv[i], "--max-seconds")) max_s = atof(argv[i + 1]);
    else {
      fprintf(stderr, "soak: unknown flag %s\n", argv[i]);
      return 2;
    }
  }
  char target[256];
  snprintf(target, sizeof target, "%s:%s", host, port);
  T0 = now_s();
  int failed;
  if (!strcmp(MODE, "channels")) {
    failed = run_channels(target, count > 0 ? count : 1000, every > 0 ? every : 100, max_s);
  } else {
    rgrpc_channel *ch = NULL;
    if (rgrpc_channel_new(target, NULL, NULL, &ch, NULL)) return 1;
    if (!strcmp(MODE, "streams"))
      failed = run_streams(ch, count > 0 ? count : 10000, every > 0 ? every : 1000, max_s);
    else
      failed = run_unary(ch, count > 0 ? count : 1000000, inflight, every > 0 ? every : 50000,
                         max_s);
    rgrpc_channel_free(ch);
  }
  rgrpc_shutdown();
  return failed;
}

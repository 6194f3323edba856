/*
 * Shared by every benchmark client of the suite (rgrpc_bench.c,
 * tcp_floor.c, cpp_client.cc): the command line, the measurement
 * (monotonic clock, getrusage over the measured phase, nearest-rank
 * percentiles) and the one JSON line of output. Header-only; valid C99 and
 * C++11.
 *
 * Command line (every flag optional):
 *   --host H --port N --scenario S --calls N --warmup N --duration SEC
 *   --concurrency N --req-size BYTES --resp-size BYTES
 * Exit codes: 0 measured, 1 an RPC or I/O failed, 2 bad command line,
 * 3 scenario not implemented by this client.
 */
#ifndef RGRPC_BENCH_COMMON_H
#define RGRPC_BENCH_COMMON_H

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#define BENCH_EXIT_OK 0
#define BENCH_EXIT_FAILED 1
#define BENCH_EXIT_USAGE 2
#define BENCH_EXIT_UNIMPLEMENTED 3

enum bench_scenario {
  SC_UNARY_LAT,
  SC_PINGPONG_LAT,
  SC_UNARY_TPUT,
  SC_SERVER_STREAM,
  SC_LARGE_UNARY,
  SC_CLIENT_STREAM,
  SC_UNKNOWN
};

static const char *const bench_scenario_names[] = {
    "unary_lat", "pingpong_lat", "unary_tput", "server_stream", "large_unary", "client_stream"};

typedef struct bench_args {
  const char *host;
  int port;
  const char *scenario_name;
  enum bench_scenario scenario;
  long calls;
  long warmup;
  double duration;
  int concurrency;
  long req_size;
  long resp_size;
} bench_args;

static inline void bench_usage(const char *prog) {
  fprintf(stderr,
          "usage: %s [--host H] [--port N] [--scenario S] [--calls N] [--warmup N]\n"
          "          [--duration SEC] [--concurrency N] [--req-size BYTES] [--resp-size BYTES]\n"
          "scenarios: unary_lat pingpong_lat unary_tput server_stream large_unary client_stream\n"
          "defaults: --host 127.0.0.1 --port 50051 --scenario unary_lat --calls 10000\n"
          "          --warmup 1000 --duration 10 --concurrency 1 (64 for unary_tput)\n"
          "          --req-size 0 --resp-size 0 (1048576 each for large_unary)\n"
          "output: one JSON line on stdout; exit 3 for a scenario this client does not implement\n",
          prog);
}

static inline int bench_parse_long(const char *s, long min, long *out) {
  char *end = NULL;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (errno || end == s || *end || v < min) return -1;
  *out = v;
  return 0;
}

/* Returns 0, or an exit code (usage: 2; --help: exits 0 itself). */
static inline int bench_parse_args(int argc, char **argv, bench_args *a) {
  long v;
  long req = -1, resp = -1, conc = -1;
  a->host = "127.0.0.1";
  a->port = 50051;
  a->scenario_name = "unary_lat";
  a->calls = 10000;
  a->warmup = 1000;
  a->duration = 10.0;
  for (int i = 1; i < argc; i++) {
    const char *f = argv[i];
    if (!strcmp(f, "--help") || !strcmp(f, "-h")) {
      bench_usage(argv[0]);
      exit(0);
    }
    if (i + 1 >= argc) {
      fprintf(stderr, "%s: %s needs a value\n", argv[0], f);
      return BENCH_EXIT_USAGE;
    }
    const char *val = argv[++i];
    int bad = 0;
    if (!strcmp(f, "--host")) a->host = val;
    else if (!strcmp(f, "--port")) {
      bad = bench_parse_long(val, 0, &v) || v > 65535;
      if (!bad) a->port = (int)v;
    } else if (!strcmp(f, "--scenario")) a->scenario_name = val;
    else if (!strcmp(f, "--calls")) bad = bench_parse_long(val, 1, &a->calls);
    else if (!strcmp(f, "--warmup")) bad = bench_parse_long(val, 0, &a->warmup);
    else if (!strcmp(f, "--duration")) {
      char *end = NULL;
      a->duration = strtod(val, &end);
      bad = end == val || *end || !(a->duration > 0);
    } else if (!strcmp(f, "--concurrency")) bad = bench_parse_long(val, 1, &conc) || conc > 100000;
    else if (!strcmp(f, "--req-size")) bad = bench_parse_long(val, 0, &req) || req > (1L << 30);
    else if (!strcmp(f, "--resp-size")) bad = bench_parse_long(val, 0, &resp) || resp > (1L << 30);
    else {
      fprintf(stderr, "%s: unknown flag %s\n", argv[0], f);
      bench_usage(argv[0]);
      return BENCH_EXIT_USAGE;
    }
    if (bad) {
      fprintf(stderr, "%s: bad value for %s: %s\n", argv[0], f, val);
      return BENCH_EXIT_USAGE;
    }
  }
  a->scenario = SC_UNKNOWN;
  for (int s = 0; s < (int)SC_UNKNOWN; s++)
    if (!strcmp(a->scenario_name, bench_scenario_names[s])) a->scenario = (enum bench_scenario)s;
  long dflt_size = a->scenario == SC_LARGE_UNARY ? 1048576 : 0;
  a->req_size = req >= 0 ? req : dflt_size;
  a->resp_size = resp >= 0 ? resp : dflt_size;
  a->concurrency = conc > 0 ? (int)conc : (a->scenario == SC_UNARY_TPUT ? 64 : 1);
  return 0;
}

static inline uint64_t bench_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* The measured phase: wall clock, CPU and the per-operation latencies. */
typedef struct bench_result {
  uint64_t t_start, t_end;
  struct rusage ru_start, ru_end;
  uint64_t *lat_ns; /* per-operation latencies (NULL when not recorded) */
  long n_lat, cap_lat;
  long ops;         /* measured operations (calls, round trips or messages) */
  double bytes;     /* payload bytes moved in the measured phase, both directions */
} bench_result;

static inline int bench_result_init(bench_result *r, long cap, int record_latency) {
  memset(r, 0, sizeof *r);
  if (record_latency) {
    r->lat_ns = (uint64_t *)malloc((size_t)cap * sizeof(uint64_t));
    if (!r->lat_ns) return -1;
    r->cap_lat = cap;
  }
  return 0;
}

static inline void bench_start(bench_result *r) {
  getrusage(RUSAGE_SELF, &r->ru_start);
  r->t_start = bench_now_ns();
}

static inline void bench_stop(bench_result *r) {
  r->t_end = bench_now_ns();
  getrusage(RUSAGE_SELF, &r->ru_end);
}

static inline void bench_record(bench_result *r, uint64_t ns) {
  if (r->n_lat < r->cap_lat) r->lat_ns[r->n_lat++] = ns;
}

static inline int bench_expired(const bench_result *r, double duration, uint64_t now) {
  return now > r->t_start && (double)(now - r->t_start) >= duration * 1e9;
}

static inline int bench_cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

/* Nearest rank: the smallest value with at least p% of the values <= it. */
static inline double bench_percentile_us(const uint64_t *sorted, long n, double p) {
  if (n <= 0) return NAN;
  long rank = (long)ceil(p / 100.0 * (double)n);
  if (rank < 1) rank = 1;
  if (rank > n) rank = n;
  return (double)sorted[rank - 1] / 1000.0;
}

static inline double bench_tv_s(struct timeval tv) { return (double)tv.tv_sec + (double)tv.tv_usec / 1e6; }

static inline void bench_json_num(const char *key, double v, int decimals, int last) {
  if (isnan(v)) printf("\"%s\":null", key);
  else printf("\"%s\":%.*f", key, decimals, v);
  if (!last) putchar(',');
}

/* Prints the JSON line. qps for call-like scenarios, msgs_per_s for the
 * streaming ones, percentiles when latencies were recorded. */
static inline void bench_report(const bench_args *a, bench_result *r) {
  double secs = (double)(r->t_end - r->t_start) / 1e9;
  int is_stream = a->scenario == SC_SERVER_STREAM || a->scenario == SC_CLIENT_STREAM;
  double p50 = NAN, p90 = NAN, p99 = NAN;
  if (r->lat_ns && r->n_lat > 0) {
    qsort(r->lat_ns, (size_t)r->n_lat, sizeof(uint64_t), bench_cmp_u64);
    p50 = bench_percentile_us(r->lat_ns, r->n_lat, 50);
    p90 = bench_percentile_us(r->lat_ns, r->n_lat, 90);
    p99 = bench_percentile_us(r->lat_ns, r->n_lat, 99);
  }
  double rate = secs > 0 ? (double)r->ops / secs : NAN;
  printf("{\"scenario\":\"%s\",\"calls\":%ld,", bench_scenario_names[a->scenario], r->ops);
  bench_json_num("seconds", secs, 6, 0);
  bench_json_num("p50_us", p50, 1, 0);
  bench_json_num("p90_us", p90, 1, 0);
  bench_json_num("p99_us", p99, 1, 0);
  bench_json_num("qps", is_stream ? NAN : rate, 1, 0);
  bench_json_num("msgs_per_s", is_stream ? rate : NAN, 1, 0);
  bench_json_num("MB_per_s", secs > 0 ? r->bytes / 1e6 / secs : NAN, 3, 0);
  bench_json_num("cpu_user_s", bench_tv_s(r->ru_end.ru_utime) - bench_tv_s(r->ru_start.ru_utime), 6, 0);
  bench_json_num("cpu_sys_s", bench_tv_s(r->ru_end.ru_stime) - bench_tv_s(r->ru_start.ru_stime), 6, 0);
  printf("\"max_rss_kb\":%ld,\"concurrency\":%d,\"req_size\":%ld,\"resp_size\":%ld}\n",
         (long)r->ru_end.ru_maxrss, a->concurrency, a->req_size, a->resp_size);
  fflush(stdout);
}

/* Payload bytes per operation, both directions. */
static inline double bench_bytes_per_op(const bench_args *a) {
  switch (a->scenario) {
    case SC_SERVER_STREAM: return (double)a->resp_size;
    case SC_CLIENT_STREAM: return (double)a->req_size;
    default: return (double)(a->req_size + a->resp_size);
  }
}

#endif /* RGRPC_BENCH_COMMON_H */

/* Fault storms (issue 18): a steady load of the four call patterns
 * (unary, server streaming, client streaming, bidi) on a round_robin
 * channel over three grpcio servers, each behind fault_proxy.py, which
 * resets connections, stalls and delays them, cuts writes short and
 * injects GOAWAYs (with_server.py --servers 3 --fault-proxy ...: the
 * proxied addresses come in RGRPC_TEST_FAULT_TARGETS_<PROFILE>, the
 * proxy's counts of injected faults in the file RGRPC_TEST_FAULT_COUNTS).
 *
 * Every call, whatever happens to it, must end within its deadline plus a
 * small grace (a watchdog fails the test if one hangs), with a status in
 * the set its phase allows, with a non-empty details text when it is not
 * OK; a call that ends OK must have received every response, each of the
 * right size; DEADLINE_EXCEEDED never comes before the deadline. The
 * phases, each on its own channel and its own proxy profile:
 *
 *   Part A (fail-fast calls, all four patterns, 2 threads each):
 *   - delay:  chunks held 2-30 ms for a while.    promised: all OK.
 *   - stall:  one direction stopped 0.3-2 s.      promised: OK or
 *             DEADLINE_EXCEEDED (a call stuck behind the stall waits for
 *             its 1 s deadline; nothing is lost, so nothing else happens).
 *   - reset:  TCP RST to client and server.       promised: OK or
 *             UNAVAILABLE (the calls on the broken connection, and
 *             fail-fast calls made while every subchannel's new
 *             connection has failed too; a lost connection alone is not a
 *             failure: calls wait for the reconnection).
 *   - cut:    a chunk cut short, then FIN.        promised: OK or
 *             UNAVAILABLE (the client never sees a cut frame whole, so
 *             it sees a broken connection, not bad data: no INTERNAL).
 *   - goaway: GOAWAY NO_ERROR and a PING, drained (the connection closes
 *             once the PING is acknowledged and the streams the GOAWAY
 *             kept have ended; later streams are refused).
 *             promised: OK (refused streams are retried transparently,
 *             the others finish), or UNAVAILABLE for a call refused a
 *             second time after its one transparent retry (gRFC A6).
 *   These five run without a retry policy, so each status shows what
 *   happened to the call itself.
 *   - storm:  all five at random, GOAWAY closing 20-300 ms later whatever
 *             is in flight, with the retry policy. promised: OK,
 *             UNAVAILABLE or DEADLINE_EXCEEDED; OK the majority; some
 *             failures (or the storm did nothing).
 *   Part B (wait_for_ready unary calls, retry policy: 5 attempts on
 *   UNAVAILABLE, 20 s deadline):
 *   - safe:   all five, but the ones that lose data strike only when no
 *             response is partly delivered (fault_proxy.py, profile safe):
 *             promised: every call OK. (A call whose response headers
 *             arrived is committed (gRFC A6) and cannot be retried, so a
 *             fault in the middle of a response may lose it: the promise
 *             is for faults between responses.)
 *
 * Each phase prints its count of calls by status, and the end a table of
 * all; every fault kind must have been injected (the proxy's counts).
 * Under valgrind (tu_slow() > 1) deadlines and grace scale up (the phases
 * keep their length; fewer calls fit in them).
 *
 * To look closer: RGRPC_STORM_PHASES=reset,goaway runs only those phases,
 * RGRPC_STORM_VERBOSE=1 prints every failed call (when, status, attempts,
 * peer, details), RGRPC_FAULT_SEED=<n> repeats the proxy's choices (its
 * seed is printed on stderr). */
#include "test_util.h"

#define NCODES 17
#define MAX_WORKERS 8

enum { P_UNARY, P_SERVER_STREAM, P_CLIENT_STREAM, P_BIDI, NPATTERNS };
static const char *const PATTERN_NAMES[NPATTERNS] = {"unary", "server_stream",
                                                     "client_stream", "bidi"};

#define BIT(code) (1u << (code))

static const char *const NO_RETRY_CONFIG = "{\"loadBalancingConfig\": [{\"round_robin\": {}}]}";
static const char *const RETRY_CONFIG =
    "{\"loadBalancingConfig\": [{\"round_robin\": {}}],"
    " \"methodConfig\": [{\"name\": [{\"service\": \"grpc.testing.TestService\"}],"
    " \"retryPolicy\": {\"maxAttempts\": 5, \"initialBackoff\": \"0.02s\","
    " \"maxBackoff\": \"0.2s\", \"backoffMultiplier\": 2,"
    " \"retryableStatusCodes\": [\"UNAVAILABLE\"]}}]}";

/* A phase: which proxy profile, what calls, what is promised. */
typedef struct {
  const char *profile;   /* fault_proxy.py profile */
  const char *faults[5]; /* the fault kinds it must have injected */
  bool retries;          /* RETRY_CONFIG (else NO_RETRY_CONFIG) */
  bool wait_for_ready;   /* Part B */
  int64_t timeout_ms;    /* per call, times tu_slow() */
  int64_t run_ms;        /* calls are started for this long */
  unsigned allowed;      /* BIT(code) of each status allowed */
  bool storm;            /* OK the majority, some failures */
  /* UNAVAILABLE also allowed for a call cut off by a GOAWAY after its one
   * transparent retry (gRFC A6: a stream the server never saw is retried
   * transparently once, then only by a retry policy). */
  bool refused_twice;
} phase;

#define ALL_KINDS {"reset", "stall", "delay", "cut", "goaway"}
#define OK_ BIT(RGRPC_STATUS_CODE_OK)
#define UNAVAILABLE_ BIT(RGRPC_STATUS_CODE_UNAVAILABLE)
#define DEADLINE_ BIT(RGRPC_STATUS_CODE_DEADLINE_EXCEEDED)

static const phase PHASES[] = {
    {"delay", {"delay"}, false, false, 3000, 1200, OK_, false, false},
    {"stall", {"stall"}, false, false, 1000, 1500, OK_ | DEADLINE_, false, false},
    {"reset", {"reset"}, false, false, 3000, 1200, OK_ | UNAVAILABLE_, false, false},
    {"cut", {"cut"}, false, false, 3000, 1200, OK_ | UNAVAILABLE_, false, false},
    {"goaway", {"goaway"}, false, false, 3000, 1200, OK_, false, true},
    {"storm", ALL_KINDS, true, false, 1500, 4000, OK_ | UNAVAILABLE_ | DEADLINE_, true, false},
    {"safe", ALL_KINDS, true, true, 20000, 3000, OK_, false, false},
};
#define NPHASES (sizeof PHASES / sizeof PHASES[0])

/* One load thread. */
typedef struct {
  const phase *ph;
  rgrpc_channel *ch;
  rgrpc_call_options *opts;
  int pattern;
  int64_t end_ms, timeout_ms, grace_ms;
  uint64_t rng;
  tu_latch *done;
  /* results */
  long codes[NCODES];
  long by_pattern[NPATTERNS][2]; /* [ok, failed] */
  long calls, retries, transparent;
  int64_t worst_over_ms; /* largest (elapsed - timeout) */
  char details[NCODES][200]; /* the first details text of each code */
  int64_t phase_start_ms;
  /* the last call's */
  char last_details[200];
  rgrpc_call_stats last_stats;
  /* progress, for the watchdog (under mu) */
  pthread_mutex_t mu;
  int64_t call_start_ms; /* 0 between calls */
} worker;

static uint32_t next_rand(worker *w) {
  w->rng ^= w->rng << 13;
  w->rng ^= w->rng >> 7;
  w->rng ^= w->rng << 17;
  return (uint32_t)(w->rng >> 11);
}

/* ------------------------------------------------------------ the calls */

/* RGRPC_STORM_VERBOSE=1: every failed call is printed. */
static bool verbose(void) {
  const char *v = getenv("RGRPC_STORM_VERBOSE");
  return v != NULL && v[0] == '1';
}

/* Finishes `call`: the status must agree with the result, carry details
 * when not OK, and an OK call must have had all its responses
 * (`complete`). Records the call's stats; returns the code. */
static rgrpc_status_code finish_call(worker *w, rgrpc_call *call, bool complete) {
  const rgrpc_status *st = NULL;
  rgrpc_result rc = rgrpc_call_finish(call, &st);
  CHECK_MSG(rc == RGRPC_RESULT_OK || rc == RGRPC_RESULT_RPC_FAILED, "%s: rgrpc_call_finish: %s",
            PATTERN_NAMES[w->pattern], rgrpc_result_name(rc));
  CHECK(st != NULL);
  rgrpc_status_code code = rgrpc_status_get_code(st);
  CHECK_MSG((rc == RGRPC_RESULT_OK) == (code == RGRPC_STATUS_CODE_OK), "finish gave %s with %s",
            rgrpc_result_name(rc), rgrpc_status_code_name(code));
  CHECK_MSG(code != RGRPC_STATUS_CODE_OK || complete,
            "%s call ended OK without all its responses", PATTERN_NAMES[w->pattern]);
  CHECK_MSG((unsigned)code < NCODES, "status %u", (unsigned)code);
  if (code != RGRPC_STATUS_CODE_OK) {
    const char *d = rgrpc_status_details(st);
    CHECK_MSG(d != NULL && d[0] != '\0', "%s call ended %s without details",
              PATTERN_NAMES[w->pattern], rgrpc_status_code_name(code));
    if (w->details[code][0] == '\0') snprintf(w->details[code], sizeof w->details[code], "%s", d);
  }
  snprintf(w->last_details, sizeof w->last_details, "%s", rgrpc_status_details(st));
  rgrpc_call_stats stats;
  CHECK_OK(rgrpc_call_get_stats(call, &stats, sizeof stats));
  CHECK(stats.ended == 1);
  if (code != RGRPC_STATUS_CODE_OK && verbose()) {
    const char *peer = rgrpc_call_peer(call);
    printf("    at %lld ms: %s %s after %lld ms, attempts %u (transparent %u), peer %s: %s\n",
           (long long)(tu_now_ms() - w->phase_start_ms), PATTERN_NAMES[w->pattern],
           rgrpc_status_code_name(code), (long long)(stats.total_us / 1000), stats.attempts,
           stats.transparent_retries, peer ? peer : "-", rgrpc_status_details(st));
  }
  rgrpc_status_free(st);
  w->last_stats = stats;
  w->retries += stats.retries;
  w->transparent += stats.transparent_retries;
  return code;
}

/* Receives one message: true with its payload length in *len, false at
 * the end of the stream. */
static bool recv_body(rgrpc_call *call, size_t *len) {
  rgrpc_buffer *buf = NULL;
  rgrpc_result rc = rgrpc_call_recv(call, &buf);
  if (rc == RGRPC_RESULT_END_OF_STREAM) return false;
  CHECK_MSG(rc == RGRPC_RESULT_OK, "rgrpc_call_recv: %s", rgrpc_result_name(rc));
  *len = tu_buffer_body_len(buf);
  rgrpc_buffer_free(buf);
  return true;
}

/* A send that may find the call ended (the status then says why). */
static bool send_pb(rgrpc_call *call, const tu_pb *msg, uint32_t flags) {
  rgrpc_result rc = rgrpc_call_send(call, msg->data, msg->len, flags);
  CHECK_MSG(rc == RGRPC_RESULT_OK || rc == RGRPC_RESULT_CALL_ENDED, "rgrpc_call_send: %s",
            rgrpc_result_name(rc));
  return rc == RGRPC_RESULT_OK;
}

static bool close_send(rgrpc_call *call) {
  rgrpc_result rc = rgrpc_call_close_send(call);
  CHECK_MSG(rc == RGRPC_RESULT_OK || rc == RGRPC_RESULT_CALL_ENDED, "rgrpc_call_close_send: %s",
            rgrpc_result_name(rc));
  return rc == RGRPC_RESULT_OK;
}

static rgrpc_call *start(worker *w, const char *method) {
  rgrpc_call *call = NULL;
  CHECK_OK(rgrpc_call_start(w->ch, method, w->opts, &call));
  return call;
}

/* UnaryCall: a response of 1..2000 bytes for a request of 1..1000. */
static rgrpc_status_code call_unary(worker *w) {
  int32_t size = 1 + (int32_t)(next_rand(w) % 2000);
  tu_pb req = tu_simple_request(size, 1 + next_rand(w) % 1000, 0, NULL);
  rgrpc_call *call = start(w, M_UNARY);
  bool complete = false;
  size_t len = 0;
  if (send_pb(call, &req, RGRPC_SEND_LAST) && recv_body(call, &len)) {
    CHECK_MSG(len == (size_t)size, "unary: %zu bytes, want %d", len, size);
    complete = true;
  }
  tu_pb_free(&req);
  rgrpc_status_code code = finish_call(w, call, complete);
  rgrpc_call_free(call);
  return code;
}

/* StreamingOutputCall: 5 responses, 10 ms apart (the stream is open for
 * 50 ms or more: faults strike in its middle too). */
static rgrpc_status_code call_server_stream(worker *w) {
  enum { N = 5 };
  int32_t sizes[N], intervals[N];
  for (int i = 0; i < N; i++) {
    sizes[i] = 1 + (int32_t)(next_rand(w) % 3000);
    intervals[i] = 10000;
  }
  tu_pb req = tu_streaming_output_request(sizes, intervals, N, 0, 0, NULL);
  rgrpc_call *call = start(w, M_SERVER_STREAM);
  int got = 0;
  if (send_pb(call, &req, RGRPC_SEND_LAST)) {
    size_t len = 0;
    while (got < N && recv_body(call, &len)) {
      CHECK_MSG(len == (size_t)sizes[got], "server stream: response %d has %zu bytes, want %d",
                got, len, sizes[got]);
      got++;
    }
    if (got == N) CHECK_MSG(!recv_body(call, &len), "server stream: a sixth response");
  }
  tu_pb_free(&req);
  rgrpc_status_code code = finish_call(w, call, got == N);
  rgrpc_call_free(call);
  return code;
}

/* StreamingInputCall: 4 requests of 1..4000 bytes; the response has
 * their sum. */
static rgrpc_status_code call_client_stream(worker *w) {
  rgrpc_call *call = start(w, M_CLIENT_STREAM);
  int64_t sum = 0;
  bool sent = true;
  for (int i = 0; i < 4 && sent; i++) {
    size_t n = 1 + next_rand(w) % 4000;
    tu_pb req = tu_streaming_input_request(n);
    sent = send_pb(call, &req, 0);
    tu_pb_free(&req);
    sum += (int64_t)n;
  }
  bool complete = false;
  if (sent && close_send(call)) {
    rgrpc_buffer *buf = NULL;
    rgrpc_result rc = rgrpc_call_recv(call, &buf);
    CHECK_MSG(rc == RGRPC_RESULT_OK || rc == RGRPC_RESULT_END_OF_STREAM,
              "client stream: rgrpc_call_recv: %s", rgrpc_result_name(rc));
    if (rc == RGRPC_RESULT_OK) {
      int64_t agg = tu_aggregated_payload_size(rgrpc_buffer_data(buf), rgrpc_buffer_len(buf));
      CHECK_MSG(agg == sum, "client stream: aggregated %lld, want %lld", (long long)agg,
                (long long)sum);
      rgrpc_buffer_free(buf);
      complete = true;
    }
  }
  rgrpc_status_code code = finish_call(w, call, complete);
  rgrpc_call_free(call);
  return code;
}

/* FullDuplexCall: 4 ping-pongs, then half-close and the end. */
static rgrpc_status_code call_bidi(worker *w) {
  enum { N = 4 };
  rgrpc_call *call = start(w, M_BIDI);
  int got = 0;
  for (int i = 0; i < N; i++) {
    int32_t size = 1 + (int32_t)(next_rand(w) % 2000);
    tu_pb req = tu_streaming_output_request(&size, NULL, 1, next_rand(w) % 500, 0, NULL);
    bool sent = send_pb(call, &req, 0);
    tu_pb_free(&req);
    size_t len = 0;
    if (!sent || !recv_body(call, &len)) break;
    CHECK_MSG(len == (size_t)size, "bidi: response %d has %zu bytes, want %d", i, len, size);
    got++;
  }
  bool complete = false;
  if (got == N && close_send(call)) {
    size_t len = 0;
    CHECK_MSG(!recv_body(call, &len), "bidi: a response after the half-close");
    complete = true;
  }
  rgrpc_status_code code = finish_call(w, call, complete);
  rgrpc_call_free(call);
  return code;
}

static void *load(void *arg) {
  worker *w = arg;
  while (tu_now_ms() < w->end_ms) {
    int64_t t0 = tu_now_ms();
    pthread_mutex_lock(&w->mu);
    w->call_start_ms = t0;
    pthread_mutex_unlock(&w->mu);
    rgrpc_status_code code;
    switch (w->pattern) {
      case P_UNARY: code = call_unary(w); break;
      case P_SERVER_STREAM: code = call_server_stream(w); break;
      case P_CLIENT_STREAM: code = call_client_stream(w); break;
      default: code = call_bidi(w); break;
    }
    int64_t el = tu_now_ms() - t0;
    pthread_mutex_lock(&w->mu);
    w->call_start_ms = 0;
    pthread_mutex_unlock(&w->mu);
    /* The deadline: nothing outlives it by more than the grace, and
     * nothing says DEADLINE_EXCEEDED before it (t0 was read before the
     * call started, so its clock ran no longer than el). */
    CHECK_MSG(el <= w->timeout_ms + w->grace_ms, "phase %s: a %s call ended %s after %lld ms (deadline %lld ms)",
              w->ph->profile, PATTERN_NAMES[w->pattern], rgrpc_status_code_name(code),
              (long long)el, (long long)w->timeout_ms);
    if (code == RGRPC_STATUS_CODE_DEADLINE_EXCEEDED)
      CHECK_MSG(el >= w->timeout_ms - 1, "phase %s: %s call DEADLINE_EXCEEDED after %lld ms of %lld",
                w->ph->profile, PATTERN_NAMES[w->pattern], (long long)el, (long long)w->timeout_ms);
    bool allowed = (w->ph->allowed & BIT(code)) != 0;
    if (code == RGRPC_STATUS_CODE_UNAVAILABLE && w->ph->refused_twice)
      allowed = strstr(w->last_details, "GOAWAY") != NULL &&
                w->last_stats.transparent_retries >= 1;
    CHECK_MSG(allowed, "phase %s: a %s call ended %s (\"%s\", attempts %u, transparent retries %u), not allowed here",
              w->ph->profile, PATTERN_NAMES[w->pattern], rgrpc_status_code_name(code),
              w->last_details, w->last_stats.attempts, w->last_stats.transparent_retries);
    if (el - w->timeout_ms > w->worst_over_ms) w->worst_over_ms = el - w->timeout_ms;
    w->codes[code]++;
    w->by_pattern[w->pattern][code == RGRPC_STATUS_CODE_OK ? 0 : 1]++;
    w->calls++;
  }
  tu_latch_count_down(w->done);
  return NULL;
}

/* ------------------------------------------------------- proxy counts */

/* The proxy's count of `what` for `profile` (0 when absent). */
static long fault_count(const char *profile, const char *what) {
  const char *path = getenv("RGRPC_TEST_FAULT_COUNTS");
  CHECK_MSG(path != NULL, "RGRPC_TEST_FAULT_COUNTS is not set (run under with_server.py --fault-proxy)");
  FILE *f = fopen(path, "r");
  CHECK_MSG(f != NULL, "cannot open %s", path);
  char p[64], w[64];
  long n, found = 0;
  while (fscanf(f, "%63s %63s %ld", p, w, &n) == 3)
    if (strcmp(p, profile) == 0 && strcmp(w, what) == 0) found = n;
  fclose(f);
  return found;
}

/* ------------------------------------------------------------ phases */

typedef struct {
  long calls, codes[NCODES], retries, transparent;
  int64_t worst_over_ms, wall_ms;
} phase_result;

static void run_phase(const phase *ph, phase_result *res) {
  char env[64];
  snprintf(env, sizeof env, "RGRPC_TEST_FAULT_TARGETS_");
  for (const char *s = ph->profile; *s; s++) {
    size_t l = strlen(env);
    env[l] = (char)(*s >= 'a' && *s <= 'z' ? *s - 'a' + 'A' : *s);
    env[l + 1] = '\0';
  }
  const char *targets = getenv(env);
  CHECK_MSG(targets != NULL && strncmp(targets, "ipv4:", 5) == 0,
            "%s is not set (run under with_server.py --servers 3 --fault-proxy ...)", env);

  int64_t slow = tu_slow();
  rgrpc_channel_options *co = rgrpc_channel_options_new();
  CHECK_OK(rgrpc_channel_options_set_string(co, "grpc.service_config",
                                            ph->retries ? RETRY_CONFIG : NO_RETRY_CONFIG));
  CHECK_OK(rgrpc_channel_options_set_int(co, "grpc.initial_reconnect_backoff_ms", 100));
  CHECK_OK(rgrpc_channel_options_set_int(co, "grpc.max_reconnect_backoff_ms", 1000));
  rgrpc_channel *ch = tu_channel(targets, co);
  rgrpc_channel_options_free(co);

  int64_t timeout = ph->timeout_ms * slow;
  rgrpc_call_options *opts = rgrpc_call_options_new();
  CHECK_OK(rgrpc_call_options_set_timeout_ms(opts, timeout));
  if (ph->wait_for_ready) CHECK_OK(rgrpc_call_options_set_wait_for_ready(opts, true));

  int nworkers = ph->wait_for_ready ? 6 : MAX_WORKERS;
  int64_t run_ms = ph->run_ms;
  int64_t grace = 300 * slow;
  static worker ws[MAX_WORKERS];
  tu_latch done;
  tu_latch_init(&done, nworkers);
  int64_t t0 = tu_now_ms();
  pthread_t th[MAX_WORKERS];
  for (int i = 0; i < nworkers; i++) {
    worker *w = &ws[i];
    memset(w, 0, sizeof *w);
    CHECK(pthread_mutex_init(&w->mu, NULL) == 0);
    w->ph = ph;
    w->ch = ch;
    w->opts = opts;
    w->pattern = ph->wait_for_ready ? P_UNARY : i % NPATTERNS;
    w->end_ms = t0 + run_ms;
    w->timeout_ms = timeout;
    w->grace_ms = grace;
    w->worst_over_ms = INT64_MIN;
    w->rng = 0x9e3779b97f4a7c15ull * (uint64_t)(i + 1) + (uint64_t)t0;
    w->done = &done;
    w->phase_start_ms = t0;
    tu_thread_start(&th[i], load, w);
  }
  /* The watchdog: every call ends within its deadline + grace, so the
   * threads are done by then; if not, a call hangs. */
  if (!tu_latch_wait(&done, run_ms + timeout + grace + 5000 * slow)) {
    int64_t now = tu_now_ms();
    for (int i = 0; i < nworkers; i++) {
      pthread_mutex_lock(&ws[i].mu);
      if (ws[i].call_start_ms)
        fprintf(stderr, "  worker %d (%s): a call running for %lld ms\n", i,
                PATTERN_NAMES[ws[i].pattern], (long long)(now - ws[i].call_start_ms));
      pthread_mutex_unlock(&ws[i].mu);
    }
    tu_fail(__FILE__, __LINE__, "watchdog", "phase %s: calls still running %lld ms after the load ended (deadline %lld ms): a call hangs",
            ph->profile, (long long)(now - t0 - run_ms), (long long)timeout);
  }
  for (int i = 0; i < nworkers; i++) tu_thread_join(th[i]);
  tu_latch_destroy(&done);
  res->wall_ms = tu_now_ms() - t0;

  memset(res->codes, 0, sizeof res->codes);
  res->calls = res->retries = res->transparent = 0;
  res->worst_over_ms = INT64_MIN;
  long pat[NPATTERNS][2] = {{0}};
  for (int i = 0; i < nworkers; i++) {
    worker *w = &ws[i];
    res->calls += w->calls;
    res->retries += w->retries;
    res->transparent += w->transparent;
    if (w->worst_over_ms > res->worst_over_ms) res->worst_over_ms = w->worst_over_ms;
    for (int c = 0; c < NCODES; c++) res->codes[c] += w->codes[c];
    for (int p = 0; p < NPATTERNS; p++) {
      pat[p][0] += w->by_pattern[p][0];
      pat[p][1] += w->by_pattern[p][1];
    }
    pthread_mutex_destroy(&w->mu);
  }

  printf("  %s: %ld calls in %lld ms (deadline %lld ms, ended at the latest %lld ms %s it)\n",
         ph->profile, res->calls, (long long)res->wall_ms, (long long)timeout,
         (long long)(res->worst_over_ms < 0 ? -res->worst_over_ms : res->worst_over_ms),
         res->worst_over_ms < 0 ? "before" : "after");
  printf("    by status:");
  for (int c = 0; c < NCODES; c++)
    if (res->codes[c]) printf(" %s %ld", rgrpc_status_code_name((rgrpc_status_code)c), res->codes[c]);
  printf("\n    by pattern (ok/failed):");
  for (int p = 0; p < NPATTERNS; p++)
    if (pat[p][0] + pat[p][1]) printf(" %s %ld/%ld", PATTERN_NAMES[p], pat[p][0], pat[p][1]);
  printf("\n    retries %ld, transparent retries %ld\n", res->retries, res->transparent);
  for (int c = 1; c < NCODES; c++)
    for (int i = 0; i < nworkers; i++)
      if (ws[i].details[c][0]) {
        printf("    e.g. %s: \"%s\"\n", rgrpc_status_code_name((rgrpc_status_code)c), ws[i].details[c]);
        break;
      }
  printf("    faults injected:");
  for (int k = 0; k < 5 && ph->faults[k]; k++) {
    long n = fault_count(ph->profile, ph->faults[k]);
    printf(" %s %ld", ph->faults[k], n);
  }
  printf(" (connections %ld", fault_count(ph->profile, "connections"));
  long given_up = fault_count(ph->profile, "given_up");
  if (given_up) printf(", faults given up: %ld", given_up);
  printf(")\n");
  fflush(stdout);

  /* Every call ran the promise's checks in load(); over the phase: */
  /* (Under valgrind, beside other tests, a thread makes about a call a
   * second in the delay and stall phases.) */
  CHECK_MSG(res->calls >= (slow > 1 ? nworkers / 2 : 4L * nworkers), "phase %s: only %ld calls",
            ph->profile, res->calls);
  for (int k = 0; k < 5 && ph->faults[k]; k++)
    CHECK_MSG(fault_count(ph->profile, ph->faults[k]) > 0,
              "phase %s: the proxy injected no %s: the phase tried nothing", ph->profile,
              ph->faults[k]);
  if (ph->storm) {
    long ok = res->codes[RGRPC_STATUS_CODE_OK];
    CHECK_MSG(ok * 2 > res->calls, "phase %s: only %ld of %ld calls OK", ph->profile, ok,
              res->calls);
    CHECK_MSG(ok < res->calls, "phase %s: no call failed: the storm did nothing", ph->profile);
  }
  rgrpc_call_options_free(opts);
  rgrpc_channel_free(ch);
}

static phase_result results[NPHASES];

/* One call of each pattern straight to the first server (no proxy): the
 * code paths are warm before the first phase (under valgrind the first
 * calls take seconds). */
static void warm_up(void) {
  static const phase direct = {"direct", {NULL}, false, false, 30000, 0, OK_, false, false};
  worker w;
  memset(&w, 0, sizeof w);
  w.ph = &direct;
  w.ch = tu_channel(NULL, NULL);
  w.rng = 1;
  CHECK_CODE(call_unary(&w), RGRPC_STATUS_CODE_OK);
  CHECK_CODE(call_server_stream(&w), RGRPC_STATUS_CODE_OK);
  CHECK_CODE(call_client_stream(&w), RGRPC_STATUS_CODE_OK);
  CHECK_CODE(call_bidi(&w), RGRPC_STATUS_CODE_OK);
  rgrpc_channel_free(w.ch);
}

/* RGRPC_STORM_PHASES=reset,goaway (say) runs only those phases. */
static bool selected(const char *profile) {
  const char *sel = getenv("RGRPC_STORM_PHASES");
  if (sel == NULL || sel[0] == '\0') return true;
  size_t n = strlen(profile);
  for (const char *p = sel; (p = strstr(p, profile)) != NULL; p += n)
    if ((p == sel || p[-1] == ',') && (p[n] == ',' || p[n] == '\0')) return true;
  return false;
}

static void test_fault_storm(void) {
  warm_up();
  for (size_t i = 0; i < NPHASES; i++)
    if (selected(PHASES[i].profile)) run_phase(&PHASES[i], &results[i]);

  /* The table of calls by status. */
  printf("\n  %-7s %7s %7s %12s %18s %6s %8s %12s\n", "phase", "calls", "OK", "UNAVAILABLE",
         "DEADLINE_EXCEEDED", "other", "retries", "transparent");
  long tot[4] = {0}, tot_calls = 0;
  for (size_t i = 0; i < NPHASES; i++) {
    const phase_result *r = &results[i];
    long ok = r->codes[RGRPC_STATUS_CODE_OK], un = r->codes[RGRPC_STATUS_CODE_UNAVAILABLE],
         de = r->codes[RGRPC_STATUS_CODE_DEADLINE_EXCEEDED];
    long other = r->calls - ok - un - de;
    printf("  %-7s %7ld %7ld %12ld %18ld %6ld %8ld %12ld\n", PHASES[i].profile, r->calls, ok, un,
           de, other, r->retries, r->transparent);
    tot[0] += ok;
    tot[1] += un;
    tot[2] += de;
    tot[3] += other;
    tot_calls += r->calls;
  }
  printf("  %-7s %7ld %7ld %12ld %18ld %6ld\n\n", "all", tot_calls, tot[0], tot[1], tot[2], tot[3]);
  fflush(stdout);
}

int main(void) {
  RUN_TEST(test_fault_storm);
  return 0;
}

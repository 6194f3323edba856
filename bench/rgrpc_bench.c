/*
 * rgrpc_bench: a grpc.testing.BenchmarkService client on the rgrpc C API
 * and protobuf-c. Command line, output and exit codes: bench_common.h and
 * bench/README.md.
 *
 * Every scenario serializes its SimpleRequest for each operation and
 * parses each SimpleResponse, as the C++ and tonic reference clients do.
 *
 * large_unary serializes each request straight into a buffer from
 * rgrpc_buffer_new and sends it with rgrpc_call_unary_buffer (no copy of
 * the request inside rgrpc); unary_lat uses the one-call rgrpc_call_unary.
 *
 * server_stream receives in push mode by default: a message callback
 * (rgrpc_call_on_message) running on the main thread while it waits in
 * rgrpc_call_finish, so no return to C and back per message;
 * RGRPC_BENCH_STREAM=pull loops over rgrpc_call_recv instead.
 *
 * unary_tput runs --concurrency calls in flight on one channel. Three ways
 * are built in, chosen with the environment variable RGRPC_BENCH_TPUT:
 *   async   (default) rgrpc_call_unary_async with inline callbacks
 *           (rgrpc_call_options_set_inline_callbacks): each completion
 *           callback records the call and starts the next one on the
 *           thread driving the I/O, so no thread hand-off at all;
 *   async_pool  the same with the default callbacks, which run on a
 *           library thread that may block (a hand-off per call);
 *   threads --concurrency application threads, each looping over the
 *           blocking rgrpc_call_unary;
 *   cq      one application thread with a completion queue, as an event
 *           loop runs it: poll(2) on the queue's descriptor, drain it with
 *           rgrpc_completion_queue_next, start the next call
 *           (rgrpc_call_unary_cq) for each one that ended;
 *   cq_wait the same, taking completions with the blocking
 *           rgrpc_completion_queue_wait (the waiting thread does the I/O).
 * bench/README.md has the figures of each.
 *
 * RGRPC_BENCH_INTERCEPT=N puts N pass-through interceptors (every hook,
 * answered at once) on the channel.
 */
#define _GNU_SOURCE
#include "bench_common.h"

#include <grpc/testing/messages.pb-c.h>
#include <poll.h>
#include <pthread.h>
#include <rgrpc.h>

#define M_UNARY "/grpc.testing.BenchmarkService/UnaryCall"
#define M_PINGPONG "/grpc.testing.BenchmarkService/StreamingCall"
#define M_FROM_CLIENT "/grpc.testing.BenchmarkService/StreamingFromClient"
#define M_FROM_SERVER "/grpc.testing.BenchmarkService/StreamingFromServer"

static bench_args A;
static rgrpc_channel *CH;
static uint8_t *REQ_BODY; /* --req-size bytes of payload */

/* ---- protobuf ---- */

typedef struct {
  uint8_t *buf;
  size_t cap;
} packbuf;

/* SimpleRequest{response_size, payload.body}: serialized into `out`, or
 * with out == NULL only its serialized size. */
static size_t simple_request(uint8_t *out) {
  Grpc__Testing__SimpleRequest req = GRPC__TESTING__SIMPLE_REQUEST__INIT;
  Grpc__Testing__Payload payload = GRPC__TESTING__PAYLOAD__INIT;
  payload.body.data = REQ_BODY;
  payload.body.len = (size_t)A.req_size;
  req.response_size = (int32_t)A.resp_size;
  req.payload = &payload;
  return out ? grpc__testing__simple_request__pack(&req, out)
             : grpc__testing__simple_request__get_packed_size(&req);
}

/* Serializes the SimpleRequest into pb. */
static size_t pack_request(packbuf *pb) {
  size_t n = simple_request(NULL);
  if (n > pb->cap) {
    free(pb->buf);
    pb->buf = (uint8_t *)malloc(n);
    if (!pb->buf) {
      fprintf(stderr, "rgrpc_bench: out of memory\n");
      exit(BENCH_EXIT_FAILED);
    }
    pb->cap = n;
  }
  return simple_request(pb->buf);
}

/* Parses a SimpleResponse and checks its payload size; 0 on success. */
static int check_response(const uint8_t *data, size_t len) {
  Grpc__Testing__SimpleResponse *r = grpc__testing__simple_response__unpack(NULL, len, data);
  if (!r) {
    fprintf(stderr, "rgrpc_bench: unparsable SimpleResponse (%zu bytes)\n", len);
    return -1;
  }
  size_t got = r->payload ? r->payload->body.len : 0;
  grpc__testing__simple_response__free_unpacked(r, NULL);
  if (got != (size_t)A.resp_size) {
    fprintf(stderr, "rgrpc_bench: response payload %zu bytes, expected %ld\n", got, A.resp_size);
    return -1;
  }
  return 0;
}

static void report_status(const char *what, rgrpc_result rc, const rgrpc_status *st) {
  if (st)
    fprintf(stderr, "rgrpc_bench: %s: %s (%s): %s\n", what, rgrpc_result_name(rc),
            rgrpc_status_code_name(rgrpc_status_get_code(st)), rgrpc_status_details(st));
  else
    fprintf(stderr, "rgrpc_bench: %s: %s\n", what, rgrpc_result_name(rc));
}

/* Starts a call on `method`; NULL (reported as `what`) when it cannot. */
static rgrpc_call *start_call(const char *method, const char *what) {
  rgrpc_call *call = NULL;
  rgrpc_result rc = rgrpc_call_start(CH, method, NULL, &call);
  if (rc) {
    report_status(what, rc, NULL);
    return NULL;
  }
  return call;
}

/* Reports why an operation on a streaming call failed, with the call's
 * final status when it has ended. */
static void report_call_failure(const char *what, rgrpc_result rc, rgrpc_call *call) {
  const rgrpc_status *st = NULL;
  if (rc == RGRPC_RESULT_END_OF_STREAM || rc == RGRPC_RESULT_CALL_ENDED) rgrpc_call_finish(call, &st);
  report_status(what, rc, st);
  rgrpc_status_free(st);
}

/* ---- unary_lat, large_unary: one blocking call at a time ----
 * unary_lat: rgrpc_call_unary (the request copied once inside rgrpc).
 * large_unary (`in_place`): the request serialized straight into an
 * rgrpc_buffer_new buffer and sent with rgrpc_call_unary_buffer (no copy
 * inside rgrpc, as C++ serializes into gRPC's own slice). */

static int run_unary_blocking(bench_result *res, int in_place) {
  packbuf pb = {0};
  long total = A.warmup + A.calls;
  int ret = 0;
  for (long i = 0; i < total; i++) {
    if (i == A.warmup) bench_start(res);
    uint64_t t0 = bench_now_ns();
    rgrpc_buffer *resp = NULL;
    const rgrpc_status *st = NULL;
    rgrpc_result rc;
    if (in_place) {
      rgrpc_buffer *msg = NULL;
      uint8_t *data = NULL;
      if ((rc = rgrpc_buffer_new(simple_request(NULL), &msg, &data)) != RGRPC_RESULT_OK) {
        report_status("rgrpc_buffer_new", rc, NULL);
        ret = BENCH_EXIT_FAILED;
        break;
      }
      simple_request(data);
      rc = rgrpc_call_unary_buffer(CH, M_UNARY, NULL, msg, &resp, &st);
    } else {
      size_t n = pack_request(&pb);
      rc = rgrpc_call_unary(CH, M_UNARY, NULL, pb.buf, n, &resp, &st);
    }
    if (rc != RGRPC_RESULT_OK) {
      report_status("UnaryCall", rc, st);
      rgrpc_status_free(st);
      ret = BENCH_EXIT_FAILED;
      break;
    }
    int bad = check_response(rgrpc_buffer_data(resp), rgrpc_buffer_len(resp));
    rgrpc_buffer_free(resp);
    rgrpc_status_free(st);
    if (bad) {
      ret = BENCH_EXIT_FAILED;
      break;
    }
    uint64_t t1 = bench_now_ns();
    if (i >= A.warmup) {
      bench_record(res, t1 - t0);
      res->ops++;
      if (bench_expired(res, A.duration, t1)) break;
    }
  }
  if (!ret) bench_stop(res);
  free(pb.buf);
  return ret;
}

/* ---- pingpong_lat: StreamingCall, one message each way at a time ---- */

static int run_pingpong(bench_result *res) {
  packbuf pb = {0};
  rgrpc_call *call = start_call(M_PINGPONG, "StreamingCall start");
  if (!call) return BENCH_EXIT_FAILED;
  rgrpc_result rc;
  int ret = 0;
  long total = A.warmup + A.calls;
  for (long i = 0; i < total; i++) {
    if (i == A.warmup) bench_start(res);
    uint64_t t0 = bench_now_ns();
    size_t n = pack_request(&pb);
    if ((rc = rgrpc_call_send(call, pb.buf, n, 0)) != RGRPC_RESULT_OK) {
      report_call_failure("StreamingCall send", rc, call);
      ret = BENCH_EXIT_FAILED;
      break;
    }
    rgrpc_buffer *msg = NULL;
    if ((rc = rgrpc_call_recv(call, &msg)) != RGRPC_RESULT_OK) {
      report_call_failure("StreamingCall recv", rc, call);
      ret = BENCH_EXIT_FAILED;
      break;
    }
    int bad = check_response(rgrpc_buffer_data(msg), rgrpc_buffer_len(msg));
    rgrpc_buffer_free(msg);
    if (bad) {
      ret = BENCH_EXIT_FAILED;
      break;
    }
    uint64_t t1 = bench_now_ns();
    if (i >= A.warmup) {
      bench_record(res, t1 - t0);
      res->ops++;
      if (bench_expired(res, A.duration, t1)) break;
    }
  }
  if (!ret) bench_stop(res);
  rgrpc_call_close_send(call);
  const rgrpc_status *st = NULL;
  rc = rgrpc_call_finish(call, &st);
  if (!ret && rc != RGRPC_RESULT_OK) {
    report_status("StreamingCall finish", rc, st);
    ret = BENCH_EXIT_FAILED;
  }
  rgrpc_status_free(st);
  rgrpc_call_free(call);
  free(pb.buf);
  return ret;
}

/* ---- unary_tput: --concurrency calls in flight ---- */

typedef struct {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  bench_result *res;
  long issued;     /* calls started */
  long completed;  /* calls ended */
  long inflight;
  int measuring;   /* warmup done, measured phase running */
  int done;        /* measured phase over: start no more calls */
  int failed;
  const uint8_t *req;
  size_t req_len;
  rgrpc_call_options *opts; /* NULL, or inline callbacks */
} tput_state;

typedef struct {
  tput_state *s;
  uint64_t t0;
} tput_slot;

static tput_state T;

/* Under T.mu: accounts for one ended call at time `now`; returns whether
 * the caller should start another. */
static int tput_complete_locked(uint64_t t0, uint64_t now, int ok) {
  T.inflight--;
  T.completed++;
  if (!ok) {
    T.failed = 1;
    T.done = 1;
  }
  if (!T.done) {
    if (T.measuring) {
      bench_record(T.res, now - t0);
      T.res->ops++;
      if (T.res->ops >= A.calls || bench_expired(T.res, A.duration, now)) {
        T.done = 1;
        bench_stop(T.res);
      }
    } else if (T.completed >= A.warmup) {
      T.measuring = 1;
      bench_start(T.res);
    }
  }
  int again = !T.done && T.issued < A.warmup + A.calls;
  if (again) {
    T.issued++;
    T.inflight++;
  }
  if (T.inflight == 0) pthread_cond_signal(&T.cv);
  return again;
}

static void tput_on_done(void *user_data, const rgrpc_status *st, const uint8_t *resp, size_t len);

static void tput_issue(tput_slot *slot) {
  slot->t0 = bench_now_ns();
  rgrpc_result rc =
      rgrpc_call_unary_async(CH, M_UNARY, T.opts, T.req, T.req_len, tput_on_done, slot, NULL);
  if (rc != RGRPC_RESULT_OK) {
    report_status("UnaryCall (async) start", rc, NULL);
    pthread_mutex_lock(&T.mu);
    T.inflight--;
    T.failed = T.done = 1;
    if (T.inflight == 0) pthread_cond_signal(&T.cv);
    pthread_mutex_unlock(&T.mu);
  }
}

static void tput_on_done(void *user_data, const rgrpc_status *st, const uint8_t *resp, size_t len) {
  tput_slot *slot = (tput_slot *)user_data;
  int ok = rgrpc_status_get_code(st) == RGRPC_STATUS_CODE_OK;
  if (!ok) report_status("UnaryCall (async)", RGRPC_RESULT_RPC_FAILED, st);
  else if (check_response(resp, len)) ok = 0;
  /* The clock is read under the lock: callbacks may run on several
   * threads, and one that read it before another started the measured
   * phase would see time run backwards. */
  pthread_mutex_lock(&T.mu);
  int again = tput_complete_locked(slot->t0, bench_now_ns(), ok);
  pthread_mutex_unlock(&T.mu);
  if (again) tput_issue(slot);
}

static void *tput_thread(void *arg) {
  (void)arg;
  packbuf pb = {0};
  pthread_mutex_lock(&T.mu);
  for (;;) {
    if (T.done || T.issued >= A.warmup + A.calls) break;
    T.issued++;
    T.inflight++;
    pthread_mutex_unlock(&T.mu);
    uint64_t t0 = bench_now_ns();
    size_t n = pack_request(&pb);
    rgrpc_buffer *resp = NULL;
    const rgrpc_status *st = NULL;
    rgrpc_result rc = rgrpc_call_unary(CH, M_UNARY, NULL, pb.buf, n, &resp, &st);
    int ok = rc == RGRPC_RESULT_OK;
    if (!ok) report_status("UnaryCall", rc, st);
    else if (check_response(rgrpc_buffer_data(resp), rgrpc_buffer_len(resp))) ok = 0;
    rgrpc_buffer_free(resp);
    rgrpc_status_free(st);
    pthread_mutex_lock(&T.mu);
    uint64_t now = bench_now_ns(); /* under the lock, see tput_on_done */
    /* the "again" slot is taken by the loop head instead */
    T.inflight--;
    T.completed++;
    if (!ok) T.failed = T.done = 1;
    if (!T.done) {
      if (T.measuring) {
        bench_record(T.res, now - t0);
        T.res->ops++;
        if (T.res->ops >= A.calls || bench_expired(T.res, A.duration, now)) {
          T.done = 1;
          bench_stop(T.res);
        }
      } else if (T.completed >= A.warmup) {
        T.measuring = 1;
        bench_start(T.res);
      }
    }
  }
  if (T.inflight == 0) pthread_cond_signal(&T.cv);
  pthread_mutex_unlock(&T.mu);
  free(pb.buf);
  return NULL;
}

/* unary_tput through a completion queue, from this thread alone. */
static int run_unary_tput_cq(bench_result *res, int use_wait) {
  rgrpc_completion_queue *cq = NULL;
  if (rgrpc_completion_queue_new(&cq, NULL) != RGRPC_RESULT_OK) return BENCH_EXIT_FAILED;
  /* The waiting mode never polls the descriptor, so it does not ask for
   * it (a queue whose descriptor is never handed out costs no system
   * calls to keep it readable). */
  struct pollfd pfd = {use_wait ? -1 : rgrpc_completion_queue_fd(cq), POLLIN, 0};
  int n = A.concurrency;
  tput_slot *slots = (tput_slot *)calloc((size_t)n, sizeof *slots);
  pthread_mutex_lock(&T.mu);
  for (int k = 0; k < n && T.issued < A.warmup + A.calls; k++) {
    T.issued++;
    T.inflight++;
    slots[k].s = &T;
    slots[k].t0 = bench_now_ns();
    rgrpc_result rc = rgrpc_call_unary_cq(CH, M_UNARY, NULL, T.req, T.req_len, cq, &slots[k], NULL);
    if (rc != RGRPC_RESULT_OK) {
      report_status("UnaryCall (cq) start", rc, NULL);
      T.inflight--;
      T.failed = T.done = 1;
      break;
    }
  }
  int drained = 1; /* the last next() found the queue empty */
  while (T.inflight > 0) {
    rgrpc_completion c;
    /* Wait (or poll) only once the queue is drained; take what waits
     * with next() in between, as an event loop does. */
    rgrpc_result rc = use_wait && drained ? rgrpc_completion_queue_wait(cq, 100, &c)
                                          : rgrpc_completion_queue_next(cq, &c);
    drained = rc != RGRPC_RESULT_OK;
    if (use_wait && rc == RGRPC_RESULT_QUEUE_EMPTY) continue;
    if (rc == RGRPC_RESULT_QUEUE_EMPTY) {
      pthread_mutex_unlock(&T.mu);
      (void)poll(&pfd, 1, 100);
      pthread_mutex_lock(&T.mu);
      rc = RGRPC_RESULT_TIMEOUT;
    }
    if (rc == RGRPC_RESULT_TIMEOUT) {
      if (T.measuring && !T.done && bench_expired(res, A.duration + 10, bench_now_ns())) {
        fprintf(stderr, "rgrpc_bench: calls stopped completing\n");
        T.failed = T.done = 1;
        bench_stop(res);
        break;
      }
      continue;
    }
    if (rc != RGRPC_RESULT_OK) {
      report_status("completion queue", rc, NULL);
      T.failed = T.done = 1;
      break;
    }
    tput_slot *slot = (tput_slot *)c.tag;
    int ok = c.result == RGRPC_RESULT_OK;
    if (!ok) report_status("UnaryCall (cq)", c.result, c.status);
    else if (check_response(rgrpc_buffer_data(c.message), rgrpc_buffer_len(c.message))) ok = 0;
    rgrpc_buffer_free(c.message);
    rgrpc_status_free(c.status);
    uint64_t now = bench_now_ns();
    if (tput_complete_locked(slot->t0, now, ok)) {
      slot->t0 = now;
      if (rgrpc_call_unary_cq(CH, M_UNARY, NULL, T.req, T.req_len, cq, slot, NULL) != RGRPC_RESULT_OK) {
        T.inflight--;
        T.failed = T.done = 1;
      }
    }
  }
  int stuck = T.inflight > 0;
  pthread_mutex_unlock(&T.mu);
  if (!stuck) {
    rgrpc_completion_queue_free(cq);
    free(slots);
  }
  return T.failed ? BENCH_EXIT_FAILED : 0;
}

static int run_unary_tput(bench_result *res) {
  const char *mode = getenv("RGRPC_BENCH_TPUT");
  int threads = mode && !strcmp(mode, "threads");
  int cq_mode = mode && !strcmp(mode, "cq") ? 1 : mode && !strcmp(mode, "cq_wait") ? 2 : 0;
  if (!threads && !cq_mode && !(mode && !strcmp(mode, "async_pool"))) {
    T.opts = rgrpc_call_options_new();
    if (!T.opts || rgrpc_call_options_set_inline_callbacks(T.opts, true) != RGRPC_RESULT_OK) {
      fprintf(stderr, "rgrpc_bench: cannot set inline callbacks\n");
      return BENCH_EXIT_FAILED;
    }
  }
  pthread_mutex_init(&T.mu, NULL);
  pthread_cond_init(&T.cv, NULL);
  T.res = res;
  packbuf pb = {0};
  /* The async callbacks share one request: every request of this
   * benchmark is the same, and the library copies it per call. */
  T.req_len = pack_request(&pb);
  T.req = pb.buf;
  int n = A.concurrency;
  if (A.warmup == 0) {
    T.measuring = 1;
    bench_start(res);
  }
  int ret = 0;
  if (cq_mode) {
    ret = run_unary_tput_cq(res, cq_mode == 2);
  } else if (threads) {
    pthread_t *th = (pthread_t *)calloc((size_t)n, sizeof *th);
    int started = 0;
    for (; started < n; started++)
      if (pthread_create(&th[started], NULL, tput_thread, NULL)) break;
    for (int i = 0; i < started; i++) pthread_join(th[i], NULL);
    free(th);
  } else {
    tput_slot *slots = (tput_slot *)calloc((size_t)n, sizeof *slots);
    int k = 0;
    pthread_mutex_lock(&T.mu);
    for (; k < n && T.issued < A.warmup + A.calls; k++) {
      T.issued++;
      T.inflight++;
      slots[k].s = &T;
    }
    pthread_mutex_unlock(&T.mu);
    for (int i = 0; i < k; i++) tput_issue(&slots[i]);
    pthread_mutex_lock(&T.mu);
    while (T.inflight > 0) {
      /* Wake up now and then to end the phase on --duration even if
       * calls stop completing. */
      struct timespec ts;
      clock_gettime(CLOCK_REALTIME, &ts);
      ts.tv_nsec += 100000000;
      if (ts.tv_nsec >= 1000000000) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000;
      }
      pthread_cond_timedwait(&T.cv, &T.mu, &ts);
      if (T.measuring && !T.done && bench_expired(res, A.duration + 10, bench_now_ns())) {
        fprintf(stderr, "rgrpc_bench: calls stopped completing\n");
        T.failed = T.done = 1;
        bench_stop(res);
        break;
      }
    }
    int stuck = T.inflight > 0;
    pthread_mutex_unlock(&T.mu);
    if (!stuck) free(slots); /* else callbacks may still use them */
    if (!stuck) rgrpc_call_options_free(T.opts);
  }
  if (T.failed) ret = BENCH_EXIT_FAILED;
  else if (!T.done) bench_stop(res); /* --calls issued before the phase ended */
  free(pb.buf);
  return ret;
}

/* ---- server_stream: StreamingFromServer, messages received per second ---- */

/* Push mode (the default): messages go to a message callback
 * (rgrpc_call_on_message) on the thread driving the I/O, here the main
 * thread blocked in rgrpc_call_finish; the callback cancels the call when
 * done. RGRPC_BENCH_STREAM=pull loops over rgrpc_call_recv instead. */
typedef struct {
  bench_result *res;
  rgrpc_call *call;
  long seen, total;
  int bad, done;
} push_state;

static void on_stream_message(void *user_data, const uint8_t *data, size_t len) {
  push_state *ps = (push_state *)user_data;
  if (ps->done) return;
  if (check_response(data, len)) {
    ps->bad = 1;
    ps->done = 1;
    rgrpc_call_cancel(ps->call);
    return;
  }
  long i = ps->seen++;
  if (i + 1 == A.warmup) {
    bench_start(ps->res);
  } else if (i >= A.warmup) {
    ps->res->ops++;
    if (i + 1 >= ps->total ||
        ((ps->res->ops & 255) == 0 && bench_expired(ps->res, A.duration, bench_now_ns()))) {
      bench_stop(ps->res);
      ps->done = 1;
      rgrpc_call_cancel(ps->call);
    }
  }
}

static int run_server_stream_push(bench_result *res) {
  packbuf pb = {0};
  rgrpc_call *call = start_call(M_FROM_SERVER, "StreamingFromServer start");
  if (!call) return BENCH_EXIT_FAILED;
  rgrpc_result rc;
  push_state ps = {res, call, 0, A.warmup + A.calls, 0, 0};
  if (A.warmup == 0) bench_start(res);
  int ret = 0;
  if ((rc = rgrpc_call_on_message(call, on_stream_message, &ps)) != RGRPC_RESULT_OK) {
    report_status("rgrpc_call_on_message", rc, NULL);
    ret = BENCH_EXIT_FAILED;
  }
  size_t n = pack_request(&pb);
  if (!ret && (rc = rgrpc_call_send(call, pb.buf, n, RGRPC_SEND_LAST)) != RGRPC_RESULT_OK) {
    report_call_failure("StreamingFromServer send", rc, call);
    ret = BENCH_EXIT_FAILED;
  }
  const rgrpc_status *st = NULL;
  rgrpc_call_finish(call, &st);
  if (!ret && (ps.bad || !ps.done)) {
    report_status("StreamingFromServer", RGRPC_RESULT_RPC_FAILED, st);
    ret = BENCH_EXIT_FAILED;
  }
  rgrpc_status_free(st);
  rgrpc_call_free(call);
  free(pb.buf);
  return ret;
}

static int run_server_stream(bench_result *res) {
  const char *mode = getenv("RGRPC_BENCH_STREAM");
  if (!mode || strcmp(mode, "pull")) return run_server_stream_push(res);
  packbuf pb = {0};
  rgrpc_call *call = start_call(M_FROM_SERVER, "StreamingFromServer start");
  if (!call) return BENCH_EXIT_FAILED;
  rgrpc_result rc;
  size_t n = pack_request(&pb);
  int ret = 0;
  if ((rc = rgrpc_call_send(call, pb.buf, n, RGRPC_SEND_LAST)) != RGRPC_RESULT_OK) {
    report_call_failure("StreamingFromServer send", rc, call);
    ret = BENCH_EXIT_FAILED;
  }
  long total = A.warmup + A.calls;
  if (A.warmup == 0) bench_start(res);
  for (long i = 0; !ret && i < total; i++) {
    rgrpc_buffer *msg = NULL;
    if ((rc = rgrpc_call_recv(call, &msg)) != RGRPC_RESULT_OK) {
      report_call_failure("StreamingFromServer recv", rc, call);
      ret = BENCH_EXIT_FAILED;
      break;
    }
    int bad = check_response(rgrpc_buffer_data(msg), rgrpc_buffer_len(msg));
    rgrpc_buffer_free(msg);
    if (bad) {
      ret = BENCH_EXIT_FAILED;
      break;
    }
    if (i + 1 == A.warmup) {
      bench_start(res);
    } else if (i >= A.warmup) {
      res->ops++;
      /* checking the clock every message would cost as much as a message */
      if ((res->ops & 255) == 0 && bench_expired(res, A.duration, bench_now_ns())) break;
    }
  }
  if (!ret) bench_stop(res);
  /* The stream is endless: cancel it. */
  rgrpc_call_cancel(call);
  rgrpc_call_free(call);
  free(pb.buf);
  return ret;
}

/* ---- client_stream: StreamingFromClient, messages sent per second ---- */

/* Sends `count` messages (fewer once `res` is measuring and --duration
 * passes) on one StreamingFromClient call and waits for its response.
 * Returns the number sent, or -1. */
static long client_stream_call(long count, bench_result *res) {
  packbuf pb = {0};
  rgrpc_call *call = start_call(M_FROM_CLIENT, "StreamingFromClient start");
  if (!call) return -1;
  rgrpc_result rc;
  long sent = 0;
  for (; sent < count; sent++) {
    size_t n = pack_request(&pb);
    /* The buffer hint lets messages leave 64 KiB at a time;
     * rgrpc_call_close_send below writes the rest. */
    if ((rc = rgrpc_call_send(call, pb.buf, n, RGRPC_SEND_BUFFER_HINT)) != RGRPC_RESULT_OK) {
      report_call_failure("StreamingFromClient send", rc, call);
      break;
    }
    if (res && (sent & 255) == 255 && bench_expired(res, A.duration, bench_now_ns())) {
      sent++;
      break;
    }
  }
  rgrpc_call_close_send(call);
  rgrpc_buffer *msg = NULL;
  rgrpc_result rrc = rgrpc_call_recv(call, &msg);
  const rgrpc_status *st = NULL;
  rgrpc_result frc = rgrpc_call_finish(call, &st);
  long ret = sent;
  if (rc != RGRPC_RESULT_OK) ret = -1;
  else if (frc != RGRPC_RESULT_OK) {
    report_status("StreamingFromClient", frc, st);
    ret = -1;
  } else if (rrc != RGRPC_RESULT_OK) {
    report_status("StreamingFromClient recv", rrc, NULL);
    ret = -1;
  } else if (check_response(rgrpc_buffer_data(msg), rgrpc_buffer_len(msg))) {
    ret = -1;
  }
  rgrpc_buffer_free(msg);
  rgrpc_status_free(st);
  rgrpc_call_free(call);
  free(pb.buf);
  return ret;
}

static int run_client_stream(bench_result *res) {
  /* Warmup: a call of its own (connects, warms the allocator). */
  if (A.warmup > 0 && client_stream_call(A.warmup, NULL) < 0) return BENCH_EXIT_FAILED;
  bench_start(res);
  long sent = client_stream_call(A.calls, res);
  bench_stop(res);
  if (sent < 0) return BENCH_EXIT_FAILED;
  res->ops = sent;
  return 0;
}

/* A pass-through interceptor hook (RGRPC_BENCH_INTERCEPT). */
static void pass_hook(void *user_data, rgrpc_hook *hook) {
  (void)user_data;
  rgrpc_hook_proceed(hook);
}

int main(int argc, char **argv) {
  int rc = bench_parse_args(argc, argv, &A);
  if (rc) return rc;
  if (A.scenario == SC_UNKNOWN) {
    fprintf(stderr, "rgrpc_bench: scenario %s not implemented\n", A.scenario_name);
    return BENCH_EXIT_UNIMPLEMENTED;
  }
  REQ_BODY = (uint8_t *)calloc((size_t)A.req_size + 1, 1);
  /* RGRPC_BENCH_TARGET replaces --host/--port with any target (e.g. an
   * ipv4: list of several servers); RGRPC_BENCH_LB sets
   * grpc.lb_policy_name; RGRPC_BENCH_SERVICE_CONFIG grpc.service_config. The channel's creation time goes to stderr. */
  static char target_buf[512];
  const char *target = getenv("RGRPC_BENCH_TARGET");
  if (!target) {
    snprintf(target_buf, sizeof target_buf, "%s:%d", A.host, A.port);
    target = target_buf;
  }
  rgrpc_channel_options *opts = rgrpc_channel_options_new();
  rgrpc_channel_options_set_int(opts, "grpc.max_receive_message_length", -1);
  const char *lb = getenv("RGRPC_BENCH_LB");
  if (lb && rgrpc_channel_options_set_string(opts, "grpc.lb_policy_name", lb)) {
    fprintf(stderr, "rgrpc_bench: %s\n", rgrpc_channel_options_last_error(opts));
    return BENCH_EXIT_FAILED;
  }
  /* RGRPC_BENCH_SERVICE_CONFIG sets grpc.service_config (e.g. a retry
   * policy, to measure what it costs a call that succeeds at once). */
  const char *sc = getenv("RGRPC_BENCH_SERVICE_CONFIG");
  if (sc && rgrpc_channel_options_set_string(opts, "grpc.service_config", sc)) {
    fprintf(stderr, "rgrpc_bench: %s\n", rgrpc_channel_options_last_error(opts));
    return BENCH_EXIT_FAILED;
  }
  /* RGRPC_BENCH_INTERCEPT=N adds N interceptors with every hook, each
   * answering at once (rgrpc_hook_proceed): what one costs a call. */
  const char *ic = getenv("RGRPC_BENCH_INTERCEPT");
  for (int i = 0; ic && i < atoi(ic); i++) {
    const rgrpc_interceptor *it = NULL;
    if (rgrpc_interceptor_new(RGRPC_HOOK_ALL, pass_hook, NULL, NULL, &it) ||
        rgrpc_channel_options_add_interceptor(opts, it)) {
      fprintf(stderr, "rgrpc_bench: cannot add an interceptor\n");
      return BENCH_EXIT_FAILED;
    }
    rgrpc_interceptor_free(it);
  }
  rgrpc_error *err = NULL;
  uint64_t t0 = bench_now_ns();
  if (rgrpc_channel_new(target, NULL, opts, &CH, &err)) {
    fprintf(stderr, "rgrpc_bench: %s\n", rgrpc_error_message(err));
    rgrpc_error_free(err);
    return BENCH_EXIT_FAILED;
  }
  fprintf(stderr, "rgrpc_bench: channel_new %.1f us (target of %zu bytes)\n",
          (double)(bench_now_ns() - t0) / 1e3, strlen(target));
  rgrpc_channel_options_free(opts);

  bench_result res;
  int record = A.scenario != SC_SERVER_STREAM && A.scenario != SC_CLIENT_STREAM;
  if (bench_result_init(&res, A.calls, record)) {
    fprintf(stderr, "rgrpc_bench: out of memory\n");
    return BENCH_EXIT_FAILED;
  }
  switch (A.scenario) {
    case SC_UNARY_LAT: rc = run_unary_blocking(&res, 0); break;
    case SC_LARGE_UNARY: rc = run_unary_blocking(&res, 1); break;
    case SC_PINGPONG_LAT: rc = run_pingpong(&res); break;
    case SC_UNARY_TPUT: rc = run_unary_tput(&res); break;
    case SC_SERVER_STREAM: rc = run_server_stream(&res); break;
    case SC_CLIENT_STREAM: rc = run_client_stream(&res); break;
    default: rc = BENCH_EXIT_UNIMPLEMENTED; break;
  }
  if (rc == 0) {
    res.bytes = (double)res.ops * bench_bytes_per_op(&A);
    bench_report(&A, &res);
  }
  rgrpc_channel_close(CH);
  rgrpc_channel_free(CH);
  free(res.lat_ns);
  free(REQ_BODY);
  return rc;
}

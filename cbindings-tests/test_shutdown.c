/* rgrpc_shutdown, the global cleanup. One process, in order (it is final):
 * calls of the four patterns, a callback call, a message callback, a
 * connectivity watch and a log callback — each callback tries
 * rgrpc_shutdown and must be refused with RGRPC_RESULT_RUNTIME —, then, with
 * objects still alive (an open bidi call, a thread blocked in recv, a
 * pending wait-for-ready call with a callback, a ready future, a
 * subscription, the log callback), rgrpc_shutdown itself; then what those
 * objects do afterwards (RGRPC_RESULT_SHUTDOWN, readable, freeable) and a
 * second rgrpc_shutdown.
 *
 * ctest runs it (RGRPC_VALGRIND builds) under valgrind with every leak kind
 * an error and no suppressions (with_server.py --valgrind-strict): after
 * rgrpc_shutdown not one block of the library may be left, not even
 * "possibly lost" or "still reachable" ones of its threads. */
#include "test_util.h"

#define SLOW_STREAM_MESSAGES 30

/* --------------------------------------------------------------- records */

/* What a callback saw, and what rgrpc_shutdown returned inside it. */
typedef struct {
  pthread_mutex_t mu;
  tu_latch latch; /* counted down on the first run */
  int runs;
  uint32_t shutdown_rc; /* from the first run */
  uint32_t code;        /* status code or state of the last run */
  char details[256];
} rec;

static void rec_init(rec *r) {
  memset(r, 0, sizeof *r);
  pthread_mutex_init(&r->mu, NULL);
  tu_latch_init(&r->latch, 1);
  r->shutdown_rc = 0xFFFFFFFFu;
}

static void rec_destroy(rec *r) {
  tu_latch_destroy(&r->latch);
  pthread_mutex_destroy(&r->mu);
}

/* Records one run; the first one also tries rgrpc_shutdown. */
static void rec_run(rec *r, uint32_t code, const char *details) {
  pthread_mutex_lock(&r->mu);
  bool first = r->runs++ == 0;
  pthread_mutex_unlock(&r->mu);
  uint32_t rc = first ? (uint32_t)rgrpc_shutdown() : 0;
  pthread_mutex_lock(&r->mu);
  if (first) r->shutdown_rc = rc;
  r->code = code;
  snprintf(r->details, sizeof r->details, "%s", details ? details : "");
  pthread_mutex_unlock(&r->mu);
  if (first) tu_latch_count_down(&r->latch);
}

static int rec_runs(rec *r) {
  pthread_mutex_lock(&r->mu);
  int n = r->runs;
  pthread_mutex_unlock(&r->mu);
  return n;
}

static void on_unary(void *ud, const rgrpc_status *st, const uint8_t *resp, size_t len) {
  (void)resp;
  (void)len;
  rec_run(ud, rgrpc_status_get_code(st), rgrpc_status_details(st));
}

static void on_message(void *ud, const uint8_t *data, size_t len) {
  (void)data;
  (void)len;
  rec_run(ud, 0, NULL);
}

static void on_state(void *ud, rgrpc_connectivity_state s) { rec_run(ud, s, NULL); }

static void on_ready(void *ud, rgrpc_result r) { rec_run(ud, r, NULL); }

static void never_done(void *ud, const rgrpc_status *st) {
  (void)st;
  tu_fail(__FILE__, __LINE__, "never_done", "ran (user_data %p)", ud);
}

/* The log callback: the first line tries rgrpc_shutdown; destroy counts. */
typedef struct {
  rec lines;
  int destroyed;
} log_rec;

static void on_log(void *ud, rgrpc_log_level level, const char *tracer, const char *message) {
  (void)level;
  (void)tracer;
  rec_run(&((log_rec *)ud)->lines, 0, message);
}

static void on_log_destroy(void *ud) { ((log_rec *)ud)->destroyed++; }

/* A thread blocked in rgrpc_call_recv on a slow stream. */
typedef struct {
  rgrpc_call *call;
  int received;
  uint32_t last_rc;
} reader;

static void *reader_main(void *p) {
  reader *r = p;
  for (;;) {
    rgrpc_buffer *b = NULL;
    rgrpc_result rc = rgrpc_call_recv(r->call, &b);
    r->last_rc = rc;
    if (rc != RGRPC_RESULT_OK) break;
    r->received++;
    rgrpc_buffer_free(b);
  }
  return NULL;
}

/* --------------------------------------------------------------- helpers */

static void server_stream(rgrpc_channel *ch) {
  static const int32_t sizes[] = {10, 20, 30};
  tu_pb req = tu_streaming_output_request(sizes, NULL, 3, 0, 0, NULL);
  rgrpc_call *call = NULL;
  CHECK_OK(rgrpc_call_start(ch, M_SERVER_STREAM, NULL, &call));
  tu_send_pb(call, &req, RGRPC_SEND_LAST);
  tu_pb_free(&req);
  for (int i = 0; i < 3; i++) CHECK_EQ_INT(tu_recv_body_len(call), sizes[i]);
  rgrpc_buffer *b = NULL;
  CHECK_RC(rgrpc_call_recv(call, &b), RGRPC_RESULT_END_OF_STREAM);
  CHECK_CODE(tu_finish_code(call), RGRPC_STATUS_CODE_OK);
  rgrpc_call_free(call);
}

static void client_stream(rgrpc_channel *ch) {
  rgrpc_call *call = NULL;
  CHECK_OK(rgrpc_call_start(ch, M_CLIENT_STREAM, NULL, &call));
  for (int i = 0; i < 4; i++) {
    tu_pb req = tu_streaming_input_request(100);
    tu_send_pb(call, &req, 0);
    tu_pb_free(&req);
  }
  CHECK_OK(rgrpc_call_close_send(call));
  rgrpc_buffer *resp = NULL;
  CHECK_OK(rgrpc_call_recv(call, &resp));
  CHECK_EQ_INT(tu_aggregated_payload_size(rgrpc_buffer_data(resp), rgrpc_buffer_len(resp)), 400);
  rgrpc_buffer_free(resp);
  CHECK_CODE(tu_finish_code(call), RGRPC_STATUS_CODE_OK);
  rgrpc_call_free(call);
}

static void bidi(rgrpc_channel *ch) {
  rgrpc_call *call = tu_open_bidi(ch, NULL);
  static const int32_t seven = 7;
  tu_pb req = tu_streaming_output_request(&seven, NULL, 1, 0, 0, NULL);
  tu_send_pb(call, &req, 0);
  tu_pb_free(&req);
  CHECK_EQ_INT(tu_recv_body_len(call), 7);
  CHECK_OK(rgrpc_call_close_send(call));
  CHECK_CODE(tu_finish_code(call), RGRPC_STATUS_CODE_OK);
  rgrpc_call_free(call);
}

/* A server stream of SLOW_STREAM_MESSAGES messages, one every 200 ms. */
static rgrpc_call *slow_stream(rgrpc_channel *ch) {
  int32_t sizes[SLOW_STREAM_MESSAGES], intervals[SLOW_STREAM_MESSAGES];
  for (int i = 0; i < SLOW_STREAM_MESSAGES; i++) {
    sizes[i] = 1;
    intervals[i] = 200000;
  }
  tu_pb req = tu_streaming_output_request(sizes, intervals, SLOW_STREAM_MESSAGES, 0, 0, NULL);
  rgrpc_call *call = NULL;
  CHECK_OK(rgrpc_call_start(ch, M_SERVER_STREAM, NULL, &call));
  tu_send_pb(call, &req, RGRPC_SEND_LAST);
  tu_pb_free(&req);
  return call;
}

static bool contains(const char *s, const char *part) { return s && strstr(s, part) != NULL; }

/* ------------------------------------------------------------------ test */

static void test_shutdown(void) {
  CHECK_STR(rgrpc_result_name(RGRPC_RESULT_SHUTDOWN), "RGRPC_RESULT_SHUTDOWN");
  /* Names are static: still valid after shutdown. */
  const char *ok_name = rgrpc_status_code_name(RGRPC_STATUS_CODE_OK);
  const char *ready_name = rgrpc_connectivity_state_name(RGRPC_CONNECTIVITY_STATE_READY);
  const char *key_name = NULL;
  CHECK_OK(rgrpc_channel_options_known_key(0, &key_name, NULL, NULL));

  /* The log callback (api lines are written on this thread). */
  log_rec log;
  rec_init(&log.lines);
  log.destroyed = 0;
  CHECK_OK(rgrpc_log_set_callback(on_log, &log, on_log_destroy));
  CHECK_OK(rgrpc_log_set_trace("api", NULL));

  rgrpc_channel *ch = tu_channel(NULL, NULL);
  CHECK(tu_latch_wait(&log.lines.latch, 10000 * tu_slow()));
  CHECK_RC(log.lines.shutdown_rc, RGRPC_RESULT_RUNTIME);
  CHECK_OK(rgrpc_log_set_trace("-api", NULL));

  /* A connectivity watch, kept through the shutdown. */
  rec watch;
  rec_init(&watch);
  uint64_t watch_id = 0;
  CHECK_OK(rgrpc_channel_subscribe(ch, on_state, &watch, true, &watch_id));

  /* The four patterns. */
  size_t body = 0;
  CHECK_CODE(tu_unary_size(ch, NULL, 100, &body), RGRPC_STATUS_CODE_OK);
  CHECK_EQ_INT(body, 100);
  server_stream(ch);
  client_stream(ch);
  bidi(ch);
  CHECK(tu_latch_wait(&watch.latch, 10000 * tu_slow()));
  CHECK_RC(watch.shutdown_rc, RGRPC_RESULT_RUNTIME);

  /* A callback call: its callback (a library thread) is refused. */
  rec unary;
  rec_init(&unary);
  tu_pb req = tu_simple_request(10, 10, 0, NULL);
  CHECK_OK(rgrpc_call_unary_async(ch, M_UNARY, NULL, req.data, req.len, on_unary, &unary, NULL));
  CHECK(tu_latch_wait(&unary.latch, 10000 * tu_slow()));
  CHECK_CODE(unary.code, RGRPC_STATUS_CODE_OK);
  CHECK_RC(unary.shutdown_rc, RGRPC_RESULT_RUNTIME);

  /* A message callback (on the thread driving the I/O, here the one
   * blocked in finish) is refused too. */
  rec pushed;
  rec_init(&pushed);
  {
    static const int32_t sizes[] = {1, 2};
    tu_pb sreq = tu_streaming_output_request(sizes, NULL, 2, 0, 0, NULL);
    rgrpc_call *call = NULL;
    CHECK_OK(rgrpc_call_start(ch, M_SERVER_STREAM, NULL, &call));
    CHECK_OK(rgrpc_call_on_message(call, on_message, &pushed));
    tu_send_pb(call, &sreq, RGRPC_SEND_LAST);
    tu_pb_free(&sreq);
    CHECK_CODE(tu_finish_code(call), RGRPC_STATUS_CODE_OK);
    rgrpc_call_free(call);
  }
  CHECK_EQ_INT(rec_runs(&pushed), 2);
  CHECK_RC(pushed.shutdown_rc, RGRPC_RESULT_RUNTIME);

  /* Results obtained before: readable and freeable after. */
  const rgrpc_status *kept_status = NULL;
  rgrpc_buffer *kept_response = NULL;
  CHECK_OK(rgrpc_call_unary(ch, M_UNARY, NULL, req.data, req.len, &kept_response, &kept_status));

  /* Still alive at shutdown: an open bidi call, a thread blocked on a slow
   * stream, a pending call (wait-for-ready, to a port where nothing
   * listens) with a callback, a ready future with a callback. */
  rgrpc_call *open_bidi = tu_open_bidi(ch, NULL);
  reader blocked = {slow_stream(ch), 0, 0};
  pthread_t reader_thread;
  tu_thread_start(&reader_thread, reader_main, &blocked);
  rgrpc_channel *dead = tu_channel("127.0.0.1:1", NULL);
  rec pending;
  rec_init(&pending);
  rgrpc_call_options *wfr = rgrpc_call_options_new();
  CHECK_OK(rgrpc_call_options_set_wait_for_ready(wfr, true));
  CHECK_OK(rgrpc_call_unary_async(dead, M_UNARY, wfr, req.data, req.len, on_unary, &pending, NULL));
  rec ready;
  rec_init(&ready);
  rgrpc_ready_future *future = NULL;
  CHECK_OK(rgrpc_channel_ready_future(dead, on_ready, &ready, &future));
  tu_sleep_ms(300);
  CHECK_EQ_INT(rec_runs(&pending), 0);
  CHECK_EQ_INT(rec_runs(&ready), 0);
  CHECK_EQ_INT(log.destroyed, 0);

  int64_t t0 = tu_now_ms();
  CHECK_OK(rgrpc_shutdown());
  int64_t took = tu_now_ms() - t0;
  CHECK_MSG(took < 10000 * tu_slow(), "rgrpc_shutdown took %lld ms", (long long)took);

  /* Before it returned: the callbacks due ran (the call with CANCELLED and
   * a reason, the ready future with CHANNEL_CLOSED, the watch with
   * SHUTDOWN), the log callback's destroy ran once, the blocked thread
   * was let go. */
  CHECK_EQ_INT(rec_runs(&pending), 1);
  CHECK_CODE(pending.code, RGRPC_STATUS_CODE_CANCELLED);
  CHECK_MSG(contains(pending.details, "shut down"), "details: %s", pending.details);
  CHECK_EQ_INT(rec_runs(&ready), 1);
  CHECK_RC(ready.code, RGRPC_RESULT_CHANNEL_CLOSED);
  CHECK_EQ_INT(watch.code, RGRPC_CONNECTIVITY_STATE_SHUTDOWN);
  CHECK_EQ_INT(log.destroyed, 1);
  tu_thread_join(reader_thread);
  CHECK_MSG(blocked.received < SLOW_STREAM_MESSAGES, "received %d", blocked.received);
  CHECK_MSG(blocked.last_rc == RGRPC_RESULT_END_OF_STREAM ||
                blocked.last_rc == RGRPC_RESULT_CALL_ENDED ||
                blocked.last_rc == RGRPC_RESULT_SHUTDOWN,
            "recv returned %s", rgrpc_result_name(blocked.last_rc));

  /* Everything that needs the runtime: RGRPC_RESULT_SHUTDOWN, with the
   * reason on the object. */
  rgrpc_buffer *resp = NULL;
  const rgrpc_status *st = NULL;
  CHECK_RC(rgrpc_call_unary(ch, M_UNARY, NULL, req.data, req.len, &resp, &st),
           RGRPC_RESULT_SHUTDOWN);
  CHECK(resp == NULL && st == NULL);
  CHECK_MSG(contains(rgrpc_channel_last_error(ch), "shut down"), "%s", rgrpc_channel_last_error(ch));
  rgrpc_call *call = NULL;
  CHECK_RC(rgrpc_call_start(ch, M_UNARY, NULL, &call), RGRPC_RESULT_SHUTDOWN);
  CHECK(call == NULL);
  CHECK_RC(rgrpc_call_unary_async(ch, M_UNARY, NULL, req.data, req.len, on_unary, &unary, NULL),
           RGRPC_RESULT_SHUTDOWN);
  uint64_t id = 0;
  CHECK_RC(rgrpc_channel_subscribe(ch, on_state, &watch, false, &id), RGRPC_RESULT_SHUTDOWN);
  CHECK_RC(rgrpc_channel_wait_for_ready(ch, 100), RGRPC_RESULT_SHUTDOWN);
  rgrpc_ready_future *f2 = NULL;
  CHECK_RC(rgrpc_channel_ready_future(ch, NULL, NULL, &f2), RGRPC_RESULT_SHUTDOWN);
  CHECK(f2 == NULL);
  CHECK_RC(rgrpc_ready_future_wait(future, 0), RGRPC_RESULT_SHUTDOWN);
  CHECK_RC(rgrpc_channel_reset_connect_backoff(ch), RGRPC_RESULT_SHUTDOWN);
  tu_pb ping = tu_streaming_input_request(1);
  CHECK_RC(rgrpc_call_send(open_bidi, ping.data, ping.len, 0), RGRPC_RESULT_SHUTDOWN);
  tu_pb_free(&ping);
  CHECK_MSG(contains(rgrpc_call_last_error(open_bidi), "shut down"), "%s",
            rgrpc_call_last_error(open_bidi));
  CHECK_RC(rgrpc_call_recv(open_bidi, &resp), RGRPC_RESULT_SHUTDOWN);
  CHECK_RC(rgrpc_call_finish(open_bidi, &st), RGRPC_RESULT_SHUTDOWN);
  CHECK_RC(rgrpc_call_wait(open_bidi, 0), RGRPC_RESULT_SHUTDOWN);
  CHECK_RC(rgrpc_call_on_done(open_bidi, never_done, NULL), RGRPC_RESULT_SHUTDOWN);
  rgrpc_channel *ch2 = NULL;
  rgrpc_error *err = NULL;
  CHECK_RC(rgrpc_channel_new(tu_target(), NULL, NULL, &ch2, &err), RGRPC_RESULT_SHUTDOWN);
  CHECK(ch2 == NULL);
  CHECK_RC(rgrpc_error_result(err), RGRPC_RESULT_SHUTDOWN);
  CHECK_MSG(contains(rgrpc_error_message(err), "shut down"), "%s", rgrpc_error_message(err));
  rgrpc_error_free(err);
  CHECK_RC(rgrpc_runtime_set_worker_threads(2), RGRPC_RESULT_SHUTDOWN);
  CHECK_RC(rgrpc_log_set_callback(on_log, &log, on_log_destroy), RGRPC_RESULT_SHUTDOWN);

  /* Reading and cleaning up keep working. */
  CHECK(!rgrpc_call_is_active(open_bidi));
  CHECK_EQ_INT(rgrpc_channel_get_state(ch, true), RGRPC_CONNECTIVITY_STATE_SHUTDOWN);
  CHECK_OK(rgrpc_call_cancel(open_bidi));
  CHECK_OK(rgrpc_ready_future_cancel(future));
  CHECK_OK(rgrpc_channel_unsubscribe(ch, watch_id));
  CHECK_OK(rgrpc_channel_close(ch));
  CHECK_STATUS(kept_status, RGRPC_STATUS_CODE_OK);
  CHECK_EQ_INT(tu_buffer_body_len(kept_response), 10);
  CHECK_STR(ok_name, "OK");
  CHECK_STR(ready_name, "READY");
  CHECK_STR(key_name, "grpc.max_receive_message_length");
  CHECK_STR(rgrpc_status_code_name(RGRPC_STATUS_CODE_CANCELLED), "CANCELLED");

  /* Twice is harmless; no callback ran again. */
  CHECK_OK(rgrpc_shutdown());
  CHECK_EQ_INT(rec_runs(&pending), 1);
  CHECK_EQ_INT(rec_runs(&ready), 1);
  CHECK_EQ_INT(rec_runs(&unary), 1);
  CHECK_EQ_INT(log.destroyed, 1);

  /* Freeing everything is valid, and (valgrind) leaves nothing. */
  rgrpc_status_free(kept_status);
  rgrpc_buffer_free(kept_response);
  rgrpc_call_free(blocked.call);
  rgrpc_call_free(open_bidi);
  rgrpc_ready_future_free(future);
  rgrpc_call_options_free(wfr);
  rgrpc_channel_free(dead);
  rgrpc_channel_free(ch);
  tu_pb_free(&req);
  CHECK_OK(rgrpc_shutdown());
  rec_destroy(&ready);
  rec_destroy(&pending);
  rec_destroy(&pushed);
  rec_destroy(&unary);
  rec_destroy(&watch);
  rec_destroy(&log.lines);
}

int main(void) {
  RUN_TEST(test_shutdown);
  return 0;
}

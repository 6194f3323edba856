/* Interceptors against a real grpcio server: what START, SEND_MESSAGE,
 * RECV_MESSAGE and STATUS hooks change reaches the server and the
 * application; chain order; answers from another thread; ending a call
 * early; per-call data and destroy callbacks; refused arguments. */
#include "test_util.h"

/* ------------------------------------------------------------ the worker */

/* Answers hooks from its own thread a little later (rgrpc_hook_proceed). */
#define QMAX 256
static struct {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  rgrpc_hook *q[QMAX];
  int n;
  bool stop;
  pthread_t thread;
} worker = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, {0}, 0, false, 0};

static void *worker_main(void *arg) {
  (void)arg;
  pthread_mutex_lock(&worker.mu);
  for (;;) {
    while (worker.n == 0 && !worker.stop) pthread_cond_wait(&worker.cv, &worker.mu);
    if (worker.n == 0) break;
    rgrpc_hook *h = worker.q[0];
    memmove(worker.q, worker.q + 1, (size_t)(worker.n - 1) * sizeof worker.q[0]);
    worker.n--;
    pthread_mutex_unlock(&worker.mu);
    tu_sleep_ms(2);
    CHECK_OK(rgrpc_hook_proceed(h));
    pthread_mutex_lock(&worker.mu);
  }
  pthread_mutex_unlock(&worker.mu);
  return NULL;
}

static void worker_start(void) {
  worker.stop = false;
  tu_thread_start(&worker.thread, worker_main, NULL);
}

static void later(rgrpc_hook *h) {
  pthread_mutex_lock(&worker.mu);
  CHECK(worker.n < QMAX);
  worker.q[worker.n++] = h;
  pthread_cond_signal(&worker.cv);
  pthread_mutex_unlock(&worker.mu);
}

static void worker_stop(void) {
  pthread_mutex_lock(&worker.mu);
  worker.stop = true;
  pthread_cond_signal(&worker.cv);
  pthread_mutex_unlock(&worker.mu);
  tu_thread_join(worker.thread);
}

/* ------------------------------------------------------- a logging chain */

static pthread_mutex_t log_mu = PTHREAD_MUTEX_INITIALIZER;
static char log_buf[1024];

static void log_add(const char *name, const char *what) {
  pthread_mutex_lock(&log_mu);
  size_t n = strlen(log_buf);
  snprintf(log_buf + n, sizeof log_buf - n, "%s%s.%s", n ? " " : "", name, what);
  pthread_mutex_unlock(&log_mu);
}

typedef struct logger {
  const char *name;
  bool answer_later;
  int destroyed;
} logger;

static const char *kind_name(rgrpc_hook_kind k) {
  switch (k) {
    case RGRPC_HOOK_KIND_START: return "start";
    case RGRPC_HOOK_KIND_SEND_MESSAGE: return "send";
    case RGRPC_HOOK_KIND_RECV_MESSAGE: return "recv";
    case RGRPC_HOOK_KIND_STATUS: return "status";
  }
  return "?";
}

static void logger_cb(void *ud, rgrpc_hook *h) {
  logger *l = ud;
  log_add(l->name, kind_name(rgrpc_hook_get_kind(h)));
  CHECK_STR(rgrpc_hook_method(h), M_UNARY);
  if (l->answer_later) {
    later(h);
  } else {
    CHECK_OK(rgrpc_hook_proceed(h));
  }
}

static void logger_destroy(void *ud) { ((logger *)ud)->destroyed++; }

static void test_chain_order_now_and_later(void) {
  for (int mode = 0; mode < 2; mode++) {
    worker_start();
    logger a = {"a", mode == 1, 0}, b = {"b", mode == 1, 0};
    const rgrpc_interceptor *ia = NULL, *ib = NULL;
    CHECK_OK(rgrpc_interceptor_new(RGRPC_HOOK_ALL, logger_cb, &a, logger_destroy, &ia));
    CHECK_OK(rgrpc_interceptor_new(RGRPC_HOOK_ALL, logger_cb, &b, logger_destroy, &ib));
    rgrpc_channel_options *o = rgrpc_channel_options_new();
    CHECK_OK(rgrpc_channel_options_add_interceptor(o, ia));
    CHECK_OK(rgrpc_channel_options_add_interceptor(o, ib));
    rgrpc_interceptor_free(ia);
    rgrpc_interceptor_free(ib);
    rgrpc_channel *ch = tu_channel(NULL, o);
    rgrpc_channel_options_free(o);
    CHECK_EQ_INT(a.destroyed, 0); /* the channel holds them */

    log_buf[0] = '\0';
    size_t body = 0;
    CHECK_CODE(tu_unary_size(ch, NULL, 21, &body), RGRPC_STATUS_CODE_OK);
    CHECK_EQ_INT(body, 21);
    CHECK_STR(log_buf,
              "a.start b.start a.send b.send b.recv a.recv b.status a.status");

    /* The same through a call object. */
    log_buf[0] = '\0';
    rgrpc_call *call = NULL;
    CHECK_OK(rgrpc_call_start(ch, M_UNARY, NULL, &call));
    tu_pb req = tu_simple_request(5, 0, 0, NULL);
    tu_send_pb(call, &req, RGRPC_SEND_LAST);
    CHECK_EQ_INT(tu_recv_body_len(call), 5);
    CHECK_CODE(tu_finish_code(call), RGRPC_STATUS_CODE_OK);
    rgrpc_call_free(call);
    tu_pb_free(&req);
    CHECK_STR(log_buf,
              "a.start b.start a.send b.send b.recv a.recv b.status a.status");

    rgrpc_channel_free(ch);
    worker_stop();
    CHECK_EQ_INT(a.destroyed, 1);
    CHECK_EQ_INT(b.destroyed, 1);
  }
}

/* ---------------------------------------------- what the server receives */

static int64_t seen_timeout_ms = -2;

/* START: the application called a method that does not exist, with echo
 * metadata "app"; the hook calls UnaryCall instead and echoes "hook". */
static void rewrite_cb(void *ud, rgrpc_hook *h) {
  (void)ud;
  CHECK(rgrpc_hook_get_kind(h) == RGRPC_HOOK_KIND_START);
  CHECK_STR(rgrpc_hook_method(h), "/grpc.testing.TestService/Nope");
  CHECK_OK(rgrpc_hook_set_method(h, M_UNARY));
  CHECK_STR(rgrpc_hook_method(h), M_UNARY);
  const rgrpc_metadata *md = rgrpc_hook_metadata(h);
  char v[32];
  CHECK(tu_md_string(md, "x-grpc-test-echo-initial", v, sizeof v));
  CHECK_STR(v, "app");
  size_t removed = 0;
  CHECK_OK(rgrpc_hook_remove_metadata(h, "x-grpc-test-echo-initial", &removed));
  CHECK_EQ_INT(removed, 1);
  CHECK_OK(rgrpc_hook_add_metadata(h, "x-grpc-test-echo-initial", (const uint8_t *)"hook", 4));
  /* Bad input is refused with a reason and changes nothing. */
  CHECK_RC(rgrpc_hook_add_metadata(h, "Bad Key", (const uint8_t *)"x", 1),
           RGRPC_RESULT_INVALID_METADATA);
  CHECK_NONEMPTY(rgrpc_hook_last_error(h));
  CHECK_RC(rgrpc_hook_set_method(h, "no-slash"), RGRPC_RESULT_INVALID_ARGUMENT);
  CHECK_RC(rgrpc_hook_set_message(h, (const uint8_t *)"x", 1), RGRPC_RESULT_INVALID_ARGUMENT);
  CHECK(strstr(rgrpc_hook_last_error(h), "START") != NULL);
  CHECK(rgrpc_hook_message(h, NULL) == NULL);
  CHECK_RC(rgrpc_hook_set_compression(h, 99), RGRPC_RESULT_INVALID_ARGUMENT);
  CHECK_OK(rgrpc_hook_set_compression(h, RGRPC_COMPRESSION_GZIP));
  seen_timeout_ms = rgrpc_hook_timeout_ms(h);
  later(h);
}

static void test_start_changes_what_the_server_gets(void) {
  worker_start();
  const rgrpc_interceptor *ic = NULL;
  CHECK_OK(rgrpc_interceptor_new(RGRPC_HOOK_KIND_START, rewrite_cb, NULL, NULL, &ic));
  rgrpc_channel_options *o = rgrpc_channel_options_new();
  CHECK_OK(rgrpc_channel_options_add_interceptor(o, ic));
  rgrpc_interceptor_free(ic);
  rgrpc_channel *ch = tu_channel(NULL, o);
  rgrpc_channel_options_free(o);

  rgrpc_call_options *co = tu_opts_md("x-grpc-test-echo-initial", "app");
  CHECK_OK(rgrpc_call_options_set_timeout_ms(co, 30000));
  rgrpc_call *call = NULL;
  CHECK_OK(rgrpc_call_start(ch, "/grpc.testing.TestService/Nope", co, &call));
  tu_pb req = tu_simple_request(1000, 0, 0, NULL);
  tu_send_pb(call, &req, RGRPC_SEND_LAST);
  const rgrpc_metadata *init = NULL;
  CHECK_OK(rgrpc_call_initial_metadata(call, &init));
  char v[32];
  CHECK(tu_md_string(init, "x-grpc-test-echo-initial", v, sizeof v));
  CHECK_STR(v, "hook"); /* and only that one: */
  size_t n = 0;
  for (size_t i = 0; i < rgrpc_metadata_len(init); i++) {
    const char *k = NULL;
    CHECK_OK(rgrpc_metadata_get(init, i, &k, NULL, NULL));
    n += strcmp(k, "x-grpc-test-echo-initial") == 0;
  }
  CHECK_EQ_INT(n, 1);
  CHECK_EQ_INT(tu_recv_body_len(call), 1000);
  CHECK_CODE(tu_finish_code(call), RGRPC_STATUS_CODE_OK);
  rgrpc_call_stats stats;
  memset(&stats, 0, sizeof stats);
  CHECK_OK(rgrpc_call_get_stats(call, &stats, sizeof stats));
  /* gzip from the hook: the zero-filled request went out much smaller. */
  CHECK_MSG(stats.wire_bytes_sent < 200, "sent %llu bytes on the wire",
            (unsigned long long)stats.wire_bytes_sent);
  CHECK(seen_timeout_ms > 25000 && seen_timeout_ms <= 30000);
  rgrpc_call_free(call);
  tu_pb_free(&req);
  rgrpc_call_options_free(co);
  rgrpc_channel_free(ch);
  worker_stop();
}

/* START: a deadline for streams, and no calls to EmptyCall at all. */
static void policy_cb(void *ud, rgrpc_hook *h) {
  (void)ud;
  const char *m = rgrpc_hook_method(h);
  if (strcmp(m, M_EMPTY) == 0) {
    CHECK_OK(rgrpc_hook_fail(h, RGRPC_STATUS_CODE_PERMISSION_DENIED, "EmptyCall is not allowed"));
    return;
  }
  if (strcmp(m, M_SERVER_STREAM) == 0) {
    CHECK_EQ_INT(rgrpc_hook_timeout_ms(h), -1);
    CHECK_OK(rgrpc_hook_set_timeout_ms(h, 300 * tu_slow()));
  }
  later(h);
}

static void test_start_sets_deadlines_and_ends_calls(void) {
  worker_start();
  const rgrpc_interceptor *ic = NULL;
  CHECK_OK(rgrpc_interceptor_new(RGRPC_HOOK_KIND_START, policy_cb, NULL, NULL, &ic));
  rgrpc_channel_options *o = rgrpc_channel_options_new();
  CHECK_OK(rgrpc_channel_options_add_interceptor(o, ic));
  rgrpc_interceptor_free(ic);
  rgrpc_channel *ch = tu_channel(NULL, o);
  rgrpc_channel_options_free(o);

  int32_t sizes[] = {1, 1, 1}, gaps[] = {0, 2000000, 2000000};
  tu_pb req = tu_streaming_output_request(sizes, gaps, 3, 0, 0, NULL);
  int64_t t0 = tu_now_ms();
  rgrpc_call *call = NULL;
  CHECK_OK(rgrpc_call_start(ch, M_SERVER_STREAM, NULL, &call));
  tu_send_pb(call, &req, RGRPC_SEND_LAST);
  CHECK_EQ_INT(tu_recv_body_len(call), 1);
  CHECK_CODE(tu_finish_code(call), RGRPC_STATUS_CODE_DEADLINE_EXCEEDED);
  int64_t took = tu_now_ms() - t0;
  CHECK_MSG(took < 1900, "took %lld ms", (long long)took);
  rgrpc_call_free(call);
  tu_pb_free(&req);

  /* Ended by the hook: UnaryCall still works, EmptyCall never leaves. */
  char details[64];
  CHECK_CODE(tu_unary_details(ch, NULL, 3, NULL, details, sizeof details), RGRPC_STATUS_CODE_OK);
  size_t len = 0;
  CHECK_CODE(tu_unary(ch, M_EMPTY, NULL, NULL, 0, &len), RGRPC_STATUS_CODE_PERMISSION_DENIED);
  rgrpc_buffer *resp = NULL;
  const rgrpc_status *st = NULL;
  CHECK_RC(rgrpc_call_unary(ch, M_EMPTY, NULL, NULL, 0, &resp, &st), RGRPC_RESULT_RPC_FAILED);
  CHECK_STR(rgrpc_status_details(st), "EmptyCall is not allowed");
  rgrpc_status_free(st);
  rgrpc_channel_free(ch);
  worker_stop();
}

/* ---------------------------------------------------------- messages */

static int sent_seen, recv_seen;

/* SEND: every SimpleRequest asks for 77 bytes; RECV: the application sees
 * "len=N" (the received length) instead of the message. */
static void msg_cb(void *ud, rgrpc_hook *h) {
  (void)ud;
  size_t len = 0;
  const uint8_t *m = rgrpc_hook_message(h, &len);
  CHECK(m != NULL);
  if (rgrpc_hook_get_kind(h) == RGRPC_HOOK_KIND_SEND_MESSAGE) {
    sent_seen++;
    uint64_t size = 0;
    if (strcmp(rgrpc_hook_method(h), M_UNARY) == 0 && tu_pb_find_varint(m, len, 2, &size)) {
      CHECK_EQ_INT(size, 1);
      tu_pb req = tu_simple_request(77, 0, 0, NULL);
      CHECK_OK(rgrpc_hook_set_message(h, req.data, req.len));
      tu_pb_free(&req);
    }
  } else {
    CHECK(rgrpc_hook_get_kind(h) == RGRPC_HOOK_KIND_RECV_MESSAGE);
    recv_seen++;
    char text[32];
    int n = snprintf(text, sizeof text, "len=%zu", len);
    CHECK_OK(rgrpc_hook_set_message(h, (const uint8_t *)text, (size_t)n));
    if (len > 5000) {
      CHECK_OK(rgrpc_hook_fail(h, RGRPC_STATUS_CODE_RESOURCE_EXHAUSTED, "over policy"));
      return;
    }
  }
  CHECK_RC(rgrpc_hook_set_timeout_ms(h, 5), RGRPC_RESULT_INVALID_ARGUMENT);
  CHECK(rgrpc_hook_metadata(h) == NULL);
  CHECK_OK(rgrpc_hook_proceed(h));
}

static void test_messages_replaced_both_ways(void) {
  const rgrpc_interceptor *ic = NULL;
  CHECK_OK(rgrpc_interceptor_new(RGRPC_HOOK_KIND_SEND_MESSAGE | RGRPC_HOOK_KIND_RECV_MESSAGE,
                                 msg_cb, NULL, NULL, &ic));
  rgrpc_channel_options *o = rgrpc_channel_options_new();
  CHECK_OK(rgrpc_channel_options_add_interceptor(o, ic));
  rgrpc_interceptor_free(ic);
  rgrpc_channel *ch = tu_channel(NULL, o);
  rgrpc_channel_options_free(o);

  tu_pb req = tu_simple_request(1, 0, 0, NULL);
  rgrpc_buffer *resp = NULL;
  const rgrpc_status *st = NULL;
  CHECK_OK(rgrpc_call_unary(ch, M_UNARY, NULL, req.data, req.len, &resp, &st));
  size_t len = rgrpc_buffer_len(resp);
  const uint8_t *data = rgrpc_buffer_data(resp);
  /* SimpleResponse{payload{body: 77 zeros}} is 81 bytes. */
  CHECK_EQ_INT(len, 6);
  CHECK(memcmp(data, "len=81", 6) == 0);
  rgrpc_buffer_free(resp);
  rgrpc_status_free(st);
  CHECK_EQ_INT(sent_seen, 1);
  CHECK_EQ_INT(recv_seen, 1);
  tu_pb_free(&req);

  /* Bidi: one changed message each way per exchange. */
  rgrpc_call *call = NULL;
  CHECK_OK(rgrpc_call_start(ch, M_BIDI, NULL, &call));
  int32_t sizes[] = {10};
  tu_pb sreq = tu_streaming_output_request(sizes, NULL, 1, 0, 0, NULL);
  for (int i = 0; i < 3; i++) {
    tu_send_pb(call, &sreq, 0);
    rgrpc_buffer *m = NULL;
    CHECK_OK(rgrpc_call_recv(call, &m));
    data = rgrpc_buffer_data(m);
    len = rgrpc_buffer_len(m);
    CHECK(len == 6 && memcmp(data, "len=14", 6) == 0);
    rgrpc_buffer_free(m);
  }
  CHECK_OK(rgrpc_call_close_send(call));
  CHECK_CODE(tu_finish_code(call), RGRPC_STATUS_CODE_OK);
  rgrpc_call_free(call);
  tu_pb_free(&sreq);
  CHECK_EQ_INT(sent_seen, 4);
  CHECK_EQ_INT(recv_seen, 4);

  /* A receive hook ends a call with its own status. */
  int32_t big[] = {9000};
  tu_pb breq = tu_streaming_output_request(big, NULL, 1, 0, 0, NULL);
  CHECK_OK(rgrpc_call_start(ch, M_SERVER_STREAM, NULL, &call));
  tu_send_pb(call, &breq, RGRPC_SEND_LAST);
  rgrpc_buffer *m = NULL;
  CHECK_RC(rgrpc_call_recv(call, &m), RGRPC_RESULT_END_OF_STREAM);
  CHECK_RC(rgrpc_call_finish(call, &st), RGRPC_RESULT_RPC_FAILED);
  CHECK_STATUS(st, RGRPC_STATUS_CODE_RESOURCE_EXHAUSTED);
  CHECK_STR(rgrpc_status_details(st), "over policy");
  rgrpc_status_free(st);
  rgrpc_call_free(call);
  tu_pb_free(&breq);
  rgrpc_channel_free(ch);
}

/* ------------------------------------------------------ status, call data */

static int data_destroyed, data_made;
static void data_destroy(void *p) {
  CHECK_STR(p, "per-call");
  free(p);
  __atomic_fetch_add(&data_destroyed, 1, __ATOMIC_SEQ_CST);
}

/* START keeps data; STATUS reads it, turns NOT_FOUND into OK and adds a
 * trailer. */
static void status_cb(void *ud, rgrpc_hook *h) {
  (void)ud;
  if (rgrpc_hook_get_kind(h) == RGRPC_HOOK_KIND_START) {
    CHECK(rgrpc_hook_call_data(h) == NULL);
    char *p = malloc(16);
    CHECK(p != NULL);
    strcpy(p, "per-call");
    __atomic_fetch_add(&data_made, 1, __ATOMIC_SEQ_CST);
    CHECK_OK(rgrpc_hook_set_call_data(h, p, data_destroy));
    CHECK_OK(rgrpc_hook_proceed(h));
    return;
  }
  /* Only a call cancelled before its first operation opened it has had
   * no START hook. */
  if (rgrpc_hook_call_data(h) != NULL)
    CHECK_STR(rgrpc_hook_call_data(h), "per-call");
  else
    CHECK_EQ_INT(rgrpc_hook_status_code(h), RGRPC_STATUS_CODE_CANCELLED);
  CHECK_OK(rgrpc_hook_add_metadata(h, "x-seen-by", (const uint8_t *)"interceptor", 11));
  if (rgrpc_hook_status_code(h) == RGRPC_STATUS_CODE_NOT_FOUND) {
    CHECK_STR(rgrpc_hook_status_details(h), "missing");
    CHECK_OK(rgrpc_hook_set_status(h, RGRPC_STATUS_CODE_OK, NULL));
    later(h);
  } else if (rgrpc_hook_status_code(h) == RGRPC_STATUS_CODE_FAILED_PRECONDITION) {
    CHECK_OK(rgrpc_hook_fail(h, RGRPC_STATUS_CODE_ABORTED, "rewritten"));
  } else {
    later(h);
  }
}

static void on_done(void *ud, const rgrpc_status *st) {
  int *code = ud;
  *code = (int)rgrpc_status_get_code(st);
}

static void test_status_replaced_and_call_data(void) {
  worker_start();
  data_destroyed = data_made = 0;
  const rgrpc_interceptor *ic = NULL;
  CHECK_OK(rgrpc_interceptor_new(RGRPC_HOOK_KIND_START | RGRPC_HOOK_KIND_STATUS, status_cb, NULL,
                                 NULL, &ic));
  rgrpc_channel_options *o = rgrpc_channel_options_new();
  CHECK_OK(rgrpc_channel_options_add_interceptor(o, ic));
  rgrpc_interceptor_free(ic);
  rgrpc_channel *ch = tu_channel(NULL, o);
  rgrpc_channel_options_free(o);

  tu_pb req = tu_simple_request(0, 0, RGRPC_STATUS_CODE_NOT_FOUND, "missing");
  rgrpc_buffer *resp = NULL;
  const rgrpc_status *st = NULL;
  CHECK_OK(rgrpc_call_unary(ch, M_UNARY, NULL, req.data, req.len, &resp, &st));
  CHECK_STATUS(st, RGRPC_STATUS_CODE_OK);
  char v[32];
  CHECK(tu_md_string(rgrpc_status_trailing_metadata(st), "x-seen-by", v, sizeof v));
  CHECK_STR(v, "interceptor");
  rgrpc_buffer_free(resp);
  rgrpc_status_free(st);
  tu_pb_free(&req);

  req = tu_simple_request(0, 0, RGRPC_STATUS_CODE_FAILED_PRECONDITION, "late");
  resp = NULL;
  CHECK_RC(rgrpc_call_unary(ch, M_UNARY, NULL, req.data, req.len, &resp, &st),
           RGRPC_RESULT_RPC_FAILED);
  CHECK_STATUS(st, RGRPC_STATUS_CODE_ABORTED);
  CHECK_STR(rgrpc_status_details(st), "rewritten");
  CHECK(tu_md_string(rgrpc_status_trailing_metadata(st), "x-seen-by", v, sizeof v));
  rgrpc_status_free(st);
  tu_pb_free(&req);

  /* A done callback sees the hook's status; a cancel goes through it. */
  int code = -1;
  rgrpc_call *call = NULL;
  CHECK_OK(rgrpc_call_start(ch, M_BIDI, NULL, &call));
  CHECK_OK(rgrpc_call_on_done(call, on_done, &code));
  CHECK_OK(rgrpc_call_cancel(call));
  CHECK_OK(rgrpc_call_wait(call, 10000 * tu_slow()));
  CHECK_EQ_INT(code, RGRPC_STATUS_CODE_CANCELLED);
  CHECK_RC(rgrpc_call_finish(call, &st), RGRPC_RESULT_RPC_FAILED);
  CHECK(tu_md_string(rgrpc_status_trailing_metadata(st), "x-seen-by", v, sizeof v));
  rgrpc_status_free(st);
  rgrpc_call_free(call);
  rgrpc_channel_free(ch);
  worker_stop();
  /* Every call's data was destroyed with it (the cancelled call may have
   * been cancelled before or after its START hook). */
  int made = __atomic_load_n(&data_made, __ATOMIC_SEQ_CST);
  CHECK(made == 2 || made == 3);
  int64_t t0 = tu_now_ms();
  while (__atomic_load_n(&data_destroyed, __ATOMIC_SEQ_CST) < made && tu_now_ms() - t0 < 5000)
    tu_sleep_ms(5);
  CHECK_EQ_INT(__atomic_load_n(&data_destroyed, __ATOMIC_SEQ_CST), made);
}

/* ----------------------------------------------------------- bad input */

static void never_cb(void *ud, rgrpc_hook *h) {
  (void)ud;
  (void)h;
  CHECK_MSG(false, "not called");
}

static void test_refused_arguments(void) {
  const rgrpc_interceptor *ic = NULL;
  CHECK_RC(rgrpc_interceptor_new(0, never_cb, NULL, NULL, &ic), RGRPC_RESULT_INVALID_ARGUMENT);
  CHECK_RC(rgrpc_interceptor_new(16, never_cb, NULL, NULL, &ic), RGRPC_RESULT_INVALID_ARGUMENT);
  CHECK_RC(rgrpc_interceptor_new(RGRPC_HOOK_ALL, NULL, NULL, NULL, &ic),
           RGRPC_RESULT_NULL_PARAMETER);
  CHECK_RC(rgrpc_interceptor_new(RGRPC_HOOK_ALL, never_cb, NULL, NULL, NULL),
           RGRPC_RESULT_NULL_PARAMETER);
  CHECK(ic == NULL);
  rgrpc_interceptor_free(NULL);
  rgrpc_channel_options *o = rgrpc_channel_options_new();
  CHECK_RC(rgrpc_channel_options_add_interceptor(o, NULL), RGRPC_RESULT_NULL_PARAMETER);
  CHECK_RC(rgrpc_channel_options_add_interceptor(NULL, NULL), RGRPC_RESULT_NULL_PARAMETER);
  rgrpc_channel_options_free(o);
  /* Every hook function with NULL. */
  CHECK(rgrpc_hook_get_kind(NULL) == RGRPC_HOOK_KIND_START);
  CHECK_STR(rgrpc_hook_method(NULL), "");
  CHECK_RC(rgrpc_hook_set_method(NULL, M_UNARY), RGRPC_RESULT_NULL_PARAMETER);
  CHECK(rgrpc_hook_metadata(NULL) == NULL);
  CHECK_RC(rgrpc_hook_add_metadata(NULL, "k", NULL, 0), RGRPC_RESULT_NULL_PARAMETER);
  CHECK_RC(rgrpc_hook_remove_metadata(NULL, "k", NULL), RGRPC_RESULT_NULL_PARAMETER);
  CHECK_EQ_INT(rgrpc_hook_timeout_ms(NULL), -1);
  CHECK_RC(rgrpc_hook_set_timeout_ms(NULL, 1), RGRPC_RESULT_NULL_PARAMETER);
  CHECK_RC(rgrpc_hook_set_compression(NULL, 0), RGRPC_RESULT_NULL_PARAMETER);
  CHECK_RC(rgrpc_hook_set_wait_for_ready(NULL, true), RGRPC_RESULT_NULL_PARAMETER);
  size_t len = 7;
  CHECK(rgrpc_hook_message(NULL, &len) == NULL);
  CHECK_EQ_INT(len, 0);
  CHECK_RC(rgrpc_hook_set_message(NULL, NULL, 0), RGRPC_RESULT_NULL_PARAMETER);
  CHECK_EQ_INT(rgrpc_hook_status_code(NULL), RGRPC_STATUS_CODE_UNKNOWN);
  CHECK_STR(rgrpc_hook_status_details(NULL), "");
  CHECK_RC(rgrpc_hook_set_status(NULL, 0, NULL), RGRPC_RESULT_NULL_PARAMETER);
  CHECK(rgrpc_hook_call_data(NULL) == NULL);
  CHECK_RC(rgrpc_hook_set_call_data(NULL, NULL, NULL), RGRPC_RESULT_NULL_PARAMETER);
  CHECK_STR(rgrpc_hook_last_error(NULL), "");
  CHECK_RC(rgrpc_hook_proceed(NULL), RGRPC_RESULT_NULL_PARAMETER);
  CHECK_RC(rgrpc_hook_fail(NULL, 2, "x"), RGRPC_RESULT_NULL_PARAMETER);
}

int main(void) {
  RUN_TEST(test_refused_arguments);
  RUN_TEST(test_chain_order_now_and_later);
  RUN_TEST(test_start_changes_what_the_server_gets);
  RUN_TEST(test_start_sets_deadlines_and_ends_calls);
  RUN_TEST(test_messages_replaced_both_ways);
  RUN_TEST(test_status_replaced_and_call_data);
  CHECK_OK(rgrpc_shutdown());
  return 0;
}

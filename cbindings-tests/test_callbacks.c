/* Callback-style API: rgrpc_call_unary_async, rgrpc_call_wait,
 * rgrpc_call_on_done and push-mode rgrpc_call_on_message. */
#include "test_util.h"

/* What a unary callback saw. */
typedef struct {
  tu_latch latch;
  pthread_mutex_t mu;
  int runs;
  rgrpc_status_code code;
  char details[256];
  bool had_response;
  size_t body_len;
  size_t trailing_len;
} unary_result;

static void unary_result_init(unary_result *r) {
  memset(r, 0, sizeof *r);
  tu_latch_init(&r->latch, 1);
  pthread_mutex_init(&r->mu, NULL);
}

static void unary_result_destroy(unary_result *r) {
  pthread_mutex_destroy(&r->mu);
  tu_latch_destroy(&r->latch);
}

static void on_unary(void *ud, const rgrpc_status *st, const uint8_t *resp, size_t len) {
  unary_result *r = ud;
  pthread_mutex_lock(&r->mu);
  r->runs++;
  r->code = rgrpc_status_get_code(st);
  snprintf(r->details, sizeof r->details, "%s", rgrpc_status_details(st));
  r->trailing_len = rgrpc_metadata_len(rgrpc_status_trailing_metadata(st));
  r->had_response = resp != NULL || len != 0;
  /* Borrowed bytes: decode now. */
  r->body_len = r->code == RGRPC_STATUS_CODE_OK ? (len ? tu_response_body_len(resp, len) : 0) : 0;
  pthread_mutex_unlock(&r->mu);
  tu_latch_count_down(&r->latch);
}

static int runs_of(unary_result *r) {
  pthread_mutex_lock(&r->mu);
  int n = r->runs;
  pthread_mutex_unlock(&r->mu);
  return n;
}

static void test_unary_async_callback(void) {
  rgrpc_channel *ch = tu_channel(NULL, NULL);
  unary_result r;
  unary_result_init(&r);
  tu_pb req = tu_simple_request(1234, 10, 0, NULL);
  CHECK_OK(rgrpc_call_unary_async(ch, M_UNARY, NULL, req.data, req.len, on_unary, &r, NULL));
  tu_pb_free(&req); /* copied */
  CHECK_MSG(tu_latch_wait(&r.latch, 10000 * tu_slow()), "callback did not run");
  tu_sleep_ms(50);
  CHECK_EQ_INT(runs_of(&r), 1);
  CHECK_CODE(r.code, RGRPC_STATUS_CODE_OK);
  CHECK(r.had_response);
  CHECK_EQ_INT(r.body_len, 1234);
  unary_result_destroy(&r);

  /* Error status: code and details, no response. */
  unary_result_init(&r);
  req = tu_simple_request(10, 0, RGRPC_STATUS_CODE_PERMISSION_DENIED, "go away");
  CHECK_OK(rgrpc_call_unary_async(ch, M_UNARY, NULL, req.data, req.len, on_unary, &r, NULL));
  tu_pb_free(&req);
  CHECK(tu_latch_wait(&r.latch, 10000 * tu_slow()));
  CHECK_CODE(r.code, RGRPC_STATUS_CODE_PERMISSION_DENIED);
  CHECK_STR(r.details, "go away");
  CHECK(!r.had_response);
  unary_result_destroy(&r);

  /* Trailing metadata reaches the callback's status. */
  unary_result_init(&r);
  rgrpc_call_options *o = tu_opts_md("x-grpc-test-echo-trailing-x", "y");
  CHECK_OK(rgrpc_call_unary_async(ch, M_EMPTY, o, NULL, 0, on_unary, &r, NULL));
  rgrpc_call_options_free(o);
  CHECK(tu_latch_wait(&r.latch, 10000 * tu_slow()));
  CHECK_CODE(r.code, RGRPC_STATUS_CODE_OK);
  CHECK(r.trailing_len >= 1);
  unary_result_destroy(&r);
  rgrpc_channel_free(ch);
}

static void test_unary_async_wait(void) {
  rgrpc_channel *ch = tu_channel(NULL, NULL);
  unary_result r;
  unary_result_init(&r);
  rgrpc_call_options *o = tu_opts_md("x-rgrpc-sleep-ms", "600");
  tu_pb req = tu_simple_request(77, 0, 0, NULL);
  rgrpc_call *call = NULL;
  CHECK_OK(rgrpc_call_unary_async(ch, M_UNARY, o, req.data, req.len, on_unary, &r, &call));
  CHECK(call != NULL);
  CHECK(rgrpc_call_is_active(call));
  int64_t t0 = tu_now_ms();
  CHECK_RC(rgrpc_call_wait(call, 100), RGRPC_RESULT_TIMEOUT);
  int64_t el = tu_now_ms() - t0;
  CHECK_MSG(el >= 90 && el < 500 * tu_slow(), "wait(100) took %lld ms", (long long)el);
  CHECK_RC(rgrpc_call_wait(call, 0), RGRPC_RESULT_TIMEOUT);
  CHECK(rgrpc_call_is_active(call));
  CHECK_OK(rgrpc_call_wait(call, 10000 * tu_slow()));
  /* wait returns only after the callback returned. */
  CHECK_EQ_INT(runs_of(&r), 1);
  CHECK(!rgrpc_call_is_active(call));
  CHECK_OK(rgrpc_call_wait(call, 0));
  CHECK_OK(rgrpc_call_wait(call, -1));
  CHECK_CODE(r.code, RGRPC_STATUS_CODE_OK);
  CHECK_EQ_INT(r.body_len, 77);
  /* The response is also readable from the call, and the status. */
  CHECK_EQ_INT(tu_recv_body_len(call), 77);
  rgrpc_buffer *buf = NULL;
  CHECK_RC(rgrpc_call_recv(call, &buf), RGRPC_RESULT_END_OF_STREAM);
  CHECK_CODE(tu_finish_code(call), RGRPC_STATUS_CODE_OK);
  /* An ended call takes no more done callbacks. */
  CHECK_RC(rgrpc_call_on_done(call, NULL, NULL), RGRPC_RESULT_NULL_PARAMETER);
  rgrpc_call_free(call);
  CHECK_EQ_INT(runs_of(&r), 1);
  unary_result_destroy(&r);

  /* wait(-1): no limit. No callback at all. */
  CHECK_OK(rgrpc_call_unary_async(ch, M_UNARY, o, req.data, req.len, NULL, NULL, &call));
  CHECK_OK(rgrpc_call_wait(call, -1));
  CHECK_EQ_INT(tu_recv_body_len(call), 77);
  CHECK_CODE(tu_finish_code(call), RGRPC_STATUS_CODE_OK);
  rgrpc_call_free(call);
  tu_pb_free(&req);
  rgrpc_call_options_free(o);
  rgrpc_channel_free(ch);
}

static void test_cancel_pending_async(void) {
  rgrpc_channel *ch = tu_channel(NULL, NULL);
  unary_result r;
  unary_result_init(&r);
  rgrpc_call_options *o = tu_opts_md("x-rgrpc-sleep-ms", "3000");
  tu_pb req = tu_simple_request(5, 0, 0, NULL);
  rgrpc_call *call = NULL;
  CHECK_OK(rgrpc_call_unary_async(ch, M_UNARY, o, req.data, req.len, on_unary, &r, &call));
  tu_sleep_ms(100);
  CHECK_EQ_INT(runs_of(&r), 0);
  int64_t t0 = tu_now_ms();
  CHECK_OK(rgrpc_call_cancel(call));
  CHECK_OK(rgrpc_call_wait(call, 2000 * tu_slow()));
  CHECK_MSG(tu_now_ms() - t0 < 1000 * tu_slow(), "cancel took %lld ms to end the call",
            (long long)(tu_now_ms() - t0));
  CHECK_EQ_INT(runs_of(&r), 1);
  CHECK_CODE(r.code, RGRPC_STATUS_CODE_CANCELLED);
  CHECK(!r.had_response);
  CHECK_CODE(tu_finish_code(call), RGRPC_STATUS_CODE_CANCELLED);
  rgrpc_buffer *buf = NULL;
  CHECK_RC(rgrpc_call_recv(call, &buf), RGRPC_RESULT_END_OF_STREAM);
  rgrpc_call_free(call);
  unary_result_destroy(&r);

  /* Freeing the handle of a pending async call cancels it; the callback still runs once. */
  unary_result_init(&r);
  CHECK_OK(rgrpc_call_unary_async(ch, M_UNARY, o, req.data, req.len, on_unary, &r, &call));
  rgrpc_call_free(call);
  CHECK_MSG(tu_latch_wait(&r.latch, 2000 * tu_slow()), "callback did not run after free");
  tu_sleep_ms(50);
  CHECK_EQ_INT(runs_of(&r), 1);
  CHECK_CODE(r.code, RGRPC_STATUS_CODE_CANCELLED);
  unary_result_destroy(&r);
  tu_pb_free(&req);
  rgrpc_call_options_free(o);
  rgrpc_channel_free(ch);
}

/* Async with call_out NULL runs to completion by itself, even after the
 * channel handle is freed. */
static void test_async_fire_and_forget(void) {
  rgrpc_channel *ch = tu_channel(NULL, NULL);
  unary_result r;
  unary_result_init(&r);
  rgrpc_call_options *o = tu_opts_md("x-rgrpc-sleep-ms", "200");
  tu_pb req = tu_simple_request(31, 0, 0, NULL);
  CHECK_OK(rgrpc_call_unary_async(ch, M_UNARY, o, req.data, req.len, on_unary, &r, NULL));
  rgrpc_call_options_free(o);
  tu_pb_free(&req);
  rgrpc_channel_free(ch);
  CHECK_MSG(tu_latch_wait(&r.latch, 10000 * tu_slow()), "callback did not run");
  CHECK_CODE(r.code, RGRPC_STATUS_CODE_OK);
  CHECK_EQ_INT(r.body_len, 31);
  tu_sleep_ms(50);
  CHECK_EQ_INT(runs_of(&r), 1);
  unary_result_destroy(&r);
}

/* Messages received in push mode. */
typedef struct {
  pthread_mutex_t mu;
  int count;
  size_t sizes[64];
} push_log;

/* Done callbacks: ordered record of which ran. */
typedef struct {
  tu_latch latch;
  pthread_mutex_t mu;
  char order[16];
  int n;
  rgrpc_status_code code;
  int messages_at_done; /* push mode: messages seen when done ran */
  push_log *push;
} done_log;

typedef struct {
  done_log *log;
  char tag;
} done_tag;

static void on_done(void *ud, const rgrpc_status *st) {
  done_tag *t = ud;
  done_log *l = t->log;
  pthread_mutex_lock(&l->mu);
  if (l->n < (int)sizeof l->order - 1) l->order[l->n++] = t->tag;
  l->code = rgrpc_status_get_code(st);
  pthread_mutex_unlock(&l->mu);
  if (l->push) {
    pthread_mutex_lock(&l->push->mu);
    int n = l->push->count;
    pthread_mutex_unlock(&l->push->mu);
    pthread_mutex_lock(&l->mu);
    l->messages_at_done = n;
    pthread_mutex_unlock(&l->mu);
  }
  tu_latch_count_down(&l->latch);
}

static void done_log_init(done_log *l, long expected) {
  memset(l, 0, sizeof *l);
  tu_latch_init(&l->latch, expected);
  pthread_mutex_init(&l->mu, NULL);
}

static void done_log_destroy(done_log *l) {
  pthread_mutex_destroy(&l->mu);
  tu_latch_destroy(&l->latch);
}

static void test_on_done(void) {
  rgrpc_channel *ch = tu_channel(NULL, NULL);
  done_log log;
  done_log_init(&log, 3);
  done_tag a = {&log, 'a'}, b = {&log, 'b'}, c = {&log, 'c'};
  rgrpc_call *call = NULL;
  CHECK_OK(rgrpc_call_start(ch, M_BIDI, NULL, &call));
  CHECK_OK(rgrpc_call_on_done(call, on_done, &a));
  static const int32_t size = 5;
  tu_pb req = tu_streaming_output_request(&size, NULL, 1, 0, 0, NULL);
  tu_send_pb(call, &req, 0);
  tu_pb_free(&req);
  CHECK_OK(rgrpc_call_on_done(call, on_done, &b));
  CHECK_EQ_INT(tu_recv_body_len(call), 5);
  CHECK_OK(rgrpc_call_on_done(call, on_done, &c));
  CHECK_EQ_INT(tu_latch_count(&log.latch), 3); /* not yet */
  CHECK_OK(rgrpc_call_close_send(call));
  CHECK_CODE(tu_finish_code(call), RGRPC_STATUS_CODE_OK);
  /* wait returns after the callbacks have run. */
  CHECK_OK(rgrpc_call_wait(call, 5000 * tu_slow()));
  pthread_mutex_lock(&log.mu);
  CHECK_STR(log.order, "abc");
  CHECK_CODE(log.code, RGRPC_STATUS_CODE_OK);
  pthread_mutex_unlock(&log.mu);

  /* After the end: CALL_ENDED, and the callback never runs. */
  done_tag late = {&log, 'L'};
  CHECK_RC(rgrpc_call_on_done(call, on_done, &late), RGRPC_RESULT_CALL_ENDED);
  rgrpc_call_free(call);
  tu_sleep_ms(100);
  pthread_mutex_lock(&log.mu);
  CHECK_STR(log.order, "abc");
  pthread_mutex_unlock(&log.mu);
  done_log_destroy(&log);

  /* A failed call: the callback sees the error status (finish drives it). */
  done_log_init(&log, 1);
  done_tag e = {&log, 'e'};
  CHECK_OK(rgrpc_call_start(ch, M_UNIMPLEMENTED, NULL, &call));
  CHECK_OK(rgrpc_call_on_done(call, on_done, &e));
  CHECK_OK(rgrpc_call_send(call, NULL, 0, RGRPC_SEND_LAST));
  CHECK_CODE(tu_finish_code(call), RGRPC_STATUS_CODE_UNIMPLEMENTED);
  CHECK_OK(rgrpc_call_wait(call, 5000 * tu_slow()));
  CHECK(tu_latch_wait(&log.latch, 0));
  CHECK_CODE(log.code, RGRPC_STATUS_CODE_UNIMPLEMENTED);
  rgrpc_call_free(call);
  done_log_destroy(&log);
  rgrpc_channel_free(ch);
}

/* A call the server ends with no messages to read (a Trailers-Only error)
 * ends by itself: rgrpc_call_wait's note says a streaming call needs "its
 * messages to be read", and here there are none, so wait and the done
 * callback must not depend on some thread calling recv/finish. */
static void test_call_ends_without_reader(void) {
  rgrpc_channel *ch = tu_channel(NULL, NULL);
  done_log log;
  done_log_init(&log, 1);
  done_tag e = {&log, 'e'};
  rgrpc_call *call = NULL;
  CHECK_OK(rgrpc_call_start(ch, M_UNIMPLEMENTED, NULL, &call));
  CHECK_OK(rgrpc_call_on_done(call, on_done, &e));
  CHECK_OK(rgrpc_call_send(call, NULL, 0, RGRPC_SEND_LAST));
  rgrpc_result rc = rgrpc_call_wait(call, 5000 * tu_slow());
  if (rc != RGRPC_RESULT_OK) rgrpc_call_cancel(call); /* let the process exit cleanly */
  CHECK_RC(rc, RGRPC_RESULT_OK);
  CHECK(tu_latch_wait(&log.latch, 0));
  CHECK_CODE(log.code, RGRPC_STATUS_CODE_UNIMPLEMENTED);
  CHECK(!rgrpc_call_is_active(call));
  CHECK_CODE(tu_finish_code(call), RGRPC_STATUS_CODE_UNIMPLEMENTED);
  rgrpc_call_free(call);
  done_log_destroy(&log);
  rgrpc_channel_free(ch);
}

/* A done callback may free its own call. */
typedef struct {
  tu_latch latch;
  rgrpc_call *call;
  rgrpc_status_code code;
} self_free;

static void free_in_callback(void *ud, const rgrpc_status *st) {
  self_free *s = ud;
  s->code = rgrpc_status_get_code(st);
  rgrpc_call_free(s->call);
  tu_latch_count_down(&s->latch);
}

static void test_free_call_in_done_callback(void) {
  rgrpc_channel *ch = tu_channel(NULL, NULL);
  self_free s;
  tu_latch_init(&s.latch, 1);
  s.code = RGRPC_STATUS_CODE_UNKNOWN;
  rgrpc_call_options *o = tu_opts_md("x-rgrpc-sleep-ms", "200");
  tu_pb req = tu_simple_request(3, 0, 0, NULL);
  CHECK_OK(rgrpc_call_unary_async(ch, M_UNARY, o, req.data, req.len, NULL, NULL, &s.call));
  /* From here on the callback owns the handle. */
  CHECK_OK(rgrpc_call_on_done(s.call, free_in_callback, &s));
  CHECK_MSG(tu_latch_wait(&s.latch, 10000 * tu_slow()), "done callback did not run");
  CHECK_CODE(s.code, RGRPC_STATUS_CODE_OK);
  tu_latch_destroy(&s.latch);
  tu_pb_free(&req);
  rgrpc_call_options_free(o);
  rgrpc_channel_free(ch);
}

/* Inline callbacks: each callback checks its response and starts the next
 * call of its chain from the thread driving the I/O; blocking rgrpc calls
 * are refused there in the caller-driven runtime; a call cancelled from an
 * application thread still gets its callback, on another thread. */
enum { CHAINS = 8, PER_CHAIN = 25 };

typedef struct {
  tu_latch latch; /* one count per chain */
  pthread_mutex_t mu;
  rgrpc_channel *ch;
  rgrpc_call_options *opts;
  const uint8_t *req;
  size_t req_len;
  int left[CHAINS];
  int ok;
  int bad;
  int blocking_refused;
} inline_chains;

typedef struct {
  inline_chains *c;
  int chain;
} chain_slot;

static void on_inline(void *ud, const rgrpc_status *st, const uint8_t *resp, size_t len) {
  chain_slot *slot = ud;
  inline_chains *c = slot->c;
  int good = rgrpc_status_get_code(st) == RGRPC_STATUS_CODE_OK && resp &&
             tu_response_body_len(resp, len) == 321;
  /* A blocking call from here: refused, not deadlocked. */
  rgrpc_buffer *b = NULL;
  rgrpc_result brc = rgrpc_call_unary(c->ch, M_EMPTY, NULL, NULL, 0, &b, NULL);
  rgrpc_buffer_free(b);
  pthread_mutex_lock(&c->mu);
  if (good) c->ok++;
  else c->bad++;
  if (brc == RGRPC_RESULT_RUNTIME) c->blocking_refused++;
  int again = --c->left[slot->chain] > 0;
  pthread_mutex_unlock(&c->mu);
  if (!again) {
    tu_latch_count_down(&c->latch);
    return;
  }
  rgrpc_result rc = rgrpc_call_unary_async(c->ch, M_UNARY, c->opts, c->req, c->req_len, on_inline,
                                           slot, NULL);
  if (rc != RGRPC_RESULT_OK) {
    pthread_mutex_lock(&c->mu);
    c->bad++;
    pthread_mutex_unlock(&c->mu);
    tu_latch_count_down(&c->latch);
  }
}

typedef struct {
  tu_latch latch;
  pthread_t thread;
  rgrpc_status_code code;
} thread_seen;

static void on_done_thread(void *ud, const rgrpc_status *st) {
  thread_seen *t = ud;
  t->thread = pthread_self();
  t->code = rgrpc_status_get_code(st);
  tu_latch_count_down(&t->latch);
}

static void test_inline_callbacks(void) {
  inline_chains c;
  memset(&c, 0, sizeof c);
  tu_latch_init(&c.latch, CHAINS);
  pthread_mutex_init(&c.mu, NULL);
  c.ch = tu_channel(NULL, NULL);
  c.opts = rgrpc_call_options_new();
  CHECK_RC(rgrpc_call_options_set_inline_callbacks(NULL, true), RGRPC_RESULT_NULL_PARAMETER);
  CHECK_OK(rgrpc_call_options_set_inline_callbacks(c.opts, true));
  tu_pb req = tu_simple_request(321, 5, 0, NULL);
  c.req = req.data;
  c.req_len = req.len;
  chain_slot slots[CHAINS];
  for (int i = 0; i < CHAINS; i++) {
    c.left[i] = PER_CHAIN;
    slots[i].c = &c;
    slots[i].chain = i;
    CHECK_OK(rgrpc_call_unary_async(c.ch, M_UNARY, c.opts, c.req, c.req_len, on_inline, &slots[i],
                                    NULL));
  }
  CHECK_MSG(tu_latch_wait(&c.latch, 30000 * tu_slow()), "chains did not finish");
  pthread_mutex_lock(&c.mu);
  CHECK_EQ_INT(c.ok, CHAINS * PER_CHAIN);
  CHECK_EQ_INT(c.bad, 0);
  const char *workers = getenv("RGRPC_WORKER_THREADS");
  if (!workers || !strcmp(workers, "0") || !*workers)
    CHECK_EQ_INT(c.blocking_refused, CHAINS * PER_CHAIN);
  pthread_mutex_unlock(&c.mu);

  /* Cancelled from this thread: the inline done callback still runs once,
   * with CANCELLED, on a thread driving the I/O (not inside cancel). */
  thread_seen t;
  memset(&t, 0, sizeof t);
  tu_latch_init(&t.latch, 1);
  rgrpc_call_options *slow = tu_opts_md("x-rgrpc-sleep-ms", "5000");
  CHECK_OK(rgrpc_call_options_set_inline_callbacks(slow, true));
  rgrpc_call *call = NULL;
  CHECK_OK(rgrpc_call_unary_async(c.ch, M_UNARY, slow, c.req, c.req_len, NULL, NULL, &call));
  CHECK_OK(rgrpc_call_on_done(call, on_done_thread, &t));
  tu_sleep_ms(100);
  CHECK_OK(rgrpc_call_cancel(call));
  CHECK_MSG(tu_latch_wait(&t.latch, 10000 * tu_slow()), "done callback did not run");
  CHECK_CODE(t.code, RGRPC_STATUS_CODE_CANCELLED);
  CHECK(!pthread_equal(t.thread, pthread_self()));
  CHECK_OK(rgrpc_call_wait(call, 10000 * tu_slow()));
  rgrpc_call_free(call);
  tu_latch_destroy(&t.latch);
  rgrpc_call_options_free(slow);

  tu_pb_free(&req);
  rgrpc_call_options_free(c.opts);
  rgrpc_channel_free(c.ch);
  pthread_mutex_destroy(&c.mu);
  tu_latch_destroy(&c.latch);
}

/* Push mode. */

static void on_message(void *ud, const uint8_t *data, size_t len) {
  push_log *p = ud;
  size_t body = tu_response_body_len(data, len);
  pthread_mutex_lock(&p->mu);
  if (p->count < 64) p->sizes[p->count] = body;
  p->count++;
  pthread_mutex_unlock(&p->mu);
}

static void test_on_message_push_mode(void) {
  enum { N = 20 };
  int32_t sizes[N], intervals[N];
  for (int i = 0; i < N; i++) {
    sizes[i] = 1000 + i * 37;
    intervals[i] = (i % 4 == 0) ? 10000 : 0;
  }
  rgrpc_channel *ch = tu_channel(NULL, NULL);
  push_log p;
  memset(&p, 0, sizeof p);
  pthread_mutex_init(&p.mu, NULL);
  done_log log;
  done_log_init(&log, 1);
  log.push = &p;
  done_tag d = {&log, 'd'};

  rgrpc_call *call = NULL;
  CHECK_OK(rgrpc_call_start(ch, M_SERVER_STREAM, NULL, &call));
  CHECK_OK(rgrpc_call_on_message(call, on_message, &p));
  CHECK_RC(rgrpc_call_on_message(call, on_message, &p), RGRPC_RESULT_BUSY);
  CHECK_OK(rgrpc_call_on_done(call, on_done, &d));
  tu_pb req = tu_streaming_output_request(sizes, intervals, N, 0, 0, NULL);
  tu_send_pb(call, &req, RGRPC_SEND_LAST);
  tu_pb_free(&req);
  rgrpc_buffer *buf = NULL;
  CHECK_RC(rgrpc_call_recv(call, &buf), RGRPC_RESULT_BUSY);
  CHECK(buf == NULL);
  CHECK_MSG(tu_latch_wait(&log.latch, 10000 * tu_slow()), "done callback did not run");
  CHECK_OK(rgrpc_call_wait(call, 5000));
  pthread_mutex_lock(&p.mu);
  CHECK_EQ_INT(p.count, N);
  for (int i = 0; i < N; i++) CHECK_EQ_INT(p.sizes[i], sizes[i]);
  pthread_mutex_unlock(&p.mu);
  /* Done callbacks run after the last message. */
  CHECK_EQ_INT(log.messages_at_done, N);
  CHECK_CODE(log.code, RGRPC_STATUS_CODE_OK);
  CHECK_CODE(tu_finish_code(call), RGRPC_STATUS_CODE_OK);
  CHECK_RC(rgrpc_call_recv(call, &buf), RGRPC_RESULT_BUSY);
  rgrpc_call_free(call);
  done_log_destroy(&log);
  pthread_mutex_destroy(&p.mu);
  rgrpc_channel_free(ch);
}

/* Push mode on a bidi call: send as usual, messages come to the callback. */
static void test_on_message_bidi(void) {
  rgrpc_channel *ch = tu_channel(NULL, NULL);
  push_log p;
  memset(&p, 0, sizeof p);
  pthread_mutex_init(&p.mu, NULL);
  rgrpc_call *call = NULL;
  CHECK_OK(rgrpc_call_start(ch, M_BIDI, NULL, &call));
  CHECK_OK(rgrpc_call_on_message(call, on_message, &p));
  for (int i = 0; i < 5; i++) {
    int32_t size = 100 + i;
    tu_pb req = tu_streaming_output_request(&size, NULL, 1, 0, 0, NULL);
    tu_send_pb(call, &req, i == 4 ? RGRPC_SEND_LAST : 0);
    tu_pb_free(&req);
  }
  CHECK_OK(rgrpc_call_wait(call, 10000 * tu_slow()));
  CHECK_CODE(tu_finish_code(call), RGRPC_STATUS_CODE_OK);
  pthread_mutex_lock(&p.mu);
  CHECK_EQ_INT(p.count, 5);
  for (int i = 0; i < 5; i++) CHECK_EQ_INT(p.sizes[i], 100 + i);
  pthread_mutex_unlock(&p.mu);
  rgrpc_call_free(call);
  pthread_mutex_destroy(&p.mu);
  rgrpc_channel_free(ch);
}

/* A thread blocked in rgrpc_call_recv drives the connection itself while it
 * waits (it reads for every call on it); when it returns, the connection's
 * own task must take over again. Callbacks are waited for on a latch, so
 * nothing but the library's background driver can deliver them. */
typedef struct {
  rgrpc_call *call;
  size_t len;
} recv_job;

static void *recv_one(void *arg) {
  recv_job *j = arg;
  j->len = tu_recv_body_len(j->call);
  return NULL;
}

static void async_unary_ok(rgrpc_channel *ch, int32_t size) {
  unary_result r;
  unary_result_init(&r);
  tu_pb req = tu_simple_request(size, 1, 0, NULL);
  CHECK_OK(rgrpc_call_unary_async(ch, M_UNARY, NULL, req.data, req.len, on_unary, &r, NULL));
  tu_pb_free(&req);
  CHECK_MSG(tu_latch_wait(&r.latch, 10000 * tu_slow()), "callback did not run");
  CHECK_CODE(r.code, RGRPC_STATUS_CODE_OK);
  CHECK_EQ_INT(r.body_len, (size_t)size);
  unary_result_destroy(&r);
}

static void test_async_after_blocked_callers(void) {
  rgrpc_channel *ch = tu_channel(NULL, NULL);
  /* A blocking call first (its caller drove the connection), then
   * callback calls with no blocked caller at all. */
  size_t len = 0;
  CHECK_CODE(tu_unary_size(ch, NULL, 7, &len), RGRPC_STATUS_CODE_OK);
  CHECK_EQ_INT(len, 7);
  for (int i = 0; i < 20; i++) async_unary_ok(ch, 100 + i);

  /* While another thread is blocked in recv on a stream of the same
   * connection, callback calls complete (through that thread), and after
   * its recv returns they still do. */
  rgrpc_call *bidi = tu_open_bidi(ch, NULL);
  recv_job rx = {bidi, 0};
  pthread_t t;
  tu_thread_start(&t, recv_one, &rx);
  tu_sleep_ms(100); /* let it block */
  for (int i = 0; i < 5; i++) async_unary_ok(ch, 200 + i);
  int32_t five = 5;
  tu_pb req = tu_streaming_output_request(&five, NULL, 1, 0, 0, NULL);
  tu_send_pb(bidi, &req, RGRPC_SEND_LAST);
  tu_pb_free(&req);
  tu_thread_join(t);
  CHECK_EQ_INT(rx.len, 5);
  for (int i = 0; i < 5; i++) async_unary_ok(ch, 300 + i);
  CHECK_CODE(tu_finish_code(bidi), RGRPC_STATUS_CODE_OK);
  rgrpc_call_free(bidi);
  rgrpc_channel_free(ch);
}

int main(void) {
  RUN_TEST(test_unary_async_callback);
  RUN_TEST(test_unary_async_wait);
  RUN_TEST(test_cancel_pending_async);
  RUN_TEST(test_async_fire_and_forget);
  RUN_TEST(test_on_done);
  RUN_TEST(test_free_call_in_done_callback);
  RUN_TEST(test_inline_callbacks);
  RUN_TEST(test_on_message_push_mode);
  RUN_TEST(test_on_message_bidi);
  RUN_TEST(test_call_ends_without_reader);
  RUN_TEST(test_async_after_blocked_callers);
  return 0;
}

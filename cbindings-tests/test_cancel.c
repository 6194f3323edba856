/* Cancellation: from another thread while blocked, idempotence, before any
 * send, freeing an active call, closing the channel, concurrent receivers. */
#include "test_util.h"

typedef struct {
  rgrpc_call *call;
  int64_t delay_ms;
  rgrpc_channel *channel; /* when set, close the channel instead */
} canceller_args;

static void *canceller_main(void *p) {
  canceller_args *a = p;
  tu_sleep_ms(a->delay_ms);
  if (a->channel) CHECK_OK(rgrpc_channel_close(a->channel));
  else CHECK_OK(rgrpc_call_cancel(a->call));
  return NULL;
}

static void test_cancel_from_other_thread_unblocks_recv(void) {
  rgrpc_channel *ch = tu_channel(NULL, NULL);
  rgrpc_call *call = tu_open_bidi(ch, NULL);
  canceller_args a = {call, 200, NULL};
  pthread_t t;
  int64_t t0 = tu_now_ms();
  tu_thread_start(&t, canceller_main, &a);
  rgrpc_buffer *buf = NULL;
  CHECK_RC(rgrpc_call_recv(call, &buf), RGRPC_RESULT_END_OF_STREAM);
  int64_t el = tu_now_ms() - t0;
  CHECK_MSG(el >= 150 && el < 1000 * tu_slow(), "recv returned %lld ms after start (cancel at 200)",
            (long long)el);
  tu_thread_join(t);
  CHECK(!rgrpc_call_is_active(call));
  const rgrpc_status *st = NULL;
  CHECK_RC(rgrpc_call_finish(call, &st), RGRPC_RESULT_RPC_FAILED);
  CHECK_STATUS(st, RGRPC_STATUS_CODE_CANCELLED);
  rgrpc_status_free(st);
  /* After a cancel: send says the call ended; recv END_OF_STREAM again. */
  CHECK_RC(rgrpc_call_send(call, NULL, 0, 0), RGRPC_RESULT_CALL_ENDED);
  CHECK_RC(rgrpc_call_recv(call, &buf), RGRPC_RESULT_END_OF_STREAM);
  rgrpc_call_free(call);
  /* The channel (and its connection) still serves new calls. */
  CHECK_CODE(tu_unary_size(ch, NULL, 5, NULL), RGRPC_STATUS_CODE_OK);
  rgrpc_channel_free(ch);
}

/* finish blocked in one thread, cancel from another. */
static void test_cancel_unblocks_finish(void) {
  rgrpc_channel *ch = tu_channel(NULL, NULL);
  rgrpc_call *call = tu_open_bidi(ch, NULL);
  canceller_args a = {call, 200, NULL};
  pthread_t t;
  int64_t t0 = tu_now_ms();
  tu_thread_start(&t, canceller_main, &a);
  CHECK_CODE(tu_finish_code(call), RGRPC_STATUS_CODE_CANCELLED);
  CHECK_MSG(tu_now_ms() - t0 < 1000 * tu_slow(), "finish took %lld ms",
            (long long)(tu_now_ms() - t0));
  tu_thread_join(t);
  rgrpc_call_free(call);
  rgrpc_channel_free(ch);
}

/* initial_metadata blocked (the server sends no headers yet), then cancel. */
static void test_cancel_unblocks_initial_metadata(void) {
  rgrpc_channel *ch = tu_channel(NULL, NULL);
  rgrpc_call *call = NULL;
  CHECK_OK(rgrpc_call_start(ch, M_BIDI, NULL, &call));
  CHECK_OK(rgrpc_call_send(call, NULL, 0, 0)); /* no response parameters: no headers */
  canceller_args a = {call, 200, NULL};
  pthread_t t;
  int64_t t0 = tu_now_ms();
  tu_thread_start(&t, canceller_main, &a);
  const rgrpc_metadata *md = NULL;
  CHECK_OK(rgrpc_call_initial_metadata(call, &md));
  CHECK_MSG(tu_now_ms() - t0 < 1000 * tu_slow(), "initial_metadata took %lld ms",
            (long long)(tu_now_ms() - t0));
  CHECK_EQ_INT(rgrpc_metadata_len(md), 0);
  tu_thread_join(t);
  CHECK_CODE(tu_finish_code(call), RGRPC_STATUS_CODE_CANCELLED);
  rgrpc_call_free(call);
  rgrpc_channel_free(ch);
}

static void test_cancel_idempotent(void) {
  rgrpc_channel *ch = tu_channel(NULL, NULL);
  rgrpc_call *call = tu_open_bidi(ch, NULL);
  CHECK_OK(rgrpc_call_cancel(call));
  CHECK_OK(rgrpc_call_cancel(call));
  CHECK(!rgrpc_call_is_active(call));
  CHECK_CODE(tu_finish_code(call), RGRPC_STATUS_CODE_CANCELLED);
  CHECK_OK(rgrpc_call_cancel(call));
  CHECK_CODE(tu_finish_code(call), RGRPC_STATUS_CODE_CANCELLED);
  rgrpc_call_free(call);

  /* Cancel after a successful end: no effect, the status stays OK. */
  CHECK_OK(rgrpc_call_start(ch, M_EMPTY, NULL, &call));
  CHECK_OK(rgrpc_call_send(call, NULL, 0, RGRPC_SEND_LAST));
  CHECK_CODE(tu_finish_code(call), RGRPC_STATUS_CODE_OK);
  CHECK_OK(rgrpc_call_cancel(call));
  CHECK_CODE(tu_finish_code(call), RGRPC_STATUS_CODE_OK);
  rgrpc_call_free(call);
  rgrpc_channel_free(ch);
}

static void test_cancel_before_send(void) {
  rgrpc_channel *ch = tu_channel(NULL, NULL);
  rgrpc_call *call = NULL;
  CHECK_OK(rgrpc_call_start(ch, M_BIDI, NULL, &call));
  CHECK(rgrpc_call_is_active(call));
  CHECK_OK(rgrpc_call_cancel(call));
  CHECK(!rgrpc_call_is_active(call));
  CHECK_RC(rgrpc_call_send(call, NULL, 0, 0), RGRPC_RESULT_CALL_ENDED);
  CHECK_RC(rgrpc_call_close_send(call), RGRPC_RESULT_CALL_ENDED);
  rgrpc_buffer *buf = NULL;
  CHECK_RC(rgrpc_call_recv(call, &buf), RGRPC_RESULT_END_OF_STREAM);
  const rgrpc_metadata *md = NULL;
  CHECK_OK(rgrpc_call_initial_metadata(call, &md));
  CHECK_EQ_INT(rgrpc_metadata_len(md), 0);
  const rgrpc_status *st = NULL;
  CHECK_RC(rgrpc_call_finish(call, &st), RGRPC_RESULT_RPC_FAILED);
  CHECK_STATUS(st, RGRPC_STATUS_CODE_CANCELLED);
  rgrpc_status_free(st);
  rgrpc_call_free(call);

  /* A cancelled call on a channel that cannot connect: CANCELLED, not UNAVAILABLE. */
  rgrpc_channel *nowhere = tu_channel("127.0.0.1:1", NULL);
  CHECK_OK(rgrpc_call_start(nowhere, M_UNARY, NULL, &call));
  CHECK_OK(rgrpc_call_cancel(call));
  CHECK_CODE(tu_finish_code(call), RGRPC_STATUS_CODE_CANCELLED);
  rgrpc_call_free(call);
  rgrpc_channel_free(nowhere);
  rgrpc_channel_free(ch);
}

/* Cancel after the deadline passed: DEADLINE_EXCEEDED wins. */
static void test_cancel_after_deadline(void) {
  rgrpc_channel *ch = tu_channel(NULL, NULL);
  rgrpc_call_options *o = rgrpc_call_options_new();
  CHECK_OK(rgrpc_call_options_set_timeout_ms(o, 100));
  rgrpc_call *call = NULL;
  CHECK_OK(rgrpc_call_start(ch, M_BIDI, o, &call));
  rgrpc_call_options_free(o);
  tu_sleep_ms(250);
  CHECK_OK(rgrpc_call_cancel(call));
  CHECK_CODE(tu_finish_code(call), RGRPC_STATUS_CODE_DEADLINE_EXCEEDED);
  rgrpc_call_free(call);
  rgrpc_channel_free(ch);
}

typedef struct {
  tu_latch latch;
  pthread_mutex_t mu;
  int runs;
  rgrpc_status_code code;
} done_record;

static void record_done(void *ud, const rgrpc_status *st) {
  done_record *r = ud;
  pthread_mutex_lock(&r->mu);
  r->runs++;
  r->code = rgrpc_status_get_code(st);
  pthread_mutex_unlock(&r->mu);
  tu_latch_count_down(&r->latch);
}

static void done_record_init(done_record *r) {
  tu_latch_init(&r->latch, 1);
  pthread_mutex_init(&r->mu, NULL);
  r->runs = 0;
  r->code = RGRPC_STATUS_CODE_OK;
}

static void done_record_destroy(done_record *r) {
  pthread_mutex_destroy(&r->mu);
  tu_latch_destroy(&r->latch);
}

static void test_free_active_call(void) {
  rgrpc_channel *ch = tu_channel(NULL, NULL);
  done_record r;
  done_record_init(&r);

  /* A bidi call with an open stream, a done callback registered. */
  rgrpc_call *call = tu_open_bidi(ch, NULL);
  CHECK_OK(rgrpc_call_on_done(call, record_done, &r));
  rgrpc_call_free(call); /* cancels; the callback still runs, with CANCELLED */
  CHECK_MSG(tu_latch_wait(&r.latch, 5000 * tu_slow()), "done callback did not run after free");
  tu_sleep_ms(50);
  pthread_mutex_lock(&r.mu);
  CHECK_EQ_INT(r.runs, 1);
  CHECK_CODE(r.code, RGRPC_STATUS_CODE_CANCELLED);
  pthread_mutex_unlock(&r.mu);
  done_record_destroy(&r);

  /* Freed without ever being used, and freed right after a send. */
  CHECK_OK(rgrpc_call_start(ch, M_BIDI, NULL, &call));
  rgrpc_call_free(call);
  CHECK_OK(rgrpc_call_start(ch, M_SERVER_STREAM, NULL, &call));
  static const int32_t sizes[] = {100, 100, 100};
  static const int32_t intervals[] = {0, 500000, 500000};
  tu_pb req = tu_streaming_output_request(sizes, intervals, 3, 0, 0, NULL);
  tu_send_pb(call, &req, RGRPC_SEND_LAST);
  tu_pb_free(&req);
  rgrpc_call_free(call);

  /* The channel keeps working. */
  CHECK_CODE(tu_unary_size(ch, NULL, 9, NULL), RGRPC_STATUS_CODE_OK);
  rgrpc_channel_free(ch);
}

typedef struct {
  rgrpc_call *call;
  rgrpc_result recv_rc;
  int64_t returned_at;
} receiver_args;

static void *receiver_main(void *p) {
  receiver_args *a = p;
  rgrpc_buffer *buf = NULL;
  a->recv_rc = rgrpc_call_recv(a->call, &buf);
  a->returned_at = tu_now_ms();
  rgrpc_buffer_free(buf);
  return NULL;
}

typedef struct {
  tu_latch latch;
  rgrpc_status_code code;
  size_t response_len;
} unary_record;

static void record_unary(void *ud, const rgrpc_status *st, const uint8_t *resp, size_t len) {
  unary_record *r = ud;
  r->code = rgrpc_status_get_code(st);
  r->response_len = resp ? len : (size_t)-1;
  tu_latch_count_down(&r->latch);
}

static void test_channel_close_with_active_calls(void) {
  rgrpc_channel *ch = tu_channel(NULL, NULL);

  /* 1: a bidi call, a thread blocked in recv on it. */
  rgrpc_call *bidi = tu_open_bidi(ch, NULL);
  receiver_args ra = {bidi, RGRPC_RESULT_OK, 0};
  pthread_t t;
  tu_thread_start(&t, receiver_main, &ra);

  /* 2: a server-streaming call with long intervals, one message read. */
  static const int32_t sizes[] = {1, 2, 3};
  static const int32_t intervals[] = {0, 3000000, 3000000};
  rgrpc_call *stream = NULL;
  CHECK_OK(rgrpc_call_start(ch, M_SERVER_STREAM, NULL, &stream));
  tu_pb req = tu_streaming_output_request(sizes, intervals, 3, 0, 0, NULL);
  tu_send_pb(stream, &req, RGRPC_SEND_LAST);
  tu_pb_free(&req);
  CHECK_EQ_INT(tu_recv_body_len(stream), 1);

  /* 3: an async unary call on a sleeping server. */
  unary_record ur;
  tu_latch_init(&ur.latch, 1);
  ur.code = RGRPC_STATUS_CODE_OK;
  ur.response_len = 0;
  rgrpc_call_options *sleepy = tu_opts_md("x-rgrpc-sleep-ms", "3000");
  tu_pb ureq = tu_simple_request(10, 0, 0, NULL);
  CHECK_OK(rgrpc_call_unary_async(ch, M_UNARY, sleepy, ureq.data, ureq.len, record_unary, &ur,
                                  NULL));

  /* 4: a call started but never used. */
  rgrpc_call *idle = NULL;
  CHECK_OK(rgrpc_call_start(ch, M_BIDI, NULL, &idle));

  tu_sleep_ms(200);
  int64_t t0 = tu_now_ms();
  CHECK_OK(rgrpc_channel_close(ch));
  CHECK_OK(rgrpc_channel_close(ch)); /* idempotent */

  tu_thread_join(t);
  CHECK_RC(ra.recv_rc, RGRPC_RESULT_END_OF_STREAM);
  CHECK_MSG(ra.returned_at - t0 < 1000 * tu_slow(), "blocked recv returned %lld ms after close",
            (long long)(ra.returned_at - t0));
  CHECK_CODE(tu_finish_code(bidi), RGRPC_STATUS_CODE_CANCELLED);
  rgrpc_buffer *buf = NULL;
  CHECK_RC(rgrpc_call_recv(stream, &buf), RGRPC_RESULT_END_OF_STREAM);
  CHECK_CODE(tu_finish_code(stream), RGRPC_STATUS_CODE_CANCELLED);
  CHECK_MSG(tu_latch_wait(&ur.latch, 2000 * tu_slow()), "async unary callback did not run");
  CHECK_CODE(ur.code, RGRPC_STATUS_CODE_CANCELLED);
  CHECK_EQ_INT(ur.response_len, (size_t)-1);
  CHECK_CODE(tu_finish_code(idle), RGRPC_STATUS_CODE_CANCELLED);
  CHECK_MSG(tu_now_ms() - t0 < 1500 * tu_slow(), "calls took %lld ms to end after close",
            (long long)(tu_now_ms() - t0));

  /* New calls are refused. */
  rgrpc_call *call = NULL;
  CHECK_RC(rgrpc_call_start(ch, M_UNARY, NULL, &call), RGRPC_RESULT_CHANNEL_CLOSED);
  CHECK(call == NULL);
  rgrpc_buffer *resp = NULL;
  const rgrpc_status *st = NULL;
  CHECK_RC(rgrpc_call_unary(ch, M_UNARY, NULL, ureq.data, ureq.len, &resp, &st),
           RGRPC_RESULT_CHANNEL_CLOSED);
  CHECK(resp == NULL);
  CHECK(st == NULL); /* out-parameters are written only on success or RPC failure */
  unary_record never;
  tu_latch_init(&never.latch, 1);
  CHECK_RC(rgrpc_call_unary_async(ch, M_UNARY, NULL, ureq.data, ureq.len, record_unary, &never,
                                  &call),
           RGRPC_RESULT_CHANNEL_CLOSED);
  CHECK(call == NULL);
  CHECK(!tu_latch_wait(&never.latch, 100)); /* the callback never runs */
  tu_latch_destroy(&never.latch);

  tu_pb_free(&ureq);
  rgrpc_call_options_free(sleepy);
  rgrpc_call_free(bidi);
  rgrpc_call_free(stream);
  rgrpc_call_free(idle);
  tu_latch_destroy(&ur.latch);
  rgrpc_channel_free(ch);
}

/* Close from another thread while the main thread is blocked in recv. */
static void test_channel_close_from_other_thread(void) {
  rgrpc_channel *ch = tu_channel(NULL, NULL);
  rgrpc_call *call = tu_open_bidi(ch, NULL);
  canceller_args a = {NULL, 200, ch};
  pthread_t t;
  tu_thread_start(&t, canceller_main, &a);
  rgrpc_buffer *buf = NULL;
  CHECK_RC(rgrpc_call_recv(call, &buf), RGRPC_RESULT_END_OF_STREAM);
  tu_thread_join(t);
  CHECK_CODE(tu_finish_code(call), RGRPC_STATUS_CODE_CANCELLED);
  rgrpc_call_free(call);
  rgrpc_channel_free(ch);
}

/* Freeing the channel handle does not end its calls. */
static void test_channel_free_keeps_calls(void) {
  rgrpc_channel *ch = tu_channel(NULL, NULL);
  rgrpc_call *call = tu_open_bidi(ch, NULL);
  rgrpc_channel_free(ch);
  static const int32_t size = 77;
  tu_pb req = tu_streaming_output_request(&size, NULL, 1, 0, 0, NULL);
  tu_send_pb(call, &req, RGRPC_SEND_LAST);
  tu_pb_free(&req);
  CHECK_EQ_INT(tu_recv_body_len(call), 77);
  CHECK_CODE(tu_finish_code(call), RGRPC_STATUS_CODE_OK);
  rgrpc_call_free(call);
}

static void test_two_receivers_busy(void) {
  rgrpc_channel *ch = tu_channel(NULL, NULL);
  rgrpc_call *call = tu_open_bidi(ch, NULL);
  receiver_args ra = {call, RGRPC_RESULT_OK, 0};
  pthread_t t;
  tu_thread_start(&t, receiver_main, &ra);
  tu_sleep_ms(300); /* let the thread block in recv */
  rgrpc_buffer *buf = NULL;
  CHECK_RC(rgrpc_call_recv(call, &buf), RGRPC_RESULT_BUSY);
  CHECK(buf == NULL);
  /* The call is unharmed: answer the blocked receiver. */
  static const int32_t size = 12;
  tu_pb req = tu_streaming_output_request(&size, NULL, 1, 0, 0, NULL);
  tu_send_pb(call, &req, RGRPC_SEND_LAST);
  tu_pb_free(&req);
  tu_thread_join(t);
  CHECK_RC(ra.recv_rc, RGRPC_RESULT_OK);
  CHECK_RC(rgrpc_call_recv(call, &buf), RGRPC_RESULT_END_OF_STREAM);
  CHECK_CODE(tu_finish_code(call), RGRPC_STATUS_CODE_OK);
  rgrpc_call_free(call);

  /* Same, but the blocked receiver is released by a cancel. */
  call = tu_open_bidi(ch, NULL);
  ra.call = call;
  tu_thread_start(&t, receiver_main, &ra);
  tu_sleep_ms(300);
  CHECK_RC(rgrpc_call_recv(call, &buf), RGRPC_RESULT_BUSY);
  CHECK_OK(rgrpc_call_cancel(call));
  tu_thread_join(t);
  CHECK_RC(ra.recv_rc, RGRPC_RESULT_END_OF_STREAM);
  CHECK_CODE(tu_finish_code(call), RGRPC_STATUS_CODE_CANCELLED);
  rgrpc_call_free(call);
  rgrpc_channel_free(ch);
}

int main(void) {
  RUN_TEST(test_cancel_from_other_thread_unblocks_recv);
  RUN_TEST(test_cancel_unblocks_finish);
  RUN_TEST(test_cancel_unblocks_initial_metadata);
  RUN_TEST(test_cancel_idempotent);
  RUN_TEST(test_cancel_before_send);
  RUN_TEST(test_cancel_after_deadline);
  RUN_TEST(test_free_active_call);
  RUN_TEST(test_two_receivers_busy);
  RUN_TEST(test_channel_free_keeps_calls);
  RUN_TEST(test_channel_close_from_other_thread);
  RUN_TEST(test_channel_close_with_active_calls);
  return 0;
}

/* Waiting for READY: fail-fast versus wait-for-ready calls on a channel
 * that cannot connect, rgrpc_channel_wait_for_ready, the reconnect backoff
 * and rgrpc_channel_reset_connect_backoff, and the ready future (wait,
 * callback, cancel, free). Helpers in conn_util.c. */
#include "conn_util.h"

/* ------------------------------------------------------------------ tests */

/* Nothing listens: TRANSIENT_FAILURE, fail-fast vs wait-for-ready calls,
 * blocked waiters released by close. */
static void test_refused_target(void) {
  rgrpc_channel *ch = refused_channel(200, 1000);
  state_log l;
  log_init(&l);
  uint64_t id = log_subscribe(ch, &l, true);
  CHECK_MSG(log_wait_state(&l, S_TF, 0, 5000 * tu_slow()) >= 0, "no TRANSIENT_FAILURE: %s",
            log_str(&l));
  CHECK_EQ_INT(log_at(&l, 0), S_IDLE); /* the state when subscribing */
  uint32_t s = rgrpc_channel_get_state(ch, false);
  CHECK_MSG(s == S_TF || s == S_CONNECTING, "state %s", sname(s));

  /* Fail-fast calls end with UNAVAILABLE at once, saying why. */
  for (int i = 0; i < 3; i++) {
    char details[512];
    int64_t t0 = tu_now_ms();
    CHECK_CODE(tu_unary_details(ch, NULL, 1, NULL, details, sizeof details), RGRPC_STATUS_CODE_UNAVAILABLE);
    int64_t el = tu_now_ms() - t0;
    CHECK_MSG(el < 300 * tu_slow(), "a fail-fast call took %lld ms", (long long)el);
    CHECK_NONEMPTY(details);
  }
  rgrpc_call *call = NULL;
  CHECK_OK(rgrpc_call_start(ch, M_BIDI, NULL, &call));
  rgrpc_buffer *buf = NULL;
  CHECK_RC(rgrpc_call_recv(call, &buf), RGRPC_RESULT_END_OF_STREAM);
  CHECK_CODE(tu_finish_code(call), RGRPC_STATUS_CODE_UNAVAILABLE);
  rgrpc_call_free(call);

  /* Wait-for-ready calls wait, until their deadline. */
  rgrpc_call_options *o = wfr_opts(300);
  int64_t t0 = tu_now_ms();
  CHECK_CODE(tu_unary_size(ch, o, 1, NULL), RGRPC_STATUS_CODE_DEADLINE_EXCEEDED);
  int64_t el = tu_now_ms() - t0;
  CHECK_MSG(el >= 250 && el < 2000 * tu_slow(), "wait-for-ready call ended after %lld ms",
            (long long)el);
  rgrpc_call_options_free(o);

  /* Blocking wait for READY: TIMEOUT. */
  t0 = tu_now_ms();
  CHECK_RC(rgrpc_channel_wait_for_ready(ch, 300), RGRPC_RESULT_TIMEOUT);
  el = tu_now_ms() - t0;
  CHECK_MSG(el >= 250 && el < 2000 * tu_slow(), "wait_for_ready(300) took %lld ms",
            (long long)el);
  CHECK_RC(rgrpc_channel_wait_for_ready(ch, 0), RGRPC_RESULT_TIMEOUT);

  /* Leaving TRANSIENT_FAILURE: a short wait may time out (state_out then
   * untouched); the backoff (at most 1.2 s here) ends in CONNECTING. */
  CHECK_MSG(wait_state(ch, S_TF, 5000 * tu_slow()), "not in TRANSIENT_FAILURE");
  rgrpc_connectivity_state next = (rgrpc_connectivity_state)99;
  rgrpc_result rc = rgrpc_channel_wait_for_state_change(ch, S_TF, 10, &next);
  CHECK_MSG((rc == RGRPC_RESULT_TIMEOUT && next == 99) ||
                (rc == RGRPC_RESULT_OK && next == S_CONNECTING),
            "wait_for_state_change(TF, 10 ms): %s, %s", rgrpc_result_name(rc),
            next == 99 ? "-" : sname(next));
  CHECK_OK(rgrpc_channel_wait_for_state_change(ch, S_TF, 5000 * tu_slow(), &next));
  CHECK_EQ_INT(next, S_CONNECTING);
  CHECK_OK(rgrpc_channel_reset_connect_backoff(ch));

  /* Blocked waiters (a wait-for-ready call, wait_for_ready) end on close. */
  wfr_call_args ca;
  memset(&ca, 0, sizeof ca);
  ca.ch = ch;
  ca.timeout_ms = 30000;
  tu_latch_init(&ca.done, 1);
  wait_ready_args wa;
  memset(&wa, 0, sizeof wa);
  wa.ch = ch;
  wa.timeout_ms = 30000;
  tu_latch_init(&wa.done, 1);
  pthread_t tc, tw;
  tu_thread_start(&tc, wfr_call_main, &ca);
  tu_thread_start(&tw, wait_ready_main, &wa);
  tu_sleep_ms(400);
  CHECK_MSG(tu_latch_count(&ca.done) == 1, "the wait-for-ready call ended before close");
  CHECK_MSG(tu_latch_count(&wa.done) == 1, "wait_for_ready returned before close");
  t0 = tu_now_ms();
  CHECK_OK(rgrpc_channel_close(ch));
  CHECK_MSG(tu_latch_wait(&ca.done, 5000 * tu_slow()), "the wait-for-ready call did not end");
  CHECK_MSG(tu_latch_wait(&wa.done, 5000 * tu_slow()), "wait_for_ready did not return");
  tu_thread_join(tc);
  tu_thread_join(tw);
  CHECK_CODE(ca.code, RGRPC_STATUS_CODE_CANCELLED);
  CHECK_RC(wa.rc, RGRPC_RESULT_CHANNEL_CLOSED);
  CHECK_MSG(ca.ended_at - t0 < 1000 * tu_slow(), "the call ended %lld ms after close",
            (long long)(ca.ended_at - t0));
  CHECK_MSG(wa.ended_at - t0 < 1000 * tu_slow(), "wait_for_ready returned %lld ms after close",
            (long long)(wa.ended_at - t0));
  tu_latch_destroy(&ca.done);
  tu_latch_destroy(&wa.done);

  /* Closed. */
  CHECK_RC(rgrpc_channel_wait_for_ready(ch, 300), RGRPC_RESULT_CHANNEL_CLOSED);
  CHECK_EQ_INT(rgrpc_channel_get_state(ch, false), S_SHUTDOWN);
  CHECK_OK(rgrpc_channel_wait_for_state_change(ch, S_TF, 1000, &next));
  CHECK_EQ_INT(next, S_SHUTDOWN);
  CHECK_OK(rgrpc_channel_reset_connect_backoff(ch));
  CHECK_EQ_INT(rgrpc_channel_get_state(ch, true), S_SHUTDOWN);
  tu_pb req = tu_simple_request(1, 0, 0, NULL);
  rgrpc_buffer *resp = NULL;
  const rgrpc_status *st = NULL;
  CHECK_RC(rgrpc_call_unary(ch, M_UNARY, NULL, req.data, req.len, &resp, &st),
           RGRPC_RESULT_CHANNEL_CLOSED);
  tu_pb_free(&req);

  /* The subscriber saw attempts come and go, and the end. */
  CHECK_MSG(log_wait_state(&l, S_SHUTDOWN, 0, 2000 * tu_slow()) >= 0, "no SHUTDOWN: %s",
            log_str(&l));
  tu_sleep_ms(50);
  CHECK_LOG_LEGAL(&l);
  CHECK_EQ_INT(log_at(&l, log_count(&l) - 1), S_SHUTDOWN);
  CHECK_MSG(log_count_state(&l, S_TF) >= 2, "expected reconnect attempts: %s", log_str(&l));
  rc = rgrpc_channel_unsubscribe(ch, id);
  CHECK(rc == RGRPC_RESULT_OK || rc == RGRPC_RESULT_NOT_FOUND);
  rgrpc_channel_free(ch);
  log_destroy(&l);
}

/* reset_connect_backoff cuts a long backoff short; on an IDLE channel it
 * starts connecting. */
static void test_reset_connect_backoff(void) {
  rgrpc_channel *ch = refused_channel(5000, 10000);
  state_log l;
  log_init(&l);
  uint64_t id = log_subscribe(ch, &l, true);
  int tf = log_wait_state(&l, S_TF, 0, 5000 * tu_slow());
  CHECK_MSG(tf >= 0, "no TRANSIENT_FAILURE: %s", log_str(&l));
  tu_sleep_ms(300);
  /* The next attempt would come 4 to 6 s after the first. */
  CHECK_MSG(log_count(&l) == tf + 1, "attempts did not back off: %s", log_str(&l));
  for (int round = 0; round < 2; round++) {
    int64_t t0 = tu_now_ms();
    CHECK_OK(rgrpc_channel_reset_connect_backoff(ch));
    int c = log_wait_state(&l, S_CONNECTING, tf + 1, 1000 * tu_slow());
    CHECK_MSG(c >= 0, "reset_connect_backoff did not start an attempt: %s", log_str(&l));
    CHECK_MSG(log_time(&l, c) - t0 < 1000 * tu_slow(), "attempt %lld ms after the reset",
              (long long)(log_time(&l, c) - t0));
    tf = log_wait_state(&l, S_TF, c + 1, 5000 * tu_slow());
    CHECK_MSG(tf >= 0, "no TRANSIENT_FAILURE after the new attempt: %s", log_str(&l));
  }
  log_unsubscribe(ch, &l, id);
  CHECK_LOG_LEGAL(&l);
  CHECK_OK(rgrpc_channel_close(ch));
  rgrpc_channel_free(ch);
  log_destroy(&l);

  /* An IDLE channel starts connecting. */
  ch = refused_channel(5000, 10000);
  CHECK_EQ_INT(rgrpc_channel_get_state(ch, false), S_IDLE);
  CHECK_OK(rgrpc_channel_reset_connect_backoff(ch));
  rgrpc_connectivity_state next = S_IDLE;
  CHECK_OK(rgrpc_channel_wait_for_state_change(ch, S_IDLE, 2000 * tu_slow(), &next));
  CHECK_MSG(next == S_CONNECTING || next == S_TF, "left IDLE for %s", sname(next));
  CHECK_OK(rgrpc_channel_close(ch));
  rgrpc_channel_free(ch);
}

static void test_ready_future(void) {
  /* The live server: OK, once. */
  rgrpc_channel *ch = tu_channel(NULL, NULL);
  ready_rec r;
  ready_rec_init(&r);
  rgrpc_ready_future *f = NULL;
  CHECK_OK(rgrpc_channel_ready_future(ch, on_ready, &r, &f));
  CHECK(f != NULL);
  CHECK_OK(rgrpc_ready_future_wait(f, 5000 * tu_slow()));
  CHECK_READY_CB(&r, RGRPC_RESULT_OK);
  CHECK_EQ_INT(rgrpc_channel_get_state(ch, false), S_READY);
  CHECK_OK(rgrpc_ready_future_wait(f, 0)); /* the outcome stays */
  CHECK_OK(rgrpc_ready_future_wait(f, -1));
  CHECK_OK(rgrpc_ready_future_cancel(f)); /* too late: no effect */
  CHECK_OK(rgrpc_ready_future_wait(f, 0));
  rgrpc_ready_future_free(f);
  tu_sleep_ms(50);
  CHECK_EQ_INT(ready_runs(&r), 1);
  ready_rec_destroy(&r);

  /* Already READY, and no callback. */
  CHECK_OK(rgrpc_channel_ready_future(ch, NULL, NULL, &f));
  CHECK_OK(rgrpc_ready_future_wait(f, 2000 * tu_slow()));
  rgrpc_ready_future_free(f);
  CHECK_CODE(tu_unary_size(ch, NULL, 3, NULL), RGRPC_STATUS_CODE_OK);
  rgrpc_channel_free(ch);

  /* The refused target: pending until cancelled. */
  ch = refused_channel(200, 1000);
  ready_rec_init(&r);
  CHECK_OK(rgrpc_channel_ready_future(ch, on_ready, &r, &f));
  int64_t t0 = tu_now_ms();
  CHECK_RC(rgrpc_ready_future_wait(f, 200), RGRPC_RESULT_TIMEOUT);
  int64_t el = tu_now_ms() - t0;
  CHECK_MSG(el >= 150 && el < 2000 * tu_slow(), "wait(200) took %lld ms", (long long)el);
  CHECK_RC(rgrpc_ready_future_wait(f, 0), RGRPC_RESULT_TIMEOUT);
  uint32_t s = rgrpc_channel_get_state(ch, false); /* the future made it connect */
  CHECK_MSG(s == S_TF || s == S_CONNECTING, "state %s", sname(s));
  CHECK_EQ_INT(ready_runs(&r), 0);
  CHECK_OK(rgrpc_ready_future_cancel(f));
  CHECK_READY_CB(&r, RGRPC_RESULT_CANCELLED);
  CHECK_RC(rgrpc_ready_future_wait(f, 0), RGRPC_RESULT_CANCELLED);
  CHECK_RC(rgrpc_ready_future_wait(f, -1), RGRPC_RESULT_CANCELLED);
  CHECK_OK(rgrpc_ready_future_cancel(f)); /* idempotent */
  rgrpc_ready_future_free(f);
  tu_sleep_ms(50);
  CHECK_EQ_INT(ready_runs(&r), 1);
  ready_rec_destroy(&r);

  /* Freeing a pending future cancels it. */
  ready_rec_init(&r);
  CHECK_OK(rgrpc_channel_ready_future(ch, on_ready, &r, &f));
  CHECK_RC(rgrpc_ready_future_wait(f, 50), RGRPC_RESULT_TIMEOUT);
  rgrpc_ready_future_free(f);
  CHECK_READY_CB(&r, RGRPC_RESULT_CANCELLED);
  ready_rec_destroy(&r);

  /* Cancelled from this thread while another waits without limit. */
  ready_rec_init(&r);
  CHECK_OK(rgrpc_channel_ready_future(ch, on_ready, &r, &f));
  future_wait_args fw;
  memset(&fw, 0, sizeof fw);
  fw.f = f;
  fw.timeout_ms = -1;
  tu_latch_init(&fw.done, 1);
  pthread_t waiter;
  tu_thread_start(&waiter, future_wait_main, &fw);
  tu_sleep_ms(200);
  CHECK_MSG(tu_latch_count(&fw.done) == 1, "wait(-1) returned before the cancel");
  CHECK_OK(rgrpc_ready_future_cancel(f));
  CHECK_MSG(tu_latch_wait(&fw.done, 2000 * tu_slow()), "wait(-1) not released by cancel");
  tu_thread_join(waiter);
  CHECK_RC(fw.rc, RGRPC_RESULT_CANCELLED);
  CHECK_READY_CB(&r, RGRPC_RESULT_CANCELLED);
  tu_latch_destroy(&fw.done);
  rgrpc_ready_future_free(f);
  ready_rec_destroy(&r);

  /* The channel closes while the future waits: CHANNEL_CLOSED. */
  ready_rec_init(&r);
  CHECK_OK(rgrpc_channel_ready_future(ch, on_ready, &r, &f));
  tu_sleep_ms(100);
  CHECK_EQ_INT(ready_runs(&r), 0);
  CHECK_OK(rgrpc_channel_close(ch));
  CHECK_RC(rgrpc_ready_future_wait(f, 2000 * tu_slow()), RGRPC_RESULT_CHANNEL_CLOSED);
  CHECK_READY_CB(&r, RGRPC_RESULT_CHANNEL_CLOSED);
  CHECK_OK(rgrpc_ready_future_cancel(f)); /* too late: the outcome stays */
  CHECK_RC(rgrpc_ready_future_wait(f, 0), RGRPC_RESULT_CHANNEL_CLOSED);
  rgrpc_ready_future_free(f);
  tu_sleep_ms(50);
  CHECK_EQ_INT(ready_runs(&r), 1);
  ready_rec_destroy(&r);

  /* A future on a channel already closed. */
  ready_rec_init(&r);
  CHECK_OK(rgrpc_channel_ready_future(ch, on_ready, &r, &f));
  CHECK_RC(rgrpc_ready_future_wait(f, 2000 * tu_slow()), RGRPC_RESULT_CHANNEL_CLOSED);
  CHECK_READY_CB(&r, RGRPC_RESULT_CHANNEL_CLOSED);
  rgrpc_ready_future_free(f);
  ready_rec_destroy(&r);
  rgrpc_channel_free(ch);
}

int main(void) {
  RUN_TEST(test_refused_target);
  RUN_TEST(test_reset_connect_backoff);
  RUN_TEST(test_ready_future);
  return 0;
}

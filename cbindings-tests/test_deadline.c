/* Deadlines: relative timeouts, absolute deadlines, expiry while the server
 * sleeps and mid-stream, time remaining, what the server sees. */
#include "test_util.h"

/* Options: x-rgrpc-sleep-ms: sleep_ms (when > 0), timeout (when >= 0). */
static rgrpc_call_options *sleep_opts(int sleep_ms, int64_t timeout_ms) {
  rgrpc_call_options *o = rgrpc_call_options_new();
  if (sleep_ms > 0) {
    char v[32];
    snprintf(v, sizeof v, "%d", sleep_ms);
    CHECK_OK(rgrpc_call_options_add_metadata_string(o, "x-rgrpc-sleep-ms", v));
  }
  if (timeout_ms >= 0) CHECK_OK(rgrpc_call_options_set_timeout_ms(o, timeout_ms));
  return o;
}

static void expect_elapsed(int64_t t0, int64_t min_ms, int64_t max_ms, const char *what) {
  int64_t el = tu_now_ms() - t0;
  max_ms *= tu_slow();
  CHECK_MSG(el >= min_ms && el <= max_ms, "%s took %lld ms, want %lld..%lld", what, (long long)el,
            (long long)min_ms, (long long)max_ms);
}

static void test_timeout_expires_unary(void) {
  rgrpc_channel *ch = tu_channel(NULL, NULL);
  CHECK_CODE(tu_unary_size(ch, NULL, 1, NULL), RGRPC_STATUS_CODE_OK); /* connect first */
  rgrpc_call_options *o = sleep_opts(2000, 200);
  int64_t t0 = tu_now_ms();
  size_t len = 0;
  CHECK_CODE(tu_unary_size(ch, o, 10, &len), RGRPC_STATUS_CODE_DEADLINE_EXCEEDED);
  expect_elapsed(t0, 190, 1000, "a 200 ms timeout");
  CHECK_EQ_INT(len, (size_t)-1);

  /* Through a call object: recv returns early, finish says DEADLINE_EXCEEDED. */
  rgrpc_call *call = NULL;
  t0 = tu_now_ms();
  CHECK_OK(rgrpc_call_start(ch, M_UNARY, o, &call));
  tu_pb req = tu_simple_request(10, 0, 0, NULL);
  tu_send_pb(call, &req, RGRPC_SEND_LAST);
  tu_pb_free(&req);
  rgrpc_buffer *buf = NULL;
  CHECK_RC(rgrpc_call_recv(call, &buf), RGRPC_RESULT_END_OF_STREAM);
  expect_elapsed(t0, 190, 1000, "recv with a 200 ms timeout");
  CHECK_CODE(tu_finish_code(call), RGRPC_STATUS_CODE_DEADLINE_EXCEEDED);
  CHECK(!rgrpc_call_is_active(call));
  CHECK_EQ_INT(rgrpc_call_time_remaining_ms(call), 0);
  rgrpc_call_free(call);

  /* finish alone (no recv) also returns at the deadline. */
  t0 = tu_now_ms();
  CHECK_OK(rgrpc_call_start(ch, M_EMPTY, o, &call));
  CHECK_OK(rgrpc_call_send(call, NULL, 0, RGRPC_SEND_LAST));
  CHECK_CODE(tu_finish_code(call), RGRPC_STATUS_CODE_DEADLINE_EXCEEDED);
  expect_elapsed(t0, 190, 1000, "finish with a 200 ms timeout");
  rgrpc_call_free(call);
  rgrpc_call_options_free(o);

  /* The channel is fine afterwards. */
  CHECK_CODE(tu_unary_size(ch, NULL, 1, NULL), RGRPC_STATUS_CODE_OK);
  rgrpc_channel_free(ch);
}

static void test_generous_timeout_ok(void) {
  rgrpc_channel *ch = tu_channel(NULL, NULL);
  rgrpc_call_options *o = sleep_opts(100, 10000);
  size_t len = 0;
  CHECK_CODE(tu_unary_size(ch, o, 42, &len), RGRPC_STATUS_CODE_OK);
  CHECK_EQ_INT(len, 42);
  rgrpc_call_options_free(o);
  rgrpc_channel_free(ch);
}

/* A timeout is measured from each call's start, not from when it was set. */
static void test_timeout_per_call(void) {
  rgrpc_channel *ch = tu_channel(NULL, NULL);
  rgrpc_call_options *o = sleep_opts(200, 800 * tu_slow());
  CHECK_CODE(tu_unary_size(ch, o, 1, NULL), RGRPC_STATUS_CODE_OK);
  tu_sleep_ms(700 * tu_slow());
  CHECK_CODE(tu_unary_size(ch, o, 1, NULL), RGRPC_STATUS_CODE_OK);
  rgrpc_call_options_free(o);
  rgrpc_channel_free(ch);
}

static void test_deadline_mid_stream(void) {
  static const int32_t sizes[] = {10, 11, 12, 13, 14, 15, 16, 17, 18, 19};
  static const int32_t intervals[] = {0, 100000, 100000, 100000, 100000,
                                      100000, 100000, 100000, 100000, 100000};
  rgrpc_channel *ch = tu_channel(NULL, NULL);
  CHECK_CODE(tu_unary_size(ch, NULL, 1, NULL), RGRPC_STATUS_CODE_OK);
  rgrpc_call_options *o = sleep_opts(0, 450);
  rgrpc_call *call = NULL;
  int64_t t0 = tu_now_ms();
  CHECK_OK(rgrpc_call_start(ch, M_SERVER_STREAM, o, &call));
  rgrpc_call_options_free(o);
  tu_pb req = tu_streaming_output_request(sizes, intervals, 10, 0, 0, NULL);
  tu_send_pb(call, &req, RGRPC_SEND_LAST);
  tu_pb_free(&req);
  int got = 0;
  rgrpc_buffer *buf = NULL;
  rgrpc_result rc;
  while ((rc = rgrpc_call_recv(call, &buf)) == RGRPC_RESULT_OK) {
    CHECK_EQ_INT(tu_buffer_body_len(buf), sizes[got]);
    rgrpc_buffer_free(buf);
    buf = NULL;
    got++;
  }
  CHECK_RC(rc, RGRPC_RESULT_END_OF_STREAM);
  expect_elapsed(t0, 440, 1500, "a stream with a 450 ms deadline");
  CHECK_MSG(got >= 2 && got < 10, "received %d of 10 messages before the deadline", got);
  CHECK_CODE(tu_finish_code(call), RGRPC_STATUS_CODE_DEADLINE_EXCEEDED);
  /* recv after the end: END_OF_STREAM again. */
  CHECK_RC(rgrpc_call_recv(call, &buf), RGRPC_RESULT_END_OF_STREAM);
  rgrpc_call_free(call);
  rgrpc_channel_free(ch);
}

static void test_bidi_deadline_while_idle(void) {
  rgrpc_channel *ch = tu_channel(NULL, NULL);
  rgrpc_call_options *o = sleep_opts(0, 300);
  rgrpc_call *call = NULL;
  int64_t t0 = tu_now_ms();
  CHECK_OK(rgrpc_call_start(ch, M_BIDI, o, &call));
  rgrpc_call_options_free(o);
  static const int32_t one = 1;
  tu_pb req = tu_streaming_output_request(&one, NULL, 1, 0, 0, NULL);
  tu_send_pb(call, &req, 0);
  CHECK_EQ_INT(tu_recv_body_len(call), 1);
  /* Nothing more comes: recv blocks until the deadline. */
  rgrpc_buffer *buf = NULL;
  CHECK_RC(rgrpc_call_recv(call, &buf), RGRPC_RESULT_END_OF_STREAM);
  expect_elapsed(t0, 290, 1000, "an idle bidi call with a 300 ms deadline");
  CHECK_RC(rgrpc_call_send(call, req.data, req.len, 0), RGRPC_RESULT_CALL_ENDED);
  tu_pb_free(&req);
  CHECK_CODE(tu_finish_code(call), RGRPC_STATUS_CODE_DEADLINE_EXCEEDED);
  rgrpc_call_free(call);
  rgrpc_channel_free(ch);
}

static void test_timeout_zero(void) {
  rgrpc_channel *ch = tu_channel(NULL, NULL);
  CHECK_CODE(tu_unary_size(ch, NULL, 1, NULL), RGRPC_STATUS_CODE_OK);
  rgrpc_call_options *o = sleep_opts(0, 0);
  int64_t t0 = tu_now_ms();
  CHECK_CODE(tu_unary_size(ch, o, 1, NULL), RGRPC_STATUS_CODE_DEADLINE_EXCEEDED);
  expect_elapsed(t0, 0, 200, "a call with timeout 0");

  rgrpc_call *call = NULL;
  CHECK_OK(rgrpc_call_start(ch, M_BIDI, o, &call));
  CHECK_EQ_INT(rgrpc_call_time_remaining_ms(call), 0);
  rgrpc_buffer *buf = NULL;
  CHECK_RC(rgrpc_call_recv(call, &buf), RGRPC_RESULT_END_OF_STREAM);
  CHECK_CODE(tu_finish_code(call), RGRPC_STATUS_CODE_DEADLINE_EXCEEDED);
  rgrpc_call_free(call);

  /* On a channel that never connected (no server at all): still immediate. */
  rgrpc_channel *nowhere = tu_channel("127.0.0.1:1", NULL);
  t0 = tu_now_ms();
  CHECK_CODE(tu_unary_size(nowhere, o, 1, NULL), RGRPC_STATUS_CODE_DEADLINE_EXCEEDED);
  expect_elapsed(t0, 0, 200, "a call with timeout 0 to a closed port");
  rgrpc_channel_free(nowhere);
  rgrpc_call_options_free(o);
  rgrpc_channel_free(ch);
}

static void test_absolute_deadline(void) {
  rgrpc_channel *ch = tu_channel(NULL, NULL);
  CHECK_CODE(tu_unary_size(ch, NULL, 1, NULL), RGRPC_STATUS_CODE_OK);
  rgrpc_call_options *o = sleep_opts(2000, -1);

  /* now + 300 ms */
  int64_t t0 = tu_now_ms();
  CHECK_OK(rgrpc_call_options_set_deadline_ms(o, rgrpc_now_ms() + 300));
  CHECK_CODE(tu_unary_size(ch, o, 1, NULL), RGRPC_STATUS_CODE_DEADLINE_EXCEEDED);
  expect_elapsed(t0, 280, 1100, "an absolute deadline 300 ms ahead");

  /* In the past: at once. */
  t0 = tu_now_ms();
  CHECK_OK(rgrpc_call_options_set_deadline_ms(o, rgrpc_now_ms() - 1000));
  CHECK_CODE(tu_unary_size(ch, o, 1, NULL), RGRPC_STATUS_CODE_DEADLINE_EXCEEDED);
  expect_elapsed(t0, 0, 200, "an absolute deadline in the past");
  rgrpc_call *call = NULL;
  CHECK_OK(rgrpc_call_start(ch, M_BIDI, o, &call));
  CHECK_EQ_INT(rgrpc_call_time_remaining_ms(call), 0);
  CHECK_CODE(tu_finish_code(call), RGRPC_STATUS_CODE_DEADLINE_EXCEEDED);
  rgrpc_call_free(call);
  rgrpc_call_options_free(o);

  /* Deadline and timeout together: the earlier wins (both orders). */
  o = sleep_opts(2000, 5000);
  CHECK_OK(rgrpc_call_options_set_deadline_ms(o, rgrpc_now_ms() + 250));
  t0 = tu_now_ms();
  CHECK_CODE(tu_unary_size(ch, o, 1, NULL), RGRPC_STATUS_CODE_DEADLINE_EXCEEDED);
  expect_elapsed(t0, 200, 1100, "deadline 250 ms with timeout 5 s");
  rgrpc_call_options_free(o);

  o = sleep_opts(2000, -1);
  CHECK_OK(rgrpc_call_options_set_deadline_ms(o, rgrpc_now_ms() + 5000));
  CHECK_OK(rgrpc_call_options_set_timeout_ms(o, 250));
  t0 = tu_now_ms();
  CHECK_CODE(tu_unary_size(ch, o, 1, NULL), RGRPC_STATUS_CODE_DEADLINE_EXCEEDED);
  expect_elapsed(t0, 240, 1100, "timeout 250 ms with deadline 5 s");
  rgrpc_call_options_free(o);
  rgrpc_channel_free(ch);
}

static void test_now_ms_is_monotonic_clock(void) {
  int64_t a = tu_now_ms(), r = rgrpc_now_ms(), b = tu_now_ms();
  CHECK_MSG(r >= a - 1 && r <= b + 1, "rgrpc_now_ms %lld outside [%lld, %lld]", (long long)r,
            (long long)a, (long long)b);
  tu_sleep_ms(50);
  int64_t r2 = rgrpc_now_ms();
  CHECK_MSG(r2 - r >= 49, "rgrpc_now_ms advanced %lld ms over a 50 ms sleep", (long long)(r2 - r));
}

static void test_time_remaining(void) {
  rgrpc_channel *ch = tu_channel(NULL, NULL);
  rgrpc_call *call = NULL;

  /* No deadline: -1, also after the end. */
  CHECK_OK(rgrpc_call_start(ch, M_BIDI, NULL, &call));
  CHECK_EQ_INT(rgrpc_call_time_remaining_ms(call), -1);
  CHECK_OK(rgrpc_call_close_send(call));
  CHECK_CODE(tu_finish_code(call), RGRPC_STATUS_CODE_OK);
  CHECK_EQ_INT(rgrpc_call_time_remaining_ms(call), -1);
  rgrpc_call_free(call);

  /* With a 5 s timeout: decreasing. */
  rgrpc_call_options *o = sleep_opts(0, 5000);
  CHECK_OK(rgrpc_call_start(ch, M_BIDI, o, &call));
  int64_t r1 = rgrpc_call_time_remaining_ms(call);
  CHECK_MSG(r1 > 4000 && r1 <= 5000, "time remaining %lld", (long long)r1);
  tu_sleep_ms(150);
  int64_t r2 = rgrpc_call_time_remaining_ms(call);
  CHECK_MSG(r2 < r1 && r2 <= r1 - 140 && r2 > 3000, "time remaining %lld then %lld",
            (long long)r1, (long long)r2);
  CHECK_OK(rgrpc_call_close_send(call));
  CHECK_CODE(tu_finish_code(call), RGRPC_STATUS_CODE_OK);
  rgrpc_call_free(call);
  rgrpc_call_options_free(o);

  /* Once passed: 0. */
  o = sleep_opts(0, 100);
  CHECK_OK(rgrpc_call_start(ch, M_BIDI, o, &call));
  tu_sleep_ms(200);
  CHECK_EQ_INT(rgrpc_call_time_remaining_ms(call), 0);
  CHECK_CODE(tu_finish_code(call), RGRPC_STATUS_CODE_DEADLINE_EXCEEDED);
  CHECK_EQ_INT(rgrpc_call_time_remaining_ms(call), 0);
  rgrpc_call_free(call);
  rgrpc_call_options_free(o);
  rgrpc_channel_free(ch);
}

/* The server sees the deadline (grpc-timeout). */
static void test_server_sees_deadline(void) {
  rgrpc_channel *ch = tu_channel(NULL, NULL);
  rgrpc_call_options *o = sleep_opts(0, 5000);
  CHECK_OK(rgrpc_call_options_add_metadata_string(o, "x-rgrpc-echo-request-headers", "1"));
  rgrpc_call *call = NULL;
  CHECK_OK(rgrpc_call_start(ch, M_EMPTY, o, &call));
  CHECK_OK(rgrpc_call_send(call, NULL, 0, RGRPC_SEND_LAST));
  const rgrpc_metadata *md = NULL;
  CHECK_OK(rgrpc_call_initial_metadata(call, &md));
  char buf[64];
  CHECK_MSG(tu_md_string(md, "x-rgrpc-req-time-remaining-ms", buf, sizeof buf),
            "the server saw no deadline");
  long remaining = strtol(buf, NULL, 10);
  CHECK_MSG(remaining > 3000 && remaining <= 5000, "server-side time remaining %ld ms", remaining);
  CHECK_CODE(tu_finish_code(call), RGRPC_STATUS_CODE_OK);
  rgrpc_call_free(call);
  rgrpc_call_options_free(o);

  /* Without a deadline the server sees none. */
  o = sleep_opts(0, -1);
  CHECK_OK(rgrpc_call_options_add_metadata_string(o, "x-rgrpc-echo-request-headers", "1"));
  CHECK_OK(rgrpc_call_start(ch, M_EMPTY, o, &call));
  CHECK_OK(rgrpc_call_send(call, NULL, 0, RGRPC_SEND_LAST));
  CHECK_OK(rgrpc_call_initial_metadata(call, &md));
  CHECK(!tu_md_string(md, "x-rgrpc-req-time-remaining-ms", buf, sizeof buf));
  CHECK_CODE(tu_finish_code(call), RGRPC_STATUS_CODE_OK);
  rgrpc_call_free(call);
  rgrpc_call_options_free(o);
  rgrpc_channel_free(ch);
}

/* Huge timeouts and deadlines must not overflow into "expired" or a bad
 * grpc-timeout header. */
static void test_huge_timeouts(void) {
  static const int64_t timeouts[] = {INT64_MAX, INT64_MAX / 2, (int64_t)1 << 40, 100000000000LL};
  rgrpc_channel *ch = tu_channel(NULL, NULL);
  for (size_t i = 0; i < sizeof timeouts / sizeof timeouts[0]; i++) {
    rgrpc_call_options *o = sleep_opts(0, timeouts[i]);
    size_t len = 0;
    rgrpc_status_code code = tu_unary_size(ch, o, 5, &len);
    CHECK_MSG(code == RGRPC_STATUS_CODE_OK, "timeout %lld ms: %s", (long long)timeouts[i],
              rgrpc_status_code_name(code));
    rgrpc_call *call = NULL;
    CHECK_OK(rgrpc_call_start(ch, M_BIDI, o, &call));
    int64_t left = rgrpc_call_time_remaining_ms(call);
    CHECK_MSG(left > 1000000 || left == -1, "timeout %lld ms: time remaining %lld",
              (long long)timeouts[i], (long long)left);
    CHECK_OK(rgrpc_call_close_send(call));
    CHECK_CODE(tu_finish_code(call), RGRPC_STATUS_CODE_OK);
    rgrpc_call_free(call);
    rgrpc_call_options_free(o);
  }
  rgrpc_call_options *o = sleep_opts(0, -1);
  CHECK_OK(rgrpc_call_options_set_deadline_ms(o, INT64_MAX));
  CHECK_CODE(tu_unary_size(ch, o, 5, NULL), RGRPC_STATUS_CODE_OK);
  CHECK_OK(rgrpc_call_options_set_deadline_ms(o, INT64_MIN));
  CHECK_CODE(tu_unary_size(ch, o, 5, NULL), RGRPC_STATUS_CODE_DEADLINE_EXCEEDED);
  rgrpc_call_options_free(o);
  rgrpc_channel_free(ch);
}

/* Deadline while connecting: loopback refuses or accepts at once, and a
 * full listen backlog is not a reliable way to stall a connect, so this is
 * not tested here. */

int main(void) {
  RUN_TEST(test_now_ms_is_monotonic_clock);
  RUN_TEST(test_timeout_expires_unary);
  RUN_TEST(test_generous_timeout_ok);
  RUN_TEST(test_timeout_per_call);
  RUN_TEST(test_deadline_mid_stream);
  RUN_TEST(test_bidi_deadline_while_idle);
  RUN_TEST(test_timeout_zero);
  RUN_TEST(test_absolute_deadline);
  RUN_TEST(test_time_remaining);
  RUN_TEST(test_server_sees_deadline);
  RUN_TEST(test_huge_timeouts);
  return 0;
}

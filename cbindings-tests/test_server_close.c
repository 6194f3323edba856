/* The server dies mid-call: the stream ends with UNAVAILABLE, and later
 * calls fail with UNAVAILABLE (connection refused). Kills the test server
 * (RGRPC_TEST_SERVER_PID), so everything needing it runs first. */
#include "test_util.h"

#include <signal.h>
#include <sys/types.h>

static void test_server_killed_mid_stream(void) {
  long pid = tu_server_pid();
  CHECK_MSG(pid > 0, "RGRPC_TEST_SERVER_PID is not set: run through with_server.py");
  rgrpc_channel *ch = tu_channel(NULL, NULL);

  /* A healthy call first. */
  CHECK_CODE(tu_unary_size(ch, NULL, 10, NULL), RGRPC_STATUS_CODE_OK);

  /* A server-streaming call with long intervals; a bidi call idle on the
   * same connection; an async unary call sleeping on the server. */
  static const int32_t sizes[] = {1, 2, 3, 4};
  static const int32_t intervals[] = {0, 10000000, 10000000, 10000000};
  rgrpc_call *stream = NULL;
  CHECK_OK(rgrpc_call_start(ch, M_SERVER_STREAM, NULL, &stream));
  tu_pb req = tu_streaming_output_request(sizes, intervals, 4, 0, 0, NULL);
  tu_send_pb(stream, &req, RGRPC_SEND_LAST);
  tu_pb_free(&req);
  CHECK_EQ_INT(tu_recv_body_len(stream), 1);

  rgrpc_call *bidi = NULL;
  CHECK_OK(rgrpc_call_start(ch, M_BIDI, NULL, &bidi));
  static const int32_t one = 5;
  req = tu_streaming_output_request(&one, NULL, 1, 0, 0, NULL);
  tu_send_pb(bidi, &req, 0);
  tu_pb_free(&req);
  CHECK_EQ_INT(tu_recv_body_len(bidi), 5);

  rgrpc_call_options *sleepy = tu_opts_md("x-rgrpc-sleep-ms", "10000");
  rgrpc_call *async = NULL;
  req = tu_simple_request(1, 0, 0, NULL);
  CHECK_OK(rgrpc_call_unary_async(ch, M_UNARY, sleepy, req.data, req.len, NULL, NULL, &async));
  tu_sleep_ms(200);
  CHECK(rgrpc_call_is_active(async));

  int64_t t0 = tu_now_ms();
  CHECK_MSG(kill((pid_t)pid, SIGKILL) == 0, "kill(%ld, SIGKILL) failed", pid);

  rgrpc_buffer *buf = NULL;
  CHECK_RC(rgrpc_call_recv(stream, &buf), RGRPC_RESULT_END_OF_STREAM);
  int64_t el = tu_now_ms() - t0;
  CHECK_MSG(el < 5000 * tu_slow(), "recv took %lld ms to notice the dead server", (long long)el);
  const rgrpc_status *st = NULL;
  CHECK_RC(rgrpc_call_finish(stream, &st), RGRPC_RESULT_RPC_FAILED);
  CHECK_STATUS(st, RGRPC_STATUS_CODE_UNAVAILABLE);
  CHECK_NONEMPTY(rgrpc_status_details(st));
  rgrpc_status_free(st);
  rgrpc_call_free(stream);

  CHECK_RC(rgrpc_call_recv(bidi, &buf), RGRPC_RESULT_END_OF_STREAM);
  CHECK_CODE(tu_finish_code(bidi), RGRPC_STATUS_CODE_UNAVAILABLE);
  CHECK_RC(rgrpc_call_send(bidi, req.data, req.len, 0), RGRPC_RESULT_CALL_ENDED);
  rgrpc_call_free(bidi);

  CHECK_OK(rgrpc_call_wait(async, 5000 * tu_slow()));
  CHECK_CODE(tu_finish_code(async), RGRPC_STATUS_CODE_UNAVAILABLE);
  rgrpc_call_free(async);
  rgrpc_call_options_free(sleepy);

  /* New calls on the same channel: a new connection attempt is refused. */
  t0 = tu_now_ms();
  CHECK_CODE(tu_unary(ch, M_UNARY, NULL, req.data, req.len, NULL), RGRPC_STATUS_CODE_UNAVAILABLE);
  CHECK_MSG(tu_now_ms() - t0 < 5000 * tu_slow(), "a refused call took %lld ms",
            (long long)(tu_now_ms() - t0));
  rgrpc_call *call = NULL;
  CHECK_OK(rgrpc_call_start(ch, M_BIDI, NULL, &call));
  CHECK_RC(rgrpc_call_recv(call, &buf), RGRPC_RESULT_END_OF_STREAM);
  CHECK_CODE(tu_finish_code(call), RGRPC_STATUS_CODE_UNAVAILABLE);
  rgrpc_call_free(call);
  rgrpc_channel_free(ch);

  /* And on a new channel. */
  ch = tu_channel(NULL, NULL);
  CHECK_CODE(tu_unary(ch, M_UNARY, NULL, req.data, req.len, NULL), RGRPC_STATUS_CODE_UNAVAILABLE);
  rgrpc_channel_free(ch);
  tu_pb_free(&req);
}

int main(void) {
  RUN_TEST(test_server_killed_mid_stream);
  return 0;
}

/* Message size limits: grpc.max_receive_message_length (default 4 MiB),
 * grpc.max_send_message_length, and the server's own receive limit. */
#include "test_util.h"

#define MIB (1024 * 1024)

static rgrpc_channel *channel_with_limit(const char *key, int64_t value) {
  rgrpc_channel_options *o = rgrpc_channel_options_new();
  CHECK_OK(rgrpc_channel_options_set_int(o, key, value));
  rgrpc_channel *ch = tu_channel(NULL, o);
  rgrpc_channel_options_free(o);
  return ch;
}

static void test_max_receive_small(void) {
  rgrpc_channel *ch = channel_with_limit("grpc.max_receive_message_length", 1000);
  size_t len = 0;
  CHECK_CODE(tu_unary_size(ch, NULL, 2000, &len), RGRPC_STATUS_CODE_RESOURCE_EXHAUSTED);
  /* Under the limit (payload 900 + a few bytes of framing). */
  CHECK_CODE(tu_unary_size(ch, NULL, 900, &len), RGRPC_STATUS_CODE_OK);
  CHECK_EQ_INT(len, 900);

  /* The status says what happened. */
  tu_pb req = tu_simple_request(2000, 0, 0, NULL);
  rgrpc_buffer *resp = NULL;
  const rgrpc_status *st = NULL;
  CHECK_RC(rgrpc_call_unary(ch, M_UNARY, NULL, req.data, req.len, &resp, &st),
           RGRPC_RESULT_RPC_FAILED);
  CHECK_STATUS(st, RGRPC_STATUS_CODE_RESOURCE_EXHAUSTED);
  CHECK_NONEMPTY(rgrpc_status_details(st));
  rgrpc_status_free(st);
  tu_pb_free(&req);

  /* Mid-stream: the first (small) message arrives, the big one ends the call. */
  static const int32_t sizes[] = {10, 2000, 10};
  rgrpc_call *call = NULL;
  CHECK_OK(rgrpc_call_start(ch, M_SERVER_STREAM, NULL, &call));
  req = tu_streaming_output_request(sizes, NULL, 3, 0, 0, NULL);
  tu_send_pb(call, &req, RGRPC_SEND_LAST);
  tu_pb_free(&req);
  CHECK_EQ_INT(tu_recv_body_len(call), 10);
  rgrpc_buffer *buf = NULL;
  CHECK_RC(rgrpc_call_recv(call, &buf), RGRPC_RESULT_END_OF_STREAM);
  CHECK_CODE(tu_finish_code(call), RGRPC_STATUS_CODE_RESOURCE_EXHAUSTED);
  rgrpc_call_free(call);

  /* The connection is fine after the refused message. */
  CHECK_CODE(tu_unary_size(ch, NULL, 10, &len), RGRPC_STATUS_CODE_OK);
  rgrpc_channel_free(ch);
}

static void test_default_max_receive_4mib(void) {
  rgrpc_channel *ch = tu_channel(NULL, NULL);
  size_t len = 0;
  CHECK_CODE(tu_unary_size(ch, NULL, 4 * MIB + 1, &len), RGRPC_STATUS_CODE_RESOURCE_EXHAUSTED);
  CHECK_CODE(tu_unary_size(ch, NULL, 4 * MIB - 100, &len), RGRPC_STATUS_CODE_OK);
  CHECK_EQ_INT(len, 4 * MIB - 100);
  rgrpc_channel_free(ch);
}

static void test_max_receive_unlimited(void) {
  rgrpc_channel *ch = channel_with_limit("grpc.max_receive_message_length", -1);
  size_t len = 0;
  CHECK_CODE(tu_unary_size(ch, NULL, 5 * MIB, &len), RGRPC_STATUS_CODE_OK);
  CHECK_EQ_INT(len, 5 * MIB);
  rgrpc_channel_free(ch);
}

static void test_max_send(void) {
  rgrpc_channel *ch = channel_with_limit("grpc.max_send_message_length", 100);
  tu_pb big = tu_simple_request(1, 200, 0, NULL); /* ~205 bytes */
  tu_pb small = tu_simple_request(1, 50, 0, NULL);
  CHECK(big.len > 100 && small.len <= 100);

  /* Call object: send reports the end, finish says RESOURCE_EXHAUSTED. */
  rgrpc_call *call = NULL;
  CHECK_OK(rgrpc_call_start(ch, M_UNARY, NULL, &call));
  CHECK_RC(rgrpc_call_send(call, big.data, big.len, RGRPC_SEND_LAST), RGRPC_RESULT_CALL_ENDED);
  rgrpc_buffer *buf = NULL;
  CHECK_RC(rgrpc_call_recv(call, &buf), RGRPC_RESULT_END_OF_STREAM);
  const rgrpc_status *st = NULL;
  CHECK_RC(rgrpc_call_finish(call, &st), RGRPC_RESULT_RPC_FAILED);
  CHECK_STATUS(st, RGRPC_STATUS_CODE_RESOURCE_EXHAUSTED);
  CHECK_NONEMPTY(rgrpc_status_details(st));
  rgrpc_status_free(st);
  rgrpc_call_free(call);

  /* rgrpc_call_unary. */
  size_t len = 0;
  CHECK_CODE(tu_unary(ch, M_UNARY, NULL, big.data, big.len, &len),
             RGRPC_STATUS_CODE_RESOURCE_EXHAUSTED);
  CHECK_CODE(tu_unary(ch, M_UNARY, NULL, small.data, small.len, &len), RGRPC_STATUS_CODE_OK);

  /* Client streaming: small messages go, then a big one ends the call. */
  CHECK_OK(rgrpc_call_start(ch, M_CLIENT_STREAM, NULL, &call));
  tu_pb in_small = tu_streaming_input_request(20);
  tu_pb in_big = tu_streaming_input_request(500);
  tu_send_pb(call, &in_small, 0);
  tu_send_pb(call, &in_small, 0);
  CHECK_RC(rgrpc_call_send(call, in_big.data, in_big.len, 0), RGRPC_RESULT_CALL_ENDED);
  CHECK_RC(rgrpc_call_send(call, in_small.data, in_small.len, 0), RGRPC_RESULT_CALL_ENDED);
  CHECK_CODE(tu_finish_code(call), RGRPC_STATUS_CODE_RESOURCE_EXHAUSTED);
  rgrpc_call_free(call);
  tu_pb_free(&in_small);
  tu_pb_free(&in_big);

  tu_pb_free(&big);
  tu_pb_free(&small);
  rgrpc_channel_free(ch);
}

/* The receive limit does not apply to sending and vice versa. */
static void test_limits_are_directional(void) {
  rgrpc_channel_options *o = rgrpc_channel_options_new();
  CHECK_OK(rgrpc_channel_options_set_int(o, "grpc.max_receive_message_length", 100));
  CHECK_OK(rgrpc_channel_options_set_int(o, "grpc.max_send_message_length", 100000));
  rgrpc_channel *ch = tu_channel(NULL, o);
  rgrpc_channel_options_free(o);
  tu_pb req = tu_simple_request(10, 50000, 0, NULL);
  size_t len = 0;
  CHECK_CODE(tu_unary(ch, M_UNARY, NULL, req.data, req.len, &len), RGRPC_STATUS_CODE_OK);
  tu_pb_free(&req);
  rgrpc_channel_free(ch);
}

/* grpcio's server refuses requests above its 4 MiB default. */
static void test_server_receive_limit(void) {
  rgrpc_channel *ch = tu_channel(NULL, NULL);
  tu_pb req = tu_simple_request(1, 5 * MIB, 0, NULL);
  size_t len = 0;
  CHECK_CODE(tu_unary(ch, M_UNARY, NULL, req.data, req.len, &len),
             RGRPC_STATUS_CODE_RESOURCE_EXHAUSTED);
  tu_pb_free(&req);
  /* Just under it is fine. */
  req = tu_simple_request(1, 4 * MIB - 100, 0, NULL);
  CHECK_CODE(tu_unary(ch, M_UNARY, NULL, req.data, req.len, &len), RGRPC_STATUS_CODE_OK);
  tu_pb_free(&req);
  rgrpc_channel_free(ch);
}

int main(void) {
  RUN_TEST(test_max_receive_small);
  RUN_TEST(test_default_max_receive_4mib);
  RUN_TEST(test_max_receive_unlimited);
  RUN_TEST(test_max_send);
  RUN_TEST(test_limits_are_directional);
  RUN_TEST(test_server_receive_limit);
  return 0;
}

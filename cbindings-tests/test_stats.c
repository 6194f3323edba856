/* Per-call statistics from C (rgrpc_call_get_stats) against the real grpcio
 * server: messages and bytes each way match what was sent and received,
 * wire bytes show compression, the time to the response headers shows a
 * slow server, a short stats_size is honoured, NULLs are refused. */
#include "test_util.h"

static rgrpc_call_stats stats_of(rgrpc_call *call) {
  rgrpc_call_stats s;
  memset(&s, 0xAB, sizeof s);
  CHECK_OK(rgrpc_call_get_stats(call, &s, sizeof s));
  return s;
}

static void test_unary_stats(void) {
  rgrpc_channel *ch = tu_channel(NULL, NULL);
  tu_pb req = tu_simple_request(300, 100, 0, NULL);
  rgrpc_call *call = NULL;
  CHECK_OK(rgrpc_call_start(ch, M_UNARY, NULL, &call));
  rgrpc_call_stats s = stats_of(call);
  CHECK_EQ_INT(s.attempts, 0);
  CHECK_EQ_INT(s.ended, 0);
  CHECK_MSG(s.pick_wait_us == -1 && s.first_response_us == -1, "times before sending");
  tu_send_pb(call, &req, RGRPC_SEND_LAST);
  rgrpc_buffer *buf = NULL;
  CHECK_OK(rgrpc_call_recv(call, &buf));
  size_t got = rgrpc_buffer_len(buf);
  rgrpc_buffer_free(buf);
  CHECK_CODE(tu_finish_code(call), RGRPC_STATUS_CODE_OK);
  s = stats_of(call);
  CHECK_EQ_INT(s.attempts, 1);
  CHECK_EQ_INT(s.ended, 1);
  CHECK_MSG(s.messages_sent == 1 && s.bytes_sent == req.len && s.wire_bytes_sent == req.len + 5,
            "sent %llu/%llu/%llu for %zu", (unsigned long long)s.messages_sent,
            (unsigned long long)s.bytes_sent, (unsigned long long)s.wire_bytes_sent, req.len);
  CHECK_MSG(s.messages_received == 1 && s.bytes_received == got && s.wire_bytes_received == got + 5,
            "received %llu/%llu for %zu", (unsigned long long)s.messages_received,
            (unsigned long long)s.bytes_received, got);
  CHECK_MSG(0 <= s.pick_wait_us && s.pick_wait_us <= s.first_response_us &&
                s.first_response_us <= s.total_us,
            "times %lld %lld %lld", (long long)s.pick_wait_us, (long long)s.first_response_us,
            (long long)s.total_us);
  /* A short stats_size: only that much is written. */
  rgrpc_call_stats part;
  memset(&part, 0xAB, sizeof part);
  CHECK_OK(rgrpc_call_get_stats(call, &part, 2 * sizeof(uint32_t)));
  CHECK_EQ_INT(part.attempts, 1);
  CHECK_EQ_INT(part.ended, 1);
  CHECK(part.messages_sent == 0xABABABABABABABABull);
  CHECK_RC(rgrpc_call_get_stats(call, NULL, sizeof s), RGRPC_RESULT_NULL_PARAMETER);
  CHECK_RC(rgrpc_call_get_stats(NULL, &s, sizeof s), RGRPC_RESULT_NULL_PARAMETER);
  rgrpc_call_free(call);
  tu_pb_free(&req);
  rgrpc_channel_free(ch);
}

static void test_compressed_stream_and_slow_server(void) {
  rgrpc_channel *ch = tu_channel(NULL, NULL);
  rgrpc_call_options *o = tu_opts_md("x-rgrpc-sleep-ms", "200");
  CHECK_OK(rgrpc_call_options_set_compression(o, RGRPC_COMPRESSION_GZIP));
  rgrpc_call *call = NULL;
  CHECK_OK(rgrpc_call_start(ch, M_CLIENT_STREAM, o, &call));
  size_t total = 0;
  for (int i = 0; i < 10; i++) {
    tu_pb req = tu_streaming_input_request(1000);
    total += req.len;
    tu_send_pb(call, &req, i == 9 ? RGRPC_SEND_LAST : 0);
    tu_pb_free(&req);
  }
  rgrpc_buffer *buf = NULL;
  CHECK_OK(rgrpc_call_recv(call, &buf));
  CHECK_EQ_INT(tu_aggregated_payload_size(rgrpc_buffer_data(buf), rgrpc_buffer_len(buf)), 10000);
  rgrpc_buffer_free(buf);
  CHECK_CODE(tu_finish_code(call), RGRPC_STATUS_CODE_OK);
  rgrpc_call_stats s = stats_of(call);
  CHECK_MSG(s.messages_sent == 10 && s.bytes_sent == total, "sent %llu msgs, %llu bytes",
            (unsigned long long)s.messages_sent, (unsigned long long)s.bytes_sent);
  CHECK_MSG(s.wire_bytes_sent < s.bytes_sent / 4, "wire %llu of %llu",
            (unsigned long long)s.wire_bytes_sent, (unsigned long long)s.bytes_sent);
  CHECK_MSG(s.first_response_us >= 195000, "first response after %lld us",
            (long long)s.first_response_us);
  rgrpc_call_free(call);
  rgrpc_call_options_free(o);
  rgrpc_channel_free(ch);
}

int main(void) {
  RUN_TEST(test_unary_stats);
  RUN_TEST(test_compressed_stream_and_slow_server);
  return 0;
}

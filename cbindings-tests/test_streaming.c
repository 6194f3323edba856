/* Streaming RPCs: server, client and bidirectional streaming, half-close
 * rules, end-of-stream and finish semantics. */
#include "test_util.h"

static void test_server_streaming(void) {
  static const int32_t sizes[] = {31415, 9, 2653, 58979, 0, 1, 100000};
  const size_t n = sizeof sizes / sizeof sizes[0];
  rgrpc_channel *ch = tu_channel(NULL, NULL);
  rgrpc_call *call = NULL;
  CHECK_OK(rgrpc_call_start(ch, M_SERVER_STREAM, NULL, &call));
  tu_pb req = tu_streaming_output_request(sizes, NULL, n, 0, 0, NULL);
  tu_send_pb(call, &req, RGRPC_SEND_LAST);
  tu_pb_free(&req);
  for (size_t i = 0; i < n; i++) CHECK_EQ_INT(tu_recv_body_len(call), sizes[i]);
  rgrpc_buffer *buf = NULL;
  CHECK_RC(rgrpc_call_recv(call, &buf), RGRPC_RESULT_END_OF_STREAM);
  CHECK(buf == NULL);
  /* recv after the end: END_OF_STREAM again. */
  CHECK_RC(rgrpc_call_recv(call, &buf), RGRPC_RESULT_END_OF_STREAM);
  CHECK_RC(rgrpc_call_recv(call, &buf), RGRPC_RESULT_END_OF_STREAM);
  CHECK(buf == NULL);

  /* finish twice: the same status. */
  const rgrpc_status *st1 = NULL, *st2 = NULL;
  CHECK_OK(rgrpc_call_finish(call, &st1));
  CHECK_OK(rgrpc_call_finish(call, &st2));
  CHECK_STATUS(st1, RGRPC_STATUS_CODE_OK);
  CHECK_STATUS(st2, RGRPC_STATUS_CODE_OK);
  CHECK_STR(rgrpc_status_details(st1), rgrpc_status_details(st2));
  CHECK_EQ_INT(rgrpc_metadata_len(rgrpc_status_trailing_metadata(st1)),
               rgrpc_metadata_len(rgrpc_status_trailing_metadata(st2)));
  rgrpc_status_free(st1);
  rgrpc_status_free(st2);
  CHECK(!rgrpc_call_is_active(call));
  rgrpc_call_free(call);
  rgrpc_channel_free(ch);
}

static void test_server_streaming_error_at_end(void) {
  static const int32_t sizes[] = {5, 6};
  rgrpc_channel *ch = tu_channel(NULL, NULL);
  rgrpc_call *call = NULL;
  CHECK_OK(rgrpc_call_start(ch, M_SERVER_STREAM, NULL, &call));
  tu_pb req = tu_streaming_output_request(sizes, NULL, 2, 0, RGRPC_STATUS_CODE_FAILED_PRECONDITION,
                                          "stream error after two messages");
  tu_send_pb(call, &req, RGRPC_SEND_LAST);
  tu_pb_free(&req);
  CHECK_EQ_INT(tu_recv_body_len(call), 5);
  CHECK_EQ_INT(tu_recv_body_len(call), 6);
  rgrpc_buffer *buf = NULL;
  CHECK_RC(rgrpc_call_recv(call, &buf), RGRPC_RESULT_END_OF_STREAM);
  const rgrpc_status *st = NULL;
  CHECK_RC(rgrpc_call_finish(call, &st), RGRPC_RESULT_RPC_FAILED);
  CHECK_STATUS(st, RGRPC_STATUS_CODE_FAILED_PRECONDITION);
  CHECK_STR(rgrpc_status_details(st), "stream error after two messages");
  rgrpc_status_free(st);
  /* finish again: same status. */
  CHECK_RC(rgrpc_call_finish(call, &st), RGRPC_RESULT_RPC_FAILED);
  CHECK_STATUS(st, RGRPC_STATUS_CODE_FAILED_PRECONDITION);
  CHECK_STR(rgrpc_status_details(st), "stream error after two messages");
  rgrpc_status_free(st);
  /* Sending on an ended, half-closed call: either reason is right. */
  rgrpc_result rc = rgrpc_call_send(call, NULL, 0, 0);
  CHECK_MSG(rc == RGRPC_RESULT_SEND_CLOSED || rc == RGRPC_RESULT_CALL_ENDED, "send: %s",
            rgrpc_result_name(rc));
  rgrpc_call_free(call);
  rgrpc_channel_free(ch);
}

static void test_client_streaming(void) {
  static const size_t payloads[] = {27182, 8, 1828, 45904};
  rgrpc_channel *ch = tu_channel(NULL, NULL);
  for (int variant = 0; variant < 8; variant++) {
    rgrpc_call *call = NULL;
    CHECK_OK(rgrpc_call_start(ch, M_CLIENT_STREAM, NULL, &call));
    /* variants 2, 3 (and 6, 7): every message may wait in the send buffer
     * (RGRPC_SEND_BUFFER_HINT); close_send or LAST writes them. */
    uint32_t hint = (variant & 2) ? RGRPC_SEND_BUFFER_HINT : 0;
    int last_flag = variant & 1;
    /* variants 4..7: messages written in place (rgrpc_call_send_buffer) */
    int in_place = variant & 4;
    for (size_t i = 0; i < 4; i++) {
      tu_pb req = tu_streaming_input_request(payloads[i]);
      /* even variants: close_send afterwards; odd: LAST on the last message */
      uint32_t flags = hint | ((last_flag && i == 3) ? RGRPC_SEND_LAST : 0);
      if (in_place)
        CHECK_OK(rgrpc_call_send_buffer(call, tu_in_place(&req), flags));
      else
        tu_send_pb(call, &req, flags);
      tu_pb_free(&req);
    }
    if (!last_flag) CHECK_OK(rgrpc_call_close_send(call));
    rgrpc_buffer *buf = NULL;
    CHECK_OK(rgrpc_call_recv(call, &buf));
    CHECK_EQ_INT(tu_aggregated_payload_size(rgrpc_buffer_data(buf), rgrpc_buffer_len(buf)), 74922);
    rgrpc_buffer_free(buf);
    buf = NULL;
    CHECK_RC(rgrpc_call_recv(call, &buf), RGRPC_RESULT_END_OF_STREAM);
    CHECK_CODE(tu_finish_code(call), RGRPC_STATUS_CODE_OK);
    rgrpc_call_free(call);
  }
  rgrpc_channel_free(ch);
}

static void test_client_streaming_no_messages(void) {
  rgrpc_channel *ch = tu_channel(NULL, NULL);
  rgrpc_call *call = NULL;
  CHECK_OK(rgrpc_call_start(ch, M_CLIENT_STREAM, NULL, &call));
  CHECK_OK(rgrpc_call_close_send(call));
  rgrpc_buffer *buf = NULL;
  CHECK_OK(rgrpc_call_recv(call, &buf));
  CHECK_EQ_INT(tu_aggregated_payload_size(rgrpc_buffer_data(buf), rgrpc_buffer_len(buf)), 0);
  rgrpc_buffer_free(buf);
  CHECK_CODE(tu_finish_code(call), RGRPC_STATUS_CODE_OK);
  rgrpc_call_free(call);
  rgrpc_channel_free(ch);
}

static void test_client_streaming_many_messages(void) {
  rgrpc_channel *ch = tu_channel(NULL, NULL);
  rgrpc_call *call = NULL;
  CHECK_OK(rgrpc_call_start(ch, M_CLIENT_STREAM, NULL, &call));
  int64_t total = 0;
  for (size_t i = 0; i < 300; i++) {
    size_t sz = (i * 7919) % 20000;
    tu_pb req = tu_streaming_input_request(sz);
    tu_send_pb(call, &req, 0);
    tu_pb_free(&req);
    total += (int64_t)sz;
  }
  CHECK_OK(rgrpc_call_close_send(call));
  rgrpc_buffer *buf = NULL;
  CHECK_OK(rgrpc_call_recv(call, &buf));
  CHECK_EQ_INT(tu_aggregated_payload_size(rgrpc_buffer_data(buf), rgrpc_buffer_len(buf)), total);
  rgrpc_buffer_free(buf);
  CHECK_CODE(tu_finish_code(call), RGRPC_STATUS_CODE_OK);
  rgrpc_call_free(call);
  rgrpc_channel_free(ch);
}

static void test_bidi_ping_pong(void) {
  static const int32_t resp_sizes[] = {31415, 9, 2653, 58979};
  static const size_t req_sizes[] = {27182, 8, 1828, 45904};
  rgrpc_channel *ch = tu_channel(NULL, NULL);
  rgrpc_call *call = NULL;
  CHECK_OK(rgrpc_call_start(ch, M_BIDI, NULL, &call));
  for (size_t i = 0; i < 4; i++) {
    tu_pb req = tu_streaming_output_request(&resp_sizes[i], NULL, 1, req_sizes[i], 0, NULL);
    tu_send_pb(call, &req, 0);
    tu_pb_free(&req);
    /* Lock-step: the response to this request before the next request. */
    CHECK_EQ_INT(tu_recv_body_len(call), resp_sizes[i]);
    CHECK(rgrpc_call_is_active(call));
  }
  CHECK_OK(rgrpc_call_close_send(call));
  rgrpc_buffer *buf = NULL;
  CHECK_RC(rgrpc_call_recv(call, &buf), RGRPC_RESULT_END_OF_STREAM);
  CHECK_CODE(tu_finish_code(call), RGRPC_STATUS_CODE_OK);
  rgrpc_call_free(call);
  rgrpc_channel_free(ch);
}

static void test_bidi_multiple_responses_per_request(void) {
  static const int32_t sizes[] = {1, 2, 3, 4, 5};
  rgrpc_channel *ch = tu_channel(NULL, NULL);
  rgrpc_call *call = NULL;
  CHECK_OK(rgrpc_call_start(ch, M_BIDI, NULL, &call));
  for (int round = 0; round < 3; round++) {
    tu_pb req = tu_streaming_output_request(sizes, NULL, 5, 0, 0, NULL);
    tu_send_pb(call, &req, round == 2 ? RGRPC_SEND_LAST : 0);
    tu_pb_free(&req);
    for (int i = 0; i < 5; i++) CHECK_EQ_INT(tu_recv_body_len(call), sizes[i]);
  }
  rgrpc_buffer *buf = NULL;
  CHECK_RC(rgrpc_call_recv(call, &buf), RGRPC_RESULT_END_OF_STREAM);
  CHECK_CODE(tu_finish_code(call), RGRPC_STATUS_CODE_OK);
  rgrpc_call_free(call);
  rgrpc_channel_free(ch);
}

static void test_half_duplex(void) {
  static const int32_t sizes[] = {10, 20, 30};
  rgrpc_channel *ch = tu_channel(NULL, NULL);
  rgrpc_call *call = NULL;
  CHECK_OK(rgrpc_call_start(ch, M_HALF_DUPLEX, NULL, &call));
  for (int i = 0; i < 3; i++) {
    tu_pb req = tu_streaming_output_request(&sizes[i], NULL, 1, 0, 0, NULL);
    tu_send_pb(call, &req, 0);
    tu_pb_free(&req);
  }
  CHECK_OK(rgrpc_call_close_send(call));
  for (int i = 0; i < 3; i++) CHECK_EQ_INT(tu_recv_body_len(call), sizes[i]);
  rgrpc_buffer *buf = NULL;
  CHECK_RC(rgrpc_call_recv(call, &buf), RGRPC_RESULT_END_OF_STREAM);
  CHECK_CODE(tu_finish_code(call), RGRPC_STATUS_CODE_OK);
  rgrpc_call_free(call);
  rgrpc_channel_free(ch);
}

static void test_empty_bidi_stream(void) {
  rgrpc_channel *ch = tu_channel(NULL, NULL);
  rgrpc_call *call = NULL;
  CHECK_OK(rgrpc_call_start(ch, M_BIDI, NULL, &call));
  CHECK_OK(rgrpc_call_close_send(call));
  rgrpc_buffer *buf = NULL;
  CHECK_RC(rgrpc_call_recv(call, &buf), RGRPC_RESULT_END_OF_STREAM);
  CHECK(buf == NULL);
  CHECK_CODE(tu_finish_code(call), RGRPC_STATUS_CODE_OK);
  rgrpc_call_free(call);

  /* Also: finish straight after close_send, without recv. */
  CHECK_OK(rgrpc_call_start(ch, M_BIDI, NULL, &call));
  CHECK_OK(rgrpc_call_close_send(call));
  CHECK_CODE(tu_finish_code(call), RGRPC_STATUS_CODE_OK);
  rgrpc_call_free(call);
  rgrpc_channel_free(ch);
}

static void test_send_after_close(void) {
  rgrpc_channel *ch = tu_channel(NULL, NULL);
  rgrpc_call *call = NULL;
  tu_pb req = tu_streaming_input_request(10);

  /* close_send then send. */
  CHECK_OK(rgrpc_call_start(ch, M_CLIENT_STREAM, NULL, &call));
  tu_send_pb(call, &req, 0);
  CHECK_OK(rgrpc_call_close_send(call));
  CHECK_RC(rgrpc_call_send(call, req.data, req.len, 0), RGRPC_RESULT_SEND_CLOSED);
  CHECK_RC(rgrpc_call_send(call, req.data, req.len, RGRPC_SEND_LAST), RGRPC_RESULT_SEND_CLOSED);
  CHECK_OK(rgrpc_call_close_send(call)); /* idempotent */
  rgrpc_buffer *buf = NULL;
  CHECK_OK(rgrpc_call_recv(call, &buf));
  CHECK_EQ_INT(tu_aggregated_payload_size(rgrpc_buffer_data(buf), rgrpc_buffer_len(buf)), 10);
  rgrpc_buffer_free(buf);
  CHECK_CODE(tu_finish_code(call), RGRPC_STATUS_CODE_OK);
  rgrpc_call_free(call);

  /* SEND_LAST then send. */
  CHECK_OK(rgrpc_call_start(ch, M_CLIENT_STREAM, NULL, &call));
  tu_send_pb(call, &req, RGRPC_SEND_LAST);
  CHECK_RC(rgrpc_call_send(call, req.data, req.len, 0), RGRPC_RESULT_SEND_CLOSED);
  CHECK_OK(rgrpc_call_close_send(call));
  buf = NULL;
  CHECK_OK(rgrpc_call_recv(call, &buf));
  CHECK_EQ_INT(tu_aggregated_payload_size(rgrpc_buffer_data(buf), rgrpc_buffer_len(buf)), 10);
  rgrpc_buffer_free(buf);
  CHECK_CODE(tu_finish_code(call), RGRPC_STATUS_CODE_OK);
  rgrpc_call_free(call);
  tu_pb_free(&req);
  rgrpc_channel_free(ch);
}

static void test_bidi_server_error_mid_stream(void) {
  static const int32_t one = 7;
  rgrpc_channel *ch = tu_channel(NULL, NULL);
  rgrpc_call *call = NULL;
  CHECK_OK(rgrpc_call_start(ch, M_BIDI, NULL, &call));
  tu_pb ok = tu_streaming_output_request(&one, NULL, 1, 0, 0, NULL);
  tu_send_pb(call, &ok, 0);
  CHECK_EQ_INT(tu_recv_body_len(call), 7);
  tu_pb bad = tu_streaming_output_request(&one, NULL, 1, 0, RGRPC_STATUS_CODE_ABORTED, "abort!");
  tu_send_pb(call, &bad, 0);
  tu_pb_free(&bad);
  rgrpc_buffer *buf = NULL;
  CHECK_RC(rgrpc_call_recv(call, &buf), RGRPC_RESULT_END_OF_STREAM);
  const rgrpc_status *st = NULL;
  CHECK_RC(rgrpc_call_finish(call, &st), RGRPC_RESULT_RPC_FAILED);
  CHECK_STATUS(st, RGRPC_STATUS_CODE_ABORTED);
  CHECK_STR(rgrpc_status_details(st), "abort!");
  rgrpc_status_free(st);
  CHECK(!rgrpc_call_is_active(call));
  /* The server closed the stream: send and close_send say the call ended. */
  CHECK_RC(rgrpc_call_send(call, ok.data, ok.len, 0), RGRPC_RESULT_CALL_ENDED);
  CHECK_RC(rgrpc_call_close_send(call), RGRPC_RESULT_CALL_ENDED);
  CHECK_RC(rgrpc_call_recv(call, &buf), RGRPC_RESULT_END_OF_STREAM);
  tu_pb_free(&ok);
  rgrpc_call_free(call);
  rgrpc_channel_free(ch);
}

/* One thread sends while another receives (allowed by the thread rules);
 * large messages exercise flow control in both directions. */
typedef struct {
  rgrpc_call *call;
  int n;
  int32_t size;
} sender_args;

static void *sender_main(void *p) {
  sender_args *a = p;
  for (int i = 0; i < a->n; i++) {
    tu_pb req = tu_streaming_output_request(&a->size, NULL, 1, (size_t)a->size, 0, NULL);
    tu_send_pb(a->call, &req, 0);
    tu_pb_free(&req);
  }
  CHECK_OK(rgrpc_call_close_send(a->call));
  return NULL;
}

static void test_bidi_send_and_recv_threads(void) {
  rgrpc_channel *ch = tu_channel(NULL, NULL);
  rgrpc_call *call = NULL;
  CHECK_OK(rgrpc_call_start(ch, M_BIDI, NULL, &call));
  sender_args a = {call, 64, 200000};
  pthread_t t;
  tu_thread_start(&t, sender_main, &a);
  for (int i = 0; i < a.n; i++) CHECK_EQ_INT(tu_recv_body_len(call), a.size);
  rgrpc_buffer *buf = NULL;
  CHECK_RC(rgrpc_call_recv(call, &buf), RGRPC_RESULT_END_OF_STREAM);
  tu_thread_join(t);
  CHECK_CODE(tu_finish_code(call), RGRPC_STATUS_CODE_OK);
  rgrpc_call_free(call);
  rgrpc_channel_free(ch);
}

typedef struct {
  rgrpc_call *call;
  int received;
  rgrpc_result last;
} reader_args;

static void *reader_main(void *p) {
  reader_args *a = p;
  rgrpc_buffer *buf = NULL;
  while ((a->last = rgrpc_call_recv(a->call, &buf)) == RGRPC_RESULT_OK) {
    a->received++;
    rgrpc_buffer_free(buf);
    buf = NULL;
  }
  return NULL;
}

/* finish while another thread is receiving: it waits for the status. */
static void test_finish_while_other_thread_receives(void) {
  static const int32_t sizes[] = {10, 20, 30};
  static const int32_t intervals[] = {100000, 100000, 100000};
  rgrpc_channel *ch = tu_channel(NULL, NULL);
  rgrpc_call *call = NULL;
  CHECK_OK(rgrpc_call_start(ch, M_BIDI, NULL, &call));
  reader_args a = {call, 0, RGRPC_RESULT_OK};
  pthread_t t;
  tu_thread_start(&t, reader_main, &a);
  tu_pb req = tu_streaming_output_request(sizes, intervals, 3, 0, 0, NULL);
  tu_send_pb(call, &req, RGRPC_SEND_LAST);
  tu_pb_free(&req);
  tu_sleep_ms(50);
  CHECK_CODE(tu_finish_code(call), RGRPC_STATUS_CODE_OK);
  tu_thread_join(t);
  CHECK_RC(a.last, RGRPC_RESULT_END_OF_STREAM);
  /* finish may discard unread messages, so the reader gets at most all 3;
   * what matters is that it was not left blocked. */
  CHECK_MSG(a.received <= 3, "the receiving thread got %d messages", a.received);
  rgrpc_call_free(call);
  rgrpc_channel_free(ch);
}

static void test_server_streaming_with_intervals(void) {
  static const int32_t sizes[] = {1, 2, 3, 4, 5};
  static const int32_t intervals[] = {20000, 20000, 20000, 20000, 20000};
  rgrpc_channel *ch = tu_channel(NULL, NULL);
  rgrpc_call *call = NULL;
  CHECK_OK(rgrpc_call_start(ch, M_SERVER_STREAM, NULL, &call));
  tu_pb req = tu_streaming_output_request(sizes, intervals, 5, 0, 0, NULL);
  tu_send_pb(call, &req, RGRPC_SEND_LAST);
  tu_pb_free(&req);
  int64_t t0 = tu_now_ms();
  for (int i = 0; i < 5; i++) CHECK_EQ_INT(tu_recv_body_len(call), sizes[i]);
  CHECK_MSG(tu_now_ms() - t0 >= 80, "5 messages 20 ms apart arrived in %lld ms",
            (long long)(tu_now_ms() - t0));
  CHECK_CODE(tu_finish_code(call), RGRPC_STATUS_CODE_OK);
  rgrpc_call_free(call);
  rgrpc_channel_free(ch);
}

static void test_finish_discards_unread(void) {
  static const int32_t sizes[] = {100, 200, 300};
  rgrpc_channel *ch = tu_channel(NULL, NULL);
  rgrpc_call *call = NULL;
  CHECK_OK(rgrpc_call_start(ch, M_SERVER_STREAM, NULL, &call));
  tu_pb req = tu_streaming_output_request(sizes, NULL, 3, 0, 0, NULL);
  tu_send_pb(call, &req, RGRPC_SEND_LAST);
  tu_pb_free(&req);
  CHECK_EQ_INT(tu_recv_body_len(call), 100);
  CHECK_CODE(tu_finish_code(call), RGRPC_STATUS_CODE_OK);
  rgrpc_buffer *buf = NULL;
  CHECK_RC(rgrpc_call_recv(call, &buf), RGRPC_RESULT_END_OF_STREAM);
  rgrpc_call_free(call);
  rgrpc_channel_free(ch);
}

int main(void) {
  RUN_TEST(test_server_streaming);
  RUN_TEST(test_server_streaming_error_at_end);
  RUN_TEST(test_server_streaming_with_intervals);
  RUN_TEST(test_client_streaming);
  RUN_TEST(test_client_streaming_no_messages);
  RUN_TEST(test_client_streaming_many_messages);
  RUN_TEST(test_bidi_ping_pong);
  RUN_TEST(test_bidi_multiple_responses_per_request);
  RUN_TEST(test_half_duplex);
  RUN_TEST(test_empty_bidi_stream);
  RUN_TEST(test_send_after_close);
  RUN_TEST(test_bidi_server_error_mid_stream);
  RUN_TEST(test_bidi_send_and_recv_threads);
  RUN_TEST(test_finish_discards_unread);
  RUN_TEST(test_finish_while_other_thread_receives);
  return 0;
}

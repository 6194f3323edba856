/* Unary RPCs: rgrpc_call_unary and the call object, status codes and
 * details, unimplemented methods, connection failures. */
#include "test_util.h"

#include <string.h>
#include <unistd.h>

static void test_unary_sizes(void) {
  static const int32_t sizes[] = {0, 1, 10, 127, 128, 1000, 16383, 16384, 65535, 65536, 100000,
                                  1 << 20};
  rgrpc_channel *ch = tu_channel(NULL, NULL);
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    size_t got = 0;
    CHECK_CODE(tu_unary_size(ch, NULL, sizes[i], &got), RGRPC_STATUS_CODE_OK);
    CHECK_EQ_INT(got, sizes[i]);
  }
  rgrpc_channel_free(ch);
}

static void test_unary_request_payloads(void) {
  static const size_t payloads[] = {0, 1, 1000, 65536, 300000, 2 << 20};
  rgrpc_channel *ch = tu_channel(NULL, NULL);
  for (size_t i = 0; i < sizeof payloads / sizeof payloads[0]; i++) {
    tu_pb req = tu_simple_request(314, payloads[i], 0, NULL);
    rgrpc_buffer *resp = NULL;
    const rgrpc_status *st = NULL;
    CHECK_OK(rgrpc_call_unary(ch, M_UNARY, NULL, req.data, req.len, &resp, &st));
    CHECK_STATUS(st, RGRPC_STATUS_CODE_OK);
    CHECK_STR(rgrpc_status_details(st), "");
    CHECK_EQ_INT(tu_buffer_body_len(resp), 314);
    rgrpc_buffer_free(resp);
    rgrpc_status_free(st);
    tu_pb_free(&req);
  }
  rgrpc_channel_free(ch);
}

static void test_empty_request(void) {
  rgrpc_channel *ch = tu_channel(NULL, NULL);
  /* EmptyCall: empty in, empty out. */
  size_t len = 99;
  CHECK_CODE(tu_unary(ch, M_EMPTY, NULL, NULL, 0, &len), RGRPC_STATUS_CODE_OK);
  CHECK_EQ_INT(len, 0);
  /* A non-NULL pointer with length 0 is the same. */
  static const uint8_t dummy[1] = {0};
  CHECK_CODE(tu_unary(ch, M_EMPTY, NULL, dummy, 0, &len), RGRPC_STATUS_CODE_OK);
  CHECK_EQ_INT(len, 0);
  /* UnaryCall with an empty SimpleRequest: an empty payload back. */
  rgrpc_buffer *resp = NULL;
  CHECK_OK(rgrpc_call_unary(ch, M_UNARY, NULL, NULL, 0, &resp, NULL));
  CHECK_EQ_INT(tu_buffer_body_len(resp), 0);
  rgrpc_buffer_free(resp);
  rgrpc_channel_free(ch);
}

static void test_unary_call_object(void) {
  rgrpc_channel *ch = tu_channel(NULL, NULL);
  for (int round = 0; round < 3; round++) {
    rgrpc_call *call = NULL;
    CHECK_OK(rgrpc_call_start(ch, M_UNARY, NULL, &call));
    CHECK(call != NULL);
    CHECK(rgrpc_call_is_active(call));
    CHECK_EQ_INT(rgrpc_call_time_remaining_ms(call), -1);
    tu_pb req = tu_simple_request(271 * (round + 1), 100, 0, NULL);
    tu_send_pb(call, &req, RGRPC_SEND_LAST);
    tu_pb_free(&req);
    CHECK_RC(rgrpc_call_send(call, NULL, 0, 0), RGRPC_RESULT_SEND_CLOSED);
    const rgrpc_metadata *md = NULL;
    CHECK_OK(rgrpc_call_initial_metadata(call, &md));
    CHECK(md != NULL);
    CHECK_EQ_INT(tu_recv_body_len(call), 271 * (round + 1));
    rgrpc_buffer *extra = NULL;
    CHECK_RC(rgrpc_call_recv(call, &extra), RGRPC_RESULT_END_OF_STREAM);
    CHECK(extra == NULL);
    const rgrpc_status *st = NULL;
    CHECK_OK(rgrpc_call_finish(call, &st));
    CHECK_STATUS(st, RGRPC_STATUS_CODE_OK);
    CHECK(!rgrpc_call_is_active(call));
    rgrpc_call_free(call);
    /* The status outlives the call. */
    CHECK_STATUS(st, RGRPC_STATUS_CODE_OK);
    CHECK_STR(rgrpc_status_details(st), "");
    rgrpc_status_free(st);
  }
  /* send without LAST, then close_send, then finish without reading:
   * the unread response is discarded. */
  rgrpc_call *call = NULL;
  CHECK_OK(rgrpc_call_start(ch, M_UNARY, NULL, &call));
  tu_pb req = tu_simple_request(50, 0, 0, NULL);
  tu_send_pb(call, &req, 0);
  tu_pb_free(&req);
  CHECK_OK(rgrpc_call_close_send(call));
  CHECK_OK(rgrpc_call_close_send(call)); /* idempotent */
  CHECK_CODE(tu_finish_code(call), RGRPC_STATUS_CODE_OK);
  rgrpc_call_free(call);
  rgrpc_channel_free(ch);
}

static void check_status_echo(rgrpc_channel *ch, int32_t code, const char *message) {
  tu_pb req = tu_simple_request(10, 0, code, message);
  rgrpc_buffer *sentinel = (rgrpc_buffer *)(void *)&req;
  rgrpc_buffer *resp = sentinel;
  const rgrpc_status *st = NULL;
  CHECK_RC(rgrpc_call_unary(ch, M_UNARY, NULL, req.data, req.len, &resp, &st),
           RGRPC_RESULT_RPC_FAILED);
  CHECK(resp == sentinel);
  CHECK(st != NULL);
  CHECK_STATUS(st, code);
  CHECK_STR(rgrpc_status_details(st), message);
  rgrpc_status_free(st);

  /* Same through the call object. */
  rgrpc_call *call = NULL;
  CHECK_OK(rgrpc_call_start(ch, M_UNARY, NULL, &call));
  tu_send_pb(call, &req, RGRPC_SEND_LAST);
  rgrpc_buffer *buf = NULL;
  CHECK_RC(rgrpc_call_recv(call, &buf), RGRPC_RESULT_END_OF_STREAM);
  CHECK_RC(rgrpc_call_finish(call, &st), RGRPC_RESULT_RPC_FAILED);
  CHECK_STATUS(st, code);
  CHECK_STR(rgrpc_status_details(st), message);
  rgrpc_status_free(st);
  rgrpc_call_free(call);
  tu_pb_free(&req);
}

static void test_status_codes(void) {
  rgrpc_channel *ch = tu_channel(NULL, NULL);
  for (int32_t code = 1; code <= 16; code++) {
    char msg[64];
    snprintf(msg, sizeof msg, "status %s requested", rgrpc_status_code_name((uint32_t)code));
    check_status_echo(ch, code, msg);
  }
  rgrpc_channel_free(ch);
}

static void test_status_details_encoding(void) {
  static const char *const details[] = {
      "",
      "plain",
      "tab\there",
      "line1\nline2\r\nline3",
      "percent 100% %41 %%",
      "non-ASCII: \xc3\xa9t\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x98\x80",
      "\t\n leading and trailing whitespace \t\n",
      "control \x01\x1f\x7f bytes",
  };
  rgrpc_channel *ch = tu_channel(NULL, NULL);
  for (size_t i = 0; i < sizeof details / sizeof details[0]; i++)
    check_status_echo(ch, RGRPC_STATUS_CODE_INVALID_ARGUMENT, details[i]);
  /* A long message. */
  char *big = malloc(8001);
  CHECK(big != NULL);
  for (int i = 0; i < 8000; i++) big[i] = (char)('a' + i % 26);
  big[8000] = '\0';
  check_status_echo(ch, RGRPC_STATUS_CODE_ABORTED, big);
  free(big);
  rgrpc_channel_free(ch);
}

static void test_unimplemented(void) {
  static const char *const methods[] = {
      M_UNIMPLEMENTED,
      "/grpc.testing.TestService/NoSuchMethod",
      "/grpc.testing.NoSuchService/EmptyCall",
      "/x.Y/Z",
  };
  rgrpc_channel *ch = tu_channel(NULL, NULL);
  for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++) {
    size_t len = 0;
    rgrpc_status_code code = tu_unary(ch, methods[i], NULL, NULL, 0, &len);
    CHECK_MSG(code == RGRPC_STATUS_CODE_UNIMPLEMENTED, "%s: got %s", methods[i],
              rgrpc_status_code_name(code));
    CHECK_EQ_INT(len, (size_t)-1);
  }
  /* Through a call object, streaming-style. */
  rgrpc_call *call = NULL;
  CHECK_OK(rgrpc_call_start(ch, "/grpc.testing.NoSuchService/Stream", NULL, &call));
  rgrpc_result rc = rgrpc_call_send(call, NULL, 0, 0);
  CHECK_MSG(rc == RGRPC_RESULT_OK || rc == RGRPC_RESULT_CALL_ENDED, "send: %s",
            rgrpc_result_name(rc));
  rc = rgrpc_call_close_send(call);
  CHECK_MSG(rc == RGRPC_RESULT_OK || rc == RGRPC_RESULT_CALL_ENDED, "close_send: %s",
            rgrpc_result_name(rc));
  rgrpc_buffer *buf = NULL;
  CHECK_RC(rgrpc_call_recv(call, &buf), RGRPC_RESULT_END_OF_STREAM);
  CHECK_CODE(tu_finish_code(call), RGRPC_STATUS_CODE_UNIMPLEMENTED);
  rgrpc_call_free(call);
  /* The channel still works. */
  CHECK_CODE(tu_unary_size(ch, NULL, 1, NULL), RGRPC_STATUS_CODE_OK);
  rgrpc_channel_free(ch);
}

static void check_unavailable(const char *target) {
  rgrpc_channel *ch = tu_channel(target, NULL);
  int64_t t0 = tu_now_ms();
  tu_pb req = tu_simple_request(1, 0, 0, NULL);
  rgrpc_buffer *sentinel = (rgrpc_buffer *)(void *)&req;
  rgrpc_buffer *resp = sentinel;
  const rgrpc_status *st = NULL;
  CHECK_RC(rgrpc_call_unary(ch, M_UNARY, NULL, req.data, req.len, &resp, &st),
           RGRPC_RESULT_RPC_FAILED);
  CHECK(resp == sentinel);
  CHECK_STATUS(st, RGRPC_STATUS_CODE_UNAVAILABLE);
  CHECK_NONEMPTY(rgrpc_status_details(st));
  rgrpc_status_free(st);
  CHECK_MSG(tu_now_ms() - t0 < 5000 * tu_slow(), "a refused connection took %lld ms",
            (long long)(tu_now_ms() - t0));

  /* Again (each call makes a new attempt), through a call object. */
  rgrpc_call *call = NULL;
  CHECK_OK(rgrpc_call_start(ch, M_UNARY, NULL, &call));
  rgrpc_result rc = rgrpc_call_send(call, req.data, req.len, RGRPC_SEND_LAST);
  CHECK_MSG(rc == RGRPC_RESULT_OK || rc == RGRPC_RESULT_CALL_ENDED, "send: %s",
            rgrpc_result_name(rc));
  rgrpc_buffer *buf = NULL;
  CHECK_RC(rgrpc_call_recv(call, &buf), RGRPC_RESULT_END_OF_STREAM);
  CHECK_CODE(tu_finish_code(call), RGRPC_STATUS_CODE_UNAVAILABLE);
  CHECK(!rgrpc_call_is_active(call));
  rgrpc_call_free(call);

  /* Async too. */
  CHECK_OK(rgrpc_call_unary_async(ch, M_UNARY, NULL, req.data, req.len, NULL, NULL, &call));
  CHECK_OK(rgrpc_call_wait(call, 10000 * tu_slow()));
  CHECK_CODE(tu_finish_code(call), RGRPC_STATUS_CODE_UNAVAILABLE);
  rgrpc_call_free(call);
  tu_pb_free(&req);
  rgrpc_channel_free(ch);
}

static void test_connection_refused(void) {
  check_unavailable("127.0.0.1:1");
  check_unavailable("ipv4:127.0.0.1:1,127.0.0.1:2");
}

static void test_unix_socket_unavailable(void) {
  char path[128];
  snprintf(path, sizeof path, "unix:/tmp/rgrpc-test-no-such-%ld.sock", (long)getpid());
  check_unavailable(path);
}

static void test_many_sequential_on_one_channel(void) {
  rgrpc_channel *ch = tu_channel(NULL, NULL);
  for (int i = 0; i < 200; i++) {
    size_t got = 0;
    CHECK_CODE(tu_unary_size(ch, NULL, i, &got), RGRPC_STATUS_CODE_OK);
    CHECK_EQ_INT(got, i);
  }
  rgrpc_channel_free(ch);
}

/* Requests written in place (rgrpc_buffer_new) go out whole, plain or
 * compressed, through rgrpc_call_unary_buffer and the call object; a
 * received buffer can be sent on (copied). */
static void test_unary_buffer_in_place(void) {
  static const size_t payloads[] = {0, 1, 1000, 65536, 300000, 2 << 20};
  rgrpc_channel_options *o = rgrpc_channel_options_new();
  CHECK_OK(rgrpc_channel_options_set_default_compression(o, RGRPC_COMPRESSION_GZIP));
  rgrpc_channel *plain = tu_channel(NULL, NULL);
  rgrpc_channel *gzip = tu_channel(NULL, o);
  rgrpc_channel_options_free(o);
  for (int c = 0; c < 2; c++) {
    rgrpc_channel *ch = c ? gzip : plain;
    for (size_t i = 0; i < sizeof payloads / sizeof payloads[0]; i++) {
      tu_pb req = tu_simple_request((int32_t)(100 + i), payloads[i], 0, NULL);
      rgrpc_buffer *resp = NULL;
      const rgrpc_status *st = NULL;
      CHECK_OK(rgrpc_call_unary_buffer(ch, M_UNARY, NULL, tu_in_place(&req), &resp, &st));
      CHECK_STATUS(st, RGRPC_STATUS_CODE_OK);
      CHECK_EQ_INT(tu_buffer_body_len(resp), 100 + i);
      rgrpc_buffer_free(resp);
      rgrpc_status_free(st);

      rgrpc_call *call = NULL;
      CHECK_OK(rgrpc_call_start(ch, M_UNARY, NULL, &call));
      CHECK_OK(rgrpc_call_send_buffer(call, tu_in_place(&req), RGRPC_SEND_LAST));
      CHECK_EQ_INT(tu_recv_body_len(call), 100 + i);
      CHECK_CODE(tu_finish_code(call), RGRPC_STATUS_CODE_OK);
      rgrpc_call_free(call);
      tu_pb_free(&req);
    }
  }
  /* A received message sent on (copied): EmptyCall's empty response is
   * also a valid EmptyCall request. */
  rgrpc_buffer *empty = NULL;
  CHECK_OK(rgrpc_call_unary(plain, M_EMPTY, NULL, NULL, 0, &empty, NULL));
  rgrpc_buffer *again = NULL;
  CHECK_OK(rgrpc_call_unary_buffer(plain, M_EMPTY, NULL, empty, &again, NULL));
  CHECK_EQ_INT(rgrpc_buffer_len(again), 0);
  /* and through send_buffer */
  rgrpc_call *call = NULL;
  CHECK_OK(rgrpc_call_start(plain, M_EMPTY, NULL, &call));
  CHECK_OK(rgrpc_call_send_buffer(call, again, RGRPC_SEND_LAST));
  CHECK_CODE(tu_finish_code(call), RGRPC_STATUS_CODE_OK);
  rgrpc_call_free(call);
  rgrpc_channel_free(gzip);
  rgrpc_channel_free(plain);
}

/* The send functions take the buffer in every case (valgrind checks that
 * none leaks), and refuse what rgrpc_call_send refuses. */
static void test_buffer_taken_on_errors(void) {
  tu_pb req = tu_simple_request(10, 10, 0, NULL);
  rgrpc_channel *ch = tu_channel(NULL, NULL);
  rgrpc_buffer *resp = NULL;
  CHECK_RC(rgrpc_call_unary_buffer(NULL, M_UNARY, NULL, tu_in_place(&req), &resp, NULL),
           RGRPC_RESULT_NULL_PARAMETER);
  CHECK_RC(rgrpc_call_unary_buffer(ch, NULL, NULL, tu_in_place(&req), &resp, NULL),
           RGRPC_RESULT_NULL_PARAMETER);
  CHECK_RC(rgrpc_call_unary_buffer(ch, M_UNARY, NULL, tu_in_place(&req), NULL, NULL),
           RGRPC_RESULT_NULL_PARAMETER);
  CHECK_RC(rgrpc_call_unary_buffer(ch, M_UNARY, NULL, NULL, &resp, NULL),
           RGRPC_RESULT_NULL_PARAMETER);
  CHECK_RC(rgrpc_call_unary_buffer(ch, "no slash", NULL, tu_in_place(&req), &resp, NULL),
           RGRPC_RESULT_INVALID_METHOD);
  CHECK(resp == NULL);
  CHECK_RC(rgrpc_call_send_buffer(NULL, tu_in_place(&req), 0), RGRPC_RESULT_NULL_PARAMETER);
  rgrpc_call *call = NULL;
  CHECK_OK(rgrpc_call_start(ch, M_UNARY, NULL, &call));
  CHECK_RC(rgrpc_call_send_buffer(call, NULL, 0), RGRPC_RESULT_NULL_PARAMETER);
  CHECK_RC(rgrpc_call_send_buffer(call, tu_in_place(&req), 1u << 20), RGRPC_RESULT_INVALID_ARGUMENT);
  CHECK_OK(rgrpc_call_send_buffer(call, tu_in_place(&req), RGRPC_SEND_LAST));
  CHECK_RC(rgrpc_call_send_buffer(call, tu_in_place(&req), 0), RGRPC_RESULT_SEND_CLOSED);
  CHECK_EQ_INT(tu_recv_body_len(call), 10);
  CHECK_CODE(tu_finish_code(call), RGRPC_STATUS_CODE_OK);
  CHECK_RC(rgrpc_call_send_buffer(call, tu_in_place(&req), 0), RGRPC_RESULT_CALL_ENDED);
  rgrpc_call_free(call);
  /* A buffer made and freed without sending. */
  rgrpc_buffer_free(tu_in_place(&req));
  tu_pb_free(&req);
  rgrpc_channel_free(ch);
}

int main(void) {
  RUN_TEST(test_unary_sizes);
  RUN_TEST(test_unary_request_payloads);
  RUN_TEST(test_empty_request);
  RUN_TEST(test_unary_call_object);
  RUN_TEST(test_status_codes);
  RUN_TEST(test_status_details_encoding);
  RUN_TEST(test_unimplemented);
  RUN_TEST(test_connection_refused);
  RUN_TEST(test_unix_socket_unavailable);
  RUN_TEST(test_many_sequential_on_one_channel);
  RUN_TEST(test_unary_buffer_in_place);
  RUN_TEST(test_buffer_taken_on_errors);
  return 0;
}

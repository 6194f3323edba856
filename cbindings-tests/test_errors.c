/* Every failure leaves a message: the text of the core's error reaches the
 * caller through the object concerned (rgrpc_call_last_error,
 * rgrpc_channel_last_error, the builders' _last_error) or through an
 * rgrpc_error out-parameter where no object exists yet. Messages of calls
 * and channels are kept per thread. */
#include "test_util.h"

/* CHECK_PREFIX(s, prefix): s starts with prefix. */
#define CHECK_PREFIX(s, prefix)                                                         \
  do {                                                                                  \
    const char *tu_s_ = (s), *tu_p_ = (prefix);                                         \
    CHECK_MSG(tu_s_ != NULL && strncmp(tu_s_, tu_p_, strlen(tu_p_)) == 0,                \
              "\"%s\" does not start with \"%s\"", tu_s_ ? tu_s_ : "(null)", tu_p_);     \
  } while (0)

static void noop_unary(void *ud, const rgrpc_status *st, const uint8_t *resp, size_t len) {
  (void)ud;
  (void)st;
  (void)resp;
  (void)len;
}

static void test_invalid_method_message(void) {
  rgrpc_channel *ch = tu_channel(NULL, NULL);
  CHECK_STR(rgrpc_channel_last_error(ch), "");
  CHECK_STR(rgrpc_channel_last_error(NULL), "");
  static const char want_noslash[] =
      "invalid method: \"noslash\" must start with '/' (e.g. \"/package.Service/Method\")";

  rgrpc_call *call = NULL;
  CHECK_RC(rgrpc_call_start(ch, "noslash", NULL, &call), RGRPC_RESULT_INVALID_METHOD);
  CHECK(call == NULL);
  CHECK_STR(rgrpc_channel_last_error(ch), want_noslash);

  /* A success leaves the message as it was. */
  CHECK_OK(rgrpc_call_start(ch, M_EMPTY, NULL, &call));
  CHECK_STR(rgrpc_channel_last_error(ch), want_noslash);
  rgrpc_call_free(call);
  call = NULL;

  rgrpc_buffer *buf = NULL;
  const rgrpc_status *st = NULL;
  CHECK_RC(rgrpc_call_unary(ch, "/with space/x", NULL, NULL, 0, &buf, &st),
           RGRPC_RESULT_INVALID_METHOD);
  CHECK_STR(rgrpc_channel_last_error(ch),
            "invalid method: \"/with space/x\" contains the character ' '");
  CHECK_RC(rgrpc_call_unary_async(ch, "", NULL, NULL, 0, noop_unary, NULL, &call),
           RGRPC_RESULT_INVALID_METHOD);
  CHECK_STR(rgrpc_channel_last_error(ch),
            "invalid method: \"\" must start with '/' (e.g. \"/package.Service/Method\")");
  rgrpc_buffer *req = NULL;
  uint8_t *data = NULL;
  CHECK_OK(rgrpc_buffer_new(0, &req, &data));
  CHECK_RC(rgrpc_call_unary_buffer(ch, "x", NULL, req, &buf, &st), RGRPC_RESULT_INVALID_METHOD);
  CHECK_PREFIX(rgrpc_channel_last_error(ch), "invalid method: \"x\"");

  /* Arguments are named. */
  CHECK_RC(rgrpc_call_start(ch, NULL, NULL, &call), RGRPC_RESULT_NULL_PARAMETER);
  CHECK_STR(rgrpc_channel_last_error(ch), "method is NULL");
  CHECK_RC(rgrpc_call_start(ch, "/a\xff/b", NULL, &call), RGRPC_RESULT_INVALID_UTF8);
  CHECK_STR(rgrpc_channel_last_error(ch), "method is not valid UTF-8");
  CHECK_RC(rgrpc_call_start(ch, M_EMPTY, NULL, NULL), RGRPC_RESULT_NULL_PARAMETER);
  CHECK_STR(rgrpc_channel_last_error(ch), "call_out is NULL");

  /* A closed channel refuses calls, and says so. */
  CHECK_OK(rgrpc_channel_close(ch));
  CHECK_RC(rgrpc_call_start(ch, M_EMPTY, NULL, &call), RGRPC_RESULT_CHANNEL_CLOSED);
  CHECK_STR(rgrpc_channel_last_error(ch), "the channel is closed");
  CHECK(buf == NULL && st == NULL && call == NULL);
  rgrpc_channel_free(ch);
}

/* Messages of one channel are per thread: a failure in another thread
 * neither shows up in, nor frees, this thread's message. */
typedef struct {
  rgrpc_channel *ch;
  char before[256];
  char after[256];
} other_thread_args;

static void *fail_in_other_thread(void *p) {
  other_thread_args *a = p;
  snprintf(a->before, sizeof a->before, "%s", rgrpc_channel_last_error(a->ch));
  rgrpc_call *call = NULL;
  CHECK_RC(rgrpc_call_start(a->ch, "other", NULL, &call), RGRPC_RESULT_INVALID_METHOD);
  snprintf(a->after, sizeof a->after, "%s", rgrpc_channel_last_error(a->ch));
  return NULL;
}

static void test_messages_are_per_thread(void) {
  rgrpc_channel *ch = tu_channel(NULL, NULL);
  rgrpc_call *call = NULL;
  CHECK_RC(rgrpc_call_start(ch, "mine", NULL, &call), RGRPC_RESULT_INVALID_METHOD);
  const char *mine = rgrpc_channel_last_error(ch);
  CHECK_PREFIX(mine, "invalid method: \"mine\"");
  other_thread_args a = {ch, "", ""};
  pthread_t t;
  tu_thread_start(&t, fail_in_other_thread, &a);
  tu_thread_join(t);
  CHECK_STR(a.before, "");
  CHECK_PREFIX(a.after, "invalid method: \"other\"");
  /* Still the same string, still readable. */
  CHECK(rgrpc_channel_last_error(ch) == mine);
  CHECK_PREFIX(mine, "invalid method: \"mine\"");
  rgrpc_channel_free(ch);
}

static void test_bad_metadata_key_message(void) {
  rgrpc_call_options *o = rgrpc_call_options_new();
  CHECK_RC(rgrpc_call_options_add_metadata_string(o, "X-Upper", "v"),
           RGRPC_RESULT_INVALID_METADATA);
  CHECK_STR(rgrpc_call_options_last_error(o),
            "metadata key \"X-Upper\" has the character 'X'; keys may only contain 0-9 a-z _ - . "
            "(lowercase ASCII)");
  CHECK_RC(rgrpc_call_options_add_metadata_string(o, "grpc-x", "v"),
           RGRPC_RESULT_INVALID_METADATA);
  CHECK_STR(rgrpc_call_options_last_error(o),
            "metadata key \"grpc-x\" is reserved: keys starting with \"grpc-\" belong to the gRPC "
            "protocol");
  CHECK_RC(rgrpc_call_options_add_metadata_string(o, "x-ok", "a\nb"),
           RGRPC_RESULT_INVALID_METADATA);
  CHECK_PREFIX(rgrpc_call_options_last_error(o), "metadata value for \"x-ok\" has byte 0x0a");
  CHECK_RC(rgrpc_call_options_add_metadata_string(o, "x-ok", NULL), RGRPC_RESULT_NULL_PARAMETER);
  CHECK_STR(rgrpc_call_options_last_error(o), "value is NULL");
  CHECK_RC(rgrpc_call_options_set_compression(o, 9), RGRPC_RESULT_INVALID_ARGUMENT);
  CHECK_STR(rgrpc_call_options_last_error(o), "9 is not an rgrpc_compression value");
  rgrpc_call_options_free(o);
}

static void test_send_after_close_send_message(void) {
  rgrpc_channel *ch = tu_channel(NULL, NULL);
  rgrpc_call *call = NULL;
  CHECK_OK(rgrpc_call_start(ch, M_BIDI, NULL, &call));
  CHECK_STR(rgrpc_call_last_error(call), "");
  CHECK_STR(rgrpc_call_last_error(NULL), "");
  CHECK_OK(rgrpc_call_close_send(call));
  CHECK_RC(rgrpc_call_send(call, (const uint8_t *)"x", 1, 0), RGRPC_RESULT_SEND_CLOSED);
  CHECK_STR(rgrpc_call_last_error(call), "the sending side of the call is already closed");
  CHECK_RC(rgrpc_call_send(call, (const uint8_t *)"x", 1, 0x40), RGRPC_RESULT_INVALID_ARGUMENT);
  CHECK_PREFIX(rgrpc_call_last_error(call), "unknown send flag bits 0x40");
  CHECK_RC(rgrpc_call_send(call, NULL, 3, 0), RGRPC_RESULT_NULL_PARAMETER);
  CHECK_STR(rgrpc_call_last_error(call), "data is NULL but len is not 0");
  CHECK_RC(rgrpc_call_send_buffer(call, NULL, 0), RGRPC_RESULT_NULL_PARAMETER);
  CHECK_STR(rgrpc_call_last_error(call), "msg is NULL");
  CHECK_RC(rgrpc_call_recv(call, NULL), RGRPC_RESULT_NULL_PARAMETER);
  CHECK_STR(rgrpc_call_last_error(call), "msg_out is NULL");

  /* The server ends the stream: recv says there are no more messages,
   * finish is OK. */
  rgrpc_buffer *buf = NULL;
  CHECK_RC(rgrpc_call_recv(call, &buf), RGRPC_RESULT_END_OF_STREAM);
  CHECK_STR(rgrpc_call_last_error(call), "no more messages: the server ended the response stream");
  CHECK_CODE(tu_finish_code(call), RGRPC_STATUS_CODE_OK);

  /* After the end, send says so, with the status. */
  CHECK_RC(rgrpc_call_close_send(call), RGRPC_RESULT_CALL_ENDED);
  CHECK_STR(rgrpc_call_last_error(call),
            "the call has ended; its status is available from finish (status OK)");
  rgrpc_call_free(call);
  rgrpc_channel_free(ch);
}

static void test_failed_rpc_messages(void) {
  rgrpc_channel *ch = tu_channel(NULL, NULL);
  /* finish and recv of a call that failed carry its status. */
  rgrpc_call *call = NULL;
  CHECK_OK(rgrpc_call_start(ch, M_UNARY, NULL, &call));
  tu_pb req = tu_simple_request(1, 0, 9, "no way");
  tu_send_pb(call, &req, RGRPC_SEND_LAST);
  rgrpc_buffer *buf = NULL;
  CHECK_RC(rgrpc_call_recv(call, &buf), RGRPC_RESULT_END_OF_STREAM);
  CHECK_STR(rgrpc_call_last_error(call),
            "no more messages: the call ended with status FAILED_PRECONDITION: no way");
  const rgrpc_status *st = NULL;
  CHECK_RC(rgrpc_call_finish(call, &st), RGRPC_RESULT_RPC_FAILED);
  CHECK_STR(rgrpc_call_last_error(call),
            "the RPC ended with status FAILED_PRECONDITION: no way");
  rgrpc_status_free(st);
  rgrpc_call_free(call);

  /* The unary helper leaves it on the channel. */
  CHECK_RC(rgrpc_call_unary(ch, M_UNARY, NULL, req.data, req.len, &buf, &st),
           RGRPC_RESULT_RPC_FAILED);
  CHECK_STR(rgrpc_channel_last_error(ch), "the RPC ended with status FAILED_PRECONDITION: no way");
  rgrpc_status_free(st);
  tu_pb_free(&req);

  /* A wait that times out. */
  CHECK_OK(rgrpc_call_start(ch, M_BIDI, NULL, &call));
  CHECK_RC(rgrpc_call_wait(call, 10), RGRPC_RESULT_TIMEOUT);
  CHECK_STR(rgrpc_call_last_error(call), "the call did not end within 10 ms");
  /* A done callback on an ended call. */
  CHECK_OK(rgrpc_call_cancel(call));
  CHECK_RC(rgrpc_call_on_done(call, NULL, NULL), RGRPC_RESULT_NULL_PARAMETER);
  CHECK_STR(rgrpc_call_last_error(call), "cb is NULL");
  rgrpc_call_free(call);

  /* Channel functions. */
  CHECK_RC(rgrpc_channel_unsubscribe(ch, 12345), RGRPC_RESULT_NOT_FOUND);
  CHECK_STR(rgrpc_channel_last_error(ch),
            "no subscription 12345 on this channel (unknown or already ended)");
  CHECK_RC(rgrpc_channel_wait_for_state_change(ch, 77, 0, NULL), RGRPC_RESULT_INVALID_ARGUMENT);
  CHECK_STR(rgrpc_channel_last_error(ch), "77 is not an rgrpc_connectivity_state value");
  rgrpc_channel_free(ch);

  /* Nothing listens on port 1: waiting for READY times out. */
  rgrpc_channel *dead = tu_channel("127.0.0.1:1", NULL);
  CHECK_RC(rgrpc_channel_wait_for_ready(dead, 50), RGRPC_RESULT_TIMEOUT);
  CHECK_PREFIX(rgrpc_channel_last_error(dead), "the channel did not become READY within 50 ms");
  rgrpc_channel_free(dead);
}

static void test_unknown_channel_option_message(void) {
  rgrpc_channel_options *o = rgrpc_channel_options_new();
  CHECK_RC(rgrpc_channel_options_set_int(o, "grpc.no_such_option", 1),
           RGRPC_RESULT_UNKNOWN_OPTION);
  CHECK_STR(rgrpc_channel_options_last_error(o), "unknown channel option \"grpc.no_such_option\"");
  CHECK_RC(rgrpc_channel_options_set_string(o, "grpc.max_receive_message_length", "1"),
           RGRPC_RESULT_INVALID_OPTION_VALUE);
  CHECK_STR(rgrpc_channel_options_last_error(o),
            "channel option \"grpc.max_receive_message_length\" takes an integer value");
  CHECK_RC(rgrpc_channel_options_set_default_compression(o, 5), RGRPC_RESULT_INVALID_OPTION_VALUE);
  CHECK_STR(rgrpc_channel_options_last_error(o),
            "5 is not an rgrpc_compression value (0 none, 1 deflate, 2 gzip)");
  CHECK_OK(rgrpc_channel_options_set_default_compression(o, RGRPC_COMPRESSION_GZIP));
  rgrpc_channel_options_free(o);
}

static void test_invalid_target_message(void) {
  rgrpc_channel *ch = NULL;
  rgrpc_error *err = NULL;
  CHECK_RC(rgrpc_channel_new("host:abc", NULL, NULL, &ch, &err), RGRPC_RESULT_INVALID_TARGET);
  CHECK(ch == NULL);
  CHECK_RC(rgrpc_error_result(err), RGRPC_RESULT_INVALID_TARGET);
  CHECK_STR(rgrpc_error_message(err),
            "invalid target: target \"host:abc\": port \"abc\" is not a number");
  rgrpc_error_free(err);
  err = NULL;
  CHECK_RC(rgrpc_channel_new("", NULL, NULL, &ch, &err), RGRPC_RESULT_INVALID_TARGET);
  CHECK_STR(rgrpc_error_message(err), "invalid target: target is empty");
  rgrpc_error_free(err);
  err = NULL;
  CHECK_RC(rgrpc_channel_new(NULL, NULL, NULL, &ch, &err), RGRPC_RESULT_NULL_PARAMETER);
  CHECK_STR(rgrpc_error_message(err), "target is NULL");
  rgrpc_error_free(err);
  err = NULL;
  /* Local credentials need a local target. */
  const rgrpc_channel_credentials *local = rgrpc_channel_credentials_local();
  CHECK_RC(rgrpc_channel_new("example.com:443", local, NULL, &ch, &err),
           RGRPC_RESULT_INVALID_ARGUMENT);
  CHECK_PREFIX(rgrpc_error_message(err), "invalid credentials: local credentials need");
  rgrpc_error_free(err);
  rgrpc_channel_credentials_free(local);
  CHECK(ch == NULL);
}

/* Two receivers: the second gets BUSY, and its own thread reads why. */
typedef struct {
  rgrpc_call *call;
  uint32_t rc;
} recv_args;

static void *receiver(void *p) {
  recv_args *a = p;
  rgrpc_buffer *buf = NULL;
  a->rc = rgrpc_call_recv(a->call, &buf);
  rgrpc_buffer_free(buf);
  return NULL;
}

static void test_busy_recv_message(void) {
  rgrpc_channel *ch = tu_channel(NULL, NULL);
  rgrpc_call *call = tu_open_bidi(ch, NULL);
  recv_args a = {call, 0};
  pthread_t t;
  tu_thread_start(&t, receiver, &a);
  tu_sleep_ms(300 * tu_slow()); /* the other thread is waiting in recv */
  rgrpc_buffer *buf = NULL;
  CHECK_RC(rgrpc_call_recv(call, &buf), RGRPC_RESULT_BUSY);
  const char *busy = rgrpc_call_last_error(call);
  CHECK_STR(busy, "another thread is receiving on this call");
  CHECK_OK(rgrpc_call_cancel(call));
  tu_thread_join(t);
  CHECK_RC(a.rc, RGRPC_RESULT_END_OF_STREAM);
  /* The receiver's END_OF_STREAM message is its own: ours is unchanged. */
  CHECK(rgrpc_call_last_error(call) == busy);
  CHECK_STR(busy, "another thread is receiving on this call");
  CHECK_RC(rgrpc_call_recv(call, &buf), RGRPC_RESULT_END_OF_STREAM);
  CHECK_STR(rgrpc_call_last_error(call),
            "no more messages: the call ended with status CANCELLED: Cancelled by the application");
  CHECK_CODE(tu_finish_code(call), RGRPC_STATUS_CODE_CANCELLED);
  rgrpc_call_free(call);
  rgrpc_channel_free(ch);
}

int main(void) {
  RUN_TEST(test_invalid_method_message);
  RUN_TEST(test_messages_are_per_thread);
  RUN_TEST(test_bad_metadata_key_message);
  RUN_TEST(test_send_after_close_send_message);
  RUN_TEST(test_failed_rpc_messages);
  RUN_TEST(test_unknown_channel_option_message);
  RUN_TEST(test_invalid_target_message);
  RUN_TEST(test_busy_recv_message);
  return 0;
}

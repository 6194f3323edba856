/* The gRPC interop test client (grpc/grpc doc/interop-test-descriptions.md)
 * over rgrpc's blocking C API, with protobuf-c messages.
 *
 * One file of over 800 lines on purpose: it is one concept (the official
 * client, one function per test case in the document's order, sharing the
 * flag parsing and message helpers above them), and it is what people copy
 * when they port a client, so it reads better whole.
 *
 * Usage: interop_client --server_port=N [--server_host=H] [--test_case=NAME|all]
 *                       [--use_tls[=true|false]] [--use_test_ca[=true|false]]
 *                       [--ca_file=PATH] [--server_host_override=NAME]
 *                       [other flags of the C++ client]
 * (defaults as in the C++ client: host localhost, test case large_unary).
 *
 * --use_tls: TLS channel credentials. The trusted roots are, with
 * --use_test_ca, the test CA: the PEM file of --ca_file, else the file named
 * by GRPC_DEFAULT_SSL_ROOTS_FILE_PATH (which rgrpc reads itself); without
 * it, rgrpc's default roots (GRPC_DEFAULT_SSL_ROOTS_FILE_PATH if set, else
 * the system's). --server_host_override: the name checked in the server's
 * certificate and sent as :authority (channel option
 * grpc.ssl_target_name_override). These three are ignored, with a note,
 * without --use_tls.
 *
 * Flags follow the C++ client: --name=value, --name value or -name=value; a
 * boolean flag alone means true. Flags this version does not implement are
 * ignored with a note on stderr. Prints "PASS <case>" or "FAIL <case>: <reason>"
 * for each case; exits 0 when all passed, 1 when one failed, 2 on a usage
 * error or an unsupported case or feature (credentials, ...).
 *
 * rpc_soak and channel_soak (run only when named) take the C++ client's
 * --soak_iterations (10 here), --soak_max_failures (0),
 * --soak_per_iteration_max_acceptable_latency_ms (1000),
 * --soak_overall_timeout_seconds (10), --soak_min_time_ms_between_rpcs (0). */
#define _POSIX_C_SOURCE 200809L
#include "grpc/testing/empty.pb-c.h"
#include "grpc/testing/messages.pb-c.h"
#include <assert.h>
#include <rgrpc.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SERVICE "/grpc.testing.TestService/"
#define LARGE_REQUEST 271828
#define LARGE_RESPONSE 314159
#define AGGREGATED_SIZE 74922
/* client_compressed_streaming: a compressed and an uncompressed request. */
#define COMPRESSED_REQUEST 27182
#define UNCOMPRESSED_REQUEST 45904
#define COMPRESSED_AGGREGATED_SIZE (COMPRESSED_REQUEST + UNCOMPRESSED_REQUEST)
/* server_compressed_streaming: a compressed and an uncompressed response. */
#define COMPRESSED_RESPONSE 31415
#define UNCOMPRESSED_RESPONSE 92653
#define MAX_RESPONSES 4

/* Request sizes of client_streaming and ping_pong; response sizes of
 * server_streaming and ping_pong. */
static const size_t REQUEST_SIZES[] = {27182, 8, 1828, 45904};
static const int32_t RESPONSE_SIZES[] = {31415, 9, 2653, 58979};
#define N_EXCHANGES (sizeof REQUEST_SIZES / sizeof REQUEST_SIZES[0])

#define ECHO_INITIAL_KEY "x-grpc-test-echo-initial"
#define ECHO_INITIAL_VALUE "test_initial_metadata_value"
#define ECHO_TRAILING_KEY "x-grpc-test-echo-trailing-bin"
static const uint8_t ECHO_TRAILING_VALUE[] = {0xab, 0xab, 0xab};

static char STATUS_MESSAGE[] = "test status message";
/* "\t\ttest with whitespace\r\nand Unicode BMP ☺ and non-BMP 😈\t\n" */
static char SPECIAL_STATUS_MESSAGE[] =
    "\t\ttest with whitespace\r\nand Unicode BMP \xe2\x98\xba and non-BMP \xf0\x9f\x98\x88\t\n";

/* Every request payload is zero bytes: their bodies all point here. */
static uint8_t zeros[LARGE_REQUEST];

/* ------------------------------------------------------------------ */
/* Failure reasons                                                    */

static char reason[2048];

#if defined(__GNUC__)
#define PRINTF_LIKE __attribute__((format(printf, 1, 2)))
#else
#define PRINTF_LIKE
#endif

/* Sets the reason of the current case's failure. Returns false, so that
 * `return fail(...)` reads naturally. */
static bool fail(const char *fmt, ...) PRINTF_LIKE;
static bool fail(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(reason, sizeof reason, fmt, ap);
  va_end(ap);
  return false;
}

/* Prefixes the reason with where the failure happened. Returns false. */
static bool fail_in(const char *fmt, ...) PRINTF_LIKE;
static bool fail_in(const char *fmt, ...) {
  char where[128], inner[sizeof reason];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(where, sizeof where, fmt, ap);
  va_end(ap);
  memcpy(inner, reason, sizeof inner);
  if (snprintf(reason, sizeof reason, "%s: %s", where, inner) < 0)
    reason[0] = '\0';
  return false;
}

/* Writes `data` into `out` as the body of a C string literal (quotes,
 * backslashes, \t \r \n and other bytes outside printable ASCII escaped),
 * cut to fit. */
static const char *quote(const void *data, size_t len, char *out, size_t size) {
  const uint8_t *p = data;
  size_t n = 0;
  for (size_t i = 0; i < len && n + 8 < size; i++) {
    if (p[i] == '"' || p[i] == '\\')
      n += (size_t)sprintf(out + n, "\\%c", p[i]);
    else if (p[i] == '\t' || p[i] == '\r' || p[i] == '\n')
      n += (size_t)sprintf(out + n, "\\%c", p[i] == '\t' ? 't' : p[i] == '\r' ? 'r' : 'n');
    else if (p[i] >= 0x20 && p[i] < 0x7f)
      out[n++] = (char)p[i];
    else
      n += (size_t)sprintf(out + n, "\\x%02x", p[i]);
  }
  out[n] = '\0';
  return out;
}

/* ------------------------------------------------------------------ */
/* Messages                                                           */

static Grpc__Testing__Payload zero_payload(size_t len) {
  Grpc__Testing__Payload payload = GRPC__TESTING__PAYLOAD__INIT;
  payload.body.data = zeros;
  payload.body.len = len;
  return payload;
}

/* The large_unary request (also used by custom_metadata). */
static void large_request(Grpc__Testing__SimpleRequest *req, Grpc__Testing__Payload *payload) {
  Grpc__Testing__SimpleRequest init = GRPC__TESTING__SIMPLE_REQUEST__INIT;
  *req = init;
  *payload = zero_payload(LARGE_REQUEST);
  req->response_size = LARGE_RESPONSE;
  req->payload = payload;
}

/* A StreamingOutputCallRequest with the storage it points into. */
typedef struct {
  Grpc__Testing__StreamingOutputCallRequest msg;
  Grpc__Testing__Payload payload;
  Grpc__Testing__ResponseParameters params[MAX_RESPONSES];
  Grpc__Testing__ResponseParameters *param_ptrs[MAX_RESPONSES];
} OutputRequest;

/* Fills `r`: a payload of `payload_len` zero bytes (none when 0) asking for
 * one response per size in `sizes[0..n)` (n <= MAX_RESPONSES). */
static void output_request(OutputRequest *r, size_t payload_len, const int32_t *sizes, size_t n) {
  Grpc__Testing__StreamingOutputCallRequest init = GRPC__TESTING__STREAMING_OUTPUT_CALL_REQUEST__INIT;
  Grpc__Testing__ResponseParameters param_init = GRPC__TESTING__RESPONSE_PARAMETERS__INIT;
  r->msg = init;
  r->payload = zero_payload(payload_len);
  if (payload_len > 0)
    r->msg.payload = &r->payload;
  assert(n <= MAX_RESPONSES);
  for (size_t i = 0; i < n; i++) {
    r->params[i] = param_init;
    r->params[i].size = sizes[i];
    r->param_ptrs[i] = &r->params[i];
  }
  r->msg.n_response_parameters = n;
  r->msg.response_parameters = r->param_ptrs;
}

/* Serializes `msg` into a malloc'ed buffer (NULL, with a reason, on failure). */
static uint8_t *pack(const ProtobufCMessage *msg, size_t *len) {
  *len = protobuf_c_message_get_packed_size(msg);
  uint8_t *bytes = malloc(*len > 0 ? *len : 1);
  if (!bytes) {
    fail("out of memory");
    return NULL;
  }
  protobuf_c_message_pack(msg, bytes);
  return bytes;
}

/* Parses `buf` as a `desc` message (free with protobuf_c_message_free_unpacked). */
static ProtobufCMessage *unpack(const rgrpc_buffer *buf, const ProtobufCMessageDescriptor *desc) {
  size_t len = rgrpc_buffer_len(buf);
  ProtobufCMessage *msg = protobuf_c_message_unpack(desc, NULL, len, len > 0 ? rgrpc_buffer_data(buf) : zeros);
  if (!msg)
    fail("could not parse the %zu-byte response as %s", len, desc->name);
  return msg;
}

/* Checks that the `payload` field of `msg` (a SimpleResponse or a
 * StreamingOutputCallResponse) is `want` zero bytes of type COMPRESSABLE. */
static bool check_payload(const ProtobufCMessage *msg, size_t want) {
  const ProtobufCFieldDescriptor *field =
      protobuf_c_message_descriptor_get_field_by_name(msg->descriptor, "payload");
  const Grpc__Testing__Payload *payload = *(Grpc__Testing__Payload *const *)((const char *)msg + field->offset);
  size_t len = payload ? payload->body.len : 0;
  if (len != want)
    return fail("response payload is %zu bytes, want %zu", len, want);
  if (len > 0 && payload->type != GRPC__TESTING__PAYLOAD_TYPE__COMPRESSABLE)
    return fail("response payload type is %d, want COMPRESSABLE", (int)payload->type);
  for (size_t i = 0; i < len; i++)
    if (payload->body.data[i] != 0)
      return fail("response payload byte %zu is 0x%02x, want 0", i, payload->body.data[i]);
  return true;
}

/* Parses `buf` as a `desc` message and checks its payload (check_payload). */
static bool check_response(const rgrpc_buffer *buf, const ProtobufCMessageDescriptor *desc, size_t want) {
  ProtobufCMessage *msg = unpack(buf, desc);
  bool ok = msg && check_payload(msg, want);
  protobuf_c_message_free_unpacked(msg, NULL);
  return ok;
}

/* ------------------------------------------------------------------ */
/* Statuses and metadata                                              */

/* Checks that `status` has `code` and, unless `details` is NULL, exactly
 * those details. */
static bool check_status(const rgrpc_status *status, rgrpc_status_code code, const char *details) {
  rgrpc_status_code got = rgrpc_status_get_code(status);
  const char *got_details = rgrpc_status_details(status);
  if (got == code && (!details || strcmp(got_details, details) == 0))
    return true;
  char g[512], w[512];
  quote(got_details, strlen(got_details), g, sizeof g);
  if (!details)
    return fail("status %s \"%s\", want %s", rgrpc_status_code_name(got), g, rgrpc_status_code_name(code));
  return fail("status %s \"%s\", want %s \"%s\"", rgrpc_status_code_name(got), g, rgrpc_status_code_name(code),
              quote(details, strlen(details), w, sizeof w));
}

/* Checks the outcome of rgrpc_call_unary or rgrpc_call_finish (named `fn`):
 * its result `rc` and `status`. */
static bool check_outcome(const char *fn, rgrpc_result rc, const rgrpc_status *status, rgrpc_status_code code,
                          const char *details) {
  if (rc != RGRPC_RESULT_OK && rc != RGRPC_RESULT_RPC_FAILED)
    return fail("%s: %s", fn, rgrpc_result_name(rc));
  if (!check_status(status, code, details))
    return false;
  if ((rc == RGRPC_RESULT_OK) != (code == RGRPC_STATUS_CODE_OK))
    return fail("%s returned %s with status %s", fn, rgrpc_result_name(rc), rgrpc_status_code_name(code));
  return true;
}

/* Checks that `md` holds `key` with exactly the value `want`. */
static bool check_metadata(const rgrpc_metadata *md, const char *which, const char *key, const void *want,
                           size_t want_len) {
  const uint8_t *value = NULL;
  size_t len = 0;
  char g[256], w[256];
  if (rgrpc_metadata_find(md, key, &value, &len) != RGRPC_RESULT_OK)
    return fail("%s metadata has no %s", which, key);
  if (len != want_len || memcmp(value, want, len) != 0)
    return fail("%s metadata %s is \"%s\", want \"%s\"", which, key, quote(value, len, g, sizeof g),
                quote(want, want_len, w, sizeof w));
  return true;
}

/* ------------------------------------------------------------------ */
/* Calls                                                              */

/* A unary call of `method` with `opts` (may be NULL) that must end with
 * `code` (and exactly `details`, unless NULL). When `response` is not NULL
 * it receives the response (rgrpc_buffer_free). */
static bool unary_call_with(rgrpc_channel *ch, const char *method, const rgrpc_call_options *opts,
                            const ProtobufCMessage *req, rgrpc_status_code code, const char *details,
                            rgrpc_buffer **response) {
  size_t len;
  uint8_t *bytes = pack(req, &len);
  if (!bytes)
    return false;
  rgrpc_buffer *buf = NULL;
  const rgrpc_status *status = NULL;
  rgrpc_result rc = rgrpc_call_unary(ch, method, opts, bytes, len, &buf, &status);
  free(bytes);
  bool ok = check_outcome("rgrpc_call_unary", rc, status, code, details);
  rgrpc_status_free(status);
  if (ok && response)
    *response = buf;
  else
    rgrpc_buffer_free(buf);
  return ok;
}

/* unary_call_with without options. */
static bool unary_call(rgrpc_channel *ch, const char *method, const ProtobufCMessage *req, rgrpc_status_code code,
                       const char *details, rgrpc_buffer **response) {
  return unary_call_with(ch, method, NULL, req, code, details, response);
}

/* Starts a call (NULL, with a reason, on failure). */
static rgrpc_call *start(rgrpc_channel *ch, const char *method, const rgrpc_call_options *opts) {
  rgrpc_call *call = NULL;
  rgrpc_result rc = rgrpc_call_start(ch, method, opts, &call);
  if (rc != RGRPC_RESULT_OK) {
    fail("rgrpc_call_start: %s", rgrpc_result_name(rc));
    return NULL;
  }
  return call;
}

/* Fails because `op` on `call` returned `rc`; when that means the call has
 * ended, the reason includes its status. */
static bool fail_call(rgrpc_call *call, const char *op, rgrpc_result rc) {
  if (rc != RGRPC_RESULT_CALL_ENDED && rc != RGRPC_RESULT_END_OF_STREAM)
    return fail("%s: %s", op, rgrpc_result_name(rc));
  const rgrpc_status *status = NULL;
  rgrpc_call_finish(call, &status);
  const char *details = rgrpc_status_details(status);
  char d[512];
  fail("%s: %s, status %s \"%s\"", op, rgrpc_result_name(rc), rgrpc_status_code_name(rgrpc_status_get_code(status)),
       quote(details, strlen(details), d, sizeof d));
  rgrpc_status_free(status);
  return false;
}

static bool send_msg(rgrpc_call *call, const ProtobufCMessage *msg, uint32_t flags) {
  size_t len;
  uint8_t *bytes = pack(msg, &len);
  if (!bytes)
    return false;
  rgrpc_result rc = rgrpc_call_send(call, bytes, len, flags);
  free(bytes);
  return rc == RGRPC_RESULT_OK || fail_call(call, "send", rc);
}

static bool close_send(rgrpc_call *call) {
  rgrpc_result rc = rgrpc_call_close_send(call);
  return rc == RGRPC_RESULT_OK || fail_call(call, "close_send", rc);
}

static bool cancel(rgrpc_call *call) {
  rgrpc_result rc = rgrpc_call_cancel(call);
  return rc == RGRPC_RESULT_OK || fail("rgrpc_call_cancel: %s", rgrpc_result_name(rc));
}

/* Receives the next message (NULL, with a reason, when there is none). */
static rgrpc_buffer *recv_buf(rgrpc_call *call) {
  rgrpc_buffer *buf = NULL;
  rgrpc_result rc = rgrpc_call_recv(call, &buf);
  if (rc != RGRPC_RESULT_OK) {
    fail_call(call, "recv", rc);
    return NULL;
  }
  return buf;
}

/* Receives a `desc` message and checks its payload (check_payload). */
static bool recv_response(rgrpc_call *call, const ProtobufCMessageDescriptor *desc, size_t want) {
  rgrpc_buffer *buf = recv_buf(call);
  bool ok = buf && check_response(buf, desc, want);
  rgrpc_buffer_free(buf);
  return ok;
}

/* Checks that the response stream has ended. */
static bool expect_end(rgrpc_call *call) {
  rgrpc_buffer *buf = NULL;
  rgrpc_result rc = rgrpc_call_recv(call, &buf);
  if (rc == RGRPC_RESULT_END_OF_STREAM)
    return true;
  if (rc != RGRPC_RESULT_OK)
    return fail_call(call, "recv", rc);
  size_t len = rgrpc_buffer_len(buf);
  rgrpc_buffer_free(buf);
  return fail("unexpected extra %zu-byte response", len);
}

/* Waits for the call's status, which must be `code` (and exactly
 * `details`, unless NULL). */
static bool finish_expect(rgrpc_call *call, rgrpc_status_code code, const char *details) {
  const rgrpc_status *status = NULL;
  rgrpc_result rc = rgrpc_call_finish(call, &status);
  bool ok = check_outcome("rgrpc_call_finish", rc, status, code, details);
  rgrpc_status_free(status);
  return ok;
}

/* ------------------------------------------------------------------ */
/* Test cases                                                         */

static const ProtobufCMessageDescriptor *const SIMPLE_RESPONSE = &grpc__testing__simple_response__descriptor;
static const ProtobufCMessageDescriptor *const OUTPUT_RESPONSE =
    &grpc__testing__streaming_output_call_response__descriptor;

static bool empty_unary(rgrpc_channel *ch) {
  Grpc__Testing__Empty req = GRPC__TESTING__EMPTY__INIT;
  rgrpc_buffer *resp = NULL;
  if (!unary_call(ch, SERVICE "EmptyCall", &req.base, RGRPC_STATUS_CODE_OK, NULL, &resp))
    return false;
  size_t len = rgrpc_buffer_len(resp);
  rgrpc_buffer_free(resp);
  return len == 0 || fail("response is %zu bytes, want an empty message", len);
}

static bool large_unary(rgrpc_channel *ch) {
  Grpc__Testing__SimpleRequest req;
  Grpc__Testing__Payload payload;
  large_request(&req, &payload);
  rgrpc_buffer *resp = NULL;
  if (!unary_call(ch, SERVICE "UnaryCall", &req.base, RGRPC_STATUS_CODE_OK, NULL, &resp))
    return false;
  bool ok = check_response(resp, SIMPLE_RESPONSE, LARGE_RESPONSE);
  rgrpc_buffer_free(resp);
  return ok;
}

/* Call options that compress sent messages with `algorithm` (NULL, with a
 * reason, on failure). */
static rgrpc_call_options *compression_options(uint32_t algorithm) {
  rgrpc_call_options *opts = rgrpc_call_options_new();
  if (!opts) {
    fail("out of memory");
    return NULL;
  }
  if (rgrpc_call_options_set_compression(opts, algorithm) != RGRPC_RESULT_OK) {
    fail("rgrpc_call_options_set_compression(%u): %s", (unsigned)algorithm, rgrpc_call_options_last_error(opts));
    rgrpc_call_options_free(opts);
    return NULL;
  }
  return opts;
}

static Grpc__Testing__BoolValue bool_value(bool value) {
  Grpc__Testing__BoolValue b = GRPC__TESTING__BOOL_VALUE__INIT;
  b.value = value;
  return b;
}

/* Checks that the server's messages on `call` use `want` ("gzip"): what the
 * API shows of the compressed flag (rgrpc checks that a flagged message
 * comes with a grpc-encoding, and decompresses with it). */
static bool check_response_encoding(const rgrpc_call *call, const char *want) {
  const char *got = rgrpc_call_response_encoding(call);
  if (!got)
    return fail("rgrpc_call_response_encoding is NULL after a response message");
  return strcmp(got, want) == 0 || fail("response grpc-encoding \"%s\", want \"%s\"", got, want);
}

static bool client_compressed_unary(rgrpc_channel *ch) {
  Grpc__Testing__SimpleRequest req;
  Grpc__Testing__Payload payload;
  large_request(&req, &payload);
  Grpc__Testing__BoolValue expect_true = bool_value(true), expect_false = bool_value(false);

  /* The probe: an uncompressed message that claims to be compressed must
   * be refused, or the server cannot tell and the rest proves nothing. */
  req.expect_compressed = &expect_true;
  if (!unary_call(ch, SERVICE "UnaryCall", &req.base, RGRPC_STATUS_CODE_INVALID_ARGUMENT, NULL, NULL))
    return fail_in("probe (uncompressed, expect_compressed true)");

  rgrpc_call_options *gzip = compression_options(RGRPC_COMPRESSION_GZIP);
  if (!gzip)
    return false;
  rgrpc_buffer *resp = NULL;
  bool ok = unary_call_with(ch, SERVICE "UnaryCall", gzip, &req.base, RGRPC_STATUS_CODE_OK, NULL, &resp) &&
            check_response(resp, SIMPLE_RESPONSE, LARGE_RESPONSE);
  rgrpc_call_options_free(gzip);
  rgrpc_buffer_free(resp);
  resp = NULL;
  if (!ok)
    return fail_in("compressed request");

  req.expect_compressed = &expect_false;
  ok = unary_call(ch, SERVICE "UnaryCall", &req.base, RGRPC_STATUS_CODE_OK, NULL, &resp) &&
       check_response(resp, SIMPLE_RESPONSE, LARGE_RESPONSE);
  rgrpc_buffer_free(resp);
  return ok || fail_in("uncompressed request");
}

/* One server_compressed_unary call: asks for a compressed response or not. */
static bool server_compressed_unary_call(rgrpc_channel *ch, bool compressed) {
  Grpc__Testing__SimpleRequest req;
  Grpc__Testing__Payload payload;
  large_request(&req, &payload);
  Grpc__Testing__BoolValue response_compressed = bool_value(compressed);
  req.response_compressed = &response_compressed;
  rgrpc_call *call = start(ch, SERVICE "UnaryCall", NULL);
  bool ok = call && send_msg(call, &req.base, RGRPC_SEND_LAST) && recv_response(call, SIMPLE_RESPONSE, LARGE_RESPONSE);
  /* Compressed: the response must have come with gzip. Uncompressed: the
   * flag is not visible through the API (a server may still announce gzip
   * and send the message uncompressed), so only success is checked. */
  if (ok && compressed)
    ok = check_response_encoding(call, "gzip");
  ok = ok && expect_end(call) && finish_expect(call, RGRPC_STATUS_CODE_OK, NULL);
  rgrpc_call_free(call);
  return ok;
}

static bool server_compressed_unary(rgrpc_channel *ch) {
  return (server_compressed_unary_call(ch, true) || fail_in("response_compressed true")) &&
         (server_compressed_unary_call(ch, false) || fail_in("response_compressed false"));
}

/* Receives the StreamingInputCallResponse and checks the aggregated size. */
static bool recv_aggregated_size(rgrpc_call *call, int32_t want) {
  rgrpc_buffer *buf = recv_buf(call);
  ProtobufCMessage *msg = buf ? unpack(buf, &grpc__testing__streaming_input_call_response__descriptor) : NULL;
  rgrpc_buffer_free(buf);
  if (!msg)
    return false;
  int32_t size = ((Grpc__Testing__StreamingInputCallResponse *)msg)->aggregated_payload_size;
  protobuf_c_message_free_unpacked(msg, NULL);
  return size == want || fail("aggregated_payload_size %d, want %d", (int)size, (int)want);
}

static bool client_streaming(rgrpc_channel *ch) {
  rgrpc_call *call = start(ch, SERVICE "StreamingInputCall", NULL);
  bool ok = call != NULL;
  for (size_t i = 0; ok && i < N_EXCHANGES; i++) {
    Grpc__Testing__Payload payload = zero_payload(REQUEST_SIZES[i]);
    Grpc__Testing__StreamingInputCallRequest req = GRPC__TESTING__STREAMING_INPUT_CALL_REQUEST__INIT;
    req.payload = &payload;
    ok = send_msg(call, &req.base, 0) || fail_in("request %zu", i + 1);
  }
  ok = ok && close_send(call) && recv_aggregated_size(call, AGGREGATED_SIZE) &&
       finish_expect(call, RGRPC_STATUS_CODE_OK, NULL);
  rgrpc_call_free(call);
  return ok;
}

/* A StreamingInputCallRequest of `size` zero bytes with expect_compressed. */
static void input_request(Grpc__Testing__StreamingInputCallRequest *req, Grpc__Testing__Payload *payload,
                          Grpc__Testing__BoolValue *expect, size_t size) {
  Grpc__Testing__StreamingInputCallRequest init = GRPC__TESTING__STREAMING_INPUT_CALL_REQUEST__INIT;
  *req = init;
  *payload = zero_payload(size);
  req->payload = payload;
  req->expect_compressed = expect;
}

static bool client_compressed_streaming(rgrpc_channel *ch) {
  Grpc__Testing__StreamingInputCallRequest req;
  Grpc__Testing__Payload payload;
  Grpc__Testing__BoolValue expect_true = bool_value(true), expect_false = bool_value(false);

  /* The probe: uncompressed, claiming to be compressed. The server may end
   * the call before the client is done sending, so only the status counts. */
  input_request(&req, &payload, &expect_true, COMPRESSED_REQUEST);
  rgrpc_call *call = start(ch, SERVICE "StreamingInputCall", NULL);
  if (!call)
    return fail_in("probe");
  size_t len;
  uint8_t *bytes = pack(&req.base, &len);
  bool ok = bytes != NULL;
  if (ok) {
    rgrpc_result rc = rgrpc_call_send(call, bytes, len, RGRPC_SEND_LAST);
    if (rc != RGRPC_RESULT_OK && rc != RGRPC_RESULT_CALL_ENDED)
      ok = fail("send: %s", rgrpc_result_name(rc));
  }
  free(bytes);
  ok = ok && finish_expect(call, RGRPC_STATUS_CODE_INVALID_ARGUMENT, NULL);
  rgrpc_call_free(call);
  if (!ok)
    return fail_in("probe (uncompressed, expect_compressed true)");

  /* One gzip call: a compressed message, then one sent uncompressed with
   * RGRPC_SEND_NO_COMPRESS. */
  rgrpc_call_options *gzip = compression_options(RGRPC_COMPRESSION_GZIP);
  if (!gzip)
    return false;
  call = start(ch, SERVICE "StreamingInputCall", gzip);
  rgrpc_call_options_free(gzip);
  ok = call != NULL;
  input_request(&req, &payload, &expect_true, COMPRESSED_REQUEST);
  ok = ok && (send_msg(call, &req.base, 0) || fail_in("compressed request"));
  input_request(&req, &payload, &expect_false, UNCOMPRESSED_REQUEST);
  ok = ok && (send_msg(call, &req.base, RGRPC_SEND_NO_COMPRESS) || fail_in("uncompressed request"));
  ok = ok && close_send(call) && recv_aggregated_size(call, COMPRESSED_AGGREGATED_SIZE) &&
       finish_expect(call, RGRPC_STATUS_CODE_OK, NULL);
  rgrpc_call_free(call);
  return ok;
}

static bool server_streaming(rgrpc_channel *ch) {
  OutputRequest req;
  output_request(&req, 0, RESPONSE_SIZES, N_EXCHANGES);
  rgrpc_call *call = start(ch, SERVICE "StreamingOutputCall", NULL);
  bool ok = call && send_msg(call, &req.msg.base, RGRPC_SEND_LAST);
  for (size_t i = 0; ok && i < N_EXCHANGES; i++)
    ok = recv_response(call, OUTPUT_RESPONSE, (size_t)RESPONSE_SIZES[i]) || fail_in("response %zu", i + 1);
  ok = ok && expect_end(call) && finish_expect(call, RGRPC_STATUS_CODE_OK, NULL);
  rgrpc_call_free(call);
  return ok;
}

static bool server_compressed_streaming(rgrpc_channel *ch) {
  static const int32_t sizes[] = {COMPRESSED_RESPONSE, UNCOMPRESSED_RESPONSE};
  OutputRequest req;
  output_request(&req, 0, sizes, 2);
  Grpc__Testing__BoolValue compressed = bool_value(true), uncompressed = bool_value(false);
  req.params[0].compressed = &compressed;
  req.params[1].compressed = &uncompressed;
  rgrpc_call *call = start(ch, SERVICE "StreamingOutputCall", NULL);
  bool ok = call && send_msg(call, &req.msg.base, RGRPC_SEND_LAST);
  ok = ok && (recv_response(call, OUTPUT_RESPONSE, COMPRESSED_RESPONSE) || fail_in("response 1"));
  /* The compressed response must have come with gzip; that the second is
   * uncompressed is not visible through the API. */
  ok = ok && check_response_encoding(call, "gzip");
  ok = ok && (recv_response(call, OUTPUT_RESPONSE, UNCOMPRESSED_RESPONSE) || fail_in("response 2"));
  ok = ok && expect_end(call) && finish_expect(call, RGRPC_STATUS_CODE_OK, NULL);
  rgrpc_call_free(call);
  return ok;
}

static bool ping_pong(rgrpc_channel *ch) {
  rgrpc_call *call = start(ch, SERVICE "FullDuplexCall", NULL);
  bool ok = call != NULL;
  for (size_t i = 0; ok && i < N_EXCHANGES; i++) {
    OutputRequest req;
    output_request(&req, REQUEST_SIZES[i], &RESPONSE_SIZES[i], 1);
    ok = (send_msg(call, &req.msg.base, 0) && recv_response(call, OUTPUT_RESPONSE, (size_t)RESPONSE_SIZES[i])) ||
         fail_in("exchange %zu", i + 1);
  }
  ok = ok && close_send(call) && expect_end(call) && finish_expect(call, RGRPC_STATUS_CODE_OK, NULL);
  rgrpc_call_free(call);
  return ok;
}

static bool empty_stream(rgrpc_channel *ch) {
  rgrpc_call *call = start(ch, SERVICE "FullDuplexCall", NULL);
  bool ok = call && close_send(call) && expect_end(call) && finish_expect(call, RGRPC_STATUS_CODE_OK, NULL);
  rgrpc_call_free(call);
  return ok;
}

/* Call options carrying the two metadata entries the server echoes. */
static rgrpc_call_options *echo_metadata_options(void) {
  rgrpc_call_options *opts = rgrpc_call_options_new();
  if (!opts) {
    fail("out of memory");
    return NULL;
  }
  if (rgrpc_call_options_add_metadata_string(opts, ECHO_INITIAL_KEY, ECHO_INITIAL_VALUE) != RGRPC_RESULT_OK ||
      rgrpc_call_options_add_metadata(opts, ECHO_TRAILING_KEY, ECHO_TRAILING_VALUE, sizeof ECHO_TRAILING_VALUE) !=
          RGRPC_RESULT_OK) {
    fail("adding metadata: %s", rgrpc_call_options_last_error(opts));
    rgrpc_call_options_free(opts);
    return NULL;
  }
  return opts;
}

/* Calls `method` with the echo metadata: sends `req`, expects one `desc`
 * response with a LARGE_RESPONSE payload, status OK, and the metadata
 * echoed in the initial and trailing metadata. */
static bool echo_metadata_call(rgrpc_channel *ch, const char *method, const ProtobufCMessage *req,
                               const ProtobufCMessageDescriptor *desc) {
  rgrpc_call_options *opts = echo_metadata_options();
  if (!opts)
    return false;
  rgrpc_call *call = start(ch, method, opts);
  rgrpc_call_options_free(opts);
  bool ok = call && send_msg(call, req, RGRPC_SEND_LAST) && recv_response(call, desc, LARGE_RESPONSE) &&
            expect_end(call);
  if (ok) {
    const rgrpc_status *status = NULL;
    const rgrpc_metadata *initial = NULL;
    rgrpc_result rc = rgrpc_call_finish(call, &status);
    ok = check_outcome("rgrpc_call_finish", rc, status, RGRPC_STATUS_CODE_OK, NULL) &&
         rgrpc_call_initial_metadata(call, &initial) == RGRPC_RESULT_OK &&
         check_metadata(initial, "initial", ECHO_INITIAL_KEY, ECHO_INITIAL_VALUE, strlen(ECHO_INITIAL_VALUE)) &&
         check_metadata(rgrpc_status_trailing_metadata(status), "trailing", ECHO_TRAILING_KEY, ECHO_TRAILING_VALUE,
                        sizeof ECHO_TRAILING_VALUE);
    rgrpc_status_free(status);
  }
  rgrpc_call_free(call);
  return ok;
}

static bool custom_metadata(rgrpc_channel *ch) {
  Grpc__Testing__SimpleRequest unary_req;
  Grpc__Testing__Payload payload;
  large_request(&unary_req, &payload);
  if (!echo_metadata_call(ch, SERVICE "UnaryCall", &unary_req.base, SIMPLE_RESPONSE))
    return fail_in("unary");
  const int32_t size = LARGE_RESPONSE;
  OutputRequest duplex_req;
  output_request(&duplex_req, LARGE_REQUEST, &size, 1);
  return echo_metadata_call(ch, SERVICE "FullDuplexCall", &duplex_req.msg.base, OUTPUT_RESPONSE) ||
         fail_in("full duplex");
}

/* Asks the server for status UNKNOWN with `message` in a unary call and,
 * when `duplex`, a full-duplex call; both must end with exactly that. */
static bool echo_status(rgrpc_channel *ch, char *message, bool duplex) {
  Grpc__Testing__EchoStatus status = GRPC__TESTING__ECHO_STATUS__INIT;
  status.code = RGRPC_STATUS_CODE_UNKNOWN;
  status.message = message;
  Grpc__Testing__SimpleRequest unary_req = GRPC__TESTING__SIMPLE_REQUEST__INIT;
  unary_req.response_status = &status;
  if (!unary_call(ch, SERVICE "UnaryCall", &unary_req.base, RGRPC_STATUS_CODE_UNKNOWN, message, NULL))
    return fail_in("unary");
  if (!duplex)
    return true;
  OutputRequest duplex_req;
  output_request(&duplex_req, 0, NULL, 0);
  duplex_req.msg.response_status = &status;
  rgrpc_call *call = start(ch, SERVICE "FullDuplexCall", NULL);
  bool ok = call && send_msg(call, &duplex_req.msg.base, RGRPC_SEND_LAST) &&
            finish_expect(call, RGRPC_STATUS_CODE_UNKNOWN, message);
  rgrpc_call_free(call);
  return ok || fail_in("full duplex");
}

static bool status_code_and_message(rgrpc_channel *ch) {
  return echo_status(ch, STATUS_MESSAGE, true);
}

static bool special_status_message(rgrpc_channel *ch) {
  return echo_status(ch, SPECIAL_STATUS_MESSAGE, false);
}

static bool expect_unimplemented(rgrpc_channel *ch, const char *method) {
  Grpc__Testing__Empty req = GRPC__TESTING__EMPTY__INIT;
  return unary_call(ch, method, &req.base, RGRPC_STATUS_CODE_UNIMPLEMENTED, NULL, NULL);
}

static bool unimplemented_method(rgrpc_channel *ch) {
  return expect_unimplemented(ch, SERVICE "UnimplementedCall");
}

static bool unimplemented_service(rgrpc_channel *ch) {
  return expect_unimplemented(ch, "/grpc.testing.UnimplementedService/UnimplementedCall");
}

static bool cancel_after_begin(rgrpc_channel *ch) {
  rgrpc_call *call = start(ch, SERVICE "StreamingInputCall", NULL);
  bool ok = call && cancel(call) && finish_expect(call, RGRPC_STATUS_CODE_CANCELLED, NULL);
  rgrpc_call_free(call);
  return ok;
}

static bool cancel_after_first_response(rgrpc_channel *ch) {
  OutputRequest req;
  output_request(&req, REQUEST_SIZES[0], &RESPONSE_SIZES[0], 1);
  rgrpc_call *call = start(ch, SERVICE "FullDuplexCall", NULL);
  bool ok = call && send_msg(call, &req.msg.base, 0) &&
            recv_response(call, OUTPUT_RESPONSE, (size_t)RESPONSE_SIZES[0]) && cancel(call) &&
            finish_expect(call, RGRPC_STATUS_CODE_CANCELLED, NULL);
  rgrpc_call_free(call);
  return ok;
}

static bool timeout_on_sleeping_server(rgrpc_channel *ch) {
  rgrpc_call_options *opts = rgrpc_call_options_new();
  if (!opts || rgrpc_call_options_set_timeout_ms(opts, 1) != RGRPC_RESULT_OK) {
    rgrpc_call_options_free(opts);
    return fail("could not set a 1 ms timeout");
  }
  rgrpc_call *call = start(ch, SERVICE "FullDuplexCall", opts);
  rgrpc_call_options_free(opts);
  if (!call)
    return false;
  OutputRequest req;
  output_request(&req, REQUEST_SIZES[0], NULL, 0);
  (void)send_msg(call, &req.msg.base, 0); /* may fail: the deadline may have passed already */
  bool ok = finish_expect(call, RGRPC_STATUS_CODE_DEADLINE_EXCEEDED, NULL);
  rgrpc_call_free(call);
  return ok;
}

/* ------------------------------------------------------------------ */
/* Command line                                                       */

typedef struct {
  const char *name;
  bool (*run)(rgrpc_channel *ch);
} TestCase;

/* The cases `--test_case=all` runs, in order. */
static const TestCase CASES[] = {
    {"empty_unary", empty_unary},
    {"large_unary", large_unary},
    {"client_compressed_unary", client_compressed_unary},
    {"server_compressed_unary", server_compressed_unary},
    {"client_streaming", client_streaming},
    {"client_compressed_streaming", client_compressed_streaming},
    {"server_streaming", server_streaming},
    {"server_compressed_streaming", server_compressed_streaming},
    {"ping_pong", ping_pong},
    {"empty_stream", empty_stream},
    {"custom_metadata", custom_metadata},
    {"status_code_and_message", status_code_and_message},
    {"special_status_message", special_status_message},
    {"unimplemented_method", unimplemented_method},
    {"unimplemented_service", unimplemented_service},
    {"cancel_after_begin", cancel_after_begin},
    {"cancel_after_first_response", cancel_after_first_response},
    {"timeout_on_sleeping_server", timeout_on_sleeping_server},
};
#define N_CASES (sizeof CASES / sizeof CASES[0])

/* ---- soak cases (doc/interop-test-descriptions.md: rpc_soak and
 * channel_soak): large_unary `soak_iterations` times, on one channel or on
 * a new channel each time; an iteration fails when its call fails or takes
 * longer than the latency bound; the case passes when no more than
 * `soak_max_failures` iterations fail and all end within the overall
 * timeout. Not part of `all` (they take a while). */

typedef struct {
  long iterations;
  long max_failures;
  long max_latency_ms;
  long overall_timeout_s;
  long min_time_between_ms;
  /* What a new channel is made from (channel_soak). */
  const char *target;
  const rgrpc_channel_credentials *creds;
  const rgrpc_channel_options *opts;
} Soak;

static Soak SOAK = {10, 0, 1000, 10, 0, NULL, NULL, NULL};

static int cmp_ms(const void *a, const void *b) {
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return (x > y) - (x < y);
}

static bool soak(rgrpc_channel *ch, bool new_channel_each_time, const char *name) {
  int64_t *lat = calloc((size_t)SOAK.iterations + 1, sizeof *lat);
  if (!lat)
    return fail("out of memory");
  int64_t start = rgrpc_now_ms();
  long failures = 0, done = 0;
  char first_failure[512] = "";
  for (long i = 0; i < SOAK.iterations; i++) {
    if (rgrpc_now_ms() - start > SOAK.overall_timeout_s * 1000)
      break;
    int64_t t0 = rgrpc_now_ms();
    rgrpc_channel *c = ch;
    bool ok;
    reason[0] = '\0';
    if (new_channel_each_time) {
      rgrpc_error *err = NULL;
      c = NULL;
      if (rgrpc_channel_new(SOAK.target, SOAK.creds, SOAK.opts, &c, &err) != RGRPC_RESULT_OK) {
        ok = fail("cannot create a channel: %s", rgrpc_error_message(err));
        rgrpc_error_free(err);
      } else {
        ok = large_unary(c);
        rgrpc_channel_free(c);
      }
    } else {
      ok = large_unary(c);
    }
    int64_t ms = rgrpc_now_ms() - t0;
    lat[done++] = ms;
    if (ok && ms > SOAK.max_latency_ms)
      ok = fail("took %lld ms (bound %ld ms)", (long long)ms, SOAK.max_latency_ms);
    if (!ok) {
      failures++;
      if (!first_failure[0])
        snprintf(first_failure, sizeof first_failure, "iteration %ld: %.400s", i, reason);
    }
    if (SOAK.min_time_between_ms > 0) {
      int64_t wait = SOAK.min_time_between_ms - (rgrpc_now_ms() - t0);
      while (wait > 0 && rgrpc_now_ms() - t0 < SOAK.min_time_between_ms) {
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
        wait = SOAK.min_time_between_ms - (rgrpc_now_ms() - t0);
      }
    }
  }
  qsort(lat, (size_t)done, sizeof *lat, cmp_ms);
  fprintf(stderr, "%s: %ld of %ld iterations in %lld ms, %ld failed; latency ms p50 %lld, p99 %lld, max %lld\n",
          name, done, SOAK.iterations, (long long)(rgrpc_now_ms() - start), failures,
          (long long)(done ? lat[done / 2] : 0), (long long)(done ? lat[(done * 99) / 100] : 0),
          (long long)(done ? lat[done - 1] : 0));
  free(lat);
  if (done < SOAK.iterations)
    return fail("only %ld of %ld iterations within %ld s (%ld failed)", done, SOAK.iterations,
                SOAK.overall_timeout_s, failures);
  if (failures > SOAK.max_failures)
    return fail("%ld of %ld iterations failed (at most %ld may); first: %s", failures, done,
                SOAK.max_failures, first_failure);
  return true;
}

static bool rpc_soak(rgrpc_channel *ch) {
  return soak(ch, false, "rpc_soak");
}

static bool channel_soak(rgrpc_channel *ch) {
  return soak(ch, true, "channel_soak");
}

/* Cases run only when named. */
static const TestCase NAMED_CASES[] = {
    {"rpc_soak", rpc_soak},
    {"channel_soak", channel_soak},
};
#define N_NAMED_CASES (sizeof NAMED_CASES / sizeof NAMED_CASES[0])

/* Cases of the spec and the C++ client that need what rgrpc lacks
 * (Google credentials, a caching proxy, ...) or are not written yet. */
static const char *const UNSUPPORTED_CASES[] = {
    "cacheable_unary", "compute_engine_creds", "jwt_token_creds",
    "oauth2_auth_token", "per_rpc_creds", "google_default_credentials", "compute_engine_channel_credentials",
    "half_duplex", "slow_consumer", "pick_first_unary", "long_lived_channel",
    "concurrent_large_unary", "orca_per_rpc", "orca_oob",
};

typedef struct {
  const char *host;
  const char *port;
  const char *test_case;
  bool use_tls;
  bool use_test_ca;
  const char *ca_file;
  const char *server_host_override;
} Flags;

/* Prints a usage error; returns the exit code 2. */
static int usage(const char *fmt, ...) PRINTF_LIKE;
static int usage(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fprintf(stderr, "\nusage: interop_client --server_port=N [--server_host=H] [--test_case=NAME|all]\n"
                  "                      [--use_tls] [--use_test_ca] [--ca_file=PATH] [--server_host_override=NAME]\n");
  return 2;
}

static bool flag_is(const char *name, size_t len, const char *flag) {
  return strlen(flag) == len && strncmp(name, flag, len) == 0;
}

/* A boolean flag value: NULL (the flag alone) means true. */
static bool parse_bool(const char *value, bool *out) {
  if (!value || strcmp(value, "true") == 0 || strcmp(value, "1") == 0 || strcmp(value, "yes") == 0)
    *out = true;
  else if (strcmp(value, "false") == 0 || strcmp(value, "0") == 0 || strcmp(value, "no") == 0)
    *out = false;
  else
    return false;
  return true;
}

/* Parses the flags into `f`. Returns 0, or the exit code of a usage error. */
static int parse_flags(int argc, char **argv, Flags *f) {
  for (int i = 1; i < argc; i++) {
    const char *arg = argv[i];
    if (arg[0] != '-')
      return usage("unexpected argument %s", arg);
    const char *name = arg + (arg[1] == '-' ? 2 : 1);
    const char *eq = strchr(name, '=');
    size_t len = eq ? (size_t)(eq - name) : strlen(name);
    const char *value = eq ? eq + 1 : NULL;
    bool *bool_slot = flag_is(name, len, "use_tls") ? &f->use_tls
                      : flag_is(name, len, "use_test_ca") ? &f->use_test_ca
                      : NULL;
    if (bool_slot) {
      /* Never takes the next argument: alone, a boolean flag means true. */
      if (!parse_bool(value, bool_slot))
        return usage("bad boolean value in %s", arg);
      continue;
    }
    if (!value && i + 1 < argc && argv[i + 1][0] != '-')
      value = argv[++i];
    const char **slot = flag_is(name, len, "server_host") ? &f->host
                        : flag_is(name, len, "server_port") ? &f->port
                        : flag_is(name, len, "test_case") ? &f->test_case
                        : flag_is(name, len, "ca_file") ? &f->ca_file
                        : flag_is(name, len, "server_host_override") ? &f->server_host_override
                        : NULL;
    if (slot && !value)
      return usage("flag %s needs a value", arg);
    long *num = flag_is(name, len, "soak_iterations") ? &SOAK.iterations
                : flag_is(name, len, "soak_max_failures") ? &SOAK.max_failures
                : flag_is(name, len, "soak_per_iteration_max_acceptable_latency_ms") ? &SOAK.max_latency_ms
                : flag_is(name, len, "soak_overall_timeout_seconds") ? &SOAK.overall_timeout_s
                : flag_is(name, len, "soak_min_time_ms_between_rpcs") ? &SOAK.min_time_between_ms
                : NULL;
    if (num) {
      char *end = NULL;
      long v = value ? strtol(value, &end, 10) : -1;
      if (!value || *end != '\0' || v < 0)
        return usage("flag %s needs a number >= 0", arg);
      *num = v;
      continue;
    }
    if (slot)
      *slot = value;
    else
      fprintf(stderr, "flag --%.*s is not supported yet, ignored\n", (int)len, name);
  }
  return 0;
}

static bool valid_port(const char *port) {
  char *end;
  long n = strtol(port, &end, 10);
  return port[0] >= '0' && port[0] <= '9' && *end == '\0' && n > 0 && n <= 65535;
}

/* Selects the cases to run into CASES[*first .. *first + *count), or one
 * of NAMED_CASES into *named. Returns 0, or the exit code when the name is
 * not a runnable case. */
static int select_cases(const char *name, size_t *first, size_t *count, const TestCase **named) {
  for (size_t i = 0; i < N_NAMED_CASES; i++) {
    if (strcmp(name, NAMED_CASES[i].name) == 0) {
      *named = &NAMED_CASES[i];
      return 0;
    }
  }
  if (strcmp(name, "all") == 0) {
    *first = 0;
    *count = N_CASES;
    return 0;
  }
  for (size_t i = 0; i < N_CASES; i++) {
    if (strcmp(name, CASES[i].name) == 0) {
      *first = i;
      *count = 1;
      return 0;
    }
  }
  for (size_t i = 0; i < sizeof UNSUPPORTED_CASES / sizeof UNSUPPORTED_CASES[0]; i++) {
    if (strcmp(name, UNSUPPORTED_CASES[i]) == 0) {
      fprintf(stderr, "test case %s is not supported yet\n", name);
      return 2;
    }
  }
  return usage("unknown test case %s", name);
}

/* Reads a whole file into a malloc'd buffer (NULL with a message on
 * failure). */
static uint8_t *read_file(const char *path, size_t *len_out) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    fprintf(stderr, "cannot open %s\n", path);
    return NULL;
  }
  uint8_t *data = NULL;
  size_t len = 0, cap = 0;
  for (;;) {
    if (len == cap) {
      cap = cap ? cap * 2 : 4096;
      uint8_t *bigger = realloc(data, cap);
      if (!bigger) {
        free(data);
        fclose(f);
        fprintf(stderr, "out of memory reading %s\n", path);
        return NULL;
      }
      data = bigger;
    }
    size_t n = fread(data + len, 1, cap - len, f);
    len += n;
    if (n == 0)
      break;
  }
  bool failed = ferror(f) != 0;
  fclose(f);
  if (failed) {
    free(data);
    fprintf(stderr, "cannot read %s\n", path);
    return NULL;
  }
  *len_out = len;
  return data;
}

/* The channel credentials the flags ask for: NULL (insecure) without
 * --use_tls. Returns 0, or the exit code of a failure (reported). */
static int channel_credentials(const Flags *f, const rgrpc_channel_credentials **out) {
  *out = NULL;
  if (!f->use_tls) {
    if (f->use_test_ca || f->ca_file || f->server_host_override)
      fprintf(stderr, "--use_test_ca, --ca_file and --server_host_override are ignored without --use_tls\n");
    return 0;
  }
  uint8_t *roots = NULL;
  size_t roots_len = 0;
  if (f->use_test_ca) {
    if (f->ca_file) {
      roots = read_file(f->ca_file, &roots_len);
      if (!roots)
        return 2;
    } else {
      const char *env = getenv("GRPC_DEFAULT_SSL_ROOTS_FILE_PATH");
      if (!env || !env[0])
        return usage("--use_test_ca needs --ca_file or GRPC_DEFAULT_SSL_ROOTS_FILE_PATH");
      /* NULL roots: rgrpc reads GRPC_DEFAULT_SSL_ROOTS_FILE_PATH itself. */
    }
  } else if (f->ca_file) {
    fprintf(stderr, "--ca_file is ignored without --use_test_ca\n");
  }
  rgrpc_error *err = NULL;
  rgrpc_result rc = rgrpc_channel_credentials_tls(roots, roots_len, NULL, 0, NULL, 0, out, &err);
  free(roots);
  if (rc != RGRPC_RESULT_OK) {
    fprintf(stderr, "cannot make TLS credentials: %s: %s\n", rgrpc_result_name(rc), rgrpc_error_message(err));
    rgrpc_error_free(err);
    return 2;
  }
  return 0;
}

/* The channel options the flags ask for (NULL: defaults). Returns 0, or the
 * exit code of a failure (reported). */
static int channel_options(const Flags *f, rgrpc_channel_options **out) {
  *out = NULL;
  if (!f->use_tls || !f->server_host_override)
    return 0;
  rgrpc_channel_options *opts = rgrpc_channel_options_new();
  if (!opts) {
    fprintf(stderr, "out of memory\n");
    return 1;
  }
  rgrpc_result rc = rgrpc_channel_options_set_string(opts, "grpc.ssl_target_name_override", f->server_host_override);
  if (rc != RGRPC_RESULT_OK) {
    int code = usage("bad --server_host_override %s: %s", f->server_host_override,
                     rgrpc_channel_options_last_error(opts));
    rgrpc_channel_options_free(opts);
    return code;
  }
  *out = opts;
  return 0;
}

int main(int argc, char **argv) {
  /* The C++ client's defaults. */
  Flags flags = {"localhost", NULL, "large_unary", false, false, NULL, NULL};
  size_t first = 0, count = 0;
  const TestCase *named = NULL;
  int rc = parse_flags(argc, argv, &flags);
  if (rc != 0)
    return rc;
  if (!flags.port || !valid_port(flags.port))
    return usage("--server_port must be a port number (got %s)", flags.port ? flags.port : "none");
  rc = select_cases(flags.test_case, &first, &count, &named);
  if (rc != 0)
    return rc;

  char target[512];
  bool ipv6 = strchr(flags.host, ':') && flags.host[0] != '[';
  snprintf(target, sizeof target, "%s%s%s:%s", ipv6 ? "[" : "", flags.host, ipv6 ? "]" : "", flags.port);
  const rgrpc_channel_credentials *creds = NULL;
  rgrpc_channel_options *opts = NULL;
  rc = channel_credentials(&flags, &creds);
  if (rc == 0)
    rc = channel_options(&flags, &opts);
  if (rc != 0) {
    rgrpc_channel_credentials_free(creds);
    return rc;
  }
  rgrpc_channel *ch = NULL;
  rgrpc_error *err = NULL;
  rgrpc_result made = rgrpc_channel_new(target, creds, opts, &ch, &err);
  if (made != RGRPC_RESULT_OK) {
    fprintf(stderr, "cannot create a channel to %s: %s\n", target, rgrpc_error_message(err));
    rgrpc_error_free(err);
    rgrpc_channel_credentials_free(creds);
    rgrpc_channel_options_free(opts);
    return 1;
  }
  /* channel_soak makes more channels from the same three. */
  SOAK.target = target;
  SOAK.creds = creds;
  SOAK.opts = opts;

  size_t failed = 0;
  if (named) {
    reason[0] = '\0';
    if (named->run(ch)) {
      printf("PASS %s\n", named->name);
    } else {
      printf("FAIL %s: %s\n", named->name, reason[0] ? reason : "(no reason given)");
      failed++;
    }
  }
  for (size_t i = first; i < first + count; i++) {
    reason[0] = '\0';
    if (CASES[i].run(ch)) {
      printf("PASS %s\n", CASES[i].name);
    } else {
      printf("FAIL %s: %s\n", CASES[i].name, reason[0] ? reason : "(no reason given)");
      failed++;
    }
    fflush(stdout);
  }
  rgrpc_channel_free(ch);
  rgrpc_channel_credentials_free(creds);
  rgrpc_channel_options_free(opts);
  /* Stops the library's threads and frees what it holds: nothing is left
   * for a memory checker to report. */
  if (rgrpc_shutdown() != RGRPC_RESULT_OK) {
    fprintf(stderr, "rgrpc_shutdown failed\n");
    return 1;
  }
  return failed == 0 ? 0 : 1;
}

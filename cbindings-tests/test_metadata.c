/* Metadata: sent ASCII and binary entries echoed back in initial and
 * trailing metadata, repeated keys, the rgrpc_metadata accessors, and the
 * request headers the server sees (user-agent, :authority, :path). */
#include "test_util.h"

#define ECHO_INITIAL "x-grpc-test-echo-initial"
#define ECHO_TRAILING_BIN "x-grpc-test-echo-trailing-bin"

static const uint8_t TRAILING_VALUE[] = {0xab, 0xab, 0xab};

/* Exactly one entry `key` in md, with exactly these bytes. */
static void check_md_value(const rgrpc_metadata *md, const char *key, const void *want,
                           size_t want_len) {
  CHECK(md != NULL);
  const uint8_t *v = NULL;
  size_t vl = 0;
  rgrpc_result rc = rgrpc_metadata_find(md, key, &v, &vl);
  CHECK_MSG(rc == RGRPC_RESULT_OK, "metadata key \"%s\": %s", key, rgrpc_result_name(rc));
  CHECK_MSG(vl == want_len && (want_len == 0 || memcmp(v, want, want_len) == 0),
            "metadata \"%s\": %zu bytes, want %zu", key, vl, want_len);
  /* And the same through rgrpc_metadata_get. */
  size_t n = rgrpc_metadata_len(md), seen = 0;
  for (size_t i = 0; i < n; i++) {
    const char *k = NULL;
    const uint8_t *val = NULL;
    size_t len = 0;
    CHECK_OK(rgrpc_metadata_get(md, i, &k, &val, &len));
    CHECK(k != NULL);
    if (strcmp(k, key) == 0) {
      seen++;
      CHECK(len == want_len && (len == 0 || memcmp(val, want, len) == 0));
    }
  }
  CHECK_EQ_INT(seen, 1);
}

static rgrpc_call_options *custom_metadata_opts(void) {
  rgrpc_call_options *o = rgrpc_call_options_new();
  CHECK_OK(rgrpc_call_options_add_metadata_string(o, ECHO_INITIAL, "test_initial_metadata_value"));
  CHECK_OK(rgrpc_call_options_add_metadata(o, ECHO_TRAILING_BIN, TRAILING_VALUE,
                                           sizeof TRAILING_VALUE));
  return o;
}

/* The interop "custom_metadata" case, unary through rgrpc_call_unary
 * (trailing only) and through a call object (initial and trailing). */
static void test_custom_metadata_unary(void) {
  rgrpc_channel *ch = tu_channel(NULL, NULL);
  rgrpc_call_options *o = custom_metadata_opts();
  tu_pb req = tu_simple_request(314159, 271828, 0, NULL);

  rgrpc_buffer *resp = NULL;
  const rgrpc_status *st = NULL;
  CHECK_OK(rgrpc_call_unary(ch, M_UNARY, o, req.data, req.len, &resp, &st));
  CHECK_EQ_INT(tu_buffer_body_len(resp), 314159);
  const rgrpc_metadata *trailing = rgrpc_status_trailing_metadata(st);
  check_md_value(trailing, ECHO_TRAILING_BIN, TRAILING_VALUE, sizeof TRAILING_VALUE);
  /* grpc-status / grpc-message are not in the trailing metadata. */
  CHECK_RC(rgrpc_metadata_find(trailing, "grpc-status", NULL, NULL), RGRPC_RESULT_NOT_FOUND);
  CHECK_RC(rgrpc_metadata_find(trailing, "grpc-message", NULL, NULL), RGRPC_RESULT_NOT_FOUND);
  rgrpc_buffer_free(resp);
  rgrpc_status_free(st);

  rgrpc_call *call = NULL;
  CHECK_OK(rgrpc_call_start(ch, M_UNARY, o, &call));
  tu_send_pb(call, &req, RGRPC_SEND_LAST);
  const rgrpc_metadata *initial = NULL;
  CHECK_OK(rgrpc_call_initial_metadata(call, &initial));
  check_md_value(initial, ECHO_INITIAL, "test_initial_metadata_value", 27);
  CHECK_RC(rgrpc_metadata_find(initial, ECHO_TRAILING_BIN, NULL, NULL), RGRPC_RESULT_NOT_FOUND);
  /* Asking again gives the same view. */
  const rgrpc_metadata *again = NULL;
  CHECK_OK(rgrpc_call_initial_metadata(call, &again));
  CHECK_EQ_INT(rgrpc_metadata_len(again), rgrpc_metadata_len(initial));
  CHECK_EQ_INT(tu_recv_body_len(call), 314159);
  CHECK_OK(rgrpc_call_finish(call, &st));
  check_md_value(rgrpc_status_trailing_metadata(st), ECHO_TRAILING_BIN, TRAILING_VALUE,
                 sizeof TRAILING_VALUE);
  /* The initial metadata view stays valid until the call is freed. */
  check_md_value(initial, ECHO_INITIAL, "test_initial_metadata_value", 27);
  rgrpc_call_free(call);
  /* The trailing view lives as long as the status. */
  check_md_value(rgrpc_status_trailing_metadata(st), ECHO_TRAILING_BIN, TRAILING_VALUE,
                 sizeof TRAILING_VALUE);
  rgrpc_status_free(st);

  tu_pb_free(&req);
  rgrpc_call_options_free(o);
  rgrpc_channel_free(ch);
}

static void test_custom_metadata_bidi(void) {
  static const int32_t size = 314159;
  rgrpc_channel *ch = tu_channel(NULL, NULL);
  rgrpc_call_options *o = custom_metadata_opts();
  rgrpc_call *call = NULL;
  CHECK_OK(rgrpc_call_start(ch, M_BIDI, o, &call));
  rgrpc_call_options_free(o); /* copied at start */
  tu_pb req = tu_streaming_output_request(&size, NULL, 1, 271828, 0, NULL);
  tu_send_pb(call, &req, RGRPC_SEND_LAST);
  tu_pb_free(&req);
  CHECK_EQ_INT(tu_recv_body_len(call), size);
  const rgrpc_metadata *initial = NULL;
  CHECK_OK(rgrpc_call_initial_metadata(call, &initial));
  check_md_value(initial, ECHO_INITIAL, "test_initial_metadata_value", 27);
  rgrpc_buffer *buf = NULL;
  CHECK_RC(rgrpc_call_recv(call, &buf), RGRPC_RESULT_END_OF_STREAM);
  const rgrpc_status *st = NULL;
  CHECK_OK(rgrpc_call_finish(call, &st));
  check_md_value(rgrpc_status_trailing_metadata(st), ECHO_TRAILING_BIN, TRAILING_VALUE,
                 sizeof TRAILING_VALUE);
  rgrpc_status_free(st);
  rgrpc_call_free(call);
  rgrpc_channel_free(ch);
}

/* Trailing metadata also arrives with an error status. */
static void test_trailing_metadata_on_error(void) {
  rgrpc_channel *ch = tu_channel(NULL, NULL);
  rgrpc_call_options *o = custom_metadata_opts();
  tu_pb req = tu_simple_request(1, 0, RGRPC_STATUS_CODE_NOT_FOUND, "nope");
  rgrpc_buffer *resp = NULL;
  const rgrpc_status *st = NULL;
  CHECK_RC(rgrpc_call_unary(ch, M_UNARY, o, req.data, req.len, &resp, &st),
           RGRPC_RESULT_RPC_FAILED);
  CHECK_STATUS(st, RGRPC_STATUS_CODE_NOT_FOUND);
  CHECK_STR(rgrpc_status_details(st), "nope");
  check_md_value(rgrpc_status_trailing_metadata(st), ECHO_TRAILING_BIN, TRAILING_VALUE,
                 sizeof TRAILING_VALUE);
  rgrpc_status_free(st);
  tu_pb_free(&req);
  rgrpc_call_options_free(o);
  rgrpc_channel_free(ch);
}

/* Every byte value survives the -bin (base64) round trip. */
static void test_binary_values_all_bytes(void) {
  uint8_t all[256];
  for (int i = 0; i < 256; i++) all[i] = (uint8_t)i;
  rgrpc_channel *ch = tu_channel(NULL, NULL);
  /* Lengths 0..5 cover every base64 padding case. */
  for (size_t len = 0; len <= 6; len++) {
    rgrpc_call_options *o = rgrpc_call_options_new();
    CHECK_OK(rgrpc_call_options_add_metadata(o, ECHO_TRAILING_BIN, all + 250, len));
    const rgrpc_status *st = NULL;
    rgrpc_buffer *resp = NULL;
    CHECK_OK(rgrpc_call_unary(ch, M_EMPTY, o, NULL, 0, &resp, &st));
    const rgrpc_metadata *md = rgrpc_status_trailing_metadata(st);
    const uint8_t *v = NULL;
    size_t vl = 99;
    rgrpc_result rc = rgrpc_metadata_find(md, ECHO_TRAILING_BIN, &v, &vl);
    if (len == 0 && rc == RGRPC_RESULT_NOT_FOUND) {
      tu_note("the server dropped an empty -bin value");
    } else {
      CHECK_OK(rc);
      CHECK_EQ_INT(vl, len);
      CHECK(len == 0 || memcmp(v, all + 250, len) == 0);
    }
    rgrpc_buffer_free(resp);
    rgrpc_status_free(st);
    rgrpc_call_options_free(o);
  }
  rgrpc_call_options *o = rgrpc_call_options_new();
  CHECK_OK(rgrpc_call_options_add_metadata(o, ECHO_TRAILING_BIN, all, sizeof all));
  CHECK_OK(rgrpc_call_options_add_metadata(o, ECHO_INITIAL "-bin", all, 100));
  rgrpc_call *call = NULL;
  CHECK_OK(rgrpc_call_start(ch, M_EMPTY, o, &call));
  CHECK_OK(rgrpc_call_send(call, NULL, 0, RGRPC_SEND_LAST));
  const rgrpc_metadata *initial = NULL;
  CHECK_OK(rgrpc_call_initial_metadata(call, &initial));
  check_md_value(initial, ECHO_INITIAL "-bin", all, 100);
  const rgrpc_status *st = NULL;
  CHECK_OK(rgrpc_call_finish(call, &st));
  check_md_value(rgrpc_status_trailing_metadata(st), ECHO_TRAILING_BIN, all, sizeof all);
  rgrpc_status_free(st);
  rgrpc_call_free(call);
  rgrpc_call_options_free(o);
  rgrpc_channel_free(ch);
}

static void test_repeated_keys_and_accessors(void) {
  rgrpc_channel *ch = tu_channel(NULL, NULL);
  rgrpc_call_options *o = rgrpc_call_options_new();
  CHECK_OK(rgrpc_call_options_add_metadata_string(o, ECHO_INITIAL "-rep", "first"));
  CHECK_OK(rgrpc_call_options_add_metadata_string(o, ECHO_INITIAL "-other", "middle"));
  CHECK_OK(rgrpc_call_options_add_metadata_string(o, ECHO_INITIAL "-rep", "second"));
  CHECK_OK(rgrpc_call_options_add_metadata_string(o, ECHO_INITIAL "-rep", "third"));
  rgrpc_call *call = NULL;
  CHECK_OK(rgrpc_call_start(ch, M_EMPTY, o, &call));
  rgrpc_call_options_free(o);
  CHECK_OK(rgrpc_call_send(call, NULL, 0, RGRPC_SEND_LAST));
  const rgrpc_metadata *md = NULL;
  CHECK_OK(rgrpc_call_initial_metadata(call, &md));

  /* find: the first value. */
  const uint8_t *v = NULL;
  size_t vl = 0;
  CHECK_OK(rgrpc_metadata_find(md, ECHO_INITIAL "-rep", &v, &vl));
  CHECK(vl == 5 && memcmp(v, "first", 5) == 0);
  /* NULL out-pointers are allowed. */
  CHECK_OK(rgrpc_metadata_find(md, ECHO_INITIAL "-rep", NULL, NULL));
  CHECK_OK(rgrpc_metadata_find(md, ECHO_INITIAL "-rep", NULL, &vl));
  CHECK_EQ_INT(vl, 5);
  CHECK_RC(rgrpc_metadata_find(md, "x-absent", &v, &vl), RGRPC_RESULT_NOT_FOUND);

  /* get: the -rep values in order, keys lowercase. */
  static const char *const want[] = {"first", "second", "third"};
  size_t n = rgrpc_metadata_len(md), reps = 0, others = 0;
  CHECK(n >= 4);
  for (size_t i = 0; i < n; i++) {
    const char *k = NULL;
    const uint8_t *val = NULL;
    size_t len = 0;
    CHECK_OK(rgrpc_metadata_get(md, i, &k, &val, &len));
    for (const char *c = k; *c; c++) CHECK_MSG(!(*c >= 'A' && *c <= 'Z'), "key \"%s\"", k);
    if (strcmp(k, ECHO_INITIAL "-rep") == 0) {
      CHECK(reps < 3);
      CHECK_MSG(len == strlen(want[reps]) && memcmp(val, want[reps], len) == 0,
                "repeated value %zu: \"%.*s\", want \"%s\"", reps, (int)len, (const char *)val,
                want[reps]);
      reps++;
    } else if (strcmp(k, ECHO_INITIAL "-other") == 0) {
      CHECK(len == 6 && memcmp(val, "middle", 6) == 0);
      others++;
    }
    /* Any out-pointer may be NULL. */
    CHECK_OK(rgrpc_metadata_get(md, i, NULL, NULL, NULL));
    const char *k2 = NULL;
    CHECK_OK(rgrpc_metadata_get(md, i, &k2, NULL, NULL));
    CHECK(k2 == k);
  }
  CHECK_EQ_INT(reps, 3);
  CHECK_EQ_INT(others, 1);
  /* Out of range: NOT_FOUND, outputs untouched. */
  const char *k = "untouched";
  v = (const uint8_t *)"untouched";
  vl = 12345;
  CHECK_RC(rgrpc_metadata_get(md, n, &k, &v, &vl), RGRPC_RESULT_NOT_FOUND);
  CHECK_RC(rgrpc_metadata_get(md, (size_t)-1, &k, &v, &vl), RGRPC_RESULT_NOT_FOUND);
  CHECK_STR(k, "untouched");
  CHECK_EQ_INT(vl, 12345);

  CHECK_CODE(tu_finish_code(call), RGRPC_STATUS_CODE_OK);
  rgrpc_call_free(call);
  rgrpc_channel_free(ch);
}

/* x-rgrpc-echo-all: every sent entry comes back as x-echo-<key>. */
static void test_echo_all(void) {
  static const uint8_t bin[] = {0, 1, 2, 0xfe, 0xff};
  rgrpc_channel *ch = tu_channel(NULL, NULL);
  rgrpc_call_options *o = rgrpc_call_options_new();
  CHECK_OK(rgrpc_call_options_add_metadata_string(o, "x-rgrpc-echo-all", "1"));
  CHECK_OK(rgrpc_call_options_add_metadata_string(o, "my-key", "value with spaces & symbols!~"));
  CHECK_OK(rgrpc_call_options_add_metadata_string(o, "dotted.key_under", "v2"));
  CHECK_OK(rgrpc_call_options_add_metadata(o, "my-data-bin", bin, sizeof bin));
  rgrpc_call *call = NULL;
  CHECK_OK(rgrpc_call_start(ch, M_UNARY, o, &call));
  rgrpc_call_options_free(o);
  tu_pb req = tu_simple_request(3, 0, 0, NULL);
  tu_send_pb(call, &req, RGRPC_SEND_LAST);
  tu_pb_free(&req);
  const rgrpc_metadata *md = NULL;
  CHECK_OK(rgrpc_call_initial_metadata(call, &md));
  check_md_value(md, "x-echo-my-key", "value with spaces & symbols!~", 29);
  check_md_value(md, "x-echo-dotted.key_under", "v2", 2);
  check_md_value(md, "x-echo-my-data-bin", bin, sizeof bin);
  check_md_value(md, "x-echo-x-rgrpc-echo-all", "1", 1);
  /* The library does not send reserved keys as custom metadata. */
  CHECK_RC(rgrpc_metadata_find(md, "x-echo-content-type", NULL, NULL), RGRPC_RESULT_NOT_FOUND);
  CHECK_RC(rgrpc_metadata_find(md, "x-echo-te", NULL, NULL), RGRPC_RESULT_NOT_FOUND);
  CHECK_EQ_INT(tu_recv_body_len(call), 3);
  CHECK_CODE(tu_finish_code(call), RGRPC_STATUS_CODE_OK);
  rgrpc_call_free(call);
  rgrpc_channel_free(ch);
}

/* Initial metadata of a call that ends Trailers-Only (no headers). */
static void test_initial_metadata_trailers_only(void) {
  rgrpc_channel *ch = tu_channel(NULL, NULL);
  rgrpc_call *call = NULL;
  CHECK_OK(rgrpc_call_start(ch, M_UNIMPLEMENTED, NULL, &call));
  CHECK_OK(rgrpc_call_send(call, NULL, 0, RGRPC_SEND_LAST));
  const rgrpc_metadata *md = NULL;
  CHECK_OK(rgrpc_call_initial_metadata(call, &md));
  CHECK(md != NULL);
  CHECK_EQ_INT(rgrpc_metadata_len(md), 0);
  CHECK_CODE(tu_finish_code(call), RGRPC_STATUS_CODE_UNIMPLEMENTED);
  rgrpc_call_free(call);
  rgrpc_channel_free(ch);
}

/* Makes a call with x-rgrpc-echo-request-headers and returns the reflected
 * header `key` in buf (false when the server did not reflect it). */
static bool reflected_header(rgrpc_channel *ch, const char *method, const char *key, char *buf,
                             size_t len) {
  rgrpc_call_options *o = tu_opts_md("x-rgrpc-echo-request-headers", "1");
  rgrpc_call *call = NULL;
  CHECK_OK(rgrpc_call_start(ch, method, o, &call));
  rgrpc_call_options_free(o);
  CHECK_OK(rgrpc_call_send(call, NULL, 0, RGRPC_SEND_LAST));
  const rgrpc_metadata *md = NULL;
  CHECK_OK(rgrpc_call_initial_metadata(call, &md));
  bool found = tu_md_string(md, key, buf, len);
  CHECK_CODE(tu_finish_code(call), RGRPC_STATUS_CODE_OK);
  rgrpc_call_free(call);
  return found;
}

static void test_user_agent(void) {
  char ua[512];
  rgrpc_channel *ch = tu_channel(NULL, NULL);
  CHECK_MSG(reflected_header(ch, M_EMPTY, "x-rgrpc-req-user-agent", ua, sizeof ua),
            "the server did not reflect user-agent");
  CHECK_MSG(strstr(ua, "grpc-c-rgrpc/") != NULL, "user-agent \"%s\"", ua);
  rgrpc_channel_free(ch);

  rgrpc_channel_options *opts = rgrpc_channel_options_new();
  CHECK_OK(rgrpc_channel_options_set_string(opts, "grpc.primary_user_agent", "myapp/1.2.3"));
  CHECK_OK(rgrpc_channel_options_set_string(opts, "grpc.secondary_user_agent", "suffix/9"));
  ch = tu_channel(NULL, opts);
  rgrpc_channel_options_free(opts);
  CHECK(reflected_header(ch, M_EMPTY, "x-rgrpc-req-user-agent", ua, sizeof ua));
  CHECK_MSG(strncmp(ua, "myapp/1.2.3 ", 12) == 0, "user-agent \"%s\" lacks the primary prefix", ua);
  CHECK_MSG(strstr(ua, "grpc-c-rgrpc/") != NULL, "user-agent \"%s\"", ua);
  CHECK_MSG(strstr(ua, "suffix/9") != NULL, "user-agent \"%s\" lacks the secondary part", ua);
  CHECK_MSG(strstr(ua, "grpc-c-rgrpc/") < strstr(ua, "suffix/9"), "user-agent \"%s\"", ua);

  /* user-agent as call metadata (grpcio's examples do this): accepted, and
   * sent in front of the channel's user agent, in one header. */
  rgrpc_call_options *o = tu_opts_md("x-rgrpc-echo-request-headers", "1");
  CHECK_OK(rgrpc_call_options_add_metadata_string(o, "user-agent", "my-client/1.0"));
  rgrpc_call *call = NULL;
  CHECK_OK(rgrpc_call_start(ch, M_EMPTY, o, &call));
  rgrpc_call_options_free(o);
  CHECK_OK(rgrpc_call_send(call, NULL, 0, RGRPC_SEND_LAST));
  const rgrpc_metadata *md = NULL;
  CHECK_OK(rgrpc_call_initial_metadata(call, &md));
  CHECK(tu_md_string(md, "x-rgrpc-req-user-agent", ua, sizeof ua));
  CHECK_MSG(strncmp(ua, "my-client/1.0 myapp/1.2.3 ", 26) == 0, "user-agent \"%s\"", ua);
  CHECK_CODE(tu_finish_code(call), RGRPC_STATUS_CODE_OK);
  rgrpc_call_free(call);
  rgrpc_channel_free(ch);
}

static void test_authority_and_path(void) {
  char buf[256];
  rgrpc_channel *ch = tu_channel(NULL, NULL);
  if (reflected_header(ch, M_EMPTY, "x-rgrpc-req-authority", buf, sizeof buf))
    CHECK_STR(buf, tu_target());
  else
    tu_note("the server does not reflect :authority; skipped");
  if (reflected_header(ch, M_UNARY, "x-rgrpc-req-path", buf, sizeof buf))
    CHECK_STR(buf, M_UNARY);
  else
    tu_note("the server does not reflect :path; skipped");
  rgrpc_channel_free(ch);

  rgrpc_channel_options *opts = rgrpc_channel_options_new();
  CHECK_OK(rgrpc_channel_options_set_string(opts, "grpc.default_authority", "override.test:4242"));
  ch = tu_channel(NULL, opts);
  rgrpc_channel_options_free(opts);
  if (reflected_header(ch, M_EMPTY, "x-rgrpc-req-authority", buf, sizeof buf))
    CHECK_STR(buf, "override.test:4242");
  else
    tu_note("the server does not reflect :authority; skipped");
  rgrpc_channel_free(ch);
}

/* Many and large metadata entries. */
static void test_many_entries(void) {
  rgrpc_channel *ch = tu_channel(NULL, NULL);
  rgrpc_call_options *o = rgrpc_call_options_new();
  char key[64], val[64];
  for (int i = 0; i < 50; i++) {
    snprintf(key, sizeof key, ECHO_INITIAL "-n%d", i);
    snprintf(val, sizeof val, "value-%d", i * i);
    CHECK_OK(rgrpc_call_options_add_metadata_string(o, key, val));
  }
  char *big = malloc(4001);
  CHECK(big != NULL);
  memset(big, 'z', 4000);
  big[4000] = '\0';
  CHECK_OK(rgrpc_call_options_add_metadata_string(o, ECHO_INITIAL "-big", big));
  rgrpc_call *call = NULL;
  CHECK_OK(rgrpc_call_start(ch, M_EMPTY, o, &call));
  rgrpc_call_options_free(o);
  CHECK_OK(rgrpc_call_send(call, NULL, 0, RGRPC_SEND_LAST));
  const rgrpc_metadata *md = NULL;
  CHECK_OK(rgrpc_call_initial_metadata(call, &md));
  for (int i = 0; i < 50; i++) {
    snprintf(key, sizeof key, ECHO_INITIAL "-n%d", i);
    snprintf(val, sizeof val, "value-%d", i * i);
    check_md_value(md, key, val, strlen(val));
  }
  check_md_value(md, ECHO_INITIAL "-big", big, 4000);
  free(big);
  CHECK_CODE(tu_finish_code(call), RGRPC_STATUS_CODE_OK);
  rgrpc_call_free(call);
  rgrpc_channel_free(ch);
}

int main(void) {
  RUN_TEST(test_custom_metadata_unary);
  RUN_TEST(test_custom_metadata_bidi);
  RUN_TEST(test_trailing_metadata_on_error);
  RUN_TEST(test_binary_values_all_bytes);
  RUN_TEST(test_repeated_keys_and_accessors);
  RUN_TEST(test_echo_all);
  RUN_TEST(test_initial_metadata_trailers_only);
  RUN_TEST(test_user_agent);
  RUN_TEST(test_authority_and_path);
  RUN_TEST(test_many_entries);
  return 0;
}

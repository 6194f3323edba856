/* API surface: version, names of codes, NULL handling of every exported
 * function, UTF-8 checks, targets, channel and call options, runtime settings. */
#include "test_util.h"

static void noop_done(void *ud, const rgrpc_status *st) {
  (void)ud;
  (void)st;
}
static void noop_msg(void *ud, const uint8_t *d, size_t n) {
  (void)ud;
  (void)d;
  (void)n;
}
static void noop_unary(void *ud, const rgrpc_status *st, const uint8_t *d, size_t n) {
  (void)ud;
  (void)st;
  (void)d;
  (void)n;
}

/* Runs before anything starts the runtime (see main). */
static void test_runtime_worker_threads_before_start(void) {
  CHECK_RC(rgrpc_runtime_set_worker_threads(1025), RGRPC_RESULT_INVALID_ARGUMENT);
  CHECK_OK(rgrpc_runtime_set_worker_threads(2));
  CHECK_OK(rgrpc_runtime_set_worker_threads(3)); /* may change until the runtime starts */
  CHECK_OK(rgrpc_runtime_set_worker_threads(0)); /* 0: caller-driven, the default */
}

static void test_runtime_worker_threads_after_start(void) {
  rgrpc_channel *ch = tu_channel(NULL, NULL);
  CHECK_CODE(tu_unary_size(ch, NULL, 1, NULL), RGRPC_STATUS_CODE_OK);
  CHECK_RC(rgrpc_runtime_set_worker_threads(2), RGRPC_RESULT_ALREADY_STARTED);
  CHECK_RC(rgrpc_runtime_set_worker_threads(0), RGRPC_RESULT_ALREADY_STARTED);
  rgrpc_channel_free(ch);
}

static void test_version(void) {
  const char *v = rgrpc_version();
  CHECK_NONEMPTY(v);
  CHECK_MSG(strncmp(v, "rgrpc/", 6) == 0, "version \"%s\"", v);
  char want[32];
  snprintf(want, sizeof want, "rgrpc/%d.%d.%d", RGRPC_VERSION_MAJOR, RGRPC_VERSION_MINOR,
           RGRPC_VERSION_PATCH);
  CHECK_MSG(strncmp(v, want, strlen(want)) == 0, "version \"%s\" does not start with \"%s\"", v,
            want);
  CHECK(rgrpc_version() == v || strcmp(rgrpc_version(), v) == 0);
  CHECK(RGRPC_AT_LEAST_VERSION(0, 1, 0));
}

static void test_result_names(void) {
  static const struct {
    uint32_t value;
    const char *name;
  } names[] = {
      {RGRPC_RESULT_OK, "RGRPC_RESULT_OK"},
      {RGRPC_RESULT_NULL_PARAMETER, "RGRPC_RESULT_NULL_PARAMETER"},
      {RGRPC_RESULT_INVALID_ARGUMENT, "RGRPC_RESULT_INVALID_ARGUMENT"},
      {RGRPC_RESULT_INVALID_UTF8, "RGRPC_RESULT_INVALID_UTF8"},
      {RGRPC_RESULT_INVALID_TARGET, "RGRPC_RESULT_INVALID_TARGET"},
      {RGRPC_RESULT_INVALID_METHOD, "RGRPC_RESULT_INVALID_METHOD"},
      {RGRPC_RESULT_INVALID_METADATA, "RGRPC_RESULT_INVALID_METADATA"},
      {RGRPC_RESULT_UNKNOWN_OPTION, "RGRPC_RESULT_UNKNOWN_OPTION"},
      {RGRPC_RESULT_INVALID_OPTION_VALUE, "RGRPC_RESULT_INVALID_OPTION_VALUE"},
      {RGRPC_RESULT_UNSUPPORTED, "RGRPC_RESULT_UNSUPPORTED"},
      {RGRPC_RESULT_CHANNEL_CLOSED, "RGRPC_RESULT_CHANNEL_CLOSED"},
      {RGRPC_RESULT_CALL_ENDED, "RGRPC_RESULT_CALL_ENDED"},
      {RGRPC_RESULT_END_OF_STREAM, "RGRPC_RESULT_END_OF_STREAM"},
      {RGRPC_RESULT_SEND_CLOSED, "RGRPC_RESULT_SEND_CLOSED"},
      {RGRPC_RESULT_BUSY, "RGRPC_RESULT_BUSY"},
      {RGRPC_RESULT_TIMEOUT, "RGRPC_RESULT_TIMEOUT"},
      {RGRPC_RESULT_RPC_FAILED, "RGRPC_RESULT_RPC_FAILED"},
      {RGRPC_RESULT_NOT_FOUND, "RGRPC_RESULT_NOT_FOUND"},
      {RGRPC_RESULT_ALREADY_STARTED, "RGRPC_RESULT_ALREADY_STARTED"},
      {RGRPC_RESULT_RUNTIME, "RGRPC_RESULT_RUNTIME"},
      {RGRPC_RESULT_PANIC, "RGRPC_RESULT_PANIC"},
      {RGRPC_RESULT_CANCELLED, "RGRPC_RESULT_CANCELLED"},
      {RGRPC_RESULT_SHUTDOWN, "RGRPC_RESULT_SHUTDOWN"},
      {RGRPC_RESULT_QUEUE_EMPTY, "RGRPC_RESULT_QUEUE_EMPTY"},
      {RGRPC_RESULT_QUEUE_SHUTDOWN, "RGRPC_RESULT_QUEUE_SHUTDOWN"},
  };
  size_t n = sizeof names / sizeof names[0];
  for (size_t i = 0; i < n; i++) {
    CHECK_STR(rgrpc_result_name(names[i].value), names[i].name);
    const char *s = rgrpc_result_str(names[i].value);
    CHECK_NONEMPTY(s);
    /* Descriptions are distinct. */
    for (size_t j = 0; j < i; j++)
      CHECK_MSG(strcmp(s, rgrpc_result_str(names[j].value)) != 0, "%s and %s share \"%s\"",
                names[i].name, names[j].name, s);
  }
  /* Every non-zero result is >= 7000, never a gRPC status code. */
  for (size_t i = 1; i < n; i++) CHECK(names[i].value >= 7000);
  static const uint32_t bad[] = {1, 2, 16, 6999, 7000, 7025, 8000, 0x7fffffffu, 0xffffffffu};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    CHECK_STR(rgrpc_result_name(bad[i]), "UNKNOWN");
    CHECK_NONEMPTY(rgrpc_result_str(bad[i]));
  }
}

static void test_status_code_names(void) {
  static const char *const names[] = {
      "OK",        "CANCELLED",          "UNKNOWN",  "INVALID_ARGUMENT", "DEADLINE_EXCEEDED",
      "NOT_FOUND", "ALREADY_EXISTS",     "PERMISSION_DENIED", "RESOURCE_EXHAUSTED",
      "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL",
      "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED",
  };
  CHECK_EQ_INT(sizeof names / sizeof names[0], 17);
  for (uint32_t c = 0; c <= 16; c++) CHECK_STR(rgrpc_status_code_name(c), names[c]);
  CHECK_EQ_INT(RGRPC_STATUS_CODE_UNAUTHENTICATED, 16);
  CHECK_EQ_INT(RGRPC_STATUS_CODE_DEADLINE_EXCEEDED, 4);
  static const uint32_t bad[] = {17, 100, 7001, 0xffffffffu};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    CHECK_STR(rgrpc_status_code_name(bad[i]), "UNKNOWN_CODE");
}

/* Every exported function with NULL handles / NULL required pointers. */
static void test_null_handling(void) {
  /* buffer */
  CHECK_EQ_INT(rgrpc_buffer_len(NULL), 0);
  (void)rgrpc_buffer_data(NULL); /* NULL or non-dereferenceable: must not crash */
  rgrpc_buffer_free(NULL);
  rgrpc_buffer *nb = NULL;
  uint8_t *nd = NULL;
  CHECK_RC(rgrpc_buffer_new(1, NULL, &nd), RGRPC_RESULT_NULL_PARAMETER);
  CHECK_RC(rgrpc_buffer_new(1, &nb, NULL), RGRPC_RESULT_NULL_PARAMETER);
  CHECK(nb == NULL && nd == NULL);
  if (sizeof(size_t) > 4) {
    /* Longer than a gRPC length prefix can say. */
    CHECK_RC(rgrpc_buffer_new((size_t)UINT32_MAX + 1, &nb, &nd), RGRPC_RESULT_INVALID_ARGUMENT);
    CHECK(nb == NULL && nd == NULL);
  }
  CHECK_OK(rgrpc_buffer_new(0, &nb, &nd));
  CHECK_EQ_INT(rgrpc_buffer_len(nb), 0);
  rgrpc_buffer_free(nb);

  /* call options */
  CHECK_RC(rgrpc_call_options_set_timeout_ms(NULL, 10), RGRPC_RESULT_NULL_PARAMETER);
  CHECK_RC(rgrpc_call_options_set_deadline_ms(NULL, 10), RGRPC_RESULT_NULL_PARAMETER);
  CHECK_RC(rgrpc_call_options_add_metadata(NULL, "k", (const uint8_t *)"v", 1),
           RGRPC_RESULT_NULL_PARAMETER);
  CHECK_RC(rgrpc_call_options_add_metadata_string(NULL, "k", "v"), RGRPC_RESULT_NULL_PARAMETER);
  CHECK_RC(rgrpc_call_options_set_wait_for_ready(NULL, true), RGRPC_RESULT_NULL_PARAMETER);
  CHECK_STR(rgrpc_call_options_last_error(NULL), "");
  rgrpc_call_options_free(NULL);
  rgrpc_call_options *co = rgrpc_call_options_new();
  CHECK(co != NULL);
  CHECK_STR(rgrpc_call_options_last_error(co), "");
  CHECK_RC(rgrpc_call_options_add_metadata(co, NULL, (const uint8_t *)"v", 1),
           RGRPC_RESULT_NULL_PARAMETER);
  CHECK_RC(rgrpc_call_options_add_metadata(co, "k", NULL, 1), RGRPC_RESULT_NULL_PARAMETER);
  CHECK_OK(rgrpc_call_options_add_metadata(co, "k", NULL, 0)); /* NULL allowed when empty */
  CHECK_RC(rgrpc_call_options_add_metadata_string(co, NULL, "v"), RGRPC_RESULT_NULL_PARAMETER);
  CHECK_RC(rgrpc_call_options_add_metadata_string(co, "k", NULL), RGRPC_RESULT_NULL_PARAMETER);
  CHECK_OK(rgrpc_call_options_set_wait_for_ready(co, false));
  CHECK_OK(rgrpc_call_options_set_timeout_ms(co, 5000));

  /* channel options */
  CHECK_RC(rgrpc_channel_options_set_int(NULL, "grpc.max_receive_message_length", 1),
           RGRPC_RESULT_NULL_PARAMETER);
  CHECK_RC(rgrpc_channel_options_set_string(NULL, "grpc.primary_user_agent", "x"),
           RGRPC_RESULT_NULL_PARAMETER);
  CHECK_STR(rgrpc_channel_options_last_error(NULL), "");
  rgrpc_channel_options_free(NULL);
  rgrpc_channel_options *cho = rgrpc_channel_options_new();
  CHECK(cho != NULL);
  CHECK_STR(rgrpc_channel_options_last_error(cho), "");
  CHECK_RC(rgrpc_channel_options_set_int(cho, NULL, 1), RGRPC_RESULT_NULL_PARAMETER);
  CHECK_RC(rgrpc_channel_options_set_string(cho, NULL, "x"), RGRPC_RESULT_NULL_PARAMETER);
  CHECK_RC(rgrpc_channel_options_set_string(cho, "grpc.primary_user_agent", NULL),
           RGRPC_RESULT_NULL_PARAMETER);
  rgrpc_channel_options_free(cho);

  /* credentials */
  rgrpc_channel_credentials_free(NULL);

  /* channel */
  rgrpc_channel *ch = NULL;
  rgrpc_error *err = NULL;
  CHECK_RC(rgrpc_channel_new(NULL, NULL, NULL, &ch, &err), RGRPC_RESULT_NULL_PARAMETER);
  CHECK(ch == NULL);
  if (err) { /* an error object is allowed for any failure; if given it must say so */
    CHECK_RC(rgrpc_error_result(err), RGRPC_RESULT_NULL_PARAMETER);
    rgrpc_error_free(err);
    err = NULL;
  }
  CHECK_RC(rgrpc_channel_new(NULL, NULL, NULL, &ch, NULL), RGRPC_RESULT_NULL_PARAMETER);
  CHECK_RC(rgrpc_channel_new("127.0.0.1:1", NULL, NULL, NULL, &err), RGRPC_RESULT_NULL_PARAMETER);
  rgrpc_error_free(err);
  err = NULL;
  CHECK_RC(rgrpc_channel_close(NULL), RGRPC_RESULT_NULL_PARAMETER);
  rgrpc_channel_free(NULL);
  char abuf[64];
  size_t alen = 0;
  CHECK_RC(rgrpc_channel_authority(NULL, abuf, sizeof abuf, &alen), RGRPC_RESULT_NULL_PARAMETER);

  ch = tu_channel(NULL, NULL);
  /* buf NULL with a length: the header does not say; it must not crash and,
   * if accepted, acts as a size query. */
  {
    rgrpc_result rc = rgrpc_channel_authority(ch, NULL, 10, &alen);
    CHECK_MSG(rc == RGRPC_RESULT_OK || rc == RGRPC_RESULT_NULL_PARAMETER, "%s",
              rgrpc_result_name(rc));
    if (rc == RGRPC_RESULT_OK) CHECK_EQ_INT(alen, strlen(tu_target()));
  }

  /* calls */
  rgrpc_call *call = NULL;
  CHECK_RC(rgrpc_call_start(NULL, M_UNARY, NULL, &call), RGRPC_RESULT_NULL_PARAMETER);
  CHECK_RC(rgrpc_call_start(ch, NULL, NULL, &call), RGRPC_RESULT_NULL_PARAMETER);
  CHECK_RC(rgrpc_call_start(ch, M_UNARY, NULL, NULL), RGRPC_RESULT_NULL_PARAMETER);
  CHECK(call == NULL);
  rgrpc_buffer *buf = NULL;
  const rgrpc_status *st = NULL;
  const rgrpc_metadata *md = NULL;
  CHECK_RC(rgrpc_call_send(NULL, (const uint8_t *)"", 0, 0), RGRPC_RESULT_NULL_PARAMETER);
  CHECK_RC(rgrpc_call_close_send(NULL), RGRPC_RESULT_NULL_PARAMETER);
  CHECK_RC(rgrpc_call_recv(NULL, &buf), RGRPC_RESULT_NULL_PARAMETER);
  CHECK_RC(rgrpc_call_finish(NULL, &st), RGRPC_RESULT_NULL_PARAMETER);
  CHECK_RC(rgrpc_call_initial_metadata(NULL, &md), RGRPC_RESULT_NULL_PARAMETER);
  CHECK(!rgrpc_call_is_active(NULL));
  CHECK_EQ_INT(rgrpc_call_time_remaining_ms(NULL), -1);
  CHECK_RC(rgrpc_call_cancel(NULL), RGRPC_RESULT_NULL_PARAMETER);
  CHECK_RC(rgrpc_call_wait(NULL, 0), RGRPC_RESULT_NULL_PARAMETER);
  CHECK_RC(rgrpc_call_on_done(NULL, noop_done, NULL), RGRPC_RESULT_NULL_PARAMETER);
  CHECK_RC(rgrpc_call_on_message(NULL, noop_msg, NULL), RGRPC_RESULT_NULL_PARAMETER);
  rgrpc_call_free(NULL);
  CHECK(buf == NULL && st == NULL && md == NULL);

  /* NULL pointers on a live call (a server-streaming call, nothing sent yet). */
  CHECK_OK(rgrpc_call_start(ch, M_SERVER_STREAM, co, &call));
  CHECK(call != NULL);
  CHECK_RC(rgrpc_call_send(call, NULL, 5, 0), RGRPC_RESULT_NULL_PARAMETER);
  CHECK_RC(rgrpc_call_send(call, (const uint8_t *)"", 0, 0x80), RGRPC_RESULT_INVALID_ARGUMENT);
  CHECK_RC(rgrpc_call_send(call, (const uint8_t *)"", 0, 8), RGRPC_RESULT_INVALID_ARGUMENT);
  CHECK_RC(rgrpc_call_recv(call, NULL), RGRPC_RESULT_NULL_PARAMETER);
  CHECK_RC(rgrpc_call_initial_metadata(call, NULL), RGRPC_RESULT_NULL_PARAMETER);
  CHECK_RC(rgrpc_call_on_done(call, NULL, NULL), RGRPC_RESULT_NULL_PARAMETER);
  CHECK_RC(rgrpc_call_on_message(call, NULL, NULL), RGRPC_RESULT_NULL_PARAMETER);
  /* The call still works after all that: one empty response list. */
  CHECK_OK(rgrpc_call_send(call, NULL, 0, RGRPC_SEND_LAST));
  CHECK_RC(rgrpc_call_recv(call, &buf), RGRPC_RESULT_END_OF_STREAM);
  CHECK(buf == NULL);
  CHECK_OK(rgrpc_call_finish(call, NULL)); /* status_out may be NULL */
  CHECK_CODE(tu_finish_code(call), RGRPC_STATUS_CODE_OK);
  rgrpc_call_free(call);
  call = NULL;

  /* unary */
  CHECK_RC(rgrpc_call_unary(NULL, M_UNARY, NULL, NULL, 0, &buf, &st), RGRPC_RESULT_NULL_PARAMETER);
  CHECK_RC(rgrpc_call_unary(ch, NULL, NULL, NULL, 0, &buf, &st), RGRPC_RESULT_NULL_PARAMETER);
  CHECK_RC(rgrpc_call_unary(ch, M_UNARY, NULL, NULL, 0, NULL, &st), RGRPC_RESULT_NULL_PARAMETER);
  CHECK_RC(rgrpc_call_unary(ch, M_UNARY, NULL, NULL, 3, &buf, &st), RGRPC_RESULT_NULL_PARAMETER);
  CHECK(buf == NULL && st == NULL);
  /* status_out NULL is allowed. */
  CHECK_OK(rgrpc_call_unary(ch, M_EMPTY, NULL, NULL, 0, &buf, NULL));
  CHECK(buf != NULL);
  CHECK_EQ_INT(rgrpc_buffer_len(buf), 0);
  rgrpc_buffer_free(buf);
  buf = NULL;

  CHECK_RC(rgrpc_call_unary_async(NULL, M_UNARY, NULL, NULL, 0, noop_unary, NULL, &call),
           RGRPC_RESULT_NULL_PARAMETER);
  CHECK_RC(rgrpc_call_unary_async(ch, NULL, NULL, NULL, 0, noop_unary, NULL, &call),
           RGRPC_RESULT_NULL_PARAMETER);
  CHECK_RC(rgrpc_call_unary_async(ch, M_UNARY, NULL, NULL, 3, noop_unary, NULL, &call),
           RGRPC_RESULT_NULL_PARAMETER);
  CHECK(call == NULL);
  /* cb NULL with a call handle: allowed. */
  CHECK_OK(rgrpc_call_unary_async(ch, M_EMPTY, NULL, NULL, 0, NULL, NULL, &call));
  CHECK(call != NULL);
  CHECK_OK(rgrpc_call_wait(call, 30000));
  CHECK_CODE(tu_finish_code(call), RGRPC_STATUS_CODE_OK);
  rgrpc_call_free(call);
  call = NULL;

  /* error */
  CHECK_RC(rgrpc_error_result(NULL), RGRPC_RESULT_NULL_PARAMETER);
  CHECK_STR(rgrpc_error_message(NULL), "");
  rgrpc_error_free(NULL);

  /* metadata */
  const uint8_t *v = NULL;
  size_t vl = 0;
  const char *k = NULL;
  CHECK_EQ_INT(rgrpc_metadata_len(NULL), 0);
  CHECK_RC(rgrpc_metadata_get(NULL, 0, &k, &v, &vl), RGRPC_RESULT_NULL_PARAMETER);
  CHECK_RC(rgrpc_metadata_find(NULL, "k", &v, &vl), RGRPC_RESULT_NULL_PARAMETER);

  /* status */
  CHECK_CODE(rgrpc_status_get_code(NULL), RGRPC_STATUS_CODE_UNKNOWN);
  CHECK_STR(rgrpc_status_details(NULL), "");
  CHECK(rgrpc_status_trailing_metadata(NULL) == NULL);
  rgrpc_status_free(NULL);

  /* metadata_find with a NULL key, on a real (possibly empty) metadata. */
  CHECK_OK(rgrpc_call_unary(ch, M_EMPTY, NULL, NULL, 0, &buf, &st));
  md = rgrpc_status_trailing_metadata(st);
  CHECK(md != NULL);
  CHECK_RC(rgrpc_metadata_find(md, NULL, &v, &vl), RGRPC_RESULT_NULL_PARAMETER);
  CHECK_RC(rgrpc_metadata_find(md, "\xff\xfe", &v, &vl), RGRPC_RESULT_INVALID_UTF8);
  CHECK_RC(rgrpc_metadata_find(md, "x-not-there", &v, &vl), RGRPC_RESULT_NOT_FOUND);
  CHECK(v == NULL && vl == 0);
  size_t n = rgrpc_metadata_len(md);
  CHECK_RC(rgrpc_metadata_get(md, n, &k, &v, &vl), RGRPC_RESULT_NOT_FOUND);
  CHECK(k == NULL && v == NULL && vl == 0);
  rgrpc_buffer_free(buf);
  rgrpc_status_free(st);
  buf = NULL;
  st = NULL;

  /* time */
  int64_t t1 = rgrpc_now_ms();
  int64_t t2 = rgrpc_now_ms();
  CHECK(t1 > 0 && t2 >= t1);

  rgrpc_call_options_free(co);
  rgrpc_channel_free(ch);
}

static void test_invalid_utf8(void) {
  rgrpc_channel *ch = NULL;
  rgrpc_error *err = NULL;
  CHECK_RC(rgrpc_channel_new("127.0.0.1\xff:1", NULL, NULL, &ch, &err), RGRPC_RESULT_INVALID_UTF8);
  CHECK(ch == NULL);
  CHECK(err != NULL);
  CHECK_RC(rgrpc_error_result(err), RGRPC_RESULT_INVALID_UTF8);
  CHECK_NONEMPTY(rgrpc_error_message(err));
  rgrpc_error_free(err);
  err = NULL;

  ch = tu_channel(NULL, NULL);
  rgrpc_call *call = NULL;
  const char *bad_method = "/grpc.testing.TestService/Unary\xc3\x28";
  CHECK_RC(rgrpc_call_start(ch, bad_method, NULL, &call), RGRPC_RESULT_INVALID_UTF8);
  CHECK(call == NULL);
  rgrpc_buffer *buf = NULL;
  const rgrpc_status *st = NULL;
  CHECK_RC(rgrpc_call_unary(ch, bad_method, NULL, NULL, 0, &buf, &st), RGRPC_RESULT_INVALID_UTF8);
  CHECK(buf == NULL && st == NULL);
  CHECK_RC(rgrpc_call_unary_async(ch, bad_method, NULL, NULL, 0, noop_unary, NULL, &call),
           RGRPC_RESULT_INVALID_UTF8);
  CHECK(call == NULL);

  rgrpc_call_options *co = rgrpc_call_options_new();
  CHECK_RC(rgrpc_call_options_add_metadata_string(co, "key\x80", "v"), RGRPC_RESULT_INVALID_UTF8);
  CHECK_RC(rgrpc_call_options_add_metadata(co, "\xe2\x82", (const uint8_t *)"v", 1),
           RGRPC_RESULT_INVALID_UTF8);
  rgrpc_call_options_free(co);

  rgrpc_channel_options *o = rgrpc_channel_options_new();
  CHECK_RC(rgrpc_channel_options_set_int(o, "grpc.max_receive\xff", 1), RGRPC_RESULT_INVALID_UTF8);
  CHECK_NONEMPTY(rgrpc_channel_options_last_error(o));
  CHECK_RC(rgrpc_channel_options_set_string(o, "grpc.primary_user_agent", "ua\xc0"),
           RGRPC_RESULT_INVALID_UTF8);
  CHECK_NONEMPTY(rgrpc_channel_options_last_error(o));
  rgrpc_channel_options_free(o);
  rgrpc_channel_free(ch);
}

static void test_targets_valid(void) {
  static const struct {
    const char *target;
    const char *authority;
  } ok[] = {
      {"localhost:50051", "localhost:50051"},
      {"127.0.0.1:1", "127.0.0.1:1"},
      {"example.com", "example.com:443"},
      {"dns:///localhost:50051", "localhost:50051"},
      {"dns:localhost:7", "localhost:7"},
      {"ipv4:127.0.0.1:50051", "127.0.0.1:50051"},
      {"ipv4:127.0.0.1:1,127.0.0.2:2", "127.0.0.1:1"},
      {"ipv6:[::1]:50051", "[::1]:50051"},
      {"ipv6:[::1]:1,[::2]:2", "[::1]:1"},
      {"[::1]:9", "[::1]:9"},
      {"unix:/tmp/rgrpc-test.sock", NULL},
      {"unix:///tmp/rgrpc-test.sock", NULL},
      {"unix:relative.sock", NULL},
  };
  for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
    rgrpc_channel *ch = NULL;
    rgrpc_error *err = NULL;
    rgrpc_result rc = rgrpc_channel_new(ok[i].target, NULL, NULL, &ch, &err);
    CHECK_MSG(rc == RGRPC_RESULT_OK, "target \"%s\": %s %s", ok[i].target, rgrpc_result_name(rc),
              rgrpc_error_message(err));
    CHECK(err == NULL);
    CHECK(ch != NULL);
    char buf[128];
    size_t len = 0;
    CHECK_OK(rgrpc_channel_authority(ch, buf, sizeof buf, &len));
    CHECK_EQ_INT(len, strlen(buf));
    if (ok[i].authority) CHECK_STR(buf, ok[i].authority);
    else CHECK_NONEMPTY(buf);
    rgrpc_channel_free(ch);
  }

  /* Credentials: insecure, freed right after the channel is made. */
  const rgrpc_channel_credentials *creds = rgrpc_channel_credentials_insecure();
  CHECK(creds != NULL);
  rgrpc_channel *ch = NULL;
  CHECK_OK(rgrpc_channel_new(tu_target(), creds, NULL, &ch, NULL));
  rgrpc_channel_credentials_free(creds);
  CHECK_CODE(tu_unary_size(ch, NULL, 3, NULL), RGRPC_STATUS_CODE_OK);
  rgrpc_channel_free(ch);
}

static void test_channel_authority_truncation(void) {
  rgrpc_channel *ch = tu_channel("localhost:50051", NULL);
  char buf[8];
  memset(buf, 'X', sizeof buf);
  size_t len = 0;
  CHECK_OK(rgrpc_channel_authority(ch, buf, 4, &len));
  CHECK_EQ_INT(len, strlen("localhost:50051"));
  CHECK_STR(buf, "loc");
  CHECK(buf[4] == 'X'); /* nothing written past buf_len */
  len = 0;
  CHECK_OK(rgrpc_channel_authority(ch, NULL, 0, &len)); /* size query */
  CHECK_EQ_INT(len, 15);
  CHECK_OK(rgrpc_channel_authority(ch, buf, sizeof buf, NULL));
  CHECK_STR(buf, "localho");
  rgrpc_channel_free(ch);

  rgrpc_channel_options *o = rgrpc_channel_options_new();
  CHECK_OK(rgrpc_channel_options_set_string(o, "grpc.default_authority", "foo.test:1234"));
  ch = tu_channel("127.0.0.1:1", o);
  rgrpc_channel_options_free(o);
  char big[64];
  CHECK_OK(rgrpc_channel_authority(ch, big, sizeof big, NULL));
  CHECK_STR(big, "foo.test:1234");
  rgrpc_channel_free(ch);
}

static void test_targets_invalid(void) {
  static const char *const bad[] = {
      "",           " ",         "host:",           "host:99999",   "host:abc",
      "host:-1",    ":80",       "a:b:c",           "[::1",         "[::1]x",
      "[]:80",      "http://x:1", "dns://dnsserver/x:1", "ipv4:",   "ipv4:::1:5",
      "ipv4:1.2.3.4:5,", "ipv4:not-an-ip:5", "ipv6:127.0.0.1:5", "unix:", "unix://relative",
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    rgrpc_channel *sentinel = (rgrpc_channel *)(void *)&bad;
    rgrpc_channel *ch = sentinel;
    rgrpc_error *err = NULL;
    rgrpc_result rc = rgrpc_channel_new(bad[i], NULL, NULL, &ch, &err);
    CHECK_MSG(rc == RGRPC_RESULT_INVALID_TARGET, "target \"%s\": got %s", bad[i],
              rgrpc_result_name(rc));
    CHECK_MSG(ch == sentinel, "channel_out written for bad target \"%s\"", bad[i]);
    CHECK_MSG(err != NULL, "no error object for bad target \"%s\"", bad[i]);
    CHECK_RC(rgrpc_error_result(err), RGRPC_RESULT_INVALID_TARGET);
    CHECK_NONEMPTY(rgrpc_error_message(err));
    rgrpc_error_free(err);
    /* error_out NULL is fine too. */
    CHECK_RC(rgrpc_channel_new(bad[i], NULL, NULL, &ch, NULL), RGRPC_RESULT_INVALID_TARGET);
    CHECK(ch == sentinel);
  }
}

static void expect_option(rgrpc_result got, rgrpc_result want, const rgrpc_channel_options *o,
                          const char *what) {
  CHECK_MSG(got == want, "%s: got %s, want %s (%s)", what, rgrpc_result_name(got),
            rgrpc_result_name(want), rgrpc_channel_options_last_error(o));
  if (want != RGRPC_RESULT_OK) {
    const char *e = rgrpc_channel_options_last_error(o);
    CHECK_MSG(e != NULL && e[0] != '\0', "%s: empty last_error", what);
  }
}

static void test_channel_options(void) {
  rgrpc_channel_options *o = rgrpc_channel_options_new();
  CHECK(o != NULL);
#define OPT_INT(key, val, want) expect_option(rgrpc_channel_options_set_int(o, key, val), want, o, key " = " #val)
#define OPT_STR(key, val, want) expect_option(rgrpc_channel_options_set_string(o, key, val), want, o, key " = " #val)
  OPT_INT("grpc.max_receive_message_length", 1000, RGRPC_RESULT_OK);
  OPT_INT("grpc.max_receive_message_length", -1, RGRPC_RESULT_OK);
  OPT_INT("grpc.max_receive_message_length", 0, RGRPC_RESULT_OK);
  OPT_INT("grpc.max_send_message_length", 1 << 20, RGRPC_RESULT_OK);
  OPT_INT("grpc.max_send_message_length", -1, RGRPC_RESULT_OK);
  OPT_STR("grpc.primary_user_agent", "myapp/1.0", RGRPC_RESULT_OK);
  OPT_STR("grpc.secondary_user_agent", "extra/2.0", RGRPC_RESULT_OK);
  OPT_STR("grpc.default_authority", "foo.test:443", RGRPC_RESULT_OK);

  OPT_INT("grpc.no_such_option", 1, RGRPC_RESULT_UNKNOWN_OPTION);
  OPT_STR("grpc.no_such_option", "x", RGRPC_RESULT_UNKNOWN_OPTION);
  OPT_INT("bogus", 1, RGRPC_RESULT_UNKNOWN_OPTION);
  OPT_INT("", 1, RGRPC_RESULT_UNKNOWN_OPTION);

  OPT_STR("grpc.max_receive_message_length", "1000", RGRPC_RESULT_INVALID_OPTION_VALUE);
  OPT_STR("grpc.max_send_message_length", "1000", RGRPC_RESULT_INVALID_OPTION_VALUE);
  OPT_INT("grpc.primary_user_agent", 1, RGRPC_RESULT_INVALID_OPTION_VALUE);
  OPT_INT("grpc.default_authority", 1, RGRPC_RESULT_INVALID_OPTION_VALUE);
  OPT_INT("grpc.max_receive_message_length", -2, RGRPC_RESULT_INVALID_OPTION_VALUE);
  OPT_INT("grpc.max_send_message_length", INT64_MIN, RGRPC_RESULT_INVALID_OPTION_VALUE);
  OPT_STR("grpc.default_authority", "", RGRPC_RESULT_INVALID_OPTION_VALUE);
  OPT_STR("grpc.primary_user_agent", "bad\nagent", RGRPC_RESULT_INVALID_OPTION_VALUE);

  OPT_INT("grpc.keepalive_time_ms", 10000, RGRPC_RESULT_OK);
  OPT_STR("grpc.keepalive_time_ms", "10", RGRPC_RESULT_INVALID_OPTION_VALUE);
  OPT_INT("grpc.lb_policy_name", 1, RGRPC_RESULT_INVALID_OPTION_VALUE);
  OPT_STR("grpc.lb_policy_name", "round_robin", RGRPC_RESULT_OK);
  OPT_STR("grpc.lb_policy_name", "grpclb", RGRPC_RESULT_INVALID_OPTION_VALUE);
  OPT_STR("grpc.service_config", "{}", RGRPC_RESULT_OK);
  OPT_STR("grpc.service_config", "{\"methodConfig\": 5}", RGRPC_RESULT_INVALID_OPTION_VALUE);
  OPT_INT("grpc.dns_min_time_between_resolutions_ms", 1000, RGRPC_RESULT_OK);
  OPT_INT("grpc.enable_retries", 0, RGRPC_RESULT_OK);
  OPT_INT("grpc.enable_retries", 1, RGRPC_RESULT_OK);
  OPT_INT("grpc.per_rpc_retry_buffer_size", 65536, RGRPC_RESULT_OK);
  OPT_INT("grpc.http2.bdp_probe", 1, RGRPC_RESULT_UNSUPPORTED);
  OPT_INT("grpc.http2.max_frame_size", 262144, RGRPC_RESULT_OK);
  OPT_INT("grpc.http2.max_frame_size", 16383, RGRPC_RESULT_INVALID_OPTION_VALUE);
  OPT_INT("grpc.http2.max_frame_size", 1 << 24, RGRPC_RESULT_INVALID_OPTION_VALUE);
#undef OPT_INT
#undef OPT_STR

  /* A failed setter leaves the earlier settings usable: make a channel. */
  rgrpc_channel *ch = tu_channel(NULL, o);
  rgrpc_channel_options_free(o); /* copied by channel_new */
  char buf[64];
  CHECK_OK(rgrpc_channel_authority(ch, buf, sizeof buf, NULL));
  CHECK_STR(buf, "foo.test:443");
  rgrpc_channel_free(ch);
}

static void expect_md(rgrpc_call_options *o, const char *key, const void *val, size_t len,
                      rgrpc_result want) {
  rgrpc_result rc = rgrpc_call_options_add_metadata(o, key, (const uint8_t *)val, len);
  CHECK_MSG(rc == want, "metadata key \"%s\" (value %zu bytes): got %s, want %s (%s)", key, len,
            rgrpc_result_name(rc), rgrpc_result_name(want), rgrpc_call_options_last_error(o));
  if (want != RGRPC_RESULT_OK)
    CHECK_MSG(rgrpc_call_options_last_error(o)[0] != '\0', "empty last_error for key \"%s\"", key);
}

static void test_call_options(void) {
  rgrpc_call_options *o = rgrpc_call_options_new();
  CHECK(o != NULL);
  expect_md(o, "x-good", "value", 5, RGRPC_RESULT_OK);
  static const char printable[] = "printable !\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~";
  expect_md(o, "x-good.key_0-9", printable, strlen(printable), RGRPC_RESULT_OK);
  expect_md(o, "x-empty", "", 0, RGRPC_RESULT_OK);

  /* bad keys */
  expect_md(o, "X-Upper", "v", 1, RGRPC_RESULT_INVALID_METADATA);
  expect_md(o, "grpc-foo", "v", 1, RGRPC_RESULT_INVALID_METADATA);
  expect_md(o, "grpc-timeout", "1S", 2, RGRPC_RESULT_INVALID_METADATA);
  expect_md(o, "", "v", 1, RGRPC_RESULT_INVALID_METADATA);
  expect_md(o, "has space", "v", 1, RGRPC_RESULT_INVALID_METADATA);
  expect_md(o, "colon:key", "v", 1, RGRPC_RESULT_INVALID_METADATA);
  expect_md(o, ":path", "/x", 2, RGRPC_RESULT_INVALID_METADATA);

  /* bad ASCII values */
  expect_md(o, "x-nl", "a\nb", 3, RGRPC_RESULT_INVALID_METADATA);
  expect_md(o, "x-cr", "a\rb", 3, RGRPC_RESULT_INVALID_METADATA);
  expect_md(o, "x-high", "a\x80" "b", 3, RGRPC_RESULT_INVALID_METADATA);
  expect_md(o, "x-nul", "a\0b", 3, RGRPC_RESULT_INVALID_METADATA);
  expect_md(o, "x-del", "a\x7f", 2, RGRPC_RESULT_INVALID_METADATA);
  CHECK_RC(rgrpc_call_options_add_metadata_string(o, "x-tab", "a\tb"), RGRPC_RESULT_INVALID_METADATA);
  CHECK_NONEMPTY(rgrpc_call_options_last_error(o));

  /* -bin: arbitrary bytes are fine, but the key rules still hold. */
  static const uint8_t bytes[] = {0x00, 0xff, '\n', 0x80, '\r', 0x7f, ' ', 0x01};
  expect_md(o, "x-data-bin", bytes, sizeof bytes, RGRPC_RESULT_OK);
  expect_md(o, "x-data-bin", NULL, 0, RGRPC_RESULT_OK);
  expect_md(o, "X-Data-Bin", bytes, sizeof bytes, RGRPC_RESULT_INVALID_METADATA);
  expect_md(o, "grpc-x-bin", bytes, sizeof bytes, RGRPC_RESULT_INVALID_METADATA);

  /* timeouts / deadlines */
  CHECK_RC(rgrpc_call_options_set_timeout_ms(o, -1), RGRPC_RESULT_INVALID_ARGUMENT);
  CHECK_RC(rgrpc_call_options_set_timeout_ms(o, INT64_MIN), RGRPC_RESULT_INVALID_ARGUMENT);
  CHECK_OK(rgrpc_call_options_set_timeout_ms(o, 0));
  CHECK_OK(rgrpc_call_options_set_timeout_ms(o, 30000));
  CHECK_OK(rgrpc_call_options_set_deadline_ms(o, rgrpc_now_ms() + 60000));
  CHECK_OK(rgrpc_call_options_set_wait_for_ready(o, true));

  /* The options (with their accepted metadata) still make a good call. */
  rgrpc_channel *ch = tu_channel(NULL, NULL);
  CHECK_CODE(tu_unary_size(ch, o, 7, NULL), RGRPC_STATUS_CODE_OK);
  rgrpc_channel_free(ch);
  rgrpc_call_options_free(o);
}

static void test_invalid_method(void) {
  static const char *const bad[] = {
      "noslash", "/with space/x", "", "/", "relative/Method", "/pkg.Svc/Meth\x01od", "/tab\t/x",
  };
  rgrpc_channel *ch = tu_channel(NULL, NULL);
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    rgrpc_call *call = NULL;
    rgrpc_result rc = rgrpc_call_start(ch, bad[i], NULL, &call);
    CHECK_MSG(rc == RGRPC_RESULT_INVALID_METHOD, "call_start(\"%s\"): %s", bad[i],
              rgrpc_result_name(rc));
    CHECK(call == NULL);
    rgrpc_buffer *buf = NULL;
    const rgrpc_status *st = NULL;
    rc = rgrpc_call_unary(ch, bad[i], NULL, NULL, 0, &buf, &st);
    CHECK_MSG(rc == RGRPC_RESULT_INVALID_METHOD, "call_unary(\"%s\"): %s", bad[i],
              rgrpc_result_name(rc));
    CHECK(buf == NULL && st == NULL);
    rc = rgrpc_call_unary_async(ch, bad[i], NULL, NULL, 0, noop_unary, NULL, &call);
    CHECK_MSG(rc == RGRPC_RESULT_INVALID_METHOD, "call_unary_async(\"%s\"): %s", bad[i],
              rgrpc_result_name(rc));
    CHECK(call == NULL);
  }
  rgrpc_channel_free(ch);
}

/* The library lists the option keys it knows; each is taken by the setter
 * of its type (or refused as unsupported when its feature is not built). */
static void test_known_option_keys(void) {
  int n = 0, supported_n = 0;
  for (size_t i = 0;; i++) {
    const char *name = NULL;
    rgrpc_option_type type = (rgrpc_option_type)99;
    bool supported = false;
    rgrpc_result rc = rgrpc_channel_options_known_key(i, &name, &type, &supported);
    if (rc == RGRPC_RESULT_NOT_FOUND) break;
    CHECK_OK(rc);
    CHECK_MSG(name != NULL && strncmp(name, "grpc.", 5) == 0, "key %zu: %s", i, name);
    for (size_t j = 0; j < i; j++) {
      const char *other = NULL;
      CHECK_OK(rgrpc_channel_options_known_key(j, &other, NULL, NULL));
      CHECK_MSG(strcmp(other, name) != 0, "%s listed twice", name);
    }
    rgrpc_channel_options *o = rgrpc_channel_options_new();
    rgrpc_result set = type == RGRPC_OPTION_TYPE_INT
                           ? rgrpc_channel_options_set_int(o, name, 1000)
                           : rgrpc_channel_options_set_string(o, name, "foo.test");
    CHECK_MSG(type == RGRPC_OPTION_TYPE_INT || type == RGRPC_OPTION_TYPE_STRING, "%s: type %u",
              name, (unsigned)type);
    if (supported)
      CHECK_MSG(set == RGRPC_RESULT_OK || set == RGRPC_RESULT_INVALID_OPTION_VALUE, "%s: %s (%s)",
                name, rgrpc_result_name(set), rgrpc_channel_options_last_error(o));
    else
      CHECK_MSG(set == RGRPC_RESULT_UNSUPPORTED, "%s: %s", name, rgrpc_result_name(set));
    rgrpc_channel_options_free(o);
    n++;
    supported_n += supported;
  }
  CHECK_MSG(n >= 20 && supported_n >= 15, "%d keys, %d supported", n, supported_n);
  /* Out-parameters may be NULL. */
  CHECK_OK(rgrpc_channel_options_known_key(0, NULL, NULL, NULL));
}

int main(void) {
  /* Must come before any call starts the runtime. */
  RUN_TEST(test_runtime_worker_threads_before_start);
  RUN_TEST(test_version);
  RUN_TEST(test_result_names);
  RUN_TEST(test_status_code_names);
  RUN_TEST(test_invalid_utf8);
  RUN_TEST(test_targets_valid);
  RUN_TEST(test_targets_invalid);
  RUN_TEST(test_channel_authority_truncation);
  RUN_TEST(test_channel_options);
  RUN_TEST(test_known_option_keys);
  RUN_TEST(test_call_options);
  RUN_TEST(test_invalid_method);
  RUN_TEST(test_null_handling);
  RUN_TEST(test_runtime_worker_threads_after_start);
  return 0;
}

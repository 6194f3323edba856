#include "test_util.h"

#include <errno.h>
#include <stdarg.h>
#include <time.h>

/* ------------------------------------------------------------------ checks */

void tu_fail(const char *file, int line, const char *expr, const char *fmt, ...) {
  fprintf(stderr, "%s:%d: CHECK FAILED: %s", file, line, expr);
  if (fmt) {
    va_list ap;
    va_start(ap, fmt);
    fputs(": ", stderr);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
  }
  fputc('\n', stderr);
  fflush(stderr);
  exit(1);
}

void tu_note(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("  note: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  fflush(stderr);
}

void tu_run(const char *name, void (*fn)(void)) {
  int64_t t0 = tu_now_ms();
  printf("[ RUN  ] %s\n", name);
  fflush(stdout);
  fn();
  printf("[   OK ] %s (%lld ms)\n", name, (long long)(tu_now_ms() - t0));
  fflush(stdout);
}

/* ------------------------------------------------------------------ server */

const char *tu_target(void) {
  const char *t = getenv("RGRPC_TEST_TARGET");
  if (t == NULL || t[0] == '\0') {
    fprintf(stderr, "RGRPC_TEST_TARGET is not set: run this test through with_server.py\n");
    exit(1);
  }
  return t;
}

long tu_server_pid(void) {
  const char *p = getenv("RGRPC_TEST_SERVER_PID");
  return p ? strtol(p, NULL, 10) : 0;
}

rgrpc_channel *tu_channel(const char *target, const rgrpc_channel_options *opts) {
  rgrpc_channel *ch = NULL;
  rgrpc_error *err = NULL;
  if (target == NULL) target = tu_target();
  rgrpc_result rc = rgrpc_channel_new(target, NULL, opts, &ch, &err);
  CHECK_MSG(rc == RGRPC_RESULT_OK, "rgrpc_channel_new(%s): %s: %s", target, rgrpc_result_name(rc),
            rgrpc_error_message(err));
  CHECK(err == NULL);
  CHECK(ch != NULL);
  return ch;
}

/* -------------------------------------------------------------- protobuf */

void tu_pb_free(tu_pb *pb) {
  free(pb->data);
  pb->data = NULL;
  pb->len = pb->cap = 0;
}

static void pb_reserve(tu_pb *pb, size_t extra) {
  if (pb->len + extra <= pb->cap) return;
  size_t cap = pb->cap ? pb->cap : 64;
  while (cap < pb->len + extra) cap *= 2;
  uint8_t *p = realloc(pb->data, cap);
  CHECK(p != NULL);
  pb->data = p;
  pb->cap = cap;
}

void tu_pb_raw(tu_pb *pb, const void *data, size_t len) {
  if (len == 0) return;
  pb_reserve(pb, len);
  memcpy(pb->data + pb->len, data, len);
  pb->len += len;
}

void tu_pb_varint(tu_pb *pb, uint64_t v) {
  uint8_t b[10];
  size_t n = 0;
  do {
    b[n] = (uint8_t)(v & 0x7f);
    v >>= 7;
    if (v) b[n] |= 0x80;
    n++;
  } while (v);
  tu_pb_raw(pb, b, n);
}

void tu_pb_field_varint(tu_pb *pb, uint32_t field, uint64_t v) {
  tu_pb_varint(pb, ((uint64_t)field << 3) | 0);
  tu_pb_varint(pb, v);
}

void tu_pb_field_bytes(tu_pb *pb, uint32_t field, const void *data, size_t len) {
  tu_pb_varint(pb, ((uint64_t)field << 3) | 2);
  tu_pb_varint(pb, len);
  tu_pb_raw(pb, data, len);
}

void tu_pb_field_zeros(tu_pb *pb, uint32_t field, size_t len) {
  tu_pb_varint(pb, ((uint64_t)field << 3) | 2);
  tu_pb_varint(pb, len);
  pb_reserve(pb, len);
  if (len) memset(pb->data + pb->len, 0, len);
  pb->len += len;
}

void tu_pb_field_msg(tu_pb *pb, uint32_t field, const tu_pb *msg) {
  tu_pb_field_bytes(pb, field, msg->data, msg->len);
}

/* Payload{type: COMPRESSABLE (0, omitted), body: n zeros} as field `field`. */
static void pb_payload(tu_pb *pb, uint32_t field, size_t n) {
  tu_pb payload = TU_PB_INIT;
  tu_pb_field_zeros(&payload, 2, n);
  tu_pb_field_msg(pb, field, &payload);
  tu_pb_free(&payload);
}

/* EchoStatus{code, message} as field 7. */
static void pb_echo_status(tu_pb *pb, int32_t code, const char *message) {
  tu_pb st = TU_PB_INIT;
  tu_pb_field_varint(&st, 1, (uint64_t)(int64_t)code);
  if (message) tu_pb_field_bytes(&st, 2, message, strlen(message));
  tu_pb_field_msg(pb, 7, &st);
  tu_pb_free(&st);
}

tu_pb tu_simple_request(int32_t response_size, size_t payload_size, int32_t status_code,
                        const char *status_message) {
  tu_pb pb = TU_PB_INIT;
  if (response_size) tu_pb_field_varint(&pb, 2, (uint64_t)(int64_t)response_size);
  if (payload_size) pb_payload(&pb, 3, payload_size);
  if (status_code) pb_echo_status(&pb, status_code, status_message);
  return pb;
}

tu_pb tu_streaming_output_request(const int32_t *sizes, const int32_t *intervals_us, size_t n,
                                  size_t payload_size, int32_t status_code,
                                  const char *status_message) {
  tu_pb pb = TU_PB_INIT;
  for (size_t i = 0; i < n; i++) {
    tu_pb p = TU_PB_INIT;
    tu_pb_field_varint(&p, 1, (uint64_t)(int64_t)sizes[i]);
    if (intervals_us && intervals_us[i]) tu_pb_field_varint(&p, 2, (uint64_t)(int64_t)intervals_us[i]);
    tu_pb_field_msg(&pb, 2, &p);
    tu_pb_free(&p);
  }
  if (payload_size) pb_payload(&pb, 3, payload_size);
  if (status_code) pb_echo_status(&pb, status_code, status_message);
  return pb;
}

tu_pb tu_streaming_input_request(size_t payload_size) {
  tu_pb pb = TU_PB_INIT;
  pb_payload(&pb, 1, payload_size);
  return pb;
}

static uint64_t pb_read_varint(const uint8_t *msg, size_t len, size_t *pos) {
  uint64_t v = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    CHECK_MSG(*pos < len, "truncated varint in a %zu-byte message", len);
    uint8_t b = msg[(*pos)++];
    v |= (uint64_t)(b & 0x7f) << shift;
    if (!(b & 0x80)) return v;
  }
  tu_fail(__FILE__, __LINE__, "varint", "varint too long");
}

/* Walks the fields of a message; returns the last one numbered `field`. */
static bool pb_find(const uint8_t *msg, size_t len, uint32_t field, uint32_t *wire_out,
                    uint64_t *varint_out, const uint8_t **bytes_out, size_t *bytes_len_out) {
  size_t pos = 0;
  bool found = false;
  while (pos < len) {
    uint64_t tag = pb_read_varint(msg, len, &pos);
    uint32_t wire = (uint32_t)(tag & 7), num = (uint32_t)(tag >> 3);
    uint64_t v = 0;
    const uint8_t *bytes = NULL;
    size_t blen = 0;
    switch (wire) {
      case 0: v = pb_read_varint(msg, len, &pos); break;
      case 1: CHECK(len - pos >= 8); pos += 8; break;
      case 5: CHECK(len - pos >= 4); pos += 4; break;
      case 2:
        v = pb_read_varint(msg, len, &pos);
        CHECK_MSG(v <= len - pos, "length %llu past the end of a %zu-byte message",
                  (unsigned long long)v, len);
        bytes = msg + pos;
        blen = (size_t)v;
        pos += blen;
        break;
      default: tu_fail(__FILE__, __LINE__, "wire type", "unexpected wire type %u", wire);
    }
    if (num == field) {
      found = true;
      *wire_out = wire;
      *varint_out = v;
      *bytes_out = bytes;
      *bytes_len_out = blen;
    }
  }
  return found;
}

bool tu_pb_find_varint(const uint8_t *msg, size_t len, uint32_t field, uint64_t *out) {
  uint32_t wire;
  uint64_t v;
  const uint8_t *b;
  size_t bl;
  if (!pb_find(msg, len, field, &wire, &v, &b, &bl)) return false;
  CHECK_MSG(wire == 0, "field %u has wire type %u, want varint", field, wire);
  *out = v;
  return true;
}

bool tu_pb_find_bytes(const uint8_t *msg, size_t len, uint32_t field, const uint8_t **out,
                      size_t *out_len) {
  uint32_t wire;
  uint64_t v;
  const uint8_t *b;
  size_t bl;
  if (!pb_find(msg, len, field, &wire, &v, &b, &bl)) return false;
  CHECK_MSG(wire == 2, "field %u has wire type %u, want length-delimited", field, wire);
  *out = b;
  *out_len = bl;
  return true;
}

size_t tu_response_body_len(const uint8_t *msg, size_t len) {
  const uint8_t *payload, *body;
  size_t payload_len, body_len;
  if (!tu_pb_find_bytes(msg, len, 1, &payload, &payload_len)) return 0;
  if (!tu_pb_find_bytes(payload, payload_len, 2, &body, &body_len)) return 0;
  for (size_t i = 0; i < body_len; i++)
    CHECK_MSG(body[i] == 0, "payload byte %zu is 0x%02x, want 0", i, body[i]);
  return body_len;
}

size_t tu_buffer_body_len(const rgrpc_buffer *buf) {
  CHECK(buf != NULL);
  size_t len = rgrpc_buffer_len(buf);
  return len ? tu_response_body_len(rgrpc_buffer_data(buf), len) : 0;
}

int64_t tu_aggregated_payload_size(const uint8_t *msg, size_t len) {
  uint64_t v = 0;
  if (!tu_pb_find_varint(msg, len, 1, &v)) return 0;
  return (int64_t)(int32_t)(uint32_t)v;
}

/* ------------------------------------------------------------------ calls */

rgrpc_status_code tu_unary(rgrpc_channel *ch, const char *method, const rgrpc_call_options *opts,
                           const uint8_t *req, size_t len, size_t *resp_len) {
  rgrpc_buffer *sentinel = (rgrpc_buffer *)(void *)&sentinel;
  rgrpc_buffer *resp = sentinel;
  const rgrpc_status *st = NULL;
  rgrpc_result rc = rgrpc_call_unary(ch, method, opts, req, len, &resp, &st);
  CHECK_MSG(rc == RGRPC_RESULT_OK || rc == RGRPC_RESULT_RPC_FAILED, "rgrpc_call_unary(%s): %s",
            method, rgrpc_result_name(rc));
  CHECK_MSG(st != NULL, "no status from rgrpc_call_unary(%s)", method);
  rgrpc_status_code code = rgrpc_status_get_code(st);
  if (rc == RGRPC_RESULT_OK) {
    CHECK_CODE(code, RGRPC_STATUS_CODE_OK);
    CHECK(resp != sentinel && resp != NULL);
    if (resp_len) *resp_len = rgrpc_buffer_len(resp);
    rgrpc_buffer_free(resp);
  } else {
    CHECK_MSG(code != RGRPC_STATUS_CODE_OK, "RGRPC_RESULT_RPC_FAILED with an OK status");
    CHECK_MSG(resp == sentinel, "response_out written although the RPC failed");
    if (resp_len) *resp_len = (size_t)-1;
  }
  rgrpc_status_free(st);
  return code;
}

rgrpc_status_code tu_unary_details(rgrpc_channel *ch, const rgrpc_call_options *opts,
                                   int32_t response_size, size_t *body_len, char *details,
                                   size_t details_len) {
  tu_pb req = tu_simple_request(response_size, 0, 0, NULL);
  rgrpc_buffer *resp = NULL;
  const rgrpc_status *st = NULL;
  rgrpc_result rc = rgrpc_call_unary(ch, M_UNARY, opts, req.data, req.len, &resp, &st);
  tu_pb_free(&req);
  CHECK_MSG(rc == RGRPC_RESULT_OK || rc == RGRPC_RESULT_RPC_FAILED, "rgrpc_call_unary: %s",
            rgrpc_result_name(rc));
  CHECK(st != NULL);
  rgrpc_status_code code = rgrpc_status_get_code(st);
  CHECK((rc == RGRPC_RESULT_OK) == (code == RGRPC_STATUS_CODE_OK));
  if (body_len) *body_len = rc == RGRPC_RESULT_OK ? tu_buffer_body_len(resp) : (size_t)-1;
  if (details) snprintf(details, details_len, "%s", rgrpc_status_details(st));
  rgrpc_buffer_free(resp);
  rgrpc_status_free(st);
  return code;
}

rgrpc_status_code tu_unary_size(rgrpc_channel *ch, const rgrpc_call_options *opts,
                                int32_t response_size, size_t *body_len) {
  return tu_unary_details(ch, opts, response_size, body_len, NULL, 0);
}

rgrpc_call *tu_open_bidi(rgrpc_channel *ch, const rgrpc_call_options *opts) {
  static const int32_t three = 3;
  rgrpc_call *call = NULL;
  CHECK_OK(rgrpc_call_start(ch, M_BIDI, opts, &call));
  tu_pb req = tu_streaming_output_request(&three, NULL, 1, 0, 0, NULL);
  tu_send_pb(call, &req, 0);
  tu_pb_free(&req);
  CHECK_EQ_INT(tu_recv_body_len(call), 3);
  return call;
}

void tu_send_pb(rgrpc_call *call, const tu_pb *msg, uint32_t flags) {
  CHECK_OK(rgrpc_call_send(call, msg->data, msg->len, flags));
}

rgrpc_buffer *tu_in_place(const tu_pb *msg) {
  rgrpc_buffer *b = NULL;
  uint8_t *data = NULL;
  CHECK_OK(rgrpc_buffer_new(msg->len, &b, &data));
  CHECK(b != NULL && data != NULL);
  CHECK(rgrpc_buffer_data(b) == data);
  CHECK_EQ_INT(rgrpc_buffer_len(b), msg->len);
  if (msg->len) memcpy(data, msg->data, msg->len);
  return b;
}

size_t tu_recv_body_len(rgrpc_call *call) {
  rgrpc_buffer *buf = NULL;
  CHECK_OK(rgrpc_call_recv(call, &buf));
  size_t n = tu_buffer_body_len(buf);
  rgrpc_buffer_free(buf);
  return n;
}

rgrpc_status_code tu_finish_code(rgrpc_call *call) {
  const rgrpc_status *st = NULL;
  rgrpc_result rc = rgrpc_call_finish(call, &st);
  CHECK_MSG(rc == RGRPC_RESULT_OK || rc == RGRPC_RESULT_RPC_FAILED, "rgrpc_call_finish: %s",
            rgrpc_result_name(rc));
  CHECK(st != NULL);
  rgrpc_status_code code = rgrpc_status_get_code(st);
  CHECK_MSG((rc == RGRPC_RESULT_OK) == (code == RGRPC_STATUS_CODE_OK), "finish returned %s with %s",
            rgrpc_result_name(rc), rgrpc_status_code_name(code));
  rgrpc_status_free(st);
  return code;
}

rgrpc_call_options *tu_opts_md(const char *key, const char *value) {
  rgrpc_call_options *o = rgrpc_call_options_new();
  CHECK(o != NULL);
  if (key) CHECK_OK(rgrpc_call_options_add_metadata_string(o, key, value));
  return o;
}

bool tu_md_string(const rgrpc_metadata *md, const char *key, char *buf, size_t buf_len) {
  const uint8_t *v = NULL;
  size_t vl = 0;
  rgrpc_result rc = rgrpc_metadata_find(md, key, &v, &vl);
  if (rc == RGRPC_RESULT_NOT_FOUND) return false;
  CHECK_OK(rc);
  CHECK(buf_len > 0);
  if (vl >= buf_len) vl = buf_len - 1;
  if (vl) memcpy(buf, v, vl);
  buf[vl] = '\0';
  return true;
}

/* ------------------------------------------------------------------ time */

int64_t tu_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void tu_sleep_ms(int64_t ms) {
  struct timespec ts;
  ts.tv_sec = (time_t)(ms / 1000);
  ts.tv_nsec = (long)(ms % 1000) * 1000000L;
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

int64_t tu_slow(void) {
  const char *s = getenv("RGRPC_TEST_SLOW");
  if (s && atoi(s) > 0) return atoi(s);
  const char *pre = getenv("LD_PRELOAD");
  if (pre && strstr(pre, "vgpreload")) return 4;
  return 1;
}

/* ------------------------------------------------------------------ latch */

void tu_latch_init(tu_latch *l, long count) {
  CHECK(pthread_mutex_init(&l->mu, NULL) == 0);
  CHECK(pthread_cond_init(&l->cv, NULL) == 0);
  l->count = count;
}

void tu_latch_destroy(tu_latch *l) {
  pthread_cond_destroy(&l->cv);
  pthread_mutex_destroy(&l->mu);
}

void tu_latch_count_down(tu_latch *l) {
  pthread_mutex_lock(&l->mu);
  l->count--;
  if (l->count <= 0) pthread_cond_broadcast(&l->cv);
  pthread_mutex_unlock(&l->mu);
}

long tu_latch_count(tu_latch *l) {
  pthread_mutex_lock(&l->mu);
  long c = l->count;
  pthread_mutex_unlock(&l->mu);
  return c;
}

bool tu_latch_wait(tu_latch *l, int64_t timeout_ms) {
  int64_t end = tu_now_ms() + timeout_ms;
  pthread_mutex_lock(&l->mu);
  while (l->count > 0) {
    if (timeout_ms < 0) {
      pthread_cond_wait(&l->cv, &l->mu);
      continue;
    }
    int64_t left = end - tu_now_ms();
    if (left <= 0) break;
    /* Condition variables use CLOCK_REALTIME by default: wait in short slices
     * so a clock jump cannot stall the test. */
    if (left > 50) left = 50;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += (long)left * 1000000L;
    ts.tv_sec += ts.tv_nsec / 1000000000L;
    ts.tv_nsec %= 1000000000L;
    pthread_cond_timedwait(&l->cv, &l->mu, &ts);
  }
  bool done = l->count <= 0;
  pthread_mutex_unlock(&l->mu);
  return done;
}

void tu_thread_start(pthread_t *t, void *(*fn)(void *), void *arg) {
  int e = pthread_create(t, NULL, fn, arg);
  CHECK_MSG(e == 0, "pthread_create: %s", strerror(e));
}

void tu_thread_join(pthread_t t) {
  int e = pthread_join(t, NULL);
  CHECK_MSG(e == 0, "pthread_join: %s", strerror(e));
}

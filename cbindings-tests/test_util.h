/* Shared helpers of the rgrpc C tests.
 *
 * - CHECK macros: on failure print file:line and the failing expression (and
 *   the values involved) to stderr and exit(1).
 * - RUN_TEST: runs one test function with a banner.
 * - The target of the test server (RGRPC_TEST_TARGET, set by with_server.py).
 * - A tiny protobuf writer/reader for the few grpc.testing messages needed.
 * - Call helpers, a clock, and a countdown latch for callback tests.
 */
#ifndef RGRPC_TEST_UTIL_H
#define RGRPC_TEST_UTIL_H

#include <rgrpc.h>

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ checks */

#if defined(__GNUC__)
#define TU_NORETURN __attribute__((noreturn))
#define TU_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define TU_NORETURN
#define TU_PRINTF(f, a)
#endif

TU_NORETURN void tu_fail(const char *file, int line, const char *expr, const char *fmt, ...)
    TU_PRINTF(4, 5);

/* CHECK(expr): expr must be true. */
#define CHECK(expr)                                         \
  do {                                                      \
    if (!(expr)) tu_fail(__FILE__, __LINE__, #expr, NULL); \
  } while (0)

/* CHECK_MSG(expr, fmt, ...): expr must be true; the message adds context. */
#define CHECK_MSG(expr, ...)                                      \
  do {                                                            \
    if (!(expr)) tu_fail(__FILE__, __LINE__, #expr, __VA_ARGS__); \
  } while (0)

/* CHECK_RC(expr, want): an rgrpc_result-returning expression gives `want`. */
#define CHECK_RC(expr, want)                                                          \
  do {                                                                                \
    uint32_t tu_got_ = (uint32_t)(expr);                                              \
    uint32_t tu_want_ = (uint32_t)(want);                                             \
    if (tu_got_ != tu_want_)                                                          \
      tu_fail(__FILE__, __LINE__, #expr, "got %s (%u), want %s (%u)",                 \
              rgrpc_result_name(tu_got_), tu_got_, rgrpc_result_name(tu_want_), tu_want_); \
  } while (0)

/* CHECK_OK(expr): shorthand for CHECK_RC(expr, RGRPC_RESULT_OK). */
#define CHECK_OK(expr) CHECK_RC(expr, RGRPC_RESULT_OK)

/* CHECK_CODE(code, want): two gRPC status codes are equal. */
#define CHECK_CODE(code, want)                                                           \
  do {                                                                                   \
    uint32_t tu_got_ = (uint32_t)(code);                                                 \
    uint32_t tu_want_ = (uint32_t)(want);                                                \
    if (tu_got_ != tu_want_)                                                             \
      tu_fail(__FILE__, __LINE__, #code, "got status %s (%u), want %s (%u)",             \
              rgrpc_status_code_name(tu_got_), tu_got_, rgrpc_status_code_name(tu_want_), \
              tu_want_);                                                                 \
  } while (0)

/* CHECK_STATUS(status, want): a status object has code `want` (prints details). */
#define CHECK_STATUS(status, want)                                                        \
  do {                                                                                    \
    const rgrpc_status *tu_st_ = (status);                                                \
    uint32_t tu_got_ = (uint32_t)rgrpc_status_get_code(tu_st_);                           \
    uint32_t tu_want_ = (uint32_t)(want);                                                 \
    if (tu_got_ != tu_want_)                                                              \
      tu_fail(__FILE__, __LINE__, #status, "got status %s (%u) \"%s\", want %s (%u)",     \
              rgrpc_status_code_name(tu_got_), tu_got_, rgrpc_status_details(tu_st_),     \
              rgrpc_status_code_name(tu_want_), tu_want_);                                \
  } while (0)

/* CHECK_EQ_INT(a, b): integers equal (compared as long long). */
#define CHECK_EQ_INT(a, b)                                                              \
  do {                                                                                  \
    long long tu_a_ = (long long)(a), tu_b_ = (long long)(b);                           \
    if (tu_a_ != tu_b_)                                                                 \
      tu_fail(__FILE__, __LINE__, #a " == " #b, "%lld != %lld", tu_a_, tu_b_);          \
  } while (0)

/* CHECK_STR(a, b): NUL-terminated strings equal. */
#define CHECK_STR(a, b)                                                                 \
  do {                                                                                  \
    const char *tu_a_ = (a), *tu_b_ = (b);                                              \
    if (tu_a_ == NULL || tu_b_ == NULL || strcmp(tu_a_, tu_b_) != 0)                    \
      tu_fail(__FILE__, __LINE__, #a " == " #b, "\"%s\" != \"%s\"",                     \
              tu_a_ ? tu_a_ : "(null)", tu_b_ ? tu_b_ : "(null)");                      \
  } while (0)

/* CHECK_NONEMPTY(s): a non-NULL, non-empty string. */
#define CHECK_NONEMPTY(s)                                                  \
  do {                                                                     \
    const char *tu_s_ = (s);                                               \
    if (tu_s_ == NULL || tu_s_[0] == '\0')                                 \
      tu_fail(__FILE__, __LINE__, #s, "expected a non-empty string, got %s", \
              tu_s_ ? "\"\"" : "NULL");                                    \
  } while (0)

/* RUN_TEST(fn): runs `static void fn(void)` with a banner. */
#define RUN_TEST(fn) tu_run(#fn, fn)
void tu_run(const char *name, void (*fn)(void));

/* Prints a note (e.g. a behaviour that cannot be checked) to stderr. */
void tu_note(const char *fmt, ...) TU_PRINTF(1, 2);

/* ------------------------------------------------------------------ server */

#define M_EMPTY "/grpc.testing.TestService/EmptyCall"
#define M_UNARY "/grpc.testing.TestService/UnaryCall"
#define M_SERVER_STREAM "/grpc.testing.TestService/StreamingOutputCall"
#define M_CLIENT_STREAM "/grpc.testing.TestService/StreamingInputCall"
#define M_BIDI "/grpc.testing.TestService/FullDuplexCall"
#define M_HALF_DUPLEX "/grpc.testing.TestService/HalfDuplexCall"
#define M_UNIMPLEMENTED "/grpc.testing.TestService/UnimplementedCall"

/* RGRPC_TEST_TARGET (exits with a message when unset). */
const char *tu_target(void);
/* RGRPC_TEST_SERVER_PID, or 0 when unset. */
long tu_server_pid(void);

/* A channel to `target` (NULL: tu_target()) with `opts` (may be NULL);
 * fails the test when it cannot be made. */
rgrpc_channel *tu_channel(const char *target, const rgrpc_channel_options *opts);

/* -------------------------------------------------------------- protobuf */

/* A growable byte buffer that protobuf fields are appended to. */
typedef struct tu_pb {
  uint8_t *data;
  size_t len;
  size_t cap;
} tu_pb;

#define TU_PB_INIT {NULL, 0, 0}

void tu_pb_free(tu_pb *pb);
void tu_pb_raw(tu_pb *pb, const void *data, size_t len);
void tu_pb_varint(tu_pb *pb, uint64_t v);
/* Field writers (wire type 0 varint / 2 length-delimited). */
void tu_pb_field_varint(tu_pb *pb, uint32_t field, uint64_t v);
void tu_pb_field_bytes(tu_pb *pb, uint32_t field, const void *data, size_t len);
void tu_pb_field_zeros(tu_pb *pb, uint32_t field, size_t len); /* `len` zero bytes */
void tu_pb_field_msg(tu_pb *pb, uint32_t field, const tu_pb *msg);

/* SimpleRequest{response_size, payload{body: payload_size zero bytes}}.
 * With status_code != 0 also response_status{code, message}. */
tu_pb tu_simple_request(int32_t response_size, size_t payload_size, int32_t status_code,
                        const char *status_message);

/* StreamingOutputCallRequest{response_parameters: [{size, interval_us}...],
 * payload{body: payload_size zeros}, response_status (when code != 0)}.
 * `intervals_us` may be NULL (all 0). */
tu_pb tu_streaming_output_request(const int32_t *sizes, const int32_t *intervals_us, size_t n,
                                  size_t payload_size, int32_t status_code,
                                  const char *status_message);

/* StreamingInputCallRequest{payload{body: payload_size zeros}}. */
tu_pb tu_streaming_input_request(size_t payload_size);

/* Finds the last occurrence of a field (proto3 "last one wins") in a message.
 * Returns false when absent; fails the test on malformed input. */
bool tu_pb_find_varint(const uint8_t *msg, size_t len, uint32_t field, uint64_t *out);
bool tu_pb_find_bytes(const uint8_t *msg, size_t len, uint32_t field, const uint8_t **out,
                      size_t *out_len);

/* Length of payload.body (field 1 -> field 2) in a SimpleResponse or
 * StreamingOutputCallResponse; 0 when absent. Fails the test when the body
 * contains a non-zero byte (the server sends zeros) or the message is malformed. */
size_t tu_response_body_len(const uint8_t *msg, size_t len);
/* Same for an rgrpc_buffer. */
size_t tu_buffer_body_len(const rgrpc_buffer *buf);
/* StreamingInputCallResponse.aggregated_payload_size (0 when absent). */
int64_t tu_aggregated_payload_size(const uint8_t *msg, size_t len);

/* ------------------------------------------------------------------ calls */

/* Makes a unary call with rgrpc_call_unary and checks the result/status
 * contract (OK <-> RGRPC_RESULT_OK, else RGRPC_RESULT_RPC_FAILED with the
 * response untouched). Returns the status code; `*resp_len` (may be NULL)
 * receives the response message length, (size_t)-1 on failure. */
rgrpc_status_code tu_unary(rgrpc_channel *ch, const char *method, const rgrpc_call_options *opts,
                           const uint8_t *req, size_t len, size_t *resp_len);

/* Like tu_unary for UnaryCall with SimpleRequest{response_size}; returns the
 * status code and the received payload.body length in *body_len (may be NULL). */
rgrpc_status_code tu_unary_size(rgrpc_channel *ch, const rgrpc_call_options *opts,
                                int32_t response_size, size_t *body_len);
/* tu_unary_size that also copies the status details (when `details` is
 * not NULL). */
rgrpc_status_code tu_unary_details(rgrpc_channel *ch, const rgrpc_call_options *opts,
                                   int32_t response_size, size_t *body_len, char *details,
                                   size_t details_len);
/* Starts a FullDuplexCall and has one response go through, so the stream
 * is certainly open on the server. */
rgrpc_call *tu_open_bidi(rgrpc_channel *ch, const rgrpc_call_options *opts);

/* Sends one message with flags on a call, expecting RGRPC_RESULT_OK. */
void tu_send_pb(rgrpc_call *call, const tu_pb *msg, uint32_t flags);

/* A copy of `msg` in a new rgrpc_buffer_new buffer (as a serializer
 * writing into it would leave it), checking the buffer's data and length. */
rgrpc_buffer *tu_in_place(const tu_pb *msg);

/* Receives one message, expects OK, returns its payload.body length. */
size_t tu_recv_body_len(rgrpc_call *call);

/* Finishes a call and returns its status code (checking OK <-> RGRPC_RESULT_OK). */
rgrpc_status_code tu_finish_code(rgrpc_call *call);

/* Call options with one string metadata entry (key, value), or NULL key for none. */
rgrpc_call_options *tu_opts_md(const char *key, const char *value);

/* Finds `key` in md as a NUL-terminated copy in buf (false when absent). */
bool tu_md_string(const rgrpc_metadata *md, const char *key, char *buf, size_t buf_len);

/* ------------------------------------------------------------------ time */

/* CLOCK_MONOTONIC in milliseconds (independent of rgrpc_now_ms). */
int64_t tu_now_ms(void);
void tu_sleep_ms(int64_t ms);

/* Multiplier for timing margins: larger under valgrind (RGRPC_TEST_SLOW or
 * valgrind detected through LD_PRELOAD). */
int64_t tu_slow(void);

/* ------------------------------------------------------------------ latch */

/* A countdown latch: count_down from callbacks, wait from the test. */
typedef struct tu_latch {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  long count;
} tu_latch;

void tu_latch_init(tu_latch *l, long count);
void tu_latch_destroy(tu_latch *l);
void tu_latch_count_down(tu_latch *l);
/* Waits until the count is 0; false on timeout (timeout_ms < 0: forever). */
bool tu_latch_wait(tu_latch *l, int64_t timeout_ms);
long tu_latch_count(tu_latch *l);

/* Starts a thread, failing the test on error. */
void tu_thread_start(pthread_t *t, void *(*fn)(void *), void *arg);
void tu_thread_join(pthread_t t);

#endif /* RGRPC_TEST_UTIL_H */

/* Concurrency: many concurrent calls on one channel (async and from many
 * threads), concurrent streams, concurrent channels. */
#include "test_util.h"

enum { ASYNC_CALLS = 1000 };

typedef struct {
  tu_latch *latch;
  int32_t expected;
  rgrpc_status_code code;
  size_t body_len;
  int runs;
} async_slot;

static void on_async_done(void *ud, const rgrpc_status *st, const uint8_t *resp, size_t len) {
  async_slot *s = ud;
  s->runs++;
  s->code = rgrpc_status_get_code(st);
  s->body_len = (s->code == RGRPC_STATUS_CODE_OK && len) ? tu_response_body_len(resp, len) : 0;
  tu_latch_count_down(s->latch);
}

static void test_1000_async_calls(void) {
  rgrpc_channel *ch = tu_channel(NULL, NULL);
  tu_latch latch;
  tu_latch_init(&latch, ASYNC_CALLS);
  async_slot *slots = calloc(ASYNC_CALLS, sizeof *slots);
  CHECK(slots != NULL);
  int64_t t0 = tu_now_ms();
  for (int i = 0; i < ASYNC_CALLS; i++) {
    slots[i].latch = &latch;
    slots[i].expected = (i * 31) % 500;
    tu_pb req = tu_simple_request(slots[i].expected, (size_t)(i % 50), 0, NULL);
    CHECK_OK(rgrpc_call_unary_async(ch, M_UNARY, NULL, req.data, req.len, on_async_done,
                                    &slots[i], NULL));
    tu_pb_free(&req);
  }
  CHECK_MSG(tu_latch_wait(&latch, 120000), "%ld of %d callbacks still pending",
            tu_latch_count(&latch), ASYNC_CALLS);
  int64_t el = tu_now_ms() - t0;
  for (int i = 0; i < ASYNC_CALLS; i++) {
    CHECK_MSG(slots[i].runs == 1, "call %d: callback ran %d times", i, slots[i].runs);
    CHECK_MSG(slots[i].code == RGRPC_STATUS_CODE_OK, "call %d: %s", i,
              rgrpc_status_code_name(slots[i].code));
    CHECK_MSG(slots[i].body_len == (size_t)slots[i].expected, "call %d: %zu bytes, want %d", i,
              slots[i].body_len, slots[i].expected);
  }
  printf("  %d async calls in %lld ms\n", ASYNC_CALLS, (long long)el);
  free(slots);
  tu_latch_destroy(&latch);
  rgrpc_channel_free(ch);
}

/* Many calls that all sit on the server at the same time, each waited for
 * through its handle. */
static void test_concurrent_calls_in_flight(void) {
  enum { N = 200 };
  rgrpc_channel *ch = tu_channel(NULL, NULL);
  tu_latch latch;
  tu_latch_init(&latch, N);
  async_slot *slots = calloc(N, sizeof *slots);
  rgrpc_call **calls = calloc(N, sizeof *calls);
  CHECK(slots != NULL && calls != NULL);
  rgrpc_call_options *o = tu_opts_md("x-rgrpc-sleep-ms", "300");
  for (int i = 0; i < N; i++) {
    slots[i].latch = &latch;
    slots[i].expected = i;
    tu_pb req = tu_simple_request(i, 0, 0, NULL);
    CHECK_OK(rgrpc_call_unary_async(ch, M_UNARY, o, req.data, req.len, on_async_done, &slots[i],
                                    &calls[i]));
    tu_pb_free(&req);
  }
  for (int i = 0; i < N; i++) CHECK_OK(rgrpc_call_wait(calls[i], 120000));
  CHECK(tu_latch_wait(&latch, 0));
  for (int i = 0; i < N; i++) {
    CHECK_CODE(slots[i].code, RGRPC_STATUS_CODE_OK);
    CHECK_EQ_INT(slots[i].body_len, i);
    CHECK_CODE(tu_finish_code(calls[i]), RGRPC_STATUS_CODE_OK);
    rgrpc_call_free(calls[i]);
  }
  rgrpc_call_options_free(o);
  free(calls);
  free(slots);
  tu_latch_destroy(&latch);
  rgrpc_channel_free(ch);
}

enum { THREADS = 16, CALLS_PER_THREAD = 50 };

typedef struct {
  rgrpc_channel *ch;
  int index;
  int ok;
} worker_args;

static void *blocking_worker(void *p) {
  worker_args *a = p;
  for (int i = 0; i < CALLS_PER_THREAD; i++) {
    int32_t size = a->index * 100 + i;
    size_t len = 0;
    CHECK_CODE(tu_unary_size(a->ch, NULL, size, &len), RGRPC_STATUS_CODE_OK);
    CHECK_EQ_INT(len, size);
    a->ok++;
  }
  return NULL;
}

static void test_threads_blocking_unary(void) {
  rgrpc_channel *ch = tu_channel(NULL, NULL);
  pthread_t t[THREADS];
  worker_args a[THREADS];
  for (int i = 0; i < THREADS; i++) {
    a[i].ch = ch;
    a[i].index = i;
    a[i].ok = 0;
    tu_thread_start(&t[i], blocking_worker, &a[i]);
  }
  for (int i = 0; i < THREADS; i++) tu_thread_join(t[i]);
  for (int i = 0; i < THREADS; i++) CHECK_EQ_INT(a[i].ok, CALLS_PER_THREAD);
  rgrpc_channel_free(ch);
}

/* Threads each running bidi ping-pong streams on a shared channel. */
static void *stream_worker(void *p) {
  worker_args *a = p;
  for (int round = 0; round < 3; round++) {
    rgrpc_call *call = NULL;
    CHECK_OK(rgrpc_call_start(a->ch, M_BIDI, NULL, &call));
    for (int i = 0; i < 20; i++) {
      int32_t size = a->index * 1000 + i;
      tu_pb req = tu_streaming_output_request(&size, NULL, 1, (size_t)i * 10, 0, NULL);
      tu_send_pb(call, &req, 0);
      tu_pb_free(&req);
      CHECK_EQ_INT(tu_recv_body_len(call), size);
    }
    CHECK_OK(rgrpc_call_close_send(call));
    rgrpc_buffer *buf = NULL;
    CHECK_RC(rgrpc_call_recv(call, &buf), RGRPC_RESULT_END_OF_STREAM);
    CHECK_CODE(tu_finish_code(call), RGRPC_STATUS_CODE_OK);
    rgrpc_call_free(call);
    a->ok++;
  }
  return NULL;
}

static void test_threads_streaming(void) {
  enum { N = 8 };
  rgrpc_channel *ch = tu_channel(NULL, NULL);
  pthread_t t[N];
  worker_args a[N];
  for (int i = 0; i < N; i++) {
    a[i].ch = ch;
    a[i].index = i;
    a[i].ok = 0;
    tu_thread_start(&t[i], stream_worker, &a[i]);
  }
  for (int i = 0; i < N; i++) tu_thread_join(t[i]);
  for (int i = 0; i < N; i++) CHECK_EQ_INT(a[i].ok, 3);
  rgrpc_channel_free(ch);
}

/* Threads each with their own channels, made and closed repeatedly. */
static void *channel_worker(void *p) {
  worker_args *a = p;
  for (int round = 0; round < 5; round++) {
    rgrpc_channel *ch = tu_channel(NULL, NULL);
    for (int i = 0; i < 5; i++) CHECK_CODE(tu_unary_size(ch, NULL, i, NULL), RGRPC_STATUS_CODE_OK);
    if (round % 2) CHECK_OK(rgrpc_channel_close(ch));
    rgrpc_channel_free(ch);
    a->ok++;
  }
  return NULL;
}

static void test_threads_own_channels(void) {
  enum { N = 8 };
  pthread_t t[N];
  worker_args a[N];
  for (int i = 0; i < N; i++) {
    a[i].ch = NULL;
    a[i].index = i;
    a[i].ok = 0;
    tu_thread_start(&t[i], channel_worker, &a[i]);
  }
  for (int i = 0; i < N; i++) tu_thread_join(t[i]);
  for (int i = 0; i < N; i++) CHECK_EQ_INT(a[i].ok, 5);
}

/* Cancel from one thread while many calls are pending; the rest finish. */
static void test_cancel_some_of_many(void) {
  enum { N = 100 };
  rgrpc_channel *ch = tu_channel(NULL, NULL);
  tu_latch latch;
  tu_latch_init(&latch, N);
  async_slot *slots = calloc(N, sizeof *slots);
  rgrpc_call **calls = calloc(N, sizeof *calls);
  CHECK(slots != NULL && calls != NULL);
  /* The server holds each call 2 s: long enough that every call is still
   * pending when the cancels come, also under valgrind on a loaded machine
   * (with 500 ms an early call once finished first). */
  rgrpc_call_options *o = tu_opts_md("x-rgrpc-sleep-ms", "2000");
  for (int i = 0; i < N; i++) {
    slots[i].latch = &latch;
    slots[i].expected = 8;
    tu_pb req = tu_simple_request(8, 0, 0, NULL);
    CHECK_OK(rgrpc_call_unary_async(ch, M_UNARY, o, req.data, req.len, on_async_done, &slots[i],
                                    &calls[i]));
    tu_pb_free(&req);
  }
  tu_sleep_ms(100);
  for (int i = 0; i < N; i += 2) CHECK_OK(rgrpc_call_cancel(calls[i]));
  CHECK_MSG(tu_latch_wait(&latch, 60000), "%ld callbacks pending", tu_latch_count(&latch));
  for (int i = 0; i < N; i++) {
    CHECK_OK(rgrpc_call_wait(calls[i], -1));
    CHECK_EQ_INT(slots[i].runs, 1);
    CHECK_CODE(slots[i].code, i % 2 ? RGRPC_STATUS_CODE_OK : RGRPC_STATUS_CODE_CANCELLED);
    rgrpc_call_free(calls[i]);
  }
  rgrpc_call_options_free(o);
  free(calls);
  free(slots);
  tu_latch_destroy(&latch);
  rgrpc_channel_free(ch);
}

int main(void) {
  RUN_TEST(test_1000_async_calls);
  RUN_TEST(test_concurrent_calls_in_flight);
  RUN_TEST(test_threads_blocking_unary);
  RUN_TEST(test_threads_streaming);
  RUN_TEST(test_threads_own_channels);
  RUN_TEST(test_cancel_some_of_many);
  return 0;
}

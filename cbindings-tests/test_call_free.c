/* rgrpc_call_free while other threads are inside operations on the call:
 * the handle is reference counted, free releases the application's
 * reference and cancels the call, every blocked thread returns promptly
 * with the documented result, and the memory goes when the last operation
 * returns (valgrind: no invalid access, no leak). */
#include "test_util.h"

/* Guards `progress` and `returned_ms` of every op_args. */
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;

/* One blocked operation on a shared call, run on its own thread. */
typedef enum { OP_RECV, OP_FINISH, OP_SEND_LOOP, OP_INITIAL_METADATA, OP_WAIT } op_kind;

typedef struct {
  rgrpc_call *call;
  op_kind kind;
  tu_latch *started;      /* counted down just before the operation */
  long progress;          /* OP_SEND_LOOP: messages sent so far */
  uint32_t rc;            /* the operation's result */
  rgrpc_status_code code; /* OP_FINISH: the status code */
  int64_t returned_ms;    /* tu_now_ms() when the operation returned */
} op_args;

enum { SEND_SIZE = 64 * 1024 };

static void *op_main(void *p) {
  op_args *a = p;
  tu_latch_count_down(a->started);
  switch (a->kind) {
    case OP_RECV: {
      rgrpc_buffer *buf = NULL;
      a->rc = rgrpc_call_recv(a->call, &buf);
      rgrpc_buffer_free(buf); /* NULL unless a message came, which it must not */
      break;
    }
    case OP_FINISH: {
      const rgrpc_status *st = NULL;
      a->rc = rgrpc_call_finish(a->call, &st);
      /* The status is the caller's own reference: still valid after the
       * call's free. */
      a->code = rgrpc_status_get_code(st);
      rgrpc_status_free(st);
      break;
    }
    case OP_SEND_LOOP: {
      /* The server does not read (it sleeps before its handler looks at
       * the requests): sends go out until HTTP/2 flow control blocks one. */
      uint8_t *msg = calloc(1, SEND_SIZE);
      CHECK(msg != NULL);
      for (;;) {
        uint32_t rc = rgrpc_call_send(a->call, msg, SEND_SIZE, 0);
        if (rc != RGRPC_RESULT_OK) {
          a->rc = rc;
          break;
        }
        pthread_mutex_lock(&mu);
        a->progress++;
        pthread_mutex_unlock(&mu);
      }
      free(msg);
      break;
    }
    case OP_INITIAL_METADATA: {
      const rgrpc_metadata *md = NULL;
      a->rc = rgrpc_call_initial_metadata(a->call, &md);
      /* Freed while waiting: nothing written (md stays NULL). */
      CHECK(md == NULL);
      break;
    }
    case OP_WAIT:
      a->rc = rgrpc_call_wait(a->call, -1);
      break;
  }
  pthread_mutex_lock(&mu);
  a->returned_ms = tu_now_ms();
  pthread_mutex_unlock(&mu);
  return NULL;
}

/* Waits until a send loop has made no progress for a while: it is blocked
 * in rgrpc_call_send (flow control), not between two sends. */
static void wait_until_send_blocked(op_args *a) {
  long last = -1;
  int64_t since = tu_now_ms();
  int64_t quiet = 1000 * tu_slow();
  int64_t give_up = tu_now_ms() + 60000 * tu_slow();
  for (;;) {
    pthread_mutex_lock(&mu);
    long now = a->progress;
    pthread_mutex_unlock(&mu);
    if (now != last) {
      last = now;
      since = tu_now_ms();
    } else if (now >= 1 && tu_now_ms() - since >= quiet) {
      printf("  sender blocked after %ld messages of %d bytes\n", now, SEND_SIZE);
      return;
    }
    CHECK_MSG(tu_now_ms() < give_up, "sends never blocked (%ld sent)", now);
    tu_sleep_ms(50);
  }
}

/* Call options under which the grpcio server's handler sleeps for a
 * minute before it reads any request or sends headers (the sleep ends when
 * the call is cancelled): nothing answers, and requests are not read. */
static rgrpc_call_options *silent_server(void) { return tu_opts_md("x-rgrpc-sleep-ms", "60000"); }

/* Starts one thread per op, in order, each a moment after the previous one
 * so that they block in that order (recv takes the receiving side before
 * finish and initial_metadata, which then wait for the status). */
static void start_ops(rgrpc_call *call, op_args *ops, pthread_t *threads, const op_kind *kinds,
                      size_t n) {
  tu_latch started;
  tu_latch_init(&started, (long)n);
  for (size_t i = 0; i < n; i++) {
    memset(&ops[i], 0, sizeof ops[i]);
    ops[i].call = call;
    ops[i].kind = kinds[i];
    ops[i].started = &started;
    ops[i].rc = 0xffffffffu;
  }
  for (size_t i = 0; i < n; i++) {
    tu_thread_start(&threads[i], op_main, &ops[i]);
    if (kinds[i] == OP_SEND_LOOP) wait_until_send_blocked(&ops[i]);
    tu_sleep_ms(100 * tu_slow());
  }
  CHECK(tu_latch_wait(&started, 10000 * tu_slow()));
  tu_latch_destroy(&started);
  /* Every operation is still waiting. */
  pthread_mutex_lock(&mu);
  for (size_t i = 0; i < n; i++) CHECK_MSG(ops[i].returned_ms == 0, "op %zu returned early", i);
  pthread_mutex_unlock(&mu);
}

static void check_returned_promptly(const op_args *ops, size_t n, int64_t freed_at) {
  for (size_t i = 0; i < n; i++) {
    int64_t after = ops[i].returned_ms - freed_at;
    CHECK_MSG(after < 2000 * tu_slow(), "operation %zu returned %lld ms after the free", i,
              (long long)after);
  }
}

/* Frees `call` from the calling thread and joins the op threads. */
static void free_and_join(rgrpc_call *call, const op_args *ops, pthread_t *threads, size_t n) {
  int64_t freed_at = tu_now_ms();
  rgrpc_call_free(call); /* the application's reference; cancels the call */
  for (size_t i = 0; i < n; i++) tu_thread_join(threads[i]);
  check_returned_promptly(ops, n, freed_at);
}

/* recv, finish and initial_metadata blocked on one bidi call
 * (FullDuplexCall, no request sent) that the server does not answer; the
 * main thread frees the call. No library task holds the call meanwhile, so
 * with a single owner (the old Box handle) its memory went at once under
 * the blocked threads. */
static void test_free_while_recv_finish_metadata_blocked(void) {
  rgrpc_channel *ch = tu_channel(NULL, NULL);
  rgrpc_call_options *o = silent_server();
  rgrpc_call *call = NULL;
  CHECK_OK(rgrpc_call_start(ch, M_BIDI, o, &call));
  rgrpc_call_options_free(o);

  static const op_kind kinds[] = {OP_RECV, OP_FINISH, OP_INITIAL_METADATA};
  enum { N = sizeof kinds / sizeof kinds[0] };
  op_args ops[N];
  pthread_t threads[N];
  start_ops(call, ops, threads, kinds, N);
  free_and_join(call, ops, threads, N);

  CHECK_RC(ops[0].rc, RGRPC_RESULT_END_OF_STREAM); /* recv */
  CHECK_RC(ops[1].rc, RGRPC_RESULT_RPC_FAILED);    /* finish */
  CHECK_CODE(ops[1].code, RGRPC_STATUS_CODE_CANCELLED);
  CHECK_RC(ops[2].rc, RGRPC_RESULT_CANCELLED);     /* initial_metadata */

  /* The channel still serves new calls. */
  CHECK_CODE(tu_unary_size(ch, NULL, 3, NULL), RGRPC_STATUS_CODE_OK);
  rgrpc_channel_free(ch);
}

/* The same with a send blocked by HTTP/2 flow control too (the server does
 * not read the requests). */
static void test_free_while_send_blocked(void) {
  rgrpc_channel *ch = tu_channel(NULL, NULL);
  rgrpc_call_options *o = silent_server();
  rgrpc_call *call = NULL;
  CHECK_OK(rgrpc_call_start(ch, M_BIDI, o, &call));
  rgrpc_call_options_free(o);

  static const op_kind kinds[] = {OP_SEND_LOOP, OP_RECV, OP_FINISH, OP_INITIAL_METADATA};
  enum { N = sizeof kinds / sizeof kinds[0] };
  op_args ops[N];
  pthread_t threads[N];
  start_ops(call, ops, threads, kinds, N);
  free_and_join(call, ops, threads, N);

  CHECK_RC(ops[0].rc, RGRPC_RESULT_CALL_ENDED);    /* send */
  CHECK_RC(ops[1].rc, RGRPC_RESULT_END_OF_STREAM); /* recv */
  CHECK_RC(ops[2].rc, RGRPC_RESULT_RPC_FAILED);    /* finish */
  CHECK_CODE(ops[2].code, RGRPC_STATUS_CODE_CANCELLED);
  CHECK_RC(ops[3].rc, RGRPC_RESULT_CANCELLED);     /* initial_metadata */
  rgrpc_channel_free(ch);
}

/* recv, finish and two waits blocked on a server-streaming call whose
 * server is silent; another thread frees the call. */
typedef struct {
  rgrpc_call *call;
  int64_t freed_at;
} freer_args;

static void *freer_main(void *p) {
  freer_args *a = p;
  a->freed_at = tu_now_ms();
  rgrpc_call_free(a->call);
  return NULL;
}

static void test_free_from_other_thread_while_waiting(void) {
  rgrpc_channel *ch = tu_channel(NULL, NULL);
  rgrpc_call_options *o = silent_server();
  rgrpc_call *call = NULL;
  CHECK_OK(rgrpc_call_start(ch, M_SERVER_STREAM, o, &call));
  rgrpc_call_options_free(o);
  int32_t sizes[] = {10, 10};
  tu_pb req = tu_streaming_output_request(sizes, NULL, 2, 0, 0, NULL);
  tu_send_pb(call, &req, RGRPC_SEND_LAST);
  tu_pb_free(&req);

  static const op_kind kinds[] = {OP_RECV, OP_WAIT, OP_FINISH, OP_WAIT};
  enum { N = sizeof kinds / sizeof kinds[0] };
  op_args ops[N];
  pthread_t threads[N];
  start_ops(call, ops, threads, kinds, N);

  freer_args f = {call, 0};
  pthread_t freer;
  tu_thread_start(&freer, freer_main, &f);
  tu_thread_join(freer);
  for (size_t i = 0; i < N; i++) tu_thread_join(threads[i]);
  check_returned_promptly(ops, N, f.freed_at);
  CHECK_RC(ops[0].rc, RGRPC_RESULT_END_OF_STREAM);
  CHECK_RC(ops[1].rc, RGRPC_RESULT_OK); /* wait: the call has ended */
  CHECK_RC(ops[2].rc, RGRPC_RESULT_RPC_FAILED);
  CHECK_CODE(ops[2].code, RGRPC_STATUS_CODE_CANCELLED);
  CHECK_RC(ops[3].rc, RGRPC_RESULT_OK);
  rgrpc_channel_free(ch);
}

/* A done callback that frees its own call while the main thread is still
 * blocked in recv on it. */
typedef struct {
  rgrpc_call *call;
  tu_latch ran;
} self_free;

static void free_in_done(void *ud, const rgrpc_status *st) {
  self_free *s = ud;
  (void)st;
  rgrpc_call_free(s->call);
  tu_latch_count_down(&s->ran);
}

static void test_free_in_done_callback_while_recv_blocked(void) {
  rgrpc_channel *ch = tu_channel(NULL, NULL);
  rgrpc_call_options *o = silent_server();
  CHECK_OK(rgrpc_call_options_set_timeout_ms(o, 300 * tu_slow()));
  self_free s;
  tu_latch_init(&s.ran, 1);
  CHECK_OK(rgrpc_call_start(ch, M_BIDI, o, &s.call));
  rgrpc_call_options_free(o);
  CHECK_OK(rgrpc_call_on_done(s.call, free_in_done, &s));
  /* The deadline ends the call; its callback frees the handle while this
   * thread is still inside recv (holding its own reference). */
  rgrpc_buffer *buf = NULL;
  CHECK_RC(rgrpc_call_recv(s.call, &buf), RGRPC_RESULT_END_OF_STREAM);
  CHECK(tu_latch_wait(&s.ran, 10000 * tu_slow()));
  tu_latch_destroy(&s.ran);
  rgrpc_channel_free(ch);
}

/* A message callback that frees its call on the first message; the done
 * callback (registered first) still runs, with CANCELLED. */
typedef struct {
  rgrpc_call *call;
  pthread_mutex_t mu;
  int messages;
  rgrpc_status_code code;
  tu_latch done;
} push_free;

static void free_on_message(void *ud, const uint8_t *data, size_t len) {
  push_free *s = ud;
  (void)data;
  (void)len;
  pthread_mutex_lock(&s->mu);
  int first = s->messages++ == 0;
  pthread_mutex_unlock(&s->mu);
  if (first) rgrpc_call_free(s->call);
}

static void record_push_done(void *ud, const rgrpc_status *st) {
  push_free *s = ud;
  s->code = rgrpc_status_get_code(st);
  tu_latch_count_down(&s->done);
}

static void test_free_in_message_callback(void) {
  rgrpc_channel *ch = tu_channel(NULL, NULL);
  push_free s;
  memset(&s, 0, sizeof s);
  CHECK(pthread_mutex_init(&s.mu, NULL) == 0);
  tu_latch_init(&s.done, 1);
  CHECK_OK(rgrpc_call_start(ch, M_SERVER_STREAM, NULL, &s.call));
  /* Ten responses, the later ones a second apart: the call is still
   * active when the first arrives. */
  int32_t sizes[10], intervals[10];
  for (int i = 0; i < 10; i++) {
    sizes[i] = 10;
    intervals[i] = i == 0 ? 0 : 1000000;
  }
  tu_pb req = tu_streaming_output_request(sizes, intervals, 10, 0, 0, NULL);
  tu_send_pb(s.call, &req, RGRPC_SEND_LAST);
  tu_pb_free(&req);
  CHECK_OK(rgrpc_call_on_done(s.call, record_push_done, &s));
  CHECK_OK(rgrpc_call_on_message(s.call, free_on_message, &s));
  CHECK(tu_latch_wait(&s.done, 10000 * tu_slow()));
  CHECK_CODE(s.code, RGRPC_STATUS_CODE_CANCELLED);
  tu_sleep_ms(100);
  pthread_mutex_lock(&s.mu);
  CHECK_MSG(s.messages >= 1 && s.messages < 10, "%d messages", s.messages);
  pthread_mutex_unlock(&s.mu);
  tu_latch_destroy(&s.done);
  pthread_mutex_destroy(&s.mu);
  rgrpc_channel_free(ch);
}

int main(void) {
  RUN_TEST(test_free_while_recv_finish_metadata_blocked);
  RUN_TEST(test_free_while_send_blocked);
  RUN_TEST(test_free_from_other_thread_while_waiting);
  RUN_TEST(test_free_in_done_callback_while_recv_blocked);
  RUN_TEST(test_free_in_message_callback);
  return 0;
}

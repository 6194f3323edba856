/* The completion queue: its descriptor, every operation completing into it
 * with its tag, shutdown and free, against a real grpcio server. */
#include "test_util.h"

#include <poll.h>

/* Whether the queue's descriptor polls readable within timeout_ms. */
static bool readable(rgrpc_completion_queue *cq, int timeout_ms) {
  struct pollfd p = {rgrpc_completion_queue_fd(cq), POLLIN, 0};
  int n = poll(&p, 1, timeout_ms);
  CHECK(n >= 0);
  return n == 1 && (p.revents & POLLIN);
}

/* The next completion, through the descriptor (as an event loop takes it):
 * fails the test when none comes within 10 s. */
static rgrpc_completion take(rgrpc_completion_queue *cq) {
  rgrpc_completion c;
  int64_t end = tu_now_ms() + 10000 * tu_slow();
  for (;;) {
    rgrpc_result rc = rgrpc_completion_queue_next(cq, &c);
    if (rc == RGRPC_RESULT_OK) return c;
    CHECK_RC(rc, RGRPC_RESULT_QUEUE_EMPTY);
    CHECK_MSG(tu_now_ms() < end, "no completion within 10 s");
    (void)readable(cq, 100);
  }
}

/* Takes one completion and checks its tag, operation and result. */
static rgrpc_completion expect(rgrpc_completion_queue *cq, void *tag, rgrpc_op op,
                               rgrpc_result result) {
  rgrpc_completion c = take(cq);
  CHECK_MSG(c.tag == tag, "tag %p, want %p (op %u)", c.tag, tag, (unsigned)c.op);
  CHECK_EQ_INT(c.op, op);
  CHECK_RC(c.result, result);
  return c;
}

static rgrpc_completion_queue *new_cq(void) {
  rgrpc_completion_queue *cq = NULL;
  CHECK_OK(rgrpc_completion_queue_new(&cq, NULL));
  CHECK(cq != NULL);
  CHECK(rgrpc_completion_queue_fd(cq) >= 0);
  return cq;
}

/* Shuts the queue down, checks nothing is left, frees it. */
static void end_cq(rgrpc_completion_queue *cq) {
  CHECK_OK(rgrpc_completion_queue_shutdown(cq));
  rgrpc_completion c;
  CHECK_RC(rgrpc_completion_queue_next(cq, &c), RGRPC_RESULT_QUEUE_SHUTDOWN);
  CHECK(readable(cq, 0));
  rgrpc_completion_queue_free(cq);
}

static int tags[64];
#define TAG(i) ((void *)&tags[i])

static void test_queue_alone(void) {
  rgrpc_completion_queue *cq = new_cq();
  rgrpc_completion c;
  CHECK_RC(rgrpc_completion_queue_next(cq, &c), RGRPC_RESULT_QUEUE_EMPTY);
  CHECK(!readable(cq, 0));
  CHECK_RC(rgrpc_completion_queue_wait(cq, 0, &c), RGRPC_RESULT_TIMEOUT);
  int64_t t0 = tu_now_ms();
  CHECK_RC(rgrpc_completion_queue_wait(cq, 100, &c), RGRPC_RESULT_TIMEOUT);
  CHECK(tu_now_ms() - t0 >= 90);

  /* NULL arguments. */
  CHECK_RC(rgrpc_completion_queue_new(NULL, NULL), RGRPC_RESULT_NULL_PARAMETER);
  rgrpc_error *err = NULL;
  CHECK_RC(rgrpc_completion_queue_new(NULL, &err), RGRPC_RESULT_NULL_PARAMETER);
  CHECK(err != NULL);
  CHECK_NONEMPTY(rgrpc_error_message(err));
  rgrpc_error_free(err);
  CHECK_EQ_INT(rgrpc_completion_queue_fd(NULL), -1);
  CHECK_RC(rgrpc_completion_queue_next(NULL, &c), RGRPC_RESULT_NULL_PARAMETER);
  CHECK_RC(rgrpc_completion_queue_next(cq, NULL), RGRPC_RESULT_NULL_PARAMETER);
  CHECK_RC(rgrpc_completion_queue_wait(NULL, 0, &c), RGRPC_RESULT_NULL_PARAMETER);
  CHECK_RC(rgrpc_completion_queue_shutdown(NULL), RGRPC_RESULT_NULL_PARAMETER);
  rgrpc_completion_queue_free(NULL);

  /* Operations refused at the start never complete. */
  rgrpc_channel *ch = tu_channel(NULL, NULL);
  rgrpc_call *call = NULL;
  CHECK_RC(rgrpc_call_start_cq(ch, M_BIDI, NULL, NULL, TAG(0), &call), RGRPC_RESULT_NULL_PARAMETER);
  CHECK(call == NULL);
  CHECK_RC(rgrpc_call_start_cq(ch, "no-slash", NULL, cq, TAG(0), &call), RGRPC_RESULT_INVALID_METHOD);
  CHECK_NONEMPTY(rgrpc_channel_last_error(ch));
  CHECK_RC(rgrpc_channel_watch_state_cq(ch, 99, 10, cq, TAG(0)), RGRPC_RESULT_INVALID_ARGUMENT);
  CHECK_RC(rgrpc_call_unary_cq(ch, M_EMPTY, NULL, NULL, 3, cq, TAG(0), NULL),
           RGRPC_RESULT_NULL_PARAMETER);
  CHECK_RC(rgrpc_call_send_cq(NULL, NULL, 0, 0, cq, TAG(0)), RGRPC_RESULT_NULL_PARAMETER);
  CHECK_RC(rgrpc_call_recv_cq(NULL, cq, TAG(0)), RGRPC_RESULT_NULL_PARAMETER);
  CHECK_RC(rgrpc_completion_queue_wait(cq, 50, &c), RGRPC_RESULT_TIMEOUT);

  /* After shutdown: refused, and the queue says it is finished. */
  CHECK_OK(rgrpc_completion_queue_shutdown(cq));
  CHECK_OK(rgrpc_completion_queue_shutdown(cq)); /* idempotent */
  CHECK_RC(rgrpc_call_unary_cq(ch, M_EMPTY, NULL, NULL, 0, cq, TAG(0), NULL),
           RGRPC_RESULT_QUEUE_SHUTDOWN);
  CHECK_NONEMPTY(rgrpc_channel_last_error(ch));
  CHECK_RC(rgrpc_completion_queue_next(cq, &c), RGRPC_RESULT_QUEUE_SHUTDOWN);
  CHECK_RC(rgrpc_completion_queue_wait(cq, -1, &c), RGRPC_RESULT_QUEUE_SHUTDOWN);
  CHECK(readable(cq, 0));
  rgrpc_completion_queue_free(cq);
  rgrpc_channel_free(ch);
}

/* Many unary calls in flight on one queue, taken through the descriptor. */
static void test_unary_many(void) {
  enum { N = 64 };
  rgrpc_channel *ch = tu_channel(NULL, NULL);
  rgrpc_completion_queue *cq = new_cq();
  tu_pb req = tu_simple_request(100, 10, 0, NULL);
  for (int i = 0; i < N; i++)
    CHECK_OK(rgrpc_call_unary_cq(ch, M_UNARY, NULL, req.data, req.len, cq, TAG(i), NULL));
  tu_pb_free(&req);
  int seen[N] = {0};
  for (int i = 0; i < N; i++) {
    rgrpc_completion c = take(cq);
    CHECK_EQ_INT(c.op, RGRPC_OP_UNARY);
    CHECK_OK(c.result);
    int idx = (int)((int *)c.tag - tags);
    CHECK(idx >= 0 && idx < N);
    CHECK_MSG(seen[idx] == 0, "tag %d completed twice", idx);
    seen[idx] = 1;
    CHECK_STATUS(c.status, RGRPC_STATUS_CODE_OK);
    CHECK(c.message != NULL);
    CHECK_EQ_INT(tu_buffer_body_len(c.message), 100);
    rgrpc_buffer_free(c.message);
    rgrpc_status_free(c.status);
  }
  rgrpc_completion c;
  CHECK_RC(rgrpc_completion_queue_next(cq, &c), RGRPC_RESULT_QUEUE_EMPTY);
  CHECK(!readable(cq, 0)); /* drained: no longer readable */
  end_cq(cq);
  rgrpc_channel_free(ch);
}

/* A failing unary call: the status comes in the completion, no message;
 * and a deadline that passes. Both waited for with _wait. */
static void test_unary_failures(void) {
  rgrpc_channel *ch = tu_channel(NULL, NULL);
  rgrpc_completion_queue *cq = new_cq();
  tu_pb req = tu_simple_request(10, 0, 9 /* FAILED_PRECONDITION */, "no way");
  CHECK_OK(rgrpc_call_unary_cq(ch, M_UNARY, NULL, req.data, req.len, cq, TAG(1), NULL));
  tu_pb_free(&req);
  rgrpc_completion c;
  CHECK_OK(rgrpc_completion_queue_wait(cq, 10000, &c));
  CHECK(c.tag == TAG(1));
  CHECK_EQ_INT(c.op, RGRPC_OP_UNARY);
  CHECK_RC(c.result, RGRPC_RESULT_RPC_FAILED);
  CHECK(c.message == NULL);
  CHECK_STATUS(c.status, RGRPC_STATUS_CODE_FAILED_PRECONDITION);
  CHECK_STR(rgrpc_status_details(c.status), "no way");
  rgrpc_status_free(c.status);

  /* A server stream that takes 2 s, with a 200 ms deadline. */
  rgrpc_call_options *o = rgrpc_call_options_new();
  CHECK_OK(rgrpc_call_options_set_timeout_ms(o, 200));
  int32_t sizes[] = {1, 1};
  int32_t intervals[] = {1000000, 1000000};
  tu_pb ss = tu_streaming_output_request(sizes, intervals, 2, 0, 0, NULL);
  rgrpc_call *call = NULL;
  CHECK_OK(rgrpc_call_unary_cq(ch, M_SERVER_STREAM, o, ss.data, ss.len, cq, TAG(2), &call));
  CHECK(call != NULL);
  int64_t t0 = tu_now_ms();
  CHECK_OK(rgrpc_completion_queue_wait(cq, 10000, &c));
  CHECK(tu_now_ms() - t0 < 1500 * tu_slow());
  CHECK(c.tag == TAG(2));
  CHECK_RC(c.result, RGRPC_RESULT_RPC_FAILED);
  CHECK_STATUS(c.status, RGRPC_STATUS_CODE_DEADLINE_EXCEEDED);
  rgrpc_status_free(c.status);
  CHECK(!rgrpc_call_is_active(call));
  rgrpc_call_free(call);

  /* Cancelled through its handle. */
  CHECK_OK(rgrpc_call_unary_cq(ch, M_SERVER_STREAM, NULL, ss.data, ss.len, cq, TAG(3), &call));
  CHECK_OK(rgrpc_call_cancel(call));
  c = expect(cq, TAG(3), RGRPC_OP_UNARY, RGRPC_RESULT_RPC_FAILED);
  CHECK_STATUS(c.status, RGRPC_STATUS_CODE_CANCELLED);
  rgrpc_status_free(c.status);
  rgrpc_call_free(call);
  tu_pb_free(&ss);
  rgrpc_call_options_free(o);
  end_cq(cq);
  rgrpc_channel_free(ch);
}

/* Server streaming, every step on the queue: start, send, recv until the
 * end, finish; the initial metadata. */
static void test_server_streaming(void) {
  rgrpc_channel *ch = tu_channel(NULL, NULL);
  rgrpc_completion_queue *cq = new_cq();
  rgrpc_call_options *o = tu_opts_md("x-grpc-test-echo-initial", "hello");
  rgrpc_call *call = NULL;
  CHECK_OK(rgrpc_call_start_cq(ch, M_SERVER_STREAM, o, cq, TAG(0), &call));
  rgrpc_call_options_free(o);
  expect(cq, TAG(0), RGRPC_OP_START, RGRPC_RESULT_OK);
  int32_t sizes[] = {10, 20, 30};
  tu_pb req = tu_streaming_output_request(sizes, NULL, 3, 0, 0, NULL);
  CHECK_OK(rgrpc_call_send_cq(call, req.data, req.len, RGRPC_SEND_LAST, cq, TAG(1)));
  tu_pb_free(&req); /* copied: freeing it at once is fine */
  CHECK_OK(rgrpc_call_initial_metadata_cq(call, cq, TAG(2)));
  bool sent = false, md = false;
  while (!sent || !md) {
    rgrpc_completion c = take(cq);
    CHECK_OK(c.result);
    if (c.tag == TAG(1)) {
      CHECK_EQ_INT(c.op, RGRPC_OP_SEND);
      sent = true;
    } else {
      CHECK(c.tag == TAG(2));
      CHECK_EQ_INT(c.op, RGRPC_OP_INITIAL_METADATA);
      md = true;
    }
  }
  const rgrpc_metadata *imd = NULL;
  CHECK_OK(rgrpc_call_initial_metadata(call, &imd));
  char buf[32];
  CHECK(tu_md_string(imd, "x-grpc-test-echo-initial", buf, sizeof buf));
  CHECK_STR(buf, "hello");
  for (int i = 0; i < 3; i++) {
    CHECK_OK(rgrpc_call_recv_cq(call, cq, TAG(3)));
    rgrpc_completion c = expect(cq, TAG(3), RGRPC_OP_RECV, RGRPC_RESULT_OK);
    CHECK(c.status == NULL);
    CHECK_EQ_INT(tu_buffer_body_len(c.message), sizes[i]);
    rgrpc_buffer_free(c.message);
  }
  CHECK_OK(rgrpc_call_recv_cq(call, cq, TAG(3)));
  rgrpc_completion c = expect(cq, TAG(3), RGRPC_OP_RECV, RGRPC_RESULT_END_OF_STREAM);
  CHECK(c.message == NULL);
  CHECK_OK(rgrpc_call_finish_cq(call, cq, TAG(5)));
  c = expect(cq, TAG(5), RGRPC_OP_FINISH, RGRPC_RESULT_OK);
  CHECK_STATUS(c.status, RGRPC_STATUS_CODE_OK);
  rgrpc_status_free(c.status);
  rgrpc_call_free(call);
  end_cq(cq);
  rgrpc_channel_free(ch);
}

/* Bidi ping-pong driven only by completions (each step started from the
 * previous one's completion), with an in-place buffer; then client
 * streaming with close-send. */
static void test_bidi_and_client_streaming(void) {
  rgrpc_channel *ch = tu_channel(NULL, NULL);
  rgrpc_completion_queue *cq = new_cq();
  rgrpc_call *call = NULL;
  CHECK_OK(rgrpc_call_start_cq(ch, M_BIDI, NULL, cq, TAG(0), &call));
  expect(cq, TAG(0), RGRPC_OP_START, RGRPC_RESULT_OK);
  enum { ROUNDS = 50 };
  for (int i = 1; i <= ROUNDS; i++) {
    int32_t size = i;
    tu_pb req = tu_streaming_output_request(&size, NULL, 1, 0, 0, NULL);
    if (i % 2) {
      CHECK_OK(rgrpc_call_send_cq(call, req.data, req.len, 0, cq, TAG(1)));
    } else {
      CHECK_OK(rgrpc_call_send_buffer_cq(call, tu_in_place(&req), 0, cq, TAG(1)));
    }
    tu_pb_free(&req);
    CHECK_OK(rgrpc_call_recv_cq(call, cq, TAG(2)));
    int got = 0;
    while (got < 2) {
      rgrpc_completion c = take(cq);
      CHECK_OK(c.result);
      if (c.tag == TAG(2)) {
        CHECK_EQ_INT(c.op, RGRPC_OP_RECV);
        CHECK_EQ_INT(tu_buffer_body_len(c.message), i);
        rgrpc_buffer_free(c.message);
      } else {
        CHECK(c.tag == TAG(1));
        CHECK_EQ_INT(c.op, RGRPC_OP_SEND);
      }
      got++;
    }
  }
  CHECK_OK(rgrpc_call_close_send_cq(call, cq, TAG(3)));
  expect(cq, TAG(3), RGRPC_OP_CLOSE_SEND, RGRPC_RESULT_OK);
  CHECK_OK(rgrpc_call_send_cq(call, (const uint8_t *)"x", 1, 0, cq, TAG(4)));
  expect(cq, TAG(4), RGRPC_OP_SEND, RGRPC_RESULT_SEND_CLOSED);
  CHECK_OK(rgrpc_call_finish_cq(call, cq, TAG(5)));
  rgrpc_completion c = expect(cq, TAG(5), RGRPC_OP_FINISH, RGRPC_RESULT_OK);
  rgrpc_status_free(c.status);
  rgrpc_call_free(call);

  /* Client streaming: three 1 KiB payloads, the aggregate comes back. */
  CHECK_OK(rgrpc_call_start_cq(ch, M_CLIENT_STREAM, NULL, cq, TAG(0), &call));
  tu_pb req = tu_streaming_input_request(1024);
  for (int i = 0; i < 3; i++) {
    CHECK_OK(rgrpc_call_send_cq(call, req.data, req.len, 0, cq, TAG(1)));
    /* START may come before or after the first send. */
    rgrpc_completion d = take(cq);
    if (d.op == RGRPC_OP_START) d = take(cq);
    CHECK(d.tag == TAG(1));
    CHECK_OK(d.result);
  }
  tu_pb_free(&req);
  CHECK_OK(rgrpc_call_close_send_cq(call, cq, TAG(3)));
  expect(cq, TAG(3), RGRPC_OP_CLOSE_SEND, RGRPC_RESULT_OK);
  CHECK_OK(rgrpc_call_recv_cq(call, cq, TAG(2)));
  c = expect(cq, TAG(2), RGRPC_OP_RECV, RGRPC_RESULT_OK);
  CHECK_EQ_INT(tu_aggregated_payload_size(rgrpc_buffer_data(c.message), rgrpc_buffer_len(c.message)),
               3 * 1024);
  rgrpc_buffer_free(c.message);
  CHECK_OK(rgrpc_call_finish_cq(call, cq, TAG(5)));
  c = expect(cq, TAG(5), RGRPC_OP_FINISH, RGRPC_RESULT_OK);
  rgrpc_status_free(c.status);
  rgrpc_call_free(call);
  end_cq(cq);
  rgrpc_channel_free(ch);
}

/* Waiting for the initial metadata does not take the receive side: a
 * receive started beside it waits for the message (it was refused with
 * BUSY), and a unary call on a connecting channel with its metadata asked
 * for at once still completes (its own receive was refused and it hung). */
static void test_initial_metadata_beside_receive(void) {
  rgrpc_channel *ch = tu_channel(NULL, NULL);
  rgrpc_completion_queue *cq = new_cq();
  rgrpc_call_options *o = tu_opts_md("x-rgrpc-sleep-ms", "300");
  rgrpc_call *call = NULL;
  CHECK_OK(rgrpc_call_start_cq(ch, M_SERVER_STREAM, o, cq, TAG(0), &call));
  int32_t size = 7;
  tu_pb req = tu_streaming_output_request(&size, NULL, 1, 0, 0, NULL);
  CHECK_OK(rgrpc_call_send_cq(call, req.data, req.len, RGRPC_SEND_LAST, cq, TAG(1)));
  tu_pb_free(&req);
  CHECK_OK(rgrpc_call_initial_metadata_cq(call, cq, TAG(2)));
  CHECK_OK(rgrpc_call_recv_cq(call, cq, TAG(3)));
  int seen = 0;
  while (seen != 0xf) {
    rgrpc_completion c = take(cq);
    int idx = (int)((int *)c.tag - tags);
    CHECK(idx >= 0 && idx < 4);
    CHECK_MSG(c.result == RGRPC_RESULT_OK, "op %u: %s", (unsigned)c.op, rgrpc_result_name(c.result));
    if (idx == 3) {
      CHECK_EQ_INT(tu_buffer_body_len(c.message), 7);
      rgrpc_buffer_free(c.message);
    }
    seen |= 1 << idx;
  }
  rgrpc_call_free(call);
  rgrpc_channel_free(ch);

  /* A fresh channel (still connecting): unary, then its metadata at once. */
  ch = tu_channel(NULL, NULL);
  req = tu_simple_request(5, 0, 0, NULL);
  CHECK_OK(rgrpc_call_unary_cq(ch, M_UNARY, o, req.data, req.len, cq, TAG(4), &call));
  tu_pb_free(&req);
  CHECK_OK(rgrpc_call_initial_metadata_cq(call, cq, TAG(5)));
  bool unary = false, md = false;
  while (!unary || !md) {
    rgrpc_completion c = take(cq);
    CHECK_OK(c.result);
    if (c.tag == TAG(4)) {
      CHECK_EQ_INT(tu_buffer_body_len(c.message), 5);
      rgrpc_buffer_free(c.message);
      rgrpc_status_free(c.status);
      unary = true;
    } else {
      CHECK(c.tag == TAG(5));
      md = true;
    }
  }
  rgrpc_call_free(call);
  rgrpc_call_options_free(o);
  end_cq(cq);
  rgrpc_channel_free(ch);
}

/* Pending operations complete when their call is cancelled or freed. */
static void test_cancel_and_free_complete_pending(void) {
  rgrpc_channel *ch = tu_channel(NULL, NULL);
  rgrpc_completion_queue *cq = new_cq();
  rgrpc_call *call = NULL;
  CHECK_OK(rgrpc_call_start_cq(ch, M_BIDI, NULL, cq, TAG(0), &call));
  expect(cq, TAG(0), RGRPC_OP_START, RGRPC_RESULT_OK);
  CHECK_OK(rgrpc_call_recv_cq(call, cq, TAG(1)));
  /* Nothing was sent, so the receive is certainly pending: one receive at
   * a time (refused at once, with a reason, and never completes). */
  CHECK_RC(rgrpc_call_recv_cq(call, cq, TAG(9)), RGRPC_RESULT_BUSY);
  CHECK_NONEMPTY(rgrpc_call_last_error(call));
  CHECK_OK(rgrpc_call_finish_cq(call, cq, TAG(2)));
  CHECK_RC(rgrpc_completion_queue_wait(cq, 200, &(rgrpc_completion){0}), RGRPC_RESULT_TIMEOUT);
  CHECK_OK(rgrpc_call_cancel(call));
  bool recv = false, fin = false;
  while (!recv || !fin) {
    rgrpc_completion c = take(cq);
    if (c.tag == TAG(1)) {
      CHECK_RC(c.result, RGRPC_RESULT_END_OF_STREAM);
      recv = true;
    } else {
      CHECK(c.tag == TAG(2));
      CHECK_RC(c.result, RGRPC_RESULT_RPC_FAILED);
      CHECK_STATUS(c.status, RGRPC_STATUS_CODE_CANCELLED);
      rgrpc_status_free(c.status);
      fin = true;
    }
  }
  rgrpc_call_free(call);

  /* Freed with a receive pending: the receive still completes. */
  CHECK_OK(rgrpc_call_start_cq(ch, M_BIDI, NULL, cq, TAG(0), &call));
  CHECK_OK(rgrpc_call_recv_cq(call, cq, TAG(1)));
  rgrpc_call_free(call);
  bool started = false;
  recv = false;
  while (!recv || !started) {
    rgrpc_completion c = take(cq);
    if (c.tag == TAG(0)) {
      started = true; /* OK or CALL_ENDED: the free may come first */
    } else {
      CHECK(c.tag == TAG(1));
      CHECK_RC(c.result, RGRPC_RESULT_END_OF_STREAM);
      recv = true;
    }
  }
  end_cq(cq);
  rgrpc_channel_free(ch);
}

/* Shutdown with operations outstanding: they still come, then the end. */
static void test_shutdown_delivers_outstanding(void) {
  rgrpc_channel *ch = tu_channel(NULL, NULL);
  rgrpc_completion_queue *cq = new_cq();
  int32_t size = 5, interval = 300000;
  tu_pb ss = tu_streaming_output_request(&size, &interval, 1, 0, 0, NULL);
  for (int i = 0; i < 4; i++)
    CHECK_OK(rgrpc_call_unary_cq(ch, M_SERVER_STREAM, NULL, ss.data, ss.len, cq, TAG(i), NULL));
  tu_pb_free(&ss);
  CHECK_OK(rgrpc_completion_queue_shutdown(cq));
  CHECK_RC(rgrpc_call_unary_cq(ch, M_EMPTY, NULL, NULL, 0, cq, TAG(9), NULL),
           RGRPC_RESULT_QUEUE_SHUTDOWN);
  int n = 0;
  rgrpc_completion c;
  for (;;) {
    rgrpc_result rc = rgrpc_completion_queue_wait(cq, 10000, &c);
    if (rc == RGRPC_RESULT_QUEUE_SHUTDOWN) break;
    CHECK_OK(rc);
    CHECK_OK(c.result);
    CHECK(c.tag != TAG(9));
    rgrpc_buffer_free(c.message);
    rgrpc_status_free(c.status);
    n++;
  }
  CHECK_EQ_INT(n, 4);
  CHECK(readable(cq, 0));
  rgrpc_completion_queue_free(cq);

  /* Freed with operations outstanding and completions untaken: nothing
   * leaks (valgrind), nothing crashes when they complete later. */
  cq = new_cq();
  ss = tu_streaming_output_request(&size, &interval, 1, 0, 0, NULL);
  CHECK_OK(rgrpc_call_unary_cq(ch, M_SERVER_STREAM, NULL, ss.data, ss.len, cq, TAG(0), NULL));
  tu_pb_free(&ss);
  CHECK_OK(rgrpc_call_unary_cq(ch, M_EMPTY, NULL, NULL, 0, cq, TAG(1), NULL));
  CHECK(readable(cq, 5000 * (int)tu_slow())); /* the EmptyCall is in */
  rgrpc_completion_queue_free(cq);
  tu_sleep_ms(500); /* the stream completes into the freed queue */
  rgrpc_channel_free(ch);
}

/* Connectivity watches and the ready future on the queue. */
static void test_connectivity(void) {
  rgrpc_completion_queue *cq = new_cq();
  rgrpc_channel *ch = tu_channel(NULL, NULL);
  CHECK_EQ_INT(rgrpc_channel_get_state(ch, false), RGRPC_CONNECTIVITY_STATE_IDLE);
  /* Nothing changes by itself: the watch times out with the state. */
  CHECK_OK(rgrpc_channel_watch_state_cq(ch, RGRPC_CONNECTIVITY_STATE_IDLE, 100, cq, TAG(0)));
  rgrpc_completion c = expect(cq, TAG(0), RGRPC_OP_STATE_CHANGE, RGRPC_RESULT_TIMEOUT);
  CHECK_EQ_INT(c.state, RGRPC_CONNECTIVITY_STATE_IDLE);
  /* A watch, then the ready future starts connecting. */
  CHECK_OK(rgrpc_channel_watch_state_cq(ch, RGRPC_CONNECTIVITY_STATE_IDLE, -1, cq, TAG(1)));
  rgrpc_ready_future *f = NULL;
  CHECK_OK(rgrpc_channel_ready_future_cq(ch, cq, TAG(2), &f));
  bool watched = false, ready = false;
  while (!watched || !ready) {
    c = take(cq);
    if (c.tag == TAG(1)) {
      CHECK_EQ_INT(c.op, RGRPC_OP_STATE_CHANGE);
      CHECK_OK(c.result);
      CHECK(c.state == RGRPC_CONNECTIVITY_STATE_CONNECTING ||
            c.state == RGRPC_CONNECTIVITY_STATE_READY);
      watched = true;
    } else {
      CHECK(c.tag == TAG(2));
      CHECK_EQ_INT(c.op, RGRPC_OP_READY);
      CHECK_OK(c.result);
      ready = true;
    }
  }
  rgrpc_ready_future_free(f);
  CHECK_EQ_INT(rgrpc_channel_get_state(ch, false), RGRPC_CONNECTIVITY_STATE_READY);
  rgrpc_channel_free(ch);

  /* A ready future on a channel that cannot connect: cancelled by free. */
  ch = tu_channel("127.0.0.1:1", NULL);
  CHECK_OK(rgrpc_channel_ready_future_cq(ch, cq, TAG(3), &f));
  CHECK_RC(rgrpc_completion_queue_wait(cq, 100, &c), RGRPC_RESULT_TIMEOUT);
  rgrpc_ready_future_free(f);
  expect(cq, TAG(3), RGRPC_OP_READY, RGRPC_RESULT_CANCELLED);
  /* Closing the channel ends a state watch: it sees SHUTDOWN. */
  CHECK_OK(rgrpc_channel_watch_state_cq(ch, rgrpc_channel_get_state(ch, false), -1, cq, TAG(4)));
  CHECK_OK(rgrpc_channel_close(ch));
  for (;;) {
    c = expect(cq, TAG(4), RGRPC_OP_STATE_CHANGE, RGRPC_RESULT_OK);
    if (c.state == RGRPC_CONNECTIVITY_STATE_SHUTDOWN) break;
    CHECK_OK(rgrpc_channel_watch_state_cq(ch, c.state, -1, cq, TAG(4)));
  }
  rgrpc_channel_free(ch);
  end_cq(cq);
}

int main(void) {
  RUN_TEST(test_queue_alone);
  RUN_TEST(test_unary_many);
  RUN_TEST(test_unary_failures);
  RUN_TEST(test_server_streaming);
  RUN_TEST(test_bidi_and_client_streaming);
  RUN_TEST(test_initial_metadata_beside_receive);
  RUN_TEST(test_cancel_and_free_complete_pending);
  RUN_TEST(test_shutdown_delivers_outstanding);
  RUN_TEST(test_connectivity);
  rgrpc_shutdown();
  return 0;
}

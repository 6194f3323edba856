/* rgrpc inside a libuv loop: the completion queue's descriptor is watched
 * with uv_poll, so every completion is handled on the loop's thread, with
 * a uv_timer beside it. 500 unary calls in flight, then a server stream.
 *
 * Against the official grpc.testing.TestService (any interop server).
 * Usage: libuv_loop [target]   (default 127.0.0.1:50051) */
#include <rgrpc.h>
#include <uv.h>

#include <stdio.h>

#define SVC "/grpc.testing.TestService/"
enum { UNARY_CALLS = 500, STREAM_MESSAGES = 3 };

static rgrpc_channel *ch;
static rgrpc_completion_queue *cq;
static uv_poll_t cq_watch;
static uv_timer_t ticker;
static rgrpc_call *stream;
static int unary_ok, unary_failed, stream_messages, ticks, failures;
static char unary_tag, stream_tag;

static void start_stream(void) {
  /* StreamingOutputCallRequest asking for responses of 10, 20, 30 bytes. */
  static const uint8_t req[] = {0x12, 2, 0x08, 10, 0x12, 2, 0x08, 20, 0x12, 2, 0x08, 30};
  rgrpc_call_start_cq(ch, SVC "StreamingOutputCall", NULL, cq, &stream_tag, &stream);
  rgrpc_call_send_cq(stream, req, sizeof req, RGRPC_SEND_LAST, cq, &stream_tag);
  rgrpc_call_recv_cq(stream, cq, &stream_tag);
}

static void done(void) {
  uv_poll_stop(&cq_watch);
  uv_timer_stop(&ticker);
  uv_close((uv_handle_t *)&cq_watch, NULL);
  uv_close((uv_handle_t *)&ticker, NULL);
}

/* The queue's descriptor is readable: take every waiting completion. */
static void on_completions(uv_poll_t *w, int status, int events) {
  (void)w; (void)events;
  if (status < 0) { failures++; done(); return; }
  rgrpc_completion c;
  while (rgrpc_completion_queue_next(cq, &c) == RGRPC_RESULT_OK) {
    if (c.tag == &unary_tag) {
      if (c.result == RGRPC_RESULT_OK) unary_ok++; else unary_failed++;
      if (unary_ok + unary_failed == UNARY_CALLS) start_stream();
    } else if (c.op == RGRPC_OP_RECV) {
      if (c.result == RGRPC_RESULT_OK) {
        printf("stream message of %zu bytes\n", rgrpc_buffer_len(c.message));
        stream_messages++;
        rgrpc_call_recv_cq(stream, cq, &stream_tag);
      } else {
        rgrpc_call_finish_cq(stream, cq, &stream_tag); /* end of stream */
      }
    } else if (c.op == RGRPC_OP_FINISH) {
      printf("stream status %s\n", rgrpc_status_code_name(rgrpc_status_get_code(c.status)));
      failures += c.result != RGRPC_RESULT_OK;
      done();
    } else if (c.result != RGRPC_RESULT_OK) {
      fprintf(stderr, "op %u failed: %s\n", (unsigned)c.op, rgrpc_result_name(c.result));
      failures++;
    }
    rgrpc_buffer_free(c.message);
    rgrpc_status_free(c.status);
  }
}

static void on_tick(uv_timer_t *t) { (void)t; ticks++; }

int main(int argc, char **argv) {
  if (rgrpc_channel_new(argc > 1 ? argv[1] : "127.0.0.1:50051", NULL, NULL, &ch, NULL)) return 1;
  if (rgrpc_completion_queue_new(&cq, NULL)) return 1;
  uv_loop_t *loop = uv_default_loop();
  uv_poll_init(loop, &cq_watch, rgrpc_completion_queue_fd(cq));
  uv_poll_start(&cq_watch, UV_READABLE, on_completions);
  uv_timer_init(loop, &ticker);
  uv_timer_start(&ticker, on_tick, 50, 50);

  const uint8_t unary_req[] = {0x10, 10}; /* SimpleRequest{response_size: 10} */
  for (int i = 0; i < UNARY_CALLS; i++)
    rgrpc_call_unary_cq(ch, SVC "UnaryCall", NULL, unary_req, sizeof unary_req, cq, &unary_tag, NULL);

  uv_run(loop, UV_RUN_DEFAULT);
  printf("unary: %d OK, %d failed; %d timer ticks on the same loop\n", unary_ok, unary_failed, ticks);

  rgrpc_call_free(stream);
  rgrpc_completion_queue_free(cq);
  rgrpc_channel_free(ch);
  uv_loop_close(loop);
  rgrpc_shutdown();
  return failures || unary_ok != UNARY_CALLS || stream_messages != STREAM_MESSAGES;
}

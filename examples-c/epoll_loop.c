/* One thread, one epoll loop: 1,000 unary calls in flight at once and a
 * bidirectional stream beside them, every result taken from a completion
 * queue whose file descriptor sits in the loop with the program's own
 * descriptors (here a timerfd printing progress).
 *
 * Against the official grpc.testing.TestService (any interop server).
 * Usage: epoll_loop [target]   (default 127.0.0.1:50051) */
#define _GNU_SOURCE
#include <rgrpc.h>

#include <stdint.h>
#include <stdio.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <unistd.h>

#define SVC "/grpc.testing.TestService/"
enum { UNARY_CALLS = 1000, BIDI_ROUNDS = 100 };

/* Tags: which operation a completion is for. The unary calls share one
 * tag (the completion says which operation it is); the stream has two. */
static char unary_tag, bidi_send_tag, bidi_recv_tag, bidi_other_tag;

/* StreamingOutputCallRequest{response_parameters: {size: n}} (n < 128). */
static const uint8_t *size_request(uint8_t buf[4], uint8_t n) {
  buf[0] = 0x12; buf[1] = 2; buf[2] = 0x08; buf[3] = n;
  return buf;
}

int main(int argc, char **argv) {
  rgrpc_channel *ch;
  rgrpc_completion_queue *cq;
  if (rgrpc_channel_new(argc > 1 ? argv[1] : "127.0.0.1:50051", NULL, NULL, &ch, NULL)) return 1;
  if (rgrpc_completion_queue_new(&cq, NULL)) return 1;

  /* The loop watches the queue (level-triggered) and a 100 ms timer. */
  int ep = epoll_create1(0);
  int timer = timerfd_create(CLOCK_MONOTONIC, 0);
  struct itimerspec every = {{0, 100000000}, {0, 100000000}};
  timerfd_settime(timer, 0, &every, NULL);
  struct epoll_event ev = {.events = EPOLLIN, .data.fd = rgrpc_completion_queue_fd(cq)};
  epoll_ctl(ep, EPOLL_CTL_ADD, ev.data.fd, &ev);
  ev.data.fd = timer;
  epoll_ctl(ep, EPOLL_CTL_ADD, timer, &ev);

  /* 1,000 unary calls (SimpleRequest{response_size: 10}), all at once. */
  const uint8_t unary_req[] = {0x10, 10};
  for (int i = 0; i < UNARY_CALLS; i++)
    rgrpc_call_unary_cq(ch, SVC "UnaryCall", NULL, unary_req, sizeof unary_req, cq, &unary_tag, NULL);

  /* A bidi stream: ping-pong, each step started from the last completion. */
  rgrpc_call *bidi;
  uint8_t req[4];
  int rounds = 0;
  rgrpc_call_start_cq(ch, SVC "FullDuplexCall", NULL, cq, &bidi_other_tag, &bidi);
  rgrpc_call_send_cq(bidi, size_request(req, 1), 4, 0, cq, &bidi_send_tag);
  rgrpc_call_recv_cq(bidi, cq, &bidi_recv_tag);

  int unary_ok = 0, unary_failed = 0, ticks = 0, bidi_done = 0, failures = 0;
  while (unary_ok + unary_failed < UNARY_CALLS || !bidi_done) {
    struct epoll_event events[4];
    int n = epoll_wait(ep, events, 4, 10000);
    if (n <= 0) { fprintf(stderr, "nothing for 10 s\n"); failures++; break; }
    for (int e = 0; e < n; e++) {
      if (events[e].data.fd == timer) {
        uint64_t expirations;
        if (read(timer, &expirations, sizeof expirations) > 0) ticks++;
        continue;
      }
      rgrpc_completion c;
      while (rgrpc_completion_queue_next(cq, &c) == RGRPC_RESULT_OK) {
        if (c.tag == &unary_tag) {
          if (c.result == RGRPC_RESULT_OK) unary_ok++; else unary_failed++;
        } else if (c.tag == &bidi_recv_tag && c.result == RGRPC_RESULT_OK) {
          if (++rounds < BIDI_ROUNDS) {  /* the answer came: next ping */
            rgrpc_call_send_cq(bidi, size_request(req, (uint8_t)(rounds % 100 + 1)), 4, 0, cq,
                               &bidi_send_tag);
            rgrpc_call_recv_cq(bidi, cq, &bidi_recv_tag);
          } else {
            rgrpc_call_close_send_cq(bidi, cq, &bidi_other_tag);
            rgrpc_call_finish_cq(bidi, cq, &bidi_other_tag);
          }
        } else if (c.op == RGRPC_OP_FINISH) {
          printf("bidi stream: %d rounds, status %s\n", rounds,
                 rgrpc_status_code_name(rgrpc_status_get_code(c.status)));
          failures += c.result != RGRPC_RESULT_OK;
          bidi_done = 1;
        } else if (c.result != RGRPC_RESULT_OK) {
          fprintf(stderr, "op %u failed: %s\n", (unsigned)c.op, rgrpc_result_name(c.result));
          failures++;
          if (c.tag == &bidi_recv_tag) rgrpc_call_finish_cq(bidi, cq, &bidi_other_tag);
        }
        rgrpc_buffer_free(c.message); /* both accept NULL */
        rgrpc_status_free(c.status);
      }
    }
  }
  printf("unary: %d OK, %d failed; the loop also served %d timer ticks\n", unary_ok, unary_failed,
         ticks);

  rgrpc_call_free(bidi);
  rgrpc_completion_queue_free(cq);
  rgrpc_channel_free(ch);
  close(timer);
  close(ep);
  rgrpc_shutdown();
  return failures || unary_failed || unary_ok != UNARY_CALLS || rounds != BIDI_ROUNDS;
}

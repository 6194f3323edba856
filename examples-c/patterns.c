/* All four gRPC patterns with one call object, against the official
 * grpc.testing.TestService (any interop server).
 * Messages are protobuf; to stay dependency-free this example writes the few
 * bytes it needs by hand (real programs use protobuf-c, nanopb, ...).
 * Usage: patterns [target]   (default 127.0.0.1:50051) */
#include <rgrpc.h>
#include <stdio.h>

#define SVC "/grpc.testing.TestService/"

/* ResponseParameters{size: n} as field `field` (n < 128). */
static size_t response_param(uint8_t *p, uint8_t field, uint8_t n) {
  p[0] = (uint8_t)(field << 3 | 2); p[1] = 2; p[2] = 0x08; p[3] = n;
  return 4;
}

static int finish(rgrpc_call *call, const char *what) {
  const rgrpc_status *st = NULL;
  rgrpc_result rc = rgrpc_call_finish(call, &st);
  printf("%-17s -> %s %s\n", what, rgrpc_status_code_name(rgrpc_status_get_code(st)),
         rgrpc_status_details(st));
  rgrpc_status_free(st);
  rgrpc_call_free(call);
  return rc == RGRPC_RESULT_OK ? 0 : 1;
}

static void print_replies(rgrpc_call *call, const char *what) {
  rgrpc_buffer *msg;
  while (rgrpc_call_recv(call, &msg) == RGRPC_RESULT_OK) {
    printf("%-17s <- %zu bytes\n", what, rgrpc_buffer_len(msg));
    rgrpc_buffer_free(msg);
  }
}

int main(int argc, char **argv) {
  rgrpc_channel *ch;
  if (rgrpc_channel_new(argc > 1 ? argv[1] : "127.0.0.1:50051", NULL, NULL, &ch, NULL)) return 1;
  rgrpc_call_options *opts = rgrpc_call_options_new();
  rgrpc_call_options_set_timeout_ms(opts, 5000);
  int failures = 0;
  rgrpc_call *call;

  /* 1. Unary: one request (SimpleRequest{response_size: 10}), one response. */
  const uint8_t unary_req[] = {0x10, 10};
  rgrpc_call_start(ch, SVC "UnaryCall", opts, &call);
  rgrpc_call_send(call, unary_req, sizeof unary_req, RGRPC_SEND_LAST);
  print_replies(call, "unary");
  failures += finish(call, "unary");

  /* 2. Server streaming: one request asking for three responses. */
  uint8_t ss_req[12];
  size_t n = 0;
  n += response_param(ss_req + n, 2, 1);
  n += response_param(ss_req + n, 2, 2);
  n += response_param(ss_req + n, 2, 3);
  rgrpc_call_start(ch, SVC "StreamingOutputCall", opts, &call);
  rgrpc_call_send(call, ss_req, n, RGRPC_SEND_LAST);
  print_replies(call, "server streaming");
  failures += finish(call, "server streaming");

  /* 3. Client streaming: three requests (payload bodies of 3 bytes), one response. */
  const uint8_t cs_req[] = {0x0a, 0x05, 0x12, 0x03, 'a', 'b', 'c'};
  rgrpc_call_start(ch, SVC "StreamingInputCall", opts, &call);
  for (int i = 0; i < 3; i++) rgrpc_call_send(call, cs_req, sizeof cs_req, 0);
  rgrpc_call_close_send(call);
  print_replies(call, "client streaming");
  failures += finish(call, "client streaming");

  /* 4. Bidirectional streaming: ping-pong, one response per request. */
  rgrpc_call_start(ch, SVC "FullDuplexCall", opts, &call);
  for (uint8_t i = 1; i <= 3; i++) {
    uint8_t req[4];
    rgrpc_call_send(call, req, response_param(req, 2, i), 0);
    rgrpc_buffer *msg;
    if (rgrpc_call_recv(call, &msg) == RGRPC_RESULT_OK) {
      printf("%-17s <- %zu bytes\n", "bidi streaming", rgrpc_buffer_len(msg));
      rgrpc_buffer_free(msg);
    }
  }
  rgrpc_call_close_send(call);
  failures += finish(call, "bidi streaming");

  rgrpc_call_options_free(opts);
  rgrpc_channel_free(ch);
  rgrpc_shutdown(); /* at exit: stops the library's threads, frees what it holds */
  return failures ? 1 : 0;
}

/* A program that uses an installed rgrpc, as an application would: built by
 * consumer_test.py outside the source tree (CMake find_package, pkg-config
 * with plain cc), then run against a real server. Makes a unary and a
 * server-streaming call and checks that the header it was compiled with
 * and the library it runs with are the same version.
 * Usage: consumer TARGET */
#include <rgrpc.h>
#include <stdio.h>
#include <string.h>

#define SVC "/grpc.testing.TestService/"

#if !RGRPC_AT_LEAST_VERSION(0, 1, 0)
#error "rgrpc.h is older than 0.1.0"
#endif

#define STR2(x) #x
#define STR(x) STR2(x)

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: consumer TARGET\n");
    return 2;
  }
  /* rgrpc_version() is "rgrpc/X.Y.Z (...)": the header's macros must match. */
  const char *want = "rgrpc/" STR(RGRPC_VERSION_MAJOR) "." STR(RGRPC_VERSION_MINOR) "." STR(
      RGRPC_VERSION_PATCH) " ";
  const char *have = rgrpc_version();
  if (strncmp(have, want, strlen(want)) != 0) {
    fprintf(stderr, "header is %s but the library is %s\n", want, have);
    return 1;
  }

  rgrpc_channel *ch;
  rgrpc_error *err = NULL;
  if (rgrpc_channel_new(argv[1], NULL, NULL, &ch, &err)) {
    fprintf(stderr, "channel: %s\n", rgrpc_error_message(err));
    rgrpc_error_free(err);
    return 1;
  }
  rgrpc_call_options *opts = rgrpc_call_options_new();
  rgrpc_call_options_set_timeout_ms(opts, 10000);
  int failed = 0;

  /* Unary: SimpleRequest{response_size: 42} -> a payload of 42 bytes. */
  const uint8_t req[] = {0x10, 42};
  rgrpc_buffer *reply = NULL;
  const rgrpc_status *st = NULL;
  rgrpc_result rc = rgrpc_call_unary(ch, SVC "UnaryCall", opts, req, sizeof req, &reply, &st);
  if (rc != RGRPC_RESULT_OK || rgrpc_buffer_len(reply) < 42) {
    fprintf(stderr, "unary: %s %s\n", rgrpc_result_name(rc), st ? rgrpc_status_details(st) : "");
    failed = 1;
  }
  rgrpc_buffer_free(reply);
  rgrpc_status_free(st);

  /* Server streaming: three ResponseParameters{size: 1, 2, 3}. */
  const uint8_t ss[] = {0x12, 2, 0x08, 1, 0x12, 2, 0x08, 2, 0x12, 2, 0x08, 3};
  rgrpc_call *call = NULL;
  int messages = 0;
  if (rgrpc_call_start(ch, SVC "StreamingOutputCall", opts, &call) == RGRPC_RESULT_OK &&
      rgrpc_call_send(call, ss, sizeof ss, RGRPC_SEND_LAST) == RGRPC_RESULT_OK) {
    rgrpc_buffer *msg;
    while (rgrpc_call_recv(call, &msg) == RGRPC_RESULT_OK) {
      messages++;
      rgrpc_buffer_free(msg);
    }
  }
  st = NULL;
  rc = call ? rgrpc_call_finish(call, &st) : RGRPC_RESULT_NULL_PARAMETER;
  if (rc != RGRPC_RESULT_OK || messages != 3) {
    fprintf(stderr, "server streaming: %s, %d messages\n", rgrpc_result_name(rc), messages);
    failed = 1;
  }
  rgrpc_status_free(st);
  rgrpc_call_free(call);

  rgrpc_call_options_free(opts);
  rgrpc_channel_free(ch);
  printf("%s: unary and server streaming %s\n", have, failed ? "FAILED" : "ok");
  return failed;
}

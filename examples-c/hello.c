/* The smallest rgrpc program: one unary call.
 * Calls grpc.testing.TestService/UnaryCall with a hand-encoded
 * SimpleRequest{response_size: 5} and prints what came back.
 * Usage: hello [target]   (default 127.0.0.1:50051) */
#include <rgrpc.h>
#include <stdio.h>

int main(int argc, char **argv) {
  const char *target = argc > 1 ? argv[1] : "127.0.0.1:50051";
  rgrpc_channel *ch;
  rgrpc_error *err = NULL;
  if (rgrpc_channel_new(target, NULL, NULL, &ch, &err)) {
    fprintf(stderr, "channel: %s\n", rgrpc_error_message(err));
    rgrpc_error_free(err);
    return 1;
  }
  const uint8_t request[] = {0x10, 0x05}; /* field 2 (response_size) = 5 */
  rgrpc_buffer *reply = NULL;
  const rgrpc_status *status = NULL;
  rgrpc_result rc = rgrpc_call_unary(ch, "/grpc.testing.TestService/UnaryCall", NULL,
                                     request, sizeof request, &reply, &status);
  if (rc == RGRPC_RESULT_OK)
    printf("OK: %zu response bytes\n", rgrpc_buffer_len(reply));
  else
    printf("failed: %s %s (%s)\n", rgrpc_status_code_name(rgrpc_status_get_code(status)),
           rgrpc_status_details(status), rgrpc_result_name(rc));
  rgrpc_buffer_free(reply);
  rgrpc_status_free(status);
  rgrpc_channel_free(ch);
  rgrpc_shutdown(); /* at exit: stops the library's threads, frees what it holds */
  return rc == RGRPC_RESULT_OK ? 0 : 1;
}

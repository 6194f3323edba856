/* Callback-driven calls: a unary future with a completion callback, and a
 * server stream delivered message by message to a callback. Callbacks run
 * on library threads; this program waits for them with rgrpc_call_wait.
 * Usage: callbacks [target]   (default 127.0.0.1:50051) */
#include <rgrpc.h>
#include <stdio.h>

static void on_unary_done(void *user_data, const rgrpc_status *status,
                          const uint8_t *response, size_t len) {
  (void)response;
  printf("[%s] %s, %zu response bytes\n", (const char *)user_data,
         rgrpc_status_code_name(rgrpc_status_get_code(status)), len);
}

static void on_message(void *user_data, const uint8_t *data, size_t len) {
  (void)data;
  int *count = user_data; /* only this callback touches it, one message at a time */
  printf("[stream] message %d: %zu bytes\n", ++*count, len);
}

static void on_done(void *user_data, const rgrpc_status *status) {
  printf("[stream] done after %d messages: %s\n", *(int *)user_data,
         rgrpc_status_code_name(rgrpc_status_get_code(status)));
}

int main(int argc, char **argv) {
  rgrpc_channel *ch;
  if (rgrpc_channel_new(argc > 1 ? argv[1] : "127.0.0.1:50051", NULL, NULL, &ch, NULL)) return 1;

  /* A unary call as a future: returns at once, the callback reports. */
  const uint8_t req[] = {0x10, 42}; /* SimpleRequest{response_size: 42} */
  rgrpc_call *future;
  rgrpc_call_unary_async(ch, "/grpc.testing.TestService/UnaryCall", NULL, req, sizeof req,
                         on_unary_done, "unary", &future);
  if (rgrpc_call_wait(future, 5000) != RGRPC_RESULT_OK) printf("unary: timed out\n");
  rgrpc_call_free(future);

  /* A server stream in push mode: StreamingOutputCallRequest asking for
   * three responses of 5 bytes, 10 ms apart. */
  const uint8_t sreq[] = {0x12, 0x05, 0x08, 5, 0x10, 0x90, 0x4e, 0x12, 0x05, 0x08, 5, 0x10, 0x90,
                          0x4e, 0x12, 0x05, 0x08, 5, 0x10, 0x90, 0x4e};
  int count = 0;
  rgrpc_call *call;
  rgrpc_call_start(ch, "/grpc.testing.TestService/StreamingOutputCall", NULL, &call);
  rgrpc_call_on_message(call, on_message, &count);
  rgrpc_call_on_done(call, on_done, &count);
  rgrpc_call_send(call, sreq, sizeof sreq, RGRPC_SEND_LAST);
  rgrpc_call_wait(call, 5000);
  const rgrpc_status *st = NULL;
  rgrpc_result rc = rgrpc_call_finish(call, &st);
  rgrpc_status_free(st);
  rgrpc_call_free(call);
  rgrpc_channel_free(ch);
  rgrpc_shutdown(); /* at exit: stops the library's threads, frees what it holds */
  return rc == RGRPC_RESULT_OK && count == 3 ? 0 : 1;
}

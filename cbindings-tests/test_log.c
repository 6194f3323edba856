/* Logs into the application: rgrpc_log_set_callback receives the lines of
 * the tracers turned on with rgrpc_log_set_trace (and of the verbosity),
 * from every thread that writes them, nothing when nothing is on; unknown
 * tracers are refused with a message; the destroy callback runs once when
 * the callback is replaced. Against the real grpcio server. */
#include "test_util.h"

#define MAX_LINES 4096

typedef struct {
  pthread_mutex_t mu;
  int n;
  char tracer[MAX_LINES][32];
  char msg[MAX_LINES][160];
  pthread_t thread[MAX_LINES];
  int destroyed;
} sink;

static sink S;

static void on_line(void *ud, rgrpc_log_level level, const char *tracer, const char *message) {
  sink *s = ud;
  (void)level;
  pthread_mutex_lock(&s->mu);
  if (s->n < MAX_LINES) {
    snprintf(s->tracer[s->n], sizeof s->tracer[0], "%s", tracer);
    snprintf(s->msg[s->n], sizeof s->msg[0], "%s", message);
    s->thread[s->n] = pthread_self();
    s->n++;
  }
  pthread_mutex_unlock(&s->mu);
}

static void on_destroy(void *ud) {
  sink *s = ud;
  pthread_mutex_lock(&s->mu);
  s->destroyed++;
  pthread_mutex_unlock(&s->mu);
}

static void reset(void) {
  pthread_mutex_lock(&S.mu);
  S.n = 0;
  pthread_mutex_unlock(&S.mu);
}

/* Lines whose tracer is `tracer` (and, when `needle` is set, whose message
 * contains it). */
static int count(const char *tracer, const char *needle) {
  int c = 0;
  pthread_mutex_lock(&S.mu);
  for (int i = 0; i < S.n; i++)
    if (strcmp(S.tracer[i], tracer) == 0 && (!needle || strstr(S.msg[i], needle))) c++;
  pthread_mutex_unlock(&S.mu);
  return c;
}

static int total(void) {
  pthread_mutex_lock(&S.mu);
  int n = S.n;
  pthread_mutex_unlock(&S.mu);
  return n;
}

static void *calls_main(void *arg) {
  rgrpc_channel *ch = arg;
  for (int i = 0; i < 5; i++) CHECK_CODE(tu_unary_size(ch, NULL, 10, NULL), RGRPC_STATUS_CODE_OK);
  return NULL;
}

static void test_callback_receives_enabled_tracers_only(void) {
  CHECK_OK(rgrpc_log_set_callback(on_line, &S, on_destroy));
  /* Nothing on: no line. */
  CHECK_OK(rgrpc_log_set_trace("none", NULL));
  CHECK_OK(rgrpc_log_set_verbosity(RGRPC_LOG_LEVEL_NONE));
  rgrpc_channel *ch = tu_channel(NULL, NULL);
  CHECK_CODE(tu_unary_size(ch, NULL, 10, NULL), RGRPC_STATUS_CODE_OK);
  rgrpc_channel_free(ch);
  CHECK_MSG(total() == 0, "%d lines with nothing on (first: [%s] %s)", total(), S.tracer[0], S.msg[0]);

  /* api and call: their lines only, from several threads. */
  CHECK_OK(rgrpc_log_set_trace("api,call", NULL));
  ch = tu_channel(NULL, NULL);
  pthread_t t[3];
  for (int i = 0; i < 3; i++) tu_thread_start(&t[i], calls_main, ch);
  for (int i = 0; i < 3; i++) tu_thread_join(t[i]);
  rgrpc_call *call = NULL;
  CHECK_OK(rgrpc_call_start(ch, M_UNARY, NULL, &call));
  rgrpc_call_free(call);
  rgrpc_channel_free(ch);
  CHECK_MSG(count("api", "rgrpc_channel_new") == 1, "no rgrpc_channel_new line");
  CHECK_MSG(count("api", "rgrpc_call_start(/grpc.testing.TestService/UnaryCall)") == 1,
            "no rgrpc_call_start line");
  CHECK_MSG(count("call", "ended: OK") == 15, "%d call lines ended OK", count("call", "ended: OK"));
  CHECK_MSG(count("api", NULL) + count("call", NULL) == total(), "lines of other tracers");
  pthread_mutex_lock(&S.mu);
  int threads = 0;
  for (int i = 0; i < S.n; i++) {
    bool seen = false;
    for (int j = 0; j < i && !seen; j++) seen = pthread_equal(S.thread[i], S.thread[j]);
    if (!seen) threads++;
  }
  pthread_mutex_unlock(&S.mu);
  CHECK_MSG(threads >= 3, "lines from %d threads", threads);

  /* Verbosity INFO: the channel's state changes without their tracer. */
  reset();
  CHECK_OK(rgrpc_log_set_trace("none", NULL));
  CHECK_OK(rgrpc_log_set_verbosity(RGRPC_LOG_LEVEL_INFO));
  ch = tu_channel(NULL, NULL);
  CHECK_CODE(tu_unary_size(ch, NULL, 10, NULL), RGRPC_STATUS_CODE_OK);
  rgrpc_channel_free(ch);
  CHECK_MSG(count("connectivity_state", "is READY") >= 1, "no state change line");
  CHECK_MSG(count("call", NULL) == 0, "DEBUG lines at INFO");
  CHECK_OK(rgrpc_log_set_verbosity(RGRPC_LOG_LEVEL_NONE));
  CHECK_RC(rgrpc_log_set_verbosity(7), RGRPC_RESULT_INVALID_ARGUMENT);

  /* Unknown tracers: refused, with the known names. */
  rgrpc_error *err = NULL;
  CHECK_RC(rgrpc_log_set_trace("call,nonsense", &err), RGRPC_RESULT_INVALID_ARGUMENT);
  CHECK(err != NULL);
  CHECK_MSG(strstr(rgrpc_error_message(err), "nonsense") && strstr(rgrpc_error_message(err), "round_robin"),
            "%s", rgrpc_error_message(err));
  rgrpc_error_free(err);
  CHECK_RC(rgrpc_log_set_trace(NULL, NULL), RGRPC_RESULT_NULL_PARAMETER);

  /* Replacing the callback destroys the old one's user data, once. */
  CHECK_OK(rgrpc_log_set_callback(NULL, NULL, NULL));
  pthread_mutex_lock(&S.mu);
  int destroyed = S.destroyed;
  pthread_mutex_unlock(&S.mu);
  CHECK_EQ_INT(destroyed, 1);
  CHECK_OK(rgrpc_log_set_trace("none", NULL));
}

int main(void) {
  CHECK(pthread_mutex_init(&S.mu, NULL) == 0);
  RUN_TEST(test_callback_receives_enabled_tracers_only);
  pthread_mutex_destroy(&S.mu);
  return 0;
}

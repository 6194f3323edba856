/* Connectivity: channel states, state subscriptions, waiting for READY
 * (blocking and as a future), the reconnect backoff, fail-fast versus
 * wait-for-ready calls, the idle timeout, keepalive, and NULL handling.
 *
 * The last test freezes and then kills the test server
 * (RGRPC_TEST_SERVER_PID), so everything needing it runs first. */
#include "test_util.h"

#include <signal.h>
#include <sys/types.h>

#define S_IDLE RGRPC_CONNECTIVITY_STATE_IDLE
#define S_CONNECTING RGRPC_CONNECTIVITY_STATE_CONNECTING
#define S_READY RGRPC_CONNECTIVITY_STATE_READY
#define S_TF RGRPC_CONNECTIVITY_STATE_TRANSIENT_FAILURE
#define S_SHUTDOWN RGRPC_CONNECTIVITY_STATE_SHUTDOWN

/* Nothing listens on port 1: every connection attempt is refused at once. */
#define REFUSED_TARGET "127.0.0.1:1"

static const char *sname(uint32_t s) { return rgrpc_connectivity_state_name(s); }

/* The transitions of doc/connectivity-semantics-and-api.md (grpc/grpc). */
static bool legal_transition(uint32_t from, uint32_t to) {
  switch (from) {
    case S_IDLE: return to == S_CONNECTING || to == S_SHUTDOWN;
    case S_CONNECTING:
      return to == S_READY || to == S_TF || to == S_IDLE || to == S_SHUTDOWN;
    case S_READY: return to == S_TF || to == S_IDLE || to == S_SHUTDOWN;
    case S_TF: return to == S_CONNECTING || to == S_SHUTDOWN;
    default: return false;
  }
}

/* ------------------------------------------------------- a state recorder */

enum { LOG_MAX = 4096 };

/* Records every state a subscription is told, in order, with the time. */
typedef struct {
  pthread_mutex_t mu;
  uint32_t states[LOG_MAX];
  int64_t at[LOG_MAX];
  int n;             /* recorded (at most LOG_MAX) */
  int calls;         /* callbacks in all */
  bool unsubscribed; /* set once rgrpc_channel_unsubscribe has returned */
  int late;          /* callbacks that ran after that */
  /* Self-unsubscription: on state `unsub_on` (once `have_id`), the callback
   * unsubscribes itself and records what unsubscribe returned. */
  rgrpc_channel *ch;
  uint64_t id;
  bool have_id;
  bool self_unsub;
  uint32_t unsub_on;
  bool did_unsub;
  rgrpc_result unsub_rc, unsub_again_rc;
  rgrpc_connectivity_state state_in_cb;
  /* A slow subscriber: sleeps `slow_ms` in the callback for `slow_on`. */
  int64_t slow_ms;
  uint32_t slow_on;
} state_log;

static void log_init(state_log *l) {
  memset(l, 0, sizeof *l);
  CHECK(pthread_mutex_init(&l->mu, NULL) == 0);
}

static void log_destroy(state_log *l) { pthread_mutex_destroy(&l->mu); }

static void on_state(void *ud, rgrpc_connectivity_state s) {
  state_log *l = ud;
  pthread_mutex_lock(&l->mu);
  l->calls++;
  if (l->unsubscribed) l->late++;
  if (l->n < LOG_MAX) {
    l->states[l->n] = s;
    l->at[l->n] = tu_now_ms();
    l->n++;
  }
  bool unsub = l->self_unsub && l->have_id && !l->did_unsub && s == l->unsub_on;
  if (unsub) l->did_unsub = true;
  rgrpc_channel *ch = l->ch;
  uint64_t id = l->id;
  int64_t sleep_ms = l->slow_ms > 0 && s == l->slow_on ? l->slow_ms : 0;
  pthread_mutex_unlock(&l->mu);
  if (sleep_ms) tu_sleep_ms(sleep_ms);
  if (unsub) {
    /* From inside its own callback: must neither deadlock nor fail. */
    rgrpc_result rc = rgrpc_channel_unsubscribe(ch, id);
    rgrpc_result again = rgrpc_channel_unsubscribe(ch, id);
    rgrpc_connectivity_state now = rgrpc_channel_get_state(ch, false); /* any function */
    pthread_mutex_lock(&l->mu);
    l->unsub_rc = rc;
    l->unsub_again_rc = again;
    l->state_in_cb = now;
    l->unsubscribed = true; /* any later callback is a violation */
    pthread_mutex_unlock(&l->mu);
  }
}

/* Subscribes `l` to `ch`; the id is stored in `l` (for self-unsubscription). */
static uint64_t log_subscribe(rgrpc_channel *ch, state_log *l, bool try_to_connect) {
  uint64_t id = 0;
  pthread_mutex_lock(&l->mu);
  l->ch = ch;
  pthread_mutex_unlock(&l->mu);
  CHECK_OK(rgrpc_channel_subscribe(ch, on_state, l, try_to_connect, &id));
  pthread_mutex_lock(&l->mu);
  l->id = id;
  l->have_id = true;
  pthread_mutex_unlock(&l->mu);
  return id;
}

/* Unsubscribes from outside the callback, then marks `l` so that any later
 * callback counts as a violation. */
static void log_unsubscribe(rgrpc_channel *ch, state_log *l, uint64_t id) {
  CHECK_OK(rgrpc_channel_unsubscribe(ch, id));
  pthread_mutex_lock(&l->mu);
  l->unsubscribed = true;
  pthread_mutex_unlock(&l->mu);
  CHECK_RC(rgrpc_channel_unsubscribe(ch, id), RGRPC_RESULT_NOT_FOUND);
}

static int log_count(state_log *l) {
  pthread_mutex_lock(&l->mu);
  int n = l->n;
  pthread_mutex_unlock(&l->mu);
  return n;
}

static uint32_t log_at(state_log *l, int i) {
  pthread_mutex_lock(&l->mu);
  CHECK(i >= 0 && i < l->n);
  uint32_t s = l->states[i];
  pthread_mutex_unlock(&l->mu);
  return s;
}

static int64_t log_time(state_log *l, int i) {
  pthread_mutex_lock(&l->mu);
  CHECK(i >= 0 && i < l->n);
  int64_t t = l->at[i];
  pthread_mutex_unlock(&l->mu);
  return t;
}

/* "IDLE CONNECTING READY ..." for messages (static buffer: main thread only). */
static const char *log_str(state_log *l) {
  static char buf[2048];
  size_t pos = 0;
  buf[0] = '\0';
  pthread_mutex_lock(&l->mu);
  for (int i = 0; i < l->n && pos + 40 < sizeof buf; i++)
    pos += (size_t)snprintf(buf + pos, sizeof buf - pos, "%s%s", i ? " " : "", sname(l->states[i]));
  if (l->n > 0 && pos + 40 >= sizeof buf) snprintf(buf + pos, sizeof buf - pos, " ...");
  pthread_mutex_unlock(&l->mu);
  return buf;
}

/* Waits until at least `n` states are recorded. */
static bool log_wait_n(state_log *l, int n, int64_t timeout_ms) {
  int64_t end = tu_now_ms() + timeout_ms;
  while (log_count(l) < n) {
    if (tu_now_ms() >= end) return false;
    tu_sleep_ms(2);
  }
  return true;
}

/* Waits until `s` is recorded at an index >= `from`; returns the index or -1. */
static int log_wait_state(state_log *l, uint32_t s, int from, int64_t timeout_ms) {
  int64_t end = tu_now_ms() + timeout_ms;
  for (;;) {
    pthread_mutex_lock(&l->mu);
    int found = -1;
    for (int i = from; i < l->n; i++) {
      if (l->states[i] == s) {
        found = i;
        break;
      }
    }
    pthread_mutex_unlock(&l->mu);
    if (found >= 0) return found;
    if (tu_now_ms() >= end) return -1;
    tu_sleep_ms(2);
  }
}

static int log_count_state(state_log *l, uint32_t s) {
  int c = 0;
  pthread_mutex_lock(&l->mu);
  for (int i = 0; i < l->n; i++) c += l->states[i] == s;
  pthread_mutex_unlock(&l->mu);
  return c;
}

/* Every consecutive pair is a legal transition (so no state repeats). */
#define CHECK_LOG_LEGAL(l) check_log_legal(l, __LINE__)
static void check_log_legal(state_log *l, int line) {
  pthread_mutex_lock(&l->mu);
  int n = l->n, bad = -1;
  CHECK_MSG(n < LOG_MAX, "state log overflow (line %d)", line);
  for (int i = 1; i < n && bad < 0; i++)
    if (!legal_transition(l->states[i - 1], l->states[i])) bad = i;
  pthread_mutex_unlock(&l->mu);
  if (bad >= 0)
    tu_fail(__FILE__, line, "legal transitions", "%s -> %s (entry %d) in: %s",
            sname(log_at(l, bad - 1)), sname(log_at(l, bad)), bad, log_str(l));
}

/* The recorded states are exactly the list given (terminated by -1). */
static void check_log_is(state_log *l, int line, const int *want) {
  int n = 0;
  while (want[n] >= 0) n++;
  bool same = log_count(l) == n;
  for (int i = 0; same && i < n; i++) same = log_at(l, i) == (uint32_t)want[i];
  if (!same) {
    char w[512];
    size_t pos = 0;
    w[0] = '\0';
    for (int i = 0; i < n; i++)
      pos += (size_t)snprintf(w + pos, sizeof w - pos, "%s%s", i ? " " : "", sname((uint32_t)want[i]));
    tu_fail(__FILE__, line, "state sequence", "got [%s], want [%s]", log_str(l), w);
  }
}
#define CHECK_LOG_IS(l, ...)                    \
  do {                                          \
    static const int want_[] = {__VA_ARGS__, -1}; \
    check_log_is(l, __LINE__, want_);           \
  } while (0)

/* ------------------------------------------------------------ other helpers */

static void set_int(rgrpc_channel_options *o, const char *key, int64_t v) {
  rgrpc_result rc = rgrpc_channel_options_set_int(o, key, v);
  CHECK_MSG(rc == RGRPC_RESULT_OK, "set_int(%s, %lld): %s: %s", key, (long long)v,
            rgrpc_result_name(rc), rgrpc_channel_options_last_error(o));
}

/* A channel to the refused target with the given reconnect backoff. */
static rgrpc_channel *refused_channel(int64_t initial_backoff_ms, int64_t max_backoff_ms) {
  rgrpc_channel_options *o = rgrpc_channel_options_new();
  CHECK(o != NULL);
  set_int(o, "grpc.initial_reconnect_backoff_ms", initial_backoff_ms);
  set_int(o, "grpc.max_reconnect_backoff_ms", max_backoff_ms);
  rgrpc_channel *ch = tu_channel(REFUSED_TARGET, o);
  rgrpc_channel_options_free(o);
  return ch;
}

/* Polls get_state (without connecting) until it is `s`. */
static bool wait_state(rgrpc_channel *ch, uint32_t s, int64_t timeout_ms) {
  int64_t end = tu_now_ms() + timeout_ms;
  while (rgrpc_channel_get_state(ch, false) != s) {
    if (tu_now_ms() >= end) return false;
    tu_sleep_ms(2);
  }
  return true;
}

static rgrpc_call_options *wfr_opts(int64_t timeout_ms) {
  rgrpc_call_options *o = rgrpc_call_options_new();
  CHECK(o != NULL);
  CHECK_OK(rgrpc_call_options_set_wait_for_ready(o, true));
  if (timeout_ms >= 0) CHECK_OK(rgrpc_call_options_set_timeout_ms(o, timeout_ms));
  return o;
}

/* A thread making one wait-for-ready unary call. */
typedef struct {
  rgrpc_channel *ch;
  int64_t timeout_ms;
  rgrpc_status_code code;
  int64_t ended_at;
  tu_latch done;
} wfr_call_args;

static void *wfr_call_main(void *p) {
  wfr_call_args *a = p;
  rgrpc_call_options *o = wfr_opts(a->timeout_ms);
  a->code = tu_unary_size(a->ch, o, 1, NULL);
  a->ended_at = tu_now_ms();
  rgrpc_call_options_free(o);
  tu_latch_count_down(&a->done);
  return NULL;
}

/* A thread blocked in rgrpc_channel_wait_for_ready. */
typedef struct {
  rgrpc_channel *ch;
  int64_t timeout_ms;
  rgrpc_result rc;
  int64_t ended_at;
  tu_latch done;
} wait_ready_args;

static void *wait_ready_main(void *p) {
  wait_ready_args *a = p;
  a->rc = rgrpc_channel_wait_for_ready(a->ch, a->timeout_ms);
  a->ended_at = tu_now_ms();
  tu_latch_count_down(&a->done);
  return NULL;
}

/* A ready-future callback recorder. */
typedef struct {
  pthread_mutex_t mu;
  int runs;
  rgrpc_result result;
  tu_latch latch;
} ready_rec;

static void ready_rec_init(ready_rec *r) {
  CHECK(pthread_mutex_init(&r->mu, NULL) == 0);
  r->runs = 0;
  r->result = (rgrpc_result)0xFFFF;
  tu_latch_init(&r->latch, 1);
}

static void ready_rec_destroy(ready_rec *r) {
  tu_latch_destroy(&r->latch);
  pthread_mutex_destroy(&r->mu);
}

static void on_ready(void *ud, rgrpc_result result) {
  ready_rec *r = ud;
  pthread_mutex_lock(&r->mu);
  r->runs++;
  r->result = result;
  pthread_mutex_unlock(&r->mu);
  tu_latch_count_down(&r->latch);
}

static int ready_runs(ready_rec *r) {
  pthread_mutex_lock(&r->mu);
  int n = r->runs;
  pthread_mutex_unlock(&r->mu);
  return n;
}

/* A thread blocked in rgrpc_ready_future_wait. */
typedef struct {
  rgrpc_ready_future *f;
  int64_t timeout_ms;
  rgrpc_result rc;
  tu_latch done;
} future_wait_args;

static void *future_wait_main(void *p) {
  future_wait_args *a = p;
  a->rc = rgrpc_ready_future_wait(a->f, a->timeout_ms);
  tu_latch_count_down(&a->done);
  return NULL;
}

/* The callback ran exactly once, with `want` (waits for it, then a little
 * more to catch a second run). */
#define CHECK_READY_CB(r, want) check_ready_cb(r, want, __LINE__)
static void check_ready_cb(ready_rec *r, rgrpc_result want, int line) {
  if (!tu_latch_wait(&r->latch, 5000 * tu_slow()))
    tu_fail(__FILE__, line, "ready callback", "did not run (want %s)", rgrpc_result_name(want));
  tu_sleep_ms(50);
  pthread_mutex_lock(&r->mu);
  int runs = r->runs;
  rgrpc_result got = r->result;
  pthread_mutex_unlock(&r->mu);
  if (runs != 1) tu_fail(__FILE__, line, "ready callback runs == 1", "ran %d times", runs);
  if (got != want)
    tu_fail(__FILE__, line, "ready callback result", "got %s, want %s", rgrpc_result_name(got),
            rgrpc_result_name(want));
}

/* ------------------------------------------------------------------ tests */

static void test_state_names(void) {
  CHECK_STR(rgrpc_connectivity_state_name(S_IDLE), "IDLE");
  CHECK_STR(rgrpc_connectivity_state_name(S_CONNECTING), "CONNECTING");
  CHECK_STR(rgrpc_connectivity_state_name(S_READY), "READY");
  CHECK_STR(rgrpc_connectivity_state_name(S_TF), "TRANSIENT_FAILURE");
  CHECK_STR(rgrpc_connectivity_state_name(S_SHUTDOWN), "SHUTDOWN");
  CHECK_STR(rgrpc_connectivity_state_name(5), "UNKNOWN");
  CHECK_STR(rgrpc_connectivity_state_name(0xFFFFFFFFu), "UNKNOWN");
  CHECK_STR(rgrpc_result_name(RGRPC_RESULT_CANCELLED), "RGRPC_RESULT_CANCELLED");
  CHECK_NONEMPTY(rgrpc_result_str(RGRPC_RESULT_CANCELLED));
}

static void never_called_state(void *ud, rgrpc_connectivity_state s) {
  (void)s;
  tu_fail(__FILE__, __LINE__, "never_called_state", "ran (user_data %p)", ud);
}

static void never_called_ready(void *ud, rgrpc_result r) {
  tu_fail(__FILE__, __LINE__, "never_called_ready", "ran with %s (user_data %p)",
          rgrpc_result_name(r), ud);
}

static void test_null_handling(void) {
  rgrpc_channel *ch = tu_channel(NULL, NULL);

  CHECK_EQ_INT(rgrpc_channel_get_state(NULL, false), S_SHUTDOWN);
  CHECK_EQ_INT(rgrpc_channel_get_state(NULL, true), S_SHUTDOWN);

  uint64_t id = 777;
  CHECK_RC(rgrpc_channel_subscribe(NULL, on_state, NULL, false, &id), RGRPC_RESULT_NULL_PARAMETER);
  CHECK_RC(rgrpc_channel_subscribe(ch, NULL, NULL, false, &id), RGRPC_RESULT_NULL_PARAMETER);
  CHECK_RC(rgrpc_channel_subscribe(ch, never_called_state, NULL, true, NULL),
           RGRPC_RESULT_NULL_PARAMETER);
  CHECK_EQ_INT(id, 777); /* untouched on failure */
  CHECK_RC(rgrpc_channel_unsubscribe(NULL, 1), RGRPC_RESULT_NULL_PARAMETER);
  CHECK_RC(rgrpc_channel_unsubscribe(ch, 0), RGRPC_RESULT_NOT_FOUND);
  CHECK_RC(rgrpc_channel_unsubscribe(ch, 0xDEADBEEFull), RGRPC_RESULT_NOT_FOUND);

  CHECK_RC(rgrpc_channel_wait_for_ready(NULL, 0), RGRPC_RESULT_NULL_PARAMETER);
  CHECK_RC(rgrpc_channel_wait_for_ready(NULL, -1), RGRPC_RESULT_NULL_PARAMETER);

  rgrpc_connectivity_state st = (rgrpc_connectivity_state)99;
  CHECK_RC(rgrpc_channel_wait_for_state_change(NULL, S_IDLE, 0, &st), RGRPC_RESULT_NULL_PARAMETER);
  CHECK_RC(rgrpc_channel_wait_for_state_change(ch, 5, 0, &st), RGRPC_RESULT_INVALID_ARGUMENT);
  CHECK_RC(rgrpc_channel_wait_for_state_change(ch, 0xFFFFFFFFu, -1, &st),
           RGRPC_RESULT_INVALID_ARGUMENT);
  CHECK_EQ_INT(st, 99);
  /* The channel is IDLE: a wait "from IDLE" times out (state_out untouched),
   * a wait from another state returns at once; state_out may be NULL. */
  CHECK_RC(rgrpc_channel_wait_for_state_change(ch, S_IDLE, 50, &st), RGRPC_RESULT_TIMEOUT);
  CHECK_EQ_INT(st, 99);
  CHECK_RC(rgrpc_channel_wait_for_state_change(ch, S_IDLE, 0, NULL), RGRPC_RESULT_TIMEOUT);
  CHECK_OK(rgrpc_channel_wait_for_state_change(ch, S_READY, 1000, NULL));
  CHECK_OK(rgrpc_channel_wait_for_state_change(ch, S_READY, 1000, &st));
  CHECK_EQ_INT(st, S_IDLE);

  CHECK_RC(rgrpc_channel_reset_connect_backoff(NULL), RGRPC_RESULT_NULL_PARAMETER);

  rgrpc_ready_future *f = (rgrpc_ready_future *)(void *)&f;
  CHECK_RC(rgrpc_channel_ready_future(NULL, never_called_ready, NULL, &f),
           RGRPC_RESULT_NULL_PARAMETER);
  CHECK_RC(rgrpc_channel_ready_future(ch, never_called_ready, NULL, NULL),
           RGRPC_RESULT_NULL_PARAMETER);
  CHECK(f == (rgrpc_ready_future *)(void *)&f); /* untouched */
  CHECK_RC(rgrpc_ready_future_wait(NULL, 0), RGRPC_RESULT_NULL_PARAMETER);
  CHECK_RC(rgrpc_ready_future_wait(NULL, -1), RGRPC_RESULT_NULL_PARAMETER);
  CHECK_RC(rgrpc_ready_future_cancel(NULL), RGRPC_RESULT_NULL_PARAMETER);
  rgrpc_ready_future_free(NULL);

  CHECK_RC(rgrpc_call_options_set_wait_for_ready(NULL, true), RGRPC_RESULT_NULL_PARAMETER);
  CHECK_RC(rgrpc_call_options_set_wait_for_ready(NULL, false), RGRPC_RESULT_NULL_PARAMETER);
  rgrpc_call_options *o = rgrpc_call_options_new();
  CHECK_OK(rgrpc_call_options_set_wait_for_ready(o, true));
  CHECK_OK(rgrpc_call_options_set_wait_for_ready(o, false));
  rgrpc_call_options_free(o);

  /* None of the failed calls above made the channel connect, nor ran a
   * callback (the never_called_* callbacks fail the test). */
  tu_sleep_ms(100);
  CHECK_EQ_INT(rgrpc_channel_get_state(ch, false), S_IDLE);
  rgrpc_channel_free(ch);
}

/* A new channel is IDLE; get_state(try_to_connect) starts connecting;
 * wait_for_ready; calls; close. */
static void test_new_channel_connects(void) {
  rgrpc_channel *ch = tu_channel(NULL, NULL);
  CHECK_EQ_INT(rgrpc_channel_get_state(ch, false), S_IDLE);
  tu_sleep_ms(100); /* no I/O without a reason */
  CHECK_EQ_INT(rgrpc_channel_get_state(ch, false), S_IDLE);
  CHECK_RC(rgrpc_channel_wait_for_state_change(ch, S_IDLE, 100, NULL), RGRPC_RESULT_TIMEOUT);

  int64_t t0 = tu_now_ms();
  uint32_t s = rgrpc_channel_get_state(ch, true);
  CHECK_MSG(s == S_IDLE || s == S_CONNECTING || s == S_READY, "get_state(true) gave %s", sname(s));
  /* It leaves IDLE on its own now. */
  rgrpc_connectivity_state next = (rgrpc_connectivity_state)99;
  CHECK_OK(rgrpc_channel_wait_for_state_change(ch, S_IDLE, 5000 * tu_slow(), &next));
  CHECK_MSG(next == S_CONNECTING || next == S_READY, "left IDLE for %s", sname(next));
  CHECK_OK(rgrpc_channel_wait_for_ready(ch, 5000));
  CHECK_MSG(tu_now_ms() - t0 < 5000, "took %lld ms to get READY", (long long)(tu_now_ms() - t0));
  CHECK_EQ_INT(rgrpc_channel_get_state(ch, false), S_READY);
  CHECK_EQ_INT(rgrpc_channel_get_state(ch, true), S_READY);
  CHECK_OK(rgrpc_channel_wait_for_ready(ch, 0)); /* already READY */
  CHECK_OK(rgrpc_channel_wait_for_state_change(ch, S_CONNECTING, 0, &next));
  CHECK_EQ_INT(next, S_READY);
  CHECK_RC(rgrpc_channel_wait_for_state_change(ch, S_READY, 100, &next), RGRPC_RESULT_TIMEOUT);

  size_t body = 0;
  CHECK_CODE(tu_unary_size(ch, NULL, 21, &body), RGRPC_STATUS_CODE_OK);
  CHECK_EQ_INT(body, 21);
  /* A wait-for-ready call on a READY channel is a normal call. */
  rgrpc_call_options *o = wfr_opts(5000);
  CHECK_CODE(tu_unary_size(ch, o, 22, &body), RGRPC_STATUS_CODE_OK);
  CHECK_EQ_INT(body, 22);
  rgrpc_call_options_free(o);
  /* Resetting the backoff of a READY channel changes nothing. */
  CHECK_OK(rgrpc_channel_reset_connect_backoff(ch));
  CHECK_EQ_INT(rgrpc_channel_get_state(ch, false), S_READY);
  CHECK_CODE(tu_unary_size(ch, NULL, 23, &body), RGRPC_STATUS_CODE_OK);
  CHECK_EQ_INT(rgrpc_channel_get_state(ch, false), S_READY);

  /* Close: SHUTDOWN for good. */
  CHECK_OK(rgrpc_channel_close(ch));
  CHECK_EQ_INT(rgrpc_channel_get_state(ch, false), S_SHUTDOWN);
  CHECK_EQ_INT(rgrpc_channel_get_state(ch, true), S_SHUTDOWN);
  CHECK_RC(rgrpc_channel_wait_for_ready(ch, 1000), RGRPC_RESULT_CHANNEL_CLOSED);
  CHECK_RC(rgrpc_channel_wait_for_ready(ch, -1), RGRPC_RESULT_CHANNEL_CLOSED);
  CHECK_OK(rgrpc_channel_wait_for_state_change(ch, S_READY, 1000, &next));
  CHECK_EQ_INT(next, S_SHUTDOWN);
  CHECK_RC(rgrpc_channel_wait_for_state_change(ch, S_SHUTDOWN, 100, &next), RGRPC_RESULT_TIMEOUT);
  CHECK_OK(rgrpc_channel_reset_connect_backoff(ch));
  CHECK_EQ_INT(rgrpc_channel_get_state(ch, false), S_SHUTDOWN);
  rgrpc_channel_free(ch);
}

/* A subscriber sees the current state first, then every change in order. */
static void test_subscribe_records_transitions(void) {
  rgrpc_channel *ch = tu_channel(NULL, NULL);
  state_log l;
  log_init(&l);
  uint64_t id = log_subscribe(ch, &l, false);
  CHECK_MSG(log_wait_n(&l, 1, 2000 * tu_slow()), "no first callback");
  CHECK_LOG_IS(&l, S_IDLE);
  tu_sleep_ms(100); /* try_to_connect=false: nothing happens */
  CHECK_LOG_IS(&l, S_IDLE);
  CHECK_EQ_INT(rgrpc_channel_get_state(ch, false), S_IDLE);

  (void)rgrpc_channel_get_state(ch, true);
  CHECK_MSG(log_wait_state(&l, S_READY, 0, 5000 * tu_slow()) >= 0, "not READY: %s", log_str(&l));
  CHECK_LOG_IS(&l, S_IDLE, S_CONNECTING, S_READY);

  /* Calls on a READY channel change nothing. */
  CHECK_CODE(tu_unary_size(ch, NULL, 5, NULL), RGRPC_STATUS_CODE_OK);
  CHECK_CODE(tu_unary_size(ch, NULL, 6, NULL), RGRPC_STATUS_CODE_OK);

  /* A second subscriber (try_to_connect on a READY channel) starts at READY. */
  state_log l2;
  log_init(&l2);
  uint64_t id2 = log_subscribe(ch, &l2, true);
  CHECK(id2 != id);
  CHECK_MSG(log_wait_n(&l2, 1, 2000 * tu_slow()), "no first callback");
  CHECK_LOG_IS(&l2, S_READY);

  /* Unsubscribe: OK, then NOT_FOUND; no callback afterwards. */
  log_unsubscribe(ch, &l, id);

  CHECK_OK(rgrpc_channel_close(ch));
  CHECK_MSG(log_wait_state(&l2, S_SHUTDOWN, 0, 2000 * tu_slow()) >= 0, "no SHUTDOWN: %s",
            log_str(&l2));
  tu_sleep_ms(100);
  CHECK_LOG_IS(&l2, S_READY, S_SHUTDOWN);
  CHECK_LOG_IS(&l, S_IDLE, S_CONNECTING, S_READY);
  CHECK_EQ_INT(l.late, 0);
  CHECK_LOG_LEGAL(&l);
  CHECK_LOG_LEGAL(&l2);

  /* A subscription made after close starts at SHUTDOWN. */
  state_log l3;
  log_init(&l3);
  uint64_t id3 = log_subscribe(ch, &l3, true);
  CHECK_MSG(log_wait_n(&l3, 1, 2000 * tu_slow()), "no first callback");
  tu_sleep_ms(50);
  CHECK_LOG_IS(&l3, S_SHUTDOWN);
  CHECK_EQ_INT(rgrpc_channel_get_state(ch, false), S_SHUTDOWN);

  /* After SHUTDOWN the subscriptions still have to be ended (or are gone):
   * either way no callback runs once unsubscribe returned. */
  rgrpc_result rc = rgrpc_channel_unsubscribe(ch, id2);
  CHECK_MSG(rc == RGRPC_RESULT_OK || rc == RGRPC_RESULT_NOT_FOUND, "unsubscribe: %s",
            rgrpc_result_name(rc));
  rc = rgrpc_channel_unsubscribe(ch, id3);
  CHECK_MSG(rc == RGRPC_RESULT_OK || rc == RGRPC_RESULT_NOT_FOUND, "unsubscribe: %s",
            rgrpc_result_name(rc));
  CHECK_RC(rgrpc_channel_unsubscribe(ch, id2), RGRPC_RESULT_NOT_FOUND);
  CHECK_RC(rgrpc_channel_unsubscribe(ch, id), RGRPC_RESULT_NOT_FOUND);
  rgrpc_channel_free(ch);
  log_destroy(&l);
  log_destroy(&l2);
  log_destroy(&l3);
}

/* A callback that unsubscribes itself: no deadlock, OK, and never again. */
static void test_unsubscribe_from_callback(void) {
  rgrpc_channel *ch = tu_channel(NULL, NULL);
  state_log l;
  log_init(&l);
  l.self_unsub = true;
  l.unsub_on = S_READY;
  uint64_t id = log_subscribe(ch, &l, false); /* id known before READY can come */
  /* A second subscription, to see that the channel's notifications go on. */
  state_log other;
  log_init(&other);
  uint64_t other_id = log_subscribe(ch, &other, false);

  CHECK_OK(rgrpc_channel_wait_for_ready(ch, 5000 * tu_slow()));
  int64_t end = tu_now_ms() + 2000 * tu_slow();
  for (;;) {
    pthread_mutex_lock(&l.mu);
    bool done = l.unsubscribed;
    pthread_mutex_unlock(&l.mu);
    if (done) break;
    CHECK_MSG(tu_now_ms() < end, "the callback did not finish unsubscribing itself: %s",
              log_str(&l));
    tu_sleep_ms(2);
  }
  CHECK_RC(l.unsub_rc, RGRPC_RESULT_OK);
  CHECK_RC(l.unsub_again_rc, RGRPC_RESULT_NOT_FOUND);
  CHECK_EQ_INT(l.state_in_cb, S_READY);
  CHECK_RC(rgrpc_channel_unsubscribe(ch, id), RGRPC_RESULT_NOT_FOUND);

  /* More changes: only the other subscription hears of them. */
  CHECK_CODE(tu_unary_size(ch, NULL, 1, NULL), RGRPC_STATUS_CODE_OK);
  CHECK_OK(rgrpc_channel_close(ch));
  CHECK_MSG(log_wait_state(&other, S_SHUTDOWN, 0, 2000 * tu_slow()) >= 0, "no SHUTDOWN: %s",
            log_str(&other));
  tu_sleep_ms(100);
  CHECK_LOG_IS(&l, S_IDLE, S_CONNECTING, S_READY);
  CHECK_EQ_INT(l.late, 0);
  CHECK_LOG_IS(&other, S_IDLE, S_CONNECTING, S_READY, S_SHUTDOWN);
  rgrpc_result rc = rgrpc_channel_unsubscribe(ch, other_id);
  CHECK(rc == RGRPC_RESULT_OK || rc == RGRPC_RESULT_NOT_FOUND);
  rgrpc_channel_free(ch);
  log_destroy(&l);
  log_destroy(&other);
}

/* Nothing listens: TRANSIENT_FAILURE, fail-fast vs wait-for-ready calls,
 * blocked waiters released by close. */
static void test_refused_target(void) {
  rgrpc_channel *ch = refused_channel(200, 1000);
  state_log l;
  log_init(&l);
  uint64_t id = log_subscribe(ch, &l, true);
  CHECK_MSG(log_wait_state(&l, S_TF, 0, 5000 * tu_slow()) >= 0, "no TRANSIENT_FAILURE: %s",
            log_str(&l));
  CHECK_EQ_INT(log_at(&l, 0), S_IDLE); /* the state when subscribing */
  uint32_t s = rgrpc_channel_get_state(ch, false);
  CHECK_MSG(s == S_TF || s == S_CONNECTING, "state %s", sname(s));

  /* Fail-fast calls end with UNAVAILABLE at once, saying why. */
  for (int i = 0; i < 3; i++) {
    char details[512];
    int64_t t0 = tu_now_ms();
    CHECK_CODE(tu_unary_details(ch, NULL, 1, NULL, details, sizeof details), RGRPC_STATUS_CODE_UNAVAILABLE);
    int64_t el = tu_now_ms() - t0;
    CHECK_MSG(el < 300 * tu_slow(), "a fail-fast call took %lld ms", (long long)el);
    CHECK_NONEMPTY(details);
  }
  rgrpc_call *call = NULL;
  CHECK_OK(rgrpc_call_start(ch, M_BIDI, NULL, &call));
  rgrpc_buffer *buf = NULL;
  CHECK_RC(rgrpc_call_recv(call, &buf), RGRPC_RESULT_END_OF_STREAM);
  CHECK_CODE(tu_finish_code(call), RGRPC_STATUS_CODE_UNAVAILABLE);
  rgrpc_call_free(call);

  /* Wait-for-ready calls wait, until their deadline. */
  rgrpc_call_options *o = wfr_opts(300);
  int64_t t0 = tu_now_ms();
  CHECK_CODE(tu_unary_size(ch, o, 1, NULL), RGRPC_STATUS_CODE_DEADLINE_EXCEEDED);
  int64_t el = tu_now_ms() - t0;
  CHECK_MSG(el >= 250 && el < 2000 * tu_slow(), "wait-for-ready call ended after %lld ms",
            (long long)el);
  rgrpc_call_options_free(o);

  /* Blocking wait for READY: TIMEOUT. */
  t0 = tu_now_ms();
  CHECK_RC(rgrpc_channel_wait_for_ready(ch, 300), RGRPC_RESULT_TIMEOUT);
  el = tu_now_ms() - t0;
  CHECK_MSG(el >= 250 && el < 2000 * tu_slow(), "wait_for_ready(300) took %lld ms",
            (long long)el);
  CHECK_RC(rgrpc_channel_wait_for_ready(ch, 0), RGRPC_RESULT_TIMEOUT);

  /* Leaving TRANSIENT_FAILURE: a short wait may time out (state_out then
   * untouched); the backoff (at most 1.2 s here) ends in CONNECTING. */
  CHECK_MSG(wait_state(ch, S_TF, 5000 * tu_slow()), "not in TRANSIENT_FAILURE");
  rgrpc_connectivity_state next = (rgrpc_connectivity_state)99;
  rgrpc_result rc = rgrpc_channel_wait_for_state_change(ch, S_TF, 10, &next);
  CHECK_MSG((rc == RGRPC_RESULT_TIMEOUT && next == 99) ||
                (rc == RGRPC_RESULT_OK && next == S_CONNECTING),
            "wait_for_state_change(TF, 10 ms): %s, %s", rgrpc_result_name(rc),
            next == 99 ? "-" : sname(next));
  CHECK_OK(rgrpc_channel_wait_for_state_change(ch, S_TF, 5000 * tu_slow(), &next));
  CHECK_EQ_INT(next, S_CONNECTING);
  CHECK_OK(rgrpc_channel_reset_connect_backoff(ch));

  /* Blocked waiters (a wait-for-ready call, wait_for_ready) end on close. */
  wfr_call_args ca;
  memset(&ca, 0, sizeof ca);
  ca.ch = ch;
  ca.timeout_ms = 30000;
  tu_latch_init(&ca.done, 1);
  wait_ready_args wa;
  memset(&wa, 0, sizeof wa);
  wa.ch = ch;
  wa.timeout_ms = 30000;
  tu_latch_init(&wa.done, 1);
  pthread_t tc, tw;
  tu_thread_start(&tc, wfr_call_main, &ca);
  tu_thread_start(&tw, wait_ready_main, &wa);
  tu_sleep_ms(400);
  CHECK_MSG(tu_latch_count(&ca.done) == 1, "the wait-for-ready call ended before close");
  CHECK_MSG(tu_latch_count(&wa.done) == 1, "wait_for_ready returned before close");
  t0 = tu_now_ms();
  CHECK_OK(rgrpc_channel_close(ch));
  CHECK_MSG(tu_latch_wait(&ca.done, 5000 * tu_slow()), "the wait-for-ready call did not end");
  CHECK_MSG(tu_latch_wait(&wa.done, 5000 * tu_slow()), "wait_for_ready did not return");
  tu_thread_join(tc);
  tu_thread_join(tw);
  CHECK_CODE(ca.code, RGRPC_STATUS_CODE_CANCELLED);
  CHECK_RC(wa.rc, RGRPC_RESULT_CHANNEL_CLOSED);
  CHECK_MSG(ca.ended_at - t0 < 1000 * tu_slow(), "the call ended %lld ms after close",
            (long long)(ca.ended_at - t0));
  CHECK_MSG(wa.ended_at - t0 < 1000 * tu_slow(), "wait_for_ready returned %lld ms after close",
            (long long)(wa.ended_at - t0));
  tu_latch_destroy(&ca.done);
  tu_latch_destroy(&wa.done);

  /* Closed. */
  CHECK_RC(rgrpc_channel_wait_for_ready(ch, 300), RGRPC_RESULT_CHANNEL_CLOSED);
  CHECK_EQ_INT(rgrpc_channel_get_state(ch, false), S_SHUTDOWN);
  CHECK_OK(rgrpc_channel_wait_for_state_change(ch, S_TF, 1000, &next));
  CHECK_EQ_INT(next, S_SHUTDOWN);
  CHECK_OK(rgrpc_channel_reset_connect_backoff(ch));
  CHECK_EQ_INT(rgrpc_channel_get_state(ch, true), S_SHUTDOWN);
  tu_pb req = tu_simple_request(1, 0, 0, NULL);
  rgrpc_buffer *resp = NULL;
  const rgrpc_status *st = NULL;
  CHECK_RC(rgrpc_call_unary(ch, M_UNARY, NULL, req.data, req.len, &resp, &st),
           RGRPC_RESULT_CHANNEL_CLOSED);
  tu_pb_free(&req);

  /* The subscriber saw attempts come and go, and the end. */
  CHECK_MSG(log_wait_state(&l, S_SHUTDOWN, 0, 2000 * tu_slow()) >= 0, "no SHUTDOWN: %s",
            log_str(&l));
  tu_sleep_ms(50);
  CHECK_LOG_LEGAL(&l);
  CHECK_EQ_INT(log_at(&l, log_count(&l) - 1), S_SHUTDOWN);
  CHECK_MSG(log_count_state(&l, S_TF) >= 2, "expected reconnect attempts: %s", log_str(&l));
  rc = rgrpc_channel_unsubscribe(ch, id);
  CHECK(rc == RGRPC_RESULT_OK || rc == RGRPC_RESULT_NOT_FOUND);
  rgrpc_channel_free(ch);
  log_destroy(&l);
}

/* reset_connect_backoff cuts a long backoff short; on an IDLE channel it
 * starts connecting. */
static void test_reset_connect_backoff(void) {
  rgrpc_channel *ch = refused_channel(5000, 10000);
  state_log l;
  log_init(&l);
  uint64_t id = log_subscribe(ch, &l, true);
  int tf = log_wait_state(&l, S_TF, 0, 5000 * tu_slow());
  CHECK_MSG(tf >= 0, "no TRANSIENT_FAILURE: %s", log_str(&l));
  tu_sleep_ms(300);
  /* The next attempt would come 4 to 6 s after the first. */
  CHECK_MSG(log_count(&l) == tf + 1, "attempts did not back off: %s", log_str(&l));
  for (int round = 0; round < 2; round++) {
    int64_t t0 = tu_now_ms();
    CHECK_OK(rgrpc_channel_reset_connect_backoff(ch));
    int c = log_wait_state(&l, S_CONNECTING, tf + 1, 1000 * tu_slow());
    CHECK_MSG(c >= 0, "reset_connect_backoff did not start an attempt: %s", log_str(&l));
    CHECK_MSG(log_time(&l, c) - t0 < 1000 * tu_slow(), "attempt %lld ms after the reset",
              (long long)(log_time(&l, c) - t0));
    tf = log_wait_state(&l, S_TF, c + 1, 5000 * tu_slow());
    CHECK_MSG(tf >= 0, "no TRANSIENT_FAILURE after the new attempt: %s", log_str(&l));
  }
  log_unsubscribe(ch, &l, id);
  CHECK_LOG_LEGAL(&l);
  CHECK_OK(rgrpc_channel_close(ch));
  rgrpc_channel_free(ch);
  log_destroy(&l);

  /* An IDLE channel starts connecting. */
  ch = refused_channel(5000, 10000);
  CHECK_EQ_INT(rgrpc_channel_get_state(ch, false), S_IDLE);
  CHECK_OK(rgrpc_channel_reset_connect_backoff(ch));
  rgrpc_connectivity_state next = S_IDLE;
  CHECK_OK(rgrpc_channel_wait_for_state_change(ch, S_IDLE, 2000 * tu_slow(), &next));
  CHECK_MSG(next == S_CONNECTING || next == S_TF, "left IDLE for %s", sname(next));
  CHECK_OK(rgrpc_channel_close(ch));
  rgrpc_channel_free(ch);
}

static void test_ready_future(void) {
  /* The live server: OK, once. */
  rgrpc_channel *ch = tu_channel(NULL, NULL);
  ready_rec r;
  ready_rec_init(&r);
  rgrpc_ready_future *f = NULL;
  CHECK_OK(rgrpc_channel_ready_future(ch, on_ready, &r, &f));
  CHECK(f != NULL);
  CHECK_OK(rgrpc_ready_future_wait(f, 5000 * tu_slow()));
  CHECK_READY_CB(&r, RGRPC_RESULT_OK);
  CHECK_EQ_INT(rgrpc_channel_get_state(ch, false), S_READY);
  CHECK_OK(rgrpc_ready_future_wait(f, 0)); /* the outcome stays */
  CHECK_OK(rgrpc_ready_future_wait(f, -1));
  CHECK_OK(rgrpc_ready_future_cancel(f)); /* too late: no effect */
  CHECK_OK(rgrpc_ready_future_wait(f, 0));
  rgrpc_ready_future_free(f);
  tu_sleep_ms(50);
  CHECK_EQ_INT(ready_runs(&r), 1);
  ready_rec_destroy(&r);

  /* Already READY, and no callback. */
  CHECK_OK(rgrpc_channel_ready_future(ch, NULL, NULL, &f));
  CHECK_OK(rgrpc_ready_future_wait(f, 2000 * tu_slow()));
  rgrpc_ready_future_free(f);
  CHECK_CODE(tu_unary_size(ch, NULL, 3, NULL), RGRPC_STATUS_CODE_OK);
  rgrpc_channel_free(ch);

  /* The refused target: pending until cancelled. */
  ch = refused_channel(200, 1000);
  ready_rec_init(&r);
  CHECK_OK(rgrpc_channel_ready_future(ch, on_ready, &r, &f));
  int64_t t0 = tu_now_ms();
  CHECK_RC(rgrpc_ready_future_wait(f, 200), RGRPC_RESULT_TIMEOUT);
  int64_t el = tu_now_ms() - t0;
  CHECK_MSG(el >= 150 && el < 2000 * tu_slow(), "wait(200) took %lld ms", (long long)el);
  CHECK_RC(rgrpc_ready_future_wait(f, 0), RGRPC_RESULT_TIMEOUT);
  uint32_t s = rgrpc_channel_get_state(ch, false); /* the future made it connect */
  CHECK_MSG(s == S_TF || s == S_CONNECTING, "state %s", sname(s));
  CHECK_EQ_INT(ready_runs(&r), 0);
  CHECK_OK(rgrpc_ready_future_cancel(f));
  CHECK_READY_CB(&r, RGRPC_RESULT_CANCELLED);
  CHECK_RC(rgrpc_ready_future_wait(f, 0), RGRPC_RESULT_CANCELLED);
  CHECK_RC(rgrpc_ready_future_wait(f, -1), RGRPC_RESULT_CANCELLED);
  CHECK_OK(rgrpc_ready_future_cancel(f)); /* idempotent */
  rgrpc_ready_future_free(f);
  tu_sleep_ms(50);
  CHECK_EQ_INT(ready_runs(&r), 1);
  ready_rec_destroy(&r);

  /* Freeing a pending future cancels it. */
  ready_rec_init(&r);
  CHECK_OK(rgrpc_channel_ready_future(ch, on_ready, &r, &f));
  CHECK_RC(rgrpc_ready_future_wait(f, 50), RGRPC_RESULT_TIMEOUT);
  rgrpc_ready_future_free(f);
  CHECK_READY_CB(&r, RGRPC_RESULT_CANCELLED);
  ready_rec_destroy(&r);

  /* Cancelled from this thread while another waits without limit. */
  ready_rec_init(&r);
  CHECK_OK(rgrpc_channel_ready_future(ch, on_ready, &r, &f));
  future_wait_args fw;
  memset(&fw, 0, sizeof fw);
  fw.f = f;
  fw.timeout_ms = -1;
  tu_latch_init(&fw.done, 1);
  pthread_t waiter;
  tu_thread_start(&waiter, future_wait_main, &fw);
  tu_sleep_ms(200);
  CHECK_MSG(tu_latch_count(&fw.done) == 1, "wait(-1) returned before the cancel");
  CHECK_OK(rgrpc_ready_future_cancel(f));
  CHECK_MSG(tu_latch_wait(&fw.done, 2000 * tu_slow()), "wait(-1) not released by cancel");
  tu_thread_join(waiter);
  CHECK_RC(fw.rc, RGRPC_RESULT_CANCELLED);
  CHECK_READY_CB(&r, RGRPC_RESULT_CANCELLED);
  tu_latch_destroy(&fw.done);
  rgrpc_ready_future_free(f);
  ready_rec_destroy(&r);

  /* The channel closes while the future waits: CHANNEL_CLOSED. */
  ready_rec_init(&r);
  CHECK_OK(rgrpc_channel_ready_future(ch, on_ready, &r, &f));
  tu_sleep_ms(100);
  CHECK_EQ_INT(ready_runs(&r), 0);
  CHECK_OK(rgrpc_channel_close(ch));
  CHECK_RC(rgrpc_ready_future_wait(f, 2000 * tu_slow()), RGRPC_RESULT_CHANNEL_CLOSED);
  CHECK_READY_CB(&r, RGRPC_RESULT_CHANNEL_CLOSED);
  CHECK_OK(rgrpc_ready_future_cancel(f)); /* too late: the outcome stays */
  CHECK_RC(rgrpc_ready_future_wait(f, 0), RGRPC_RESULT_CHANNEL_CLOSED);
  rgrpc_ready_future_free(f);
  tu_sleep_ms(50);
  CHECK_EQ_INT(ready_runs(&r), 1);
  ready_rec_destroy(&r);

  /* A future on a channel already closed. */
  ready_rec_init(&r);
  CHECK_OK(rgrpc_channel_ready_future(ch, on_ready, &r, &f));
  CHECK_RC(rgrpc_ready_future_wait(f, 2000 * tu_slow()), RGRPC_RESULT_CHANNEL_CLOSED);
  CHECK_READY_CB(&r, RGRPC_RESULT_CHANNEL_CLOSED);
  rgrpc_ready_future_free(f);
  ready_rec_destroy(&r);
  rgrpc_channel_free(ch);
}

/* ----------------------------------------------- subscribe/unsubscribe stress */

enum { STRESS_THREADS = 8, STRESS_ROUNDS = 100 };

typedef struct {
  bool unsubscribed;
  int calls;
  int late;    /* callbacks after unsubscribe returned */
  int illegal; /* consecutive states that are not a legal transition */
  uint32_t last;
  uint32_t bad_from, bad_to; /* the first illegal pair */
  int bad_at;                /* its callback index */
  bool first_connect;        /* subscribed with try_to_connect */
} stress_sub;

static pthread_mutex_t g_stress_mu = PTHREAD_MUTEX_INITIALIZER;

static void on_stress_state(void *ud, rgrpc_connectivity_state s) {
  stress_sub *x = ud;
  pthread_mutex_lock(&g_stress_mu);
  if (x->unsubscribed) x->late++;
  if (x->calls > 0 && !legal_transition(x->last, s) && !x->illegal++) {
    x->bad_from = x->last;
    x->bad_to = s;
    x->bad_at = x->calls;
  }
  x->last = s;
  x->calls++;
  pthread_mutex_unlock(&g_stress_mu);
}

typedef struct {
  rgrpc_channel *ch;
  stress_sub *subs; /* STRESS_ROUNDS of them */
  int missed_first; /* no first callback within the bound */
  int bad_rc;
  rgrpc_result first_bad_rc;
} stress_thread;

static void *stress_main(void *p) {
  stress_thread *a = p;
  for (int r = 0; r < STRESS_ROUNDS; r++) {
    stress_sub *x = &a->subs[r];
    uint64_t id = 0;
    x->first_connect = r % 4 == 0; /* (no callback can run yet) */
    rgrpc_result rc = rgrpc_channel_subscribe(a->ch, on_stress_state, x, r % 4 == 0, &id);
    if (rc != RGRPC_RESULT_OK) {
      if (!a->bad_rc++) a->first_bad_rc = rc;
      continue;
    }
    if (r % 2 == 0) {
      /* Wait for the first callback (the current state). */
      int64_t end = tu_now_ms() + 2000 * tu_slow();
      for (;;) {
        pthread_mutex_lock(&g_stress_mu);
        int calls = x->calls;
        pthread_mutex_unlock(&g_stress_mu);
        if (calls > 0) break;
        if (tu_now_ms() >= end) {
          a->missed_first++;
          break;
        }
        tu_sleep_ms(1);
      }
    } else if (r % 3 == 0) {
      tu_sleep_ms(1);
    } /* else unsubscribe at once, racing the first delivery */
    rc = rgrpc_channel_unsubscribe(a->ch, id);
    if (rc != RGRPC_RESULT_OK && !a->bad_rc++) a->first_bad_rc = rc;
    pthread_mutex_lock(&g_stress_mu);
    x->unsubscribed = true;
    pthread_mutex_unlock(&g_stress_mu);
    rc = rgrpc_channel_unsubscribe(a->ch, id);
    if (rc != RGRPC_RESULT_NOT_FOUND && !a->bad_rc++) a->first_bad_rc = rc;
  }
  return NULL;
}

typedef struct {
  rgrpc_channel *ch;
  tu_latch stop;
  int calls;
  int failures;
  rgrpc_status_code first_failure;
} caller_args;

/* Unary calls with pauses around the 50 ms idle timeout, so the channel
 * keeps going READY -> IDLE -> CONNECTING -> READY. */
static void *caller_main(void *p) {
  caller_args *a = p;
  for (int i = 0;; i++) {
    rgrpc_status_code code = tu_unary_size(a->ch, NULL, 1, NULL);
    a->calls++;
    if (code != RGRPC_STATUS_CODE_OK && !a->failures++) a->first_failure = code;
    if (tu_latch_wait(&a->stop, 30 + (i % 5) * 20)) break;
  }
  return NULL;
}

static void test_subscribe_unsubscribe_stress(void) {
  rgrpc_channel_options *o = rgrpc_channel_options_new();
  set_int(o, "grpc.client_idle_timeout_ms", 50);
  rgrpc_channel *ch = tu_channel(NULL, o);
  rgrpc_channel_options_free(o);

  state_log mon;
  log_init(&mon);
  uint64_t mon_id = log_subscribe(ch, &mon, false);

  caller_args ca;
  memset(&ca, 0, sizeof ca);
  ca.ch = ch;
  tu_latch_init(&ca.stop, 1);
  pthread_t caller;
  tu_thread_start(&caller, caller_main, &ca);

  stress_sub *subs = calloc((size_t)STRESS_THREADS * STRESS_ROUNDS, sizeof *subs);
  CHECK(subs != NULL);
  stress_thread ta[STRESS_THREADS];
  pthread_t t[STRESS_THREADS];
  int64_t t0 = tu_now_ms();
  for (int i = 0; i < STRESS_THREADS; i++) {
    memset(&ta[i], 0, sizeof ta[i]);
    ta[i].ch = ch;
    ta[i].subs = subs + (size_t)i * STRESS_ROUNDS;
    tu_thread_start(&t[i], stress_main, &ta[i]);
  }
  for (int i = 0; i < STRESS_THREADS; i++) tu_thread_join(t[i]);
  int64_t el = tu_now_ms() - t0;
  /* Let the channel flip a few more times with no subscription churn. */
  if (el < 1500) tu_sleep_ms(1500 - el);
  tu_latch_count_down(&ca.stop);
  tu_thread_join(caller);
  log_unsubscribe(ch, &mon, mon_id);
  tu_sleep_ms(100); /* a late callback would show up now */

  int late = 0, illegal = 0, missed = 0, bad = 0, delivered = 0;
  rgrpc_result first_bad = RGRPC_RESULT_OK;
  pthread_mutex_lock(&g_stress_mu);
  for (int i = 0; i < STRESS_THREADS * STRESS_ROUNDS; i++) {
    late += subs[i].late;
    delivered += subs[i].calls;
    if (subs[i].illegal && illegal++ < 10) {
      printf("  subscription %d (try_to_connect=%d): %s -> %s at callback %d of %d\n", i,
             subs[i].first_connect, sname(subs[i].bad_from), sname(subs[i].bad_to),
             subs[i].bad_at, subs[i].calls);
    }
  }
  pthread_mutex_unlock(&g_stress_mu);
  for (int i = 0; i < STRESS_THREADS; i++) {
    missed += ta[i].missed_first;
    if (ta[i].bad_rc && !bad) first_bad = ta[i].first_bad_rc;
    bad += ta[i].bad_rc;
  }
  printf("  %d subscriptions, %d callbacks, %d calls, %d monitor states in %lld ms\n",
         STRESS_THREADS * STRESS_ROUNDS, delivered, ca.calls, log_count(&mon),
         (long long)(tu_now_ms() - t0));
  CHECK_MSG(late == 0, "%d callbacks ran after their unsubscribe returned", late);
  CHECK_MSG(bad == 0, "%d unexpected results of subscribe/unsubscribe (first: %s)", bad,
            rgrpc_result_name(first_bad));
  CHECK_MSG(missed == 0, "%d subscriptions never got their first callback", missed);
  CHECK_MSG(illegal == 0, "%d subscriptions saw an illegal transition (first ones above)", illegal);
  CHECK_MSG(ca.failures == 0, "%d of %d calls failed (first: %s)", ca.failures, ca.calls,
            rgrpc_status_code_name(ca.first_failure));
  CHECK_EQ_INT(mon.late, 0);
  CHECK_LOG_LEGAL(&mon);
  /* The channel did flip between READY and IDLE. */
  int ready_to_idle = 0;
  for (int i = 1; i < log_count(&mon); i++)
    ready_to_idle += log_at(&mon, i - 1) == S_READY && log_at(&mon, i) == S_IDLE;
  CHECK_MSG(ready_to_idle >= 3, "READY -> IDLE only %d times: %s", ready_to_idle, log_str(&mon));

  free(subs);
  tu_latch_destroy(&ca.stop);
  CHECK_OK(rgrpc_channel_close(ch));
  rgrpc_channel_free(ch);
  log_destroy(&mon);
}

/* A subscription made while an earlier change is still being delivered
 * (another subscriber's callback is slow) starts with the current state and
 * is not told about changes from before it existed. */
static void test_subscribe_while_delivery_busy(void) {
  rgrpc_channel *ch = tu_channel(NULL, NULL);
  state_log slow;
  log_init(&slow);
  slow.slow_on = S_CONNECTING;
  slow.slow_ms = 500 * tu_slow();
  uint64_t slow_id = log_subscribe(ch, &slow, false);
  CHECK_MSG(log_wait_n(&slow, 1, 2000 * tu_slow()), "no first callback");
  CHECK_OK(rgrpc_channel_wait_for_ready(ch, 5000 * tu_slow()));
  /* READY is reached; the slow callback still sleeps on CONNECTING. */
  CHECK_MSG(log_count(&slow) == 2, "precondition: %s", log_str(&slow));

  state_log fresh;
  log_init(&fresh);
  uint64_t fresh_id = log_subscribe(ch, &fresh, false);
  CHECK_MSG(log_wait_state(&slow, S_READY, 0, 3000 * tu_slow()) >= 0, "%s", log_str(&slow));
  CHECK_MSG(log_wait_n(&fresh, 1, 2000 * tu_slow()), "no first callback");
  tu_sleep_ms(100);
  CHECK_LOG_IS(&slow, S_IDLE, S_CONNECTING, S_READY);
  CHECK_LOG_IS(&fresh, S_READY); /* the state at subscription, once */

  log_unsubscribe(ch, &slow, slow_id);
  log_unsubscribe(ch, &fresh, fresh_id);
  CHECK_OK(rgrpc_channel_close(ch));
  rgrpc_channel_free(ch);
  log_destroy(&slow);
  log_destroy(&fresh);
}

/* grpc.client_idle_timeout_ms: READY -> IDLE after the last call; the next
 * call reconnects; an active call keeps the channel READY. */
static void test_idle_timeout(void) {
  rgrpc_channel_options *o = rgrpc_channel_options_new();
  set_int(o, "grpc.client_idle_timeout_ms", 500);
  rgrpc_channel *ch = tu_channel(NULL, o);
  rgrpc_channel_options_free(o);
  state_log l;
  log_init(&l);
  uint64_t id = log_subscribe(ch, &l, false);
  CHECK_MSG(log_wait_n(&l, 1, 2000 * tu_slow()), "no first callback");

  CHECK_CODE(tu_unary_size(ch, NULL, 7, NULL), RGRPC_STATUS_CODE_OK);
  int64_t call_end = tu_now_ms();
  int idle = log_wait_state(&l, S_IDLE, 1, 2000 * tu_slow());
  CHECK_MSG(idle >= 0, "no IDLE within 2 s of the last call: %s", log_str(&l));
  int64_t after = log_time(&l, idle) - call_end;
  CHECK_MSG(after >= 400 && after <= 2000 * tu_slow(), "IDLE %lld ms after the call (timeout 500)",
            (long long)after);
  CHECK_LOG_IS(&l, S_IDLE, S_CONNECTING, S_READY, S_IDLE);
  CHECK_EQ_INT(rgrpc_channel_get_state(ch, false), S_IDLE);

  /* The next call works: CONNECTING, READY again. */
  size_t body = 0;
  CHECK_CODE(tu_unary_size(ch, NULL, 8, &body), RGRPC_STATUS_CODE_OK);
  CHECK_EQ_INT(body, 8);
  CHECK_MSG(log_wait_n(&l, 6, 2000 * tu_slow()), "%s", log_str(&l));
  CHECK_LOG_IS(&l, S_IDLE, S_CONNECTING, S_READY, S_IDLE, S_CONNECTING, S_READY);

  /* A call longer than the idle timeout: no IDLE while it runs. */
  rgrpc_call_options *sleepy = tu_opts_md("x-rgrpc-sleep-ms", "1200");
  CHECK_CODE(tu_unary_size(ch, sleepy, 9, NULL), RGRPC_STATUS_CODE_OK);
  rgrpc_call_options_free(sleepy);
  CHECK_LOG_IS(&l, S_IDLE, S_CONNECTING, S_READY, S_IDLE, S_CONNECTING, S_READY);
  CHECK_MSG(log_wait_state(&l, S_IDLE, 6, 2000 * tu_slow()) >= 0, "no IDLE after: %s",
            log_str(&l));

  CHECK_OK(rgrpc_channel_close(ch));
  CHECK_MSG(log_wait_state(&l, S_SHUTDOWN, 0, 2000 * tu_slow()) >= 0, "%s", log_str(&l));
  CHECK_LOG_LEGAL(&l);
  log_unsubscribe(ch, &l, id);
  rgrpc_channel_free(ch);
  log_destroy(&l);
}

/* Channel options of the connection lifecycle. */
static void test_lifecycle_options(void) {
  static const char *const keys[] = {
      "grpc.initial_reconnect_backoff_ms", "grpc.min_reconnect_backoff_ms",
      "grpc.max_reconnect_backoff_ms",     "grpc.keepalive_time_ms",
      "grpc.keepalive_timeout_ms",         "grpc.client_idle_timeout_ms",
  };
  rgrpc_channel_options *o = rgrpc_channel_options_new();
  for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
    set_int(o, keys[i], 1000);
    CHECK_MSG(rgrpc_channel_options_set_int(o, keys[i], -5) == RGRPC_RESULT_INVALID_OPTION_VALUE,
              "%s = -5 accepted or refused wrongly", keys[i]);
    CHECK_NONEMPTY(rgrpc_channel_options_last_error(o));
  }
  set_int(o, "grpc.keepalive_time_ms", 2147483647); /* INT_MAX: no pings */
  set_int(o, "grpc.client_idle_timeout_ms", 2147483647); /* INT_MAX: never */
  set_int(o, "grpc.keepalive_permit_without_calls", 1);
  set_int(o, "grpc.keepalive_permit_without_calls", 0);
  set_int(o, "grpc.http2.max_pings_without_data", 0);
  set_int(o, "grpc.http2.max_pings_without_data", 5);
  CHECK_RC(rgrpc_channel_options_set_int(o, "grpc.http2.max_pings_without_data", -1),
           RGRPC_RESULT_INVALID_OPTION_VALUE);
  /* A string for an integer option is a value of the wrong type. */
  for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
    rgrpc_result rc = rgrpc_channel_options_set_string(o, keys[i], "1000");
    CHECK_MSG(rc == RGRPC_RESULT_INVALID_OPTION_VALUE, "set_string(%s): %s (%s)", keys[i],
              rgrpc_result_name(rc), rgrpc_channel_options_last_error(o));
  }
  /* A channel made with them works. */
  rgrpc_channel *ch = tu_channel(NULL, o);
  rgrpc_channel_options_free(o);
  CHECK_CODE(tu_unary_size(ch, NULL, 4, NULL), RGRPC_STATUS_CODE_OK);
  CHECK_EQ_INT(rgrpc_channel_get_state(ch, false), S_READY);
  rgrpc_channel_free(ch);
}

/* Keepalive notices a server that stops answering (SIGSTOP); then the
 * server is killed (SIGKILL) under a call in flight. Must be last. */
static void test_server_frozen_then_killed(void) {
  long pid = tu_server_pid();
  CHECK_MSG(pid > 0, "RGRPC_TEST_SERVER_PID is not set: run through with_server.py");

  /* 1. Frozen server: pings go unanswered; keepalive closes the connection. */
  rgrpc_channel_options *o = rgrpc_channel_options_new();
  set_int(o, "grpc.keepalive_time_ms", 300);
  set_int(o, "grpc.keepalive_timeout_ms", 700 * tu_slow());
  set_int(o, "grpc.keepalive_permit_without_calls", 1);
  set_int(o, "grpc.http2.max_pings_without_data", 0);
  rgrpc_channel *ch = tu_channel(NULL, o);
  rgrpc_channel_options_free(o);
  state_log l;
  log_init(&l);
  uint64_t id = log_subscribe(ch, &l, false);
  rgrpc_call_options *deadline = rgrpc_call_options_new();
  CHECK_OK(rgrpc_call_options_set_timeout_ms(deadline, 30000)); /* bounded, but far */
  rgrpc_call *bidi = tu_open_bidi(ch, deadline);
  int ready = log_wait_state(&l, S_READY, 0, 2000 * tu_slow());
  CHECK_MSG(ready >= 0, "%s", log_str(&l));

  CHECK_MSG(kill((pid_t)pid, SIGSTOP) == 0, "kill(%ld, SIGSTOP) failed", pid);
  int64_t t0 = tu_now_ms();
  rgrpc_buffer *buf = NULL;
  rgrpc_result rc = rgrpc_call_recv(bidi, &buf);
  int64_t el = tu_now_ms() - t0;
  CHECK_MSG(kill((pid_t)pid, SIGCONT) == 0, "kill(%ld, SIGCONT) failed", pid);
  CHECK_RC(rc, RGRPC_RESULT_END_OF_STREAM);
  const rgrpc_status *st = NULL;
  CHECK_RC(rgrpc_call_finish(bidi, &st), RGRPC_RESULT_RPC_FAILED);
  CHECK_STATUS(st, RGRPC_STATUS_CODE_UNAVAILABLE);
  CHECK_NONEMPTY(rgrpc_status_details(st));
  printf("  frozen server: call ended after %lld ms: %s\n", (long long)el,
         rgrpc_status_details(st));
  rgrpc_status_free(st);
  rgrpc_call_free(bidi);
  CHECK_MSG(el < 300 + 700 * tu_slow() + 3000, "keepalive took %lld ms to notice", (long long)el);
  int tf = log_wait_state(&l, S_TF, ready + 1, 2000 * tu_slow());
  CHECK_MSG(tf == ready + 1, "READY not followed by TRANSIENT_FAILURE: %s", log_str(&l));
  CHECK_OK(rgrpc_channel_close(ch));
  CHECK_MSG(log_wait_state(&l, S_SHUTDOWN, 0, 2000 * tu_slow()) >= 0, "%s", log_str(&l));
  CHECK_LOG_LEGAL(&l);
  log_unsubscribe(ch, &l, id);
  rgrpc_channel_free(ch);
  log_destroy(&l);

  /* 2. Killed server, keepalive on: the call in flight ends UNAVAILABLE,
   * the channel leaves READY for TRANSIENT_FAILURE. */
  o = rgrpc_channel_options_new();
  set_int(o, "grpc.keepalive_time_ms", 1000);
  set_int(o, "grpc.keepalive_timeout_ms", 1000 * tu_slow());
  set_int(o, "grpc.keepalive_permit_without_calls", 1);
  ch = tu_channel(NULL, o);
  rgrpc_channel_options_free(o);
  log_init(&l);
  id = log_subscribe(ch, &l, false);
  CHECK_CODE(tu_unary_size(ch, NULL, 10, NULL), RGRPC_STATUS_CODE_OK); /* the server is back */
  bidi = tu_open_bidi(ch, deadline);
  ready = log_wait_state(&l, S_READY, 0, 2000 * tu_slow());
  CHECK_MSG(ready >= 0, "%s", log_str(&l));

  CHECK_MSG(kill((pid_t)pid, SIGKILL) == 0, "kill(%ld, SIGKILL) failed", pid);
  t0 = tu_now_ms();
  CHECK_RC(rgrpc_call_recv(bidi, &buf), RGRPC_RESULT_END_OF_STREAM);
  el = tu_now_ms() - t0;
  CHECK_MSG(el < 5000 * tu_slow(), "recv took %lld ms to notice the dead server", (long long)el);
  CHECK_RC(rgrpc_call_finish(bidi, &st), RGRPC_RESULT_RPC_FAILED);
  CHECK_STATUS(st, RGRPC_STATUS_CODE_UNAVAILABLE);
  CHECK_NONEMPTY(rgrpc_status_details(st));
  rgrpc_status_free(st);
  rgrpc_call_free(bidi);
  rgrpc_call_options_free(deadline);
  tf = log_wait_state(&l, S_TF, ready + 1, 5000 * tu_slow());
  CHECK_MSG(tf == ready + 1, "READY not followed by TRANSIENT_FAILURE: %s", log_str(&l));
  uint32_t s = rgrpc_channel_get_state(ch, false);
  CHECK_MSG(s == S_TF || s == S_CONNECTING, "state %s", sname(s));

  /* Later calls: fail-fast UNAVAILABLE; wait-for-ready until the deadline. */
  t0 = tu_now_ms();
  CHECK_CODE(tu_unary_size(ch, NULL, 1, NULL), RGRPC_STATUS_CODE_UNAVAILABLE);
  CHECK_MSG(tu_now_ms() - t0 < 1000 * tu_slow(), "a fail-fast call took %lld ms",
            (long long)(tu_now_ms() - t0));
  rgrpc_call_options *w = wfr_opts(300);
  CHECK_CODE(tu_unary_size(ch, w, 1, NULL), RGRPC_STATUS_CODE_DEADLINE_EXCEEDED);
  rgrpc_call_options_free(w);
  CHECK_RC(rgrpc_channel_wait_for_ready(ch, 300), RGRPC_RESULT_TIMEOUT);

  CHECK_OK(rgrpc_channel_close(ch));
  CHECK_MSG(log_wait_state(&l, S_SHUTDOWN, 0, 2000 * tu_slow()) >= 0, "%s", log_str(&l));
  CHECK_LOG_LEGAL(&l);
  log_unsubscribe(ch, &l, id);
  rgrpc_channel_free(ch);
  log_destroy(&l);
}

int main(void) {
  RUN_TEST(test_state_names);
  RUN_TEST(test_null_handling);
  RUN_TEST(test_new_channel_connects);
  RUN_TEST(test_subscribe_records_transitions);
  RUN_TEST(test_unsubscribe_from_callback);
  RUN_TEST(test_refused_target);
  RUN_TEST(test_reset_connect_backoff);
  RUN_TEST(test_ready_future);
  RUN_TEST(test_idle_timeout);
  RUN_TEST(test_subscribe_unsubscribe_stress);
  RUN_TEST(test_subscribe_while_delivery_busy);
  RUN_TEST(test_lifecycle_options);
  RUN_TEST(test_server_frozen_then_killed); /* kills the server: last */
  return 0;
}

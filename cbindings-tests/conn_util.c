/* See conn_util.h. */
#include "conn_util.h"

const char *sname(uint32_t s) { return rgrpc_connectivity_state_name(s); }

/* The transitions of doc/connectivity-semantics-and-api.md (grpc/grpc). */
bool legal_transition(uint32_t from, uint32_t to) {
  switch (from) {
    case S_IDLE: return to == S_CONNECTING || to == S_SHUTDOWN;
    case S_CONNECTING:
      return to == S_READY || to == S_TF || to == S_IDLE || to == S_SHUTDOWN;
    case S_READY: return to == S_TF || to == S_IDLE || to == S_SHUTDOWN;
    case S_TF: return to == S_CONNECTING || to == S_SHUTDOWN;
    default: return false;
  }
}

void log_init(state_log *l) {
  memset(l, 0, sizeof *l);
  CHECK(pthread_mutex_init(&l->mu, NULL) == 0);
}

void log_destroy(state_log *l) { pthread_mutex_destroy(&l->mu); }

void on_state(void *ud, rgrpc_connectivity_state s) {
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
uint64_t log_subscribe(rgrpc_channel *ch, state_log *l, bool try_to_connect) {
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
void log_unsubscribe(rgrpc_channel *ch, state_log *l, uint64_t id) {
  CHECK_OK(rgrpc_channel_unsubscribe(ch, id));
  pthread_mutex_lock(&l->mu);
  l->unsubscribed = true;
  pthread_mutex_unlock(&l->mu);
  CHECK_RC(rgrpc_channel_unsubscribe(ch, id), RGRPC_RESULT_NOT_FOUND);
}

int log_count(state_log *l) {
  pthread_mutex_lock(&l->mu);
  int n = l->n;
  pthread_mutex_unlock(&l->mu);
  return n;
}

uint32_t log_at(state_log *l, int i) {
  pthread_mutex_lock(&l->mu);
  CHECK(i >= 0 && i < l->n);
  uint32_t s = l->states[i];
  pthread_mutex_unlock(&l->mu);
  return s;
}

int64_t log_time(state_log *l, int i) {
  pthread_mutex_lock(&l->mu);
  CHECK(i >= 0 && i < l->n);
  int64_t t = l->at[i];
  pthread_mutex_unlock(&l->mu);
  return t;
}

/* "IDLE CONNECTING READY ..." for messages (static buffer: main thread only). */
const char *log_str(state_log *l) {
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
bool log_wait_n(state_log *l, int n, int64_t timeout_ms) {
  int64_t end = tu_now_ms() + timeout_ms;
  while (log_count(l) < n) {
    if (tu_now_ms() >= end) return false;
    tu_sleep_ms(2);
  }
  return true;
}

/* Waits until `s` is recorded at an index >= `from`; returns the index or -1. */
int log_wait_state(state_log *l, uint32_t s, int from, int64_t timeout_ms) {
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

int log_count_state(state_log *l, uint32_t s) {
  int c = 0;
  pthread_mutex_lock(&l->mu);
  for (int i = 0; i < l->n; i++) c += l->states[i] == s;
  pthread_mutex_unlock(&l->mu);
  return c;
}

/* The recorded states are exactly the list given (terminated by -1). */
void check_log_is(state_log *l, int line, const int *want) {
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

void set_int(rgrpc_channel_options *o, const char *key, int64_t v) {
  rgrpc_result rc = rgrpc_channel_options_set_int(o, key, v);
  CHECK_MSG(rc == RGRPC_RESULT_OK, "set_int(%s, %lld): %s: %s", key, (long long)v,
            rgrpc_result_name(rc), rgrpc_channel_options_last_error(o));
}

/* A channel to the refused target with the given reconnect backoff. */
rgrpc_channel *refused_channel(int64_t initial_backoff_ms, int64_t max_backoff_ms) {
  rgrpc_channel_options *o = rgrpc_channel_options_new();
  CHECK(o != NULL);
  set_int(o, "grpc.initial_reconnect_backoff_ms", initial_backoff_ms);
  set_int(o, "grpc.max_reconnect_backoff_ms", max_backoff_ms);
  rgrpc_channel *ch = tu_channel(REFUSED_TARGET, o);
  rgrpc_channel_options_free(o);
  return ch;
}

/* Polls get_state (without connecting) until it is `s`. */
bool wait_state(rgrpc_channel *ch, uint32_t s, int64_t timeout_ms) {
  int64_t end = tu_now_ms() + timeout_ms;
  while (rgrpc_channel_get_state(ch, false) != s) {
    if (tu_now_ms() >= end) return false;
    tu_sleep_ms(2);
  }
  return true;
}

rgrpc_call_options *wfr_opts(int64_t timeout_ms) {
  rgrpc_call_options *o = rgrpc_call_options_new();
  CHECK(o != NULL);
  CHECK_OK(rgrpc_call_options_set_wait_for_ready(o, true));
  if (timeout_ms >= 0) CHECK_OK(rgrpc_call_options_set_timeout_ms(o, timeout_ms));
  return o;
}

void *wfr_call_main(void *p) {
  wfr_call_args *a = p;
  rgrpc_call_options *o = wfr_opts(a->timeout_ms);
  a->code = tu_unary_size(a->ch, o, 1, NULL);
  a->ended_at = tu_now_ms();
  rgrpc_call_options_free(o);
  tu_latch_count_down(&a->done);
  return NULL;
}

void *wait_ready_main(void *p) {
  wait_ready_args *a = p;
  a->rc = rgrpc_channel_wait_for_ready(a->ch, a->timeout_ms);
  a->ended_at = tu_now_ms();
  tu_latch_count_down(&a->done);
  return NULL;
}

void ready_rec_init(ready_rec *r) {
  CHECK(pthread_mutex_init(&r->mu, NULL) == 0);
  r->runs = 0;
  r->result = (rgrpc_result)0xFFFF;
  tu_latch_init(&r->latch, 1);
}

void ready_rec_destroy(ready_rec *r) {
  tu_latch_destroy(&r->latch);
  pthread_mutex_destroy(&r->mu);
}

void on_ready(void *ud, rgrpc_result result) {
  ready_rec *r = ud;
  pthread_mutex_lock(&r->mu);
  r->runs++;
  r->result = result;
  pthread_mutex_unlock(&r->mu);
  tu_latch_count_down(&r->latch);
}

int ready_runs(ready_rec *r) {
  pthread_mutex_lock(&r->mu);
  int n = r->runs;
  pthread_mutex_unlock(&r->mu);
  return n;
}

void *future_wait_main(void *p) {
  future_wait_args *a = p;
  a->rc = rgrpc_ready_future_wait(a->f, a->timeout_ms);
  tu_latch_count_down(&a->done);
  return NULL;
}

void check_log_legal(state_log *l, int line) {
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

void check_ready_cb(ready_rec *r, rgrpc_result want, int line) {
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

/* Helpers shared by the connectivity tests (test_connectivity.c,
 * test_ready.c): a recorder of subscription states, a ready-future
 * callback recorder, threads that block in waits, and channels to a
 * refused port. */
#ifndef RGRPC_CONN_UTIL_H
#define RGRPC_CONN_UTIL_H

#include "test_util.h"

#define S_IDLE RGRPC_CONNECTIVITY_STATE_IDLE
#define S_CONNECTING RGRPC_CONNECTIVITY_STATE_CONNECTING
#define S_READY RGRPC_CONNECTIVITY_STATE_READY
#define S_TF RGRPC_CONNECTIVITY_STATE_TRANSIENT_FAILURE
#define S_SHUTDOWN RGRPC_CONNECTIVITY_STATE_SHUTDOWN

/* Nothing listens on port 1: every connection attempt is refused at once. */
#define REFUSED_TARGET "127.0.0.1:1"

const char *sname(uint32_t s);

/* The transitions of doc/connectivity-semantics-and-api.md (grpc/grpc). */
bool legal_transition(uint32_t from, uint32_t to);

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

void log_init(state_log *l);

void log_destroy(state_log *l);

void on_state(void *ud, rgrpc_connectivity_state s);

/* Subscribes `l` to `ch`; the id is stored in `l` (for self-unsubscription). */
uint64_t log_subscribe(rgrpc_channel *ch, state_log *l, bool try_to_connect);

/* Unsubscribes from outside the callback, then marks `l` so that any later
 * callback counts as a violation. */
void log_unsubscribe(rgrpc_channel *ch, state_log *l, uint64_t id);

int log_count(state_log *l);

uint32_t log_at(state_log *l, int i);

int64_t log_time(state_log *l, int i);

/* "IDLE CONNECTING READY ..." for messages (static buffer: main thread only). */
const char *log_str(state_log *l);

/* Waits until at least `n` states are recorded. */
bool log_wait_n(state_log *l, int n, int64_t timeout_ms);

/* Waits until `s` is recorded at an index >= `from`; returns the index or -1. */
int log_wait_state(state_log *l, uint32_t s, int from, int64_t timeout_ms);

int log_count_state(state_log *l, uint32_t s);

/* Every consecutive pair is a legal transition (so no state repeats). */
#define CHECK_LOG_LEGAL(l) check_log_legal(l, __LINE__)
void check_log_legal(state_log *l, int line);

/* The recorded states are exactly the list given (terminated by -1). */
void check_log_is(state_log *l, int line, const int *want);
#define CHECK_LOG_IS(l, ...)                    \
  do {                                          \
    static const int want_[] = {__VA_ARGS__, -1}; \
    check_log_is(l, __LINE__, want_);           \
  } while (0)

/* ------------------------------------------------------------ other helpers */

void set_int(rgrpc_channel_options *o, const char *key, int64_t v);

/* A channel to the refused target with the given reconnect backoff. */
rgrpc_channel *refused_channel(int64_t initial_backoff_ms, int64_t max_backoff_ms);

/* Polls get_state (without connecting) until it is `s`. */
bool wait_state(rgrpc_channel *ch, uint32_t s, int64_t timeout_ms);

rgrpc_call_options *wfr_opts(int64_t timeout_ms);

/* A thread making one wait-for-ready unary call. */
typedef struct {
  rgrpc_channel *ch;
  int64_t timeout_ms;
  rgrpc_status_code code;
  int64_t ended_at;
  tu_latch done;
} wfr_call_args;

void *wfr_call_main(void *p);

/* A thread blocked in rgrpc_channel_wait_for_ready. */
typedef struct {
  rgrpc_channel *ch;
  int64_t timeout_ms;
  rgrpc_result rc;
  int64_t ended_at;
  tu_latch done;
} wait_ready_args;

void *wait_ready_main(void *p);

/* A ready-future callback recorder. */
typedef struct {
  pthread_mutex_t mu;
  int runs;
  rgrpc_result result;
  tu_latch latch;
} ready_rec;

void ready_rec_init(ready_rec *r);

void ready_rec_destroy(ready_rec *r);

void on_ready(void *ud, rgrpc_result result);

int ready_runs(ready_rec *r);

/* A thread blocked in rgrpc_ready_future_wait. */
typedef struct {
  rgrpc_ready_future *f;
  int64_t timeout_ms;
  rgrpc_result rc;
  tu_latch done;
} future_wait_args;

void *future_wait_main(void *p);

/* The callback ran exactly once, with `want` (waits for it, then a little
 * more to catch a second run). */
#define CHECK_READY_CB(r, want) check_ready_cb(r, want, __LINE__)
void check_ready_cb(ready_rec *r, rgrpc_result want, int line);

#endif

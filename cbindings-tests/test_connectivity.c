/* Connectivity: channel states, state subscriptions (in order, from any
 * thread, unsubscribed from inside the callback, under stress), the idle
 * timeout, the lifecycle options, keepalive, and NULL handling. Waiting for
 * READY, the reconnect backoff and the ready future are in test_ready.c;
 * the shared helpers in conn_util.c.
 *
 * The last test freezes and then kills the test server
 * (RGRPC_TEST_SERVER_PID), so everything needing it runs first. */
#include "conn_util.h"

#include <signal.h>
#include <sys/types.h>

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
  /* A lost connection is not a failure (gRFC A62, as C-core): IDLE. */
  int idle = log_wait_state(&l, S_IDLE, ready + 1, 2000 * tu_slow());
  CHECK_MSG(idle == ready + 1, "READY not followed by IDLE: %s", log_str(&l));
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
  idle = log_wait_state(&l, S_IDLE, ready + 1, 5000 * tu_slow());
  CHECK_MSG(idle == ready + 1, "READY not followed by IDLE: %s", log_str(&l));

  /* Later calls: fail-fast UNAVAILABLE once the new connection is refused
   * (the channel is then TRANSIENT_FAILURE); wait-for-ready until the
   * deadline. */
  t0 = tu_now_ms();
  CHECK_CODE(tu_unary_size(ch, NULL, 1, NULL), RGRPC_STATUS_CODE_UNAVAILABLE);
  CHECK_MSG(tu_now_ms() - t0 < 1000 * tu_slow(), "a fail-fast call took %lld ms",
            (long long)(tu_now_ms() - t0));
  int tf = log_wait_state(&l, S_TF, idle + 1, 2000 * tu_slow());
  CHECK_MSG(tf > idle, "no TRANSIENT_FAILURE after the refused connection: %s", log_str(&l));
  uint32_t s = rgrpc_channel_get_state(ch, false);
  CHECK_MSG(s == S_TF || s == S_CONNECTING, "state %s", sname(s));
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
  RUN_TEST(test_idle_timeout);
  RUN_TEST(test_subscribe_unsubscribe_stress);
  RUN_TEST(test_subscribe_while_delivery_busy);
  RUN_TEST(test_lifecycle_options);
  RUN_TEST(test_server_frozen_then_killed); /* kills the server: last */
  return 0;
}

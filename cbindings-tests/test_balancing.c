/* Many backends from C: three real grpcio servers on 127.0.0.1, .2 and .3
 * (with_server.py --servers 3: RGRPC_TEST_TARGETS, RGRPC_TEST_SERVER_PIDS).
 * round_robin by grpc.lb_policy_name and by the service config spreads
 * calls evenly (the servers say who answered: fill_server_id), each call's
 * peer is the server that answered it, a killed server's share goes to the
 * others, and an invalid service config is refused with its JSON path. */
#include <signal.h>
#include <sys/types.h>

#include "test_util.h"

#define NSERVERS 3

static const char *targets(void) {
  const char *t = getenv("RGRPC_TEST_TARGETS");
  CHECK_MSG(t != NULL && strncmp(t, "ipv4:", 5) == 0,
            "RGRPC_TEST_TARGETS is not set (run under with_server.py --servers 3)");
  return t;
}

/* The server pid of server `i` (0-based). */
static pid_t server_pid(int i) {
  const char *p = getenv("RGRPC_TEST_SERVER_PIDS");
  CHECK_MSG(p != NULL, "RGRPC_TEST_SERVER_PIDS is not set");
  for (int k = 0; k < i; k++) {
    p = strchr(p, ',');
    CHECK(p != NULL);
    p++;
  }
  return (pid_t)strtol(p, NULL, 10);
}

/* One UnaryCall with fill_server_id (field 9): returns the server's index
 * (from its id "s1".."s3"), or -1 when the call failed. Checks that the
 * call's peer is that server's address. */
static int call_once(rgrpc_channel *ch, const rgrpc_call_options *opts) {
  tu_pb req = TU_PB_INIT;
  tu_pb_field_varint(&req, 9, 1);
  rgrpc_call *call = NULL;
  CHECK_OK(rgrpc_call_start(ch, M_UNARY, opts, &call));
  CHECK(rgrpc_call_peer(call) == NULL); /* nothing sent yet */
  rgrpc_result rc = rgrpc_call_send(call, req.data, req.len, RGRPC_SEND_LAST);
  tu_pb_free(&req);
  int who = -1;
  rgrpc_buffer *buf = NULL;
  if (rc == RGRPC_RESULT_OK && rgrpc_call_recv(call, &buf) == RGRPC_RESULT_OK) {
    const uint8_t *id = NULL;
    size_t id_len = 0;
    if (tu_pb_find_bytes(rgrpc_buffer_data(buf), rgrpc_buffer_len(buf), 4, &id, &id_len) &&
        id_len == 2 && id[0] == 's' && id[1] >= '1' && id[1] < '1' + NSERVERS)
      who = id[1] - '1';
    rgrpc_buffer_free(buf);
  }
  const rgrpc_status *st = NULL;
  rc = rgrpc_call_finish(call, &st);
  if (rgrpc_status_get_code(st) != RGRPC_STATUS_CODE_OK) who = -1;
  rgrpc_status_free(st);
  if (who >= 0) {
    /* The peer names the host that answered: 127.0.0.<who+1>. */
    const char *peer = rgrpc_call_peer(call);
    char want[32];
    snprintf(want, sizeof want, "ipv4:127.0.0.%d:", who + 1);
    CHECK_MSG(peer != NULL && strncmp(peer, want, strlen(want)) == 0, "peer %s, server s%d",
              peer ? peer : "(null)", who + 1);
  }
  (void)rc;
  rgrpc_call_free(call);
  return who;
}

static rgrpc_channel *rr_channel(const char *key, const char *value) {
  rgrpc_channel_options *o = rgrpc_channel_options_new();
  CHECK_OK(rgrpc_channel_options_set_string(o, key, value));
  CHECK_OK(rgrpc_channel_options_set_int(o, "grpc.initial_reconnect_backoff_ms", 200));
  rgrpc_channel *ch = tu_channel(targets(), o);
  rgrpc_channel_options_free(o);
  return ch;
}

static rgrpc_call_options *wfr(void) {
  rgrpc_call_options *o = rgrpc_call_options_new();
  CHECK_OK(rgrpc_call_options_set_wait_for_ready(o, true));
  CHECK_OK(rgrpc_call_options_set_timeout_ms(o, 20000 * tu_slow()));
  return o;
}

/* Calls until every server has answered once (all READY), then `n`
 * calls; counts[] gets each server's share of the `n`. */
static void spread(rgrpc_channel *ch, int n, int counts[NSERVERS]) {
  rgrpc_call_options *o = wfr();
  bool seen[NSERVERS] = {false};
  int64_t deadline = tu_now_ms() + 20000 * tu_slow();
  for (int all = 0; all < NSERVERS;) {
    CHECK_MSG(tu_now_ms() < deadline, "not every server answered");
    int who = call_once(ch, o);
    CHECK(who >= 0);
    if (!seen[who]) {
      seen[who] = true;
      all++;
    }
  }
  memset(counts, 0, sizeof(int) * NSERVERS);
  for (int i = 0; i < n; i++) {
    int who = call_once(ch, o);
    CHECK_MSG(who >= 0, "call %d failed", i);
    counts[who]++;
  }
  rgrpc_call_options_free(o);
}

static void test_round_robin_by_option(void) {
  rgrpc_channel *ch = rr_channel("grpc.lb_policy_name", "round_robin");
  int counts[NSERVERS];
  spread(ch, 3000, counts);
  tu_note("round_robin, 3000 calls: s1 %d, s2 %d, s3 %d", counts[0], counts[1], counts[2]);
  for (int i = 0; i < NSERVERS; i++)
    CHECK_MSG(counts[i] >= 950 && counts[i] <= 1050, "s%d got %d of 3000", i + 1, counts[i]);
  rgrpc_channel_free(ch);
}

static void test_round_robin_by_service_config(void) {
  rgrpc_channel *ch = rr_channel(
      "grpc.service_config",
      "{\"loadBalancingConfig\": [{\"unknown_policy\": {}}, {\"round_robin\": {}}],"
      " \"methodConfig\": [{\"name\": [{\"service\": \"grpc.testing.TestService\"}],"
      " \"timeout\": \"10s\"}]}");
  int counts[NSERVERS];
  spread(ch, 300, counts);
  for (int i = 0; i < NSERVERS; i++)
    CHECK_MSG(counts[i] >= 90 && counts[i] <= 110, "s%d got %d of 300", i + 1, counts[i]);
  rgrpc_channel_free(ch);
}

static void test_pick_first_is_the_default(void) {
  rgrpc_channel *ch = tu_channel(targets(), NULL);
  rgrpc_call_options *o = wfr();
  for (int i = 0; i < 50; i++) CHECK_MSG(call_once(ch, o) == 0, "call %d not on s1", i);
  rgrpc_call_options_free(o);
  rgrpc_channel_free(ch);
}

static void test_invalid_service_config_is_refused(void) {
  rgrpc_channel_options *o = rgrpc_channel_options_new();
  CHECK_RC(rgrpc_channel_options_set_string(
               o, "grpc.service_config",
               "{\"methodConfig\": [{\"name\": [{}], \"retryPolicy\": {\"maxAttempts\": 1}}]}"),
           RGRPC_RESULT_INVALID_OPTION_VALUE);
  const char *why = rgrpc_channel_options_last_error(o);
  CHECK_MSG(strstr(why, "$.methodConfig[0].retryPolicy") != NULL, "%s", why);
  CHECK_RC(rgrpc_channel_options_set_string(o, "grpc.lb_policy_name", "grpclb"),
           RGRPC_RESULT_INVALID_OPTION_VALUE);
  why = rgrpc_channel_options_last_error(o);
  CHECK_MSG(strstr(why, "round_robin") != NULL, "%s", why);
  rgrpc_channel_options_free(o);
}

/* Last: kills s2. Its share goes to s1 and s3; wait-for-ready calls made
 * after the kill all succeed. */
static void test_killed_server_share_goes_to_the_others(void) {
  rgrpc_channel *ch = rr_channel("grpc.lb_policy_name", "round_robin");
  int counts[NSERVERS];
  spread(ch, 30, counts);
  CHECK(kill(server_pid(1), SIGKILL) == 0);
  tu_sleep_ms(200);
  rgrpc_call_options *o = wfr();
  memset(counts, 0, sizeof counts);
  for (int i = 0; i < 300; i++) {
    int who = call_once(ch, o);
    CHECK_MSG(who == 0 || who == 2, "call %d after the kill: server %d", i, who + 1);
    counts[who]++;
  }
  CHECK_MSG(counts[0] >= 130 && counts[2] >= 130, "s1 %d, s3 %d", counts[0], counts[2]);
  rgrpc_call_options_free(o);

  /* The snapshot shows the policy and s2's broken connection. */
  rgrpc_buffer *js = NULL;
  CHECK_RC(rgrpc_channel_snapshot(ch, NULL), RGRPC_RESULT_NULL_PARAMETER);
  CHECK_RC(rgrpc_channel_snapshot(NULL, &js), RGRPC_RESULT_NULL_PARAMETER);
  CHECK(js == NULL);
  CHECK_OK(rgrpc_channel_snapshot(ch, &js));
  size_t n = rgrpc_buffer_len(js);
  char *s = malloc(n + 1);
  CHECK(s != NULL);
  memcpy(s, rgrpc_buffer_data(js), n);
  s[n] = '\0';
  rgrpc_buffer_free(js);
  CHECK_MSG(strstr(s, "\"policy\":\"round_robin\"") != NULL, "%s", s);
  CHECK_MSG(strstr(s, "\"state\":\"READY\"") != NULL, "%s", s);
  const char *s2 = strstr(s, "\"address\":\"ipv4:127.0.0.2:");
  CHECK_MSG(s2 != NULL, "%s", s);
  const char *end = strchr(s2, '}');
  const char *breaks = strstr(s2, "\"breaks\":1");
  CHECK_MSG(end != NULL && breaks != NULL && breaks < end, "s2 shows no break: %s", s);
  tu_note("snapshot: %.300s...", s);
  free(s);
  rgrpc_channel_free(ch);
}

int main(void) {
  RUN_TEST(test_invalid_service_config_is_refused);
  RUN_TEST(test_pick_first_is_the_default);
  RUN_TEST(test_round_robin_by_option);
  RUN_TEST(test_round_robin_by_service_config);
  RUN_TEST(test_killed_server_share_goes_to_the_others);
  return 0;
}

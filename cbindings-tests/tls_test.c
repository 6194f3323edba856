/* TLS, mutual TLS and credentials over the C API, against a real server.
 *
 * One file of about 900 lines on purpose: one program that ctest runs in
 * the three server modes below, each test choosing by the mode; split, the
 * certificate loading and mode plumbing would be repeated in each part.
 *
 * Runs under with_server.py in one of three modes, chosen by the
 * environment with_server.py sets:
 *
 *   --tls   RGRPC_TEST_TLS=tls, RGRPC_TEST_CERTS_DIR=<dir>: the server serves
 *           TLS with <dir>/server.pem (DNS localhost, foo.test.google.fr,
 *           IP 127.0.0.1, signed by <dir>/ca.pem; see make_test_certs.py).
 *           Custom roots, the name override and :authority, hostname
 *           mismatch, unknown CA, access tokens, metadata plugins (sync,
 *           from another thread, failing), composite call and channel
 *           credentials, per-call credentials, credentials freed early,
 *           refusal on insecure channels, local credentials' targets.
 *   --mtls  RGRPC_TEST_TLS=mtls: the server also requires a client
 *           certificate signed by ca.pem. Client keys RSA (PKCS#1), ECDSA
 *           (SEC1 and PKCS#8) and Ed25519, no client certificate, a client
 *           certificate of another CA.
 *   neither plaintext server: local credentials (call credentials allowed
 *           on loopback), insecure channels refusing call credentials.
 *
 * What the server received is read back from its reflection: with
 * `x-rgrpc-echo-request-headers: 1` it returns `x-rgrpc-req-authority`,
 * `x-rgrpc-req-authorization` and (mutual TLS) `x-rgrpc-req-peer-cn` in the
 * initial metadata; with `x-rgrpc-echo-all: 1` every other metadata item as
 * `x-echo-<key>`. */
#include "test_util.h"

#include <errno.h>

#define MAX_MD 48

/* ------------------------------------------------------------- environment */

typedef enum { MODE_PLAIN, MODE_TLS, MODE_MTLS } Mode;

static Mode mode(void) {
  const char *m = getenv("RGRPC_TEST_TLS");
  if (!m || !m[0]) return MODE_PLAIN;
  if (strcmp(m, "mtls") == 0) return MODE_MTLS;
  CHECK_MSG(strcmp(m, "tls") == 0, "RGRPC_TEST_TLS=%s: want tls or mtls", m);
  return MODE_TLS;
}

static const char *certs_dir(void) {
  const char *d = getenv("RGRPC_TEST_CERTS_DIR");
  CHECK_MSG(d && d[0], "RGRPC_TEST_CERTS_DIR is not set: run under with_server.py --tls or --mtls");
  return d;
}

/* The server's port (from RGRPC_TEST_TARGET, "127.0.0.1:PORT"). */
static const char *port(void) {
  const char *colon = strrchr(tu_target(), ':');
  CHECK(colon != NULL);
  return colon + 1;
}

/* "HOST:PORT" of the test server into buf. */
static const char *target_on(const char *host, char *buf, size_t len) {
  snprintf(buf, len, "%s:%s", host, port());
  return buf;
}

/* A certificate file of the test directory, read whole (malloc'd, NUL
 * appended but not counted). */
static uint8_t *read_cert(const char *name, size_t *len_out) {
  char path[1024];
  snprintf(path, sizeof path, "%s/%s", certs_dir(), name);
  FILE *f = fopen(path, "rb");
  CHECK_MSG(f != NULL, "cannot open %s: %s", path, strerror(errno));
  size_t cap = 4096, len = 0;
  uint8_t *data = malloc(cap);
  CHECK(data != NULL);
  size_t n;
  while ((n = fread(data + len, 1, cap - len - 1, f)) > 0) {
    len += n;
    if (cap - len - 1 == 0) {
      cap *= 2;
      data = realloc(data, cap);
      CHECK(data != NULL);
    }
  }
  CHECK_MSG(!ferror(f), "cannot read %s", path);
  fclose(f);
  data[len] = '\0';
  *len_out = len;
  return data;
}

/* ------------------------------------------------------------- credentials */

/* rgrpc_channel_credentials_tls with files of the test directory (NULL:
 * not given); returns the result, the credentials in *out, the error
 * message (if any) in msg. */
static rgrpc_result tls_creds_rc(const char *roots, const char *chain, const char *key,
                                 const rgrpc_channel_credentials **out, char *msg, size_t msg_len) {
  size_t roots_len = 0, chain_len = 0, key_len = 0;
  uint8_t *roots_pem = roots ? read_cert(roots, &roots_len) : NULL;
  uint8_t *chain_pem = chain ? read_cert(chain, &chain_len) : NULL;
  uint8_t *key_pem = key ? read_cert(key, &key_len) : NULL;
  rgrpc_error *err = NULL;
  rgrpc_result rc = rgrpc_channel_credentials_tls(roots_pem, roots_len, chain_pem, chain_len,
                                                  key_pem, key_len, out, &err);
  if (msg) snprintf(msg, msg_len, "%s", err ? rgrpc_error_message(err) : "");
  if (rc == RGRPC_RESULT_OK) CHECK(err == NULL);
  rgrpc_error_free(err);
  free(roots_pem);
  free(chain_pem);
  free(key_pem);
  return rc;
}

/* TLS credentials that must be made. */
static const rgrpc_channel_credentials *tls_creds(const char *roots, const char *chain,
                                                  const char *key) {
  const rgrpc_channel_credentials *creds = NULL;
  char msg[512];
  rgrpc_result rc = tls_creds_rc(roots, chain, key, &creds, msg, sizeof msg);
  CHECK_MSG(rc == RGRPC_RESULT_OK, "rgrpc_channel_credentials_tls(%s, %s, %s): %s: %s",
            roots ? roots : "NULL", chain ? chain : "NULL", key ? key : "NULL",
            rgrpc_result_name(rc), msg);
  CHECK(creds != NULL);
  return creds;
}

/* A channel with credentials and, when not NULL, the name override and
 * the default authority. */
static rgrpc_channel *channel_with(const char *target, const rgrpc_channel_credentials *creds,
                                   const char *name_override, const char *default_authority) {
  rgrpc_channel_options *opts = NULL;
  if (name_override || default_authority) {
    opts = rgrpc_channel_options_new();
    CHECK(opts != NULL);
    if (name_override)
      CHECK_OK(rgrpc_channel_options_set_string(opts, "grpc.ssl_target_name_override", name_override));
    if (default_authority)
      CHECK_OK(rgrpc_channel_options_set_string(opts, "grpc.default_authority", default_authority));
  }
  rgrpc_channel *ch = NULL;
  rgrpc_error *err = NULL;
  rgrpc_result rc = rgrpc_channel_new(target, creds, opts, &ch, &err);
  CHECK_MSG(rc == RGRPC_RESULT_OK, "rgrpc_channel_new(%s): %s: %s", target, rgrpc_result_name(rc),
            rgrpc_error_message(err));
  rgrpc_channel_options_free(opts);
  return ch;
}

static const rgrpc_call_credentials *token_creds(const char *token) {
  const rgrpc_call_credentials *c = NULL;
  CHECK_OK(rgrpc_call_credentials_access_token(token, &c, NULL));
  CHECK(c != NULL);
  return c;
}

static const rgrpc_channel_credentials *composite_channel(const rgrpc_channel_credentials *ch,
                                                          const rgrpc_call_credentials *call) {
  const rgrpc_channel_credentials *c = NULL;
  CHECK_OK(rgrpc_channel_credentials_composite(ch, call, &c));
  CHECK(c != NULL);
  return c;
}

/* ------------------------------------------------------------------ plugin */

/* A metadata plugin's state: answers with one entry (key, value), or fails
 * with (fail_code, fail_details); now, or after delay_ms from a thread of
 * its own. Records what it was asked. */
typedef struct Plugin {
  const char *key, *value;
  bool fail;
  uint32_t fail_code;
  const char *fail_details;
  int delay_ms; /* 0: answer in the callback */
  pthread_mutex_t mu;
  int calls;
  int destroyed;
  char method[128];
  char authority[128];
  pthread_t threads[16];
  int n_threads;
} Plugin;

static void plugin_init(Plugin *p, const char *key, const char *value) {
  memset(p, 0, sizeof *p);
  p->key = key;
  p->value = value;
  CHECK(pthread_mutex_init(&p->mu, NULL) == 0);
}

static void plugin_answer(Plugin *p, rgrpc_plugin_request *req) {
  if (p->fail) {
    CHECK_OK(rgrpc_plugin_request_fail(req, p->fail_code, p->fail_details));
    return;
  }
  CHECK_OK(rgrpc_plugin_request_add_metadata(req, p->key, (const uint8_t *)p->value, strlen(p->value)));
  CHECK_OK(rgrpc_plugin_request_complete(req));
}

typedef struct {
  Plugin *p;
  rgrpc_plugin_request *req;
} Later;

static void *answer_later(void *arg) {
  Later *l = arg;
  tu_sleep_ms(l->p->delay_ms);
  plugin_answer(l->p, l->req);
  free(l);
  return NULL;
}

static void plugin_cb(void *user_data, const char *method, const char *authority,
                      rgrpc_plugin_request *req) {
  Plugin *p = user_data;
  pthread_mutex_lock(&p->mu);
  p->calls++;
  snprintf(p->method, sizeof p->method, "%s", method ? method : "(null)");
  snprintf(p->authority, sizeof p->authority, "%s", authority ? authority : "(null)");
  if (p->delay_ms == 0) {
    pthread_mutex_unlock(&p->mu);
    plugin_answer(p, req);
    return;
  }
  CHECK(p->n_threads < (int)(sizeof p->threads / sizeof p->threads[0]));
  Later *l = malloc(sizeof *l);
  CHECK(l != NULL);
  l->p = p;
  l->req = req;
  tu_thread_start(&p->threads[p->n_threads++], answer_later, l);
  pthread_mutex_unlock(&p->mu);
}

static void plugin_destroy(void *user_data) {
  Plugin *p = user_data;
  pthread_mutex_lock(&p->mu);
  p->destroyed++;
  pthread_mutex_unlock(&p->mu);
}

static const rgrpc_call_credentials *plugin_creds(Plugin *p) {
  const rgrpc_call_credentials *c = NULL;
  CHECK_OK(rgrpc_call_credentials_plugin(plugin_cb, p, plugin_destroy, &c));
  CHECK(c != NULL);
  return c;
}

static int plugin_get(Plugin *p, const int *field) {
  pthread_mutex_lock(&p->mu);
  int v = *field;
  pthread_mutex_unlock(&p->mu);
  return v;
}

/* Joins the answering threads, checks the destroy callback ran exactly once
 * (the library may release its last reference on one of its threads just
 * after a call ends: allow a moment), and frees the plugin state. */
static void plugin_finish(Plugin *p) {
  for (int i = 0; i < p->n_threads; i++) tu_thread_join(p->threads[i]);
  int64_t deadline = tu_now_ms() + 2000 * tu_slow();
  while (plugin_get(p, &p->destroyed) == 0 && tu_now_ms() < deadline) tu_sleep_ms(5);
  CHECK_EQ_INT(plugin_get(p, &p->destroyed), 1);
  pthread_mutex_destroy(&p->mu);
}

/* -------------------------------------------------------------------- echo */

/* The outcome of one EmptyCall with header reflection: status and a copy of
 * the response initial metadata. */
typedef struct {
  rgrpc_status_code code;
  char details[1024];
  int64_t ms;
  size_t n;
  char key[MAX_MD][96];
  char value[MAX_MD][512];
} Echo;

/* An EmptyCall asking the server to reflect what it received, with call
 * credentials `creds` (may be NULL) on the call options. */
static void echo_call(rgrpc_channel *ch, const rgrpc_call_credentials *creds, Echo *e) {
  memset(e, 0, sizeof *e);
  rgrpc_call_options *o = tu_opts_md("x-rgrpc-echo-request-headers", "1");
  CHECK_OK(rgrpc_call_options_add_metadata_string(o, "x-rgrpc-echo-all", "1"));
  CHECK_OK(rgrpc_call_options_set_timeout_ms(o, 20000 * tu_slow()));
  if (creds) CHECK_OK(rgrpc_call_options_set_credentials(o, creds));
  int64_t t0 = tu_now_ms();
  rgrpc_call *call = NULL;
  CHECK_OK(rgrpc_call_start(ch, M_EMPTY, o, &call));
  rgrpc_call_options_free(o);
  rgrpc_result rc = rgrpc_call_send(call, NULL, 0, RGRPC_SEND_LAST);
  CHECK_MSG(rc == RGRPC_RESULT_OK || rc == RGRPC_RESULT_CALL_ENDED, "rgrpc_call_send: %s",
            rgrpc_result_name(rc));
  const rgrpc_metadata *md = NULL;
  CHECK_OK(rgrpc_call_initial_metadata(call, &md));
  for (size_t i = 0; i < rgrpc_metadata_len(md) && e->n < MAX_MD; i++) {
    const char *k = NULL;
    const uint8_t *v = NULL;
    size_t vl = 0;
    CHECK_OK(rgrpc_metadata_get(md, i, &k, &v, &vl));
    snprintf(e->key[e->n], sizeof e->key[e->n], "%s", k);
    if (vl >= sizeof e->value[e->n]) vl = sizeof e->value[e->n] - 1;
    if (vl) memcpy(e->value[e->n], v, vl);
    e->value[e->n][vl] = '\0';
    e->n++;
  }
  const rgrpc_status *st = NULL;
  rc = rgrpc_call_finish(call, &st);
  CHECK_MSG(rc == RGRPC_RESULT_OK || rc == RGRPC_RESULT_RPC_FAILED, "rgrpc_call_finish: %s",
            rgrpc_result_name(rc));
  CHECK(st != NULL);
  e->code = rgrpc_status_get_code(st);
  snprintf(e->details, sizeof e->details, "%s", rgrpc_status_details(st));
  rgrpc_status_free(st);
  rgrpc_call_free(call);
  e->ms = tu_now_ms() - t0;
}

/* The first value of `key` in the reflected metadata, or NULL. */
static const char *echo_get(const Echo *e, const char *key) {
  for (size_t i = 0; i < e->n; i++)
    if (strcmp(e->key[i], key) == 0) return e->value[i];
  return NULL;
}

/* All values of `key`, comma-joined in order, into buf. */
static const char *echo_all_values(const Echo *e, const char *key, char *buf, size_t len) {
  buf[0] = '\0';
  for (size_t i = 0; i < e->n; i++) {
    if (strcmp(e->key[i], key) != 0) continue;
    size_t used = strlen(buf);
    snprintf(buf + used, len - used, "%s%s", used ? "," : "", e->value[i]);
  }
  return buf;
}

#define CHECK_ECHO_OK(e) \
  CHECK_MSG((e).code == RGRPC_STATUS_CODE_OK, "got %s \"%s\"", rgrpc_status_code_name((e).code), (e).details)

#define CHECK_ECHO_FAILS(e, want_code, word)                                                   \
  do {                                                                                         \
    CHECK_MSG((e).code == (want_code), "got %s \"%s\", want %s", rgrpc_status_code_name((e).code), \
              (e).details, rgrpc_status_code_name(want_code));                                 \
    CHECK_MSG(strstr((e).details, (word)) != NULL, "details \"%s\" lack \"%s\"", (e).details, (word)); \
    tu_note("%s: %s", rgrpc_status_code_name((e).code), (e).details);                          \
  } while (0)

/* The value of `key` must be `want` (NULL: absent). */
static void check_reflected(const Echo *e, const char *key, const char *want) {
  const char *got = echo_get(e, key);
  if (want == NULL) {
    CHECK_MSG(got == NULL, "%s: \"%s\", want none", key, got);
  } else {
    CHECK_MSG(got != NULL, "%s missing (want \"%s\"): the server did not reflect it", key, want);
    CHECK_STR(got, want);
  }
}

/* ===================================================================== TLS */

static void test_custom_roots(void) {
  const rgrpc_channel_credentials *creds = tls_creds("ca.pem", NULL, NULL);
  const char *hosts[] = {"localhost", "127.0.0.1"};
  for (size_t i = 0; i < 2; i++) {
    char target[64];
    target_on(hosts[i], target, sizeof target);
    rgrpc_channel *ch = channel_with(target, creds, NULL, NULL);
    Echo e;
    echo_call(ch, NULL, &e);
    CHECK_ECHO_OK(e);
    check_reflected(&e, "x-rgrpc-req-authority", target);
    check_reflected(&e, "x-rgrpc-req-peer-cn", NULL);
    check_reflected(&e, "x-rgrpc-req-authorization", NULL);
    /* More calls reuse the connection. */
    CHECK_CODE(tu_unary_size(ch, NULL, 1000, NULL), RGRPC_STATUS_CODE_OK);
    rgrpc_channel_free(ch);
  }
  rgrpc_channel_credentials_free(creds);
}

static void test_name_override(void) {
  const rgrpc_channel_credentials *creds = tls_creds("ca.pem", NULL, NULL);
  char target[64], want[128], got[128];
  target_on("127.0.0.1", target, sizeof target);
  rgrpc_channel *ch = channel_with(target, creds, "foo.test.google.fr", NULL);
  snprintf(want, sizeof want, "foo.test.google.fr:%s", port());
  size_t len = 0;
  CHECK_OK(rgrpc_channel_authority(ch, got, sizeof got, &len));
  CHECK_STR(got, want);
  Echo e;
  echo_call(ch, NULL, &e);
  CHECK_ECHO_OK(e);
  check_reflected(&e, "x-rgrpc-req-authority", want);
  rgrpc_channel_free(ch);

  /* grpc.default_authority sets the :authority; the override still names
   * the certificate. */
  ch = channel_with(target, creds, "foo.test.google.fr", "virtual.example:8443");
  echo_call(ch, NULL, &e);
  CHECK_ECHO_OK(e);
  check_reflected(&e, "x-rgrpc-req-authority", "virtual.example:8443");
  rgrpc_channel_free(ch);
  rgrpc_channel_credentials_free(creds);
}

static void test_hostname_mismatch(void) {
  const rgrpc_channel_credentials *creds = tls_creds("ca.pem", NULL, NULL);
  char target[64];
  /* localhost is a name of the certificate; the override replaces it. */
  rgrpc_channel *ch = channel_with(target_on("localhost", target, sizeof target), creds,
                                   "wrong.example", NULL);
  Echo e;
  echo_call(ch, NULL, &e);
  CHECK_ECHO_FAILS(e, RGRPC_STATUS_CODE_UNAVAILABLE, "hostname");
  CHECK_MSG(strstr(e.details, "wrong.example") != NULL, "details \"%s\" lack the name", e.details);
  /* Again on the same channel: the same verdict (a new handshake). */
  echo_call(ch, NULL, &e);
  CHECK_ECHO_FAILS(e, RGRPC_STATUS_CODE_UNAVAILABLE, "hostname");
  rgrpc_channel_free(ch);
  rgrpc_channel_credentials_free(creds);
}

static void test_unknown_ca(void) {
  const rgrpc_channel_credentials *creds = tls_creds("otherca.pem", NULL, NULL);
  char target[64];
  rgrpc_channel *ch = channel_with(target_on("localhost", target, sizeof target), creds, NULL, NULL);
  Echo e;
  echo_call(ch, NULL, &e);
  CHECK_ECHO_FAILS(e, RGRPC_STATUS_CODE_UNAVAILABLE, "unknown");
  rgrpc_channel_free(ch);
  rgrpc_channel_credentials_free(creds);
}

static void test_tls_credentials_errors(void) {
  const rgrpc_channel_credentials *creds = NULL;
  char msg[512];
  rgrpc_error *err = NULL;
  static const uint8_t junk[] = "this is not PEM";
  /* Roots without a certificate. */
  CHECK_RC(rgrpc_channel_credentials_tls(junk, sizeof junk - 1, NULL, 0, NULL, 0, &creds, &err),
           RGRPC_RESULT_INVALID_ARGUMENT);
  CHECK(creds == NULL);
  CHECK(err != NULL);
  CHECK_NONEMPTY(rgrpc_error_message(err));
  tu_note("junk roots: %s", rgrpc_error_message(err));
  rgrpc_error_free(err);
  err = NULL;
  /* A chain without its key, a key without its chain. */
  CHECK_RC(tls_creds_rc("ca.pem", "client.pem", NULL, &creds, msg, sizeof msg),
           RGRPC_RESULT_INVALID_ARGUMENT);
  CHECK_NONEMPTY(msg);
  CHECK_RC(tls_creds_rc("ca.pem", NULL, "client.key", &creds, msg, sizeof msg),
           RGRPC_RESULT_INVALID_ARGUMENT);
  CHECK_NONEMPTY(msg);
  /* A key file that holds no key. */
  CHECK_RC(tls_creds_rc("ca.pem", "client.pem", "client.pem", &creds, msg, sizeof msg),
           RGRPC_RESULT_INVALID_ARGUMENT);
  CHECK_NONEMPTY(msg);
  tu_note("certificate as key: %s", msg);
  CHECK(creds == NULL);
  /* Nowhere to put the result. */
  CHECK_RC(rgrpc_channel_credentials_tls(NULL, 0, NULL, 0, NULL, 0, NULL, NULL),
           RGRPC_RESULT_NULL_PARAMETER);
  /* Default roots (NULL): made without error. */
  CHECK_OK(rgrpc_channel_credentials_tls(NULL, 0, NULL, 0, NULL, 0, &creds, NULL));
  rgrpc_channel_credentials_free(creds);
}

/* ============================================================ credentials */

/* The secure channel the credential tests use: TLS with the test CA, or
 * local credentials on a plaintext server. */
static const rgrpc_channel_credentials *secure_creds(void) {
  if (mode() == MODE_PLAIN) return rgrpc_channel_credentials_local();
  return tls_creds("ca.pem", NULL, NULL);
}

static rgrpc_channel *secure_channel(const rgrpc_channel_credentials *creds) {
  char target[64];
  return channel_with(target_on("127.0.0.1", target, sizeof target), creds, NULL, NULL);
}

static void test_access_token(void) {
  const rgrpc_channel_credentials *base = secure_creds();
  const rgrpc_call_credentials *tok = token_creds("tok-123");
  /* On the channel (composite channel credentials). */
  const rgrpc_channel_credentials *comp = composite_channel(base, tok);
  rgrpc_channel *ch = secure_channel(comp);
  Echo e;
  echo_call(ch, NULL, &e);
  CHECK_ECHO_OK(e);
  check_reflected(&e, "x-rgrpc-req-authorization", "Bearer tok-123");
  rgrpc_channel_free(ch);
  /* On one call. */
  ch = secure_channel(base);
  echo_call(ch, tok, &e);
  CHECK_ECHO_OK(e);
  check_reflected(&e, "x-rgrpc-req-authorization", "Bearer tok-123");
  echo_call(ch, NULL, &e);
  CHECK_ECHO_OK(e);
  check_reflected(&e, "x-rgrpc-req-authorization", NULL);
  rgrpc_channel_free(ch);
  rgrpc_channel_credentials_free(comp);
  rgrpc_call_credentials_free(tok);
  rgrpc_channel_credentials_free(base);

  /* Tokens that cannot be sent; the error object says why. */
  const rgrpc_call_credentials *bad = NULL;
  rgrpc_error *err = NULL;
  CHECK_RC(rgrpc_call_credentials_access_token("two words", &bad, &err),
           RGRPC_RESULT_INVALID_ARGUMENT);
  CHECK_RC(rgrpc_error_result(err), RGRPC_RESULT_INVALID_ARGUMENT);
  CHECK_STR(rgrpc_error_message(err),
            "access token must be non-empty printable ASCII without spaces");
  rgrpc_error_free(err);
  CHECK_RC(rgrpc_call_credentials_access_token("", &bad, NULL), RGRPC_RESULT_INVALID_ARGUMENT);
  CHECK_RC(rgrpc_call_credentials_access_token("line\nbreak", &bad, NULL),
           RGRPC_RESULT_INVALID_ARGUMENT);
  err = NULL;
  CHECK_RC(rgrpc_call_credentials_access_token(NULL, &bad, &err), RGRPC_RESULT_NULL_PARAMETER);
  CHECK_STR(rgrpc_error_message(err), "token is NULL");
  rgrpc_error_free(err);
  CHECK(bad == NULL);
}

static void test_plugin_sync(void) {
  Plugin p;
  plugin_init(&p, "x-plugin-sync", "yes");
  const rgrpc_call_credentials *pc = plugin_creds(&p);
  const rgrpc_channel_credentials *base = secure_creds();
  rgrpc_channel *ch = secure_channel(base);
  char authority[128];
  CHECK_OK(rgrpc_channel_authority(ch, authority, sizeof authority, NULL));
  Echo e;
  for (int i = 0; i < 3; i++) {
    echo_call(ch, pc, &e);
    CHECK_ECHO_OK(e);
    check_reflected(&e, "x-echo-x-plugin-sync", "yes");
  }
  CHECK_EQ_INT(plugin_get(&p, &p.calls), 3);
  CHECK_STR(p.method, M_EMPTY);
  CHECK_STR(p.authority, authority);
  /* Not asked for calls without the credentials. */
  echo_call(ch, NULL, &e);
  CHECK_ECHO_OK(e);
  check_reflected(&e, "x-echo-x-plugin-sync", NULL);
  CHECK_EQ_INT(plugin_get(&p, &p.calls), 3);
  rgrpc_channel_free(ch);
  rgrpc_channel_credentials_free(base);
  CHECK_EQ_INT(plugin_get(&p, &p.destroyed), 0);
  rgrpc_call_credentials_free(pc);
  plugin_finish(&p);
}

static void test_plugin_async(void) {
  Plugin p;
  plugin_init(&p, "x-plugin-async", "later");
  p.delay_ms = 100;
  const rgrpc_call_credentials *pc = plugin_creds(&p);
  const rgrpc_channel_credentials *base = secure_creds();
  const rgrpc_channel_credentials *comp = composite_channel(base, pc);
  rgrpc_channel *ch = secure_channel(comp);
  Echo e;
  for (int i = 0; i < 2; i++) {
    echo_call(ch, NULL, &e);
    CHECK_ECHO_OK(e);
    check_reflected(&e, "x-echo-x-plugin-async", "later");
    CHECK_MSG(e.ms >= 100, "the call took %lld ms: it did not wait for the plugin", (long long)e.ms);
  }
  CHECK_EQ_INT(plugin_get(&p, &p.calls), 2);
  rgrpc_channel_free(ch);
  rgrpc_channel_credentials_free(comp);
  rgrpc_channel_credentials_free(base);
  rgrpc_call_credentials_free(pc);
  plugin_finish(&p);
}

static void test_plugin_failure(void) {
  const rgrpc_channel_credentials *base = secure_creds();
  rgrpc_channel *ch = secure_channel(base);
  struct {
    uint32_t code;
    int delay_ms;
    rgrpc_status_code want;
  } cases[] = {
      {0, 0, RGRPC_STATUS_CODE_UNAUTHENTICATED},
      {0, 100, RGRPC_STATUS_CODE_UNAUTHENTICATED},
      {RGRPC_STATUS_CODE_PERMISSION_DENIED, 0, RGRPC_STATUS_CODE_PERMISSION_DENIED},
      {RGRPC_STATUS_CODE_UNAVAILABLE, 50, RGRPC_STATUS_CODE_UNAVAILABLE},
      {999, 0, RGRPC_STATUS_CODE_UNAUTHENTICATED}, /* out of range */
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    Plugin p;
    plugin_init(&p, NULL, NULL);
    p.fail = true;
    p.fail_code = cases[i].code;
    p.fail_details = "no token for you";
    p.delay_ms = cases[i].delay_ms;
    const rgrpc_call_credentials *pc = plugin_creds(&p);
    Echo e;
    echo_call(ch, pc, &e);
    CHECK_ECHO_FAILS(e, cases[i].want, "no token for you");
    rgrpc_call_credentials_free(pc);
    plugin_finish(&p);
  }
  /* The channel still works. */
  Echo e;
  echo_call(ch, NULL, &e);
  CHECK_ECHO_OK(e);
  rgrpc_channel_free(ch);
  rgrpc_channel_credentials_free(base);
}

static void test_composite_call_credentials(void) {
  Plugin p1, p2;
  plugin_init(&p1, "x-order", "1");
  plugin_init(&p2, "x-order", "2");
  p2.delay_ms = 20;
  const rgrpc_call_credentials *c1 = plugin_creds(&p1), *c2 = plugin_creds(&p2);
  const rgrpc_call_credentials *tok = token_creds("tok-composite");
  const rgrpc_call_credentials *list[] = {tok, c1, c2};
  const rgrpc_call_credentials *comp = NULL;
  CHECK_OK(rgrpc_call_credentials_composite(list, 3, &comp));
  const rgrpc_call_credentials *none = NULL;
  CHECK_RC(rgrpc_call_credentials_composite(list, 0, &none), RGRPC_RESULT_INVALID_ARGUMENT);
  CHECK_RC(rgrpc_call_credentials_composite(NULL, 3, &none), RGRPC_RESULT_NULL_PARAMETER);
  const rgrpc_call_credentials *with_null[] = {tok, NULL};
  CHECK_RC(rgrpc_call_credentials_composite(with_null, 2, &none), RGRPC_RESULT_NULL_PARAMETER);
  CHECK(none == NULL);
  rgrpc_call_credentials_free(c1);
  rgrpc_call_credentials_free(c2);
  rgrpc_call_credentials_free(tok);

  const rgrpc_channel_credentials *base = secure_creds();
  rgrpc_channel *ch = secure_channel(base);
  Echo e;
  char buf[128];
  echo_call(ch, comp, &e);
  CHECK_ECHO_OK(e);
  check_reflected(&e, "x-rgrpc-req-authorization", "Bearer tok-composite");
  CHECK_STR(echo_all_values(&e, "x-echo-x-order", buf, sizeof buf), "1,2");
  rgrpc_channel_free(ch);
  rgrpc_channel_credentials_free(base);
  rgrpc_call_credentials_free(comp);
  plugin_finish(&p1);
  plugin_finish(&p2);
}

/* Channel credentials with call credentials, plus per-call credentials:
 * the channel's are applied first, then the call's. */
static void test_channel_and_call_credentials(void) {
  Plugin p1, p2;
  plugin_init(&p1, "x-order", "channel");
  plugin_init(&p2, "x-order", "call");
  const rgrpc_call_credentials *c1 = plugin_creds(&p1), *c2 = plugin_creds(&p2);
  const rgrpc_call_credentials *tok = token_creds("tok-channel");
  const rgrpc_call_credentials *list[] = {tok, c1};
  const rgrpc_call_credentials *chan_call = NULL;
  CHECK_OK(rgrpc_call_credentials_composite(list, 2, &chan_call));
  const rgrpc_channel_credentials *base = secure_creds();
  const rgrpc_channel_credentials *comp = composite_channel(base, chan_call);
  rgrpc_channel *ch = secure_channel(comp);
  Echo e;
  char buf[128];
  echo_call(ch, c2, &e);
  CHECK_ECHO_OK(e);
  check_reflected(&e, "x-rgrpc-req-authorization", "Bearer tok-channel");
  CHECK_STR(echo_all_values(&e, "x-echo-x-order", buf, sizeof buf), "channel,call");
  /* Without per-call credentials: the channel's only. */
  echo_call(ch, NULL, &e);
  CHECK_ECHO_OK(e);
  CHECK_STR(echo_all_values(&e, "x-echo-x-order", buf, sizeof buf), "channel");
  CHECK_EQ_INT(plugin_get(&p1, &p1.calls), 2);
  CHECK_EQ_INT(plugin_get(&p2, &p2.calls), 1);
  rgrpc_channel_free(ch);
  rgrpc_channel_credentials_free(comp);
  rgrpc_channel_credentials_free(base);
  rgrpc_call_credentials_free(chan_call);
  rgrpc_call_credentials_free(tok);
  rgrpc_call_credentials_free(c1);
  rgrpc_call_credentials_free(c2);
  plugin_finish(&p1);
  plugin_finish(&p2);
}

/* Every credentials object freed right after rgrpc_channel_new: the channel
 * keeps what it needs. */
static void test_credentials_freed_early(void) {
  Plugin p;
  plugin_init(&p, "x-plugin-early", "still here");
  const rgrpc_call_credentials *pc = plugin_creds(&p);
  const rgrpc_channel_credentials *base = secure_creds();
  const rgrpc_channel_credentials *comp = composite_channel(base, pc);
  rgrpc_channel *ch = secure_channel(comp);
  rgrpc_channel_credentials_free(comp);
  rgrpc_channel_credentials_free(base);
  rgrpc_call_credentials_free(pc);
  Echo e;
  for (int i = 0; i < 2; i++) {
    echo_call(ch, NULL, &e);
    CHECK_ECHO_OK(e);
    check_reflected(&e, "x-echo-x-plugin-early", "still here");
  }
  CHECK_EQ_INT(plugin_get(&p, &p.destroyed), 0);
  rgrpc_channel_free(ch);
  plugin_finish(&p);
}

/* Call credentials on an insecure channel end the call with
 * UNAUTHENTICATED before anything is sent (so any target will do). */
static void test_call_credentials_refused_on_insecure_channel(void) {
  const rgrpc_call_credentials *tok = token_creds("secret");
  Plugin p;
  plugin_init(&p, "x-plugin", "never");
  const rgrpc_call_credentials *pc = plugin_creds(&p);
  const rgrpc_channel_credentials *insecure = rgrpc_channel_credentials_insecure();
  CHECK(insecure != NULL);
  const char *targets[] = {tu_target(), "127.0.0.1:1"};
  for (size_t i = 0; i < 2; i++) {
    /* NULL credentials and explicit insecure ones alike. */
    for (int explicit_insecure = 0; explicit_insecure < 2; explicit_insecure++) {
      rgrpc_channel *ch = channel_with(targets[i], explicit_insecure ? insecure : NULL, NULL, NULL);
      Echo e;
      echo_call(ch, tok, &e);
      CHECK_ECHO_FAILS(e, RGRPC_STATUS_CODE_UNAUTHENTICATED, "secure");
      echo_call(ch, pc, &e);
      CHECK_ECHO_FAILS(e, RGRPC_STATUS_CODE_UNAUTHENTICATED, "secure");
      rgrpc_channel_free(ch);
    }
    /* Call credentials on the insecure channel itself. */
    const rgrpc_channel_credentials *comp = composite_channel(insecure, tok);
    rgrpc_channel *ch = channel_with(targets[i], comp, NULL, NULL);
    Echo e;
    echo_call(ch, NULL, &e);
    CHECK_ECHO_FAILS(e, RGRPC_STATUS_CODE_UNAUTHENTICATED, "secure");
    rgrpc_channel_free(ch);
    rgrpc_channel_credentials_free(comp);
  }
  CHECK_EQ_INT(plugin_get(&p, &p.calls), 0);
  rgrpc_channel_credentials_free(insecure);
  rgrpc_call_credentials_free(pc);
  rgrpc_call_credentials_free(tok);
  plugin_finish(&p);
}

/* Local credentials: loopback and Unix socket targets only (checked by
 * rgrpc_channel_new, without connecting). */
static void test_local_credentials_targets(void) {
  const rgrpc_channel_credentials *local = rgrpc_channel_credentials_local();
  CHECK(local != NULL);
  const char *ok[] = {"127.0.0.1:5", "localhost:5", "[::1]:5", "ipv4:127.0.0.2:5",
                      "unix:/tmp/rgrpc-no-such.sock", "unix:///tmp/rgrpc-no-such.sock"};
  for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
    rgrpc_channel *ch = NULL;
    rgrpc_error *err = NULL;
    rgrpc_result rc = rgrpc_channel_new(ok[i], local, NULL, &ch, &err);
    CHECK_MSG(rc == RGRPC_RESULT_OK, "%s: %s: %s", ok[i], rgrpc_result_name(rc), rgrpc_error_message(err));
    rgrpc_channel_free(ch);
  }
  /* Never connected to: rgrpc_channel_new refuses them first. */
  const char *refused[] = {"10.1.2.3:5", "example.com:443", "ipv4:127.0.0.1:5,10.1.2.3:5"};
  for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
    rgrpc_channel *ch = NULL;
    rgrpc_error *err = NULL;
    CHECK_RC(rgrpc_channel_new(refused[i], local, NULL, &ch, &err), RGRPC_RESULT_INVALID_ARGUMENT);
    CHECK(ch == NULL);
    CHECK(err != NULL);
    CHECK_NONEMPTY(rgrpc_error_message(err));
    if (i == 0) tu_note("%s: %s", refused[i], rgrpc_error_message(err));
    rgrpc_error_free(err);
  }
  rgrpc_channel_credentials_free(local);
}

/* ==================================================================== mTLS */

static void test_mtls_client_keys(void) {
  static const struct {
    const char *stem;
    const char *cn;
  } clients[] = {
      {"client", "rgrpc-test-client"},                 /* ECDSA P-256, PKCS#8 */
      {"client-rsa", "rgrpc-test-client-rsa"},         /* RSA 2048, PKCS#1 */
      {"client-ecdsa", "rgrpc-test-client-ecdsa"},     /* ECDSA P-256, SEC1 */
      {"client-ed25519", "rgrpc-test-client-ed25519"}, /* Ed25519, PKCS#8 */
  };
  const char *kind = getenv("RGRPC_TEST_SERVER_KIND");
  for (size_t i = 0; i < sizeof clients / sizeof clients[0]; i++) {
    if (kind && strcmp(kind, "grpcio") == 0 && strcmp(clients[i].stem, "client-ed25519") == 0) {
      /* gRPC core's BoringSSL server does not list Ed25519 among the
       * signature algorithms of its CertificateRequest, so a client with
       * an Ed25519 key has no acceptable certificate to send. The tonic
       * server (rustls) accepts it. */
      tu_note("skipped %s: the grpcio server does not accept Ed25519 client keys", clients[i].stem);
      continue;
    }
    char chain[64], key[64];
    snprintf(chain, sizeof chain, "%s.pem", clients[i].stem);
    snprintf(key, sizeof key, "%s.key", clients[i].stem);
    const rgrpc_channel_credentials *creds = tls_creds("ca.pem", chain, key);
    rgrpc_channel *ch = secure_channel(creds);
    rgrpc_channel_credentials_free(creds);
    Echo e;
    echo_call(ch, NULL, &e);
    CHECK_MSG(e.code == RGRPC_STATUS_CODE_OK, "%s: got %s \"%s\"", clients[i].stem,
              rgrpc_status_code_name(e.code), e.details);
    check_reflected(&e, "x-rgrpc-req-peer-cn", clients[i].cn);
    rgrpc_channel_free(ch);
  }
}

static void test_mtls_with_token(void) {
  const rgrpc_channel_credentials *creds = tls_creds("ca.pem", "client.pem", "client.key");
  const rgrpc_call_credentials *tok = token_creds("tok-mtls");
  const rgrpc_channel_credentials *comp = composite_channel(creds, tok);
  rgrpc_channel *ch = secure_channel(comp);
  Echo e;
  echo_call(ch, NULL, &e);
  CHECK_ECHO_OK(e);
  check_reflected(&e, "x-rgrpc-req-peer-cn", "rgrpc-test-client");
  check_reflected(&e, "x-rgrpc-req-authorization", "Bearer tok-mtls");
  rgrpc_channel_free(ch);
  rgrpc_channel_credentials_free(comp);
  rgrpc_call_credentials_free(tok);
  rgrpc_channel_credentials_free(creds);
}

static void test_mtls_without_client_certificate(void) {
  const rgrpc_channel_credentials *creds = tls_creds("ca.pem", NULL, NULL);
  rgrpc_channel *ch = secure_channel(creds);
  Echo e;
  echo_call(ch, NULL, &e);
  CHECK_MSG(e.code == RGRPC_STATUS_CODE_UNAVAILABLE, "got %s \"%s\", want UNAVAILABLE",
            rgrpc_status_code_name(e.code), e.details);
  tu_note("without a client certificate: %s", e.details);
  rgrpc_channel_free(ch);
  rgrpc_channel_credentials_free(creds);
}

static void test_mtls_client_certificate_of_another_ca(void) {
  const rgrpc_channel_credentials *creds = tls_creds("ca.pem", "badclient.pem", "badclient.key");
  rgrpc_channel *ch = secure_channel(creds);
  Echo e;
  echo_call(ch, NULL, &e);
  CHECK_MSG(e.code == RGRPC_STATUS_CODE_UNAVAILABLE, "got %s \"%s\", want UNAVAILABLE",
            rgrpc_status_code_name(e.code), e.details);
  tu_note("with a client certificate of another CA: %s", e.details);
  rgrpc_channel_free(ch);
  rgrpc_channel_credentials_free(creds);
}

/* =================================================================== main */

int main(void) {
  switch (mode()) {
    case MODE_TLS:
      printf("mode: TLS (certificates in %s)\n", certs_dir());
      RUN_TEST(test_custom_roots);
      RUN_TEST(test_name_override);
      RUN_TEST(test_hostname_mismatch);
      RUN_TEST(test_unknown_ca);
      RUN_TEST(test_tls_credentials_errors);
      RUN_TEST(test_access_token);
      RUN_TEST(test_plugin_sync);
      RUN_TEST(test_plugin_async);
      RUN_TEST(test_plugin_failure);
      RUN_TEST(test_composite_call_credentials);
      RUN_TEST(test_channel_and_call_credentials);
      RUN_TEST(test_credentials_freed_early);
      RUN_TEST(test_call_credentials_refused_on_insecure_channel);
      RUN_TEST(test_local_credentials_targets);
      break;
    case MODE_MTLS:
      printf("mode: mutual TLS (certificates in %s)\n", certs_dir());
      RUN_TEST(test_mtls_client_keys);
      RUN_TEST(test_mtls_with_token);
      RUN_TEST(test_mtls_without_client_certificate);
      RUN_TEST(test_mtls_client_certificate_of_another_ca);
      break;
    case MODE_PLAIN:
      printf("mode: plaintext server (local and insecure credentials)\n");
      RUN_TEST(test_access_token);
      RUN_TEST(test_plugin_sync);
      RUN_TEST(test_plugin_async);
      RUN_TEST(test_plugin_failure);
      RUN_TEST(test_composite_call_credentials);
      RUN_TEST(test_channel_and_call_credentials);
      RUN_TEST(test_credentials_freed_early);
      RUN_TEST(test_call_credentials_refused_on_insecure_channel);
      RUN_TEST(test_local_credentials_targets);
      break;
  }
  printf("ALL PASSED\n");
  return 0;
}

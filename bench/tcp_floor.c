/*
 * tcp_floor: the floor of the latency scenarios, a raw loopback TCP
 * ping-pong with no HTTP/2, no gRPC and no protobuf.
 *
 *   tcp_floor --server [--port N] [--spin-us N]
 *                                     echo server (port 0: any); prints
 *                                     "LISTENING <port>" once it accepts;
 *                                     --spin-us N: poll the socket without
 *                                     blocking for up to N µs before
 *                                     sleeping in read (as cpp_server
 *                                     --spin-us; default 0)
 *   tcp_floor <client flags>          the flags of rgrpc_bench
 *
 * A request is an 8-byte header (request length, response length, both
 * little-endian u32) and the request bytes, written with one write(); the
 * server answers with a 4-byte length and that many bytes, also one
 * write(). One connection, TCP_NODELAY on both ends, blocking sockets: the
 * least work a request/response over loopback can be.
 *
 * unary_lat and pingpong_lat are the same thing here (one exchange on one
 * connection at a time); every other scenario exits 3.
 */
#define _GNU_SOURCE
#include "bench_common.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

static int write_all(int fd, const void *buf, size_t n) {
  const char *p = (const char *)buf;
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return -1;
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

/* Server only: how long a read polls before it blocks (--spin-us). */
static long SPIN_US;

static int read_all(int fd, void *buf, size_t n) {
  char *p = (char *)buf;
  while (n > 0) {
    ssize_t r;
    if (SPIN_US > 0) {
      uint64_t until = bench_now_ns() + (uint64_t)SPIN_US * 1000;
      do {
        r = recv(fd, p, n, MSG_DONTWAIT);
      } while (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) && bench_now_ns() < until);
      if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) r = read(fd, p, n);
    } else {
      r = read(fd, p, n);
    }
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return -1;
    p += r;
    n -= (size_t)r;
  }
  return 0;
}

static uint32_t get_le32(const uint8_t *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void put_le32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)v;
  p[1] = (uint8_t)(v >> 8);
  p[2] = (uint8_t)(v >> 16);
  p[3] = (uint8_t)(v >> 24);
}

#define MAX_MSG (64u << 20)

static void *serve_conn(void *arg) {
  int fd = (int)(intptr_t)arg;
  uint8_t *in = NULL, *out = NULL;
  size_t in_cap = 0, out_cap = 0;
  uint8_t hdr[8];
  while (read_all(fd, hdr, 8) == 0) {
    uint32_t req = get_le32(hdr), resp = get_le32(hdr + 4);
    if (req > MAX_MSG || resp > MAX_MSG) break;
    if (req > in_cap) {
      free(in);
      in = (uint8_t *)malloc(req);
      in_cap = req;
      if (!in) break;
    }
    if (req && read_all(fd, in, req)) break;
    if (4 + (size_t)resp > out_cap) {
      free(out);
      out_cap = 4 + (size_t)resp;
      out = (uint8_t *)calloc(out_cap, 1);
      if (!out) break;
    }
    put_le32(out, resp);
    if (write_all(fd, out, 4 + (size_t)resp)) break;
  }
  free(in);
  free(out);
  close(fd);
  return NULL;
}

static int run_server(int port) {
  int ls = socket(AF_INET, SOCK_STREAM, 0);
  int one = 1;
  setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in sa;
  memset(&sa, 0, sizeof sa);
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  sa.sin_port = htons((uint16_t)port);
  if (bind(ls, (struct sockaddr *)&sa, sizeof sa) || listen(ls, 64)) {
    perror("tcp_floor: bind/listen");
    return BENCH_EXIT_FAILED;
  }
  socklen_t len = sizeof sa;
  getsockname(ls, (struct sockaddr *)&sa, &len);
  printf("LISTENING %d\n", ntohs(sa.sin_port));
  fflush(stdout);
  for (;;) {
    int fd = accept(ls, NULL, NULL);
    if (fd < 0) {
      if (errno == EINTR) continue;
      perror("tcp_floor: accept");
      return BENCH_EXIT_FAILED;
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    pthread_t th;
    if (pthread_create(&th, NULL, serve_conn, (void *)(intptr_t)fd)) {
      close(fd);
      continue;
    }
    pthread_detach(th);
  }
}

static int connect_to(const char *host, int port) {
  char ps[16];
  snprintf(ps, sizeof ps, "%d", port);
  struct addrinfo hints, *ai = NULL;
  memset(&hints, 0, sizeof hints);
  hints.ai_socktype = SOCK_STREAM;
  if (getaddrinfo(host, ps, &hints, &ai) || !ai) {
    fprintf(stderr, "tcp_floor: cannot resolve %s\n", host);
    return -1;
  }
  int fd = -1;
  for (struct addrinfo *p = ai; p; p = p->ai_next) {
    fd = socket(p->ai_family, p->ai_socktype, p->ai_protocol);
    if (fd < 0) continue;
    if (connect(fd, p->ai_addr, p->ai_addrlen) == 0) break;
    close(fd);
    fd = -1;
  }
  freeaddrinfo(ai);
  if (fd < 0) {
    fprintf(stderr, "tcp_floor: cannot connect to %s:%d\n", host, port);
    return -1;
  }
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fd;
}

int main(int argc, char **argv) {
  signal(SIGPIPE, SIG_IGN);
  if (argc >= 2 && !strcmp(argv[1], "--server")) {
    long port = 0;
    for (int i = 2; i < argc; i += 2) {
      long *dst = !strcmp(argv[i], "--port") ? &port : !strcmp(argv[i], "--spin-us") ? &SPIN_US : NULL;
      if (!dst || i + 1 >= argc || bench_parse_long(argv[i + 1], 0, dst) || port > 65535) {
        fprintf(stderr, "usage: %s --server [--port N] [--spin-us N]\n", argv[0]);
        return BENCH_EXIT_USAGE;
      }
    }
    return run_server((int)port);
  }
  bench_args a;
  int rc = bench_parse_args(argc, argv, &a);
  if (rc) return rc;
  if (a.scenario != SC_UNARY_LAT && a.scenario != SC_PINGPONG_LAT) {
    fprintf(stderr, "tcp_floor: scenario %s not implemented (only unary_lat, pingpong_lat)\n",
            a.scenario_name);
    return BENCH_EXIT_UNIMPLEMENTED;
  }
  if (a.req_size > (long)MAX_MSG || a.resp_size > (long)MAX_MSG) {
    fprintf(stderr, "tcp_floor: sizes above %u bytes not supported\n", MAX_MSG);
    return BENCH_EXIT_USAGE;
  }
  int fd = connect_to(a.host, a.port);
  if (fd < 0) return BENCH_EXIT_FAILED;
  size_t out_len = 8 + (size_t)a.req_size;
  uint8_t *out = (uint8_t *)calloc(out_len, 1);
  uint8_t *in = (uint8_t *)malloc((size_t)a.resp_size + 1);
  bench_result res;
  if (!out || !in || bench_result_init(&res, a.calls, 1)) {
    fprintf(stderr, "tcp_floor: out of memory\n");
    return BENCH_EXIT_FAILED;
  }
  put_le32(out, (uint32_t)a.req_size);
  put_le32(out + 4, (uint32_t)a.resp_size);
  long total = a.warmup + a.calls;
  for (long i = 0; i < total; i++) {
    if (i == a.warmup) bench_start(&res);
    uint64_t t0 = bench_now_ns();
    uint8_t hdr[4];
    if (write_all(fd, out, out_len) || read_all(fd, hdr, 4) || get_le32(hdr) != (uint32_t)a.resp_size ||
        (a.resp_size && read_all(fd, in, (size_t)a.resp_size))) {
      fprintf(stderr, "tcp_floor: connection failed\n");
      return BENCH_EXIT_FAILED;
    }
    uint64_t t1 = bench_now_ns();
    if (i >= a.warmup) {
      bench_record(&res, t1 - t0);
      res.ops++;
      if (bench_expired(&res, a.duration, t1)) break;
    }
  }
  bench_stop(&res);
  res.bytes = (double)res.ops * bench_bytes_per_op(&a);
  bench_report(&a, &res);
  close(fd);
  free(out);
  free(in);
  free(res.lat_ns);
  return 0;
}

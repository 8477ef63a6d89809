/*
 * load_echo - weft's own load generator for W10 (tcp_echo), so the suite
 * can drive an echo server without the peers folder. Loopback only.
 *
 *   load_echo <runtime-name> <workers> <port> [conns] [rounds] [--server-pid PID]
 *
 * The same measurement as peers/client/echo_client: a probe connection does
 * 100 unmeasured round trips and is closed, then (after 100 ms) `conns`
 * connections (default 64) to 127.0.0.1:<port> each run `rounds` (default
 * 5,000) round trips of a 64-byte message (send 64 bytes, read all 64 back,
 * check them, repeat), all at once from one thread with non-blocking
 * sockets and epoll. Every round trip's latency (first send attempt to last
 * byte read) is recorded. Prints
 *
 *   RESULT tcp_echo <runtime-name> workers=<workers> req_per_s=.. p50_us=.. p99_us=..
 *
 * and, with --server-pid, srv_cpu_us_per_req (the server's user + system
 * CPU time from the first send to the last reply, per round trip, read from
 * /proc/<pid>/stat). req_per_s = conns * rounds / wall time from the first
 * send to the last reply.
 *
 * Bounded: conns <= 1,000, conns * rounds <= 10,000,000, and the whole run
 * gives up after 60 s (exit 2, no RESULT line). Exits 1 on any connection
 * error or wrong echo. A benchmark tool, not part of the library: it makes
 * its own system calls.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MSG 64
#define MAX_CONNS 1000
#define MAX_TOTAL 10000000ull
#define LIMIT_NS (60ull * 1000000000ull)

typedef struct conn {
    int fd;
    int sent, recvd, rounds;
    bool want_out;
    uint64_t t_start;
    unsigned char tx[MSG], rx[MSG];
} conn_t;

static conn_t *conns;
static uint64_t *lat;
static size_t nlat;
static int ep;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void die(const char *what)
{
    fprintf(stderr, "load_echo: %s: %s\n", what, strerror(errno));
    exit(1);
}

static void set_out(conn_t *c, int idx, bool want)
{
    if (c->want_out == want)
        return;
    struct epoll_event ev = {.events = EPOLLIN | (want ? EPOLLOUT : 0), .data.u32 = (uint32_t)idx};
    if (epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev) < 0)
        die("epoll_ctl");
    c->want_out = want;
}

static void try_send(conn_t *c, int idx)
{
    while (c->sent < MSG) {
        ssize_t n = send(c->fd, c->tx + c->sent, (size_t)(MSG - c->sent), MSG_NOSIGNAL);
        if (n > 0)
            c->sent += (int)n;
        else if (n < 0 && errno == EINTR)
            continue;
        else if (n < 0 && errno == EAGAIN) {
            set_out(c, idx, true);
            return;
        } else
            die("send");
    }
    set_out(c, idx, false);
}

static void start_round(conn_t *c, int idx)
{
    for (int i = 0; i < MSG; i++)
        c->tx[i] = (unsigned char)(idx * 31 + c->rounds * 7 + i);
    c->sent = c->recvd = 0;
    c->t_start = now_ns();
    try_send(c, idx);
}

static int connect_one(const struct sockaddr_in *a)
{
    uint64_t t0 = now_ns();
    for (;;) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
            die("socket");
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        struct timeval tv = {.tv_sec = 5};
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
        if (connect(fd, (const struct sockaddr *)a, sizeof *a) == 0)
            return fd;
        int e = errno;
        close(fd);
        if ((e == ECONNREFUSED || e == EAGAIN || e == EINTR) && now_ns() - t0 < 5000000000ull) {
            usleep(10000);
            continue;
        }
        errno = e;
        die("connect");
    }
}

static void probe(const struct sockaddr_in *a)
{
    int fd = connect_one(a);
    unsigned char b[MSG], r[MSG];
    for (int k = 0; k < 100; k++) {
        memset(b, k, sizeof b);
        if (write(fd, b, MSG) != MSG)
            die("probe write");
        for (int got = 0; got < MSG;) {
            ssize_t n = read(fd, r + got, (size_t)(MSG - got));
            if (n <= 0)
                die("probe read");
            got += (int)n;
        }
        if (memcmp(b, r, MSG) != 0) {
            fprintf(stderr, "load_echo: probe: wrong echo\n");
            exit(1);
        }
    }
    close(fd);
    usleep(100000);
}

static int cmp_u64(const void *x, const void *y)
{
    uint64_t a = *(const uint64_t *)x, b = *(const uint64_t *)y;
    return (a > b) - (a < b);
}

static uint64_t pct(unsigned p)
{
    size_t k = (nlat * p + 99) / 100;
    if (k < 1)
        k = 1;
    if (k > nlat)
        k = nlat;
    return lat[k - 1];
}

static long long cpu_ticks(long pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%ld/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    char buf[1024];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *p = strrchr(buf, ')'); /* the command name may hold spaces */
    unsigned long long ut = 0, st = 0;
    if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
        return -1;
    return (long long)(ut + st);
}

static void usage(void)
{
    fprintf(stderr, "usage: load_echo <runtime-name> <workers> <port> [conns] [rounds] "
                    "[--server-pid PID]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    const char *pos[5] = {0};
    int npos = 0;
    long server_pid = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--server-pid") == 0 && i + 1 < argc)
            server_pid = strtol(argv[++i], NULL, 10);
        else if (npos < 5)
            pos[npos++] = argv[i];
        else
            usage();
    }
    if (npos < 3)
        usage();
    const char *label = pos[0];
    int workers = atoi(pos[1]);
    long port = strtol(pos[2], NULL, 10);
    long nconns = npos > 3 ? strtol(pos[3], NULL, 10) : 64;
    long rounds = npos > 4 ? strtol(pos[4], NULL, 10) : 5000;
    if (port < 1 || port > 65535 || nconns < 1 || nconns > MAX_CONNS || rounds < 1 ||
        (unsigned long long)nconns * (unsigned long long)rounds > MAX_TOTAL)
        usage();

    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    uint64_t t_begin = now_ns();
    probe(&a);

    size_t total = (size_t)nconns * (size_t)rounds;
    conns = calloc((size_t)nconns, sizeof *conns);
    lat = malloc(total * sizeof *lat);
    if (!conns || !lat)
        die("malloc");
    ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0)
        die("epoll_create1");
    for (int i = 0; i < nconns; i++) {
        conn_t *c = &conns[i];
        c->fd = connect_one(&a);
        if (fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) | O_NONBLOCK) < 0)
            die("fcntl");
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev) < 0)
            die("epoll_ctl");
    }

    long long cpu0 = server_pid ? cpu_ticks(server_pid) : -1;
    uint64_t t0 = now_ns();
    for (int i = 0; i < nconns; i++)
        start_round(&conns[i], i);
    size_t done = 0;
    struct epoll_event evs[256];
    while (done < total) {
        if (now_ns() - t_begin > LIMIT_NS) {
            fprintf(stderr, "load_echo: gave up after 60 s (%zu of %zu round trips)\n", done,
                    total);
            return 2;
        }
        int n = epoll_wait(ep, evs, 256, 1000);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            die("epoll_wait");
        for (int k = 0; k < n; k++) {
            int idx = (int)evs[k].data.u32;
            conn_t *c = &conns[idx];
            if (evs[k].events & EPOLLOUT)
                try_send(c, idx);
            if (!(evs[k].events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
                continue;
            for (;;) {
                ssize_t r = recv(c->fd, c->rx + c->recvd, (size_t)(MSG - c->recvd), 0);
                if (r > 0) {
                    c->recvd += (int)r;
                    if (c->recvd < MSG)
                        continue;
                    if (c->sent != MSG || memcmp(c->tx, c->rx, MSG) != 0) {
                        fprintf(stderr, "load_echo: connection %d: wrong echo\n", idx);
                        return 1;
                    }
                    lat[nlat++] = now_ns() - c->t_start;
                    done++;
                    if (++c->rounds < rounds)
                        start_round(c, idx);
                    break;
                }
                if (r == 0) {
                    fprintf(stderr, "load_echo: connection %d closed by the server\n", idx);
                    return 1;
                }
                if (errno == EINTR)
                    continue;
                if (errno == EAGAIN)
                    break;
                die("recv");
            }
        }
    }
    uint64_t t1 = now_ns();
    long long cpu1 = server_pid ? cpu_ticks(server_pid) : -1;
    for (int i = 0; i < nconns; i++)
        close(conns[i].fd);
    qsort(lat, nlat, sizeof *lat, cmp_u64);
    double secs = (double)(t1 - t0) / 1e9;
    printf("RESULT tcp_echo %s workers=%d req_per_s=%.0f p50_us=%.1f p99_us=%.1f", label, workers,
           (double)total / secs, (double)pct(50) / 1e3, (double)pct(99) / 1e3);
    if (cpu0 >= 0 && cpu1 >= 0)
        printf(" srv_cpu_us_per_req=%.2f",
               (double)(cpu1 - cpu0) / (double)sysconf(_SC_CLK_TCK) * 1e6 / (double)total);
    printf("\n");
    free(lat);
    free(conns);
    close(ep);
    return 0;
}

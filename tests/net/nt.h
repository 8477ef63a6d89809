/*
 * net/nt.h - helpers shared by the tests of weft/net.h (header-only).
 *
 * Owns nothing at run time. Provides: a loopback listener on an ephemeral
 * port (127.0.0.1 or [::1]), a check that IPv6 loopback works, a byte
 * pattern that differs per connection and per offset (so a lost, doubled or
 * misrouted byte shows), raising RLIMIT_NOFILE for tests that hold many
 * sockets, and a coroutine echo server (accept loop + one coroutine per
 * connection) that the tests run against. Servers bind loopback only.
 *
 * Tasks never assert (Criterion's assertions must not run on workers):
 * they record results in atomics or return codes the test thread checks.
 */
#ifndef WEFT_TESTS_NT_H
#define WEFT_TESTS_NT_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <weft/net.h>

#include "common/wt.h"

/* The pattern byte at offset off of stream `seed`. */
static inline uint8_t nt_byte(uint32_t seed, uint64_t off)
{
    uint64_t x = (off + 1) * 0x9e3779b97f4a7c15ull ^ ((uint64_t)seed << 32 | seed);
    return (uint8_t)(x >> 29 ^ x >> 7);
}

static inline void nt_fill(uint8_t *buf, size_t len, uint32_t seed, uint64_t off)
{
    for (size_t i = 0; i < len; i++)
        buf[i] = nt_byte(seed, off + i);
}

/* Index of the first byte that is not the pattern, or len. */
static inline size_t nt_check(const uint8_t *buf, size_t len, uint32_t seed, uint64_t off)
{
    for (size_t i = 0; i < len; i++)
        if (buf[i] != nt_byte(seed, off + i))
            return i;
    return len;
}

/* "127.0.0.1:0" or "[::1]:0" parsed. */
static inline void nt_loopback(int family, struct sockaddr_storage *ss, socklen_t *len)
{
    if (weft_addr_parse(family == AF_INET6 ? "[::1]:0" : "127.0.0.1:0", ss, len) != 0)
        wt_die("weft_addr_parse", -EINVAL);
}

/*
 * Listen on loopback (port 0) on rt; *addr gets the bound address. Returns
 * weft_tcp_listen's code.
 */
static inline int nt_listen(weft_runtime_t *rt, int family, weft_tcp_listener_t **l,
                            struct sockaddr_storage *addr)
{
    socklen_t len;
    nt_loopback(family, addr, &len);
    int rc = weft_tcp_listen(rt, (struct sockaddr *)addr, len, 1024, l);
    if (rc == 0)
        rc = weft_tcp_listener_local_addr(*l, addr);
    return rc;
}

/* True if a socket can be bound to [::1] here. */
static inline bool nt_ipv6_available(void)
{
    int fd = socket(AF_INET6, SOCK_STREAM, 0);
    if (fd < 0)
        return false;
    struct sockaddr_in6 a = {0};
    a.sin6_family = AF_INET6;
    a.sin6_addr = in6addr_loopback;
    bool ok = bind(fd, (struct sockaddr *)&a, sizeof a) == 0;
    close(fd);
    return ok;
}

/* Raise the soft fd limit to at least want (up to the hard limit); the
 * resulting soft limit. */
static inline rlim_t nt_raise_nofile(rlim_t want)
{
    struct rlimit r;
    if (getrlimit(RLIMIT_NOFILE, &r) != 0)
        return 0;
    if (r.rlim_cur < want) {
        r.rlim_cur = want < r.rlim_max ? want : r.rlim_max;
        setrlimit(RLIMIT_NOFILE, &r);
        getrlimit(RLIMIT_NOFILE, &r);
    }
    return r.rlim_cur;
}

/* ---- a coroutine echo server ---------------------------------------------------------------- */

typedef struct nt_server {
    weft_tcp_listener_t *l;
    _Atomic int accepted;
    _Atomic int finished;   /* connection tasks that ended */
    _Atomic int64_t echoed; /* bytes written back */
    _Atomic int errors;     /* unexpected errors (not EOF, reset or cancel) */
    _Atomic int accept_rc;  /* how the accept loop ended */
    int max_conns;          /* the loop ends after this many (0: never) */
    int l_family;           /* expected family of peers (0: not checked) */
} nt_server_t;

static inline void nt_server_init(nt_server_t *sv, weft_tcp_listener_t *l, int max_conns)
{
    sv->l = l;
    atomic_init(&sv->accepted, 0);
    atomic_init(&sv->finished, 0);
    atomic_init(&sv->echoed, 0);
    atomic_init(&sv->errors, 0);
    atomic_init(&sv->accept_rc, 1);
    sv->max_conns = max_conns;
    sv->l_family = 0;
}

typedef struct nt_conn {
    nt_server_t *sv;
    weft_tcp_stream_t *s;
} nt_conn_t;

static inline int nt_echo_conn(void *arg)
{
    nt_conn_t c = *(nt_conn_t *)arg;
    free(arg);
    uint8_t *buf = malloc(16384);
    int n = 0;
    while (buf && (n = weft_tcp_read(c.s, buf, 16384, WEFT_FOREVER)) > 0) {
        size_t done = 0;
        int rc = weft_tcp_write_all(c.s, buf, (size_t)n, WEFT_FOREVER, &done);
        atomic_fetch_add(&c.sv->echoed, (int64_t)done);
        if (rc < 0) {
            n = rc;
            break;
        }
    }
    if (n < 0 && n != -ECONNRESET && n != -EPIPE && n != -ECANCELED && n != -EBADF)
        atomic_fetch_add(&c.sv->errors, 1);
    free(buf);
    weft_tcp_close(c.s);
    atomic_fetch_add(&c.sv->finished, 1);
    return 0;
}

static inline int nt_accept_loop(void *arg)
{
    nt_server_t *sv = arg;
    for (int i = 0; sv->max_conns == 0 || i < sv->max_conns; i++) {
        nt_conn_t *c = malloc(sizeof *c);
        if (!c) {
            atomic_store(&sv->accept_rc, -ENOMEM);
            return -ENOMEM;
        }
        c->sv = sv;
        int rc = weft_tcp_accept(sv->l, &c->s, NULL, WEFT_FOREVER);
        if (rc != 0) {
            free(c);
            atomic_store(&sv->accept_rc, rc);
            return rc;
        }
        atomic_fetch_add(&sv->accepted, 1);
        rc = weft_spawn_coro(weft_runtime_current(), nt_echo_conn, c, NULL, NULL);
        if (rc != 0) {
            weft_tcp_close(c->s);
            free(c);
            atomic_store(&sv->accept_rc, rc);
            return rc;
        }
    }
    atomic_store(&sv->accept_rc, 0);
    return 0;
}

#endif /* WEFT_TESTS_NT_H */

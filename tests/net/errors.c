/*
 * net/errors.c - bad input gives a negative errno, never a crash or a
 * hang: NULL objects and buffers, negative lengths (cast to size_t),
 * invalid and closed fds, non-socket and non-stream fds, a closed socket
 * (shut down by us or by the peer), a refused and an unreachable connect,
 * an address already in use, calls outside a coroutine.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>

#include "net/nt.h"

#define WAIT_NS (20 * WT_SEC)

Test(net_errors, outside_a_coroutine, .timeout = 30)
{
    uint8_t b[4];
    weft_tcp_stream_t *s = (weft_tcp_stream_t *)b; /* never dereferenced */
    cr_expect_eq(weft_tcp_read(s, b, 4, WEFT_FOREVER), -EPERM);
    cr_expect_eq(weft_tcp_write(s, b, 4, WEFT_FOREVER), -EPERM);
    size_t done = 7;
    cr_expect_eq(weft_tcp_read_exact(s, b, 4, WEFT_FOREVER, &done), -EPERM);
    cr_expect_eq(done, 0);
    cr_expect_eq(weft_tcp_write_all(s, b, 4, WEFT_FOREVER, NULL), -EPERM);
    weft_tcp_stream_t *out = s;
    struct sockaddr_storage a;
    socklen_t alen;
    weft_addr_parse("127.0.0.1:1", &a, &alen);
    cr_expect_eq(weft_tcp_connect(NULL, (struct sockaddr *)&a, alen, WEFT_FOREVER, &out), -EPERM);
    cr_expect_null(out);
    cr_expect_eq(weft_tcp_accept((weft_tcp_listener_t *)b, &out, NULL, WEFT_FOREVER), -EPERM);
}

Test(net_errors, null_and_bad_arguments, .timeout = 30)
{
    weft_runtime_t *rt = wt_runtime(1);
    struct sockaddr_storage a;
    socklen_t alen;
    cr_assert_eq(weft_addr_parse("127.0.0.1:0", &a, &alen), 0);
    weft_tcp_listener_t *l = (weft_tcp_listener_t *)&a;
    cr_expect_eq(weft_tcp_listen(rt, NULL, alen, 1, &l), -EINVAL);
    cr_expect_null(l);
    cr_expect_eq(weft_tcp_listen(rt, (struct sockaddr *)&a, alen, 1, NULL), -EINVAL);
    cr_expect_eq(weft_tcp_listen(NULL, (struct sockaddr *)&a, alen, 1, &l), -EINVAL,
                 "no runtime on a plain thread");
    cr_expect_eq(weft_tcp_listen(rt, (struct sockaddr *)&a, 3, 1, &l), -EINVAL);
    struct sockaddr_storage unix_addr = {.ss_family = AF_UNIX};
    cr_expect_eq(weft_tcp_listen(rt, (struct sockaddr *)&unix_addr, sizeof unix_addr, 1, &l),
                 -EAFNOSUPPORT);
    weft_tcp_listen_opts_t o = WEFT_TCP_LISTEN_OPTS_INIT;
    o.backoff_min_ns = -1;
    cr_expect_eq(weft_tcp_listen_with(rt, (struct sockaddr *)&a, alen, &o, &l), -EINVAL);
    /* A back-off so long that now + it wrapped into the past made the
     * accept spin (found by review): refused. */
    o.backoff_min_ns = INT64_MAX;
    cr_expect_eq(weft_tcp_listen_with(rt, (struct sockaddr *)&a, alen, &o, &l), -EINVAL);
    o.backoff_min_ns = 0;
    o.backoff_max_ns = WEFT_TCP_BACKOFF_LIMIT_NS + 1;
    cr_expect_eq(weft_tcp_listen_with(rt, (struct sockaddr *)&a, alen, &o, &l), -EINVAL);
    o.backoff_min_ns = o.backoff_max_ns = WEFT_TCP_BACKOFF_LIMIT_NS;
    cr_expect_eq(weft_tcp_listen_with(rt, (struct sockaddr *)&a, alen, &o, &l), 0);
    cr_expect_eq(weft_tcp_listener_close(l), 0);

    /* Futures: a failed init polls ready with its error and drops safely. */
    weft_tcp_xfer_t x;
    uint8_t b[4];
    cr_expect_eq(weft_tcp_read_init(&x, NULL, b, 4, WEFT_FOREVER), -EINVAL);
    weft_tcp_read_vtable.drop(&x);
    cr_expect_eq(weft_tcp_read_init(NULL, NULL, b, 4, WEFT_FOREVER), -EINVAL);
    weft_tcp_accept_t acc;
    cr_expect_eq(weft_tcp_accept_init(&acc, NULL, NULL, NULL, WEFT_FOREVER), -EINVAL);
    weft_tcp_accept_vtable.drop(&acc);
    weft_tcp_connect_t cn;
    weft_tcp_stream_t *s;
    cr_expect_eq(weft_tcp_connect_init(&cn, rt, NULL, 0, WEFT_FOREVER, &s), -EINVAL);
    weft_tcp_connect_vtable.drop(&cn);
    cr_expect_eq(weft_tcp_connect_init(&cn, rt, (struct sockaddr *)&a, alen, WEFT_FOREVER, NULL),
                 -EINVAL);
    cr_expect_eq(weft_tcp_connect_init(&cn, rt, (struct sockaddr *)&a, 4, WEFT_FOREVER, &s),
                 -EINVAL);
    cr_expect_eq(weft_tcp_connect_init(&cn, rt, (struct sockaddr *)&unix_addr, sizeof unix_addr,
                                       WEFT_FOREVER, &s),
                 -EAFNOSUPPORT);
    weft_task_t *h;
    cr_assert_eq(weft_spawn(rt, &weft_tcp_connect_vtable, &cn, sizeof cn, &h), 0);
    int64_t v = 0;
    cr_expect_eq(weft_task_join_wait(h, weft_now() + WAIT_NS, &v), 0);
    cr_expect_eq(v, -EAFNOSUPPORT, "the failed init's error is the output");

    cr_expect_eq(weft_tcp_close(NULL), -EINVAL);
    cr_expect_eq(weft_tcp_listener_close(NULL), -EINVAL);
    cr_expect_eq(weft_tcp_shutdown(NULL, WEFT_SHUT_WR), -EINVAL);
    cr_expect_eq(weft_tcp_peer_addr(NULL, &a), -EINVAL);
    cr_expect_eq(weft_tcp_local_addr(NULL, &a), -EINVAL);
    cr_expect_eq(weft_tcp_set_nodelay(NULL, true), -EINVAL);
    cr_expect_eq(weft_tcp_set_keepalive(NULL, 1, 1, 1), -EINVAL);
    cr_expect_eq(weft_tcp_stream_fd(NULL), -EINVAL);
    cr_expect_eq(weft_tcp_listener_stats(NULL, NULL), -EINVAL);
    cr_expect_eq(weft_tcp_listener_local_addr(NULL, &a), -EINVAL);
    cr_expect_eq(wt_finish(rt), 0);
}

Test(net_errors, bad_fds, .timeout = 30)
{
    weft_runtime_t *rt = wt_runtime(1);
    weft_tcp_stream_t *s = (weft_tcp_stream_t *)rt;
    cr_expect_eq(weft_tcp_stream_from_fd(rt, -1, &s), -EINVAL);
    cr_expect_null(s);
    cr_expect_eq(weft_tcp_stream_from_fd(rt, 0, NULL), -EINVAL);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    close(fd);
    cr_expect_eq(weft_tcp_stream_from_fd(rt, fd, &s), -EBADF, "a closed fd");
    cr_expect_eq(weft_tcp_stream_from_fd(rt, 1000000, &s), -EBADF, "never opened");
    int p[2];
    cr_assert_eq(pipe(p), 0);
    cr_expect_eq(weft_tcp_stream_from_fd(rt, p[0], &s), -ENOTSOCK);
    close(p[0]);
    close(p[1]);
    int udp = socket(AF_INET, SOCK_DGRAM, 0);
    cr_expect_eq(weft_tcp_stream_from_fd(rt, udp, &s), -EPROTOTYPE);
    close(udp);
    /* A stream socket adopted works; a second adoption of the same fd is refused. */
    int sv[2];
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    cr_expect_eq(weft_tcp_stream_from_fd(rt, sv[0], &s), 0);
    cr_expect_neq(fcntl(sv[0], F_GETFL) & O_NONBLOCK, 0, "made non-blocking");
    cr_expect_neq(fcntl(sv[0], F_GETFD) & FD_CLOEXEC, 0, "made close-on-exec");
    weft_tcp_stream_t *again;
    cr_expect_eq(weft_tcp_stream_from_fd(rt, sv[0], &again), -EEXIST);
    cr_expect_lt(weft_tcp_set_nodelay(s, true), 0, "not TCP: the kernel's error");
    cr_expect_eq(weft_tcp_close(s), 0);
    /* A failed adoption gives the fd back as it was: blocking, inherited. */
    weft_io_t io;
    cr_assert_eq(weft_io_register(rt, sv[1], &io), 0);
    cr_expect_eq(weft_tcp_stream_from_fd(rt, sv[1], &again), -EEXIST);
    cr_expect_eq(fcntl(sv[1], F_GETFL) & O_NONBLOCK, 0, "still blocking");
    cr_expect_eq(fcntl(sv[1], F_GETFD) & FD_CLOEXEC, 0, "still inherited");
    cr_expect_eq(weft_io_deregister(io), 0);
    close(sv[1]);
    cr_expect_eq(wt_finish(rt), 0);
}

/* Buffers and lengths, and a closed socket, from a coroutine. */
typedef struct bad {
    struct sockaddr_storage addr;
    weft_tcp_listener_t *l;
    int rc[24];
} bad_t;

static int bad_calls(void *arg)
{
    bad_t *x = arg;
    weft_tcp_stream_t *a, *b;
    int rc = weft_tcp_connect(NULL, (struct sockaddr *)&x->addr, sizeof(struct sockaddr_in),
                              weft_now() + WAIT_NS, &a);
    if (rc != 0)
        return rc;
    rc = weft_tcp_accept(x->l, &b, NULL, weft_now() + WAIT_NS);
    if (rc != 0)
        return rc;
    uint8_t buf[8];
    size_t done = 9;
    int i = 0;
    x->rc[i++] = weft_tcp_read(a, NULL, 1, WEFT_FOREVER);                    /* -EINVAL */
    x->rc[i++] = weft_tcp_write(a, NULL, 1, WEFT_FOREVER);                   /* -EINVAL */
    x->rc[i++] = weft_tcp_read(a, buf, (size_t)-1, WEFT_FOREVER);            /* -EINVAL */
    x->rc[i++] = weft_tcp_write(a, buf, (size_t)-8, WEFT_FOREVER);           /* -EINVAL */
    x->rc[i++] = weft_tcp_read_exact(a, NULL, 3, WEFT_FOREVER, &done);       /* -EINVAL */
    x->rc[i++] = (int)done;                                                  /* 0 */
    x->rc[i++] = weft_tcp_write_all(a, buf, (size_t)-1, WEFT_FOREVER, NULL); /* -EINVAL */
    x->rc[i++] = weft_tcp_read(NULL, buf, 1, WEFT_FOREVER);                  /* -EINVAL */
    x->rc[i++] = weft_tcp_read(a, NULL, 0, WEFT_FOREVER);                    /* 0: nothing asked */
    x->rc[i++] = weft_tcp_write(a, NULL, 0, WEFT_FOREVER);                   /* 0 */
    x->rc[i++] = weft_tcp_shutdown(a, 7);                                    /* -EINVAL */
    /* Closed by us: both directions shut. */
    x->rc[i++] = weft_tcp_shutdown(a, WEFT_SHUT_RDWR);                     /* 0 */
    x->rc[i++] = weft_tcp_read(a, buf, sizeof buf, weft_now() + WAIT_NS);  /* 0: end */
    x->rc[i++] = weft_tcp_write(a, buf, sizeof buf, weft_now() + WAIT_NS); /* -EPIPE */
    /* Closed by the peer (b saw our FIN; close b, then a's peer is gone). */
    x->rc[i++] = weft_tcp_read(b, buf, sizeof buf, weft_now() + WAIT_NS); /* 0 */
    weft_tcp_close(b);
    weft_tcp_close(a);
    /* A fresh pair where the peer closes: reads end, writes fail (no SIGPIPE). */
    rc = weft_tcp_connect(NULL, (struct sockaddr *)&x->addr, sizeof(struct sockaddr_in),
                          weft_now() + WAIT_NS, &a);
    if (rc != 0)
        return rc;
    rc = weft_tcp_accept(x->l, &b, NULL, weft_now() + WAIT_NS);
    if (rc != 0)
        return rc;
    weft_tcp_close(b);
    x->rc[i++] = weft_tcp_read(a, buf, sizeof buf, weft_now() + WAIT_NS); /* 0 */
    int w = 0;
    for (int k = 0; k < 100 && w >= 0; k++) {
        w = weft_tcp_write(a, buf, sizeof buf, weft_now() + WAIT_NS);
        if (w >= 0)
            weft_sleep_for(WT_MS); /* the first write draws the RST */
    }
    x->rc[i++] = w; /* -EPIPE or -ECONNRESET */
    weft_tcp_close(a);
    return 0;
}

Test(net_errors, buffers_lengths_closed_sockets, .timeout = 60)
{
    weft_runtime_t *rt = wt_runtime(2);
    bad_t x;
    memset(x.rc, 0x55, sizeof x.rc);
    cr_assert_eq(nt_listen(rt, AF_INET, &x.l, &x.addr), 0);
    int result = -1;
    cr_assert_eq(weft_runtime_run_coro(rt, bad_calls, &x, NULL, &result), 0);
    cr_assert_eq(result, 0, "%d", result);
    int want[] = {-EINVAL, -EINVAL, -EINVAL, -EINVAL, -EINVAL, 0,      -EINVAL, -EINVAL,
                  0,       0,       -EINVAL, 0,       0,       -EPIPE, 0,       0};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        cr_expect_eq(x.rc[i], want[i], "call %zu: %d (%s), want %d", i, x.rc[i],
                     weft_strerror(x.rc[i]), want[i]);
    int last = x.rc[sizeof want / sizeof want[0]];
    cr_expect(last == -EPIPE || last == -ECONNRESET, "write to a closed peer: %d", last);
    weft_tcp_listener_close(x.l);
    cr_expect_eq(wt_finish(rt), 0);
}

/* ---- connect failures ----------------------------------------------------------------------- */

typedef struct conn_try {
    const char *addr;
    int64_t timeout;
    int rc;
} conn_try_t;

static int try_connect(void *arg)
{
    conn_try_t *c = arg;
    struct sockaddr_storage a;
    socklen_t alen;
    if (weft_addr_parse(c->addr, &a, &alen) != 0)
        return -EINVAL;
    weft_tcp_stream_t *s;
    c->rc = weft_tcp_connect(NULL, (struct sockaddr *)&a, alen, weft_now() + c->timeout, &s);
    if (c->rc == 0)
        weft_tcp_close(s);
    return 0;
}

Test(net_errors, connect_refused_and_unreachable, .timeout = 60)
{
    weft_runtime_t *rt = wt_runtime(1);
    /* A port nobody listens on: take one, close it. */
    weft_tcp_listener_t *l;
    struct sockaddr_storage addr;
    cr_assert_eq(nt_listen(rt, AF_INET, &l, &addr), 0);
    char text[WEFT_ADDR_STRLEN];
    cr_assert_gt(weft_addr_format((struct sockaddr *)&addr, text, sizeof text), 0);
    weft_tcp_listener_close(l);
    conn_try_t c = {text, 5 * WT_SEC, 1};
    cr_assert_eq(weft_runtime_run_coro(rt, try_connect, &c, NULL, NULL), 0);
    cr_expect_eq(c.rc, -ECONNREFUSED, "%d (%s)", c.rc, weft_strerror(c.rc));

    /* Unreachable: whatever the routing here says (no route, host
     * unreachable, or silence until the deadline), a negative errno in
     * bounded time. */
    const char *unreachable[] = {"[2001:db8::1]:9", "192.0.2.1:9", "255.255.255.255:9",
                                 "0.0.0.0:0"};
    for (size_t i = 0; i < sizeof unreachable / sizeof unreachable[0]; i++) {
        conn_try_t u = {unreachable[i], 300 * WT_MS, 1};
        cr_assert_eq(weft_runtime_run_coro(rt, try_connect, &u, NULL, NULL), 0);
        cr_expect_lt(u.rc, 0, "%s: %d", unreachable[i], u.rc);
    }
    cr_expect_eq(wt_finish(rt), 0);
}

Test(net_errors, address_in_use, .timeout = 30)
{
    weft_runtime_t *rt = wt_runtime(1);
    weft_tcp_listener_t *l, *l2 = NULL;
    struct sockaddr_storage addr;
    cr_assert_eq(nt_listen(rt, AF_INET, &l, &addr), 0);
    cr_expect_eq(weft_tcp_listen(rt, (struct sockaddr *)&addr, sizeof(struct sockaddr_in), 16, &l2),
                 -EADDRINUSE);
    cr_expect_null(l2);
    cr_expect_eq(weft_tcp_listener_close(l), 0);
    cr_expect_eq(wt_finish(rt), 0);
}

/* Creating objects on a runtime that is shutting down is refused. */
Test(net_errors, after_shutdown, .timeout = 30)
{
    weft_runtime_t *rt = wt_runtime(1);
    cr_assert_eq(weft_runtime_shutdown(rt, weft_now() + WAIT_NS), 0);
    struct sockaddr_storage a;
    socklen_t alen;
    nt_loopback(AF_INET, &a, &alen);
    weft_tcp_listener_t *l;
    cr_expect_eq(weft_tcp_listen(rt, (struct sockaddr *)&a, alen, 16, &l), -ESHUTDOWN);
    cr_expect_eq(weft_runtime_free(rt), 0);
}

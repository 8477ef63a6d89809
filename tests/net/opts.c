/*
 * net/opts.c - addresses as text (parse, format, round trips, malformed
 * input), a stream's local and peer addresses, TCP_NODELAY, keepalive
 * (values reach the socket; out-of-range values are refused), listener
 * options (backlog default, dual-stack / v6-only, SO_REUSEPORT listeners
 * sharing a port).
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <netinet/tcp.h>

#include "net/nt.h"

#define WAIT_NS (20 * WT_SEC)

static void round_trip(const char *text, int family, int port)
{
    struct sockaddr_storage a;
    socklen_t len = 0;
    cr_assert_eq(weft_addr_parse(text, &a, &len), 0, "%s", text);
    cr_expect_eq(a.ss_family, family);
    cr_expect_eq(len, weft_addr_len((struct sockaddr *)&a));
    cr_expect_eq(weft_addr_port((struct sockaddr *)&a), port);
    char out[WEFT_ADDR_STRLEN];
    int n = weft_addr_format((struct sockaddr *)&a, out, sizeof out);
    cr_expect_eq(n, (int)strlen(text));
    cr_expect_str_eq(out, text);
}

Test(net_addr, parse_and_format, .timeout = 30)
{
    round_trip("127.0.0.1:8080", AF_INET, 8080);
    round_trip("0.0.0.0:0", AF_INET, 0);
    round_trip("255.255.255.255:65535", AF_INET, 65535);
    round_trip("[::1]:8080", AF_INET6, 8080);
    round_trip("[::]:1", AF_INET6, 1);
    round_trip("[fe80::1%2]:80", AF_INET6, 80);
    round_trip("[2001:db8::ff00:42:8329]:443", AF_INET6, 443);
    round_trip("[::ffff:10.0.0.1]:7", AF_INET6, 7);
    round_trip("[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff%4294967295]:65535", AF_INET6, 65535);
    /* The longest input spelling parses, and what it formats to fits. */
    struct sockaddr_storage big;
    cr_assert_eq(weft_addr_parse("[ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255%4294967295]:65535",
                                 &big, NULL),
                 0);
    char bigtext[WEFT_ADDR_STRLEN];
    cr_expect_gt(weft_addr_format((struct sockaddr *)&big, bigtext, sizeof bigtext), 0);

    const char *bad[] = {"",
                         ":80",
                         "127.0.0.1",
                         "127.0.0.1:",
                         "127.0.0.1:65536",
                         "127.0.0.1:-1",
                         "127.0.0.1:8o",
                         "127.0.0.1:99999999999999",
                         "1.2.3:80",
                         "localhost:80",
                         "::1:80",
                         "[::1]",
                         "[::1]80",
                         "[::1:80",
                         "[]:80",
                         "[::1%]:80",
                         "[::1%x]:80",
                         "[1.2.3.4]:80",
                         "[::1]:80x"};
    struct sockaddr_storage a;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        cr_expect_eq(weft_addr_parse(bad[i], &a, NULL), -EINVAL, "\"%s\"", bad[i]);
    cr_expect_eq(weft_addr_parse(NULL, &a, NULL), -EINVAL);
    cr_expect_eq(weft_addr_parse("1.2.3.4:5", NULL, NULL), -EINVAL);

    cr_assert_eq(weft_addr_parse("10.1.2.3:4567", &a, NULL), 0);
    char small[8];
    cr_expect_eq(weft_addr_format((struct sockaddr *)&a, small, sizeof small), -ENOSPC);
    cr_expect_eq(small[0], '\0');
    cr_expect_eq(weft_addr_format(NULL, small, sizeof small), -EINVAL);
    cr_expect_eq(weft_addr_format((struct sockaddr *)&a, NULL, 0), -EINVAL);
    struct sockaddr_storage u = {.ss_family = AF_UNIX};
    char out[WEFT_ADDR_STRLEN];
    cr_expect_eq(weft_addr_format((struct sockaddr *)&u, out, sizeof out), -EINVAL);
    cr_expect_eq(weft_addr_len((struct sockaddr *)&u), 0);
    cr_expect_eq(weft_addr_len(NULL), 0);
    cr_expect_eq(weft_addr_port((struct sockaddr *)&u), -EINVAL);
    cr_expect_eq(weft_addr_port(NULL), -EINVAL);
}

/* ---- stream options and addresses ----------------------------------------------------------- */

typedef struct optx {
    int family;
    int rc;
    struct sockaddr_storage lis, cli_local, cli_peer, srv_local, srv_peer, accepted_peer;
    int nodelay_default, nodelay_on, nodelay_off;
    int ka_rc, ka_bad[5], ka_off;
    int idle, intvl, cnt, keepalive;
} optx_t;

static int getint(int fd, int level, int name)
{
    int v = -1;
    socklen_t len = sizeof v;
    getsockopt(fd, level, name, &v, &len);
    return v;
}

static int opts_main(void *arg)
{
    optx_t *x = arg;
    weft_tcp_listener_t *l;
    int rc = nt_listen(weft_runtime_current(), x->family, &l, &x->lis);
    if (rc != 0)
        return rc;
    weft_tcp_stream_t *c, *s;
    rc = weft_tcp_connect(NULL, (struct sockaddr *)&x->lis,
                          weft_addr_len((struct sockaddr *)&x->lis), weft_now() + WAIT_NS, &c);
    if (rc == 0)
        rc = weft_tcp_accept(l, &s, &x->accepted_peer, weft_now() + WAIT_NS);
    weft_tcp_listener_close(l);
    if (rc != 0)
        return rc;
    weft_tcp_local_addr(c, &x->cli_local);
    weft_tcp_peer_addr(c, &x->cli_peer);
    weft_tcp_local_addr(s, &x->srv_local);
    weft_tcp_peer_addr(s, &x->srv_peer);
    x->nodelay_default = weft_tcp_nodelay(s);
    weft_tcp_set_nodelay(s, true);
    x->nodelay_on = weft_tcp_nodelay(s);
    weft_tcp_set_nodelay(s, false);
    x->nodelay_off = weft_tcp_nodelay(s);
    x->ka_rc = weft_tcp_set_keepalive(s, 1500 * WT_MS, 10 * WT_SEC, 4); /* idle rounds up to 2 s */
    int fd = weft_tcp_stream_fd(s);
    x->keepalive = getint(fd, SOL_SOCKET, SO_KEEPALIVE);
    x->idle = getint(fd, IPPROTO_TCP, TCP_KEEPIDLE);
    x->intvl = getint(fd, IPPROTO_TCP, TCP_KEEPINTVL);
    x->cnt = getint(fd, IPPROTO_TCP, TCP_KEEPCNT);
    x->ka_bad[0] = weft_tcp_set_keepalive(s, -1, WT_SEC, 1);
    x->ka_bad[1] = weft_tcp_set_keepalive(s, WT_SEC, 0, 1);
    x->ka_bad[2] = weft_tcp_set_keepalive(s, WT_SEC, WT_SEC, 0);
    x->ka_bad[3] = weft_tcp_set_keepalive(s, WT_SEC, WT_SEC, 128);
    x->ka_bad[4] = weft_tcp_set_keepalive(s, 32768 * WT_SEC, WT_SEC, 1);
    weft_tcp_set_keepalive(s, 0, 0, 0);
    x->ka_off = getint(fd, SOL_SOCKET, SO_KEEPALIVE);
    weft_tcp_close(c);
    weft_tcp_close(s);
    return 0;
}

static bool same_addr(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
    char x[WEFT_ADDR_STRLEN], y[WEFT_ADDR_STRLEN];
    weft_addr_format((const struct sockaddr *)a, x, sizeof x);
    weft_addr_format((const struct sockaddr *)b, y, sizeof y);
    return strcmp(x, y) == 0;
}

static void opts_run(int family)
{
    weft_runtime_t *rt = wt_runtime(1);
    optx_t x = {.family = family};
    int result = -1;
    cr_assert_eq(weft_runtime_run_coro(rt, opts_main, &x, NULL, &result), 0);
    cr_assert_eq(result, 0, "%d (%s)", result, weft_strerror(result));
    cr_expect_neq(weft_addr_port((struct sockaddr *)&x.lis), 0, "port 0 became a real port");
    cr_expect(same_addr(&x.cli_peer, &x.lis));
    cr_expect(same_addr(&x.srv_local, &x.lis));
    cr_expect(same_addr(&x.srv_peer, &x.cli_local));
    cr_expect(same_addr(&x.accepted_peer, &x.cli_local), "accept's peer address");
    cr_expect_eq(x.nodelay_default, 0);
    cr_expect_eq(x.nodelay_on, 1);
    cr_expect_eq(x.nodelay_off, 0);
    cr_expect_eq(x.ka_rc, 0);
    cr_expect_eq(x.keepalive, 1);
    cr_expect_eq(x.idle, 2);
    cr_expect_eq(x.intvl, 10);
    cr_expect_eq(x.cnt, 4);
    for (int i = 0; i < 5; i++)
        cr_expect_eq(x.ka_bad[i], -EINVAL, "bad keepalive %d", i);
    cr_expect_eq(x.ka_off, 0);
    cr_expect_eq(wt_finish(rt), 0);
}

Test(net_opts, ipv4, .timeout = 30)
{
    opts_run(AF_INET);
}

Test(net_opts, ipv6, .timeout = 30)
{
    if (!nt_ipv6_available())
        cr_skip_test("IPv6 loopback unavailable");
    opts_run(AF_INET6);
}

/* A v6-only listener on [::] refuses IPv4; a dual-stack one takes it. */
typedef struct dual {
    weft_tcp_listener_t *l;
    int port;
    int rc;
} dual_t;

static int dual_connect(void *arg)
{
    dual_t *d = arg;
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)d->port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    weft_tcp_stream_t *s;
    d->rc = weft_tcp_connect(NULL, (struct sockaddr *)&a, sizeof a, weft_now() + WAIT_NS, &s);
    if (d->rc == 0) {
        weft_tcp_stream_t *t;
        struct sockaddr_storage peer;
        d->rc = weft_tcp_accept(d->l, &t, &peer, weft_now() + WAIT_NS);
        if (d->rc == 0) {
            /* An IPv4 peer on a v6 socket: a v4-mapped address. */
            d->rc = peer.ss_family == AF_INET6 ? 0 : -EAFNOSUPPORT;
            weft_tcp_close(t);
        }
        weft_tcp_close(s);
    }
    return 0;
}

Test(net_opts, v6only, .timeout = 30)
{
    if (!nt_ipv6_available())
        cr_skip_test("IPv6 unavailable");
    weft_runtime_t *rt = wt_runtime(1);
    for (int v6only = 0; v6only <= 1; v6only++) {
        struct sockaddr_storage a;
        socklen_t alen;
        cr_assert_eq(weft_addr_parse("[::]:0", &a, &alen), 0);
        weft_tcp_listen_opts_t o = WEFT_TCP_LISTEN_OPTS_INIT;
        o.v6only = v6only;
        o.backlog = 0; /* the default */
        dual_t d = {0};
        cr_assert_eq(weft_tcp_listen_with(rt, (struct sockaddr *)&a, alen, &o, &d.l), 0);
        struct sockaddr_storage bound;
        cr_assert_eq(weft_tcp_listener_local_addr(d.l, &bound), 0);
        d.port = weft_addr_port((struct sockaddr *)&bound);
        cr_assert_eq(weft_runtime_run_coro(rt, dual_connect, &d, NULL, NULL), 0);
        if (v6only)
            cr_expect_eq(d.rc, -ECONNREFUSED, "v6only: %d", d.rc);
        else
            cr_expect_eq(d.rc, 0, "dual-stack: %d", d.rc);
        cr_expect_eq(weft_tcp_listener_close(d.l), 0);
    }
    cr_expect_eq(wt_finish(rt), 0);
}

/* ---- SO_REUSEPORT: one listener per worker on one port ------------------------------------- */

#define RP_CONNS 64

typedef struct rp_acceptor {
    weft_tcp_listener_t *l;
    _Atomic int *total;
    int rc;
} rp_acceptor_t;

/* Accept until the listener is closed (-EBADF ends it normally). */
static int rp_accept_loop(void *arg)
{
    rp_acceptor_t *a = arg;
    for (;;) {
        weft_tcp_stream_t *s = NULL;
        int rc = weft_tcp_accept(a->l, &s, NULL, weft_now() + WAIT_NS);
        if (rc != 0) {
            a->rc = rc == -EBADF ? 0 : rc;
            return 0;
        }
        atomic_fetch_add(a->total, 1);
        weft_tcp_close(s);
    }
}

static bool rp_all(void *arg)
{
    return atomic_load((_Atomic int *)arg) == RP_CONNS;
}

Test(net_opts, reuseport_listeners_share_a_port, .timeout = 60)
{
    weft_runtime_t *rt = wt_runtime(2);
    weft_tcp_listen_opts_t o = WEFT_TCP_LISTEN_OPTS_INIT;
    o.reuseport = true;
    struct sockaddr_storage a;
    socklen_t alen;
    nt_loopback(AF_INET, &a, &alen);
    weft_tcp_listener_t *l[2], *plain = NULL;
    cr_assert_eq(weft_tcp_listen_with(rt, (struct sockaddr *)&a, alen, &o, &l[0]), 0);
    cr_assert_eq(weft_tcp_listener_local_addr(l[0], &a), 0);
    cr_assert_eq(weft_tcp_listen_with(rt, (struct sockaddr *)&a, alen, &o, &l[1]), 0,
                 "a second SO_REUSEPORT listener on the same port");
    cr_expect_eq(weft_tcp_listen(rt, (struct sockaddr *)&a, alen, 16, &plain), -EADDRINUSE,
                 "a listener without the option cannot join them");
    _Atomic int total = 0;
    rp_acceptor_t acc[2];
    weft_task_t *h[2];
    for (int i = 0; i < 2; i++) {
        acc[i] = (rp_acceptor_t){l[i], &total, 1};
        cr_assert_eq(weft_spawn_coro(rt, rp_accept_loop, &acc[i], NULL, &h[i]), 0);
    }
    int fds[RP_CONNS];
    for (int i = 0; i < RP_CONNS; i++) {
        fds[i] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        cr_assert_geq(fds[i], 0);
        cr_assert_eq(connect(fds[i], (struct sockaddr *)&a, sizeof(struct sockaddr_in)), 0);
    }
    cr_expect(wt_wait_until(rp_all, &total, WAIT_NS), "accepted %d of %d", atomic_load(&total),
              RP_CONNS);
    uint64_t per[2] = {0, 0};
    for (int i = 0; i < 2; i++) {
        weft_tcp_listener_stats_t st;
        cr_assert_eq(weft_tcp_listener_stats(l[i], &st), 0);
        per[i] = st.accepted;
        cr_expect_eq(weft_tcp_listener_close(l[i]), 0);
        cr_expect_eq(weft_task_join_wait(h[i], weft_now() + WAIT_NS, NULL), 0);
        cr_expect_eq(acc[i].rc, 0, "acceptor %d: %d", i, acc[i].rc);
    }
    cr_expect_eq(per[0] + per[1], RP_CONNS, "%llu + %llu", (unsigned long long)per[0],
                 (unsigned long long)per[1]);
    cr_log_info("reuseport: %llu and %llu connections", (unsigned long long)per[0],
                (unsigned long long)per[1]);
    for (int i = 0; i < RP_CONNS; i++)
        close(fds[i]);
    cr_expect_eq(wt_finish(rt), 0);
}

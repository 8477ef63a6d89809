/*
 * net/echo.c - echo round trips over loopback: 1,000 concurrent
 * connections against a coroutine server and against a stackless one
 * (accept / read / write-all futures polled by hand), with coroutine
 * clients and stackless clients (connect / write-all / read-exact
 * futures); IPv6 loopback.
 *
 * Every client checks every byte it gets back (per-connection pattern), and
 * the servers count the bytes they echoed: nothing lost, nothing doubled.
 */
#include <criterion/criterion.h>
#include <errno.h>

#include "net/nt.h"

#define CONNS 1000
#define ROUNDS 8
#define MAXMSG 3000
#define WAIT_NS (60 * WT_SEC)

/* Bytes a client sends in round r. */
static size_t msg_len(uint32_t seed, int r)
{
    return 1 + (seed * 31u + (unsigned)r * 977u) % MAXMSG;
}

static int64_t total_bytes(int conns)
{
    int64_t t = 0;
    for (int i = 0; i < conns; i++)
        for (int r = 0; r < ROUNDS; r++)
            t += (int64_t)msg_len((uint32_t)i, r);
    return t;
}

typedef struct clients {
    struct sockaddr_storage addr;
    int n;
    _Atomic int connected;
    _Atomic int ok;
    _Atomic int failed;
    _Atomic int first_error;
} clients_t;

static void clients_init(clients_t *cs, const struct sockaddr_storage *addr, int n)
{
    cs->addr = *addr;
    cs->n = n;
    atomic_init(&cs->connected, 0);
    atomic_init(&cs->ok, 0);
    atomic_init(&cs->failed, 0);
    atomic_init(&cs->first_error, 0);
}

static void client_failed(clients_t *cs, int rc)
{
    int zero = 0;
    atomic_compare_exchange_strong(&cs->first_error, &zero, rc);
    atomic_fetch_add(&cs->failed, 1);
}

/* Wait (bounded) until every client is connected, so all CONNS are open at once. */
static void wait_all_connected(clients_t *cs)
{
    int64_t end = weft_now() + 20 * WT_SEC;
    while (atomic_load(&cs->connected) < cs->n && weft_now() < end)
        if (weft_sleep_for(WT_MS) == -ECANCELED)
            return;
}

/* ---- coroutine clients ---------------------------------------------------------------------- */

typedef struct cclient {
    clients_t *cs;
    uint32_t seed;
} cclient_t;

static int coro_client(void *arg)
{
    cclient_t c = *(cclient_t *)arg;
    free(arg);
    clients_t *cs = c.cs;
    weft_tcp_stream_t *s;
    int rc =
        weft_tcp_connect(NULL, (struct sockaddr *)&cs->addr,
                         weft_addr_len((struct sockaddr *)&cs->addr), weft_now() + 20 * WT_SEC, &s);
    if (rc != 0) {
        client_failed(cs, rc);
        atomic_fetch_add(&cs->connected, 1);
        return rc;
    }
    atomic_fetch_add(&cs->connected, 1);
    wait_all_connected(cs);
    uint8_t tx[MAXMSG], rx[MAXMSG];
    uint64_t off = 0;
    for (int r = 0; r < ROUNDS && rc == 0; r++) {
        size_t len = msg_len(c.seed, r), done = 0;
        nt_fill(tx, len, c.seed, off);
        rc = weft_tcp_write_all(s, tx, len, weft_now() + 30 * WT_SEC, &done);
        if (rc == 0 && done != len)
            rc = -EIO;
        if (rc == 0)
            rc = weft_tcp_read_exact(s, rx, len, weft_now() + 30 * WT_SEC, &done);
        if (rc == 0 && (done != len || nt_check(rx, len, c.seed, off) != len))
            rc = -EILSEQ;
        off += len;
    }
    weft_tcp_close(s);
    if (rc != 0)
        client_failed(cs, rc);
    else
        atomic_fetch_add(&cs->ok, 1);
    return rc;
}

typedef struct run_clients {
    clients_t *cs;
    bool stackless;
} run_clients_t;

/* ---- stackless clients: connect, then rounds of write-all + read-exact ---------------------- */

typedef struct sclient {
    clients_t *cs;
    uint32_t seed;
    int step; /* 0 connect, 1 wait for all, 2 write, 3 read */
    int round;
    bool live;
    uint64_t off;
    size_t done;
    weft_tcp_stream_t *s;
    weft_sleep_t nap;
    union {
        weft_tcp_connect_t conn;
        weft_tcp_xfer_t x;
    } op;
    uint8_t tx[MAXMSG], rx[MAXMSG];
} sclient_t;

static weft_poll_t sclient_poll(void *st, weft_cx_t *cx, int64_t *out)
{
    sclient_t *c = st;
    clients_t *cs = c->cs;
    int64_t v = 0;
    for (;;) {
        switch (c->step) {
        case 0:
            if (!c->live)
                weft_tcp_connect_init(
                    &c->op.conn, weft_runtime_current(), (struct sockaddr *)&cs->addr,
                    weft_addr_len((struct sockaddr *)&cs->addr), weft_now() + 20 * WT_SEC, &c->s);
            c->live = true;
            if (weft_tcp_connect_vtable.poll(&c->op.conn, cx, &v) == WEFT_PENDING)
                return WEFT_PENDING;
            weft_tcp_connect_vtable.drop(&c->op.conn);
            c->live = false;
            atomic_fetch_add(&cs->connected, 1);
            if (v != 0)
                goto fail;
            c->step = 1;
            weft_sleep_init(&c->nap, weft_now() + WT_MS);
            break;
        case 1:
            if (atomic_load(&cs->connected) < cs->n) {
                if (weft_sleep_vtable.poll(&c->nap, cx, &v) == WEFT_PENDING)
                    return WEFT_PENDING;
                weft_sleep_init(&c->nap, weft_now() + WT_MS);
                break;
            }
            c->step = 2;
            break;
        case 2:
            if (c->round == ROUNDS) {
                weft_tcp_close(c->s);
                c->s = NULL;
                atomic_fetch_add(&cs->ok, 1);
                *out = 0;
                return WEFT_READY;
            }
            if (!c->live) {
                nt_fill(c->tx, msg_len(c->seed, c->round), c->seed, c->off);
                weft_tcp_write_all_init(&c->op.x, c->s, c->tx, msg_len(c->seed, c->round),
                                        weft_now() + 30 * WT_SEC, &c->done);
            }
            c->live = true;
            if (weft_tcp_write_all_vtable.poll(&c->op.x, cx, &v) == WEFT_PENDING)
                return WEFT_PENDING;
            weft_tcp_write_all_vtable.drop(&c->op.x);
            c->live = false;
            if (v != 0 || c->done != msg_len(c->seed, c->round))
                goto fail;
            c->step = 3;
            break;
        case 3: {
            size_t len = msg_len(c->seed, c->round);
            if (!c->live)
                weft_tcp_read_exact_init(&c->op.x, c->s, c->rx, len, weft_now() + 30 * WT_SEC,
                                         &c->done);
            c->live = true;
            if (weft_tcp_read_exact_vtable.poll(&c->op.x, cx, &v) == WEFT_PENDING)
                return WEFT_PENDING;
            weft_tcp_read_exact_vtable.drop(&c->op.x);
            c->live = false;
            if (v != 0 || c->done != len || weft_tcp_xfer_done(&c->op.x) != len)
                goto fail;
            if (nt_check(c->rx, len, c->seed, c->off) != len) {
                v = -EILSEQ;
                goto fail;
            }
            c->off += len;
            c->round++;
            c->step = 2;
            break;
        }
        }
    }
fail:
    client_failed(cs, v ? (int)v : -EIO);
    if (c->s)
        weft_tcp_close(c->s);
    c->s = NULL;
    *out = v;
    return WEFT_READY;
}

static void sclient_drop(void *st)
{
    sclient_t *c = st;
    if (c->live) {
        if (c->step == 0)
            weft_tcp_connect_vtable.drop(&c->op.conn);
        else
            weft_tcp_read_vtable.drop(&c->op.x); /* the same drop for every transfer */
    }
    c->live = false;
    if (c->s)
        weft_tcp_close(c->s);
    c->s = NULL;
}

static const weft_future_vtable_t sclient_vt = {sclient_poll, sclient_drop, "sclient"};

static int run_clients(void *arg)
{
    run_clients_t *rc_ = arg;
    clients_t *cs = rc_->cs;
    weft_task_t **h = calloc((size_t)cs->n, sizeof *h);
    weft_runtime_t *rt = weft_runtime_current();
    int spawned = 0;
    for (int i = 0; i < cs->n; i++) {
        int rc;
        if (rc_->stackless) {
            sclient_t *init = calloc(1, sizeof *init);
            init->cs = cs;
            init->seed = (uint32_t)i;
            rc = weft_spawn(rt, &sclient_vt, init, sizeof *init, &h[i]);
            free(init);
        } else {
            cclient_t *c = malloc(sizeof *c);
            c->cs = cs;
            c->seed = (uint32_t)i;
            rc = weft_spawn_coro(rt, coro_client, c, NULL, &h[i]);
            if (rc != 0)
                free(c);
        }
        if (rc != 0) {
            client_failed(cs, rc);
            atomic_fetch_add(&cs->connected, 1);
            h[i] = NULL;
        } else {
            spawned++;
        }
    }
    for (int i = 0; i < cs->n; i++)
        if (h[i])
            weft_join(h[i], NULL);
    free(h);
    return spawned;
}

/* ---- a stackless echo server: accept / read / write-all futures by hand --------------------- */

typedef struct sconn {
    nt_server_t *sv;
    weft_tcp_stream_t *s;
    bool writing, live;
    size_t n, done;
    weft_tcp_xfer_t op;
    uint8_t buf[8192];
} sconn_t;

static weft_poll_t sconn_poll(void *st, weft_cx_t *cx, int64_t *out)
{
    sconn_t *c = st;
    int64_t v = 0;
    for (;;) {
        if (!c->writing) {
            if (!c->live)
                weft_tcp_read_init(&c->op, c->s, c->buf, sizeof c->buf, WEFT_FOREVER);
            c->live = true;
            if (weft_tcp_read_vtable.poll(&c->op, cx, &v) == WEFT_PENDING)
                return WEFT_PENDING;
            weft_tcp_read_vtable.drop(&c->op);
            c->live = false;
            if (v <= 0)
                break;
            c->n = (size_t)v;
            c->writing = true;
        } else {
            if (!c->live)
                weft_tcp_write_all_init(&c->op, c->s, c->buf, c->n, WEFT_FOREVER, &c->done);
            c->live = true;
            if (weft_tcp_write_all_vtable.poll(&c->op, cx, &v) == WEFT_PENDING)
                return WEFT_PENDING;
            weft_tcp_write_all_vtable.drop(&c->op);
            c->live = false;
            atomic_fetch_add(&c->sv->echoed, (int64_t)c->done);
            if (v < 0)
                break;
            c->writing = false;
        }
    }
    if (v < 0 && v != -ECONNRESET && v != -EPIPE)
        atomic_fetch_add(&c->sv->errors, 1);
    *out = v;
    return WEFT_READY;
}

static void sconn_drop(void *st)
{
    sconn_t *c = st;
    if (c->live)
        weft_tcp_read_vtable.drop(&c->op);
    c->live = false;
    weft_tcp_close(c->s);
    atomic_fetch_add(&c->sv->finished, 1);
}

static const weft_future_vtable_t sconn_vt = {sconn_poll, sconn_drop, "sconn"};

typedef struct sacceptor {
    nt_server_t *sv;
    bool live;
    int n;
    weft_tcp_stream_t *s;
    struct sockaddr_storage peer;
    weft_tcp_accept_t acc;
} sacceptor_t;

static weft_poll_t sacceptor_poll(void *st, weft_cx_t *cx, int64_t *out)
{
    sacceptor_t *a = st;
    while (a->n < a->sv->max_conns) {
        if (!a->live)
            weft_tcp_accept_init(&a->acc, a->sv->l, &a->s, &a->peer, WEFT_FOREVER);
        a->live = true;
        int64_t v = 0;
        if (weft_tcp_accept_vtable.poll(&a->acc, cx, &v) == WEFT_PENDING)
            return WEFT_PENDING;
        weft_tcp_accept_vtable.drop(&a->acc);
        a->live = false;
        if (v != 0 || (a->sv->l_family && a->peer.ss_family != a->sv->l_family)) {
            atomic_store(&a->sv->accept_rc, v ? (int)v : -EAFNOSUPPORT);
            *out = v;
            return WEFT_READY;
        }
        a->n++;
        atomic_fetch_add(&a->sv->accepted, 1);
        sconn_t *init = calloc(1, sizeof *init);
        init->sv = a->sv;
        init->s = a->s;
        int rc = weft_spawn(weft_runtime_current(), &sconn_vt, init, sizeof *init, NULL);
        free(init);
        if (rc != 0)
            weft_tcp_close(a->s);
    }
    atomic_store(&a->sv->accept_rc, 0);
    *out = 0;
    return WEFT_READY;
}

static void sacceptor_drop(void *st)
{
    sacceptor_t *a = st;
    if (a->live)
        weft_tcp_accept_vtable.drop(&a->acc);
    a->live = false;
}

static const weft_future_vtable_t sacceptor_vt = {sacceptor_poll, sacceptor_drop, "sacceptor"};

/* ---- the runs ------------------------------------------------------------------------------- */

static bool all_finished(void *arg)
{
    nt_server_t *sv = arg;
    return atomic_load(&sv->finished) == sv->max_conns;
}

static void echo_run(int family, int conns, bool stackless_server, bool stackless_clients)
{
    cr_assert_geq(nt_raise_nofile(2 * (rlim_t)conns + 64), 2 * (rlim_t)conns + 64,
                  "need 2 fds per connection");
    weft_runtime_t *rt = wt_runtime(2);
    nt_server_t sv;
    weft_tcp_listener_t *l;
    struct sockaddr_storage addr;
    cr_assert_eq(nt_listen(rt, family, &l, &addr), 0);
    nt_server_init(&sv, l, conns);
    sv.l_family = family;
    weft_task_t *srv;
    if (stackless_server) {
        sacceptor_t a = {.sv = &sv};
        cr_assert_eq(weft_spawn(rt, &sacceptor_vt, &a, sizeof a, &srv), 0);
    } else {
        cr_assert_eq(weft_spawn_coro(rt, nt_accept_loop, &sv, NULL, &srv), 0);
    }
    clients_t cs;
    clients_init(&cs, &addr, conns);
    run_clients_t rcl = {&cs, stackless_clients};
    int spawned = -1;
    cr_assert_eq(weft_runtime_run_coro(rt, run_clients, &rcl, NULL, &spawned), 0);
    cr_expect_eq(spawned, conns);
    cr_expect_eq(atomic_load(&cs.failed), 0, "%d clients failed, first error %d (%s)",
                 atomic_load(&cs.failed), atomic_load(&cs.first_error),
                 weft_strerror(atomic_load(&cs.first_error)));
    cr_expect_eq(atomic_load(&cs.ok), conns);
    cr_expect_eq(weft_task_join_wait(srv, weft_now() + WAIT_NS, NULL), 0);
    cr_expect_eq(atomic_load(&sv.accept_rc), 0);
    cr_expect(wt_wait_until(all_finished, &sv, WAIT_NS), "every server connection ends");
    cr_expect_eq(atomic_load(&sv.accepted), conns);
    cr_expect_eq(atomic_load(&sv.echoed), total_bytes(conns), "echoed %lld bytes",
                 (long long)atomic_load(&sv.echoed));
    cr_expect_eq(atomic_load(&sv.errors), 0);
    weft_tcp_listener_stats_t st;
    cr_expect_eq(weft_tcp_listener_stats(l, &st), 0);
    cr_expect_eq(st.accepted, (uint64_t)conns);
    cr_expect_eq(st.exhausted, 0);
    cr_expect_eq(weft_tcp_listener_close(l), 0);
    cr_expect_eq(wt_finish(rt), 0);
}

Test(net_echo, thousand_coro_server_coro_clients, .timeout = 120)
{
    echo_run(AF_INET, CONNS, false, false);
}

Test(net_echo, thousand_stackless_server_stackless_clients, .timeout = 120)
{
    echo_run(AF_INET, CONNS, true, true);
}

Test(net_echo, mixed_small, .timeout = 60)
{
    echo_run(AF_INET, 50, true, false);
    echo_run(AF_INET, 50, false, true);
}

Test(net_echo, ipv6_loopback, .timeout = 60)
{
    if (!nt_ipv6_available())
        cr_skip_test("IPv6 loopback unavailable");
    echo_run(AF_INET6, 100, false, false);
    echo_run(AF_INET6, 100, true, true);
}

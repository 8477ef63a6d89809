/*
 * stress/net_echo.c - TCP echo under concurrency, for TSan: 64 connections,
 * half to a coroutine server and half to a stackless one (accept / read /
 * write-all futures polled by hand). Each client connection has a writer
 * task and a reader task running at once on the same stream (the "one
 * reader and one writer" rule), on whichever workers they land. The writer
 * sends a per-connection pattern in chunks of varying size, then shuts down
 * its side; the server echoes and shuts down its side at end of stream; the
 * reader checks every byte and expects end of stream after exactly as many
 * as were sent: nothing lost, nothing doubled. Readers use short deadlines
 * and retry on -ETIMEDOUT (a timed-out read takes nothing). Then rounds of
 * close racing a blocked reader: the reader ends with -EBADF or data.
 *
 * Bounded: fixed sizes, every wait has a deadline; a few seconds under TSan.
 */
#define STRESS_NAME "net_echo"
#include "common/stress.h"
#include "net/net.h"
#include "net/nt.h"

#define CONNS 64
#define BYTES_PER_CONN (256 * 1024)
#define CLOSE_ROUNDS 200
#define DEADLINE_NS (60 * WT_SEC)

static _Atomic int64_t server_echoed;
static _Atomic int server_errors;
static _Atomic int timeouts_seen;

/* ---- servers -------------------------------------------------------------------------------- */

static int coro_conn(void *arg)
{
    weft_tcp_stream_t *s = arg;
    uint8_t buf[3000];
    int n;
    while ((n = weft_tcp_read(s, buf, sizeof buf, weft_now() + DEADLINE_NS)) > 0) {
        size_t done = 0;
        int rc = weft_tcp_write_all(s, buf, (size_t)n, weft_now() + DEADLINE_NS, &done);
        atomic_fetch_add(&server_echoed, (int64_t)done);
        if (rc < 0) {
            n = rc;
            break;
        }
    }
    if (n < 0 || weft_tcp_shutdown(s, WEFT_SHUT_WR) != 0)
        atomic_fetch_add(&server_errors, 1);
    weft_tcp_close(s);
    return 0;
}

static int coro_server(void *arg)
{
    weft_tcp_listener_t *l = arg;
    for (int i = 0; i < CONNS / 2; i++) {
        weft_tcp_stream_t *s;
        int rc = weft_tcp_accept(l, &s, NULL, weft_now() + DEADLINE_NS);
        if (rc != 0)
            return rc;
        if (weft_spawn_coro(weft_runtime_current(), coro_conn, s, NULL, NULL) != 0)
            weft_tcp_close(s);
    }
    return 0;
}

typedef struct sconn {
    weft_tcp_stream_t *s;
    bool writing, live;
    size_t n, done;
    weft_tcp_xfer_t op;
    uint8_t buf[1500];
} sconn_t;

static weft_poll_t sconn_poll(void *st, weft_cx_t *cx, int64_t *out)
{
    sconn_t *c = st;
    int64_t v = 0;
    for (;;) {
        if (!c->writing) {
            if (!c->live)
                weft_tcp_read_init(&c->op, c->s, c->buf, sizeof c->buf, weft_now() + DEADLINE_NS);
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
                weft_tcp_write_all_init(&c->op, c->s, c->buf, c->n, weft_now() + DEADLINE_NS,
                                        &c->done);
            c->live = true;
            if (weft_tcp_write_all_vtable.poll(&c->op, cx, &v) == WEFT_PENDING)
                return WEFT_PENDING;
            weft_tcp_write_all_vtable.drop(&c->op);
            c->live = false;
            atomic_fetch_add(&server_echoed, (int64_t)c->done);
            if (v < 0)
                break;
            c->writing = false;
        }
    }
    if (v < 0 || weft_tcp_shutdown(c->s, WEFT_SHUT_WR) != 0)
        atomic_fetch_add(&server_errors, 1);
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
}

static const weft_future_vtable_t sconn_vt = {sconn_poll, sconn_drop, "stress_sconn"};

typedef struct sserver {
    weft_tcp_listener_t *l;
    int n;
    bool live;
    weft_tcp_stream_t *s;
    weft_tcp_accept_t acc;
} sserver_t;

static weft_poll_t sserver_poll(void *st, weft_cx_t *cx, int64_t *out)
{
    sserver_t *a = st;
    while (a->n < CONNS / 2) {
        if (!a->live)
            weft_tcp_accept_init(&a->acc, a->l, &a->s, NULL, weft_now() + DEADLINE_NS);
        a->live = true;
        int64_t v = 0;
        if (weft_tcp_accept_vtable.poll(&a->acc, cx, &v) == WEFT_PENDING)
            return WEFT_PENDING;
        weft_tcp_accept_vtable.drop(&a->acc);
        a->live = false;
        if (v != 0) {
            *out = v;
            return WEFT_READY;
        }
        a->n++;
        static _Thread_local sconn_t init;
        memset(&init, 0, sizeof init);
        init.s = a->s;
        if (weft_spawn(weft_runtime_current(), &sconn_vt, &init, sizeof init, NULL) != 0)
            weft_tcp_close(a->s);
    }
    *out = 0;
    return WEFT_READY;
}

static void sserver_drop(void *st)
{
    sserver_t *a = st;
    if (a->live)
        weft_tcp_accept_vtable.drop(&a->acc);
    a->live = false;
}

static const weft_future_vtable_t sserver_vt = {sserver_poll, sserver_drop, "stress_sserver"};

/* ---- clients: a writer task and a reader task per connection -------------------------------- */

typedef struct conn {
    uint32_t seed;
    struct sockaddr_storage addr;
    weft_tcp_stream_t *s;
    _Atomic int64_t received;
    _Atomic int wrc, rrc;
} conn_t;

static int writer(void *arg)
{
    conn_t *c = arg;
    uint8_t buf[5000];
    uint32_t rng = c->seed * 2654435761u + 1;
    size_t off = 0;
    int rc = 0;
    while (off < BYTES_PER_CONN && rc == 0) {
        size_t len = 1 + wt_rng(&rng) % sizeof buf;
        if (len > BYTES_PER_CONN - off)
            len = BYTES_PER_CONN - off;
        nt_fill(buf, len, c->seed, off);
        size_t done = 0;
        rc = weft_tcp_write_all(c->s, buf, len, weft_now() + DEADLINE_NS, &done);
        off += done;
    }
    if (rc == 0)
        rc = weft_tcp_shutdown(c->s, WEFT_SHUT_WR);
    atomic_store(&c->wrc, rc);
    return 0;
}

static int reader(void *arg)
{
    conn_t *c = arg;
    uint8_t buf[4096];
    uint32_t rng = c->seed + 77;
    int64_t got = 0, end = weft_now() + DEADLINE_NS;
    int rc = 0;
    for (;;) {
        /* A short deadline now and then: a timeout takes nothing. */
        int64_t dl = (wt_rng(&rng) & 3) == 0 ? weft_now() + (wt_rng(&rng) % 200) * 1000 : end;
        int n = weft_tcp_read(c->s, buf, 1 + wt_rng(&rng) % sizeof buf, dl);
        if (n == -ETIMEDOUT && weft_now() < end) {
            atomic_fetch_add_explicit(&timeouts_seen, 1, memory_order_relaxed);
            continue;
        }
        if (n <= 0) {
            rc = n;
            break;
        }
        if (nt_check(buf, (size_t)n, c->seed, (uint64_t)got) != (size_t)n) {
            rc = -EILSEQ;
            break;
        }
        got += n;
    }
    atomic_store(&c->received, got);
    atomic_store(&c->rrc, rc);
    return 0;
}

static int client(void *arg)
{
    conn_t *c = arg;
    int rc = weft_tcp_connect(NULL, (struct sockaddr *)&c->addr,
                              weft_addr_len((struct sockaddr *)&c->addr), weft_now() + DEADLINE_NS,
                              &c->s);
    if (rc != 0)
        return rc;
    weft_runtime_t *rt = weft_runtime_current();
    weft_coro_opts_t mig = WEFT_CORO_OPTS_INIT;
    mig.migratable = true; /* let the two halves wander between workers */
    weft_task_t *hw, *hr;
    if (weft_spawn_coro(rt, writer, c, &mig, &hw) != 0 ||
        weft_spawn_coro(rt, reader, c, &mig, &hr) != 0)
        return -ENOMEM;
    weft_join(hw, NULL);
    weft_join(hr, NULL);
    weft_tcp_close(c->s);
    return 0;
}

/* ---- close racing a blocked reader ---------------------------------------------------------- */

typedef struct race {
    weft_tcp_stream_t *s;
    _Atomic int rc;
} race_t;

static int race_reader(void *arg)
{
    race_t *r = arg;
    uint8_t b[8];
    atomic_store(&r->rc, weft_tcp_read(r->s, b, sizeof b, weft_now() + DEADLINE_NS));
    return 0;
}

static int close_races(void *arg)
{
    weft_tcp_listener_t *l = arg;
    struct sockaddr_storage a;
    weft_tcp_listener_local_addr(l, &a);
    uint32_t rng = 5;
    for (int i = 0; i < CLOSE_ROUNDS; i++) {
        weft_tcp_stream_t *c, *s;
        int rc = weft_tcp_connect(NULL, (struct sockaddr *)&a, sizeof(struct sockaddr_in),
                                  weft_now() + DEADLINE_NS, &c);
        if (rc == 0)
            rc = weft_tcp_accept(l, &s, NULL, weft_now() + DEADLINE_NS);
        if (rc != 0)
            return rc;
        race_t r = {s, 1};
        weft_task_t *h;
        if (weft_spawn_coro(weft_runtime_current(), race_reader, &r, NULL, &h) != 0)
            return -ENOMEM;
        /* The reader holds s once its future exists; only then may s close. */
        while (weft__tcp_stream_refs(s) < 2 && atomic_load(&r.rc) == 1)
            weft_yield();
        if (wt_rng(&rng) & 1)
            weft_tcp_write(c, "data", 4, weft_now() + DEADLINE_NS);
        if (wt_rng(&rng) & 1)
            weft_yield();
        weft_tcp_close(s);
        weft_join(h, NULL);
        rc = atomic_load(&r.rc);
        if (rc != -EBADF && rc != 4)
            return rc == 0 ? -EIO : rc;
        weft_tcp_close(c);
    }
    return 0;
}

/* ---- main ----------------------------------------------------------------------------------- */

int main(void)
{
    int64_t t0 = weft_now();
    weft_runtime_t *rt = wt_runtime(3);
    weft_tcp_listener_t *lc, *ls, *lr;
    struct sockaddr_storage ac, as, ar;
    CHECK(nt_listen(rt, AF_INET, &lc, &ac) == 0, "listen");
    CHECK(nt_listen(rt, AF_INET, &ls, &as) == 0, "listen");
    CHECK(nt_listen(rt, AF_INET, &lr, &ar) == 0, "listen");
    weft_task_t *hc, *hs;
    CHECK(weft_spawn_coro(rt, coro_server, lc, NULL, &hc) == 0, "spawn");
    sserver_t ss = {.l = ls};
    CHECK(weft_spawn(rt, &sserver_vt, &ss, sizeof ss, &hs) == 0, "spawn");

    static conn_t conns[CONNS];
    weft_task_t *hcl[CONNS];
    for (int i = 0; i < CONNS; i++) {
        conns[i].seed = (uint32_t)i + 1;
        conns[i].addr = i % 2 ? as : ac;
        atomic_init(&conns[i].received, 0);
        atomic_init(&conns[i].wrc, 1);
        atomic_init(&conns[i].rrc, 1);
        CHECK(weft_spawn_coro(rt, client, &conns[i], NULL, &hcl[i]) == 0, "spawn client");
    }
    for (int i = 0; i < CONNS; i++) {
        int64_t v = 1;
        CHECK(weft_task_join_wait(hcl[i], weft_now() + 2 * DEADLINE_NS, &v) == 0, "join %d", i);
        CHECK(v == 0, "client %d: %s", i, weft_strerror((int)v));
        CHECK(atomic_load(&conns[i].wrc) == 0, "writer %d: %s", i,
              weft_strerror(atomic_load(&conns[i].wrc)));
        CHECK(atomic_load(&conns[i].rrc) == 0, "reader %d: %s", i,
              weft_strerror(atomic_load(&conns[i].rrc)));
        CHECK(atomic_load(&conns[i].received) == BYTES_PER_CONN, "conn %d got %lld bytes", i,
              (long long)atomic_load(&conns[i].received));
    }
    int64_t v = 1;
    CHECK(weft_task_join_wait(hc, weft_now() + DEADLINE_NS, &v) == 0 && v == 0, "coro server");
    CHECK(weft_task_join_wait(hs, weft_now() + DEADLINE_NS, &v) == 0 && v == 0, "sserver");
    int64_t want = (int64_t)CONNS * BYTES_PER_CONN;
    int64_t end = weft_now() + 10 * WT_SEC;
    while (atomic_load(&server_echoed) < want && weft_now() < end)
        wt_sleep_ns(WT_MS);
    CHECK(atomic_load(&server_echoed) == want, "servers echoed %lld of %lld",
          (long long)atomic_load(&server_echoed), (long long)want);
    CHECK(atomic_load(&server_errors) == 0, "server errors: %d", atomic_load(&server_errors));

    int result = -1;
    CHECK(weft_runtime_run_coro(rt, close_races, lr, NULL, &result) == 0 && result == 0,
          "close races: %d", result);

    weft_tcp_listener_close(lc);
    weft_tcp_listener_close(ls);
    weft_tcp_listener_close(lr);
    CHECK(wt_finish(rt) == 0, "runtime free");
    printf("net_echo: %d connections x %d bytes echoed, %d short-deadline timeouts, "
           "%d close races, %.2f s\n",
           CONNS, BYTES_PER_CONN, atomic_load(&timeouts_seen), CLOSE_ROUNDS,
           (double)(weft_now() - t0) / 1e9);
    return 0;
}

/*
 * net/flow.c - the shape of a connection over time: half-close (each
 * direction ends on its own), a peer that resets the connection while we
 * are writing (an error comes back, nothing crashes or leaks), and a slow
 * reader behind a fast writer (the writer waits: what is in flight stays
 * bounded by the kernel's socket buffers, and every byte arrives once, in
 * order).
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <netinet/tcp.h>

#include "net/nt.h"
#include "common/suspended.h"

#define WAIT_NS (30 * WT_SEC)

/* A connected pair on loopback: *a from connect (a coroutine call), *b
 * from accept. Returns 0 or the first error. Call from a coroutine. */
static int pair(weft_tcp_stream_t **a, weft_tcp_stream_t **b)
{
    weft_tcp_listener_t *l;
    struct sockaddr_storage addr;
    int rc = nt_listen(weft_runtime_current(), AF_INET, &l, &addr);
    if (rc != 0)
        return rc;
    rc = weft_tcp_connect(NULL, (struct sockaddr *)&addr, sizeof(struct sockaddr_in),
                          weft_now() + 10 * WT_SEC, a);
    if (rc == 0) {
        rc = weft_tcp_accept(l, b, NULL, weft_now() + 10 * WT_SEC);
        if (rc != 0)
            weft_tcp_close(*a);
    }
    weft_tcp_listener_close(l);
    return rc;
}

/* ---- half-close ----------------------------------------------------------------------------- */

#define HALF_BYTES (300 * 1000)

typedef struct half {
    weft_tcp_stream_t *srv;
    _Atomic int srv_rc;
    _Atomic int64_t srv_got;
} half_t;

/* Server: read to end of stream, then answer with the count, then close. */
static int half_server(void *arg)
{
    half_t *h = arg;
    uint8_t buf[7000];
    int64_t got = 0;
    int n, rc = 0;
    while ((n = weft_tcp_read(h->srv, buf, sizeof buf, weft_now() + WAIT_NS)) > 0) {
        if (nt_check(buf, (size_t)n, 7, (uint64_t)got) != (size_t)n)
            rc = -EILSEQ;
        got += n;
    }
    if (n < 0)
        rc = n;
    atomic_store(&h->srv_got, got);
    /* The read side is done; the write side still works. */
    if (rc == 0)
        rc = weft_tcp_write_all(h->srv, &got, sizeof got, weft_now() + WAIT_NS, NULL);
    if (rc == 0)
        rc = weft_tcp_shutdown(h->srv, WEFT_SHUT_WR);
    /* A read after end of stream keeps returning 0. */
    if (rc == 0 && weft_tcp_read(h->srv, buf, 1, weft_now() + WAIT_NS) != 0)
        rc = -EIO;
    weft_tcp_close(h->srv);
    atomic_store(&h->srv_rc, rc);
    return 0;
}

static int half_main(void *arg)
{
    int *result = arg;
    half_t h = {0};
    weft_tcp_stream_t *cli;
    int rc = pair(&cli, &h.srv);
    if (rc != 0)
        return *result = rc, 0;
    atomic_init(&h.srv_rc, 1);
    weft_task_t *t;
    rc = weft_spawn_coro(weft_runtime_current(), half_server, &h, NULL, &t);
    if (rc != 0)
        return *result = rc, 0;
    static uint8_t out[HALF_BYTES];
    nt_fill(out, sizeof out, 7, 0);
    size_t done = 0;
    rc = weft_tcp_write_all(cli, out, sizeof out, weft_now() + WAIT_NS, &done);
    if (rc == 0 && done != sizeof out)
        rc = -EIO;
    if (rc == 0)
        rc = weft_tcp_shutdown(cli, WEFT_SHUT_WR);
    /* Our write side is shut: writing fails, without SIGPIPE. */
    if (rc == 0 && weft_tcp_write(cli, out, 1, weft_now() + WAIT_NS) != -EPIPE)
        rc = -EPROTO;
    int64_t count = -1;
    if (rc == 0)
        rc = weft_tcp_read_exact(cli, &count, sizeof count, weft_now() + WAIT_NS, &done);
    if (rc == 0 && count != HALF_BYTES)
        rc = -ERANGE;
    /* Then the server's FIN: end of stream, and read_exact past it says -EPIPE. */
    uint8_t b;
    if (rc == 0 && weft_tcp_read(cli, &b, 1, weft_now() + WAIT_NS) != 0)
        rc = -ENOTCONN;
    if (rc == 0 && weft_tcp_read_exact(cli, &b, 1, weft_now() + WAIT_NS, &done) != -EPIPE)
        rc = -EBADMSG;
    if (rc == 0 && done != 0)
        rc = -EBADMSG;
    weft_join(t, NULL);
    weft_tcp_close(cli);
    if (rc == 0)
        rc = atomic_load(&h.srv_rc);
    *result = rc;
    return 0;
}

Test(net_flow, half_close, .timeout = 60)
{
    weft_runtime_t *rt = wt_runtime(2);
    int result = 1;
    cr_assert_eq(weft_runtime_run_coro(rt, half_main, &result, NULL, NULL), 0);
    cr_expect_eq(result, 0, "%d (%s)", result, weft_strerror(result));
    cr_expect_eq(wt_finish(rt), 0);
}

/* Shut down reading on our side while a reader waits: it sees end of stream. */
typedef struct shut_rd {
    weft_tcp_stream_t *s;
    _Atomic int rc;
} shut_rd_t;

static int shut_rd_reader(void *arg)
{
    shut_rd_t *x = arg;
    uint8_t b;
    atomic_store(&x->rc, weft_tcp_read(x->s, &b, 1, weft_now() + WAIT_NS));
    return 0;
}

static int shut_rd_main(void *arg)
{
    int *result = arg;
    weft_tcp_stream_t *a, *b;
    int rc = pair(&a, &b);
    if (rc != 0)
        return *result = rc, 0;
    shut_rd_t x = {a, 1};
    weft_task_t *t;
    weft_spawn_coro(weft_runtime_current(), shut_rd_reader, &x, NULL, &t);
    /* Until the reader is blocked in its read (its only suspension). */
    for (int i = 0; i < 10000 && !wt_task_suspended(t); i++)
        weft_sleep_for(WT_MS);
    rc = weft_tcp_shutdown(a, WEFT_SHUT_RD);
    weft_join(t, NULL);
    if (rc == 0)
        rc = atomic_load(&x.rc) == 0 ? 0 : -EIO;
    weft_tcp_close(a);
    weft_tcp_close(b);
    *result = rc;
    return 0;
}

Test(net_flow, shutdown_read_wakes_reader, .timeout = 60)
{
    weft_runtime_t *rt = wt_runtime(2);
    int result = 1;
    cr_assert_eq(weft_runtime_run_coro(rt, shut_rd_main, &result, NULL, NULL), 0);
    cr_expect_eq(result, 0, "%d (%s)", result, weft_strerror(result));
    cr_expect_eq(wt_finish(rt), 0);
}

/* ---- peer reset mid-write ------------------------------------------------------------------- */

#define RESET_TOTAL ((size_t)64 << 20)
#define RESET_READ (256 << 10)

typedef struct reset {
    weft_tcp_stream_t *srv;
    uint8_t *buf;
    _Atomic int rc;
    _Atomic int read_rc;
    _Atomic size_t done;
} reset_t;

static int reset_writer(void *arg)
{
    reset_t *r = arg;
    size_t done = 0;
    int rc = weft_tcp_write_all(r->srv, r->buf, RESET_TOTAL, weft_now() + WAIT_NS, &done);
    atomic_store(&r->done, done);
    atomic_store(&r->rc, rc);
    /* After the reset, reads report it too (or end of stream), never hang. */
    uint8_t b;
    atomic_store(&r->read_rc, weft_tcp_read(r->srv, &b, 1, weft_now() + WAIT_NS));
    weft_tcp_close(r->srv);
    return 0;
}

static int reset_main(void *arg)
{
    reset_t *r = arg;
    weft_tcp_stream_t *cli;
    int rc = pair(&cli, &r->srv);
    if (rc != 0) {
        atomic_store(&r->rc, rc);
        return 0;
    }
    weft_task_t *t;
    weft_spawn_coro(weft_runtime_current(), reset_writer, r, NULL, &t);
    /* Take some of it, then reset: SO_LINGER {on, 0} makes close send RST. */
    uint8_t *in = malloc(RESET_READ);
    size_t done = 0;
    rc = weft_tcp_read_exact(cli, in, RESET_READ, weft_now() + WAIT_NS, &done);
    free(in);
    struct linger lg = {1, 0};
    setsockopt(weft_tcp_stream_fd(cli), SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    weft_tcp_close(cli);
    weft_join(t, NULL);
    return rc;
}

Test(net_flow, peer_reset_mid_write, .timeout = 60)
{
    weft_runtime_t *rt = wt_runtime(2);
    reset_t r = {.buf = calloc(1, RESET_TOTAL), .rc = 1, .read_rc = 1};
    cr_assert_not_null(r.buf);
    int result = -1;
    cr_assert_eq(weft_runtime_run_coro(rt, reset_main, &r, NULL, &result), 0);
    cr_expect_eq(result, 0, "the client read its part: %d", result);
    int rc = atomic_load(&r.rc);
    cr_expect(rc == -ECONNRESET || rc == -EPIPE, "write_all reports the reset: %d (%s)", rc,
              weft_strerror(rc));
    cr_expect_lt(atomic_load(&r.done), RESET_TOTAL, "done = %zu", atomic_load(&r.done));
    cr_expect_geq(atomic_load(&r.done), RESET_READ);
    int rr = atomic_load(&r.read_rc);
    cr_expect(rr == 0 || rr == -ECONNRESET || rr == -EPIPE, "read after reset: %d", rr);
    free(r.buf);
    cr_expect_eq(wt_finish(rt), 0);
}

/* ---- slow reader, fast writer --------------------------------------------------------------- */

#define SLOW_TOTAL ((size_t)96 << 20)
#define SLOW_CHUNK ((size_t)1 << 20)

typedef struct slow {
    weft_tcp_stream_t *w, *r;
    _Atomic size_t written; /* bytes write_all has handed to the kernel */
    _Atomic int wrc;
    _Atomic int rrc;
    _Atomic size_t stalled_at; /* written when the reader's pause ended */
    _Atomic size_t max_in_flight;
} slow_t;

static int slow_writer(void *arg)
{
    slow_t *x = arg;
    uint8_t *chunk = malloc(SLOW_CHUNK);
    int rc = 0;
    for (size_t off = 0; off < SLOW_TOTAL && rc == 0; off += SLOW_CHUNK) {
        nt_fill(chunk, SLOW_CHUNK, 11, off);
        size_t done = 0;
        weft_tcp_write_all_t f;
        weft_tcp_write_all_init(&f, x->w, chunk, SLOW_CHUNK, weft_now() + WAIT_NS, &done);
        int64_t v = 0;
        rc = weft_await(&weft_tcp_write_all_vtable, &f, &v);
        if (rc == 0)
            rc = (int)v;
        atomic_store(&x->written, off + done);
    }
    free(chunk);
    atomic_store(&x->wrc, rc);
    return 0;
}

static int slow_main(void *arg)
{
    slow_t *x = arg;
    int rc = pair(&x->w, &x->r);
    if (rc != 0)
        return rc;
    weft_task_t *t;
    weft_spawn_coro(weft_runtime_current(), slow_writer, x, NULL, &t);
    /* The reader takes nothing for a while: the writer must stop and wait. */
    size_t last = 0;
    for (int i = 0; i < 50; i++) {
        weft_sleep_for(10 * WT_MS);
        last = atomic_load(&x->written);
    }
    atomic_store(&x->stalled_at, last);
    /* Then read everything, slowly at first, checking every byte. */
    uint8_t *buf = malloc(64 << 10);
    size_t got = 0;
    while (got < SLOW_TOTAL) {
        int n = weft_tcp_read(x->r, buf, 64 << 10, weft_now() + WAIT_NS);
        if (n <= 0) {
            rc = n ? n : -EPIPE;
            break;
        }
        if (nt_check(buf, (size_t)n, 11, got) != (size_t)n) {
            rc = -EILSEQ;
            break;
        }
        got += (size_t)n;
        /* written lags by up to a chunk (it is stored per chunk): a lower
         * estimate, never negative. */
        size_t w = atomic_load(&x->written);
        size_t in_flight = w > got ? w - got : 0;
        if (in_flight > atomic_load(&x->max_in_flight))
            atomic_store(&x->max_in_flight, in_flight);
        if (got < (8u << 20) && (got & ((1u << 20) - 1)) < (size_t)n)
            weft_sleep_for(WT_MS); /* slow for the first 8 MiB */
    }
    free(buf);
    weft_join(t, NULL);
    atomic_store(&x->rrc, rc);
    weft_tcp_close(x->w);
    weft_tcp_close(x->r);
    return 0;
}

static size_t proc_max(const char *path)
{
    FILE *f = fopen(path, "r");
    unsigned long a = 0, b = 0, c = 0;
    if (f) {
        if (fscanf(f, "%lu %lu %lu", &a, &b, &c) != 3)
            c = 0;
        fclose(f);
    }
    return c ? c : (64ul << 20);
}

Test(net_flow, slow_reader_backpressure, .timeout = 120)
{
    weft_runtime_t *rt = wt_runtime(2);
    slow_t x = {.wrc = 1, .rrc = 1};
    int result = -1;
    cr_assert_eq(weft_runtime_run_coro(rt, slow_main, &x, NULL, &result), 0);
    cr_expect_eq(result, 0);
    cr_expect_eq(atomic_load(&x.wrc), 0, "writer: %d", atomic_load(&x.wrc));
    cr_expect_eq(atomic_load(&x.rrc), 0, "reader: %d", atomic_load(&x.rrc));
    /* What can be in flight is what the kernel buffers: the writer's send
     * buffer plus the reader's receive buffer, at most their sysctl maxima
     * (weft adds nothing). The pause shows the writer actually stopped. */
    size_t bound =
        proc_max("/proc/sys/net/ipv4/tcp_wmem") + proc_max("/proc/sys/net/ipv4/tcp_rmem");
    size_t stalled = atomic_load(&x.stalled_at);
    cr_expect_lt(stalled, SLOW_TOTAL, "the writer waited for the reader (%zu written)", stalled);
    cr_expect_leq(stalled, bound, "in flight while stalled: %zu > %zu", stalled, bound);
    cr_expect_leq(atomic_load(&x.max_in_flight), bound);
    cr_expect_eq(wt_finish(rt), 0);
}

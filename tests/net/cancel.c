/*
 * net/cancel.c - every wait observes cancellation and deadlines, and leaves
 * the object usable: a cancelled read took nothing (the next read gets the
 * data), a cancelled write_all reports in *done what went out (the rest,
 * written afterwards, arrives exactly once, in order), a cancelled or timed
 * out accept took no connection, a read that timed out leaves the stream
 * working, a passed deadline still makes one attempt before any event has
 * been reported, a stackless task cancelled mid-read drops its future
 * cleanly, a read or accept that ends by its deadline or by being
 * dropped leaves no clone of its waker in the fd's slot, a second
 * operation on a side that is already waiting is refused with -EBUSY, a
 * read abandoned by a shutdown past its deadline gives the stream back,
 * and a connect that finished unreported is found at its deadline.
 */
#include <criterion/criterion.h>
#include <errno.h>

#include "net/net.h"
#include "net/nt.h"
#include "common/probe.h"
#include "common/suspended.h"

#define WAIT_NS (20 * WT_SEC)

#include "common/held.h"

typedef struct duo {
    weft_tcp_stream_t *a, *b; /* a: connected, b: accepted */
    weft_tcp_listener_t *l;
    struct sockaddr_storage addr;
} duo_t;

static int make_duo(void *arg)
{
    duo_t *d = arg;
    int rc = nt_listen(weft_runtime_current(), AF_INET, &d->l, &d->addr);
    if (rc == 0)
        rc = weft_tcp_connect(NULL, (struct sockaddr *)&d->addr, sizeof(struct sockaddr_in),
                              weft_now() + WAIT_NS, &d->a);
    if (rc == 0)
        rc = weft_tcp_accept(d->l, &d->b, NULL, weft_now() + WAIT_NS);
    return rc;
}

static void duo(weft_runtime_t *rt, duo_t *d)
{
    int result = -1;
    cr_assert_eq(weft_runtime_run_coro(rt, make_duo, d, NULL, &result), 0);
    cr_assert_eq(result, 0, "%d", result);
}

static void duo_close(duo_t *d)
{
    weft_tcp_close(d->a);
    weft_tcp_close(d->b);
    weft_tcp_listener_close(d->l);
}

static bool held(void *arg)
{
    return weft__tcp_stream_refs(arg) >= 2;
}

/* ---- read ----------------------------------------------------------------------------------- */

typedef struct op {
    duo_t *d;
    uint8_t *buf;
    size_t len;
    _Atomic int rc;
    _Atomic size_t done;
} op_t;

static int cancel_reader(void *arg)
{
    op_t *o = arg;
    atomic_store(&o->rc, weft_tcp_read(o->d->b, o->buf, o->len, WEFT_FOREVER));
    /* Level-triggered: the next call says -ECANCELED too. */
    if (weft_tcp_read(o->d->b, o->buf, o->len, WEFT_FOREVER) != -ECANCELED)
        atomic_store(&o->rc, -EIO);
    return 0;
}

static int read_now(void *arg)
{
    op_t *o = arg;
    return weft_tcp_read(o->d->b, o->buf, o->len, weft_now() + WAIT_NS);
}

static int write_str(void *arg)
{
    op_t *o = arg;
    size_t done;
    return weft_tcp_write_all(o->d->a, o->buf, o->len, weft_now() + WAIT_NS, &done);
}

Test(net_cancel, read_cancelled_takes_nothing, .timeout = 60)
{
    weft_runtime_t *rt = wt_runtime(2);
    duo_t d;
    duo(rt, &d);
    uint8_t buf[64] = {0};
    op_t o = {&d, buf, sizeof buf, 1, 0};
    weft_task_t *h;
    cr_assert_eq(weft_spawn_coro(rt, cancel_reader, &o, NULL, &h), 0);
    cr_assert(wt_wait_until(held, d.b, WAIT_NS));
    wt_wait_suspended(h);
    cr_expect_eq(weft_task_cancel(h), 0);
    cr_expect_eq(weft_task_join_wait(h, weft_now() + WAIT_NS, NULL), -ECANCELED);
    cr_expect_eq(atomic_load(&o.rc), -ECANCELED);
    cr_expect_eq(weft__tcp_stream_refs(d.b), 1, "the cancelled read released the stream");
    /* The stream still works: what is written now is read whole. */
    op_t w = {&d, (uint8_t *)"hello", 5, 1, 0};
    int r = -1;
    cr_assert_eq(weft_runtime_run_coro(rt, write_str, &w, NULL, &r), 0);
    cr_expect_eq(r, 0);
    cr_assert_eq(weft_runtime_run_coro(rt, read_now, &o, NULL, &r), 0);
    cr_expect_eq(r, 5);
    cr_expect_eq(memcmp(buf, "hello", 5), 0);
    duo_close(&d);
    cr_expect_eq(wt_finish(rt), 0);
}

/* ---- write_all ------------------------------------------------------------------------------ */

#define BIG ((size_t)48 << 20)

static int cancel_writer(void *arg)
{
    op_t *o = arg;
    size_t done = 0;
    int rc = weft_tcp_write_all(o->d->a, o->buf, o->len, WEFT_FOREVER, &done);
    atomic_store(&o->done, done);
    atomic_store(&o->rc, rc);
    return 0;
}

typedef struct rest {
    duo_t *d;
    uint8_t *buf;
    size_t from;
    _Atomic int wrc, rrc;
} rest_t;

static int rest_writer(void *arg)
{
    rest_t *r = arg;
    size_t done = 0;
    atomic_store(&r->wrc, weft_tcp_write_all(r->d->a, r->buf + r->from, BIG - r->from,
                                             weft_now() + WAIT_NS, &done));
    return 0;
}

/* Read all BIG bytes and check the pattern, then expect nothing more. */
static int rest_main(void *arg)
{
    rest_t *r = arg;
    weft_task_t *h;
    weft_spawn_coro(weft_runtime_current(), rest_writer, r, NULL, &h);
    uint8_t *in = malloc(1 << 20);
    size_t got = 0;
    int rc = 0;
    while (got < BIG && rc == 0) {
        size_t want = BIG - got < (1u << 20) ? BIG - got : (1u << 20);
        int n = weft_tcp_read(r->d->b, in, want, weft_now() + WAIT_NS);
        if (n <= 0)
            rc = n ? n : -EPIPE;
        else if (nt_check(in, (size_t)n, 5, got) != (size_t)n)
            rc = -EILSEQ;
        else
            got += (size_t)n;
    }
    weft_join(h, NULL);
    /* Nothing doubled: no byte beyond BIG. */
    if (rc == 0 && weft_tcp_read(r->d->b, in, 1, weft_now() + 50 * WT_MS) != -ETIMEDOUT)
        rc = -E2BIG;
    free(in);
    atomic_store(&r->rrc, rc);
    return 0;
}

Test(net_cancel, write_all_cancelled_reports_done, .timeout = 120)
{
    weft_runtime_t *rt = wt_runtime(2);
    duo_t d;
    duo(rt, &d);
    uint8_t *big = malloc(BIG);
    nt_fill(big, BIG, 5, 0);
    op_t o = {&d, big, BIG, 1, 0};
    weft_task_t *h;
    cr_assert_eq(weft_spawn_coro(rt, cancel_writer, &o, NULL, &h), 0);
    cr_assert(wt_wait_until(held, d.a, WAIT_NS));
    wt_wait_suspended(h); /* the buffers are full and it waits */
    cr_expect_eq(weft_task_cancel(h), 0);
    cr_expect_eq(weft_task_join_wait(h, weft_now() + WAIT_NS, NULL), -ECANCELED);
    cr_expect_eq(atomic_load(&o.rc), -ECANCELED);
    size_t done = atomic_load(&o.done);
    cr_expect_lt(done, BIG, "the writer was stopped by the full buffers (%zu)", done);
    /* Write the rest from *done on: the reader gets every byte once. */
    rest_t r = {&d, big, done, 1, 1};
    cr_assert_eq(weft_runtime_run_coro(rt, rest_main, &r, NULL, NULL), 0);
    cr_expect_eq(atomic_load(&r.wrc), 0);
    cr_expect_eq(atomic_load(&r.rrc), 0, "%d", atomic_load(&r.rrc));
    free(big);
    duo_close(&d);
    cr_expect_eq(wt_finish(rt), 0);
}

/* ---- stackless: the task is cancelled while its read future waits --------------------------- */

Test(net_cancel, stackless_read_dropped, .timeout = 60)
{
    weft_runtime_t *rt = wt_runtime(2);
    duo_t d;
    duo(rt, &d);
    static uint8_t buf[16];
    weft_tcp_read_t f;
    cr_assert_eq(weft_tcp_read_init(&f, d.b, buf, sizeof buf, WEFT_FOREVER), 0);
    weft_task_t *h;
    cr_assert_eq(weft_spawn(rt, &weft_tcp_read_vtable, &f, sizeof f, &h), 0);
    wt_wait_suspended(h);
    cr_expect_eq(weft_task_cancel(h), 0);
    cr_expect_eq(weft_task_join_wait(h, weft_now() + WAIT_NS, NULL), -ECANCELED);
    cr_expect_eq(weft__tcp_stream_refs(d.b), 1, "the drop released the stream");
    op_t w = {&d, (uint8_t *)"abc", 3, 1, 0};
    int r = -1;
    cr_assert_eq(weft_runtime_run_coro(rt, write_str, &w, NULL, &r), 0);
    op_t rd = {&d, buf, sizeof buf, 1, 0};
    cr_assert_eq(weft_runtime_run_coro(rt, read_now, &rd, NULL, &r), 0);
    cr_expect_eq(r, 3);
    duo_close(&d);
    cr_expect_eq(wt_finish(rt), 0);
}

/* ---- deadlines ------------------------------------------------------------------------------ */

typedef struct dl {
    duo_t *d;
    int read_rc, past_rc, after_rc, exact_rc, accept_rc, accept_past_rc;
    size_t exact_done;
} dl_t;

static int deadlines(void *arg)
{
    dl_t *x = arg;
    uint8_t buf[8];
    x->read_rc = weft_tcp_read(x->d->b, buf, sizeof buf, weft_now() + 30 * WT_MS);
    /* A deadline in the past: one non-blocking attempt. */
    x->past_rc = weft_tcp_read(x->d->b, buf, sizeof buf, weft_now() - 1);
    size_t done;
    weft_tcp_write_all(x->d->a, "xyz", 3, WEFT_FOREVER, &done);
    weft_sleep_for(10 * WT_MS);
    /* Data waiting: a past deadline still gets it. */
    x->after_rc = weft_tcp_read(x->d->b, buf, 2, 0);
    /* read_exact of 4 with 1 byte there: times out after 1. */
    x->exact_rc = weft_tcp_read_exact(x->d->b, buf, 4, weft_now() + 30 * WT_MS, &x->exact_done);
    weft_tcp_stream_t *s;
    x->accept_rc = weft_tcp_accept(x->d->l, &s, NULL, weft_now() + 30 * WT_MS);
    x->accept_past_rc = weft_tcp_accept(x->d->l, &s, NULL, 0);
    return 0;
}

Test(net_cancel, deadlines, .timeout = 60)
{
    weft_runtime_t *rt = wt_runtime(1);
    duo_t d;
    duo(rt, &d);
    dl_t x = {.d = &d};
    cr_assert_eq(weft_runtime_run_coro(rt, deadlines, &x, NULL, NULL), 0);
    cr_expect_eq(x.read_rc, -ETIMEDOUT);
    cr_expect_eq(x.past_rc, -ETIMEDOUT);
    cr_expect_eq(x.after_rc, 2);
    cr_expect_eq(x.exact_rc, -ETIMEDOUT);
    cr_expect_eq(x.exact_done, 1);
    cr_expect_eq(x.accept_rc, -ETIMEDOUT);
    cr_expect_eq(x.accept_past_rc, -ETIMEDOUT);
    duo_close(&d);
    cr_expect_eq(wt_finish(rt), 0);
}

/*
 * A passed deadline is one attempt even before the driver has reported
 * anything: the coroutine never suspends here, so on one worker nobody
 * polls epoll, and the fresh listener and stream have no readiness yet.
 * The connection is queued (a blocking connect returns after the
 * handshake) with 5 bytes behind it.
 */
typedef struct past {
    int accept_rc, read_rc, write_rc, empty_rc;
} past_t;

static int past_deadlines(void *arg)
{
    past_t *x = arg;
    weft_tcp_listener_t *l;
    struct sockaddr_storage addr;
    if (nt_listen(weft_runtime_current(), AF_INET, &l, &addr) != 0)
        return -1;
    int c = socket(AF_INET, SOCK_STREAM, 0);
    int rc = -1;
    if (c >= 0 && connect(c, (struct sockaddr *)&addr, sizeof(struct sockaddr_in)) == 0 &&
        send(c, "hello", 5, 0) == 5) {
        weft_tcp_stream_t *s = NULL;
        x->accept_rc = weft_tcp_accept(l, &s, NULL, 0);
        if (s) {
            char buf[8];
            x->read_rc = weft_tcp_read(s, buf, sizeof buf, 0);
            x->write_rc = weft_tcp_write(s, "x", 1, weft_now() - 1);
            x->empty_rc = weft_tcp_read(s, buf, sizeof buf, 0);
            weft_tcp_close(s);
        }
        rc = 0;
    }
    if (c >= 0)
        close(c);
    weft_tcp_listener_close(l);
    return rc;
}

Test(net_cancel, past_deadline_attempts_before_any_event, .timeout = 60)
{
    weft_runtime_t *rt = wt_runtime(1);
    past_t x = {1, 1, 1, 1};
    int result = -1;
    cr_assert_eq(weft_runtime_run_coro(rt, past_deadlines, &x, NULL, &result), 0);
    cr_assert_eq(result, 0);
    cr_expect_eq(x.accept_rc, 0, "the queued connection is taken: %d", x.accept_rc);
    cr_expect_eq(x.read_rc, 5, "the queued bytes are read: %d", x.read_rc);
    cr_expect_eq(x.write_rc, 1, "an empty send buffer takes the byte: %d", x.write_rc);
    cr_expect_eq(x.empty_rc, -ETIMEDOUT, "nothing more to read: %d", x.empty_rc);
    cr_expect_eq(wt_finish(rt), 0);
}

/*
 * A connect whose handshake finished while nobody polled the driver: the
 * deadline passes with the readiness never reported, and the last look
 * at the deadline still finds the connection (net.h: -ETIMEDOUT only if
 * it would have had to wait). The root future is the only task of a
 * one-worker runtime without a driver thread, so while it sleeps inside
 * its poll no thread runs the poller.
 */
typedef struct late_connect {
    struct sockaddr_in addr;
    weft_tcp_connect_t f;
    weft_tcp_stream_t *s;
    int first, second; /* the two polls' results */
    int64_t out;
} late_connect_t;

/* The root future's state: weft_runtime_run copies it, so it points. */
typedef struct late_connect_root {
    late_connect_t *x;
} late_connect_root_t;

static weft_poll_t late_connect_poll(void *state, weft_cx_t *cx, int64_t *out)
{
    late_connect_t *x = ((late_connect_root_t *)state)->x;
    x->first = x->second = 1;
    if (weft_tcp_connect_init(&x->f, NULL, (struct sockaddr *)&x->addr, sizeof x->addr,
                              weft_now() + 20 * WT_MS, &x->s) == 0) {
        x->first = weft_tcp_connect_vtable.poll(&x->f, cx, &x->out);
        if (x->first == WEFT_PENDING) {
            wt_sleep_ns(80 * WT_MS); /* the handshake ends, the deadline passes */
            x->second = weft_tcp_connect_vtable.poll(&x->f, cx, &x->out);
        }
        weft_tcp_connect_vtable.drop(&x->f);
    }
    *out = 0;
    return WEFT_READY;
}

static void nothing_to_drop(void *state)
{
    (void)state;
}

static const weft_future_vtable_t late_connect_vt = {late_connect_poll, nothing_to_drop,
                                                     "late_connect"};

Test(net_cancel, connect_at_its_deadline_looks_once_more, .timeout = 60)
{
    late_connect_t x = {.addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)}};
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert_geq(lfd, 0);
    socklen_t alen = sizeof x.addr;
    cr_assert_eq(bind(lfd, (struct sockaddr *)&x.addr, sizeof x.addr), 0);
    cr_assert_eq(listen(lfd, 4), 0);
    cr_assert_eq(getsockname(lfd, (struct sockaddr *)&x.addr, &alen), 0);
    /* Not wt_runtime: the *_drvthread runs would give it a driver thread,
     * which reports the handshake while the root sleeps. */
    weft_config_t cfg;
    weft_config_init(&cfg);
    cfg.workers = 1;
    weft_runtime_t *rt = NULL;
    cr_assert_eq(weft_runtime_new(&cfg, &rt), 0);
    late_connect_root_t root = {&x};
    cr_assert_eq(weft_runtime_run(rt, &late_connect_vt, &root, sizeof root, NULL), 0);
    cr_expect_eq(x.first, WEFT_PENDING, "a non-blocking connect is in progress at first");
    cr_expect_eq(x.second, WEFT_READY);
    cr_expect_eq(x.out, 0, "connected, found by the look at the deadline: %lld", (long long)x.out);
    cr_expect_not_null(x.s);
    if (x.s) {
        struct sockaddr_storage peer;
        cr_expect_eq(weft_tcp_peer_addr(x.s, &peer), 0);
        cr_expect_eq(weft_tcp_close(x.s), 0);
    }
    cr_expect_eq(wt_finish(rt), 0);
    close(lfd);
}

/* ---- accept --------------------------------------------------------------------------------- */

typedef struct acc {
    weft_tcp_listener_t *l;
    _Atomic int rc;
} acc_t;

static int cancel_acceptor(void *arg)
{
    acc_t *a = arg;
    weft_tcp_stream_t *s;
    atomic_store(&a->rc, weft_tcp_accept(a->l, &s, NULL, WEFT_FOREVER));
    return 0;
}

static bool listener_held(void *arg)
{
    return weft__tcp_listener_refs(arg) >= 2;
}

static int accept_one(void *arg)
{
    acc_t *a = arg;
    weft_tcp_stream_t *s;
    struct sockaddr_storage peer;
    int rc = weft_tcp_accept(a->l, &s, &peer, weft_now() + WAIT_NS);
    if (rc == 0) {
        rc = peer.ss_family == AF_INET ? 0 : -EAFNOSUPPORT;
        weft_tcp_close(s);
    }
    return rc;
}

Test(net_cancel, accept_cancelled_then_works, .timeout = 60)
{
    weft_runtime_t *rt = wt_runtime(2);
    weft_tcp_listener_t *l;
    struct sockaddr_storage addr;
    cr_assert_eq(nt_listen(rt, AF_INET, &l, &addr), 0);
    acc_t a = {l, 1};
    weft_task_t *h;
    cr_assert_eq(weft_spawn_coro(rt, cancel_acceptor, &a, NULL, &h), 0);
    cr_assert(wt_wait_until(listener_held, l, WAIT_NS));
    wt_wait_suspended(h);
    cr_expect_eq(weft_task_cancel(h), 0);
    cr_expect_eq(weft_task_join_wait(h, weft_now() + WAIT_NS, NULL), -ECANCELED);
    cr_expect_eq(atomic_load(&a.rc), -ECANCELED);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert_eq(connect(fd, (struct sockaddr *)&addr, sizeof(struct sockaddr_in)), 0);
    int r = -1;
    cr_assert_eq(weft_runtime_run_coro(rt, accept_one, &a, NULL, &r), 0);
    cr_expect_eq(r, 0);
    close(fd);
    cr_expect_eq(weft_tcp_listener_close(l), 0);
    cr_expect_eq(wt_finish(rt), 0);
}

/* ---- a wait that ends without an event leaves no waker behind -------------------------------- */

Test(net_cancel, ended_waits_give_their_wakers_back, .timeout = 60)
{
    weft_runtime_t *rt = wt_runtime(2);
    duo_t d;
    duo(rt, &d);
    uint8_t buf[16];
    weft_tcp_read_t rd;
    weft_tcp_accept_t ac;
    weft_tcp_stream_t *s = NULL;
    /* 0: read at its deadline, 1: read dropped, 2: accept at its deadline,
     * 3: accept dropped. One probe each: a waker left behind by one case
     * must not look like the next one's. */
    wt_probe_t probes[4];
    /* A deadline case must have registered before its 20 ms passed; on a
     * loaded machine its first poll can come later (it then ends at once,
     * holding nothing): such a case is tried again, up to 5 times. */
    for (int k = 0; k < 4; k++) {
        wt_probe_t *p = &probes[k];
        for (int attempt = 0; attempt < 5; attempt++) {
            int64_t dl = k % 2 == 0 ? weft_now() + 20 * WT_MS : WEFT_FOREVER;
            *p = (wt_probe_t){.drop_after = k % 2 == 0 ? 0 : 3};
            if (k < 2) {
                cr_assert_eq(weft_tcp_read_init(&rd, d.b, buf, sizeof buf, dl), 0);
                p->vt = &weft_tcp_read_vtable;
                p->inner = &rd;
            } else {
                cr_assert_eq(weft_tcp_accept_init(&ac, d.l, &s, NULL, dl), 0);
                p->vt = &weft_tcp_accept_vtable;
                p->inner = &ac;
            }
            wt_probe_run(rt, p);
            cr_expect_eq(p->finished, k % 2 == 0 ? 1 : 2, "case %d", k);
            if (k % 2 == 0)
                cr_expect_eq(p->v, -ETIMEDOUT, "case %d", k);
            cr_expect_eq(wt_tw_live(&p->tw), 0, "case %d: a clone is still held", k);
            if (atomic_load(&p->tw.clones) >= 1)
                break;
        }
        cr_expect_geq(atomic_load(&p->tw.clones), 1, "case %d registered", k);
    }
    cr_expect_null(s);
    /* Both still work. */
    op_t w = {&d, (uint8_t *)"abc", 3, 1, 0};
    int r = -1;
    cr_assert_eq(weft_runtime_run_coro(rt, write_str, &w, NULL, &r), 0);
    op_t o = {&d, buf, sizeof buf, 1, 0};
    cr_assert_eq(weft_runtime_run_coro(rt, read_now, &o, NULL, &r), 0);
    cr_expect_eq(r, 3);
    cr_expect_eq(weft__tcp_stream_refs(d.b), 1);
    cr_expect_eq(weft__tcp_listener_refs(d.l), 1);
    duo_close(&d);
    cr_expect_eq(wt_finish(rt), 0);
}

/* ---- a second operation on a side is refused ------------------------------------------------ */

typedef struct busy {
    duo_t *d;
    int read_rc, exact_rc, write_rc, accept_rc, unpolled_rc;
} busy_t;

/* Runs while another task's read (on d->b) and accept (on d->l) wait. */
static int busy_probe(void *arg)
{
    busy_t *x = arg;
    uint8_t buf[8];
    size_t done = 0;
    weft_tcp_stream_t *s = NULL;
    x->read_rc = weft_tcp_read(x->d->b, buf, sizeof buf, weft_now() + WAIT_NS);
    x->exact_rc = weft_tcp_read_exact(x->d->b, buf, 4, weft_now() + WAIT_NS, &done);
    /* The other side is free: b's write side. */
    x->write_rc = weft_tcp_write_all(x->d->b, "w", 1, weft_now() + WAIT_NS, &done);
    x->accept_rc = weft_tcp_accept(x->d->l, &s, NULL, weft_now() + WAIT_NS);
    return 0;
}

Test(net_cancel, a_second_operation_on_a_side_is_busy, .timeout = 60)
{
    weft_runtime_t *rt = wt_runtime(2);
    duo_t d;
    duo(rt, &d);
    uint8_t buf[16];
    op_t o = {&d, buf, sizeof buf, 1, 0};
    acc_t a = {d.l, 1};
    weft_task_t *hr, *ha;
    /* A future that was initialised but never polled holds nothing. */
    weft_tcp_read_t idle;
    cr_assert_eq(weft_tcp_read_init(&idle, d.b, buf, sizeof buf, WEFT_FOREVER), 0);
    cr_assert_eq(weft_spawn_coro(rt, cancel_reader, &o, NULL, &hr), 0);
    cr_assert_eq(weft_spawn_coro(rt, cancel_acceptor, &a, NULL, &ha), 0);
    wt_wait_suspended(hr);
    wt_wait_suspended(ha);
    busy_t x = {&d, 1, 1, 1, 1, 1};
    int r = -1;
    cr_assert_eq(weft_runtime_run_coro(rt, busy_probe, &x, NULL, &r), 0);
    cr_expect_eq(x.read_rc, -EBUSY, "read beside a waiting read: %d", x.read_rc);
    cr_expect_eq(x.exact_rc, -EBUSY, "read_exact beside a waiting read: %d", x.exact_rc);
    cr_expect_eq(x.write_rc, 0, "the write side is free: %d", x.write_rc);
    cr_expect_eq(x.accept_rc, -EBUSY, "accept beside a waiting accept: %d", x.accept_rc);
    /* The first operations were not disturbed: both still wait. */
    cr_expect_not(weft_task_is_finished(hr));
    cr_expect_not(weft_task_is_finished(ha));
    /* Cancelled, they give their sides back: the same calls now work. */
    cr_expect_eq(weft_task_cancel(hr), 0);
    cr_expect_eq(weft_task_cancel(ha), 0);
    cr_expect_eq(weft_task_join_wait(hr, weft_now() + WAIT_NS, NULL), -ECANCELED);
    cr_expect_eq(weft_task_join_wait(ha, weft_now() + WAIT_NS, NULL), -ECANCELED);
    op_t w = {&d, (uint8_t *)"abc", 3, 1, 0};
    cr_assert_eq(weft_runtime_run_coro(rt, write_str, &w, NULL, &r), 0);
    op_t rd = {&d, buf, sizeof buf, 1, 0};
    cr_assert_eq(weft_runtime_run_coro(rt, read_now, &rd, NULL, &r), 0);
    cr_expect_eq(r, 3);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert_eq(connect(fd, (struct sockaddr *)&d.addr, sizeof(struct sockaddr_in)), 0);
    r = -1;
    cr_assert_eq(weft_runtime_run_coro(rt, accept_one, &a, NULL, &r), 0);
    cr_expect_eq(r, 0, "accept after the first one was cancelled: %d", r);
    close(fd);
    weft_tcp_read_vtable.drop(&idle);
    cr_expect_eq(weft__tcp_stream_refs(d.b), 1);
    duo_close(&d);
    cr_expect_eq(wt_finish(rt), 0);
}

/* Shutdown cancels everything: tasks blocked in every kind of wait end, and
 * the objects they held are released by their drops. */
Test(net_cancel, runtime_shutdown_with_waiters, .timeout = 60)
{
    weft_runtime_t *rt = wt_runtime(2);
    duo_t d;
    duo(rt, &d);
    uint8_t buf[16];
    op_t o = {&d, buf, sizeof buf, 1, 0};
    acc_t a = {d.l, 1};
    weft_task_t *h1, *h2;
    cr_assert_eq(weft_spawn_coro(rt, cancel_reader, &o, NULL, &h1), 0);
    cr_assert_eq(weft_spawn_coro(rt, cancel_acceptor, &a, NULL, &h2), 0);
    cr_assert(wt_wait_until(held, d.b, WAIT_NS));
    cr_assert(wt_wait_until(listener_held, d.l, WAIT_NS));
    cr_expect_eq(weft_runtime_shutdown(rt, weft_now() + WAIT_NS), 0);
    cr_expect_eq(weft_task_join_wait(h1, weft_now() + WAIT_NS, NULL), -ECANCELED);
    cr_expect_eq(weft_task_join_wait(h2, weft_now() + WAIT_NS, NULL), -ECANCELED);
    cr_expect_eq(weft__tcp_stream_refs(d.b), 1);
    cr_expect_eq(weft__tcp_listener_refs(d.l), 1);
    duo_close(&d);
    cr_expect_eq(weft_runtime_free(rt), 0);
}

/* A coroutine blocked in a read that shutdown abandons (the only worker is
 * held past the deadline, so it never sees the cancel): the read is dropped
 * with its stack, giving back its stream reference and its side. */
Test(net_cancel, runtime_shutdown_abandoning_a_reader, .timeout = 60)
{
    weft_runtime_t *rt = wt_runtime(1);
    duo_t d;
    duo(rt, &d);
    uint8_t buf[16];
    op_t o = {&d, buf, sizeof buf, 1, 0};
    cr_assert_eq(weft_spawn_coro(rt, cancel_reader, &o, NULL, NULL), 0);
    cr_assert(wt_wait_until(held, d.b, WAIT_NS));
    held_t blocker;
    cr_expect_eq(shutdown_past_held_worker(rt, &blocker), 2, "the reader and the blocker");
    cr_expect_eq(atomic_load(&o.rc), 1, "the reader never came back from its read");
    cr_expect_eq(weft__tcp_stream_refs(d.b), 1, "the abandoned read gave its reference back");
    cr_expect_eq(weft_task_detach(blocker.h), 0);
    duo_close(&d);
    cr_expect_eq(weft_runtime_free(rt), 0);
}

/*
 * io/forget.c - a readiness wait that ends without the fd's event gives
 * its waker back: after a deadline, after the future is dropped while it
 * waits, and after a wait on both directions that one of them ended.
 * Before weft_io_forget the fd's slot kept a clone of the waker (and so
 * the task's memory) until the fd's next event or its deregistration.
 * The futures run under common/probe.h, whose counting waker shows every
 * clone that is still alive.
 *
 * Taking back must never strand another wait of the same task: two waits
 * on one fd and direction in one task share a registration, and a wait
 * through a handle gone stale must leave the slot's next registration
 * (here the same task's) alone.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/probe.h"
#include "io/iot.h"
#include "common/suspended.h"
#include "task/task.h"

#define WAIT_NS (10 * WT_SEC)

Test(io_forget, deadline_gives_the_waker_back, .timeout = 30)
{
    weft_runtime_t *rt = wt_runtime(1);
    int sv[2];
    nb_pair(sv);
    weft_io_t io;
    cr_assert_eq(weft_io_register(rt, sv[0], &io), 0);
    weft_io_wait_t w;
    wt_probe_t p;
    /* The wait must have registered (slot and timer) before its deadline
     * passed; on a loaded machine its first poll can come after the 20 ms
     * (then it ends at once, holding nothing): try again, up to 5 times. */
    for (int attempt = 0; attempt < 5; attempt++) {
        cr_assert_eq(weft_io_wait_init(&w, io, WEFT_IO_READABLE, weft_now() + 20 * WT_MS), 0);
        p = (wt_probe_t){.vt = &weft_io_wait_vtable, .inner = &w};
        wt_probe_run(rt, &p);
        cr_expect_eq(p.finished, 1);
        cr_expect_eq(p.v, -ETIMEDOUT);
        cr_expect_eq(wt_tw_live(&p.tw), 0, "a clone is still held");
        if (atomic_load(&p.tw.clones) >= 2)
            break;
    }
    cr_expect_geq(atomic_load(&p.tw.clones), 2, "the slot and the timer held clones");
    /* The fd is still watched: an event is reported. Nothing of ours is
     * in the slot, so deregistration (which wakes what it finds) wakes
     * nobody. */
    cr_assert_eq(write(sv[1], "x", 1), 1);
    cr_expect(wt_wait_until(readable, &io, WAIT_NS));
    int wakes = atomic_load(&p.tw.wakes) + atomic_load(&p.tw.wake_refs);
    cr_expect_eq(weft_io_deregister(io), 0);
    cr_expect_eq(atomic_load(&p.tw.wakes) + atomic_load(&p.tw.wake_refs), wakes);
    close(sv[0]);
    close(sv[1]);
    cr_expect_eq(wt_finish(rt), 0);
}

Test(io_forget, drop_gives_the_waker_back, .timeout = 30)
{
    io_fix_t fx = io_fix_open(2);
    weft_runtime_t *rt = fx.rt;
    weft_io_t io = fx.io;
    weft_io_wait_t w;
    cr_assert_eq(weft_io_wait_init(&w, io, WEFT_IO_READABLE, WEFT_FOREVER), 0);
    wt_probe_t p = {.vt = &weft_io_wait_vtable, .inner = &w, .drop_after = 3};
    wt_probe_run(rt, &p);
    cr_expect_eq(p.finished, 2);
    cr_expect_geq(atomic_load(&p.tw.clones), 1);
    cr_expect_eq(wt_tw_live(&p.tw), 0, "a clone is still held");
    io_fix_close(&fx);
}

static bool registered_twice(void *arg)
{
    return atomic_load(&((wt_probe_t *)arg)->tw.clones) >= 2;
}

/* A wait on both directions that readability ends leaves its write
 * waker registered unless it takes it back. */
Test(io_forget, both_directions_one_ready, .timeout = 30)
{
    io_fix_t fx = io_fix_open(1);
    weft_runtime_t *rt = fx.rt;
    int *sv = fx.sv;
    weft_io_t io = fx.io;
    cr_assert(make_unwritable(io, sv[0]));
    weft_io_wait_t w;
    cr_assert_eq(weft_io_wait_init(&w, io, WEFT_IO_READABLE | WEFT_IO_WRITABLE, WEFT_FOREVER), 0);
    wt_probe_t p = {.vt = &weft_io_wait_vtable, .inner = &w, .drop_after = 3};
    /* Three polls register both directions and then give up... */
    wt_probe_run(rt, &p);
    cr_expect_eq(p.finished, 2);
    cr_expect_eq(wt_tw_live(&p.tw), 0);
    /* ... and a wait that readability ends. */
    cr_assert_eq(weft_io_wait_init(&w, io, WEFT_IO_READABLE | WEFT_IO_WRITABLE, WEFT_FOREVER), 0);
    wt_probe_t q = {.vt = &weft_io_wait_vtable, .inner = &w};
    weft_task_t *h;
    wt_probe_t *qp = &q;
    cr_assert_eq(weft_spawn(rt, &wt_probe_vt, &qp, sizeof qp, &h), 0);
    /* Write only once the wait has registered both directions. */
    cr_assert(wt_wait_until(registered_twice, &q, WAIT_NS));
    cr_assert_eq(write(sv[1], "x", 1), 1);
    cr_assert_eq(weft_task_join_wait(h, weft_now() + WAIT_NS, NULL), 0);
    cr_expect_eq(q.finished, 1);
    cr_expect(q.v > 0 && WEFT_IO_MASK(q.v) == WEFT_IO_READABLE, "snapshot %lld", (long long)q.v);
    cr_expect_eq(wt_tw_live(&q.tw), 0, "the write waker is still held");
    io_fix_close(&fx);
}

/* One note, two polls with different interests (an adapter that waited
 * to write, then to read): the note keeps both registrations, so forget
 * takes both back. It used to be overwritten by the second poll, which
 * left the write waker in its slot (found by review). */
Test(io_forget, a_note_keeps_every_direction_it_registered, .timeout = 30)
{
    io_fix_t fx = io_fix_open(1);
    int *sv = fx.sv;
    weft_io_t io = fx.io;
    cr_assert(make_unwritable(io, sv[0]));
    wt_thread_waker_t tw;
    memset(&tw, 0, sizeof tw);
    weft_cx_t cx;
    memset(&cx, 0, sizeof cx);
    cx.waker_ = wt_thread_waker(&tw);
    weft_io_waiter_t wt = WEFT_IO_WAITER_INIT;
    cr_assert_eq(weft_io_poll_wait(io, WEFT_IO_WRITABLE, &cx, &wt), 0);
    cr_assert_eq(weft_io_poll_wait(io, WEFT_IO_READABLE, &cx, &wt), 0);
    cr_expect_eq(wt.dir_, WEFT_IO_READABLE | WEFT_IO_WRITABLE);
    cr_expect_eq(wt_tw_live(&tw), 2, "one clone per slot");
    weft_io_forget(io, &wt);
    cr_expect_eq(wt.dir_, 0u);
    cr_expect_eq(wt_tw_live(&tw), 0, "a clone is still held");
    io_fix_close(&fx);
}

/* The note is empty after an event: forgetting then touches nothing, and
 * a stale or null handle is harmless. */
Test(io_forget, forget_edge_cases, .timeout = 30)
{
    weft_io_waiter_t wt = WEFT_IO_WAITER_INIT;
    weft_io_forget((weft_io_t){NULL, 0}, &wt);
    weft_io_forget((weft_io_t){NULL, 0}, NULL);
    wt.dir_ = WEFT_IO_READABLE;
    weft_io_forget((weft_io_t){NULL, 0}, &wt);
    cr_expect_eq(wt.dir_, 0u);
    weft_io_waiter_saw(NULL, 1);
    wt.dir_ = WEFT_IO_READABLE | WEFT_IO_WRITABLE;
    weft_io_waiter_saw(&wt, -EINVAL);
    cr_expect_eq(wt.dir_, WEFT_IO_READABLE | WEFT_IO_WRITABLE, "bad input is not readiness");
    weft_io_waiter_saw(&wt, (int)WEFT_IO_READABLE);
    cr_expect_eq(wt.dir_, WEFT_IO_WRITABLE);
    weft_io_waiter_saw(&wt, -EBADF);
    cr_expect_eq(wt.dir_, 0u, "deregistration took every waker");
    cr_expect_eq(weft_io_poll_wait((weft_io_t){NULL, 0}, WEFT_IO_READABLE, NULL, &wt), -EINVAL);
}

/* ---- the same task, two waits ------------------------------------------------------------- */

/* Y (no deadline) and X (a short one) wait for the same fd to become
 * readable in one task, polled in that order with the task's own waker:
 * they share one registration. X's deadline must not take it from Y. */
typedef struct two_waits {
    weft_io_wait_t x, y;
    _Atomic bool x_done; /* read by the test thread */
} two_waits_t;

static weft_poll_t two_waits_poll(void *st, weft_cx_t *cx, int64_t *out)
{
    two_waits_t *t = *(two_waits_t **)st;
    int64_t v;
    if (weft_io_wait_vtable.poll(&t->y, cx, &v) == WEFT_READY) {
        weft_io_wait_vtable.drop(&t->y);
        if (!t->x_done)
            weft_io_wait_vtable.drop(&t->x);
        *out = v;
        return WEFT_READY;
    }
    if (!t->x_done && weft_io_wait_vtable.poll(&t->x, cx, &v) == WEFT_READY) {
        weft_io_wait_vtable.drop(&t->x);
        atomic_store(&t->x_done, v == -ETIMEDOUT);
    }
    return WEFT_PENDING;
}

static const weft_future_vtable_t two_waits_vt = {two_waits_poll, NULL, "two_waits"};

static bool x_done(void *arg)
{
    return atomic_load(&((two_waits_t *)arg)->x_done);
}

Test(io_forget, a_deadline_leaves_a_sibling_wait_registered, .timeout = 30)
{
    io_fix_t fx = io_fix_open(1);
    weft_runtime_t *rt = fx.rt;
    int *sv = fx.sv;
    weft_io_t io = fx.io;
    static two_waits_t t;
    memset(&t, 0, sizeof t);
    cr_assert_eq(weft_io_wait_init(&t.y, io, WEFT_IO_READABLE, WEFT_FOREVER), 0);
    cr_assert_eq(weft_io_wait_init(&t.x, io, WEFT_IO_READABLE, weft_now() + 20 * WT_MS), 0);
    two_waits_t *tp = &t;
    weft_task_t *h;
    cr_assert_eq(weft_spawn(rt, &two_waits_vt, &tp, sizeof tp, &h), 0);
    cr_assert(wt_wait_until(x_done, &t, WAIT_NS), "X never timed out");
    wt_wait_suspended(h);
    cr_assert_eq(write(sv[1], "x", 1), 1);
    int64_t out = 0;
    cr_expect_eq(weft_task_join_wait(h, weft_now() + WAIT_NS, &out), 0, "Y was never woken");
    cr_expect(out > 0 && (WEFT_IO_MASK(out) & WEFT_IO_READABLE), "snapshot %lld", (long long)out);
    io_fix_close(&fx);
}

/* The task waits X on io1, then (as after closing one connection and
 * taking the next) deregisters io1, registers another fd, which gets the
 * same slot, waits Y on it, and only then drops X. X's handle is stale:
 * its forget must leave Y's registration (the same task's waker) alone. */
typedef struct reuse {
    weft_runtime_t *rt;
    int fd2;
    weft_io_t io1, io2;
    weft_io_wait_t x, y;
    _Atomic int step; /* read by the test thread */
    int polls;
    bool same_slot;
} reuse_t;

static weft_poll_t reuse_poll(void *st, weft_cx_t *cx, int64_t *out)
{
    reuse_t *r = *(reuse_t **)st;
    int64_t v;
    r->polls++;
    if (r->step == 0) {
        if (weft_io_wait_vtable.poll(&r->x, cx, &v) == WEFT_READY) {
            *out = -EPROTO; /* nothing was written to fd1 */
            return WEFT_READY;
        }
        (void)weft_io_deregister(r->io1); /* wakes this task: polled again */
        if (weft_io_register(r->rt, r->fd2, &r->io2) != 0) {
            *out = -ENOMEM;
            return WEFT_READY;
        }
        r->same_slot = r->io2.src_ == r->io1.src_;
        (void)weft_io_wait_init(&r->y, r->io2, WEFT_IO_READABLE, WEFT_FOREVER);
        r->step = 1;
    }
    if (weft_io_wait_vtable.poll(&r->y, cx, &v) == WEFT_READY) {
        weft_io_wait_vtable.drop(&r->y);
        if (r->step == 1)
            weft_io_wait_vtable.drop(&r->x);
        *out = v;
        return WEFT_READY;
    }
    if (r->step == 1 && r->polls >= 2) {
        weft_io_wait_vtable.drop(&r->x); /* after Y registered */
        r->step = 2;
    }
    return WEFT_PENDING;
}

static const weft_future_vtable_t reuse_vt = {reuse_poll, NULL, "reuse"};

static bool reuse_dropped(void *arg)
{
    return atomic_load(&((reuse_t *)arg)->step) == 2;
}

Test(io_forget, a_stale_wait_leaves_the_slots_next_registration_alone, .timeout = 30)
{
    weft_runtime_t *rt = wt_runtime(1);
    int a[2], b[2];
    nb_pair(a);
    nb_pair(b);
    static reuse_t r;
    memset(&r, 0, sizeof r);
    r.rt = rt;
    r.fd2 = b[0];
    cr_assert_eq(weft_io_register(rt, a[0], &r.io1), 0);
    cr_assert_eq(weft_io_wait_init(&r.x, r.io1, WEFT_IO_READABLE, WEFT_FOREVER), 0);
    reuse_t *rp = &r;
    weft_task_t *h;
    cr_assert_eq(weft_spawn(rt, &reuse_vt, &rp, sizeof rp, &h), 0);
    cr_assert(wt_wait_until(reuse_dropped, &r, WAIT_NS), "the task never dropped X");
    wt_wait_suspended(h);
    cr_expect(r.same_slot, "the free list should hand the slot back at once");
    cr_assert_eq(write(b[1], "x", 1), 1);
    int64_t out = 0;
    cr_expect_eq(weft_task_join_wait(h, weft_now() + WAIT_NS, &out), 0, "Y was never woken");
    cr_expect(out > 0 && (WEFT_IO_MASK(out) & WEFT_IO_READABLE), "snapshot %lld", (long long)out);
    cr_expect_eq(weft_io_deregister(r.io2), 0);
    close(a[0]);
    close(a[1]);
    close(b[0]);
    close(b[1]);
    cr_expect_eq(wt_finish(rt), 0);
}

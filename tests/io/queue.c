/*
 * io/queue.c - edge cases of the fd's queue of waiters (src/io/source.c,
 * "More than one waiter"), written by a review that found both:
 * - a waiter queued before others that re-queue at once must still be
 *   woken by the event (a budget counted in wakes let re-queuing readers
 *   use up the share of an older writer, which then slept for good while
 *   its direction was set);
 * - a poll that finds its fd ready after registering takes back its queue
 *   entry for the directions it asked for only: one note waiting to read
 *   (queued) and then to write kept no read wait, and slept through data.
 * The waiters here are plain wakers (no task) polled by hand: hw_t counts
 * its wakes and can stand in for a reader on another thread that finds
 * nothing, clears and waits again from inside the wake.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/wt.h"
#include "io/iot.h"

#define WAIT_NS (10 * WT_SEC)

/* A waker with a hook: counts; on wake, optionally "re-polls" like a reader
 * on another thread that found EAGAIN, cleared, and waited again. */
typedef struct hw {
    _Atomic int wakes, wake_refs, clones;
    weft_io_t io;
    weft_io_waiter_t wt;
    weft_cx_t cx;
    unsigned interest;
    bool relink;
    /* clone hook: run once when armed */
    void (*on_clone)(struct hw *);
} hw_t;

static void hw_clone(const weft_waker_t *src, weft_waker_t *dst)
{
    hw_t *h = src->data;
    atomic_fetch_add(&h->clones, 1);
    *dst = *src;
    if (h->on_clone) {
        void (*f)(hw_t *) = h->on_clone;
        h->on_clone = NULL;
        f(h);
    }
}
static void hw_wake_common(hw_t *h)
{
    if (h->relink) {
        int snap = weft_io_ready(h->io, h->interest);
        if (snap > 0)
            weft_io_clear(h->io, snap);
        (void)weft_io_poll_wait(h->io, h->interest, &h->cx, &h->wt);
    }
}
static void hw_wake(weft_waker_t *w)
{
    hw_t *h = w->data;
    atomic_fetch_add(&h->wakes, 1);
    hw_wake_common(h);
}
static void hw_wake_by_ref(const weft_waker_t *w)
{
    hw_t *h = w->data;
    atomic_fetch_add(&h->wake_refs, 1);
}
static void hw_drop(weft_waker_t *w)
{
    (void)w;
}
static const weft_waker_vtable_t hw_vt = {hw_clone, hw_wake, hw_wake_by_ref, hw_drop};

static void hw_init(hw_t *h, weft_io_t io, unsigned interest)
{
    memset(h, 0, sizeof *h);
    h->io = io;
    h->interest = interest;
    h->wt = (weft_io_waiter_t)WEFT_IO_WAITER_INIT;
    h->cx.waker_ = (weft_waker_t){&hw_vt, h};
}

static int hw_poll(hw_t *h)
{
    return weft_io_poll_wait(h->io, h->interest, &h->cx, &h->wt);
}

#define NR 40

/*
 * The oldest queued waiter waits for WR; 40 newer ones wait for RD and
 * queue again from inside their wake. One event sets both directions.
 */
Test(io_queue, requeuing_waiters_do_not_starve_an_older_one, .timeout = 60)
{
    io_fix_t fx = io_fix_open(1);
    weft_runtime_t *rt = fx.rt;
    int *sv = fx.sv;
    weft_io_t io = fx.io;
    cr_assert(make_unwritable(io, sv[0]));

    static hw_t hr, hwr, w, r[NR];
    hw_init(&hr, io, WEFT_IO_READABLE);
    hw_init(&hwr, io, WEFT_IO_WRITABLE);
    hw_init(&w, io, WEFT_IO_WRITABLE);
    cr_assert_eq(hw_poll(&hr), 0);  /* RD slot */
    cr_assert_eq(hw_poll(&hwr), 0); /* WR slot */
    cr_assert_eq(hw_poll(&w), 0);   /* queued, WR: the oldest entry */
    cr_assert_eq(w.wt.qdir_, WEFT_IO_WRITABLE);
    for (int i = 0; i < NR; i++) {
        hw_init(&r[i], io, WEFT_IO_READABLE);
        r[i].relink = true;
        cr_assert_eq(hw_poll(&r[i]), 0);
        cr_assert_eq(r[i].wt.qdir_, WEFT_IO_READABLE);
    }
    /* One event with both directions: keep the only worker (the poller)
     * busy while the fd becomes readable and writable. */
    wt_counts_t c = {0};
    _Atomic int started = 0, release = 0;
    wt_blocker_t b = {.c = &c, .started = &started, .release = &release};
    weft_task_t *bh;
    cr_assert_eq(weft_spawn(rt, &wt_blocker_vt, &b, sizeof b, &bh), 0);
    cr_assert(wt_wait_int_ge(&started, 1, WAIT_NS));
    char buf[65536];
    while (read(sv[1], buf, sizeof buf) > 0) {
    }
    cr_assert_eq(write(sv[1], "x", 1), 1);
    atomic_store(&release, 1);
    cr_assert_eq(weft_task_join_wait(bh, weft_now() + WAIT_NS, NULL), 0);
    cr_assert(wt_wait_until(writable, &io, WAIT_NS));
    cr_expect(wt_wait_int_ge(&w.wakes, 1, WAIT_NS),
              "the WR waiter sleeps while WR is set: lost wake-up");
    cr_expect(weft_io_ready(io, WEFT_IO_WRITABLE) > 0);
    for (int i = 0; i < NR; i++)
        weft_io_forget(io, &r[i].wt);
    weft_io_forget(io, &w.wt);
    weft_io_forget(io, &hr.wt);
    weft_io_forget(io, &hwr.wt);
    io_fix_close(&fx);
}

/* ---- the ready path of a poll drops the queue entry of another direction ---- */

static int g_sv1;
static weft_io_t g_io;

static void make_writable_and_wait(hw_t *h)
{
    (void)h;
    char buf[65536];
    while (read(g_sv1, buf, sizeof buf) > 0) {
    }
    /* Wait until the driver applied the event (it finds the WR slot
     * REGISTERING and leaves the wake to us). */
    int64_t end = weft_now() + WAIT_NS;
    while (weft_io_ready(g_io, WEFT_IO_WRITABLE) <= 0 && weft_now() < end)
        wt_sleep_ns(100000);
}

static bool woken(void *arg)
{
    hw_t *h = arg;
    return atomic_load(&h->wakes) + atomic_load(&h->wake_refs) > 0;
}

static void ready_path_case(bool queued)
{
    io_fix_t fx = io_fix_open(1);
    int *sv = fx.sv;
    weft_io_t io = fx.io;
    cr_assert(make_unwritable(io, sv[0]));
    g_sv1 = sv[1];
    g_io = io;

    static hw_t u, f;
    hw_init(&u, io, WEFT_IO_READABLE);
    hw_init(&f, io, WEFT_IO_READABLE);
    if (queued)
        cr_assert_eq(hw_poll(&u), 0); /* another task holds the RD slot */
    /* One future, one note: wait to read, then (same poll) to write. */
    cr_assert_eq(hw_poll(&f), 0);
    f.interest = WEFT_IO_WRITABLE;
    f.on_clone = make_writable_and_wait; /* the event races the WR registration */
    int snap = hw_poll(&f);
    cr_assert(snap > 0 && (WEFT_IO_MASK(snap) & WEFT_IO_WRITABLE));
    /* The future wrote what it had and returns PENDING, still waiting for
     * RD (its earlier registration). Data arrives. */
    f.on_clone = NULL;
    atomic_store(&f.wakes, 0);
    atomic_store(&f.wake_refs, 0);
    cr_assert_eq(write(sv[1], "x", 1), 1);
    cr_assert(wt_wait_until(readable, &io, WAIT_NS));
    cr_expect(wt_wait_until(woken, &f, WAIT_NS),
              "the read wait was lost: the future sleeps while RD is set");
    weft_io_forget(io, &f.wt);
    weft_io_forget(io, &u.wt);
    io_fix_close(&fx);
}

Test(io_queue, ready_after_registering_keeps_another_directions_slot, .timeout = 60)
{
    ready_path_case(false);
}

Test(io_queue, ready_after_registering_keeps_another_directions_queue_entry, .timeout = 60)
{
    ready_path_case(true);
}

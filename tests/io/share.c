/*
 * io/share.c - several tasks waiting for the same direction of one fd.
 * The first holds the direction's slot; the others wait on the source's
 * queue (src/io/source.c, "More than one waiter"). Before the queue, a
 * second waiter displaced the first, which registered again and displaced
 * the second: two waiters kept a core busy, polling each other awake.
 *
 * Each waiter is a task running one weft_io_wait_t in its own state (so
 * that the runtime frees it when the task ends) and counting its polls.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/probe.h"
#include "io/iot.h"

#define WAIT_NS (10 * WT_SEC)
#define MAXW 8

typedef struct board {
    _Atomic int polls[MAXW];
    _Atomic int results[MAXW];
    _Atomic int done;
    _Atomic int polled; /* waiters polled at least once */
} board_t;

typedef struct waiter {
    weft_io_wait_t w;
    board_t *b;
    int idx;
    bool armed;
    weft_io_t io;
    unsigned interest;
    int64_t deadline;
} waiter_t;

static weft_poll_t waiter_poll(void *st, weft_cx_t *cx, int64_t *out)
{
    waiter_t *s = st;
    if (!s->armed) {
        weft_io_wait_init(&s->w, s->io, s->interest, s->deadline);
        s->armed = true;
    }
    if (atomic_fetch_add(&s->b->polls[s->idx], 1) == 0)
        atomic_fetch_add(&s->b->polled, 1);
    int64_t v = 0;
    if (weft_io_wait_vtable.poll(&s->w, cx, &v) == WEFT_PENDING)
        return WEFT_PENDING;
    atomic_store(&s->b->results[s->idx], (int)v);
    atomic_fetch_add(&s->b->done, 1);
    *out = v;
    return WEFT_READY;
}

static void waiter_drop(void *st)
{
    waiter_t *s = st;
    if (s->armed)
        weft_io_wait_vtable.drop(&s->w);
}

static const weft_future_vtable_t waiter_vt = {waiter_poll, waiter_drop, "share_waiter"};

static void spawn_waiter(weft_runtime_t *rt, board_t *b, int idx, weft_io_t io, unsigned interest,
                         int64_t deadline, weft_task_t **h)
{
    waiter_t s = {.b = b, .idx = idx, .io = io, .interest = interest, .deadline = deadline};
    cr_assert_eq(weft_spawn(rt, &waiter_vt, &s, sizeof s, h), 0);
}

static void join_all(weft_task_t **h, int n)
{
    for (int i = 0; i < n; i++)
        cr_assert_eq(weft_task_join_wait(h[i], weft_now() + WAIT_NS, NULL), 0);
}

/* Two waiters, one direction: both sleep until the event, both hear it. */
Test(io_share, two_waiters_sleep_and_both_wake, .timeout = 30)
{
    io_fix_t fx = io_fix_open(2);
    weft_runtime_t *rt = fx.rt;
    int *sv = fx.sv;
    weft_io_t io = fx.io;
    board_t b = {0};
    weft_task_t *h[2];
    spawn_waiter(rt, &b, 0, io, WEFT_IO_READABLE, WEFT_FOREVER, &h[0]);
    spawn_waiter(rt, &b, 1, io, WEFT_IO_READABLE, WEFT_FOREVER, &h[1]);
    cr_assert(wt_wait_int_ge(&b.polled, 2, WAIT_NS));
    /* Displacing waiters would poll thousands of times in this while. */
    wt_sleep_ns(50 * WT_MS);
    for (int i = 0; i < 2; i++)
        cr_expect_leq(atomic_load(&b.polls[i]), 3,
                      "waiter %d polled %d times while nothing happened", i,
                      atomic_load(&b.polls[i]));
    cr_expect_eq(atomic_load(&b.done), 0);
    cr_assert_eq(write(sv[1], "x", 1), 1);
    join_all(h, 2);
    for (int i = 0; i < 2; i++)
        cr_expect_eq(WEFT_IO_MASK(atomic_load(&b.results[i])), WEFT_IO_READABLE, "waiter %d: %d", i,
                     atomic_load(&b.results[i]));
    io_fix_close(&fx);
}

/* Four readers and four writers of one fd: readability wakes the readers
 * only, writability then the writers. */
Test(io_share, each_direction_wakes_its_own_waiters, .timeout = 30)
{
    io_fix_t fx = io_fix_open(2);
    weft_runtime_t *rt = fx.rt;
    int *sv = fx.sv;
    weft_io_t io = fx.io;
    cr_assert(make_unwritable(io, sv[0]));
    board_t b = {0};
    weft_task_t *h[MAXW];
    for (int i = 0; i < MAXW; i++)
        spawn_waiter(rt, &b, i, io, i < 4 ? WEFT_IO_READABLE : WEFT_IO_WRITABLE, WEFT_FOREVER,
                     &h[i]);
    cr_assert(wt_wait_int_ge(&b.polled, MAXW, WAIT_NS));
    cr_assert_eq(write(sv[1], "x", 1), 1);
    join_all(h, 4);
    cr_expect_eq(atomic_load(&b.done), 4, "a writer woke on readability");
    for (int i = 0; i < 4; i++)
        cr_expect_eq(WEFT_IO_MASK(atomic_load(&b.results[i])), WEFT_IO_READABLE, "reader %d: %d", i,
                     atomic_load(&b.results[i]));
    /* Drain the peer: sv[0] becomes writable. */
    char buf[4096];
    while (read(sv[1], buf, sizeof buf) > 0) {
    }
    join_all(h + 4, 4);
    for (int i = 4; i < MAXW; i++)
        cr_expect(WEFT_IO_MASK(atomic_load(&b.results[i])) & WEFT_IO_WRITABLE, "writer %d: %d", i,
                  atomic_load(&b.results[i]));
    io_fix_close(&fx);
}

/* Deregistration wakes the queued waiters too, with -EBADF. */
Test(io_share, deregister_wakes_every_waiter, .timeout = 30)
{
    weft_runtime_t *rt = wt_runtime(2);
    int sv[2];
    nb_pair(sv);
    weft_io_t io;
    cr_assert_eq(weft_io_register(rt, sv[0], &io), 0);
    board_t b = {0};
    weft_task_t *h[MAXW];
    for (int i = 0; i < MAXW; i++)
        spawn_waiter(rt, &b, i, io, WEFT_IO_READABLE, WEFT_FOREVER, &h[i]);
    cr_assert(wt_wait_int_ge(&b.polled, MAXW, WAIT_NS));
    cr_expect_eq(weft_io_close(io), 0);
    join_all(h, MAXW);
    for (int i = 0; i < MAXW; i++)
        cr_expect_eq(atomic_load(&b.results[i]), -EBADF, "waiter %d: %d", i,
                     atomic_load(&b.results[i]));
    close(sv[1]);
    cr_expect_eq(wt_finish(rt), 0);
}

/* A queued wait that ends by its deadline, or is dropped, unlinks itself
 * and gives its waker back; the waiter in the slot still hears the event. */
Test(io_share, a_queued_wait_that_ends_early_leaves_nothing, .timeout = 30)
{
    io_fix_t fx = io_fix_open(2);
    weft_runtime_t *rt = fx.rt;
    int *sv = fx.sv;
    weft_io_t io = fx.io;
    board_t b = {0};
    weft_task_t *h;
    spawn_waiter(rt, &b, 0, io, WEFT_IO_READABLE, WEFT_FOREVER, &h);
    cr_assert(wt_wait_int_ge(&b.polled, 1, WAIT_NS));

    weft_io_wait_t w;
    cr_assert_eq(weft_io_wait_init(&w, io, WEFT_IO_READABLE, weft_now() + 20 * WT_MS), 0);
    wt_probe_t p = {.vt = &weft_io_wait_vtable, .inner = &w};
    wt_probe_run(rt, &p);
    cr_expect_eq(p.finished, 1);
    cr_expect_eq(p.v, -ETIMEDOUT);
    cr_expect_geq(atomic_load(&p.tw.clones), 1);
    cr_expect_eq(wt_tw_live(&p.tw), 0, "a clone is still held");

    cr_assert_eq(weft_io_wait_init(&w, io, WEFT_IO_READABLE, WEFT_FOREVER), 0);
    wt_probe_t q = {.vt = &weft_io_wait_vtable, .inner = &w, .drop_after = 3};
    wt_probe_run(rt, &q);
    cr_expect_eq(q.finished, 2);
    cr_expect_geq(atomic_load(&q.tw.clones), 1);
    cr_expect_eq(wt_tw_live(&q.tw), 0, "a clone is still held");

    cr_assert_eq(write(sv[1], "x", 1), 1);
    join_all(&h, 1);
    cr_expect_eq(WEFT_IO_MASK(atomic_load(&b.results[0])), WEFT_IO_READABLE);
    cr_expect_eq(atomic_load(&b.polls[0]), 2, "the first waiter was disturbed");
    io_fix_close(&fx);
}

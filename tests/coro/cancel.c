/*
 * coro/cancel.c - cancelling coroutines: the await it is blocked in returns
 * -ECANCELED and its cleanup runs; every later await does too; a coroutine
 * cancelled before its first run never runs; one that returns before it
 * notices completes normally; shutdown cancels and waits for cleanup, and
 * abandons a coroutine that ignores the cancel past the deadline.
 */
#include <criterion/criterion.h>
#include <errno.h>

#include "common/wt.h"
#include "coro/coro.h"

#define WAIT_NS (10 * WT_SEC)

#include "common/held.h"

typedef struct blocked {
    wt_counts_t c;
    wt_flag_t never;
    _Atomic int await_rc, yield_rc, cancelled_before, cancelled_after, cleaned, started;
} blocked_t;

static void blocked_init(blocked_t *b)
{
    memset(b, 0, sizeof *b);
    wt_counts_init(&b->c);
    wt_flag_init(&b->never);
    atomic_store(&b->await_rc, 1);
    atomic_store(&b->yield_rc, 1);
}

static int blocked_coro(void *arg)
{
    blocked_t *b = arg;
    atomic_store(&b->started, 1);
    char *resource = malloc(128); /* freed by the cleanup below (ASan leak check) */
    atomic_store(&b->cancelled_before, weft_coro_cancelled());
    wt_wait_flag_t wf = {&b->c, &b->never, 0};
    int rc = weft_await(&wt_wait_flag_vt, &wf, NULL);
    atomic_store(&b->await_rc, rc);
    atomic_store(&b->cancelled_after, weft_coro_cancelled());
    atomic_store(&b->yield_rc, weft_yield()); /* level-triggered: at once */
    free(resource);
    atomic_store(&b->cleaned, 1);
    return 17;
}

Test(coro_cancel, blocked_await_returns_ecanceled, .timeout = 30)
{
    weft_runtime_t *rt = wt_runtime(2);
    blocked_t b;
    blocked_init(&b);
    weft_task_t *h;
    cr_assert_eq(weft_spawn_coro(rt, blocked_coro, &b, NULL, &h), 0);
    cr_assert(wt_wait_int_ge(&b.c.polls, 1, WAIT_NS), "never blocked");
    cr_assert_eq(weft_task_cancel(h), 0);
    int64_t v = 0;
    cr_assert_eq(weft_join(h, &v), -ECANCELED, "the join reports the cancel");
    cr_assert_eq(atomic_load(&b.cancelled_before), 0);
    cr_assert_eq(atomic_load(&b.await_rc), -ECANCELED);
    cr_assert_eq(atomic_load(&b.cancelled_after), 1);
    cr_assert_eq(atomic_load(&b.yield_rc), -ECANCELED, "later awaits fail at once");
    cr_assert_eq(atomic_load(&b.cleaned), 1, "the cleanup code ran");
    cr_assert_eq(atomic_load(&b.c.drops), 1, "the awaited future was dropped once");
    cr_assert_eq(atomic_load(&b.c.readies), 0);
    wt_flag_destroy(&b.never);
    cr_assert_eq(wt_finish(rt), 0);
}

Test(coro_cancel, before_first_run_never_runs, .timeout = 30)
{
    weft_runtime_t *rt = wt_runtime(1);
    held_t held;
    hold_worker(rt, &held);
    int64_t stacks = weft__stack_mapped();
    blocked_t b;
    blocked_init(&b);
    weft_task_t *h;
    cr_assert_eq(weft_spawn_coro(rt, blocked_coro, &b, NULL, &h), 0);
    cr_assert_eq(weft_task_cancel(h), 0);
    release_worker(&held);
    cr_assert_eq(weft_join(h, NULL), -ECANCELED);
    cr_assert_eq(atomic_load(&b.started), 0, "a coroutine cancelled before it ran never runs");
    cr_assert_eq(weft__stack_mapped(), stacks, "and never gets a stack");
    wt_flag_destroy(&b.never);
    cr_assert_eq(wt_finish(rt), 0);
}

/* Running when cancelled: finds out at its next await, or returns first. */
typedef struct busy {
    _Atomic int running, go, yield_rc;
    bool await_after;
} busy_t;

static int busy_coro(void *arg)
{
    busy_t *b = arg;
    atomic_store(&b->running, 1);
    while (!atomic_load(&b->go))
        sched_yield();
    if (b->await_after)
        atomic_store(&b->yield_rc, weft_yield());
    return 23;
}

Test(coro_cancel, while_running, .timeout = 30)
{
    weft_runtime_t *rt = wt_runtime(2);
    for (int await_after = 0; await_after < 2; await_after++) {
        busy_t b = {0, 0, 1, await_after};
        weft_task_t *h;
        cr_assert_eq(weft_spawn_coro(rt, busy_coro, &b, NULL, &h), 0);
        cr_assert(wt_wait_int_ge(&b.running, 1, WAIT_NS));
        cr_assert_eq(weft_task_cancel(h), 0);
        atomic_store(&b.go, 1);
        int64_t v = 0;
        int rc = weft_join(h, &v);
        if (await_after) {
            cr_assert_eq(atomic_load(&b.yield_rc), -ECANCELED);
            cr_assert_eq(rc, -ECANCELED, "it saw the cancel: the join reports it");
        } else {
            cr_assert_eq(rc, 0, "it returned before any await: completed normally");
            cr_assert_eq(v, 23);
        }
    }
    cr_assert_eq(wt_finish(rt), 0);
}

/* A coroutine cancelled while joining: the join returns -ECANCELED and the
 * child runs on, detached. */
typedef struct joiner {
    blocked_t child;
    _Atomic int join_rc;
} joiner_t;

static int joiner_coro(void *arg)
{
    joiner_t *j = arg;
    weft_task_t *ch;
    if (weft_spawn_coro(weft_runtime_current(), blocked_coro, &j->child, NULL, &ch) != 0)
        return -1;
    atomic_store(&j->join_rc, weft_join(ch, NULL));
    return 0;
}

Test(coro_cancel, cancelled_join_detaches_child, .timeout = 30)
{
    weft_runtime_t *rt = wt_runtime(2);
    joiner_t j;
    blocked_init(&j.child);
    atomic_init(&j.join_rc, 1);
    weft_task_t *h;
    cr_assert_eq(weft_spawn_coro(rt, joiner_coro, &j, NULL, &h), 0);
    cr_assert(wt_wait_int_ge(&j.child.c.polls, 1, WAIT_NS), "child never blocked");
    cr_assert_eq(weft_task_cancel(h), 0);
    cr_assert_eq(weft_join(h, NULL), -ECANCELED);
    cr_assert_eq(atomic_load(&j.join_rc), -ECANCELED);
    cr_assert_eq(atomic_load(&j.child.cleaned), 0, "the child was not cancelled");
    wt_flag_raise(&j.child.never);
    cr_assert(wt_wait_int_ge(&j.child.cleaned, 1, WAIT_NS), "the detached child finishes");
    cr_assert_eq(atomic_load(&j.child.await_rc), 0);
    wt_flag_destroy(&j.child.never);
    cr_assert_eq(wt_finish(rt), 0);
}

Test(coro_cancel, shutdown_runs_cleanup, .timeout = 30)
{
    weft_runtime_t *rt = wt_runtime(2);
    blocked_t b[8];
    for (int i = 0; i < 8; i++) {
        blocked_init(&b[i]);
        cr_assert_eq(weft_spawn_coro(rt, blocked_coro, &b[i], NULL, NULL), 0);
    }
    for (int i = 0; i < 8; i++)
        cr_assert(wt_wait_int_ge(&b[i].c.polls, 1, WAIT_NS));
    cr_assert_eq(weft_runtime_shutdown(rt, weft_now() + WAIT_NS), 0, "no stragglers");
    for (int i = 0; i < 8; i++) {
        cr_assert_eq(atomic_load(&b[i].await_rc), -ECANCELED);
        cr_assert_eq(atomic_load(&b[i].cleaned), 1);
        wt_flag_destroy(&b[i].never);
    }
    cr_assert_eq(weft_runtime_free(rt), 0);
}

static int stubborn_coro(void *arg)
{
    _Atomic int *spins = arg;
    for (;;) { /* ignores -ECANCELED */
        weft_yield();
        atomic_fetch_add(spins, 1);
    }
    return 0;
}

Test(coro_cancel, shutdown_abandons_stubborn, .timeout = 30)
{
    int64_t stacks = weft__stack_mapped();
    weft_runtime_t *rt = wt_runtime(2);
    _Atomic int spins = 0;
    cr_assert_eq(weft_spawn_coro(rt, stubborn_coro, &spins, NULL, NULL), 0);
    cr_assert(wt_wait_int_ge(&spins, 10, WAIT_NS));
    cr_assert_eq(weft_runtime_shutdown(rt, weft_now() + 100 * WT_MS), 1,
                 "one straggler, abandoned at the deadline");
    cr_assert_eq(weft_runtime_free(rt), 0);
    cr_assert_eq(weft__stack_mapped(), stacks, "its stack was freed");
}

/* Blocks in one await and notes whether it ever came back from it. */
static int parked_coro(void *arg)
{
    blocked_t *b = arg;
    wt_wait_flag_t wf = {&b->c, &b->never, 0};
    atomic_store(&b->await_rc, weft_await(&wt_wait_flag_vt, &wf, NULL));
    atomic_store(&b->cleaned, 1);
    return 0;
}

/* A coroutine suspended in an await that shutdown abandons (its worker is
 * held past the deadline, so it is never resumed to see the cancel): the
 * future it waits in is dropped once before its stack goes. */
Test(coro_cancel, shutdown_drops_the_abandoned_await, .timeout = 30)
{
    int64_t stacks = weft__stack_mapped();
    weft_runtime_t *rt = wt_runtime(1);
    blocked_t b;
    blocked_init(&b);
    cr_assert_eq(weft_spawn_coro(rt, parked_coro, &b, NULL, NULL), 0);
    cr_assert(wt_wait_int_ge(&b.c.polls, 1, WAIT_NS), "never blocked");
    held_t held;
    cr_assert_eq(shutdown_past_held_worker(rt, &held), 2, "the coroutine and the blocker");
    cr_assert_eq(atomic_load(&b.cleaned), 0, "the coroutine was never resumed");
    cr_assert_eq(atomic_load(&b.c.drops), 1, "its awaited future was dropped once");
    cr_assert_eq(atomic_load(&b.c.readies), 0);
    cr_assert_eq(weft_task_detach(held.h), 0);
    wt_flag_destroy(&b.never); /* drops the waker it holds, the cell's last reference */
    cr_assert_eq(weft_runtime_free(rt), 0);
    cr_assert_eq(weft__stack_mapped(), stacks, "its stack was freed");
}

/*
 * Two abandoned coroutines, one waiting on a lock that lives in the
 * other's frame: dropping the waiter's await unlinks its node from that
 * lock, which must still be mapped whichever of the two is dropped first
 * (the sweep gives the stacks back only after the last drop).
 */
typedef struct node {
    struct node *next, **pprev;
} node_t;

typedef struct frame_lock {
    node_t *head; /* waiters; the lock is always held */
} frame_lock_t;

typedef struct lock_wait {
    frame_lock_t *lk;
    node_t node;
    bool linked;
    _Atomic int *drops;
} lock_wait_t;

static weft_poll_t lock_wait_poll(void *st, weft_cx_t *cx, int64_t *out)
{
    (void)cx;
    (void)out;
    lock_wait_t *f = st;
    if (!f->linked) { /* no waker kept: the lock is never released */
        f->node.next = f->lk->head;
        f->node.pprev = &f->lk->head;
        if (f->lk->head)
            f->lk->head->pprev = &f->node.next;
        f->lk->head = &f->node;
        f->linked = true;
    }
    return WEFT_PENDING;
}

static void lock_wait_drop(void *st)
{
    lock_wait_t *f = st;
    atomic_fetch_add(f->drops, 1);
    if (f->linked) { /* writes into the lock holder's frame */
        *f->node.pprev = f->node.next;
        if (f->node.next)
            f->node.next->pprev = f->node.pprev;
        f->linked = false;
    }
}

static const weft_future_vtable_t lock_wait_vt = {lock_wait_poll, lock_wait_drop, "frame_lock"};

typedef struct lock_pair {
    _Atomic(frame_lock_t *) lk;
    _Atomic int waiting, drops;
    wt_flag_t never;
    wt_counts_t c;
} lock_pair_t;

static int lock_holder(void *arg)
{
    lock_pair_t *p = arg;
    frame_lock_t lk = {NULL};
    atomic_store(&p->lk, &lk);
    wt_wait_flag_t wf = {&p->c, &p->never, 0};
    return weft_await(&wt_wait_flag_vt, &wf, NULL); /* holds lk until cancelled */
}

static int lock_waiter(void *arg)
{
    lock_pair_t *p = arg;
    lock_wait_t f = {atomic_load(&p->lk), {NULL, NULL}, false, &p->drops};
    atomic_store(&p->waiting, 1);
    return weft_await(&lock_wait_vt, &f, NULL);
}

static bool lock_published(void *arg)
{
    return atomic_load(&((lock_pair_t *)arg)->lk) != NULL;
}

Test(coro_cancel, shutdown_drops_awaits_before_any_stack_goes, .timeout = 30)
{
    for (int order = 0; order < 2; order++) {
        int64_t stacks = weft__stack_mapped();
        weft_runtime_t *rt = wt_runtime(1);
        lock_pair_t p;
        memset(&p, 0, sizeof p);
        wt_flag_init(&p.never);
        wt_counts_init(&p.c);
        /* order 1 spawns a blocker first, so the two sit at other places in
         * the queues and the owned lists */
        held_t early;
        if (order == 1) {
            hold_worker(rt, &early);
            atomic_store(&early.release, 1);
            cr_assert_eq(weft_task_join_wait(early.h, weft_now() + WAIT_NS, NULL), 0);
        }
        cr_assert_eq(weft_spawn_coro(rt, lock_holder, &p, NULL, NULL), 0);
        cr_assert(wt_wait_until(lock_published, &p, WAIT_NS));
        cr_assert_eq(weft_spawn_coro(rt, lock_waiter, &p, NULL, NULL), 0);
        cr_assert(wt_wait_int_ge(&p.waiting, 1, WAIT_NS));
        cr_assert(wt_wait_int_ge(&p.c.polls, 1, WAIT_NS));
        held_t held;
        cr_assert_eq(shutdown_past_held_worker(rt, &held), 3, "both coroutines and the blocker");
        cr_assert_eq(atomic_load(&p.drops), 1, "the waiter's await was dropped once");
        cr_assert_eq(atomic_load(&p.c.drops), 1, "so was the holder's");
        cr_assert_eq(weft_task_detach(held.h), 0);
        wt_flag_destroy(&p.never);
        cr_assert_eq(weft_runtime_free(rt), 0);
        cr_assert_eq(weft__stack_mapped(), stacks, "both stacks were freed");
    }
}

/*
 * sched/shutdown.c - runtime shutdown with many live tasks: pending forever
 * (half with handles held, half detached), busy yielding, waiting on a
 * waker held elsewhere, and freshly spawned but never polled. Every future
 * must be dropped exactly once, every held handle must report -ECANCELED,
 * and weft_runtime_free must return 0 once the handles are given back.
 */
#include <criterion/criterion.h>

#include "common/wt.h"

#define WAIT_NS (30 * WT_SEC)

#define LIVE 100000

static void shutdown_pending(unsigned workers, int wait_first_poll)
{
    weft_runtime_t *rt = wt_runtime(workers);
    wt_counts_t c;
    wt_counts_init(&c);
    weft_task_t **h = calloc(LIVE / 2, sizeof *h);
    cr_assert_not_null(h);
    wt_pending_t p = {&c};
    for (int i = 0; i < LIVE; i++) {
        weft_task_t **hp = (i % 2 == 0) ? &h[i / 2] : NULL;
        cr_assert_eq(weft_spawn(rt, &wt_pending_vt, &p, sizeof p, hp), 0);
    }
    if (wait_first_poll)
        cr_assert(wt_wait_int_ge(&c.polls, LIVE, WAIT_NS), "not every task was polled");
    int rc = weft_runtime_shutdown(rt, weft_now() + 20 * WT_SEC);
    cr_assert_geq(rc, 0);
    cr_log_info("shutdown with %d live tasks (%u workers, %s): %d stragglers, %d polled", LIVE,
                workers, wait_first_poll ? "all polled" : "fresh", rc, atomic_load(&c.polls));
    cr_assert_eq(atomic_load(&c.drops), LIVE, "every future dropped exactly once");
    if (wait_first_poll)
        cr_assert_eq(atomic_load(&c.polls), LIVE, "cancelled tasks are not polled again");
    else
        cr_assert_leq(atomic_load(&c.polls), LIVE);
    cr_assert_eq(weft_runtime_free(rt), -EBUSY, "handles are still held");
    for (int i = 0; i < LIVE / 2; i++) {
        cr_assert_eq(weft_task_is_finished(h[i]), 1);
        int64_t out = 7;
        cr_assert_eq(weft_task_join_wait(h[i], WEFT_FOREVER, &out), -ECANCELED);
        cr_assert_eq(out, 7);
    }
    cr_assert_eq(atomic_load(&c.drops), LIVE);
    cr_assert_eq(weft_runtime_free(rt), 0);
    free(h);
}

Test(shutdown, live_pending_tasks_polled_1w, .timeout = 120)
{
    shutdown_pending(1, 1);
}

Test(shutdown, live_pending_tasks_polled_2w, .timeout = 120)
{
    shutdown_pending(2, 1);
}

Test(shutdown, live_pending_tasks_fresh_2w, .timeout = 120)
{
    /* Shut down right after spawning: most tasks are still queued. */
    shutdown_pending(2, 0);
}

/* ---- tasks busy yielding ---------------------------------------------------------- */

typedef struct forever_yield {
    wt_counts_t *c;
    weft_yield_t y;
} forever_yield_t;

static weft_poll_t forever_yield_poll(void *st, weft_cx_t *cx, int64_t *out)
{
    (void)out;
    forever_yield_t *s = st;
    atomic_fetch_add(&s->c->polls, 1);
    weft_yield_init(&s->y);
    weft_yield_poll(&s->y, cx);
    return WEFT_PENDING;
}

static const weft_future_vtable_t forever_yield_vt = {forever_yield_poll, wt_counted_drop,
                                                      "forever_yield"};

/* Wakes itself by reference every poll (the NOTIFIED-while-running path). */
static weft_poll_t forever_wake_poll(void *st, weft_cx_t *cx, int64_t *out)
{
    (void)out;
    forever_yield_t *s = st;
    atomic_fetch_add(&s->c->polls, 1);
    weft_waker_wake_by_ref(weft_cx_waker(cx));
    return WEFT_PENDING;
}

static const weft_future_vtable_t forever_wake_vt = {forever_wake_poll, wt_counted_drop,
                                                     "forever_wake"};

#define BUSY 300

static void shutdown_busy(unsigned workers)
{
    weft_runtime_t *rt = wt_runtime(workers);
    wt_counts_t c;
    wt_counts_init(&c);
    weft_task_t *h[BUSY / 3];
    forever_yield_t st = {&c, WEFT_YIELD_INIT};
    for (int i = 0; i < BUSY; i++) {
        const weft_future_vtable_t *vt = (i % 2) ? &forever_yield_vt : &forever_wake_vt;
        weft_task_t **hp = (i % 3 == 0) ? &h[i / 3] : NULL;
        cr_assert_eq(weft_spawn(rt, vt, &st, sizeof st, hp), 0);
    }
    cr_assert(wt_wait_int_ge(&c.polls, 20 * BUSY, WAIT_NS));
    int rc = weft_runtime_shutdown(rt, weft_now() + 20 * WT_SEC);
    cr_assert_geq(rc, 0);
    cr_assert_eq(atomic_load(&c.drops), BUSY);
    int polls = atomic_load(&c.polls);
    for (int i = 0; i < BUSY / 3; i++)
        cr_assert_eq(weft_task_join_wait(h[i], WEFT_FOREVER, NULL), -ECANCELED);
    cr_assert_eq(atomic_load(&c.polls), polls, "nothing is polled after shutdown");
    cr_assert_eq(weft_runtime_free(rt), 0);
}

Test(shutdown, busy_yielding_tasks_1w, .timeout = 60)
{
    shutdown_busy(1);
}

Test(shutdown, busy_yielding_tasks_2w, .timeout = 60)
{
    shutdown_busy(2);
}

/* ---- a task whose waker is held outside: its clone is still referenced --------- */

Test(shutdown, waker_held_in_slot, .timeout = 30)
{
    weft_runtime_t *rt = wt_runtime(2);
    wt_counts_t c;
    wt_counts_init(&c);
    wt_flag_t f;
    wt_flag_init(&f);
    wt_wait_flag_t st = {&c, &f, 0};
    cr_assert_eq(weft_spawn(rt, &wt_wait_flag_vt, &st, sizeof st, NULL), 0);
    cr_assert(wt_wait_int_ge(&c.polls, 1, WAIT_NS));
    cr_assert_eq(weft_runtime_shutdown(rt, weft_now() + 5 * WT_SEC), 0);
    cr_assert_eq(atomic_load(&c.drops), 1);
    /* The slot still holds a clone of the cancelled task's waker. */
    cr_assert_eq(weft_runtime_free(rt), -EBUSY);
    wt_flag_raise(&f); /* wakes a completed task: only releases the reference */
    cr_assert_eq(weft_runtime_free(rt), 0);
    wt_flag_destroy(&f);
}

/* ---- shutdown from another thread while weft_runtime_run blocks ------------------ */

typedef struct shut_arg {
    weft_runtime_t *rt;
    _Atomic int *polled;
    int rc;
} shut_arg_t;

static void *shutter(void *arg)
{
    shut_arg_t *a = arg;
    wt_wait_int_ge(a->polled, 1, WAIT_NS);
    a->rc = weft_runtime_shutdown(a->rt, weft_now() + 5 * WT_SEC);
    return NULL;
}

Test(shutdown, run_returns_ecanceled_when_shut_down, .timeout = 30)
{
    weft_runtime_t *rt = wt_runtime(2);
    wt_counts_t c;
    wt_counts_init(&c);
    shut_arg_t a = {rt, &c.polls, -1};
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, shutter, &a), 0);
    wt_pending_t p = {&c};
    int64_t out = 5;
    cr_assert_eq(weft_runtime_run(rt, &wt_pending_vt, &p, sizeof p, &out), -ECANCELED);
    cr_assert_eq(out, 5);
    pthread_join(th, NULL);
    cr_assert_geq(a.rc, 0);
    cr_assert_eq(atomic_load(&c.drops), 1);
    cr_assert_eq(weft_runtime_free(rt), 0);
}

Test(shutdown, free_without_shutdown, .timeout = 30)
{
    /* weft_runtime_free shuts down first (immediate deadline). */
    weft_runtime_t *rt = wt_runtime(2);
    wt_counts_t c;
    wt_counts_init(&c);
    wt_pending_t p = {&c};
    for (int i = 0; i < 1000; i++)
        cr_assert_eq(weft_spawn(rt, &wt_pending_vt, &p, sizeof p, NULL), 0);
    cr_assert_eq(weft_runtime_free(rt), 0);
    cr_assert_eq(atomic_load(&c.drops), 1000);
}

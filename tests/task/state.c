/*
 * task/state.c - the task state machine seen through the public API:
 * wakes while running and after completion, detach, dropping the handle
 * before the first poll, cancellation before / during / after running,
 * is_finished, task ids. Every test checks that the future was dropped
 * exactly once and that weft_runtime_free returns 0 (no cell leaked a
 * reference).
 *
 * Tests that need "the task has not run yet" use one worker kept busy by a
 * blocker task (a poll that spins until released), so the order is forced,
 * not timed.
 */
#include <criterion/criterion.h>

#include "common/wt.h"

#define WAIT_NS (10 * WT_SEC) /* watchdog for every bounded wait */

#include "common/held.h"

/* ---- a task that wakes itself during its first `k` polls ------------------ */

enum wake_mode { BY_REF, BY_VALUE, BY_REF_TWICE };

typedef struct self_waker {
    wt_counts_t *c;
    wt_flag_t *f;
    int k;
    enum wake_mode mode;
    int polls;
} self_waker_t;

static weft_poll_t self_waker_poll(void *st, weft_cx_t *cx, int64_t *out)
{
    self_waker_t *s = st;
    atomic_fetch_add(&s->c->in_poll, 1);
    atomic_fetch_add(&s->c->polls, 1);
    s->polls++;
    weft_poll_t r = WEFT_PENDING;
    if (s->polls <= s->k) {
        weft_waker_t w;
        switch (s->mode) {
        case BY_REF:
            weft_waker_wake_by_ref(weft_cx_waker(cx));
            break;
        case BY_VALUE:
            weft_waker_clone(weft_cx_waker(cx), &w);
            weft_waker_wake(&w);
            break;
        case BY_REF_TWICE:
            weft_waker_wake_by_ref(weft_cx_waker(cx));
            weft_waker_wake_by_ref(weft_cx_waker(cx));
            break;
        }
    } else {
        weft_atomic_waker_register(&s->f->aw, weft_cx_waker(cx));
        if (atomic_load(&s->f->set)) {
            *out = s->polls;
            r = WEFT_READY;
        }
    }
    atomic_fetch_sub(&s->c->in_poll, 1);
    return r;
}

static const weft_future_vtable_t self_waker_vt = {self_waker_poll, wt_counted_drop, "self_waker"};

/*
 * With one worker: spawn a task that yields twice and join it. Anything
 * queued on the worker before the sentinel's first yield has been polled by
 * the time the sentinel completes (the yield puts it behind everything in
 * the ring), so a spurious re-poll of another task would have happened.
 */
static void drain_one_worker(weft_runtime_t *rt)
{
    wt_counts_t c;
    wt_counts_init(&c);
    wt_yielder_t y = {&c, 2, WEFT_YIELD_INIT, 0};
    weft_task_t *h;
    cr_assert_eq(weft_spawn(rt, &wt_yielder_vt, &y, sizeof y, &h), 0);
    int64_t out = -1;
    cr_assert_eq(weft_task_join_wait(h, weft_now() + WAIT_NS, &out), 0);
    cr_assert_eq(out, 3);
    cr_assert_eq(atomic_load(&c.drops), 1);
}

static void run_self_wake(enum wake_mode mode, int k)
{
    weft_runtime_t *rt = wt_runtime(1);
    wt_counts_t c;
    wt_counts_init(&c);
    wt_flag_t f;
    wt_flag_init(&f);
    self_waker_t st = {&c, &f, k, mode, 0};
    weft_task_t *h;
    cr_assert_eq(weft_spawn(rt, &self_waker_vt, &st, sizeof st, &h), 0);
    /* k self-wakes: exactly k re-polls, then the task waits for the flag. */
    cr_assert(wt_wait_int_ge(&c.polls, k + 1, WAIT_NS), "task was not re-polled after a self-wake");
    drain_one_worker(rt);
    drain_one_worker(rt);
    cr_assert_eq(atomic_load(&c.polls), k + 1,
                 "a wake during a poll must cause exactly one more poll (polls = %d, k = %d)",
                 atomic_load(&c.polls), k);
    cr_assert_eq(weft_task_is_finished(h), 0);
    wt_flag_raise(&f);
    int64_t out = -1;
    cr_assert_eq(weft_task_join_wait(h, weft_now() + WAIT_NS, &out), 0);
    cr_assert_eq(out, k + 2);
    cr_assert_eq(atomic_load(&c.polls), k + 2);
    cr_assert_eq(atomic_load(&c.drops), 1);
    wt_flag_destroy(&f);
    cr_assert_eq(wt_finish(rt), 0);
}

Test(task_state, wake_by_ref_while_running, .timeout = 30)
{
    run_self_wake(BY_REF, 1);
    run_self_wake(BY_REF, 5);
}

Test(task_state, wake_by_value_while_running, .timeout = 30)
{
    run_self_wake(BY_VALUE, 1);
    run_self_wake(BY_VALUE, 5);
}

Test(task_state, two_wakes_in_one_poll_coalesce, .timeout = 30)
{
    /* NOTIFIED is one bit: two wakes during one poll give one re-poll. */
    run_self_wake(BY_REF_TWICE, 1);
    run_self_wake(BY_REF_TWICE, 3);
}

/* ---- wake during the poll that completes ----------------------------------- */

typedef struct wake_then_ready {
    wt_counts_t *c;
    int by_value;
} wake_then_ready_t;

static weft_poll_t wake_then_ready_poll(void *st, weft_cx_t *cx, int64_t *out)
{
    wake_then_ready_t *s = st;
    atomic_fetch_add(&s->c->polls, 1);
    if (s->by_value) {
        weft_waker_t w;
        weft_waker_clone(weft_cx_waker(cx), &w);
        weft_waker_wake(&w);
    } else {
        weft_waker_wake_by_ref(weft_cx_waker(cx));
    }
    *out = 7;
    return WEFT_READY;
}

static const weft_future_vtable_t wake_then_ready_vt = {wake_then_ready_poll, wt_counted_drop,
                                                        "wake_then_ready"};

Test(task_state, wake_during_completing_poll, .timeout = 30)
{
    for (int by_value = 0; by_value <= 1; by_value++) {
        weft_runtime_t *rt = wt_runtime(1);
        wt_counts_t c;
        wt_counts_init(&c);
        wake_then_ready_t st = {&c, by_value};
        weft_task_t *h;
        cr_assert_eq(weft_spawn(rt, &wake_then_ready_vt, &st, sizeof st, &h), 0);
        int64_t out = 0;
        cr_assert_eq(weft_task_join_wait(h, weft_now() + WAIT_NS, &out), 0);
        cr_assert_eq(out, 7);
        drain_one_worker(rt);
        cr_assert_eq(atomic_load(&c.polls), 1, "a completed task must never be polled again");
        cr_assert_eq(atomic_load(&c.drops), 1);
        cr_assert_eq(wt_finish(rt), 0);
    }
}

/* ---- wake after complete ------------------------------------------------------- */

typedef struct keep_waker {
    wt_counts_t *c;
    weft_waker_t *keep; /* receives a clone of the task's waker */
} keep_waker_t;

static weft_poll_t keep_waker_poll(void *st, weft_cx_t *cx, int64_t *out)
{
    keep_waker_t *s = st;
    atomic_fetch_add(&s->c->polls, 1);
    weft_waker_clone(weft_cx_waker(cx), s->keep);
    *out = 11;
    return WEFT_READY;
}

static const weft_future_vtable_t keep_waker_vt = {keep_waker_poll, wt_counted_drop, "keep_waker"};

Test(task_state, wake_after_complete_is_noop, .timeout = 30)
{
    weft_runtime_t *rt = wt_runtime(2);
    wt_counts_t c;
    wt_counts_init(&c);
    weft_waker_t kept = WEFT_WAKER_NONE;
    keep_waker_t st = {&c, &kept};
    weft_task_t *h;
    cr_assert_eq(weft_spawn(rt, &keep_waker_vt, &st, sizeof st, &h), 0);
    int64_t out = 0;
    cr_assert_eq(weft_task_join_wait(h, weft_now() + WAIT_NS, &out), 0);
    cr_assert_eq(out, 11);
    cr_assert_not_null(kept.vtable);

    /* By reference, several times; then clones woken by value and dropped. */
    for (int i = 0; i < 3; i++)
        cr_assert_eq(weft_waker_wake_by_ref(&kept), 0);
    weft_waker_t a, b;
    cr_assert_eq(weft_waker_clone(&kept, &a), 0);
    cr_assert_eq(weft_waker_clone(&kept, &b), 0);
    cr_assert(weft_waker_will_wake(&a, &kept));
    cr_assert_eq(weft_waker_wake(&a), 0);
    cr_assert_null(a.vtable, "wake consumes the waker");
    cr_assert_eq(weft_waker_drop(&b), 0);
    cr_assert_null(b.vtable, "drop consumes the waker");

    /* Still holding `kept`: the cell is referenced, so free must refuse. */
    cr_assert_eq(weft_runtime_shutdown(rt, weft_now() + 5 * WT_SEC), 0);
    cr_assert_eq(weft_waker_wake_by_ref(&kept), 0); /* after shutdown: still a no-op */
    cr_assert_eq(weft_runtime_free(rt), -EBUSY);
    /* The last reference, consumed by a wake after shutdown. */
    cr_assert_eq(weft_waker_wake(&kept), 0);
    cr_assert_eq(atomic_load(&c.polls), 1);
    cr_assert_eq(atomic_load(&c.drops), 1);
    cr_assert_eq(weft_runtime_free(rt), 0);
}

/* ---- detach ------------------------------------------------------------------------ */

Test(task_state, detach_then_runs_to_completion, .timeout = 30)
{
    weft_runtime_t *rt = wt_runtime(2);
    wt_counts_t c;
    wt_counts_init(&c);
    wt_flag_t f;
    wt_flag_init(&f);
    wt_wait_flag_t st = {&c, &f, 5};
    weft_task_t *h;
    cr_assert_eq(weft_spawn(rt, &wt_wait_flag_vt, &st, sizeof st, &h), 0);
    cr_assert(wt_wait_int_ge(&c.polls, 1, WAIT_NS));
    cr_assert_eq(weft_task_detach(h), 0);
    cr_assert_eq(atomic_load(&c.drops), 0, "detach must not drop the future");
    wt_flag_raise(&f);
    cr_assert(wt_wait_int_ge(&c.drops, 1, WAIT_NS), "detached task never completed");
    cr_assert_eq(atomic_load(&c.readies), 1);
    wt_flag_destroy(&f); /* the last poll registered before returning READY */
    cr_assert_eq(wt_finish(rt), 0);
    cr_assert_eq(atomic_load(&c.drops), 1);
}

Test(task_state, drop_handle_before_first_poll, .timeout = 30)
{
    weft_runtime_t *rt = wt_runtime(1);
    held_t b;
    hold_worker(rt, &b);
    wt_counts_t c1, c2;
    wt_counts_init(&c1);
    wt_counts_init(&c2);
    wt_ready_t r1 = {&c1, 1}, r2 = {&c2, 2};
    weft_task_t *h;
    /* With a handle, detached at once (the one-CAS fast path) ... */
    cr_assert_eq(weft_spawn(rt, &wt_ready_vt, &r1, sizeof r1, &h), 0);
    cr_assert_eq(weft_task_detach(h), 0);
    /* ... and detached from the start. */
    cr_assert_eq(weft_spawn(rt, &wt_ready_vt, &r2, sizeof r2, NULL), 0);
    cr_assert_eq(atomic_load(&c1.polls) + atomic_load(&c2.polls), 0, "the worker is held");
    release_worker(&b);
    cr_assert(wt_wait_int_ge(&c1.drops, 1, WAIT_NS));
    cr_assert(wt_wait_int_ge(&c2.drops, 1, WAIT_NS));
    cr_assert_eq(atomic_load(&c1.polls), 1);
    cr_assert_eq(atomic_load(&c2.polls), 1);
    cr_assert_eq(wt_finish(rt), 0);
    cr_assert_eq(atomic_load(&c1.drops), 1);
    cr_assert_eq(atomic_load(&c2.drops), 1);
}

/* ---- cancellation ---------------------------------------------------------------------- */

Test(task_state, cancel_before_first_poll, .timeout = 30)
{
    weft_runtime_t *rt = wt_runtime(1);
    held_t b;
    hold_worker(rt, &b);
    wt_counts_t c;
    wt_counts_init(&c);
    wt_ready_t st = {&c, 3};
    weft_task_t *h;
    cr_assert_eq(weft_spawn(rt, &wt_ready_vt, &st, sizeof st, &h), 0);
    cr_assert_eq(weft_task_cancel(h), 0);
    cr_assert_eq(weft_task_cancel(h), 0); /* twice: still one cancellation */
    cr_assert_eq(atomic_load(&c.drops), 0, "the future is dropped by the worker, later");
    release_worker(&b);
    int64_t out = 12345;
    cr_assert_eq(weft_task_join_wait(h, weft_now() + WAIT_NS, &out), -ECANCELED);
    cr_assert_eq(out, 12345, "a cancelled join must not write the output");
    cr_assert_eq(atomic_load(&c.polls), 0, "a task cancelled before running is never polled");
    cr_assert_eq(atomic_load(&c.drops), 1);
    cr_assert_eq(wt_finish(rt), 0);
}

Test(task_state, cancel_idle_pending_task, .timeout = 30)
{
    weft_runtime_t *rt = wt_runtime(2);
    wt_counts_t c;
    wt_counts_init(&c);
    wt_flag_t f;
    wt_flag_init(&f);
    wt_wait_flag_t st = {&c, &f, 1};
    weft_task_t *h;
    cr_assert_eq(weft_spawn(rt, &wt_wait_flag_vt, &st, sizeof st, &h), 0);
    cr_assert(wt_wait_int_ge(&c.polls, 1, WAIT_NS));
    cr_assert_eq(weft_task_cancel(h), 0);
    cr_assert_eq(weft_task_join_wait(h, weft_now() + WAIT_NS, NULL), -ECANCELED);
    cr_assert_eq(atomic_load(&c.polls), 1, "a cancelled idle task is dropped, not polled");
    cr_assert_eq(atomic_load(&c.drops), 1);
    /* The atomic waker still holds the task's waker: waking a completed
     * (cancelled) task does nothing but release the reference. */
    wt_flag_raise(&f);
    cr_assert_eq(atomic_load(&c.polls), 1);
    wt_flag_destroy(&f);
    cr_assert_eq(wt_finish(rt), 0);
}

/* A task that cancels itself through its own handle, published by the
 * spawner after weft_spawn returned. */
typedef struct self_cancel {
    wt_counts_t *c;
    weft_task_t *_Atomic *handle;
    int ready_after; /* return READY (1) or PENDING (0) after cancelling */
} self_cancel_t;

static weft_poll_t self_cancel_poll(void *st, weft_cx_t *cx, int64_t *out)
{
    (void)cx;
    self_cancel_t *s = st;
    atomic_fetch_add(&s->c->polls, 1);
    weft_task_t *h;
    int64_t end = weft_now() + WAIT_NS;
    while (!(h = atomic_load(s->handle)) && weft_now() < end)
        sched_yield();
    if (h)
        weft_task_cancel(h);
    atomic_fetch_add(&s->c->in_poll, 1); /* "cancel issued" */
    if (s->ready_after) {
        *out = 99;
        return WEFT_READY;
    }
    /* No wake-up arranged: only the cancellation may end this task. */
    return WEFT_PENDING;
}

static const weft_future_vtable_t self_cancel_vt = {self_cancel_poll, wt_counted_drop,
                                                    "self_cancel"};

Test(task_state, cancel_self_while_running, .timeout = 30)
{
    for (int ready_after = 0; ready_after <= 1; ready_after++) {
        weft_runtime_t *rt = wt_runtime(2);
        wt_counts_t c;
        wt_counts_init(&c);
        weft_task_t *_Atomic slot = NULL;
        self_cancel_t st = {&c, &slot, ready_after};
        weft_task_t *h;
        cr_assert_eq(weft_spawn(rt, &self_cancel_vt, &st, sizeof st, &h), 0);
        atomic_store(&slot, h);
        int64_t out = -1;
        int rc = weft_task_join_wait(h, weft_now() + WAIT_NS, &out);
        cr_assert_eq(atomic_load(&c.in_poll), 1, "the task never cancelled itself");
        if (ready_after) {
            /* The poll in progress completed the task first. */
            cr_assert_eq(rc, 0);
            cr_assert_eq(out, 99);
        } else {
            cr_assert_eq(rc, -ECANCELED);
        }
        cr_assert_eq(atomic_load(&c.polls), 1);
        cr_assert_eq(atomic_load(&c.drops), 1);
        cr_assert_eq(wt_finish(rt), 0);
    }
}

/* A poll that spins until the test thread has cancelled the task. */
typedef struct spin_until {
    wt_counts_t *c;
    _Atomic int *go;
    int ready_after;
} spin_until_t;

static weft_poll_t spin_until_poll(void *st, weft_cx_t *cx, int64_t *out)
{
    (void)cx;
    spin_until_t *s = st;
    atomic_fetch_add(&s->c->polls, 1);
    atomic_store(&s->c->in_poll, 1);
    int64_t end = weft_now() + WAIT_NS;
    while (!atomic_load(s->go) && weft_now() < end)
        sched_yield();
    if (s->ready_after) {
        *out = 42;
        return WEFT_READY;
    }
    return WEFT_PENDING;
}

static const weft_future_vtable_t spin_until_vt = {spin_until_poll, wt_counted_drop, "spin_until"};

Test(task_state, cancel_from_other_thread_while_running, .timeout = 30)
{
    for (int ready_after = 0; ready_after <= 1; ready_after++) {
        weft_runtime_t *rt = wt_runtime(1);
        wt_counts_t c;
        wt_counts_init(&c);
        _Atomic int go = 0;
        spin_until_t st = {&c, &go, ready_after};
        weft_task_t *h;
        cr_assert_eq(weft_spawn(rt, &spin_until_vt, &st, sizeof st, &h), 0);
        cr_assert(wt_wait_int_ge(&c.in_poll, 1, WAIT_NS));
        cr_assert_eq(weft_task_cancel(h), 0);
        cr_assert_eq(atomic_load(&c.drops), 0, "the running poll owns the future");
        cr_assert_eq(weft_task_is_finished(h), 0);
        atomic_store(&go, 1);
        int64_t out = -1;
        int rc = weft_task_join_wait(h, weft_now() + WAIT_NS, &out);
        if (ready_after) {
            cr_assert_eq(rc, 0, "a poll that returns READY completes the task first");
            cr_assert_eq(out, 42);
        } else {
            cr_assert_eq(rc, -ECANCELED);
        }
        cr_assert_eq(atomic_load(&c.polls), 1);
        cr_assert_eq(atomic_load(&c.drops), 1);
        cr_assert_eq(wt_finish(rt), 0);
    }
}

Test(task_state, cancel_after_complete_is_noop, .timeout = 30)
{
    weft_runtime_t *rt = wt_runtime(2);
    wt_counts_t c;
    wt_counts_init(&c);
    wt_ready_t st = {&c, 77};
    weft_task_t *h;
    cr_assert_eq(weft_spawn(rt, &wt_ready_vt, &st, sizeof st, &h), 0);
    cr_assert(wt_wait_int_ge(&c.drops, 1, WAIT_NS));
    /* drop runs before completion is published: wait for is_finished. */
    int64_t end = weft_now() + WAIT_NS;
    while (weft_task_is_finished(h) != 1 && weft_now() < end)
        sched_yield();
    cr_assert_eq(weft_task_is_finished(h), 1);
    cr_assert_eq(weft_task_cancel(h), 0);
    cr_assert_eq(weft_task_is_finished(h), 1);
    int64_t out = 0;
    cr_assert_eq(weft_task_join_wait(h, weft_now() + WAIT_NS, &out), 0);
    cr_assert_eq(out, 77);
    cr_assert_eq(atomic_load(&c.polls), 1);
    cr_assert_eq(atomic_load(&c.drops), 1);
    cr_assert_eq(wt_finish(rt), 0);
}

Test(task_state, is_finished, .timeout = 30)
{
    weft_runtime_t *rt = wt_runtime(2);
    wt_counts_t c1, c2;
    wt_counts_init(&c1);
    wt_counts_init(&c2);
    wt_flag_t f1, f2;
    wt_flag_init(&f1);
    wt_flag_init(&f2);
    wt_wait_flag_t s1 = {&c1, &f1, 1}, s2 = {&c2, &f2, 2};
    weft_task_t *h1, *h2;
    cr_assert_eq(weft_spawn(rt, &wt_wait_flag_vt, &s1, sizeof s1, &h1), 0);
    cr_assert_eq(weft_spawn(rt, &wt_wait_flag_vt, &s2, sizeof s2, &h2), 0);
    cr_assert(wt_wait_int_ge(&c1.polls, 1, WAIT_NS));
    cr_assert(wt_wait_int_ge(&c2.polls, 1, WAIT_NS));
    cr_assert_eq(weft_task_is_finished(h1), 0);
    cr_assert_eq(weft_task_is_finished(h2), 0);
    wt_flag_raise(&f1);                    /* h1 completes */
    cr_assert_eq(weft_task_cancel(h2), 0); /* h2 is cancelled */
    int64_t end = weft_now() + WAIT_NS;
    while ((weft_task_is_finished(h1) != 1 || weft_task_is_finished(h2) != 1) && weft_now() < end)
        sched_yield();
    cr_assert_eq(weft_task_is_finished(h1), 1);
    cr_assert_eq(weft_task_is_finished(h2), 1);
    int64_t out = 0;
    cr_assert_eq(weft_task_join_wait(h1, WEFT_FOREVER, &out), 0);
    cr_assert_eq(out, 1);
    cr_assert_eq(weft_task_join_wait(h2, WEFT_FOREVER, &out), -ECANCELED);
    cr_assert_eq(atomic_load(&c1.drops), 1);
    cr_assert_eq(atomic_load(&c2.drops), 1);
    wt_flag_raise(&f2); /* release h2's waker still held by the slot */
    wt_flag_destroy(&f1);
    wt_flag_destroy(&f2);
    cr_assert_eq(wt_finish(rt), 0);
}

/* ---- ids ------------------------------------------------------------------------------------ */

#define N_IDS 10000
#define N_INNER 5000

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* Spawns N_INNER ready tasks from inside the runtime, keeping the handles. */
typedef struct inner_spawner {
    wt_counts_t *c;
    wt_counts_t *counts; /* N_INNER of them */
    weft_task_t **handles;
    _Atomic int *failed;
} inner_spawner_t;

static weft_poll_t inner_spawner_poll(void *st, weft_cx_t *cx, int64_t *out)
{
    (void)cx;
    inner_spawner_t *s = st;
    atomic_fetch_add(&s->c->polls, 1);
    weft_runtime_t *rt = weft_runtime_current();
    for (int i = 0; i < N_INNER; i++) {
        wt_ready_t r = {&s->counts[i], i};
        if (!rt || weft_spawn(rt, &wt_ready_vt, &r, sizeof r, &s->handles[i]) != 0)
            atomic_fetch_add(s->failed, 1);
    }
    *out = 0;
    return WEFT_READY;
}

static const weft_future_vtable_t inner_spawner_vt = {inner_spawner_poll, wt_counted_drop,
                                                      "inner_spawner"};

Test(task_state, ids_unique_and_current_id, .timeout = 60)
{
    weft_runtime_t *rt = wt_runtime(2);
    cr_assert_eq(weft_task_current_id(), 0, "not polling a task here");
    wt_counts_t *counts = calloc(N_IDS, sizeof *counts);
    weft_task_t **h = calloc(N_IDS, sizeof *h);
    int64_t *ids = calloc(N_IDS, sizeof *ids);
    cr_assert(counts && h && ids);
    for (int i = 0; i < N_IDS; i++)
        wt_counts_init(&counts[i]);
    /* Half from inside a task (worker id blocks), half from this thread. */
    wt_counts_t sc;
    wt_counts_init(&sc);
    _Atomic int failed = 0;
    inner_spawner_t sp = {&sc, counts, h, &failed};
    weft_task_t *sh;
    cr_assert_eq(weft_spawn(rt, &inner_spawner_vt, &sp, sizeof sp, &sh), 0);
    for (int i = N_INNER; i < N_IDS; i++) {
        wt_ready_t r = {&counts[i], i};
        cr_assert_eq(weft_spawn(rt, &wt_ready_vt, &r, sizeof r, &h[i]), 0);
    }
    cr_assert_eq(weft_task_join_wait(sh, weft_now() + WAIT_NS, NULL), 0);
    cr_assert_eq(atomic_load(&failed), 0);
    for (int i = 0; i < N_IDS; i++) {
        ids[i] = weft_task_id(h[i]);
        cr_assert_gt(ids[i], 0, "task ids are > 0");
    }
    for (int i = 0; i < N_IDS; i++) {
        int64_t out = -1;
        cr_assert_eq(weft_task_join_wait(h[i], weft_now() + WAIT_NS, &out), 0);
        cr_assert_eq(out, i);
        cr_assert_eq(atomic_load(&counts[i].id), ids[i],
                     "weft_task_current_id() inside the poll must equal the handle's id");
        cr_assert_eq(atomic_load(&counts[i].drops), 1);
    }
    qsort(ids, N_IDS, sizeof *ids, cmp_i64);
    for (int i = 1; i < N_IDS; i++)
        cr_assert_neq(ids[i], ids[i - 1], "duplicate task id %lld", (long long)ids[i]);
    cr_assert_eq(wt_finish(rt), 0);
    free(counts);
    free(h);
    free(ids);
}

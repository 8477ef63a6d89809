/*
 * task/join.c - join handles: blocking join with deadlines, join_poll from
 * another task (pending, ready, cancelled), replacing the join waker, a
 * join handle handed from a task to a thread, and a joining task that is
 * cancelled while it waits (its drop gives the handle back).
 */
#include <criterion/criterion.h>

#include "common/wt.h"

#define WAIT_NS (10 * WT_SEC)

Test(join, join_wait_deadline_passes_then_succeeds, .timeout = 30)
{
    weft_runtime_t *rt = wt_runtime(2);
    wt_counts_t c;
    wt_counts_init(&c);
    wt_flag_t f;
    wt_flag_init(&f);
    wt_wait_flag_t st = {&c, &f, 314};
    weft_task_t *h;
    cr_assert_eq(weft_spawn(rt, &wt_wait_flag_vt, &st, sizeof st, &h), 0);
    int64_t out = -1;
    /* A deadline in the past, then a short one: both time out and leave the
     * handle with the caller. */
    cr_assert_eq(weft_task_join_wait(h, weft_now() - 1, &out), -ETIMEDOUT);
    cr_assert_eq(weft_task_join_wait(h, weft_now() + 20 * WT_MS, &out), -ETIMEDOUT);
    cr_assert_eq(out, -1, "a timed-out join writes no output");
    cr_assert_gt(weft_task_id(h), 0, "the handle is still valid");
    cr_assert_eq(weft_task_is_finished(h), 0);
    cr_assert_eq(weft_task_join_wait(h, weft_now() + 1 * WT_MS, &out), -ETIMEDOUT);
    wt_flag_raise(&f);
    cr_assert_eq(weft_task_join_wait(h, weft_now() + WAIT_NS, &out), 0);
    cr_assert_eq(out, 314);
    cr_assert_eq(atomic_load(&c.drops), 1);
    wt_flag_destroy(&f);
    cr_assert_eq(wt_finish(rt), 0);
}

Test(join, join_wait_completed_task_with_past_deadline, .timeout = 30)
{
    weft_runtime_t *rt = wt_runtime(1);
    wt_counts_t c;
    wt_counts_init(&c);
    wt_ready_t st = {&c, 5};
    weft_task_t *h;
    cr_assert_eq(weft_spawn(rt, &wt_ready_vt, &st, sizeof st, &h), 0);
    int64_t end = weft_now() + WAIT_NS;
    while (weft_task_is_finished(h) != 1 && weft_now() < end)
        sched_yield();
    int64_t out = 0;
    /* Completed: the deadline does not matter. */
    cr_assert_eq(weft_task_join_wait(h, 0, &out), 0);
    cr_assert_eq(out, 5);
    cr_assert_eq(wt_finish(rt), 0);
}

Test(join, join_wait_null_out, .timeout = 30)
{
    weft_runtime_t *rt = wt_runtime(1);
    wt_counts_t c;
    wt_counts_init(&c);
    wt_ready_t st = {&c, 5};
    weft_task_t *h;
    cr_assert_eq(weft_spawn(rt, &wt_ready_vt, &st, sizeof st, &h), 0);
    cr_assert_eq(weft_task_join_wait(h, WEFT_FOREVER, NULL), 0);
    cr_assert_eq(atomic_load(&c.drops), 1);
    cr_assert_eq(wt_finish(rt), 0);
}

/* A joining task whose drop gives back a handle it has not consumed. */
typedef struct joiner2 {
    wt_counts_t *c;
    weft_task_t *h;
    int consumed;
    _Atomic int *rc;
    _Atomic int64_t *got;
} joiner2_t;

static weft_poll_t joiner2_poll(void *st, weft_cx_t *cx, int64_t *out)
{
    joiner2_t *s = st;
    atomic_fetch_add(&s->c->polls, 1);
    int64_t v = -1;
    int rc = weft_task_join_poll(s->h, cx, &v);
    if (rc == WEFT_PENDING)
        return WEFT_PENDING;
    s->consumed = 1;
    atomic_store(s->got, v);
    atomic_store(s->rc, rc);
    *out = v * 2;
    return WEFT_READY;
}

static void joiner2_drop(void *st)
{
    joiner2_t *s = st;
    if (!s->consumed)
        weft_task_detach(s->h);
    atomic_fetch_add(&s->c->drops, 1);
}

static const weft_future_vtable_t joiner2_vt = {joiner2_poll, joiner2_drop, "joiner2"};

Test(join, join_poll_from_another_task, .timeout = 30)
{
    weft_runtime_t *rt = wt_runtime(2);
    wt_counts_t cc, jc;
    wt_counts_init(&cc);
    wt_counts_init(&jc);
    wt_flag_t f;
    wt_flag_init(&f);
    wt_wait_flag_t child = {&cc, &f, 21};
    weft_task_t *ch, *jh;
    cr_assert_eq(weft_spawn(rt, &wt_wait_flag_vt, &child, sizeof child, &ch), 0);
    _Atomic int rc = 1;
    _Atomic int64_t got = 0;
    joiner2_t j = {&jc, ch, 0, &rc, &got};
    cr_assert_eq(weft_spawn(rt, &joiner2_vt, &j, sizeof j, &jh), 0);
    /* The joiner is pending on the child. */
    cr_assert(wt_wait_int_ge(&jc.polls, 1, WAIT_NS));
    cr_assert(wt_wait_int_ge(&cc.polls, 1, WAIT_NS));
    cr_assert_eq(weft_task_is_finished(jh), 0);
    wt_flag_raise(&f);
    int64_t out = 0;
    cr_assert_eq(weft_task_join_wait(jh, weft_now() + WAIT_NS, &out), 0);
    cr_assert_eq(out, 42);
    cr_assert_eq(atomic_load(&rc), 0);
    cr_assert_eq(atomic_load(&got), 21);
    cr_assert_eq(atomic_load(&cc.drops), 1);
    cr_assert_eq(atomic_load(&jc.drops), 1);
    wt_flag_destroy(&f);
    cr_assert_eq(wt_finish(rt), 0);
}

Test(join, join_poll_completed_and_cancelled, .timeout = 30)
{
    weft_runtime_t *rt = wt_runtime(2);
    for (int cancel = 0; cancel <= 1; cancel++) {
        wt_counts_t cc, jc;
        wt_counts_init(&cc);
        wt_counts_init(&jc);
        wt_flag_t f;
        wt_flag_init(&f);
        wt_wait_flag_t child = {&cc, &f, 8};
        weft_task_t *ch, *jh;
        cr_assert_eq(weft_spawn(rt, &wt_wait_flag_vt, &child, sizeof child, &ch), 0);
        cr_assert(wt_wait_int_ge(&cc.polls, 1, WAIT_NS));
        if (cancel)
            cr_assert_eq(weft_task_cancel(ch), 0);
        else
            wt_flag_raise(&f);
        int64_t end = weft_now() + WAIT_NS;
        while (weft_task_is_finished(ch) != 1 && weft_now() < end)
            sched_yield();
        cr_assert_eq(weft_task_is_finished(ch), 1);
        /* The joiner finds the child already finished. */
        _Atomic int rc = 1;
        _Atomic int64_t got = -1;
        joiner2_t j = {&jc, ch, 0, &rc, &got};
        cr_assert_eq(weft_spawn(rt, &joiner2_vt, &j, sizeof j, &jh), 0);
        cr_assert_eq(weft_task_join_wait(jh, weft_now() + WAIT_NS, NULL), 0);
        cr_assert_eq(atomic_load(&jc.polls), 1, "a finished task joins without pending");
        if (cancel) {
            cr_assert_eq(atomic_load(&rc), -ECANCELED);
            cr_assert_eq(atomic_load(&got), -1, "no output for a cancelled task");
        } else {
            cr_assert_eq(atomic_load(&rc), 0);
            cr_assert_eq(atomic_load(&got), 8);
        }
        cr_assert_eq(atomic_load(&cc.drops), 1);
        cr_assert_eq(atomic_load(&jc.drops), 1);
        wt_flag_raise(&f);
        wt_flag_destroy(&f);
    }
    cr_assert_eq(wt_finish(rt), 0);
}

Test(join, joiner_cancelled_while_waiting, .timeout = 30)
{
    /* The joiner registered its waker as the child's join waker, then is
     * cancelled: its drop detaches the handle (the registered join waker is
     * dropped by whoever ends up owning the slot). The child still runs to
     * completion. */
    weft_runtime_t *rt = wt_runtime(2);
    wt_counts_t cc, jc;
    wt_counts_init(&cc);
    wt_counts_init(&jc);
    wt_flag_t f;
    wt_flag_init(&f);
    wt_wait_flag_t child = {&cc, &f, 1};
    weft_task_t *ch, *jh;
    cr_assert_eq(weft_spawn(rt, &wt_wait_flag_vt, &child, sizeof child, &ch), 0);
    _Atomic int rc = 1;
    _Atomic int64_t got = 0;
    joiner2_t j = {&jc, ch, 0, &rc, &got};
    cr_assert_eq(weft_spawn(rt, &joiner2_vt, &j, sizeof j, &jh), 0);
    cr_assert(wt_wait_int_ge(&jc.polls, 1, WAIT_NS));
    cr_assert_eq(weft_task_cancel(jh), 0);
    cr_assert_eq(weft_task_join_wait(jh, weft_now() + WAIT_NS, NULL), -ECANCELED);
    cr_assert_eq(atomic_load(&jc.drops), 1);
    cr_assert_eq(atomic_load(&rc), 1, "the joiner never finished its join");
    cr_assert_eq(atomic_load(&cc.drops), 0);
    wt_flag_raise(&f);
    cr_assert(wt_wait_int_ge(&cc.drops, 1, WAIT_NS), "the detached child must still complete");
    cr_assert_eq(atomic_load(&cc.readies), 1);
    wt_flag_destroy(&f);
    cr_assert_eq(wt_finish(rt), 0);
}

/*
 * One poll joins with the task's own waker, then again through a child
 * context carrying a thread waker: the join waker is replaced (the task
 * waker's reference dropped), and the completion wakes the thread waker.
 */
typedef struct rejoin {
    wt_counts_t *c;
    weft_task_t *h;
    wt_thread_waker_t *tw;
    int consumed;
    _Atomic int *stage;
} rejoin_t;

static weft_poll_t rejoin_poll(void *st, weft_cx_t *cx, int64_t *out)
{
    rejoin_t *s = st;
    int n = atomic_fetch_add(&s->c->polls, 1) + 1;
    int64_t v = -1;
    if (n == 1) {
        int rc1 = weft_task_join_poll(s->h, cx, &v);
        weft_waker_t tw = wt_thread_waker(s->tw);
        weft_cx_t child;
        weft_cx_init_child(&child, cx, &tw);
        int rc2 = weft_task_join_poll(s->h, &child, &v);
        /* The same thread waker again: it will_wake, nothing changes. */
        int rc3 = weft_task_join_poll(s->h, &child, &v);
        atomic_store(s->stage,
                     (rc1 == WEFT_PENDING && rc2 == WEFT_PENDING && rc3 == WEFT_PENDING) ? 1 : -1);
        /* Nothing wakes this task any more: the test wakes it below. */
        return WEFT_PENDING;
    }
    int rc = weft_task_join_poll(s->h, cx, &v);
    if (rc == WEFT_PENDING)
        return WEFT_PENDING;
    s->consumed = 1;
    atomic_store(s->stage, rc == 0 ? 2 : -2);
    *out = v;
    return WEFT_READY;
}

static void rejoin_drop(void *st)
{
    rejoin_t *s = st;
    if (!s->consumed)
        weft_task_detach(s->h);
    atomic_fetch_add(&s->c->drops, 1);
}

static const weft_future_vtable_t rejoin_vt = {rejoin_poll, rejoin_drop, "rejoin"};

Test(join, join_waker_replaced, .timeout = 30)
{
    weft_runtime_t *rt = wt_runtime(2);
    wt_counts_t cc, jc;
    wt_counts_init(&cc);
    wt_counts_init(&jc);
    wt_flag_t f;
    wt_flag_init(&f);
    wt_wait_flag_t child = {&cc, &f, 55};
    weft_task_t *ch, *jh;
    cr_assert_eq(weft_spawn(rt, &wt_wait_flag_vt, &child, sizeof child, &ch), 0);
    cr_assert(wt_wait_int_ge(&cc.polls, 1, WAIT_NS));
    wt_thread_waker_t tw;
    memset(&tw, 0, sizeof tw);
    _Atomic int stage = 0;
    rejoin_t r = {&jc, ch, &tw, 0, &stage};
    cr_assert_eq(weft_spawn(rt, &rejoin_vt, &r, sizeof r, &jh), 0);
    cr_assert(wt_wait_int_ge(&stage, 1, WAIT_NS));
    cr_assert_eq(atomic_load(&stage), 1);
    cr_assert_eq(atomic_load(&tw.clones), 1, "the thread waker is the join waker now");
    wt_flag_raise(&f);
    /* The child's completion wakes the thread waker, not the task. */
    cr_assert(wt_wait_int_ge(&tw.woken, 1, WAIT_NS));
    cr_assert_eq(atomic_load(&jc.polls), 1, "the replaced task waker must not fire");
    /* Nothing will wake the joiner now: end it by cancelling it; its drop
     * detaches the (completed) child's handle. */
    cr_assert_eq(weft_task_join_wait(jh, weft_now() + 1 * WT_MS, NULL), -ETIMEDOUT);
    cr_assert_eq(weft_task_cancel(jh), 0);
    cr_assert_eq(weft_task_join_wait(jh, weft_now() + WAIT_NS, NULL), -ECANCELED);
    cr_assert_eq(atomic_load(&jc.drops), 1);
    cr_assert_eq(atomic_load(&cc.drops), 1);
    /* The thread waker was woken by reference and then dropped by the
     * handle's detach or by the completer (whichever owns the slot last;
     * the completer may still be on its way out, hence the wait). */
    int64_t end = weft_now() + WAIT_NS;
    while (wt_tw_live(&tw) > 0 && weft_now() < end)
        sched_yield();
    cr_assert_eq(wt_tw_live(&tw), 0, "join waker leaked");
    cr_assert_eq(atomic_load(&tw.drops), 1, "join waker dropped twice");
    wt_flag_destroy(&f);
    cr_assert_eq(wt_finish(rt), 0);
}

/*
 * A task starts the join (its waker becomes the join waker), then hands
 * the handle to the test thread and completes. The thread's join_wait must
 * replace the stale waker of the finished joiner and still get the output.
 */
typedef struct handoff {
    wt_counts_t *c;
    weft_task_t *h;
    weft_task_t *_Atomic *to;
} handoff_t;

static weft_poll_t handoff_poll(void *st, weft_cx_t *cx, int64_t *out)
{
    handoff_t *s = st;
    atomic_fetch_add(&s->c->polls, 1);
    int rc = weft_task_join_poll(s->h, cx, NULL);
    if (rc != WEFT_PENDING) {
        *out = -100 + rc;       /* the child must not have finished */
        weft_task_detach(s->h); /* never reached unless broken; keep counts sane */
        atomic_store(s->to, NULL);
        return WEFT_READY;
    }
    atomic_store(s->to, s->h); /* ownership moves to the test thread */
    *out = 1;
    return WEFT_READY;
}

static const weft_future_vtable_t handoff_vt = {handoff_poll, wt_counted_drop, "handoff"};

Test(join, handle_handed_from_task_to_thread, .timeout = 30)
{
    weft_runtime_t *rt = wt_runtime(2);
    wt_counts_t cc, jc;
    wt_counts_init(&cc);
    wt_counts_init(&jc);
    wt_flag_t f;
    wt_flag_init(&f);
    wt_wait_flag_t child = {&cc, &f, 66};
    weft_task_t *ch, *jh;
    cr_assert_eq(weft_spawn(rt, &wt_wait_flag_vt, &child, sizeof child, &ch), 0);
    weft_task_t *_Atomic to = NULL;
    handoff_t ho = {&jc, ch, &to};
    cr_assert_eq(weft_spawn(rt, &handoff_vt, &ho, sizeof ho, &jh), 0);
    int64_t out = 0;
    cr_assert_eq(weft_task_join_wait(jh, weft_now() + WAIT_NS, &out), 0);
    cr_assert_eq(out, 1);
    weft_task_t *h = atomic_load(&to);
    cr_assert_eq(h, ch);
    cr_assert_eq(weft_task_join_wait(h, weft_now() + 1 * WT_MS, &out), -ETIMEDOUT);
    wt_flag_raise(&f);
    cr_assert_eq(weft_task_join_wait(h, weft_now() + WAIT_NS, &out), 0);
    cr_assert_eq(out, 66);
    cr_assert_eq(atomic_load(&cc.drops), 1);
    cr_assert_eq(atomic_load(&jc.drops), 1);
    wt_flag_destroy(&f);
    cr_assert_eq(wt_finish(rt), 0);
}

/* Join handles still held at shutdown: valid afterwards, report the end. */
Test(join, handles_survive_shutdown, .timeout = 30)
{
    weft_runtime_t *rt = wt_runtime(2);
    wt_counts_t c1, c2;
    wt_counts_init(&c1);
    wt_counts_init(&c2);
    wt_flag_t f;
    wt_flag_init(&f);
    wt_ready_t r = {&c1, 9};
    wt_wait_flag_t w = {&c2, &f, 0};
    weft_task_t *h1, *h2;
    cr_assert_eq(weft_spawn(rt, &wt_ready_vt, &r, sizeof r, &h1), 0);
    cr_assert_eq(weft_spawn(rt, &wt_wait_flag_vt, &w, sizeof w, &h2), 0);
    cr_assert(wt_wait_int_ge(&c1.drops, 1, WAIT_NS));
    cr_assert(wt_wait_int_ge(&c2.polls, 1, WAIT_NS));
    cr_assert_geq(weft_runtime_shutdown(rt, weft_now() + 5 * WT_SEC), 0);
    cr_assert_eq(weft_runtime_free(rt), -EBUSY, "two handles are still held");
    int64_t out = 0;
    cr_assert_eq(weft_task_join_wait(h1, 0, &out), 0);
    cr_assert_eq(out, 9);
    cr_assert_eq(weft_task_join_wait(h2, 0, &out), -ECANCELED);
    cr_assert_eq(atomic_load(&c2.drops), 1);
    /* The flag's slot still holds the cancelled task's waker. */
    cr_assert_eq(weft_runtime_free(rt), -EBUSY);
    wt_flag_destroy(&f);
    cr_assert_eq(weft_runtime_free(rt), 0);
}

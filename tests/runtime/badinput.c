/*
 * runtime/badinput.c - every public function given bad input returns
 * -EINVAL (or the documented code) and changes nothing; blocking calls made
 * from a runtime thread return -EDEADLK.
 *
 * Not tested: a stale handle (used after detach or a consuming join). The
 * handle is the task cell itself; once given back the cell may be freed or
 * recycled, so any use is a use-after-free. The -EINVAL "stale handle"
 * check in join_poll is a debugging aid that reads freed memory, and a test
 * of it would be undefined behaviour (and an ASan report). Skipped.
 */
#include <criterion/criterion.h>

#include "common/wt.h"

#define WAIT_NS (10 * WT_SEC)

static weft_poll_t noop_poll(void *st, weft_cx_t *cx, int64_t *out)
{
    (void)st;
    (void)cx;
    *out = 0;
    return WEFT_READY;
}

static const weft_future_vtable_t no_poll_vt = {NULL, NULL, "no_poll"};
static const weft_future_vtable_t noop_vt = {noop_poll, NULL, "noop"};

Test(badinput, spawn, .timeout = 30)
{
    weft_runtime_t *rt = wt_runtime(1);
    wt_counts_t c;
    wt_counts_init(&c);
    wt_ready_t r = {&c, 0};
    weft_task_t *h = (weft_task_t *)&c;
    cr_assert_eq(weft_spawn(NULL, &wt_ready_vt, &r, sizeof r, &h), -EINVAL);
    cr_assert_null(h, "the handle is cleared on failure");
    h = (weft_task_t *)&c;
    cr_assert_eq(weft_spawn(rt, NULL, &r, sizeof r, &h), -EINVAL);
    cr_assert_null(h);
    cr_assert_eq(weft_spawn(rt, &no_poll_vt, &r, sizeof r, &h), -EINVAL);
    cr_assert_eq(weft_spawn(rt, &wt_ready_vt, NULL, sizeof r, &h), -EINVAL);
    cr_assert_eq(weft_spawn(rt, &wt_ready_vt, &r, (size_t)WEFT_SPAWN_MAX_STATE + 1, &h), -EINVAL);
    cr_assert_eq(weft_spawn(rt, &wt_ready_vt, &r, SIZE_MAX, NULL), -EINVAL);
    cr_assert_eq(atomic_load(&c.drops), 0, "a refused spawn drops nothing");
    /* Allowed edge cases: NULL state with size 0, the largest state. */
    cr_assert_eq(weft_spawn(rt, &noop_vt, NULL, 0, &h), 0);
    cr_assert_eq(weft_task_join_wait(h, weft_now() + WAIT_NS, NULL), 0);
    unsigned char *big = calloc(1, WEFT_SPAWN_MAX_STATE);
    cr_assert_not_null(big);
    memcpy(big, &r, sizeof r);
    cr_assert_eq(weft_spawn(rt, &wt_ready_vt, big, WEFT_SPAWN_MAX_STATE, &h), 0);
    cr_assert_eq(weft_task_join_wait(h, weft_now() + WAIT_NS, NULL), 0);
    cr_assert_eq(atomic_load(&c.drops), 1);
    free(big);
    cr_assert_eq(wt_finish(rt), 0);
}

Test(badinput, task_handles, .timeout = 10)
{
    weft_cx_t *cx = NULL;
    int64_t out = 5;
    cr_assert_eq(weft_task_join_poll(NULL, cx, &out), -EINVAL);
    cr_assert_eq(weft_task_join_wait(NULL, WEFT_FOREVER, &out), -EINVAL);
    cr_assert_eq(out, 5);
    cr_assert_eq(weft_task_detach(NULL), -EINVAL);
    cr_assert_eq(weft_task_cancel(NULL), -EINVAL);
    cr_assert_eq(weft_task_is_finished(NULL), -EINVAL);
    cr_assert_eq(weft_task_id(NULL), -EINVAL);
}

Test(badinput, join_poll_null_cx, .timeout = 30)
{
    weft_runtime_t *rt = wt_runtime(1);
    wt_counts_t c;
    wt_counts_init(&c);
    wt_ready_t r = {&c, 12};
    weft_task_t *h;
    cr_assert_eq(weft_spawn(rt, &wt_ready_vt, &r, sizeof r, &h), 0);
    int64_t out = 0;
    cr_assert_eq(weft_task_join_poll(h, NULL, &out), -EINVAL);
    /* The handle was not consumed. */
    cr_assert_eq(weft_task_join_wait(h, weft_now() + WAIT_NS, &out), 0);
    cr_assert_eq(out, 12);
    cr_assert_eq(wt_finish(rt), 0);
}

Test(badinput, runtime, .timeout = 10)
{
    int64_t out = 3;
    wt_ready_t r = {NULL, 0};
    cr_assert_eq(weft_config_init(NULL), -EINVAL);
    cr_assert_eq(weft_runtime_new(NULL, NULL), -EINVAL);
    weft_config_t cfg;
    weft_config_init(&cfg);
    cr_assert_eq(weft_runtime_new(&cfg, NULL), -EINVAL);
    cr_assert_eq(weft_runtime_run(NULL, &wt_ready_vt, &r, sizeof r, &out), -EINVAL);
    cr_assert_eq(out, 3);
    cr_assert_eq(weft_runtime_shutdown(NULL, WEFT_FOREVER), -EINVAL);
    cr_assert_eq(weft_runtime_free(NULL), -EINVAL);
    cr_assert_eq(weft_runtime_workers(NULL), -EINVAL);
    cr_assert_null(weft_runtime_current());
}

Test(badinput, run_with_bad_future, .timeout = 30)
{
    weft_runtime_t *rt = wt_runtime(1);
    int64_t out = 3;
    wt_ready_t r = {NULL, 0};
    cr_assert_eq(weft_runtime_run(rt, NULL, &r, sizeof r, &out), -EINVAL);
    cr_assert_eq(weft_runtime_run(rt, &no_poll_vt, &r, sizeof r, &out), -EINVAL);
    cr_assert_eq(weft_runtime_run(rt, &wt_ready_vt, NULL, sizeof r, &out), -EINVAL);
    cr_assert_eq(out, 3);
    cr_assert_eq(weft_run(NULL, NULL, NULL, 0, &out), -EINVAL);
    cr_assert_eq(weft_run(NULL, &no_poll_vt, NULL, 0, &out), -EINVAL);
    cr_assert_eq(out, 3);
    cr_assert_eq(wt_finish(rt), 0);
}

Test(badinput, wakers, .timeout = 10)
{
    weft_waker_t w = WEFT_WAKER_NONE;
    cr_assert_eq(weft_waker_clone(NULL, &w), -EINVAL);
    cr_assert_eq(weft_waker_clone(&w, NULL), -EINVAL);
    cr_assert_eq(weft_waker_wake(NULL), -EINVAL);
    cr_assert_eq(weft_waker_wake_by_ref(NULL), -EINVAL);
    cr_assert_eq(weft_waker_drop(NULL), -EINVAL);
    cr_assert_not(weft_waker_will_wake(NULL, NULL));
    cr_assert_null(weft_cx_waker(NULL));

    weft_atomic_waker_t aw = WEFT_ATOMIC_WAKER_INIT;
    cr_assert_eq(weft_atomic_waker_register(NULL, &w), -EINVAL);
    cr_assert_eq(weft_atomic_waker_register(&aw, NULL), -EINVAL);
    cr_assert_eq(weft_atomic_waker_wake(NULL), -EINVAL);
    cr_assert_eq(weft_atomic_waker_take(NULL, &w), -EINVAL);
    cr_assert_eq(weft_atomic_waker_take(&aw, NULL), -EINVAL);
    weft_atomic_waker_init(NULL);    /* tolerated */
    weft_atomic_waker_destroy(NULL); /* tolerated */
}

Test(badinput, cx_yield_coop, .timeout = 10)
{
    weft_yield_t y = WEFT_YIELD_INIT;
    weft_cx_t cx, child;
    weft_waker_t w = WEFT_WAKER_NONE;
    memset(&cx, 0, sizeof cx);
    cr_assert_eq(weft_yield_poll(NULL, &cx), -EINVAL);
    cr_assert_eq(weft_yield_poll(&y, NULL), -EINVAL);
    cr_assert_eq(y.polled, 0, "a refused poll changes nothing");
    cr_assert_eq(weft_coop_proceed(NULL), -EINVAL);
    cr_assert_eq(weft_cx_init_child(NULL, &cx, &w), -EINVAL);
    cr_assert_eq(weft_cx_init_child(&child, NULL, &w), -EINVAL);
    cr_assert_eq(weft_cx_init_child(&child, &cx, NULL), -EINVAL);
}

/* ---- blocking calls from a runtime thread ------------------------------------------ */

typedef struct blocker_calls {
    wt_counts_t *c;
    weft_runtime_t *rt;
    weft_task_t *other; /* a pending task's handle (stays with the test) */
    _Atomic int *rc_join, *rc_run, *rc_shutdown, *rc_free;
} blocker_calls_t;

static weft_poll_t blocker_calls_poll(void *st, weft_cx_t *cx, int64_t *out)
{
    (void)cx;
    blocker_calls_t *s = st;
    atomic_fetch_add(&s->c->polls, 1);
    int64_t v = 0;
    wt_ready_t r = {NULL, 0};
    atomic_store(s->rc_join, weft_task_join_wait(s->other, WEFT_FOREVER, &v));
    atomic_store(s->rc_run, weft_runtime_run(s->rt, &wt_ready_vt, &r, sizeof r, &v));
    atomic_store(s->rc_shutdown, weft_runtime_shutdown(s->rt, weft_now()));
    atomic_store(s->rc_free, weft_runtime_free(s->rt));
    *out = 1;
    return WEFT_READY;
}

static const weft_future_vtable_t blocker_calls_vt = {blocker_calls_poll, wt_counted_drop,
                                                      "blocker_calls"};

Test(badinput, blocking_from_worker_is_edeadlk, .timeout = 30)
{
    weft_runtime_t *rt = wt_runtime(2);
    wt_counts_t c, oc;
    wt_counts_init(&c);
    wt_counts_init(&oc);
    wt_flag_t f;
    wt_flag_init(&f);
    wt_wait_flag_t o = {&oc, &f, 66};
    weft_task_t *other, *h;
    cr_assert_eq(weft_spawn(rt, &wt_wait_flag_vt, &o, sizeof o, &other), 0);
    cr_assert(wt_wait_int_ge(&oc.polls, 1, WAIT_NS));
    _Atomic int rj = 1, rr = 1, rs = 1, rf = 1;
    blocker_calls_t st = {&c, rt, other, &rj, &rr, &rs, &rf};
    cr_assert_eq(weft_spawn(rt, &blocker_calls_vt, &st, sizeof st, &h), 0);
    int64_t out = 0;
    cr_assert_eq(weft_task_join_wait(h, weft_now() + WAIT_NS, &out), 0);
    cr_assert_eq(out, 1);
    cr_assert_eq(atomic_load(&rj), -EDEADLK, "weft_task_join_wait in a task");
    cr_assert_eq(atomic_load(&rr), -EDEADLK, "weft_runtime_run in a task");
    cr_assert_eq(atomic_load(&rs), -EDEADLK, "weft_runtime_shutdown in a task");
    cr_assert_eq(atomic_load(&rf), -EDEADLK, "weft_runtime_free in a task");
    /* The runtime is untouched and the handle still ours. */
    wt_flag_raise(&f);
    cr_assert_eq(weft_task_join_wait(other, weft_now() + WAIT_NS, &out), 0);
    cr_assert_eq(out, 66);
    wt_flag_destroy(&f);
    cr_assert_eq(atomic_load(&c.drops), 1);
    cr_assert_eq(wt_finish(rt), 0);
}

/* The same calls from the start and stop hooks, which run on worker threads. */
typedef struct hook_rc {
    weft_runtime_t *_Atomic rt;
    _Atomic int shutdown_rc, free_rc, calls;
} hook_rc_t;

static hook_rc_t HR;

static void stop_hook(unsigned index, void *arg)
{
    (void)index;
    (void)arg;
    weft_runtime_t *rt = atomic_load(&HR.rt);
    if (!rt)
        return;
    atomic_store(&HR.shutdown_rc, weft_runtime_shutdown(rt, weft_now()));
    atomic_fetch_add(&HR.calls, 1);
}

Test(badinput, blocking_from_stop_hook_is_edeadlk, .timeout = 30)
{
    memset(&HR, 0, sizeof HR);
    weft_config_t cfg;
    weft_config_init(&cfg);
    cfg.workers = 1;
    cfg.on_thread_stop = stop_hook;
    weft_runtime_t *rt = wt_runtime_cfg(&cfg);
    atomic_store(&HR.rt, rt);
    /* weft_runtime_shutdown holds the runtime's lock while it joins the
     * worker whose stop hook calls weft_runtime_shutdown: only -EDEADLK
     * (returned before taking the lock) keeps that from hanging. */
    cr_assert_eq(weft_runtime_shutdown(rt, weft_now() + 5 * WT_SEC), 0);
    cr_assert_eq(atomic_load(&HR.calls), 1);
    cr_assert_eq(atomic_load(&HR.shutdown_rc), -EDEADLK);
    cr_assert_eq(weft_runtime_free(rt), 0);
}

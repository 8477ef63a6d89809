/*
 * join.c - join handles: join as a future, blocking join from a foreign
 * thread, detach, cancel, status and id.
 *
 * A handle is the task pointer and owns one reference plus JOIN_INTEREST.
 * The join_waker slot follows the JOIN_WAKER protocol in state.c: while the
 * bit is clear (and the task not complete) only the handle touches the slot.
 */
#include <sched.h>

#include <weft/task.h>

#include "platform/platform.h"
#include "task/task.h"

static weft__task_t *handle_task(const weft_task_t *h)
{
    weft__task_t *t = (weft__task_t *)h;
    if (!t || t->magic != WEFT__TASK_MAGIC)
        return NULL;
    return t;
}

/* Give the handle's reference and interest back. */
static void drop_handle(weft__task_t *t)
{
    if (weft__state_drop_join_fast(t))
        return;
    if (weft__state_join_dropped(t))
        weft_waker_drop(&t->join_waker);
    weft__task_drop_ref(t);
}

/* COMPLETE has been observed with acquire: read the output, consume. */
static int take_output(weft__task_t *t, int64_t *out)
{
    int rc = t->out_cancelled ? -ECANCELED : 0;
    if (rc == 0 && out)
        *out = t->output;
    drop_handle(t);
    return rc;
}

static bool is_complete(weft__task_t *t)
{
    /* Acquire: pairs with the release in to_complete, so the output and
     * out_cancelled written before it are visible. */
    return atomic_load_explicit(&t->state, memory_order_acquire) & WEFT__COMPLETE;
}

/*
 * Install *w as the join waker. Returns false if the task completed first
 * (the caller then reads the output).
 */
static bool install_waker(weft__task_t *t, const weft_waker_t *w)
{
    /* Acquire: pairs with the completer's fetch_and of JOIN_WAKER, after
     * which the slot is ours again and its old waker may be dropped. */
    uint64_t s = atomic_load_explicit(&t->state, memory_order_acquire);
    if (s & WEFT__JOIN_WAKER) {
        if (weft_waker_will_wake(&t->join_waker, w))
            return true;
        if (!weft__state_unset_join_waker(t))
            return false;
    }
    /* The slot is ours now. */
    weft_waker_drop(&t->join_waker);
    weft_waker_clone(w, &t->join_waker);
    return weft__state_set_join_waker(t);
}

int weft_task_join_poll(weft_task_t *h, weft_cx_t *cx, int64_t *out)
{
    weft__task_t *t = handle_task(h);
    if (!t || !cx)
        return -EINVAL;
    if (!is_complete(t)) {
        if (weft_coop_proceed(cx) == WEFT_PENDING)
            return WEFT_PENDING;
        if (install_waker(t, weft_cx_waker(cx)))
            return WEFT_PENDING;
        is_complete(t); /* acquire the completed state */
    }
    return take_output(t, out);
}

/* ---- blocking join ------------------------------------------------------- */

/* A waker that sets a flag and wakes a futex; lives on the waiter's stack. */
typedef struct thread_waiter {
    _Atomic uint32_t woken;
} thread_waiter_t;

static void th_wake_by_ref(const weft_waker_t *w)
{
    thread_waiter_t *tw = w->data;
    /* Release: pairs with the waiter's acquire load of `woken`. */
    atomic_store_explicit(&tw->woken, 1, memory_order_release);
    weft__futex_wake(&tw->woken, 1);
}
static void th_clone(const weft_waker_t *src, weft_waker_t *dst)
{
    *dst = *src;
}
static void th_wake(weft_waker_t *w)
{
    th_wake_by_ref(w);
}
static void th_drop(weft_waker_t *w)
{
    (void)w;
}
static const weft_waker_vtable_t thread_waker_vtable = {th_clone, th_wake, th_wake_by_ref, th_drop};

int weft_task_join_wait(weft_task_t *h, int64_t deadline, int64_t *out)
{
    weft__task_t *t = handle_task(h);
    if (!t)
        return -EINVAL;
    if (is_complete(t))
        return take_output(t, out);
    if (weft__task_on_runtime_thread())
        return -EDEADLK;
    thread_waiter_t tw = {0};
    weft_waker_t w = {&thread_waker_vtable, &tw};
    int rc = 0;
    if (install_waker(t, &w)) {
        for (;;) {
            /* Acquire: pairs with th_wake_by_ref's release. */
            if (atomic_load_explicit(&tw.woken, memory_order_acquire) || is_complete(t))
                break;
            if (weft__time_now_ns() >= deadline) {
                rc = -ETIMEDOUT;
                break;
            }
            weft__futex_wait(&tw.woken, 0, deadline);
        }
        if (rc == -ETIMEDOUT && weft__state_unset_join_waker(t)) {
            weft_waker_drop(&t->join_waker); /* ours again; nobody woke it */
            return -ETIMEDOUT;
        }
        /* Complete. The completer may still be reading our stack waker
         * until it clears JOIN_WAKER (right after waking it): wait for that
         * before this frame goes away. Acquire pairs with its fetch_and. */
        while (atomic_load_explicit(&t->state, memory_order_acquire) & WEFT__JOIN_WAKER)
            sched_yield();
        t->join_waker = WEFT_WAKER_NONE; /* th_drop is a no-op */
    }
    is_complete(t);
    return take_output(t, out);
}

/* ---- the rest -------------------------------------------------------------- */

int weft_task_detach(weft_task_t *h)
{
    weft__task_t *t = handle_task(h);
    if (!t)
        return -EINVAL;
    drop_handle(t);
    return 0;
}

int weft_task_cancel(weft_task_t *h)
{
    weft__task_t *t = handle_task(h);
    if (!t)
        return -EINVAL;
    if (weft__state_notify_and_cancel(t))
        t->sched->ops->schedule(t->sched, t, false);
    return 0;
}

int weft_task_is_finished(const weft_task_t *h)
{
    weft__task_t *t = handle_task(h);
    if (!t)
        return -EINVAL;
    return is_complete(t) ? 1 : 0;
}

int64_t weft_task_id(const weft_task_t *h)
{
    weft__task_t *t = handle_task(h);
    return t ? t->id : -EINVAL;
}

int64_t weft_task_current_id(void)
{
    return weft__task_current_id();
}

/*
 * harness.c - polling, completing and cancelling a task.
 *
 * Owns: the sequence run -> poll -> (idle | re-queue | complete) and the
 * completion protocol (wake the joiner, release from the owned list, drop
 * the running reference). Invariant: a task's future is polled or dropped
 * only by the thread holding RUNNING, and dropped exactly once.
 */
#include <string.h>

#include "coro/coro.h"
#include "task/task.h"

static _Thread_local int64_t current_id;
static _Thread_local bool runtime_thread;

__attribute__((noinline)) void weft__task_mark_runtime_thread(bool on)
{
    runtime_thread = on;
}

__attribute__((noinline)) bool weft__task_on_runtime_thread(void)
{
    return runtime_thread;
}

__attribute__((noinline)) int64_t weft__task_current_id(void)
{
    return current_id;
}

void weft__task_init(weft__task_t *t, weft__sched_base_t *sched, const weft_future_vtable_t *fut,
                     int64_t id, bool detached)
{
    atomic_init(&t->state, detached ? WEFT__INITIAL_STATE_DETACHED : WEFT__INITIAL_STATE);
    t->next = NULL;
    t->fut = fut;
    t->sched = sched;
    t->id = id;
    t->owned_prev = t->owned_next = NULL;
    t->join_waker = WEFT_WAKER_NONE;
    t->output = 0;
    t->magic = WEFT__TASK_MAGIC;
    t->out_cancelled = 0;
    t->yield_held = 0;
    t->pinned = 0;
}

static void dealloc(weft__task_t *t)
{
    t->magic = WEFT__TASK_DEAD;
    t->sched->ops->dealloc(t->sched, t);
}

void weft__task_drop_ref(weft__task_t *t)
{
    if (weft__state_ref_dec(t))
        dealloc(t);
}

/*
 * Caller holds RUNNING; the output (or out_cancelled) is written.
 * The task leaves the owned list first (the shutdown sweep never touches a
 * RUNNING task, so this is safe) so that, with no join waker to wake, the
 * state change and the reference drop are a single CAS.
 */
static void complete(weft__task_t *t)
{
    t->yield_held = 0; /* may still be set from the pop (run_notified) */
    /* One reference for the running poll, one more if the owned list held
     * one. */
    unsigned n = 1 + t->sched->ops->release(t->sched, t);
    switch (weft__state_complete_fast(t, n)) {
    case WEFT__TR_COMPLETE_DONE:
        return;
    case WEFT__TR_COMPLETE_DEALLOC:
        dealloc(t);
        return;
    case WEFT__TR_COMPLETE_SLOW:
        break;
    }
    uint64_t snap = weft__state_to_complete(t);
    if ((snap & WEFT__JOIN_INTEREST) && (snap & WEFT__JOIN_WAKER)) {
        /* The slot is published and stays readable while JOIN_WAKER is set. */
        weft_waker_wake_by_ref(&t->join_waker);
        if (weft__state_unset_waker_after_complete(t))
            weft_waker_drop(&t->join_waker); /* the handle left meanwhile */
    }
    if (weft__state_to_terminal(t, n))
        dealloc(t);
}

void weft__task_cancel_running(weft__task_t *t)
{
    if (t->fut->drop)
        t->fut->drop(weft__task_state(t));
    t->out_cancelled = 1;
    complete(t);
}

/* Before a poll of a task holding RUNNING. */
static void held_begin(weft__task_t *t, int *budget, uint16_t worker, weft_cx_t *cx)
{
    if (t->worker != worker)
        t->worker = worker; /* no store when unchanged: keeps the line clean */
    cx->waker_ = weft__task_waker_ref(t);
    cx->task_ = t;
    cx->budget_ = budget;
    cx->yield_ = 0;
    current_id = t->id;
}

/* After it: complete, re-queue or go idle. */
static void held_end(weft__task_t *t, const weft_cx_t *cx, weft_poll_t r, int64_t out)
{
    current_id = 0;
    if (r == WEFT_READY) {
        if (t->fut->drop)
            t->fut->drop(weft__task_state(t));
        t->output = out;
        complete(t);
        return;
    }
    if (cx->yield_ && !(atomic_load_explicit(&t->state, memory_order_relaxed) & WEFT__CANCELLED)) {
        /* Yield: re-queue at the back still holding RUNNING (task.h).
         * Relaxed is enough: a cancel we miss here is seen at the next
         * pop, which checks CANCELLED again before polling. */
        if (!t->yield_held)
            t->yield_held = 1; /* usually still set: no store, see run_notified */
        t->sched->ops->schedule(t->sched, t, true);
        return;
    }
    if (t->yield_held)
        t->yield_held = 0; /* before RUNNING goes: nothing holds it for us now */
    switch (weft__state_to_idle(t)) {
    case WEFT__TR_IDLE_OK:
        return;
    case WEFT__TR_IDLE_NOTIFIED:
        t->sched->ops->schedule(t->sched, t, true);
        return;
    case WEFT__TR_IDLE_DEALLOC:
        dealloc(t);
        return;
    case WEFT__TR_IDLE_CANCELLED:
        if (weft__task_is_coro(t)) {
            /* Resume it so that it sees the cancel (task.h); re-queue
             * still holding RUNNING, as a yield does. */
            t->yield_held = 1;
            t->sched->ops->schedule(t->sched, t, true);
            return;
        }
        weft__task_cancel_running(t);
        return;
    }
}

/* Poll a task holding RUNNING, except that a coroutine to resume is left
 * to the caller's switch (true). */
static bool poll_held(weft__task_t *t, int *budget, uint16_t worker, weft__run_t *run)
{
    held_begin(t, budget, worker, &run->cx);
    int64_t out = 0;
    weft_poll_t r;
    if (weft__task_is_coro(t)) {
        weft__coro_t *c = weft__task_state(t);
        if (!c->stack && !c->migratable && t->sched->ops->place &&
            t->sched->ops->place(t->sched, t, &c->credit)) {
            current_id = 0; /* sent to another worker before it first ran */
            return false;
        }
        if (weft__coro_resume_begin(c, &run->cx, &out, run))
            return true;
        r = WEFT_READY; /* ended without running: cancelled first, no stack */
    } else {
        r = t->fut->poll(weft__task_state(t), &run->cx, &out);
    }
    held_end(t, &run->cx, r, out);
    return false;
}

void weft__task_run_end(weft__task_t *t, weft__run_t *run)
{
    int64_t out = 0;
    weft_poll_t r = weft__coro_resume_end(weft__task_state(t), &out);
    held_end(t, &run->cx, r, out);
}

/* A cancelled task holding RUNNING: a coroutine is resumed to see the
 * cancel itself (task.h), unless this is the shutdown sweep; any other
 * task is dropped. */
static bool run_cancelled(weft__task_t *t, int *budget, uint16_t worker, bool force_cancel,
                          weft__run_t *run)
{
    if (weft__task_is_coro(t) && !force_cancel)
        return poll_held(t, budget, worker, run);
    weft__task_cancel_running(t);
    return false;
}

static bool run_notified(weft__task_t *t, int *budget, uint16_t worker, bool force_cancel,
                         weft__run_t *run)
{
    if (t->yield_held) {
        /* We inherited RUNNING from the yield (the queue's release/acquire
         * orders this plain flag). The flag stays set while we hold
         * RUNNING and is cleared only when the run ends any other way than
         * by yielding again (held_end, complete): a task yielding in a loop
         * then writes nothing to its cell (task.h). */
        uint64_t s = atomic_load_explicit(&t->state, memory_order_acquire);
        /* Acquire: pairs with the release RMW of a cancel that set
         * CANCELLED while the task sat in the queue. */
        if (force_cancel || (s & WEFT__CANCELLED))
            return run_cancelled(t, budget, worker, force_cancel, run);
        return poll_held(t, budget, worker, run);
    }
    if (force_cancel)
        atomic_fetch_or_explicit(&t->state, WEFT__CANCELLED, memory_order_relaxed);
    switch (weft__state_to_running(t)) {
    case WEFT__TR_SUCCESS:
        return poll_held(t, budget, worker, run);
    case WEFT__TR_CANCELLED:
        return run_cancelled(t, budget, worker, force_cancel, run);
    case WEFT__TR_FAILED:
        return false;
    case WEFT__TR_DEALLOC:
        dealloc(t);
        return false;
    }
    return false;
}

bool weft__task_run_start(weft__task_t *t, int *budget, uint16_t worker, weft__run_t *r)
{
    return run_notified(t, budget, worker, false, r);
}

void weft__task_run(weft__task_t *t, int *budget, uint16_t worker, bool force_cancel)
{
    weft__run_t r;
    if (run_notified(t, budget, worker, force_cancel, &r)) {
        weft__coro_switch_in(&r);
        weft__task_run_end(t, &r);
    }
}

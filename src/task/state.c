/*
 * state.c - every transition of the task state word (bits in task.h).
 *
 * Each transition is one CAS loop or one RMW. Orderings:
 *  - Transitions that hand the future (or its output) from one thread to
 *    another use acq_rel: to_running acquires what the previous poller
 *    released in to_idle / to_complete; the joiner acquires the output
 *    written before to_complete's release.
 *  - ref_inc is relaxed (a reference is only ever cloned from one already
 *    held, so the count cannot reach zero concurrently); ref_dec is acq_rel
 *    so that the thread freeing the cell sees every write made through the
 *    other references.
 *  - Waking an idle task (setting NOTIFIED) is acq_rel: it releases the
 *    waker's writes (the reason for the wake) to the worker that acquires
 *    the task in to_running.
 */
#include <stdio.h>
#include <stdlib.h>

#include "task/task.h"

static inline uint64_t load(weft__task_t *t)
{
    /* Acquire: pairs with the release of whichever CAS last published a
     * state; a failed or skipped CAS below relies on what it saw. */
    return atomic_load_explicit(&t->state, memory_order_acquire);
}

static inline bool cas(weft__task_t *t, uint64_t *cur, uint64_t next)
{
    /* acq_rel on success: see the file comment; acquire on failure, since
     * the loop recomputes from the fresh value. */
    return atomic_compare_exchange_weak_explicit(&t->state, cur, next, memory_order_acq_rel,
                                                 memory_order_acquire);
}

static inline uint64_t refs(uint64_t s)
{
    return s >> 6;
}

weft__tr_running_t weft__state_to_running(weft__task_t *t)
{
    uint64_t cur = load(t);
    for (;;) {
        uint64_t next = cur;
        weft__tr_running_t r;
        if ((cur & (WEFT__RUNNING | WEFT__COMPLETE)) == 0) {
            next = (cur | WEFT__RUNNING) & ~WEFT__NOTIFIED;
            r = (cur & WEFT__CANCELLED) ? WEFT__TR_CANCELLED : WEFT__TR_SUCCESS;
        } else {
            /* Not idle: this Notified is stale; drop its reference. */
            next = cur - WEFT__REF_ONE;
            r = refs(next) == 0 ? WEFT__TR_DEALLOC : WEFT__TR_FAILED;
        }
        if (cas(t, &cur, next))
            return r;
    }
}

weft__tr_idle_t weft__state_to_idle(weft__task_t *t)
{
    uint64_t cur = load(t);
    for (;;) {
        if (cur & WEFT__CANCELLED)
            return WEFT__TR_IDLE_CANCELLED;
        uint64_t next = cur & ~WEFT__RUNNING;
        weft__tr_idle_t r;
        if (cur & WEFT__NOTIFIED) {
            /* Woken while running: the running reference becomes the
             * new Notified's reference. */
            r = WEFT__TR_IDLE_NOTIFIED;
        } else {
            next -= WEFT__REF_ONE;
            r = refs(next) == 0 ? WEFT__TR_IDLE_DEALLOC : WEFT__TR_IDLE_OK;
        }
        if (cas(t, &cur, next))
            return r;
    }
}

uint64_t weft__state_to_complete(weft__task_t *t)
{
    /* Release: publishes the output to the joiner's acquire of COMPLETE;
     * acquire: we may read join_waker published by set_join_waker. */
    return atomic_fetch_xor_explicit(&t->state, WEFT__RUNNING | WEFT__COMPLETE,
                                     memory_order_acq_rel) ^
           (WEFT__RUNNING | WEFT__COMPLETE);
}

weft__tr_complete_t weft__state_complete_fast(weft__task_t *t, unsigned count)
{
    uint64_t cur = load(t);
    for (;;) {
        /* A published join waker must be woken between COMPLETE and the
         * reference drop: take the two-step path. */
        if ((cur & (WEFT__JOIN_INTEREST | WEFT__JOIN_WAKER)) ==
            (WEFT__JOIN_INTEREST | WEFT__JOIN_WAKER))
            return WEFT__TR_COMPLETE_SLOW;
        if (refs(cur) < count) {
            fprintf(stderr, "weft: task reference count underflow\n");
            abort();
        }
        /* RUNNING -> COMPLETE and drop `count` references in one CAS.
         * acq_rel: release publishes the output to the joiner (as in
         * to_complete); acquire makes this thread see every write made
         * through the other references before it may free the cell. */
        uint64_t next = (cur ^ (WEFT__RUNNING | WEFT__COMPLETE)) - count * WEFT__REF_ONE;
        if (cas(t, &cur, next))
            return refs(next) == 0 ? WEFT__TR_COMPLETE_DEALLOC : WEFT__TR_COMPLETE_DONE;
    }
}

bool weft__state_unset_waker_after_complete(weft__task_t *t)
{
    /* Hands the join_waker slot back to the handle; acq_rel pairs with the
     * handle's join_dropped CAS. Returns true if JOIN_INTEREST is gone, in
     * which case the runtime must drop the waker itself. */
    uint64_t prev = atomic_fetch_and_explicit(&t->state, ~WEFT__JOIN_WAKER, memory_order_acq_rel);
    return (prev & WEFT__JOIN_INTEREST) == 0;
}

bool weft__state_to_terminal(weft__task_t *t, unsigned count)
{
    /* acq_rel: see ref_dec. */
    uint64_t prev =
        atomic_fetch_sub_explicit(&t->state, count * WEFT__REF_ONE, memory_order_acq_rel);
    if (refs(prev) < count) {
        fprintf(stderr, "weft: task reference count underflow\n");
        abort();
    }
    return refs(prev) == count;
}

bool weft__state_notify_by_val(weft__task_t *t, bool *dealloc)
{
    uint64_t cur = load(t);
    *dealloc = false;
    for (;;) {
        uint64_t next;
        bool submit = false;
        if (cur & WEFT__RUNNING) {
            /* The poller re-queues after the poll; our ref goes away. */
            next = (cur | WEFT__NOTIFIED) - WEFT__REF_ONE;
        } else if (cur & (WEFT__COMPLETE | WEFT__NOTIFIED)) {
            next = cur - WEFT__REF_ONE;
            *dealloc = refs(next) == 0;
        } else {
            /* Idle: our reference becomes the Notified's. */
            next = cur | WEFT__NOTIFIED;
            submit = true;
        }
        if (cas(t, &cur, next))
            return submit;
    }
}

bool weft__state_notify_by_ref(weft__task_t *t)
{
    uint64_t cur = load(t);
    for (;;) {
        uint64_t next;
        bool submit = false;
        if (cur & (WEFT__COMPLETE | WEFT__NOTIFIED)) {
            /* Nothing to change, but write the same value anyway: the
             * release RMW orders the waker's prior writes before the poll
             * that is already due (its to_running / to_idle acquires it). */
            next = cur;
        } else if (cur & WEFT__RUNNING) {
            next = cur | WEFT__NOTIFIED;
        } else {
            next = (cur | WEFT__NOTIFIED) + WEFT__REF_ONE;
            submit = true;
        }
        if (cas(t, &cur, next))
            return submit;
    }
}

bool weft__state_notify_and_cancel(weft__task_t *t)
{
    uint64_t cur = load(t);
    for (;;) {
        uint64_t next;
        bool submit = false;
        if (cur & (WEFT__CANCELLED | WEFT__COMPLETE))
            return false;
        if (cur & WEFT__RUNNING) {
            next = cur | WEFT__CANCELLED | WEFT__NOTIFIED;
        } else if (cur & WEFT__NOTIFIED) {
            next = cur | WEFT__CANCELLED;
        } else {
            next = (cur | WEFT__CANCELLED | WEFT__NOTIFIED) + WEFT__REF_ONE;
            submit = true;
        }
        if (cas(t, &cur, next))
            return submit;
    }
}

bool weft__state_to_shutdown(weft__task_t *t)
{
    uint64_t cur = load(t);
    for (;;) {
        uint64_t next = cur | WEFT__CANCELLED;
        bool idle = (cur & (WEFT__RUNNING | WEFT__COMPLETE)) == 0;
        if (idle)
            next |= WEFT__RUNNING;
        if (cas(t, &cur, next))
            return idle;
    }
}

void weft__state_ref_inc(weft__task_t *t)
{
    /* Relaxed: see the file comment. */
    uint64_t prev = atomic_fetch_add_explicit(&t->state, WEFT__REF_ONE, memory_order_relaxed);
    if (refs(prev) >= (UINT64_MAX >> 7)) {
        fprintf(stderr, "weft: task reference count overflow\n");
        abort();
    }
}

bool weft__state_ref_dec(weft__task_t *t)
{
    return weft__state_to_terminal(t, 1);
}

bool weft__state_drop_join_fast(weft__task_t *t)
{
    /* From the exact initial state (never polled, no waker) one CAS drops
     * the handle's reference and interest. acq_rel like every transition. */
    uint64_t cur = WEFT__INITIAL_STATE;
    return atomic_compare_exchange_strong_explicit(
        &t->state, &cur, (WEFT__INITIAL_STATE - WEFT__REF_ONE) & ~WEFT__JOIN_INTEREST,
        memory_order_acq_rel, memory_order_relaxed);
}

bool weft__state_join_dropped(weft__task_t *t)
{
    uint64_t cur = load(t);
    for (;;) {
        uint64_t next = cur & ~WEFT__JOIN_INTEREST;
        /* Before completion the handle may take the slot back at once; after
         * it, the slot is the completer's while JOIN_WAKER stays set. */
        if (!(cur & WEFT__COMPLETE))
            next &= ~WEFT__JOIN_WAKER;
        if (cas(t, &cur, next))
            return (next & WEFT__JOIN_WAKER) == 0;
    }
}

bool weft__state_set_join_waker(weft__task_t *t)
{
    uint64_t cur = load(t);
    for (;;) {
        if (cur & WEFT__COMPLETE)
            return false;
        /* Release (in cas): publishes the join_waker write to the
         * completer, which acquires it in to_complete. */
        if (cas(t, &cur, cur | WEFT__JOIN_WAKER))
            return true;
    }
}

bool weft__state_unset_join_waker(weft__task_t *t)
{
    uint64_t cur = load(t);
    for (;;) {
        if (cur & WEFT__COMPLETE)
            return false;
        if (cas(t, &cur, cur & ~WEFT__JOIN_WAKER))
            return true;
    }
}

/*
 * timer.c - the timer entry's public calls: init, poll, cancel.
 *
 * Only the entry's owner (the task polling it) calls these, one thread at
 * a time. The owner reads state_ without the wheel lock (acquire: pairs
 * with the release store of FIRED by the thread that fired the entry, see
 * timers.h) and takes the lock only to arm, re-arm, change the waker or
 * cancel. A re-poll of an armed entry with the same deadline and the same
 * waker (the usual spurious poll) takes no lock: `seen_` remembers which
 * waker the wheel holds a clone of.
 */
#include <stdatomic.h>
#include <string.h>

#include <weft/common.h>

#include "time/timers.h"

void weft_timer_init(weft_timer_t *t)
{
    if (!t)
        return;
    memset(t, 0, sizeof *t);
    atomic_init(&t->state_, WEFT__TIMER_IDLE);
}

int weft_timer_poll(weft_timer_t *t, int64_t deadline, weft_cx_t *cx)
{
    if (!t || !cx)
        return -EINVAL;
    /* Acquire: pairs with the firing thread's release store of FIRED, so
     * the entry is ours again once we see it (timers.h). */
    uint32_t s = atomic_load_explicit(&t->state_, memory_order_acquire);
    if (s == WEFT__TIMER_FIRED && deadline <= t->deadline_)
        return WEFT_READY;
    if (deadline <= weft_now()) {
        if (s == WEFT__TIMER_ARMED)
            weft__timers_cancel(t->wheel_, t);
        return WEFT_READY;
    }
    const weft_waker_t *w = weft_cx_waker(cx);
    if (s == WEFT__TIMER_ARMED && deadline == t->deadline_ && weft_waker_will_wake(&t->seen_, w))
        return WEFT_PENDING;
    weft__timers_t *tm = s == WEFT__TIMER_ARMED ? t->wheel_ : weft__timers_current();
    if (!tm)
        return -EPERM;
    if (deadline == WEFT_FOREVER) { /* never fires: nothing to arm */
        if (s == WEFT__TIMER_ARMED)
            weft__timers_cancel(tm, t);
        return WEFT_PENDING;
    }
    return weft__timers_arm(tm, t, deadline, w) ? WEFT_READY : WEFT_PENDING;
}

void weft_timer_cancel(weft_timer_t *t)
{
    if (!t)
        return;
    /* Acquire: as in weft_timer_poll; a FIRED entry needs nothing. */
    if (atomic_load_explicit(&t->state_, memory_order_acquire) == WEFT__TIMER_ARMED)
        weft__timers_cancel(t->wheel_, t);
}

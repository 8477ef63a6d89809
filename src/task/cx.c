/*
 * cx.c - the poll context, the cooperative budget and yield.
 *
 * The budget counter lives in the worker and is shared by every future
 * polled within one task poll (and by LIFO successors run in the same
 * tick). A context built outside a worker has no budget: proceed always
 * succeeds there.
 */
#include "task/task.h"

const weft_waker_t *weft_cx_waker(weft_cx_t *cx)
{
    return cx ? &cx->waker_ : NULL;
}

int weft_cx_init_child(weft_cx_t *child, weft_cx_t *parent, const weft_waker_t *waker)
{
    if (!child || !parent || !waker)
        return -EINVAL;
    child->waker_ = *waker;
    child->task_ = NULL; /* a yield must wake through the child's waker */
    child->budget_ = parent->budget_;
    child->yield_ = 0;
    return 0;
}

int weft_coop_proceed(weft_cx_t *cx)
{
    if (!cx)
        return -EINVAL;
    if (!cx->budget_ || *cx->budget_ > 0) {
        if (cx->budget_)
            --*cx->budget_;
        return 0;
    }
    weft_waker_wake_by_ref(&cx->waker_);
    return WEFT_PENDING;
}

void weft_yield_init(weft_yield_t *y)
{
    if (y)
        y->polled = 0;
}

int weft_yield_poll(weft_yield_t *y, weft_cx_t *cx)
{
    if (!y || !cx)
        return -EINVAL;
    if (y->polled)
        return WEFT_READY;
    y->polled = 1;
    if (cx->task_)
        cx->yield_ = 1; /* the worker re-queues the task at the back */
    else
        weft_waker_wake_by_ref(&cx->waker_);
    return WEFT_PENDING;
}

/*
 * waker.c - the public waker helpers and the task waker.
 *
 * A task waker is {&task_waker_vtable, task}; each owned copy holds one
 * reference on the task. The waker borrowed by a poll holds none.
 */
#include "task/task.h"

int weft_waker_clone(const weft_waker_t *src, weft_waker_t *dst)
{
    if (!src || !dst)
        return -EINVAL;
    if (!src->vtable) {
        *dst = WEFT_WAKER_NONE;
        return 0;
    }
    src->vtable->clone(src, dst);
    return 0;
}

int weft_waker_wake(weft_waker_t *w)
{
    if (!w)
        return -EINVAL;
    if (w->vtable) {
        weft_waker_t tmp = *w;
        *w = WEFT_WAKER_NONE;
        tmp.vtable->wake(&tmp);
    }
    return 0;
}

int weft_waker_wake_by_ref(const weft_waker_t *w)
{
    if (!w)
        return -EINVAL;
    if (w->vtable)
        w->vtable->wake_by_ref(w);
    return 0;
}

int weft_waker_drop(weft_waker_t *w)
{
    if (!w)
        return -EINVAL;
    if (w->vtable) {
        weft_waker_t tmp = *w;
        *w = WEFT_WAKER_NONE;
        tmp.vtable->drop(&tmp);
    }
    return 0;
}

bool weft_waker_will_wake(const weft_waker_t *a, const weft_waker_t *b)
{
    return a && b && a->vtable == b->vtable && a->data == b->data;
}

/* ---- task waker ---------------------------------------------------------- */

static void tw_clone(const weft_waker_t *src, weft_waker_t *dst)
{
    weft__state_ref_inc((weft__task_t *)src->data);
    *dst = *src;
}

static void tw_wake(weft_waker_t *w)
{
    weft__task_t *t = w->data;
    bool dealloc;
    if (weft__state_notify_by_val(t, &dealloc))
        t->sched->ops->schedule(t->sched, t, false);
    else if (dealloc)
        t->sched->ops->dealloc(t->sched, t);
}

static void tw_wake_by_ref(const weft_waker_t *w)
{
    weft__task_t *t = w->data;
    if (weft__state_notify_by_ref(t))
        t->sched->ops->schedule(t->sched, t, false);
}

static void tw_drop(weft_waker_t *w)
{
    weft__task_drop_ref((weft__task_t *)w->data);
}

static const weft_waker_vtable_t task_waker_vtable = {
    .clone = tw_clone,
    .wake = tw_wake,
    .wake_by_ref = tw_wake_by_ref,
    .drop = tw_drop,
};

weft_waker_t weft__task_waker_ref(weft__task_t *t)
{
    return (weft_waker_t){&task_waker_vtable, t};
}

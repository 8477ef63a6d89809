/*
 * common/probe.h - run a future inside a task, but give it a counting
 * thread waker (wt_thread_waker_t) instead of the task's own, so that a
 * test can tell whether the future left a clone of its waker somewhere
 * (an io slot, a timer) after it finished or was dropped: wt_tw_live()
 * must then be 0. Header-only.
 *
 * The thread waker does not wake the task, so the probe re-polls by
 * yielding: keep the inner wait short (a deadline of some milliseconds)
 * or let the probe drop the inner future after a few polls.
 *
 * Runs on a worker: never asserts; the test thread reads the fields after
 * joining the task.
 */
#ifndef WEFT_TESTS_PROBE_H
#define WEFT_TESTS_PROBE_H

#include "common/wt.h"

typedef struct wt_probe {
    const weft_future_vtable_t *vt;
    void *inner;    /* the future's state, owned by the test */
    int drop_after; /* > 0: drop the inner future after this many pending polls */
    int pending;    /* pending polls so far */
    int finished;   /* 1: the inner future was ready (then v is its output), 2: dropped */
    int64_t v;
    wt_thread_waker_t tw;
} wt_probe_t;

/* The spawned state is a pointer to the probe. */
static inline weft_poll_t wt_probe_poll(void *st, weft_cx_t *cx, int64_t *out)
{
    wt_probe_t *p = *(wt_probe_t **)st;
    weft_waker_t w = wt_thread_waker(&p->tw);
    weft_cx_t child;
    weft_cx_init_child(&child, cx, &w);
    int64_t v = 0;
    if (p->vt->poll(p->inner, &child, &v) == WEFT_READY) {
        p->v = v;
        p->finished = 1;
    } else if (p->drop_after > 0 && ++p->pending >= p->drop_after) {
        p->finished = 2;
    } else {
        weft_waker_wake_by_ref(weft_cx_waker(cx)); /* yield, poll again */
        return WEFT_PENDING;
    }
    if (p->vt->drop)
        p->vt->drop(p->inner); /* after READY too, as the runtime does */
    *out = 0;
    return WEFT_READY;
}

static const weft_future_vtable_t wt_probe_vt = {wt_probe_poll, NULL, "wt_probe"};

/* Run the probe to its end on rt; aborts on a runtime error. */
static inline void wt_probe_run(weft_runtime_t *rt, wt_probe_t *p)
{
    weft_task_t *h;
    int rc = weft_spawn(rt, &wt_probe_vt, &p, sizeof p, &h);
    if (rc == 0)
        rc = weft_task_join_wait(h, weft_now() + 30 * WT_SEC, NULL);
    if (rc != 0)
        wt_die("wt_probe_run", rc);
}

#endif /* WEFT_TESTS_PROBE_H */

/*
 * task/coop.c - weft_yield_poll and the cooperative budget.
 *
 * Ordering tests use one worker and a blocker task so that every task
 * involved is queued before the first of them runs; the order of polls is
 * then fixed by the scheduler's rules, not by timing.
 */
#include <criterion/criterion.h>

#include "common/wt.h"

#define WAIT_NS (10 * WT_SEC)

#include "common/held.h"

/* ---- a poll log shared by the tasks of one test ------------------------------- */

#define LOG_MAX 256

typedef struct plog {
    _Atomic int n;
    int who[LOG_MAX];
} plog_t;

static void plog_add(plog_t *l, int who)
{
    int i = atomic_fetch_add(&l->n, 1);
    if (i < LOG_MAX)
        l->who[i] = who;
}

/* Yields `left` times, logging every poll under `who`. */
typedef struct logged_yielder {
    wt_counts_t *c;
    plog_t *log;
    int who;
    int left;
    weft_yield_t y;
} logged_yielder_t;

static weft_poll_t logged_yielder_poll(void *st, weft_cx_t *cx, int64_t *out)
{
    logged_yielder_t *s = st;
    atomic_fetch_add(&s->c->polls, 1);
    plog_add(s->log, s->who);
    if (s->left > 0) {
        /* A fresh yield is pending on its first poll. */
        s->left--;
        weft_yield_init(&s->y);
        if (weft_yield_poll(&s->y, cx) == WEFT_PENDING)
            return WEFT_PENDING;
        s->left = -1000; /* unreachable: make the log show it */
    }
    *out = s->who;
    return WEFT_READY;
}

static const weft_future_vtable_t logged_yielder_vt = {logged_yielder_poll, wt_counted_drop,
                                                       "logged_yielder"};

Test(yield, yield_lets_queued_task_run, .timeout = 30)
{
    weft_runtime_t *rt = wt_runtime(1);
    held_t b;
    hold_worker(rt, &b);
    static plog_t log;
    atomic_store(&log.n, 0);
    wt_counts_t ca, cb;
    wt_counts_init(&ca);
    wt_counts_init(&cb);
    logged_yielder_t a = {&ca, &log, 1, 5, WEFT_YIELD_INIT};
    logged_yielder_t bb = {&cb, &log, 2, 5, WEFT_YIELD_INIT};
    weft_task_t *ha, *hb;
    cr_assert_eq(weft_spawn(rt, &logged_yielder_vt, &a, sizeof a, &ha), 0);
    cr_assert_eq(weft_spawn(rt, &logged_yielder_vt, &bb, sizeof bb, &hb), 0);
    release_worker(&b);
    int64_t out;
    cr_assert_eq(weft_task_join_wait(ha, weft_now() + WAIT_NS, &out), 0);
    cr_assert_eq(weft_task_join_wait(hb, weft_now() + WAIT_NS, &out), 0);
    int n = atomic_load(&log.n);
    cr_assert_eq(n, 12, "each task yields 5 times: 6 polls each (log %d)", n);
    cr_assert_eq(atomic_load(&ca.polls), 6);
    cr_assert_eq(atomic_load(&cb.polls), 6);
    /* Both were queued before either ran: with one worker the polls must
     * strictly alternate. */
    for (int i = 1; i < n; i++)
        cr_assert_neq(log.who[i], log.who[i - 1],
                      "task %d was polled twice in a row at %d: a yield must let the other "
                      "queued task run",
                      log.who[i], i);
    cr_assert_eq(atomic_load(&ca.drops), 1);
    cr_assert_eq(atomic_load(&cb.drops), 1);
    cr_assert_eq(wt_finish(rt), 0);
}

/* Spawns a child from inside (it lands in the LIFO slot), then yields: the
 * yield must go behind the child, never ahead of it. */
typedef struct spawn_yield {
    wt_counts_t *c;
    plog_t *log;
    weft_yield_t y;
    int spawned;
    wt_counts_t *child_c;
} spawn_yield_t;

static weft_poll_t spawn_yield_poll(void *st, weft_cx_t *cx, int64_t *out)
{
    spawn_yield_t *s = st;
    atomic_fetch_add(&s->c->polls, 1);
    plog_add(s->log, 1);
    if (!s->spawned) {
        s->spawned = 1;
        logged_yielder_t child = {s->child_c, s->log, 2, 0, WEFT_YIELD_INIT};
        weft_spawn(weft_runtime_current(), &logged_yielder_vt, &child, sizeof child, NULL);
    }
    if (weft_yield_poll(&s->y, cx) == WEFT_PENDING)
        return WEFT_PENDING;
    *out = 0;
    return WEFT_READY;
}

static const weft_future_vtable_t spawn_yield_vt = {spawn_yield_poll, wt_counted_drop,
                                                    "spawn_yield"};

Test(yield, yield_goes_behind_lifo_child, .timeout = 30)
{
    weft_runtime_t *rt = wt_runtime(1);
    static plog_t log;
    atomic_store(&log.n, 0);
    wt_counts_t c, cc;
    wt_counts_init(&c);
    wt_counts_init(&cc);
    spawn_yield_t st = {&c, &log, WEFT_YIELD_INIT, 0, &cc};
    weft_task_t *h;
    cr_assert_eq(weft_spawn(rt, &spawn_yield_vt, &st, sizeof st, &h), 0);
    cr_assert_eq(weft_task_join_wait(h, weft_now() + WAIT_NS, NULL), 0);
    cr_assert(wt_wait_int_ge(&cc.drops, 1, WAIT_NS));
    cr_assert_eq(atomic_load(&log.n), 3);
    cr_assert_eq(log.who[0], 1);
    cr_assert_eq(log.who[1], 2, "the spawned child must run before the yielding parent");
    cr_assert_eq(log.who[2], 1);
    cr_assert_eq(wt_finish(rt), 0);
}

/* A yield through a child context (a combinator's sub-future) wakes through
 * the child's waker; with the task's own waker the task is polled again. */
typedef struct child_yield {
    wt_counts_t *c;
    weft_yield_t y;
} child_yield_t;

static weft_poll_t child_yield_poll(void *st, weft_cx_t *cx, int64_t *out)
{
    child_yield_t *s = st;
    atomic_fetch_add(&s->c->polls, 1);
    weft_cx_t child;
    if (weft_cx_init_child(&child, cx, weft_cx_waker(cx)) != 0)
        return WEFT_PENDING;
    if (weft_yield_poll(&s->y, &child) == WEFT_PENDING)
        return WEFT_PENDING;
    *out = 3;
    return WEFT_READY;
}

static const weft_future_vtable_t child_yield_vt = {child_yield_poll, wt_counted_drop,
                                                    "child_yield"};

Test(yield, yield_through_child_context, .timeout = 30)
{
    weft_runtime_t *rt = wt_runtime(2);
    wt_counts_t c;
    wt_counts_init(&c);
    child_yield_t st = {&c, WEFT_YIELD_INIT};
    weft_task_t *h;
    cr_assert_eq(weft_spawn(rt, &child_yield_vt, &st, sizeof st, &h), 0);
    int64_t out = 0;
    cr_assert_eq(weft_task_join_wait(h, weft_now() + WAIT_NS, &out), 0);
    cr_assert_eq(out, 3);
    cr_assert_eq(atomic_load(&c.polls), 2);
    cr_assert_eq(atomic_load(&c.drops), 1);
    cr_assert_eq(wt_finish(rt), 0);
}

Test(yield, yield_init_and_ready_after_pending, .timeout = 10)
{
    weft_yield_t y = {7};
    weft_yield_init(&y);
    cr_assert_eq(y.polled, 0);
    weft_yield_t z = WEFT_YIELD_INIT;
    cr_assert_eq(z.polled, 0);
    weft_yield_init(NULL); /* tolerated */
}

/* ---- cooperative budget ------------------------------------------------------------ */

#define COOP_POLLS 3

typedef struct coop {
    wt_counts_t *c;
    int per_poll[COOP_POLLS + 1];
    int npolls;
} coop_t;

static weft_poll_t coop_poll(void *st, weft_cx_t *cx, int64_t *out)
{
    coop_t *s = st;
    atomic_fetch_add(&s->c->polls, 1);
    int i = s->npolls++;
    if (i >= COOP_POLLS) {
        *out = 0;
        return WEFT_READY;
    }
    int n = 0;
    for (;;) {
        int r = weft_coop_proceed(cx);
        if (r == WEFT_PENDING)
            break;
        if (r != 0 || n > 100000) {
            n = -1; /* never out of budget, or an error */
            break;
        }
        n++;
    }
    s->per_poll[i] = n;
    return WEFT_PENDING; /* proceed arranged the wake-up */
}

/* The output is lost in drop-less futures: report through a side array. */
static int coop_seen[COOP_POLLS];
static _Atomic int coop_done;

static void coop_drop(void *st)
{
    coop_t *s = st;
    for (int i = 0; i < COOP_POLLS; i++)
        coop_seen[i] = s->per_poll[i];
    atomic_fetch_add(&s->c->drops, 1);
    atomic_store(&coop_done, 1);
}

static const weft_future_vtable_t coop_vt = {coop_poll, coop_drop, "coop"};

Test(coop, budget_is_128_per_poll, .timeout = 30)
{
    for (unsigned workers = 1; workers <= 2; workers++) {
        weft_runtime_t *rt = wt_runtime(workers);
        wt_counts_t c;
        wt_counts_init(&c);
        atomic_store(&coop_done, 0);
        coop_t st;
        memset(&st, 0, sizeof st);
        st.c = &c;
        weft_task_t *h;
        cr_assert_eq(weft_spawn(rt, &coop_vt, &st, sizeof st, &h), 0);
        cr_assert_eq(weft_task_join_wait(h, weft_now() + WAIT_NS, NULL), 0,
                     "a task out of budget must be polled again");
        cr_assert_eq(atomic_load(&coop_done), 1);
        for (int i = 0; i < COOP_POLLS; i++)
            cr_assert_eq(coop_seen[i], 128,
                         "poll %d: weft_coop_proceed succeeded %d times, want 128", i,
                         coop_seen[i]);
        cr_assert_eq(atomic_load(&c.polls), COOP_POLLS + 1);
        cr_assert_eq(atomic_load(&c.drops), 1);
        cr_assert_eq(wt_finish(rt), 0);
    }
}

/* A task spending its budget must not starve another task on its worker. */
typedef struct hog {
    wt_counts_t *c;
    _Atomic int *stop;
} hog_t;

static weft_poll_t hog_poll(void *st, weft_cx_t *cx, int64_t *out)
{
    hog_t *s = st;
    atomic_fetch_add(&s->c->polls, 1);
    while (!atomic_load(s->stop)) {
        if (weft_coop_proceed(cx) == WEFT_PENDING)
            return WEFT_PENDING;
    }
    *out = 0;
    return WEFT_READY;
}

static const weft_future_vtable_t hog_vt = {hog_poll, wt_counted_drop, "hog"};

Test(coop, busy_task_does_not_starve_worker, .timeout = 30)
{
    weft_runtime_t *rt = wt_runtime(1);
    wt_counts_t hc, rc;
    wt_counts_init(&hc);
    wt_counts_init(&rc);
    _Atomic int stop = 0;
    hog_t hog = {&hc, &stop};
    weft_task_t *hh, *rh;
    cr_assert_eq(weft_spawn(rt, &hog_vt, &hog, sizeof hog, &hh), 0);
    cr_assert(wt_wait_int_ge(&hc.polls, 2, WAIT_NS), "the hog was not re-polled");
    /* With one worker busy re-polling the hog, this task still runs. */
    wt_ready_t r = {&rc, 4};
    cr_assert_eq(weft_spawn(rt, &wt_ready_vt, &r, sizeof r, &rh), 0);
    int64_t out = 0;
    cr_assert_eq(weft_task_join_wait(rh, weft_now() + WAIT_NS, &out), 0);
    cr_assert_eq(out, 4);
    atomic_store(&stop, 1);
    cr_assert_eq(weft_task_join_wait(hh, weft_now() + WAIT_NS, NULL), 0);
    cr_assert_eq(atomic_load(&hc.drops), 1);
    cr_assert_eq(wt_finish(rt), 0);
}

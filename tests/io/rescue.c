/*
 * rescue.c - with the driver thread, a task its timer wakes while the
 * worker that last ran it is stuck in one long poll is not left in that
 * worker's inbox: after WEFT__RESCUE_NS the driver moves it to the inject
 * queue and wakes the idle peer, which runs it (weft__sched_batch_rescue).
 *
 * S is a stackless task that sleeps 2 ms at a time and notes on which
 * worker it ran and how often. L busy-runs inside one poll on S's worker
 * (it is spawned again until it lands there) until S has run three more
 * times, or the watchdog ends it. Without the rescue S's wake-ups wait
 * behind L's poll, and L ends by its watchdog.
 */
#include <criterion/criterion.h>

#include "common/wt.h"
#include "sched/sched.h"

#define WAIT_NS (10 * WT_SEC)
#define STEP_NS (2 * WT_MS)

typedef struct sleeper {
    weft_sleep_t sl;
    _Atomic int *worker; /* where it last ran */
    _Atomic int *runs;
    _Atomic int *stop;
} sleeper_t;

static weft_poll_t sleeper_poll(void *st, weft_cx_t *cx, int64_t *out)
{
    sleeper_t *s = st;
    for (;;) {
        atomic_store(s->worker, (int)weft__worker_current()->index);
        if (atomic_load(s->stop)) {
            *out = 0;
            return WEFT_READY;
        }
        int64_t v;
        if (weft_sleep_vtable.poll(&s->sl, cx, &v) == WEFT_PENDING)
            return WEFT_PENDING;
        atomic_fetch_add(s->runs, 1);
        weft_sleep_init(&s->sl, weft_now() + STEP_NS);
    }
}

static void sleeper_drop(void *st)
{
    sleeper_t *s = st;
    weft_sleep_vtable.drop(&s->sl);
}

static const weft_future_vtable_t sleeper_vt = {sleeper_poll, sleeper_drop, "sleeper"};

typedef struct hog {
    _Atomic int *worker, *runs;
} hog_t;

/* -1: not on S's worker (spawn again); 0: S ran 3 times meanwhile;
 * -ETIMEDOUT: it did not. */
static weft_poll_t hog_poll(void *st, weft_cx_t *cx, int64_t *out)
{
    (void)cx;
    hog_t *h = st;
    if ((int)weft__worker_current()->index != atomic_load(h->worker)) {
        *out = -1;
        return WEFT_READY;
    }
    int before = atomic_load(h->runs);
    int64_t end = weft_now() + WAIT_NS;
    while (atomic_load(h->runs) < before + 3 && weft_now() < end)
        wt_spin_ns(100 * 1000);
    *out = atomic_load(h->runs) >= before + 3 ? 0 : -ETIMEDOUT;
    return WEFT_READY;
}

static const weft_future_vtable_t hog_vt = {hog_poll, NULL, "hog"};

Test(rescue, timer_task_leaves_a_stuck_worker, .timeout = 60)
{
    weft_config_t cfg;
    weft_config_init(&cfg);
    cfg.workers = 2;
    cfg.driver = WEFT_DRIVER_THREAD;
    weft_runtime_t *rt = wt_runtime_cfg(&cfg);
    _Atomic int worker = -1, runs = 0, stop = 0;
    sleeper_t s = {.worker = &worker, .runs = &runs, .stop = &stop};
    weft_sleep_init(&s.sl, weft_now() + STEP_NS);
    weft_task_t *hs;
    cr_assert_eq(weft_spawn(rt, &sleeper_vt, &s, sizeof s, &hs), 0);
    cr_assert(wt_wait_int_ge(&runs, 1, WAIT_NS), "the sleeper never woke");
    int64_t rc = -1;
    int tries = 0;
    for (; rc == -1 && tries < 1000; tries++) {
        hog_t h = {&worker, &runs};
        weft_task_t *hh;
        cr_assert_eq(weft_spawn(rt, &hog_vt, &h, sizeof h, &hh), 0);
        cr_assert_eq(weft_task_join_wait(hh, weft_now() + 2 * WAIT_NS, &rc), 0);
    }
    cr_expect_eq(rc, 0, "while one worker ran a long poll, the sleeper %s",
                 rc == -ETIMEDOUT ? "waited in its inbox" : "never shared a worker with it");
    atomic_store(&stop, 1);
    cr_assert_eq(weft_task_join_wait(hs, weft_now() + WAIT_NS, NULL), 0);
    cr_assert_eq(wt_finish(rt), 0);
}

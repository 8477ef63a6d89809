/*
 * time/sleep.c - sleep, interval and timeout on a real runtime (workers +
 * driver thread): never early, ordered, completing at once for a past
 * deadline, the missed-tick policies, timeouts that fire and that do not,
 * cancellation of sleeping stackless tasks and coroutines (the entry
 * leaves the wheel), shutdown with sleepers, and bad input.
 *
 * Timing: never-early and ordering (deadlines 10 ms apart) are asserted
 * strictly. Lateness is not a precision claim here: the wheel's precision
 * is asserted exactly, on a simulated clock, in wheel.c, and measured by
 * the W6 benchmark (lateness p50/p99). LATE_MAX (2 s) only catches a timer
 * that fires grossly late, which no stall of a loaded CI machine comes
 * near (it was 200 ms, and a run with ASan and a qemu job sharing two
 * cores once failed it). Futures record into memory the test thread reads
 * after joining (the join orders it).
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <inttypes.h>

#include "common/wt.h"
#include "time/timers.h"

#define WAIT_NS (20 * WT_SEC)
#define LATE_MAX (2 * WT_SEC)

TestSuite(sleep, .timeout = 60);

/* Entries armed in the calling worker's runtime (call on a worker). */
static int64_t armed_here(void)
{
    weft__timers_t *tm = weft__timers_current();
    return tm ? (int64_t)weft__timers_armed(tm) : -1;
}

static weft_poll_t armed_poll(void *st, weft_cx_t *cx, int64_t *out)
{
    (void)st;
    (void)cx;
    *out = armed_here();
    return WEFT_READY;
}
static const weft_future_vtable_t armed_vt = {armed_poll, NULL, "armed"};

/* Entries armed in rt, asked from a task. */
static int64_t armed_in(weft_runtime_t *rt)
{
    weft_task_t *h;
    cr_assert_eq(weft_spawn(rt, &armed_vt, NULL, 0, &h), 0);
    int64_t v = -2;
    cr_assert_eq(weft_task_join_wait(h, weft_now() + WAIT_NS, &v), 0);
    return v;
}

static bool armed_is_zero(void *rt)
{
    return armed_in(rt) == 0;
}

static bool armed_is_one(void *rt)
{
    return armed_in(rt) == 1;
}

/* ---- a stackless task that sleeps and records when it woke ------------------- */

typedef struct ssleep {
    weft_sleep_t s;
    int64_t deadline;
    int64_t *woke;
    _Atomic int *polled;
    _Atomic int *drops;
} ssleep_t;

static weft_poll_t ssleep_poll(void *st, weft_cx_t *cx, int64_t *out)
{
    ssleep_t *p = st;
    if (p->polled)
        atomic_fetch_add(p->polled, 1);
    int64_t v = -1;
    if (weft_sleep_vtable.poll(&p->s, cx, &v) == WEFT_PENDING)
        return WEFT_PENDING;
    if (p->woke)
        *p->woke = weft_now();
    *out = v;
    return WEFT_READY;
}

static void ssleep_drop(void *st)
{
    ssleep_t *p = st;
    if (p->drops)
        atomic_fetch_add(p->drops, 1);
    weft_sleep_vtable.drop(&p->s);
}

static const weft_future_vtable_t ssleep_vt = {ssleep_poll, ssleep_drop, "ssleep"};

static ssleep_t ssleep_make(int64_t deadline, int64_t *woke, _Atomic int *polled,
                            _Atomic int *drops)
{
    ssleep_t p = {.deadline = deadline, .woke = woke, .polled = polled, .drops = drops};
    weft_sleep_init(&p.s, deadline);
    return p;
}

/* ---- tests ----------------------------------------------------------------------- */

typedef struct sleeper {
    int64_t deadline, woke;
    int rc, seq;
} sleeper_t;

static _Atomic int seq_counter;

static int sleeper_coro(void *arg)
{
    sleeper_t *s = arg;
    s->rc = weft_sleep_until(s->deadline);
    s->woke = weft_now();
    s->seq = atomic_fetch_add(&seq_counter, 1);
    return 0;
}

Test(sleep, coroutines_never_early)
{
    enum { N = 20 };
    weft_runtime_t *rt = wt_runtime(2);
    sleeper_t s[N];
    weft_task_t *h[N];
    atomic_store(&seq_counter, 0);
    int64_t t0 = weft_now() + 20 * WT_MS;
    for (int i = 0; i < N; i++) {
        s[i] = (sleeper_t){t0 + (int64_t)((i * 7) % N) * 10 * WT_MS, 0, 1, -1};
        cr_assert_eq(weft_spawn_coro(rt, sleeper_coro, &s[i], NULL, &h[i]), 0);
    }
    for (int i = 0; i < N; i++)
        cr_assert_eq(weft_task_join_wait(h[i], weft_now() + WAIT_NS, NULL), 0);
    for (int i = 0; i < N; i++) {
        cr_assert_eq(s[i].rc, 0);
        cr_assert_geq(s[i].woke, s[i].deadline, "woke %" PRId64 " ns early",
                      s[i].deadline - s[i].woke);
        cr_assert_lt(s[i].woke - s[i].deadline, LATE_MAX);
        /* The order in which tasks *run* after waking is the scheduler's
         * (a stalled worker can reorder them); the order in which the
         * driver wakes them is asserted strictly below. */
    }
    cr_assert_eq(armed_in(rt), 0);
    cr_assert_eq(wt_finish(rt), 0);
}

/*
 * Wake order through the real driver: each task polls its timer with a
 * child context whose waker records a global sequence number when the
 * driver wakes it, then forwards to the task's own waker (a clone kept
 * until the runtime has shut down, so a late forward is always valid).
 */
typedef struct ordrec {
    weft_waker_t task; /* clone of the task's waker */
    _Atomic int seq;   /* when the driver woke our waker; -1 before */
    int64_t deadline, woke;
    bool late_start; /* first polled after its deadline: never armed */
} ordrec_t;

static _Atomic int wake_counter;

static void ow_clone(const weft_waker_t *src, weft_waker_t *dst)
{
    *dst = *src; /* the record outlives every clone */
}
static void ow_wake_by_ref(const weft_waker_t *w)
{
    ordrec_t *r = w->data;
    int expected = -1;
    atomic_compare_exchange_strong(&r->seq, &expected, atomic_fetch_add(&wake_counter, 1));
    weft_waker_wake_by_ref(&r->task);
}
static void ow_wake(weft_waker_t *w)
{
    ow_wake_by_ref(w);
}
static void ow_drop(weft_waker_t *w)
{
    (void)w;
}
static const weft_waker_vtable_t ord_waker_vt = {ow_clone, ow_wake, ow_wake_by_ref, ow_drop};

typedef struct ord {
    weft_timer_t t;
    ordrec_t *rec;
} ord_t;

static weft_poll_t ord_poll(void *st, weft_cx_t *cx, int64_t *out)
{
    ord_t *o = st;
    if (!o->rec->task.vtable)
        weft_waker_clone(weft_cx_waker(cx), &o->rec->task);
    weft_waker_t w = {&ord_waker_vt, o->rec};
    weft_cx_t child;
    weft_cx_init_child(&child, cx, &w);
    bool first = !o->rec->woke && atomic_load(&o->rec->seq) < 0;
    int rc = weft_timer_poll(&o->t, o->rec->deadline, &child);
    if (rc == WEFT_PENDING)
        return WEFT_PENDING;
    if (first)
        o->rec->late_start = true;
    o->rec->woke = weft_now();
    *out = rc;
    return WEFT_READY;
}

static void ord_drop(void *st)
{
    weft_timer_cancel(&((ord_t *)st)->t);
}

static const weft_future_vtable_t ord_vt = {ord_poll, ord_drop, "ord"};

enum { ORD_N = 40 };
static ordrec_t ord_rec[ORD_N];

/* One try: every task arms its timer lead ns from now. False if some task
 * first ran after its deadline (the machine stalled longer than lead), so
 * its timer was never armed and the order says nothing. */
static bool ord_try(weft_runtime_t **rtp, int64_t lead)
{
    weft_runtime_t *rt = wt_runtime(2);
    *rtp = rt;
    ordrec_t *r = ord_rec;
    weft_task_t *h[ORD_N];
    atomic_store(&wake_counter, 0);
    int64_t t0 = weft_now() + lead;
    for (int i = 0; i < ORD_N; i++) {
        /* Distinct ticks, shuffled, a few milliseconds apart. */
        memset(&r[i], 0, sizeof r[i]);
        r[i].deadline = t0 + (int64_t)((i * 17) % ORD_N) * (WEFT_TIMER_RESOLUTION_NS + 2 * WT_MS);
        atomic_store(&r[i].seq, -1);
        ord_t o = {.rec = &r[i]};
        weft_timer_init(&o.t);
        cr_assert_eq(weft_spawn(rt, &ord_vt, &o, sizeof o, &h[i]), 0);
    }
    for (int i = 0; i < ORD_N; i++) {
        int64_t v = -1;
        cr_assert_eq(weft_task_join_wait(h[i], weft_now() + WAIT_NS, &v), 0);
        cr_assert_eq(v, 0);
    }
    cr_assert_eq(weft_runtime_shutdown(rt, weft_now() + WAIT_NS), 0);
    for (int i = 0; i < ORD_N; i++)
        if (r[i].late_start)
            return false;
    return true;
}

Test(sleep, driver_wakes_in_deadline_order)
{
    enum { N = ORD_N };
    ordrec_t *r = ord_rec;
    weft_runtime_t *rt = NULL;
    /* 20 ms of lead is plenty on a quiet machine; a loaded one gets more. */
    int64_t lead = 20 * WT_MS;
    for (int attempt = 0; !ord_try(&rt, lead); attempt++) {
        cr_assert_lt(attempt, 5, "tasks kept starting after their deadlines");
        for (int i = 0; i < N; i++)
            weft_waker_drop(&r[i].task);
        cr_assert_eq(weft_runtime_free(rt), 0);
        lead *= 4;
    }
    for (int i = 0; i < N; i++) {
        cr_assert_geq(atomic_load(&r[i].seq), 0, "task %d: its timer never woke it", i);
        cr_assert_geq(r[i].woke, r[i].deadline, "task %d woke early", i);
        cr_assert_lt(r[i].woke - r[i].deadline, LATE_MAX);
        for (int j = 0; j < N; j++)
            if (r[j].deadline < r[i].deadline)
                cr_assert_lt(atomic_load(&r[j].seq), atomic_load(&r[i].seq),
                             "the driver woke %d before %d", i, j);
    }
    for (int i = 0; i < N; i++)
        weft_waker_drop(&r[i].task); /* the driver has stopped: no forward left */
    cr_assert_eq(weft_runtime_free(rt), 0);
}

Test(sleep, stackless_never_early)
{
    enum { N = 500 };
    weft_runtime_t *rt = wt_runtime(2);
    static int64_t woke[N], deadline[N];
    weft_task_t *h[N];
    uint32_t rng = 99;
    int64_t t0 = weft_now();
    for (int i = 0; i < N; i++) {
        deadline[i] = t0 + 1 * WT_MS + (int64_t)(wt_rng(&rng) % (50 * WT_MS));
        ssleep_t p = ssleep_make(deadline[i], &woke[i], NULL, NULL);
        cr_assert_eq(weft_spawn(rt, &ssleep_vt, &p, sizeof p, &h[i]), 0);
    }
    for (int i = 0; i < N; i++) {
        int64_t v = -1;
        cr_assert_eq(weft_task_join_wait(h[i], weft_now() + WAIT_NS, &v), 0);
        cr_assert_eq(v, 0);
        cr_assert_geq(woke[i], deadline[i], "task %d woke early", i);
        cr_assert_lt(woke[i] - deadline[i], LATE_MAX);
    }
    cr_assert_eq(armed_in(rt), 0);
    cr_assert_eq(wt_finish(rt), 0);
}

Test(sleep, plain_sleep_future_spawned)
{
    weft_runtime_t *rt = wt_runtime(1);
    weft_sleep_t s;
    int64_t deadline = weft_now() + 5 * WT_MS;
    cr_assert_eq(weft_sleep_init(&s, deadline), 0);
    weft_task_t *h;
    cr_assert_eq(weft_spawn(rt, &weft_sleep_vtable, &s, sizeof s, &h), 0);
    int64_t v = -1;
    cr_assert_eq(weft_task_join_wait(h, weft_now() + WAIT_NS, &v), 0);
    cr_assert_eq(v, 0);
    cr_assert_geq(weft_now(), deadline);
    cr_assert_eq(wt_finish(rt), 0);
}

typedef struct past {
    int rc1, rc2, rc3;
    int64_t armed_before, armed_after;
} past_t;

static int past_coro(void *arg)
{
    past_t *p = arg;
    p->armed_before = armed_here();
    p->rc1 = weft_sleep_until(weft_now() - 1);
    p->rc2 = weft_sleep_for(0);
    p->rc3 = weft_sleep_until(INT64_MIN);
    p->armed_after = armed_here();
    return 0;
}

Test(sleep, past_deadline_completes_at_once)
{
    weft_runtime_t *rt = wt_runtime(1);
    past_t p = {1, 1, 1, -5, -5};
    weft_task_t *h;
    cr_assert_eq(weft_spawn_coro(rt, past_coro, &p, NULL, &h), 0);
    cr_assert_eq(weft_join(h, NULL), 0);
    cr_assert_eq(p.rc1, 0);
    cr_assert_eq(p.rc2, 0);
    cr_assert_eq(p.rc3, 0);
    cr_assert_eq(p.armed_before, 0);
    cr_assert_eq(p.armed_after, 0);
    /* Stackless: ready at the first poll. */
    _Atomic int polls = 0;
    ssleep_t s = ssleep_make(weft_now() - WT_SEC, NULL, &polls, NULL);
    cr_assert_eq(weft_spawn(rt, &ssleep_vt, &s, sizeof s, &h), 0);
    int64_t v = -1;
    cr_assert_eq(weft_task_join_wait(h, weft_now() + WAIT_NS, &v), 0);
    cr_assert_eq(v, 0);
    cr_assert_eq(atomic_load(&polls), 1);
    cr_assert_eq(wt_finish(rt), 0);
}

/* ---- intervals ---------------------------------------------------------------------- */

#define TICKS 6
#define PERIOD (20 * WT_MS)
#define STALL (75 * WT_MS) /* after the first tick: misses three */

typedef struct ticker {
    weft_missed_t policy;
    int64_t start;
    int64_t sched[TICKS], got[TICKS];
    int rc;
} ticker_t;

static int ticker_coro(void *arg)
{
    ticker_t *t = arg;
    weft_interval_t iv;
    t->rc = weft_interval_init(&iv, t->start, PERIOD, t->policy);
    for (int k = 0; k < TICKS && t->rc == 0; k++) {
        t->rc = weft_interval_tick(&iv, &t->sched[k]);
        t->got[k] = weft_now();
        if (k == 0 && t->rc == 0)
            t->rc = weft_sleep_for(STALL);
    }
    return 0;
}

static void run_ticker(ticker_t *t, weft_missed_t policy)
{
    weft_runtime_t *rt = wt_runtime(2);
    t->policy = policy;
    t->start = weft_now() + PERIOD;
    t->rc = 1;
    weft_task_t *h;
    cr_assert_eq(weft_spawn_coro(rt, ticker_coro, t, NULL, &h), 0);
    cr_assert_eq(weft_join(h, NULL), 0);
    cr_assert_eq(t->rc, 0);
    for (int k = 0; k < TICKS; k++) {
        cr_assert_geq(t->got[k], t->sched[k], "tick %d delivered early", k);
        cr_assert_lt(t->got[k] - t->sched[k], LATE_MAX + STALL);
    }
    cr_assert_eq(t->sched[0], t->start, "the first tick is at start");
    cr_assert_eq(armed_in(rt), 0);
    cr_assert_eq(wt_finish(rt), 0);
}

Test(sleep, interval_burst_delivers_missed_ticks)
{
    ticker_t t;
    run_ticker(&t, WEFT_MISSED_BURST);
    for (int k = 1; k < TICKS; k++)
        cr_assert_eq(t.sched[k], t.start + k * PERIOD, "tick %d off the schedule", k);
}

Test(sleep, interval_delay_shifts_the_schedule)
{
    ticker_t t;
    run_ticker(&t, WEFT_MISSED_DELAY);
    /* Tick 1 is the first missed one, delivered at got[1] (after the
     * stall); the next comes one period after that delivery. (If tick 0
     * itself came more than a period late, on a loaded machine, the
     * schedule shifted already there.) */
    if (t.got[0] < t.start + PERIOD)
        cr_assert_eq(t.sched[1], t.start + PERIOD);
    else
        cr_assert_geq(t.sched[1], t.start + PERIOD);
    cr_assert_geq(t.sched[2], t.start + STALL + PERIOD);
    cr_assert_leq(t.sched[2], t.got[1] + PERIOD);
    for (int k = 3; k < TICKS; k++)
        cr_assert_geq(t.sched[k], t.sched[k - 1] + PERIOD);
}

Test(sleep, interval_skip_stays_on_the_grid)
{
    ticker_t t;
    run_ticker(&t, WEFT_MISSED_SKIP);
    if (t.got[0] < t.start + PERIOD) /* else tick 0 was already late */
        cr_assert_eq(t.sched[1], t.start + PERIOD);
    else
        cr_assert_geq(t.sched[1], t.start + PERIOD);
    /* Ticks 2 and 3 (at start + 40 and 60 ms) are skipped. */
    cr_assert_geq(t.sched[2], t.start + 4 * PERIOD);
    cr_assert_leq(t.sched[2], t.got[1] + PERIOD);
    for (int k = 2; k < TICKS; k++) {
        cr_assert_eq((t.sched[k] - t.start) % PERIOD, 0, "tick %d off the grid", k);
        cr_assert_gt(t.sched[k], t.sched[k - 1]);
    }
}

/* A start far in the past (even INT64_MIN) is a tick due at once; the
 * next one follows each policy's rule without overflowing (UBSan would
 * abort on a signed overflow). */
typedef struct far_past {
    int64_t before[3], first[3], second[3], after[3];
    int rc[3];
} far_past_t;

static int far_past_coro(void *arg)
{
    far_past_t *f = arg;
    const weft_missed_t pol[3] = {WEFT_MISSED_BURST, WEFT_MISSED_DELAY, WEFT_MISSED_SKIP};
    for (int i = 0; i < 3; i++) {
        weft_interval_t iv;
        f->before[i] = weft_now();
        f->rc[i] = weft_interval_init(&iv, INT64_MIN, 7 * WT_MS, pol[i]);
        if (f->rc[i] == 0)
            f->rc[i] = weft_interval_tick(&iv, &f->first[i]);
        f->after[i] = weft_now();
        if (f->rc[i] == 0 && pol[i] != WEFT_MISSED_BURST) /* burst would take forever */
            f->rc[i] = weft_interval_tick(&iv, &f->second[i]);
    }
    return 0;
}

Test(sleep, interval_start_at_int64_min)
{
    weft_runtime_t *rt = wt_runtime(1);
    far_past_t f;
    memset(&f, 0, sizeof f);
    weft_task_t *h;
    cr_assert_eq(weft_spawn_coro(rt, far_past_coro, &f, NULL, &h), 0);
    cr_assert_eq(weft_join(h, NULL), 0);
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(f.rc[i], 0, "policy %d: %d", i, f.rc[i]);
        cr_assert_eq(f.first[i], INT64_MIN, "policy %d: the first tick is the start", i);
    }
    /* DELAY: one period after the late delivery; SKIP: the first grid
     * point after it (INT64_MIN + k * period). */
    cr_assert_geq(f.second[1], f.before[1] + 7 * WT_MS);
    cr_assert_leq(f.second[1], f.after[1] + 7 * WT_MS);
    cr_assert_gt(f.second[2], f.before[2]);
    cr_assert_leq(f.second[2], f.after[2] + 7 * WT_MS);
    cr_assert_eq(((uint64_t)f.second[2] - (uint64_t)INT64_MIN) % (uint64_t)(7 * WT_MS), 0,
                 "on the grid");
    cr_assert_eq(wt_finish(rt), 0);
}

/* ---- timeouts ----------------------------------------------------------------------- */

typedef struct tmo {
    wt_counts_t c;
    int rc;
    int64_t v, deadline, done, armed_after;
    int inner; /* 0: pending forever, 1: sleep 10 ms, 2: ready with -ETIMEDOUT */
} tmo_t;

static int timeout_coro(void *arg)
{
    tmo_t *t = arg;
    if (t->inner == 0) {
        wt_pending_t p = {&t->c};
        t->rc = weft_await_until(&wt_pending_vt, &p, t->deadline, &t->v);
    } else if (t->inner == 1) {
        weft_sleep_t s;
        weft_sleep_init(&s, weft_now() + 10 * WT_MS);
        t->rc = weft_await_until(&weft_sleep_vtable, &s, t->deadline, &t->v);
    } else {
        wt_ready_t r = {&t->c, -ETIMEDOUT};
        t->rc = weft_await_until(&wt_ready_vt, &r, t->deadline, &t->v);
    }
    t->done = weft_now();
    t->armed_after = armed_here();
    return 0;
}

static void run_timeout(tmo_t *t, int inner, int64_t deadline)
{
    weft_runtime_t *rt = wt_runtime(2);
    memset(t, 0, sizeof *t);
    wt_counts_init(&t->c);
    t->inner = inner;
    t->deadline = deadline;
    t->v = 12345;
    weft_task_t *h;
    cr_assert_eq(weft_spawn_coro(rt, timeout_coro, t, NULL, &h), 0);
    cr_assert_eq(weft_join(h, NULL), 0);
    cr_assert_eq(t->armed_after, 0, "the timeout's timer is disarmed");
    cr_assert_eq(wt_finish(rt), 0);
}

Test(sleep, timeout_fires)
{
    tmo_t t;
    run_timeout(&t, 0, weft_now() + 30 * WT_MS);
    cr_assert_eq(t.rc, -ETIMEDOUT);
    cr_assert_eq(t.v, 12345, "no output on a timeout");
    cr_assert_geq(t.done, t.deadline, "timed out early");
    cr_assert_lt(t.done - t.deadline, LATE_MAX);
    cr_assert_eq(atomic_load(&t.c.drops), 1, "the inner future is dropped once");
}

Test(sleep, timeout_not_firing)
{
    tmo_t t;
    run_timeout(&t, 1, weft_now() + 10 * WT_SEC);
    cr_assert_eq(t.rc, 0);
    cr_assert_eq(t.v, 0);
}

Test(sleep, timeout_inner_output_etimedout_is_not_a_timeout)
{
    tmo_t t;
    run_timeout(&t, 2, weft_now() - 1); /* deadline passed: a ready inner still wins */
    cr_assert_eq(t.rc, 0);
    cr_assert_eq(t.v, -ETIMEDOUT);
    cr_assert_eq(atomic_load(&t.c.drops), 1);
}

Test(sleep, timeout_future_spawned)
{
    weft_runtime_t *rt = wt_runtime(1);
    static wt_counts_t c;
    wt_counts_init(&c);
    static wt_pending_t p;
    p.c = &c;
    weft_timeout_t to;
    int64_t deadline = weft_now() + 20 * WT_MS;
    cr_assert_eq(weft_timeout_init(&to, &wt_pending_vt, &p, deadline), 0);
    weft_task_t *h;
    cr_assert_eq(weft_spawn(rt, &weft_timeout_vtable, &to, sizeof to, &h), 0);
    int64_t v = 0;
    cr_assert_eq(weft_task_join_wait(h, weft_now() + WAIT_NS, &v), 0);
    cr_assert_eq(v, -ETIMEDOUT);
    cr_assert_geq(weft_now(), deadline);
    cr_assert_eq(atomic_load(&c.drops), 1);
    /* Inner completes first: its output. */
    static wt_ready_t r;
    r.c = &c;
    r.out = 77;
    cr_assert_eq(weft_timeout_init(&to, &wt_ready_vt, &r, weft_now() + WT_SEC), 0);
    cr_assert_eq(weft_spawn(rt, &weft_timeout_vtable, &to, sizeof to, &h), 0);
    cr_assert_eq(weft_task_join_wait(h, weft_now() + WAIT_NS, &v), 0);
    cr_assert_eq(v, 77);
    cr_assert_eq(atomic_load(&c.drops), 2);
    cr_assert_eq(armed_in(rt), 0);
    cr_assert_eq(wt_finish(rt), 0);
}

/* ---- cancellation ----------------------------------------------------------------------- */

Test(sleep, cancel_sleeping_stackless_task)
{
    weft_runtime_t *rt = wt_runtime(2);
    _Atomic int polled = 0, drops = 0;
    ssleep_t p = ssleep_make(weft_now() + 60 * WT_SEC, NULL, &polled, &drops);
    weft_task_t *h;
    cr_assert_eq(weft_spawn(rt, &ssleep_vt, &p, sizeof p, &h), 0);
    cr_assert(wt_wait_int_ge(&polled, 1, WAIT_NS));
    cr_assert(wt_wait_until(armed_is_one, rt, WAIT_NS), "the sleep is armed");
    cr_assert_eq(weft_task_cancel(h), 0);
    int64_t v = 0;
    cr_assert_eq(weft_task_join_wait(h, weft_now() + WAIT_NS, &v), -ECANCELED);
    cr_assert_eq(atomic_load(&drops), 1);
    cr_assert(wt_wait_until(armed_is_zero, rt, WAIT_NS), "the entry left the wheel");
    cr_assert_eq(wt_finish(rt), 0);
}

typedef struct csleep {
    _Atomic int started;
    int rc, rc_after;
    int64_t armed_after;
} csleep_t;

static int csleep_coro(void *arg)
{
    csleep_t *c = arg;
    atomic_store(&c->started, 1);
    c->rc = weft_sleep_for(60 * WT_SEC);
    c->armed_after = armed_here();
    c->rc_after = weft_sleep_for(0); /* level-triggered: still cancelled */
    return 0;
}

Test(sleep, cancel_sleeping_coroutine)
{
    weft_runtime_t *rt = wt_runtime(2);
    csleep_t c = {0, 1, 1, -5};
    weft_task_t *h;
    cr_assert_eq(weft_spawn_coro(rt, csleep_coro, &c, NULL, &h), 0);
    cr_assert(wt_wait_int_ge(&c.started, 1, WAIT_NS));
    cr_assert(wt_wait_until(armed_is_one, rt, WAIT_NS), "the sleep is armed");
    cr_assert_eq(weft_task_cancel(h), 0);
    cr_assert_eq(weft_join(h, NULL), -ECANCELED);
    cr_assert_eq(c.rc, -ECANCELED);
    cr_assert_eq(c.rc_after, -ECANCELED);
    cr_assert_eq(c.armed_after, 0, "the entry left the wheel before the await returned");
    cr_assert_eq(wt_finish(rt), 0);
}

static int ctimeout_coro(void *arg)
{
    tmo_t *t = arg;
    wt_pending_t p = {&t->c};
    t->rc = weft_await_until(&wt_pending_vt, &p, weft_now() + 60 * WT_SEC, &t->v);
    t->armed_after = armed_here();
    return 0;
}

Test(sleep, cancel_coroutine_in_await_until)
{
    weft_runtime_t *rt = wt_runtime(2);
    tmo_t t;
    memset(&t, 0, sizeof t);
    wt_counts_init(&t.c);
    t.armed_after = -5;
    weft_task_t *h;
    cr_assert_eq(weft_spawn_coro(rt, ctimeout_coro, &t, NULL, &h), 0);
    cr_assert(wt_wait_int_ge(&t.c.polls, 1, WAIT_NS));
    cr_assert(wt_wait_until(armed_is_one, rt, WAIT_NS));
    cr_assert_eq(weft_task_cancel(h), 0);
    cr_assert_eq(weft_join(h, NULL), -ECANCELED);
    cr_assert_eq(t.rc, -ECANCELED);
    cr_assert_eq(atomic_load(&t.c.drops), 1, "the inner future is dropped once");
    cr_assert_eq(t.armed_after, 0);
    cr_assert_eq(wt_finish(rt), 0);
}

Test(sleep, shutdown_with_sleepers)
{
    enum { N = 200 };
    weft_runtime_t *rt = wt_runtime(2);
    static _Atomic int drops;
    atomic_store(&drops, 0);
    for (int i = 0; i < N; i++) {
        ssleep_t p = ssleep_make(weft_now() + (10 + i) * WT_SEC, NULL, NULL, &drops);
        cr_assert_eq(weft_spawn(rt, &ssleep_vt, &p, sizeof p, NULL), 0);
    }
    static csleep_t cs[N / 2];
    for (int i = 0; i < N / 2; i++)
        cr_assert_eq(weft_spawn_coro(rt, csleep_coro, &cs[i], NULL, NULL), 0);
    cr_assert_eq(weft_runtime_shutdown(rt, weft_now() + WAIT_NS), 0, "no stragglers");
    cr_assert_eq(atomic_load(&drops), N);
    cr_assert_eq(weft_runtime_free(rt), 0, "no waker left behind");
}

/* ---- bad input ---------------------------------------------------------------------------- */

typedef struct bad {
    int sleep_neg, tick_null, until_null, until_nopoll;
} bad_t;

static int bad_coro(void *arg)
{
    bad_t *b = arg;
    b->sleep_neg = weft_sleep_for(-1);
    b->tick_null = weft_interval_tick(NULL, NULL);
    b->until_null = weft_await_until(NULL, NULL, 0, NULL);
    weft_future_vtable_t nopoll = {NULL, NULL, "nopoll"};
    b->until_nopoll = weft_await_until(&nopoll, NULL, 0, NULL);
    return 0;
}

static weft_poll_t stackless_calls_poll(void *st, weft_cx_t *cx, int64_t *out)
{
    (void)st;
    (void)cx;
    *out = weft_sleep_for(WT_MS); /* a stackless task is not a coroutine */
    return WEFT_READY;
}
static const weft_future_vtable_t stackless_calls_vt = {stackless_calls_poll, NULL, "calls"};

Test(sleep, bad_input)
{
    /* Off the runtime. */
    cr_assert_eq(weft_sleep_for(-1), -EINVAL);
    cr_assert_eq(weft_sleep_for(WT_MS), -EPERM);
    cr_assert_eq(weft_sleep_until(weft_now() + WT_MS), -EPERM);
    cr_assert_eq(weft_sleep_init(NULL, 0), -EINVAL);
    weft_interval_t iv;
    cr_assert_eq(weft_interval_init(NULL, 0, 1, WEFT_MISSED_BURST), -EINVAL);
    cr_assert_eq(weft_interval_init(&iv, 0, 0, WEFT_MISSED_BURST), -EINVAL);
    cr_assert_eq(weft_interval_init(&iv, 0, -5, WEFT_MISSED_SKIP), -EINVAL);
    cr_assert_eq(weft_interval_init(&iv, 0, 1, (weft_missed_t)7), -EINVAL);
    cr_assert_eq(weft_interval_init(&iv, weft_now() + WT_SEC, WT_MS, WEFT_MISSED_DELAY), 0);
    cr_assert_eq(weft_interval_tick(NULL, NULL), -EINVAL);
    cr_assert_eq(weft_interval_tick(&iv, NULL), -EPERM);
    cr_assert_eq(weft_interval_poll(NULL, NULL, NULL), -EINVAL);
    weft_interval_cancel(NULL);
    static wt_counts_t c;
    wt_counts_init(&c);
    wt_pending_t p = {&c};
    cr_assert_eq(weft_await_until(NULL, &p, 0, NULL), -EINVAL);
    cr_assert_eq(weft_await_until(&wt_pending_vt, &p, weft_now() + WT_SEC, NULL), -EPERM);
    cr_assert_eq(atomic_load(&c.polls) + atomic_load(&c.drops), 0, "not touched");
    weft_timeout_t to;
    cr_assert_eq(weft_timeout_init(NULL, &wt_pending_vt, &p, 0), -EINVAL);
    cr_assert_eq(weft_timeout_init(&to, NULL, &p, 0), -EINVAL);
    cr_assert_eq(weft_timeout_poll(NULL, NULL, NULL), -EINVAL);
    weft_timer_t t;
    weft_timer_init(&t);
    weft_timer_init(NULL);
    weft_timer_cancel(NULL);
    weft_timer_cancel(&t); /* idle: nothing */
    wt_thread_waker_t tw;
    memset(&tw, 0, sizeof tw);
    weft_cx_t cx;
    memset(&cx, 0, sizeof cx);
    cx.waker_ = wt_thread_waker(&tw);
    cr_assert_eq(weft_timer_poll(NULL, 0, &cx), -EINVAL);
    cr_assert_eq(weft_timer_poll(&t, 0, NULL), -EINVAL);
    cr_assert_eq(weft_timer_poll(&t, weft_now() + WT_SEC, &cx), -EPERM, "no driver here");
    cr_assert_eq(weft_timer_poll(&t, weft_now() - 1, &cx), WEFT_READY, "past: no driver needed");
    cr_assert_eq(wt_tw_live(&tw), 0, "no waker kept");
    /* A timeout off the workers: the inner future is pending, no timer. */
    cr_assert_eq(weft_timeout_init(&to, &wt_pending_vt, &p, weft_now() + WT_SEC), 0);
    cr_assert_eq(weft_timeout_poll(&to, &cx, NULL), -EPERM);
    cr_assert_eq(atomic_load(&c.drops), 1, "dropped with the failure");
    cr_assert_eq(weft_timeout_poll(&to, &cx, NULL), -EINVAL, "finished");

    /* On the runtime. */
    weft_runtime_t *rt = wt_runtime(1);
    bad_t b = {1, 1, 1, 1};
    weft_task_t *h;
    cr_assert_eq(weft_spawn_coro(rt, bad_coro, &b, NULL, &h), 0);
    cr_assert_eq(weft_join(h, NULL), 0);
    cr_assert_eq(b.sleep_neg, -EINVAL);
    cr_assert_eq(b.tick_null, -EINVAL);
    cr_assert_eq(b.until_null, -EINVAL);
    cr_assert_eq(b.until_nopoll, -EINVAL);
    cr_assert_eq(weft_spawn(rt, &stackless_calls_vt, NULL, 0, &h), 0);
    int64_t v = 0;
    cr_assert_eq(weft_task_join_wait(h, weft_now() + WAIT_NS, &v), 0);
    cr_assert_eq(v, -EPERM);
    cr_assert_eq(wt_finish(rt), 0);
}

/* ---- shutdown with sleepers that outlive the deadline ----------------------- */

static int long_sleeper_coro(void *arg)
{
    (void)arg;
    return weft_sleep_for(60 * WT_SEC);
}

static bool armed_is_two(void *rt)
{
    return armed_in(rt) == 2;
}

/*
 * A coroutine and a stackless task, both asleep when the shutdown deadline
 * passes: whichever is still queued when the workers stop is dropped
 * without running. The coroutine's timer entry
 * is on its stack, which is freed without unwinding: the wheel must have
 * let go of it first (ASan reports the use after free otherwise).
 */
Test(sleep, shutdown_drops_sleeping_stragglers)
{
    for (int round = 0; round < 20; round++) {
        weft_runtime_t *rt = wt_runtime(1 + round % 2);
        weft_task_t *c, *t;
        cr_assert_eq(weft_spawn_coro(rt, long_sleeper_coro, NULL, NULL, &c), 0);
        weft_sleep_t s;
        cr_assert_eq(weft_sleep_init(&s, weft_now() + 60 * WT_SEC), 0);
        cr_assert_eq(weft_spawn(rt, &weft_sleep_vtable, &s, sizeof s, &t), 0);
        cr_assert_eq(weft_task_detach(c), 0);
        cr_assert_eq(weft_task_detach(t), 0);
        cr_assert(wt_wait_until(armed_is_two, rt, WAIT_NS));
        /* A cancelled task that a worker resumes before the count is
         * not a straggler; one still queued when the workers stop is
         * dropped unresumed: which one varies, so the rounds vary. */
        int stragglers = weft_runtime_shutdown(rt, weft_now());
        cr_expect(stragglers >= 0 && stragglers <= 2, "round %d: %d", round, stragglers);
        cr_expect_eq(weft_runtime_free(rt), 0, "round %d", round);
    }
}

/*
 * time/wheel.c - the timing wheel on its own (src/time/wheel.c), driven by
 * calling weft__timers_process with synthetic clock values from one
 * thread: placement at every level, cascading, firing order, never early
 * and never later than the first process call at or past the tick,
 * far-future and INT64_MAX deadlines, cancel, re-arm, the kick, batches
 * larger than one wake-up batch, and free.
 *
 * Each entry's waker is a counting waker over its own record, so a test
 * sees exactly which entries fired, when (the `now` of the process call),
 * in which order, and that every clone was woken or dropped once.
 */
#include <criterion/criterion.h>
#include <inttypes.h>

#include "common/wt.h"
#include "time/timers.h"

#define T WEFT_TIMER_RESOLUTION_NS
#define LEVELS ((63 - WEFT__TIMER_TICK_SHIFT) / 6 + 1)

typedef struct rec {
    weft_timer_t t;
    int64_t deadline;
    int clones, wakes, drops;
    int64_t fired_at; /* the now of the process call that woke it */
    int order;        /* global wake sequence number */
} rec_t;

static int64_t cur_now;
static int wake_seq;

static void rw_clone(const weft_waker_t *src, weft_waker_t *dst)
{
    ((rec_t *)src->data)->clones++;
    *dst = *src;
}
static void rw_wake(weft_waker_t *w)
{
    rec_t *r = w->data;
    r->wakes++;
    r->fired_at = cur_now;
    r->order = wake_seq++;
}
static void rw_wake_by_ref(const weft_waker_t *w)
{
    (void)w;
    cr_assert_fail("the wheel never wakes by reference");
}
static void rw_drop(weft_waker_t *w)
{
    ((rec_t *)w->data)->drops++;
}
static const weft_waker_vtable_t rec_vt = {rw_clone, rw_wake, rw_wake_by_ref, rw_drop};

static weft_waker_t rec_waker(rec_t *r)
{
    return (weft_waker_t){&rec_vt, r};
}

typedef struct kicks {
    int n;
    int64_t last;
} kicks_t;

static void kick_cb(void *arg, int64_t deadline)
{
    kicks_t *k = arg;
    k->n++;
    k->last = deadline;
}

static weft__timers_t *tm;
static kicks_t kicks;
static int64_t base; /* a tick boundary at or after the wheel's start */

static void setup(void)
{
    kicks = (kicks_t){0, 0};
    wake_seq = 0;
    cr_assert_eq(weft__timers_new(kick_cb, &kicks, &tm), 0);
    base = (weft_now() / T + 2) * T;
    cur_now = base;
    cr_assert_eq(weft__timers_process(tm, base), INT64_MAX, "empty wheel");
}

static void teardown(void)
{
    weft__timers_free(tm);
}

TestSuite(wheel, .init = setup, .fini = teardown, .timeout = 30);

/* The first time a deadline may fire: its tick rounded up. */
static int64_t fire_time(int64_t d)
{
    if (d <= 0)
        return 0;
    uint64_t tick = ((uint64_t)d + (uint64_t)T - 1) / (uint64_t)T;
    if (tick > (uint64_t)INT64_MAX / (uint64_t)T)
        return INT64_MAX; /* saturated: fires only if now reaches INT64_MAX */
    return (int64_t)(tick * (uint64_t)T);
}

static void rec_init(rec_t *r, int64_t deadline)
{
    memset(r, 0, sizeof *r);
    weft_timer_init(&r->t);
    r->deadline = deadline;
    r->fired_at = -1;
    r->order = -1;
}

static int arm(rec_t *r)
{
    weft_waker_t w = rec_waker(r);
    return weft__timers_arm(tm, &r->t, r->deadline, &w);
}

static int64_t process(int64_t now)
{
    cur_now = now;
    return weft__timers_process(tm, now);
}

static void assert_fired_once(const rec_t *r)
{
    cr_assert_eq(r->wakes, 1, "deadline %" PRId64 ": woken %d times", r->deadline, r->wakes);
    cr_assert_eq(r->clones, r->wakes + r->drops, "every clone consumed once");
    cr_assert_geq(r->fired_at, r->deadline, "fired early");
    cr_assert_eq(atomic_load(&r->t.state_), WEFT__TIMER_FIRED);
}

Test(wheel, one_entry_every_level)
{
    for (int lvl = 0; lvl < LEVELS; lvl++) {
        /* Move the clock to a boundary of 64^lvl ticks whose level-lvl
         * digit leaves room for +2, then arm 2 * 64^lvl ticks ahead: the
         * entry differs from the clock first in digit lvl. */
        uint64_t unit = (uint64_t)1 << (6 * lvl);
        uint64_t t0 = ((uint64_t)cur_now / (uint64_t)T | (unit - 1)) + 1;
        if (((t0 >> (6 * lvl)) & 63) > 61)
            t0 = (t0 | (unit * 64 - 1)) + 1;
        if (t0 + 2 * unit > (uint64_t)INT64_MAX / (uint64_t)T)
            break; /* the top levels are only partly used by int64_t deadlines */
        cr_assert_eq(process((int64_t)(t0 * (uint64_t)T)), INT64_MAX);
        rec_t r;
        rec_init(&r, (int64_t)((t0 + 2 * unit) * (uint64_t)T) - T / 3);
        cr_assert_eq(arm(&r), 0);
        cr_assert_eq((int)(r.t.slot_ / 64), lvl, "level %d, slot_ %u", lvl, r.t.slot_);
        cr_assert_eq(weft__timers_armed(tm), 1);
        int64_t ft = fire_time(r.deadline);
        /* Drive it like the driver: sleep until the returned time. */
        int64_t now = cur_now;
        int rounds = 0;
        for (;;) {
            int64_t next = process(now);
            if (r.wakes)
                break;
            cr_assert_lt(now, ft, "not fired at %" PRId64 " >= %" PRId64, now, ft);
            cr_assert_gt(next, now, "next must move forward");
            cr_assert_leq(next, ft, "next past the entry's fire time");
            now = next;
            cr_assert_lt(++rounds, 64 * LEVELS, "too many cascade rounds");
        }
        assert_fired_once(&r);
        cr_assert_eq(r.fired_at, ft, "fired exactly at its tick");
        cr_assert_eq(weft__timers_armed(tm), 0);
    }
}

Test(wheel, never_early_one_ns_before)
{
    rec_t r;
    rec_init(&r, base + 1000 * T + 1); /* rounds up to 1001 ticks */
    cr_assert_eq(arm(&r), 0);
    int64_t ft = fire_time(r.deadline);
    cr_assert_eq(ft, base + 1001 * T);
    process(r.deadline - 1);
    process(r.deadline);
    process(ft - 1);
    cr_assert_eq(r.wakes, 0);
    process(ft);
    assert_fired_once(&r);
}

/* Random deadlines over every magnitude, driven by the returned times:
 * each fires at exactly its tick, in deadline-tick order. */
Test(wheel, driver_loop_random_fires_exactly_in_order)
{
    enum { N = 3000 };
    static rec_t r[N];
    uint32_t rng = 12345;
    int mags = 61 - WEFT__TIMER_TICK_SHIFT < 40 ? 61 - WEFT__TIMER_TICK_SHIFT : 40;
    for (int i = 0; i < N; i++) {
        int mag = (int)(wt_rng(&rng) % (uint32_t)mags); /* up to 2^40 ticks away */
        int64_t dist = 1 + (int64_t)(((uint64_t)wt_rng(&rng) << 20 ^ wt_rng(&rng)) &
                                     (((uint64_t)1 << mag) - 1));
        rec_init(&r[i], base + dist * T - (int64_t)(wt_rng(&rng) % T));
        cr_assert_eq(arm(&r[i]), 0);
    }
    cr_assert_eq(weft__timers_armed(tm), N);
    int64_t now = base;
    int fired = 0, rounds = 0;
    while (fired < N) {
        int64_t next = process(now);
        fired = wake_seq;
        if (fired == N)
            break;
        cr_assert_gt(next, now);
        cr_assert_neq(next, INT64_MAX);
        now = next;
        cr_assert_lt(++rounds, 10 * N + 64 * LEVELS * 40);
    }
    cr_assert_eq(process(now), INT64_MAX, "empty again");
    for (int i = 0; i < N; i++) {
        assert_fired_once(&r[i]);
        cr_assert_eq(r[i].fired_at, fire_time(r[i].deadline), "entry %d late", i);
        for (int j = 0; j < N; j += 97)
            if (fire_time(r[j].deadline) < fire_time(r[i].deadline))
                cr_assert_lt(r[j].order, r[i].order, "out of order");
    }
}

/* Run the driver loop over n entries from the wheel's current clock and
 * check that each fired exactly at its tick, in tick order. */
static void driver_loop_check(rec_t *r, int n)
{
    int64_t now = cur_now;
    int start_seq = wake_seq;
    for (int rounds = 0; wake_seq - start_seq < n; rounds++) {
        int64_t next = process(now);
        if (wake_seq - start_seq == n)
            break;
        cr_assert_gt(next, now);
        now = next;
        cr_assert_lt(rounds, 10 * n + 64 * LEVELS * 40);
    }
    for (int i = 0; i < n; i++) {
        assert_fired_once(&r[i]);
        cr_assert_eq(r[i].fired_at, fire_time(r[i].deadline), "entry %d late", i);
        for (int j = 0; j < n; j++)
            if (fire_time(r[j].deadline) < fire_time(r[i].deadline))
                cr_assert_lt(r[j].order, r[i].order, "out of order");
    }
}

/* Clocks just before a boundary of 64^k ticks, with more entries per tick
 * than one wake-up batch: the slot that comes due cascades into lower
 * levels while part of it is still to be fired. */
Test(wheel, dense_ticks_across_level_boundaries)
{
    enum { N = 600 };
    static rec_t r[N];
    for (int k = 1; k <= 4; k++) {
        uint64_t unit = (uint64_t)1 << (6 * k);
        uint64_t t0 = ((uint64_t)cur_now / (uint64_t)T | (unit - 1)) + unit; /* = -1 mod unit */
        process((int64_t)(t0 * (uint64_t)T));
        for (int i = 0; i < N; i++) {
            /* 150 entries on each of the next four ticks, some on later ones. */
            int64_t d = i < 4 * 150 - 50 ? 1 + i / 150 : 5 + i % 300;
            rec_init(&r[i], (int64_t)((t0 + (uint64_t)d) * (uint64_t)T) - (i % 3) * (T / 4));
            cr_assert_eq(arm(&r[i]), 0);
        }
        driver_loop_check(r, N);
        cr_assert_eq(weft__timers_armed(tm), 0);
    }
}

/* The driver loop from many clock positions (the wheel's digits at the
 * start decide which entries cascade), with random distances. */
Test(wheel, driver_loop_many_clock_positions)
{
    enum { N = 300, TRIALS = 60 };
    static rec_t r[N];
    uint32_t rng = 4242;
    for (int trial = 0; trial < TRIALS; trial++) {
        process(cur_now + (int64_t)(wt_rng(&rng) % 5000000) * T);
        for (int i = 0; i < N; i++) {
            int mag = (int)(wt_rng(&rng) % 24);
            int64_t dist = 1 + (int64_t)(wt_rng(&rng) & ((1u << mag) - 1));
            rec_init(&r[i], cur_now + dist * T - (int64_t)(wt_rng(&rng) % T));
            cr_assert_eq(arm(&r[i]), 0);
        }
        driver_loop_check(r, N);
    }
}

/* Random jumps of the clock (a driver that woke late): each entry fires at
 * the first process call whose now reaches its tick. */
Test(wheel, random_jumps_fire_at_first_call_past_tick)
{
    enum { N = 2000 };
    static rec_t r[N];
    uint32_t rng = 777;
    for (int i = 0; i < N; i++) {
        int64_t dist = 1 + (int64_t)(wt_rng(&rng) % 200000);
        rec_init(&r[i], base + dist * T + (int64_t)(wt_rng(&rng) % T));
        cr_assert_eq(arm(&r[i]), 0);
    }
    int64_t prev = base, now = base;
    while (wake_seq < N) {
        prev = now;
        now += 1 + (int64_t)(wt_rng(&rng) % (5000 * T));
        process(now);
        for (int i = 0; i < N; i++) {
            int64_t ft = fire_time(r[i].deadline);
            if (ft <= now)
                cr_assert_eq(r[i].wakes, 1, "entry %d due at %" PRId64 " not fired by %" PRId64, i,
                             ft, now);
            else
                cr_assert_eq(r[i].wakes, 0, "entry %d fired early", i);
            if (ft > prev && ft <= now)
                cr_assert_eq(r[i].fired_at, now);
        }
    }
    for (int i = 0; i < N; i++)
        assert_fired_once(&r[i]);
}

Test(wheel, far_future_and_int64_max)
{
    rec_t forever, almost, far;
    rec_init(&forever, INT64_MAX);
    rec_init(&almost, INT64_MAX - T); /* the last tick that is <= INT64_MAX */
    rec_init(&far, (int64_t)1 << 62); /* tick ~2^(62 - shift): digit (62 - shift) / 6 */
    cr_assert_eq(arm(&forever), 0);
    cr_assert_eq(arm(&almost), 0);
    cr_assert_eq(arm(&far), 0);
    cr_assert_eq((int)(far.t.slot_ / 64), (62 - WEFT__TIMER_TICK_SHIFT) / 6,
                 "far lands at the level of its highest digit");
    int64_t now = base;
    for (int rounds = 0; far.wakes == 0; rounds++) {
        now = process(now);
        cr_assert_lt(rounds, 64 * LEVELS);
    }
    cr_assert_eq(far.fired_at, fire_time(far.deadline));
    process(INT64_MAX - T - 1);
    cr_assert_eq(almost.wakes, 0);
    process(INT64_MAX);
    assert_fired_once(&almost);
    cr_assert_eq(forever.wakes, 0, "INT64_MAX rounds up past every clock value");
    cr_assert_eq(weft__timers_armed(tm), 1);
    cr_assert_eq(weft__timers_cancel(tm, &forever.t), 1);
    cr_assert_eq(forever.drops, 1);
    cr_assert_eq(weft__timers_armed(tm), 0);
}

Test(wheel, cancel_before_fire_never_fires)
{
    enum { N = 500 };
    static rec_t r[N];
    for (int i = 0; i < N; i++) {
        rec_init(&r[i], base + (int64_t)(i + 1) * 37 * T);
        cr_assert_eq(arm(&r[i]), 0);
    }
    for (int i = 0; i < N; i += 2)
        cr_assert_eq(weft__timers_cancel(tm, &r[i].t), 1);
    cr_assert_eq(weft__timers_armed(tm), N / 2);
    process(base + (int64_t)N * 37 * T / 2);
    for (int i = 0; i < N; i++) /* cancel after firing reports 0 */
        if (i % 2 && r[i].wakes)
            cr_assert_eq(weft__timers_cancel(tm, &r[i].t), 0);
    process(INT64_MAX);
    for (int i = 0; i < N; i++) {
        if (i % 2 == 0) {
            cr_assert_eq(r[i].wakes, 0, "cancelled entry %d fired", i);
            cr_assert_eq(r[i].drops, 1);
            cr_assert_eq(r[i].clones, 1);
            cr_assert_eq(atomic_load(&r[i].t.state_), WEFT__TIMER_IDLE);
        } else {
            assert_fired_once(&r[i]);
        }
    }
    cr_assert_eq(weft__timers_cancel(tm, &r[0].t), 0, "cancel twice");
    cr_assert_eq(weft__timers_armed(tm), 0);
}

Test(wheel, rearm_later_earlier_and_same_tick)
{
    rec_t r;
    rec_init(&r, base + 100 * T);
    cr_assert_eq(arm(&r), 0);
    r.deadline = base + 5000 * T; /* later: moves */
    cr_assert_eq(arm(&r), 0);
    cr_assert_eq(r.drops, 1, "the old waker clone is dropped");
    cr_assert_eq(weft__timers_armed(tm), 1);
    process(base + 100 * T);
    cr_assert_eq(r.wakes, 0);
    r.deadline = base + 200 * T; /* earlier: moves back */
    cr_assert_eq(arm(&r), 0);
    r.deadline = base + 200 * T - 5; /* same tick: only the waker is replaced */
    cr_assert_eq(arm(&r), 0);
    cr_assert_eq(weft__timers_armed(tm), 1);
    process(base + 200 * T);
    assert_fired_once(&r);
    cr_assert_eq(r.fired_at, base + 200 * T);
    cr_assert_eq(r.clones, 4);
    cr_assert_eq(r.drops, 3);
    /* Re-arming a fired entry arms it again. */
    r.deadline = base + 300 * T;
    cr_assert_eq(arm(&r), 0);
    cr_assert_eq(atomic_load(&r.t.state_), WEFT__TIMER_ARMED);
    process(base + 300 * T);
    cr_assert_eq(r.wakes, 2);
    cr_assert_eq(weft__timers_process(tm, base + 400 * T), INT64_MAX);
}

Test(wheel, rearm_switches_waker)
{
    rec_t a, b;
    rec_init(&a, base + 10 * T);
    rec_init(&b, 0);
    cr_assert_eq(arm(&a), 0);
    weft_waker_t wb = rec_waker(&b);
    cr_assert_eq(weft__timers_arm(tm, &a.t, a.deadline, &wb), 0);
    cr_assert_eq(a.drops, 1);
    process(base + 10 * T);
    cr_assert_eq(a.wakes, 0, "the replaced waker is not woken");
    cr_assert_eq(b.wakes, 1);
    cr_assert_eq(b.clones, 1);
}

Test(wheel, past_deadline_is_due_without_arming)
{
    rec_t r;
    rec_init(&r, base - 1);
    cr_assert_eq(arm(&r), 1);
    cr_assert_eq(weft__timers_armed(tm), 0);
    cr_assert_eq(r.clones, 1);
    cr_assert_eq(r.drops, 1, "the clone taken is dropped again");
    cr_assert_eq(r.wakes, 0);
    cr_assert_eq(atomic_load(&r.t.state_), WEFT__TIMER_FIRED);
    rec_init(&r, base); /* exactly the processed time: due too */
    cr_assert_eq(arm(&r), 1);
    rec_init(&r, base + 1); /* the next tick: armed */
    cr_assert_eq(arm(&r), 0);
    cr_assert_eq(weft__timers_cancel(tm, &r.t), 1);
}

Test(wheel, kick_only_when_earlier_than_the_driver_knows)
{
    rec_t a, b, c;
    rec_init(&a, base + 1000 * T);
    rec_init(&b, base + 2000 * T);
    rec_init(&c, base + 10 * T + 1);
    cr_assert_eq(arm(&a), 0);
    cr_assert_eq(kicks.n, 1);
    cr_assert_eq(kicks.last, base + 1000 * T);
    cr_assert_eq(weft__timers_next_fire(tm), base + 1000 * T);
    cr_assert_eq(arm(&b), 0);
    cr_assert_eq(kicks.n, 1, "later than the known deadline: no kick");
    cr_assert_eq(arm(&c), 0);
    cr_assert_eq(kicks.n, 2);
    cr_assert_eq(kicks.last, base + 11 * T, "kicked with the rounded-up time");
    int64_t next = process(base + 5 * T);
    cr_assert_leq(next, base + 11 * T);
    cr_assert_eq(weft__timers_next_fire(tm), next, "process reports what it returned");
    weft__timers_cancel(tm, &a.t);
    weft__timers_cancel(tm, &b.t);
    weft__timers_cancel(tm, &c.t);
    cr_assert_eq(kicks.n, 2, "cancels never kick");
}

Test(wheel, batches_larger_than_one_wake_batch)
{
    enum { N = 1000 };
    static rec_t same[N], far[N];
    for (int i = 0; i < N; i++) {
        rec_init(&same[i], base + 3 * T);
        cr_assert_eq(arm(&same[i]), 0);
        /* All in one level-2 slot, cascading together. */
        rec_init(&far[i], base + 5000 * T + (i % 7) * T);
        cr_assert_eq(arm(&far[i]), 0);
    }
    process(base + 3 * T);
    for (int i = 0; i < N; i++) {
        assert_fired_once(&same[i]);
        cr_assert_eq(far[i].wakes, 0);
    }
    process(base + 6000 * T);
    for (int i = 0; i < N; i++)
        assert_fired_once(&far[i]);
    cr_assert_eq(weft__timers_armed(tm), 0);
}

Test(wheel, clock_going_backwards_is_harmless)
{
    rec_t r;
    rec_init(&r, base + 50 * T);
    cr_assert_eq(arm(&r), 0);
    process(base + 20 * T);
    process(base + 10 * T); /* a stale now: nothing moves back */
    cr_assert_eq(r.wakes, 0);
    process(base + 50 * T);
    assert_fired_once(&r);
}

Test(wheel, free_drops_armed_wakers_and_later_cancel_is_noop)
{
    static rec_t r[100];
    for (int i = 0; i < 100; i++) {
        rec_init(&r[i], base + (int64_t)(i + 1) * 1000 * T);
        cr_assert_eq(arm(&r[i]), 0);
    }
    weft__timers_free(tm);
    for (int i = 0; i < 100; i++) {
        cr_assert_eq(r[i].drops, 1);
        cr_assert_eq(r[i].wakes, 0);
        cr_assert_eq(atomic_load(&r[i].t.state_), WEFT__TIMER_FIRED);
        cr_assert_null(r[i].t.wheel_);
        weft_timer_cancel(&r[i].t); /* must not touch the freed wheel */
    }
    cr_assert_eq(weft__timers_new(kick_cb, &kicks, &tm), 0); /* for teardown */
}

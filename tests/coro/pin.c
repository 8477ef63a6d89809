/*
 * coro/pin.c - where coroutines run: stealable until their first run, then
 * pinned to that worker; migratable ones may move after any await; errno's
 * value survives an await either way; a busy worker places new coroutines on
 * a less loaded one before they start.
 *
 * Setup of each case: a coroutine on worker X queues work and then keeps X
 * busy with a spinning stackless task, so anything that runs meanwhile runs
 * on the other worker, Y, having been stolen.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>

#include "common/wt.h"

#define WAIT_NS (10 * WT_SEC)

/* Stackless: spins (keeping its worker) until *until is set or ns pass. */
typedef struct spinner {
    _Atomic int *until;
    int64_t ns;
    _Atomic int *timed_out;
} spinner_t;

static weft_poll_t spinner_poll(void *st, weft_cx_t *cx, int64_t *out)
{
    (void)cx;
    spinner_t *s = st;
    int64_t end = weft_now() + s->ns;
    while (!atomic_load(s->until)) {
        if (weft_now() >= end) {
            atomic_store(s->timed_out, 1);
            break;
        }
        sched_yield();
    }
    *out = 0;
    return WEFT_READY;
}

static const weft_future_vtable_t spinner_vt = {spinner_poll, NULL, "spinner"};

/* glibc declares pthread_self const, so the compiler may reuse one call's
 * result across an await (the hazard weft/coro.h describes); noinline alone
 * does not stop that (the wrapper is inferred const too): the volatile asm
 * makes every call a real one. */
__attribute__((noinline)) static uintptr_t self_id(void)
{
    uintptr_t v = (uintptr_t)pthread_self();
    __asm__ volatile("" : "+r"(v));
    return v;
}

/* ---- stealable until the first run -------------------------------------------------- */

typedef struct first_run {
    _Atomic uintptr_t thread;
    _Atomic int ran;
} first_run_t;

static int note_thread(void *arg)
{
    first_run_t *f = arg;
    atomic_store(&f->thread, self_id());
    atomic_store(&f->ran, 1);
    return 0;
}

typedef struct steal_case {
    first_run_t kids[2];
    _Atomic int any_ran, timed_out;
    uintptr_t root_thread;
} steal_case_t;

static int steal_root(void *arg)
{
    steal_case_t *c = arg;
    c->root_thread = self_id();
    weft_runtime_t *rt = weft_runtime_current();
    weft_task_t *h[2];
    /* The second spawn pushes the first out of the LIFO slot into the
     * stealable ring. */
    for (int i = 0; i < 2; i++)
        if (weft_spawn_coro(rt, note_thread, &c->kids[i], NULL, &h[i]) != 0)
            return -1;
    /* Keep this worker busy until a kid ran (elsewhere) or 5 s pass. */
    int64_t end = weft_now() + 5 * WT_SEC;
    while (!atomic_load(&c->kids[0].ran) && !atomic_load(&c->kids[1].ran) && weft_now() < end)
        sched_yield();
    for (int i = 0; i < 2; i++)
        if (weft_join(h[i], NULL) != 0)
            return -2;
    return 0;
}

Test(coro_pin, stealable_before_first_run, .timeout = 30)
{
    weft_runtime_t *rt = wt_runtime(2);
    steal_case_t c;
    memset(&c, 0, sizeof c);
    int res = -1;
    cr_assert_eq(weft_runtime_run_coro(rt, steal_root, &c, NULL, &res), 0);
    cr_assert_eq(res, 0);
    int stolen = 0;
    for (int i = 0; i < 2; i++)
        stolen += atomic_load(&c.kids[i].thread) != c.root_thread;
    cr_assert_geq(stolen, 1, "an unstarted coroutine was taken by the idle worker");
    cr_assert_eq(wt_finish(rt), 0);
}

/* ---- pinned after, migratable may move ---------------------------------------------------- */

typedef struct move_case {
    bool migratable;
    _Atomic int resumed, timed_out;
    uintptr_t before, after;
    int errno_after;
} move_case_t;

__attribute__((noinline)) static int errno_read(void)
{
    int v = errno;
    __asm__ volatile("" : "+r"(v)); /* not inferred pure: see self_id */
    return v;
}

__attribute__((noinline)) static void errno_write(int v)
{
    errno = v;
}

static int mover(void *arg)
{
    move_case_t *m = arg;
    m->before = self_id();
    /* Occupy this worker with a spinner (it runs next, from the LIFO slot)
     * that stops once we have resumed, or after 300 ms. */
    spinner_t sp = {&m->resumed, 300 * WT_MS, &m->timed_out};
    weft_task_t *h;
    if (weft_spawn(weft_runtime_current(), &spinner_vt, &sp, sizeof sp, &h) != 0)
        return -1;
    errno_write(4242);
    if (weft_yield() != 0)
        return -2;
    m->errno_after = errno_read();
    m->after = self_id();
    atomic_store(&m->resumed, 1);
    return weft_join(h, NULL);
}

Test(coro_pin, pinned_after_first_run, .timeout = 30)
{
    weft_runtime_t *rt = wt_runtime(2);
    move_case_t m;
    memset(&m, 0, sizeof m);
    int res = -1;
    cr_assert_eq(weft_runtime_run_coro(rt, mover, &m, NULL, &res), 0);
    cr_assert_eq(res, 0);
    cr_assert_eq(m.after, m.before, "a started coroutine resumes only on its own worker");
    cr_assert_eq(atomic_load(&m.timed_out), 1, "it waited for its busy worker instead of moving");
    cr_assert_eq(m.errno_after, 4242);
    cr_assert_eq(wt_finish(rt), 0);
}

Test(coro_pin, migratable_moves, .timeout = 30)
{
    weft_runtime_t *rt = wt_runtime(2);
    move_case_t m;
    memset(&m, 0, sizeof m);
    m.migratable = true;
    weft_coro_opts_t o = WEFT_CORO_OPTS_INIT;
    o.migratable = true;
    int res = -1;
    cr_assert_eq(weft_runtime_run_coro(rt, mover, &m, &o, &res), 0);
    cr_assert_eq(res, 0);
    cr_assert_neq(m.after, m.before, "the idle worker stole the migratable coroutine");
    cr_assert_eq(atomic_load(&m.timed_out), 0);
    cr_assert_eq(m.errno_after, 4242, "errno's value followed it to the new thread");
    cr_assert_eq(wt_finish(rt), 0);
}

/* ---- placement: a busy worker sends new coroutines to a less loaded one ---------- */

#include "sched/sched.h"

#define SPREAD_N 100 /* coroutines per phase */

typedef struct spread {
    _Atomic uintptr_t thread[2 * SPREAD_N];
    _Atomic int started, go, blocker_started, release, timed_out;
    uintptr_t root_thread;
} spread_t;

typedef struct spread_kid {
    spread_t *s;
    int i;
} spread_kid_t;

static spread_kid_t spread_kids[2 * SPREAD_N];

static int spread_kid(void *arg)
{
    spread_kid_t *k = arg;
    atomic_store(&k->s->thread[k->i], self_id());
    atomic_fetch_add(&k->s->started, 1);
    /* Runnable the whole time: each stays in its worker's pinned list. */
    while (!atomic_load(&k->s->go))
        if (weft_yield() != 0)
            return -1;
    return 0;
}

/* Stackless: holds its worker until s->release. */
static weft_poll_t spread_blocker_poll(void *st, weft_cx_t *cx, int64_t *out)
{
    (void)cx;
    spread_t *s = *(spread_t **)st;
    atomic_store(&s->blocker_started, 1);
    int64_t end = weft_now() + WAIT_NS;
    while (!atomic_load(&s->release) && weft_now() < end)
        sched_yield();
    *out = 0;
    return WEFT_READY;
}

static const weft_future_vtable_t spread_blocker_vt = {spread_blocker_poll, NULL, "blocker"};

static int spawn_kids(spread_t *s, weft_task_t **h, int from, int n)
{
    weft_runtime_t *rt = weft_runtime_current();
    for (int i = from; i < from + n; i++) {
        spread_kids[i] = (spread_kid_t){s, i};
        if (weft_spawn_coro(rt, spread_kid, &spread_kids[i], NULL, &h[i]) != 0)
            return -1;
    }
    return 0;
}

static void wait_started(spread_t *s, int n, int64_t ns)
{
    int64_t end = weft_now() + ns;
    while (atomic_load(&s->started) < n && weft_now() < end)
        (void)weft_yield();
}

/*
 * Phase 1: the other worker (Y) is held by a blocker while this one (X)
 * starts SPREAD_N coroutines that yield in a loop. Phase 2: Y is released
 * and X spawns SPREAD_N more. Work stealing alone gives Y about half of
 * phase 2 (what it steals while idle; then it is busy for good): ~50 vs
 * ~150. Placement sends X's new coroutines to Y until the two are even.
 */
static int spread_root(void *arg)
{
    spread_t *s = arg;
    s->root_thread = self_id();
    weft_runtime_t *rt = weft_runtime_current();
    weft_task_t *blocker, *pusher, *h[2 * SPREAD_N];
    wt_ready_t ready;
    memset(&ready, 0, sizeof ready);
    /* The second spawn pushes the blocker out of the LIFO slot into the
     * ring, where the idle worker steals it. */
    if (weft_spawn(rt, &spread_blocker_vt, &s, sizeof s, &blocker) != 0 ||
        weft_spawn(rt, &wt_ready_vt, &ready, sizeof ready, &pusher) != 0)
        return -1;
    int64_t end = weft_now() + WAIT_NS;
    while (!atomic_load(&s->blocker_started) && weft_now() < end)
        sched_yield(); /* keep this worker: the other one takes it */
    if (!atomic_load(&s->blocker_started))
        return -2;
    if (spawn_kids(s, h, 0, SPREAD_N) != 0)
        return -3;
    /* With placement some of them wait for Y; without, all start here. */
    wait_started(s, SPREAD_N, 200 * WT_MS);
    atomic_store(&s->release, 1);
    if (spawn_kids(s, h, SPREAD_N, SPREAD_N) != 0)
        return -4;
    wait_started(s, 2 * SPREAD_N, WAIT_NS);
    if (atomic_load(&s->started) < 2 * SPREAD_N)
        atomic_store(&s->timed_out, 1);
    atomic_store(&s->go, 1);
    for (int i = 0; i < 2 * SPREAD_N; i++)
        if (weft_join(h[i], NULL) != 0)
            return -5;
    if (weft_join(blocker, NULL) != 0 || weft_join(pusher, NULL) != 0)
        return -6;
    return 0;
}

Test(coro_pin, new_coroutines_are_placed_by_load, .timeout = 60)
{
    weft_runtime_t *rt = wt_runtime(2);
    static spread_t s;
    memset(&s, 0, sizeof s);
    int res = -1;
    cr_assert_eq(weft_runtime_run_coro(rt, spread_root, &s, NULL, &res), 0);
    cr_assert_eq(res, 0);
    cr_assert_eq(atomic_load(&s.timed_out), 0);
    int there = 0;
    for (int i = 0; i < 2 * SPREAD_N; i++)
        there += atomic_load(&s.thread[i]) != s.root_thread;
    /* Even within WEFT__PLACE_MARGIN, give or take the coroutines in
     * flight; the root (pinned on X, yielding) counts on X's side. */
    cr_assert_geq(there, SPREAD_N - 2 * WEFT__PLACE_MARGIN,
                  "%d of %d coroutines started on the other worker", there, 2 * SPREAD_N);
    cr_assert_leq(there, SPREAD_N + 2 * WEFT__PLACE_MARGIN, "%d of %d", there, 2 * SPREAD_N);
    cr_assert_eq(wt_finish(rt), 0);
}

/* ---- a coroutine starts with errno 0, even on a stack another one used -------------- */

static int dirty_errno(void *arg)
{
    (void)arg;
    errno_write(77);
    if (weft_yield() != 0) /* errno saved with the stack's state */
        return -1;
    return errno_read() == 77 ? 0 : -2;
}

static int report_errno(void *arg)
{
    (void)arg;
    return errno_read();
}

Test(coro_pin, errno_starts_at_zero_on_a_reused_stack, .timeout = 30)
{
    weft_runtime_t *rt = wt_runtime(1);
    for (int i = 0; i < 3; i++) {
        weft_task_t *h;
        int64_t v = -1;
        cr_assert_eq(weft_spawn_coro(rt, dirty_errno, NULL, NULL, &h), 0);
        cr_assert_eq(weft_join(h, &v), 0);
        cr_assert_eq(v, 0);
        cr_assert_eq(weft_spawn_coro(rt, report_errno, NULL, NULL, &h), 0);
        cr_assert_eq(weft_join(h, &v), 0);
        cr_assert_eq(v, 0, "errno at the start of a coroutine (pooled stack): %lld", (long long)v);
    }
    cr_assert_eq(wt_finish(rt), 0);
}

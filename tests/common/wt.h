/*
 * common/wt.h - helpers shared by the task, sched and runtime Criterion
 * suites and by the stress programs (header-only: a .c file here would
 * become a Criterion executable of its own).
 *
 * Owns nothing at run time. Provides:
 *  - a runtime constructor that aborts on failure (wt_runtime),
 *  - counters a future reaches through pointers (wt_counts_t: polls and
 *    drops, so every test can check "dropped exactly once"),
 *  - small futures: ready at once, pending forever, wait for a flag (an
 *    atomic waker woken by whoever sets the flag), yield k times, spin
 *    until released (keeps a worker busy), join another task,
 *  - a thread waker (flag + futex-free polling) for tests that drive an
 *    atomic waker from plain threads,
 *  - bounded waiting (wt_wait_until) so that a test waits for an event with
 *    a watchdog instead of sleeping a fixed time; nothing here asserts on
 *    how long something took.
 *
 * Futures never assert: they run on worker threads, where Criterion's
 * assertions must not be used. They record into atomics; the test thread
 * checks.
 */
#ifndef WEFT_TESTS_WT_H
#define WEFT_TESTS_WT_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <weft.h>

#if defined(__SANITIZE_THREAD__)
#define WT_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define WT_TSAN 1
#endif
#endif
#ifndef WT_TSAN
#define WT_TSAN 0
#endif

#if defined(__SANITIZE_ADDRESS__)
#define WT_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define WT_ASAN 1
#endif
#endif
#ifndef WT_ASAN
#define WT_ASAN 0
#endif

#define WT_MS 1000000LL
#define WT_SEC 1000000000LL

static inline void wt_die(const char *what, int rc)
{
    fprintf(stderr, "wt: %s: %s (%d)\n", what, weft_strerror(rc), rc);
    abort();
}

static inline void wt_sleep_ns(int64_t ns)
{
    struct timespec ts = {(time_t)(ns / WT_SEC), (long)(ns % WT_SEC)};
    while (nanosleep(&ts, &ts) != 0) {
    }
}

/*
 * Wait until `pred(arg)` holds, re-checking every 50 us, for at most
 * `timeout_ns`. Returns the final value of the predicate: false means the
 * watchdog fired (the caller fails the test).
 */
static inline bool wt_wait_until(bool (*pred)(void *), void *arg, int64_t timeout_ns)
{
    int64_t end = weft_now() + timeout_ns;
    for (;;) {
        if (pred(arg))
            return true;
        if (weft_now() >= end)
            return pred(arg);
        wt_sleep_ns(50000);
    }
}

/* xorshift32: cheap per-thread randomness for interleavings. */
static inline uint32_t wt_rng(uint32_t *s)
{
    uint32_t x = *s ? *s : 0x9e3779b9u;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    *s = x;
    return x;
}

/* Busy-wait for about ns nanoseconds (for racing a short window). */
static inline void wt_spin_ns(int64_t ns)
{
    int64_t end = weft_now() + ns;
    while (weft_now() < end) {
#if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
#endif
    }
}

/* Spin-wait (with sched_yield) on an atomic int reaching at least `want`. */
static inline bool wt_wait_int_ge(_Atomic int *v, int want, int64_t timeout_ns)
{
    int64_t end = weft_now() + timeout_ns;
    for (unsigned i = 0;; i++) {
        if (atomic_load(v) >= want)
            return true;
        if ((i & 63) == 63) {
            if (weft_now() >= end)
                return atomic_load(v) >= want;
            wt_sleep_ns(20000);
        } else {
            sched_yield();
        }
    }
}

/*
 * WEFT_TEST_DRIVER=thread (set by ctest for the *_drvthread runs) makes
 * every runtime the tests create poll on a driver thread of its own
 * instead of in parked workers, unless the test chose a driver itself.
 */
static inline weft_runtime_t *wt_runtime_cfg(const weft_config_t *cfg)
{
    weft_runtime_t *rt = NULL;
    weft_config_t c;
    const char *drv = getenv("WEFT_TEST_DRIVER");
    if ((!cfg || cfg->driver == WEFT_DRIVER_WORKERS) && drv && strcmp(drv, "thread") == 0) {
        if (cfg)
            c = *cfg;
        else
            weft_config_init(&c);
        c.driver = WEFT_DRIVER_THREAD;
        cfg = &c;
    }
    int rc = weft_runtime_new(cfg, &rt);
    if (rc != 0)
        wt_die("weft_runtime_new", rc);
    return rt;
}

static inline weft_runtime_t *wt_runtime(unsigned workers)
{
    weft_config_t cfg;
    weft_config_init(&cfg);
    cfg.workers = workers;
    return wt_runtime_cfg(&cfg);
}

/* ---- counters ------------------------------------------------------------ */

typedef struct wt_counts {
    _Atomic int polls;
    _Atomic int drops;
    _Atomic int readies; /* polls that returned WEFT_READY */
    _Atomic int64_t id;  /* weft_task_current_id() seen in the last poll */
    _Atomic int in_poll; /* 1 while a poll runs */
} wt_counts_t;

static inline void wt_counts_init(wt_counts_t *c)
{
    atomic_init(&c->polls, 0);
    atomic_init(&c->drops, 0);
    atomic_init(&c->readies, 0);
    atomic_init(&c->id, 0);
    atomic_init(&c->in_poll, 0);
}

static inline void wt_counted_drop(void *state)
{
    wt_counts_t *c = *(wt_counts_t **)state; /* every state below starts with it */
    atomic_fetch_add(&c->drops, 1);
}

/* ---- ready at once ---------------------------------------------------------- */

typedef struct wt_ready {
    wt_counts_t *c; /* may be NULL */
    int64_t out;
} wt_ready_t;

static inline weft_poll_t wt_ready_poll(void *st, weft_cx_t *cx, int64_t *out)
{
    (void)cx;
    wt_ready_t *s = st;
    if (s->c) {
        atomic_store(&s->c->id, weft_task_current_id());
        atomic_fetch_add(&s->c->polls, 1);
        atomic_fetch_add(&s->c->readies, 1);
    }
    *out = s->out;
    return WEFT_READY;
}

static inline void wt_ready_drop(void *st)
{
    wt_ready_t *s = st;
    if (s->c)
        atomic_fetch_add(&s->c->drops, 1);
}

static const weft_future_vtable_t wt_ready_vt = {wt_ready_poll, wt_ready_drop, "wt_ready"};

/* ---- pending forever (never arranges a wake-up) ----------------------------- */

typedef struct wt_pending {
    wt_counts_t *c;
} wt_pending_t;

static inline weft_poll_t wt_pending_poll(void *st, weft_cx_t *cx, int64_t *out)
{
    (void)cx;
    (void)out;
    wt_pending_t *s = st;
    atomic_fetch_add(&s->c->polls, 1);
    return WEFT_PENDING;
}

static const weft_future_vtable_t wt_pending_vt = {wt_pending_poll, wt_counted_drop, "wt_pending"};

/* ---- wait for a flag ---------------------------------------------------------- */

typedef struct wt_flag {
    _Atomic int set;
    weft_atomic_waker_t aw;
} wt_flag_t;

static inline void wt_flag_init(wt_flag_t *f)
{
    atomic_init(&f->set, 0);
    weft_atomic_waker_init(&f->aw);
}

/* Producer side: make the condition true, then wake. */
static inline void wt_flag_raise(wt_flag_t *f)
{
    atomic_store(&f->set, 1);
    weft_atomic_waker_wake(&f->aw);
}

/* Drop a waker left registered (call once no task can register any more). */
static inline void wt_flag_destroy(wt_flag_t *f)
{
    weft_atomic_waker_destroy(&f->aw);
}

typedef struct wt_wait_flag {
    wt_counts_t *c;
    wt_flag_t *f;
    int64_t out;
} wt_wait_flag_t;

static inline weft_poll_t wt_wait_flag_poll(void *st, weft_cx_t *cx, int64_t *out)
{
    wt_wait_flag_t *s = st;
    atomic_fetch_add(&s->c->in_poll, 1);
    atomic_store(&s->c->id, weft_task_current_id());
    atomic_fetch_add(&s->c->polls, 1);
    /* Consumer protocol: register first, then check. */
    weft_atomic_waker_register(&s->f->aw, weft_cx_waker(cx));
    weft_poll_t r = WEFT_PENDING;
    if (atomic_load(&s->f->set)) {
        *out = s->out;
        atomic_fetch_add(&s->c->readies, 1);
        r = WEFT_READY;
    }
    atomic_fetch_sub(&s->c->in_poll, 1);
    return r;
}

static const weft_future_vtable_t wt_wait_flag_vt = {wt_wait_flag_poll, wt_counted_drop,
                                                     "wt_wait_flag"};

/* ---- yield k times, then ready with the number of polls ----------------------- */

typedef struct wt_yielder {
    wt_counts_t *c;
    int left;
    weft_yield_t y;
    int n; /* polls of this task */
} wt_yielder_t;

static inline weft_poll_t wt_yielder_poll(void *st, weft_cx_t *cx, int64_t *out)
{
    wt_yielder_t *s = st;
    atomic_fetch_add(&s->c->polls, 1);
    int n = ++s->n;
    while (s->left > 0) {
        if (weft_yield_poll(&s->y, cx) == WEFT_PENDING)
            return WEFT_PENDING;
        s->left--;
        weft_yield_init(&s->y);
    }
    atomic_fetch_add(&s->c->readies, 1);
    *out = n;
    return WEFT_READY;
}

static const weft_future_vtable_t wt_yielder_vt = {wt_yielder_poll, wt_counted_drop, "wt_yielder"};

/* ---- spin in the poll until released (occupies a worker) ---------------------- */

typedef struct wt_blocker {
    wt_counts_t *c;
    _Atomic int *started; /* set to 1 when the poll begins */
    _Atomic int *release; /* the poll returns READY once this is non-zero */
} wt_blocker_t;

static inline weft_poll_t wt_blocker_poll(void *st, weft_cx_t *cx, int64_t *out)
{
    (void)cx;
    wt_blocker_t *s = st;
    atomic_fetch_add(&s->c->polls, 1);
    atomic_store(s->started, 1);
    while (!atomic_load(s->release))
        sched_yield();
    atomic_fetch_add(&s->c->readies, 1);
    *out = 0;
    return WEFT_READY;
}

static const weft_future_vtable_t wt_blocker_vt = {wt_blocker_poll, wt_counted_drop, "wt_blocker"};

/* ---- join another task from inside the runtime ------------------------------- */

typedef struct wt_joiner {
    wt_counts_t *c;
    weft_task_t *h;  /* consumed by the join */
    _Atomic int *rc; /* the join's final return code */
    int64_t *joined; /* the joined task's output (read after our own join) */
} wt_joiner_t;

static inline weft_poll_t wt_joiner_poll(void *st, weft_cx_t *cx, int64_t *out)
{
    wt_joiner_t *s = st;
    atomic_fetch_add(&s->c->polls, 1);
    int64_t v = 0;
    int rc = weft_task_join_poll(s->h, cx, &v);
    if (rc == WEFT_PENDING)
        return WEFT_PENDING;
    *s->joined = v;
    atomic_store(s->rc, rc);
    atomic_fetch_add(&s->c->readies, 1);
    *out = v;
    return WEFT_READY;
}

static const weft_future_vtable_t wt_joiner_vt = {wt_joiner_poll, wt_counted_drop, "wt_joiner"};

/* ---- a waker for plain threads: counts and raises a flag --------------------- */

/*
 * data points at a wt_thread_waker_t. Clones share it (no reference count):
 * the counters say how often each operation ran.
 */
typedef struct wt_thread_waker {
    _Atomic int woken; /* set by wake / wake_by_ref, cleared by the owner */
    _Atomic int wakes; /* wake (by value) calls */
    _Atomic int wake_refs;
    _Atomic int clones;
    _Atomic int drops;
} wt_thread_waker_t;

static inline void wt_tw_clone(const weft_waker_t *src, weft_waker_t *dst)
{
    wt_thread_waker_t *t = src->data;
    atomic_fetch_add(&t->clones, 1);
    *dst = *src;
}
static inline void wt_tw_wake(weft_waker_t *w)
{
    wt_thread_waker_t *t = w->data;
    atomic_fetch_add(&t->wakes, 1);
    atomic_store(&t->woken, 1);
}
static inline void wt_tw_wake_by_ref(const weft_waker_t *w)
{
    wt_thread_waker_t *t = w->data;
    atomic_fetch_add(&t->wake_refs, 1);
    atomic_store(&t->woken, 1);
}
static inline void wt_tw_drop(weft_waker_t *w)
{
    wt_thread_waker_t *t = w->data;
    atomic_fetch_add(&t->drops, 1);
}

static const weft_waker_vtable_t wt_thread_waker_vt = {wt_tw_clone, wt_tw_wake, wt_tw_wake_by_ref,
                                                       wt_tw_drop};

static inline weft_waker_t wt_thread_waker(wt_thread_waker_t *t)
{
    return (weft_waker_t){&wt_thread_waker_vt, t};
}

/* Owned clones still alive: clones minus (wakes by value + drops). */
static inline int wt_tw_live(wt_thread_waker_t *t)
{
    return atomic_load(&t->clones) - atomic_load(&t->wakes) - atomic_load(&t->drops);
}

/* ---- shutting down ------------------------------------------------------------- */

/* Shut down with a generous deadline and return weft_runtime_free's code. */
static inline int wt_finish(weft_runtime_t *rt)
{
    int rc = weft_runtime_shutdown(rt, weft_now() + 20 * WT_SEC);
    if (rc < 0)
        wt_die("weft_runtime_shutdown", rc);
    return weft_runtime_free(rt);
}

#endif /* WEFT_TESTS_WT_H */

/*
 * stress/park.c - the submit/park handshake: no lost wake-up.
 *
 * A plain main() so that it runs under ThreadSanitizer (Criterion cannot).
 * Workers search for WEFT__SPIN_NS (30 us) before parking; every round
 * below submits work after a random pause drawn around that threshold, so
 * the submit keeps landing while a worker is giving up, parking, or
 * asleep. Two kinds of submission, each with 1 and 2 workers:
 *  - spawn: a foreign thread spawns a trivial task (inject queue + notify)
 *    and blocks in weft_task_join_wait until it completes (the completion
 *    wakes the thread back), over and over;
 *  - inbox: a task that already ran on a worker is woken from a foreign
 *    thread, which puts it in that worker's inbox (push, seq_cst fence,
 *    unpark if `sleeping`); the thread waits for the task to acknowledge.
 *
 * Lanes. Each runtime has exactly one submitting thread: with two
 * submitters on one runtime, the second one's notify would wake the worker
 * and hide a wake-up lost for the first. For throughput on 2 cores, two
 * lanes (runtime + submitter) run side by side.
 *
 * A lost wake-up leaves work queued while every worker of that runtime
 * sleeps, and nothing else will come to wake them. A watchdog thread
 * samples weft__sched_stalled() on every lane every 50 ms and fails the
 * program if it holds in 3 consecutive samples (100 ms) with no progress
 * in that lane in between (one sample can catch a submitter between
 * queueing and notifying; a lost wake-up persists), and fails if a lane
 * makes no progress for 10 s. Exit 0 on success, 1 with a message.
 */
#include "common/wt.h"
#define STRESS_NAME "stress_park"
#include "common/stress.h"
#include "runtime/runtime_internal.h"

#include <inttypes.h>
#include <stdarg.h>
#include <unistd.h>

#if WT_TSAN
#define SCALE_DIV 2 /* TSan: half the rounds */
#else
#define SCALE_DIV 1
#endif
#define LANES 2
/* Rounds per lane, per (kind, worker count): 2 lanes x 2 kinds x 2 worker
 * counts x (150000 + 100000) / 2 ... = 10^6 submissions in total. */
#define SPAWN_ROUNDS (150000 / SCALE_DIV)
#define INBOX_ROUNDS (100000 / SCALE_DIV)
#define STALL_SAMPLE_NS (50 * WT_MS)
#define STALL_SAMPLES 3 /* consecutive stalled samples that fail the run */
#define NO_PROGRESS_NS (10 * WT_SEC)
#define TIME_LIMIT_NS (170 * WT_SEC)

static int64_t start_ns;

/* ---- lanes ---------------------------------------------------------------------------- */

typedef struct lane {
    int index;
    unsigned workers;
    pthread_t th;
    uint32_t rng;
    _Atomic uint64_t progress; /* completed rounds */
    /* The runtime the watchdog samples; `lock` keeps it alive meanwhile. */
    pthread_mutex_t lock;
    weft_runtime_t *rt;
    uint64_t spawn_rounds, inbox_rounds, parks;
} lane_t;

static lane_t lanes[LANES];
static _Atomic int watchdog_stop;
static _Atomic uint64_t stall_samples; /* single stalled samples seen (not failures) */

static weft_runtime_t *lane_start(lane_t *l)
{
    weft_runtime_t *rt = wt_runtime(l->workers);
    pthread_mutex_lock(&l->lock);
    l->rt = rt;
    pthread_mutex_unlock(&l->lock);
    return rt;
}

static void lane_finish(lane_t *l, const char *phase)
{
    pthread_mutex_lock(&l->lock);
    weft_runtime_t *rt = l->rt;
    l->rt = NULL;
    pthread_mutex_unlock(&l->lock);
    uint64_t polls, steals, parks;
    weft__sched_counters(weft__runtime_sched(rt), &polls, &steals, &parks);
    l->parks += parks;
    int rc = wt_finish(rt);
    CHECK(rc == 0, "lane %d, %s phase: weft_runtime_free: %s", l->index, phase, weft_strerror(rc));
}

/* ---- watchdog ------------------------------------------------------------------------- */

static void *watchdog(void *arg)
{
    (void)arg;
    int run[LANES] = {0};     /* consecutive stalled samples */
    uint64_t at[LANES] = {0}; /* progress at the last stalled sample */
    uint64_t last[LANES] = {0};
    int64_t last_change[LANES];
    for (int i = 0; i < LANES; i++)
        last_change[i] = weft_now();
    while (!atomic_load(&watchdog_stop)) {
        wt_sleep_ns(STALL_SAMPLE_NS);
        int64_t now = weft_now();
        if (now - start_ns > TIME_LIMIT_NS)
            fail("time limit of %lld s exceeded", (long long)(TIME_LIMIT_NS / WT_SEC));
        for (int i = 0; i < LANES; i++) {
            lane_t *l = &lanes[i];
            uint64_t p = atomic_load(&l->progress);
            pthread_mutex_lock(&l->lock);
            bool live = l->rt != NULL;
            bool st = live && weft__sched_stalled(weft__runtime_sched(l->rt));
            pthread_mutex_unlock(&l->lock);
            if (p != last[i] || !live) {
                last[i] = p;
                last_change[i] = now;
            } else if (now - last_change[i] > NO_PROGRESS_NS) {
                fail("lane %d (%u workers): no progress for %lld ms (at %" PRIu64 " rounds)", i,
                     l->workers, (long long)((now - last_change[i]) / WT_MS), p);
            }
            if (!st) {
                run[i] = 0;
                continue;
            }
            atomic_fetch_add(&stall_samples, 1);
            run[i] = (run[i] > 0 && at[i] == p) ? run[i] + 1 : 1;
            at[i] = p;
            if (run[i] >= STALL_SAMPLES)
                fail("lane %d (%u workers): lost wake-up: every worker asleep with work queued "
                     "in %d samples %lld ms apart, no progress in between (at %" PRIu64 " rounds)",
                     i, l->workers, STALL_SAMPLES, (long long)(STALL_SAMPLE_NS / WT_MS), p);
        }
    }
    return NULL;
}

/* 0..~60 us, denser below the 30 us spin threshold, sometimes none at all. */
static void pause_random(uint32_t *rng)
{
    uint32_t r = wt_rng(rng);
    switch (r & 7) {
    case 0:
        return;
    case 1:
        sched_yield();
        return;
    default:
        wt_spin_ns((int64_t)((r >> 8) % 60000));
    }
}

/* ---- phase 1: spawn + join_wait from a foreign thread ------------------------------------ */

static weft_poll_t trivial_poll(void *st, weft_cx_t *cx, int64_t *out)
{
    (void)cx;
    *out = *(int64_t *)st + 1;
    return WEFT_READY;
}

static const weft_future_vtable_t trivial_vt = {trivial_poll, NULL, "trivial"};

static void phase_spawn(lane_t *l)
{
    weft_runtime_t *rt = lane_start(l);
    for (int64_t i = 0; i < SPAWN_ROUNDS; i++) {
        weft_task_t *h;
        int rc = weft_spawn(rt, &trivial_vt, &i, sizeof i, &h);
        CHECK(rc == 0, "spawn: %s", weft_strerror(rc));
        int64_t out = -1;
        rc = weft_task_join_wait(h, WEFT_FOREVER, &out);
        CHECK(rc == 0 && out == i + 1, "join: rc %d out %" PRId64 " want %" PRId64, rc, out, i + 1);
        atomic_fetch_add(&l->progress, 1);
        l->spawn_rounds++;
        pause_random(&l->rng);
    }
    lane_finish(l, "spawn");
}

/* ---- phase 2: wakes into a worker's inbox from a foreign thread -------------------------- */

typedef struct ping {
    _Atomic uint64_t gen; /* bumped by the thread, then it wakes */
    _Atomic uint64_t ack; /* set by the task when it sees gen */
    _Atomic int stop;
    weft_atomic_waker_t aw;
    _Atomic int dropped;
} ping_t;

static weft_poll_t ping_poll(void *st, weft_cx_t *cx, int64_t *out)
{
    ping_t *p = *(ping_t **)st;
    weft_atomic_waker_register(&p->aw, weft_cx_waker(cx));
    atomic_store(&p->ack, atomic_load(&p->gen));
    if (atomic_load(&p->stop)) {
        *out = 0;
        return WEFT_READY;
    }
    return WEFT_PENDING;
}

static void ping_drop(void *st)
{
    ping_t *p = *(ping_t **)st;
    atomic_fetch_add(&p->dropped, 1);
}

static const weft_future_vtable_t ping_vt = {ping_poll, ping_drop, "ping"};

static void phase_inbox(lane_t *l)
{
    weft_runtime_t *rt = lane_start(l);
    ping_t p;
    atomic_init(&p.gen, 0);
    atomic_init(&p.ack, UINT64_MAX); /* the first poll sets it to 0 */
    atomic_init(&p.stop, 0);
    atomic_init(&p.dropped, 0);
    weft_atomic_waker_init(&p.aw);
    ping_t *pp = &p;
    weft_task_t *h;
    int rc = weft_spawn(rt, &ping_vt, &pp, sizeof pp, &h);
    CHECK(rc == 0, "spawn ping: %s", weft_strerror(rc));
    /* After its first poll the task has a home worker: wakes from this
     * thread go to that worker's inbox. */
    while (atomic_load(&p.ack) != 0)
        sched_yield();
    for (uint64_t g = 0; g < INBOX_ROUNDS; g++) {
        pause_random(&l->rng);
        atomic_store(&p.gen, g + 1);
        weft_atomic_waker_wake(&p.aw);
        /* Wait for the task to see it. A lost wake shows up as a stall
         * (watchdog), not as a hang here. */
        for (unsigned spins = 0; atomic_load(&p.ack) != g + 1; spins++)
            if (spins > 64)
                sched_yield();
        atomic_fetch_add(&l->progress, 1);
        l->inbox_rounds++;
    }
    atomic_store(&p.stop, 1);
    weft_atomic_waker_wake(&p.aw);
    rc = weft_task_join_wait(h, weft_now() + 10 * WT_SEC, NULL);
    CHECK(rc == 0, "ping task did not finish: %s", weft_strerror(rc));
    CHECK(atomic_load(&p.dropped) == 1, "ping dropped %d times", atomic_load(&p.dropped));
    weft_atomic_waker_destroy(&p.aw);
    lane_finish(l, "inbox");
}

static void *lane_main(void *arg)
{
    lane_t *l = arg;
    phase_spawn(l);
    phase_inbox(l);
    return NULL;
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    start_ns = weft_now();
    if (SCALE_DIV != 1)
        printf("stress_park: ThreadSanitizer build: rounds scaled down %dx\n", SCALE_DIV);
    for (int i = 0; i < LANES; i++)
        pthread_mutex_init(&lanes[i].lock, NULL);
    pthread_t wd;
    CHECK(pthread_create(&wd, NULL, watchdog, NULL) == 0, "pthread_create");
    uint64_t total = 0, parks = 0;
    for (unsigned workers = 1; workers <= 2; workers++) {
        int64_t t0 = weft_now();
        for (int i = 0; i < LANES; i++) {
            lane_t *l = &lanes[i];
            l->index = i;
            l->workers = workers;
            l->rng = 0x9e3779b9u * (unsigned)(i + 1) ^ workers;
            l->spawn_rounds = l->inbox_rounds = l->parks = 0;
            CHECK(pthread_create(&l->th, NULL, lane_main, l) == 0, "pthread_create");
        }
        uint64_t spawn_n = 0, inbox_n = 0, parks_n = 0;
        for (int i = 0; i < LANES; i++) {
            pthread_join(lanes[i].th, NULL);
            spawn_n += lanes[i].spawn_rounds;
            inbox_n += lanes[i].inbox_rounds;
            parks_n += lanes[i].parks;
        }
        printf("stress_park: %u worker(s) x %d lanes: %" PRIu64 " spawn+join rounds, %" PRIu64
               " inbox wakes, %" PRIu64 " worker parks, %.1f s\n",
               workers, LANES, spawn_n, inbox_n, parks_n, (double)(weft_now() - t0) / 1e9);
        total += spawn_n + inbox_n;
        parks += parks_n;
    }
    atomic_store(&watchdog_stop, 1);
    pthread_join(wd, NULL);
    printf("stress_park: OK: %" PRIu64 " submissions racing parking workers, %" PRIu64
           " worker parks, %" PRIu64 " transient stalled samples, %.1f s\n",
           total, parks, atomic_load(&stall_samples), (double)(weft_now() - start_ns) / 1e9);
    return 0;
}

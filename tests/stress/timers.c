/*
 * stress/timers.c - the timing wheel (src/time/wheel.c) armed, re-armed,
 * cancelled and reused from several threads while another thread plays
 * the driver (weft__timers_process with the real clock).
 *
 * THREADS "workers" each own ENTRIES/THREADS entries. For every entry a
 * worker arms it with a short deadline (-0.1..1.5 ms, so some are due at
 * once), sometimes re-arms it at once with another deadline, and, for
 * entries a little behind it, cancels some and reuses others that it sees
 * FIRED (re-initialising the memory, as an owner that frees it would, then
 * arming again). Each arming uses its own waker ("ticket"), which counts
 * clones, wakes and drops and checks at wake time that the deadline has
 * passed. At the end, with the driver stopped and the wheel empty:
 *  - every ticket's one clone was woken or dropped, exactly once;
 *  - an arm reported due at once took no wake;
 *  - a ticket whose cancel removed it was never woken (also checked at
 *    wake time: a wake after its cancel returned is a failure);
 *  - every entry's last ticket that was neither cancelled nor due fired.
 * Under TSan this also checks the hand-off of a FIRED entry back to its
 * owner (release store in process, acquire load by the owner).
 *
 * Part 2 does the same through a runtime (2 workers and the driver):
 * sleeping stackless tasks and coroutines (sleeps, intervals, a timeout),
 * a third of them cancelled while they wait. No wait ends early, every
 * join reports 0 or (for a cancelled one) -ECANCELED, and the runtime is
 * freed with no waker left behind.
 *
 * Part 3 arms and cancels 100,000 timers through the public calls
 * (weft_timer_poll / weft_timer_cancel) from eight tasks on two workers,
 * each timer with its own ticket waker: one cancelled before its deadline
 * never fires, none fires early, every uncancelled one fires, and every
 * waker clone is woken or dropped exactly once.
 */
#define STRESS_NAME "stress_timers"
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>

#include "common/stress.h"
#include "common/wt.h"
#include "time/timers.h"

#define ENTRIES 100000
#define THREADS 4
#define PER (ENTRIES / THREADS)
#define WINDOW 256

typedef struct ticket {
    _Atomic int clones, wakes, drops, early, late_wake;
    _Atomic int cancelled; /* its cancel returned 1 */
    int64_t deadline;
    int due;
} ticket_t;

typedef struct entry {
    weft_timer_t t;
    ticket_t tk[3];
    int cur; /* the ticket of the last arming, -1 before the first */
} entry_t;

static entry_t *entries;
static weft__timers_t *tm;
static _Atomic int stop_driver;
static _Atomic int64_t kicks;
static _Atomic int64_t n_cancelled, n_reused, n_rearmed, n_due;

static void tk_clone(const weft_waker_t *src, weft_waker_t *dst)
{
    atomic_fetch_add(&((ticket_t *)src->data)->clones, 1);
    *dst = *src;
}
static void tk_wake(weft_waker_t *w)
{
    ticket_t *k = w->data;
    if (weft_now() < k->deadline)
        atomic_fetch_add(&k->early, 1);
    if (atomic_load(&k->cancelled))
        atomic_fetch_add(&k->late_wake, 1);
    atomic_fetch_add(&k->wakes, 1);
}
static void tk_wake_by_ref(const weft_waker_t *w)
{
    (void)w;
    fail("the wheel woke by reference");
}
static void tk_drop(weft_waker_t *w)
{
    atomic_fetch_add(&((ticket_t *)w->data)->drops, 1);
}
static const weft_waker_vtable_t tk_vt = {tk_clone, tk_wake, tk_wake_by_ref, tk_drop};

static void kick(void *arg, int64_t deadline)
{
    (void)arg;
    (void)deadline;
    atomic_fetch_add_explicit(&kicks, 1, memory_order_relaxed);
}

static void arm(entry_t *e, int k, uint32_t *rng)
{
    ticket_t *tk = &e->tk[k];
    tk->deadline = weft_now() - 100000 + (int64_t)(wt_rng(rng) % 1600000);
    weft_waker_t w = {&tk_vt, tk};
    tk->due = weft__timers_arm(tm, &e->t, tk->deadline, &w);
    if (tk->due)
        atomic_fetch_add_explicit(&n_due, 1, memory_order_relaxed);
    e->cur = k;
}

static void *worker(void *arg)
{
    unsigned id = (unsigned)(uintptr_t)arg;
    uint32_t rng = id * 7919u + 17;
    entry_t *mine = entries + (size_t)id * PER;
    for (int i = 0; i < PER; i++) {
        entry_t *e = &mine[i];
        arm(e, 0, &rng);
        if (wt_rng(&rng) % 4 == 0) {
            arm(e, 1, &rng); /* re-arm, usually while still armed */
            atomic_fetch_add_explicit(&n_rearmed, 1, memory_order_relaxed);
        }
        if (i < WINDOW)
            continue;
        entry_t *o = &mine[i - 1 - (int)(wt_rng(&rng) % WINDOW)];
        uint32_t op = wt_rng(&rng) % 4;
        if (op == 0) {
            if (weft__timers_cancel(tm, &o->t)) {
                atomic_store(&o->tk[o->cur].cancelled, 1);
                atomic_fetch_add_explicit(&n_cancelled, 1, memory_order_relaxed);
            }
        } else if (op == 1 && o->cur < 2 && !atomic_load(&o->tk[o->cur].cancelled) &&
                   /* Acquire: pairs with process's release store of FIRED;
                    * the entry is ours to overwrite after it. */
                   atomic_load_explicit(&o->t.state_, memory_order_acquire) == WEFT__TIMER_FIRED) {
            weft_timer_init(&o->t);
            arm(o, 2, &rng);
            atomic_fetch_add_explicit(&n_reused, 1, memory_order_relaxed);
        }
        if (wt_rng(&rng) % 1024 == 0)
            sched_yield();
    }
    return NULL;
}

static void *driver(void *arg)
{
    (void)arg;
    while (!atomic_load(&stop_driver)) {
        int64_t next = weft__timers_process(tm, weft_now());
        int64_t wait = next - weft_now();
        if (wait > 100000)
            wait = 100000;
        if (wait > 0)
            wt_sleep_ns(wait);
    }
    return NULL;
}

static void round_(int r)
{
    int64_t t0 = weft_now();
    atomic_store(&stop_driver, 0);
    atomic_store(&kicks, 0);
    atomic_store(&n_cancelled, 0);
    atomic_store(&n_reused, 0);
    atomic_store(&n_rearmed, 0);
    atomic_store(&n_due, 0);
    entries = calloc(ENTRIES, sizeof *entries);
    CHECK(entries, "calloc");
    for (int i = 0; i < ENTRIES; i++) {
        weft_timer_init(&entries[i].t);
        entries[i].cur = -1;
    }
    CHECK(weft__timers_new(kick, NULL, &tm) == 0, "weft__timers_new");
    pthread_t drv, th[THREADS];
    CHECK(pthread_create(&drv, NULL, driver, NULL) == 0, "pthread_create");
    for (unsigned i = 0; i < THREADS; i++)
        CHECK(pthread_create(&th[i], NULL, worker, (void *)(uintptr_t)i) == 0, "pthread_create");
    for (unsigned i = 0; i < THREADS; i++)
        pthread_join(th[i], NULL);
    int64_t end = weft_now() + 60 * WT_SEC;
    while (weft__timers_armed(tm) != 0) {
        CHECK(weft_now() < end, "%zu entries never fired", weft__timers_armed(tm));
        wt_sleep_ns(200000);
    }
    atomic_store(&stop_driver, 1);
    pthread_join(drv, NULL);

    int64_t fired = 0;
    for (int i = 0; i < ENTRIES; i++) {
        entry_t *e = &entries[i];
        CHECK(e->cur >= 0, "entry %d never armed", i);
        for (int k = 0; k < 3; k++) {
            ticket_t *tk = &e->tk[k];
            int clones = atomic_load(&tk->clones), wakes = atomic_load(&tk->wakes),
                drops = atomic_load(&tk->drops);
            if (clones == 0) {
                CHECK(wakes == 0 && drops == 0, "entry %d ticket %d: used without a clone", i, k);
                continue;
            }
            CHECK(clones == 1, "entry %d ticket %d: %d clones", i, k, clones);
            CHECK(wakes + drops == 1, "entry %d ticket %d: woken %d, dropped %d", i, k, wakes,
                  drops);
            CHECK(atomic_load(&tk->early) == 0, "entry %d ticket %d fired early", i, k);
            CHECK(atomic_load(&tk->late_wake) == 0,
                  "entry %d ticket %d woken after its cancel returned", i, k);
            if (tk->due)
                CHECK(drops == 1, "entry %d ticket %d: due at once but woken", i, k);
            if (atomic_load(&tk->cancelled))
                CHECK(wakes == 0, "entry %d ticket %d: cancelled but woken", i, k);
            if (k == e->cur && !tk->due && !atomic_load(&tk->cancelled))
                CHECK(wakes == 1, "entry %d ticket %d: armed last and never fired", i, k);
            fired += wakes;
        }
    }
    weft__timers_free(tm);
    free(entries);
    printf(STRESS_NAME ": round %d ok: %d entries, %" PRId64 " fired, %" PRId64
                       " cancelled, %" PRId64 " re-armed, %" PRId64 " reused, %" PRId64
                       " due at once, %" PRId64 " kicks, %.2f s\n",
           r, ENTRIES, fired, atomic_load(&n_cancelled), atomic_load(&n_rearmed),
           atomic_load(&n_reused), atomic_load(&n_due), atomic_load(&kicks),
           (double)(weft_now() - t0) / 1e9);
}

/* ---- part 2: the same calls through a runtime and its driver ---------------- */

#define RT_TASKS 3000
#define RT_COROS 200

typedef struct rt_sleep {
    weft_sleep_t s;
    int64_t deadline;
    _Atomic int *early;
} rt_sleep_t;

static weft_poll_t rt_sleep_poll(void *st, weft_cx_t *cx, int64_t *out)
{
    rt_sleep_t *p = st;
    int64_t v = -1;
    if (weft_sleep_vtable.poll(&p->s, cx, &v) == WEFT_PENDING)
        return WEFT_PENDING;
    if (weft_now() < p->deadline)
        atomic_fetch_add(p->early, 1);
    *out = v;
    return WEFT_READY;
}
static void rt_sleep_drop(void *st)
{
    weft_sleep_vtable.drop(&((rt_sleep_t *)st)->s);
}
static const weft_future_vtable_t rt_sleep_vt = {rt_sleep_poll, rt_sleep_drop, "stress_sleep"};

static _Atomic int rt_early, rt_bad;

/* Sleeps, an interval and a timeout, each result checked. */
static int rt_coro(void *arg)
{
    uint32_t rng = (uint32_t)(uintptr_t)arg * 2654435761u + 1;
    for (int k = 0; k < 8; k++) {
        int64_t d = weft_now() + (int64_t)(wt_rng(&rng) % 2000000);
        int rc = weft_sleep_until(d);
        if (rc == -ECANCELED)
            return 1;
        if (rc != 0)
            atomic_fetch_add(&rt_bad, 1);
        else if (weft_now() < d)
            atomic_fetch_add(&rt_early, 1);
    }
    weft_interval_t iv;
    weft_interval_init(&iv, weft_now(), 300000, (weft_missed_t)(wt_rng(&rng) % 3));
    for (int k = 0; k < 4; k++) {
        int64_t sched = 0;
        int rc = weft_interval_tick(&iv, &sched);
        if (rc == -ECANCELED)
            return 1;
        if (rc != 0)
            atomic_fetch_add(&rt_bad, 1);
        else if (weft_now() < sched)
            atomic_fetch_add(&rt_early, 1);
    }
    wt_counts_t c;
    wt_counts_init(&c);
    wt_pending_t p = {&c};
    int rc = weft_await_until(&wt_pending_vt, &p, weft_now() + 500000, NULL);
    if (rc == -ECANCELED)
        return 1;
    if (rc != -ETIMEDOUT || atomic_load(&c.drops) != 1)
        atomic_fetch_add(&rt_bad, 1);
    return 0;
}

static void runtime_part(void)
{
    int64_t t0 = weft_now();
    weft_runtime_t *rt = wt_runtime(2);
    static weft_task_t *h[RT_TASKS], *ch[RT_COROS];
    uint32_t rng = 99;
    for (int i = 0; i < RT_TASKS; i++) {
        /* The ones cancelled below sleep long enough to be cancelled
         * while armed even under TSan; the others 0-3 ms. */
        int64_t d = (int64_t)(wt_rng(&rng) % 3000000) + (i % 3 == 0 ? WT_SEC : 0);
        rt_sleep_t p = {.deadline = weft_now() + d, .early = &rt_early};
        weft_sleep_init(&p.s, p.deadline);
        CHECK(weft_spawn(rt, &rt_sleep_vt, &p, sizeof p, &h[i]) == 0, "spawn");
    }
    for (int i = 0; i < RT_COROS; i++)
        CHECK(weft_spawn_coro(rt, rt_coro, (void *)(uintptr_t)i, NULL, &ch[i]) == 0, "spawn_coro");
    /* Cancel a third of each while they sleep (or after they finished). */
    for (int i = 0; i < RT_TASKS; i += 3) {
        CHECK(weft_task_cancel(h[i]) == 0, "cancel");
        if (i % 64 == 0)
            wt_sleep_ns(20000);
    }
    for (int i = 0; i < RT_COROS; i += 3)
        CHECK(weft_task_cancel(ch[i]) == 0, "cancel");
    int cancelled = 0;
    for (int i = 0; i < RT_TASKS; i++) {
        int64_t v = -1;
        int rc = weft_task_join_wait(h[i], weft_now() + 60 * WT_SEC, &v);
        CHECK(rc == 0 || (rc == -ECANCELED && i % 3 == 0), "task %d: join %d", i, rc);
        CHECK(rc != 0 || v == 0, "task %d: output %" PRId64, i, v);
        cancelled += rc == -ECANCELED;
    }
    for (int i = 0; i < RT_COROS; i++) {
        int64_t v = -1;
        int rc = weft_task_join_wait(ch[i], weft_now() + 60 * WT_SEC, &v);
        CHECK(rc == 0 || (rc == -ECANCELED && i % 3 == 0), "coroutine %d: join %d", i, rc);
        CHECK(rc != 0 || v == 0, "coroutine %d: returned %" PRId64, i, v);
    }
    CHECK(atomic_load(&rt_early) == 0, "%d waits ended early", atomic_load(&rt_early));
    CHECK(atomic_load(&rt_bad) == 0, "%d waits returned a wrong code", atomic_load(&rt_bad));
    CHECK(wt_finish(rt) == 0, "weft_runtime_free: a waker left behind");
    printf(STRESS_NAME ": runtime ok: %d sleeping tasks (%d cancelled), %d coroutines, %.2f s\n",
           RT_TASKS, cancelled, RT_COROS, (double)(weft_now() - t0) / 1e9);
}

/* ---- part 3: RT_TIMERS timers armed and cancelled by tasks on the workers ---- */

#define RT_TIMERS 100000
#define RT_ARMERS 8
#define RT_PER (RT_TIMERS / RT_ARMERS)
#define RT_CHUNK 64
/* Deadlines fall within -0.1 ms..RT_SPAN_NS: most cancels come before
 * them (TSan runs ~10x slower). */
#define RT_SPAN_NS ((WT_TSAN ? 50 : 5) * WT_MS)

enum { K_CANCEL, K_FIRE };

typedef struct armer {
    weft_timer_t *t;
    ticket_t *tk;
    uint8_t *kind;
    uint32_t rng;
    int next, fired;
    bool tail_cancelled; /* the last WINDOW entries' cancels are done */
    pthread_t last;
    _Atomic int *switches, *in_time;
} armer_t;

static int64_t arm_timer(armer_t *a, int i, weft_cx_t *cx)
{
    ticket_t *tk = &a->tk[i];
    weft_waker_t w = {&tk_vt, tk};
    weft_cx_t child;
    weft_cx_init_child(&child, cx, &w);
    return weft_timer_poll(&a->t[i], tk->deadline, &child);
}

/* The distinct threads that ran armers (a worker count for the report). */
static pthread_t armer_threads[8];
static _Atomic int n_armer_threads;
static pthread_mutex_t armer_threads_lock = PTHREAD_MUTEX_INITIALIZER;

static void note_thread(pthread_t self)
{
    pthread_mutex_lock(&armer_threads_lock);
    int n = atomic_load(&n_armer_threads);
    bool seen = false;
    for (int i = 0; i < n; i++)
        seen = seen || pthread_equal(armer_threads[i], self);
    if (!seen && n < 8) {
        armer_threads[n] = self;
        atomic_store(&n_armer_threads, n + 1);
    }
    pthread_mutex_unlock(&armer_threads_lock);
}

/* Cancel timer i; if that happened before its deadline, the cancel
 * removed it, and a wake from now on is a failure (tk_wake checks). */
static void cancel_timer(armer_t *a, int i)
{
    weft_timer_cancel(&a->t[i]);
    if (weft_now() < a->tk[i].deadline) {
        atomic_store(&a->tk[i].cancelled, 1);
        atomic_fetch_add(a->in_time, 1);
    }
}

/*
 * Arms its RT_PER timers RT_CHUNK per poll (yielding in between, so the
 * tasks spread over the workers and the driver fires timers meanwhile),
 * each due within -0.1 ms..RT_SPAN_NS. Two thirds are cancelled WINDOW entries
 * later (most before their deadline: those must never fire; the rest may
 * have fired first), a third are left to fire. Then it polls that third
 * until every one has fired.
 */
static weft_poll_t armer_poll(void *st, weft_cx_t *cx, int64_t *out)
{
    armer_t *a = st;
    pthread_t self = pthread_self();
    if (!pthread_equal(self, a->last)) {
        a->last = self;
        atomic_fetch_add(a->switches, 1);
        note_thread(self);
    }
    for (int n = 0; n < RT_CHUNK && a->next < RT_PER; n++) {
        int i = a->next++;
        a->kind[i] = wt_rng(&a->rng) % 3 == 0 ? K_FIRE : K_CANCEL;
        a->tk[i].deadline =
            weft_now() - 100000 + (int64_t)(wt_rng(&a->rng) % (RT_SPAN_NS + 100000));
        weft_timer_init(&a->t[i]);
        int rc = arm_timer(a, i, cx);
        CHECK(rc == WEFT_READY || rc == WEFT_PENDING, "weft_timer_poll: %d", rc);
        a->tk[i].due = rc == WEFT_READY;
        if (i >= WINDOW && a->kind[i - WINDOW] == K_CANCEL)
            cancel_timer(a, i - WINDOW);
    }
    if (a->next < RT_PER) {
        weft_waker_wake_by_ref(weft_cx_waker(cx));
        return WEFT_PENDING;
    }
    for (int i = RT_PER - WINDOW; i < RT_PER && !a->tail_cancelled; i++) {
        if (a->kind[i] == K_CANCEL)
            cancel_timer(a, i);
    }
    a->tail_cancelled = true;
    for (; a->fired < RT_PER; a->fired++) {
        int i = a->fired;
        if (a->kind[i] == K_FIRE && !a->tk[i].due && arm_timer(a, i, cx) != WEFT_READY) {
            weft_waker_wake_by_ref(weft_cx_waker(cx)); /* not yet: look again */
            return WEFT_PENDING;
        }
    }
    *out = 0;
    return WEFT_READY;
}

static void armer_drop(void *st)
{
    armer_t *a = st;
    for (int i = 0; i < RT_PER; i++)
        weft_timer_cancel(&a->t[i]);
}

static const weft_future_vtable_t armer_vt = {armer_poll, armer_drop, "stress_armer"};

static void armers_part(void)
{
    int64_t t0 = weft_now();
    weft_runtime_t *rt = wt_runtime(2);
    weft_timer_t *timers = calloc(RT_TIMERS, sizeof *timers);
    ticket_t *tickets = calloc(RT_TIMERS, sizeof *tickets);
    uint8_t *kinds = calloc(RT_TIMERS, 1);
    CHECK(timers && tickets && kinds, "out of memory");
    _Atomic int switches = 0, in_time = 0;
    weft_task_t *h[RT_ARMERS];
    for (int j = 0; j < RT_ARMERS; j++) {
        armer_t a = {.t = timers + j * RT_PER,
                     .tk = tickets + j * RT_PER,
                     .kind = kinds + j * RT_PER,
                     .rng = (uint32_t)j * 2654435761u + 3,
                     .last = pthread_self(),
                     .switches = &switches,
                     .in_time = &in_time};
        CHECK(weft_spawn(rt, &armer_vt, &a, sizeof a, &h[j]) == 0, "spawn");
    }
    for (int j = 0; j < RT_ARMERS; j++) {
        int64_t v = -1;
        int rc = weft_task_join_wait(h[j], weft_now() + 120 * WT_SEC, &v);
        CHECK(rc == 0 && v == 0, "armer %d: join %d, output %" PRId64, j, rc, v);
    }
    CHECK(wt_finish(rt) == 0, "weft_runtime_free: a waker left behind");
    int fired = 0, due = 0;
    for (int i = 0; i < RT_TIMERS; i++) {
        ticket_t *k = &tickets[i];
        int live = atomic_load(&k->clones) - atomic_load(&k->wakes) - atomic_load(&k->drops);
        CHECK(live == 0, "timer %d: %d waker clones never released", i, live);
        CHECK(atomic_load(&k->early) == 0, "timer %d fired early", i);
        CHECK(atomic_load(&k->late_wake) == 0, "timer %d fired after its cancel", i);
        due += k->due;
        fired += atomic_load(&k->wakes);
    }
    printf(STRESS_NAME ": armers ok: %d timers on %d tasks (run by %d workers), %d cancelled "
                       "before their deadline, "
                       "%d due at once, %d woken by the driver, %d worker switches, %.2f s\n",
           RT_TIMERS, RT_ARMERS, atomic_load(&n_armer_threads), atomic_load(&in_time), due, fired,
           atomic_load(&switches), (double)(weft_now() - t0) / 1e9);
    free(timers);
    free(tickets);
    free(kinds);
}

int main(void)
{
    /* A few rounds (two under TSan, which is ~10x slower): each starts
     * with the wheel's clock at the present and the entries fresh. */
    int rounds = WT_TSAN ? 2 : 10;
    for (int r = 0; r < rounds; r++)
        round_(r);
    for (int r = 0; r < (WT_TSAN ? 1 : 3); r++)
        runtime_part();
    armers_part();
    return 0;
}

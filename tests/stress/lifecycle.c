/*
 * stress/lifecycle.c - races between a task's end and what its handle's
 * owner does to it: cancel (from the owner or a second thread, while the
 * task is queued, running, yielded or idle), detach racing completion,
 * join_wait with very short deadlines racing completion, and a joining
 * task that is itself cancelled while it waits.
 *
 * A plain main() so that it runs under ThreadSanitizer. Driver threads
 * each run many rounds; in a round the driver spawns one task T of a random
 * kind (ready at once, yields, wakes itself, waits for a flag the driver
 * raises, spins inside its poll, or pends until cancelled) and applies one
 * random action. Checks, every round:
 *  - T's future is dropped exactly once and never polled after the drop;
 *  - a join that returns 0 saw T's READY and its output; -ECANCELED means
 *    T never returned READY; a task cancelled before it could finish
 *    reports -ECANCELED, one never cancelled reports 0;
 *  - the joining task's own future is dropped exactly once too;
 * and at the end weft_runtime_free returns 0. Exit 0 on success, 1 with a
 * message otherwise.
 */
#include "common/wt.h"
#define STRESS_NAME "stress_lifecycle"
#include "common/stress.h"

#include <inttypes.h>
#include <semaphore.h>
#include <stdarg.h>
#include <unistd.h>

#if WT_TSAN
#define SCALE_DIV 2
#else
#define SCALE_DIV 1
#endif
#define DRIVERS 2
#define ROUNDS_PER_DRIVER (75000 / SCALE_DIV) /* per runtime (1 and 2 workers) */
#define MAGIC 0x5eed0000
#define WAIT_NS (20 * WT_SEC)
#define TIME_LIMIT_NS (150 * WT_SEC)

static int64_t start_ns;

/* ---- per-task bookkeeping ------------------------------------------------------------- */

typedef struct track {
    _Atomic int polls, readies, drops, late_poll;
} track_t;

static void track_init(track_t *t)
{
    atomic_store(&t->polls, 0);
    atomic_store(&t->readies, 0);
    atomic_store(&t->drops, 0);
    atomic_store(&t->late_poll, 0);
}

static void track_poll(track_t *t)
{
    if (atomic_load(&t->drops))
        atomic_store(&t->late_poll, 1);
    atomic_fetch_add(&t->polls, 1);
}

static void track_drop(track_t *t)
{
    CHECK(atomic_fetch_add(&t->drops, 1) == 0, "future dropped twice");
}

/* Wait until the future is dropped (the runtime may still be finishing). */
static void wait_dropped(track_t *t, const char *what)
{
    int64_t end = weft_now() + WAIT_NS;
    for (unsigned i = 0; !atomic_load(&t->drops); i++) {
        CHECK(weft_now() < end, "%s: future never dropped (polls %d)", what,
              atomic_load(&t->polls));
        if (i > 100)
            sched_yield();
    }
    CHECK(!atomic_load(&t->late_poll), "%s: polled after its drop", what);
}

/* ---- the task under test --------------------------------------------------------------- */

enum kind { K_READY, K_YIELD, K_SELF_WAKE, K_FLAG, K_SPIN, K_FOREVER, K_COUNT };
static const char *kind_name[K_COUNT] = {"ready", "yield", "self-wake", "flag", "spin", "forever"};

typedef struct tstate {
    track_t *tr;
    wt_flag_t *flag;
    int kind;
    int left;    /* yields / self-wakes left */
    int spin_ns; /* K_SPIN: busy time inside the first poll */
    weft_yield_t y;
} tstate_t;

static weft_poll_t t_poll(void *st, weft_cx_t *cx, int64_t *out)
{
    tstate_t *s = st;
    track_poll(s->tr);
    switch (s->kind) {
    case K_READY:
        break;
    case K_YIELD:
        if (s->left-- > 0) {
            weft_yield_init(&s->y);
            weft_yield_poll(&s->y, cx);
            return WEFT_PENDING;
        }
        break;
    case K_SELF_WAKE:
        if (s->left-- > 0) {
            weft_waker_wake_by_ref(weft_cx_waker(cx));
            return WEFT_PENDING;
        }
        break;
    case K_SPIN:
        if (s->spin_ns > 0) {
            wt_spin_ns(s->spin_ns);
            s->spin_ns = 0;
        }
        /* then wait for the flag */
        /* fall through */
    case K_FLAG:
        weft_atomic_waker_register(&s->flag->aw, weft_cx_waker(cx));
        if (!atomic_load(&s->flag->set))
            return WEFT_PENDING;
        break;
    case K_FOREVER:
        return WEFT_PENDING;
    }
    atomic_fetch_add(&s->tr->readies, 1);
    *out = MAGIC + s->kind;
    return WEFT_READY;
}

static void t_drop(void *st)
{
    track_drop(((tstate_t *)st)->tr);
}

static const weft_future_vtable_t t_vt = {t_poll, t_drop, "lifecycle_t"};

/* ---- a joining task ----------------------------------------------------------------------- */

typedef struct jstate {
    track_t *tr;
    weft_task_t *h; /* owned until consumed */
    int consumed;
    _Atomic int *rc; /* the join's result, 1 until then */
    _Atomic int64_t *got;
} jstate_t;

static weft_poll_t j_poll(void *st, weft_cx_t *cx, int64_t *out)
{
    jstate_t *s = st;
    track_poll(s->tr);
    int64_t v = -1;
    int rc = weft_task_join_poll(s->h, cx, &v);
    if (rc == WEFT_PENDING)
        return WEFT_PENDING;
    s->consumed = 1;
    atomic_store(s->got, v);
    atomic_store(s->rc, rc);
    atomic_fetch_add(&s->tr->readies, 1);
    *out = 1;
    return WEFT_READY;
}

static void j_drop(void *st)
{
    jstate_t *s = st;
    if (!s->consumed)
        weft_task_detach(s->h);
    track_drop(s->tr);
}

static const weft_future_vtable_t j_vt = {j_poll, j_drop, "lifecycle_joiner"};

/* ---- a second thread per driver that cancels on request ----------------------------------- */

typedef struct helper {
    pthread_t th;
    sem_t req;              /* posted with each request (and to stop) */
    weft_task_t *_Atomic h; /* request: cancel this after `delay` */
    _Atomic int delay;
    _Atomic int done; /* reply */
    _Atomic int stop;
} helper_t;

static void *helper_main(void *arg)
{
    helper_t *hp = arg;
    for (;;) {
        while (sem_wait(&hp->req) != 0) {
        }
        if (atomic_load(&hp->stop))
            return NULL;
        weft_task_t *h = atomic_load(&hp->h);
        wt_spin_ns(atomic_load(&hp->delay));
        CHECK(weft_task_cancel(h) == 0, "helper cancel");
        atomic_store(&hp->h, NULL);
        atomic_store(&hp->done, 1);
    }
}

/* ---- the driver ------------------------------------------------------------------------------ */

enum action {
    A_CANCEL,
    A_DETACH,
    A_SHORT_WAITS,
    A_HELPER_CANCEL,
    A_JOINER,
    A_CANCEL_DETACH,
    A_COUNT
};

typedef struct driver {
    weft_runtime_t *rt;
    int index;
    uint32_t rng;
    helper_t helper;
    uint64_t by_action[A_COUNT];
    uint64_t cancelled_results, ok_results, timeouts;
} driver_t;

static int rnd(driver_t *d, int n)
{
    return (int)(wt_rng(&d->rng) % (uint32_t)n);
}

/* A pause of 0 .. ~20 us, often none: lands before, during or after T runs. */
static void jitter(driver_t *d)
{
    int r = rnd(d, 8);
    if (r < 2)
        return;
    if (r == 2) {
        sched_yield();
        return;
    }
    wt_spin_ns(rnd(d, 20000));
}

/* Check a join result against what the task did. */
static void check_result(driver_t *d, int rc, int64_t out, track_t *tr, int kind,
                         bool cancel_requested, const char *what)
{
    if (rc == 0) {
        CHECK(atomic_load(&tr->readies) == 1, "%s (%s): join 0 but READY %d times", what,
              kind_name[kind], atomic_load(&tr->readies));
        CHECK(out == MAGIC + kind, "%s (%s): output %" PRId64, what, kind_name[kind], out);
        CHECK(kind != K_FOREVER, "%s: a task that never completes joined 0", what);
        d->ok_results++;
    } else {
        CHECK(rc == -ECANCELED, "%s (%s): join returned %d (%s)", what, kind_name[kind], rc,
              weft_strerror(rc));
        CHECK(cancel_requested, "%s (%s): -ECANCELED but never cancelled", what, kind_name[kind]);
        CHECK(atomic_load(&tr->readies) == 0, "%s (%s): -ECANCELED after READY", what,
              kind_name[kind]);
        d->cancelled_results++;
    }
}

static void round_once(driver_t *d)
{
    track_t tr, jtr;
    track_init(&tr);
    track_init(&jtr);
    wt_flag_t flag;
    wt_flag_init(&flag);
    int kind = rnd(d, K_COUNT);
    int action = rnd(d, A_COUNT);
    /* A task that only a cancel can end needs an action that cancels. */
    if (kind == K_FOREVER && (action == A_DETACH || action == A_SHORT_WAITS))
        action = A_CANCEL;
    if (kind == K_FOREVER && action == A_JOINER)
        action = A_HELPER_CANCEL;
    d->by_action[action]++;
    tstate_t st = {&tr, &flag, kind, 1 + rnd(d, 3), rnd(d, 30000), WEFT_YIELD_INIT};
    weft_task_t *h;
    int rc = weft_spawn(d->rt, &t_vt, &st, sizeof st, &h);
    CHECK(rc == 0, "spawn: %s", weft_strerror(rc));
    bool raised = false;
    bool needs_flag = kind == K_FLAG || kind == K_SPIN;
    int64_t out = -1;

    switch (action) {
    case A_CANCEL: /* cancel from the owner at a random moment, then join */
        jitter(d);
        if (needs_flag && rnd(d, 2)) {
            wt_flag_raise(&flag); /* completion races the cancel */
            raised = true;
        }
        CHECK(weft_task_cancel(h) == 0, "cancel");
        if (rnd(d, 4) == 0)
            CHECK(weft_task_cancel(h) == 0, "second cancel");
        rc = weft_task_join_wait(h, weft_now() + WAIT_NS, &out);
        check_result(d, rc, out, &tr, kind, true, "cancel+join");
        break;

    case A_DETACH: /* detach racing the first poll / completion */
        jitter(d);
        if (needs_flag && rnd(d, 2)) {
            wt_flag_raise(&flag);
            raised = true;
        }
        CHECK(weft_task_detach(h) == 0, "detach");
        if (needs_flag && !raised) {
            jitter(d);
            wt_flag_raise(&flag);
            raised = true;
        }
        break;

    case A_SHORT_WAITS: { /* join_wait with tiny deadlines racing completion */
        int raise_at = needs_flag ? rnd(d, 6) : -1;
        for (int i = 0;; i++) {
            if (i == raise_at) {
                wt_flag_raise(&flag);
                raised = true;
            }
            rc = weft_task_join_wait(h, weft_now() + rnd(d, 30000), &out);
            if (rc != -ETIMEDOUT)
                break;
            d->timeouts++;
            CHECK(i < 1000000, "short waits never ended");
            if (needs_flag && !raised && i >= 6) {
                wt_flag_raise(&flag);
                raised = true;
            }
        }
        check_result(d, rc, out, &tr, kind, false, "short waits");
        break;
    }

    case A_HELPER_CANCEL: { /* another thread cancels while we poll the state */
        atomic_store(&d->helper.delay, rnd(d, 20000));
        atomic_store(&d->helper.done, 0);
        atomic_store(&d->helper.h, h);
        sem_post(&d->helper.req);
        if (needs_flag && rnd(d, 2)) {
            jitter(d);
            wt_flag_raise(&flag);
            raised = true;
        }
        /* Only non-consuming calls while the helper may use the handle (a
         * join of a finished task consumes it whatever the deadline). */
        int64_t end = weft_now() + WAIT_NS;
        while (!atomic_load(&d->helper.done)) {
            int f = weft_task_is_finished(h);
            CHECK(f == 0 || f == 1, "is_finished: %d", f);
            CHECK(weft_task_id(h) > 0, "id");
            CHECK(weft_now() < end, "helper never cancelled");
        }
        rc = weft_task_join_wait(h, weft_now() + WAIT_NS, &out);
        check_result(d, rc, out, &tr, kind, true, "helper cancel");
        break;
    }

    case A_JOINER: { /* a task joins T; it may be cancelled while it waits */
        _Atomic int jrc = 1;
        _Atomic int64_t got = -1;
        jstate_t js = {&jtr, h, 0, &jrc, &got};
        weft_task_t *jh;
        rc = weft_spawn(d->rt, &j_vt, &js, sizeof js, &jh);
        CHECK(rc == 0, "spawn joiner: %s", weft_strerror(rc));
        bool cancel_j = rnd(d, 2);
        jitter(d);
        if (cancel_j)
            CHECK(weft_task_cancel(jh) == 0, "cancel joiner");
        if (needs_flag) {
            jitter(d);
            wt_flag_raise(&flag);
            raised = true;
        }
        int64_t jout = 0;
        rc = weft_task_join_wait(jh, weft_now() + WAIT_NS, &jout);
        if (rc == 0) {
            CHECK(jout == 1, "joiner output");
            check_result(d, atomic_load(&jrc), atomic_load(&got), &tr, kind, false,
                         "joined by a task");
        } else {
            CHECK(rc == -ECANCELED && cancel_j, "joiner join: %s", weft_strerror(rc));
            CHECK(atomic_load(&jrc) == 1, "cancelled joiner finished its join");
        }
        wait_dropped(&jtr, "joiner");
        break;
    }

    case A_CANCEL_DETACH: /* cancel and give the handle back at once */
        jitter(d);
        CHECK(weft_task_cancel(h) == 0, "cancel");
        CHECK(weft_task_detach(h) == 0, "detach");
        break;
    }

    wait_dropped(&tr, kind_name[kind]);
    /* The flag's slot may hold a clone of T's waker: release it. */
    if (needs_flag && !raised && rnd(d, 2))
        wt_flag_raise(&flag);
    wt_flag_destroy(&flag);
    CHECK(atomic_load(&tr.readies) <= 1, "READY %d times", atomic_load(&tr.readies));
}

static void *driver_main(void *arg)
{
    driver_t *d = arg;
    for (int i = 0; i < ROUNDS_PER_DRIVER; i++) {
        round_once(d);
        if ((i & 1023) == 0)
            CHECK(weft_now() - start_ns < TIME_LIMIT_NS, "time limit exceeded");
    }
    return NULL;
}

static void run(unsigned workers)
{
    weft_runtime_t *rt = wt_runtime(workers);
    static driver_t d[DRIVERS];
    int64_t t0 = weft_now();
    for (int i = 0; i < DRIVERS; i++) {
        memset(&d[i], 0, sizeof d[i]);
        d[i].rt = rt;
        d[i].index = i;
        d[i].rng = 0x51ed270bu * (unsigned)(i + 1) + workers;
        CHECK(sem_init(&d[i].helper.req, 0, 0) == 0, "sem_init");
        CHECK(pthread_create(&d[i].helper.th, NULL, helper_main, &d[i].helper) == 0,
              "pthread_create");
    }
    pthread_t th[DRIVERS];
    for (int i = 0; i < DRIVERS; i++)
        CHECK(pthread_create(&th[i], NULL, driver_main, &d[i]) == 0, "pthread_create");
    uint64_t ok = 0, cancelled = 0, timeouts = 0, by_action[A_COUNT] = {0};
    for (int i = 0; i < DRIVERS; i++) {
        pthread_join(th[i], NULL);
        atomic_store(&d[i].helper.stop, 1);
        sem_post(&d[i].helper.req);
        pthread_join(d[i].helper.th, NULL);
        sem_destroy(&d[i].helper.req);
        ok += d[i].ok_results;
        cancelled += d[i].cancelled_results;
        timeouts += d[i].timeouts;
        for (int a = 0; a < A_COUNT; a++)
            by_action[a] += d[i].by_action[a];
    }
    int rc = weft_runtime_shutdown(rt, weft_now() + 10 * WT_SEC);
    CHECK(rc == 0, "%d stragglers: every round's task had ended", rc);
    rc = weft_runtime_free(rt);
    CHECK(rc == 0, "weft_runtime_free: %s", weft_strerror(rc));
    printf("stress_lifecycle: %u worker(s): %d rounds in %.1f s (cancel %" PRIu64
           ", detach %" PRIu64 ", short waits %" PRIu64 ", helper cancel %" PRIu64
           ", joiner %" PRIu64 ", cancel+detach %" PRIu64 "); joins: %" PRIu64 " ok, %" PRIu64
           " cancelled, %" PRIu64 " timeouts\n",
           workers, DRIVERS * ROUNDS_PER_DRIVER, (double)(weft_now() - t0) / 1e9,
           by_action[A_CANCEL], by_action[A_DETACH], by_action[A_SHORT_WAITS],
           by_action[A_HELPER_CANCEL], by_action[A_JOINER], by_action[A_CANCEL_DETACH], ok,
           cancelled, timeouts);
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    start_ns = weft_now();
    if (SCALE_DIV != 1)
        printf("stress_lifecycle: ThreadSanitizer build: rounds scaled down %dx\n", SCALE_DIV);
    run(1);
    run(2);
    printf("stress_lifecycle: OK (%.1f s)\n", (double)(weft_now() - start_ns) / 1e9);
    return 0;
}

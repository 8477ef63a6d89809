/*
 * stress/spawn.c - concurrent spawning from foreign threads and from tasks,
 * with tasks waking each other across workers; every task accounted for.
 *
 * A plain main() so that it runs under ThreadSanitizer. Every task gets a
 * slot (a unique number) before it is spawned; the slot counts the task's
 * READY results and drops, and flags a poll after the drop. Load, from 8
 * foreign threads at once:
 *  - leaves: ready at once or after one yield, detached;
 *  - parents (joined by the spawning thread with weft_task_join_wait):
 *    spawn 8 children from inside the runtime, half joined with
 *    weft_task_join_poll, half detached; the output is the sum of the
 *    joined children's outputs;
 *  - ping-pong pairs: two tasks bouncing a counter through two atomic
 *    wakers, so wakes cross workers all the time.
 * One kind of round runs to completion: every slot must show exactly one
 * READY and one drop. The other shuts the runtime down while the threads
 * still spawn (after 1/5 .. 5/5 of their top-level spawns, by round): every
 * accepted task must be dropped exactly once (READY at most once), a
 * refused spawn (-ESHUTDOWN) must not be dropped at all, and every handle
 * still reports its end. Every round ends with weft_runtime_free == 0;
 * 10 rounds of each kind with 1 and with 2 workers. Exit 0 on success, 1
 * with a message otherwise.
 */
#include "common/wt.h"
#define STRESS_NAME "stress_spawn"
#include "common/stress.h"

#include <inttypes.h>
#include <stdarg.h>
#include <unistd.h>

#if WT_TSAN
#define SCALE_DIV 4
#else
#define SCALE_DIV 1
#endif
#define THREADS 8
#define TOP_PER_THREAD (6000 / SCALE_DIV) /* top-level spawns per thread and round */
#define REPS 10                           /* rounds of each kind per worker count */
#define CHILDREN 8
#define PP_ROUNDS 20 /* counter increments per ping-pong pair */
#define MAX_SLOTS (THREADS * TOP_PER_THREAD * (CHILDREN + 2))
#define MAX_PAIRS (THREADS * TOP_PER_THREAD)
#define TIME_LIMIT_NS (120 * WT_SEC)

/* ---- slots -------------------------------------------------------------------------- */

typedef struct slot {
    _Atomic uint8_t readies, drops, refused, late_poll;
} slot_t;

static slot_t *slots;
static _Atomic uint32_t next_slot;
static _Atomic uint32_t errors;    /* wrong outputs seen by parents */
static _Atomic uint32_t completed; /* READY results, all slots */
static _Atomic int shutting_down;

static uint32_t new_slot(void)
{
    uint32_t s = atomic_fetch_add(&next_slot, 1);
    CHECK(s < MAX_SLOTS, "slot table too small");
    return s;
}

static void on_poll(uint32_t s)
{
    if (atomic_load(&slots[s].drops))
        atomic_store(&slots[s].late_poll, 1);
}

static void on_ready(uint32_t s)
{
    CHECK(atomic_fetch_add(&slots[s].readies, 1) == 0, "slot %u ready twice", s);
    atomic_fetch_add(&completed, 1);
}

static void on_drop(uint32_t s)
{
    CHECK(atomic_fetch_add(&slots[s].drops, 1) == 0, "slot %u dropped twice", s);
}

/* Spawn with a slot; on refusal mark the slot (the state stays ours). */
static int spawn_slot(weft_runtime_t *rt, const weft_future_vtable_t *vt, const void *st,
                      size_t size, weft_task_t **h, uint32_t slot)
{
    int rc = weft_spawn(rt, vt, st, size, h);
    if (rc == -ESHUTDOWN) {
        CHECK(atomic_load(&shutting_down), "-ESHUTDOWN before shutdown");
        atomic_store(&slots[slot].refused, 1);
    } else {
        CHECK(rc == 0, "spawn: %s", weft_strerror(rc));
    }
    return rc;
}

/* ---- leaves --------------------------------------------------------------------------- */

typedef struct leaf {
    uint32_t slot;
    int yields;
    weft_yield_t y;
} leaf_t;

static weft_poll_t leaf_poll(void *st, weft_cx_t *cx, int64_t *out)
{
    leaf_t *l = st;
    on_poll(l->slot);
    if (l->yields > 0) {
        l->yields--;
        weft_yield_init(&l->y);
        weft_yield_poll(&l->y, cx);
        return WEFT_PENDING;
    }
    on_ready(l->slot);
    *out = l->slot;
    return WEFT_READY;
}

static void leaf_drop(void *st)
{
    on_drop(((leaf_t *)st)->slot);
}

static const weft_future_vtable_t leaf_vt = {leaf_poll, leaf_drop, "leaf"};

/* ---- ping-pong pairs ------------------------------------------------------------------- */

typedef struct pair {
    _Atomic int count;
    weft_atomic_waker_t aw[2];
} pair_t;

static pair_t *pairs;
static _Atomic uint32_t next_pair;

typedef struct pp {
    uint32_t slot;
    uint32_t pair;
    int side;
} pp_t;

static weft_poll_t pp_poll(void *st, weft_cx_t *cx, int64_t *out)
{
    pp_t *p = st;
    pair_t *pr = &pairs[p->pair];
    on_poll(p->slot);
    weft_atomic_waker_register(&pr->aw[p->side], weft_cx_waker(cx));
    for (;;) {
        int c = atomic_load(&pr->count);
        if (c >= PP_ROUNDS) {
            weft_atomic_waker_wake(&pr->aw[1 - p->side]);
            on_ready(p->slot);
            *out = p->slot;
            return WEFT_READY;
        }
        if (c % 2 != p->side)
            return WEFT_PENDING; /* the other side's turn; it wakes us */
        atomic_store(&pr->count, c + 1);
        weft_atomic_waker_wake(&pr->aw[1 - p->side]);
    }
}

static void pp_drop(void *st)
{
    on_drop(((pp_t *)st)->slot);
}

static const weft_future_vtable_t pp_vt = {pp_poll, pp_drop, "pingpong"};

static void spawn_pair(weft_runtime_t *rt)
{
    uint32_t id = atomic_fetch_add(&next_pair, 1);
    CHECK(id < MAX_PAIRS, "pair table too small");
    for (int side = 0; side < 2; side++) {
        pp_t p = {new_slot(), id, side};
        spawn_slot(rt, &pp_vt, &p, sizeof p, NULL, p.slot);
    }
}

/* ---- parents ---------------------------------------------------------------------------- */

typedef struct parent {
    uint32_t slot;
    int spawned, next;
    weft_task_t *h[CHILDREN];
    uint32_t child_slot[CHILDREN];
    int64_t sum;
} parent_t;

static weft_poll_t parent_poll(void *st, weft_cx_t *cx, int64_t *out)
{
    parent_t *p = st;
    on_poll(p->slot);
    if (!p->spawned) {
        p->spawned = 1;
        weft_runtime_t *rt = weft_runtime_current();
        CHECK(rt != NULL, "weft_runtime_current() is NULL in a task");
        for (int i = 0; i < CHILDREN; i++) {
            leaf_t l = {new_slot(), i % 3 == 0, WEFT_YIELD_INIT};
            p->child_slot[i] = l.slot;
            p->h[i] = NULL;
            bool keep = i % 2 == 0;
            int rc = spawn_slot(rt, &leaf_vt, &l, sizeof l, keep ? &p->h[i] : NULL, l.slot);
            if (rc != 0)
                p->h[i] = NULL;
        }
        if (p->slot % 4 == 0)
            spawn_pair(rt); /* some wakes start from inside, too */
    }
    for (; p->next < CHILDREN; p->next++) {
        if (!p->h[p->next])
            continue;
        int64_t v = -1;
        int rc = weft_task_join_poll(p->h[p->next], cx, &v);
        if (rc == WEFT_PENDING)
            return WEFT_PENDING;
        p->h[p->next] = NULL; /* consumed */
        if (rc == 0) {
            if (v != p->child_slot[p->next])
                atomic_fetch_add(&errors, 1);
            p->sum += v;
        } else if (rc != -ECANCELED || !atomic_load(&shutting_down)) {
            atomic_fetch_add(&errors, 1);
        }
    }
    on_ready(p->slot);
    *out = p->sum;
    return WEFT_READY;
}

static void parent_drop(void *st)
{
    parent_t *p = st;
    for (int i = 0; i < CHILDREN; i++)
        if (p->h[i])
            weft_task_detach(p->h[i]);
    on_drop(p->slot);
}

static const weft_future_vtable_t parent_vt = {parent_poll, parent_drop, "parent"};

/* ---- foreign spawners ------------------------------------------------------------------- */

typedef struct spawner {
    weft_runtime_t *rt;
    int index;
    _Atomic int *go;
    _Atomic int *spawned; /* top-level spawns made, all threads */
    weft_task_t **h;      /* parents' handles */
    uint32_t *h_slot;
    int nh;
    uint32_t rng;
    int refused;
} spawner_t;

static void *spawner_main(void *arg)
{
    spawner_t *s = arg;
    while (!atomic_load(s->go))
        sched_yield();
    for (int i = 0; i < TOP_PER_THREAD; i++) {
        uint32_t r = wt_rng(&s->rng);
        int rc = 0;
        switch (r % 3) {
        case 0: {
            leaf_t l = {new_slot(), (int)(r >> 8) & 1, WEFT_YIELD_INIT};
            rc = spawn_slot(s->rt, &leaf_vt, &l, sizeof l, NULL, l.slot);
            break;
        }
        case 1: {
            parent_t p;
            memset(&p, 0, sizeof p);
            p.slot = new_slot();
            weft_task_t *h = NULL;
            rc = spawn_slot(s->rt, &parent_vt, &p, sizeof p, &h, p.slot);
            if (rc == 0) {
                s->h[s->nh] = h;
                s->h_slot[s->nh++] = p.slot;
            }
            break;
        }
        default:
            spawn_pair(s->rt);
            break;
        }
        if (rc == -ESHUTDOWN)
            s->refused++;
        atomic_fetch_add(s->spawned, 1);
    }
    /* Join the parents: 0 with the children's sum, or -ECANCELED only
     * once shutdown has begun. */
    for (int i = 0; i < s->nh; i++) {
        int64_t out = -1;
        int rc = weft_task_join_wait(s->h[i], weft_now() + 60 * WT_SEC, &out);
        uint32_t sl = s->h_slot[i];
        if (rc == 0) {
            CHECK(atomic_load(&slots[sl].readies) == 1, "joined 0 but slot %u not ready", sl);
            CHECK(out >= 0, "parent %u output %" PRId64, sl, out);
        } else {
            CHECK(rc == -ECANCELED && atomic_load(&shutting_down), "parent %u join: %s", sl,
                  weft_strerror(rc));
            CHECK(atomic_load(&slots[sl].readies) == 0, "cancelled parent %u was ready", sl);
        }
    }
    return NULL;
}

static void run_round(unsigned workers, bool shutdown_early, int rep)
{
    weft_runtime_t *rt = wt_runtime(workers);
    memset(slots, 0, sizeof(slot_t) * MAX_SLOTS);
    atomic_store(&next_slot, 0);
    atomic_store(&next_pair, 0);
    atomic_store(&completed, 0);
    atomic_store(&errors, 0);
    atomic_store(&shutting_down, 0);
    for (uint32_t i = 0; i < MAX_PAIRS; i++) {
        atomic_store(&pairs[i].count, 0);
        weft_atomic_waker_init(&pairs[i].aw[0]);
        weft_atomic_waker_init(&pairs[i].aw[1]);
    }
    static spawner_t sp[THREADS];
    pthread_t th[THREADS];
    _Atomic int go = 0, spawned = 0;
    for (int t = 0; t < THREADS; t++) {
        sp[t] = (spawner_t){rt,
                            t,
                            &go,
                            &spawned,
                            calloc(TOP_PER_THREAD, sizeof(weft_task_t *)),
                            calloc(TOP_PER_THREAD, sizeof(uint32_t)),
                            0,
                            0x2545f491u * (unsigned)(t + 1) + workers * 7u + shutdown_early,
                            0};
        CHECK(sp[t].h && sp[t].h_slot, "calloc");
        CHECK(pthread_create(&th[t], NULL, spawner_main, &sp[t]) == 0, "pthread_create");
    }
    int64_t t0 = weft_now();
    atomic_store(&go, 1);
    int stragglers = 0;
    if (shutdown_early) {
        /* Shut down after 1/5 .. 5/5 of the top-level spawns (by round). */
        while (atomic_load(&spawned) < THREADS * TOP_PER_THREAD * (rep % 5 + 1) / 5)
            sched_yield();
        atomic_store(&shutting_down, 1);
        stragglers = weft_runtime_shutdown(rt, weft_now() + 20 * WT_SEC);
        CHECK(stragglers >= 0, "shutdown: %s", weft_strerror(stragglers));
    }
    int refused = 0;
    for (int t = 0; t < THREADS; t++) {
        pthread_join(th[t], NULL);
        refused += sp[t].refused;
        free(sp[t].h);
        free(sp[t].h_slot);
    }
    uint32_t n = atomic_load(&next_slot);
    if (!shutdown_early) {
        int64_t end = weft_now() + 30 * WT_SEC;
        while (atomic_load(&completed) < n) {
            CHECK(weft_now() < end, "only %u of %u tasks completed", atomic_load(&completed), n);
            wt_sleep_ns(1000000);
        }
        /* A task's drop runs right after its READY: wait for the last. */
        for (uint32_t i = 0; i < n; i++)
            while (!atomic_load(&slots[i].drops)) {
                CHECK(weft_now() < end, "slot %u completed but never dropped", i);
                sched_yield();
            }
        stragglers = weft_runtime_shutdown(rt, weft_now() + 20 * WT_SEC);
        CHECK(stragglers == 0, "%d stragglers after every task completed", stragglers);
    }
    CHECK(atomic_load(&errors) == 0, "%u wrong join results in parents", atomic_load(&errors));
    uint32_t accepted = 0, ready = 0;
    for (uint32_t i = 0; i < n; i++) {
        slot_t *sl = &slots[i];
        CHECK(!atomic_load(&sl->late_poll), "slot %u polled after its drop", i);
        if (atomic_load(&sl->refused)) {
            CHECK(atomic_load(&sl->drops) == 0 && atomic_load(&sl->readies) == 0,
                  "refused spawn %u was run or dropped", i);
            continue;
        }
        accepted++;
        CHECK(atomic_load(&sl->drops) == 1, "slot %u dropped %u times", i,
              (unsigned)atomic_load(&sl->drops));
        CHECK(atomic_load(&sl->readies) <= 1, "slot %u ready %u times", i,
              (unsigned)atomic_load(&sl->readies));
        if (!shutdown_early)
            CHECK(atomic_load(&sl->readies) == 1, "slot %u never completed", i);
        ready += atomic_load(&sl->readies);
    }
    /* The pairs' slots still hold wakers of finished tasks. */
    for (uint32_t i = 0; i < atomic_load(&next_pair); i++) {
        weft_atomic_waker_destroy(&pairs[i].aw[0]);
        weft_atomic_waker_destroy(&pairs[i].aw[1]);
    }
    int frc = weft_runtime_free(rt);
    CHECK(frc == 0, "weft_runtime_free: %s", weft_strerror(frc));
    if (rep > 1)
        return;
    printf("stress_spawn: %u worker(s), %s: %u tasks accepted, %u completed, %d top-level "
           "spawns refused, %d stragglers, %.2f s\n",
           workers, shutdown_early ? "shutdown mid-flight" : "run to completion", accepted, ready,
           refused, stragglers, (double)(weft_now() - t0) / 1e9);
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    int64_t start = weft_now();
    if (SCALE_DIV != 1)
        printf("stress_spawn: ThreadSanitizer build: spawns scaled down %dx\n", SCALE_DIV);
    slots = calloc(MAX_SLOTS, sizeof *slots);
    pairs = calloc(MAX_PAIRS, sizeof *pairs);
    CHECK(slots && pairs, "calloc");
    for (unsigned workers = 1; workers <= 2; workers++) {
        for (int rep = 0; rep < REPS; rep++) {
            run_round(workers, false, rep);
            run_round(workers, true, rep);
            CHECK(weft_now() - start < TIME_LIMIT_NS, "time limit exceeded");
        }
    }
    free(slots);
    free(pairs);
    printf("stress_spawn: OK (%.1f s)\n", (double)(weft_now() - start) / 1e9);
    return 0;
}

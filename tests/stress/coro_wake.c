/*
 * coro_wake - coroutines woken from foreign threads and from each other
 * while they switch out; no wake is lost and no coroutine is ever resumed
 * twice at once (plain main: runs under TSan and under qemu-aarch64).
 *
 * N coroutines (half pinned, half migratable) each pass R gates. A gate is
 * a counter with an atomic waker: the coroutine awaits "counter moved past
 * what I saw". Foreign threads and the coroutines themselves bump random
 * gates all the time, so wakes land before, during and after each
 * coroutine's switch-out. Each coroutine flags itself inside/outside
 * around every await: finding the flag already set on resume means two
 * threads run the same stack. A lost wake shows as a coroutine that never
 * finishes (the join has a deadline).
 */
#define STRESS_NAME "coro_wake"
#include <errno.h>

#include "common/stress.h"
#include "common/wt.h"

#define N 64
#define THREADS 3

typedef struct gate {
    _Atomic uint64_t seq;
    weft_atomic_waker_t aw;
    _Atomic int inside;
    uint64_t seen;
    int rounds;
} gate_t;

static gate_t gates[N];
static _Atomic int done_coros;
static _Atomic int stop_threads;
static _Atomic int doubles;
static int R;

static void bump(gate_t *g)
{
    atomic_fetch_add(&g->seq, 1);
    weft_atomic_waker_wake(&g->aw);
}

typedef struct gate_fut {
    gate_t *g;
} gate_fut_t;

static weft_poll_t gate_poll(void *st, weft_cx_t *cx, int64_t *out)
{
    gate_t *g = ((gate_fut_t *)st)->g;
    weft_atomic_waker_register(&g->aw, weft_cx_waker(cx));
    uint64_t s = atomic_load(&g->seq);
    if (s == g->seen)
        return WEFT_PENDING;
    g->seen = s;
    *out = (int64_t)s;
    return WEFT_READY;
}

static const weft_future_vtable_t gate_vt = {gate_poll, NULL, "gate"};

static int coro(void *arg)
{
    int i = (int)(intptr_t)arg;
    gate_t *g = &gates[i];
    uint32_t rng = (uint32_t)i * 2654435761u + 1;
    for (int r = 0; r < R; r++) {
        atomic_store(&g->inside, 0);
        gate_fut_t f = {g};
        int rc = weft_await(&gate_vt, &f, NULL);
        if (atomic_exchange(&g->inside, 1) != 0)
            atomic_fetch_add(&doubles, 1);
        if (rc != 0)
            return -1;
        g->rounds++;
        bump(&gates[wt_rng(&rng) % N]); /* a wake from a worker, maybe another */
        if (r % 16 == 0 && weft_yield() != 0)
            return -2;
    }
    atomic_fetch_add(&done_coros, 1);
    return g->rounds;
}

static void *waker_thread(void *arg)
{
    uint32_t rng = (uint32_t)(uintptr_t)arg * 7919u + 3;
    while (!atomic_load(&stop_threads)) {
        bump(&gates[wt_rng(&rng) % N]);
        if (wt_rng(&rng) % 64 == 0)
            sched_yield();
    }
    return NULL;
}

static void round_(unsigned workers)
{
    weft_runtime_t *rt = wt_runtime(workers);
    atomic_store(&done_coros, 0);
    atomic_store(&stop_threads, 0);
    for (int i = 0; i < N; i++) {
        atomic_init(&gates[i].seq, 0);
        weft_atomic_waker_init(&gates[i].aw);
        atomic_init(&gates[i].inside, 0);
        gates[i].seen = 0;
        gates[i].rounds = 0;
    }
    pthread_t th[THREADS];
    for (int t = 0; t < THREADS; t++)
        CHECK(pthread_create(&th[t], NULL, waker_thread, (void *)(uintptr_t)t) == 0, "thread");
    weft_task_t *h[N];
    for (int i = 0; i < N; i++) {
        weft_coro_opts_t o = WEFT_CORO_OPTS_INIT;
        o.migratable = i % 2;
        o.name = "gate";
        CHECK(weft_spawn_coro(rt, coro, (void *)(intptr_t)i, &o, &h[i]) == 0, "spawn");
    }
    for (int i = 0; i < N; i++) {
        int64_t v = -1;
        int rc = weft_task_join_wait(h[i], weft_now() + 120 * WT_SEC, &v);
        CHECK(rc != -ETIMEDOUT, "coroutine %d stuck after %d of %d rounds: a lost wake-up", i,
              gates[i].rounds, R);
        CHECK(rc == 0 && v == R, "coroutine %d: rc %d, %lld rounds of %d", i, rc, (long long)v, R);
    }
    atomic_store(&stop_threads, 1);
    for (int t = 0; t < THREADS; t++)
        pthread_join(th[t], NULL);
    CHECK(atomic_load(&doubles) == 0, "%d double resumes", atomic_load(&doubles));
    CHECK(atomic_load(&done_coros) == N, "done %d", atomic_load(&done_coros));
    CHECK(weft_runtime_shutdown(rt, weft_now() + WT_SEC) == 0, "shutdown stragglers");
    for (int i = 0; i < N; i++)
        weft_atomic_waker_destroy(&gates[i].aw);
    CHECK(weft_runtime_free(rt) == 0, "free");
}

int main(void)
{
    const char *d = getenv("WEFT_STRESS_DIV");
    int div = d && atoi(d) > 0 ? atoi(d) : 1;
    R = (WT_TSAN ? 1000 : 5000) / div;
    round_(2);
    round_(4); /* more workers than cores: preemption mid-switch */
    printf("coro_wake: ok (%d coroutines x %d rounds, x2)\n", N, R);
    return 0;
}

/*
 * micro_wake: wake-to-run latency. A task waits on an atomic waker; a
 * thread outside the runtime stamps the time, wakes it, and the task
 * stamps the time when it is polled. Two modes:
 *   parked: the waker pauses 200 us between rounds, so the workers have
 *           gone to sleep (futex) and the wake pays an unpark;
 *   busy:   rounds back to back, so a worker is usually still searching.
 * Prints p50/p99 in ns for each. Fixed sizes; never fails on time.
 */
#include <stdatomic.h>
#include <time.h>

#include "common.h"

#define ROUNDS 20000

typedef struct shared {
    weft_atomic_waker_t aw;
    _Atomic int64_t woke_at; /* set by the waker thread */
    _Atomic int64_t ran_at;  /* set by the task */
    _Atomic int round;       /* rounds completed by the task */
    _Atomic int armed;       /* the task registered for the next round */
    int total;
} shared_t;

typedef struct waiter {
    shared_t *sh;
    int seen;
} waiter_t;

static weft_poll_t waiter_poll(void *state, weft_cx_t *cx, int64_t *out)
{
    waiter_t *w = state;
    shared_t *sh = w->sh;
    for (;;) {
        int64_t woke = atomic_load_explicit(&sh->woke_at, memory_order_acquire);
        if (woke != 0) {
            atomic_store_explicit(&sh->ran_at, weft_now(), memory_order_release);
            atomic_store_explicit(&sh->woke_at, 0, memory_order_relaxed);
            w->seen++;
            atomic_store_explicit(&sh->round, w->seen, memory_order_release);
            if (w->seen == sh->total) {
                *out = 0;
                return WEFT_READY;
            }
            continue;
        }
        weft_atomic_waker_register(&sh->aw, weft_cx_waker(cx));
        if (atomic_load_explicit(&sh->woke_at, memory_order_acquire) != 0)
            continue;
        atomic_store_explicit(&sh->armed, w->seen + 1, memory_order_release);
        return WEFT_PENDING;
    }
}
static const weft_future_vtable_t waiter_vt = {waiter_poll, NULL, "micro_wake"};

static int cmp64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static void run_mode(unsigned workers, int pause_us, const char *mode)
{
    weft_runtime_t *rt = bench_runtime(workers);
    shared_t sh = {.total = ROUNDS};
    weft_atomic_waker_init(&sh.aw);
    waiter_t init = {&sh, 0};
    weft_task_t *h;
    bench_check(weft_spawn(rt, &waiter_vt, &init, sizeof init, &h) == 0, "spawn");
    int64_t *lat = malloc(sizeof *lat * ROUNDS);
    for (int i = 0; i < ROUNDS; i++) {
        while (atomic_load_explicit(&sh.armed, memory_order_acquire) != i + 1)
            ; /* the task is registered and pending */
        if (pause_us) {
            struct timespec ts = {0, pause_us * 1000L};
            nanosleep(&ts, NULL);
        }
        int64_t t0 = weft_now();
        atomic_store_explicit(&sh.woke_at, t0, memory_order_release);
        weft_atomic_waker_wake(&sh.aw);
        while (atomic_load_explicit(&sh.round, memory_order_acquire) != i + 1)
            ;
        lat[i] = atomic_load_explicit(&sh.ran_at, memory_order_acquire) - t0;
    }
    bench_check(weft_task_join_wait(h, WEFT_FOREVER, NULL) == 0, "join");
    qsort(lat, ROUNDS, sizeof *lat, cmp64);
    printf("RESULT micro_wake weft workers=%u mode=%s p50_ns=%lld p99_ns=%lld\n", workers, mode,
           (long long)lat[ROUNDS / 2], (long long)lat[ROUNDS * 99 / 100]);
    free(lat);
    weft_atomic_waker_destroy(&sh.aw);
    bench_finish(rt);
}

int main(int argc, char **argv)
{
    bench_args_t a = bench_parse(argc, argv, "micro_wake");
    run_mode(a.workers, 0, "busy");
    run_mode(a.workers, 200, "parked");
    return 0;
}

/*
 * micro_ring.c - micro-benchmark of the per-worker run queue
 * (src/sched/ring.c). Prints figures; never fails on a time.
 *
 * Output (one line, fields fixed):
 *   RESULT micro_ring weft push_pop_ns=.. fill_drain_ns=.. steal_ns=.. steal_call_ns=..
 *          contended_ns=.. contended_stolen_pct=.. contended_steals=..
 *   push_pop_ns     single thread, push then pop one item: ns per pair
 *   fill_drain_ns   single thread, push 256 then pop 256: ns per push+pop pair
 *   steal_ns        single thread, src full (256), one steal_into moving 128
 *                   (127 into dst + 1 returned): ns per stolen item
 *   steal_call_ns   the same, ns per steal_into call
 *   contended_ns    owner thread doing bursts of 32 pushes and up to 32 pops
 *                   while a thief thread steals from it non-stop: ns per owner
 *                   operation (push or pop)
 *   contended_stolen_pct  share of the owner's pushed items the thief took
 *   contended_steals      successful steal_into calls by the thief
 * Single-thread figures are the best of REPS repetitions; the contended one
 * is the median of REPS. argv[1] (worker count) is accepted and ignored.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "sched/ring.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define REPS 5
#define PUSH_POP_N 10000000u
#define FILL_DRAIN_ROUNDS 40000u
#define STEAL_ROUNDS 100000u
#define CONTENDED_OPS 10000000u
#define BURST 32u
#define CAP WEFT__RING_CAP
#define HALF (WEFT__RING_CAP / 2)

static int64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void *item(uintptr_t i)
{
    return (void *)(i + 1);
}

static weft__ring_t *ring_new(void)
{
    weft__ring_t *r = aligned_alloc(64, sizeof(*r));

    if (r == NULL) {
        fprintf(stderr, "micro_ring: out of memory\n");
        exit(1);
    }
    weft__ring_init(r);
    return r;
}

/* Keeps results observable so that the loops are not optimised away. */
static volatile uintptr_t sink;

static double bench_push_pop(weft__ring_t *r)
{
    uintptr_t acc = 0;
    int64_t t0 = now_ns();

    for (uintptr_t i = 0; i < PUSH_POP_N; i++) {
        weft__ring_push(r, item(i));
        acc += (uintptr_t)weft__ring_pop(r);
    }
    int64_t t1 = now_ns();
    sink = acc;
    return (double)(t1 - t0) / PUSH_POP_N;
}

static double bench_fill_drain(weft__ring_t *r)
{
    uintptr_t acc = 0;
    int64_t t0 = now_ns();

    for (unsigned round = 0; round < FILL_DRAIN_ROUNDS; round++) {
        for (uintptr_t i = 0; i < CAP; i++)
            weft__ring_push(r, item(i));
        for (unsigned i = 0; i < CAP; i++)
            acc += (uintptr_t)weft__ring_pop(r);
    }
    int64_t t1 = now_ns();
    sink = acc;
    return (double)(t1 - t0) / ((double)FILL_DRAIN_ROUNDS * CAP);
}

/* Cost of one now_ns() pair, subtracted from per-call timings. */
static double clock_overhead(void)
{
    const unsigned n = 1000000;
    int64_t t0 = now_ns();

    for (unsigned i = 0; i < n; i++)
        sink = (uintptr_t)now_ns();
    return (double)(now_ns() - t0) / n;
}

static void bench_steal(weft__ring_t *src, weft__ring_t *dst, double clk, double *per_item,
                        double *per_call)
{
    int64_t total = 0;
    uint64_t items = 0;
    uintptr_t acc = 0;

    for (unsigned round = 0; round < STEAL_ROUNDS; round++) {
        for (uintptr_t i = 0; i < CAP; i++)
            weft__ring_push(src, item(i));
        uint32_t before = atomic_load_explicit(&dst->tail, memory_order_relaxed);
        int64_t t0 = now_ns();
        void *p = weft__ring_steal_into(src, dst);
        int64_t t1 = now_ns();
        total += t1 - t0;
        items += atomic_load_explicit(&dst->tail, memory_order_relaxed) - before + (p != NULL);
        acc += (uintptr_t)p;
        while ((p = weft__ring_pop(dst)) != NULL)
            acc += (uintptr_t)p;
        while ((p = weft__ring_pop(src)) != NULL)
            acc += (uintptr_t)p;
    }
    sink = acc;
    double t = (double)total - clk * STEAL_ROUNDS;
    *per_item = t / (double)items;
    *per_call = t / STEAL_ROUNDS;
}

/* Contended: owner pushes/pops, a thief steals continuously. */
static weft__ring_t *c_owner, *c_thief;
static _Atomic int c_stop, c_ready;
static uint64_t c_steals, c_stolen;

static void *thief_main(void *arg)
{
    uint64_t steals = 0, stolen = 0;
    uintptr_t acc = 0;

    (void)arg;
    atomic_store(&c_ready, 1);
    while (!atomic_load_explicit(&c_stop, memory_order_relaxed)) {
        uint32_t before = atomic_load_explicit(&c_thief->tail, memory_order_relaxed);
        void *p = weft__ring_steal_into(c_owner, c_thief);

        if (p == NULL)
            continue;
        steals++;
        stolen += atomic_load_explicit(&c_thief->tail, memory_order_relaxed) - before + 1;
        acc += (uintptr_t)p;
        while ((p = weft__ring_pop(c_thief)) != NULL)
            acc += (uintptr_t)p;
    }
    sink = acc;
    c_steals = steals;
    c_stolen = stolen;
    return NULL;
}

static double bench_contended(double *stolen_pct, uint64_t *steals)
{
    pthread_t tid;
    void *half[HALF];
    uint64_t ops = 0, pushed = 0;
    uintptr_t acc = 0, next = 0;

    weft__ring_init(c_owner);
    weft__ring_init(c_thief);
    atomic_store(&c_stop, 0);
    atomic_store(&c_ready, 0);
    if (pthread_create(&tid, NULL, thief_main, NULL) != 0) {
        fprintf(stderr, "micro_ring: pthread_create failed\n");
        exit(1);
    }
    /* Start timing only once the thief is running (bounded wait: 1 s). */
    for (int64_t until = now_ns() + 1000000000LL; !atomic_load(&c_ready) && now_ns() < until;)
        ;
    int64_t t0 = now_ns();
    while (ops < CONTENDED_OPS) {
        for (unsigned k = 0; k < BURST; k++, ops++) {
            if (!weft__ring_push(c_owner, item(next++))) {
                /* Overflow: claim half (dropped here), or retry next time. */
                weft__ring_claim_half(c_owner, half);
                continue;
            }
            pushed++;
        }
        for (unsigned k = 0; k < BURST; k++, ops++) {
            void *p = weft__ring_pop(c_owner);
            if (p == NULL)
                break;
            acc += (uintptr_t)p;
        }
    }
    int64_t t1 = now_ns();
    atomic_store(&c_stop, 1);
    pthread_join(tid, NULL);
    sink = acc;
    *stolen_pct = pushed ? 100.0 * (double)c_stolen / (double)pushed : 0.0;
    *steals = c_steals;
    return (double)(t1 - t0) / (double)ops;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    weft__ring_t *a = ring_new(), *b = ring_new();
    double push_pop = 1e30, fill_drain = 1e30, steal_item = 1e30, steal_call = 1e30;
    double cont[REPS], pct[REPS];
    uint64_t steals[REPS];
    double clk = clock_overhead();

    (void)argc;
    (void)argv;
    c_owner = ring_new();
    c_thief = ring_new();
    for (int rep = 0; rep < REPS; rep++) {
        double x, y;

        x = bench_push_pop(a);
        push_pop = x < push_pop ? x : push_pop;
        x = bench_fill_drain(a);
        fill_drain = x < fill_drain ? x : fill_drain;
        bench_steal(a, b, clk, &x, &y);
        steal_item = x < steal_item ? x : steal_item;
        steal_call = y < steal_call ? y : steal_call;
    }
    for (int rep = 0; rep < REPS; rep++)
        cont[rep] = bench_contended(&pct[rep], &steals[rep]);
    /* Median by contended_ns; report the stolen share and steals of that run. */
    double sorted[REPS];
    int med = 0;
    for (int i = 0; i < REPS; i++)
        sorted[i] = cont[i];
    qsort(sorted, REPS, sizeof(double), cmp_double);
    for (int i = 0; i < REPS; i++)
        if (cont[i] == sorted[REPS / 2])
            med = i;

    printf("RESULT micro_ring weft push_pop_ns=%.2f fill_drain_ns=%.2f steal_ns=%.2f"
           " steal_call_ns=%.1f contended_ns=%.2f contended_stolen_pct=%.1f"
           " contended_steals=%" PRIu64 "\n",
           push_pop, fill_drain, steal_item, steal_call, cont[med], pct[med], steals[med]);
    free(a);
    free(b);
    free(c_owner);
    free(c_thief);
    return 0;
}

/*
 * micro_switch.c - micro-benchmark of the coroutine context switch
 * (src/coro/arch) and of a coroutine's yield through the scheduler.
 * Prints figures; never fails on a time.
 *
 * Output (one line, fields fixed):
 *   RESULT micro_switch weft-coro workers=<n> raw_roundtrip_ns=.. yield_roundtrip_ns=..
 *   raw_roundtrip_ns    weft__ctx_switch into a context made with
 *                       weft__ctx_make on a weft__stack_get stack and back
 *                       (two switches), on one thread, no runtime: ns per
 *                       round trip
 *   yield_roundtrip_ns  one coroutine alone on the runtime calling
 *                       weft_yield() in a loop: coroutine -> worker (the
 *                       task goes to the back of the run queue) -> the
 *                       worker picks it again -> coroutine; ns per yield
 * Each figure is the median of REPS runs. argv[1] is the worker count of
 * the runtime of the yield figure (default 1).
 */
#include <stdint.h>

#include "common.h"
#include "coro/arch/arch.h"
#include "coro/coro.h"

#define REPS 7
#define RAW_N 10000000L
#define YIELD_N 1000000L

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return v[n / 2];
}

/* ---- raw switch ---- */

static void *main_sp, *co_sp;

static void co_entry(void *arg)
{
    (void)arg;
    for (;;)
        weft__ctx_switch(&co_sp, main_sp);
}

static double raw_roundtrip(void)
{
    weft__stack_t *st = weft__stack_get(WEFT__STACK_DEFAULT);
    bench_check(st != NULL, "stack");
    co_sp = weft__ctx_make(st, co_entry, NULL);
    weft__ctx_switch(&main_sp, co_sp); /* first entry: fault the page in */
    int64_t t0 = weft_now();
    for (long i = 0; i < RAW_N; i++)
        weft__ctx_switch(&main_sp, co_sp);
    int64_t t1 = weft_now();
    /* The context is abandoned suspended; its stack is simply freed. */
    weft__stack_put(st);
    return (double)(t1 - t0) / RAW_N;
}

/* ---- yield through the scheduler ---- */

static int yield_root(void *arg)
{
    double *ns = arg;
    bench_check(weft_yield() == 0, "yield"); /* warm: pinned, on its worker */
    int64_t t0 = weft_now();
    for (long i = 0; i < YIELD_N; i++)
        if (weft_yield() != 0)
            return 1;
    int64_t t1 = weft_now();
    *ns = (double)(t1 - t0) / YIELD_N;
    return 0;
}

int main(int argc, char **argv)
{
    unsigned workers = 1;
    if (argc > 1) {
        char *end;
        long n = strtol(argv[1], &end, 10);
        if (*end || n < 1 || n > WEFT_MAX_WORKERS) {
            fprintf(stderr, "usage: micro_switch [workers]\n");
            return 2;
        }
        workers = (unsigned)n;
    }
    double raw[REPS], yld[REPS];
    for (int i = 0; i < REPS; i++)
        raw[i] = raw_roundtrip();

    weft_runtime_t *rt = bench_runtime(workers);
    for (int i = 0; i < REPS; i++)
        bench_run_coro(rt, yield_root, &yld[i]);
    bench_finish(rt);

    printf(
        "RESULT micro_switch weft-coro workers=%u raw_roundtrip_ns=%.2f yield_roundtrip_ns=%.1f\n",
        workers, median(raw, REPS), median(yld, REPS));
    return 0;
}

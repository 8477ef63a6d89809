/*
 * W2 spawn_remote: a plain thread outside the runtime spawns 100,000
 * trivial tasks (each returns its index), then waits for every one of
 * them in order (weft_task_join_wait) and sums the results.
 */
#include "common.h"

#define TASKS 100000

static weft_poll_t leaf_poll(void *state, weft_cx_t *cx, int64_t *out)
{
    (void)cx;
    *out = *(int64_t *)state;
    return WEFT_READY;
}
static const weft_future_vtable_t leaf_vt = {leaf_poll, NULL, "w2_leaf"};

int main(int argc, char **argv)
{
    bench_args_t a = bench_parse(argc, argv, "w2_spawn_remote");
    weft_runtime_t *rt = bench_runtime(a.workers);
    weft_task_t **h = malloc(sizeof *h * TASKS);
    /* This thread (main) is outside the runtime, as WORKLOADS.md asks. */
    int64_t t0 = weft_now();
    for (int64_t i = 0; i < TASKS; i++)
        bench_check(weft_spawn(rt, &leaf_vt, &i, sizeof i, &h[i]) == 0, "spawn");
    int64_t sum = 0;
    for (int64_t i = 0; i < TASKS; i++) {
        int64_t v;
        bench_check(weft_task_join_wait(h[i], WEFT_FOREVER, &v) == 0, "join");
        sum += v;
    }
    int64_t t1 = weft_now();
    bench_check(sum == (int64_t)TASKS * (TASKS - 1) / 2, "sum");
    printf("RESULT spawn_remote %s workers=%u ns_per_task=%.1f\n", a.runtime, a.workers,
           (double)(t1 - t0) / TASKS);
    free(h);
    bench_finish(rt);
    return 0;
}

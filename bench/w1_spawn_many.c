/*
 * W1 spawn_many: one task spawns 1,000,000 trivial tasks (each returns its
 * index), then joins every handle in order and sums the results.
 * --coro: the same with coroutine tasks (the root is a coroutine too).
 */
#include "common.h"

#define TASKS 1000000

static weft_poll_t leaf_poll(void *state, weft_cx_t *cx, int64_t *out)
{
    (void)cx;
    *out = *(int64_t *)state;
    return WEFT_READY;
}
static const weft_future_vtable_t leaf_vt = {leaf_poll, NULL, "w1_leaf"};

typedef struct root {
    weft_task_t **handles;
    int64_t next_join, sum, t0, t1;
    int spawned;
} root_t;

static weft_poll_t root_poll(void *state, weft_cx_t *cx, int64_t *out)
{
    root_t *r = *(root_t **)state;
    weft_runtime_t *rt = weft_runtime_current();
    if (!r->spawned) {
        r->t0 = weft_now();
        for (int64_t i = 0; i < TASKS; i++) {
            int rc = weft_spawn(rt, &leaf_vt, &i, sizeof i, &r->handles[i]);
            bench_check(rc == 0, "spawn");
        }
        r->spawned = 1;
    }
    while (r->next_join < TASKS) {
        int64_t v;
        int rc = weft_task_join_poll(r->handles[r->next_join], cx, &v);
        if (rc == WEFT_PENDING)
            return WEFT_PENDING;
        bench_check(rc == 0, "join");
        r->sum += v;
        r->next_join++;
    }
    r->t1 = weft_now();
    *out = 0;
    return WEFT_READY;
}
static const weft_future_vtable_t root_vt = {root_poll, NULL, "w1_root"};

/* ---- coroutine version ---- */

static int leaf_coro(void *arg)
{
    return (int)(intptr_t)arg;
}

static int root_coro(void *arg)
{
    root_t *r = arg;
    weft_runtime_t *rt = weft_runtime_current();
    r->t0 = weft_now();
    for (intptr_t i = 0; i < TASKS; i++) {
        int rc = weft_spawn_coro(rt, leaf_coro, (void *)i, NULL, &r->handles[i]);
        bench_check(rc == 0, "spawn");
    }
    for (int64_t i = 0; i < TASKS; i++) {
        int64_t v;
        int rc = weft_join(r->handles[i], &v);
        bench_check(rc == 0, "join");
        r->sum += v;
    }
    r->t1 = weft_now();
    return 0;
}

int main(int argc, char **argv)
{
    bench_args_t a = bench_parse(argc, argv, "w1_spawn_many");
    weft_runtime_t *rt = bench_runtime(a.workers);
    root_t r = {0};
    r.handles = malloc(sizeof *r.handles * TASKS);
    bench_check(r.handles != NULL, "malloc");
    if (a.coro) {
        bench_run_coro(rt, root_coro, &r);
    } else {
        root_t *rp = &r;
        int rc = weft_runtime_run(rt, &root_vt, &rp, sizeof rp, NULL);
        bench_check(rc == 0, "run");
    }
    bench_check(r.sum == (int64_t)TASKS * (TASKS - 1) / 2, "sum");
    printf("RESULT spawn_many %s workers=%u ns_per_task=%.1f\n", a.runtime, a.workers,
           (double)(r.t1 - r.t0) / TASKS);
    free(r.handles);
    bench_finish(rt);
    return 0;
}

/*
 * W3 yield_many: 1,000 tasks each yield 1,000 times (1e6 yields); the root
 * task spawns them and joins them all.
 * --coro: the same with coroutine tasks (the root is a coroutine too).
 */
#include "common.h"

#define TASKS 1000
#define YIELDS 1000

typedef struct yielder {
    int left;
    weft_yield_t y;
} yielder_t;

static weft_poll_t yielder_poll(void *state, weft_cx_t *cx, int64_t *out)
{
    yielder_t *s = state;
    while (s->left > 0) {
        if (weft_yield_poll(&s->y, cx) == WEFT_PENDING)
            return WEFT_PENDING;
        weft_yield_init(&s->y);
        s->left--;
    }
    *out = 1;
    return WEFT_READY;
}
static const weft_future_vtable_t yielder_vt = {yielder_poll, NULL, "w3_yielder"};

typedef struct root {
    weft_task_t *h[TASKS];
    int next, spawned;
    int64_t done, t0, t1;
} root_t;

static weft_poll_t root_poll(void *state, weft_cx_t *cx, int64_t *out)
{
    root_t *r = *(root_t **)state;
    if (!r->spawned) {
        r->t0 = weft_now();
        yielder_t init = {YIELDS, WEFT_YIELD_INIT};
        for (int i = 0; i < TASKS; i++)
            bench_check(
                weft_spawn(weft_runtime_current(), &yielder_vt, &init, sizeof init, &r->h[i]) == 0,
                "spawn");
        r->spawned = 1;
    }
    while (r->next < TASKS) {
        int64_t v;
        int rc = weft_task_join_poll(r->h[r->next], cx, &v);
        if (rc == WEFT_PENDING)
            return WEFT_PENDING;
        bench_check(rc == 0 && v == 1, "join");
        r->done += v;
        r->next++;
    }
    r->t1 = weft_now();
    *out = 0;
    return WEFT_READY;
}
static const weft_future_vtable_t root_vt = {root_poll, NULL, "w3_root"};

/* ---- coroutine version ---- */

static int yielder_coro(void *arg)
{
    (void)arg;
    for (int i = 0; i < YIELDS; i++)
        bench_check(weft_yield() == 0, "yield");
    return 1;
}

static int root_coro(void *arg)
{
    root_t *r = arg;
    weft_runtime_t *rt = weft_runtime_current();
    r->t0 = weft_now();
    for (int i = 0; i < TASKS; i++)
        bench_check(weft_spawn_coro(rt, yielder_coro, NULL, NULL, &r->h[i]) == 0, "spawn");
    for (int i = 0; i < TASKS; i++) {
        int64_t v;
        int rc = weft_join(r->h[i], &v);
        bench_check(rc == 0 && v == 1, "join");
        r->done += v;
    }
    r->t1 = weft_now();
    return 0;
}

int main(int argc, char **argv)
{
    bench_args_t a = bench_parse(argc, argv, "w3_yield_many");
    weft_runtime_t *rt = bench_runtime(a.workers);
    static root_t r;
    if (a.coro) {
        bench_run_coro(rt, root_coro, &r);
    } else {
        root_t *rp = &r;
        bench_check(weft_runtime_run(rt, &root_vt, &rp, sizeof rp, NULL) == 0, "run");
    }
    bench_check(r.done == TASKS, "count");
    printf("RESULT yield_many %s workers=%u ns_per_yield=%.1f\n", a.runtime, a.workers,
           (double)(r.t1 - r.t0) / ((double)TASKS * YIELDS));
    bench_finish(rt);
    return 0;
}

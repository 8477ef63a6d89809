/*
 * W6 timers: 100,000 tasks; task i sleeps d_i = (i*7919 % 1000) + 1 ms
 * and returns its lateness = elapsed - d_i in microseconds (elapsed
 * truncated to whole microseconds, as the Tokio peer does), measured from
 * just before the sleep to just after it.
 *
 * wall_ms: from the first spawn until every task has been joined (in
 * order). cpu_ms: user + system CPU time of the process (getrusage) over
 * the same interval. Percentiles are nearest-rank over the 100,000
 * samples. The check: every task slept at least its d_i (no negative
 * lateness).
 *
 * --coro: the same with coroutine tasks calling weft_sleep_for. 100,000
 * parked coroutines hold 100,000 stacks: on Linux >= 6.13 one memory
 * mapping per 16 (guard markers); on older kernels two mappings each,
 * which needs vm.max_map_count above ~200,000 (the default is 65,530):
 * the program says so and fails if a stack cannot be mapped.
 */
#include <inttypes.h>
#include <sys/resource.h>

#include "common.h"

#define TASKS 100000

static int64_t requested_ms(int64_t i)
{
    return i * 7919 % 1000 + 1;
}

static int64_t cpu_ns(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ((int64_t)ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000000LL +
           ((int64_t)ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1000LL;
}

/* ---- stackless ---- */

typedef struct sleeper {
    weft_sleep_t s;
    int64_t requested; /* ns */
    int64_t t0;
} sleeper_t;

static weft_poll_t sleeper_poll(void *state, weft_cx_t *cx, int64_t *out)
{
    sleeper_t *sl = state;
    if (sl->t0 == 0) {
        sl->t0 = weft_now();
        weft_sleep_init(&sl->s, sl->t0 + sl->requested);
    }
    int64_t rc;
    if (weft_sleep_vtable.poll(&sl->s, cx, &rc) == WEFT_PENDING)
        return WEFT_PENDING;
    bench_check(rc == 0, "sleep");
    *out = (weft_now() - sl->t0) / 1000 - sl->requested / 1000;
    return WEFT_READY;
}
static void sleeper_drop(void *state)
{
    weft_sleep_vtable.drop(&((sleeper_t *)state)->s);
}
static const weft_future_vtable_t sleeper_vt = {sleeper_poll, sleeper_drop, "w6_sleeper"};

typedef struct root {
    weft_task_t **handles;
    int64_t *lateness;
    int64_t next_join, t0, t1, cpu0, cpu1;
    int spawned;
} root_t;

static weft_poll_t root_poll(void *state, weft_cx_t *cx, int64_t *out)
{
    root_t *r = *(root_t **)state;
    if (!r->spawned) {
        r->cpu0 = cpu_ns();
        r->t0 = weft_now();
        weft_runtime_t *rt = weft_runtime_current();
        for (int64_t i = 0; i < TASKS; i++) {
            sleeper_t sl = {.requested = requested_ms(i) * 1000000, .t0 = 0};
            bench_check(weft_spawn(rt, &sleeper_vt, &sl, sizeof sl, &r->handles[i]) == 0, "spawn");
        }
        r->spawned = 1;
    }
    while (r->next_join < TASKS) {
        int64_t v;
        int rc = weft_task_join_poll(r->handles[r->next_join], cx, &v);
        if (rc == WEFT_PENDING)
            return WEFT_PENDING;
        bench_check(rc == 0, "join");
        r->lateness[r->next_join++] = v;
    }
    r->t1 = weft_now();
    r->cpu1 = cpu_ns();
    *out = 0;
    return WEFT_READY;
}
static const weft_future_vtable_t root_vt = {root_poll, NULL, "w6_root"};

/* ---- coroutines ---- */

static int sleeper_coro(void *arg)
{
    int64_t requested = requested_ms((int64_t)(intptr_t)arg) * 1000000;
    int64_t t0 = weft_now();
    if (weft_sleep_for(requested) != 0)
        return INT32_MIN;
    return (int)((weft_now() - t0) / 1000 - requested / 1000);
}

static int root_coro(void *arg)
{
    root_t *r = arg;
    r->cpu0 = cpu_ns();
    r->t0 = weft_now();
    weft_runtime_t *rt = weft_runtime_current();
    for (intptr_t i = 0; i < TASKS; i++)
        bench_check(weft_spawn_coro(rt, sleeper_coro, (void *)i, NULL, &r->handles[i]) == 0,
                    "spawn");
    for (int i = 0; i < TASKS; i++) {
        int64_t v;
        bench_check(weft_join(r->handles[i], &v) == 0, "join");
        if (v == -ENOMEM) {
            fprintf(stderr,
                    "w6_timers --coro: no stack for coroutine %d: %d parked coroutines need "
                    "about %d memory mappings; raise vm.max_map_count (sysctl -w "
                    "vm.max_map_count=262144)\n",
                    i, TASKS, 2 * TASKS);
            exit(1);
        }
        r->lateness[i] = v;
    }
    r->t1 = weft_now();
    r->cpu1 = cpu_ns();
    return 0;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* sorted[ceil(pct / 100 * n) - 1] */
static int64_t nearest_rank(const int64_t *sorted, int64_t n, int64_t pct)
{
    int64_t rank = (pct * n + 99) / 100;
    if (rank < 1)
        rank = 1;
    if (rank > n)
        rank = n;
    return sorted[rank - 1];
}

int main(int argc, char **argv)
{
    bench_args_t a = bench_parse(argc, argv, "w6_timers");
    static root_t r;
    r.handles = calloc(TASKS, sizeof *r.handles);
    r.lateness = calloc(TASKS, sizeof *r.lateness);
    bench_check(r.handles && r.lateness, "calloc");
    weft_runtime_t *rt = bench_runtime(a.workers);
    if (a.coro) {
        bench_run_coro(rt, root_coro, &r);
    } else {
        root_t *rp = &r;
        bench_check(weft_runtime_run(rt, &root_vt, &rp, sizeof rp, NULL) == 0, "run");
    }
    qsort(r.lateness, TASKS, sizeof *r.lateness, cmp_i64);
    bench_check(r.lateness[0] >= 0, "no task woke early");
    printf("RESULT timers %s workers=%u wall_ms=%.1f late_p50_us=%" PRId64 " late_p99_us=%" PRId64
           " late_max_us=%" PRId64 " cpu_ms=%.1f\n",
           a.runtime, a.workers, (double)(r.t1 - r.t0) / 1e6, nearest_rank(r.lateness, TASKS, 50),
           nearest_rank(r.lateness, TASKS, 99), r.lateness[TASKS - 1],
           (double)(r.cpu1 - r.cpu0) / 1e6);
    bench_finish(rt);
    free(r.handles);
    free(r.lateness);
    return 0;
}

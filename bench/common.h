/*
 * common.h - helpers shared by the workload programs (header-only).
 *
 * Every workload program takes `<workers> [--stackless|--coro]`, prints one
 * line `RESULT <workload> <runtime> workers=<n> <metric>=<value> ...` and
 * exits non-zero if its own answer check fails (see ../shared/WORKLOADS.md).
 */
#ifndef WEFT_BENCH_COMMON_H
#define WEFT_BENCH_COMMON_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <weft.h>

typedef struct bench_args {
    unsigned workers;
    const char *runtime; /* "weft" or "weft-coro" */
    int coro;            /* 1: run the workload with coroutine tasks (--coro) */
} bench_args_t;

static inline bench_args_t bench_parse(int argc, char **argv, const char *prog)
{
    bench_args_t a = {weft_default_workers(), "weft", 0};
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--stackless") == 0) {
            a.runtime = "weft";
            a.coro = 0;
        } else if (strcmp(argv[i], "--coro") == 0) {
            a.runtime = "weft-coro";
            a.coro = 1;
        } else {
            char *end;
            long n = strtol(argv[i], &end, 10);
            if (*end || n < 1 || n > WEFT_MAX_WORKERS) {
                fprintf(stderr, "usage: %s [workers] [--stackless|--coro]\n", prog);
                exit(2);
            }
            a.workers = (unsigned)n;
        }
    }
    return a;
}

/* WEFT_BENCH_DRIVER=thread runs the driver on a thread of its own
 * (weft_config_t.driver), WEFT_BENCH_HELP=at_once wakes a peer for every
 * poller batch at once (weft_config_t.help_delay_ns), WEFT_BENCH_PIN=1
 * binds worker i to the i-th allowed CPU (weft_config_t.pin_workers), to
 * compare them with the defaults. */
static inline void bench_config(weft_config_t *cfg, unsigned workers)
{
    weft_config_init(cfg);
    cfg->workers = workers;
    const char *d = getenv("WEFT_BENCH_DRIVER");
    if (d && strcmp(d, "thread") == 0)
        cfg->driver = WEFT_DRIVER_THREAD;
    const char *h = getenv("WEFT_BENCH_HELP");
    if (h && strcmp(h, "at_once") == 0)
        cfg->help_delay_ns = WEFT_HELP_AT_ONCE;
    const char *p = getenv("WEFT_BENCH_PIN");
    if (p && strcmp(p, "1") == 0)
        cfg->pin_workers = 1;
}

static inline weft_runtime_t *bench_runtime(unsigned workers)
{
    weft_config_t cfg;
    bench_config(&cfg, workers);
    weft_runtime_t *rt;
    int rc = weft_runtime_new(&cfg, &rt);
    if (rc != 0) {
        fprintf(stderr, "weft_runtime_new: %s\n", weft_strerror(rc));
        exit(1);
    }
    return rt;
}

static inline void bench_finish(weft_runtime_t *rt)
{
    int rc = weft_runtime_shutdown(rt, weft_now() + 5000000000LL);
    if (rc != 0)
        fprintf(stderr, "shutdown: %d stragglers\n", rc);
    rc = weft_runtime_free(rt);
    if (rc != 0) {
        fprintf(stderr, "weft_runtime_free: %s\n", weft_strerror(rc));
        exit(1);
    }
}

static inline void bench_check(int ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "check failed: %s\n", what);
        exit(1);
    }
}

/* Run fn(arg) as the root coroutine on rt; exits if it fails or returns
 * non-zero. */
static inline void bench_run_coro(weft_runtime_t *rt, int (*fn)(void *), void *arg)
{
    int result = -1;
    int rc = weft_runtime_run_coro(rt, fn, arg, NULL, &result);
    if (rc != 0) {
        fprintf(stderr, "weft_runtime_run_coro: %s\n", weft_strerror(rc));
        exit(1);
    }
    bench_check(result == 0, "root coroutine");
}

#endif /* WEFT_BENCH_COMMON_H */

/*
 * runtime.c - the top of weft: configuration, new, run, spawn, shutdown,
 * free. It composes the scheduler and the driver (and, in later layers,
 * the blocking pool); nothing below includes it.
 *
 * Order: the scheduler is created first (the driver delivers into it, and
 * installs itself as its poller before the workers start), its workers
 * start before the driver thread if there is one; shutdown stops the scheduler
 * first (cancelled tasks drop their timers and readiness waits, which the
 * driver's structures must still accept), then the driver, which then
 * drops whatever wakers it still holds and unlinks every timer, and only
 * then are the tasks still alive dropped (a straggler coroutine's stack
 * holds its timer entries and is freed without unwinding).
 *
 * Invariants: `shut` is set once, by the first shutdown; after it spawns
 * fail with -ESHUTDOWN. The runtime memory is freed only when no task cell
 * is referenced any more (no join handle or waker outstanding).
 */
#include <stdlib.h>
#include <string.h>

#include <weft.h>

#include "io/driver.h"
#include "platform/platform.h"
#include "runtime/runtime_internal.h"
#include "sched/sched.h"

struct weft_runtime {
    weft__sched_t *sched;
    weft__driver_t *driver;
    pthread_mutex_t lock; /* serialises shutdown and free */
    bool shut;
};

int64_t weft_now(void)
{
    return weft__time_now_ns();
}

unsigned weft_default_workers(void)
{
    unsigned n = weft__cpu_count();
    return n > WEFT_MAX_WORKERS ? WEFT_MAX_WORKERS : n;
}

int weft_config_init(weft_config_t *cfg)
{
    if (!cfg)
        return -EINVAL;
    memset(cfg, 0, sizeof *cfg);
    cfg->thread_name = "weft";
    return 0;
}

/* The CPUs the workers bind to (weft_config_t.pin_workers / cpus): a
 * malloc'd list in *cpus, or none (NULL, 0). 0, -EINVAL or -ENOMEM. */
static int worker_cpus(const weft_config_t *cfg, unsigned **cpus, unsigned *ncpus)
{
    *cpus = NULL;
    *ncpus = 0;
    if (!cfg->pin_workers && !cfg->cpus && !cfg->ncpus)
        return 0;
    if ((cfg->pin_workers != 0 && cfg->pin_workers != 1) || (cfg->pin_workers && cfg->cpus) ||
        !cfg->cpus != !cfg->ncpus)
        return -EINVAL;
    unsigned *allowed, nallowed;
    int rc = weft__cpu_allowed(&allowed, &nallowed);
    if (rc != 0)
        return rc;
    if (cfg->pin_workers) {
        *cpus = allowed;
        *ncpus = nallowed;
        return nallowed ? 0 : -EINVAL;
    }
    for (unsigned i = 0; i < cfg->ncpus; i++) {
        bool found = false;
        for (unsigned j = 0; j < nallowed && !found; j++)
            found = allowed[j] == cfg->cpus[i];
        if (!found) {
            free(allowed);
            return -EINVAL;
        }
    }
    free(allowed);
    *cpus = malloc(cfg->ncpus * sizeof **cpus);
    if (!*cpus)
        return -ENOMEM;
    memcpy(*cpus, cfg->cpus, cfg->ncpus * sizeof **cpus);
    *ncpus = cfg->ncpus;
    return 0;
}

int weft_runtime_new(const weft_config_t *cfg, weft_runtime_t **out)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    weft_config_t def;
    if (!cfg) {
        weft_config_init(&def);
        cfg = &def;
    }
    if (cfg->workers > WEFT_MAX_WORKERS)
        return -EINVAL;
    if (cfg->stack_size && (cfg->stack_size < WEFT_STACK_MIN || cfg->stack_size > WEFT_STACK_MAX))
        return -EINVAL;
    if (cfg->stack_cache > WEFT_STACK_CACHE_MAX)
        return -EINVAL;
    if (cfg->driver != WEFT_DRIVER_WORKERS && cfg->driver != WEFT_DRIVER_THREAD)
        return -EINVAL;
    if ((cfg->help_delay_ns < 0 && cfg->help_delay_ns != WEFT_HELP_AT_ONCE) ||
        cfg->help_delay_ns > WEFT_HELP_DELAY_MAX_NS)
        return -EINVAL;
    unsigned *cpus = NULL, ncpus = 0;
    int rc = worker_cpus(cfg, &cpus, &ncpus);
    if (rc != 0)
        return rc;
    weft__sched_config_t sc = {
        .workers = cfg->workers ? cfg->workers : weft_default_workers(),
        .thread_name = cfg->thread_name && cfg->thread_name[0] ? cfg->thread_name : "weft",
        .on_thread_start = cfg->on_thread_start,
        .on_thread_stop = cfg->on_thread_stop,
        .hook_arg = cfg->hook_arg,
        .stack_size = cfg->stack_size ? cfg->stack_size : WEFT__STACK_DEFAULT,
        .stack_cache = cfg->stack_cache ? cfg->stack_cache : WEFT__STACK_CACHE_DEFAULT,
        .help_delay = cfg->help_delay_ns == WEFT_HELP_AT_ONCE ? 0
                      : cfg->help_delay_ns                    ? cfg->help_delay_ns
                                                              : WEFT_HELP_DELAY_DEFAULT_NS,
        .cpus = cpus,
        .ncpus = ncpus,
    };
    weft_runtime_t *rt = calloc(1, sizeof *rt);
    if (!rt) {
        free(cpus);
        return -ENOMEM;
    }
    pthread_mutex_init(&rt->lock, NULL);
    rc = weft__sched_new(&sc, rt, &rt->sched);
    free(cpus); /* the scheduler copied what it needs */
    if (rc == 0 &&
        (rc = weft__driver_new(rt->sched, cfg->driver == WEFT_DRIVER_THREAD, &rt->driver)) != 0)
        weft__sched_free(rt->sched);
    if (rc == 0 && (rc = weft__sched_start(rt->sched)) == 0 &&
        (rc = weft__driver_start(rt->driver)) != 0)
        (void)weft__sched_shutdown(rt->sched, 0); /* no task exists yet */
    if (rc != 0 && rt->driver) {
        weft__driver_free(rt->driver);
        weft__sched_free(rt->sched);
    }
    if (rc != 0) {
        pthread_mutex_destroy(&rt->lock);
        free(rt);
        return rc;
    }
    *out = rt;
    return 0;
}

int weft_spawn(weft_runtime_t *rt, const weft_future_vtable_t *vt, const void *state, size_t size,
               weft_task_t **handle)
{
    if (handle)
        *handle = NULL;
    if (!rt)
        return -EINVAL;
    return weft__sched_spawn(rt->sched, vt, state, size, (weft__task_t **)handle);
}

int weft_spawn_coro(weft_runtime_t *rt, int (*fn)(void *), void *arg, const weft_coro_opts_t *opts,
                    weft_task_t **handle)
{
    if (handle)
        *handle = NULL;
    if (!rt)
        return -EINVAL;
    weft__coro_t c;
    int rc = weft__coro_prepare(&c, fn, arg, opts, rt->sched->cfg.stack_size);
    if (rc != 0)
        return rc;
    rc = weft__sched_spawn(rt->sched, &weft__coro_vtable, &c, sizeof c, (weft__task_t **)handle);
    if (rc != 0)
        weft__coro_unprepare(&c); /* not spawned: nothing else owns the name */
    return rc;
}

int weft_runtime_run_coro(weft_runtime_t *rt, int (*fn)(void *), void *arg,
                          const weft_coro_opts_t *opts, int *result)
{
    if (!rt || !fn)
        return -EINVAL;
    if (weft__task_on_runtime_thread())
        return -EDEADLK;
    weft_task_t *h;
    int rc = weft_spawn_coro(rt, fn, arg, opts, &h);
    if (rc != 0)
        return rc;
    int64_t out = 0;
    rc = weft_task_join_wait(h, WEFT_FOREVER, &out);
    if (rc == 0 && result)
        *result = (int)out;
    return rc;
}

int weft_runtime_run(weft_runtime_t *rt, const weft_future_vtable_t *vt, const void *state,
                     size_t size, int64_t *out)
{
    if (!rt)
        return -EINVAL;
    if (weft__task_on_runtime_thread())
        return -EDEADLK;
    weft_task_t *h;
    int rc = weft_spawn(rt, vt, state, size, &h);
    if (rc != 0)
        return rc;
    return weft_task_join_wait(h, WEFT_FOREVER, out);
}

int weft_runtime_shutdown(weft_runtime_t *rt, int64_t deadline)
{
    if (!rt)
        return -EINVAL;
    if (weft__task_on_runtime_thread())
        return -EDEADLK;
    pthread_mutex_lock(&rt->lock);
    int rc = 0;
    if (!rt->shut) {
        rt->shut = true;
        rc = weft__sched_shutdown(rt->sched, deadline);
        /* Between the workers' stop and dropping the stragglers: their
         * timer entries live on their (coroutine) stacks. */
        weft__driver_stop(rt->driver);
        weft__sched_drop_rest(rt->sched);
    }
    pthread_mutex_unlock(&rt->lock);
    return rc;
}

int weft_runtime_free(weft_runtime_t *rt)
{
    if (!rt)
        return -EINVAL;
    if (weft__task_on_runtime_thread())
        return -EDEADLK;
    weft_runtime_shutdown(rt, weft_now());
    if (weft__sched_live_cells(rt->sched) != 0)
        return -EBUSY;
    weft__driver_free(rt->driver);
    weft__sched_free(rt->sched);
    pthread_mutex_destroy(&rt->lock);
    free(rt);
    return 0;
}

weft_runtime_t *weft_runtime_current(void)
{
    weft__sched_t *s = weft__sched_current();
    return s ? s->user : NULL;
}

int weft_runtime_workers(const weft_runtime_t *rt)
{
    return rt ? (int)rt->sched->nworkers : -EINVAL;
}

int weft_run(const weft_config_t *cfg, const weft_future_vtable_t *vt, const void *state,
             size_t size, int64_t *out)
{
    weft_runtime_t *rt;
    int rc = weft_runtime_new(cfg, &rt);
    if (rc != 0)
        return rc;
    rc = weft_runtime_run(rt, vt, state, size, out);
    weft_runtime_shutdown(rt, weft_now() + 1000000000);
    int frc = weft_runtime_free(rt);
    return rc != 0 ? rc : frc;
}

weft__sched_t *weft__runtime_sched(weft_runtime_t *rt)
{
    return rt ? rt->sched : NULL;
}

weft__driver_t *weft__runtime_driver(weft_runtime_t *rt)
{
    return rt ? rt->driver : NULL;
}

weft__timers_t *weft__timers_current(void)
{
    weft__sched_t *s = weft__sched_current();
    if (!s)
        return NULL;
    weft_runtime_t *rt = s->user;
    return weft__driver_timers(rt->driver);
}

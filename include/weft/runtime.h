/*
 * weft/runtime.h - creating, running and shutting down a runtime.
 *
 *   weft_config_t cfg;
 *   weft_config_init(&cfg);            // defaults
 *   cfg.workers = 4;
 *   weft_runtime_t *rt;
 *   weft_runtime_new(&cfg, &rt);       // threads start here
 *   weft_runtime_run(rt, &root_vt, &root_state, sizeof root_state, &out);
 *   weft_runtime_shutdown(rt, weft_now() + 1000000000);
 *   weft_runtime_free(rt);
 *
 * or in one call, like asyncio.run: weft_run(&cfg, &root_vt, ...).
 *
 * Signals. Every thread a runtime starts (workers, the driver thread)
 * runs with all signals blocked (workers unblock SIGSEGV and SIGBUS for
 * the stack-overflow report), so a signal sent to the process is taken by
 * one of the application's own threads, never in the middle of a task.
 * To react to one (SIGTERM for a graceful stop, say), block it in every
 * thread of your own (pthread_sigmask in main before starting any) and
 * either sigwait for it in a plain thread that then calls
 * weft_runtime_shutdown (bench/server.h does this), or open a signalfd
 * for it (SFD_NONBLOCK) and wait in a task: weft_io_register it and await
 * weft_io_wait_ready(io, WEFT_IO_READABLE, deadline), then read its
 * signalfd_siginfo.
 */
#ifndef WEFT_RUNTIME_H
#define WEFT_RUNTIME_H

#include <weft/task.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Largest worker count a runtime accepts. */
#define WEFT_MAX_WORKERS 256

typedef struct weft_config {
    /*
     * Worker threads. 0 (the default) means the CPUs this process may use:
     * its affinity mask, lowered to the cgroup CPU quota if one is set.
     */
    unsigned workers;
    /* Thread name prefix (threads are "<prefix>-w<N>"); default "weft".
     * At most 10 characters are used (Linux names hold 15). */
    const char *thread_name;
    /* Called on each runtime thread as it starts and before it exits, with
     * the worker index and hook_arg. May be NULL. */
    void (*on_thread_start)(unsigned index, void *hook_arg);
    void (*on_thread_stop)(unsigned index, void *hook_arg);
    void *hook_arg;
    /* Default coroutine stack size in bytes (weft/coro.h); 0 means 64 KiB.
     * Must lie in [WEFT_STACK_MIN, WEFT_STACK_MAX]. */
    size_t stack_size;
    /* Finished coroutine stacks of the default size each worker keeps for
     * reuse beyond the 16 it keeps resident (their pages are given back);
     * 0 means 256, at most WEFT_STACK_CACHE_MAX. Others are unmapped. */
    unsigned stack_cache;
    /*
     * Who waits in epoll and fires timers (docs/io.md, "Who polls"):
     * WEFT_DRIVER_WORKERS (the default, 0): a worker with nothing to run
     * waits there instead of sleeping, and runs the tasks an event or a
     * timer wakes itself; busy workers look without blocking every 61
     * ticks or 256 budget units. WEFT_DRIVER_THREAD: a thread of its own ("<prefix>-io") waits
     * there and hands every woken task to a worker, so timers fire and
     * readiness is recorded even while every worker is busy, at the cost
     * of a second thread wake-up per event. Other values: -EINVAL.
     */
    int driver;
    /*
     * Help for a burst of I/O or timer wake-ups (docs/io.md, "Help"): a
     * worker that takes several tasks from one look at the poller runs
     * them alone, and wakes a parked peer to share them only if its queue
     * still holds work this many nanoseconds later. Short tasks are then
     * done without a second thread waking up (about 15% less CPU per
     * request on the W10 echo server); a long backlog still gets help
     * after the delay, or after the poll that is running then ends. 0
     * means WEFT_HELP_DELAY_DEFAULT_NS; WEFT_HELP_AT_ONCE wakes a peer as
     * soon as such a batch holds more than one task (Tokio's policy: the
     * lowest latency for CPU-heavy bursts, the most CPU for short ones).
     * Other negative values, or more than WEFT_HELP_DELAY_MAX_NS: -EINVAL.
     * With WEFT_DRIVER_THREAD the driver hands tasks to workers' inboxes
     * (unparking a parked one) whatever this says; a task waiting in the
     * inbox of a worker stuck in one poll for 1 ms is moved to a peer
     * (within 2 ms of its wake).
     */
    int64_t help_delay_ns;
    /*
     * CPU affinity of the workers. By default (pin_workers 0, cpus NULL)
     * the kernel places them. pin_workers = 1: worker i is bound to the
     * i-th CPU of the process's affinity mask (taken when the runtime is
     * created), wrapping around if there are more workers than CPUs.
     * cpus/ncpus: worker i is bound to cpus[i % ncpus]; every entry must
     * be a CPU of the process's affinity mask. -EINVAL for both at once,
     * ncpus without cpus or the reverse, or a CPU outside the mask. A
     * binding that fails when the worker starts (the mask changed in
     * between) leaves that worker unbound. Binding keeps a woken worker
     * from waiting for the CPU of the worker that woke it, which some
     * kernels do when they see no shared cache between CPUs (on our
     * 2-vCPU VMs: 8 x 500 us of tasks woken by one poller round took
     * ~4 ms unbound, ~2.2 bound; docs/scheduler.md, "Binding workers");
     * it is the wrong choice when other busy processes share those CPUs.
     * The driver thread (WEFT_DRIVER_THREAD) is never bound.
     */
    int pin_workers;
    const unsigned *cpus;
    unsigned ncpus;
} weft_config_t;

#define WEFT_DRIVER_WORKERS 0
#define WEFT_DRIVER_THREAD 1

#define WEFT_HELP_AT_ONCE (-1)
#define WEFT_HELP_DELAY_DEFAULT_NS 250000LL /* 250 us */
#define WEFT_HELP_DELAY_MAX_NS 1000000000LL /* 1 s */

#define WEFT_STACK_CACHE_MAX 65536u

/* Fill *cfg with the defaults. -EINVAL if cfg is NULL. */
int weft_config_init(weft_config_t *cfg);

/* Number of workers the default configuration would start (>= 1). */
unsigned weft_default_workers(void);

/*
 * Create a runtime and start its threads. cfg may be NULL for defaults.
 * 0, -EINVAL (workers > WEFT_MAX_WORKERS, a stack_size or stack_cache out
 * of range, an unknown driver, a help_delay_ns out of range, bad CPU
 * bindings, NULL out), -ENOMEM, or the
 * negative errno of a failed thread creation (nothing is left running).
 */
int weft_runtime_new(const weft_config_t *cfg, weft_runtime_t **out);

/*
 * Spawn the root future and block the calling thread until it ends;
 * *out (may be NULL) receives its output. Returns 0, -ECANCELED if the
 * root was cancelled (by shutdown from another thread), -EDEADLK if called
 * from one of the runtime's own threads, or a weft_spawn error.
 */
int weft_runtime_run(weft_runtime_t *rt, const weft_future_vtable_t *vt, const void *state,
                     size_t size, int64_t *out);

/*
 * Shut down: refuse new spawns (-ESHUTDOWN), cancel every task, give the
 * tasks until the absolute deadline to finish, then stop and join every
 * runtime thread and drop whatever is left. Safe to call more than once.
 * Returns 0 if every task had ended by the deadline, otherwise the number of
 * stragglers that were dropped (> 0); -EDEADLK from a runtime thread,
 * -EINVAL for NULL. Join handles the caller still holds stay valid (a join
 * reports -ECANCELED or the output) and must still be given back before
 * weft_runtime_free.
 */
int weft_runtime_shutdown(weft_runtime_t *rt, int64_t deadline);

/*
 * Free a runtime, shutting it down first (with an immediate deadline) if
 * that was not done. -EBUSY if join handles are still outstanding, or task
 * wakers stored outside the runtime (a weft_atomic_waker_t, a clone kept
 * by a foreign thread) still hold a task (nothing is freed: give them back
 * and call again), -EDEADLK from a runtime thread,
 * -EINVAL for NULL.
 */
int weft_runtime_free(weft_runtime_t *rt);

/* The runtime whose worker is the calling thread, or NULL. */
weft_runtime_t *weft_runtime_current(void);

/* The number of worker threads, or -EINVAL. */
int weft_runtime_workers(const weft_runtime_t *rt);

/* new + run + shutdown (1 s deadline) + free, like asyncio.run. */
int weft_run(const weft_config_t *cfg, const weft_future_vtable_t *vt, const void *state,
             size_t size, int64_t *out);

#ifdef __cplusplus
}
#endif
#endif /* WEFT_RUNTIME_H */

/*
 * weft/coro.h - coroutine tasks: plain C functions that suspend.
 *
 *   static int handler(void *arg) {
 *       int64_t v;
 *       int rc = weft_join(child, &v);      // suspends this coroutine only
 *       if (rc == -ECANCELED) { cleanup(arg); return -1; }
 *       ...
 *   }
 *   weft_spawn_coro(rt, handler, arg, NULL, &h);
 *
 * A coroutine task runs `int fn(void *arg)` on its own stack, on the same
 * workers and queues as stackless tasks, and has the same join handle
 * (weft/task.h): join, detach, cancel and is_finished work on it, from
 * stackless tasks, coroutines and plain threads alike. Its output is fn's
 * return value.
 *
 * Suspension. Inside a coroutine, weft_await() runs any future of the
 * runtime to completion, suspending the coroutine (not the worker thread)
 * while the future is pending. weft_yield() and weft_join() are awaits.
 * Calling them outside a coroutine task returns -EPERM.
 *
 * Threads. A coroutine may be stolen by another worker until it first runs;
 * from then on it stays on that worker, so thread-local state (errno, TLS
 * caches of the code it calls) stays valid across awaits. Since that
 * choice is for life, a worker with more than a few runnable coroutines
 * sends a new one, just before its first run, to a worker with clearly
 * fewer (docs/coroutines.md, "Placement"). A coroutine
 * spawned migratable may resume on another worker after any await: it must
 * not hold the address of a thread-local across an await, and compilers
 * compute &errno once per function, so a migratable coroutine that reads
 * errno after an await in the same function must read it through a
 * function that is not inlined (likewise pthread_self(), which glibc
 * declares const). errno's value is preserved across every
 * await in both cases (the runtime saves it and restores it on the thread
 * that resumes the coroutine). Connection handlers of a server should be
 * migratable where their code allows: a pinned one woken by another
 * worker's poll costs a hand-over and a second thread wake-up (about 1.6x
 * the CPU per request on W10; docs/coroutines.md, "Servers").
 *
 * Cancellation (weft_task_cancel, or runtime shutdown) is delivered at
 * awaits and is level-triggered: the await the coroutine is blocked in, and
 * every await after it, returns -ECANCELED at once, so cleanup code runs
 * and the function returns. A coroutine cancelled before it first ran never
 * runs. A join of a coroutine that saw -ECANCELED returns -ECANCELED (its
 * return value is discarded); one that returned before noticing the cancel
 * completed normally. At shutdown, a coroutine still running at the
 * deadline is abandoned: its stack is freed without running the rest of
 * its code. The future it was suspended in, if any, is dropped first (on
 * the thread calling shutdown), so that wait gives back what it holds: its
 * timer, its readiness registration, a stream's read or write side, and
 * any waiter list the future linked itself into (a lock or channel built
 * on futures). What the code above that await
 * holds (a locked mutex, an open stream, memory) stays held.
 *
 * Stacks. Each coroutine runs on a fixed-size stack (default 64 KiB,
 * weft_config_t.stack_size, or per spawn) mapped with an inaccessible
 * guard page below it. Only the pages a coroutine touches use memory.
 * Running past the end hits the guard page and the process dies of
 * SIGSEGV after writing
 *   weft: coroutine task <id> "<name>" overflowed its <size>-byte stack ...
 * to stderr (weft installs a SIGSEGV/SIGBUS handler that passes other
 * faults to the handler installed before it). There is no recovery: size
 * stacks for the deepest call chain, and keep large buffers off the stack.
 * Each stack costs two memory mappings; vm.max_map_count (65,530 by
 * default) caps a process at about 32,000 live coroutines unless raised.
 * Finished coroutines' stacks are pooled per worker for reuse; pooled
 * stacks beyond a small resident set give their pages back to the kernel.
 */
#ifndef WEFT_CORO_H
#define WEFT_CORO_H

#include <weft/task.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Longest task name kept (longer names are truncated). */
#define WEFT_CORO_NAME_MAX 31
/* Accepted stack sizes, in bytes (rounded up to whole pages). */
#define WEFT_STACK_MIN ((size_t)16 << 10)
#define WEFT_STACK_MAX ((size_t)256 << 20)

typedef struct weft_coro_opts {
    const char *name;  /* copied (see WEFT_CORO_NAME_MAX); NULL for none */
    size_t stack_size; /* 0: the runtime's default */
    bool migratable;   /* may resume on any worker after an await */
} weft_coro_opts_t;

#define WEFT_CORO_OPTS_INIT ((weft_coro_opts_t){NULL, 0, false})

/*
 * Spawn fn(arg) as a coroutine task on rt, from any thread (placement as
 * for weft_spawn). opts may be NULL for the defaults. If handle is NULL the
 * task is detached. The stack is taken when the task first runs; if it
 * cannot be mapped then, the task completes with output -ENOMEM without
 * calling fn.
 * Returns 0, -EINVAL (NULL rt or fn, stack_size outside
 * [WEFT_STACK_MIN, WEFT_STACK_MAX] and not 0), -ENOMEM, or -ESHUTDOWN.
 */
int weft_spawn_coro(weft_runtime_t *rt, int (*fn)(void *), void *arg, const weft_coro_opts_t *opts,
                    weft_task_t **handle);

/*
 * Run the future (vt, state) to completion from a coroutine: poll it with
 * the task's context; while it is pending, suspend the coroutine until its
 * waker fires. The future is consumed either way: vt->drop (if any) is
 * called exactly once, after it is ready or when the wait is cancelled.
 * Returns 0 with the output in *out (out may be NULL), -ECANCELED if the
 * task is cancelled (the future was dropped, possibly before its first
 * poll), -EINVAL for a NULL vt or poll, -EPERM outside a coroutine task.
 */
int weft_await(const weft_future_vtable_t *vt, void *state, int64_t *out);

/*
 * Put the coroutine at the back of its worker's run queue, letting other
 * tasks run. 0, -ECANCELED, or -EPERM outside a coroutine task.
 */
int weft_yield(void);

/*
 * Wait for the task of join handle h and consume the handle.
 * In a coroutine: suspends until the task ends. On a thread outside the
 * runtime: blocks (weft_task_join_wait with no deadline). In a stackless
 * task: -EPERM (poll weft_task_join_poll instead).
 * Returns 0 with the task's output in *out (out may be NULL); -ECANCELED if
 * that task was cancelled, or if the calling coroutine was (the handle is
 * then given back and the task runs on, detached: cancel it first if it
 * should stop); -EINVAL for a NULL or stale handle (not consumed).
 */
int weft_join(weft_task_t *h, int64_t *out);

/* 1 if the caller is running in a coroutine task, else 0. */
int weft_in_coro(void);

/*
 * 1 if the calling coroutine's task has been cancelled (its next await
 * returns -ECANCELED), 0 if not, -EPERM outside a coroutine task.
 */
int weft_coro_cancelled(void);

/*
 * Spawn fn(arg) as the root coroutine and block the calling thread (not a
 * runtime thread: -EDEADLK) until it ends; *result (may be NULL) receives
 * fn's return value. 0, -ECANCELED, or a weft_spawn_coro error.
 */
int weft_runtime_run_coro(weft_runtime_t *rt, int (*fn)(void *), void *arg,
                          const weft_coro_opts_t *opts, int *result);

#ifdef __cplusplus
}
#endif
#endif /* WEFT_CORO_H */

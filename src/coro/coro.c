/*
 * coro.c - the coroutine task: its future (poll = resume the stack), the
 * switches in and out with their sanitizer annotations, and the coroutine
 * calls (await, yield, join).
 *
 * Owns: weft__coro_t (coro.h gives the invariants). The sequence of one
 * poll, on the worker's stack:
 *   resume: note the current coroutine, switch to its stack;
 *   the coroutine runs until suspend() (an await found its future pending)
 *   or until fn returns (entry() marks it done and switches back for good);
 *   back on the worker: clear the current coroutine; if done, give the
 *   stack back and report READY.
 * The harness then releases RUNNING (or re-queues), so a wake that raced
 * with the switch-out re-queues the task only after its registers are
 * saved.
 */
#include <errno.h>
#include <string.h>

#include "coro/arch/arch.h"
#include "coro/coro.h"

#ifdef WEFT__ASAN
#include <sanitizer/common_interface_defs.h>
#endif
#ifdef WEFT__TSAN
#include <sanitizer/tsan_interface.h>
#endif

/* Awaits answered -ECANCELED without a switch before one switch is forced
 * (a loop that ignores -ECANCELED still lets its worker run other tasks). */
#define CANCEL_SPIN_MAX 64

static _Thread_local weft__coro_t *current;

__attribute__((noinline)) weft__coro_t *weft__coro_current(void)
{
    return current;
}

__attribute__((noinline)) static void set_current(weft__coro_t *c)
{
    current = c;
}

/* errno through calls the compiler cannot merge across a switch: each
 * computes the calling thread's errno address afresh. */
__attribute__((noinline)) static int errno_get(void)
{
    return errno;
}

__attribute__((noinline)) static void errno_set(int e)
{
    errno = e;
}

static bool task_cancelled(const weft__task_t *t)
{
    /* Acquire: pairs with the release RMW of weft_task_cancel / shutdown
     * that set CANCELLED, so what the canceller wrote before is visible to
     * the cleanup code that runs because of it. */
    return atomic_load_explicit(&t->state, memory_order_acquire) & WEFT__CANCELLED;
}

/* ---- switching ---------------------------------------------------------------- */

/* Coroutine side: switch to the thread that resumed us; returns when we are
 * resumed again (possibly by another thread, if migratable). */
static void suspend(weft__coro_t *c)
{
    int saved_errno = errno_get();
#ifdef WEFT__ASAN
    __sanitizer_start_switch_fiber(&c->asan_fake, c->asan_caller_lo, c->asan_caller_size);
#endif
#ifdef WEFT__TSAN
    __tsan_switch_to_fiber(c->tsan_caller, 0);
#endif
    weft__ctx_switch(&c->sp, c->caller_sp);
#ifdef WEFT__ASAN
    __sanitizer_finish_switch_fiber(c->asan_fake, &c->asan_caller_lo, &c->asan_caller_size);
#endif
    c->cancel_spins = 0;
    errno_set(saved_errno);
}

static void entry(void *arg)
{
    weft__coro_t *c = arg;
#ifdef WEFT__ASAN
    __sanitizer_finish_switch_fiber(NULL, &c->asan_caller_lo, &c->asan_caller_size);
#endif
    c->result = c->fn(c->arg);
    c->done = 1;
#ifdef WEFT__ASAN
    /* NULL: this stack is finished; ASan frees its fake frames. */
    __sanitizer_start_switch_fiber(NULL, c->asan_caller_lo, c->asan_caller_size);
#endif
#ifdef WEFT__TSAN
    __tsan_switch_to_fiber(c->tsan_caller, 0);
#endif
    weft__ctx_switch(&c->sp, c->caller_sp);
    __builtin_trap(); /* a finished coroutine is never resumed */
}

/* Worker side: run the coroutine until it suspends or finishes. */
static void resume(weft__coro_t *c)
{
    set_current(c);
#ifdef WEFT__ASAN
    void *fake = NULL;
    __sanitizer_start_switch_fiber(&fake, c->stack->lo, (size_t)((char *)c->stack - c->stack->lo));
#endif
#ifdef WEFT__TSAN
    c->tsan_caller = __tsan_get_current_fiber();
    __tsan_switch_to_fiber(c->tsan_fiber, 0);
#endif
    weft__ctx_switch(&c->caller_sp, c->sp);
#ifdef WEFT__ASAN
    __sanitizer_finish_switch_fiber(fake, NULL, NULL);
#endif
    set_current(NULL);
}

static void release_stack(weft__coro_t *c)
{
#ifdef WEFT__TSAN
    if (c->tsan_fiber)
        __tsan_destroy_fiber(c->tsan_fiber);
    c->tsan_fiber = NULL;
#endif
    weft__stack_put(c->stack);
    c->stack = NULL;
}

/* ---- the task's future ------------------------------------------------------------ */

static weft_poll_t coro_poll(void *state, weft_cx_t *cx, int64_t *out)
{
    weft__coro_t *c = state;
    weft__task_t *t = cx->task_;
    if (!c->stack) { /* the first poll: a finished one is never polled */
        if (task_cancelled(t)) {
            t->out_cancelled = 1; /* never ran */
            *out = 0;
            return WEFT_READY;
        }
        c->stack = weft__stack_get(c->stack_size);
        if (!c->stack) {
            *out = -ENOMEM;
            return WEFT_READY;
        }
        c->sp = weft__ctx_make(c->stack, entry, c);
#ifdef WEFT__TSAN
        c->tsan_fiber = __tsan_create_fiber(0);
        __tsan_set_fiber_name(c->tsan_fiber, c->name[0] ? c->name : "weft-coro");
#endif
        if (!c->migratable)
            t->pinned = 1; /* written under RUNNING, like t->worker */
    }
    c->cx = cx;
    resume(c);
    c->cx = NULL;
    if (!c->done)
        return WEFT_PENDING;
    release_stack(c);
    if (c->cancel_seen)
        t->out_cancelled = 1;
    *out = c->result;
    return WEFT_READY;
}

/* Called once: after READY (nothing left), or instead of a poll when the
 * task is dropped without running to the end (shutdown past its
 * deadline): the stack is freed with the coroutine's frames on it. */
static void coro_drop(void *state)
{
    weft__coro_t *c = state;
    if (c->stack)
        release_stack(c);
}

const weft_future_vtable_t weft__coro_vtable = {coro_poll, coro_drop, "coroutine"};

int weft__coro_prepare(weft__coro_t *c, int (*fn)(void *), void *arg, const weft_coro_opts_t *opts,
                       size_t default_stack)
{
    if (!fn)
        return -EINVAL;
    size_t size = opts && opts->stack_size ? opts->stack_size : default_stack;
    if (size < WEFT_STACK_MIN || size > WEFT_STACK_MAX)
        return -EINVAL;
    memset(c, 0, sizeof *c);
    c->fn = fn;
    c->arg = arg;
    c->stack_size = size;
    c->migratable = opts && opts->migratable;
    if (opts && opts->name) {
        strncpy(c->name, opts->name, WEFT_CORO_NAME_MAX);
        c->name[WEFT_CORO_NAME_MAX] = '\0';
    }
    return 0;
}

/* ---- coroutine calls ----------------------------------------------------------------- */

int weft_await(const weft_future_vtable_t *vt, void *state, int64_t *out)
{
    if (!vt || !vt->poll)
        return -EINVAL;
    weft__coro_t *c = weft__coro_current();
    if (!c)
        return -EPERM;
    for (;;) {
        if (task_cancelled(weft__coro_task(c))) {
            c->cancel_seen = 1;
            if (vt->drop)
                vt->drop(state);
            if (++c->cancel_spins >= CANCEL_SPIN_MAX)
                suspend(c); /* a cancelled coroutine is always re-queued
                             * (harness.c): this lets others run first */
            return -ECANCELED;
        }
        int64_t v = 0;
        if (vt->poll(state, c->cx, &v) == WEFT_READY) {
            if (vt->drop)
                vt->drop(state);
            if (out)
                *out = v;
            return 0;
        }
        suspend(c);
        c = weft__coro_current(); /* the same coroutine; never cached */
    }
}

static weft_poll_t yield_poll(void *state, weft_cx_t *cx, int64_t *out)
{
    *out = 0;
    return (weft_poll_t)weft_yield_poll(state, cx);
}

static const weft_future_vtable_t yield_vt = {yield_poll, NULL, "yield"};

int weft_yield(void)
{
    weft_yield_t y = WEFT_YIELD_INIT;
    return weft_await(&yield_vt, &y, NULL);
}

typedef struct join_fut {
    weft_task_t *h;
    int rc;
    bool consumed;
} join_fut_t;

static weft_poll_t join_fut_poll(void *state, weft_cx_t *cx, int64_t *out)
{
    join_fut_t *j = state;
    int rc = weft_task_join_poll(j->h, cx, out);
    if (rc == WEFT_PENDING)
        return WEFT_PENDING;
    j->rc = rc;
    j->consumed = true; /* consumed, or stale (-EINVAL): leave it alone */
    return WEFT_READY;
}

static void join_fut_drop(void *state)
{
    join_fut_t *j = state;
    if (!j->consumed)
        weft_task_detach(j->h); /* cancelled waiting: the task runs on */
    j->consumed = true;
}

static const weft_future_vtable_t join_vt = {join_fut_poll, join_fut_drop, "join"};

int weft_join(weft_task_t *h, int64_t *out)
{
    if (!h)
        return -EINVAL;
    if (!weft__coro_current()) {
        if (weft__task_on_runtime_thread())
            return -EPERM;
        return weft_task_join_wait(h, INT64_MAX, out);
    }
    join_fut_t j = {h, 0, false};
    int64_t v = 0;
    int rc = weft_await(&join_vt, &j, &v);
    if (rc != 0)
        return rc; /* -ECANCELED: the drop detached the handle */
    if (j.rc == 0 && out)
        *out = v;
    return j.rc;
}

int weft_in_coro(void)
{
    return weft__coro_current() != NULL;
}

int weft_coro_cancelled(void)
{
    weft__coro_t *c = weft__coro_current();
    if (!c)
        return -EPERM;
    return task_cancelled(weft__coro_task(c)) ? 1 : 0;
}

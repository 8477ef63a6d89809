/*
 * coro.c - the coroutine task: its future (poll = resume the stack), the
 * switches in and out with their sanitizer annotations, and the coroutine
 * calls (await, yield, join).
 *
 * Owns: weft__coro_t (coro.h gives the invariants). The sequence of one
 * poll, on the worker's stack:
 *   resume_begin: note the current coroutine, restore its errno; the
 *   worker loop then switches to its stack (task.h, weft__task_run_start);
 *   the coroutine runs until suspend() (an await found its future pending,
 *   or weft_yield) or until fn returns (entry() marks it done and switches
 *   back for good);
 *   resume_end, back on the worker: clear the current coroutine, save its
 *   errno; if done, give the stack back and report READY.
 * The harness then releases RUNNING (or re-queues), so a wake that raced
 * with the switch-out re-queues the task only after its registers are
 * saved.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "coro/arch/arch.h"
#include "coro/coro.h"

/* Awaits answered -ECANCELED without a switch before one switch is forced
 * (a loop that ignores -ECANCELED still lets its worker run other tasks). */
#define CANCEL_SPIN_MAX 64

static _Thread_local weft__coro_t *current;

__attribute__((noinline)) weft__coro_t *weft__coro_current(void)
{
    return current;
}

/*
 * What the worker side of a switch keeps per thread, noted when the worker
 * starts: its floating-point control words (arch.h, weft__ctx_resume) and
 * the address of its errno. Only worker-side code (resume_begin/end) reads
 * them, never code on a coroutine's stack.
 */
static _Thread_local struct {
    uint64_t fp;
    int *errno_addr;
} thread_side;

void weft__coro_thread_capture(void)
{
    thread_side.fp = weft__ctx_fp_get();
    thread_side.errno_addr = &errno;
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
static inline __attribute__((always_inline)) void suspend(weft__coro_t *c)
{
#ifdef WEFT__ASAN
    __sanitizer_start_switch_fiber(&c->asan_fake, c->asan_caller_lo, c->asan_caller_size);
#endif
#ifdef WEFT__TSAN
    __tsan_switch_to_fiber(c->tsan_caller, 0);
#endif
    weft__stack_t *st = c->stack;
    weft__ctx_switch(&st->sp, st->caller_sp);
#ifdef WEFT__ASAN
    __sanitizer_finish_switch_fiber(c->asan_fake, &c->asan_caller_lo, &c->asan_caller_size);
#endif
    st->cancel_spins = 0;
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
    weft__ctx_switch(&c->stack->sp, c->stack->caller_sp);
    __builtin_trap(); /* a finished coroutine is never resumed */
}

/* Stacks of abandoned coroutines kept mapped until the shutdown sweep is
 * over (weft__coro_defer_stacks), linked through their pool link. */
static _Thread_local struct {
    bool on;
    weft__stack_t *head;
} deferred;

static void release_stack(weft__coro_t *c)
{
#ifdef WEFT__TSAN
    if (c->tsan_fiber)
        __tsan_destroy_fiber(c->tsan_fiber);
    c->tsan_fiber = NULL;
#endif
    if (deferred.on) {
        c->stack->next = deferred.head;
        deferred.head = c->stack;
    } else {
        weft__stack_put(c->stack);
    }
    c->stack = NULL;
}

void weft__coro_defer_stacks(bool on)
{
    deferred.on = on;
    if (on)
        return;
    while (deferred.head) {
        weft__stack_t *st = deferred.head;
        deferred.head = st->next;
        weft__stack_put(st);
    }
}

/* ---- the task's future ------------------------------------------------------------ */

bool weft__coro_resume_begin(weft__coro_t *c, weft_cx_t *cx, int64_t *out, weft__run_t *run)
{
    weft__task_t *t = cx->task_;
    if (!c->stack) { /* the first poll: a finished one is never polled */
        if (task_cancelled(t)) {
            t->out_cancelled = 1; /* never ran */
            *out = 0;
            return false;
        }
        c->stack = weft__stack_get(c->stack_size);
        if (!c->stack) {
            *out = -ENOMEM;
            return false;
        }
        weft__stack_t *st = c->stack;
        st->sp = weft__ctx_make(st->top, entry, c);
        st->saved_errno = 0; /* a pooled stack keeps its last user's */
        st->cancel_spins = 0;
        st->await_vt = NULL;
#ifdef WEFT__TSAN
        c->tsan_fiber = __tsan_create_fiber(0);
        __tsan_set_fiber_name(c->tsan_fiber, c->name ? c->name : "weft-coro");
#endif
        if (!c->migratable)
            t->pinned = 1; /* written under RUNNING, like t->worker */
    }
    weft__stack_t *st = c->stack;
    st->cx = cx;
    /* Inline TLS use (here and in end): this side runs on the worker's own
     * stack, the same thread before and after the switch. errno is saved
     * and restored here, on the thread that resumes, so that it follows a
     * migratable coroutine to another thread. */
    current = c;
    *thread_side.errno_addr = st->saved_errno;
    run->coro = c;
    run->save = &st->caller_sp;
    run->to = st->sp;
    run->fp = &thread_side.fp;
    return true;
}

weft_poll_t weft__coro_resume_end(weft__coro_t *c, int64_t *out)
{
    current = NULL;
    weft__stack_t *st = c->stack;
    st->saved_errno = *thread_side.errno_addr;
    st->cx = NULL;
    if (!c->done)
        return WEFT_PENDING;
    release_stack(c);
    if (c->cancel_seen)
        weft__coro_task(c)->out_cancelled = 1;
    *out = c->result;
    return WEFT_READY;
}

/* The vtable's poll, for completeness: the harness does not call it but
 * splits it around the switch (begin/end above). */
static weft_poll_t coro_poll(void *state, weft_cx_t *cx, int64_t *out)
{
    weft__coro_t *c = state;
    weft__run_t run;
    if (!weft__coro_resume_begin(c, cx, out, &run))
        return WEFT_READY;
    weft__coro_switch_in(&run);
    return weft__coro_resume_end(c, out);
}

/* Called once: after READY (nothing left), or instead of a poll when the
 * task is dropped without running to the end (shutdown past its
 * deadline): the stack is freed with the coroutine's frames on it. The
 * one future those frames are suspended in, if any, is dropped first, on
 * this thread and while the stack is still mapped: a timer entry, a
 * readiness registration, a place in a lock's or a channel's wait list,
 * or a stream's side held by that wait would otherwise point into (or be
 * held for) a stack that is gone. That drop may also write into another
 * abandoned coroutine's frames (a lock it held lives there), so the
 * shutdown sweep keeps every such stack mapped until all are dropped
 * (weft__coro_defer_stacks). What the frames above the await hold cannot
 * be found and stays held (weft/coro.h). */
static void coro_drop(void *state)
{
    weft__coro_t *c = state;
    if (c->stack) {
        weft__stack_t *st = c->stack;
        const weft_future_vtable_t *vt = st->await_vt;
        st->await_vt = NULL;
        if (vt && vt->drop)
            vt->drop(st->await_state);
        release_stack(c);
    }
    weft__coro_unprepare(c);
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
    if (opts && opts->name && opts->name[0]) {
        size_t n = strnlen(opts->name, WEFT_CORO_NAME_MAX);
        if (!(c->name = malloc(n + 1)))
            return -ENOMEM;
        memcpy(c->name, opts->name, n);
        c->name[n] = '\0';
    }
    return 0;
}

void weft__coro_unprepare(weft__coro_t *c)
{
    free(c->name);
    c->name = NULL;
}

/* ---- coroutine calls ----------------------------------------------------------------- */

/* An await (or yield) of a cancelled coroutine: -ECANCELED at once, but
 * every CANCEL_SPIN_MAX-th still switches out (a cancelled coroutine is
 * always re-queued, harness.c) so that a loop ignoring it lets others run. */
static int answer_cancelled(weft__coro_t *c)
{
    c->cancel_seen = 1;
    if (++c->stack->cancel_spins >= CANCEL_SPIN_MAX)
        suspend(c);
    return -ECANCELED;
}

int weft_await(const weft_future_vtable_t *vt, void *state, int64_t *out)
{
    if (!vt || !vt->poll)
        return -EINVAL;
    weft__coro_t *c = weft__coro_current();
    if (!c)
        return -EPERM;
    for (;;) {
        if (task_cancelled(weft__coro_task(c))) {
            if (vt->drop)
                vt->drop(state);
            return answer_cancelled(c);
        }
        int64_t v = 0;
        weft__stack_t *st = c->stack;
        if (vt->poll(state, st->cx, &v) == WEFT_READY) {
            if (vt->drop)
                vt->drop(state);
            if (out)
                *out = v;
            return 0;
        }
        st->await_vt = vt; /* for coro_drop, if we are never resumed */
        st->await_state = state;
        suspend(c);
        c = weft__coro_current(); /* the same coroutine; never cached */
        c->stack->await_vt = NULL;
    }
}

/*
 * Not an await of weft_yield_t: the same effect (cx->yield_ makes the
 * harness re-queue the task at the back, still RUNNING) without the
 * future's two polls, and with one call level between the caller and the
 * switch: every return that crosses a switch misses the return-stack
 * predictor, so the fewer the frames, the cheaper the round trip.
 */
int weft_yield(void)
{
    weft__coro_t *c = weft__coro_current();
    if (!c)
        return -EPERM;
    if (task_cancelled(weft__coro_task(c)))
        return answer_cancelled(c);
    c->stack->cx->yield_ = 1;
    suspend(c);
    /* As the await did: a cancel that came while we were queued is the
     * yield's answer. */
    if (task_cancelled(weft__coro_task(c)))
        return answer_cancelled(c);
    return 0;
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

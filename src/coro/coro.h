/*
 * coro.h - coroutine tasks: a task whose future is a C function running on
 * its own stack. Internal to weft.
 *
 * A coroutine task is an ordinary task (src/task) whose vtable is
 * weft__coro_vtable and whose state is a weft__coro_t. Polling it resumes
 * the stack; the poll returns when the function awaits a pending future
 * (WEFT_PENDING) or returns (WEFT_READY, the function's int as output).
 *
 * Invariants:
 *  - The stack is taken at the first poll, on the worker that runs it, and
 *    given back when the function has returned (or when the task is dropped
 *    unfinished at shutdown). Before its first poll a coroutine is a
 *    plain stealable task; the first poll marks it pinned (task.h) unless
 *    it was spawned migratable.
 *  - Only the thread holding the task's RUNNING bit switches into the
 *    stack, and RUNNING is released only after the switch back returned,
 *    i.e. after the coroutine's registers are saved (harness.c).
 *  - The current coroutine and the calling thread's stack pool are
 *    thread-locals read on a coroutine's stack only through noinline
 *    accessors, never cached across a switch (a migratable coroutine may
 *    come back on another thread). The worker's side of a switch
 *    (resume_begin/end) runs on the worker's own stack and may use them
 *    inline. errno's value is saved there after each suspension and
 *    restored there before each resume.
 *  - Cancellation is level-triggered: once the task is cancelled, every
 *    await returns -ECANCELED without waiting.
 */
#ifndef WEFT_CORO_CORO_H
#define WEFT_CORO_CORO_H

#include <stddef.h>
#include <stdint.h>

#include <weft/coro.h>

#include "coro/arch/arch.h"
#include "task/task.h"
#include "util/util.h"

#ifdef WEFT__ASAN
#include <sanitizer/common_interface_defs.h>
#endif
#ifdef WEFT__TSAN
#include <sanitizer/tsan_interface.h>
#endif

/* Stack sizes: the default, and the accepted range (weft/coro.h). */
#define WEFT__STACK_DEFAULT ((size_t)64 << 10)
#define WEFT__STACK_HOT 16 /* pooled stacks per worker kept resident */
#define WEFT__STACK_CACHE_DEFAULT 256
#define WEFT__STACK_POOL_MAX 4096 /* resident stacks a pool holds between trims */

/* The header at the top of every stack mapping (stack.c). */
typedef struct weft__stack {
    /*
     * The state a switch writes, while a coroutine uses this stack: here,
     * in the page its top frames are in, and not in the task's cell. Cells
     * are carved side by side, and with their neighbours owned by the
     * other worker, writing them on every yield made W3 at 2 workers up
     * to 1.7x slower (the prefetchers pull neighbouring cells in, and each
     * write must take them back from the other core; docs/coroutines.md).
     */
    void *sp;         /* the coroutine's saved context while suspended */
    void *caller_sp;  /* the resuming thread's context while it runs */
    weft_cx_t *cx;    /* the poll context while it runs */
    int saved_errno;  /* errno's value while suspended */
    int cancel_spins; /* awaits answered -ECANCELED since the last switch */
    /* The future an await is suspended in (NULL vt otherwise): a coroutine
     * abandoned at shutdown has it dropped before its stack goes
     * (coro_drop), so the wait gives back what it holds. */
    const weft_future_vtable_t *await_vt;
    void *await_state;
    struct weft__stack *next; /* pool link */
    char *map;                /* the mapping; its first page is the guard */
    size_t map_len;
    char *lo;    /* lowest usable byte (just above the guard) */
    char *top;   /* where the first frame starts: below the header, coloured */
    size_t size; /* the size asked for (the pool key) */
    unsigned vg_id;
} weft__stack_t;

/* Stacks a pool maps at once (stack.c). */
#define WEFT__STACK_BATCH 16

/* A worker's free stacks of the runtime's default size. Owner-only. */
typedef struct weft__stack_pool {
    weft__stack_t *hot, *cold; /* cold: pages given back */
    unsigned nhot, ncold, cold_max;
    weft__stack_t *over; /* beyond WEFT__STACK_POOL_MAX hot: to go cold */
    unsigned nover;      /* < WEFT__STACK_MAP_MAX between calls */
    size_t size;
    char *fresh;     /* the rest of the last batch: never used yet */
    unsigned nfresh; /* stacks left there */
    uint32_t made;   /* stacks this pool made: picks each one's colour */
} weft__stack_pool_t;

void weft__stack_pool_init(weft__stack_pool_t *p, size_t size, unsigned cold_max);
/* Unmap every pooled stack; only with no thread using the pool. */
void weft__stack_pool_destroy(weft__stack_pool_t *p);
/* A stack of `size` usable bytes: from the calling thread's pool if it
 * has one of that size, else a new mapping. NULL if mapping fails. */
weft__stack_t *weft__stack_get(size_t size);
/* Back to the calling thread's pool, or unmapped. */
void weft__stack_put(weft__stack_t *st);
/* Owner, when idle: keep WEFT__STACK_HOT resident, give the pages of up to
 * cold_max more back, unmap the rest (adjacent stacks in one call). */
void weft__stack_pool_trim(weft__stack_pool_t *p);
/* Mappings made and not yet unmapped, process-wide (tests, diagnostics). */
int64_t weft__stack_mapped(void);

typedef struct weft__coro {
    weft__stack_t *stack; /* NULL until the first poll and after the end */
    int (*fn)(void *);
    void *arg;
    size_t stack_size;
    int result;
    uint8_t migratable;
    uint8_t done;
    uint8_t cancel_seen; /* an await returned -ECANCELED */
    uint16_t credit;     /* sched_ops.place: 1 + the worker it was sent to */
#ifdef WEFT__ASAN
    void *asan_fake;
    const void *asan_caller_lo;
    size_t asan_caller_size;
#endif
#ifdef WEFT__TSAN
    void *tsan_fiber, *tsan_caller;
#endif
    /* Out of line (malloc, freed by the drop) and only when a name is
     * given: inline it cost every coroutine 32 bytes and its cell moved
     * from the 192- to the 256-byte class. */
    char *name;
} weft__coro_t;

extern const weft_future_vtable_t weft__coro_vtable;

/*
 * On the calling thread, from on = true to on = false: stacks of dropped
 * coroutines are kept mapped, then given back all at once. The shutdown
 * sweep (weft__sched_drop_rest) wraps its drops in it, because dropping
 * one abandoned coroutine's await may write into another's frames.
 */
void weft__coro_defer_stacks(bool on);

/*
 * One poll of coroutine c, split around the switch (the harness lets the
 * worker loop make it, task.h weft__task_run_start). begin: with RUNNING
 * held, set up the resume and return true with the switch to make
 * (weft__coro_switch_in(run)); false if the poll ended without a switch
 * (cancelled before its first run, or no stack: -ENOMEM), READY with *out.
 * end: after the switch came back; READY with *out once fn has returned.
 */
bool weft__coro_resume_begin(weft__coro_t *c, weft_cx_t *cx, int64_t *out, weft__run_t *run);
weft_poll_t weft__coro_resume_end(weft__coro_t *c, int64_t *out);

/*
 * The switch between begin and end, with the sanitizers' fiber
 * annotations. always_inline because both must happen in the frame that
 * makes the switch: TSan keeps a shadow call stack per fiber, and a
 * function that switched fibers and then returned before the real switch
 * would pop its frame off the coroutine's.
 */
static inline __attribute__((always_inline)) void weft__coro_switch_in(weft__run_t *run)
{
#if defined(WEFT__ASAN) || defined(WEFT__TSAN)
    weft__coro_t *c = run->coro;
#endif
#ifdef WEFT__ASAN
    void *fake = NULL;
    __sanitizer_start_switch_fiber(&fake, c->stack->lo, (size_t)((char *)c->stack - c->stack->lo));
#endif
#ifdef WEFT__TSAN
    c->tsan_caller = __tsan_get_current_fiber();
    __tsan_switch_to_fiber(c->tsan_fiber, 0);
#endif
    weft__ctx_resume(run->save, run->to, run->fp);
#ifdef WEFT__ASAN
    __sanitizer_finish_switch_fiber(fake, NULL, NULL);
#endif
}

/* The task whose state c is (a coroutine's state is its task's data). */
static inline weft__task_t *weft__coro_task(weft__coro_t *c)
{
    return weft__container_of((unsigned char *)c, weft__task_t, data);
}

/* Fill *c for a spawn; validates (-EINVAL), resolves the stack size and
 * copies the name (-ENOMEM). A prepared state that is not spawned after all
 * is released with weft__coro_unprepare. */
int weft__coro_prepare(weft__coro_t *c, int (*fn)(void *), void *arg, const weft_coro_opts_t *opts,
                       size_t default_stack);
void weft__coro_unprepare(weft__coro_t *c);

/*
 * Per worker thread: use `pool` for stacks and set up what reporting a
 * stack overflow needs (alternate signal stack, fault handler). leave()
 * undoes it. 0 or -errno.
 */
int weft__coro_thread_enter(weft__stack_pool_t *pool);
void weft__coro_thread_leave(void);
/* Note what the worker side of a switch keeps per thread (coro.c); in
 * weft__coro_thread_enter. */
void weft__coro_thread_capture(void);

/* The coroutine running on this thread, or NULL; noinline. */
weft__coro_t *weft__coro_current(void);

static inline bool weft__task_is_coro(const weft__task_t *t)
{
    return t->fut == &weft__coro_vtable;
}

#endif /* WEFT_CORO_CORO_H */

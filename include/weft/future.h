/*
 * weft/future.h - the futures API: poll functions, wakers, the poll
 * context, the atomic waker slot, yield and the cooperative budget.
 *
 * A future is a state struct plus a vtable. The runtime (or an enclosing
 * future) calls poll(state, cx, out). poll either
 *   - returns WEFT_READY after writing its output to *out, or
 *   - returns WEFT_PENDING after arranging for the waker of cx
 *     (weft_cx_waker(cx)) to be woken when polling again can make progress.
 * A future that returns WEFT_PENDING without arranging a wake-up is never
 * polled again (it leaks until shutdown cancels it).
 *
 * drop(state) releases whatever the state owns. The runtime calls it exactly
 * once for every spawned future: after poll returned WEFT_READY, or instead
 * of the next poll when the task is cancelled. It may be NULL.
 *
 * A future that polls another one inside its own state (a child: a TCP
 * read inside a connection's state machine) owes it the same: call the
 * child's drop exactly once, after the child returned WEFT_READY (before
 * initialising it again) and from the parent's own drop if it is still
 * initialised then. A child that is never dropped keeps what it holds (a
 * stream reference, a timer entry, a registered waker). bench/w10_*.c
 * shows the pattern (its `live` flag).
 *
 * Wakers are values ({vtable, data}). The waker borrowed from a context is
 * valid only during that poll: a future that keeps it must clone it
 * (weft_waker_clone) and later wake or drop its copy exactly once.
 */
#ifndef WEFT_FUTURE_H
#define WEFT_FUTURE_H

#include <weft/common.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum weft_poll {
    WEFT_READY = 0,
    WEFT_PENDING = 1,
} weft_poll_t;

/*
 * The context of one poll: the waker to wake, and the task's cooperative
 * budget. A value type so that combinators can build child contexts on the
 * stack (weft_cx_init_child); its fields are private.
 */
typedef struct weft_cx weft_cx_t;

typedef struct weft_future_vtable {
    weft_poll_t (*poll)(void *state, weft_cx_t *cx, int64_t *out);
    void (*drop)(void *state); /* may be NULL */
    const char *name;          /* for dumps and debugging; may be NULL */
} weft_future_vtable_t;

/* ---- wakers ------------------------------------------------------------ */

typedef struct weft_waker weft_waker_t;

typedef struct weft_waker_vtable {
    /* Make *dst a new, independently owned waker for the same target. */
    void (*clone)(const weft_waker_t *src, weft_waker_t *dst);
    /* Wake and consume *w. */
    void (*wake)(weft_waker_t *w);
    /* Wake without consuming *w. */
    void (*wake_by_ref)(const weft_waker_t *w);
    /* Consume *w without waking. */
    void (*drop)(weft_waker_t *w);
} weft_waker_vtable_t;

struct weft_waker {
    const weft_waker_vtable_t *vtable; /* NULL: the empty waker */
    void *data;
};

#define WEFT_WAKER_NONE ((weft_waker_t){NULL, NULL})

/*
 * Helpers over the vtable. Each tolerates the empty waker (does nothing) and
 * leaves a consumed waker empty. Return 0 or -EINVAL for a NULL argument.
 */
int weft_waker_clone(const weft_waker_t *src, weft_waker_t *dst);
int weft_waker_wake(weft_waker_t *w);
int weft_waker_wake_by_ref(const weft_waker_t *w);
int weft_waker_drop(weft_waker_t *w);
/* True if both wake the same target (same vtable and data). */
bool weft_waker_will_wake(const weft_waker_t *a, const weft_waker_t *b);

/* ---- poll context ------------------------------------------------------ */

/* The waker of the task being polled; NULL if cx is NULL. Borrowed. */
const weft_waker_t *weft_cx_waker(weft_cx_t *cx);

struct weft_cx {
    weft_waker_t waker_;
    void *task_;  /* the task polled, only in its own top-level context */
    int *budget_; /* the task's cooperative budget, shared with children */
    int yield_;   /* set by weft_yield_poll on the top-level context */
};

/*
 * Make *child a context for polling a sub-future with another waker (for a
 * combinator that wants to know which child woke). *child shares the
 * parent's budget and must not outlive the parent's poll; *waker stays
 * borrowed. 0 or -EINVAL for a NULL argument.
 */
int weft_cx_init_child(weft_cx_t *child, weft_cx_t *parent, const weft_waker_t *waker);

/* ---- cooperative budget ------------------------------------------------ */

/*
 * Leaf futures (anything that can complete without ever returning pending,
 * such as a channel with items queued) call this before doing work. It
 * returns 0 while the task's budget lasts: 128 operations per scheduler
 * tick, shared by the task and any tasks it woke that run right after it
 * from the worker's LIFO slot in the same tick. When it
 * is spent it wakes the task through cx and returns WEFT_PENDING: the leaf
 * must then return WEFT_PENDING itself, and the task goes to the back of the
 * run queue, so one busy task cannot starve a worker. -EINVAL if cx is NULL.
 */
int weft_coop_proceed(weft_cx_t *cx);

/* ---- yield ------------------------------------------------------------- */

/*
 * A future that is pending once, putting the task at the back of its
 * worker's run queue (never in the LIFO slot), then ready (*out = 0).
 * Initialise with WEFT_YIELD_INIT or weft_yield_init.
 */
typedef struct weft_yield {
    int polled;
} weft_yield_t;
#define WEFT_YIELD_INIT ((weft_yield_t){0})
void weft_yield_init(weft_yield_t *y);
/* WEFT_READY, WEFT_PENDING, or -EINVAL for NULL arguments. */
int weft_yield_poll(weft_yield_t *y, weft_cx_t *cx);

/* ---- atomic waker slot ------------------------------------------------- */

/*
 * Holds at most one waker; one registrant (the consumer), any number of
 * concurrent wakers (producers). The consumer registers *before* checking
 * its condition; a producer makes the condition true *before* calling wake.
 * A wake that finds no waker is not remembered: the consumer's check after
 * registering catches it. Embed it anywhere; it needs no allocation.
 * The fields are private.
 */
typedef struct weft_atomic_waker {
    _Atomic uintptr_t state_;
    weft_waker_t waker_;
} weft_atomic_waker_t;

// clang-format off
#define WEFT_ATOMIC_WAKER_INIT {0, {NULL, NULL}}
// clang-format on
void weft_atomic_waker_init(weft_atomic_waker_t *aw);
/* Store a clone of *w (dropping any older waker). If the slot is busy at
 * that instant (being woken, or registered by a second registrant), *w is
 * woken at once instead of stored: a spurious wake, never a lost one.
 * 0 or -EINVAL. */
int weft_atomic_waker_register(weft_atomic_waker_t *aw, const weft_waker_t *w);
/* Wake and remove the stored waker, if any. 0 or -EINVAL. */
int weft_atomic_waker_wake(weft_atomic_waker_t *aw);
/* Remove the stored waker into *out (empty if none) without waking. */
int weft_atomic_waker_take(weft_atomic_waker_t *aw, weft_waker_t *out);
/* Drop any stored waker. Call only when no other thread uses *aw. A
 * stored task waker holds a reference to its task: until it is woken,
 * taken or destroyed, weft_runtime_free reports -EBUSY. */
void weft_atomic_waker_destroy(weft_atomic_waker_t *aw);

#ifdef __cplusplus
}
#endif
#endif /* WEFT_FUTURE_H */

/*
 * task.h - the task header, its state word and the harness that polls,
 * completes and cancels tasks. Internal to weft.
 *
 * A task is one allocation: this header, then the future's state (copied in
 * at spawn). The scheduler that owns a task is reached only through
 * `sched->ops`, so this layer never includes src/sched.
 *
 * State word (after Tokio's): RUNNING 1, COMPLETE 2, NOTIFIED 4,
 * JOIN_INTEREST 8, JOIN_WAKER 16, CANCELLED 32, reference count from bit 6.
 *  - RUNNING is a lock on the future: only its holder polls or drops it.
 *  - COMPLETE is final and never set together with RUNNING.
 *  - NOTIFIED means exactly one queue entry (a "Notified") refers to the
 *    task, or one will be pushed by the thread holding RUNNING.
 *  - References are held by: the owned list (until completion), each
 *    Notified, the join handle, each cloned waker. A new task has three
 *    (owned, first Notified, join handle) - two when spawned detached.
 *  - JOIN_WAKER = 0: the join handle owns `join_waker`; = 1: the slot is
 *    published and the completing thread may read it (rules in state.c).
 *  - A yielded task is queued *still holding RUNNING* (`yield_held` = 1):
 *    the queue entry carries the lock, and the worker that pops it polls
 *    without a state transition. The flag may stay set while that worker
 *    holds RUNNING (so a task yielding in a loop never writes it); it is
 *    cleared before RUNNING is released or the task completes. Nothing
 *    else sets RUNNING on a queued task while workers run (the shutdown
 *    sweep runs after they stop).
 *  - `worker` and `pinned` are written only by the RUNNING holder; whoever
 *    queues a Notified reads them after the state RMW that gave it the
 *    Notified, which orders them. A pinned task is queued only where its
 *    worker runs it: that worker's LIFO slot, pinned list or inbox.
 *  - A coroutine task (src/coro) is never dropped for a cancel while the
 *    workers run: it is polled, so that its awaits return -ECANCELED and
 *    its own cleanup runs. Only the shutdown sweep (force_cancel) drops one.
 */
#ifndef WEFT_TASK_TASK_H
#define WEFT_TASK_TASK_H

#include <stdalign.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <ck_stack.h>

#include <weft/future.h>

#define WEFT__RUNNING ((uint64_t)1)
#define WEFT__COMPLETE ((uint64_t)2)
#define WEFT__NOTIFIED ((uint64_t)4)
#define WEFT__JOIN_INTEREST ((uint64_t)8)
#define WEFT__JOIN_WAKER ((uint64_t)16)
#define WEFT__CANCELLED ((uint64_t)32)
#define WEFT__REF_ONE ((uint64_t)64)
#define WEFT__REF_MASK (~(WEFT__REF_ONE - 1))

#define WEFT__TASK_MAGIC 0x7eaf7a5cu
#define WEFT__TASK_DEAD 0xdeadbeefu

struct weft__task;

/* What a task needs from the scheduler that owns it. */
typedef struct weft__sched_ops {
    /* Queue a Notified (its reference is handed over). yield: to the back
     * of the run queue, never the LIFO slot. */
    void (*schedule)(void *sched, struct weft__task *t, bool yield);
    /* Remove from the owned list; returns the references released (0/1). */
    unsigned (*release)(void *sched, struct weft__task *t);
    /* Free the cell (last reference gone). */
    void (*dealloc)(void *sched, struct weft__task *t);
    /*
     * t is a coroutine about to run for the first time, after which it
     * stays on the calling worker (src/coro); RUNNING held. *credit is 0,
     * or 1 + the worker an earlier place() sent it to (settled here). The
     * scheduler may send t to a less loaded worker instead: it queues t
     * there still holding RUNNING (as a yield), sets *credit and returns
     * true; the caller then leaves t alone. false: run it here. NULL: never.
     */
    bool (*place)(void *sched, struct weft__task *t, uint16_t *credit);
} weft__sched_ops_t;

typedef struct weft__sched_base {
    const weft__sched_ops_t *ops;
} weft__sched_base_t;

typedef struct weft__task {
    _Atomic uint64_t state;
    union {
        struct weft__task *next;      /* inject list and batches */
        ck_stack_entry_t inbox_entry; /* a worker's inbox */
    };
    const weft_future_vtable_t *fut;
    weft__sched_base_t *sched;
    int64_t id;
    struct weft__task *owned_prev, *owned_next; /* under the shard lock */
    weft_waker_t join_waker;                    /* see JOIN_WAKER */
    int64_t output;                             /* valid once COMPLETE */
    uint32_t magic;
    uint16_t shard;     /* owned-list shard */
    uint16_t worker;    /* worker that last polled it (inbox target) */
    uint8_t size_class; /* allocation cache class */
    uint8_t out_cancelled : 1;
    uint8_t yield_held : 1; /* queued while still holding RUNNING (harness.c) */
    uint8_t pinned : 1;     /* runs only on `worker` (a started coroutine) */
    uint8_t reserved_ : 5;
    alignas(16) unsigned char data[];
} weft__task_t;

#define WEFT__INITIAL_STATE (3 * WEFT__REF_ONE | WEFT__JOIN_INTEREST | WEFT__NOTIFIED)
#define WEFT__INITIAL_STATE_DETACHED (2 * WEFT__REF_ONE | WEFT__NOTIFIED)

static inline void *weft__task_state(weft__task_t *t)
{
    return t->data;
}

/* ---- transitions (state.c) ----------------------------------------------- */

typedef enum {
    WEFT__TR_SUCCESS,   /* running; poll it */
    WEFT__TR_CANCELLED, /* running, but cancelled: drop it */
    WEFT__TR_FAILED,    /* not idle; the Notified's reference was dropped */
    WEFT__TR_DEALLOC,   /* as FAILED, and that was the last reference */
} weft__tr_running_t;

typedef enum {
    WEFT__TR_IDLE_OK,
    WEFT__TR_IDLE_NOTIFIED, /* woken during the poll: re-queue (ref kept) */
    WEFT__TR_IDLE_DEALLOC,
    WEFT__TR_IDLE_CANCELLED, /* still RUNNING: cancel it */
} weft__tr_idle_t;

weft__tr_running_t weft__state_to_running(weft__task_t *t);
weft__tr_idle_t weft__state_to_idle(weft__task_t *t);
uint64_t weft__state_to_complete(weft__task_t *t);
typedef enum {
    WEFT__TR_COMPLETE_DONE,    /* complete, `count` references dropped */
    WEFT__TR_COMPLETE_DEALLOC, /* as DONE, and they were the last */
    WEFT__TR_COMPLETE_SLOW,    /* a join waker is published: nothing done */
} weft__tr_complete_t;
/* RUNNING -> COMPLETE and drop `count` references in one CAS, unless a
 * join waker must be woken first. */
weft__tr_complete_t weft__state_complete_fast(weft__task_t *t, unsigned count);
bool weft__state_unset_waker_after_complete(weft__task_t *t);
bool weft__state_to_terminal(weft__task_t *t, unsigned count);
/* Wakers. Return true if the caller must schedule a Notified. */
bool weft__state_notify_by_val(weft__task_t *t, bool *dealloc);
bool weft__state_notify_by_ref(weft__task_t *t);
bool weft__state_notify_and_cancel(weft__task_t *t);
bool weft__state_to_shutdown(weft__task_t *t);
void weft__state_ref_inc(weft__task_t *t);
bool weft__state_ref_dec(weft__task_t *t);
bool weft__state_drop_join_fast(weft__task_t *t);
/* Join handle dropped: returns true if the handle must drop join_waker. */
bool weft__state_join_dropped(weft__task_t *t);
/* Publish join_waker; false (and nothing published) if already complete. */
bool weft__state_set_join_waker(weft__task_t *t);
/* Take join_waker back; false if already complete (the slot stays shared). */
bool weft__state_unset_join_waker(weft__task_t *t);

/* ---- harness (harness.c) ------------------------------------------------- */

/* Set up a new cell's header. */
void weft__task_init(weft__task_t *t, weft__sched_base_t *sched, const weft_future_vtable_t *fut,
                     int64_t id, bool detached);

/*
 * Run one Notified: poll the task (or drop it if cancelled) with the
 * given budget counter, on the given worker index (recorded in the task
 * while RUNNING is held). `force_cancel` drops the future instead of polling
 * (shutdown). Handles every outcome, including re-queueing.
 */
void weft__task_run(weft__task_t *t, int *budget, uint16_t worker, bool force_cancel);

/*
 * The same run (never force_cancel), split around a coroutine's switch so
 * that the worker loop makes the switch itself, from its own frame: a
 * return that crosses a switch misses the return-stack predictor, and a
 * switch made three calls deep cost three such misses on the way back.
 * start() does everything up to the switch; if it returns true, the caller
 * calls weft__coro_switch_in(run) (coro/coro.h, from its own frame) and
 * then run_end(t, run), with
 * `run` alive in its frame throughout; false: the run is over.
 */
typedef struct weft__run {
    weft_cx_t cx;            /* the poll context; the coroutine reads it while it runs */
    struct weft__coro *coro; /* the coroutine being resumed */
    void **save;             /* where the switch saves the worker's context */
    void *to;                /* the coroutine's context */
    const uint64_t *fp;      /* the thread's control words (coro/arch/arch.h) */
} weft__run_t;
bool weft__task_run_start(weft__task_t *t, int *budget, uint16_t worker, weft__run_t *run);
void weft__task_run_end(weft__task_t *t, weft__run_t *run);

/* Drop the future and complete as cancelled; caller holds RUNNING. */
void weft__task_cancel_running(weft__task_t *t);

/* The id of the task this thread is polling, 0 if none. */
int64_t weft__task_current_id(void);

/*
 * Marks the calling thread as a runtime thread (workers mark themselves);
 * blocking calls refuse to run there (-EDEADLK).
 */
void weft__task_mark_runtime_thread(bool on);
bool weft__task_on_runtime_thread(void);

/* The task waker for t (borrowed, no reference taken). */
weft_waker_t weft__task_waker_ref(weft__task_t *t);

/* Drop a reference; free the cell if it was the last. */
void weft__task_drop_ref(weft__task_t *t);

/* ---- atomic waker (atomic_waker.c) ----------------------------------------- */

/*
 * weft_atomic_waker_register, but the waker it displaces is handed to the
 * caller in *old (empty if none) instead of being dropped: src/io wakes a
 * displaced waker that is not the caller's own.
 */
int weft__atomic_waker_swap(weft_atomic_waker_t *aw, const weft_waker_t *w, weft_waker_t *old);

/*
 * Register w only if the slot is empty or holds a waker of w's own target
 * (weft_waker_will_wake); that one is replaced and dropped. -EBUSY, the
 * slot unchanged, if it holds another target's waker; -EINVAL. As with
 * register, a slot found busy (being woken or registered into) stores
 * nothing and w is woken at once: 0.
 */
int weft__atomic_waker_claim(weft_atomic_waker_t *aw, const weft_waker_t *w);

#endif /* WEFT_TASK_TASK_H */

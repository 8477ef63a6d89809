/*
 * sched.h - the work-stealing scheduler: workers, their queues, the owned
 * task lists and the per-worker allocation caches. Internal to weft.
 *
 * Layout of a worker (one per thread, cache-line separated):
 *  - ring: the 256-slot SPMC run queue (ring.h); thieves touch only it.
 *  - lifo: the most recently spawned/woken task, run next (owner only).
 *  - pinned list: started coroutines that must run on this worker
 *    (task.h), FIFO, owner only; served alternately with the ring so
 *    neither can starve the other. Thieves never see it.
 *  - stacks: the worker's pool of coroutine stacks (src/coro), owner only.
 *  - inbox: a ck_stack of tasks other threads aimed at this worker; pushed
 *    by anyone (push_upmc), drained by the owner (batch_pop_upmc), and by
 *    the driver thread when the owner has been stuck in one poll for
 *    WEFT__RESCUE_NS (the rescue: batch.c, weft__sched_batch_rescue).
 *  - ec: the event count the worker parks on; `sleeping` mirrors its entry
 *    in the idle sleeper list. A parked worker may instead wait in the
 *    scheduler's poller (`in_poller`); wakers then wake the poller too
 *    (idle.c, wake_worker).
 *  - cache, ids, counters: touched only by the owning thread (and by the
 *    shutdown path after every worker thread has been joined).
 *
 * Owned lists: one shard per worker plus one for foreign threads, each a
 * mutex-protected intrusive list of live tasks, so that shutdown can find
 * and cancel every task. A task sits in the shard it was spawned into until
 * it completes. `closed` (set under each shard lock at shutdown) refuses new
 * tasks, so a late spawn can never slip past the shutdown sweep.
 */
#ifndef WEFT_SCHED_SCHED_H
#define WEFT_SCHED_SCHED_H

#include <ck_ec.h>
#include <ck_stack.h>
#include <pthread.h>
#include <stdalign.h>

#include "coro/coro.h"
#include "platform/platform.h"
#include "sched/idle.h"
#include "sched/inject.h"
#include "sched/ring.h"
#include "task/task.h"
#include "util/util.h"

#define WEFT__BUDGET 128
#define WEFT__GLOBAL_INTERVAL 61
/*
 * Budget units (each a leaf operation, weft_coop_proceed) a busy worker
 * spends between two looks at the poller, inbox and inject queue, however
 * few ticks they took. Ticks alone let a task that spends its whole
 * budget every poll (a reader whose socket always has data) stretch 61
 * ticks to 61 x 128 operations: 8 ms of timer lateness measured, with
 * 16-byte reads at 1-2 us each. Two budgets: 0.3-0.5 ms there (each look
 * costs one non-blocking epoll call, ~1-2 us), and a server whose tasks
 * spend a few units a tick (W10, W11: two) reaches the 61st tick first.
 */
#define WEFT__UNITS_INTERVAL (2 * WEFT__BUDGET)
#define WEFT__LIFO_CAP 3
#ifndef WEFT__FAIR_BATCH
#define WEFT__FAIR_BATCH 4 /* inject tasks taken at each fairness check (docs/scheduler.md) */
#endif
#define WEFT__CACHE_CLASSES 8       /* cells of 64..512 bytes, by 64 */
#define WEFT__CACHE_MAX 512         /* cells kept per class per worker */
#define WEFT__CHUNK_SIZE (2u << 20) /* slab chunk (one huge page), carved into cells */
#define WEFT__ID_BLOCK 1024
/*
 * How long an idle worker searches before parking. Measured on a 2-vCPU VM
 * (bench/micro_wake, parked mode, p99 of wake-to-run): 0-10 us of search
 * gives 43-115 us, like a bare futex wake; 30 us gives 2.3-2.6 ms, however
 * long the worker then sleeps. Spinning gained nothing measurable on W2.
 */
/*
 * How long a worker may sit in one poll with tasks waiting in its inbox
 * before the driver thread hands the ones that may move to its peers
 * (weft__sched_batch_rescue). Ten timer ticks: a poll that long is already
 * a latency bug of its own; the check costs the driver one wake-up per
 * this interval only while such tasks wait.
 */
#ifndef WEFT__RESCUE_NS
#define WEFT__RESCUE_NS 1000000
#endif
#ifndef WEFT__SPIN_NS
#define WEFT__SPIN_NS 10000
#endif
#define WEFT__STEAL_SINGLE_NS 5000 /* then also steal a peer's lone task */
/* Poller-batch tasks that run this long on average make a worker hand the
 * poller to a parked peer as it leaves it (batch.c, "Help"). */
#define WEFT__LONG_TASK_NS 100000
/* A parked worker trims its coroutine stack pool after this long (worker.c). */
#define WEFT__TRIM_DELAY_NS 50000000
/* A worker with more runnable pinned coroutines than a peer by more than
 * this sends a new coroutine there before it starts (worker.c). */
#define WEFT__PLACE_MARGIN 8

struct weft__sched;

typedef struct weft__owned {
    alignas(64) weft__spin_t lock;
    weft__task_t *head;
    size_t count;
    bool closed;
} weft__owned_t;

/* Free cells of one class shared by all threads (alloc.c). */
typedef struct weft__pool {
    alignas(64) pthread_mutex_t lock;
    weft__task_t *head;
    _Atomic size_t count; /* written under lock; read unlocked as a hint */
} weft__pool_t;

typedef struct weft__worker {
    weft__ring_t ring;
    alignas(64) struct weft__sched *s;
    unsigned index;
    weft__task_t *lifo;
    /* The pinned list (worker.c): a FIFO of slots in pin_buf (a ring of
     * pin_cap, a power of two, or 0), then, only if growing it failed, a
     * list linked through next. */
    weft__task_t **pin_buf;
    uint32_t pin_cap, pin_first, pin_n;
    weft__task_t *pin_head, *pin_tail;
    bool pin_turn; /* the next pick prefers the pinned list */
    /* When a poller batch this worker kept has waited long enough for a
     * peer to be woken to share it (batch.c, "Help"); 0: none pending. */
    int64_t help_at;
    /* The poller batches it is running: since when (0: none) and how many
     * tasks; and the average run time of such a task (batch.c, "Help"). */
    int64_t batch_at, task_ns;
    uint32_t batch_n;
    uint32_t tick;
    uint32_t units; /* budget spent since the last look (WEFT__UNITS_INTERVAL) */
    uint32_t rng;
    int cpu; /* the CPU it binds itself to when it starts, or -1 */
    bool searching;
    int budget;
    weft__task_t *cache[WEFT__CACHE_CLASSES];
    uint32_t cache_n[WEFT__CACHE_CLASSES];
    char *bump, *bump_end; /* the worker's current slab chunk */
    int64_t next_id, id_end;
    int64_t allocs, frees;
    weft__stack_pool_t stacks;
    /* Written only by the owner (load+store, no RMW); read racily. */
    _Atomic uint64_t polls, steals, parks;
    weft__thread_t thread;
    /* Load, as coroutine placement reads it (worker.c, sched_place): a
     * line of its own, since peers read it while the owner works. */
    alignas(64) _Atomic uint32_t npinned; /* pinned list length; owner writes */
    _Atomic uint32_t incoming;            /* coroutines sent here, not yet started */
    alignas(64) ck_stack_t inbox;
    alignas(64) struct ck_ec32 ec;
    _Atomic bool sleeping;
    bool wake_searching;    /* written under idle.lock by the waker */
    _Atomic bool in_poller; /* parked in the poller, not on ec (see park) */
} weft__worker_t;

/*
 * The poller a parked worker may wait in instead of its event count (the
 * I/O driver in src/io, wired by src/runtime; NULL when a thread of its own
 * waits there). At most one thread holds it (try_lock); the holder runs
 * rounds: wait in the poller (until > 0: until an event, the next timer,
 * wake() or `until` (INT64_MAX: no limit of its own); 0: not at all),
 * then hand the woken tasks over through a
 * weft__batch_t begun with the worker. wake() makes a blocked round return;
 * any thread may call it, and a wake with no round blocked makes the next
 * blocking round return at once.
 */
typedef struct weft__poller_ops {
    bool (*try_lock)(void *arg);
    void (*unlock)(void *arg);
    void (*round)(void *arg, struct weft__worker *w, int64_t until);
    void (*wake)(void *arg);
} weft__poller_ops_t;

typedef struct weft__sched_config {
    unsigned workers;
    const char *thread_name;
    void (*on_thread_start)(unsigned, void *);
    void (*on_thread_stop)(unsigned, void *);
    void *hook_arg;
    size_t stack_size;    /* default coroutine stack size */
    unsigned stack_cache; /* pooled stacks per worker beyond the hot ones */
    int64_t help_delay;   /* ns a poller batch runs alone before a peer is woken; 0: at once */
    const unsigned *cpus; /* worker i binds to cpus[i % ncpus]; NULL: unbound */
    unsigned ncpus;
} weft__sched_config_t;

typedef struct weft__sched {
    weft__sched_base_t base;
    unsigned nworkers;
    weft__worker_t *workers;
    weft__owned_t *owned; /* nworkers + 1 shards; the last for foreign spawns */
    weft__inject_t inject;
    weft__idle_t idle;
    weft__pool_t pool[WEFT__CACHE_CLASSES];
    pthread_mutex_t chunks_lock;
    void *chunks; /* every slab chunk, linked through its first word */
    weft__sched_config_t cfg;
    const weft__poller_ops_t *poller; /* set before start, or NULL */
    void *poller_arg;
    char name[12];
    void *user; /* the runtime that owns this scheduler */
    /* Read by every worker on every tick: written only at shutdown. */
    alignas(64) _Atomic bool closed;
    _Atomic bool stop;
    unsigned started; /* threads started */
    uint64_t gen;     /* process-unique, never reused (alloc.c) */
    /* Written by threads outside the runtime on every spawn/free: kept off
     * the line above so those writes do not bounce it between cores. */
    alignas(64) _Atomic int64_t id_next;
    _Atomic int64_t foreign_allocs; /* cells allocated/freed off-worker */
    _Atomic int64_t foreign_frees;
} weft__sched_t;

/* Create (threads not started). 0, -ENOMEM. */
int weft__sched_new(const weft__sched_config_t *cfg, void *user, weft__sched_t **out);
/* Before start: let parked workers wait in this poller (see above). */
void weft__sched_set_poller(weft__sched_t *s, const weft__poller_ops_t *ops, void *arg);
/* Start the worker threads; on failure nothing is left running. */
int weft__sched_start(weft__sched_t *s);
/* Spawn (see weft_spawn). */
int weft__sched_spawn(weft__sched_t *s, const weft_future_vtable_t *vt, const void *state,
                      size_t size, weft__task_t **handle);
/* Shutdown: close, cancel every task, wait for them up to deadline, stop
 * the workers. Returns the stragglers (>= 0). Then the caller detaches
 * what the stragglers left with other modules (the driver's timers) and
 * calls drop_rest, which drops every task still alive (a coroutine
 * without unwinding its stack). */
int weft__sched_shutdown(weft__sched_t *s, int64_t deadline);
void weft__sched_drop_rest(weft__sched_t *s);
/* Cells still allocated (outstanding handles/wakers); valid after shutdown. */
int64_t weft__sched_live_cells(weft__sched_t *s);
void weft__sched_free(weft__sched_t *s);
/*
 * Diagnostics: true if every worker is asleep while a queue still holds a
 * task - a lost wake-up. Racy by nature: callers confirm it persists.
 */
bool weft__sched_stalled(weft__sched_t *s);
/* Per-worker counters (polls, steals, parks), summed; racy reads. */
void weft__sched_counters(weft__sched_t *s, uint64_t *polls, uint64_t *steals, uint64_t *parks);

/* sched_ops.place (task.h): coroutine placement (worker.c). */
bool weft__sched_place(void *sched, weft__task_t *t, uint16_t *credit);

/* The scheduler whose worker is the calling thread, or NULL. */
weft__sched_t *weft__sched_current(void);

static inline void weft__counter_inc(_Atomic uint64_t *c)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + 1,
                          memory_order_relaxed);
}

/* Append t to the list head..tail linked through next. */
static inline void weft__task_list_append(weft__task_t **head, weft__task_t **tail, weft__task_t *t)
{
    t->next = NULL;
    if (*tail)
        (*tail)->next = t;
    else
        *head = t;
    *tail = t;
}

/*
 * Lock-free emptiness peek at an inbox. CK_STACK_ISEMPTY is a plain read,
 * a data race (C11; TSan reports it) against push_upmc's CAS: use an
 * atomic load. Relaxed: the callers that need ordering fence first.
 */
static inline bool weft__inbox_empty(ck_stack_t *st)
{
    return __atomic_load_n(&st->head, __ATOMIC_RELAXED) == NULL;
}

/* alloc.c: task cells. */
weft__task_t *weft__cell_alloc(weft__sched_t *s, weft__worker_t *w, size_t total);
void weft__cell_free(weft__sched_t *s, weft__task_t *t);
void weft__alloc_init(weft__sched_t *s);
void weft__alloc_destroy(weft__sched_t *s);

/* ---- shared between the sched files ---------------------------------------- */

weft__worker_t *weft__worker_current(void);
void weft__worker_set_current(weft__worker_t *w);
void *weft__worker_main(void *arg);
void weft__sched_schedule(void *sched, weft__task_t *t, bool yield);
/* Any thread: queue t on worker w's inbox, unparking w if it sleeps. */
void weft__sched_push_inbox(weft__sched_t *s, weft__worker_t *w, weft__task_t *t);
/* Wake a sleeping worker if nobody searches (remote submitters). */
void weft__sched_notify_parked(weft__sched_t *s);
/* The same, after a push to the caller's own ring (no fence needed). */
void weft__sched_notify_parked_local(weft__sched_t *s);
void weft__sched_unpark_worker(weft__sched_t *s, weft__worker_t *w);
bool weft__sched_has_work(weft__sched_t *s);
void weft__worker_push_back(weft__worker_t *w, weft__task_t *t);
/* After the workers stopped: pop w's pinned list (shutdown sweep). */
weft__task_t *weft__worker_pinned_take(weft__worker_t *w);
/* On w's own thread: queue t locally (LIFO slot unless yield). */
void weft__worker_schedule(weft__worker_t *w, weft__task_t *t, bool yield);

/*
 * Batched delivery for the poller (the driver): between begin and end,
 * tasks the calling thread wakes for this scheduler are collected instead
 * of being queued one by one. From a thread outside the workers (`self`
 * NULL) they go per target worker (the one that last polled the task) or
 * to the inject queue; end queues each worker's share with one CAS and
 * unparks each target at most once. On a worker (`self`, the poller's
 * holder), every task that may run there stays with it: end unparks self
 * if it was parked, queues them on its own ring and wakes a peer if there
 * are more than one. One batch per thread at a time.
 */
typedef struct weft__batch_list {
    ck_stack_entry_t *first, *last;
} weft__batch_list_t;
/* batch.c (the calling thread's batch, if it holds the poller) */
extern _Thread_local struct weft__batch *weft__batch_current;
void weft__sched_batch_add(struct weft__batch *b, weft__task_t *t);
/* A polling worker that kept a round's tasks: ran dry (fold the batch's
 * time per task into task_ns); its help deadline passed (wake a peer if
 * its ring still holds work). */
void weft__worker_batch_done(weft__worker_t *w);
void weft__worker_help_check(weft__worker_t *w);

/* A worker whose inbox received a batch while it was busy: its polls
 * count then, and when (at == 0: no mark). Driver thread only. */
typedef struct weft__batch_mark {
    uint64_t polls;
    int64_t at;
} weft__batch_mark_t;
typedef struct weft__batch {
    weft__sched_t *s;
    weft__worker_t *self;
    weft__batch_list_t *per; /* one per worker */
    weft__task_t *inj_head, *inj_tail;
    size_t inj_n;
    weft__task_t *self_head, *self_tail;
    size_t self_n;
    weft__batch_mark_t *marks; /* one per worker */
    unsigned nmarked;
    _Atomic uint64_t rescued; /* tasks moved out of stuck workers' inboxes (stats) */
} weft__batch_t;
int weft__sched_batch_init(weft__sched_t *s, weft__batch_t *b);
void weft__sched_batch_destroy(weft__batch_t *b);
void weft__sched_batch_begin(weft__batch_t *b, weft__worker_t *self);
/* Returns how many tasks stayed with `self` (0 without self). */
size_t weft__sched_batch_end(weft__batch_t *b);
/*
 * The driver thread, before each round: a worker that received a batch in
 * its inbox while busy and has not started another poll WEFT__RESCUE_NS
 * later is stuck in one long poll; its inbox's tasks that may run
 * elsewhere go to the inject queue and a parked peer is woken. Returns
 * when the next check is due (INT64_MAX: no mark left), which bounds the
 * round's wait.
 */
int64_t weft__sched_batch_rescue(weft__batch_t *b);

/* idle.c */
bool weft__idle_to_searching(weft__sched_t *s, weft__worker_t *w);
bool weft__idle_from_searching(weft__sched_t *s, weft__worker_t *w);
bool weft__idle_to_parked(weft__sched_t *s, weft__worker_t *w);
void weft__idle_unpark_self(weft__sched_t *s, weft__worker_t *w);

#endif /* WEFT_SCHED_SCHED_H */

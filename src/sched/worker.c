/*
 * worker.c - the worker loop: find a task (LIFO slot, ring, inbox, inject,
 * steal), run it, and park when there is nothing to do: in the I/O poller
 * if the scheduler has one and nobody holds it (the worker then runs what
 * the poller wakes itself), else on the worker's event count.
 *
 * One iteration ("tick"): every WEFT__GLOBAL_INTERVAL ticks, or sooner once
 * the ticks spent WEFT__UNITS_INTERVAL budget units, the poller is
 * looked at without blocking (if free), and the inject queue and the inbox
 * are checked first, so remote work cannot starve behind a busy ring. A polled task's LIFO
 * successor runs in the same tick with the same budget, at most WEFT__LIFO_CAP times; then it goes
 * to the back of the ring. Yields and wakes during a poll go to the back too.
 *
 * Fairness (docs/scheduler.md states the bound): a woken task is in the
 * LIFO slot (runs within LIFO_CAP polls), in a FIFO ring (each entry ahead
 * polled once, plus LIFO_CAP successors), in the inbox (drained at each
 * look, or when the ring runs dry) or in the inject queue, from which at
 * each look a batch is taken so that all runnable tasks rotate.
 *
 * The calling thread's worker is kept in a thread-local read only through
 * noinline accessors (no TLS address may be cached across a coroutine
 * switch once coroutines exist).
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "coro/coro.h"
#include "sched/sched.h"

static _Thread_local weft__worker_t *current_worker;

#ifdef WEFT__TSAN
/* Pull src/util/tsan.c (the ck_stack suppressions) out of a static libweft:
 * its own symbol, since libtsan already satisfies the suppressions hook. */
extern const int weft__tsan_anchor;
__attribute__((used)) static const int *const keep_tsan_suppressions = &weft__tsan_anchor;
#endif

__attribute__((noinline)) weft__worker_t *weft__worker_current(void)
{
    return current_worker;
}

__attribute__((noinline)) void weft__worker_set_current(weft__worker_t *w)
{
    current_worker = w;
}

weft__sched_t *weft__sched_current(void)
{
    weft__worker_t *w = weft__worker_current();
    return w ? w->s : NULL;
}

/* ---- queueing ---------------------------------------------------------------- */

static void link_batch(weft__task_t **v, size_t n)
{
    for (size_t i = 0; i + 1 < n; i++)
        v[i]->next = v[i + 1];
}

/*
 * The pinned list: owner-only FIFO of the started coroutines that are
 * runnable here. Slots in a growable array ring rather than a list
 * through the cells: a yield then writes nothing into any task's cell
 * (through t->next it wrote two), and cells of neighbouring coroutines
 * are often another worker's (see coro.h, weft__stack_t). Should growing
 * fail, the overflow is linked through t->next behind the ring, and moves
 * into the ring as it empties, in order.
 */
#define PIN_CAP_MIN 64

static bool pinned_grow(weft__worker_t *w)
{
    uint32_t cap = w->pin_cap ? w->pin_cap * 2 : PIN_CAP_MIN;
    if (cap == 0)
        return false;
    weft__task_t **buf = malloc(sizeof *buf * cap);
    if (!buf)
        return false;
    for (uint32_t i = 0; i < w->pin_n; i++)
        buf[i] = w->pin_buf[(w->pin_first + i) & (w->pin_cap - 1)];
    free(w->pin_buf);
    w->pin_buf = buf;
    w->pin_cap = cap;
    w->pin_first = 0;
    return true;
}

static inline bool pinned_empty(const weft__worker_t *w)
{
    return !w->pin_n && !w->pin_head;
}

static void pinned_push(weft__worker_t *w, weft__task_t *t)
{
    if (!w->pin_head && (w->pin_n < w->pin_cap || pinned_grow(w))) {
        w->pin_buf[(w->pin_first + w->pin_n) & (w->pin_cap - 1)] = t;
        w->pin_n++;
    } else {
        weft__task_list_append(&w->pin_head, &w->pin_tail, t);
    }
    atomic_store_explicit(&w->npinned, atomic_load_explicit(&w->npinned, memory_order_relaxed) + 1,
                          memory_order_relaxed);
}

static weft__task_t *pop_overflow(weft__worker_t *w)
{
    weft__task_t *t = w->pin_head;
    w->pin_head = t->next;
    if (!w->pin_head)
        w->pin_tail = NULL;
    t->next = NULL;
    return t;
}

static weft__task_t *pinned_pop(weft__worker_t *w)
{
    weft__task_t *t;
    if (w->pin_n) {
        t = w->pin_buf[w->pin_first];
        w->pin_first = (w->pin_first + 1) & (w->pin_cap - 1);
        w->pin_n--;
        if (w->pin_head) /* the oldest overflow entry follows the ring's newest */
            w->pin_buf[(w->pin_first + w->pin_n++) & (w->pin_cap - 1)] = pop_overflow(w);
    } else if (w->pin_head) {
        t = pop_overflow(w);
    } else {
        return NULL;
    }
    atomic_store_explicit(&w->npinned, atomic_load_explicit(&w->npinned, memory_order_relaxed) - 1,
                          memory_order_relaxed);
    return t;
}

/* Owner: push t to the back of the ring (moving half to inject when full),
 * or of the pinned list if t must stay here. */
void weft__worker_push_back(weft__worker_t *w, weft__task_t *t)
{
    if (t->pinned) {
        pinned_push(w, t);
        return;
    }
    if (weft__ring_push(&w->ring, t))
        return;
    void *batch[WEFT__RING_CAP / 2 + 1];
    unsigned n = weft__ring_claim_half(&w->ring, batch);
    if (n == 0) {
        /* A thief is freeing room, or already did: retry once, else send
         * just this task to the inject queue. */
        if (!weft__ring_push(&w->ring, t))
            weft__inject_push(&w->s->inject, t);
        return;
    }
    batch[n++] = t;
    link_batch((weft__task_t **)batch, n);
    weft__inject_push_batch(&w->s->inject, batch[0], batch[n - 1], n);
}

/* Move the inbox into the ring (FIFO order); returns how many moved. */
static unsigned drain_inbox(weft__worker_t *w)
{
    /* Unlocked emptiness peek; batch_pop_upmc's atomic swap acquires the
     * pushers' entries (ck pairs it with push_upmc's CAS). */
    if (weft__inbox_empty(&w->inbox))
        return 0;
    ck_stack_entry_t *e = ck_stack_batch_pop_upmc(&w->inbox);
    WEFT__TSAN_ACQUIRE(&w->inbox);
    /* The stack is LIFO: reverse to restore arrival order. */
    ck_stack_entry_t *rev = NULL;
    while (e) {
        ck_stack_entry_t *nx = e->next;
        e->next = rev;
        rev = e;
        e = nx;
    }
    unsigned n = 0;
    while (rev) {
        ck_stack_entry_t *nx = rev->next;
        weft__task_t *t = weft__container_of(rev, weft__task_t, inbox_entry);
        t->next = NULL;
        weft__worker_push_back(w, t);
        rev = nx;
        n++;
    }
    if (n > 1)
        weft__sched_notify_parked_local(w->s); /* more than we run next */
    return n;
}

/* Shutdown, workers stopped: take the next task of w's pinned list. */
weft__task_t *weft__worker_pinned_take(weft__worker_t *w)
{
    return pinned_pop(w);
}

/* Any thread: hand t to worker w specifically. */
void weft__sched_push_inbox(weft__sched_t *s, weft__worker_t *w, weft__task_t *t)
{
    WEFT__TSAN_RELEASE(&w->inbox);
    ck_stack_push_upmc(&w->inbox, &t->inbox_entry);
    /* seq_cst fence: orders the push before reading `sleeping`; pairs with
     * the parker's seq_cst store of `sleeping` followed by its fence and
     * inbox check (idle.c). One of us sees the other. */
    atomic_thread_fence(memory_order_seq_cst);
    if (atomic_load_explicit(&w->sleeping, memory_order_relaxed))
        weft__sched_unpark_worker(s, w);
}

void weft__worker_schedule(weft__worker_t *w, weft__task_t *t, bool yield)
{
    if (!yield) {
        weft__task_t *prev = w->lifo;
        w->lifo = t;
        if (!prev)
            return; /* no notify: the worker runs it next */
        t = prev;
    }
    /* Read before the push: once in the ring, a thief may run t. */
    bool pinned = t->pinned;
    weft__worker_push_back(w, t);
    if (!pinned)
        weft__sched_notify_parked_local(w->s); /* a peer may take it */
}

void weft__sched_schedule(void *sched, weft__task_t *t, bool yield)
{
    weft__sched_t *s = sched;
    weft__batch_t *b = weft__batch_current;
    if (b && b->s == s) {
        weft__sched_batch_add(b, t); /* the poller delivers a round's wakes at once */
        return;
    }
    weft__worker_t *w = weft__worker_current();
    if (w && w->s == s && (!t->pinned || t->worker == w->index)) {
        weft__worker_schedule(w, t, yield);
        return;
    }
    /* From outside this runtime's workers: back to the worker that last
     * polled it (its data is likely in that core's cache), else inject. */
    if (t->worker < s->nworkers) {
        weft__sched_push_inbox(s, &s->workers[t->worker], t);
        return;
    }
    weft__inject_push(&s->inject, t);
    weft__sched_notify_parked(s);
}

/*
 * Coroutine placement. A coroutine stays on the worker that first runs it,
 * so where it starts decides the load for its whole life: work stealing
 * cannot even it out later (an idle worker finds nothing it may take while
 * a peer has a long pinned list). So before a coroutine first runs on a
 * worker that already has more than WEFT__PLACE_MARGIN runnable pinned
 * coroutines, it goes to the least loaded peer (runnable pinned plus the
 * ones sent there and not started yet) if that one has at least
 * WEFT__PLACE_MARGIN fewer. It is sent at most once, to the peer's inbox,
 * still holding RUNNING (as a yield), and starts wherever it is next run
 * (a thief may still take it from the peer's ring first).
 *
 * Cost: a relaxed load of the worker's own count on each coroutine start;
 * the peers' lines are read only when that count is over the margin.
 * Measured on W3 (1,000 coroutines x 1,000 yields, 2 workers): runs where
 * one worker had started 600-825 of them took 48-63 ms instead of ~44.
 */
bool weft__sched_place(void *sched, weft__task_t *t, uint16_t *credit)
{
    weft__sched_t *s = sched;
    if (*credit) {
        /* Relaxed: a load hint, like npinned. */
        atomic_fetch_sub_explicit(&s->workers[*credit - 1].incoming, 1, memory_order_relaxed);
        *credit = 0;
        return false;
    }
    weft__worker_t *w = weft__worker_current();
    if (!w || w->s != s || s->nworkers < 2)
        return false;
    uint32_t mine = atomic_load_explicit(&w->npinned, memory_order_relaxed);
    if (mine <= WEFT__PLACE_MARGIN ||
        (atomic_load_explicit(&t->state, memory_order_relaxed) & WEFT__CANCELLED))
        return false;
    weft__worker_t *best = NULL;
    uint32_t best_load = mine - WEFT__PLACE_MARGIN;
    for (unsigned i = 0; i < s->nworkers; i++) {
        weft__worker_t *v = &s->workers[i];
        if (v == w)
            continue;
        uint32_t load = atomic_load_explicit(&v->npinned, memory_order_relaxed) +
                        atomic_load_explicit(&v->incoming, memory_order_relaxed);
        if (load < best_load) {
            best = v;
            best_load = load;
        }
    }
    if (!best)
        return false;
    atomic_fetch_add_explicit(&best->incoming, 1, memory_order_relaxed);
    *credit = (uint16_t)(best->index + 1);
    t->yield_held = 1; /* the inbox push publishes it (push_inbox) */
    weft__sched_push_inbox(s, best, t);
    return true;
}

bool weft__sched_has_work(weft__sched_t *s)
{
    if (weft__inject_len(&s->inject) > 0)
        return true;
    for (unsigned i = 0; i < s->nworkers; i++) {
        weft__worker_t *w = &s->workers[i];
        if (!weft__ring_is_empty(&w->ring) || !weft__inbox_empty(&w->inbox) ||
            atomic_load_explicit(&w->npinned, memory_order_relaxed))
            return true;
    }
    return false;
}

/* ---- finding work -------------------------------------------------------------- */

static weft__task_t *pop_inject(weft__worker_t *w, size_t cap)
{
    weft__sched_t *s = w->s;
    size_t len = weft__inject_len(&s->inject);
    if (len == 0)
        return NULL;
    size_t want = len / s->nworkers + 1;
    if (want > cap)
        want = cap;
    unsigned room = weft__ring_remaining(&w->ring);
    if (want > room + 1)
        want = room + 1;
    if (want > WEFT__RING_CAP / 2)
        want = WEFT__RING_CAP / 2;
    weft__task_t *batch[WEFT__RING_CAP / 2];
    size_t n = weft__inject_pop_n(&s->inject, batch, want);
    if (n == 0)
        return NULL;
    if (n > 1) {
        /* `want` fits the free room (only we push; thieves only add room),
         * but never drop a task if that reasoning is ever broken. */
        unsigned pushed =
            weft__ring_push_batch(&w->ring, (void *const *)&batch[1], (unsigned)(n - 1));
        for (size_t i = 1 + pushed; i < n; i++)
            weft__worker_push_back(w, batch[i]);
    }
    return batch[0];
}

/*
 * A busy worker looks at the poller at each look (next_task) without
 * blocking, if nobody holds it: when every worker is busy, no one is
 * parked in it, and I/O events and due timers would otherwise wait for
 * the next worker to run out of work.
 */
static void poll_nonblocking(weft__worker_t *w)
{
    weft__sched_t *s = w->s;
    if (s->poller && s->poller->try_lock(s->poller_arg)) {
        s->poller->round(s->poller_arg, w, 0);
        s->poller->unlock(s->poller_arg);
    }
}

static weft__task_t *next_task(weft__worker_t *w)
{
    weft__task_t *t;
    if (w->tick % WEFT__GLOBAL_INTERVAL == 0 || w->units >= WEFT__UNITS_INTERVAL) {
        w->units = 0;
        poll_nonblocking(w);
        /* Remote work first, and a few tasks of it: taking one per
         * interval lets the ~128 tasks cycling through a busy ring take 61
         * polls for every one an inject task gets; taking a full batch
         * makes every task migrate through the inject list (cold cells,
         * a contended lock). WEFT__FAIR_BATCH is the measured middle
         * (docs/scheduler.md, "Fairness guarantee"). */
        drain_inbox(w);
        if ((t = pop_inject(w, WEFT__FAIR_BATCH)))
            return t;
    }
    if ((t = w->lifo)) {
        w->lifo = NULL;
        return t;
    }
    if (!pinned_empty(w)) {
        /* Alternate with the ring: each gets at least every other pick. */
        w->pin_turn = !w->pin_turn;
        if (w->pin_turn || weft__ring_is_empty(&w->ring))
            return pinned_pop(w);
    }
    if ((t = weft__ring_pop(&w->ring)))
        return t;
    if (drain_inbox(w) && ((t = weft__ring_pop(&w->ring)) || (t = pinned_pop(w))))
        return t;
    return pop_inject(w, WEFT__RING_CAP / 2);
}

/*
 * One pass over the peers, then inject and our inbox. A ring holding a
 * single task is left alone unless `take_single`: that task is usually a
 * hand-off its owner is about to run (a chain of spawns, a ping-pong that
 * hit the LIFO cap), and stealing it only moves its cache lines to another
 * core. Searchers allow it after WEFT__STEAL_SINGLE_NS (Go waits 3 us
 * before stealing a peer's runnext for the same reason).
 */
static weft__task_t *steal_once(weft__worker_t *w, bool take_single)
{
    weft__sched_t *s = w->s;
    unsigned n = s->nworkers;
    unsigned start = weft__rng_next(&w->rng) % n;
    for (unsigned i = 0; i < n; i++) {
        weft__worker_t *v = &s->workers[(start + i) % n];
        if (v == w)
            continue;
        if (!take_single && weft__ring_len(&v->ring) < 2)
            continue;
        weft__task_t *t = weft__ring_steal_into(&v->ring, &w->ring);
        if (t) {
            weft__counter_inc(&w->steals);
            return t;
        }
    }
    weft__task_t *t = pop_inject(w, WEFT__RING_CAP / 2);
    if (!t && drain_inbox(w) && !(t = weft__ring_pop(&w->ring)))
        t = pinned_pop(w);
    return t;
}

/*
 * Searching: steal, spinning briefly before giving up, but only while a
 * peer is awake: a peer that runs tasks may queue some for us, while with
 * every peer parked new work can come only from the poller (park waits
 * there if it is free, and an event ends that wait at once) or from
 * outside the workers (which wakes a parked worker). Spinning alone burnt
 * 6% of a busy HTTP server's CPU (W11) for nothing: each time its one
 * worker ran dry it spun 10 us before it went to epoll.
 */
static weft__task_t *steal_work(weft__worker_t *w)
{
    if (!weft__idle_to_searching(w->s, w))
        return NULL;
    int64_t start = 0, now = 0;
    for (unsigned round = 0;; round++) {
        weft__task_t *t = steal_once(w, now - start >= WEFT__STEAL_SINGLE_NS);
        if (t)
            return t;
        if (atomic_load_explicit(&w->s->stop, memory_order_relaxed))
            return NULL;
        if (weft__idle_alone(&w->s->idle))
            return NULL; /* nobody to steal from: park (see above) */
        now = weft__time_now_ns();
        if (round == 0)
            start = now;
        if (now - start >= WEFT__SPIN_NS)
            return NULL;
        /* Few pauses per round: a pause costs up to ~140 cycles, and in a
         * VM a long pause loop can make the hypervisor deschedule the
         * vCPU (pause-loop exiting). */
        for (int i = 0; i < 4; i++)
            weft__cpu_relax();
    }
}

/* ---- running -------------------------------------------------------------------- */

/*
 * Poll one task. Inlined into weft__worker_main with run_task, so that a
 * coroutine's switch is made from the worker loop's own frame: after the
 * coroutine switches back, nothing returns through frames the switch
 * crossed (each such return misses the return-stack predictor; task.h).
 */
static inline __attribute__((always_inline)) void poll_one(weft__worker_t *w, weft__task_t *t)
{
    weft__run_t run;
    weft__counter_inc(&w->polls);
    if (weft__task_run_start(t, &w->budget, (uint16_t)w->index, &run)) {
        weft__coro_switch_in(&run);
        weft__task_run_end(t, &run);
    }
}

static inline __attribute__((always_inline)) void run_task(weft__worker_t *w, weft__task_t *t)
{
    if (w->searching && weft__idle_from_searching(w->s, w))
        weft__sched_notify_parked(w->s); /* last searcher: wake a successor */
    w->budget = WEFT__BUDGET;
    poll_one(w, t);
    for (unsigned lifo_polls = 0; (t = w->lifo) != NULL;) {
        w->lifo = NULL;
        if (++lifo_polls > WEFT__LIFO_CAP || w->budget <= 0) {
            /* To the back of the ring, without waking a peer: this worker
             * runs it soon itself, and one task is no reason to move. */
            weft__worker_push_back(w, t);
            return;
        }
        poll_one(w, t);
    }
}

/* ---- parking -------------------------------------------------------------------- */

/*
 * Parked (on the sleeper list): wait in the poller instead of on ec, if
 * it is free. Handshake with idle.c's wake_worker: we store in_poller,
 * fence, then read `sleeping`; the waker clears `sleeping`, fences, then
 * reads in_poller. Either we see the wake and poll without blocking, or
 * the waker sees us in the poller and wakes it (a wake that comes before
 * the wait makes the wait return at once). A round that wakes tasks takes
 * us off the sleeper list itself (weft__sched_batch_end). Returns false if
 * the poller is held by another thread or absent.
 */
static bool park_in_poller(weft__worker_t *w, int64_t until)
{
    weft__sched_t *s = w->s;
    if (!s->poller || !s->poller->try_lock(s->poller_arg))
        return false;
    /* seq_cst store and fence: see above; pairs with wake_worker's fence. */
    atomic_store_explicit(&w->in_poller, true, memory_order_seq_cst);
    atomic_thread_fence(memory_order_seq_cst);
    bool block = atomic_load_explicit(&w->sleeping, memory_order_seq_cst) &&
                 weft__inbox_empty(&w->inbox) &&
                 !atomic_load_explicit(&s->stop, memory_order_seq_cst);
    s->poller->round(s->poller_arg, w, block ? until : 0);
    /* Relaxed: the wake it would pair with is harmless if late (a spurious
     * poller wake-up, absorbed by the next round). */
    atomic_store_explicit(&w->in_poller, false, memory_order_relaxed);
    s->poller->unlock(s->poller_arg);
    return true;
}

/*
 * The stack pool is trimmed (coro/stack.c) once the worker has stayed
 * parked WEFT__TRIM_DELAY_NS: its system calls (and the TLB shootdowns
 * they send to every other thread of the process) then cost nobody
 * anything, where trimming at every park cost a burst of coroutines a
 * few milliseconds each time a worker briefly ran dry (a join waiting for
 * the last of 1,000 coroutines waited for 700 munmaps first).
 */
static int64_t trim_deadline(const weft__worker_t *w)
{
    return w->stacks.nhot > WEFT__STACK_HOT ? weft__time_now_ns() + WEFT__TRIM_DELAY_NS : INT64_MAX;
}

static void park(weft__worker_t *w)
{
    weft__sched_t *s = w->s;
    weft__counter_inc(&w->parks);
    weft__worker_batch_done(w);
    if (weft__idle_to_parked(s, w) && weft__sched_has_work(s))
        weft__sched_notify_parked(s); /* we were the last searcher */
    const struct ck_ec_mode *mode = weft__ec_mode();
    int64_t trim_at = trim_deadline(w);
    for (;;) {
        /* seq_cst: pairs with idle.c's seq_cst stores of `sleeping`. */
        if (!atomic_load_explicit(&w->sleeping, memory_order_seq_cst))
            break;
        uint32_t v = ck_ec32_value(&w->ec);
        /* Read the counter before the checks: a push or stop after them
         * increments it (ck_ec32_inc in unpark_worker), so the wait below
         * returns. seq_cst on `stop` pairs with stop_workers' store. */
        if (!weft__inbox_empty(&w->inbox) || atomic_load_explicit(&s->stop, memory_order_seq_cst)) {
            weft__idle_unpark_self(s, w);
            break;
        }
        if (!atomic_load_explicit(&w->sleeping, memory_order_seq_cst))
            break;
        if (trim_at != INT64_MAX && weft__time_now_ns() >= trim_at) {
            /* Still parked: a wake meanwhile is seen by the next pass
             * (the counter moved since v was read). */
            weft__stack_pool_trim(&w->stacks);
            trim_at = INT64_MAX;
            continue;
        }
        if (park_in_poller(w, trim_at))
            continue;
        if (trim_at == INT64_MAX) {
            ck_ec32_wait(&w->ec, mode, v, NULL);
        } else {
            /* ck may return up to a second late (platform/ec.c): the trim
             * is then late, which is harmless. */
            struct timespec ts = {(time_t)(trim_at / 1000000000), (long)(trim_at % 1000000000)};
            ck_ec32_wait(&w->ec, mode, v, &ts);
        }
    }
    /* Set by the waker before it cleared `sleeping` (under idle.lock). */
    w->searching = w->wake_searching;
}

void *weft__worker_main(void *arg)
{
    weft__worker_t *w = arg;
    weft__sched_t *s = w->s;
    weft__worker_set_current(w);
    weft__task_mark_runtime_thread(true);
    if (w->cpu >= 0)
        (void)weft__thread_pin((unsigned)w->cpu); /* validated at creation; best effort now */
    /* Without an alternate signal stack an overflow is still caught by the
     * guard page, only without the message: not worth failing the start. */
    (void)weft__coro_thread_enter(&w->stacks);
    if (s->poller)
        (void)weft__thread_timer_slack(WEFT__POLL_TIMER_SLACK_NS); /* it may wait there */
    if (s->cfg.on_thread_start)
        s->cfg.on_thread_start(w->index, s->cfg.hook_arg);
    /* Acquire: pairs with the store of `stop` in stop_workers. */
    while (!atomic_load_explicit(&s->stop, memory_order_acquire)) {
        w->tick++;
        weft__task_t *t = next_task(w);
        if (!t)
            t = steal_work(w);
        if (t) {
            if (w->help_at)
                weft__worker_help_check(w);
            run_task(w, t);
            w->units += (uint32_t)(WEFT__BUDGET - w->budget);
            continue;
        }
        w->help_at = 0;
        park(w);
    }
    if (w->searching)
        weft__idle_from_searching(s, w);
    if (s->cfg.on_thread_stop)
        s->cfg.on_thread_stop(w->index, s->cfg.hook_arg);
    weft__coro_thread_leave();
    weft__task_mark_runtime_thread(false);
    weft__worker_set_current(NULL);
    return NULL;
}

bool weft__sched_stalled(weft__sched_t *s)
{
    /* seq_cst loads and fence: a diagnostic snapshot ordered like the
     * parkers' own store-then-check, so "all asleep, work queued" is not
     * an artefact of reordering the two reads. */
    for (unsigned i = 0; i < s->nworkers; i++)
        if (!atomic_load_explicit(&s->workers[i].sleeping, memory_order_seq_cst))
            return false;
    atomic_thread_fence(memory_order_seq_cst);
    return weft__sched_has_work(s);
}

void weft__sched_counters(weft__sched_t *s, uint64_t *polls, uint64_t *steals, uint64_t *parks)
{
    uint64_t p = 0, st = 0, pk = 0;
    for (unsigned i = 0; i < s->nworkers; i++) {
        p += atomic_load_explicit(&s->workers[i].polls, memory_order_relaxed);
        st += atomic_load_explicit(&s->workers[i].steals, memory_order_relaxed);
        pk += atomic_load_explicit(&s->workers[i].parks, memory_order_relaxed);
    }
    *polls = p;
    *steals = st;
    *parks = pk;
}

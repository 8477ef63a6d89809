/*
 * worker.c - the worker loop: find a task (LIFO slot, ring, inbox, inject,
 * steal), run it, and park when there is nothing to do: in the I/O poller
 * if the scheduler has one and nobody holds it (the worker then runs what
 * the poller wakes itself), else on the worker's event count.
 *
 * One iteration ("tick"): every WEFT__GLOBAL_INTERVAL ticks the poller is
 * looked at without blocking (if free), and the inject queue and the inbox
 * are checked first, so remote work cannot starve behind a busy ring. A polled task's LIFO
 * successor runs in the same tick with the same budget, at most WEFT__LIFO_CAP times; then it goes
 * to the back of the ring. Yields and wakes during a poll go to the back too.
 *
 * Fairness (docs/scheduler.md states the bound): a woken task is in the
 * LIFO slot (runs within LIFO_CAP polls), in a FIFO ring (each entry ahead
 * polled once, plus LIFO_CAP successors), in the inbox (drained every 61
 * ticks or when the ring runs dry) or in the inject queue, from which every
 * 61 ticks a batch is taken so that all runnable tasks rotate.
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

/* Append t to the list head..tail linked through next. */
static inline void list_append(weft__task_t **head, weft__task_t **tail, weft__task_t *t)
{
    t->next = NULL;
    if (*tail)
        (*tail)->next = t;
    else
        *head = t;
    *tail = t;
}

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
        list_append(&w->pin_head, &w->pin_tail, t);
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

/*
 * Lock-free emptiness peek at an inbox. CK_STACK_ISEMPTY is a plain read,
 * a data race (C11; TSan reports it) against push_upmc's CAS: use an
 * atomic load. Relaxed: the callers that need ordering fence first.
 */
static inline bool inbox_empty(ck_stack_t *st)
{
    return __atomic_load_n(&st->head, __ATOMIC_RELAXED) == NULL;
}

/* Move the inbox into the ring (FIFO order); returns how many moved. */
static unsigned drain_inbox(weft__worker_t *w)
{
    /* Unlocked emptiness peek; batch_pop_upmc's atomic swap acquires the
     * pushers' entries (ck pairs it with push_upmc's CAS). */
    if (inbox_empty(&w->inbox))
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

/*
 * Help. A worker that keeps a poller round's tasks (batch_end below) does
 * not wake a peer for them at once, as Tokio and Go do: it asks for help
 * only if its ring still holds work help_delay after the round
 * (help_check, from the worker loop). A round's tasks are usually short
 * (a read and a write): waking a peer for them costs a futex wake, the
 * peer's wake-up and its later park, and moves half the connections'
 * data to another core, for work that is done before the peer is up.
 * Deferred, the help comes when a backlog persists, which is when a peer
 * pays (measured on W10/W11, docs/io.md "Help"). The price: a task queued
 * behind a long poll waits for that poll to end, since the check runs
 * between polls.
 */
static void help_later(weft__worker_t *w, int64_t now)
{
    int64_t delay = w->s->cfg.help_delay;
    if (delay == 0)
        weft__sched_notify_parked_local(w->s);
    else if (!w->help_at)
        w->help_at = now + delay;
}

/*
 * A worker leaving the poller to run a round's tasks leaves nobody polling
 * until it looks again (its 61-tick check, or its next park), and a peer
 * parked on its event count does not notice the poller is free. For short
 * tasks that is the cheap choice (a server's request: "Help" above). For
 * long ones it serialises a burst: the round usually returns its first
 * event alone, and the rest wait in the kernel for that task to end
 * (bench/micro_burst: 8 x 500 us took 2.9-4.1 ms on two workers, as on
 * one). So a worker measures its poller tasks (the time from taking a
 * round's tasks to running dry, per task, averaged over rounds), and when
 * they have been taking WEFT__LONG_TASK_NS or more, it wakes a parked peer
 * as it leaves the poller: that peer shares the queue or, finding nothing
 * to take, parks in the free poller and catches the next events. One
 * wake-up per round, paid only by workloads whose tasks take 100 us each.
 */
static void batch_started(weft__worker_t *w, size_t n)
{
    int64_t now = weft__time_now_ns();
    if (!w->batch_at) {
        w->batch_at = now;
        w->batch_n = 0;
    }
    w->batch_n += (uint32_t)n;
    if (w->task_ns >= WEFT__LONG_TASK_NS)
        weft__sched_notify_parked_local(w->s);
    else if (n > 1) /* more than we run next: a peer may take some */
        help_later(w, now);
}

/* The worker ran dry: fold the batch's time per task into the average
 * (weight 1/4, so a change of workload shows within a few rounds). */
static void batch_done(weft__worker_t *w)
{
    if (!w->batch_at)
        return;
    int64_t per = (weft__time_now_ns() - w->batch_at) / (int64_t)w->batch_n;
    w->task_ns += (per - w->task_ns) / 4;
    w->batch_at = 0;
}

static inline void help_check(weft__worker_t *w)
{
    if (weft__ring_is_empty(&w->ring)) {
        w->help_at = 0;                             /* caught up: nothing for a peer to take */
    } else if (weft__time_now_ns() >= w->help_at) { /* ~26 ns, only while a backlog lasts */
        w->help_at = 0;
        weft__sched_notify_parked_local(w->s);
    }
}

/* ---- batched delivery from a foreign thread (the driver) ----------------- */

static _Thread_local weft__batch_t *tl_batch;

int weft__sched_batch_init(weft__sched_t *s, weft__batch_t *b)
{
    memset(b, 0, sizeof *b);
    b->s = s;
    b->per = calloc(s->nworkers, sizeof *b->per);
    b->marks = calloc(s->nworkers, sizeof *b->marks);
    if (b->per && b->marks)
        return 0;
    weft__sched_batch_destroy(b);
    return -ENOMEM;
}

void weft__sched_batch_destroy(weft__batch_t *b)
{
    free(b->per);
    free(b->marks);
    b->per = NULL;
    b->marks = NULL;
}

void weft__sched_batch_begin(weft__batch_t *b, weft__worker_t *self)
{
    b->self = self;
    tl_batch = b;
}

static void batch_add(weft__batch_t *b, weft__task_t *t)
{
    weft__worker_t *self = b->self;
    if (self && (!t->pinned || t->worker == self->index)) {
        list_append(&b->self_head, &b->self_tail, t);
        b->self_n++;
    } else if (t->worker < b->s->nworkers) {
        /* Newest first: the owner reverses what it pops (drain_inbox), so
         * the batch runs in the order it was woken. */
        weft__batch_list_t *l = &b->per[t->worker];
        t->inbox_entry.next = l->first;
        l->first = &t->inbox_entry;
        if (!l->last)
            l->last = &t->inbox_entry;
    } else {
        list_append(&b->inj_head, &b->inj_tail, t);
        b->inj_n++;
    }
}

/* Push a chain first..last onto w's inbox with one CAS. */
static void inbox_push_chain(weft__worker_t *w, ck_stack_entry_t *first, ck_stack_entry_t *last)
{
    WEFT__TSAN_RELEASE(&w->inbox);
    ck_stack_entry_t *head = ck_pr_load_ptr(&w->inbox.head);
    for (;;) {
        last->next = head;
        /* Store fence, as ck_stack_push_upmc has: ck's CAS carries no
         * release order on every target (aarch64's does not), and the
         * chain's links and tasks must be visible before its head. Pairs
         * with the fas + load fence of the consumers' batch pop (the owner's
         * drain_inbox, the driver's rescue_inbox). Found by review; x86
         * and TSan builds cannot show it. */
        ck_pr_fence_store();
        if (ck_pr_cas_ptr_value(&w->inbox.head, head, first, &head))
            break;
    }
}

static void mark_busy(weft__batch_t *b, unsigned i)
{
    weft__batch_mark_t *m = &b->marks[i];
    /* Relaxed: a progress hint; a stale value only delays the rescue. */
    m->polls = atomic_load_explicit(&b->s->workers[i].polls, memory_order_relaxed);
    m->at = weft__time_now_ns();
    b->nmarked++;
}

/* Take w's inbox: tasks pinned to w go back, the others to the inject
 * queue (oldest first), and a parked peer is woken for them. */
static void rescue_inbox(weft__batch_t *b, weft__worker_t *w)
{
    weft__sched_t *s = b->s;
    /* The swap takes the whole chain; the owner's own batch pop then finds
     * it empty (or finds what is pushed after). */
    ck_stack_entry_t *e = ck_stack_batch_pop_upmc(&w->inbox);
    WEFT__TSAN_ACQUIRE(&w->inbox);
    ck_stack_entry_t *keep_first = NULL, *keep_last = NULL;
    weft__task_t *head = NULL, *tail = NULL;
    size_t n = 0;
    while (e) { /* newest first */
        ck_stack_entry_t *nx = e->next;
        weft__task_t *t = weft__container_of(e, weft__task_t, inbox_entry);
        if (t->pinned) {
            e->next = NULL;
            if (keep_last)
                keep_last->next = e;
            else
                keep_first = e;
            keep_last = e;
        } else {
            t->next = head; /* prepend: the list ends oldest first */
            head = t;
            if (!tail)
                tail = t;
            n++;
        }
        e = nx;
    }
    if (keep_first) {
        inbox_push_chain(w, keep_first, keep_last);
        /* seq_cst fence: as in batch_end (pairs with the parker's store of
         * `sleeping`, its fence and its inbox check). */
        atomic_thread_fence(memory_order_seq_cst);
        if (atomic_load_explicit(&w->sleeping, memory_order_relaxed))
            weft__sched_unpark_worker(s, w);
    }
    if (n) {
        weft__inject_push_batch(&s->inject, head, tail, n);
        weft__sched_notify_parked(s);
        /* Relaxed: a statistic, written by the driver thread only. */
        atomic_store_explicit(&b->rescued,
                              atomic_load_explicit(&b->rescued, memory_order_relaxed) + n,
                              memory_order_relaxed);
    }
}

int64_t weft__sched_batch_rescue(weft__batch_t *b)
{
    if (!b->nmarked)
        return INT64_MAX;
    int64_t now = weft__time_now_ns(), next = INT64_MAX;
    for (unsigned i = 0; i < b->s->nworkers; i++) {
        weft__batch_mark_t *m = &b->marks[i];
        if (!m->at)
            continue;
        weft__worker_t *w = &b->s->workers[i];
        uint64_t polls = atomic_load_explicit(&w->polls, memory_order_relaxed);
        if (inbox_empty(&w->inbox)) {
            m->at = 0; /* taken by its owner */
        } else if (polls != m->polls) {
            m->polls = polls; /* it moved on; the tasks came later */
            m->at = now;
        } else if (now - m->at >= WEFT__RESCUE_NS) {
            rescue_inbox(b, w);
            m->at = 0;
        }
        if (!m->at)
            b->nmarked--;
        else if (m->at + WEFT__RESCUE_NS < next)
            next = m->at + WEFT__RESCUE_NS;
    }
    return next;
}

size_t weft__sched_batch_end(weft__batch_t *b)
{
    tl_batch = NULL;
    weft__sched_t *s = b->s;
    weft__worker_t *self = b->self;
    size_t nself = b->self_n;
    if (nself) {
        /* Off the sleeper list first, so that the notify below wakes a
         * peer and not ourselves. A waker may clear `sleeping` at the same
         * time; unpark_self re-checks under idle.lock. */
        bool parked = atomic_load_explicit(&self->sleeping, memory_order_seq_cst);
        if (parked)
            weft__idle_unpark_self(s, self);
        for (weft__task_t *t = b->self_head, *nx; t; t = nx) {
            nx = t->next;
            t->next = NULL;
            weft__worker_push_back(self, t);
        }
        b->self_head = b->self_tail = NULL;
        b->self_n = 0;
        batch_started(self, nself);
    }
    for (unsigned i = 0; i < s->nworkers; i++) {
        weft__batch_list_t *l = &b->per[i];
        if (!l->first)
            continue;
        weft__worker_t *w = &s->workers[i];
        inbox_push_chain(w, l->first, l->last);
        l->first = l->last = NULL;
        /* seq_cst fence: as in weft__sched_push_inbox (pairs with the
         * parker's seq_cst store of `sleeping`, its fence and its inbox
         * check): one unpark per worker per batch at most. */
        atomic_thread_fence(memory_order_seq_cst);
        if (atomic_load_explicit(&w->sleeping, memory_order_relaxed))
            weft__sched_unpark_worker(s, w);
        else if (!self && !b->marks[i].at) /* busy: checked by the next rescue */
            mark_busy(b, i);
    }
    if (b->inj_n) {
        weft__inject_push_batch(&s->inject, b->inj_head, b->inj_tail, b->inj_n);
        b->inj_head = b->inj_tail = NULL;
        b->inj_n = 0;
        weft__sched_notify_parked(s);
    }
    return nself;
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
    weft__batch_t *b = tl_batch;
    if (b && b->s == s) {
        batch_add(b, t); /* the poller delivers a round's wakes at once */
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
        if (!weft__ring_is_empty(&w->ring) || !inbox_empty(&w->inbox) ||
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
 * A busy worker looks at the poller every WEFT__GLOBAL_INTERVAL ticks
 * without blocking, if nobody holds it: when every worker is busy, no one
 * is parked in it, and I/O events and due timers would otherwise wait for
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
    if (w->tick % WEFT__GLOBAL_INTERVAL == 0) {
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
                 inbox_empty(&w->inbox) && !atomic_load_explicit(&s->stop, memory_order_seq_cst);
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
    batch_done(w);
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
        if (!inbox_empty(&w->inbox) || atomic_load_explicit(&s->stop, memory_order_seq_cst)) {
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
                help_check(w);
            run_task(w, t);
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

/*
 * batch.c - handing a poller round's woken tasks to the workers: the batch
 * (weft__batch_t: collected while the round runs, delivered at its end),
 * the help a polling worker asks for when it keeps a round's tasks, and
 * the rescue of tasks the driver thread left in the inbox of a worker
 * that is stuck in one poll.
 *
 * Owns: weft__batch_t and the calling thread's current batch
 * (weft__batch_current, set from begin to end; weft__sched_schedule
 * routes wakes into it), and the worker fields help_at, batch_at,
 * batch_n, task_ns (written by their own worker only).
 *
 * Invariants:
 * - A batch is used by one thread at a time: the holder of the poller.
 * - Every task added to a batch is delivered exactly once at its end: to
 *   the polling worker's ring, a worker's inbox (one CAS per worker), or
 *   the inject queue.
 * - The inbox has two consumers, its owner (drain_inbox, worker.c) and the
 *   driver thread (rescue_inbox); both take the whole chain with one
 *   atomic swap, so a task is taken by one of them.
 * - A mark (driver thread only) exists for a worker while a batch it was
 *   given when busy may still wait in its inbox; nmarked counts them.
 */
#include <stdlib.h>
#include <string.h>

#include "sched/sched.h"

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
void weft__worker_batch_done(weft__worker_t *w)
{
    if (!w->batch_at)
        return;
    int64_t per = (weft__time_now_ns() - w->batch_at) / (int64_t)w->batch_n;
    w->task_ns += (per - w->task_ns) / 4;
    w->batch_at = 0;
}

void weft__worker_help_check(weft__worker_t *w)
{
    if (weft__ring_is_empty(&w->ring)) {
        w->help_at = 0;                             /* caught up: nothing for a peer to take */
    } else if (weft__time_now_ns() >= w->help_at) { /* ~26 ns, only while a backlog lasts */
        w->help_at = 0;
        weft__sched_notify_parked_local(w->s);
    }
}

/* ---- the batch ----------------------------------------------------------- */

_Thread_local weft__batch_t *weft__batch_current;

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
    weft__batch_current = b;
}

void weft__sched_batch_add(weft__batch_t *b, weft__task_t *t)
{
    weft__worker_t *self = b->self;
    if (self && (!t->pinned || t->worker == self->index)) {
        weft__task_list_append(&b->self_head, &b->self_tail, t);
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
        weft__task_list_append(&b->inj_head, &b->inj_tail, t);
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
        if (weft__inbox_empty(&w->inbox)) {
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
    weft__batch_current = NULL;
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

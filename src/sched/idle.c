/*
 * idle.c - searching and sleeping workers (invariants in idle.h).
 *
 * Memory orders: every RMW on `state` that takes part in the handshake is
 * seq_cst and is followed by (or, on the submitter side, preceded by) a
 * seq_cst fence, which gives the store->load ordering the Dekker argument
 * needs on every architecture. `sleeping` is written under the lock with
 * seq_cst stores; its lock-free readers (inbox pushers, the parked worker)
 * fence before reading it.
 */
#include <stdlib.h>

#include "sched/sched.h"

static inline uint32_t searching(uint32_t st)
{
    return st & WEFT__IDLE_SEARCH_MASK;
}
static inline uint32_t unparked(uint32_t st)
{
    return st >> 16;
}

int weft__idle_init(weft__idle_t *idle, unsigned nworkers)
{
    idle->sleepers = calloc(nworkers, sizeof *idle->sleepers);
    if (!idle->sleepers)
        return -ENOMEM;
    atomic_init(&idle->state, nworkers << 16);
    idle->nworkers = nworkers;
    idle->nsleepers = 0;
    pthread_mutex_init(&idle->lock, NULL);
    return 0;
}

void weft__idle_destroy(weft__idle_t *idle)
{
    pthread_mutex_destroy(&idle->lock);
    free(idle->sleepers);
}

bool weft__idle_to_searching(weft__sched_t *s, weft__worker_t *w)
{
    if (w->searching)
        return true;
    /* The throttle is a hint: a load then an increment, so slightly more
     * than half may search at once; that is harmless. */
    uint32_t st = atomic_load_explicit(&s->idle.state, memory_order_relaxed);
    if (2 * searching(st) >= s->nworkers)
        return false;
    /* seq_cst: a submitter's fence+load must see this searcher (or we see
     * its work when we re-scan as the last searcher). */
    atomic_fetch_add_explicit(&s->idle.state, 1, memory_order_seq_cst);
    w->searching = true;
    return true;
}

bool weft__idle_from_searching(weft__sched_t *s, weft__worker_t *w)
{
    w->searching = false;
    /* seq_cst: pairs with the submitter's fence in notify_parked; the
     * last searcher to stop must wake a replacement (worker.c). */
    uint32_t prev = atomic_fetch_sub_explicit(&s->idle.state, 1, memory_order_seq_cst);
    return searching(prev) == 1;
}

/* Returns true if w was the last searcher (it must re-check the queues). */
bool weft__idle_to_parked(weft__sched_t *s, weft__worker_t *w)
{
    uint32_t dec = WEFT__IDLE_UNPARKED_ONE | (w->searching ? 1u : 0u);
    bool was_searching = w->searching;
    w->searching = false;
    pthread_mutex_lock(&s->idle.lock);
    /* seq_cst: the parking side of the Dekker handshake (idle.h). */
    uint32_t prev = atomic_fetch_sub_explicit(&s->idle.state, dec, memory_order_seq_cst);
    s->idle.sleepers[s->idle.nsleepers++] = (uint16_t)w->index;
    w->wake_searching = false;
    /* seq_cst: pairs with the fence an inbox pusher issues before reading
     * `sleeping` (worker.c, push_inbox): it sees us asleep or we see its
     * task. */
    atomic_store_explicit(&w->sleeping, true, memory_order_seq_cst);
    pthread_mutex_unlock(&s->idle.lock);
    atomic_thread_fence(memory_order_seq_cst);
    return was_searching && searching(prev) == 1;
}

static bool remove_sleeper(weft__sched_t *s, unsigned index)
{
    for (unsigned i = 0; i < s->idle.nsleepers; i++) {
        if (s->idle.sleepers[i] == index) {
            s->idle.sleepers[i] = s->idle.sleepers[--s->idle.nsleepers];
            return true;
        }
    }
    return false;
}

static void wake_one(weft__sched_t *s);

/*
 * Wake w after it was taken off the sleeper list (`sleeping` cleared with
 * a seq_cst store): on its event count, and through the poller if it
 * waits there. The fence pairs with the one in worker.c's park_in_poller
 * (store in_poller, fence, load sleeping): either that worker sees
 * `sleeping` false and does not block, or we see in_poller and wake the
 * poller.
 */
static void wake_worker(weft__sched_t *s, weft__worker_t *w)
{
    ck_ec32_inc(&w->ec, weft__ec_mode());
    if (!s->poller)
        return;
    atomic_thread_fence(memory_order_seq_cst);
    if (atomic_load_explicit(&w->in_poller, memory_order_relaxed))
        s->poller->wake(s->poller_arg);
}

void weft__sched_notify_parked(weft__sched_t *s)
{
    /* seq_cst fence: the submitter side of the handshake; orders the
     * caller's publication of work before the read of `state`. */
    atomic_thread_fence(memory_order_seq_cst);
    uint32_t st = atomic_load_explicit(&s->idle.state, memory_order_relaxed);
    if (searching(st) > 0 || unparked(st) >= s->nworkers)
        return;
    wake_one(s);
}

void weft__sched_notify_parked_local(weft__sched_t *s)
{
    /* No fence: the pushing worker runs its own ring anyway, so a stale
     * read here can only delay help from an idle peer, never lose a task.
     * The next push, or this worker's own search, corrects it. */
    uint32_t st = atomic_load_explicit(&s->idle.state, memory_order_relaxed);
    if (searching(st) > 0 || unparked(st) >= s->nworkers)
        return;
    wake_one(s);
}

static void wake_one(weft__sched_t *s)
{
    uint32_t st;
    pthread_mutex_lock(&s->idle.lock);
    st = atomic_load_explicit(&s->idle.state, memory_order_relaxed);
    if (searching(st) > 0 || unparked(st) >= s->nworkers || s->idle.nsleepers == 0) {
        pthread_mutex_unlock(&s->idle.lock);
        return;
    }
    weft__worker_t *w = &s->workers[s->idle.sleepers[--s->idle.nsleepers]];
    /* The woken worker starts out searching (counted here, under the lock,
     * so a second notifier does not wake another). seq_cst like every
     * handshake RMW. */
    atomic_fetch_add_explicit(&s->idle.state, WEFT__IDLE_UNPARKED_ONE | 1u, memory_order_seq_cst);
    w->wake_searching = true;
    /* Release (seq_cst): the woken worker reads wake_searching after
     * seeing sleeping == false. */
    atomic_store_explicit(&w->sleeping, false, memory_order_seq_cst);
    pthread_mutex_unlock(&s->idle.lock);
    wake_worker(s, w);
}

void weft__sched_unpark_worker(weft__sched_t *s, weft__worker_t *w)
{
    pthread_mutex_lock(&s->idle.lock);
    bool was = remove_sleeper(s, w->index);
    if (was) {
        /* seq_cst, as every RMW of the handshake (file comment). */
        atomic_fetch_add_explicit(&s->idle.state, WEFT__IDLE_UNPARKED_ONE, memory_order_seq_cst);
        w->wake_searching = false;
        /* seq_cst store: pairs with the parked worker's seq_cst load of
         * `sleeping` (worker.c, park), after which it reads wake_searching. */
        atomic_store_explicit(&w->sleeping, false, memory_order_seq_cst);
    }
    pthread_mutex_unlock(&s->idle.lock);
    if (was)
        wake_worker(s, w);
}

void weft__idle_unpark_self(weft__sched_t *s, weft__worker_t *w)
{
    pthread_mutex_lock(&s->idle.lock);
    if (remove_sleeper(s, w->index)) {
        /* seq_cst, as every RMW of the handshake; the store mirrors
         * weft__sched_unpark_worker (we are the only reader here). */
        atomic_fetch_add_explicit(&s->idle.state, WEFT__IDLE_UNPARKED_ONE, memory_order_seq_cst);
        w->wake_searching = false;
        atomic_store_explicit(&w->sleeping, false, memory_order_seq_cst);
    }
    pthread_mutex_unlock(&s->idle.lock);
}

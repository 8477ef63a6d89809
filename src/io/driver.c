/*
 * driver.c - the poller: waits in the backend until the next timer
 * deadline or an I/O event, applies events to sources, fires timers, and
 * hands the tasks this wakes to the workers as one batch per round.
 *
 * Who polls (weft_config_t.driver): either a thread of its own
 * ("<prefix>-io") runs rounds forever, or parked workers do (the scheduler
 * calls poller_ops from park, and without blocking from busy workers every
 * WEFT__GLOBAL_INTERVAL ticks): a parked worker woken by an event runs
 * the tasks it woke itself, one thread wake-up instead of two. Either way
 * one thread at a time holds `poll_lock` and everything it guards.
 *
 * Invariants:
 * - sleep_until is the deadline the current blocking wait ends at, and
 *   INT64_MAX while no wait blocks. A thread that arms a timer earlier
 *   than the timers' last reported deadline calls kick(deadline) after the
 *   timers' lock is released; kick wakes the backend iff deadline <
 *   sleep_until and no wake is pending (`notified`). While nobody blocks
 *   every such kick wakes the backend, so an arm that lands after a
 *   round's weft__timers_process is seen by the next round; the `notified`
 *   flag keeps that to one eventfd write per round. An arm during process
 *   is covered by process itself (it computes its return value under the
 *   timers' lock, src/time/wheel.c).
 * - `notified` is cleared only after the backend has consumed the wake and
 *   before timers are processed, so a kick that found it set is covered
 *   by that processing; a worker wake that found it set is covered by the
 *   worker's own check of `sleeping` after the round (see poller_wake).
 * - `next` is written only by the holder of poll_lock (acquire/release
 *   hand it from one holder to the next).
 * - Tasks woken by a round go to a weft__batch_t and are handed over at
 *   its end: to the polling worker itself, or (from the driver thread)
 *   one CAS and at most one unpark per worker. The driver thread also
 *   wakes at least every WEFT__RESCUE_NS while a busy worker has tasks in
 *   its inbox, and moves them to its peers if that worker is stuck in one
 *   poll (weft__sched_batch_rescue).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/source.h"

#define EVENTS_PER_ROUND 256

static const weft__poller_ops_t poller_ops;

static void kick(void *arg, int64_t deadline)
{
    weft__driver_t *d = arg;
    /* Relaxed is enough: the arm that called us lowered the timers' next
     * deadline under the timers' lock. If the driver's last process took
     * that lock before us, its store of INT64_MAX (made before process)
     * happens-before this load through the lock, so we read INT64_MAX or
     * the sleep_until of the driver's next wait, which is later than our
     * deadline (process did not see our arm): we wake it. If process took
     * the lock after us, it saw our arm and this wake is merely spurious. */
    if (deadline >= atomic_load_explicit(&d->sleep_until, memory_order_relaxed))
        return;
    if (atomic_load_explicit(&d->notified, memory_order_relaxed) ||
        atomic_exchange_explicit(&d->notified, true, memory_order_acq_rel))
        return; /* acq_rel: pairs with round_run's store of false */
    atomic_fetch_add_explicit(&d->kicks, 1, memory_order_relaxed);
    d->be_ops->wake(d->be);
}

int weft__driver_new(weft__sched_t *s, bool own_thread, weft__driver_t **out)
{
    weft__driver_t *d = aligned_alloc(64, WEFT__ALIGN_UP(sizeof *d, 64));
    if (!d)
        return -ENOMEM;
    memset(d, 0, sizeof *d);
    d->s = s;
    d->own_thread = own_thread;
    d->next = INT64_MAX;
    atomic_init(&d->poll_lock, false);
    atomic_init(&d->nsources, 0);
    d->be_ops = &weft__backend_epoll;
    snprintf(d->name, sizeof d->name, "%.10s-io", s->name);
    atomic_init(&d->sleep_until, INT64_MAX);
    atomic_init(&d->notified, false);
    atomic_init(&d->stop, false);
    pthread_mutex_init(&d->lock, NULL);
    d->free_head = WEFT__SRC_NONE;
    d->chunks = calloc(WEFT__SRC_MAX_CHUNKS, sizeof *d->chunks);
    int rc = d->chunks ? 0 : -ENOMEM;
    if (rc == 0)
        rc = weft__sched_batch_init(s, &d->batch);
    if (rc == 0)
        rc = weft__timers_new(kick, d, &d->timers);
    if (rc == 0 && (rc = d->be_ops->create(&d->be)) != 0) {
        weft__timers_free(d->timers);
        d->timers = NULL;
    }
    if (rc != 0) {
        weft__sched_batch_destroy(&d->batch);
        free((void *)d->chunks);
        pthread_mutex_destroy(&d->lock);
        free(d);
        return rc;
    }
    if (!own_thread)
        weft__sched_set_poller(s, &poller_ops, d);
    *out = d;
    return 0;
}

/*
 * One round, by the holder of poll_lock. until > 0: wait until an event,
 * the timers' next deadline, a wake or `until` (INT64_MAX: no limit of
 * its own); 0: only look. w: the polling worker (its tasks stay with it),
 * or NULL on the driver thread. A non-blocking round skips the system
 * call while no source is registered and the timers only when none is
 * due.
 */
static void round_run(void *arg, weft__worker_t *w, int64_t until)
{
    weft__driver_t *d = arg;
    weft__io_event_t evs[EVENTS_PER_ROUND];
    int n = 0;
    if (until > 0) {
        int64_t timeout = -1; /* no deadline: until an event or a wake */
        int64_t wake_at = d->next < until ? d->next : until;
        if (!w) { /* the driver thread: tasks stuck behind a long poll */
            int64_t check = weft__sched_batch_rescue(&d->batch);
            wake_at = check < wake_at ? check : wake_at;
        }
        if (wake_at != INT64_MAX) {
            int64_t now = weft__time_now_ns();
            timeout = wake_at > now ? wake_at - now : 0;
        }
        /* Relaxed: ordered for kick() by the timers' lock (see kick).
         * Even when a timer is already due: poll (timeout 0), so that a
         * run of due timers cannot hold back I/O events. */
        atomic_store_explicit(&d->sleep_until, d->next, memory_order_relaxed);
        n = d->be_ops->wait(d->be, evs, EVENTS_PER_ROUND, timeout);
        atomic_store_explicit(&d->sleep_until, INT64_MAX, memory_order_relaxed);
    } else {
        bool timers_due = atomic_load_explicit(&d->notified, memory_order_relaxed) ||
                          (d->next != INT64_MAX && weft__time_now_ns() >= d->next);
        if (!timers_due && atomic_load_explicit(&d->nsources, memory_order_relaxed) == 0)
            return;
        n = d->be_ops->wait(d->be, evs, EVENTS_PER_ROUND, 0);
    }
    weft__counter_inc(&d->rounds);
    weft__sched_batch_begin(&d->batch, w);
    for (int i = 0; i < n; i++) {
        if (evs[i].token == WEFT__TOKEN_WAKE) {
            /* seq_cst: pairs with the acq_rel/seq_cst exchange of kick()
             * and poller_wake(): a wake after this store writes the
             * eventfd again; one before it is covered (file comment). */
            atomic_store_explicit(&d->notified, false, memory_order_seq_cst);
            weft__counter_inc(&d->wakeups);
            continue;
        }
        weft__source_event(d, evs[i].token, evs[i].ready);
    }
    if (n > 0)
        atomic_store_explicit(&d->events,
                              atomic_load_explicit(&d->events, memory_order_relaxed) + (uint64_t)n,
                              memory_order_relaxed);
    d->next = weft__timers_process(d->timers, weft__time_now_ns());
    weft__sched_batch_end(&d->batch);
}

static bool poller_try_lock(void *arg)
{
    weft__driver_t *d = arg;
    /* A relaxed peek first keeps busy workers from bouncing the line.
     * Acquire: pairs with poller_unlock's release; hands over `next`, the
     * batch and the backend's event buffer. */
    return !atomic_load_explicit(&d->poll_lock, memory_order_relaxed) &&
           !atomic_exchange_explicit(&d->poll_lock, true, memory_order_acquire);
}

static void poller_unlock(void *arg)
{
    weft__driver_t *d = arg;
    /* Release: pairs with poller_try_lock's acquire. */
    atomic_store_explicit(&d->poll_lock, false, memory_order_release);
}

/*
 * Make a blocked round return (a parked worker was woken). seq_cst: the
 * worker's wake cleared `sleeping` before this exchange; if the exchange
 * finds a wake pending whose eventfd count the round already consumed,
 * it precedes the round's clear of `notified` in the single total order,
 * so the worker's read of `sleeping` after the round sees the wake.
 */
static void poller_wake(void *arg)
{
    weft__driver_t *d = arg;
    if (!atomic_exchange_explicit(&d->notified, true, memory_order_seq_cst))
        d->be_ops->wake(d->be);
}

static const weft__poller_ops_t poller_ops = {
    .try_lock = poller_try_lock,
    .unlock = poller_unlock,
    .round = round_run,
    .wake = poller_wake,
};

static void *driver_main(void *arg)
{
    weft__driver_t *d = arg;
    (void)weft__thread_timer_slack(WEFT__POLL_TIMER_SLACK_NS);
    /* The thread holds the poller for its whole life. */
    while (!poller_try_lock(d))
        weft__cpu_relax();
    /* Acquire: pairs with weft__driver_stop's release store. */
    while (!atomic_load_explicit(&d->stop, memory_order_acquire))
        round_run(d, NULL, INT64_MAX);
    poller_unlock(d);
    return NULL;
}

int weft__driver_start(weft__driver_t *d)
{
    if (!d->own_thread) {
        /* Before the workers start (weft__sched_set_poller). */
        return 0;
    }
    int rc = weft__thread_start(&d->thread, driver_main, d, d->name);
    if (rc == 0)
        d->started = true;
    return rc;
}

void weft__driver_stop(weft__driver_t *d)
{
    if (d->started) {
        /* Release: pairs with the loop's acquire load of stop. */
        atomic_store_explicit(&d->stop, true, memory_order_release);
        d->be_ops->wake(d->be);
        weft__thread_join(&d->thread);
        d->started = false;
    }
    weft__sources_shutdown(d);
    /* The wheel itself stays until free: the stackless futures dropped
     * after this may still call weft_timer_cancel (a no-op now). */
    weft__timers_abandon(d->timers);
}

void weft__driver_free(weft__driver_t *d)
{
    if (!d)
        return;
    weft__driver_stop(d);
    weft__timers_free(d->timers);
    d->timers = NULL;
    d->be_ops->destroy(d->be);
    weft__sources_free(d);
    weft__sched_batch_destroy(&d->batch);
    pthread_mutex_destroy(&d->lock);
    free(d);
}

weft__timers_t *weft__driver_timers(weft__driver_t *d)
{
    return d->timers;
}

void weft__driver_stats(weft__driver_t *d, weft__driver_stats_t *out)
{
    out->rounds = atomic_load_explicit(&d->rounds, memory_order_relaxed);
    out->events = atomic_load_explicit(&d->events, memory_order_relaxed);
    out->wakeups = atomic_load_explicit(&d->wakeups, memory_order_relaxed);
    out->kicks = atomic_load_explicit(&d->kicks, memory_order_relaxed);
    out->rescued = atomic_load_explicit(&d->batch.rescued, memory_order_relaxed);
}

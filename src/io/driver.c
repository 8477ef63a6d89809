/*
 * driver.c - the driver thread: waits in the backend until the next timer
 * deadline or an I/O event, applies events to sources, fires timers, and
 * delivers the tasks this wakes to the workers as one batch per round.
 *
 * Invariants:
 * - sleep_until is the deadline the driver's current wait ends at, and
 *   INT64_MAX while it is awake. A thread that arms a timer earlier than
 *   the timers' last reported deadline calls kick(deadline) after the
 *   timers' lock is released; kick wakes the backend iff deadline <
 *   sleep_until and no wake is pending (`notified`). While awake every such
 *   kick wakes the backend, so an arm that lands after this round's
 *   weft__timers_process is seen by the next round; the `notified` flag
 *   keeps that to one eventfd write per round. An arm during process is
 *   covered by process itself (it computes its return value under the
 *   timers' lock, src/time/wheel.c).
 * - `notified` is cleared only after the backend has consumed the wake and
 *   before timers are processed, so a kick that found it set is covered
 *   by that processing.
 * - Tasks woken on this thread go to a weft__batch_t and are delivered at
 *   the end of the round: one CAS and at most one unpark per worker.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/source.h"

#define EVENTS_PER_ROUND 256
/* Timer slack of the driver thread: the kernel may run its wake-ups this
 * much late (default 50 us). The wheel's resolution is larger; this only
 * keeps the kernel from adding to it. */
#define DRIVER_TIMER_SLACK_NS 1000

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
        return; /* acq_rel: pairs with the driver's release store of false */
    atomic_fetch_add_explicit(&d->kicks, 1, memory_order_relaxed);
    d->be_ops->wake(d->be);
}

int weft__driver_new(weft__sched_t *s, weft__driver_t **out)
{
    weft__driver_t *d = aligned_alloc(64, WEFT__ALIGN_UP(sizeof *d, 64));
    if (!d)
        return -ENOMEM;
    memset(d, 0, sizeof *d);
    d->s = s;
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
    *out = d;
    return 0;
}

static void *driver_main(void *arg)
{
    weft__driver_t *d = arg;
    weft__io_event_t evs[EVENTS_PER_ROUND];
    (void)weft__thread_timer_slack(DRIVER_TIMER_SLACK_NS);
    int64_t next = INT64_MAX;
    /* Acquire: pairs with weft__driver_stop's release store. */
    while (!atomic_load_explicit(&d->stop, memory_order_acquire)) {
        int64_t timeout = -1;
        if (next != INT64_MAX) {
            int64_t now = weft__time_now_ns();
            timeout = next > now ? next - now : 0;
        }
        /* Relaxed: ordered for kick() by the timers' lock (see kick). */
        atomic_store_explicit(&d->sleep_until, next, memory_order_relaxed);
        /* Even when a timer is already due: poll (timeout 0), so that a
         * run of due timers cannot hold back I/O events. */
        int n = d->be_ops->wait(d->be, evs, EVENTS_PER_ROUND, timeout);
        atomic_store_explicit(&d->sleep_until, INT64_MAX, memory_order_relaxed);
        weft__counter_inc(&d->rounds);
        weft__sched_batch_begin(&d->batch);
        for (int i = 0; i < n; i++) {
            if (evs[i].token == WEFT__TOKEN_WAKE) {
                /* Release: pairs with kick()'s acq_rel exchange; a kick
                 * after this store writes the eventfd again. */
                atomic_store_explicit(&d->notified, false, memory_order_release);
                weft__counter_inc(&d->wakeups);
                continue;
            }
            weft__source_event(d, evs[i].token, evs[i].ready);
        }
        if (n > 0)
            atomic_store_explicit(
                &d->events, atomic_load_explicit(&d->events, memory_order_relaxed) + (uint64_t)n,
                memory_order_relaxed);
        next = weft__timers_process(d->timers, weft__time_now_ns());
        weft__sched_batch_end(&d->batch);
    }
    return NULL;
}

int weft__driver_start(weft__driver_t *d)
{
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
    if (d->timers) {
        weft__timers_free(d->timers);
        d->timers = NULL;
    }
}

void weft__driver_free(weft__driver_t *d)
{
    if (!d)
        return;
    weft__driver_stop(d);
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
}

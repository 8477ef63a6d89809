/*
 * driver.h - the I/O driver: one per runtime, it waits in the poller
 * (epoll_pwait2, behind the backend seam of backend.h) for I/O readiness
 * and for the next timer deadline, fires timers (src/time) and hands woken
 * tasks back to the workers in batches. Either a thread of its own polls,
 * or parked workers do (driver.c). Internal to weft.
 *
 * Lifecycle (driven by src/runtime): new (after the scheduler, before its
 * workers start: it installs itself as the scheduler's poller unless it
 * has its own thread) -> start -> [runtime runs] -> stop (after the
 * scheduler's workers stopped, so nobody polls any more, and before the
 * tasks still alive are dropped: joins the thread, then drops every waker
 * still held by a source or a timer, so no task cell stays referenced)
 * -> free (before the scheduler is freed; the driver's memory holds no
 * task).
 */
#ifndef WEFT_IO_DRIVER_H
#define WEFT_IO_DRIVER_H

#include <weft/io.h>

#include "sched/sched.h"
#include "time/timers.h"

typedef struct weft__driver weft__driver_t;

/* own_thread: poll on a thread of its own, else in parked workers.
 * 0, -ENOMEM, or the negative errno of epoll_create1/eventfd. */
int weft__driver_new(weft__sched_t *s, bool own_thread, weft__driver_t **out);
/* Start the thread ("<prefix>-io") if it has one. 0 or -errno. */
int weft__driver_start(weft__driver_t *d);
/* After the workers stopped: stop and join the thread; drop the wakers
 * sources and timers still hold (timers are unlinked, so the tasks still
 * alive can be dropped next without the wheel reaching into them). */
void weft__driver_stop(weft__driver_t *d);
void weft__driver_free(weft__driver_t *d);

weft__timers_t *weft__driver_timers(weft__driver_t *d);

/* Counters for tests and benchmarks (racy reads). */
typedef struct weft__driver_stats {
    uint64_t rounds;  /* poller waits returned */
    uint64_t events;  /* I/O events handled */
    uint64_t wakeups; /* eventfd wake-ups received */
    uint64_t kicks;   /* eventfd writes made (after de-duplication) */
    uint64_t rescued; /* tasks moved off a worker stuck in one poll (driver thread) */
} weft__driver_stats_t;
void weft__driver_stats(weft__driver_t *d, weft__driver_stats_t *out);

#endif /* WEFT_IO_DRIVER_H */

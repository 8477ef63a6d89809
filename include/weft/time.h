/*
 * weft/time.h - timers: sleep, interval, timeout, and the timer entry that
 * futures embed.
 *
 * Time is weft_now() (weft/common.h): int64_t nanoseconds on
 * CLOCK_MONOTONIC. Every wait takes an absolute deadline. A deadline that
 * has already passed completes at once, without touching the timer wheel.
 * Timers never fire early; they fire late by at most the wheel's
 * resolution (WEFT_TIMER_RESOLUTION_NS) plus the time the driver thread and
 * a worker take to wake up, as long as no poll runs long. While every
 * worker is busy, add the time a busy worker takes between two looks at
 * the driver and its inbox: 61 polls or 256 leaf operations (budget units,
 * weft_coop_proceed), whichever comes first; 0.1-0.8 ms measured next to
 * a task that reads a full socket 16 bytes at a time. A long poll
 * delays more (docs/io.md, "Who polls"): with the default driver mode the
 * timers themselves, while it runs on the worker that would watch them;
 * with WEFT_DRIVER_THREAD only the tasks that must run on its worker
 * (pinned coroutines), since the driver moves the others to a peer once
 * that worker has been in one poll for 1 ms (within 2 ms of the wake).
 *
 * Every wait observes cancellation. A stackless task that is cancelled has
 * its future dropped, and dropping any future of this header disarms its
 * timer (and drops what it wraps). In a coroutine, the wait returns
 * -ECANCELED, its timer already disarmed.
 *
 * A future of this header must not be copied (or spawned, which copies
 * it) once it has been polled: its timer entry is linked into the wheel
 * by address. Initialise it, then spawn or await it.
 */
#ifndef WEFT_TIME_H
#define WEFT_TIME_H

#include <weft/future.h>

#ifdef __cplusplus
extern "C" {
#endif

/* log2 of the wheel's tick in nanoseconds: 17 is 131 us. A build-time
 * knob in [10, 22] (smaller: finer timers, more driver wake-ups; see
 * docs/timers.md); the library and its users must agree on it. Read
 * WEFT_TIMER_RESOLUTION_NS. */
#ifndef WEFT__TIMER_TICK_SHIFT
#define WEFT__TIMER_TICK_SHIFT 17
#endif

/*
 * The timer wheel's resolution: deadlines are rounded up to a multiple of
 * it, so a wait ends between its deadline and deadline + this much, plus
 * wake-up latency.
 */
#define WEFT_TIMER_RESOLUTION_NS ((int64_t)1 << WEFT__TIMER_TICK_SHIFT)

/* ---- the timer entry ------------------------------------------------------ */

/*
 * One pending wake-up at a deadline, embedded in a future's state or a
 * coroutine's frame (nothing is allocated to arm it). Initialise with
 * weft_timer_init (or zero it); its fields are private. Owned by one task
 * at a time, which is the only one to poll or cancel it.
 */
typedef struct weft_timer {
    struct weft_timer *next_, *prev_; /* wheel slot list (under the wheel lock) */
    int64_t deadline_;                /* written by the owner under the lock */
    weft_waker_t waker_;              /* under the wheel lock */
    weft_waker_t seen_;               /* owner: the waker armed with (not owned) */
    void *wheel_;                     /* owner: the timers it was armed on */
    _Atomic uint32_t state_;          /* idle / armed / fired */
    uint16_t slot_;                   /* level * 64 + slot (under the lock) */
} weft_timer_t;

/* Make t idle; never on an armed entry (cancel it first). Does nothing for
 * NULL. */
void weft_timer_init(weft_timer_t *t);

/*
 * Poll-level: WEFT_READY if weft_now() >= deadline (or the entry fired for
 * it), else arm t (or update its waker) so that cx's task is woken at the
 * deadline, and WEFT_PENDING. Changing the deadline of an armed entry
 * re-arms it. A deadline of WEFT_FOREVER arms nothing (it never fires:
 * only another wake-up or a cancel polls the task again). -EINVAL for NULL
 * arguments, -EPERM when not polled on a runtime worker (there is no
 * driver to fire it).
 */
int weft_timer_poll(weft_timer_t *t, int64_t deadline, weft_cx_t *cx);

/*
 * Disarm t if armed; O(1). When it returns the driver no longer touches t,
 * so its memory may be reused. Safe on an idle or fired entry (it does
 * nothing). If the entry fired just before, its waker may still be woken
 * once after this returns: a spurious wake-up, harmless to a task.
 */
void weft_timer_cancel(weft_timer_t *t);

/* ---- sleep ----------------------------------------------------------------- */

/*
 * A future that is ready (output 0) once weft_now() >= its deadline.
 * Output -EPERM if polled off the runtime's workers. Dropping it (the
 * vtable's drop) disarms it.
 *
 *   weft_sleep_t s;
 *   weft_sleep_init(&s, weft_now() + 5000000);
 *   weft_spawn(rt, &weft_sleep_vtable, &s, sizeof s, &h);   // or weft_await
 */
typedef struct weft_sleep {
    weft_timer_t timer_;
    int64_t deadline_;
} weft_sleep_t;

extern const weft_future_vtable_t weft_sleep_vtable;

/* 0, or -EINVAL for NULL. Any deadline is valid (WEFT_FOREVER: never). */
int weft_sleep_init(weft_sleep_t *s, int64_t deadline);

/*
 * Coroutine: suspend until weft_now() >= deadline. Returns 0; -ECANCELED
 * if the task is cancelled (at once if it already was, even for a past
 * deadline; the timer is disarmed); -EPERM outside a coroutine task.
 */
int weft_sleep_until(int64_t deadline);

/* weft_sleep_until(weft_now() + ns) (saturating); -EINVAL if ns < 0. */
int weft_sleep_for(int64_t ns);

/* ---- interval ---------------------------------------------------------------- */

/* What an interval does with ticks it could not deliver on time. */
typedef enum weft_missed {
    /* Deliver the missed ticks back to back, then keep the original
     * schedule (start + k * period). */
    WEFT_MISSED_BURST = 0,
    /* The next tick comes one period after the late one was delivered:
     * the schedule shifts. */
    WEFT_MISSED_DELAY = 1,
    /* Drop the missed ticks: the next tick is the first instant of the
     * original schedule after the late one was delivered. */
    WEFT_MISSED_SKIP = 2,
} weft_missed_t;

/*
 * A periodic timer: ticks are scheduled at start, start + period, ... A
 * tick is "missed" when it is delivered at or after the time of the tick
 * following it; the policy then decides the next one. A tick delivered
 * late but before the next one is due keeps the schedule.
 * Fields are private.
 */
typedef struct weft_interval {
    weft_timer_t timer_;
    int64_t next_; /* the time of the next tick */
    int64_t period_;
    weft_missed_t policy_;
} weft_interval_t;

/* 0, or -EINVAL (NULL iv, period <= 0, unknown policy). */
int weft_interval_init(weft_interval_t *iv, int64_t start, int64_t period, weft_missed_t policy);

/*
 * Poll-level: WEFT_READY when the next tick is due, with its scheduled
 * time in *scheduled (may be NULL), and the interval advanced; otherwise
 * WEFT_PENDING (cx's task is woken when it is due). -EINVAL for NULL iv or
 * cx, -EPERM off the runtime's workers. A stackless future that embeds an
 * interval calls weft_interval_cancel from its drop.
 */
int weft_interval_poll(weft_interval_t *iv, weft_cx_t *cx, int64_t *scheduled);

/* Disarm the interval's timer (the schedule is kept). Does nothing for NULL. */
void weft_interval_cancel(weft_interval_t *iv);

/*
 * The next tick as a future: its state is the weft_interval_t itself (not
 * a copy: weft_await(&weft_interval_tick_vtable, iv, &scheduled)); output
 * the tick's scheduled time, or -EPERM off the workers. Its drop disarms
 * the interval's timer. A schedule that starts before time 0 (weft_now()
 * is never negative) can output negative times, which this cannot tell
 * apart from -EPERM: use weft_interval_poll there.
 */
extern const weft_future_vtable_t weft_interval_tick_vtable;

/*
 * Coroutine: wait for the next tick of iv; *scheduled (may be NULL)
 * receives its scheduled time. 0; -ECANCELED (the tick was not consumed:
 * the interval is unchanged); -EINVAL for a NULL iv; -EPERM outside a
 * coroutine task.
 */
int weft_interval_tick(weft_interval_t *iv, int64_t *scheduled);

/* ---- timeout ------------------------------------------------------------------- */

/*
 * Wraps an inner future (vt, state) with a deadline. The timeout owns the
 * inner future from init on: it drops it exactly once (vt->drop, if any),
 * when it completes, when the deadline passes, or when the timeout itself
 * is dropped. The inner state is not copied: it must outlive the timeout.
 * The inner future is polled first, so if it is ready it wins even when
 * the deadline has already passed.
 *
 * As a future (weft_timeout_vtable), the output is the inner future's
 * output if it completed first, else -ETIMEDOUT (the inner future was
 * dropped), or -EPERM when the inner future was pending off the runtime's
 * workers with a deadline other than WEFT_FOREVER to arm (dropped too;
 * with WEFT_FOREVER no timer is needed and it stays pending). An inner future whose own output is
 * -ETIMEDOUT cannot be told apart from a timeout there: use weft_timeout_poll or weft_await_until,
 * which return the reason separately. Fields are private.
 */
typedef struct weft_timeout {
    weft_timer_t timer_;
    const weft_future_vtable_t *vt_;
    void *state_;
    int64_t deadline_;
    bool live_; /* the inner future has not been dropped */
} weft_timeout_t;

extern const weft_future_vtable_t weft_timeout_vtable;

/* 0, or -EINVAL (NULL to, vt or vt->poll). */
int weft_timeout_init(weft_timeout_t *to, const weft_future_vtable_t *vt, void *state,
                      int64_t deadline);

/*
 * Poll-level: WEFT_READY with the inner output in *out (may be NULL) if
 * the inner future completed; -ETIMEDOUT if the deadline passed first;
 * WEFT_PENDING; -EPERM if the inner future is pending off the runtime's
 * workers and the deadline is not WEFT_FOREVER (a timer would be needed);
 * -EINVAL for NULL to or cx. On every result but WEFT_PENDING the
 * inner future has been dropped and the timer disarmed; polling again
 * returns -EINVAL. A future that embeds a timeout drops it with
 * weft_timeout_vtable.drop(to).
 */
int weft_timeout_poll(weft_timeout_t *to, weft_cx_t *cx, int64_t *out);

/*
 * Coroutine: await (vt, state) until the absolute deadline. Returns 0 with
 * the inner output in *out (may be NULL); -ETIMEDOUT if the deadline
 * passed first; -ECANCELED if the task was cancelled. In all three cases
 * the inner future has been dropped exactly once. -EINVAL for a NULL vt
 * or poll (the future is not touched); -EPERM outside a coroutine task
 * (not touched either).
 */
int weft_await_until(const weft_future_vtable_t *vt, void *state, int64_t deadline, int64_t *out);

#ifdef __cplusplus
}
#endif
#endif /* WEFT_TIME_H */

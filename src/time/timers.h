/*
 * timers.h - the runtime's timers: a hierarchical timing wheel owned by
 * the driver thread (src/io), armed and cancelled from any thread.
 * Internal to weft; the public calls are in weft/time.h.
 *
 * The seam with the driver (the only calls src/io makes into src/time):
 *  - weft__timers_new(kick, arg): kick(arg, deadline) is called, outside
 *    every timers lock, by a thread that armed a timer earlier than any
 *    deadline the driver was last told about (the return value of the last
 *    process, or an earlier kick). The driver then wakes up if it sleeps
 *    past that deadline.
 *  - weft__timers_process(now): on the driver thread, fire every timer whose
 *    deadline is <= now (wake its waker; never early), and return the
 *    earliest deadline still armed (INT64_MAX if none), rounded as the
 *    wheel's resolution requires, so the driver sleeps until then.
 *    (The time returned may also be a cascade point of the wheel, before
 *    any deadline: the driver just calls process again then.)
 *  - weft__timers_abandon / weft__timers_free: after every thread that
 *    polls the driver has stopped.
 *
 * Entries (weft_timer_t, weft/time.h) are intrusive: they live in the
 * future or on the coroutine stack that waits, and nothing is allocated to
 * arm one. A cancelled or fired entry is never touched by the driver
 * again after weft_timer_cancel returns (the firing thread copies the
 * waker out under the lock and wakes it after unlocking).
 *
 * Entry states (weft_timer_t.state_):
 *   IDLE  - not in the wheel. Only the owner touches the entry.
 *   ARMED - linked in a slot of `wheel_`; next_/prev_/slot_/waker_ belong
 *           to the wheel lock. Only the owner moves it out of ARMED by
 *           cancelling (-> IDLE) or re-arming, and only the driver by
 *           firing (-> FIRED); both under the lock.
 *   FIRED - unlinked, waker moved out. Stored with release by the firing
 *           thread as its last access to the entry; the owner's acquire
 *           load pairs with it, after which the entry is the owner's alone
 *           again. weft__timers_free leaves every armed entry FIRED.
 * `deadline_`, `seen_` and `wheel_` are written only by the owner (the
 * first under the lock, since the driver reads it there); the driver
 * never writes them.
 */
#ifndef WEFT_TIME_TIMERS_H
#define WEFT_TIME_TIMERS_H

#include <stddef.h>
#include <stdint.h>

#include <weft/time.h>

typedef struct weft__timers weft__timers_t;

typedef void (*weft__timers_kick_t)(void *arg, int64_t deadline);

#define WEFT__TIMER_IDLE 0u
#define WEFT__TIMER_ARMED 1u
#define WEFT__TIMER_FIRED 2u

/* 0 or -ENOMEM. */
int weft__timers_new(weft__timers_kick_t kick, void *kick_arg, weft__timers_t **out);
/* Nobody arms or processes any more (the runtime's threads stopped):
 * unlink every armed entry, leave it FIRED (a later weft_timer_cancel is
 * a no-op) and drop its waker. Called before the tasks still alive are
 * dropped: a dropped coroutine's stack, which holds its entries, is freed
 * without unwinding, so the wheel must not reach into it afterwards. */
void weft__timers_abandon(weft__timers_t *tm);
/* Abandon, then free the wheel. */
void weft__timers_free(weft__timers_t *tm);
/* Driver thread only. Returns the next deadline to wake at, or INT64_MAX. */
int64_t weft__timers_process(weft__timers_t *tm, int64_t now);

/*
 * The timers of the runtime whose worker is the calling thread, or NULL
 * (implemented by src/runtime, which composes the driver and the
 * scheduler).
 */
weft__timers_t *weft__timers_current(void);

/* ---- used by weft/time.h's calls (timer.c) and by the tests ---------------- */

/*
 * Arm t (owned by the caller, IDLE, FIRED, or ARMED on tm) for deadline,
 * to wake a clone of *w. Returns 0 when armed, 1 when the deadline is
 * already due by the wheel's clock (t is then left FIRED for deadline and
 * nothing is armed: the caller treats it as ready). May call kick.
 */
int weft__timers_arm(weft__timers_t *tm, weft_timer_t *t, int64_t deadline, const weft_waker_t *w);

/*
 * Disarm t if it is ARMED (on tm). Returns 1 if it was removed (its waker
 * is dropped and will never be woken), 0 if it was not armed (idle, or it
 * fired: its waker is or was woken exactly once).
 */
int weft__timers_cancel(weft__timers_t *tm, weft_timer_t *t);

/* Entries armed now (racy read, for tests). */
size_t weft__timers_armed(weft__timers_t *tm);
/* The earliest deadline the driver was told about (racy read, for tests). */
int64_t weft__timers_next_fire(weft__timers_t *tm);

#endif /* WEFT_TIME_TIMERS_H */

/*
 * ec.c - the ck_ec operations: how ck's event counts tell time, sleep and
 * wake on Linux.
 *
 * Owns: the one struct ck_ec_ops and the one struct ck_ec_mode weft uses
 * (weft__ec_mode), with which workers park on their per-worker ck_ec.
 *
 * How ck_ec waits (src/ck_ec.c in ck 0.7.1): spin busy_loop_iter times on
 * the counter, set the counter's "waiters" flag with a CAS, spin again, then
 * sleep in wait32/wait64 until a per-iteration deadline. That deadline
 * starts initial_wait_ns after the wait began and grows by
 * wait_scale_factor >> wait_shift_count; ck clamps each step to one second,
 * and once one second has passed it sleeps until the caller's own deadline
 * (NULL: forever). The back-off only exists to catch a wake lost by the
 * single-producer fast path, which weft does not use: in multi-producer
 * mode every increment is an atomic RMW that sees the flag and calls wake.
 *
 * Invariants:
 * - Multi-producer mode (single_producer = false): any thread may increment.
 * - Time is CLOCK_MONOTONIC, the clock of weft__time_now_ns, and deadlines
 *   ck hands to wait32/wait64 are absolute on it, as futex.c expects.
 * - No periodic timed wake-ups while parked: initial_wait_ns is larger than
 *   ck's one-second cap, so an untimed park makes exactly one timed futex
 *   wait (ending one second after it started) and then sleeps untimed until
 *   woken. With ck's defaults (2 ms, x8) an idle worker would instead wake
 *   at 2 ms, 16 ms, 128 ms and 1 s after every park.
 * - Consequence for timed waits: ck does not clamp its per-iteration
 *   deadline to the caller's, so ck_ec_wait with a deadline less than one
 *   second away may return up to one second after the wait began. weft's
 *   workers park untimed (timers belong to the driver thread); a caller that
 *   needs a tight deadline must use ck_ec_wait_pred with a predicate that
 *   lowers the iteration deadline to its own.
 * - wait32/wait64 may return early for any reason (ck re-checks the counter);
 *   wake32/wake64 wake every waiter on the word.
 * - 64-bit counters block on their least significant 32 bits (futexes are
 *   32-bit); wake64 wakes that same half.
 */
#include "platform/platform.h"

#include <ck_ec.h>
#include <time.h>

static int64_t timespec_to_deadline(const struct timespec *ts)
{
    if (ts == NULL || ts->tv_sec >= INT64_MAX / 1000000000 - 1)
        return INT64_MAX;
    if (ts->tv_sec < 0)
        return 0;
    return (int64_t)ts->tv_sec * 1000000000 + ts->tv_nsec;
}

/* The futex word of a 32-bit counter: the counter itself. The kernel only
 * reads it; the cast drops ck's const, never written through. */
static _Atomic uint32_t *word32(const uint32_t *addr)
{
    return (_Atomic uint32_t *)(uintptr_t)addr;
}

/* The futex word of a 64-bit counter: its least significant half. */
static _Atomic uint32_t *word64(const uint64_t *addr)
{
    uintptr_t p = (uintptr_t)addr;

#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    p += sizeof(uint32_t);
#endif
    return (_Atomic uint32_t *)p;
}

static int ec_gettime(const struct ck_ec_ops *ops, struct timespec *out)
{
    (void)ops;
    return clock_gettime(CLOCK_MONOTONIC, out) != 0;
}

static void ec_wait32(const struct ck_ec_wait_state *state, const uint32_t *addr, uint32_t expected,
                      const struct timespec *deadline)
{
    (void)state;
    (void)weft__futex_wait(word32(addr), expected, timespec_to_deadline(deadline));
}

static void ec_wait64(const struct ck_ec_wait_state *state, const uint64_t *addr, uint64_t expected,
                      const struct timespec *deadline)
{
    (void)state;
    (void)weft__futex_wait(word64(addr), (uint32_t)expected, timespec_to_deadline(deadline));
}

static void ec_wake32(const struct ck_ec_ops *ops, const uint32_t *addr)
{
    (void)ops;
    (void)weft__futex_wake(word32(addr), INT32_MAX);
}

static void ec_wake64(const struct ck_ec_ops *ops, const uint64_t *addr)
{
    (void)ops;
    (void)weft__futex_wake(word64(addr), INT32_MAX);
}

static const struct ck_ec_ops ec_ops = {
    .gettime = ec_gettime,
    .wait32 = ec_wait32,
    .wait64 = ec_wait64,
    .wake32 = ec_wake32,
    .wake64 = ec_wake64,
    /* Short spin before (and again after) setting the waiters flag. */
    .busy_loop_iter = 100,
    /* Above ck's one-second cap: one timed wait, then untimed (see top). */
    .initial_wait_ns = UINT32_MAX,
    /* No growth needed: the first step already reaches the cap. */
    .wait_scale_factor = 1,
    .wait_shift_count = 0,
};

static const struct ck_ec_mode ec_mode = {
    .ops = &ec_ops,
    .single_producer = false,
};

const struct ck_ec_mode *weft__ec_mode(void)
{
    return &ec_mode;
}

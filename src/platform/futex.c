/*
 * futex.c - wait and wake on a 32-bit word.
 *
 * Owns: weft__futex_wait and weft__futex_wake, the only futex system calls
 * weft makes (ec.c parks workers through them).
 *
 * Invariants:
 * - Futexes are process-private (FUTEX_PRIVATE_FLAG): weft never shares a
 *   futex word with another process, and private futexes skip the kernel's
 *   mm lookup.
 * - Deadlines are absolute CLOCK_MONOTONIC nanoseconds, passed to
 *   FUTEX_WAIT_BITSET (which takes an absolute time on CLOCK_MONOTONIC unless
 *   FUTEX_CLOCK_REALTIME is given), so a wait that is interrupted and retried
 *   never stretches its deadline. INT64_MAX means no deadline; a negative
 *   deadline is treated as already passed.
 * - The kernel compares *addr with `expected` atomically with queueing the
 *   waiter: a wake that follows a store to *addr cannot be lost. Callers
 *   still re-check their condition after any return (wake-ups may be
 *   spurious).
 * - Results are returned as negative errno; the caller's errno is preserved.
 */
#include "platform/platform.h"

#include <errno.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

int weft__futex_wait(_Atomic uint32_t *addr, uint32_t expected, int64_t deadline_ns)
{
    struct timespec ts;
    struct timespec *tsp = NULL;
    int saved = errno;
    int rc = 0;

    if (deadline_ns != INT64_MAX) {
        if (deadline_ns < 0)
            deadline_ns = 0;
        ts.tv_sec = (time_t)(deadline_ns / 1000000000);
        ts.tv_nsec = (long)(deadline_ns % 1000000000);
        tsp = &ts;
    }
    if (syscall(SYS_futex, addr, FUTEX_WAIT_BITSET | FUTEX_PRIVATE_FLAG, expected, tsp, NULL,
                FUTEX_BITSET_MATCH_ANY) != 0)
        rc = -errno;
    errno = saved;
    return rc;
}

int weft__futex_wake(_Atomic uint32_t *addr, int n)
{
    int saved = errno;
    long rc;

    if (n <= 0)
        return -EINVAL;
    rc = syscall(SYS_futex, addr, FUTEX_WAKE_PRIVATE, n, NULL, NULL, 0);
    if (rc < 0)
        rc = -errno;
    errno = saved;
    return (int)rc;
}

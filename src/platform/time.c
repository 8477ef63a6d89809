/*
 * time.c - the monotonic clock.
 *
 * Owns: weft__time_now_ns, the single source of "now" for every deadline in
 * weft (public weft_now and the ck_ec ops read the same clock).
 *
 * Invariants: CLOCK_MONOTONIC only, never CLOCK_REALTIME, so deadlines do not
 * move when the wall clock is set. clock_gettime on CLOCK_MONOTONIC is served
 * by the vDSO and cannot fail on Linux with a valid timespec; errno is left
 * untouched.
 */
#include "platform/platform.h"

#include <time.h>

int64_t weft__time_now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

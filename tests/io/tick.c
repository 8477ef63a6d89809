/*
 * io/tick.c - the readiness word's tick at its wrap-around (2^23 events):
 * the driver's increment wraps to 0 without touching the direction bits
 * or the sign bit, a snapshot stays a positive int on both sides of the
 * wrap, and a clear with a snapshot from before the wrap keeps what the
 * event after it announced. The tick is set by hand (internal layout,
 * io/source.h) and the event is applied as the driver would apply it.
 * Also the generation past 2^32 registrations of a slot.
 */
#include <criterion/criterion.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/wt.h"
#include "io/iot.h"
#include "io/source.h"
#include "runtime/runtime_internal.h"

Test(io_tick, wraps_without_losing_an_event, .timeout = 30)
{
    weft_runtime_t *rt = wt_runtime(1);
    int sv[2];
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    weft_io_t io;
    cr_assert_eq(weft_io_register(rt, sv[0], &io), 0);
    weft__source_t *src = io.src_;
    weft__driver_t *d = weft__runtime_driver(rt);
    uint64_t token = (uint64_t)(uint32_t)io.gen_ << 32 | src->index;
    /* The registration's first event (writable) has been applied; nothing
     * else will come, as nobody writes. Then: the last tick before the
     * wrap, with the fd readable. */
    cr_assert(wt_wait_until(writable, &io, 10 * WT_SEC));
    uint32_t top = WEFT__SRC_TICK_MASK << WEFT__SRC_TICK_SHIFT;
    atomic_store(&src->readiness, top | WEFT_IO_READABLE);
    int before = weft_io_ready(io, WEFT_IO_READABLE);
    cr_assert_gt(before, 0, "a snapshot at the top tick is positive: %d", before);
    cr_expect_eq((unsigned)before >> WEFT__SRC_TICK_SHIFT, WEFT__SRC_TICK_MASK);
    /* An event arrives (the driver's path): the tick wraps to 0. */
    weft__source_event(d, token, WEFT_IO_READABLE);
    int after = weft_io_ready(io, WEFT_IO_READABLE);
    cr_assert_gt(after, 0, "%d", after);
    cr_expect_eq((unsigned)after >> WEFT__SRC_TICK_SHIFT, 0u, "the tick wrapped");
    /* The clear with the older snapshot must keep the newer event. */
    weft_io_clear(io, before);
    cr_expect_gt(weft_io_ready(io, WEFT_IO_READABLE), 0, "the event after the wrap was lost");
    /* With the current snapshot the clear works. */
    weft_io_clear(io, after);
    cr_expect_eq(weft_io_ready(io, WEFT_IO_READABLE), 0);
    cr_expect_eq(weft_io_deregister(io), 0);
    close(sv[0]);
    close(sv[1]);
    cr_expect_eq(wt_finish(rt), 0);
}

/* The generation past 2^32 registrations of one slot: a handle from
 * before must stay stale (with 32 bits it matched the new registration
 * and could deregister it: found by review). The slot's gen is moved by
 * hand to just before the wrap; the free list is LIFO, so the next
 * registration takes the same slot. */
Test(io_tick, a_handle_never_matches_a_later_registration, .timeout = 30)
{
    weft_runtime_t *rt = wt_runtime(1);
    int sv[2];
    nb_pair(sv);
    weft_io_t old;
    cr_assert_eq(weft_io_register(rt, sv[0], &old), 0);
    cr_assert_eq(weft_io_deregister(old), 0);
    weft__source_t *src = old.src_;
    atomic_store(&src->gen, old.gen_ + (UINT64_C(1) << 32) - 1);
    weft_io_t io;
    cr_assert_eq(weft_io_register(rt, sv[0], &io), 0);
    cr_assert_eq(io.src_, old.src_, "the slot was not reused");
    cr_assert_eq((uint32_t)io.gen_, (uint32_t)old.gen_, "32 bits of gen wrapped");
    cr_expect_eq(weft_io_ready(old, WEFT_IO_WRITABLE), -EBADF);
    cr_expect_eq(weft_io_fd(old), -EBADF);
    cr_expect_eq(weft_io_deregister(old), -EBADF, "the old handle ended the new registration");
    /* The new registration works, events included (their token carries
     * the low 32 bits). */
    cr_expect(wt_wait_until(writable, &io, 10 * WT_SEC));
    cr_expect_eq(weft_io_fd(io), sv[0]);
    cr_expect_eq(weft_io_deregister(io), 0);
    close(sv[0]);
    close(sv[1]);
    cr_expect_eq(wt_finish(rt), 0);
}

/*
 * io/iot.h - helpers shared by the tests of weft/io.h (header-only: a .c
 * file here would be linked into the suite as a test file of its own).
 *
 * Owns nothing at run time. Provides: a non-blocking AF_UNIX socket pair,
 * a fixture of a runtime with such a pair registered, a way to make a
 * registered fd unwritable, and predicates for wt_wait_until that say whether a
 * handle reads ready for one direction (the test thread polls the snapshot; nothing waits).
 */
#ifndef WEFT_TESTS_IOT_H
#define WEFT_TESTS_IOT_H

#include <criterion/criterion.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/wt.h"

static inline void nb_pair(int sv[2])
{
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
}

/* A runtime and a socket pair whose sv[0] it watches as io. */
typedef struct io_fix {
    weft_runtime_t *rt;
    int sv[2];
    weft_io_t io;
} io_fix_t;

static inline io_fix_t io_fix_open(unsigned workers)
{
    io_fix_t f = {.rt = wt_runtime(workers)};
    nb_pair(f.sv);
    cr_assert_eq(weft_io_register(f.rt, f.sv[0], &f.io), 0);
    return f;
}

/* Deregister (which must succeed), close both ends, free the runtime. */
static inline void io_fix_close(io_fix_t *f)
{
    cr_expect_eq(weft_io_deregister(f->io), 0);
    close(f->sv[0]);
    close(f->sv[1]);
    cr_expect_eq(wt_finish(f->rt), 0);
}

/* For wt_wait_until: arg is a weft_io_t *. */
static inline bool readable(void *arg)
{
    return weft_io_ready(*(weft_io_t *)arg, WEFT_IO_READABLE) > 0;
}

static inline bool writable(void *arg)
{
    return weft_io_ready(*(weft_io_t *)arg, WEFT_IO_WRITABLE) > 0;
}

/* Wait (10 s at most) for the registration's first event, which says
 * writable, so that it cannot arrive after the clear; then fill sv[0]'s
 * way out until it would block and forget the writability the driver
 * reported. True once the fd shows no readiness at all. */
static inline bool make_unwritable(weft_io_t io, int fd)
{
    if (!wt_wait_until(writable, &io, 10 * WT_SEC))
        return false;
    static char chunk[4096];
    for (int round = 0; round < 100; round++) {
        int snap = weft_io_ready(io, WEFT_IO_WRITABLE);
        while (write(fd, chunk, sizeof chunk) > 0) {
        }
        weft_io_clear(io, snap);
        if (weft_io_ready(io, WEFT_IO_READABLE | WEFT_IO_WRITABLE) == 0)
            return true;
    }
    return false;
}

#endif /* WEFT_TESTS_IOT_H */

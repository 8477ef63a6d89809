/*
 * busy.c - timers fire and I/O readiness is seen while every worker is
 * busy. With WEFT_DRIVER_WORKERS nobody waits in the poller then: a busy
 * worker must look at it itself (every WEFT__GLOBAL_INTERVAL ticks), or a
 * task that yields in a loop until a sleeper or a reader flags it would
 * spin forever. With WEFT_DRIVER_THREAD (the _drvthread run) the driver
 * thread does it. The bounded join turns "never" into a failure.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/wt.h"

#define WAIT_NS (10 * WT_SEC)

TestSuite(busy, .timeout = 60);

typedef struct busy {
    _Atomic int done; /* 1: the waiter succeeded; -1: it failed */
    _Atomic int started;
    _Atomic long spins;
    weft_io_t io;
} busy_t;

/* Keeps the worker busy until the waiter reports; never parks. */
static int spinner_coro(void *arg)
{
    busy_t *b = arg;
    while (atomic_load(&b->done) == 0) {
        if (weft_yield() != 0)
            return -1;
        atomic_fetch_add(&b->spins, 1);
    }
    return 0;
}

static int sleeper_coro(void *arg)
{
    busy_t *b = arg;
    atomic_store(&b->started, 1);
    int rc = weft_sleep_for(2 * WT_MS);
    atomic_store(&b->done, rc == 0 ? 1 : -1);
    return rc;
}

static int reader_coro(void *arg)
{
    busy_t *b = arg;
    atomic_store(&b->started, 1);
    int rc = weft_io_wait_ready(b->io, WEFT_IO_READABLE, WEFT_FOREVER);
    atomic_store(&b->done, rc > 0 && (WEFT_IO_MASK(rc) & WEFT_IO_READABLE) ? 1 : -1);
    return rc;
}

static bool started(void *arg)
{
    return atomic_load(&((busy_t *)arg)->started) != 0;
}

/*
 * Spawn the waiter, then the spinner, on one worker; once the spinner owns
 * the worker, write a byte to `poke` if it is an fd (the waiter's peer);
 * join both. `rfd`: the fd the reader waits on, or -1.
 */
static void run(busy_t *b, int (*waiter)(void *), int rfd, int poke)
{
    weft_runtime_t *rt = wt_runtime(1);
    if (rfd >= 0)
        cr_assert_eq(weft_io_register(rt, rfd, &b->io), 0);
    weft_task_t *w, *s;
    cr_assert_eq(weft_spawn_coro(rt, waiter, b, NULL, &w), 0);
    cr_assert(wt_wait_until(started, b, WAIT_NS));
    cr_assert_eq(weft_spawn_coro(rt, spinner_coro, b, NULL, &s), 0);
    if (poke >= 0) {
        int64_t end = weft_now() + WAIT_NS;
        while (atomic_load(&b->spins) < 1000 && weft_now() < end)
            wt_sleep_ns(WT_MS);
        cr_assert_eq(write(poke, "x", 1), 1);
    }
    int64_t out = -1;
    cr_assert_eq(weft_task_join_wait(s, weft_now() + WAIT_NS, &out), 0,
                 "the spinner never saw the waiter finish");
    cr_expect_eq(out, 0);
    cr_assert_eq(weft_task_join_wait(w, weft_now() + WAIT_NS, &out), 0);
    cr_expect_eq(atomic_load(&b->done), 1);
    cr_expect_gt(atomic_load(&b->spins), 0, "the worker was busy meanwhile");
    if (rfd >= 0)
        cr_expect_eq(weft_io_deregister(b->io), 0);
    cr_expect_eq(wt_finish(rt), 0);
}

Test(busy, timer_fires_while_the_only_worker_spins)
{
    static busy_t b; /* outlives a failed test whose spinner still runs */
    memset(&b, 0, sizeof b);
    run(&b, sleeper_coro, -1, -1);
}

Test(busy, readiness_is_seen_while_the_only_worker_spins)
{
    int sv[2];
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
    static busy_t b; /* outlives a failed test whose spinner still runs */
    memset(&b, 0, sizeof b);
    run(&b, reader_coro, sv[0], sv[1]);
    close(sv[0]);
    close(sv[1]);
}

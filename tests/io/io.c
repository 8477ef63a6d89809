/*
 * io/io.c - readiness from the driver thread (weft/io.h): bad input,
 * readable/writable snapshots, the tick that protects a clear, a waiter
 * woken with -EBADF by deregistration, stale handles after slot reuse,
 * cancellation leaving the fd usable, the stackless readiness future, a
 * deadline, many fds at once, and the loop io.h opens with (it must not
 * spin).
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/wt.h"
#include "io/iot.h"
#include "common/suspended.h"

#define WAIT_NS (10 * WT_SEC)

static void put(int fd, const char *s)
{
    cr_assert_eq(write(fd, s, strlen(s)), (ssize_t)strlen(s));
}

Test(io, bad_input, .timeout = 30)
{
    weft_runtime_t *rt = wt_runtime(1);
    weft_io_t io;
    int sv[2];
    nb_pair(sv);
    cr_expect_eq(weft_io_register(NULL, sv[0], &io), -EINVAL);
    cr_expect_eq(weft_io_register(rt, -1, &io), -EINVAL);
    cr_expect_eq(weft_io_register(rt, sv[0], NULL), -EINVAL);
    int closed = dup(sv[0]);
    close(closed);
    cr_expect_eq(weft_io_register(rt, closed, &io), -EBADF);
    cr_expect_eq(io.src_, NULL);
    char path[] = "/tmp/weft-io-XXXXXX";
    int file = mkstemp(path);
    cr_assert_geq(file, 0);
    unlink(path);
    cr_expect_eq(weft_io_register(rt, file, &io), -EPERM, "a regular file cannot be polled");
    close(file);
    cr_assert_eq(weft_io_register(rt, sv[0], &io), 0);
    weft_io_t again;
    cr_expect_eq(weft_io_register(rt, sv[0], &again), -EEXIST);
    cr_expect_eq(weft_io_ready(io, 0), -EINVAL);
    cr_expect_eq(weft_io_ready(io, 8), -EINVAL);
    cr_expect_eq(weft_io_fd(io), sv[0]);
    weft_io_wait_t w;
    cr_expect_eq(weft_io_wait_init(NULL, io, WEFT_IO_READABLE, WEFT_FOREVER), -EINVAL);
    cr_expect_eq(weft_io_wait_init(&w, io, 0, WEFT_FOREVER), -EINVAL);
    cr_expect_eq(weft_io_poll_ready(io, WEFT_IO_READABLE, NULL), -EINVAL);
    cr_expect_eq(weft_io_wait_ready(io, WEFT_IO_READABLE, WEFT_FOREVER), -EPERM,
                 "not in a coroutine");
    cr_expect_eq(weft_io_deregister(io), 0);
    cr_expect_eq(weft_io_deregister(io), -EBADF);
    cr_expect_eq(weft_io_fd(io), -EBADF);
    cr_expect_eq(weft_io_ready(io, WEFT_IO_READABLE), -EBADF);
    cr_expect_eq(weft_io_deregister((weft_io_t){NULL, 0}), -EBADF);
    weft_io_clear(io, 0x101); /* stale: ignored */
    close(sv[0]);
    close(sv[1]);
    cr_expect_eq(wt_finish(rt), 0);
}

/* ---- a coroutine that reads one message --------------------------------------- */

typedef struct reader {
    weft_io_t io;
    int fd;
    int64_t deadline;
    _Atomic int started;
    _Atomic int wait_rc;
    _Atomic int got;
    char buf[64];
} reader_t;

static int reader_coro(void *arg)
{
    reader_t *r = arg;
    atomic_store(&r->started, 1);
    for (;;) {
        /* The snapshot is taken before the read (io.h): taken after the
         * EAGAIN it could include an event that came in between, which
         * the clear would then erase, and the wait would never end. */
        int snap = weft_io_ready(r->io, WEFT_IO_READABLE);
        ssize_t n = read(r->fd, r->buf, sizeof r->buf);
        if (n >= 0) {
            atomic_store(&r->got, (int)n);
            return 0;
        }
        if (errno != EAGAIN)
            return -errno;
        weft_io_clear(r->io, snap);
        int w = weft_io_wait_ready(r->io, WEFT_IO_READABLE, r->deadline);
        atomic_store(&r->wait_rc, w);
        if (w < 0)
            return w;
    }
}

static bool started(void *arg)
{
    return atomic_load(&((reader_t *)arg)->started) != 0;
}

/* Register fd, start a reader coroutine on it (no deadline) and wait until
 * it runs. */
static weft_task_t *start_reader(weft_runtime_t *rt, reader_t *r, int fd)
{
    memset(r, 0, sizeof *r);
    r->fd = fd;
    r->deadline = WEFT_FOREVER;
    cr_assert_eq(weft_io_register(rt, fd, &r->io), 0);
    weft_task_t *h;
    cr_assert_eq(weft_spawn_coro(rt, reader_coro, r, NULL, &h), 0);
    cr_assert(wt_wait_until(started, r, WAIT_NS));
    return h;
}

Test(io, readable_wakes_a_coroutine, .timeout = 30)
{
    weft_runtime_t *rt = wt_runtime(2);
    int sv[2];
    nb_pair(sv);
    reader_t r;
    weft_task_t *h = start_reader(rt, &r, sv[0]);
    wt_wait_suspended(h); /* blocked in the wait, the only place it can */
    put(sv[1], "hello");
    int64_t out = -1;
    cr_assert_eq(weft_task_join_wait(h, weft_now() + WAIT_NS, &out), 0);
    cr_expect_eq(out, 0);
    cr_expect_eq(atomic_load(&r.got), 5);
    cr_expect_eq(memcmp(r.buf, "hello", 5), 0);
    int w = atomic_load(&r.wait_rc);
    cr_expect(w > 0 && (WEFT_IO_MASK(w) & WEFT_IO_READABLE), "snapshot %d", w);
    cr_expect_eq(weft_io_deregister(r.io), 0);
    close(sv[0]);
    close(sv[1]);
    cr_expect_eq(wt_finish(rt), 0);
}

Test(io, clear_keeps_newer_readiness, .timeout = 30)
{
    weft_runtime_t *rt = wt_runtime(1);
    int sv[2];
    nb_pair(sv);
    weft_io_t io;
    cr_assert_eq(weft_io_register(rt, sv[0], &io), 0);
    cr_assert(wt_wait_until(writable, &io, WAIT_NS), "a fresh socket is writable");
    cr_expect_eq(weft_io_ready(io, WEFT_IO_READABLE), 0);
    put(sv[1], "a");
    cr_assert(wt_wait_until(readable, &io, WAIT_NS));
    int s1 = weft_io_ready(io, WEFT_IO_READABLE);
    cr_expect_eq(WEFT_IO_MASK(s1), WEFT_IO_READABLE, "only the directions asked for");
    char c[8];
    cr_assert_eq(read(sv[0], c, sizeof c), 1);
    /* A new edge before the clear: the clear with the old snapshot must
     * not erase it. */
    put(sv[1], "b");
    bool moved = false;
    for (int i = 0; i < 100000 && !moved; i++) {
        int s = weft_io_ready(io, WEFT_IO_READABLE);
        moved = s > 0 && s != s1;
        if (!moved)
            wt_sleep_ns(50000);
    }
    cr_assert(moved, "the tick changed with the second event");
    weft_io_clear(io, s1);
    cr_expect_gt(weft_io_ready(io, WEFT_IO_READABLE), 0, "the newer readiness survived");
    /* No snapshot yet (0) or a wait's error: nothing is cleared. */
    weft_io_clear(io, 0);
    weft_io_clear(io, -ETIMEDOUT);
    cr_expect_gt(weft_io_ready(io, WEFT_IO_READABLE), 0, "a clear without a snapshot cleared");
    /* A clear with the current snapshot does clear. */
    cr_assert_eq(read(sv[0], c, sizeof c), 1);
    int s2 = weft_io_ready(io, WEFT_IO_READABLE);
    weft_io_clear(io, s2);
    cr_expect_eq(weft_io_ready(io, WEFT_IO_READABLE), 0);
    cr_expect_gt(weft_io_ready(io, WEFT_IO_WRITABLE), 0, "the other direction is kept");
    cr_expect_eq(weft_io_deregister(io), 0);
    close(sv[0]);
    close(sv[1]);
    cr_expect_eq(wt_finish(rt), 0);
}

Test(io, deregister_wakes_the_waiter_with_ebadf, .timeout = 30)
{
    weft_runtime_t *rt = wt_runtime(2);
    int sv[2];
    nb_pair(sv);
    reader_t r;
    weft_task_t *h = start_reader(rt, &r, sv[0]);
    wt_wait_suspended(h);
    cr_assert_eq(weft_io_deregister(r.io), 0);
    int64_t out = 0;
    cr_assert_eq(weft_task_join_wait(h, weft_now() + WAIT_NS, &out), 0);
    cr_expect_eq(out, -EBADF);
    close(sv[0]);
    close(sv[1]);
    cr_expect_eq(wt_finish(rt), 0);
}

/* weft_io_close: the waiter hears -EBADF, the fd is closed; a stale
 * handle closes nothing (the fd number may be someone else's by then). */
Test(io, close_deregisters_then_closes, .timeout = 30)
{
    weft_runtime_t *rt = wt_runtime(2);
    int sv[2];
    nb_pair(sv);
    reader_t r;
    weft_task_t *h = start_reader(rt, &r, sv[0]);
    wt_wait_suspended(h);
    cr_assert_eq(weft_io_close(r.io), 0);
    int64_t out = 0;
    cr_assert_eq(weft_task_join_wait(h, weft_now() + WAIT_NS, &out), 0);
    cr_expect_eq(out, -EBADF);
    cr_expect_eq(fcntl(sv[0], F_GETFD), -1, "the fd was closed");
    cr_expect_eq(weft_io_close(r.io), -EBADF);
    /* A stale handle whose fd number is open again: left alone. */
    int again[2];
    nb_pair(again);
    weft_io_t io;
    cr_assert_eq(weft_io_register(rt, again[0], &io), 0);
    cr_assert_eq(weft_io_deregister(io), 0);
    cr_expect_eq(weft_io_close(io), -EBADF);
    cr_expect_eq(weft_io_close((weft_io_t){NULL, 0}), -EBADF);
    cr_expect_geq(fcntl(again[0], F_GETFD), 0, "a stale handle closed an fd");
    close(again[0]);
    close(again[1]);
    close(sv[1]);
    cr_expect_eq(wt_finish(rt), 0);
}

/*
 * A library that close()s a registered fd without deregistering it, whose
 * number the kernel then hands out again: registering the new file
 * retires the old source. Its waiter is woken with -EBADF (it slept on a
 * file that is gone), and its handle, now stale, neither removes the new
 * registration from epoll nor closes the new file. Found by a libcurl
 * trial: before, the late deregister made the new socket's waits time out.
 */
Test(io, closed_underneath_and_reused_fd_retires_the_old_source, .timeout = 30)
{
    weft_runtime_t *rt = wt_runtime(2);
    int a[2], b[2];
    nb_pair(a);
    nb_pair(b);
    reader_t r;
    weft_task_t *h = start_reader(rt, &r, a[0]);
    wt_wait_suspended(h);
    int num = a[0];
    cr_assert_eq(close(a[0]), 0);       /* behind weft's back */
    cr_assert_eq(dup2(b[0], num), num); /* the number comes back, another file */
    close(b[0]);
    weft_io_t io;
    cr_assert_eq(weft_io_register(rt, num, &io), 0);
    int64_t out = 0;
    cr_assert_eq(weft_task_join_wait(h, weft_now() + WAIT_NS, &out), 0, "the old waiter slept on");
    cr_expect_eq(out, -EBADF);
    cr_expect_eq(weft_io_ready(r.io, WEFT_IO_READABLE), -EBADF);
    cr_expect_eq(weft_io_deregister(r.io), -EBADF);
    cr_expect_eq(weft_io_close(r.io), -EBADF);
    cr_expect_geq(fcntl(num, F_GETFD), 0, "the stale handle closed the new file");
    cr_expect_eq(weft_io_fd(io), num);
    put(b[1], "x");
    cr_expect(wt_wait_until(readable, &io, WAIT_NS), "the new registration still reports");
    cr_expect_eq(weft_io_close(io), 0);
    close(a[1]);
    close(b[1]);
    cr_expect_eq(wt_finish(rt), 0);
}

Test(io, stale_handle_after_slot_reuse, .timeout = 30)
{
    weft_runtime_t *rt = wt_runtime(1);
    int a[2], b[2];
    nb_pair(a);
    nb_pair(b);
    weft_io_t h1, h2;
    cr_assert_eq(weft_io_register(rt, a[0], &h1), 0);
    cr_assert_eq(weft_io_deregister(h1), 0);
    cr_assert_eq(weft_io_register(rt, b[0], &h2), 0);
    cr_expect_eq(h1.src_, h2.src_, "the slot is reused");
    cr_expect_eq(weft_io_fd(h1), -EBADF);
    cr_expect_eq(weft_io_ready(h1, WEFT_IO_READABLE), -EBADF);
    cr_expect_eq(weft_io_deregister(h1), -EBADF);
    cr_expect_eq(weft_io_fd(h2), b[0]);
    put(b[1], "x");
    cr_expect(wt_wait_until(readable, &h2, WAIT_NS));
    /* a[0] can be registered again after its deregistration */
    weft_io_t h3;
    cr_expect_eq(weft_io_register(rt, a[0], &h3), 0);
    cr_expect_eq(weft_io_deregister(h3), 0);
    cr_expect_eq(weft_io_deregister(h2), 0);
    close(a[0]);
    close(a[1]);
    close(b[0]);
    close(b[1]);
    cr_expect_eq(wt_finish(rt), 0);
}

Test(io, cancelled_wait_leaves_the_fd_usable, .timeout = 30)
{
    weft_runtime_t *rt = wt_runtime(2);
    int sv[2];
    nb_pair(sv);
    reader_t r;
    weft_task_t *h = start_reader(rt, &r, sv[0]);
    wt_wait_suspended(h);
    cr_assert_eq(weft_task_cancel(h), 0);
    int64_t out = 0;
    cr_expect_eq(weft_task_join_wait(h, weft_now() + WAIT_NS, &out), -ECANCELED);
    cr_expect_eq(atomic_load(&r.wait_rc), -ECANCELED);
    /* The registration survived: a second reader gets the data. */
    reader_t r2 = {.io = r.io, .fd = sv[0], .deadline = WEFT_FOREVER};
    cr_assert_eq(weft_spawn_coro(rt, reader_coro, &r2, NULL, &h), 0);
    put(sv[1], "again");
    cr_assert_eq(weft_task_join_wait(h, weft_now() + WAIT_NS, &out), 0);
    cr_expect_eq(atomic_load(&r2.got), 5);
    cr_expect_eq(weft_io_deregister(r.io), 0);
    close(sv[0]);
    close(sv[1]);
    cr_expect_eq(wt_finish(rt), 0);
}

Test(io, stackless_readiness_future, .timeout = 30)
{
    weft_runtime_t *rt = wt_runtime(2);
    int sv[2];
    nb_pair(sv);
    weft_io_t io;
    cr_assert_eq(weft_io_register(rt, sv[0], &io), 0);
    weft_io_wait_t w;
    cr_assert_eq(weft_io_wait_init(&w, io, WEFT_IO_READABLE, WEFT_FOREVER), 0);
    weft_task_t *h;
    cr_assert_eq(weft_spawn(rt, &weft_io_wait_vtable, &w, sizeof w, &h), 0);
    wt_wait_suspended(h);
    cr_expect_not(weft_task_is_finished(h));
    put(sv[1], "z");
    int64_t out = 0;
    cr_assert_eq(weft_task_join_wait(h, weft_now() + WAIT_NS, &out), 0);
    cr_expect(out > 0 && (WEFT_IO_MASK(out) & WEFT_IO_READABLE), "snapshot %lld", (long long)out);
    cr_expect_eq(weft_io_deregister(io), 0);
    close(sv[0]);
    close(sv[1]);
    cr_expect_eq(wt_finish(rt), 0);
}

Test(io, deadline_times_out, .timeout = 30)
{
    weft_runtime_t *rt = wt_runtime(1);
    int sv[2];
    nb_pair(sv);
    reader_t r = {.fd = sv[0]};
    cr_assert_eq(weft_io_register(rt, sv[0], &r.io), 0);
    int64_t t0 = weft_now();
    r.deadline = t0 + 30 * WT_MS;
    weft_task_t *h;
    cr_assert_eq(weft_spawn_coro(rt, reader_coro, &r, NULL, &h), 0);
    int64_t out = 0;
    cr_assert_eq(weft_task_join_wait(h, weft_now() + WAIT_NS, &out), 0);
    cr_expect_eq(out, -ETIMEDOUT);
    cr_expect_geq(weft_now(), r.deadline, "never early");
    /* The fd is still registered and works after a timeout. */
    put(sv[1], "late");
    cr_expect(wt_wait_until(readable, &r.io, WAIT_NS));
    cr_expect_eq(weft_io_deregister(r.io), 0);
    close(sv[0]);
    close(sv[1]);
    cr_expect_eq(wt_finish(rt), 0);
}

#define MANY 200

Test(io, many_fds_each_wake_their_own_task, .timeout = 60)
{
    weft_runtime_t *rt = wt_runtime(2);
    static int sv[MANY][2];
    static reader_t r[MANY];
    weft_task_t *h[MANY];
    for (int i = 0; i < MANY; i++) {
        nb_pair(sv[i]);
        memset(&r[i], 0, sizeof r[i]);
        r[i].fd = sv[i][0];
        r[i].deadline = WEFT_FOREVER;
        cr_assert_eq(weft_io_register(rt, sv[i][0], &r[i].io), 0);
        cr_assert_eq(weft_spawn_coro(rt, reader_coro, &r[i], NULL, &h[i]), 0);
    }
    for (int i = MANY - 1; i >= 0; i--) {
        char msg[16];
        snprintf(msg, sizeof msg, "m%d", i);
        put(sv[i][1], msg);
    }
    for (int i = 0; i < MANY; i++) {
        int64_t out = -1;
        cr_assert_eq(weft_task_join_wait(h[i], weft_now() + WAIT_NS, &out), 0);
        cr_expect_eq(out, 0);
        char msg[16];
        int n = snprintf(msg, sizeof msg, "m%d", i);
        cr_expect_eq(atomic_load(&r[i].got), n);
        cr_expect_eq(memcmp(r[i].buf, msg, (size_t)n), 0);
        cr_expect_eq(weft_io_deregister(r[i].io), 0);
        close(sv[i][0]);
        close(sv[i][1]);
    }
    cr_expect_eq(wt_finish(rt), 0);
}

/* A task still waiting at shutdown is cancelled; the driver drops every
 * waker it holds, so the runtime frees (no -EBUSY). */
Test(io, shutdown_with_a_waiter_and_a_registration, .timeout = 30)
{
    weft_runtime_t *rt = wt_runtime(1);
    int sv[2];
    nb_pair(sv);
    reader_t r;
    cr_assert_eq(weft_task_detach(start_reader(rt, &r, sv[0])), 0);
    wt_sleep_ns(10 * WT_MS);
    cr_expect_eq(wt_finish(rt), 0);
    cr_expect_eq(atomic_load(&r.wait_rc), -ECANCELED);
    close(sv[0]);
    close(sv[1]);
}

/* A peer's hang-up sets WEFT_IO_HUP, and a clear of the read direction
 * keeps it (so a short read with HUP set is not mistaken for drained). */
Test(io, hangup_bit_is_sticky, .timeout = 30)
{
    weft_runtime_t *rt = wt_runtime(1);
    int sv[2];
    nb_pair(sv);
    weft_io_t io;
    cr_assert_eq(weft_io_register(rt, sv[0], &io), 0);
    cr_assert(wt_wait_until(writable, &io, WAIT_NS));
    cr_expect_eq(weft_io_ready(io, WEFT_IO_WRITABLE) & (int)WEFT_IO_HUP, 0);
    put(sv[1], "ab");
    cr_assert_eq(shutdown(sv[1], SHUT_WR), 0);
    bool hup = false;
    for (int i = 0; i < 100000 && !hup; i++) {
        hup = (weft_io_ready(io, WEFT_IO_READABLE) & (int)WEFT_IO_HUP) != 0;
        if (!hup)
            wt_sleep_ns(50000);
    }
    cr_assert(hup, "the hang-up is reported");
    int s = weft_io_ready(io, WEFT_IO_READABLE);
    char c[8];
    cr_expect_eq(read(sv[0], c, sizeof c), 2);
    weft_io_clear(io, s);
    cr_expect_eq(weft_io_ready(io, WEFT_IO_READABLE), 0, "the direction was cleared");
    cr_expect_neq(weft_io_ready(io, WEFT_IO_WRITABLE) & (int)WEFT_IO_HUP, 0, "HUP stays");
    cr_expect_eq(read(sv[0], c, sizeof c), 0, "end of stream");
    cr_expect_eq(weft_io_deregister(io), 0);
    close(sv[0]);
    close(sv[1]);
    cr_expect_eq(wt_finish(rt), 0);
}

/* A waiter must hear of its deregistration even when the slot is reused at
 * once by another registration (the wakers leave the slot under the lock,
 * before it is free). */
Test(io, deregister_then_immediate_reuse_still_wakes, .timeout = 60)
{
    weft_runtime_t *rt = wt_runtime(2);
    for (int round = 0; round < 50; round++) {
        int a[2], b[2];
        nb_pair(a);
        nb_pair(b);
        reader_t r;
        weft_task_t *h = start_reader(rt, &r, a[0]);
        if (round % 2)
            wt_sleep_ns(1 * WT_MS);
        weft_io_t other;
        cr_assert_eq(weft_io_deregister(r.io), 0);
        cr_assert_eq(weft_io_register(rt, b[0], &other), 0);
        int64_t out = 0;
        cr_assert_eq(weft_task_join_wait(h, weft_now() + WAIT_NS, &out), 0, "round %d", round);
        cr_expect_eq(out, -EBADF, "round %d: %lld", round, (long long)out);
        cr_expect_eq(weft_io_deregister(other), 0);
        close(a[0]);
        close(a[1]);
        close(b[0]);
        close(b[1]);
    }
    cr_expect_eq(wt_finish(rt), 0);
}

/* ---- the loop at the top of io.h ----------------------------------------------- */

#define EX_MSGS 20

typedef struct example {
    weft_io_t io;
    int fd;
    _Atomic int sent, got;
    _Atomic int waits;
} example_t;

/* io.h's example, reading EX_MSGS one-byte messages. */
static int example_coro(void *arg)
{
    example_t *e = arg;
    int r = 0;
    while (atomic_load(&e->got) < EX_MSGS) {
        char c;
        ssize_t n = read(e->fd, &c, 1);
        if (n == 1) {
            atomic_fetch_add(&e->got, 1);
            continue;
        }
        if (n >= 0 || errno != EAGAIN)
            return -EIO;
        weft_io_clear(e->io, r);
        r = weft_io_wait_ready(e->io, WEFT_IO_READABLE, weft_now() + WAIT_NS);
        atomic_fetch_add(&e->waits, 1);
        if (r < 0)
            return r;
    }
    return 0;
}

static bool caught_up(void *arg)
{
    example_t *e = arg;
    return atomic_load(&e->got) == atomic_load(&e->sent);
}

/* The example clears what its last wait saw before it waits again, so each
 * message costs about one wait. Without the clear, readiness stays set
 * and every wait returns at once: the loop spins (millions of waits). */
Test(io, header_example_waits_once_per_message, .timeout = 30)
{
    weft_runtime_t *rt = wt_runtime(2);
    int sv[2];
    nb_pair(sv);
    example_t e;
    memset(&e, 0, sizeof e);
    e.fd = sv[0];
    cr_assert_eq(weft_io_register(rt, sv[0], &e.io), 0);
    weft_task_t *h;
    cr_assert_eq(weft_spawn_coro(rt, example_coro, &e, NULL, &h), 0);
    for (int i = 0; i < EX_MSGS; i++) {
        wt_sleep_ns(2 * WT_MS); /* let it wait (a spinning loop counts here) */
        put(sv[1], "x");
        atomic_fetch_add(&e.sent, 1);
        cr_assert(wt_wait_until(caught_up, &e, WAIT_NS), "message %d", i);
    }
    int64_t out = -1;
    cr_assert_eq(weft_task_join_wait(h, weft_now() + WAIT_NS, &out), 0);
    cr_expect_eq(out, 0);
    int waits = atomic_load(&e.waits);
    cr_expect_leq(waits, 4 * EX_MSGS, "%d waits for %d messages", waits, EX_MSGS);
    cr_expect_eq(weft_io_close(e.io), 0); /* as the example ends */
    close(sv[1]);
    cr_expect_eq(wt_finish(rt), 0);
}

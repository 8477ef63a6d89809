/*
 * net/close.c - closing an object another task waits on: a reader, a
 * writer (send buffer full) and an accept are woken with -EBADF, from a
 * coroutine and from a stackless task, with close called from a plain
 * thread; the object lives until the waiter's operation is dropped (no
 * use-after-free: ASan), and the fd is closed then (the peer sees end of
 * stream).
 */
#include <criterion/criterion.h>
#include <errno.h>

#include "net/nt.h"
#include "common/suspended.h"
#include "net/net.h"

#define WAIT_NS (20 * WT_SEC)

/* A connected pair made from the test thread: a weft stream and a plain
 * blocking socket for the peer. */
static weft_tcp_stream_t *pair_plain(weft_runtime_t *rt, int *peer)
{
    weft_tcp_listener_t *l;
    struct sockaddr_storage addr;
    cr_assert_eq(nt_listen(rt, AF_INET, &l, &addr), 0);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert_geq(fd, 0);
    cr_assert_eq(connect(fd, (struct sockaddr *)&addr, sizeof(struct sockaddr_in)), 0);
    /* accept from a coroutine-free context: poll the future on a task. */
    weft_tcp_accept_t acc;
    weft_tcp_stream_t *s = NULL;
    cr_assert_eq(weft_tcp_accept_init(&acc, l, &s, NULL, weft_now() + WAIT_NS), 0);
    weft_task_t *h;
    cr_assert_eq(weft_spawn(rt, &weft_tcp_accept_vtable, &acc, sizeof acc, &h), 0);
    int64_t v = 1;
    cr_assert_eq(weft_task_join_wait(h, weft_now() + WAIT_NS, &v), 0);
    cr_assert_eq(v, 0);
    /* The task's copy of the future wrote s through the pointer given at init. */
    cr_assert_not_null(s);
    cr_assert_eq(weft_tcp_listener_close(l), 0);
    *peer = fd;
    return s;
}

typedef struct waiter {
    weft_tcp_stream_t *s;
    uint8_t *buf;
    size_t len;
    _Atomic int rc;
    _Atomic size_t done;
} waiter_t;

static int read_waiter(void *arg)
{
    waiter_t *w = arg;
    atomic_store(&w->rc, weft_tcp_read(w->s, w->buf, w->len, weft_now() + WAIT_NS));
    return 0;
}

static int write_waiter(void *arg)
{
    waiter_t *w = arg;
    size_t done = 0;
    int rc = weft_tcp_write_all(w->s, w->buf, w->len, weft_now() + WAIT_NS, &done);
    atomic_store(&w->done, done);
    atomic_store(&w->rc, rc);
    return 0;
}

typedef struct refs_arg {
    weft_tcp_stream_t *s;
    uint32_t want;
} refs_arg_t;

static bool refs_reached(void *arg)
{
    refs_arg_t *r = arg;
    return weft__tcp_stream_refs(r->s) >= r->want;
}

/* Wait until h's operation holds s (its future was initialised) and h is
 * blocked in it (the only place it can suspend). */
static void wait_in_flight(weft_tcp_stream_t *s, weft_task_t *h)
{
    refs_arg_t r = {s, 2};
    cr_assert(wt_wait_until(refs_reached, &r, WAIT_NS));
    wt_wait_suspended(h);
}

static void peer_sees_eof(int fd)
{
    /* Drain whatever was written, then expect end of stream (or a reset). */
    struct timeval tv = {10, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    char b[65536];
    ssize_t n;
    while ((n = read(fd, b, sizeof b)) > 0) {
    }
    cr_expect(n == 0 || (n < 0 && errno == ECONNRESET), "peer: %zd errno %d", n, errno);
}

/* A reader waits on a fresh stream; close_fn ends the stream under it,
 * and the reader's read ends with -EBADF. Returns the peer's fd. */
static int reader_ended_by(weft_runtime_t *rt, int (*close_fn)(weft_tcp_stream_t *))
{
    int peer;
    weft_tcp_stream_t *s = pair_plain(rt, &peer);
    uint8_t buf[64];
    waiter_t w = {s, buf, sizeof buf, 1, 0};
    weft_task_t *h;
    cr_assert_eq(weft_spawn_coro(rt, read_waiter, &w, NULL, &h), 0);
    wait_in_flight(s, h);
    cr_expect_eq(close_fn(s), 0);
    cr_expect_eq(weft_task_join_wait(h, weft_now() + WAIT_NS, NULL), 0);
    cr_expect_eq(atomic_load(&w.rc), -EBADF);
    return peer;
}

Test(net_close, reader_woken_with_ebadf, .timeout = 60)
{
    weft_runtime_t *rt = wt_runtime(2);
    int peer = reader_ended_by(rt, weft_tcp_close);
    peer_sees_eof(peer);
    close(peer);
    cr_expect_eq(wt_finish(rt), 0);
}

/* An abortive close resets the connection: the peer's read fails with
 * ECONNRESET instead of reading end of stream; the waiting reader on our
 * side ends with -EBADF as for weft_tcp_close. */
Test(net_close, abort_resets_the_connection, .timeout = 60)
{
    weft_runtime_t *rt = wt_runtime(2);
    int peer = reader_ended_by(rt, weft_tcp_abort);
    struct timeval tv = {10, 0};
    setsockopt(peer, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    char b[16];
    errno = 0;
    cr_expect_eq(read(peer, b, sizeof b), -1);
    cr_expect_eq(errno, ECONNRESET, "errno %d", errno);
    close(peer);
    cr_expect_eq(weft_tcp_abort(NULL), -EINVAL);
    cr_expect_eq(wt_finish(rt), 0);
}

Test(net_close, writer_woken_with_ebadf, .timeout = 60)
{
    weft_runtime_t *rt = wt_runtime(2);
    int peer;
    weft_tcp_stream_t *s = pair_plain(rt, &peer);
    size_t len = 64u << 20; /* far more than the socket buffers hold */
    waiter_t w = {s, calloc(1, len), len, 1, 0};
    weft_task_t *h;
    cr_assert_eq(weft_spawn_coro(rt, write_waiter, &w, NULL, &h), 0);
    wait_in_flight(s, h);
    cr_expect_eq(weft_tcp_close(s), 0);
    cr_expect_eq(weft_task_join_wait(h, weft_now() + WAIT_NS, NULL), 0);
    cr_expect_eq(atomic_load(&w.rc), -EBADF);
    cr_expect_lt(atomic_load(&w.done), len);
    peer_sees_eof(peer);
    close(peer);
    free(w.buf);
    cr_expect_eq(wt_finish(rt), 0);
}

/* A stackless task polling the read future: it completes with -EBADF. */
Test(net_close, stackless_reader_woken_with_ebadf, .timeout = 60)
{
    weft_runtime_t *rt = wt_runtime(1);
    int peer;
    weft_tcp_stream_t *s = pair_plain(rt, &peer);
    static uint8_t buf[64];
    weft_tcp_read_t f;
    cr_assert_eq(weft_tcp_read_init(&f, s, buf, sizeof buf, WEFT_FOREVER), 0);
    weft_task_t *h;
    cr_assert_eq(weft_spawn(rt, &weft_tcp_read_vtable, &f, sizeof f, &h), 0);
    /* The spawn moved f (and its reference) into the task, which drops it. */
    wt_wait_suspended(h);
    cr_expect_eq(weft_tcp_close(s), 0);
    int64_t v = 0;
    cr_expect_eq(weft_task_join_wait(h, weft_now() + WAIT_NS, &v), 0);
    cr_expect_eq(v, -EBADF);
    peer_sees_eof(peer);
    close(peer);
    cr_expect_eq(wt_finish(rt), 0);
}

/* The fd stays open while an operation is in flight, and closes when it ends. */
Test(net_close, fd_closed_after_last_operation, .timeout = 60)
{
    weft_runtime_t *rt = wt_runtime(1);
    int peer;
    weft_tcp_stream_t *s = pair_plain(rt, &peer);
    static uint8_t buf[64];
    weft_tcp_read_t f;
    /* An initialised, never polled future holds the stream. */
    cr_assert_eq(weft_tcp_read_init(&f, s, buf, sizeof buf, WEFT_FOREVER), 0);
    cr_expect_eq(weft__tcp_stream_refs(s), 2);
    cr_expect_eq(weft_tcp_close(s), 0);
    /* Polling it now (from a task) reports -EBADF. */
    weft_task_t *h;
    cr_assert_eq(weft_spawn(rt, &weft_tcp_read_vtable, &f, sizeof f, &h), 0);
    int64_t v = 0;
    cr_expect_eq(weft_task_join_wait(h, weft_now() + WAIT_NS, &v), 0);
    cr_expect_eq(v, -EBADF);
    peer_sees_eof(peer);
    close(peer);
    cr_expect_eq(wt_finish(rt), 0);
}

typedef struct acc_waiter {
    weft_tcp_listener_t *l;
    _Atomic int rc;
} acc_waiter_t;

static int accept_waiter(void *arg)
{
    acc_waiter_t *a = arg;
    weft_tcp_stream_t *s;
    int rc = weft_tcp_accept(a->l, &s, NULL, weft_now() + WAIT_NS);
    if (rc == 0)
        weft_tcp_close(s);
    atomic_store(&a->rc, rc);
    return 0;
}

static bool listener_held(void *arg)
{
    return weft__tcp_listener_refs(arg) >= 2;
}

Test(net_close, accept_woken_with_ebadf, .timeout = 60)
{
    weft_runtime_t *rt = wt_runtime(2);
    weft_tcp_listener_t *l;
    struct sockaddr_storage addr;
    cr_assert_eq(nt_listen(rt, AF_INET, &l, &addr), 0);
    acc_waiter_t a = {l, 1};
    weft_task_t *h;
    cr_assert_eq(weft_spawn_coro(rt, accept_waiter, &a, NULL, &h), 0);
    cr_assert(wt_wait_until(listener_held, l, WAIT_NS));
    wt_wait_suspended(h);
    cr_expect_eq(weft_tcp_listener_close(l), 0);
    cr_expect_eq(weft_task_join_wait(h, weft_now() + WAIT_NS, NULL), 0);
    cr_expect_eq(atomic_load(&a.rc), -EBADF);
    /* Nobody listens any more. */
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_expect_neq(connect(fd, (struct sockaddr *)&addr, sizeof(struct sockaddr_in)), 0);
    close(fd);
    cr_expect_eq(wt_finish(rt), 0);
}

/* Closing from a task while the reader runs on another worker, many times:
 * whichever wins, the reader ends with -EBADF or its data, never hangs. */
typedef struct race {
    weft_tcp_stream_t *s;
    _Atomic int rc;
} race_t;

static int race_reader(void *arg)
{
    race_t *r = arg;
    uint8_t b[16];
    atomic_store(&r->rc, weft_tcp_read(r->s, b, sizeof b, weft_now() + WAIT_NS));
    return 0;
}

Test(net_close, close_races_reader, .timeout = 120)
{
    weft_runtime_t *rt = wt_runtime(2);
    for (int i = 0; i < 100; i++) {
        int peer;
        weft_tcp_stream_t *s = pair_plain(rt, &peer);
        race_t r = {s, 1};
        weft_task_t *h;
        cr_assert_eq(weft_spawn_coro(rt, race_reader, &r, NULL, &h), 0);
        refs_arg_t ra = {s, 2};
        cr_assert(wt_wait_until(refs_reached, &ra, WAIT_NS));
        if (i % 2)
            cr_assert_eq(write(peer, "x", 1), 1);
        weft_tcp_close(s);
        cr_assert_eq(weft_task_join_wait(h, weft_now() + WAIT_NS, NULL), 0);
        int rc = atomic_load(&r.rc);
        cr_expect(rc == -EBADF || rc == 1, "round %d: %d", i, rc);
        close(peer);
    }
    cr_expect_eq(wt_finish(rt), 0);
}

/* Close stops listening when it returns, although an accept still waits
 * (one worker, and the closing coroutine does not yield: the accept cannot
 * have ended yet): a connect is refused, and the address can be listened
 * on again at once. */
typedef struct stop {
    int close_rc, connect_err, relisten_rc;
    acc_waiter_t a;
} stop_t;

static int close_then_probe(void *arg)
{
    stop_t *x = arg;
    weft_task_t *h;
    struct sockaddr_storage addr;
    if (nt_listen(NULL, AF_INET, &x->a.l, &addr) != 0 ||
        weft_spawn_coro(weft_runtime_current(), accept_waiter, &x->a, NULL, &h) != 0)
        return -1;
    for (int i = 0; i < 5000 && !wt_task_suspended(h); i++)
        weft_sleep_for(WT_MS);
    x->close_rc = weft_tcp_listener_close(x->a.l);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    x->connect_err =
        connect(fd, (struct sockaddr *)&addr, sizeof(struct sockaddr_in)) == 0 ? 0 : errno;
    close(fd);
    weft_tcp_listener_t *again = NULL;
    x->relisten_rc =
        weft_tcp_listen(NULL, (struct sockaddr *)&addr, sizeof(struct sockaddr_in), 16, &again);
    if (again)
        weft_tcp_listener_close(again);
    return weft_join(h, NULL);
}

Test(net_close, listener_close_stops_listening_at_once, .timeout = 60)
{
    weft_runtime_t *rt = wt_runtime(1);
    stop_t x = {1, -1, 1, {NULL, 1}};
    int result = -1;
    cr_assert_eq(weft_runtime_run_coro(rt, close_then_probe, &x, NULL, &result), 0);
    cr_expect_eq(result, 0);
    cr_expect_eq(x.close_rc, 0);
    cr_expect_eq(x.connect_err, ECONNREFUSED, "connect after close: %s", strerror(x.connect_err));
    cr_expect_eq(x.relisten_rc, 0, "listen again: %s", weft_strerror(x.relisten_rc));
    cr_expect_eq(atomic_load(&x.a.rc), -EBADF, "the waiting accept");
    cr_expect_eq(wt_finish(rt), 0);
}

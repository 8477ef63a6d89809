/*
 * stream.c - the TCP stream: its object and reference count, the four
 * transfer futures (read, write, read_exact, write_all) and their coroutine
 * calls, shutdown, close and the socket options.
 *
 * Owns: struct weft_tcp_stream (net.h states its invariants) and
 * weft_tcp_xfer_t. The invariants of a transfer future:
 * - From init to drop it holds one reference on its stream (none after a
 *   failed init: err_ is set, s_ is NULL, poll reports err_).
 * - Every system call happens inside one poll, and a poll that moved bytes
 *   returns READY in that same poll (read / write) or records them in done_
 *   and *done_out_ before returning (read_exact / write_all). So a future
 *   dropped while pending has moved exactly done_ bytes (0 for read/write).
 * - The syscall is made only when the driver's readiness snapshot says the
 *   direction is ready, or once at the deadline (xfer_step); EAGAIN clears
 *   that snapshot (weft_io_clear) before the future waits. A short
 *   transfer (fewer bytes than asked) clears it at once too, saving the
 *   EAGAIN call that would follow (as Tokio does): a short write means the
 *   send buffer filled, a short read that the receive queue drained. A
 *   newer event (data or an error that arrives meanwhile) moved the tick,
 *   so weft_io_clear keeps it. A short read with WEFT_IO_HUP in the
 *   snapshot does not clear: the end of stream or reset came with the same
 *   event as the last data, and the next read must see it. Nor does one
 *   with WEFT_IO_PRI (TCP's read stops at the urgent mark with data behind
 *   it), nor any short read of a stream that is not TCP (an AF_UNIX read
 *   stops after a message that carried SCM_RIGHTS): found by review; a
 *   peer's one MSG_OOB byte used to stall the next read until its next
 *   packet.
 * - timer_ is armed only while the future waits with a deadline (armed_);
 *   it is disarmed when the future completes and in its drop, so the timer
 *   wheel never points into freed state. Likewise waiter_ notes a waker
 *   left in the stream's io slot that no event has consumed (the wait ended
 *   at its deadline, or the future is dropped while pending); completion and
 *   drop take it back, so the slot never pins a task that stopped waiting.
 */
#include <limits.h>
#include <stdlib.h>
#include <sys/types.h>

#include <weft/coro.h>
#include <weft/runtime.h>

#include "net/net.h"

/* Linux moves at most this many bytes per read/write call (MAX_RW_COUNT). */
#define IO_MAX ((size_t)0x7ffff000)
/* Readiness flapping within one poll (each round saw a newer event but the
 * call still said EAGAIN): after this many rounds the task yields. */
#define SPURIOUS_MAX 4
/* A transfer step that armed a wake-up. */
#define XFER_PENDING INT64_MIN

/* ---- the object ----------------------------------------------------------------------------- */

weft_runtime_t *weft__net_runtime(weft_runtime_t *rt)
{
    return rt ? rt : weft_runtime_current();
}

int weft__tcp_stream_new(weft_runtime_t *rt, int fd, weft_tcp_stream_t **out)
{
    weft_tcp_stream_t *s = malloc(sizeof *s);
    if (!s)
        return -ENOMEM;
    atomic_init(&s->refs, 1);
    atomic_init(&s->closed, 0);
    atomic_init(&s->busy, 0);
    s->fd = fd;
    s->tcp = true; /* accept and connect; weft_tcp_stream_from_fd asks */
    int rc = weft_io_register(rt, fd, &s->io);
    if (rc != 0) {
        free(s);
        return rc;
    }
    *out = s;
    return 0;
}

void weft__tcp_stream_ref(weft_tcp_stream_t *s)
{
    /* Relaxed: the caller already holds a reference, so the object cannot
     * be freed under us; nothing is published by taking one. */
    atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
}

void weft__tcp_stream_unref(weft_tcp_stream_t *s)
{
    /* Release: this holder's uses of the object (its syscalls on fd, its
     * reads of io) happen before the count drops. Acquire (on the last
     * drop): pairs with the release of every earlier drop, so the close and
     * free below come after all of those uses. */
    if (atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) != 1)
        return;
    weft__sock_close(s->fd);
    free(s);
}

uint32_t weft__tcp_stream_refs(weft_tcp_stream_t *s)
{
    return atomic_load_explicit(&s->refs, memory_order_relaxed);
}

int weft_tcp_stream_from_fd(weft_runtime_t *rt, int fd, weft_tcp_stream_t **out)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    rt = weft__net_runtime(rt);
    if (!rt || fd < 0)
        return -EINVAL;
    weft__sock_flags_t was;
    int rc = weft__sock_adopt(fd, &was);
    if (rc != 0)
        return rc;
    rc = weft__tcp_stream_new(rt, fd, out);
    if (rc != 0)
        weft__sock_unadopt(fd, &was); /* the caller's fd, as it was */
    else
        (*out)->tcp = was.tcp;
    return rc;
}

int weft_tcp_close(weft_tcp_stream_t *s)
{
    if (!s)
        return -EINVAL;
    /* Relaxed: operations read closed only as a hint; what stops them is
     * the deregistration below (their io handle turns stale, and a waiter
     * is woken by the driver), which has its own synchronisation. */
    if (atomic_exchange_explicit(&s->closed, 1, memory_order_relaxed))
        return -EBADF;
    weft_io_deregister(s->io);
    weft__tcp_stream_unref(s);
    return 0;
}

int weft_tcp_abort(weft_tcp_stream_t *s)
{
    if (!s)
        return -EINVAL;
    if (weft__tcp_stream_closed(s))
        return -EBADF;
    int rc = weft__sock_set_linger_reset(s->fd);
    return rc != 0 ? rc : weft_tcp_close(s);
}

int weft_tcp_shutdown(weft_tcp_stream_t *s, int how)
{
    if (!s)
        return -EINVAL;
    int h;
    switch (how) {
    case WEFT_SHUT_RD:
        h = SHUT_RD;
        break;
    case WEFT_SHUT_WR:
        h = SHUT_WR;
        break;
    case WEFT_SHUT_RDWR:
        h = SHUT_RDWR;
        break;
    default:
        return -EINVAL;
    }
    if (weft__tcp_stream_closed(s))
        return -EBADF;
    return weft__sock_shutdown(s->fd, h);
}

static int stream_name(weft_tcp_stream_t *s, bool peer, struct sockaddr_storage *out)
{
    if (!s || !out)
        return -EINVAL;
    if (weft__tcp_stream_closed(s))
        return -EBADF;
    socklen_t len = sizeof *out;
    return weft__sock_name(s->fd, peer, out, &len);
}

int weft_tcp_peer_addr(weft_tcp_stream_t *s, struct sockaddr_storage *out)
{
    return stream_name(s, true, out);
}

int weft_tcp_local_addr(weft_tcp_stream_t *s, struct sockaddr_storage *out)
{
    return stream_name(s, false, out);
}

int weft_tcp_set_nodelay(weft_tcp_stream_t *s, bool on)
{
    if (!s)
        return -EINVAL;
    if (weft__tcp_stream_closed(s))
        return -EBADF;
    return weft__sock_set_nodelay(s->fd, on);
}

int weft_tcp_nodelay(weft_tcp_stream_t *s)
{
    if (!s)
        return -EINVAL;
    if (weft__tcp_stream_closed(s))
        return -EBADF;
    return weft__sock_get_nodelay(s->fd);
}

/* ns rounded up to whole seconds, or -1 outside 1..max seconds. */
static int whole_seconds(int64_t ns, int max)
{
    if (ns <= 0 || ns > (int64_t)max * 1000000000)
        return -1;
    return (int)((ns + 999999999) / 1000000000);
}

int weft_tcp_set_keepalive(weft_tcp_stream_t *s, int64_t idle_ns, int64_t interval_ns, int count)
{
    if (!s)
        return -EINVAL;
    if (idle_ns < 0)
        return -EINVAL;
    int idle = 0, intvl = 0;
    if (idle_ns > 0) {
        idle = whole_seconds(idle_ns, 32767);
        intvl = whole_seconds(interval_ns, 32767);
        if (idle < 0 || intvl < 0 || count < 1 || count > 127)
            return -EINVAL;
    }
    if (weft__tcp_stream_closed(s))
        return -EBADF;
    return weft__sock_set_keepalive(s->fd, idle_ns > 0, idle, intvl, count);
}

int weft_tcp_stream_fd(weft_tcp_stream_t *s)
{
    if (!s)
        return -EINVAL;
    if (weft__tcp_stream_closed(s))
        return -EBADF;
    return s->fd;
}

/* ---- transfers ------------------------------------------------------------------------------ */

static int xfer_init(weft_tcp_xfer_t *f, weft_tcp_stream_t *s, const void *buf, size_t len,
                     int64_t deadline, size_t *done)
{
    if (!f)
        return -EINVAL;
    f->s_ = NULL;
    f->buf_ = (void *)(uintptr_t)buf; /* writes never store through it */
    f->len_ = len;
    f->done_ = 0;
    f->done_out_ = done;
    f->deadline_ = deadline;
    f->err_ = 0;
    f->armed_ = false;
    weft_timer_init(&f->timer_);
    f->waiter_ = (weft_io_waiter_t)WEFT_IO_WAITER_INIT;
    f->holds_ = 0;
    if (done)
        *done = 0;
    if (!s || (!buf && len > 0) || len > (size_t)SSIZE_MAX)
        f->err_ = -EINVAL;
    else
        weft__tcp_stream_ref(s);
    if (f->err_)
        return f->err_;
    f->s_ = s;
    return 0;
}

int weft_tcp_read_init(weft_tcp_read_t *f, weft_tcp_stream_t *s, void *buf, size_t len,
                       int64_t deadline)
{
    return xfer_init(f, s, buf, len, deadline, NULL);
}

int weft_tcp_write_init(weft_tcp_write_t *f, weft_tcp_stream_t *s, const void *buf, size_t len,
                        int64_t deadline)
{
    return xfer_init(f, s, buf, len, deadline, NULL);
}

int weft_tcp_read_exact_init(weft_tcp_read_exact_t *f, weft_tcp_stream_t *s, void *buf, size_t len,
                             int64_t deadline, size_t *done)
{
    return xfer_init(f, s, buf, len, deadline, done);
}

int weft_tcp_write_all_init(weft_tcp_write_all_t *f, weft_tcp_stream_t *s, const void *buf,
                            size_t len, int64_t deadline, size_t *done)
{
    return xfer_init(f, s, buf, len, deadline, done);
}

size_t weft_tcp_xfer_done(const weft_tcp_xfer_t *f)
{
    return f ? f->done_ : 0;
}

/* Cancel the deadline, take back a waker that no event consumed, and
 * give the side back. */
static void xfer_disarm(weft_tcp_xfer_t *f)
{
    if (f->armed_) {
        weft_timer_cancel(&f->timer_);
        f->armed_ = false;
    }
    if (f->s_) {
        if (f->waiter_.dir_) /* the common case, nothing left: no call */
            weft_io_forget(f->s_->io, &f->waiter_);
        if (f->holds_) {
            /* Release: pairs with the next holder's acquire in xfer_hold,
             * so what this operation did comes before that one starts. */
            atomic_fetch_and_explicit(&f->s_->busy, ~f->holds_, memory_order_release);
            f->holds_ = 0;
        }
    }
}

/* Take side dir of the stream for f: 0, or -EBUSY if another operation
 * holds it. */
static int xfer_hold(weft_tcp_xfer_t *f, unsigned dir)
{
    if (f->holds_)
        return 0;
    /* Acquire: pairs with the release in xfer_disarm of the side's last
     * holder. */
    if (atomic_fetch_or_explicit(&f->s_->busy, dir, memory_order_acquire) & dir)
        return -EBUSY;
    f->holds_ = dir;
    return 0;
}

static void xfer_drop(void *state)
{
    weft_tcp_xfer_t *f = state;
    xfer_disarm(f);
    if (f->s_) {
        weft__tcp_stream_unref(f->s_);
        f->s_ = NULL;
    }
}

static weft_poll_t xfer_ready(weft_tcp_xfer_t *f, int64_t *out, int64_t v)
{
    xfer_disarm(f);
    *out = v;
    return WEFT_READY;
}

/*
 * One system call's worth of progress on the rest of f's buffer in
 * direction dir: bytes moved (> 0), 0 (end of stream), a negative errno
 * (-ETIMEDOUT at the deadline), or XFER_PENDING after arranging for cx's
 * task to be woken by readiness or by the deadline.
 *
 * At the deadline the call is made once more whatever the snapshot says
 * (`last`): the driver may not have reported an event yet (a fresh
 * stream, or a busy runtime whose poller has not run), and net.h promises
 * that a passed deadline means one attempt, -ETIMEDOUT only if it would
 * have had to wait. That attempt's snapshot is made up, so it clears
 * nothing.
 */
static int64_t xfer_step(weft_tcp_xfer_t *f, unsigned dir, weft_cx_t *cx)
{
    weft_tcp_stream_t *s = f->s_;
    char *p = (char *)f->buf_ + f->done_;
    size_t n = f->len_ - f->done_;
    if (n > IO_MAX)
        n = IO_MAX;
    /* Ready: the snapshot, nothing registered. Not ready: cx's waker is
     * registered (0). One call either way. */
    int snap = weft_io_poll_wait(s->io, dir, cx, &f->waiter_);
    bool last = false;
    for (int round = 0; round < SPURIOUS_MAX; round++) {
        if (snap < 0)
            return snap;
        if (snap > 0) {
            ssize_t r = dir == WEFT_IO_READABLE ? weft__sock_recv(s->fd, p, n)
                                                : weft__sock_send(s->fd, p, n);
            if (r != -EAGAIN) {
                /* Short transfer: the buffer filled (write) or drained
                 * (a TCP read, unless a hang-up or urgent data is
                 * pending): see the top. */
                if (r > 0 && (size_t)r < n && !last &&
                    (dir == WEFT_IO_WRITABLE ||
                     (s->tcp && !(snap & (int)(WEFT_IO_HUP | WEFT_IO_PRI)))))
                    weft_io_clear(s->io, snap);
                return r;
            }
            if (last)
                return -ETIMEDOUT;
            weft_io_clear(s->io, snap);
            snap = weft_io_poll_wait(s->io, dir, cx, &f->waiter_);
            if (snap != 0)
                continue; /* ready after all (or -EBADF): go round */
        }
        if (f->deadline_ == WEFT_FOREVER)
            return XFER_PENDING;
        int t = weft_timer_poll(&f->timer_, f->deadline_, cx);
        if (t == WEFT_PENDING) {
            f->armed_ = true;
            return XFER_PENDING;
        }
        if (t != WEFT_READY)
            return t;
        last = true;
        snap = (int)dir;
    }
    weft_waker_wake_by_ref(weft_cx_waker(cx)); /* yield, then try again */
    return XFER_PENDING;
}

/* The checks every transfer poll starts with: WEFT_READY with *out set if
 * the future is finished before it starts, WEFT_PENDING if the budget is
 * spent, or -1 to go on. */
static int xfer_enter(weft_tcp_xfer_t *f, weft_cx_t *cx, int64_t *out)
{
    if (f->err_) {
        *out = f->err_;
        return WEFT_READY;
    }
    if (weft__tcp_stream_closed(f->s_)) {
        xfer_ready(f, out, -EBADF);
        return WEFT_READY;
    }
    if (weft_coop_proceed(cx) == WEFT_PENDING)
        return WEFT_PENDING;
    return -1;
}

static weft_poll_t xfer_once(void *state, weft_cx_t *cx, int64_t *out, unsigned dir)
{
    weft_tcp_xfer_t *f = state;
    int e = xfer_enter(f, cx, out);
    if (e >= 0)
        return (weft_poll_t)e;
    if (f->len_ == 0)
        return xfer_ready(f, out, 0);
    if (xfer_hold(f, dir) != 0)
        return xfer_ready(f, out, -EBUSY);
    int64_t r = xfer_step(f, dir, cx);
    if (r == XFER_PENDING)
        return WEFT_PENDING;
    if (r > 0)
        f->done_ = (size_t)r;
    return xfer_ready(f, out, r);
}

static weft_poll_t xfer_all(void *state, weft_cx_t *cx, int64_t *out, unsigned dir)
{
    weft_tcp_xfer_t *f = state;
    int e = xfer_enter(f, cx, out);
    if (e >= 0)
        return (weft_poll_t)e;
    if (f->done_ < f->len_ && xfer_hold(f, dir) != 0)
        return xfer_ready(f, out, -EBUSY);
    while (f->done_ < f->len_) {
        int64_t r = xfer_step(f, dir, cx);
        if (r == XFER_PENDING)
            return WEFT_PENDING;
        if (r <= 0)
            return xfer_ready(f, out, r == 0 ? -EPIPE : r);
        f->done_ += (size_t)r;
        if (f->done_out_)
            *f->done_out_ = f->done_;
    }
    return xfer_ready(f, out, 0);
}

static weft_poll_t read_poll(void *state, weft_cx_t *cx, int64_t *out)
{
    return xfer_once(state, cx, out, WEFT_IO_READABLE);
}

static weft_poll_t write_poll(void *state, weft_cx_t *cx, int64_t *out)
{
    return xfer_once(state, cx, out, WEFT_IO_WRITABLE);
}

static weft_poll_t read_exact_poll(void *state, weft_cx_t *cx, int64_t *out)
{
    return xfer_all(state, cx, out, WEFT_IO_READABLE);
}

static weft_poll_t write_all_poll(void *state, weft_cx_t *cx, int64_t *out)
{
    return xfer_all(state, cx, out, WEFT_IO_WRITABLE);
}

const weft_future_vtable_t weft_tcp_read_vtable = {read_poll, xfer_drop, "tcp_read"};
const weft_future_vtable_t weft_tcp_write_vtable = {write_poll, xfer_drop, "tcp_write"};
const weft_future_vtable_t weft_tcp_read_exact_vtable = {read_exact_poll, xfer_drop,
                                                         "tcp_read_exact"};
const weft_future_vtable_t weft_tcp_write_all_vtable = {write_all_poll, xfer_drop, "tcp_write_all"};

/* ---- coroutine calls ------------------------------------------------------------------------ */

/* Await an initialised transfer future; its output, or await's error. */
static int64_t xfer_await(const weft_future_vtable_t *vt, weft_tcp_xfer_t *f)
{
    int64_t v = 0;
    int rc = weft_await(vt, f, &v);
    return rc != 0 ? rc : v;
}

int weft_tcp_read(weft_tcp_stream_t *s, void *buf, size_t len, int64_t deadline)
{
    if (!weft_in_coro())
        return -EPERM;
    weft_tcp_xfer_t f;
    if (weft_tcp_read_init(&f, s, buf, len, deadline) != 0)
        return f.err_;
    return (int)xfer_await(&weft_tcp_read_vtable, &f);
}

int weft_tcp_write(weft_tcp_stream_t *s, const void *buf, size_t len, int64_t deadline)
{
    if (!weft_in_coro())
        return -EPERM;
    weft_tcp_xfer_t f;
    if (weft_tcp_write_init(&f, s, buf, len, deadline) != 0)
        return f.err_;
    return (int)xfer_await(&weft_tcp_write_vtable, &f);
}

int weft_tcp_read_exact(weft_tcp_stream_t *s, void *buf, size_t len, int64_t deadline, size_t *done)
{
    if (done)
        *done = 0;
    if (!weft_in_coro())
        return -EPERM;
    weft_tcp_xfer_t f;
    if (weft_tcp_read_exact_init(&f, s, buf, len, deadline, done) != 0)
        return f.err_;
    return (int)xfer_await(&weft_tcp_read_exact_vtable, &f);
}

int weft_tcp_write_all(weft_tcp_stream_t *s, const void *buf, size_t len, int64_t deadline,
                       size_t *done)
{
    if (done)
        *done = 0;
    if (!weft_in_coro())
        return -EPERM;
    weft_tcp_xfer_t f;
    if (weft_tcp_write_all_init(&f, s, buf, len, deadline, done) != 0)
        return f.err_;
    return (int)xfer_await(&weft_tcp_write_all_vtable, &f);
}

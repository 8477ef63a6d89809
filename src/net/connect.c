/*
 * connect.c - the connect future and its coroutine call.
 *
 * Owns: weft_tcp_connect_t. Its life:
 *   first poll: socket(), register it with the driver (a stream object,
 *   s_, owned by the future), connect(): 0 -> done; -EINPROGRESS -> wait;
 *   anything else -> fail.
 *   waiting: until the driver reports the socket writable, then SO_ERROR:
 *   non-zero -> fail with it; zero -> getpeername: connected -> done;
 *   -ENOTCONN -> the readiness was not about the connect (a registration
 *   may start out ready), clear it and wait again.
 *   done: *out = s_ and the future no longer owns it.
 * Invariants:
 * - s_ is non-NULL exactly while the future owns a half-made connection;
 *   the drop (or a failure) closes it, so an abandoned attempt never
 *   leaks its fd.
 * - timer_ is armed only while waiting with a deadline (armed_), and
 *   disarmed at completion and in the drop; so is the waker that waiter_
 *   notes as left in the stream's io slot.
 */
#include <string.h>

#include <weft/coro.h>

#include "net/net.h"

int weft_tcp_connect_init(weft_tcp_connect_t *f, weft_runtime_t *rt, const struct sockaddr *addr,
                          socklen_t addrlen, int64_t deadline, weft_tcp_stream_t **out)
{
    if (!f)
        return -EINVAL;
    memset(f, 0, sizeof *f);
    f->out_ = out;
    f->deadline_ = deadline;
    weft_timer_init(&f->timer_);
    if (out)
        *out = NULL;
    f->rt_ = weft__net_runtime(rt);
    socklen_t need = addr ? weft_addr_len(addr) : 0;
    if (!out || !addr || !f->rt_)
        return f->err_ = -EINVAL;
    if (need == 0)
        return f->err_ = addr->sa_family == AF_INET || addr->sa_family == AF_INET6 ? -EINVAL
                                                                                   : -EAFNOSUPPORT;
    if (addrlen < need || addrlen > sizeof f->addr_)
        return f->err_ = -EINVAL;
    memcpy(&f->addr_, addr, need);
    f->addrlen_ = need;
    return 0;
}

/* Cancel the deadline and take back a waker that no event consumed (a
 * connect found finished at its deadline hands out a stream whose slot
 * would otherwise keep this task). */
static void connect_disarm(weft_tcp_connect_t *f)
{
    if (f->armed_) {
        weft_timer_cancel(&f->timer_);
        f->armed_ = false;
    }
    if (f->s_)
        weft_io_forget(f->s_->io, &f->waiter_);
}

static void connect_abandon(weft_tcp_connect_t *f)
{
    if (f->s_) {
        weft_tcp_close(f->s_);
        f->s_ = NULL;
    }
}

static void connect_drop(void *state)
{
    weft_tcp_connect_t *f = state;
    connect_disarm(f);
    connect_abandon(f);
}

static weft_poll_t connect_ready(weft_tcp_connect_t *f, int64_t *out, int v)
{
    connect_disarm(f);
    if (v == 0) {
        *f->out_ = f->s_;
        f->s_ = NULL;
    } else {
        connect_abandon(f);
    }
    f->err_ = v ? v : -EALREADY; /* a further poll must not connect again */
    *out = v;
    return WEFT_READY;
}

/* Start the attempt: 0 (connected), WEFT_PENDING (in progress), or -errno. */
static int connect_start(weft_tcp_connect_t *f)
{
    int fd = weft__sock_open(f->addr_.ss_family);
    if (fd < 0)
        return fd;
    /* Connect before registering: an unconnected socket polls as
     * EPOLLOUT|EPOLLHUP, which the registration would report at once and
     * leave as a (sticky) hang-up on the stream. In SYN_SENT nothing is
     * queued, and completion is a new edge. */
    int c = weft__sock_connect(fd, (const struct sockaddr *)&f->addr_, f->addrlen_);
    if (c != 0 && c != -EINPROGRESS) {
        weft__sock_close(fd);
        return c;
    }
    int rc = weft__tcp_stream_new(f->rt_, fd, &f->s_);
    if (rc != 0) {
        weft__sock_close(fd);
        return rc;
    }
    return c == -EINPROGRESS ? WEFT_PENDING : 0;
}

/* How the connection attempt on s stands: 0 (connected), its error, or
 * -ENOTCONN (still in progress). */
static int connect_outcome(weft_tcp_stream_t *s)
{
    int err = weft__sock_error(s->fd);
    if (err != 0)
        return err;
    struct sockaddr_storage peer;
    socklen_t plen = sizeof peer;
    return weft__sock_name(s->fd, true, &peer, &plen);
}

static weft_poll_t connect_poll(void *state, weft_cx_t *cx, int64_t *out)
{
    weft_tcp_connect_t *f = state;
    if (f->err_) {
        *out = f->err_;
        return WEFT_READY;
    }
    if (!f->s_) {
        int rc = connect_start(f);
        if (rc != WEFT_PENDING)
            return connect_ready(f, out, rc);
    }
    weft_tcp_stream_t *s = f->s_;
    for (int round = 0;; round++) {
        if (round == 4) {
            weft_waker_wake_by_ref(weft_cx_waker(cx)); /* readiness flapping: yield */
            return WEFT_PENDING;
        }
        int snap = weft_io_poll_wait(s->io, WEFT_IO_WRITABLE, cx, &f->waiter_);
        if (snap < 0)
            return connect_ready(f, out, snap);
        if (snap == 0)
            break; /* the waker is registered */
        int err = connect_outcome(s);
        if (err != -ENOTCONN)
            return connect_ready(f, out, err);
        weft_io_clear(s->io, snap); /* not connected yet: wait for the next event */
    }
    if (f->deadline_ == WEFT_FOREVER)
        return WEFT_PENDING;
    int t = weft_timer_poll(&f->timer_, f->deadline_, cx);
    if (t == WEFT_PENDING) {
        f->armed_ = true;
        return WEFT_PENDING;
    }
    if (t != WEFT_READY)
        return connect_ready(f, out, t);
    /* The deadline passed: look once more whatever the driver has reported
     * (net.h: -ETIMEDOUT only if the connection would have had to wait). */
    int err = connect_outcome(s);
    return connect_ready(f, out, err == -ENOTCONN ? -ETIMEDOUT : err);
}

const weft_future_vtable_t weft_tcp_connect_vtable = {connect_poll, connect_drop, "tcp_connect"};

int weft_tcp_connect(weft_runtime_t *rt, const struct sockaddr *addr, socklen_t addrlen,
                     int64_t deadline, weft_tcp_stream_t **out)
{
    if (out)
        *out = NULL;
    if (!weft_in_coro())
        return -EPERM;
    weft_tcp_connect_t f;
    if (weft_tcp_connect_init(&f, rt, addr, addrlen, deadline, out) != 0)
        return f.err_;
    int64_t v = 0;
    int rc = weft_await(&weft_tcp_connect_vtable, &f, &v);
    return rc != 0 ? rc : (int)v;
}

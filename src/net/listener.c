/*
 * listener.c - the TCP listener: listen, the accept future with its
 * back-off on descriptor exhaustion, stats, close.
 *
 * Owns: struct weft_tcp_listener (net.h states the reference-count and
 * close invariants it shares with the stream) and weft_tcp_accept_t.
 *
 * Invariants of the accept future:
 * - From init to drop it holds one reference on its listener (none after a
 *   failed init).
 * - A connection taken by accept4 is handed out in the same poll (READY),
 *   or closed at once if no stream can be made for it; so a dropped accept
 *   has taken nothing from the backlog that it did not close.
 * - Exhaustion (EMFILE, ENFILE, ENOBUFS, ENOMEM, or no room to register the
 *   new fd) never makes the future spin: it sets backoff_until_ and sleeps
 *   on timer_ until then (or until its deadline, or until close wakes it
 *   through close_waker), then calls accept again without waiting for
 *   readiness - the connection that could not be taken is still queued,
 *   and its edge was consumed. The sleep doubles from backoff_min_ns to
 *   backoff_max_ns across consecutive failures (l->backoff_ns, shared by
 *   successive accepts) and returns to the minimum after a success.
 * - timer_ serves one purpose at a time (a back-off or the deadline): it is
 *   cancelled and re-initialised when the purpose changes, disarmed when
 *   the future completes and in its drop.
 * - close_waker holds the waker of an accept in back-off, and is emptied
 *   when that back-off ends or the future is dropped (so no waker of a
 *   finished task lingers in a live listener). Only the accept that holds
 *   the listener's side (accepting) touches it, and it empties the slot
 *   before it gives the side back.
 * - Close stops listening at once (shutdown of the listening socket); the
 *   fd itself is closed with the last reference, so an accept in flight
 *   never sees its number reused.
 */
#include <stdlib.h>

#include <weft/coro.h>
#include <weft/runtime.h>

#include "net/net.h"

#define DEFAULT_BACKLOG 1024
#define DEFAULT_BACKOFF_MIN_NS 1000000LL   /* 1 ms */
#define DEFAULT_BACKOFF_MAX_NS 100000000LL /* 100 ms */
/* Connections skipped (aborted by their peers) in one poll before the task
 * yields. */
#define ACCEPT_ROUNDS_MAX 16

/* ---- the object ----------------------------------------------------------------------------- */

int weft_tcp_listen(weft_runtime_t *rt, const struct sockaddr *addr, socklen_t addrlen, int backlog,
                    weft_tcp_listener_t **out)
{
    weft_tcp_listen_opts_t o = WEFT_TCP_LISTEN_OPTS_INIT;
    o.backlog = backlog;
    return weft_tcp_listen_with(rt, addr, addrlen, &o, out);
}

int weft_tcp_listen_with(weft_runtime_t *rt, const struct sockaddr *addr, socklen_t addrlen,
                         const weft_tcp_listen_opts_t *opts, weft_tcp_listener_t **out)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    rt = weft__net_runtime(rt);
    if (!rt || !addr)
        return -EINVAL;
    weft_tcp_listen_opts_t o = opts ? *opts : WEFT_TCP_LISTEN_OPTS_INIT;
    /* Bounded so that now + back-off cannot overflow (found by review:
     * INT64_MAX wrapped into the past and the accept spun). */
    if (o.backoff_min_ns < 0 || o.backoff_max_ns < 0 ||
        o.backoff_min_ns > WEFT_TCP_BACKOFF_LIMIT_NS ||
        o.backoff_max_ns > WEFT_TCP_BACKOFF_LIMIT_NS)
        return -EINVAL;
    if (o.backlog <= 0)
        o.backlog = DEFAULT_BACKLOG;
    if (o.backoff_min_ns == 0)
        o.backoff_min_ns = DEFAULT_BACKOFF_MIN_NS;
    if (o.backoff_max_ns == 0)
        o.backoff_max_ns = DEFAULT_BACKOFF_MAX_NS;
    if (o.backoff_max_ns < o.backoff_min_ns)
        o.backoff_max_ns = o.backoff_min_ns;
    socklen_t need = weft_addr_len(addr);
    if (need == 0)
        return addr->sa_family == AF_INET || addr->sa_family == AF_INET6 ? -EINVAL : -EAFNOSUPPORT;
    if (addrlen < need)
        return -EINVAL;

    int fd = weft__sock_open(addr->sa_family);
    if (fd < 0)
        return fd;
    int rc = 0;
    if (o.reuseaddr)
        rc = weft__sock_set_reuseaddr(fd, true);
    if (rc == 0 && o.reuseport)
        rc = weft__sock_set_reuseport(fd, true);
    if (rc == 0 && addr->sa_family == AF_INET6 && o.v6only >= 0)
        rc = weft__sock_set_v6only(fd, o.v6only != 0);
    if (rc == 0)
        rc = weft__sock_bind(fd, addr, need);
    if (rc == 0)
        rc = weft__sock_listen(fd, o.backlog);
    weft_tcp_listener_t *l = NULL;
    if (rc == 0) {
        l = calloc(1, sizeof *l);
        if (!l)
            rc = -ENOMEM;
    }
    if (rc == 0) {
        atomic_init(&l->refs, 1);
        atomic_init(&l->closed, 0);
        atomic_init(&l->accepting, 0);
        l->fd = fd;
        l->rt = rt;
        l->opts = o;
        weft_atomic_waker_init(&l->close_waker);
        atomic_init(&l->backoff_ns, 0);
        atomic_init(&l->accepted, 0);
        atomic_init(&l->exhausted, 0);
        atomic_init(&l->backoff_total_ns, 0);
        atomic_init(&l->aborted, 0);
        atomic_init(&l->last_error, 0);
        rc = weft_io_register(rt, fd, &l->io);
    }
    if (rc != 0) {
        free(l);
        weft__sock_close(fd);
        return rc;
    }
    *out = l;
    return 0;
}

static void listener_ref(weft_tcp_listener_t *l)
{
    /* Relaxed: the caller holds a reference already (see stream_ref). */
    atomic_fetch_add_explicit(&l->refs, 1, memory_order_relaxed);
}

void weft__tcp_listener_unref(weft_tcp_listener_t *l)
{
    /* Release / acquire on the last drop: as weft__tcp_stream_unref. */
    if (atomic_fetch_sub_explicit(&l->refs, 1, memory_order_acq_rel) != 1)
        return;
    weft__sock_close(l->fd);
    weft_atomic_waker_destroy(&l->close_waker);
    free(l);
}

uint32_t weft__tcp_listener_refs(weft_tcp_listener_t *l)
{
    return atomic_load_explicit(&l->refs, memory_order_relaxed);
}

static bool listener_closed(weft_tcp_listener_t *l)
{
    /* Acquire: pairs with the release store in weft_tcp_listener_close, so
     * an accept that registered on close_waker and then reads 0 here is
     * sure to be woken by close's wake (the atomic waker protocol). */
    return atomic_load_explicit(&l->closed, memory_order_acquire) != 0;
}

int weft_tcp_listener_close(weft_tcp_listener_t *l)
{
    if (!l)
        return -EINVAL;
    /* Release: pairs with the acquire in listener_closed (the condition is
     * made true before close_waker is woken). */
    if (atomic_exchange_explicit(&l->closed, 1, memory_order_release))
        return -EBADF;
    weft_atomic_waker_wake(&l->close_waker);
    weft_io_deregister(l->io);
    /* Stop listening now, not when the last accept in flight lets the fd
     * go: until then the kernel would complete handshakes nobody takes
     * (reset later) and the port could not be listened on again. On a
     * listening socket shutdown() leaves the listening state and resets
     * the queued connections; the fd stays open for those accepts, whose
     * accept4 now fails with EINVAL (reported as -EBADF, accept_poll). */
    (void)weft__sock_shutdown(l->fd, SHUT_RDWR);
    weft__tcp_listener_unref(l);
    return 0;
}

int weft_tcp_listener_local_addr(weft_tcp_listener_t *l, struct sockaddr_storage *out)
{
    if (!l || !out)
        return -EINVAL;
    if (listener_closed(l))
        return -EBADF;
    socklen_t len = sizeof *out;
    return weft__sock_name(l->fd, false, out, &len);
}

int weft_tcp_listener_stats(weft_tcp_listener_t *l, weft_tcp_listener_stats_t *out)
{
    if (!l || !out)
        return -EINVAL;
    /* Relaxed: counters, each read atomically; no ordering between them. */
    out->accepted = atomic_load_explicit(&l->accepted, memory_order_relaxed);
    out->exhausted = atomic_load_explicit(&l->exhausted, memory_order_relaxed);
    out->backoff_ns = atomic_load_explicit(&l->backoff_total_ns, memory_order_relaxed);
    out->aborted = atomic_load_explicit(&l->aborted, memory_order_relaxed);
    out->last_error = atomic_load_explicit(&l->last_error, memory_order_relaxed);
    return 0;
}

/* ---- the accept future ---------------------------------------------------------------------- */

int weft_tcp_accept_init(weft_tcp_accept_t *f, weft_tcp_listener_t *l, weft_tcp_stream_t **out,
                         struct sockaddr_storage *peer, int64_t deadline)
{
    if (!f)
        return -EINVAL;
    f->l_ = NULL;
    f->out_ = out;
    f->peer_ = peer;
    f->deadline_ = deadline;
    f->backoff_until_ = 0;
    f->err_ = 0;
    f->armed_ = false;
    weft_timer_init(&f->timer_);
    f->waiter_ = (weft_io_waiter_t)WEFT_IO_WAITER_INIT;
    f->holds_ = false;
    if (out)
        *out = NULL;
    if (!l || !out)
        return f->err_ = -EINVAL;
    listener_ref(l);
    f->l_ = l;
    return 0;
}

/* Cancel the timer and take back a waker that no event consumed. */
static void accept_disarm(weft_tcp_accept_t *f)
{
    if (f->armed_) {
        weft_timer_cancel(&f->timer_);
        weft_timer_init(&f->timer_);
        f->armed_ = false;
    }
    if (f->l_)
        weft_io_forget(f->l_->io, &f->waiter_);
}

/* Empty close_waker of the waker this future left there. */
static void accept_forget_close_waker(weft_tcp_accept_t *f)
{
    weft_waker_t w;
    weft_atomic_waker_take(&f->l_->close_waker, &w);
    weft_waker_drop(&w);
}

/*
 * The back-off in progress ends (slept out, cut short by the deadline or by
 * close, or dropped): add the time it slept to the statistics and empty
 * close_waker. Before the side is released (accept_drop).
 */
static void accept_backoff_end(weft_tcp_accept_t *f)
{
    if (!f->backoff_until_)
        return;
    weft_tcp_listener_t *l = f->l_;
    /* Relaxed: statistics. Only the side's holder (f) changes backoff_ns,
     * so it is still the length of this back-off. */
    int64_t len = atomic_load_explicit(&l->backoff_ns, memory_order_relaxed);
    int64_t left = f->backoff_until_ - weft_now();
    int64_t slept = left > 0 ? len - left : len;
    if (slept > 0)
        atomic_fetch_add_explicit(&l->backoff_total_ns, (uint64_t)slept, memory_order_relaxed);
    accept_forget_close_waker(f);
    f->backoff_until_ = 0;
}

/* Give the accept side back if f holds it. */
static void accept_release(weft_tcp_accept_t *f)
{
    if (f->holds_) {
        /* Release: pairs with the next holder's acquire in accept_poll. */
        atomic_store_explicit(&f->l_->accepting, 0, memory_order_release);
        f->holds_ = false;
    }
}

static void accept_drop(void *state)
{
    weft_tcp_accept_t *f = state;
    accept_disarm(f);
    if (f->l_) {
        /* close_waker first: once the side is free, the next accept may
         * register there, and we would take its waker instead of ours. */
        accept_backoff_end(f);
        accept_release(f);
        weft__tcp_listener_unref(f->l_);
        f->l_ = NULL;
    }
}

static weft_poll_t accept_ready(weft_tcp_accept_t *f, int64_t *out, int64_t v)
{
    accept_disarm(f);
    accept_backoff_end(f); /* before the release, as in accept_drop */
    accept_release(f);
    *out = v;
    return WEFT_READY;
}

static bool is_exhaustion(int err)
{
    return err == -EMFILE || err == -ENFILE || err == -ENOBUFS || err == -ENOMEM;
}

/* Errors accept(2) says to treat like EAGAIN: the connection at the head of
 * the queue failed; the next one may be fine. */
static bool is_transient(int err)
{
    switch (-err) {
    case ECONNABORTED:
    case EPROTO:
    case EPERM:
    case ENETDOWN:
    case ENOPROTOOPT:
    case EHOSTDOWN:
    case ENONET:
    case EHOSTUNREACH:
    case EOPNOTSUPP:
    case ENETUNREACH:
        return true;
    default:
        return false;
    }
}

/* Count and report an exhaustion error; start a back-off unless the
 * listener fails instead. Returns 0 (back-off started) or err. */
static int accept_exhausted(weft_tcp_accept_t *f, int err)
{
    weft_tcp_listener_t *l = f->l_;
    /* Relaxed: statistics and a back-off length, no data hangs off them. */
    atomic_fetch_add_explicit(&l->exhausted, 1, memory_order_relaxed);
    atomic_store_explicit(&l->last_error, err, memory_order_relaxed);
    int64_t b = 0;
    if (!l->opts.fail_on_exhaustion) {
        b = atomic_load_explicit(&l->backoff_ns, memory_order_relaxed);
        /* Both bounds are at most WEFT_TCP_BACKOFF_LIMIT_NS: no overflow. */
        b = b == 0 ? l->opts.backoff_min_ns : b * 2;
        if (b > l->opts.backoff_max_ns)
            b = l->opts.backoff_max_ns;
        atomic_store_explicit(&l->backoff_ns, b, memory_order_relaxed);
        accept_disarm(f); /* the timer now serves the back-off */
        f->backoff_until_ = weft_now() + b;
    }
    if (l->opts.on_exhaustion)
        l->opts.on_exhaustion(l, err, b, l->opts.arg);
    return l->opts.fail_on_exhaustion ? err : 0;
}

/*
 * Sleep out the back-off: WEFT_PENDING, 0 when it is over (the timer is
 * then free again), or -EBADF (closed) / -ETIMEDOUT (deadline first).
 */
static int accept_backoff(weft_tcp_accept_t *f, weft_cx_t *cx)
{
    weft_tcp_listener_t *l = f->l_;
    weft_atomic_waker_register(&l->close_waker, weft_cx_waker(cx));
    if (listener_closed(l))
        return -EBADF;
    bool deadline_first = f->deadline_ < f->backoff_until_;
    int t = weft_timer_poll(&f->timer_, deadline_first ? f->deadline_ : f->backoff_until_, cx);
    if (t == WEFT_PENDING) {
        f->armed_ = true;
        return WEFT_PENDING;
    }
    if (t < 0)
        return t;
    if (deadline_first)
        return -ETIMEDOUT;
    accept_backoff_end(f);
    accept_disarm(f);
    return 0;
}

/* Hand out fd as a stream: 0, or the error of making the stream (fd closed). */
static int accept_take(weft_tcp_accept_t *f, int fd)
{
    weft_tcp_stream_t *s;
    int rc = weft__tcp_stream_new(f->l_->rt, fd, &s);
    if (rc != 0) {
        weft__sock_close(fd); /* the peer sees a reset; counted by the caller */
        return rc;
    }
    /* Relaxed: counters (see accept_exhausted). */
    atomic_store_explicit(&f->l_->backoff_ns, 0, memory_order_relaxed);
    atomic_fetch_add_explicit(&f->l_->accepted, 1, memory_order_relaxed);
    *f->out_ = s;
    return 0;
}

static weft_poll_t accept_poll(void *state, weft_cx_t *cx, int64_t *out)
{
    weft_tcp_accept_t *f = state;
    if (f->err_) {
        *out = f->err_;
        return WEFT_READY;
    }
    weft_tcp_listener_t *l = f->l_;
    if (listener_closed(l))
        return accept_ready(f, out, -EBADF);
    if (weft_coop_proceed(cx) == WEFT_PENDING)
        return WEFT_PENDING;
    if (!f->holds_) {
        uint32_t free_ = 0;
        /* Acquire: pairs with the release in accept_release of the side's
         * last holder. */
        if (!atomic_compare_exchange_strong_explicit(&l->accepting, &free_, 1, memory_order_acquire,
                                                     memory_order_relaxed))
            return accept_ready(f, out, -EBUSY);
        f->holds_ = true;
    }

    if (f->backoff_until_) {
        int rc = accept_backoff(f, cx);
        if (rc == WEFT_PENDING)
            return WEFT_PENDING;
        if (rc < 0)
            return accept_ready(f, out, rc);
    }
    /* After a back-off this still says ready: exhaustion never clears it
     * (the connection that could not be taken is still queued). */
    int snap = weft_io_ready(l->io, WEFT_IO_READABLE);
    weft_io_waiter_saw(&f->waiter_, snap);
    /* At the deadline one accept is made whatever the snapshot says (the
     * driver may not have reported the queued connection yet; net.h: a
     * passed deadline means one attempt). Its snapshot is made up and
     * clears nothing. */
    bool last = false;
    for (int round = 0; round < ACCEPT_ROUNDS_MAX; round++) {
        if (snap < 0)
            return accept_ready(f, out, snap);
        if (snap == 0) {
            snap = weft_io_poll_wait(l->io, WEFT_IO_READABLE, cx, &f->waiter_);
            if (snap != 0)
                continue;
            if (f->deadline_ == WEFT_FOREVER)
                return WEFT_PENDING;
            int t = weft_timer_poll(&f->timer_, f->deadline_, cx);
            if (t == WEFT_PENDING) {
                f->armed_ = true;
                return WEFT_PENDING;
            }
            if (t != WEFT_READY)
                return accept_ready(f, out, t);
            last = true;
            snap = (int)WEFT_IO_READABLE;
        }
        socklen_t plen = sizeof(struct sockaddr_storage);
        int fd = weft__sock_accept(l->fd, f->peer_, f->peer_ ? &plen : NULL);
        if (fd >= 0) {
            int rc = accept_take(f, fd);
            if (rc == 0)
                return accept_ready(f, out, 0);
            if (rc == -ESHUTDOWN)
                return accept_ready(f, out, rc); /* the runtime is going away */
            if (rc == -ENOMEM || rc == -ENOSPC)
                fd = -ENOMEM; /* no room for it: exhaustion, below */
            else {
                atomic_fetch_add_explicit(&l->aborted, 1, memory_order_relaxed);
                continue;
            }
        }
        if (fd == -EAGAIN) {
            if (last)
                return accept_ready(f, out, -ETIMEDOUT);
            weft_io_clear(l->io, snap);
            snap = 0;
        } else if (is_exhaustion(fd)) {
            if (accept_exhausted(f, fd) != 0)
                return accept_ready(f, out, fd);
            int rc = accept_backoff(f, cx);
            if (rc == WEFT_PENDING)
                return WEFT_PENDING;
            if (rc < 0)
                return accept_ready(f, out, rc);
        } else if (is_transient(fd)) {
            /* Relaxed: a counter. */
            atomic_fetch_add_explicit(&l->aborted, 1, memory_order_relaxed);
        } else {
            /* Closed while we were in accept4: EINVAL from the shut socket. */
            return accept_ready(f, out, listener_closed(l) ? -EBADF : fd);
        }
    }
    weft_waker_wake_by_ref(weft_cx_waker(cx)); /* many aborted in a row: yield */
    return WEFT_PENDING;
}

const weft_future_vtable_t weft_tcp_accept_vtable = {accept_poll, accept_drop, "tcp_accept"};

int weft_tcp_accept(weft_tcp_listener_t *l, weft_tcp_stream_t **out, struct sockaddr_storage *peer,
                    int64_t deadline)
{
    if (out)
        *out = NULL;
    if (!weft_in_coro())
        return -EPERM;
    weft_tcp_accept_t f;
    if (weft_tcp_accept_init(&f, l, out, peer, deadline) != 0)
        return f.err_;
    int64_t v = 0;
    int rc = weft_await(&weft_tcp_accept_vtable, &f, &v);
    return rc != 0 ? rc : (int)v;
}

/*
 * net.h - the objects behind weft/net.h, shared by the files of src/net.
 * Internal to weft (tests reach it for the reference count).
 *
 * Invariants of both objects (stream and listener):
 * - refs counts the owner's reference (dropped by close) plus one per
 *   operation future between its init and its drop. The object, its fd and
 *   its driver registration live until refs reaches 0; only then is the fd
 *   closed and the memory freed. So an operation that was in flight when
 *   close ran can still make its system call on the fd (never on a reused
 *   fd number) and read the object.
 * - closed goes 0 -> 1 once, in close, before the driver registration is
 *   removed. Operations check it before starting; the authoritative check
 *   is the io handle: after weft_io_deregister every readiness call on it
 *   returns -EBADF, and a waiter registered on it is woken and sees -EBADF.
 * - fd and io are written once, before the object is published, and only
 *   read afterwards.
 * - A side (a stream's read or write side, a listener's accept) is held by
 *   at most one operation future, from its first poll until it finishes or
 *   is dropped: the stream's busy bit, the listener's accepting flag. A
 *   second one finds it held and fails with -EBUSY instead of displacing
 *   the first one's wake-up over and over.
 */
#ifndef WEFT_NET_NET_H
#define WEFT_NET_NET_H

#include <stdatomic.h>

#include <weft/net.h>

#include "platform/socket.h"

struct weft_tcp_stream {
    _Atomic uint32_t refs;
    _Atomic uint32_t closed;
    _Atomic uint32_t busy; /* WEFT_IO_READABLE / WRITABLE: that side's operation runs */
    int fd;
    weft_io_t io;
    bool tcp; /* a short read emptied the receive queue (barring HUP/PRI) */
};

struct weft_tcp_listener {
    _Atomic uint32_t refs;
    _Atomic uint32_t closed;
    _Atomic uint32_t accepting; /* an accept runs (holds the side) */
    int fd;
    weft_io_t io;
    weft_runtime_t *rt;          /* the accepted streams' runtime */
    weft_tcp_listen_opts_t opts; /* normalised: backlog/backoff defaults filled in */
    /* Woken by close: an accept sleeping in back-off waits on a timer, not
     * on the io handle, so close needs this to reach it. */
    weft_atomic_waker_t close_waker;
    _Atomic int64_t backoff_ns; /* the next back-off; 0 after a success */
    _Atomic uint64_t accepted, exhausted, backoff_total_ns, aborted;
    _Atomic int last_error;
};

/*
 * A stream around fd (non-blocking, owned by the caller until this
 * returns 0: then by the stream), registered with rt, refs = 1.
 * 0, -ENOMEM, or weft_io_register's error (the fd is then still the
 * caller's to close).
 */
int weft__tcp_stream_new(weft_runtime_t *rt, int fd, weft_tcp_stream_t **out);

/* Take / drop a reference (see the invariants above). */
void weft__tcp_stream_ref(weft_tcp_stream_t *s);
void weft__tcp_stream_unref(weft_tcp_stream_t *s);
void weft__tcp_listener_unref(weft_tcp_listener_t *l);

/* The reference count, for tests (racy). */
uint32_t weft__tcp_stream_refs(weft_tcp_stream_t *s);
uint32_t weft__tcp_listener_refs(weft_tcp_listener_t *l);

/* True if close has started on the object (relaxed: advisory only). */
static inline bool weft__tcp_stream_closed(weft_tcp_stream_t *s)
{
    return atomic_load_explicit(&s->closed, memory_order_relaxed) != 0;
}

/* rt, or the calling worker's runtime when rt is NULL. */
weft_runtime_t *weft__net_runtime(weft_runtime_t *rt);

#endif /* WEFT_NET_NET_H */

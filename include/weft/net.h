/*
 * weft/net.h - TCP over IPv4 and IPv6: listeners and streams, each
 * operation both a future (for stackless tasks and combinators) and a
 * coroutine call (which awaits that future).
 *
 *   struct sockaddr_storage a;
 *   socklen_t alen;
 *   weft_addr_parse("127.0.0.1:8080", &a, &alen);
 *   weft_tcp_listener_t *l;
 *   weft_tcp_listen(rt, (struct sockaddr *)&a, alen, 1024, &l);
 *   for (;;) {                                   // in a coroutine task
 *       weft_tcp_stream_t *s;
 *       if (weft_tcp_accept(l, &s, NULL, WEFT_FOREVER) < 0) break;
 *       weft_spawn_coro(rt, serve, s, NULL, NULL);   // serve() owns s
 *   }
 *   weft_tcp_listener_close(l);
 *
 *   static int serve(void *arg) {
 *       weft_tcp_stream_t *s = arg;
 *       char buf[4096];
 *       int n;
 *       while ((n = weft_tcp_read(s, buf, sizeof buf, WEFT_FOREVER)) > 0)
 *           if (weft_tcp_write_all(s, buf, (size_t)n, WEFT_FOREVER, NULL) < 0) break;
 *       weft_tcp_close(s);
 *       return 0;
 *   }
 *
 * Model. Every socket is non-blocking and close-on-exec, registered once
 * with the runtime's driver (weft/io.h). An operation first tries its
 * system call when the driver's readiness says the socket is ready; only on
 * EAGAIN does it suspend until the driver reports readiness (to the worker
 * that polls epoll, an idle one by default: docs/io.md) or its deadline
 * passes. weft reads
 * into the caller's buffer and writes from it: nothing is buffered inside
 * weft, so memory is bounded by the buffers the application passes, and a
 * slow peer slows the writer down (backpressure through the kernel's socket
 * buffers).
 *
 * Deadlines are absolute weft_now() nanoseconds; WEFT_FOREVER waits
 * without one. A deadline that has already passed turns an operation into a
 * single non-blocking attempt: whatever can be done at once is done (even
 * before the driver has reported the socket ready), and -ETIMEDOUT is
 * returned only if the operation would have had to wait. The kernel also
 * fails a read or write with -ETIMEDOUT when keepalive or TCP_USER_TIMEOUT
 * gives up on the connection (which is then dead): that one arrives before
 * the deadline, so weft_now() < deadline tells the two apart.
 *
 * Cancellation. Every wait observes the task's cancellation: a coroutine
 * call returns -ECANCELED, and a stackless task's future is dropped. Either
 * way the stream or listener stays open and usable, and each call below
 * says what was transferred. In short: a call that transfers data in one
 * system call (read, write, accept) transferred nothing when it reports
 * -ECANCELED or -ETIMEDOUT (data is never taken from the kernel and then
 * lost); the looping calls (read_exact, write_all) report in *done how many
 * bytes went through before the cancel, timeout or error.
 *
 * Concurrency. At most one read-side operation (read, read_exact) and at
 * most one write-side operation (write, write_all) may be in flight on a
 * stream at a time, from any tasks on any workers: one reader task and one
 * writer task can share a stream. At most one accept at a time per
 * listener. A second concurrent operation on the same side fails at once
 * with -EBUSY, having transferred nothing: an operation holds its side
 * from its first poll until it finishes or is dropped (a future that was
 * initialised but never polled holds nothing; a zero-length read or write
 * completes with 0 without taking its side). Options,
 * addresses and shutdown may be called from any thread at any time, but
 * not concurrently with close (they take no reference: the caller's
 * pointer must be live).
 *
 * Closing. weft_tcp_close and weft_tcp_listener_close may run while other
 * tasks wait on the object: those waits end at once with -EBADF, and the
 * object (and its fd) stays valid until the last operation that was in
 * flight has finished (each future holds a reference from its init to its
 * drop). After close returns, the caller's pointer is gone: passing it to
 * any call, or starting a new operation on it from another task, is a
 * use-after-free. Close every stream and listener before freeing the
 * runtime that created it.
 *
 * Errors are negative errno values, never errno itself. Besides the ones
 * listed per call: -EINVAL for a NULL object or out pointer, a NULL buffer
 * with a non-zero length, or a length above SSIZE_MAX (a negative length
 * cast to size_t); -EPERM for a coroutine call made outside a coroutine
 * task; -EBADF for an operation that was in flight when its object was
 * closed (or whose runtime has shut down its driver); -EBUSY for a second
 * operation on the same side at once (see "Concurrency"). Errors of the socket
 * itself come straight from the kernel: -ECONNRESET (the peer reset the
 * connection), -EPIPE (writing after this side or the peer shut the
 * connection down), -ECONNREFUSED, -ENETUNREACH, -EHOSTUNREACH, ...
 */
#ifndef WEFT_NET_H
#define WEFT_NET_H

#include <sys/socket.h>

#include <weft/io.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct weft_tcp_listener weft_tcp_listener_t; /* opaque */
typedef struct weft_tcp_stream weft_tcp_stream_t;     /* opaque */

/* ---- addresses ------------------------------------------------------------------------------ */

/* Buffer size that holds any address weft_addr_format writes, with its NUL. */
#define WEFT_ADDR_STRLEN 72

/*
 * Parse a numeric address with a port: "127.0.0.1:8080", "[::1]:8080",
 * "[fe80::1%2]:80" (a numeric IPv6 scope id). No host names (no DNS: that
 * would block). The port is decimal, 0-65535. *out is zeroed and filled as
 * a sockaddr_in or sockaddr_in6; *len (may be NULL) gets its size.
 * 0 or -EINVAL (NULL text or out, malformed text).
 */
int weft_addr_parse(const char *text, struct sockaddr_storage *out, socklen_t *len);

/*
 * Write addr as text in the form weft_addr_parse reads ("a.b.c.d:port",
 * "[v6]:port", "[v6%scope]:port") into buf, NUL-terminated. Returns the
 * length written (without the NUL), -EINVAL (NULL argument, a family other
 * than AF_INET / AF_INET6), or -ENOSPC (cap too small; WEFT_ADDR_STRLEN is
 * always enough).
 */
int weft_addr_format(const struct sockaddr *addr, char *buf, size_t cap);

/* The size of addr's sockaddr (from its family), or 0 for NULL / another family. */
socklen_t weft_addr_len(const struct sockaddr *addr);

/* The port of an AF_INET / AF_INET6 address (host order), or -EINVAL. */
int weft_addr_port(const struct sockaddr *addr);

/* ---- listener ------------------------------------------------------------------------------- */

/*
 * Listener options. Start from WEFT_TCP_LISTEN_OPTS_INIT.
 *
 * Running out of descriptors or memory (accept fails with EMFILE, ENFILE,
 * ENOBUFS or ENOMEM, or the new socket cannot be registered with the
 * driver) is not an error of the listener. When accept itself fails the
 * pending connection stays in the kernel's backlog; a socket that was
 * accepted but cannot be registered (no memory for its driver slot) is
 * closed, so that one peer sees a reset. By default an accept then backs
 * off: it sleeps on a timer (backoff_min_ns, doubling on every consecutive
 * failure up to backoff_max_ns, reset by the next success) and tries again,
 * so a server never spins at 100% CPU while fds are short and resumes
 * serving once fds are released. Every such failure is counted
 * (weft_tcp_listener_stats) and reported to on_exhaustion if set. With
 * fail_on_exhaustion, the accept returns the error instead (after counting
 * and reporting it); the caller decides what to do.
 */
typedef struct weft_tcp_listen_opts {
    int backlog;    /* listen(2) backlog; <= 0 means 1024 (capped by net.core.somaxconn) */
    bool reuseaddr; /* SO_REUSEADDR (default true) */
    int v6only;     /* IPv6 listeners: 1 IPV6_V6ONLY, 0 dual-stack, -1 (default) the system's */
    bool fail_on_exhaustion; /* return -EMFILE/-ENFILE/-ENOBUFS/-ENOMEM instead of backing off */
    int64_t backoff_min_ns;  /* first back-off; 0 means 1 ms; at most WEFT_TCP_BACKOFF_LIMIT_NS */
    int64_t backoff_max_ns;  /* back-off cap; 0 means 100 ms; at most WEFT_TCP_BACKOFF_LIMIT_NS */
    /*
     * Called on the accepting task's thread each time an accept hits
     * exhaustion: err is the negative errno, backoff_ns the length of the
     * back-off about to start (0 with fail_on_exhaustion; the accept's
     * deadline, close or drop may cut it short). Must not block or call
     * back into the listener. May be NULL.
     */
    void (*on_exhaustion)(weft_tcp_listener_t *l, int err, int64_t backoff_ns, void *arg);
    void *arg;
    /*
     * SO_REUSEPORT (default false): several listeners, each made with it,
     * may bind the same address, and the kernel spreads incoming
     * connections over them. This is how to accept on every worker: one
     * listener and one accepting task each (a listener takes one accept at
     * a time, -EBUSY otherwise). Connections the kernel queued on a
     * listener that then closes are reset, not moved to the others; and
     * any process of the same user can join the port with the option.
     */
    bool reuseport;
} weft_tcp_listen_opts_t;

// clang-format off
#define WEFT_TCP_LISTEN_OPTS_INIT \
    ((weft_tcp_listen_opts_t){1024, true, -1, false, 0, 0, NULL, NULL, false})
// clang-format on

/*
 * Create a listening TCP socket bound to addr (AF_INET or AF_INET6; port 0
 * picks a free port, see weft_tcp_listener_local_addr), with SO_REUSEADDR,
 * non-blocking and close-on-exec, registered with rt's driver (rt NULL: the
 * runtime of the calling worker). Returns immediately; nothing waits.
 * 0, -EINVAL (NULL addr/out, addrlen too small for the family, no runtime),
 * -EAFNOSUPPORT, -EADDRINUSE, -EADDRNOTAVAIL, -EACCES, -EMFILE, -ENOMEM,
 * -ESHUTDOWN (the runtime is shutting down), or another bind/listen error.
 */
int weft_tcp_listen(weft_runtime_t *rt, const struct sockaddr *addr, socklen_t addrlen, int backlog,
                    weft_tcp_listener_t **out);

/* The longest back-off weft_tcp_listen_opts_t accepts: one hour. */
#define WEFT_TCP_BACKOFF_LIMIT_NS (3600 * (int64_t)1000000000)

/* The same with options (opts NULL: the defaults). -EINVAL also for a
 * negative back-off or one above WEFT_TCP_BACKOFF_LIMIT_NS. */
int weft_tcp_listen_with(weft_runtime_t *rt, const struct sockaddr *addr, socklen_t addrlen,
                         const weft_tcp_listen_opts_t *opts, weft_tcp_listener_t **out);

/* The bound address (with the port chosen for port 0). 0, -EINVAL, -EBADF. */
int weft_tcp_listener_local_addr(weft_tcp_listener_t *l, struct sockaddr_storage *out);

typedef struct weft_tcp_listener_stats {
    uint64_t accepted;   /* connections handed out */
    uint64_t exhausted;  /* accepts that hit EMFILE/ENFILE/ENOBUFS/ENOMEM (or could not register) */
    uint64_t backoff_ns; /* total time slept in back-off (also by back-offs cut short) */
    uint64_t aborted;    /* connections reset before accept could take them (ECONNABORTED ...) */
    int last_error;      /* the last exhaustion error (negative errno), 0 if none */
} weft_tcp_listener_stats_t;

/* A snapshot of l's counters (each read atomically, not all at one instant). 0 or -EINVAL. */
int weft_tcp_listener_stats(weft_tcp_listener_t *l, weft_tcp_listener_stats_t *out);

/*
 * Stop listening and release l. When close returns the socket no longer
 * listens: new connections are refused, those still in the backlog are
 * reset, and the address can be listened on again (by a listener with
 * SO_REUSEADDR, the default: the fd may still be open while an accept in
 * flight holds a reference, and without it bind says -EADDRINUSE until
 * then). An accept in flight
 * (waiting for a connection, or sleeping in back-off) ends at once with
 * -EBADF; the fd number stays reserved until that accept is dropped.
 * Streams already accepted are independent of l and stay open.
 * 0, -EINVAL, or -EBADF (as for weft_tcp_close). l must not be used
 * afterwards.
 */
int weft_tcp_listener_close(weft_tcp_listener_t *l);

/*
 * The accept future. Output: 0 with the new stream in *out (owned by the
 * caller; close it with weft_tcp_close), or a negative errno: -ETIMEDOUT,
 * -EBADF (the listener was closed), -EMFILE/-ENFILE/-ENOBUFS/-ENOMEM (only
 * with fail_on_exhaustion), -ESHUTDOWN (the runtime is shutting down: the
 * connection taken was closed), or another accept error. Transient failures
 * (a connection aborted by its peer before it was taken, ECONNABORTED,
 * EPROTO, EPERM from a firewall, and the network errors accept(2) lists)
 * are counted and skipped, never reported. The accepted socket is
 * non-blocking, close-on-exec, and has the kernel's default options
 * (TCP_NODELAY off).
 * Dropped before ready: no connection was taken (it stays in the backlog).
 * Fields are private.
 */
typedef struct weft_tcp_accept {
    weft_tcp_listener_t *l_;
    weft_tcp_stream_t **out_;
    struct sockaddr_storage *peer_;
    int64_t deadline_;
    int64_t backoff_until_; /* 0, or the end of the back-off sleep in progress */
    int err_;               /* set by a failed init: reported by poll */
    bool armed_;            /* timer_ may be armed */
    weft_timer_t timer_;
    weft_io_waiter_t waiter_; /* the waker left registered, if any */
    bool holds_;              /* holds the listener's accept side */
} weft_tcp_accept_t;

/*
 * Initialise an accept of one connection on l; *out receives the stream,
 * *peer (may be NULL) its remote address. Takes a reference on l until the
 * future is dropped. 0 or -EINVAL; after a failed init the future still
 * polls (ready with the error) and drops safely.
 */
int weft_tcp_accept_init(weft_tcp_accept_t *f, weft_tcp_listener_t *l, weft_tcp_stream_t **out,
                         struct sockaddr_storage *peer, int64_t deadline);
extern const weft_future_vtable_t weft_tcp_accept_vtable;

/*
 * Coroutine call: accept one connection. 0 with *out set, or the future's
 * errors, or -ECANCELED (no connection was taken; l stays usable), -EPERM.
 */
int weft_tcp_accept(weft_tcp_listener_t *l, weft_tcp_stream_t **out, struct sockaddr_storage *peer,
                    int64_t deadline);

/* ---- stream: connecting --------------------------------------------------------------------- */

/*
 * The connect future: a non-blocking connect to addr, then a wait until the
 * socket is writable, then SO_ERROR. Output: 0 with the connected stream in
 * *out (owned by the caller), or -ETIMEDOUT (deadline; the attempt is
 * abandoned), -ECONNREFUSED, -ENETUNREACH, -EHOSTUNREACH, -EADDRNOTAVAIL,
 * -EAFNOSUPPORT, -EMFILE, -ENOMEM, -ESHUTDOWN, ...
 * Dropped before ready: the attempt is abandoned and its socket closed (the
 * peer may have seen a connection open and close). Fields are private.
 */
typedef struct weft_tcp_connect {
    weft_runtime_t *rt_;
    weft_tcp_stream_t **out_;
    weft_tcp_stream_t *s_; /* the stream being connected, owned until handed out */
    struct sockaddr_storage addr_;
    socklen_t addrlen_;
    int64_t deadline_;
    int err_;
    bool armed_;
    weft_timer_t timer_;
    weft_io_waiter_t waiter_; /* the waker left registered, if any */
} weft_tcp_connect_t;

/*
 * Initialise a connect on rt (NULL: the calling worker's runtime). addr is
 * copied. 0 or -EINVAL (NULL f/addr/out, addrlen too small for the
 * family or larger than a sockaddr_storage, no runtime); after a failed
 * init the future still polls (ready with the error) and drops safely.
 */
int weft_tcp_connect_init(weft_tcp_connect_t *f, weft_runtime_t *rt, const struct sockaddr *addr,
                          socklen_t addrlen, int64_t deadline, weft_tcp_stream_t **out);
extern const weft_future_vtable_t weft_tcp_connect_vtable;

/* Coroutine call: connect. 0 with *out set, the future's errors, -ECANCELED, -EPERM. */
int weft_tcp_connect(weft_runtime_t *rt, const struct sockaddr *addr, socklen_t addrlen,
                     int64_t deadline, weft_tcp_stream_t **out);

/*
 * Wrap a connected SOCK_STREAM socket the caller owns (for example one end
 * of socketpair(AF_UNIX, SOCK_STREAM), or a socket from another library):
 * weft sets O_NONBLOCK and FD_CLOEXEC on it, registers it with rt, and from
 * then on owns it (weft_tcp_close closes it). On failure the caller still
 * owns fd, with the flags it had. 0, -EINVAL (fd < 0, NULL out, no
 * runtime), -EBADF (fd not open), -ENOTSOCK, -EPROTOTYPE (not a stream
 * socket), -EEXIST (already registered), -ENOMEM, -ESHUTDOWN. TCP-only
 * calls (nodelay, keepalive) on a non-TCP stream return the kernel's error
 * (-EOPNOTSUPP, -ENOPROTOOPT).
 */
int weft_tcp_stream_from_fd(weft_runtime_t *rt, int fd, weft_tcp_stream_t **out);

/* ---- stream: reading and writing ------------------------------------------------------------ */

/*
 * One future type serves the four transfer operations (each has its own
 * init and vtable). Fields are private; use weft_tcp_xfer_done for the
 * progress of read_exact / write_all.
 */
typedef struct weft_tcp_xfer {
    weft_tcp_stream_t *s_;
    void *buf_;
    size_t len_;
    size_t done_;      /* bytes transferred so far */
    size_t *done_out_; /* mirror of done_, may be NULL */
    int64_t deadline_;
    int err_;
    bool armed_;
    weft_timer_t timer_;
    weft_io_waiter_t waiter_; /* the waker left registered, if any */
    unsigned holds_;          /* the side of the stream it holds (0: none) */
} weft_tcp_xfer_t;

typedef weft_tcp_xfer_t weft_tcp_read_t;
typedef weft_tcp_xfer_t weft_tcp_write_t;
typedef weft_tcp_xfer_t weft_tcp_read_exact_t;
typedef weft_tcp_xfer_t weft_tcp_write_all_t;

/* Bytes a transfer future has moved so far (also valid after its drop). */
size_t weft_tcp_xfer_done(const weft_tcp_xfer_t *f);

/*
 * Each init takes a reference on s until the future is dropped, and returns
 * 0 or -EINVAL (NULL f or s, NULL buf with len > 0, len > SSIZE_MAX); after
 * a failed init the future still polls (ready with the error) and drops
 * safely. The buffer must stay valid until the future is dropped.
 */
int weft_tcp_read_init(weft_tcp_read_t *f, weft_tcp_stream_t *s, void *buf, size_t len,
                       int64_t deadline);
int weft_tcp_write_init(weft_tcp_write_t *f, weft_tcp_stream_t *s, const void *buf, size_t len,
                        int64_t deadline);
/* done (may be NULL) is kept equal to the bytes transferred after every
 * system call, so it is right however the future ends, dropped included.
 * Like the buffer, *done must stay valid until the future is dropped (it is
 * written from whichever worker polls the future). */
int weft_tcp_read_exact_init(weft_tcp_read_exact_t *f, weft_tcp_stream_t *s, void *buf, size_t len,
                             int64_t deadline, size_t *done);
int weft_tcp_write_all_init(weft_tcp_write_all_t *f, weft_tcp_stream_t *s, const void *buf,
                            size_t len, int64_t deadline, size_t *done);

/*
 * Read future: one recv of at most len bytes (and at most 0x7ffff000, the
 * kernel's limit per call) into buf. Output: bytes read (> 0), 0 at end of
 * stream (the peer shut down its writing side) or when len is 0 on an open
 * stream (no system call is made; -EBADF once it is closed), or
 * -ETIMEDOUT, -EBADF, -ECONNRESET, -ENOTCONN, ...
 * Dropped or timed out: nothing was read (no data left the kernel).
 */
extern const weft_future_vtable_t weft_tcp_read_vtable;

/*
 * Write future: one send of at most len bytes (at most 0x7ffff000) from
 * buf, with MSG_NOSIGNAL. Output: bytes written (> 0; fewer than len when
 * the socket buffer filled up), 0 when len is 0 (-EBADF on a closed
 * stream, as for read), or -ETIMEDOUT, -EBADF,
 * -EPIPE (this side shut down writing, or the connection is gone),
 * -ECONNRESET, ... Dropped or timed out: nothing was written.
 */
extern const weft_future_vtable_t weft_tcp_write_vtable;

/*
 * Read-exact future: reads until len bytes are in buf. Output: 0 once all
 * len bytes are read; -EPIPE if the stream ended first; or a read error.
 * In every case *done says how many bytes at the start of buf were filled;
 * a drop (cancellation) or -ETIMEDOUT leaves the rest unread in the kernel.
 */
extern const weft_future_vtable_t weft_tcp_read_exact_vtable;

/*
 * Write-all future: writes until all len bytes are sent. Output: 0 once all
 * are written, or a write error. *done says how many bytes from the start of
 * buf were handed to the kernel (and will be delivered unless the
 * connection fails); the rest was not written.
 */
extern const weft_future_vtable_t weft_tcp_write_all_vtable;

/*
 * Coroutine calls over those futures. read / write return the byte count
 * (int: each call moves at most 0x7ffff000 bytes) or a negative errno;
 * -ECANCELED means nothing was transferred. read_exact / write_all return 0
 * or a negative errno (-ECANCELED included) and store the bytes transferred
 * in *done (may be NULL) in every case.
 */
int weft_tcp_read(weft_tcp_stream_t *s, void *buf, size_t len, int64_t deadline);
int weft_tcp_write(weft_tcp_stream_t *s, const void *buf, size_t len, int64_t deadline);
int weft_tcp_read_exact(weft_tcp_stream_t *s, void *buf, size_t len, int64_t deadline,
                        size_t *done);
int weft_tcp_write_all(weft_tcp_stream_t *s, const void *buf, size_t len, int64_t deadline,
                       size_t *done);

/* ---- stream: control ------------------------------------------------------------------------ */

#define WEFT_SHUT_RD 0   /* stop reading: see weft_tcp_shutdown */
#define WEFT_SHUT_WR 1   /* send FIN: the peer reads end of stream; writes return -EPIPE */
#define WEFT_SHUT_RDWR 2 /* both */

/*
 * Shut down one or both directions (shutdown(2)); the stream stays open
 * until weft_tcp_close. After WEFT_SHUT_WR the peer reads end of stream
 * once it has read what was sent, and writes on s (including one waiting)
 * return -EPIPE. After WEFT_SHUT_RD a reader waiting on s wakes and a read
 * with nothing queued returns 0; but Linux does not discard data: what was
 * queued, or arrives later from a peer that keeps writing, is still
 * returned by later reads. 0, -EINVAL (bad how), -ENOTCONN, -EBADF.
 */
int weft_tcp_shutdown(weft_tcp_stream_t *s, int how);

/*
 * Close the connection and release s. Operations in flight on other tasks
 * end with -EBADF (see "Closing" above); the fd is closed when the last of
 * them has finished, at once if none. Unread received data makes the kernel
 * reset the connection (RST) instead of closing it gracefully, as close(2)
 * does; shut down WEFT_SHUT_WR and read to end of stream first for a
 * graceful close. 0, -EINVAL, or -EBADF (close already ran and the object
 * is only still alive because operations hold it: a caller bug).
 */
int weft_tcp_close(weft_tcp_stream_t *s);

/*
 * Close with a reset (an abortive close: SO_LINGER with a zero timeout,
 * then weft_tcp_close): the peer's next read or write fails with
 * -ECONNRESET, and what s had not yet sent is discarded. For a proxy
 * passing a reset on, or a server dropping a misbehaving client without
 * the TIME_WAIT state. Operations in flight end with -EBADF as for
 * weft_tcp_close. 0, -EINVAL, -EBADF (already closed), or the kernel's
 * error from setsockopt (then nothing is closed).
 */
int weft_tcp_abort(weft_tcp_stream_t *s);

/* Remote / local address. 0, -EINVAL, -EBADF, -ENOTCONN. */
int weft_tcp_peer_addr(weft_tcp_stream_t *s, struct sockaddr_storage *out);
int weft_tcp_local_addr(weft_tcp_stream_t *s, struct sockaddr_storage *out);

/* TCP_NODELAY (send small writes at once). 0, -EINVAL, -EBADF, or the kernel's error. */
int weft_tcp_set_nodelay(weft_tcp_stream_t *s, bool on);
/* TCP_NODELAY's current value: 0 or 1, or a negative errno. */
int weft_tcp_nodelay(weft_tcp_stream_t *s);

/*
 * TCP keepalive. idle_ns: no traffic for this long before the first probe;
 * interval_ns between probes; count unanswered probes before the
 * connection is dropped (a waiting read then fails with -ETIMEDOUT). The
 * kernel counts in whole seconds: durations are rounded up, and each must
 * come to 1..32767 s; count 1..127. idle_ns == 0 turns keepalive off (the
 * other arguments are then ignored). 0, -EINVAL, -EBADF, or the kernel's
 * error.
 */
int weft_tcp_set_keepalive(weft_tcp_stream_t *s, int64_t idle_ns, int64_t interval_ns, int count);

/*
 * The socket's fd, for options weft has no call for (setsockopt). Never
 * read, write, close or change its flags behind weft's back. -EINVAL, -EBADF.
 */
int weft_tcp_stream_fd(weft_tcp_stream_t *s);

#ifdef __cplusplus
}
#endif
#endif /* WEFT_NET_H */

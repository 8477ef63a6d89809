/*
 * weft/io.h - readiness of file descriptors, from the runtime's driver
 * (epoll, polled by an idle worker or by a driver thread: docs/io.md,
 * "Who polls"): run a C library that owns its own sockets on weft.
 *
 *   weft_io_t io;
 *   weft_io_register(rt, fd, &io);            // fd must be O_NONBLOCK
 *   int r = 0;                                // no snapshot yet
 *   for (;;) {
 *       ssize_t n = read(fd, buf, sizeof buf);
 *       if (n >= 0 || errno != EAGAIN) break;
 *       weft_io_clear(io, r);                 // drained: forget what r saw
 *       r = weft_io_wait_ready(io, WEFT_IO_READABLE, deadline);  // coroutine
 *       if (r < 0) break;                     // -ETIMEDOUT, -ECANCELED, -EBADF
 *   }
 *   weft_io_close(io);                        // deregister, then close(fd)
 *
 * Model. A registered fd is watched edge-triggered for both directions, once,
 * for as long as it is registered. The driver keeps a readiness word per fd:
 * the directions seen ready since they were last cleared, and a tick that
 * changes with every event, so that clearing readiness cannot erase an
 * event that arrived after the operation that found the fd drained.
 * A wait returns a positive readiness snapshot as soon as one of the
 * directions asked for is ready (WEFT_IO_MASK(snapshot) tells which). The
 * caller then does its I/O; when an operation fails with EAGAIN it calls
 * weft_io_clear(io, snapshot) before waiting again. Readiness can be
 * spurious (an operation may still return EAGAIN): retry after clearing.
 * A hang-up or error is reported as both directions ready, so that the
 * next read or write sees it, plus the sticky WEFT_IO_HUP bit.
 *
 * Handles are values ({source, generation}); after deregistration every call
 * on an old handle returns -EBADF, even if the source slot was reused.
 * A wait blocked on a handle that is deregistered is woken with -EBADF.
 * Any number of tasks may wait for the same fd and direction: an event
 * wakes every one of them (one in the direction's slot, the others on the
 * fd's queue; weft_io_poll_ready alone does not queue: see there). A wait
 * returns only if the direction is still ready when its task runs: one
 * that finds it cleared by a faster waiter goes back to waiting inside the
 * call. So each event costs a poll of every waiting task (a thundering
 * herd: N waiters, N polls), and which task gets the data is up to the
 * scheduler, not spread evenly; weft has no wake-one mode (EPOLLEXCLUSIVE).
 * A few waiters per fd are cheap; for many, give each its own fd
 * (SO_REUSEPORT). To change the direction a blocked task waits for (a library that
 * switches a socket from "in" to "out"), wake that task by other means
 * (its own notification future, or cancellation) and let it wait again;
 * deregistering and registering again also works (the waiter sees -EBADF)
 * at two epoll_ctl calls.
 * A wait that ends without an event (timeout, cancellation, drop)
 * takes its waker back (weft_io_forget), so the slot keeps no reference
 * to a task that stopped waiting.
 *
 * Libraries that do their own I/O (libcurl's multi_socket_action, c-ares)
 * never show the adapter their EAGAIN. Clear first, then hand over: take
 * the snapshot, weft_io_clear(io, snapshot) the directions you are about
 * to pass on, then call the library. Data that arrives during or after
 * its calls moves the tick and sets the bits again, so nothing new is
 * lost. What the library leaves unread of what was already there raises
 * no new event: if it may stop before EAGAIN, look again before waiting
 * (a poll(2) of the fd with timeout 0 is the level-triggered check).
 * Clearing one direction of a two-direction snapshot is allowed: pass
 * snapshot & ~WEFT_IO_WRITABLE (or ~WEFT_IO_READABLE); the tick is kept.
 */
#ifndef WEFT_IO_H
#define WEFT_IO_H

#include <weft/time.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct weft_runtime weft_runtime_t;

#define WEFT_IO_READABLE 1u
#define WEFT_IO_WRITABLE 2u
/*
 * Set in a snapshot once the peer hung up or the fd reported an error; it
 * stays set (weft_io_clear never removes it). The next read reports the
 * end of stream or the error.
 */
#define WEFT_IO_HUP 8u
/*
 * Set in a snapshot once the fd reported an exceptional condition
 * (EPOLLPRI: TCP urgent data, and whatever else a file type reports so);
 * it stays set. It wakes no waiter by itself.
 *
 * A TCP read that returned fewer bytes than asked, with neither this bit
 * nor WEFT_IO_HUP in the snapshot it acted on, emptied the receive queue:
 * clearing then saves the EAGAIN call (weft's streams do). With
 * WEFT_IO_PRI the read may have stopped at the urgent mark with data
 * queued behind it; with WEFT_IO_HUP the end of stream is still to be
 * read. Other sockets stop short with data still queued too (AF_UNIX
 * after a message that carried SCM_RIGHTS): clear only after EAGAIN there.
 */
#define WEFT_IO_PRI 16u
/* The direction bits of a readiness snapshot. */
#define WEFT_IO_MASK(snapshot) ((unsigned)(snapshot) & (WEFT_IO_READABLE | WEFT_IO_WRITABLE))

typedef struct weft_io {
    void *src_;
    uint64_t gen_;
} weft_io_t;

/*
 * Watch fd (which must be non-blocking; weft does not change its flags) on
 * rt's driver. 0, -EINVAL (NULL rt/out, fd < 0, or an fd epoll refuses,
 * such as the driver's own epoll fd), -EBADF (fd not open), -EEXIST (this
 * open fd is already registered on rt; another runtime may register it
 * too, and then both report its events), -EPERM (fd cannot be polled,
 * e.g. a regular file), -ELOOP (an epoll fd that watches rt's), -ENOMEM,
 * -ESHUTDOWN.
 *
 * A registration whose fd was closed without weft_io_deregister and whose
 * number has been given to a new file is not an -EEXIST: the new file is
 * registered, and the old registration is ended as a deregistration would
 * end it (its waiters are woken with -EBADF, its handle turns stale, so a
 * late deregister or close through it touches neither epoll nor the new
 * file). This needs the new file registered on the same runtime (and fd
 * numbers below 2^24); until then the old waiters sleep, and a
 * deregister or close through the old handle acts on the number, whatever
 * file it names by then (see below).
 */
int weft_io_register(weft_runtime_t *rt, int fd, weft_io_t *out);

/*
 * Stop watching. Waiters are woken and report -EBADF. Call it before
 * closing the fd. 0 or -EBADF (stale handle). The fd is not closed.
 *
 * A library that close()s a registered fd without this leaves its waiters
 * asleep: epoll forgets a closed fd without reporting an event, so they
 * wake only at their deadline (-ETIMEDOUT), when the fd number is
 * registered again (-EBADF, see weft_io_register), or never. Adapters
 * whose library closes fds itself hook its close to deregister first;
 * weft_io_close does both in that order (libcurl: CURLOPT_CLOSESOCKETFUNCTION,
 * and deregister on CURL_POLL_REMOVE too if the wait is to end there:
 * curl removes sockets it keeps open for reuse).
 */
int weft_io_deregister(weft_io_t io);

/*
 * Deregister, then close(2) the fd: the call an adapter hooks into its
 * library's close (see above), in the one safe order. Waiters are woken
 * with -EBADF first. 0; -EBADF for a stale handle (nothing is closed: the
 * fd number may belong to someone else by now); or close's error, after
 * which the fd is released all the same (Linux never keeps it).
 */
int weft_io_close(weft_io_t io);

/* The fd of a live handle, or -EBADF. */
int weft_io_fd(weft_io_t io);

/*
 * Non-blocking check: the readiness snapshot (> 0) if a direction in
 * interest is ready, 0 if not, -EBADF, -EINVAL (interest has no direction).
 */
int weft_io_ready(weft_io_t io, unsigned interest);

/*
 * Forget the directions of snapshot as ready, unless the driver has seen a
 * newer event since the snapshot was taken. Call after EAGAIN. A snapshot
 * <= 0 (none yet, or a wait's error) and a stale handle do nothing, so a
 * loop may keep its last result and clear with it unconditionally.
 */
void weft_io_clear(weft_io_t io, int snapshot);

/*
 * Poll-level wait, for writing futures: a snapshot (> 0) if ready (then
 * nothing is left registered by this call); else cx's waker is registered
 * for the direction(s) and 0 (= WEFT_PENDING is the caller's to return) is
 * the result; -EBADF, -EINVAL.
 *
 * A future whose wait can end without the fd's event (a deadline, being
 * dropped) uses weft_io_poll_wait instead and calls weft_io_forget then:
 * otherwise the registered waker, and with it the task's memory, is kept
 * until the fd's next event or its deregistration.
 *
 * Without a note this call cannot queue: it takes the direction's slot
 * even from another task, whose waker is woken (it polls and registers
 * again). So two tasks that both wait through weft_io_poll_ready on one
 * fd and direction keep waking each other and busy a core; a future that
 * may share its fd with other waiting tasks uses weft_io_poll_wait.
 */
int weft_io_poll_ready(weft_io_t io, unsigned interest, weft_cx_t *cx);

/*
 * A future's note of what its last poll left registered: the directions
 * whose waker is in the fd's slot and has not been seen consumed, and,
 * while it waits on the fd's queue, the queue's list node. Set it to
 * WEFT_IO_WAITER_INIT before the first poll; it must stay at one address
 * from the first poll until weft_io_forget (futures do not move while
 * they are polled anyway), and serves one handle: poll and forget with
 * the same one. Private fields.
 */
typedef struct weft_io_waiter {
    unsigned dir_;  /* what this future left behind (src/io/source.c) */
    unsigned qdir_; /* the rest under the driver's lock: the fd's queue */
    uint64_t qgen_;
    uint64_t qseq_;
    struct weft_io_waiter *qprev_, *qnext_;
    weft_waker_t qwaker_;
} weft_io_waiter_t;

#define WEFT_IO_WAITER_INIT                                                                        \
    {                                                                                              \
        0                                                                                          \
    }

/*
 * weft_io_poll_ready, noting in *wt what it left registered. A snapshot
 * (> 0) also tells *wt that the slot registrations of its directions were
 * consumed (readiness is set only by the event that then wakes them), and
 * -EBADF that all were (deregistration takes every waker). If another
 * task's waker holds a direction's slot, *wt waits on the fd's queue
 * instead, and *wt notes that it may be queued until weft_io_forget
 * (which then takes the driver's lock once).
 */
int weft_io_poll_wait(weft_io_t io, unsigned interest, weft_cx_t *cx, weft_io_waiter_t *wt);

/* Tell *wt about a result (a snapshot, -EBADF) the future got from
 * weft_io_ready. */
void weft_io_waiter_saw(weft_io_waiter_t *wt, int snapshot);

/*
 * The future is finishing or being dropped, for whatever reason: take
 * the registration *wt notes (a wait ended by a deadline or a
 * cancellation) back out of the fd's slot, so that the slot keeps no
 * reference to the task. What is taken is woken, never dropped: it may be
 * another waiter's (one that registered after ours was consumed, or a
 * weft_io_poll_ready that displaced it), or our own task's registration
 * on behalf of another of its futures waiting on the same fd; so the task
 * may be polled once spuriously. Free when *wt notes nothing (the usual
 * case after an event of a single waiter); leaves the slots alone on a
 * stale handle (deregistration took every waker; the slot may serve a new
 * registration now); a waiter that used the fd's queue takes the driver's
 * lock to leave it (on a stale handle too). Leaves *wt empty. Every
 * future that polled with *wt calls this when it finishes or is dropped.
 */
void weft_io_forget(weft_io_t io, weft_io_waiter_t *wt);

/*
 * The readiness future. Output: a snapshot (> 0), -ETIMEDOUT at the
 * deadline (WEFT_FOREVER: none), -EBADF if the handle is or becomes stale,
 * -EPERM if it must wait for a deadline off the runtime's workers (no
 * timer can be armed there; with WEFT_FOREVER it just waits).
 * Dropping it (cancellation) leaves the fd registered and usable; nothing
 * was transferred by a wait in any case.
 */
typedef struct weft_io_wait {
    weft_io_t io;
    unsigned interest;
    int64_t deadline;
    weft_timer_t timer;
    weft_io_waiter_t waiter;
} weft_io_wait_t;

/* 0 or -EINVAL (NULL w, no direction in interest). */
int weft_io_wait_init(weft_io_wait_t *w, weft_io_t io, unsigned interest, int64_t deadline);
extern const weft_future_vtable_t weft_io_wait_vtable;

/*
 * Coroutine call: await the readiness future. A snapshot (> 0),
 * -ETIMEDOUT, -EBADF, -ECANCELED (the task was cancelled; the fd stays
 * usable), -EINVAL, -EPERM (not in a coroutine).
 */
int weft_io_wait_ready(weft_io_t io, unsigned interest, int64_t deadline);

#ifdef __cplusplus
}
#endif
#endif /* WEFT_IO_H */

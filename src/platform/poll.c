/*
 * poll.c - the system calls of the driver thread: epoll, an eventfd to wake
 * it, closing fds, and the thread's timer slack.
 *
 * Owns: weft__epoll_* (weft__epoll_precise tells whether waits are still
 * unrounded), weft__eventfd_*, weft__fd_close,
 * weft__thread_timer_slack. src/io's epoll backend is their only user.
 *
 * Invariants:
 * - Every fd made here is O_CLOEXEC (and the eventfd non-blocking), so a
 *   fork+exec in the application never inherits them.
 * - Waits take a relative timeout in nanoseconds and pass it to
 *   epoll_pwait2 unrounded (epoll_wait would round up to whole ms); a
 *   negative timeout waits without limit. Where epoll_pwait2 does not
 *   exist (ENOSYS) epoll_wait is used, the timeout rounded up. EINTR is
 *   returned as 0 events: the driver loop simply goes round again.
 * - The caller's errno is preserved; results are negative errno.
 */
#include "platform/platform.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

_Static_assert(WEFT__EP_IN == EPOLLIN && WEFT__EP_PRI == EPOLLPRI && WEFT__EP_OUT == EPOLLOUT &&
                   WEFT__EP_ERR == EPOLLERR && WEFT__EP_HUP == EPOLLHUP &&
                   WEFT__EP_RDHUP == EPOLLRDHUP && WEFT__EP_ET == EPOLLET,
               "weft's epoll bits are the kernel's");
_Static_assert(sizeof(weft__epoll_event_t) == sizeof(struct epoll_event),
               "weft__epoll_event_t mirrors struct epoll_event");

int weft__epoll_create(void)
{
    int saved = errno;
    int fd = epoll_create1(EPOLL_CLOEXEC);
    int rc = fd < 0 ? -errno : fd;
    errno = saved;
    return rc;
}

int weft__epoll_ctl(int epfd, int op, int fd, uint32_t events, uint64_t data)
{
    static const int ops[] = {EPOLL_CTL_ADD, EPOLL_CTL_MOD, EPOLL_CTL_DEL};
    if (op < 0 || op > 2)
        return -EINVAL;
    struct epoll_event ev = {.events = events, .data.u64 = data};
    int saved = errno;
    int rc = epoll_ctl(epfd, ops[op], fd, &ev) < 0 ? -errno : 0;
    errno = saved;
    return rc;
}

/* Set once epoll_pwait2 answered ENOSYS (kernel < 5.11, or an emulator
 * such as qemu-user that lacks it): epoll_wait with the timeout rounded up
 * to whole milliseconds is used from then on (never early). */
static _Atomic int no_pwait2;

int weft__epoll_wait(int epfd, weft__epoll_event_t *evs, int max, int64_t timeout_ns)
{
    struct timespec ts, *tp = NULL;
    if (timeout_ns >= 0) {
        ts.tv_sec = (time_t)(timeout_ns / 1000000000);
        ts.tv_nsec = (long)(timeout_ns % 1000000000);
        tp = &ts;
    }
    int saved = errno;
    int n = -1;
    if (!atomic_load_explicit(&no_pwait2, memory_order_relaxed)) {
        n = epoll_pwait2(epfd, (struct epoll_event *)evs, max, tp, NULL);
        if (n < 0 && errno == ENOSYS)
            atomic_store_explicit(&no_pwait2, 1, memory_order_relaxed);
    }
    if (atomic_load_explicit(&no_pwait2, memory_order_relaxed)) {
        int64_t ms = timeout_ns < 0 ? -1 : (timeout_ns + 999999) / 1000000;
        n = epoll_wait(epfd, (struct epoll_event *)evs, max, ms > INT32_MAX ? INT32_MAX : (int)ms);
    }
    int rc = n < 0 ? (errno == EINTR ? 0 : -errno) : n;
    errno = saved;
    return rc;
}

bool weft__epoll_precise(void)
{
    return !atomic_load_explicit(&no_pwait2, memory_order_relaxed);
}

int weft__eventfd_create(void)
{
    int saved = errno;
    int fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    int rc = fd < 0 ? -errno : fd;
    errno = saved;
    return rc;
}

void weft__eventfd_signal(int fd)
{
    int saved = errno;
    uint64_t one = 1;
    /* Only EAGAIN (the counter is saturated: already signalled) can fail. */
    (void)!write(fd, &one, sizeof one);
    errno = saved;
}

void weft__eventfd_drain(int fd)
{
    int saved = errno;
    uint64_t v;
    (void)!read(fd, &v, sizeof v);
    errno = saved;
}

int weft__fd_close(int fd)
{
    int saved = errno;
    /* Linux releases the fd even when close reports EINTR: never retry. */
    int rc = close(fd) < 0 && errno != EINTR ? -errno : 0;
    errno = saved;
    return rc;
}

int weft__thread_timer_slack(uint64_t ns)
{
    int saved = errno;
    int rc = prctl(PR_SET_TIMERSLACK, (unsigned long)ns, 0, 0, 0) < 0 ? -errno : 0;
    errno = saved;
    return rc;
}

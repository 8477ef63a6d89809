/*
 * socket.c - the socket system calls of src/net.
 *
 * Owns: every socket(), bind(), listen(), accept4(), connect(), recv(),
 * send(), shutdown(), close() of a socket, getsockopt/setsockopt,
 * getsockname/getpeername and fcntl weft makes.
 *
 * Invariants:
 * - Sockets are created non-blocking and close-on-exec atomically
 *   (SOCK_NONBLOCK | SOCK_CLOEXEC); adopted fds get both flags set here.
 * - send() always carries MSG_NOSIGNAL: a peer reset is -EPIPE or
 *   -ECONNRESET, never SIGPIPE.
 * - EINTR is retried everywhere except close(): on Linux the fd is gone
 *   once close returns, whatever it reports, and retrying could close an fd
 *   another thread has just been given.
 * - Results are a count / fd / 0 or a negative errno; errno itself is saved
 *   and restored around every call, so callers never observe it changing.
 * - recv and send, once each per request of a busy server, go through
 *   syscall(2) rather than glibc's recv()/send(): those are cancellation
 *   points, and in a multi-threaded process each call brackets the
 *   system call with two atomic read-modify-writes of the thread's
 *   cancel state (about 80 instructions a request). weft never uses
 *   pthread_cancel on its threads, so nothing is lost.
 */
#include "platform/socket.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/syscall.h>
#include <unistd.h>

/* Sanitizer builds keep glibc's calls: ASan checks the caller's buffer
 * and TSan models the fd's synchronisation in its recv/send interceptors,
 * which a raw syscall would bypass. */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SOCK_INTERCEPTED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define SOCK_INTERCEPTED 1
#endif
#endif
#ifdef SOCK_INTERCEPTED
#define SYS_RECV(fd, buf, len) recv(fd, buf, len, 0)
#define SYS_SEND(fd, buf, len) send(fd, buf, len, MSG_NOSIGNAL)
#else
#define SYS_RECV(fd, buf, len) syscall(SYS_recvfrom, fd, buf, len, 0, NULL, NULL)
#define SYS_SEND(fd, buf, len) syscall(SYS_sendto, fd, buf, len, MSG_NOSIGNAL, NULL, 0)
#endif

#define SAVE_ERRNO int saved_errno_ = errno
#define RESTORE_ERRNO (errno = saved_errno_)

int weft__sock_open(int family)
{
    SAVE_ERRNO;
    int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_TCP);
    int rc = fd >= 0 ? fd : -errno;
    RESTORE_ERRNO;
    return rc;
}

int weft__sock_adopt(int fd, weft__sock_flags_t *was)
{
    SAVE_ERRNO;
    int rc = 0;
    int type = 0;
    socklen_t len = sizeof type;
    was->fl = was->fdfl = -1;
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0) {
        rc = -errno;
        goto out;
    }
    if (type != SOCK_STREAM) {
        rc = -EPROTOTYPE;
        goto out;
    }
    int proto = 0;
    len = sizeof proto;
    was->tcp = getsockopt(fd, SOL_SOCKET, SO_PROTOCOL, &proto, &len) == 0 && proto == IPPROTO_TCP;
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || (!(fl & O_NONBLOCK) && fcntl(fd, F_SETFL, fl | O_NONBLOCK) != 0)) {
        rc = -errno;
        goto out;
    }
    was->fl = fl;
    int fdfl = fcntl(fd, F_GETFD);
    if (fdfl < 0 || (!(fdfl & FD_CLOEXEC) && fcntl(fd, F_SETFD, fdfl | FD_CLOEXEC) != 0)) {
        rc = -errno;
        weft__sock_unadopt(fd, was);
        was->fl = -1;
        goto out;
    }
    was->fdfl = fdfl;
out:
    RESTORE_ERRNO;
    return rc;
}

void weft__sock_unadopt(int fd, const weft__sock_flags_t *was)
{
    SAVE_ERRNO;
    if (was->fl >= 0 && !(was->fl & O_NONBLOCK))
        (void)fcntl(fd, F_SETFL, was->fl);
    if (was->fdfl >= 0 && !(was->fdfl & FD_CLOEXEC))
        (void)fcntl(fd, F_SETFD, was->fdfl);
    RESTORE_ERRNO;
}

int weft__sock_bind(int fd, const struct sockaddr *addr, socklen_t len)
{
    SAVE_ERRNO;
    int rc = bind(fd, addr, len) == 0 ? 0 : -errno;
    RESTORE_ERRNO;
    return rc;
}

int weft__sock_listen(int fd, int backlog)
{
    SAVE_ERRNO;
    int rc = listen(fd, backlog) == 0 ? 0 : -errno;
    RESTORE_ERRNO;
    return rc;
}

int weft__sock_accept(int fd, struct sockaddr_storage *peer, socklen_t *len)
{
    SAVE_ERRNO;
    int rc;
    do
        rc = accept4(fd, (struct sockaddr *)peer, len, SOCK_NONBLOCK | SOCK_CLOEXEC);
    while (rc < 0 && errno == EINTR);
    if (rc < 0)
        rc = errno == EWOULDBLOCK ? -EAGAIN : -errno;
    RESTORE_ERRNO;
    return rc;
}

int weft__sock_connect(int fd, const struct sockaddr *addr, socklen_t len)
{
    SAVE_ERRNO;
    int rc = connect(fd, addr, len) == 0 ? 0 : -errno;
    /* EINTR on a non-blocking connect: the attempt goes on in the
     * background, exactly as with EINPROGRESS (connect(2)). */
    if (rc == -EINTR)
        rc = -EINPROGRESS;
    RESTORE_ERRNO;
    return rc;
}

int weft__sock_error(int fd)
{
    SAVE_ERRNO;
    int err = 0;
    socklen_t len = sizeof err;
    int rc = getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 ? -err : -errno;
    RESTORE_ERRNO;
    return rc;
}

ssize_t weft__sock_recv(int fd, void *buf, size_t len)
{
    SAVE_ERRNO;
    ssize_t n;
    do
        n = SYS_RECV(fd, buf, len);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        n = errno == EWOULDBLOCK ? -EAGAIN : -errno;
    RESTORE_ERRNO;
    return n;
}

ssize_t weft__sock_send(int fd, const void *buf, size_t len)
{
    SAVE_ERRNO;
    ssize_t n;
    do
        n = SYS_SEND(fd, buf, len);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        n = errno == EWOULDBLOCK ? -EAGAIN : -errno;
    RESTORE_ERRNO;
    return n;
}

int weft__sock_shutdown(int fd, int how)
{
    SAVE_ERRNO;
    int rc = shutdown(fd, how) == 0 ? 0 : -errno;
    RESTORE_ERRNO;
    return rc;
}

int weft__sock_close(int fd)
{
    SAVE_ERRNO;
    int rc = close(fd) == 0 ? 0 : -errno;
    RESTORE_ERRNO;
    return rc;
}

int weft__sock_name(int fd, bool peer, struct sockaddr_storage *ss, socklen_t *len)
{
    SAVE_ERRNO;
    int rc = (peer ? getpeername(fd, (struct sockaddr *)ss, len)
                   : getsockname(fd, (struct sockaddr *)ss, len)) == 0
                 ? 0
                 : -errno;
    RESTORE_ERRNO;
    return rc;
}

static int setopt_int(int fd, int level, int name, int value)
{
    SAVE_ERRNO;
    int rc = setsockopt(fd, level, name, &value, sizeof value) == 0 ? 0 : -errno;
    RESTORE_ERRNO;
    return rc;
}

int weft__sock_set_reuseaddr(int fd, bool on)
{
    return setopt_int(fd, SOL_SOCKET, SO_REUSEADDR, on);
}

int weft__sock_set_reuseport(int fd, bool on)
{
    return setopt_int(fd, SOL_SOCKET, SO_REUSEPORT, on);
}

int weft__sock_set_v6only(int fd, bool on)
{
    return setopt_int(fd, IPPROTO_IPV6, IPV6_V6ONLY, on);
}

int weft__sock_set_nodelay(int fd, bool on)
{
    return setopt_int(fd, IPPROTO_TCP, TCP_NODELAY, on);
}

int weft__sock_set_linger_reset(int fd)
{
    SAVE_ERRNO;
    struct linger l = {.l_onoff = 1, .l_linger = 0};
    int rc = setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l) == 0 ? 0 : -errno;
    RESTORE_ERRNO;
    return rc;
}

int weft__sock_get_nodelay(int fd)
{
    SAVE_ERRNO;
    int v = 0;
    socklen_t len = sizeof v;
    int rc = getsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &v, &len) == 0 ? (v != 0) : -errno;
    RESTORE_ERRNO;
    return rc;
}

int weft__sock_set_keepalive(int fd, bool on, int idle_s, int interval_s, int count)
{
    if (on) {
        int rc = setopt_int(fd, IPPROTO_TCP, TCP_KEEPIDLE, idle_s);
        if (rc == 0)
            rc = setopt_int(fd, IPPROTO_TCP, TCP_KEEPINTVL, interval_s);
        if (rc == 0)
            rc = setopt_int(fd, IPPROTO_TCP, TCP_KEEPCNT, count);
        if (rc != 0)
            return rc;
    }
    return setopt_int(fd, SOL_SOCKET, SO_KEEPALIVE, on);
}

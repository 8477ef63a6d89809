/*
 * socket.h - the socket system calls of src/net (part of platform.h).
 *
 * Every socket weft creates is a TCP stream socket, non-blocking and
 * close-on-exec from birth (SOCK_NONBLOCK | SOCK_CLOEXEC on socket() and
 * accept4(); no window in which a fork+exec could inherit it). Sends use
 * MSG_NOSIGNAL, so a write to a reset connection returns -EPIPE instead of
 * raising SIGPIPE. Calls interrupted by a signal (EINTR) are retried, except
 * close (Linux releases the fd even when close reports EINTR).
 *
 * All calls return 0 (or a count, or an fd) or a negative errno, and leave
 * the caller's errno as it was.
 */
#ifndef WEFT_PLATFORM_SOCKET_H
#define WEFT_PLATFORM_SOCKET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

/* A new TCP socket of family AF_INET or AF_INET6: its fd, or -errno. */
int weft__sock_open(int family);

/* The flags weft__sock_adopt found on an fd, to put back if adoption fails
 * later. */
typedef struct weft__sock_flags {
    int fl, fdfl;
    bool tcp; /* the protocol is TCP (else a short read may leave data queued) */
} weft__sock_flags_t;

/*
 * Make fd (owned by the caller) usable by weft: it must be a SOCK_STREAM
 * socket; O_NONBLOCK and FD_CLOEXEC are set, and *was gets the flags it had
 * (on failure they are already restored) and whether it is TCP. 0, -EBADF (not open), -ENOTSOCK,
 * -EPROTOTYPE (not a stream socket), or another -errno.
 */
int weft__sock_adopt(int fd, weft__sock_flags_t *was);
/* Put back the flags weft__sock_adopt changed (best effort). */
void weft__sock_unadopt(int fd, const weft__sock_flags_t *was);

int weft__sock_bind(int fd, const struct sockaddr *addr, socklen_t len);
int weft__sock_listen(int fd, int backlog);

/*
 * accept4(SOCK_NONBLOCK | SOCK_CLOEXEC). The new fd, or -errno (-EAGAIN when
 * no connection is pending). peer/len may be NULL; *len is in/out.
 */
int weft__sock_accept(int fd, struct sockaddr_storage *peer, socklen_t *len);

/* Start a connect: 0 (connected), -EINPROGRESS (wait for writable), -errno. */
int weft__sock_connect(int fd, const struct sockaddr *addr, socklen_t len);

/* The pending error of fd (SO_ERROR) as a negative errno, or 0. */
int weft__sock_error(int fd);

/* recv / send(MSG_NOSIGNAL): bytes (recv: 0 = end of stream) or -errno. */
ssize_t weft__sock_recv(int fd, void *buf, size_t len);
ssize_t weft__sock_send(int fd, const void *buf, size_t len);

/* shutdown(fd, how) with how one of SHUT_RD, SHUT_WR, SHUT_RDWR. */
int weft__sock_shutdown(int fd, int how);

/* close(fd): 0 or -errno (the fd is released either way). */
int weft__sock_close(int fd);

/* getsockname (peer false) or getpeername (peer true); *len is in/out. */
int weft__sock_name(int fd, bool peer, struct sockaddr_storage *ss, socklen_t *len);

/* Socket options. 0 or -errno. */
int weft__sock_set_reuseaddr(int fd, bool on);
int weft__sock_set_reuseport(int fd, bool on);
int weft__sock_set_v6only(int fd, bool on);
int weft__sock_set_nodelay(int fd, bool on);
/* SO_LINGER on with a zero timeout: close(2) then resets the connection. */
int weft__sock_set_linger_reset(int fd);
/* TCP_NODELAY's current value: 0, 1, or -errno. */
int weft__sock_get_nodelay(int fd);
/*
 * SO_KEEPALIVE on or off; when on, also TCP_KEEPIDLE (idle_s seconds before
 * the first probe), TCP_KEEPINTVL (interval_s between probes) and
 * TCP_KEEPCNT (probes before the connection is dropped), each > 0.
 */
int weft__sock_set_keepalive(int fd, bool on, int idle_s, int interval_s, int count);

#endif /* WEFT_PLATFORM_SOCKET_H */

/*
 * net/short.c - short reads that leave data queued. A stream clears its
 * read readiness after a read that returned fewer bytes than asked (it
 * saves the EAGAIN call that would follow), which is right only when the
 * receive queue was emptied. Two cases where it was not, found by review:
 * TCP stops a read at the urgent mark (one MSG_OOB byte from the peer),
 * and AF_UNIX stops after a message that carried SCM_RIGHTS. The next
 * read then waited for the peer's next packet. Each test reads twice,
 * polling each read once (common/probe.h): the second must find its data
 * in its first poll.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/probe.h"
#include "net/net.h"
#include "net/nt.h"

#define WAIT_NS (20 * WT_SEC)

static bool urgent_seen(void *arg)
{
    weft_tcp_stream_t *s = arg;
    int r = weft_io_ready(s->io, WEFT_IO_READABLE);
    return r > 0 && (r & (int)WEFT_IO_PRI);
}

static bool readable_stream(void *arg)
{
    weft_tcp_stream_t *s = arg;
    return weft_io_ready(s->io, WEFT_IO_READABLE) > 0;
}

/* One poll of a read of up to 64 bytes into buf: its result, or -EAGAIN
 * if that poll was pending. */
static int64_t read_once(weft_runtime_t *rt, weft_tcp_stream_t *s, char *buf)
{
    weft_tcp_read_t f;
    cr_assert_eq(weft_tcp_read_init(&f, s, buf, 64, WEFT_FOREVER), 0);
    wt_probe_t p = {.vt = &weft_tcp_read_vtable, .inner = &f, .drop_after = 1};
    wt_probe_run(rt, &p);
    return p.finished == 1 ? p.v : -EAGAIN;
}

/* A connected loopback TCP pair of plain fds: *srv is the accepted end. */
static void tcp_pair(int *cli, int *srv)
{
    int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert_geq(l, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof a;
    cr_assert_eq(bind(l, (struct sockaddr *)&a, sizeof a), 0);
    cr_assert_eq(listen(l, 1), 0);
    cr_assert_eq(getsockname(l, (struct sockaddr *)&a, &alen), 0);
    *cli = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert_geq(*cli, 0);
    cr_assert_eq(connect(*cli, (struct sockaddr *)&a, sizeof a), 0);
    *srv = accept(l, NULL, NULL);
    cr_assert_geq(*srv, 0);
    close(l);
}

Test(net_short, urgent_data_does_not_stall_the_next_read, .timeout = 30)
{
    weft_runtime_t *rt = wt_runtime(2);
    int cli, srv;
    tcp_pair(&cli, &srv);
    weft_tcp_stream_t *s;
    cr_assert_eq(weft_tcp_stream_from_fd(rt, srv, &s), 0);
    cr_assert_eq(send(cli, "AAAA", 4, 0), 4);
    cr_assert_eq(send(cli, "B", 1, MSG_OOB), 1);
    cr_assert_eq(send(cli, "CCCC", 4, 0), 4);
    cr_assert(wt_wait_until(urgent_seen, s, WAIT_NS), "the driver never reported EPOLLPRI");
    char buf[64];
    cr_expect_eq(read_once(rt, s, buf), 4, "the read stops at the urgent mark");
    cr_expect_eq(memcmp(buf, "AAAA", 4), 0);
    cr_expect_eq(read_once(rt, s, buf), 4, "the data after the mark waits for the next packet");
    cr_expect_eq(memcmp(buf, "CCCC", 4), 0);
    cr_expect_eq(weft_tcp_close(s), 0);
    close(cli);
    cr_expect_eq(wt_finish(rt), 0);
}

Test(net_short, a_message_with_fds_does_not_stall_the_next_read, .timeout = 30)
{
    weft_runtime_t *rt = wt_runtime(2);
    int sv[2];
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    weft_tcp_stream_t *s;
    cr_assert_eq(weft_tcp_stream_from_fd(rt, sv[0], &s), 0);
    int passed = open("/dev/null", O_RDONLY | O_CLOEXEC);
    cr_assert_geq(passed, 0);
    char ctl[CMSG_SPACE(sizeof(int))];
    memset(ctl, 0, sizeof ctl);
    struct iovec iov = {.iov_base = "AAAA", .iov_len = 4};
    struct msghdr m = {
        .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl, .msg_controllen = sizeof ctl};
    struct cmsghdr *c = CMSG_FIRSTHDR(&m);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &passed, sizeof(int));
    cr_assert_eq(sendmsg(sv[1], &m, 0), 4);
    close(passed);
    cr_assert_eq(send(sv[1], "CCCC", 4, 0), 4);
    cr_assert(wt_wait_until(readable_stream, s, WAIT_NS));
    char buf[64];
    cr_expect_eq(read_once(rt, s, buf), 4, "the read stops after the message with fds");
    cr_expect_eq(memcmp(buf, "AAAA", 4), 0);
    cr_expect_eq(read_once(rt, s, buf), 4, "the next message waits for the next packet");
    cr_expect_eq(memcmp(buf, "CCCC", 4), 0);
    cr_expect_eq(weft_tcp_close(s), 0);
    close(sv[1]);
    cr_expect_eq(wt_finish(rt), 0);
}

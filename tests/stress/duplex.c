/*
 * duplex - readiness wake-ups with both directions of a socket flapping:
 * 24 full-duplex TCP loopback pairs with 4 KiB socket buffers, so that
 * EPOLLIN edges (which also report EPOLLOUT) keep arriving while writes
 * fill the send buffer and clear WR, and the other way round. The driver
 * wakes a direction only when an event turns its bit on (io/source.c);
 * a wake lost that way leaves a task asleep with its bit set.
 *
 * Modes per pair (i % 3):
 *  0: one task per end waits on RD|WR (weft_io_wait_ready), writes and
 *     reads, clears only the directions that hit EAGAIN.
 *  1: two tasks per end on the same io handle: a reader (RD) and a writer
 *     (WR).
 *  2: weft_tcp streams: a reader task (weft_tcp_read) and a writer task
 *     (weft_tcp_write_all).
 * Every other group of three pairs waits with random 0-200 us deadlines.
 * Counted: every byte arrives once, in order (a per-end pattern), every
 * task ends within 60 s (a lost wake shows as a join that times out, with
 * the readiness it slept on), at 1, 2 and 4 workers. Made to fail by
 * skipping the WR wake whenever an event also carried RD: mode 1 writers
 * hung with WR set (review of the rising-edge change). DUPLEX_BYTES and
 * DUPLEX_UNTIMED change the volume and drop the deadlines.
 */
#define STRESS_NAME "duplex"
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <weft/net.h>

#include "common/stress.h"
#include "common/wt.h"
#include "net/net.h" /* a stream's io handle, for the failure report */

#define PAIRS 24
static long BYTES;
static int no_timed;

static uint8_t pat(uint32_t seed, uint64_t off)
{
    uint64_t x = (off + 1) * 0x9e3779b97f4a7c15ull ^ ((uint64_t)seed << 32 | seed);
    return (uint8_t)(x >> 29 ^ x >> 7);
}

typedef struct end {
    int fd;
    weft_io_t io;
    weft_tcp_stream_t *s;
    uint32_t wseed, rseed;
    long sent, got;
    uint32_t rng, wrng;
    int timed;
    _Atomic long timeouts;
    int err;
} end_t;

static end_t ends[PAIRS][2];

static int mkpair(int fds[2])
{
    int l = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int small = 4096;
    CHECK(bind(l, (struct sockaddr *)&a, sizeof a) == 0, "bind");
    CHECK(listen(l, 4) == 0, "listen");
    socklen_t al = sizeof a;
    getsockname(l, (struct sockaddr *)&a, &al);
    int c = socket(AF_INET, SOCK_STREAM, 0);
    setsockopt(c, SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
    setsockopt(c, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    CHECK(connect(c, (struct sockaddr *)&a, sizeof a) == 0, "connect");
    int s = accept(l, NULL, NULL);
    CHECK(s >= 0, "accept");
    setsockopt(s, SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
    setsockopt(s, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    close(l);
    int one = 1;
    setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    fcntl(c, F_SETFL, fcntl(c, F_GETFL) | O_NONBLOCK);
    fcntl(s, F_SETFL, fcntl(s, F_GETFL) | O_NONBLOCK);
    fds[0] = c;
    fds[1] = s;
    return 0;
}

static size_t chunk(uint32_t *rng)
{
    return 1 + wt_rng(rng) % 3000;
}

/* 1 progress, 0 EAGAIN or done, <0 error */
static int do_write(end_t *e)
{
    if (e->sent >= BYTES)
        return 0;
    uint8_t buf[3000];
    size_t n = chunk(&e->wrng);
    if ((long)n > BYTES - e->sent)
        n = (size_t)(BYTES - e->sent);
    for (size_t i = 0; i < n; i++)
        buf[i] = pat(e->wseed, (uint64_t)e->sent + i);
    ssize_t r = send(e->fd, buf, n, MSG_NOSIGNAL);
    if (r < 0)
        return errno == EAGAIN ? 0 : -errno;
    e->sent += r;
    return 1;
}

static int do_read(end_t *e)
{
    if (e->got >= BYTES)
        return 0;
    uint8_t buf[3000];
    size_t n = chunk(&e->rng);
    ssize_t r = recv(e->fd, buf, n, 0);
    if (r < 0)
        return errno == EAGAIN ? 0 : -errno;
    if (r == 0)
        return -EPIPE;
    for (ssize_t i = 0; i < r; i++)
        if (buf[i] != pat(e->rseed, (uint64_t)e->got + i))
            return -EILSEQ;
    e->got += r;
    return 1;
}

static int64_t dl(end_t *e, uint32_t *rng)
{
    if (!e->timed)
        return WEFT_FOREVER;
    return weft_now() + (int64_t)(wt_rng(rng) % 200000);
}

/* mode 0 */
static int both(void *arg)
{
    end_t *e = arg;
    int snap = 0;
    for (;;) {
        if (e->sent >= BYTES && e->got >= BYTES)
            return 0;
        int w = do_write(e);
        int r = do_read(e);
        if (w < 0)
            return w;
        if (r < 0)
            return r;
        if (w > 0 || r > 0) {
            if (wt_rng(&e->rng) % 64 == 0)
                weft_yield();
            continue;
        }
        /* Both wanted directions hit EAGAIN (or are done). */
        unsigned interest = 0;
        if (e->sent < BYTES)
            interest |= WEFT_IO_WRITABLE;
        if (e->got < BYTES)
            interest |= WEFT_IO_READABLE;
        if (snap > 0)
            weft_io_clear(e->io, (int)((unsigned)snap & ~(WEFT_IO_MASK(snap) & ~interest)));
        snap = weft_io_wait_ready(e->io, interest, dl(e, &e->rng));
        if (snap == -ETIMEDOUT) {
            atomic_fetch_add(&e->timeouts, 1);
            snap = 0;
            continue;
        }
        if (snap < 0)
            return snap;
    }
}

/* mode 1: one direction of e, on the handle the other direction's task
 * shares. */
static int split(end_t *e, unsigned dir)
{
    bool rd = dir == WEFT_IO_READABLE;
    for (;;) {
        int snap = weft_io_ready(e->io, dir);
        if (snap < 0)
            return snap;
        int r;
        while ((r = rd ? do_read(e) : do_write(e)) > 0)
            ;
        if (r < 0)
            return r;
        if ((rd ? e->got : e->sent) >= BYTES)
            return 0;
        weft_io_clear(e->io, snap);
        int w = weft_io_wait_ready(e->io, dir, dl(e, rd ? &e->rng : &e->wrng));
        if (w == -ETIMEDOUT)
            atomic_fetch_add(&e->timeouts, 1);
        else if (w < 0)
            return w;
    }
}

static int split_reader(void *arg)
{
    return split(arg, WEFT_IO_READABLE);
}

static int split_writer(void *arg)
{
    return split(arg, WEFT_IO_WRITABLE);
}

/* mode 2 */
static int tcp_reader(void *arg)
{
    end_t *e = arg;
    uint8_t buf[3000];
    while (e->got < BYTES) {
        int r = weft_tcp_read(e->s, buf, chunk(&e->rng), dl(e, &e->rng));
        if (r == -ETIMEDOUT) {
            atomic_fetch_add(&e->timeouts, 1);
            continue;
        }
        if (r < 0)
            return r;
        if (r == 0)
            return -EPIPE;
        for (int i = 0; i < r; i++)
            if (buf[i] != pat(e->rseed, (uint64_t)e->got + i))
                return -EILSEQ;
        e->got += r;
    }
    return 0;
}

static int tcp_writer(void *arg)
{
    end_t *e = arg;
    uint8_t buf[3000];
    while (e->sent < BYTES) {
        size_t n = chunk(&e->wrng);
        if ((long)n > BYTES - e->sent)
            n = (size_t)(BYTES - e->sent);
        for (size_t i = 0; i < n; i++)
            buf[i] = pat(e->wseed, (uint64_t)e->sent + i);
        size_t done = 0;
        int r = weft_tcp_write_all(e->s, buf, n, dl(e, &e->wrng), &done);
        e->sent += (long)done;
        if (r == -ETIMEDOUT) {
            atomic_fetch_add(&e->timeouts, 1);
            /* the rest of the chunk is regenerated from e->sent */
            continue;
        }
        if (r < 0)
            return r;
    }
    return 0;
}

static void run(unsigned workers)
{
    weft_runtime_t *rt = wt_runtime(workers);
    weft_task_t *h[PAIRS][2][2];
    memset(h, 0, sizeof h);
    for (int i = 0; i < PAIRS; i++) {
        int fds[2];
        mkpair(fds);
        for (int k = 0; k < 2; k++) {
            end_t *e = &ends[i][k];
            memset(e, 0, sizeof *e);
            e->fd = fds[k];
            e->wseed = (uint32_t)(i * 2 + k + 1);
            e->rseed = (uint32_t)(i * 2 + (1 - k) + 1);
            e->rng = (uint32_t)(i * 7 + k * 3 + 1);
            e->wrng = e->rng * 2654435761u + 1;
            e->timed = !no_timed && (i / 3) % 2 == 1;
            int mode = i % 3;
            int rc;
            if (mode == 2) {
                CHECK(weft_tcp_stream_from_fd(rt, e->fd, &e->s) == 0, "from_fd");
                rc = weft_spawn_coro(rt, tcp_reader, e, NULL, &h[i][k][0]);
                CHECK(rc == 0, "spawn");
                rc = weft_spawn_coro(rt, tcp_writer, e, NULL, &h[i][k][1]);
            } else {
                CHECK(weft_io_register(rt, e->fd, &e->io) == 0, "register");
                if (mode == 0)
                    rc = weft_spawn_coro(rt, both, e, NULL, &h[i][k][0]);
                else {
                    rc = weft_spawn_coro(rt, split_reader, e, NULL, &h[i][k][0]);
                    CHECK(rc == 0, "spawn");
                    rc = weft_spawn_coro(rt, split_writer, e, NULL, &h[i][k][1]);
                }
            }
            CHECK(rc == 0, "spawn");
        }
    }
    long to = 0;
    for (int i = 0; i < PAIRS; i++)
        for (int k = 0; k < 2; k++)
            for (int j = 0; j < 2; j++) {
                if (!h[i][k][j])
                    continue;
                int64_t out = 1;
                int rc = weft_task_join_wait(h[i][k][j], weft_now() + 60 * WT_SEC, &out);
                end_t *e = &ends[i][k];
                if (rc != 0) {
                    int pend = -1;
                    ioctl(e->fd, FIONREAD, &pend);
                    weft_io_t io = e->s ? e->s->io : e->io;
                    fail("pair %d end %d task %d (mode %d): join %d: sent %ld got %ld of %ld, "
                         "unread %d, ready rd %d wr %d",
                         i, k, j, i % 3, rc, e->sent, e->got, BYTES, pend,
                         weft_io_ready(io, WEFT_IO_READABLE), weft_io_ready(io, WEFT_IO_WRITABLE));
                }
                CHECK(out == 0, "pair %d end %d task %d: %lld", i, k, j, (long long)out);
                if (j == 0)
                    to += atomic_load(&e->timeouts);
            }
    for (int i = 0; i < PAIRS; i++)
        for (int k = 0; k < 2; k++) {
            end_t *e = &ends[i][k];
            if (e->s)
                weft_tcp_close(e->s);
            else {
                weft_io_deregister(e->io);
                close(e->fd);
            }
        }
    CHECK(wt_finish(rt) == 0, "runtime free");
    printf("duplex: %u workers: %d pairs x 2 x %ld bytes ok (%ld timeouts)\n", workers, PAIRS,
           BYTES, to);
}

int main(int argc, char **argv)
{
    BYTES = WT_TSAN ? 100000 : 150000; /* ~15 s: TCP paces 4 KiB windows */
    if (getenv("DUPLEX_BYTES"))
        BYTES = atol(getenv("DUPLEX_BYTES"));
    no_timed = getenv("DUPLEX_UNTIMED") != NULL;
    int iters = argc > 1 ? atoi(argv[1]) : 1;
    for (int it = 0; it < iters; it++)
        for (unsigned w = 1; w <= 4; w *= 2)
            run(w);
    return 0;
}

/*
 * micro_io_wake: driver wake-to-run latency. A coroutine task waits for a
 * socket to become readable; a thread outside the runtime stamps the time
 * and writes one byte to the other end; the task stamps the time when it
 * runs after its wait returned. The path measured: the kernel's wake of
 * the driver's epoll, the driver applying the event and waking the task's
 * waker, the batch delivery to the worker's inbox (and its unpark), and the
 * worker polling the task. Two modes, as in micro_wake:
 *   parked: the writer pauses 200 us between rounds, so the worker and the
 *           driver both sleep and the wake pays two thread wake-ups;
 *   busy:   rounds back to back.
 * The writer blocks in read() on a reply socket between rounds instead of
 * spinning: on a 2-CPU machine a spinning client would leave the driver and
 * the worker one CPU to share, and measure the kernel's preemption delay.
 * Prints p50/p99 in ns for each. Fixed sizes; never fails on time.
 */
#include <errno.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "common.h"

#define ROUNDS 20000

typedef struct shared {
    int fd;       /* the task reads here (non-blocking, registered) */
    int reply_fd; /* the task writes one byte here per round */
    weft_io_t io;
    _Atomic int64_t ran_at; /* set by the task */
} shared_t;

static int reader(void *arg)
{
    shared_t *sh = arg;
    char b[16];
    for (int seen = 0; seen < ROUNDS;) {
        int snap = weft_io_wait_ready(sh->io, WEFT_IO_READABLE, WEFT_FOREVER);
        if (snap < 0)
            return snap;
        int64_t now = weft_now();
        ssize_t n = read(sh->fd, b, sizeof b);
        if (n < 0 && errno == EAGAIN) {
            weft_io_clear(sh->io, snap); /* spurious: wait again */
            continue;
        }
        if (n <= 0)
            return -EIO;
        /* Drained (one byte per round): forget the readiness. */
        weft_io_clear(sh->io, snap);
        /* Release: the writer's acquire load after its read of the reply. */
        atomic_store_explicit(&sh->ran_at, now, memory_order_release);
        seen++;
        if (write(sh->reply_fd, "r", 1) != 1)
            return -EIO;
    }
    return 0;
}

static int cmp64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static void run_mode(unsigned workers, int pause_us, const char *mode)
{
    weft_runtime_t *rt = bench_runtime(workers);
    int sv[2], rp[2];
    bench_check(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) == 0,
                "socketpair");
    bench_check(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, rp) == 0, "socketpair");
    shared_t sh = {.fd = sv[0], .reply_fd = rp[0]};
    bench_check(weft_io_register(rt, sv[0], &sh.io) == 0, "register");
    weft_task_t *h;
    bench_check(weft_spawn_coro(rt, reader, &sh, NULL, &h) == 0, "spawn");
    int64_t *lat = malloc(sizeof *lat * ROUNDS);
    for (int i = 0; i < ROUNDS; i++) {
        if (pause_us) {
            struct timespec ts = {0, pause_us * 1000L};
            nanosleep(&ts, NULL);
        }
        int64_t t0 = weft_now();
        bench_check(write(sv[1], "x", 1) == 1, "write");
        char c;
        bench_check(read(rp[1], &c, 1) == 1, "read reply");
        lat[i] = atomic_load_explicit(&sh.ran_at, memory_order_acquire) - t0;
    }
    int64_t out = -1;
    bench_check(weft_task_join_wait(h, WEFT_FOREVER, &out) == 0 && out == 0, "join");
    qsort(lat, ROUNDS, sizeof *lat, cmp64);
    printf("RESULT micro_io_wake weft workers=%u mode=%s p50_ns=%lld p99_ns=%lld\n", workers, mode,
           (long long)lat[ROUNDS / 2], (long long)lat[ROUNDS * 99 / 100]);
    free(lat);
    weft_io_deregister(sh.io);
    close(sv[0]);
    close(sv[1]);
    close(rp[0]);
    close(rp[1]);
    bench_finish(rt);
}

int main(int argc, char **argv)
{
    bench_args_t a = bench_parse(argc, argv, "micro_io_wake");
    run_mode(a.workers, 0, "busy");
    run_mode(a.workers, 200, "parked");
    return 0;
}

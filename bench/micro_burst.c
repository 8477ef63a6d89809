/*
 * micro_burst: what deferred help (weft_config_t.help_delay_ns, docs/io.md
 * "Help") costs a burst of CPU-heavy tasks, and what it saves on short
 * ones. `tasks` coroutines each wait for their own socket; a thread
 * outside the runtime pauses 5 ms (every worker parks), writes one byte to
 * every socket at once and measures the time until the last task of the
 * burst has run its `work_us` of CPU (a busy loop). One
 * poller round typically wakes the whole burst, so one worker gets it and
 * the others sleep: with the default delay a peer is woken only if the
 * burst still has queued tasks 250 us later; with WEFT_BENCH_HELP=at_once
 * (WEFT_HELP_AT_ONCE) at once.
 *
 *   micro_burst [workers]     (default: the machine's)
 *
 * Prints, for bursts of 8 x 0 us, 8 x 50 us, 8 x 500 us and 64 x 20 us
 * (200 rounds each):
 *   RESULT micro_burst weft workers=<n> help=<delay|at_once> tasks=<k>
 *          work_us=<w> p50_us=.. p99_us=.. cpu_us_per_burst=..
 * cpu_us_per_burst is the process's user + system CPU time per round,
 * pauses included (idle workers cost nothing there); the outside thread
 * blocks in read() on a socket the round's last task writes to. Fixed
 * sizes; never fails on time.
 *
 * What it showed first (2-vCPU VM, 2026-11-23, p50 us of two runs each):
 * 8 x 500 us: 1 worker 4,046; 2 workers, default 2,910 / 4,093,
 * at_once 3,950 / 4,074, driver thread 2,778; 64 x 20 us: 1 worker 1,627,
 * 2 workers 1,768-2,042 either way. So with the parked-worker poller a
 * CPU-heavy burst barely uses the second worker, with either help policy:
 * the poller usually returns the first event alone (the writes are spread
 * over a few microseconds), its worker runs that task, and nobody polls
 * the rest until it ends (docs/io.md, "Who polls", the limit). Why
 * at_once does no better was not found (the peer is woken each round and
 * steals ~1 task per round; traces show whole bursts on one thread).
 */
#include <errno.h>
#include <stdatomic.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "common.h"

#define ROUNDS 200
#define MAX_TASKS 64

typedef struct burst {
    int fd[MAX_TASKS][2];
    weft_io_t io[MAX_TASKS];
    int tasks;
    int64_t work_ns;
    _Atomic int done;         /* tasks of the current round finished */
    _Atomic int64_t last_end; /* when the latest of them finished */
    int notify[2];            /* the round's last task writes a byte here */
} burst_t;

typedef struct member {
    burst_t *b;
    int i;
} member_t;

static member_t members[MAX_TASKS];

static int member_coro(void *arg)
{
    member_t *m = arg;
    burst_t *b = m->b;
    char c[16];
    for (int r = 0; r < ROUNDS;) {
        int snap = weft_io_wait_ready(b->io[m->i], WEFT_IO_READABLE, WEFT_FOREVER);
        if (snap < 0)
            return snap;
        ssize_t n = read(b->fd[m->i][0], c, sizeof c);
        weft_io_clear(b->io[m->i], snap); /* one byte a round: drained */
        if (n < 0 && errno == EAGAIN)
            continue;
        if (n <= 0)
            return -EIO;
        int64_t end = weft_now() + b->work_ns;
        while (weft_now() < end)
            ;
        int64_t now = weft_now(), prev = atomic_load(&b->last_end);
        while (now > prev && !atomic_compare_exchange_weak(&b->last_end, &prev, now))
            ;
        /* seq_cst (default): the round's last task tells the main thread,
         * which reads last_end after its read of the notify pipe. */
        if (atomic_fetch_add(&b->done, 1) + 1 == b->tasks && write(b->notify[1], "d", 1) != 1)
            return -EIO;
        r++;
    }
    return 0;
}

static int cmp64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static int64_t cpu_ns(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ((int64_t)ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000000LL +
           ((int64_t)ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1000LL;
}

static void run(unsigned workers, int tasks, int work_us, const char *help)
{
    weft_runtime_t *rt = bench_runtime(workers);
    static burst_t b;
    memset(&b, 0, sizeof b);
    b.tasks = tasks;
    b.work_ns = (int64_t)work_us * 1000;
    /* Blocking: the main thread sleeps in read() while the burst runs, so
     * it takes no CPU from the workers. */
    bench_check(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, b.notify) == 0, "socketpair");
    weft_task_t *h[MAX_TASKS];
    for (int i = 0; i < tasks; i++) {
        bench_check(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, b.fd[i]) ==
                        0,
                    "socketpair");
        bench_check(weft_io_register(rt, b.fd[i][0], &b.io[i]) == 0, "register");
        members[i] = (member_t){&b, i};
        weft_coro_opts_t o = WEFT_CORO_OPTS_INIT;
        o.migratable = true; /* reads no thread-local across an await */
        bench_check(weft_spawn_coro(rt, member_coro, &members[i], &o, &h[i]) == 0, "spawn");
    }
    static int64_t lat[ROUNDS];
    int64_t cpu0 = cpu_ns();
    for (int r = 0; r < ROUNDS; r++) {
        struct timespec ts = {0, 5000000L}; /* let every worker park */
        nanosleep(&ts, NULL);
        atomic_store(&b.done, 0);
        atomic_store(&b.last_end, 0);
        int64_t t0 = weft_now();
        for (int i = 0; i < tasks; i++)
            bench_check(write(b.fd[i][1], "x", 1) == 1, "write");
        char c;
        bench_check(read(b.notify[0], &c, 1) == 1, "read notify");
        lat[r] = atomic_load(&b.last_end) - t0;
    }
    int64_t cpu = cpu_ns() - cpu0;
    for (int i = 0; i < tasks; i++) {
        int64_t out = -1;
        bench_check(weft_task_join_wait(h[i], WEFT_FOREVER, &out) == 0 && out == 0, "join");
        weft_io_deregister(b.io[i]);
        close(b.fd[i][0]);
        close(b.fd[i][1]);
    }
    close(b.notify[0]);
    close(b.notify[1]);
    qsort(lat, ROUNDS, sizeof *lat, cmp64);
    printf("RESULT micro_burst weft workers=%u help=%s tasks=%d work_us=%d p50_us=%.1f "
           "p99_us=%.1f cpu_us_per_burst=%.1f\n",
           workers, help, tasks, work_us, lat[ROUNDS / 2] / 1e3, lat[ROUNDS * 99 / 100] / 1e3,
           cpu / 1e3 / ROUNDS);
    bench_finish(rt);
}

int main(int argc, char **argv)
{
    bench_args_t a = bench_parse(argc, argv, "micro_burst");
    const char *h = getenv("WEFT_BENCH_HELP");
    const char *help = h && strcmp(h, "at_once") == 0 ? "at_once" : "default";
    static const int shapes[][2] = {{8, 0}, {8, 50}, {8, 500}, {64, 20}};
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
        run(a.workers, shapes[i][0], shapes[i][1], help);
    return 0;
}

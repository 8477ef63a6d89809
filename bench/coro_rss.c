/*
 * coro_rss.c - resident memory per parked coroutine task with the default
 * (64 KiB) stack.
 *
 * A plain thread outside the runtime spawns N coroutines; each awaits a
 * gate future that stays pending (its waker registered in the coroutine's
 * own weft_atomic_waker_t) until a shared flag is set. Once all N have
 * parked, the growth of resident memory (/proc/self/statm) since just
 * before the spawns, divided by N, is the figure. Then the flag is set,
 * every waker woken and every coroutine joined (each checks its output).
 *
 * Three bodies, each measured in its own child process (so one does not
 * reuse memory another gave back to an allocator):
 *   trivial  the coroutine function awaits at once
 *   nested   it awaits from NEST_DEPTH (4) nested calls, each with a
 *            NEST_BUF-byte (512) buffer on its stack: a small handler
 *   deep     the same with 2 * NEST_DEPTH calls (4 KiB of buffers), enough
 *            to reach a second stack page
 *
 * Output (one line):
 *   RESULT coro_rss weft-coro workers=<n> coros=<N> bytes_per_coro=..
 *          bytes_per_coro_nested=.. bytes_per_coro_deep=..
 */
#include <stdatomic.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common.h"

#define N 10000
#ifndef NEST_DEPTH
#define NEST_DEPTH 4
#endif
#ifndef NEST_BUF
#define NEST_BUF 512
#endif

static int nest_depth; /* set in the child before the runtime starts */
static _Atomic int released;
static _Atomic int parked;
static weft_atomic_waker_t *wakers;

typedef struct gate {
    weft_atomic_waker_t *aw;
    int counted;
} gate_t;

static weft_poll_t gate_poll(void *state, weft_cx_t *cx, int64_t *out)
{
    gate_t *g = state;
    weft_atomic_waker_register(g->aw, weft_cx_waker(cx));
    if (atomic_load_explicit(&released, memory_order_acquire)) {
        *out = 0;
        return WEFT_READY;
    }
    if (!g->counted) {
        g->counted = 1;
        atomic_fetch_add_explicit(&parked, 1, memory_order_relaxed);
    }
    return WEFT_PENDING;
}
static const weft_future_vtable_t gate_vt = {gate_poll, NULL, "rss_gate"};

static int wait_gate(intptr_t i)
{
    gate_t g = {&wakers[i], 0};
    if (weft_await(&gate_vt, &g, NULL) != 0)
        return -1;
    return (int)i;
}

static int trivial_body(void *arg)
{
    return wait_gate((intptr_t)arg);
}

/* noinline and a used buffer: each level really is a frame of its own */
__attribute__((noinline)) static int nest(intptr_t i, int depth)
{
    volatile char buf[NEST_BUF];
    for (int k = 0; k < NEST_BUF; k += 64)
        buf[k] = (char)(i + k);
    int r = depth > 1 ? nest(i, depth - 1) : wait_gate(i);
    return r + buf[0] - (char)i;
}

static int nested_body(void *arg)
{
    return nest((intptr_t)arg, nest_depth);
}

static long rss_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    long size = 0, res = 0;
    bench_check(f && fscanf(f, "%ld %ld", &size, &res) == 2, "statm");
    fclose(f);
    return res * sysconf(_SC_PAGESIZE);
}

static void nap_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* One measurement; runs in a child process. */
static double measure(unsigned workers, int depth)
{
    int (*body)(void *) = depth ? nested_body : trivial_body;
    nest_depth = depth;
    weft_runtime_t *rt = bench_runtime(workers);
    weft_task_t **h = calloc(N, sizeof *h);
    wakers = calloc(N, sizeof *wakers);
    bench_check(h && wakers, "calloc");
    for (int i = 0; i < N; i++)
        weft_atomic_waker_init(&wakers[i]);

    nap_ms(50); /* workers up and parked */
    long before = rss_bytes();
    for (intptr_t i = 0; i < N; i++)
        bench_check(weft_spawn_coro(rt, body, (void *)i, NULL, &h[i]) == 0, "spawn");
    for (int t = 0; atomic_load(&parked) < N; t++) {
        bench_check(t < 30000, "all parked within 30 s");
        nap_ms(1);
    }
    nap_ms(20); /* the last ones finish switching out */
    long after = rss_bytes();

    atomic_store_explicit(&released, 1, memory_order_release);
    for (int i = 0; i < N; i++)
        weft_atomic_waker_wake(&wakers[i]);
    for (int i = 0; i < N; i++) {
        int64_t v = -1;
        bench_check(weft_join(h[i], &v) == 0 && v == i, "join");
    }
    for (int i = 0; i < N; i++)
        weft_atomic_waker_destroy(&wakers[i]);
    bench_finish(rt);
    free(wakers);
    free(h);
    return (double)(after - before) / N;
}

static double measure_in_child(unsigned workers, int depth)
{
    int fd[2];
    bench_check(pipe(fd) == 0, "pipe");
    fflush(NULL);
    pid_t pid = fork();
    bench_check(pid >= 0, "fork");
    if (pid == 0) {
        close(fd[0]);
        double v = measure(workers, depth);
        ssize_t w = write(fd[1], &v, sizeof v);
        _exit(w == (ssize_t)sizeof v ? 0 : 1);
    }
    close(fd[1]);
    double v = 0;
    ssize_t r = read(fd[0], &v, sizeof v);
    close(fd[0]);
    int status = 0;
    bench_check(waitpid(pid, &status, 0) == pid, "waitpid");
    bench_check(r == (ssize_t)sizeof v && WIFEXITED(status) && WEXITSTATUS(status) == 0,
                "child measurement");
    return v;
}

int main(int argc, char **argv)
{
    bench_args_t a = bench_parse(argc, argv, "coro_rss");
    double trivial = measure_in_child(a.workers, 0);
    double nested = measure_in_child(a.workers, NEST_DEPTH);
    double deep = measure_in_child(a.workers, 2 * NEST_DEPTH);
    printf("RESULT coro_rss weft-coro workers=%u coros=%d bytes_per_coro=%.0f"
           " bytes_per_coro_nested=%.0f bytes_per_coro_deep=%.0f\n",
           a.workers, N, trivial, nested, deep);
    return 0;
}

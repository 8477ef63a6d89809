/*
 * io_wake - readiness through the driver thread, counted (plain main: runs
 * under TSan).
 *
 * PAIRS socket pairs; on each, a reader task (coroutines for even pairs,
 * stackless futures built on weft_io_poll_ready for odd ones) reads until
 * it has seen BYTES bytes, while THREADS foreign threads write to random
 * pairs in random chunks (each chunk carries a running sequence number per
 * pair, so a lost, duplicated or reordered byte is detected). Meanwhile a
 * churn thread registers and deregisters other fds over and over, so slab
 * slots are reused while the driver reports events for them. Half the
 * coroutine readers wait with short random deadlines, so waits end by
 * timeout while the driver wakes them and each ending takes its waker back
 * (weft_io_forget) against the driver's wake. A lost wake shows as a
 * reader that never finishes (joins have a deadline).
 */
#define STRESS_NAME "io_wake"
#include <errno.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/stress.h"
#include "common/wt.h"

#define PAIRS 32
#define THREADS 3
#define CHURN_FDS 8

static int BYTES;

typedef struct pair {
    int sv[2];
    weft_io_t io;
    pthread_mutex_t wlock; /* writers append whole chunks in sequence */
    uint32_t wseq;         /* next byte value to write (under wlock) */
    int written;           /* under wlock */
    uint32_t rseq;         /* reader only */
    int got;               /* reader only */
    int snap;              /* stackless reader: snapshot to clear */
    uint32_t rng;          /* reader only: deadlines of the timed readers */
} pair_t;

static pair_t pairs[PAIRS];
static _Atomic int stop_threads;
static _Atomic long timeouts; /* waits of the timed readers that hit their deadline */

/* Read what is there; 1 when all bytes arrived, 0 on EAGAIN, <0 error. */
static int drain(pair_t *p)
{
    unsigned char buf[512];
    for (;;) {
        ssize_t n = read(p->sv[0], buf, sizeof buf);
        if (n < 0)
            return errno == EAGAIN ? 0 : -errno;
        if (n == 0)
            return -EPIPE;
        for (ssize_t i = 0; i < n; i++) {
            if (buf[i] != (unsigned char)p->rseq)
                return -EILSEQ;
            p->rseq++;
        }
        p->got += (int)n;
        if (p->got == BYTES)
            return 1;
    }
}

static int coro_reader(void *arg)
{
    pair_t *p = arg;
    for (;;) {
        int snap = weft_io_ready(p->io, WEFT_IO_READABLE);
        int rc = drain(p);
        if (rc != 0)
            return rc == 1 ? 0 : rc;
        weft_io_clear(p->io, snap);
        int64_t deadline = WEFT_FOREVER;
        if (p->rng) /* a timed reader: 0-100 us, often before the data */
            deadline = weft_now() + (int64_t)(wt_rng(&p->rng) % 100000);
        int w = weft_io_wait_ready(p->io, WEFT_IO_READABLE, deadline);
        if (w == -ETIMEDOUT && p->rng) {
            atomic_fetch_add_explicit(&timeouts, 1, memory_order_relaxed);
            continue;
        }
        if (w < 0)
            return w;
    }
}

static weft_poll_t fut_reader_poll(void *state, weft_cx_t *cx, int64_t *out)
{
    pair_t *p = *(pair_t **)state;
    for (;;) {
        int snap = weft_io_ready(p->io, WEFT_IO_READABLE);
        int rc = drain(p);
        if (rc != 0) {
            *out = rc == 1 ? 0 : rc;
            return WEFT_READY;
        }
        weft_io_clear(p->io, snap);
        int r = weft_io_poll_ready(p->io, WEFT_IO_READABLE, cx);
        if (r < 0) {
            *out = r;
            return WEFT_READY;
        }
        if (r == 0)
            return WEFT_PENDING;
    }
}

static const weft_future_vtable_t fut_reader_vt = {fut_reader_poll, NULL, "io_wake_reader"};

static void *writer(void *arg)
{
    uint32_t rng = (uint32_t)(uintptr_t)arg * 2654435761u + 1;
    for (;;) {
        int live = 0;
        uint32_t base = wt_rng(&rng); /* every pair once per round, in a random rotation */
        for (int k = 0; k < PAIRS; k++) {
            pair_t *p = &pairs[(base + (uint32_t)k) % PAIRS];
            pthread_mutex_lock(&p->wlock);
            int left = BYTES - p->written;
            if (left > 0) {
                live++;
                int n = 1 + (int)(wt_rng(&rng) % 64);
                if (n > left)
                    n = left;
                unsigned char buf[64];
                for (int i = 0; i < n; i++)
                    buf[i] = (unsigned char)(p->wseq + (uint32_t)i);
                ssize_t w = write(p->sv[1], buf, (size_t)n);
                if (w > 0) {
                    p->wseq += (uint32_t)w;
                    p->written += (int)w;
                } else if (w < 0 && errno != EAGAIN) {
                    fail("write: %d", errno);
                }
            }
            pthread_mutex_unlock(&p->wlock);
        }
        if (!live)
            return NULL;
        if (wt_rng(&rng) % 4 == 0)
            sched_yield();
    }
}

static void *churn(void *arg)
{
    weft_runtime_t *rt = arg;
    int sv[CHURN_FDS][2];
    for (int i = 0; i < CHURN_FDS; i++)
        CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv[i]) == 0, "socketpair");
    long rounds = 0;
    while (!atomic_load(&stop_threads)) {
        weft_io_t io[CHURN_FDS];
        for (int i = 0; i < CHURN_FDS; i++) {
            CHECK(weft_io_register(rt, sv[i][0], &io[i]) == 0, "churn register");
            (void)!write(sv[i][1], "c", 1); /* an event the driver may report late */
        }
        for (int i = 0; i < CHURN_FDS; i++) {
            char c[8];
            (void)!read(sv[i][0], c, sizeof c);
            CHECK(weft_io_deregister(io[i]) == 0, "churn deregister");
            CHECK(weft_io_ready(io[i], WEFT_IO_READABLE) == -EBADF, "stale handle answered");
        }
        rounds++;
    }
    for (int i = 0; i < CHURN_FDS; i++) {
        close(sv[i][0]);
        close(sv[i][1]);
    }
    CHECK(rounds > 0, "churn never ran");
    return NULL;
}

static void run(unsigned workers)
{
    weft_runtime_t *rt = wt_runtime(workers);
    weft_task_t *h[PAIRS];
    for (int i = 0; i < PAIRS; i++) {
        pair_t *p = &pairs[i];
        memset(p, 0, sizeof *p);
        CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, p->sv) == 0, "socketpair");
        pthread_mutex_init(&p->wlock, NULL);
        CHECK(weft_io_register(rt, p->sv[0], &p->io) == 0, "register");
        p->rng = i % 4 == 0 ? (uint32_t)i + 1 : 0;
        int rc;
        if (i % 2 == 0)
            rc = weft_spawn_coro(rt, coro_reader, p, NULL, &h[i]);
        else
            rc = weft_spawn(rt, &fut_reader_vt, &p, sizeof p, &h[i]);
        CHECK(rc == 0, "spawn: %d", rc);
    }
    atomic_store(&stop_threads, 0);
    pthread_t wt[THREADS], ct;
    for (long i = 0; i < THREADS; i++)
        pthread_create(&wt[i], NULL, writer, (void *)(i + 1));
    pthread_create(&ct, NULL, churn, rt);
    for (int i = 0; i < PAIRS; i++) {
        int64_t out = 1;
        int rc = weft_task_join_wait(h[i], weft_now() + 60 * WT_SEC, &out);
        if (rc != 0) {
            int pend = -1;
            ioctl(pairs[i].sv[0], FIONREAD, &pend);
            pthread_mutex_lock(&pairs[i].wlock);
            int written = pairs[i].written;
            pthread_mutex_unlock(&pairs[i].wlock);
            fail("reader %d: join %d (lost wake? got %d of %d, written %d, unread %d, ready %d)", i,
                 rc, pairs[i].got, BYTES, written, pend,
                 weft_io_ready(pairs[i].io, WEFT_IO_READABLE));
        }
        CHECK(out == 0, "reader %d: %lld after %d bytes", i, (long long)out, pairs[i].got);
        CHECK(pairs[i].got == BYTES, "reader %d got %d of %d", i, pairs[i].got, BYTES);
    }
    for (int i = 0; i < THREADS; i++)
        pthread_join(wt[i], NULL);
    atomic_store(&stop_threads, 1);
    pthread_join(ct, NULL);
    for (int i = 0; i < PAIRS; i++) {
        CHECK(weft_io_deregister(pairs[i].io) == 0, "deregister");
        close(pairs[i].sv[0]);
        close(pairs[i].sv[1]);
        pthread_mutex_destroy(&pairs[i].wlock);
    }
    CHECK(wt_finish(rt) == 0, "runtime free");
}

int main(void)
{
    BYTES = WT_TSAN ? 20000 : 200000;
    for (unsigned w = 1; w <= 4; w *= 2) {
        atomic_store(&timeouts, 0);
        run(w);
        printf("io_wake: %u workers: %d pairs x %d bytes, all counted (%ld timed-out waits)\n", w,
               PAIRS, BYTES, atomic_load(&timeouts));
    }
    return 0;
}

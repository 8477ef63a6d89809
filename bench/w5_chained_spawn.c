/*
 * W5 chained_spawn: a chain of 1,000,000 tasks; each spawns the next and
 * exits; the last one signals the root through an atomic waker.
 * --coro: the same with coroutine tasks; the root is a coroutine awaiting
 * a future that registers in the same atomic waker.
 */
#include <stdatomic.h>

#include "common.h"

#define HOPS 1000000

typedef struct shared {
    _Atomic int done;
    weft_atomic_waker_t waker;
} shared_t;

typedef struct hop {
    shared_t *sh;
    int64_t remaining;
} hop_t;

static const weft_future_vtable_t hop_vt;

static void hop_next(shared_t *sh, int64_t remaining)
{
    if (remaining == 0) {
        atomic_store_explicit(&sh->done, 1, memory_order_release);
        weft_atomic_waker_wake(&sh->waker);
        return;
    }
    hop_t next = {sh, remaining - 1};
    bench_check(weft_spawn(weft_runtime_current(), &hop_vt, &next, sizeof next, NULL) == 0,
                "spawn");
}

static weft_poll_t hop_poll(void *state, weft_cx_t *cx, int64_t *out)
{
    (void)cx;
    hop_t *h = state;
    hop_next(h->sh, h->remaining);
    *out = 0;
    return WEFT_READY;
}
static const weft_future_vtable_t hop_vt = {hop_poll, NULL, "w5_hop"};

typedef struct root {
    shared_t sh;
    int started;
    int64_t t0, t1;
} root_t;

static weft_poll_t root_poll(void *state, weft_cx_t *cx, int64_t *out)
{
    root_t *r = *(root_t **)state;
    if (!r->started) {
        r->started = 1;
        r->t0 = weft_now();
        hop_next(&r->sh, HOPS);
    }
    weft_atomic_waker_register(&r->sh.waker, weft_cx_waker(cx));
    if (!atomic_load_explicit(&r->sh.done, memory_order_acquire))
        return WEFT_PENDING;
    r->t1 = weft_now();
    *out = 0;
    return WEFT_READY;
}
static void root_drop(void *state)
{
    root_t *r = *(root_t **)state;
    weft_atomic_waker_destroy(&r->sh.waker);
}
static const weft_future_vtable_t root_vt = {root_poll, root_drop, "w5_root"};

/* ---- coroutine version ---- */

/* A coroutine's argument is one pointer: the chain's shared state is a
 * global and the argument carries the number of hops still to spawn. */
static shared_t *coro_sh;

static int hop_coro(void *arg)
{
    intptr_t remaining = (intptr_t)arg;
    if (remaining == 0) {
        atomic_store_explicit(&coro_sh->done, 1, memory_order_release);
        weft_atomic_waker_wake(&coro_sh->waker);
        return 0;
    }
    bench_check(
        weft_spawn_coro(weft_runtime_current(), hop_coro, (void *)(remaining - 1), NULL, NULL) == 0,
        "spawn");
    return 0;
}

/* Ready once the last hop has set sh->done. */
static weft_poll_t done_poll(void *state, weft_cx_t *cx, int64_t *out)
{
    shared_t *sh = state;
    weft_atomic_waker_register(&sh->waker, weft_cx_waker(cx));
    if (!atomic_load_explicit(&sh->done, memory_order_acquire))
        return WEFT_PENDING;
    *out = 0;
    return WEFT_READY;
}
static const weft_future_vtable_t done_vt = {done_poll, NULL, "w5_done"};

static int root_coro(void *arg)
{
    root_t *r = arg;
    coro_sh = &r->sh;
    r->t0 = weft_now();
    bench_check(weft_spawn_coro(weft_runtime_current(), hop_coro, (void *)(intptr_t)(HOPS - 1),
                                NULL, NULL) == 0,
                "spawn");
    bench_check(weft_await(&done_vt, &r->sh, NULL) == 0, "await");
    r->t1 = weft_now();
    return 0;
}

int main(int argc, char **argv)
{
    bench_args_t a = bench_parse(argc, argv, "w5_chained_spawn");
    weft_runtime_t *rt = bench_runtime(a.workers);
    static root_t r;
    weft_atomic_waker_init(&r.sh.waker);
    if (a.coro) {
        bench_run_coro(rt, root_coro, &r);
        weft_atomic_waker_destroy(&r.sh.waker);
    } else {
        root_t *rp = &r;
        bench_check(weft_runtime_run(rt, &root_vt, &rp, sizeof rp, NULL) == 0, "run");
    }
    bench_check(atomic_load(&r.sh.done) == 1, "done");
    printf("RESULT chained_spawn %s workers=%u ns_per_hop=%.1f\n", a.runtime, a.workers,
           (double)(r.t1 - r.t0) / HOPS);
    bench_finish(rt);
    return 0;
}

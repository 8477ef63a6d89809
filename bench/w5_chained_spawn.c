/*
 * W5 chained_spawn: a chain of 1,000,000 tasks; each spawns the next and
 * exits; the last one signals the root through an atomic waker.
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

int main(int argc, char **argv)
{
    bench_args_t a = bench_parse(argc, argv, "w5_chained_spawn");
    weft_runtime_t *rt = bench_runtime(a.workers);
    static root_t r;
    weft_atomic_waker_init(&r.sh.waker);
    root_t *rp = &r;
    bench_check(weft_runtime_run(rt, &root_vt, &rp, sizeof rp, NULL) == 0, "run");
    bench_check(atomic_load(&r.sh.done) == 1, "done");
    printf("RESULT chained_spawn %s workers=%u ns_per_hop=%.1f\n", a.runtime, a.workers,
           (double)(r.t1 - r.t0) / HOPS);
    bench_finish(rt);
    return 0;
}

/*
 * coro/api.c - the coroutine calls: spawn options and bad input, await,
 * yield and join from coroutines, stackless tasks and plain threads, and
 * the two kinds of task joining each other.
 */
#include <criterion/criterion.h>
#include <errno.h>

#include "common/wt.h"
#include "coro/coro.h"
#include "platform/platform.h"
#include "sched/sched.h"

#define WAIT_NS (10 * WT_SEC)

static int ret_arg(void *arg)
{
    return (int)(intptr_t)arg;
}

Test(coro_api, spawn_bad_input, .timeout = 30)
{
    weft_runtime_t *rt = wt_runtime(1);
    weft_task_t *h = (weft_task_t *)rt;
    cr_assert_eq(weft_spawn_coro(NULL, ret_arg, NULL, NULL, &h), -EINVAL);
    cr_assert_null(h, "the handle is cleared on failure");
    cr_assert_eq(weft_spawn_coro(rt, NULL, NULL, NULL, &h), -EINVAL);
    weft_coro_opts_t o = WEFT_CORO_OPTS_INIT;
    o.stack_size = 1;
    cr_assert_eq(weft_spawn_coro(rt, ret_arg, NULL, &o, &h), -EINVAL);
    o.stack_size = WEFT_STACK_MIN - 1;
    cr_assert_eq(weft_spawn_coro(rt, ret_arg, NULL, &o, &h), -EINVAL);
    o.stack_size = WEFT_STACK_MAX + 1;
    cr_assert_eq(weft_spawn_coro(rt, ret_arg, NULL, &o, &h), -EINVAL);
    o.stack_size = SIZE_MAX;
    cr_assert_eq(weft_spawn_coro(rt, ret_arg, NULL, &o, NULL), -EINVAL);
    /* The bounds themselves are accepted. */
    o.stack_size = WEFT_STACK_MIN;
    cr_assert_eq(weft_spawn_coro(rt, ret_arg, (void *)7, &o, &h), 0);
    int64_t v = 0;
    cr_assert_eq(weft_join(h, &v), 0);
    cr_assert_eq(v, 7);
    cr_assert_eq(wt_finish(rt), 0);
}

Test(coro_api, config_bad_input, .timeout = 30)
{
    weft_config_t cfg;
    weft_config_init(&cfg);
    weft_runtime_t *rt = NULL;
    cfg.stack_size = 4096;
    cr_assert_eq(weft_runtime_new(&cfg, &rt), -EINVAL);
    cfg.stack_size = WEFT_STACK_MAX + 4096;
    cr_assert_eq(weft_runtime_new(&cfg, &rt), -EINVAL);
    cfg.stack_size = 0;
    cfg.stack_cache = WEFT_STACK_CACHE_MAX + 1;
    cr_assert_eq(weft_runtime_new(&cfg, &rt), -EINVAL);
    cr_assert_null(rt);
}

Test(coro_api, calls_outside_a_coroutine, .timeout = 30)
{
    cr_assert_eq(weft_yield(), -EPERM);
    cr_assert_eq(weft_await(&wt_ready_vt, &(wt_ready_t){NULL, 1}, NULL), -EPERM);
    cr_assert_eq(weft_coro_cancelled(), -EPERM);
    cr_assert_eq(weft_in_coro(), 0);
    cr_assert_eq(weft_join(NULL, NULL), -EINVAL);
}

/* A stackless task calling the coroutine API: -EPERM everywhere. */
typedef struct sl_probe {
    _Atomic int yield_rc, await_rc, join_rc, in_coro;
    weft_task_t *h;
} sl_probe_t;

static weft_poll_t sl_probe_poll(void *st, weft_cx_t *cx, int64_t *out)
{
    (void)cx;
    sl_probe_t *p = *(sl_probe_t **)st;
    atomic_store(&p->yield_rc, weft_yield());
    atomic_store(&p->await_rc, weft_await(&wt_ready_vt, &(wt_ready_t){NULL, 1}, NULL));
    atomic_store(&p->join_rc, weft_join(p->h, NULL));
    atomic_store(&p->in_coro, weft_in_coro());
    *out = 0;
    return WEFT_READY;
}

static const weft_future_vtable_t sl_probe_vt = {sl_probe_poll, NULL, "sl_probe"};

Test(coro_api, calls_from_a_stackless_task, .timeout = 30)
{
    weft_runtime_t *rt = wt_runtime(2);
    sl_probe_t p = {.yield_rc = 1, .await_rc = 1, .join_rc = 1, .in_coro = -1};
    cr_assert_eq(weft_spawn_coro(rt, ret_arg, (void *)3, NULL, &p.h), 0);
    sl_probe_t *pp = &p;
    weft_task_t *h;
    cr_assert_eq(weft_spawn(rt, &sl_probe_vt, &pp, sizeof pp, &h), 0);
    cr_assert_eq(weft_task_join_wait(h, weft_now() + WAIT_NS, NULL), 0);
    cr_assert_eq(atomic_load(&p.yield_rc), -EPERM);
    cr_assert_eq(atomic_load(&p.await_rc), -EPERM);
    cr_assert_eq(atomic_load(&p.join_rc), -EPERM, "a worker must not block in join");
    cr_assert_eq(atomic_load(&p.in_coro), 0);
    int64_t v = 0;
    cr_assert_eq(weft_join(p.h, &v), 0, "the handle was not consumed by the refused join");
    cr_assert_eq(v, 3);
    cr_assert_eq(wt_finish(rt), 0);
}

/* ---- await ------------------------------------------------------------------------- */

typedef struct await_probe {
    wt_counts_t c;
    _Atomic int null_rc, in_coro, cancelled;
    int64_t got;
} await_probe_t;

static int await_coro(void *arg)
{
    await_probe_t *p = arg;
    atomic_store(&p->null_rc, weft_await(NULL, NULL, NULL));
    atomic_store(&p->in_coro, weft_in_coro());
    atomic_store(&p->cancelled, weft_coro_cancelled());
    wt_ready_t r = {&p->c, 41};
    if (weft_await(&wt_ready_vt, &r, &p->got) != 0)
        return -1;
    r.out = 1;
    return weft_await(&wt_ready_vt, &r, NULL); /* out may be NULL */
}

Test(coro_api, await_ready_future, .timeout = 30)
{
    weft_runtime_t *rt = wt_runtime(1);
    await_probe_t p;
    memset(&p, 0, sizeof p);
    wt_counts_init(&p.c);
    int res = -1;
    cr_assert_eq(weft_runtime_run_coro(rt, await_coro, &p, NULL, &res), 0);
    cr_assert_eq(res, 0);
    cr_assert_eq(atomic_load(&p.null_rc), -EINVAL);
    cr_assert_eq(atomic_load(&p.in_coro), 1);
    cr_assert_eq(atomic_load(&p.cancelled), 0);
    cr_assert_eq(p.got, 41);
    cr_assert_eq(atomic_load(&p.c.polls), 2);
    cr_assert_eq(atomic_load(&p.c.drops), 2, "await consumes the future: dropped once each");
    cr_assert_eq(wt_finish(rt), 0);
}

/* A coroutine awaiting a stackless future completed by a plain thread. */
typedef struct flag_probe {
    wt_counts_t c;
    wt_flag_t f;
    int64_t got;
} flag_probe_t;

static int flag_coro(void *arg)
{
    flag_probe_t *p = arg;
    wt_wait_flag_t wf = {&p->c, &p->f, 99};
    return weft_await(&wt_wait_flag_vt, &wf, &p->got);
}

static bool first_poll_done(void *arg)
{
    wt_counts_t *c = arg;
    return atomic_load(&c->polls) >= 1 && atomic_load(&c->in_poll) == 0;
}

Test(coro_api, await_pending_future_woken_by_thread, .timeout = 30)
{
    weft_runtime_t *rt = wt_runtime(2);
    flag_probe_t p;
    wt_counts_init(&p.c);
    wt_flag_init(&p.f);
    p.got = 0;
    weft_task_t *h;
    cr_assert_eq(weft_spawn_coro(rt, flag_coro, &p, NULL, &h), 0);
    /* The first poll must have finished (found the flag down) before the
     * raise: raised while that poll ran, the flag can end it at once, in
     * one poll (a flake under ASan's load before this wait). */
    cr_assert(wt_wait_until(first_poll_done, &p.c, WAIT_NS));
    cr_assert_eq(weft_task_is_finished(h), 0, "pending: the coroutine waits");
    wt_flag_raise(&p.f);
    int64_t v = -1;
    cr_assert_eq(weft_join(h, &v), 0);
    cr_assert_eq(v, 0);
    cr_assert_eq(p.got, 99);
    cr_assert_eq(atomic_load(&p.c.drops), 1);
    cr_assert_geq(atomic_load(&p.c.polls), 2);
    wt_flag_destroy(&p.f);
    cr_assert_eq(wt_finish(rt), 0);
}

/* ---- joins across the two kinds ------------------------------------------------------ */

static int join_stackless_coro(void *arg)
{
    (void)arg;
    wt_ready_t r = {NULL, 1234};
    weft_task_t *h;
    if (weft_spawn(weft_runtime_current(), &wt_ready_vt, &r, sizeof r, &h) != 0)
        return -1;
    int64_t v = 0;
    int rc = weft_join(h, &v);
    return rc != 0 ? rc : (int)v;
}

Test(coro_api, coroutine_joins_stackless, .timeout = 30)
{
    weft_runtime_t *rt = wt_runtime(2);
    int res = 0;
    cr_assert_eq(weft_runtime_run_coro(rt, join_stackless_coro, NULL, NULL, &res), 0);
    cr_assert_eq(res, 1234);
    cr_assert_eq(wt_finish(rt), 0);
}

static int slow_child(void *arg)
{
    for (int i = 0; i < 100; i++)
        if (weft_yield() != 0)
            return -1;
    return (int)(intptr_t)arg;
}

Test(coro_api, stackless_joins_coroutine, .timeout = 30)
{
    weft_runtime_t *rt = wt_runtime(2);
    weft_task_t *ch;
    cr_assert_eq(weft_spawn_coro(rt, slow_child, (void *)77, NULL, &ch), 0);
    wt_counts_t c;
    wt_counts_init(&c);
    _Atomic int rc = 1;
    int64_t joined = 0;
    wt_joiner_t j = {&c, ch, &rc, &joined};
    weft_task_t *h;
    cr_assert_eq(weft_spawn(rt, &wt_joiner_vt, &j, sizeof j, &h), 0);
    int64_t v = 0;
    cr_assert_eq(weft_task_join_wait(h, weft_now() + WAIT_NS, &v), 0);
    cr_assert_eq(atomic_load(&rc), 0);
    cr_assert_eq(joined, 77);
    cr_assert_eq(v, 77);
    cr_assert_eq(wt_finish(rt), 0);
}

Test(coro_api, thread_join_and_handle_ops, .timeout = 30)
{
    weft_runtime_t *rt = wt_runtime(1);
    weft_task_t *h;
    cr_assert_eq(weft_spawn_coro(rt, slow_child, (void *)5, NULL, &h), 0);
    cr_assert_gt(weft_task_id(h), 0);
    int64_t v = 0;
    cr_assert_eq(weft_join(h, &v), 0, "a plain thread's join blocks until the end");
    cr_assert_eq(v, 5);
    /* Detached from the start. */
    cr_assert_eq(weft_spawn_coro(rt, slow_child, (void *)6, NULL, NULL), 0);
    cr_assert_eq(wt_finish(rt), 0);
}

/* Task id and name seen from inside. */
static int id_coro(void *arg)
{
    *(int64_t *)arg = weft_task_current_id();
    if (weft_yield() != 0)
        return -1;
    return weft_task_current_id() == *(int64_t *)arg ? 0 : -2;
}

Test(coro_api, current_id_across_yield, .timeout = 30)
{
    weft_runtime_t *rt = wt_runtime(1);
    int64_t id = 0;
    weft_task_t *h;
    weft_coro_opts_t o = WEFT_CORO_OPTS_INIT;
    o.name = "a name longer than the thirty-one characters kept";
    cr_assert_eq(weft_spawn_coro(rt, id_coro, &id, &o, &h), 0);
    int64_t hid = weft_task_id(h);
    int64_t v = -1;
    cr_assert_eq(weft_join(h, &v), 0);
    cr_assert_eq(v, 0);
    cr_assert_eq(id, hid);
    cr_assert_eq(wt_finish(rt), 0);
}

/* ---- stack sizes ------------------------------------------------------------------------ */

__attribute__((noinline)) static int use_stack(size_t bytes)
{
    volatile char buf[4096];
    buf[0] = (char)bytes;
    if (bytes <= sizeof buf)
        return buf[0];
    return use_stack(bytes - sizeof buf) + buf[0];
}

static int deep_coro(void *arg)
{
    size_t bytes = (size_t)(uintptr_t)arg;
    if (weft_yield() != 0)
        return -1;
    use_stack(bytes);
    return weft_yield();
}

Test(coro_api, stack_size_option, .timeout = 30)
{
    weft_config_t cfg;
    weft_config_init(&cfg);
    cfg.workers = 1;
    cfg.stack_size = 256 << 10;
    weft_runtime_t *rt = wt_runtime_cfg(&cfg);
    int res = -1;
    /* The runtime default (256 KiB) holds 160 KiB of frames ... */
    cr_assert_eq(weft_runtime_run_coro(rt, deep_coro, (void *)(uintptr_t)(160 << 10), NULL, &res),
                 0);
    cr_assert_eq(res, 0);
    /* ... and a per-spawn 2 MiB stack holds 1.5 MiB. */
    weft_coro_opts_t o = WEFT_CORO_OPTS_INIT;
    o.stack_size = 2 << 20;
    cr_assert_eq(weft_runtime_run_coro(rt, deep_coro, (void *)(uintptr_t)(1536 << 10), &o, &res),
                 0);
    cr_assert_eq(res, 0);
    cr_assert_eq(wt_finish(rt), 0);
}

/* ---- stack pool --------------------------------------------------------------------------- */

static int nop_coro(void *arg)
{
    (void)arg;
    return weft_yield();
}

typedef struct go {
    _Atomic int go, started;
} go_t;

/* Yields until go is set (keeps its stack while others start). */
static int wait_go_coro(void *arg)
{
    go_t *g = arg;
    atomic_fetch_add(&g->started, 1);
    while (!atomic_load(&g->go))
        if (weft_yield() != 0)
            return -1;
    return 0;
}

static bool stacks_at_most(void *arg)
{
    return weft__stack_mapped() <= *(int64_t *)arg;
}

Test(coro_api, stacks_are_pooled_and_unmapped, .timeout = 60)
{
    int64_t before = weft__stack_mapped();
    weft_runtime_t *rt = wt_runtime(1);
    /* One after another: the worker's pool hands the same stack back. */
    for (int i = 0; i < 200; i++) {
        weft_task_t *h;
        cr_assert_eq(weft_spawn_coro(rt, nop_coro, NULL, NULL, &h), 0);
        cr_assert_eq(weft_join(h, NULL), 0);
    }
    cr_assert_leq(weft__stack_mapped() - before, 2, "sequential coroutines reuse stacks");
    /* 300 at once: all return to the pool; once idle the worker keeps 16
     * resident, gives the pages of 256 more back and unmaps the rest. */
    weft_task_t *hs[300];
    go_t g = {0, 0};
    for (int i = 0; i < 300; i++)
        cr_assert_eq(weft_spawn_coro(rt, wait_go_coro, &g, NULL, &hs[i]), 0);
    cr_assert(wt_wait_int_ge(&g.started, 300, WAIT_NS));
    cr_assert_geq(weft__stack_mapped() - before, 300, "one stack per live coroutine");
    int64_t t_go = weft_now();
    atomic_store(&g.go, 1);
    for (int i = 0; i < 300; i++)
        cr_assert_eq(weft_join(hs[i], NULL), 0);
    /* The worker trims its pool once it has stayed parked a while. */
    int64_t bound = before + WEFT__STACK_HOT + WEFT__STACK_CACHE_DEFAULT;
    cr_assert(wt_wait_until(stacks_at_most, &bound, WAIT_NS),
              "an idle worker trims its pool to %d stacks (%lld mapped)",
              WEFT__STACK_HOT + WEFT__STACK_CACHE_DEFAULT,
              (long long)(weft__stack_mapped() - before));
    /* It parked after go (its coroutines were all running until then), so
     * a trim that waits for WEFT__TRIM_DELAY_NS of parking ends later than
     * that after go, however slow the machine. */
    cr_assert_geq(weft_now() - t_go, WEFT__TRIM_DELAY_NS, "trimming waits for a pause");
    cr_assert_geq(weft__stack_mapped() - before, WEFT__STACK_HOT + WEFT__STACK_CACHE_DEFAULT,
                  "trimmed stacks stay pooled up to the cache size");
    cr_assert_eq(wt_finish(rt), 0);
    cr_assert_eq(weft__stack_mapped(), before, "freeing the runtime unmaps its pools");
}

/*
 * More coroutines at once than a pool holds resident (WEFT__STACK_POOL_MAX):
 * the overflow goes cold in batches and stays mapped while the worker is
 * busy, a second wave reuses those stacks (no new mappings), and the idle
 * worker unmaps all but WEFT__STACK_HOT + the cache size. Run twice: with
 * the batched page release and with the one-madvise-per-stack fallback.
 */
#define WAVE (WEFT__STACK_POOL_MAX + 3 * WEFT__STACK_MAP_MAX + 5)

/* Keeps the only worker from parking (so from trimming) until stop. */
static int busy_coro(void *arg)
{
    while (!atomic_load((_Atomic int *)arg))
        if (weft_yield() != 0)
            return -1;
    return 0;
}

static void overflow_waves(void)
{
    int64_t before = weft__stack_mapped();
    weft_runtime_t *rt = wt_runtime(1);
    static weft_task_t *hs[WAVE];
    static _Atomic int stop;
    atomic_store(&stop, 0);
    weft_task_t *busy;
    cr_assert_eq(weft_spawn_coro(rt, busy_coro, &stop, NULL, &busy), 0);
    int64_t peak = 0;
    for (int wave = 0; wave < 2; wave++) {
        go_t g = {0, 0};
        for (int i = 0; i < WAVE; i++)
            cr_assert_eq(weft_spawn_coro(rt, wait_go_coro, &g, NULL, &hs[i]), 0);
        cr_assert(wt_wait_int_ge(&g.started, WAVE, 6 * WAIT_NS));
        int64_t now = weft__stack_mapped() - before;
        cr_assert_geq(now, WAVE + 1, "wave %d: one stack per live coroutine", wave);
        if (wave == 0)
            peak = now;
        else
            cr_assert_leq(now, peak, "the second wave reuses the first one's stacks");
        atomic_store(&g.go, 1);
        for (int i = 0; i < WAVE; i++) {
            int64_t out = -1;
            cr_assert_eq(weft_task_join_wait(hs[i], weft_now() + WAIT_NS, &out), 0);
            cr_assert_eq(out, 0);
        }
        /* Nothing unmapped while the worker is busy: the overflow went
         * cold (pages given back), still mapped. */
        cr_assert_eq(weft__stack_mapped() - before, now, "wave %d: unmapped only when idle", wave);
    }
    atomic_store(&stop, 1);
    cr_assert_eq(weft_task_join_wait(busy, weft_now() + WAIT_NS, NULL), 0);
    int64_t bound = before + WEFT__STACK_HOT + WEFT__STACK_CACHE_DEFAULT;
    cr_assert(wt_wait_until(stacks_at_most, &bound, WAIT_NS),
              "an idle worker unmaps the overflow (%lld mapped)",
              (long long)(weft__stack_mapped() - before));
    cr_assert_eq(wt_finish(rt), 0);
    cr_assert_eq(weft__stack_mapped(), before, "freeing the runtime unmaps its pools");
}

Test(coro_api, overflow_beyond_the_pool_goes_cold_and_is_reused, .timeout = 120)
{
    overflow_waves();
}

Test(coro_api, overflow_with_one_madvise_per_stack, .timeout = 120)
{
    weft__stack_map_fallback();
    overflow_waves();
}

/* Records where its first frame sits within a page, then waits for go. */
typedef struct colour_probe {
    go_t *g;
    uintptr_t offset;
} colour_probe_t;

static int colour_coro(void *arg)
{
    colour_probe_t *p = arg;
    volatile char local = 0;
    p->offset = (uintptr_t)&local & 4095;
    return wait_go_coro(p->g);
}

Test(coro_api, fresh_stacks_start_at_different_offsets, .timeout = 60)
{
    weft_runtime_t *rt = wt_runtime(1);
    go_t g = {0, 0};
    colour_probe_t p[2] = {{&g, 0}, {&g, 0}};
    weft_task_t *h[2];
    /* Both alive at once: two fresh stacks, mapped one after the other. */
    for (int i = 0; i < 2; i++)
        cr_assert_eq(weft_spawn_coro(rt, colour_coro, &p[i], NULL, &h[i]), 0);
    cr_assert(wt_wait_int_ge(&g.started, 2, WAIT_NS));
    atomic_store(&g.go, 1);
    for (int i = 0; i < 2; i++)
        cr_assert_eq(weft_join(h[i], NULL), 0);
    cr_assert_neq(p[0].offset, p[1].offset,
                  "stack colouring: the same frame at different page offsets (%#lx, %#lx)",
                  (unsigned long)p[0].offset, (unsigned long)p[1].offset);
    cr_assert_eq(wt_finish(rt), 0);
}

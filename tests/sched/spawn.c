/*
 * sched/spawn.c - spawning: from many foreign threads at once, from inside
 * tasks (a root that spawns and joins children), weft_runtime_run and
 * weft_run, and spawning after shutdown.
 */
#include <criterion/criterion.h>

#include "common/wt.h"

#define WAIT_NS (30 * WT_SEC)

/* ---- 8 foreign threads spawning and joining at once ----------------------------- */

#define THREADS 8
#define PER_THREAD 10000

typedef struct spawner {
    weft_runtime_t *rt;
    int index;
    wt_counts_t c;
    _Atomic int *go;
    int errors;
    weft_task_t **h;
} spawner_t;

static void *spawner_main(void *arg)
{
    spawner_t *s = arg;
    while (!atomic_load(s->go))
        sched_yield();
    for (int i = 0; i < PER_THREAD; i++) {
        wt_ready_t r = {&s->c, (int64_t)s->index * 1000000 + i};
        if (weft_spawn(s->rt, &wt_ready_vt, &r, sizeof r, &s->h[i]) != 0) {
            s->errors++;
            s->h[i] = NULL;
        }
    }
    for (int i = 0; i < PER_THREAD; i++) {
        if (!s->h[i])
            continue;
        int64_t out = -1;
        int rc = weft_task_join_wait(s->h[i], weft_now() + WAIT_NS, &out);
        if (rc != 0 || out != (int64_t)s->index * 1000000 + i)
            s->errors++;
    }
    return NULL;
}

static void spawn_from_threads(unsigned workers)
{
    weft_runtime_t *rt = wt_runtime(workers);
    static spawner_t sp[THREADS];
    pthread_t th[THREADS];
    _Atomic int go = 0;
    for (int t = 0; t < THREADS; t++) {
        sp[t].rt = rt;
        sp[t].index = t;
        sp[t].go = &go;
        sp[t].errors = 0;
        wt_counts_init(&sp[t].c);
        sp[t].h = calloc(PER_THREAD, sizeof *sp[t].h);
        cr_assert_not_null(sp[t].h);
        cr_assert_eq(pthread_create(&th[t], NULL, spawner_main, &sp[t]), 0);
    }
    atomic_store(&go, 1);
    for (int t = 0; t < THREADS; t++)
        pthread_join(th[t], NULL);
    for (int t = 0; t < THREADS; t++) {
        cr_assert_eq(sp[t].errors, 0, "thread %d: %d spawn/join errors", t, sp[t].errors);
        cr_assert_eq(atomic_load(&sp[t].c.polls), PER_THREAD);
        cr_assert_eq(atomic_load(&sp[t].c.drops), PER_THREAD);
        free(sp[t].h);
    }
    cr_assert_eq(wt_finish(rt), 0);
}

Test(spawn, eight_foreign_threads_1w, .timeout = 60)
{
    spawn_from_threads(1);
}

Test(spawn, eight_foreign_threads_2w, .timeout = 60)
{
    spawn_from_threads(2);
}

/* ---- a root that spawns children and joins them --------------------------------- */

#define CHILDREN 300 /* more than a ring holds */

typedef struct root {
    wt_counts_t *c;
    wt_counts_t *child_c;
    weft_task_t *h[CHILDREN];
    int spawned, joined;
    int64_t sum;
    int failed;
} root_t;

static weft_poll_t root_poll(void *st, weft_cx_t *cx, int64_t *out)
{
    root_t *s = st;
    atomic_fetch_add(&s->c->polls, 1);
    if (!s->spawned) {
        s->spawned = 1;
        weft_runtime_t *rt = weft_runtime_current();
        for (int i = 0; i < CHILDREN; i++) {
            /* Children that yield a little, so some are still running. */
            wt_yielder_t y = {s->child_c, i % 4, WEFT_YIELD_INIT, 0};
            if (!rt || weft_spawn(rt, &wt_yielder_vt, &y, sizeof y, &s->h[i]) != 0) {
                s->failed = 1;
                s->h[i] = NULL;
            }
        }
    }
    while (s->joined < CHILDREN) {
        int64_t v = 0;
        weft_task_t *h = s->h[s->joined];
        int rc = h ? weft_task_join_poll(h, cx, &v) : -EINVAL;
        if (rc == WEFT_PENDING)
            return WEFT_PENDING;
        if (rc != 0 || v != s->joined % 4 + 1)
            s->failed = 1;
        s->sum += v;
        s->joined++;
    }
    *out = s->failed ? -1 : s->sum;
    return WEFT_READY;
}

static void root_drop(void *st)
{
    root_t *s = st;
    for (int i = s->joined; i < CHILDREN; i++)
        if (s->h[i])
            weft_task_detach(s->h[i]);
    atomic_fetch_add(&s->c->drops, 1);
}

static const weft_future_vtable_t root_vt = {root_poll, root_drop, "root"};

static int64_t expected_sum(void)
{
    int64_t sum = 0;
    for (int i = 0; i < CHILDREN; i++)
        sum += i % 4 + 1;
    return sum;
}

Test(spawn, runtime_run_root_spawns_and_joins, .timeout = 30)
{
    for (unsigned workers = 1; workers <= 2; workers++) {
        weft_runtime_t *rt = wt_runtime(workers);
        wt_counts_t rc, cc;
        wt_counts_init(&rc);
        wt_counts_init(&cc);
        root_t *st = calloc(1, sizeof *st);
        st->c = &rc;
        st->child_c = &cc;
        int64_t out = 0;
        cr_assert_eq(weft_runtime_run(rt, &root_vt, st, sizeof *st, &out), 0);
        cr_assert_eq(out, expected_sum(), "weft_runtime_run returns the root's output");
        cr_assert_eq(atomic_load(&rc.drops), 1);
        cr_assert_eq(atomic_load(&cc.drops), CHILDREN);
        cr_assert_eq(atomic_load(&cc.readies), CHILDREN);
        /* The runtime is reusable after run. */
        wt_counts_t c2;
        wt_counts_init(&c2);
        wt_ready_t r = {&c2, -5};
        cr_assert_eq(weft_runtime_run(rt, &wt_ready_vt, &r, sizeof r, &out), 0);
        cr_assert_eq(out, -5);
        cr_assert_eq(weft_runtime_run(rt, &wt_ready_vt, &r, sizeof r, NULL), 0);
        cr_assert_eq(atomic_load(&c2.drops), 2);
        free(st);
        cr_assert_eq(wt_finish(rt), 0);
    }
}

Test(spawn, weft_run_one_shot, .timeout = 30)
{
    weft_config_t cfg;
    weft_config_init(&cfg);
    cfg.workers = 2;
    wt_counts_t rc, cc;
    wt_counts_init(&rc);
    wt_counts_init(&cc);
    root_t *st = calloc(1, sizeof *st);
    st->c = &rc;
    st->child_c = &cc;
    int64_t out = 0;
    cr_assert_eq(weft_run(&cfg, &root_vt, st, sizeof *st, &out), 0);
    cr_assert_eq(out, expected_sum());
    cr_assert_eq(atomic_load(&rc.drops), 1);
    cr_assert_eq(atomic_load(&cc.drops), CHILDREN);
    /* NULL config: the defaults. */
    wt_counts_t c2;
    wt_counts_init(&c2);
    wt_ready_t r = {&c2, 17};
    cr_assert_eq(weft_run(NULL, &wt_ready_vt, &r, sizeof r, &out), 0);
    cr_assert_eq(out, 17);
    cr_assert_eq(atomic_load(&c2.drops), 1);
    free(st);
}

/* weft_run leaves nothing behind even if the root leaves a pending child. */
typedef struct leaver {
    wt_counts_t *c;
    wt_counts_t *child_c;
} leaver_t;

static weft_poll_t leaver_poll(void *st, weft_cx_t *cx, int64_t *out)
{
    (void)cx;
    leaver_t *s = st;
    atomic_fetch_add(&s->c->polls, 1);
    wt_pending_t p = {s->child_c};
    weft_spawn(weft_runtime_current(), &wt_pending_vt, &p, sizeof p, NULL);
    *out = 8;
    return WEFT_READY;
}

static const weft_future_vtable_t leaver_vt = {leaver_poll, wt_counted_drop, "leaver"};

Test(spawn, weft_run_cancels_leftovers, .timeout = 30)
{
    wt_counts_t c, cc;
    wt_counts_init(&c);
    wt_counts_init(&cc);
    leaver_t st = {&c, &cc};
    int64_t out = 0;
    weft_config_t cfg;
    weft_config_init(&cfg);
    cfg.workers = 2;
    cr_assert_eq(weft_run(&cfg, &leaver_vt, &st, sizeof st, &out), 0);
    cr_assert_eq(out, 8);
    cr_assert_eq(atomic_load(&c.drops), 1);
    cr_assert_eq(atomic_load(&cc.drops), 1, "the pending child is dropped by shutdown");
}

/* ---- spawn after shutdown --------------------------------------------------------- */

Test(spawn, spawn_after_shutdown, .timeout = 30)
{
    weft_runtime_t *rt = wt_runtime(2);
    cr_assert_eq(weft_runtime_shutdown(rt, weft_now() + 5 * WT_SEC), 0);
    cr_assert_eq(weft_runtime_shutdown(rt, weft_now() + 5 * WT_SEC), 0, "safe to repeat");
    wt_counts_t c;
    wt_counts_init(&c);
    wt_ready_t r = {&c, 1};
    weft_task_t *h = (weft_task_t *)&c;
    cr_assert_eq(weft_spawn(rt, &wt_ready_vt, &r, sizeof r, &h), -ESHUTDOWN);
    cr_assert_null(h, "no handle on failure");
    cr_assert_eq(weft_spawn(rt, &wt_ready_vt, &r, sizeof r, NULL), -ESHUTDOWN);
    cr_assert_eq(weft_spawn(rt, &wt_ready_vt, NULL, 0, NULL), -ESHUTDOWN);
    int64_t out = 3;
    cr_assert_eq(weft_runtime_run(rt, &wt_ready_vt, &r, sizeof r, &out), -ESHUTDOWN);
    cr_assert_eq(out, 3);
    cr_assert_eq(atomic_load(&c.drops), 0, "the caller's state is not dropped");
    cr_assert_eq(atomic_load(&c.polls), 0);
    cr_assert_eq(weft_runtime_free(rt), 0);
}

/* A spawn from inside a task racing shutdown: either it succeeds (and the
 * child is dropped once by shutdown or completes) or it reports -ESHUTDOWN
 * and the state stays the caller's. */
typedef struct late {
    wt_counts_t *c;
    wt_counts_t *child_c;
    _Atomic int *refused;
    _Atomic int *spawned;
    weft_yield_t y;
} late_t;

static weft_poll_t late_poll(void *st, weft_cx_t *cx, int64_t *out)
{
    (void)out;
    late_t *s = st;
    atomic_fetch_add(&s->c->polls, 1);
    wt_ready_t r = {s->child_c, 0};
    int rc = weft_spawn(weft_runtime_current(), &wt_ready_vt, &r, sizeof r, NULL);
    if (rc == -ESHUTDOWN)
        atomic_fetch_add(s->refused, 1);
    else if (rc == 0)
        atomic_fetch_add(s->spawned, 1);
    weft_yield_init(&s->y);
    weft_yield_poll(&s->y, cx);
    return WEFT_PENDING;
}

static const weft_future_vtable_t late_vt = {late_poll, wt_counted_drop, "late"};

Test(spawn, spawn_from_task_racing_shutdown, .timeout = 30)
{
    weft_runtime_t *rt = wt_runtime(2);
    wt_counts_t c, cc;
    wt_counts_init(&c);
    wt_counts_init(&cc);
    _Atomic int refused = 0, spawned = 0;
    late_t st = {&c, &cc, &refused, &spawned, WEFT_YIELD_INIT};
    for (int i = 0; i < 4; i++)
        cr_assert_eq(weft_spawn(rt, &late_vt, &st, sizeof st, NULL), 0);
    cr_assert(wt_wait_int_ge(&spawned, 1000, WAIT_NS));
    cr_assert_geq(weft_runtime_shutdown(rt, weft_now() + 5 * WT_SEC), 0);
    cr_assert_eq(atomic_load(&c.drops), 4);
    cr_assert_eq(atomic_load(&cc.drops), atomic_load(&spawned),
                 "every accepted child is dropped exactly once");
    cr_assert_leq(atomic_load(&cc.polls), atomic_load(&spawned));
    cr_assert_eq(weft_runtime_free(rt), 0);
}

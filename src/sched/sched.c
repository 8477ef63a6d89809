/*
 * sched.c - creating, starting, shutting down and freeing the scheduler.
 *
 * Shutdown, in order (the reasons are the invariants):
 *  1. Close every owned shard under its lock: from then on a spawn fails
 *     with -ESHUTDOWN, so the set of tasks can only shrink.
 *  2. Cancel every listed task (as weft_task_cancel does) while the workers
 *     still run, so each is dropped at its next scheduling point.
 *  3. Wait until the owned lists are empty or the deadline passes.
 *  4. Stop and join the workers.
 *  5. On the calling thread alone: run every queued task with a forced
 *     cancel (queues first: a queued task may hold RUNNING from a yield),
 *     then cancel whatever is still listed, until nothing is left.
 * Completing a task may wake its joiner; with no workers left that lands
 * in the inject queue, which step 5 drains again.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sched/sched.h"

extern const weft__sched_ops_t weft__sched_ops;

int weft__sched_new(const weft__sched_config_t *cfg, void *user, weft__sched_t **out)
{
    weft__sched_t *s = aligned_alloc(64, WEFT__ALIGN_UP(sizeof *s, 64));
    if (!s)
        return -ENOMEM;
    memset(s, 0, sizeof *s);
    s->base.ops = &weft__sched_ops;
    s->cfg = *cfg;
    s->cfg.cpus = NULL; /* the caller's array: read below, not kept */
    s->cfg.ncpus = 0;
    s->user = user;
    s->nworkers = cfg->workers;
    snprintf(s->name, sizeof s->name, "%s", cfg->thread_name ? cfg->thread_name : "weft");
    size_t wsize = WEFT__ALIGN_UP(sizeof(weft__worker_t) * s->nworkers, 64);
    s->workers = aligned_alloc(64, wsize);
    s->owned = aligned_alloc(64, WEFT__ALIGN_UP(sizeof(weft__owned_t) * (s->nworkers + 1), 64));
    if (!s->workers || !s->owned || weft__idle_init(&s->idle, s->nworkers) != 0) {
        free(s->workers);
        free(s->owned);
        free(s);
        return -ENOMEM;
    }
    memset(s->workers, 0, wsize);
    for (unsigned i = 0; i < s->nworkers; i++) {
        weft__worker_t *w = &s->workers[i];
        weft__ring_init(&w->ring);
        w->s = s;
        w->index = i;
        w->rng = 0x9e3779b9u * (i + 1);
        w->cpu = cfg->ncpus ? (int)cfg->cpus[i % cfg->ncpus] : -1;
        ck_stack_init(&w->inbox);
        ck_ec32_init(&w->ec, 0);
        atomic_init(&w->sleeping, false);
        atomic_init(&w->in_poller, false);
        atomic_init(&w->npinned, 0);
        weft__stack_pool_init(&w->stacks, cfg->stack_size, cfg->stack_cache);
    }
    for (unsigned i = 0; i <= s->nworkers; i++) {
        memset(&s->owned[i], 0, sizeof s->owned[i]);
        weft__spin_init(&s->owned[i].lock);
    }
    weft__inject_init(&s->inject);
    weft__alloc_init(s);
    atomic_init(&s->closed, false);
    atomic_init(&s->stop, false);
    atomic_init(&s->id_next, 1);
    atomic_init(&s->foreign_allocs, 0);
    atomic_init(&s->foreign_frees, 0);
    *out = s;
    return 0;
}

void weft__sched_set_poller(weft__sched_t *s, const weft__poller_ops_t *ops, void *arg)
{
    s->poller = ops;
    s->poller_arg = arg;
}

static void stop_workers(weft__sched_t *s)
{
    /* Release: pairs with the workers' acquire load of `stop`. */
    atomic_store_explicit(&s->stop, true, memory_order_seq_cst);
    for (unsigned i = 0; i < s->started; i++)
        weft__sched_unpark_worker(s, &s->workers[i]);
    for (unsigned i = 0; i < s->started; i++)
        weft__thread_join(&s->workers[i].thread);
    s->started = 0;
}

int weft__sched_start(weft__sched_t *s)
{
    for (unsigned i = 0; i < s->nworkers; i++) {
        char name[32];
        snprintf(name, sizeof name, "%.10s-w%u", s->name, i);
        int rc = weft__thread_start(&s->workers[i].thread, weft__worker_main, &s->workers[i], name);
        if (rc != 0) {
            stop_workers(s);
            return rc;
        }
        s->started++;
    }
    return 0;
}

static size_t owned_total(weft__sched_t *s)
{
    size_t n = 0;
    for (unsigned i = 0; i <= s->nworkers; i++) {
        weft__spin_lock(&s->owned[i].lock);
        n += s->owned[i].count;
        weft__spin_unlock(&s->owned[i].lock);
    }
    return n;
}

/* Run every queued task with a forced cancel; returns how many ran. */
static size_t drain_queues(weft__sched_t *s)
{
    size_t n = 0;
    int budget = WEFT__BUDGET;
    for (unsigned i = 0; i < s->nworkers; i++) {
        weft__worker_t *w = &s->workers[i];
        weft__task_t *t;
        if ((t = w->lifo)) {
            w->lifo = NULL;
            weft__task_run(t, &budget, (uint16_t)i, true);
            n++;
        }
        while ((t = weft__ring_pop(&w->ring))) {
            weft__task_run(t, &budget, (uint16_t)i, true);
            n++;
        }
        while ((t = weft__worker_pinned_take(w))) {
            weft__task_run(t, &budget, (uint16_t)i, true);
            n++;
        }
        ck_stack_entry_t *e = ck_stack_batch_pop_upmc(&w->inbox);
        WEFT__TSAN_ACQUIRE(&w->inbox);
        while (e) {
            ck_stack_entry_t *nx = e->next;
            weft__task_run(weft__container_of(e, weft__task_t, inbox_entry), &budget, (uint16_t)i,
                           true);
            e = nx;
            n++;
        }
    }
    weft__task_t *batch[64];
    size_t k;
    while ((k = weft__inject_pop_n(&s->inject, batch, 64)) > 0) {
        for (size_t j = 0; j < k; j++)
            weft__task_run(batch[j], &budget, UINT16_MAX, true);
        n += k;
    }
    return n;
}

/* Cancel one idle listed task; false when no shard has one left. */
static bool sweep_one(weft__sched_t *s)
{
    for (unsigned i = 0; i <= s->nworkers; i++) {
        weft__owned_t *o = &s->owned[i];
        weft__spin_lock(&o->lock);
        for (weft__task_t *t = o->head; t; t = t->owned_next) {
            if (weft__state_to_shutdown(t)) {
                weft__spin_unlock(&o->lock);
                /* complete() drops a running reference and the owned
                 * list's: no Notified brought one here, so take it. */
                weft__state_ref_inc(t);
                weft__task_cancel_running(t); /* unlinks it (release) */
                return true;
            }
        }
        weft__spin_unlock(&o->lock);
    }
    return false;
}

int weft__sched_shutdown(weft__sched_t *s, int64_t deadline)
{
    /* 1. Close. */
    atomic_store_explicit(&s->closed, true, memory_order_relaxed);
    for (unsigned i = 0; i <= s->nworkers; i++) {
        weft__spin_lock(&s->owned[i].lock);
        s->owned[i].closed = true;
        weft__spin_unlock(&s->owned[i].lock);
    }
    /* 2. Cancel every listed task while the workers run. */
    if (s->started) {
        for (unsigned i = 0; i <= s->nworkers; i++) {
            weft__owned_t *o = &s->owned[i];
            weft__spin_lock(&o->lock);
            for (weft__task_t *t = o->head; t; t = t->owned_next)
                if (weft__state_notify_and_cancel(t))
                    weft__sched_schedule(s, t, false);
            weft__spin_unlock(&o->lock);
        }
        /* 3. Wait for them, up to the deadline. */
        _Atomic uint32_t never = 0;
        while (owned_total(s) > 0) {
            int64_t now = weft__time_now_ns();
            if (now >= deadline)
                break;
            int64_t until = now + 200000;
            weft__futex_wait(&never, 0, until < deadline ? until : deadline);
        }
    }
    int stragglers = (int)owned_total(s);
    /* 4. Stop the workers. */
    stop_workers(s);
    return stragglers;
}

void weft__sched_drop_rest(weft__sched_t *s)
{
    /* 5. Drop whatever is left; no coroutine stack goes before the last
     * drop (one's await may point into another's frames). */
    weft__coro_defer_stacks(true);
    for (;;) {
        size_t ran = drain_queues(s);
        bool swept = false;
        while (sweep_one(s)) {
            swept = true;
        }
        if (!ran && !swept)
            break;
    }
    weft__coro_defer_stacks(false);
}

void weft__sched_free(weft__sched_t *s)
{
    if (s->started)
        stop_workers(s);
    for (unsigned i = 0; i < s->nworkers; i++) {
        weft__stack_pool_destroy(&s->workers[i].stacks);
        free(s->workers[i].pin_buf);
    }
    weft__alloc_destroy(s); /* every cell lives in a chunk: no list walk */
    weft__inject_destroy(&s->inject);
    weft__idle_destroy(&s->idle);
    free(s->workers);
    free(s->owned);
    free(s);
}

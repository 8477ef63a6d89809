/*
 * spawn.c - spawning: task ids, the owned lists, and the scheduler ops the
 * task layer calls (schedule, release, dealloc).
 *
 * Ids come from a runtime-wide counter in blocks of WEFT__ID_BLOCK per
 * worker, so a spawn on a worker touches no shared line for its id.
 */
#include <stdlib.h>
#include <string.h>

#include <weft/task.h>

#include "sched/sched.h"

static int64_t next_id(weft__sched_t *s, weft__worker_t *w)
{
    if (!w)
        return atomic_fetch_add_explicit(&s->id_next, 1, memory_order_relaxed);
    if (w->next_id == w->id_end) {
        /* Relaxed: ids only need to be unique. */
        w->next_id = atomic_fetch_add_explicit(&s->id_next, WEFT__ID_BLOCK, memory_order_relaxed);
        w->id_end = w->next_id + WEFT__ID_BLOCK;
    }
    return w->next_id++;
}

/* ---- owned lists ---------------------------------------------------------------- */

static bool owned_insert(weft__owned_t *o, weft__task_t *t)
{
    weft__spin_lock(&o->lock);
    if (o->closed) {
        weft__spin_unlock(&o->lock);
        return false;
    }
    t->owned_prev = NULL;
    t->owned_next = o->head;
    if (o->head)
        o->head->owned_prev = t;
    o->head = t;
    o->count++;
    weft__spin_unlock(&o->lock);
    return true;
}

static unsigned sched_release(void *sched, weft__task_t *t)
{
    weft__sched_t *s = sched;
    weft__owned_t *o = &s->owned[t->shard];
    weft__spin_lock(&o->lock);
    if (t->owned_prev)
        t->owned_prev->owned_next = t->owned_next;
    else
        o->head = t->owned_next;
    if (t->owned_next)
        t->owned_next->owned_prev = t->owned_prev;
    t->owned_prev = t->owned_next = NULL;
    o->count--;
    weft__spin_unlock(&o->lock);
    return 1;
}

static void sched_dealloc(void *sched, weft__task_t *t)
{
    weft__cell_free(sched, t);
}

const weft__sched_ops_t weft__sched_ops = {
    .schedule = weft__sched_schedule,
    .release = sched_release,
    .dealloc = sched_dealloc,
    .place = weft__sched_place,
};

/* ---- spawn ------------------------------------------------------------------------ */

int weft__sched_spawn(weft__sched_t *s, const weft_future_vtable_t *vt, const void *state,
                      size_t size, weft__task_t **handle)
{
    if (!s || !vt || !vt->poll || (size && !state) || size > WEFT_SPAWN_MAX_STATE)
        return -EINVAL;
    /* Relaxed: a hint only; the shard lock below decides. */
    if (atomic_load_explicit(&s->closed, memory_order_relaxed))
        return -ESHUTDOWN;
    weft__worker_t *w = weft__worker_current();
    if (w && w->s != s)
        w = NULL;
    weft__task_t *t = weft__cell_alloc(s, w, offsetof(weft__task_t, data) + size);
    if (!t)
        return -ENOMEM;
    weft__task_init(t, &s->base, vt, next_id(s, w), handle == NULL);
    if (size)
        memcpy(t->data, state, size);
    t->worker = UINT16_MAX;
    t->shard = (uint16_t)(w ? w->index : s->nworkers);
    if (!owned_insert(&s->owned[t->shard], t)) {
        t->magic = WEFT__TASK_DEAD;
        weft__cell_free(s, t);
        return -ESHUTDOWN;
    }
    if (handle)
        *handle = t;
    if (w) {
        weft__worker_schedule(w, t, false);
    } else {
        /* From outside: into a worker's inbox. One CAS per spawn, and the
         * worker takes a whole burst with one swap, where a shared inject
         * queue has the spawner and the worker take one lock per task each
         * whenever the worker keeps pace (measured: 2-4x slower, bimodal).
         * Stay with an awake worker (it spreads a burst to its peers when
         * it drains it); move on only when the target sleeps, so a stream
         * of spawns does not unpark a worker per task. The relaxed peek is
         * a hint: push_inbox does the real check and unpark. */
        static _Thread_local unsigned target;
        unsigned i = target % s->nworkers;
        for (unsigned k = 0; k < s->nworkers; k++) {
            if (!atomic_load_explicit(&s->workers[(i + k) % s->nworkers].sleeping,
                                      memory_order_relaxed)) {
                i = (i + k) % s->nworkers;
                break;
            }
        }
        target = i;
        weft__sched_push_inbox(s, &s->workers[i], t);
    }
    return 0;
}

int64_t weft__sched_live_cells(weft__sched_t *s)
{
    int64_t live = atomic_load_explicit(&s->foreign_allocs, memory_order_relaxed) -
                   atomic_load_explicit(&s->foreign_frees, memory_order_relaxed);
    for (unsigned i = 0; i < s->nworkers; i++)
        live += s->workers[i].allocs - s->workers[i].frees;
    return live;
}

/*
 * inject.h - the global inject queue: a mutex, an intrusive FIFO list
 * through weft__task.next, and an atomic length so that readers can see
 * "empty" without the lock.
 *
 * Fed by spawns and wakes from outside the workers and by ring overflow
 * batches; drained by workers in batches. Invariant: `len` equals the list
 * length whenever the lock is free.
 */
#ifndef WEFT_SCHED_INJECT_H
#define WEFT_SCHED_INJECT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>

#include "task/task.h"

typedef struct weft__inject {
    pthread_mutex_t lock;
    weft__task_t *head, *tail;
    _Atomic size_t len;
} weft__inject_t;

void weft__inject_init(weft__inject_t *q);
void weft__inject_destroy(weft__inject_t *q);
/* Push a linked batch first..last (last->next ignored) of n tasks. */
void weft__inject_push_batch(weft__inject_t *q, weft__task_t *first, weft__task_t *last, size_t n);
static inline void weft__inject_push(weft__inject_t *q, weft__task_t *t)
{
    weft__inject_push_batch(q, t, t, 1);
}
/* Pop up to max tasks into out[]; returns the count. */
size_t weft__inject_pop_n(weft__inject_t *q, weft__task_t **out, size_t max);
static inline size_t weft__inject_len(weft__inject_t *q)
{
    /* Relaxed: a hint; the lock orders the list itself. Callers that need
     * the Dekker ordering issue their own seq_cst fence first. */
    return atomic_load_explicit(&q->len, memory_order_relaxed);
}

#endif /* WEFT_SCHED_INJECT_H */

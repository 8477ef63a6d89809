/*
 * inject.c - the global inject queue (see inject.h for its invariants).
 */
#include "sched/inject.h"

void weft__inject_init(weft__inject_t *q)
{
    /* Adaptive: workers hold the lock for a few dozen instructions, so a
     * contender spins briefly instead of paying a futex sleep and wake. */
    pthread_mutexattr_t attr;
    pthread_mutexattr_init(&attr);
    pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_ADAPTIVE_NP);
    pthread_mutex_init(&q->lock, &attr);
    pthread_mutexattr_destroy(&attr);
    q->head = q->tail = NULL;
    atomic_init(&q->len, 0);
}

void weft__inject_destroy(weft__inject_t *q)
{
    pthread_mutex_destroy(&q->lock);
}

void weft__inject_push_batch(weft__inject_t *q, weft__task_t *first, weft__task_t *last, size_t n)
{
    last->next = NULL;
    pthread_mutex_lock(&q->lock);
    if (q->tail)
        q->tail->next = first;
    else
        q->head = first;
    q->tail = last;
    /* Relaxed under the lock; a submitter that must be seen by a parking
     * worker follows this with a seq_cst fence (sched.c notify). */
    atomic_store_explicit(&q->len, atomic_load_explicit(&q->len, memory_order_relaxed) + n,
                          memory_order_relaxed);
    pthread_mutex_unlock(&q->lock);
}

size_t weft__inject_pop_n(weft__inject_t *q, weft__task_t **out, size_t max)
{
    if (weft__inject_len(q) == 0 || max == 0)
        return 0;
    size_t n = 0;
    pthread_mutex_lock(&q->lock);
    while (n < max && q->head) {
        weft__task_t *t = q->head;
        q->head = t->next;
        t->next = NULL;
        out[n++] = t;
    }
    if (!q->head)
        q->tail = NULL;
    atomic_store_explicit(&q->len, atomic_load_explicit(&q->len, memory_order_relaxed) - n,
                          memory_order_relaxed);
    pthread_mutex_unlock(&q->lock);
    return n;
}

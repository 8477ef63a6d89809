/*
 * idle.h - which workers search for work and which sleep (after Tokio's
 * idle.rs), and the no-lost-wake-up handshake.
 *
 * `state` packs (unparked << 16) | searching. Sleepers are listed under
 * `lock`; a worker's own `sleeping` flag mirrors its presence in the list.
 *
 * Handshake (Dekker): a submitter publishes work, issues a seq_cst fence,
 * then reads `state`; it wakes a sleeper only if nobody searches and
 * somebody sleeps. A searcher that gives up decrements `searching` with a
 * seq_cst RMW, fences, and if it was the last searcher re-checks every
 * queue before sleeping. At least one side sees the other.
 */
#ifndef WEFT_SCHED_IDLE_H
#define WEFT_SCHED_IDLE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct weft__idle {
    _Atomic uint32_t state;
    unsigned nworkers;
    pthread_mutex_t lock;
    unsigned nsleepers;
    uint16_t *sleepers;
} weft__idle_t;

#define WEFT__IDLE_UNPARKED_ONE (1u << 16)
#define WEFT__IDLE_SEARCH_MASK 0xffffu

/* True if at most one worker (the caller) is unparked. Relaxed: a hint
 * for whether spinning can find work (worker.c, steal_work); the handshake
 * above, not this read, is what keeps wake-ups from being lost. */
static inline bool weft__idle_alone(weft__idle_t *idle)
{
    return (atomic_load_explicit(&idle->state, memory_order_relaxed) >> 16) <= 1;
}

int weft__idle_init(weft__idle_t *idle, unsigned nworkers);
void weft__idle_destroy(weft__idle_t *idle);

#endif /* WEFT_SCHED_IDLE_H */

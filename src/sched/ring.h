/*
 * ring.h - the per-worker run queue: a bounded single-producer,
 * multi-consumer ring of 256 pointers, after Tokio's local queue.
 *
 * Owner: push at the tail, pop at the head (FIFO). Thieves: steal half of
 * what is queued in one claim. When the ring is full the owner claims half
 * of it (one CAS) and moves that batch to the global inject queue itself.
 *
 * Invariants (details and memory-order arguments in ring.c):
 *  - `tail` is written only by the owner.
 *  - `head` packs two u32 indices: the low half is the real head (next item
 *    to take), the high half the steal head. They differ only while a thief
 *    is copying a claimed batch; at most one steal is in progress.
 *  - The owner may reuse a slot only once both heads have passed it:
 *    tail - steal_head <= 256.
 *  - Indices are u32 and wrap; only differences are compared.
 */
#ifndef WEFT_SCHED_RING_H
#define WEFT_SCHED_RING_H

#include <stdalign.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#define WEFT__RING_CAP 256u
#define WEFT__RING_MASK (WEFT__RING_CAP - 1)

typedef struct weft__ring {
    alignas(64) _Atomic uint64_t head; /* steal << 32 | real */
    alignas(64) _Atomic uint32_t tail;
    alignas(64) _Atomic(void *) slots[WEFT__RING_CAP];
} weft__ring_t;

void weft__ring_init(weft__ring_t *r);

/* Owner only. Push item; false if the ring is full (nothing pushed). */
bool weft__ring_push(weft__ring_t *r, void *item);

/*
 * Owner only. Push up to n items in order; returns how many fit (a prefix
 * of items). One release store publishes them all.
 */
unsigned weft__ring_push_batch(weft__ring_t *r, void *const *items, unsigned n);

/* Owner only. Pop the oldest item, or NULL if empty. */
void *weft__ring_pop(weft__ring_t *r);

/*
 * Owner only, called when push failed because the ring is full: claim the
 * oldest half (WEFT__RING_CAP / 2 items) in one CAS and copy them to out[],
 * oldest first. Returns the count claimed, or 0 if a steal is in progress
 * or the ring is no longer full. On 0 the thief will free room shortly:
 * retry the push, or (Tokio's choice, no waiting) send just the new item to
 * the inject queue.
 */
unsigned weft__ring_claim_half(weft__ring_t *r, void **out);

/*
 * Any thread but src's owner is src's thief; the caller owns dst (src !=
 * dst). Move half of src's items (rounded up) into dst and return one of
 * them (the newest moved) for the caller to run (it is not left in dst), or
 * NULL if src was empty, a steal from src was already in progress, or dst
 * is more than half full.
 */
void *weft__ring_steal_into(weft__ring_t *src, weft__ring_t *dst);

/* Approximate number of queued items (exact for the owner). */
unsigned weft__ring_len(const weft__ring_t *r);
/* Owner only: free slots. */
unsigned weft__ring_remaining(const weft__ring_t *r);
static inline bool weft__ring_is_empty(const weft__ring_t *r)
{
    return weft__ring_len(r) == 0;
}

#endif /* WEFT_SCHED_RING_H */

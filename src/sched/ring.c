/*
 * ring.c - the per-worker run queue: a bounded SPMC ring of 256 pointers.
 *
 * Owns: the slots of one worker's ring and the two index words `head` and
 * `tail`. It does not own the items (task pointers) it carries and never
 * dereferences them. Overflow policy (where claimed halves go) belongs to the
 * caller; this file only hands the batch out.
 *
 * Roles. Exactly one thread, the owner, calls push, push_batch, pop,
 * claim_half and remaining on a ring. Any number of other threads (thieves)
 * call steal_into with it as `src`; a thief is always the owner of its `dst`.
 *
 * Layout and invariants.
 *  - `tail` (u32): index one past the newest item. Written only by the owner
 *    (plain load + release store, never an RMW).
 *  - `head` (u64) packs two u32 indices: high half `steal`, low half `real`.
 *    `real` is the next item to hand out; `steal` is the oldest slot that a
 *    thief may still be reading. Outside a steal they are equal. A thief's
 *    first CAS moves only `real` (claiming [steal, real)); its second CAS
 *    sets steal = real. While steal != real no other steal may start, so at
 *    most one steal is in progress. `head` is written only by CAS (owner pop
 *    and claim_half, thief claim and finish), never by a plain store once
 *    the ring is shared, so every write to it is an RMW.
 *  - Items live in [real, tail); slots [steal, real) are being copied out by
 *    a thief. The owner may write slot `tail` only if tail - steal < 256:
 *    a slot is reused only after both heads have passed it.
 *  - steal <= real <= tail, in the wrapping sense: real - steal <= 128 and
 *    tail - steal <= 256. Both heads only ever move forward.
 *
 * Why u32 indices, when the slot index is only 8 bits: with 8-bit indices an
 * empty ring (tail == head) and a full one (tail == head + 256) would look
 * the same, and a thief descheduled between reading `head` and its CAS could
 * succeed after the indices lapped the ring exactly once (ABA), claiming
 * slots that now hold different items. With u32 indices full and empty
 * differ, and ABA needs 2^32 operations while one thief sleeps mid-steal.
 * All comparisons use unsigned differences (tail - real, tail - steal), so
 * wrapping past UINT32_MAX is harmless.
 *
 * Memory orders, in one place (each site repeats the relevant part):
 *  - Slots are _Atomic(void *) accessed relaxed. They are never the
 *    synchronising variable: a slot write is published by the owner's
 *    release store of `tail` (thieves acquire-load `tail`), and a thief's
 *    slot reads are retired by its release CAS on `head` that sets
 *    steal = real (the owner acquire-loads `head` before reusing a slot).
 *    Making them atomic only keeps a thief's read of a slot that the owner
 *    never writes concurrently (by the protocol above) from being a data
 *    race in the C11 sense; relaxed is enough because the ordering comes
 *    from head/tail.
 *  - The owner's own loads of `tail`, and the owner's read of a slot it
 *    wrote itself, are relaxed: they are program-ordered after its writes.
 *  - Every write to `head` is an RMW, so it continues the release sequence
 *    of every earlier release RMW on `head` (C11 5.1.2.4). An acquire load
 *    of any later value of `head` therefore synchronises with all earlier
 *    release CASes, not just the last one.
 *  - Thieves rely on "the tail I read after acquiring head is >= real". This
 *    holds because everything that can publish a `real` with steal == real
 *    (owner pop, owner claim_half, thief finish) is a release RMW that is
 *    program-ordered after a read of a tail >= that real.
 *
 * No fences, no seq_cst: every ordering here is a release/acquire pair on
 * `head` or `tail`.
 */
#include "sched/ring.h"

#include <assert.h>
#include <stddef.h>

#define HALF (WEFT__RING_CAP / 2)

static inline uint32_t unpack_real(uint64_t h)
{
    return (uint32_t)h;
}

static inline uint32_t unpack_steal(uint64_t h)
{
    return (uint32_t)(h >> 32);
}

static inline uint64_t pack(uint32_t steal, uint32_t real)
{
    return ((uint64_t)steal << 32) | real;
}

static inline _Atomic(void *) *slot(weft__ring_t *r, uint32_t idx)
{
    return &r->slots[idx & WEFT__RING_MASK];
}

void weft__ring_init(weft__ring_t *r)
{
    /*
     * Plain (relaxed) initialisation: the ring is not shared yet. Whatever
     * hands the ring to other threads (thread creation, a mutex, a release
     * store of a pointer to it) orders these stores before their first use.
     */
    atomic_init(&r->head, 0);
    atomic_init(&r->tail, 0);
    for (unsigned i = 0; i < WEFT__RING_CAP; i++)
        atomic_init(&r->slots[i], NULL);
}

bool weft__ring_push(weft__ring_t *r, void *item)
{
    /*
     * Acquire pairs with the release finish-CAS of a thief that stole from
     * this ring (steal_into, "finish"), or any later RMW in its release
     * sequence. It makes that thief's relaxed reads of the slots it copied
     * happen before our write below, which may reuse one of those slots a
     * lap later. Without it the C11 model lets the thief's read return the
     * item we are about to store: that item would be run twice and the old
     * one lost.
     */
    uint64_t head = atomic_load_explicit(&r->head, memory_order_acquire);
    uint32_t tail = atomic_load_explicit(&r->tail, memory_order_relaxed);

    if (tail - unpack_steal(head) >= WEFT__RING_CAP)
        return false;
    atomic_store_explicit(slot(r, tail), item, memory_order_relaxed);
    /*
     * Release pairs with the acquire load of `tail` in steal_into: a thief
     * that sees the new tail also sees the slot written above, and whatever
     * we wrote before pushing (the task the item points to). Without it a
     * thief could copy the slot's stale content (an item already taken, or
     * NULL) instead of `item`, or run the task before its fields are visible.
     */
    atomic_store_explicit(&r->tail, tail + 1, memory_order_release);
    return true;
}

unsigned weft__ring_push_batch(weft__ring_t *r, void *const *items, unsigned n)
{
    /* Acquire: same pairing and reason as in weft__ring_push. */
    uint64_t head = atomic_load_explicit(&r->head, memory_order_acquire);
    uint32_t tail = atomic_load_explicit(&r->tail, memory_order_relaxed);
    uint32_t room = WEFT__RING_CAP - (tail - unpack_steal(head));

    if (n > room)
        n = room;
    if (n == 0)
        return 0;
    for (unsigned i = 0; i < n; i++)
        atomic_store_explicit(slot(r, tail + i), items[i], memory_order_relaxed);
    /* Release: same pairing and reason as in weft__ring_push, for all n slots. */
    atomic_store_explicit(&r->tail, tail + n, memory_order_release);
    return n;
}

void *weft__ring_pop(weft__ring_t *r)
{
    /*
     * Relaxed: a stale head only makes the CAS below fail and retry, and the
     * slot we read is one we wrote ourselves.
     */
    uint64_t head = atomic_load_explicit(&r->head, memory_order_relaxed);
    uint32_t tail = atomic_load_explicit(&r->tail, memory_order_relaxed);
    uint32_t real;

    for (;;) {
        uint32_t steal = unpack_steal(head);
        uint64_t next;

        real = unpack_real(head);
        if (real == tail)
            return NULL;
        /* Move steal along with real only when no steal is in progress. */
        next = steal == real ? pack(real + 1, real + 1) : pack(steal, real + 1);
        /*
         * Success release pairs with the acquire loads of `head` in
         * steal_into (and, through the release sequence, with any later
         * acquire of `head`). A thief that sees real + 1 must then read a
         * tail >= real + 1; our latest tail store is program-ordered before
         * this CAS, so release makes it visible. Without it a thief could
         * pair the new real with an older tail, compute tail - real as a
         * huge wrapped count and try to claim slots that hold nothing.
         * Failure is relaxed: we only retry with the fresh value.
         */
        if (atomic_compare_exchange_weak_explicit(&r->head, &head, next, memory_order_release,
                                                  memory_order_relaxed))
            break;
    }
    /*
     * The slot is ours: thieves never read below real, and only we write
     * slots, so this relaxed read sees our own earlier store.
     */
    return atomic_load_explicit(slot(r, real), memory_order_relaxed);
}

unsigned weft__ring_claim_half(weft__ring_t *r, void **out)
{
    /* Relaxed: the CAS below validates the whole word. */
    uint64_t head = atomic_load_explicit(&r->head, memory_order_relaxed);
    uint32_t tail = atomic_load_explicit(&r->tail, memory_order_relaxed);
    uint32_t real = unpack_real(head);

    /*
     * The second test implies the first (tail - steal <= CAP, so steal !=
     * real means tail - real < CAP); both are spelled out for the reader.
     */
    if (unpack_steal(head) != real)
        return 0; /* a thief is copying; it will free room shortly */
    if (tail - real != WEFT__RING_CAP)
        return 0; /* not full any more (a thief took some) */
    /*
     * One attempt only: the only other writers of head are thieves, and any
     * successful steal means the ring is no longer full (and a steal may be
     * in progress), so the caller should retry its push instead.
     *
     * Success release: same pairing and reason as in weft__ring_pop (a
     * thief seeing real + HALF must read a tail at least that large).
     * Failure is relaxed: the value is discarded.
     */
    if (!atomic_compare_exchange_strong_explicit(&r->head, &head, pack(real + HALF, real + HALF),
                                                 memory_order_release, memory_order_relaxed))
        return 0;
    /* These slots are ours now and only we write slots: relaxed reads. */
    for (unsigned i = 0; i < HALF; i++)
        out[i] = atomic_load_explicit(slot(r, real + i), memory_order_relaxed);
    return HALF;
}

/*
 * Claim half of src's items (rounded up) with one CAS that moves real only,
 * copy them into dst starting at dst_tail, then set src's steal = real.
 * Returns the number copied (0 if nothing was claimed). Does not publish
 * dst's tail.
 */
static uint32_t steal_copy(weft__ring_t *src, weft__ring_t *dst, uint32_t dst_tail)
{
    /*
     * Acquire pairs with the release CASes on src->head (owner pop and
     * claim_half, thieves' finish) and, through the release sequence, with
     * every earlier one. It guarantees that the tail we load next is at
     * least the real head we see here. Without it tail - real can wrap to a
     * huge count (see weft__ring_pop).
     */
    uint64_t head = atomic_load_explicit(&src->head, memory_order_acquire);
    uint32_t real;
    uint32_t n;
    uint64_t next;

    for (;;) {
        uint32_t steal = unpack_steal(head);
        uint32_t tail;
        uint32_t avail;

        real = unpack_real(head);
        if (steal != real)
            return 0; /* another thief is copying */
        /*
         * Acquire pairs with the release store of src->tail in push and
         * push_batch: the slots below this tail are written and visible to
         * the relaxed copies below. Without it we could copy stale slot
         * contents.
         */
        tail = atomic_load_explicit(&src->tail, memory_order_acquire);
        avail = tail - real;
        if (avail == 0)
            return 0;
        if (avail > WEFT__RING_CAP) {
            /*
             * Our head is stale: the owner popped and pushed past it between
             * the two loads. The CAS would fail anyway; reload and retry.
             * Acquire: same pairing as the first load of head.
             */
            head = atomic_load_explicit(&src->head, memory_order_acquire);
            continue;
        }
        n = avail - avail / 2;
        next = pack(steal, real + n);
        /*
         * Claim [real, real + n). Failure acquire: the reloaded head feeds
         * the next iteration's tail load, same pairing as the first load of
         * head. Success acquire is there only because C11 forbids a failure
         * order stronger than the success order; nothing needs it (the slot
         * contents are ordered by the tail acquire above, and the owner
         * cannot overwrite [real, real + n) while steal stays at real).
         */
        if (atomic_compare_exchange_weak_explicit(&src->head, &head, next, memory_order_acquire,
                                                  memory_order_acquire))
            break;
    }
    assert(n <= HALF);

    /*
     * Copy. The source slots cannot be overwritten until we move steal past
     * them (the owner checks tail - steal). The destination slots are ours:
     * the caller checked dst has room for HALF >= n items.
     */
    for (uint32_t i = 0; i < n; i++) {
        void *item = atomic_load_explicit(slot(src, real + i), memory_order_relaxed);

        atomic_store_explicit(slot(dst, dst_tail + i), item, memory_order_relaxed);
    }

    /*
     * Finish: steal = real. The owner may have popped meanwhile (moving real
     * only, because steal != real), so loop until the CAS sees the current
     * real. Success release pairs with the acquire load of src->head in
     * push / push_batch (directly or through the release sequence): our slot
     * reads above happen before the owner reuses those slots. Without it the
     * owner's next-lap store could be the value our copy read (double run,
     * lost item). Release also carries our tail acquire forward for the
     * next thief, which reads this value with steal == real. Failure is
     * relaxed: we only retry with the fresh value.
     */
    head = next;
    for (;;) {
        uint32_t cur = unpack_real(head);

        assert(unpack_steal(head) == real);
        if (atomic_compare_exchange_weak_explicit(&src->head, &head, pack(cur, cur),
                                                  memory_order_release, memory_order_relaxed))
            break;
    }
    return n;
}

void *weft__ring_steal_into(weft__ring_t *src, weft__ring_t *dst)
{
    /* We own dst: our own tail, relaxed. */
    uint32_t dst_tail = atomic_load_explicit(&dst->tail, memory_order_relaxed);
    /*
     * Acquire on dst->head: we are dst's owner about to write dst's slots,
     * so this is the same pairing and reason as the head load in
     * weft__ring_push (thieves of dst must have finished reading any slot
     * we reuse).
     */
    uint64_t dst_head = atomic_load_explicit(&dst->head, memory_order_acquire);
    uint32_t n;
    void *ret;

    assert(src != dst);
    /* Refuse if dst is more than half full: it could not take a full half. */
    if (dst_tail - unpack_steal(dst_head) > HALF)
        return NULL;
    n = steal_copy(src, dst, dst_tail);
    if (n == 0)
        return NULL;
    /* Hand the last copied item to the caller; publish the other n - 1. */
    n--;
    ret = atomic_load_explicit(slot(dst, dst_tail + n), memory_order_relaxed);
    if (n == 0)
        return ret;
    /*
     * Release pairs with the acquire load of dst->tail by thieves stealing
     * from dst (steal_copy): they must see the slots copied above and,
     * transitively (our acquire of src->tail), what src's owner wrote before
     * pushing those items. Without it they could copy stale dst slots.
     */
    atomic_store_explicit(&dst->tail, dst_tail + n, memory_order_release);
    return ret;
}

unsigned weft__ring_len(const weft__ring_t *r)
{
    /*
     * Relaxed: a heuristic for anyone but the owner. The two loads are not a
     * snapshot, so clamp: a tail older than the head reads as 0 and one that
     * ran ahead by more than a lap as full.
     */
    uint64_t head = atomic_load_explicit(&r->head, memory_order_relaxed);
    uint32_t tail = atomic_load_explicit(&r->tail, memory_order_relaxed);
    uint32_t len = tail - unpack_real(head);

    if (len > UINT32_MAX / 2)
        return 0;
    return len > WEFT__RING_CAP ? WEFT__RING_CAP : len;
}

unsigned weft__ring_remaining(const weft__ring_t *r)
{
    /*
     * Owner only. Relaxed: steal only moves forward, so a stale head
     * under-reports the room, which is safe; push and push_batch re-check
     * with an acquire load before writing.
     */
    uint64_t head = atomic_load_explicit(&r->head, memory_order_relaxed);
    uint32_t tail = atomic_load_explicit(&r->tail, memory_order_relaxed);

    return WEFT__RING_CAP - (tail - unpack_steal(head));
}

/*
 * atomic_waker.c - a slot holding one waker, registered by one consumer and
 * woken by any number of producers (after Tokio's AtomicWaker).
 *
 * state: WAITING 0, REGISTERING 1, WAKING 2 (both may be set).
 *  - Only the thread that moved WAITING -> REGISTERING writes the waker.
 *  - Only the thread that set WAKING while the state was WAITING takes it.
 *  - A wake during a registration sets WAKING; the registrant sees it when
 *    it tries to return to WAITING and wakes the new waker itself.
 *  - A registration that finds the slot busy (WAKING or REGISTERING) stores
 *    nothing and wakes its own waker instead: never a lost wake-up.
 */
#include "task/task.h"

enum { WAITING = 0, REGISTERING = 1, WAKING = 2 };

void weft_atomic_waker_init(weft_atomic_waker_t *aw)
{
    if (!aw)
        return;
    atomic_init(&aw->state_, WAITING);
    aw->waker_ = WEFT_WAKER_NONE;
}

/*
 * We hold REGISTERING and stored a waker: return the slot to WAITING, or,
 * if a wake arrived meanwhile (REGISTERING|WAKING), take that waker back
 * out and wake it ourselves.
 */
static void publish(weft_atomic_waker_t *aw)
{
    uintptr_t exp = REGISTERING;
    /* acq_rel: release publishes the new waker to the next waker-taker;
     * acquire (on failure) orders a concurrent producer's writes before
     * the wake we then perform ourselves. */
    if (atomic_compare_exchange_strong_explicit(&aw->state_, &exp, WAITING, memory_order_acq_rel,
                                                memory_order_acquire))
        return;
    weft_waker_t mine = aw->waker_;
    aw->waker_ = WEFT_WAKER_NONE;
    /* Release: the next registrant acquires the emptied slot. */
    atomic_store_explicit(&aw->state_, WAITING, memory_order_release);
    weft_waker_wake(&mine);
}

int weft__atomic_waker_swap(weft_atomic_waker_t *aw, const weft_waker_t *w, weft_waker_t *old)
{
    *old = WEFT_WAKER_NONE;
    if (!aw || !w)
        return -EINVAL;
    uintptr_t cur = WAITING;
    /* Acquire: pairs with the release that returned the slot to WAITING
     * (a previous register or take), so we see the waker stored there. */
    if (atomic_compare_exchange_strong_explicit(&aw->state_, &cur, REGISTERING,
                                                memory_order_acquire, memory_order_acquire)) {
        *old = aw->waker_;
        weft_waker_clone(w, &aw->waker_);
        publish(aw);
        return 0;
    }
    /* WAKING: someone is waking the old waker right now. REGISTERING:
     * another registrant holds the slot (two consumers, which the API
     * forbids, but which a slot reused under a handle gone stale produces:
     * io/source.c). Either way ours is not stored, so wake it: a spurious
     * wake makes its task poll and register again; dropping it could leave
     * the task asleep for good. */
    weft_waker_wake_by_ref(w);
    return 0;
}

int weft__atomic_waker_claim(weft_atomic_waker_t *aw, const weft_waker_t *w)
{
    if (!aw || !w)
        return -EINVAL;
    uintptr_t cur = WAITING;
    /* Acquire: as in swap, pairs with the release that returned the slot
     * to WAITING, so we see (and may compare) the waker stored there. */
    if (!atomic_compare_exchange_strong_explicit(&aw->state_, &cur, REGISTERING,
                                                 memory_order_acquire, memory_order_acquire)) {
        weft_waker_wake_by_ref(w); /* busy: as in swap */
        return 0;
    }
    if (!aw->waker_.vtable || weft_waker_will_wake(&aw->waker_, w)) {
        weft_waker_t old = aw->waker_;
        weft_waker_clone(w, &aw->waker_);
        publish(aw);
        weft_waker_drop(&old);
        return 0;
    }
    uintptr_t exp = REGISTERING;
    /* Release: hands the untouched slot back. Acquire on failure: as in
     * publish, a producer's writes before the wake we then deliver. */
    if (atomic_compare_exchange_strong_explicit(&aw->state_, &exp, WAITING, memory_order_release,
                                                memory_order_acquire))
        return -EBUSY;
    /* A wake arrived while we held the slot, meant for the waker there,
     * which nobody took: deliver it, and wake ours (not stored) too. */
    publish(aw);
    weft_waker_wake_by_ref(w);
    return 0;
}

int weft_atomic_waker_register(weft_atomic_waker_t *aw, const weft_waker_t *w)
{
    weft_waker_t old;
    int rc = weft__atomic_waker_swap(aw, w, &old);
    weft_waker_drop(&old);
    return rc;
}

int weft_atomic_waker_take(weft_atomic_waker_t *aw, weft_waker_t *out)
{
    if (!aw || !out)
        return -EINVAL;
    *out = WEFT_WAKER_NONE;
    /* acq_rel: acquire pairs with register's release (we read the waker);
     * release orders the producer's prior writes before the wake seen by
     * a registrant that fails its CAS. */
    uintptr_t prev = atomic_fetch_or_explicit(&aw->state_, WAKING, memory_order_acq_rel);
    if (prev == WAITING) {
        *out = aw->waker_;
        aw->waker_ = WEFT_WAKER_NONE;
        /* Release: pairs with register's acquire CAS from WAITING. */
        atomic_fetch_and_explicit(&aw->state_, ~(uintptr_t)WAKING, memory_order_release);
    }
    return 0;
}

int weft_atomic_waker_wake(weft_atomic_waker_t *aw)
{
    weft_waker_t w;
    int rc = weft_atomic_waker_take(aw, &w);
    if (rc == 0)
        weft_waker_wake(&w);
    return rc;
}

void weft_atomic_waker_destroy(weft_atomic_waker_t *aw)
{
    if (aw)
        weft_waker_drop(&aw->waker_);
}

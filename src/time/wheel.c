/*
 * wheel.c - the timing wheel: arm, cancel, process (fire), free.
 *
 * A hierarchical hashed wheel after Tokio's (runtime/time/wheel): LEVELS
 * levels of 64 slots, each slot an intrusive doubly linked list of
 * weft_timer_t, each level a u64 bitmap of its non-empty slots. Level 0's
 * slots are one tick (2^WEFT__TIMER_TICK_SHIFT ns) wide, level L's 64^L
 * ticks. A deadline becomes tick = ceil(deadline / tick size); an entry is
 * due once tick <= floor(now / tick size), so it never fires early.
 *
 * Invariants (all under `lock`):
 *  - `elapsed` is the tick the wheel has been processed up to: every entry
 *    with tick <= elapsed has fired, and `elapsed` only grows. An arm whose
 *    tick is <= elapsed is due at once and is not linked.
 *  - An entry with tick `when` sits at level L = msb((elapsed ^ when) | 63)
 *    / 6 computed when it was linked (the highest 6-bit digit in which it
 *    differs from elapsed), slot (when >> 6L) & 63. So all entries of
 *    level L lie in elapsed's level-(L+1) block and after elapsed's
 *    level-L slot: the first non-empty level holds the earliest entry, and
 *    its next occupied slot (rotate the bitmap by elapsed's digit, count
 *    trailing zeros) starts at or before it. When that slot's start is
 *    reached, its entries are fired or re-linked one level (or more)
 *    lower: the cascade. process empties that slot completely before it
 *    looks for the next one, even across the unlocks it makes to wake a
 *    full batch or after MOVES_MAX moves (the only times elapsed's own
 *    slot is not empty).
 *  - Ticks are < 2^(64 - SHIFT) (deadlines are int64_t), so LEVELS levels
 *    cover every deadline without the top level wrapping around.
 *  - occupied[L] bit s is set iff slots[L][s] is non-empty.
 *  - next_fire is the earliest time the driver was told to wake at: set by
 *    process (INT64_MIN while it runs: an arm then needs no kick, since
 *    process computes its return value after every arm linked before it
 *    took the lock for the last time), lowered by an arm that links an
 *    earlier entry, which then kicks the driver after unlocking. Read and
 *    written only under the lock; atomic for the racy test accessor.
 *  - Entry states and who writes what: timers.h.
 *
 * The lock is a spinlock (util.h): every section is a few list operations.
 * Define WEFT__TIMERS_MUTEX to use a pthread mutex instead (measured on
 * W6, docs/timers.md).
 */
#include <assert.h>
#include <stdlib.h>

#include "platform/platform.h"
#include "time/timers.h"
#include "util/util.h"

#define SHIFT WEFT__TIMER_TICK_SHIFT
#define LEVELS ((63 - SHIFT) / 6 + 1)
#define SLOTS 64
#define BATCH 64 /* wakers woken per unlock in process */
/* Entries process moves (fires or cascades) per hold of the lock, so that
 * an arm or cancel never waits behind a whole cascading slot. */
#define MOVES_MAX 256

#ifdef WEFT__TIMERS_MUTEX
#include <pthread.h>
typedef pthread_mutex_t lock_t;
#define LOCK_INIT(l) pthread_mutex_init((l), NULL)
#define LOCK_DESTROY(l) pthread_mutex_destroy(l)
#define LOCK(l) pthread_mutex_lock(l)
#define UNLOCK(l) pthread_mutex_unlock(l)
#else
typedef weft__spin_t lock_t;
#define LOCK_INIT(l) weft__spin_init(l)
#define LOCK_DESTROY(l) ((void)(l))
#define LOCK(l) weft__spin_lock(l)
#define UNLOCK(l) weft__spin_unlock(l)
#endif

struct weft__timers {
    lock_t lock;
    uint64_t elapsed;
    uint64_t occupied[LEVELS];
    _Atomic size_t armed;
    _Atomic int64_t next_fire;
    weft__timers_kick_t kick;
    void *kick_arg;
    weft_timer_t *slots[LEVELS][SLOTS];
};

_Static_assert(SHIFT >= 10 && SHIFT <= 22, "WEFT__TIMER_TICK_SHIFT out of range");
_Static_assert(6 * LEVELS < 64, "a level's range must fit in a u64");

/* ceil(deadline / tick size); 0 for deadlines <= 0. Max 2^(63-SHIFT). */
static uint64_t to_tick(int64_t deadline)
{
    if (deadline <= 0)
        return 0;
    return ((uint64_t)deadline + (((uint64_t)1 << SHIFT) - 1)) >> SHIFT;
}

/* The time a tick starts, saturated at INT64_MAX. */
static int64_t tick_to_ns(uint64_t tick)
{
    if (tick > ((uint64_t)INT64_MAX >> SHIFT))
        return INT64_MAX;
    return (int64_t)(tick << SHIFT);
}

static unsigned level_for(uint64_t elapsed, uint64_t when)
{
    uint64_t masked = (elapsed ^ when) | (SLOTS - 1);
    unsigned msb = 63u - (unsigned)__builtin_clzll(masked);
    return msb / 6;
}

static void link_entry(weft__timers_t *tm, weft_timer_t *t, uint64_t when)
{
    unsigned lvl = level_for(tm->elapsed, when);
    assert(lvl < LEVELS);
    unsigned slot = (unsigned)(when >> (6 * lvl)) & (SLOTS - 1);
    weft_timer_t **head = &tm->slots[lvl][slot];
    t->prev_ = NULL;
    t->next_ = *head;
    if (*head)
        (*head)->prev_ = t;
    *head = t;
    tm->occupied[lvl] |= (uint64_t)1 << slot;
    t->slot_ = (uint16_t)(lvl * SLOTS + slot);
}

static void unlink_entry(weft__timers_t *tm, weft_timer_t *t)
{
    unsigned lvl = t->slot_ / SLOTS, slot = t->slot_ % SLOTS;
    if (t->prev_)
        t->prev_->next_ = t->next_;
    else
        tm->slots[lvl][slot] = t->next_;
    if (t->next_)
        t->next_->prev_ = t->prev_;
    if (!tm->slots[lvl][slot])
        tm->occupied[lvl] &= ~((uint64_t)1 << slot);
    t->next_ = t->prev_ = NULL;
}

static uint64_t rotr64(uint64_t x, unsigned n)
{
    n &= 63;
    return n ? (x >> n) | (x << (64 - n)) : x;
}

/*
 * The next slot to process: the first non-empty level's next occupied
 * slot after elapsed's. Its start tick is > elapsed.
 */
static bool next_expiration(const weft__timers_t *tm, unsigned *lvl_out, unsigned *slot_out,
                            uint64_t *tick_out)
{
    for (unsigned lvl = 0; lvl < LEVELS; lvl++) {
        uint64_t occ = tm->occupied[lvl];
        if (!occ)
            continue;
        unsigned shift = 6 * lvl;
        unsigned now_slot = (unsigned)(tm->elapsed >> shift) & (SLOTS - 1);
        unsigned slot = (now_slot + (unsigned)__builtin_ctzll(rotr64(occ, now_slot))) & (SLOTS - 1);
        uint64_t level_start = tm->elapsed & ~(((uint64_t)1 << (shift + 6)) - 1);
        uint64_t tick = level_start + ((uint64_t)slot << shift);
        /* Elapsed's own slot is empty (its entries were fired or cascaded
         * when elapsed reached its start), and a slot behind it would mean
         * an entry beyond the level's block, which level_for never
         * produces (no wrap-around). */
        assert(tick > tm->elapsed);
        if (tick < tm->elapsed) /* (release builds: never move elapsed back) */
            tick = tm->elapsed;
        *lvl_out = lvl;
        *slot_out = slot;
        *tick_out = tick;
        return true;
    }
    return false;
}

int weft__timers_new(weft__timers_kick_t kick, void *kick_arg, weft__timers_t **out)
{
    if (!out)
        return -EINVAL;
    weft__timers_t *tm = calloc(1, sizeof *tm);
    if (!tm)
        return -ENOMEM;
    LOCK_INIT(&tm->lock);
    /* Start at the present, so the first entries are linked at the level
     * their distance calls for, not cascaded down from the top. */
    tm->elapsed = (uint64_t)weft__time_now_ns() >> SHIFT;
    atomic_init(&tm->armed, 0);
    atomic_init(&tm->next_fire, INT64_MAX);
    tm->kick = kick;
    tm->kick_arg = kick_arg;
    *out = tm;
    return 0;
}

void weft__timers_abandon(weft__timers_t *tm)
{
    if (!tm)
        return;
    for (unsigned lvl = 0; lvl < LEVELS; lvl++) {
        for (unsigned slot = 0; slot < SLOTS; slot++) {
            weft_timer_t *t;
            while ((t = tm->slots[lvl][slot])) {
                unlink_entry(tm, t);
                weft_waker_t w = t->waker_;
                t->waker_ = WEFT_WAKER_NONE;
                t->wheel_ = NULL;
                /* Release: as when firing (timers.h); after it t is not
                 * touched (dropping w may free the task that holds t). */
                atomic_store_explicit(&t->state_, WEFT__TIMER_FIRED, memory_order_release);
                weft_waker_drop(&w);
            }
        }
    }
}

void weft__timers_free(weft__timers_t *tm)
{
    if (!tm)
        return;
    weft__timers_abandon(tm);
    LOCK_DESTROY(&tm->lock);
    free(tm);
}

static void wake_all(weft_waker_t *batch, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        weft_waker_wake(&batch[i]);
}

int64_t weft__timers_process(weft__timers_t *tm, int64_t now)
{
    uint64_t now_tick = now > 0 ? (uint64_t)now >> SHIFT : 0;
    weft_waker_t batch[BATCH];
    unsigned n = 0;
    LOCK(&tm->lock);
    atomic_store_explicit(&tm->next_fire, INT64_MIN, memory_order_relaxed);
    for (;;) {
        unsigned lvl, slot;
        uint64_t tick;
        if (!next_expiration(tm, &lvl, &slot, &tick) || tick > now_tick)
            break;
        tm->elapsed = tick;
        /* Empty this slot completely before looking for the next one: its
         * cascade fills lower levels, which must not be processed while
         * entries of this slot (due now, or earlier than those) remain. */
        for (unsigned moves = 0;; moves = 0) {
            weft_timer_t *t;
            while (n < BATCH && moves < MOVES_MAX && (t = tm->slots[lvl][slot])) {
                moves++;
                unlink_entry(tm, t);
                uint64_t when = to_tick(t->deadline_);
                if (when > tick) { /* cascade: when is inside this slot, so lower */
                    link_entry(tm, t, when);
                    continue;
                }
                batch[n++] = t->waker_;
                t->waker_ = WEFT_WAKER_NONE;
                atomic_fetch_sub_explicit(&tm->armed, 1, memory_order_relaxed);
                /* Release: pairs with the owner's acquire load of state_
                 * (weft_timer_poll / weft_timer_cancel); our unlink and the
                 * waker move happen-before the owner reuses the entry. This
                 * is the last access to t. */
                atomic_store_explicit(&t->state_, WEFT__TIMER_FIRED, memory_order_release);
            }
            if (n < BATCH && moves < MOVES_MAX)
                break; /* the slot is empty */
            /* A full batch, or a long cascade: unlock (waking the batch),
             * then finish the slot. Arms meanwhile link relative to
             * elapsed == this slot's start, so never into this slot;
             * cancels may only shrink it. */
            UNLOCK(&tm->lock);
            wake_all(batch, n);
            n = 0;
            LOCK(&tm->lock);
        }
    }
    if (now_tick > tm->elapsed)
        tm->elapsed = now_tick;
    unsigned lvl, slot;
    uint64_t tick;
    int64_t next = next_expiration(tm, &lvl, &slot, &tick) ? tick_to_ns(tick) : INT64_MAX;
    atomic_store_explicit(&tm->next_fire, next, memory_order_relaxed);
    UNLOCK(&tm->lock);
    wake_all(batch, n);
    return next;
}

int weft__timers_arm(weft__timers_t *tm, weft_timer_t *t, int64_t deadline, const weft_waker_t *w)
{
    weft_waker_t nw = WEFT_WAKER_NONE, old = WEFT_WAKER_NONE;
    weft_waker_clone(w, &nw);
    uint64_t when = to_tick(deadline);
    int64_t fire = 0;
    bool kick = false;
    int due = 0;
    LOCK(&tm->lock);
    /* Relaxed: state_ changes only under this lock while ARMED. */
    uint32_t s = atomic_load_explicit(&t->state_, memory_order_relaxed);
    if (s == WEFT__TIMER_ARMED) {
        assert(t->wheel_ == tm);
        if (to_tick(t->deadline_) == when) { /* same tick: only the waker changes */
            old = t->waker_;
            t->waker_ = nw;
            t->seen_ = *w;
            t->deadline_ = deadline;
            UNLOCK(&tm->lock);
            weft_waker_drop(&old);
            return 0;
        }
        unlink_entry(tm, t);
        old = t->waker_;
        t->waker_ = WEFT_WAKER_NONE;
        atomic_fetch_sub_explicit(&tm->armed, 1, memory_order_relaxed);
    }
    t->deadline_ = deadline;
    if (when <= tm->elapsed) {
        due = 1;
        atomic_store_explicit(&t->state_, WEFT__TIMER_FIRED, memory_order_relaxed);
    } else {
        t->waker_ = nw;
        nw = WEFT_WAKER_NONE;
        t->seen_ = *w;
        t->wheel_ = tm;
        link_entry(tm, t, when);
        atomic_fetch_add_explicit(&tm->armed, 1, memory_order_relaxed);
        atomic_store_explicit(&t->state_, WEFT__TIMER_ARMED, memory_order_relaxed);
        fire = tick_to_ns(when);
        if (fire < atomic_load_explicit(&tm->next_fire, memory_order_relaxed)) {
            atomic_store_explicit(&tm->next_fire, fire, memory_order_relaxed);
            kick = true;
        }
    }
    UNLOCK(&tm->lock);
    weft_waker_drop(&old);
    weft_waker_drop(&nw);
    if (kick && tm->kick)
        tm->kick(tm->kick_arg, fire);
    return due;
}

int weft__timers_cancel(weft__timers_t *tm, weft_timer_t *t)
{
    weft_waker_t w = WEFT_WAKER_NONE;
    int removed = 0;
    LOCK(&tm->lock);
    if (atomic_load_explicit(&t->state_, memory_order_relaxed) == WEFT__TIMER_ARMED) {
        unlink_entry(tm, t);
        w = t->waker_;
        t->waker_ = WEFT_WAKER_NONE;
        atomic_fetch_sub_explicit(&tm->armed, 1, memory_order_relaxed);
        atomic_store_explicit(&t->state_, WEFT__TIMER_IDLE, memory_order_relaxed);
        removed = 1;
    }
    UNLOCK(&tm->lock);
    weft_waker_drop(&w);
    return removed;
}

size_t weft__timers_armed(weft__timers_t *tm)
{
    return atomic_load_explicit(&tm->armed, memory_order_relaxed);
}

int64_t weft__timers_next_fire(weft__timers_t *tm)
{
    return atomic_load_explicit(&tm->next_fire, memory_order_relaxed);
}

/*
 * source.c - registered fds: the slab of sources, readiness and its
 * wakers, and the public calls of weft/io.h (register, deregister, close,
 * ready, clear, forget, the readiness future and its coroutine form).
 *
 * Invariants (source.h has the layout):
 * - A source slot is free iff fd == -1; it is on the free list then.
 *   Register and deregister take the slab lock; readiness and wakers are
 *   lock-free.
 * - gen only grows, and is 64 bits wide so that a handle never matches a
 *   later registration of its slot (32 bits wrapped after 2^31 reuses of
 *   one slot, about 6 h at 100,000 connections a second: found by
 *   review). A handle is live iff its gen equals the slot's gen and
 *   the slot is not CLOSED. Deregister bumps gen *before* it wakes the
 *   waiters, so a woken waiter always sees its handle stale.
 * - The driver never dereferences anything but slab memory, which lives
 *   as long as the driver.
 * - byfd[fd] names the live source registered for fd, or 0 (under the
 *   slab lock; an entry the map could not grow for is simply missing).
 *   A registration that epoll accepts for a number byfd still names
 *   retires that source first (its file was closed underneath it).
 * - The driver wakes a direction only when an event turns its bit on
 *   (weft__source_event; source.h says why that loses nothing).
 * - A direction's slot holds at most one task's waker; other tasks wait
 *   on the source's queue, linked under the slab lock ("More than one
 *   waiter"). A queued waiter is unlinked before anything else may free
 *   it: by the driver (its direction's event), by the end of its
 *   registration, or by its own weft_io_forget.
 */
#include <stdlib.h>
#include <string.h>

#include <weft/coro.h>

#include "io/source.h"
#include "platform/platform.h"
#include "runtime/runtime_internal.h"

static weft__source_t *slot(weft__driver_t *d, uint32_t index)
{
    /* Acquire: pairs with the release store that published the chunk. */
    weft__source_t *c =
        atomic_load_explicit(&d->chunks[index / WEFT__SRC_CHUNK], memory_order_acquire);
    return c ? &c[index % WEFT__SRC_CHUNK] : NULL;
}

/* Under d->lock: a free slot, growing the slab if needed; NULL: -ENOMEM. */
static weft__source_t *slot_alloc(weft__driver_t *d)
{
    if (d->free_head == WEFT__SRC_NONE) {
        if (d->nchunks == WEFT__SRC_MAX_CHUNKS)
            return NULL;
        weft__source_t *c = aligned_alloc(64, sizeof(weft__source_t) * WEFT__SRC_CHUNK);
        if (!c)
            return NULL;
        memset(c, 0, sizeof(weft__source_t) * WEFT__SRC_CHUNK);
        uint32_t base = d->nchunks * WEFT__SRC_CHUNK;
        for (uint32_t i = 0; i < WEFT__SRC_CHUNK; i++) {
            weft__source_t *src = &c[i];
            atomic_init(&src->readiness, 0);
            atomic_init(&src->gen, 0);
            atomic_init(&src->fd, -1);
            src->index = base + i;
            src->next_free = i + 1 < WEFT__SRC_CHUNK ? base + i + 1 : d->free_head;
            src->drv = d;
            weft_atomic_waker_init(&src->rd);
            weft_atomic_waker_init(&src->wr);
            atomic_init(&src->nqueued, 0);
        }
        /* Release: pairs with the driver's acquire in slot(). */
        atomic_store_explicit(&d->chunks[d->nchunks], c, memory_order_release);
        d->nchunks++;
        d->free_head = base;
    }
    weft__source_t *src = slot(d, d->free_head);
    d->free_head = src->next_free;
    return src;
}

/*
 * A closed fd's number reused. A library that close()s a registered fd
 * without deregistering it leaves its source live, and the kernel soon
 * hands the number out again. epoll forgot the closed file, so the new
 * file's registration succeeds; the old source must then stop answering
 * for that number: its waiters are woken (-EBADF), and a late deregister
 * through its handle must not remove the new registration from epoll.
 * byfd finds it: register looks the number up after epoll accepted it.
 */

/* Fd numbers the map covers: 64 MiB of map at most (an fd limit raised
 * towards INT_MAX must not turn one high fd into gigabytes). */
#define BYFD_MAX (1u << 24)

/* Under d->lock: note src as fd's source; false if the map cannot grow or
 * fd is past BYFD_MAX (then no old source can be found for fd later, as
 * before the map). */
static bool byfd_note(weft__driver_t *d, int fd, const weft__source_t *src)
{
    if ((uint32_t)fd >= BYFD_MAX)
        return false;
    if ((uint32_t)fd >= d->nbyfd) {
        uint32_t n = d->nbyfd ? d->nbyfd : 64;
        while (n <= (uint32_t)fd)
            n *= 2;
        uint32_t *m = realloc(d->byfd, n * sizeof *m);
        if (!m)
            return false;
        memset(m + d->nbyfd, 0, (n - d->nbyfd) * sizeof *m);
        d->byfd = m;
        d->nbyfd = n;
    }
    d->byfd[fd] = src->index + 1;
    return true;
}

/* Under d->lock: end src's registration (gen g): its handles turn stale,
 * its waiters' wakers go to *rd and *wr (the caller wakes them after the
 * unlock), and the slot is free again. epoll is the caller's business. */
static void retire(weft__driver_t *d, weft__source_t *src, uint64_t g, weft_waker_t *rd,
                   weft_waker_t *wr)
{
    int fd = atomic_load_explicit(&src->fd, memory_order_relaxed);
    if ((uint32_t)fd < d->nbyfd && d->byfd[fd] == src->index + 1)
        d->byfd[fd] = 0;
    /* Release, as register's store of gen (live() and the driver's event
     * path acquire it); the bump itself is what turns old handles stale. */
    atomic_store_explicit(&src->gen, g + 1, memory_order_release);
    /* Release: orders the gen bump before the CLOSED bit, which a woken
     * waiter acquires in weft_io_ready and then finds its handle stale.
     * Nothing after this reads what the driver published: no acquire. */
    atomic_fetch_or_explicit(&src->readiness, WEFT__CLOSED, memory_order_release);
    atomic_store_explicit(&src->fd, -1, memory_order_relaxed);
    /* Take the waiters' wakers before the slot is free: a register that
     * reuses the slot right after the unlock drops whatever is left in
     * it, and those waiters would never hear of the close. */
    weft_atomic_waker_take(&src->rd, rd);
    weft_atomic_waker_take(&src->wr, wr);
    src->next_free = d->free_head;
    d->free_head = src->index;
    atomic_store_explicit(&d->nsources,
                          atomic_load_explicit(&d->nsources, memory_order_relaxed) - 1,
                          memory_order_relaxed);
}

/* The token carries gen's low 32 bits: an event is applied within a
 * round, long before 2^32 registrations of its slot. */
static uint64_t token_of(const weft__source_t *src, uint64_t gen)
{
    return (uint64_t)(uint32_t)gen << 32 | src->index;
}

/* The live source of a handle, or NULL. */
static weft__source_t *live(weft_io_t io)
{
    weft__source_t *src = io.src_;
    if (!src)
        return NULL;
    /* Acquire: pairs with register's release store of gen (the slot's
     * fields are set before it). */
    if (atomic_load_explicit(&src->gen, memory_order_acquire) != io.gen_)
        return NULL;
    return src;
}

static void drop_waker(weft_atomic_waker_t *aw)
{
    weft_waker_t w;
    weft_atomic_waker_take(aw, &w);
    weft_waker_drop(&w);
}

/*
 * More than one waiter. A direction's atomic waker holds one task's waker
 * (weft__atomic_waker_claim takes it if empty or already our task's). A
 * waiter that finds another task's waker there goes on the source's queue
 * instead: its weft_io_waiter_t (inside its future, which stays put while
 * it waits) is linked under d->lock with its own clone of the waker, the
 * directions it waits for and the registration (gen) it waits on. The
 * driver wakes and unlinks every queued waiter of a direction its event
 * turns on; the end of a registration wakes every waiter of it; a wait
 * that ends otherwise unlinks itself (weft_io_forget). Wakers are woken or
 * dropped after the unlock, Q_BATCH at a time: a wake or a drop may end a
 * task, whose futures' drops come back here for the lock.
 *
 * No lost wake-up: a waiter links (nqueued + 1), then reads readiness
 * again; the driver sets readiness, then reads nqueued. All four are
 * seq_cst, so at least one of them sees the other. A waiter already
 * linked keeps nqueued non-zero, and then the lock orders the rest.
 */
#define Q_BATCH 16u
#define Q_NOTED 0x10u /* in weft_io_waiter_t.dir_: the waiter may be queued */

/* Under d->lock. */
static void q_unlink(weft__source_t *src, weft_io_waiter_t *wt)
{
    if (wt->qprev_)
        wt->qprev_->qnext_ = wt->qnext_;
    else
        src->queue = wt->qnext_;
    if (wt->qnext_)
        wt->qnext_->qprev_ = wt->qprev_;
    wt->qprev_ = wt->qnext_ = NULL;
    wt->qdir_ = 0;
    /* Relaxed: a count seen too high only costs the driver a look. */
    atomic_fetch_sub_explicit(&src->nqueued, 1, memory_order_relaxed);
}

/* Queue wt for dirs of registration gen, waking w; *old gets a waker to
 * drop after the unlock. Nothing if gen is no longer live. */
static void q_link(weft__source_t *src, uint64_t gen, weft_io_waiter_t *wt, unsigned dirs,
                   const weft_waker_t *w, weft_waker_t *old)
{
    weft__driver_t *d = src->drv;
    *old = WEFT_WAKER_NONE;
    pthread_mutex_lock(&d->lock);
    /* gen changes only under d->lock: a registration ended by now has
     * woken (or is about to wake) only the waiters it could see. */
    if (atomic_load_explicit(&src->gen, memory_order_relaxed) == gen) {
        if (!wt->qdir_) {
            wt->qprev_ = NULL;
            wt->qnext_ = src->queue;
            if (src->queue)
                src->queue->qprev_ = wt;
            src->queue = wt;
            wt->qseq_ = ++src->qseq;
            /* seq_cst: the waiter's half of the handshake (above). */
            atomic_fetch_add_explicit(&src->nqueued, 1, memory_order_seq_cst);
        }
        wt->qdir_ |= dirs;
        wt->qgen_ = gen;
        if (!weft_waker_will_wake(&wt->qwaker_, w)) {
            *old = wt->qwaker_;
            weft_waker_clone(w, &wt->qwaker_);
        }
    }
    pthread_mutex_unlock(&d->lock);
}

/* Take dirs out of wt's queue entry, unlinking it once it waits for
 * nothing; its waker is then dropped (it is wt's own). */
static void q_forget(weft__source_t *src, weft_io_waiter_t *wt, unsigned dirs)
{
    weft__driver_t *d = src->drv;
    weft_waker_t w = WEFT_WAKER_NONE;
    pthread_mutex_lock(&d->lock);
    if (wt->qdir_ & dirs) {
        if (wt->qdir_ & ~dirs) {
            wt->qdir_ &= ~dirs;
        } else {
            w = wt->qwaker_;
            wt->qwaker_ = WEFT_WAKER_NONE;
            q_unlink(src, wt);
        }
    }
    pthread_mutex_unlock(&d->lock);
    weft_waker_drop(&w);
}

/*
 * Unlink the queued waiters that wait for one of dirs (and on registration
 * *gen, if gen) and wake them, or drop their wakers if !wake: every such
 * waiter linked before the first lock, and no other. A woken waiter that
 * queues again meanwhile has a newer stamp and is left for the next event;
 * it cannot use up a share meant for the older ones (found by review: a
 * budget counted in wakes let re-queuing readers starve an older writer
 * for good when the event set both directions).
 */
static void q_take(weft__source_t *src, unsigned dirs, const uint64_t *gen, bool wake)
{
    weft__driver_t *d = src->drv;
    bool more = true, first = true;
    uint64_t upto = 0;
    while (more) {
        weft_waker_t ws[Q_BATCH];
        unsigned n = 0;
        more = false;
        pthread_mutex_lock(&d->lock);
        if (first) {
            upto = src->qseq;
            first = false;
        }
        for (weft_io_waiter_t *wt = src->queue, *next; wt; wt = next) {
            next = wt->qnext_;
            if (!(wt->qdir_ & dirs) || (gen && wt->qgen_ != *gen) || wt->qseq_ > upto)
                continue;
            if (n == Q_BATCH) {
                more = true;
                break;
            }
            ws[n++] = wt->qwaker_;
            wt->qwaker_ = WEFT_WAKER_NONE;
            q_unlink(src, wt);
        }
        pthread_mutex_unlock(&d->lock);
        for (unsigned i = 0; i < n; i++) {
            if (wake)
                weft_waker_wake(&ws[i]);
            else
                weft_waker_drop(&ws[i]);
        }
    }
}

/*
 * After the unlock that ended one of src's registrations: whether any
 * waiter may be queued for it. Relaxed is enough: every waiter of that
 * registration linked (and counted) under the lock before our locked
 * section, which our lock acquisition ordered before this load; later
 * links are refused (their gen is stale). Saves every close a second
 * lock round when nobody queued.
 */
static bool queued(weft__source_t *src)
{
    return atomic_load_explicit(&src->nqueued, memory_order_relaxed) != 0;
}

int weft_io_register(weft_runtime_t *rt, int fd, weft_io_t *out)
{
    if (!rt || !out || fd < 0)
        return -EINVAL;
    *out = (weft_io_t){NULL, 0};
    weft__driver_t *d = weft__runtime_driver(rt);
    pthread_mutex_lock(&d->lock);
    if (d->closed) {
        pthread_mutex_unlock(&d->lock);
        return -ESHUTDOWN;
    }
    weft__source_t *src = slot_alloc(d);
    if (!src) {
        pthread_mutex_unlock(&d->lock);
        return -ENOMEM;
    }
    /* Stale wakers of an earlier registration (a waiter that registered
     * after its handle went stale) are dropped, not inherited; after the
     * unlock, as a drop may end a task whose futures come back here. */
    weft_waker_t stale[2];
    weft_atomic_waker_take(&src->rd, &stale[0]);
    weft_atomic_waker_take(&src->wr, &stale[1]);
    /* The tick keeps running across registrations, so a clear through a
     * stale handle (racing past its generation check) can only match a
     * tick at which this registration has no bits yet. */
    uint32_t tick = atomic_load_explicit(&src->readiness, memory_order_relaxed) &
                    (WEFT__SRC_TICK_MASK << WEFT__SRC_TICK_SHIFT);
    atomic_store_explicit(&src->readiness, tick, memory_order_relaxed);
    atomic_store_explicit(&src->fd, fd, memory_order_relaxed);
    uint64_t gen = atomic_load_explicit(&src->gen, memory_order_relaxed) + 1;
    /* Release: publishes fd and readiness to whoever acquires this gen
     * (live(), the driver's event check). */
    atomic_store_explicit(&src->gen, gen, memory_order_release);
    int rc = d->be_ops->add(d->be, fd, token_of(src, gen));
    if (rc != 0) {
        /* Release, as above: the aborted gen is dead before the slot is
         * free again (nobody was given a handle to it). */
        atomic_store_explicit(&src->gen, gen + 1, memory_order_release);
        atomic_store_explicit(&src->fd, -1, memory_order_relaxed);
        src->next_free = d->free_head;
        d->free_head = src->index;
        pthread_mutex_unlock(&d->lock);
        weft_waker_drop(&stale[0]);
        weft_waker_drop(&stale[1]);
        return rc;
    }
    /* Written under d->lock; read racily by the workers' non-blocking
     * polls, which only skip the poller while it is zero. */
    atomic_store_explicit(&d->nsources,
                          atomic_load_explicit(&d->nsources, memory_order_relaxed) + 1,
                          memory_order_relaxed);
    /* epoll took fd, so a source still noted for this number watched a
     * file that was closed underneath it (see "A closed fd's number
     * reused"): retire it, without touching epoll. */
    weft_waker_t rd = WEFT_WAKER_NONE, wr = WEFT_WAKER_NONE;
    uint32_t prev = (uint32_t)fd < d->nbyfd ? d->byfd[fd] : 0;
    weft__source_t *old = prev ? slot(d, prev - 1) : NULL;
    uint64_t old_gen = old ? atomic_load_explicit(&old->gen, memory_order_relaxed) : 0;
    if (old)
        retire(d, old, old_gen, &rd, &wr);
    (void)byfd_note(d, fd, src);
    pthread_mutex_unlock(&d->lock);
    weft_waker_drop(&stale[0]);
    weft_waker_drop(&stale[1]);
    weft_waker_wake(&rd);
    weft_waker_wake(&wr);
    if (old && queued(old))
        q_take(old, WEFT__RD | WEFT__WR, &old_gen, true);
    *out = (weft_io_t){src, gen};
    return 0;
}

/* weft_io_deregister; *fd_out gets the fd it watched. */
static int deregister(weft_io_t io, int *fd_out)
{
    weft__source_t *src = io.src_;
    if (!src)
        return -EBADF;
    weft__driver_t *d = src->drv;
    pthread_mutex_lock(&d->lock);
    if (atomic_load_explicit(&src->gen, memory_order_relaxed) != io.gen_) {
        pthread_mutex_unlock(&d->lock);
        return -EBADF;
    }
    int fd = atomic_load_explicit(&src->fd, memory_order_relaxed);
    *fd_out = fd;
    /* The fd may already be closed by a careless caller: nothing to undo
     * (and if its number was registered again on this runtime meanwhile,
     * that registration retired this source, so we are not here). */
    (void)d->be_ops->del(d->be, fd);
    weft_waker_t rd, wr;
    retire(d, src, io.gen_, &rd, &wr);
    pthread_mutex_unlock(&d->lock);
    /* After the unlock: the wakes may run tasks inline on this worker. */
    weft_waker_wake(&rd);
    weft_waker_wake(&wr);
    if (queued(src))
        q_take(src, WEFT__RD | WEFT__WR, &io.gen_, true);
    return 0;
}

int weft_io_deregister(weft_io_t io)
{
    int fd;
    return deregister(io, &fd);
}

int weft_io_close(weft_io_t io)
{
    int fd;
    int rc = deregister(io, &fd);
    /* Only after the deregistration: the fd number cannot be reused while
     * epoll still watches it, and the waiters have been told. */
    return rc != 0 ? rc : weft__fd_close(fd);
}

int weft_io_fd(weft_io_t io)
{
    weft__source_t *src = live(io);
    if (!src)
        return -EBADF;
    int fd = atomic_load_explicit(&src->fd, memory_order_relaxed);
    /* retire stores fd = -1 after the gen bump; a weaker-ordered machine
     * may show us that store with the old gen (found by review). */
    return fd >= 0 && live(io) ? fd : -EBADF;
}

static int snapshot_of(uint32_t r, unsigned interest)
{
    if (!(r & interest))
        return 0;
    return (int)((r & ~(uint32_t)0xff) | (r & (interest | WEFT__HUP | WEFT__PRI)));
}

/* weft_io_ready for a non-zero interest of RD | WR bits only; static so
 * that weft_io_poll_wait's two checks compile inline. */
static inline int ready_at(weft_io_t io, unsigned interest, memory_order mo)
{
    weft__source_t *src = live(io);
    if (!src)
        return -EBADF;
    /* Acquire (at least): pairs with the driver's release RMW that set the
     * bits, so the caller's next syscall sees what the event announced.
     * seq_cst after queueing: the handshake of "More than one waiter". */
    uint32_t r = atomic_load_explicit(&src->readiness, mo);
    if ((r & WEFT__CLOSED) || !live(io))
        return -EBADF;
    return snapshot_of(r, interest);
}

static inline int ready_of(weft_io_t io, unsigned interest)
{
    return ready_at(io, interest, memory_order_acquire);
}

int weft_io_ready(weft_io_t io, unsigned interest)
{
    interest &= WEFT__RD | WEFT__WR;
    if (!interest)
        return -EINVAL;
    return ready_of(io, interest);
}

void weft_io_clear(weft_io_t io, int snapshot)
{
    weft__source_t *src = live(io);
    if (!src || snapshot <= 0)
        return;
    uint32_t snap = (uint32_t)snapshot;
    uint32_t r = atomic_load_explicit(&src->readiness, memory_order_relaxed);
    for (;;) {
        if ((r >> WEFT__SRC_TICK_SHIFT) != (snap >> WEFT__SRC_TICK_SHIFT))
            return; /* a newer event arrived: keep it */
        uint32_t n = r & ~(snap & (WEFT__RD | WEFT__WR));
        if (n == r)
            return;
        /* Relaxed: a clear publishes nothing; the tick check is in the
         * CAS itself. */
        if (atomic_compare_exchange_weak_explicit(&src->readiness, &r, n, memory_order_relaxed,
                                                  memory_order_relaxed))
            return;
    }
}

/*
 * Register w, waking (not dropping) a different waker it displaces: that
 * is a second waiter on the same direction, or, through a handle that went
 * stale a moment ago, the waiter of the slot's next registration. A
 * spurious wake makes it poll and register again; a dropped one would
 * leave it asleep for good.
 */
static void register_waker(weft_atomic_waker_t *aw, const weft_waker_t *w)
{
    weft_waker_t old;
    weft__atomic_waker_swap(aw, w, &old);
    if (old.vtable && !weft_waker_will_wake(&old, w))
        weft_waker_wake(&old);
    else
        weft_waker_drop(&old);
}

/*
 * Take a registration back out of aw: whatever is there is woken, never
 * dropped, even a waker of our own task. will_wake tells tasks apart, not
 * futures: another future of the same task (a second wait on this fd and
 * direction inside one combinator) may be relying on that very clone, and
 * dropping it would leave that future asleep for good. Our own task pays
 * one spurious poll for it, on a path (a wait that ended without its
 * event) that is rare.
 */
static void unregister_waker(weft_atomic_waker_t *aw)
{
    weft_waker_t cur;
    weft_atomic_waker_take(aw, &cur);
    weft_waker_wake(&cur);
}

void weft_io_waiter_saw(weft_io_waiter_t *wt, int snapshot)
{
    if (!wt)
        return;
    /* A queued waiter stays noted whatever the result: only its own
     * weft_io_forget may be sure it is unlinked. */
    if (snapshot > 0)
        wt->dir_ &= ~((unsigned)snapshot & (WEFT__RD | WEFT__WR));
    else if (snapshot == -EBADF)
        wt->dir_ &= Q_NOTED; /* deregistration took (and woke) the slots */
}

/* weft_io_poll_wait once the fd was not ready: register, re-check. Out
 * of line, so that the ready path (most calls) saves no registers. */
__attribute__((noinline)) static int poll_wait_register(weft_io_t io, unsigned interest,
                                                        weft_cx_t *cx, weft_io_waiter_t *wt)
{
    weft__source_t *src = io.src_;
    const weft_waker_t *w = weft_cx_waker(cx);
    /* Register first, then re-check (the atomic waker's contract). A
     * direction whose slot another task holds queues us instead. */
    unsigned q = 0;
    if (!wt) { /* weft_io_poll_ready: no queue entry to link; displace */
        if (interest & WEFT__RD)
            register_waker(&src->rd, w);
        if (interest & WEFT__WR)
            register_waker(&src->wr, w);
    } else {
        if ((interest & WEFT__RD) && weft__atomic_waker_claim(&src->rd, w) == -EBUSY)
            q |= WEFT__RD;
        if ((interest & WEFT__WR) && weft__atomic_waker_claim(&src->wr, w) == -EBUSY)
            q |= WEFT__WR;
        if (q) {
            weft_waker_t old;
            q_link(src, io.gen_, wt, q, w, &old);
            weft_waker_drop(&old);
            wt->dir_ |= Q_NOTED;
        }
    }
    int r = ready_at(io, interest, q ? memory_order_seq_cst : memory_order_acquire);
    if (r != 0) {
        /* Ready after all (an event raced the registration; the caller
         * will not wait, so nothing of it may stay behind), or the handle
         * went stale and the slot may already serve a new registration.
         * Take back what we put there, waking anything else we find so
         * that nobody's wake-up is lost. */
        if (interest & ~q & WEFT__RD)
            unregister_waker(&src->rd);
        if (interest & ~q & WEFT__WR)
            unregister_waker(&src->wr);
        if (wt) {
            /* Our queue entry for these directions goes; one kept for
             * another direction (an earlier poll with another interest)
             * stays, as that direction's slot registration does. A stale
             * handle ends it all (found by review: dropping the whole
             * entry lost such a waiter's wake-up). */
            if (wt->dir_ & Q_NOTED)
                q_forget(src, wt, r < 0 ? (WEFT__RD | WEFT__WR) : interest);
            /* Registrations of other directions, from earlier polls with
             * another interest, stay noted (found by review: overwriting
             * the note left them in their slots after weft_io_forget). */
            wt->dir_ &= r < 0 ? ~(interest | Q_NOTED) : ~interest;
        }
        return r;
    }
    /* Added to, not overwritten (see above). A direction that queued us
     * is held by another task's waker: no earlier registration of ours
     * is left in that slot. */
    if (wt)
        wt->dir_ = (wt->dir_ & ~q) | (interest & ~q);
    return 0;
}

int weft_io_poll_wait(weft_io_t io, unsigned interest, weft_cx_t *cx, weft_io_waiter_t *wt)
{
    interest &= WEFT__RD | WEFT__WR;
    if (!cx || !interest)
        return -EINVAL;
    int r = ready_of(io, interest);
    if (r != 0) {
        weft_io_waiter_saw(wt, r);
        return r;
    }
    return poll_wait_register(io, interest, cx, wt);
}

int weft_io_poll_ready(weft_io_t io, unsigned interest, weft_cx_t *cx)
{
    return weft_io_poll_wait(io, interest, cx, NULL);
}

void weft_io_forget(weft_io_t io, weft_io_waiter_t *wt)
{
    if (!wt || !wt->dir_)
        return;
    /* A stale handle has nothing of ours left in the slots: deregistration
     * took every waker under the slab lock, and a registration that raced
     * it took itself back in weft_io_poll_wait. What the slots hold now
     * belongs to their next registration (perhaps our own task's, through
     * another handle): leave them alone. A handle that goes stale right
     * after this check costs at most a spurious wake of whatever we then
     * take. The queue is another matter: the end of the registration may
     * not have reached our entry yet, so a queued waiter always looks
     * (under the lock; the slab outlives every handle). */
    weft__source_t *src = live(io);
    if (src) {
        if (wt->dir_ & WEFT__RD)
            unregister_waker(&src->rd);
        if (wt->dir_ & WEFT__WR)
            unregister_waker(&src->wr);
    }
    if ((wt->dir_ & Q_NOTED) && io.src_)
        q_forget(io.src_, wt, WEFT__RD | WEFT__WR);
    wt->dir_ = 0;
}

void weft__source_event(weft__driver_t *d, uint64_t token, uint32_t ready)
{
    uint32_t index = (uint32_t)token, gen = (uint32_t)(token >> 32);
    if (index / WEFT__SRC_CHUNK >= WEFT__SRC_MAX_CHUNKS)
        return;
    weft__source_t *src = slot(d, index);
    /* Acquire: pairs with register's release of gen. A stale token (the fd
     * was deregistered, perhaps the slot reused) is dropped. A deregister
     * racing past this check can at worst leave a spurious readiness bit
     * on the next registration, which the API allows. */
    if (!src || (uint32_t)atomic_load_explicit(&src->gen, memory_order_acquire) != gen)
        return;
    uint32_t r = atomic_load_explicit(&src->readiness, memory_order_relaxed);
    uint32_t n;
    do {
        uint32_t tick = ((r >> WEFT__SRC_TICK_SHIFT) + 1) & WEFT__SRC_TICK_MASK;
        n = (tick << WEFT__SRC_TICK_SHIFT) | (r & 0xff) | ready;
        /* Release: pairs with the waiter's acquire load in weft_io_ready;
         * the readiness is published before the wake below. seq_cst: the
         * driver's half of the queue's handshake ("More than one waiter"),
         * with the load of nqueued below. */
    } while (!atomic_compare_exchange_weak_explicit(&src->readiness, &r, n, memory_order_seq_cst,
                                                    memory_order_relaxed));
    /* Only a direction this event turned on can have a sleeper: a waiter
     * sleeps only after it registered and then read its bit clear, and a
     * bit clear at that read can be set again only by an event that sees
     * it clear (r is the value the CAS replaced). An edge that merely
     * repeats a set bit (every EPOLLIN edge reports EPOLLOUT too) skips
     * the waker's two atomic operations. */
    uint32_t rise = ready & ~r & (WEFT__RD | WEFT__WR);
    if (rise & WEFT__RD)
        weft_atomic_waker_wake(&src->rd);
    if (rise & WEFT__WR)
        weft_atomic_waker_wake(&src->wr);
    /* seq_cst: pairs with q_link's increment (the handshake). */
    if (rise && atomic_load_explicit(&src->nqueued, memory_order_seq_cst) != 0)
        q_take(src, rise, NULL, true);
}

void weft__sources_shutdown(weft__driver_t *d)
{
    pthread_mutex_lock(&d->lock);
    d->closed = true;
    uint32_t n = d->nchunks;
    pthread_mutex_unlock(&d->lock);
    for (uint32_t i = 0; i < n * WEFT__SRC_CHUNK; i++) {
        weft__source_t *src = slot(d, i);
        /* Registered sources stay registered (their owners deregister
         * them); only the task references are given up. */
        atomic_fetch_or_explicit(&src->readiness, WEFT__CLOSED, memory_order_relaxed);
        drop_waker(&src->rd);
        drop_waker(&src->wr);
        if (atomic_load_explicit(&src->nqueued, memory_order_relaxed) != 0)
            q_take(src, WEFT__RD | WEFT__WR, NULL, false);
    }
}

void weft__sources_free(weft__driver_t *d)
{
    free(d->byfd);
    for (uint32_t i = 0; i < d->nchunks; i++)
        free(atomic_load_explicit(&d->chunks[i], memory_order_relaxed));
    free((void *)d->chunks);
}

/* ---- the readiness future ------------------------------------------------------ */

int weft_io_wait_init(weft_io_wait_t *w, weft_io_t io, unsigned interest, int64_t deadline)
{
    if (!w || !(interest & (WEFT__RD | WEFT__WR)))
        return -EINVAL;
    w->io = io;
    w->interest = interest & (WEFT__RD | WEFT__WR);
    w->deadline = deadline;
    weft_timer_init(&w->timer);
    w->waiter = (weft_io_waiter_t)WEFT_IO_WAITER_INIT;
    return 0;
}

static void io_wait_drop(void *state)
{
    weft_io_wait_t *w = state;
    weft_timer_cancel(&w->timer);
    weft_io_forget(w->io, &w->waiter);
}

static weft_poll_t io_wait_poll(void *state, weft_cx_t *cx, int64_t *out)
{
    weft_io_wait_t *w = state;
    int r = weft_io_poll_wait(w->io, w->interest, cx, &w->waiter);
    if (r == 0 && w->deadline != WEFT_FOREVER) {
        int t = weft_timer_poll(&w->timer, w->deadline, cx);
        if (t == WEFT_PENDING)
            return WEFT_PENDING;
        r = t == WEFT_READY ? -ETIMEDOUT : t;
    }
    if (r == 0)
        return WEFT_PENDING;
    /* Finished: a deadline leaves our waker registered (and, with both
     * directions asked for, so does readiness of one of them). */
    io_wait_drop(w);
    *out = r;
    return WEFT_READY;
}

const weft_future_vtable_t weft_io_wait_vtable = {io_wait_poll, io_wait_drop, "io_wait"};

int weft_io_wait_ready(weft_io_t io, unsigned interest, int64_t deadline)
{
    weft_io_wait_t w;
    int rc = weft_io_wait_init(&w, io, interest, deadline);
    if (rc != 0)
        return rc;
    int64_t out = 0;
    rc = weft_await(&weft_io_wait_vtable, &w, &out);
    return rc != 0 ? rc : (int)out;
}

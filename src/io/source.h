/*
 * source.h - I/O sources (one per registered fd) and the driver state they
 * share with driver.c. Internal to src/io.
 *
 * A source lives in the driver's slab: chunks of WEFT__SRC_CHUNK sources
 * that are allocated on demand and freed only with the driver, so a stale
 * pointer or a stale epoll token always points at valid memory. Reuse is
 * made safe by the generation: every registration gets a new `gen`, the
 * epoll token is (gen << 32 | index), and handles carry the gen they were
 * given; an event or a call with an older gen is ignored / answered
 * -EBADF.
 *
 * readiness (one atomic word, driver sets, tasks clear):
 *   bits 0-3   WEFT__RD, WEFT__WR, WEFT__CLOSED, WEFT__HUP (sticky: a
 *              clear never removes it, so a short read can be taken as
 *              "drained" without losing an end of stream announced by the
 *              same event)
 *   bits 8-30  tick: +1 (mod 2^23) on every event the driver applies
 *   bit 31     always 0, so that a snapshot is a positive int
 * A clear removes direction bits only if the tick is still the one of the
 * snapshot it was given, so readiness that arrived after an operation
 * found the fd drained is never lost (unless exactly a multiple of 2^23
 * events arrived between the snapshot and its clear: the tick would look
 * unchanged).
 *
 * Wakers: one atomic waker per direction; the driver wakes them after
 * setting readiness (producer: condition first, then wake); a waiter
 * registers, then re-reads readiness (consumer: register first), and
 * sleeps only if its bits were clear at that re-read. So the driver wakes
 * a direction only when its event turns that bit on: a bit that was
 * already set has no sleeper (each EPOLLIN edge also reports EPOLLOUT,
 * and this skips that waker's atomics).
 *
 * A direction's slot holds one task's waker; waiters of other tasks go on
 * the source's queue (source.c, "More than one waiter"), which the driver
 * looks at only while nqueued is non-zero.
 */
#ifndef WEFT_IO_SOURCE_H
#define WEFT_IO_SOURCE_H

#include <pthread.h>
#include <stdalign.h>
#include <stdatomic.h>

#include <weft/io.h>

#include "io/backend.h"
#include "io/driver.h"

#define WEFT__SRC_TICK_SHIFT 8
#define WEFT__SRC_TICK_MASK 0x7fffffu /* 23 bits: bits 8-30 */
#define WEFT__SRC_CHUNK 256u
#define WEFT__SRC_MAX_CHUNKS 8192u /* 2^21 sources */
#define WEFT__SRC_NONE UINT32_MAX

typedef struct weft__source {
    /* What an event touches first (the wakers spill into a second line). */
    alignas(64) _Atomic uint32_t readiness;
    _Atomic uint64_t gen; /* the live registration's gen; bumped on deregister */
    _Atomic int fd;       /* -1 when free */
    uint32_t index;
    /* Waiters on the queue (source.c, "More than one waiter"): changed
     * under the slab lock, read by the driver without it. */
    _Atomic uint32_t nqueued;
    struct weft__driver *drv;
    weft_atomic_waker_t rd, wr;
    /* Under the slab lock. */
    weft_io_waiter_t *queue; /* the queue's first waiter (the newest) */
    uint64_t qseq;           /* waiters linked so far: each link's stamp */
    uint32_t next_free;
} weft__source_t;

struct weft__driver {
    weft__sched_t *s;
    const weft__backend_ops_t *be_ops;
    void *be;
    weft__timers_t *timers;
    bool own_thread; /* a thread of its own polls; else parked workers do */
    weft__thread_t thread;
    bool started;
    char name[16];
    /* The poller: held by one thread at a time (the driver thread, or a
     * worker); what follows it belongs to the holder. */
    alignas(64) _Atomic bool poll_lock;
    weft__batch_t batch;
    int64_t next; /* the timers' next deadline, from the last process */
    /* Kick side (any thread). */
    alignas(64) _Atomic int64_t sleep_until; /* INT64_MAX while nobody blocks */
    _Atomic bool notified;                   /* a wake is pending in the backend */
    _Atomic bool stop;
    _Atomic uint32_t nsources; /* registered sources (written under lock) */
    /* Slab (any thread, under lock; chunks only grow). */
    alignas(64) pthread_mutex_t lock;
    weft__source_t *_Atomic *chunks; /* WEFT__SRC_MAX_CHUNKS slots */
    uint32_t nchunks;
    uint32_t free_head;
    /* fd -> 1 + index of the source registered for it, 0: none; grown on
     * demand (source.c, "A closed fd's number reused"). */
    uint32_t *byfd;
    uint32_t nbyfd;
    bool closed; /* no registration after stop */
    /* Counters: rounds, events, wakeups written by the poller's holder
     * only; kicks by any thread (fetch_add). */
    alignas(64) _Atomic uint64_t rounds, events, wakeups, kicks;
};

/* The poller's holder: apply an event's readiness and wake the waiters. */
void weft__source_event(weft__driver_t *d, uint64_t token, uint32_t ready);
/* After the thread stopped: mark every live source closed, drop wakers. */
void weft__sources_shutdown(weft__driver_t *d);
void weft__sources_free(weft__driver_t *d);

#endif /* WEFT_IO_SOURCE_H */

/*
 * stack.c - coroutine stacks: mapping, the per-worker pools, and the
 * overflow report.
 *
 * A stack is a guard page at the low end, the usable stack, and a
 * weft__stack_t header in its highest bytes (the stack grows down, away
 * from it). The header's page is touched by every coroutine anyway, which
 * is why the switch state lives there (coro.h). Stacks of the pools' size
 * are mapped WEFT__STACK_BATCH at a time (pool_fresh); each is unmapped on
 * its own.
 *
 * Pools (one per worker, owner-only): stacks of the runtime's default size
 * come back to the pool of the worker that finishes with them, as they are
 * (up to WEFT__STACK_POOL_MAX). Beyond that they collect on the `over`
 * list and have their pages given back WEFT__STACK_MAP_MAX at a time (one
 * process_madvise, one TLB flush) and go cold, still mapped: unmapping
 * them one by one as they came back cost a munmap and a TLB shootdown to
 * every other worker each, 5.6 s of CPU and timers 0.5 s late in W6
 * --coro (100,000 coroutines), against 1.9 s and 175 us deferred. When
 * the worker has stayed idle a while it trims its pool
 * (weft__stack_pool_trim): the WEFT__STACK_HOT most recently used stay as
 * they are (their touched pages stay resident, so reuse faults nothing
 * in); `cold_max` stay with their pages given back (MADV_DONTNEED); the
 * rest are unmapped, sorted by address so that neighbours (a batch's
 * stacks, and batches the kernel placed side by side) go in one munmap.
 * Trimming when idle keeps the system calls (and the TLB shootdowns they
 * cost every other thread of the process) off the path of a burst of
 * coroutines ending. A get takes a hot stack, then an `over` one, then a
 * cold one, then a fresh one. Stacks of other sizes are not pooled.
 *
 * Valgrind: each mapping is registered as a stack (VALGRIND_STACK_REGISTER)
 * while it exists, when <valgrind/valgrind.h> is available at build time.
 */
#include <stdio.h>
#include <stdlib.h>

#include "coro/coro.h"
#include "platform/platform.h"

#if defined(__has_include)
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#define WEFT__VALGRIND 1
#endif
#endif

#ifdef WEFT__ASAN
#include <sanitizer/asan_interface.h>
#endif

/*
 * Colouring: the first frame of stack k starts (k % STACK_COLOURS) cache
 * lines below the header. Without it every suspended coroutine keeps its
 * hot frames (the saved registers, the frames of the await) at the same
 * offset within a page, so they all compete for the few L1/L2 sets that
 * offset indexes: resuming 1,000 coroutines in turn then misses the
 * caches on every switch. The mapping is that many lines larger, so the
 * usable size is never less than asked.
 */
#define STACK_COLOURS 32

static _Atomic int64_t mapped;
static _Atomic uint32_t made; /* stacks ever mapped: picks each one's colour */
static _Thread_local weft__stack_pool_t *thread_pool;

int64_t weft__stack_mapped(void)
{
    return atomic_load_explicit(&mapped, memory_order_relaxed);
}

/* The calling thread's pool (NULL off the workers). noinline: no TLS
 * address is kept across a coroutine switch. */
__attribute__((noinline)) static weft__stack_pool_t *pool_current(void)
{
    return thread_pool;
}

__attribute__((noinline)) static void set_pool(weft__stack_pool_t *p)
{
    thread_pool = p;
}

/* The length of the mapping of a stack of `size` usable bytes. */
static size_t map_len(size_t size)
{
    size_t page = weft__page_size();
    return WEFT__ALIGN_UP(size + STACK_COLOURS * 64, page) + page;
}

/* Write the header of the stack mapped at map (len bytes). */
static weft__stack_t *stack_init(char *map, size_t len, size_t size, uint32_t colour)
{
    weft__stack_t *st =
        (weft__stack_t *)((uintptr_t)(map + len - sizeof(weft__stack_t)) & ~(uintptr_t)63);
    st->next = NULL;
    st->map = map;
    st->map_len = len;
    st->lo = map + weft__page_size();
    st->top = (char *)st - (colour % STACK_COLOURS) * 64;
    st->size = size;
    st->vg_id = 0;
#ifdef WEFT__VALGRIND
    st->vg_id = VALGRIND_STACK_REGISTER(st->lo, (char *)st);
#endif
    atomic_fetch_add_explicit(&mapped, 1, memory_order_relaxed);
    return st;
}

static weft__stack_t *stack_new(size_t size)
{
    size_t len = map_len(size);
    char *map = weft__stack_map(len, weft__page_size(), 1);
    return map ? stack_init(map, len, size,
                            atomic_fetch_add_explicit(&made, 1, memory_order_relaxed))
               : NULL;
}

/*
 * A stack never used before, for pool p: the next of its current batch,
 * mapping a batch of WEFT__STACK_BATCH when that is used up. A batch is
 * one mapping, its guards and top pages set up by a couple of system
 * calls in all (platform/stack.c) where one stack at a time cost three:
 * ~14 us a stack on our VMs, a third of W3's time with 1,000 coroutines.
 * Each stack is still unmapped on its own. If the batch cannot be mapped,
 * one stack is.
 */
static weft__stack_t *pool_fresh(weft__stack_pool_t *p)
{
    size_t len = map_len(p->size);
    if (!p->nfresh) {
        char *m = weft__stack_map(len, weft__page_size(), WEFT__STACK_BATCH);
        if (!m)
            return stack_new(p->size);
        p->fresh = m;
        p->nfresh = WEFT__STACK_BATCH;
    }
    char *map = p->fresh;
    p->fresh += len;
    p->nfresh--;
    return stack_init(map, len, p->size, p->made++);
}

/* Forget st as a stack (its mapping is about to go). */
static void stack_forget(weft__stack_t *st)
{
#ifdef WEFT__VALGRIND
    VALGRIND_STACK_DEREGISTER(st->vg_id);
#endif
    (void)st;
    atomic_fetch_sub_explicit(&mapped, 1, memory_order_relaxed);
}

static void stack_free(weft__stack_t *st)
{
    stack_forget(st);
    weft__stack_unmap(st->map, st->map_len);
}

/* Everything of st below its header's page: what a cold stack gives back. */
static weft__range_t stack_body(weft__stack_t *st)
{
    char *keep = (char *)((uintptr_t)st & ~(uintptr_t)(weft__page_size() - 1));
    return (weft__range_t){st->lo, (size_t)(keep - st->lo)};
}

/* Give the pages of the list's (at most WEFT__STACK_MAP_MAX) stacks back in
 * one call and move them to the cold list. */
static void go_cold(weft__stack_pool_t *p, weft__stack_t *list)
{
    weft__range_t r[WEFT__STACK_MAP_MAX] = {{0}};
    unsigned n = 0;
    for (weft__stack_t *st = list; st && n < WEFT__STACK_MAP_MAX; st = st->next)
        r[n++] = stack_body(st);
    weft__stack_discard_many(r, n);
    for (weft__stack_t *st = list, *nx; st; st = nx) {
        nx = st->next;
        st->next = p->cold;
        p->cold = st;
        p->ncold++;
    }
}

static int by_address(const void *a, const void *b)
{
    uintptr_t x = (uintptr_t)(*(weft__stack_t *const *)a)->map;
    uintptr_t y = (uintptr_t)(*(weft__stack_t *const *)b)->map;
    return x < y ? -1 : x > y;
}

/* Unmap the n stacks of list, neighbours in one call; one by one if no
 * memory is left to sort them. */
static void unmap_all(weft__stack_t *list, size_t n)
{
    weft__stack_t **v = n > 1 ? malloc(n * sizeof *v) : NULL;
    if (!v) {
        for (weft__stack_t *st = list, *nx; st; st = nx) {
            nx = st->next;
            stack_free(st);
        }
        return;
    }
    size_t k = 0;
    for (weft__stack_t *st = list; st && k < n; st = st->next)
        v[k++] = st;
    qsort(v, k, sizeof *v, by_address);
    char *run = NULL;
    size_t run_len = 0;
    for (size_t i = 0; i < k; i++) {
        char *map = v[i]->map;
        size_t len = v[i]->map_len;
        stack_forget(v[i]); /* v[i] lives in the mapping: read it first */
        if (run && run + run_len == map) {
            run_len += len;
            continue;
        }
        weft__stack_unmap(run, run_len);
        run = map;
        run_len = len;
    }
    weft__stack_unmap(run, run_len);
    free(v);
}

void weft__stack_pool_init(weft__stack_pool_t *p, size_t size, unsigned cold_max)
{
    p->hot = p->cold = NULL;
    p->nhot = p->ncold = 0;
    p->cold_max = cold_max;
    p->over = NULL;
    p->nover = 0;
    p->size = size;
    p->fresh = NULL;
    p->nfresh = 0;
    p->made = 0;
}

/* Put list in front of *head. */
static void prepend(weft__stack_t **head, weft__stack_t *list)
{
    if (!list)
        return;
    weft__stack_t *tail = list;
    while (tail->next)
        tail = tail->next;
    tail->next = *head;
    *head = list;
}

/* Detach and return the first n stacks of *list (fewer if it is shorter). */
static weft__stack_t *cut(weft__stack_t **list, unsigned n)
{
    if (n == 0)
        return NULL;
    weft__stack_t *head = *list, **link = list;
    for (unsigned i = 0; i < n && *link; i++)
        link = &(*link)->next;
    weft__stack_t *rest = *link;
    *link = NULL;
    *list = rest;
    return rest == head ? NULL : head;
}

static size_t count(const weft__stack_t *st)
{
    size_t n = 0;
    for (; st; st = st->next)
        n++;
    return n;
}

void weft__stack_pool_destroy(weft__stack_pool_t *p)
{
    weft__stack_t *all = p->cold;
    prepend(&all, p->hot);
    prepend(&all, p->over);
    unmap_all(all, (size_t)p->ncold + p->nhot + p->nover);
    p->hot = p->cold = p->over = NULL;
    p->nhot = p->ncold = p->nover = 0;
    if (p->nfresh)
        weft__stack_unmap(p->fresh, p->nfresh * map_len(p->size));
    p->fresh = NULL;
    p->nfresh = 0;
}

weft__stack_t *weft__stack_get(size_t size)
{
    weft__stack_pool_t *p = pool_current();
    if (p && p->size == size) {
        weft__stack_t *st;
        if ((st = p->hot)) {
            p->hot = st->next;
            p->nhot--;
            return st;
        }
        if ((st = p->over)) {
            p->over = st->next;
            p->nover--;
            return st;
        }
        if ((st = p->cold)) {
            p->cold = st->next;
            p->ncold--;
            return st;
        }
        return pool_fresh(p);
    }
    return stack_new(size);
}

void weft__stack_put(weft__stack_t *st)
{
#ifdef WEFT__ASAN
    /* Frames that never returned (the entry's, an abandoned coroutine's)
     * leave poisoned redzones behind; the next user must start clean. */
    ASAN_UNPOISON_MEMORY_REGION(st->lo, (size_t)((char *)st - st->lo));
#endif
    weft__stack_pool_t *p = pool_current();
    if (p && p->size == st->size && p->nhot < WEFT__STACK_POOL_MAX) {
        /* Kept as it is; trimmed when the worker next runs out of work. */
        st->next = p->hot;
        p->hot = st;
        p->nhot++;
        return;
    }
    if (p && p->size == st->size) {
        st->next = p->over;
        p->over = st;
        if (++p->nover == WEFT__STACK_MAP_MAX) {
            go_cold(p, p->over);
            p->over = NULL;
            p->nover = 0;
        }
        return;
    }
    stack_free(st);
}

void weft__stack_pool_trim(weft__stack_pool_t *p)
{
    /* Beyond the WEFT__STACK_HOT most recent hot stacks everything goes:
     * the rest of the hot list and the over list turn cold while there is
     * room (pages given back WEFT__STACK_MAP_MAX at a time), and what is
     * left, with cold stacks beyond cold_max (overflow that went cold
     * while the worker was busy; the newest are kept), is unmapped. */
    weft__stack_t *keep = cut(&p->hot, WEFT__STACK_HOT);
    weft__stack_t *spare = p->hot;
    p->hot = keep;
    p->nhot = p->nhot < WEFT__STACK_HOT ? p->nhot : WEFT__STACK_HOT;
    prepend(&spare, p->over);
    p->over = NULL;
    p->nover = 0;
    while (spare && p->ncold < p->cold_max) {
        unsigned room = p->cold_max - p->ncold;
        go_cold(p, cut(&spare, room < WEFT__STACK_MAP_MAX ? room : WEFT__STACK_MAP_MAX));
    }
    if (p->ncold > p->cold_max) {
        weft__stack_t *extra = p->cold;
        p->cold = cut(&extra, p->cold_max);
        p->ncold = p->cold_max;
        prepend(&spare, extra);
    }
    unmap_all(spare, count(spare));
}

/* ---- overflow report (async-signal-safe) -------------------------------------- */

static size_t put_str(char *buf, size_t n, size_t cap, const char *s)
{
    while (*s && n < cap)
        buf[n++] = *s++;
    return n;
}

static size_t put_u64(char *buf, size_t n, size_t cap, uint64_t v, unsigned base)
{
    char tmp[24];
    size_t k = 0;
    do {
        tmp[k++] = "0123456789abcdef"[v % base];
        v /= base;
    } while (v);
    while (k && n < cap)
        buf[n++] = tmp[--k];
    return n;
}

/* A fault this far below the guard page still counts as an overflow: a
 * frame bigger than a page can step over the guard. */
#define OVERFLOW_SLACK ((uintptr_t)64 << 10)

static size_t describe_fault(void *addr, char *buf, size_t cap)
{
    weft__coro_t *c = weft__coro_current();
    if (!c || !c->stack)
        return 0;
    uintptr_t a = (uintptr_t)addr, lo = (uintptr_t)c->stack->map;
    uintptr_t hi = (uintptr_t)c->stack->lo;
    if (a >= hi || a + OVERFLOW_SLACK < lo)
        return 0;
    size_t n = put_str(buf, 0, cap, "weft: coroutine task ");
    n = put_u64(buf, n, cap, (uint64_t)weft__coro_task(c)->id, 10);
    n = put_str(buf, n, cap, " \"");
    n = put_str(buf, n, cap, c->name ? c->name : "");
    n = put_str(buf, n, cap, "\" overflowed its ");
    n = put_u64(buf, n, cap, c->stack->size, 10);
    n = put_str(buf, n, cap, "-byte stack (fault at 0x");
    n = put_u64(buf, n, cap, a, 16);
    n = put_str(buf, n, cap, a >= lo ? ", in the guard page" : ", below the guard page");
    n = put_str(buf, n, cap, "); give it a larger stack_size\n");
    return n;
}

int weft__coro_thread_enter(weft__stack_pool_t *pool)
{
    set_pool(pool);
    weft__coro_thread_capture();
    weft__fault_hook_install(describe_fault);
    return weft__altstack_enter();
}

void weft__coro_thread_leave(void)
{
    weft__altstack_leave();
    set_pool(NULL);
}

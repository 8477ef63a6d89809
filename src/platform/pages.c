/*
 * pages.c - anonymous page mappings for weft's own allocators.
 * Owns no state; each mapping is returned to the caller, who unmaps it.
 *
 * Mappings of a multiple of 2 MiB are aligned to 2 MiB and advised as
 * transparent-huge-page candidates: a slab of task cells then costs one
 * page fault instead of 512 (faults dominate spawn-heavy loads on VMs).
 */
#include <stdint.h>
#include <sys/mman.h>

#include "platform/platform.h"

#define HUGE_SIZE ((size_t)2 << 20)

void *weft__pages_map(size_t size)
{
    int prot = PROT_READ | PROT_WRITE, flags = MAP_PRIVATE | MAP_ANONYMOUS;
    if (size % HUGE_SIZE != 0) {
        void *p = mmap(NULL, size, prot, flags, -1, 0);
        return p == MAP_FAILED ? NULL : p;
    }
    char *raw = mmap(NULL, size + HUGE_SIZE, prot, flags, -1, 0);
    if (raw == MAP_FAILED)
        return NULL;
    uintptr_t start = ((uintptr_t)raw + HUGE_SIZE - 1) & ~(uintptr_t)(HUGE_SIZE - 1);
    size_t head = start - (uintptr_t)raw, tail = HUGE_SIZE - head;
    if (head)
        munmap(raw, head);
    if (tail)
        munmap((char *)start + size, tail);
#ifdef MADV_HUGEPAGE
    madvise((void *)start, size, MADV_HUGEPAGE); /* advice only: ignore failure */
#endif
    return (void *)start;
}

void weft__pages_unmap(void *p, size_t size)
{
    if (p)
        munmap(p, size);
}

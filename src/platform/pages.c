/*
 * pages.c - anonymous page mappings for weft's own allocators.
 * Owns no state; each mapping is returned to the caller, who unmaps it.
 */
#include <sys/mman.h>

#include "platform/platform.h"

void *weft__pages_map(size_t size)
{
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

void weft__pages_unmap(void *p, size_t size)
{
    if (p)
        munmap(p, size);
}

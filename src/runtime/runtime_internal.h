/*
 * runtime_internal.h - hooks for weft's own tests and diagnostics: reach
 * the scheduler and the driver behind a runtime. Not installed, not public.
 */
#ifndef WEFT_RUNTIME_INTERNAL_H
#define WEFT_RUNTIME_INTERNAL_H

#include <weft/runtime.h>

#include "sched/sched.h"

struct weft__driver;

weft__sched_t *weft__runtime_sched(weft_runtime_t *rt);
/* The runtime's driver (src/io). Never NULL for a live runtime. */
struct weft__driver *weft__runtime_driver(weft_runtime_t *rt);

#endif /* WEFT_RUNTIME_INTERNAL_H */

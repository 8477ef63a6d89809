/*
 * runtime_internal.h - hooks for weft's own tests and diagnostics: reach
 * the scheduler behind a runtime. Not installed, not public.
 */
#ifndef WEFT_RUNTIME_INTERNAL_H
#define WEFT_RUNTIME_INTERNAL_H

#include <weft/runtime.h>

#include "sched/sched.h"

weft__sched_t *weft__runtime_sched(weft_runtime_t *rt);

#endif /* WEFT_RUNTIME_INTERNAL_H */

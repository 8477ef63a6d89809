/*
 * tsan.c - ThreadSanitizer settings built into TSan builds only.
 *
 * ck's loads are volatile accesses even with CK_USE_CC_BUILTINS, which TSan
 * treats as plain reads; the lock-free ck_stack operations weft uses for
 * worker inboxes (push_upmc / batch_pop_upmc) therefore look racy to it.
 * Those two functions are suppressed here and nothing else. The hand-off
 * they perform is made visible to TSan explicitly (WEFT__TSAN_RELEASE /
 * ACQUIRE around the pushes and pops, src/sched/worker.c and batch.c), so races on the
 * tasks themselves are still reported at their real sites.
 */
#include "util/util.h"

#ifdef WEFT__TSAN
/* Referenced from src/sched/worker.c so that a static link keeps this file. */
extern const int weft__tsan_anchor;
const int weft__tsan_anchor = 1;

const char *__tsan_default_suppressions(void);

const char *__tsan_default_suppressions(void)
{
    return "race:ck_stack_push_upmc\n"
           "race:ck_stack_batch_pop_upmc\n";
}
#else
/* ISO C forbids an empty translation unit. */
typedef int weft__tsan_unused;
#endif

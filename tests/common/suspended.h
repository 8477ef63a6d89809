/*
 * suspended.h - wait until a task is suspended: polled, returned pending,
 * and neither running, queued nor finished (reads the task's state word,
 * so it includes the internal task header). Tests use it to know that a
 * task is blocked in the one wait it can reach, instead of sleeping and
 * hoping (include after common/wt.h; the caller defines WAIT_NS).
 */
#ifndef WEFT_TESTS_SUSPENDED_H
#define WEFT_TESTS_SUSPENDED_H

#include "task/task.h"

static inline bool wt_task_suspended(void *h)
{
    uint64_t st = atomic_load(&((weft__task_t *)h)->state);
    return !(st & (WEFT__RUNNING | WEFT__NOTIFIED | WEFT__COMPLETE));
}

/* h (a join handle) is suspended, or the test fails. */
#define wt_wait_suspended(h)                                                                       \
    cr_assert(wt_wait_until(wt_task_suspended, (h), WAIT_NS), "the task never suspended")

#endif

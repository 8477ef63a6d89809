/*
 * weft/task.h - spawning stackless tasks and using their join handles.
 *
 * A spawned task is one allocation holding the runtime's header, a copy of
 * the caller's future state and the task's output. The spawn call copies
 * `size` bytes from `state` into the task; poll and drop then work on that
 * copy. The task's output is the int64_t its poll writes when ready.
 *
 * A join handle (weft_task_t *) owns one reference to the task. It must be
 * given back exactly once: by a join that returned something other than
 * WEFT_PENDING / -ETIMEDOUT, or by weft_task_detach. A task whose handle is
 * dropped keeps running (detached); its output is discarded.
 *
 * Cancellation (weft_task_cancel, or runtime shutdown) is cooperative in
 * time and forced in effect: the future is dropped at its next scheduling
 * point - at once if it is idle, after the current poll if it is running -
 * and a join then returns -ECANCELED, unless the task completed first.
 */
#ifndef WEFT_TASK_H
#define WEFT_TASK_H

#include <weft/future.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct weft_runtime weft_runtime_t;
typedef struct weft_task weft_task_t; /* a join handle; opaque */

/* Largest future state weft_spawn accepts. */
#define WEFT_SPAWN_MAX_STATE (1u << 20)

/*
 * Spawn a stackless task on rt from any thread, inside the runtime or not.
 * From one of rt's workers the task runs next on that worker (LIFO slot);
 * from any other thread it goes to an awake worker's inbox.
 * vt->poll must be non-NULL; state may be NULL only when size is 0.
 * If handle is non-NULL it receives the join handle; if NULL the task is
 * detached from the start (the cheapest spawn).
 * Returns 0, -EINVAL (bad argument, size > WEFT_SPAWN_MAX_STATE),
 * -ENOMEM, or -ESHUTDOWN once shutdown has begun (the state is then not
 * copied and vt->drop is not called: the caller still owns what it holds).
 */
int weft_spawn(weft_runtime_t *rt, const weft_future_vtable_t *vt, const void *state, size_t size,
               weft_task_t **handle);

/*
 * The join handle as a future: poll it from a task. Returns WEFT_PENDING
 * (the task is woken when the joined task ends), or consumes the handle and
 * returns 0 with the output in *out (out may be NULL), -ECANCELED if the
 * task was cancelled before completing, or -EINVAL for a NULL or stale
 * handle or cx (the handle is then not consumed).
 */
int weft_task_join_poll(weft_task_t *h, weft_cx_t *cx, int64_t *out);

/*
 * Block the calling thread until the task ends or the absolute deadline
 * passes. For threads outside the runtime (a worker must never block: it
 * returns -EDEADLK there). On 0 / -ECANCELED the handle is consumed, as for
 * weft_task_join_poll; on -ETIMEDOUT it is still owned by the caller.
 */
int weft_task_join_wait(weft_task_t *h, int64_t deadline, int64_t *out);

/* Give the handle back; the task runs on, detached. 0 or -EINVAL. */
int weft_task_detach(weft_task_t *h);

/*
 * Request cancellation (see above). The handle stays owned by the caller.
 * Cancelling a completed task does nothing. 0 or -EINVAL.
 */
int weft_task_cancel(weft_task_t *h);

/* 1 if the task has completed or been cancelled, 0 if not, -EINVAL. */
int weft_task_is_finished(const weft_task_t *h);

/* The task's id: > 0, unique within its runtime; -EINVAL for a bad handle. */
int64_t weft_task_id(const weft_task_t *h);

/*
 * The id of the task being polled on this thread, or 0 if the thread is not
 * polling a task.
 */
int64_t weft_task_current_id(void);

#ifdef __cplusplus
}
#endif
#endif /* WEFT_TASK_H */

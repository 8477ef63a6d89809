/*
 * hello.c - the smallest complete weft program: a root task spawns a child,
 * joins it, and returns the child's output. Built and run by ctest.
 */
#include <weft.h>

typedef struct {
    int64_t n;
} leaf_t;

static weft_poll_t leaf_poll(void *state, weft_cx_t *cx, int64_t *out)
{
    (void)cx;
    *out = ((leaf_t *)state)->n * 2;
    return WEFT_READY;
}
static const weft_future_vtable_t leaf_vt = {leaf_poll, NULL, "leaf"};

typedef struct {
    weft_task_t *child; /* owned until the join finishes */
} root_t;

static weft_poll_t root_poll(void *state, weft_cx_t *cx, int64_t *out)
{
    root_t *r = state;
    if (!r->child) {
        leaf_t l = {21};
        int rc = weft_spawn(weft_runtime_current(), &leaf_vt, &l, sizeof l, &r->child);
        if (rc != 0) {
            *out = rc;
            return WEFT_READY;
        }
    }
    /* WEFT_PENDING until the child ends; then 0 (or -ECANCELED) and *out. */
    int rc = weft_task_join_poll(r->child, cx, out);
    if (rc == WEFT_PENDING)
        return WEFT_PENDING;
    r->child = NULL; /* the join consumed the handle */
    if (rc != 0)
        *out = rc;
    return WEFT_READY;
}

static void root_drop(void *state)
{
    root_t *r = state;
    if (r->child) /* cancelled while waiting: give the handle back */
        weft_task_detach(r->child);
}
static const weft_future_vtable_t root_vt = {root_poll, root_drop, "root"};

int main(void)
{
    root_t root = {NULL};
    int64_t out = 0;
    int rc = weft_run(NULL, &root_vt, &root, sizeof root, &out);
    return rc == 0 && out == 42 ? 0 : 1;
}

/*
 * timeout.c - a future raced against a deadline, and weft_await_until.
 *
 * Invariant: `live_` is true from init until the inner future is dropped,
 * which happens exactly once - when it completes, when the deadline wins,
 * when the inner future is pending with no timers to arm (-EPERM), or when
 * the timeout itself is dropped - and always together with disarming the
 * timer. The inner future is polled first each time, so one that is ready
 * wins over a deadline that has passed. With no deadline (WEFT_FOREVER)
 * nothing is armed.
 */
#include <weft/coro.h>
#include <weft/time.h>

int weft_timeout_init(weft_timeout_t *to, const weft_future_vtable_t *vt, void *state,
                      int64_t deadline)
{
    if (!to || !vt || !vt->poll)
        return -EINVAL;
    weft_timer_init(&to->timer_);
    to->vt_ = vt;
    to->state_ = state;
    to->deadline_ = deadline;
    to->live_ = true;
    return 0;
}

static void finish(weft_timeout_t *to)
{
    to->live_ = false;
    weft_timer_cancel(&to->timer_);
    if (to->vt_->drop)
        to->vt_->drop(to->state_);
}

int weft_timeout_poll(weft_timeout_t *to, weft_cx_t *cx, int64_t *out)
{
    if (!to || !cx || !to->live_)
        return -EINVAL;
    int64_t v = 0;
    if (to->vt_->poll(to->state_, cx, &v) == WEFT_READY) {
        finish(to);
        if (out)
            *out = v;
        return WEFT_READY;
    }
    if (to->deadline_ == WEFT_FOREVER)
        return WEFT_PENDING;
    int rc = weft_timer_poll(&to->timer_, to->deadline_, cx);
    if (rc == WEFT_PENDING)
        return WEFT_PENDING;
    finish(to);
    return rc == WEFT_READY ? -ETIMEDOUT : rc;
}

static weft_poll_t timeout_poll(void *state, weft_cx_t *cx, int64_t *out)
{
    int64_t v = 0;
    int rc = weft_timeout_poll(state, cx, &v);
    if (rc == WEFT_PENDING)
        return WEFT_PENDING;
    *out = rc == WEFT_READY ? v : rc;
    return WEFT_READY;
}

static void timeout_drop(void *state)
{
    weft_timeout_t *to = state;
    if (to->live_)
        finish(to);
}

const weft_future_vtable_t weft_timeout_vtable = {timeout_poll, timeout_drop, "timeout"};

/* The coroutine call's future: keeps the reason apart from the output. */
typedef struct until {
    weft_timeout_t to;
    int rc;
    int64_t v;
} until_t;

static weft_poll_t until_poll(void *state, weft_cx_t *cx, int64_t *out)
{
    until_t *u = state;
    int rc = weft_timeout_poll(&u->to, cx, &u->v);
    if (rc == WEFT_PENDING)
        return WEFT_PENDING;
    u->rc = rc;
    *out = 0;
    return WEFT_READY;
}

static void until_drop(void *state)
{
    timeout_drop(&((until_t *)state)->to);
}

static const weft_future_vtable_t until_vt = {until_poll, until_drop, "await_until"};

int weft_await_until(const weft_future_vtable_t *vt, void *state, int64_t deadline, int64_t *out)
{
    if (!vt || !vt->poll)
        return -EINVAL;
    if (!weft_in_coro())
        return -EPERM;
    until_t u;
    weft_timeout_init(&u.to, vt, state, deadline);
    u.rc = 0;
    u.v = 0;
    int rc = weft_await(&until_vt, &u, NULL);
    if (rc)
        return rc; /* -ECANCELED: until_drop dropped the inner future */
    if (u.rc == WEFT_READY && out)
        *out = u.v;
    return u.rc;
}

/*
 * sleep.c - the sleep and interval futures and their coroutine calls.
 *
 * Both are a timer entry plus a deadline: every poll is weft_timer_poll,
 * and every drop is weft_timer_cancel, so a cancelled task's entry leaves
 * the wheel when its future is dropped (stackless: by the runtime;
 * coroutine: by weft_await). An interval's schedule (`next_`) is written
 * only by its owner, after the tick it replaces was delivered.
 */
#include <weft/coro.h>
#include <weft/time.h>

/* a + b for b >= 0, saturated at INT64_MAX. */
static int64_t sat_add(int64_t a, int64_t b)
{
    return a > INT64_MAX - b ? INT64_MAX : a + b;
}

/* ---- sleep --------------------------------------------------------------------- */

int weft_sleep_init(weft_sleep_t *s, int64_t deadline)
{
    if (!s)
        return -EINVAL;
    weft_timer_init(&s->timer_);
    s->deadline_ = deadline;
    return 0;
}

static weft_poll_t sleep_poll(void *state, weft_cx_t *cx, int64_t *out)
{
    weft_sleep_t *s = state;
    int rc = weft_timer_poll(&s->timer_, s->deadline_, cx);
    if (rc == WEFT_PENDING)
        return WEFT_PENDING;
    *out = rc; /* 0 (READY) or -EPERM */
    return WEFT_READY;
}

static void sleep_drop(void *state)
{
    weft_timer_cancel(&((weft_sleep_t *)state)->timer_);
}

const weft_future_vtable_t weft_sleep_vtable = {sleep_poll, sleep_drop, "sleep"};

int weft_sleep_until(int64_t deadline)
{
    weft_sleep_t s;
    weft_sleep_init(&s, deadline);
    int64_t v = 0;
    int rc = weft_await(&weft_sleep_vtable, &s, &v);
    return rc ? rc : (int)v;
}

int weft_sleep_for(int64_t ns)
{
    if (ns < 0)
        return -EINVAL;
    return weft_sleep_until(sat_add(weft_now(), ns));
}

/* ---- interval ------------------------------------------------------------------ */

int weft_interval_init(weft_interval_t *iv, int64_t start, int64_t period, weft_missed_t policy)
{
    if (!iv || period <= 0 ||
        (policy != WEFT_MISSED_BURST && policy != WEFT_MISSED_DELAY && policy != WEFT_MISSED_SKIP))
        return -EINVAL;
    weft_timer_init(&iv->timer_);
    iv->next_ = start;
    iv->period_ = period;
    iv->policy_ = policy;
    return 0;
}

/* The tick after the one scheduled at `tick`, delivered at `now`. */
static int64_t next_tick(const weft_interval_t *iv, int64_t tick, int64_t now)
{
    int64_t next = sat_add(tick, iv->period_);
    if (now < next || next == INT64_MAX) /* on time, or late but nothing missed */
        return next;
    switch (iv->policy_) {
    case WEFT_MISSED_DELAY:
        return sat_add(now, iv->period_);
    case WEFT_MISSED_SKIP: { /* the first point of tick + k * period after now */
        /* Unsigned: now - tick overflows int64 for a start near INT64_MIN,
         * and now >= next > tick keeps the true difference positive. */
        uint64_t behind = (uint64_t)now - (uint64_t)tick;
        return sat_add(now - (int64_t)(behind % (uint64_t)iv->period_), iv->period_);
    }
    case WEFT_MISSED_BURST:
    default:
        return next;
    }
}

int weft_interval_poll(weft_interval_t *iv, weft_cx_t *cx, int64_t *scheduled)
{
    if (!iv || !cx)
        return -EINVAL;
    int rc = weft_timer_poll(&iv->timer_, iv->next_, cx);
    if (rc != WEFT_READY)
        return rc;
    int64_t tick = iv->next_;
    iv->next_ = next_tick(iv, tick, weft_now());
    if (scheduled)
        *scheduled = tick;
    return WEFT_READY;
}

void weft_interval_cancel(weft_interval_t *iv)
{
    if (iv)
        weft_timer_cancel(&iv->timer_);
}

static weft_poll_t tick_poll(void *state, weft_cx_t *cx, int64_t *out)
{
    int64_t scheduled = 0;
    int rc = weft_interval_poll(state, cx, &scheduled);
    if (rc == WEFT_PENDING)
        return WEFT_PENDING;
    *out = rc == WEFT_READY ? scheduled : rc;
    return WEFT_READY;
}

static void tick_drop(void *state)
{
    weft_interval_cancel(state);
}

const weft_future_vtable_t weft_interval_tick_vtable = {tick_poll, tick_drop, "interval_tick"};

/* The coroutine call's future: the result code apart from the time, so
 * that no scheduled time can be mistaken for an error. */
typedef struct tick_wait {
    weft_interval_t *iv;
    int rc;
    int64_t scheduled;
} tick_wait_t;

static weft_poll_t tick_wait_poll(void *state, weft_cx_t *cx, int64_t *out)
{
    tick_wait_t *w = state;
    int rc = weft_interval_poll(w->iv, cx, &w->scheduled);
    if (rc == WEFT_PENDING)
        return WEFT_PENDING;
    w->rc = rc;
    *out = 0;
    return WEFT_READY;
}

static void tick_wait_drop(void *state)
{
    weft_interval_cancel(((tick_wait_t *)state)->iv);
}

static const weft_future_vtable_t tick_wait_vt = {tick_wait_poll, tick_wait_drop, "interval_tick"};

int weft_interval_tick(weft_interval_t *iv, int64_t *scheduled)
{
    if (!iv)
        return -EINVAL;
    tick_wait_t w = {iv, 0, 0};
    int rc = weft_await(&tick_wait_vt, &w, NULL);
    if (rc)
        return rc;
    if (w.rc == WEFT_READY && scheduled)
        *scheduled = w.scheduled;
    return w.rc;
}

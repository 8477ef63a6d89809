/*
 * error.c - weft_strerror: text for weft's return codes.
 * Owns nothing; a pure table over the negative errno values to which weft
 * gives its own meaning, and the C library's static description for the
 * rest (the socket errors TCP calls pass on: -ECONNREFUSED, -EADDRINUSE...).
 */
#include <string.h> /* strerrordesc_np (_GNU_SOURCE): static strings, thread-safe */

#include <weft/common.h>

const char *weft_strerror(int code)
{
    switch (code) {
    case 0:
        return "success";
    case -EINVAL:
        return "invalid argument";
    case -ENOMEM:
        return "out of memory";
    case -ECANCELED:
        return "cancelled";
    case -ETIMEDOUT:
        return "timed out";
    case -EPIPE:
        return "closed (broken pipe)";
    case -EAGAIN:
        return "try again";
    case -ESHUTDOWN:
        return "runtime is shut down";
    case -EDEADLK:
        return "would block a runtime thread";
    case -EBUSY:
        return "still in use";
    case -EPERM:
        return "not permitted here";
    default:
        break;
    }
    const char *d = code < 0 && code > -4096 ? strerrordesc_np(-code) : NULL; /* no -INT_MIN */
    return d ? d : "unknown error";
}

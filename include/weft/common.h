/*
 * weft/common.h - conventions shared by every weft header.
 *
 * Every weft function that can fail returns an int: 0 (or a count) on
 * success, a negative errno on failure. weft never reports through errno.
 * Time is int64_t nanoseconds on the monotonic clock (see weft_now()), and
 * blocking calls take an absolute deadline; WEFT_FOREVER means none.
 */
#ifndef WEFT_COMMON_H
#define WEFT_COMMON_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define WEFT_VERSION_MAJOR 0
#define WEFT_VERSION_MINOR 1
#define WEFT_VERSION_PATCH 0

/* An absolute deadline that never passes. */
#define WEFT_FOREVER INT64_MAX

/* Nanoseconds on CLOCK_MONOTONIC. Never fails. */
int64_t weft_now(void);

/*
 * A static, human-readable description of a weft return code (0 or a
 * negative errno): weft's meaning where it gives one (-EPIPE "closed",
 * -ESHUTDOWN "runtime is shut down" ...), else the system's text for the
 * errno. Codes that are not a negative errno give "unknown error". Never
 * NULL; safe from any thread.
 */
const char *weft_strerror(int code);

#ifdef __cplusplus
}
#endif
#endif /* WEFT_COMMON_H */

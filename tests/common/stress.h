/*
 * stress.h - failure reporting shared by the plain-main stress programs
 * (tests/stress/). Define STRESS_NAME before including it.
 *
 * fail() prints "<STRESS_NAME>: FAIL: <message>" and exits 1 at once
 * (_exit: no atexit handlers while runtime threads may still run).
 */
#ifndef WEFT_TEST_STRESS_H
#define WEFT_TEST_STRESS_H

#include <stdarg.h>
#include <stdio.h>
#include <unistd.h>

#ifndef STRESS_NAME
#error "define STRESS_NAME before including common/stress.h"
#endif

__attribute__((format(printf, 1, 2), noreturn)) static void fail(const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, STRESS_NAME ": FAIL: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    fflush(stderr);
    _exit(1);
}

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond))                                                                               \
            fail(__VA_ARGS__);                                                                     \
    } while (0)

#endif /* WEFT_TEST_STRESS_H */

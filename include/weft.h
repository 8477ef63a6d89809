/*
 * weft.h - the umbrella header: include this one.
 *
 * weft is a multi-threaded work-stealing async runtime for Linux.
 * See README.md and docs/ for the model; each header below documents its
 * module's calls, return codes and guarantees.
 */
#ifndef WEFT_H
#define WEFT_H

#include <weft/common.h>
#include <weft/future.h>
#include <weft/task.h>
#include <weft/runtime.h>
#include <weft/coro.h>
#include <weft/time.h>
#include <weft/io.h>
#include <weft/net.h>

#endif /* WEFT_H */

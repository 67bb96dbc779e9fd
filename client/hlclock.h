/*
 * hlclock: the clocks of libhttplock and the httplock command, in seconds
 * as doubles, the unit of the client API.  Waits and deadlines are kept on
 * the monotonic clock, which no one can set back; the wall clock only
 * meets what the server stores or shows (expires_at, acquired_at).  The
 * client is installed without the server's common/, so it has this clock
 * of its own; libhttplock and the command share it.
 */
#ifndef HTTPLOCK_HLCLOCK_H
#define HTTPLOCK_HLCLOCK_H

#include <time.h>

/* CLOCK_MONOTONIC, in seconds. */
double hlclock_mono(void);
/* CLOCK_REALTIME, in seconds since the Unix epoch. */
double hlclock_wall(void);
/* Monotonic time `t` as a timespec, for pthread_cond_timedwait() on a
 * condition whose clock is CLOCK_MONOTONIC. */
struct timespec hlclock_timespec(double t);
/* Milliseconds until monotonic `deadline` for poll(2), rounded up and
 * clamped to [0, INT_MAX]; -1 (no timeout) if deadline <= 0. */
int hlclock_poll_ms(double deadline);

#endif /* HTTPLOCK_HLCLOCK_H */

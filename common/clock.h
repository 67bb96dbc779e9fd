/*
 * clock: the two clocks httplock reads.  Every in-process timeout (reply
 * deadlines, the coordinator's timers and silent-peer checks, batch age,
 * retry pauses) is measured on the monotonic clock, which no one can set
 * back; the wall clock is only for what is stored (lease expiry, fences'
 * floor) or shown (log lines, expires_at in answers).  A deadline that
 * arrives as wall time is turned into a delay once, on arrival; what is
 * judged by a stored wall time (a lease, a waiter row) stays judged by
 * the wall clock.
 */
#ifndef HTTPLOCK_CLOCK_H
#define HTTPLOCK_CLOCK_H

#include <stdint.h>
#include <time.h>

/* CLOCK_MONOTONIC in milliseconds (and microseconds). */
int64_t clock_mono_ms(void);
int64_t clock_mono_us(void);
/* CLOCK_REALTIME in milliseconds since the Unix epoch. */
int64_t clock_wall_ms(void);
/* Milliseconds from monotonic `now` to `deadline`, clamped to
 * [0, INT32_MAX]: for poll(2) and epoll_wait(2). */
int clock_ms_left(int64_t deadline, int64_t now);
/* The absolute time `ms` (0 if negative) from now on clock `id`, for the
 * timed waits of pthreads (pthread_cond_timedwait on a condition whose
 * clock is `id`, pthread_mutex_clocklock). */
struct timespec clock_after(clockid_t id, int64_t ms);

#endif /* HTTPLOCK_CLOCK_H */

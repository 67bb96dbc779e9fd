/*
 * hlclock: the monotonic and wall clocks of the client, in seconds
 * (hlclock.h says which clock is for what).
 */
#include <limits.h>
#include <math.h>
#include <time.h>

#include "hlclock.h"

#define NSEC_PER_SEC 1000000000L

static double
read_clock(clockid_t id)
{
	struct timespec ts;

	(void)clock_gettime(id, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / NSEC_PER_SEC;
}

double
hlclock_mono(void)
{
	return read_clock(CLOCK_MONOTONIC);
}

double
hlclock_wall(void)
{
	return read_clock(CLOCK_REALTIME);
}

struct timespec
hlclock_timespec(double t)
{
	struct timespec ts;

	ts.tv_sec = (time_t)t;
	ts.tv_nsec = (long)((t - (double)ts.tv_sec) * NSEC_PER_SEC);
	if (ts.tv_nsec >= NSEC_PER_SEC) {
		ts.tv_sec++;
		ts.tv_nsec -= NSEC_PER_SEC;
	}
	return ts;
}

int
hlclock_poll_ms(double deadline)
{
	double ms;

	if (deadline <= 0)
		return -1;
	ms = ceil((deadline - hlclock_mono()) * 1000.0);
	if (ms < 0)
		return 0;
	if (ms > INT_MAX)
		return INT_MAX;
	return (int)ms;
}

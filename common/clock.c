/*
 * clock: the monotonic and the wall clock in milliseconds (clock.h).
 * clock_gettime() cannot fail for these clocks on Linux; a zeroed
 * timespec is what a failure would read as.
 */
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

#include "clock.h"

#ifdef HTTPLOCK_TEST_HOOKS
/* Test builds only: HTTPLOCK_TEST_CLOCK_SKEW_MS moves this process's wall
 * clock by that many ms, to play a host whose clock is off.  Read once,
 * before main(). */
static int64_t wall_skew;

__attribute__((constructor)) static void
read_skew(void)
{
	const char *v = getenv("HTTPLOCK_TEST_CLOCK_SKEW_MS");

	if (v != NULL)
		wall_skew = strtoll(v, NULL, 10);
}
#endif

static int64_t
read_ms(clockid_t id)
{
	struct timespec ts = { 0, 0 };

	(void)clock_gettime(id, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t
clock_mono_ms(void)
{
	return read_ms(CLOCK_MONOTONIC);
}

int64_t
clock_mono_us(void)
{
	struct timespec ts = { 0, 0 };

	(void)clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int64_t
clock_wall_ms(void)
{
#ifdef HTTPLOCK_TEST_HOOKS
	return read_ms(CLOCK_REALTIME) + wall_skew;
#else
	return read_ms(CLOCK_REALTIME);
#endif
}

int
clock_ms_left(int64_t deadline, int64_t now)
{
	int64_t left = deadline - now;

	if (left <= 0)
		return 0;
	return left > INT32_MAX ? INT32_MAX : (int)left;
}

struct timespec
clock_after(clockid_t id, int64_t ms)
{
	struct timespec ts = { 0, 0 };

	if (ms < 0)
		ms = 0;
	(void)clock_gettime(id, &ts);
	ts.tv_sec += ms / 1000;
	ts.tv_nsec += (ms % 1000) * 1000000;
	if (ts.tv_nsec >= 1000000000) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000;
	}
	return ts;
}

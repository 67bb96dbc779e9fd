/*
 * rand: random 64-bit numbers from the kernel (getrandom), for waiter keys
 * and poll jitter.  Exits if the kernel has none to give.
 */
#ifndef HTTPLOCK_RAND_H
#define HTTPLOCK_RAND_H

#include <errno.h>
#include <stdint.h>
#include <sys/random.h>
#include <sys/types.h>

#include "log.h"

static inline uint64_t
random_u64(void)
{
	uint64_t v = 0;

	while (getrandom(&v, sizeof(v), 0) != (ssize_t)sizeof(v)) {
		if (errno != EINTR)
			fatal("%s: getrandom", __func__);
	}
	return v;
}

#endif /* HTTPLOCK_RAND_H */

/*
 * lcbench: lockcore alone, without HTTP: W1's work (C clients, client i on
 * its own lock, acquire -> release) done by one thread straight on a
 * lockcore connection, as the worker makes the calls (live clock,
 * synchronous=NORMAL, a struct lock_handoff on release).  Prints the CPU
 * and wall time per acquire and per release, for A/B runs of lockcore
 * changes on a noisy machine (alternate the builds, compare ratios).
 *
 *   cc -O2 -std=c11 -D_GNU_SOURCE -Icommon -Ilockcore \
 *       -I/usr/include/postgresql bench/lcbench.c lockcore/conn.c \
 *       lockcore/engine.c lockcore/query.c lockcore/store_sqlite.c \
 *       lockcore/sqlite_sql.c lockcore/sqlite_file.c lockcore/secret.c \
 *       lockcore/store_pg.c lockcore/pgtx.c lockcore/pgrows.c \
 *       lockcore/pgconn.c lockcore/pgschema.c common/clock.c \
 *       common/proc.c -o lcbench -lsqlite3 -lnettle -lpq
 *   lcbench [-n CYCLES] [-c LOCKS] [-H HELD] DIR | postgresql://URI
 *
 * DIR gets a fresh lcbench.db; a PostgreSQL URI is used as it is (give it
 * an empty database).  -H grants HELD more locks first (never released),
 * for a database that is not tiny (W5's shape).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "lockcore.h"
#include "proc.h"

static double
mono_us(void)
{
	struct timespec ts;

	(void)clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static double
cpu_us(void)
{
	struct timespec ts;

	(void)clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static void
usage(void)
{
	(void)fprintf(stderr,
	    "usage: lcbench [-n CYCLES] [-c LOCKS] [-H HELD] DIR\n");
	exit(2);
}

static pid_t self_pid;
static uint64_t self_pstart;

static void
acquire_one(struct lockcore *lc, const char *name, struct lock_grant *g)
{
	struct lock_acquire_req ar;
	struct lock_wait_info info;
	int rc;

	memset(&ar, 0, sizeof(ar));
	ar.name = name;
	ar.owner = "";
	ar.ttl_ms = 30000;
	ar.deadline = clock_wall_ms();
	ar.max_waiters = 1000;
	ar.who.pid = self_pid;
	ar.who.pstart = self_pstart;
	ar.who.key = 1;
	rc = lock_acquire(lc, &ar, clock_wall_ms(), g, &info);
	if (rc != LC_GRANTED) {
		(void)fprintf(stderr, "acquire %s: %d %s\n", name, rc,
		    lockcore_errmsg(lc));
		exit(1);
	}
}

int
main(int argc, char **argv)
{
	struct lockcore_opts opts;
	struct lockcore *lc;
	struct lock_grant g;
	struct lock_handoff ho;
	char path[4096], name[64], err[256];
	double t0, c0, acq_w = 0, acq_c = 0, rel_w = 0, rel_c = 0;
	long n = 20000, held = 0, i;
	int ch, nlocks = 8, rc;
	bool wake;

	while ((ch = getopt(argc, argv, "n:c:H:")) != -1) {
		switch (ch) {
		case 'n': n = strtol(optarg, NULL, 10); break;
		case 'c': nlocks = (int)strtol(optarg, NULL, 10); break;
		case 'H': held = strtol(optarg, NULL, 10); break;
		default: usage();
		}
	}
	if (optind + 1 != argc || n <= 0 || nlocks <= 0)
		usage();
	for (i = 0; i < 3 && !lockcore_path_is_pg(argv[optind]); i++) {
		static const char *const sfx[] = { "", "-wal", "-shm" };

		if ((size_t)snprintf(path, sizeof(path), "%s/lcbench.db%s",
		    argv[optind], sfx[i]) >= sizeof(path))
			usage();
		(void)unlink(path);
	}
	if (lockcore_path_is_pg(argv[optind]))
		(void)snprintf(path, sizeof(path), "%s", argv[optind]);
	else
		(void)snprintf(path, sizeof(path), "%s/lcbench.db",
		    argv[optind]);
	self_pid = getpid();
	self_pstart = proc_start(self_pid);
	memset(&opts, 0, sizeof(opts));
	opts.busy_timeout_ms = 5000;
	opts.live_clock = 1;
	opts.max_ttl_ms = 3600 * 1000;
	if (lockcore_open(&lc, path, &opts, err, sizeof(err)) != 0) {
		(void)fprintf(stderr, "%s\n", err);
		return 1;
	}
	for (i = 0; i < held; i++) {
		(void)snprintf(name, sizeof(name), "held-%ld", i);
		acquire_one(lc, name, &g);
	}
	/* Warm up: every lock row exists, as after W1's first cycles. */
	for (i = 0; i < 2L * nlocks + 200; i++) {
		(void)snprintf(name, sizeof(name), "w1-%ld", i % nlocks);
		acquire_one(lc, name, &g);
		memset(&ho, 0, sizeof(ho));
		if (lock_release(lc, name, g.token, clock_wall_ms(), &wake,
		    &ho) != LC_OK)
			return 1;
	}
	for (i = 0; i < n; i++) {
		(void)snprintf(name, sizeof(name), "w1-%ld", i % nlocks);
		t0 = mono_us();
		c0 = cpu_us();
		acquire_one(lc, name, &g);
		acq_c += cpu_us() - c0;
		acq_w += mono_us() - t0;
		memset(&ho, 0, sizeof(ho));
		t0 = mono_us();
		c0 = cpu_us();
		rc = lock_release(lc, name, g.token, clock_wall_ms(), &wake,
		    &ho);
		rel_c += cpu_us() - c0;
		rel_w += mono_us() - t0;
		if (rc != LC_OK) {
			(void)fprintf(stderr, "release: %d %s\n", rc,
			    lockcore_errmsg(lc));
			return 1;
		}
	}
	lockcore_close(lc);
	(void)printf("RESULT cycles=%ld acq_cpu_us=%.2f acq_wall_us=%.2f "
	    "rel_cpu_us=%.2f rel_wall_us=%.2f cycle_cpu_us=%.2f\n", n,
	    acq_c / (double)n, acq_w / (double)n, rel_c / (double)n,
	    rel_w / (double)n, (acq_c + rel_c) / (double)n);
	return 0;
}

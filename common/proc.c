/*
 * proc: what Linux's /proc tells about processes and the boot (proc.h).
 */
#include <sys/stat.h>
#include <sys/types.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "proc.h"

void
proc_host_key(char *buf, size_t size, const char *boot, const char *domain)
{
	char id[64];
	struct stat sb;

	if (boot == NULL) {
		proc_boot_id(id, sizeof(id));
		boot = id;
	}
	if (stat("/proc/self/ns/pid", &sb) != 0)
		sb.st_ino = 0;
	(void)snprintf(buf, size, "%s:%ju:%s", boot, (uintmax_t)sb.st_ino,
	    domain);
}

/* The kernel's boot id (a UUID that changes at every boot). */
void
proc_boot_id(char *buf, size_t size)
{
	ssize_t n = -1;
	int fd;

	buf[0] = '\0';
	if ((fd = open("/proc/sys/kernel/random/boot_id",
	    O_RDONLY | O_CLOEXEC)) >= 0) {
		do
			n = read(fd, buf, size - 1);
		while (n < 0 && errno == EINTR);
		(void)close(fd);
	}
	if (n < 0)
		n = 0;
	buf[n] = '\0';
	buf[strcspn(buf, "\n")] = '\0';
	/* Without it (no /proc/sys), the boot's start time in seconds also
	 * changes at every boot; with neither, reboots go unnoticed (a
	 * per-process id would make every open end the others' sessions). */
	if (buf[0] == '\0') {
		FILE *f = fopen("/proc/stat", "re");
		char line[256];
		unsigned long long bt;

		(void)snprintf(buf, size, "unknown");
		while (f != NULL && fgets(line, sizeof(line), f) != NULL)
			if (sscanf(line, "btime %llu", &bt) == 1) {
				(void)snprintf(buf, size, "btime-%llu", bt);
				break;
			}
		if (f != NULL)
			(void)fclose(f);
	}
}

/* Wall-clock time at which this boot began, ms. */
int64_t
proc_boot_time_ms(void)
{
	struct timespec up;
	int64_t t;

	if (clock_gettime(CLOCK_BOOTTIME, &up) < 0)
		return clock_wall_ms();
	t = (int64_t)up.tv_sec * 1000 + up.tv_nsec / 1000000;
	return clock_wall_ms() - t;
}

/*
 * Reads state (field 3) and starttime (field 22) of /proc/<pid>/stat.
 * The fields are counted from the last ')', since the command name
 * (field 2) may itself contain spaces and parentheses.  0 or -1.
 */
static int
proc_stat(pid_t pid, char *state, uint64_t *start)
{
	char path[64], buf[1024], *p, *end;
	ssize_t n;
	int fd, field;

	if (pid <= 0 || snprintf(path, sizeof(path), "/proc/%ld/stat",
	    (long)pid) >= (int)sizeof(path))
		return -1;
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return -1;
	do
		n = read(fd, buf, sizeof(buf) - 1);
	while (n < 0 && errno == EINTR);
	(void)close(fd);
	if (n <= 0)
		return -1;
	buf[n] = '\0';
	if ((p = strrchr(buf, ')')) == NULL || p[1] != ' ' || p[2] == '\0')
		return -1;
	*state = p[2];
	p += 2;
	for (field = 3; field < 22; field++) {
		if ((p = strchr(p, ' ')) == NULL)
			return -1;
		p++;
	}
	errno = 0;
	*start = strtoull(p, &end, 10);
	if (errno != 0 || end == p || (*end != ' ' && *end != '\n' &&
	    *end != '\0'))
		return -1;
	return 0;
}

uint64_t
proc_start(pid_t pid)
{
	uint64_t start;
	char state;

	return proc_stat(pid, &state, &start) == 0 ? start : 0;
}

/* True if kill(2) can see pid (EPERM: it exists, owned by another uid). */
static bool
pid_exists(pid_t pid)
{
	return kill(pid, 0) == 0 || errno == EPERM;
}

bool
proc_alive(pid_t pid, uint64_t pstart)
{
	uint64_t start;
	char state;

	/* kill(0) and kill(-1) address groups, not a process. */
	if (pid <= 0 || !pid_exists(pid))
		return false;
	if (proc_stat(pid, &state, &start) < 0)
		/* /proc unreadable: the pid may have just exited, ask again. */
		return pid_exists(pid);
	if (state == 'Z' || state == 'X')
		return false;
	return pstart == 0 || start == pstart;
}


/*
 * proc: processes and the boot as Linux's /proc shows them.  Waiter rows
 * and sessions carry a (pid, start time) pair, which names one process
 * even after its pid is reused; the boot id tells a reboot (and so a
 * possible power loss) from a restart.
 */
#ifndef HTTPLOCK_PROC_H
#define HTTPLOCK_PROC_H

#include <sys/types.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Process start time of `pid` in clock ticks since boot, 0 if unknown. */
uint64_t proc_start(pid_t pid);
/* True if process `pid` started at `pstart` (0: any) still runs here. */
bool proc_alive(pid_t pid, uint64_t pstart);
/* The kernel's boot id into buf (never empty: a stand-in when /proc does
 * not have it). */
void proc_boot_id(char *buf, size_t size);
/*
 * This host's key in a store shared by several (lockcore's PostgreSQL
 * store): the boot id, the inode of the pid namespace (containers on one
 * machine share the boot but not their pids) and `domain`, the
 * coordinator's socket, so that two httplock stacks on one machine, each
 * with its coordinator, are two hosts that wake each other's waiters.
 * `boot` overrides the boot id (tests; NULL: the kernel's).
 */
#define PROC_HOST_KEY_MAX 256
void proc_host_key(char *buf, size_t size, const char *boot,
    const char *domain);
/* Wall-clock time at which this boot began, ms. */
int64_t proc_boot_time_ms(void);

#endif /* HTTPLOCK_PROC_H */

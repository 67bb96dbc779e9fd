/*
 * log: the logging functions declared in log.h.  A line is formatted into
 * a buffer on the stack and handed over in one write(2) (or one syslog(3)
 * call), so lines from different threads never interleave and no lock is
 * needed.  The settings below are written by log_init() and
 * log_to_syslog(), which are called while the process has one thread.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>

#include "log.h"

/*
 * One line, ident and pid included.  Writes to a pipe of at most PIPE_BUF
 * (4096 on Linux) bytes are atomic, so stay below that.
 */
#define LOG_LINE_MAX 2048

static char log_ident[64] = "httplock";
static int  log_debug_on;
static int  log_syslog_on;

void
log_init(const char *ident, int debug)
{
	/* A cut ident is still a usable prefix, so truncation is fine here. */
	const char *env = getenv("HTTPLOCK_DEBUG");

	if (ident != NULL)
		(void)snprintf(log_ident, sizeof(log_ident), "%s", ident);
	/* HTTPLOCK_DEBUG=1 for processes whose flags are not ours to set
	 * (lighttpd's bin-path runs the worker without arguments). */
	if (env != NULL && strcmp(env, "1") == 0)
		debug = 1;
	log_debug_on = debug;
}

int
log_debug_enabled(void)
{
	return log_debug_on;
}

void
log_to_syslog(void)
{
	/* openlog() keeps the pointer, so it must be our static copy. */
	openlog(log_ident, LOG_PID, LOG_DAEMON);
	log_syslog_on = 1;
}

/* strerror_r in whichever of its two forms the C library has. */
static const char *
errstr(int err, char *buf, size_t len)
{
#if defined(__GLIBC__) && defined(_GNU_SOURCE)
	return strerror_r(err, buf, len);
#else
	if (strerror_r(err, buf, len) != 0)
		(void)snprintf(buf, len, "error %d", err);
	return buf;
#endif
}

/*
 * Formats and emits one message at `pri`.  err >= 0 appends ": " and its
 * strerror text.  Control characters (a lock name, say, should never carry
 * any, but a message must not be able to forge a second log line) are
 * shown as '?'.
 */
static void vlog(int pri, int err, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));

static void
vlog(int pri, int err, const char *fmt, va_list ap)
{
	char line[LOG_LINE_MAX], ebuf[128];
	size_t pre = 0, len, i;
	int n;

	if (!log_syslog_on) {
		n = snprintf(line, sizeof(line), "%s[%ld]: ", log_ident,
		    (long)getpid());
		if (n > 0)
			pre = (size_t)n < sizeof(line) ? (size_t)n :
			    sizeof(line) - 1;
	}
	n = vsnprintf(line + pre, sizeof(line) - pre, fmt, ap);
	len = n < 0 ? pre : pre + (size_t)n;
	if (err >= 0 && len < sizeof(line)) {
		n = snprintf(line + len, sizeof(line) - len, ": %s",
		    errstr(err, ebuf, sizeof(ebuf)));
		if (n > 0)
			len += (size_t)n;
	}
	/* Keep room for the newline; mark a cut line with "...". */
	if (len > sizeof(line) - 2) {
		len = sizeof(line) - 2;
		memcpy(line + len - 3, "...", 3);
	}
	while (len > pre && line[len - 1] == '\n')
		len--;
	for (i = pre; i < len; i++)
		if ((unsigned char)line[i] < 0x20 && line[i] != '\t')
			line[i] = '?';
		else if (line[i] == 0x7f)
			line[i] = '?';

	if (log_syslog_on) {
		line[len] = '\0';
		syslog(pri, "%s", line);
		return;
	}
	line[len++] = '\n';
	for (i = 0; i < len;) {
		ssize_t w = write(STDERR_FILENO, line + i, len - i);

		if (w == -1 && errno == EINTR)
			continue;
		if (w <= 0)
			break;
		i += (size_t)w;
	}
}

void
log_warn(const char *fmt, ...)
{
	int saved = errno;
	va_list ap;

	va_start(ap, fmt);
	vlog(LOG_ERR, saved, fmt, ap);
	va_end(ap);
	errno = saved;
}

void
log_warnx(const char *fmt, ...)
{
	int saved = errno;
	va_list ap;

	va_start(ap, fmt);
	vlog(LOG_ERR, -1, fmt, ap);
	va_end(ap);
	errno = saved;
}

void
log_info(const char *fmt, ...)
{
	int saved = errno;
	va_list ap;

	va_start(ap, fmt);
	vlog(LOG_INFO, -1, fmt, ap);
	va_end(ap);
	errno = saved;
}

void
log_debug(const char *fmt, ...)
{
	int saved = errno;
	va_list ap;

	if (!log_debug_on)
		return;
	va_start(ap, fmt);
	vlog(LOG_DEBUG, -1, fmt, ap);
	va_end(ap);
	errno = saved;
}

void
fatal(const char *fmt, ...)
{
	int saved = errno;
	va_list ap;

	va_start(ap, fmt);
	vlog(LOG_CRIT, saved, fmt, ap);
	va_end(ap);
	exit(1);
}

void
fatalx(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vlog(LOG_CRIT, -1, fmt, ap);
	va_end(ap);
	exit(1);
}

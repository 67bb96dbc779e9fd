/*
 * log: the logging functions declared in log.h, and log_escape() for the
 * untrusted strings they show.  A line is formatted into a buffer on the
 * stack and handed over to stderr in one write(2), so lines
 * from different threads never interleave and no lock is needed.  The
 * settings below are written by log_init(), which is
 * called while the process has one thread.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

/* The function, not the macro that guards its arguments (log.h). */
#undef log_debug

/*
 * One line, ident and pid included.  Writes to a pipe of at most PIPE_BUF
 * (4096 on Linux) bytes are atomic, so stay below that.
 */
#define LOG_LINE_MAX 2048

static char log_ident[64] = "httplock";
static int  log_debug_on;
static int  log_stamp_on = 1;	/* prefix the time (not for the journal) */

/* ---- escaping ------------------------------------------------------- */

/*
 * Code points log_escape() shows as \u{X}: C1 controls, and format
 * characters that reorder, hide or break the text around them when a log
 * is displayed (Unicode's Cf category where it matters, and Zl, Zp).
 */
static const struct { uint32_t lo, hi; } esc_ranges[] = {
	{ 0x0080, 0x009f },	/* C1 controls; U+0085 is a line break */
	{ 0x00ad, 0x00ad },	/* soft hyphen */
	{ 0x061c, 0x061c },	/* Arabic letter mark */
	{ 0x180e, 0x180e },	/* Mongolian vowel separator */
	{ 0x200b, 0x200f },	/* zero widths; LRM, RLM */
	{ 0x2028, 0x202e },	/* line and paragraph separators; LRE..RLO */
	{ 0x2060, 0x2064 },	/* word joiner, invisible operators */
	{ 0x2066, 0x206f },	/* LRI..PDI; deprecated format characters */
	{ 0xfeff, 0xfeff },	/* zero width no-break space (BOM) */
	{ 0xfff9, 0xfffb },	/* interlinear annotation */
	{ 0xe0001, 0xe0001 },	/* language tag */
	{ 0xe0020, 0xe007f },	/* tag characters */
};

static int
esc_listed(uint32_t cp)
{
	size_t i;

	for (i = 0; i < sizeof(esc_ranges) / sizeof(esc_ranges[0]); i++)
		if (cp >= esc_ranges[i].lo && cp <= esc_ranges[i].hi)
			return 1;
	return 0;
}

/*
 * Decodes one well-formed UTF-8 sequence of 2 to 4 bytes at s (len > 0
 * bytes available) into *cp.  Returns its length, or 0 if s[0] does not
 * start one (ASCII, a stray continuation byte, an overlong form, a
 * surrogate, above U+10FFFF, or cut short).
 */
static size_t
utf8_seq(const unsigned char *s, size_t len, uint32_t *cp)
{
	unsigned char c = s[0], lo = 0x80, hi = 0xbf;
	size_t n, k;
	uint32_t v;

	if (c >= 0xc2 && c <= 0xdf) {
		n = 2;
		v = c & 0x1fu;
	} else if (c >= 0xe0 && c <= 0xef) {
		n = 3;
		v = c & 0x0fu;
		if (c == 0xe0)
			lo = 0xa0;		/* overlong */
		else if (c == 0xed)
			hi = 0x9f;		/* surrogates */
	} else if (c >= 0xf0 && c <= 0xf4) {
		n = 4;
		v = c & 0x07u;
		if (c == 0xf0)
			lo = 0x90;		/* overlong */
		else if (c == 0xf4)
			hi = 0x8f;		/* above U+10FFFF */
	} else
		return 0;
	if (len < n)
		return 0;
	for (k = 1; k < n; k++) {
		if (s[k] < lo || s[k] > hi)
			return 0;
		lo = 0x80;
		hi = 0xbf;
		v = (v << 6) | (s[k] & 0x3fu);
	}
	*cp = v;
	return n;
}

/*
 * The rendering of the character or byte at s into piece[] (at least 12
 * bytes, not NUL-terminated).  Returns the rendering's length; *used gets
 * the number of input bytes it stands for.
 */
static size_t
esc_piece(const unsigned char *s, size_t len, char *piece, size_t *used)
{
	static const char hex[] = "0123456789ABCDEF";
	unsigned char c = s[0];
	uint32_t cp;
	size_t n, k, nd;

	*used = 1;
	if (c >= 0x20 && c < 0x7f) {
		if (c == '\\' || c == '"' || c == '\'') {
			piece[0] = '\\';
			piece[1] = (char)c;
			return 2;
		}
		piece[0] = (char)c;
		return 1;
	}
	if (c >= 0x80 && (n = utf8_seq(s, len, &cp)) > 0) {
		*used = n;
		if (!esc_listed(cp)) {
			memcpy(piece, s, n);
			return n;
		}
		nd = cp > 0xffff ? 5 : 4;
		memcpy(piece, "\\u{", 3);
		for (k = 0; k < nd; k++)
			piece[3 + k] = hex[(cp >> (4 * (nd - 1 - k))) & 0xf];
		piece[3 + nd] = '}';
		return 4 + nd;
	}
	/* A control byte, DEL, or a byte outside well-formed UTF-8. */
	piece[0] = '\\';
	piece[1] = 'x';
	piece[2] = hex[c >> 4];
	piece[3] = hex[c & 0xf];
	return 4;
}

/* The length of the rendering of the len bytes at s. */
static size_t
esc_len(const unsigned char *s, size_t len)
{
	size_t i = 0, n = 0, used;
	char piece[12];

	while (i < len) {
		n += esc_piece(s + i, len - i, piece, &used);
		i += used;
	}
	return n;
}

char *
log_escape(char *dst, size_t cap, const char *s, size_t len)
{
	const unsigned char *u = (const unsigned char *)s;
	const size_t mark = sizeof(LOG_ESC_MARK) - 1;
	size_t i = 0, o = 0, n, used;
	char piece[12];
	int rest_fits = 0;

	if (cap == 0)
		return dst;
	while (i < len) {
		n = esc_piece(u + i, len - i, piece, &used);
		/*
		 * No room for this piece and the marker after it: cut here,
		 * unless all that is left fits without a marker (a rendering
		 * that fits exactly is not cut).
		 */
		if (!rest_fits && o + n + mark > cap - 1) {
			if (o + esc_len(u + i, len - i) > cap - 1) {
				if (o + mark <= cap - 1) {
					memcpy(dst + o, LOG_ESC_MARK, mark);
					o += mark;
				}
				break;
			}
			rest_fits = 1;
		}
		memcpy(dst + o, piece, n);
		o += n;
		i += used;
	}
	dst[o] = '\0';
	return dst;
}

char *
log_escape_str(char *dst, size_t cap, const char *s)
{
	return log_escape(dst, cap, s, s != NULL ? strlen(s) : 0);
}

/* ---- lines ---------------------------------------------------------- */

/*
 * Whether stderr is the stream systemd connected to the journal: it sets
 * $JOURNAL_STREAM to that stream's "device:inode" (systemd.exec(5)), and
 * the comparison tells a stderr redirected elsewhere since (a file, a web
 * server's error log) from the journal itself.
 */
static int
stderr_is_journal(void)
{
	const char *env = getenv("JOURNAL_STREAM");
	unsigned long long dev, ino;
	struct stat st;
	char *end;

	if (env == NULL || *env == '\0')
		return 0;
	errno = 0;
	dev = strtoull(env, &end, 10);
	if (errno != 0 || end == env || *end != ':')
		return 0;
	env = end + 1;
	ino = strtoull(env, &end, 10);
	if (errno != 0 || end == env || *end != '\0')
		return 0;
	if (fstat(STDERR_FILENO, &st) != 0)
		return 0;
	return (unsigned long long)st.st_dev == dev &&
	    (unsigned long long)st.st_ino == ino;
}

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
	log_stamp_on = !stderr_is_journal();
}

int
log_debug_enabled(void)
{
	return log_debug_on;
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
 * Writes the time, "2025-01-31T23:59:59.123Z ", at buf (cap bytes).
 * Returns its length, 0 if it could not be had.
 */
static size_t
stamp(char *buf, size_t cap)
{
	struct timespec ts;
	struct tm tm;
	int n;

	if (clock_gettime(CLOCK_REALTIME, &ts) != 0 ||
	    gmtime_r(&ts.tv_sec, &tm) == NULL)
		return 0;
	n = snprintf(buf, cap, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ ",
	    tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
	    tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000);
	return n > 0 && (size_t)n < cap ? (size_t)n : 0;
}

/*
 * The last guard of a line whose fields were not escaped (a call site
 * that should have used LOG_ESC): control bytes but tab, DEL, and the
 * characters log_escape() shows as \u{X}, become '?' (one per byte), so
 * that no message can forge a second line or reorder the one it is on.
 */
static void
neutralize(char *line, size_t from, size_t len)
{
	const unsigned char *u = (const unsigned char *)line;
	size_t i = from, n;
	uint32_t cp;

	while (i < len) {
		if ((u[i] < 0x20 && u[i] != '\t') || u[i] == 0x7f)
			line[i++] = '?';
		else if (u[i] >= 0x80 && (n = utf8_seq(u + i, len - i, &cp)) > 0) {
			if (esc_listed(cp))
				memset(line + i, '?', n);
			i += n;
		} else
			i++;
	}
}

/*
 * Formats and writes one message.  err >= 0 appends ": " and its
 * strerror text.
 */
static void vlog(int err, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));

static void
vlog(int err, const char *fmt, va_list ap)
{
	char line[LOG_LINE_MAX], ebuf[128];
	size_t pre = 0, len;
	int n;

	if (log_stamp_on)
		pre = stamp(line, sizeof(line));
	n = snprintf(line + pre, sizeof(line) - pre, "%s[%ld]: ",
	    log_ident, (long)getpid());
	if (n > 0)
		pre += (size_t)n < sizeof(line) - pre ? (size_t)n :
		    sizeof(line) - pre - 1;
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
	neutralize(line, pre, len);

	line[len++] = '\n';
	for (size_t i = 0; i < len;) {
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
	vlog(saved, fmt, ap);
	va_end(ap);
	errno = saved;
}

void
log_warnx(const char *fmt, ...)
{
	int saved = errno;
	va_list ap;

	va_start(ap, fmt);
	vlog(-1, fmt, ap);
	va_end(ap);
	errno = saved;
}

void
log_info(const char *fmt, ...)
{
	int saved = errno;
	va_list ap;

	va_start(ap, fmt);
	vlog(-1, fmt, ap);
	va_end(ap);
	errno = saved;
}

void
(log_debug)(const char *fmt, ...)
{
	int saved = errno;
	va_list ap;

	if (!log_debug_on)
		return;
	va_start(ap, fmt);
	vlog(-1, fmt, ap);
	va_end(ap);
	errno = saved;
}

void
fatal(const char *fmt, ...)
{
	int saved = errno;
	va_list ap;

	va_start(ap, fmt);
	vlog(saved, fmt, ap);
	va_end(ap);
	exit(1);
}

void
fatalx(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vlog(-1, fmt, ap);
	va_end(ap);
	exit(1);
}

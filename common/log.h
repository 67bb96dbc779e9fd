/*
 * log: one logging interface for the worker and the coordinator.  Messages
 * go to stderr (which lighttpd, Apache and systemd's journal collect).
 * Never pass a token, a request id or a password here.  A string a
 * client chose (a lock name, an owner, a tenant) goes through LOG_ESC()
 * or LOG_ESCN() on its way into a line.
 */
#ifndef HTTPLOCK_LOG_H
#define HTTPLOCK_LOG_H

#include <stddef.h>
#include <stdnoreturn.h>

#define LOG_FMT(a, b) __attribute__((format(printf, a, b)))

/*
 * `ident` prefixes each line ("httplock-worker[1234]: ...").  Debug lines
 * are on if `debug` or if the environment has HTTPLOCK_DEBUG=1.  Lines on
 * stderr start with the UTC time, "2025-01-31T23:59:59.123Z ", unless
 * stderr is the systemd journal's stream ($JOURNAL_STREAM names it), which
 * records the time of every line itself.
 */
void log_init(const char *ident, int debug);
/* Nonzero when log_debug() writes: to skip work done only for its lines. */
int log_debug_enabled(void);

void log_warn(const char *fmt, ...) LOG_FMT(1, 2);    /* appends strerror(errno) */
void log_warnx(const char *fmt, ...) LOG_FMT(1, 2);
void log_info(const char *fmt, ...) LOG_FMT(1, 2);
void log_debug(const char *fmt, ...) LOG_FMT(1, 2);
noreturn void fatal(const char *fmt, ...) LOG_FMT(1, 2);   /* exit(1) */
noreturn void fatalx(const char *fmt, ...) LOG_FMT(1, 2);

/*
 * log_debug()'s arguments are evaluated only when debug lines are on, so
 * that escaping them (LOG_ESC) costs nothing otherwise.
 */
#define log_debug(...) \
	(log_debug_enabled() ? log_debug(__VA_ARGS__) : (void)0)

/*
 * Renders the `len` bytes at `s` (untrusted: any bytes, NULs included) for
 * a log line, into `dst` of `cap` bytes, always NUL-terminated when cap > 0:
 *
 *   - printable ASCII as is, but '\\', '"' and '\'' get a backslash
 *     (\\ \" \'), so that a quoted field cannot be closed from inside;
 *   - control bytes (0x00-0x1f, including tab and newline) and DEL as \xHH;
 *   - bytes that are not part of well-formed UTF-8 (overlong forms,
 *     surrogates, above U+10FFFF, cut sequences) as \xHH, one per byte;
 *   - C1 controls (U+0080-U+009F, U+0085 is a line break), line and
 *     paragraph separators (U+2028, U+2029), bidirectional controls
 *     (U+061C, U+200E, U+200F, U+202A-U+202E, U+2066-U+2069) and other
 *     invisible format characters (U+00AD, U+180E, U+200B-U+200D,
 *     U+2060-U+2064, U+206A-U+206F, U+FEFF, U+FFF9-U+FFFB, tags
 *     U+E0001, U+E0020-U+E007F) as \u{XXXX} (upper-case hex, 4 to 5
 *     digits);
 *   - any other well-formed UTF-8 as is.
 *
 * So the result holds no byte below 0x20 nor 0x7f and no character that
 * reorders, hides or breaks the text around it, and decodes back to `s`
 * exactly.  When the whole rendering does not fit, it is cut after a
 * whole escape and ends with the marker "\..." (which no rendering
 * contains otherwise: a backslash from `s` is "\\").  Returns dst.
 * `s` may be NULL when len is 0.
 */
#define LOG_ESC_MARK "\\..."
char *log_escape(char *dst, size_t cap, const char *s, size_t len);

/* Bytes of the buffer LOG_ESC and LOG_ESCN render into: a field longer
 * than this in the log is cut with the marker. */
#define LOG_ESC_MAX 256

/* log_escape() of the C string `s` (NULL renders as ""). */
char *log_escape_str(char *dst, size_t cap, const char *s);

/*
 * For a log call's arguments: the escaped string in a buffer on the
 * caller's stack (a compound literal, valid until the end of the block
 * that holds the call).
 */
#define LOG_ESC(s) log_escape_str((char[LOG_ESC_MAX]){ 0 }, LOG_ESC_MAX, (s))
#define LOG_ESCN(s, n) \
	log_escape((char[LOG_ESC_MAX]){ 0 }, LOG_ESC_MAX, (s), (n))

#endif /* HTTPLOCK_LOG_H */

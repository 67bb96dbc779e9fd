/*
 * conf: reads httplock.conf, the `key = value` file shared by the worker and
 * the coordinator, into a struct hl_conf.  Every key is described once, in
 * keys[] below (name, kind, range, where it goes); the parser is a loop over
 * lines that looks each key up there, so adding a key is adding a row.
 * Nothing here logs or exits: errors come back as "FILE:LINE: KEY: what is
 * wrong" in the caller's buffer.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "conf.h"

#ifndef SYSCONFDIR
#define SYSCONFDIR "/usr/local/etc"
#endif

#define LINE_MAX_BYTES 1024      /* longer lines are an error */
#define SECONDS_INT_DIGITS 9     /* parse_seconds: at most 999999999 s */
#define INT_DIGITS_MAX 10        /* enough for any accepted integer */

enum key_kind {
	K_PATH,                  /* absolute path; char[] of `size` bytes */
	K_URI,                   /* postgresql:// URI; char[] of `size` */
	K_SECONDS,               /* int64_t milliseconds, min..max */
	K_INT,                   /* int, min..max */
	K_CHOICE                 /* one of `words` -> int, its index */
};

struct conf_key {
	const char    *name;
	enum key_kind  kind;
	size_t         off;      /* offsetof(struct hl_conf, field) */
	size_t         size;     /* K_PATH: sizeof the field */
	int64_t        min;      /* K_SECONDS: ms; K_INT: value */
	int64_t        max;
	const char    *range;    /* the message when a value is out of range;
	                            K_PATH: when it is too long */
	const char *const *words;   /* K_CHOICE: the values, NULL-terminated,
	                               in any case */
};

#define F(field) offsetof(struct hl_conf, field)
#define S(field) sizeof(((struct hl_conf *)0)->field)

static const char *const sync_words[] = { "normal", "full", NULL };
static const char *const anonymous_words[] = { "allow", "deny", NULL };
static const char *const no_yes_words[] = { "no", "yes", NULL };

static const struct conf_key keys[] = {
	{ "database", K_PATH, F(database), S(database), 0, 0,
	  "must be shorter than 4096 bytes", NULL },
	{ "store", K_URI, F(store), S(store), 0, 0,
	  "must be a PostgreSQL connection URI (postgresql://...) shorter "
	  "than 4096 bytes", NULL },
	{ "coord_socket", K_PATH, F(coord_socket), S(coord_socket), 0, 0,
	  "must be shorter than 108 bytes (sun_path, the limit on the "
	  "path of a Unix socket)", NULL },
	{ "default_ttl", K_SECONDS, F(default_ttl_ms), 0, 1, 604800000,
	  "must be a number of seconds greater than 0 and at most 604800",
	  NULL },
	{ "max_ttl", K_SECONDS, F(max_ttl_ms), 0, 1, 604800000,
	  "must be a number of seconds greater than 0 and at most 604800 "
	  "(7 days)", NULL },
	{ "max_wait", K_SECONDS, F(max_wait_ms), 0, 1, 3600000,
	  "must be a number of seconds greater than 0 and at most 3600",
	  NULL },
	{ "poll_interval", K_SECONDS, F(poll_ms), 0, 10, 10000,
	  "must be a number of seconds from 0.01 to 10", NULL },
	{ "busy_timeout", K_SECONDS, F(busy_timeout_ms), 0, 100, 60000,
	  "must be a number of seconds from 0.1 to 60", NULL },
	{ "max_waiters", K_INT, F(max_waiters), 0, 1, 1000000,
	  "must be an integer from 1 to 1000000", NULL },
	{ "idle_reclaim", K_SECONDS, F(idle_reclaim_ms), 0, 0, 2592000000,
	  "must be a number of seconds from 0 to 2592000 (30 days)", NULL },
	{ "tenant_max_held", K_INT, F(tenant_max_held), 0, 0, 10000000,
	  "must be an integer from 0 (no quota) to 10000000", NULL },
	{ "tenant_max_waiting", K_INT, F(tenant_max_waiting), 0, 0, 10000000,
	  "must be an integer from 0 (no quota) to 10000000", NULL },
	{ "max_waiting", K_INT, F(max_waiting), 0, 1, 1000000,
	  "must be an integer from 1 to 1000000", NULL },
	{ "max_waiting_per_client", K_INT, F(max_waiting_per_client), 0, 1,
	  1000000, "must be an integer from 1 to 1000000", NULL },
	{ "threads", K_INT, F(threads), 0, 1, 4096,
	  "must be an integer from 1 to 4096", NULL },
	{ "max_threads", K_INT, F(max_threads), 0, 1, 65536,
	  "must be an integer from 1 to 65536", NULL },
	{ "synchronous", K_CHOICE, F(synchronous_full), 0, 0, 0,
	  "must be 'normal' or 'full'", sync_words },
	{ "crash_grace", K_CHOICE, F(crash_grace), 0, 0, 0,
	  "must be 'yes' or 'no'", no_yes_words },
	{ "anonymous", K_CHOICE, F(anonymous_deny), 0, 0, 0,
	  "must be 'allow' or 'deny'", anonymous_words },
	{ "coord_autostart", K_CHOICE, F(coord_autostart), 0, 0, 0,
	  "must be 'no' or 'yes'", no_yes_words },
	{ "coord_idle_exit", K_SECONDS, F(coord_idle_exit_ms), 0, 0, 86400000,
	  "must be a number of seconds from 0 to 86400", NULL },
	{ "coord_binary", K_PATH, F(coord_binary), S(coord_binary), 0, 0,
	  "must be shorter than 4096 bytes", NULL },
	{ "coord_log", K_PATH, F(coord_log), S(coord_log), 0, 0,
	  "must be shorter than 4096 bytes", NULL },
};

#define NKEYS (sizeof(keys) / sizeof(keys[0]))

#undef F
#undef S

void
conf_defaults(struct hl_conf *c)
{
	memset(c, 0, sizeof(*c));
	/* Both literals fit their arrays; the compiler checks that. */
	memcpy(c->database, "/var/lib/httplock/httplock.db",
	    sizeof("/var/lib/httplock/httplock.db"));
	memcpy(c->coord_socket, "/run/httplock/coord.sock",
	    sizeof("/run/httplock/coord.sock"));
	c->default_ttl_ms = 30 * 1000;
	c->max_ttl_ms = 3600 * 1000;
	c->max_wait_ms = 30 * 1000;
	c->poll_ms = 100;
	c->busy_timeout_ms = 5000;
	c->max_waiters = 1000;
	c->idle_reclaim_ms = 300 * 1000;
	c->max_waiting = 1000;
	c->max_waiting_per_client = 256;
	c->threads = 8;
	c->max_threads = 512;
	c->synchronous_full = 0;
	c->crash_grace = 1;
	c->anonymous_deny = 0;
	c->coord_autostart = 0;
	c->coord_idle_exit_ms = 300 * 1000;
	/* coord_binary and coord_log stay empty: next to us, /dev/null. */
}

const char *
conf_default_path(void)
{
	const char *p = getenv("HTTPLOCK_CONF");

	if (p != NULL && p[0] != '\0')
		return p;
	return SYSCONFDIR "/httplock.conf";
}

static bool
is_digit(char ch)
{
	return ch >= '0' && ch <= '9';
}

int
conf_check_sockpath(const char *path, char *err, size_t errlen)
{
	size_t len = strlen(path), i;
	bool digits = true;

	if (len == 0) {
		snprintf(err, errlen, "the socket path is empty");
		return -1;
	}
	if (len >= CONF_SOCK_MAX) {
		snprintf(err, errlen, "%s: socket path too long (at most %d "
		    "bytes)", path, CONF_SOCK_MAX - 1);
		return -1;
	}
	if (strchr(path, '/') != NULL)
		return 0;
	for (i = 0; i < len; i++)
		digits = digits && is_digit(path[i]);
	if (strchr(path, ':') != NULL || digits) {
		snprintf(err, errlen, "%s looks like a TCP address, not the "
		    "path of a Unix socket (write ./%s for a file of that "
		    "name here)", path, path);
		return -1;
	}
	return 0;
}

int
parse_seconds(const char *s, size_t len, int64_t max_ms, int64_t *ms)
{
	int64_t secs = 0, frac = 0;
	size_t i = 0, nint, nfrac;

	if (s == NULL)
		return -1;
	while (i < len && is_digit(s[i])) {
		if (i == SECONDS_INT_DIGITS)
			return -1;
		secs = secs * 10 + (s[i] - '0');
		i++;
	}
	nint = i;
	if (nint == 0)
		return -1;
	if (i < len) {
		if (s[i] != '.')
			return -1;
		i++;
		nfrac = 0;
		for (; i < len && is_digit(s[i]); i++, nfrac++) {
			/* Only milliseconds count; later digits are dropped. */
			if (nfrac < 3)
				frac = frac * 10 + (s[i] - '0');
		}
		if (nfrac == 0 || i != len)
			return -1;
		for (; nfrac < 3; nfrac++)
			frac *= 10;
	}
	/* At most 999999999999, far from overflowing. */
	if (secs * 1000 + frac > max_ms)
		return -1;
	*ms = secs * 1000 + frac;
	return 0;
}

/* Decimal digits only, no sign, min..max.  Returns 0 and *v, or -1. */
static int
parse_int(const char *s, size_t len, int64_t min, int64_t max, int64_t *v)
{
	int64_t n = 0;
	size_t i;

	if (len == 0 || len > INT_DIGITS_MAX)
		return -1;
	for (i = 0; i < len; i++) {
		if (!is_digit(s[i]))
			return -1;
		n = n * 10 + (s[i] - '0');
	}
	if (n < min || n > max)
		return -1;
	*v = n;
	return 0;
}

/* Case-insensitive ASCII comparison of s[0..len) with the literal lit. */
static bool
word_eq(const char *s, size_t len, const char *lit)
{
	size_t i;

	if (strlen(lit) != len)
		return false;
	for (i = 0; i < len; i++) {
		char a = s[i], b = lit[i];

		if (a >= 'A' && a <= 'Z')
			a = (char)(a - 'A' + 'a');
		if (a != b)
			return false;
	}
	return true;
}

/*
 * Sets one key's value.  Returns NULL, or what is wrong with `v` (and *c is
 * unchanged).
 */
static const char *
set_value(struct hl_conf *c, const struct conf_key *k, const char *v,
    size_t vlen)
{
	char *base = (char *)c + k->off;
	int64_t n;

	switch (k->kind) {
	case K_URI:
		if (!((vlen > 13 && memcmp(v, "postgresql://", 13) == 0) ||
		    (vlen > 11 && memcmp(v, "postgres://", 11) == 0)) ||
		    vlen >= k->size)
			return k->range;
		memcpy(base, v, vlen);
		base[vlen] = '\0';
		return NULL;
	case K_PATH:
		if (v[0] != '/')
			return "must be an absolute path";
		if (vlen >= k->size)
			return k->range;
		memcpy(base, v, vlen);
		base[vlen] = '\0';
		return NULL;
	case K_SECONDS:
		if (parse_seconds(v, vlen, k->max, &n) != 0 || n < k->min)
			return k->range;
		memcpy(base, &n, sizeof(n));
		return NULL;
	case K_INT: {
		int iv;

		if (parse_int(v, vlen, k->min, k->max, &n) != 0)
			return k->range;
		iv = (int)n;
		memcpy(base, &iv, sizeof(iv));
		return NULL;
	}
	case K_CHOICE: {
		int i;

		for (i = 0; k->words[i] != NULL; i++)
			if (word_eq(v, vlen, k->words[i]))
				break;
		if (k->words[i] == NULL)
			return k->range;
		memcpy(base, &i, sizeof(i));
		return NULL;
	}
	}
	return "unknown kind of key";
}

/*
 * Writes "FILE:LINE: KEY: message" into err; LINE is left out when 0 and
 * KEY when NULL.  Always returns -1 so callers can `return seterr(...)`.
 */
static int seterr(char *err, size_t errlen, const char *file, size_t line,
    const char *key, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));

static int
seterr(char *err, size_t errlen, const char *file, size_t line,
    const char *key, const char *fmt, ...)
{
	va_list ap;
	int n;
	size_t used;

	if (err == NULL || errlen == 0)
		return -1;
	if (line > 0)
		n = snprintf(err, errlen, "%s:%zu: ", file, line);
	else
		n = snprintf(err, errlen, "%s: ", file);
	if (n < 0 || (size_t)n >= errlen)
		return -1;
	used = (size_t)n;
	if (key != NULL) {
		n = snprintf(err + used, errlen - used, "%s: ", key);
		if (n < 0 || (size_t)n >= errlen - used)
			return -1;
		used += (size_t)n;
	}
	va_start(ap, fmt);
	(void)vsnprintf(err + used, errlen - used, fmt, ap);
	va_end(ap);
	return -1;
}

static bool
is_blank(char ch)
{
	return ch == ' ' || ch == '\t' || ch == '\r';
}

/* True if every byte of s[0..len) is printable ASCII, so safe to echo. */
static bool
printable(const char *s, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++)
		if (s[i] < 0x20 || s[i] > 0x7e)
			return false;
	return true;
}

/* The line on which key `name` was set in this file, 0 if it was not. */
static size_t
line_of(const size_t *seen, const char *name)
{
	size_t i;

	for (i = 0; i < NKEYS; i++)
		if (strcmp(keys[i].name, name) == 0)
			return seen[i];
	return 0;
}

void
conf_fmt_seconds(char *buf, size_t len, int64_t ms)
{
	if (ms % 1000 == 0)
		(void)snprintf(buf, len, "%lld", (long long)(ms / 1000));
	else
		(void)snprintf(buf, len, "%lld.%03lld", (long long)(ms / 1000),
		    (long long)(ms % 1000));
}

/*
 * Cross-key checks, once the whole file is read.  seen[] holds the line on
 * which each key was set (0 if not set in this file).  The key that was set
 * in the file is the one blamed, since it is the one the reader can fix.
 */
static int
check_relations(const struct hl_conf *c, const size_t *seen,
    const char *file, char *err, size_t errlen)
{
	size_t ldef = line_of(seen, "default_ttl");
	size_t lmax = line_of(seen, "max_ttl");
	size_t lthr = line_of(seen, "threads");
	size_t lmthr = line_of(seen, "max_threads");
	char sec[32];

	if (c->default_ttl_ms > c->max_ttl_ms) {
		if (ldef > 0 || lmax == 0) {
			conf_fmt_seconds(sec, sizeof(sec), c->max_ttl_ms);
			return seterr(err, errlen, file, ldef, "default_ttl",
			    "must not exceed max_ttl (%s seconds)", sec);
		}
		conf_fmt_seconds(sec, sizeof(sec), c->default_ttl_ms);
		return seterr(err, errlen, file, lmax, "max_ttl",
		    "must not be less than default_ttl (%s seconds)", sec);
	}
	if (c->max_threads < c->threads) {
		if (lmthr > 0 || lthr == 0)
			return seterr(err, errlen, file, lmthr, "max_threads",
			    "must not be less than threads (%d)", c->threads);
		return seterr(err, errlen, file, lthr, "threads",
		    "must not exceed max_threads (%d)", c->max_threads);
	}
	return 0;
}

/* Parses one line (no '\n'), number `lineno`, into *c. */
static int
parse_line(struct hl_conf *c, const char *s, size_t len, size_t lineno,
    size_t *seen, const char *file, char *err, size_t errlen)
{
	const char *eq, *k, *v, *why;
	size_t klen, vlen, i;
	const struct conf_key *key = NULL;

	if (len > LINE_MAX_BYTES)
		return seterr(err, errlen, file, lineno, NULL,
		    "line is longer than %d bytes", LINE_MAX_BYTES);
	for (i = 0; i < len; i++) {
		if (s[i] == '\0')
			return seterr(err, errlen, file, lineno, NULL,
			    "NUL byte in the file");
		if ((s[i] > 0 && s[i] < 0x20 && !is_blank(s[i])) ||
		    s[i] == 0x7f)
			return seterr(err, errlen, file, lineno, NULL,
			    "control character in the line");
	}
	while (len > 0 && is_blank(s[0])) {
		s++;
		len--;
	}
	while (len > 0 && is_blank(s[len - 1]))
		len--;
	if (len == 0 || s[0] == '#')
		return 0;

	eq = memchr(s, '=', len);
	if (eq == NULL)
		return seterr(err, errlen, file, lineno, NULL,
		    "expected 'key = value'");
	k = s;
	klen = (size_t)(eq - s);
	while (klen > 0 && is_blank(k[klen - 1]))
		klen--;
	v = eq + 1;
	vlen = len - (size_t)(v - s);
	while (vlen > 0 && is_blank(v[0])) {
		v++;
		vlen--;
	}
	if (klen == 0)
		return seterr(err, errlen, file, lineno, NULL,
		    "missing key before '='");

	for (i = 0; i < NKEYS; i++) {
		if (strlen(keys[i].name) == klen &&
		    memcmp(keys[i].name, k, klen) == 0) {
			key = &keys[i];
			break;
		}
	}
	if (key == NULL) {
		if (klen <= 64 && printable(k, klen))
			return seterr(err, errlen, file, lineno, NULL,
			    "%.*s: unknown key", (int)klen, k);
		return seterr(err, errlen, file, lineno, NULL, "unknown key");
	}
	if (seen[i] > 0)
		return seterr(err, errlen, file, lineno, key->name,
		    "duplicate key (first set on line %zu)", seen[i]);
	seen[i] = lineno;
	if (vlen == 0)
		return seterr(err, errlen, file, lineno, key->name,
		    "value is empty");
	/*
	 * '#' starts a comment only at the start of a line.  Rather than
	 * take "30  # seconds" or "/db # main" as a value, refuse it.
	 */
	if (memchr(v, '#', vlen) != NULL)
		return seterr(err, errlen, file, lineno, key->name,
		    "'#' is not allowed in a value (comments must be on "
		    "their own line)");
	if ((why = set_value(c, key, v, vlen)) != NULL)
		return seterr(err, errlen, file, lineno, key->name, "%s", why);
	return 0;
}

int
conf_parse(struct hl_conf *c, const char *text, size_t len,
    const char *file, char *err, size_t errlen)
{
	size_t seen[NKEYS] = { 0 };
	size_t pos = 0, lineno = 0;

	if (err != NULL && errlen > 0)
		err[0] = '\0';
	if (file == NULL)
		file = "(config)";
	if (text == NULL && len > 0)
		return seterr(err, errlen, file, 0, NULL, "no text");

	while (pos < len) {
		const char *nl = memchr(text + pos, '\n', len - pos);
		size_t end = nl != NULL ? (size_t)(nl - text) : len;

		lineno++;
		if (parse_line(c, text + pos, end - pos, lineno, seen, file,
		    err, errlen) != 0)
			return -1;
		pos = nl != NULL ? end + 1 : len;
	}
	return check_relations(c, seen, file, err, errlen);
}

int
conf_load(struct hl_conf *c, const char *path, char *err, size_t errlen)
{
	char *buf = NULL;
	size_t len = 0;
	struct stat st;
	int fd = -1, rc = -1;

	conf_defaults(c);
	if (err != NULL && errlen > 0)
		err[0] = '\0';
	if (path == NULL)
		return seterr(err, errlen, "(config)", 0, NULL, "no path");

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd == -1) {
		seterr(err, errlen, path, 0, NULL, "%s", strerror(errno));
		goto out;
	}
	if (fstat(fd, &st) == -1) {
		seterr(err, errlen, path, 0, NULL, "%s", strerror(errno));
		goto out;
	}
	if (S_ISREG(st.st_mode) && st.st_size > CONF_FILE_MAX) {
		seterr(err, errlen, path, 0, NULL,
		    "file is larger than %d bytes", CONF_FILE_MAX);
		goto out;
	}
	/* One byte more than the cap tells a file that grew past it. */
	buf = malloc(CONF_FILE_MAX + 1);
	if (buf == NULL) {
		seterr(err, errlen, path, 0, NULL, "%s", strerror(ENOMEM));
		goto out;
	}
	for (;;) {
		ssize_t n = read(fd, buf + len, CONF_FILE_MAX + 1 - len);

		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1) {
			seterr(err, errlen, path, 0, NULL, "%s",
			    strerror(errno));
			goto out;
		}
		if (n == 0)
			break;
		len += (size_t)n;
		if (len > CONF_FILE_MAX) {
			seterr(err, errlen, path, 0, NULL,
			    "file is larger than %d bytes", CONF_FILE_MAX);
			goto out;
		}
	}
	rc = conf_parse(c, buf, len, path, err, errlen);
out:
	free(buf);
	if (fd != -1)
		close(fd);
	return rc;
}

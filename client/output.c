/*
 * output: everything the httplock command shows the user.  Results go to
 * stdout, as text for a terminal or as JSON; an error is one line on
 * stderr, "httplock: <what>: <server code>: <message>", with any token cut
 * out of it; and a library result becomes the exit status httplock.1
 * lists.  Text that came from the command line or the server is printed
 * so that it cannot break the line (control characters are replaced).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"

static int credentials_given;   /* -u or $HTTPLOCK_USER was given */

/* Says whether the user gave credentials (-u or $HTTPLOCK_USER), for the
 * hint after a 401. */
void
out_credentials_given(int given)
{
	credentials_given = given;
}

/* Writes `s` as a JSON string. */
void
out_json_str(FILE *f, const char *s)
{
	const unsigned char *p;

	putc('"', f);
	for (p = (const unsigned char *)s; *p != '\0'; p++) {
		if (*p == '"' || *p == '\\')
			fprintf(f, "\\%c", *p);
		else if (*p < 0x20 || *p == 0x7f)
			fprintf(f, "\\u%04x", *p);
		else
			putc(*p, f);
	}
	putc('"', f);
}

/* Writes `s` for a terminal: control characters become '?'. */
void
out_text_str(FILE *f, const char *s)
{
	const unsigned char *p;

	for (p = (const unsigned char *)s; *p != '\0'; p++)
		putc(*p < 0x20 || *p == 0x7f ? '?' : *p, f);
}

/* Prints a grant as one JSON object on a line of stdout. */
void
out_grant_json(const struct httplock_grant *g)
{
	fputs("{\"lock\":", stdout);
	out_json_str(stdout, g->lock);
	fputs(",\"token\":", stdout);
	out_json_str(stdout, g->token);
	printf(",\"fence\":%" PRId64 ",\"ttl\":%.3f,\"acquired_at\":%.3f,"
	    "\"expires_at\":%.3f,\"owner\":", g->fence, g->ttl, g->acquired_at,
	    g->expires_at);
	out_json_str(stdout, g->owner);
	fputs(",\"request_id\":", stdout);
	out_json_str(stdout, g->request_id);
	fputs("}\n", stdout);
}

/* One line on stderr; the caller exits with XS_USAGE. */
void
out_usage_error(const char *fmt, ...)
{
	char buf[OUT_LINE_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	fputs("httplock: ", stderr);
	out_text_str(stderr, buf);             /* arguments may hold newlines */
	fputs(" (see httplock --help)\n", stderr);
}

/* Exit status for a library result; httplock.1 lists the same mapping. */
static int
exit_status(enum httplock_code code)
{
	switch (code) {
	case HTTPLOCK_OK:
		return XS_OK;
	case HTTPLOCK_TIMEOUT:
	case HTTPLOCK_TOO_MANY_WAITERS:
		return XS_HELD;
	case HTTPLOCK_NOT_HELD:
		return XS_NOT_HELD;
	case HTTPLOCK_CANCELLED:
	case HTTPLOCK_SUPERSEDED:
	case HTTPLOCK_BAD_REQUEST:
	case HTTPLOCK_AUTH:
		return XS_REFUSED;
	case HTTPLOCK_INVALID:
		return XS_USAGE;
	case HTTPLOCK_UNAVAILABLE:
	case HTTPLOCK_CONNECT:
	case HTTPLOCK_PROTOCOL:
	case HTTPLOCK_NOMEM:
	default:
		return XS_UNAVAILABLE;
	}
}

/*
 * Formats "<server code>: <message>" of an error into buf: the server's
 * code, or the library's name for the failure when there was no answer;
 * the message on one line, with `secret` (a token, may be NULL) cut out.
 */
void
out_format_error(char *buf, size_t len, enum httplock_code code,
    const struct httplock_error *err, const char *secret)
{
	char msg[sizeof(err->message)];
	const char *what;
	size_t i, n, slen;
	char *p;

	what = err->server_code[0] != '\0' ? err->server_code :
	    httplock_strerror(code);
	n = strnlen(err->message, sizeof(err->message) - 1);
	memcpy(msg, err->message, n);
	msg[n] = '\0';
	for (i = 0; i < n; i++)
		if ((unsigned char)msg[i] < 0x20 || msg[i] == 0x7f)
			msg[i] = ' ';
	while (n > 0 && msg[n - 1] == ' ')
		msg[--n] = '\0';
	if (secret != NULL && (slen = strlen(secret)) > 0) {
		while ((p = strstr(msg, secret)) != NULL)
			memset(p, '*', slen);
	}
	if (n == 0 || strcmp(msg, what) == 0)
		snprintf(buf, len, "%s", what);
	else
		snprintf(buf, len, "%s: %s", what, msg);
}

/* What to add to a 401's message: where credentials come from. */
static const char *
auth_hint(void)
{
	return credentials_given ?
	    "; the server refused the credentials of -u or $HTTPLOCK_USER" :
	    "; the server asks for credentials: give them with -u USER:PASS, "
	    "$HTTPLOCK_USER or ~/.netrc";
}

/* Prints "httplock: <verb> <name>: <code>: <message>" (and, after a 401,
 * where credentials come from) and returns the exit status for `code`. */
int
out_fail(const char *verb, const char *name, enum httplock_code code,
    const struct httplock_error *err, const char *secret)
{
	char buf[OUT_LINE_MAX];

	out_format_error(buf, sizeof(buf), code, err, secret);
	fprintf(stderr, "httplock: %s", verb);
	if (name != NULL) {
		putc(' ', stderr);
		out_text_str(stderr, name);    /* still one line */
	}
	fprintf(stderr, ": %s%s\n", buf, code == HTTPLOCK_AUTH &&
	    err->http_status == 401 ? auth_hint() : "");
	return exit_status(code);
}

/* Flushes stdout; on failure says so and returns XS_UNAVAILABLE. */
int
out_flush(const char *what)
{
	if (fflush(stdout) == 0 && !ferror(stdout))
		return XS_OK;
	fprintf(stderr, "httplock: %s: cannot write the output: %s\n", what,
	    strerror(errno));
	return XS_UNAVAILABLE;
}

/*
 * check_conf: the Check suite for common/conf.c: the defaults, files that
 * parse (with the values they give), files that do not (with the
 * "FILE:LINE: KEY: ..." message they give), conf_load on real files,
 * conf_default_path, and parse_seconds.  Cases are table rows that report
 * their index and source line.
 */
#include <check.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conf.h"

#ifndef SYSCONFDIR
#define SYSCONFDIR "/usr/local/etc"
#endif

#define FILE_NAME "test.conf"

START_TEST(test_defaults)
{
	struct hl_conf c;

	memset(&c, 0xa5, sizeof(c));
	conf_defaults(&c);
	ck_assert_str_eq(c.database, "/var/lib/httplock/httplock.db");
	ck_assert_str_eq(c.coord_socket, "/run/httplock/coord.sock");
	ck_assert_int_eq(c.default_ttl_ms, 30000);
	ck_assert_int_eq(c.max_ttl_ms, 3600000);
	ck_assert_int_eq(c.max_wait_ms, 30000);
	ck_assert_int_eq(c.poll_ms, 100);
	ck_assert_int_eq(c.busy_timeout_ms, 5000);
	ck_assert_int_eq(c.max_waiters, 1000);
	ck_assert_int_eq(c.max_waiting, 1000);
	ck_assert_int_eq(c.max_waiting_per_client, 256);
	ck_assert_int_eq(c.threads, 8);
	ck_assert_int_eq(c.max_threads, 512);
	ck_assert_int_eq(c.synchronous_full, 0);
	ck_assert_int_eq(c.crash_grace, 1);
	ck_assert_int_eq(c.anonymous_deny, 0);
	ck_assert_int_eq(c.coord_autostart, 0);
	ck_assert_int_eq(c.coord_idle_exit_ms, 300000);
	ck_assert_int_eq(c.idle_reclaim_ms, 300000);
	ck_assert_int_eq(c.tenant_max_held, 0);
	ck_assert_int_eq(c.tenant_max_waiting, 0);
	ck_assert_str_eq(c.coord_binary, "");
	ck_assert_str_eq(c.coord_log, "");
}
END_TEST

/* Every key, with comments, blanks, tabs and CRLF around. */
static const char FULL[] =
    "# httplock test configuration\n"
    "\n"
    "database = /srv/locks.db\n"
    "  coord_socket=/tmp/c.sock  \n"
    "\tdefault_ttl\t=\t12.5\n"
    "max_ttl = 600\r\n"
    "   # indented comment\n"
    "max_wait = 0.75\n"
    "poll_interval = 0.01\n"
    "busy_timeout = 60\n"
    "max_waiters = 1000000\n"
    "max_waiting = 4000\n"
    "max_waiting_per_client = 25\n"
    "threads = 4\n"
    "max_threads = 4\n"
    "anonymous = deny\n"
    "coord_autostart = YES\n"
    "coord_idle_exit = 1.5\n"
    "coord_binary = /opt/hl/bin/httplock-coord\n"
    "coord_log = /home/u/hl/coord.log\n"
    "synchronous = full";      /* no final newline */

START_TEST(test_full)
{
	struct hl_conf c;
	char err[256] = "unset";

	conf_defaults(&c);
	ck_assert_msg(conf_parse(&c, FULL, strlen(FULL), FILE_NAME, err,
	    sizeof(err)) == 0, "%s", err);
	ck_assert_str_eq(err, "");
	ck_assert_str_eq(c.database, "/srv/locks.db");
	ck_assert_str_eq(c.coord_socket, "/tmp/c.sock");
	ck_assert_int_eq(c.default_ttl_ms, 12500);
	ck_assert_int_eq(c.max_ttl_ms, 600000);
	ck_assert_int_eq(c.max_wait_ms, 750);
	ck_assert_int_eq(c.poll_ms, 10);
	ck_assert_int_eq(c.busy_timeout_ms, 60000);
	ck_assert_int_eq(c.max_waiters, 1000000);
	ck_assert_int_eq(c.max_waiting, 4000);
	ck_assert_int_eq(c.max_waiting_per_client, 25);
	ck_assert_int_eq(c.threads, 4);
	ck_assert_int_eq(c.max_threads, 4);
	ck_assert_int_eq(c.synchronous_full, 1);
	ck_assert_int_eq(c.anonymous_deny, 1);
	ck_assert_int_eq(c.coord_autostart, 1);
	ck_assert_int_eq(c.coord_idle_exit_ms, 1500);
	ck_assert_str_eq(c.coord_binary, "/opt/hl/bin/httplock-coord");
	ck_assert_str_eq(c.coord_log, "/home/u/hl/coord.log");
}
END_TEST

START_TEST(test_empty)
{
	struct hl_conf c, d;
	char err[64];

	conf_defaults(&c);
	conf_defaults(&d);
	ck_assert_int_eq(conf_parse(&c, "", 0, FILE_NAME, err, sizeof(err)),
	    0);
	ck_assert_int_eq(conf_parse(&c, NULL, 0, FILE_NAME, err, sizeof(err)),
	    0);
	ck_assert_int_eq(conf_parse(&c, "\n\n# x\n  \n", 9, FILE_NAME, err,
	    sizeof(err)), 0);
	ck_assert(memcmp(&c, &d, sizeof(c)) == 0);
}
END_TEST

/*
 * One file per row.  want == NULL: it parses, and `field` (if set) has
 * `value`.  Otherwise conf_parse fails and the message contains want.
 */
struct ccase {
	int         line;
	const char *text;
	const char *want;
	const char *field;
	int64_t     value;
};

#define OK(t, f, v) { __LINE__, (t), NULL, (f), (v) }
#define ERR(t, w) { __LINE__, (t), (w), NULL, 0 }
#define GT0 "must be a number of seconds greater than 0"

static const struct ccase ccases[] = {
	/* database, coord_socket */
	OK("database = /x", NULL, 0),
	OK("database = /a b/c.db", NULL, 0),
	ERR("database = x.db",
	    FILE_NAME ":1: database: must be an absolute path"),
	ERR("database = ./x.db", "database: must be an absolute path"),
	ERR("database =", FILE_NAME ":1: database: value is empty"),
	ERR("database = /a#b", "database: '#' is not allowed in a value"),
	ERR("database = /x.db # main", "comments must be on their own line"),
	OK("store = postgresql://db.example/httplock", NULL, 0),
	OK("store = postgres://u@h1:5432,h2:5432/d?target_session_attrs="
	    "read-write", NULL, 0),
	ERR("store = /var/lib/httplock/x.db",
	    FILE_NAME ":1: store: must be a PostgreSQL connection URI"),
	ERR("store = postgresql://", "store: must be a PostgreSQL"),
	ERR("store = host=h dbname=d", "store: must be a PostgreSQL"),
	ERR("store = mysql://h/d", "store: must be a PostgreSQL"),
	OK("coord_socket = /run/x.sock", NULL, 0),
	ERR("coord_socket = run/x.sock",
	    FILE_NAME ":1: coord_socket: must be an absolute path"),

	/* default_ttl, max_ttl and how they relate */
	OK("default_ttl = 1", "default_ttl", 1000),
	OK("default_ttl = 0.001", "default_ttl", 1),
	OK("default_ttl = 3600", "default_ttl", 3600000),
	ERR("default_ttl = 0", FILE_NAME ":1: default_ttl: " GT0),
	ERR("default_ttl = 0.0001", "default_ttl: " GT0),
	ERR("default_ttl = -1", "default_ttl: " GT0),
	ERR("default_ttl = 1e3", "default_ttl: " GT0),
	ERR("default_ttl = thirty", "default_ttl: " GT0),
	ERR("default_ttl = 30s", "default_ttl: " GT0),
	ERR("default_ttl = 30 s", "default_ttl: " GT0),
	ERR("default_ttl = 1.", "default_ttl: " GT0),
	ERR("default_ttl = .5", "default_ttl: " GT0),
	ERR("default_ttl = 604801", "default_ttl: " GT0 " and at most 604800"),
	ERR("default_ttl = 7200", FILE_NAME ":1: default_ttl: must not exceed "
	    "max_ttl (3600 seconds)"),
	ERR("max_ttl = 10", FILE_NAME ":1: max_ttl: must not be less than "
	    "default_ttl (30 seconds)"),
	ERR("max_ttl = 10\ndefault_ttl = 20", FILE_NAME ":2: default_ttl: "
	    "must not exceed max_ttl (10 seconds)"),
	ERR("default_ttl = 20.5\nmax_ttl = 10.25", FILE_NAME ":1: default_ttl: "
	    "must not exceed max_ttl (10.250 seconds)"),
	OK("max_ttl = 10\ndefault_ttl = 10", "max_ttl", 10000),
	OK("max_ttl = 604800", "max_ttl", 604800000),
	OK("max_ttl = 604800\ndefault_ttl = 604800", "default_ttl", 604800000),
	ERR("max_ttl = 0", FILE_NAME ":1: max_ttl: " GT0),
	ERR("max_ttl = 604800.001",
	    "max_ttl: " GT0 " and at most 604800 (7 days)"),
	ERR("max_ttl = 99999999999", "max_ttl: " GT0),

	/* max_wait */
	OK("max_wait = 3600", "max_wait", 3600000),
	OK("max_wait = 0.001", "max_wait", 1),
	ERR("max_wait = 0", FILE_NAME ":1: max_wait: " GT0 " and at most 3600"),
	ERR("max_wait = 3600.5", "max_wait: " GT0),

	/* poll_interval, busy_timeout */
	OK("poll_interval = 0.01", "poll_interval", 10),
	OK("poll_interval = 10", "poll_interval", 10000),
	OK("poll_interval = 0.0109", "poll_interval", 10),
	ERR("poll_interval = 0.009", FILE_NAME ":1: poll_interval: must be a "
	    "number of seconds from 0.01 to 10"),
	ERR("poll_interval = 10.001", "poll_interval: must be a number of "
	    "seconds from 0.01 to 10"),
	ERR("poll_interval = 0", "poll_interval: must be"),
	OK("busy_timeout = 0.1", "busy_timeout", 100),
	OK("busy_timeout = 60", "busy_timeout", 60000),
	ERR("busy_timeout = 0.099", "busy_timeout: must be a number of seconds "
	    "from 0.1 to 60"),
	ERR("busy_timeout = 61", "busy_timeout: must be a number of seconds"),

	/* idle_reclaim, tenant quotas */
	OK("idle_reclaim = 0", "idle_reclaim", 0),
	OK("idle_reclaim = 2592000", "idle_reclaim", 2592000000),
	ERR("idle_reclaim = 2592000.001", "idle_reclaim: must be a number of "
	    "seconds from 0 to 2592000"),
	ERR("idle_reclaim = -1", "idle_reclaim: must be"),
	OK("tenant_max_held = 0", "tenant_max_held", 0),
	OK("tenant_max_held = 10000000", "tenant_max_held", 10000000),
	ERR("tenant_max_held = 10000001", "tenant_max_held: must be an "
	    "integer from 0 (no quota) to 10000000"),
	OK("tenant_max_waiting = 5", "tenant_max_waiting", 5),
	ERR("tenant_max_waiting = -1", "tenant_max_waiting: must be"),

	/* max_waiters, threads, max_threads */
	OK("max_waiters = 1", "max_waiters", 1),
	OK("max_waiters = 1000000", "max_waiters", 1000000),
	OK("max_waiters = 007", "max_waiters", 7),
	ERR("max_waiters = 0", FILE_NAME ":1: max_waiters: must be an integer "
	    "from 1 to 1000000"),
	ERR("max_waiters = 1000001", "max_waiters: must be an integer"),
	ERR("max_waiters = -5", "max_waiters: must be an integer"),
	ERR("max_waiters = 1.5", "max_waiters: must be an integer"),
	ERR("max_waiters = 12345678901234567890", "max_waiters: must be an "
	    "integer"),
	ERR("max_waiters = 0x10", "max_waiters: must be an integer"),
	OK("max_waiting = 1", "max_waiting", 1),
	OK("max_waiting = 1000000", "max_waiting", 1000000),
	ERR("max_waiting = 0", FILE_NAME ":1: max_waiting: must be an integer "
	    "from 1 to 1000000"),
	ERR("max_waiting = 1000001", "max_waiting: must be an integer"),
	OK("max_waiting_per_client = 1", "max_waiting_per_client", 1),
	OK("max_waiting_per_client = 1000000", "max_waiting_per_client",
	    1000000),
	ERR("max_waiting_per_client = 0", FILE_NAME ":1: "
	    "max_waiting_per_client: must be an integer from 1 to 1000000"),
	ERR("max_waiting_per_client = -1", "max_waiting_per_client: must be "
	    "an integer"),
	OK("threads = 1", "threads", 1),
	OK("threads = 512", "threads", 512),
	ERR("threads = 0", "threads: must be an integer from 1 to 4096"),
	ERR("threads = 4097", "threads: must be an integer from 1 to 4096"),
	ERR("threads = 600", FILE_NAME ":1: threads: must not exceed "
	    "max_threads (512)"),
	OK("threads = 4096\nmax_threads = 4096", "threads", 4096),
	OK("max_threads = 65536", "max_threads", 65536),
	OK("max_threads = 8", "max_threads", 8),
	ERR("max_threads = 7", FILE_NAME ":1: max_threads: must not be less "
	    "than threads (8)"),
	ERR("threads = 16\nmax_threads = 8", FILE_NAME ":2: max_threads: must "
	    "not be less than threads (16)"),
	ERR("max_threads = 65537", "max_threads: must be an integer from 1 to "
	    "65536"),

	/* synchronous */
	OK("synchronous = normal", "synchronous", 0),
	OK("synchronous = full", "synchronous", 1),
	OK("synchronous = FULL", "synchronous", 1),
	OK("crash_grace = no", "crash_grace", 0),
	OK("crash_grace = yes", "crash_grace", 1),
	ERR("crash_grace = off", "crash_grace: must be 'yes' or 'no'"),
	ERR("synchronous = off", FILE_NAME ":1: synchronous: must be 'normal' "
	    "or 'full'"),
	ERR("synchronous = fullx", "synchronous: must be 'normal' or 'full'"),

	/* anonymous */
	OK("anonymous = allow", "anonymous", 0),
	OK("anonymous = deny", "anonymous", 1),
	OK("anonymous = Deny", "anonymous", 1),
	ERR("anonymous = no", FILE_NAME ":1: anonymous: must be 'allow' or "
	    "'deny'"),
	ERR("anonymous = denyx", "anonymous: must be 'allow' or 'deny'"),
	ERR("anonymous = full", "anonymous: must be 'allow' or 'deny'"),
	ERR("synchronous = deny", "synchronous: must be 'normal' or 'full'"),
	ERR("anonymous = allow\nanonymous = deny", FILE_NAME ":2: anonymous: "
	    "duplicate key (first set on line 1)"),

	/* coord_autostart, coord_idle_exit (coord_binary, coord_log: paths) */
	OK("coord_autostart = no", "coord_autostart", 0),
	OK("coord_autostart = yes", "coord_autostart", 1),
	ERR("coord_autostart = 1", FILE_NAME ":1: coord_autostart: must be "
	    "'no' or 'yes'"),
	OK("coord_idle_exit = 0", "coord_idle_exit", 0),
	OK("coord_idle_exit = 86400", "coord_idle_exit", 86400000),
	ERR("coord_idle_exit = 86400.001", "coord_idle_exit: must be a number "
	    "of seconds from 0 to 86400"),
	ERR("coord_binary = httplock-coord", "coord_binary: must be an "
	    "absolute path"),

	/* Syntax */
	ERR("foo = 1", FILE_NAME ":1: foo: unknown key"),
	ERR("MAX_WAIT = 1", FILE_NAME ":1: MAX_WAIT: unknown key"),
	ERR("max wait = 1", FILE_NAME ":1: max wait: unknown key"),
	ERR("\xff\xfe = 1", FILE_NAME ":1: unknown key"),
	ERR("max_wait = 1\nmax_wait = 2", FILE_NAME ":2: max_wait: duplicate "
	    "key (first set on line 1)"),
	ERR("max_wait = 1\n# again\nmax_wait = 1", FILE_NAME ":3: max_wait: "
	    "duplicate key (first set on line 1)"),
	ERR("max_wait 5", FILE_NAME ":1: expected 'key = value'"),
	ERR("max_wait", FILE_NAME ":1: expected 'key = value'"),
	ERR("= 5", FILE_NAME ":1: missing key before '='"),
	ERR("max_wait =   ", FILE_NAME ":1: max_wait: value is empty"),
	ERR("max_wait = 5 # five", "max_wait: '#' is not allowed in a value"),
	ERR("max_wait = 5 5", "max_wait: " GT0),
	ERR("max_wait = = 5", "max_wait: " GT0),
	ERR("max_wait = 5\x01", FILE_NAME ":1: control character"),
	ERR("max_wait = \x1b[31m5", FILE_NAME ":1: control character"),
	ERR("# comment\n\n   \nmax_wait = 0\n", FILE_NAME ":4: max_wait: " GT0),
	ERR("max_wait = 1\r\nmax_ttl = 0\r\n", FILE_NAME ":2: max_ttl: " GT0),
	OK("max_wait = 1\r\n\r\n", "max_wait", 1000),
	OK("#max_wait = 0\n", "max_wait", 30000),
	OK("  \t# max_wait = 0", "max_wait", 30000),
};

#define NCCASES ((int)(sizeof(ccases) / sizeof(ccases[0])))

static int64_t
field_val(const struct hl_conf *c, const char *f)
{
	if (strcmp(f, "default_ttl") == 0)
		return c->default_ttl_ms;
	if (strcmp(f, "max_ttl") == 0)
		return c->max_ttl_ms;
	if (strcmp(f, "max_wait") == 0)
		return c->max_wait_ms;
	if (strcmp(f, "poll_interval") == 0)
		return c->poll_ms;
	if (strcmp(f, "busy_timeout") == 0)
		return c->busy_timeout_ms;
	if (strcmp(f, "max_waiters") == 0)
		return c->max_waiters;
	if (strcmp(f, "idle_reclaim") == 0)
		return c->idle_reclaim_ms;
	if (strcmp(f, "tenant_max_held") == 0)
		return c->tenant_max_held;
	if (strcmp(f, "tenant_max_waiting") == 0)
		return c->tenant_max_waiting;
	if (strcmp(f, "max_waiting") == 0)
		return c->max_waiting;
	if (strcmp(f, "max_waiting_per_client") == 0)
		return c->max_waiting_per_client;
	if (strcmp(f, "threads") == 0)
		return c->threads;
	if (strcmp(f, "max_threads") == 0)
		return c->max_threads;
	if (strcmp(f, "synchronous") == 0)
		return c->synchronous_full;
	if (strcmp(f, "crash_grace") == 0)
		return c->crash_grace;
	if (strcmp(f, "anonymous") == 0)
		return c->anonymous_deny;
	if (strcmp(f, "coord_autostart") == 0)
		return c->coord_autostart;
	if (strcmp(f, "coord_idle_exit") == 0)
		return c->coord_idle_exit_ms;
	ck_abort_msg("test table names an unknown field '%s'", f);
	return -1;
}

START_TEST(test_cases)
{
	const struct ccase *t = &ccases[_i];
	struct hl_conf c;
	char err[512] = "";
	int rc;

	conf_defaults(&c);
	rc = conf_parse(&c, t->text, strlen(t->text), FILE_NAME, err,
	    sizeof(err));
	if (t->want == NULL) {
		ck_assert_msg(rc == 0, "case %d (line %d): failed: %s", _i,
		    t->line, err);
		if (t->field != NULL)
			ck_assert_msg(field_val(&c, t->field) == t->value,
			    "case %d (line %d): %s is %" PRId64 ", want %"
			    PRId64, _i, t->line, t->field,
			    field_val(&c, t->field), t->value);
	} else {
		ck_assert_msg(rc == -1, "case %d (line %d): parsed, want "
		    "'%s'", _i, t->line, t->want);
		ck_assert_msg(strstr(err, t->want) != NULL, "case %d (line "
		    "%d): message '%s' lacks '%s'", _i, t->line, err,
		    t->want);
		ck_assert_msg(strncmp(err, FILE_NAME ":", strlen(FILE_NAME ":"))
		    == 0, "case %d (line %d): '%s' does not start with the "
		    "file name", _i, t->line, err);
	}
}
END_TEST

/* Paths: the limits of the two arrays. */
START_TEST(test_path_limits)
{
	char text[1100], line[256], path[CONF_SOCK_MAX + 1];
	struct hl_conf c;
	char err[256];
	size_t n;

	/*
	 * database could hold CONF_PATH_MAX - 1 bytes, but a line may not be
	 * longer than 1024, so that is the practical limit.
	 */
	n = (size_t)snprintf(text, sizeof(text), "database = /");
	memset(text + n, 'd', 1024 - n);
	conf_defaults(&c);
	ck_assert_msg(conf_parse(&c, text, 1024, FILE_NAME, err, sizeof(err))
	    == 0, "%s", err);
	ck_assert_uint_eq(strlen(c.database), 1024 - strlen("database = "));
	text[1024] = 'd';
	ck_assert_int_eq(conf_parse(&c, text, 1025, FILE_NAME, err,
	    sizeof(err)), -1);
	ck_assert_str_eq(err, FILE_NAME ":1: line is longer than 1024 bytes");

	/* The coordinator socket: 107 bytes fit in sun_path, 108 do not. */
	memset(path, 's', sizeof(path));
	path[0] = '/';
	path[CONF_SOCK_MAX - 1] = '\0';
	snprintf(line, sizeof(line), "coord_socket = %s\n", path);
	conf_defaults(&c);
	ck_assert_msg(conf_parse(&c, line, strlen(line), FILE_NAME, err,
	    sizeof(err)) == 0, "%s", err);
	ck_assert_str_eq(c.coord_socket, path);

	memset(path, 's', sizeof(path));
	path[0] = '/';
	path[CONF_SOCK_MAX] = '\0';
	snprintf(line, sizeof(line), "coord_socket = %s\n", path);
	ck_assert_int_eq(conf_parse(&c, line, strlen(line), FILE_NAME, err,
	    sizeof(err)), -1);
	ck_assert_ptr_nonnull(strstr(err, FILE_NAME ":1: coord_socket: must "
	    "be shorter than 108 bytes"));
	ck_assert_ptr_nonnull(strstr(err, "sun_path"));
}
END_TEST

START_TEST(test_line_limit)
{
	char text[1100];
	struct hl_conf c;
	char err[256];

	/* A comment of exactly 1024 bytes is fine, 1025 is not. */
	memset(text, 'c', sizeof(text));
	text[0] = '#';
	text[1024] = '\n';
	memcpy(text + 1025, "max_wait = 2\n", 13);
	conf_defaults(&c);
	ck_assert_msg(conf_parse(&c, text, 1038, FILE_NAME, err, sizeof(err))
	    == 0, "%s", err);
	ck_assert_int_eq(c.max_wait_ms, 2000);

	memset(text, 'c', sizeof(text));
	text[0] = '#';
	text[1025] = '\n';
	conf_defaults(&c);
	ck_assert_int_eq(conf_parse(&c, text, 1026, FILE_NAME, err,
	    sizeof(err)), -1);
	ck_assert_str_eq(err, FILE_NAME ":1: line is longer than 1024 bytes");
}
END_TEST

START_TEST(test_nul)
{
	static const char text[] = "max_wait = 1\nmax_ttl = 60\0\n";
	struct hl_conf c;
	char err[256];

	conf_defaults(&c);
	ck_assert_int_eq(conf_parse(&c, text, sizeof(text) - 1, FILE_NAME, err,
	    sizeof(err)), -1);
	ck_assert_str_eq(err, FILE_NAME ":2: NUL byte in the file");
	/* len is honoured: the text need not be NUL-terminated. */
	conf_defaults(&c);
	ck_assert_int_eq(conf_parse(&c, "max_wait = 12", 12, FILE_NAME, err,
	    sizeof(err)), 0);
	ck_assert_int_eq(c.max_wait_ms, 1000);
}
END_TEST

START_TEST(test_small_err)
{
	struct hl_conf c;
	char err[8];

	conf_defaults(&c);
	/* A short buffer gets a cut, terminated message; none is fine too. */
	ck_assert_int_eq(conf_parse(&c, "foo = 1", 7, FILE_NAME, err,
	    sizeof(err)), -1);
	ck_assert_uint_lt(strlen(err), sizeof(err));
	ck_assert_int_eq(conf_parse(&c, "foo = 1", 7, FILE_NAME, NULL, 0), -1);
	ck_assert_int_eq(conf_parse(&c, "foo = 1", 7, NULL, err, 0), -1);
}
END_TEST

/* Writes text to a fresh temporary file; returns its malloc'd path. */
static char *
tmpfile_with(const char *text, size_t len)
{
	char *path = strdup("/tmp/check_conf.XXXXXX");
	int fd;

	ck_assert_ptr_nonnull(path);
	fd = mkstemp(path);
	ck_assert_int_ne(fd, -1);
	ck_assert_int_eq(write(fd, text, len), (ssize_t)len);
	close(fd);
	return path;
}

START_TEST(test_load)
{
	struct hl_conf c;
	char err[512], want[600];
	char *path, *big;

	path = tmpfile_with(FULL, strlen(FULL));
	memset(&c, 0xa5, sizeof(c));
	ck_assert_msg(conf_load(&c, path, err, sizeof(err)) == 0, "%s", err);
	ck_assert_int_eq(c.max_wait_ms, 750);
	ck_assert_int_eq(c.synchronous_full, 1);
	unlink(path);
	free(path);

	/* conf_load starts from the defaults. */
	path = tmpfile_with("max_wait = 2\n", 13);
	memset(&c, 0xa5, sizeof(c));
	ck_assert_int_eq(conf_load(&c, path, err, sizeof(err)), 0);
	ck_assert_int_eq(c.max_wait_ms, 2000);
	ck_assert_int_eq(c.max_ttl_ms, 3600000);
	unlink(path);
	free(path);

	/* Errors name the file it was given. */
	path = tmpfile_with("max_wait = 2\nmax_ttl = 0\n", 25);
	ck_assert_int_eq(conf_load(&c, path, err, sizeof(err)), -1);
	snprintf(want, sizeof(want), "%s:2: max_ttl: %s", path, GT0);
	ck_assert_msg(strstr(err, want) != NULL, "'%s' lacks '%s'", err, want);
	unlink(path);
	free(path);

	ck_assert_int_eq(conf_load(&c, "/nonexistent/httplock.conf", err,
	    sizeof(err)), -1);
	ck_assert_str_eq(err, "/nonexistent/httplock.conf: No such file or "
	    "directory");
	ck_assert_int_eq(conf_load(&c, "/tmp", err, sizeof(err)), -1);
	ck_assert_str_eq(err, "/tmp: Is a directory");

	/* CONF_FILE_MAX bytes of comments load; one byte more does not. */
	big = malloc(CONF_FILE_MAX + 1);
	ck_assert_ptr_nonnull(big);
	memset(big, '#', CONF_FILE_MAX + 1);
	for (size_t i = 1000; i < CONF_FILE_MAX + 1; i += 1000)
		big[i] = '\n';
	path = tmpfile_with(big, CONF_FILE_MAX);
	ck_assert_msg(conf_load(&c, path, err, sizeof(err)) == 0, "%s", err);
	unlink(path);
	free(path);
	path = tmpfile_with(big, CONF_FILE_MAX + 1);
	ck_assert_int_eq(conf_load(&c, path, err, sizeof(err)), -1);
	snprintf(want, sizeof(want), "%s: file is larger than 65536 bytes",
	    path);
	ck_assert_str_eq(err, want);
	unlink(path);
	free(path);
	free(big);
}
END_TEST

/*
 * conf/httplock.conf sets every key to its default, so the sample and
 * conf_defaults() cannot drift apart.  Found through HTTPLOCK_SRCDIR
 * (set by `make check`), else from the source tree's top.
 */
START_TEST(test_sample)
{
	const char *srcdir = getenv("HTTPLOCK_SRCDIR");
	char path[4096], err[512], text[CONF_FILE_MAX];
	struct hl_conf c, d;
	FILE *f;
	size_t len;
	int nkeys = 0;
	char *line, *next;

	snprintf(path, sizeof(path), "%s/conf/httplock.conf",
	    srcdir != NULL && srcdir[0] != '\0' ? srcdir : ".");
	ck_assert_msg(conf_load(&c, path, err, sizeof(err)) == 0, "%s", err);
	conf_defaults(&d);
	ck_assert(memcmp(&c, &d, sizeof(c)) == 0);

	/* And it does set every key, rather than leave some out. */
	f = fopen(path, "r");
	ck_assert_ptr_nonnull(f);
	len = fread(text, 1, sizeof(text) - 1, f);
	fclose(f);
	text[len] = '\0';
	for (line = text; line != NULL; line = next) {
		next = strchr(line, '\n');
		if (next != NULL)
			*next++ = '\0';
		if (line[0] != '#' && strchr(line, '=') != NULL)
			nkeys++;
	}
	/* coord_binary, coord_log and store default to empty, which no
	 * line can say: the sample shows them commented out. */
	ck_assert_int_eq(nkeys, 20);
}
END_TEST

START_TEST(test_default_path)
{
	ck_assert_int_eq(setenv("HTTPLOCK_CONF", "/etc/x.conf", 1), 0);
	ck_assert_str_eq(conf_default_path(), "/etc/x.conf");
	ck_assert_int_eq(setenv("HTTPLOCK_CONF", "", 1), 0);
	ck_assert_str_eq(conf_default_path(), SYSCONFDIR "/httplock.conf");
	ck_assert_int_eq(unsetenv("HTTPLOCK_CONF"), 0);
	ck_assert_str_eq(conf_default_path(), SYSCONFDIR "/httplock.conf");
}
END_TEST

/* conf_check_sockpath: a path, or what looks like a TCP address. */
START_TEST(test_sockpath)
{
	static const char *const good[] = {
		"/run/httplock/worker.sock", "worker.sock", "./0.0.0.0:18097",
		"/run/x:y.sock", "./9000", "sock-1", "a.b",
	};
	static const char *const tcp[] = {
		"0.0.0.0:18097", "127.0.0.1:9000", "localhost:9000",
		"[::1]:9000", "9000", "unix:", ":9000",
	};
	char err[256], longp[CONF_SOCK_MAX + 1];
	size_t i;

	for (i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		ck_assert_msg(conf_check_sockpath(good[i], err,
		    sizeof(err)) == 0, "%s refused: %s", good[i], err);
	for (i = 0; i < sizeof(tcp) / sizeof(tcp[0]); i++) {
		err[0] = '\0';
		ck_assert_msg(conf_check_sockpath(tcp[i], err,
		    sizeof(err)) == -1, "%s accepted", tcp[i]);
		ck_assert_msg(strstr(err, "looks like a TCP address") != NULL,
		    "%s: %s", tcp[i], err);
	}
	ck_assert_int_eq(conf_check_sockpath("", err, sizeof(err)), -1);
	memset(longp, 'a', sizeof(longp) - 1);
	longp[0] = '/';
	longp[CONF_SOCK_MAX] = '\0';
	ck_assert_int_eq(conf_check_sockpath(longp, err, sizeof(err)), -1);
	ck_assert_ptr_nonnull(strstr(err, "too long"));
	longp[CONF_SOCK_MAX - 1] = '\0';
	ck_assert_int_eq(conf_check_sockpath(longp, err, sizeof(err)), 0);
}
END_TEST

/* parse_seconds */
struct scase {
	int         line;
	const char *s;
	int64_t     max;
	int         rc;
	int64_t     ms;
};

#define BIG INT64_C(999999999999)
#define SOK(s, ms) { __LINE__, (s), BIG, 0, (ms) }
#define SBAD(s) { __LINE__, (s), BIG, -1, 0 }

static const struct scase scases[] = {
	SOK("0", 0),
	SOK("30", 30000),
	SOK("0.25", 250),
	SOK("1.5", 1500),
	SOK("0.001", 1),
	SOK("0.0009", 0),
	SOK("1.0009", 1000),
	SOK("1.9999999999999999999999", 1999),
	SOK("007", 7000),
	SOK("999999999", INT64_C(999999999000)),
	SOK("999999999.999", INT64_C(999999999999)),
	SBAD("1000000000"),
	SBAD("0000000001"),
	SBAD(""),
	SBAD("."),
	SBAD("1."),
	SBAD(".5"),
	SBAD("-1"),
	SBAD("+1"),
	SBAD(" 1"),
	SBAD("1 "),
	SBAD("1\n"),
	SBAD("1e3"),
	SBAD("1E3"),
	SBAD("nan"),
	SBAD("inf"),
	SBAD("0x10"),
	SBAD("1.2.3"),
	SBAD("1..2"),
	SBAD("1,5"),
	SBAD("1.5s"),
	SBAD("\xd9\xa1"),            /* ARABIC-INDIC DIGIT ONE */
	{ __LINE__, "30", 30000, 0, 30000 },
	{ __LINE__, "30.000", 30000, 0, 30000 },
	{ __LINE__, "30.0009", 30000, 0, 30000 },
	{ __LINE__, "30.001", 30000, -1, 0 },
	{ __LINE__, "0", 0, 0, 0 },
	{ __LINE__, "0.001", 0, -1, 0 },
	{ __LINE__, "0", -1, -1, 0 },
};

START_TEST(test_seconds)
{
	const struct scase *t = &scases[_i];
	int64_t ms = -12345;
	int rc;

	rc = parse_seconds(t->s, strlen(t->s), t->max, &ms);
	ck_assert_msg(rc == t->rc, "seconds case %d (line %d) '%s': rc %d, "
	    "want %d", _i, t->line, t->s, rc, t->rc);
	if (rc == 0)
		ck_assert_msg(ms == t->ms, "seconds case %d (line %d) '%s': "
		    "%" PRId64 " ms, want %" PRId64, _i, t->line, t->s, ms,
		    t->ms);
	else
		ck_assert_msg(ms == -12345, "seconds case %d (line %d): *ms "
		    "written on failure", _i, t->line);
}
END_TEST

START_TEST(test_seconds_len)
{
	int64_t ms = 0;

	/* Only len bytes are looked at. */
	ck_assert_int_eq(parse_seconds("12345", 2, BIG, &ms), 0);
	ck_assert_int_eq(ms, 12000);
	ck_assert_int_eq(parse_seconds("1.5xyz", 3, BIG, &ms), 0);
	ck_assert_int_eq(ms, 1500);
	ck_assert_int_eq(parse_seconds("1.5", 2, BIG, &ms), -1);
	ck_assert_int_eq(parse_seconds("5", 0, BIG, &ms), -1);
	ck_assert_int_eq(parse_seconds(NULL, 0, BIG, &ms), -1);
}
END_TEST

static Suite *
conf_suite(void)
{
	Suite *s = suite_create("conf");
	TCase *tc;

	tc = tcase_create("parse");
	tcase_add_test(tc, test_defaults);
	tcase_add_test(tc, test_full);
	tcase_add_test(tc, test_empty);
	tcase_add_loop_test(tc, test_cases, 0, NCCASES);
	tcase_add_test(tc, test_path_limits);
	tcase_add_test(tc, test_line_limit);
	tcase_add_test(tc, test_nul);
	tcase_add_test(tc, test_small_err);
	suite_add_tcase(s, tc);

	tc = tcase_create("load");
	tcase_add_test(tc, test_load);
	tcase_add_test(tc, test_sample);
	tcase_add_test(tc, test_default_path);
	tcase_add_test(tc, test_sockpath);
	suite_add_tcase(s, tc);

	tc = tcase_create("seconds");
	tcase_add_loop_test(tc, test_seconds, 0,
	    (int)(sizeof(scases) / sizeof(scases[0])));
	tcase_add_test(tc, test_seconds_len);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(conf_suite());
	int failed;

	/* Fork mode, unless CK_FORK=no asks for one process (a debugger,
	 * or LeakSanitizer seeing every test). */
	srunner_set_fork_status(sr, getenv("CK_FORK") != NULL ?
	    CK_FORK_GETENV : CK_FORK);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

/*
 * args: the httplock command line.  The table of subcommands says what
 * each takes (positional arguments, options, a COMMAND to run); options
 * may stand anywhere before run's COMMAND, the first other argument names
 * the subcommand.  Also --help and --version.
 */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

#ifndef PACKAGE_VERSION
#define PACKAGE_VERSION "unknown"
#endif

#define DEFAULT_URL     "http://127.0.0.1:8080/"
#define DEFAULT_GRACE   5.0          /* seconds between SIGTERM and SIGKILL */
#define SECS_MAX        1e9          /* any time argument */
#define STATUS_MAX      255          /* the largest exit status */

/* getopt_long values of the long-only options. */
enum {
	LO_TTL = 256, LO_OWNER, LO_REQID, LO_JSON, LO_PREFIX, LO_GRACE,
	LO_URL, LO_NETRC_FILE
};

static const struct cmd cmds[] = {
	{ "acquire", 1, NULL, OPT_WAIT | OPT_NOWAIT | OPT_TTL | OPT_OWNER |
	    OPT_REQID | OPT_JSON, 0, cmd_acquire },
	{ "release", 2, "TOKEN", 0, 0, cmd_release },
	{ "renew", 2, "TOKEN", OPT_TTL | OPT_JSON, 0, cmd_renew },
	{ "cancel", 2, "REQUEST_ID", OPT_JSON, 0, cmd_cancel },
	{ "status", 1, NULL, OPT_JSON, 0, cmd_status },
	{ "ls", 0, NULL, OPT_PREFIX | OPT_JSON, 0, cmd_ls },
	{ "run", 1, NULL, OPT_WAIT | OPT_NOWAIT | OPT_TTL | OPT_OWNER |
	    OPT_CONFLICT | OPT_GRACE, 1, cmd_run },
};

static const struct option longopts[] = {
	{ "url", required_argument, NULL, LO_URL },
	{ "user", required_argument, NULL, 'u' },
	{ "netrc-file", required_argument, NULL, LO_NETRC_FILE },
	{ "help", no_argument, NULL, 'h' },
	{ "version", no_argument, NULL, 'V' },
	{ "wait", required_argument, NULL, 'w' },
	{ "timeout", required_argument, NULL, 'w' },
	{ "nonblock", no_argument, NULL, 'n' },
	{ "no-wait", no_argument, NULL, 'n' },
	{ "conflict-exit-code", required_argument, NULL, 'E' },
	{ "ttl", required_argument, NULL, LO_TTL },
	{ "owner", required_argument, NULL, LO_OWNER },
	{ "request-id", required_argument, NULL, LO_REQID },
	{ "json", no_argument, NULL, LO_JSON },
	{ "prefix", required_argument, NULL, LO_PREFIX },
	{ "grace", required_argument, NULL, LO_GRACE },
	{ NULL, 0, NULL, 0 }
};

/* The options' names, for "CMD does not take OPTION". */
static const struct {
	unsigned    bit;
	const char *name;
} optnames[] = {
	{ OPT_WAIT, "-w" }, { OPT_NOWAIT, "-n" }, { OPT_TTL, "--ttl" },
	{ OPT_OWNER, "--owner" }, { OPT_REQID, "--request-id" },
	{ OPT_JSON, "--json" }, { OPT_PREFIX, "--prefix" },
	{ OPT_CONFLICT, "-E" }, { OPT_GRACE, "--grace" },
};

static const char usage_text[] =
"usage: httplock [--url URL] [-u USER:PASS] [--netrc-file FILE] COMMAND ...\n"
"\n"
"  acquire NAME [-w SECS | -n] [--ttl SECS] [--owner TEXT] [--request-id ID] [--json]\n"
"                   take the lock; print its token\n"
"  release NAME TOKEN\n"
"                   give the lock back\n"
"  renew NAME TOKEN [--ttl SECS] [--json]\n"
"                   extend the lease; print the new expiry (Unix time)\n"
"  cancel NAME REQUEST_ID [--json]\n"
"                   withdraw the acquire with that id from the queue, or\n"
"                   release its grant; print \"waiting\" or \"held\"\n"
"  status NAME [--json]\n"
"                   who holds the lock and how many wait\n"
"  ls [--prefix P] [--json]\n"
"                   held or awaited locks: name, holders, waiters\n"
"  run NAME [-w SECS | -n] [--ttl SECS] [--owner TEXT] [-E CODE] [--grace SECS]\n"
"      [--] COMMAND [ARGS...]\n"
"                   run COMMAND holding the lock, renewing its lease\n"
"\n"
"  --url URL        the server (default: $HTTPLOCK_URL, else " DEFAULT_URL ")\n"
"  -u, --user USER:PASS\n"
"                   web-server credentials (default: $HTTPLOCK_USER, else ~/.netrc)\n"
"  --netrc-file FILE\n"
"                   take credentials from FILE instead of ~/.netrc\n"
"  -w, --wait SECS  wait at most SECS for the lock (capped by the server's max_wait)\n"
"  -n, --nonblock   do not wait if the lock is held\n"
"  --ttl SECS       lease length (default: the server's default_ttl)\n"
"  --owner TEXT     a label shown by status\n"
"  --request-id ID  the acquire's id for safe retries (default: a random one)\n"
"  -E, --conflict-exit-code CODE\n"
"                   run: exit status when the lock stays held (default 1)\n"
"  --grace SECS     run: SIGTERM to SIGKILL when the lease is lost (default 5)\n"
"  --json           print JSON\n"
"  -h, --help       this text;  -V, --version  the version\n"
"\n"
"exit status:\n"
"  0  success; run: the command's status (128+N if signal N killed it)\n"
"  1  the lock stayed held: timeout or queue full (run: -E CODE)\n"
"  2  usage error\n"
"  3  the server refused the request (4xx, e.g. bad_request, auth)\n"
"  4  not held: the token does not hold the lock (expired, released, wrong),\n"
"     or cancel found no acquire with that id waiting or holding it\n"
"  5  the server is unreachable or unavailable (5xx), or a local failure\n"
"  6  run: the lease was lost; the command was terminated\n"
"  7  run: the command could not be started\n"
"\n"
"See httplock(1).\n";

/*
 * Parses a number of seconds: a decimal >= 0 (> 0 if `positive`), at most
 * SECS_MAX.  Returns 0, or -1 with *errstr saying why.
 */
static int
parse_secs(const char *s, int positive, double *out, const char **errstr)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (end == s || *end != '\0' || s[0] == ' ' || s[0] == '\t' ||
	    isnan(v)) {
		*errstr = "not a number";
		return -1;
	}
	if (errno == ERANGE || !isfinite(v) || v > SECS_MAX) {
		*errstr = "out of range";
		return -1;
	}
	if (v < 0 || (positive && v <= 0)) {
		*errstr = positive ? "must be > 0" : "must be >= 0";
		return -1;
	}
	*out = v;
	return 0;
}

/* Parses an exit status, 0 to STATUS_MAX.  Returns 0, or -1. */
static int
parse_status(const char *s, int *out)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (end == s || *end != '\0' || errno != 0 || v < 0 || v > STATUS_MAX)
		return -1;
	*out = (int)v;
	return 0;
}

static const struct cmd *
find_cmd(const char *name)
{
	size_t i;

	for (i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
		if (strcmp(cmds[i].name, name) == 0)
			return &cmds[i];
	return NULL;
}

/*
 * Takes the next argument that is not an option: the command's name first,
 * then its arguments.  Returns 1 if taken, 0 if it starts run's COMMAND,
 * -1 on a usage error (printed).
 */
static int
take_arg(struct args *a, const char *arg)
{
	if (a->cmd == NULL) {
		if ((a->cmd = find_cmd(arg)) == NULL) {
			out_usage_error("unknown command '%s'", arg);
			return -1;
		}
		return 1;
	}
	if (a->npos < a->cmd->nargs) {
		a->pos[a->npos++] = arg;
		return 1;
	}
	if (a->cmd->command)
		return 0;
	/* Not echoed: it may be a token. */
	out_usage_error("%s: too many arguments", a->cmd->name);
	return -1;
}

/* Takes the number of seconds of option `opt` into *out (see
 * parse_secs()).  Returns 0, or -1 on a usage error (printed). */
static int
take_secs(const char *opt, const char *arg, int positive, double *out)
{
	const char *errstr;

	if (parse_secs(arg, positive, out, &errstr) == -1) {
		out_usage_error("%s %s: %s", opt, arg, errstr);
		return -1;
	}
	return 0;
}

/* Handles one option.  Returns 0, 1 to exit 0 (help, version), -1 on a
 * usage error (printed). */
static int
take_opt(struct args *a, int c, const char *arg)
{
	switch (c) {
	case 'h':
		fputs(usage_text, stdout);
		return 1;
	case 'V':
		printf("httplock %s\n", PACKAGE_VERSION);
		return 1;
	case LO_URL:
		a->url = arg;
		return 0;
	case 'u':
		a->user = arg;
		return 0;
	case LO_NETRC_FILE:
		a->netrc_file = arg;
		return 0;
	case 'w':
		a->seen |= OPT_WAIT;
		return take_secs("-w", arg, 0, &a->wait);
	case 'n':
		a->seen |= OPT_NOWAIT;
		a->wait = 0;
		return 0;
	case 'E':
		a->seen |= OPT_CONFLICT;
		if (parse_status(arg, &a->conflict_exit) == -1) {
			out_usage_error("-E %s: not an exit status (0-%d)", arg,
			    STATUS_MAX);
			return -1;
		}
		return 0;
	case LO_TTL:
		a->seen |= OPT_TTL;
		return take_secs("--ttl", arg, 1, &a->ttl);
	case LO_GRACE:
		a->seen |= OPT_GRACE;
		return take_secs("--grace", arg, 0, &a->grace);
	case LO_OWNER:
		a->seen |= OPT_OWNER;
		a->owner = arg;
		return 0;
	case LO_REQID:
		a->seen |= OPT_REQID;
		a->request_id = arg;
		return 0;
	case LO_PREFIX:
		a->seen |= OPT_PREFIX;
		a->prefix = arg;
		return 0;
	case LO_JSON:
		a->seen |= OPT_JSON;
		a->json = 1;
		return 0;
	default:
		out_usage_error("unexpected option");
		return -1;
	}
}

/*
 * Parses the command line into *a: options anywhere before run's COMMAND,
 * the first other argument names the command.  Returns 0, 1 to exit 0
 * (help, version), or -1 on a usage error (printed).
 */
int
args_parse(int argc, char **argv, struct args *a)
{
	const char *env;
	size_t i;
	int c, r;

	memset(a, 0, sizeof(*a));
	opterr = 0;
	a->url = (env = getenv("HTTPLOCK_URL")) != NULL && *env != '\0' ?
	    env : DEFAULT_URL;
	a->user = (env = getenv("HTTPLOCK_USER")) != NULL && *env != '\0' ?
	    env : NULL;
	a->wait = -1;
	a->grace = DEFAULT_GRACE;
	a->conflict_exit = XS_HELD;

	for (;;) {
		/* Arguments are taken here, options by getopt_long ("+":
		 * it stops at each argument and at "--"). */
		if (optind < argc && (argv[optind][0] != '-' ||
		    argv[optind][1] == '\0')) {
			if ((r = take_arg(a, argv[optind])) == -1)
				return -1;
			if (r == 0)
				break;
			optind++;
			continue;
		}
		if ((c = getopt_long(argc, argv, "+:hVu:w:nE:", longopts,
		    NULL)) == -1)
			break;
		if (c == '?' || c == ':') {
			/* Our own message: getopt's names argv[0], which
			 * may be libtool's .libs/ path. */
			if (optopt != 0 && optopt < 256)
				out_usage_error("option -%c %s", optopt, c == '?' ?
				    "is unknown" : "needs an argument");
			else
				out_usage_error("option %s %s", argv[optind - 1],
				    c == '?' ? "is unknown" : "needs an argument");
			return -1;
		}
		if ((r = take_opt(a, c, optarg)) != 0)
			return r;
	}
	/* After "--" everything is an argument. */
	while (optind < argc && (r = take_arg(a, argv[optind])) == 1)
		optind++;
	if (optind < argc && r == -1)
		return -1;

	if (a->cmd == NULL) {
		out_usage_error("no command given");
		return -1;
	}
	for (i = 0; i < sizeof(optnames) / sizeof(optnames[0]); i++) {
		if ((a->seen & optnames[i].bit) && !(a->cmd->opts & optnames[i].bit)) {
			out_usage_error("%s does not take %s", a->cmd->name,
			    optnames[i].name);
			return -1;
		}
	}
	if ((a->seen & OPT_WAIT) && (a->seen & OPT_NOWAIT)) {
		out_usage_error("%s: -w and -n exclude each other", a->cmd->name);
		return -1;
	}
	if (a->npos < a->cmd->nargs) {
		out_usage_error("%s: missing %s", a->cmd->name,
		    a->npos == 0 ? "NAME" : a->cmd->arg2);
		return -1;
	}
	if (a->cmd->command) {
		if (optind >= argc) {
			out_usage_error("%s: missing COMMAND", a->cmd->name);
			return -1;
		}
		a->command = argv + optind;
	}
	return 0;
}

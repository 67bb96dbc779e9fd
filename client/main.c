/*
 * main: the httplock command's start.  It remembers what run's command is
 * to inherit, parses the command line, opens a libhttplock handle on the
 * server's URL and hands over to the subcommand, whose result is the exit
 * status.  cli.h maps the command's files.
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"

int
main(int argc, char **argv)
{
	struct args a;
	struct httplock_opts ho;
	struct httplock *h;
	struct sigaction sa;
	int xs;

	spawn_init();
	/* A closed stdout or socket is an error to report, not a death. */
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = SIG_IGN;
	sigemptyset(&sa.sa_mask);
	(void)sigaction(SIGPIPE, &sa, NULL);

	switch (args_parse(argc, argv, &a)) {
	case -1:
		return XS_USAGE;
	case 1:
		return out_flush("--help") == XS_OK ? XS_OK : XS_USAGE;
	}
	memset(&ho, 0, sizeof(ho));
	out_credentials_given(a.user != NULL);
	ho.user = a.user;
	ho.netrc = a.user == NULL;        /* optional, as curl --netrc-optional */
	ho.netrc_file = a.netrc_file;
	if ((h = httplock_new(a.url, &ho)) == NULL) {
		/* The URL is not echoed: it may hold a password. */
		fprintf(stderr, "httplock: the server URL is not http:// or "
		    "https:// (or out of memory)\n");
		return XS_USAGE;
	}
	xs = a.cmd->fn(h, &a);
	httplock_free(h);
	return xs;
}

/*
 * empty_fcgi: the FastCGI ceiling for bench/run.
 *
 * A threaded libfcgi responder that reads each request's body and answers
 * every request with a small JSON 200 shaped like an httplock grant (so the
 * load generator's W1 loop runs unchanged against it).  Spawned by lighttpd
 * exactly like httplock-worker (the FastCGI socket on fd 0); the thread
 * count comes from $EMPTY_FCGI_THREADS (default 8, httplock's `threads`).
 *
 *   cc -O2 -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -pthread \
 *      bench/empty_fcgi.c -o empty_fcgi -lfcgi
 */
#include <fcgiapp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

static const char BODY[] =
    "{\"lock\":\"x\",\"token\":\"00000000000000000000000000000000\","
    "\"fence\":1,\"ttl\":30.000,\"acquired_at\":1.000,"
    "\"expires_at\":31.000,\"owner\":\"\",\"released\":true}\n";

static void *
serve(void *arg)
{
	FCGX_Request fr;
	char hdr[256], sink[4096];
	int n;

	(void)arg;
	if (FCGX_InitRequest(&fr, 0, 0) != 0)
		return NULL;
	while (FCGX_Accept_r(&fr) >= 0) {
		while (FCGX_GetStr(sink, (int)sizeof(sink), fr.in) > 0)
			;
		n = snprintf(hdr, sizeof(hdr), "Status: 200 OK\r\n"
		    "Content-Type: application/json\r\n"
		    "Cache-Control: no-store\r\n"
		    "Content-Length: %zu\r\n\r\n", sizeof(BODY) - 1);
		FCGX_PutStr(hdr, n, fr.out);
		FCGX_PutStr(BODY, (int)sizeof(BODY) - 1, fr.out);
		FCGX_Finish_r(&fr);
	}
	return NULL;
}

int
main(void)
{
	const char *e = getenv("EMPTY_FCGI_THREADS");
	int i, nthreads = e != NULL ? atoi(e) : 8;
	pthread_t t;

	if (nthreads < 1 || nthreads > 4096)
		nthreads = 8;
	/* Die with the web server, like httplock-worker. */
	prctl(PR_SET_PDEATHSIG, SIGTERM);
	if (FCGX_Init() != 0 || FCGX_IsCGI()) {
		fprintf(stderr, "empty_fcgi: fd 0 is not a FastCGI socket\n");
		return 1;
	}
	for (i = 1; i < nthreads; i++)
		if (pthread_create(&t, NULL, serve, NULL) != 0)
			return 1;
	serve(NULL);
	return 0;
}

/*
 * unit: the harness the unit tests share (unit.h): the run's top
 * directory, a directory per test, copying a file into it, removing a
 * tree, running a suite.
 */
#include <sys/stat.h>
#include <sys/types.h>

#include <check.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "unit.h"

char unit_topdir[64];

void
unit_testdir(char *dir, size_t n)
{
	ck_assert(snprintf(dir, n, "%s/t.XXXXXX", unit_topdir) < (int)n);
	ck_assert_ptr_nonnull(mkdtemp(dir));
}

void
unit_copy_fd(int in, const char *to)
{
	char buf[65536];
	ssize_t n;
	int out;

	out = open(to, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	ck_assert_int_ge(out, 0);
	while ((n = read(in, buf, sizeof(buf))) > 0)
		ck_assert_int_eq(write(out, buf, (size_t)n), n);
	ck_assert_int_eq(n, 0);
	ck_assert_int_eq(close(in), 0);
	ck_assert_int_eq(close(out), 0);
}

static int
rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)ftw;
	return flag == FTW_DP ? rmdir(path) : unlink(path);
}

int
unit_rm_tree(const char *path)
{
	return nftw(path, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
}

int
unit_run(Suite *s, const char *tmpl)
{
	SRunner *sr;
	int failed;

	sr = srunner_create(s);
	if (snprintf(unit_topdir, sizeof(unit_topdir), "%s", tmpl) >=
	    (int)sizeof(unit_topdir) || mkdtemp(unit_topdir) == NULL) {
		perror("mkdtemp");
		srunner_free(sr);
		return EXIT_FAILURE;
	}
	srunner_set_fork_status(sr, CK_FORK);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	if (unit_rm_tree(unit_topdir) != 0) {
		perror(unit_topdir);
		failed++;
	}
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

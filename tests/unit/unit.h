/*
 * unit: the harness the unit tests share: the run's scratch directories
 * and the running of its suite.  unit_run() makes one mkdtemp(3)
 * directory for the whole run (unit_topdir), runs a suite with every test
 * in a forked process, and removes that directory at the end, also when
 * failed tests skipped their teardown.  A test's setup makes a fresh
 * directory of its own under it with unit_testdir().
 */
#ifndef UNIT_H
#define UNIT_H

#include <stddef.h>

#include <check.h>

/* The directory of all tests of this run, made by unit_run(). */
extern char unit_topdir[64];

/* Makes a fresh directory under unit_topdir and puts its path in dir[n];
 * fails the test if it cannot. */
void	unit_testdir(char *dir, size_t n);

/* Copies the rest of open file `in` to `to` (created or truncated, mode
 * 0600) and closes both; fails the test on any error. */
void	unit_copy_fd(int in, const char *to);

/* Removes directory `path` and everything in it: 0, or -1 with errno. */
int	unit_rm_tree(const char *path);

/*
 * Makes unit_topdir from `tmpl` (a mkdtemp(3) template such as
 * "/tmp/check_x.XXXXXX"), runs suite s with each test forked, removes
 * unit_topdir.  Returns the exit status of the program: EXIT_SUCCESS when
 * every test passed and the directory went away, else EXIT_FAILURE.
 */
int	unit_run(Suite *s, const char *tmpl);

#endif

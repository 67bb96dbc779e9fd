/*
 * check_log: the Check suite for common/log.c: log_escape() on a table of
 * inputs (cases report their index and source line), on random bytes
 * (decoding the result back must give the input), its cut with the
 * marker; the lines written to stderr (UTC time with milliseconds, ident
 * and pid, control and bidirectional characters neutralized), no time
 * when stderr is the journal's stream, and log_debug() leaving its
 * arguments unevaluated when debug lines are off.
 */
#include <check.h>
#include <regex.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

#define REQ_NAME_TEST 255   /* the longest lock name (request.h REQ_NAME_MAX) */

struct ecase {
	int         line;
	const char *in;
	size_t      len;       /* of in (NULs included) */
	size_t      cap;       /* 0: 512 */
	const char *want;
};

#define E(i, w) { __LINE__, (i), sizeof(i) - 1, 0, (w) }
#define EC(i, c, w) { __LINE__, (i), sizeof(i) - 1, (c), (w) }

static const struct ecase ecases[] = {
	E("", ""),
	E("abc-DEF_0.9:~ /x", "abc-DEF_0.9:~ /x"),
	/* Quotes and backslash cannot end or fake a quoted field. */
	E("a\"b", "a\\\"b"),
	E("it's", "it\\'s"),
	E("a\\b", "a\\\\b"),
	E("\\x41", "\\\\x41"),
	E("\\...", "\\\\..."),
	/* Control bytes and DEL. */
	E("a\nb", "a\\x0Ab"),
	E("a\r\nhttplock-worker[1]: forged", "a\\x0D\\x0Ahttplock-worker[1]: forged"),
	E("\t", "\\x09"),
	E("a\0b", "a\\x00b"),
	E("\x1b[31mred", "\\x1B[31mred"),
	E("\x7f", "\\x7F"),
	E("\x01\x1f", "\\x01\\x1F"),
	/* Well-formed UTF-8 that shows as itself. */
	E("caf\xc3\xa9", "caf\xc3\xa9"),
	E("\xe6\x97\xa5\xe6\x9c\xac", "\xe6\x97\xa5\xe6\x9c\xac"),
	E("\xf0\x9f\x94\x92", "\xf0\x9f\x94\x92"),
	E("\xc2\xa0", "\xc2\xa0"),                        /* U+00A0 */
	E("\xe2\x80\xa7", "\xe2\x80\xa7"),                /* U+2027 */
	E("\xe2\x80\xaf", "\xe2\x80\xaf"),                /* U+202F */
	E("\xe2\x81\xa5", "\xe2\x81\xa5"),                /* U+2065 */
	E("\xef\xbf\xbd", "\xef\xbf\xbd"),                /* U+FFFD */
	E("\xf4\x8f\xbf\xbf", "\xf4\x8f\xbf\xbf"),        /* U+10FFFF */
	/* Bidirectional controls, separators, invisible format characters. */
	E("a\xe2\x80\xae" "b", "a\\u{202E}b"),            /* RLO */
	E("\xe2\x80\xaa\xe2\x80\xab\xe2\x80\xac\xe2\x80\xad",
	    "\\u{202A}\\u{202B}\\u{202C}\\u{202D}"),
	E("\xe2\x80\x8e\xe2\x80\x8f", "\\u{200E}\\u{200F}"),
	E("\xe2\x81\xa6\xe2\x81\xa7\xe2\x81\xa8\xe2\x81\xa9",
	    "\\u{2066}\\u{2067}\\u{2068}\\u{2069}"),
	E("\xd8\x9c", "\\u{061C}"),
	E("\xe2\x80\xa8\xe2\x80\xa9", "\\u{2028}\\u{2029}"),
	E("\xc2\x85", "\\u{0085}"),                       /* NEL */
	E("\xc2\x80\xc2\x9f", "\\u{0080}\\u{009F}"),
	E("\xc2\xad", "\\u{00AD}"),
	E("\xe2\x80\x8b", "\\u{200B}"),
	E("\xef\xbb\xbf", "\\u{FEFF}"),
	E("\xf3\xa0\x81\x81", "\\u{E0041}"),              /* tag A */
	/* Not well-formed: every byte as \xHH. */
	E("\x80", "\\x80"),
	E("\xff\xfe", "\\xFF\\xFE"),
	E("\xc0\xaf", "\\xC0\\xAF"),                      /* overlong '/' */
	E("\xe0\x80\xae", "\\xE0\\x80\\xAE"),             /* overlong */
	E("\xed\xa0\x80", "\\xED\\xA0\\x80"),             /* surrogate */
	E("\xf4\x90\x80\x80", "\\xF4\\x90\\x80\\x80"),    /* > U+10FFFF */
	E("\xe2\x80", "\\xE2\\x80"),                      /* cut */
	E("\xe2\x80" "a", "\\xE2\\x80a"),
	E("\xc3" "\xe2\x80\xae", "\\xC3\\u{202E}"),
	/* Cut: after whole escapes, with the marker, within cap. */
	EC("abcdefghij", 11, "abcdefghij"),               /* fits exactly */
	EC("abcdefghij", 10, "abcde\\..."),
	EC("abcdefghij", 8, "abc\\..."),
	EC("a\nbcdefgh", 10, "a\\x0A\\..."),
	EC("ab\ncdefgh", 10, "ab\\..."),                  /* not "ab\x0" */
	EC("\xe2\x80\xae\xe2\x80\xae", 12, "\\..."),
	EC("\xe2\x80\xae\xe2\x80\xae", 13, "\\u{202E}\\..."),
	EC("\xe2\x80\xae\xe2\x80\xae", 17, "\\u{202E}\\u{202E}"),
	EC("abc", 5, "abc"),
	EC("abcdef", 5, "\\..."),
	EC("abcdef", 4, ""),                              /* no room to mark */
	EC("abcdef", 1, ""),
};

#define NECASES ((int)(sizeof(ecases) / sizeof(ecases[0])))

START_TEST(test_escape_cases)
{
	const struct ecase *c = &ecases[_i];
	size_t cap = c->cap != 0 ? c->cap : 512;
	char out[512];
	char *r;

	memset(out, 'Z', sizeof(out));
	r = log_escape(out, cap, c->in, c->len);
	ck_assert_msg(r == out, "case %d (line %d): not dst", _i, c->line);
	ck_assert_msg(strcmp(out, c->want) == 0,
	    "case %d (line %d): got \"%s\", want \"%s\"", _i, c->line, out,
	    c->want);
	ck_assert_msg(strlen(out) < cap, "case %d (line %d): over cap", _i,
	    c->line);
	/* Nothing written past cap. */
	if (cap < sizeof(out))
		ck_assert_msg(out[cap] == 'Z', "case %d (line %d): wrote past "
		    "cap", _i, c->line);
}
END_TEST

START_TEST(test_escape_cap0)
{
	char out[4] = "xyz";

	ck_assert_ptr_eq(log_escape(out, 0, "abc", 3), out);
	ck_assert_str_eq(out, "xyz");
	ck_assert_str_eq(log_escape(out, sizeof(out), NULL, 0), "");
}
END_TEST

static int
hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Appends the UTF-8 of cp to out; returns its length. */
static size_t
put_utf8(uint32_t cp, unsigned char *out)
{
	if (cp < 0x80) {
		out[0] = (unsigned char)cp;
		return 1;
	}
	if (cp < 0x800) {
		out[0] = (unsigned char)(0xc0 | (cp >> 6));
		out[1] = (unsigned char)(0x80 | (cp & 0x3f));
		return 2;
	}
	if (cp < 0x10000) {
		out[0] = (unsigned char)(0xe0 | (cp >> 12));
		out[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
		out[2] = (unsigned char)(0x80 | (cp & 0x3f));
		return 3;
	}
	out[0] = (unsigned char)(0xf0 | (cp >> 18));
	out[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3f));
	out[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
	out[3] = (unsigned char)(0x80 | (cp & 0x3f));
	return 4;
}

/*
 * Decodes a rendering back into out (the inverse of log_escape).  Sets
 * *cut if it ends with the marker.  Returns the length, or -1 if the text
 * holds a byte or an escape log_escape never writes.
 */
static long
unescape(const char *s, unsigned char *out, bool *cut)
{
	size_t i = 0, o = 0, n = strlen(s);

	*cut = false;
	while (i < n) {
		unsigned char c = (unsigned char)s[i];

		if (c < 0x20 || c == 0x7f || c == '"' || c == '\'')
			return -1;
		if (c != '\\') {
			out[o++] = c;
			i++;
			continue;
		}
		if (strcmp(s + i, LOG_ESC_MARK) == 0) {
			*cut = true;
			break;
		}
		if (s[i + 1] == '\\' || s[i + 1] == '"' || s[i + 1] == '\'') {
			out[o++] = (unsigned char)s[i + 1];
			i += 2;
		} else if (s[i + 1] == 'x' && hexval(s[i + 2]) >= 0 &&
		    hexval(s[i + 3]) >= 0) {
			out[o++] = (unsigned char)(hexval(s[i + 2]) * 16 +
			    hexval(s[i + 3]));
			i += 4;
		} else if (s[i + 1] == 'u' && s[i + 2] == '{') {
			uint32_t cp = 0;
			size_t k = i + 3;

			while (hexval(s[k]) >= 0)
				cp = cp * 16 + (uint32_t)hexval(s[k++]);
			if (s[k] != '}' || k - (i + 3) < 4 || k - (i + 3) > 5)
				return -1;
			o += put_utf8(cp, out + o);
			i = k + 1;
		} else
			return -1;
	}
	return (long)o;
}

/* Random bytes biased towards the interesting ones. */
static void
random_input(unsigned char *buf, size_t len, unsigned *seed)
{
	static const char *const bits[] = {
		"\xe2\x80\xae", "\xe2\x81\xa6", "\xc2\x85", "\xe6\x97\xa5",
		"\xf0\x9f\x94\x92", "\"", "'", "\\", "\n", "\\...", "\xed\xa0",
	};
	size_t i = 0;

	while (i < len) {
		int r = rand_r(seed) % 4;

		if (r == 0) {
			const char *b = bits[rand_r(seed) %
			    (int)(sizeof(bits) / sizeof(bits[0]))];
			size_t bl = strlen(b);

			if (bl > len - i)
				bl = len - i;
			memcpy(buf + i, b, bl);
			i += bl;
		} else if (r == 1)
			buf[i++] = (unsigned char)(rand_r(seed) & 0xff);
		else
			buf[i++] = (unsigned char)(0x20 + rand_r(seed) % 0x5f);
	}
}

START_TEST(test_escape_roundtrip)
{
	unsigned seed = 20241207;
	unsigned char in[300], back[4096];
	char out[4096];
	int iter;
	long n;
	bool cut;

	for (iter = 0; iter < 20000; iter++) {
		size_t len = (size_t)(rand_r(&seed) % (int)sizeof(in));
		size_t cap = iter % 2 ? sizeof(out) :
		    1 + (size_t)(rand_r(&seed) % 200);

		random_input(in, len, &seed);
		log_escape(out, cap, (const char *)in, len);
		ck_assert_uint_lt(strlen(out), cap);
		n = unescape(out, back, &cut);
		ck_assert_msg(n >= 0, "iteration %d: bad rendering \"%s\"",
		    iter, out);
		ck_assert_msg((size_t)n <= len && memcmp(back, in,
		    (size_t)n) == 0, "iteration %d: \"%s\" is not a prefix "
		    "of the input", iter, out);
		if (cap == sizeof(out))
			ck_assert_msg(!cut && (size_t)n == len, "iteration "
			    "%d: cut without need", iter);
		else if ((size_t)n < len && cap > sizeof(LOG_ESC_MARK))
			ck_assert_msg(cut, "iteration %d: cut, no marker",
			    iter);
	}
}
END_TEST

START_TEST(test_esc_macros)
{
	char name[REQ_NAME_TEST + 1];

	ck_assert_str_eq(LOG_ESC(NULL), "");
	ck_assert_str_eq(LOG_ESC("a'b"), "a\\'b");
	ck_assert_str_eq(LOG_ESCN("a\nbc", 3), "a\\x0Ab");
	/* A longest name of RLOs: cut at LOG_ESC_MAX with the marker. */
	for (size_t i = 0; i + 3 <= REQ_NAME_TEST; i += 3)
		memcpy(name + i, "\xe2\x80\xae", 3);
	name[REQ_NAME_TEST] = '\0';
	{
		const char *r = LOG_ESC(name);
		size_t rl = strlen(r);

		ck_assert_uint_lt(rl, LOG_ESC_MAX);
		ck_assert_uint_ge(rl, LOG_ESC_MAX - 12);
		ck_assert_str_eq(r + rl - 4, LOG_ESC_MARK);
		ck_assert_str_eq(r + rl - 12, "\\u{202E}" LOG_ESC_MARK);
	}
}
END_TEST

/* ---- lines ------------------------------------------------------------ */

/*
 * Runs log calls with stderr on a temporary file and returns what they
 * wrote (static buffer).  `journal` sets JOURNAL_STREAM to that file's
 * "device:inode" (1), to another inode (2), or unsets it (0) before
 * log_init().
 */
static char captured[8192];

static const char *
capture(int journal, int debug, void (*fn)(void))
{
	char path[] = "/tmp/check_log.XXXXXX";
	int fd = mkstemp(path), saved;
	struct stat st;
	char env[64];
	ssize_t n;

	ck_assert_int_ge(fd, 0);
	unlink(path);
	ck_assert_int_eq(fstat(fd, &st), 0);
	unsetenv("JOURNAL_STREAM");
	unsetenv("HTTPLOCK_DEBUG");
	if (journal) {
		snprintf(env, sizeof(env), "%llu:%llu",
		    (unsigned long long)st.st_dev,
		    (unsigned long long)st.st_ino + (journal == 2));
		setenv("JOURNAL_STREAM", env, 1);
	}
	fflush(stderr);
	saved = dup(STDERR_FILENO);
	ck_assert_int_ge(saved, 0);
	ck_assert_int_eq(dup2(fd, STDERR_FILENO), STDERR_FILENO);
	log_init("check-log", debug);
	fn();
	ck_assert_int_eq(dup2(saved, STDERR_FILENO), STDERR_FILENO);
	close(saved);
	unsetenv("JOURNAL_STREAM");
	log_init("check-log", 0);
	n = pread(fd, captured, sizeof(captured) - 1, 0);
	close(fd);
	ck_assert_int_ge(n, 0);
	captured[n] = '\0';
	return captured;
}

static void
lines_info(void)
{
	log_info("one %s", "a\nb\xe2\x80\xae" "c");
	log_warnx("two %s", LOG_ESC("a\nb\xe2\x80\xae" "c"));
}

static void
match(const char *text, const char *re_src)
{
	regex_t re;
	int rc;

	ck_assert_int_eq(regcomp(&re, re_src, REG_EXTENDED | REG_NOSUB), 0);
	rc = regexec(&re, text, 0, NULL, 0);
	regfree(&re);
	ck_assert_msg(rc == 0, "\"%s\" does not match /%s/", text, re_src);
}

START_TEST(test_line_format)
{
	char want[256];
	const char *out = capture(0, 0, lines_info);
	struct tm tm;
	time_t t;

	snprintf(want, sizeof(want),
	    "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z "
	    "check-log\\[%ld\\]: one a\\?b\\?\\?\\?c\n"
	    "[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z "
	    "check-log\\[%ld\\]: two a\\\\x0Ab\\\\u\\{202E\\}c\n$",
	    (long)getpid(), (long)getpid());
	match(out, want);
	/* The time is UTC and now. */
	memset(&tm, 0, sizeof(tm));
	ck_assert_ptr_nonnull(strptime(out, "%Y-%m-%dT%H:%M:%S", &tm));
	t = timegm(&tm);
	ck_assert_msg(labs((long)(t - time(NULL))) <= 5, "stamp %.24s is "
	    "%ld s off", out, (long)(t - time(NULL)));
}
END_TEST

START_TEST(test_line_journal)
{
	char want[128];

	/* stderr is the journal's stream: no time of our own. */
	snprintf(want, sizeof(want), "^check-log\\[%ld\\]: one ",
	    (long)getpid());
	match(capture(1, 0, lines_info), want);
	/* JOURNAL_STREAM names another stream: stderr was redirected. */
	match(capture(2, 0, lines_info), "^[0-9]{4}-[0-9]{2}-[0-9]{2}T");
}
END_TEST

static int evaluated;

static int
count(void)
{
	return ++evaluated;
}

static void
lines_debug(void)
{
	log_debug("debug %d", count());
}

START_TEST(test_debug_lazy)
{
	evaluated = 0;
	ck_assert_str_eq(capture(0, 0, lines_debug), "");
	ck_assert_int_eq(evaluated, 0);
	match(capture(0, 1, lines_debug), "Z check-log\\[[0-9]+\\]: debug 1\n$");
	ck_assert_int_eq(evaluated, 1);
}
END_TEST

static Suite *
log_suite(void)
{
	Suite *s = suite_create("log");
	TCase *tc;

	tc = tcase_create("escape");
	tcase_add_loop_test(tc, test_escape_cases, 0, NECASES);
	tcase_add_test(tc, test_escape_cap0);
	tcase_add_test(tc, test_escape_roundtrip);
	tcase_add_test(tc, test_esc_macros);
	suite_add_tcase(s, tc);

	tc = tcase_create("lines");
	tcase_add_test(tc, test_line_format);
	tcase_add_test(tc, test_line_journal);
	tcase_add_test(tc, test_debug_lazy);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(log_suite());
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

/*
 * libFuzzer harness for log_escape() (common/log.c), which renders any
 * bytes a client sends for a log line.  The first byte picks a small
 * output size; the rest is the input, rendered once into that size and
 * once into room enough for any rendering.  Invariants: the result is
 * NUL-terminated within the buffer (which is allocated to size, so ASan
 * sees any byte past it); it holds no control byte, DEL, malformed UTF-8
 * nor a line-breaking or bidirectional character; it decodes back to the
 * input (the roomy one) or to a prefix of it followed by the marker (the
 * small one, which is cut only when the whole rendering does not fit).
 */
#include <assert.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define IN_MAX 4096

static int
hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

static size_t
put_utf8(uint32_t cp, uint8_t *out)
{
	if (cp < 0x80) {
		out[0] = (uint8_t)cp;
		return 1;
	}
	if (cp < 0x800) {
		out[0] = (uint8_t)(0xc0 | (cp >> 6));
		out[1] = (uint8_t)(0x80 | (cp & 0x3f));
		return 2;
	}
	if (cp < 0x10000) {
		out[0] = (uint8_t)(0xe0 | (cp >> 12));
		out[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3f));
		out[2] = (uint8_t)(0x80 | (cp & 0x3f));
		return 3;
	}
	out[0] = (uint8_t)(0xf0 | (cp >> 18));
	out[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3f));
	out[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3f));
	out[3] = (uint8_t)(0x80 | (cp & 0x3f));
	return 4;
}

/* Characters that must never reach a log line unescaped. */
static bool
forbidden(uint32_t cp)
{
	return (cp >= 0x80 && cp <= 0x9f) || cp == 0x061c ||
	    cp == 0x200e || cp == 0x200f || (cp >= 0x2028 && cp <= 0x202e) ||
	    (cp >= 0x2066 && cp <= 0x2069) || cp == 0xfeff;
}

/* Asserts s is well-formed UTF-8 without a forbidden character. */
static void
check_text(const char *s)
{
	const uint8_t *u = (const uint8_t *)s;
	size_t i = 0;

	while (u[i] != '\0') {
		uint32_t cp;
		size_t n, k;

		assert(u[i] >= 0x20 && u[i] != 0x7f);
		if (u[i] < 0x80) {
			i++;
			continue;
		}
		if (u[i] >= 0xc2 && u[i] <= 0xdf)
			n = 2, cp = u[i] & 0x1fu;
		else if (u[i] >= 0xe0 && u[i] <= 0xef)
			n = 3, cp = u[i] & 0x0fu;
		else {
			assert(u[i] >= 0xf0 && u[i] <= 0xf4);
			n = 4, cp = u[i] & 0x07u;
		}
		for (k = 1; k < n; k++) {
			assert((u[i + k] & 0xc0) == 0x80);
			cp = (cp << 6) | (u[i + k] & 0x3fu);
		}
		assert(cp >= (n == 2 ? 0x80u : n == 3 ? 0x800u : 0x10000u));
		assert(cp <= 0x10ffff && (cp < 0xd800 || cp > 0xdfff));
		assert(!forbidden(cp));
		i += n;
	}
}

/* Decodes a rendering into out; *cut tells whether it ends with the
 * marker.  Returns the length; asserts on anything log_escape never
 * writes. */
static size_t
unescape(const char *s, uint8_t *out, bool *cut)
{
	size_t i = 0, o = 0, n = strlen(s);

	*cut = false;
	while (i < n) {
		if (s[i] != '\\') {
			assert(s[i] != '"' && s[i] != '\'');
			out[o++] = (uint8_t)s[i++];
			continue;
		}
		if (strcmp(s + i, LOG_ESC_MARK) == 0) {
			*cut = true;
			break;
		}
		if (s[i + 1] == '\\' || s[i + 1] == '"' || s[i + 1] == '\'') {
			out[o++] = (uint8_t)s[i + 1];
			i += 2;
		} else if (s[i + 1] == 'x') {
			assert(hexval(s[i + 2]) >= 0 && hexval(s[i + 3]) >= 0);
			out[o++] = (uint8_t)(hexval(s[i + 2]) * 16 +
			    hexval(s[i + 3]));
			i += 4;
		} else {
			uint32_t cp = 0;
			size_t k = i + 3;

			assert(s[i + 1] == 'u' && s[i + 2] == '{');
			while (hexval(s[k]) >= 0)
				cp = cp * 16 + (uint32_t)hexval(s[k++]);
			assert(s[k] == '}' && k - (i + 3) >= 4 &&
			    k - (i + 3) <= 5);
			o += put_utf8(cp, out + o);
			i = k + 1;
		}
	}
	return o;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *in = (const char *)data + 1;
	size_t len, caps[2], k, n;
	uint8_t *back;
	bool cut;

	if (size == 0 || size > IN_MAX + 1)
		return 0;
	len = size - 1;
	caps[0] = 1 + data[0];
	caps[1] = 8 * len + 1;          /* no rendering is longer */
	if ((back = malloc(8 * len + 8)) == NULL)
		return 0;
	for (k = 0; k < 2; k++) {
		char *out = malloc(caps[k]);

		if (out == NULL)
			break;
		assert(log_escape(out, caps[k], in, len) == out);
		assert(memchr(out, '\0', caps[k]) != NULL);
		check_text(out);
		n = unescape(out, back, &cut);
		assert(n <= len && memcmp(back, in, n) == 0);
		if (k == 1)
			assert(!cut && n == len);
		else if (n < len && caps[k] > sizeof(LOG_ESC_MARK))
			assert(cut);
		free(out);
	}
	free(back);
	return 0;
}

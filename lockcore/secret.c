/*
 * secret.c: hashing and sealing of tokens and request ids (secret.h), on
 * Nettle for SHA-256, HMAC and constant-time comparison (pure functions
 * on the caller's context: no allocation, no global or per-thread state)
 * and the kernel's getrandom() for randomness.
 */
#include <sys/random.h>

#include <errno.h>
#include <string.h>

#include <nettle/hmac.h>
#include <nettle/memops.h>
#include <nettle/sha2.h>

#include "secret.h"

_Static_assert(SECRET_TOKEN_LEN <= SECRET_HASH_LEN,
    "one HMAC block must cover a token");

_Static_assert(SECRET_HASH_LEN == SHA256_DIGEST_SIZE, "SHA-256");

/* Overwrites n bytes in a way the compiler may not drop. */
static void
wipe(void *p, size_t n)
{
	volatile unsigned char *v = p;

	while (n-- > 0)
		*v++ = 0;
}

int
secret_hash(const char *s, size_t len, unsigned char out[SECRET_HASH_LEN])
{
	struct sha256_ctx ctx;

	sha256_init(&ctx);
	sha256_update(&ctx, len, (const uint8_t *)s);
	sha256_digest(&ctx, SHA256_DIGEST_SIZE, out);
	return 0;
}

int
secret_random(void *buf, size_t n)
{
	unsigned char *p = buf;
	size_t got = 0;
	ssize_t r;

	while (got < n) {
		r = getrandom(p + got, n - got, 0);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			if (r == 0)
				errno = EIO;
			return -1;
		}
		got += (size_t)r;
	}
	return 0;
}

int
secret_token(char token[SECRET_TOKEN_LEN + 1])
{
	static const char hex[] = "0123456789abcdef";
	unsigned char raw[SECRET_TOKEN_LEN / 2];
	size_t i;

	if (secret_random(raw, sizeof(raw)) < 0)
		return -1;
	for (i = 0; i < sizeof(raw); i++) {
		token[2 * i] = hex[raw[i] >> 4];
		token[2 * i + 1] = hex[raw[i] & 0xf];
	}
	token[SECRET_TOKEN_LEN] = '\0';
	wipe(raw, sizeof(raw));
	return 0;
}

/* The pad of a seal: HMAC-SHA256 keyed with the request id over the salt. */
static int
pad(const char *rid, const unsigned char *salt,
    unsigned char out[SECRET_HASH_LEN])
{
	struct hmac_sha256_ctx ctx;

	hmac_sha256_set_key(&ctx, strlen(rid), (const uint8_t *)rid);
	hmac_sha256_update(&ctx, SECRET_SALT_LEN, salt);
	hmac_sha256_digest(&ctx, SHA256_DIGEST_SIZE, out);
	wipe(&ctx, sizeof(ctx));
	return 0;
}

int
secret_seal(const char *token, const char *rid,
    unsigned char seal[SECRET_SEAL_LEN])
{
	unsigned char p[SECRET_HASH_LEN];
	size_t i;

	if (strnlen(token, SECRET_TOKEN_LEN + 1) != SECRET_TOKEN_LEN ||
	    secret_random(seal, SECRET_SALT_LEN) < 0 || pad(rid, seal, p) < 0)
		return -1;
	for (i = 0; i < SECRET_TOKEN_LEN; i++)
		seal[SECRET_SALT_LEN + i] = (unsigned char)token[i] ^ p[i];
	wipe(p, sizeof(p));
	return 0;
}

int
secret_unseal(const unsigned char seal[SECRET_SEAL_LEN], const char *rid,
    const unsigned char hash[SECRET_HASH_LEN], char token[SECRET_TOKEN_LEN + 1])
{
	unsigned char p[SECRET_HASH_LEN], h[SECRET_HASH_LEN];
	size_t i;
	int rc = -1;

	token[0] = '\0';
	if (pad(rid, seal, p) < 0)
		goto out;
	for (i = 0; i < SECRET_TOKEN_LEN; i++)
		token[i] = (char)(seal[SECRET_SALT_LEN + i] ^ p[i]);
	token[SECRET_TOKEN_LEN] = '\0';
	if (secret_hash(token, SECRET_TOKEN_LEN, h) == 0 &&
	    secret_equal(h, hash, SECRET_HASH_LEN))
		rc = 0;
	else
		wipe(token, SECRET_TOKEN_LEN + 1);
out:
	wipe(p, sizeof(p));
	return rc;
}

bool
secret_equal(const void *a, const void *b, size_t n)
{
	return memeql_sec(a, b, n) != 0;
}

/*
 * secret.c: hashing and sealing of tokens and request ids (secret.h), on
 * OpenSSL's libcrypto for SHA-256, HMAC and constant-time comparison, and
 * the kernel's getrandom() for randomness.
 */
#include <sys/random.h>

#include <errno.h>
#include <limits.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "secret.h"

_Static_assert(SECRET_TOKEN_LEN <= SECRET_HASH_LEN,
    "one HMAC block must cover a token");

int
secret_hash(const char *s, size_t len, unsigned char out[SECRET_HASH_LEN])
{
	unsigned int n = 0;

	if (EVP_Digest(s, len, out, &n, EVP_sha256(), NULL) != 1 ||
	    n != SECRET_HASH_LEN)
		return -1;
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
	OPENSSL_cleanse(raw, sizeof(raw));
	return 0;
}

/* The pad of a seal: HMAC-SHA256 keyed with the request id over the salt. */
static int
pad(const char *rid, const unsigned char *salt,
    unsigned char out[SECRET_HASH_LEN])
{
	unsigned int n = 0;
	size_t len = strlen(rid);

	if (len > (size_t)INT_MAX ||
	    HMAC(EVP_sha256(), rid, (int)len, salt, SECRET_SALT_LEN, out,
	    &n) == NULL || n != SECRET_HASH_LEN)
		return -1;
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
	OPENSSL_cleanse(p, sizeof(p));
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
		OPENSSL_cleanse(token, SECRET_TOKEN_LEN + 1);
out:
	OPENSSL_cleanse(p, sizeof(p));
	return rc;
}

bool
secret_equal(const void *a, const void *b, size_t n)
{
	return CRYPTO_memcmp(a, b, n) == 0;
}

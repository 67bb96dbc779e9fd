/*
 * secret: how lockcore keeps tokens and request ids without storing them.
 *
 * A token is 128 random bits in hex (SECRET_TOKEN_LEN characters); the
 * database keeps only its SHA-256.  A request_id is kept only as its
 * SHA-256 too, which is enough to find its grant or waiter row.  A retry
 * with the same request_id must get the same token back, so a grant made
 * for a request_id also keeps a seal: a random salt and the token XORed
 * with HMAC-SHA256(request_id, salt).  Whoever knows the request_id can
 * open the seal; a copy of the database alone opens nothing.
 */
#ifndef HTTPLOCK_SECRET_H
#define HTTPLOCK_SECRET_H

#include <stdbool.h>
#include <stddef.h>

#define SECRET_TOKEN_LEN 32                         /* hex digits */
#define SECRET_HASH_LEN  32                         /* SHA-256 */
#define SECRET_SALT_LEN  16
#define SECRET_SEAL_LEN  (SECRET_SALT_LEN + SECRET_TOKEN_LEN)

/* SHA-256 of s[0..len) into out.  0, or -1 if the library failed. */
int secret_hash(const char *s, size_t len, unsigned char out[SECRET_HASH_LEN])
    __attribute__((warn_unused_result));

/* n random bytes from the kernel.  0, or -1 with errno set. */
int secret_random(void *buf, size_t n) __attribute__((warn_unused_result));

/* A fresh random token (SECRET_TOKEN_LEN lower-case hex digits and a NUL). */
int secret_token(char token[SECRET_TOKEN_LEN + 1])
    __attribute__((warn_unused_result));

/*
 * Seals `token` (SECRET_TOKEN_LEN characters) with request id `rid` under a
 * fresh random salt.  0 or -1.
 */
int secret_seal(const char *token, const char *rid,
    unsigned char seal[SECRET_SEAL_LEN]) __attribute__((warn_unused_result));

/*
 * Opens a seal with `rid`: the token it holds into token[], which is
 * checked against `hash` (its SHA-256).  0, or -1 if the seal does not
 * open to a token with that hash (another request_id, or damaged data).
 */
int secret_unseal(const unsigned char seal[SECRET_SEAL_LEN], const char *rid,
    const unsigned char hash[SECRET_HASH_LEN], char token[SECRET_TOKEN_LEN + 1])
    __attribute__((warn_unused_result));

/* True if a and b (n bytes each) are equal; the time does not tell where
 * they differ. */
bool secret_equal(const void *a, const void *b, size_t n);

#endif /* HTTPLOCK_SECRET_H */

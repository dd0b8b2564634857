// SHA-256 (FIPS 180-4) and HMAC-SHA256 (RFC 2104), small and portable.
#ifndef SIGNATURE_SHA256_H
#define SIGNATURE_SHA256_H

#include <stddef.h>
#include <stdint.h>

#define SHA256_BLOCK_SIZE 64
#define SHA256_DIGEST_SIZE 32

typedef struct sha256_ctx {
    uint32_t state[8];
    uint64_t length; // bytes hashed so far
    uint8_t block[SHA256_BLOCK_SIZE];
    size_t used; // bytes in `block`
} sha256_ctx;

void sha256_init(sha256_ctx *ctx);
void sha256_update(sha256_ctx *ctx, const void *data, size_t len);
void sha256_final(sha256_ctx *ctx, uint8_t digest[SHA256_DIGEST_SIZE]);

// HMAC-SHA256, fed in pieces: init with the key, update with the message,
// final for the MAC. The context holds key material: hmac_sha256_final wipes it.
typedef struct hmac_sha256_ctx {
    sha256_ctx inner;
    uint8_t outer_pad[SHA256_BLOCK_SIZE];
} hmac_sha256_ctx;

void hmac_sha256_init(hmac_sha256_ctx *ctx, const uint8_t *key, size_t key_len);
void hmac_sha256_update(hmac_sha256_ctx *ctx, const void *data, size_t len);
void hmac_sha256_final(hmac_sha256_ctx *ctx, uint8_t mac[SHA256_DIGEST_SIZE]);

// Overwrite `len` bytes at `p` with zeros in a way the compiler keeps.
void secure_wipe(void *p, size_t len);

#endif

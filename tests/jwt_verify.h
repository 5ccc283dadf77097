/*
 * jwt_verify: checks a compact JWS against a PEM public key (tests only).
 */
#ifndef DPS_TESTS_JWT_VERIFY_H
#define DPS_TESTS_JWT_VERIFY_H

#include <stddef.h>

#include <openssl/types.h>

/*
 * Verifies a token against a PEM public key or certificate's key and returns
 * its payload JSON (malloc'd), or NULL with err.
 */
char *jwt_verify(OSSL_LIB_CTX *libctx, const char *token, const char *public_key_pem, char *err,
                 size_t err_length);

#endif

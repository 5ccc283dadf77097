/*
 * jwt: compact JWS access tokens (RFC 7519) signed with ES256 (ECDSA P-256,
 * SHA-256, raw r||s signature) or RS256, for devices to present to their hub.
 *
 * The key lives only inside the signer component (signer.h).
 */
#ifndef DPS_JWT_H
#define DPS_JWT_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/types.h>

struct jwt_key;

/* Loads a PEM private key (EC P-256 gives ES256, RSA gives RS256). NULL with err. */
struct jwt_key *jwt_key_load(OSSL_LIB_CTX *libctx, const char *key_file, const char *key_id,
                             char *err, size_t err_length);
void jwt_key_free(struct jwt_key *key);

/*
 * Signs claims_json (a JSON object, used verbatim as the payload) into
 * header.payload.signature, with header {"alg","typ":"JWT","kid"?}.
 * Returns a malloc'd NUL-terminated token, or NULL with err.
 */
char *jwt_sign(struct jwt_key *key, const char *claims_json, char *err, size_t err_length);

/*
 * Decodes the unpadded base64url of a token part or a JWK member, strictly:
 * no padding, no other alphabet, and canonical trailing bits, so that a
 * token has one spelling only. A malloc'd buffer with a trailing NUL (its
 * length without it in *out_length), or NULL.
 */
uint8_t *jwt_base64url_decode(const char *text, size_t length, size_t *out_length);

/* The JWS alg a key signs and verifies with: "ES256" (P-256), "RS256" (RSA >= 2048), or NULL. */
const char *jwt_algorithm_for(EVP_PKEY *key);

#define JWT_ES256_SIGNATURE_LENGTH 64

/*
 * A JWS ES256 signature (r||s, 32 bytes each) as the DER ECDSA-Sig-Value
 * OpenSSL verifies: OPENSSL_malloc'd, its length in *der_length, or NULL.
 */
uint8_t *jwt_es256_signature_to_der(const uint8_t raw[JWT_ES256_SIGNATURE_LENGTH],
                                    size_t *der_length);

#endif

/*
 * lean_provider: a library context whose key decoders are only those the
 * data plane reads, for OpenSSL 3.0.
 *
 * OpenSSL 3.0 builds a decoder context for every public key it decodes, and
 * every certificate carries one: libssl's d2i_X509 of a device's two
 * certificates enumerates every decoder of the context and every name of
 * every key manager each time (3.1 added a cache). That enumeration, not the
 * parsing, is most of a certificate's cost there (perf/instructions.sh).
 *
 * lean_libctx_new() loads into a new library context, instead of the default provider,
 * a provider that hands out the default provider's algorithms (loaded in a
 * private library context of its own) unchanged, except the decoders: of
 * those it offers only DER and PEM ones for EC (P-256, P-384, ...), RSA and
 * RSA-PSS keys and PEM to DER; not the SubjectPublicKeyInfo type finder
 * (every public key read here names its type), encrypted PKCS#8 (no
 * passphrase is ever given) nor the "ec"/"rsa" structures. Nothing is
 * implemented here: every algorithm, decoders included, is the default
 * provider's own code; keys of other types (DSA, DH, X25519, Ed25519, SM2,
 * ...) cannot be read in it. Its key managers are those of EC, RSA, RSA-PSS
 * and the HMAC, HKDF and TLS1-PRF ones libssl uses; the EC one validates a
 * public key of a curve of cofactor 1 (P-256, P-384, P-521) "fully" with the
 * quick check (in range, on the curve), which for those curves proves the
 * same: the scalar multiplication by the order that the full check adds
 * (libssl 3.0 asks it of every ECDHE peer key) cannot fail for a point on
 * such a curve.
 *
 * On OpenSSL 3.1 and later lean_libctx_new() is OSSL_LIB_CTX_new(): the
 * default provider loads as usual.
 */
#ifndef DPS_LEAN_PROVIDER_H
#define DPS_LEAN_PROVIDER_H

#include <stdbool.h>
#include <stddef.h>

#include <openssl/types.h>

/* A new library context (lean on 3.0); NULL with a reason in err. */
OSSL_LIB_CTX *lean_libctx_new(char *err, size_t err_length);

/* Frees a context lean_libctx_new() made (NULL: nothing), then what it loaded. */
void lean_libctx_free(OSSL_LIB_CTX *libctx);

/*
 * A key holding only the P-256 parameters, made in a context lean_libctx_new()
 * made (NULL for any other context): EVP_PKEY_copy_parameters() from it copies
 * the curve instead of building it again (OpenSSL builds a curve for every key
 * it imports). Valid until lean_libctx_free(libctx); read-only, any thread.
 */
EVP_PKEY *lean_p256_parameters(const OSSL_LIB_CTX *libctx);

/* Whether this OpenSSL gets the lean provider (3.0) or the default one. */
bool lean_provider_applies(void);

#endif

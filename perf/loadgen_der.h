/*
 * loadgen_der: the device side's certificate work without OpenSSL's object
 * layer, which in OpenSSL 3.0 costs far more than the cryptography it wraps.
 *
 * - A CSR is assembled from DER pieces and signed with one EVP_DigestSign,
 *   the same bytes X509_REQ_sign would produce for the same key.
 * - A certificate is read straight from its DER for the fields the device
 *   client checks (subject CN, public key, validity, EKU), as a small
 *   embedded X.509 parser (the device's mbedTLS) reads them.
 * - PEM blocks are decoded with a strict base64 reader.
 *
 * Functions return 0 or -1 unless they say otherwise.
 */
#ifndef DPS_LOADGEN_DER_H
#define DPS_LOADGEN_DER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <openssl/types.h>

#define SPKI_P256_LENGTH 91 /* SubjectPublicKeyInfo of an uncompressed P-256 key */
#define CSR_PEM_CAPACITY 1024

/* What the device client looks at in a certificate. */
struct cert_fields {
    const uint8_t *serial; /* the serialNumber's content octets, inside the DER */
    size_t serial_length;
    const uint8_t *spki; /* the SubjectPublicKeyInfo element, inside the DER */
    size_t spki_length;
    char cn[128]; /* the subject's first commonName, "" when none */
    time_t not_before, not_after;
    bool eku_present, eku_server, eku_client;
};

/*
 * Walks a whole Certificate (tbsCertificate, signatureAlgorithm,
 * signatureValue, nothing after): every element must be well-formed DER of
 * the expected type. Fills fields; -1 when the structure is not a certificate.
 */
int der_read_certificate(const uint8_t *der, size_t length, struct cert_fields *fields);

/*
 * Decodes the next "-----BEGIN CERTIFICATE-----" block of pem[*offset..length)
 * into out. Returns the DER length, 0 when no block is left, -1 when a
 * block is malformed or larger than capacity. *offset moves past the block.
 */
long pem_next_certificate(const char *pem, size_t length, size_t *offset, uint8_t *out,
                          size_t capacity);

/* The uncompressed P-256 SubjectPublicKeyInfo of key into out[SPKI_P256_LENGTH]. */
int spki_p256(const EVP_PKEY *key, uint8_t out[SPKI_P256_LENGTH]);

/*
 * A PEM CSR (subject CN=uuid:<di> as UTF8String, key spki, no attributes,
 * ECDSA with SHA-256) signed by key, fetched from libctx, into
 * pem[CSR_PEM_CAPACITY] (NUL-terminated). sign is a reusable digest context.
 */
int csr_pem(EVP_MD_CTX *sign, OSSL_LIB_CTX *libctx, EVP_PKEY *key,
            const uint8_t spki[SPKI_P256_LENGTH], const char *di, char pem[CSR_PEM_CAPACITY]);

#endif

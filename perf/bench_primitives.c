/*
 * bench-primitives: the unit costs of the cryptography the protocol requires,
 * with the build's OpenSSL, the demo PKI's P-256 keys and certificates, and
 * the calls the daemon's own code makes for each.
 *
 *   bench-primitives PKI_DIR [--count N]     (the demo PKI, made there if missing)
 *
 *   ecdsa_sign    a signature as the signer makes a certificate's
 *                 (crypto/issuer.c): the hub CA's key, a context reset and
 *                 copied from one initialised for SHA-256, EVP_DigestSign over
 *                 a TBSCertificate (the demo device leaf's).
 *   ecdsa_verify  a verification as csr.c and X509_verify do one:
 *                 EVP_DigestVerifyInit_ex with SHA-256 and the issuer's key,
 *                 EVP_DigestVerify: the device leaf's own signature against
 *                 the manufacturer intermediate's key (attestation's leaf check).
 *   ecdh_keygen   an ephemeral P-256 key as libssl makes one for ECDHE, its
 *                 point encoded for the key exchange message.
 *   ecdh_derive   the client's point read as libssl's server reads it (the
 *                 parameters of its own key copied, then
 *                 EVP_PKEY_set1_encoded_public_key) and the shared secret
 *                 derived with it (EVP_PKEY_derive_set_peer checks the point).
 *   sha256        SHA-256 of the device leaf's DER (a certificate-sized input,
 *                 what the verified-leaf cache hashes).
 *   d2i_x509      the device leaf decoded as libssl decodes a peer's
 *                 certificate (X509_new_ex in the context, d2i_X509), freed.
 *
 * Signing runs in a plain library context, as the signer's workers do; the
 * rest in a lean_libctx_new() one, as a shard's handshakes do. Each operation
 * is one function named bench_primitive_*, for callgrind's --toggle-collect:
 * perf/floors.sh counts each one's instructions from runs of 2 and 12 per
 * operation. Alone, it prints thread CPU per operation (the operations take
 * turns in rounds, so the machine's noise falls on all alike) as key=value.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "crypto/lean_provider.h"
#include "crypto/pki.h"
#include "perf/bench_count.h"

#define WARMUP 2
#define ROUNDS 5
#define SIGNATURE_MAX 80 /* a DER ECDSA-Sig-Value of P-256: at most 72 bytes */
#define SECRET_MAX 66

struct bench {
    OSSL_LIB_CTX *signer_libctx; /* as a signer worker's */
    OSSL_LIB_CTX *shard_libctx;  /* as a shard's */
    EVP_PKEY *ca_key;            /* the hub identity CA's, in signer_libctx */
    EVP_MD_CTX *sign_template;
    EVP_MD_CTX *sign_context;
    EVP_PKEY *issuer_key; /* the manufacturer intermediate's public key, in shard_libctx */
    EVP_MD *sha256;       /* fetched from shard_libctx */
    uint8_t *leaf_der;    /* the demo device leaf */
    size_t leaf_length;
    uint8_t *tbs; /* its TBSCertificate */
    size_t tbs_length;
    uint8_t leaf_signature[SIGNATURE_MAX];
    size_t leaf_signature_length;
    uint8_t peer_point[65]; /* an ECDHE client's point */
    size_t peer_point_length;
};

enum primitive {
    PRIMITIVE_ECDSA_SIGN,
    PRIMITIVE_ECDSA_VERIFY,
    PRIMITIVE_ECDH_KEYGEN,
    PRIMITIVE_ECDH_DERIVE,
    PRIMITIVE_SHA256,
    PRIMITIVE_D2I_X509,
    PRIMITIVES
};

static const char *const PRIMITIVE_NAMES[PRIMITIVES] = {
    "ecdsa_sign", "ecdsa_verify", "ecdh_keygen", "ecdh_derive", "sha256", "d2i_x509"};

static void die(const char *what)
{
    fprintf(stderr, "bench-primitives: %s\n", what);
    ERR_print_errors_fp(stderr);
    exit(1);
}

static double thread_cpu_us(void)
{
    struct timespec now;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &now);
    return (double)now.tv_sec * 1e6 + (double)now.tv_nsec / 1e3;
}

/* ---- the operations ---- */

__attribute__((noinline)) static int bench_primitive_ecdsa_sign(struct bench *b)
{
    uint8_t signature[SIGNATURE_MAX];
    size_t length = sizeof(signature);

    return EVP_MD_CTX_reset(b->sign_context) == 1 &&
                   EVP_MD_CTX_copy_ex(b->sign_context, b->sign_template) == 1 &&
                   EVP_DigestSign(b->sign_context, signature, &length, b->tbs, b->tbs_length) == 1
               ? 0
               : -1;
}

__attribute__((noinline)) static int bench_primitive_ecdsa_verify(struct bench *b)
{
    EVP_MD_CTX *context = EVP_MD_CTX_new();
    int verified = context != NULL &&
                   EVP_DigestVerifyInit_ex(context, NULL, "SHA256", b->shard_libctx, NULL,
                                           b->issuer_key, NULL) == 1 &&
                   EVP_DigestVerify(context, b->leaf_signature, b->leaf_signature_length, b->tbs,
                                    b->tbs_length) == 1;

    EVP_MD_CTX_free(context);
    return verified ? 0 : -1;
}

/* An ephemeral P-256 key, made as libssl makes its ECDHE key (ssl_generate_pkey_group). */
static EVP_PKEY *p256_key(OSSL_LIB_CTX *libctx)
{
    EVP_PKEY_CTX *context = EVP_PKEY_CTX_new_from_name(libctx, "EC", NULL);
    EVP_PKEY *key = NULL;

    if (context != NULL && EVP_PKEY_keygen_init(context) == 1 &&
        EVP_PKEY_CTX_set_group_name(context, "prime256v1") == 1)
        EVP_PKEY_keygen(context, &key);
    EVP_PKEY_CTX_free(context);
    return key;
}

__attribute__((noinline)) static int bench_primitive_ecdh_keygen(struct bench *b)
{
    EVP_PKEY *key = p256_key(b->shard_libctx);
    uint8_t *point = NULL;
    size_t length = key != NULL ? EVP_PKEY_get1_encoded_public_key(key, &point) : 0;

    OPENSSL_free(point);
    EVP_PKEY_free(key);
    return length == sizeof(b->peer_point) ? 0 : -1;
}

__attribute__((noinline)) static int bench_primitive_ecdh_derive(struct bench *b, EVP_PKEY *own)
{
    EVP_PKEY *peer = EVP_PKEY_new();
    EVP_PKEY_CTX *context = EVP_PKEY_CTX_new_from_pkey(b->shard_libctx, own, NULL);
    uint8_t secret[SECRET_MAX];
    size_t length = 0;
    int status = -1;

    if (peer != NULL && context != NULL && EVP_PKEY_copy_parameters(peer, own) == 1 &&
        EVP_PKEY_set1_encoded_public_key(peer, b->peer_point, b->peer_point_length) == 1 &&
        EVP_PKEY_derive_init(context) == 1 && EVP_PKEY_derive_set_peer(context, peer) == 1 &&
        EVP_PKEY_derive(context, NULL, &length) == 1 && length <= sizeof(secret) &&
        EVP_PKEY_derive(context, secret, &length) == 1)
        status = 0;
    EVP_PKEY_CTX_free(context);
    EVP_PKEY_free(peer);
    return status;
}

__attribute__((noinline)) static int bench_primitive_sha256(struct bench *b)
{
    uint8_t digest[32];
    unsigned length = 0;

    return EVP_Digest(b->leaf_der, b->leaf_length, digest, &length, b->sha256, NULL) == 1 &&
                   length == sizeof(digest)
               ? 0
               : -1;
}

__attribute__((noinline)) static int bench_primitive_d2i_x509(struct bench *b)
{
    X509 *certificate = X509_new_ex(b->shard_libctx, NULL);
    const uint8_t *cursor = b->leaf_der;
    int status = certificate != NULL &&
                         d2i_X509(&certificate, &cursor, (long)b->leaf_length) != NULL &&
                         cursor == b->leaf_der + b->leaf_length
                     ? 0
                     : -1;

    X509_free(certificate);
    return status;
}

/* count operations of one kind: the CPU they took, in µs; exits on a failure. */
static double run(struct bench *b, enum primitive primitive, EVP_PKEY *own, long count)
{
    double start = thread_cpu_us();

    for (long i = 0; i < count; i++) {
        int status;
        switch (primitive) {
        case PRIMITIVE_ECDSA_SIGN:
            status = bench_primitive_ecdsa_sign(b);
            break;
        case PRIMITIVE_ECDSA_VERIFY:
            status = bench_primitive_ecdsa_verify(b);
            break;
        case PRIMITIVE_ECDH_KEYGEN:
            status = bench_primitive_ecdh_keygen(b);
            break;
        case PRIMITIVE_ECDH_DERIVE:
            status = bench_primitive_ecdh_derive(b, own);
            break;
        case PRIMITIVE_SHA256:
            status = bench_primitive_sha256(b);
            break;
        default:
            status = bench_primitive_d2i_x509(b);
            break;
        }
        if (status != 0)
            die(PRIMITIVE_NAMES[primitive]);
    }
    return thread_cpu_us() - start;
}

/* ---- set-up: the demo PKI's files ---- */

static X509 *read_certificate(OSSL_LIB_CTX *libctx, const char *path)
{
    BIO *bio = BIO_new_file(path, "r");
    X509 *certificate = X509_new_ex(libctx, NULL);

    if (bio == NULL || certificate == NULL ||
        PEM_read_bio_X509(bio, &certificate, NULL, NULL) == NULL)
        die(path);
    BIO_free(bio);
    return certificate;
}

static EVP_PKEY *read_private_key(OSSL_LIB_CTX *libctx, const char *path)
{
    BIO *bio = BIO_new_file(path, "r");
    EVP_PKEY *key =
        bio != NULL ? PEM_read_bio_PrivateKey_ex(bio, NULL, NULL, NULL, libctx, NULL) : NULL;

    if (key == NULL)
        die(path);
    BIO_free(bio);
    return key;
}

static void setup(struct bench *b, const char *pki_dir)
{
    char path[4096], err[512];

    b->signer_libctx = OSSL_LIB_CTX_new();
    b->shard_libctx = lean_libctx_new(err, sizeof(err));
    if (b->signer_libctx == NULL || b->shard_libctx == NULL)
        die("cannot create the library contexts");

    snprintf(path, sizeof(path), "%s/hub-ca.key", pki_dir);
    b->ca_key = read_private_key(b->signer_libctx, path);
    b->sign_template = EVP_MD_CTX_new();
    b->sign_context = EVP_MD_CTX_new();
    if (b->sign_template == NULL || b->sign_context == NULL ||
        EVP_DigestSignInit_ex(b->sign_template, NULL, "SHA256", b->signer_libctx, NULL, b->ca_key,
                              NULL) != 1)
        die("cannot ready the signing context");

    snprintf(path, sizeof(path), "%s/mfg-intermediate.pem", pki_dir);
    X509 *intermediate = read_certificate(b->shard_libctx, path);
    b->issuer_key = X509_get_pubkey(intermediate);
    X509_free(intermediate);
    if (pki_device_path(pki_dir, 1, ".pem", path, sizeof(path)) != 0)
        die("the device path is too long");
    X509 *leaf = read_certificate(b->shard_libctx, path);
    const ASN1_BIT_STRING *signature = NULL;
    X509_get0_signature(&signature, NULL, leaf);
    unsigned char *der = NULL, *tbs = NULL;
    int der_length = i2d_X509(leaf, &der);
    int tbs_length = i2d_re_X509_tbs(leaf, &tbs);
    if (b->issuer_key == NULL || signature == NULL || der_length <= 0 || tbs_length <= 0 ||
        (size_t)ASN1_STRING_length(signature) > sizeof(b->leaf_signature))
        die("cannot read the device leaf");
    b->leaf_der = der;
    b->leaf_length = (size_t)der_length;
    b->tbs = tbs;
    b->tbs_length = (size_t)tbs_length;
    b->leaf_signature_length = (size_t)ASN1_STRING_length(signature);
    memcpy(b->leaf_signature, ASN1_STRING_get0_data(signature), b->leaf_signature_length);
    X509_free(leaf);

    b->sha256 = EVP_MD_fetch(b->shard_libctx, "SHA256", NULL);
    EVP_PKEY *client = p256_key(b->shard_libctx);
    uint8_t *point = NULL;
    size_t point_length = client != NULL ? EVP_PKEY_get1_encoded_public_key(client, &point) : 0;
    if (b->sha256 == NULL || point_length != sizeof(b->peer_point))
        die("cannot make the ECDHE client's point");
    memcpy(b->peer_point, point, point_length);
    b->peer_point_length = point_length;
    OPENSSL_free(point);
    EVP_PKEY_free(client);
}

static void teardown(struct bench *b)
{
    EVP_MD_CTX_free(b->sign_template);
    EVP_MD_CTX_free(b->sign_context);
    EVP_PKEY_free(b->ca_key);
    EVP_PKEY_free(b->issuer_key);
    EVP_MD_free(b->sha256);
    OPENSSL_free(b->leaf_der);
    OPENSSL_free(b->tbs);
    OSSL_LIB_CTX_free(b->signer_libctx);
    lean_libctx_free(b->shard_libctx);
}

int main(int argc, char **argv)
{
    char err[512];

    if (argc < 2 || argv[1][0] == '-') {
        fprintf(stderr, "usage: bench-primitives PKI_DIR [--count N]\n");
        return 2;
    }
    const char *pki_dir = argv[1];
    /* What follows the folder is bench_count's command line. */
    long count = bench_count(argc - 1, argv + 1, "bench-primitives PKI_DIR", 1000);
    if (count <= 0) {
        if (count == 0)
            fprintf(stderr, "bench-primitives: --count takes a number from 1 up\n");
        return 2;
    }
    if (pki_generate(pki_dir, 1, err, sizeof(err)) != 0)
        die(err);

    struct bench b;
    memset(&b, 0, sizeof(b));
    setup(&b, pki_dir);
    /* The derivation's own key: libssl made it for the ServerKeyExchange before. */
    EVP_PKEY *own = p256_key(b.shard_libctx);
    if (own == NULL)
        die("cannot make the ECDHE server's key");

    double us[PRIMITIVES] = {0};
    for (int p = 0; p < PRIMITIVES; p++)
        run(&b, (enum primitive)p, own, WARMUP);
    for (int round = 0; round < ROUNDS; round++) {
        long share = count / ROUNDS + (round < count % ROUNDS ? 1 : 0);
        for (int k = 0; k < PRIMITIVES; k++) {
            enum primitive p = (enum primitive)((round + k) % PRIMITIVES);
            us[p] += run(&b, p, own, share);
        }
    }
    printf("# thread CPU per operation, the operations taking turns in %d rounds\n", ROUNDS);
    printf("openssl_version=%s\n", OpenSSL_version(OPENSSL_VERSION_STRING));
    printf("count=%ld\n", count);
    printf("leaf_der_bytes=%zu\n", b.leaf_length);
    printf("tbs_bytes=%zu\n", b.tbs_length);
    for (int p = 0; p < PRIMITIVES; p++)
        printf("%s_us=%.2f\n", PRIMITIVE_NAMES[p], us[p] / (double)count);
    EVP_PKEY_free(own);
    teardown(&b);
    return 0;
}

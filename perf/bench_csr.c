/*
 * bench-csr: thread CPU time of csr_check() against OpenSSL's own X509_REQ
 * path for the same valid request (PEM_read_bio_X509_REQ, X509_REQ_verify_ex
 * and the DER of the subject and key, which is what csr_check hands to
 * issuance). Also times the pieces csr_check is built from next to the
 * d2i_PUBKEY they replace. Both paths use one private OSSL_LIB_CTX, as a
 * shard thread does.
 *
 *   bench-csr [--count N]
 *
 * Prints key=value lines, times in microseconds per request.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "crypto/csr.h"
#include "perf/bench_count.h"

#define DEVICE_CN "uuid:0f8ab3c2-7d6e-4a51-9b2c-3e4f5a6b7c8d"

static double thread_seconds(void)
{
    struct timespec now;

    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &now);
    return (double)now.tv_sec + (double)now.tv_nsec / 1e9;
}

static void die(const char *what)
{
    fprintf(stderr, "bench-csr: %s failed\n", what);
    ERR_print_errors_fp(stderr);
    exit(1);
}

/* A request as a device makes one: O and CN=uuid:..., P-256, ecdsa-with-SHA256. */
static char *make_request_pem(OSSL_LIB_CTX *libctx, EVP_PKEY *key)
{
    X509_REQ *req = X509_REQ_new_ex(libctx, NULL);
    X509_NAME *name = X509_NAME_new();
    BIO *bio = BIO_new(BIO_s_mem());
    char *data = NULL;

    if (req == NULL || name == NULL || bio == NULL ||
        X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC, (const unsigned char *)"Example", -1,
                                   -1, 0) != 1 ||
        X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)DEVICE_CN, -1,
                                   -1, 0) != 1 ||
        X509_REQ_set_subject_name(req, name) != 1 || X509_REQ_set_pubkey(req, key) != 1)
        die("building the request");
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    if (md == NULL || EVP_DigestSignInit_ex(md, NULL, "SHA256", libctx, NULL, key, NULL) != 1 ||
        X509_REQ_sign_ctx(req, md) <= 0 || PEM_write_bio_X509_REQ(bio, req) != 1)
        die("signing the request");
    long length = BIO_get_mem_data(bio, &data);
    char *pem = strndup(data, (size_t)length);
    EVP_MD_CTX_free(md);
    BIO_free(bio);
    X509_NAME_free(name);
    X509_REQ_free(req);
    return pem;
}

/* The reference: what csr_check did before, through the X509_REQ object API. */
static int openssl_path(OSSL_LIB_CTX *libctx, const char *pem, unsigned char *subject,
                        unsigned char *spki)
{
    BIO *bio = BIO_new_mem_buf(pem, -1);
    X509_REQ *req = X509_REQ_new_ex(libctx, NULL);
    int status = -1;

    if (bio != NULL && req != NULL && PEM_read_bio_X509_REQ(bio, &req, NULL, NULL) != NULL) {
        EVP_PKEY *key = X509_REQ_get0_pubkey(req);
        unsigned char *subject_cursor = subject;
        unsigned char *spki_cursor = spki;
        if (key != NULL && X509_REQ_verify_ex(req, key, libctx, NULL) == 1 &&
            i2d_X509_NAME(X509_REQ_get_subject_name(req), &subject_cursor) > 0 &&
            i2d_PUBKEY(key, &spki_cursor) > 0)
            status = 0;
    }
    X509_REQ_free(req);
    BIO_free(bio);
    return status;
}

static EVP_PKEY *key_from_point(OSSL_LIB_CTX *libctx, const unsigned char *point)
{
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(libctx, "EC", NULL);
    EVP_PKEY *key = NULL;
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, (char *)"prime256v1", 0),
        OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, (void *)point, 65),
        OSSL_PARAM_construct_end(),
    };

    if (ctx != NULL && EVP_PKEY_fromdata_init(ctx) == 1)
        EVP_PKEY_fromdata(ctx, &key, EVP_PKEY_PUBLIC_KEY, params);
    EVP_PKEY_CTX_free(ctx);
    return key;
}

int main(int argc, char **argv)
{
    long count = bench_count(argc, argv, "bench-csr", 2000);

    if (count < 0)
        return 2;
    if (count == 0) {
        fprintf(stderr, "bench-csr: --count must be positive\n");
        return 2;
    }

    OSSL_LIB_CTX *libctx = OSSL_LIB_CTX_new();
    EVP_PKEY *key = EVP_PKEY_Q_keygen(libctx, NULL, "EC", "P-256");
    if (libctx == NULL || key == NULL)
        die("key generation");
    char *pem = make_request_pem(libctx, key);
    size_t pem_length = strlen(pem);
    struct csr_result result;
    char err[128];
    unsigned char subject[512];
    unsigned char spki[256];

    /* Warm both paths (algorithm fetches are cached in the library context). */
    if (csr_check(libctx, pem, pem_length, &result, err, sizeof(err)) != 0)
        die(err);
    if (openssl_path(libctx, pem, subject, spki) != 0)
        die("the OpenSSL path");

    double start = thread_seconds();
    for (long i = 0; i < count; i++) {
        if (csr_check(libctx, pem, pem_length, &result, err, sizeof(err)) != 0)
            die(err);
    }
    double csr_check_us = (thread_seconds() - start) * 1e6 / (double)count;

    start = thread_seconds();
    for (long i = 0; i < count; i++) {
        if (openssl_path(libctx, pem, subject, spki) != 0)
            die("the OpenSSL path");
    }
    double openssl_us = (thread_seconds() - start) * 1e6 / (double)count;

    /* The pieces: key import from the raw point, d2i_PUBKEY, one verification. */
    start = thread_seconds();
    for (long i = 0; i < count; i++) {
        EVP_PKEY *imported = key_from_point(libctx, result.spki_der + result.spki_length - 65);
        if (imported == NULL)
            die("EVP_PKEY_fromdata");
        EVP_PKEY_free(imported);
    }
    double fromdata_us = (thread_seconds() - start) * 1e6 / (double)count;

    start = thread_seconds();
    for (long i = 0; i < count; i++) {
        const unsigned char *cursor = result.spki_der;
        EVP_PKEY *decoded = d2i_PUBKEY_ex(NULL, &cursor, (long)result.spki_length, libctx, NULL);
        if (decoded == NULL)
            die("d2i_PUBKEY_ex");
        EVP_PKEY_free(decoded);
    }
    double d2i_us = (thread_seconds() - start) * 1e6 / (double)count;

    unsigned char signature[80];
    size_t signature_length = sizeof(signature);
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    if (md == NULL || EVP_DigestSignInit_ex(md, NULL, "SHA256", libctx, NULL, key, NULL) != 1 ||
        EVP_DigestSign(md, signature, &signature_length, (const unsigned char *)pem, 200) != 1)
        die("EVP_DigestSign");
    EVP_MD_CTX_free(md);
    start = thread_seconds();
    for (long i = 0; i < count; i++) {
        md = EVP_MD_CTX_new();
        if (md == NULL ||
            EVP_DigestVerifyInit_ex(md, NULL, "SHA256", libctx, NULL, key, NULL) != 1 ||
            EVP_DigestVerify(md, signature, signature_length, (const unsigned char *)pem, 200) != 1)
            die("EVP_DigestVerify");
        EVP_MD_CTX_free(md);
    }
    double verify_us = (thread_seconds() - start) * 1e6 / (double)count;

    printf("count=%ld\n", count);
    printf("csr_check_us=%.1f\n", csr_check_us);
    printf("openssl_x509_req_path_us=%.1f\n", openssl_us);
    printf("ratio=%.2f\n", openssl_us / csr_check_us);
    printf("key_fromdata_us=%.1f\n", fromdata_us);
    printf("key_d2i_pubkey_us=%.1f\n", d2i_us);
    printf("digest_verify_us=%.1f\n", verify_us);

    free(pem);
    EVP_PKEY_free(key);
    OSSL_LIB_CTX_free(libctx);
    return 0;
}

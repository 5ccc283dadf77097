/*
 * issuer: a hub's identity CA, loaded from PEM files, and the device
 * identity certificates it signs (PROTOCOL.md 2.4).
 *
 * An issuer belongs to one signer worker and its OpenSSL library context:
 * everything, from loading the key to fetching SHA-256 for a signature, goes
 * through that context, so workers share no OpenSSL state.
 *
 * The certificate file lists the CA first and then its issuers in order.
 * issuer_load() checks that order, so a misordered file fails at start-up
 * instead of producing chains devices cannot verify. The chain handed out
 * with each certificate is every certificate that is not self-signed; the
 * trust anchor is the file's last certificate (the root, normally).
 */
#include "crypto/issuer.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#define OCF_IDENTITY_OID "1.3.6.1.4.1.44924.1.6"

struct issuer {
    OSSL_LIB_CTX *libctx;
    X509 *ca;
    EVP_PKEY *key;
    char *chain_pem;
    char *root_pem;
};

static int fail(char *err, size_t err_length, const char *format, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(char *err, size_t err_length, const char *format, ...)
{
    va_list args;

    if (err_length > 0) {
        va_start(args, format);
        vsnprintf(err, err_length, format, args);
        va_end(args);
    }
    ERR_clear_error();
    return -1;
}

/* Keys are stored unencrypted: never fall back to prompting on a terminal. */
static int no_passphrase(char *buffer, int size, int rwflag, void *user)
{
    return 0;
}

static STACK_OF(X509) *
    read_certificates(OSSL_LIB_CTX *libctx, const char *path, char *err, size_t err_length)
{
    BIO *bio = BIO_new_file(path, "r");
    STACK_OF(X509) *certificates = NULL;

    if (bio == NULL) {
        fail(err, err_length, "%s: cannot read the CA certificate file", path);
        return NULL;
    }
    certificates = sk_X509_new_null();
    for (;;) {
        X509 *certificate = X509_new_ex(libctx, NULL);
        if (certificate == NULL || certificates == NULL ||
            PEM_read_bio_X509(bio, &certificate, no_passphrase, NULL) == NULL) {
            X509_free(certificate);
            break;
        }
        if (sk_X509_push(certificates, certificate) <= 0) {
            X509_free(certificate);
            break;
        }
    }
    unsigned long last = ERR_peek_last_error();
    bool clean_end =
        ERR_GET_LIB(last) == ERR_LIB_PEM && ERR_GET_REASON(last) == PEM_R_NO_START_LINE;
    BIO_free(bio);
    if (certificates == NULL || sk_X509_num(certificates) == 0 || !clean_end) {
        fail(err, err_length, "%s: not a PEM list of certificates", path);
        sk_X509_pop_free(certificates, X509_free);
        return NULL;
    }
    ERR_clear_error();
    return certificates;
}

static EVP_PKEY *read_key(OSSL_LIB_CTX *libctx, const char *path, char *err, size_t err_length)
{
    BIO *bio = BIO_new_file(path, "r");
    EVP_PKEY *key = NULL;

    if (bio == NULL) {
        fail(err, err_length, "%s: cannot read the CA key file", path);
        return NULL;
    }
    key = PEM_read_bio_PrivateKey_ex(bio, NULL, no_passphrase, NULL, libctx, NULL);
    BIO_free(bio);
    if (key == NULL) {
        fail(err, err_length, "%s: not an unencrypted PEM private key", path);
        return NULL;
    }
    if (!(EVP_PKEY_is_a(key, "EC") ||
          (EVP_PKEY_is_a(key, "RSA") && EVP_PKEY_get_bits(key) >= 2048))) {
        fail(err, err_length, "%s: CA key must be EC or RSA of 2048 bits or more", path);
        EVP_PKEY_free(key);
        return NULL;
    }
    return key;
}

static bool is_self_signed(X509 *certificate)
{
    return X509_check_issued(certificate, certificate) == X509_V_OK;
}

static int append_pem(BIO *bio, X509 *certificate)
{
    return PEM_write_bio_X509(bio, certificate) == 1 ? 0 : -1;
}

static char *bio_to_string(BIO *bio)
{
    char *data = NULL;
    long length = BIO_get_mem_data(bio, &data);
    char *text = malloc((size_t)length + 1);

    if (text == NULL)
        return NULL;
    if (length > 0)
        memcpy(text, data, (size_t)length);
    text[length] = '\0';
    return text;
}

/* Every certificate must be issued by the next one in the file. */
static int check_order(STACK_OF(X509) * certificates, const char *path, char *err,
                       size_t err_length)
{
    for (int i = 0; i + 1 < sk_X509_num(certificates); i++) {
        if (X509_check_issued(sk_X509_value(certificates, i + 1), sk_X509_value(certificates, i)) !=
            X509_V_OK)
            return fail(err, err_length,
                        "%s: certificate %d is not issued by certificate %d (CA first, root last)",
                        path, i + 1, i + 2);
    }
    return 0;
}

static int build_pems(struct issuer *issuer, STACK_OF(X509) * certificates)
{
    BIO *chain = BIO_new(BIO_s_mem());
    BIO *root = BIO_new(BIO_s_mem());
    int status = -1;
    int count = sk_X509_num(certificates);

    if (chain == NULL || root == NULL)
        goto out;
    for (int i = 0; i < count; i++) {
        X509 *certificate = sk_X509_value(certificates, i);
        if (!is_self_signed(certificate) && append_pem(chain, certificate) != 0)
            goto out;
    }
    if (append_pem(root, sk_X509_value(certificates, count - 1)) != 0)
        goto out;
    issuer->chain_pem = bio_to_string(chain);
    issuer->root_pem = bio_to_string(root);
    if (issuer->chain_pem != NULL && issuer->root_pem != NULL)
        status = 0;
out:
    BIO_free(chain);
    BIO_free(root);
    return status;
}

struct issuer *issuer_load(OSSL_LIB_CTX *libctx, const char *cert_file, const char *key_file,
                           char *err, size_t err_length)
{
    struct issuer *issuer = calloc(1, sizeof(*issuer));
    STACK_OF(X509) *certificates = NULL;

    if (issuer == NULL) {
        fail(err, err_length, "out of memory");
        return NULL;
    }
    issuer->libctx = libctx;
    certificates = read_certificates(libctx, cert_file, err, err_length);
    if (certificates == NULL)
        goto error;
    issuer->ca = sk_X509_value(certificates, 0);
    X509_up_ref(issuer->ca);
    if (check_order(certificates, cert_file, err, err_length) != 0)
        goto error;
    uint32_t flags = X509_get_extension_flags(issuer->ca);
    if (!(flags & EXFLAG_BCONS) || !(flags & EXFLAG_CA) ||
        !(X509_get_key_usage(issuer->ca) & KU_KEY_CERT_SIGN)) {
        fail(err, err_length, "%s: the first certificate is not a CA (basicConstraints CA:TRUE)",
             cert_file);
        goto error;
    }
    issuer->key = read_key(libctx, key_file, err, err_length);
    if (issuer->key == NULL)
        goto error;
    if (X509_check_private_key(issuer->ca, issuer->key) != 1) {
        fail(err, err_length, "%s: key does not match the CA certificate in %s", key_file,
             cert_file);
        goto error;
    }
    if (build_pems(issuer, certificates) != 0) {
        fail(err, err_length, "out of memory");
        goto error;
    }
    sk_X509_pop_free(certificates, X509_free);
    return issuer;

error:
    sk_X509_pop_free(certificates, X509_free);
    issuer_free(issuer);
    return NULL;
}

void issuer_free(struct issuer *issuer)
{
    if (issuer == NULL)
        return;
    X509_free(issuer->ca);
    EVP_PKEY_free(issuer->key);
    free(issuer->chain_pem);
    free(issuer->root_pem);
    free(issuer);
}

const char *issuer_chain_pem(const struct issuer *issuer)
{
    return issuer->chain_pem;
}

const char *issuer_root_pem(const struct issuer *issuer)
{
    return issuer->root_pem;
}

/*
 * A positive 128-bit serial whose DER content is exactly 16 bytes: the top
 * bit is cleared so it is not negative, and the first byte is non-zero so
 * the encoding is not shortened.
 */
static int set_random_serial(struct issuer *issuer, X509 *certificate,
                             uint8_t serial[ISSUER_SERIAL_LENGTH])
{
    ASN1_INTEGER *integer = NULL;
    int status = -1;

    if (RAND_bytes_ex(issuer->libctx, serial, ISSUER_SERIAL_LENGTH, 0) != 1)
        return -1;
    serial[0] &= 0x7f;
    if (serial[0] == 0)
        serial[0] = 0x01;
    integer = ASN1_INTEGER_new();
    if (integer != NULL && ASN1_STRING_set(integer, serial, ISSUER_SERIAL_LENGTH) == 1 &&
        X509_set_serialNumber(certificate, integer) == 1)
        status = 0;
    ASN1_INTEGER_free(integer);
    return status;
}

static int add_extension(X509 *certificate, X509V3_CTX *context, int nid, const char *value)
{
    X509_EXTENSION *extension = X509V3_EXT_nconf_nid(NULL, context, nid, value);
    int status = -1;

    if (extension != NULL && X509_add_ext(certificate, extension, -1) == 1)
        status = 0;
    X509_EXTENSION_free(extension);
    return status;
}

static int add_extensions(struct issuer *issuer, X509 *certificate)
{
    X509V3_CTX context;

    X509V3_set_ctx(&context, issuer->ca, certificate, NULL, NULL, 0);
    if (add_extension(certificate, &context, NID_basic_constraints, "critical,CA:FALSE") != 0 ||
        add_extension(certificate, &context, NID_key_usage,
                      "critical,digitalSignature,keyAgreement") != 0 ||
        add_extension(certificate, &context, NID_ext_key_usage,
                      "serverAuth,clientAuth," OCF_IDENTITY_OID) != 0 ||
        add_extension(certificate, &context, NID_subject_key_identifier, "hash") != 0 ||
        add_extension(certificate, &context, NID_authority_key_identifier, "keyid:always") != 0)
        return -1;
    return 0;
}

static int sign(struct issuer *issuer, X509 *certificate)
{
    EVP_MD_CTX *context = EVP_MD_CTX_new();
    int status = -1;

    if (context != NULL &&
        EVP_DigestSignInit_ex(context, NULL, "SHA256", issuer->libctx, NULL, issuer->key, NULL) ==
            1 &&
        X509_sign_ctx(certificate, context) > 0)
        status = 0;
    EVP_MD_CTX_free(context);
    return status;
}

static char *certificate_pem(const struct issuer *issuer, X509 *certificate)
{
    BIO *bio = BIO_new(BIO_s_mem());
    char *pem = NULL;

    if (bio != NULL && append_pem(bio, certificate) == 0 &&
        BIO_write(bio, issuer->chain_pem, (int)strlen(issuer->chain_pem)) >= 0)
        pem = bio_to_string(bio);
    BIO_free(bio);
    return pem;
}

int issuer_issue(struct issuer *issuer, const uint8_t *subject_der, size_t subject_length,
                 const uint8_t *spki_der, size_t spki_length, time_t not_before, time_t not_after,
                 struct issued_certificate *out, char *err, size_t err_length)
{
    X509 *certificate = NULL;
    X509_NAME *subject = NULL;
    EVP_PKEY *key = NULL;
    int status = -1;
    const unsigned char *cursor;

    memset(out, 0, sizeof(*out));
    if (not_after <= not_before)
        return fail(err, err_length, "certificate validity ends before it starts");
    cursor = subject_der;
    subject = d2i_X509_NAME(NULL, &cursor, (long)subject_length);
    if (subject == NULL || cursor != subject_der + subject_length) {
        fail(err, err_length, "certificate subject is not a DER Name");
        goto out;
    }
    cursor = spki_der;
    key = d2i_PUBKEY_ex(NULL, &cursor, (long)spki_length, issuer->libctx, NULL);
    if (key == NULL || cursor != spki_der + spki_length) {
        fail(err, err_length, "certificate key is not a DER SubjectPublicKeyInfo");
        goto out;
    }
    certificate = X509_new_ex(issuer->libctx, NULL);
    if (certificate == NULL || X509_set_version(certificate, X509_VERSION_3) != 1 ||
        set_random_serial(issuer, certificate, out->serial) != 0 ||
        X509_set_issuer_name(certificate, X509_get_subject_name(issuer->ca)) != 1 ||
        X509_set_subject_name(certificate, subject) != 1 ||
        X509_set_pubkey(certificate, key) != 1 ||
        ASN1_TIME_set(X509_getm_notBefore(certificate), not_before) == NULL ||
        ASN1_TIME_set(X509_getm_notAfter(certificate), not_after) == NULL) {
        fail(err, err_length, "cannot build the certificate");
        goto out;
    }
    if (add_extensions(issuer, certificate) != 0) {
        fail(err, err_length, "cannot add the certificate extensions");
        goto out;
    }
    if (sign(issuer, certificate) != 0) {
        fail(err, err_length, "cannot sign the certificate");
        goto out;
    }
    out->pem = certificate_pem(issuer, certificate);
    if (out->pem == NULL) {
        fail(err, err_length, "out of memory");
        goto out;
    }
    out->not_before = not_before;
    out->not_after = not_after;
    status = 0;
out:
    X509_free(certificate);
    X509_NAME_free(subject);
    EVP_PKEY_free(key);
    return status;
}

/*
 * pki: generates the demo PKI described in pki.h. Each certificate/key pair
 * is handled the same way: an existing key is loaded, a missing one is
 * created with O_EXCL and mode 0600; an existing certificate is kept when its
 * key was already there, otherwise it is issued anew and written atomically
 * (temporary file, then rename). Re-running therefore only fills gaps, and a
 * CA whose files exist keeps issuing with the same key and certificate.
 */
#include "crypto/pki.h"
#include "crypto/jwt.h"
#include "common/base64.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#define CA_VALIDITY_DAYS 3650
#define LEAF_VALIDITY_DAYS 1825
#define BACKDATE_SECONDS 3600
#define SERIAL_BYTES 16
#define OPERATOR_TOKEN_LIFETIME_S (365L * 24 * 3600)
#define PKI_MAX_CHAIN 1 /* certificates written after a leaf: its issuer at most */

#define CA_KEY_USAGE "critical,keyCertSign,cRLSign"
#define DEVICE_KEY_USAGE "critical,digitalSignature,keyAgreement"
#define SERVER_KEY_USAGE "critical,digitalSignature"

/* What a certificate says about itself; the issuer comes separately. */
struct pki_profile {
    const char *organization;
    const char *common_name;
    int validity_days;
    bool is_ca;
    const char *key_usage;          /* X509v3 config syntax */
    const char *extended_key_usage; /* NULL: none */
    const char *subject_alt_name;   /* NULL: none */
};

/* A certificate with its key; issuer of the next pair or the result. */
struct pki_pair {
    X509 *certificate;
    EVP_PKEY *key;
};

static const struct pki_profile MFG_ROOT = {
    .organization = "Demo Manufacturer",
    .common_name = "Demo Manufacturer Root CA",
    .validity_days = CA_VALIDITY_DAYS,
    .is_ca = true,
    .key_usage = CA_KEY_USAGE,
};
static const struct pki_profile MFG_INTERMEDIATE = {
    .organization = "Demo Manufacturer",
    .common_name = "Demo Manufacturer Intermediate CA",
    .validity_days = CA_VALIDITY_DAYS,
    .is_ca = true,
    .key_usage = CA_KEY_USAGE,
};
static const struct pki_profile DPS_ROOT = {
    .organization = "Demo DPS",
    .common_name = "Demo DPS Root CA",
    .validity_days = CA_VALIDITY_DAYS,
    .is_ca = true,
    .key_usage = CA_KEY_USAGE,
};
static const struct pki_profile DPS_SERVER = {
    .organization = "Demo DPS",
    .common_name = "Demo DPS Server",
    .validity_days = LEAF_VALIDITY_DAYS,
    .is_ca = false,
    .key_usage = SERVER_KEY_USAGE,
    .extended_key_usage = "serverAuth",
    .subject_alt_name = "DNS:localhost,IP:127.0.0.1",
};
static const struct pki_profile HUB_ROOT = {
    .organization = "Demo Hub",
    .common_name = "Demo Hub Root CA",
    .validity_days = CA_VALIDITY_DAYS,
    .is_ca = true,
    .key_usage = CA_KEY_USAGE,
};
static const struct pki_profile HUB_CA = {
    .organization = "Demo Hub",
    .common_name = "Demo Hub Identity CA",
    .validity_days = CA_VALIDITY_DAYS,
    .is_ca = true,
    .key_usage = CA_KEY_USAGE,
};
static const struct pki_profile ROGUE_ROOT = {
    .organization = "Rogue Manufacturer",
    .common_name = "Rogue Manufacturer Root CA",
    .validity_days = CA_VALIDITY_DAYS,
    .is_ca = true,
    .key_usage = CA_KEY_USAGE,
};
static const struct pki_profile ROGUE_DEVICE = {
    .organization = "Rogue Manufacturer",
    .common_name = "Rogue Device",
    .validity_days = LEAF_VALIDITY_DAYS,
    .is_ca = false,
    .key_usage = DEVICE_KEY_USAGE,
    .extended_key_usage = "clientAuth",
};
static const struct pki_profile NO_CLIENT_AUTH_DEVICE = {
    .organization = "Demo Manufacturer",
    .common_name = "Demo Device Without ClientAuth",
    .validity_days = LEAF_VALIDITY_DAYS,
    .is_ca = false,
    .key_usage = DEVICE_KEY_USAGE,
    .extended_key_usage = "serverAuth",
};

/* "what path: <first OpenSSL error>" */
static void set_error(char *err, size_t err_length, const char *what, const char *path)
{
    char detail[256] = "unknown OpenSSL error";
    unsigned long code = ERR_get_error();

    if (code != 0)
        ERR_error_string_n(code, detail, sizeof(detail));
    ERR_clear_error();
    snprintf(err, err_length, "%s %s: %s", what, path, detail);
}

/* "what path: <errno text>", for failed system calls. */
static void set_system_error(char *err, size_t err_length, const char *what, const char *path)
{
    snprintf(err, err_length, "%s %s: %s", what, path, strerror(errno));
}

static int join_path(char *out, size_t out_length, const char *dir, const char *name, char *err,
                     size_t err_length)
{
    int written = snprintf(out, out_length, "%s/%s", dir, name);

    if (written < 0 || (size_t)written >= out_length) {
        snprintf(err, err_length, "path too long: %s/%s", dir, name);
        return -1;
    }
    return 0;
}

static bool file_exists(const char *path)
{
    return access(path, F_OK) == 0;
}

static int make_directory(const char *path, char *err, size_t err_length)
{
    if (mkdir(path, 0755) == 0 || errno == EEXIST)
        return 0;
    set_system_error(err, err_length, "cannot create directory", path);
    return -1;
}

static EVP_PKEY *load_key(const char *path, char *err, size_t err_length)
{
    EVP_PKEY *key = NULL;
    BIO *bio = BIO_new_file(path, "r");

    if (bio != NULL)
        key = PEM_read_bio_PrivateKey_ex(bio, NULL, NULL, NULL, NULL, NULL);
    BIO_free(bio);
    if (key == NULL)
        set_error(err, err_length, "cannot read private key", path);
    return key;
}

/* The first certificate of a PEM file (the others are its chain). */
static X509 *load_certificate(const char *path, char *err, size_t err_length)
{
    X509 *certificate = NULL;
    BIO *bio = BIO_new_file(path, "r");

    if (bio != NULL)
        certificate = PEM_read_bio_X509(bio, NULL, NULL, NULL);
    BIO_free(bio);
    if (certificate == NULL)
        set_error(err, err_length, "cannot read certificate", path);
    return certificate;
}

/* Writes a new key file; refuses to replace one (O_EXCL) so a key is never lost. */
static int write_key(const char *path, EVP_PKEY *key, char *err, size_t err_length)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    BIO *bio;
    int ok;

    if (fd < 0) {
        set_system_error(err, err_length, "cannot create key file", path);
        return -1;
    }
    bio = BIO_new_fd(fd, BIO_CLOSE);
    if (bio == NULL) {
        close(fd);
        set_error(err, err_length, "cannot write key file", path);
        return -1;
    }
    ok = PEM_write_bio_PrivateKey(bio, key, NULL, NULL, 0, NULL, NULL) == 1 && BIO_flush(bio) == 1;
    BIO_free(bio);
    if (!ok) {
        set_error(err, err_length, "cannot write key file", path);
        unlink(path);
        return -1;
    }
    return 0;
}

/* Writes certificates in order to path through a temporary file and rename. */
static int write_certificates(const char *path, X509 *const *certificates, size_t count, char *err,
                              size_t err_length)
{
    char temporary[PATH_MAX];
    BIO *bio;
    bool ok = true;

    int written = snprintf(temporary, sizeof(temporary), "%s.tmp", path);

    if (written < 0 || (size_t)written >= sizeof(temporary)) {
        snprintf(err, err_length, "path too long: %s", path);
        return -1;
    }
    bio = BIO_new_file(temporary, "w");
    if (bio == NULL) {
        set_error(err, err_length, "cannot create certificate file", temporary);
        return -1;
    }
    for (size_t i = 0; i < count && ok; i++)
        ok = PEM_write_bio_X509(bio, certificates[i]) == 1;
    ok = ok && BIO_flush(bio) == 1;
    BIO_free(bio);
    if (!ok) {
        set_error(err, err_length, "cannot write certificate file", temporary);
        unlink(temporary);
        return -1;
    }
    if (rename(temporary, path) != 0) {
        set_system_error(err, err_length, "cannot rename to", path);
        unlink(temporary);
        return -1;
    }
    return 0;
}

static int set_random_serial(X509 *certificate)
{
    unsigned char bytes[SERIAL_BYTES];
    BIGNUM *number;
    int ok;

    if (RAND_bytes(bytes, sizeof(bytes)) != 1)
        return -1;
    bytes[0] &= 0x7f; /* positive */
    bytes[0] |= 0x40; /* and always SERIAL_BYTES long */
    number = BN_bin2bn(bytes, sizeof(bytes), NULL);
    ok = number != NULL && BN_to_ASN1_INTEGER(number, X509_get_serialNumber(certificate)) != NULL;
    BN_free(number);
    return ok ? 0 : -1;
}

static int add_extension(X509 *certificate, X509V3_CTX *context, int nid, const char *value)
{
    X509_EXTENSION *extension = X509V3_EXT_nconf_nid(NULL, context, nid, value);
    int ok;

    if (extension == NULL)
        return -1;
    ok = X509_add_ext(certificate, extension, -1);
    X509_EXTENSION_free(extension);
    return ok == 1 ? 0 : -1;
}

static int set_subject(X509 *certificate, const struct pki_profile *profile)
{
    X509_NAME *name = X509_get_subject_name(certificate);

    if (X509_NAME_add_entry_by_txt(name, "O", MBSTRING_UTF8,
                                   (const unsigned char *)profile->organization, -1, -1, 0) != 1)
        return -1;
    if (X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
                                   (const unsigned char *)profile->common_name, -1, -1, 0) != 1)
        return -1;
    return 0;
}

static int add_extensions(X509 *certificate, X509 *issuer, const struct pki_profile *profile)
{
    X509V3_CTX context;

    /*
     * The subject key identifier goes in first so that a self-signed
     * certificate can name itself in its authority key identifier.
     */
    X509V3_set_ctx(&context, issuer != NULL ? issuer : certificate, certificate, NULL, NULL, 0);
    if (add_extension(certificate, &context, NID_basic_constraints,
                      profile->is_ca ? "critical,CA:TRUE" : "critical,CA:FALSE") != 0)
        return -1;
    if (add_extension(certificate, &context, NID_key_usage, profile->key_usage) != 0)
        return -1;
    if (profile->extended_key_usage != NULL &&
        add_extension(certificate, &context, NID_ext_key_usage, profile->extended_key_usage) != 0)
        return -1;
    if (profile->subject_alt_name != NULL &&
        add_extension(certificate, &context, NID_subject_alt_name, profile->subject_alt_name) != 0)
        return -1;
    if (add_extension(certificate, &context, NID_subject_key_identifier, "hash") != 0)
        return -1;
    return add_extension(certificate, &context, NID_authority_key_identifier, "keyid:always");
}

/* Issues a certificate for key; issuer NULL means self-signed with key. */
static X509 *issue(const struct pki_profile *profile, EVP_PKEY *key, const struct pki_pair *issuer)
{
    X509 *certificate = X509_new();
    time_t now = time(NULL);
    bool ok;

    if (certificate == NULL)
        return NULL;
    ok = X509_set_version(certificate, X509_VERSION_3) == 1 &&
         set_random_serial(certificate) == 0 && set_subject(certificate, profile) == 0 &&
         X509_set_issuer_name(
             certificate,
             X509_get_subject_name(issuer != NULL ? issuer->certificate : certificate)) == 1 &&
         ASN1_TIME_adj(X509_getm_notBefore(certificate), now, 0, -BACKDATE_SECONDS) != NULL &&
         ASN1_TIME_adj(X509_getm_notAfter(certificate), now, profile->validity_days, 0) != NULL &&
         X509_set_pubkey(certificate, key) == 1 &&
         add_extensions(certificate, issuer != NULL ? issuer->certificate : NULL, profile) == 0 &&
         X509_sign(certificate, issuer != NULL ? issuer->key : key, EVP_sha256()) > 0;
    if (!ok) {
        X509_free(certificate);
        return NULL;
    }
    return certificate;
}

static void pair_free(struct pki_pair *pair)
{
    X509_free(pair->certificate);
    EVP_PKEY_free(pair->key);
    pair->certificate = NULL;
    pair->key = NULL;
}

/*
 * Makes sure key_path and certificate_path exist, issuing from issuer (NULL:
 * self-signed). The certificate file holds the certificate then chain (at
 * most PKI_MAX_CHAIN certificates). The
 * pair is returned in out when out is not NULL.
 */
static int ensure_pair(const char *key_path, const char *certificate_path,
                       const struct pki_profile *profile, const struct pki_pair *issuer,
                       X509 *const *chain, size_t chain_length, struct pki_pair *out, char *err,
                       size_t err_length)
{
    struct pki_pair pair = {NULL, NULL};
    bool key_existed = file_exists(key_path);
    X509 *certificates[PKI_MAX_CHAIN + 1];

    if (key_existed) {
        pair.key = load_key(key_path, err, err_length);
        if (pair.key == NULL)
            return -1;
    } else {
        pair.key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
        if (pair.key == NULL) {
            set_error(err, err_length, "cannot generate key for", key_path);
            return -1;
        }
        if (write_key(key_path, pair.key, err, err_length) != 0) {
            pair_free(&pair);
            return -1;
        }
    }

    if (key_existed && file_exists(certificate_path)) {
        pair.certificate = load_certificate(certificate_path, err, err_length);
        if (pair.certificate == NULL) {
            pair_free(&pair);
            return -1;
        }
        if (X509_check_private_key(pair.certificate, pair.key) != 1) {
            snprintf(err, err_length, "%s does not belong to %s: remove both to regenerate them",
                     certificate_path, key_path);
            ERR_clear_error();
            pair_free(&pair);
            return -1;
        }
        if (issuer != NULL && X509_verify(pair.certificate, issuer->key) != 1) {
            char issuer_name[128] = "issuer";

            X509_NAME_get_text_by_NID(X509_get_subject_name(issuer->certificate), NID_commonName,
                                      issuer_name, sizeof(issuer_name));
            snprintf(err, err_length,
                     "%s was not issued by the current %s: remove it and %s to regenerate them",
                     certificate_path, issuer_name, key_path);
            ERR_clear_error();
            pair_free(&pair);
            return -1;
        }
    } else {
        pair.certificate = issue(profile, pair.key, issuer);
        if (pair.certificate == NULL) {
            set_error(err, err_length, "cannot issue certificate", certificate_path);
            pair_free(&pair);
            return -1;
        }
        certificates[0] = pair.certificate;
        for (size_t i = 0; i < chain_length; i++)
            certificates[i + 1] = chain[i];
        if (write_certificates(certificate_path, certificates, chain_length + 1, err, err_length) !=
            0) {
            pair_free(&pair);
            return -1;
        }
    }

    if (out != NULL)
        *out = pair;
    else
        pair_free(&pair);
    return 0;
}

/* Same as ensure_pair for files named dir/base.key and dir/base.pem. */
static int ensure_named_pair(const char *dir, const char *base, const struct pki_profile *profile,
                             const struct pki_pair *issuer, X509 *const *chain, size_t chain_length,
                             struct pki_pair *out, char *err, size_t err_length)
{
    char name[128];
    char key_path[PATH_MAX];
    char certificate_path[PATH_MAX];

    snprintf(name, sizeof(name), "%s.key", base);
    if (join_path(key_path, sizeof(key_path), dir, name, err, err_length) != 0)
        return -1;
    snprintf(name, sizeof(name), "%s.pem", base);
    if (join_path(certificate_path, sizeof(certificate_path), dir, name, err, err_length) != 0)
        return -1;
    return ensure_pair(key_path, certificate_path, profile, issuer, chain, chain_length, out, err,
                       err_length);
}

int pki_device_path(const char *dir, unsigned index, const char *suffix, char *out,
                    size_t out_length)
{
    int written = snprintf(out, out_length, "%s/devices/device-%04u%s", dir, index, suffix);

    if (written < 0 || (size_t)written >= out_length) {
        out[0] = '\0';
        return -1;
    }
    return 0;
}

static int ensure_device(const char *dir, unsigned index, const struct pki_pair *intermediate,
                         char *err, size_t err_length)
{
    char key_path[PATH_MAX];
    char certificate_path[PATH_MAX];
    char common_name[64];
    struct pki_profile profile = {
        .organization = "Demo Manufacturer",
        .common_name = common_name,
        .validity_days = LEAF_VALIDITY_DAYS,
        .key_usage = DEVICE_KEY_USAGE,
        .extended_key_usage = "clientAuth",
    };

    snprintf(common_name, sizeof(common_name), "Demo Device %04u", index);
    if (pki_device_path(dir, index, ".key", key_path, sizeof(key_path)) != 0 ||
        pki_device_path(dir, index, ".pem", certificate_path, sizeof(certificate_path)) != 0) {
        snprintf(err, err_length, "path too long: %s/devices/device-%04u.pem", dir, index);
        return -1;
    }
    return ensure_pair(key_path, certificate_path, &profile, intermediate,
                       &intermediate->certificate, 1, NULL, err, err_length);
}

static int device_files_exist(const char *dir, unsigned index)
{
    char path[PATH_MAX];

    if (pki_device_path(dir, index, ".key", path, sizeof(path)) != 0 || !file_exists(path))
        return 0;
    return pki_device_path(dir, index, ".pem", path, sizeof(path)) == 0 && file_exists(path);
}

static int make_devices_directory(const char *dir, char *err, size_t err_length)
{
    char path[PATH_MAX];

    if (join_path(path, sizeof(path), dir, "devices", err, err_length) != 0)
        return -1;
    return make_directory(path, err, err_length);
}

static int load_intermediate(const char *dir, struct pki_pair *intermediate, char *err,
                             size_t err_length)
{
    char path[PATH_MAX];

    if (join_path(path, sizeof(path), dir, "mfg-intermediate.key", err, err_length) != 0)
        return -1;
    intermediate->key = load_key(path, err, err_length);
    if (intermediate->key == NULL)
        return -1;
    if (join_path(path, sizeof(path), dir, "mfg-intermediate.pem", err, err_length) != 0) {
        pair_free(intermediate);
        return -1;
    }
    intermediate->certificate = load_certificate(path, err, err_length);
    if (intermediate->certificate == NULL) {
        pair_free(intermediate);
        return -1;
    }
    return 0;
}

int pki_ensure_device(const char *dir, unsigned index, char *err, size_t err_length)
{
    struct pki_pair intermediate = {NULL, NULL};
    int result;

    if (index == 0) {
        snprintf(err, err_length, "device index starts at 1");
        return -1;
    }
    if (device_files_exist(dir, index))
        return 0;
    if (make_devices_directory(dir, err, err_length) != 0 ||
        load_intermediate(dir, &intermediate, err, err_length) != 0)
        return -1;
    result = ensure_device(dir, index, &intermediate, err, err_length);
    pair_free(&intermediate);
    return result;
}

static int ensure_chain_file(const char *dir, X509 *intermediate, X509 *root, char *err,
                             size_t err_length)
{
    char path[PATH_MAX];
    X509 *chain[2] = {intermediate, root};

    if (join_path(path, sizeof(path), dir, "mfg-chain.pem", err, err_length) != 0)
        return -1;
    if (file_exists(path))
        return 0;
    return write_certificates(path, chain, 2, err, err_length);
}

/* A signing key pair: base.key and base.pub.pem. */
static int ensure_signing_key(const char *dir, const char *base, char *err, size_t err_length)
{
    char key_path[PATH_MAX];
    char public_path[PATH_MAX];
    char key_name[64];
    char public_name[64];
    EVP_PKEY *key;
    BIO *bio;
    int ok;

    snprintf(key_name, sizeof(key_name), "%s.key", base);
    snprintf(public_name, sizeof(public_name), "%s.pub.pem", base);
    if (join_path(key_path, sizeof(key_path), dir, key_name, err, err_length) != 0 ||
        join_path(public_path, sizeof(public_path), dir, public_name, err, err_length) != 0)
        return -1;
    if (file_exists(key_path)) {
        if (file_exists(public_path))
            return 0;
        key = load_key(key_path, err, err_length);
        if (key == NULL)
            return -1;
    } else {
        key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
        if (key == NULL) {
            set_error(err, err_length, "cannot generate key for", key_path);
            return -1;
        }
        if (write_key(key_path, key, err, err_length) != 0) {
            EVP_PKEY_free(key);
            return -1;
        }
    }
    bio = BIO_new_file(public_path, "w");
    ok = bio != NULL && PEM_write_bio_PUBKEY(bio, key) == 1 && BIO_flush(bio) == 1;
    BIO_free(bio);
    EVP_PKEY_free(key);
    if (!ok) {
        set_error(err, err_length, "cannot write public key", public_path);
        return -1;
    }
    return 0;
}

/* Writes text to a new file of the given mode through a temporary file and rename. */
static int write_text(const char *path, const char *text, mode_t mode, char *err, size_t err_length)
{
    char temporary[PATH_MAX];
    int written = snprintf(temporary, sizeof(temporary), "%s.tmp", path);

    if (written < 0 || (size_t)written >= sizeof(temporary)) {
        snprintf(err, err_length, "path too long: %s", path);
        return -1;
    }
    int fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    if (fd < 0) {
        set_system_error(err, err_length, "cannot create", temporary);
        return -1;
    }
    size_t length = strlen(text);
    bool ok = write(fd, text, length) == (ssize_t)length;
    ok = close(fd) == 0 && ok;
    if (!ok || rename(temporary, path) != 0) {
        set_system_error(err, err_length, "cannot write", path);
        unlink(temporary);
        return -1;
    }
    return 0;
}

/* operator.jwks.json: the public half of operator.key, for the management API's `jwks`. */
static int ensure_operator_jwks(const char *dir, char *err, size_t err_length)
{
    char key_path[PATH_MAX];
    char jwks_path[PATH_MAX];
    unsigned char point[65];
    size_t point_length = 0;
    char *text = NULL;
    int result = -1;

    if (join_path(key_path, sizeof(key_path), dir, "operator.key", err, err_length) != 0 ||
        join_path(jwks_path, sizeof(jwks_path), dir, "operator.jwks.json", err, err_length) != 0)
        return -1;
    if (file_exists(jwks_path))
        return 0;
    EVP_PKEY *key = load_key(key_path, err, err_length);
    if (key == NULL)
        return -1;
    if (EVP_PKEY_get_octet_string_param(key, OSSL_PKEY_PARAM_PUB_KEY, point, sizeof(point),
                                        &point_length) != 1 ||
        point_length != sizeof(point)) {
        set_error(err, err_length, "cannot read the public point of", key_path);
        goto out;
    }
    char *x = base64_encode_string(BASE64_URL, point + 1, 32);
    char *y = base64_encode_string(BASE64_URL, point + 33, 32);
    if (x != NULL && y != NULL &&
        asprintf(&text,
                 "{\"keys\": [{\"kty\": \"EC\", \"crv\": \"P-256\", \"use\": \"sig\", "
                 "\"alg\": \"ES256\", \"kid\": \"%s\", \"x\": \"%s\", \"y\": \"%s\"}]}\n",
                 PKI_OPERATOR_KEY_ID, x, y) < 0)
        text = NULL;
    free(x);
    free(y);
    if (text == NULL)
        snprintf(err, err_length, "out of memory writing %s", jwks_path);
    else
        result = write_text(jwks_path, text, 0644, err, err_length);
out:
    free(text);
    EVP_PKEY_free(key);
    return result;
}

char *pki_operator_token(const char *key_file, const char *owner, long lifetime_s, char *err,
                         size_t err_length)
{
    struct jwt_key *key = jwt_key_load(NULL, key_file, PKI_OPERATOR_KEY_ID, err, err_length);
    char *claims = NULL;
    char *token = NULL;
    time_t now = time(NULL);

    if (key == NULL)
        return NULL;
    json_t *object = json_pack("{s:s, s:s, s:s, s:I, s:I}", "iss", PKI_OPERATOR_ISSUER, "aud",
                               PKI_OPERATOR_AUDIENCE, "sub", owner, "iat", (json_int_t)now, "exp",
                               (json_int_t)now + lifetime_s);
    if (object != NULL)
        claims = json_dumps(object, JSON_COMPACT);
    if (claims == NULL)
        snprintf(err, err_length, "out of memory");
    else
        token = jwt_sign(key, claims, err, err_length);
    free(claims);
    json_decref(object);
    jwt_key_free(key);
    return token;
}

/* operator.token: a token for owner "1" valid one year, to try the management API. */
static int ensure_operator_token(const char *dir, char *err, size_t err_length)
{
    char key_path[PATH_MAX];
    char token_path[PATH_MAX];
    char *line = NULL;
    int result = -1;

    if (join_path(key_path, sizeof(key_path), dir, "operator.key", err, err_length) != 0 ||
        join_path(token_path, sizeof(token_path), dir, "operator.token", err, err_length) != 0)
        return -1;
    if (file_exists(token_path))
        return 0;
    char *token = pki_operator_token(key_path, "1", OPERATOR_TOKEN_LIFETIME_S, err, err_length);
    if (token == NULL)
        return -1;
    if (asprintf(&line, "%s\n", token) < 0)
        snprintf(err, err_length, "out of memory writing %s", token_path);
    else
        result = write_text(token_path, line, 0600, err, err_length);
    free(line);
    free(token);
    return result;
}

/* The manufacturer side: root, intermediate, chain file, devices, the no-clientAuth device. */
static int generate_manufacturer(const char *dir, unsigned device_count, char *err,
                                 size_t err_length)
{
    struct pki_pair root = {NULL, NULL};
    struct pki_pair intermediate = {NULL, NULL};
    int result = -1;

    if (ensure_named_pair(dir, "mfg-root", &MFG_ROOT, NULL, NULL, 0, &root, err, err_length) != 0 ||
        ensure_named_pair(dir, "mfg-intermediate", &MFG_INTERMEDIATE, &root, NULL, 0, &intermediate,
                          err, err_length) != 0 ||
        ensure_chain_file(dir, intermediate.certificate, root.certificate, err, err_length) != 0)
        goto out;
    for (unsigned index = 1; index <= device_count; index++) {
        if (!device_files_exist(dir, index) &&
            ensure_device(dir, index, &intermediate, err, err_length) != 0)
            goto out;
    }
    if (ensure_named_pair(dir, "noclientauth-device", &NO_CLIENT_AUTH_DEVICE, &intermediate,
                          &intermediate.certificate, 1, NULL, err, err_length) != 0)
        goto out;
    result = 0;
out:
    pair_free(&root);
    pair_free(&intermediate);
    return result;
}

/* A root and one certificate it issues, the latter's file holding it then the root. */
static int generate_two_level(const char *dir, const char *root_base,
                              const struct pki_profile *root_profile, const char *child_base,
                              const struct pki_profile *child_profile, size_t chain_length,
                              char *err, size_t err_length)
{
    struct pki_pair root = {NULL, NULL};
    int result;

    if (ensure_named_pair(dir, root_base, root_profile, NULL, NULL, 0, &root, err, err_length) != 0)
        return -1;
    result = ensure_named_pair(dir, child_base, child_profile, &root, &root.certificate,
                               chain_length, NULL, err, err_length);
    pair_free(&root);
    return result;
}

int pki_generate(const char *dir, unsigned device_count, char *err, size_t err_length)
{
    if (make_directory(dir, err, err_length) != 0 ||
        make_devices_directory(dir, err, err_length) != 0)
        return -1;
    if (generate_manufacturer(dir, device_count, err, err_length) != 0)
        return -1;
    if (generate_two_level(dir, "dps-root", &DPS_ROOT, "dps-server", &DPS_SERVER, 1, err,
                           err_length) != 0)
        return -1;
    if (generate_two_level(dir, "hub-root", &HUB_ROOT, "hub-ca", &HUB_CA, 1, err, err_length) != 0)
        return -1;
    if (ensure_signing_key(dir, "token", err, err_length) != 0 ||
        ensure_signing_key(dir, "operator", err, err_length) != 0 ||
        ensure_operator_jwks(dir, err, err_length) != 0 ||
        ensure_operator_token(dir, err, err_length) != 0)
        return -1;
    return generate_two_level(dir, "rogue-root", &ROGUE_ROOT, "rogue-device", &ROGUE_DEVICE, 0, err,
                              err_length);
}

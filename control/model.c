/*
 * model: enrollment groups and hubs as JSON documents (control/model.h).
 *
 * Reading a document is strict like the YAML configuration: unknown keys are
 * errors, required keys must be there, and every problem is reported as
 * "json.path: what is wrong". The configuration file's groups and hubs are
 * read here too (model_*_from_file), so every source has the same rules;
 * UUID, gateway and key-name checks come from control/config.c, ACL entries
 * from control/ace.c. Optional strings given as "" count as absent, because the writer
 * emits absent strings as "" the way protojson does; so a document read back
 * from the API can be sent again unchanged.
 *
 * Files named in documents must be absolute paths: a document has no folder
 * to be relative to. Only stored documents name files (the configuration
 * file's groups and hubs, which the node's administrator wrote): a document
 * from the management API names none, so no request can make dpsd open a
 * path it chose. Its chains and CRLs are PEM text, and its hub keys are
 * names of keys the administrator registered (keys: in the configuration),
 * resolved by the control plane, which also checks the hub's owner may use
 * them. Documents served through the API show no file path either.
 */
#include "control/model.h"
#include "control/ace.h"
#include "common/base64.h"
#include "common/error.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/objects.h>
#include <openssl/x509.h>

#define NO_FILES_HINT "file paths are not accepted through the management API"

#define PATH_MAX_TEXT ERROR_PATH_MAX
#define ONE_YEAR_S (365L * 24 * 3600)
#define HUNDRED_YEARS_S (100 * ONE_YEAR_S)
#define DEFAULT_OWNER_CLAIM "sub"

/*
 * The members each object may have: the readers refuse others, and
 * model_*_prune() removes others from an API document that asked for no
 * strictness. One table per object, so the two never disagree.
 */
static const char *const GROUP_KEYS[] = {
    "id",        "owner",    "name", "attestationMechanism", "hubIds", "preSharedKey", "acl",
    "resources", "disabled", NULL};
static const char *const MECHANISM_KEYS[] = {"x509", NULL};
static const char *const X509_KEYS[] = {"certificateChain", "leadCertificateName",
                                        "expiredCertificateEnabled", "crls", NULL};
static const char *const ACL_KEYS[] = {"mode", "entries", NULL};
static const char *const RESOURCE_KEYS[] = {"href", "content", NULL};
static const char *const HUB_KEYS[] = {"id",
                                       "hubId",
                                       "owner",
                                       "name",
                                       "gateways",
                                       "authorization",
                                       "certificateAuthority",
                                       "token",
                                       "identityCertificate",
                                       NULL};
static const char *const AUTHORIZATION_KEYS[] = {"ownerClaim", "deviceIdClaim", "provider", NULL};
/* name and audience are used; the others are the reference's OAuth client, kept only. */
static const char *const PROVIDER_KEYS[] = {"name",      "audience", "clientId", "clientSecret",
                                            "authority", "scopes",   "http",     NULL};
static const char *const PROVIDER_KEPT_KEYS[] = {"clientId", "clientSecret", "authority",
                                                 "scopes",   "http",         NULL};
static const char *const CERTIFICATE_KEYS[] = {"keyName", "certificate", "key", "validity", NULL};
static const char *const TOKEN_KEYS[] = {"keyName", "key", "keyId", "issuer", "lifetime", NULL};

struct reader {
    char *err;
    size_t err_length;
    bool from_api;      /* a document from the management API: it names no file */
    const char *folder; /* the configuration file's folder when it is the source, else NULL */
};

/*
 * The configuration file's messages keep the words its readers know from
 * YAML (key, mapping, duration); the JSON sources' follow JSON (field,
 * object, seconds). The rule behind each message is the same.
 */
static bool from_file(const struct reader *r)
{
    return r->folder != NULL;
}

static const char *word_unknown(const struct reader *r)
{
    return from_file(r) ? "unknown key" : "unknown field";
}

static const char *word_object(const struct reader *r)
{
    return from_file(r) ? "must be a mapping" : "must be an object";
}

__attribute__((format(printf, 3, 4))) static int fail(struct reader *r, const char *path,
                                                      const char *fmt, ...)
{
    char problem[512];
    va_list args;
    va_start(args, fmt);
    vsnprintf(problem, sizeof(problem), fmt, args);
    va_end(args);
    return error_set(r->err, r->err_length, "%s: %s", path, problem);
}

static bool key_allowed(const char *const *allowed, const char *key)
{
    for (size_t i = 0; allowed[i] != NULL; i++) {
        if (strcmp(allowed[i], key) == 0)
            return true;
    }
    return false;
}

/*
 * An object with only the allowed keys (NULL-terminated); null counts as
 * absent. The document itself has the path "".
 */
static int open_object(struct reader *r, const json_t *value, const char *path, bool required,
                       const char *const *allowed, const json_t **out)
{
    const char *where = path[0] != '\0' ? path : "(document)";
    *out = NULL;
    if (value == NULL || json_is_null(value))
        return required ? fail(r, where, "required") : 0;
    if (!json_is_object(value))
        return fail(r, where, "%s", word_object(r));
    const char *key;
    json_t *item;
    json_object_foreach((json_t *)value, key, item)
    {
        if (!key_allowed(allowed, key)) {
            char key_path[PATH_MAX_TEXT];
            error_path_child(key_path, path, key);
            return fail(r, key_path, "%s", word_unknown(r));
        }
    }
    *out = value;
    return 0;
}

/*
 * A string field. Absent, null or "" is absent: then fallback (may be NULL) or
 * "required". *out is newly allocated or NULL.
 */
static int read_string(struct reader *r, const json_t *object, const char *key, const char *path,
                       bool required, const char *fallback, char **out)
{
    char key_path[PATH_MAX_TEXT];
    error_path_child(key_path, path, key);
    json_t *value = json_object_get(object, key);
    *out = NULL;
    if (value != NULL && !json_is_null(value) && !json_is_string(value))
        return fail(r, key_path, "must be a string");
    if (value != NULL && json_is_string(value) && json_string_length(value) > 0) {
        if (strlen(json_string_value(value)) != json_string_length(value))
            return fail(r, key_path, "must not contain NUL characters");
        *out = strdup(json_string_value(value));
    } else if (required) {
        return fail(r, key_path, "required");
    } else if (fallback != NULL) {
        *out = strdup(fallback);
    } else {
        return 0;
    }
    return *out != NULL ? 0 : fail(r, key_path, "out of memory");
}

static void lower_case(char *text)
{
    for (char *c = text; *c != '\0'; c++) {
        if (*c >= 'A' && *c <= 'F')
            *c = (char)(*c - 'A' + 'a');
    }
}

static int check_uuid(struct reader *r, const char *path, char *text)
{
    if (!config_uuid_valid(text))
        return fail(r, path, "\"%s\" is not a UUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)", text);
    lower_case(text);
    return 0;
}

static int read_uuid(struct reader *r, const json_t *object, const char *key, const char *path,
                     char **out)
{
    char key_path[PATH_MAX_TEXT];
    error_path_child(key_path, path, key);
    if (read_string(r, object, key, path, true, NULL, out) < 0)
        return -1;
    return check_uuid(r, key_path, *out);
}

static int check_gateway(struct reader *r, const char *path, char *text)
{
    const char *problem = config_gateway_problem(text);
    if (problem == NULL)
        return 0;
    /* The file's message for a wrong scheme reads as a sentence: "X" must start with... */
    if (from_file(r) && strncmp(text, "coaps+tcp://", 12) != 0)
        return fail(r, path, "\"%s\" %s", text, problem);
    return fail(r, path, "\"%s\": %s", text, problem);
}

/* A non-empty list of distinct non-empty strings, each handed to check (may be NULL). */
static int read_string_list(struct reader *r, const json_t *object, const char *key,
                            const char *path, char ***items, size_t *count,
                            int (*check)(struct reader *, const char *, char *))
{
    char list_path[PATH_MAX_TEXT];
    error_path_child(list_path, path, key);
    json_t *list = json_object_get(object, key);
    if (list == NULL || json_is_null(list))
        return fail(r, list_path, "required");
    if (!json_is_array(list))
        return fail(r, list_path, "must be a list");
    size_t n = json_array_size(list);
    if (n == 0)
        return fail(r, list_path, "must not be empty");
    if ((*items = calloc(n, sizeof(**items))) == NULL)
        return fail(r, list_path, "out of memory");
    *count = n;
    for (size_t i = 0; i < n; i++) {
        char item_path[PATH_MAX_TEXT];
        error_path_index(item_path, list_path, i);
        json_t *item = json_array_get(list, i);
        if (!json_is_string(item) || json_string_length(item) == 0 ||
            strlen(json_string_value(item)) != json_string_length(item))
            return fail(r, item_path, "must be a non-empty string");
        if (((*items)[i] = strdup(json_string_value(item))) == NULL)
            return fail(r, item_path, "out of memory");
        if (check != NULL && check(r, item_path, (*items)[i]) < 0)
            return -1;
        for (size_t j = 0; j < i; j++) {
            if (strcmp((*items)[j], (*items)[i]) == 0)
                return fail(r, item_path, "duplicate of %s[%zu]", list_path, j);
        }
    }
    return 0;
}

static int read_bool(struct reader *r, const json_t *object, const char *key, const char *path,
                     bool *out)
{
    char key_path[PATH_MAX_TEXT];
    error_path_child(key_path, path, key);
    json_t *value = json_object_get(object, key);
    *out = false;
    if (value == NULL || json_is_null(value))
        return 0;
    const char *text = json_is_string(value) && from_file(r) ? json_string_value(value) : "";
    if (!json_is_boolean(value) && strcmp(text, "true") != 0 && strcmp(text, "false") != 0)
        return fail(r, key_path, "must be true or false");
    *out = json_is_true(value) || strcmp(text, "true") == 0;
    return 0;
}

/* Seconds as a JSON integer or a decimal string (protojson writes int64 as strings). */
static int read_seconds(struct reader *r, const json_t *object, const char *key, const char *path,
                        long min, long max, long fallback, long *out)
{
    char key_path[PATH_MAX_TEXT];
    error_path_child(key_path, path, key);
    json_t *value = json_object_get(object, key);
    *out = fallback;
    if (value == NULL || json_is_null(value))
        return 0;
    long long seconds = -1;
    long duration;
    if (json_is_integer(value)) {
        seconds = json_integer_value(value);
    } else if (json_is_string(value) && from_file(r)) {
        if (config_duration_parse(json_string_value(value), &duration) == 0)
            seconds = duration;
    } else if (json_is_string(value)) {
        const char *text = json_string_value(value);
        char *end;
        errno = 0;
        seconds = strtoll(text, &end, 10);
        if (text[0] < '0' || text[0] > '9' || *end != '\0' || errno != 0)
            seconds = -1;
    }
    if ((seconds < min || seconds > max) && from_file(r))
        return fail(r, key_path, CONFIG_DURATION_PROBLEM, min, max);
    if (seconds < min || seconds > max)
        return fail(r, key_path, "must be a number of seconds from %ld to %ld", min, max);
    *out = (long)seconds;
    return 0;
}

/*
 * Checks that path names a readable regular file. A relative path is
 * refused, except from the configuration file, where it is resolved against
 * the file's folder (*path is then replaced).
 */
static int check_file_path(struct reader *r, const char *key_path, char **path)
{
    if ((*path)[0] != '/' && !from_file(r))
        return fail(r, key_path, "must be an absolute file path");
    if ((*path)[0] != '/') {
        char *resolved;
        if (asprintf(&resolved, "%s/%s", r->folder, *path) < 0)
            return fail(r, key_path, "out of memory");
        free(*path);
        *path = resolved;
    }
    struct stat st;
    if (access(*path, R_OK) != 0 || stat(*path, &st) != 0)
        return fail(r, key_path, "cannot read %s: %s", *path, strerror(errno));
    if (!S_ISREG(st.st_mode))
        return fail(r, key_path, "%s is not a regular file", *path);
    return 0;
}

/* A path to a readable regular file (check_file_path). */
static int read_file_path(struct reader *r, const json_t *object, const char *key, const char *path,
                          char **out)
{
    char key_path[PATH_MAX_TEXT];
    error_path_child(key_path, path, key);
    if (read_string(r, object, key, path, true, NULL, out) < 0)
        return -1;
    return check_file_path(r, key_path, out);
}

/* True when the DER of one PEM block parses, to its last byte, as the block's kind. */
static bool der_is_certificate(const char *name, const unsigned char *der, long length)
{
    const unsigned char *cursor = der;
    X509 *certificate = NULL;
    bool valid = (strcmp(name, PEM_STRING_X509) == 0 || strcmp(name, PEM_STRING_X509_OLD) == 0) &&
                 (certificate = d2i_X509(NULL, &cursor, length)) != NULL && cursor == der + length;
    X509_free(certificate);
    return valid;
}

static bool der_is_crl(const char *name, const unsigned char *der, long length)
{
    const unsigned char *cursor = der;
    X509_CRL *crl = NULL;
    bool valid = strcmp(name, PEM_STRING_X509_CRL) == 0 &&
                 (crl = d2i_X509_CRL(NULL, &cursor, length)) != NULL && cursor == der + length;
    X509_CRL_free(crl);
    return valid;
}

/* At least one PEM block, and every block passes block_is_valid. */
static bool pem_is_list_of(const char *text,
                           bool (*block_is_valid)(const char *, const unsigned char *, long))
{
    BIO *bio = BIO_new_mem_buf(text, -1);
    size_t count = 0;
    bool valid = bio != NULL;
    char *name = NULL;
    char *header = NULL;
    unsigned char *der = NULL;
    long length = 0;

    while (valid && PEM_read_bio(bio, &name, &header, &der, &length) == 1) {
        valid = block_is_valid(name, der, length);
        count++;
        OPENSSL_free(name);
        OPENSSL_free(header);
        OPENSSL_free(der);
        name = header = NULL;
        der = NULL;
    }
    ERR_clear_error();
    BIO_free(bio);
    return valid && count > 0;
}

/*
 * A data: URL with base64 data ("data:;base64,...", RFC 2397), the form in
 * which the reference's web UI sends every upload: 1 with the decoded bytes
 * in *out (malloc'd, a NUL after them) and their length, 0 when text is no
 * data: URL, -1 after fail().
 */
static int read_data_url(struct reader *r, const char *path, const char *text, uint8_t **out,
                         size_t *length)
{
    *out = NULL;
    *length = 0;
    if (strncasecmp(text, "data:", 5) != 0)
        return 0;
    const char *comma = strchr(text, ',');
    if (comma == NULL)
        return fail(r, path, "a data: URL has a comma before its data");
    if (comma - text < 12 || strncasecmp(comma - 7, ";base64", 7) != 0)
        return fail(r, path, "a data: URL must carry base64 (data:;base64,...)");
    *out = base64_decode_alloc(BASE64_STANDARD, comma + 1, strlen(comma + 1), length);
    if (*out == NULL)
        return fail(r, path, "the data: URL's base64 does not decode");
    return 1;
}

/*
 * PEM text (kept in ca_chain_pem) or a path to a readable file (ca_chain_file):
 * absolute in stored documents, and in the configuration file whatever is
 * not PEM, relative to its folder.
 */
static int read_certificate_chain(struct reader *r, const json_t *x509, const char *path,
                                  struct config_group *group)
{
    char key_path[PATH_MAX_TEXT];
    char *text;
    error_path_child(key_path, path, "certificateChain");
    if (read_string(r, x509, "certificateChain", path, true, NULL, &text) < 0)
        return -1;
    uint8_t *decoded;
    size_t decoded_length;
    int data_url = read_data_url(r, key_path, text, &decoded, &decoded_length);
    free(data_url != 0 ? text : NULL);
    if (data_url < 0)
        return -1;
    json_t *as_text = data_url > 0 ? json_stringn((char *)decoded, decoded_length) : NULL;
    json_decref(as_text);
    if (data_url > 0 && (strlen((char *)decoded) != decoded_length || as_text == NULL)) {
        free(decoded);
        return fail(r, key_path, "the data: URL's data is not PEM text (UTF-8 without NUL)");
    }
    if (data_url > 0)
        text = (char *)decoded;
    bool is_pem = strstr(text, "-----BEGIN") != NULL;
    bool is_path = text[0] == '/' || (from_file(r) && !is_pem);
    if (r->from_api && !is_pem) {
        free(text);
        return fail(r, key_path, "must be PEM certificates (" NO_FILES_HINT ")");
    }
    if (is_path) {
        group->ca_chain_file = text;
        return check_file_path(r, key_path, &group->ca_chain_file);
    }
    group->ca_chain_pem = text;
    if (!is_pem)
        return fail(r, key_path, "must be PEM certificates or an absolute file path");
    if (!pem_is_list_of(text, der_is_certificate))
        return fail(r, key_path, "not a PEM certificate chain");
    return 0;
}

/*
 * Optional "crls": each PEM CRL text or a path to a readable file (as for the
 * certificate chain). Stored documents write no CRLs as []; in the
 * configuration file, an empty list is a mistake.
 */
static int read_crls(struct reader *r, const json_t *x509, const char *path,
                     struct config_group *group)
{
    char list_path[PATH_MAX_TEXT];
    error_path_child(list_path, path, "crls");
    json_t *list = json_object_get(x509, "crls");
    if (list == NULL || json_is_null(list) ||
        (json_is_array(list) && json_array_size(list) == 0 && !from_file(r)))
        return 0;
    if (read_string_list(r, x509, "crls", path, &group->crls, &group->crl_count, NULL) < 0)
        return -1;
    for (size_t i = 0; i < group->crl_count; i++) {
        char item_path[PATH_MAX_TEXT];
        const char *text = group->crls[i];
        bool is_pem = strstr(text, "-----BEGIN") != NULL;
        error_path_index(item_path, list_path, i);
        if (r->from_api && !is_pem) {
            return fail(r, item_path, "must be a PEM CRL (" NO_FILES_HINT ")");
        } else if (text[0] == '/' || (from_file(r) && !is_pem)) {
            if (check_file_path(r, item_path, &group->crls[i]) < 0)
                return -1;
        } else if (!is_pem) {
            return fail(r, item_path, "must be a PEM CRL or an absolute file path");
        } else if (!pem_is_list_of(text, der_is_crl)) {
            return fail(r, item_path, "not a PEM certificate revocation list");
        }
    }
    return 0;
}

/*
 * leadCertificateName, as the reference has it from the API: the common name
 * of the chain's first certificate when not given, else the common name of
 * one of its certificates. Stored documents and the configuration file keep
 * what they hold (the name is informative: matching is by issuer).
 */
static int check_lead_certificate_name(struct reader *r, const char *path,
                                       struct config_group *group)
{
    char key_path[PATH_MAX_TEXT];
    error_path_child(key_path, path, "leadCertificateName");
    if (!r->from_api || group->ca_chain_pem == NULL)
        return 0;
    BIO *bio = BIO_new_mem_buf(group->ca_chain_pem, -1);
    X509 *certificate = NULL;
    bool found = false;
    char names[256] = "";
    size_t used = 0;
    while (!found && bio != NULL &&
           (certificate = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL) {
        char name[256];
        int length = X509_NAME_get_text_by_NID(X509_get_subject_name(certificate), NID_commonName,
                                               name, sizeof(name));
        X509_free(certificate);
        if (length <= 0)
            continue;
        if (group->lead_certificate_name == NULL)
            group->lead_certificate_name = strdup(name);
        found =
            group->lead_certificate_name == NULL || strcmp(group->lead_certificate_name, name) == 0;
        if (used < sizeof(names))
            used += (size_t)snprintf(names + used, sizeof(names) - used, "%s\"%s\"",
                                     used > 0 ? ", " : "", name);
    }
    ERR_clear_error();
    BIO_free(bio);
    if (found && group->lead_certificate_name == NULL)
        return fail(r, key_path, "out of memory");
    if (found || (group->lead_certificate_name == NULL && used == 0))
        return 0;
    return fail(r, key_path, "\"%s\" is the common name of no certificate of certificateChain (%s)",
                group->lead_certificate_name, used > 0 ? names : "none has a common name");
}

static int read_attestation(struct reader *r, const json_t *doc, struct config_group *group)
{
    const char *const *mechanism_keys = MECHANISM_KEYS;
    const char *const *x509_keys = X509_KEYS;
    const json_t *mechanism;
    const json_t *x509;
    if (open_object(r, json_object_get(doc, "attestationMechanism"), "attestationMechanism", true,
                    mechanism_keys, &mechanism) < 0 ||
        open_object(r, json_object_get(mechanism, "x509"), "attestationMechanism.x509", true,
                    x509_keys, &x509) < 0)
        return -1;
    const char *path = "attestationMechanism.x509";
    if (read_certificate_chain(r, x509, path, group) < 0 ||
        read_string(r, x509, "leadCertificateName", path, false, NULL,
                    &group->lead_certificate_name) < 0 ||
        read_bool(r, x509, "expiredCertificateEnabled", path, &group->expired_certificate_enabled) <
            0 ||
        read_crls(r, x509, path, group) < 0 || check_lead_certificate_name(r, path, group) < 0)
        return -1;
    return 0;
}

static int read_psk(struct reader *r, const json_t *doc, struct config_group *group)
{
    char problem[128];
    char *psk;
    if (read_string(r, doc, "preSharedKey", "", false, NULL, &psk) < 0)
        return -1;
    if (psk == NULL)
        return 0;
    /* A data: URL's bytes are the key (they may be any bytes); else the text's. */
    size_t length = strlen(psk);
    uint8_t *decoded;
    size_t decoded_length;
    int data_url = read_data_url(r, "preSharedKey", psk, &decoded, &decoded_length);
    int set = data_url != 0 ? 0 : config_psk_set(group, psk, length, problem, sizeof(problem));
    if (data_url > 0) {
        set =
            config_psk_set(group, (const char *)decoded, decoded_length, problem, sizeof(problem));
        explicit_bzero(decoded, decoded_length);
        if (set < 0)
            snprintf(problem, sizeof(problem),
                     "the data: URL's key must be exactly %zu bytes, not %zu", sizeof(group->psk),
                     decoded_length);
    }
    free(decoded);
    explicit_bzero(psk, length);
    free(psk);
    if (data_url < 0)
        return -1;
    return set < 0 ? fail(r, "preSharedKey", "%s", problem) : 0;
}

static int read_acl(struct reader *r, const json_t *doc, struct config_group *group)
{
    const char *const *keys = ACL_KEYS;
    const json_t *acl;
    char *mode;
    group->acl_mode = CONFIG_ACL_DEFAULT;
    if (open_object(r, json_object_get(doc, "acl"), "acl", false, keys, &acl) < 0)
        return -1;
    if (acl == NULL)
        return 0;
    if (read_string(r, acl, "mode", "acl", false, "extend", &mode) < 0)
        return -1;
    bool replace = strcmp(mode, "replace") == 0;
    bool extend = strcmp(mode, "extend") == 0;
    free(mode);
    if (!replace && !extend)
        return fail(r, "acl.mode", "must be replace or extend");
    group->acl_mode = replace ? CONFIG_ACL_REPLACE : CONFIG_ACL_EXTEND;

    json_t *entries = json_object_get(acl, "entries");
    if (entries == NULL || json_is_null(entries))
        return fail(r, "acl.entries", "required");
    if (!json_is_array(entries) || json_array_size(entries) == 0)
        return fail(r, "acl.entries", "must be a non-empty list");
    for (size_t i = 0; i < json_array_size(entries); i++) {
        char item_path[PATH_MAX_TEXT];
        error_path_index(item_path, "acl.entries", i);
        if (ace_check(json_array_get(entries, i), item_path, r->err, r->err_length) < 0)
            return -1;
    }
    group->acl_json = json_dumps(entries, JSON_COMPACT);
    return group->acl_json != NULL ? 0 : fail(r, "acl.entries", "out of memory");
}

static int read_resource(struct reader *r, const json_t *item, const char *path,
                         const json_t *resources, size_t index)
{
    const char *const *keys = RESOURCE_KEYS;
    const json_t *resource;
    char key_path[PATH_MAX_TEXT];
    if (open_object(r, item, path, true, keys, &resource) < 0)
        return -1;
    json_t *href = json_object_get(resource, "href");
    error_path_child(key_path, path, "href");
    if (href == NULL)
        return fail(r, key_path, "required");
    if (!json_is_string(href) || json_string_value(href)[0] != '/')
        return fail(r, key_path, "must be a path starting with /");
    for (size_t j = 0; j < index; j++) {
        json_t *previous = json_object_get(json_array_get(resources, j), "href");
        if (strcmp(json_string_value(previous), json_string_value(href)) == 0)
            return fail(r, key_path, "\"%s\" is listed twice", json_string_value(href));
    }
    json_t *content = json_object_get(resource, "content");
    error_path_child(key_path, path, "content");
    if (content == NULL)
        return fail(r, key_path, "required");
    if (!json_is_object(content))
        return fail(r, key_path, "%s (the resource's properties)", word_object(r));
    return 0;
}

static int read_resources(struct reader *r, const json_t *doc, struct config_group *group)
{
    json_t *resources = json_object_get(doc, "resources");
    if (resources == NULL || json_is_null(resources))
        return 0;
    if (!json_is_array(resources) || json_array_size(resources) == 0)
        return fail(r, "resources", "must be a non-empty list");
    for (size_t i = 0; i < json_array_size(resources); i++) {
        char item_path[PATH_MAX_TEXT];
        error_path_index(item_path, "resources", i);
        if (read_resource(r, json_array_get(resources, i), item_path, resources, i) < 0)
            return -1;
    }
    group->resources_json = json_dumps(resources, JSON_COMPACT);
    return group->resources_json != NULL ? 0 : fail(r, "resources", "out of memory");
}

static int group_from_json(const json_t *doc, struct config_group *group, bool from_api,
                           const char *folder, char *err, size_t err_length)
{
    const char *const *keys = GROUP_KEYS;
    struct reader r = {
        .err = err, .err_length = err_length, .from_api = from_api, .folder = folder};
    const json_t *root;
    memset(group, 0, sizeof(*group));
    if (err != NULL && err_length > 0)
        err[0] = '\0';
    int result = -1;
    if (open_object(&r, doc, "", true, keys, &root) == 0 &&
        read_uuid(&r, root, "id", "", &group->id) == 0 &&
        read_string(&r, root, "owner", "", true, NULL, &group->owner) == 0 &&
        read_string(&r, root, "name", "", false, from_api ? group->id : NULL, &group->name) == 0 &&
        read_attestation(&r, root, group) == 0 &&
        read_string_list(&r, root, "hubIds", "", &group->hub_ids, &group->hub_count, check_uuid) ==
            0 &&
        read_psk(&r, root, group) == 0 && read_acl(&r, root, group) == 0 &&
        read_resources(&r, root, group) == 0 &&
        read_bool(&r, root, "disabled", "", &group->disabled) == 0)
        result = 0;
    if (result < 0)
        model_group_clear(group);
    return result;
}

int model_group_from_json(const json_t *doc, struct config_group *group, char *err,
                          size_t err_length)
{
    return group_from_json(doc, group, false, NULL, err, err_length);
}

int model_group_from_api(const json_t *doc, struct config_group *group, char *err,
                         size_t err_length)
{
    return group_from_json(doc, group, true, NULL, err, err_length);
}

int model_group_from_file(const json_t *doc, const char *folder, struct config_group *group,
                          char *err, size_t err_length)
{
    return group_from_json(doc, group, false, folder, err, err_length);
}

static int read_hub_ids(struct reader *r, const json_t *doc, struct config_hub *hub)
{
    char *id;
    char *hub_id;
    if (read_string(r, doc, "id", "", false, NULL, &id) < 0)
        return -1;
    if (read_string(r, doc, "hubId", "", false, NULL, &hub_id) < 0) {
        free(id);
        return -1;
    }
    if (id == NULL && hub_id == NULL)
        return fail(r, "hubId", "required");
    /* Without hubId, id is both (our first documents); with both, id is the record's own. */
    hub->id = hub_id != NULL ? hub_id : id;
    if (hub_id != NULL && id != NULL && strcasecmp(id, hub_id) != 0)
        hub->record_id = id;
    else if (hub_id != NULL)
        free(id);
    if (check_uuid(r, hub_id != NULL ? "hubId" : "id", hub->id) < 0)
        return -1;
    return hub->record_id != NULL ? check_uuid(r, "id", hub->record_id) : 0;
}

/*
 * The reference's members this node keeps without using them (control/model.h):
 * certificateAuthority (an object) and the provider's OAuth client. Their
 * shapes are checked as far as the reference's protobuf fixes them.
 */
static int read_reference_parts(struct reader *r, const json_t *doc, const json_t *provider,
                                struct config_hub *hub)
{
    json_t *kept = json_object();
    json_t *kept_provider = json_object();
    json_t *authority = json_object_get(doc, "certificateAuthority");
    int result = kept != NULL && kept_provider != NULL ? 0 : fail(r, "", "out of memory");
    if (result == 0 && authority != NULL && !json_is_null(authority)) {
        result =
            json_is_object(authority) ? 0 : fail(r, "certificateAuthority", "%s", word_object(r));
        if (result == 0 && json_object_size(authority) > 0)
            json_object_set(kept, "certificateAuthority", authority);
    }
    for (size_t i = 0; result == 0 && PROVIDER_KEPT_KEYS[i] != NULL; i++) {
        const char *key = PROVIDER_KEPT_KEYS[i];
        json_t *value = json_object_get(provider, key);
        char key_path[PATH_MAX_TEXT];
        error_path_child(key_path, "authorization.provider", key);
        if (value == NULL || json_is_null(value) ||
            (json_is_string(value) && json_string_length(value) == 0) ||
            (json_is_array(value) && json_array_size(value) == 0))
            continue;
        bool list = strcmp(key, "scopes") == 0, object = strcmp(key, "http") == 0;
        if (list && !json_is_array(value))
            result = fail(r, key_path, "must be a list");
        else if (object && !json_is_object(value))
            result = fail(r, key_path, "%s", word_object(r));
        else if (!list && !object && !json_is_string(value))
            result = fail(r, key_path, "must be a string");
        else
            json_object_set(kept_provider, key, value);
    }
    if (result == 0 && json_object_size(kept_provider) > 0)
        json_object_set(kept, "provider", kept_provider);
    if (result == 0 && json_object_size(kept) > 0 &&
        (hub->reference_json = json_dumps(kept, JSON_COMPACT | JSON_SORT_KEYS)) == NULL)
        result = fail(r, "", "out of memory");
    json_decref(kept);
    json_decref(kept_provider);
    return result;
}

static int read_authorization(struct reader *r, const json_t *doc, struct config_hub *hub)
{
    const char *const *keys = AUTHORIZATION_KEYS;
    const char *const *provider_keys = PROVIDER_KEYS;
    const json_t *authorization;
    const json_t *provider;
    if (open_object(r, json_object_get(doc, "authorization"), "authorization", true, keys,
                    &authorization) < 0 ||
        read_string(r, authorization, "ownerClaim", "authorization", false, DEFAULT_OWNER_CLAIM,
                    &hub->token_owner_claim) < 0 ||
        read_string(r, authorization, "deviceIdClaim", "authorization", false, NULL,
                    &hub->token_device_id_claim) < 0 ||
        open_object(r, json_object_get(authorization, "provider"), "authorization.provider", true,
                    provider_keys, &provider) < 0 ||
        read_string(r, provider, "name", "authorization.provider", true, NULL,
                    &hub->authorization_provider) < 0 ||
        read_string(r, provider, "audience", "authorization.provider", false, NULL,
                    &hub->token_audience) < 0 ||
        read_reference_parts(r, doc, provider, hub) < 0)
        return -1;
    bool device_id_claim;
    const char *problem =
        config_claims_problem(hub->token_owner_claim, hub->token_device_id_claim, &device_id_claim);
    if (problem != NULL)
        return fail(r, device_id_claim ? "authorization.deviceIdClaim" : "authorization.ownerClaim",
                    "%s", problem);
    return 0;
}

/*
 * A hub's key: "keyName" (a registered key), or in stored documents only the
 * files themselves ("certificate" with "key" for the identity CA, "key" for
 * the token).
 */
static int read_key_reference(struct reader *r, const json_t *object, const char *path,
                              bool certificate, char **name, char **cert_file, char **key_file)
{
    char key_path[PATH_MAX_TEXT];
    if (read_string(r, object, "keyName", path, false, NULL, name) < 0)
        return -1;
    const char *file_fields[] = {"certificate", "key"};
    for (size_t i = certificate ? 0 : 1; i < 2; i++) {
        json_t *value = json_object_get(object, file_fields[i]);
        bool given = value != NULL && !json_is_null(value) &&
                     !(json_is_string(value) && json_string_length(value) == 0);
        error_path_child(key_path, path, file_fields[i]);
        if (given && r->from_api)
            return fail(r, key_path,
                        NO_FILES_HINT "; name a key the node's administrator registered "
                                      "(%s.keyName)",
                        path);
        if (given && *name != NULL)
            return fail(r, key_path, "give keyName or the files, not both");
    }
    error_path_child(key_path, path, "keyName");
    if (*name != NULL) {
        const char *problem = config_key_name_problem(*name);
        return problem == NULL ? 0 : fail(r, key_path, "%s", problem);
    }
    if (r->from_api)
        return fail(r, key_path, "required (the name of a key registered for your owner)");
    if (certificate && read_file_path(r, object, "certificate", path, cert_file) < 0)
        return -1;
    return read_file_path(r, object, "key", path, key_file);
}

/*
 * A reference hub names a CA service (certificateAuthority.grpc) and an
 * OAuth client (authorization.provider.clientId ...) where ours name keys:
 * a node signs both itself, so without our members it cannot serve the hub.
 */
static int require_own_signing(struct reader *r, const json_t *doc)
{
    json_t *certificate = json_object_get(doc, "identityCertificate");
    json_t *token = json_object_get(doc, "token");
    bool external_ca = json_object_get(doc, "certificateAuthority") != NULL;
    const json_t *provider = json_object_get(json_object_get(doc, "authorization"), "provider");
    bool oauth_client = json_string_length(json_object_get(provider, "clientId")) > 0 ||
                        json_string_length(json_object_get(provider, "authority")) > 0;
    if ((certificate == NULL || json_is_null(certificate)) && external_ca)
        return fail(r, "identityCertificate",
                    "required: this node signs identity certificates itself and cannot call the "
                    "certificate authority of certificateAuthority.grpc; set "
                    "identityCertificate.keyName to a key registered for your owner (keys: in the "
                    "node's configuration), certificateAuthority is then kept but not used");
    if ((token == NULL || json_is_null(token)) && oauth_client)
        return fail(
            r, "token",
            "required: this node signs the hub's access tokens itself and does not fetch "
            "them with the OAuth client of authorization.provider; set token.keyName (a key "
            "registered for your owner) and token.issuer, the client is then kept but not "
            "used");
    return 0;
}

static int read_hub_keys(struct reader *r, const json_t *doc, struct config_hub *hub)
{
    const char *const *certificate_keys = CERTIFICATE_KEYS;
    const char *const *token_keys = TOKEN_KEYS;
    const json_t *certificate;
    const json_t *token;
    if (require_own_signing(r, doc) < 0)
        return -1;
    if (open_object(r, json_object_get(doc, "identityCertificate"), "identityCertificate", true,
                    certificate_keys, &certificate) < 0 ||
        read_key_reference(r, certificate, "identityCertificate", true, &hub->ca_key_name,
                           &hub->ca_cert_file, &hub->ca_key_file) < 0 ||
        read_seconds(r, certificate, "validity", "identityCertificate", 60, HUNDRED_YEARS_S,
                     ONE_YEAR_S, &hub->certificate_validity_s) < 0)
        return -1;
    if (open_object(r, json_object_get(doc, "token"), "token", true, token_keys, &token) < 0 ||
        read_key_reference(r, token, "token", false, &hub->token_key_name, NULL,
                           &hub->token_key_file) < 0 ||
        read_string(r, token, "keyId", "token", false, NULL, &hub->token_key_id) < 0 ||
        read_string(r, token, "issuer", "token", true, NULL, &hub->token_issuer) < 0 ||
        read_seconds(r, token, "lifetime", "token", 60, HUNDRED_YEARS_S, ONE_YEAR_S,
                     &hub->token_lifetime_s) < 0)
        return -1;
    return 0;
}

static int hub_from_json(const json_t *doc, struct config_hub *hub, bool from_api,
                         const char *folder, char *err, size_t err_length)
{
    const char *const *keys = HUB_KEYS;
    struct reader r = {
        .err = err, .err_length = err_length, .from_api = from_api, .folder = folder};
    const json_t *root;
    memset(hub, 0, sizeof(*hub));
    if (err != NULL && err_length > 0)
        err[0] = '\0';
    int result = -1;
    if (open_object(&r, doc, "", true, keys, &root) == 0 && read_hub_ids(&r, root, hub) == 0 &&
        read_string(&r, root, "owner", "", false, NULL, &hub->owner) == 0 &&
        read_string(&r, root, "name", "", false,
                    from_api ? (hub->record_id != NULL ? hub->record_id : hub->id) : NULL,
                    &hub->name) == 0 &&
        read_string_list(&r, root, "gateways", "", &hub->gateways, &hub->gateway_count,
                         check_gateway) == 0 &&
        read_authorization(&r, root, hub) == 0 && read_hub_keys(&r, root, hub) == 0)
        result = 0;
    if (result < 0)
        model_hub_clear(hub);
    return result;
}

int model_hub_from_json(const json_t *doc, struct config_hub *hub, char *err, size_t err_length)
{
    return hub_from_json(doc, hub, false, NULL, err, err_length);
}

int model_hub_from_api(const json_t *doc, struct config_hub *hub, char *err, size_t err_length)
{
    return hub_from_json(doc, hub, true, NULL, err, err_length);
}

int model_hub_from_file(const json_t *doc, const char *folder, struct config_hub *hub, char *err,
                        size_t err_length)
{
    return hub_from_json(doc, hub, false, folder, err, err_length);
}

static json_t *string_or_empty(const char *text)
{
    return json_string(text != NULL ? text : "");
}

static json_t *string_list(char *const *items, size_t count)
{
    json_t *list = json_array();
    for (size_t i = 0; list != NULL && i < count; i++) {
        if (json_array_append_new(list, json_string(items[i])) < 0) {
            json_decref(list);
            return NULL;
        }
    }
    return list;
}

/*
 * The pre-shared key as text, "" when there is none: the key's bytes when
 * they are UTF-8 text that reads back as itself, else (any bytes, from a
 * data: URL) as a data: URL, which the readers decode to the same bytes.
 */
static json_t *psk_text(const struct config_group *group)
{
    if (!group->has_psk)
        return json_string("");
    const char *bytes = (const char *)group->psk;
    json_t *text =
        memchr(bytes, '\0', sizeof(group->psk)) == NULL && strncasecmp(bytes, "data:", 5) != 0
            ? json_stringn(bytes, sizeof(group->psk))
            : NULL;
    if (text != NULL)
        return text;
    char url[sizeof("data:;base64,") + 4 * ((sizeof(group->psk) + 2) / 3)] = "data:;base64,";
    size_t length = strlen(url);
    length += base64_encode(BASE64_STANDARD, group->psk, sizeof(group->psk), url + length);
    text = json_stringn(url, length);
    explicit_bzero(url, sizeof(url));
    return text;
}

static const char *acl_mode_name(enum config_acl_mode mode)
{
    return mode == CONFIG_ACL_REPLACE ? "replace" : "extend";
}

/* The CRL entries, or in public form their PEM text (the files' bytes a snapshot read). */
static json_t *crl_list(const struct config_group *group, bool public)
{
    if (!public)
        return string_list(group->crls, group->crl_count);
    json_t *list = json_array();
    for (size_t i = 0; list != NULL && i < group->crl_count; i++) {
        const char *text = group->crl_pems != NULL ? group->crl_pems[i] : group->crls[i];
        if (json_array_append_new(list, string_or_empty(text[0] != '/' ? text : NULL)) < 0) {
            json_decref(list);
            return NULL;
        }
    }
    return list;
}

static json_t *group_to_json(const struct config_group *group, bool public)
{
    const char *chain =
        group->ca_chain_file != NULL && !public ? group->ca_chain_file : group->ca_chain_pem;
    json_t *doc = json_pack(
        "{s:o, s:o, s:o, s:{s:{s:o, s:o, s:b}}, s:o, s:o}", "id", string_or_empty(group->id),
        "owner", string_or_empty(group->owner), "name", string_or_empty(group->name),
        "attestationMechanism", "x509", "certificateChain", string_or_empty(chain),
        "leadCertificateName", string_or_empty(group->lead_certificate_name),
        "expiredCertificateEnabled", group->expired_certificate_enabled, "hubIds",
        string_list(group->hub_ids, group->hub_count), "preSharedKey", psk_text(group));
    if (doc == NULL)
        return NULL;
    /* Like protojson, an empty list and false are left out. */
    if (group->crl_count > 0) {
        json_t *x509 = json_object_get(json_object_get(doc, "attestationMechanism"), "x509");
        if (json_object_set_new(x509, "crls", crl_list(group, public)) < 0) {
            json_decref(doc);
            return NULL;
        }
    }
    if (group->disabled && json_object_set_new(doc, "disabled", json_true()) < 0) {
        json_decref(doc);
        return NULL;
    }
    if (group->acl_mode != CONFIG_ACL_DEFAULT && group->acl_json != NULL) {
        json_t *entries = json_loads(group->acl_json, 0, NULL);
        json_t *acl = entries != NULL
                          ? json_pack("{s:s, s:o}", "mode", acl_mode_name(group->acl_mode),
                                      "entries", entries)
                          : NULL;
        if (acl == NULL || json_object_set_new(doc, "acl", acl) < 0) {
            json_decref(doc);
            return NULL;
        }
    }
    if (group->resources_json != NULL) {
        json_t *resources = json_loads(group->resources_json, 0, NULL);
        if (resources == NULL || json_object_set_new(doc, "resources", resources) < 0) {
            json_decref(doc);
            return NULL;
        }
    }
    return doc;
}

json_t *model_group_to_json(const struct config_group *group)
{
    return group_to_json(group, false);
}

json_t *model_group_to_api(const struct config_group *group)
{
    return group_to_json(group, true);
}

/* identityCertificate or token: the key's name, or its files unless public. */
static int set_key_reference(json_t *object, const char *name, const char *cert_file,
                             const char *key_file, bool certificate, bool public)
{
    if (name != NULL)
        return json_object_set_new(object, "keyName", json_string(name));
    if (public)
        return 0;
    int rc = json_object_set_new(object, "key", string_or_empty(key_file));
    if (certificate)
        rc |= json_object_set_new(object, "certificate", string_or_empty(cert_file));
    return rc;
}

/* The reference's members the hub keeps, back where they were read. */
static int set_reference_parts(json_t *doc, const char *reference_json)
{
    if (reference_json == NULL)
        return 0;
    json_t *kept = json_loads(reference_json, 0, NULL);
    json_t *authority = json_object_get(kept, "certificateAuthority");
    json_t *provider = json_object_get(json_object_get(doc, "authorization"), "provider");
    int rc = kept != NULL ? 0 : -1;
    if (rc == 0 && authority != NULL)
        rc = json_object_set(doc, "certificateAuthority", authority);
    if (rc == 0 && json_object_get(kept, "provider") != NULL)
        rc = json_object_update(provider, json_object_get(kept, "provider"));
    json_decref(kept);
    return rc;
}

static json_t *hub_to_json(const struct config_hub *hub, bool public)
{
    json_t *doc = json_pack(
        "{s:o, s:o, s:o, s:o, s:o, s:{s:o, s:o, s:{s:o, s:o}}, s:{s:I}, s:{s:o, s:o, s:I}}", "id",
        string_or_empty(hub->record_id != NULL ? hub->record_id : hub->id), "hubId",
        string_or_empty(hub->id), "owner", string_or_empty(hub->owner), "name",
        string_or_empty(hub->name), "gateways", string_list(hub->gateways, hub->gateway_count),
        "authorization", "ownerClaim",
        string_or_empty(hub->token_owner_claim != NULL ? hub->token_owner_claim
                                                       : DEFAULT_OWNER_CLAIM),
        "deviceIdClaim", string_or_empty(hub->token_device_id_claim), "provider", "name",
        string_or_empty(hub->authorization_provider), "audience",
        string_or_empty(hub->token_audience), "identityCertificate", "validity",
        (json_int_t)hub->certificate_validity_s, "token", "keyId",
        string_or_empty(hub->token_key_id), "issuer", string_or_empty(hub->token_issuer),
        "lifetime", (json_int_t)hub->token_lifetime_s);
    if (doc == NULL ||
        set_key_reference(json_object_get(doc, "identityCertificate"), hub->ca_key_name,
                          hub->ca_cert_file, hub->ca_key_file, true, public) != 0 ||
        set_key_reference(json_object_get(doc, "token"), hub->token_key_name, NULL,
                          hub->token_key_file, false, public) != 0 ||
        set_reference_parts(doc, hub->reference_json) != 0) {
        json_decref(doc);
        return NULL;
    }
    return doc;
}

json_t *model_hub_to_json(const struct config_hub *hub)
{
    return hub_to_json(hub, false);
}

json_t *model_hub_to_api(const struct config_hub *hub)
{
    return hub_to_json(hub, true);
}

void model_group_clear(struct config_group *group)
{
    config_group_clear(group);
    memset(group, 0, sizeof(*group));
}

void model_hub_clear(struct config_hub *hub)
{
    config_hub_clear(hub);
    memset(hub, 0, sizeof(*hub));
}

/* Removes the members of object not in allowed, naming each in ignored. */
static void prune_object(json_t *object, const char *path, const char *const *allowed,
                         json_t *ignored)
{
    const char *key;
    json_t *value;
    void *next;
    if (!json_is_object(object))
        return;
    json_object_foreach_safe(object, next, key, value)
    {
        if (key_allowed(allowed, key))
            continue;
        char key_path[PATH_MAX_TEXT];
        error_path_child(key_path, path, key);
        json_array_append_new(ignored, json_string(key_path));
        json_object_del(object, key);
    }
}

void model_group_prune(json_t *doc, json_t *ignored)
{
    prune_object(doc, "", GROUP_KEYS, ignored);
    json_t *mechanism = json_object_get(doc, "attestationMechanism");
    prune_object(mechanism, "attestationMechanism", MECHANISM_KEYS, ignored);
    prune_object(json_object_get(mechanism, "x509"), "attestationMechanism.x509", X509_KEYS,
                 ignored);
    prune_object(json_object_get(doc, "acl"), "acl", ACL_KEYS, ignored);
    size_t i;
    json_t *resource;
    json_array_foreach(json_object_get(doc, "resources"), i, resource)
    {
        char item_path[PATH_MAX_TEXT];
        error_path_index(item_path, "resources", i);
        prune_object(resource, item_path, RESOURCE_KEYS, ignored);
    }
}

void model_hub_prune(json_t *doc, json_t *ignored)
{
    prune_object(doc, "", HUB_KEYS, ignored);
    json_t *authorization = json_object_get(doc, "authorization");
    prune_object(authorization, "authorization", AUTHORIZATION_KEYS, ignored);
    prune_object(json_object_get(authorization, "provider"), "authorization.provider",
                 PROVIDER_KEYS, ignored);
    prune_object(json_object_get(doc, "identityCertificate"), "identityCertificate",
                 CERTIFICATE_KEYS, ignored);
    prune_object(json_object_get(doc, "token"), "token", TOKEN_KEYS, ignored);
}

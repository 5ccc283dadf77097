/*
 * lean_provider: the default provider's algorithms with fewer key decoders
 * (see lean_provider.h).
 *
 * Each load makes an instance: a private library context with the default
 * provider loaded, and the provider "dps-lean" loaded into the caller's
 * context. Its provider context is the default provider's own, so every
 * algorithm it hands out runs exactly as it would from the default
 * provider; only its own entry points (query, parameters, capabilities)
 * find their instance, by that provider context, in a small table.
 */
#include "crypto/lean_provider.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core.h>
#include <openssl/core_dispatch.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/provider.h>

#define LEAN_PROVIDER_NAME "dps-lean"
#define LEAN_INSTANCES_MAX 256
#define LEAN_DISPATCH_MAX 64

struct lean_instance {
    OSSL_LIB_CTX *outer; /* the caller's context */
    OSSL_PROVIDER *outer_provider;
    OSSL_LIB_CTX *inner; /* holds the default provider */
    OSSL_PROVIDER *default_provider;
    void *provctx;                /* the default provider's */
    const OSSL_ALGORITHM *all[3]; /* the default provider's decoders, key managers, ciphers */
    OSSL_ALGORITHM *kept[3];      /* the ones kept of each, then an empty entry */
};

/* The operations filtered, in the order of all[] and kept[]. */
#define FILTERED_COUNT 3
static const int FILTERED[FILTERED_COUNT] = {OSSL_OP_DECODER, OSSL_OP_KEYMGMT, OSSL_OP_CIPHER};

static pthread_mutex_t instances_lock = PTHREAD_MUTEX_INITIALIZER;

/*
 * The EC key manager, the default provider's with one change: the full
 * validation of a public key alone on a curve of cofactor 1 is its quick
 * validation (in range, on the curve, not the point at infinity). Full
 * validation adds "order x key is the point at infinity", which holds for
 * every point of such a curve: libssl 3.0 asks it of every ECDHE peer key,
 * at the cost of a scalar multiplication. The tables are the same for every
 * instance (the default provider's code is the library's), set once.
 */
static pthread_mutex_t ec_keymgmt_lock = PTHREAD_MUTEX_INITIALIZER;
static bool ec_keymgmt_built;
static const OSSL_DISPATCH *ec_keymgmt_default;
static OSSL_DISPATCH ec_keymgmt_lean[LEAN_DISPATCH_MAX];
static OSSL_FUNC_keymgmt_validate_fn *ec_validate_default;
static OSSL_FUNC_keymgmt_get_params_fn *ec_get_params_default;
static struct lean_instance *instances[LEAN_INSTANCES_MAX];
/* Changes whenever an instance goes, under instances_lock: thread caches then look again. */
static _Atomic unsigned long instances_generation;
/* The instance lean_libctx_new() is loading on this thread, for lean_init(). */
static _Thread_local struct lean_instance *loading;
/* The instance this thread found last, so that a shard's queries take no lock shared by shards. */
/*
 * A thread's last lookup in a table under instances_lock (found by key), so
 * that a shard's queries take no lock shared by shards.
 */
struct lookup_cache {
    const void *key;
    void *found;
    unsigned long generation;
};
static _Thread_local struct lookup_cache instance_cache;

/*
 * Each context's P-256 parameters key (lean_p256_parameters), whatever the
 * OpenSSL: made with the context, freed before it.
 */
struct p256_template {
    OSSL_LIB_CTX *libctx;
    EVP_PKEY *parameters;
};
static struct p256_template p256_templates[LEAN_INSTANCES_MAX];
static _Thread_local struct lookup_cache template_cache;

bool lean_provider_applies(void)
{
    return OPENSSL_version_major() == 3 && OPENSSL_version_minor() == 0;
}

/* What find(key) finds in a table under instances_lock, from the thread's cache if still valid. */
static void *cached_lookup(struct lookup_cache *cache, const void *key, void *(*find)(const void *))
{
    unsigned long generation = atomic_load(&instances_generation);

    if (cache->found != NULL && cache->key == key && cache->generation == generation)
        return cache->found;
    pthread_mutex_lock(&instances_lock);
    void *found = find(key);
    generation = atomic_load(&instances_generation);
    pthread_mutex_unlock(&instances_lock);
    *cache = (struct lookup_cache){.key = key, .found = found, .generation = generation};
    return found;
}

static void *instance_find(const void *provctx)
{
    for (size_t i = 0; i < LEAN_INSTANCES_MAX; i++)
        if (instances[i] != NULL && instances[i]->provctx == provctx)
            return instances[i];
    return NULL;
}

static struct lean_instance *instance_of(void *provctx)
{
    return cached_lookup(&instance_cache, provctx, instance_find);
}

/* The first of an algorithm's names ("EC" of "EC:id-ecPublicKey:1.2.840.10045.2.1"). */
static bool first_name_is(const char *names, const char *name)
{
    size_t length = strlen(name);
    return strncmp(names, name, length) == 0 && (names[length] == ':' || names[length] == '\0');
}

static bool first_name_in(const char *names, const char *const *list)
{
    for (size_t i = 0; names != NULL && list[i] != NULL; i++)
        if (first_name_is(names, list[i]))
            return true;
    return false;
}

/* Whether a property definition ("a=b,c=d") holds exactly the property "c=d". */
static bool property_is(const char *properties, const char *property)
{
    size_t length = strlen(property);
    for (const char *at = strstr(properties, property); at != NULL; at = strstr(at + 1, property))
        if ((at == properties || at[-1] == ',') && (at[length] == ',' || at[length] == '\0'))
            return true;
    return false;
}

/*
 * Key managers: the key types the data plane reads (EC, RSA, RSA-PSS) and
 * those libssl's record layer and key schedule create keys of (HMAC,
 * TLS1-PRF, HKDF). Decoders: DER and PEM ones of those key types, and the
 * structure decoders ("DER"). Ciphers: the AES modes TLS suites use (GCM,
 * CCM, CBC, and the CBC ones stitched with HMAC) and ChaCha20-Poly1305; the
 * others (ARIA, Camellia, DES, SM4, other AES modes) only lengthen every
 * walk over the context's methods (OpenSSL 3.0 walks them all to list the
 * key managers of each certificate's key).
 */
static bool kept(int operation_id, const OSSL_ALGORITHM *algorithm)
{
    /* No passphrase is ever given (encrypted keys fail to load either way); "ec" and "rsa"
     * are only named by callers asking for them (PEM's "EC PRIVATE KEY" is "type-specific"). */
    static const char *const UNUSED_STRUCTURES[] = {"structure=EncryptedPrivateKeyInfo",
                                                    "structure=ec", "structure=rsa", NULL};
    /* The "DER" one for SubjectPublicKeyInfo only finds a key's type, which every public key
     * read here names (certificates and d2i_PUBKEY give it from the algorithm's OID): the key
     * decoders read the structure themselves. */
    static const char *const UNUSED_DER_STRUCTURES[] = {"structure=SubjectPublicKeyInfo", NULL};
    static const char *const KEY_MANAGERS[] = {"EC",   "RSA",      "RSA-PSS", "HMAC",
                                               "HKDF", "TLS1-PRF", NULL};
    static const char *const DECODERS[] = {"EC", "RSA", "RSA-PSS", "DER", NULL};
    const char *properties = algorithm->property_definition;

    if (operation_id == OSSL_OP_KEYMGMT)
        return first_name_in(algorithm->algorithm_names, KEY_MANAGERS);
    if (operation_id == OSSL_OP_CIPHER) {
        const char *names = algorithm->algorithm_names;
        if (names == NULL)
            return false;
        if (first_name_is(names, "ChaCha20-Poly1305"))
            return true;
        size_t first = strcspn(names, ":");
        return strncmp(names, "AES-", 4) == 0 &&
               (memmem(names, first, "-GCM", 4) != NULL ||
                memmem(names, first, "-CCM", 4) != NULL || memmem(names, first, "-CBC", 4) != NULL);
    }
    if (properties == NULL ||
        (strstr(properties, "input=der") == NULL && strstr(properties, "input=pem") == NULL))
        return false;
    for (size_t i = 0; UNUSED_STRUCTURES[i] != NULL; i++)
        if (property_is(properties, UNUSED_STRUCTURES[i]))
            return false;
    for (size_t i = 0; UNUSED_DER_STRUCTURES[i] != NULL; i++)
        if (first_name_is(algorithm->algorithm_names, "DER") &&
            property_is(properties, UNUSED_DER_STRUCTURES[i]))
            return false;
    return first_name_in(algorithm->algorithm_names, DECODERS);
}

static const OSSL_ALGORITHM *lean_query(void *provctx, int operation_id, int *no_cache)
{
    struct lean_instance *instance = instance_of(provctx);

    if (instance == NULL)
        return NULL;
    for (size_t i = 0; i < FILTERED_COUNT; i++)
        if (operation_id == FILTERED[i]) {
            *no_cache = 0;
            return instance->kept[i];
        }
    return OSSL_PROVIDER_query_operation(instance->default_provider, operation_id, no_cache);
}

static void lean_unquery(void *provctx, int operation_id, const OSSL_ALGORITHM *algorithms)
{
    struct lean_instance *instance = instance_of(provctx);

    for (size_t i = 0; i < FILTERED_COUNT; i++)
        if (operation_id == FILTERED[i])
            return;
    if (instance != NULL)
        OSSL_PROVIDER_unquery_operation(instance->default_provider, operation_id, algorithms);
}

static const OSSL_PARAM *lean_gettable_params(void *provctx)
{
    struct lean_instance *instance = instance_of(provctx);
    return instance != NULL ? OSSL_PROVIDER_gettable_params(instance->default_provider) : NULL;
}

static int lean_get_params(void *provctx, OSSL_PARAM params[])
{
    struct lean_instance *instance = instance_of(provctx);
    return instance != NULL && OSSL_PROVIDER_get_params(instance->default_provider, params);
}

static int lean_get_capabilities(void *provctx, const char *capability, OSSL_CALLBACK *callback,
                                 void *arg)
{
    struct lean_instance *instance = instance_of(provctx);
    return instance != NULL &&
           OSSL_PROVIDER_get_capabilities(instance->default_provider, capability, callback, arg);
}

static int lean_self_test(void *provctx)
{
    struct lean_instance *instance = instance_of(provctx);
    return instance != NULL && OSSL_PROVIDER_self_test(instance->default_provider);
}

/* The outer provider goes: nothing to do, lean_libctx_free() frees the instance. */
static void lean_teardown(void *provctx)
{
    (void)provctx;
}

static const OSSL_DISPATCH LEAN_DISPATCH[] = {
    {OSSL_FUNC_PROVIDER_TEARDOWN, (void (*)(void))lean_teardown},
    {OSSL_FUNC_PROVIDER_GETTABLE_PARAMS, (void (*)(void))lean_gettable_params},
    {OSSL_FUNC_PROVIDER_GET_PARAMS, (void (*)(void))lean_get_params},
    {OSSL_FUNC_PROVIDER_QUERY_OPERATION, (void (*)(void))lean_query},
    {OSSL_FUNC_PROVIDER_UNQUERY_OPERATION, (void (*)(void))lean_unquery},
    {OSSL_FUNC_PROVIDER_GET_CAPABILITIES, (void (*)(void))lean_get_capabilities},
    {OSSL_FUNC_PROVIDER_SELF_TEST, (void (*)(void))lean_self_test},
    {0, NULL},
};

static int lean_init(const OSSL_CORE_HANDLE *handle, const OSSL_DISPATCH *in,
                     const OSSL_DISPATCH **out, void **provctx)
{
    (void)handle;
    (void)in;
    if (loading == NULL)
        return 0; /* loaded by name from elsewhere: refuse */
    *out = LEAN_DISPATCH;
    *provctx = loading->provctx;
    return 1;
}

static void instance_free(struct lean_instance *instance)
{
    if (instance == NULL)
        return;
    for (size_t i = 0; i < FILTERED_COUNT; i++) {
        free(instance->kept[i]);
        if (instance->all[i] != NULL)
            OSSL_PROVIDER_unquery_operation(instance->default_provider, FILTERED[i],
                                            instance->all[i]);
    }
    if (instance->default_provider != NULL)
        OSSL_PROVIDER_unload(instance->default_provider);
    OSSL_LIB_CTX_free(instance->inner);
    free(instance);
}

/* Whether the curve of an EC key is one of cofactor 1 (the NIST prime curves). */
static bool ec_cofactor_one(void *keydata)
{
    char name[32] = "";
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, name, sizeof(name)),
        OSSL_PARAM_construct_end(),
    };

    if (ec_get_params_default == NULL || ec_get_params_default(keydata, params) != 1 ||
        !OSSL_PARAM_modified(&params[0]))
        return false;
    return strcmp(name, "prime256v1") == 0 || strcmp(name, "secp384r1") == 0 ||
           strcmp(name, "secp521r1") == 0;
}

static int ec_validate_lean(const void *keydata, int selection, int checktype)
{
    if ((selection & OSSL_KEYMGMT_SELECT_KEYPAIR) == OSSL_KEYMGMT_SELECT_PUBLIC_KEY &&
        checktype == OSSL_KEYMGMT_VALIDATE_FULL_CHECK && ec_cofactor_one((void *)keydata))
        checktype = OSSL_KEYMGMT_VALIDATE_QUICK_CHECK;
    return ec_validate_default(keydata, selection, checktype);
}

/* Copies the default EC key manager's table with ec_validate_lean; leaves it unset on surprise. */
static void ec_keymgmt_build(void)
{
    size_t count = 0;
    bool replaced = false;

    while (ec_keymgmt_default[count].function_id != 0)
        count++;
    if (count + 1 > LEAN_DISPATCH_MAX)
        return;
    for (size_t i = 0; i <= count; i++) {
        ec_keymgmt_lean[i] = ec_keymgmt_default[i];
        if (ec_keymgmt_default[i].function_id == OSSL_FUNC_KEYMGMT_VALIDATE) {
            ec_validate_default = OSSL_FUNC_keymgmt_validate(&ec_keymgmt_default[i]);
            ec_keymgmt_lean[i].function = (void (*)(void))ec_validate_lean;
            replaced = true;
        }
        if (ec_keymgmt_default[i].function_id == OSSL_FUNC_KEYMGMT_GET_PARAMS)
            ec_get_params_default = OSSL_FUNC_keymgmt_get_params(&ec_keymgmt_default[i]);
    }
    if (!replaced || ec_validate_default == NULL || ec_get_params_default == NULL)
        ec_keymgmt_lean[0].function_id = 0; /* unusable: the default table is used */
}

/* The EC key manager's entry gets the lean table (the default one if that could not be made). */
static void ec_keymgmt_substitute(OSSL_ALGORITHM *algorithm)
{
    if (!first_name_is(algorithm->algorithm_names, "EC"))
        return;
    pthread_mutex_lock(&ec_keymgmt_lock);
    if (!ec_keymgmt_built) {
        ec_keymgmt_default = algorithm->implementation;
        ec_keymgmt_build();
        ec_keymgmt_built = true;
    }
    if (ec_keymgmt_default == algorithm->implementation && ec_keymgmt_lean[0].function_id != 0)
        algorithm->implementation = ec_keymgmt_lean;
    pthread_mutex_unlock(&ec_keymgmt_lock);
}

/* The default provider's algorithms of FILTERED[index], and the ones kept. */
static int instance_filter(struct lean_instance *instance, size_t index)
{
    int no_cache = 0;
    size_t count = 0, kept_count = 0;

    instance->all[index] =
        OSSL_PROVIDER_query_operation(instance->default_provider, FILTERED[index], &no_cache);
    while (instance->all[index] != NULL && instance->all[index][count].algorithm_names != NULL)
        count++;
    instance->kept[index] = calloc(count + 1, sizeof(*instance->kept[index]));
    if (instance->kept[index] == NULL)
        return -1;
    for (size_t i = 0; i < count; i++)
        if (kept(FILTERED[index], &instance->all[index][i])) {
            instance->kept[index][kept_count] = instance->all[index][i];
            if (FILTERED[index] == OSSL_OP_KEYMGMT)
                ec_keymgmt_substitute(&instance->kept[index][kept_count]);
            kept_count++;
        }
    return kept_count > 0 ? 0 : -1;
}

/* The inner context, its default provider and the kept algorithms. */
static int instance_prepare(struct lean_instance *instance)
{
    instance->inner = OSSL_LIB_CTX_new();
    if (instance->inner == NULL)
        return -1;
    instance->default_provider = OSSL_PROVIDER_load(instance->inner, "default");
    if (instance->default_provider == NULL)
        return -1;
    instance->provctx = OSSL_PROVIDER_get0_provider_ctx(instance->default_provider);
    for (size_t i = 0; i < FILTERED_COUNT; i++)
        if (instance_filter(instance, i) != 0)
            return -1;
    return 0;
}

static int instance_register(struct lean_instance *instance)
{
    int slot = -1;

    pthread_mutex_lock(&instances_lock);
    for (int i = 0; slot < 0 && i < LEAN_INSTANCES_MAX; i++)
        if (instances[i] == NULL)
            slot = i;
    if (slot >= 0)
        instances[slot] = instance;
    pthread_mutex_unlock(&instances_lock);
    return slot >= 0 ? 0 : -1;
}

static void instance_unregister(const struct lean_instance *instance)
{
    pthread_mutex_lock(&instances_lock);
    for (size_t i = 0; i < LEAN_INSTANCES_MAX; i++)
        if (instances[i] == instance)
            instances[i] = NULL;
    atomic_fetch_add(&instances_generation, 1);
    pthread_mutex_unlock(&instances_lock);
}

/* Makes and registers the context's P-256 parameters key; a context without one still works. */
static void p256_template_add(OSSL_LIB_CTX *libctx)
{
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(libctx, "EC", NULL);
    EVP_PKEY *parameters = NULL;
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, (char *)"prime256v1", 0),
        OSSL_PARAM_construct_end(),
    };

    if (ctx != NULL && EVP_PKEY_fromdata_init(ctx) == 1)
        EVP_PKEY_fromdata(ctx, &parameters, EVP_PKEY_KEY_PARAMETERS, params);
    EVP_PKEY_CTX_free(ctx);
    ERR_clear_error();
    if (parameters == NULL)
        return;
    pthread_mutex_lock(&instances_lock);
    for (size_t i = 0; parameters != NULL && i < LEAN_INSTANCES_MAX; i++)
        if (p256_templates[i].libctx == NULL) {
            p256_templates[i].libctx = libctx;
            p256_templates[i].parameters = parameters;
            parameters = NULL;
        }
    pthread_mutex_unlock(&instances_lock);
    EVP_PKEY_free(parameters);
}

/* Unregisters and frees the context's P-256 parameters key, before the context goes. */
static void p256_template_remove(const OSSL_LIB_CTX *libctx)
{
    EVP_PKEY *parameters = NULL;

    pthread_mutex_lock(&instances_lock);
    for (size_t i = 0; i < LEAN_INSTANCES_MAX; i++)
        if (p256_templates[i].libctx == libctx) {
            parameters = p256_templates[i].parameters;
            p256_templates[i] = (struct p256_template){0};
        }
    atomic_fetch_add(&instances_generation, 1);
    pthread_mutex_unlock(&instances_lock);
    EVP_PKEY_free(parameters);
}

static void *template_find(const void *libctx)
{
    for (size_t i = 0; i < LEAN_INSTANCES_MAX; i++)
        if (p256_templates[i].libctx == libctx)
            return p256_templates[i].parameters;
    return NULL;
}

EVP_PKEY *lean_p256_parameters(const OSSL_LIB_CTX *libctx)
{
    return libctx != NULL ? cached_lookup(&template_cache, libctx, template_find) : NULL;
}

OSSL_LIB_CTX *lean_libctx_new(char *err, size_t err_length)
{
    OSSL_LIB_CTX *libctx = OSSL_LIB_CTX_new();
    struct lean_instance *instance = NULL;
    const char *step = "out of memory";

    if (libctx == NULL || !lean_provider_applies())
        goto done;
    instance = calloc(1, sizeof(*instance));
    if (instance == NULL)
        goto fail;
    instance->outer = libctx;
    step = "cannot load the default provider";
    if (instance_prepare(instance) != 0)
        goto fail;
    step = "too many library contexts";
    if (instance_register(instance) != 0)
        goto fail;
    step = "cannot load the lean provider";
    loading = instance;
    if (OSSL_PROVIDER_add_builtin(libctx, LEAN_PROVIDER_NAME, lean_init) == 1)
        instance->outer_provider = OSSL_PROVIDER_load(libctx, LEAN_PROVIDER_NAME);
    loading = NULL;
    if (instance->outer_provider == NULL) {
        instance_unregister(instance);
        goto fail;
    }
    ERR_clear_error();
    p256_template_add(libctx);
    return libctx;
fail:
    ERR_clear_error();
    OSSL_LIB_CTX_free(libctx);
    instance_free(instance);
    libctx = NULL;
done:
    if (libctx == NULL)
        snprintf(err, err_length, "OpenSSL library context: %s", step);
    else
        p256_template_add(libctx);
    return libctx;
}

/*
 * The caller's context goes first (its keys and methods run the default
 * provider's code), then the instance that holds that code.
 */
void lean_libctx_free(OSSL_LIB_CTX *libctx)
{
    struct lean_instance *instance = NULL;

    if (libctx == NULL)
        return;
    p256_template_remove(libctx);
    pthread_mutex_lock(&instances_lock);
    for (size_t i = 0; instance == NULL && i < LEAN_INSTANCES_MAX; i++)
        if (instances[i] != NULL && instances[i]->outer == libctx)
            instance = instances[i];
    pthread_mutex_unlock(&instances_lock);
    if (instance != NULL)
        OSSL_PROVIDER_unload(instance->outer_provider);
    OSSL_LIB_CTX_free(libctx);
    if (instance != NULL) {
        instance_unregister(instance);
        instance_free(instance);
    }
}

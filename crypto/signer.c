/*
 * signer: the worker pool that alone holds the hub CA and token keys.
 *
 * Requests wait in one bounded FIFO guarded by a mutex; a worker takes up to
 * SIGNER_BATCH of them per lock acquisition, signs them without the lock and
 * calls each done() callback. A submit wakes a worker only when none was
 * woken since a worker last took a batch (wake_needed()), and a worker that
 * leaves requests queued wakes the next, so a shard's burst of requests costs
 * one futex wake, not one each. Every worker owns an OpenSSL library context
 * and its own issuer and jwt_key per hub, all loaded by signer_create() on
 * the calling thread before any worker starts, so configuration errors are
 * reported synchronously and workers never share OpenSSL objects.
 *
 * The token claims a hub wants (issuer, audience, claim names, lifetime) are
 * copied out of the configuration, so the signer does not depend on the
 * configuration snapshot outliving it.
 */
#include "common/error.h"
#include "crypto/signer.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "crypto/jwt.h"

#define SIGNER_BATCH 32
#define TOKEN_ID_BYTES 16

struct signer_hub {
    char *token_issuer;
    char *token_audience;
    char *owner_claim;
    char *device_id_claim;
    long token_lifetime_s;
};

struct signer_worker {
    struct signer *signer;
    pthread_t thread;
    bool started;
    OSSL_LIB_CTX *libctx;
    struct issuer **issuers; /* one per hub */
    struct jwt_key **tokens; /* one per hub */
};

struct signer {
    struct signer_hub *hubs;
    size_t hub_count;
    struct signer_worker *workers;
    unsigned worker_count;

    pthread_mutex_t lock;
    pthread_cond_t wake;
    bool wake_pending; /* a worker was signalled and has not looked at the queue since */
    struct signer_request *head;
    struct signer_request *tail;
    size_t depth;
    size_t limit;
    bool stopping;
    uint64_t batches;
    uint64_t requests;
};

static char *copy_optional(const char *text)
{
    return text != NULL ? strdup(text) : NULL;
}

static int copy_hub(struct signer_hub *hub, const struct config_hub *config_hub)
{
    const char *owner_claim = config_hub->token_owner_claim;

    hub->token_issuer = copy_optional(config_hub->token_issuer);
    hub->token_audience = copy_optional(config_hub->token_audience);
    hub->owner_claim = strdup(owner_claim != NULL && owner_claim[0] != '\0' ? owner_claim : "sub");
    hub->device_id_claim = copy_optional(config_hub->token_device_id_claim);
    hub->token_lifetime_s = config_hub->token_lifetime_s;
    if ((config_hub->token_issuer != NULL && hub->token_issuer == NULL) ||
        (config_hub->token_audience != NULL && hub->token_audience == NULL) ||
        hub->owner_claim == NULL ||
        (config_hub->token_device_id_claim != NULL && hub->device_id_claim == NULL))
        return -1;
    return 0;
}

static void free_hub(struct signer_hub *hub)
{
    free(hub->token_issuer);
    free(hub->token_audience);
    free(hub->owner_claim);
    free(hub->device_id_claim);
}

static int load_worker(struct signer_worker *worker, const struct config *config, char *err,
                       size_t err_length)
{
    char reason[256];

    worker->libctx = OSSL_LIB_CTX_new();
    worker->issuers = calloc(config->hub_count, sizeof(*worker->issuers));
    worker->tokens = calloc(config->hub_count, sizeof(*worker->tokens));
    if (worker->libctx == NULL ||
        (config->hub_count > 0 && (worker->issuers == NULL || worker->tokens == NULL))) {
        error_set(err, err_length, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < config->hub_count; i++) {
        const struct config_hub *hub = &config->hubs[i];
        if (hub->ca_cert_file == NULL || hub->ca_key_file == NULL || hub->token_key_file == NULL) {
            error_set(err, err_length,
                      "hubs[%zu]: CA certificate, CA key and token key files are required", i);
            return -1;
        }
        worker->issuers[i] = issuer_load(worker->libctx, hub->ca_cert_file, hub->ca_key_file,
                                         reason, sizeof(reason));
        if (worker->issuers[i] == NULL) {
            error_set(err, err_length, "hubs[%zu]: %s", i, reason);
            return -1;
        }
        worker->tokens[i] = jwt_key_load(worker->libctx, hub->token_key_file, hub->token_key_id,
                                         reason, sizeof(reason));
        if (worker->tokens[i] == NULL) {
            error_set(err, err_length, "hubs[%zu]: %s", i, reason);
            return -1;
        }
    }
    return 0;
}

static void free_worker(struct signer_worker *worker, size_t hub_count)
{
    for (size_t i = 0; i < hub_count; i++) {
        if (worker->issuers != NULL)
            issuer_free(worker->issuers[i]);
        if (worker->tokens != NULL)
            jwt_key_free(worker->tokens[i]);
    }
    free(worker->issuers);
    free(worker->tokens);
    OSSL_LIB_CTX_free(worker->libctx);
}

/* The claims of PROTOCOL.md 2.3's access token, as compact JSON (malloc'd). */
static char *token_claims(struct signer_worker *worker, const struct signer_hub *hub,
                          const struct signer_request *request, time_t expires)
{
    uint8_t id[TOKEN_ID_BYTES];
    char id_hex[2 * TOKEN_ID_BYTES + 1];
    json_t *claims = json_object();
    char *text = NULL;
    int failed = 0;

    if (claims == NULL || RAND_bytes_ex(worker->libctx, id, sizeof(id), 0) != 1) {
        json_decref(claims);
        return NULL;
    }
    for (size_t i = 0; i < sizeof(id); i++)
        snprintf(id_hex + 2 * i, 3, "%02x", id[i]);
    if (hub->token_issuer != NULL)
        failed |= json_object_set_new(claims, "iss", json_string(hub->token_issuer));
    if (hub->token_audience != NULL)
        failed |= json_object_set_new(claims, "aud", json_string(hub->token_audience));
    failed |= json_object_set_new(claims, "iat", json_integer((json_int_t)request->issued_at));
    failed |= json_object_set_new(claims, "exp", json_integer((json_int_t)expires));
    failed |= json_object_set_new(claims, hub->owner_claim, json_string(request->owner));
    if (hub->device_id_claim != NULL && request->device_id != NULL)
        failed |=
            json_object_set_new(claims, hub->device_id_claim, json_string(request->device_id));
    failed |= json_object_set_new(claims, "jti", json_string(id_hex));
    if (failed == 0)
        text = json_dumps(claims, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(claims);
    return text;
}

static void sign_token(struct signer_worker *worker, struct signer_request *request)
{
    const struct signer_hub *hub = &worker->signer->hubs[request->hub_index];
    time_t expires = request->issued_at + (time_t)hub->token_lifetime_s;

    if (request->owner == NULL) {
        error_set(request->error, sizeof(request->error), "token request without an owner");
        return;
    }
    char *claims = token_claims(worker, hub, request, expires);
    if (claims == NULL) {
        error_set(request->error, sizeof(request->error), "cannot build the token claims");
        return;
    }
    request->token = jwt_sign(worker->tokens[request->hub_index], claims, request->error,
                              sizeof(request->error));
    free(claims);
    if (request->token == NULL)
        return;
    request->token_expires = expires;
    request->status = 0;
}

static void process(struct signer_worker *worker, struct signer_request *request)
{
    request->status = -1;
    request->error[0] = '\0';
    request->token = NULL;
    request->token_expires = 0;
    memset(&request->certificate, 0, sizeof(request->certificate));
    if (request->hub_index >= worker->signer->hub_count) {
        error_set(request->error, sizeof(request->error), "unknown hub %zu", request->hub_index);
        return;
    }
    switch (request->operation) {
    case SIGNER_ISSUE_CERTIFICATE:
        if (issuer_issue(worker->issuers[request->hub_index], request->device_id, request->spki_der,
                         request->spki_length, request->not_before, request->not_after,
                         &request->certificate, request->error, sizeof(request->error)) == 0)
            request->status = 0;
        break;
    case SIGNER_SIGN_TOKEN:
        sign_token(worker, request);
        break;
    default:
        error_set(request->error, sizeof(request->error), "unknown signer operation %d",
                  (int)request->operation);
        break;
    }
}

/*
 * Whether a queued request needs a worker signalled (called locked): not
 * while one signalled earlier has not taken its batch yet, since it takes
 * up to SIGNER_BATCH, so a burst of submits costs one futex wake. A signal
 * that finds every worker busy wakes nobody; wake_pending stays set until a
 * worker takes a batch, which each does before it sleeps again.
 */
static bool wake_needed(struct signer *signer)
{
    if (signer->wake_pending)
        return false;
    signer->wake_pending = true;
    return true;
}

/* Detaches up to SIGNER_BATCH requests; NULL once stopping and drained. Called locked. */
static struct signer_request *take_batch(struct signer *signer)
{
    struct signer_request *batch = signer->head;
    struct signer_request *last = batch;
    size_t count = 1;

    while (count < SIGNER_BATCH && last->next != NULL) {
        last = last->next;
        count++;
    }
    signer->head = last->next;
    if (signer->head == NULL)
        signer->tail = NULL;
    last->next = NULL;
    signer->depth -= count;
    signer->batches++;
    signer->requests += count;
    return batch;
}

static void *worker_main(void *argument)
{
    struct signer_worker *worker = argument;
    struct signer *signer = worker->signer;

    for (;;) {
        pthread_mutex_lock(&signer->lock);
        while (signer->head == NULL && !signer->stopping)
            pthread_cond_wait(&signer->wake, &signer->lock);
        if (signer->head == NULL) {
            pthread_mutex_unlock(&signer->lock);
            return NULL;
        }
        signer->wake_pending = false; /* this worker takes its batch now */
        struct signer_request *batch = take_batch(signer);
        /* More than a batch was queued: the rest is another worker's. */
        bool wake = signer->head != NULL && wake_needed(signer);
        pthread_mutex_unlock(&signer->lock);
        if (wake)
            pthread_cond_signal(&signer->wake);
        while (batch != NULL) {
            /* done() may free the request: read the link first. */
            struct signer_request *next = batch->next;
            batch->next = NULL;
            process(worker, batch);
            batch->done(batch);
            batch = next;
        }
    }
}

static void free_signer(struct signer *signer)
{
    for (unsigned i = 0; i < signer->worker_count; i++)
        free_worker(&signer->workers[i], signer->hub_count);
    for (size_t i = 0; i < signer->hub_count; i++)
        free_hub(&signer->hubs[i]);
    free(signer->workers);
    free(signer->hubs);
    pthread_cond_destroy(&signer->wake);
    pthread_mutex_destroy(&signer->lock);
    free(signer);
}

struct signer *signer_create(const struct config *config, unsigned threads, size_t queue_limit,
                             char *err, size_t err_length)
{
    struct signer *signer;

    if (queue_limit == 0) {
        error_set(err, err_length, "signer queue limit must be at least 1");
        return NULL;
    }
    signer = calloc(1, sizeof(*signer));
    if (signer == NULL) {
        error_set(err, err_length, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&signer->lock, NULL);
    pthread_cond_init(&signer->wake, NULL);
    signer->limit = queue_limit;
    signer->hub_count = config->hub_count;
    signer->worker_count = threads > 0 ? threads : 1;
    signer->hubs = calloc(config->hub_count + 1, sizeof(*signer->hubs));
    signer->workers = calloc(signer->worker_count, sizeof(*signer->workers));
    if (signer->hubs == NULL || signer->workers == NULL) {
        error_set(err, err_length, "out of memory");
        signer->worker_count = 0;
        signer->hub_count = 0;
        free_signer(signer);
        return NULL;
    }
    for (size_t i = 0; i < config->hub_count; i++) {
        if (copy_hub(&signer->hubs[i], &config->hubs[i]) != 0) {
            error_set(err, err_length, "out of memory");
            free_signer(signer);
            return NULL;
        }
    }
    for (unsigned i = 0; i < signer->worker_count; i++) {
        signer->workers[i].signer = signer;
        if (load_worker(&signer->workers[i], config, err, err_length) != 0) {
            free_signer(signer);
            return NULL;
        }
    }
    for (unsigned i = 0; i < signer->worker_count; i++) {
        struct signer_worker *worker = &signer->workers[i];
        if (pthread_create(&worker->thread, NULL, worker_main, worker) != 0) {
            error_set(err, err_length, "cannot start signer thread %u", i);
            signer_destroy(signer);
            return NULL;
        }
        worker->started = true;
        char name[32];
        snprintf(name, sizeof(name), "dps-signer-%u", i);
        name[15] = '\0'; /* the kernel's limit for thread names */
        pthread_setname_np(worker->thread, name);
    }
    return signer;
}

void signer_destroy(struct signer *signer)
{
    if (signer == NULL)
        return;
    pthread_mutex_lock(&signer->lock);
    signer->stopping = true;
    pthread_cond_broadcast(&signer->wake);
    pthread_mutex_unlock(&signer->lock);
    for (unsigned i = 0; i < signer->worker_count; i++)
        if (signer->workers[i].started)
            pthread_join(signer->workers[i].thread, NULL);
    free_signer(signer);
}

int signer_submit(struct signer *signer, struct signer_request *request)
{
    request->next = NULL;
    pthread_mutex_lock(&signer->lock);
    if (signer->stopping || signer->depth >= signer->limit) {
        pthread_mutex_unlock(&signer->lock);
        return -EAGAIN;
    }
    if (signer->tail != NULL)
        signer->tail->next = request;
    else
        signer->head = request;
    signer->tail = request;
    signer->depth++;
    bool wake = wake_needed(signer);
    pthread_mutex_unlock(&signer->lock);
    /* Signalled unlocked, so the woken worker does not block at once on the lock held here. */
    if (wake)
        pthread_cond_signal(&signer->wake);
    return 0;
}

const char *signer_hub_root_pem(const struct signer *signer, size_t hub_index)
{
    if (hub_index >= signer->hub_count)
        return NULL;
    return issuer_root_pem(signer->workers[0].issuers[hub_index]);
}

void signer_get_stats(struct signer *signer, struct signer_stats *stats)
{
    pthread_mutex_lock(&signer->lock);
    stats->queue_depth = signer->depth;
    stats->batches = signer->batches;
    stats->requests = signer->requests;
    pthread_mutex_unlock(&signer->lock);
}

/*
 * test_signer: the signing pool under concurrent submitters. Every accepted
 * request completes exactly once with a certificate that verifies to its
 * hub's root or a token that verifies with its hub's key and carries the
 * hub's claims; a full queue answers -EAGAIN; destroy drains the queue; a bad
 * key file is reported by name.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "tests/unit/pki_files.h"
#include "crypto/jwt.h"
#include "tests/jwt_verify.h"
#include "crypto/signer.h"

#define DEVICE_ID "0f8ab3c2-7d6e-4a51-9b2c-3e4f5a6b7c8d"
#define PER_THREAD 150
#define TOKEN_LIFETIME 86400

struct fixture {
    char dir[64];
    char files[8][128];
    EVP_PKEY *root_key, *intermediate_key, *rsa_key, *token_ec, *token_rsa, *device_key;
    X509 *root, *intermediate, *rsa_root;
    char *token_ec_public, *token_rsa_public;
    struct config_hub hubs[2];
    struct config config;
    uint8_t spki_der[256];
    size_t spki_length;
};

enum { CHAIN_FILE, CHAIN_KEY, RSA_FILE, RSA_KEY, TOKEN_EC, TOKEN_RSA, FILE_COUNT };

/*
 * Counts done() callbacks so the test can wait for all of them. A gated
 * request's done() holds its worker until the test opens the gate: since
 * done() runs on the worker thread, this pins the worker while the test
 * fills the queue, which makes queue and batch behaviour deterministic.
 */
struct completion {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    size_t done;
    bool entered;
    bool held;
};

static void completion_init(struct completion *completion)
{
    pthread_mutex_init(&completion->lock, NULL);
    pthread_cond_init(&completion->cond, NULL);
    completion->done = 0;
    completion->entered = false;
    completion->held = true;
}

static void on_done_gated(struct signer_request *request)
{
    struct completion *completion = request->user;

    pthread_mutex_lock(&completion->lock);
    completion->entered = true;
    pthread_cond_broadcast(&completion->cond);
    while (completion->held)
        pthread_cond_wait(&completion->cond, &completion->lock);
    completion->done++;
    pthread_cond_broadcast(&completion->cond);
    pthread_mutex_unlock(&completion->lock);
}

/* Submits a gated request and returns once its worker is held in done(). */
static void hold_worker(struct signer *signer, struct signer_request *request,
                        struct completion *completion)
{
    request->done = on_done_gated;
    assert_int_equal(signer_submit(signer, request), 0);
    pthread_mutex_lock(&completion->lock);
    while (!completion->entered)
        pthread_cond_wait(&completion->cond, &completion->lock);
    pthread_mutex_unlock(&completion->lock);
}

static void release_worker(struct completion *completion)
{
    pthread_mutex_lock(&completion->lock);
    completion->held = false;
    pthread_cond_broadcast(&completion->cond);
    pthread_mutex_unlock(&completion->lock);
}

static void *release_later(void *argument)
{
    struct timespec delay = {0, 50 * 1000 * 1000};

    nanosleep(&delay, NULL);
    release_worker(argument);
    return NULL;
}

static void completion_wait(struct completion *completion, size_t count)
{
    pthread_mutex_lock(&completion->lock);
    while (completion->done < count)
        pthread_cond_wait(&completion->cond, &completion->lock);
    pthread_mutex_unlock(&completion->lock);
}

/* Like completion_wait(), but false when count is not reached within seconds. */
static bool completion_wait_for(struct completion *completion, size_t count, int seconds)
{
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += seconds;
    pthread_mutex_lock(&completion->lock);
    int r = 0;
    while (completion->done < count && r == 0)
        r = pthread_cond_timedwait(&completion->cond, &completion->lock, &deadline);
    bool reached = completion->done >= count;
    pthread_mutex_unlock(&completion->lock);
    return reached;
}

static void on_done(struct signer_request *request)
{
    struct completion *completion = request->user;

    pthread_mutex_lock(&completion->lock);
    completion->done++;
    pthread_cond_broadcast(&completion->cond);
    pthread_mutex_unlock(&completion->lock);
}

static char *to_pem(EVP_PKEY *public_key, X509 *certificate)
{
    BIO *bio = BIO_new(BIO_s_mem());
    char *data = NULL;
    if (public_key != NULL)
        PEM_write_bio_PUBKEY(bio, public_key);
    else
        PEM_write_bio_X509(bio, certificate);
    long length = BIO_get_mem_data(bio, &data);
    char *pem = strndup(data, (size_t)length);
    BIO_free(bio);
    return pem;
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    const char *names[FILE_COUNT] = {"hub-ca.pem", "hub-ca.key",   "rsa-ca.pem",
                                     "rsa-ca.key", "token-ec.key", "token-rsa.key"};

    strcpy(f->dir, "/tmp/test_signer.XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    for (int i = 0; i < FILE_COUNT; i++)
        snprintf(f->files[i], sizeof(f->files[i]), "%s/%s", f->dir, names[i]);
    f->root_key = EVP_EC_gen("P-256");
    f->intermediate_key = EVP_EC_gen("P-256");
    f->rsa_key = EVP_RSA_gen(2048);
    f->token_ec = EVP_EC_gen("P-256");
    f->token_rsa = EVP_RSA_gen(2048);
    f->device_key = EVP_EC_gen("P-256");
    f->root = make_ca(f->root_key, "Hub Root", NULL, NULL);
    f->intermediate = make_ca(f->intermediate_key, "Hub CA", f->root, f->root_key);
    f->rsa_root = make_ca(f->rsa_key, "Hub RSA CA", NULL, NULL);
    write_certificates(f->files[CHAIN_FILE], f->intermediate, f->root);
    write_key(f->files[CHAIN_KEY], f->intermediate_key);
    write_certificates(f->files[RSA_FILE], f->rsa_root, NULL);
    write_key(f->files[RSA_KEY], f->rsa_key);
    write_key(f->files[TOKEN_EC], f->token_ec);
    write_key(f->files[TOKEN_RSA], f->token_rsa);
    f->token_ec_public = to_pem(f->token_ec, NULL);
    f->token_rsa_public = to_pem(f->token_rsa, NULL);

    f->hubs[0] = (struct config_hub){
        .id = "a6a7f1e2-1111-4aaa-8bbb-000000000001",
        .ca_cert_file = f->files[CHAIN_FILE],
        .ca_key_file = f->files[CHAIN_KEY],
        .certificate_validity_s = 365L * 86400,
        .token_key_file = f->files[TOKEN_EC],
        .token_key_id = "hub0-key",
        .token_issuer = "https://auth.hub0.example",
        .token_audience = "https://hub0.example",
        .token_owner_claim = NULL,
        .token_device_id_claim = "deviceId",
        .token_lifetime_s = TOKEN_LIFETIME,
    };
    f->hubs[1] = (struct config_hub){
        .id = "a6a7f1e2-1111-4aaa-8bbb-000000000002",
        .ca_cert_file = f->files[RSA_FILE],
        .ca_key_file = f->files[RSA_KEY],
        .certificate_validity_s = 365L * 86400,
        .token_key_file = f->files[TOKEN_RSA],
        .token_issuer = "https://auth.hub1.example",
        .token_owner_claim = "https://plgd.dev/owner",
        .token_lifetime_s = 2 * TOKEN_LIFETIME,
    };
    f->config.hubs = f->hubs;
    f->config.hub_count = 2;

    unsigned char *cursor = f->spki_der;
    f->spki_length = (size_t)i2d_PUBKEY(f->device_key, &cursor);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;

    for (int i = 0; i < FILE_COUNT; i++)
        unlink(f->files[i]);
    rmdir(f->dir);
    EVP_PKEY_free(f->root_key);
    EVP_PKEY_free(f->intermediate_key);
    EVP_PKEY_free(f->rsa_key);
    EVP_PKEY_free(f->token_ec);
    EVP_PKEY_free(f->token_rsa);
    EVP_PKEY_free(f->device_key);
    X509_free(f->root);
    X509_free(f->intermediate);
    X509_free(f->rsa_root);
    free(f->token_ec_public);
    free(f->token_rsa_public);
    free(f);
    return 0;
}

static struct signer *create(struct fixture *f, unsigned threads, size_t queue_limit)
{
    char err[512] = "";
    struct signer *signer = signer_create(&f->config, threads, queue_limit, err, sizeof(err));
    if (signer == NULL)
        fail_msg("signer_create: %s", err);
    return signer;
}

static void prepare(struct fixture *f, struct signer_request *request, size_t n,
                    struct completion *completion, time_t now)
{
    memset(request, 0, sizeof(*request));
    request->operation = n % 2 == 0 ? SIGNER_ISSUE_CERTIFICATE : SIGNER_SIGN_TOKEN;
    request->hub_index = (n / 2) % 2;
    request->spki_der = f->spki_der;
    request->spki_length = f->spki_length;
    request->not_before = now - 3600;
    request->not_after = now + 365L * 86400;
    request->owner = "owner-1";
    request->device_id = DEVICE_ID;
    request->issued_at = now;
    request->done = on_done;
    request->user = completion;
}

struct submitter {
    struct signer *signer;
    struct signer_request *requests;
    size_t count;
};

/* Submits every request, retrying while the queue is full. */
static void *submit_all(void *argument)
{
    struct submitter *submitter = argument;

    for (size_t i = 0; i < submitter->count; i++) {
        while (signer_submit(submitter->signer, &submitter->requests[i]) == -EAGAIN)
            sched_yield();
    }
    return NULL;
}

static void check_certificate(struct fixture *f, const struct signer_request *request)
{
    X509 *root = request->hub_index == 0 ? f->root : f->rsa_root;
    BIO *bio = BIO_new_mem_buf(request->certificate.pem, -1);
    X509 *leaf = PEM_read_bio_X509(bio, NULL, NULL, NULL);
    STACK_OF(X509) *untrusted = sk_X509_new_null();
    X509 *extra;

    assert_non_null(leaf);
    while ((extra = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL)
        sk_X509_push(untrusted, extra);
    assert_int_equal(sk_X509_num(untrusted), request->hub_index == 0 ? 1 : 0);
    X509_STORE *store = X509_STORE_new();
    X509_STORE_add_cert(store, root);
    X509_STORE_CTX *context = X509_STORE_CTX_new();
    X509_STORE_CTX_init(context, store, leaf, untrusted);
    X509_STORE_CTX_set_purpose(context, X509_PURPOSE_SSL_CLIENT);
    if (X509_verify_cert(context) != 1)
        fail_msg("certificate does not verify: %s",
                 X509_verify_cert_error_string(X509_STORE_CTX_get_error(context)));
    assert_int_equal(EVP_PKEY_eq(X509_get0_pubkey(leaf), f->device_key), 1);
    const ASN1_INTEGER *serial = X509_get0_serialNumber(leaf);
    assert_memory_equal(ASN1_STRING_get0_data(serial), request->certificate.serial,
                        ISSUER_SERIAL_LENGTH);
    assert_int_equal(request->certificate.not_after, request->not_after);
    X509_STORE_CTX_free(context);
    X509_STORE_free(store);
    sk_X509_pop_free(untrusted, X509_free);
    X509_free(leaf);
    BIO_free(bio);
}

static void check_token(struct fixture *f, const struct signer_request *request)
{
    const struct config_hub *hub = &f->hubs[request->hub_index];
    const char *public_pem = request->hub_index == 0 ? f->token_ec_public : f->token_rsa_public;
    char err[256] = "";

    char *payload = jwt_verify(NULL, request->token, public_pem, err, sizeof(err));
    if (payload == NULL)
        fail_msg("token does not verify: %s", err);
    json_t *claims = json_loads(payload, 0, NULL);
    assert_non_null(claims);
    assert_string_equal(json_string_value(json_object_get(claims, "iss")), hub->token_issuer);
    assert_int_equal(json_integer_value(json_object_get(claims, "iat")), request->issued_at);
    assert_int_equal(json_integer_value(json_object_get(claims, "exp")),
                     request->issued_at + hub->token_lifetime_s);
    assert_int_equal(request->token_expires, request->issued_at + hub->token_lifetime_s);
    const char *jti = json_string_value(json_object_get(claims, "jti"));
    assert_non_null(jti);
    assert_int_equal(strlen(jti), 32);
    assert_int_equal(strspn(jti, "0123456789abcdef"), 32);
    if (request->hub_index == 0) {
        assert_string_equal(json_string_value(json_object_get(claims, "aud")),
                            "https://hub0.example");
        assert_string_equal(json_string_value(json_object_get(claims, "sub")), "owner-1");
        assert_string_equal(json_string_value(json_object_get(claims, "deviceId")), DEVICE_ID);
        assert_int_equal(json_object_size(claims), 7);
    } else {
        assert_null(json_object_get(claims, "aud"));
        assert_null(json_object_get(claims, "sub"));
        assert_string_equal(json_string_value(json_object_get(claims, "https://plgd.dev/owner")),
                            "owner-1");
        assert_int_equal(json_object_size(claims), 5);
    }
    json_decref(claims);
    free(payload);
}

static void test_concurrent_requests(void **state)
{
    struct fixture *f = *state;
    struct signer *signer = create(f, 2, 64);
    struct signer_request *requests = calloc(2 * PER_THREAD, sizeof(*requests));
    struct completion completion;
    struct submitter submitters[2];
    pthread_t threads[2];
    time_t now = time(NULL);

    completion_init(&completion);
    for (size_t i = 0; i < 2 * PER_THREAD; i++)
        prepare(f, &requests[i], i, &completion, now);
    for (int t = 0; t < 2; t++) {
        submitters[t] = (struct submitter){signer, requests + t * PER_THREAD, PER_THREAD};
        pthread_create(&threads[t], NULL, submit_all, &submitters[t]);
    }
    for (int t = 0; t < 2; t++)
        pthread_join(threads[t], NULL);
    completion_wait(&completion, 2 * PER_THREAD);

    for (size_t i = 0; i < 2 * PER_THREAD; i++) {
        struct signer_request *request = &requests[i];
        if (request->status != 0)
            fail_msg("request %zu failed: %s", i, request->error);
        if (request->operation == SIGNER_ISSUE_CERTIFICATE) {
            check_certificate(f, request);
            assert_null(request->token);
        } else {
            check_token(f, request);
            assert_null(request->certificate.pem);
        }
    }
    /* Token ids and serials are unique. */
    for (size_t i = 0; i < 2 * PER_THREAD; i++)
        for (size_t j = i + 1; j < 2 * PER_THREAD; j++)
            if (requests[i].operation == SIGNER_ISSUE_CERTIFICATE &&
                requests[j].operation == SIGNER_ISSUE_CERTIFICATE)
                assert_memory_not_equal(requests[i].certificate.serial,
                                        requests[j].certificate.serial, ISSUER_SERIAL_LENGTH);
            else if (requests[i].operation == SIGNER_SIGN_TOKEN &&
                     requests[j].operation == SIGNER_SIGN_TOKEN)
                assert_string_not_equal(requests[i].token, requests[j].token);

    struct signer_stats stats;
    signer_get_stats(signer, &stats);
    assert_int_equal(stats.requests, 2 * PER_THREAD);
    assert_int_equal(stats.queue_depth, 0);
    assert_true(stats.batches >= 1 && stats.batches <= stats.requests);
    signer_destroy(signer);
    for (size_t i = 0; i < 2 * PER_THREAD; i++) {
        free(requests[i].certificate.pem);
        free(requests[i].token);
    }
    free(requests);
}

/*
 * The CA chain without root that a certificate signed for hub_index carries after its leaf
 * (malloc'd), or NULL when the signer refuses the hub.
 */
static char *hub_chain_pem(struct fixture *f, struct signer *signer, size_t hub_index)
{
    static const char end[] = "-----END CERTIFICATE-----\n";
    struct signer_request request;
    struct completion completion;
    char *chain = NULL;

    completion_init(&completion);
    prepare(f, &request, 0, &completion, time(NULL));
    request.hub_index = hub_index;
    assert_int_equal(signer_submit(signer, &request), 0);
    completion_wait(&completion, 1);
    if (request.status == 0) {
        const char *leaf_end = strstr(request.certificate.pem, end);
        assert_non_null(leaf_end);
        chain = strdup(leaf_end + strlen(end));
    }
    free(request.certificate.pem);
    return chain;
}

static void test_hub_pems(void **state)
{
    struct fixture *f = *state;
    struct signer *signer = create(f, 1, 4);
    char *intermediate = to_pem(NULL, f->intermediate);
    char *root = to_pem(NULL, f->root);
    char *rsa_root = to_pem(NULL, f->rsa_root);
    char *chains[3] = {hub_chain_pem(f, signer, 0), hub_chain_pem(f, signer, 1),
                       hub_chain_pem(f, signer, 2)};

    assert_string_equal(chains[0], intermediate);
    assert_string_equal(signer_hub_root_pem(signer, 0), root);
    assert_string_equal(chains[1], "");
    assert_string_equal(signer_hub_root_pem(signer, 1), rsa_root);
    assert_null(chains[2]);
    assert_null(signer_hub_root_pem(signer, 2));
    free(chains[0]);
    free(chains[1]);
    free(intermediate);
    free(root);
    free(rsa_root);
    signer_destroy(signer);
}

/* With the only worker held, exactly queue_limit requests wait; the next gets -EAGAIN. */
static void test_queue_full(void **state)
{
    struct fixture *f = *state;
    struct signer *signer = create(f, 1, 4);
    struct signer_request requests[7];
    struct completion completion;
    time_t now = time(NULL);

    completion_init(&completion);
    for (size_t i = 0; i < 7; i++)
        prepare(f, &requests[i], 1, &completion, now);
    hold_worker(signer, &requests[0], &completion);
    for (size_t i = 1; i <= 4; i++)
        assert_int_equal(signer_submit(signer, &requests[i]), 0);
    assert_int_equal(signer_submit(signer, &requests[5]), -EAGAIN);
    struct signer_stats stats;
    signer_get_stats(signer, &stats);
    assert_int_equal(stats.queue_depth, 4);
    release_worker(&completion);
    completion_wait(&completion, 5);
    assert_int_equal(signer_submit(signer, &requests[6]), 0);
    completion_wait(&completion, 6);
    for (size_t i = 0; i < 7; i++) {
        if (i == 5) {
            assert_null(requests[i].token);
            continue;
        }
        assert_int_equal(requests[i].status, 0);
        assert_non_null(requests[i].token);
        free(requests[i].token);
    }
    signer_destroy(signer);
}

/*
 * 10000 submissions into a queue of 4 served by one free-running worker: a
 * signature takes far longer than a submission, so the queue fills; every
 * accepted request still completes exactly once.
 */
static void test_queue_full_under_load(void **state)
{
    struct fixture *f = *state;
    struct signer *signer = create(f, 1, 4);
    enum { COUNT = 10000 };
    struct signer_request *requests = calloc(COUNT, sizeof(*requests));
    bool *accepted = calloc(COUNT, sizeof(*accepted));
    struct completion completion;
    size_t accepted_count = 0;
    time_t now = time(NULL);

    completion_init(&completion);
    for (size_t i = 0; i < COUNT; i++) {
        prepare(f, &requests[i], 1, &completion, now);
        int status = signer_submit(signer, &requests[i]);
        if (status == 0) {
            accepted[i] = true;
            accepted_count++;
        } else {
            assert_int_equal(status, -EAGAIN);
        }
    }
    assert_true(accepted_count < COUNT);
    assert_true(accepted_count >= 4);
    completion_wait(&completion, accepted_count);
    for (size_t i = 0; i < COUNT; i++) {
        if (!accepted[i]) {
            assert_null(requests[i].token);
            continue;
        }
        assert_int_equal(requests[i].status, 0);
        assert_non_null(requests[i].token);
        free(requests[i].token);
    }
    struct signer_stats stats;
    signer_get_stats(signer, &stats);
    assert_int_equal(stats.requests, accepted_count);
    signer_destroy(signer);
    assert_int_equal(completion.done, accepted_count);
    free(accepted);
    free(requests);
}

/* Destroy finishes what is queued before it returns. */
static void test_destroy_drains_queue(void **state)
{
    struct fixture *f = *state;
    struct signer *signer = create(f, 1, 1000);
    enum { COUNT = 300 };
    struct signer_request *requests = calloc(COUNT, sizeof(*requests));
    struct completion completion;
    struct signer_stats stats;
    pthread_t releaser;
    time_t now = time(NULL);

    completion_init(&completion);
    for (size_t i = 0; i < COUNT; i++)
        prepare(f, &requests[i], i, &completion, now);
    hold_worker(signer, &requests[0], &completion);
    for (size_t i = 1; i < COUNT; i++)
        assert_int_equal(signer_submit(signer, &requests[i]), 0);
    signer_get_stats(signer, &stats);
    assert_int_equal(stats.queue_depth, COUNT - 1);
    pthread_create(&releaser, NULL, release_later, &completion);
    signer_destroy(signer);
    assert_int_equal(completion.done, COUNT);
    pthread_join(releaser, NULL);
    for (size_t i = 0; i < COUNT; i++) {
        if (requests[i].status != 0)
            fail_msg("request %zu failed: %s", i, requests[i].error);
        free(requests[i].token);
        free(requests[i].certificate.pem);
    }
    free(requests);
}

/* A backed-up queue is taken 32 requests at a time. */
static void test_batches(void **state)
{
    struct fixture *f = *state;
    struct signer *signer = create(f, 1, 1000);
    enum { COUNT = 1 + 639 };
    struct signer_request *requests = calloc(COUNT, sizeof(*requests));
    struct completion completion;
    struct signer_stats stats;
    time_t now = time(NULL);

    completion_init(&completion);
    for (size_t i = 0; i < COUNT; i++)
        prepare(f, &requests[i], 1, &completion, now);
    hold_worker(signer, &requests[0], &completion);
    for (size_t i = 1; i < COUNT; i++)
        assert_int_equal(signer_submit(signer, &requests[i]), 0);
    release_worker(&completion);
    completion_wait(&completion, COUNT);
    signer_get_stats(signer, &stats);
    assert_int_equal(stats.requests, COUNT);
    /* The held request's batch, then 639 waiting requests in batches of 32. */
    assert_int_equal(stats.batches, 1 + (639 + 31) / 32);
    assert_int_equal(stats.queue_depth, 0);
    signer_destroy(signer);
    for (size_t i = 0; i < COUNT; i++)
        free(requests[i].token);
    free(requests);
}

/*
 * A submit signals a worker only when none was signalled since a worker last
 * took a batch: no request may be left queued with every worker asleep.
 * Requests submitted while the only worker is busy (the signal finds nobody
 * waiting) are taken when it is done, with no later submit to wake it; single
 * requests each find the workers asleep again; a burst of more than a batch
 * wakes a second worker for the rest. Each wait would time out on a lost
 * wake-up.
 */
static void test_wake_ups_are_not_lost(void **state)
{
    struct fixture *f = *state;
    enum { ROUNDS = 200, BURST = 2 * 32 + 1 };
    struct signer_request *requests = calloc(1 + BURST, sizeof(*requests));
    struct completion completion;
    time_t now = time(NULL);

    struct signer *signer = create(f, 1, 1000);
    completion_init(&completion);
    for (size_t i = 0; i < 3; i++)
        prepare(f, &requests[i], 1, &completion, now);
    hold_worker(signer, &requests[0], &completion);
    assert_int_equal(signer_submit(signer, &requests[1]), 0);
    assert_int_equal(signer_submit(signer, &requests[2]), 0);
    release_worker(&completion);
    assert_true(completion_wait_for(&completion, 3, 30));
    signer_destroy(signer);
    for (size_t i = 0; i < 3; i++)
        free(requests[i].token);

    signer = create(f, 2, 1000);
    completion_init(&completion);
    completion.held = false;
    for (size_t round = 0; round < ROUNDS; round++) {
        prepare(f, &requests[0], 1, &completion, now);
        assert_int_equal(signer_submit(signer, &requests[0]), 0);
        if (!completion_wait_for(&completion, round + 1, 30))
            fail_msg("request %zu was never taken", round);
        free(requests[0].token);
    }
    for (size_t i = 0; i < BURST; i++)
        prepare(f, &requests[i], 1, &completion, now);
    for (size_t i = 0; i < BURST; i++)
        assert_int_equal(signer_submit(signer, &requests[i]), 0);
    assert_true(completion_wait_for(&completion, ROUNDS + BURST, 30));
    signer_destroy(signer);
    for (size_t i = 0; i < BURST; i++) {
        assert_int_equal(requests[i].status, 0);
        free(requests[i].token);
    }
    free(requests);
}

static void test_request_errors(void **state)
{
    struct fixture *f = *state;
    struct signer *signer = create(f, 1, 4);
    struct signer_request requests[3];
    struct completion completion;
    time_t now = time(NULL);

    completion_init(&completion);
    prepare(f, &requests[0], 0, &completion, now);
    requests[0].hub_index = 7;
    prepare(f, &requests[1], 0, &completion, now);
    requests[1].spki_length = 10;
    prepare(f, &requests[2], 1, &completion, now);
    requests[2].owner = NULL;
    for (int i = 0; i < 3; i++)
        assert_int_equal(signer_submit(signer, &requests[i]), 0);
    completion_wait(&completion, 3);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(requests[i].status, -1);
        assert_null(requests[i].certificate.pem);
        assert_null(requests[i].token);
    }
    assert_string_equal(requests[0].error, "unknown hub 7");
    assert_string_equal(requests[1].error, "certificate key is not a DER SubjectPublicKeyInfo");
    assert_string_equal(requests[2].error, "token request without an owner");
    signer_destroy(signer);
}

static void expect_create_failure(struct fixture *f, const char *named_file)
{
    char err[512] = "";

    assert_null(signer_create(&f->config, 2, 16, err, sizeof(err)));
    if (strstr(err, named_file) == NULL)
        fail_msg("error \"%s\" does not name %s", err, named_file);
}

static void test_bad_key_files(void **state)
{
    struct fixture *f = *state;
    char missing[160];

    snprintf(missing, sizeof(missing), "%s/missing.key", f->dir);
    f->hubs[1].token_key_file = missing;
    expect_create_failure(f, missing);
    f->hubs[1].token_key_file = f->files[TOKEN_RSA];
    /* The RSA CA's key given for the EC intermediate. */
    f->hubs[0].ca_key_file = f->files[RSA_KEY];
    expect_create_failure(f, f->files[RSA_KEY]);
    f->hubs[0].ca_key_file = f->files[CHAIN_KEY];
    /* A certificate file given as the token key. */
    f->hubs[0].token_key_file = f->files[CHAIN_FILE];
    expect_create_failure(f, f->files[CHAIN_FILE]);
    f->hubs[0].token_key_file = f->files[TOKEN_EC];

    char err[128] = "";
    assert_null(signer_create(&f->config, 1, 0, err, sizeof(err)));
    assert_string_equal(err, "signer queue limit must be at least 1");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_concurrent_requests),
        cmocka_unit_test(test_hub_pems),
        cmocka_unit_test(test_queue_full),
        cmocka_unit_test(test_queue_full_under_load),
        cmocka_unit_test(test_destroy_drains_queue),
        cmocka_unit_test(test_batches),
        cmocka_unit_test(test_request_errors),
        cmocka_unit_test(test_bad_key_files),
        cmocka_unit_test(test_wake_ups_are_not_lost),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}

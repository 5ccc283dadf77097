/*
 * loadgen_device: the simulated device's state machine. A device is fed
 * ciphertext (device_feed) and leaves its ciphertext output in its TLS
 * connection (tls_conn_output); a driver (loadgen_sequential.c, one device
 * at a time, or loadgen_fleet.c, many on event loops) owns sockets, time
 * and retries. The machine walks its plan: a fresh device makes two
 * connections, the time request, then ownership, cloud configuration,
 * credentials (CSR for a fresh P-256 key), ACLs and the initial resources;
 * a renewal makes one connection with only the credentials request. What
 * each request holds and how a response is checked is loadgen_wire.c.
 */
#include "perf/loadgen_device.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>

#include "crypto/pki.h"
#include "crypto/uuid.h"
#include "dataplane/coap_tcp.h"
#include "dataplane/tls.h"
#include "perf/loadgen_der.h"
#include "perf/loadgen_wire.h"

#define DEFAULT_MAX_AGE 60 /* CoAP's default Max-Age, seconds */
#define TRANSIENT_LIMIT 3  /* 5.03/5.04 in a row before the device starts over */

/* The connections a device makes, each a list of steps. */

static const enum dps_step first_connection[] = {STEP_TIME};
static const enum dps_step second_connection[] = {STEP_OWNERSHIP, STEP_CLOUD, STEP_CREDENTIALS,
                                                  STEP_ACLS, STEP_RESOURCES};
static const enum dps_step renewal_connection[] = {STEP_CREDENTIALS};

static const struct connection_plan provisioning_plan[] = {
    {first_connection, 1},
    {second_connection, 5},
};
static const struct connection_plan renewal_plan[] = {
    {renewal_connection, 1},
};
static const struct connection_plan time_plan[] = {
    {first_connection, 1},
};
static const struct connection_plan handshake_plan[] = {
    {NULL, 0},
};

void device_fail_class(struct device *device, enum error_class class, const char *format, ...)
{
    va_list arguments;

    if (device->state == DEVICE_FAILED)
        return;
    device->error_class = class;
    va_start(arguments, format);
    vsnprintf(device->error, sizeof(device->error), format, arguments);
    va_end(arguments);
    device->state = DEVICE_FAILED;
}

enum dps_step device_current_step(const struct device *device)
{
    return device->plan[device->connection].steps[device->position];
}

static void device_next_step(struct device *device)
{
    device->position++;
    if (device->position < device->plan[device->connection].step_count) {
        device_send_request(device);
        return;
    }
    tls_conn_shutdown(device->tls);
    device->state = DEVICE_CONNECTION_DONE;
}

static void device_handle_response(struct device *device, const struct coap_message *message)
{
    enum dps_step step = device_current_step(device);
    const char *name = dps_step_routes[step].name;
    const struct options *options = device->options;
    char code[8], reason[384];

    if (message->token_length != sizeof(device->token) ||
        memcmp(message->token, device->token, sizeof(device->token)) != 0) {
        device_fail_class(device, ERROR_VALIDATION,
                          "%s: response token does not echo the request's", name);
        return;
    }
    device->answered[step] = true;
    device->codes[step] = message->code;
    if (device->hooks != NULL)
        device->hooks->response(device, step, message->code);
    format_code(message->code, code);
    if (options->verbose)
        fprintf(stderr, "device %s <- %s %s (%zu bytes payload)\n", device->number, code, name,
                message->payload_length);
    if (options->expect_step == (int)step) {
        char expected[8];
        format_code(options->expect_code, expected);
        if (message->code != options->expect_code) {
            device_fail(device, "%s: got %s, expected %s", name, code, expected);
            return;
        }
        device->expected_seen = true;
        if (message->code >= COAP_BAD_REQUEST) {
            device->state = DEVICE_FINISHED; /* the device would start over here */
            return;
        }
    }
    bool not_found_ok = step == STEP_RESOURCES && message->code == COAP_NOT_FOUND;
    bool transient =
        message->code == COAP_SERVICE_UNAVAILABLE || message->code == COAP_GATEWAY_TIMEOUT;
    if (transient && device->retry_transient && ++device->transient_in_a_row < TRANSIENT_LIMIT) {
        const struct coap_option *option = coap_message_option(message, COAP_OPTION_MAX_AGE);
        uint32_t max_age = DEFAULT_MAX_AGE;
        if (option != NULL && coap_option_uint(option, &max_age) != 0)
            max_age = DEFAULT_MAX_AGE;
        device->retry_after_ms = max_age > 86400 ? 86400000u : max_age * 1000u;
        device->state = DEVICE_RETRY_WAIT;
        return;
    }
    if (message->code != wire_success_code(step) && !not_found_ok) {
        device_fail_class(device, ERROR_COAP, "%s: %s \"%.*s\"", name, code,
                          (int)message->payload_length,
                          message->payload != NULL ? (const char *)message->payload : "");
        return;
    }
    device->transient_in_a_row = 0;
    if (!not_found_ok && wire_check_payload(device, step, message, reason, sizeof(reason)) != 0) {
        device_fail_class(device, ERROR_VALIDATION, "%s", reason);
        return;
    }
    device_next_step(device);
}

static void device_handle_signal(struct device *device, const struct coap_message *message)
{
    uint8_t frame[64];
    long length;

    switch (message->code) {
    case COAP_SIGNAL_PING:
        length = coap_tcp_encode(frame, sizeof(frame), COAP_SIGNAL_PONG, message->token,
                                 message->token_length, NULL, 0, NULL, 0);
        if (length > 0)
            device_send_frame(device, frame, (size_t)length);
        break;
    case COAP_SIGNAL_RELEASE:
        device_fail(device, "server sent Release");
        break;
    case COAP_SIGNAL_ABORT:
        device_fail(device, "server sent Abort");
        break;
    default:
        break; /* CSM and Pong need no answer */
    }
}

/* Splits the plaintext stream into CoAP frames and handles each. */
static void device_process_frames(struct device *device)
{
    size_t offset = 0;

    while (device->state == DEVICE_WAITING && offset < device->received_length) {
        const uint8_t *data = device->received + offset;
        size_t available = device->received_length - offset;
        size_t frame_length;
        struct coap_message message;
        int status = coap_tcp_frame_length(data, available, RECEIVE_CAPACITY, &frame_length);

        if (status == COAP_NEED_MORE || (status == COAP_OK && frame_length > available))
            break;
        if (status != COAP_OK) {
            device_fail_class(device, ERROR_VALIDATION, "unreadable CoAP frame from the server");
            return;
        }
        if (frame_length < 6) {
            device_fail_class(device, ERROR_VALIDATION,
                              "server message of %zu bytes (the client reads 6 first)",
                              frame_length);
            return;
        }
        if (coap_tcp_decode(data, frame_length, &message) != COAP_OK) {
            device_fail_class(device, ERROR_VALIDATION, "malformed CoAP message from the server");
            return;
        }
        offset += frame_length;
        if (message.payload_length > MAX_PAYLOAD) {
            device_fail_class(device, ERROR_VALIDATION,
                              "server message with %zu bytes of payload (limit %d)",
                              message.payload_length, MAX_PAYLOAD);
            return;
        }
        if (message.code >= COAP_SIGNAL_CSM)
            device_handle_signal(device, &message);
        else if (message.code >= COAP_CREATED)
            device_handle_response(device, &message);
        else
            device_fail_class(device, ERROR_VALIDATION, "server sent a request (code %#x)",
                              message.code);
    }
    memmove(device->received, device->received + offset, device->received_length - offset);
    device->received_length -= offset;
}

/* ---- the per-device machine's interface to a driver ---- */

static void device_advance(struct device *device)
{
    if (device->state == DEVICE_HANDSHAKE) {
        int result = tls_conn_handshake(device->tls);
        if (result == TLS_AGAIN)
            return;
        if (result != TLS_DONE) {
            device_fail_class(device, ERROR_TLS, "TLS handshake: %s", tls_conn_error(device->tls));
            return;
        }
        snprintf(device->tls_version, sizeof(device->tls_version), "%s",
                 tls_conn_version(device->tls));
        snprintf(device->tls_cipher, sizeof(device->tls_cipher), "%s",
                 tls_conn_cipher(device->tls));
        if (device->hooks != NULL)
            device->hooks->handshake_done(device);
        if (device->plan[device->connection].step_count == 0) {
            tls_conn_shutdown(device->tls);
            device->state = DEVICE_CONNECTION_DONE;
            return;
        }
        device_send_request(device);
    }
    while (device->state == DEVICE_WAITING) {
        size_t room = sizeof(device->received) - device->received_length;
        if (room == 0) {
            device_fail_class(device, ERROR_VALIDATION,
                              "server message larger than the client's buffer");
            return;
        }
        int got = tls_conn_read(device->tls, device->received + device->received_length, room);
        if (got == TLS_AGAIN)
            return;
        if (got == TLS_CLOSED) {
            device_fail_class(device, ERROR_CLOSED,
                              "%s: server closed the TLS session before answering",
                              dps_step_routes[device_current_step(device)].name);
            return;
        }
        if (got < 0) {
            device_fail_class(device, ERROR_TLS, "TLS read: %s", tls_conn_error(device->tls));
            return;
        }
        device->received_length += (size_t)got;
        device_process_frames(device);
    }
}

void device_connection_start(struct device *device)
{
    device->tls = tls_conn_new(device->ctx, false, device);
    device->received_length = 0;
    if (device->tls == NULL) {
        device_fail(device, "out of memory");
        return;
    }
    device->state = DEVICE_HANDSHAKE;
    device_advance(device);
}

void device_feed(struct device *device, const uint8_t *data, size_t length)
{
    if (tls_conn_feed(device->tls, data, length) != 0) {
        device_fail(device, "out of memory");
        return;
    }
    device_advance(device);
}

void device_peer_closed(struct device *device)
{
    if (device->state == DEVICE_HANDSHAKE)
        device_fail_class(device, ERROR_CLOSED, "connection closed during the TLS handshake");
    else if (device->state == DEVICE_WAITING)
        device_fail_class(device, ERROR_CLOSED, "%s: connection closed before the response",
                          dps_step_routes[device_current_step(device)].name);
}

/* Called when a connection has ended: the next one, or the device is done. */
void device_connection_end(struct device *device)
{
    tls_conn_free(device->tls);
    device->tls = NULL;
    if (device->state != DEVICE_CONNECTION_DONE)
        return;
    device->connection++;
    device->position = 0;
    device->state =
        device->connection < device->plan_length ? DEVICE_CONNECTION_DONE : DEVICE_FINISHED;
}

/* ---- setting a device up and recording its result ---- */

static EVP_PKEY *load_key(const char *path)
{
    BIO *bio = BIO_new_file(path, "r");
    EVP_PKEY *key = bio != NULL ? PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL) : NULL;
    BIO_free(bio);
    ERR_clear_error();
    return key;
}

void device_output_dir(const struct device *device, char *out, size_t capacity)
{
    snprintf(out, capacity, "%s/device-%s", device->options->out_dir, device->number);
}

/* A fresh CSR key, unless one was loaded, and its SubjectPublicKeyInfo. */
static int device_key_ready(struct device *device)
{
    if (device->key == NULL && EVP_PKEY_generate(device->kit->keygen, &device->key) != 1) {
        ERR_clear_error();
        device_fail(device, "cannot create the device key");
        return -1;
    }
    if (spki_p256(device->key, device->spki) != 0) {
        ERR_clear_error();
        device_fail(device, "the device key is not an uncompressed P-256 key");
        return -1;
    }
    return 0;
}

/* What both drivers' devices start from: zeroed, numbered, their clock started. */
static void device_clear(struct device *device, const struct options *options, unsigned index,
                         struct device_kit *kit)
{
    memset(device, 0, sizeof(*device));
    device->options = options;
    device->kit = kit;
    device->index = index;
    clock_gettime(CLOCK_MONOTONIC, &device->started);
    snprintf(device->number, sizeof(device->number), "%04u", index);
}

int device_init(struct device *device, const struct options *options, unsigned index,
                struct device_kit *kit)
{
    char cert[4096], key[4096], err[256], name[64], path[4200];
    const char *ca = options->ca_file;
    char default_ca[4096];

    device_clear(device, options, index, kit);
    if (options->di != NULL) {
        snprintf(device->di, sizeof(device->di), "%s", options->di);
    } else {
        struct dps_uuid uuid;
        int length = snprintf(name, sizeof(name), "dps-loadgen-device-%s", device->number);
        uuid_v5(&UUID_NAMESPACE_URL, name, (size_t)length, &uuid);
        uuid_format(&uuid, device->di);
    }
    device->plan = options->renew ? renewal_plan : provisioning_plan;
    device->plan_length = options->renew ? 1 : 2;
    device->owns_ctx = true;
    if (pki_ensure_device(options->pki_dir, index, err, sizeof(err)) != 0) {
        device_fail(device, "device files: %s", err);
        return -1;
    }
    if (pki_device_path(options->pki_dir, index, ".pem", cert, sizeof(cert)) != 0 ||
        pki_device_path(options->pki_dir, index, ".key", key, sizeof(key)) != 0) {
        device_fail(device, "device files: the path under %s is too long", options->pki_dir);
        return -1;
    }
    if (ca == NULL) {
        snprintf(default_ca, sizeof(default_ca), "%s/dps-root.pem", options->pki_dir);
        ca = default_ca;
    }
    device->ctx = tls_client_context(kit->libctx, cert, key, ca, err, sizeof(err));
    if (device->ctx == NULL) {
        device_fail(device, "%s", err);
        return -1;
    }
    SSL_CTX_set_cert_verify_callback(device->ctx, device_kit_verify_server, kit);
    if (options->renew && options->out_dir != NULL) {
        device_output_dir(device, path, sizeof(path));
        strncat(path, "/key.pem", sizeof(path) - strlen(path) - 1);
        device->key = load_key(path);
    }
    return device_key_ready(device);
}

static const struct connection_plan *scenario_plan(enum scenario scenario, size_t *length)
{
    switch (scenario) {
    case SCENARIO_RENEW:
        *length = 1;
        return renewal_plan;
    case SCENARIO_HANDSHAKE:
        *length = 1;
        return handshake_plan;
    case SCENARIO_TIME:
        *length = 1;
        return time_plan;
    default:
        *length = 2;
        return provisioning_plan;
    }
}

bool scenario_sends_csr(enum scenario scenario)
{
    return scenario != SCENARIO_HANDSHAKE && scenario != SCENARIO_TIME;
}

int device_init_fleet(struct device *device, const struct options *options, unsigned index,
                      const char *di, enum scenario scenario, SSL_CTX *ctx, struct device_kit *kit,
                      const struct device_hooks *hooks, struct device_csr *csr)
{
    device_clear(device, options, index, kit);
    device->hooks = hooks;
    device->ctx = ctx;
    device->retry_transient = true;
    snprintf(device->di, sizeof(device->di), "%s", di);
    device->plan = scenario_plan(scenario, &device->plan_length);
    if (!scenario_sends_csr(scenario))
        return 0;
    if (csr != NULL && csr->pem != NULL) {
        device->csr_pem = csr->pem;
        csr->pem = NULL;
        memcpy(device->spki, csr->spki, sizeof(device->spki));
        return 0;
    }
    return device_key_ready(device);
}

void device_restart(struct device *device)
{
    tls_conn_free(device->tls);
    device->tls = NULL;
    device->connection = 0;
    device->position = 0;
    device->transient_in_a_row = 0;
    device->error_class = ERROR_NONE;
    device->error[0] = '\0';
    device->expected_seen = false;
    memset(device->answered, 0, sizeof(device->answered));
    device->state = DEVICE_CONNECTION_DONE;
}

void device_free(struct device *device)
{
    tls_conn_free(device->tls);
    if (device->owns_ctx)
        SSL_CTX_free(device->ctx);
    EVP_PKEY_free(device->key);
    free(device->csr_pem);
    free(device->identity_pem);
    free(device->trustca_pem);
}

bool device_succeeded(const struct device *device)
{
    if (device->state != DEVICE_FINISHED)
        return false;
    return device->options->expect_step < 0 || device->expected_seen;
}

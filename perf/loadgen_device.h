/*
 * loadgen_device: the simulated device shared by dps-loadgen's two drivers,
 * the sequential one (loadgen_sequential.c: one device at a time, poll())
 * and the fleet engine (loadgen_fleet.c: many devices on event loops, one
 * per thread).
 *
 * A device is a state machine fed with ciphertext (device_feed) whose
 * ciphertext output waits in its TLS connection (tls_conn_output). The
 * driver owns sockets, time and retries; the device owns the protocol and
 * the checks the real client makes on every response.
 */
#ifndef DPS_LOADGEN_DEVICE_H
#define DPS_LOADGEN_DEVICE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <openssl/types.h>

#include "common/steps.h"
#include "crypto/uuid.h"
#include "perf/loadgen_der.h"
#include "perf/loadgen_kit.h"
#include "perf/loadgen_options.h"
#include "perf/loadgen_stats.h"

#define MAX_PAYLOAD 8192 /* the device's receive limit (PROTOCOL.md 1) */
#define RECEIVE_CAPACITY (MAX_PAYLOAD + 1024)

enum device_state {
    DEVICE_HANDSHAKE,
    DEVICE_WAITING,         /* a request is out, its response not yet in */
    DEVICE_CONNECTION_DONE, /* this connection's steps are done; close it */
    DEVICE_RETRY_WAIT,      /* 5.03/5.04: send the same step again after retry_after_ms */
    DEVICE_FINISHED,        /* every step done (or the expected failure seen) */
    DEVICE_FAILED,
};

struct connection_plan {
    const enum dps_step *steps;
    size_t step_count;
};

struct device;

/* What the fleet engine wants to hear about, for its measurements. */
struct device_hooks {
    void (*handshake_done)(struct device *device);
    void (*request_sent)(struct device *device, enum dps_step step);
    void (*response)(struct device *device, enum dps_step step, uint8_t code);
    /* An identity certificate passed every check; its serial's content octets. */
    void (*identity)(struct device *device, const uint8_t *serial, size_t serial_length);
};

struct device {
    const struct options *options;
    const struct device_hooks *hooks; /* NULL in the sequential driver */
    struct device_kit *kit;
    unsigned index;
    char number[16]; /* "0001" */
    char di[UUID_STRING_LENGTH + 1];
    EVP_PKEY *key;                  /* the CSR key; NULL when the CSR was prepared */
    uint8_t spki[SPKI_P256_LENGTH]; /* its SubjectPublicKeyInfo */
    char *csr_pem;                  /* a prepared CSR (owned), sent as is; NULL: made in line */
    SSL_CTX *ctx;
    bool owns_ctx;
    bool retry_transient; /* 5.03/5.04 mean "wait and send the step again" */
    struct tls_conn *tls;
    enum device_state state;
    enum error_class error_class;
    const struct connection_plan *plan;
    size_t plan_length;
    size_t connection; /* index into plan */
    size_t position;   /* index into the connection's steps */
    unsigned transient_in_a_row;
    unsigned retry_after_ms;
    uint8_t token[8];
    uint8_t received[RECEIVE_CAPACITY];
    size_t received_length;
    bool answered[STEP_COUNT];
    uint8_t codes[STEP_COUNT];
    bool expected_seen;
    char error[512];
    char tls_version[16];
    char tls_cipher[64];
    char owner[UUID_STRING_LENGTH + 1];
    /* From the cloud configuration, kept whole or refused (a longer one fails the step). */
    char cis[288]; /* any gateway dpsd accepts: coaps+tcp://[255-byte host]:PORT */
    char sid[128];
    char apn[128];
    char *identity_pem;
    char *trustca_pem;
    struct timespec started;
};

void device_fail_class(struct device *device, enum error_class class, const char *format, ...)
    __attribute__((format(printf, 3, 4)));
#define device_fail(device, ...) device_fail_class(device, ERROR_OTHER, __VA_ARGS__)

/*
 * Sets a sequential device up: its id (--di or one derived from its index),
 * its PKI files, its own SSL_CTX, and a CSR key (with --renew, the one an
 * earlier --out run saved). 0 or -1 (device failed).
 */
int device_init(struct device *device, const struct options *options, unsigned index,
                struct device_kit *kit);
/* A CSR made before it is needed (loadgen_prepare.c): the PEM text and its key's SPKI. */
struct device_csr {
    char *pem; /* NULL: none */
    uint8_t spki[SPKI_P256_LENGTH];
};

/*
 * Sets a fleet device up: its id, its scenario's plan, ctx (shared, not
 * owned) and, when its scenario sends a CSR, either csr (taken over: csr->pem
 * is the device's from now on and csr->pem is set to NULL) or, when csr is
 * NULL or empty, a fresh CSR key made with the thread's kit (the CSR itself
 * is then signed when the request is sent). 0 or -1 (device failed).
 */
int device_init_fleet(struct device *device, const struct options *options, unsigned index,
                      const char *di, enum scenario scenario, SSL_CTX *ctx, struct device_kit *kit,
                      const struct device_hooks *hooks, struct device_csr *csr);
/* Whether a device of this scenario sends a CSR. */
bool scenario_sends_csr(enum scenario scenario);
/* Back to step 1 of the first connection, keeping identity and CSR key. */
void device_restart(struct device *device);

void device_connection_start(struct device *device); /* at the current position */
void device_feed(struct device *device, const uint8_t *data, size_t length);
/* Sends the current step's request (loadgen_wire.c). */
void device_send_request(struct device *device);
void device_peer_closed(struct device *device);
void device_connection_end(struct device *device);
bool device_succeeded(const struct device *device);
void device_free(struct device *device);
enum dps_step device_current_step(const struct device *device);
/* --out's folder for this device: OUT/device-NNNN. */
void device_output_dir(const struct device *device, char *out, size_t capacity);

#endif

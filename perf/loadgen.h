/*
 * loadgen: the simulated device shared by dps-loadgen's two drivers, the
 * sequential one in loadgen.c (one device at a time, poll()) and the fleet
 * engine in loadgen_fleet.c (many devices on event loops, one per thread).
 *
 * A device is a state machine fed with ciphertext (device_feed) whose
 * ciphertext output waits in its TLS connection (tls_conn_output). The
 * driver owns sockets, time and retries; the device owns the protocol and
 * the checks the real client makes on every response.
 */
#ifndef DPS_LOADGEN_H
#define DPS_LOADGEN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

#include <openssl/types.h>

#include "crypto/uuid.h"
#include "dataplane/loop.h"
#include "perf/loadgen_der.h"
#include "perf/loadgen_stats.h"

#define MAX_PAYLOAD 8192 /* the device's receive limit (PROTOCOL.md 1) */
#define RECEIVE_CAPACITY (MAX_PAYLOAD + 1024)
#define MAX_ENDPOINTS 16
/*
 * --pki, --out and --ca: at most this many bytes, so every path built under
 * them (the longest suffix, "/device-NNNNNNNNNN/identity.pem", is 31 bytes)
 * fits the 4096-byte path buffers whole; longer ones are refused at parsing.
 */
#define MAX_FOLDER_LENGTH 4000
#define MAX_TIMEOUT_S 3600 /* --timeout, seconds */

enum step {
    STEP_TIME,
    STEP_OWNERSHIP,
    STEP_CLOUD,
    STEP_CREDENTIALS,
    STEP_ACLS,
    STEP_RESOURCES,
    STEP_COUNT,
};

extern const struct step_info {
    const char *name;
    uint8_t method;
    const char *path;
} step_info[STEP_COUNT];

/* What a simulated device does: --scenario and --mix. */
enum scenario {
    SCENARIO_FULL,      /* the whole fresh-device flow, two connections */
    SCENARIO_RENEW,     /* one connection, POST credentials only */
    SCENARIO_HANDSHAKE, /* mutual-TLS handshake, then close */
    SCENARIO_TIME,      /* the first connection only: GET time */
    SCENARIO_COUNT,
};

extern const char *const scenario_names[SCENARIO_COUNT];

struct endpoint {
    char host[256];
    char port[16];
};

struct options {
    struct endpoint endpoints[MAX_ENDPOINTS];
    unsigned endpoint_count;
    const char *pki_dir;
    const char *ca_file;
    const char *out_dir;
    const char *di;
    unsigned devices; /* 0 in fleet mode: until --duration ends */
    unsigned first;
    bool renew;
    bool verbose;
    bool json;
    int timeout_ms;
    int expect_step; /* -1: none */
    uint8_t expect_code;
    /* Fleet mode (--concurrency or --rate): loadgen_fleet.c. */
    bool fleet;
    unsigned concurrency; /* closed loop: devices in flight; 0 with --rate */
    double rate;          /* open loop: devices started per second */
    double ramp_seconds;
    double duration_seconds; /* 0: until --devices are done */
    unsigned threads;
    uint64_t seed;
    unsigned mix[SCENARIO_COUNT]; /* weights */
    double backoff_scale;
    unsigned max_attempts;
    unsigned drop_every; /* every Nth device drops its connection once mid-step; 0: none */
    const char *report_path;
    bool progress;
    enum loop_backend backend;
};

enum device_state {
    DEVICE_HANDSHAKE,
    DEVICE_WAITING,         /* a request is out, its response not yet in */
    DEVICE_CONNECTION_DONE, /* this connection's steps are done; close it */
    DEVICE_RETRY_WAIT,      /* 5.03/5.04: send the same step again after retry_after_ms */
    DEVICE_FINISHED,        /* every step done (or the expected failure seen) */
    DEVICE_FAILED,
};

struct connection_plan {
    const enum step *steps;
    size_t step_count;
};

#define KIT_VERDICTS 8

/* Certificates the thread has already parsed in full and found valid (trust anchors,
 * intermediates). */
struct parsed_verdict {
    uint8_t *bytes; /* the exact bytes parsed: PEM text or concatenated DER */
    size_t length;
    time_t not_before, not_after; /* the window in which every one of them is valid */
};

/*
 * What one thread's devices share: CSR key generation and signing contexts
 * in the thread's library context, and the verdicts on certificates every
 * device receives alike (a trust anchor is parsed in full once, then its
 * bytes are compared and its validity window checked).
 */
struct device_kit {
    OSSL_LIB_CTX *libctx;
    EVP_PKEY_CTX *keygen;
    EVP_MD_CTX *sign;
    struct parsed_verdict verdicts[KIT_VERDICTS];
    unsigned verdict_count, verdict_next;
};

/* 0, or -1 when OpenSSL cannot make the contexts. libctx may be NULL (the default one). */
int device_kit_init(struct device_kit *kit, OSSL_LIB_CTX *libctx);
void device_kit_free(struct device_kit *kit);

/*
 * A client SSL_CTX's certificate verification (SSL_CTX_set_cert_verify_callback
 * with the kit as argument): X509_verify_cert against the context's trust
 * store, as the device does; a chain whose exact certificates this kit has
 * verified before is accepted again while all of them are within their
 * validity, without rebuilding and re-verifying it.
 */
int device_kit_verify_server(X509_STORE_CTX *store, void *kit);

struct device;

/* What the fleet engine wants to hear about, for its measurements. */
struct device_hooks {
    void (*handshake_done)(struct device *device);
    void (*request_sent)(struct device *device, enum step step);
    void (*response)(struct device *device, enum step step, uint8_t code);
};

struct device {
    const struct options *options;
    const struct device_hooks *hooks; /* NULL in the sequential driver */
    struct device_kit *kit;
    unsigned index;
    char number[16]; /* "0001" */
    char di[UUID_STRING_LENGTH + 1];
    EVP_PKEY *key;                  /* the CSR key */
    uint8_t spki[SPKI_P256_LENGTH]; /* its SubjectPublicKeyInfo */
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

/*
 * Sets a fleet device up: its id, its scenario's plan, a fresh CSR key made
 * with the thread's kit, and ctx (shared, not owned). 0 or -1 (device failed).
 */
int device_init_fleet(struct device *device, const struct options *options, unsigned index,
                      const char *di, enum scenario scenario, SSL_CTX *ctx, struct device_kit *kit,
                      const struct device_hooks *hooks);
/* Back to step 1 of the first connection, keeping identity and CSR key. */
void device_restart(struct device *device);

void device_connection_start(struct device *device); /* at the current position */
void device_feed(struct device *device, const uint8_t *data, size_t length);
void device_send_request(struct device *device);
void device_peer_closed(struct device *device);
void device_connection_end(struct device *device);
bool device_succeeded(const struct device *device);
void device_free(struct device *device);
enum step device_current_step(const struct device *device);
void format_code(uint8_t code, char out[8]);

/* What a fleet run measured; each worker thread fills its own, then they are merged. */
struct fleet_results {
    struct histogram end_to_end; /* first connect to success, retries and waits included */
    struct histogram handshake;  /* TCP connect + mutual-TLS handshake */
    struct histogram steps[STEP_COUNT];
    uint64_t started, succeeded, failed; /* devices */
    uint64_t attempts;                   /* starts from step 1, the first included */
    uint64_t restarts;                   /* start-overs after an error */
    uint64_t transient_retries;          /* a step sent again after 5.03/5.04 */
    uint64_t connections;
    uint64_t errors[ERROR_CLASS_COUNT]; /* failed attempts by class */
    uint64_t codes[256];                /* responses by CoAP code */
    uint64_t scenario_started[SCENARIO_COUNT];
    uint64_t scenario_succeeded[SCENARIO_COUNT];
};

/* The run as a whole, for the report. */
struct fleet_run_info {
    double wall_seconds;
    double throughput; /* devices succeeded per second (merged runs: the sum of the runs') */
    const char *const *merged_from; /* report files a merged report combines; NULL otherwise */
    size_t merged_count;
    double cpu_user_seconds, cpu_system_seconds;
    const char *backend;
    unsigned identities;
};

void fleet_results_init(struct fleet_results *results);
void fleet_results_merge(struct fleet_results *into, const struct fleet_results *from);

/* The human table on out, and the JSON report (perf/loadgen-report.schema.json). */
void fleet_report_table(FILE *out, const struct options *options,
                        const struct fleet_results *results, const struct fleet_run_info *info);
int fleet_report_write(const char *path, const struct options *options,
                       const struct fleet_results *results, const struct fleet_run_info *info);

/*
 * dps-loadgen merge [--report OUT.json] A.json B.json ...: combines the reports of
 * generators that ran at the same time (loadgen_merge.c). Returns the exit status.
 */
int merge_main(int argc, char **argv);

/* Adds coaps+tcp://HOST:PORT to options' endpoints. 0, or -1 when malformed or too many. */
int parse_endpoint(const char *text, struct options *options);

/* Runs the fleet (loadgen_fleet.c). Returns the process exit status. */
int fleet_run(const struct options *options);

#endif

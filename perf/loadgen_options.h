/*
 * loadgen_options: dps-loadgen's command line (loadgen_options.c), what
 * every driver reads and a report writes back: the endpoints, the PKI, the
 * sequential mode's devices and the fleet mode's concurrency, rate and
 * scenario mix.
 */
#ifndef DPS_LOADGEN_OPTIONS_H
#define DPS_LOADGEN_OPTIONS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "dataplane/loop.h"

#define MAX_ENDPOINTS 16
/*
 * --pki, --out and --ca: at most this many bytes, so every path built under
 * them (the longest suffix, "/device-NNNNNNNNNN/identity.pem", is 31 bytes)
 * fits the 4096-byte path buffers whole; longer ones are refused at parsing.
 */
#define MAX_FOLDER_LENGTH 4000
#define MAX_TIMEOUT_S 3600 /* --timeout, seconds */

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
    const char *issued_path; /* "DEVICE_ID SERIAL" per identity certificate received */
    bool progress;
    enum loop_backend backend;
    bool prepare_inline; /* --prepare inline: identities and CSRs made as devices start */
};

/* Fills options from dps-loadgen's arguments. 0, or -1 (print the usage, exit 2). */
int options_parse(int argc, char **argv, struct options *options);
void options_usage(FILE *out);

/* Adds coaps+tcp://HOST:PORT to options' endpoints. 0, or -1 when malformed or too many. */
int parse_endpoint(const char *text, struct options *options);
/* A decimal of at least minimum into value; 0, or -1 when it is not one. */
int parse_unsigned(const char *text, unsigned minimum, unsigned *value);
/* A --seed value; 0 or -1. */
int parse_seed(const char *text, uint64_t *seed);

#endif

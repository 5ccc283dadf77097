/*
 * loadgen_fleet: many simulated devices at once, on the project's event loop
 * (dataplane/loop.h), one loop per worker thread, as dps-loadgen's fleet
 * mode (--concurrency N: closed loop, N devices in flight; --rate R: open
 * loop, R devices started per second after a linear --ramp).
 *
 * Each worker has its own OSSL_LIB_CTX (lean_libctx_new, as a shard's), one client SSL_CTX (its
 * server chain verification remembers chains it verified) and one device kit (loadgen_kit.h: CSR
 * key and signing contexts, certificate verdicts); a device's manufacturer certificate and key
 * (from DIR/fleet-<seed>.bin) are put on its connection by a certificate callback, which finds the
 * device through a thread-local pointer set around every call into the device machine. Sockets
 * connect without blocking and are attached to the loop at once: the loop's first send waits until
 * the connection is up.
 *
 * A run's clock and CPU start when every worker is set up and, with --prepare ahead (the
 * default), has prepared the devices it will start (loadgen_prepare.h: identity objects, CSR);
 * the report gives the CPU spent before apart. A worker owns its prepared devices until a device
 * it starts takes its entry over.
 *
 * Retries follow the device client (PROTOCOL.md 4): 5.03/5.04 -> wait
 * Max-Age and send the same step again (the device machine counts the three
 * in a row after which it starts over); any other failure -> wait 10, 20,
 * 40, 80, 120 s (+-20% jitter, times --backoff-scale) and start over from
 * step 1, up to --max-attempts starts.
 */
#include <errno.h>
#include <math.h>
#include <netdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>

#include "crypto/lean_provider.h"
#include "dataplane/tls.h"
#include "perf/loadgen_device.h"
#include "perf/loadgen_fleet.h"
#include "perf/loadgen_identity.h"
#include "perf/loadgen_prepare.h"
#include "perf/loadgen_report.h"
#include "perf/loadgen_timers.h"

#define TICK_MS 5
#define TIMEOUT_CHECK_TICKS 10
#define PUBLISH_TICKS 200 /* every second */
#define MAX_FAILURE_LINES 20
#define PREPARE_LIMIT 100000 /* devices of a run prepared ahead; later ones start in line */

static const double backoff_seconds[] = {10, 20, 40, 80, 120};

struct worker;

enum wait_kind {
    WAIT_NONE,
    WAIT_RETRY_STEP, /* 5.03/5.04: the same step again */
    WAIT_RESTART,    /* after an error: step 1 again */
};

struct fleet_device {
    struct device device; /* first: the hooks get a struct device * */
    struct worker *worker;
    struct fleet_device *prev, *next; /* the worker's devices in flight */
    struct loop_conn *conn;
    X509 *certificate;
    EVP_PKEY *key;
    enum scenario scenario;
    unsigned endpoint;
    unsigned attempts;
    enum wait_kind waiting;
    unsigned requests_sent; /* in this attempt */
    unsigned drop_after;    /* --drop-every: drop once, after this many requests; 0: never */
    bool drop_now;
    uint64_t started_ns, connect_ns, request_ns, deadline_ns;
};

struct fleet;

struct worker {
    struct fleet *fleet;
    unsigned id;
    pthread_t thread;
    struct loop *loop;
    OSSL_LIB_CTX *libctx;
    struct device_kit kit;
    bool kit_ready;
    SSL_CTX *ctx;
    STACK_OF(X509) * chain;
    struct prepared_device *prepared; /* by launch order: the device of sequence i is i */
    uint64_t prepared_count;
    struct fleet_results results;
    struct fleet_device *active;
    struct timer_heap timers; /* of struct fleet_device * */
    uint64_t sequence;        /* devices this worker started */
    unsigned concurrency;
    double rate;
    bool launching_done;
    unsigned ticks;
    unsigned random_state; /* back-off jitter */
    char error[512];
    /* Read by the progress line from the main thread. */
    pthread_mutex_t lock;
    struct histogram published;
    atomic_uint_fast64_t started, finished, failed, in_flight, errors;
    atomic_bool done;
};

struct fleet {
    const struct options *options;
    struct fleet_identities *identities;
    unsigned identity_count;
    struct sockaddr_storage addresses[MAX_ENDPOINTS];
    socklen_t address_lengths[MAX_ENDPOINTS];
    uint64_t total_devices; /* 0: until --duration ends */
    uint64_t start_ns;
    unsigned mix_total;
    atomic_uint failure_lines;
    struct worker *workers;
    /* Workers report ready (set up and prepared), then wait for the clock to start. */
    pthread_mutex_t start_lock;
    pthread_cond_t start_changed;
    unsigned ready;
    bool started;
    FILE *issued; /* --issued: one line per identity certificate, written whole (stdio locks) */
};

static __thread struct fleet_device *current_device;

static uint64_t now_ns(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (uint64_t)now.tv_sec * 1000000000u + (uint64_t)now.tv_nsec;
}

static uint64_t elapsed_us(uint64_t since_ns)
{
    uint64_t now = now_ns();
    return now > since_ns ? (now - since_ns) / 1000 : 0;
}

/* ---- measurements from inside the device machine ---- */

static void hook_handshake_done(struct device *device)
{
    struct fleet_device *fleet_device = (struct fleet_device *)device;
    histogram_record(&fleet_device->worker->results.handshake,
                     elapsed_us(fleet_device->connect_ns));
}

static void hook_request_sent(struct device *device, enum dps_step step)
{
    struct fleet_device *fleet_device = (struct fleet_device *)device;
    (void)step;
    if (++fleet_device->requests_sent == fleet_device->drop_after)
        fleet_device->drop_now = true;
    fleet_device->request_ns = now_ns();
    fleet_device->deadline_ns =
        fleet_device->request_ns + (uint64_t)device->options->timeout_ms * 1000000u;
}

static void hook_response(struct device *device, enum dps_step step, uint8_t code)
{
    struct fleet_device *fleet_device = (struct fleet_device *)device;
    struct fleet_results *results = &fleet_device->worker->results;

    histogram_record(&results->steps[step], elapsed_us(fleet_device->request_ns));
    results->codes[code]++;
}

static void hook_identity(struct device *device, const uint8_t *serial, size_t serial_length)
{
    FILE *issued = ((struct fleet_device *)device)->worker->fleet->issued;
    char hex[2 * 21 + 1];

    if (issued == NULL || serial_length == 0)
        return;
    /* As the issuance log names it: lower-case hex of the content, no sign octet. */
    if (serial_length > 1 && serial[0] == 0) {
        serial++;
        serial_length--;
    }
    for (size_t i = 0; i < serial_length; i++)
        snprintf(hex + 2 * i, 3, "%02x", serial[i]);
    fprintf(issued, "%s %s\n", device->di, hex);
}

static const struct device_hooks hooks = {hook_handshake_done, hook_request_sent, hook_response,
                                          hook_identity};

/* The device's manufacturer certificate on its connection, when the server asks for one. */
static int client_certificate(SSL *ssl, void *user)
{
    struct worker *worker = user;
    struct fleet_device *device = current_device;

    if (device == NULL)
        return 0;
    return SSL_use_cert_and_key(ssl, device->certificate, device->key, worker->chain, 1) == 1;
}

/* ---- a device's life ---- */

static void device_connect(struct fleet_device *device);
static void worker_fill(struct worker *worker);

static void device_complete(struct fleet_device *device, bool succeeded)
{
    struct worker *worker = device->worker;
    struct fleet *fleet = worker->fleet;
    struct device *machine = &device->device;

    if (succeeded) {
        histogram_record(&worker->results.end_to_end, elapsed_us(device->started_ns));
        worker->results.succeeded++;
        worker->results.scenario_succeeded[device->scenario]++;
    } else {
        worker->results.failed++;
        atomic_fetch_add(&worker->failed, 1);
        if (atomic_fetch_add(&fleet->failure_lines, 1) < MAX_FAILURE_LINES ||
            machine->options->verbose)
            printf("device %s di=%s FAILED after %u attempts: %s\n", machine->number, machine->di,
                   device->attempts, machine->error[0] != '\0' ? machine->error : "incomplete");
    }
    if (device->prev != NULL)
        device->prev->next = device->next;
    else
        worker->active = device->next;
    if (device->next != NULL)
        device->next->prev = device->prev;
    device_free(machine);
    X509_free(device->certificate);
    EVP_PKEY_free(device->key);
    free(device);
    atomic_fetch_add(&worker->finished, 1);
    atomic_fetch_sub(&worker->in_flight, 1);
    worker_fill(worker);
}

/* An attempt failed: start over after the back-off, or give up. */
static void device_attempt_failed(struct fleet_device *device)
{
    struct worker *worker = device->worker;
    const struct options *options = device->device.options;
    enum error_class class = device->device.error_class;

    worker->results.errors[class != ERROR_NONE ? class : ERROR_OTHER]++;
    atomic_fetch_add(&worker->errors, 1);
    if (device->attempts >= options->max_attempts ||
        (options->expect_step >= 0 && class == ERROR_COAP)) {
        device_complete(device, false);
        return;
    }
    size_t slot = device->attempts - 1;
    if (slot >= sizeof(backoff_seconds) / sizeof(backoff_seconds[0]))
        slot = sizeof(backoff_seconds) / sizeof(backoff_seconds[0]) - 1;
    double jitter = 0.8 + 0.4 * ((double)rand_r(&worker->random_state) / RAND_MAX);
    double delay = backoff_seconds[slot] * options->backoff_scale * jitter;
    worker->results.restarts++;
    device->waiting = WAIT_RESTART;
    if (timer_heap_add(&worker->timers, device, now_ns() + (uint64_t)(delay * 1e9)) != 0)
        device_complete(device, false);
}

/* Sends what the device produced; closes the connection when it is over. */
static void device_flush(struct fleet_device *device)
{
    struct device *machine = &device->device;
    const uint8_t *data;
    size_t length;

    if (device->conn == NULL)
        return;
    while (machine->tls != NULL && (data = tls_conn_output(machine->tls, &length)) != NULL) {
        if (loop_send(device->conn, data, length) != 0) {
            device_fail_class(machine, ERROR_OTHER, "send: output queue full");
            loop_close(device->conn, true);
            return;
        }
        tls_conn_consume_output(machine->tls, length);
    }
    if (device->drop_now) {
        /* The request is on its way; leave before the answer, as a device losing power would. */
        device->drop_now = false;
        device->drop_after = 0;
        device_fail_class(machine, ERROR_DROPPED, "dropped on purpose after request %u",
                          device->requests_sent);
        loop_close(device->conn, false);
        return;
    }
    switch (machine->state) {
    case DEVICE_CONNECTION_DONE:
    case DEVICE_FINISHED:
    case DEVICE_FAILED:
        loop_close(device->conn, false);
        break;
    case DEVICE_RETRY_WAIT:
        if (device->waiting == WAIT_NONE) {
            device->waiting = WAIT_RETRY_STEP;
            device->worker->results.transient_retries++;
            uint64_t delay =
                (uint64_t)((double)machine->retry_after_ms * machine->options->backoff_scale * 1e6);
            if (timer_heap_add(&device->worker->timers, device, now_ns() + delay) != 0) {
                device_fail_class(machine, ERROR_OTHER, "out of memory");
                loop_close(device->conn, true);
            }
        }
        break;
    default:
        break;
    }
}

static void device_connect(struct fleet_device *device)
{
    struct worker *worker = device->worker;
    struct fleet *fleet = worker->fleet;
    struct device *machine = &device->device;
    const struct sockaddr *address = (const struct sockaddr *)&fleet->addresses[device->endpoint];
    int fd = socket(address->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

    if (fd < 0 || (connect(fd, address, fleet->address_lengths[device->endpoint]) != 0 &&
                   errno != EINPROGRESS)) {
        device_fail_class(machine, ERROR_CONNECT, "connect: %s", strerror(errno));
        if (fd >= 0)
            close(fd);
        device_attempt_failed(device);
        return;
    }
    device->conn = loop_attach(worker->loop, fd, device);
    if (device->conn == NULL) {
        device_fail_class(machine, ERROR_CONNECT, "attach: %s", strerror(errno));
        close(fd);
        device_attempt_failed(device);
        return;
    }
    worker->results.connections++;
    device->connect_ns = now_ns();
    device->deadline_ns = device->connect_ns + (uint64_t)machine->options->timeout_ms * 1000000u;
    current_device = device;
    device_connection_start(machine);
    current_device = NULL;
    device_flush(device);
}

static enum scenario pick_scenario(const struct fleet *fleet, unsigned index)
{
    const struct options *options = fleet->options;
    uint64_t mixed = (options->seed ^ 0x9E3779B97F4A7C15ull) + index * 0xBF58476D1CE4E5B9ull;
    mixed ^= mixed >> 31;
    mixed *= 0x94D049BB133111EBull;
    mixed ^= mixed >> 29;
    unsigned pick = (unsigned)(mixed % fleet->mix_total);
    for (int scenario = 0; scenario < SCENARIO_COUNT; scenario++) {
        if (pick < options->mix[scenario])
            return (enum scenario)scenario;
        pick -= options->mix[scenario];
    }
    return SCENARIO_FULL;
}

static void worker_launch(struct worker *worker)
{
    struct fleet *fleet = worker->fleet;
    const struct options *options = fleet->options;
    uint64_t global = worker->id + worker->sequence * options->threads;
    char di[UUID_STRING_LENGTH + 1];

    if (fleet->total_devices != 0 && global >= fleet->total_devices) {
        worker->launching_done = true;
        return;
    }
    worker->sequence++;
    unsigned index = options->first + (unsigned)global;
    unsigned identity = (index - 1) % fleet->identity_count + 1;
    struct fleet_device *device = calloc(1, sizeof(*device));
    if (device == NULL) {
        worker->launching_done = true;
        return;
    }
    device->worker = worker;
    device->scenario = pick_scenario(fleet, index);
    device->endpoint = (unsigned)(global % options->endpoint_count);
    device->started_ns = now_ns();
    device->attempts = 1;
    /* Dropping devices spread their drop over the first six requests (every step). */
    if (options->drop_every > 0 && index % options->drop_every == 0)
        device->drop_after = 1 + (index / options->drop_every) % 6;
    device->next = worker->active;
    if (worker->active != NULL)
        worker->active->prev = device;
    worker->active = device;
    worker->results.started++;
    worker->results.attempts++;
    worker->results.scenario_started[device->scenario]++;
    atomic_fetch_add(&worker->started, 1);
    atomic_fetch_add(&worker->in_flight, 1);
    struct prepared_device prepared = {0};
    if (global / options->threads < worker->prepared_count) {
        prepared = worker->prepared[global / options->threads];
        memset(&worker->prepared[global / options->threads], 0, sizeof(prepared));
    }
    fleet_identity_device_id(options->seed, identity, di);
    device->certificate = prepared.certificate;
    device->key = prepared.key;
    if (device->certificate == NULL &&
        fleet_identity_load(fleet->identities, worker->libctx, identity, &device->certificate,
                            &device->key) != 0) {
        device_init_fleet(&device->device, options, index, di, device->scenario, worker->ctx,
                          &worker->kit, &hooks, NULL);
        device_fail_class(&device->device, ERROR_OTHER, "identity %u does not load", identity);
        device->attempts = options->max_attempts;
        device_attempt_failed(device);
        return;
    }
    int status = device_init_fleet(&device->device, options, index, di, device->scenario,
                                   worker->ctx, &worker->kit, &hooks, &prepared.csr);
    free(prepared.csr.pem); /* NULL once the device took it */
    if (status != 0) {
        device->attempts = options->max_attempts;
        device_attempt_failed(device);
        return;
    }
    device->device.state = DEVICE_CONNECTION_DONE;
    device_connect(device);
}

/* Devices the open loop should have started after elapsed seconds. */
static double open_loop_target(const struct worker *worker, double elapsed)
{
    double ramp = worker->fleet->options->ramp_seconds;
    if (ramp <= 0)
        return worker->rate * elapsed;
    if (elapsed < ramp)
        return worker->rate * elapsed * elapsed / (2 * ramp);
    return worker->rate * (elapsed - ramp / 2);
}

static void worker_fill(struct worker *worker)
{
    const struct options *options = worker->fleet->options;
    double elapsed = (double)(now_ns() - worker->fleet->start_ns) / 1e9;

    if (options->duration_seconds > 0 && elapsed >= options->duration_seconds)
        worker->launching_done = true;
    if (worker->rate > 0) {
        double target = open_loop_target(worker, elapsed);
        while (!worker->launching_done && (double)worker->sequence < target)
            worker_launch(worker);
    } else {
        while (!worker->launching_done && atomic_load(&worker->in_flight) < worker->concurrency)
            worker_launch(worker);
    }
    if (worker->launching_done && atomic_load(&worker->in_flight) == 0)
        loop_stop(worker->loop);
}

/* ---- loop callbacks ---- */

static void *on_accepted(void *loop_user, struct loop_conn *conn, const struct sockaddr *peer,
                         socklen_t peer_length)
{
    (void)loop_user;
    (void)conn;
    (void)peer;
    (void)peer_length;
    return NULL; /* the generator listens nowhere */
}

static void on_received(void *conn_user, const uint8_t *data, size_t length)
{
    struct fleet_device *device = conn_user;

    current_device = device;
    device_feed(&device->device, data, length);
    current_device = NULL;
    device_flush(device);
}

static void on_closed(void *conn_user, int error)
{
    struct fleet_device *device = conn_user;
    struct device *machine = &device->device;

    device->conn = NULL;
    if (machine->state == DEVICE_HANDSHAKE || machine->state == DEVICE_WAITING) {
        if (error == ECONNREFUSED || error == ENETUNREACH || error == EHOSTUNREACH)
            device_fail_class(machine, ERROR_CONNECT, "connect: %s", strerror(error));
        else if (error != 0)
            device_fail_class(machine, ERROR_CLOSED, "connection: %s", strerror(error));
        else
            device_peer_closed(machine);
    }
    device_connection_end(machine);
    if (device->worker->loop == NULL)
        return; /* the loop is being destroyed */
    switch (machine->state) {
    case DEVICE_CONNECTION_DONE:
        device_connect(device);
        break;
    case DEVICE_FINISHED:
        device_complete(device, device_succeeded(machine));
        break;
    case DEVICE_FAILED:
        device_attempt_failed(device);
        break;
    default:
        break; /* DEVICE_RETRY_WAIT: the timer reconnects */
    }
}

static const struct loop_handler handler = {on_accepted, on_received, on_closed};

static void worker_timers(struct worker *worker)
{
    uint64_t now = now_ns();
    struct fleet_device *device;

    while ((device = timer_heap_pop_due(&worker->timers, now)) != NULL) {
        enum wait_kind kind = device->waiting;
        device->waiting = WAIT_NONE;
        if (kind == WAIT_RETRY_STEP) {
            if (device->conn != NULL) {
                current_device = device;
                device_send_request(&device->device);
                current_device = NULL;
                device_flush(device);
            } else {
                device_connect(device); /* resumes at the same step */
            }
        } else if (kind == WAIT_RESTART) {
            device->attempts++;
            device->requests_sent = 0;
            device->worker->results.attempts++;
            device_restart(&device->device);
            device_connect(device);
        }
    }
}

static void worker_timeouts(struct worker *worker)
{
    uint64_t now = now_ns();

    for (struct fleet_device *device = worker->active; device != NULL; device = device->next) {
        struct device *machine = &device->device;
        if (device->conn == NULL || now < device->deadline_ns ||
            (machine->state != DEVICE_HANDSHAKE && machine->state != DEVICE_WAITING))
            continue;
        device_fail_class(machine, ERROR_TIMEOUT, "%s: no answer within %d ms",
                          machine->state == DEVICE_HANDSHAKE
                              ? "TLS handshake"
                              : dps_step_routes[device_current_step(machine)].name,
                          machine->options->timeout_ms);
        loop_close(device->conn, true);
    }
}

static void worker_tick(void *user)
{
    struct worker *worker = user;

    worker->ticks++;
    worker_timers(worker);
    if (worker->ticks % TIMEOUT_CHECK_TICKS == 0)
        worker_timeouts(worker);
    if (worker->ticks % PUBLISH_TICKS == 0) {
        pthread_mutex_lock(&worker->lock);
        worker->published = worker->results.end_to_end;
        pthread_mutex_unlock(&worker->lock);
    }
    worker_fill(worker);
}

/* ---- worker threads ---- */

static X509 *read_intermediate(OSSL_LIB_CTX *libctx, const char *pki_dir)
{
    char path[4096];
    FILE *file;
    X509 *certificate = X509_new_ex(libctx, NULL);

    snprintf(path, sizeof(path), "%s/mfg-intermediate.pem", pki_dir);
    file = fopen(path, "r");
    if (certificate == NULL || file == NULL ||
        PEM_read_X509(file, &certificate, NULL, NULL) == NULL) {
        X509_free(certificate);
        certificate = NULL;
    }
    if (file != NULL)
        fclose(file);
    return certificate;
}

static int worker_setup(struct worker *worker)
{
    const struct options *options = worker->fleet->options;
    char ca[4096];
    X509 *certificate = NULL, *intermediate;
    EVP_PKEY *key = NULL;

    /* The shards' context: on OpenSSL 3.0 it spares every handshake the decoder walk. */
    worker->libctx = lean_libctx_new(worker->error, sizeof(worker->error));
    if (worker->libctx == NULL)
        return -1;
    if (device_kit_init(&worker->kit, worker->libctx) != 0) {
        snprintf(worker->error, sizeof(worker->error), "cannot set up OpenSSL contexts");
        return -1;
    }
    worker->kit_ready = true;
    intermediate = read_intermediate(worker->libctx, options->pki_dir);
    worker->chain = sk_X509_new_null();
    if (intermediate == NULL || worker->chain == NULL ||
        !sk_X509_push(worker->chain, intermediate)) {
        X509_free(intermediate);
        snprintf(worker->error, sizeof(worker->error), "cannot read %s/mfg-intermediate.pem",
                 options->pki_dir);
        return -1;
    }
    if (fleet_identity_load(worker->fleet->identities, worker->libctx, 1, &certificate, &key) !=
        0) {
        snprintf(worker->error, sizeof(worker->error), "fleet identity 1 does not load");
        return -1;
    }
    if (options->ca_file != NULL)
        snprintf(ca, sizeof(ca), "%s", options->ca_file);
    else
        snprintf(ca, sizeof(ca), "%s/dps-root.pem", options->pki_dir);
    worker->ctx = tls_client_context_mem(worker->libctx, certificate, worker->chain, key, ca,
                                         worker->error, sizeof(worker->error));
    X509_free(certificate);
    EVP_PKEY_free(key);
    if (worker->ctx == NULL)
        return -1;
    /* A device keeps its record buffers for its connection's life: no allocation per flight. */
    SSL_CTX_clear_mode(worker->ctx, SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_cert_cb(worker->ctx, client_certificate, worker);
    SSL_CTX_set_cert_verify_callback(worker->ctx, device_kit_verify_server, &worker->kit);
    worker->loop =
        loop_create(options->backend, &handler, worker, worker->error, sizeof(worker->error));
    if (worker->loop == NULL)
        return -1;
    int r = loop_set_tick(worker->loop, TICK_MS, worker_tick, worker);
    if (r < 0) {
        snprintf(worker->error, sizeof(worker->error), "loop tick: %s", strerror(-r));
        return -1;
    }
    return 0;
}

/* How many devices this worker will start, when the run says (--devices, or --rate for a
 * --duration), at most its share of PREPARE_LIMIT. */
static uint64_t worker_device_count(const struct worker *worker)
{
    const struct fleet *fleet = worker->fleet;
    const struct options *options = fleet->options;
    uint64_t count = 0, limit = PREPARE_LIMIT / options->threads;

    if (fleet->total_devices > worker->id)
        count = (fleet->total_devices - worker->id + options->threads - 1) / options->threads;
    else if (fleet->total_devices == 0 && worker->rate > 0)
        count = (uint64_t)ceil(open_loop_target(worker, options->duration_seconds)) + 1;
    return count < limit ? count : limit;
}

/* --prepare ahead: every device this worker will start gets its identity and CSR now. */
static int worker_prepare(struct worker *worker)
{
    struct fleet *fleet = worker->fleet;
    const struct options *options = fleet->options;
    uint64_t count = options->prepare_inline ? 0 : worker_device_count(worker);
    char di[UUID_STRING_LENGTH + 1];

    if (count == 0)
        return 0;
    worker->prepared = calloc(count, sizeof(*worker->prepared));
    if (worker->prepared == NULL) {
        snprintf(worker->error, sizeof(worker->error), "out of memory preparing devices");
        return -1;
    }
    for (uint64_t sequence = 0; sequence < count; sequence++) {
        unsigned index = options->first + (unsigned)(worker->id + sequence * options->threads);
        unsigned identity = (index - 1) % fleet->identity_count + 1;
        fleet_identity_device_id(options->seed, identity, di);
        /* A device that cannot be prepared starts in line, and fails there with a reason. */
        prepared_device_make(&worker->prepared[sequence], fleet->identities, identity, &worker->kit,
                             di, scenario_sends_csr(pick_scenario(fleet, index)));
    }
    worker->prepared_count = count;
    return 0;
}

/* Tells the driver this worker is ready, then waits for the run's clock to start. */
static void worker_wait_start(struct worker *worker)
{
    struct fleet *fleet = worker->fleet;

    pthread_mutex_lock(&fleet->start_lock);
    fleet->ready++;
    pthread_cond_broadcast(&fleet->start_changed);
    while (!fleet->started)
        pthread_cond_wait(&fleet->start_changed, &fleet->start_lock);
    pthread_mutex_unlock(&fleet->start_lock);
}

static void *worker_main(void *user)
{
    struct worker *worker = user;
    bool ready = worker_setup(worker) == 0 && worker_prepare(worker) == 0;

    worker_wait_start(worker);
    if (ready) {
        worker_fill(worker);
        if (!worker->launching_done || atomic_load(&worker->in_flight) > 0) {
            int r = loop_run(worker->loop);
            if (r < 0)
                snprintf(worker->error, sizeof(worker->error), "loop: %s", strerror(-r));
        }
    }
    if (worker->loop != NULL) {
        struct loop *loop = worker->loop;
        worker->loop = NULL; /* on_closed: no restarts while the loop goes */
        loop_destroy(loop);
    }
    while (worker->active != NULL) {
        struct fleet_device *device = worker->active;
        worker->active = device->next;
        device_free(&device->device);
        X509_free(device->certificate);
        EVP_PKEY_free(device->key);
        free(device);
    }
    for (uint64_t i = 0; i < worker->prepared_count; i++)
        prepared_device_clear(&worker->prepared[i]);
    free(worker->prepared);
    timer_heap_free(&worker->timers);
    SSL_CTX_free(worker->ctx);
    if (worker->kit_ready)
        device_kit_free(&worker->kit);
    sk_X509_pop_free(worker->chain, X509_free);
    lean_libctx_free(worker->libctx);
    pthread_mutex_lock(&worker->lock);
    worker->published = worker->results.end_to_end;
    pthread_mutex_unlock(&worker->lock);
    atomic_store(&worker->done, true);
    return NULL;
}

/* ---- the run ---- */

static int resolve_endpoints(struct fleet *fleet)
{
    const struct options *options = fleet->options;

    for (unsigned i = 0; i < options->endpoint_count; i++) {
        struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
        struct addrinfo *addresses = NULL;
        int status =
            getaddrinfo(options->endpoints[i].host, options->endpoints[i].port, &hints, &addresses);
        if (status != 0) {
            fprintf(stderr, "dps-loadgen: resolve %s: %s\n", options->endpoints[i].host,
                    gai_strerror(status));
            return -1;
        }
        memcpy(&fleet->addresses[i], addresses->ai_addr, addresses->ai_addrlen);
        fleet->address_lengths[i] = addresses->ai_addrlen;
        freeaddrinfo(addresses);
    }
    return 0;
}

static double cpu_seconds(const struct timeval *value)
{
    return (double)value->tv_sec + (double)value->tv_usec / 1e6;
}

static void print_progress(struct fleet *fleet, bool final)
{
    const struct options *options = fleet->options;
    uint64_t started = 0, finished = 0, failed = 0, in_flight = 0, errors = 0;
    static struct histogram merged;
    double elapsed = (double)(now_ns() - fleet->start_ns) / 1e9;

    histogram_init(&merged);
    for (unsigned i = 0; i < options->threads; i++) {
        struct worker *worker = &fleet->workers[i];
        started += atomic_load(&worker->started);
        finished += atomic_load(&worker->finished);
        failed += atomic_load(&worker->failed);
        in_flight += atomic_load(&worker->in_flight);
        errors += atomic_load(&worker->errors);
        pthread_mutex_lock(&worker->lock);
        histogram_merge(&merged, &worker->published);
        pthread_mutex_unlock(&worker->lock);
    }
    fprintf(stderr,
            "\r%6.1fs  rate %7.1f/s  in flight %5llu  done %7llu  failed %5llu  errors %5llu  "
            "p50 %7.1f ms  p99 %7.1f ms%s",
            elapsed, elapsed > 0 ? (double)finished / elapsed : 0.0, (unsigned long long)in_flight,
            (unsigned long long)(finished - failed), (unsigned long long)failed,
            (unsigned long long)errors, (double)histogram_quantile(&merged, 0.5) / 1000.0,
            (double)histogram_quantile(&merged, 0.99) / 1000.0, final ? "\n" : "");
    (void)started;
}

int fleet_run(const struct options *options)
{
    struct fleet fleet;
    struct fleet_results *total = NULL;
    struct fleet_generation generation;
    struct fleet_run_info info;
    struct rusage usage;
    char err[512];
    unsigned needed;
    int status = 1;

    memset(&fleet, 0, sizeof(fleet));
    fleet.options = options;
    for (int scenario = 0; scenario < SCENARIO_COUNT; scenario++)
        fleet.mix_total += options->mix[scenario];
    fleet.total_devices = options->devices;
    if (resolve_endpoints(&fleet) != 0)
        return 1;
    if (options->devices > 0)
        needed = options->first - 1 + options->devices;
    else if (options->rate > 0)
        needed = options->first - 1 + (unsigned)ceil(options->rate * options->duration_seconds);
    else
        needed = options->first - 1 + 10000;
    if (needed > 10000000)
        needed = 10000000; /* beyond, devices reuse identities in turn */
    if (fleet_identities_ensure(options->pki_dir, options->seed, needed, &generation, err,
                                sizeof(err)) != 0 ||
        (fleet.identities =
             fleet_identities_open(options->pki_dir, options->seed, err, sizeof(err))) == NULL) {
        fprintf(stderr, "dps-loadgen: fleet identities: %s\n", err);
        return 1;
    }
    if (generation.generated > 0)
        fprintf(stderr, "dps-loadgen: generated %u identities in %.2f s\n", generation.generated,
                generation.seconds);
    fleet.identity_count = fleet_identities_count(fleet.identities);
    pthread_mutex_init(&fleet.start_lock, NULL);
    pthread_cond_init(&fleet.start_changed, NULL);
    fleet.workers = calloc(options->threads, sizeof(*fleet.workers));
    total = calloc(1, sizeof(*total));
    if (fleet.workers == NULL || total == NULL) {
        fprintf(stderr, "dps-loadgen: out of memory\n");
        goto done;
    }
    if (options->issued_path != NULL) {
        fleet.issued = fopen(options->issued_path, "w");
        if (fleet.issued == NULL) {
            fprintf(stderr, "dps-loadgen: cannot write %s\n", options->issued_path);
            goto done;
        }
        setvbuf(fleet.issued, NULL, _IOLBF, 0); /* whole lines, even if the run is killed */
    }
    struct rusage created, before;
    getrusage(RUSAGE_SELF, &created);
    unsigned started_threads = 0;
    for (unsigned i = 0; i < options->threads; i++) {
        struct worker *worker = &fleet.workers[i];
        worker->fleet = &fleet;
        worker->id = i;
        worker->concurrency = options->concurrency / options->threads +
                              (i < options->concurrency % options->threads ? 1 : 0);
        worker->rate = options->rate / options->threads;
        worker->random_state = (unsigned)(options->seed * 2654435761u) + i;
        if (options->concurrency > 0 && worker->concurrency == 0)
            worker->launching_done = true;
        pthread_mutex_init(&worker->lock, NULL);
        if (pthread_create(&worker->thread, NULL, worker_main, worker) != 0) {
            fprintf(stderr, "dps-loadgen: cannot start thread %u\n", i);
            break;
        }
        started_threads++;
    }
    /* The run's clock and CPU start once every worker is set up and has prepared its devices. */
    pthread_mutex_lock(&fleet.start_lock);
    while (fleet.ready < started_threads)
        pthread_cond_wait(&fleet.start_changed, &fleet.start_lock);
    getrusage(RUSAGE_SELF, &before);
    fleet.start_ns = now_ns();
    fleet.started = true;
    pthread_cond_broadcast(&fleet.start_changed);
    pthread_mutex_unlock(&fleet.start_lock);
    for (;;) {
        bool all_done = true;
        for (unsigned i = 0; i < started_threads; i++)
            all_done &= atomic_load(&fleet.workers[i].done);
        if (all_done)
            break;
        struct timespec pause = {0, 50000000};
        static unsigned naps;
        nanosleep(&pause, NULL);
        if (options->progress && ++naps % 20 == 0)
            print_progress(&fleet, false);
    }
    if (options->progress)
        print_progress(&fleet, true);
    memset(&info, 0, sizeof(info));
    info.wall_seconds = (double)(now_ns() - fleet.start_ns) / 1e9;
    fleet_results_init(total);
    status = started_threads == options->threads ? 0 : 1;
    for (unsigned i = 0; i < started_threads; i++) {
        struct worker *worker = &fleet.workers[i];
        pthread_join(worker->thread, NULL);
        if (worker->error[0] != '\0') {
            fprintf(stderr, "dps-loadgen: thread %u: %s\n", i, worker->error);
            status = 1;
        }
        fleet_results_merge(total, &worker->results);
        pthread_mutex_destroy(&worker->lock);
    }
    getrusage(RUSAGE_SELF, &usage);
    info.cpu_user_seconds = cpu_seconds(&usage.ru_utime) - cpu_seconds(&before.ru_utime);
    info.cpu_system_seconds = cpu_seconds(&usage.ru_stime) - cpu_seconds(&before.ru_stime);
    info.cpu_prepare_seconds = cpu_seconds(&before.ru_utime) + cpu_seconds(&before.ru_stime) -
                               cpu_seconds(&created.ru_utime) - cpu_seconds(&created.ru_stime);
    info.backend = loop_backend_name(options->backend);
    info.identities = fleet.identity_count;
    info.throughput = info.wall_seconds > 0 ? (double)total->succeeded / info.wall_seconds : 0.0;
    fleet_report_table(stdout, options, total, &info);
    if (options->report_path != NULL &&
        fleet_report_write(options->report_path, options, total, &info) != 0) {
        fprintf(stderr, "dps-loadgen: cannot write %s\n", options->report_path);
        status = 1;
    }
    if (options->json)
        printf("{\"provisioned\":%llu,\"devices\":%llu,\"failed\":%llu}\n",
               (unsigned long long)total->succeeded, (unsigned long long)total->started,
               (unsigned long long)total->failed);
    else
        printf("provisioned %llu/%llu devices, %llu failed\n", (unsigned long long)total->succeeded,
               (unsigned long long)total->started, (unsigned long long)total->failed);
    if (total->failed > 0 || total->succeeded == 0)
        status = 1;
done:
    if (fleet.issued != NULL && fclose(fleet.issued) != 0) {
        fprintf(stderr, "dps-loadgen: cannot write %s\n", options->issued_path);
        status = 1;
    }
    free(total);
    free(fleet.workers);
    pthread_cond_destroy(&fleet.start_changed);
    pthread_mutex_destroy(&fleet.start_lock);
    fleet_identities_close(fleet.identities);
    return status;
}

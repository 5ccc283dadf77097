/*
 * loadgen_sequential: the blocking driver. It runs devices one after
 * another over non-blocking sockets with poll() timeouts, prints a line (or
 * a JSON object) per device, and with --out saves what each device received
 * (identity chain, trust anchors, its key, a summary) for a later --renew
 * run. With --concurrency or --rate the fleet engine (loadgen_fleet.c)
 * drives the same devices instead.
 */
#include "perf/loadgen_sequential.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/err.h>
#include <openssl/pem.h>

#include "dataplane/tls.h"
#include "perf/loadgen_device.h"

static json_t *device_json(const struct device *device)
{
    struct timespec now;
    json_t *steps = json_object();
    char code[8];

    clock_gettime(CLOCK_MONOTONIC, &now);
    for (int step = 0; step < STEP_COUNT; step++) {
        if (!device->answered[step])
            continue;
        format_code(device->codes[step], code);
        json_object_set_new(steps, dps_step_routes[step].name, json_string(code));
    }
    double elapsed = (double)(now.tv_sec - device->started.tv_sec) * 1e3 +
                     (double)(now.tv_nsec - device->started.tv_nsec) / 1e6;
    json_t *object = json_pack("{s:I, s:s, s:o, s:b, s:f}", "device", (json_int_t)device->index,
                               "di", device->di, "steps", steps, "ok", device_succeeded(device),
                               "elapsed_ms", elapsed);
    if (object == NULL)
        return NULL;
    if (device->error[0] != '\0')
        json_object_set_new(object, "error", json_string(device->error));
    if (device->tls_version[0] != '\0') {
        json_object_set_new(object, "tls_version", json_string(device->tls_version));
        json_object_set_new(object, "tls_cipher", json_string(device->tls_cipher));
    }
    if (device->owner[0] != '\0')
        json_object_set_new(object, "devowneruuid", json_string(device->owner));
    if (device->cis[0] != '\0') {
        json_object_set_new(object, "cis", json_string(device->cis));
        json_object_set_new(object, "sid", json_string(device->sid));
        json_object_set_new(object, "apn", json_string(device->apn));
    }
    return object;
}

static int write_file(const char *directory, const char *name, const char *text, mode_t mode)
{
    char path[4200];
    int fd;
    size_t length = strlen(text);

    snprintf(path, sizeof(path), "%s/%s", directory, name);
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    if (fd < 0)
        return -1;
    bool ok = write(fd, text, length) == (ssize_t)length;
    return close(fd) == 0 && ok ? 0 : -1;
}

/* Saves what the device received: identity chain, trust anchors, its key, a summary. */
static int device_save(const struct device *device, const json_t *summary)
{
    char directory[4096];
    BIO *bio = BIO_new(BIO_s_mem());
    char *key_pem = NULL, *data, *text;
    int result = -1;

    device_output_dir(device, directory, sizeof(directory));
    if (bio == NULL || (mkdir(device->options->out_dir, 0755) != 0 && errno != EEXIST) ||
        (mkdir(directory, 0700) != 0 && errno != EEXIST))
        goto done;
    if (!PEM_write_bio_PrivateKey(bio, device->key, NULL, NULL, 0, NULL, NULL))
        goto done;
    long length = BIO_get_mem_data(bio, &data);
    key_pem = strndup(data, (size_t)length);
    text = json_dumps(summary, JSON_INDENT(2) | JSON_REAL_PRECISION(6));
    if (key_pem == NULL || text == NULL) {
        free(text);
        goto done;
    }
    result = write_file(directory, "key.pem", key_pem, 0600);
    if (device->identity_pem != NULL)
        result |= write_file(directory, "identity.pem", device->identity_pem, 0644);
    if (device->trustca_pem != NULL)
        result |= write_file(directory, "trustca.pem", device->trustca_pem, 0644);
    result |= write_file(directory, "summary.json", text, 0644);
    free(text);
done:
    OPENSSL_clear_free(key_pem, key_pem != NULL ? strlen(key_pem) : 0);
    BIO_free(bio);
    ERR_clear_error();
    return result;
}

static void device_report(const struct device *device, const json_t *summary)
{
    char code[8];

    if (device->options->json) {
        char *text = json_dumps(summary, JSON_COMPACT | JSON_REAL_PRECISION(6));
        if (text != NULL)
            printf("%s\n", text);
        free(text);
        return;
    }
    printf("device %s di=%s", device->number, device->di);
    for (int step = 0; step < STEP_COUNT; step++) {
        if (!device->answered[step])
            continue;
        format_code(device->codes[step], code);
        printf(" %s=%s", dps_step_routes[step].name, code);
    }
    if (device_succeeded(device))
        printf(device->expected_seen ? " ok (expected)\n" : " ok\n");
    else
        printf(" FAILED: %s\n", device->error[0] != '\0' ? device->error : "incomplete");
}

static int connect_endpoint(const struct endpoint *endpoint, int timeout_ms, char *err,
                            size_t err_length)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *addresses = NULL;
    int fd = -1;
    int status = getaddrinfo(endpoint->host, endpoint->port, &hints, &addresses);

    if (status != 0) {
        snprintf(err, err_length, "resolve %s: %s", endpoint->host, gai_strerror(status));
        return -1;
    }
    for (struct addrinfo *address = addresses; address != NULL; address = address->ai_next) {
        fd = socket(address->ai_family, address->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                    address->ai_protocol);
        if (fd < 0)
            continue;
        if (connect(fd, address->ai_addr, address->ai_addrlen) == 0)
            break;
        if (errno == EINPROGRESS) {
            struct pollfd waiter = {fd, POLLOUT, 0};
            int error = 0;
            socklen_t error_length = sizeof(error);
            if (poll(&waiter, 1, timeout_ms) == 1 &&
                getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &error_length) == 0 && error == 0)
                break;
            errno = error != 0 ? error : ETIMEDOUT;
        }
        snprintf(err, err_length, "connect %s:%s: %s", endpoint->host, endpoint->port,
                 strerror(errno));
        close(fd);
        fd = -1;
    }
    freeaddrinfo(addresses);
    return fd;
}

/* Sends everything the TLS layer has queued. 0, or -1 on timeout or socket error. */
static int flush_output(struct device *device, int fd, int timeout_ms)
{
    size_t length;
    const uint8_t *data;

    while (device->tls != NULL && (data = tls_conn_output(device->tls, &length)) != NULL) {
        ssize_t sent = send(fd, data, length, MSG_NOSIGNAL);
        if (sent > 0) {
            tls_conn_consume_output(device->tls, (size_t)sent);
            continue;
        }
        if (sent < 0 && (errno == EAGAIN || errno == EINTR)) {
            struct pollfd waiter = {fd, POLLOUT, 0};
            if (poll(&waiter, 1, timeout_ms) > 0)
                continue;
            errno = ETIMEDOUT;
        }
        return -1;
    }
    return 0;
}

static void run_connection(struct device *device, int timeout_ms)
{
    char err[512];
    uint8_t buffer[16384];
    const struct options *options = device->options;
    const struct endpoint *endpoint =
        &options->endpoints[(device->index - options->first) % options->endpoint_count];
    int fd = connect_endpoint(endpoint, timeout_ms, err, sizeof(err));

    if (fd < 0) {
        device_fail(device, "%s", err);
        return;
    }
    device_connection_start(device);
    for (;;) {
        if (flush_output(device, fd, timeout_ms) != 0) {
            device_fail(device, "send: %s", strerror(errno));
            break;
        }
        if (device->state != DEVICE_HANDSHAKE && device->state != DEVICE_WAITING)
            break;
        struct pollfd waiter = {fd, POLLIN, 0};
        int ready = poll(&waiter, 1, timeout_ms);
        if (ready == 0) {
            device_fail(device, "%s: no answer within %d ms",
                        device->state == DEVICE_HANDSHAKE
                            ? "TLS handshake"
                            : dps_step_routes[device_current_step(device)].name,
                        timeout_ms);
            break;
        }
        if (ready < 0) {
            if (errno == EINTR)
                continue;
            device_fail(device, "poll: %s", strerror(errno));
            break;
        }
        ssize_t got = recv(fd, buffer, sizeof(buffer), 0);
        if (got > 0) {
            device_feed(device, buffer, (size_t)got);
        } else if (got == 0) {
            device_peer_closed(device);
        } else if (errno != EAGAIN && errno != EINTR) {
            device_fail(device, "recv: %s", strerror(errno));
        }
    }
    close(fd);
    device_connection_end(device);
}

static bool run_device(const struct options *options, unsigned index, struct device_kit *kit)
{
    struct device *device = malloc(sizeof(*device));
    bool succeeded;

    if (device == NULL)
        return false;
    if (device_init(device, options, index, kit) == 0) {
        do
            run_connection(device, options->timeout_ms);
        while (device->state == DEVICE_CONNECTION_DONE);
    }
    json_t *summary = device_json(device);
    if (options->out_dir != NULL && device->key != NULL && summary != NULL &&
        device_save(device, summary) != 0) {
        device_fail(device, "cannot save results under %s", options->out_dir);
        json_decref(summary);
        summary = device_json(device);
    }
    if (summary != NULL)
        device_report(device, summary);
    succeeded = device_succeeded(device);
    json_decref(summary);
    device_free(device);
    free(device);
    return succeeded;
}

int sequential_run(const struct options *options)
{
    unsigned failed = 0;
    struct device_kit kit;

    if (device_kit_init(&kit, NULL) != 0) {
        fprintf(stderr, "dps-loadgen: cannot set up OpenSSL contexts\n");
        return 1;
    }
    for (unsigned i = 0; i < options->devices; i++)
        if (!run_device(options, options->first + i, &kit))
            failed++;
    device_kit_free(&kit);
    if (options->json)
        printf("{\"provisioned\":%u,\"devices\":%u,\"failed\":%u}\n", options->devices - failed,
               options->devices, failed);
    else
        printf("provisioned %u/%u devices, %u failed\n", options->devices - failed,
               options->devices, failed);
    return failed == 0 ? 0 : 1;
}

/*
 * dps-loadgen: provisions simulated devices against a DPS endpoint exactly
 * as the real plgd device client does (PROTOCOL.md sections 1, 2 and 4),
 * and checks every response the way that client would before applying it.
 *
 * This file holds the device (loadgen.h: a state machine fed with
 * ciphertext), the sequential driver that runs devices one after another
 * over non-blocking sockets with poll() timeouts, and the command line.
 * With --concurrency or --rate the fleet engine (loadgen_fleet.c) drives
 * the same devices on event loops instead; `dps-loadgen gen` makes fleet
 * identities (loadgen_identity.c).
 *
 * A fresh device makes two connections: the time request, then ownership,
 * cloud configuration, credentials (CSR for a fresh P-256 key), ACLs and
 * the initial resources. --renew makes one connection with only the
 * credentials request, reusing the key saved by an earlier --out run.
 *
 * What the device does per provisioning is kept cheap without changing a
 * byte on the wire or dropping a check: the CSR is built from DER pieces
 * (loadgen_der.c), the identity certificate is read from its DER, and what
 * every device receives alike (the server's chain, trust anchors,
 * intermediates) is parsed and verified by OpenSSL once per thread, then
 * recognised by its exact bytes while it stays valid (struct device_kit).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netdb.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "crypto/pki.h"
#include "crypto/uuid.h"
#include "dataplane/cbor.h"
#include "dataplane/coap_tcp.h"
#include "dataplane/tls.h"
#include "perf/loadgen.h"
#include "perf/loadgen_identity.h"

#define DEFAULT_PORT "15684"
#define REQUEST_CAPACITY 4096
#define OCF_VERSION 2048
#define CERT_MIN_LIFETIME 3600 /* the client's default expiry limit, seconds */
#define DEFAULT_MAX_AGE 60     /* CoAP's default Max-Age, seconds */
#define TRANSIENT_LIMIT 3      /* 5.03/5.04 in a row before the device starts over */

const struct step_info step_info[STEP_COUNT] = {
    [STEP_TIME] = {"time", COAP_GET, "/x.plgd.dev/time"},
    [STEP_OWNERSHIP] = {"ownership", COAP_GET, "/api/v1/provisioning/ownership"},
    [STEP_CLOUD] = {"cloud", COAP_POST, "/api/v1/provisioning/cloud-configuration"},
    [STEP_CREDENTIALS] = {"credentials", COAP_POST, "/api/v1/provisioning/credentials"},
    [STEP_ACLS] = {"acls", COAP_GET, "/api/v1/provisioning/acls"},
    [STEP_RESOURCES] = {"resources", COAP_GET, "/api/v1/provisioning/resources"},
};

const char *const scenario_names[SCENARIO_COUNT] = {
    [SCENARIO_FULL] = "full",
    [SCENARIO_RENEW] = "renew",
    [SCENARIO_HANDSHAKE] = "handshake",
    [SCENARIO_TIME] = "time",
};

/* The connections a device makes, each a list of steps. */

static const enum step first_connection[] = {STEP_TIME};
static const enum step second_connection[] = {STEP_OWNERSHIP, STEP_CLOUD, STEP_CREDENTIALS,
                                              STEP_ACLS, STEP_RESOURCES};
static const enum step renewal_connection[] = {STEP_CREDENTIALS};

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

#define device_fail(device, ...) device_fail_class(device, ERROR_OTHER, __VA_ARGS__)

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

void format_code(uint8_t code, char out[8])
{
    snprintf(out, 8, "%u.%02u", (unsigned)(code >> 5), (unsigned)(code & 31));
}

enum step device_current_step(const struct device *device)
{
    return device->plan[device->connection].steps[device->position];
}

/* ---- request bodies: indefinite-length maps, as tinycbor writes them ---- */

struct cbor_writer {
    uint8_t *data;
    size_t capacity;
    size_t length;
    bool overflow;
};

static void cbor_put_byte(struct cbor_writer *writer, uint8_t byte)
{
    if (writer->length >= writer->capacity) {
        writer->overflow = true;
        return;
    }
    writer->data[writer->length++] = byte;
}

static void cbor_put_text(struct cbor_writer *writer, const char *text)
{
    size_t length = strlen(text);

    if (length < 24) {
        cbor_put_byte(writer, (uint8_t)(0x60 | length));
    } else if (length < 0x100) {
        cbor_put_byte(writer, 0x78);
        cbor_put_byte(writer, (uint8_t)length);
    } else {
        cbor_put_byte(writer, 0x79);
        cbor_put_byte(writer, (uint8_t)(length >> 8));
        cbor_put_byte(writer, (uint8_t)length);
    }
    for (size_t i = 0; i < length; i++)
        cbor_put_byte(writer, (uint8_t)text[i]);
}

static void cbor_put_map_start(struct cbor_writer *writer)
{
    cbor_put_byte(writer, 0xBF);
}

static void cbor_put_break(struct cbor_writer *writer)
{
    cbor_put_byte(writer, 0xFF);
}

/* Builds the payload of a POST step; -1 when it cannot be made. */
static int request_body(struct device *device, enum step step, uint8_t *out, size_t capacity,
                        size_t *length)
{
    struct cbor_writer writer = {out, capacity, 0, false};

    cbor_put_map_start(&writer);
    cbor_put_text(&writer, "di");
    cbor_put_text(&writer, device->di);
    if (step == STEP_CLOUD) {
        cbor_put_text(&writer, "selectedGateway");
        cbor_put_map_start(&writer);
        cbor_put_text(&writer, "uri");
        cbor_put_text(&writer, "coaps+tcp://127.0.0.1");
        cbor_put_text(&writer, "id");
        cbor_put_text(&writer, "00000000-0000-0000-0000-000000000000");
        cbor_put_break(&writer);
    } else {
        char csr[CSR_PEM_CAPACITY];
        if (csr_pem(device->kit->sign, device->kit->libctx, device->key, device->spki, device->di,
                    csr) != 0) {
            ERR_clear_error();
            device_fail(device, "cannot create the CSR");
            return -1;
        }
        cbor_put_text(&writer, "csr");
        cbor_put_map_start(&writer);
        cbor_put_text(&writer, "data");
        cbor_put_text(&writer, csr);
        cbor_put_text(&writer, "encoding");
        cbor_put_text(&writer, "oic.sec.encoding.pem");
        cbor_put_break(&writer);
    }
    cbor_put_break(&writer);
    if (writer.overflow) {
        device_fail(device, "request body too large");
        return -1;
    }
    *length = writer.length;
    return 0;
}

/* ---- CoAP requests ---- */

static void device_send_frame(struct device *device, const uint8_t *frame, size_t length)
{
    if (tls_conn_write(device->tls, frame, length) != 0)
        device_fail(device, "TLS write: %s", tls_conn_error(device->tls));
}

void device_send_request(struct device *device)
{
    enum step step = device_current_step(device);
    const struct step_info *info = &step_info[step];
    struct coap_option options[16];
    uint8_t storage[4][4];
    uint8_t body[REQUEST_CAPACITY];
    uint8_t frame[REQUEST_CAPACITY + 256];
    size_t body_length = 0, count = 0;
    const char *segment = info->path + 1;

    while (*segment != '\0') {
        const char *slash = strchr(segment, '/');
        size_t length = slash != NULL ? (size_t)(slash - segment) : strlen(segment);
        options[count++] =
            (struct coap_option){COAP_OPTION_URI_PATH, (uint16_t)length, (const uint8_t *)segment};
        segment += length + (slash != NULL);
    }
    if (info->method == COAP_POST)
        coap_option_make_uint(&options[count++], COAP_OPTION_CONTENT_FORMAT, COAP_FORMAT_OCF_CBOR,
                              storage[0]);
    coap_option_make_uint(&options[count++], COAP_OPTION_ACCEPT, COAP_FORMAT_OCF_CBOR, storage[1]);
    coap_option_make_uint(&options[count++], COAP_OPTION_OCF_ACCEPT_VERSION, OCF_VERSION,
                          storage[2]);
    if (info->method == COAP_POST) {
        coap_option_make_uint(&options[count++], COAP_OPTION_OCF_CONTENT_VERSION, OCF_VERSION,
                              storage[3]);
        if (request_body(device, step, body, sizeof(body), &body_length) != 0)
            return;
    }
    if (RAND_bytes_ex(device->kit->libctx, device->token, sizeof(device->token), 0) != 1) {
        device_fail(device, "no random token");
        return;
    }
    long length =
        coap_tcp_encode(frame, sizeof(frame), info->method, device->token, sizeof(device->token),
                        options, count, body_length > 0 ? body : NULL, body_length);
    if (length < 0) {
        device_fail(device, "cannot encode the %s request", info->name);
        return;
    }
    if (device->options->verbose)
        fprintf(stderr, "device %s -> %s %s (%zu bytes payload)\n", device->number,
                info->method == COAP_POST ? "POST" : "GET", info->path, body_length);
    device->state = DEVICE_WAITING;
    if (device->hooks != NULL)
        device->hooks->request_sent(device, step);
    device_send_frame(device, frame, (size_t)length);
}

/* ---- response checks, as the device client applies them ---- */

/* Sets reason and returns -1, so checks read as `return reject(...)`. */
static int reject(char *reason, size_t reason_length, const char *format, ...)
    __attribute__((format(printf, 3, 4)));

static int reject(char *reason, size_t reason_length, const char *format, ...)
{
    va_list arguments;

    va_start(arguments, format);
    vsnprintf(reason, reason_length, format, arguments);
    va_end(arguments);
    return -1;
}

#define REJECT(...) reject(reason, reason_length, __VA_ARGS__)

static bool is_digits(const char *text, size_t count)
{
    for (size_t i = 0; i < count; i++)
        if (text[i] < '0' || text[i] > '9')
            return false;
    return true;
}

/* RFC 3339 date-time with a fractional second, e.g. 2026-11-28T03:29:22.347476Z. */
static bool is_rfc3339_with_fraction(const char *text, size_t length)
{
    size_t i = 19;

    if (length < 22 || !is_digits(text, 4) || text[4] != '-' || !is_digits(text + 5, 2) ||
        text[7] != '-' || !is_digits(text + 8, 2) || (text[10] != 'T' && text[10] != 't') ||
        !is_digits(text + 11, 2) || text[13] != ':' || !is_digits(text + 14, 2) ||
        text[16] != ':' || !is_digits(text + 17, 2) || text[i] != '.')
        return false;
    i++;
    size_t digits = 0;
    while (i < length && text[i] >= '0' && text[i] <= '9') {
        i++;
        digits++;
    }
    if (digits == 0 || i >= length)
        return false;
    if ((text[i] == 'Z' || text[i] == 'z') && i + 1 == length)
        return true;
    return (text[i] == '+' || text[i] == '-') && length - i == 6 && is_digits(text + i + 1, 2) &&
           text[i + 3] == ':' && is_digits(text + i + 4, 2);
}

static bool is_uuid_text(const char *text, size_t length)
{
    struct dps_uuid uuid;
    return uuid_parse(text, length, &uuid) == 0;
}

/* Copies text whole into out; false when it does not fit (a value is never kept cut). */
static bool copy_text(char *out, size_t capacity, const char *text, size_t length)
{
    if (length >= capacity)
        return false;
    memcpy(out, text, length);
    out[length] = '\0';
    return true;
}

/*
 * Walks any item looking for keys the client refuses to see anywhere in a
 * credentials or ACL response. 0 clean, 1 found (name in *found), -1 bad CBOR.
 */
static int find_forbidden_key(struct cbor_reader *reader, const char **found)
{
    struct cbor_container container;
    enum cbor_item_type type = cbor_peek(reader);
    int more;

    if (type == CBOR_TYPE_MAP) {
        if (cbor_enter_map(reader, &container) != 0)
            return -1;
        while ((more = cbor_container_next(reader, &container)) == 1) {
            const char *key;
            size_t key_length;
            if (cbor_peek(reader) == CBOR_TYPE_TEXT) {
                if (cbor_read_text(reader, &key, &key_length) != 0)
                    return -1;
                if (cbor_text_equals(key, key_length, "rowneruuid"))
                    *found = "rowneruuid";
                else if (cbor_text_equals(key, key_length, "credid"))
                    *found = "credid";
                if (*found != NULL)
                    return 1;
            } else if (cbor_skip(reader) != 0) {
                return -1;
            }
            int result = find_forbidden_key(reader, found);
            if (result != 0)
                return result;
        }
        return more;
    }
    if (type == CBOR_TYPE_ARRAY) {
        if (cbor_enter_array(reader, &container) != 0)
            return -1;
        while ((more = cbor_container_next(reader, &container)) == 1) {
            int result = find_forbidden_key(reader, found);
            if (result != 0)
                return result;
        }
        return more;
    }
    return cbor_skip(reader);
}

static int check_time(struct device *device, struct cbor_reader *reader, char *reason,
                      size_t reason_length)
{
    struct cbor_container map;
    bool seen = false;
    int more;

    if (cbor_enter_map(reader, &map) != 0)
        return REJECT("time: payload is not a map");
    while ((more = cbor_container_next(reader, &map)) == 1) {
        const char *key, *value;
        size_t key_length, value_length;
        if (cbor_read_text(reader, &key, &key_length) != 0)
            return REJECT("time: non-text key");
        if (!cbor_text_equals(key, key_length, "time")) {
            if (cbor_skip(reader) != 0)
                return REJECT("time: bad CBOR");
            continue;
        }
        if (cbor_read_text(reader, &value, &value_length) != 0)
            return REJECT("time: \"time\" is not a text string");
        if (!is_rfc3339_with_fraction(value, value_length))
            return REJECT("time: \"%.*s\" is not RFC 3339 with a fraction", (int)value_length,
                          value);
        seen = true;
    }
    if (more != 0)
        return REJECT("time: bad CBOR");
    return seen ? 0 : REJECT("time: no \"time\" key");
}

static int check_ownership(struct device *device, struct cbor_reader *reader, char *reason,
                           size_t reason_length)
{
    struct cbor_container map;
    bool seen = false;
    int more;

    if (cbor_enter_map(reader, &map) != 0)
        return REJECT("ownership: payload is not a map");
    while ((more = cbor_container_next(reader, &map)) == 1) {
        const char *key, *value;
        size_t key_length, value_length;
        if (cbor_read_text(reader, &key, &key_length) != 0)
            return REJECT("ownership: non-text key");
        if (!cbor_text_equals(key, key_length, "devowneruuid"))
            return REJECT("ownership: unexpected property \"%.*s\"", (int)key_length, key);
        if (seen)
            return REJECT("ownership: \"devowneruuid\" twice");
        if (cbor_read_text(reader, &value, &value_length) != 0 ||
            !is_uuid_text(value, value_length) ||
            !copy_text(device->owner, sizeof(device->owner), value, value_length))
            return REJECT("ownership: \"devowneruuid\" is not a UUID");
        seen = true;
    }
    if (more != 0)
        return REJECT("ownership: bad CBOR");
    return seen ? 0 : REJECT("ownership: no \"devowneruuid\"");
}

static int check_gateways(struct cbor_reader *reader, char *reason, size_t reason_length)
{
    struct cbor_container array, map;
    int more, inner;

    if (cbor_enter_array(reader, &array) != 0)
        return REJECT("cloud: x.org.iotivity.servers is not an array");
    while ((more = cbor_container_next(reader, &array)) == 1) {
        bool uri = false, id = false;
        if (cbor_enter_map(reader, &map) != 0)
            return REJECT("cloud: a server entry is not a map");
        while ((inner = cbor_container_next(reader, &map)) == 1) {
            const char *key, *value;
            size_t key_length, value_length;
            if (cbor_read_text(reader, &key, &key_length) != 0)
                return REJECT("cloud: non-text key in a server entry");
            bool is_uri = cbor_text_equals(key, key_length, "uri");
            bool is_id = cbor_text_equals(key, key_length, "id");
            if (!is_uri && !is_id) {
                if (cbor_skip(reader) != 0)
                    return REJECT("cloud: bad CBOR");
                continue;
            }
            if (cbor_read_text(reader, &value, &value_length) != 0)
                return REJECT("cloud: server %s is not a text string", is_uri ? "uri" : "id");
            uri |= is_uri;
            id |= is_id;
        }
        if (inner != 0)
            return REJECT("cloud: bad CBOR");
        if (!uri || !id)
            return REJECT("cloud: a server entry lacks uri or id");
    }
    return more == 0 ? 0 : REJECT("cloud: bad CBOR");
}

static int check_cloud(struct device *device, struct cbor_reader *reader, char *reason,
                       size_t reason_length)
{
    static const char *const required[] = {"apn", "cis", "at", "sid"};
    char *const targets[] = {device->apn, device->cis, NULL, device->sid};
    const size_t sizes[] = {sizeof(device->apn), sizeof(device->cis), 0, sizeof(device->sid)};
    bool seen[4] = {false, false, false, false};
    struct cbor_container map;
    int more;

    if (cbor_enter_map(reader, &map) != 0)
        return REJECT("cloud: payload is not a map");
    while ((more = cbor_container_next(reader, &map)) == 1) {
        const char *key, *value;
        size_t key_length, value_length;
        size_t which = 4;
        if (cbor_read_text(reader, &key, &key_length) != 0)
            return REJECT("cloud: non-text key");
        if (cbor_text_equals(key, key_length, "x.org.iotivity.servers")) {
            if (check_gateways(reader, reason, reason_length) != 0)
                return -1;
            continue;
        }
        for (size_t i = 0; i < 4; i++)
            if (cbor_text_equals(key, key_length, required[i]))
                which = i;
        if (which == 4) {
            if (cbor_skip(reader) != 0)
                return REJECT("cloud: bad CBOR");
            continue;
        }
        if (cbor_read_text(reader, &value, &value_length) != 0)
            return REJECT("cloud: \"%s\" is not a text string", required[which]);
        if (targets[which] != NULL && !copy_text(targets[which], sizes[which], value, value_length))
            return REJECT("cloud: \"%s\" is longer than %zu bytes", required[which],
                          sizes[which] - 1);
        seen[which] = true;
    }
    if (more != 0)
        return REJECT("cloud: bad CBOR");
    for (size_t i = 0; i < 4; i++)
        if (!seen[i])
            return REJECT("cloud: \"%s\" missing", required[i]);
    if (strncmp(device->cis, "coaps+tcp://", 12) != 0)
        return REJECT("cloud: cis \"%s\" is not coaps+tcp://", device->cis);
    return 0;
}

/* One entry of "creds", collected before it is judged. */
struct credential {
    int64_t credtype;
    bool has_credtype;
    const char *subject, *usage, *tag, *data, *encoding;
    size_t subject_length, usage_length, tag_length, data_length, encoding_length;
};

static int read_publicdata(struct cbor_reader *reader, struct credential *credential, char *reason,
                           size_t reason_length)
{
    struct cbor_container map;
    int more;

    if (cbor_enter_map(reader, &map) != 0)
        return REJECT("credentials: publicdata is not a map");
    while ((more = cbor_container_next(reader, &map)) == 1) {
        const char *key;
        size_t key_length;
        if (cbor_read_text(reader, &key, &key_length) != 0)
            return REJECT("credentials: non-text key in publicdata");
        if (cbor_text_equals(key, key_length, "data") && cbor_peek(reader) == CBOR_TYPE_TEXT) {
            if (cbor_read_text(reader, &credential->data, &credential->data_length) != 0)
                return REJECT("credentials: bad publicdata.data");
        } else if (cbor_text_equals(key, key_length, "encoding")) {
            if (cbor_read_text(reader, &credential->encoding, &credential->encoding_length) != 0)
                return REJECT("credentials: publicdata.encoding is not text");
        } else if (cbor_skip(reader) != 0) {
            return REJECT("credentials: bad CBOR");
        }
    }
    return more == 0 ? 0 : REJECT("credentials: bad CBOR");
}

static int read_credential(struct cbor_reader *reader, struct credential *credential, char *reason,
                           size_t reason_length)
{
    struct cbor_container map;
    int more;

    memset(credential, 0, sizeof(*credential));
    if (cbor_enter_map(reader, &map) != 0)
        return REJECT("credentials: an entry is not a map");
    while ((more = cbor_container_next(reader, &map)) == 1) {
        const char *key;
        size_t key_length;
        int result = 0;
        if (cbor_read_text(reader, &key, &key_length) != 0)
            return REJECT("credentials: non-text key");
        if (cbor_text_equals(key, key_length, "credtype")) {
            result = cbor_read_int(reader, &credential->credtype);
            credential->has_credtype = true;
        } else if (cbor_text_equals(key, key_length, "subjectuuid")) {
            result = cbor_read_text(reader, &credential->subject, &credential->subject_length);
        } else if (cbor_text_equals(key, key_length, "credusage")) {
            result = cbor_read_text(reader, &credential->usage, &credential->usage_length);
        } else if (cbor_text_equals(key, key_length, "tag")) {
            result = cbor_read_text(reader, &credential->tag, &credential->tag_length);
        } else if (cbor_text_equals(key, key_length, "publicdata")) {
            if (read_publicdata(reader, credential, reason, reason_length) != 0)
                return -1;
        } else {
            result = cbor_skip(reader);
        }
        if (result != 0)
            return REJECT("credentials: bad value for \"%.*s\"", (int)key_length, key);
    }
    return more == 0 ? 0 : REJECT("credentials: bad CBOR");
}

/* ---- certificates every device receives alike: parsed in full once per thread ---- */

int device_kit_init(struct device_kit *kit, OSSL_LIB_CTX *libctx)
{
    memset(kit, 0, sizeof(*kit));
    kit->libctx = libctx;
    kit->keygen = EVP_PKEY_CTX_new_from_name(libctx, "EC", NULL);
    kit->sign = EVP_MD_CTX_new();
    if (kit->keygen == NULL || kit->sign == NULL || EVP_PKEY_keygen_init(kit->keygen) != 1 ||
        EVP_PKEY_CTX_set_group_name(kit->keygen, "P-256") != 1) {
        device_kit_free(kit);
        ERR_clear_error();
        return -1;
    }
    return 0;
}

void device_kit_free(struct device_kit *kit)
{
    EVP_PKEY_CTX_free(kit->keygen);
    EVP_MD_CTX_free(kit->sign);
    for (unsigned i = 0; i < kit->verdict_count; i++)
        free(kit->verdicts[i].bytes);
    memset(kit, 0, sizeof(*kit));
}

static const struct parsed_verdict *verdict_find(const struct device_kit *kit, const void *bytes,
                                                 size_t length)
{
    for (unsigned i = 0; i < kit->verdict_count; i++)
        if (kit->verdicts[i].length == length && memcmp(kit->verdicts[i].bytes, bytes, length) == 0)
            return &kit->verdicts[i];
    return NULL;
}

static void verdict_add(struct device_kit *kit, const void *bytes, size_t length, time_t not_before,
                        time_t not_after)
{
    uint8_t *copy = malloc(length);
    struct parsed_verdict *slot;

    if (copy == NULL)
        return; /* only a cache */
    memcpy(copy, bytes, length);
    if (kit->verdict_count < KIT_VERDICTS) {
        slot = &kit->verdicts[kit->verdict_count++];
    } else {
        slot = &kit->verdicts[kit->verdict_next];
        kit->verdict_next = (kit->verdict_next + 1) % KIT_VERDICTS;
        free(slot->bytes);
    }
    *slot = (struct parsed_verdict){copy, length, not_before, not_after};
}

int device_kit_verify_server(X509_STORE_CTX *store, void *user)
{
    struct device_kit *kit = user;
    STACK_OF(X509) *presented = X509_STORE_CTX_get0_untrusted(store);
    uint8_t chain[16384];
    size_t length = 0;
    time_t now = time(NULL), not_before = 0, not_after = (time_t)INT64_MAX;
    bool readable = presented != NULL && sk_X509_num(presented) > 0;

    for (int i = 0; readable && i < sk_X509_num(presented); i++) {
        X509 *cert = sk_X509_value(presented, i);
        int size = i2d_X509(cert, NULL);
        uint8_t *out = chain + length;
        struct cert_fields fields;
        if (size <= 0 || length + (size_t)size > sizeof(chain) || i2d_X509(cert, &out) != size ||
            der_read_certificate(chain + length, (size_t)size, &fields) != 0) {
            readable = false;
            break;
        }
        length += (size_t)size;
        if (fields.not_before > not_before)
            not_before = fields.not_before;
        if (fields.not_after < not_after)
            not_after = fields.not_after;
    }
    if (readable) {
        const struct parsed_verdict *known = verdict_find(kit, chain, length);
        if (known != NULL && now >= known->not_before && now < known->not_after)
            return 1; /* these exact certificates verified before, and are still valid */
    }
    int verified = X509_verify_cert(store);
    if (verified == 1 && readable)
        verdict_add(kit, chain, length, not_before, not_after);
    return verified == 1 ? 1 : 0;
}

/* Every certificate of a PEM text read by OpenSSL (d2i_X509): the full parse. */
static int openssl_parses_pem(OSSL_LIB_CTX *libctx, const char *pem, size_t length,
                              unsigned expected)
{
    BIO *bio = BIO_new_mem_buf(pem, (int)length);
    unsigned count = 0;
    X509 *cert;

    if (bio == NULL)
        return -1;
    while ((cert = X509_new_ex(libctx, NULL)) != NULL &&
           PEM_read_bio_X509(bio, &cert, NULL, NULL) != NULL) {
        X509_free(cert);
        count++;
    }
    X509_free(cert);
    ERR_clear_error(); /* the loop ends on "no start line" */
    BIO_free(bio);
    return count == expected ? 0 : -1;
}

#define LEAF_SPKI_CAPACITY 256

/* What read_pem_certificates collects. */
struct pem_certificates {
    long count;
    struct cert_fields first;               /* first.spki points into first_spki */
    uint8_t first_spki[LEAF_SPKI_CAPACITY]; /* empty when it did not fit */
    uint8_t *tail;                          /* the DER of the others, when not NULL */
    size_t tail_capacity, tail_length;
    time_t not_before, not_after; /* when every certificate but the first is valid */
};

/*
 * Reads each block of a PEM text of certificates from its DER
 * (der_read_certificate). 0, or -1 when a block does not parse.
 */
static int read_pem_certificates(const char *pem, size_t length, struct pem_certificates *out)
{
    uint8_t der[4096];
    struct cert_fields fields;
    size_t offset = 0;
    long der_length;

    out->count = 0;
    out->tail_length = 0;
    out->not_before = 0;
    out->not_after = (time_t)INT64_MAX;
    while ((der_length = pem_next_certificate(pem, length, &offset, der, sizeof(der))) > 0) {
        if (der_read_certificate(der, (size_t)der_length, &fields) != 0)
            return -1;
        if (out->count++ == 0) {
            out->first = fields;
            out->first.spki = out->first_spki;
            if (fields.spki_length > sizeof(out->first_spki))
                out->first.spki_length = 0;
            memcpy(out->first_spki, fields.spki, out->first.spki_length);
            continue;
        }
        if (out->tail != NULL) {
            if (out->tail_length + (size_t)der_length > out->tail_capacity)
                return -1;
            memcpy(out->tail + out->tail_length, der, (size_t)der_length);
            out->tail_length += (size_t)der_length;
        }
        if (fields.not_before > out->not_before)
            out->not_before = fields.not_before;
        if (fields.not_after < out->not_after)
            out->not_after = fields.not_after;
    }
    return der_length < 0 || out->count == 0 ? -1 : 0;
}

/* The identity's intermediates, as DER: parsed by OpenSSL once per thread, then recognised. */
static int check_intermediates(struct device *device, const struct pem_certificates *read,
                               char *reason, size_t reason_length)
{
    time_t now = time(NULL);
    const struct parsed_verdict *known = verdict_find(device->kit, read->tail, read->tail_length);

    if (known == NULL) {
        const uint8_t *position = read->tail, *end = read->tail + read->tail_length;
        while (position < end) {
            X509 *cert = X509_new_ex(device->kit->libctx, NULL);
            if (cert == NULL || d2i_X509(&cert, &position, end - position) == NULL) {
                X509_free(cert);
                ERR_clear_error();
                return REJECT("credentials: an identity intermediate does not parse");
            }
            X509_free(cert);
        }
        verdict_add(device->kit, read->tail, read->tail_length, read->not_before, read->not_after);
    }
    if (now < read->not_before || now >= read->not_after)
        return REJECT("credentials: an identity intermediate is not currently valid");
    return 0;
}

/*
 * The identity certificate must be the one the device can use from now on:
 * its subject, its key (the CSR's: the SubjectPublicKeyInfo bytes are
 * compared), EKU serverAuth + clientAuth, valid now and for another hour,
 * and every certificate of the chain valid now.
 */
static int check_identity(struct device *device, const struct credential *credential, char *reason,
                          size_t reason_length)
{
    char expected_cn[64];
    uint8_t tail[8192];
    struct pem_certificates read = {.tail = tail, .tail_capacity = sizeof(tail)};
    time_t now = time(NULL), later = now + CERT_MIN_LIFETIME;

    if (!cbor_text_equals(credential->subject, credential->subject_length, device->di))
        return REJECT("credentials: identity subjectuuid \"%.*s\" is not the device id",
                      (int)credential->subject_length, credential->subject);
    if (credential->data == NULL ||
        !cbor_text_equals(credential->encoding, credential->encoding_length,
                          "oic.sec.encoding.pem"))
        return REJECT("credentials: identity publicdata is not PEM data");
    if (read_pem_certificates(credential->data, credential->data_length, &read) != 0)
        return REJECT("credentials: identity PEM does not parse");
    snprintf(expected_cn, sizeof(expected_cn), "uuid:%s", device->di);
    const struct cert_fields *leaf = &read.first;
    if (strcmp(leaf->cn, expected_cn) != 0)
        return REJECT("credentials: identity CN \"%s\", expected \"%s\"", leaf->cn, expected_cn);
    if (leaf->spki_length != sizeof(device->spki) ||
        memcmp(leaf->spki, device->spki, sizeof(device->spki)) != 0)
        return REJECT("credentials: identity certificate is not for the CSR key");
    if (leaf->eku_present && !(leaf->eku_server && leaf->eku_client))
        return REJECT("credentials: identity lacks EKU clientAuth and serverAuth");
    if (leaf->not_before > now)
        return REJECT("credentials: identity not valid yet");
    if (leaf->not_after <= later)
        return REJECT("credentials: identity expires within an hour");
    if (read.count > 1 && check_intermediates(device, &read, reason, reason_length) != 0)
        return -1;
    free(device->identity_pem);
    device->identity_pem = strndup(credential->data, credential->data_length);
    return 0;
}

/* A trust anchor: parsed in full (OpenSSL) the first time this thread sees its text. */
static int check_trust_anchor(struct device *device, const struct credential *credential,
                              char *reason, size_t reason_length)
{
    size_t have = device->trustca_pem != NULL ? strlen(device->trustca_pem) : 0;
    const struct parsed_verdict *known;
    time_t now = time(NULL), not_before, not_after;
    char *joined;

    if (!cbor_text_equals(credential->subject, credential->subject_length, "*"))
        return REJECT("credentials: trustca subjectuuid is not \"*\"");
    if (credential->data == NULL)
        return REJECT("credentials: trustca has no PEM data");
    known = verdict_find(device->kit, credential->data, credential->data_length);
    if (known != NULL) {
        not_before = known->not_before;
        not_after = known->not_after;
    } else {
        struct pem_certificates read = {.tail = NULL};
        if (read_pem_certificates(credential->data, credential->data_length, &read) != 0 ||
            openssl_parses_pem(device->kit->libctx, credential->data, credential->data_length,
                               (unsigned)read.count) != 0)
            return REJECT("credentials: trustca PEM does not parse");
        not_before =
            read.not_before > read.first.not_before ? read.not_before : read.first.not_before;
        not_after = read.not_after < read.first.not_after ? read.not_after : read.first.not_after;
        verdict_add(device->kit, credential->data, credential->data_length, not_before, not_after);
    }
    if (now < not_before || now >= not_after)
        return REJECT("credentials: trustca is not currently valid");
    joined = realloc(device->trustca_pem, have + credential->data_length + 1);
    if (joined == NULL)
        return REJECT("out of memory");
    memcpy(joined + have, credential->data, credential->data_length);
    joined[have + credential->data_length] = '\0';
    device->trustca_pem = joined;
    return 0;
}

static int check_credentials(struct device *device, struct cbor_reader *reader, char *reason,
                             size_t reason_length)
{
    struct cbor_reader scan = *reader;
    struct cbor_container map, array;
    const char *forbidden = NULL;
    unsigned identities = 0, anchors = 0;
    bool seen = false;
    int more, inner;

    if (find_forbidden_key(&scan, &forbidden) != 0)
        return forbidden != NULL ? REJECT("credentials: \"%s\" present", forbidden)
                                 : REJECT("credentials: bad CBOR");
    free(device->trustca_pem);
    device->trustca_pem = NULL;
    if (cbor_enter_map(reader, &map) != 0)
        return REJECT("credentials: payload is not a map");
    while ((more = cbor_container_next(reader, &map)) == 1) {
        const char *key;
        size_t key_length;
        if (cbor_read_text(reader, &key, &key_length) != 0)
            return REJECT("credentials: non-text key");
        if (!cbor_text_equals(key, key_length, "creds")) {
            if (cbor_skip(reader) != 0)
                return REJECT("credentials: bad CBOR");
            continue;
        }
        seen = true;
        if (cbor_enter_array(reader, &array) != 0)
            return REJECT("credentials: creds is not an array");
        while ((inner = cbor_container_next(reader, &array)) == 1) {
            struct credential credential;
            if (read_credential(reader, &credential, reason, reason_length) != 0)
                return -1;
            if (!cbor_text_equals(credential.tag, credential.tag_length, "dps"))
                return REJECT("credentials: an entry is not tagged \"dps\"");
            if (!credential.has_credtype)
                return REJECT("credentials: an entry has no credtype");
            if (credential.credtype == 1)
                continue; /* the group's pre-shared key */
            if (credential.credtype != 8)
                return REJECT("credentials: unexpected credtype %lld",
                              (long long)credential.credtype);
            if (cbor_text_equals(credential.usage, credential.usage_length, "oic.sec.cred.cert")) {
                identities++;
                if (check_identity(device, &credential, reason, reason_length) != 0)
                    return -1;
            } else if (cbor_text_equals(credential.usage, credential.usage_length,
                                        "oic.sec.cred.trustca")) {
                anchors++;
                if (check_trust_anchor(device, &credential, reason, reason_length) != 0)
                    return -1;
            } else {
                return REJECT("credentials: unexpected credusage \"%.*s\"",
                              (int)credential.usage_length,
                              credential.usage != NULL ? credential.usage : "");
            }
        }
        if (inner != 0)
            return REJECT("credentials: bad CBOR");
    }
    if (more != 0)
        return REJECT("credentials: bad CBOR");
    if (!seen)
        return REJECT("credentials: no \"creds\"");
    if (identities != 1)
        return REJECT("credentials: %u identity certificates, expected exactly 1", identities);
    if (anchors == 0)
        return REJECT("credentials: no trust anchor");
    return 0;
}

static int check_ace_subject(struct cbor_reader *reader, char *reason, size_t reason_length)
{
    struct cbor_container map;
    bool uuid = false, role = false, authority = false, conntype = false;
    int more;

    if (cbor_enter_map(reader, &map) != 0)
        return REJECT("acls: subject is not a map");
    while ((more = cbor_container_next(reader, &map)) == 1) {
        const char *key, *value;
        size_t key_length, value_length;
        if (cbor_read_text(reader, &key, &key_length) != 0 ||
            cbor_read_text(reader, &value, &value_length) != 0)
            return REJECT("acls: subject entries must be text");
        if (cbor_text_equals(key, key_length, "uuid")) {
            if (!is_uuid_text(value, value_length) && !cbor_text_equals(value, value_length, "*"))
                return REJECT("acls: subject uuid \"%.*s\" is not a UUID", (int)value_length,
                              value);
            uuid = true;
        } else if (cbor_text_equals(key, key_length, "role")) {
            role = true;
        } else if (cbor_text_equals(key, key_length, "authority")) {
            authority = true;
        } else if (cbor_text_equals(key, key_length, "conntype")) {
            if (!cbor_text_equals(value, value_length, "auth-crypt") &&
                !cbor_text_equals(value, value_length, "anon-clear"))
                return REJECT("acls: conntype \"%.*s\"", (int)value_length, value);
            conntype = true;
        } else {
            return REJECT("acls: unexpected subject key \"%.*s\"", (int)key_length, key);
        }
    }
    if (more != 0)
        return REJECT("acls: bad CBOR");
    if (authority && !role)
        return REJECT("acls: subject authority without role");
    if ((int)uuid + (int)role + (int)conntype != 1)
        return REJECT("acls: subject needs exactly one of uuid, role, conntype");
    return 0;
}

static int check_ace_resources(struct cbor_reader *reader, char *reason, size_t reason_length)
{
    struct cbor_container array, map, interfaces;
    int more, inner;

    if (cbor_enter_array(reader, &array) != 0)
        return REJECT("acls: resources is not an array");
    while ((more = cbor_container_next(reader, &array)) == 1) {
        if (cbor_enter_map(reader, &map) != 0)
            return REJECT("acls: a resource is not a map");
        while ((inner = cbor_container_next(reader, &map)) == 1) {
            const char *key, *value;
            size_t key_length, value_length;
            if (cbor_read_text(reader, &key, &key_length) != 0)
                return REJECT("acls: non-text resource key");
            if (cbor_text_equals(key, key_length, "href")) {
                if (cbor_read_text(reader, &value, &value_length) != 0)
                    return REJECT("acls: href is not text");
            } else if (cbor_text_equals(key, key_length, "wc")) {
                if (cbor_read_text(reader, &value, &value_length) != 0 ||
                    !(cbor_text_equals(value, value_length, "*") ||
                      cbor_text_equals(value, value_length, "+") ||
                      cbor_text_equals(value, value_length, "-")))
                    return REJECT("acls: wc must be \"*\", \"+\" or \"-\"");
            } else if (cbor_text_equals(key, key_length, "if")) {
                int item;
                if (cbor_enter_array(reader, &interfaces) != 0)
                    return REJECT("acls: if is not an array");
                while ((item = cbor_container_next(reader, &interfaces)) == 1)
                    if (cbor_read_text(reader, &value, &value_length) != 0)
                        return REJECT("acls: if entries must be text");
                if (item != 0)
                    return REJECT("acls: bad CBOR");
            } else {
                return REJECT("acls: unexpected resource key \"%.*s\"", (int)key_length, key);
            }
        }
        if (inner != 0)
            return REJECT("acls: bad CBOR");
    }
    return more == 0 ? 0 : REJECT("acls: bad CBOR");
}

static int check_ace(struct cbor_reader *reader, char *reason, size_t reason_length)
{
    struct cbor_container map;
    bool aceid = false, subject = false, resources = false, permission = false, tag = false;
    int more;

    if (cbor_enter_map(reader, &map) != 0)
        return REJECT("acls: an ACE is not a map");
    while ((more = cbor_container_next(reader, &map)) == 1) {
        const char *key, *value;
        size_t key_length, value_length;
        int64_t number;
        if (cbor_read_text(reader, &key, &key_length) != 0)
            return REJECT("acls: non-text ACE key");
        if (cbor_text_equals(key, key_length, "aceid")) {
            if (cbor_read_int(reader, &number) != 0)
                return REJECT("acls: aceid is not an integer");
            aceid = true;
        } else if (cbor_text_equals(key, key_length, "subject")) {
            if (check_ace_subject(reader, reason, reason_length) != 0)
                return -1;
            subject = true;
        } else if (cbor_text_equals(key, key_length, "resources")) {
            if (check_ace_resources(reader, reason, reason_length) != 0)
                return -1;
            resources = true;
        } else if (cbor_text_equals(key, key_length, "permission")) {
            if (cbor_read_int(reader, &number) != 0 || number < 0 || number > 31)
                return REJECT("acls: permission is not an integer in 0..31");
            permission = true;
        } else if (cbor_text_equals(key, key_length, "tag")) {
            if (cbor_read_text(reader, &value, &value_length) != 0 ||
                !cbor_text_equals(value, value_length, "dps"))
                return REJECT("acls: ACE tag is not \"dps\"");
            tag = true;
        } else {
            return REJECT("acls: unexpected ACE key \"%.*s\"", (int)key_length, key);
        }
    }
    if (more != 0)
        return REJECT("acls: bad CBOR");
    if (!aceid || !subject || !resources || !permission || !tag)
        return REJECT("acls: an ACE lacks aceid, subject, resources, permission or tag");
    return 0;
}

static int check_acls(struct device *device, struct cbor_reader *reader, char *reason,
                      size_t reason_length)
{
    struct cbor_container map, array;
    bool seen = false;
    int more, inner;

    if (cbor_enter_map(reader, &map) != 0)
        return REJECT("acls: payload is not a map");
    while ((more = cbor_container_next(reader, &map)) == 1) {
        const char *key;
        size_t key_length;
        if (cbor_read_text(reader, &key, &key_length) != 0)
            return REJECT("acls: non-text key");
        if (cbor_text_equals(key, key_length, "rowneruuid"))
            return REJECT("acls: \"rowneruuid\" present");
        if (!cbor_text_equals(key, key_length, "aclist2")) {
            if (cbor_skip(reader) != 0)
                return REJECT("acls: bad CBOR");
            continue;
        }
        seen = true;
        if (cbor_enter_array(reader, &array) != 0)
            return REJECT("acls: aclist2 is not an array");
        while ((inner = cbor_container_next(reader, &array)) == 1)
            if (check_ace(reader, reason, reason_length) != 0)
                return -1;
        if (inner != 0)
            return REJECT("acls: bad CBOR");
    }
    if (more != 0)
        return REJECT("acls: bad CBOR");
    return seen ? 0 : REJECT("acls: no \"aclist2\"");
}

static int check_resources(struct device *device, struct cbor_reader *reader, char *reason,
                           size_t reason_length)
{
    if (cbor_skip(reader) != 0)
        return REJECT("resources: bad CBOR");
    return 0;
}

typedef int (*step_check_fn)(struct device *device, struct cbor_reader *reader, char *reason,
                             size_t reason_length);

static const struct {
    uint8_t success;
    step_check_fn check;
} step_checks[STEP_COUNT] = {
    [STEP_TIME] = {COAP_CONTENT, check_time},
    [STEP_OWNERSHIP] = {COAP_CONTENT, check_ownership},
    [STEP_CLOUD] = {COAP_CHANGED, check_cloud},
    [STEP_CREDENTIALS] = {COAP_CHANGED, check_credentials},
    [STEP_ACLS] = {COAP_CONTENT, check_acls},
    [STEP_RESOURCES] = {COAP_CONTENT, check_resources},
};

/* Checks a success response's body: Content-Format, then the step's schema. */
static int check_payload(struct device *device, enum step step, const struct coap_message *message,
                         char *reason, size_t reason_length)
{
    const struct coap_option *option = coap_message_option(message, COAP_OPTION_CONTENT_FORMAT);
    uint32_t format;
    struct cbor_reader reader;

    if (option == NULL || coap_option_uint(option, &format) != 0)
        return REJECT("%s: response has no Content-Format", step_info[step].name);
    if (format != COAP_FORMAT_OCF_CBOR && format != COAP_FORMAT_CBOR)
        return REJECT("%s: Content-Format %u is neither 10000 nor 60", step_info[step].name,
                      format);
    cbor_reader_init(&reader, message->payload, message->payload_length);
    if (step_checks[step].check(device, &reader, reason, reason_length) != 0)
        return -1;
    if (reader.position != reader.end)
        return REJECT("%s: trailing bytes after the payload", step_info[step].name);
    return 0;
}

/* Moves on after a step: next request, or the end of this connection. */
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
    enum step step = device_current_step(device);
    const char *name = step_info[step].name;
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
    if (message->code != step_checks[step].success && !not_found_ok) {
        device_fail_class(device, ERROR_COAP, "%s: %s \"%.*s\"", name, code,
                          (int)message->payload_length,
                          message->payload != NULL ? (const char *)message->payload : "");
        return;
    }
    device->transient_in_a_row = 0;
    if (!not_found_ok && check_payload(device, step, message, reason, sizeof(reason)) != 0) {
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
                              step_info[device_current_step(device)].name);
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
                          step_info[device_current_step(device)].name);
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
    FILE *file = fopen(path, "r");
    EVP_PKEY *key;

    if (file == NULL)
        return NULL;
    key = PEM_read_PrivateKey(file, NULL, NULL, NULL);
    fclose(file);
    ERR_clear_error();
    return key;
}

static void device_output_dir(const struct device *device, char *out, size_t capacity)
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

static int device_init(struct device *device, const struct options *options, unsigned index,
                       struct device_kit *kit)
{
    char cert[4096], key[4096], err[256], name[64], path[4200];
    const char *ca = options->ca_file;
    char default_ca[4096];

    memset(device, 0, sizeof(*device));
    device->options = options;
    device->kit = kit;
    device->index = index;
    clock_gettime(CLOCK_MONOTONIC, &device->started);
    snprintf(device->number, sizeof(device->number), "%04u", index);
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

int device_init_fleet(struct device *device, const struct options *options, unsigned index,
                      const char *di, enum scenario scenario, SSL_CTX *ctx, struct device_kit *kit,
                      const struct device_hooks *hooks)
{
    memset(device, 0, sizeof(*device));
    device->options = options;
    device->hooks = hooks;
    device->kit = kit;
    device->index = index;
    device->ctx = ctx;
    device->retry_transient = true;
    clock_gettime(CLOCK_MONOTONIC, &device->started);
    snprintf(device->number, sizeof(device->number), "%04u", index);
    snprintf(device->di, sizeof(device->di), "%s", di);
    device->plan = scenario_plan(scenario, &device->plan_length);
    if (scenario != SCENARIO_HANDSHAKE && scenario != SCENARIO_TIME)
        return device_key_ready(device);
    return 0;
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
    free(device->identity_pem);
    free(device->trustca_pem);
}

bool device_succeeded(const struct device *device)
{
    if (device->state != DEVICE_FINISHED)
        return false;
    return device->options->expect_step < 0 || device->expected_seen;
}

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
        json_object_set_new(steps, step_info[step].name, json_string(code));
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
        printf(" %s=%s", step_info[step].name, code);
    }
    if (device_succeeded(device))
        printf(device->expected_seen ? " ok (expected)\n" : " ok\n");
    else
        printf(" FAILED: %s\n", device->error[0] != '\0' ? device->error : "incomplete");
}

/* ---- the blocking driver: one device at a time ---- */

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
                            : step_info[device_current_step(device)].name,
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

/* ---- command line ---- */

static void usage(FILE *out)
{
    fprintf(out,
            "usage: dps-loadgen --endpoint coaps+tcp://HOST:PORT --pki DIR --devices N\n"
            "                   [--first K] [--ca FILE] [--out DIR] [--renew] [--di UUID]\n"
            "                   [--expect-code STEP=CODE] [--timeout SECONDS (1-3600)] "
            "[--verbose] [--json]\n"
            "  fleet mode (many devices at once, identities DIR/fleet-SEED.bin):\n"
            "                   (--concurrency N | --rate R [--ramp S]) [--duration S]\n"
            "                   [--threads T] [--seed S] [--scenario full|renew|handshake|time]\n"
            "                   [--mix full=70,renew=30] [--backoff-scale X] [--max-attempts N]\n"
            "                   [--drop-every N] (every Nth device closes its connection once,\n"
            "                   right after sending a request, then retries)\n"
            "                   [--report FILE.json] [--io-backend epoll|io_uring]\n"
            "                   (--endpoint may be repeated: devices take them in turn)\n"
            "       dps-loadgen gen --pki DIR --devices N [--seed S] [--check]\n"
            "       dps-loadgen merge [--report OUT.json] A.json B.json ... (reports of\n"
            "                   generators run at the same time, combined)\n"
            "steps: time ownership cloud credentials acls resources; CODE like 4.03\n");
}

int parse_endpoint(const char *text, struct options *options)
{
    const char *scheme = "coaps+tcp://";
    const char *host, *end, *port = NULL;
    struct endpoint *endpoint;

    if (options->endpoint_count >= MAX_ENDPOINTS || strncmp(text, scheme, strlen(scheme)) != 0)
        return -1;
    endpoint = &options->endpoints[options->endpoint_count];
    host = text + strlen(scheme);
    if (*host == '[') {
        end = strchr(++host, ']');
        if (end == NULL)
            return -1;
        if (end[1] == ':')
            port = end + 2;
        else if (end[1] != '\0')
            return -1;
    } else {
        end = strchr(host, ':');
        if (end != NULL)
            port = end + 1;
        else
            end = host + strlen(host);
    }
    if (end == host || (size_t)(end - host) >= sizeof(endpoint->host))
        return -1;
    memcpy(endpoint->host, host, (size_t)(end - host));
    endpoint->host[end - host] = '\0';
    if (port != NULL && (*port == '\0' || strlen(port) >= sizeof(endpoint->port) ||
                         strspn(port, "0123456789") != strlen(port)))
        return -1;
    snprintf(endpoint->port, sizeof(endpoint->port), "%s", port != NULL ? port : DEFAULT_PORT);
    options->endpoint_count++;
    return 0;
}

static int parse_expect(const char *text, struct options *options)
{
    const char *equals = strchr(text, '=');
    unsigned class_digit, detail;
    char tail;

    if (equals == NULL)
        return -1;
    options->expect_step = -1;
    for (int step = 0; step < STEP_COUNT; step++)
        if (strlen(step_info[step].name) == (size_t)(equals - text) &&
            strncmp(text, step_info[step].name, (size_t)(equals - text)) == 0)
            options->expect_step = step;
    if (options->expect_step < 0 ||
        sscanf(equals + 1, "%1u.%2u%c", &class_digit, &detail, &tail) != 2 || class_digit > 7 ||
        detail > 31)
        return -1;
    options->expect_code = COAP_CODE(class_digit, detail);
    return 0;
}

static int parse_unsigned(const char *text, unsigned minimum, unsigned *value)
{
    char *end;
    unsigned long parsed = strtoul(text, &end, 10);

    if (*text == '\0' || *end != '\0' || parsed < minimum || parsed > 1000000000UL)
        return -1;
    *value = (unsigned)parsed;
    return 0;
}

static int parse_double(const char *text, double minimum, double maximum, double *value)
{
    char *end;
    double parsed = strtod(text, &end);

    if (*text == '\0' || *end != '\0' || !(parsed >= minimum) || !(parsed <= maximum))
        return -1;
    *value = parsed;
    return 0;
}

static int parse_seed(const char *text, uint64_t *seed)
{
    char *end;
    errno = 0;
    unsigned long long parsed = strtoull(text, &end, 10);

    if (*text == '\0' || *end != '\0' || *text == '-' || errno != 0)
        return -1;
    *seed = parsed;
    return 0;
}

static int scenario_by_name(const char *name, size_t length)
{
    for (int scenario = 0; scenario < SCENARIO_COUNT; scenario++)
        if (strlen(scenario_names[scenario]) == length &&
            strncmp(name, scenario_names[scenario], length) == 0)
            return scenario;
    return -1;
}

/* "full=70,renew=30" */
static int parse_mix(const char *text, unsigned mix[SCENARIO_COUNT])
{
    unsigned total = 0;

    memset(mix, 0, SCENARIO_COUNT * sizeof(mix[0]));
    while (*text != '\0') {
        const char *equals = strchr(text, '=');
        char *end;
        if (equals == NULL)
            return -1;
        int scenario = scenario_by_name(text, (size_t)(equals - text));
        unsigned long weight = strtoul(equals + 1, &end, 10);
        if (scenario < 0 || end == equals + 1 || weight > 1000000 || (*end != ',' && *end != '\0'))
            return -1;
        mix[scenario] += (unsigned)weight;
        total += (unsigned)weight;
        text = *end == ',' ? end + 1 : end;
    }
    return total > 0 ? 0 : -1;
}

static int parse_options(int argc, char **argv, struct options *options)
{
    static const struct option long_options[] = {
        {"endpoint", required_argument, NULL, 'e'},
        {"pki", required_argument, NULL, 'p'},
        {"devices", required_argument, NULL, 'n'},
        {"first", required_argument, NULL, 'f'},
        {"ca", required_argument, NULL, 'c'},
        {"out", required_argument, NULL, 'o'},
        {"renew", no_argument, NULL, 'r'},
        {"di", required_argument, NULL, 'd'},
        {"expect-code", required_argument, NULL, 'x'},
        {"timeout", required_argument, NULL, 't'},
        {"verbose", no_argument, NULL, 'v'},
        {"json", no_argument, NULL, 'j'},
        {"concurrency", required_argument, NULL, 'C'},
        {"rate", required_argument, NULL, 'R'},
        {"ramp", required_argument, NULL, 'A'},
        {"duration", required_argument, NULL, 'D'},
        {"threads", required_argument, NULL, 'T'},
        {"seed", required_argument, NULL, 'S'},
        {"scenario", required_argument, NULL, 's'},
        {"mix", required_argument, NULL, 'm'},
        {"backoff-scale", required_argument, NULL, 'b'},
        {"max-attempts", required_argument, NULL, 'M'},
        {"drop-every", required_argument, NULL, 'X'},
        {"report", required_argument, NULL, 'J'},
        {"io-backend", required_argument, NULL, 'B'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    bool have_mix = false;
    unsigned seconds = 10;
    int option;
    struct dps_uuid uuid;

    memset(options, 0, sizeof(*options));
    options->first = 1;
    options->expect_step = -1;
    options->threads = 1;
    options->seed = 1;
    options->backoff_scale = 1.0;
    options->max_attempts = 5;
    options->backend = LOOP_BACKEND_EPOLL;
    options->mix[SCENARIO_FULL] = 1;
    while ((option = getopt_long(argc, argv, "", long_options, NULL)) != -1) {
        int bad = 0, scenario;
        switch (option) {
        case 'e':
            bad = parse_endpoint(optarg, options);
            break;
        case 'p':
            options->pki_dir = optarg;
            bad = strlen(optarg) > MAX_FOLDER_LENGTH;
            break;
        case 'n':
            bad = parse_unsigned(optarg, 1, &options->devices);
            break;
        case 'f':
            bad = parse_unsigned(optarg, 1, &options->first);
            break;
        case 'c':
            options->ca_file = optarg;
            bad = strlen(optarg) > MAX_FOLDER_LENGTH;
            break;
        case 'o':
            options->out_dir = optarg;
            bad = strlen(optarg) > MAX_FOLDER_LENGTH;
            break;
        case 'r':
            options->renew = true;
            break;
        case 'd':
            options->di = optarg;
            bad = uuid_parse(optarg, strlen(optarg), &uuid);
            break;
        case 'x':
            bad = parse_expect(optarg, options);
            break;
        case 't':
            bad = parse_unsigned(optarg, 1, &seconds) || seconds > MAX_TIMEOUT_S;
            break;
        case 'v':
            options->verbose = true;
            break;
        case 'j':
            options->json = true;
            break;
        case 'C':
            bad = parse_unsigned(optarg, 1, &options->concurrency);
            options->fleet = true;
            break;
        case 'R':
            bad = parse_double(optarg, 0.001, 1e7, &options->rate);
            options->fleet = true;
            break;
        case 'A':
            bad = parse_double(optarg, 0, 1e6, &options->ramp_seconds);
            break;
        case 'D':
            bad = parse_double(optarg, 0.001, 1e7, &options->duration_seconds);
            break;
        case 'T':
            bad = parse_unsigned(optarg, 1, &options->threads) || options->threads > 256;
            break;
        case 'S':
            bad = parse_seed(optarg, &options->seed);
            break;
        case 's':
            scenario = scenario_by_name(optarg, strlen(optarg));
            bad = scenario < 0;
            if (!bad) {
                memset(options->mix, 0, sizeof(options->mix));
                options->mix[scenario] = 1;
                have_mix = true;
            }
            break;
        case 'm':
            bad = parse_mix(optarg, options->mix);
            have_mix = true;
            break;
        case 'b':
            bad = parse_double(optarg, 0, 1e6, &options->backoff_scale);
            break;
        case 'M':
            bad = parse_unsigned(optarg, 1, &options->max_attempts);
            break;
        case 'X':
            bad = parse_unsigned(optarg, 1, &options->drop_every);
            break;
        case 'J':
            options->report_path = optarg;
            break;
        case 'B':
            if (strcmp(optarg, "epoll") == 0)
                options->backend = LOOP_BACKEND_EPOLL;
            else if (strcmp(optarg, "io_uring") == 0)
                options->backend = LOOP_BACKEND_URING;
            else
                bad = 1;
            break;
        case 'h':
            usage(stdout);
            exit(0);
        default:
            return -1;
        }
        if (bad != 0) {
            const char *name = "?";
            for (const struct option *entry = long_options; entry->name != NULL; entry++)
                if (entry->val == option)
                    name = entry->name;
            fprintf(stderr, "dps-loadgen: bad value for --%s: %s\n", name, optarg);
            return -1;
        }
    }
    if (optind != argc || options->endpoint_count == 0 || options->pki_dir == NULL)
        return -1;
    options->timeout_ms = (int)(seconds * 1000);
    if (!options->fleet) {
        if (have_mix || options->duration_seconds > 0 || options->report_path != NULL) {
            fprintf(stderr, "dps-loadgen: --scenario, --mix, --duration and --report need "
                            "--concurrency or --rate\n");
            return -1;
        }
        return options->devices == 0 ? -1 : 0;
    }
    if (options->concurrency > 0 && options->rate > 0) {
        fprintf(stderr, "dps-loadgen: --concurrency and --rate exclude each other\n");
        return -1;
    }
    if (options->out_dir != NULL || options->di != NULL) {
        fprintf(stderr, "dps-loadgen: --out and --di are for the sequential mode\n");
        return -1;
    }
    if (options->devices == 0 && options->duration_seconds <= 0) {
        fprintf(stderr, "dps-loadgen: fleet mode needs --devices or --duration\n");
        return -1;
    }
    if (options->renew && !have_mix) {
        memset(options->mix, 0, sizeof(options->mix));
        options->mix[SCENARIO_RENEW] = 1;
    }
    options->progress = isatty(STDERR_FILENO) && !options->verbose;
    return 0;
}

/* dps-loadgen gen --pki DIR --devices N [--seed S] [--check] */
static int generate_main(int argc, char **argv)
{
    static const struct option long_options[] = {
        {"pki", required_argument, NULL, 'p'},  {"devices", required_argument, NULL, 'n'},
        {"seed", required_argument, NULL, 'S'}, {"check", no_argument, NULL, 'k'},
        {"help", no_argument, NULL, 'h'},       {NULL, 0, NULL, 0},
    };
    const char *pki_dir = NULL;
    unsigned devices = 0;
    uint64_t seed = 1;
    bool check = false;
    int option;
    char err[512];
    struct fleet_generation report;

    while ((option = getopt_long(argc, argv, "", long_options, NULL)) != -1) {
        int bad = 0;
        switch (option) {
        case 'p':
            pki_dir = optarg;
            bad = strlen(optarg) > MAX_FOLDER_LENGTH;
            break;
        case 'n':
            bad = parse_unsigned(optarg, 1, &devices);
            break;
        case 'S':
            bad = parse_seed(optarg, &seed);
            break;
        case 'k':
            check = true;
            break;
        default:
            usage(stderr);
            return 2;
        }
        if (bad != 0) {
            const char *name = "seed";
            if (option == 'p')
                name = "pki";
            else if (option == 'n')
                name = "devices";
            fprintf(stderr, "dps-loadgen gen: bad value for --%s: %s\n", name, optarg);
            return 2;
        }
    }
    if (optind != argc || pki_dir == NULL || devices == 0) {
        usage(stderr);
        return 2;
    }
    if (fleet_identities_ensure(pki_dir, seed, devices, &report, err, sizeof(err)) != 0) {
        fprintf(stderr, "dps-loadgen gen: %s\n", err);
        return 1;
    }
    if (report.generated > 0)
        printf("generated %u identities in %.2f s (%.0f/s, %.0f/min), %s/fleet-%llu.bin holds "
               "%u (%.1f MiB)\n",
               report.generated, report.seconds, report.generated / report.seconds,
               60.0 * report.generated / report.seconds, pki_dir, (unsigned long long)seed,
               report.total, (double)report.file_bytes / 1048576.0);
    else
        printf("reused %s/fleet-%llu.bin: %u identities (%.1f MiB)\n", pki_dir,
               (unsigned long long)seed, report.total, (double)report.file_bytes / 1048576.0);
    if (check) {
        long bad = fleet_identities_check(pki_dir, seed, err, sizeof(err));
        if (bad != 0) {
            fprintf(stderr, "dps-loadgen gen: %s\n",
                    bad < 0 ? err : "some identities do not verify");
            if (bad > 0)
                printf("checked %u identities, %ld bad\n", report.total, bad);
            return 1;
        }
        printf("checked %u identities, 0 bad\n", report.total);
    }
    return 0;
}

int main(int argc, char **argv)
{
    struct options options;
    unsigned failed = 0;

    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc > 1 && strcmp(argv[1], "gen") == 0)
        return generate_main(argc - 1, argv + 1);
    if (argc > 1 && strcmp(argv[1], "merge") == 0)
        return merge_main(argc - 1, argv + 1);
    if (parse_options(argc, argv, &options) != 0) {
        usage(stderr);
        return 2;
    }
    if (options.fleet)
        return fleet_run(&options);
    struct device_kit kit;
    if (device_kit_init(&kit, NULL) != 0) {
        fprintf(stderr, "dps-loadgen: cannot set up OpenSSL contexts\n");
        return 1;
    }
    for (unsigned i = 0; i < options.devices; i++)
        if (!run_device(&options, options.first + i, &kit))
            failed++;
    device_kit_free(&kit);
    if (options.json)
        printf("{\"provisioned\":%u,\"devices\":%u,\"failed\":%u}\n", options.devices - failed,
               options.devices, failed);
    else
        printf("provisioned %u/%u devices, %u failed\n", options.devices - failed, options.devices,
               failed);
    return failed == 0 ? 0 : 1;
}

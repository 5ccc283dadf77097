/*
 * loadgen_wire: the simulated device's behaviour on the wire, exactly as
 * the real plgd device client (PROTOCOL.md sections 1, 2 and 4): the
 * request of each step (Uri-Path, the OCF options, the CBOR body written
 * as tinycbor writes it: indefinite-length maps) and the checks that client
 * makes on a response before applying it. The state machine
 * (loadgen_device.c) decides what to send and when; this file only knows
 * what a request looks like and whether an answer is acceptable.
 *
 * What the device does per provisioning is kept cheap without changing a
 * byte on the wire or dropping a check: the CSR is built from DER pieces
 * (loadgen_der.c), the identity certificate is read from its DER, and what
 * every device receives alike is recognised by the thread's kit
 * (loadgen_kit.c).
 */
#include "common/error.h"
#include "perf/loadgen_wire.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>

#include "crypto/uuid.h"
#include "dataplane/cbor.h"
#include "dataplane/coap_tcp.h"
#include "dataplane/tls.h"
#include "perf/loadgen_der.h"

#define REQUEST_CAPACITY 4096
#define OCF_VERSION 2048
#define CERT_MIN_LIFETIME 3600 /* the client's default expiry limit, seconds */

/* ---- request bodies: indefinite-length maps, as tinycbor writes them ---- */

struct dps_cbor_writer {
    uint8_t *data;
    size_t capacity;
    size_t length;
    bool overflow;
};

static void dps_cbor_put_byte(struct dps_cbor_writer *writer, uint8_t byte)
{
    if (writer->length >= writer->capacity) {
        writer->overflow = true;
        return;
    }
    writer->data[writer->length++] = byte;
}

static void dps_cbor_put_text(struct dps_cbor_writer *writer, const char *text)
{
    size_t length = strlen(text);

    if (length < 24) {
        dps_cbor_put_byte(writer, (uint8_t)(0x60 | length));
    } else if (length < 0x100) {
        dps_cbor_put_byte(writer, 0x78);
        dps_cbor_put_byte(writer, (uint8_t)length);
    } else {
        dps_cbor_put_byte(writer, 0x79);
        dps_cbor_put_byte(writer, (uint8_t)(length >> 8));
        dps_cbor_put_byte(writer, (uint8_t)length);
    }
    for (size_t i = 0; i < length; i++)
        dps_cbor_put_byte(writer, (uint8_t)text[i]);
}

static void dps_cbor_put_map_start(struct dps_cbor_writer *writer)
{
    dps_cbor_put_byte(writer, 0xBF);
}

static void dps_cbor_put_break(struct dps_cbor_writer *writer)
{
    dps_cbor_put_byte(writer, 0xFF);
}

/* Builds the payload of a POST step; -1 when it cannot be made. */
static int request_body(struct device *device, enum dps_step step, uint8_t *out, size_t capacity,
                        size_t *length)
{
    struct dps_cbor_writer writer = {out, capacity, 0, false};

    dps_cbor_put_map_start(&writer);
    dps_cbor_put_text(&writer, "di");
    dps_cbor_put_text(&writer, device->di);
    if (step == STEP_CLOUD) {
        dps_cbor_put_text(&writer, "selectedGateway");
        dps_cbor_put_map_start(&writer);
        dps_cbor_put_text(&writer, "uri");
        dps_cbor_put_text(&writer, "coaps+tcp://127.0.0.1");
        dps_cbor_put_text(&writer, "id");
        dps_cbor_put_text(&writer, "00000000-0000-0000-0000-000000000000");
        dps_cbor_put_break(&writer);
    } else {
        char signed_now[CSR_PEM_CAPACITY];
        const char *csr = device->csr_pem;
        if (csr == NULL) {
            if (csr_pem(device->kit->sign, device->kit->libctx, device->key, device->spki,
                        device->di, signed_now) != 0) {
                ERR_clear_error();
                device_fail(device, "cannot create the CSR");
                return -1;
            }
            csr = signed_now;
        }
        dps_cbor_put_text(&writer, "csr");
        dps_cbor_put_map_start(&writer);
        dps_cbor_put_text(&writer, "data");
        dps_cbor_put_text(&writer, csr);
        dps_cbor_put_text(&writer, "encoding");
        dps_cbor_put_text(&writer, "oic.sec.encoding.pem");
        dps_cbor_put_break(&writer);
    }
    dps_cbor_put_break(&writer);
    if (writer.overflow) {
        device_fail(device, "request body too large");
        return -1;
    }
    *length = writer.length;
    return 0;
}

/* ---- CoAP requests ---- */

void device_send_frame(struct device *device, const uint8_t *frame, size_t length)
{
    if (tls_conn_write(device->tls, frame, length) != 0)
        device_fail(device, "TLS write: %s", tls_conn_error(device->tls));
}

void device_send_request(struct device *device)
{
    enum dps_step step = device_current_step(device);
    const struct dps_step_route *info = &dps_step_routes[step];
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
    if (info->post)
        coap_option_make_uint(&options[count++], COAP_OPTION_CONTENT_FORMAT, COAP_FORMAT_OCF_CBOR,
                              storage[0]);
    coap_option_make_uint(&options[count++], COAP_OPTION_ACCEPT, COAP_FORMAT_OCF_CBOR, storage[1]);
    coap_option_make_uint(&options[count++], COAP_OPTION_OCF_ACCEPT_VERSION, OCF_VERSION,
                          storage[2]);
    if (info->post) {
        coap_option_make_uint(&options[count++], COAP_OPTION_OCF_CONTENT_VERSION, OCF_VERSION,
                              storage[3]);
        if (request_body(device, step, body, sizeof(body), &body_length) != 0)
            return;
    }
    if (RAND_bytes_ex(device->kit->libctx, device->token, sizeof(device->token), 0) != 1) {
        device_fail(device, "no random token");
        return;
    }
    long length = coap_tcp_encode(frame, sizeof(frame), info->post ? COAP_POST : COAP_GET,
                                  device->token, sizeof(device->token), options, count,
                                  body_length > 0 ? body : NULL, body_length);
    if (length < 0) {
        device_fail(device, "cannot encode the %s request", info->name);
        return;
    }
    if (device->options->verbose)
        fprintf(stderr, "device %s -> %s %s (%zu bytes payload)\n", device->number,
                info->post ? "POST" : "GET", info->path, body_length);
    device->state = DEVICE_WAITING;
    if (device->hooks != NULL)
        device->hooks->request_sent(device, step);
    device_send_frame(device, frame, (size_t)length);
}

/* ---- response checks, as the device client applies them ---- */

#define REJECT(...) error_set(reason, reason_length, __VA_ARGS__)

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
    return uuid_text_parse(text, length, &uuid) == 0;
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
static int find_forbidden_key(struct dps_cbor_reader *reader, const char **found)
{
    struct dps_cbor_container container;
    enum dps_cbor_item_type type = dps_cbor_peek(reader);
    int more;

    if (type == DPS_CBOR_TYPE_MAP) {
        if (dps_cbor_enter_map(reader, &container) != 0)
            return -1;
        while ((more = dps_cbor_container_next(reader, &container)) == 1) {
            const char *key;
            size_t key_length;
            if (dps_cbor_peek(reader) == DPS_CBOR_TYPE_TEXT) {
                if (dps_cbor_read_text(reader, &key, &key_length) != 0)
                    return -1;
                if (dps_cbor_text_equals(key, key_length, "rowneruuid"))
                    *found = "rowneruuid";
                else if (dps_cbor_text_equals(key, key_length, "credid"))
                    *found = "credid";
                if (*found != NULL)
                    return 1;
            } else if (dps_cbor_skip(reader) != 0) {
                return -1;
            }
            int result = find_forbidden_key(reader, found);
            if (result != 0)
                return result;
        }
        return more;
    }
    if (type == DPS_CBOR_TYPE_ARRAY) {
        if (dps_cbor_enter_array(reader, &container) != 0)
            return -1;
        while ((more = dps_cbor_container_next(reader, &container)) == 1) {
            int result = find_forbidden_key(reader, found);
            if (result != 0)
                return result;
        }
        return more;
    }
    return dps_cbor_skip(reader);
}

static int check_time(struct device *device, struct dps_cbor_reader *reader, char *reason,
                      size_t reason_length)
{
    struct dps_cbor_container map;
    bool seen = false;
    int more;

    if (dps_cbor_enter_map(reader, &map) != 0)
        return REJECT("time: payload is not a map");
    while ((more = dps_cbor_container_next(reader, &map)) == 1) {
        const char *key, *value;
        size_t key_length, value_length;
        if (dps_cbor_read_text(reader, &key, &key_length) != 0)
            return REJECT("time: non-text key");
        if (!dps_cbor_text_equals(key, key_length, "time")) {
            if (dps_cbor_skip(reader) != 0)
                return REJECT("time: bad CBOR");
            continue;
        }
        if (dps_cbor_read_text(reader, &value, &value_length) != 0)
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

static int check_ownership(struct device *device, struct dps_cbor_reader *reader, char *reason,
                           size_t reason_length)
{
    struct dps_cbor_container map;
    bool seen = false;
    int more;

    if (dps_cbor_enter_map(reader, &map) != 0)
        return REJECT("ownership: payload is not a map");
    while ((more = dps_cbor_container_next(reader, &map)) == 1) {
        const char *key, *value;
        size_t key_length, value_length;
        if (dps_cbor_read_text(reader, &key, &key_length) != 0)
            return REJECT("ownership: non-text key");
        if (!dps_cbor_text_equals(key, key_length, "devowneruuid"))
            return REJECT("ownership: unexpected property \"%.*s\"", (int)key_length, key);
        if (seen)
            return REJECT("ownership: \"devowneruuid\" twice");
        if (dps_cbor_read_text(reader, &value, &value_length) != 0 ||
            !is_uuid_text(value, value_length) ||
            !copy_text(device->owner, sizeof(device->owner), value, value_length))
            return REJECT("ownership: \"devowneruuid\" is not a UUID");
        seen = true;
    }
    if (more != 0)
        return REJECT("ownership: bad CBOR");
    return seen ? 0 : REJECT("ownership: no \"devowneruuid\"");
}

static int check_gateways(struct dps_cbor_reader *reader, char *reason, size_t reason_length)
{
    struct dps_cbor_container array, map;
    int more, inner;

    if (dps_cbor_enter_array(reader, &array) != 0)
        return REJECT("cloud: x.org.iotivity.servers is not an array");
    while ((more = dps_cbor_container_next(reader, &array)) == 1) {
        bool uri = false, id = false;
        if (dps_cbor_enter_map(reader, &map) != 0)
            return REJECT("cloud: a server entry is not a map");
        while ((inner = dps_cbor_container_next(reader, &map)) == 1) {
            const char *key, *value;
            size_t key_length, value_length;
            if (dps_cbor_read_text(reader, &key, &key_length) != 0)
                return REJECT("cloud: non-text key in a server entry");
            bool is_uri = dps_cbor_text_equals(key, key_length, "uri");
            bool is_id = dps_cbor_text_equals(key, key_length, "id");
            if (!is_uri && !is_id) {
                if (dps_cbor_skip(reader) != 0)
                    return REJECT("cloud: bad CBOR");
                continue;
            }
            if (dps_cbor_read_text(reader, &value, &value_length) != 0)
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

static int check_cloud(struct device *device, struct dps_cbor_reader *reader, char *reason,
                       size_t reason_length)
{
    static const char *const required[] = {"apn", "cis", "at", "sid"};
    char *const targets[] = {device->apn, device->cis, NULL, device->sid};
    const size_t sizes[] = {sizeof(device->apn), sizeof(device->cis), 0, sizeof(device->sid)};
    bool seen[4] = {false, false, false, false};
    struct dps_cbor_container map;
    int more;

    if (dps_cbor_enter_map(reader, &map) != 0)
        return REJECT("cloud: payload is not a map");
    while ((more = dps_cbor_container_next(reader, &map)) == 1) {
        const char *key, *value;
        size_t key_length, value_length;
        size_t which = 4;
        if (dps_cbor_read_text(reader, &key, &key_length) != 0)
            return REJECT("cloud: non-text key");
        if (dps_cbor_text_equals(key, key_length, "x.org.iotivity.servers")) {
            if (check_gateways(reader, reason, reason_length) != 0)
                return -1;
            continue;
        }
        for (size_t i = 0; i < 4; i++)
            if (dps_cbor_text_equals(key, key_length, required[i]))
                which = i;
        if (which == 4) {
            if (dps_cbor_skip(reader) != 0)
                return REJECT("cloud: bad CBOR");
            continue;
        }
        if (dps_cbor_read_text(reader, &value, &value_length) != 0)
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

static int read_publicdata(struct dps_cbor_reader *reader, struct credential *credential,
                           char *reason, size_t reason_length)
{
    struct dps_cbor_container map;
    int more;

    if (dps_cbor_enter_map(reader, &map) != 0)
        return REJECT("credentials: publicdata is not a map");
    while ((more = dps_cbor_container_next(reader, &map)) == 1) {
        const char *key;
        size_t key_length;
        if (dps_cbor_read_text(reader, &key, &key_length) != 0)
            return REJECT("credentials: non-text key in publicdata");
        if (dps_cbor_text_equals(key, key_length, "data") &&
            dps_cbor_peek(reader) == DPS_CBOR_TYPE_TEXT) {
            if (dps_cbor_read_text(reader, &credential->data, &credential->data_length) != 0)
                return REJECT("credentials: bad publicdata.data");
        } else if (dps_cbor_text_equals(key, key_length, "encoding")) {
            if (dps_cbor_read_text(reader, &credential->encoding, &credential->encoding_length) !=
                0)
                return REJECT("credentials: publicdata.encoding is not text");
        } else if (dps_cbor_skip(reader) != 0) {
            return REJECT("credentials: bad CBOR");
        }
    }
    return more == 0 ? 0 : REJECT("credentials: bad CBOR");
}

static int read_credential(struct dps_cbor_reader *reader, struct credential *credential,
                           char *reason, size_t reason_length)
{
    struct dps_cbor_container map;
    int more;

    memset(credential, 0, sizeof(*credential));
    if (dps_cbor_enter_map(reader, &map) != 0)
        return REJECT("credentials: an entry is not a map");
    while ((more = dps_cbor_container_next(reader, &map)) == 1) {
        const char *key;
        size_t key_length;
        int result = 0;
        if (dps_cbor_read_text(reader, &key, &key_length) != 0)
            return REJECT("credentials: non-text key");
        if (dps_cbor_text_equals(key, key_length, "credtype")) {
            result = dps_cbor_read_int(reader, &credential->credtype);
            credential->has_credtype = true;
        } else if (dps_cbor_text_equals(key, key_length, "subjectuuid")) {
            result = dps_cbor_read_text(reader, &credential->subject, &credential->subject_length);
        } else if (dps_cbor_text_equals(key, key_length, "credusage")) {
            result = dps_cbor_read_text(reader, &credential->usage, &credential->usage_length);
        } else if (dps_cbor_text_equals(key, key_length, "tag")) {
            result = dps_cbor_read_text(reader, &credential->tag, &credential->tag_length);
        } else if (dps_cbor_text_equals(key, key_length, "publicdata")) {
            if (read_publicdata(reader, credential, reason, reason_length) != 0)
                return -1;
        } else {
            result = dps_cbor_skip(reader);
        }
        if (result != 0)
            return REJECT("credentials: bad value for \"%.*s\"", (int)key_length, key);
    }
    return more == 0 ? 0 : REJECT("credentials: bad CBOR");
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
    struct cert_fields first;               /* first.spki and first.serial point here: */
    uint8_t first_spki[LEAF_SPKI_CAPACITY]; /* empty when it did not fit */
    uint8_t first_serial[21];               /* RFC 5280: 20 octets, and a sign octet */
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
            out->first.serial = out->first_serial;
            if (fields.serial_length > sizeof(out->first_serial))
                out->first.serial_length = 0;
            memcpy(out->first_serial, fields.serial, out->first.serial_length);
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
    const struct parsed_verdict *known =
        device_kit_find(device->kit, read->tail, read->tail_length);

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
        device_kit_remember(device->kit, read->tail, read->tail_length, read->not_before,
                            read->not_after);
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

    if (!dps_cbor_text_equals(credential->subject, credential->subject_length, device->di))
        return REJECT("credentials: identity subjectuuid \"%.*s\" is not the device id",
                      (int)credential->subject_length, credential->subject);
    if (credential->data == NULL ||
        !dps_cbor_text_equals(credential->encoding, credential->encoding_length,
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
    if (device->hooks != NULL && device->hooks->identity != NULL)
        device->hooks->identity(device, leaf->serial, leaf->serial_length);
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

    if (!dps_cbor_text_equals(credential->subject, credential->subject_length, "*"))
        return REJECT("credentials: trustca subjectuuid is not \"*\"");
    if (credential->data == NULL)
        return REJECT("credentials: trustca has no PEM data");
    known = device_kit_find(device->kit, credential->data, credential->data_length);
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
        device_kit_remember(device->kit, credential->data, credential->data_length, not_before,
                            not_after);
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

static int check_credentials(struct device *device, struct dps_cbor_reader *reader, char *reason,
                             size_t reason_length)
{
    struct dps_cbor_reader scan = *reader;
    struct dps_cbor_container map, array;
    const char *forbidden = NULL;
    unsigned identities = 0, anchors = 0;
    bool seen = false;
    int more, inner;

    if (find_forbidden_key(&scan, &forbidden) != 0)
        return forbidden != NULL ? REJECT("credentials: \"%s\" present", forbidden)
                                 : REJECT("credentials: bad CBOR");
    free(device->trustca_pem);
    device->trustca_pem = NULL;
    if (dps_cbor_enter_map(reader, &map) != 0)
        return REJECT("credentials: payload is not a map");
    while ((more = dps_cbor_container_next(reader, &map)) == 1) {
        const char *key;
        size_t key_length;
        if (dps_cbor_read_text(reader, &key, &key_length) != 0)
            return REJECT("credentials: non-text key");
        if (!dps_cbor_text_equals(key, key_length, "creds")) {
            if (dps_cbor_skip(reader) != 0)
                return REJECT("credentials: bad CBOR");
            continue;
        }
        seen = true;
        if (dps_cbor_enter_array(reader, &array) != 0)
            return REJECT("credentials: creds is not an array");
        while ((inner = dps_cbor_container_next(reader, &array)) == 1) {
            struct credential credential;
            if (read_credential(reader, &credential, reason, reason_length) != 0)
                return -1;
            if (!dps_cbor_text_equals(credential.tag, credential.tag_length, "dps"))
                return REJECT("credentials: an entry is not tagged \"dps\"");
            if (!credential.has_credtype)
                return REJECT("credentials: an entry has no credtype");
            if (credential.credtype == 1)
                continue; /* the group's pre-shared key */
            if (credential.credtype != 8)
                return REJECT("credentials: unexpected credtype %lld",
                              (long long)credential.credtype);
            if (dps_cbor_text_equals(credential.usage, credential.usage_length,
                                     "oic.sec.cred.cert")) {
                identities++;
                if (check_identity(device, &credential, reason, reason_length) != 0)
                    return -1;
            } else if (dps_cbor_text_equals(credential.usage, credential.usage_length,
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

static int check_ace_subject(struct dps_cbor_reader *reader, char *reason, size_t reason_length)
{
    struct dps_cbor_container map;
    bool uuid = false, role = false, authority = false, conntype = false;
    int more;

    if (dps_cbor_enter_map(reader, &map) != 0)
        return REJECT("acls: subject is not a map");
    while ((more = dps_cbor_container_next(reader, &map)) == 1) {
        const char *key, *value;
        size_t key_length, value_length;
        if (dps_cbor_read_text(reader, &key, &key_length) != 0 ||
            dps_cbor_read_text(reader, &value, &value_length) != 0)
            return REJECT("acls: subject entries must be text");
        if (dps_cbor_text_equals(key, key_length, "uuid")) {
            if (!is_uuid_text(value, value_length) &&
                !dps_cbor_text_equals(value, value_length, "*"))
                return REJECT("acls: subject uuid \"%.*s\" is not a UUID", (int)value_length,
                              value);
            uuid = true;
        } else if (dps_cbor_text_equals(key, key_length, "role")) {
            role = true;
        } else if (dps_cbor_text_equals(key, key_length, "authority")) {
            authority = true;
        } else if (dps_cbor_text_equals(key, key_length, "conntype")) {
            if (!dps_cbor_text_equals(value, value_length, "auth-crypt") &&
                !dps_cbor_text_equals(value, value_length, "anon-clear"))
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

static int check_ace_resources(struct dps_cbor_reader *reader, char *reason, size_t reason_length)
{
    struct dps_cbor_container array, map, interfaces;
    int more, inner;

    if (dps_cbor_enter_array(reader, &array) != 0)
        return REJECT("acls: resources is not an array");
    while ((more = dps_cbor_container_next(reader, &array)) == 1) {
        if (dps_cbor_enter_map(reader, &map) != 0)
            return REJECT("acls: a resource is not a map");
        while ((inner = dps_cbor_container_next(reader, &map)) == 1) {
            const char *key, *value;
            size_t key_length, value_length;
            if (dps_cbor_read_text(reader, &key, &key_length) != 0)
                return REJECT("acls: non-text resource key");
            if (dps_cbor_text_equals(key, key_length, "href")) {
                if (dps_cbor_read_text(reader, &value, &value_length) != 0)
                    return REJECT("acls: href is not text");
            } else if (dps_cbor_text_equals(key, key_length, "wc")) {
                if (dps_cbor_read_text(reader, &value, &value_length) != 0 ||
                    !(dps_cbor_text_equals(value, value_length, "*") ||
                      dps_cbor_text_equals(value, value_length, "+") ||
                      dps_cbor_text_equals(value, value_length, "-")))
                    return REJECT("acls: wc must be \"*\", \"+\" or \"-\"");
            } else if (dps_cbor_text_equals(key, key_length, "if")) {
                int item;
                if (dps_cbor_enter_array(reader, &interfaces) != 0)
                    return REJECT("acls: if is not an array");
                while ((item = dps_cbor_container_next(reader, &interfaces)) == 1)
                    if (dps_cbor_read_text(reader, &value, &value_length) != 0)
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

static int check_ace(struct dps_cbor_reader *reader, char *reason, size_t reason_length)
{
    struct dps_cbor_container map;
    bool aceid = false, subject = false, resources = false, permission = false, tag = false;
    int more;

    if (dps_cbor_enter_map(reader, &map) != 0)
        return REJECT("acls: an ACE is not a map");
    while ((more = dps_cbor_container_next(reader, &map)) == 1) {
        const char *key, *value;
        size_t key_length, value_length;
        int64_t number;
        if (dps_cbor_read_text(reader, &key, &key_length) != 0)
            return REJECT("acls: non-text ACE key");
        if (dps_cbor_text_equals(key, key_length, "aceid")) {
            if (dps_cbor_read_int(reader, &number) != 0)
                return REJECT("acls: aceid is not an integer");
            aceid = true;
        } else if (dps_cbor_text_equals(key, key_length, "subject")) {
            if (check_ace_subject(reader, reason, reason_length) != 0)
                return -1;
            subject = true;
        } else if (dps_cbor_text_equals(key, key_length, "resources")) {
            if (check_ace_resources(reader, reason, reason_length) != 0)
                return -1;
            resources = true;
        } else if (dps_cbor_text_equals(key, key_length, "permission")) {
            if (dps_cbor_read_int(reader, &number) != 0 || number < 0 || number > 31)
                return REJECT("acls: permission is not an integer in 0..31");
            permission = true;
        } else if (dps_cbor_text_equals(key, key_length, "tag")) {
            if (dps_cbor_read_text(reader, &value, &value_length) != 0 ||
                !dps_cbor_text_equals(value, value_length, "dps"))
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

static int check_acls(struct device *device, struct dps_cbor_reader *reader, char *reason,
                      size_t reason_length)
{
    struct dps_cbor_container map, array;
    bool seen = false;
    int more, inner;

    if (dps_cbor_enter_map(reader, &map) != 0)
        return REJECT("acls: payload is not a map");
    while ((more = dps_cbor_container_next(reader, &map)) == 1) {
        const char *key;
        size_t key_length;
        if (dps_cbor_read_text(reader, &key, &key_length) != 0)
            return REJECT("acls: non-text key");
        if (dps_cbor_text_equals(key, key_length, "rowneruuid"))
            return REJECT("acls: \"rowneruuid\" present");
        if (!dps_cbor_text_equals(key, key_length, "aclist2")) {
            if (dps_cbor_skip(reader) != 0)
                return REJECT("acls: bad CBOR");
            continue;
        }
        seen = true;
        if (dps_cbor_enter_array(reader, &array) != 0)
            return REJECT("acls: aclist2 is not an array");
        while ((inner = dps_cbor_container_next(reader, &array)) == 1)
            if (check_ace(reader, reason, reason_length) != 0)
                return -1;
        if (inner != 0)
            return REJECT("acls: bad CBOR");
    }
    if (more != 0)
        return REJECT("acls: bad CBOR");
    return seen ? 0 : REJECT("acls: no \"aclist2\"");
}

static int check_resources(struct device *device, struct dps_cbor_reader *reader, char *reason,
                           size_t reason_length)
{
    if (dps_cbor_skip(reader) != 0)
        return REJECT("resources: bad CBOR");
    return 0;
}

typedef int (*step_check_fn)(struct device *device, struct dps_cbor_reader *reader, char *reason,
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

uint8_t wire_success_code(enum dps_step step)
{
    return step_checks[step].success;
}

int wire_check_payload(struct device *device, enum dps_step step,
                       const struct coap_message *message, char *reason, size_t reason_length)
{
    const struct coap_option *option = coap_message_option(message, COAP_OPTION_CONTENT_FORMAT);
    uint32_t format;
    struct dps_cbor_reader reader;

    if (option == NULL || coap_option_uint(option, &format) != 0)
        return REJECT("%s: response has no Content-Format", dps_step_routes[step].name);
    if (format != COAP_FORMAT_OCF_CBOR && format != COAP_FORMAT_CBOR)
        return REJECT("%s: Content-Format %u is neither 10000 nor 60", dps_step_routes[step].name,
                      format);
    dps_cbor_reader_init(&reader, message->payload, message->payload_length);
    if (step_checks[step].check(device, &reader, reason, reason_length) != 0)
        return -1;
    if (reader.position != reader.end)
        return REJECT("%s: trailing bytes after the payload", dps_step_routes[step].name);
    return 0;
}

/* Moves on after a step: next request, or the end of this connection. */

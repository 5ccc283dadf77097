/*
 * dps_requests: the request bodies of dps_requests.h, with the streaming
 * CBOR reader (dataplane/cbor.h).
 */
#include "dataplane/dps_requests.h"

#include <stdbool.h>

#include "crypto/uuid.h"
#include "dataplane/cbor.h"

/* Reads a text value into a NUL-terminated UUID buffer; -1 unless it is a UUID. */
static int read_uuid_text(struct dps_cbor_reader *reader, char out[37])
{
    const char *text;
    size_t length;
    struct dps_uuid uuid;
    if (dps_cbor_read_text(reader, &text, &length) != 0 ||
        uuid_text_parse(text, length, &uuid) != 0) {
        return -1;
    }
    uuid_format(&uuid, out);
    return 0;
}

/*
 * A map member's reader: it reads the value at reader (0), leaves it to be
 * skipped (1), or fails (-1).
 */
typedef int member_fn(struct dps_cbor_reader *reader, const char *key, size_t key_length,
                      void *user);

/* Reads the map at reader, each member through member(): 0, or -1. */
static int read_map(struct dps_cbor_reader *reader, member_fn *member, void *user)
{
    struct dps_cbor_container map;
    if (dps_cbor_enter_map(reader, &map) != 0) {
        return -1;
    }
    const char *key;
    size_t key_length;
    int more;
    while ((more = dps_cbor_map_next_key(reader, &map, &key, &key_length)) == 1) {
        int read = member(reader, key, key_length, user);
        if (read < 0 || (read > 0 && dps_cbor_skip(reader) != 0)) {
            return -1;
        }
    }
    return more < 0 ? -1 : 0;
}

static int gateway_member(struct dps_cbor_reader *reader, const char *key, size_t key_length,
                          void *user)
{
    struct cloud_request *out = user;
    if (dps_cbor_peek(reader) != DPS_CBOR_TYPE_TEXT) {
        return 1;
    }
    if (dps_cbor_text_equals(key, key_length, "uri")) {
        dps_cbor_read_text(reader, &out->gateway_uri, &out->gateway_uri_length);
        return 0;
    }
    if (dps_cbor_text_equals(key, key_length, "id")) {
        if (read_uuid_text(reader, out->gateway_id) != 0) {
            out->gateway_id[0] = '\0';
        }
        return 0;
    }
    return 1;
}

static int cloud_member(struct dps_cbor_reader *reader, const char *key, size_t key_length,
                        void *user)
{
    struct cloud_request *out = user;
    if (dps_cbor_text_equals(key, key_length, "di")) {
        return read_uuid_text(reader, out->device_id) != 0 ? -1 : 0;
    }
    if (dps_cbor_text_equals(key, key_length, "selectedGateway") &&
        dps_cbor_peek(reader) == DPS_CBOR_TYPE_MAP) {
        return read_map(reader, gateway_member, out);
    }
    return 1;
}

int dps_parse_cloud_request(const uint8_t *payload, size_t length, struct cloud_request *out)
{
    struct dps_cbor_reader reader;
    dps_cbor_reader_init(&reader, payload, length);
    if (read_map(&reader, cloud_member, out) != 0) {
        return -1;
    }
    return out->device_id[0] == '\0' ? -1 : 0;
}

/* What credentials' members fill in. */
struct credentials_request {
    char *device_id;
    const char **pem;
    size_t *pem_length;
    const char **problem;
    bool encoding_ok;
};

static int csr_member(struct dps_cbor_reader *reader, const char *key, size_t key_length,
                      void *user)
{
    struct credentials_request *out = user;
    const char *value;
    size_t value_length;
    if (dps_cbor_text_equals(key, key_length, "encoding")) {
        if (dps_cbor_read_text(reader, &value, &value_length) != 0) {
            return -1;
        }
        out->encoding_ok = dps_cbor_text_equals(value, value_length, "oic.sec.encoding.pem");
        return 0;
    }
    if (dps_cbor_text_equals(key, key_length, "data")) {
        return dps_cbor_read_text(reader, out->pem, out->pem_length) != 0 ? -1 : 0;
    }
    return 1;
}

static int credentials_member(struct dps_cbor_reader *reader, const char *key, size_t key_length,
                              void *user)
{
    struct credentials_request *out = user;
    if (dps_cbor_text_equals(key, key_length, "di")) {
        if (read_uuid_text(reader, out->device_id) != 0) {
            *out->problem = "\"di\" is not a UUID";
            return -1;
        }
        return 0;
    }
    if (dps_cbor_text_equals(key, key_length, "csr")) {
        return read_map(reader, csr_member, out);
    }
    return 1;
}

int dps_parse_credentials_request(const uint8_t *payload, size_t length, char device_id[37],
                                  const char **pem, size_t *pem_length, const char **problem)
{
    struct credentials_request out = {device_id, pem, pem_length, problem, false};
    struct dps_cbor_reader reader;
    *pem = NULL;
    *problem = "credentials needs a map with \"csr\"";
    dps_cbor_reader_init(&reader, payload, length);
    if (read_map(&reader, credentials_member, &out) != 0 || *pem == NULL) {
        return -1;
    }
    if (!out.encoding_ok) {
        *problem = "csr encoding must be oic.sec.encoding.pem";
        return -1;
    }
    return 0;
}

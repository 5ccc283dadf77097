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

int dps_parse_cloud_request(const uint8_t *payload, size_t length, struct cloud_request *out)
{
    struct dps_cbor_reader reader;
    struct dps_cbor_container map;
    dps_cbor_reader_init(&reader, payload, length);
    if (dps_cbor_enter_map(&reader, &map) != 0) {
        return -1;
    }
    const char *key;
    size_t key_length;
    int more;
    while ((more = dps_cbor_map_next_key(&reader, &map, &key, &key_length)) == 1) {
        if (dps_cbor_text_equals(key, key_length, "di")) {
            if (read_uuid_text(&reader, out->device_id) != 0) {
                return -1;
            }
        } else if (dps_cbor_text_equals(key, key_length, "selectedGateway") &&
                   dps_cbor_peek(&reader) == DPS_CBOR_TYPE_MAP) {
            struct dps_cbor_container gateway;
            if (dps_cbor_enter_map(&reader, &gateway) != 0) {
                return -1;
            }
            while ((more = dps_cbor_map_next_key(&reader, &gateway, &key, &key_length)) == 1) {
                if (dps_cbor_text_equals(key, key_length, "uri") &&
                    dps_cbor_peek(&reader) == DPS_CBOR_TYPE_TEXT) {
                    dps_cbor_read_text(&reader, &out->gateway_uri, &out->gateway_uri_length);
                } else if (dps_cbor_text_equals(key, key_length, "id") &&
                           dps_cbor_peek(&reader) == DPS_CBOR_TYPE_TEXT) {
                    if (read_uuid_text(&reader, out->gateway_id) != 0) {
                        out->gateway_id[0] = '\0';
                    }
                } else if (dps_cbor_skip(&reader) != 0) {
                    return -1;
                }
            }
            if (more < 0) {
                return -1;
            }
        } else if (dps_cbor_skip(&reader) != 0) {
            return -1;
        }
    }
    return more < 0 || out->device_id[0] == '\0' ? -1 : 0;
}

int dps_parse_credentials_request(const uint8_t *payload, size_t length, char device_id[37],
                                  const char **pem, size_t *pem_length, const char **problem)
{
    struct dps_cbor_reader reader;
    struct dps_cbor_container map;
    bool encoding_ok = false;
    *pem = NULL;
    *problem = "credentials needs a map with \"csr\"";
    dps_cbor_reader_init(&reader, payload, length);
    if (dps_cbor_enter_map(&reader, &map) != 0) {
        return -1;
    }
    const char *key;
    size_t key_length;
    int more;
    while ((more = dps_cbor_map_next_key(&reader, &map, &key, &key_length)) == 1) {
        if (dps_cbor_text_equals(key, key_length, "di")) {
            if (read_uuid_text(&reader, device_id) != 0) {
                *problem = "\"di\" is not a UUID";
                return -1;
            }
        } else if (dps_cbor_text_equals(key, key_length, "csr")) {
            struct dps_cbor_container csr;
            if (dps_cbor_enter_map(&reader, &csr) != 0) {
                return -1;
            }
            while ((more = dps_cbor_map_next_key(&reader, &csr, &key, &key_length)) == 1) {
                const char *value;
                size_t value_length;
                if (dps_cbor_text_equals(key, key_length, "encoding")) {
                    if (dps_cbor_read_text(&reader, &value, &value_length) != 0) {
                        return -1;
                    }
                    encoding_ok = dps_cbor_text_equals(value, value_length, "oic.sec.encoding.pem");
                } else if (dps_cbor_text_equals(key, key_length, "data")) {
                    if (dps_cbor_read_text(&reader, pem, pem_length) != 0) {
                        return -1;
                    }
                } else if (dps_cbor_skip(&reader) != 0) {
                    return -1;
                }
            }
            if (more < 0) {
                return -1;
            }
        } else if (dps_cbor_skip(&reader) != 0) {
            return -1;
        }
    }
    if (more < 0 || *pem == NULL) {
        return -1;
    }
    if (!encoding_ok) {
        *problem = "csr encoding must be oic.sec.encoding.pem";
        return -1;
    }
    return 0;
}

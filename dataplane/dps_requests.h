/*
 * dps_requests: the bodies of the DPS requests that carry one (PROTOCOL.md
 * section 2), read from CBOR without allocating: cloud-configuration's
 * device id and selected gateway, credentials' device id and CSR. Pure
 * functions of the bytes, so a fuzz target or a unit test can call them.
 */
#ifndef DPS_DATAPLANE_DPS_REQUESTS_H
#define DPS_DATAPLANE_DPS_REQUESTS_H

#include <stddef.h>
#include <stdint.h>

/* What cloud-configuration asks for; the texts point into the request's payload. */
struct cloud_request {
    char device_id[37];
    const char *gateway_uri;
    size_t gateway_uri_length;
    char gateway_id[37];
};

/* Reads {"di": UUID, "selectedGateway": {"uri", "id"}}: 0, or -1 without a UUID "di". */
int dps_parse_cloud_request(const uint8_t *payload, size_t length, struct cloud_request *out);

/*
 * Reads {"di": UUID (optional), "csr": {"encoding": "oic.sec.encoding.pem",
 * "data": PEM}}: 0 with the PEM (pointing into payload), or -1 with problem
 * saying what is wrong.
 */
int dps_parse_credentials_request(const uint8_t *payload, size_t length, char device_id[37],
                                  const char **pem, size_t *pem_length, const char **problem);

#endif

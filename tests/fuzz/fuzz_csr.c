/*
 * fuzz_csr: csr_check(), which parses the PEM PKCS#10 request a device sends
 * in its credentials request. The input is the PEM text as it arrives (not
 * NUL-terminated). On success the extracted device id must format as a UUID
 * that parses back to the same value and is not nil, and the key length must
 * be non-zero and fit its buffer; on failure there must be a reason.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "crypto/csr.h"
#include "crypto/uuid.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int condition)
{
    if (!condition)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* A heap copy of exactly size bytes, so ASan sees any read past the end. */
    char *pem = malloc(size > 0 ? size : 1);
    check(pem != NULL);
    memcpy(pem, data, size);

    struct csr_result result;
    char err[256] = "";
    memset(&result, 0, sizeof(result));
    if (csr_check(NULL, pem, size, &result, err, sizeof(err)) == 0) {
        char text[UUID_STRING_LENGTH + 1];
        uuid_format(&result.device_id, text);
        check(strlen(text) == UUID_STRING_LENGTH);
        struct dps_uuid parsed;
        check(uuid_text_parse(text, strlen(text), &parsed) == 0);
        check(memcmp(&parsed, &result.device_id, sizeof(parsed)) == 0);
        check(!uuid_is_nil(&result.device_id));
        check(result.spki_length > 0 && result.spki_length <= sizeof(result.spki_der));
    } else {
        check(err[0] != '\0' && memchr(err, '\0', sizeof(err)) != NULL);
    }
    free(pem);
    return 0;
}

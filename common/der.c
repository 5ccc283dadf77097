/*
 * der: see der.h.
 */
#include "common/der.h"

#include <string.h>

int der_read(struct der *run, struct der_element *element)
{
    const uint8_t *p = run->data;
    size_t header = 2, length;

    if (run->length < 2 || (p[0] & 0x1f) == 0x1f)
        return -1;
    if (p[1] < 0x80) {
        length = p[1];
    } else {
        size_t count = p[1] & 0x7f;
        if (count == 0 || count > 3 || run->length - 2 < count || p[2] == 0)
            return -1;
        length = 0;
        for (size_t i = 0; i < count; i++)
            length = length << 8 | p[2 + i];
        if (length < 0x80)
            return -1;
        header += count;
    }
    if (length > run->length - header)
        return -1;
    element->tag = p[0];
    element->whole = (struct der){p, header + length};
    element->content = (struct der){p + header, length};
    run->data += header + length;
    run->length -= header + length;
    return 0;
}

int der_expect(struct der *run, uint8_t tag, struct der_element *element)
{
    return der_read(run, element) == 0 && element->tag == tag ? 0 : -1;
}

int der_expect_oid(struct der *run, struct der_element *oid)
{
    if (der_expect(run, DER_OID, oid) != 0 || oid->content.length == 0 ||
        (oid->content.data[oid->content.length - 1] & 0x80) != 0)
        return -1;
    bool starts_sub_identifier = true;
    for (size_t i = 0; i < oid->content.length; i++) {
        if (starts_sub_identifier && oid->content.data[i] == 0x80)
            return -1;
        starts_sub_identifier = (oid->content.data[i] & 0x80) == 0;
    }
    return 0;
}

int der_skip_all(struct der *run)
{
    struct der_element element;

    while (run->length > 0) {
        if (der_read(run, &element) != 0)
            return -1;
    }
    return 0;
}

bool der_equals(const struct der *value, const uint8_t *expected, size_t length)
{
    return value->length == length && memcmp(value->data, expected, length) == 0;
}

size_t der_header_length(size_t content_length)
{
    return content_length < 0x80      ? 2
           : content_length <= 0xff   ? 3
           : content_length <= 0xffff ? 4
                                      : 5;
}

size_t der_size(size_t content_length)
{
    return der_header_length(content_length) + content_length;
}

uint8_t *der_put_header(uint8_t *out, uint8_t tag, size_t content_length)
{
    *out++ = tag;
    if (content_length < 0x80) {
        *out++ = (uint8_t)content_length;
    } else if (content_length <= 0xff) {
        *out++ = 0x81;
        *out++ = (uint8_t)content_length;
    } else if (content_length <= 0xffff) {
        *out++ = 0x82;
        *out++ = (uint8_t)(content_length >> 8);
        *out++ = (uint8_t)content_length;
    } else {
        *out++ = 0x83;
        *out++ = (uint8_t)(content_length >> 16);
        *out++ = (uint8_t)(content_length >> 8);
        *out++ = (uint8_t)content_length;
    }
    return out;
}

uint8_t *der_put(uint8_t *out, const void *bytes, size_t length)
{
    memcpy(out, bytes, length);
    return out + length;
}

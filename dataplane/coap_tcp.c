/*
 * coap_tcp: CoAP over TCP framing (RFC 8323, section 3) and the RFC 7252
 * option encoding inside it.
 *
 * The decoder is the first thing a hostile peer's bytes reach after TLS, so
 * every length read from the wire is checked against the bytes that are
 * really there, and the announced frame length is computed in 64 bits so a
 * 4 GiB announcement is refused instead of wrapping. The encoder always picks
 * the shortest length and option nibble encodings.
 */
#include "dataplane/coap_tcp.h"

#include <limits.h>
#include <string.h>

#define COAP_PAYLOAD_MARKER 0xFF
#define COAP_NIBBLE_8BIT 13
#define COAP_NIBBLE_16BIT 14
#define COAP_NIBBLE_RESERVED 15
#define COAP_LEN_8BIT_BASE 13u
#define COAP_LEN_16BIT_BASE 269u
#define COAP_LEN_32BIT_BASE 65805u

/* Bytes of extended length that follow the Len/TKL byte for a Len nibble. */
static size_t coap_extended_length_size(unsigned nibble)
{
    switch (nibble) {
    case 13:
        return 1;
    case 14:
        return 2;
    case 15:
        return 4;
    default:
        return 0;
    }
}

/*
 * Parses the fixed part of a frame: the Len/TKL byte and the extended length.
 * On COAP_OK, *header is the count of bytes before the code and *length the
 * options-and-payload length.
 */
static int coap_parse_header(const uint8_t *data, size_t available, size_t *header,
                             uint64_t *length)
{
    if (available < 1)
        return COAP_NEED_MORE;
    unsigned nibble = data[0] >> 4;
    if ((data[0] & 0x0F) > COAP_MAX_TOKEN)
        return COAP_MALFORMED;
    size_t extended = coap_extended_length_size(nibble);
    if (available < 1 + extended)
        return COAP_NEED_MORE;
    const uint8_t *p = data + 1;
    switch (nibble) {
    case 13:
        *length = (uint64_t)p[0] + COAP_LEN_8BIT_BASE;
        break;
    case 14:
        *length = ((uint64_t)p[0] << 8 | p[1]) + COAP_LEN_16BIT_BASE;
        break;
    case 15:
        *length = ((uint64_t)p[0] << 24 | (uint64_t)p[1] << 16 | (uint64_t)p[2] << 8 | p[3]) +
                  COAP_LEN_32BIT_BASE;
        break;
    default:
        *length = nibble;
        break;
    }
    *header = 1 + extended;
    return COAP_OK;
}

int coap_tcp_frame_length(const uint8_t *data, size_t length, size_t max_frame,
                          size_t *frame_length)
{
    size_t header;
    uint64_t body;
    int status = coap_parse_header(data, length, &header, &body);
    if (status != COAP_OK)
        return status;
    uint64_t total = (uint64_t)header + 1 + (data[0] & 0x0F) + body;
    if (total > (uint64_t)max_frame)
        return COAP_TOO_LARGE;
    *frame_length = (size_t)total;
    return COAP_OK;
}

/*
 * Reads an option delta or length whose 4-bit nibble was already taken from
 * the option byte, consuming its extended bytes. -1 on the reserved nibble or
 * when the extended bytes run past end.
 */
static int coap_read_option_field(unsigned nibble, const uint8_t **position, const uint8_t *end,
                                  uint32_t *value)
{
    const uint8_t *p = *position;
    switch (nibble) {
    case COAP_NIBBLE_8BIT:
        if (end - p < 1)
            return -1;
        *value = (uint32_t)p[0] + COAP_LEN_8BIT_BASE;
        *position = p + 1;
        return 0;
    case COAP_NIBBLE_16BIT:
        if (end - p < 2)
            return -1;
        *value = ((uint32_t)p[0] << 8 | p[1]) + COAP_LEN_16BIT_BASE;
        *position = p + 2;
        return 0;
    case COAP_NIBBLE_RESERVED:
        return -1;
    default:
        *value = nibble;
        return 0;
    }
}

int coap_tcp_decode(const uint8_t *frame, size_t frame_length, struct coap_message *message)
{
    size_t header;
    uint64_t body;
    if (coap_parse_header(frame, frame_length, &header, &body) != COAP_OK)
        return COAP_MALFORMED;
    size_t token_length = frame[0] & 0x0F;
    if ((uint64_t)header + 1 + token_length + body != (uint64_t)frame_length)
        return COAP_MALFORMED;

    message->code = frame[header];
    message->token_length = (uint8_t)token_length;
    memset(message->token, 0, sizeof(message->token));
    memcpy(message->token, frame + header + 1, token_length);
    message->option_count = 0;
    message->payload = NULL;
    message->payload_length = 0;

    const uint8_t *p = frame + header + 1 + token_length;
    const uint8_t *end = frame + frame_length;
    uint32_t number = 0;
    while (p < end) {
        uint8_t byte = *p++;
        if (byte == COAP_PAYLOAD_MARKER) {
            if (p == end)
                return COAP_MALFORMED;
            message->payload = p;
            message->payload_length = (size_t)(end - p);
            return COAP_OK;
        }
        uint32_t delta, length;
        if (coap_read_option_field(byte >> 4, &p, end, &delta) != 0 ||
            coap_read_option_field(byte & 0x0F, &p, end, &length) != 0)
            return COAP_MALFORMED;
        number += delta;
        /* Extended lengths reach 65804, but an option's length is 16 bits. */
        if (number > UINT16_MAX || length > UINT16_MAX || length > (size_t)(end - p))
            return COAP_MALFORMED;
        if (message->option_count == COAP_MAX_OPTIONS)
            return COAP_MALFORMED;
        struct coap_option *option = &message->options[message->option_count++];
        option->number = (uint16_t)number;
        option->length = (uint16_t)length;
        option->value = length ? p : NULL;
        p += length;
    }
    return COAP_OK;
}

/* Nibble and extended byte count for an option delta or length. */
static unsigned coap_option_nibble(uint32_t value, size_t *extended)
{
    if (value < COAP_LEN_8BIT_BASE) {
        *extended = 0;
        return value;
    }
    if (value < COAP_LEN_16BIT_BASE) {
        *extended = 1;
        return COAP_NIBBLE_8BIT;
    }
    *extended = 2;
    return COAP_NIBBLE_16BIT;
}

static uint8_t *coap_write_option_extension(uint8_t *out, uint32_t value, size_t extended)
{
    if (extended == 1) {
        *out++ = (uint8_t)(value - COAP_LEN_8BIT_BASE);
    } else if (extended == 2) {
        uint32_t rest = value - COAP_LEN_16BIT_BASE;
        *out++ = (uint8_t)(rest >> 8);
        *out++ = (uint8_t)rest;
    }
    return out;
}

long coap_tcp_encode(uint8_t *out, size_t capacity, uint8_t code, const uint8_t *token,
                     size_t token_length, const struct coap_option *options, size_t option_count,
                     const uint8_t *payload, size_t payload_length)
{
    if (token_length > COAP_MAX_TOKEN)
        return COAP_MALFORMED;

    /* First pass: validate the option order and size the body. */
    uint64_t body = 0;
    uint32_t previous = 0;
    for (size_t i = 0; i < option_count; i++) {
        if (options[i].number < previous)
            return COAP_MALFORMED;
        size_t delta_extra, length_extra;
        coap_option_nibble(options[i].number - previous, &delta_extra);
        coap_option_nibble(options[i].length, &length_extra);
        body += 1 + delta_extra + length_extra + options[i].length;
        previous = options[i].number;
    }
    if (payload_length > 0)
        body += 1 + (uint64_t)payload_length;

    unsigned len_nibble;
    size_t extended;
    if (body < COAP_LEN_8BIT_BASE) {
        len_nibble = (unsigned)body;
        extended = 0;
    } else if (body < COAP_LEN_16BIT_BASE) {
        len_nibble = 13;
        extended = 1;
    } else if (body < COAP_LEN_32BIT_BASE) {
        len_nibble = 14;
        extended = 2;
    } else {
        len_nibble = 15;
        extended = 4;
    }
    uint64_t total = 1 + extended + 1 + token_length + body;
    if (total > capacity || total > (uint64_t)LONG_MAX ||
        (extended == 4 && body - COAP_LEN_32BIT_BASE > UINT32_MAX))
        return COAP_NO_SPACE;

    uint8_t *p = out;
    *p++ = (uint8_t)(len_nibble << 4 | token_length);
    if (extended == 1) {
        *p++ = (uint8_t)(body - COAP_LEN_8BIT_BASE);
    } else if (extended == 2) {
        uint64_t rest = body - COAP_LEN_16BIT_BASE;
        *p++ = (uint8_t)(rest >> 8);
        *p++ = (uint8_t)rest;
    } else if (extended == 4) {
        uint64_t rest = body - COAP_LEN_32BIT_BASE;
        *p++ = (uint8_t)(rest >> 24);
        *p++ = (uint8_t)(rest >> 16);
        *p++ = (uint8_t)(rest >> 8);
        *p++ = (uint8_t)rest;
    }
    *p++ = code;
    if (token_length > 0) {
        memcpy(p, token, token_length);
        p += token_length;
    }

    previous = 0;
    for (size_t i = 0; i < option_count; i++) {
        uint32_t delta = options[i].number - previous;
        size_t delta_extra, length_extra;
        unsigned delta_nibble = coap_option_nibble(delta, &delta_extra);
        unsigned length_nibble = coap_option_nibble(options[i].length, &length_extra);
        *p++ = (uint8_t)(delta_nibble << 4 | length_nibble);
        p = coap_write_option_extension(p, delta, delta_extra);
        p = coap_write_option_extension(p, options[i].length, length_extra);
        if (options[i].length > 0) {
            memcpy(p, options[i].value, options[i].length);
            p += options[i].length;
        }
        previous = options[i].number;
    }
    if (payload_length > 0) {
        *p++ = COAP_PAYLOAD_MARKER;
        memcpy(p, payload, payload_length);
        p += payload_length;
    }
    return (long)(p - out);
}

const struct coap_option *coap_message_option(const struct coap_message *message, uint16_t number)
{
    for (size_t i = 0; i < message->option_count; i++) {
        if (message->options[i].number == number)
            return &message->options[i];
    }
    return NULL;
}

int coap_option_uint(const struct coap_option *option, uint32_t *value)
{
    if (option->length > 4)
        return -1;
    uint32_t result = 0;
    for (size_t i = 0; i < option->length; i++)
        result = result << 8 | option->value[i];
    *value = result;
    return 0;
}

void coap_option_make_uint(struct coap_option *option, uint16_t number, uint32_t value,
                           uint8_t storage[4])
{
    uint16_t length = 0;
    for (uint32_t rest = value; rest != 0; rest >>= 8)
        length++;
    for (uint16_t i = 0; i < length; i++)
        storage[i] = (uint8_t)(value >> (8 * (length - 1 - i)));
    option->number = number;
    option->length = length;
    option->value = storage;
}

int coap_message_uri_path(const struct coap_message *message, char *out, size_t capacity)
{
    size_t used = 0;
    for (size_t i = 0; i < message->option_count; i++) {
        const struct coap_option *option = &message->options[i];
        if (option->number != COAP_OPTION_URI_PATH)
            continue;
        if (option->length > 0 && (memchr(option->value, '/', option->length) != NULL ||
                                   memchr(option->value, '\0', option->length) != NULL))
            return -1;
        if (capacity - used < (size_t)option->length + 2)
            return -1;
        out[used++] = '/';
        if (option->length > 0)
            memcpy(out + used, option->value, option->length);
        used += option->length;
    }
    if (used == 0) {
        if (capacity < 2)
            return -1;
        out[used++] = '/';
    }
    out[used] = '\0';
    return 0;
}

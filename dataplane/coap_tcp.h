/*
 * coap_tcp: CoAP over TCP framing (RFC 8323, section 3).
 *
 * A frame is: Len/TKL byte, optional extended length (1, 2 or 4 bytes for
 * Len 13/14/15, offsets 13/269/65805), code, token (0-8 bytes), options
 * (delta-encoded, RFC 7252 section 3.1) and, after a 0xFF marker, the payload.
 * "Length" counts the options and payload bytes (marker included), not the
 * header or token.
 *
 * Decoding never copies: options and payload point into the caller's frame.
 * Unknown options, including odd ("critical") ones such as the OCF options
 * 2049 and 2053, are kept and never rejected here; policy belongs to callers.
 */
#ifndef DPS_COAP_TCP_H
#define DPS_COAP_TCP_H

#include <stddef.h>
#include <stdint.h>

#define COAP_CODE(class, detail) ((uint8_t)(((class) << 5) | (detail)))

enum coap_code {
    COAP_EMPTY = 0x00,
    COAP_GET = 0x01,
    COAP_POST = 0x02,
    COAP_PUT = 0x03,
    COAP_DELETE = 0x04,
    COAP_CREATED = 0x41,                    /* 2.01 */
    COAP_DELETED = 0x42,                    /* 2.02 */
    COAP_CHANGED = 0x44,                    /* 2.04 */
    COAP_CONTENT = 0x45,                    /* 2.05 */
    COAP_BAD_REQUEST = 0x80,                /* 4.00 */
    COAP_UNAUTHORIZED = 0x81,               /* 4.01 */
    COAP_BAD_OPTION = 0x82,                 /* 4.02 */
    COAP_FORBIDDEN = 0x83,                  /* 4.03 */
    COAP_NOT_FOUND = 0x84,                  /* 4.04 */
    COAP_METHOD_NOT_ALLOWED = 0x85,         /* 4.05 */
    COAP_NOT_ACCEPTABLE = 0x86,             /* 4.06 */
    COAP_REQUEST_ENTITY_TOO_LARGE = 0x8D,   /* 4.13 */
    COAP_UNSUPPORTED_CONTENT_FORMAT = 0x8F, /* 4.15 */
    COAP_INTERNAL_SERVER_ERROR = 0xA0,      /* 5.00 */
    COAP_SERVICE_UNAVAILABLE = 0xA3,        /* 5.03 */
    COAP_GATEWAY_TIMEOUT = 0xA4,            /* 5.04 */
    COAP_SIGNAL_CSM = 0xE1,                 /* 7.01 */
    COAP_SIGNAL_PING = 0xE2,                /* 7.02 */
    COAP_SIGNAL_PONG = 0xE3,                /* 7.03 */
    COAP_SIGNAL_RELEASE = 0xE4,             /* 7.04 */
    COAP_SIGNAL_ABORT = 0xE5,               /* 7.05 */
};

enum coap_option_number {
    COAP_OPTION_URI_HOST = 3,
    COAP_OPTION_URI_PATH = 11,
    COAP_OPTION_CONTENT_FORMAT = 12,
    COAP_OPTION_MAX_AGE = 14,
    COAP_OPTION_URI_QUERY = 15,
    COAP_OPTION_ACCEPT = 17,
    COAP_OPTION_OCF_ACCEPT_VERSION = 2049,
    COAP_OPTION_OCF_CONTENT_VERSION = 2053,
    /* Signalling (7.01 CSM) options. */
    COAP_OPTION_CSM_MAX_MESSAGE_SIZE = 2,
    COAP_OPTION_CSM_BLOCK_WISE = 4,
};

enum coap_content_format {
    COAP_FORMAT_TEXT = 0,
    COAP_FORMAT_JSON = 50,
    COAP_FORMAT_CBOR = 60,
    COAP_FORMAT_OCF_CBOR = 10000,
};

#define COAP_MAX_TOKEN 8
#define COAP_MAX_OPTIONS 32

enum coap_status {
    COAP_OK = 0,
    COAP_NEED_MORE = 1,  /* not enough bytes yet to know or hold the frame */
    COAP_MALFORMED = -1, /* the bytes cannot be a valid frame: close the stream */
    COAP_TOO_LARGE = -2, /* the frame announces more than the allowed size */
    COAP_NO_SPACE = -3,  /* encoding: output buffer too small */
};

struct coap_option {
    uint16_t number;
    uint16_t length;
    const uint8_t *value;
};

struct coap_message {
    uint8_t code;
    uint8_t token_length;
    uint8_t token[COAP_MAX_TOKEN];
    size_t option_count;
    struct coap_option options[COAP_MAX_OPTIONS]; /* in wire order, ascending */
    const uint8_t *payload;                       /* NULL when payload_length == 0 */
    size_t payload_length;
};

/*
 * Looks at the start of a byte stream and tells how long the first frame is.
 * Returns COAP_OK and sets *frame_length, COAP_NEED_MORE when the header is
 * incomplete, COAP_TOO_LARGE when the whole frame would exceed max_frame
 * bytes, COAP_MALFORMED for a token length above 8.
 */
int coap_tcp_frame_length(const uint8_t *data, size_t length, size_t max_frame,
                          size_t *frame_length);

/*
 * Decodes one complete frame of exactly frame_length bytes. Returns COAP_OK
 * or COAP_MALFORMED (bad lengths, reserved option nibbles, payload marker with
 * no payload, more than COAP_MAX_OPTIONS options, trailing bytes).
 */
int coap_tcp_decode(const uint8_t *frame, size_t frame_length, struct coap_message *message);

/*
 * Encodes a frame into out. Options must be sorted by number (stable: equal
 * numbers keep their order). Returns the frame length, or COAP_NO_SPACE /
 * COAP_MALFORMED (unsorted options, token above 8) as a negative value.
 */
long coap_tcp_encode(uint8_t *out, size_t capacity, uint8_t code, const uint8_t *token,
                     size_t token_length, const struct coap_option *options, size_t option_count,
                     const uint8_t *payload, size_t payload_length);

/* First option with this number, or NULL. */
const struct coap_option *coap_message_option(const struct coap_message *message, uint16_t number);

/* Reads an option as an unsigned integer (0-4 bytes, big endian). 0 or -1. */
int coap_option_uint(const struct coap_option *option, uint32_t *value);

/*
 * Fills an option with the minimal big-endian encoding of value; storage must
 * outlive the option (it holds the bytes).
 */
void coap_option_make_uint(struct coap_option *option, uint16_t number, uint32_t value,
                           uint8_t storage[4]);

/*
 * Joins the Uri-Path options into "/a/b/c" ("/" when there are none).
 * Returns 0, or -1 when it does not fit in capacity bytes (NUL included) or
 * a segment contains '/' or NUL.
 */
int coap_message_uri_path(const struct coap_message *message, char *out, size_t capacity);

#endif

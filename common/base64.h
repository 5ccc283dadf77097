/*
 * base64: the one base64 codec (RFC 4648), in its two alphabets: standard
 * with '=' padding (PEM, data: URLs) and URL-safe without padding (JWT,
 * JWK). Decoding is strict: only canonical encodings are accepted (the bits
 * past the last byte are zero, padding only where it belongs, nothing after
 * it), so one value has one spelling. Errors are -1 (malformed) and -2 (the
 * output does not fit); nothing is ever cut.
 */
#ifndef DPS_COMMON_BASE64_H
#define DPS_COMMON_BASE64_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum base64_alphabet {
    BASE64_STANDARD, /* A-Z a-z 0-9 + /, padded with '=' to a multiple of 4 */
    BASE64_URL,      /* A-Z a-z 0-9 - _, never padded */
};

/* Characters base64_encode() writes for length bytes. */
size_t base64_encoded_length(enum base64_alphabet alphabet, size_t length);

/* Writes the encoding of data at out (no NUL); returns its length. */
size_t base64_encode(enum base64_alphabet alphabet, const uint8_t *data, size_t length, char *out);

/* The encoding as a NUL-terminated string (malloc'd), or NULL when out of memory. */
char *base64_encode_string(enum base64_alphabet alphabet, const uint8_t *data, size_t length);

/*
 * The PEM text of a DER object, laid out byte for byte as OpenSSL's PEM writer does:
 * "-----BEGIN label-----\n", the standard encoding in lines of 64 characters each ended by
 * '\n', "-----END label-----\n"; then tail_length bytes of tail (another PEM text, or nothing)
 * and a NUL. malloc'd; NULL when out of memory.
 */
char *base64_pem(const char *label, const uint8_t *der, size_t length, const char *tail,
                 size_t tail_length);

/* A decoder fed in pieces (PEM lines); out is the caller's. */
struct base64_decoder {
    enum base64_alphabet alphabet;
    bool skip_space; /* spaces, tabs and line ends between characters are ignored */
    uint8_t *out;
    size_t capacity;
    size_t length; /* bytes decoded so far */
    uint32_t quantum;
    unsigned quantum_chars;
    unsigned padding;
    bool closed; /* a padded quantum ended the text */
};

void base64_decoder_init(struct base64_decoder *decoder, enum base64_alphabet alphabet,
                         bool skip_space, uint8_t *out, size_t capacity);

/* 0, -1 when malformed, -2 when the output would not fit. */
int base64_decoder_feed(struct base64_decoder *decoder, const char *text, size_t length);

/*
 * Ends the text: 0 with the decoded length in decoder->length, or -1 when
 * it stops inside a quantum where that is not allowed (a padded alphabet
 * always ends on a full quantum; the URL alphabet may end after 2 or 3 of 4).
 */
int base64_decoder_finish(struct base64_decoder *decoder);

/*
 * Decodes a whole text into a new buffer with a NUL after the bytes (so
 * decoded JSON can be read as a string); NULL when malformed or out of memory.
 */
uint8_t *base64_decode_alloc(enum base64_alphabet alphabet, const char *text, size_t length,
                             size_t *out_length);

#endif

/*
 * der: the one reader and writer of DER (X.690) framing, for the parsers
 * and builders on the hot path that avoid OpenSSL's object API (CSRs,
 * certificate templates, the load generator's certificates).
 *
 * The reader is strict: single-byte tags, definite lengths in their
 * shortest form (at most three length bytes), every element inside its
 * run. What an element means is the caller's business.
 */
#ifndef DPS_COMMON_DER_H
#define DPS_COMMON_DER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Universal tags; context-specific ones are named where they are used. */
#define DER_BOOLEAN 0x01
#define DER_INTEGER 0x02
#define DER_BIT_STRING 0x03
#define DER_OCTET_STRING 0x04
#define DER_OID 0x06
#define DER_UTF8_STRING 0x0c
#define DER_PRINTABLE_STRING 0x13
#define DER_IA5_STRING 0x16
#define DER_UTC_TIME 0x17
#define DER_GENERALIZED_TIME 0x18
#define DER_SEQUENCE 0x30
#define DER_SET 0x31

/* The most a header takes: a tag and a length of up to three bytes. */
#define DER_HEADER_MAX 5

/* A run of elements still to be read; an element's content is also one. */
struct der {
    const uint8_t *data;
    size_t length;
};

struct der_element {
    uint8_t tag;
    struct der whole; /* tag, length and content */
    struct der content;
};

/* Reads the next element of run and moves past it. 0, or -1 when malformed. */
int der_read(struct der *run, struct der_element *element);

/* der_read() that also requires the tag. */
int der_expect(struct der *run, uint8_t tag, struct der_element *element);

/* An OBJECT IDENTIFIER whose sub-identifiers are minimal and closed. */
int der_expect_oid(struct der *run, struct der_element *oid);

/* Skips the rest of run, checking only the framing. 0 or -1. */
int der_skip_all(struct der *run);

bool der_equals(const struct der *value, const uint8_t *expected, size_t length);

/* The size of a header for content of this length, and of the whole element. */
size_t der_header_length(size_t content_length);
size_t der_size(size_t content_length);

/* Writes a tag and a length (below 2^24) at out; returns the byte after them. */
uint8_t *der_put_header(uint8_t *out, uint8_t tag, size_t content_length);

/* Copies bytes at out; returns the byte after them. */
uint8_t *der_put(uint8_t *out, const void *bytes, size_t length);

#endif

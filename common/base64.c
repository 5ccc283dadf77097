/*
 * base64: see base64.h. A quantum is four characters carrying three bytes;
 * the decoder collects one at a time and checks, as it closes each, that it
 * is the canonical spelling of what it carries.
 */
#include "common/base64.h"

#include <stdlib.h>
#include <string.h>

#define PEM_LINE_BYTES 48 /* 64 characters */

static const char standard_chars[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
static const char url_chars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

size_t base64_encoded_length(enum base64_alphabet alphabet, size_t length)
{
    if (alphabet == BASE64_STANDARD)
        return (length + 2) / 3 * 4;
    return length / 3 * 4 + (length % 3 == 0 ? 0 : length % 3 + 1);
}

size_t base64_encode(enum base64_alphabet alphabet, const uint8_t *data, size_t length, char *out)
{
    const char *chars = alphabet == BASE64_URL ? url_chars : standard_chars;
    size_t o = 0, i = 0;

    for (; i + 3 <= length; i += 3) {
        uint32_t v = (uint32_t)data[i] << 16 | (uint32_t)data[i + 1] << 8 | data[i + 2];
        out[o++] = chars[v >> 18 & 0x3f];
        out[o++] = chars[v >> 12 & 0x3f];
        out[o++] = chars[v >> 6 & 0x3f];
        out[o++] = chars[v & 0x3f];
    }
    size_t rest = length - i;
    if (rest > 0) {
        uint32_t v = (uint32_t)data[i] << 16 | (rest == 2 ? (uint32_t)data[i + 1] << 8 : 0);
        out[o++] = chars[v >> 18 & 0x3f];
        out[o++] = chars[v >> 12 & 0x3f];
        if (rest == 2)
            out[o++] = chars[v >> 6 & 0x3f];
        if (alphabet == BASE64_STANDARD) {
            while (o % 4 != 0)
                out[o++] = '=';
        }
    }
    return o;
}

char *base64_encode_string(enum base64_alphabet alphabet, const uint8_t *data, size_t length)
{
    char *out = malloc(base64_encoded_length(alphabet, length) + 1);

    if (out != NULL)
        out[base64_encode(alphabet, data, length, out)] = '\0';
    return out;
}

static char *put(char *p, const char *text)
{
    size_t length = strlen(text);
    memcpy(p, text, length);
    return p + length;
}

char *base64_pem(const char *label, const uint8_t *der, size_t length, const char *tail,
                 size_t tail_length)
{
    size_t label_length = strlen(label);
    size_t lines = (length + PEM_LINE_BYTES - 1) / PEM_LINE_BYTES;
    /* "-----BEGIN " label "-----\n" and "-----END " label "-----\n" */
    size_t frame = 2 * label_length + 11 + 6 + 9 + 6;
    char *pem =
        malloc(frame + base64_encoded_length(BASE64_STANDARD, length) + lines + tail_length + 1);
    char *p = pem;

    if (pem == NULL)
        return NULL;
    p = put(put(put(p, "-----BEGIN "), label), "-----\n");
    for (size_t offset = 0; offset < length; offset += PEM_LINE_BYTES) {
        size_t chunk = length - offset < PEM_LINE_BYTES ? length - offset : PEM_LINE_BYTES;
        p += base64_encode(BASE64_STANDARD, der + offset, chunk, p);
        *p++ = '\n';
    }
    p = put(put(put(p, "-----END "), label), "-----\n");
    if (tail_length > 0)
        memcpy(p, tail, tail_length);
    p[tail_length] = '\0';
    return pem;
}

static int char_value(enum base64_alphabet alphabet, char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == (alphabet == BASE64_URL ? '-' : '+'))
        return 62;
    if (c == (alphabet == BASE64_URL ? '_' : '/'))
        return 63;
    return -1;
}

void base64_decoder_init(struct base64_decoder *decoder, enum base64_alphabet alphabet,
                         bool skip_space, uint8_t *out, size_t capacity)
{
    *decoder = (struct base64_decoder){
        .alphabet = alphabet, .skip_space = skip_space, .out = out, .capacity = capacity};
}

/* Writes the bytes of a closed quantum of chars characters (2-4) after the canonical check. */
static int emit(struct base64_decoder *decoder, unsigned chars)
{
    size_t bytes = chars - 1;
    unsigned unused_bits = 8 * (3 - (unsigned)bytes);
    uint32_t quantum = decoder->quantum << 6 * (4 - chars);
    if ((quantum & ((1u << unused_bits) - 1)) != 0)
        return -1;
    if (decoder->length + bytes > decoder->capacity)
        return -2;
    for (size_t b = 0; b < bytes; b++)
        decoder->out[decoder->length++] = (uint8_t)(quantum >> (16 - 8 * b));
    decoder->quantum = 0;
    decoder->quantum_chars = 0;
    return 0;
}

int base64_decoder_feed(struct base64_decoder *decoder, const char *text, size_t length)
{
    for (size_t i = 0; i < length; i++) {
        char c = text[i];
        if (decoder->skip_space && (c == ' ' || c == '\t' || c == '\r' || c == '\n'))
            continue;
        if (decoder->closed)
            return -1;
        if (c == '=') {
            /* Padding closes the last quantum after two or three characters. */
            if (decoder->alphabet != BASE64_STANDARD ||
                decoder->quantum_chars + decoder->padding < 2)
                return -1;
            if (++decoder->padding + decoder->quantum_chars == 4) {
                int status = emit(decoder, decoder->quantum_chars);
                if (status != 0)
                    return status;
                decoder->closed = true;
            }
            continue;
        }
        int value = char_value(decoder->alphabet, c);
        if (value < 0 || decoder->padding > 0)
            return -1;
        decoder->quantum = decoder->quantum << 6 | (uint32_t)value;
        if (++decoder->quantum_chars == 4) {
            int status = emit(decoder, 4);
            if (status != 0)
                return status;
        }
    }
    return 0;
}

int base64_decoder_finish(struct base64_decoder *decoder)
{
    if (decoder->padding > 0 && !decoder->closed)
        return -1;
    if (decoder->quantum_chars == 0)
        return 0;
    if (decoder->alphabet == BASE64_STANDARD || decoder->quantum_chars == 1)
        return -1;
    return emit(decoder, decoder->quantum_chars) == 0 ? 0 : -1;
}

uint8_t *base64_decode_alloc(enum base64_alphabet alphabet, const char *text, size_t length,
                             size_t *out_length)
{
    struct base64_decoder decoder;
    uint8_t *out = malloc(length / 4 * 3 + 3);

    if (out == NULL)
        return NULL;
    base64_decoder_init(&decoder, alphabet, false, out, length / 4 * 3 + 2);
    if (base64_decoder_feed(&decoder, text, length) != 0 || base64_decoder_finish(&decoder) != 0) {
        free(out);
        return NULL;
    }
    out[decoder.length] = '\0';
    *out_length = decoder.length;
    return out;
}

/*
 * payload: response bodies in CBOR or JSON behind one set of calls.
 *
 * The writer keeps, per nesting level, how many items were announced and how
 * many were written (map keys and values count separately). Level 0 is the
 * document itself, which holds exactly one value. That bookkeeping is what
 * lets JSON place its ',' and ':' and lets both formats catch misuse: a
 * non-text key, more or fewer items than announced, an end without an open
 * container. Text must be valid UTF-8 in both formats (RFC 8949 requires it
 * of CBOR text strings too). CBOR goes through libcbor's non-allocating
 * encoders, which return 0 when the buffer is full.
 */
#include "dataplane/payload.h"

#include <cbor.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void payload_init(struct payload_writer *writer, enum payload_format format, uint8_t *buffer,
                  size_t capacity)
{
    memset(writer, 0, sizeof(*writer));
    writer->format = format;
    writer->buffer = buffer;
    writer->capacity = capacity;
    writer->declared[0] = 1;
}

static void payload_fail(struct payload_writer *writer)
{
    writer->failed = true;
}

static void payload_append(struct payload_writer *writer, const void *data, size_t length)
{
    if (writer->failed)
        return;
    if (writer->capacity - writer->length < length) {
        payload_fail(writer);
        return;
    }
    memcpy(writer->buffer + writer->length, data, length);
    writer->length += length;
}

static void payload_append_char(struct payload_writer *writer, char c)
{
    payload_append(writer, &c, 1);
}

/* Records the result of a libcbor encoder, which returns 0 for "no space". */
static void payload_cbor_wrote(struct payload_writer *writer, size_t written)
{
    if (written == 0)
        payload_fail(writer);
    else
        writer->length += written;
}

static unsigned char *payload_cursor(struct payload_writer *writer)
{
    return writer->buffer + writer->length;
}

static size_t payload_space(const struct payload_writer *writer)
{
    return writer->capacity - writer->length;
}

/*
 * Accounts for one item about to be written at the current level and writes
 * the JSON separator in front of it. Returns false (and fails the writer)
 * when the level is already full or a map expects a text key.
 */
static bool payload_begin_item(struct payload_writer *writer, bool is_text)
{
    if (writer->failed)
        return false;
    unsigned level = writer->depth;
    uint32_t index = writer->written[level];
    if (index >= writer->declared[level]) {
        payload_fail(writer);
        return false;
    }
    bool key_position = writer->in_map[level] && index % 2 == 0;
    if (key_position && !is_text) {
        payload_fail(writer);
        return false;
    }
    if (writer->format == PAYLOAD_JSON && index > 0)
        payload_append_char(writer, writer->in_map[level] && !key_position ? ':' : ',');
    writer->written[level]++;
    return !writer->failed;
}

static void payload_open(struct payload_writer *writer, size_t items, bool map)
{
    if (!payload_begin_item(writer, false))
        return;
    size_t declared = map ? items * 2 : items;
    if (writer->depth + 1 >= PAYLOAD_MAX_DEPTH || items > UINT32_MAX / 2) {
        payload_fail(writer);
        return;
    }
    if (writer->format == PAYLOAD_CBOR) {
        size_t written =
            map ? cbor_encode_map_start(items, payload_cursor(writer), payload_space(writer))
                : cbor_encode_array_start(items, payload_cursor(writer), payload_space(writer));
        payload_cbor_wrote(writer, written);
    } else {
        payload_append_char(writer, map ? '{' : '[');
    }
    if (writer->failed)
        return;
    writer->depth++;
    writer->written[writer->depth] = 0;
    writer->declared[writer->depth] = (uint32_t)declared;
    writer->in_map[writer->depth] = map;
}

void payload_map(struct payload_writer *writer, size_t pairs)
{
    payload_open(writer, pairs, true);
}

void payload_array(struct payload_writer *writer, size_t items)
{
    payload_open(writer, items, false);
}

void payload_end(struct payload_writer *writer)
{
    if (writer->failed)
        return;
    unsigned level = writer->depth;
    if (level == 0 || writer->written[level] != writer->declared[level]) {
        payload_fail(writer);
        return;
    }
    if (writer->format == PAYLOAD_JSON)
        payload_append_char(writer, writer->in_map[level] ? '}' : ']');
    writer->depth--;
}

/* Length of the valid UTF-8 sequence starting at text, or 0 when invalid. */
static size_t payload_utf8_sequence(const unsigned char *text, size_t length)
{
    unsigned char lead = text[0];
    size_t size;
    uint32_t code_point;
    if (lead < 0x80)
        return 1;
    if (lead >= 0xC2 && lead <= 0xDF) {
        size = 2;
        code_point = lead & 0x1F;
    } else if (lead >= 0xE0 && lead <= 0xEF) {
        size = 3;
        code_point = lead & 0x0F;
    } else if (lead >= 0xF0 && lead <= 0xF4) {
        size = 4;
        code_point = lead & 0x07;
    } else {
        return 0;
    }
    if (length < size)
        return 0;
    for (size_t i = 1; i < size; i++) {
        if ((text[i] & 0xC0) != 0x80)
            return 0;
        code_point = code_point << 6 | (text[i] & 0x3F);
    }
    /* Overlong forms, UTF-16 surrogates and code points above U+10FFFF. */
    if ((size == 3 && code_point < 0x800) || (size == 4 && code_point < 0x10000) ||
        (code_point >= 0xD800 && code_point <= 0xDFFF) || code_point > 0x10FFFF)
        return 0;
    return size;
}

static bool payload_utf8_valid(const char *text, size_t length)
{
    const unsigned char *p = (const unsigned char *)text;
    size_t i = 0;
    while (i < length) {
        size_t size = payload_utf8_sequence(p + i, length - i);
        if (size == 0)
            return false;
        i += size;
    }
    return true;
}

/* Writes a JSON string literal: quotes, backslashes and controls escaped. */
static void payload_json_string(struct payload_writer *writer, const char *text, size_t length)
{
    static const char hex[] = "0123456789abcdef";
    payload_append_char(writer, '"');
    size_t run = 0;
    for (size_t i = 0; i < length; i++) {
        unsigned char c = (unsigned char)text[i];
        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        payload_append(writer, text + run, i - run);
        run = i + 1;
        if (c == '"' || c == '\\') {
            char escaped[2] = {'\\', (char)c};
            payload_append(writer, escaped, sizeof(escaped));
        } else {
            char escaped[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 0x0F]};
            payload_append(writer, escaped, sizeof(escaped));
        }
    }
    payload_append(writer, text + run, length - run);
    payload_append_char(writer, '"');
}

void payload_textn(struct payload_writer *writer, const char *text, size_t length)
{
    if (!payload_begin_item(writer, true))
        return;
    if (!payload_utf8_valid(text, length)) {
        payload_fail(writer);
        return;
    }
    if (writer->format == PAYLOAD_CBOR) {
        payload_cbor_wrote(writer, cbor_encode_string_start(length, payload_cursor(writer),
                                                            payload_space(writer)));
        payload_append(writer, text, length);
    } else {
        payload_json_string(writer, text, length);
    }
}

void payload_text(struct payload_writer *writer, const char *text)
{
    payload_textn(writer, text, strlen(text));
}

void payload_int(struct payload_writer *writer, int64_t value)
{
    if (!payload_begin_item(writer, false))
        return;
    if (writer->format == PAYLOAD_CBOR) {
        /* CBOR negative integers carry -1 - value, which cannot overflow. */
        size_t written =
            value >= 0
                ? cbor_encode_uint((uint64_t)value, payload_cursor(writer), payload_space(writer))
                : cbor_encode_negint((uint64_t)(-(value + 1)), payload_cursor(writer),
                                     payload_space(writer));
        payload_cbor_wrote(writer, written);
    } else {
        char digits[24];
        int length = snprintf(digits, sizeof(digits), "%" PRId64, value);
        payload_append(writer, digits, (size_t)length);
    }
}

void payload_bool(struct payload_writer *writer, bool value)
{
    if (!payload_begin_item(writer, false))
        return;
    if (writer->format == PAYLOAD_CBOR) {
        payload_cbor_wrote(writer,
                           cbor_encode_bool(value, payload_cursor(writer), payload_space(writer)));
    } else {
        const char *literal = value ? "true" : "false";
        payload_append(writer, literal, strlen(literal));
    }
}

void payload_null(struct payload_writer *writer)
{
    if (!payload_begin_item(writer, false))
        return;
    if (writer->format == PAYLOAD_CBOR)
        payload_cbor_wrote(writer, cbor_encode_null(payload_cursor(writer), payload_space(writer)));
    else
        payload_append(writer, "null", 4);
}

/*
 * JSON has no NaN or infinity, so those are misuse there. Finite values get
 * the shortest %g form that reads back to the same double, with ".0" added
 * when it would otherwise read back as an integer.
 */
void payload_double(struct payload_writer *writer, double value)
{
    if (!payload_begin_item(writer, false))
        return;
    if (writer->format == PAYLOAD_CBOR) {
        payload_cbor_wrote(
            writer, cbor_encode_double(value, payload_cursor(writer), payload_space(writer)));
        return;
    }
    if (!isfinite(value)) {
        payload_fail(writer);
        return;
    }
    char text[40];
    int length = 0;
    for (int precision = 15; precision <= 17; precision++) {
        length = snprintf(text, sizeof(text), "%.*g", precision, value);
        if (strtod(text, NULL) == value)
            break;
    }
    if (strpbrk(text, ".eE") == NULL)
        length += snprintf(text + length, sizeof(text) - (size_t)length, ".0");
    payload_append(writer, text, (size_t)length);
}

/* Writes one jansson value; recursion is bounded by the writer's depth limit. */
static void payload_json_value(struct payload_writer *writer, json_t *value)
{
    if (writer->failed)
        return;
    switch (json_typeof(value)) {
    case JSON_OBJECT: {
        const char *key;
        size_t key_length;
        json_t *member;
        payload_map(writer, json_object_size(value));
        json_object_keylen_foreach(value, key, key_length, member)
        {
            payload_textn(writer, key, key_length);
            payload_json_value(writer, member);
        }
        payload_end(writer);
        break;
    }
    case JSON_ARRAY: {
        size_t index;
        json_t *element;
        payload_array(writer, json_array_size(value));
        json_array_foreach(value, index, element)
        {
            payload_json_value(writer, element);
        }
        payload_end(writer);
        break;
    }
    case JSON_STRING:
        payload_textn(writer, json_string_value(value), json_string_length(value));
        break;
    case JSON_INTEGER:
        payload_int(writer, (int64_t)json_integer_value(value));
        break;
    case JSON_REAL:
        payload_double(writer, json_real_value(value));
        break;
    case JSON_TRUE:
        payload_bool(writer, true);
        break;
    case JSON_FALSE:
        payload_bool(writer, false);
        break;
    case JSON_NULL:
        payload_null(writer);
        break;
    }
}

/*
 * The configured documents a shard serves are few (each group's ACL list and
 * resources) and their text does not change between requests, so each thread
 * keeps the encodings of the last few it wrote: a hit is a compare and a
 * copy instead of a jansson parse (about 5% of a provisioning's
 * instructions went to parsing these again). An entry is found by the whole
 * text, never by its address, and holds a value encoded at one nesting
 * depth without its JSON separator, so a copy is what the parse would write.
 */
#define JSON_CACHE_ENTRIES 4
#define JSON_CACHE_TEXT 2048
#define JSON_CACHE_BYTES 2048

struct json_cache_entry {
    size_t text_length; /* 0: empty */
    enum payload_format format;
    unsigned depth;
    bool is_text;
    size_t length;
    char text[JSON_CACHE_TEXT];
    uint8_t bytes[JSON_CACHE_BYTES];
};

static __thread struct json_cache_entry json_cache[JSON_CACHE_ENTRIES];
static __thread unsigned json_cache_next;

static struct json_cache_entry *json_cache_find(const struct payload_writer *writer,
                                                const char *json_text, size_t text_length)
{
    for (unsigned i = 0; i < JSON_CACHE_ENTRIES; i++) {
        struct json_cache_entry *entry = &json_cache[i];
        /* An unused entry (text_length 0) never matches: "" is not JSON and must fail. */
        if (entry->text_length != 0 && entry->text_length == text_length &&
            entry->format == writer->format && entry->depth == writer->depth &&
            memcmp(entry->text, json_text, text_length) == 0)
            return entry;
    }
    return NULL;
}

/* Keeps what the writer wrote from `from` (the value, after any separator). */
static void json_cache_keep(const struct payload_writer *writer, const char *json_text,
                            size_t text_length, unsigned depth, bool is_text, size_t from)
{
    size_t length = writer->length - from;
    if (text_length == 0 || text_length > JSON_CACHE_TEXT || length > JSON_CACHE_BYTES)
        return;
    struct json_cache_entry *entry = &json_cache[json_cache_next];
    json_cache_next = (json_cache_next + 1) % JSON_CACHE_ENTRIES;
    entry->text_length = text_length;
    entry->format = writer->format;
    entry->depth = depth;
    entry->is_text = is_text;
    entry->length = length;
    memcpy(entry->text, json_text, text_length);
    memcpy(entry->bytes, writer->buffer + from, length);
}

int payload_json(struct payload_writer *writer, const char *json_text)
{
    if (writer->failed)
        return -1;
    size_t text_length = strlen(json_text);
    const struct json_cache_entry *entry = json_cache_find(writer, json_text, text_length);
    if (entry != NULL) {
        if (payload_begin_item(writer, entry->is_text))
            payload_append(writer, entry->bytes, entry->length);
        return writer->failed ? -1 : 0;
    }
    json_error_t error;
    json_t *document = json_loads(json_text, JSON_DECODE_ANY | JSON_ALLOW_NUL, &error);
    if (document == NULL) {
        payload_fail(writer);
        return -1;
    }
    unsigned depth = writer->depth;
    bool separator = writer->format == PAYLOAD_JSON && writer->written[depth] > 0;
    size_t from = writer->length + separator;
    payload_json_value(writer, document);
    bool is_text = json_is_string(document);
    json_decref(document);
    if (writer->failed)
        return -1;
    json_cache_keep(writer, json_text, text_length, depth, is_text, from);
    return 0;
}

long payload_finish(struct payload_writer *writer)
{
    if (writer->failed || writer->depth != 0)
        return -1;
    return (long)writer->length;
}

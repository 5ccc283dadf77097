/*
 * record_text: see record_text.h.
 */
#include "dataplane/record_text.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/*
 * dps_json_compact: json_dumps(value, JSON_COMPACT) byte for byte, without
 * jansson's per-character UTF-8 walk and its growing buffer of small
 * appends (about a third of a record line's cost). Only what record lines
 * hold is written here: objects in jansson's order, arrays, ASCII strings
 * escaped as jansson escapes them, integers, true, false, null. Anything
 * else (a real, a byte above 0x7f) goes to json_dumps, so the output is
 * always jansson's.
 */
struct json_text {
    char *data;
    size_t length, size;
    bool unsupported;
};

static bool json_text_reserve(struct json_text *text, size_t more)
{
    if (text->length + more + 1 <= text->size)
        return true;
    size_t size = text->size != 0 ? text->size : 1024;
    while (size < text->length + more + 1)
        size *= 2;
    char *data = realloc(text->data, size);
    if (data == NULL)
        return false;
    text->data = data;
    text->size = size;
    return true;
}

static void json_text_put(struct json_text *text, const char *bytes, size_t length)
{
    if (text->unsupported || !json_text_reserve(text, length)) {
        text->unsupported = true;
        return;
    }
    memcpy(text->data + text->length, bytes, length);
    text->length += length;
}

static void json_text_string(struct json_text *text, const char *string, size_t length)
{
    /* At most six bytes per input byte (\u00XX), and the quotes. */
    if (text->unsupported || !json_text_reserve(text, 6 * length + 2)) {
        text->unsupported = true;
        return;
    }
    static const char HEX[] = "0123456789ABCDEF";
    static const uint64_t ONES = 0x0101010101010101u, HIGHS = 0x8080808080808080u;
    char *out = text->data + text->length;
    *out++ = '"';
    for (size_t i = 0; i < length; i++) {
        /* Eight bytes at a time while none is a control, '"', '\\' or above 0x7f. */
        while (length - i >= 8) {
            uint64_t word;
            memcpy(&word, string + i, 8);
            uint64_t quote = word ^ (ONES * '"'), backslash = word ^ (ONES * '\\');
            if (((word | ((word - ONES * 0x20) & ~word) | ((quote - ONES) & ~quote) |
                  ((backslash - ONES) & ~backslash)) &
                 HIGHS) != 0)
                break;
            memcpy(out, string + i, 8);
            out += 8;
            i += 8;
        }
        if (i == length)
            break;
        unsigned char c = (unsigned char)string[i];
        if (c >= 0x80) {
            text->unsupported = true;
            return;
        }
        if (c >= 0x20 && c != '"' && c != '\\') {
            *out++ = (char)c;
            continue;
        }
        *out++ = '\\';
        switch (c) {
        case '"':
        case '\\':
            *out++ = (char)c;
            break;
        case '\b':
            *out++ = 'b';
            break;
        case '\f':
            *out++ = 'f';
            break;
        case '\n':
            *out++ = 'n';
            break;
        case '\r':
            *out++ = 'r';
            break;
        case '\t':
            *out++ = 't';
            break;
        default:
            *out++ = 'u';
            *out++ = '0';
            *out++ = '0';
            *out++ = HEX[c >> 4];
            *out++ = HEX[c & 0xf];
        }
    }
    *out++ = '"';
    text->length = (size_t)(out - text->data);
}

static void json_text_value(struct json_text *text, const json_t *value, int depth)
{
    if (text->unsupported || depth > 32) {
        text->unsupported = true;
        return;
    }
    switch (json_typeof(value)) {
    case JSON_OBJECT:
        /* jansson's order: the object's iteration order. */
        json_text_put(text, "{", 1);
        for (void *at = json_object_iter((json_t *)value); at != NULL;
             at = json_object_iter_next((json_t *)value, at)) {
            if (at != json_object_iter((json_t *)value))
                json_text_put(text, ",", 1);
            json_text_string(text, json_object_iter_key(at), json_object_iter_key_len(at));
            json_text_put(text, ":", 1);
            json_text_value(text, json_object_iter_value(at), depth + 1);
        }
        json_text_put(text, "}", 1);
        break;
    case JSON_ARRAY:
        json_text_put(text, "[", 1);
        for (size_t i = 0; i < json_array_size(value); i++) {
            if (i > 0)
                json_text_put(text, ",", 1);
            json_text_value(text, json_array_get(value, i), depth + 1);
        }
        json_text_put(text, "]", 1);
        break;
    case JSON_STRING:
        json_text_string(text, json_string_value(value), json_string_length(value));
        break;
    case JSON_INTEGER: {
        char number[32];
        int length =
            snprintf(number, sizeof(number), "%" JSON_INTEGER_FORMAT, json_integer_value(value));
        json_text_put(text, number, (size_t)length);
        break;
    }
    case JSON_TRUE:
        json_text_put(text, "true", 4);
        break;
    case JSON_FALSE:
        json_text_put(text, "false", 5);
        break;
    case JSON_NULL:
        json_text_put(text, "null", 4);
        break;
    default:
        text->unsupported = true;
    }
}

char *dps_json_compact(const json_t *value)
{
    struct json_text text = {0};
    if (!json_is_object(value) && !json_is_array(value))
        return json_dumps(value, JSON_COMPACT);
    json_text_value(&text, value, 0);
    if (text.unsupported || text.data == NULL) {
        free(text.data);
        return json_dumps(value, JSON_COMPACT);
    }
    text.data[text.length] = '\0';
    return text.data;
}

/*
 * A stored record's creationDate and deviceId without building the whole
 * document (its certificate text is most of it). Only a plain shape is read
 * here: objects, ASCII strings whose escapes are the two-character ones,
 * JSON whitespace; anything else (a number, a literal, \u, a byte above
 * 0x7f, a value of those two members that is not a string, a member longer
 * than a buffer, nesting deeper than 16) answers false and the caller asks
 * jansson, so every answer is the one json_loadb would give.
 */
struct record_scan {
    const char *at, *end;
};

static void record_scan_space(struct record_scan *scan)
{
    while (scan->at < scan->end &&
           (*scan->at == ' ' || *scan->at == '\t' || *scan->at == '\n' || *scan->at == '\r'))
        scan->at++;
}

/* A string, unescaped into out (NULL: skipped); false if not of the plain shape or too long. */
static bool record_scan_string(struct record_scan *scan, char *out, size_t size)
{
    size_t length = 0;
    if (scan->at >= scan->end || *scan->at != '"')
        return false;
    scan->at++;
    while (scan->at < scan->end) {
        unsigned char c = (unsigned char)*scan->at++;
        if (c == '"') {
            if (out != NULL)
                out[length] = '\0';
            return true;
        }
        if (c < 0x20 || c >= 0x80)
            return false;
        if (c == '\\') {
            if (scan->at >= scan->end)
                return false;
            static const char ESCAPED[] = "\"\\/bfnrt", MEANT[] = "\"\\/\b\f\n\r\t";
            const char *escape = strchr(ESCAPED, *scan->at++);
            if (escape == NULL || *escape == '\0')
                return false;
            c = (unsigned char)MEANT[escape - ESCAPED];
        }
        if (out != NULL) {
            if (length + 1 >= size)
                return false;
            out[length++] = (char)c;
        }
    }
    return false;
}

static bool record_scan_object(struct record_scan *scan, int depth, char *created, char *device);

/* A member's value, skipped. */
static bool record_scan_skip(struct record_scan *scan, int depth)
{
    if (scan->at < scan->end && *scan->at == '"')
        return record_scan_string(scan, NULL, 0);
    return record_scan_object(scan, depth + 1, NULL, NULL);
}

/* An object; at depth 0 its creationDate and deviceId strings (the last of each) are kept. */
static bool record_scan_object(struct record_scan *scan, int depth, char *created, char *device)
{
    char key[16];
    if (depth > 16 || scan->at >= scan->end || *scan->at != '{')
        return false;
    scan->at++;
    record_scan_space(scan);
    if (scan->at < scan->end && *scan->at == '}') {
        scan->at++;
        return true;
    }
    for (;;) {
        record_scan_space(scan);
        /* Keys longer than the two read here are skipped as such. */
        const char *key_start = scan->at;
        if (!record_scan_string(scan, key, sizeof(key))) {
            scan->at = key_start;
            if (!record_scan_string(scan, NULL, 0))
                return false;
            key[0] = '\0';
        }
        record_scan_space(scan);
        if (scan->at >= scan->end || *scan->at != ':')
            return false;
        scan->at++;
        record_scan_space(scan);
        char *into = NULL;
        size_t into_size = 0;
        if (depth == 0 && strcmp(key, "creationDate") == 0) {
            into = created;
            into_size = RECORD_SCAN_TEXT;
        } else if (depth == 0 && strcmp(key, "deviceId") == 0) {
            into = device;
            into_size = RECORD_SCAN_TEXT;
        }
        if (into != NULL ? !record_scan_string(scan, into, into_size)
                         : !record_scan_skip(scan, depth))
            return false;
        record_scan_space(scan);
        if (scan->at < scan->end && *scan->at == ',') {
            scan->at++;
            continue;
        }
        if (scan->at < scan->end && *scan->at == '}') {
            scan->at++;
            return true;
        }
        return false;
    }
}

bool dps_record_scan(const char *value, size_t length, char created[RECORD_SCAN_TEXT],
                     char device[RECORD_SCAN_TEXT])
{
    struct record_scan scan = {value, value + length};
    created[0] = device[0] = '\0';
    record_scan_space(&scan);
    if (!record_scan_object(&scan, 0, created, device))
        return false;
    record_scan_space(&scan);
    return scan.at == scan.end;
}

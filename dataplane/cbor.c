/*
 * cbor: the zero-copy CBOR reader behind cbor.h.
 *
 * Every item starts with a head: major type in the top three bits, and
 * additional information that is either the argument itself (< 24), the size
 * of a big-endian argument that follows (24..27: 1, 2, 4, 8 bytes) or the
 * indefinite-length marker (31). All reads parse the head into a local
 * cursor and commit it only on success, so a failed read leaves the reader
 * where it was. dps_cbor_skip walks nested items with an explicit, bounded stack
 * instead of recursion, so hostile nesting costs neither stack nor more than
 * one pass over the input.
 */
#include "dataplane/cbor.h"

#include <string.h>

#define CBOR_INFO_INDEFINITE 31
#define CBOR_BREAK 0xFF

/*
 * Parses the head at *position, advancing it past the head only. Indefinite
 * length is only accepted where CBOR allows it (strings, containers, break);
 * reserved additional information 28..30 is an error.
 */
static int dps_cbor_parse_head(const uint8_t **position, const uint8_t *end,
                               struct dps_cbor_head *head)
{
    const uint8_t *p = *position;
    if (p >= end)
        return -1;
    uint8_t initial = *p++;
    head->major = initial >> 5;
    head->info = initial & 0x1F;
    head->indefinite = false;
    head->argument = 0;
    if (head->info < 24) {
        head->argument = head->info;
    } else if (head->info <= 27) {
        size_t size = (size_t)1 << (head->info - 24);
        if ((size_t)(end - p) < size)
            return -1;
        for (size_t i = 0; i < size; i++)
            head->argument = head->argument << 8 | p[i];
        p += size;
    } else if (head->info == CBOR_INFO_INDEFINITE) {
        if (head->major < DPS_CBOR_MAJOR_BYTES || head->major == DPS_CBOR_MAJOR_TAG)
            return -1;
        head->indefinite = true;
    } else {
        return -1;
    }
    *position = p;
    return 0;
}

void dps_cbor_reader_init(struct dps_cbor_reader *reader, const uint8_t *data, size_t length)
{
    reader->position = data;
    reader->end = data + length;
    reader->depth = 0;
}

enum dps_cbor_item_type dps_cbor_peek(const struct dps_cbor_reader *reader)
{
    if (reader->position >= reader->end)
        return DPS_CBOR_TYPE_INVALID;
    uint8_t initial = *reader->position;
    if (initial == CBOR_BREAK)
        return DPS_CBOR_TYPE_BREAK;
    switch (initial >> 5) {
    case DPS_CBOR_MAJOR_UINT:
        return DPS_CBOR_TYPE_UINT;
    case DPS_CBOR_MAJOR_NEGINT:
        return DPS_CBOR_TYPE_NEGINT;
    case DPS_CBOR_MAJOR_BYTES:
        return DPS_CBOR_TYPE_BYTES;
    case DPS_CBOR_MAJOR_TEXT:
        return DPS_CBOR_TYPE_TEXT;
    case DPS_CBOR_MAJOR_ARRAY:
        return DPS_CBOR_TYPE_ARRAY;
    case DPS_CBOR_MAJOR_MAP:
        return DPS_CBOR_TYPE_MAP;
    case DPS_CBOR_MAJOR_TAG:
        return DPS_CBOR_TYPE_TAG;
    default:
        return DPS_CBOR_TYPE_SIMPLE;
    }
}

/*
 * Opens a map or array. A definite count that cannot fit in the remaining
 * input (every item takes at least one byte) is refused up front.
 */
static int dps_cbor_enter(struct dps_cbor_reader *reader, unsigned major,
                          struct dps_cbor_container *container)
{
    if (reader->depth >= DPS_CBOR_MAX_DEPTH)
        return -1;
    const uint8_t *p = reader->position;
    struct dps_cbor_head head;
    if (dps_cbor_parse_head(&p, reader->end, &head) != 0 || head.major != major)
        return -1;
    if (!head.indefinite) {
        uint64_t left = (uint64_t)(reader->end - p);
        uint64_t items_per_step = major == DPS_CBOR_MAJOR_MAP ? 2 : 1;
        if (head.argument > left / items_per_step)
            return -1;
    }
    container->indefinite = head.indefinite;
    container->remaining = head.indefinite ? 0 : head.argument;
    reader->position = p;
    reader->depth++;
    return 0;
}

int dps_cbor_enter_map(struct dps_cbor_reader *reader, struct dps_cbor_container *container)
{
    return dps_cbor_enter(reader, DPS_CBOR_MAJOR_MAP, container);
}

int dps_cbor_enter_array(struct dps_cbor_reader *reader, struct dps_cbor_container *container)
{
    return dps_cbor_enter(reader, DPS_CBOR_MAJOR_ARRAY, container);
}

int dps_cbor_container_next(struct dps_cbor_reader *reader, struct dps_cbor_container *container)
{
    if (reader->depth == 0)
        return -1;
    if (container->indefinite) {
        if (reader->position >= reader->end)
            return -1;
        if (*reader->position != CBOR_BREAK)
            return 1;
        reader->position++;
    } else if (container->remaining > 0) {
        container->remaining--;
        return 1;
    }
    reader->depth--;
    return 0;
}

int dps_cbor_read_head(struct dps_cbor_reader *reader, unsigned major, struct dps_cbor_head *head)
{
    const uint8_t *p = reader->position;
    if (dps_cbor_parse_head(&p, reader->end, head) != 0 || head->major != major)
        return -1;
    reader->position = p;
    return 0;
}

int dps_cbor_read_string(struct dps_cbor_reader *reader, unsigned major, const uint8_t **data,
                         size_t *length)
{
    const uint8_t *start = reader->position;
    struct dps_cbor_head head;
    if (dps_cbor_read_head(reader, major, &head) != 0)
        return -1;
    if (head.indefinite || head.argument > (uint64_t)(reader->end - reader->position)) {
        reader->position = start;
        return -1;
    }
    *data = reader->position;
    *length = (size_t)head.argument;
    reader->position += head.argument;
    return 0;
}

int dps_cbor_read_text(struct dps_cbor_reader *reader, const char **text, size_t *length)
{
    const uint8_t *data;
    if (dps_cbor_read_string(reader, DPS_CBOR_MAJOR_TEXT, &data, length) != 0)
        return -1;
    *text = (const char *)data;
    return 0;
}

int dps_cbor_read_int(struct dps_cbor_reader *reader, int64_t *value)
{
    const uint8_t *p = reader->position;
    struct dps_cbor_head head;
    if (dps_cbor_parse_head(&p, reader->end, &head) != 0)
        return -1;
    if (head.major != DPS_CBOR_MAJOR_UINT && head.major != DPS_CBOR_MAJOR_NEGINT)
        return -1;
    if (head.argument > (uint64_t)INT64_MAX)
        return -1;
    /* A negative integer encodes -1 - argument, which fits once argument does. */
    *value =
        head.major == DPS_CBOR_MAJOR_UINT ? (int64_t)head.argument : -1 - (int64_t)head.argument;
    reader->position = p;
    return 0;
}

/* One open container while skipping. */
struct dps_cbor_skip_level {
    uint64_t remaining; /* definite: items (keys and values counted apart) left */
    bool indefinite;
    bool map;
    bool odd; /* indefinite map: a key was read and its value is still due */
};

int dps_cbor_skip(struct dps_cbor_reader *reader)
{
    struct dps_cbor_skip_level stack[DPS_CBOR_MAX_DEPTH];
    unsigned open = 0;
    const uint8_t *p = reader->position;
    const uint8_t *end = reader->end;
    bool tagged = false;

    for (;;) {
        if (p >= end)
            return -1;
        if (*p == CBOR_BREAK) {
            /* A break ends the innermost indefinite container, never a tag. */
            if (open == 0 || tagged || !stack[open - 1].indefinite || stack[open - 1].odd)
                return -1;
            p++;
            open--;
        } else {
            struct dps_cbor_head head;
            if (dps_cbor_parse_head(&p, end, &head) != 0)
                return -1;
            switch (head.major) {
            case DPS_CBOR_MAJOR_BYTES:
            case DPS_CBOR_MAJOR_TEXT:
                if (head.indefinite || head.argument > (uint64_t)(end - p))
                    return -1;
                p += head.argument;
                break;
            case DPS_CBOR_MAJOR_ARRAY:
            case DPS_CBOR_MAJOR_MAP: {
                if (reader->depth + open >= DPS_CBOR_MAX_DEPTH)
                    return -1;
                bool map = head.major == DPS_CBOR_MAJOR_MAP;
                uint64_t items = head.argument;
                if (!head.indefinite) {
                    /* Every item takes a byte: refuse counts the input cannot hold. */
                    uint64_t left = (uint64_t)(end - p);
                    if (items > (map ? left / 2 : left))
                        return -1;
                    if (map)
                        items *= 2;
                }
                if (head.indefinite || items > 0) {
                    stack[open++] = (struct dps_cbor_skip_level){
                        .remaining = items,
                        .indefinite = head.indefinite,
                        .map = map,
                        .odd = false,
                    };
                    tagged = false;
                    continue;
                }
                break;
            }
            case DPS_CBOR_MAJOR_TAG:
                tagged = true;
                continue;
            default:
                /* Integers, simple values and floats: the head is the whole item. */
                break;
            }
        }
        tagged = false;

        /* One item is complete: account for it in the enclosing containers. */
        while (open > 0) {
            struct dps_cbor_skip_level *level = &stack[open - 1];
            if (level->indefinite) {
                if (level->map)
                    level->odd = !level->odd;
                break;
            }
            if (--level->remaining > 0)
                break;
            open--;
        }
        if (open == 0) {
            reader->position = p;
            return 0;
        }
    }
}

bool dps_cbor_text_equals(const char *text, size_t length, const char *literal)
{
    size_t literal_length = strlen(literal);
    return literal_length == length && (length == 0 || memcmp(text, literal, length) == 0);
}

int dps_cbor_map_next_key(struct dps_cbor_reader *reader, struct dps_cbor_container *map,
                          const char **key, size_t *key_length)
{
    int more = dps_cbor_container_next(reader, map);
    if (more != 1)
        return more;
    return dps_cbor_read_text(reader, key, key_length) == 0 ? 1 : -1;
}

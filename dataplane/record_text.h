/*
 * record_text: the text of record lines, faster than jansson where the
 * data plane writes and reads them on every provisioning, and always with
 * jansson's exact result (each falls back to jansson on anything unusual).
 */
#ifndef DPS_RECORD_TEXT_H
#define DPS_RECORD_TEXT_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

/* json_dumps(value, JSON_COMPACT), byte for byte, faster for record lines (ASCII, no reals). */
char *dps_json_compact(const json_t *value);

/*
 * A stored record's top-level creationDate and deviceId strings ("" when absent), as json_loadb
 * would read them, when the text is of the plain shape it reads (false: ask jansson).
 */
#define RECORD_SCAN_TEXT 64
bool dps_record_scan(const char *value, size_t length, char created[RECORD_SCAN_TEXT],
                     char device[RECORD_SCAN_TEXT]);

#endif

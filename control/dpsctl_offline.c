/*
 * dpsctl_offline: the list commands with --data DIR read dpsd's store
 * directly, read-only, so they work while dpsd runs and when it is down.
 * The filters are the ones the API applies, applied here on each entry.
 */
#include "control/dpsctl_offline.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "store/records.h"

static bool filter_matches(const char *wanted, json_t *object, const char *key)
{
    const char *value = json_string_value(json_object_get(object, key));
    return wanted == NULL || wanted[0] == '\0' || (value != NULL && strcasecmp(value, wanted) == 0);
}

static bool within_window(const struct filters *filters, json_t *entry)
{
    const char *issued_at = json_string_value(json_object_get(entry, "issuedAt"));

    if (issued_at == NULL)
        return filters->since == NULL && filters->until == NULL;
    return (filters->since == NULL || strcmp(issued_at, filters->since) >= 0) &&
           (filters->until == NULL || strcmp(issued_at, filters->until) < 0);
}

struct offline_scan {
    struct sink *sink;
    const struct filters *filters;
    size_t unreadable;
};

static struct store *open_store(const char *name, const char *dir)
{
    char err[512] = "";
    struct store *store = store_open_readonly(dir, err, sizeof(err));

    if (store == NULL)
        fprintf(stderr,
                "dpsctl %s: cannot open the store in %s: %s (--data must name the daemon's "
                "dataDir)\n",
                name, dir, err);
    return store;
}

/* One merged record, printed when it matches the filters. */
static int record_result(void *user, json_t *record)
{
    struct offline_scan *scan = user;
    if (filter_matches(scan->filters->device_id, record, "deviceId") &&
        filter_matches(scan->filters->group_id, record, "enrollmentGroupId"))
        sink_put(scan->sink, record);
    return 0;
}

static int issuance_result(void *user, json_t *entry)
{
    struct offline_scan *scan = user;
    if (filter_matches(scan->filters->device_id, entry, "deviceId") &&
        filter_matches(scan->filters->serial, entry, "serial") &&
        within_window(scan->filters, entry))
        sink_put(scan->sink, entry);
    return 0;
}

static int binding_result(void *user, json_t *binding)
{
    struct offline_scan *scan = user;
    if (filter_matches(scan->filters->device_id, binding, "deviceId"))
        sink_put(scan->sink, binding);
    return 0;
}

static int block_entry(void *user, const char *key, size_t key_length, const char *value,
                       size_t value_length)
{
    struct offline_scan *scan = user;
    json_t *entry = json_loadb(value, value_length, 0, NULL);

    if (!json_is_object(entry)) {
        json_decref(entry);
        scan->unreadable++;
        return 0;
    }
    if (json_object_get(entry, "id") == NULL)
        json_object_set_new(entry, "id", json_stringn(key, key_length));
    sink_put(scan->sink, entry);
    json_decref(entry);
    return 0;
}

/*
 * Reads the store itself: records, issuance and bindings of every owner (or
 * of --owner's), the blocklist whole.
 */
int offline_list(const struct options *options, enum store_family family,
                 const struct filters *filters, struct sink *sink)
{
    struct offline_scan scan = {.sink = sink, .filters = filters};
    const char *dir = options->value[OPT_DATA];
    const char *owner = options->value[OPT_OWNER];
    struct store *store = open_store(options->name, dir);
    int status;

    if (store == NULL)
        return EXIT_REFUSED;
    if (family == STORE_RECORDS)
        status =
            records_scan(store, owner, filters->record_id[0] != '\0' ? filters->record_id : NULL,
                         record_result, &scan, &scan.unreadable);
    else if (family == STORE_ISSUANCE)
        status = records_issuance_scan(store, owner, issuance_result, &scan, &scan.unreadable);
    else if (family == STORE_BINDINGS)
        status = records_bindings_scan(store, owner, binding_result, &scan, &scan.unreadable);
    else
        status = store_scan(store, family, "", 0, block_entry, &scan);
    store_close(store);
    sink_end(sink);
    if (status != STORE_OK) {
        fprintf(stderr, "dpsctl %s: reading the store in %s failed\n", options->name, dir);
        return EXIT_REFUSED;
    }
    if (scan.unreadable > 0)
        fprintf(stderr, "dpsctl %s: %zu unreadable entries skipped\n", options->name,
                scan.unreadable);
    return EXIT_OK;
}

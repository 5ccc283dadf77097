/*
 * store: RocksDB behind the store.h interface, and the group-commit writer.
 *
 * One writer thread owns every data-path write. Requesters queue a
 * store_write and return; the writer takes everything queued (up to
 * STORE_BATCH_LIMIT writes), builds one indexed WriteBatch, and commits it
 * with sync=true, so one fdatasync covers many devices. Conditions are
 * checked against the database plus the writes already accepted into the
 * same batch (the index answers "what would this key hold after the batch"),
 * which makes device-id binding first-come-first-served even when two
 * claims land in one batch. Only after the sync returns does the writer call
 * done(); if the commit fails, every write of the batch gets STORE_ERROR,
 * because a conflict decided against a failed write is no more reliable than
 * the write itself. RocksDB then refuses further writes until the database
 * is reopened; the writer keeps answering every batch meanwhile.
 *
 * The WAL is always on and every commit is synced, so anything acknowledged
 * survives kill -9 and power loss; recovery stops at the first torn record
 * at the tail of the WAL, which can only belong to an unacknowledged batch.
 *
 * Read-only handles (tools) take neither the database lock nor the info
 * LOG, so they work while the daemon runs; they see what was synced when
 * they opened, and a tool reopens to see more.
 */
#include "store/store.h"

#include "control/log.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <rocksdb/c.h>

#define STORE_BATCH_LIMIT 1024
#define STORE_DEFAULT_QUEUE_LIMIT 65536
/* "default" plus one handle per store_family. */
#define STORE_HANDLE_COUNT (STORE_FAMILY_COUNT + 1)

struct store {
    rocksdb_t *db;
    rocksdb_options_t *options;
    rocksdb_readoptions_t *read_options;
    rocksdb_writeoptions_t *sync_options;
    rocksdb_column_family_handle_t *handles[STORE_HANDLE_COUNT];
    bool read_only;

    pthread_mutex_t lock;
    pthread_cond_t wake;
    struct store_write *head;
    struct store_write *tail;
    size_t queue_depth;
    size_t queue_limit;
    bool stopping;
    bool writer_started;
    pthread_t writer;
    uint64_t commits;
    uint64_t writes;
};

static const char *const family_names[STORE_FAMILY_COUNT] = {
    [STORE_GROUPS] = "enrollment_groups", [STORE_HUBS] = "hubs",
    [STORE_RECORDS] = "records",          [STORE_ISSUANCE] = "issuance",
    [STORE_BINDINGS] = "bindings",        [STORE_BLOCKLIST] = "blocklist",
};

const char *store_family_name(enum store_family family)
{
    if ((unsigned)family >= STORE_FAMILY_COUNT)
        return NULL;
    return family_names[family];
}

static bool family_valid(enum store_family family)
{
    return (unsigned)family < STORE_FAMILY_COUNT;
}

static rocksdb_column_family_handle_t *family_handle(struct store *store, enum store_family family)
{
    return store->handles[family + 1];
}

static void set_error(char *err, size_t err_length, const char *what, const char *detail)
{
    if (err && err_length)
        snprintf(err, err_length, "%s%s%s", what, detail ? ": " : "", detail ? detail : "");
}

static rocksdb_options_t *make_options(void)
{
    rocksdb_options_t *options = rocksdb_options_create();
    rocksdb_options_increase_parallelism(options, 2);
    rocksdb_options_set_create_if_missing(options, 1);
    rocksdb_options_set_create_missing_column_families(options, 1);
    rocksdb_options_set_keep_log_file_num(options, 4);
    /* kPointInTimeRecovery: replay the WAL up to the first torn record. */
    rocksdb_options_set_wal_recovery_mode(options, 2);
    return options;
}

static void store_free(struct store *store)
{
    for (size_t i = 0; i < STORE_HANDLE_COUNT; i++)
        if (store->handles[i])
            rocksdb_column_family_handle_destroy(store->handles[i]);
    if (store->db)
        rocksdb_close(store->db);
    if (store->sync_options)
        rocksdb_writeoptions_destroy(store->sync_options);
    if (store->read_options)
        rocksdb_readoptions_destroy(store->read_options);
    if (store->options)
        rocksdb_options_destroy(store->options);
    pthread_cond_destroy(&store->wake);
    pthread_mutex_destroy(&store->lock);
    free(store);
}

static struct store *store_new(void)
{
    struct store *store = calloc(1, sizeof(*store));
    if (!store)
        return NULL;
    pthread_mutex_init(&store->lock, NULL);
    pthread_cond_init(&store->wake, NULL);
    store->options = make_options();
    store->read_options = rocksdb_readoptions_create();
    store->sync_options = rocksdb_writeoptions_create();
    rocksdb_writeoptions_set_sync(store->sync_options, 1);
    return store;
}

/* Opens every column family, read-write or read-only; false with err. */
static bool open_families(struct store *store, const char *dir, char *err, size_t err_length)
{
    const char *names[STORE_HANDLE_COUNT];
    const rocksdb_options_t *family_options[STORE_HANDLE_COUNT];
    names[0] = "default";
    for (int i = 0; i < STORE_FAMILY_COUNT; i++)
        names[i + 1] = family_names[i];
    for (int i = 0; i < STORE_HANDLE_COUNT; i++)
        family_options[i] = store->options;

    char *error = NULL;
    if (store->read_only)
        store->db = rocksdb_open_for_read_only_column_families(
            store->options, dir, STORE_HANDLE_COUNT, names, family_options, store->handles, 0,
            &error);
    else
        store->db = rocksdb_open_column_families(store->options, dir, STORE_HANDLE_COUNT, names,
                                                 family_options, store->handles, &error);
    if (error) {
        set_error(err, err_length, "cannot open database", error);
        rocksdb_free(error);
        store->db = NULL;
        memset(store->handles, 0, sizeof(store->handles));
        return false;
    }
    return true;
}

/*
 * Adds one write to the batch unless its condition fails; returns the status
 * the write will have if the batch commits.
 */
static int batch_add(struct store *store, rocksdb_writebatch_wi_t *batch, struct store_write *write)
{
    if (write->has_condition) {
        const struct store_put *condition = &write->condition;
        size_t length = 0;
        char *error = NULL;
        char *current = rocksdb_writebatch_wi_get_from_batch_and_db_cf(
            batch, store->db, store->read_options, family_handle(store, condition->family),
            condition->key, condition->key_length, &length, &error);
        if (error) {
            rocksdb_free(error);
            return STORE_ERROR;
        }
        bool holds = !current || (length == condition->value_length &&
                                  memcmp(current, condition->value, length) == 0);
        rocksdb_free(current);
        if (!holds)
            return STORE_CONFLICT;
    }
    for (size_t i = 0; i < write->put_count; i++) {
        const struct store_put *put = &write->puts[i];
        rocksdb_writebatch_wi_put_cf(batch, family_handle(store, put->family), put->key,
                                     put->key_length, put->value, put->value_length);
    }
    return STORE_OK;
}

/* Commits a chain of writes as one synced batch and sets every status. */
static void commit_chain(struct store *store, rocksdb_writebatch_wi_t *batch,
                         struct store_write *chain)
{
    uint64_t applied = 0;
    for (struct store_write *write = chain; write; write = write->next) {
        write->status = batch_add(store, batch, write);
        if (write->status == STORE_OK)
            applied++;
    }

    bool committed = true;
    bool synced = rocksdb_writebatch_wi_count(batch) > 0;
    if (synced) {
        char *error = NULL;
        rocksdb_write_writebatch_wi(store->db, store->sync_options, batch, &error);
        if (error) {
            log_msg(LOG_ERROR, "store commit failed", "writes=%llu error=\"%s\"",
                    (unsigned long long)applied, error);
            rocksdb_free(error);
            committed = false;
        }
    }
    rocksdb_writebatch_wi_clear(batch);

    if (!committed)
        for (struct store_write *write = chain; write; write = write->next)
            write->status = STORE_ERROR;

    pthread_mutex_lock(&store->lock);
    if (committed) {
        store->commits += synced;
        store->writes += applied;
    }
    pthread_mutex_unlock(&store->lock);
}

static void *writer_main(void *arg)
{
    struct store *store = arg;
    /* overwrite_keys: lookups in the batch must see the latest put of a key. */
    rocksdb_writebatch_wi_t *batch = rocksdb_writebatch_wi_create(0, 1);

    pthread_mutex_lock(&store->lock);
    for (;;) {
        while (!store->head && !store->stopping)
            pthread_cond_wait(&store->wake, &store->lock);
        if (!store->head)
            break;

        struct store_write *chain = store->head;
        struct store_write *last = chain;
        size_t taken = 1;
        while (last->next && taken < STORE_BATCH_LIMIT) {
            last = last->next;
            taken++;
        }
        store->head = last->next;
        if (!store->head)
            store->tail = NULL;
        last->next = NULL;
        store->queue_depth -= taken;
        pthread_mutex_unlock(&store->lock);

        commit_chain(store, batch, chain);
        /* done() may free or resubmit its write, so step before calling it. */
        while (chain) {
            struct store_write *write = chain;
            chain = write->next;
            write->next = NULL;
            write->done(write);
        }

        pthread_mutex_lock(&store->lock);
    }
    pthread_mutex_unlock(&store->lock);

    rocksdb_writebatch_wi_destroy(batch);
    return NULL;
}

struct store *store_open(const char *dir, size_t queue_limit, char *err, size_t err_length)
{
    struct store *store = store_new();
    if (!store) {
        set_error(err, err_length, "out of memory", NULL);
        return NULL;
    }
    store->queue_limit = queue_limit ? queue_limit : STORE_DEFAULT_QUEUE_LIMIT;
    if (!open_families(store, dir, err, err_length)) {
        store_free(store);
        return NULL;
    }
    if (pthread_create(&store->writer, NULL, writer_main, store) != 0) {
        set_error(err, err_length, "cannot start the writer thread", NULL);
        store_free(store);
        return NULL;
    }
    store->writer_started = true;
    pthread_setname_np(store->writer, "dps-store");
    return store;
}

struct store *store_open_readonly(const char *dir, char *err, size_t err_length)
{
    struct store *store = store_new();
    if (!store) {
        set_error(err, err_length, "out of memory", NULL);
        return NULL;
    }
    store->read_only = true;
    rocksdb_options_set_create_if_missing(store->options, 0);
    rocksdb_options_set_create_missing_column_families(store->options, 0);

    if (!open_families(store, dir, err, err_length)) {
        store_free(store);
        return NULL;
    }
    return store;
}

void store_close(struct store *store)
{
    if (!store)
        return;
    if (store->writer_started) {
        pthread_mutex_lock(&store->lock);
        store->stopping = true;
        pthread_cond_signal(&store->wake);
        pthread_mutex_unlock(&store->lock);
        pthread_join(store->writer, NULL);
    }
    store_free(store);
}

static bool puts_valid(const struct store_put *puts, size_t count)
{
    for (size_t i = 0; i < count; i++)
        if (!family_valid(puts[i].family))
            return false;
    return true;
}

int store_submit(struct store *store, struct store_write *write)
{
    if (store->read_only || write->put_count > STORE_MAX_PUTS || !write->done ||
        !puts_valid(write->puts, write->put_count) ||
        (write->has_condition && !family_valid(write->condition.family)))
        return STORE_ERROR;

    write->next = NULL;
    pthread_mutex_lock(&store->lock);
    if (store->stopping) {
        pthread_mutex_unlock(&store->lock);
        return STORE_ERROR;
    }
    if (store->queue_depth >= store->queue_limit) {
        pthread_mutex_unlock(&store->lock);
        return STORE_BUSY;
    }
    if (store->tail)
        store->tail->next = write;
    else
        store->head = write;
    store->tail = write;
    store->queue_depth++;
    pthread_cond_signal(&store->wake);
    pthread_mutex_unlock(&store->lock);
    return STORE_OK;
}

int store_put_sync(struct store *store, const struct store_put *puts, size_t count)
{
    if (store->read_only || !puts_valid(puts, count))
        return STORE_ERROR;
    rocksdb_writebatch_t *batch = rocksdb_writebatch_create();
    for (size_t i = 0; i < count; i++)
        rocksdb_writebatch_put_cf(batch, family_handle(store, puts[i].family), puts[i].key,
                                  puts[i].key_length, puts[i].value, puts[i].value_length);
    char *error = NULL;
    rocksdb_write(store->db, store->sync_options, batch, &error);
    rocksdb_writebatch_destroy(batch);
    if (error) {
        log_msg(LOG_ERROR, "store synchronous write failed", "error=\"%s\"", error);
        rocksdb_free(error);
        return STORE_ERROR;
    }
    return STORE_OK;
}

int store_delete_sync(struct store *store, enum store_family family, const char *key,
                      size_t key_length)
{
    if (store->read_only || !family_valid(family))
        return STORE_ERROR;
    char *error = NULL;
    rocksdb_delete_cf(store->db, store->sync_options, family_handle(store, family), key, key_length,
                      &error);
    if (error) {
        log_msg(LOG_ERROR, "store synchronous delete failed", "error=\"%s\"", error);
        rocksdb_free(error);
        return STORE_ERROR;
    }
    return STORE_OK;
}

int store_get(struct store *store, enum store_family family, const char *key, size_t key_length,
              char **value, size_t *value_length)
{
    *value = NULL;
    *value_length = 0;
    if (!family_valid(family))
        return STORE_ERROR;
    char *error = NULL;
    rocksdb_pinnableslice_t *slice = rocksdb_get_pinned_cf(
        store->db, store->read_options, family_handle(store, family), key, key_length, &error);
    if (error) {
        rocksdb_free(error);
        return STORE_ERROR;
    }
    if (!slice)
        return STORE_NOT_FOUND;
    size_t length = 0;
    const char *data = rocksdb_pinnableslice_value(slice, &length);
    char *copy = malloc(length + 1);
    if (!copy) {
        rocksdb_pinnableslice_destroy(slice);
        return STORE_ERROR;
    }
    memcpy(copy, data, length);
    copy[length] = '\0';
    rocksdb_pinnableslice_destroy(slice);
    *value = copy;
    *value_length = length;
    return STORE_OK;
}

int store_scan(struct store *store, enum store_family family, const char *prefix,
               size_t prefix_length,
               int (*fn)(void *user, const char *key, size_t key_length, const char *value,
                         size_t value_length),
               void *user)
{
    if (!family_valid(family))
        return STORE_ERROR;
    rocksdb_iterator_t *iterator =
        rocksdb_create_iterator_cf(store->db, store->read_options, family_handle(store, family));
    if (prefix_length)
        rocksdb_iter_seek(iterator, prefix, prefix_length);
    else
        rocksdb_iter_seek_to_first(iterator);
    for (; rocksdb_iter_valid(iterator); rocksdb_iter_next(iterator)) {
        size_t key_length = 0;
        size_t value_length = 0;
        const char *key = rocksdb_iter_key(iterator, &key_length);
        if (prefix_length &&
            (key_length < prefix_length || memcmp(key, prefix, prefix_length) != 0))
            break;
        const char *value = rocksdb_iter_value(iterator, &value_length);
        if (fn(user, key, key_length, value, value_length) != 0)
            break;
    }
    char *error = NULL;
    rocksdb_iter_get_error(iterator, &error);
    rocksdb_iter_destroy(iterator);
    if (error) {
        rocksdb_free(error);
        return STORE_ERROR;
    }
    return STORE_OK;
}

void store_get_stats(struct store *store, struct store_stats *stats)
{
    pthread_mutex_lock(&store->lock);
    stats->commits = store->commits;
    stats->writes = store->writes;
    stats->queue_depth = store->queue_depth;
    pthread_mutex_unlock(&store->lock);
}

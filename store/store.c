/*
 * store: RocksDB behind the store.h interface, and the group-commit writers.
 *
 * Several writer threads (STORE_DEFAULT_WRITERS) own every data-path write. Requesters queue a
 * store_write and return; a free writer takes what is queued (up to
 * STORE_BATCH_LIMIT writes), builds one indexed WriteBatch, and commits it
 * with sync=true, so one fdatasync covers many devices. Several writers do
 * not mean several syncs: RocksDB groups writers that arrive while one of
 * them syncs, and the group's leader does one WAL append and one sync for
 * every batch of the group, while each writer inserts its own batch into the
 * memtable. What the writers spread is the CPU around the sync (the batch,
 * the memtable, the answers), which on one writer capped a node near 1,500
 * provisionings/s whatever its cores. The count is the configuration's
 * store.writers (default STORE_DEFAULT_WRITERS). Measured side by side at 32
 * devices in flight (thread CPU from /proc's schedstat, nanoseconds): the
 * busiest of 16 writers spent 38 to 47 us per provisioning (all 16 together
 * 540 to 640 us), of 8 writers 66 us (all 8: 490 us); idle writers cost
 * nothing.
 * RocksDB's enable_pipelined_write and turning its writers' adaptive yield
 * off changed neither figure beyond the run-to-run noise, so both keep
 * RocksDB's defaults.
 *
 * Conditions are checked against the database plus the writes already
 * accepted into the same batch (the index answers "what would this key hold
 * after the batch"), which makes device-id binding first-come-first-served
 * even when two claims land in one batch. Across writers, every key a write
 * puts or checks hashes to one of STORE_STRIPES stripes, and a writer takes
 * a write only while no other writer holds one of its stripes; it holds
 * them until its batch is committed. A write whose stripe is held stays
 * queued, and so does every later write sharing a stripe with it. So writes
 * that share a key are committed in the order they were queued, as with one
 * writer: the second claim of a device id is checked against the first
 * one's outcome, and an older line of a record never overwrites a newer
 * one, while writes that share nothing go to whichever writer is free.
 *
 * A submit wakes a writer only when none was woken since a writer last looked
 * at the queue (wake_needed()): the woken writer takes every free write, so a
 * burst of submits costs one futex wake instead of one each, and it is
 * signalled after the queue's lock is released, so it does not block on it
 * at once. (Per provisioning this halved the store writers' system calls and
 * context switches: perf/wakeups.sh.)
 *
 * Only after the sync returns does a writer call done(); if the commit
 * fails, every write of the batch gets STORE_ERROR, because a conflict
 * decided against a failed write is no more reliable than the write itself.
 *
 * Recovery. After a failed write RocksDB refuses every later write (a
 * background error) and the C API cannot resume it, so the store marks
 * itself unhealthy and one writer recovers by closing the database and
 * opening it again with the same options and column families, then proving
 * it writable with a synced probe write. While either fails it retries with
 * a back-off (RECOVERY_FIRST_MS doubling to RECOVERY_MAX_MS). While the store
 * is unhealthy, store_submit() and the synchronous writes fail at once with
 * STORE_ERROR, so devices get 5.03 without waiting and nothing queues; what
 * was already queued is answered STORE_ERROR. A write whose append reached
 * the WAL but whose sync failed may reappear after the reopen: it was never
 * acknowledged, so at worst a device that retries finds its record written.
 *
 * The database handle and the column family handles change during a reopen,
 * so every access holds db_lock shared; the reopen holds it exclusive.
 * Readers never wait for a reopen: they try the lock and answer STORE_ERROR
 * when it is taken, or when the database is closed because the last reopen
 * failed. Writers wait for it (a batch taken meanwhile commits to the
 * reopened database, or fails when there is none).
 *
 * The WAL is always on and every commit is synced, so anything acknowledged
 * survives kill -9 and power loss; recovery stops at the first torn record
 * at the tail of the WAL, which can only belong to an unacknowledged batch.
 * Opening replays and flushes the WAL, so a WAL torn by a failed append is
 * never followed by a newer WAL holding acknowledged writes.
 *
 * Read-only handles (tools) take neither the database lock nor the info
 * LOG, so they work while the daemon runs; they see what was synced when
 * they opened, and a tool reopens to see more.
 */
#include "store/store.h"

#include "common/file.h"
#include "common/log.h"
#include "store/migrate.h"

#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <rocksdb/c.h>

#define STORE_BATCH_LIMIT 1024
#define STORE_STRIPES 16384
#define STORE_STRIPE_WORDS (STORE_STRIPES / 64)
#define STORE_DEFAULT_QUEUE_LIMIT 65536
/* "default" plus one handle per store_family. */
#define STORE_HANDLE_COUNT (STORE_FAMILY_COUNT + 1)
#define RECOVERY_FIRST_MS 100
#define RECOVERY_MAX_MS 5000
/* Written to the "default" column family, which holds nothing else, to prove a reopen. */
#define PROBE_KEY "store-probe"
/* Also in the "default" column family: the key layout's version (store.h). */
#define LAYOUT_KEY "layout"

struct store;

/* One writer thread and what it holds between taking a batch and answering it. */
struct store_writer {
    struct store *store;
    pthread_t thread;
    uint64_t stripes[STORE_STRIPE_WORDS]; /* stripes of the keys of its batch */
};

struct store {
    /* db and handles: changed only by a recovering writer, under db_lock held exclusive. */
    pthread_rwlock_t db_lock;
    rocksdb_t *db;
    rocksdb_column_family_handle_t *handles[STORE_HANDLE_COUNT];
    rocksdb_options_t *options;
    rocksdb_readoptions_t *read_options;
    rocksdb_writeoptions_t *sync_options;
    rocksdb_writeoptions_t *lazy_options; /* the WAL without a sync: batches of lazy writes */
    char *dir;
    bool read_only;

    pthread_mutex_t lock;
    pthread_cond_t wake;
    bool wake_pending; /* a writer was signalled and has not looked at the queue since */
    struct store_write *head;
    struct store_write *tail;
    size_t queue_depth;
    size_t queue_limit;
    bool stopping;
    bool healthy;
    bool recovering; /* a writer is reopening the database */
    struct store_writer writers[STORE_MAX_WRITERS];
    size_t writer_count;                  /* started */
    uint64_t stripes[STORE_STRIPE_WORDS]; /* held by some writer */
    uint64_t commits;
    uint64_t lazy_commits;
    uint64_t writes;
    uint64_t failures;
    uint64_t recoveries;
};

static const char *const family_names[STORE_FAMILY_COUNT] = {
    [STORE_GROUPS] = "enrollment_groups", [STORE_HUBS] = "hubs",
    [STORE_RECORDS] = "records",          [STORE_ISSUANCE] = "issuance",
    [STORE_BINDINGS] = "bindings",        [STORE_BLOCKLIST] = "blocklist",
    [STORE_CLUSTER] = "cluster",
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
    /*
     * Keep RocksDB's info LOG empty: RocksDB 7.8 as packaged (assertions on)
     * aborts on the next line it logs after a failed LOG append, which a full
     * disk causes. Level 6 is above every level, headers included; the store
     * logs its own failures. RocksDB cannot write that level into an OPTIONS
     * file, so each open leaves an OPTIONS-*.dbtmp, which remove_options_temp()
     * deletes.
     */
    rocksdb_options_set_info_log_level(options, 6);
    return options;
}

/* Closes the database and its column family handles (the caller excludes readers). */
static void close_db(struct store *store)
{
    for (size_t i = 0; i < STORE_HANDLE_COUNT; i++)
        if (store->handles[i])
            rocksdb_column_family_handle_destroy(store->handles[i]);
    memset(store->handles, 0, sizeof(store->handles));
    if (store->db)
        rocksdb_close(store->db);
    store->db = NULL;
}

static void store_free(struct store *store)
{
    close_db(store);
    if (store->sync_options)
        rocksdb_writeoptions_destroy(store->sync_options);
    if (store->lazy_options)
        rocksdb_writeoptions_destroy(store->lazy_options);
    if (store->read_options)
        rocksdb_readoptions_destroy(store->read_options);
    if (store->options)
        rocksdb_options_destroy(store->options);
    free(store->dir);
    pthread_cond_destroy(&store->wake);
    pthread_mutex_destroy(&store->lock);
    pthread_rwlock_destroy(&store->db_lock);
    free(store);
}

static struct store *store_new(const char *dir)
{
    struct store *store = calloc(1, sizeof(*store));
    if (!store)
        return NULL;
    store->dir = strdup(dir);
    if (!store->dir) {
        free(store);
        return NULL;
    }
    pthread_mutex_init(&store->lock, NULL);
    pthread_condattr_t cond_attr;
    pthread_condattr_init(&cond_attr);
    pthread_condattr_setclock(&cond_attr, CLOCK_MONOTONIC);
    pthread_cond_init(&store->wake, &cond_attr);
    pthread_condattr_destroy(&cond_attr);
    /* Prefer the reopen, so a stream of readers cannot hold recovery off. */
    pthread_rwlockattr_t rwlock_attr;
    pthread_rwlockattr_init(&rwlock_attr);
    pthread_rwlockattr_setkind_np(&rwlock_attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&store->db_lock, &rwlock_attr);
    pthread_rwlockattr_destroy(&rwlock_attr);
    store->healthy = true;
    store->options = make_options();
    store->read_options = rocksdb_readoptions_create();
    store->sync_options = rocksdb_writeoptions_create();
    rocksdb_writeoptions_set_sync(store->sync_options, 1);
    store->lazy_options = rocksdb_writeoptions_create();
    rocksdb_writeoptions_set_sync(store->lazy_options, 0);
    return store;
}

/* Deletes the OPTIONS-*.dbtmp files opening leaves (see make_options()). */
static void remove_options_temp(const char *dir)
{
    DIR *listing = opendir(dir);
    if (!listing)
        return;
    for (struct dirent *entry; (entry = readdir(listing));) {
        size_t length = strlen(entry->d_name);
        if (strncmp(entry->d_name, "OPTIONS-", 8) == 0 && length > 6 &&
            strcmp(entry->d_name + length - 6, ".dbtmp") == 0)
            unlinkat(dirfd(listing), entry->d_name, 0);
    }
    closedir(listing);
}

/*
 * Read-only: the families the store has (one written by an earlier dpsd may
 * lack a newer family: its handle stays NULL and reads find nothing there).
 */
static void open_read_only(struct store *store, const char *const *names,
                           const rocksdb_options_t *const *family_options, char **error)
{
    size_t listed = 0;
    char **present = rocksdb_list_column_families(store->options, store->dir, &listed, error);
    if (*error) {
        if (present)
            rocksdb_list_column_families_destroy(present, listed);
        return;
    }
    const char *open_names[STORE_HANDLE_COUNT];
    int index[STORE_HANDLE_COUNT];
    int count = 0;
    for (int i = 0; i < STORE_HANDLE_COUNT; i++) {
        bool found = false;
        for (size_t p = 0; p < listed && !found; p++)
            found = strcmp(present[p], names[i]) == 0;
        if (found) {
            open_names[count] = names[i];
            index[count++] = i;
        }
    }
    rocksdb_list_column_families_destroy(present, listed);
    rocksdb_column_family_handle_t *opened[STORE_HANDLE_COUNT] = {0};
    store->db = rocksdb_open_for_read_only_column_families(
        store->options, store->dir, count, open_names, family_options, opened, 0, error);
    for (int i = 0; !*error && i < count; i++)
        store->handles[index[i]] = opened[i];
}

/* Opens every column family, read-write or read-only; false with err. */
static bool open_families(struct store *store, char *err, size_t err_length)
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
        open_read_only(store, names, family_options, &error);
    else
        store->db = rocksdb_open_column_families(store->options, store->dir, STORE_HANDLE_COUNT,
                                                 names, family_options, store->handles, &error);
    if (error) {
        set_error(err, err_length, "cannot open database", error);
        rocksdb_free(error);
        store->db = NULL;
        memset(store->handles, 0, sizeof(store->handles));
        return false;
    }
    if (!store->read_only)
        remove_options_temp(store->dir);
    return true;
}

/*
 * Takes db_lock shared for a reader or a synchronous writer; false (nothing
 * held) while a reopen runs or after one failed.
 */
static bool db_acquire(struct store *store)
{
    if (pthread_rwlock_tryrdlock(&store->db_lock) != 0)
        return false;
    if (!store->db) {
        pthread_rwlock_unlock(&store->db_lock);
        return false;
    }
    return true;
}

static void db_release(struct store *store)
{
    pthread_rwlock_unlock(&store->db_lock);
}

/* Records a failed write: a writer recovers before anything else is committed. */
static void mark_failed(struct store *store)
{
    pthread_mutex_lock(&store->lock);
    store->failures++;
    store->healthy = false;
    pthread_cond_broadcast(&store->wake);
    pthread_mutex_unlock(&store->lock);
}

/* The stripe of a condition's key (FNV-1a over the family and the key). */
static size_t stripe_of(const struct store_put *condition)
{
    uint64_t hash = 14695981039346656037ULL ^ (uint64_t)condition->family;
    for (size_t i = 0; i < condition->key_length; i++) {
        hash ^= (unsigned char)condition->key[i];
        hash *= 1099511628211ULL;
    }
    return (size_t)(hash % STORE_STRIPES);
}

static bool stripe_test(const uint64_t *stripes, size_t stripe)
{
    return (stripes[stripe / 64] >> (stripe % 64)) & 1;
}

static void stripe_set(uint64_t *stripes, size_t stripe)
{
    stripes[stripe / 64] |= (uint64_t)1 << (stripe % 64);
}

/*
 * Adds one write to the batch unless one of its conditions fails; returns the status
 * the write will have if the batch commits.
 */
static int batch_add(struct store *store, rocksdb_writebatch_wi_t *batch, struct store_write *write)
{
    for (size_t i = 0; i < write->condition_count; i++) {
        const struct store_put *condition = &write->conditions[i];
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
        if (!holds) {
            write->failed_condition = i;
            return STORE_CONFLICT;
        }
    }
    for (size_t i = 0; i < write->put_count; i++) {
        const struct store_put *put = &write->puts[i];
        rocksdb_writebatch_wi_put_cf(batch, family_handle(store, put->family), put->key,
                                     put->key_length, put->value, put->value_length);
    }
    return STORE_OK;
}

/* What one commit adds to the store's statistics. */
struct commit_counts {
    uint64_t commits, lazy_commits, writes;
};

/*
 * Commits a chain of writes as one batch (synced unless every write is lazy) and sets
 * every status. Holds db_lock shared, so a reopen waits for it.
 */
static void commit_chain(struct store *store, rocksdb_writebatch_wi_t *batch,
                         struct store_write *chain, struct commit_counts *counts)
{
    memset(counts, 0, sizeof(*counts));
    pthread_rwlock_rdlock(&store->db_lock);
    if (!store->db) {
        pthread_rwlock_unlock(&store->db_lock);
        for (struct store_write *write = chain; write; write = write->next)
            write->status = STORE_ERROR;
        return;
    }
    uint64_t applied = 0;
    bool lazy = true;
    for (struct store_write *write = chain; write; write = write->next) {
        write->status = batch_add(store, batch, write);
        if (write->status == STORE_OK)
            applied++;
        lazy = lazy && write->lazy;
    }

    bool committed = true;
    bool written = rocksdb_writebatch_wi_count(batch) > 0;
    bool synced = written && !lazy;
    if (written) {
        char *error = NULL;
        rocksdb_write_writebatch_wi(store->db, lazy ? store->lazy_options : store->sync_options,
                                    batch, &error);
        if (error) {
            log_msg(LOG_ERROR, "store commit failed", "writes=%llu error=\"%s\"",
                    (unsigned long long)applied, error);
            rocksdb_free(error);
            committed = false;
        }
    }
    pthread_rwlock_unlock(&store->db_lock);
    rocksdb_writebatch_wi_clear(batch);

    if (!committed) {
        for (struct store_write *write = chain; write; write = write->next)
            write->status = STORE_ERROR;
        mark_failed(store);
        return;
    }
    /* Counted by the writer under the lock it takes next anyway (stripes_release()). */
    counts->commits = synced;
    counts->lazy_commits = written && lazy;
    counts->writes = applied;
}

/* Calls done() for each write of a chain; done() may free or resubmit its write. */
static void answer_chain(struct store_write *chain)
{
    while (chain) {
        struct store_write *write = chain;
        chain = write->next;
        write->next = NULL;
        write->done(write);
    }
}

/*
 * Whether a queued write needs a writer signalled (with store->lock held):
 * not while one signalled earlier has not looked at the queue yet, since it
 * takes every free write. So a burst of submits costs one futex wake, not
 * one each. A signal that finds every writer busy wakes nobody, and
 * wake_pending stays set until a writer looks at the queue after its commit,
 * which each does before it sleeps again: nothing queued is left unseen.
 */
static bool wake_needed(struct store *store)
{
    if (store->wake_pending)
        return false;
    store->wake_pending = true;
    return true;
}

/* Detaches every queued write as a chain (with store->lock held). */
static struct store_write *take_all(struct store *store)
{
    struct store_write *chain = store->head;
    store->head = NULL;
    store->tail = NULL;
    store->queue_depth = 0;
    return chain;
}

/* The stripes of every key a write puts or checks (with repeats); returns how many. */
static size_t write_stripes(const struct store_write *write,
                            size_t stripes[STORE_MAX_PUTS + STORE_MAX_CONDITIONS])
{
    size_t count = 0;
    for (size_t i = 0; i < write->put_count; i++)
        stripes[count++] = stripe_of(&write->puts[i]);
    for (size_t i = 0; i < write->condition_count; i++)
        stripes[count++] = stripe_of(&write->conditions[i]);
    return count;
}

/*
 * Detaches up to limit queued writes as a chain for writer, in queue order,
 * leaving queued each write with a key on a stripe another writer holds,
 * and each later write sharing a stripe with one left (with store->lock held).
 * The writer holds the stripes of what it took until stripes_release().
 */
static struct store_write *take_queued(struct store *store, struct store_writer *writer,
                                       size_t limit)
{
    uint64_t left[STORE_STRIPE_WORDS];
    bool any_left = false;
    struct store_write *chain = NULL;
    struct store_write **chain_end = &chain;
    struct store_write **link = &store->head;
    struct store_write *last_left = NULL;
    size_t taken = 0;
    while (*link && taken < limit) {
        struct store_write *write = *link;
        size_t stripes[STORE_MAX_PUTS + STORE_MAX_CONDITIONS];
        size_t count = write_stripes(write, stripes);
        bool free = true;
        for (size_t i = 0; i < count && free; i++)
            free = !(any_left && stripe_test(left, stripes[i])) &&
                   (!stripe_test(store->stripes, stripes[i]) ||
                    stripe_test(writer->stripes, stripes[i]));
        if (!free) {
            if (!any_left) {
                memset(left, 0, sizeof(left));
                any_left = true;
            }
            for (size_t i = 0; i < count; i++)
                stripe_set(left, stripes[i]);
            last_left = write;
            link = &write->next;
            continue;
        }
        for (size_t i = 0; i < count; i++) {
            stripe_set(store->stripes, stripes[i]);
            stripe_set(writer->stripes, stripes[i]);
        }
        *link = write->next;
        write->next = NULL;
        *chain_end = write;
        chain_end = &write->next;
        taken++;
    }
    if (!*link)
        store->tail = last_left;
    store->queue_depth -= taken;
    return chain;
}

/*
 * Gives back the stripes writer held (with store->lock held). One idle writer
 * looks again at what is queued (a write may have waited for these stripes);
 * it takes every write that is free, and wakes another when it leaves some it
 * could take. Waking one, not all: with 16 writers a broadcast made every
 * idle writer fight for store->lock after each commit, for nothing.
 */
static void stripes_release(struct store *store, struct store_writer *writer)
{
    bool held = false;
    for (size_t i = 0; i < STORE_STRIPE_WORDS; i++) {
        held = held || writer->stripes[i] != 0;
        store->stripes[i] &= ~writer->stripes[i];
        writer->stripes[i] = 0;
    }
    if (held && store->head && wake_needed(store))
        pthread_cond_signal(&store->wake);
}

/* Closes and reopens the database, then proves it writable; false with the reason logged. */
static bool reopen(struct store *store)
{
    char err[512] = "";
    pthread_rwlock_wrlock(&store->db_lock);
    close_db(store);
    bool opened = open_families(store, err, sizeof(err));
    pthread_rwlock_unlock(&store->db_lock);
    if (!opened) {
        log_msg(LOG_WARN, "store reopen failed", "error=\"%s\"", err);
        return false;
    }
    char *error = NULL;
    rocksdb_put_cf(store->db, store->sync_options, store->handles[0], PROBE_KEY, strlen(PROBE_KEY),
                   "", 0, &error);
    if (error) {
        log_msg(LOG_WARN, "store probe write failed", "error=\"%s\"", error);
        rocksdb_free(error);
        return false;
    }
    return true;
}

/*
 * With store->lock held: answers what is queued with STORE_ERROR and tries
 * to reopen; after a failed attempt waits out the back-off (or until
 * stopping). Returns with store->lock held. One writer at a time (recovering).
 */
static void recover(struct store *store, unsigned *delay_ms)
{
    struct store_write *failed;
    while ((failed = take_all(store))) {
        pthread_mutex_unlock(&store->lock);
        for (struct store_write *write = failed; write; write = write->next)
            write->status = STORE_ERROR;
        answer_chain(failed);
        pthread_mutex_lock(&store->lock);
    }
    if (store->stopping)
        return;
    pthread_mutex_unlock(&store->lock);
    bool recovered = reopen(store);
    pthread_mutex_lock(&store->lock);
    if (recovered) {
        store->healthy = true;
        store->recoveries++;
        *delay_ms = RECOVERY_FIRST_MS;
        pthread_cond_broadcast(&store->wake);
        log_msg(LOG_INFO, "store recovered", "failures=%llu recoveries=%llu",
                (unsigned long long)store->failures, (unsigned long long)store->recoveries);
        return;
    }
    log_msg(LOG_WARN, "store recovery retry", "in_ms=%u", *delay_ms);
    struct timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += *delay_ms / 1000;
    deadline.tv_nsec += (long)(*delay_ms % 1000) * 1000000L;
    if (deadline.tv_nsec >= 1000000000L) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000L;
    }
    while (!store->stopping &&
           pthread_cond_timedwait(&store->wake, &store->lock, &deadline) != ETIMEDOUT)
        ;
    *delay_ms = *delay_ms * 2 < RECOVERY_MAX_MS ? *delay_ms * 2 : RECOVERY_MAX_MS;
}

static void *writer_main(void *arg)
{
    struct store_writer *writer = arg;
    struct store *store = writer->store;
    /* overwrite_keys: lookups in the batch must see the latest put of a key. */
    rocksdb_writebatch_wi_t *batch = rocksdb_writebatch_wi_create(0, 1);
    unsigned delay_ms = RECOVERY_FIRST_MS;

    pthread_mutex_lock(&store->lock);
    for (;;) {
        if (!store->healthy) {
            if (store->recovering) {
                while (store->recovering && !store->stopping)
                    pthread_cond_wait(&store->wake, &store->lock);
            } else {
                store->recovering = true;
                recover(store, &delay_ms);
                store->recovering = false;
                pthread_cond_broadcast(&store->wake);
            }
            if (store->stopping && !store->healthy)
                break;
            continue;
        }
        store->wake_pending = false; /* this writer looks at the queue now */
        struct store_write *chain = take_queued(store, writer, STORE_BATCH_LIMIT);
        if (!chain) {
            /* Stop once nothing is queued; what waits for a stripe waits for its holder. */
            if (store->stopping && !store->head) {
                /* A writer that waited while the last writes were blocked on a stripe was not
                 * woken by their release (one is woken, not all): every writer looks again. */
                pthread_cond_broadcast(&store->wake);
                break;
            }
            pthread_cond_wait(&store->wake, &store->lock);
            continue;
        }
        if (store->head && wake_needed(store))
            pthread_cond_signal(&store->wake); /* what is left may be another writer's to take */
        pthread_mutex_unlock(&store->lock);
        struct commit_counts counts;
        commit_chain(store, batch, chain, &counts);
        pthread_mutex_lock(&store->lock);
        store->commits += counts.commits;
        store->lazy_commits += counts.lazy_commits;
        store->writes += counts.writes;
        stripes_release(store, writer);
        pthread_mutex_unlock(&store->lock);
        answer_chain(chain);
        pthread_mutex_lock(&store->lock);
    }
    pthread_mutex_unlock(&store->lock);

    rocksdb_writebatch_wi_destroy(batch);
    return NULL;
}

/* The layout version the store records (0 when it records none), or -1 on a read error. */
static int read_layout(struct store *store)
{
    char *error = NULL;
    size_t length = 0;
    char *value = rocksdb_get_cf(store->db, store->read_options, store->handles[0], LAYOUT_KEY,
                                 strlen(LAYOUT_KEY), &length, &error);
    if (error) {
        rocksdb_free(error);
        return -1;
    }
    int version = 0;
    if (value && length > 0 && length < 8) {
        char text[8];
        memcpy(text, value, length);
        text[length] = '\0';
        version = atoi(text);
    }
    rocksdb_free(value);
    return version;
}

static bool family_empty(struct store *store, enum store_family family)
{
    if (!family_handle(store, family))
        return true;
    rocksdb_iterator_t *iterator =
        rocksdb_create_iterator_cf(store->db, store->read_options, family_handle(store, family));
    rocksdb_iter_seek_to_first(iterator);
    bool empty = !rocksdb_iter_valid(iterator);
    rocksdb_iter_destroy(iterator);
    return empty;
}

/*
 * Brings a store opened read-write to the current layout: a store that
 * records no layout is migrated (an empty one trivially), then marked. The
 * writer is not running yet, so nothing else writes meanwhile.
 */
static bool upgrade_layout(struct store *store, char *err, size_t err_length)
{
    int version = read_layout(store);
    if (version == STORE_LAYOUT_VERSION)
        return true;
    if (version != 0) {
        char detail[64];
        snprintf(detail, sizeof(detail), "layout %d, this dpsd knows layout %d", version,
                 STORE_LAYOUT_VERSION);
        set_error(err, err_length,
                  version < 0 ? "cannot read the store's layout" : "unknown layout",
                  version < 0 ? NULL : detail);
        return false;
    }
    if (migrate_from_layout_1(store, err, err_length) != 0)
        return false;
    char text[8];
    snprintf(text, sizeof(text), "%d", STORE_LAYOUT_VERSION);
    char *error = NULL;
    rocksdb_put_cf(store->db, store->sync_options, store->handles[0], LAYOUT_KEY,
                   strlen(LAYOUT_KEY), text, strlen(text), &error);
    if (error) {
        set_error(err, err_length, "cannot record the store's layout", error);
        rocksdb_free(error);
        return false;
    }
    return true;
}

/* Stops the writers started (finishing what is queued) and waits for them. */
static void writers_stop(struct store *store)
{
    pthread_mutex_lock(&store->lock);
    store->stopping = true;
    pthread_cond_broadcast(&store->wake);
    pthread_mutex_unlock(&store->lock);
    for (size_t i = 0; i < store->writer_count; i++)
        pthread_join(store->writers[i].thread, NULL);
    store->writer_count = 0;
}

struct store *store_open(const char *dir, size_t queue_limit, size_t writers, char *err,
                         size_t err_length)
{
    struct store *store = store_new(dir);
    if (!store) {
        set_error(err, err_length, "out of memory", NULL);
        return NULL;
    }
    store->queue_limit = queue_limit ? queue_limit : STORE_DEFAULT_QUEUE_LIMIT;
    if (writers == 0)
        writers = STORE_DEFAULT_WRITERS;
    if (writers > STORE_MAX_WRITERS)
        writers = STORE_MAX_WRITERS;
    /* Records, keys of groups and the issuance log are in clear here: only dpsd may write. */
    if (file_private_dir(dir, err, err_length) != 0) {
        store_free(store);
        return NULL;
    }
    if (!open_families(store, err, err_length) || !upgrade_layout(store, err, err_length)) {
        store_free(store);
        return NULL;
    }
    for (size_t i = 0; i < writers; i++) {
        struct store_writer *writer = &store->writers[i];
        writer->store = store;
        if (pthread_create(&writer->thread, NULL, writer_main, writer) != 0) {
            set_error(err, err_length, "cannot start the writer threads", NULL);
            writers_stop(store);
            store_free(store);
            return NULL;
        }
        store->writer_count++;
        char name[16];
        snprintf(name, sizeof(name), "dps-store-%zu", i);
        pthread_setname_np(writer->thread, name);
    }
    return store;
}

struct store *store_open_readonly(const char *dir, char *err, size_t err_length)
{
    struct store *store = store_new(dir);
    if (!store) {
        set_error(err, err_length, "out of memory", NULL);
        return NULL;
    }
    store->read_only = true;
    rocksdb_options_set_create_if_missing(store->options, 0);
    rocksdb_options_set_create_missing_column_families(store->options, 0);

    if (!open_families(store, err, err_length)) {
        store_free(store);
        return NULL;
    }
    int version = read_layout(store);
    if (version != STORE_LAYOUT_VERSION &&
        !(version == 0 && family_empty(store, STORE_RECORDS) &&
          family_empty(store, STORE_ISSUANCE) && family_empty(store, STORE_BINDINGS))) {
        set_error(err, err_length,
                  version > STORE_LAYOUT_VERSION
                      ? "the store was written by a newer dpsd (unknown layout)"
                      : "the store was written by an earlier dpsd (key layout 1); start this dpsd "
                        "on it once to bring it to the current layout",
                  NULL);
        store_free(store);
        return NULL;
    }
    return store;
}

void store_close(struct store *store)
{
    if (!store)
        return;
    if (store->writer_count > 0) {
        writers_stop(store);
        /* Lazy writes the last batches appended become durable with one last sync. */
        if (store->healthy && store->db != NULL) {
            char *error = NULL;
            rocksdb_put_cf(store->db, store->sync_options, store->handles[0], PROBE_KEY,
                           strlen(PROBE_KEY), "", 0, &error);
            rocksdb_free(error);
        }
    }
    store_free(store);
}

bool store_healthy(struct store *store)
{
    pthread_mutex_lock(&store->lock);
    bool healthy = store->healthy;
    pthread_mutex_unlock(&store->lock);
    return healthy;
}

/* Families valid; values present unless deletes are allowed (synchronous writes). */
static bool puts_valid(const struct store_put *puts, size_t count, bool deletes)
{
    for (size_t i = 0; i < count; i++)
        if (!family_valid(puts[i].family) || (!deletes && !puts[i].value))
            return false;
    return true;
}

int store_submit(struct store *store, struct store_write *write)
{
    if (store->read_only || write->put_count > STORE_MAX_PUTS ||
        write->condition_count > STORE_MAX_CONDITIONS || !write->done ||
        !puts_valid(write->puts, write->put_count, false) ||
        !puts_valid(write->conditions, write->condition_count, false))
        return STORE_ERROR;

    write->next = NULL;
    pthread_mutex_lock(&store->lock);
    if (store->stopping || !store->healthy) {
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
    bool wake = wake_needed(store);
    pthread_mutex_unlock(&store->lock);
    /* Signalled unlocked, so the woken writer does not block at once on the lock held here. */
    if (wake)
        pthread_cond_signal(&store->wake);
    return STORE_OK;
}

/* The synchronous writes of the control plane: refused while unhealthy, like submit. */
static bool sync_write_allowed(struct store *store)
{
    if (store->read_only || !store_healthy(store))
        return false;
    return db_acquire(store);
}

int store_put_sync(struct store *store, const struct store_put *puts, size_t count)
{
    if (!puts_valid(puts, count, true) || !sync_write_allowed(store))
        return STORE_ERROR;
    rocksdb_writebatch_t *batch = rocksdb_writebatch_create();
    for (size_t i = 0; i < count; i++) {
        if (puts[i].value)
            rocksdb_writebatch_put_cf(batch, family_handle(store, puts[i].family), puts[i].key,
                                      puts[i].key_length, puts[i].value, puts[i].value_length);
        else
            rocksdb_writebatch_delete_cf(batch, family_handle(store, puts[i].family), puts[i].key,
                                         puts[i].key_length);
    }
    char *error = NULL;
    rocksdb_write(store->db, store->sync_options, batch, &error);
    db_release(store);
    rocksdb_writebatch_destroy(batch);
    if (error) {
        log_msg(LOG_ERROR, "store synchronous write failed", "error=\"%s\"", error);
        rocksdb_free(error);
        mark_failed(store);
        return STORE_ERROR;
    }
    return STORE_OK;
}

int store_delete_sync(struct store *store, enum store_family family, const char *key,
                      size_t key_length)
{
    if (!family_valid(family) || !sync_write_allowed(store))
        return STORE_ERROR;
    char *error = NULL;
    rocksdb_delete_cf(store->db, store->sync_options, family_handle(store, family), key, key_length,
                      &error);
    db_release(store);
    if (error) {
        log_msg(LOG_ERROR, "store synchronous delete failed", "error=\"%s\"", error);
        rocksdb_free(error);
        mark_failed(store);
        return STORE_ERROR;
    }
    return STORE_OK;
}

int store_get(struct store *store, enum store_family family, const char *key, size_t key_length,
              char **value, size_t *value_length)
{
    *value = NULL;
    *value_length = 0;
    if (!family_valid(family) || !db_acquire(store))
        return STORE_ERROR;
    if (!family_handle(store, family)) {
        db_release(store);
        return STORE_NOT_FOUND; /* a family this (read-only, older) store lacks */
    }
    char *error = NULL;
    rocksdb_pinnableslice_t *slice = rocksdb_get_pinned_cf(
        store->db, store->read_options, family_handle(store, family), key, key_length, &error);
    int status = STORE_OK;
    if (error) {
        rocksdb_free(error);
        status = STORE_ERROR;
    } else if (!slice) {
        status = STORE_NOT_FOUND;
    } else {
        size_t length = 0;
        const char *data = rocksdb_pinnableslice_value(slice, &length);
        char *copy = malloc(length + 1);
        if (copy) {
            memcpy(copy, data, length);
            copy[length] = '\0';
            *value = copy;
            *value_length = length;
        } else {
            status = STORE_ERROR;
        }
    }
    if (slice)
        rocksdb_pinnableslice_destroy(slice);
    db_release(store);
    return status;
}

/* Walks the family from a seek position: prefix scans, or every key after `after`. */
static int scan(struct store *store, enum store_family family, const char *seek, size_t seek_length,
                bool prefix, bool skip_equal,
                int (*fn)(void *user, const char *key, size_t key_length, const char *value,
                          size_t value_length),
                void *user)
{
    if (!family_valid(family) || !db_acquire(store))
        return STORE_ERROR;
    if (!family_handle(store, family)) {
        db_release(store);
        return STORE_OK; /* a family this (read-only, older) store lacks: nothing in it */
    }
    rocksdb_iterator_t *iterator =
        rocksdb_create_iterator_cf(store->db, store->read_options, family_handle(store, family));
    if (seek_length)
        rocksdb_iter_seek(iterator, seek, seek_length);
    else
        rocksdb_iter_seek_to_first(iterator);
    /* Only the first key can equal `after`: it is not looked at again (fn may reuse it). */
    if (skip_equal && seek_length && rocksdb_iter_valid(iterator)) {
        size_t key_length = 0;
        const char *key = rocksdb_iter_key(iterator, &key_length);
        if (key_length == seek_length && memcmp(key, seek, seek_length) == 0)
            rocksdb_iter_next(iterator);
    }
    for (; rocksdb_iter_valid(iterator); rocksdb_iter_next(iterator)) {
        size_t key_length = 0;
        size_t value_length = 0;
        const char *key = rocksdb_iter_key(iterator, &key_length);
        if (prefix && seek_length &&
            (key_length < seek_length || memcmp(key, seek, seek_length) != 0))
            break;
        const char *value = rocksdb_iter_value(iterator, &value_length);
        if (fn(user, key, key_length, value, value_length) != 0)
            break;
    }
    char *error = NULL;
    rocksdb_iter_get_error(iterator, &error);
    rocksdb_iter_destroy(iterator);
    db_release(store);
    if (error) {
        rocksdb_free(error);
        return STORE_ERROR;
    }
    return STORE_OK;
}

int store_scan(struct store *store, enum store_family family, const char *prefix,
               size_t prefix_length,
               int (*fn)(void *user, const char *key, size_t key_length, const char *value,
                         size_t value_length),
               void *user)
{
    return scan(store, family, prefix, prefix_length, true, false, fn, user);
}

int store_scan_after(struct store *store, enum store_family family, const char *after,
                     size_t after_length,
                     int (*fn)(void *user, const char *key, size_t key_length, const char *value,
                               size_t value_length),
                     void *user)
{
    return scan(store, family, after, after_length, false, true, fn, user);
}

void store_get_stats(struct store *store, struct store_stats *stats)
{
    pthread_mutex_lock(&store->lock);
    stats->commits = store->commits;
    stats->lazy_commits = store->lazy_commits;
    stats->writes = store->writes;
    stats->queue_depth = store->queue_depth;
    stats->failures = store->failures;
    stats->recoveries = store->recoveries;
    pthread_mutex_unlock(&store->lock);
}

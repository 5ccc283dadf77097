/*
 * Tests for store: reads and prefix scans, scans that resume after a key,
 * column family separation, group commit, conditional writes (also two
 * claims in one batch, and two conditions on one write), several writers
 * (per-key order and racing claims), deletes through
 * synchronous writes, the queue limit, persistence across reopen, read-only access while another
 * process holds the database, durability of acknowledged writes across kill -9, and a commit
 * failing on an I/O error, then the store recovering by itself.
 *
 * The tests that need a second process re-execute this binary with a helper
 * mode as argv[1], so the helper starts with fresh RocksDB state instead of
 * a fork of a process that has RocksDB threads.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <rocksdb/c.h>

#include "tests/unit/temp_dir.h"
#include "store/store.h"

static int setup(void **state)
{
    return temp_dir_setup(state, "/tmp/test-store-XXXXXX");
}

static int teardown(void **state)
{
    return temp_dir_teardown(state);
}

static struct store *open_store_writers(const char *dir, size_t queue_limit, size_t writers)
{
    char err[256] = "";
    struct store *store = store_open(dir, queue_limit, writers, err, sizeof(err));
    if (!store)
        fail_msg("store_open: %s", err);
    return store;
}

/* One writer: the tests that hold the writer in done() see every later write queued. */
static struct store *open_store(const char *dir, size_t queue_limit)
{
    return open_store_writers(dir, queue_limit, 1);
}

static struct store_put put_of(enum store_family family, const char *key, const char *value)
{
    return (struct store_put){.family = family,
                              .key = key,
                              .key_length = strlen(key),
                              .value = value,
                              .value_length = value ? strlen(value) : 0};
}

/* Asserts that key holds value (or is absent when value is NULL). */
static void assert_value(struct store *store, enum store_family family, const char *key,
                         const char *value)
{
    char *got = NULL;
    size_t length = 0;
    int status = store_get(store, family, key, strlen(key), &got, &length);
    if (!value) {
        assert_int_equal(status, STORE_NOT_FOUND);
        assert_null(got);
        return;
    }
    assert_int_equal(status, STORE_OK);
    assert_int_equal(length, strlen(value));
    assert_string_equal(got, value);
    free(got);
}

/* Counts completions of submitted writes; the test thread waits on it. */
struct completions {
    pthread_mutex_t lock;
    pthread_cond_t changed;
    int done;
    int ok;
    int conflict;
    int error;
};

static struct completions completions = {.lock = PTHREAD_MUTEX_INITIALIZER,
                                         .changed = PTHREAD_COND_INITIALIZER};

static void completions_reset(void)
{
    pthread_mutex_lock(&completions.lock);
    completions.done = completions.ok = completions.conflict = completions.error = 0;
    pthread_mutex_unlock(&completions.lock);
}

static void count_done(struct store_write *write)
{
    pthread_mutex_lock(&completions.lock);
    completions.done++;
    completions.ok += write->status == STORE_OK;
    completions.conflict += write->status == STORE_CONFLICT;
    completions.error += write->status == STORE_ERROR;
    pthread_cond_broadcast(&completions.changed);
    pthread_mutex_unlock(&completions.lock);
}

static void completions_wait(int count)
{
    pthread_mutex_lock(&completions.lock);
    while (completions.done < count)
        pthread_cond_wait(&completions.changed, &completions.lock);
    pthread_mutex_unlock(&completions.lock);
}

/* Like completions_wait(), but false when count is not reached within seconds. */
static bool completions_wait_for(int count, int seconds)
{
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += seconds;
    pthread_mutex_lock(&completions.lock);
    int r = 0;
    while (completions.done < count && r == 0)
        r = pthread_cond_timedwait(&completions.changed, &completions.lock, &deadline);
    bool reached = completions.done >= count;
    pthread_mutex_unlock(&completions.lock);
    return reached;
}

/*
 * A write whose done() holds the writer thread until released: while it is
 * held, everything submitted stays queued and goes into the next batch.
 */
struct gate {
    pthread_mutex_t lock;
    pthread_cond_t changed;
    bool entered;
    bool released;
    struct store_write write;
};

static struct gate gate = {.lock = PTHREAD_MUTEX_INITIALIZER, .changed = PTHREAD_COND_INITIALIZER};

static void gate_done(struct store_write *write)
{
    (void)write;
    pthread_mutex_lock(&gate.lock);
    gate.entered = true;
    pthread_cond_broadcast(&gate.changed);
    while (!gate.released)
        pthread_cond_wait(&gate.changed, &gate.lock);
    pthread_mutex_unlock(&gate.lock);
}

static void gate_hold_writer(struct store *store)
{
    gate.entered = false;
    gate.released = false;
    memset(&gate.write, 0, sizeof(gate.write));
    gate.write.puts[0] = put_of(STORE_HUBS, "gate", "held");
    gate.write.put_count = 1;
    gate.write.done = gate_done;
    assert_int_equal(store_submit(store, &gate.write), STORE_OK);
    pthread_mutex_lock(&gate.lock);
    while (!gate.entered)
        pthread_cond_wait(&gate.changed, &gate.lock);
    pthread_mutex_unlock(&gate.lock);
}

static void gate_release(void)
{
    pthread_mutex_lock(&gate.lock);
    gate.released = true;
    pthread_cond_broadcast(&gate.changed);
    pthread_mutex_unlock(&gate.lock);
}

struct collected {
    char keys[8][32];
    char values[8][32];
    int count;
};

static int collect(void *user, const char *key, size_t key_length, const char *value,
                   size_t value_length)
{
    struct collected *collected = user;
    assert_true(collected->count < 8);
    snprintf(collected->keys[collected->count], 32, "%.*s", (int)key_length, key);
    snprintf(collected->values[collected->count], 32, "%.*s", (int)value_length, value);
    collected->count++;
    return 0;
}

static int collect_first(void *user, const char *key, size_t key_length, const char *value,
                         size_t value_length)
{
    collect(user, key, key_length, value, value_length);
    return 1;
}

static void put_get_and_prefix_scan(void **state)
{
    struct temp_dir *fixture = *state;
    struct store *store = open_store(fixture->dir, 16);
    struct store_put puts[] = {
        put_of(STORE_RECORDS, "r1/record", "{\"id\":\"r1\"}"),
        put_of(STORE_RECORDS, "r1/cloud", "{\"status\":{}}"),
        put_of(STORE_RECORDS, "r10/record", "{\"id\":\"r10\"}"),
        put_of(STORE_RECORDS, "r2/record", "{\"id\":\"r2\"}"),
        put_of(STORE_RECORDS, "r0/record", "{\"id\":\"r0\"}"),
    };
    assert_int_equal(store_put_sync(store, puts, 5), STORE_OK);

    assert_value(store, STORE_RECORDS, "r1/record", "{\"id\":\"r1\"}");
    assert_value(store, STORE_RECORDS, "r1/acl", NULL);

    /* Keys are bytes: a key with an embedded NUL is distinct from its prefix. */
    struct store_put binary = {STORE_RECORDS, "r3\0x", 4, "v", 1};
    assert_int_equal(store_put_sync(store, &binary, 1), STORE_OK);
    char *value = NULL;
    size_t length = 0;
    assert_int_equal(store_get(store, STORE_RECORDS, "r3", 2, &value, &length), STORE_NOT_FOUND);
    assert_int_equal(store_get(store, STORE_RECORDS, "r3\0x", 4, &value, &length), STORE_OK);
    assert_int_equal(length, 1);
    free(value);

    struct collected collected = {0};
    assert_int_equal(store_scan(store, STORE_RECORDS, "r1/", 3, collect, &collected), STORE_OK);
    assert_int_equal(collected.count, 2);
    assert_string_equal(collected.keys[0], "r1/cloud");
    assert_string_equal(collected.values[0], "{\"status\":{}}");
    assert_string_equal(collected.keys[1], "r1/record");

    memset(&collected, 0, sizeof(collected));
    assert_int_equal(store_scan(store, STORE_RECORDS, NULL, 0, collect, &collected), STORE_OK);
    assert_int_equal(collected.count, 6);
    assert_string_equal(collected.keys[0], "r0/record");
    assert_string_equal(collected.keys[3], "r10/record");
    assert_string_equal(collected.keys[4], "r2/record");

    memset(&collected, 0, sizeof(collected));
    assert_int_equal(store_scan(store, STORE_RECORDS, "r1", 2, collect_first, &collected),
                     STORE_OK);
    assert_int_equal(collected.count, 1);
    assert_string_equal(collected.keys[0], "r1/cloud");

    memset(&collected, 0, sizeof(collected));
    assert_int_equal(store_scan(store, STORE_RECORDS, "r9", 2, collect, &collected), STORE_OK);
    assert_int_equal(collected.count, 0);
    store_close(store);
}

static void column_families_are_separate(void **state)
{
    struct temp_dir *fixture = *state;
    assert_string_equal(store_family_name(STORE_GROUPS), "enrollment_groups");
    assert_string_equal(store_family_name(STORE_HUBS), "hubs");
    assert_string_equal(store_family_name(STORE_RECORDS), "records");
    assert_string_equal(store_family_name(STORE_ISSUANCE), "issuance");
    assert_string_equal(store_family_name(STORE_BINDINGS), "bindings");
    assert_null(store_family_name(STORE_FAMILY_COUNT));

    struct store *store = open_store(fixture->dir, 16);
    struct store_put puts[] = {
        put_of(STORE_GROUPS, "same-key", "group"),
        put_of(STORE_HUBS, "same-key", "hub"),
    };
    assert_int_equal(store_put_sync(store, puts, 2), STORE_OK);
    assert_value(store, STORE_GROUPS, "same-key", "group");
    assert_value(store, STORE_HUBS, "same-key", "hub");
    assert_value(store, STORE_RECORDS, "same-key", NULL);
    assert_value(store, STORE_ISSUANCE, "same-key", NULL);
    assert_value(store, STORE_BINDINGS, "same-key", NULL);

    struct collected collected = {0};
    assert_int_equal(store_scan(store, STORE_HUBS, NULL, 0, collect, &collected), STORE_OK);
    assert_int_equal(collected.count, 1);
    assert_string_equal(collected.values[0], "hub");
    store_close(store);
}

#define SUBMITTERS 4
#define WRITES_PER_SUBMITTER 250

/* What every worker thread of a test starts with; run_workers() sets it. */
struct worker {
    struct store *store;
    int index;
};

/*
 * Runs count workers at once, worker i being the element of size bytes at workers + i * size,
 * whose struct worker comes first; waits for them, every one returning NULL.
 */
static void run_workers(struct store *store, void *workers, size_t size, int count,
                        void *(*work)(void *))
{
    pthread_t threads[count];
    for (int i = 0; i < count; i++) {
        struct worker *worker = (struct worker *)((char *)workers + (size_t)i * size);
        memset(worker, 0, size);
        worker->store = store;
        worker->index = i;
        assert_int_equal(pthread_create(&threads[i], NULL, work, worker), 0);
    }
    for (int i = 0; i < count; i++) {
        void *result = NULL;
        pthread_join(threads[i], &result);
        assert_null(result);
    }
}

struct submitter {
    struct store *store; /* struct worker */
    int index;
    struct store_write writes[WRITES_PER_SUBMITTER];
    char keys[WRITES_PER_SUBMITTER][16];
};

static void *submit_many(void *arg)
{
    struct submitter *submitter = arg;
    for (int i = 0; i < WRITES_PER_SUBMITTER; i++) {
        struct store_write *write = &submitter->writes[i];
        snprintf(submitter->keys[i], sizeof(submitter->keys[i]), "s%d-%03d", submitter->index, i);
        write->puts[0] = put_of(STORE_ISSUANCE, submitter->keys[i], submitter->keys[i]);
        write->put_count = 1;
        write->done = count_done;
        if (store_submit(submitter->store, write) != STORE_OK)
            return (void *)1;
    }
    return NULL;
}

static void group_commit_batches_concurrent_writes(void **state)
{
    struct temp_dir *fixture = *state;
    struct store *store = open_store(fixture->dir, 4096);
    completions_reset();
    static struct submitter submitters[SUBMITTERS];
    run_workers(store, submitters, sizeof(submitters[0]), SUBMITTERS, submit_many);
    completions_wait(SUBMITTERS * WRITES_PER_SUBMITTER);
    assert_int_equal(completions.ok, SUBMITTERS * WRITES_PER_SUBMITTER);

    struct store_stats stats;
    store_get_stats(store, &stats);
    assert_int_equal(stats.writes, SUBMITTERS * WRITES_PER_SUBMITTER);
    assert_int_equal(stats.queue_depth, 0);
    /* Each commit costs an fdatasync; 1000 writes must share far fewer. */
    assert_true(stats.commits >= 1);
    assert_true(stats.commits <= SUBMITTERS * WRITES_PER_SUBMITTER / 10);
    print_message("# %llu commits for %d writes\n", (unsigned long long)stats.commits,
                  SUBMITTERS * WRITES_PER_SUBMITTER);

    assert_value(store, STORE_ISSUANCE, "s0-000", "s0-000");
    assert_value(store, STORE_ISSUANCE, "s3-249", "s3-249");
    store_close(store);
}

#define WAKE_ROUNDS 300
#define WAKE_BURST 200

/*
 * A submit signals a writer only when none was signalled since a writer last
 * looked at the queue: no write may be left queued with every writer asleep.
 * A write submitted while the only writer is busy (the signal finds nobody
 * waiting) is taken when that writer is done, with no later submit to wake
 * it; with 16 writers, single writes each find them asleep again, and bursts
 * land while a signalled writer has not run yet. Each wait would time out on
 * a lost wake-up.
 */
static void wake_ups_are_not_lost(void **state)
{
    struct temp_dir *fixture = *state;
    static struct store_write writes[WAKE_BURST];
    static char keys[WAKE_BURST][16];
    struct store *store = open_store(fixture->dir, 4096);
    completions_reset();
    gate_hold_writer(store);
    writes[0] = (struct store_write){.put_count = 1, .done = count_done};
    writes[0].puts[0] = put_of(STORE_ISSUANCE, "while-busy", "{}");
    assert_int_equal(store_submit(store, &writes[0]), STORE_OK);
    gate_release();
    assert_true(completions_wait_for(1, 30));
    assert_int_equal(writes[0].status, STORE_OK);
    store_close(store);

    store = open_store_writers(fixture->dir, 4096, 16);
    completions_reset();
    for (int round = 0; round < WAKE_ROUNDS; round++) {
        snprintf(keys[0], sizeof(keys[0]), "single-%03d", round);
        writes[0] =
            (struct store_write){.put_count = 1, .done = count_done, .lazy = round % 3 == 0};
        writes[0].puts[0] = put_of(STORE_ISSUANCE, keys[0], "{}");
        assert_int_equal(store_submit(store, &writes[0]), STORE_OK);
        if (!completions_wait_for(round + 1, 30))
            fail_msg("write %d was never taken", round);
    }
    for (int burst = 0; burst < 5; burst++) {
        completions_reset();
        for (int i = 0; i < WAKE_BURST; i++) {
            snprintf(keys[i], sizeof(keys[i]), "burst-%d-%03d", burst, i);
            writes[i] = (struct store_write){.put_count = 1, .done = count_done, .lazy = i % 2};
            writes[i].puts[0] = put_of(STORE_ISSUANCE, keys[i], "{}");
            assert_int_equal(store_submit(store, &writes[i]), STORE_OK);
        }
        if (!completions_wait_for(WAKE_BURST, 30))
            fail_msg("burst %d: only %d of %d writes answered", burst, completions.done,
                     WAKE_BURST);
        assert_int_equal(completions.ok, WAKE_BURST);
    }
    store_close(store);
}

static struct store_write binding_write(const char *device, const char *record,
                                        const char *record_value)
{
    struct store_write write = {0};
    write.puts[0] = put_of(STORE_BINDINGS, device, record);
    write.puts[1] = put_of(STORE_RECORDS, record_value, "{}");
    write.put_count = 2;
    write.conditions[0] = put_of(STORE_BINDINGS, device, record);
    write.condition_count = 1;
    write.done = count_done;
    return write;
}

static int submit_and_wait(struct store *store, struct store_write *write)
{
    completions_reset();
    assert_int_equal(store_submit(store, write), STORE_OK);
    completions_wait(1);
    return write->status;
}

static void conditional_write_absent_same_different(void **state)
{
    struct temp_dir *fixture = *state;
    struct store *store = open_store(fixture->dir, 16);

    struct store_write first = binding_write("dev-1", "rec-a", "rec-a/record");
    assert_int_equal(submit_and_wait(store, &first), STORE_OK);
    assert_value(store, STORE_BINDINGS, "dev-1", "rec-a");
    assert_value(store, STORE_RECORDS, "rec-a/record", "{}");

    struct store_write again = binding_write("dev-1", "rec-a", "rec-a/cloud");
    assert_int_equal(submit_and_wait(store, &again), STORE_OK);
    assert_value(store, STORE_RECORDS, "rec-a/cloud", "{}");

    struct store_write other = binding_write("dev-1", "rec-b", "rec-b/record");
    assert_int_equal(submit_and_wait(store, &other), STORE_CONFLICT);
    assert_value(store, STORE_BINDINGS, "dev-1", "rec-a");
    assert_value(store, STORE_RECORDS, "rec-b/record", NULL);

    struct store_stats stats;
    store_get_stats(store, &stats);
    assert_int_equal(stats.writes, 2);
    store_close(store);
}

/*
 * A binding as the records module writes one, keys device/D -> R and record/R -> D, each on the
 * condition that it is absent or holds that value already.
 */
static struct store_write binding_pair(const char *device_key, const char *record,
                                       const char *record_key, const char *device)
{
    struct store_write write = {.put_count = 2, .condition_count = 2, .done = count_done};
    write.puts[0] = put_of(STORE_BINDINGS, device_key, record);
    write.puts[1] = put_of(STORE_BINDINGS, record_key, device);
    write.conditions[0] = write.puts[0];
    write.conditions[1] = write.puts[1];
    return write;
}

/* A write with two conditions commits only when both hold, and says which one failed. */
static void two_conditions_report_which_failed(void **state)
{
    struct temp_dir *fixture = *state;
    struct store *store = open_store(fixture->dir, 16);
    struct store_write pair = binding_pair("device/d1", "r1", "record/r1", "d1");
    assert_int_equal(submit_and_wait(store, &pair), STORE_OK);

    /* d2 is free, but r1 already holds d1: the second condition fails. */
    struct store_write second_id = binding_pair("device/d2", "r1", "record/r1", "d2");
    assert_int_equal(submit_and_wait(store, &second_id), STORE_CONFLICT);
    assert_int_equal(second_id.failed_condition, 1);
    assert_value(store, STORE_BINDINGS, "device/d2", NULL);

    /* r2 is free, but d1 is r1's: the first condition fails. */
    struct store_write other_identity = binding_pair("device/d1", "r2", "record/r2", "d1");
    assert_int_equal(submit_and_wait(store, &other_identity), STORE_CONFLICT);
    assert_int_equal(other_identity.failed_condition, 0);
    assert_value(store, STORE_BINDINGS, "record/r2", NULL);
    assert_value(store, STORE_BINDINGS, "device/d1", "r1");
    assert_value(store, STORE_BINDINGS, "record/r1", "d1");

    /* A delete is for synchronous writes only. */
    struct store_write deleting = {0};
    deleting.puts[0] = put_of(STORE_BINDINGS, "device/d1", NULL);
    deleting.put_count = 1;
    deleting.done = count_done;
    assert_int_equal(store_submit(store, &deleting), STORE_ERROR);
    store_close(store);
}

/* store_put_sync: a NULL value deletes, in the same synced batch as the puts. */
/*
 * Several writers: writes that share a key still commit in the order they
 * were queued (the last of a run of puts to one key wins), and claims of one
 * device id from racing submitters leave exactly one winner, whose record is
 * the one bound.
 */
#define ORDER_WRITES 400
#define ORDER_KEYS 8
#define CLAIMERS 4
#define CLAIMED_IDS 50

struct claimer {
    struct store *store; /* struct worker */
    int index;
    struct store_write writes[CLAIMED_IDS];
    char devices[CLAIMED_IDS][16];
    char records[CLAIMED_IDS][16];
    char record_keys[CLAIMED_IDS][24];
};

static void *claim_many(void *arg)
{
    struct claimer *claimer = arg;
    for (int i = 0; i < CLAIMED_IDS; i++) {
        snprintf(claimer->devices[i], sizeof(claimer->devices[i]), "dev-%02d", i);
        snprintf(claimer->records[i], sizeof(claimer->records[i]), "rec-%d-%02d", claimer->index,
                 i);
        snprintf(claimer->record_keys[i], sizeof(claimer->record_keys[i]), "%s/record",
                 claimer->records[i]);
        claimer->writes[i] =
            binding_write(claimer->devices[i], claimer->records[i], claimer->record_keys[i]);
        if (store_submit(claimer->store, &claimer->writes[i]) != STORE_OK)
            return (void *)1;
    }
    return NULL;
}

static struct store_write order_writes[ORDER_WRITES];
static char order_keys[ORDER_WRITES][16];
static char order_values[ORDER_WRITES][16];

/* Submits ORDER_WRITES writes on ORDER_KEYS keys, every lazy_every-th one synced, the rest lazy. */
static void submit_order_writes(struct store *store, int lazy_every)
{
    completions_reset();
    for (int i = 0; i < ORDER_WRITES; i++) {
        snprintf(order_keys[i], sizeof(order_keys[i]), "k%d", i % ORDER_KEYS);
        snprintf(order_values[i], sizeof(order_values[i]), "v%03d", i);
        order_writes[i] =
            (struct store_write){.put_count = 1, .done = count_done, .lazy = i % lazy_every != 0};
        order_writes[i].puts[0] = put_of(STORE_HUBS, order_keys[i], order_values[i]);
        assert_int_equal(store_submit(store, &order_writes[i]), STORE_OK);
    }
}

static void several_writers_keep_key_order_and_claims(void **state)
{
    struct temp_dir *fixture = *state;
    struct store *store = open_store_writers(fixture->dir, 4096, 4);

    submit_order_writes(store, 3);
    completions_wait(ORDER_WRITES);
    assert_int_equal(completions.ok, ORDER_WRITES);
    for (int i = ORDER_WRITES - ORDER_KEYS; i < ORDER_WRITES; i++)
        assert_value(store, STORE_HUBS, order_keys[i], order_values[i]);

    completions_reset();
    static struct claimer claimers[CLAIMERS];
    run_workers(store, claimers, sizeof(claimers[0]), CLAIMERS, claim_many);
    completions_wait(CLAIMERS * CLAIMED_IDS);
    assert_int_equal(completions.ok, CLAIMED_IDS);
    assert_int_equal(completions.conflict, (CLAIMERS - 1) * CLAIMED_IDS);
    for (int id = 0; id < CLAIMED_IDS; id++) {
        int winners = 0;
        for (int c = 0; c < CLAIMERS; c++) {
            if (claimers[c].writes[id].status != STORE_OK) {
                assert_int_equal(claimers[c].writes[id].status, STORE_CONFLICT);
                assert_value(store, STORE_RECORDS, claimers[c].record_keys[id], NULL);
                continue;
            }
            winners++;
            assert_value(store, STORE_BINDINGS, claimers[c].devices[id], claimers[c].records[id]);
            assert_value(store, STORE_RECORDS, claimers[c].record_keys[id], "{}");
        }
        assert_int_equal(winners, 1);
    }
    store_close(store);
}

/*
 * Closing while writes on shared keys are still queued: each is committed and
 * answered, and every writer stops (a commit wakes one idle writer, not all:
 * one left waiting while the last writes were blocked on a stripe would hang
 * the close).
 */
static void close_with_queued_writes_on_shared_keys(void **state)
{
    struct temp_dir *fixture = *state;
    for (int round = 0; round < 20; round++) {
        struct store *store = open_store_writers(fixture->dir, 4096, 8);
        submit_order_writes(store, 2);
        store_close(store);
        assert_int_equal(completions.done, ORDER_WRITES);
        assert_int_equal(completions.ok, ORDER_WRITES);
    }
}

static void synchronous_write_deletes(void **state)
{
    struct temp_dir *fixture = *state;
    struct store *store = open_store(fixture->dir, 16);
    struct store_put puts[] = {put_of(STORE_RECORDS, "old/a", "1"),
                               put_of(STORE_RECORDS, "old/b", "2")};
    assert_int_equal(store_put_sync(store, puts, 2), STORE_OK);
    struct store_put move[] = {put_of(STORE_RECORDS, "new/a", "1"),
                               put_of(STORE_RECORDS, "old/a", NULL),
                               put_of(STORE_RECORDS, "absent", NULL)};
    assert_int_equal(store_put_sync(store, move, 3), STORE_OK);
    assert_value(store, STORE_RECORDS, "old/a", NULL);
    assert_value(store, STORE_RECORDS, "new/a", "1");
    assert_value(store, STORE_RECORDS, "old/b", "2");
    store_close(store);
}

/* store_scan_after: every key after the one given, so a long walk can stop and resume. */
static void scan_after_resumes(void **state)
{
    struct temp_dir *fixture = *state;
    struct store *store = open_store(fixture->dir, 16);
    struct store_put puts[] = {put_of(STORE_ISSUANCE, "a", "1"), put_of(STORE_ISSUANCE, "b", "2"),
                               put_of(STORE_ISSUANCE, "c", "3")};
    assert_int_equal(store_put_sync(store, puts, 3), STORE_OK);
    struct collected all = {0}, after_a = {0}, after_bb = {0};
    assert_int_equal(store_scan_after(store, STORE_ISSUANCE, NULL, 0, collect, &all), STORE_OK);
    assert_int_equal(all.count, 3);
    assert_int_equal(store_scan_after(store, STORE_ISSUANCE, "a", 1, collect, &after_a), STORE_OK);
    assert_int_equal(after_a.count, 2);
    assert_string_equal(after_a.keys[0], "b");
    assert_string_equal(after_a.keys[1], "c");
    assert_int_equal(store_scan_after(store, STORE_ISSUANCE, "bb", 2, collect, &after_bb),
                     STORE_OK);
    assert_int_equal(after_bb.count, 1);
    assert_string_equal(after_bb.keys[0], "c");
    store_close(store);
}

static void conflicting_claims_in_one_batch(void **state)
{
    struct temp_dir *fixture = *state;
    struct store *store = open_store(fixture->dir, 16);
    completions_reset();

    gate_hold_writer(store);
    struct store_stats before;
    store_get_stats(store, &before);
    struct store_write first = binding_write("dev-2", "rec-a", "rec-a/record");
    struct store_write second = binding_write("dev-2", "rec-b", "rec-b/record");
    assert_int_equal(store_submit(store, &first), STORE_OK);
    assert_int_equal(store_submit(store, &second), STORE_OK);
    gate_release();
    completions_wait(2);

    assert_int_equal(first.status, STORE_OK);
    assert_int_equal(second.status, STORE_CONFLICT);
    assert_value(store, STORE_BINDINGS, "dev-2", "rec-a");
    assert_value(store, STORE_RECORDS, "rec-a/record", "{}");
    assert_value(store, STORE_RECORDS, "rec-b/record", NULL);

    struct store_stats after;
    store_get_stats(store, &after);
    assert_int_equal(after.commits - before.commits, 1);
    assert_int_equal(after.writes - before.writes, 1);
    store_close(store);
}

static void full_queue_is_busy(void **state)
{
    struct temp_dir *fixture = *state;
    struct store *store = open_store(fixture->dir, 4);
    completions_reset();

    gate_hold_writer(store);
    struct store_write writes[5];
    char keys[5][16];
    for (int i = 0; i < 5; i++) {
        snprintf(keys[i], sizeof(keys[i]), "q%d", i);
        writes[i] = (struct store_write){.put_count = 1, .done = count_done};
        writes[i].puts[0] = put_of(STORE_HUBS, keys[i], "v");
    }
    for (int i = 0; i < 4; i++)
        assert_int_equal(store_submit(store, &writes[i]), STORE_OK);
    assert_int_equal(store_submit(store, &writes[4]), STORE_BUSY);
    struct store_stats stats;
    store_get_stats(store, &stats);
    assert_int_equal(stats.queue_depth, 4);

    gate_release();
    completions_wait(4);
    assert_int_equal(completions.ok, 4);
    assert_value(store, STORE_HUBS, "q3", "v");
    assert_value(store, STORE_HUBS, "q4", NULL);

    /* With the queue drained the refused write is accepted. */
    assert_int_equal(submit_and_wait(store, &writes[4]), STORE_OK);
    assert_value(store, STORE_HUBS, "q4", "v");
    store_close(store);
}

static void reopen_keeps_data(void **state)
{
    struct temp_dir *fixture = *state;
    struct store *store = open_store(fixture->dir, 16);
    struct store_write write = binding_write("dev-3", "rec-c", "rec-c/record");
    assert_int_equal(submit_and_wait(store, &write), STORE_OK);
    struct store_put seed = put_of(STORE_GROUPS, "group-1", "{\"id\":\"group-1\"}");
    assert_int_equal(store_put_sync(store, &seed, 1), STORE_OK);
    store_close(store);

    store = open_store(fixture->dir, 16);
    assert_value(store, STORE_BINDINGS, "dev-3", "rec-c");
    assert_value(store, STORE_RECORDS, "rec-c/record", "{}");
    assert_value(store, STORE_GROUPS, "group-1", "{\"id\":\"group-1\"}");
    struct store_write other = binding_write("dev-3", "rec-d", "rec-d/record");
    assert_int_equal(submit_and_wait(store, &other), STORE_CONFLICT);
    store_close(store);
}

/*
 * Lazy writes: a batch of lazy writes alone is appended without a sync
 * (counted apart), a batch with any other write is synced, and lazy
 * writes are readable at once and after a clean close.
 */
static void lazy_writes_ride_on_the_next_sync(void **state)
{
    struct temp_dir *fixture = *state;
    struct store *store = open_store(fixture->dir, 16);
    struct store_stats before, after;
    store_get_stats(store, &before);

    struct store_write lazy = {0};
    lazy.puts[lazy.put_count++] = put_of(STORE_RECORDS, "rec-l/plgdTime", "{\"lazy\":1}");
    lazy.lazy = true;
    lazy.done = count_done;
    assert_int_equal(submit_and_wait(store, &lazy), STORE_OK);
    store_get_stats(store, &after);
    assert_int_equal(after.commits, before.commits);
    assert_int_equal(after.lazy_commits, before.lazy_commits + 1);
    assert_value(store, STORE_RECORDS, "rec-l/plgdTime", "{\"lazy\":1}");

    struct store_write durable = binding_write("dev-l", "rec-l", "rec-l/record");
    assert_int_equal(submit_and_wait(store, &durable), STORE_OK);
    store_get_stats(store, &before);
    assert_int_equal(before.commits, after.commits + 1);
    assert_int_equal(before.lazy_commits, after.lazy_commits);

    /* A lazy write after the last synced batch is made durable by the close. */
    struct store_write last = {0};
    last.puts[last.put_count++] = put_of(STORE_RECORDS, "rec-l/acl", "{\"lazy\":2}");
    last.lazy = true;
    last.done = count_done;
    assert_int_equal(submit_and_wait(store, &last), STORE_OK);
    store_close(store);
    store = open_store(fixture->dir, 16);
    assert_value(store, STORE_RECORDS, "rec-l/plgdTime", "{\"lazy\":1}");
    assert_value(store, STORE_RECORDS, "rec-l/acl", "{\"lazy\":2}");
    assert_value(store, STORE_BINDINGS, "dev-l", "rec-l");
    store_close(store);
}

/* Starts this binary in a helper mode; child_out receives what the helper writes to its fd. */
static pid_t spawn_helper(const char *mode, const char *dir, int *child_out, int *child_in)
{
    int out[2];
    int in[2];
    assert_int_equal(pipe2(out, O_CLOEXEC), 0);
    assert_int_equal(pipe2(in, O_CLOEXEC), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        char out_fd[16];
        char in_fd[16];
        fcntl(out[1], F_SETFD, 0);
        fcntl(in[0], F_SETFD, 0);
        snprintf(out_fd, sizeof(out_fd), "%d", out[1]);
        snprintf(in_fd, sizeof(in_fd), "%d", in[0]);
        execl("/proc/self/exe", "test_store", mode, dir, out_fd, in_fd, (char *)NULL);
        _exit(127);
    }
    close(out[1]);
    close(in[0]);
    *child_out = out[0];
    *child_in = in[1];
    return pid;
}

static int count_entries(const char *dir, const char *prefix)
{
    DIR *listing = opendir(dir);
    assert_non_null(listing);
    int count = 0;
    for (struct dirent *entry; (entry = readdir(listing));)
        count += strncmp(entry->d_name, prefix, strlen(prefix)) == 0;
    closedir(listing);
    return count;
}

/*
 * A store written by a dpsd from before the cluster family (layout 2, no
 * "cluster"): read-only tools still open it, and find nothing in the family.
 */
static void read_only_opens_a_store_without_newer_families(void **state)
{
    struct temp_dir *fixture = *state;
    const char *names[STORE_FAMILY_COUNT];
    const rocksdb_options_t *family_options[STORE_FAMILY_COUNT];
    rocksdb_column_family_handle_t *handles[STORE_FAMILY_COUNT];
    rocksdb_options_t *options = rocksdb_options_create();
    rocksdb_options_set_create_if_missing(options, 1);
    rocksdb_options_set_create_missing_column_families(options, 1);
    names[0] = "default";
    for (int i = 0; i < STORE_CLUSTER; i++)
        names[i + 1] = store_family_name(i);
    for (int i = 0; i < STORE_FAMILY_COUNT; i++)
        family_options[i] = options;
    char *error = NULL;
    rocksdb_t *db = rocksdb_open_column_families(options, fixture->dir, STORE_FAMILY_COUNT, names,
                                                 family_options, handles, &error);
    if (error != NULL)
        fail_msg("rocksdb open: %s", error);
    rocksdb_writeoptions_t *write_options = rocksdb_writeoptions_create();
    rocksdb_put_cf(db, write_options, handles[0], "layout", 6, "2", 1, &error);
    rocksdb_put_cf(db, write_options, handles[STORE_GROUPS + 1], "g", 1, "{}", 2, &error);
    assert_null(error);
    for (int i = 0; i < STORE_FAMILY_COUNT; i++)
        rocksdb_column_family_handle_destroy(handles[i]);
    rocksdb_close(db);
    rocksdb_writeoptions_destroy(write_options);
    rocksdb_options_destroy(options);

    char err[256] = "";
    struct store *store = store_open_readonly(fixture->dir, err, sizeof(err));
    if (!store)
        fail_msg("store_open_readonly: %s", err);
    assert_value(store, STORE_GROUPS, "g", "{}");
    char *value = NULL;
    size_t length = 0;
    assert_int_equal(store_get(store, STORE_CLUSTER, "generation", 10, &value, &length),
                     STORE_NOT_FOUND);
    struct collected collected = {0};
    assert_int_equal(store_scan(store, STORE_CLUSTER, NULL, 0, collect, &collected), STORE_OK);
    assert_int_equal(collected.count, 0);
    store_close(store);
}

/* The helper child pid exits 0; the pipes to and from it are closed. */
static void child_done(pid_t pid, int from_child, int to_child)
{
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    close(from_child);
    close(to_child);
}

static void read_only_sees_data_of_running_writer(void **state)
{
    struct temp_dir *fixture = *state;
    char err[256] = "";
    char missing[96];
    snprintf(missing, sizeof(missing), "%s/missing", fixture->dir);
    assert_null(store_open_readonly(missing, err, sizeof(err)));
    assert_true(err[0] != '\0');

    int from_child;
    int to_child;
    pid_t pid = spawn_helper("--helper-hold", fixture->dir, &from_child, &to_child);
    char ready[8] = "";
    assert_int_equal(read(from_child, ready, sizeof(ready)), 6);
    assert_memory_equal(ready, "ready\n", 6);

    /* The helper still holds the database open for writing. */
    struct store *store = store_open_readonly(fixture->dir, err, sizeof(err));
    if (!store)
        fail_msg("store_open_readonly: %s", err);
    assert_value(store, STORE_BINDINGS, "dev-held", "rec-held");
    assert_value(store, STORE_GROUPS, "group-held", "{}");
    struct collected collected = {0};
    assert_int_equal(store_scan(store, STORE_RECORDS, "rec-held/", 9, collect, &collected),
                     STORE_OK);
    assert_int_equal(collected.count, 1);

    struct store_write refused = binding_write("dev-x", "rec-x", "rec-x/record");
    assert_int_equal(store_submit(store, &refused), STORE_ERROR);
    struct store_put put = put_of(STORE_HUBS, "hub", "{}");
    assert_int_equal(store_put_sync(store, &put, 1), STORE_ERROR);
    store_close(store);
    /* The daemon's info LOG was left alone (RocksDB would rotate it to LOG.old.*). */
    assert_int_equal(count_entries(fixture->dir, "LOG.old"), 0);
    assert_int_equal(count_entries(fixture->dir, "LOG"), 1);

    assert_int_equal(write(to_child, "x", 1), 1);
    child_done(pid, from_child, to_child);
}

#define ACKNOWLEDGED_BEFORE_KILL 1000

static void value_for_key(const char *key, char *value, size_t size)
{
    snprintf(value, size, "{\"serial\":\"%s\",\"padding\":\"%0100d\"}", key, 0);
}

static void acknowledged_writes_survive_kill_9(void **state)
{
    struct temp_dir *fixture = *state;
    int from_child;
    int to_child;
    pid_t pid = spawn_helper("--helper-flood", fixture->dir, &from_child, &to_child);
    FILE *acks = fdopen(from_child, "r");
    assert_non_null(acks);

    size_t capacity = 4096;
    size_t count = 0;
    char(*keys)[64] = malloc(capacity * sizeof(*keys));
    assert_non_null(keys);
    bool killed = false;
    char line[64];
    while (fgets(line, sizeof(line), acks)) {
        line[strcspn(line, "\n")] = '\0';
        if (count == capacity) {
            capacity *= 2;
            keys = realloc(keys, capacity * sizeof(*keys));
            assert_non_null(keys);
        }
        snprintf(keys[count++], sizeof(*keys), "%s", line);
        if (!killed && count >= ACKNOWLEDGED_BEFORE_KILL) {
            assert_int_equal(kill(pid, SIGKILL), 0);
            killed = true;
        }
    }
    fclose(acks);
    close(to_child);
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFSIGNALED(status));
    assert_int_equal(WTERMSIG(status), SIGKILL);
    assert_true(count >= ACKNOWLEDGED_BEFORE_KILL);

    struct store *store = open_store(fixture->dir, 16);
    for (size_t i = 0; i < count; i++) {
        char value[160];
        value_for_key(keys[i], value, sizeof(value));
        assert_value(store, STORE_ISSUANCE, keys[i], value);
    }
    print_message("# %zu acknowledged writes present after kill -9\n", count);
    store_close(store);
    free(keys);
}

/* What the --helper-fsize child observed, in order. */
struct fsize_report {
    int before;        /* committed before the fault */
    int too_big;       /* could not reach the WAL */
    int mate;          /* shared the failing batch */
    bool unhealthy;    /* store_healthy() while the fault lasts */
    int during_submit; /* store_submit() while the fault lasts */
    int during_sync;   /* store_put_sync() while the fault lasts */
    int during_get;    /* store_get() while the reopen keeps failing */
    bool recovered;    /* store_healthy() came back once the fault cleared */
    int after;         /* a write after the fault cleared */
    int after_get;     /* reading it back through the same handle */
    uint64_t failures; /* store_stats at the end */
    uint64_t recoveries;
};

static void failed_commit_reports_error_then_recovers(void **state)
{
    struct temp_dir *fixture = *state;
    int from_child;
    int to_child;
    pid_t pid = spawn_helper("--helper-fsize", fixture->dir, &from_child, &to_child);
    struct fsize_report report;
    size_t got = 0;
    while (got < sizeof(report)) {
        ssize_t n = read(from_child, (char *)&report + got, sizeof(report) - got);
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    assert_int_equal(got, sizeof(report));
    child_done(pid, from_child, to_child);

    assert_int_equal(report.before, STORE_OK);
    /* The write that could not reach the WAL is refused, and so is its batch mate. */
    assert_int_equal(report.too_big, STORE_ERROR);
    assert_int_equal(report.mate, STORE_ERROR);
    /* While the fault lasts the store says so and refuses writes at once. */
    assert_true(report.unhealthy);
    assert_int_equal(report.during_submit, STORE_ERROR);
    assert_int_equal(report.during_sync, STORE_ERROR);
    assert_int_equal(report.during_get, STORE_ERROR);
    /* Once the fault clears the store reopens itself: no restart, no reopen by the caller. */
    assert_true(report.recovered);
    assert_int_equal(report.after, STORE_OK);
    assert_int_equal(report.after_get, STORE_OK);
    assert_true(report.failures >= 1);
    assert_int_equal(report.recoveries, 1);

    /* Nothing acknowledged was lost, nothing refused was written. */
    struct store *store = open_store(fixture->dir, 16);
    assert_value(store, STORE_ISSUANCE, "before", "{}");
    assert_value(store, STORE_ISSUANCE, "after", "{}");
    assert_value(store, STORE_ISSUANCE, "too-big", NULL);
    assert_value(store, STORE_ISSUANCE, "mate", NULL);
    assert_value(store, STORE_ISSUANCE, "during", NULL);
    assert_value(store, STORE_ISSUANCE, "during-sync", NULL);
    assert_true(store_healthy(store));
    store_close(store);
}

/* Helper: writes a few things, says "ready", holds the database until told to stop. */
static int helper_hold(const char *dir, int out, int in)
{
    struct store *store = open_store(dir, 16);
    struct store_write claim = binding_write("dev-held", "rec-held", "rec-held/record");
    if (submit_and_wait(store, &claim) != STORE_OK)
        return 1;
    struct store_put seed = put_of(STORE_GROUPS, "group-held", "{}");
    if (store_put_sync(store, &seed, 1) != STORE_OK)
        return 1;
    if (write(out, "ready\n", 6) != 6)
        return 1;
    char byte;
    if (read(in, &byte, 1) != 1)
        return 1;
    store_close(store);
    return 0;
}

struct flood_write {
    struct store_write write;
    int out;
    char key[32];
    char value[160];
};

static void flood_done(struct store_write *request)
{
    struct flood_write *flood = request->user;
    if (request->status == STORE_OK) {
        char line[40];
        int length = snprintf(line, sizeof(line), "%s\n", flood->key);
        if (write(flood->out, line, (size_t)length) != length)
            _exit(2);
    }
    free(flood);
}

/* Helper: submits writes forever, reporting each acknowledged key, until killed. */
static int helper_flood(const char *dir, int out)
{
    struct store *store = open_store(dir, 256);
    for (unsigned long i = 0;; i++) {
        struct flood_write *flood = calloc(1, sizeof(*flood));
        if (!flood)
            return 1;
        flood->out = out;
        snprintf(flood->key, sizeof(flood->key), "serial-%08lu", i);
        value_for_key(flood->key, flood->value, sizeof(flood->value));
        flood->write.puts[0] = put_of(STORE_ISSUANCE, flood->key, flood->value);
        flood->write.put_count = 1;
        flood->write.done = flood_done;
        flood->write.user = flood;
        while (store_submit(store, &flood->write) == STORE_BUSY)
            usleep(100);
    }
}

/* The last write of the failing batch holds the writer in done() until released,
 * so the test decides when recovery starts. */
static struct {
    pthread_mutex_t lock;
    pthread_cond_t changed;
    bool entered;
    bool released;
} hold = {.lock = PTHREAD_MUTEX_INITIALIZER, .changed = PTHREAD_COND_INITIALIZER};

static void hold_done(struct store_write *write)
{
    count_done(write);
    pthread_mutex_lock(&hold.lock);
    hold.entered = true;
    pthread_cond_broadcast(&hold.changed);
    while (!hold.released)
        pthread_cond_wait(&hold.changed, &hold.lock);
    pthread_mutex_unlock(&hold.lock);
}

static bool wait_healthy(struct store *store, bool healthy)
{
    for (int i = 0; i < 1000; i++) {
        if (store_healthy(store) == healthy)
            return true;
        usleep(10000);
    }
    return false;
}

/*
 * Helper: commits one write, then caps the file size so the next batch cannot
 * reach the WAL; keeps every file write failing for a while (so the store's
 * own reopen fails too), lifts the cap and writes again, and reports.
 */
static int helper_fsize(const char *dir, int out)
{
    struct fsize_report report = {0};
    struct store *store = open_store(dir, 16);
    struct store_write before = {.put_count = 1, .done = count_done};
    before.puts[0] = put_of(STORE_ISSUANCE, "before", "{}");
    report.before = submit_and_wait(store, &before);

    signal(SIGXFSZ, SIG_IGN);
    struct rlimit limit = {.rlim_cur = 1 << 20, .rlim_max = RLIM_INFINITY};
    if (setrlimit(RLIMIT_FSIZE, &limit) != 0)
        return 1;
    size_t big_length = 2 << 20;
    char *big = malloc(big_length);
    if (!big)
        return 1;
    memset(big, 'x', big_length);

    completions_reset();
    gate_hold_writer(store);
    struct store_write too_big = {.put_count = 1, .done = count_done};
    too_big.puts[0] = (struct store_put){STORE_ISSUANCE, "too-big", 7, big, big_length};
    struct store_write mate = {.put_count = 1, .done = hold_done};
    mate.puts[0] = put_of(STORE_ISSUANCE, "mate", "{}");
    if (store_submit(store, &too_big) != STORE_OK || store_submit(store, &mate) != STORE_OK)
        return 1;
    gate_release();
    pthread_mutex_lock(&hold.lock);
    while (!hold.entered)
        pthread_cond_wait(&hold.changed, &hold.lock);
    pthread_mutex_unlock(&hold.lock);

    /* Make every file write fail before the writer starts recovering. */
    limit.rlim_cur = 0;
    if (setrlimit(RLIMIT_FSIZE, &limit) != 0)
        return 1;
    report.unhealthy = !store_healthy(store);
    pthread_mutex_lock(&hold.lock);
    hold.released = true;
    pthread_cond_broadcast(&hold.changed);
    pthread_mutex_unlock(&hold.lock);
    /* Let a few reopen attempts fail (at 0, 100 and 300 ms). */
    usleep(500000);
    report.unhealthy = report.unhealthy && !store_healthy(store);
    struct store_write during = {.put_count = 1, .done = count_done};
    during.puts[0] = put_of(STORE_ISSUANCE, "during", "{}");
    report.during_submit = store_submit(store, &during);
    struct store_put during_sync = put_of(STORE_ISSUANCE, "during-sync", "{}");
    report.during_sync = store_put_sync(store, &during_sync, 1);
    char *value = NULL;
    size_t length = 0;
    report.during_get = store_get(store, STORE_ISSUANCE, "before", 6, &value, &length);
    free(value);

    limit.rlim_cur = RLIM_INFINITY;
    if (setrlimit(RLIMIT_FSIZE, &limit) != 0)
        return 1;
    report.recovered = wait_healthy(store, true);
    struct store_write after = {.put_count = 1, .done = count_done};
    after.puts[0] = put_of(STORE_ISSUANCE, "after", "{}");
    report.after = submit_and_wait(store, &after);
    report.after_get = store_get(store, STORE_ISSUANCE, "after", 5, &value, &length);
    free(value);

    struct store_stats stats;
    store_get_stats(store, &stats);
    report.failures = stats.failures;
    report.recoveries = stats.recoveries;
    report.too_big = too_big.status;
    report.mate = mate.status;
    if (write(out, &report, sizeof(report)) != (ssize_t)sizeof(report))
        return 1;
    store_close(store);
    free(big);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 5 && strcmp(argv[1], "--helper-hold") == 0)
        return helper_hold(argv[2], atoi(argv[3]), atoi(argv[4]));
    if (argc == 5 && strcmp(argv[1], "--helper-flood") == 0)
        return helper_flood(argv[2], atoi(argv[3]));
    if (argc == 5 && strcmp(argv[1], "--helper-fsize") == 0)
        return helper_fsize(argv[2], atoi(argv[3]));

    const struct CMUnitTest tests[] = {
        FIXTURE_TEST(put_get_and_prefix_scan),
        FIXTURE_TEST(lazy_writes_ride_on_the_next_sync),
        FIXTURE_TEST(column_families_are_separate),
        FIXTURE_TEST(group_commit_batches_concurrent_writes),
        FIXTURE_TEST(wake_ups_are_not_lost),
        FIXTURE_TEST(conditional_write_absent_same_different),
        FIXTURE_TEST(conflicting_claims_in_one_batch),
        FIXTURE_TEST(several_writers_keep_key_order_and_claims),
        FIXTURE_TEST(close_with_queued_writes_on_shared_keys),
        FIXTURE_TEST(two_conditions_report_which_failed),
        FIXTURE_TEST(synchronous_write_deletes),
        FIXTURE_TEST(scan_after_resumes),
        FIXTURE_TEST(full_queue_is_busy),
        FIXTURE_TEST(reopen_keeps_data),
        FIXTURE_TEST(read_only_sees_data_of_running_writer),
        FIXTURE_TEST(read_only_opens_a_store_without_newer_families),
        FIXTURE_TEST(acknowledged_writes_survive_kill_9),
        FIXTURE_TEST(failed_commit_reports_error_then_recovers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

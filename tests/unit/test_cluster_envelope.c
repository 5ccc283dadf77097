/*
 * test_cluster_envelope: the envelopes a cluster shares its configuration in
 * (control/cluster_envelope.h): what a node writes into its outbox, what
 * comes back from Redis with a generation spliced in by the push script, and
 * what is refused as not an envelope.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "control/cluster_envelope.h"

#define GROUP_ID "0d6c6a8e-3f1b-4c7e-9a52-6f0e3b8d2c11"

/* What push_script stores: the generation spliced in front of the outbox's envelope. */
static char *with_generation(const char *envelope, unsigned long long generation)
{
    char *text = NULL;
    assert_true(asprintf(&text, "{\"generation\":%llu,%s", generation, envelope + 1) > 0);
    return text;
}

static void test_round_trip_through_redis(void **state)
{
    (void)state;
    json_t *doc = json_pack("{s:s, s:s, s:[]}", "id", GROUP_ID, "owner", "1", "hubIds");
    struct plane_change change = {PLANE_KIND_GROUP, GROUP_ID, "1", doc};
    char *outbox = cluster_envelope_encode(&change, "node-a");
    assert_non_null(outbox);

    struct cluster_envelope envelope;
    assert_int_equal(cluster_envelope_decode(outbox, strlen(outbox), &envelope), 0);
    assert_int_equal(envelope.generation, 0); /* not ordered yet */
    assert_int_equal(envelope.kind, PLANE_KIND_GROUP);
    assert_string_equal(envelope.field, "group/" GROUP_ID);
    cluster_envelope_clear(&envelope);

    char *stored = with_generation(outbox, 42);
    assert_int_equal(cluster_envelope_decode(stored, strlen(stored), &envelope), 0);
    assert_int_equal(envelope.generation, 42);
    assert_string_equal(envelope.id, GROUP_ID);
    assert_string_equal(envelope.owner, "1");
    assert_string_equal(envelope.node, "node-a");
    /* An empty list stays a list: the document travels as the plane stored it. */
    assert_true(json_equal((json_t *)envelope.doc, doc));
    cluster_envelope_clear(&envelope);
    free(stored);
    free(outbox);
    json_decref(doc);
}

static void test_tombstone(void **state)
{
    (void)state;
    struct plane_change change = {PLANE_KIND_BLOCK, "3f2a", NULL, NULL};
    char *outbox = cluster_envelope_encode(&change, "b");
    char *stored = with_generation(outbox, 7);
    struct cluster_envelope envelope;
    assert_int_equal(cluster_envelope_decode(stored, strlen(stored), &envelope), 0);
    assert_null(envelope.doc);
    assert_null(envelope.owner);
    assert_int_equal(envelope.kind, PLANE_KIND_BLOCK);
    assert_string_equal(envelope.field, "block/3f2a");
    cluster_envelope_clear(&envelope);
    free(stored);
    free(outbox);
}

static void test_not_envelopes(void **state)
{
    (void)state;
    static const char *const refused[] = {
        "",
        "not json",
        "[]",
        "{\"kind\":\"group\",\"deleted\":true,\"doc\":null}",                /* no id */
        "{\"kind\":\"printer\",\"id\":\"x\",\"deleted\":true,\"doc\":null}", /* unknown kind */
        "{\"kind\":\"hub\",\"id\":\"x\",\"deleted\":false,\"doc\":null}",    /* live without doc */
        "{\"kind\":\"hub\",\"id\":\"x\",\"deleted\":false,\"doc\":[1]}",     /* doc not an object */
        "{\"kind\":\"hub\",\"id\":\"x\",\"deleted\":true,\"doc\":{}}", /* tombstone with doc */
        "{\"generation\":0,\"kind\":\"hub\",\"id\":\"x\",\"deleted\":true}", /* generation 0 */
        "{\"generation\":\"3\",\"kind\":\"hub\",\"id\":\"x\",\"deleted\":true}",
        "{\"kind\":\"hub\",\"id\":\"\",\"deleted\":true}",
    };
    for (size_t i = 0; i < sizeof(refused) / sizeof(*refused); i++) {
        struct cluster_envelope envelope;
        assert_int_equal(cluster_envelope_decode(refused[i], strlen(refused[i]), &envelope), -1);
        assert_null(envelope.root);
    }
    char id[200];
    memset(id, 'a', sizeof(id) - 1);
    id[sizeof(id) - 1] = '\0';
    char text[300];
    snprintf(text, sizeof(text), "{\"kind\":\"block\",\"id\":\"%s\",\"deleted\":true}", id);
    struct cluster_envelope envelope;
    assert_int_equal(cluster_envelope_decode(text, strlen(text), &envelope), -1);
}

static void test_fields(void **state)
{
    (void)state;
    char field[CLUSTER_FIELD_MAX];
    assert_int_equal(cluster_field(PLANE_KIND_HUB, "h1", field), 0);
    assert_string_equal(field, "hub/h1");
    char id[CLUSTER_FIELD_MAX];
    memset(id, 'x', sizeof(id) - 1);
    id[sizeof(id) - 1] = '\0';
    assert_int_equal(cluster_field(PLANE_KIND_GROUP, id, field), -1);
    assert_string_equal(cluster_kind_name(PLANE_KIND_BLOCK), "block");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip_through_redis),
        cmocka_unit_test(test_tombstone),
        cmocka_unit_test(test_not_envelopes),
        cmocka_unit_test(test_fields),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

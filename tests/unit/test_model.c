/*
 * test_model: enrollment groups and hubs go to JSON and back unchanged, in
 * the plgd shape with empty fields emitted; every rule a document must meet
 * is enforced, and the error names the offending field by its JSON path.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "tests/unit/temp_dir.h"
#include "common/base64.h"
#include "control/model.h"
#include "common/file.h"
#include "crypto/pki.h"

#define GROUP_ID "4b4d1a8c-52a5-4f8e-9a0b-1c2d3e4f5a6b"
#define HUB_ID "aa8b9c3e-1111-4a4a-8b8b-0123456789ab"

static char dir[64];
static char chain_file[128];
static char hub_ca_file[128];
static char hub_key_file[128];
static char token_key_file[128];
static char *chain_pem;

static char *read_text(const char *path)
{
    char err[256];
    char *text = file_read_text(path, 65535, NULL, err, sizeof(err));
    if (text == NULL)
        fail_msg("%s", err);
    return text;
}

static int setup(void **state)
{
    char err[256];
    snprintf(dir, sizeof(dir), "/tmp/test_model.XXXXXX");
    if (mkdtemp(dir) == NULL || pki_generate(dir, 0, err, sizeof(err)) != 0)
        return -1;
    snprintf(chain_file, sizeof(chain_file), "%s/mfg-chain.pem", dir);
    snprintf(hub_ca_file, sizeof(hub_ca_file), "%s/hub-ca.pem", dir);
    snprintf(hub_key_file, sizeof(hub_key_file), "%s/hub-ca.key", dir);
    snprintf(token_key_file, sizeof(token_key_file), "%s/token.key", dir);
    chain_pem = read_text(chain_file);
    return 0;
}

static int teardown(void **state)
{
    free(chain_pem);
    return temp_dir_remove(dir);
}

static json_t *group_doc(void)
{
    json_t *doc =
        json_pack("{s:s, s:s, s:s, s:{s:{s:s, s:s, s:b}}, s:[s], s:s}", "id", GROUP_ID, "owner",
                  "1", "name", "line A", "attestationMechanism", "x509", "certificateChain",
                  chain_pem, "leadCertificateName", "Demo Mfg", "expiredCertificateEnabled", 1,
                  "hubIds", HUB_ID, "preSharedKey", "0123456789abcdef");
    assert_non_null(doc);
    return doc;
}

static json_t *hub_doc(void)
{
    json_t *doc =
        json_pack("{s:s, s:s, s:s, s:[s, s], s:{s:s, s:s, s:{s:s, s:s}}, "
                  "s:{s:s, s:s, s:I}, s:{s:s, s:s, s:s, s:I}}",
                  "hubId", HUB_ID, "owner", "1", "name", "hub one", "gateways",
                  "coaps+tcp://hub.example:5684", "coaps+tcp://[::1]:5684", "authorization",
                  "ownerClaim", "sub", "deviceIdClaim", "", "provider", "name", "plgd", "audience",
                  "", "identityCertificate", "certificate", hub_ca_file, "key", hub_key_file,
                  "validity", (json_int_t)86400, "token", "key", token_key_file, "keyId", "k1",
                  "issuer", "https://auth.example", "lifetime", (json_int_t)3600);
    assert_non_null(doc);
    return doc;
}

/* Sets the value at a dotted path (objects only) in doc; NULL value deletes it. */
static void set_at(json_t *doc, const char *path, json_t *value)
{
    char *copy = strdup(path);
    json_t *object = doc;
    char *key = copy;
    for (char *dot = strchr(key, '.'); dot != NULL; dot = strchr(key, '.')) {
        *dot = '\0';
        object = json_object_get(object, key);
        assert_non_null(object);
        key = dot + 1;
    }
    if (value == NULL)
        json_object_del(object, key);
    else
        json_object_set_new(object, key, value);
    free(copy);
}

static void group_fails(json_t *doc, const char *expected)
{
    struct config_group group;
    char err[512] = "";
    int result = model_group_from_json(doc, &group, err, sizeof(err));
    if (result == 0 || strstr(err, expected) == NULL)
        print_error("expected \"%s\", got \"%s\"\n", expected, err);
    assert_int_equal(result, -1);
    assert_non_null(strstr(err, expected));
    assert_null(group.id);
    json_decref(doc);
}

static void hub_fails(json_t *doc, const char *expected)
{
    struct config_hub hub;
    char err[512] = "";
    int result = model_hub_from_json(doc, &hub, err, sizeof(err));
    if (result == 0 || strstr(err, expected) == NULL)
        print_error("expected \"%s\", got \"%s\"\n", expected, err);
    assert_int_equal(result, -1);
    assert_non_null(strstr(err, expected));
    assert_null(hub.id);
    json_decref(doc);
}

/* A group document with the field at path set to value (NULL: removed) fails naming it. */
static void group_field_fails(const char *path, json_t *value, const char *expected)
{
    json_t *doc = group_doc();
    set_at(doc, path, value);
    group_fails(doc, expected);
}

/* The same for a hub document. */
static void hub_field_fails(const char *path, json_t *value, const char *expected)
{
    json_t *doc = hub_doc();
    set_at(doc, path, value);
    hub_fails(doc, expected);
}

static void group_round_trip_keeps_everything(void **state)
{
    json_t *doc = group_doc();
    set_at(doc, "acl",
           json_pack("{s:s, s:[{s:{s:s}, s:[{s:s, s:[s]}], s:i}]}", "mode", "replace", "entries",
                     "subject", "conntype", "anon-clear", "resources", "href", "/oic/d", "if",
                     "oic.if.baseline", "permission", 2));
    set_at(doc, "resources",
           json_pack("[{s:s, s:{s:i}}]", "href", "/light/1", "content", "power", 50));
    struct config_group group;
    char err[512] = "";
    assert_int_equal(model_group_from_json(doc, &group, err, sizeof(err)), 0);
    assert_string_equal(group.id, GROUP_ID);
    assert_string_equal(group.owner, "1");
    assert_string_equal(group.ca_chain_pem, chain_pem);
    assert_null(group.ca_chain_file);
    assert_true(group.expired_certificate_enabled);
    assert_int_equal(group.hub_count, 1);
    assert_true(group.has_psk);
    assert_memory_equal(group.psk, "0123456789abcdef", 16);
    assert_int_equal(group.acl_mode, CONFIG_ACL_REPLACE);
    assert_string_equal(group.resources_json,
                        "[{\"href\":\"/light/1\",\"content\":{\"power\":50}}]");

    json_t *back = model_group_to_json(&group);
    if (!json_equal(doc, back)) {
        char *text = json_dumps(back, JSON_INDENT(1));
        print_error("%s\n", text);
        free(text);
    }
    assert_true(json_equal(doc, back));

    struct config_group again;
    assert_int_equal(model_group_from_json(back, &again, err, sizeof(err)), 0);
    assert_string_equal(again.acl_json, group.acl_json);
    model_group_clear(&again);
    model_group_clear(&group);
    json_decref(back);
    json_decref(doc);
}

static void group_with_chain_file_and_defaults_emits_empty_fields(void **state)
{
    json_t *doc = json_pack(
        "{s:s, s:s, s:{s:{s:s}}, s:[s]}", "id", "4B4D1A8C-52A5-4F8E-9A0B-1C2D3E4F5A6B", "owner",
        "2", "attestationMechanism", "x509", "certificateChain", chain_file, "hubIds", HUB_ID);
    struct config_group group;
    char err[512] = "";
    assert_int_equal(model_group_from_json(doc, &group, err, sizeof(err)), 0);
    assert_string_equal(group.id, GROUP_ID); /* lower-cased */
    assert_string_equal(group.ca_chain_file, chain_file);
    assert_null(group.ca_chain_pem);
    assert_null(group.name);
    assert_false(group.has_psk);
    assert_int_equal(group.acl_mode, CONFIG_ACL_DEFAULT);

    json_t *back = model_group_to_json(&group);
    json_t *expected = json_pack(
        "{s:s, s:s, s:s, s:{s:{s:s, s:s, s:b}}, s:[s], s:s}", "id", GROUP_ID, "owner", "2", "name",
        "", "attestationMechanism", "x509", "certificateChain", chain_file, "leadCertificateName",
        "", "expiredCertificateEnabled", 0, "hubIds", HUB_ID, "preSharedKey", "");
    assert_true(json_equal(back, expected));
    struct config_group again;
    assert_int_equal(model_group_from_json(back, &again, err, sizeof(err)), 0);
    assert_null(again.name);
    assert_false(again.has_psk);
    model_group_clear(&again);
    json_decref(expected);
    json_decref(back);
    model_group_clear(&group);
    json_decref(doc);
}

static void hub_round_trip_keeps_everything_but_no_key_material(void **state)
{
    json_t *doc = hub_doc();
    struct config_hub hub;
    char err[512] = "";
    assert_int_equal(model_hub_from_json(doc, &hub, err, sizeof(err)), 0);
    assert_string_equal(hub.id, HUB_ID);
    assert_int_equal(hub.gateway_count, 2);
    assert_string_equal(hub.authorization_provider, "plgd");
    assert_null(hub.token_audience);
    assert_null(hub.token_device_id_claim);
    assert_int_equal(hub.certificate_validity_s, 86400);
    assert_int_equal(hub.token_lifetime_s, 3600);
    assert_string_equal(hub.token_key_id, "k1");

    json_t *back = model_hub_to_json(&hub);
    set_at(doc, "id", json_string(HUB_ID));
    assert_true(json_equal(doc, back));
    char *text = json_dumps(back, 0);
    assert_null(strstr(text, "PRIVATE KEY"));
    assert_null(strstr(text, "BEGIN"));
    free(text);
    json_decref(back);
    model_hub_clear(&hub);

    /* Only "id", durations as protojson int64 strings, defaults filled. */
    set_at(doc, "hubId", NULL);
    set_at(doc, "identityCertificate.validity", NULL);
    set_at(doc, "token.lifetime", json_string("7200"));
    set_at(doc, "authorization.ownerClaim", NULL);
    assert_int_equal(model_hub_from_json(doc, &hub, err, sizeof(err)), 0);
    assert_string_equal(hub.id, HUB_ID);
    assert_int_equal(hub.certificate_validity_s, 365L * 24 * 3600);
    assert_int_equal(hub.token_lifetime_s, 7200);
    assert_string_equal(hub.token_owner_claim, "sub");
    model_hub_clear(&hub);
    json_decref(doc);
}

static void group_identity_rules_name_the_field(void **state)
{
    group_field_fails("id", json_string("not-a-uuid"), "id: \"not-a-uuid\" is not a UUID");
    group_field_fails("id", NULL, "id: required");
    group_field_fails("owner", json_string(""), "owner: required");
    group_field_fails("name", json_integer(3), "name: must be a string");
    group_field_fails("colour", json_string("blue"), "colour: unknown field");
    group_fails(json_array(), "(document): must be an object");
}

static void group_attestation_rules_name_the_field(void **state)
{
    group_field_fails("attestationMechanism", NULL, "attestationMechanism: required");
    group_field_fails("attestationMechanism.x509.certificateChain",
                      json_string("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"),
                      "attestationMechanism.x509.certificateChain: not a PEM certificate chain");
    group_field_fails("attestationMechanism.x509.certificateChain", json_string("mfg-chain.pem"),
                      "attestationMechanism.x509.certificateChain: must be PEM certificates or an "
                      "absolute file path");
    group_field_fails("attestationMechanism.x509.certificateChain",
                      json_string("/nonexistent/chain"),
                      "attestationMechanism.x509.certificateChain: cannot read /nonexistent/chain");
    group_field_fails("attestationMechanism.x509.expiredCertificateEnabled", json_string("yes"),
                      "attestationMechanism.x509.expiredCertificateEnabled: must be true or false");
    group_field_fails("attestationMechanism.tpm", json_object(),
                      "attestationMechanism.tpm: unknown field");

    /* A private key is not a certificate. */
    char key_path[160];
    snprintf(key_path, sizeof(key_path), "%s/mfg-root.key", dir);
    char *key = read_text(key_path);
    group_field_fails("attestationMechanism.x509.certificateChain", json_string(key),
                      "certificateChain: not a PEM certificate chain");
    free(key);
}

static void group_hub_and_key_rules_name_the_field(void **state)
{
    group_field_fails("hubIds", json_array(), "hubIds: must not be empty");
    group_field_fails("hubIds", json_pack("[s, s]", HUB_ID, "x"), "hubIds[1]: \"x\" is not a UUID");
    group_field_fails("hubIds", json_pack("[s, s]", HUB_ID, HUB_ID),
                      "hubIds[1]: duplicate of hubIds[0]");
    group_field_fails("preSharedKey", json_integer(16), "preSharedKey: must be a string");
}

/* A key is exactly 16 bytes: longer or shorter is refused, never cut or padded. */
static void group_key_of_another_length_is_refused(void **state)
{
    group_field_fails("preSharedKey", json_string("short"),
                      "preSharedKey: must be exactly 16 bytes, not 5");
    group_field_fails("preSharedKey", json_string("0123456789abcdefXYZ"),
                      "preSharedKey: must be exactly 16 bytes, not 19");
    /* 16 characters whose last one is 3 bytes: a cut at 16 bytes would split it. */
    group_field_fails("preSharedKey", json_string("0123456789abcde\u20ac"),
                      "preSharedKey: must be exactly 16 bytes, not 18");
    group_field_fails("preSharedKey", json_stringn("0123456789abcde\0", 16),
                      "preSharedKey: must not contain NUL characters");
}

/* Keys of 16 bytes with characters outside ASCII go to JSON text and back byte for byte. */
static void group_multibyte_key_round_trips(void **state)
{
    static const char *const keys[] = {
        "0123456789abcd\u00e9",                     /* 15 characters */
        "p\u00e4ssw\u00f6rd-\u20ac-1",              /* 12 characters */
        "\U0001F511\U0001F511\U0001F511\U0001F511", /* 4 characters of 4 bytes */
    };
    for (size_t i = 0; i < sizeof(keys) / sizeof(*keys); i++) {
        assert_int_equal(strlen(keys[i]), 16);
        json_t *doc = group_doc();
        set_at(doc, "preSharedKey", json_string(keys[i]));
        struct config_group group, again;
        char err[512] = "";
        assert_int_equal(model_group_from_json(doc, &group, err, sizeof(err)), 0);
        assert_true(group.has_psk);
        assert_memory_equal(group.psk, keys[i], 16);
        json_t *back = model_group_to_json(&group);
        assert_non_null(back);
        assert_true(json_equal(doc, back));
        char *text = json_dumps(back, JSON_COMPACT);
        json_t *parsed = json_loads(text, 0, NULL);
        assert_int_equal(model_group_from_json(parsed, &again, err, sizeof(err)), 0);
        assert_memory_equal(again.psk, keys[i], 16);
        model_group_clear(&again);
        model_group_clear(&group);
        json_decref(parsed);
        free(text);
        json_decref(back);
        json_decref(doc);
    }
}

static void group_acl_rules_name_the_field(void **state)
{
    static const struct {
        const char *entries;
        const char *expected;
    } cases[] = {
        {"[{\"subject\": {\"conntype\": \"anon\"}, \"resources\": [{\"href\": \"/a\"}], "
         "\"permission\": 2}]",
         "acl.entries[0].subject.conntype: must be auth-crypt or anon-clear"},
        {"[{\"subject\": {\"conntype\": \"auth-crypt\", \"role\": \"r\"}, \"resources\": "
         "[{\"href\": \"/a\"}], \"permission\": 2}]",
         "acl.entries[0].subject: must have exactly one of uuid, role or conntype"},
        {"[{\"subject\": {\"uuid\": \"*\"}, \"resources\": [{\"href\": \"/a\"}], "
         "\"permission\": 32}]",
         "acl.entries[0].permission: must be an integer from 0 to 31"},
        {"[{\"subject\": {\"uuid\": \"*\"}, \"resources\": [{\"href\": \"/a\", \"rt\": []}], "
         "\"permission\": 1}]",
         "acl.entries[0].resources[0].rt: unknown key"},
        {"[{\"subject\": {\"uuid\": \"*\"}, \"resources\": [], \"permission\": 1}]",
         "acl.entries[0].resources: must be a non-empty list"},
        {"[{\"subject\": {\"uuid\": \"*\"}, \"resources\": [{\"href\": \"/a\"}], "
         "\"permission\": 1, \"validity\": 3}]",
         "acl.entries[0].validity: unknown key"},
        {"[{\"subject\": {\"uuid\": \"abc\"}, \"resources\": [{\"href\": \"/a\"}], "
         "\"permission\": 1}]",
         "acl.entries[0].subject.uuid: must be a UUID"},
        {"[]", "acl.entries: must be a non-empty list"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
        json_t *doc = group_doc();
        set_at(doc, "acl",
               json_pack("{s:s, s:o}", "mode", "extend", "entries",
                         json_loads(cases[i].entries, 0, NULL)));
        group_fails(doc, cases[i].expected);
    }
    group_field_fails("acl", json_pack("{s:s, s:[]}", "mode", "merge", "entries"),
                      "acl.mode: must be replace or extend");
}

static void group_resource_rules_name_the_field(void **state)
{
    group_field_fails("resources", json_pack("[{s:s, s:{}}]", "href", "light", "content"),
                      "resources[0].href: must be a path starting with /");
    group_field_fails("resources", json_pack("[{s:s, s:i}]", "href", "/light", "content", 1),
                      "resources[0].content: must be an object");
    group_field_fails("resources", json_pack("[{s:s}]", "href", "/light"),
                      "resources[0].content: required");
    json_t *doc = group_doc();
    set_at(
        doc, "resources",
        json_pack("[{s:s, s:{}}, {s:s, s:{}}]", "href", "/l", "content", "href", "/l", "content"));
    group_fails(doc, "resources[1].href: \"/l\" is listed twice");
    group_field_fails("resources", json_pack("[{s:s, s:{}, s:i}]", "href", "/l", "content", "x", 1),
                      "resources[0].x: unknown field");
}

/* "data:;base64," and the base64 of length bytes (a new string). */
static char *data_url(const void *bytes, size_t length)
{
    char *encoded = base64_encode_string(BASE64_STANDARD, bytes, length);
    char *url = NULL;
    assert_non_null(encoded);
    assert_true(asprintf(&url, "data:;base64,%s", encoded) > 0);
    free(encoded);
    return url;
}

/*
 * The reference's web UI sends uploads as data: URLs (its protobuf says of
 * certificate_chain and pre_shared_key: "Supported formats: </path/to/cert.pem>,
 * <data:;base64,{PEM in BASE64}>", device-provisioning-service/pb/enrollmentGroup.proto):
 * the chain is decoded to its PEM text, and a key to its bytes, any bytes,
 * of exactly 16, written back as a data: URL when they are not text.
 */
static void group_data_urls_are_decoded(void **state)
{
    struct config_group group;
    char err[512] = "";
    json_t *doc = group_doc();
    set_at(doc, "attestationMechanism.x509.leadCertificateName", NULL);
    char *chain = data_url(chain_pem, strlen(chain_pem));
    set_at(doc, "attestationMechanism.x509.certificateChain", json_string(chain));
    const uint8_t key[16] = {0x00, 0xff, 0x10, 0x80, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 0xc3};
    char *psk = data_url(key, sizeof(key));
    set_at(doc, "preSharedKey", json_string(psk));
    assert_int_equal(model_group_from_api(doc, &group, err, sizeof(err)), 0);
    assert_string_equal(group.ca_chain_pem, chain_pem);
    assert_true(group.has_psk);
    assert_memory_equal(group.psk, key, sizeof(key));
    json_t *served = model_group_to_api(&group);
    assert_string_equal(json_string_value(json_object_get(served, "preSharedKey")), psk);
    struct config_group again;
    assert_int_equal(model_group_from_json(served, &again, err, sizeof(err)), 0);
    assert_memory_equal(again.psk, key, sizeof(key));
    model_group_clear(&again);
    json_decref(served);
    model_group_clear(&group);
    free(psk);

    /* A key of another length is refused, never cut or padded. */
    for (size_t length = 15; length <= 17; length += 2) {
        uint8_t bytes[17] = {0};
        psk = data_url(bytes, length);
        set_at(doc, "preSharedKey", json_string(psk));
        free(psk);
        assert_int_equal(model_group_from_api(doc, &group, err, sizeof(err)), -1);
        char expected[96];
        snprintf(expected, sizeof(expected),
                 "preSharedKey: the data: URL's key must be exactly 16 bytes, not %zu", length);
        assert_string_equal(err, expected);
    }
    set_at(doc, "preSharedKey", json_string("data:;base64,%%%"));
    assert_int_equal(model_group_from_api(doc, &group, err, sizeof(err)), -1);
    assert_string_equal(err, "preSharedKey: the data: URL's base64 does not decode");
    set_at(doc, "preSharedKey", NULL);
    /* Decoded, a chain must be text: it is stored and served as a JSON string (found by fuzzing).
     */
    char *junk = malloc(strlen(chain_pem) + 2);
    snprintf(junk, strlen(chain_pem) + 2, "\xff%s", chain_pem);
    free(chain);
    chain = data_url(junk, strlen(junk));
    free(junk);
    set_at(doc, "attestationMechanism.x509.certificateChain", json_string(chain));
    assert_int_equal(model_group_from_api(doc, &group, err, sizeof(err)), -1);
    assert_string_equal(err, "attestationMechanism.x509.certificateChain: the data: URL's data is "
                             "not PEM text (UTF-8 without NUL)");
    set_at(doc, "attestationMechanism.x509.certificateChain", json_string("data:text/plain,abc"));
    assert_int_equal(model_group_from_api(doc, &group, err, sizeof(err)), -1);
    assert_string_equal(err, "attestationMechanism.x509.certificateChain: a data: URL must carry "
                             "base64 (data:;base64,...)");
    json_decref(doc);
    free(chain);
}

/* From the API, as in the reference: name defaults to the id, leadCertificateName to the first CN.
 */
static void group_api_defaults(void **state)
{
    struct config_group group;
    char err[512] = "";
    json_t *doc = group_doc();
    set_at(doc, "name", NULL);
    set_at(doc, "attestationMechanism.x509.leadCertificateName", NULL);
    assert_int_equal(model_group_from_api(doc, &group, err, sizeof(err)), 0);
    assert_string_equal(group.name, GROUP_ID);
    assert_string_equal(group.lead_certificate_name, "Demo Manufacturer Intermediate CA");
    model_group_clear(&group);
    set_at(doc, "attestationMechanism.x509.leadCertificateName",
           json_string("Demo Manufacturer Root CA"));
    assert_int_equal(model_group_from_api(doc, &group, err, sizeof(err)), 0);
    assert_string_equal(group.lead_certificate_name, "Demo Manufacturer Root CA");
    model_group_clear(&group);
    set_at(doc, "attestationMechanism.x509.leadCertificateName", json_string("Demo Mfg"));
    assert_int_equal(model_group_from_api(doc, &group, err, sizeof(err)), -1);
    assert_string_equal(err, "attestationMechanism.x509.leadCertificateName: \"Demo Mfg\" is the "
                             "common name of no certificate of certificateChain (\"Demo "
                             "Manufacturer Intermediate CA\", \"Demo Manufacturer Root CA\")");
    /* A stored document keeps what it holds: the name is informative. */
    assert_int_equal(model_group_from_json(doc, &group, err, sizeof(err)), 0);
    assert_string_equal(group.lead_certificate_name, "Demo Mfg");
    assert_null(group.name);
    model_group_clear(&group);
    json_decref(doc);
}

/* A hub the API created has a record id of its own; a stored hub without one has its hubId. */
static void hub_record_id_is_kept(void **state)
{
    struct config_hub hub;
    char err[512] = "";
    json_t *doc = hub_doc();
    set_at(doc, "id", json_string(GROUP_ID));
    assert_int_equal(model_hub_from_json(doc, &hub, err, sizeof(err)), 0);
    assert_string_equal(hub.id, HUB_ID);
    assert_string_equal(hub.record_id, GROUP_ID);
    json_t *stored = model_hub_to_json(&hub);
    assert_string_equal(json_string_value(json_object_get(stored, "id")), GROUP_ID);
    assert_string_equal(json_string_value(json_object_get(stored, "hubId")), HUB_ID);
    json_decref(stored);
    model_hub_clear(&hub);
    set_at(doc, "id", json_string(HUB_ID));
    assert_int_equal(model_hub_from_json(doc, &hub, err, sizeof(err)), 0);
    assert_null(hub.record_id);
    model_hub_clear(&hub);
    json_decref(doc);
}

/*
 * A hub in the reference's shape (device-provisioning-service/pb/hub.proto:
 * certificateAuthority.grpc, authorization.provider with its OAuth client)
 * is kept and served back as it came; without our keys it is refused, and
 * the error names what to set instead.
 */
static void hub_reference_shape_is_kept(void **state)
{
    struct config_hub hub;
    char err[768] = "";
    json_t *doc = hub_doc();
    json_t *authority =
        json_pack("{s:{s:s, s:{s:s, s:s, s:b}, s:{s:[s], s:s, s:s, s:b}}}", "grpc", "address",
                  "certificate-authority:9100", "keepAlive", "time", "10000000000", "timeout",
                  "20000000000", "permitWithoutStream", 1, "tls", "caPool", "data:;base64,AAAA",
                  "key", "/certs/key.pem", "cert", "/certs/cert.pem", "useSystemCaPool", 0);
    json_t *provider = json_pack(
        "{s:s, s:s, s:s, s:s, s:[s, s], s:s, s:{s:i, s:s, s:{s:b}}}", "name", "plgd", "clientId",
        "test", "clientSecret", "data:;base64,c2VjcmV0", "authority", "https://auth.example",
        "scopes", "openid", "offline", "audience", "https://api.example", "http", "maxIdleConns",
        16, "timeout", "10000000000", "tls", "useSystemCaPool", 1);
    set_at(doc, "certificateAuthority", json_deep_copy(authority));
    set_at(doc, "authorization.provider", json_deep_copy(provider));
    assert_int_equal(model_hub_from_json(doc, &hub, err, sizeof(err)), 0);
    assert_string_equal(hub.authorization_provider, "plgd");
    assert_string_equal(hub.token_audience, "https://api.example");
    json_t *served = model_hub_to_api(&hub);
    assert_true(json_equal(json_object_get(served, "certificateAuthority"), authority));
    assert_true(json_equal(json_object_get(json_object_get(served, "authorization"), "provider"),
                           provider));
    json_t *stored = model_hub_to_json(&hub);
    struct config_hub again;
    assert_int_equal(model_hub_from_json(stored, &again, err, sizeof(err)), 0);
    assert_string_equal(again.reference_json, hub.reference_json);
    model_hub_clear(&again);
    json_decref(stored);
    json_decref(served);
    model_hub_clear(&hub);

    set_at(doc, "identityCertificate", NULL);
    hub_fails(json_deep_copy(doc), "identityCertificate: required: this node signs identity "
                                   "certificates itself and cannot call the certificate "
                                   "authority of certificateAuthority.grpc; set "
                                   "identityCertificate.keyName");
    set_at(doc, "certificateAuthority", NULL);
    set_at(doc, "identityCertificate",
           json_pack("{s:s, s:s}", "certificate", hub_ca_file, "key", hub_key_file));
    set_at(doc, "token", NULL);
    hub_fails(json_deep_copy(doc), "token: required: this node signs the hub's access tokens "
                                   "itself and does not fetch them with the OAuth client of "
                                   "authorization.provider; set token.keyName");
    set_at(doc, "authorization.provider.scopes", json_string("openid"));
    hub_fails(doc, "authorization.provider.scopes: must be a list");
    json_decref(authority);
    json_decref(provider);
}

/* Members the readers do not know are dropped from an API document and named. */
static void api_documents_prune_unknown_members(void **state)
{
    json_t *doc = group_doc();
    set_at(doc, "hubsData", json_pack("[{s:s}]", "id", HUB_ID));
    set_at(doc, "attestationMechanism.x509.extra", json_true());
    set_at(doc, "resources", json_pack("[{s:s, s:{}, s:i}]", "href", "/a", "content", "x", 1));
    json_t *ignored = json_array();
    model_group_prune(doc, ignored);
    char *names = json_dumps(ignored, JSON_COMPACT);
    assert_string_equal(names, "[\"hubsData\",\"attestationMechanism.x509.extra\","
                               "\"resources[0].x\"]");
    free(names);
    struct config_group group;
    char err[512] = "";
    set_at(doc, "attestationMechanism.x509.leadCertificateName", NULL);
    assert_int_equal(model_group_from_api(doc, &group, err, sizeof(err)), 0);
    model_group_clear(&group);
    json_decref(doc);
    json_array_clear(ignored);

    doc = hub_doc();
    set_at(doc, "authorization.provider.extra", json_true());
    set_at(doc, "token.extra", json_true());
    model_hub_prune(doc, ignored);
    names = json_dumps(ignored, JSON_COMPACT);
    assert_string_equal(names, "[\"authorization.provider.extra\",\"token.extra\"]");
    free(names);
    json_decref(ignored);
    json_decref(doc);
}

static void hub_rules_name_the_field(void **state)
{
    hub_field_fails("gateways", json_array(), "gateways: must not be empty");
    hub_field_fails("gateways", json_pack("[s]", "coap+tcp://hub:5684"),
                    "gateways[0]: \"coap+tcp://hub:5684\": must start with coaps+tcp://");
    hub_field_fails("gateways", json_pack("[s]", "coaps+tcp://hub"),
                    "gateways[0]: \"coaps+tcp://hub\": must be HOST:PORT");
    hub_field_fails("hubId", json_string("nope"), "hubId: \"nope\" is not a UUID");
    hub_field_fails("id", json_string("nope"), "id: \"nope\" is not a UUID");
    hub_field_fails("hubId", NULL, "hubId: required");
    hub_field_fails("authorization.provider.name", NULL, "authorization.provider.name: required");
    hub_field_fails("identityCertificate.key", json_string("hub-ca.key"),
                    "identityCertificate.key: must be an absolute file path");
    hub_field_fails("token.key", json_string("/nonexistent.key"),
                    "token.key: cannot read /nonexistent.key");
    hub_field_fails("token.issuer", NULL, "token.issuer: required");
    hub_field_fails("token.lifetime", json_integer(5),
                    "token.lifetime: must be a number of seconds from 60");
    hub_field_fails("identityCertificate.validity", json_string("1y"),
                    "identityCertificate.validity: must be a number of seconds");
    hub_field_fails("token.audience", json_string("x"), "token.audience: unknown field");
}

/* A document from the API names no file: chains and CRLs are PEM, hub keys are names. */
static void api_documents_name_no_file(void **state)
{
    struct config_group group;
    struct config_hub hub;
    char err[512] = "";

    json_t *doc = group_doc();
    set_at(doc, "attestationMechanism.x509.certificateChain", json_string(chain_file));
    assert_int_equal(model_group_from_api(doc, &group, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "attestationMechanism.x509.certificateChain: must be PEM "
                                "certificates (file paths are not accepted"));
    set_at(doc, "attestationMechanism.x509.certificateChain", json_string(chain_pem));
    set_at(doc, "attestationMechanism.x509.crls", json_pack("[s]", "/etc/hostname"));
    assert_int_equal(model_group_from_api(doc, &group, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "attestationMechanism.x509.crls[0]: must be a PEM CRL"));
    json_decref(doc);

    doc = hub_doc();
    assert_int_equal(model_hub_from_api(doc, &hub, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "identityCertificate.certificate: file paths are not accepted"));
    set_at(doc, "identityCertificate", json_pack("{s:s}", "keyName", "hub-ca"));
    assert_int_equal(model_hub_from_api(doc, &hub, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "token.key: file paths are not accepted"));
    set_at(doc, "token.key", NULL);
    assert_int_equal(model_hub_from_api(doc, &hub, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "token.keyName: required"));
    set_at(doc, "token.keyName", json_string("token key"));
    assert_int_equal(model_hub_from_api(doc, &hub, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "token.keyName: may hold only letters"));
    set_at(doc, "token.keyName", json_string("token-key"));
    assert_int_equal(model_hub_from_api(doc, &hub, err, sizeof(err)), 0);
    assert_string_equal(hub.ca_key_name, "hub-ca");
    assert_string_equal(hub.token_key_name, "token-key");
    assert_null(hub.ca_key_file);
    assert_null(hub.token_key_file);

    /* Stored and served, the hub names its keys, never a file. */
    json_t *stored = model_hub_to_json(&hub);
    assert_string_equal(json_string_value(json_object_get(
                            json_object_get(stored, "identityCertificate"), "keyName")),
                        "hub-ca");
    assert_null(json_object_get(json_object_get(stored, "token"), "key"));
    json_decref(stored);
    model_hub_clear(&hub);
    json_decref(doc);
}

/* The stored form of a configured hub keeps its files; the served form shows none. */
static void served_documents_show_no_path(void **state)
{
    struct config_group group;
    struct config_hub hub;
    char err[512] = "";
    json_t *doc = hub_doc();
    assert_int_equal(model_hub_from_json(doc, &hub, err, sizeof(err)), 0);
    json_decref(doc);
    json_t *served = model_hub_to_api(&hub);
    char *text = json_dumps(served, JSON_COMPACT);
    assert_null(strstr(text, dir));
    free(text);
    json_decref(served);
    model_hub_clear(&hub);

    doc = group_doc();
    set_at(doc, "attestationMechanism.x509.certificateChain", json_string(chain_file));
    assert_int_equal(model_group_from_json(doc, &group, err, sizeof(err)), 0);
    json_decref(doc);
    group.ca_chain_pem = strdup(chain_pem); /* what a snapshot reads */
    served = model_group_to_api(&group);
    assert_string_equal(
        json_string_value(json_object_get(
            json_object_get(json_object_get(served, "attestationMechanism"), "x509"),
            "certificateChain")),
        chain_pem);
    json_decref(served);
    model_group_clear(&group);
}

/* A device chooses its id: its claim may name no registered claim, nor the owner's. */
static void hub_claims_may_not_collide(void **state)
{
    hub_field_fails("authorization.deviceIdClaim", json_string("sub"),
                    "authorization.deviceIdClaim: must not be a registered JWT claim");
    hub_field_fails("authorization.ownerClaim", json_string("aud"),
                    "authorization.ownerClaim: must not be a registered JWT claim");
    json_t *doc = hub_doc();
    set_at(doc, "authorization.ownerClaim", json_string("owner"));
    set_at(doc, "authorization.deviceIdClaim", json_string("owner"));
    hub_fails(doc, "authorization.deviceIdClaim: must differ from the owner claim");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(group_round_trip_keeps_everything),
        cmocka_unit_test(group_with_chain_file_and_defaults_emits_empty_fields),
        cmocka_unit_test(hub_round_trip_keeps_everything_but_no_key_material),
        cmocka_unit_test(group_identity_rules_name_the_field),
        cmocka_unit_test(group_attestation_rules_name_the_field),
        cmocka_unit_test(group_hub_and_key_rules_name_the_field),
        cmocka_unit_test(group_key_of_another_length_is_refused),
        cmocka_unit_test(group_multibyte_key_round_trips),
        cmocka_unit_test(group_acl_rules_name_the_field),
        cmocka_unit_test(group_resource_rules_name_the_field),
        cmocka_unit_test(hub_rules_name_the_field),
        cmocka_unit_test(api_documents_name_no_file),
        cmocka_unit_test(served_documents_show_no_path),
        cmocka_unit_test(hub_claims_may_not_collide),
        cmocka_unit_test(group_data_urls_are_decoded),
        cmocka_unit_test(group_api_defaults),
        cmocka_unit_test(hub_record_id_is_kept),
        cmocka_unit_test(hub_reference_shape_is_kept),
        cmocka_unit_test(api_documents_prune_unknown_members),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}

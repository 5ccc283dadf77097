/*
 * test_config: the YAML configuration (control/config.c) and the logfmt
 * logger it configures (control/log.c). A valid file must come out as the
 * expected struct config; every validation rule must fail with a message that
 * names the offending key, so an operator can find it.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "tests/unit/temp_dir.h"
#include "control/config.h"
#include "common/file.h"
#include "common/log.h"
#include "control/model.h"

#define HUB_ID "2d3f0c1e-7a8b-4c5d-9e0f-112233445566"
#define HUB_ID_2 "9b1c2d3e-4f50-4a6b-8c7d-8e9fa0b1c2d3"
#define GROUP_ID "5db6ccde-05e1-480b-a522-c1591ad7dfd2"

#define TLS "tls: {certificate: server.pem, key: server.key}\n"
#define HUB_BODY                                                                                   \
    "    gateways: [\"coaps+tcp://127.0.0.1:5684\"]\n"                                             \
    "    authorizationProvider: plgd\n"                                                            \
    "    identityCertificate: {certificate: hub-ca.pem, key: hub-ca.key}\n"                        \
    "    token: {key: token.key, issuer: https://dps.example}\n"
#define HUB "hubs:\n  - id: " HUB_ID "\n" HUB_BODY
#define HUB_BODY_CLAIM(claim)                                                                      \
    "    gateways: [\"coaps+tcp://127.0.0.1:5684\"]\n"                                             \
    "    authorizationProvider: plgd\n"                                                            \
    "    identityCertificate: {certificate: hub-ca.pem, key: hub-ca.key}\n"                        \
    "    token: {key: token.key, issuer: https://dps.example, deviceIdClaim: " claim "}\n"
#define GROUP                                                                                      \
    "enrollmentGroups:\n"                                                                          \
    "  - id: " GROUP_ID "\n"                                                                       \
    "    owner: \"1\"\n"                                                                           \
    "    attestation: {certificateChain: mfg-chain.pem}\n"                                         \
    "    hubIds: [" HUB_ID "]\n"
#define ACL_HEAD "    acl:\n      entries:\n"

static char folder[PATH_MAX];
static char config_path[PATH_MAX + 32];

static void write_file(const char *name, const char *text)
{
    char path[PATH_MAX + 64];
    snprintf(path, sizeof(path), "%s/%s", folder, name);
    FILE *file = fopen(path, "w");
    assert_non_null(file);
    assert_int_equal(fputs(text, file) >= 0, 1);
    assert_int_equal(fclose(file), 0);
}

static int setup(void **state)
{
    char template[] = "/tmp/test_config.XXXXXX";
    if (mkdtemp(template) == NULL || realpath(template, folder) == NULL)
        return -1;
    snprintf(config_path, sizeof(config_path), "%s/dps.yaml", folder);
    static const char *const files[] = {"server.pem",     "server.key",    "hub-ca.pem",
                                        "hub-ca.key",     "token.key",     "mfg-chain.pem",
                                        "dps-server.pem", "dps-server.key"};
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++)
        write_file(files[i], "-----BEGIN PLACEHOLDER-----\n");
    char sub[PATH_MAX + 16];
    snprintf(sub, sizeof(sub), "%s/pki", folder);
    if (mkdir(sub, 0700) != 0)
        return -1;
    write_file("pki/mfg-chain.pem", "-----BEGIN PLACEHOLDER-----\n");
    return 0;
}

static int teardown(void **state)
{
    return temp_dir_remove(folder);
}

/* Settings given in the file and defaulted alike. */
struct sizes_and_timeouts {
    long long shards, io_backend, signer_threads, max_message_size, inactivity_timeout_s,
        handshake_timeout_s;
};

static void assert_sizes_and_timeouts(const struct config *config, struct sizes_and_timeouts want)
{
    assert_int_equal(config->shards, want.shards);
    assert_int_equal(config->io_backend, want.io_backend);
    assert_int_equal(config->signer_threads, want.signer_threads);
    assert_int_equal(config->max_message_size, want.max_message_size);
    assert_int_equal(config->inactivity_timeout_s, want.inactivity_timeout_s);
    assert_int_equal(config->handshake_timeout_s, want.handshake_timeout_s);
}

/* Loads text as the configuration file and expects success. */
static struct config *load_ok(const char *text)
{
    char err[512];
    struct config *config = NULL;
    write_file("dps.yaml", text);
    int result = config_load(config_path, &config, err, sizeof(err));
    if (result != 0)
        print_error("unexpected error: %s\n", err);
    assert_int_equal(result, 0);
    assert_non_null(config);
    return config;
}

/* Loads text and expects failure with an error naming the file and containing every fragment. */
static void load_fails(const char *text, ...)
{
    char err[512];
    struct config *config = (struct config *)&err;
    write_file("dps.yaml", text);
    assert_int_equal(config_load(config_path, &config, err, sizeof(err)), -1);
    assert_null(config);
    assert_int_equal(strncmp(err, config_path, strlen(config_path)), 0);
    va_list fragments;
    va_start(fragments, text);
    for (const char *fragment = va_arg(fragments, const char *); fragment != NULL;
         fragment = va_arg(fragments, const char *)) {
        if (strstr(err, fragment) == NULL)
            print_error("\"%s\" not in \"%s\"\n", fragment, err);
        assert_non_null(strstr(err, fragment));
    }
    va_end(fragments);
}

static void in_folder(char *out, size_t size, const char *name)
{
    snprintf(out, size, "%s/%s", folder, name);
}

static void full_file_parses(void **state)
{
    char text[8192];
    char absolute_token_key[PATH_MAX + 32];
    in_folder(absolute_token_key, sizeof(absolute_token_key), "token.key");
    snprintf(text, sizeof(text),
             "listen: [\"127.0.0.1:15684\", \"[::1]:15685\"]\n"
             "shards: 2\n"
             "ioBackend: epoll\n" TLS "dataDir: /var/lib/dps\n"
             "signerThreads: 3\n"
             "store: {writers: 4}\n"
             "limits:\n"
             "  maxMessageSize: 32768\n"
             "  inactivityTimeout: 2m\n"
             "  handshakeTimeout: 5\n"
             "  maxConnections: 500\n"
             "logLevel: debug\n"
             "hubs:\n"
             "  - id: 2D3F0C1E-7A8B-4C5D-9E0F-112233445566\n"
             "    name: demo hub\n"
             "    gateways: [\"coaps+tcp://127.0.0.1:5684\", \"coaps+tcp://[::1]:5684\"]\n"
             "    authorizationProvider: plgd\n"
             "    identityCertificate:\n"
             "      certificate: hub-ca.pem\n"
             "      key: hub-ca.key\n"
             "      validity: 30d\n"
             "    token:\n"
             "      key: %s\n"
             "      keyId: demo\n"
             "      issuer: https://dps.example\n"
             "      audience: https://hub.example\n"
             "      ownerClaim: owner\n"
             "      deviceIdClaim: https://plgd.dev/deviceId\n"
             "      lifetime: 12h\n"
             "  - id: " HUB_ID_2 "\n" HUB_BODY "enrollmentGroups:\n"
             "  - id: " GROUP_ID "\n"
             "    owner: \"1\"\n"
             "    name: demo devices\n"
             "    attestation:\n"
             "      certificateChain: pki/mfg-chain.pem\n"
             "      leadCertificateName: Demo Manufacturer Intermediate CA\n"
             "      expiredCertificateEnabled: true\n"
             "    hubIds: [" HUB_ID_2 ", " HUB_ID "]\n"
             "    preSharedKey: \"pässwörd-€-1\"\n"
             "    acl:\n"
             "      mode: replace\n"
             "      entries:\n"
             "        - subject: {conntype: auth-crypt}\n"
             "          resources: [{href: /light/1, if: [oic.if.baseline]}, {wc: \"*\"}]\n"
             "          permission: 2\n"
             "        - {aceid: 7, subject: {role: admin, authority: owner}, resources: "
             "[{href: /oic/d}], permission: 31, tag: dps}\n"
             "    resources:\n"
             "      - href: /light/1\n"
             "        content: {state: false, power: 10, ratio: 0.5, label: \"10\", none: ~, "
             "word: on}\n",
             absolute_token_key);
    struct config *config = load_ok(text);

    assert_string_equal(config->path, config_path);
    assert_int_equal(config->listen_count, 2);
    assert_string_equal(config->listen[0], "127.0.0.1:15684");
    assert_string_equal(config->listen[1], "[::1]:15685");
    char expected[PATH_MAX + 64];
    in_folder(expected, sizeof(expected), "server.pem");
    assert_string_equal(config->tls_cert_file, expected);
    in_folder(expected, sizeof(expected), "server.key");
    assert_string_equal(config->tls_key_file, expected);
    assert_string_equal(config->data_dir, "/var/lib/dps");
    assert_sizes_and_timeouts(config,
                              (struct sizes_and_timeouts){2, CONFIG_IO_EPOLL, 3, 32768, 120, 5});
    assert_int_equal(config->store_writers, 4);
    assert_int_equal(config->max_connections, 500);
    assert_string_equal(config->log_level, "debug");

    assert_int_equal(config->hub_count, 2);
    const struct config_hub *hub = &config->hubs[0];
    assert_string_equal(hub->id, HUB_ID); /* lower-cased */
    assert_string_equal(hub->name, "demo hub");
    assert_int_equal(hub->gateway_count, 2);
    assert_string_equal(hub->gateways[1], "coaps+tcp://[::1]:5684");
    assert_string_equal(hub->authorization_provider, "plgd");
    in_folder(expected, sizeof(expected), "hub-ca.pem");
    assert_string_equal(hub->ca_cert_file, expected);
    in_folder(expected, sizeof(expected), "hub-ca.key");
    assert_string_equal(hub->ca_key_file, expected);
    assert_int_equal(hub->certificate_validity_s, 30 * 86400);
    assert_string_equal(hub->token_key_file, absolute_token_key);
    assert_string_equal(hub->token_key_id, "demo");
    assert_string_equal(hub->token_issuer, "https://dps.example");
    assert_string_equal(hub->token_audience, "https://hub.example");
    assert_string_equal(hub->token_owner_claim, "owner");
    assert_string_equal(hub->token_device_id_claim, "https://plgd.dev/deviceId");
    assert_int_equal(hub->token_lifetime_s, 12 * 3600);
    assert_string_equal(config->hubs[1].id, HUB_ID_2);

    assert_int_equal(config->group_count, 1);
    const struct config_group *group = &config->groups[0];
    assert_string_equal(group->id, GROUP_ID);
    assert_string_equal(group->owner, "1");
    assert_string_equal(group->name, "demo devices");
    in_folder(expected, sizeof(expected), "pki/mfg-chain.pem");
    assert_string_equal(group->ca_chain_file, expected);
    assert_string_equal(group->lead_certificate_name, "Demo Manufacturer Intermediate CA");
    assert_true(group->expired_certificate_enabled);
    assert_int_equal(group->hub_count, 2);
    assert_string_equal(group->hub_ids[0], HUB_ID_2);
    assert_string_equal(group->hub_ids[1], HUB_ID);
    assert_true(group->has_psk);
    assert_memory_equal(group->psk, "pässwörd-€-1", 16);
    assert_int_equal(group->acl_mode, CONFIG_ACL_REPLACE);
    assert_string_equal(
        group->acl_json,
        "[{\"subject\":{\"conntype\":\"auth-crypt\"},\"resources\":[{\"href\":\"/light/1\","
        "\"if\":[\"oic.if.baseline\"]},{\"wc\":\"*\"}],\"permission\":2},{\"aceid\":7,"
        "\"subject\":{\"role\":\"admin\",\"authority\":\"owner\"},\"resources\":[{\"href\":"
        "\"/oic/d\"}],\"permission\":31,\"tag\":\"dps\"}]");
    assert_string_equal(group->resources_json,
                        "[{\"href\":\"/light/1\",\"content\":{\"state\":false,\"power\":10,"
                        "\"ratio\":0.5,\"label\":\"10\",\"none\":null,\"word\":\"on\"}}]");
    config_free(config);
}

/* The documented example must stay a valid configuration. */
static void example_configuration_loads(void **state)
{
    const char *root = getenv("DPS_SOURCE_ROOT");
    char path[PATH_MAX + 64];
    snprintf(path, sizeof(path), "%s/deploy/dpsd.example.yaml", root != NULL ? root : ".");
    char err[256];
    char *text = file_read_text(path, 65535, NULL, err, sizeof(err));
    if (text == NULL)
        fail_msg("%s", err);

    struct config *config = load_ok(text);
    free(text);
    assert_int_equal(config->listen_count, 1);
    assert_int_equal(config->hub_count, 1);
    assert_int_equal(config->hubs[0].certificate_validity_s, 8760L * 3600);
    assert_int_equal(config->group_count, 1);
    assert_ptr_equal(config_find_hub(config, config->groups[0].hub_ids[0]), &config->hubs[0]);
    assert_true(config->groups[0].has_psk);
    assert_int_equal(config->groups[0].acl_mode, CONFIG_ACL_EXTEND);
    assert_string_equal(config->groups[0].resources_json,
                        "[{\"href\":\"/light/1\",\"content\":{\"state\":false,\"power\":10}}]");
    config_free(config);
}

static void defaults_apply(void **state)
{
    struct config *config = load_ok(TLS HUB GROUP);
    assert_int_equal(config->listen_count, 1);
    assert_string_equal(config->listen[0], "0.0.0.0:15684");
    char expected[PATH_MAX + 64];
    in_folder(expected, sizeof(expected), "data");
    assert_string_equal(config->data_dir, expected);
    assert_sizes_and_timeouts(config,
                              (struct sizes_and_timeouts){0, CONFIG_IO_URING, 1, 16384, 20, 10});
    assert_int_equal(config->store_writers, 16);
    assert_int_equal(config->max_connections, 10000);
    assert_string_equal(config->log_level, "info");

    const struct config_hub *hub = &config->hubs[0];
    assert_null(hub->name);
    assert_int_equal(hub->certificate_validity_s, 365L * 86400);
    assert_int_equal(hub->token_lifetime_s, 365L * 86400);
    assert_null(hub->token_key_id);
    assert_null(hub->token_audience);
    assert_string_equal(hub->token_owner_claim, "sub");
    assert_null(hub->token_device_id_claim);

    const struct config_group *group = &config->groups[0];
    assert_null(group->name);
    assert_null(group->lead_certificate_name);
    assert_false(group->expired_certificate_enabled);
    assert_false(group->has_psk);
    assert_int_equal(group->acl_mode, CONFIG_ACL_DEFAULT);
    assert_null(group->acl_json);
    assert_null(group->resources_json);
    config_free(config);
}

static void node_without_hubs_or_groups_loads(void **state)
{
    struct config *config = load_ok(TLS "hubs: []\nenrollmentGroups:\n");
    assert_int_equal(config->hub_count, 0);
    assert_int_equal(config->group_count, 0);
    config_free(config);
}

static void acl_mode_defaults_to_extend(void **state)
{
    struct config *config =
        load_ok(TLS HUB GROUP ACL_HEAD
                "        - {subject: {uuid: \"*\"}, resources: [{href: /a}], permission: 6}\n");
    assert_int_equal(config->groups[0].acl_mode, CONFIG_ACL_EXTEND);
    assert_string_equal(config->groups[0].acl_json,
                        "[{\"subject\":{\"uuid\":\"*\"},\"resources\":[{\"href\":\"/a\"}],"
                        "\"permission\":6}]");
    config_free(config);
}

static void find_hub_by_id(void **state)
{
    struct config *config = load_ok(TLS HUB "  - id: " HUB_ID_2 "\n" HUB_BODY);
    assert_ptr_equal(config_find_hub(config, HUB_ID_2), &config->hubs[1]);
    assert_ptr_equal(config_find_hub(config, HUB_ID), &config->hubs[0]);
    assert_null(config_find_hub(config, GROUP_ID));
    config_free(config);
}

static void missing_file_fails(void **state)
{
    char err[512];
    char path[PATH_MAX + 32];
    struct config *config = NULL;
    in_folder(path, sizeof(path), "absent.yaml");
    assert_int_equal(config_load(path, &config, err, sizeof(err)), -1);
    assert_null(config);
    assert_non_null(strstr(err, path));
    assert_non_null(strstr(err, "No such file"));
}

static void yaml_syntax_error_has_line_and_column(void **state)
{
    load_fails(TLS "hubs:\n  - id: [unclosed\n", ":4:1: YAML syntax error", "line 3", NULL);
    load_fails(TLS "listen: [\"a\"\n  x: y\n", "YAML syntax error", NULL);
}

static void second_document_fails(void **state)
{
    load_fails(TLS "---\nshards: 1\n", "more than one YAML document", NULL);
}

static void empty_file_needs_tls(void **state)
{
    load_fails("", ": tls: required", NULL);
}

static void unknown_keys_fail(void **state)
{
    char expected[PATH_MAX + 64];
    snprintf(expected, sizeof(expected), "%s:2: shard: unknown key", config_path);
    char err[512];
    struct config *config = NULL;
    write_file("dps.yaml", TLS "shard: 2\n");
    assert_int_equal(config_load(config_path, &config, err, sizeof(err)), -1);
    assert_string_equal(err, expected);

    load_fails("tls: {certificate: server.pem, key: server.key, chain: x}\n",
               "tls.chain: unknown key", NULL);
    load_fails(TLS "limits: {maxMessagesize: 2048}\n", "limits.maxMessagesize: unknown key", NULL);
    load_fails(TLS HUB "    tokn: {}\n", "hubs[0].tokn: unknown key", NULL);
    load_fails(TLS HUB GROUP "    attestation2: {}\n",
               "enrollmentGroups[0].attestation2: unknown key", NULL);
}

static void duplicate_key_fails(void **state)
{
    load_fails(TLS "shards: 1\nshards: 2\n", ":3: shards: duplicate key", NULL);
}

static void required_keys_fail(void **state)
{
    load_fails("tls: {key: server.key}\n", ":1: tls.certificate: required", NULL);
    load_fails("tls: {certificate: server.pem}\n", "tls.key: required", NULL);
    load_fails(TLS "hubs:\n  - id: " HUB_ID "\n"
                   "    gateways: [\"coaps+tcp://127.0.0.1:5684\"]\n"
                   "    authorizationProvider: plgd\n"
                   "    identityCertificate: {certificate: hub-ca.pem, key: hub-ca.key}\n"
                   "    token: {key: token.key}\n",
               "hubs[0].token.issuer: required", NULL);
    load_fails(TLS "hubs:\n  - id: " HUB_ID "\n"
                   "    gateways: [\"coaps+tcp://127.0.0.1:5684\"]\n"
                   "    identityCertificate: {certificate: hub-ca.pem, key: hub-ca.key}\n"
                   "    token: {key: token.key, issuer: x}\n",
               "hubs[0].authorization: required", NULL);
    load_fails(TLS HUB "enrollmentGroups:\n  - id: " GROUP_ID "\n"
                       "    attestation: {certificateChain: mfg-chain.pem}\n"
                       "    hubIds: [" HUB_ID "]\n",
               "enrollmentGroups[0].owner: required", NULL);
    load_fails(TLS HUB "enrollmentGroups:\n  - id: " GROUP_ID "\n    owner: x\n"
                       "    hubIds: [" HUB_ID "]\n",
               "enrollmentGroups[0].attestationMechanism: required", NULL);
}

static void unreadable_file_fails(void **state)
{
    load_fails(TLS "hubs:\n  - id: " HUB_ID "\n"
                   "    gateways: [\"coaps+tcp://127.0.0.1:5684\"]\n"
                   "    authorizationProvider: plgd\n"
                   "    identityCertificate: {certificate: hub-ca.pem, key: missing.key}\n"
                   "    token: {key: token.key, issuer: x}\n",
               ":6: hubs[0].identityCertificate.key: cannot read ", "/missing.key", "No such file",
               NULL);
    load_fails("tls: {certificate: /nonexistent/server.pem, key: server.key}\n",
               "tls.certificate: cannot read /nonexistent/server.pem", NULL);
    load_fails("tls: {certificate: server.pem, key: pki}\n",
               "tls.key: ", "/pki is not a regular file", NULL);
}

static void invalid_uuid_fails(void **state)
{
    load_fails(TLS "hubs:\n  - id: 2d3f0c1e-7a8b-4c5d-9e0f-11223344556\n" HUB_BODY,
               "hubs[0].id: \"2d3f0c1e-7a8b-4c5d-9e0f-11223344556\" is not a UUID", NULL);
    load_fails(TLS HUB "enrollmentGroups:\n  - id: not-a-uuid\n", "enrollmentGroups[0].id",
               "not a UUID", NULL);
    load_fails(TLS HUB "enrollmentGroups:\n  - id: " GROUP_ID "\n    owner: x\n"
                       "    attestation: {certificateChain: mfg-chain.pem}\n"
                       "    hubIds: [" HUB_ID ", 2d3f0c1e-7a8b-4c5d-9e0f-1122334455zz]\n",
               "enrollmentGroups[0].hubIds[1]", "not a UUID", NULL);
}

static void duplicate_ids_fail(void **state)
{
    load_fails(TLS HUB "  - id: " HUB_ID "\n" HUB_BODY, "hubs[1].id: \"" HUB_ID "\"",
               "also hubs[0].id", NULL);
    load_fails(TLS HUB GROUP "  - id: " GROUP_ID "\n    owner: x\n"
                             "    attestation: {certificateChain: mfg-chain.pem}\n"
                             "    hubIds: [" HUB_ID "]\n",
               "enrollmentGroups[1].id", "also enrollmentGroups[0].id", NULL);
}

static void gateways_are_checked(void **state)
{
    load_fails(TLS "hubs:\n  - id: " HUB_ID "\n    gateways: []\n",
               "hubs[0].gateways: must not be empty", NULL);
    load_fails(TLS "hubs:\n  - id: " HUB_ID "\n    gateways: [\"coap+tcp://h:5684\"]\n",
               "hubs[0].gateways[0]: \"coap+tcp://h:5684\" must start with coaps+tcp://", NULL);
    load_fails(TLS "hubs:\n  - id: " HUB_ID "\n    gateways: [\"coaps+tcp://a:1\", "
                   "\"coaps+tcp://hub.example\"]\n",
               "hubs[0].gateways[1]", "HOST:PORT", NULL);
    load_fails(TLS "hubs:\n  - id: " HUB_ID "\n    gateways: [\"coaps+tcp://hub:0\"]\n",
               "hubs[0].gateways[0]", "port", NULL);
    load_fails(TLS "hubs:\n  - id: " HUB_ID "\n    gateways: [\"coaps+tcp://::1:5684\"]\n",
               "hubs[0].gateways[0]", "[ADDRESS]:PORT", NULL);
}

static void listen_entries_are_checked(void **state)
{
    load_fails(TLS "listen: [\"0.0.0.0:70000\"]\n", "listen[0]", "port", NULL);
    load_fails(TLS "listen: [\"0.0.0.0:1\", \"localhost:15684\"]\n", "listen[1]",
               "must be an IP address", NULL);
    load_fails(TLS "listen: [\"[::1:15684\"]\n", "listen[0]", NULL);
    load_fails(TLS "listen: []\n", "listen: must not be empty", NULL);
    load_fails(TLS "listen: \"0.0.0.0:15684\"\n", "listen: must be a list", NULL);
    load_fails(TLS "listen: [\"0.0.0.0:1\", \"0.0.0.0:1\"]\n", "listen[1]", "duplicate", NULL);
}

static void io_backend_is_checked(void **state)
{
    load_fails(TLS "ioBackend: kqueue\n", "ioBackend: must be io_uring or epoll", NULL);
}

static void numeric_ranges_are_checked(void **state)
{
    load_fails(TLS "shards: 257\n", "shards: must be an integer from 0 to 256", NULL);
    load_fails(TLS "shards: -1\n", "shards:", NULL);
    load_fails(TLS "shards: two\n", "shards:", NULL);
    load_fails(TLS "signerThreads: 0\n", "signerThreads:", NULL);
    load_fails(TLS "store: {writers: 0}\n", "store.writers: must be an integer from 1 to 32", NULL);
    load_fails(TLS "store: {writers: 33}\n", "store.writers:", NULL);
    load_fails(TLS "store: {writer: 4}\n", "store.writer", NULL);
    load_fails(TLS "limits: {maxMessageSize: 1023}\n", "limits.maxMessageSize", NULL);
    load_fails(TLS "limits: {maxMessageSize: 1048577}\n", "limits.maxMessageSize", NULL);
    load_fails(TLS "limits: {inactivityTimeout: 0}\n", "limits.inactivityTimeout", NULL);
    load_fails(TLS "limits: {handshakeTimeout: 0s}\n", "limits.handshakeTimeout", NULL);
    load_fails(TLS "limits: {maxConnections: 0}\n", "limits.maxConnections", NULL);
}

static void durations_are_checked(void **state)
{
    load_fails(TLS "hubs:\n  - id: " HUB_ID "\n"
                   "    gateways: [\"coaps+tcp://127.0.0.1:5684\"]\n"
                   "    authorizationProvider: plgd\n"
                   "    identityCertificate: {certificate: hub-ca.pem, key: hub-ca.key, "
                   "validity: 1y}\n",
               "hubs[0].identityCertificate.validity: must be a duration", NULL);
    load_fails(TLS "hubs:\n  - id: " HUB_ID "\n"
                   "    gateways: [\"coaps+tcp://127.0.0.1:5684\"]\n"
                   "    authorizationProvider: plgd\n"
                   "    identityCertificate: {certificate: hub-ca.pem, key: hub-ca.key}\n"
                   "    token: {key: token.key, issuer: x, lifetime: 99999999999999999999h}\n",
               "hubs[0].token.lifetime: must be a duration", NULL);
    load_fails(TLS "limits: {inactivityTimeout: 10x}\n", "limits.inactivityTimeout", NULL);
}

static void log_level_is_checked(void **state)
{
    load_fails(TLS "logLevel: verbose\n", "logLevel: must be debug, info, warn or error", NULL);
}

/* A key that is not 16 bytes is refused, never cut or padded; bytes count, not characters. */
static void pre_shared_key_length_is_checked(void **state)
{
    load_fails(TLS HUB GROUP "    preSharedKey: \"0123456789abcde\"\n",
               ":13: enrollmentGroups[0].preSharedKey: must be exactly 16 bytes, not 15", NULL);
    load_fails(TLS HUB GROUP "    preSharedKey: \"0123456789abcdefX\"\n",
               ":13: enrollmentGroups[0].preSharedKey: must be exactly 16 bytes, not 17", NULL);
    /* 16 characters, the last one 3 bytes: cutting at 16 bytes would split it. */
    load_fails(TLS HUB GROUP "    preSharedKey: \"0123456789abcde\u20ac\"\n",
               "enrollmentGroups[0].preSharedKey: must be exactly 16 bytes, not 18", NULL);
    load_fails(TLS HUB GROUP "    preSharedKey: \"0123456789abcde\\0\"\n",
               "enrollmentGroups[0].preSharedKey: must not contain NUL characters", NULL);
}

/* 15 characters, 16 bytes: the key is kept byte for byte, through the API's JSON form too. */
static void pre_shared_key_keeps_its_bytes_through_json(void **state)
{
    static const char key[] = "0123456789abcd\u00e9";
    struct config *config = load_ok(TLS HUB GROUP "    preSharedKey: \"0123456789abcd\u00e9\"\n");
    const struct config_group *group = &config->groups[0];
    assert_true(group->has_psk);
    assert_memory_equal(group->psk, key, CONFIG_PSK_LENGTH);

    json_t *doc = model_group_to_json(group);
    assert_non_null(doc);
    assert_string_equal(json_string_value(json_object_get(doc, "preSharedKey")), key);
    char *text = json_dumps(doc, JSON_COMPACT);
    json_t *parsed = json_loads(text, 0, NULL);
    struct config_group again;
    char err[512] = "";
    assert_int_equal(model_group_from_json(parsed, &again, err, sizeof(err)), 0);
    assert_true(again.has_psk);
    assert_memory_equal(again.psk, key, CONFIG_PSK_LENGTH);
    model_group_clear(&again);
    json_decref(parsed);
    free(text);
    json_decref(doc);
    config_free(config);
}

static void group_hub_ids_are_checked(void **state)
{
    load_fails(TLS HUB "enrollmentGroups:\n  - id: " GROUP_ID "\n    owner: x\n"
                       "    attestation: {certificateChain: mfg-chain.pem}\n"
                       "    hubIds: []\n",
               "enrollmentGroups[0].hubIds: must not be empty", NULL);
    load_fails(TLS HUB "enrollmentGroups:\n  - id: " GROUP_ID "\n    owner: x\n"
                       "    attestation: {certificateChain: mfg-chain.pem}\n"
                       "    hubIds: [" HUB_ID ", " HUB_ID_2 "]\n",
               ":12: enrollmentGroups[0].hubIds[1]: unknown hub \"" HUB_ID_2 "\"", NULL);
    load_fails(TLS "enrollmentGroups:\n  - id: " GROUP_ID "\n    owner: x\n"
                   "    attestation: {certificateChain: mfg-chain.pem}\n"
                   "    hubIds: [" HUB_ID "]\n",
               "enrollmentGroups[0].hubIds[0]: unknown hub", NULL);
    load_fails(TLS HUB "enrollmentGroups:\n  - id: " GROUP_ID "\n    owner: x\n"
                       "    attestation: {certificateChain: mfg-chain.pem}\n"
                       "    hubIds: [" HUB_ID ", " HUB_ID "]\n",
               "enrollmentGroups[0].hubIds[1]", "duplicate", NULL);
}

static void acl_entries_are_checked(void **state)
{
    load_fails(TLS HUB GROUP ACL_HEAD
               "        - {subject: {conntype: auth-crypt}, resources: [{href: /a}], "
               "permission: 2, validity: x}\n",
               "enrollmentGroups[0].acl.entries[0].validity: unknown key", NULL);
    load_fails(TLS HUB GROUP ACL_HEAD
               "        - {subject: {conntype: auth-crypt, role: r}, resources: [{href: /a}], "
               "permission: 2}\n",
               "enrollmentGroups[0].acl.entries[0].subject: must have exactly one", NULL);
    load_fails(TLS HUB GROUP ACL_HEAD
               "        - {subject: {}, resources: [{href: /a}], permission: 2}\n",
               "acl.entries[0].subject: must have exactly one", NULL);
    load_fails(TLS HUB GROUP ACL_HEAD
               "        - {subject: {conntype: auth-crypt}, resources: [{href: /a}], "
               "permission: 2}\n"
               "        - {subject: {conntype: anon}, resources: [{href: /a}], permission: 2}\n",
               "acl.entries[1].subject.conntype: must be auth-crypt or anon-clear", NULL);
    load_fails(TLS HUB GROUP ACL_HEAD
               "        - {subject: {uuid: abc}, resources: [{href: /a}], permission: 2}\n",
               "acl.entries[0].subject.uuid", NULL);
    load_fails(TLS HUB GROUP ACL_HEAD "        - {subject: {conntype: auth-crypt}, resources: "
                                      "[{href: /a}], permission: 32}\n",
               "acl.entries[0].permission: must be an integer from 0 to 31", NULL);
    load_fails(TLS HUB GROUP ACL_HEAD "        - {subject: {conntype: auth-crypt}, resources: "
                                      "[{href: /a}], permission: \"2\"}\n",
               "acl.entries[0].permission", NULL);
    load_fails(TLS HUB GROUP ACL_HEAD "        - {subject: {conntype: auth-crypt}, resources: "
                                      "[{href: /a}]}\n",
               "acl.entries[0].permission: required", NULL);
    load_fails(TLS HUB GROUP ACL_HEAD "        - {subject: {conntype: auth-crypt}, resources: "
                                      "[{href: /a, rt: [x]}], permission: 2}\n",
               "acl.entries[0].resources[0].rt: unknown key", NULL);
    load_fails(TLS HUB GROUP ACL_HEAD "        - {subject: {conntype: auth-crypt}, resources: "
                                      "[{href: a}], permission: 2}\n",
               "acl.entries[0].resources[0].href: must be a path starting with /", NULL);
    load_fails(TLS HUB GROUP ACL_HEAD "        - {subject: {conntype: auth-crypt}, resources: "
                                      "[{wc: x}], permission: 2}\n",
               "acl.entries[0].resources[0].wc", NULL);
    load_fails(TLS HUB GROUP "    acl:\n      mode: merge\n      entries: []\n",
               "enrollmentGroups[0].acl.mode: must be replace or extend", NULL);
    load_fails(TLS HUB GROUP "    acl:\n      mode: replace\n",
               "enrollmentGroups[0].acl.entries: required", NULL);
}

static void resources_are_checked(void **state)
{
    load_fails(TLS HUB GROUP "    resources:\n      - href: light\n        content: {a: 1}\n",
               ":14: enrollmentGroups[0].resources[0].href: must be a path starting with /", NULL);
    load_fails(TLS HUB GROUP "    resources:\n      - href: /light\n",
               "enrollmentGroups[0].resources[0].content: required", NULL);
    load_fails(TLS HUB GROUP "    resources:\n      - {href: /l, content: {a: 1}, rt: x}\n",
               "enrollmentGroups[0].resources[0].rt: unknown key", NULL);
    load_fails(TLS HUB GROUP "    resources:\n      - {href: /l, content: {a: 1}}\n"
                             "      - {href: /l, content: {a: 2}}\n",
               "enrollmentGroups[0].resources[1].href", "twice", NULL);
    load_fails(TLS HUB GROUP "    resources:\n      - {href: /l, content: {a: 1, a: 2}}\n",
               "enrollmentGroups[0].resources[0].content.a: duplicate key", NULL);
}

static void alias_bomb_is_bounded(void **state)
{
    load_fails(TLS HUB GROUP "    resources:\n"
                             "      - href: /l\n"
                             "        content:\n"
                             "          a: &a [x, x, x, x, x, x, x, x, x, x]\n"
                             "          b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
                             "          c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\n"
                             "          d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
                             "          e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\n",
               "too large", NULL);
}

/* Runs log_msg with stderr redirected and returns what was written. */
static size_t capture_log(char *out, size_t size, enum log_level level, const char *message,
                          const char *value)
{
    int pipe_fds[2];
    assert_int_equal(pipe2(pipe_fds, O_CLOEXEC), 0);
    fcntl(pipe_fds[1], F_SETPIPE_SZ, 65536);
    int saved = dup(STDERR_FILENO);
    assert_true(saved >= 0);
    assert_true(dup2(pipe_fds[1], STDERR_FILENO) >= 0);
    log_msg(level, message, "addr=%s port=%d", value, 15684);
    dup2(saved, STDERR_FILENO);
    close(saved);
    close(pipe_fds[1]);
    ssize_t n = read(pipe_fds[0], out, size - 1);
    close(pipe_fds[0]);
    assert_true(n >= 0);
    out[n] = '\0';
    return (size_t)n;
}

static void log_level_names_parse(void **state)
{
    enum log_level level;
    assert_int_equal(log_parse_level("debug", &level), 0);
    assert_int_equal(level, LOG_DEBUG);
    assert_int_equal(log_parse_level("warn", &level), 0);
    assert_int_equal(level, LOG_WARN);
    assert_int_equal(log_parse_level("error", &level), 0);
    assert_int_equal(level, LOG_ERROR);
    assert_int_equal(log_parse_level("info", &level), 0);
    assert_int_equal(level, LOG_INFO);
    assert_int_equal(log_parse_level("verbose", &level), -1);
    assert_int_equal(log_parse_level(NULL, &level), -1);
}

static void log_line_is_logfmt(void **state)
{
    char line[8192];
    log_set_level(LOG_INFO);
    size_t n = capture_log(line, sizeof(line), LOG_WARN, "bad \"thing\"\n", "1.2.3.4");
    assert_true(n > 30);
    assert_memory_equal(line, "ts=", 3);
    /* ts=2026-11-28T05:06:14.123Z */
    assert_int_equal(line[7], '-');
    assert_int_equal(line[13], 'T');
    assert_int_equal(line[22], '.');
    assert_int_equal(line[26], 'Z');
    assert_string_equal(line + 27,
                        " level=warn msg=\"bad \\\"thing\\\"\\n\" addr=1.2.3.4 port=15684\n");
}

static void log_level_filters(void **state)
{
    char line[8192];
    log_set_level(LOG_INFO);
    assert_int_equal(capture_log(line, sizeof(line), LOG_DEBUG, "hidden", "x"), 0);
    log_set_level(LOG_ERROR);
    assert_int_equal(capture_log(line, sizeof(line), LOG_WARN, "hidden", "x"), 0);
    assert_true(capture_log(line, sizeof(line), LOG_ERROR, "shown", "x") > 0);
    log_set_level(LOG_DEBUG);
    assert_true(capture_log(line, sizeof(line), LOG_DEBUG, "shown", "x") > 0);
    log_set_level(LOG_INFO);
}

static void log_long_line_is_cut_to_one_line(void **state)
{
    char value[6000];
    memset(value, 'v', sizeof(value) - 1);
    value[sizeof(value) - 1] = '\0';
    value[100] = '\n'; /* a field must not break the line */
    char line[8192];
    size_t n = capture_log(line, sizeof(line), LOG_ERROR, "long", value);
    assert_int_equal(n, 4096);
    assert_int_equal(line[n - 1], '\n');
    assert_ptr_equal(strchr(line, '\n'), line + n - 1);
    assert_memory_equal(line + n - 4, "...", 3);
}

static void key_file_permissions_policy(void **state)
{
    struct config *config = load_ok(TLS);
    assert_int_equal(config->key_file_permissions, KEYFILE_REFUSE);
    assert_null(config->user);
    config_free(config);
    config = load_ok(TLS "keyFilePermissions: warn\n");
    assert_int_equal(config->key_file_permissions, KEYFILE_WARN);
    config_free(config);
    config = load_ok(TLS "keyFilePermissions: refuse\n");
    assert_int_equal(config->key_file_permissions, KEYFILE_REFUSE);
    config_free(config);
    load_fails(TLS "keyFilePermissions: ignore\n", "keyFilePermissions: must be refuse or warn",
               NULL);
}

#define API_WITH_KEY                                                                               \
    "api:\n  listen: 127.0.0.1:9100\n  certificate: server.pem\n  key: server.key\n"               \
    "  jwks: server.pem\n  issuer: https://operators\n"

/* The API's key is read by the API itself, so the configuration applies the policy to it. */
static void api_key_permissions_are_checked(void **state)
{
    char key[PATH_MAX + 32];
    in_folder(key, sizeof(key), "server.key");
    assert_int_equal(chmod(key, 0644), 0);
    load_fails(TLS API_WITH_KEY, "api.key", key, "accessible to group or others (mode 0644)", NULL);
    struct config *config = load_ok(TLS API_WITH_KEY "keyFilePermissions: warn\n");
    config_free(config);
    assert_int_equal(chmod(key, 0600), 0);
    config = load_ok(TLS API_WITH_KEY);
    assert_string_equal(config->api.key_file, key);
    config_free(config);
}

static void user_must_exist(void **state)
{
    struct config *config = load_ok(TLS "user: root\n");
    assert_string_equal(config->user, "root");
    config_free(config);
    load_fails(TLS "user: no-such-dps-user\n", ":2: user: no user \"no-such-dps-user\"", NULL);
}

#define GROUP_WITH(attestation, extra)                                                             \
    "enrollmentGroups:\n  - id: " GROUP_ID "\n    owner: \"1\"\n"                                  \
    "    attestation: " attestation "\n    hubIds: [" HUB_ID "]\n" extra

static void group_crls_and_disabled(void **state)
{
    char expected[PATH_MAX + 64];
    write_file("pki/mfg.crl", "-----BEGIN X509 CRL-----\n");
    struct config *config = load_ok(TLS HUB GROUP_WITH(
        "{certificateChain: mfg-chain.pem, crls: [pki/mfg.crl]}", "    disabled: true\n"));
    const struct config_group *group = &config->groups[0];
    assert_int_equal(group->crl_count, 1);
    in_folder(expected, sizeof(expected), "pki/mfg.crl");
    assert_string_equal(group->crls[0], expected);
    assert_true(group->disabled);
    config_free(config);

    config = load_ok(TLS HUB GROUP);
    assert_int_equal(config->groups[0].crl_count, 0);
    assert_false(config->groups[0].disabled);
    config_free(config);

    load_fails(TLS HUB GROUP_WITH("{certificateChain: mfg-chain.pem, crls: [absent.crl]}", ""),
               "enrollmentGroups[0].attestation.crls[0]", "absent.crl", "No such file", NULL);
    load_fails(TLS HUB GROUP_WITH("{certificateChain: mfg-chain.pem, crls: []}", ""),
               "crls: must not be empty", NULL);
    load_fails(TLS HUB GROUP_WITH("{certificateChain: mfg-chain.pem}", "    disabled: no\n"),
               "enrollmentGroups[0].disabled: must be true or false", NULL);
}

#define KEYS                                                                                       \
    "keys:\n"                                                                                      \
    "  - {name: ca-1, certificate: hub-ca.pem, key: hub-ca.key, owners: [\"1\"]}\n"                \
    "  - {name: token-1, key: token.key, owners: [\"1\", \"2\"]}\n"
#define NAMED_HUB(owner, ca, token)                                                                \
    "hubs:\n  - id: " HUB_ID "\n    owner: \"" owner "\"\n"                                        \
    "    gateways: [\"coaps+tcp://127.0.0.1:5684\"]\n"                                             \
    "    authorizationProvider: plgd\n"                                                            \
    "    identityCertificate: {keyName: " ca "}\n"                                                 \
    "    token: {keyName: " token ", issuer: https://dps.example}\n"

/* Hubs may name registered keys, of their own owner, instead of the files. */
static void key_registry_is_read_and_names_are_checked(void **state)
{
    struct config *config = load_ok(TLS KEYS NAMED_HUB("1", "ca-1", "token-1"));
    assert_int_equal(config->key_count, 2);
    const struct config_key *key = config_find_key(config, "token-1");
    assert_non_null(key);
    assert_null(key->cert_file);
    assert_true(config_key_allows(key, "2"));
    assert_false(config_key_allows(config_find_key(config, "ca-1"), "2"));
    assert_string_equal(config->hubs[0].ca_key_name, "ca-1");
    assert_null(config->hubs[0].ca_key_file);
    config_free(config);

    load_fails(TLS KEYS NAMED_HUB("1", "ca-2", "token-1"), "hubs[0].identityCertificate.keyName",
               "no key \"ca-2\" in keys", NULL);
    load_fails(TLS KEYS NAMED_HUB("2", "ca-1", "token-1"), "identityCertificate.keyName",
               "owner \"2\" is not one of the owners of key \"ca-1\"", NULL);
    load_fails(TLS KEYS NAMED_HUB("1", "token-1", "token-1"), "key \"token-1\" has no certificate",
               NULL);
    load_fails(TLS "keys:\n  - {name: a b, key: token.key, owners: [\"1\"]}\n", "keys[0].name",
               "may hold only letters", NULL);
    load_fails(TLS "keys:\n  - {name: k, key: token.key, owners: [\"1\"]}\n"
                   "  - {name: k, key: token.key, owners: [\"2\"]}\n",
               "keys[1].name", "is also keys[0].name", NULL);
    load_fails(TLS "hubs:\n  - id: " HUB_ID "\n" HUB_BODY_CLAIM("sub"),
               "hubs[0].token.deviceIdClaim", "must not be a registered JWT claim", NULL);
}

/* The API's connection budget and per-owner quotas have documented defaults. */
static void api_limits_and_quotas_default(void **state)
{
    struct config *config = load_ok(TLS "api: {listen: 127.0.0.1:9100, jwks: token.key, "
                                        "issuer: https://x, admins: [ops]}\n");
    assert_int_equal(config->api.max_connections, 256);
    assert_int_equal(config->api.max_connections_per_source, 32);
    assert_int_equal(config->api.request_timeout_s, 10);
    assert_int_equal(config->api.quota_groups, 1000);
    assert_int_equal(config->api.quota_hubs, 100);
    assert_int_equal(config->api.quota_blocks, 10000);
    assert_int_equal(config->api.quota_requests_per_second, 20);
    assert_int_equal(config->api.quota_request_burst, 100);
    assert_int_equal(config->api.admin_count, 1);
    assert_null(config->api.health_listen);
    config_free(config);
    config = load_ok(TLS "api: {listen: 127.0.0.1:9100, jwks: token.key, issuer: https://x,\n"
                         "      healthListen: 127.0.0.1:9101, requestTimeout: 1m,\n"
                         "      quotas: {hubs: 0, requestsPerSecond: 5}}\n");
    assert_string_equal(config->api.health_listen, "127.0.0.1:9101");
    assert_int_equal(config->api.request_timeout_s, 60);
    assert_int_equal(config->api.quota_hubs, 0);
    assert_int_equal(config->api.quota_requests_per_second, 5);
    config_free(config);
    load_fails(TLS "api: {listen: 127.0.0.1:9100, jwks: token.key, issuer: https://x,\n"
                   "      quotas: {requestsPerSecond: 0}}\n",
               "api.quotas.requestsPerSecond", "must be an integer from 1", NULL);
}

/* Operator keys from a file or an identity provider: exactly one source, a URL that is safe. */
static void api_key_sources(void **state)
{
    (void)state;
    struct config *config = load_ok(TLS "api: {listen: 127.0.0.1:9100, issuer: https://x,\n"
                                        "      authority: https://auth.example/realms/plgd}\n");
    assert_null(config->api.jwks_file);
    assert_string_equal(config->api.authority, "https://auth.example/realms/plgd");
    assert_int_equal(config->api.jwks_refresh_s, 3600);
    assert_int_equal(config->api.jwks_min_refresh_s, 30);
    assert_int_equal(config->api.jwks_timeout_s, 5);
    config_free(config);
    config = load_ok(TLS "api: {listen: 127.0.0.1:9100, issuer: https://x, jwksMinRefresh: 5s,\n"
                         "      jwksUrl: \"http://127.0.0.1:8080/keys\", jwksTimeout: 2s}\n");
    assert_string_equal(config->api.jwks_url, "http://127.0.0.1:8080/keys");
    assert_int_equal(config->api.jwks_min_refresh_s, 5);
    assert_int_equal(config->api.jwks_timeout_s, 2);
    config_free(config);
    load_fails(TLS "api: {listen: 127.0.0.1:9100, issuer: https://x}\n", "api.jwks",
               "exactly one of jwks (a file), jwksUrl and authority", NULL);
    load_fails(TLS "api: {listen: 127.0.0.1:9100, issuer: https://x, jwks: token.key,\n"
                   "      authority: https://auth.example}\n",
               "api.jwks", "exactly one of", NULL);
    load_fails(TLS "api: {listen: 127.0.0.1:9100, issuer: https://x,\n"
                   "      authority: \"http://auth.example\"}\n",
               "api.authority", "http:// only to a loopback host", NULL);
    load_fails(TLS "api: {listen: 127.0.0.1:9100, issuer: https://x,\n"
                   "      jwksUrl: \"http://127.0.0.1.evil.example/keys\"}\n",
               "api.jwksUrl", "http:// only to a loopback host", NULL);
    config = load_ok(TLS "api: {listen: 127.0.0.1:9100, issuer: https://x,\n"
                         "      authority: \"http://[::1]:8080/realms/x\"}\n");
    config_free(config);
    load_fails(TLS "api: {listen: 127.0.0.1:9100, issuer: https://x, jwksUrl: ftp://x/keys}\n",
               "api.jwksUrl", "must be an https:// URL", NULL);
}

/* cluster: the Redis connection, its names and the degrade policy (issue 11). */
static void cluster_redis_keys(void **state)
{
    (void)state;
    struct config *config = load_ok(TLS "cluster: {trustedProxies: [10.0.0.0/8]}\n");
    assert_null(config->cluster.redis);
    assert_null(config->cluster.sentinels);
    assert_string_equal(config->cluster.key_prefix, "dps:");
    assert_non_null(config->cluster.node);
    assert_int_equal(config->cluster.command_timeout_ms, 250);
    assert_int_equal(config->cluster.connect_timeout_ms, 1000);
    assert_int_equal(config->cluster.bindings_when_redis_down, CONFIG_BINDINGS_CLOSED);
    config_free(config);

    write_file("redis.pass", "s3cret\n");
    config = load_ok(TLS "cluster:\n"
                         "  redis: 127.0.0.1:6379\n"
                         "  username: dps\n"
                         "  passwordFile: redis.pass\n"
                         "  database: 3\n"
                         "  keyPrefix: \"prod:\"\n"
                         "  commandTimeout: 2s\n"
                         "  connectTimeout: 500ms\n"
                         "  node: node-a\n"
                         "  bindingsWhenRedisDown: local\n");
    assert_string_equal(config->cluster.redis, "127.0.0.1:6379");
    assert_string_equal(config->cluster.username, "dps");
    assert_string_equal(config->cluster.password, "s3cret");
    assert_int_equal(config->cluster.database, 3);
    assert_string_equal(config->cluster.key_prefix, "prod:");
    assert_int_equal(config->cluster.command_timeout_ms, 2000);
    assert_int_equal(config->cluster.connect_timeout_ms, 500);
    assert_string_equal(config->cluster.node, "node-a");
    assert_int_equal(config->cluster.bindings_when_redis_down, CONFIG_BINDINGS_LOCAL);
    config_free(config);

    config = load_ok(TLS "cluster: {redis: /run/redis/redis.sock, commandTimeout: 100}\n");
    assert_string_equal(config->cluster.redis, "/run/redis/redis.sock");
    assert_int_equal(config->cluster.command_timeout_ms, 100);
    config_free(config);

    config = load_ok(TLS "cluster: {sentinels: [\"10.0.0.1:26379\", \"[fd00::2]:26379\"],\n"
                         "          masterName: dps, password: pw}\n");
    assert_int_equal(config->cluster.sentinel_count, 2);
    assert_string_equal(config->cluster.master_name, "dps");
    assert_string_equal(config->cluster.password, "pw");
    config_free(config);

    load_fails(TLS "cluster: {redis: redis.example:6379}\n", "cluster.redis",
               "must be an IP address", NULL);
    load_fails(TLS "cluster: {redis: 127.0.0.1}\n", "cluster.redis", "HOST:PORT", NULL);
    load_fails(TLS "cluster: {sentinels: [\"10.0.0.1:26379\"]}\n", "cluster.masterName",
               "required with sentinels", NULL);
    load_fails(TLS "cluster: {redis: 127.0.0.1:6379, masterName: dps}\n", "cluster.masterName",
               "needs sentinels", NULL);
    load_fails(TLS "cluster: {redis: 127.0.0.1:6379, sentinels: [\"10.0.0.1:26379\"],\n"
                   "          masterName: dps}\n",
               "cluster.sentinels", "not both", NULL);
    load_fails(TLS "cluster: {redis: 127.0.0.1:6379, password: a, passwordFile: redis.pass}\n",
               "cluster.passwordFile", "not both", NULL);
    load_fails(TLS "cluster: {redis: 127.0.0.1:6379, passwordFile: absent.pass}\n",
               "cluster.passwordFile", "cannot read", NULL);
    load_fails(TLS "cluster: {redis: 127.0.0.1:6379, bindingsWhenRedisDown: open}\n",
               "cluster.bindingsWhenRedisDown", "closed or local", NULL);
    load_fails(TLS "cluster: {redis: 127.0.0.1:6379, commandTimeout: 0}\n",
               "cluster.commandTimeout", "must be a duration", NULL);
    load_fails(TLS "cluster: {redis: 127.0.0.1:6379, connectTimeout: 2m}\n",
               "cluster.connectTimeout", "must be a duration", NULL);
    load_fails(TLS "cluster: {redis: 127.0.0.1:6379, database: 70000}\n", "cluster.database",
               "must be an integer", NULL);
    load_fails(TLS "cluster: {redis: 127.0.0.1:6379, keyPrefix: \"a b\"}\n", "cluster.keyPrefix",
               "letters, digits", NULL);
    load_fails(TLS "cluster: {redis: 127.0.0.1:6379, node: \"x/y\"}\n", "cluster.node",
               "letters, digits", NULL);
    load_fails(TLS "cluster: {redis: 127.0.0.1:6379, replicas: 2}\n", "cluster.replicas", NULL);
}

/* Loads text expecting success, with what was logged meanwhile in logged. */
static struct config *load_ok_logged(const char *text, char *logged, size_t size)
{
    int pipe_fds[2];
    assert_int_equal(pipe2(pipe_fds, O_CLOEXEC | O_NONBLOCK), 0);
    fcntl(pipe_fds[1], F_SETPIPE_SZ, 65536);
    int saved = dup(STDERR_FILENO);
    assert_true(saved >= 0);
    assert_true(dup2(pipe_fds[1], STDERR_FILENO) >= 0);
    log_set_level(LOG_INFO);
    char err[512] = "";
    struct config *config = NULL;
    write_file("dps.yaml", text);
    int result = config_load(config_path, &config, err, sizeof(err));
    dup2(saved, STDERR_FILENO);
    close(saved);
    close(pipe_fds[1]);
    ssize_t n = read(pipe_fds[0], logged, size - 1);
    close(pipe_fds[0]);
    logged[n > 0 ? n : 0] = '\0';
    if (result != 0)
        print_error("unexpected error: %s\n", err);
    assert_int_equal(result, 0);
    return config;
}

static void assert_logged(const char *logged, const char *fragment)
{
    const char *found = strstr(logged, fragment);
    if (found == NULL)
        print_error("not logged: %s\nlog: %s\n", fragment, logged);
    assert_non_null(found);
}

/* Every hub and group of config as the API's JSON, in one text to compare. */
static char *documents_of(const struct config *config)
{
    json_t *all = json_array();
    for (size_t i = 0; i < config->hub_count; i++)
        json_array_append_new(all, model_hub_to_json(&config->hubs[i]));
    for (size_t i = 0; i < config->group_count; i++)
        json_array_append_new(all, model_group_to_json(&config->groups[i]));
    char *text = json_dumps(all, JSON_SORT_KEYS | JSON_COMPACT);
    json_decref(all);
    assert_non_null(text);
    return text;
}

#define VOCABULARY_HUB_HEAD                                                                        \
    "hubs:\n  - id: " HUB_ID "\n    owner: \"1\"\n"                                                \
    "    gateways: [\"coaps+tcp://127.0.0.1:5684\"]\n"                                             \
    "    identityCertificate: {certificate: hub-ca.pem, key: hub-ca.key}\n"
#define VOCABULARY_GROUP_HEAD "enrollmentGroups:\n  - id: " GROUP_ID "\n    owner: \"1\"\n"
#define VOCABULARY_GROUP_TAIL "    hubIds: [" HUB_ID "]\n    preSharedKey: \"0123456789abcdef\"\n"

/*
 * The file speaks the API's vocabulary; the flatter spellings of earlier
 * versions are deprecated aliases: the same model, and a warning each.
 */
static void old_and_new_vocabulary_give_the_same_model(void **state)
{
    static const char new_names[] = TLS VOCABULARY_HUB_HEAD
        "    authorization:\n"
        "      provider: {name: plgd, audience: https://hub.example}\n"
        "      ownerClaim: owner\n"
        "      deviceIdClaim: https://plgd.dev/deviceId\n"
        "    token: {key: token.key, keyId: k, issuer: https://dps.example}\n" VOCABULARY_GROUP_HEAD
        "    attestationMechanism:\n"
        "      x509:\n"
        "        certificateChain: mfg-chain.pem\n"
        "        leadCertificateName: Demo CA\n"
        "        expiredCertificateEnabled: true\n" VOCABULARY_GROUP_TAIL;
    static const char old_names[] = TLS VOCABULARY_HUB_HEAD
        "    authorizationProvider: plgd\n"
        "    token:\n"
        "      key: token.key\n"
        "      keyId: k\n"
        "      issuer: https://dps.example\n"
        "      audience: https://hub.example\n"
        "      ownerClaim: owner\n"
        "      deviceIdClaim: https://plgd.dev/deviceId\n" VOCABULARY_GROUP_HEAD
        "    attestation:\n"
        "      certificateChain: mfg-chain.pem\n"
        "      leadCertificateName: Demo CA\n"
        "      expiredCertificateEnabled: true\n" VOCABULARY_GROUP_TAIL;
    char logged[16384];
    struct config *fresh = load_ok_logged(new_names, logged, sizeof(logged));
    assert_null(strstr(logged, "deprecated"));
    char *fresh_documents = documents_of(fresh);
    struct config *old = load_ok_logged(old_names, logged, sizeof(logged));
    char *old_documents = documents_of(old);
    assert_string_equal(fresh_documents, old_documents);
    assert_string_equal(fresh->hubs[0].authorization_provider, "plgd");
    assert_string_equal(old->hubs[0].token_owner_claim, "owner");
    assert_true(old->groups[0].expired_certificate_enabled);
    static const char *const warnings[] = {
        "line=7 key=hubs[0].authorizationProvider use=hubs[0].authorization.provider.name",
        "line=12 key=hubs[0].token.audience use=hubs[0].authorization.provider.audience",
        "line=13 key=hubs[0].token.ownerClaim use=hubs[0].authorization.ownerClaim",
        "line=14 key=hubs[0].token.deviceIdClaim use=hubs[0].authorization.deviceIdClaim",
        "line=19 key=enrollmentGroups[0].attestation "
        "use=enrollmentGroups[0].attestationMechanism.x509",
    };
    for (size_t i = 0; i < sizeof(warnings) / sizeof(warnings[0]); i++)
        assert_logged(logged, warnings[i]);
    assert_non_null(strstr(logged, "level=warn msg=\"deprecated configuration key\""));
    free(fresh_documents);
    free(old_documents);
    config_free(fresh);
    config_free(old);

    /* A mixed file (some names old, some new) reads the same as well. */
    struct config *mixed = load_ok_logged(
        TLS VOCABULARY_HUB_HEAD "    authorization: {provider: {name: plgd}, ownerClaim: owner}\n"
                                "    token: {key: token.key, issuer: x, audience: https://a}\n",
        logged, sizeof(logged));
    assert_string_equal(mixed->hubs[0].token_audience, "https://a");
    assert_string_equal(mixed->hubs[0].token_owner_claim, "owner");
    config_free(mixed);
}

/* An alias beside what it stands for, or where it cannot go, stops the load at its line. */
static void deprecated_alias_conflicts_fail(void **state)
{
    load_fails(TLS VOCABULARY_HUB_HEAD "    authorizationProvider: plgd\n"
                                       "    authorization: {provider: {name: other}}\n"
                                       "    token: {key: token.key, issuer: x}\n",
               ":7: hubs[0].authorizationProvider: deprecated name of authorization.provider.name, "
               "which is also given",
               NULL);
    load_fails(TLS VOCABULARY_HUB_HEAD "    authorization: plgd\n"
                                       "    token: {key: token.key, issuer: x, ownerClaim: sub}\n",
               ":8: hubs[0].token.ownerClaim", "cannot go in the authorization given", NULL);
    load_fails(TLS HUB VOCABULARY_GROUP_HEAD
               "    attestation: {certificateChain: mfg-chain.pem}\n"
               "    attestationMechanism: {x509: {certificateChain: mfg-chain.pem}}\n"
               "    hubIds: [" HUB_ID "]\n",
               "enrollmentGroups[0].attestation: deprecated name of attestationMechanism.x509",
               NULL);
    /* Messages name what the file wrote: the deprecated key, or the document's. */
    load_fails(TLS HUB VOCABULARY_GROUP_HEAD "    attestation: {certificateChain: absent.pem}\n"
                                             "    hubIds: [" HUB_ID "]\n",
               "enrollmentGroups[0].attestation.certificateChain", NULL);
    load_fails(TLS HUB VOCABULARY_GROUP_HEAD
               "    attestationMechanism: {x509: {certificateChain: absent.pem}}\n"
               "    hubIds: [" HUB_ID "]\n",
               "enrollmentGroups[0].attestationMechanism.x509.certificateChain", NULL);
    load_fails(TLS VOCABULARY_HUB_HEAD
               "    authorization: {provider: {name: plgd}, ownerClaim: iss}\n"
               "    token: {key: token.key, issuer: x}\n",
               ":7: hubs[0].authorization.ownerClaim: must not be a registered JWT claim", NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(full_file_parses),
        cmocka_unit_test(example_configuration_loads),
        cmocka_unit_test(defaults_apply),
        cmocka_unit_test(node_without_hubs_or_groups_loads),
        cmocka_unit_test(acl_mode_defaults_to_extend),
        cmocka_unit_test(find_hub_by_id),
        cmocka_unit_test(missing_file_fails),
        cmocka_unit_test(yaml_syntax_error_has_line_and_column),
        cmocka_unit_test(second_document_fails),
        cmocka_unit_test(empty_file_needs_tls),
        cmocka_unit_test(unknown_keys_fail),
        cmocka_unit_test(duplicate_key_fails),
        cmocka_unit_test(required_keys_fail),
        cmocka_unit_test(unreadable_file_fails),
        cmocka_unit_test(invalid_uuid_fails),
        cmocka_unit_test(duplicate_ids_fail),
        cmocka_unit_test(gateways_are_checked),
        cmocka_unit_test(listen_entries_are_checked),
        cmocka_unit_test(io_backend_is_checked),
        cmocka_unit_test(numeric_ranges_are_checked),
        cmocka_unit_test(durations_are_checked),
        cmocka_unit_test(log_level_is_checked),
        cmocka_unit_test(pre_shared_key_length_is_checked),
        cmocka_unit_test(pre_shared_key_keeps_its_bytes_through_json),
        cmocka_unit_test(group_hub_ids_are_checked),
        cmocka_unit_test(acl_entries_are_checked),
        cmocka_unit_test(resources_are_checked),
        cmocka_unit_test(alias_bomb_is_bounded),
        cmocka_unit_test(log_level_names_parse),
        cmocka_unit_test(key_file_permissions_policy),
        cmocka_unit_test(api_key_permissions_are_checked),
        cmocka_unit_test(user_must_exist),
        cmocka_unit_test(group_crls_and_disabled),
        cmocka_unit_test(key_registry_is_read_and_names_are_checked),
        cmocka_unit_test(api_limits_and_quotas_default),
        cmocka_unit_test(api_key_sources),
        cmocka_unit_test(cluster_redis_keys),
        cmocka_unit_test(log_line_is_logfmt),
        cmocka_unit_test(log_level_filters),
        cmocka_unit_test(log_long_line_is_cut_to_one_line),
        cmocka_unit_test(old_and_new_vocabulary_give_the_same_model),
        cmocka_unit_test(deprecated_alias_conflicts_fail),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}

/*
 * config: reads the YAML configuration and turns it into struct config in one
 * pass, validating as it goes. The first problem found stops the load and is
 * reported as "FILE:LINE: KEY.PATH: problem". This file holds the sections
 * (listen, tls, limits, keys, api, cluster...), the validators the model
 * shares, config_load() and config_free(); the reader of the YAML document
 * and its mappings is config_yaml.c, the enrollment groups and hubs are
 * config_documents.c (control/config_internal.h is what the three share).
 *
 * A key whose value is null (empty, "~" or "null") counts as absent. Hubs are
 * read before enrollment groups, whatever their order in the file, so that a
 * group's hubIds can be checked.
 */
#include "control/config.h"
#include "control/config_internal.h"
#include "control/jwks_remote.h"
#include "crypto/keyfile.h"
#include "common/address.h"
#include "common/error.h"
#include "common/log.h"
#include "dataplane/proxy.h"
#include "store/store.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <yaml.h>

int config_duration_parse(const char *text, long *seconds)
{
    char *end;
    errno = 0;
    long value = strtol(text, &end, 10);
    long unit = 1;
    char suffix = *end;
    switch (suffix) {
    case 's':
    case '\0':
        break;
    case 'm':
        unit = 60;
        break;
    case 'h':
        unit = 3600;
        break;
    case 'd':
        unit = 86400;
        break;
    default:
        return -1;
    }
    if (text[0] < '0' || text[0] > '9' || (suffix != '\0' && end[1] != '\0') || errno != 0 ||
        value > LONG_MAX / unit)
        return -1;
    *seconds = value * unit;
    return 0;
}

bool config_uuid_valid(const char *text)
{
    static const char hex[] = "0123456789abcdefABCDEF";
    if (strlen(text) != 36)
        return false;
    for (size_t i = 0; i < 36; i++) {
        bool dash = i == 8 || i == 13 || i == 18 || i == 23;
        if (dash ? text[i] != '-' : strchr(hex, text[i]) == NULL)
            return false;
    }
    return true;
}

static int check_listen(struct parser *p, const yaml_node_t *node, const char *path, char *text)
{
    struct sockaddr_storage address;
    const char *problem = address_listen(text, &address);
    if (problem != NULL)
        return config_fail(p, node, path, "\"%s\": %s", text, problem);
    return 0;
}

const char *config_gateway_problem(const char *text)
{
    static const char scheme[] = "coaps+tcp://";
    if (strncmp(text, scheme, sizeof(scheme) - 1) != 0)
        return "must start with coaps+tcp://";
    char host[256];
    uint16_t port;
    bool is_v6;
    const char *problem =
        address_parse(text + sizeof(scheme) - 1, host, sizeof(host), &port, &is_v6);
    if (problem != NULL)
        return problem;
    unsigned char address[16];
    if (is_v6 && inet_pton(AF_INET6, host, address) != 1)
        return "not an IPv6 address";
    if (!is_v6 &&
        strspn(host, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._") !=
            strlen(host))
        return "the host is not a host name or address";
    return NULL;
}

const char *config_key_name_problem(const char *text)
{
    size_t length = strlen(text);
    if (length == 0 || length > 64)
        return "must have 1 to 64 characters";
    if (strspn(text, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") != length)
        return "may hold only letters, digits, '.', '_' and '-'";
    return NULL;
}

const char *config_claims_problem(const char *owner_claim, const char *device_id_claim,
                                  bool *device_id_claim_wrong)
{
    static const char *const registered[] = {"iss", "sub", "aud", "exp", "nbf", "iat", "jti"};
    const char *owner = owner_claim != NULL ? owner_claim : "sub";
    *device_id_claim_wrong = false;
    for (size_t i = 0; i < sizeof(registered) / sizeof(registered[0]); i++) {
        if (strcmp(owner, registered[i]) == 0 && strcmp(owner, "sub") != 0)
            return "must not be a registered JWT claim (iss, aud, exp, nbf, iat, jti)";
    }
    if (device_id_claim == NULL)
        return NULL;
    *device_id_claim_wrong = true;
    for (size_t i = 0; i < sizeof(registered) / sizeof(registered[0]); i++) {
        if (strcmp(device_id_claim, registered[i]) == 0)
            return "must not be a registered JWT claim (iss, sub, aud, exp, nbf, iat, jti)";
    }
    if (strcmp(device_id_claim, owner) == 0)
        return "must differ from the owner claim";
    return NULL;
}

static int check_key_name(struct parser *p, const yaml_node_t *node, const char *path, char *text)
{
    const char *problem = config_key_name_problem(text);
    return problem == NULL ? 0 : config_fail(p, node, path, "\"%s\": %s", text, problem);
}

/* keys: the registry of signing keys the management API's documents may name. */
static int parse_keys(struct mapping *root, struct config *config)
{
    static const char *const key_keys[] = {"name", "certificate", "key", "owners", NULL};
    struct parser *p = root->p;
    char path[KEY_MAX];
    yaml_node_t *list;
    if (config_map_sequence(root, "keys", false, true, &list, path) < 0)
        return -1;
    if (list == NULL || config_sequence_length(list) == 0)
        return 0;
    size_t n = config_sequence_length(list);
    if ((config->keys = calloc(n, sizeof(*config->keys))) == NULL)
        return config_fail(p, list, path, "out of memory");
    config->key_count = n;
    for (size_t i = 0; i < n; i++) {
        char item_path[KEY_MAX], name_path[KEY_MAX];
        struct config_key *key = &config->keys[i];
        struct mapping m;
        error_path_index(item_path, path, i);
        yaml_node_t *item = config_sequence_item(p, list, i);
        if (config_mapping_open(p, item, item_path, key_keys, &m) < 0)
            return -1;
        if (m.node == NULL)
            return config_fail(p, item, item_path, "must be a mapping");
        if (config_map_string(&m, "name", true, NULL, &key->name) < 0 ||
            check_key_name(p, config_mapping_value(&m, "name", name_path), name_path, key->name) <
                0 ||
            config_map_path(&m, "certificate", false, NULL, true, &key->cert_file) < 0 ||
            config_map_path(&m, "key", true, NULL, true, &key->key_file) < 0 ||
            config_map_string_list(&m, "owners", true, &key->owners, &key->owner_count, NULL) < 0)
            return -1;
        for (size_t j = 0; j < i; j++) {
            if (strcmp(config->keys[j].name, key->name) == 0)
                return config_fail(p, config_mapping_value(&m, "name", name_path), name_path,
                                   "\"%s\" is also keys[%zu].name", key->name, j);
        }
    }
    return 0;
}

static int parse_limits(struct mapping *root, struct config *config)
{
    static const char *const keys[] = {"maxMessageSize",
                                       "inactivityTimeout",
                                       "handshakeTimeout",
                                       "maxConnections",
                                       "maxPending",
                                       "signingRate",
                                       "signingBurst",
                                       "signingRatePerGroup",
                                       "signingBurstPerGroup",
                                       "signingRatePerSource",
                                       "signingBurstPerSource",
                                       "maxConnectionsPerSource",
                                       "connectionRatePerSource",
                                       "connectionBurstPerSource",
                                       NULL};
    struct mapping limits;
    unsigned long value;
    long seconds;
    if (config_map_mapping(root, "limits", false, keys, &limits) < 0)
        return -1;
    if (config_map_unsigned(&limits, "maxMessageSize", 1024, 1048576, 16384, &value) < 0)
        return -1;
    config->max_message_size = value;
    if (config_map_duration(&limits, "inactivityTimeout", 1, 86400, 20, &seconds) < 0)
        return -1;
    config->inactivity_timeout_s = (unsigned)seconds;
    if (config_map_duration(&limits, "handshakeTimeout", 1, 3600, 10, &seconds) < 0)
        return -1;
    config->handshake_timeout_s = (unsigned)seconds;
    if (config_map_unsigned(&limits, "maxConnections", 1, 10000000, 10000, &value) < 0)
        return -1;
    config->max_connections = (unsigned)value;
    if (config_map_unsigned(&limits, "maxPending", 1, 10000000, 4096, &value) < 0)
        return -1;
    config->max_pending = (unsigned)value;
    if (config_map_unsigned(&limits, "signingRate", 0, 10000000, 0, &value) < 0)
        return -1;
    config->signing_rate = (unsigned)value;
    if (config_map_unsigned(&limits, "signingBurst", 1, 10000000, 100, &value) < 0)
        return -1;
    config->signing_burst = (unsigned)value;
    if (config_map_unsigned(&limits, "signingRatePerGroup", 0, 10000000, 0, &value) < 0)
        return -1;
    config->signing_rate_per_group = (unsigned)value;
    if (config_map_unsigned(&limits, "signingBurstPerGroup", 1, 10000000, 100, &value) < 0)
        return -1;
    config->signing_burst_per_group = (unsigned)value;
    if (config_map_unsigned(&limits, "signingRatePerSource", 0, 10000000, 0, &value) < 0)
        return -1;
    config->signing_rate_per_source = (unsigned)value;
    if (config_map_unsigned(&limits, "signingBurstPerSource", 1, 10000000, 100, &value) < 0)
        return -1;
    config->signing_burst_per_source = (unsigned)value;
    if (config_map_unsigned(&limits, "maxConnectionsPerSource", 0, 10000000, 0, &value) < 0)
        return -1;
    config->max_connections_per_source = (unsigned)value;
    if (config_map_unsigned(&limits, "connectionRatePerSource", 0, 10000000, 0, &value) < 0)
        return -1;
    config->connection_rate_per_source = (unsigned)value;
    if (config_map_unsigned(&limits, "connectionBurstPerSource", 1, 10000000, 100, &value) < 0)
        return -1;
    config->connection_burst_per_source = (unsigned)value;
    return 0;
}

/* The management API's connection budget and the per-owner quotas (api.quotas). */
static int parse_api_limits(struct mapping *m, struct config_api *api)
{
    static const char *const quota_keys[] = {
        "enrollmentGroups", "hubs", "blocklistEntries", "requestsPerSecond", "requestBurst", NULL};
    struct mapping quotas;
    unsigned long value;
    long seconds;
    if (config_map_string_list(m, "admins", false, &api->admins, &api->admin_count, NULL) < 0 ||
        config_map_unsigned(m, "maxConnections", 1, 65536, 256, &value) < 0)
        return -1;
    api->max_connections = (unsigned)value;
    if (config_map_unsigned(m, "maxConnectionsPerSource", 1, 65536, 32, &value) < 0)
        return -1;
    api->max_connections_per_source = (unsigned)value;
    if (config_map_duration(m, "requestTimeout", 1, 3600, 10, &seconds) < 0)
        return -1;
    api->request_timeout_s = (unsigned)seconds;
    if (config_map_mapping(m, "quotas", false, quota_keys, &quotas) < 0 ||
        config_map_unsigned(&quotas, "enrollmentGroups", 0, 10000000, 1000, &value) < 0)
        return -1;
    api->quota_groups = (unsigned)value;
    if (config_map_unsigned(&quotas, "hubs", 0, 10000000, 100, &value) < 0)
        return -1;
    api->quota_hubs = (unsigned)value;
    if (config_map_unsigned(&quotas, "blocklistEntries", 0, 10000000, 10000, &value) < 0)
        return -1;
    api->quota_blocks = (unsigned)value;
    if (config_map_unsigned(&quotas, "requestsPerSecond", 1, 1000000, 20, &value) < 0)
        return -1;
    api->quota_requests_per_second = (unsigned)value;
    if (config_map_unsigned(&quotas, "requestBurst", 1, 1000000, 100, &value) < 0)
        return -1;
    api->quota_request_burst = (unsigned)value;
    return 0;
}

/* Where operator token keys come from: exactly one of jwks, jwksUrl and authority. */
static int parse_api_keys(struct mapping *m, struct config_api *api)
{
    static const char *const sources[] = {"jwks", "jwksUrl", "authority"};
    char path[KEY_MAX];
    long seconds;
    if (config_map_path(m, "jwks", false, NULL, true, &api->jwks_file) < 0 ||
        config_map_string(m, "jwksUrl", false, NULL, &api->jwks_url) < 0 ||
        config_map_string(m, "authority", false, NULL, &api->authority) < 0 ||
        config_map_path(m, "jwksCA", false, NULL, true, &api->jwks_ca_file) < 0)
        return -1;
    const char *values[] = {api->jwks_file, api->jwks_url, api->authority};
    size_t named = 0;
    for (size_t i = 0; i < 3; i++)
        named += values[i] != NULL;
    if (named != 1) {
        error_path_child(path, m->path, "jwks");
        return config_fail(m->p, m->node, path,
                           "name exactly one of jwks (a file), jwksUrl and authority");
    }
    for (size_t i = 1; i < 3; i++) {
        const char *problem = values[i] != NULL ? jwks_remote_url_problem(values[i]) : NULL;
        if (problem != NULL)
            return config_fail(m->p, config_mapping_value(m, sources[i], path), path, "%s",
                               problem);
    }
    if (config_map_duration(m, "jwksRefresh", 10, 7 * 86400, 3600, &seconds) < 0)
        return -1;
    api->jwks_refresh_s = (unsigned)seconds;
    if (config_map_duration(m, "jwksMinRefresh", 1, 3600, 30, &seconds) < 0)
        return -1;
    api->jwks_min_refresh_s = (unsigned)seconds;
    if (config_map_duration(m, "jwksTimeout", 1, 60, 5, &seconds) < 0)
        return -1;
    api->jwks_timeout_s = (unsigned)seconds;
    return 0;
}

/* The management API: absent means off. A certificate needs its key and the other way round. */
static int parse_api(struct mapping *root, struct config_api *api, enum keyfile_policy policy)
{
    static const char *const keys[] = {
        "listen",         "certificate",    "key",
        "clientCA",       "jwks",           "issuer",
        "audience",       "ownerClaim",     "healthListen",
        "admins",         "maxConnections", "maxConnectionsPerSource",
        "requestTimeout", "quotas",         "jwksUrl",
        "authority",      "jwksCA",         "jwksRefresh",
        "jwksMinRefresh", "jwksTimeout",    NULL};
    struct parser *p = root->p;
    struct mapping m;
    char path[KEY_MAX];
    if (config_map_mapping(root, "api", false, keys, &m) < 0)
        return -1;
    if (m.node == NULL)
        return 0;
    yaml_node_t *listen = config_mapping_value(&m, "listen", path);
    if (listen == NULL)
        return config_missing(&m, path);
    if (config_map_string(&m, "listen", true, NULL, &api->listen) < 0 ||
        check_listen(p, listen, path, api->listen) < 0)
        return -1;
    if (config_map_path(&m, "certificate", false, NULL, true, &api->cert_file) < 0 ||
        config_map_path(&m, "key", false, NULL, true, &api->key_file) < 0 ||
        config_map_path(&m, "clientCA", false, NULL, true, &api->client_ca_file) < 0 ||
        parse_api_keys(&m, api) < 0 ||
        config_map_string(&m, "issuer", true, NULL, &api->issuer) < 0 ||
        config_map_string(&m, "audience", false, NULL, &api->audience) < 0 ||
        config_map_string(&m, "ownerClaim", false, "sub", &api->owner_claim) < 0 ||
        parse_api_limits(&m, api) < 0)
        return -1;
    yaml_node_t *health = config_mapping_value(&m, "healthListen", path);
    if (health != NULL &&
        (config_map_string(&m, "healthListen", true, NULL, &api->health_listen) < 0 ||
         check_listen(p, health, path, api->health_listen) < 0))
        return -1;
    if ((api->cert_file == NULL) != (api->key_file == NULL)) {
        const char *absent = api->cert_file == NULL ? "certificate" : "key";
        error_path_child(path, m.path, absent);
        return config_fail(p, m.node, path, "required with %s",
                           api->cert_file == NULL ? "key" : "certificate");
    }
    if (api->client_ca_file != NULL && api->cert_file == NULL)
        return config_fail(p, config_mapping_value(&m, "clientCA", path), path,
                           "needs HTTPS (certificate and key)");
    /* The API reads its key itself: the permission policy is applied here. */
    char problem[512];
    if (api->key_file != NULL && keyfile_check(api->key_file, policy, problem, sizeof(problem)) < 0)
        return config_fail(p, config_mapping_value(&m, "key", path), path, "%s", problem);
    return 0;
}

static int parse_key_policy(struct mapping *m, struct config *config)
{
    char path[KEY_MAX];
    char *policy;
    if (config_map_string(m, "keyFilePermissions", false, "refuse", &policy) < 0)
        return -1;
    bool refuse = strcmp(policy, "refuse") == 0;
    bool warn = strcmp(policy, "warn") == 0;
    free(policy);
    if (!refuse && !warn)
        return config_fail(m->p, config_mapping_value(m, "keyFilePermissions", path), path,
                           "must be refuse or warn");
    config->key_file_permissions = refuse ? KEYFILE_REFUSE : KEYFILE_WARN;
    return 0;
}

/* The user to run as must exist now, so a typo fails at start rather than after binding. */
static int parse_user(struct mapping *m, struct config *config)
{
    char path[KEY_MAX];
    if (config_map_string(m, "user", false, NULL, &config->user) < 0)
        return -1;
    if (config->user == NULL)
        return 0;
    char buffer[4096];
    struct passwd entry;
    struct passwd *found = NULL;
    int rc = getpwnam_r(config->user, &entry, buffer, sizeof(buffer), &found);
    if (found == NULL)
        return config_fail(m->p, config_mapping_value(m, "user", path), path, "no user \"%s\"%s%s",
                           config->user, rc != 0 ? ": " : "", rc != 0 ? strerror(rc) : "");
    return 0;
}

static int check_cidr(struct parser *p, const yaml_node_t *node, const char *path, char *text)
{
    struct proxy_cidr cidr;
    if (proxy_cidr_parse(text, &cidr) != 0)
        return config_fail(p, node, path,
                           "\"%s\" is not an address or CIDR range (10.0.0.0/8, fd00::/8)", text);
    return 0;
}

/* A Redis address: numeric HOST:PORT, or (for redis only) an absolute unix socket path. */
static int check_redis_address(struct parser *p, const yaml_node_t *node, const char *path,
                               char *text)
{
    if (text[0] == '/')
        return 0;
    return check_listen(p, node, path, text);
}

static int read_password_file(struct mapping *m, struct config_cluster *cluster)
{
    char path[KEY_MAX];
    char *file = NULL;
    if (config_map_path(m, "passwordFile", false, NULL, true, &file) < 0) {
        free(file);
        return -1;
    }
    if (file == NULL)
        return 0;
    yaml_node_t *node = config_mapping_value(m, "passwordFile", path);
    if (cluster->password != NULL) {
        free(file);
        return config_fail(m->p, node, path, "give password or passwordFile, not both");
    }
    FILE *stream = fopen(file, "r");
    char line[1024];
    bool read = stream != NULL && fgets(line, sizeof(line), stream) != NULL;
    if (stream != NULL)
        fclose(stream);
    free(file);
    if (!read)
        return config_fail(m->p, node, path, "cannot read the password");
    line[strcspn(line, "\r\n")] = '\0';
    if (line[0] == '\0')
        return config_fail(m->p, node, path, "the password is empty");
    cluster->password = strdup(line);
    explicit_bzero(line, sizeof(line));
    if (cluster->password == NULL)
        return config_fail(m->p, node, path, "out of memory");
    return 0;
}

/* Names that go into Redis keys and log lines: letters, digits, '.', '_', '-', ':'. */
static bool cluster_name_valid(const char *text, size_t max)
{
    size_t length = strlen(text);
    if (length == 0 || length > max)
        return false;
    for (const char *c = text; *c != '\0'; c++) {
        if (!isalnum((unsigned char)*c) && strchr("._-:", *c) == NULL)
            return false;
    }
    return true;
}

static int parse_cluster_names(struct mapping *m, struct config_cluster *cluster)
{
    char path[KEY_MAX];
    char *policy;
    if (config_map_string(m, "keyPrefix", false, "dps:", &cluster->key_prefix) < 0 ||
        config_map_string(m, "node", false, NULL, &cluster->node) < 0 ||
        config_map_string(m, "bindingsWhenRedisDown", false, "closed", &policy) < 0)
        return -1;
    bool closed = strcmp(policy, "closed") == 0;
    bool local = strcmp(policy, "local") == 0;
    free(policy);
    if (!closed && !local)
        return config_fail(m->p, config_mapping_value(m, "bindingsWhenRedisDown", path), path,
                           "must be closed or local");
    cluster->bindings_when_redis_down = closed ? CONFIG_BINDINGS_CLOSED : CONFIG_BINDINGS_LOCAL;
    if (!cluster_name_valid(cluster->key_prefix, 64))
        return config_fail(m->p, config_mapping_value(m, "keyPrefix", path), path,
                           "at most 64 letters, digits, '.', '_', '-' or ':'");
    if (cluster->node == NULL) {
        char host[256];
        if (gethostname(host, sizeof(host)) != 0 || !cluster_name_valid(host, 64))
            snprintf(host, sizeof(host), "node");
        host[sizeof(host) - 1] = '\0';
        if ((cluster->node = strdup(host)) == NULL)
            return config_fail(m->p, NULL, "cluster.node", "out of memory");
    } else if (!cluster_name_valid(cluster->node, 64)) {
        return config_fail(m->p, config_mapping_value(m, "node", path), path,
                           "at most 64 letters, digits, '.', '_', '-' or ':'");
    }
    return 0;
}

static int parse_cluster(struct mapping *root, struct config_cluster *cluster)
{
    static const char *const keys[] = {"trustedProxies",
                                       "redis",
                                       "sentinels",
                                       "masterName",
                                       "username",
                                       "password",
                                       "passwordFile",
                                       "database",
                                       "keyPrefix",
                                       "commandTimeout",
                                       "connectTimeout",
                                       "node",
                                       "bindingsWhenRedisDown",
                                       NULL};
    struct mapping m;
    char path[KEY_MAX];
    unsigned long database;
    cluster->command_timeout_ms = 250;
    cluster->connect_timeout_ms = 1000;
    if (config_map_mapping(root, "cluster", false, keys, &m) < 0)
        return -1;
    if (m.node == NULL)
        return 0;
    if (config_map_string_list(&m, "trustedProxies", false, &cluster->trusted_proxies,
                               &cluster->trusted_proxy_count, check_cidr) < 0 ||
        config_map_string(&m, "redis", false, NULL, &cluster->redis) < 0 ||
        (cluster->redis != NULL && check_redis_address(m.p, config_mapping_value(&m, "redis", path),
                                                       path, cluster->redis) < 0) ||
        config_map_string_list(&m, "sentinels", false, &cluster->sentinels,
                               &cluster->sentinel_count, check_listen) < 0 ||
        config_map_string(&m, "masterName", false, NULL, &cluster->master_name) < 0 ||
        config_map_string(&m, "username", false, NULL, &cluster->username) < 0 ||
        config_map_string(&m, "password", false, NULL, &cluster->password) < 0 ||
        read_password_file(&m, cluster) < 0 ||
        config_map_unsigned(&m, "database", 0, 65535, 0, &database) < 0 ||
        config_map_milliseconds(&m, "commandTimeout", 1, 60000, 250, &cluster->command_timeout_ms) <
            0 ||
        config_map_milliseconds(&m, "connectTimeout", 1, 60000, 1000,
                                &cluster->connect_timeout_ms) < 0 ||
        parse_cluster_names(&m, cluster) < 0)
        return -1;
    cluster->database = (unsigned)database;
    if (cluster->redis != NULL && cluster->sentinels != NULL)
        return config_fail(m.p, config_mapping_value(&m, "sentinels", path), path,
                           "give redis or sentinels, not both");
    if (cluster->sentinels != NULL && cluster->master_name == NULL)
        return config_fail(m.p, m.node, "cluster.masterName", "required with sentinels");
    if (cluster->master_name != NULL && cluster->sentinels == NULL)
        return config_fail(m.p, config_mapping_value(&m, "masterName", path), path,
                           "needs sentinels");
    return 0;
}

static int parse_root(struct parser *p, const yaml_node_t *root, struct config *config)
{
    static const char *const keys[] = {
        "listen",  "shards",           "ioBackend", "tls",
        "dataDir", "signerThreads",    "limits",    "logLevel",
        "hubs",    "enrollmentGroups", "api",       "keyFilePermissions",
        "user",    "cluster",          "keys",      "store",
        NULL};
    static const char *const tls_keys[] = {"certificate", "key", NULL};
    struct mapping m, tls;
    char path[KEY_MAX];
    unsigned long value;
    if (config_mapping_open(p, root, "", keys, &m) < 0 || parse_key_policy(&m, config) < 0 ||
        parse_user(&m, config) < 0)
        return -1;

    if (config_mapping_value(&m, "listen", path) != NULL) {
        if (config_map_string_list(&m, "listen", true, &config->listen, &config->listen_count,
                                   check_listen) < 0)
            return -1;
    } else {
        config->listen = calloc(1, sizeof(*config->listen));
        if (config->listen == NULL || (config->listen[0] = strdup("0.0.0.0:15684")) == NULL)
            return config_fail(p, NULL, path, "out of memory");
        config->listen_count = 1;
    }

    if (config_map_unsigned(&m, "shards", 0, 256, 0, &value) < 0)
        return -1;
    config->shards = (unsigned)value;

    char *backend;
    if (config_map_string(&m, "ioBackend", false, "io_uring", &backend) < 0)
        return -1;
    bool uring = strcmp(backend, "io_uring") == 0;
    bool epoll = strcmp(backend, "epoll") == 0;
    free(backend);
    if (!uring && !epoll)
        return config_fail(p, config_mapping_value(&m, "ioBackend", path), path,
                           "must be io_uring or epoll");
    config->io_backend = uring ? CONFIG_IO_URING : CONFIG_IO_EPOLL;

    if (config_map_mapping(&m, "tls", true, tls_keys, &tls) < 0 ||
        config_map_path(&tls, "certificate", true, NULL, true, &config->tls_cert_file) < 0 ||
        config_map_path(&tls, "key", true, NULL, true, &config->tls_key_file) < 0 ||
        config_map_path(&m, "dataDir", false, "data", false, &config->data_dir) < 0)
        return -1;

    if (config_map_unsigned(&m, "signerThreads", 1, 256, 1, &value) < 0)
        return -1;
    config->signer_threads = (unsigned)value;

    static const char *const store_keys[] = {"writers", NULL};
    struct mapping store;
    if (config_map_mapping(&m, "store", false, store_keys, &store) < 0 ||
        config_map_unsigned(&store, "writers", 1, STORE_MAX_WRITERS, STORE_DEFAULT_WRITERS,
                            &value) < 0)
        return -1;
    config->store_writers = (unsigned)value;

    if (parse_limits(&m, config) < 0)
        return -1;

    enum log_level level;
    if (config_map_string(&m, "logLevel", false, "info", &config->log_level) < 0)
        return -1;
    if (log_parse_level(config->log_level, &level) < 0)
        return config_fail(p, config_mapping_value(&m, "logLevel", path), path,
                           "must be debug, info, warn or error");

    if (parse_keys(&m, config) < 0 || config_parse_items(&m, "hubs", false, config) < 0 ||
        config_parse_items(&m, "enrollmentGroups", true, config) < 0 ||
        parse_api(&m, &config->api, config->key_file_permissions) < 0 ||
        parse_cluster(&m, &config->cluster) < 0)
        return -1;
    return 0;
}

int config_load(const char *path, struct config **out, char *err, size_t err_length)
{
    FILE *file = fopen(path, "rb");
    if (file == NULL) {
        struct parser p = {.file = path, .err = err, .err_length = err_length};
        *out = NULL;
        return config_fail(&p, NULL, NULL, "cannot open: %s", strerror(errno));
    }
    int result = config_load_from(path, file, out, err, err_length);
    fclose(file);
    return result;
}

int config_load_from(const char *path, FILE *file, struct config **out, char *err,
                     size_t err_length)
{
    struct parser p = {
        .file = path, .err = err, .err_length = err_length, .json_nodes = JSON_NODES_MAX};
    *out = NULL;
    if (err != NULL && err_length > 0)
        err[0] = '\0';

    p.dir = config_folder_of(path);
    if (p.dir == NULL)
        return config_fail(&p, NULL, NULL, "cannot resolve the folder: %s", strerror(errno));
    int result = config_load_document(&p, file);
    if (result < 0) {
        free(p.dir);
        return -1;
    }

    struct config *config = calloc(1, sizeof(*config));
    if (config == NULL || (config->path = strdup(path)) == NULL) {
        result = config_fail(&p, NULL, NULL, "out of memory");
    } else {
        result = parse_root(&p, yaml_document_get_root_node(&p.doc), config);
    }
    yaml_document_delete(&p.doc);
    free(p.dir);
    if (result < 0) {
        config_free(config);
        return -1;
    }
    keyfile_set_policy(config->key_file_permissions);
    *out = config;
    return 0;
}

void config_free(struct config *config)
{
    if (config == NULL)
        return;
    free(config->path);
    config_free_strings(config->listen, config->listen_count);
    free(config->tls_cert_file);
    free(config->tls_key_file);
    free(config->data_dir);
    free(config->log_level);
    free(config->user);
    free(config->api.listen);
    free(config->api.cert_file);
    free(config->api.key_file);
    free(config->api.client_ca_file);
    free(config->api.jwks_file);
    free(config->api.jwks_url);
    free(config->api.authority);
    free(config->api.jwks_ca_file);
    free(config->api.issuer);
    free(config->api.audience);
    free(config->api.owner_claim);
    config_free_strings(config->cluster.trusted_proxies, config->cluster.trusted_proxy_count);
    free(config->cluster.redis);
    config_free_strings(config->cluster.sentinels, config->cluster.sentinel_count);
    free(config->cluster.master_name);
    free(config->cluster.username);
    if (config->cluster.password != NULL)
        explicit_bzero(config->cluster.password, strlen(config->cluster.password));
    free(config->cluster.password);
    free(config->cluster.key_prefix);
    free(config->cluster.node);
    free(config->api.health_listen);
    config_free_strings(config->api.admins, config->api.admin_count);
    for (size_t i = 0; config->keys != NULL && i < config->key_count; i++) {
        free(config->keys[i].name);
        free(config->keys[i].cert_file);
        free(config->keys[i].key_file);
        config_free_strings(config->keys[i].owners, config->keys[i].owner_count);
    }
    free(config->keys);
    for (size_t i = 0; config->hubs != NULL && i < config->hub_count; i++)
        config_hub_clear(&config->hubs[i]);
    free(config->hubs);
    for (size_t i = 0; config->groups != NULL && i < config->group_count; i++)
        config_group_clear(&config->groups[i]);
    free(config->groups);
    free(config);
}

const struct config_key *config_find_key(const struct config *config, const char *name)
{
    for (size_t i = 0; name != NULL && i < config->key_count; i++) {
        if (strcmp(config->keys[i].name, name) == 0)
            return &config->keys[i];
    }
    return NULL;
}

bool config_key_allows(const struct config_key *key, const char *owner)
{
    for (size_t i = 0; owner != NULL && i < key->owner_count; i++) {
        if (strcmp(key->owners[i], owner) == 0)
            return true;
    }
    return false;
}
/*
 * dpsd: the provisioning daemon's entry point.
 *
 * It reads the configuration (or, with --demo, creates a demo PKI and a
 * configuration that uses it), opens the store, and hands both to the
 * control plane (control/plane.c), which seeds the store with the file's
 * groups and hubs, builds the first snapshot and starts one shard per core.
 * The management API starts when configured. Then the main thread waits for
 * signals: SIGHUP reloads the file's groups, hubs and certificates, and the
 * management API's certificates, keys and operator keys (control/api.h); SIGTERM
 * or SIGINT drains (not ready, no new connections, devices in progress
 * finish) and stops.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "common/address.h"
#include "common/file.h"
#include "control/allocator.h"
#include "control/api.h"
#include "control/cluster_view.h"
#include "control/cluster_sync.h"
#include "control/config.h"
#include "common/log.h"
#include "control/plane.h"
#include "control/privileges.h"
#include "crypto/pki.h"
#include "crypto/uuid.h"
#include "store/store.h"

#define DPSD_MAX_SHARDS 256
#define DPSD_DRAIN_SECONDS 30

struct options {
    const char *config_path;
    const char *demo_dir;
    const char *listen;
    const char *api_listen;
    int shards; /* -1: as configured */
    const char *io_backend;
    const char *log_level;
    const char *redis;    /* cluster.redis */
    const char *node;     /* cluster.node */
    const char *data_dir; /* dataDir */
};

static void usage(FILE *out)
{
    fprintf(out,
            "usage: dpsd --config FILE [overrides]\n"
            "       dpsd --demo DIR [--listen HOST:PORT] [overrides]\n"
            "\n"
            "  --config FILE        run from a YAML configuration (see deploy/dpsd.example.yaml)\n"
            "  --demo DIR           create (first run) or reuse a demo PKI and configuration in\n"
            "                       DIR and serve them; DIR/pki holds the certificates\n"
            "overrides of the configuration:\n"
            "  --listen HOST:PORT   the one address to listen on\n"
            "  --api-listen HOST:PORT  the management API's address\n"
            "  --shards N           event-loop threads (0: one per core)\n"
            "  --io-backend NAME    io_uring or epoll\n"
            "  --log-level LEVEL    debug, info, warn or error\n"
            "  --redis ADDRESS      join a cluster through this Redis (HOST:PORT or socket path)\n"
            "  --node NAME          this node's name in the cluster (default the host name)\n"
            "  --data-dir DIR       the store's folder (a second demo node needs its own)\n"
            "  --version            print dpsd's version, the OpenSSL and the malloc it runs, then "
            "exit\n");
}

/* Writes DIR/dpsd.yaml for the demo PKI unless it exists. 0 or -1. */
static int demo_write_config(const char *dir, const char *path)
{
    if (access(path, F_OK) == 0) {
        return 0;
    }
    char hub_id[37], group_id[37];
    struct dps_uuid hub_uuid, group_uuid;
    if (uuid_random(&hub_uuid) != 0 || uuid_random(&group_uuid) != 0) {
        fprintf(stderr, "dpsd: cannot generate the demo's ids (no randomness)\n");
        return -1;
    }
    uuid_format(&hub_uuid, hub_id);
    uuid_format(&group_uuid, group_id);
    FILE *out = fopen(path, "wx");
    if (out == NULL) {
        fprintf(stderr, "dpsd: cannot create %s: %s\n", path, strerror(errno));
        return -1;
    }
    fprintf(out,
            "# Demo configuration written by `dpsd --demo %s`; edit freely, it is kept.\n"
            "listen: [\"0.0.0.0:15684\"]\n"
            "shards: 0\n"
            "ioBackend: io_uring\n"
            "tls:\n"
            "  certificate: pki/dps-server.pem\n"
            "  key: pki/dps-server.key\n"
            "dataDir: data\n"
            "logLevel: info\n"
            "# The management API, plain HTTP on loopback; operator token in pki/operator.token\n"
            "# (owner \"1\", an administrator: it sees the node's figures in dpsctl status).\n"
            "api:\n"
            "  listen: 127.0.0.1:9100\n"
            "  jwks: pki/operator.jwks.json\n"
            "  issuer: %s\n"
            "  audience: %s\n"
            "  admins: [\"1\"]\n"
            "  quotas: {enrollmentGroups: 1000, hubs: 100, blocklistEntries: 10000,\n"
            "           requestsPerSecond: 20, requestBurst: 100}\n"
            "# Keys hubs made through the API may use, by name, and the owners allowed to.\n"
            "keys:\n"
            "  - name: demo-hub-ca\n"
            "    certificate: pki/hub-ca.pem\n"
            "    key: pki/hub-ca.key\n"
            "    owners: [\"1\"]\n"
            "  - name: demo-token\n"
            "    key: pki/token.key\n"
            "    owners: [\"1\"]\n"
            "hubs:\n"
            "  - id: %s\n"
            "    owner: \"1\"\n"
            "    name: demo hub\n"
            "    gateways: [\"coaps+tcp://127.0.0.1:5684\"]\n"
            "    authorization:\n"
            "      provider: {name: plgd}\n"
            "      ownerClaim: sub\n"
            "      deviceIdClaim: https://plgd.dev/deviceId\n"
            "    identityCertificate:\n"
            "      keyName: demo-hub-ca\n"
            "      validity: 8760h\n"
            "    token:\n"
            "      keyName: demo-token\n"
            "      keyId: demo\n"
            "      issuer: https://dps.demo.local\n"
            "      lifetime: 8760h\n"
            "enrollmentGroups:\n"
            "  - id: %s\n"
            "    owner: \"1\"\n"
            "    name: demo devices\n"
            "    attestationMechanism:\n"
            "      x509:\n"
            "        certificateChain: pki/mfg-chain.pem\n"
            "        leadCertificateName: Demo Manufacturer Intermediate CA\n"
            "        expiredCertificateEnabled: false\n"
            "    hubIds: [%s]\n"
            "    resources:\n"
            "      - href: /light/1\n"
            "        content: {state: false, power: 10}\n",
            dir, PKI_OPERATOR_ISSUER, PKI_OPERATOR_AUDIENCE, hub_id, group_id, hub_id);
    if (fclose(out) != 0) {
        fprintf(stderr, "dpsd: cannot write %s: %s\n", path, strerror(errno));
        return -1;
    }
    return 0;
}

static int demo_prepare(const char *dir, char *config_path, size_t config_path_length)
{
    char pki_dir[PATH_MAX], err[512];
    int pki_length = snprintf(pki_dir, sizeof(pki_dir), "%s/pki", dir);
    int config_length = snprintf(config_path, config_path_length, "%s/dpsd.yaml", dir);
    if (pki_length < 0 || (size_t)pki_length >= sizeof(pki_dir) || config_length < 0 ||
        (size_t)config_length >= config_path_length) {
        fprintf(stderr, "dpsd: --demo: the folder's name is too long for its files' paths\n");
        return -1;
    }
    if (file_private_dir(dir, err, sizeof(err)) != 0) {
        fprintf(stderr, "dpsd: --demo: %s\n", err);
        return -1;
    }
    if (pki_generate(pki_dir, 10, err, sizeof(err)) != 0) {
        fprintf(stderr, "dpsd: demo PKI in %s: %s\n", pki_dir, err);
        return -1;
    }
    return demo_write_config(dir, config_path);
}

/*
 * The folders of the files that decide what dpsd trusts and signs with
 * (private keys, the operator JWKS, the API's client CA) must not be
 * writable by group or others: they could swap a file between two reads.
 * 0, or -1 after naming the folder and the fix.
 */
static int check_key_folders(const struct config *config)
{
    const char *files[8];
    size_t count = 0;
    files[count++] = config->tls_key_file;
    files[count++] = config->api.key_file;
    files[count++] = config->api.jwks_file;
    files[count++] = config->api.jwks_ca_file;
    files[count++] = config->api.client_ca_file;
    for (size_t i = 0; i < config->hub_count; i++) {
        const char *hub_files[] = {config->hubs[i].ca_key_file, config->hubs[i].token_key_file};
        for (size_t f = 0; f < 2; f++) {
            char err[512];
            if (hub_files[f] != NULL && file_check_dir_of(hub_files[f], err, sizeof(err)) != 0) {
                fprintf(stderr, "dpsd: hubs[%zu]: %s\n", i, err);
                return -1;
            }
        }
    }
    for (size_t i = 0; i < config->key_count; i++) {
        char err[512];
        if (file_check_dir_of(config->keys[i].key_file, err, sizeof(err)) != 0) {
            fprintf(stderr, "dpsd: keys[%zu]: %s\n", i, err);
            return -1;
        }
    }
    for (size_t i = 0; i < count; i++) {
        char err[512];
        if (files[i] != NULL && file_check_dir_of(files[i], err, sizeof(err)) != 0) {
            fprintf(stderr, "dpsd: %s\n", err);
            return -1;
        }
    }
    return 0;
}

/*
 * An address given on the command line, checked as the configuration file's are
 * (common/address.h), so a bad one stops dpsd with the same reason. 0, or -1 after saying so.
 */
static int check_address_option(const char *option, const char *text)
{
    struct sockaddr_storage address;
    const char *problem = address_listen(text, &address);
    if (problem == NULL)
        return 0;
    fprintf(stderr, "dpsd: %s: \"%s\": %s\n", option, text, problem);
    return -1;
}

/* Replaces the configured listen addresses with one. */
static int override_listen(struct config *config, const char *address)
{
    char *copy = strdup(address);
    char **list = malloc(sizeof(*list));
    if (copy == NULL || list == NULL) {
        free(copy);
        free(list);
        return -1;
    }
    for (size_t i = 0; i < config->listen_count; i++) {
        free(config->listen[i]);
    }
    free(config->listen);
    list[0] = copy;
    config->listen = list;
    config->listen_count = 1;
    return 0;
}

static void free_string_list(char **strings, size_t count)
{
    for (size_t i = 0; i < count; i++)
        free(strings[i]);
    free(strings);
}

/* Replaces *field with a copy of value. 0 or -1. */
static int override_string(char **field, const char *value)
{
    char *copy = strdup(value);
    if (copy == NULL)
        return -1;
    free(*field);
    *field = copy;
    return 0;
}

/* --redis, --node and --data-dir: what a second demo node on the same PKI needs. */
static int apply_cluster_overrides(struct config *config, const struct options *options)
{
    struct config_cluster *cluster = &config->cluster;
    if (options->data_dir != NULL && override_string(&config->data_dir, options->data_dir) != 0)
        return -1;
    if (options->redis != NULL) {
        if ((options->redis[0] != '/' && check_address_option("--redis", options->redis) != 0) ||
            override_string(&cluster->redis, options->redis) != 0)
            return -1;
        free_string_list(cluster->sentinels, cluster->sentinel_count);
        cluster->sentinels = NULL;
        cluster->sentinel_count = 0;
        if (cluster->key_prefix == NULL && override_string(&cluster->key_prefix, "dps:") != 0)
            return -1;
    }
    if (options->node != NULL) {
        size_t length = strlen(options->node);
        if (length == 0 || length > 64 ||
            strspn(options->node, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                  "0123456789._-:") != length) {
            fprintf(stderr, "dpsd: --node: at most 64 letters, digits, '.', '_', '-' or ':'\n");
            return -1;
        }
        if (override_string(&cluster->node, options->node) != 0)
            return -1;
    }
    if (cluster->node == NULL) {
        char host[256] = "node";
        if (gethostname(host, sizeof(host)) != 0)
            snprintf(host, sizeof(host), "node");
        host[sizeof(host) - 1] = '\0';
        if (override_string(&cluster->node, host) != 0)
            return -1;
    }
    return 0;
}

static int apply_overrides(struct config *config, const struct options *options)
{
    if (options->listen != NULL && (check_address_option("--listen", options->listen) != 0 ||
                                    override_listen(config, options->listen) != 0)) {
        return -1;
    }
    if (options->api_listen != NULL) {
        if (config->api.listen == NULL) {
            fprintf(stderr, "dpsd: --api-listen needs an api section in the configuration\n");
            return -1;
        }
        if (check_address_option("--api-listen", options->api_listen) != 0 ||
            override_string(&config->api.listen, options->api_listen) != 0)
            return -1;
    }
    if (options->shards >= 0) {
        config->shards = (unsigned)options->shards;
    }
    if (options->io_backend != NULL) {
        if (strcmp(options->io_backend, "io_uring") == 0) {
            config->io_backend = CONFIG_IO_URING;
        } else if (strcmp(options->io_backend, "epoll") == 0) {
            config->io_backend = CONFIG_IO_EPOLL;
        } else {
            fprintf(stderr, "dpsd: --io-backend must be io_uring or epoll\n");
            return -1;
        }
    }
    if (options->log_level != NULL) {
        free(config->log_level);
        config->log_level = strdup(options->log_level);
    }
    return apply_cluster_overrides(config, options);
}

/*
 * SIGHUP for the management API: its configuration, read from the same open file as the data
 * plane's (one version of the file for both), with the same command-line overrides, so
 * --api-listen still wins, handed to the API (control/api.h: what it applies, what needs a
 * restart). Takes fresh. Failures are logged; the API in force goes on.
 */
static void reload_api(struct api *api, struct config *fresh, const char *config_path,
                       const struct options *options)
{
    char err[1024];
    if (apply_overrides(fresh, options) != 0 || check_key_folders(fresh) != 0) {
        config_free(fresh);
        log_msg(LOG_ERROR, "api reload failed", "config=%s error=\"see the line above\"",
                config_path);
        return;
    }
    if (api_reload(api, fresh, err, sizeof(err)) != 0)
        log_msg(LOG_ERROR, "api reload failed", "config=%s error=\"%s\"", config_path, err);
}

/*
 * SIGHUP: the configuration file opened once and read for the data plane and, rewound, for the
 * API, so both take the same version even while a tool replaces the file (an editor's or a
 * deployment's rename): a reload never pairs one version's groups with another's API keys.
 */
static void reload(struct plane *plane, struct api *api, const char *config_path,
                   const struct options *options)
{
    char err[1024];
    struct config *for_plane = NULL, *for_api = NULL;
    FILE *file = fopen(config_path, "rb");
    int rc = PLANE_INVALID;
    if (file == NULL) {
        snprintf(err, sizeof(err), "cannot open: %s", strerror(errno));
    } else if (config_load_from(config_path, file, &for_plane, err, sizeof(err)) == 0 &&
               api != NULL &&
               (fseek(file, 0, SEEK_SET) != 0 ||
                config_load_from(config_path, file, &for_api, err, sizeof(err)) != 0)) {
        /* The same bytes parsed once already: only the system can fail here. */
        config_free(for_plane);
        for_plane = NULL;
    }
    if (file != NULL)
        fclose(file);
    if (for_plane != NULL) {
        size_t groups = for_plane->group_count, hubs = for_plane->hub_count;
        rc = plane_reload(plane, for_plane, err, sizeof(err));
        if (rc == PLANE_OK)
            log_msg(LOG_INFO, "reloaded", "config=%s groups=%zu hubs=%zu", config_path, groups,
                    hubs);
    }
    if (rc != PLANE_OK)
        log_msg(LOG_ERROR, "reload failed", "config=%s error=\"%s\"", config_path, err);
    if (for_api != NULL)
        reload_api(api, for_api, config_path, options);
}

static int parse_options(int argc, char **argv, struct options *options)
{
    static const struct option long_options[] = {
        {"config", required_argument, NULL, 'c'},
        {"demo", required_argument, NULL, 'd'},
        {"listen", required_argument, NULL, 'l'},
        {"api-listen", required_argument, NULL, 'a'},
        {"shards", required_argument, NULL, 's'},
        {"io-backend", required_argument, NULL, 'b'},
        {"log-level", required_argument, NULL, 'v'},
        {"redis", required_argument, NULL, 'r'},
        {"node", required_argument, NULL, 'n'},
        {"data-dir", required_argument, NULL, 'D'},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'}, /* the OpenSSL and malloc that run, too */
        {NULL, 0, NULL, 0},
    };
    *options = (struct options){.shards = -1};
    int c;
    while ((c = getopt_long(argc, argv, "c:d:h", long_options, NULL)) != -1) {
        switch (c) {
        case 'c':
            options->config_path = optarg;
            break;
        case 'd':
            options->demo_dir = optarg;
            break;
        case 'l':
            options->listen = optarg;
            break;
        case 'a':
            options->api_listen = optarg;
            break;
        case 's': {
            char *end;
            errno = 0;
            long shards = strtol(optarg, &end, 10);
            if (end == optarg || *end != '\0' || errno != 0 || shards < 0 ||
                shards > DPSD_MAX_SHARDS) {
                fprintf(stderr, "dpsd: --shards must be 0..%d\n", DPSD_MAX_SHARDS);
                return -1;
            }
            options->shards = (int)shards;
            break;
        }
        case 'b':
            options->io_backend = optarg;
            break;
        case 'v':
            options->log_level = optarg;
            break;
        case 'r':
            options->redis = optarg;
            break;
        case 'n':
            options->node = optarg;
            break;
        case 'D':
            options->data_dir = optarg;
            break;
        case 'h':
            usage(stdout);
            exit(0);
        case 'V':
            /* The libraries that run, not the headers built against: a bundled build names 3.5. */
            printf("dpsd %s\n%s\nallocator %s\n", DPS_VERSION, OpenSSL_version(OPENSSL_VERSION),
                   allocator_running());
            exit(0);
        default:
            usage(stderr);
            return -1;
        }
    }
    if (optind != argc || (options->config_path == NULL) == (options->demo_dir == NULL)) {
        usage(stderr);
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    /* What dpsd creates (the store's folder and files, the demo) is its own alone. */
    umask(077);
    struct options options;
    if (parse_options(argc, argv, &options) != 0) {
        return 2;
    }
    char demo_config[PATH_MAX];
    const char *config_path = options.config_path;
    if (options.demo_dir != NULL) {
        if (demo_prepare(options.demo_dir, demo_config, sizeof(demo_config)) != 0) {
            return 1;
        }
        config_path = demo_config;
    }
    char err[1024];
    struct config *config;
    if (config_load(config_path, &config, err, sizeof(err)) != 0) {
        fprintf(stderr, "dpsd: %s\n", err);
        return 1;
    }
    if (apply_overrides(config, &options) != 0 || check_key_folders(config) != 0) {
        config_free(config);
        return 1;
    }
    enum log_level level = LOG_INFO;
    if (log_parse_level(config->log_level != NULL ? config->log_level : "info", &level) != 0) {
        fprintf(stderr, "dpsd: unknown log level %s\n", config->log_level);
        config_free(config);
        return 1;
    }
    log_set_level(level);

    /* Signals are taken synchronously by the main thread; every other thread blocks them. */
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGINT);
    sigaddset(&signals, SIGTERM);
    sigaddset(&signals, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &signals, NULL);
    signal(SIGPIPE, SIG_IGN);
    /* A file-size limit must give the store a write error, not kill the daemon. */
    signal(SIGXFSZ, SIG_IGN);

    unsigned shard_count =
        config->shards != 0 ? config->shards : (unsigned)sysconf(_SC_NPROCESSORS_ONLN);
    if (shard_count == 0 || shard_count > DPSD_MAX_SHARDS) {
        shard_count = 1;
    }
    struct store *store =
        store_open(config->data_dir, 65536, config->store_writers, err, sizeof(err));
    if (store == NULL) {
        fprintf(stderr, "dpsd: store %s: %s\n", config->data_dir, err);
        config_free(config);
        return 1;
    }
    /* The plane owns the settings and the store from here on. */
    struct plane *plane = plane_create(config, store, err, sizeof(err));
    if (plane == NULL) {
        fprintf(stderr, "dpsd: %s: %s\n", config_path, err);
        return 1;
    }
    const struct config *settings = plane_settings(plane);
    struct api *api = NULL;
    struct cluster_view *view = NULL;
    struct cluster_sync *sync = NULL;
    int status = 1;
    if (settings->api.listen != NULL && (api = api_bind(settings, err, sizeof(err))) == NULL) {
        fprintf(stderr, "dpsd: management API: %s\n", err);
        goto out;
    }
    if (plane_start(plane, shard_count, err, sizeof(err)) != 0) {
        fprintf(stderr, "dpsd: %s\n", err);
        goto out;
    }
    if (privileges_drop(settings, err, sizeof(err)) != 0) {
        fprintf(stderr, "dpsd: %s\n", err);
        goto out;
    }
    if (settings->cluster.redis != NULL || settings->cluster.sentinel_count > 0) {
        /* Groups, hubs and blocks shared by the cluster; /readyz waits for the catch-up. */
        sync = cluster_sync_start(plane, &settings->cluster, err, sizeof(err));
        if (sync == NULL) {
            fprintf(stderr, "dpsd: cluster configuration: %s\n", err);
            goto out;
        }
    }
    if (api != NULL && api_start(api, plane, err, sizeof(err)) != 0) {
        fprintf(stderr, "dpsd: management API: %s\n", err);
        goto out;
    }
    view = cluster_view_start(plane, DPS_VERSION, err, sizeof(err));
    if (view == NULL && err[0] != '\0') {
        fprintf(stderr, "dpsd: %s\n", err);
        goto out;
    }
    log_msg(LOG_INFO, "ready",
            "listen=%s shards=%u backend=%s api=%s config=%s openssl=\"%s\" allocator=\"%s\"",
            settings->listen[0], shard_count,
            settings->io_backend == CONFIG_IO_EPOLL ? "epoll" : "io_uring",
            settings->api.listen != NULL ? settings->api.listen : "off", config_path,
            OpenSSL_version(OPENSSL_VERSION), allocator_running());
    if (options.demo_dir != NULL && settings->api.listen != NULL) {
        /* The quickstart's next step: how to reach the management API as the demo operator. */
        log_msg(LOG_INFO, "demo operator",
                "token_file=%s/pki/operator.token try=\"DPS_TOKEN_FILE=%s/pki/operator.token "
                "dpsctl --api http://%s status\"",
                options.demo_dir, options.demo_dir, settings->api.listen);
    }
    for (;;) {
        int signal_number = 0;
        sigwait(&signals, &signal_number);
        if (signal_number == SIGHUP) {
            reload(plane, api, config_path, &options);
            continue;
        }
        log_msg(LOG_INFO, "draining", "signal=%d", signal_number);
        break;
    }
    /* Not ready, no new connections, devices in progress finish; then stop. */
    plane_drain(plane, DPSD_DRAIN_SECONDS);
    status = 0;
out:
    cluster_view_stop(view);
    api_stop(api);
    cluster_sync_stop(sync);
    plane_destroy(plane);
    log_msg(LOG_INFO, "stopped", "status=%d", status);
    return status;
}

/*
 * domain: the model the whole program works with, as types only: the node's
 * settings, its enrollment groups and hubs. The configuration file
 * (control/config.c) and the management API's documents (control/model.c)
 * fill these structures; the data plane, the signer and attestation only read
 * them, inside an immutable snapshot (dataplane/snapshot.h). Nothing here
 * drags a layer along: this header includes only the C library.
 */
#ifndef DPS_COMMON_DOMAIN_H
#define DPS_COMMON_DOMAIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* How a private key file's permissions are judged (crypto/keyfile.h). */
enum keyfile_policy {
    KEYFILE_REFUSE, /* group/world permissions are an error (the default) */
    KEYFILE_WARN,   /* they are logged as a warning */
};

enum config_io_backend {
    CONFIG_IO_URING,
    CONFIG_IO_EPOLL,
};

/* An enrollment group's pre-shared key: exactly this many bytes, as given. */
#define CONFIG_PSK_LENGTH 16

enum config_acl_mode {
    CONFIG_ACL_DEFAULT, /* the reference's default list only */
    CONFIG_ACL_REPLACE, /* acl_json replaces the default list */
    CONFIG_ACL_EXTEND,  /* acl_json entries follow the default list */
};

/*
 * A signing key the node's administrator registered under a name (keys: in
 * the file), with the owners whose hubs may use it. Documents from the
 * management API name keys only this way: they never name a file.
 */
struct config_key {
    char *name;      /* letters, digits, '.', '_', '-'; at most 64 */
    char *cert_file; /* its certificate chain (CA first), needed for identityCertificate */
    char *key_file;
    char **owners; /* at least one */
    size_t owner_count;
};

struct config_hub {
    char *id; /* hubId: a UUID string, the "sid" sent to devices */
    char *
        record_id; /* the API's record id when it differs from id (hubs the API created), or NULL */
    char *owner;   /* optional in the file; the API scopes hubs by it */
    char *name;    /* optional, informative */
    char **gateways; /* coaps+tcp://host:port, at least one */
    size_t gateway_count;
    char *authorization_provider; /* "apn" sent to devices */
    char *ca_cert_file;           /* identity CA chain: CA first, root last */
    char *ca_key_file;
    /*
     * Or a registered key by name (identityCertificate.keyName,
     * token.keyName): the files above are then filled from the key registry
     * when a snapshot is built, and never shown or stored.
     */
    char *ca_key_name;
    char *token_key_name;
    long certificate_validity_s; /* identity certificate lifetime, default 1 year */
    char *token_key_file;        /* token signing key (EC P-256 -> ES256, RSA -> RS256) */
    char *token_key_id;          /* optional JWT "kid" */
    char *token_issuer;          /* "iss" */
    char *token_audience;        /* optional "aud" */
    char *token_owner_claim;     /* claim name carrying the owner, default "sub" */
    char *token_device_id_claim; /* claim name carrying the device id, default none (NULL) */
    long token_lifetime_s;       /* default 1 year */
    /*
     * The reference's hub members this node keeps but does not use, as a JSON
     * object {"certificateAuthority": {...}, "provider": {"clientId", ...}},
     * or NULL (control/model.h).
     */
    char *reference_json;
};

struct config_group {
    char *id; /* UUID string */
    char *owner;
    char *name;
    char *ca_chain_file; /* manufacturer CA chain: first CA first, root last */
    /*
     * Or the chain itself (from the API); used when set. A published
     * snapshot also holds here the bytes it read from ca_chain_file, so every
     * shard builds from what the control plane checked (the file stays the
     * group's documented source).
     */
    char *ca_chain_pem;
    char *lead_certificate_name; /* optional, informative (matching is by issuer) */
    bool expired_certificate_enabled;
    char **hub_ids; /* ordered, each names a config_hub */
    size_t hub_count;
    bool has_psk;
    uint8_t psk[CONFIG_PSK_LENGTH]; /* the key's bytes, never cut or padded */
    enum config_acl_mode acl_mode;
    char *acl_json;       /* JSON array of ACEs, or NULL */
    char *resources_json; /* JSON array of {"href","content"}, or NULL */
    /*
     * CRLs of the manufacturer CAs: each an absolute file path or PEM text
     * (starting "-----BEGIN"). Read when the attestation objects are built,
     * so again at every configuration change (SIGHUP, API).
     */
    char **crls;
    size_t crl_count;
    char **crl_pems; /* in a published snapshot: each entry's text, files read once; else NULL */
    bool disabled;   /* devices of the group are refused at the handshake */
};

/* The management API (control/api.h); off when listen is NULL. */
struct config_api {
    char *listen;    /* HOST:PORT */
    char *cert_file; /* HTTPS server certificate (then chain); NULL: plain HTTP, loopback only */
    char *key_file;
    char *client_ca_file; /* optional: require client certificates issued by this CA */
    char *jwks_file;      /* JWKS (RFC 7517) with the keys that sign operator tokens, or NULL */
    char *issuer;         /* required "iss" of operator tokens */
    char *audience;       /* required "aud" of operator tokens, when set */
    char *owner_claim;    /* claim naming the caller's owner, default "sub" */
    char *health_listen;  /* optional HOST:PORT serving only /healthz, /readyz, /metrics */
    char **admins;        /* owners whose tokens see node-wide status */
    size_t admin_count;
    unsigned max_connections;            /* default 256 */
    unsigned max_connections_per_source; /* default 32 */
    unsigned request_timeout_s;          /* a whole request, headers and body; default 10 */
    /* Per owner (api.quotas); 0 for a count means no limit. */
    unsigned quota_groups;              /* enrollment groups, default 1000 */
    unsigned quota_hubs;                /* hubs, default 100 */
    unsigned quota_blocks;              /* blocklist entries, default 10000 */
    unsigned quota_requests_per_second; /* default 20 */
    unsigned quota_request_burst;       /* default 100 */

    /* Without jwks_file: an identity provider's keys, fetched (control/jwks_remote.h). */
    char *jwks_url;              /* the JWKS itself, or NULL */
    char *authority;             /* or an OIDC authority whose discovery names it */
    char *jwks_ca_file;          /* CAs for the provider's HTTPS; NULL: the system's */
    unsigned jwks_refresh_s;     /* periodic refresh, default 3600 */
    unsigned jwks_min_refresh_s; /* at most one fetch per this interval, default 30 */
    unsigned jwks_timeout_s;     /* one request to the provider, default 5 */
};

/* What a node does with a new device-id binding while Redis is unreachable. */
enum config_bindings_policy {
    CONFIG_BINDINGS_CLOSED, /* refuse with 5.03 and Max-Age: the device retries (default) */
    CONFIG_BINDINGS_LOCAL,  /* bind in the node's store alone; reconciled at the next re-seed */
};

/* Running as one node of a cluster (README "Running a cluster"). */
struct config_cluster {
    /*
     * CIDRs of the L4 balancers: a connection from one of them must start
     * with a PROXY protocol header (v1 or v2) naming the device's address.
     * Read at start (a change needs a restart, like listen addresses).
     */
    char **trusted_proxies;
    size_t trusted_proxy_count;
    /*
     * The cluster's Redis (store/redis.h): redis (numeric HOST:PORT or a unix
     * socket path) or sentinels with master_name; neither means a single node
     * without Redis. Read at start.
     */
    char *redis;
    char **sentinels; /* HOST:PORT, numeric */
    size_t sentinel_count;
    char *master_name;
    char *username; /* ACL user, or NULL */
    char *password; /* the value, or the contents of passwordFile (one line), or NULL */
    unsigned database;
    char *key_prefix;            /* default "dps:" */
    unsigned command_timeout_ms; /* default 250 */
    unsigned connect_timeout_ms; /* default 1000 */
    char *node;                  /* this node's name, default the host name */
    enum config_bindings_policy bindings_when_redis_down;
};

struct config {
    char *path;    /* the file it was read from */
    char **listen; /* HOST:PORT, at least one; default "0.0.0.0:15684" */
    size_t listen_count;
    unsigned shards; /* 0 in the file means one per online core */
    enum config_io_backend io_backend;
    char *tls_cert_file; /* server certificate, then its chain */
    char *tls_key_file;
    char *data_dir;                /* RocksDB folder */
    unsigned store_writers;        /* store.writers: store writer threads, default 16 */
    unsigned signer_threads;       /* default 1 */
    size_t max_message_size;       /* CoAP frame limit, default 16384 */
    unsigned inactivity_timeout_s; /* default 20 */
    unsigned handshake_timeout_s;  /* default 10 */
    unsigned max_connections;      /* per shard, default 10000 */
    unsigned max_pending;          /* requests waiting for workers, per shard, default 4096 */
    /* Signing steps per second, node-wide (cluster-wide in a cluster); 0 (default): no limit. */
    unsigned signing_rate;
    unsigned signing_burst; /* signing steps allowed at once above the rate, default 100 */
    /* The same for each enrollment group's devices; 0 (default): no limit. */
    unsigned signing_rate_per_group;
    unsigned signing_burst_per_group; /* default 100 */
    /* The same for each source address (the device's, PROXY's behind a balancer), node-wide
     * (cluster-wide in a cluster); 0 (default): no limit. */
    unsigned signing_rate_per_source;
    unsigned signing_burst_per_source;    /* default 100 */
    unsigned max_connections_per_source;  /* per shard; 0 (default): no limit */
    unsigned connection_rate_per_source;  /* new connections/s per source per shard; 0: none */
    unsigned connection_burst_per_source; /* default 100 */
    char *log_level;                      /* "debug", "info", "warn", "error"; default "info" */
    struct config_hub *hubs;
    size_t hub_count;
    struct config_group *groups;
    size_t group_count;
    struct config_key *keys; /* the key registry */
    size_t key_count;
    struct config_api api;
    struct config_cluster cluster;
    enum keyfile_policy key_file_permissions; /* keyFilePermissions, default refuse */
    char *user; /* switch to this user after binding the listeners; NULL: stay */
};

/* The hub with this id (case-insensitive), or NULL. */
const struct config_hub *config_find_hub(const struct config *config, const char *hub_id);

#endif

/*
 * jwks_remote: keeps the keys that sign operator tokens current from an
 * identity provider (control/auth.h): a JWKS URL, or an OIDC authority whose
 * discovery document (AUTHORITY/.well-known/openid-configuration) names the
 * JWKS in "jwks_uri", as the reference plgd DPS finds its keys.
 *
 * One thread fetches: at start, every refresh period, and when a token names
 * a key id nobody knows (the provider rotated its keys), but at most once per
 * minimum interval whatever the tokens say, so a flood of made-up key ids
 * cannot make us hammer the provider. A failed fetch (provider down, bad
 * document) changes nothing: the last keys that installed stay in use, and
 * the next attempt comes a minimum interval later.
 *
 * Fetches run the curl tool in a child process, bounded by the request
 * timeout. Not libcurl: Debian's libcurl, either flavour, loads the system
 * libcrypto (the GnuTLS one through libssh2), which dpsd must never map
 * beside a bundled OpenSSL (DESIGN.md); and the process that holds CA keys
 * never parses a provider's TLS and HTTP.
 */
#ifndef DPS_JWKS_REMOTE_H
#define DPS_JWKS_REMOTE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct jwks_remote_settings {
    const char *authority;  /* OIDC discovery base URL, or NULL */
    const char *jwks_url;   /* the JWKS itself, or NULL: exactly one of the two */
    const char *ca_file;    /* CAs trusted for the provider's HTTPS; NULL: the system's */
    unsigned refresh_s;     /* periodic refresh */
    unsigned min_refresh_s; /* at most one fetch per this many seconds */
    unsigned timeout_s;     /* one HTTP request, connection included */
};

/*
 * Installs a fetched JWKS document (not NUL-terminated). The number of keys
 * now held (at least 1), or -1 with the reason in err: the keys installed
 * before stay.
 */
typedef int (*jwks_remote_install)(void *arg, const char *json, size_t length, char *err,
                                   size_t err_length);

/*
 * NULL when url may name a provider: https://, or http:// to a loopback
 * host (127.0.0.0/8, [::1], localhost), since keys fetched in the clear from
 * elsewhere could be anyone's. Else what is wrong.
 */
const char *jwks_remote_url_problem(const char *url);

/*
 * Starts the fetching thread and waits for the first fetch (bounded by the
 * timeouts). A provider that cannot be reached is not an error: it is logged,
 * no token is accepted until a fetch succeeds, and fetches go on. NULL with
 * err only for what cannot work (settings, memory, threads).
 */
struct jwks_remote *jwks_remote_start(const struct jwks_remote_settings *settings,
                                      jwks_remote_install install, void *arg, char *err,
                                      size_t err_length);

/*
 * A token named an unknown key id: fetches now unless a fetch started less
 * than the minimum interval ago, and waits for it (bounded by the timeouts).
 * True when a new key set was installed meanwhile: check the token again.
 */
bool jwks_remote_refresh(struct jwks_remote *remote);

void jwks_remote_stop(struct jwks_remote *remote);

/*
 * The JWKS URL an OIDC discovery document (not NUL-terminated) names in
 * "jwks_uri": 0 with *url (malloc'd; it passes jwks_remote_url_problem), or
 * -1 with the reason in err.
 */
int jwks_remote_discovered_url(const char *document, size_t length, char **url, char *err,
                               size_t err_length);

/* What the fetching did since the process started, for /metrics. */
struct jwks_remote_stats {
    unsigned providers;        /* fetchers running: 0 when keys come from a file */
    uint64_t attempts;         /* fetch rounds (discovery when needed, then the JWKS) */
    uint64_t failures;         /* rounds that installed nothing */
    int64_t last_success_unix; /* when keys last installed (wall clock); 0: never */
    unsigned keys;             /* keys held from the last installed JWKS */
};

void jwks_remote_stats_get(struct jwks_remote_stats *stats);

#endif

/*
 * auth: bearer-token authentication of management API callers.
 *
 * Operator tokens are JWTs (RFC 7519) signed ES256 or RS256 by a key listed
 * in a JWKS (RFC 7517: EC P-256 keys by x/y, RSA keys by n/e): a file read
 * once when the API starts, or an identity provider's, fetched and kept
 * current (control/jwks_remote.h): a token naming an unknown key id makes it
 * fetch again (rate-limited) before the token is refused. A token is accepted when its signature
 * verifies with the key its "kid" names (or, without "kid", with any key of its algorithm), it has
 * not expired ("exp" is required), "nbf" and "iat" are not in the future (60 seconds of leeway for
 * clocks), "iss" is the configured issuer, "aud" (a string or a list) holds the configured audience
 * when one is set, and the configured owner claim is a non-empty string: the caller's owner.
 *
 * Error convention: 0 / -1 with a reason in err that never contains the token.
 */
#ifndef DPS_AUTH_H
#define DPS_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include <openssl/types.h>

struct auth;
struct config_api;

#define AUTH_LEEWAY_S 60

/* Loads the JWKS; audience may be NULL, owner_claim NULL means "sub". NULL with err. */
struct auth *auth_load(const char *jwks_file, const char *issuer, const char *audience,
                       const char *owner_claim, char *err, size_t err_length);
/*
 * The API's keys: api->jwks_file, or the provider api->jwks_url or
 * api->authority names (then the first fetch is waited for, bounded by
 * api->jwks_timeout_s). NULL with err.
 */
struct auth *auth_open(const struct config_api *api, char *err, size_t err_length);
void auth_free(struct auth *auth);

/*
 * Replaces the keys in use with a provider's JWKS (not NUL-terminated;
 * lenient: keys it cannot verify with are skipped and logged), as each
 * fetch does. The number of keys now held, or -1 with err: the keys in use
 * stay.
 */
int auth_install_jwks(struct auth *auth, const char *text, size_t length, char *err,
                      size_t err_length);

/*
 * Checks an HTTP Authorization header value ("Bearer TOKEN"; may be NULL) at
 * time now. 0 with the caller's owner in *owner (malloc'd), or -1 with err.
 * Thread-safe; with a provider it may wait for one fetch (bounded).
 */
int auth_check(const struct auth *auth, const char *authorization, time_t now, char **owner,
               char *err, size_t err_length);

/* True when key's public part is one of the JWKS keys: it signs operator tokens. */
bool auth_has_key(const struct auth *auth, const EVP_PKEY *key);

#endif

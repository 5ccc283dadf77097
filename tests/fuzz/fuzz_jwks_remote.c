/*
 * fuzz_jwks_remote: what a fetch of operator keys parses from an identity
 * provider (control/jwks_remote.c, control/auth.c): the input is read as
 * the OIDC discovery document (jwks_remote_discovered_url) and as the JWKS
 * installed over the keys in use (auth_install_jwks), both as fetched,
 * unterminated bodies.
 *
 * The keys in use before each install are fuzz_auth's (auth/jwks.json), and
 * the token kept is fuzz_auth's valid ES256 seed, at the same fixed time.
 *
 * Invariants: a discovered URL is one a provider may be fetched from
 * (jwks_remote_url_problem), a refusal gives none and a reason; an install
 * holds at least one key and no more than the document lists; a refused
 * install gives a reason and leaves the keys in use: the valid token is
 * still accepted.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "common/file.h"
#include "common/log.h"
#include "control/auth.h"
#include "control/jwks_remote.h"

#include "tests/fuzz/fuzz_auth_data.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct auth *auth;
static char *original_jwks;
static char *valid_header;

static void check(int condition)
{
    if (!condition)
        abort();
}

/* A file under FUZZ_DATA_DIR, without its trailing line break. */
static char *read_text(const char *name)
{
    char path[512], err[256];
    size_t length = 0;
    snprintf(path, sizeof(path), "%s/%s", FUZZ_DATA_DIR, name);
    char *text = file_read_text(path, 65536, &length, err, sizeof(err));
    check(text != NULL);
    while (length > 0 && (text[length - 1] == '\n' || text[length - 1] == '\r'))
        text[--length] = '\0';
    return text;
}

static void load(void)
{
    char path[512];
    char err[256] = "";
    log_set_level(LOG_ERROR); /* keys skipped in a provider's JWKS are logged as warnings */
    snprintf(path, sizeof(path), "%s/auth/jwks.json", FUZZ_DATA_DIR);
    auth = auth_load(path, FUZZ_AUTH_ISSUER, FUZZ_AUTH_AUDIENCE, NULL, err, sizeof(err));
    check(auth != NULL);
    original_jwks = read_text("auth/jwks.json");
    valid_header = read_text("corpus/fuzz_auth/valid-es256.txt");
    check(original_jwks != NULL && valid_header != NULL);
}

static bool valid_token_accepted(void)
{
    char err[256] = "";
    char *owner = NULL;
    int result = auth_check(auth, valid_header, FUZZ_AUTH_TIME, &owner, err, sizeof(err));
    free(owner);
    return result == 0;
}

static void fuzz_discovery(const char *text, size_t size)
{
    char err[256] = "";
    char *url = (char *)"unset";
    int result = jwks_remote_discovered_url(text, size, &url, err, sizeof(err));
    if (result == 0) {
        check(url != NULL && jwks_remote_url_problem(url) == NULL);
        free(url);
    } else {
        check(result == -1 && url == NULL && err[0] != '\0');
    }
}

static void fuzz_install(const char *text, size_t size)
{
    char err[256] = "";
    int keys = auth_install_jwks(auth, text, size, err, sizeof(err));
    if (keys < 0) {
        check(keys == -1 && err[0] != '\0');
        check(valid_token_accepted());
        return;
    }
    json_t *document = json_loadb(text, size, JSON_REJECT_DUPLICATES, NULL);
    check(keys >= 1 && (size_t)keys <= json_array_size(json_object_get(document, "keys")));
    json_decref(document);
    check(auth_install_jwks(auth, original_jwks, strlen(original_jwks), err, sizeof(err)) == 2);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (auth == NULL)
        load();
    fuzz_discovery((const char *)data, size);
    fuzz_install((const char *)data, size);
    return 0;
}

/*
 * fuzz_auth: auth_check() (control/auth.c), which the management API runs on
 * every request's Authorization header before anything is authenticated.
 * The input is the header's value ("Bearer TOKEN").
 *
 * The configuration is the demo's: issuer and audience of the operator
 * tokens `dpsctl token` signs, owner claim "sub", and a JWKS
 * (auth/jwks.json) with an EC P-256 key "ec-1", an RSA key "rsa-1", an
 * encryption key and a symmetric key (both to be skipped). The seeds are real
 * tokens signed by the first two keys (valid, expired, not yet valid, wrong
 * issuer or audience, no owner), by other keys under the same key ids, with
 * alg none, HS256 and a confused alg, and malformed headers; the private
 * halves were throw-away, so mutations reach every check but a signature
 * can only verify over the seeds' signed parts. Time is fixed inside the
 * valid seeds' lifetime so they keep verifying as years pass.
 *
 * Invariants: an acceptance gives a non-empty, NUL-free owner, and the token
 * also verifies with jwt_verify() (crypto/jwt.c, a second parser) under one
 * of the JWKS keys (auth/ec.pub.pem, auth/rsa.pub.pem) with a payload whose
 * owner claim is that owner; a refusal gives no owner and a reason that
 * never quotes the token's payload or signature (checked for base64url parts
 * of 16 characters or more, which no reason's own text contains).
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "control/auth.h"
#include "crypto/jwt.h"
#include "tests/jwt_verify.h"

#include "tests/fuzz/fuzz_auth_data.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define BASE64URL "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

static struct auth *auth;
static char *public_keys[2];

static void check(int condition)
{
    if (!condition)
        abort();
}

static char *read_text(const char *name)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/auth/%s", FUZZ_DATA_DIR, name);
    FILE *file = fopen(path, "rb");
    check(file != NULL);
    static char buffer[8192];
    size_t length = fread(buffer, 1, sizeof(buffer) - 1, file);
    fclose(file);
    buffer[length] = '\0';
    return strdup(buffer);
}

static void load(void)
{
    char path[512];
    char err[256] = "";
    snprintf(path, sizeof(path), "%s/auth/jwks.json", FUZZ_DATA_DIR);
    auth = auth_load(path, FUZZ_AUTH_ISSUER, FUZZ_AUTH_AUDIENCE, NULL, err, sizeof(err));
    if (auth == NULL)
        fprintf(stderr, "fuzz_auth: %s\n", err);
    check(auth != NULL);
    public_keys[0] = read_text("ec.pub.pem");
    public_keys[1] = read_text("rsa.pub.pem");
}

/* The token an accepted header carries: after the scheme and its spaces. */
static const char *token_of(const char *header)
{
    const char *token = header + strlen("Bearer ");
    return token + strspn(token, " ");
}

/* An accepted token verifies under a JWKS key in jwt.c too, for the same owner. */
static void check_accepted(const char *header, const char *owner)
{
    check(owner != NULL && owner[0] != '\0');
    bool agreed = false;
    for (size_t i = 0; !agreed && i < sizeof(public_keys) / sizeof(*public_keys); i++) {
        char err[256] = "";
        char *payload = jwt_verify(NULL, token_of(header), public_keys[i], err, sizeof(err));
        if (payload == NULL)
            continue;
        json_t *claims = json_loads(payload, 0, NULL);
        const char *sub = json_string_value(json_object_get(claims, "sub"));
        agreed = sub != NULL && strcmp(sub, owner) == 0;
        json_decref(claims);
        free(payload);
    }
    check(agreed);
}

/* The reason does not hold this part of the header, when it is base64url long enough to tell. */
static void check_not_quoted(const char *err, const char *part, size_t length)
{
    if (length < 16 || strspn(part, BASE64URL) < length)
        return;
    char *text = strndup(part, length);
    check(text != NULL);
    check(strstr(err, text) == NULL);
    free(text);
}

/* A refusal names a check, never the token's payload or signature. */
static void check_refused(const char *header, const char *owner, const char *err)
{
    check(owner == NULL);
    check(err[0] != '\0');
    const char *first = strchr(header, '.');
    const char *last = strrchr(header, '.');
    if (first == NULL || first == last)
        return;
    check_not_quoted(err, first + 1, (size_t)(last - first - 1));
    check_not_quoted(err, last + 1, strlen(last + 1));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (auth == NULL)
        load();
    char *header = malloc(size + 1);
    check(header != NULL);
    memcpy(header, data, size);
    header[size] = '\0';

    char err[256] = "";
    char *owner = NULL;
    int result = auth_check(auth, header, FUZZ_AUTH_TIME, &owner, err, sizeof(err));
    check(result == 0 || result == -1);
    if (result == 0)
        check_accepted(header, owner);
    else
        check_refused(header, owner, err);
    free(owner);
    free(header);
    return 0;
}

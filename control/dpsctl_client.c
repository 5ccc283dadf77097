/*
 * dpsctl_client: dpsctl's HTTP client of the management API (control/api.c),
 * over libcurl. It finds the API URL, the operator token and the CA file
 * (options, then the environment), sends one request, and reads the answer
 * either whole or, for a list, one {"result": ...} line at a time as it
 * arrives. A refusal is printed with the server's message and a hint at the
 * option to change, and becomes dpsctl's exit code (dpsctl_options.h).
 */
#include "control/dpsctl_client.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define ERROR_BODY_LIMIT 65536
#define CONNECT_TIMEOUT_S 10L
#define STALL_TIMEOUT_S 60L

/* One HTTP exchange: the status and either the body or, for a 200 list, each result line. */
struct exchange {
    CURL *curl;
    long status;
    char *body;
    size_t length;
    bool (*on_result)(void *user, json_t *result);
    void *user;
    char *line;
    size_t line_length;
    json_t *stream_error; /* an {"error": ...} line, or a line that is not a result */
    bool stopped;
};

static char *environment(const char *name)
{
    char *value = getenv(name);
    return value != NULL && value[0] != '\0' ? value : NULL;
}

/* Trims surrounding whitespace in place. */
static char *trim(char *text)
{
    size_t length = strlen(text);

    while (length > 0 && strchr(" \t\r\n", text[length - 1]) != NULL)
        text[--length] = '\0';
    while (*text != '\0' && strchr(" \t\r\n", *text) != NULL)
        text++;
    return text;
}

void client_close(struct client *client)
{
    if (client->curl != NULL)
        curl_easy_cleanup(client->curl);
    if (client->token != NULL) {
        explicit_bzero(client->token, strlen(client->token));
        free(client->token);
    }
}

/* Reads the connection settings. EXIT_OK, or the exit code after saying what is wrong. */
int client_open(struct client *client, const struct options *options)
{
    const char *url = options->value[OPT_API];
    const char *token_file = options->value[OPT_TOKEN_FILE];
    char err[PATH_MAX + 128];
    size_t length;

    memset(client, 0, sizeof(*client));
    client->name = options->name;
    client->url_source = "--api";
    if (url == NULL && (url = environment("DPS_API")) != NULL)
        client->url_source = "DPS_API";
    if (url == NULL) {
        url = DEFAULT_API_URL;
        client->url_source = "the default";
    }
    length = strlen(url);
    while (length > 0 && url[length - 1] == '/')
        length--;
    if ((strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0) ||
        length >= sizeof(client->url)) {
        fprintf(stderr,
                "dpsctl %s: the API URL \"%s\" (from %s) must start with http:// or https://, "
                "for example " DEFAULT_API_URL "\n",
                client->name, url, client->url_source);
        return EXIT_USAGE;
    }
    memcpy(client->url, url, length);
    client->url[length] = '\0';
    client->cacert = options->value[OPT_CACERT] ?: environment("DPS_CACERT");

    if (token_file != NULL) {
        snprintf(client->token_source, sizeof(client->token_source), "--token-file %s", token_file);
    } else if (environment("DPS_TOKEN") != NULL) {
        snprintf(client->token_source, sizeof(client->token_source), "DPS_TOKEN");
        client->token = strdup(trim(environment("DPS_TOKEN")));
    } else if ((token_file = environment("DPS_TOKEN_FILE")) != NULL) {
        snprintf(client->token_source, sizeof(client->token_source), "DPS_TOKEN_FILE=%s",
                 token_file);
    } else {
        fprintf(stderr,
                "dpsctl %s: no operator token: pass --token-file FILE or set DPS_TOKEN_FILE=FILE "
                "or DPS_TOKEN (`dpsd --demo DIR` writes DIR/pki/operator.token; `dpsctl token "
                "--key operator.key --owner OWNER` signs one)\n",
                client->name);
        return EXIT_AUTH;
    }
    if (token_file != NULL) {
        char *text = read_text_file(token_file, err, sizeof(err));
        if (text == NULL) {
            fprintf(stderr, "dpsctl %s: the token file (%s): %s\n", client->name,
                    client->token_source, err);
            return EXIT_USAGE;
        }
        client->token = strdup(trim(text));
        explicit_bzero(text, strlen(text));
        free(text);
    }
    if (client->token == NULL || (client->curl = curl_easy_init()) == NULL) {
        fprintf(stderr, "dpsctl %s: out of memory\n", client->name);
        return EXIT_REFUSED;
    }
    if (client->token[0] == '\0') {
        fprintf(stderr, "dpsctl %s: the token from %s is empty\n", client->name,
                client->token_source);
        return EXIT_AUTH;
    }
    /* Sent whole in a header line: nothing but a JWT's characters may go there. */
    if (strspn(client->token,
               "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.") !=
        strlen(client->token)) {
        fprintf(stderr,
                "dpsctl %s: the token from %s is not a JWT (only base64url letters and dots, "
                "on one line)\n",
                client->name, client->token_source);
        return EXIT_AUTH;
    }
    return EXIT_OK;
}

static bool append(char **buffer, size_t *length, const char *data, size_t size)
{
    char *grown = realloc(*buffer, *length + size + 1);

    if (grown == NULL)
        return false;
    memcpy(grown + *length, data, size);
    *length += size;
    grown[*length] = '\0';
    *buffer = grown;
    return true;
}

/* One complete NDJSON line of a list. */
static void exchange_line(struct exchange *exchange, const char *text, size_t length)
{
    json_t *line;
    json_t *result;

    if (length == 0 || exchange->stream_error != NULL || exchange->stopped)
        return;
    line = json_loadb(text, length, 0, NULL);
    result = json_object_get(line, "result");
    if (result != NULL) {
        if (!exchange->on_result(exchange->user, result))
            exchange->stopped = true;
    } else if (json_is_object(json_object_get(line, "error"))) {
        exchange->stream_error = json_incref(json_object_get(line, "error"));
    } else {
        exchange->stream_error = json_pack("{s:s%}", "message", text, length);
    }
    json_decref(line);
}

static size_t exchange_write(char *data, size_t size, size_t count, void *user)
{
    struct exchange *exchange = user;
    size_t total = size * count;
    long status = 0;

    curl_easy_getinfo(exchange->curl, CURLINFO_RESPONSE_CODE, &status);
    if (status != 200 || exchange->on_result == NULL) {
        if (exchange->length < ERROR_BODY_LIMIT &&
            !append(&exchange->body, &exchange->length, data, total))
            return 0;
        return total;
    }
    if (!append(&exchange->line, &exchange->line_length, data, total))
        return 0;
    char *start = exchange->line;
    char *newline;
    while ((newline = memchr(start, '\n',
                             exchange->line_length - (size_t)(start - exchange->line))) != NULL) {
        exchange_line(exchange, start, (size_t)(newline - start));
        start = newline + 1;
    }
    exchange->line_length -= (size_t)(start - exchange->line);
    memmove(exchange->line, start, exchange->line_length + 1);
    return exchange->stopped ? 0 : total; /* a stopped list needs no more */
}

/* The "message" of an error body, or its first line. */
static const char *error_message(json_t *parsed, const char *body, char *buffer, size_t length)
{
    const char *message = json_string_value(json_object_get(parsed, "message"));

    if (message != NULL)
        return message;
    if (body == NULL || body[0] == '\0')
        return "(no message)";
    snprintf(buffer, length, "%.*s", (int)strcspn(body, "\r\n"), body);
    return buffer;
}

/* The dpsctl option that sets the field an API message names first ("field: problem"). */
static const char *field_hint(const char *message)
{
    static const struct {
        const char *field;
        const char *hint;
    } hints[] = {
        {"attestationMechanism.x509.certificateChain",
         "--chain FILE must hold the manufacturer's CA certificates in PEM"},
        {"attestationMechanism.x509.leadCertificateName",
         "--lead-name must be the common name of a certificate in --chain"},
        {"attestationMechanism", "--chain FILE must hold the manufacturer's CA chain in PEM"},
        {"hubIds", "--hub must name an existing hub of yours (see `dpsctl hubs list`)"},
        {"preSharedKey", "--psk must be exactly 16 bytes (a character outside ASCII takes 2 to 4)"},
        {"hubId", "--hub-id must be a UUID"},
        {"gateways", "--gateway must be coaps+tcp://HOST:PORT"},
        {"authorization.provider", "--provider must name the hub's authorization provider"},
        {"authorization.ownerClaim", "check --owner-claim"},
        {"authorization.deviceIdClaim", "check --device-id-claim"},
        {"identityCertificate.keyName",
         "--identity-key must name a key with a certificate registered for your owner"},
        {"identityCertificate", "check --identity-key"},
        {"token.keyName", "--token-key must name a key registered for your owner"},
        {"token.issuer", "check --token-issuer"},
        {"token", "check --token-key and --token-issuer"},
        {"requests", "wait and retry: the owner's request rate is limited"},
        {"name", "check --name"},
        {"deviceIdFilter", "--device must be a UUID"},
        {"deviceId", "--device must be a device id (a UUID)"},
        {"publicKeySha256", "--public-key-sha256 must be 64 hex digits"},
        {"serialFilter", "--serial must be 1 to 40 hex digits"},
        {"serial", "--serial must be 1 to 40 hex digits"},
        {"issuer", "--issuer must be the issuer DN in RFC 2253 form, at most 256 bytes"},
        {"reason", "--reason must be text of at most 256 bytes"},
        {"since", "--since must be YYYY-MM-DDTHH:MM:SSZ"},
        {"until", "--until must be YYYY-MM-DDTHH:MM:SSZ"},
        {"enrollmentGroupIdFilter", "--group must be a UUID"},
        {"idFilter", "the id must be a UUID"},
        {"id", "the id must be a UUID"},
    };
    size_t field_length = strcspn(message, ": ");

    for (size_t i = 0; i < sizeof(hints) / sizeof(*hints); i++) {
        size_t length = strlen(hints[i].field);
        if (length <= field_length && strncmp(message, hints[i].field, length) == 0 &&
            (length == field_length || message[length] == '.' || message[length] == '['))
            return hints[i].hint;
    }
    return NULL;
}

/* Says why the request failed and what to do; returns the exit code. */
static int report_failure(const struct client *client, const struct exchange *exchange)
{
    char buffer[512];
    json_t *parsed = exchange->body != NULL ? json_loads(exchange->body, 0, NULL) : NULL;
    const char *message = exchange->stream_error != NULL
                              ? error_message(exchange->stream_error, NULL, buffer, sizeof(buffer))
                              : error_message(parsed, exchange->body, buffer, sizeof(buffer));
    const char *hint = field_hint(message);
    int code;

    if (exchange->status == 401 || exchange->status == 403) {
        fprintf(stderr, "dpsctl %s: %s (HTTP %ld): %s\n", client->name,
                exchange->status == 401 ? "authentication failed" : "permission denied",
                exchange->status, message);
        fprintf(stderr,
                "dpsctl %s: the token came from %s; use one signed by a key in the API's jwks "
                "for your owner: `dpsctl token --key operator.key --owner OWNER`, or the demo's "
                "DIR/pki/operator.token, with --token-file FILE or DPS_TOKEN_FILE\n",
                client->name, client->token_source);
        code = EXIT_AUTH;
    } else if (exchange->status == 404) {
        fprintf(stderr, "dpsctl %s: not found: %s\n", client->name, message);
        if (strncmp(message, "no route", 8) == 0)
            fprintf(stderr, "dpsctl %s: is %s (from %s) the management API of a current dpsd?\n",
                    client->name, client->url, client->url_source);
        code = EXIT_NOT_FOUND;
    } else if (exchange->status >= 500 || exchange->stream_error != NULL) {
        fprintf(stderr, "dpsctl %s: the server failed (HTTP %ld): %s\n", client->name,
                exchange->status, message);
        fprintf(stderr, "dpsctl %s: dpsd's log says more; retry once it is resolved\n",
                client->name);
        code = EXIT_REFUSED;
    } else {
        fprintf(stderr, "dpsctl %s: the server refused the request (HTTP %ld): %s\n", client->name,
                exchange->status, message);
        if (hint != NULL)
            fprintf(stderr, "dpsctl %s: fix: %s\n", client->name, hint);
        code = EXIT_REFUSED;
    }
    json_decref(parsed);
    return code;
}

static int report_transport(const struct client *client, CURLcode result, const char *detail)
{
    const char *problem = detail[0] != '\0' ? detail : curl_easy_strerror(result);

    fprintf(stderr, "dpsctl %s: cannot reach the management API at %s (from %s): %s\n",
            client->name, client->url, client->url_source, problem);
    if (result == CURLE_PEER_FAILED_VERIFICATION || result == CURLE_SSL_CACERT_BADFILE)
        fprintf(stderr,
                "dpsctl %s: the server's certificate is not trusted: pass the CA that signed "
                "api.certificate with --cacert FILE (or DPS_CACERT)\n",
                client->name);
    else if (result == CURLE_SSL_CONNECT_ERROR)
        fprintf(stderr,
                "dpsctl %s: the TLS handshake failed: use http:// when api.certificate is not "
                "set, and check --cacert\n",
                client->name);
    else
        fprintf(stderr,
                "dpsctl %s: check that dpsd runs with an api section and point dpsctl at its "
                "api.listen address with --api URL or DPS_API=URL (default " DEFAULT_API_URL ")\n",
                client->name);
    return EXIT_UNREACHABLE;
}

/*
 * Sends METHOD path (with its query) and a JSON body. A 2xx answer returns
 * EXIT_OK, its body in exchange->body or, when on_result is set, each result
 * handed to it; anything else is reported and its exit code returned.
 */
static int client_call(struct client *client, const char *method, const char *path, json_t *body,
                       struct exchange *exchange)
{
    char *url = NULL;
    char *authorization = NULL;
    char detail[CURL_ERROR_SIZE] = "";
    struct curl_slist *headers = NULL;
    char *text = body != NULL ? json_dumps(body, JSON_COMPACT) : NULL;
    CURL *curl = client->curl;
    CURLcode result;
    int code = EXIT_OK;

    if ((body != NULL && text == NULL) || asprintf(&url, "%s%s", client->url, path) < 0 ||
        asprintf(&authorization, "Authorization: Bearer %s", client->token) < 0) {
        fprintf(stderr, "dpsctl %s: out of memory\n", client->name);
        free(url);
        free(text);
        return EXIT_REFUSED;
    }
    headers = curl_slist_append(headers, authorization);
    headers = curl_slist_append(headers, "Accept: application/json, application/x-ndjson");
    if (text != NULL)
        headers = curl_slist_append(headers, "Content-Type: application/json");
    curl_easy_reset(curl);
    curl_easy_setopt(curl, CURLOPT_URL, url);
    curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, detail);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT, CONNECT_TIMEOUT_S);
    curl_easy_setopt(curl, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(curl, CURLOPT_LOW_SPEED_TIME, STALL_TIMEOUT_S);
    curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
    if (client->cacert != NULL)
        curl_easy_setopt(curl, CURLOPT_CAINFO, client->cacert);
    if (text != NULL) {
        curl_easy_setopt(curl, CURLOPT_POSTFIELDS, text);
        curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE, (long)strlen(text));
    }
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, exchange_write);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, exchange);
    exchange->curl = curl;
    result = curl_easy_perform(curl);
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &exchange->status);
    if (result == CURLE_WRITE_ERROR && exchange->stopped)
        result = CURLE_OK;
    if (result == CURLE_OK && exchange->on_result != NULL && exchange->status == 200 &&
        exchange->line_length > 0)
        exchange_line(exchange, exchange->line, exchange->line_length);
    if (result != CURLE_OK && exchange->status == 0)
        code = report_transport(client, result, detail);
    else if (result != CURLE_OK) {
        fprintf(stderr, "dpsctl %s: the answer from %s broke off: %s\n", client->name, client->url,
                detail[0] != '\0' ? detail : curl_easy_strerror(result));
        code = EXIT_REFUSED;
    } else if (exchange->status < 200 || exchange->status > 299 || exchange->stream_error != NULL)
        code = report_failure(client, exchange);
    curl_slist_free_all(headers);
    explicit_bzero(authorization, strlen(authorization));
    free(authorization);
    free(url);
    free(text);
    return code;
}

static void exchange_clear(struct exchange *exchange)
{
    free(exchange->body);
    free(exchange->line);
    json_decref(exchange->stream_error);
    memset(exchange, 0, sizeof(*exchange));
}

/*
 * Appends "&name=value" (the first one "?name=value"), value escaped. False
 * when it does not fit in path (left as it was): a filter is never cut.
 */
bool query_add(CURL *curl, char *path, size_t length, const char *name, const char *value)
{
    size_t used = strlen(path);
    char *escaped;
    int written;

    if (value == NULL)
        return true;
    if ((escaped = curl_easy_escape(curl, value, 0)) == NULL)
        return false;
    written = snprintf(path + used, length - used, "%c%s=%s", strchr(path, '?') != NULL ? '&' : '?',
                       name, escaped);
    curl_free(escaped);
    if (written < 0 || (size_t)written >= length - used) {
        path[used] = '\0';
        return false;
    }
    return true;
}

static bool sink_result(void *user, json_t *result)
{
    sink_put(user, result);
    return true;
}

int client_stream(struct client *client, const char *path,
                  bool (*on_result)(void *user, json_t *result), void *user)
{
    struct exchange exchange = {.on_result = on_result, .user = user};
    int code = client_call(client, "GET", path, NULL, &exchange);

    exchange_clear(&exchange);
    return code;
}

/* GETs a list into a sink. */
int client_list(struct client *client, const char *path, struct sink *sink)
{
    int code = client_stream(client, path, sink_result, sink);

    if (code == EXIT_OK)
        sink_end(sink);
    else
        table_free(&sink->table);
    return code;
}

/* A single JSON document answer (new reference), or NULL with *code set. */
json_t *client_document(struct client *client, const char *method, const char *path, json_t *body,
                        int *code)
{
    struct exchange exchange = {0};
    json_t *document = NULL;

    *code = client_call(client, method, path, body, &exchange);
    if (*code == EXIT_OK) {
        document = json_loadb(exchange.body != NULL ? exchange.body : "", exchange.length, 0, NULL);
        if (document == NULL) {
            fprintf(stderr, "dpsctl %s: the answer from %s is not JSON\n", client->name,
                    client->url);
            *code = EXIT_REFUSED;
        }
    }
    exchange_clear(&exchange);
    return document;
}

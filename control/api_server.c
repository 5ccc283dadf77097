/*
 * api_server: the management API's listeners and their life (control/api.h): the sockets bound
 * once at start, and the generations that serve on them.
 *
 * A generation is what a reload may change and what it loads: the operator keys (api.jwks,
 * jwksUrl or authority, issuer, audience, ownerClaim), the TLS certificate and key, the client
 * CA, api.admins, the connection limits and the request deadline; and the libmicrohttpd daemons
 * serving with them (api.listen, api.healthListen). SIGHUP (api_reload) starts a new generation
 * on copies of the same sockets, then retires the one in force: it stops accepting, and its
 * connections finish on what they started with. The reaper thread frees a retired generation
 * once it has no connection and no list streaming from it. Ownership: the api owns its
 * generations (current and retired, under api->lock); a generation owns its daemons, keys and
 * PEM text, and its configuration after a reload (the first one reads the plane's settings);
 * a stream counts itself in its generation's streams, which keeps it.
 *
 * What cannot change without a restart (the listen addresses, HTTPS turned on or off, and the
 * quotas, which the plane holds) is logged as a warning on reload and listed in
 * /api/v1/status ("restartRequired", for api.admins) until the restart.
 */
#include "control/api.h"
#include "control/api_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <jansson.h>
#include <microhttpd.h>
#include <netinet/in.h>

#include "common/address.h"
#include "common/log.h"
#include "control/auth.h"
#include "control/plane.h"

static char *read_pem(const char *path, char *err, size_t err_length)
{
    FILE *file = fopen(path, "rb");
    if (file == NULL) {
        snprintf(err, err_length, "cannot read %s: %s", path, strerror(errno));
        return NULL;
    }
    char *text = malloc(API_PEM_LIMIT + 1);
    size_t length = text != NULL ? fread(text, 1, API_PEM_LIMIT + 1, file) : 0;
    fclose(file);
    if (text == NULL || length == 0 || length > API_PEM_LIMIT) {
        snprintf(err, err_length, "%s: empty, unreadable or larger than 1 MiB", path);
        free(text);
        return NULL;
    }
    text[length] = '\0';
    return text;
}

/*
 * A listening socket on key's HOST:PORT (common/address.h), bound here rather than by
 * libmicrohttpd so that a port in use stops dpsd with that reason and the option to change it,
 * and without SO_REUSEPORT, so that a second dpsd can never share it and silently take part of
 * this one's requests. 0 with bound (its loopback: 127/8 or ::1), or -1 with err.
 */
static int bind_listener(const char *key, const char *option, const char *text,
                         struct api_socket *bound, char *err, size_t err_length)
{
    struct sockaddr_storage address;
    const char *problem = address_listen(text, &address);
    if (problem != NULL) {
        snprintf(err, err_length, "%s: \"%s\": %s", key, text, problem);
        return -1;
    }
    int fd = socket(address.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd >= 0 && setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) == 0 &&
        (address.ss_family != AF_INET6 ||
         setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) == 0) &&
        bind(fd, (struct sockaddr *)&address, address_length(&address)) == 0 &&
        listen(fd, 128) == 0) {
        *bound = (struct api_socket){fd, address.ss_family, address_is_loopback(&address)};
        return 0;
    }
    int error = errno;
    if (fd >= 0)
        close(fd);
    if (error == EADDRINUSE)
        snprintf(err, err_length,
                 "%s: %s: port %u is in use (another dpsd?): choose a free one with %s", key, text,
                 (unsigned)address_port(&address), option);
    else
        snprintf(err, err_length, "%s: %s: %s", key, text, strerror(error));
    return -1;
}

__attribute__((format(printf, 2, 0))) static void log_mhd(void *user, const char *fmt, va_list args)
{
    char message[512];
    vsnprintf(message, sizeof(message), fmt, args);
    message[strcspn(message, "\r\n")] = '\0';
    for (char *c = message; *c != '\0'; c++) {
        if (*c == '"')
            *c = '\'';
    }
    log_msg(LOG_WARN, "api", "error=\"%s\"", message);
}

/*
 * A daemon serving on a copy of socket: libmicrohttpd owns the copy (a retired daemon gives
 * it back, see retire()); the API keeps its own until it stops. NULL when it cannot start.
 */
static struct MHD_Daemon *serve_on(const struct api_socket *socket, unsigned flags,
                                   MHD_AccessHandlerCallback handler, struct api_listener *listener,
                                   unsigned connections, unsigned per_source, unsigned timeout_s,
                                   struct MHD_OptionItem *tls_options)
{
    int fd = fcntl(socket->fd, F_DUPFD_CLOEXEC, 0);
    if (fd < 0)
        return NULL;
    struct MHD_Daemon *daemon = MHD_start_daemon(
        flags | MHD_USE_ERROR_LOG | MHD_USE_ITC | (socket->family == AF_INET6 ? MHD_USE_IPv6 : 0),
        0, NULL, NULL, handler, listener, MHD_OPTION_EXTERNAL_LOGGER, log_mhd, NULL,
        MHD_OPTION_LISTEN_SOCKET, fd, MHD_OPTION_CONNECTION_LIMIT, connections,
        MHD_OPTION_PER_IP_CONNECTION_LIMIT, per_source, MHD_OPTION_CONNECTION_TIMEOUT, timeout_s,
        MHD_OPTION_NOTIFY_CONNECTION, api_notify_connection, listener, MHD_OPTION_NOTIFY_COMPLETED,
        api_request_completed, listener, MHD_OPTION_ARRAY, tls_options, MHD_OPTION_END);
    if (daemon == NULL)
        close(fd);
    return daemon;
}

static void generation_free(struct api_generation *generation)
{
    if (generation == NULL)
        return;
    if (generation->health_daemon != NULL)
        MHD_stop_daemon(generation->health_daemon);
    if (generation->daemon != NULL)
        MHD_stop_daemon(generation->daemon);
    for (size_t i = 0; i < 2; i++) {
        if (generation->quiesced[i] >= 0)
            close(generation->quiesced[i]);
    }
    auth_free(generation->auth);
    free(generation->cert_pem);
    free(generation->client_ca_pem);
    if (generation->key_pem != NULL) {
        explicit_bzero(generation->key_pem, strlen(generation->key_pem));
        free(generation->key_pem);
    }
    config_free(generation->config);
    free(generation);
}

/* Loads what settings name. 0, or -1 with err naming the setting. */
static int generation_load(struct api_generation *generation, char *err, size_t err_length)
{
    const struct config_api *settings = generation->settings;
    char problem[512];
    generation->auth = auth_open(settings, problem, sizeof(problem));
    if (generation->auth == NULL) {
        snprintf(err, err_length, "api.%s: %s",
                 settings->jwks_file != NULL  ? "jwks"
                 : settings->jwks_url != NULL ? "jwksUrl"
                                              : "authority",
                 problem);
        return -1;
    }
    if (settings->cert_file != NULL &&
        ((generation->cert_pem = read_pem(settings->cert_file, err, err_length)) == NULL ||
         (generation->key_pem = read_pem(settings->key_file, err, err_length)) == NULL))
        return -1;
    if (settings->client_ca_file != NULL &&
        (generation->client_ca_pem = read_pem(settings->client_ca_file, err, err_length)) == NULL)
        return -1;
    return 0;
}

/*
 * Serves the API (and the health listener) with what generation loaded. The health listener
 * has its own small connection budget and deadline and one polling thread, so a flood of the
 * API's connections never keeps a load balancer from its probes: same TLS, no client
 * certificate. 0, or -1 with err.
 */
static int generation_serve(struct api_generation *generation, char *err, size_t err_length)
{
    struct api *api = generation->api;
    const struct config_api *settings = generation->settings;
    bool tls = generation->cert_pem != NULL;
    struct MHD_OptionItem tls_options[] = {
        {tls ? MHD_OPTION_HTTPS_MEM_CERT : MHD_OPTION_END, 0, generation->cert_pem},
        {MHD_OPTION_HTTPS_MEM_KEY, 0, generation->key_pem},
        {generation->client_ca_pem != NULL ? MHD_OPTION_HTTPS_MEM_TRUST : MHD_OPTION_END, 0,
         generation->client_ca_pem},
        {MHD_OPTION_END, 0, NULL},
    };
    generation->listener = (struct api_listener){generation, settings->request_timeout_s};
    generation->daemon = serve_on(
        &api->socket,
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION | (tls ? MHD_USE_TLS : 0),
        api_handle, &generation->listener, settings->max_connections,
        settings->max_connections_per_source, API_CONNECTION_TIMEOUT_S, tls_options);
    if (generation->daemon == NULL) {
        if (tls)
            snprintf(err, err_length,
                     "api.certificate, api.key: %s and %s do not serve HTTPS (not PEM, or a key "
                     "that is not the certificate's)",
                     settings->cert_file, settings->key_file);
        else
            snprintf(err, err_length, "api.listen: cannot serve on %s", api->settings->listen);
        return -1;
    }
    if (api->health_socket.fd < 0)
        return 0;
    tls_options[2] = (struct MHD_OptionItem){MHD_OPTION_END, 0, NULL};
    generation->health_listener = (struct api_listener){generation, API_HEALTH_TIMEOUT_S};
    generation->health_daemon =
        serve_on(&api->health_socket, MHD_USE_POLL_INTERNAL_THREAD | (tls ? MHD_USE_TLS : 0),
                 api_handle_health, &generation->health_listener, API_HEALTH_CONNECTIONS,
                 API_HEALTH_CONNECTIONS_PER_SOURCE, API_HEALTH_TIMEOUT_S, tls_options);
    if (generation->health_daemon == NULL) {
        snprintf(err, err_length, "api.healthListen: cannot serve on %s",
                 api->settings->health_listen);
        return -1;
    }
    return 0;
}

/*
 * A generation serving settings (config owns them, or NULL for the plane's). Takes config,
 * freed with the generation or on failure. NULL with err.
 */
static struct api_generation *generation_start(struct api *api, const struct config_api *settings,
                                               struct config *config, char *err, size_t err_length)
{
    struct api_generation *generation = calloc(1, sizeof(*generation));
    if (generation == NULL) {
        config_free(config);
        snprintf(err, err_length, "out of memory");
        return NULL;
    }
    *generation = (struct api_generation){
        .api = api, .config = config, .settings = settings, .quiesced = {-1, -1}};
    if (generation_load(generation, err, err_length) != 0 ||
        generation_serve(generation, err, err_length) != 0) {
        generation_free(generation);
        return NULL;
    }
    /* A reload serves on the sockets already open: say which it was. */
    log_msg(LOG_INFO, config != NULL ? "api reloaded" : "api listening",
            "addr=%s tls=%s client_certificates=%s connections=%u per_source=%u "
            "request_timeout_s=%u health=%s",
            api->settings->listen, generation->cert_pem != NULL ? "yes" : "no",
            generation->client_ca_pem != NULL ? "required" : "no", settings->max_connections,
            settings->max_connections_per_source, settings->request_timeout_s,
            api->settings->health_listen != NULL ? api->settings->health_listen : "off");
    return generation;
}

/* Stops generation's daemons accepting: its connections go on, new ones reach the next one. */
static void retire(struct api_generation *generation)
{
    struct MHD_Daemon *daemons[] = {generation->daemon, generation->health_daemon};
    for (size_t i = 0; i < 2; i++) {
        if (daemons[i] != NULL)
            generation->quiesced[i] = MHD_quiesce_daemon(daemons[i]);
    }
}

static unsigned daemon_connections(struct MHD_Daemon *daemon)
{
    const union MHD_DaemonInfo *info =
        daemon != NULL ? MHD_get_daemon_info(daemon, MHD_DAEMON_INFO_CURRENT_CONNECTIONS) : NULL;
    return info != NULL ? info->num_connections : 0;
}

void api_collect_retired(struct api *api)
{
    struct api_generation *done = NULL;
    pthread_mutex_lock(&api->lock);
    for (struct api_generation **at = &api->retired; *at != NULL;) {
        struct api_generation *generation = *at;
        if (generation->streams == 0 && daemon_connections(generation->daemon) == 0 &&
            daemon_connections(generation->health_daemon) == 0) {
            *at = generation->next;
            generation->next = done;
            done = generation;
        } else {
            at = &generation->next;
        }
    }
    pthread_mutex_unlock(&api->lock);
    while (done != NULL) {
        struct api_generation *next = done->next;
        generation_free(done);
        done = next;
    }
}

static bool same_text(const char *a, const char *b)
{
    return (a == NULL || b == NULL) ? a == b : strcmp(a, b) == 0;
}

/* The settings fresh changes that only a restart applies, as a JSON array of their names. */
static json_t *restart_settings(const struct config_api *running, const struct config_api *fresh)
{
    const struct {
        const char *name;
        bool changed;
    } settings[] = {
        {"api.listen", !same_text(running->listen, fresh->listen)},
        {"api.healthListen", !same_text(running->health_listen, fresh->health_listen)},
        {"api.certificate", (running->cert_file == NULL) != (fresh->cert_file == NULL)},
        {"api.quotas.enrollmentGroups", running->quota_groups != fresh->quota_groups},
        {"api.quotas.hubs", running->quota_hubs != fresh->quota_hubs},
        {"api.quotas.blocklistEntries", running->quota_blocks != fresh->quota_blocks},
        {"api.quotas.requestsPerSecond",
         running->quota_requests_per_second != fresh->quota_requests_per_second},
        {"api.quotas.requestBurst", running->quota_request_burst != fresh->quota_request_burst},
    };
    json_t *names = json_array();
    for (size_t i = 0; names != NULL && i < sizeof(settings) / sizeof(settings[0]); i++) {
        if (settings[i].changed)
            json_array_append_new(names, json_string(settings[i].name));
    }
    return names;
}

struct api *api_bind(const struct config *config, char *err, size_t err_length)
{
    const struct config_api *settings = &config->api;
    if (settings->listen == NULL) {
        snprintf(err, err_length, "api.listen: required");
        return NULL;
    }
    if (settings->client_ca_file != NULL && settings->cert_file == NULL) {
        snprintf(err, err_length, "api.clientCA: needs api.certificate and api.key (HTTPS)");
        return NULL;
    }
    if ((settings->jwks_file == NULL && settings->jwks_url == NULL &&
         settings->authority == NULL) ||
        settings->issuer == NULL) {
        snprintf(err, err_length,
                 "api.issuer and one of api.jwks, api.jwksUrl, api.authority: "
                 "required");
        return NULL;
    }
    struct api *api = calloc(1, sizeof(*api));
    if (api == NULL || (api->rates = json_object()) == NULL ||
        (api->restart_required = json_array()) == NULL) {
        if (api != NULL)
            json_decref(api->rates);
        free(api);
        snprintf(err, err_length, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&api->lock, NULL);
    pthread_cond_init(&api->idle, NULL);
    pthread_mutex_init(&api->conns_lock, NULL);
    pthread_cond_init(&api->reaper_wake, NULL);
    pthread_mutex_init(&api->rates_lock, NULL);
    api->settings = settings;
    api->socket.fd = -1;
    api->health_socket.fd = -1;
    static const char *const keys[] = {"api.listen", "api.healthListen"};
    const char *const addresses[] = {settings->listen, settings->health_listen};
    struct api_socket *sockets[] = {&api->socket, &api->health_socket};
    for (size_t i = 0; i < 2; i++) {
        if (addresses[i] == NULL)
            continue;
        if (bind_listener(keys[i], i == 0 ? "--api-listen HOST:PORT or api.listen" : keys[i],
                          addresses[i], sockets[i], err, err_length) != 0) {
            api_stop(api);
            return NULL;
        }
        if (settings->cert_file == NULL && !sockets[i]->loopback) {
            snprintf(err, err_length,
                     "%s: %s is not a loopback address: plain HTTP is refused there; set "
                     "api.certificate and api.key",
                     keys[i], addresses[i]);
            api_stop(api);
            return NULL;
        }
    }
    return api;
}

int api_start(struct api *api, struct plane *plane, char *err, size_t err_length)
{
    api->plane = plane;
    if (pthread_create(&api->reaper, NULL, api_reaper_run, api) != 0) {
        snprintf(err, err_length, "cannot start the API's deadline thread");
        return -1;
    }
    api->reaper_started = true;
    api->current = generation_start(api, api->settings, NULL, err, err_length);
    return api->current != NULL ? 0 : -1;
}

int api_reload(struct api *api, struct config *fresh, char *err, size_t err_length)
{
    json_t *restart = restart_settings(api->settings, &fresh->api);
    if (restart == NULL) {
        config_free(fresh);
        snprintf(err, err_length, "out of memory");
        return -1;
    }
    if (json_array_size(restart) > 0) {
        char *names = json_dumps(restart, JSON_COMPACT);
        log_msg(LOG_WARN, "api settings changed that need a restart",
                "settings=%s (in force: the values dpsd started with)",
                names != NULL ? names : "?");
        free(names);
    }
    pthread_mutex_lock(&api->lock);
    json_decref(api->restart_required);
    api->restart_required = restart;
    pthread_mutex_unlock(&api->lock);
    if (fresh->api.listen == NULL ||
        (fresh->api.cert_file == NULL) != (api->settings->cert_file == NULL)) {
        config_free(fresh);
        snprintf(err, err_length,
                 "api: the API section was removed, or HTTPS turned on or off: nothing of it "
                 "was reloaded until a restart");
        return -1;
    }
    struct api_generation *generation = generation_start(api, &fresh->api, fresh, err, err_length);
    if (generation == NULL)
        return -1;
    pthread_mutex_lock(&api->lock);
    struct api_generation *old = api->current;
    api->current = generation;
    old->next = api->retired;
    api->retired = old;
    pthread_mutex_unlock(&api->lock);
    retire(old);
    return 0;
}

json_t *api_restart_required(struct api *api)
{
    pthread_mutex_lock(&api->lock);
    json_t *names = json_copy(api->restart_required);
    pthread_mutex_unlock(&api->lock);
    return names;
}

void api_stop(struct api *api)
{
    if (api == NULL)
        return;
    /* New connections stop first, then the retired generations' last ones are cut. */
    struct api_generation *current = api->current;
    if (current != NULL)
        retire(current);
    pthread_mutex_lock(&api->lock);
    if (current != NULL) {
        current->next = api->retired;
        api->retired = current;
    }
    struct api_generation *generations = api->retired;
    api->retired = NULL;
    api->current = NULL;
    pthread_mutex_unlock(&api->lock);
    for (struct api_generation *g = generations; g != NULL; g = g->next) {
        if (g->health_daemon != NULL)
            MHD_stop_daemon(g->health_daemon);
        if (g->daemon != NULL)
            MHD_stop_daemon(g->daemon);
        g->daemon = g->health_daemon = NULL;
    }
    pthread_mutex_lock(&api->lock);
    while (api->producers > 0)
        pthread_cond_wait(&api->idle, &api->lock);
    pthread_mutex_unlock(&api->lock);
    if (api->reaper_started) {
        pthread_mutex_lock(&api->conns_lock);
        api->stopping = true;
        pthread_cond_signal(&api->reaper_wake);
        pthread_mutex_unlock(&api->conns_lock);
        pthread_join(api->reaper, NULL);
    }
    while (generations != NULL) {
        struct api_generation *next = generations->next;
        generation_free(generations);
        generations = next;
    }
    if (api->socket.fd >= 0)
        close(api->socket.fd);
    if (api->health_socket.fd >= 0)
        close(api->health_socket.fd);
    json_decref(api->rates);
    json_decref(api->restart_required);
    pthread_mutex_destroy(&api->lock);
    pthread_cond_destroy(&api->idle);
    pthread_mutex_destroy(&api->conns_lock);
    pthread_cond_destroy(&api->reaper_wake);
    pthread_mutex_destroy(&api->rates_lock);
    free(api);
}

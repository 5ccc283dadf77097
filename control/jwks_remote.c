/*
 * jwks_remote: one thread that fetches an identity provider's JWKS and hands
 * it to auth (control/jwks_remote.h).
 *
 * The thread owns the fetching; API threads only ask (jwks_remote_refresh)
 * and wait on a completion counter under the lock, never longer than one
 * discovery plus one JWKS request. The minimum interval is measured from the
 * start of the last fetch on the monotonic clock, whatever asked for it, so
 * periodic, failed and on-demand fetches share one budget.
 *
 * The discovered jwks_uri is kept between fetches and discovered again only
 * after a JWKS fetch fails: a provider that moves its keys is followed, a
 * healthy one costs one request per refresh.
 *
 * The figures /metrics shows (jwks_remote_stats) are the process's, under
 * their own lock, shared by every fetcher it runs: a fetcher started anew
 * (the API opened again) counts on from where the previous one stopped.
 */
#include "control/jwks_remote.h"
#include "common/log.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#define JWKS_DOCUMENT_MAX (1024 * 1024)
#define DISCOVERY_PATH "/.well-known/openid-configuration"
/* What curl may take beyond its own --max-time before it is killed. */
#define JWKS_KILL_GRACE_S 2

extern char **environ;

struct jwks_remote {
    char *authority;
    char *jwks_url; /* configured, or discovered (thread-only then) */
    char *ca_file;
    bool discovered;
    unsigned refresh_s;
    unsigned min_refresh_s;
    unsigned timeout_s;
    jwks_remote_install install;
    void *arg;

    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t wake; /* the thread: a request or stop */
    pthread_cond_t done; /* waiters: a fetch finished */
    bool stopping;
    bool requested;
    bool fetching;
    uint64_t completed; /* fetches finished */
    uint64_t installed; /* key sets installed */
    struct timespec last_start;
    bool started_once;
};

static pthread_mutex_t stats_lock = PTHREAD_MUTEX_INITIALIZER;
static struct jwks_remote_stats stats;

void jwks_remote_stats_get(struct jwks_remote_stats *out)
{
    pthread_mutex_lock(&stats_lock);
    *out = stats;
    pthread_mutex_unlock(&stats_lock);
}

/* Counts one fetch round: keys held after it, or -1 when it installed nothing. */
static void stats_count(int keys)
{
    pthread_mutex_lock(&stats_lock);
    stats.attempts++;
    if (keys < 0) {
        stats.failures++;
    } else {
        stats.keys = (unsigned)keys;
        stats.last_success_unix = (int64_t)time(NULL);
    }
    pthread_mutex_unlock(&stats_lock);
}

static void stats_providers(int change)
{
    pthread_mutex_lock(&stats_lock);
    stats.providers = (unsigned)((int)stats.providers + change);
    if (stats.providers == 0)
        stats.keys = 0;
    pthread_mutex_unlock(&stats_lock);
}

static struct timespec monotonic_now(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return now;
}

static struct timespec after(struct timespec from, unsigned seconds)
{
    from.tv_sec += (time_t)seconds;
    return from;
}

static bool reached(struct timespec now, struct timespec when)
{
    return now.tv_sec > when.tv_sec || (now.tv_sec == when.tv_sec && now.tv_nsec >= when.tv_nsec);
}

const char *jwks_remote_url_problem(const char *url)
{
    static const char *const loopback[] = {"[::1]", "localhost", NULL};
    if (url == NULL || url[0] == '\0')
        return "must be a URL";
    if (strncasecmp(url, "https://", 8) == 0)
        return url[8] != '\0' && url[8] != '/' ? NULL : "names no host";
    if (strncasecmp(url, "http://", 7) != 0)
        return "must be an https:// URL";
    const char *host = url + 7;
    size_t host_length = host[0] == '[' ? strcspn(host, "]") + 1 : strcspn(host, ":/?#");
    /* 127.0.0.0/8 as a dotted address, never a name that merely starts with "127." */
    if (strncmp(host, "127.", 4) == 0 && strspn(host, "0123456789.") == host_length)
        return NULL;
    for (size_t i = 0; loopback[i] != NULL; i++) {
        if (host_length == strlen(loopback[i]) && strncasecmp(host, loopback[i], host_length) == 0)
            return NULL;
    }
    return "http:// only to a loopback host (keys fetched in the clear could be anyone's): use "
           "https://";
}

/* Reads both pipes of the child until they close or the deadline passes. */
static int collect(int out_fd, int err_fd, struct timespec deadline, char *body, size_t *length,
                   char *message, size_t message_size)
{
    struct pollfd fds[2] = {{.fd = out_fd, .events = POLLIN}, {.fd = err_fd, .events = POLLIN}};
    size_t message_length = 0;
    *length = 0;
    while (fds[0].fd >= 0 || fds[1].fd >= 0) {
        struct timespec now = monotonic_now();
        if (reached(now, deadline))
            return -1;
        long wait_ms = (long)(deadline.tv_sec - now.tv_sec) * 1000 +
                       (deadline.tv_nsec - now.tv_nsec) / 1000000 + 1;
        if (poll(fds, 2, (int)wait_ms) < 0 && errno != EINTR)
            return -1;
        for (int i = 0; i < 2; i++) {
            if (fds[i].fd < 0 || fds[i].revents == 0)
                continue;
            char scratch[512];
            char *into = i == 0 ? body + *length : scratch;
            size_t room = i == 0 ? JWKS_DOCUMENT_MAX - *length : sizeof(scratch);
            ssize_t got = room > 0 ? read(fds[i].fd, into, room) : 0;
            if (got < 0 && errno == EINTR)
                continue;
            if (got <= 0) {
                fds[i].fd = -1;
                continue;
            }
            if (i == 0) {
                *length += (size_t)got;
            } else if (message_length + 1 < message_size) {
                size_t take = (size_t)got < message_size - 1 - message_length
                                  ? (size_t)got
                                  : message_size - 1 - message_length;
                memcpy(message + message_length, scratch, take);
                message_length += take;
                message[message_length] = '\0';
            }
        }
    }
    return 0;
}

/* The first line of curl's complaint, or a generic reason. */
static void curl_reason(const char *message, int status, char *err, size_t err_length)
{
    size_t line = strcspn(message, "\r\n");
    if (line > 0)
        snprintf(err, err_length, "%.*s", (int)line, message);
    else
        snprintf(err, err_length, "curl exited with status %d", status);
}

/* GETs url with curl; the body (malloc'd, NUL-terminated) or NULL with err. */
static char *http_get(const struct jwks_remote *remote, const char *url, size_t *length, char *err,
                      size_t err_length)
{
    char timeout[16];
    char max_size[24];
    snprintf(timeout, sizeof(timeout), "%u", remote->timeout_s);
    snprintf(max_size, sizeof(max_size), "%d", JWKS_DOCUMENT_MAX);
    const char *proto = strncasecmp(url, "https://", 8) == 0 ? "=https" : "=http";
    const char *argv[24] = {"curl",
                            "-q",
                            "--silent",
                            "--show-error",
                            "--fail",
                            "--proto",
                            proto,
                            "--max-time",
                            timeout,
                            "--max-filesize",
                            max_size,
                            "--header",
                            "Accept: application/json"};
    size_t argc = 13;
    if (remote->ca_file != NULL) {
        argv[argc++] = "--cacert";
        argv[argc++] = remote->ca_file;
    }
    argv[argc++] = "--url";
    argv[argc++] = url;
    argv[argc] = NULL;

    char *body = malloc(JWKS_DOCUMENT_MAX + 1);
    int out[2] = {-1, -1};
    int errors[2] = {-1, -1};
    posix_spawn_file_actions_t actions;
    posix_spawnattr_t attributes;
    sigset_t signals;
    pid_t pid = -1;
    posix_spawn_file_actions_init(&actions);
    posix_spawnattr_init(&attributes);
    if (body == NULL || pipe2(out, O_CLOEXEC) != 0 || pipe2(errors, O_CLOEXEC) != 0) {
        snprintf(err, err_length, "cannot fetch: %s", strerror(errno));
        goto fail;
    }
    /* The child starts with default signal handling and no signal blocked. */
    sigemptyset(&signals);
    posix_spawnattr_setsigmask(&attributes, &signals);
    sigaddset(&signals, SIGPIPE);
    posix_spawnattr_setsigdefault(&attributes, &signals);
    posix_spawnattr_setflags(&attributes, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&actions, out[1], 1);
    posix_spawn_file_actions_adddup2(&actions, errors[1], 2);
    int spawned = posix_spawnp(&pid, "curl", &actions, &attributes, (char *const *)argv, environ);
    close(out[1]);
    close(errors[1]);
    out[1] = errors[1] = -1;
    if (spawned != 0) {
        pid = -1;
        snprintf(err, err_length, "cannot run curl: %s", strerror(spawned));
        goto fail;
    }
    char message[256] = "";
    struct timespec deadline = after(monotonic_now(), remote->timeout_s + JWKS_KILL_GRACE_S);
    int collected = collect(out[0], errors[0], deadline, body, length, message, sizeof(message));
    if (collected < 0)
        kill(pid, SIGKILL);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    pid = -1;
    if (collected < 0) {
        snprintf(err, err_length, "no answer within %u s", remote->timeout_s + JWKS_KILL_GRACE_S);
        goto fail;
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        curl_reason(message, WIFEXITED(status) ? WEXITSTATUS(status) : -1, err, err_length);
        goto fail;
    }
    body[*length] = '\0';
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attributes);
    close(out[0]);
    close(errors[0]);
    return body;
fail:
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attributes);
    for (int i = 0; i < 2; i++) {
        if (out[i] >= 0)
            close(out[i]);
        if (errors[i] >= 0)
            close(errors[i]);
    }
    free(body);
    return NULL;
}

int jwks_remote_discovered_url(const char *document, size_t length, char **url, char *err,
                               size_t err_length)
{
    json_t *root = json_loadb(document, length, 0, NULL);
    const char *jwks_uri = json_string_value(json_object_get(root, "jwks_uri"));
    const char *url_problem = jwks_uri != NULL ? jwks_remote_url_problem(jwks_uri) : NULL;
    int result = -1;
    *url = NULL;
    if (!json_is_object(root))
        snprintf(err, err_length, "discovery document: not a JSON object");
    else if (jwks_uri == NULL)
        snprintf(err, err_length, "discovery document: no jwks_uri");
    else if (url_problem != NULL)
        snprintf(err, err_length, "discovery document: jwks_uri %s", url_problem);
    else if ((*url = strdup(jwks_uri)) == NULL)
        snprintf(err, err_length, "out of memory");
    else
        result = 0;
    json_decref(root);
    return result;
}

/* The jwks_uri the authority's discovery document names. 0, or -1 with err. */
static int discover(struct jwks_remote *remote, char *err, size_t err_length)
{
    size_t base_length = strlen(remote->authority);
    while (base_length > 0 && remote->authority[base_length - 1] == '/')
        base_length--;
    char url[2048];
    if (snprintf(url, sizeof(url), "%.*s%s", (int)base_length, remote->authority, DISCOVERY_PATH) >=
        (int)sizeof(url)) {
        snprintf(err, err_length, "authority too long");
        return -1;
    }
    size_t length = 0;
    char problem[256];
    char *body = http_get(remote, url, &length, problem, sizeof(problem));
    if (body == NULL) {
        snprintf(err, err_length, "discovery: %s", problem);
        return -1;
    }
    int result = jwks_remote_discovered_url(body, length, &remote->jwks_url, err, err_length);
    free(body);
    return result;
}

/* One round: discovery when needed, the JWKS, installed. The keys held, or -1. */
static int fetch_once(struct jwks_remote *remote)
{
    char err[512];
    size_t length = 0;
    char *body = NULL;
    if (remote->jwks_url == NULL && discover(remote, err, sizeof(err)) < 0) {
        log_msg(LOG_WARN, "operator keys not refreshed", "authority=\"%s\" reason=\"%s\"",
                remote->authority, err);
        return -1;
    }
    char problem[400];
    int keys = -1;
    body = http_get(remote, remote->jwks_url, &length, problem, sizeof(problem));
    if (body == NULL ||
        (keys = remote->install(remote->arg, body, length, problem, sizeof(problem))) < 0) {
        log_msg(LOG_WARN, "operator keys not refreshed", "jwks=\"%s\" reason=\"%s\"",
                remote->jwks_url, problem);
        if (remote->discovered) {
            free(remote->jwks_url);
            remote->jwks_url = NULL;
        }
        free(body);
        return -1;
    }
    free(body);
    log_msg(LOG_INFO, "operator keys refreshed", "jwks=\"%s\" keys=%d", remote->jwks_url, keys);
    return keys;
}

static void *fetch_thread(void *arg)
{
    struct jwks_remote *remote = arg;
    struct timespec next = monotonic_now();
    pthread_mutex_lock(&remote->lock);
    while (!remote->stopping) {
        struct timespec now = monotonic_now();
        if (!remote->requested && !reached(now, next)) {
            pthread_cond_timedwait(&remote->wake, &remote->lock, &next);
            continue;
        }
        remote->requested = false;
        remote->fetching = true;
        remote->last_start = now;
        remote->started_once = true;
        pthread_mutex_unlock(&remote->lock);
        int keys = fetch_once(remote);
        stats_count(keys);
        bool installed = keys >= 0;
        pthread_mutex_lock(&remote->lock);
        remote->fetching = false;
        remote->completed++;
        if (installed)
            remote->installed++;
        next = after(now, installed ? remote->refresh_s : remote->min_refresh_s);
        pthread_cond_broadcast(&remote->done);
    }
    pthread_mutex_unlock(&remote->lock);
    return NULL;
}

/* Waits (lock held) until more than target fetches completed or the bound passes. */
static void wait_completed(struct jwks_remote *remote, uint64_t target)
{
    /* Discovery and the JWKS, each with curl's grace. */
    struct timespec deadline =
        after(monotonic_now(), 2 * (remote->timeout_s + JWKS_KILL_GRACE_S) + 1);
    while (remote->completed < target && !remote->stopping) {
        if (pthread_cond_timedwait(&remote->done, &remote->lock, &deadline) == ETIMEDOUT)
            break;
    }
}

bool jwks_remote_refresh(struct jwks_remote *remote)
{
    pthread_mutex_lock(&remote->lock);
    bool pending = remote->fetching || remote->requested;
    if (!pending && remote->started_once &&
        !reached(monotonic_now(), after(remote->last_start, remote->min_refresh_s))) {
        pthread_mutex_unlock(&remote->lock);
        return false;
    }
    uint64_t installed = remote->installed;
    if (!pending) {
        remote->requested = true;
        pthread_cond_signal(&remote->wake);
    }
    wait_completed(remote, remote->completed + 1);
    bool fresh = remote->installed > installed;
    pthread_mutex_unlock(&remote->lock);
    return fresh;
}

static void remote_free(struct jwks_remote *remote)
{
    free(remote->authority);
    free(remote->jwks_url);
    free(remote->ca_file);
    free(remote);
}

static char *copy_or_null(const char *text, bool *failed)
{
    char *copy = text != NULL ? strdup(text) : NULL;
    if (text != NULL && copy == NULL)
        *failed = true;
    return copy;
}

struct jwks_remote *jwks_remote_start(const struct jwks_remote_settings *settings,
                                      jwks_remote_install install, void *arg, char *err,
                                      size_t err_length)
{
    const char *url = settings->jwks_url != NULL ? settings->jwks_url : settings->authority;
    const char *problem = jwks_remote_url_problem(url);
    if ((settings->jwks_url == NULL) == (settings->authority == NULL) || problem != NULL) {
        snprintf(err, err_length, "%s",
                 problem != NULL ? problem : "name either a JWKS URL or an authority");
        return NULL;
    }
    struct jwks_remote *remote = calloc(1, sizeof(*remote));
    bool failed = remote == NULL;
    if (remote != NULL) {
        remote->authority = copy_or_null(settings->authority, &failed);
        remote->jwks_url = copy_or_null(settings->jwks_url, &failed);
        remote->ca_file = copy_or_null(settings->ca_file, &failed);
        remote->discovered = settings->jwks_url == NULL;
        remote->refresh_s = settings->refresh_s;
        remote->min_refresh_s = settings->min_refresh_s;
        remote->timeout_s = settings->timeout_s;
        remote->install = install;
        remote->arg = arg;
    }
    if (failed) {
        snprintf(err, err_length, "out of memory");
        if (remote != NULL)
            remote_free(remote);
        return NULL;
    }
    pthread_condattr_t clock;
    pthread_condattr_init(&clock);
    pthread_condattr_setclock(&clock, CLOCK_MONOTONIC);
    pthread_mutex_init(&remote->lock, NULL);
    pthread_cond_init(&remote->wake, &clock);
    pthread_cond_init(&remote->done, &clock);
    pthread_condattr_destroy(&clock);
    int created = pthread_create(&remote->thread, NULL, fetch_thread, remote);
    if (created != 0) {
        snprintf(err, err_length, "cannot start the key fetching thread: %s", strerror(created));
        pthread_mutex_destroy(&remote->lock);
        pthread_cond_destroy(&remote->wake);
        pthread_cond_destroy(&remote->done);
        remote_free(remote);
        return NULL;
    }
    stats_providers(1);
    pthread_mutex_lock(&remote->lock);
    wait_completed(remote, 1);
    if (remote->installed == 0)
        log_msg(LOG_WARN, "no operator keys yet",
                "source=\"%s\" effect=\"tokens are refused until a fetch succeeds\" retry_s=%u",
                url, remote->min_refresh_s);
    pthread_mutex_unlock(&remote->lock);
    return remote;
}

void jwks_remote_stop(struct jwks_remote *remote)
{
    if (remote == NULL)
        return;
    pthread_mutex_lock(&remote->lock);
    remote->stopping = true;
    pthread_cond_broadcast(&remote->wake);
    pthread_cond_broadcast(&remote->done);
    pthread_mutex_unlock(&remote->lock);
    pthread_join(remote->thread, NULL);
    stats_providers(-1);
    pthread_mutex_destroy(&remote->lock);
    pthread_cond_destroy(&remote->wake);
    pthread_cond_destroy(&remote->done);
    remote_free(remote);
}

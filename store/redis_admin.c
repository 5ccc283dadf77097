/*
 * redis_admin: see redis_admin.h. hiredis's blocking API, one connection
 * per call, or one per session.
 */
#include "store/redis_admin.h"

#include <arpa/inet.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include "common/address.h"

#define ADMIN_KEY_MAX 256

static struct timeval admin_timeout(const struct config_cluster *cluster)
{
    unsigned ms = cluster->connect_timeout_ms > cluster->command_timeout_ms
                      ? cluster->connect_timeout_ms
                      : cluster->command_timeout_ms;
    if (ms == 0)
        ms = 1000;
    return (struct timeval){.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
}

static redisContext *connect_address(const char *host, int port, struct timeval timeout)
{
    redisContext *context = redisConnectWithTimeout(host, port, timeout);
    if (context != NULL && context->err == 0)
        redisSetTimeout(context, timeout);
    return context;
}

/* Asks each sentinel in turn for the primary's address. */
static int sentinel_primary(const struct config_cluster *cluster, struct timeval timeout,
                            char *host, size_t host_size, int *port)
{
    for (size_t i = 0; i < cluster->sentinel_count; i++) {
        char sentinel_host[128];
        uint16_t sentinel_port;
        if (address_split(cluster->sentinels[i], sentinel_host, sizeof(sentinel_host),
                          &sentinel_port) != 0)
            continue;
        redisContext *context = connect_address(sentinel_host, sentinel_port, timeout);
        if (context == NULL || context->err != 0) {
            redisFree(context);
            continue;
        }
        redisReply *reply =
            redisCommand(context, "SENTINEL get-master-addr-by-name %s", cluster->master_name);
        int found = -1;
        if (reply != NULL && reply->type == REDIS_REPLY_ARRAY && reply->elements == 2 &&
            reply->element[0]->type == REDIS_REPLY_STRING &&
            reply->element[1]->type == REDIS_REPLY_STRING &&
            strlen(reply->element[0]->str) < host_size) {
            snprintf(host, host_size, "%s", reply->element[0]->str);
            *port = atoi(reply->element[1]->str);
            found = 0;
        }
        freeReplyObject(reply);
        redisFree(context);
        if (found == 0)
            return 0;
    }
    return -1;
}

/* A reply that is not an error; else err is set and the reply freed. */
static redisReply *checked(redisContext *context, redisReply *reply, const char *what, char *err,
                           size_t err_length)
{
    if (reply == NULL) {
        snprintf(err, err_length, "redis %s: %s", what,
                 context->errstr[0] != '\0' ? context->errstr : "no answer");
        return NULL;
    }
    if (reply->type == REDIS_REPLY_ERROR) {
        snprintf(err, err_length, "redis %s: %s", what, reply->str);
        freeReplyObject(reply);
        return NULL;
    }
    return reply;
}

/* A ready connection to the primary (authenticated, database selected), or NULL with err. */
static redisContext *admin_connect(const struct config_cluster *cluster, char *err,
                                   size_t err_length)
{
    struct timeval timeout = admin_timeout(cluster);
    redisContext *context = NULL;
    char host[128];
    int port;
    if (cluster->redis != NULL && cluster->redis[0] == '/') {
        context = redisConnectUnixWithTimeout(cluster->redis, timeout);
        if (context != NULL && context->err == 0)
            redisSetTimeout(context, timeout);
    } else if (cluster->redis != NULL) {
        uint16_t redis_port;
        if (address_split(cluster->redis, host, sizeof(host), &redis_port) == 0)
            context = connect_address(host, redis_port, timeout);
    } else if (sentinel_primary(cluster, timeout, host, sizeof(host), &port) == 0) {
        context = connect_address(host, port, timeout);
    }
    if (context == NULL || context->err != 0) {
        snprintf(err, err_length, "redis unreachable: %s",
                 context != NULL ? context->errstr : "no address");
        redisFree(context);
        return NULL;
    }
    redisReply *reply = NULL;
    if (cluster->password != NULL) {
        reply = cluster->username != NULL
                    ? redisCommand(context, "AUTH %s %s", cluster->username, cluster->password)
                    : redisCommand(context, "AUTH %s", cluster->password);
        if ((reply = checked(context, reply, "AUTH", err, err_length)) == NULL) {
            redisFree(context);
            return NULL;
        }
        freeReplyObject(reply);
    }
    if (cluster->database != 0) {
        reply = redisCommand(context, "SELECT %u", cluster->database);
        if ((reply = checked(context, reply, "SELECT", err, err_length)) == NULL) {
            redisFree(context);
            return NULL;
        }
        freeReplyObject(reply);
    }
    return context;
}

static const char *prefix_of(const struct config_cluster *cluster)
{
    return cluster->key_prefix != NULL ? cluster->key_prefix : "dps:";
}

/* One command whose reply only has to be no error; an integer reply adds to *total. */
static int admin_command(redisContext *context, long long *total, char *err, size_t err_length,
                         const char *what, const char *format, ...)
{
    va_list arguments;
    va_start(arguments, format);
    redisReply *reply = redisvCommand(context, format, arguments);
    va_end(arguments);
    if ((reply = checked(context, reply, what, err, err_length)) == NULL)
        return -1;
    if (total != NULL && reply->type == REDIS_REPLY_INTEGER)
        *total += reply->integer;
    freeReplyObject(reply);
    return 0;
}

int redis_admin_release(const struct config_cluster *cluster, const char *owner_key,
                        const char *owner, const char *device_id, const char *record_id,
                        bool *removed, char *err, size_t err_length)
{
    *removed = false;
    redisContext *context = admin_connect(cluster, err, err_length);
    if (context == NULL)
        return -1;
    const char *prefix = prefix_of(cluster);
    char binding[ADMIN_KEY_MAX], conflict[ADMIN_KEY_MAX], channel[ADMIN_KEY_MAX];
    snprintf(binding, sizeof(binding), "%sbinding:%s:%s", prefix, owner_key, device_id);
    snprintf(conflict, sizeof(conflict), "%sconflict:%s:%s", prefix, owner_key, device_id);
    snprintf(channel, sizeof(channel), "%srelease", prefix);
    int status = -1;
    long long deleted = 0;
    redisReply *held =
        checked(context, redisCommand(context, "GET %s", binding), "GET", err, err_length);
    if (held != NULL) {
        status = admin_command(context, &deleted, err, err_length, "DEL", "DEL %s %s", binding,
                               conflict);
        /* Each identity key only while it still names this device id. */
        const char *records[] = {held->type == REDIS_REPLY_STRING ? held->str : NULL, record_id};
        for (size_t i = 0; status == 0 && i < 2; i++) {
            if (records[i] == NULL)
                continue;
            char identity[ADMIN_KEY_MAX];
            snprintf(identity, sizeof(identity), "%sidentity:%s:%s", prefix, owner_key, records[i]);
            status = admin_command(
                context, &deleted, err, err_length, "EVAL", "EVAL %s 1 %s %s",
                "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) "
                "end return 0",
                identity, device_id);
        }
        freeReplyObject(held);
    }
    char *message = NULL;
    if (status == 0 && asprintf(&message, "%s %s", device_id, owner) < 0) {
        message = NULL;
        snprintf(err, err_length, "out of memory");
        status = -1;
    }
    if (status == 0)
        status = admin_command(context, NULL, err, err_length, "PUBLISH", "PUBLISH %s %s", channel,
                               message);
    free(message);
    redisFree(context);
    *removed = deleted > 0;
    return status;
}

int redis_admin_conflicts(const struct config_cluster *cluster, const char *owner_key,
                          char (**device_ids)[37], size_t *count, char *err, size_t err_length)
{
    *device_ids = NULL;
    *count = 0;
    redisContext *context = admin_connect(cluster, err, err_length);
    if (context == NULL)
        return -1;
    char pattern[ADMIN_KEY_MAX];
    int length =
        snprintf(pattern, sizeof(pattern), "%sconflict:%s:", prefix_of(cluster), owner_key);
    snprintf(pattern + length, sizeof(pattern) - (size_t)length, "*");
    char cursor[32] = "0";
    int status = 0;
    do {
        redisReply *reply =
            checked(context, redisCommand(context, "SCAN %s MATCH %s COUNT 1000", cursor, pattern),
                    "SCAN", err, err_length);
        if (reply == NULL || reply->type != REDIS_REPLY_ARRAY || reply->elements != 2) {
            freeReplyObject(reply);
            status = -1;
            break;
        }
        snprintf(cursor, sizeof(cursor), "%s", reply->element[0]->str);
        redisReply *keys = reply->element[1];
        for (size_t i = 0; i < keys->elements; i++) {
            const char *key = keys->element[i]->str;
            if (keys->element[i]->type != REDIS_REPLY_STRING || strlen(key) != (size_t)length + 36)
                continue;
            char(*grown)[37] = realloc(*device_ids, (*count + 1) * sizeof(**device_ids));
            if (grown == NULL) {
                status = -1;
                snprintf(err, err_length, "out of memory");
                break;
            }
            *device_ids = grown;
            memcpy(grown[*count], key + length, 36);
            grown[*count][36] = '\0';
            (*count)++;
        }
        freeReplyObject(reply);
    } while (status == 0 && strcmp(cursor, "0") != 0);
    redisFree(context);
    if (status != 0) {
        free(*device_ids);
        *device_ids = NULL;
        *count = 0;
    }
    return status;
}

/* Back-off after a failed connection: 0.5 s, doubling, at most 4 s. */
#define SESSION_BACKOFF_MIN_MS 500u
#define SESSION_BACKOFF_MAX_MS 4000u

struct redis_admin_session {
    const struct config_cluster *cluster;
    redisContext *context; /* NULL: not connected */
    unsigned failures;     /* failed connections in a row */
    struct timespec retry_at;
    unsigned long connects;
};

struct redis_admin_session *redis_admin_session_new(const struct config_cluster *cluster)
{
    struct redis_admin_session *session = calloc(1, sizeof(*session));
    if (session != NULL)
        session->cluster = cluster;
    return session;
}

void redis_admin_session_free(struct redis_admin_session *session)
{
    if (session == NULL)
        return;
    redisFree(session->context);
    free(session);
}

unsigned long redis_admin_session_connects(const struct redis_admin_session *session)
{
    return session->connects;
}

/* After any failure the connection is not trusted again (a cut, a stall, READONLY). */
static void session_drop(struct redis_admin_session *session)
{
    redisFree(session->context);
    session->context = NULL;
}

static bool session_backing_off(const struct redis_admin_session *session)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return session->failures > 0 &&
           (now.tv_sec < session->retry_at.tv_sec ||
            (now.tv_sec == session->retry_at.tv_sec && now.tv_nsec < session->retry_at.tv_nsec));
}

/* The session's connection, opened if need be (force: even while backing off), or NULL with err. */
static redisContext *session_context(struct redis_admin_session *session, bool force, char *err,
                                     size_t err_length)
{
    if (session->context != NULL)
        return session->context;
    if (!force && session_backing_off(session)) {
        snprintf(err, err_length, "redis unreachable: waiting before connecting again");
        return NULL;
    }
    session->context = admin_connect(session->cluster, err, err_length);
    if (session->context != NULL) {
        session->failures = 0;
        session->connects++;
        /* A name for CLIENT LIST (operators, tests); an ACL that forbids it changes nothing. */
        freeReplyObject(redisCommand(session->context, "CLIENT SETNAME dps-admin-session"));
        if (session->context->err != 0) {
            snprintf(err, err_length, "redis: %s", session->context->errstr);
            session_drop(session);
        }
        return session->context;
    }
    unsigned shift = session->failures < 3 ? session->failures : 3;
    unsigned delay_ms = SESSION_BACKOFF_MIN_MS << shift;
    if (delay_ms > SESSION_BACKOFF_MAX_MS)
        delay_ms = SESSION_BACKOFF_MAX_MS;
    session->failures++;
    clock_gettime(CLOCK_MONOTONIC, &session->retry_at);
    session->retry_at.tv_sec += delay_ms / 1000;
    session->retry_at.tv_nsec += (long)(delay_ms % 1000) * 1000000L;
    if (session->retry_at.tv_nsec >= 1000000000L) {
        session->retry_at.tv_sec++;
        session->retry_at.tv_nsec -= 1000000000L;
    }
    return NULL;
}

/*
 * Writes node's entry for ttl_ms (entry not NULL) or removes it (entry
 * NULL): two commands pipelined, both replies read.
 */
static int node_entry_once(struct redis_admin_session *session, bool force, const char *node,
                           const char *entry, unsigned ttl_ms, char *err, size_t err_length)
{
    redisContext *context = session_context(session, force, err, err_length);
    if (context == NULL)
        return -1;
    const char *prefix = prefix_of(session->cluster);
    char key[ADMIN_KEY_MAX], nodes[ADMIN_KEY_MAX];
    snprintf(key, sizeof(key), "%snode:%s", prefix, node);
    snprintf(nodes, sizeof(nodes), "%snodes", prefix);
    int status = entry != NULL ? redisAppendCommand(context, "SET %s %s PX %u", key, entry, ttl_ms)
                               : redisAppendCommand(context, "DEL %s", key);
    if (status == REDIS_OK)
        status =
            redisAppendCommand(context, entry != NULL ? "SADD %s %s" : "SREM %s %s", nodes, node);
    if (status != REDIS_OK)
        snprintf(err, err_length, "redis: %s", context->errstr);
    const char *what[] = {entry != NULL ? "SET" : "DEL", entry != NULL ? "SADD" : "SREM"};
    /* Both replies are read even after an error one, so the connection stays in step. */
    for (size_t i = 0; status == REDIS_OK && i < 2; i++) {
        void *reply = NULL;
        if (redisGetReply(context, &reply) != REDIS_OK)
            reply = NULL;
        if (checked(context, reply, what[i], err, err_length) == NULL)
            status = REDIS_ERR;
        else
            freeReplyObject(reply);
    }
    if (status != REDIS_OK) {
        session_drop(session);
        return -1;
    }
    return 0;
}

/* A kept connection may have been closed by the server meanwhile (its idle timeout): one retry. */
static int admin_node_entry(struct redis_admin_session *session, bool force, const char *node,
                            const char *entry, unsigned ttl_ms, char *err, size_t err_length)
{
    bool reused = session->context != NULL;
    int status = node_entry_once(session, force, node, entry, ttl_ms, err, err_length);
    if (status != 0 && reused)
        status = node_entry_once(session, force, node, entry, ttl_ms, err, err_length);
    return status;
}

int redis_admin_heartbeat(struct redis_admin_session *session, const char *node, const char *entry,
                          unsigned ttl_ms, char *err, size_t err_length)
{
    return admin_node_entry(session, false, node, entry, ttl_ms, err, err_length);
}

int redis_admin_leave(struct redis_admin_session *session, const char *node, char *err,
                      size_t err_length)
{
    return admin_node_entry(session, true, node, NULL, 0, err, err_length);
}

void redis_admin_entries_free(char **entries, size_t count)
{
    for (size_t i = 0; i < count; i++)
        free(entries[i]);
    free(entries);
}

static int compare_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* SORT would also do it, but the names are few and SMEMBERS is one round trip. */
static int admin_node_names(redisContext *context, const char *nodes, char ***names, size_t *count,
                            char *err, size_t err_length)
{
    redisReply *reply =
        checked(context, redisCommand(context, "SMEMBERS %s", nodes), "SMEMBERS", err, err_length);
    if (reply == NULL)
        return -1;
    *count = 0;
    *names = calloc(reply->elements + 1, sizeof(char *));
    int status = *names != NULL ? 0 : -1;
    for (size_t i = 0; status == 0 && i < reply->elements; i++) {
        if (reply->element[i]->type != REDIS_REPLY_STRING)
            continue;
        if (((*names)[*count] = strdup(reply->element[i]->str)) == NULL)
            status = -1;
        else
            (*count)++;
    }
    freeReplyObject(reply);
    if (status != 0) {
        snprintf(err, err_length, "out of memory");
        redis_admin_entries_free(*names, *count);
        *names = NULL;
        *count = 0;
        return -1;
    }
    qsort(*names, *count, sizeof(char *), compare_names);
    return 0;
}

int redis_admin_nodes(const struct config_cluster *cluster, char ***entries, size_t *count,
                      char *err, size_t err_length)
{
    *entries = NULL;
    *count = 0;
    redisContext *context = admin_connect(cluster, err, err_length);
    if (context == NULL)
        return -1;
    const char *prefix = prefix_of(cluster);
    char nodes[ADMIN_KEY_MAX];
    snprintf(nodes, sizeof(nodes), "%snodes", prefix);
    char **names;
    size_t name_count;
    if (admin_node_names(context, nodes, &names, &name_count, err, err_length) != 0) {
        redisFree(context);
        return -1;
    }
    int status = 0;
    if ((*entries = calloc(name_count + 1, sizeof(char *))) == NULL) {
        snprintf(err, err_length, "out of memory");
        status = -1;
    }
    for (size_t i = 0; status == 0 && i < name_count; i++) {
        char key[ADMIN_KEY_MAX];
        snprintf(key, sizeof(key), "%snode:%s", prefix, names[i]);
        redisReply *reply =
            checked(context, redisCommand(context, "GET %s", key), "GET", err, err_length);
        if (reply == NULL) {
            status = -1;
        } else if (reply->type != REDIS_REPLY_STRING) {
            /* Expired: the node stopped beating. */
            status = admin_command(context, NULL, err, err_length, "SREM", "SREM %s %s", nodes,
                                   names[i]);
        } else if (((*entries)[*count] = strdup(reply->str)) == NULL) {
            snprintf(err, err_length, "out of memory");
            status = -1;
        } else {
            (*count)++;
        }
        freeReplyObject(reply);
    }
    redisFree(context);
    redis_admin_entries_free(names, name_count);
    if (status != 0) {
        redis_admin_entries_free(*entries, *count);
        *entries = NULL;
        *count = 0;
    }
    return status;
}

int redis_admin_local_address(struct redis_admin_session *session, char *address, size_t size,
                              char *err, size_t err_length)
{
    redisContext *context = session_context(session, false, err, err_length);
    if (context == NULL)
        return -1;
    struct sockaddr_storage local;
    socklen_t length = sizeof(local);
    int status = -1;
    if (getsockname(context->fd, (struct sockaddr *)&local, &length) == 0) {
        const void *bytes = local.ss_family == AF_INET6
                                ? (const void *)&((struct sockaddr_in6 *)&local)->sin6_addr
                                : (const void *)&((struct sockaddr_in *)&local)->sin_addr;
        if ((local.ss_family == AF_INET || local.ss_family == AF_INET6) &&
            inet_ntop(local.ss_family, bytes, address, (socklen_t)size) != NULL)
            status = 0;
    }
    if (status != 0)
        snprintf(err, err_length, "redis: no local IP address (a unix socket?)");
    return status;
}

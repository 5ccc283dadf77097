/*
 * fanout: see fanout.h. Each source is a thread writing into a pipe; the
 * caller's thread reads one line of each at a time and emits the smallest
 * key. A pipe's capacity bounds what a fast source runs ahead of the merge.
 */
#include "control/fanout.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "control/cluster_view.h"
#include "control/peer_client.h"

struct source {
    const struct fanout_request *request;
    char name[128];
    char url[192];
    int (*local)(void *user, int fd);
    void *local_user;
    int write_fd;
    FILE *in;
    pthread_t thread;
    bool started;
    int status;
    char err[256];
    /* The merge's view: the next result and its key, or done. */
    json_t *head;
    char *key; /* the key fields' values, each followed by \x01: sorts field by field */
    bool done;
    char stream_error[256];
};

static void *source_run(void *user)
{
    struct source *source = user;
    if (source->local != NULL) {
        source->status = source->local(source->local_user, source->write_fd);
        if (source->status != 0)
            snprintf(source->err, sizeof(source->err), "reading the store failed");
    } else {
        const struct fanout_request *request = source->request;
        source->status =
            peer_get(source->url, request->trust_file, request->certificate_pem, request->key_pem,
                     request->path, request->token, request->connect_ms, request->stall_ms,
                     source->write_fd, source->err, sizeof(source->err));
    }
    close(source->write_fd);
    return NULL;
}

static int source_start(struct source *source)
{
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0)
        return -1;
    source->write_fd = fds[1];
    source->in = fdopen(fds[0], "r");
    if (source->in == NULL) {
        close(fds[0]);
        close(fds[1]);
        return -1;
    }
    if (pthread_create(&source->thread, NULL, source_run, source) != 0) {
        fclose(source->in);
        source->in = NULL;
        close(fds[1]);
        return -1;
    }
    source->started = true;
    return 0;
}

static char *result_key(const struct source *source, const json_t *result)
{
    char *key = NULL;
    size_t length = 0;
    FILE *out = open_memstream(&key, &length);
    if (out == NULL)
        return NULL;
    for (const char *const *field = source->request->key_fields; *field != NULL; field++) {
        const char *value = json_string_value(json_object_get(result, *field));
        fprintf(out, "%s\x01", value != NULL ? value : "");
    }
    if (fclose(out) != 0) {
        free(key);
        return NULL;
    }
    return key;
}

/* Reads the source's next result into head; an error line or the end marks it done. */
static void source_next(struct source *source, char **line, size_t *size)
{
    json_decref(source->head);
    free(source->key);
    source->head = NULL;
    source->key = NULL;
    while (!source->done) {
        if (getline(line, size, source->in) < 0) {
            source->done = true;
            break;
        }
        json_t *parsed = json_loads(*line, 0, NULL);
        json_t *result = json_object_get(parsed, "result");
        json_t *error = json_object_get(parsed, "error");
        if (json_is_object(result) && (source->key = result_key(source, result)) != NULL) {
            source->head = json_incref(result);
            json_decref(parsed);
            return;
        }
        const char *message = json_string_value(json_object_get(error, "message"));
        snprintf(source->stream_error, sizeof(source->stream_error), "%s",
                 message != NULL ? message : "an answer line that is not a result");
        json_decref(parsed);
        source->done = true;
    }
}

/* The k-way merge; false when emit stopped it. */
static bool merge(struct source *sources, size_t count, bool (*emit)(void *, json_t *),
                  void *emit_user)
{
    char *line = NULL;
    size_t size = 0;
    for (size_t i = 0; i < count; i++)
        source_next(&sources[i], &line, &size);
    bool going = true;
    for (;;) {
        struct source *first = NULL;
        for (size_t i = 0; i < count; i++) {
            if (sources[i].head != NULL &&
                (first == NULL || strcmp(sources[i].key, first->key) < 0))
                first = &sources[i];
        }
        if (first == NULL)
            break;
        json_t *merged = json_incref(first->head);
        for (struct source *other = first + 1; other < sources + count; other++) {
            if (other->head != NULL && strcmp(other->key, first->key) == 0) {
                if (merged == first->head) {
                    json_decref(merged);
                    merged = json_deep_copy(first->head);
                }
                json_object_update_missing(merged, other->head);
                source_next(other, &line, &size);
            }
        }
        going = merged != NULL && emit(emit_user, merged);
        json_decref(merged);
        if (!going)
            break;
        source_next(first, &line, &size);
    }
    free(line);
    return going;
}

int fanout_run(const struct fanout_request *request, const json_t *nodes,
               int (*local)(void *user, int fd), void *local_user,
               bool (*emit)(void *user, json_t *result), void *emit_user, json_t **unanswered)
{
    *unanswered = json_array();
    struct source *sources = calloc(json_array_size(nodes) + 1, sizeof(*sources));
    if (sources == NULL || *unanswered == NULL) {
        free(sources);
        json_decref(*unanswered);
        *unanswered = NULL;
        return -1;
    }
    size_t count = 0;
    sources[count].request = request;
    sources[count].local = local;
    sources[count].local_user = local_user;
    snprintf(sources[count].name, sizeof(sources[count].name), "%s", request->self);
    count++;
    size_t index;
    json_t *node;
    json_array_foreach(nodes, index, node)
    {
        const char *name = json_string_value(json_object_get(node, "name"));
        const char *url = json_string_value(json_object_get(node, "apiUrl"));
        if (name == NULL || strcmp(name, request->self) == 0)
            continue;
        struct source *source = &sources[count++];
        source->request = request;
        snprintf(source->name, sizeof(source->name), "%s", name);
        snprintf(source->url, sizeof(source->url), "%s", url != NULL ? url : "");
    }
    int status = 0;
    for (size_t i = 0; i < count; i++) {
        if (source_start(&sources[i]) != 0) {
            sources[i].done = true;
            snprintf(sources[i].err, sizeof(sources[i].err), "cannot start: %s", strerror(errno));
            status = i == 0 ? -1 : 0;
        }
    }
    bool complete = status == 0 && merge(sources, count, emit, emit_user);
    for (size_t i = 0; i < count; i++) {
        json_decref(sources[i].head);
        free(sources[i].key);
        /* Closing the read end stops a source still writing (the merge was cut short). */
        if (sources[i].in != NULL)
            fclose(sources[i].in);
        if (sources[i].started)
            pthread_join(sources[i].thread, NULL);
        /* The transport's failure explains a line cut short better than the line does. */
        const char *why = sources[i].status != 0 || !sources[i].started ? sources[i].err
                          : sources[i].stream_error[0] != '\0'          ? sources[i].stream_error
                                                                        : NULL;
        if (why == NULL || !complete)
            continue;
        if (i > 0)
            cluster_view_count_fanout_error();
        json_array_append_new(*unanswered,
                              json_pack("{s:s, s:s}", "name", sources[i].name, "error", why));
    }
    free(sources);
    return status;
}

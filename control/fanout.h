/*
 * fanout: one list through any node covers the whole cluster (issue 11).
 *
 * The node asked runs its own scan and asks every other live node
 * (control/cluster_view.h) for its part through control/peer_client.h, with
 * the caller's token and the forwarded mark: each peer applies the caller's
 * walls and answers from its own store. Every source yields newline-delimited
 * {"result": ...} lines in the order of key_fields (each node's store keeps
 * them in that order), so the answer is a k-way merge: bounded memory
 * whatever the fleet, the same order through any node, and a document that
 * two nodes both hold (a device renewed through another node) appears once,
 * its fields the union of theirs (the first node's value when both have a
 * field; the node asked comes first, then the peers by name).
 *
 * A source that fails (unreachable, too slow, an error line, a cut answer)
 * ends early and is reported in *unanswered; the results it sent before are
 * kept. The caller says so in the answer: partial, never silently short.
 */
#ifndef DPS_FANOUT_H
#define DPS_FANOUT_H

#include <stdbool.h>

#include <jansson.h>

struct fanout_request {
    const char *path;       /* the API path with its query, forwarded as is */
    const char *token;      /* the caller's bearer token */
    const char *trust_file; /* the API certificate (https peers), or NULL */
    /* This node's client certificate for https peers (peer_client.h): PEM text, or NULL. */
    const char *certificate_pem;
    const char *key_pem;
    /* The results' order: their values of these fields (NULL-terminated), compared in turn. */
    const char *const *key_fields;
    const char *self; /* this node's name: the local source's name, skipped among nodes */
    unsigned connect_ms;
    unsigned stall_ms;
};

/*
 * Merges local (run on a thread of its own: it writes lines to fd, which it
 * must not close, and returns 0 or -1) with the parts of nodes (cluster_view
 * entries). emit gets each merged result (borrowed) and returns false to
 * stop (the reader went away). *unanswered is a new array of {"name",
 * "error"} (empty when every source answered). 0, or -1 when nothing could
 * start (out of memory, no threads).
 */
int fanout_run(const struct fanout_request *request, const json_t *nodes,
               int (*local)(void *user, int fd), void *local_user,
               bool (*emit)(void *user, json_t *result), void *emit_user, json_t **unanswered);

#endif

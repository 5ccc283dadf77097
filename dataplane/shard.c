/*
 * shard: a thread that owns an event loop, its listeners and connections,
 * an OpenSSL library context with its TLS server context, and an
 * attestation object loaded into that context.
 *
 * A connection moves bytes up the layers: the loop hands ciphertext to the
 * TLS layer, decrypted bytes accumulate until a whole CoAP frame is there,
 * the frame is decoded and given to the DPS handlers, and their answer is
 * encoded, encrypted and queued on the loop. A connection serves one request
 * at a time (the device client never pipelines); frames that arrive while a
 * request waits for the signer or the store stay buffered, which bounds the
 * memory and work any single connection can claim.
 */
#include "dataplane/shard.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "common/address.h"
#include "common/log.h"
#include "crypto/attestation.h"
#include "crypto/lean_provider.h"
#include "crypto/uuid.h"
#include "dataplane/blocklist.h"
#include "dataplane/cluster.h"
#include "dataplane/cluster_rate.h"
#include "dataplane/coap_tcp.h"
#include "dataplane/loop.h"
#include "dataplane/mailbox.h"
#include "dataplane/proxy.h"
#include "dataplane/snapshot.h"
#include "dataplane/tls.h"

#define SHARD_MAX_LISTENERS 16
#define FRAME_HEADER_SLACK 16 /* Len/TKL, extended length, code, token */
#define RESPONSE_CAPACITY (8192 + 64)
/* Input a connection may buffer beyond one frame while its request waits. */
#define FLOOD_SLACK (16 * 1024)

enum conn_state {
    CONN_PROXY, /* from a trusted balancer: waiting for the PROXY header */
    CONN_HANDSHAKE,
    CONN_OPEN,
    CONN_CLOSING,
};

/*
 * One shard's view of one snapshot: its TLS context and attestation state,
 * built in the shard's own library context, and the services handlers use.
 * References are held by the shard (its current view, and a prepared one
 * during a publication), by each connection (the view it was accepted
 * under) and by each DPS operation in flight (through services.hold/drop,
 * see dps_handlers.c), so a view outlives every connection and operation
 * that reads it. Only the shard's thread touches the count; the view holds
 * its snapshot.
 */
struct shard_view {
    unsigned references;
    struct snapshot *snapshot;
    SSL_CTX *ssl_ctx;
    struct attestation *attestation;
    struct dps_services services;
};

/*
 * Pre-handshake admission: per source address, the connections it holds and
 * a GCRA arrival time for its connection rate. An open-addressing table per
 * shard; a slot whose source holds no connection and has no debt left is
 * reused. A table full of live sources admits without tracking (the shard's
 * own connection limit still holds).
 */
#define SOURCE_PROBES 64

struct source {
    uint8_t address[16];
    uint8_t family; /* 0: never used */
    unsigned connections;
    int64_t arrival_ns;
};

struct conn {
    struct dps_session session; /* first: handlers give it back to us */
    struct source *source;      /* NULL when not tracked */
    struct shard *shard;
    struct shard_view *view;
    struct loop_conn *link; /* NULL once the loop closed the socket */
    struct tls_conn *tls;
    enum conn_state state;
    unsigned busy; /* nesting depth of our own callbacks on this connection */
    bool in_dispatch;
    struct timespec opened;
    struct timespec last_activity;
    uint8_t *input;
    size_t input_length;
    size_t input_capacity;
    struct conn *prev;
    struct conn *next;
    char peer[64];
};

enum adoption_phase {
    ADOPT_PREPARE,
    ADOPT_COMMIT,
    ADOPT_ABORT,
};

/* A step of a publication, run on the shard's thread; one per shard, reused. */
struct adoption {
    struct mailbox_item item;
    struct shard *shard;
    enum adoption_phase phase;
    struct snapshot *snapshot; /* ADOPT_PREPARE: held until the view is built */
    shard_done_fn done;
    void *user;
};

struct shard {
    unsigned index;
    struct shard_view *view;     /* the current generation */
    struct shard_view *prepared; /* the next one, between prepare and decide */
    struct adoption adoption;
    struct store *store;
    struct cluster *cluster; /* NULL without cluster.redis; its client lives on the loop */
    struct cluster_rate *rate;
    pthread_t thread;
    bool started;
    OSSL_LIB_CTX *libctx;
    struct mailbox *mailbox;
    struct loop *loop;
    _Atomic(struct loop *) running_loop;
    atomic_bool stop_requested;
    enum loop_backend backend;
    int listeners[SHARD_MAX_LISTENERS];
    size_t listener_count;
    unsigned pending_ops;
    struct dps_counters *counters;
    struct conn *conns;
    struct source *sources;
    size_t source_slots;                /* a power of two */
    struct proxy_cidr *trusted_proxies; /* balancers whose connections start with PROXY */
    size_t trusted_proxy_count;
    size_t max_frame;
    _Atomic uint64_t accepted;
    _Atomic uint64_t handshakes_ok;
    _Atomic uint64_t handshakes_failed;
    _Atomic uint64_t requests;
    _Atomic uint64_t protocol_errors;
    _Atomic uint64_t blocked;
    _Atomic uint64_t refused_attestation;
    _Atomic uint64_t attestations_full;   /* chains verified in full */
    _Atomic uint64_t attestations_cached; /* leaves found in the verified-leaf cache */
    _Atomic uint64_t admission_refused;
    _Atomic uint64_t proxy_refused;
    _Atomic unsigned connections;
};

static int conn_verify(void *user, X509 *leaf, STACK_OF(X509) * chain);
static void adopt_run(struct mailbox_item *item);

static void view_release(struct shard_view *view)
{
    if (view == NULL || --view->references > 0) {
        return;
    }
    attestation_free(view->attestation);
    SSL_CTX_free(view->ssl_ctx);
    snapshot_release(view->snapshot);
    free(view);
}

static struct shard_view *view_of(const struct dps_services *services)
{
    return (struct shard_view *)((char *)services - offsetof(struct shard_view, services));
}

static void services_hold(const struct dps_services *services)
{
    view_of(services)->references++;
}

static void services_drop(const struct dps_services *services)
{
    view_release(view_of(services));
}

/* Builds the shard's view of a snapshot. NULL with err when its certificates do not load. */
static struct shard_view *view_create(struct shard *shard, struct snapshot *snapshot, char *err,
                                      size_t err_length)
{
    const struct config *config = snapshot->config;
    struct shard_view *view = calloc(1, sizeof(*view));
    if (view == NULL) {
        snprintf(err, err_length, "out of memory");
        return NULL;
    }
    view->references = 1;
    snapshot_retain(snapshot);
    view->snapshot = snapshot;
    view->ssl_ctx = tls_server_context_pem(shard->libctx, snapshot->tls_cert_pem,
                                           snapshot->tls_key_pem, conn_verify, err, err_length);
    if (view->ssl_ctx != NULL) {
        /* Groups the change did not touch keep the chains the current view proved. */
        view->attestation = attestation_create_from(
            shard->libctx, config, shard->view != NULL ? shard->view->attestation : NULL, err,
            err_length);
    }
    if (view->attestation == NULL) {
        view_release(view);
        return NULL;
    }
    view->services = (struct dps_services){
        .config = config,
        .catalog = snapshot->catalog,
        .signer = snapshot->signer,
        .store = shard->store,
        .mailbox = shard->mailbox,
        .libctx = shard->libctx,
        .rate = shard->rate,
        .blocklist = snapshot->blocklist,
        .cluster = shard->cluster,
        .pending_ops = &shard->pending_ops,
        .counters = shard->counters,
        .hold = services_hold,
        .drop = services_drop,
    };
    return view;
}

static double seconds_since(const struct timespec *then, const struct timespec *now)
{
    return (double)(now->tv_sec - then->tv_sec) + (double)(now->tv_nsec - then->tv_nsec) / 1e9;
}

/* ---- connection life ---- */

static void conn_free(struct conn *conn)
{
    struct shard *shard = conn->shard;
    if (conn->prev != NULL) {
        conn->prev->next = conn->next;
    } else if (shard->conns == conn) {
        shard->conns = conn->next;
    }
    if (conn->next != NULL) {
        conn->next->prev = conn->prev;
    }
    atomic_fetch_sub(&shard->connections, 1);
    if (conn->source != NULL) {
        conn->source->connections--;
    }
    tls_conn_free(conn->tls);
    dps_session_clear(&conn->session);
    view_release(conn->view);
    free(conn->input);
    free(conn);
}

/* The handlers release a session whose connection left while work was pending. */
static void session_release(struct dps_session *session)
{
    conn_free((struct conn *)session);
}

static void conn_process(struct conn *conn);
static void conn_flush(struct conn *conn);
static void conn_enter(struct conn *conn);
static void conn_leave(struct conn *conn);

/* The handlers are done with the session: take what the peer sent meanwhile. */
static void session_resume(struct dps_session *session)
{
    struct conn *conn = (struct conn *)session;
    conn_enter(conn);
    conn_process(conn);
    conn_flush(conn);
    conn_leave(conn);
}

/* Frees a connection the loop has closed, unless handlers still hold its session. */
static void conn_dispose(struct conn *conn)
{
    if (conn->session.pending > 0) {
        conn->session.gone = true;
        return;
    }
    conn_free(conn);
}

static void conn_enter(struct conn *conn)
{
    conn->busy++;
}

static void conn_leave(struct conn *conn)
{
    if (--conn->busy == 0 && conn->link == NULL) {
        conn_dispose(conn);
    }
}

static void conn_flush(struct conn *conn)
{
    if (conn->link == NULL) {
        return;
    }
    size_t length;
    const uint8_t *data = tls_conn_output(conn->tls, &length);
    if (length == 0) {
        return;
    }
    if (loop_send(conn->link, data, length) != 0) {
        tls_conn_consume_output(conn->tls, length);
        conn->state = CONN_CLOSING;
        loop_close(conn->link, true);
        return;
    }
    tls_conn_consume_output(conn->tls, length);
}

/* Sends what is pending (alerts, close_notify) and closes. */
static void conn_close(struct conn *conn, bool notify)
{
    if (conn->state == CONN_CLOSING || conn->link == NULL) {
        return;
    }
    if (notify && conn->state == CONN_OPEN) {
        tls_conn_shutdown(conn->tls);
    }
    conn->state = CONN_CLOSING;
    conn_flush(conn);
    if (conn->link != NULL) {
        loop_close(conn->link, false);
    }
}

static int conn_send_frame(struct conn *conn, uint8_t code, const uint8_t *token,
                           size_t token_length, const struct coap_option *options,
                           size_t option_count, const uint8_t *payload, size_t payload_length)
{
    uint8_t frame[RESPONSE_CAPACITY];
    long length = coap_tcp_encode(frame, sizeof(frame), code, token, token_length, options,
                                  option_count, payload, payload_length);
    if (length < 0) {
        return -1;
    }
    if (tls_conn_write(conn->tls, frame, (size_t)length) != 0) {
        return -1;
    }
    return 0;
}

static void conn_send_error(struct conn *conn, uint8_t code, const uint8_t *token,
                            size_t token_length, const char *message)
{
    conn_send_frame(conn, code, token, token_length, NULL, 0, (const uint8_t *)message,
                    strlen(message));
}

/*
 * Capabilities and Settings Message after the handshake. Its token is four
 * bytes so the message is longer than the 6-byte prefix the device client
 * reads before it parses a length.
 */
static void conn_send_csm(struct conn *conn)
{
    uint8_t token[4];
    uint8_t storage[4];
    struct coap_option option;
    RAND_bytes_ex(conn->shard->libctx, token, sizeof(token), 0);
    coap_option_make_uint(&option, COAP_OPTION_CSM_MAX_MESSAGE_SIZE,
                          (uint32_t)conn->view->services.config->max_message_size, storage);
    conn_send_frame(conn, COAP_SIGNAL_CSM, token, sizeof(token), &option, 1, NULL, 0);
}

static void conn_process(struct conn *conn);

/* Handlers answer here, at once or later from the mailbox, on the shard's thread. */
static void conn_reply(struct dps_session *session, const struct dps_response *response)
{
    struct conn *conn = (struct conn *)session;
    if (conn->link == NULL || conn->state != CONN_OPEN) {
        return;
    }
    conn_enter(conn);
    struct coap_option options[2];
    uint8_t storage[2][4];
    size_t count = 0;
    if (response->content_format >= 0) {
        coap_option_make_uint(&options[count], COAP_OPTION_CONTENT_FORMAT,
                              (uint32_t)response->content_format, storage[count]);
        count++;
    }
    if (response->max_age > 0) {
        coap_option_make_uint(&options[count], COAP_OPTION_MAX_AGE, response->max_age,
                              storage[count]);
        count++;
    }
    if (conn_send_frame(conn, response->code, response->token, response->token_length, options,
                        count, response->payload, response->payload_length) != 0) {
        conn_close(conn, false);
    }
    if (!conn->in_dispatch) {
        conn_process(conn);
        conn_flush(conn);
    }
    conn_leave(conn);
}

/* Options a request may carry; any other odd (critical) option is refused with 4.02. */
static bool option_understood(uint16_t number)
{
    switch (number) {
    case COAP_OPTION_URI_HOST:
    case 7: /* Uri-Port */
    case COAP_OPTION_URI_PATH:
    case COAP_OPTION_CONTENT_FORMAT:
    case COAP_OPTION_URI_QUERY:
    case COAP_OPTION_ACCEPT:
    case COAP_OPTION_OCF_ACCEPT_VERSION:
    case COAP_OPTION_OCF_CONTENT_VERSION:
        return true;
    default:
        return (number & 1) == 0;
    }
}

static void conn_request(struct conn *conn, const struct coap_message *message)
{
    struct shard *shard = conn->shard;
    atomic_fetch_add(&shard->requests, 1);
    for (size_t i = 0; i < message->option_count; i++) {
        if (!option_understood(message->options[i].number)) {
            conn_send_error(conn, COAP_BAD_OPTION, message->token, message->token_length,
                            "unsupported critical option");
            return;
        }
    }
    char path[256];
    if (coap_message_uri_path(message, path, sizeof(path)) != 0) {
        conn_send_error(conn, COAP_NOT_FOUND, message->token, message->token_length,
                        "no such resource");
        return;
    }
    struct dps_request request = {
        .method = message->code,
        .path = path,
        .content_format = -1,
        .accept = -1,
        .payload = message->payload,
        .payload_length = message->payload_length,
        .token_length = message->token_length,
    };
    memcpy(request.token, message->token, message->token_length);
    uint32_t value;
    const struct coap_option *option = coap_message_option(message, COAP_OPTION_CONTENT_FORMAT);
    if (option != NULL && coap_option_uint(option, &value) == 0) {
        request.content_format = (int)value;
    }
    option = coap_message_option(message, COAP_OPTION_ACCEPT);
    if (option != NULL && coap_option_uint(option, &value) == 0) {
        request.accept = (int)value;
    }
    dps_handle(&conn->view->services, &conn->session, &request, conn_reply);
}

static void conn_signal(struct conn *conn, const struct coap_message *message)
{
    switch (message->code) {
    case COAP_SIGNAL_PING:
        conn_send_frame(conn, COAP_SIGNAL_PONG, message->token, message->token_length, NULL, 0,
                        NULL, 0);
        break;
    case COAP_SIGNAL_RELEASE:
        conn_close(conn, true);
        break;
    case COAP_SIGNAL_ABORT:
        log_msg(LOG_INFO, "peer aborted", "peer=%s record=%s", conn->peer, conn->session.record_id);
        conn_close(conn, false);
        break;
    default: /* CSM and Pong need no answer */
        break;
    }
}

/* Handles every whole frame buffered, one request at a time. */
static void conn_handle_frames(struct conn *conn)
{
    struct shard *shard = conn->shard;
    size_t offset = 0;
    while (conn->state == CONN_OPEN && conn->session.pending == 0 && offset < conn->input_length) {
        size_t frame_length;
        int status = coap_tcp_frame_length(conn->input + offset, conn->input_length - offset,
                                           shard->max_frame, &frame_length);
        if (status == COAP_NEED_MORE ||
            (status == COAP_OK && frame_length > conn->input_length - offset)) {
            break;
        }
        if (status == COAP_TOO_LARGE) {
            atomic_fetch_add(&shard->protocol_errors, 1);
            conn_send_error(conn, COAP_REQUEST_ENTITY_TOO_LARGE, NULL, 0, "message too large");
            conn_close(conn, true);
            break;
        }
        struct coap_message message;
        if (status != COAP_OK ||
            coap_tcp_decode(conn->input + offset, frame_length, &message) != COAP_OK) {
            atomic_fetch_add(&shard->protocol_errors, 1);
            log_msg(LOG_INFO, "malformed frame", "peer=%s record=%s", conn->peer,
                    conn->session.record_id);
            conn_close(conn, false);
            break;
        }
        conn->in_dispatch = true;
        if (message.code >= COAP_SIGNAL_CSM) {
            conn_signal(conn, &message);
        } else if (message.code >= COAP_GET && message.code <= COAP_DELETE) {
            conn_request(conn, &message);
        } else if (message.code != COAP_EMPTY) {
            conn_send_error(conn, COAP_BAD_REQUEST, message.token, message.token_length,
                            "not a request");
        }
        conn->in_dispatch = false;
        offset += frame_length;
    }
    if (offset > 0) {
        memmove(conn->input, conn->input + offset, conn->input_length - offset);
        conn->input_length -= offset;
    }
    if (conn->input_length == 0 && conn->session.pending == 0) {
        /* An idle connection keeps no plaintext buffer. */
        free(conn->input);
        conn->input = NULL;
        conn->input_capacity = 0;
    }
}

static void conn_process(struct conn *conn)
{
    while (conn->state == CONN_OPEN && conn->link != NULL) {
        conn_handle_frames(conn);
        if (conn->state != CONN_OPEN || conn->session.pending > 0) {
            return;
        }
        if (conn->input == NULL) {
            conn->input_capacity = conn->shard->max_frame;
            conn->input = malloc(conn->input_capacity);
            if (conn->input == NULL) {
                conn_close(conn, false);
                return;
            }
        }
        int n = tls_conn_read(conn->tls, conn->input + conn->input_length,
                              conn->input_capacity - conn->input_length);
        if (n > 0) {
            conn->input_length += (size_t)n;
            continue;
        }
        if (n == TLS_CLOSED) {
            conn_close(conn, true);
        } else if (n == TLS_FAILED) {
            conn_close(conn, false);
        }
        if (conn->input_length == 0) {
            free(conn->input);
            conn->input = NULL;
            conn->input_capacity = 0;
        }
        return;
    }
}

static void conn_handshake(struct conn *conn)
{
    struct shard *shard = conn->shard;
    int status = tls_conn_handshake(conn->tls);
    if (status == TLS_AGAIN) {
        return;
    }
    if (status == TLS_FAILED) {
        atomic_fetch_add(&shard->handshakes_failed, 1);
        log_msg(LOG_INFO, "handshake failed", "peer=%s reason=\"%s\"", conn->peer,
                tls_conn_error(conn->tls));
        conn_close(conn, false);
        return;
    }
    atomic_fetch_add(&shard->handshakes_ok, 1);
    conn->state = CONN_OPEN;
    conn->session.peer = conn->peer;
    dps_session_start(&conn->view->services, &conn->session);
    log_msg(LOG_DEBUG, "handshake", "peer=%s record=%s version=%s cipher=%s", conn->peer,
            conn->session.record_id, tls_conn_version(conn->tls), tls_conn_cipher(conn->tls));
    conn_send_csm(conn);
}

/* Whether the attested device is on its owner's blocklist (by key, record or serial). */
static bool conn_blocked(const struct conn *conn, X509 *leaf)
{
    const struct blocklist *blocklist = conn->view->snapshot->blocklist;
    const struct attestation_result *result = &conn->session.attestation;
    const char *owner = conn->view->services.config->groups[result->group_index].owner;
    char key[400], text[UUID_STRING_LENGTH + 1];
    uuid_format(&result->record_id, text);
    snprintf(key, sizeof(key), "record:%s", text);
    if (blocklist_contains(blocklist, owner, key)) {
        return true;
    }
    static const char HEX[] = "0123456789abcdef";
    memcpy(key, "spki:", 5);
    for (size_t i = 0; i < sizeof(result->spki_sha256); i++) {
        key[5 + 2 * i] = HEX[result->spki_sha256[i] >> 4];
        key[5 + 2 * i + 1] = HEX[result->spki_sha256[i] & 0xf];
    }
    key[5 + 2 * sizeof(result->spki_sha256)] = '\0';
    if (blocklist_contains(blocklist, owner, key)) {
        return true;
    }
    if (!blocklist_has_serials(blocklist)) {
        return false;
    }
    /* Serial as hex without leading zeros, then the issuer as OpenSSL prints it (RFC 2253). */
    size_t length = (size_t)snprintf(key, sizeof(key), "serial:");
    bool leading = true;
    for (size_t i = 0; i < result->leaf_serial_length; i++) {
        unsigned byte = result->leaf_serial[i];
        if (leading && byte == 0 && i + 1 < result->leaf_serial_length) {
            continue;
        }
        length +=
            (size_t)snprintf(key + length, sizeof(key) - length, leading ? "%x" : "%02x", byte);
        leading = false;
    }
    key[length++] = '/';
    BIO *bio = BIO_new(BIO_s_mem());
    if (bio == NULL) {
        return false;
    }
    X509_NAME_print_ex(bio, X509_get_issuer_name(leaf), 0, XN_FLAG_RFC2253);
    int read = BIO_read(bio, key + length, (int)(sizeof(key) - length - 1));
    BIO_free(bio);
    key[length + (read > 0 ? (size_t)read : 0)] = '\0';
    return blocklist_contains(blocklist, owner, key);
}

/*
 * The view's attestation counts on this thread only and lives as long as the view; what one
 * verification added goes to the shard's counters, which outlive views and are read by /metrics.
 */
static int conn_attest(struct conn *conn, X509 *leaf, STACK_OF(X509) * chain, char *reason,
                       size_t reason_length)
{
    struct attestation_stats before, after;

    attestation_get_stats(conn->view->attestation, &before);
    int status = attestation_verify(conn->view->attestation, leaf, chain, time(NULL),
                                    &conn->session.attestation, reason, reason_length);
    attestation_get_stats(conn->view->attestation, &after);
    atomic_fetch_add(&conn->shard->attestations_full, after.verifications - before.verifications);
    atomic_fetch_add(&conn->shard->attestations_cached, after.cache_hits - before.cache_hits);
    return status;
}

static int conn_verify(void *user, X509 *leaf, STACK_OF(X509) * chain)
{
    struct conn *conn = user;
    char reason[160];
    if (conn_attest(conn, leaf, chain, reason, sizeof(reason)) != 0) {
        log_msg(LOG_INFO, "device refused", "peer=%s reason=\"%s\"", conn->peer, reason);
        atomic_fetch_add(&conn->shard->refused_attestation, 1);
        return -1;
    }
    if (conn_blocked(conn, leaf)) {
        atomic_fetch_add(&conn->shard->blocked, 1);
        log_msg(LOG_INFO, "device refused", "peer=%s reason=\"blocked\"", conn->peer);
        return -1;
    }
    free(conn->session.leaf_pem);
    conn->session.leaf_pem = attestation_leaf_pem(leaf);
    return 0;
}

/* ---- admission ---- */

static int64_t monotonic_ns(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (int64_t)now.tv_sec * 1000000000 + now.tv_nsec;
}

static size_t source_key(const struct sockaddr *peer, uint8_t address[16], uint8_t *family)
{
    memset(address, 0, 16);
    if (peer->sa_family == AF_INET) {
        memcpy(address, &((const struct sockaddr_in *)peer)->sin_addr, 4);
        *family = 4;
        return 4;
    }
    memcpy(address, &((const struct sockaddr_in6 *)peer)->sin6_addr, 16);
    *family = 6;
    return 16;
}

/*
 * Finds or claims the source's slot. Returns NULL when the table has no room
 * within SOURCE_PROBES (the source is then not tracked).
 */
static struct source *source_find(struct shard *shard, const struct sockaddr *peer, int64_t now)
{
    uint8_t address[16], family;
    size_t length = source_key(peer, address, &family);
    uint64_t hash = 1469598103934665603ULL;
    for (size_t i = 0; i < length; i++) {
        hash = (hash ^ address[i]) * 1099511628211ULL;
    }
    size_t mask = shard->source_slots - 1;
    struct source *reusable = NULL;
    for (size_t probe = 0; probe < SOURCE_PROBES; probe++) {
        struct source *slot = &shard->sources[(hash + probe) & mask];
        if (slot->family == family && memcmp(slot->address, address, 16) == 0) {
            return slot;
        }
        bool idle = slot->family == 0 || (slot->connections == 0 && slot->arrival_ns <= now);
        if (idle && reusable == NULL) {
            reusable = slot;
        }
        if (slot->family == 0) {
            break;
        }
    }
    if (reusable != NULL) {
        memcpy(reusable->address, address, 16);
        reusable->family = family;
        reusable->connections = 0;
        reusable->arrival_ns = now;
    }
    return reusable;
}

/* Whether a new connection from this source fits its budget; takes one unit if so. */
static bool source_admit(const struct config *config, struct source *source, int64_t now)
{
    if (config->max_connections_per_source > 0 &&
        source->connections >= config->max_connections_per_source) {
        return false;
    }
    if (config->connection_rate_per_source > 0) {
        int64_t interval = 1000000000LL / config->connection_rate_per_source;
        int64_t tolerance = (int64_t)(config->connection_burst_per_source - 1) * interval;
        int64_t start = source->arrival_ns > now ? source->arrival_ns : now;
        if (start - now > tolerance) {
            return false;
        }
        source->arrival_ns = start + interval;
    }
    source->connections++;
    return true;
}

/*
 * Per-source admission for a connection from peer (the device's address).
 * Takes a unit of the source's budget into *source (NULL when untracked);
 * false, counted, when the source is over it.
 */
static bool conn_admit_source(struct shard *shard, const struct config *config,
                              const struct sockaddr *peer, struct source **source)
{
    int64_t now = monotonic_ns();
    bool budgeted =
        config->max_connections_per_source > 0 || config->connection_rate_per_source > 0;
    *source = budgeted ? source_find(shard, peer, now) : NULL;
    if (*source != NULL && !source_admit(config, *source, now)) {
        *source = NULL;
        atomic_fetch_add(&shard->admission_refused, 1);
        return false;
    }
    return true;
}

static void format_peer(const struct sockaddr *peer, char *out, size_t out_length)
{
    char host[INET6_ADDRSTRLEN] = "?";
    unsigned port = 0;
    if (peer->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)peer;
        inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
        port = ntohs(in->sin_port);
        snprintf(out, out_length, "%s:%u", host, port);
    } else if (peer->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)peer;
        inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
        port = ntohs(in6->sin6_port);
        snprintf(out, out_length, "[%s]:%u", host, port);
    } else {
        snprintf(out, out_length, "?");
    }
}

/*
 * A balancer's connection: collects its PROXY header (at most
 * PROXY_MAX_HEADER bytes, within the handshake timeout), admits the
 * device's address and feeds what follows the header to TLS. Returns true
 * when the connection moved on to its handshake; false when more header is
 * needed or the connection was closed.
 */
static bool conn_proxy_header(struct conn *conn, const uint8_t *data, size_t length)
{
    struct shard *shard = conn->shard;
    const uint8_t *bytes = data;
    size_t available = length, unbuffered = 0;
    if (conn->input_length > 0) {
        size_t take = conn->input_capacity - conn->input_length;
        take = take < length ? take : length;
        memcpy(conn->input + conn->input_length, data, take);
        conn->input_length += take;
        bytes = conn->input;
        available = conn->input_length;
        unbuffered = length - take;
    }
    struct proxy_header header;
    enum proxy_status status = proxy_parse(bytes, available, &header);
    if (status == PROXY_NEED_MORE && available < PROXY_MAX_HEADER) {
        if (conn->input == NULL) {
            conn->input_capacity = PROXY_MAX_HEADER;
            conn->input = malloc(conn->input_capacity);
            if (conn->input == NULL) {
                conn_close(conn, false);
                return false;
            }
            memcpy(conn->input, data, length);
            conn->input_length = length;
        }
        return false;
    }
    if (status != PROXY_OK) {
        atomic_fetch_add(&shard->proxy_refused, 1);
        log_msg(LOG_INFO, "proxy header refused", "peer=%s", conn->peer);
        conn_close(conn, false);
        return false;
    }
    if (header.has_source) {
        char balancer[64];
        snprintf(balancer, sizeof(balancer), "%s", conn->peer);
        format_peer((const struct sockaddr *)&header.source, conn->peer, sizeof(conn->peer));
        log_msg(LOG_DEBUG, "proxied", "peer=%s balancer=%s", conn->peer, balancer);
        if (!conn_admit_source(shard, conn->view->services.config,
                               (const struct sockaddr *)&header.source, &conn->source)) {
            conn_close(conn, false);
            return false;
        }
    }
    conn->state = CONN_HANDSHAKE;
    /* What followed the header: the rest of bytes, then what did not fit in the buffer. */
    int rc = tls_conn_feed(conn->tls, bytes + header.length, available - header.length);
    if (rc == 0 && unbuffered > 0) {
        rc = tls_conn_feed(conn->tls, data + length - unbuffered, unbuffered);
    }
    free(conn->input);
    conn->input = NULL;
    conn->input_length = 0;
    conn->input_capacity = 0;
    if (rc != 0) {
        conn_close(conn, false);
        return false;
    }
    return true;
}

/* ---- loop callbacks ---- */

static void *on_accepted(void *user, struct loop_conn *link, const struct sockaddr *peer,
                         socklen_t peer_length)
{
    struct shard *shard = user;
    (void)peer_length;
    /* The peer reset before the accept completed: nothing left to serve. */
    if (peer == NULL) {
        return NULL;
    }
    const struct config *config = shard->view->services.config;
    if (atomic_load(&shard->connections) >= config->max_connections) {
        atomic_fetch_add(&shard->admission_refused, 1);
        return NULL;
    }
    /*
     * Refused here, a source over its budget costs no TLS work at all. A
     * balancer's connection is admitted by the device address its PROXY
     * header names, once that has arrived.
     */
    bool proxied = shard->trusted_proxy_count > 0 &&
                   proxy_cidr_match(shard->trusted_proxies, shard->trusted_proxy_count, peer);
    struct source *source = NULL;
    if (!proxied && !conn_admit_source(shard, config, peer, &source)) {
        return NULL;
    }
    struct conn *conn = calloc(1, sizeof(*conn));
    if (conn == NULL) {
        if (source != NULL) {
            source->connections--;
        }
        return NULL;
    }
    conn->source = source;
    conn->tls = tls_conn_new(shard->view->ssl_ctx, true, conn);
    if (conn->tls == NULL) {
        if (source != NULL) {
            source->connections--;
        }
        free(conn);
        return NULL;
    }
    conn->view = shard->view;
    conn->view->references++;
    conn->shard = shard;
    conn->link = link;
    conn->state = proxied ? CONN_PROXY : CONN_HANDSHAKE;
    conn->session.release = session_release;
    conn->session.resume = session_resume;
    clock_gettime(CLOCK_MONOTONIC, &conn->opened);
    conn->last_activity = conn->opened;
    format_peer(peer, conn->peer, sizeof(conn->peer));
    conn->next = shard->conns;
    if (shard->conns != NULL) {
        shard->conns->prev = conn;
    }
    shard->conns = conn;
    atomic_fetch_add(&shard->accepted, 1);
    atomic_fetch_add(&shard->connections, 1);
    return conn;
}

static void on_received(void *user, const uint8_t *data, size_t length)
{
    struct conn *conn = user;
    if (conn->state == CONN_CLOSING) {
        return;
    }
    conn_enter(conn);
    clock_gettime(CLOCK_MONOTONIC, &conn->last_activity);
    if (conn->state == CONN_PROXY) {
        if (conn_proxy_header(conn, data, length)) {
            conn_handshake(conn);
            conn_flush(conn);
        }
    } else if (tls_conn_feed(conn->tls, data, length) != 0) {
        conn_close(conn, false);
    } else if (conn->session.pending > 0 &&
               tls_conn_input_buffered(conn->tls) > conn->shard->max_frame + FLOOD_SLACK) {
        /*
         * While a request waits for the workers nothing is read, so input
         * piles up; the device client never sends more than one request at
         * a time, so a peer that sends this much meanwhile is flooding.
         */
        atomic_fetch_add(&conn->shard->protocol_errors, 1);
        log_msg(LOG_INFO, "flood refused", "peer=%s record=%s buffered=%zu", conn->peer,
                conn->session.record_id, tls_conn_input_buffered(conn->tls));
        conn_close(conn, false);
    } else {
        if (conn->state == CONN_HANDSHAKE) {
            conn_handshake(conn);
        }
        if (conn->state == CONN_OPEN) {
            conn_process(conn);
        }
        conn_flush(conn);
    }
    conn_leave(conn);
}

static void on_closed(void *user, int error)
{
    struct conn *conn = user;
    (void)error;
    conn->link = NULL;
    conn->state = CONN_CLOSING;
    if (conn->busy == 0) {
        conn_dispose(conn);
    }
}

static const struct loop_handler shard_handler = {
    .accepted = on_accepted,
    .received = on_received,
    .closed = on_closed,
};

/* Closes connections stuck in the handshake or idle for too long. */
static void on_tick(void *user)
{
    struct shard *shard = user;
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    struct conn *next;
    for (struct conn *conn = shard->conns; conn != NULL; conn = next) {
        next = conn->next;
        if (conn->link == NULL || conn->state == CONN_CLOSING || conn->session.pending > 0) {
            continue;
        }
        if ((conn->state == CONN_HANDSHAKE || conn->state == CONN_PROXY) &&
            seconds_since(&conn->opened, &now) > conn->view->services.config->handshake_timeout_s) {
            log_msg(LOG_INFO, "handshake timeout", "peer=%s", conn->peer);
            conn_close(conn, false);
        } else if (conn->state == CONN_OPEN &&
                   seconds_since(&conn->last_activity, &now) >
                       conn->view->services.config->inactivity_timeout_s) {
            log_msg(LOG_DEBUG, "idle timeout", "peer=%s", conn->peer);
            conn_close(conn, true);
        }
    }
}

static void on_mailbox(void *user)
{
    struct shard *shard = user;
    mailbox_drain(shard->mailbox);
}

/* ---- listeners ---- */

/*
 * A socket bound to bound, SO_REUSEPORT when shared, listening when listening; -1 with errno.
 */
static int bind_device_socket(const struct sockaddr_storage *bound, bool shared, bool listening)
{
    int fd = socket(bound->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
        (shared && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0) ||
        (bound->ss_family == AF_INET6 &&
         setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) != 0) ||
        /* Before listen(): connections inherit it, also those queued before loop_listen(). */
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) != 0 ||
        bind(fd, (const struct sockaddr *)bound, address_length(bound)) != 0 ||
        (listening && listen(fd, 4096) != 0)) {
        int error = errno;
        if (fd >= 0) {
            close(fd);
        }
        errno = error;
        return -1;
    }
    return fd;
}

/*
 * A device listener on address (common/address.h), shared by the shards (SO_REUSEPORT). The
 * first shard first binds the port alone, without SO_REUSEPORT: a port another process holds
 * (a second dpsd of the same user would otherwise join the group and silently take part of this
 * one's devices) stops dpsd with that reason and the option to change it.
 */
static int open_listener(const char *address, bool first, char *err, size_t err_length)
{
    struct sockaddr_storage bound;
    const char *problem = address_listen(address, &bound);
    if (problem != NULL) {
        snprintf(err, err_length, "listen: \"%s\": %s", address, problem);
        return -1;
    }
    int fd = first ? bind_device_socket(&bound, false, false) : -1;
    if (!first || fd >= 0) {
        if (fd >= 0) {
            close(fd);
        }
        fd = bind_device_socket(&bound, true, true);
    }
    if (fd < 0 && errno == EADDRINUSE) {
        snprintf(err, err_length,
                 "listen: %s: port %u is in use (another dpsd?): choose a free one with --listen "
                 "HOST:PORT or listen",
                 address, (unsigned)address_port(&bound));
    } else if (fd < 0) {
        snprintf(err, err_length, "listen: \"%s\": %s", address, strerror(errno));
    }
    return fd;
}

/* ---- shard ---- */

struct shard *shard_create(unsigned index, struct snapshot *snapshot, struct store *store,
                           struct admission *admission, char *err, size_t err_length)
{
    const struct config *config = snapshot->config;
    struct shard *shard = calloc(1, sizeof(*shard));
    if (shard == NULL) {
        snprintf(err, err_length, "out of memory");
        return NULL;
    }
    shard->index = index;
    shard->adoption.item.run = adopt_run;
    shard->adoption.shard = shard;
    shard->store = store;
    shard->max_frame = config->max_message_size + FRAME_HEADER_SLACK;
    for (size_t i = 0; i < SHARD_MAX_LISTENERS; i++) {
        shard->listeners[i] = -1;
    }
    /* Lean on OpenSSL 3.0: fewer decoders to enumerate per certificate (lean_provider.h). */
    shard->libctx = lean_libctx_new(err, err_length);
    if (shard->libctx == NULL) {
        goto fail;
    }
    shard->mailbox = mailbox_create();
    shard->counters = dps_counters_new();
    if (shard->mailbox == NULL || shard->counters == NULL) {
        snprintf(err, err_length, "out of memory");
        goto fail;
    }
    shard->rate = cluster_rate_create(config, index, admission);
    if (shard->rate == NULL) {
        snprintf(err, err_length, "out of memory");
        goto fail;
    }
    if (config->cluster.redis != NULL || config->cluster.sentinel_count > 0) {
        shard->cluster = cluster_create(&config->cluster, index, store, err, err_length);
        if (shard->cluster == NULL) {
            goto fail;
        }
    }
    shard->view = view_create(shard, snapshot, err, err_length);
    if (shard->view == NULL) {
        goto fail;
    }
    shard->source_slots = 1024;
    while (shard->source_slots < 2 * (size_t)config->max_connections &&
           shard->source_slots < (1u << 22)) {
        shard->source_slots *= 2;
    }
    shard->sources = calloc(shard->source_slots, sizeof(*shard->sources));
    if (shard->sources == NULL) {
        snprintf(err, err_length, "out of memory");
        goto fail;
    }
    if (config->cluster.trusted_proxy_count > 0) {
        shard->trusted_proxies =
            calloc(config->cluster.trusted_proxy_count, sizeof(*shard->trusted_proxies));
        if (shard->trusted_proxies == NULL) {
            snprintf(err, err_length, "out of memory");
            goto fail;
        }
        for (size_t i = 0; i < config->cluster.trusted_proxy_count; i++) {
            if (proxy_cidr_parse(config->cluster.trusted_proxies[i], &shard->trusted_proxies[i]) !=
                0) {
                snprintf(err, err_length, "cluster.trustedProxies[%zu]: not a CIDR", i);
                goto fail;
            }
        }
        shard->trusted_proxy_count = config->cluster.trusted_proxy_count;
    }
    if (config->listen_count > SHARD_MAX_LISTENERS) {
        snprintf(err, err_length, "at most %d listen addresses", SHARD_MAX_LISTENERS);
        goto fail;
    }
    for (size_t i = 0; i < config->listen_count; i++) {
        shard->listeners[i] = open_listener(config->listen[i], index == 0, err, err_length);
        if (shard->listeners[i] < 0) {
            goto fail;
        }
        shard->listener_count++;
    }
    shard->backend =
        config->io_backend == CONFIG_IO_EPOLL ? LOOP_BACKEND_EPOLL : LOOP_BACKEND_URING;
    return shard;
fail:
    shard_finish(shard);
    return NULL;
}

static void adopt_run(struct mailbox_item *item)
{
    struct adoption *adoption = (struct adoption *)item;
    struct shard *shard = adoption->shard;
    shard_done_fn done = adoption->done;
    void *user = adoption->user;
    char err[512] = "";
    int status = 0;
    switch (adoption->phase) {
    case ADOPT_PREPARE:
        view_release(shard->prepared);
        shard->prepared = view_create(shard, adoption->snapshot, err, sizeof(err));
        if (shard->prepared == NULL) {
            log_msg(LOG_ERROR, "snapshot refused", "shard=%u generation=%llu error=\"%s\"",
                    shard->index, (unsigned long long)adoption->snapshot->generation, err);
            status = -1;
        }
        snapshot_release(adoption->snapshot);
        adoption->snapshot = NULL;
        break;
    case ADOPT_COMMIT:
        if (shard->prepared != NULL) {
            view_release(shard->view);
            shard->view = shard->prepared;
            shard->prepared = NULL;
            log_msg(LOG_DEBUG, "snapshot adopted", "shard=%u generation=%llu", shard->index,
                    (unsigned long long)shard->view->snapshot->generation);
        }
        break;
    case ADOPT_ABORT:
        view_release(shard->prepared);
        shard->prepared = NULL;
        break;
    }
    /* The caller may post the next phase as soon as it is told: the item is free from here. */
    done(user, status, err);
}

void shard_prepare(struct shard *shard, struct snapshot *snapshot, shard_done_fn done, void *user)
{
    snapshot_retain(snapshot);
    shard->adoption.phase = ADOPT_PREPARE;
    shard->adoption.snapshot = snapshot;
    shard->adoption.done = done;
    shard->adoption.user = user;
    mailbox_post(shard->mailbox, &shard->adoption.item);
}

void shard_decide(struct shard *shard, bool commit, shard_done_fn done, void *user)
{
    shard->adoption.phase = commit ? ADOPT_COMMIT : ADOPT_ABORT;
    shard->adoption.done = done;
    shard->adoption.user = user;
    mailbox_post(shard->mailbox, &shard->adoption.item);
}

/* Asks a shard to stop accepting; freed when run. */
struct drain_request {
    struct mailbox_item item;
    struct shard *shard;
};

/*
 * Stops accepting and shuts the listeners down, so the kernel refuses new
 * connections at once instead of queueing them for a shard that will never
 * take them (clients then go to another node).
 */
static void drain_run(struct mailbox_item *item)
{
    struct drain_request *request = (struct drain_request *)item;
    struct shard *shard = request->shard;
    if (shard->loop != NULL) {
        loop_stop_accepting(shard->loop);
    }
    for (size_t i = 0; i < shard->listener_count; i++) {
        shutdown(shard->listeners[i], SHUT_RDWR);
    }
    log_msg(LOG_INFO, "shard draining", "shard=%u connections=%u", shard->index,
            atomic_load(&shard->connections));
    free(request);
}

void shard_drain(struct shard *shard)
{
    struct drain_request *request = calloc(1, sizeof(*request));
    if (request == NULL) {
        return;
    }
    request->item.run = drain_run;
    request->shard = shard;
    mailbox_post(shard->mailbox, &request->item);
}

static void *shard_main(void *arg)
{
    struct shard *shard = arg;
    char err[256];
    struct loop *loop = loop_create(shard->backend, &shard_handler, shard, err, sizeof(err));
    if (loop == NULL) {
        log_msg(LOG_ERROR, "event loop failed", "shard=%u error=\"%s\"", shard->index, err);
        return NULL;
    }
    shard->loop = loop;
    shard->backend = loop_backend_of(loop);
    int rc = loop_watch_eventfd(loop, mailbox_fd(shard->mailbox), on_mailbox, shard);
    if (rc == 0) {
        rc = loop_set_tick(loop, 1000, on_tick, shard);
    }
    if (rc == 0 && shard->cluster != NULL &&
        cluster_start(shard->cluster, loop, shard->libctx, err, sizeof(err)) != 0) {
        log_msg(LOG_ERROR, "redis client failed", "shard=%u error=\"%s\"", shard->index, err);
        rc = -EINVAL;
    }
    if (rc == 0 && cluster_rate_start(shard->rate, loop, shard->cluster) != 0) {
        log_msg(LOG_ERROR, "rate limits failed", "shard=%u error=\"out of memory\"", shard->index);
        rc = -ENOMEM;
    }
    for (size_t i = 0; rc == 0 && i < shard->listener_count; i++) {
        rc = loop_listen(loop, shard->listeners[i]);
    }
    if (rc != 0) {
        log_msg(LOG_ERROR, "event loop failed", "shard=%u error=\"%s\"", shard->index,
                strerror(-rc));
    } else {
        log_msg(LOG_INFO, "shard started", "shard=%u backend=%s", shard->index,
                loop_backend_name(shard->backend));
        atomic_store(&shard->running_loop, loop);
        if (!atomic_load(&shard->stop_requested)) {
            rc = loop_run(loop);
        }
        atomic_store(&shard->running_loop, NULL);
        if (rc != 0) {
            log_msg(LOG_ERROR, "event loop stopped", "shard=%u error=\"%s\"", shard->index,
                    strerror(-rc));
        }
    }
    /* Claims still waiting for Redis go back to their ops (through the mailbox) first. */
    cluster_rate_stop(shard->rate);
    cluster_stop(shard->cluster);
    loop_destroy(loop);
    shard->loop = NULL;
    return NULL;
}

int shard_start(struct shard *shard)
{
    int rc = pthread_create(&shard->thread, NULL, shard_main, shard);
    if (rc != 0) {
        return -rc;
    }
    shard->started = true;
    char name[32];
    snprintf(name, sizeof(name), "dps-shard-%u", shard->index);
    name[15] = '\0'; /* the kernel's limit for thread names */
    pthread_setname_np(shard->thread, name);
    return 0;
}

void shard_stop(struct shard *shard)
{
    atomic_store(&shard->stop_requested, true);
    struct loop *loop = atomic_load(&shard->running_loop);
    if (loop != NULL) {
        loop_stop(loop);
    }
}

void shard_join(struct shard *shard)
{
    if (!shard->started) {
        return;
    }
    /* A stop may race with the loop starting: repeat until the thread is out. */
    struct timespec pause = {.tv_nsec = 10 * 1000 * 1000};
    while (pthread_tryjoin_np(shard->thread, NULL) == EBUSY) {
        shard_stop(shard);
        nanosleep(&pause, NULL);
    }
    shard->started = false;
}

unsigned shard_collect(struct shard *shard)
{
    mailbox_drain(shard->mailbox);
    return shard->pending_ops;
}

void shard_finish(struct shard *shard)
{
    if (shard == NULL) {
        return;
    }
    shard_join(shard);
    if (shard->mailbox != NULL) {
        mailbox_drain(shard->mailbox);
        mailbox_destroy(shard->mailbox);
    }
    for (size_t i = 0; i < SHARD_MAX_LISTENERS; i++) {
        if (shard->listeners[i] >= 0) {
            close(shard->listeners[i]);
        }
    }
    view_release(shard->prepared);
    view_release(shard->view);
    dps_counters_free(shard->counters);
    cluster_free(shard->cluster);
    cluster_rate_free(shard->rate);
    free(shard->trusted_proxies);
    free(shard->sources);
    lean_libctx_free(shard->libctx);
    free(shard);
}

const char *shard_backend_name(const struct shard *shard)
{
    return loop_backend_name(shard->backend);
}

void shard_get_stats(const struct shard *shard, struct shard_stats *stats)
{
    stats->accepted = atomic_load(&shard->accepted);
    stats->handshakes_ok = atomic_load(&shard->handshakes_ok);
    stats->handshakes_failed = atomic_load(&shard->handshakes_failed);
    stats->requests = atomic_load(&shard->requests);
    stats->protocol_errors = atomic_load(&shard->protocol_errors);
    stats->blocked = atomic_load(&shard->blocked);
    stats->refused_attestation = atomic_load(&shard->refused_attestation);
    stats->attestations_full = atomic_load(&shard->attestations_full);
    stats->attestations_cached = atomic_load(&shard->attestations_cached);
    stats->admission_refused = atomic_load(&shard->admission_refused);
    stats->proxy_refused = atomic_load(&shard->proxy_refused);
    stats->connections = atomic_load(&shard->connections);
}

bool shard_cluster_status(const struct shard *shard, struct cluster_status *status)
{
    if (shard->cluster == NULL) {
        return false;
    }
    cluster_get_status(shard->cluster, status);
    return true;
}

/*
 * Tests for the cluster-wide lists (control/fanout.h over
 * control/peer_client.h), against a small HTTP server on loopback whose
 * answer each test picks by path: the local part and the peers' parts come
 * out merged in key order, a document two nodes hold comes once with the
 * union of its fields; the caller's token and the forwarded mark reach the
 * peer; a peer that refuses, cuts its answer, stalls or answers an error
 * line is named among the unanswered, its results before that kept; a
 * token never goes in clear to a peer off loopback.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "control/fanout.h"
#include "control/peer_client.h"

#define STALL_MS 300

static int listener = -1;
static char base_url[64];
static pthread_t server_thread;
static char last_request[2048];

/* The answer for path (raw bytes; "STALL" holds the connection past STALL_MS without a byte). */
static const char *answer_for(const char *path)
{
    if (strncmp(path, "/chunked", 8) == 0)
        return "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
               "1c\r\n{\"result\":{\"id\":\"b\",\"x\":2}}\n\r\n"
               "26\r\n{\"result\":{\"id\":\"c\",\"y\":3}}\n{\"result\":\r\n"
               "12\r\n{\"id\":\"e\",\"x\":5}}\n\r\n0\r\n\r\n";
    if (strncmp(path, "/plain", 6) == 0)
        return "HTTP/1.1 200 OK\r\nContent-Length: 28\r\n\r\n{\"result\":{\"id\":\"c\",\"x\":9}}\n";
    if (strncmp(path, "/refused", 8) == 0)
        return "HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n";
    if (strncmp(path, "/cut", 4) == 0)
        return "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
               "1c\r\n{\"result\":{\"id\":\"f\",\"x\":6}}\n\r\n40\r\n{\"res";
    if (strncmp(path, "/error", 6) == 0)
        return "HTTP/1.1 200 OK\r\nContent-Length: 75\r\n\r\n{\"result\":{\"id\":\"g\",\"x\":7}}\n"
               "{\"error\":{\"code\":13,\"message\":\"store failed\"}}\n";
    return "STALL";
}

static void *server_run(void *user)
{
    (void)user;
    for (;;) {
        int connection = accept(listener, NULL, NULL);
        if (connection < 0)
            return NULL;
        char request[2048];
        size_t length = 0;
        while (length < sizeof(request) - 1) {
            ssize_t got = recv(connection, request + length, sizeof(request) - 1 - length, 0);
            if (got <= 0)
                break;
            length += (size_t)got;
            request[length] = '\0';
            if (strstr(request, "\r\n\r\n") != NULL)
                break;
        }
        request[length] = '\0';
        snprintf(last_request, sizeof(last_request), "%s", request);
        char path[256] = "";
        sscanf(request, "GET %255s", path);
        const char *answer = answer_for(path);
        if (strcmp(answer, "STALL") == 0)
            usleep(3 * STALL_MS * 1000);
        else
            send(connection, answer, strlen(answer), MSG_NOSIGNAL);
        close(connection);
    }
}

static int setup(void **state)
{
    (void)state;
    listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t size = sizeof(address);
    if (listener < 0 || bind(listener, (struct sockaddr *)&address, size) != 0 ||
        listen(listener, 16) != 0 || getsockname(listener, (struct sockaddr *)&address, &size) != 0)
        return -1;
    snprintf(base_url, sizeof(base_url), "http://127.0.0.1:%u", ntohs(address.sin_port));
    return pthread_create(&server_thread, NULL, server_run, NULL) == 0 ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    shutdown(listener, SHUT_RDWR);
    close(listener);
    pthread_join(server_thread, NULL);
    return 0;
}

/* The local source: ids a, c and d. */
static int local_part(void *user, int fd)
{
    (void)user;
    static const char lines[] = "{\"result\":{\"id\":\"a\",\"x\":1}}\n"
                                "{\"result\":{\"id\":\"c\",\"x\":0}}\n"
                                "{\"result\":{\"id\":\"d\",\"x\":4}}\n";
    return write(fd, lines, sizeof(lines) - 1) == (ssize_t)(sizeof(lines) - 1) ? 0 : -1;
}

static bool collect(void *user, json_t *result)
{
    json_array_append(user, result);
    return true;
}

/* Runs the fan-out with the local part and a peer per path; the merged results' ids joined. */
static json_t *run(const char *path, size_t peer_count, json_t **unanswered, char *ids,
                   size_t ids_size)
{
    static const char *const key_fields[] = {"id", NULL};
    json_t *nodes = json_array();
    for (size_t i = 0; i < peer_count; i++) {
        char name[16], url[128];
        snprintf(name, sizeof(name), "peer%zu", i);
        snprintf(url, sizeof(url), "%s", base_url);
        json_array_append_new(nodes, json_pack("{s:s, s:s}", "name", name, "apiUrl", url));
    }
    json_array_append_new(nodes, json_pack("{s:s, s:s}", "name", "self", "apiUrl", "http://x:1"));
    /* Each peer is asked path, and the server answers by path: one kind of peer per run. */
    json_t *results = json_array();
    struct fanout_request request = {.path = path,
                                     .token = "the-token",
                                     .key_fields = key_fields,
                                     .self = "self",
                                     .connect_ms = 1000,
                                     .stall_ms = STALL_MS};
    assert_int_equal(fanout_run(&request, nodes, local_part, NULL, collect, results, unanswered),
                     0);
    json_decref(nodes);
    ids[0] = '\0';
    size_t index;
    json_t *result;
    json_array_foreach(results, index, result)
    {
        strncat(ids, json_string_value(json_object_get(result, "id")), ids_size - strlen(ids) - 1);
    }
    return results;
}

/* run() with every peer answering: the results, whose ids in order must be expected_ids. */
static json_t *run_answered(const char *path, size_t peer_count, const char *expected_ids)
{
    json_t *unanswered;
    char ids[64];
    json_t *results = run(path, peer_count, &unanswered, ids, sizeof(ids));
    assert_string_equal(ids, expected_ids);
    assert_int_equal(json_array_size(unanswered), 0);
    json_decref(unanswered);
    return results;
}

static void test_merged_in_order(void **state)
{
    (void)state;
    json_t *results = run_answered("/chunked?idFilter=x", 1, "abcde");
    /* c is on both: the local value first, the peer's other fields added. */
    json_t *c = json_array_get(results, 2);
    assert_int_equal(json_integer_value(json_object_get(c, "x")), 0);
    assert_int_equal(json_integer_value(json_object_get(c, "y")), 3);
    assert_non_null(strstr(last_request, "GET /chunked?idFilter=x HTTP/1.1\r\n"));
    assert_non_null(strstr(last_request, "Authorization: Bearer the-token\r\n"));
    assert_non_null(strstr(last_request, PEER_FORWARDED_HEADER ": 1\r\n"));
    json_decref(results);
}

static void test_two_peers_one_document(void **state)
{
    (void)state;
    json_decref(run_answered("/plain", 2, "acd"));
}

/* path's peer fails; the local part still comes whole, plus what the peer sent first. */
static void expect_unanswered(const char *path, const char *expected_ids, const char *reason)
{
    json_t *unanswered;
    char ids[64];
    json_t *results = run(path, 1, &unanswered, ids, sizeof(ids));
    assert_string_equal(ids, expected_ids);
    assert_int_equal(json_array_size(unanswered), 1);
    assert_string_equal(json_string_value(json_object_get(json_array_get(unanswered, 0), "name")),
                        "peer0");
    const char *error = json_string_value(json_object_get(json_array_get(unanswered, 0), "error"));
    if (strstr(error, reason) == NULL)
        print_message("%s: \"%s\" does not say \"%s\"\n", path, error, reason);
    assert_non_null(strstr(error, reason));
    json_decref(results);
    json_decref(unanswered);
}

static void test_failures_named(void **state)
{
    (void)state;
    expect_unanswered("/refused", "acd", "401");
    expect_unanswered("/cut", "acdf", "cut");
    expect_unanswered("/error", "acdg", "store failed");
    expect_unanswered("/stall", "acd", "timed out");
}

static void test_no_token_in_clear_off_loopback(void **state)
{
    (void)state;
    char err[256];
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    assert_int_equal(peer_get("http://192.0.2.1:9100", NULL, NULL, NULL, "/api/v1/issuance",
                              "the-token", 100, 100, fds[1], err, sizeof(err)),
                     -1);
    assert_non_null(strstr(err, "refused"));
    assert_int_equal(peer_get(base_url, "/nonexistent/api.pem", NULL, NULL, "/plain", "the-token",
                              100, 100, fds[1], err, sizeof(err)),
                     -1);
    assert_non_null(strstr(err, "refused"));
    close(fds[0]);
    close(fds[1]);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_merged_in_order),
        cmocka_unit_test(test_two_peers_one_document),
        cmocka_unit_test(test_failures_named),
        cmocka_unit_test(test_no_token_in_clear_off_loopback),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}

/*
 * redis_fixture: for unit tests of a shard's Redis clients (dataplane/cluster.c and what runs on
 * it): a redis-server started in a folder of its own, and an epoll loop that listens nowhere for
 * the clients to run on. Include after cmocka.h.
 */
#ifndef DPS_TESTS_REDIS_FIXTURE_H
#define DPS_TESTS_REDIS_FIXTURE_H

#include <hiredis/hiredis.h>

#include "dataplane/loop.h"
#include "loop_wait.h"
#include "perf/redis_server.h"

struct redis_fixture {
    char folder[64];
    struct redis_server server;
    struct loop *loop;
};

/* 0, or -1 when the folder, the server or the loop cannot be made. */
static inline int redis_fixture_open(struct redis_fixture *fixture)
{
    char err[256] = "";
    if (redis_server_folder(fixture->folder, sizeof(fixture->folder)) != 0 ||
        redis_server_start(&fixture->server, fixture->folder, 0, NULL, err, sizeof(err)) != 0)
        return -1;
    fixture->loop = loop_create(LOOP_BACKEND_EPOLL, &loop_no_connections, NULL, err, sizeof(err));
    return fixture->loop != NULL ? 0 : -1;
}

/* Stops every server, destroys the loop and removes the folder. */
static inline void redis_fixture_close(struct redis_fixture *fixture)
{
    redis_server_stop_all();
    loop_destroy(fixture->loop);
    redis_server_remove_folder(fixture->folder);
}

/* Empties the server. */
static inline void redis_fixture_flush(const struct redis_fixture *fixture)
{
    freeReplyObject(redis_server_command(fixture->server.port, NULL, "FLUSHALL"));
}

#endif

/*
 * redis_server: throwaway redis-server and redis-sentinel processes on
 * loopback, for the Redis client's tests (tests/unit/test_redis.c) and its
 * benchmark (perf/bench_redis.c).
 *
 * Each process runs in a work folder of its own making, on a free port, with
 * no persistence. It is killed by redis_server_stop(), by an atexit handler
 * if the caller forgets or fails an assertion, and by the kernel if the
 * caller dies (PR_SET_PDEATHSIG), so a failing test leaves nothing behind.
 */
#ifndef DPS_PERF_REDIS_SERVER_H
#define DPS_PERF_REDIS_SERVER_H

#include <hiredis/hiredis.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct redis_server {
    pid_t pid;
    uint16_t port;
    char unix_path[108];
    char config_path[256]; /* sentinels: the config file they rewrite */
};

/* A fresh work folder under /tmp (mkdtemp); 0 or -1. */
int redis_server_folder(char *folder, size_t size);
/* Removes the folder and everything in it. */
void redis_server_remove_folder(const char *folder);

/* A port nobody listens on, from 20000-31999 (below the ephemeral range). */
uint16_t redis_server_free_port(void);

/*
 * Starts redis-server on 127.0.0.1:port (0: a free one) and a unix socket in
 * folder, with extra "--name value" arguments (NULL-terminated, may be NULL),
 * and waits until it answers PING. 0, or -1 with a message in err.
 */
int redis_server_start(struct redis_server *server, const char *folder, uint16_t port,
                       const char *const *extra, char *err, size_t err_length);
/*
 * Starts redis-sentinel monitoring 127.0.0.1:primary_port as master_name
 * (quorum 1) with the given down-after and failover timeouts.
 */
int redis_server_start_sentinel(struct redis_server *server, const char *folder,
                                uint16_t primary_port, const char *master_name,
                                unsigned down_after_ms, unsigned failover_timeout_ms, char *err,
                                size_t err_length);
/* SIGKILL and reap; the port and folder stay as they are. */
void redis_server_stop(struct redis_server *server);
/* Kills every process started here and still running (a failed test's leftovers). */
void redis_server_stop_all(void);
/* SIGSTOP (paused true) or SIGCONT. */
void redis_server_pause(struct redis_server *server, bool paused);

/* A blocking admin connection (2 s timeouts), AUTH'd when password is set. NULL on failure. */
redisContext *redis_server_admin(uint16_t port, const char *password);
/* One blocking admin command on a fresh connection; the reply, or NULL. */
redisReply *redis_server_command(uint16_t port, const char *password, const char *format, ...);

#endif

/*
 * bench-redis: what one shard's loop gets from one Redis primary for the
 * cluster's scripts: a GCRA script (EVALSHA, the shape the cluster-wide
 * limits use) or, with --script claim, the device-id claim of
 * dataplane/cluster.c (a new device id each call, as in a burst of new
 * devices), called one at a time, then with 16 calls kept in flight
 * (pipelined), through store/redis.c on our own loop. Prints both side by
 * side: calls per second, the client thread's CPU per call, and the server's
 * CPU per call when the benchmark started the server itself.
 *
 *   bench-redis [--seconds S] [--backend uring|epoll] [--depth N]
 *               [--address IP:PORT] [--script gcra|claim]
 *
 * Without --address it starts a throwaway redis-server on loopback
 * (tests/redis_server.c), with no persistence, and kills it at the end.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "dataplane/cluster.h"
#include "dataplane/loop.h"
#include "dataplane/redis_loop.h"
#include "store/redis.h"
#include "perf/redis_server.h"

#define BENCH_KEYS 1000

/*
 * GCRA: the bucket's theoretical arrival time (TAT) in milliseconds; a call
 * conforms when TAT - burst tolerance is not in the future. ARGV: emission
 * interval (ms per token), burst tolerance (ms). Returns {allowed, retry_ms}.
 */
static const char gcra_script[] =
    "local interval = tonumber(ARGV[1])\n"
    "local tolerance = tonumber(ARGV[2])\n"
    "local time = redis.call('TIME')\n"
    "local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)\n"
    "local tat = tonumber(redis.call('GET', KEYS[1])) or now\n"
    "if tat < now then tat = now end\n"
    "local allow_at = tat - tolerance\n"
    "if now < allow_at then return {0, allow_at - now} end\n"
    "local new_tat = tat + interval\n"
    "redis.call('SET', KEYS[1], new_tat, 'PX', new_tat - now + tolerance + 1)\n"
    "return {1, 0}\n";

struct bench {
    struct loop *loop;
    struct redis_client *client;
    struct redis_script *script;
    bool claim; /* the claim script, else GCRA */
    unsigned depth;
    bool running; /* false: let the calls in flight finish, send no more */
    unsigned in_flight;
    uint64_t calls;
    uint64_t allowed;
    uint64_t failed;
    unsigned next_key;
};

static void *no_accept(void *loop_user, struct loop_conn *conn, const struct sockaddr *peer,
                       socklen_t peer_length)
{
    return NULL;
}

static void no_receive(void *conn_user, const uint8_t *data, size_t length)
{
}

static void no_close(void *conn_user, int error)
{
}

static const struct loop_handler no_connections = {no_accept, no_receive, no_close};

static double thread_cpu_seconds(void)
{
    struct timespec now;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &now);
    return (double)now.tv_sec + (double)now.tv_nsec / 1e9;
}

static double wall_seconds(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)now.tv_sec + (double)now.tv_nsec / 1e9;
}

/* User + system CPU seconds of a process, from /proc/PID/stat; -1 when unknown. */
static double process_cpu_seconds(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    FILE *file = fopen(path, "r");
    if (file == NULL)
        return -1;
    char line[1024];
    char *got = fgets(line, sizeof(line), file);
    fclose(file);
    char *end = got != NULL ? strrchr(line, ')') : NULL;
    unsigned long user = 0, system = 0;
    if (end == NULL ||
        sscanf(end + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &user, &system) != 2)
        return -1;
    return (double)(user + system) / (double)sysconf(_SC_CLK_TCK);
}

static void bench_send(struct bench *bench);

static void bench_answer(void *user, enum redis_status status, const struct redis_reply *reply)
{
    struct bench *bench = user;
    bench->in_flight--;
    if (status == REDIS_STATUS_OK && redis_reply_count(reply) == 2) {
        bench->calls++;
        bench->allowed += redis_reply_integer(redis_reply_element(reply, 0)) == 1;
    } else {
        bench->failed++;
    }
    if (bench->running)
        bench_send(bench);
    else if (bench->in_flight == 0)
        loop_stop(bench->loop);
}

static void bench_send(struct bench *bench)
{
    enum redis_status status;
    if (bench->claim) {
        char binding[64], identity[64], conflict[64], record[16], device[16];
        unsigned n = bench->next_key++;
        snprintf(device, sizeof(device), "d%u", n);
        snprintf(record, sizeof(record), "r%u", n);
        snprintf(binding, sizeof(binding), "bench:binding:o:%s", device);
        snprintf(identity, sizeof(identity), "bench:identity:o:%s", record);
        snprintf(conflict, sizeof(conflict), "bench:conflict:o:%s", device);
        const char *keys[] = {binding, identity, conflict};
        const char *args[] = {record, device};
        status = redis_script_call(bench->client, bench->script, bench_answer, bench, 3, keys, NULL,
                                   2, args, NULL);
    } else {
        char key[32];
        snprintf(key, sizeof(key), "bench:gcra:%u", bench->next_key++ % BENCH_KEYS);
        const char *keys[] = {key};
        const char *args[] = {"10", "1000"}; /* 100 per second, bursts of 100 */
        status = redis_script_call(bench->client, bench->script, bench_answer, bench, 1, keys, NULL,
                                   2, args, NULL);
    }
    if (status == REDIS_STATUS_OK)
        bench->in_flight++;
    else
        bench->failed++;
}

static void bench_stop(void *user)
{
    struct bench *bench = user;
    bench->running = false;
    if (bench->in_flight == 0)
        loop_stop(bench->loop);
}

static void bench_ready(void *user)
{
    struct bench *bench = user;
    if (redis_client_state(bench->client) == REDIS_STATE_READY)
        loop_stop(bench->loop);
}

struct figures {
    double calls_per_second;
    double client_us;
    double server_us;
    uint64_t failed;
};

static struct figures bench_run(struct bench *bench, unsigned depth, double seconds, pid_t server)
{
    bench->depth = depth;
    bench->calls = bench->allowed = bench->failed = 0;
    bench->running = true;
    struct loop_timer *stop = loop_timer_create(bench->loop, bench_stop, bench);
    loop_timer_start(stop, (unsigned)(seconds * 1000), 0);
    double server_start = server > 0 ? process_cpu_seconds(server) : -1;
    double cpu_start = thread_cpu_seconds();
    double wall_start = wall_seconds();
    for (unsigned i = 0; i < depth; i++)
        bench_send(bench);
    loop_run(bench->loop);
    double wall = wall_seconds() - wall_start;
    double cpu = thread_cpu_seconds() - cpu_start;
    double server_end = server > 0 ? process_cpu_seconds(server) : -1;
    loop_timer_destroy(stop);
    struct figures figures = {
        .calls_per_second = (double)bench->calls / wall,
        .client_us = bench->calls > 0 ? cpu * 1e6 / (double)bench->calls : 0,
        .server_us = server_start >= 0 && server_end >= 0 && bench->calls > 0
                         ? (server_end - server_start) * 1e6 / (double)bench->calls
                         : -1,
        .failed = bench->failed,
    };
    return figures;
}

static void usage(void)
{
    fprintf(stderr, "usage: bench-redis [--seconds S] [--backend uring|epoll] [--depth N] "
                    "[--address IP:PORT] [--script gcra|claim]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    double seconds = 3;
    unsigned depth = 16;
    enum loop_backend backend = LOOP_BACKEND_URING;
    char host[64] = "";
    unsigned port = 0;
    bool claim = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc)
            seconds = atof(argv[++i]);
        else if (strcmp(argv[i], "--depth") == 0 && i + 1 < argc)
            depth = (unsigned)atoi(argv[++i]);
        else if (strcmp(argv[i], "--backend") == 0 && i + 1 < argc)
            backend = strcmp(argv[++i], "epoll") == 0 ? LOOP_BACKEND_EPOLL : LOOP_BACKEND_URING;
        else if (strcmp(argv[i], "--address") == 0 && i + 1 < argc)
            sscanf(argv[++i], "%63[^:]:%u", host, &port);
        else if (strcmp(argv[i], "--script") == 0 && i + 1 < argc &&
                 (strcmp(argv[i + 1], "gcra") == 0 || strcmp(argv[i + 1], "claim") == 0))
            claim = strcmp(argv[++i], "claim") == 0;
        else
            usage();
    }
    if (seconds <= 0 || depth == 0 || depth > 1024)
        usage();

    char folder[64] = "";
    struct redis_server server = {0};
    char err[256] = "";
    if (port == 0) {
        if (redis_server_folder(folder, sizeof(folder)) != 0 ||
            redis_server_start(&server, folder, 0, NULL, err, sizeof(err)) != 0) {
            fprintf(stderr, "bench-redis: %s\n", err[0] != '\0' ? err : "no work folder");
            return 1;
        }
        snprintf(host, sizeof(host), "127.0.0.1");
        port = server.port;
    }

    struct bench bench = {0};
    bench.loop = loop_create(backend, &no_connections, NULL, err, sizeof(err));
    if (bench.loop == NULL) {
        fprintf(stderr, "bench-redis: %s\n", err);
        return 1;
    }
    struct redis_events events;
    redis_loop_events(bench.loop, &events);
    struct redis_config config = {
        .address = {.host = host, .port = (uint16_t)port},
        .command_timeout_ms = 1000,
        .max_in_flight = 1024,
    };
    bench.client = redis_client_create(&config, &events, NULL, NULL, err, sizeof(err));
    if (bench.client == NULL) {
        fprintf(stderr, "bench-redis: %s\n", err);
        return 1;
    }
    bench.claim = claim;
    bench.script =
        redis_script_register(bench.client, claim ? cluster_claim_script_source : gcra_script);
    struct loop_timer *ready = loop_timer_create(bench.loop, bench_ready, &bench);
    loop_timer_start(ready, 10, 10);
    loop_run(bench.loop);
    loop_timer_destroy(ready);
    if (redis_client_state(bench.client) != REDIS_STATE_READY) {
        fprintf(stderr, "bench-redis: %s\n", redis_client_error(bench.client));
        return 1;
    }

    bench_run(&bench, 1, seconds / 10, server.pid); /* warm-up */
    struct figures one = bench_run(&bench, 1, seconds, server.pid);
    struct figures many = bench_run(&bench, depth, seconds, server.pid);

    printf("bench-redis: %s EVALSHA from one loop (%s), %s:%u, %.0f s per mode\n",
           claim ? "claim" : "GCRA", loop_backend_name(loop_backend_of(bench.loop)), host, port,
           seconds);
    printf("%-28s %14s %14s\n", "", "one at a time", "pipelined");
    printf("%-28s %14u %14u\n", "calls in flight", 1u, depth);
    printf("%-28s %14.0f %14.0f\n", "calls/s", one.calls_per_second, many.calls_per_second);
    printf("%-28s %14.2f %14.2f\n", "client CPU per call (us)", one.client_us, many.client_us);
    if (one.server_us >= 0)
        printf("%-28s %14.2f %14.2f\n", "server CPU per call (us)", one.server_us, many.server_us);
    printf("%-28s %14llu %14llu\n", "failed calls", (unsigned long long)one.failed,
           (unsigned long long)many.failed);
    printf("%-28s %14.1f\n", "pipelined / one at a time",
           many.calls_per_second / one.calls_per_second);

    redis_client_destroy(bench.client);
    loop_destroy(bench.loop);
    if (server.pid > 0) {
        redis_server_stop(&server);
        redis_server_remove_folder(folder);
    }
    return one.failed + many.failed == 0 ? 0 : 1;
}

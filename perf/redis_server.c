/*
 * redis_server: starts, pauses and kills throwaway Redis processes (see
 * redis_server.h). The processes are children of the calling thread; the
 * table of live ones lets an atexit handler kill what a failed test left.
 */
#include "perf/redis_server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define REDIS_SERVER_MAX_LIVE 16
#define REDIS_SERVER_MAX_ARGS 48
#define REDIS_SERVER_START_MS 5000

static pid_t live_pids[REDIS_SERVER_MAX_LIVE];
static bool atexit_registered;

void redis_server_stop_all(void)
{
    for (int i = 0; i < REDIS_SERVER_MAX_LIVE; i++) {
        if (live_pids[i] > 0) {
            kill(live_pids[i], SIGKILL);
            waitpid(live_pids[i], NULL, 0);
            live_pids[i] = 0;
        }
    }
}

static void redis_server_track(pid_t pid, bool live)
{
    if (!atexit_registered) {
        atexit(redis_server_stop_all);
        atexit_registered = true;
    }
    for (int i = 0; i < REDIS_SERVER_MAX_LIVE; i++) {
        if (live && live_pids[i] == 0) {
            live_pids[i] = pid;
            return;
        }
        if (!live && live_pids[i] == pid) {
            live_pids[i] = 0;
            return;
        }
    }
}

static void sleep_ms(unsigned ms)
{
    struct timespec duration = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};
    while (nanosleep(&duration, &duration) < 0 && errno == EINTR)
        continue;
}

int redis_server_folder(char *folder, size_t size)
{
    if (snprintf(folder, size, "/tmp/dps-redis.XXXXXX") >= (int)size)
        return -1;
    return mkdtemp(folder) != NULL ? 0 : -1;
}

static int remove_entry(const char *path, const struct stat *status, int type, struct FTW *ftw)
{
    (void)status;
    (void)type;
    (void)ftw;
    return remove(path);
}

void redis_server_remove_folder(const char *folder)
{
    nftw(folder, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

uint16_t redis_server_free_port(void)
{
    static unsigned seed;
    if (seed == 0)
        seed = (unsigned)getpid() ^ (unsigned)time(NULL);
    for (;;) {
        uint16_t port = (uint16_t)(20000 + rand_r(&seed) % 12000);
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
            return 0;
        struct sockaddr_in address = {.sin_family = AF_INET,
                                      .sin_port = htons(port),
                                      .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        int r = bind(fd, (struct sockaddr *)&address, sizeof(address));
        close(fd);
        if (r == 0)
            return port;
    }
}

static pid_t redis_server_spawn(const char *const *argv, const char *log_path)
{
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid != 0)
        return pid;
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
        _exit(1);
    int log = open(log_path, O_WRONLY | O_CREAT | O_APPEND, 0600);
    if (log >= 0) {
        dup2(log, STDOUT_FILENO);
        dup2(log, STDERR_FILENO);
    }
    execvp(argv[0], (char *const *)argv);
    _exit(127);
}

redisContext *redis_server_admin(uint16_t port, const char *password)
{
    struct timeval timeout = {.tv_sec = 2};
    redisContext *context = redisConnectWithTimeout("127.0.0.1", port, timeout);
    if (context == NULL || context->err != 0) {
        redisFree(context);
        return NULL;
    }
    redisSetTimeout(context, timeout);
    if (password != NULL) {
        redisReply *reply = redisCommand(context, "AUTH %s", password);
        bool ok = reply != NULL && reply->type == REDIS_REPLY_STATUS;
        freeReplyObject(reply);
        if (!ok) {
            redisFree(context);
            return NULL;
        }
    }
    return context;
}

redisReply *redis_server_command(uint16_t port, const char *password, const char *format, ...)
{
    redisContext *context = redis_server_admin(port, password);
    if (context == NULL)
        return NULL;
    va_list arguments;
    va_start(arguments, format);
    redisReply *reply = redisvCommand(context, format, arguments);
    va_end(arguments);
    redisFree(context);
    return reply;
}

/* Waits until the process answers PING, or dies, or the time is up. */
static int redis_server_wait(struct redis_server *server, char *err, size_t err_length)
{
    for (unsigned waited = 0; waited < REDIS_SERVER_START_MS; waited += 10) {
        int status;
        if (waitpid(server->pid, &status, WNOHANG) == server->pid) {
            redis_server_track(server->pid, false);
            server->pid = 0;
            snprintf(err, err_length, "redis on port %u exited at start (status %d)",
                     (unsigned)server->port, status);
            return -1;
        }
        redisReply *reply = redis_server_command(server->port, NULL, "PING");
        bool up = reply != NULL;
        freeReplyObject(reply);
        if (up)
            return 0;
        sleep_ms(10);
    }
    snprintf(err, err_length, "redis on port %u did not answer within %u ms",
             (unsigned)server->port, REDIS_SERVER_START_MS);
    redis_server_stop(server);
    return -1;
}

/* Starts argv with its output in log_path, and waits until it answers PING. */
static int redis_server_launch(struct redis_server *server, const char *const *argv,
                               const char *log_path, char *err, size_t err_length)
{
    server->pid = redis_server_spawn(argv, log_path);
    if (server->pid < 0) {
        snprintf(err, err_length, "fork: %s", strerror(errno));
        return -1;
    }
    redis_server_track(server->pid, true);
    return redis_server_wait(server, err, err_length);
}

int redis_server_start(struct redis_server *server, const char *folder, uint16_t port,
                       const char *const *extra, char *err, size_t err_length)
{
    if (port == 0)
        port = redis_server_free_port();
    memset(server, 0, sizeof(*server));
    server->port = port;
    snprintf(server->unix_path, sizeof(server->unix_path), "%s/redis-%u.sock", folder,
             (unsigned)port);
    char port_text[8], log_path[256];
    snprintf(port_text, sizeof(port_text), "%u", (unsigned)port);
    snprintf(log_path, sizeof(log_path), "%s/redis-%u.log", folder, (unsigned)port);
    const char *argv[REDIS_SERVER_MAX_ARGS] = {
        "redis-server",
        "--port",
        port_text,
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--daemonize",
        "no",
        "--dir",
        folder,
        "--unixsocket",
        server->unix_path,
        "--unixsocketperm",
        "700",
        "--protected-mode",
        "no",
    };
    size_t count = 19;
    for (size_t i = 0; extra != NULL && extra[i] != NULL; i++) {
        if (count + 1 >= REDIS_SERVER_MAX_ARGS) {
            snprintf(err, err_length, "too many redis-server arguments");
            return -1;
        }
        argv[count++] = extra[i];
    }
    return redis_server_launch(server, argv, log_path, err, err_length);
}

int redis_server_start_sentinel(struct redis_server *server, const char *folder,
                                uint16_t primary_port, const char *master_name,
                                unsigned down_after_ms, unsigned failover_timeout_ms, char *err,
                                size_t err_length)
{
    memset(server, 0, sizeof(*server));
    server->port = redis_server_free_port();
    snprintf(server->config_path, sizeof(server->config_path), "%s/sentinel-%u.conf", folder,
             (unsigned)server->port);
    FILE *config = fopen(server->config_path, "w");
    if (config == NULL) {
        snprintf(err, err_length, "%s: %s", server->config_path, strerror(errno));
        return -1;
    }
    fprintf(config,
            "port %u\nbind 127.0.0.1\ndaemonize no\nprotected-mode no\ndir %s\n"
            "sentinel monitor %s 127.0.0.1 %u 1\n"
            "sentinel down-after-milliseconds %s %u\n"
            "sentinel failover-timeout %s %u\n",
            (unsigned)server->port, folder, master_name, (unsigned)primary_port, master_name,
            down_after_ms, master_name, failover_timeout_ms);
    fclose(config);
    char log_path[256];
    snprintf(log_path, sizeof(log_path), "%s/sentinel-%u.log", folder, (unsigned)server->port);
    const char *argv[] = {"redis-sentinel", server->config_path, NULL};
    return redis_server_launch(server, argv, log_path, err, err_length);
}

void redis_server_stop(struct redis_server *server)
{
    if (server->pid <= 0)
        return;
    kill(server->pid, SIGKILL);
    while (waitpid(server->pid, NULL, 0) < 0 && errno == EINTR)
        continue;
    redis_server_track(server->pid, false);
    server->pid = 0;
}

void redis_server_pause(struct redis_server *server, bool paused)
{
    if (server->pid > 0)
        kill(server->pid, paused ? SIGSTOP : SIGCONT);
}

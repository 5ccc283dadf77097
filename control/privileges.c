/*
 * privileges: the switch from root to the configured user (privileges.h).
 *
 * glibc applies setgroups/setgid/setuid to every thread of the process (it
 * broadcasts set*id to all threads), so the shard and worker threads started
 * before the switch lose root with the main thread. The switch is checked:
 * afterwards setuid(0) must fail. no_new_privs is a per-thread attribute;
 * it is set on the main thread, and threads started later (the management
 * API) inherit it.
 */
#include "control/privileges.h"

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "common/log.h"

__attribute__((format(printf, 3, 4))) static int fail(char *err, size_t err_length, const char *fmt,
                                                      ...)
{
    va_list args;

    if (err == NULL || err_length == 0)
        return -1;
    va_start(args, fmt);
    vsnprintf(err, err_length, fmt, args);
    va_end(args);
    return -1;
}

/* One file or folder the daemon uses after the switch, and what it needs. */
static int check_access(const char *user, const char *path, const char *key, int mode, char *err,
                        size_t err_length)
{
    if (path == NULL || access(path, mode) == 0)
        return 0;
    return fail(err, err_length, "as user %s: cannot %s %s (%s): %s", user,
                (mode & W_OK) != 0 ? "write to" : "read", path, key, strerror(errno));
}

static int check_files(const struct config *settings, char *err, size_t err_length)
{
    const char *user = settings->user;
    const struct {
        const char *path;
        const char *key;
        int mode;
    } files[] = {
        {settings->path, "the configuration", R_OK},
        {settings->tls_cert_file, "tls.certificate", R_OK},
        {settings->tls_key_file, "tls.key", R_OK},
        {settings->data_dir, "dataDir", R_OK | W_OK | X_OK},
        {settings->api.cert_file, "api.certificate", R_OK},
        {settings->api.key_file, "api.key", R_OK},
        {settings->api.client_ca_file, "api.clientCA", R_OK},
        {settings->api.jwks_file, "api.jwks", R_OK},
    };

    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        if (check_access(user, files[i].path, files[i].key, files[i].mode, err, err_length) != 0)
            return -1;
    }
    for (size_t i = 0; i < settings->hub_count; i++) {
        const struct config_hub *hub = &settings->hubs[i];

        if (check_access(user, hub->ca_cert_file, "identityCertificate.certificate", R_OK, err,
                         err_length) != 0 ||
            check_access(user, hub->ca_key_file, "identityCertificate.key", R_OK, err,
                         err_length) != 0 ||
            check_access(user, hub->token_key_file, "token.key", R_OK, err, err_length) != 0)
            return -1;
    }
    for (size_t i = 0; i < settings->group_count; i++) {
        const struct config_group *group = &settings->groups[i];

        if (check_access(user, group->ca_chain_file, "attestation.certificateChain", R_OK, err,
                         err_length) != 0)
            return -1;
        for (size_t j = 0; j < group->crl_count; j++) {
            if (group->crls[j][0] == '/' &&
                check_access(user, group->crls[j], "attestation.crls", R_OK, err, err_length) != 0)
                return -1;
        }
    }
    return 0;
}

int privileges_drop(const struct config *settings, char *err, size_t err_length)
{
    const char *user = settings->user;
    char buffer[4096];
    struct passwd entry;
    struct passwd *found = NULL;

    if (user == NULL)
        return 0;
    int rc = getpwnam_r(user, &entry, buffer, sizeof(buffer), &found);
    if (found == NULL)
        return fail(err, err_length, "user: no user \"%s\"%s%s", user, rc != 0 ? ": " : "",
                    rc != 0 ? strerror(rc) : "");
    if (geteuid() == entry.pw_uid && getuid() == entry.pw_uid)
        return check_files(settings, err, err_length);
    if (geteuid() != 0)
        return fail(err, err_length, "user: running as uid %u, not root: cannot switch to %s",
                    (unsigned)geteuid(), user);
    if (initgroups(user, entry.pw_gid) != 0)
        return fail(err, err_length, "user: cannot set the groups of %s: %s", user,
                    strerror(errno));
    if (setgid(entry.pw_gid) != 0)
        return fail(err, err_length, "user: cannot switch to group %u: %s", (unsigned)entry.pw_gid,
                    strerror(errno));
    if (setuid(entry.pw_uid) != 0)
        return fail(err, err_length, "user: cannot switch to %s: %s", user, strerror(errno));
    if (entry.pw_uid != 0 && setuid(0) == 0)
        return fail(err, err_length, "user: root privileges could be regained after switching");
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
        return fail(err, err_length, "user: cannot set no_new_privs: %s", strerror(errno));
    log_msg(LOG_INFO, "privileges dropped", "user=%s uid=%u gid=%u", user, (unsigned)entry.pw_uid,
            (unsigned)entry.pw_gid);
    return check_files(settings, err, err_length);
}

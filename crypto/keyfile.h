/*
 * keyfile: the permission policy for private key files. A key file must be
 * a regular file the daemon can read, and, under the default policy, not
 * readable or writable by group or others (mode & 077 == 0).
 *
 * The loaders of private keys (dataplane/tls.c, crypto/issuer.c,
 * crypto/jwt.c) call keyfile_check_loaded(), which applies the process-wide
 * policy set by keyfile_set_policy(); config_load() sets it from the
 * configuration's keyFilePermissions. A process that never sets a policy
 * (tools, benchmarks) gets the readability checks only.
 */
#ifndef DPS_KEYFILE_H
#define DPS_KEYFILE_H

#include <stddef.h>

#include "common/domain.h"

/*
 * Checks path under policy. 0 when it may be used (a warning may have been
 * logged); -1 with the file named in err ("cannot read private key FILE:
 * Permission denied", "private key FILE is readable by group or others
 * (mode 0644) ...", "private key FILE is not a regular file").
 */
int keyfile_check(const char *path, enum keyfile_policy policy, char *err, size_t err_length);

/* Sets the policy keyfile_check_loaded() applies, for the whole process. */
void keyfile_set_policy(enum keyfile_policy policy);

/* keyfile_check() with the process-wide policy (readability only when none was set). */
int keyfile_check_loaded(const char *path, char *err, size_t err_length);

#endif

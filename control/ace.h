/*
 * ace: checks an access-control entry against the strict ACE shape devices
 * accept (PROTOCOL.md 2.5). Used by control/model.c for every group, whether
 * it comes from the configuration file or from the management API.
 */
#ifndef DPS_ACE_H
#define DPS_ACE_H

#include <stddef.h>

#include <jansson.h>

/* 0, or -1 with "path.field: problem" in err (path names the entry, e.g. "acl.entries[0]"). */
int ace_check(const json_t *ace, const char *path, char *err, size_t err_length);

#endif

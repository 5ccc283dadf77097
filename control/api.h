/*
 * api: the management API over HTTPS (libmicrohttpd), plgd-compatible paths
 * and JSON, JWT bearer authentication, every query scoped to the caller's
 * owner; plus /metrics, /healthz and /readyz for monitoring and load
 * balancers (no authentication on those three).
 */
#ifndef DPS_API_H
#define DPS_API_H

#include <stddef.h>

#include "control/config.h"

struct api;
struct plane;

/*
 * Starts serving on config->api settings, with its own threads. NULL with err
 * when the address, certificates or keys cannot be used.
 */
struct api *api_start(const struct config *config, struct plane *plane, char *err,
                      size_t err_length);
void api_stop(struct api *api);

#endif

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
 * Binds api.listen and api.healthListen: before the node starts (and while dpsd may still be
 * root, so a privileged port works), so that an address in use stops dpsd with the reason and
 * the option that changes it before a device is served. NULL with err.
 */
struct api *api_bind(const struct config *config, char *err, size_t err_length);

/*
 * Serves on the bound sockets with its own threads. -1 with err when the certificates, keys
 * or operator keys cannot be used (then api_stop() it).
 */
int api_start(struct api *api, struct plane *plane, char *err, size_t err_length);

/* Stops serving and frees api (bound or started). */
void api_stop(struct api *api);

#endif

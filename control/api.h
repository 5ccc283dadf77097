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

/*
 * SIGHUP: serves with fresh's API settings (taken; freed when no longer used): the certificate,
 * key and client CA files read again, the operator keys (api.jwks, jwksUrl or authority,
 * issuer, audience, ownerClaim), api.admins, the connection limits and the request deadline.
 * New connections get them at once; connections in progress finish on what they started
 * with. What only a restart applies (api.listen, api.healthListen, HTTPS on or off, the
 * quotas) is logged as a warning and listed in /api/v1/status "restartRequired" (for
 * api.admins). 0, or -1 with err: the API in force goes on unchanged.
 */
int api_reload(struct api *api, struct config *fresh, char *err, size_t err_length);

/* Stops serving and frees api (bound or started). */
void api_stop(struct api *api);

#endif

/*
 * fuzz_auth_data: the operator-token setting fuzz_auth and fuzz_jwks_remote
 * share: the demo's issuer and audience, the JWKS in auth/jwks.json and a
 * time inside the valid seeds' lifetime, fixed so they keep verifying as
 * years pass.
 */
#ifndef DPS_FUZZ_AUTH_DATA_H
#define DPS_FUZZ_AUTH_DATA_H

#include <time.h>

#ifndef FUZZ_DATA_DIR
#error "FUZZ_DATA_DIR must name the folder holding auth/jwks.json"
#endif

#define FUZZ_AUTH_ISSUER "https://dps.demo.local/operator"
#define FUZZ_AUTH_AUDIENCE "dps-api"
/* 2027-01-01T00:00:00Z: the valid seeds were issued before and expire in 2100. */
#define FUZZ_AUTH_TIME ((time_t)1798761600)

#endif

/*
 * steps: the six provisioning steps of PROTOCOL.md, in the order a fresh
 * device takes them, with the name and path each has on the wire and the
 * field of the provisioning record that keeps its answer. The
 * daemon's handlers (dataplane/dps_handlers.c) answer them and the load
 * generator (perf/) sends them; both count in this one enum.
 */
#ifndef DPS_COMMON_STEPS_H
#define DPS_COMMON_STEPS_H

#include <stdbool.h>

enum dps_step {
    STEP_TIME,
    STEP_OWNERSHIP,
    STEP_CLOUD,
    STEP_CREDENTIALS,
    STEP_ACLS,
    STEP_RESOURCES,
};
/* Outside the enum, so a switch over the steps needs no case for it. */
enum { STEP_COUNT = STEP_RESOURCES + 1 };

struct dps_step_route {
    const char *name;        /* as reports and the load generator's --expect name it */
    const char *path;        /* the request's Uri-Path, joined with '/' */
    bool post;               /* POST with a body; GET otherwise */
    const char *record_part; /* the provisioning record's field for the step's answer */
    /*
     * The served record's field is the step's status itself, {date, coapCode,
     * errorMessage} (plgdTime, a ProvisionStatus in the reference); the other
     * steps' fields hold it as "status". The store keeps every step's part
     * as {"status", ...} alike; store/records.c serves them.
     */
    bool flat_status;
};

extern const struct dps_step_route dps_step_routes[STEP_COUNT];

#endif

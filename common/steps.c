/*
 * steps: the provisioning steps' names and paths (PROTOCOL.md 2).
 */
#include "common/steps.h"

const struct dps_step_route dps_step_routes[STEP_COUNT] = {
    [STEP_TIME] = {"time", "/x.plgd.dev/time", false},
    [STEP_OWNERSHIP] = {"ownership", "/api/v1/provisioning/ownership", false},
    [STEP_CLOUD] = {"cloud", "/api/v1/provisioning/cloud-configuration", true},
    [STEP_CREDENTIALS] = {"credentials", "/api/v1/provisioning/credentials", true},
    [STEP_ACLS] = {"acls", "/api/v1/provisioning/acls", false},
    [STEP_RESOURCES] = {"resources", "/api/v1/provisioning/resources", false},
};

/*
 * steps: the provisioning steps' names and paths (PROTOCOL.md 2) and
 * record fields.
 */
#include "common/steps.h"

const struct dps_step_route dps_step_routes[STEP_COUNT] = {
    [STEP_TIME] = {"time", "/x.plgd.dev/time", false, "plgdTime"},
    [STEP_OWNERSHIP] = {"ownership", "/api/v1/provisioning/ownership", false, "ownership"},
    [STEP_CLOUD] = {"cloud", "/api/v1/provisioning/cloud-configuration", true, "cloud"},
    [STEP_CREDENTIALS] = {"credentials", "/api/v1/provisioning/credentials", true, "credential"},
    [STEP_ACLS] = {"acls", "/api/v1/provisioning/acls", false, "acl"},
    [STEP_RESOURCES] = {"resources", "/api/v1/provisioning/resources", false, "resources"},
};

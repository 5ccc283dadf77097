/*
 * steps: the provisioning steps' names and paths (PROTOCOL.md 2) and
 * record fields.
 */
#include "common/steps.h"

const struct dps_step_route dps_step_routes[STEP_COUNT] = {
    [STEP_TIME] = {"time", "/x.plgd.dev/time", false, "plgdTime", true},
    [STEP_OWNERSHIP] = {"ownership", "/api/v1/provisioning/ownership", false, "ownership", false},
    [STEP_CLOUD] = {"cloud", "/api/v1/provisioning/cloud-configuration", true, "cloud", false},
    [STEP_CREDENTIALS] = {"credentials", "/api/v1/provisioning/credentials", true, "credential",
                          false},
    [STEP_ACLS] = {"acls", "/api/v1/provisioning/acls", false, "acl", false},
    [STEP_RESOURCES] = {"resources", "/api/v1/provisioning/resources", false, "resources", false},
};

/*
 * domain: look-ups over the domain types of domain.h.
 */
#include "common/domain.h"

#include <strings.h>

const struct config_hub *config_find_hub(const struct config *config, const char *hub_id)
{
    for (size_t i = 0; i < config->hub_count; i++) {
        if (config->hubs[i].id != NULL && strcasecmp(config->hubs[i].id, hub_id) == 0)
            return &config->hubs[i];
    }
    return NULL;
}

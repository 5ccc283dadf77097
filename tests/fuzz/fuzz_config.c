/*
 * fuzz_config: config_load(), the daemon's YAML configuration parser. The
 * input is the file's content, written to one file in a per-process folder
 * under /tmp. The folder also holds empty files under the names the example
 * configuration uses, so a valid document gets past the file checks and
 * reaches the end of validation. On success the result must be what the
 * daemon relies on without checking again: at least one listen address,
 * every group's hub ids resolvable, embedded JSON parseable.
 */
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "common/log.h"
#include "control/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const referenced_files[] = {
    "dps-server.pem", "dps-server.key", "hub-ca.pem", "hub-ca.key", "token.key", "mfg-chain.pem",
};

static char folder[64];
static char config_path[128];

static void check(int condition)
{
    if (!condition)
        abort();
}

static void remove_folder(void)
{
    char path[192];
    for (size_t i = 0; i < sizeof(referenced_files) / sizeof(referenced_files[0]); i++) {
        snprintf(path, sizeof(path), "%s/%s", folder, referenced_files[i]);
        unlink(path);
    }
    unlink(config_path);
    rmdir(folder);
}

static void create_folder(void)
{
    char path[192];
    snprintf(folder, sizeof(folder), "/tmp/fuzz-config-%ld", (long)getpid());
    remove_folder();
    check(mkdir(folder, 0700) == 0);
    for (size_t i = 0; i < sizeof(referenced_files) / sizeof(referenced_files[0]); i++) {
        snprintf(path, sizeof(path), "%s/%s", folder, referenced_files[i]);
        FILE *file = fopen(path, "w");
        check(file != NULL);
        fclose(file);
    }
    snprintf(config_path, sizeof(config_path), "%s/dpsd.yaml", folder);
    atexit(remove_folder);
}

static void check_json(const char *text)
{
    if (text == NULL)
        return;
    json_t *parsed = json_loads(text, JSON_DECODE_ANY, NULL);
    check(parsed != NULL);
    json_decref(parsed);
}

static void check_config(const struct config *config)
{
    check(config->listen_count >= 1);
    for (size_t i = 0; i < config->listen_count; i++)
        check(config->listen[i] != NULL);
    for (size_t i = 0; i < config->hub_count; i++) {
        const struct config_hub *hub = &config->hubs[i];
        check(hub->id != NULL && hub->gateway_count >= 1);
        check(config_find_hub(config, hub->id) != NULL);
    }
    for (size_t i = 0; i < config->group_count; i++) {
        const struct config_group *group = &config->groups[i];
        check(group->id != NULL && group->ca_chain_file != NULL);
        for (size_t j = 0; j < group->hub_count; j++)
            check(config_find_hub(config, group->hub_ids[j]) != NULL);
        check_json(group->acl_json);
        check_json(group->resources_json);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (folder[0] == '\0') {
        create_folder();
        log_set_level(LOG_ERROR); /* deprecated names are warned about on each load */
    }
    FILE *file = fopen(config_path, "wb");
    check(file != NULL);
    check(fwrite(data, 1, size, file) == size);
    check(fclose(file) == 0);

    struct config *config = NULL;
    char err[512] = "";
    if (config_load(config_path, &config, err, sizeof(err)) == 0) {
        check(config != NULL);
        check_config(config);
        config_free(config);
    } else {
        check(config == NULL && err[0] != '\0');
    }
    return 0;
}

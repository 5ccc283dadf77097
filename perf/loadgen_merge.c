/*
 * loadgen_merge: one report from the reports of several generators that
 * loaded the same cluster at the same time (dps-loadgen merge). A real
 * cluster is load-tested from several machines at once; its operator wants
 * one answer: devices, attempts, errors and CoAP codes are summed,
 * latency histograms are merged bucket by bucket (so the merged p99 is the
 * p99 of all devices, not an average of percentiles), throughputs are
 * added, the wall time is the longest run's, and generator CPU is summed.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "perf/loadgen_merge.h"
#include "perf/loadgen_options.h"
#include "perf/loadgen_report.h"

static int fail(const char *path, const char *what)
{
    fprintf(stderr, "dps-loadgen merge: %s: %s\n", path, what);
    return -1;
}

static uint64_t count_of(const json_t *object, const char *key)
{
    json_int_t value = json_integer_value(json_object_get(object, key));
    return value > 0 ? (uint64_t)value : 0;
}

static int histogram_add(struct histogram *into, const json_t *doc, const char *path)
{
    struct histogram from;
    json_t *buckets = json_object_get(doc, "buckets");
    size_t index;
    json_t *pair;

    if (!json_is_object(doc) || !json_is_array(buckets))
        return fail(path, "a histogram is missing or not an object with buckets");
    histogram_init(&from);
    from.count = count_of(doc, "count");
    from.min_us = count_of(doc, "min_us");
    from.max_us = count_of(doc, "max_us");
    from.sum_us = json_number_value(json_object_get(doc, "sum_us"));
    uint64_t total = 0;
    json_array_foreach(buckets, index, pair)
    {
        json_int_t bucket = json_integer_value(json_array_get(pair, 0));
        json_int_t count = json_integer_value(json_array_get(pair, 1));
        if (json_array_size(pair) != 2 || bucket < 0 || bucket >= HISTOGRAM_BUCKETS || count < 0)
            return fail(path, "a histogram bucket is not [index, count] within the scheme");
        from.buckets[bucket] += (uint64_t)count;
        total += (uint64_t)count;
    }
    if (total != from.count)
        return fail(path, "a histogram's buckets do not add up to its count");
    histogram_merge(into, &from);
    return 0;
}

static int results_add(struct fleet_results *results, const json_t *report, const char *path)
{
    const json_t *devices = json_object_get(report, "devices");
    const json_t *errors = json_object_get(report, "errors");
    const json_t *codes = json_object_get(report, "coap_codes");
    const json_t *scenarios = json_object_get(report, "scenarios");
    const json_t *histograms = json_object_get(report, "histograms");
    const char *key;
    json_t *value;

    if (!json_is_object(devices) || !json_is_object(errors) || !json_is_object(codes) ||
        !json_is_object(scenarios))
        return fail(path, "not a dps-loadgen fleet report");
    if (!json_is_object(histograms) ||
        json_string_value(json_object_get(histograms, "scheme")) == NULL ||
        strcmp(json_string_value(json_object_get(histograms, "scheme")), HISTOGRAM_SCHEME) != 0)
        return fail(path, "its histograms are missing or of another scheme (written by an "
                          "older dps-loadgen?): run it again with this one");
    results->started += count_of(devices, "started");
    results->succeeded += count_of(devices, "succeeded");
    results->failed += count_of(devices, "failed");
    results->attempts += count_of(report, "attempts");
    results->restarts += count_of(report, "restarts");
    results->transient_retries += count_of(report, "transient_retries");
    results->connections += count_of(report, "connections");
    for (int class = ERROR_CONNECT; class < ERROR_CLASS_COUNT; class ++)
        results->errors[class] += count_of(errors, error_class_name((enum error_class) class));
    json_object_foreach((json_t *)codes, key, value)
    {
        unsigned major, minor;
        char end;
        if (sscanf(key, "%u.%u%c", &major, &minor, &end) != 2 || major > 7 || minor > 31)
            return fail(path, "a CoAP code key is not C.DD");
        results->codes[major << 5 | minor] += (uint64_t)json_integer_value(value);
    }
    for (int scenario = 0; scenario < SCENARIO_COUNT; scenario++) {
        const json_t *entry = json_object_get(scenarios, scenario_names[scenario]);
        results->scenario_started[scenario] += count_of(entry, "started");
        results->scenario_succeeded[scenario] += count_of(entry, "succeeded");
    }
    if (histogram_add(&results->end_to_end, json_object_get(histograms, "end_to_end"), path) != 0 ||
        histogram_add(&results->handshake, json_object_get(histograms, "handshake"), path) != 0)
        return -1;
    const json_t *steps = json_object_get(histograms, "steps");
    for (int step = 0; step < STEP_COUNT; step++) {
        const json_t *doc = json_object_get(steps, dps_step_routes[step].name);
        if (doc != NULL && histogram_add(&results->steps[step], doc, path) != 0)
            return -1;
    }
    return 0;
}

/* The merged run's settings: the first report's, with endpoints united and loads added. */
static int options_add(struct options *options, const json_t *config, bool first, const char *path)
{
    const json_t *endpoints = json_object_get(config, "endpoints");
    size_t index;
    json_t *endpoint;

    if (!json_is_object(config) || !json_is_array(endpoints))
        return fail(path, "its config is missing");
    json_array_foreach(endpoints, index, endpoint)
    {
        const char *text = json_string_value(endpoint);
        bool known = false;
        for (unsigned i = 0; text != NULL && i < options->endpoint_count; i++) {
            char seen[300];
            snprintf(seen, sizeof(seen), "coaps+tcp://%s:%s", options->endpoints[i].host,
                     options->endpoints[i].port);
            known = known || strcmp(seen, text) == 0;
        }
        if (text == NULL || (!known && parse_endpoint(text, options) != 0))
            return fail(path, "an endpoint is malformed, or there are too many in all");
    }
    options->concurrency += (unsigned)count_of(config, "concurrency");
    options->rate += json_number_value(json_object_get(config, "rate"));
    options->devices += (unsigned)count_of(config, "devices");
    options->threads += (unsigned)count_of(config, "threads");
    double duration = json_number_value(json_object_get(config, "duration_seconds"));
    if (duration > options->duration_seconds)
        options->duration_seconds = duration;
    if (first) {
        const json_t *mix = json_object_get(config, "mix");
        options->first = (unsigned)count_of(config, "first");
        options->ramp_seconds = json_number_value(json_object_get(config, "ramp_seconds"));
        options->seed = count_of(config, "seed");
        options->backoff_scale = json_number_value(json_object_get(config, "backoff_scale"));
        options->max_attempts = (unsigned)count_of(config, "max_attempts");
        options->timeout_ms = (int)count_of(config, "timeout_ms");
        const char *prepare = json_string_value(json_object_get(config, "prepare"));
        options->prepare_inline = prepare != NULL && strcmp(prepare, "inline") == 0;
        for (int scenario = 0; scenario < SCENARIO_COUNT; scenario++)
            options->mix[scenario] = (unsigned)count_of(mix, scenario_names[scenario]);
    }
    return 0;
}

int merge_main(int argc, char **argv)
{
    const char *report_path = NULL;
    int first_input = 1;
    static struct options options;
    static struct fleet_results results;
    struct fleet_run_info info;
    static char backend[32];
    int status = 0;

    if (argc > 2 && strcmp(argv[1], "--report") == 0) {
        report_path = argv[2];
        first_input = 3;
    }
    if (argc - first_input < 2) {
        fprintf(stderr, "usage: dps-loadgen merge [--report OUT.json] A.json B.json ...\n");
        return 2;
    }
    memset(&info, 0, sizeof(info));
    fleet_results_init(&results);
    for (int i = first_input; i < argc && status == 0; i++) {
        json_error_t error;
        json_t *report = json_load_file(argv[i], 0, &error);
        const char *schema = json_string_value(json_object_get(report, "schema"));
        if (report == NULL) {
            fprintf(stderr, "dps-loadgen merge: %s: %s (line %d)\n", argv[i], error.text,
                    error.line);
            status = 1;
            break;
        }
        if (schema == NULL || strcmp(schema, "dps-loadgen-report/1") != 0)
            status = fail(argv[i], "not a dps-loadgen-report/1 document") != 0;
        const json_t *config = json_object_get(report, "config");
        if (status == 0 && (options_add(&options, config, i == first_input, argv[i]) != 0 ||
                            results_add(&results, report, argv[i]) != 0))
            status = 1;
        if (status == 0) {
            double wall = json_number_value(json_object_get(report, "wall_seconds"));
            const json_t *cpu = json_object_get(report, "cpu");
            unsigned identities = (unsigned)count_of(report, "identities");
            info.wall_seconds = wall > info.wall_seconds ? wall : info.wall_seconds;
            info.throughput += json_number_value(json_object_get(report, "throughput_per_second"));
            info.cpu_user_seconds += json_number_value(json_object_get(cpu, "user_seconds"));
            info.cpu_system_seconds += json_number_value(json_object_get(cpu, "system_seconds"));
            info.cpu_prepare_seconds += json_number_value(json_object_get(cpu, "prepare_seconds"));
            info.identities = identities > info.identities ? identities : info.identities;
            if (i == first_input)
                snprintf(backend, sizeof(backend), "%s",
                         json_string_value(json_object_get(config, "io_backend")) != NULL
                             ? json_string_value(json_object_get(config, "io_backend"))
                             : "epoll");
        }
        json_decref(report);
    }
    if (status != 0)
        return 1;
    info.backend = backend;
    info.merged_from = (const char *const *)(argv + first_input);
    info.merged_count = (size_t)(argc - first_input);
    printf("merged %zu reports\n", info.merged_count);
    fleet_report_table(stdout, &options, &results, &info);
    if (report_path != NULL && fleet_report_write(report_path, &options, &results, &info) != 0) {
        fprintf(stderr, "dps-loadgen merge: cannot write %s\n", report_path);
        return 1;
    }
    return results.failed > 0 ? 1 : 0;
}

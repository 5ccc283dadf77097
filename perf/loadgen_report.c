/*
 * loadgen_report: what a fleet run tells its operator: a table on stdout
 * and, with --report FILE, the same facts as JSON for scripts (the schema
 * is perf/loadgen-report.schema.json; perf/sweep.sh reads it).
 */
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "perf/loadgen_report.h"

static const double quantiles[] = {0.5, 0.9, 0.99, 0.999};
static const char *const quantile_names[] = {"p50", "p90", "p99", "p99_9"};

void fleet_results_init(struct fleet_results *results)
{
    memset(results, 0, sizeof(*results));
}

void fleet_results_merge(struct fleet_results *into, const struct fleet_results *from)
{
    histogram_merge(&into->end_to_end, &from->end_to_end);
    histogram_merge(&into->handshake, &from->handshake);
    for (int step = 0; step < STEP_COUNT; step++)
        histogram_merge(&into->steps[step], &from->steps[step]);
    into->started += from->started;
    into->succeeded += from->succeeded;
    into->failed += from->failed;
    into->attempts += from->attempts;
    into->restarts += from->restarts;
    into->transient_retries += from->transient_retries;
    into->connections += from->connections;
    for (int class = 0; class < ERROR_CLASS_COUNT; class ++)
        into->errors[class] += from->errors[class];
    for (int code = 0; code < 256; code++)
        into->codes[code] += from->codes[code];
    for (int scenario = 0; scenario < SCENARIO_COUNT; scenario++) {
        into->scenario_started[scenario] += from->scenario_started[scenario];
        into->scenario_succeeded[scenario] += from->scenario_succeeded[scenario];
    }
}

static double ms(uint64_t us)
{
    return (double)us / 1000.0;
}

static json_t *latency_json(const struct histogram *histogram)
{
    json_t *object = json_object();

    json_object_set_new(object, "count", json_integer((json_int_t)histogram->count));
    json_object_set_new(object, "min", json_real(ms(histogram->min_us)));
    json_object_set_new(object, "mean",
                        json_real(histogram->count > 0
                                      ? histogram->sum_us / (double)histogram->count / 1000.0
                                      : 0.0));
    for (size_t i = 0; i < sizeof(quantiles) / sizeof(quantiles[0]); i++)
        json_object_set_new(object, quantile_names[i],
                            json_real(ms(histogram_quantile(histogram, quantiles[i]))));
    json_object_set_new(object, "max", json_real(ms(histogram->max_us)));
    return object;
}

/*
 * The histogram itself, so reports from several generators can be merged
 * exactly (dps-loadgen merge): its bucket scheme, then the non-empty
 * buckets as [index, count] pairs.
 */
static json_t *histogram_json(const struct histogram *histogram)
{
    json_t *buckets = json_array();

    for (size_t i = 0; i < HISTOGRAM_BUCKETS; i++)
        if (histogram->buckets[i] > 0)
            json_array_append_new(
                buckets, json_pack("[I, I]", (json_int_t)i, (json_int_t)histogram->buckets[i]));
    return json_pack("{s:I, s:I, s:I, s:f, s:o}", "count", (json_int_t)histogram->count, "min_us",
                     (json_int_t)histogram->min_us, "max_us", (json_int_t)histogram->max_us,
                     "sum_us", histogram->sum_us, "buckets", buckets);
}

static json_t *histograms_json(const struct fleet_results *results)
{
    json_t *steps = json_object();

    for (int step = 0; step < STEP_COUNT; step++)
        if (results->steps[step].count > 0)
            json_object_set_new(steps, dps_step_routes[step].name,
                                histogram_json(&results->steps[step]));
    return json_pack("{s:s, s:o, s:o, s:o}", "scheme", HISTOGRAM_SCHEME, "end_to_end",
                     histogram_json(&results->end_to_end), "handshake",
                     histogram_json(&results->handshake), "steps", steps);
}

static double cpu_total(const struct fleet_run_info *info)
{
    return info->cpu_user_seconds + info->cpu_system_seconds;
}

static json_t *report_json(const struct options *options, const struct fleet_results *results,
                           const struct fleet_run_info *info)
{
    json_t *root = json_object(), *config = json_object(), *endpoints = json_array();
    json_t *mix = json_object(), *errors = json_object(), *codes = json_object();
    json_t *latency = json_object(), *steps = json_object(), *scenarios = json_object();
    json_t *devices = json_object(), *cpu = json_object();
    char code[8], endpoint[300];

    for (unsigned i = 0; i < options->endpoint_count; i++) {
        snprintf(endpoint, sizeof(endpoint), "coaps+tcp://%s:%s", options->endpoints[i].host,
                 options->endpoints[i].port);
        json_array_append_new(endpoints, json_string(endpoint));
    }
    for (int scenario = 0; scenario < SCENARIO_COUNT; scenario++) {
        if (options->mix[scenario] > 0)
            json_object_set_new(mix, scenario_names[scenario],
                                json_integer(options->mix[scenario]));
        json_object_set_new(scenarios, scenario_names[scenario],
                            json_pack("{s:I, s:I}", "started",
                                      (json_int_t)results->scenario_started[scenario], "succeeded",
                                      (json_int_t)results->scenario_succeeded[scenario]));
    }
    json_object_set_new(config, "endpoints", endpoints);
    json_object_set_new(config, "mode", json_string(options->rate > 0 ? "open" : "closed"));
    json_object_set_new(config, "concurrency", json_integer(options->concurrency));
    json_object_set_new(config, "rate", json_real(options->rate));
    json_object_set_new(config, "ramp_seconds", json_real(options->ramp_seconds));
    json_object_set_new(config, "duration_seconds", json_real(options->duration_seconds));
    json_object_set_new(config, "devices", json_integer(options->devices));
    json_object_set_new(config, "first", json_integer(options->first));
    json_object_set_new(config, "threads", json_integer(options->threads));
    json_object_set_new(config, "seed", json_integer((json_int_t)options->seed));
    json_object_set_new(config, "mix", mix);
    json_object_set_new(config, "backoff_scale", json_real(options->backoff_scale));
    json_object_set_new(config, "max_attempts", json_integer(options->max_attempts));
    json_object_set_new(config, "timeout_ms", json_integer(options->timeout_ms));
    json_object_set_new(config, "io_backend", json_string(info->backend));
    json_object_set_new(config, "prepare",
                        json_string(options->prepare_inline ? "inline" : "ahead"));

    json_object_set_new(devices, "started", json_integer((json_int_t)results->started));
    json_object_set_new(devices, "succeeded", json_integer((json_int_t)results->succeeded));
    json_object_set_new(devices, "failed", json_integer((json_int_t)results->failed));

    for (int class = ERROR_CONNECT; class < ERROR_CLASS_COUNT; class ++)
        json_object_set_new(errors, error_class_name((enum error_class) class),
                            json_integer((json_int_t)results->errors[class]));
    for (int value = 0; value < 256; value++) {
        if (results->codes[value] == 0)
            continue;
        format_code((uint8_t)value, code);
        json_object_set_new(codes, code, json_integer((json_int_t)results->codes[value]));
    }
    json_object_set_new(latency, "end_to_end", latency_json(&results->end_to_end));
    json_object_set_new(latency, "handshake", latency_json(&results->handshake));
    for (int step = 0; step < STEP_COUNT; step++)
        if (results->steps[step].count > 0)
            json_object_set_new(steps, dps_step_routes[step].name,
                                latency_json(&results->steps[step]));
    json_object_set_new(latency, "steps", steps);

    double cpu_seconds = cpu_total(info);
    json_object_set_new(cpu, "user_seconds", json_real(info->cpu_user_seconds));
    json_object_set_new(cpu, "system_seconds", json_real(info->cpu_system_seconds));
    json_object_set_new(
        cpu, "ms_per_device",
        json_real(results->started > 0 ? cpu_seconds * 1000.0 / (double)results->started : 0.0));
    json_object_set_new(cpu, "cores_used",
                        json_real(info->wall_seconds > 0 ? cpu_seconds / info->wall_seconds : 0));
    json_object_set_new(cpu, "prepare_seconds", json_real(info->cpu_prepare_seconds));

    json_object_set_new(root, "schema", json_string("dps-loadgen-report/1"));
    json_object_set_new(root, "config", config);
    json_object_set_new(root, "wall_seconds", json_real(info->wall_seconds));
    json_object_set_new(root, "devices", devices);
    json_object_set_new(root, "throughput_per_second", json_real(info->throughput));
    json_object_set_new(
        root, "error_rate",
        json_real(results->started > 0 ? (double)results->failed / (double)results->started : 0.0));
    json_object_set_new(root, "attempts", json_integer((json_int_t)results->attempts));
    json_object_set_new(root, "restarts", json_integer((json_int_t)results->restarts));
    json_object_set_new(root, "transient_retries",
                        json_integer((json_int_t)results->transient_retries));
    json_object_set_new(root, "connections", json_integer((json_int_t)results->connections));
    json_object_set_new(root, "errors", errors);
    json_object_set_new(root, "coap_codes", codes);
    json_object_set_new(root, "latency_ms", latency);
    json_object_set_new(root, "histograms", histograms_json(results));
    json_object_set_new(root, "scenarios", scenarios);
    json_object_set_new(root, "cpu", cpu);
    json_object_set_new(root, "identities", json_integer(info->identities));
    if (info->merged_from != NULL) {
        json_t *from = json_array();
        for (size_t i = 0; i < info->merged_count; i++)
            json_array_append_new(from, json_string(info->merged_from[i]));
        json_object_set_new(root, "merged_from", from);
    }
    return root;
}

int fleet_report_write(const char *path, const struct options *options,
                       const struct fleet_results *results, const struct fleet_run_info *info)
{
    json_t *root = report_json(options, results, info);
    int status =
        root != NULL ? json_dump_file(root, path, JSON_INDENT(2) | JSON_REAL_PRECISION(6)) : -1;
    json_decref(root);
    return status == 0 ? 0 : -1;
}

static void latency_row(FILE *out, const char *name, const struct histogram *histogram)
{
    if (histogram->count == 0)
        return;
    fprintf(out, "  %-12s %8llu %9.2f %9.2f %9.2f %9.2f %9.2f\n", name,
            (unsigned long long)histogram->count, ms(histogram_quantile(histogram, 0.5)),
            ms(histogram_quantile(histogram, 0.9)), ms(histogram_quantile(histogram, 0.99)),
            ms(histogram_quantile(histogram, 0.999)), ms(histogram->max_us));
}

void fleet_report_table(FILE *out, const struct options *options,
                        const struct fleet_results *results, const struct fleet_run_info *info)
{
    double cpu_seconds = cpu_total(info);
    char code[8];

    fprintf(out, "fleet: %s loop, %s, %u thread%s, %.2f s\n", options->rate > 0 ? "open" : "closed",
            info->backend, options->threads, options->threads == 1 ? "" : "s", info->wall_seconds);
    fprintf(out, "devices: %llu started, %llu succeeded, %llu failed; %.1f devices/s\n",
            (unsigned long long)results->started, (unsigned long long)results->succeeded,
            (unsigned long long)results->failed, info->throughput);
    fprintf(out, "attempts %llu, restarts %llu, 5.03/5.04 retries %llu, connections %llu\n",
            (unsigned long long)results->attempts, (unsigned long long)results->restarts,
            (unsigned long long)results->transient_retries,
            (unsigned long long)results->connections);
    fprintf(out, "latency (ms)  %8s %9s %9s %9s %9s %9s\n", "count", "p50", "p90", "p99", "p99.9",
            "max");
    latency_row(out, "end-to-end", &results->end_to_end);
    latency_row(out, "handshake", &results->handshake);
    for (int step = 0; step < STEP_COUNT; step++)
        latency_row(out, dps_step_routes[step].name, &results->steps[step]);
    fprintf(out, "errors:");
    for (int class = ERROR_CONNECT; class < ERROR_CLASS_COUNT; class ++)
        fprintf(out, " %s=%llu", error_class_name((enum error_class) class),
                (unsigned long long)results->errors[class]);
    fprintf(out, "\ncodes:");
    for (int value = 0; value < 256; value++) {
        if (results->codes[value] == 0)
            continue;
        format_code((uint8_t)value, code);
        fprintf(out, " %s=%llu", code, (unsigned long long)results->codes[value]);
    }
    fprintf(out, "\ngenerator cpu: %.2f s user + %.2f s system = %.3f ms per device (%.2f cores)\n",
            info->cpu_user_seconds, info->cpu_system_seconds,
            results->started > 0 ? cpu_seconds * 1000.0 / (double)results->started : 0.0,
            info->wall_seconds > 0 ? cpu_seconds / info->wall_seconds : 0.0);
    fprintf(out, "before the run (set-up, --prepare %s): %.2f s = %.3f ms per device\n",
            options->prepare_inline ? "inline" : "ahead", info->cpu_prepare_seconds,
            results->started > 0 ? info->cpu_prepare_seconds * 1000.0 / (double)results->started
                                 : 0.0);
}

/*
 * loadgen_report: what a fleet run measured and how it is told
 * (loadgen_report.c): each worker thread fills its own results, the driver
 * merges them, and the run ends with a human table and, with --report, the
 * JSON report of perf/loadgen-report.schema.json (which loadgen_merge.c
 * reads back).
 */
#ifndef DPS_LOADGEN_REPORT_H
#define DPS_LOADGEN_REPORT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "common/steps.h"
#include "perf/loadgen_options.h"
#include "perf/loadgen_stats.h"

struct fleet_results {
    struct histogram end_to_end; /* first connect to success, retries and waits included */
    struct histogram handshake;  /* TCP connect + mutual-TLS handshake */
    struct histogram steps[STEP_COUNT];
    uint64_t started, succeeded, failed; /* devices */
    uint64_t attempts;                   /* starts from step 1, the first included */
    uint64_t restarts;                   /* start-overs after an error */
    uint64_t transient_retries;          /* a step sent again after 5.03/5.04 */
    uint64_t connections;
    uint64_t errors[ERROR_CLASS_COUNT]; /* failed attempts by class */
    uint64_t codes[256];                /* responses by CoAP code */
    uint64_t scenario_started[SCENARIO_COUNT];
    uint64_t scenario_succeeded[SCENARIO_COUNT];
};

/* The run as a whole, for the report. */
struct fleet_run_info {
    double wall_seconds;
    double throughput; /* devices succeeded per second (merged runs: the sum of the runs') */
    const char *const *merged_from; /* report files a merged report combines; NULL otherwise */
    size_t merged_count;
    double cpu_user_seconds, cpu_system_seconds; /* the run's, from when its clock started */
    double cpu_prepare_seconds; /* before it: workers' set-up and --prepare ahead */
    const char *backend;
    unsigned identities;
};

void fleet_results_init(struct fleet_results *results);
void fleet_results_merge(struct fleet_results *into, const struct fleet_results *from);

/* The human table on out, and the JSON report (perf/loadgen-report.schema.json). */
void fleet_report_table(FILE *out, const struct options *options,
                        const struct fleet_results *results, const struct fleet_run_info *info);
int fleet_report_write(const char *path, const struct options *options,
                       const struct fleet_results *results, const struct fleet_run_info *info);

#endif

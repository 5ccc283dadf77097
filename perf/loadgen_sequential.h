/*
 * loadgen_sequential: dps-loadgen without --concurrency or --rate, one
 * device after another (loadgen_sequential.c).
 */
#ifndef DPS_LOADGEN_SEQUENTIAL_H
#define DPS_LOADGEN_SEQUENTIAL_H

#include "perf/loadgen_options.h"

/* Runs --devices devices from --first. Returns the process exit status. */
int sequential_run(const struct options *options);

#endif

/*
 * loadgen_fleet: dps-loadgen's fleet mode, many devices at once on event
 * loops (loadgen_fleet.c).
 */
#ifndef DPS_LOADGEN_FLEET_H
#define DPS_LOADGEN_FLEET_H

#include "perf/loadgen_options.h"

/* Runs the fleet. Returns the process exit status. */
int fleet_run(const struct options *options);

#endif

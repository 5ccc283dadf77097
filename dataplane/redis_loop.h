/*
 * redis_loop: drives store/redis.c's client on one of our loops. The client
 * only knows struct redis_events (so that store/ needs nothing from
 * dataplane/); this fills one with the loop's fd watches and timers.
 */
#ifndef DPS_DATAPLANE_REDIS_LOOP_H
#define DPS_DATAPLANE_REDIS_LOOP_H

#include "dataplane/loop.h"
#include "store/redis.h"

/* The events stay valid as long as the loop; the client copies them. */
void redis_loop_events(struct loop *loop, struct redis_events *events);

#endif

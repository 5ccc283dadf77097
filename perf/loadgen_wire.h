/*
 * loadgen_wire: the requests a simulated device sends and the checks it
 * makes on the answers (loadgen_wire.c), for the state machine of
 * loadgen_device.c. device_send_request, in loadgen_device.h, is the other
 * half of this file.
 */
#ifndef DPS_LOADGEN_WIRE_H
#define DPS_LOADGEN_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include "common/steps.h"
#include "perf/loadgen_device.h"

struct coap_message;

/* Writes one CoAP frame on the device's TLS connection; a failure fails the device. */
void device_send_frame(struct device *device, const uint8_t *frame, size_t length);

/* The code that answers step when it succeeds: 2.05 Content or 2.04 Changed. */
uint8_t wire_success_code(enum dps_step step);

/*
 * Checks a success response's body as the device client would before
 * applying it (Content-Format, then the step's schema), keeping what later
 * steps and the summary need in device. 0, or -1 with reason set.
 */
int wire_check_payload(struct device *device, enum dps_step step,
                       const struct coap_message *message, char *reason, size_t reason_length);

#endif

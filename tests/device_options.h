/*
 * device_options: the options every test tool that reaches dpsd as a device takes (dps-probe,
 * dps-hostile): where dpsd listens, and the device's certificate, key and trust anchor.
 */
#ifndef DPS_TESTS_DEVICE_OPTIONS_H
#define DPS_TESTS_DEVICE_OPTIONS_H

#include <getopt.h>
#include <stdbool.h>
#include <stddef.h>

struct device_options {
    const char *endpoint; /* HOST:PORT */
    const char *cert;     /* the device's certificate chain (PEM) */
    const char *key;      /* its private key */
    const char *ca;       /* the DPS server's root, to verify it (NULL: not verified) */
};

/* Entries of a getopt_long table; device_option() takes their values. */
/* clang-format off */
#define DEVICE_LONG_OPTIONS                                                                        \
    {"endpoint", required_argument, NULL, 'e'},                                                    \
    {"cert", required_argument, NULL, 'c'},                                                        \
    {"key", required_argument, NULL, 'k'},                                                         \
    {"ca", required_argument, NULL, 'a'}
/* clang-format on */

/* Keeps optarg when getopt_long's answer c is one of DEVICE_LONG_OPTIONS; whether it was. */
static inline bool device_option(struct device_options *options, int c)
{
    const char **field = c == 'e'   ? &options->endpoint
                         : c == 'c' ? &options->cert
                         : c == 'k' ? &options->key
                         : c == 'a' ? &options->ca
                                    : NULL;
    if (field == NULL)
        return false;
    *field = optarg;
    return true;
}

#endif

/*
 * dps-loadgen: provisions simulated devices against a DPS endpoint exactly
 * as the real plgd device client does (PROTOCOL.md sections 1, 2 and 4),
 * and checks every response the way that client would before applying it.
 *
 * This file only dispatches: `dps-loadgen gen` makes fleet identities
 * (loadgen_identity.c), `dps-loadgen merge` combines reports
 * (loadgen_merge.c), and otherwise the command line (loadgen_options.c)
 * chooses the sequential driver (loadgen_sequential.c) or, with
 * --concurrency or --rate, the fleet engine (loadgen_fleet.c). Both drive
 * the same device (loadgen_device.c, loadgen_wire.c).
 */
#include <getopt.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "perf/loadgen_fleet.h"
#include "perf/loadgen_identity.h"
#include "perf/loadgen_merge.h"
#include "perf/loadgen_options.h"
#include "perf/loadgen_sequential.h"

/* dps-loadgen gen --pki DIR --devices N [--seed S] [--check] */
static int generate_main(int argc, char **argv)
{
    static const struct option long_options[] = {
        {"pki", required_argument, NULL, 'p'},  {"devices", required_argument, NULL, 'n'},
        {"seed", required_argument, NULL, 'S'}, {"check", no_argument, NULL, 'k'},
        {"help", no_argument, NULL, 'h'},       {NULL, 0, NULL, 0},
    };
    const char *pki_dir = NULL;
    unsigned devices = 0;
    uint64_t seed = 1;
    bool check = false;
    int option;
    char err[512];
    struct fleet_generation report;

    while ((option = getopt_long(argc, argv, "", long_options, NULL)) != -1) {
        int bad = 0;
        switch (option) {
        case 'p':
            pki_dir = optarg;
            bad = strlen(optarg) > MAX_FOLDER_LENGTH;
            break;
        case 'n':
            bad = parse_unsigned(optarg, 1, &devices);
            break;
        case 'S':
            bad = parse_seed(optarg, &seed);
            break;
        case 'k':
            check = true;
            break;
        default:
            options_usage(stderr);
            return 2;
        }
        if (bad != 0) {
            const char *name = "seed";
            if (option == 'p')
                name = "pki";
            else if (option == 'n')
                name = "devices";
            fprintf(stderr, "dps-loadgen gen: bad value for --%s: %s\n", name, optarg);
            return 2;
        }
    }
    if (optind != argc || pki_dir == NULL || devices == 0) {
        options_usage(stderr);
        return 2;
    }
    if (fleet_identities_ensure(pki_dir, seed, devices, &report, err, sizeof(err)) != 0) {
        fprintf(stderr, "dps-loadgen gen: %s\n", err);
        return 1;
    }
    if (report.generated > 0)
        printf("generated %u identities in %.2f s (%.0f/s, %.0f/min), %s/fleet-%llu.bin holds "
               "%u (%.1f MiB)\n",
               report.generated, report.seconds, report.generated / report.seconds,
               60.0 * report.generated / report.seconds, pki_dir, (unsigned long long)seed,
               report.total, (double)report.file_bytes / 1048576.0);
    else
        printf("reused %s/fleet-%llu.bin: %u identities (%.1f MiB)\n", pki_dir,
               (unsigned long long)seed, report.total, (double)report.file_bytes / 1048576.0);
    if (check) {
        long bad = fleet_identities_check(pki_dir, seed, err, sizeof(err));
        if (bad != 0) {
            fprintf(stderr, "dps-loadgen gen: %s\n",
                    bad < 0 ? err : "some identities do not verify");
            if (bad > 0)
                printf("checked %u identities, %ld bad\n", report.total, bad);
            return 1;
        }
        printf("checked %u identities, 0 bad\n", report.total);
    }
    return 0;
}

int main(int argc, char **argv)
{
    struct options options;

    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc > 1 && strcmp(argv[1], "gen") == 0)
        return generate_main(argc - 1, argv + 1);
    if (argc > 1 && strcmp(argv[1], "merge") == 0)
        return merge_main(argc - 1, argv + 1);
    if (options_parse(argc, argv, &options) != 0) {
        options_usage(stderr);
        return 2;
    }
    if (options.fleet)
        return fleet_run(&options);
    return sequential_run(&options);
}

/*
 * loadgen_options: dps-loadgen's command line. It parses the arguments of
 * the sequential and fleet modes into one struct options, refuses
 * combinations that mean nothing (--out in fleet mode, --mix without
 * --concurrency or --rate), and prints the usage. The values a report
 * carries back (endpoints, the scenario mix) are read by the same parsers
 * when reports are merged (loadgen_merge.c).
 */
#include "perf/loadgen_options.h"

#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/steps.h"
#include "crypto/uuid.h"
#include "dataplane/coap_tcp.h"

#define DEFAULT_PORT "15684"

const char *const scenario_names[SCENARIO_COUNT] = {
    [SCENARIO_FULL] = "full",
    [SCENARIO_RENEW] = "renew",
    [SCENARIO_HANDSHAKE] = "handshake",
    [SCENARIO_TIME] = "time",
};

void options_usage(FILE *out)
{
    fprintf(out,
            "usage: dps-loadgen --endpoint coaps+tcp://HOST:PORT --pki DIR --devices N\n"
            "                   [--first K] [--ca FILE] [--out DIR] [--renew] [--di UUID]\n"
            "                   [--expect-code STEP=CODE] [--timeout SECONDS (1-3600)] "
            "[--verbose] [--json]\n"
            "  fleet mode (many devices at once, identities DIR/fleet-SEED.bin):\n"
            "                   (--concurrency N | --rate R [--ramp S]) [--duration S]\n"
            "                   [--threads T] [--seed S] [--scenario full|renew|handshake|time]\n"
            "                   [--mix full=70,renew=30] [--backoff-scale X] [--max-attempts N]\n"
            "                   [--drop-every N] (every Nth device closes its connection once,\n"
            "                   right after sending a request, then retries)\n"
            "                   [--report FILE.json] [--io-backend epoll|io_uring]\n"
            "                   [--prepare ahead|inline] (ahead, the default: before the run's\n"
            "                   clock starts, each device of --devices N, or of --rate R for\n"
            "                   --duration S (at most 100,000), gets its identity loaded and\n"
            "                   its CSR made from a fresh key pair, as a real device makes its\n"
            "                   key pair before it asks; the server sees the same requests; the\n"
            "                   report gives that CPU apart; inline: as each device starts)\n"
            "                   [--issued FILE] (a line \"DEVICE_ID SERIAL\" for every identity\n"
            "                   certificate received, serial in lower-case hex)\n"
            "                   (--endpoint may be repeated: devices take them in turn)\n"
            "       dps-loadgen gen --pki DIR --devices N [--seed S] [--check]\n"
            "       dps-loadgen merge [--report OUT.json] A.json B.json ... (reports of\n"
            "                   generators run at the same time, combined)\n"
            "steps: time ownership cloud credentials acls resources; CODE like 4.03\n");
}

int parse_endpoint(const char *text, struct options *options)
{
    const char *scheme = "coaps+tcp://";
    const char *host, *end, *port = NULL;
    struct endpoint *endpoint;

    if (options->endpoint_count >= MAX_ENDPOINTS || strncmp(text, scheme, strlen(scheme)) != 0)
        return -1;
    endpoint = &options->endpoints[options->endpoint_count];
    host = text + strlen(scheme);
    if (*host == '[') {
        end = strchr(++host, ']');
        if (end == NULL)
            return -1;
        if (end[1] == ':')
            port = end + 2;
        else if (end[1] != '\0')
            return -1;
    } else {
        end = strchr(host, ':');
        if (end != NULL)
            port = end + 1;
        else
            end = host + strlen(host);
    }
    if (end == host || (size_t)(end - host) >= sizeof(endpoint->host))
        return -1;
    memcpy(endpoint->host, host, (size_t)(end - host));
    endpoint->host[end - host] = '\0';
    if (port != NULL && (*port == '\0' || strlen(port) >= sizeof(endpoint->port) ||
                         strspn(port, "0123456789") != strlen(port)))
        return -1;
    snprintf(endpoint->port, sizeof(endpoint->port), "%s", port != NULL ? port : DEFAULT_PORT);
    options->endpoint_count++;
    return 0;
}

static int parse_expect(const char *text, struct options *options)
{
    const char *equals = strchr(text, '=');
    unsigned class_digit, detail;
    char tail;

    if (equals == NULL)
        return -1;
    options->expect_step = -1;
    for (int step = 0; step < STEP_COUNT; step++)
        if (strlen(dps_step_routes[step].name) == (size_t)(equals - text) &&
            strncmp(text, dps_step_routes[step].name, (size_t)(equals - text)) == 0)
            options->expect_step = step;
    if (options->expect_step < 0 ||
        sscanf(equals + 1, "%1u.%2u%c", &class_digit, &detail, &tail) != 2 || class_digit > 7 ||
        detail > 31)
        return -1;
    options->expect_code = COAP_CODE(class_digit, detail);
    return 0;
}

int parse_unsigned(const char *text, unsigned minimum, unsigned *value)
{
    char *end;
    unsigned long parsed = strtoul(text, &end, 10);

    if (*text == '\0' || *end != '\0' || parsed < minimum || parsed > 1000000000UL)
        return -1;
    *value = (unsigned)parsed;
    return 0;
}

static int parse_double(const char *text, double minimum, double maximum, double *value)
{
    char *end;
    double parsed = strtod(text, &end);

    if (*text == '\0' || *end != '\0' || !(parsed >= minimum) || !(parsed <= maximum))
        return -1;
    *value = parsed;
    return 0;
}

int parse_seed(const char *text, uint64_t *seed)
{
    char *end;
    errno = 0;
    unsigned long long parsed = strtoull(text, &end, 10);

    if (*text == '\0' || *end != '\0' || *text == '-' || errno != 0)
        return -1;
    *seed = parsed;
    return 0;
}

static int scenario_by_name(const char *name, size_t length)
{
    for (int scenario = 0; scenario < SCENARIO_COUNT; scenario++)
        if (strlen(scenario_names[scenario]) == length &&
            strncmp(name, scenario_names[scenario], length) == 0)
            return scenario;
    return -1;
}

/* "full=70,renew=30" */
static int parse_mix(const char *text, unsigned mix[SCENARIO_COUNT])
{
    unsigned total = 0;

    memset(mix, 0, SCENARIO_COUNT * sizeof(mix[0]));
    while (*text != '\0') {
        const char *equals = strchr(text, '=');
        char *end;
        if (equals == NULL)
            return -1;
        int scenario = scenario_by_name(text, (size_t)(equals - text));
        unsigned long weight = strtoul(equals + 1, &end, 10);
        if (scenario < 0 || end == equals + 1 || weight > 1000000 || (*end != ',' && *end != '\0'))
            return -1;
        mix[scenario] += (unsigned)weight;
        total += (unsigned)weight;
        text = *end == ',' ? end + 1 : end;
    }
    return total > 0 ? 0 : -1;
}

int options_parse(int argc, char **argv, struct options *options)
{
    static const struct option long_options[] = {
        {"endpoint", required_argument, NULL, 'e'},
        {"pki", required_argument, NULL, 'p'},
        {"devices", required_argument, NULL, 'n'},
        {"first", required_argument, NULL, 'f'},
        {"ca", required_argument, NULL, 'c'},
        {"out", required_argument, NULL, 'o'},
        {"renew", no_argument, NULL, 'r'},
        {"di", required_argument, NULL, 'd'},
        {"expect-code", required_argument, NULL, 'x'},
        {"timeout", required_argument, NULL, 't'},
        {"verbose", no_argument, NULL, 'v'},
        {"json", no_argument, NULL, 'j'},
        {"concurrency", required_argument, NULL, 'C'},
        {"rate", required_argument, NULL, 'R'},
        {"ramp", required_argument, NULL, 'A'},
        {"duration", required_argument, NULL, 'D'},
        {"threads", required_argument, NULL, 'T'},
        {"seed", required_argument, NULL, 'S'},
        {"scenario", required_argument, NULL, 's'},
        {"mix", required_argument, NULL, 'm'},
        {"backoff-scale", required_argument, NULL, 'b'},
        {"max-attempts", required_argument, NULL, 'M'},
        {"drop-every", required_argument, NULL, 'X'},
        {"report", required_argument, NULL, 'J'},
        {"issued", required_argument, NULL, 'I'},
        {"io-backend", required_argument, NULL, 'B'},
        {"prepare", required_argument, NULL, 'P'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    bool have_mix = false, have_prepare = false;
    unsigned seconds = 10;
    int option;
    struct dps_uuid uuid;

    memset(options, 0, sizeof(*options));
    options->first = 1;
    options->expect_step = -1;
    options->threads = 1;
    options->seed = 1;
    options->backoff_scale = 1.0;
    options->max_attempts = 5;
    options->backend = LOOP_BACKEND_EPOLL;
    options->mix[SCENARIO_FULL] = 1;
    while ((option = getopt_long(argc, argv, "", long_options, NULL)) != -1) {
        int bad = 0, scenario;
        switch (option) {
        case 'e':
            bad = parse_endpoint(optarg, options);
            break;
        case 'p':
            options->pki_dir = optarg;
            bad = strlen(optarg) > MAX_FOLDER_LENGTH;
            break;
        case 'n':
            bad = parse_unsigned(optarg, 1, &options->devices);
            break;
        case 'f':
            bad = parse_unsigned(optarg, 1, &options->first);
            break;
        case 'c':
            options->ca_file = optarg;
            bad = strlen(optarg) > MAX_FOLDER_LENGTH;
            break;
        case 'o':
            options->out_dir = optarg;
            bad = strlen(optarg) > MAX_FOLDER_LENGTH;
            break;
        case 'r':
            options->renew = true;
            break;
        case 'd':
            options->di = optarg;
            bad = uuid_text_parse(optarg, strlen(optarg), &uuid);
            break;
        case 'x':
            bad = parse_expect(optarg, options);
            break;
        case 't':
            bad = parse_unsigned(optarg, 1, &seconds) || seconds > MAX_TIMEOUT_S;
            break;
        case 'v':
            options->verbose = true;
            break;
        case 'j':
            options->json = true;
            break;
        case 'C':
            bad = parse_unsigned(optarg, 1, &options->concurrency);
            options->fleet = true;
            break;
        case 'R':
            bad = parse_double(optarg, 0.001, 1e7, &options->rate);
            options->fleet = true;
            break;
        case 'A':
            bad = parse_double(optarg, 0, 1e6, &options->ramp_seconds);
            break;
        case 'D':
            bad = parse_double(optarg, 0.001, 1e7, &options->duration_seconds);
            break;
        case 'T':
            bad = parse_unsigned(optarg, 1, &options->threads) || options->threads > 256;
            break;
        case 'S':
            bad = parse_seed(optarg, &options->seed);
            break;
        case 's':
            scenario = scenario_by_name(optarg, strlen(optarg));
            bad = scenario < 0;
            if (!bad) {
                memset(options->mix, 0, sizeof(options->mix));
                options->mix[scenario] = 1;
                have_mix = true;
            }
            break;
        case 'm':
            bad = parse_mix(optarg, options->mix);
            have_mix = true;
            break;
        case 'b':
            bad = parse_double(optarg, 0, 1e6, &options->backoff_scale);
            break;
        case 'M':
            bad = parse_unsigned(optarg, 1, &options->max_attempts);
            break;
        case 'X':
            bad = parse_unsigned(optarg, 1, &options->drop_every);
            break;
        case 'J':
            options->report_path = optarg;
            break;
        case 'I':
            options->issued_path = optarg;
            break;
        case 'B':
            if (strcmp(optarg, "epoll") == 0)
                options->backend = LOOP_BACKEND_EPOLL;
            else if (strcmp(optarg, "io_uring") == 0)
                options->backend = LOOP_BACKEND_URING;
            else
                bad = 1;
            break;
        case 'P':
            options->prepare_inline = strcmp(optarg, "inline") == 0;
            bad = !options->prepare_inline && strcmp(optarg, "ahead") != 0;
            have_prepare = true;
            break;
        case 'h':
            options_usage(stdout);
            exit(0);
        default:
            return -1;
        }
        if (bad != 0) {
            const char *name = "?";
            for (const struct option *entry = long_options; entry->name != NULL; entry++)
                if (entry->val == option)
                    name = entry->name;
            fprintf(stderr, "dps-loadgen: bad value for --%s: %s\n", name, optarg);
            return -1;
        }
    }
    if (optind != argc || options->endpoint_count == 0 || options->pki_dir == NULL)
        return -1;
    options->timeout_ms = (int)(seconds * 1000);
    if (!options->fleet) {
        if (have_mix || have_prepare || options->duration_seconds > 0 ||
            options->report_path != NULL || options->issued_path != NULL) {
            fprintf(stderr, "dps-loadgen: --scenario, --mix, --duration, --prepare, --report and "
                            "--issued need --concurrency or --rate\n");
            return -1;
        }
        return options->devices == 0 ? -1 : 0;
    }
    if (options->concurrency > 0 && options->rate > 0) {
        fprintf(stderr, "dps-loadgen: --concurrency and --rate exclude each other\n");
        return -1;
    }
    if (options->out_dir != NULL || options->di != NULL) {
        fprintf(stderr, "dps-loadgen: --out and --di are for the sequential mode\n");
        return -1;
    }
    if (options->devices == 0 && options->duration_seconds <= 0) {
        fprintf(stderr, "dps-loadgen: fleet mode needs --devices or --duration\n");
        return -1;
    }
    if (options->renew && !have_mix) {
        memset(options->mix, 0, sizeof(options->mix));
        options->mix[SCENARIO_RENEW] = 1;
    }
    options->progress = isatty(STDERR_FILENO) && !options->verbose;
    return 0;
}

/* dps-loadgen gen --pki DIR --devices N [--seed S] [--check] */

/*
 * fuzz_attestation: the device certificate chain a device presents in the
 * TLS handshake, parsed from DER (d2i_X509, as OpenSSL does for the wire)
 * and attested by attestation_verify(). The input is one or more
 * concatenated DER certificates: the first is the leaf, the rest its chain.
 *
 * The enrollment group trusts a checked-in demo manufacturer chain
 * (attestation/mfg-chain.pem, made with pki_generate()), so the seed device
 * certificates issued from it verify and mutations reach every check. The
 * verification time is fixed inside that chain's validity so the seeds keep
 * verifying as years pass.
 *
 * Invariants: success names group 0 with a non-empty record id and serial
 * within bounds; failure has a reason; nothing leaks or reads out of bounds.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/x509.h>

#include "control/config.h"
#include "crypto/attestation.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#ifndef FUZZ_DATA_DIR
#error "FUZZ_DATA_DIR must name the folder holding attestation/mfg-chain.pem"
#endif

/* 2027-01-01T00:00:00Z, inside the checked-in chain's validity. */
#define FUZZ_ATTESTATION_TIME ((time_t)1798761600)

#define FUZZ_MAX_CHAIN 8

static struct attestation *attestation;

static void check(int condition)
{
    if (!condition)
        abort();
}

static struct attestation *create_attestation(void)
{
    static char group_id[] = "5db6ccde-05e1-480b-a522-c1591ad7dfd2";
    static char owner[] = "1";
    static char name[] = "fuzz devices";
    static char chain_file[] = FUZZ_DATA_DIR "/attestation/mfg-chain.pem";
    static struct config_group group;
    static struct config config;
    group.id = group_id;
    group.owner = owner;
    group.name = name;
    group.ca_chain_file = chain_file;
    config.groups = &group;
    config.group_count = 1;

    char err[256];
    struct attestation *created = attestation_create(NULL, &config, err, sizeof(err));
    check(created != NULL);
    return created;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (attestation == NULL)
        attestation = create_attestation();

    const unsigned char *cursor = data;
    const unsigned char *end = data + size;
    X509 *leaf = d2i_X509(NULL, &cursor, (long)size);
    if (leaf == NULL)
        return 0;
    STACK_OF(X509) *chain = sk_X509_new_null();
    check(chain != NULL);
    while (cursor < end && sk_X509_num(chain) < FUZZ_MAX_CHAIN) {
        X509 *certificate = d2i_X509(NULL, &cursor, (long)(end - cursor));
        if (certificate == NULL)
            break;
        check(sk_X509_push(chain, certificate) > 0);
    }

    struct attestation_result result;
    char err[256] = "";
    memset(&result, 0, sizeof(result));
    if (attestation_verify(attestation, leaf, sk_X509_num(chain) > 0 ? chain : NULL,
                           FUZZ_ATTESTATION_TIME, &result, err, sizeof(err)) == 0) {
        check(result.group_index == 0);
        check(!uuid_is_nil(&result.record_id));
        check(result.leaf_serial_length <= sizeof(result.leaf_serial));
        check(memchr(result.leaf_common_name, '\0', sizeof(result.leaf_common_name)) != NULL);
    } else {
        check(err[0] != '\0');
    }
    sk_X509_pop_free(chain, X509_free);
    X509_free(leaf);
    return 0;
}

/*
 * fuzz_coap_tcp: the CoAP-over-TCP codec, the first parser a device's bytes
 * reach after TLS. The input is a byte stream: its first frame is sized with
 * coap_tcp_frame_length() and decoded. A decoded message must survive a
 * round trip: re-encoded with coap_tcp_encode() and decoded again it keeps
 * its code, token, options and payload. Uri-Path joining must stay within
 * its buffer and produce a NUL-terminated path starting with '/'.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dataplane/coap_tcp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The daemon's default limit (max_message_size) and then some. */
#define FUZZ_MAX_FRAME (1u << 20)

static void check(int condition)
{
    if (!condition)
        abort();
}

static void check_same_message(const struct coap_message *a, const struct coap_message *b)
{
    check(a->code == b->code);
    check(a->token_length == b->token_length);
    check(memcmp(a->token, b->token, a->token_length) == 0);
    check(a->option_count == b->option_count);
    for (size_t i = 0; i < a->option_count; i++) {
        check(a->options[i].number == b->options[i].number);
        check(a->options[i].length == b->options[i].length);
        check(a->options[i].length == 0 ||
              memcmp(a->options[i].value, b->options[i].value, a->options[i].length) == 0);
    }
    check(a->payload_length == b->payload_length);
    check(a->payload_length == 0 || memcmp(a->payload, b->payload, a->payload_length) == 0);
}

/*
 * Every frame byte belongs to a header, the token, an option or the payload:
 * a length field (up to 4 bytes) plus code, and per option at most 5 bytes of
 * delta and length fields. A decoder that dropped option bytes would fail.
 */
static void check_nothing_lost(const struct coap_message *message, size_t frame_length)
{
    size_t accounted = 1 + 4 + 1 + message->token_length;
    for (size_t i = 0; i < message->option_count; i++)
        accounted += 5 + message->options[i].length;
    if (message->payload_length > 0)
        accounted += 1 + message->payload_length;
    check(frame_length <= accounted);
}

static void check_uri_path(const struct coap_message *message)
{
    char path[256];
    if (coap_message_uri_path(message, path, sizeof(path)) == 0) {
        size_t length = strnlen(path, sizeof(path));
        check(length < sizeof(path));
        check(path[0] == '/');
    }
    char tiny[2];
    if (coap_message_uri_path(message, tiny, sizeof(tiny)) == 0)
        check(tiny[0] == '/' && tiny[1] == '\0');
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t frame_length = 0;
    int status = coap_tcp_frame_length(data, size, FUZZ_MAX_FRAME, &frame_length);
    check(status == COAP_OK || status == COAP_NEED_MORE || status == COAP_TOO_LARGE ||
          status == COAP_MALFORMED);
    if (status != COAP_OK)
        return 0;
    check(frame_length >= 2 && frame_length <= FUZZ_MAX_FRAME);
    if (frame_length > size)
        return 0;

    struct coap_message message;
    if (coap_tcp_decode(data, frame_length, &message) != COAP_OK)
        return 0;
    check(message.token_length <= COAP_MAX_TOKEN);
    check(message.option_count <= COAP_MAX_OPTIONS);
    for (size_t i = 1; i < message.option_count; i++)
        check(message.options[i - 1].number <= message.options[i].number);
    check((message.payload == NULL) == (message.payload_length == 0));
    check_nothing_lost(&message, frame_length);
    check_uri_path(&message);

    for (size_t i = 0; i < message.option_count; i++) {
        uint32_t value;
        if (coap_option_uint(&message.options[i], &value) == 0)
            check(message.options[i].length <= 4);
    }

    /* The encoder picks the shortest encodings, so the frame never grows. */
    uint8_t *encoded = malloc(frame_length);
    check(encoded != NULL);
    long encoded_length = coap_tcp_encode(
        encoded, frame_length, message.code, message.token, message.token_length, message.options,
        message.option_count, message.payload, message.payload_length);
    check(encoded_length > 0 && (size_t)encoded_length <= frame_length);

    size_t again_length = 0;
    check(coap_tcp_frame_length(encoded, (size_t)encoded_length, FUZZ_MAX_FRAME, &again_length) ==
          COAP_OK);
    check(again_length == (size_t)encoded_length);
    struct coap_message again;
    check(coap_tcp_decode(encoded, (size_t)encoded_length, &again) == COAP_OK);
    check_same_message(&message, &again);
    free(encoded);
    return 0;
}

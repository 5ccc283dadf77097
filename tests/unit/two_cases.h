/*
 * two_cases: one check run as two cmocka test cases, once per variant (both event-loop backends,
 * both CBOR container lengths, both payload formats). Include after cmocka.h.
 */
#ifndef DPS_TESTS_TWO_CASES_H
#define DPS_TESTS_TWO_CASES_H

/* TWO_CASES(name, check, first, a, second, b): name_first runs check(a), name_second check(b). */
#define TWO_CASES(name, check, first, a, second, b)                                                \
    static void name##_##first(void **state)                                                       \
    {                                                                                              \
        (void)state;                                                                               \
        check(a);                                                                                  \
    }                                                                                              \
    static void name##_##second(void **state)                                                      \
    {                                                                                              \
        (void)state;                                                                               \
        check(b);                                                                                  \
    }

#endif

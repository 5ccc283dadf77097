/*
 * test_mailbox: worker threads post, the owner drains; every item must run
 * exactly once, on the draining thread, in each poster's order.
 */
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "dataplane/mailbox.h"

#define POSTERS 4
#define ITEMS_PER_POSTER 20000

struct test_item {
    struct mailbox_item item; /* first: run() gets this address back */
    int poster;
    int sequence;
};

struct drain_state {
    pthread_t owner;
    int next_sequence[POSTERS];
    int ran;
    int wrong_thread;
    int out_of_order;
};

static struct drain_state drain_state;

static void run_item(struct mailbox_item *item)
{
    struct test_item *test_item = (struct test_item *)item;
    if (!pthread_equal(pthread_self(), drain_state.owner))
        drain_state.wrong_thread++;
    if (test_item->sequence != drain_state.next_sequence[test_item->poster])
        drain_state.out_of_order++;
    drain_state.next_sequence[test_item->poster] = test_item->sequence + 1;
    drain_state.ran++;
    free(test_item);
}

struct poster {
    struct mailbox *mailbox;
    int index;
};

static void *post_items(void *argument)
{
    struct poster *poster = argument;
    for (int i = 0; i < ITEMS_PER_POSTER; i++) {
        struct test_item *item = malloc(sizeof(*item));
        if (item == NULL)
            abort();
        item->item.run = run_item;
        item->poster = poster->index;
        item->sequence = i;
        mailbox_post(poster->mailbox, &item->item);
    }
    return NULL;
}

static void posts_from_four_threads_run_in_order_on_owner(void **state)
{
    (void)state;
    struct mailbox *mailbox = mailbox_create();
    assert_non_null(mailbox);
    drain_state = (struct drain_state){.owner = pthread_self()};
    pthread_t threads[POSTERS];
    struct poster posters[POSTERS];
    for (int i = 0; i < POSTERS; i++) {
        posters[i] = (struct poster){.mailbox = mailbox, .index = i};
        assert_int_equal(pthread_create(&threads[i], NULL, post_items, &posters[i]), 0);
    }
    while (drain_state.ran < POSTERS * ITEMS_PER_POSTER) {
        struct pollfd pollfd = {.fd = mailbox_fd(mailbox), .events = POLLIN};
        assert_int_equal(poll(&pollfd, 1, 5000), 1);
        mailbox_drain(mailbox);
    }
    for (int i = 0; i < POSTERS; i++)
        assert_int_equal(pthread_join(threads[i], NULL), 0);
    mailbox_drain(mailbox);
    assert_int_equal(drain_state.ran, POSTERS * ITEMS_PER_POSTER);
    assert_int_equal(drain_state.wrong_thread, 0);
    assert_int_equal(drain_state.out_of_order, 0);
    for (int i = 0; i < POSTERS; i++)
        assert_int_equal(drain_state.next_sequence[i], ITEMS_PER_POSTER);
    mailbox_destroy(mailbox);
}

static void post_wakes_the_eventfd_once_until_drained(void **state)
{
    (void)state;
    struct mailbox *mailbox = mailbox_create();
    assert_non_null(mailbox);
    drain_state = (struct drain_state){.owner = pthread_self()};
    struct pollfd pollfd = {.fd = mailbox_fd(mailbox), .events = POLLIN};
    assert_int_equal(poll(&pollfd, 1, 0), 0);
    for (int i = 0; i < 3; i++) {
        struct test_item *item = malloc(sizeof(*item));
        assert_non_null(item);
        *item = (struct test_item){.item.run = run_item, .poster = 0, .sequence = i};
        mailbox_post(mailbox, &item->item);
    }
    /* Only the first post wrote the eventfd: its counter is 1, not 3. */
    uint64_t counter = 0;
    assert_int_equal(read(mailbox_fd(mailbox), &counter, sizeof(counter)), sizeof(counter));
    assert_int_equal(counter, 1);
    mailbox_drain(mailbox);
    assert_int_equal(drain_state.ran, 3);
    assert_int_equal(drain_state.out_of_order, 0);
    assert_int_equal(poll(&pollfd, 1, 0), 0);
    mailbox_destroy(mailbox);
}

struct repost_item {
    struct mailbox_item item;
    struct mailbox *mailbox;
    int remaining;
    int *runs;
};

static void run_repost(struct mailbox_item *item)
{
    struct repost_item *repost = (struct repost_item *)item;
    (*repost->runs)++;
    if (repost->remaining-- > 0)
        mailbox_post(repost->mailbox, &repost->item);
}

static void run_may_post_again_without_deadlock(void **state)
{
    (void)state;
    struct mailbox *mailbox = mailbox_create();
    assert_non_null(mailbox);
    int runs = 0;
    struct repost_item repost = {
        .item.run = run_repost, .mailbox = mailbox, .remaining = 2, .runs = &runs};
    mailbox_post(mailbox, &repost.item);
    mailbox_drain(mailbox);
    assert_int_equal(runs, 1);
    /* The re-post woke the eventfd again, for the next drain. */
    struct pollfd pollfd = {.fd = mailbox_fd(mailbox), .events = POLLIN};
    assert_int_equal(poll(&pollfd, 1, 0), 1);
    mailbox_drain(mailbox);
    mailbox_drain(mailbox);
    assert_int_equal(runs, 3);
    mailbox_destroy(mailbox);
}

static struct test_item *new_item(int sequence)
{
    struct test_item *item = malloc(sizeof(*item));
    assert_non_null(item);
    *item = (struct test_item){.item.run = run_item, .poster = 0, .sequence = sequence};
    return item;
}

static uint64_t eventfd_counter(struct mailbox *mailbox)
{
    struct pollfd pollfd = {.fd = mailbox_fd(mailbox), .events = POLLIN};
    if (poll(&pollfd, 1, 0) != 1)
        return 0;
    uint64_t counter = 0;
    assert_int_equal(read(mailbox_fd(mailbox), &counter, sizeof(counter)), sizeof(counter));
    return counter;
}

/*
 * With sleep hooks, a post writes the eventfd only while the owner may be
 * asleep: after mailbox_before_sleep() found nothing, and once until the
 * owner is awake again. Posts to an awake owner run before its next wait.
 */
static void eventfd_written_only_while_the_owner_may_sleep(void **state)
{
    (void)state;
    struct mailbox *mailbox = mailbox_create();
    assert_non_null(mailbox);
    drain_state = (struct drain_state){.owner = pthread_self()};
    mailbox_awake(mailbox);
    mailbox_post(mailbox, &new_item(0)->item);
    mailbox_post(mailbox, &new_item(1)->item);
    assert_int_equal(eventfd_counter(mailbox), 0);
    assert_true(mailbox_before_sleep(mailbox));
    assert_int_equal(drain_state.ran, 2);
    assert_false(mailbox_before_sleep(mailbox));
    mailbox_post(mailbox, &new_item(2)->item);
    mailbox_post(mailbox, &new_item(3)->item);
    assert_int_equal(eventfd_counter(mailbox), 1);
    mailbox_awake(mailbox);
    mailbox_drain(mailbox);
    assert_int_equal(drain_state.ran, 4);
    /* Drained while awake: the owner looks again before it sleeps, no write meanwhile. */
    mailbox_post(mailbox, &new_item(4)->item);
    assert_int_equal(eventfd_counter(mailbox), 0);
    assert_true(mailbox_before_sleep(mailbox));
    assert_false(mailbox_before_sleep(mailbox));
    assert_int_equal(drain_state.ran, 5);
    assert_int_equal(drain_state.out_of_order, 0);
    mailbox_destroy(mailbox);
}

#define PING_PONG_ITEMS 3000

struct ping_item {
    struct mailbox_item item;
    atomic_int *ran;
};

static void run_ping(struct mailbox_item *item)
{
    struct ping_item *ping = (struct ping_item *)item;
    atomic_fetch_add(ping->ran, 1);
}

struct pinger {
    struct mailbox *mailbox;
    atomic_int ran;
};

/* Posts one item at a time and waits for it, so posts land as the owner goes to sleep. */
static void *ping_one_at_a_time(void *argument)
{
    struct pinger *pinger = argument;
    struct ping_item ping = {.item.run = run_ping, .ran = &pinger->ran};
    for (int i = 0; i < PING_PONG_ITEMS; i++) {
        mailbox_post(pinger->mailbox, &ping.item);
        while (atomic_load(&pinger->ran) <= i)
            sched_yield();
    }
    return NULL;
}

/*
 * The race of the sleep hooks: the owner loops as a shard's loop does (run
 * what is queued before waiting, wait on the eventfd, awake, drain) while
 * another thread posts one item at a time and waits for it to run. A post
 * that slipped between the owner's last look and its wait without writing
 * the eventfd would leave the owner asleep: its wait would time out.
 */
static void no_lost_wake_up_when_the_owner_goes_to_sleep(void **state)
{
    (void)state;
    struct pinger pinger = {.mailbox = mailbox_create()};
    assert_non_null(pinger.mailbox);
    pthread_t thread;
    assert_int_equal(pthread_create(&thread, NULL, ping_one_at_a_time, &pinger), 0);
    int sleeps = 0;
    while (atomic_load(&pinger.ran) < PING_PONG_ITEMS) {
        if (!mailbox_before_sleep(pinger.mailbox)) {
            struct pollfd pollfd = {.fd = mailbox_fd(pinger.mailbox), .events = POLLIN};
            int ready = poll(&pollfd, 1, 5000);
            if (ready == 0 && atomic_load(&pinger.ran) < PING_PONG_ITEMS)
                fail_msg("asleep with an item queued after %d items", atomic_load(&pinger.ran));
            sleeps++;
            mailbox_awake(pinger.mailbox);
            if (ready == 1)
                mailbox_drain(pinger.mailbox);
        }
    }
    assert_int_equal(pthread_join(thread, NULL), 0);
    assert_int_equal(atomic_load(&pinger.ran), PING_PONG_ITEMS);
    print_message("# %d sleeps for %d items\n", sleeps, PING_PONG_ITEMS);
    mailbox_destroy(pinger.mailbox);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(posts_from_four_threads_run_in_order_on_owner),
        cmocka_unit_test(post_wakes_the_eventfd_once_until_drained),
        cmocka_unit_test(run_may_post_again_without_deadlock),
        cmocka_unit_test(eventfd_written_only_while_the_owner_may_sleep),
        cmocka_unit_test(no_lost_wake_up_when_the_owner_goes_to_sleep),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

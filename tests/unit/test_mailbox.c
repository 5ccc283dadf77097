/*
 * test_mailbox: worker threads post, the owner drains; every item must run
 * exactly once, on the draining thread, in each poster's order.
 */
#include <poll.h>
#include <pthread.h>
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(posts_from_four_threads_run_in_order_on_owner),
        cmocka_unit_test(post_wakes_the_eventfd_once_until_drained),
        cmocka_unit_test(run_may_post_again_without_deadlock),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * mailbox: how worker threads (the signer, the store's commit writer) hand
 * finished work back to a shard without blocking it. Workers post items from
 * any thread; the shard's loop runs the items on its own thread, in the order
 * they were posted: before it waits for events (mailbox_before_sleep(), a
 * loop sleep hook), and when the mailbox's eventfd, written only while the
 * owner may be asleep, wakes it.
 */
#ifndef DPS_MAILBOX_H
#define DPS_MAILBOX_H

#include <stdbool.h>

struct mailbox_item {
    struct mailbox_item *next;
    void (*run)(struct mailbox_item *item);
};

struct mailbox;

struct mailbox *mailbox_create(void);
void mailbox_destroy(struct mailbox *mailbox);
int mailbox_fd(const struct mailbox *mailbox);
void mailbox_post(struct mailbox *mailbox, struct mailbox_item *item); /* any thread */
void mailbox_drain(struct mailbox *mailbox); /* owner thread: the eventfd fired */

/*
 * Owner thread, when its loop is about to wait: runs what is queued and
 * returns true (the loop then must not wait), or, with nothing queued,
 * returns false and arms the eventfd for the next post. mailbox_awake():
 * the wait returned, so posts need not write the eventfd until the next
 * mailbox_before_sleep(). An owner that calls neither gets a write for the
 * first post after each drain.
 */
bool mailbox_before_sleep(struct mailbox *mailbox);
void mailbox_awake(struct mailbox *mailbox);

#endif

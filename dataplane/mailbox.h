/*
 * mailbox: how worker threads (the signer, the store's commit writer) hand
 * finished work back to a shard without blocking it. Workers post items from
 * any thread; the shard's loop watches the mailbox's eventfd and runs the
 * items on its own thread, in the order they were posted.
 */
#ifndef DPS_MAILBOX_H
#define DPS_MAILBOX_H

struct mailbox_item {
    struct mailbox_item *next;
    void (*run)(struct mailbox_item *item);
};

struct mailbox;

struct mailbox *mailbox_create(void);
void mailbox_destroy(struct mailbox *mailbox);
int mailbox_fd(const struct mailbox *mailbox);
void mailbox_post(struct mailbox *mailbox, struct mailbox_item *item); /* any thread */
void mailbox_drain(struct mailbox *mailbox);                           /* owner thread */

#endif

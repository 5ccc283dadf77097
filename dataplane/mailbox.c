/*
 * mailbox: a mutex-protected FIFO of items plus an eventfd the owning loop
 * watches. A post wakes the owner only when it finds the queue empty: later
 * posts ride on that wake-up, so a burst of results costs one write and one
 * read of the eventfd. The owner takes the whole list under the lock and
 * runs the items outside it, so run() may post again without deadlock.
 */
#include "dataplane/mailbox.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

struct mailbox {
    pthread_mutex_t lock;
    struct mailbox_item *head;
    struct mailbox_item *tail;
    int fd;
};

struct mailbox *mailbox_create(void)
{
    struct mailbox *mailbox = calloc(1, sizeof(*mailbox));
    if (mailbox == NULL)
        return NULL;
    mailbox->fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (mailbox->fd < 0) {
        free(mailbox);
        return NULL;
    }
    pthread_mutex_init(&mailbox->lock, NULL);
    return mailbox;
}

void mailbox_destroy(struct mailbox *mailbox)
{
    if (mailbox == NULL)
        return;
    close(mailbox->fd);
    pthread_mutex_destroy(&mailbox->lock);
    free(mailbox);
}

int mailbox_fd(const struct mailbox *mailbox)
{
    return mailbox->fd;
}

void mailbox_post(struct mailbox *mailbox, struct mailbox_item *item)
{
    item->next = NULL;
    pthread_mutex_lock(&mailbox->lock);
    bool was_empty = mailbox->head == NULL;
    if (was_empty)
        mailbox->head = item;
    else
        mailbox->tail->next = item;
    mailbox->tail = item;
    pthread_mutex_unlock(&mailbox->lock);
    if (was_empty) {
        uint64_t one = 1;
        ssize_t r = write(mailbox->fd, &one, sizeof(one));
        (void)r; /* only fails when the counter is saturated: the owner is awake anyway */
    }
}

void mailbox_drain(struct mailbox *mailbox)
{
    uint64_t count;
    ssize_t r = read(mailbox->fd, &count, sizeof(count));
    (void)r; /* EAGAIN: a wake-up already consumed; the list decides */
    pthread_mutex_lock(&mailbox->lock);
    struct mailbox_item *item = mailbox->head;
    mailbox->head = NULL;
    mailbox->tail = NULL;
    pthread_mutex_unlock(&mailbox->lock);
    while (item != NULL) {
        struct mailbox_item *next = item->next; /* run() may free the item */
        item->run(item);
        item = next;
    }
}

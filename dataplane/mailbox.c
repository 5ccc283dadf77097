/*
 * mailbox: a mutex-protected FIFO of items plus an eventfd the owning loop
 * watches. The owner runs the items before each wait, so while it is awake a
 * post costs no system call at all; only a post that finds the eventfd armed
 * (the owner found nothing queued before its last wait, or drained the list
 * through the eventfd without sleep hooks) writes it, and disarms it, so a
 * burst of results costs at most one write and one read of the eventfd.
 *
 * No lost wake-up: the owner arms the eventfd under the lock, after finding
 * the list empty, and only then waits; a post appends and takes the armed
 * flag under the same lock. So a post either lands before the owner looked
 * (the owner runs it and does not wait) or finds the flag armed and writes.
 * mailbox_awake() disarms without the lock: a post that still found it armed
 * writes once more, which is harmless.
 *
 * The owner takes the whole list under the lock and runs the items outside
 * it, so run() may post again without deadlock.
 */
#include "dataplane/mailbox.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

struct mailbox {
    pthread_mutex_t lock;
    struct mailbox_item *head;
    struct mailbox_item *tail;
    atomic_bool wake_armed; /* the next post writes the eventfd: the owner may sleep */
    bool owner_awake;       /* owner only: from mailbox_awake() to the next sleep */
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
    atomic_init(&mailbox->wake_armed, true);
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
    if (mailbox->head == NULL)
        mailbox->head = item;
    else
        mailbox->tail->next = item;
    mailbox->tail = item;
    bool wake = atomic_exchange_explicit(&mailbox->wake_armed, false, memory_order_relaxed);
    pthread_mutex_unlock(&mailbox->lock);
    if (wake) {
        uint64_t one = 1;
        ssize_t r = write(mailbox->fd, &one, sizeof(one));
        (void)r; /* only fails when the counter is saturated: the owner is awake anyway */
    }
}

/*
 * Detaches the list (owner thread). Arms the eventfd when arm is true, or when
 * the list is empty and arm_if_empty is: the owner may then sleep.
 */
static struct mailbox_item *take_all(struct mailbox *mailbox, bool arm, bool arm_if_empty)
{
    pthread_mutex_lock(&mailbox->lock);
    struct mailbox_item *item = mailbox->head;
    mailbox->head = NULL;
    mailbox->tail = NULL;
    if (arm || (item == NULL && arm_if_empty))
        atomic_store_explicit(&mailbox->wake_armed, true, memory_order_relaxed);
    pthread_mutex_unlock(&mailbox->lock);
    return item;
}

static void run_all(struct mailbox_item *item)
{
    while (item != NULL) {
        struct mailbox_item *next = item->next; /* run() may free the item */
        item->run(item);
        item = next;
    }
}

void mailbox_drain(struct mailbox *mailbox)
{
    uint64_t count;
    ssize_t r = read(mailbox->fd, &count, sizeof(count));
    (void)r; /* EAGAIN: a wake-up already consumed; the list decides */
    /* An owner without sleep hooks may sleep after any drain; an awake one looks again first. */
    run_all(take_all(mailbox, !mailbox->owner_awake, false));
}

bool mailbox_before_sleep(struct mailbox *mailbox)
{
    struct mailbox_item *item = take_all(mailbox, false, true);
    if (item == NULL) {
        mailbox->owner_awake = false;
        return false;
    }
    run_all(item);
    return true;
}

void mailbox_awake(struct mailbox *mailbox)
{
    mailbox->owner_awake = true;
    atomic_store_explicit(&mailbox->wake_armed, false, memory_order_relaxed);
}

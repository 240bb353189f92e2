/* list — an intrusive doubly linked list (the kernel's and nftables'
 * include/list.h, cut to what kdiag uses).
 *
 * A struct joins a list by embedding a list_node; the list itself is a
 * list_node too, linked in a circle through its elements, so that insertion
 * and removal need no case for the ends and an element unlinks itself without
 * knowing its list:
 *
 *     struct conn { int fd; list_node link; };
 *     list_node conns = LIST_INIT(conns);
 *     list_add_tail(&conns, &c->link);
 *     list_for_each_entry_safe(c, tmp, &conns, link)
 *         if (done(c)) list_del(&c->link), free(c);
 */
#ifndef KDIAG_BASIC_LIST_H
#define KDIAG_BASIC_LIST_H

#include <stdbool.h>
#include <stddef.h>

typedef struct list_node {
    struct list_node *next, *prev;
} list_node;

/* An empty list (or an unlinked node), for static and declaration-time use. */
#define LIST_INIT(name) \
    { \
        &(name), &(name) \
    }

static inline void list_init(list_node *n)
{
    n->next = n->prev = n;
}

static inline bool list_empty(const list_node *head)
{
    return head->next == head;
}

/* Whether n is on a list; n must have been list_init'ed or list_del'ed. */
static inline bool list_linked(const list_node *n)
{
    return n->next != n;
}

static inline void list_insert_(list_node *n, list_node *prev, list_node *next)
{
    next->prev = n;
    n->next = next;
    n->prev = prev;
    prev->next = n;
}

/* Inserts n first / last. */
static inline void list_add(list_node *head, list_node *n)
{
    list_insert_(n, head, head->next);
}

static inline void list_add_tail(list_node *head, list_node *n)
{
    list_insert_(n, head->prev, head);
}

/* Unlinks n from its list and leaves it unlinked (list_linked false);
 * harmless on an unlinked node. */
static inline void list_del(list_node *n)
{
    n->prev->next = n->next;
    n->next->prev = n->prev;
    list_init(n);
}

/* Moves every element of from, in order, to the end of to; from is left
 * empty. O(1): for taking a whole queue out from under a lock. */
static inline void list_splice_tail_init(list_node *to, list_node *from)
{
    if (list_empty(from))
        return;
    list_node *first = from->next, *last = from->prev;
    first->prev = to->prev;
    to->prev->next = first;
    last->next = to;
    to->prev = last;
    list_init(from);
}

/* The struct of type T whose member m is the node n. */
#define list_entry(n, T, m) ((T *)((char *)(n) - (offsetof(T, m))))

/* The first element, or NULL for an empty list. */
#define list_first_entry_or_null(head, T, m) (list_empty(head) ? NULL : list_entry((head)->next, T, m))

/* Iterates e (a pointer to the element type) over the list at head, where m
 * names the list_node member; e must not be removed meanwhile. */
#define list_for_each_entry(e, head, m) \
    for (e = list_entry((head)->next, __typeof__(*e), m); &e->m != (head); \
         e = list_entry(e->m.next, __typeof__(*e), m))

/* The same, but e may be removed (and freed): tmp holds the next element. */
#define list_for_each_entry_safe(e, tmp, head, m) \
    for (e = list_entry((head)->next, __typeof__(*e), m), tmp = list_entry(e->m.next, __typeof__(*e), m); \
         &e->m != (head); e = tmp, tmp = list_entry(tmp->m.next, __typeof__(*e), m))

#endif

/* basic/list.h: order, removal while iterating, unlinked nodes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "basic/list.h"

typedef struct {
    int v;
    list_node link;
} item;

static void collect(list_node *head, int *out, size_t *n)
{
    item *e;
    *n = 0;
    list_for_each_entry(e, head, link)
        out[(*n)++] = e->v;
}

static void add_and_add_tail_keep_order(void **state)
{
    (void)state;
    list_node head = LIST_INIT(head);
    item a = {.v = 1}, b = {.v = 2}, c = {.v = 3};
    assert_true(list_empty(&head));
    assert_null(list_first_entry_or_null(&head, item, link));
    list_add_tail(&head, &b.link);
    list_add_tail(&head, &c.link);
    list_add(&head, &a.link);
    int got[3];
    size_t n;
    collect(&head, got, &n);
    assert_int_equal(n, 3);
    assert_int_equal(got[0], 1);
    assert_int_equal(got[1], 2);
    assert_int_equal(got[2], 3);
    assert_ptr_equal(list_first_entry_or_null(&head, item, link), &a);
}

static void del_unlinks_and_is_idempotent(void **state)
{
    (void)state;
    list_node head;
    list_init(&head);
    item a = {.v = 1}, b = {.v = 2};
    list_add_tail(&head, &a.link);
    list_add_tail(&head, &b.link);
    assert_true(list_linked(&a.link));
    list_del(&a.link);
    assert_false(list_linked(&a.link));
    list_del(&a.link);
    int got[2];
    size_t n;
    collect(&head, got, &n);
    assert_int_equal(n, 1);
    assert_int_equal(got[0], 2);
    list_del(&b.link);
    assert_true(list_empty(&head));
}

static void safe_iteration_frees_while_walking(void **state)
{
    (void)state;
    list_node head = LIST_INIT(head);
    for (int i = 0; i < 10; i++) {
        item *it = malloc(sizeof *it);
        assert_non_null(it);
        it->v = i;
        list_add_tail(&head, &it->link);
    }
    item *e, *tmp;
    list_for_each_entry_safe(e, tmp, &head, link)
        if (e->v % 2) {
            list_del(&e->link);
            free(e);
        }
    int got[10];
    size_t n;
    collect(&head, got, &n);
    assert_int_equal(n, 5);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(got[i], 2 * (int)i);
    list_for_each_entry_safe(e, tmp, &head, link) {
        list_del(&e->link);
        free(e);
    }
    assert_true(list_empty(&head));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(add_and_add_tail_keep_order),
        cmocka_unit_test(del_unlinks_and_is_idempotent),
        cmocka_unit_test(safe_iteration_frees_while_walking),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

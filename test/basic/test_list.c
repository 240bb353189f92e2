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

/* The list holds exactly want[0..n), in order. */
static void expect(list_node *head, const int *want, size_t n)
{
    int got[16];
    size_t k;
    collect(head, got, &k);
    assert_int_equal(k, n);
    assert_memory_equal(got, want, n * sizeof *want);
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
    expect(&head, (int[]){1, 2, 3}, 3);
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
    expect(&head, (int[]){2}, 1);
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
    expect(&head, (int[]){0, 2, 4, 6, 8}, 5);
    list_for_each_entry_safe(e, tmp, &head, link) {
        list_del(&e->link);
        free(e);
    }
    assert_true(list_empty(&head));
}

static void splice_moves_a_whole_list_in_order(void **state)
{
    (void)state;
    list_node from = LIST_INIT(from), to = LIST_INIT(to);
    item a = {.v = 1}, b = {.v = 2}, c = {.v = 3};
    list_splice_tail_init(&to, &from); /* empty: nothing happens */
    assert_true(list_empty(&to));
    list_add_tail(&to, &a.link);
    list_add_tail(&from, &b.link);
    list_add_tail(&from, &c.link);
    list_splice_tail_init(&to, &from);
    assert_true(list_empty(&from));
    expect(&to, (int[]){1, 2, 3}, 3);
    assert_ptr_equal(to.prev, &c.link); /* the back links too */
    assert_ptr_equal(c.link.next, &to);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(add_and_add_tail_keep_order),
        cmocka_unit_test(del_unlinks_and_is_idempotent),
        cmocka_unit_test(safe_iteration_frees_while_walking),
        cmocka_unit_test(splice_moves_a_whole_list_in_order),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

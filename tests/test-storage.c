/* test-storage.c: the shared storage, in the hub and across children
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include <signal.h>
#include <string.h>
#include <sys/wait.h>

#include "ly-test-util.h"

/* In one process ----------------------------------------------------------- */

typedef struct
{
  GPtrArray *keys;
  GPtrArray *values;    /* "absent" for NULL */
} Changes;

static void
record_change (LyStorage  *storage,
               const char *key,
               GVariant   *value,
               Changes    *changes)
{
  g_ptr_array_add (changes->keys, g_strdup (key));
  g_ptr_array_add (changes->values, value != NULL ? g_variant_print (value, FALSE) : g_strdup ("absent"));
}

static void
test_local_operations (void)
{
  g_autoptr(LyStorage) storage = ly_storage_new ();
  g_autoptr(GError) error = NULL;
  g_autoptr(GVariant) value = NULL;
  g_autoptr(GVariant) all = NULL;
  g_auto(GStrv) keys = NULL;
  Changes changes = { g_ptr_array_new_with_free_func (g_free), g_ptr_array_new_with_free_func (g_free) };
  Changes counter_changes = { g_ptr_array_new_with_free_func (g_free), g_ptr_array_new_with_free_func (g_free) };
  const char *expected_keys[] = { "a", "b", "counter", NULL };

  g_assert_false (ly_storage_is_proxy (storage));
  g_signal_connect (storage, "changed", G_CALLBACK (record_change), &changes);
  g_signal_connect (storage, "changed::counter", G_CALLBACK (record_change), &counter_changes);

  g_assert_null (ly_storage_get (storage, "missing", &error));
  g_assert_no_error (error);
  g_assert_false (ly_storage_contains (storage, "missing", &error));

  g_assert_true (ly_storage_set (storage, "a", g_variant_new_string ("one"), &error));
  g_assert_true (ly_storage_set (storage, "a", g_variant_new_string ("one"), &error));   /* equal: no change */
  g_assert_true (ly_storage_set (storage, "b", g_variant_new_parsed ("{'x': <1>}"), &error));
  g_assert_true (ly_storage_set (storage, "counter", g_variant_new_uint32 (1), &error));
  g_assert_no_error (error);

  value = ly_storage_get (storage, "b", &error);
  {
    g_autoptr(GVariant) expected = g_variant_ref_sink (g_variant_new_parsed ("{'x': <1>}"));

    g_assert_true (g_variant_equal (value, expected));
  }
  g_assert_true (ly_storage_contains (storage, "a", &error));
  keys = ly_storage_list_keys (storage, &error);
  g_assert_cmpstrv (keys, expected_keys);
  all = ly_storage_get_all (storage, &error);
  g_assert_cmpuint (g_variant_n_children (all), ==, 3);
  g_assert_true (g_variant_is_of_type (all, G_VARIANT_TYPE_VARDICT));

  /* compare-and-set: match, mismatch, absent, delete */
  g_assert_true (ly_storage_compare_and_set (storage, "counter", g_variant_new_uint32 (1), g_variant_new_uint32 (2), &error));
  g_assert_false (ly_storage_compare_and_set (storage, "counter", g_variant_new_uint32 (1), g_variant_new_uint32 (3), &error));
  g_assert_no_error (error);
  g_assert_false (ly_storage_compare_and_set (storage, "new", g_variant_new_uint32 (0), g_variant_new_uint32 (1), &error));
  g_assert_true (ly_storage_compare_and_set (storage, "new", NULL, g_variant_new_uint32 (1), &error));
  g_assert_true (ly_storage_compare_and_set (storage, "new", g_variant_new_uint32 (1), NULL, &error));
  g_assert_false (ly_storage_contains (storage, "new", &error));

  g_assert_true (ly_storage_delete (storage, "a", &error));
  g_assert_true (ly_storage_delete (storage, "a", &error));   /* absent: not an error, no change */
  g_assert_no_error (error);

  /* a, b, counter, counter, new, new(deleted), a(deleted): once each */
  g_assert_cmpuint (changes.keys->len, ==, 7);
  g_assert_cmpstr (g_ptr_array_index (changes.keys, 0), ==, "a");
  g_assert_cmpstr (g_ptr_array_index (changes.values, 0), ==, "'one'");
  g_assert_cmpstr (g_ptr_array_index (changes.keys, 6), ==, "a");
  g_assert_cmpstr (g_ptr_array_index (changes.values, 6), ==, "absent");
  g_assert_cmpuint (counter_changes.keys->len, ==, 2);
  g_assert_cmpstr (g_ptr_array_index (counter_changes.values, 1), ==, "2");

  g_ptr_array_unref (changes.keys);
  g_ptr_array_unref (changes.values);
  g_ptr_array_unref (counter_changes.keys);
  g_ptr_array_unref (counter_changes.values);
}

static void
count_publication (LyStorage  *storage,
                   const char *topic,
                   GVariant   *value,
                   guint      *count)
{
  g_assert_cmpuint (g_variant_get_uint32 (value), ==, *count);
  (*count)++;
}

static void
test_local_publish (void)
{
  g_autoptr(LyStorage) storage = ly_storage_new ();
  g_autoptr(GError) error = NULL;
  guint news = 0, other = 0;

  g_signal_connect (storage, "published::news", G_CALLBACK (count_publication), &news);
  g_signal_connect (storage, "published::other", G_CALLBACK (count_publication), &other);

  /* not subscribed yet: nothing */
  g_assert_true (ly_storage_publish (storage, "news", g_variant_new_uint32 (99), &error));
  g_assert_cmpuint (news, ==, 0);

  g_assert_true (ly_storage_subscribe (storage, "news", &error));
  for (guint i = 0; i < 10; i++)
    g_assert_true (ly_storage_publish (storage, "news", g_variant_new_uint32 (i), &error));
  g_assert_true (ly_storage_publish (storage, "other", g_variant_new_uint32 (0), &error));
  g_assert_no_error (error);
  g_assert_cmpuint (news, ==, 10);
  g_assert_cmpuint (other, ==, 0);
  g_assert_false (ly_storage_contains (storage, "news", &error));

  g_assert_true (ly_storage_unsubscribe (storage, "news", &error));
  g_assert_true (ly_storage_publish (storage, "news", g_variant_new_uint32 (10), &error));
  g_assert_cmpuint (news, ==, 10);
}

static void
test_local_bad_input (void)
{
  g_autoptr(LyStorage) storage = ly_storage_new ();
  g_autoptr(GError) error = NULL;
  g_autofree char *long_key = g_strnfill (LY_STORAGE_MAX_KEY_LENGTH + 1, 'k');
  g_autofree char *longest_key = g_strnfill (LY_STORAGE_MAX_KEY_LENGTH, 'k');
  g_autofree guint8 *data = g_malloc0 (2048);
  const char *bad_keys[] = { "", long_key, "\xff\xfe", "caf\xc3" };

  for (gsize i = 0; i < G_N_ELEMENTS (bad_keys); i++)
    {
      g_assert_false (ly_storage_set (storage, bad_keys[i], g_variant_new_int32 (1), &error));
      g_assert_error (error, LY_STORAGE_ERROR, LY_STORAGE_ERROR_INVALID_KEY);
      g_test_message ("%s", error->message);
      g_clear_error (&error);
      g_assert_null (ly_storage_get (storage, bad_keys[i], &error));
      g_assert_error (error, LY_STORAGE_ERROR, LY_STORAGE_ERROR_INVALID_KEY);
      g_clear_error (&error);
    }

  g_assert_true (ly_storage_set (storage, longest_key, g_variant_new_int32 (1), &error));
  g_assert_no_error (error);

  g_object_set (storage, "max-value-size", (guint64) 1024, NULL);
  g_assert_false (ly_storage_set (storage, "big", g_variant_new_fixed_array (G_VARIANT_TYPE_BYTE, data, 2048, 1), &error));
  g_assert_error (error, LY_STORAGE_ERROR, LY_STORAGE_ERROR_TOO_LARGE);
  g_clear_error (&error);
  g_assert_false (ly_storage_contains (storage, "big", &error));

  /* nothing bad was stored */
  {
    g_auto(GStrv) keys = ly_storage_list_keys (storage, &error);

    g_assert_cmpuint (g_strv_length (keys), ==, 1);
    g_assert_cmpstr (keys[0], ==, longest_key);
  }
}

/* Across processes ---------------------------------------------------------- */

typedef struct
{
  LyProcessManager *manager;
  LyTestOutput     *output;
  LyStorage        *storage;
} Fixture;

static void
fixture_setup (Fixture       *f,
               gconstpointer  data)
{
  f->manager = ly_process_manager_new ();
  f->output = ly_test_output_new ();
  f->storage = ly_storage_get_default ();
  g_assert_false (ly_storage_is_proxy (f->storage));
}

static void
fixture_teardown (Fixture       *f,
                  gconstpointer  data)
{
  g_auto(GStrv) keys = ly_storage_list_keys (f->storage, NULL);

  ly_process_manager_stop_all (f->manager, NULL, NULL);
  g_clear_object (&f->manager);
  g_clear_pointer (&f->output, ly_test_output_free);
  for (guint i = 0; keys[i] != NULL; i++)
    ly_storage_delete (f->storage, keys[i], NULL);
}

#define add_child(f, name, ...) ly_test_add_storage_child ((f)->manager, (f)->output, name, __VA_ARGS__)
#define start(f, name)          ly_test_start ((f)->manager, name)

static void
count_change (LyStorage  *storage,
              const char *key,
              GVariant   *value,
              guint      *count)
{
  (*count)++;
}

/* 8 children, C and Python, 10,000 compare-and-set increments each. */
static void
test_cas_counter (Fixture       *f,
                  gconstpointer  data)
{
  g_autoptr(GVariant) value = NULL;
  g_autoptr(GError) error = NULL;
  guint per_child = ly_test_scaled (10000);
  g_autofree char *count = g_strdup_printf ("%u", per_child);
  const char *python = g_getenv ("LY_TEST_PYTHON");
  g_autofree char *script = g_test_build_filename (G_TEST_DIST, "helpers", "storage_child.py", NULL);
  guint n_children = 8, hub_changes = 0;

  g_signal_connect (f->storage, "changed::counter", G_CALLBACK (count_change), &hub_changes);

  for (guint i = 0; i < n_children; i++)
    {
      g_autofree char *name = g_strdup_printf ("inc%u", i);

      if (i >= 6 && python != NULL)
        {
          const char *argv[] = { python, script, "counter", count, NULL };
          ly_test_add_target (f->manager, name, argv, f->output);
        }
      else
        add_child (f, name, "cas-increment", "counter", count, NULL);
      start (f, name);
    }

  ly_test_output_wait (f->output, "incremented", n_children, 240);
  g_test_message ("hub saw %u changes", hub_changes);

  value = ly_storage_get (f->storage, "counter", &error);
  g_assert_no_error (error);
  g_assert_cmpuint (g_variant_get_uint32 (value), ==, n_children * per_child);
  g_assert_cmpuint (hub_changes, ==, n_children * per_child);
  g_signal_handlers_disconnect_by_data (f->storage, &hub_changes);
}

/* A set in child A, once returned, is what child B reads. */
static void
test_set_then_read_elsewhere (Fixture       *f,
                              gconstpointer  data)
{
  add_child (f, "writer", "set", "greeting", "hello from A", NULL);
  add_child (f, "reader", "get", "greeting", NULL);

  start (f, "writer");
  ly_test_output_wait (f->output, "set greeting", 1, 10);
  start (f, "reader");
  ly_test_output_wait (f->output, "got greeting = 'hello from A'", 1, 10);
}

/* A child's changed handler fires once per real change made by the hub. */
static void
test_changed_in_child (Fixture       *f,
                       gconstpointer  data)
{
  g_autoptr(GError) error = NULL;

  add_child (f, "watcher", "watch", "level", "50", NULL);
  start (f, "watcher");
  ly_test_output_wait (f->output, "ready", 1, 10);

  for (guint i = 1; i <= 50; i++)
    {
      g_assert_true (ly_storage_set (f->storage, "level", g_variant_new_uint32 (i), &error));
      /* equal values and other keys are not changes of "level" */
      g_assert_true (ly_storage_set (f->storage, "level", g_variant_new_uint32 (i), &error));
      g_assert_true (ly_storage_set (f->storage, "noise", g_variant_new_uint32 (i), &error));
    }
  ly_test_output_wait (f->output, "watched 50 changes of level, last 50", 1, 10);

  /* and not one more */
  ly_test_wait_msec (100);
  g_assert_cmpuint (ly_test_output_count (f->output, "watched"), ==, 1);
}

/* Four publishers, one topic: every subscriber gets every publication, in
 * order per publisher; a process that did not subscribe gets none. */
static void
on_hub_publication (LyStorage  *storage,
                    const char *topic,
                    GVariant   *value,
                    guint      *next)
{
  guint id, seq;

  g_variant_get (value, "(uu)", &id, &seq);
  g_assert_cmpuint (id, <, 4);
  g_assert_cmpuint (seq, ==, next[id]);
  next[id]++;
  next[4]++;
}

static void
test_publish_order (Fixture       *f,
                    gconstpointer  data)
{
  g_autoptr(GError) error = NULL;
  guint per_publisher = ly_test_scaled (1000);
  g_autofree char *count = g_strdup_printf ("%u", per_publisher);
  g_autofree char *total = g_strdup_printf ("%u", 4 * per_publisher);
  guint next[5] = { 0, };
  guint unsubscribed = 0;

  g_assert_true (ly_storage_subscribe (f->storage, "news", &error));
  g_signal_connect (f->storage, "published::news", G_CALLBACK (on_hub_publication), next);
  g_signal_connect (f->storage, "published::elsewhere", G_CALLBACK (count_change), &unsubscribed);

  add_child (f, "subscriber", "subscribe", "news", total, NULL);
  add_child (f, "bystander", "subscribe", "sports", "1", NULL);
  start (f, "subscriber");
  start (f, "bystander");
  ly_test_output_wait (f->output, "ready", 2, 10);

  for (guint i = 0; i < 4; i++)
    {
      g_autofree char *name = g_strdup_printf ("publisher%u", i);
      g_autofree char *id = g_strdup_printf ("%u", i);

      add_child (f, name, "publish", "news", id, count, NULL);
      start (f, name);
    }

  ly_test_output_wait (f->output, "published", 4, 60);
  ly_test_output_wait (f->output, "in order", 1, 60);
  ly_test_run_until_count (&next[4], 4 * per_publisher, 30);
  for (guint i = 0; i < 4; i++)
    g_assert_cmpuint (next[i], ==, per_publisher);

  /* the bystander subscribed to another topic: it got nothing */
  ly_test_wait_msec (100);
  g_assert_cmpuint (ly_test_output_count (f->output, "on sports"), ==, 0);
  g_assert_cmpuint (ly_test_output_count (f->output, "out of order"), ==, 0);

  g_signal_handlers_disconnect_by_data (f->storage, next);
  g_signal_handlers_disconnect_by_data (f->storage, &unsubscribed);
  g_assert_true (ly_storage_unsubscribe (f->storage, "news", &error));
}

/* What a child stored before it crashed stays stored. */
static int last_status;

static void
record_exit (LyProcessManager *manager,
             const char       *name,
             int               status,
             LyExitReason      reason,
             guint            *exits)
{
  g_assert_cmpint (reason, ==, LY_EXIT_REASON_KILLED);
  last_status = status;
  (*exits)++;
}

static void
test_crash_loses_nothing (Fixture       *f,
                          gconstpointer  data)
{
  g_autoptr(GError) error = NULL;
  guint exits = 0;

  g_signal_connect (f->manager, "process-exited", G_CALLBACK (record_exit), &exits);
  add_child (f, "crasher", "set-many", "100", NULL);
  start (f, "crasher");
  ly_test_run_until_count (&exits, 1, 20);
  g_assert_true (WIFSIGNALED (last_status) && WTERMSIG (last_status) == SIGABRT);
  g_assert_cmpuint (ly_test_output_count (f->output, "stored 100 keys"), ==, 1);

  for (guint i = 0; i < 100; i++)
    {
      g_autofree char *key = g_strdup_printf ("key%u", i);
      g_autoptr(GVariant) value = ly_storage_get (f->storage, key, &error);

      g_assert_no_error (error);
      g_assert_nonnull (value);
      g_assert_cmpuint (g_variant_get_uint32 (value), ==, i);
    }
}

/* Bad input from a child: clear errors, nothing stored, served after. */
static void
test_child_bad_input (Fixture       *f,
                      gconstpointer  data)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *invalid_key = g_strdup_printf ("ly-storage-error-quark %d", LY_STORAGE_ERROR_INVALID_KEY);
  g_autofree char *too_large = g_strdup_printf ("ly-storage-error-quark %d", LY_STORAGE_ERROR_TOO_LARGE);

  add_child (f, "bad", "bad-input", NULL);
  start (f, "bad");
  ly_test_output_wait (f->output, "still served", 1, 20);

  g_assert_cmpuint (ly_test_output_count (f->output, invalid_key), ==, 4);
  g_assert_cmpuint (ly_test_output_count (f->output, too_large), ==, 1);
  g_assert_true (ly_storage_contains (f->storage, "after-bad-input", &error));
  g_assert_false (ly_storage_contains (f->storage, "big", &error));
  g_assert_no_error (error);
}

int
main (int   argc,
      char *argv[])
{
  g_test_init (&argc, &argv, NULL);
  signal (SIGPIPE, SIG_IGN);

  g_test_add_func ("/storage/local/operations", test_local_operations);
  g_test_add_func ("/storage/local/publish", test_local_publish);
  g_test_add_func ("/storage/local/bad-input", test_local_bad_input);

#define STORAGE_TEST(path, func) \
  g_test_add ("/storage/" path, Fixture, NULL, fixture_setup, func, fixture_teardown)

  STORAGE_TEST ("cas-counter", test_cas_counter);
  STORAGE_TEST ("set-then-read-elsewhere", test_set_then_read_elsewhere);
  STORAGE_TEST ("changed-in-child", test_changed_in_child);
  STORAGE_TEST ("publish-order", test_publish_order);
  STORAGE_TEST ("crash-loses-nothing", test_crash_loses_nothing);
  STORAGE_TEST ("child-bad-input", test_child_bad_input);

  return g_test_run ();
}

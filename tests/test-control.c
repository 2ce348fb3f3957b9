/* test-control.c: the control connection's handler routing, its typed
 * replies, and the storage server behind it, in one process over a
 * channel pair
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "config.h"

#include <string.h>

#include "ly-control-private.h"
#include "ly-storage-backend-private.h"
#include "ly-storage-private.h"

/* Two ends: the hub's serves, the child's calls. */
typedef struct
{
  LyChannel *hub_channel;
  LyChannel *child_channel;
  LyControl *hub;
  LyControl *child;
} Fixture;

static void
fixture_set_up (Fixture       *fixture,
                gconstpointer  data)
{
  g_autoptr(GError) error = NULL;

  g_assert_true (ly_channel_new_pair ("control", &fixture->hub_channel, &fixture->child_channel, &error));
  g_assert_no_error (error);
  fixture->hub = ly_control_new (fixture->hub_channel);
  fixture->child = ly_control_new (fixture->child_channel);
}

static void
fixture_tear_down (Fixture       *fixture,
                   gconstpointer  data)
{
  g_clear_object (&fixture->hub);
  g_clear_object (&fixture->child);
  g_clear_object (&fixture->hub_channel);
  g_clear_object (&fixture->child_channel);
}

typedef struct
{
  gboolean  done;
  GVariant *result;
  GError   *error;
} Outcome;

static void
outcome_clear (Outcome *outcome)
{
  g_clear_pointer (&outcome->result, g_variant_unref);
  g_clear_error (&outcome->error);
  outcome->done = FALSE;
}

static void
store_outcome (GVariant     *result,
               const GError *error,
               gpointer      user_data)
{
  Outcome *outcome = user_data;

  outcome->result = result != NULL ? g_variant_ref (result) : NULL;
  outcome->error = error != NULL ? g_error_copy (error) : NULL;
  outcome->done = TRUE;
}

static void
wait_for (Outcome *outcome)
{
  gint64 deadline = g_get_monotonic_time () + 10 * G_USEC_PER_SEC;

  while (!outcome->done)
    {
      g_assert_cmpint (g_get_monotonic_time (), <, deadline);
      g_main_context_iteration (NULL, TRUE);
    }
}

/* Echoes its (s) argument back, and counts. */
static void
on_echo (LyControl *control,
         guint32    serial,
         GVariant  *args,
         gpointer   user_data)
{
  guint *calls = user_data;

  (*calls)++;
  if (serial != 0)
    ly_control_reply (control, serial, args);
}

static void
test_routing (Fixture       *fixture,
              gconstpointer  data)
{
  Outcome outcome = { 0, };
  guint calls = 0;

  ly_control_add_handler (fixture->hub, "Echo", "(s)", on_echo, &calls, NULL);

  /* served */
  ly_control_call (fixture->child, "Echo", g_variant_new ("(s)", "hello"), G_VARIANT_TYPE ("(s)"),
                   store_outcome, &outcome);
  wait_for (&outcome);
  g_assert_no_error (outcome.error);
  g_assert_cmpstr (g_variant_get_type_string (outcome.result), ==, "(s)");
  g_assert_cmpuint (calls, ==, 1);
  outcome_clear (&outcome);

  /* a method nobody serves: no handler runs, the caller hears why */
  ly_control_call (fixture->child, "EchoMore", g_variant_new ("(s)", "hello"), G_VARIANT_TYPE ("(s)"),
                   store_outcome, &outcome);
  wait_for (&outcome);
  g_assert_error (outcome.error, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED);
  g_assert_cmpuint (calls, ==, 1);
  outcome_clear (&outcome);

  /* a prefix of a served method is not that method */
  ly_control_call (fixture->child, "Ech", g_variant_new ("(s)", "hello"), G_VARIANT_TYPE ("(s)"),
                   store_outcome, &outcome);
  wait_for (&outcome);
  g_assert_error (outcome.error, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED);
  outcome_clear (&outcome);

  /* arguments of another type never reach the handler */
  ly_control_call (fixture->child, "Echo", g_variant_new ("(i)", 42), G_VARIANT_TYPE ("(s)"),
                   store_outcome, &outcome);
  wait_for (&outcome);
  g_assert_error (outcome.error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT);
  g_assert_cmpuint (calls, ==, 1);
  outcome_clear (&outcome);

  /* a reply of another type than the caller asked for */
  ly_control_call (fixture->child, "Echo", g_variant_new ("(s)", "hello"), G_VARIANT_TYPE ("(b)"),
                   store_outcome, &outcome);
  wait_for (&outcome);
  g_assert_error (outcome.error, LY_CHANNEL_ERROR, LY_CHANNEL_ERROR_PROTOCOL);
  g_assert_cmpuint (calls, ==, 2);
  outcome_clear (&outcome);

  /* removed handlers serve no more */
  ly_control_remove_handlers (fixture->hub, &calls);
  ly_control_call (fixture->child, "Echo", g_variant_new ("(s)", "hello"), G_VARIANT_TYPE ("(s)"),
                   store_outcome, &outcome);
  wait_for (&outcome);
  g_assert_error (outcome.error, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED);
  g_assert_cmpuint (calls, ==, 2);
  outcome_clear (&outcome);
}

/* A blocking call from a worker thread checks the reply type too. */
typedef struct
{
  LyControl *control;
  GVariant  *result;
  GError    *error;
  gboolean   done;
} SyncCall;

static gpointer
call_sync_thread (gpointer data)
{
  SyncCall *call = data;

  call->result = ly_control_call_sync (call->control, "Echo", g_variant_new ("(s)", "x"),
                                       G_VARIANT_TYPE ("(u)"), 5000, NULL, &call->error);
  g_atomic_int_set (&call->done, TRUE);
  g_main_context_wakeup (NULL);
  return NULL;
}

static void
test_sync_reply_type (Fixture       *fixture,
                      gconstpointer  data)
{
  SyncCall call = { fixture->child, NULL, NULL, FALSE };
  GThread *thread;
  guint calls = 0;

  /* the hub's side runs its context until the caller has its answer */
  ly_control_add_handler (fixture->hub, "Echo", "(s)", on_echo, &calls, NULL);
  thread = g_thread_new ("caller", call_sync_thread, &call);
  while (!g_atomic_int_get (&call.done))
    g_main_context_iteration (NULL, TRUE);
  g_thread_join (thread);
  g_assert_cmpuint (calls, ==, 1);

  g_assert_null (call.result);
  g_assert_error (call.error, LY_CHANNEL_ERROR, LY_CHANNEL_ERROR_PROTOCOL);
  g_clear_error (&call.error);
}

/* The storage server: each storage method has its type; a batch of sets
 * reports every refused set with its own error (domain and code), and
 * applies the others. */
static void
test_storage_server (Fixture       *fixture,
                     gconstpointer  data)
{
  g_autoptr(LyStorage) storage = ly_storage_new ();
  g_autoptr(GVariant) stored = NULL;
  g_autoptr(GVariant) changed = NULL;
  g_autoptr(GVariant) failures = NULL;
  LyControlBatch *batch = ly_control_batch_new ();
  Outcome outcome = { 0, };
  const gboolean *flags;
  gsize n_flags;
  char big[200];
  gboolean existed;

  g_object_set (storage, "max-value-size", (guint64) 100, NULL);
  ly_storage_add_peer (storage, fixture->hub, NULL);
  memset (big, 'x', sizeof big - 1);
  big[sizeof big - 1] = '\0';

  /* ok, an empty key, too large, ok again (unchanged), ok */
  ly_control_batch_add_string (batch, "a");
  ly_control_batch_add (batch, g_variant_new_int32 (1));
  ly_control_batch_add_string (batch, "");
  ly_control_batch_add (batch, g_variant_new_int32 (2));
  ly_control_batch_add_string (batch, "b");
  ly_control_batch_add (batch, g_variant_new_string (big));
  ly_control_batch_add_string (batch, "a");
  ly_control_batch_add (batch, g_variant_new_int32 (1));
  ly_control_batch_add_string (batch, "c");
  ly_control_batch_add (batch, g_variant_new_boolean (TRUE));
  ly_control_call_batch (fixture->child, ly_storage_methods[LY_STORAGE_METHOD_SET_MANY].method, batch,
                         G_VARIANT_TYPE (ly_storage_methods[LY_STORAGE_METHOD_SET_MANY].reply_type),
                         store_outcome, &outcome);
  wait_for (&outcome);
  g_assert_no_error (outcome.error);

  g_variant_get (outcome.result, "(@ab@a(uss))", &changed, &failures);
  flags = g_variant_get_fixed_array (changed, &n_flags, sizeof (guchar));
  g_assert_cmpuint (n_flags, ==, 5);
  g_assert_true (((const guchar *) flags)[0]);
  g_assert_false (((const guchar *) flags)[3]);
  g_assert_true (((const guchar *) flags)[4]);
  g_assert_cmpuint (g_variant_n_children (failures), ==, 2);
  for (guint i = 0; i < 2; i++)
    {
      g_autoptr(GError) error = NULL;
      const char *name, *message;
      guint32 index;

      g_variant_get_child (failures, i, "(u&s&s)", &index, &name, &message);
      error = ly_control_error_from_variant (g_variant_new ("(ss)", name, message));
      if (index == 1)
        g_assert_error (error, LY_STORAGE_ERROR, LY_STORAGE_ERROR_INVALID_KEY);
      else
        {
          g_assert_cmpuint (index, ==, 2);
          g_assert_error (error, LY_STORAGE_ERROR, LY_STORAGE_ERROR_TOO_LARGE);
        }
    }
  outcome_clear (&outcome);

  stored = ly_storage_get (storage, "c", NULL);
  g_assert_nonnull (stored);
  g_assert_false (ly_storage_contains (storage, "b", NULL));

  /* each method checks its own arguments */
  ly_control_call (fixture->child, "StorageGet", g_variant_new ("(sv)", "a", g_variant_new_int32 (1)),
                   G_VARIANT_TYPE ("(mv)"), store_outcome, &outcome);
  wait_for (&outcome);
  g_assert_error (outcome.error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT);
  outcome_clear (&outcome);

  /* a delete says whether the key existed */
  ly_control_call (fixture->child, "StorageDelete", g_variant_new ("(s)", "a"),
                   G_VARIANT_TYPE ("(b)"), store_outcome, &outcome);
  wait_for (&outcome);
  g_assert_no_error (outcome.error);
  g_variant_get (outcome.result, "(b)", &existed);
  g_assert_true (existed);
  outcome_clear (&outcome);
  ly_control_call (fixture->child, "StorageDelete", g_variant_new ("(s)", "a"),
                   G_VARIANT_TYPE ("(b)"), store_outcome, &outcome);
  wait_for (&outcome);
  g_variant_get (outcome.result, "(b)", &existed);
  g_assert_false (existed);
  outcome_clear (&outcome);

  /* an empty key in a single request: the storage's own error */
  ly_control_call (fixture->child, "StorageSet", g_variant_new ("(sv)", "", g_variant_new_int32 (1)),
                   G_VARIANT_TYPE ("(b)"), store_outcome, &outcome);
  wait_for (&outcome);
  g_assert_error (outcome.error, LY_STORAGE_ERROR, LY_STORAGE_ERROR_INVALID_KEY);
  outcome_clear (&outcome);

  /* gone: its methods are served no more */
  ly_storage_remove_peer (storage, fixture->hub);
  ly_control_call (fixture->child, "StorageGet", g_variant_new ("(s)", "c"),
                   G_VARIANT_TYPE ("(mv)"), store_outcome, &outcome);
  wait_for (&outcome);
  g_assert_error (outcome.error, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED);
  outcome_clear (&outcome);
}

/* The hub tells every peer but the one that made a change, before it
 * answers that one; subscribers only get their topics. */
static void
on_notification (LyControl *control,
                 guint32    serial,
                 GVariant  *args,
                 gpointer   user_data)
{
  GPtrArray *seen = user_data;

  g_ptr_array_add (seen, g_variant_print (args, FALSE));
}

static void
test_storage_notifications (Fixture       *fixture,
                            gconstpointer  data)
{
  g_autoptr(LyStorage) storage = ly_storage_new ();
  g_autoptr(GPtrArray) seen = g_ptr_array_new_with_free_func (g_free);
  Outcome outcome = { 0, };

  ly_storage_add_peer (storage, fixture->hub, NULL);
  ly_control_add_handler (fixture->child, LY_STORAGE_CHANGED_METHOD, LY_STORAGE_CHANGED_TYPE,
                          on_notification, seen, NULL);
  ly_control_add_handler (fixture->child, LY_STORAGE_PUBLISHED_METHOD, LY_STORAGE_PUBLISHED_TYPE,
                          on_notification, seen, NULL);

  /* its own change: in the reply, not notified */
  ly_control_call (fixture->child, "StorageSet", g_variant_new ("(sv)", "k", g_variant_new_int32 (1)),
                   G_VARIANT_TYPE ("(b)"), store_outcome, &outcome);
  wait_for (&outcome);
  outcome_clear (&outcome);
  /* the hub's change, and a publication it did not subscribe to */
  g_assert_true (ly_storage_set (storage, "k", g_variant_new_int32 (2), NULL));
  g_assert_true (ly_storage_publish (storage, "news", g_variant_new_string ("ignored"), NULL));

  ly_control_call (fixture->child, "StorageSubscribe", g_variant_new ("(s)", "news"),
                   G_VARIANT_TYPE_UNIT, store_outcome, &outcome);
  wait_for (&outcome);
  g_assert_no_error (outcome.error);
  outcome_clear (&outcome);
  g_assert_true (ly_storage_publish (storage, "news", g_variant_new_string ("heard"), NULL));

  /* a round trip orders everything before it */
  ly_control_call (fixture->child, "StorageContains", g_variant_new ("(s)", "k"),
                   G_VARIANT_TYPE ("(b)"), store_outcome, &outcome);
  wait_for (&outcome);
  outcome_clear (&outcome);

  g_assert_cmpuint (seen->len, ==, 2);
  g_assert_cmpstr (g_ptr_array_index (seen, 0), ==, "('k', <2>)");
  g_assert_cmpstr (g_ptr_array_index (seen, 1), ==, "('news', <'heard'>)");
  ly_storage_remove_peer (storage, fixture->hub);
}

int
main (int   argc,
      char *argv[])
{
  g_test_init (&argc, &argv, NULL);

  g_test_add ("/control/routing", Fixture, NULL, fixture_set_up, test_routing, fixture_tear_down);
  g_test_add ("/control/sync-reply-type", Fixture, NULL, fixture_set_up, test_sync_reply_type, fixture_tear_down);
  g_test_add ("/control/storage-server", Fixture, NULL, fixture_set_up, test_storage_server, fixture_tear_down);
  g_test_add ("/control/storage-notifications", Fixture, NULL, fixture_set_up,
              test_storage_notifications, fixture_tear_down);

  return g_test_run ();
}

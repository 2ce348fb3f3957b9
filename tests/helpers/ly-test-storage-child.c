/* ly-test-storage-child.c: a child process for the storage tests
 *
 * Usage: ly-test-storage-child MODE ARGS...; reports go to the file named
 * by LY_TEST_OUTPUT (appended), one line each.
 *
 *   cas-increment KEY N     N compare-and-set increments of KEY (uint32),
 *                           reporting how long they took
 *   set KEY TEXT            sets KEY to the string TEXT
 *   get KEY                 reports KEY's value
 *   set-many N              sets key0..keyN-1, then aborts
 *   watch KEY N             reports after N `changed::KEY` signals
 *   publish TOPIC ID N      publishes (ID, i) for i in 0..N-1 on TOPIC
 *   wait-publish KEY TOPIC ID N   the same, once KEY exists
 *   wait KEY MODE ARGS...   MODE ARGS..., once KEY exists
 *   watch-missed            reports "ready", then "missed" at changes-missed
 *   subscribe TOPIC N       subscribes, checks per-publisher order, reports
 *                           after N publications
 *   bad-input               tries invalid keys and values, reports the errors
 *   hammer N MSEC           reads keys shm0..shmN-1 (values as
 *                           ly_test_checked_value() makes them) from a
 *                           thread for MSEC ms, while the main thread
 *                           hears their changes, and reports what was
 *                           wrong: a value that fails its check, one
 *                           older than one read or announced before, a
 *                           set of its own not seen by the next get
 *   table                   reports whether the hub's shared table is
 *                           mapped, then reads KEY...
 *   follow KEY              reads KEY every millisecond, for ever, and
 *                           reports "follow KEY = VALUE" at each change
 *   read-alone KEY N FLAG   reports "waiting", and once the file FLAG
 *                           exists (the hub stopped serving), makes N
 *                           gets of KEY and reports what they returned
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <liteyuki-comm.h>

#include "ly-test-util.h"

static void G_GNUC_PRINTF (1, 2)
report (const char *format,
        ...)
{
  g_autofree char *line = NULL;
  FILE *out = fopen (g_getenv ("LY_TEST_OUTPUT"), "a");
  va_list args;

  va_start (args, format);
  line = g_strdup_vprintf (format, args);
  va_end (args);

  g_assert_nonnull (out);
  fprintf (out, "%s\n", line);
  fclose (out);
}

typedef struct
{
  guint      target;
  guint      count;
  guint      next[16];
  GMainLoop *loop;
} Watch;

static void
on_changed (LyStorage  *storage,
            const char *key,
            GVariant   *value,
            Watch      *watch)
{
  if (++watch->count == watch->target)
    {
      report ("watched %u changes of %s, last %u", watch->count, key,
              value != NULL ? g_variant_get_uint32 (value) : 0);
      g_main_loop_quit (watch->loop);
    }
}

static void
on_published (LyStorage  *storage,
              const char *topic,
              GVariant   *value,
              Watch      *watch)
{
  guint id, seq;

  g_variant_get (value, "(uu)", &id, &seq);
  if (id >= G_N_ELEMENTS (watch->next) || seq != watch->next[id])
    {
      report ("out of order: publisher %u sent %u, expected %u", id, seq,
              id < G_N_ELEMENTS (watch->next) ? watch->next[id] : 0);
      exit (1);
    }
  watch->next[id]++;

  if (++watch->count == watch->target)
    {
      report ("received %u publications on %s in order", watch->count, topic);
      g_main_loop_quit (watch->loop);
    }
}

static void
report_missed (GMainLoop *loop)
{
  report ("missed");
  g_main_loop_quit (loop);
}

static void
report_error (const char *what,
              GError     *error)
{
  report ("%s: %s %d", what, error != NULL ? g_quark_to_string (error->domain) : "none",
          error != NULL ? error->code : -1);
}

/* Whether the hub's table is mapped in this process. */
static gboolean
table_mapped (void)
{
  g_autofree char *maps = NULL;

  g_assert_true (g_file_get_contents ("/proc/self/maps", &maps, NULL, NULL));
  return strstr (maps, "memfd:liteyuki-comm storage") != NULL;
}

/* hammer ----------------------------------------------------------------- */

#define HAMMER_MAX_KEYS 1024

typedef struct
{
  LyStorage *storage;
  guint      n_keys;
  gint64     deadline;
  GMainLoop *loop;
  guint64    announced[HAMMER_MAX_KEYS];   /* atomic: the newest counter a
                                            * `changed` signal brought */
  guint64    reads, torn, stale, regressions, own_missed, absent;
} Hammer;

static void
hammer_on_changed (LyStorage  *storage,
                   const char *key,
                   GVariant   *value,
                   Hammer     *hammer)
{
  guint64 counter;
  guint index;

  if (!g_str_has_prefix (key, "shm") || value == NULL)
    return;
  index = (guint) atoi (key + 3);
  if (index < hammer->n_keys && ly_test_value_is_checked (value, index, &counter))
    {
      guint64 seen = __atomic_load_n (&hammer->announced[index], __ATOMIC_ACQUIRE);

      if (counter > seen)
        __atomic_store_n (&hammer->announced[index], counter, __ATOMIC_RELEASE);
    }
}

static gboolean
hammer_quit (gpointer user_data)
{
  g_main_loop_quit (user_data);
  return G_SOURCE_REMOVE;
}

static gpointer
hammer_read (gpointer user_data)
{
  Hammer *hammer = user_data;
  g_autofree guint64 *last = g_new0 (guint64, hammer->n_keys);
  g_autofree char *own = g_strdup_printf ("own.%s", ly_get_process_name ());
  g_autoptr(GRand) rand = g_rand_new ();
  guint32 own_value = 0;

  while (g_get_monotonic_time () < hammer->deadline)
    {
      guint index = g_rand_int_range (rand, 0, (gint32) hammer->n_keys);
      g_autofree char *key = g_strdup_printf ("shm%u", index);
      guint64 announced = __atomic_load_n (&hammer->announced[index], __ATOMIC_ACQUIRE);
      g_autoptr(GError) error = NULL;
      g_autoptr(GVariant) value = ly_storage_get (hammer->storage, key, &error);
      guint64 counter;

      g_assert_no_error (error);
      hammer->reads++;
      if (value == NULL)
        hammer->absent++;
      else if (!ly_test_value_is_checked (value, index, &counter))
        hammer->torn++;
      else
        {
          if (counter < last[index])
            hammer->regressions++;
          if (counter < announced)
            hammer->stale++;
          last[index] = counter;
        }

      /* a set of this process, then a get: it must see the set */
      if (hammer->reads % 64 == 0)
        {
          g_autoptr(GVariant) mine = NULL;

          ly_storage_set_async (hammer->storage, own, g_variant_new_uint32 (++own_value), NULL, NULL, NULL);
          mine = ly_storage_get (hammer->storage, own, &error);
          g_assert_no_error (error);
          if (mine == NULL || g_variant_get_uint32 (mine) != own_value)
            hammer->own_missed++;
        }
    }

  g_idle_add (hammer_quit, hammer->loop);
  return NULL;
}

static void
run_hammer (LyStorage *storage,
            GMainLoop *loop,
            guint      n_keys,
            guint      msec)
{
  Hammer *hammer = g_new0 (Hammer, 1);
  GThread *thread;

  hammer->storage = storage;
  hammer->n_keys = MIN (n_keys, HAMMER_MAX_KEYS);
  hammer->loop = loop;
  g_signal_connect (storage, "changed", G_CALLBACK (hammer_on_changed), hammer);
  report ("hammering");
  hammer->deadline = g_get_monotonic_time () + (gint64) msec * 1000;
  thread = g_thread_new ("hammer", hammer_read, hammer);
  g_main_loop_run (loop);
  g_thread_join (thread);

  report ("hammered %s (table %s): %" G_GUINT64_FORMAT " reads, %" G_GUINT64_FORMAT " torn, %"
          G_GUINT64_FORMAT " stale, %" G_GUINT64_FORMAT " regressions, %" G_GUINT64_FORMAT
          " own sets missed, %" G_GUINT64_FORMAT " absent",
          ly_get_process_name (), table_mapped () ? "mapped" : "not mapped",
          hammer->reads, hammer->torn, hammer->stale,
          hammer->regressions, hammer->own_missed, hammer->absent);
}

int
main (int   argc,
      char *argv[])
{
  g_autoptr(GMainLoop) loop = g_main_loop_new (NULL, FALSE);
  g_autoptr(GError) error = NULL;
  LyStorage *storage = ly_storage_get_default ();
  const char *mode = argc > 1 ? argv[1] : "";

  g_assert_true (ly_storage_is_proxy (storage));

  if ((g_str_equal (mode, "wait-publish") && argc > 5) || (g_str_equal (mode, "wait") && argc > 3))
    {
      gint64 deadline = g_get_monotonic_time () + 120 * G_USEC_PER_SEC;

      while (!ly_storage_contains (storage, argv[2], &error))
        {
          g_assert_no_error (error);
          g_assert_cmpint (g_get_monotonic_time (), <, deadline);
          g_usleep (10000);
        }
      if (g_str_equal (mode, "wait"))
        {
          argv += 2;
          argc -= 2;
          mode = argv[1];
        }
      else
        {
          argv += 1;
          argc -= 1;
          mode = "publish";
        }
    }

  if (g_str_equal (mode, "cas-increment") && argc > 3)
    {
      guint n = (guint) atoi (argv[3]);
      guint retries = 0;
      gint64 started = g_get_monotonic_time ();

      for (guint i = 0; i < n; i++)
        for (;;)
          {
            g_autoptr(GVariant) current = ly_storage_get (storage, argv[2], &error);
            guint32 value = current != NULL ? g_variant_get_uint32 (current) : 0;

            g_assert_no_error (error);
            if (ly_storage_compare_and_set (storage, argv[2], current, g_variant_new_uint32 (value + 1), &error))
              break;
            g_assert_no_error (error);
            retries++;
          }
      report ("incremented %u times (%u retries) in %" G_GINT64_FORMAT " us",
              n, retries, g_get_monotonic_time () - started);
      return 0;
    }

  if (g_str_equal (mode, "set") && argc > 3)
    {
      g_assert_true (ly_storage_set (storage, argv[2], g_variant_new_string (argv[3]), &error));
      g_assert_no_error (error);
      report ("set %s", argv[2]);
      return 0;
    }

  if (g_str_equal (mode, "get") && argc > 2)
    {
      g_autoptr(GVariant) value = ly_storage_get (storage, argv[2], &error);
      g_autofree char *text = value != NULL ? g_variant_print (value, TRUE) : g_strdup ("absent");

      g_assert_no_error (error);
      report ("got %s = %s", argv[2], text);
      return 0;
    }

  if (g_str_equal (mode, "set-many") && argc > 2)
    {
      guint n = (guint) atoi (argv[2]);

      for (guint i = 0; i < n; i++)
        {
          g_autofree char *key = g_strdup_printf ("key%u", i);

          g_assert_true (ly_storage_set (storage, key, g_variant_new_uint32 (i), &error));
          g_assert_no_error (error);
        }
      report ("stored %u keys", n);
      abort ();
    }

  if ((g_str_equal (mode, "watch") || g_str_equal (mode, "subscribe")) && argc > 3)
    {
      Watch watch = { (guint) atoi (argv[3]), 0, { 0, }, loop };

      if (g_str_equal (mode, "watch"))
        {
          g_autofree char *signal = g_strdup_printf ("changed::%s", argv[2]);

          g_signal_connect (storage, signal, G_CALLBACK (on_changed), &watch);
        }
      else
        {
          g_autofree char *signal = g_strdup_printf ("published::%s", argv[2]);

          g_signal_connect (storage, signal, G_CALLBACK (on_published), &watch);
          g_assert_true (ly_storage_subscribe (storage, argv[2], &error));
          g_assert_no_error (error);
        }
      report ("ready");
      g_main_loop_run (loop);
      return 0;
    }

  if (g_str_equal (mode, "publish") && argc > 4)
    {
      guint id = (guint) atoi (argv[3]);
      guint n = (guint) atoi (argv[4]);

      for (guint i = 0; i < n; i++)
        {
          g_assert_true (ly_storage_publish (storage, argv[2], g_variant_new ("(uu)", id, i), &error));
          g_assert_no_error (error);
        }
      report ("published %u", n);
      return 0;
    }

  if (g_str_equal (mode, "watch-missed"))
    {
      g_signal_connect_swapped (storage, "changes-missed", G_CALLBACK (report_missed), loop);
      report ("ready");
      g_main_loop_run (loop);
      return 0;
    }

  if (g_str_equal (mode, "hammer") && argc > 3)
    {
      run_hammer (storage, loop, (guint) atoi (argv[2]), (guint) atoi (argv[3]));
      return 0;
    }

  if (g_str_equal (mode, "table"))
    {
      report ("table %s", table_mapped () ? "mapped" : "not mapped");
      for (int i = 2; i < argc; i++)
        {
          g_autoptr(GVariant) value = ly_storage_get (storage, argv[i], &error);
          g_autofree char *text = value != NULL ? g_variant_print (value, TRUE) : g_strdup ("absent");

          report ("read %s = %s (%s)", argv[i], text,
                  error != NULL ? g_quark_to_string (error->domain) : "no error");
          g_clear_error (&error);
        }
      return 0;
    }

  if (g_str_equal (mode, "follow") && argc > 2)
    {
      g_autofree char *last = NULL;

      report ("follower: table %s", table_mapped () ? "mapped" : "not mapped");
      for (;;)
        {
          g_autoptr(GVariant) value = ly_storage_get (storage, argv[2], &error);
          g_autofree char *text = value != NULL ? g_variant_print (value, TRUE) : g_strdup ("absent");

          g_assert_no_error (error);
          if (g_strcmp0 (text, last) != 0)
            report ("follow %s = %s", argv[2], text);
          g_free (last);
          last = g_steal_pointer (&text);
          g_usleep (1000);
        }
    }

  if (g_str_equal (mode, "read-alone") && argc > 4)
    {
      guint n = (guint) atoi (argv[3]), present = 0;
      g_autoptr(GVariant) last = NULL;
      gint64 deadline = g_get_monotonic_time () + 60 * G_USEC_PER_SEC;

      report ("waiting");
      while (!g_file_test (argv[4], G_FILE_TEST_EXISTS))
        {
          g_assert_cmpint (g_get_monotonic_time (), <, deadline);
          g_usleep (1000);
        }
      for (guint i = 0; i < n; i++)
        {
          g_clear_pointer (&last, g_variant_unref);
          last = ly_storage_get (storage, argv[2], &error);
          g_assert_no_error (error);
          present += last != NULL;
        }
      report ("read %s %u times alone: %u present, last %s", argv[2], n, present,
              last != NULL ? g_variant_get_string (last, NULL) : "absent");
      return 0;
    }

  if (g_str_equal (mode, "bad-input"))
    {
      g_autofree char *long_key = g_strnfill (LY_STORAGE_MAX_KEY_LENGTH + 1, 'k');
      g_autofree guint8 *big = g_malloc0 (LY_STORAGE_DEFAULT_MAX_VALUE_SIZE + 1);
      GVariant *too_big = g_variant_new_fixed_array (G_VARIANT_TYPE_BYTE, big,
                                                     LY_STORAGE_DEFAULT_MAX_VALUE_SIZE + 1, 1);

      ly_storage_set (storage, "", g_variant_new_int32 (1), &error);
      report_error ("empty key", error);
      g_clear_error (&error);
      ly_storage_set (storage, long_key, g_variant_new_int32 (1), &error);
      report_error ("long key", error);
      g_clear_error (&error);
      ly_storage_set (storage, "\xff\xfe", g_variant_new_int32 (1), &error);
      report_error ("invalid UTF-8 key", error);
      g_clear_error (&error);
      ly_storage_set (storage, "big", too_big, &error);
      report_error ("large value", error);
      g_clear_error (&error);
      ly_storage_publish (storage, "", g_variant_new_int32 (1), &error);
      report_error ("empty topic", error);
      g_clear_error (&error);

      /* still served afterwards */
      g_assert_true (ly_storage_set (storage, "after-bad-input", g_variant_new_boolean (TRUE), &error));
      g_assert_no_error (error);
      report ("still served");
      return 0;
    }

  g_error ("unknown mode “%s”", mode);
}

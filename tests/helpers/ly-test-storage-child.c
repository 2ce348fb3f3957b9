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
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <liteyuki-comm.h>

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

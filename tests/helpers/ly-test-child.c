/* ly-test-child.c: a child process for the process manager tests
 *
 * Usage: ly-test-child MODE [ARG]; lines it reports go to the file named
 * by LY_TEST_OUTPUT (appended), or to stdout.
 *
 *   example         the reference document's child: prints what its
 *                   passive (strings only) and active (a thread) channels
 *                   get, and answers each on the same channel
 *   echo            sends every message of its active channel back
 *   ignore-term     ignores SIGTERM and polite stops
 *   request-stop    asks the hub to stop it
 *   request-restart asks the hub to restart it (once per LY_TEST_OUTPUT)
 *   exit N          exits with status N at once
 *   abort           aborts after saying hello
 *   registry        reports what its registry holds, then waits
 *   grandchild-env  reports the LY_* variables a process it starts sees
 *   fds             reports the file descriptors it was started with
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <liteyuki-comm.h>

static void G_GNUC_PRINTF (1, 2)
report (const char *format,
        ...)
{
  const char *path = g_getenv ("LY_TEST_OUTPUT");
  g_autofree char *line = NULL;
  va_list args;
  FILE *out;

  va_start (args, format);
  line = g_strdup_vprintf (format, args);
  va_end (args);

  out = path != NULL ? fopen (path, "a") : stdout;
  g_assert_nonnull (out);
  fprintf (out, "%s\n", line);
  fflush (out);
  if (out != stdout)
    fclose (out);
}

static int
compare_ints (const int *a,
              const int *b)
{
  return (*a > *b) - (*a < *b);
}

static void
on_passive (LyChannel *channel,
            GVariant  *message,
            gpointer   user_data)
{
  g_autofree char *answer = g_strdup_printf ("child passive got %s", g_variant_get_string (message, NULL));

  report ("Passive receive: %s", g_variant_get_string (message, NULL));
  ly_channel_send (channel, g_variant_new_string (answer), NULL);
}

static gpointer
active_loop (gpointer user_data)
{
  LyChannel *active = user_data;

  for (;;)
    {
      g_autoptr(GVariant) message = ly_channel_receive (active, NULL, NULL);
      g_autofree char *answer = NULL;

      if (message == NULL)
        return NULL;
      report ("Active receive: %s", g_variant_get_string (message, NULL));
      answer = g_strdup_printf ("child active got %s", g_variant_get_string (message, NULL));
      ly_channel_send (active, g_variant_new_string (answer), NULL);
    }
}

static void
on_echo (LyChannel *channel,
         GVariant  *message,
         gpointer   user_data)
{
  ly_channel_send (channel, message, NULL);
}

static void
ignore_stop (gpointer user_data)
{
  report ("stop ignored");
}

static void
quit_on_closed (LyChannel    *channel,
                const GError *error,
                GMainLoop    *loop)
{
  g_main_loop_quit (loop);
}

/* The fds open at start, before GLib opens any of its own. */
static char *
list_inherited_fds (void)
{
  GString *list = g_string_new (NULL);
  GDir *dir = g_dir_open ("/proc/self/fd", 0, NULL);
  g_autoptr(GArray) fds = g_array_new (FALSE, FALSE, sizeof (int));
  const char *name;

  while ((name = g_dir_read_name (dir)) != NULL)
    {
      int fd = atoi (name);
      g_array_append_val (fds, fd);
    }
  g_dir_close (dir);

  g_array_sort (fds, (GCompareFunc) compare_ints);
  for (guint i = 0; i < fds->len; i++)
    g_string_append_printf (list, "%s%d", i > 0 ? "," : "", g_array_index (fds, int, i));

  return g_string_free (list, FALSE);
}

int
main (int   argc,
      char *argv[])
{
  g_autofree char *inherited_fds = list_inherited_fds ();
  g_autoptr(GMainLoop) loop = g_main_loop_new (NULL, FALSE);
  g_autoptr(GError) error = NULL;
  const char *mode = argc > 1 ? argv[1] : "";

  if (ly_is_main_process ())
    g_error ("ly-test-child must be started by a LyProcessManager");

  /* the environment was consumed by the library */
  g_assert_null (g_getenv ("LY_PROCESS_NAME"));
  g_assert_null (g_getenv ("LY_ACTIVE_FD"));

  if (g_str_equal (mode, "exit"))
    return argc > 2 ? atoi (argv[2]) : 0;

  report ("hello from %s pid %d", ly_get_process_name (), (int) getpid ());

  if (g_str_equal (mode, "example"))
    {
      g_signal_connect (ly_passive_channel (), "received::s", G_CALLBACK (on_passive), NULL);
      g_thread_unref (g_thread_new ("active", active_loop, ly_active_channel ()));
    }
  else if (g_str_equal (mode, "echo"))
    {
      g_signal_connect (ly_active_channel (), "received", G_CALLBACK (on_echo), NULL);
      g_signal_connect (ly_active_channel (), "closed", G_CALLBACK (quit_on_closed), loop);
    }
  else if (g_str_equal (mode, "ignore-term"))
    {
      signal (SIGTERM, SIG_IGN);
      ly_set_stop_handler (ignore_stop, NULL, NULL);
    }
  else if (g_str_equal (mode, "request-stop"))
    {
      if (!ly_request_stop (&error))
        g_error ("%s", error->message);
      report ("stop requested");
    }
  else if (g_str_equal (mode, "request-restart"))
    {
      /* restart once: the second instance finds the marker */
      if (g_getenv ("LY_TEST_OUTPUT") != NULL)
        {
          g_autofree char *marker = g_strconcat (g_getenv ("LY_TEST_OUTPUT"), ".restarted", NULL);

          if (!g_file_test (marker, G_FILE_TEST_EXISTS))
            {
              g_file_set_contents (marker, "", 0, NULL);
              if (!ly_request_restart (&error))
                g_error ("%s", error->message);
              report ("restart requested");
            }
        }
    }
  else if (g_str_equal (mode, "abort"))
    {
      abort ();
    }
  else if (g_str_equal (mode, "registry"))
    {
      g_autofree char *active_name = g_strdup_printf ("%s-active", ly_get_process_name ());
      g_autofree char *passive_name = g_strdup_printf ("%s-passive", ly_get_process_name ());
      g_auto(GStrv) names = ly_list_channels ();
      g_autofree char *joined = g_strjoinv (",", names);

      report ("registry %s active=%s passive=%s", joined,
              ly_get_channel (active_name) == ly_active_channel () ? "same" : "different",
              ly_get_channel (passive_name) == ly_passive_channel () ? "same" : "different");
    }
  else if (g_str_equal (mode, "fds"))
    {
      /* the listing's own directory fd is the highest one, closed since */
      report ("fds %s", inherited_fds);
    }
  else if (g_str_equal (mode, "grandchild-env"))
    {
      g_autofree char *out = NULL;
      const char *sh_argv[] = { "sh", "-c", "env | grep '^LY_[A-Z_]*FD\\|^LY_PROCESS' || echo none", NULL };

      g_spawn_sync (NULL, (char **) sh_argv, NULL, G_SPAWN_SEARCH_PATH, NULL, NULL, &out, NULL, NULL, &error);
      g_assert_no_error (error);
      g_strstrip (out);
      report ("grandchild sees %s", out);
    }
  else
    {
      g_error ("unknown mode “%s”", mode);
    }

  g_main_loop_run (loop);
  return 0;
}

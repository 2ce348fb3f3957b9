/* lc-demo.c: `liteyuki-comm demo`, the reference document's example
 *
 * The hub starts a C child (this program, as `demo-child`) and a Python
 * child, and sends on the passive and the active channel of each every
 * interval.  Each child prints what it receives, with a passive handler
 * that takes strings only and an active receive loop in a thread, and
 * counts its messages in the shared storage, where the hub reads them.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "lc-common.h"

#include <stdio.h>
#include <stdlib.h>

static void G_GNUC_PRINTF (2, 3)
say (const char *who,
     const char *format,
     ...)
{
  g_autoptr(GDateTime) now = g_date_time_new_now_local ();
  g_autofree char *stamp = g_date_time_format (now, "%Y-%m-%d %H:%M:%S");
  g_autofree char *text = NULL;
  va_list args;

  va_start (args, format);
  text = g_strdup_vprintf (format, args);
  va_end (args);

  printf ("%s [%s] %s\n", stamp, who, text);
  fflush (stdout);
}

/* The hub ----------------------------------------------------------------- */

typedef struct
{
  GMainLoop        *loop;
  LyProcessManager *manager;
  GStrv             targets;
  guint             rounds;
  guint             sent;
} Demo;

static gboolean
send_round (gpointer user_data)
{
  Demo *demo = user_data;
  LyStorage *storage = ly_storage_get_default ();
  g_autoptr(GError) error = NULL;

  demo->sent++;
  ly_storage_set (storage, "hub.round", g_variant_new_uint32 (demo->sent), NULL);

  for (guint i = 0; demo->targets[i] != NULL; i++)
    {
      g_autofree char *passive = g_strdup_printf ("%s-passive", demo->targets[i]);
      g_autofree char *active = g_strdup_printf ("%s-active", demo->targets[i]);

      if (!ly_channel_send (ly_get_channel (passive), g_variant_new_string ("I am liteyuki main process passive"), &error) ||
          !ly_channel_send (ly_get_channel (active), g_variant_new_string ("I am liteyuki main process active"), &error))
        {
          lc_print_error (_("could not send to %s: %s"), demo->targets[i], error->message);
          g_clear_error (&error);
        }
      /* not a string: the children's filter skips it */
      ly_channel_send (ly_get_channel (passive), g_variant_new ("(su)", "round", demo->sent), NULL);
    }

  if (demo->sent < demo->rounds)
    return G_SOURCE_CONTINUE;

  g_main_loop_quit (demo->loop);
  return G_SOURCE_REMOVE;
}

static char *
find_python_child (void)
{
  const char *candidates[] = { g_getenv ("LY_DEMO_DATADIR"), LC_SOURCE_DATADIR, LC_DATADIR };

  /* without the typelib, Python cannot import Ly */
  if (!LC_HAVE_INTROSPECTION)
    return NULL;

  for (gsize i = 0; i < G_N_ELEMENTS (candidates); i++)
    if (candidates[i] != NULL)
      {
        g_autofree char *path = g_build_filename (candidates[i], "demo-child.py", NULL);

        if (g_file_test (path, G_FILE_TEST_EXISTS))
          return g_steal_pointer (&path);
      }

  return NULL;
}

/* "NAME=DIRS:$NAME": DIRS before what the environment has */
static void
add_search_path (GStrvBuilder *builder,
                 const char   *name,
                 const char   *dirs)
{
  const char *current = g_getenv (name);
  g_autofree char *variable = g_strdup_printf ("%s=%s%s%s", name, dirs,
                                               current != NULL ? ":" : "",
                                               current != NULL ? current : "");

  g_strv_builder_add (builder, variable);
}

/* The Python child finds the typelib, the library and the Ly override
 * where this program was built, or where they are installed (a prefix
 * that Debian's libgirepository does not search by itself). */
static GStrv
python_environment (void)
{
  g_autoptr(GStrvBuilder) builder = g_strv_builder_new ();

  add_search_path (builder, "GI_TYPELIB_PATH", LC_BUILD_LIBDIR ":" LC_TYPELIBDIR);
  add_search_path (builder, "LD_LIBRARY_PATH", LC_BUILD_LIBDIR);
  add_search_path (builder, "PYTHONPATH", LC_SOURCE_SRCDIR);

  return g_strv_builder_end (builder);
}

/* Waits until every child counted the last round, or a second passes. */
static void
wait_for_children (Demo *demo)
{
  gint64 deadline = g_get_monotonic_time () + G_USEC_PER_SEC;

  while (g_get_monotonic_time () < deadline)
    {
      gboolean all = TRUE;

      for (guint i = 0; demo->targets[i] != NULL; i++)
        {
          g_autofree char *key = g_strdup_printf ("%s.received", demo->targets[i]);
          g_autoptr(GVariant) count = ly_storage_get (ly_storage_get_default (), key, NULL);

          all &= count != NULL && g_variant_get_uint32 (count) >= demo->rounds;
        }
      if (all)
        return;
      g_main_context_iteration (NULL, FALSE);
      g_usleep (10 * 1000);
    }
}

int
lc_demo_main (int    argc,
              char **argv)
{
  double interval = 3.0;
  int rounds = 3;
  GOptionEntry entries[] = {
    { "interval", 'i', 0, G_OPTION_ARG_DOUBLE, &interval, N_("Seconds between two sends (default 3)"), N_("SECONDS") },
    { "rounds", 'n', 0, G_OPTION_ARG_INT, &rounds, N_("How many rounds to send (default 3)"), N_("N") },
    { NULL }
  };
  g_autoptr(GOptionContext) context = g_option_context_new (_("— the example of the reference document"));
  g_autoptr(GMainLoop) loop = g_main_loop_new (NULL, FALSE);
  g_autoptr(LyProcessManager) manager = ly_process_manager_new ();
  g_autoptr(GStrvBuilder) names = g_strv_builder_new ();
  g_autoptr(GError) error = NULL;
  g_autofree char *self_path = g_file_read_link ("/proc/self/exe", NULL);
  g_autofree char *python_child = find_python_child ();
  const char *python = g_file_test ("/usr/bin/python3", G_FILE_TEST_IS_EXECUTABLE) ? "/usr/bin/python3" : "python3";
  const char *c_argv[] = { self_path, "demo-child", NULL };
  const char *python_argv[] = { python, python_child, NULL };
  Demo demo = { loop, manager, NULL, 0, 0 };
  int status = 0;

  g_option_context_set_translation_domain (context, GETTEXT_PACKAGE);
  g_option_context_add_main_entries (context, entries, GETTEXT_PACKAGE);
  g_option_context_set_summary (context, _("A hub sends on the passive and the active channel of a C child and a Python child; they print what they receive and count it in the shared storage."));
  if (!lc_parse_options (context, &argc, &argv))
    return LC_EXIT_USAGE;
  if (argc != 2 || interval <= 0 || interval > 3600 || rounds < 1)
    {
      lc_print_error (_("--interval must be between 0 and 3600 seconds and --rounds at least 1"));
      return LC_EXIT_USAGE;
    }
  demo.rounds = (guint) rounds;

  ly_process_manager_add_target (manager, "c", c_argv, &error);
  g_assert_no_error (error);
  g_strv_builder_add (names, "c");
  if (python_child != NULL)
    {
      g_auto(GStrv) environment = python_environment ();

      ly_process_manager_add_target (manager, "python", python_argv, &error);
      g_assert_no_error (error);
      ly_process_manager_set_environment (manager, "python", (const char * const *) environment, &error);
      g_assert_no_error (error);
      g_strv_builder_add (names, "python");
    }
  else
    lc_print_error (_("The Python child needs demo-child.py and the Ly typelib, which this build lacks: the demo runs the C child only"));
  demo.targets = g_strv_builder_end (names);

  ly_process_manager_stop_on_unix_signals (manager, loop);
  if (!ly_process_manager_start_all (manager, &error))
    {
      lc_print_error ("%s", error->message);
      g_strfreev (demo.targets);
      return LC_EXIT_FAILURE;
    }
  for (guint i = 0; demo.targets[i] != NULL; i++)
    say ("main", _("Started %s as process %d"), demo.targets[i],
         ly_process_manager_get_pid (manager, demo.targets[i], NULL));

  send_round (&demo);
  if (demo.sent < demo.rounds)
    {
      g_timeout_add ((guint) (interval * 1000), send_round, &demo);
      g_main_loop_run (loop);
    }

  wait_for_children (&demo);
  for (guint i = 0; demo.targets[i] != NULL; i++)
    {
      g_autofree char *key = g_strdup_printf ("%s.received", demo.targets[i]);
      g_autoptr(GVariant) count = ly_storage_get (ly_storage_get_default (), key, NULL);

      say ("main", _("Storage: %s = %u"), key, count != NULL ? g_variant_get_uint32 (count) : 0);
      if (count == NULL || g_variant_get_uint32 (count) != demo.rounds)
        status = LC_EXIT_FAILURE;
    }

  ly_process_manager_stop_all (manager, NULL, NULL);
  say ("main", _("Done"));
  g_strfreev (demo.targets);
  return status;
}

/* The C child ------------------------------------------------------------- */

static void
on_passive (LyChannel *channel,
            GVariant  *message,
            gpointer   user_data)
{
  say (ly_get_process_name (), _("Passive receive: %s"), g_variant_get_string (message, NULL));
}

static gpointer
active_loop (gpointer user_data)
{
  LyStorage *storage = ly_storage_get_default ();
  g_autofree char *key = g_strdup_printf ("%s.received", ly_get_process_name ());
  guint32 received = 0;

  for (;;)
    {
      g_autoptr(GError) error = NULL;
      g_autoptr(GVariant) message = ly_channel_receive (ly_active_channel (), NULL, &error);
      g_autoptr(GVariant) round = NULL;
      g_autofree char *text = NULL;

      if (message == NULL)
        return NULL;

      /* anyone may send anything with `liteyuki-comm send` */
      text = g_variant_is_of_type (message, G_VARIANT_TYPE_STRING)
             ? g_variant_dup_string (message, NULL)
             : g_variant_print (message, FALSE);
      say (ly_get_process_name (), _("Active receive: %s"), text);
      round = ly_storage_get (storage, "hub.round", NULL);
      ly_storage_set (storage, key, g_variant_new_uint32 (++received), NULL);
      say (ly_get_process_name (), _("Storage: hub.round = %u, %s = %u"),
           round != NULL ? g_variant_get_uint32 (round) : 0, key, received);
    }
}

int
lc_demo_child_main (int    argc,
                    char **argv)
{
  g_autoptr(GMainLoop) loop = g_main_loop_new (NULL, FALSE);

  if (ly_is_main_process ())
    {
      lc_print_error (_("demo-child is started by “liteyuki-comm demo”"));
      return LC_EXIT_USAGE;
    }

  g_signal_connect (ly_passive_channel (), "received::s", G_CALLBACK (on_passive), NULL);
  g_thread_unref (g_thread_new ("active-receive", active_loop, NULL));
  g_main_loop_run (loop);
  return 0;
}

/* ly-test-hub.c: a hub process for the tests of the hub as a whole
 *
 * Usage: ly-test-hub N [--bus-name NAME | --server]
 *
 * Starts N ly-test-child echo targets (or, when LY_TEST_HUB_CHILD holds a
 * command line, N of that) and prints "pid PID" for each, then
 * runs until SIGINT or SIGTERM, which stop every child (exit 0 after).
 * With --bus-name it exports its storage and manager on the session bus
 * under NAME; with --server on a private D-Bus server whose address it
 * prints ("address ADDRESS").  It prints "changed KEY VALUE" for every
 * change of its storage, and "ready" when all is set up.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include <stdio.h>
#include <stdlib.h>

#include <liteyuki-comm.h>

static void
print_change (LyStorage  *storage,
              const char *key,
              GVariant   *value,
              gpointer    user_data)
{
  g_autofree char *text = value != NULL ? g_variant_print (value, TRUE) : g_strdup ("deleted");

  printf ("changed %s %s\n", key, text);
  fflush (stdout);
}

static void
on_name_lost (GDBusConnection *connection,
              const char      *name,
              gpointer         user_data)
{
  g_error ("Could not own the name %s on the session bus", name);
}

int
main (int   argc,
      char *argv[])
{
  g_autoptr(GMainLoop) loop = g_main_loop_new (NULL, FALSE);
  g_autoptr(LyProcessManager) manager = ly_process_manager_new ();
  g_autoptr(GDBusConnection) bus = NULL;
  g_autoptr(GDBusServer) server = NULL;
  g_autoptr(GError) error = NULL;
  g_autofree char *child = g_build_filename (g_getenv ("G_TEST_BUILDDIR"), "ly-test-child", NULL);
  LyStorage *storage = ly_storage_get_default ();
  guint n = argc > 1 ? (guint) atoi (argv[1]) : 1;
  const char *bus_name = argc > 3 && g_str_equal (argv[2], "--bus-name") ? argv[3] : NULL;
  gboolean private_server = argc > 2 && g_str_equal (argv[2], "--server");
  g_auto(GStrv) child_argv = NULL;

  if (g_getenv ("LY_TEST_HUB_CHILD") != NULL)
    g_assert_true (g_shell_parse_argv (g_getenv ("LY_TEST_HUB_CHILD"), NULL, &child_argv, NULL));
  else
    child_argv = g_strdupv ((char *[]) { child, (char *) "echo", NULL });

  for (guint i = 0; i < n; i++)
    {
      g_autofree char *name = g_strdup_printf ("child%u", i);

      ly_process_manager_add_target (manager, name, (const char * const *) child_argv, &error);
      g_assert_no_error (error);
    }

  /* before the pids are printed: the test signals right after */
  ly_process_manager_stop_on_unix_signals (manager, loop);
  ly_process_manager_start_all (manager, &error);
  g_assert_no_error (error);
  g_signal_connect (storage, "changed", G_CALLBACK (print_change), NULL);

  for (guint i = 0; i < n; i++)
    {
      g_autofree char *name = g_strdup_printf ("child%u", i);

      printf ("pid %d\n", ly_process_manager_get_pid (manager, name));
    }

  if (bus_name != NULL)
    {
      bus = g_bus_get_sync (G_BUS_TYPE_SESSION, NULL, &error);
      g_assert_no_error (error);
      ly_storage_export (storage, bus, &error);
      g_assert_no_error (error);
      ly_process_manager_export (manager, bus, &error);
      g_assert_no_error (error);
      g_bus_own_name_on_connection (bus, bus_name, G_BUS_NAME_OWNER_FLAGS_DO_NOT_QUEUE,
                                    NULL, on_name_lost, NULL, NULL);
    }

  if (private_server)
    {
      server = ly_dbus_server_new (NULL, manager, storage, &error);
      g_assert_no_error (error);
      printf ("address %s\n", g_dbus_server_get_client_address (server));
    }

  printf ("ready\n");
  fflush (stdout);

  g_main_loop_run (loop);

  for (guint i = 0; i < n; i++)
    {
      g_autofree char *name = g_strdup_printf ("child%u", i);

      g_assert_false (ly_process_manager_is_alive (manager, name));
    }

  printf ("stopped\n");
  return 0;
}

/* ly-test-hub.c: a hub process for the tests of the hub as a whole
 *
 * Usage: ly-test-hub N [--bus-name NAME | --server]
 *
 * Starts N ly-test-child echo targets (or, when LY_TEST_HUB_CHILD holds
 * command lines separated by "|", N of those, in turn) and prints
 * "pid PID" for each, then
 * runs until SIGINT or SIGTERM, which stop every child (exit 0 after).
 * With --bus-name it exports its storage and manager on the session bus
 * under NAME; with --server on a private D-Bus server whose address it
 * prints ("address ADDRESS").  It prints "changed KEY VALUE" for every
 * change of its storage, "changes-missed" when its store tells so, and
 * "ready" when all is set up.  With LY_TEST_HUB_STORAGE set to a storage
 * URI, its storage (and its children's) is on that store.
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
print_missed (LyStorage *storage,
              gpointer   user_data)
{
  printf ("changes-missed\n");
  fflush (stdout);
}

/* The storage of LY_TEST_HUB_STORAGE, as the default one. */
static LyStorage *
hub_storage (void)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(LyStorage) storage = NULL;
  const char *uri = g_getenv ("LY_TEST_HUB_STORAGE");

  if (uri != NULL)
    {
      storage = ly_storage_new_for_uri (uri, &error);
      g_assert_no_error (error);
      g_assert_true (ly_storage_set_default (storage));
    }

  return ly_storage_get_default ();
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
  LyStorage *storage = hub_storage ();
  g_autoptr(LyProcessManager) manager = ly_process_manager_new ();
  g_autoptr(GDBusConnection) bus = NULL;
  g_autoptr(LyDBusServer) server = NULL;
  g_autoptr(GError) error = NULL;
  g_autofree char *child = g_build_filename (g_getenv ("G_TEST_BUILDDIR"), "ly-test-child", NULL);
  g_auto(GStrv) commands = NULL;
  guint n = argc > 1 ? (guint) atoi (argv[1]) : 1;
  const char *bus_name = argc > 3 && g_str_equal (argv[2], "--bus-name") ? argv[3] : NULL;
  gboolean private_server = argc > 2 && g_str_equal (argv[2], "--server");
  if (g_getenv ("LY_TEST_HUB_CHILD") != NULL)
    commands = g_strsplit (g_getenv ("LY_TEST_HUB_CHILD"), "|", -1);
  else
    {
      commands = g_new0 (char *, 2);
      commands[0] = g_strconcat (child, " echo", NULL);
    }

  for (guint i = 0; i < n; i++)
    {
      g_autofree char *name = g_strdup_printf ("child%u", i);
      g_auto(GStrv) child_argv = NULL;

      g_assert_true (g_shell_parse_argv (commands[i % g_strv_length (commands)], NULL, &child_argv, NULL));
      ly_process_manager_add_target (manager, name, (const char * const *) child_argv, &error);
      g_assert_no_error (error);
    }

  /* before the pids are printed: the test signals right after */
  ly_process_manager_stop_on_unix_signals (manager, loop);
  ly_process_manager_start_all (manager, &error);
  g_assert_no_error (error);
  g_signal_connect (storage, "changed", G_CALLBACK (print_change), NULL);
  g_signal_connect (storage, "changes-missed", G_CALLBACK (print_missed), NULL);

  for (guint i = 0; i < n; i++)
    {
      g_autofree char *name = g_strdup_printf ("child%u", i);

      printf ("pid %d\n", ly_process_manager_get_pid (manager, name, NULL));
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
      printf ("address %s\n", ly_dbus_server_get_client_address (server));
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

/* lc-run.c: `liteyuki-comm run CONFIG`, the hub as a daemon
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "lc-common.h"

#include <stdio.h>
#include <sys/wait.h>

typedef struct
{
  GMainLoop *loop;
  int        status;
} Daemon;

static void
on_process_started (LyProcessManager *manager,
                    const char       *name,
                    int               pid,
                    gpointer          user_data)
{
  g_info (_("%s started (process %d)"), name, pid);
}

static void
on_process_exited (LyProcessManager *manager,
                   const char       *name,
                   int               status,
                   gpointer          user_data)
{
  if (WIFEXITED (status))
    g_info (_("%s exited with status %d"), name, WEXITSTATUS (status));
  else if (WIFSIGNALED (status))
    g_info (_("%s was killed by signal %d"), name, WTERMSIG (status));
}

static void
on_before_restart (LyProcessManager *manager,
                   const char       *name,
                   gpointer          user_data)
{
  g_info (_("%s restarts"), name);
}

static void
on_name_lost (GDBusConnection *connection,
              const char      *name,
              gpointer         user_data)
{
  Daemon *daemon = user_data;

  lc_print_error (_("cannot own the name %s on the session bus (is another hub running?)"), name);
  daemon->status = LC_EXIT_FAILURE;
  g_main_loop_quit (daemon->loop);
}

static void
on_name_acquired (GDBusConnection *connection,
                  const char      *name,
                  gpointer         user_data)
{
  g_info (_("Serving on the session bus as %s"), name);
}

int
lc_run_main (int    argc,
             char **argv)
{
  g_autofree char *bus_name = NULL;
  g_autofree char *address = NULL;
  g_autofree char *storage_path = NULL;
  g_autofree char *config_path = NULL;
  gboolean verbose = FALSE;
  gboolean check = FALSE;
  GOptionEntry entries[] = {
    { "bus-name", 0, 0, G_OPTION_ARG_STRING, &bus_name,
      N_("Name to own on the session bus (default icu.liteyuki.Comm1)"), N_("NAME") },
    { "address", 0, 0, G_OPTION_ARG_STRING, &address,
      N_("Serve on a private D-Bus server at this address instead of the session bus"), N_("ADDRESS") },
    { "storage-file", 0, 0, G_OPTION_ARG_FILENAME, &storage_path,
      N_("Keep the storage in this file across restarts"), N_("PATH") },
    { "verbose", 'v', 0, G_OPTION_ARG_NONE, &verbose, N_("Log every process event"), NULL },
    { "check", 0, 0, G_OPTION_ARG_NONE, &check, N_("Check the configuration and exit"), NULL },
    { NULL }
  };
  g_autoptr(GOptionContext) context = g_option_context_new (_("[CONFIG] — run the hub as a daemon"));
  g_autoptr(GMainLoop) loop = g_main_loop_new (NULL, FALSE);
  g_autoptr(LyProcessManager) manager = ly_process_manager_new ();
  g_autoptr(GDBusConnection) bus = NULL;
  g_autoptr(GDBusServer) server = NULL;
  g_autoptr(GError) error = NULL;
  LcStorageFile *storage_file = NULL;
  LyStorage *storage = ly_storage_get_default ();
  Daemon daemon = { loop, 0 };
  guint owner_id = 0;

  g_option_context_set_translation_domain (context, GETTEXT_PACKAGE);
  g_option_context_add_main_entries (context, entries, GETTEXT_PACKAGE);
  g_option_context_set_summary (context, _("Starts the targets of CONFIG and serves the storage and the process table on D-Bus until SIGINT or SIGTERM."));
  g_option_context_set_description (context, _("CONFIG is ~/.config/liteyuki-comm/hub.conf when not given."));
  if (!lc_parse_options (context, &argc, &argv))
    return LC_EXIT_USAGE;
  if (argc > 3)
    {
      lc_print_error (_("run takes one configuration file; see “liteyuki-comm run --help”"));
      return LC_EXIT_USAGE;
    }
  config_path = argc == 3 ? g_strdup (argv[2]) : lc_default_config_path ();

  if (verbose)
    g_setenv ("G_MESSAGES_DEBUG", G_LOG_DOMAIN, TRUE);

  if (!lc_config_load (config_path, manager, &error))
    {
      lc_print_error ("%s", error->message);
      return LC_EXIT_FAILURE;
    }
  if (check)
    return 0;

  if (storage_path != NULL && (storage_file = lc_storage_file_open (storage_path, storage, &error)) == NULL)
    {
      lc_print_error ("%s", error->message);
      return LC_EXIT_FAILURE;
    }

  if (address == NULL)
    bus = g_bus_get_sync (G_BUS_TYPE_SESSION, NULL, NULL);

  if (bus != NULL)
    {
      if (!ly_storage_export (storage, bus, &error) || !ly_process_manager_export (manager, bus, &error))
        {
          lc_print_error ("%s", error->message);
          return LC_EXIT_FAILURE;
        }
      owner_id = g_bus_own_name_on_connection (bus, bus_name != NULL ? bus_name : LY_DBUS_NAME,
                                               G_BUS_NAME_OWNER_FLAGS_DO_NOT_QUEUE,
                                               on_name_acquired, on_name_lost, &daemon, NULL);
    }
  else
    {
      server = ly_dbus_server_new (address, manager, storage, &error);
      if (server == NULL)
        {
          lc_print_error ("%s", error->message);
          return LC_EXIT_FAILURE;
        }
      /* the address is what clients need: on stdout, whatever the log */
      printf (_("Listening on %s\n"), g_dbus_server_get_client_address (server));
      fflush (stdout);
    }

  g_signal_connect (manager, "process-started", G_CALLBACK (on_process_started), NULL);
  g_signal_connect (manager, "process-exited", G_CALLBACK (on_process_exited), NULL);
  g_signal_connect (manager, "before-restart", G_CALLBACK (on_before_restart), NULL);
  ly_process_manager_stop_on_unix_signals (manager, loop);

  if (!ly_process_manager_start_all (manager, &error))
    {
      lc_print_error ("%s", error->message);
      daemon.status = LC_EXIT_FAILURE;
      ly_process_manager_stop_all (manager, NULL, NULL);
    }
  else
    g_main_loop_run (loop);

  /* a name lost leaves children running: stop them too */
  ly_process_manager_stop_all (manager, NULL, NULL);

  if (owner_id != 0)
    g_bus_unown_name (owner_id);
  if (server != NULL)
    g_dbus_server_stop (server);

  if (storage_file != NULL)
    {
      if (!lc_storage_file_save (storage_file, &error))
        {
          lc_print_error (_("could not save the storage: %s"), error->message);
          daemon.status = LC_EXIT_FAILURE;
        }
      lc_storage_file_free (storage_file);
    }

  g_info (_("Stopped"));
  return daemon.status;
}

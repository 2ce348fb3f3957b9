/* lc-run.c: `liteyuki-comm run CONFIG`, the hub as a daemon
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "lc-common.h"

#include <stdio.h>
#include <sys/wait.h>

/* The daemon, from its options to its end: lc_run_main() takes it
 * through its steps. */
typedef struct
{
  /* the options */
  char             *bus_name;
  char             *address;
  char             *storage_path;
  char             *storage_uri;
  char             *config_path;
  gboolean          verbose;
  gboolean          check;
  gboolean          shared;         /* the storage is on a store of its own */

  GMainLoop        *loop;
  LyProcessManager *manager;
  LyStorage        *storage;
  LcStorageFile    *storage_file;
  GDBusConnection  *bus;
  LyDBusServer     *server;
  guint             owner_id;
  gboolean          name_settled;   /* the bus said whether the name is ours */
  gboolean          name_owned;
  gboolean          children_started;
  int               status;
} Daemon;

static void
daemon_clear (Daemon *daemon)
{
  g_free (daemon->bus_name);
  g_free (daemon->address);
  g_free (daemon->storage_path);
  g_free (daemon->storage_uri);
  g_free (daemon->config_path);
  g_clear_pointer (&daemon->storage_file, lc_storage_file_free);
  g_clear_object (&daemon->server);
  g_clear_object (&daemon->bus);
  g_clear_object (&daemon->manager);
  g_clear_object (&daemon->storage);
  g_clear_pointer (&daemon->loop, g_main_loop_unref);
}

static void
on_process_started (LyProcessManager *manager,
                    const char       *name,
                    int               pid,
                    gpointer          user_data)
{
  g_info (_("%s started (process %d)"), name, pid);
}

/* "exited with status 3", "killed by signal 11 (Segmentation fault)" */
static char *
describe_wait_status (int status)
{
  if (WIFSIGNALED (status))
    return g_strdup_printf (_("killed by signal %d (%s)"), WTERMSIG (status), g_strsignal (WTERMSIG (status)));
  return g_strdup_printf (_("exited with status %d"), WEXITSTATUS (status));
}

/* Why a target ended and what comes next, in one line: a requested stop
 * is routine (shown with --verbose), anything else is worth a message. */
static void
on_process_exited (LyProcessManager *manager,
                   const char       *name,
                   int               status,
                   LyExitReason      reason,
                   gpointer          user_data)
{
  g_autofree char *how = describe_wait_status (status);
  LyProcessState state = ly_process_manager_get_state (manager, name, NULL);
  const char *next = state == LY_PROCESS_STATE_BACKOFF ? _("; restart pending")
                   : state == LY_PROCESS_STATE_FAILED ? _("; given up")
                   : "";

  switch (reason)
    {
    case LY_EXIT_REASON_STOPPED:
      g_info (_("%s stopped on request: %s%s"), name, how, next);
      break;
    case LY_EXIT_REASON_KILLED:
      g_message (_("%s crashed: %s%s"), name, how, next);
      break;
    case LY_EXIT_REASON_EXITED:
    default:
      if (WEXITSTATUS (status) == 0)
        g_info (_("%s %s%s"), name, how, next);
      else
        g_message (_("%s %s%s"), name, how, next);
      break;
    }
}

static void
on_before_restart (LyProcessManager *manager,
                   const char       *name,
                   gpointer          user_data)
{
  g_info (_("%s restarts"), name);
}

/* Before the children start: another hub has the name, so this one
 * must not start a second copy of every bot.  Once running: the bus
 * went away (a hub never gives its name up), and the children keep
 * running without D-Bus. */
/* A target that cannot start was reported (a warning each) and is left
 * to its restart policy: the others run all the same. */
static void
start_children (Daemon *daemon)
{
  daemon->children_started = TRUE;
  ly_process_manager_start_all (daemon->manager, NULL);
}

static void
on_name_lost (GDBusConnection *connection,
              const char      *name,
              gpointer         user_data)
{
  Daemon *daemon = user_data;

  if (!daemon->name_settled)
    {
      daemon->name_settled = TRUE;
      lc_print_error (_("cannot own the name %s on the session bus (is another hub running?)"), name);
      daemon->status = LC_EXIT_FAILURE;
      return;
    }

  if (daemon->name_owned)
    {
      daemon->name_owned = FALSE;
      g_warning (_("Lost the session bus: the children keep running, without D-Bus"));
    }
}

static void
on_name_acquired (GDBusConnection *connection,
                  const char      *name,
                  gpointer         user_data)
{
  Daemon *daemon = user_data;

  daemon->name_settled = TRUE;
  daemon->name_owned = TRUE;
  g_info (_("Serving on the session bus as %s"), name);
  /* now, before the calls that were waiting for the name (the one that
   * activated us) are answered */
  start_children (daemon);
}

/* The options; returns -1 to go on, or the exit status. */
static int
parse_options (Daemon  *daemon,
               int      argc,
               char   **argv)
{
  GOptionEntry entries[] = {
    { "bus-name", 0, 0, G_OPTION_ARG_STRING, &daemon->bus_name,
      N_("Name to own on the session bus (default icu.liteyuki.Comm1)"), N_("NAME") },
    { "address", 0, 0, G_OPTION_ARG_STRING, &daemon->address,
      N_("Serve on a private D-Bus server at this address instead of the session bus"), N_("ADDRESS") },
    { "storage-file", 0, 0, G_OPTION_ARG_FILENAME, &daemon->storage_path,
      N_("Keep the storage in this file across restarts"), N_("PATH") },
    { "storage", 0, 0, G_OPTION_ARG_STRING, &daemon->storage_uri,
      N_("Keep the storage on this store, shared with hubs on other hosts: redis://HOST[:PORT][/DB] or unix:///PATH[?db=N] (default: [hub] Storage=, or this hub's own)"),
      N_("URI") },
    { "verbose", 'v', 0, G_OPTION_ARG_NONE, &daemon->verbose, N_("Log every process event"), NULL },
    { "check", 0, 0, G_OPTION_ARG_NONE, &daemon->check, N_("Check the configuration and exit"), NULL },
    { NULL }
  };
  g_autoptr(GOptionContext) context = g_option_context_new (_("[CONFIG] — run the hub as a daemon"));

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

  daemon->config_path = argc == 3 ? g_strdup (argv[2]) : lc_default_config_path ();
  if (daemon->verbose)
    g_setenv ("G_MESSAGES_DEBUG", G_LOG_DOMAIN, TRUE);
  return -1;
}

/* The storage: on the store --storage or [hub] Storage= names (a
 * password comes from its password-file= or LY_STORAGE_PASSWORD, never
 * the command line alone), else the hub's own; made the default one
 * before anything uses it.  Then the manager, whose children share it. */
static gboolean
open_storage (Daemon *daemon)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *uri = daemon->storage_uri != NULL ? g_strdup (daemon->storage_uri)
                                                     : lc_config_get_storage (daemon->config_path);

  daemon->shared = uri != NULL && !g_str_equal (uri, "local:");
  if (!daemon->shared || daemon->check)
    daemon->storage = g_object_ref (ly_storage_get_default ());
  else if ((daemon->storage = ly_storage_new_for_uri (uri, &error)) == NULL)
    {
      lc_print_error ("%s", error->message);
      return FALSE;
    }
  else if (!ly_storage_set_default (daemon->storage))
    return FALSE;

  daemon->manager = g_object_new (LY_TYPE_PROCESS_MANAGER, "storage", daemon->storage, NULL);
  return TRUE;
}

/* The configuration's targets, and the storage file. */
static gboolean
load (Daemon *daemon)
{
  g_autoptr(GError) error = NULL;

  if (daemon->storage_path != NULL && daemon->shared)
    {
      lc_print_error (_("--storage-file keeps the hub’s own storage; the storage is on another store here"));
      return FALSE;
    }

  if (!lc_config_load (daemon->config_path, daemon->check ? LC_CONFIG_CHECK_PROGRAMS : LC_CONFIG_NONE,
                       daemon->manager, &error))
    {
      lc_print_error_lines (error->message);
      return FALSE;
    }

  if (daemon->storage_path != NULL && !daemon->check &&
      (daemon->storage_file = lc_storage_file_open (daemon->storage_path, daemon->storage, &error)) == NULL)
    {
      lc_print_error ("%s", error->message);
      return FALSE;
    }

  return TRUE;
}

/* The storage and the process table on the session bus, or on a
 * private server at --address. */
static gboolean
serve (Daemon *daemon)
{
  g_autoptr(GError) error = NULL;

  g_signal_connect (daemon->manager, "process-started", G_CALLBACK (on_process_started), NULL);
  g_signal_connect (daemon->manager, "process-exited", G_CALLBACK (on_process_exited), NULL);
  g_signal_connect (daemon->manager, "before-restart", G_CALLBACK (on_before_restart), NULL);
  ly_process_manager_stop_on_unix_signals (daemon->manager, daemon->loop);

  if (daemon->address == NULL)
    daemon->bus = g_bus_get_sync (G_BUS_TYPE_SESSION, NULL, NULL);

  if (daemon->bus != NULL)
    {
      if (!ly_storage_export (daemon->storage, daemon->bus, &error) ||
          !ly_process_manager_export (daemon->manager, daemon->bus, &error))
        {
          lc_print_error ("%s", error->message);
          return FALSE;
        }
      /* a bus that goes away must not take the children with it */
      g_dbus_connection_set_exit_on_close (daemon->bus, FALSE);
      daemon->owner_id = g_bus_own_name_on_connection (daemon->bus,
                                                       daemon->bus_name != NULL ? daemon->bus_name : LY_DBUS_NAME,
                                                       G_BUS_NAME_OWNER_FLAGS_DO_NOT_QUEUE,
                                                       on_name_acquired, on_name_lost, daemon, NULL);
      /* the name first, the children after: a second hub starts none */
      while (!daemon->name_settled)
        g_main_context_iteration (NULL, TRUE);
      return daemon->name_owned;
    }

  daemon->server = ly_dbus_server_new (daemon->address, daemon->manager, daemon->storage, &error);
  if (daemon->server == NULL)
    {
      lc_print_error ("%s", error->message);
      return FALSE;
    }
  /* the address is what clients need: on stdout, whatever the log */
  printf (_("Listening on %s\n"), ly_dbus_server_get_client_address (daemon->server));
  fflush (stdout);
  return TRUE;
}

/* The targets run until SIGINT or SIGTERM (or the name is lost). */
static void
run (Daemon *daemon)
{
  if (!daemon->children_started)
    start_children (daemon);
  g_main_loop_run (daemon->loop);
}

/* Every child stopped (a name lost leaves them running), the storage
 * saved. */
static void
shut_down (Daemon *daemon)
{
  g_autoptr(GError) error = NULL;

  ly_process_manager_stop_all (daemon->manager, NULL, NULL);

  if (daemon->owner_id != 0)
    g_bus_unown_name (daemon->owner_id);
  if (daemon->server != NULL)
    ly_dbus_server_stop (daemon->server);

  if (daemon->storage_file != NULL && !lc_storage_file_save (daemon->storage_file, &error))
    {
      lc_print_error (_("could not save the storage: %s"), error->message);
      daemon->status = LC_EXIT_FAILURE;
    }

  g_info (_("Stopped"));
}

int
lc_run_main (int    argc,
             char **argv)
{
  Daemon daemon = { 0, };
  int status;

  daemon.loop = g_main_loop_new (NULL, FALSE);

  if ((status = parse_options (&daemon, argc, argv)) < 0)
    {
      if (!open_storage (&daemon) || !load (&daemon))
        status = LC_EXIT_FAILURE;
      else if (daemon.check)
        status = 0;
      else if (!serve (&daemon))
        status = LC_EXIT_FAILURE;
      else
        {
          run (&daemon);
          shut_down (&daemon);
          status = daemon.status;
        }
    }

  daemon_clear (&daemon);
  return status;
}

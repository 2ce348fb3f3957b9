/* liteyuki-comm.c: the liteyuki-comm command
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "config.h"

#include <locale.h>
#include <stdio.h>
#include <errno.h>
#include <stdlib.h>
#include <sys/socket.h>

#include <glib/gi18n.h>

#include <liteyuki-comm.h>

/* The demo ---------------------------------------------------------------
 *
 * The reference document's example: the main process sends on the
 * passive and the active channel of a child every interval; the child
 * prints what it gets with a passive handler (strings only) and with an
 * active receive loop in a thread, and answers on its active channel. */

#define CHILD_ACTIVE_FD  3
#define CHILD_PASSIVE_FD 4

static void
say (const char *who,
     const char *format,
     ...) G_GNUC_PRINTF (2, 3);

static void
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

typedef struct
{
  GMainLoop *loop;
  LyChannel *active;
  LyChannel *passive;
  guint      rounds;
  guint      sent;
  guint      replies;
  GSubprocess *child;
  int        status;
} Demo;

static gboolean
demo_send_round (gpointer user_data)
{
  Demo *demo = user_data;
  g_autoptr(GError) error = NULL;

  if (!ly_channel_send (demo->passive, g_variant_new_string ("I am liteyuki main process passive"), &error) ||
      !ly_channel_send (demo->active, g_variant_new_string ("I am liteyuki main process active"), &error))
    {
      g_printerr (_("Could not send to the child: %s\n"), error->message);
      demo->status = EXIT_FAILURE;
      g_main_loop_quit (demo->loop);
      return G_SOURCE_REMOVE;
    }

  /* a value of another type: the child's string filter skips it */
  ly_channel_send (demo->passive, g_variant_new ("(su)", "round", demo->sent), NULL);

  if (++demo->sent < demo->rounds)
    return G_SOURCE_CONTINUE;

  return G_SOURCE_REMOVE;
}

static void
demo_on_reply (LyChannel *channel,
               GVariant  *message,
               Demo      *demo)
{
  say ("main", _("Reply from the child: %s"), g_variant_get_string (message, NULL));

  if (++demo->replies == demo->rounds)
    {
      /* Closing flushes; the child sees a clean close and exits. */
      ly_channel_close (demo->active);
      ly_channel_close (demo->passive);
    }
}

static void
demo_child_exited (GObject      *source,
                   GAsyncResult *result,
                   gpointer      user_data)
{
  Demo *demo = user_data;
  g_autoptr(GError) error = NULL;

  if (!g_subprocess_wait_check_finish (G_SUBPROCESS (source), result, &error))
    {
      g_printerr (_("The child failed: %s\n"), error->message);
      demo->status = EXIT_FAILURE;
    }
  g_main_loop_quit (demo->loop);
}

static LyChannel *
channel_pair_for_child (const char           *name,
                        GSubprocessLauncher  *launcher,
                        int                   child_fd,
                        GError              **error)
{
  int fds[2];

  if (socketpair (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) < 0)
    {
      g_set_error (error, G_IO_ERROR, g_io_error_from_errno (errno),
                   _("Could not create a socket pair: %s"), g_strerror (errno));
      return NULL;
    }

  g_subprocess_launcher_take_fd (launcher, fds[1], child_fd);
  return ly_channel_new_for_fd (name, fds[0], error);
}

static int
run_demo (double  interval,
          guint   rounds,
          const char *self_path)
{
  g_autoptr(GSubprocessLauncher) launcher = g_subprocess_launcher_new (G_SUBPROCESS_FLAGS_NONE);
  g_autoptr(GMainLoop) loop = g_main_loop_new (NULL, FALSE);
  g_autoptr(GError) error = NULL;
  g_autoptr(LyChannel) active = NULL;
  g_autoptr(LyChannel) passive = NULL;
  g_autoptr(GSubprocess) child = NULL;
  Demo demo = { loop, NULL, NULL, rounds, 0, 0, NULL, EXIT_SUCCESS };

  active = channel_pair_for_child ("demo-active", launcher, CHILD_ACTIVE_FD, &error);
  if (active != NULL)
    passive = channel_pair_for_child ("demo-passive", launcher, CHILD_PASSIVE_FD, &error);
  if (passive != NULL)
    child = g_subprocess_launcher_spawn (launcher, &error, self_path, "demo-child", NULL);
  if (child == NULL)
    {
      g_printerr (_("Could not start the demo child: %s\n"), error->message);
      return EXIT_FAILURE;
    }
  /* the launcher holds the child's ends of the sockets until freed */
  g_clear_object (&launcher);

  demo.active = active;
  demo.passive = passive;
  say ("main", _("Started child process %s; sending every %.2f s, %u rounds"),
       g_subprocess_get_identifier (child), interval, rounds);

  g_signal_connect (active, "received::s", G_CALLBACK (demo_on_reply), &demo);
  g_subprocess_wait_check_async (child, NULL, demo_child_exited, &demo);

  demo_send_round (&demo);
  if (rounds > 1)
    g_timeout_add ((guint) (interval * 1000), demo_send_round, &demo);

  g_main_loop_run (loop);
  say ("main", _("Done: %u replies"), demo.replies);

  return demo.replies == rounds ? demo.status : EXIT_FAILURE;
}

static void
child_on_passive (LyChannel *channel,
                  GVariant  *message,
                  gpointer   user_data)
{
  say ("child", _("Passive receive: %s"), g_variant_get_string (message, NULL));
}

static void
child_on_closed (LyChannel    *channel,
                 const GError *error,
                 GMainLoop    *loop)
{
  g_main_loop_quit (loop);
}

static gpointer
child_active_loop (gpointer user_data)
{
  LyChannel *active = user_data;
  guint n = 0;

  for (;;)
    {
      g_autoptr(GError) error = NULL;
      g_autoptr(GVariant) message = ly_channel_receive (active, NULL, &error);
      g_autofree char *reply = NULL;

      if (message == NULL)
        break;

      say ("child", _("Active receive: %s"), g_variant_get_string (message, NULL));
      reply = g_strdup_printf ("got %u", ++n);
      ly_channel_send (active, g_variant_new_string (reply), NULL);
    }

  return NULL;
}

static int
run_demo_child (void)
{
  g_autoptr(GMainLoop) loop = g_main_loop_new (NULL, FALSE);
  g_autoptr(GError) error = NULL;
  g_autoptr(LyChannel) active = ly_channel_new_for_fd ("demo-active", CHILD_ACTIVE_FD, &error);
  g_autoptr(LyChannel) passive = NULL;
  GThread *thread;

  if (active != NULL)
    passive = ly_channel_new_for_fd ("demo-passive", CHILD_PASSIVE_FD, &error);
  if (passive == NULL)
    {
      g_printerr (_("The demo child has no channels: %s\n"), error->message);
      return EXIT_FAILURE;
    }

  g_signal_connect (passive, "received::s", G_CALLBACK (child_on_passive), NULL);
  g_signal_connect (passive, "closed", G_CALLBACK (child_on_closed), loop);
  thread = g_thread_new ("active-receive", child_active_loop, active);

  g_main_loop_run (loop);
  g_thread_join (thread);

  return EXIT_SUCCESS;
}

/* Command line ------------------------------------------------------------ */

static int
usage (GOptionContext *context)
{
  g_autofree char *help = g_option_context_get_help (context, TRUE, NULL);

  g_printerr ("%s", help);
  return 2;
}

int
main (int   argc,
      char *argv[])
{
  double interval = 3.0;
  int rounds = 3;
  GOptionEntry demo_entries[] = {
    { "interval", 'i', 0, G_OPTION_ARG_DOUBLE, &interval, N_("Seconds between two sends (default 3)"), N_("SECONDS") },
    { "rounds", 'n', 0, G_OPTION_ARG_INT, &rounds, N_("How many rounds to send (default 3)"), N_("N") },
    { NULL }
  };
  g_autoptr(GOptionContext) context = NULL;
  g_autoptr(GError) error = NULL;
  g_autofree char *self_path = NULL;

  setlocale (LC_ALL, "");
  bindtextdomain (GETTEXT_PACKAGE, g_getenv ("LY_LOCALEDIR") ? g_getenv ("LY_LOCALEDIR") : LOCALEDIR);
  bind_textdomain_codeset (GETTEXT_PACKAGE, "UTF-8");
  textdomain (GETTEXT_PACKAGE);

  if (argc >= 2 && g_str_equal (argv[1], "demo-child"))
    {
      g_set_prgname ("liteyuki-comm-demo-child");
      return run_demo_child ();
    }

  context = g_option_context_new (_("demo — process channels and shared storage"));
  g_option_context_set_translation_domain (context, GETTEXT_PACKAGE);
  g_option_context_set_summary (context, _("Commands:\n  demo    run the example of the reference document: a main process and a child exchanging messages"));
  g_option_context_add_main_entries (context, demo_entries, GETTEXT_PACKAGE);

  if (!g_option_context_parse (context, &argc, &argv, &error))
    {
      g_printerr ("%s\n", error->message);
      return 2;
    }

  if (argc < 2 || !g_str_equal (argv[1], "demo"))
    return usage (context);

  if (interval <= 0 || interval > 3600 || rounds < 1)
    {
      g_printerr (_("--interval must be between 0 and 3600 seconds and --rounds at least 1\n"));
      return 2;
    }

  self_path = g_file_read_link ("/proc/self/exe", NULL);
  return run_demo (interval, (guint) rounds, self_path != NULL ? self_path : argv[0]);
}

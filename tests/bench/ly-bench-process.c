/* ly-bench-process.c: spawn-to-first-message latency of managed children,
 * and hub-to-child throughput with 1, 8 and 32 children, against a bare
 * fork+exec+socketpair of the same binary measured in the same run.
 *
 * Usage: ly-bench-process [--quick]
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <liteyuki-comm.h>

#define BARE_FD 3
#define MESSAGE_SIZE 32
#define RAW_BUFFER (256 * 1024)

static char *self_path;

/* Children ---------------------------------------------------------------- */

static void
child_quit (LyChannel    *channel,
            const GError *error,
            GMainLoop    *loop)
{
  g_main_loop_quit (loop);
}

typedef struct
{
  guint count;
  guint seen;
} Counter;

static void
child_count (LyChannel *channel,
             GVariant  *message,
             Counter   *counter)
{
  if (++counter->seen == counter->count)
    ly_channel_send (channel, g_variant_new_uint32 (counter->seen), NULL);
}

static int
run_child (const char *mode,
           guint       count)
{
  g_autoptr(GMainLoop) loop = g_main_loop_new (NULL, FALSE);
  Counter counter = { count, 0 };

  if (g_str_equal (mode, "bare-first"))
    {
      char byte = 1;

      return write (BARE_FD, &byte, 1) == 1 ? 0 : 1;
    }

  if (g_str_equal (mode, "bare-count"))
    {
      g_autofree guint8 *buffer = g_malloc (RAW_BUFFER);
      gsize have = 0;
      guint32 seen = 0;

      while (seen < count)
        {
          gssize n = read (BARE_FD, buffer + have, RAW_BUFFER - have);
          gsize offset = 0;

          if (n <= 0)
            return 1;
          have += n;
          while (have - offset >= 4)
            {
              guint32 length;

              memcpy (&length, buffer + offset, 4);
              if (have - offset < 4 + length)
                break;
              offset += 4 + length;
              seen++;
            }
          memmove (buffer, buffer + offset, have - offset);
          have -= offset;
        }
      return write (BARE_FD, &seen, 4) == 4 ? 0 : 1;
    }

  if (g_str_equal (mode, "ours-first"))
    {
      ly_channel_send (ly_active_channel (), g_variant_new_string ("ready"), NULL);
    }
  else if (g_str_equal (mode, "ours-count"))
    {
      g_signal_connect (ly_active_channel (), "received", G_CALLBACK (child_count), &counter);
    }

  g_signal_connect (ly_active_channel (), "closed", G_CALLBACK (child_quit), loop);
  g_main_loop_run (loop);
  return 0;
}

/* Spawn to first message --------------------------------------------------- */

static double
bare_spawn_once (void)
{
  gint64 start = g_get_monotonic_time ();
  int fds[2];
  pid_t pid;
  char byte;

  g_assert_cmpint (socketpair (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), ==, 0);
  pid = fork ();
  if (pid == 0)
    {
      dup2 (fds[1], BARE_FD);
      execl (self_path, self_path, "child", "bare-first", "0", NULL);
      _exit (127);
    }
  close (fds[1]);
  g_assert_cmpint (read (fds[0], &byte, 1), ==, 1);
  start = g_get_monotonic_time () - start;
  close (fds[0]);
  waitpid (pid, NULL, 0);

  return start / 1e3;
}

typedef struct
{
  gboolean got;
  gint64   at;
} FirstMessage;

static void
got_first (LyChannel    *channel,
           GVariant     *message,
           FirstMessage *first)
{
  first->at = g_get_monotonic_time ();
  first->got = TRUE;
}

static double
ours_spawn_once (LyProcessManager *manager,
                 const char       *name)
{
  g_autofree char *channel_name = g_strdup_printf ("%s-active", name);
  LyChannel *active = ly_get_channel (channel_name);
  g_autoptr(GError) error = NULL;
  FirstMessage first = { FALSE, 0 };
  gulong id = g_signal_connect (active, "received", G_CALLBACK (got_first), &first);
  gint64 start = g_get_monotonic_time ();

  ly_process_manager_start (manager, name, &error);
  g_assert_no_error (error);
  while (!first.got)
    g_main_context_iteration (NULL, TRUE);

  g_signal_handler_disconnect (active, id);
  ly_process_manager_stop (manager, name, NULL, &error);
  g_assert_no_error (error);

  return (first.at - start) / 1e3;
}

static int
compare_doubles (gconstpointer a,
                 gconstpointer b)
{
  double x = *(const double *) a, y = *(const double *) b;

  return (x > y) - (x < y);
}

static double
median (double *values,
        guint   n)
{
  qsort (values, n, sizeof values[0], compare_doubles);
  return values[n / 2];
}

/* Throughput --------------------------------------------------------------- */

typedef struct
{
  LyChannel *channel;
  guint      sent;
  guint      count;
} Feed;

typedef struct
{
  Feed      *feeds;
  guint      n_feeds;
  GVariant  *payload;
  guint      acks;
} Feeder;

static gboolean feed_batch (gpointer user_data);

static void
fed_async (GObject      *source,
           GAsyncResult *result,
           gpointer      user_data)
{
  ly_channel_send_finish (LY_CHANNEL (source), result, NULL);
  g_idle_add (feed_batch, user_data);
}

/* Round robin over the children, 1024 messages each per turn; a full
 * queue waits with send_async(). */
static gboolean
feed_batch (gpointer user_data)
{
  Feeder *feeder = user_data;
  gboolean more = FALSE;

  for (guint i = 0; i < feeder->n_feeds; i++)
    {
      Feed *feed = &feeder->feeds[i];

      for (guint j = 0; j < 1024 && feed->sent < feed->count; j++)
        {
          if (!ly_channel_send (feed->channel, feeder->payload, NULL))
            {
              ly_channel_send_async (feed->channel, feeder->payload, NULL, fed_async, feeder);
              feed->sent++;
              return G_SOURCE_REMOVE;
            }
          feed->sent++;
        }
      more |= feed->sent < feed->count;
    }

  return more ? G_SOURCE_CONTINUE : G_SOURCE_REMOVE;
}

static void
got_ack (LyChannel *channel,
         GVariant  *message,
         Feeder    *feeder)
{
  feeder->acks++;
}

static double
ours_throughput (guint n_children,
                 guint per_child)
{
  g_autoptr(LyProcessManager) manager = ly_process_manager_new ();
  g_autoptr(GError) error = NULL;
  g_autofree char *count = g_strdup_printf ("%u", per_child);
  g_autofree Feed *feeds = g_new0 (Feed, n_children);
  g_autofree guint8 *data = g_malloc0 (MESSAGE_SIZE);
  Feeder feeder = { feeds, n_children, NULL, 0 };
  gint64 start;

  feeder.payload = g_variant_ref_sink (g_variant_new_fixed_array (G_VARIANT_TYPE_BYTE, data, MESSAGE_SIZE, 1));

  for (guint i = 0; i < n_children; i++)
    {
      g_autofree char *name = g_strdup_printf ("t%u", i);
      g_autofree char *channel_name = g_strdup_printf ("t%u-active", i);
      const char *argv[] = { self_path, "child", "ours-count", count, NULL };

      ly_process_manager_add_target (manager, name, argv, &error);
      g_assert_no_error (error);
      feeds[i].channel = ly_get_channel (channel_name);
      feeds[i].count = per_child;
      ly_channel_set_max_queued_bytes (feeds[i].channel, 4 * 1024 * 1024);
      g_signal_connect (feeds[i].channel, "received::u", G_CALLBACK (got_ack), &feeder);
    }
  ly_process_manager_start_all (manager, &error);
  g_assert_no_error (error);

  start = g_get_monotonic_time ();
  g_idle_add (feed_batch, &feeder);
  while (feeder.acks < n_children)
    g_main_context_iteration (NULL, TRUE);
  start = g_get_monotonic_time () - start;

  for (guint i = 0; i < n_children; i++)
    g_signal_handlers_disconnect_by_data (feeds[i].channel, &feeder);
  ly_process_manager_stop_all (manager, NULL, &error);
  g_variant_unref (feeder.payload);

  return (double) n_children * per_child / (start / 1e6);
}

static double
bare_throughput (guint n_children,
                 guint per_child)
{
  g_autofree int *fds = g_new (int, n_children);
  g_autofree pid_t *pids = g_new (pid_t, n_children);
  g_autofree guint8 *buffer = g_malloc (RAW_BUFFER);
  g_autofree char *count = g_strdup_printf ("%u", per_child);
  guint records = RAW_BUFFER / (4 + MESSAGE_SIZE);
  gsize batch = records * (4 + MESSAGE_SIZE);
  gint64 start;

  for (guint i = 0; i < records; i++)
    {
      guint32 length = MESSAGE_SIZE;

      memcpy (buffer + i * (4 + MESSAGE_SIZE), &length, 4);
      memset (buffer + i * (4 + MESSAGE_SIZE) + 4, 0, MESSAGE_SIZE);
    }

  for (guint i = 0; i < n_children; i++)
    {
      int pair[2];

      g_assert_cmpint (socketpair (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair), ==, 0);
      pids[i] = fork ();
      if (pids[i] == 0)
        {
          dup2 (pair[1], BARE_FD);
          execl (self_path, self_path, "child", "bare-count", count, NULL);
          _exit (127);
        }
      close (pair[1]);
      fds[i] = pair[0];
    }

  start = g_get_monotonic_time ();
  for (guint sent = 0; sent < per_child; sent += records)
    {
      guint n = MIN (records, per_child - sent);

      for (guint i = 0; i < n_children; i++)
        {
          gsize size = n == records ? batch : n * (4 + MESSAGE_SIZE);
          gsize done = 0;

          while (done < size)
            {
              gssize w = write (fds[i], buffer + done, size - done);

              g_assert_cmpint (w, >, 0);
              done += w;
            }
        }
    }
  for (guint i = 0; i < n_children; i++)
    {
      guint32 seen;

      g_assert_cmpint (read (fds[i], &seen, 4), ==, 4);
      g_assert_cmpuint (seen, ==, per_child);
    }
  start = g_get_monotonic_time () - start;

  for (guint i = 0; i < n_children; i++)
    {
      close (fds[i]);
      waitpid (pids[i], NULL, 0);
    }

  return (double) n_children * per_child / (start / 1e6);
}

int
main (int   argc,
      char *argv[])
{
  gboolean quick = FALSE;
  GOptionEntry entries[] = {
    { "quick", 'q', 0, G_OPTION_ARG_NONE, &quick, "Fewer runs (a smoke run)", NULL },
    { NULL }
  };
  g_autoptr(GOptionContext) context = NULL;
  g_autoptr(GError) error = NULL;
  g_autoptr(LyProcessManager) manager = NULL;
  g_autofree char *script = NULL;
  const guint child_counts[] = { 1, 8, 32 };
  guint spawns;
  guint total;
  double bare[50], ours_c[50], ours_python[50];
  double bare_ms, ours_c_ms, ours_python_ms;

  if (argc >= 4 && g_str_equal (argv[1], "child"))
    return run_child (argv[2], (guint) atoi (argv[3]));

  context = g_option_context_new ("— process manager spawn latency and throughput");
  g_option_context_add_main_entries (context, entries, NULL);
  if (!g_option_context_parse (context, &argc, &argv, &error))
    {
      g_printerr ("%s\n", error->message);
      return 2;
    }

  signal (SIGPIPE, SIG_IGN);
  self_path = g_file_read_link ("/proc/self/exe", NULL);
  script = g_build_filename (g_getenv ("LY_BENCH_SRCDIR") ? g_getenv ("LY_BENCH_SRCDIR") : BENCH_SRCDIR,
                             "bench-child.py", NULL);
  spawns = quick ? 5 : 31;
  total = quick ? 100000 : 1000000;

  manager = ly_process_manager_new ();
  {
    const char *c_argv[] = { self_path, "child", "ours-first", "0", NULL };
    const char *py_argv[] = { "/usr/bin/python3", script, NULL };

    ly_process_manager_add_target (manager, "c", c_argv, &error);
    g_assert_no_error (error);
    ly_process_manager_add_target (manager, "python", py_argv, &error);
    g_assert_no_error (error);
  }

  /* interleaved, so that the machine's noise hits all alike */
  for (guint i = 0; i < spawns; i++)
    {
      bare[i] = bare_spawn_once ();
      ours_c[i] = ours_spawn_once (manager, "c");
      ours_python[i] = ours_spawn_once (manager, "python");
    }
  bare_ms = median (bare, spawns);
  ours_c_ms = median (ours_c, spawns);
  ours_python_ms = median (ours_python, spawns);

  g_print ("liteyuki-comm process benchmark (medians; %u spawns each, interleaved)\n\n", spawns);
  g_print ("spawn to first message                     ms\n");
  g_print ("  bare fork+exec+socketpair, C        %8.3f\n", bare_ms);
  g_print ("  LyProcessManager, C child           %8.3f   (%.2fx bare; bar <= 2x)\n", ours_c_ms, ours_c_ms / bare_ms);
  g_print ("  LyProcessManager, Python child      %8.3f\n\n", ours_python_ms);

  g_print ("hub to children, 32-byte messages, %u in all     msg/s\n", total);
  for (gsize i = 0; i < G_N_ELEMENTS (child_counts); i++)
    {
      guint n = child_counts[i];
      double runs_ours[3], runs_bare[3];

      for (guint r = 0; r < 3; r++)
        {
          runs_ours[r] = ours_throughput (n, total / n);
          runs_bare[r] = bare_throughput (n, total / n);
        }
      g_print ("  %2u children: LyProcessManager %11.0f   bare %11.0f   (%.0f%% of bare)\n",
               n, median (runs_ours, 3), median (runs_bare, 3),
               100.0 * median (runs_ours, 3) / median (runs_bare, 3));
    }

  return 0;
}

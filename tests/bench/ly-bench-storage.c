/* ly-bench-storage.c: a child's storage gets (from the hub's shared
 * table, and with the table off: a round trip each) and pipelined async
 * set throughput, with 100,000 keys stored, against, in the same run, a
 * raw C socketpair round trip, a GDBus peer-to-peer method call, and
 * redis-benchmark against a local redis-server (when installed); and the
 * same child with a hub whose storage is on that redis-server.
 *
 * Usage: ly-bench-storage [--quick]
 *
 * The child writes its figures into the storage it measures; the hub
 * reads them when the child is done.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <liteyuki-comm.h>

#define ENV_DBUS_ADDRESS "LY_BENCH_DBUS_ADDRESS"
#define ENV_COUNT        "LY_BENCH_COUNT"
#define ENV_NO_DBUS      "LY_BENCH_NO_DBUS"
#define N_KEYS           100000

/* The child -------------------------------------------------------------- */

typedef struct
{
  guint pending;
  guint done;
} Pipeline;

static void
set_done (GObject      *source,
          GAsyncResult *result,
          gpointer      user_data)
{
  Pipeline *pipeline = user_data;
  g_autoptr(GError) error = NULL;

  if (!ly_storage_set_finish (LY_STORAGE (source), result, &error))
    g_error ("set: %s", error->message);
  pipeline->pending--;
  pipeline->done++;
}

static int
compare_doubles (gconstpointer a,
                 gconstpointer b)
{
  double x = *(const double *) a, y = *(const double *) b;

  return x < y ? -1 : x > y;
}

static inline double
now_ns (void)
{
  struct timespec ts;

  clock_gettime (CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e9 + ts.tv_nsec;
}

/* @count gets, each timed: of random keys among the N_KEYS the hub
 * stored (their names made as a program makes them, on the stack), or
 * of one key again and again when @same_key; the median and the 99th
 * percentile, in microseconds. */
static void
child_get_latency (LyStorage *storage,
                   guint      count,
                   gboolean   same_key,
                   double    *median,
                   double    *p99)
{
  g_autofree double *samples = g_new (double, count);
  g_autoptr(GRand) rand = g_rand_new_with_seed (42);

  for (guint i = 0; i < count; i++)
    {
      g_autoptr(GError) error = NULL;
      g_autoptr(GVariant) value = NULL;
      char key[32];
      double start;

      g_snprintf (key, sizeof key, "bench.k%d", same_key ? 7 : g_rand_int_range (rand, 0, N_KEYS));
      start = now_ns ();
      value = ly_storage_get (storage, key, &error);
      samples[i] = (now_ns () - start) / 1000.0;
      g_assert_no_error (error);
      g_assert_nonnull (value);
      g_assert_cmpuint (g_variant_get_size (value), ==, 33);
    }

  qsort (samples, count, sizeof (double), compare_doubles);
  *median = samples[count / 2];
  *p99 = samples[(gsize) (count * 0.99)];
}

typedef struct
{
  LyStorage *storage;
  GVariant  *value;
  guint      count;
  guint      issued;
  gboolean   callbacks;
  Pipeline   pipeline;
} Feeder;

/* Issues sets from the main loop, as an application does, keeping up to
 * 4096 in flight: they leave in batches, not one write each. */
static gboolean
issue_sets (gpointer user_data)
{
  Feeder *feeder = user_data;

  guint chunk = 0;

  /* a chunk per dispatch, so that replies are read in between */
  while (feeder->issued < feeder->count && feeder->pipeline.pending < 4096 && chunk++ < 4096)
    {
      char key[32];

      g_snprintf (key, sizeof key, "bench.set.%u", feeder->issued % 1000);
      if (feeder->callbacks)
        {
          ly_storage_set_async (feeder->storage, key, feeder->value, NULL, set_done, &feeder->pipeline);
          feeder->pipeline.pending++;
        }
      else
        {
          ly_storage_set_async (feeder->storage, key, feeder->value, NULL, NULL, NULL);
          feeder->pipeline.done++;
        }
      feeder->issued++;
    }

  return feeder->issued < feeder->count ? G_SOURCE_CONTINUE : G_SOURCE_REMOVE;
}

/* Returns sets per second, all applied by the hub: with a callback per
 * set, or none and one get at the end (it follows them all). */
static double
child_pipelined_sets (LyStorage *storage,
                      guint      count,
                      gboolean   callbacks)
{
  g_autoptr(GVariant) value = g_variant_ref_sink (g_variant_new_string ("0123456789abcdef0123456789abcdef"));
  g_autoptr(GVariant) barrier = NULL;
  Feeder feeder = { storage, value, count, 0, callbacks, { 0, 0 } };
  gint64 start = g_get_monotonic_time ();

  g_idle_add (issue_sets, &feeder);
  while (feeder.pipeline.done < count)
    g_main_context_iteration (NULL, TRUE);
  barrier = ly_storage_get (storage, "bench.k0", NULL);

  return count / ((g_get_monotonic_time () - start) / 1e6);
}

static double
child_dbus_rtt (guint count)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(GDBusConnection) connection = NULL;
  gint64 start;

  connection = g_dbus_connection_new_for_address_sync (g_getenv (ENV_DBUS_ADDRESS),
                                                       G_DBUS_CONNECTION_FLAGS_AUTHENTICATION_CLIENT,
                                                       NULL, NULL, &error);
  g_assert_no_error (error);

  start = g_get_monotonic_time ();
  for (guint i = 0; i < count; i++)
    {
      GVariant *reply = g_dbus_connection_call_sync (connection, NULL, "/bench", "bench.Peer", "Get",
                                                     g_variant_new ("(s)", "bench.k0"), G_VARIANT_TYPE ("(v)"),
                                                     G_DBUS_CALL_FLAGS_NONE, -1, NULL, &error);
      g_assert_no_error (error);
      g_variant_unref (reply);
    }

  return (g_get_monotonic_time () - start) / (double) count;
}

static int
run_child (void)
{
  LyStorage *storage = ly_storage_get_default ();
  guint count = (guint) atoi (g_getenv (ENV_COUNT));
  g_autoptr(GError) error = NULL;
  double get_median, get_p99, same_median, same_p99, sets, sets_no_callback, dbus_rtt;
  gboolean dbus = g_getenv (ENV_NO_DBUS) == NULL;

  /* warm up both paths */
  child_get_latency (storage, 200, FALSE, &get_median, &get_p99);
  if (dbus)
    child_dbus_rtt (200);

  child_get_latency (storage, count, FALSE, &get_median, &get_p99);
  child_get_latency (storage, count, TRUE, &same_median, &same_p99);
  dbus_rtt = dbus ? child_dbus_rtt (count / 4) : 0;
  sets = child_pipelined_sets (storage, count * 10, TRUE);
  sets_no_callback = child_pipelined_sets (storage, count * 10, FALSE);

  ly_storage_set (storage, "bench.result",
                  g_variant_new ("(ddddddd)", get_median, get_p99, same_median, same_p99,
                                 dbus_rtt, sets, sets_no_callback), &error);
  g_assert_no_error (error);
  return 0;
}

/* The hub side ----------------------------------------------------------- */

static const char peer_xml[] =
  "<node><interface name='bench.Peer'>"
  "<method name='Get'><arg type='s' direction='in'/><arg type='v' direction='out'/></method>"
  "</interface></node>";

/* The GDBus peer: what a naive design would put between child and hub. */
static void
peer_method_call (GDBusConnection       *connection,
                  const char            *sender,
                  const char            *object_path,
                  const char            *interface_name,
                  const char            *method_name,
                  GVariant              *parameters,
                  GDBusMethodInvocation *invocation,
                  gpointer               user_data)
{
  const char *key;
  g_autoptr(GVariant) value = NULL;

  g_variant_get (parameters, "(&s)", &key);
  value = ly_storage_get (ly_storage_get_default (), key, NULL);
  g_dbus_method_invocation_return_value (invocation,
                                         g_variant_new ("(v)", value != NULL ? value : g_variant_new_string ("")));
}

static gboolean
on_peer_connection (GDBusServer     *server,
                    GDBusConnection *connection,
                    GDBusNodeInfo   *info)
{
  static const GDBusInterfaceVTable vtable = { peer_method_call, NULL, NULL, { 0 } };

  g_dbus_connection_register_object (connection, "/bench", info->interfaces[0], &vtable, NULL, NULL, NULL);
  g_object_set_data_full (G_OBJECT (server), "connection", g_object_ref (connection), g_object_unref);
  return TRUE;
}

static double
raw_rtt (guint count)
{
  int fds[2];
  char buffer[36] = { 0, };
  gint64 start;
  pid_t pid;

  g_assert_cmpint (socketpair (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), ==, 0);
  pid = fork ();
  if (pid == 0)
    {
      close (fds[0]);
      while (read (fds[1], buffer, sizeof buffer) == sizeof buffer)
        if (write (fds[1], buffer, sizeof buffer) != sizeof buffer)
          break;
      _exit (0);
    }
  close (fds[1]);

  start = g_get_monotonic_time ();
  for (guint i = 0; i < count; i++)
    {
      g_assert_cmpint (write (fds[0], buffer, sizeof buffer), ==, sizeof buffer);
      g_assert_cmpint (read (fds[0], buffer, sizeof buffer), ==, sizeof buffer);
    }
  start = g_get_monotonic_time () - start;
  close (fds[0]);
  waitpid (pid, NULL, 0);

  return start / (double) count;
}

/* redis-benchmark's SET requests per second, or 0 when redis is absent. */
static double
redis_sets (guint16     port,
            guint       count,
            const char *pipeline)
{
  g_autofree char *out = NULL;
  g_autofree char *port_s = g_strdup_printf ("%u", port);
  g_autofree char *count_s = g_strdup_printf ("%u", count);
  const char *argv[] = { "redis-benchmark", "-h", "127.0.0.1", "-p", port_s, "-t", "set",
                         "-n", count_s, "-c", "1", "-P", pipeline, "-d", "32", "-q", NULL };
  const char *found;

  if (!g_spawn_sync (NULL, (char **) argv, NULL, G_SPAWN_SEARCH_PATH | G_SPAWN_STDERR_TO_DEV_NULL,
                     NULL, NULL, &out, NULL, NULL, NULL))
    return 0;

  /* "SET: 123456.79 requests per second, p50=..." (the last report) */
  found = g_strrstr (out, "SET: ");
  return found != NULL ? g_ascii_strtod (found + 5, NULL) : 0;
}

static void
set_flag (gboolean *flag)
{
  *flag = TRUE;
}

/* Stores the N_KEYS keys the child reads, 32-byte strings. */
static void
fill_keys (LyStorage *storage)
{
  for (guint i = 0; i < N_KEYS; i++)
    {
      char key[32];

      g_snprintf (key, sizeof key, "bench.k%u", i);
      ly_storage_set_async (storage, key, g_variant_new_string ("0123456789abcdef0123456789abcdef"),
                            NULL, NULL, NULL);
    }
  g_assert_true (ly_storage_contains (storage, "bench.k0", NULL));
}

/* Runs the child under a new manager whose storage is @storage; returns
 * its figures (ddddddd). */
static GVariant *
run_bench_child (const char *self_path,
                 guint       count,
                 LyStorage  *storage)
{
  g_autoptr(LyProcessManager) manager = g_object_new (LY_TYPE_PROCESS_MANAGER, "storage", storage, NULL);
  g_autoptr(GError) error = NULL;
  g_autofree char *env_count = g_strdup_printf (ENV_COUNT "=%u", count);
  const char *child_argv[] = { self_path, "child", NULL };
  const char *child_env[] = { env_count, NULL };
  gboolean done = FALSE;
  GVariant *result;

  ly_storage_delete (storage, "bench.result", NULL);
  ly_process_manager_add_target (manager, "bench", child_argv, &error);
  g_assert_no_error (error);
  ly_process_manager_set_environment (manager, "bench", child_env, &error);
  ly_process_manager_start (manager, "bench", &error);
  g_assert_no_error (error);

  /* the hub waits for the result's change, without a read per iteration
   * (a read of a Redis-backed storage is a round trip that blocks it) */
  g_signal_connect_swapped (storage, "changed::bench.result", G_CALLBACK (set_flag), &done);
  while (!done)
    g_main_context_iteration (NULL, TRUE);
  g_signal_handlers_disconnect_by_data (storage, &done);
  result = ly_storage_get (storage, "bench.result", NULL);
  ly_process_manager_stop_all (manager, NULL, NULL);

  return result;
}

static double
median3 (double a, double b, double c)
{
  return MAX (MIN (a, b), MIN (MAX (a, b), c));
}

int
main (int   argc,
      char *argv[])
{
  gboolean quick = FALSE;
  GOptionEntry entries[] = {
    { "quick", 'q', 0, G_OPTION_ARG_NONE, &quick, "Fewer operations (a smoke run)", NULL },
    { NULL }
  };
  g_autoptr(GOptionContext) context = NULL;
  g_autoptr(GError) error = NULL;
  g_autoptr(GDBusNodeInfo) info = NULL;
  g_autoptr(GDBusServer) server = NULL;
  g_autofree char *self_path = NULL;
  g_autofree char *guid = g_dbus_generate_guid ();
  g_autofree char *redis_server = g_find_program_in_path ("redis-server");
  guint count;
  double get_median[3], get_p99[3], same_median[3], same_p99[3], dbus_rtt[3], sets[3], sets_nc[3], raw[3];
  double rtt_median[3], rtt_p99[3], rtt_sets[3], rtt_sets_nc[3];
  double get_no_busy_poll = 0;
  g_autoptr(LyStorage) no_table = ly_storage_new ();
  double redis_p1 = 0, redis_p64 = 0;
  double redis_get[3] = { 0, }, redis_sets_cb[3] = { 0, }, redis_sets_nc[3] = { 0, };
  GPid redis_pid = 0;
  guint16 redis_port = 16379;

  if (argc > 1 && g_str_equal (argv[1], "child"))
    return run_child ();

  context = g_option_context_new ("— storage round trip and pipelined sets");
  g_option_context_add_main_entries (context, entries, NULL);
  if (!g_option_context_parse (context, &argc, &argv, &error))
    {
      g_printerr ("%s\n", error->message);
      return 2;
    }

  signal (SIGPIPE, SIG_IGN);
  count = quick ? 2000 : 20000;
  self_path = g_file_read_link ("/proc/self/exe", NULL);

  info = g_dbus_node_info_new_for_xml (peer_xml, &error);
  g_assert_no_error (error);
  server = g_dbus_server_new_sync ("unix:tmpdir=/tmp", G_DBUS_SERVER_FLAGS_NONE, guid, NULL, NULL, &error);
  g_assert_no_error (error);
  g_signal_connect (server, "new-connection", G_CALLBACK (on_peer_connection), info);
  g_dbus_server_start (server);
  g_setenv (ENV_DBUS_ADDRESS, g_dbus_server_get_client_address (server), TRUE);

  /* the hub's own store, with its shared table (the default) and
   * without, alternately */
  g_object_set (no_table, "shared-memory-size", (guint64) 0, NULL);
  fill_keys (ly_storage_get_default ());
  fill_keys (no_table);
  for (guint run = 0; run < 3; run++)
    {
      g_autoptr(GVariant) result = run_bench_child (self_path, count, ly_storage_get_default ());
      g_autoptr(GVariant) rtt_result = run_bench_child (self_path, count, no_table);

      g_variant_get (result, "(ddddddd)", &get_median[run], &get_p99[run], &same_median[run], &same_p99[run],
                     &dbus_rtt[run], &sets[run], &sets_nc[run]);
      g_variant_get (rtt_result, "(ddddddd)", &rtt_median[run], &rtt_p99[run], NULL, NULL, NULL,
                     &rtt_sets[run], &rtt_sets_nc[run]);
      raw[run] = raw_rtt (count);
    }

  /* the round trip once more, with a hub that does not busy-poll */
  {
    g_autoptr(GVariant) result = NULL;

    g_setenv ("LY_HUB_BUSY_POLL_USEC", "0", TRUE);
    result = run_bench_child (self_path, count, no_table);
    g_unsetenv ("LY_HUB_BUSY_POLL_USEC");
    g_variant_get (result, "(ddddddd)", &get_no_busy_poll, NULL, NULL, NULL, NULL, NULL, NULL);
  }

  if (redis_server != NULL)
    {
      g_autofree char *port_s = g_strdup_printf ("%u", redis_port);
      const char *redis_argv[] = { redis_server, "--port", port_s, "--bind", "127.0.0.1",
                                   "--save", "", "--appendonly", "no", NULL };

      if (g_spawn_async (NULL, (char **) redis_argv, NULL,
                         G_SPAWN_STDOUT_TO_DEV_NULL | G_SPAWN_DO_NOT_REAP_CHILD, NULL, NULL, &redis_pid, &error))
        {
          g_autofree char *uri = g_strdup_printf ("redis://127.0.0.1:%u/0", redis_port);
          g_autoptr(LyStorage) redis_storage = NULL;

          g_usleep (300 * 1000);
          redis_storage = ly_storage_new_for_uri (uri, &error);
          g_assert_no_error (error);
          fill_keys (redis_storage);

          /* the child again, its hub's storage on redis-server; then
           * redis-benchmark, alternately */
          g_setenv (ENV_NO_DBUS, "1", TRUE);
          for (guint run = 0; run < 3; run++)
            {
              g_autoptr(GVariant) result = run_bench_child (self_path, count, redis_storage);

              g_variant_get (result, "(ddddddd)", &redis_get[run], NULL, NULL, NULL, NULL,
                             &redis_sets_cb[run], &redis_sets_nc[run]);
            }
          g_unsetenv (ENV_NO_DBUS);
          redis_p1 = redis_sets (redis_port, count * 5, "1");
          redis_p64 = redis_sets (redis_port, count * 50, "64");
          kill (redis_pid, SIGTERM);
          waitpid (redis_pid, NULL, 0);
        }
    }

  {
    double get_us = median3 (get_median[0], get_median[1], get_median[2]);
    double get_p99_us = median3 (get_p99[0], get_p99[1], get_p99[2]);
    double same_us = median3 (same_median[0], same_median[1], same_median[2]);
    double same_p99_us = median3 (same_p99[0], same_p99[1], same_p99[2]);
    double rtt_us = median3 (rtt_median[0], rtt_median[1], rtt_median[2]);
    double rtt_p99_us = median3 (rtt_p99[0], rtt_p99[1], rtt_p99[2]);
    double dbus_us = median3 (dbus_rtt[0], dbus_rtt[1], dbus_rtt[2]);
    double raw_us = median3 (raw[0], raw[1], raw[2]);
    double sets_s = median3 (sets[0], sets[1], sets[2]);
    double sets_nc_s = median3 (sets_nc[0], sets_nc[1], sets_nc[2]);
    double rtt_sets_s = median3 (rtt_sets[0], rtt_sets[1], rtt_sets[2]);
    double rtt_sets_nc_s = median3 (rtt_sets_nc[0], rtt_sets_nc[1], rtt_sets_nc[2]);

    g_print ("liteyuki-comm storage benchmark (medians of 3 runs, one child, %u keys of 32-byte values)\n\n", N_KEYS);
    g_print ("a child's get, random keys                   median us   p99 us\n");
    g_print ("  from the hub's shared table (default)   %8.2f   %8.2f   (bar: median <= 1 us)\n",
             get_us, get_p99_us);
    g_print ("  the same, one key again and again       %8.2f   %8.2f\n", same_us, same_p99_us);
    g_print ("  round trip (shared-memory-size 0)       %8.2f   %8.2f   (%.2fx raw; bar <= 1.5x)\n",
             rtt_us, rtt_p99_us, rtt_us / raw_us);
    g_print ("  the same, hub not busy-polling          %8.2f              (%.2fx raw; LY_HUB_BUSY_POLL_USEC=0)\n",
             get_no_busy_poll, get_no_busy_poll / raw_us);
    g_print ("  raw C socketpair round trip, 36 bytes   %8.2f\n", raw_us);
    g_print ("  child GDBus peer-to-peer call (mean)    %8.2f              (get is %.0fx faster; bar >= 3x)\n\n",
             dbus_us, dbus_us / get_us);
    g_print ("throughput                                   ops/s\n");
    g_print ("  child ly_storage_set_async, a callback each   %10.0f   (%.2fx without the table; bar >= 0.8x)\n",
             sets_s, sets_s / rtt_sets_s);
    g_print ("  child ly_storage_set_async, no callback       %10.0f   (%.2fx without the table)\n",
             sets_nc_s, sets_nc_s / rtt_sets_nc_s);
    g_print ("  the same two, hub without the table           %10.0f   %10.0f\n", rtt_sets_s, rtt_sets_nc_s);
    if (redis_p64 > 0)
      {
        g_print ("  redis-benchmark SET -c 1 -P 1                 %10.0f\n", redis_p1);
        g_print ("  redis-benchmark SET -c 1 -P 64                %10.0f   (sets are %.2fx and %.2fx; bar >= 1x)\n",
                 redis_p64, sets_s / redis_p64, sets_nc_s / redis_p64);
      }
    else
      g_print ("  redis-server is not installed: no redis comparison\n");

    if (redis_p64 > 0)
      {
        double rget = median3 (redis_get[0], redis_get[1], redis_get[2]);
        double rsets = median3 (redis_sets_cb[0], redis_sets_cb[1], redis_sets_cb[2]);
        double rsets_nc = median3 (redis_sets_nc[0], redis_sets_nc[1], redis_sets_nc[2]);

        g_print ("\nthe hub's storage on redis-server (ly_storage_new_for_uri (\"redis://127.0.0.1\"))\n");
        g_print ("  child ly_storage_get() (a round trip)  %8.1f us  (%.2fx the hub's own store without the table; bar <= 2x)\n",
                 rget, rget / rtt_us);
        g_print ("  child ly_storage_set_async, a callback each   %10.0f\n", rsets);
        g_print ("  child ly_storage_set_async, no callback       %10.0f   (%.2fx redis-benchmark -P 64; bar >= 0.5x)\n",
                 rsets_nc, rsets_nc / redis_p64);
      }
  }

  return 0;
}

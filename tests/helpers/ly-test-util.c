/* ly-test-util.c
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include <string.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>

#include <glib/gstdio.h>

#include "ly-test-util.h"

static gboolean
timed_out (gpointer user_data)
{
  gboolean *flag = user_data;

  *flag = TRUE;
  return G_SOURCE_REMOVE;
}

static void
run_until (gboolean (*done) (gconstpointer, guint),
           gconstpointer   data,
           guint           target,
           guint           timeout_sec)
{
  gboolean expired = FALSE;
  guint id = g_timeout_add_seconds (timeout_sec, timed_out, &expired);

  while (!done (data, target) && !expired)
    g_main_context_iteration (NULL, TRUE);

  if (expired)
    g_error ("Timed out after %u s waiting for the test condition", timeout_sec);
  g_source_remove (id);
}

static gboolean
flag_done (gconstpointer data,
           guint         target)
{
  return *(const gboolean *) data;
}

static gboolean
count_done (gconstpointer data,
            guint         target)
{
  return *(const guint *) data >= target;
}

void
ly_test_run_until (const gboolean *flag,
                   guint           timeout_sec)
{
  run_until (flag_done, flag, 0, timeout_sec);
}

void
ly_test_run_until_count (const guint *counter,
                         guint        target,
                         guint        timeout_sec)
{
  run_until (count_done, counter, target, timeout_sec);
}

guint
ly_test_count_fds (void)
{
  g_autoptr(GDir) dir = g_dir_open ("/proc/self/fd", 0, NULL);
  guint n = 0;

  g_assert_nonnull (dir);
  while (g_dir_read_name (dir) != NULL)
    n++;

  return n;
}

gsize
ly_test_proc_status (const char *field)
{
  g_autofree char *status = NULL;
  g_autofree char *prefix = g_strconcat ("\n", field, ":", NULL);
  const char *line;

  g_assert_true (g_file_get_contents ("/proc/self/status", &status, NULL, NULL));
  line = strstr (status, prefix);
  g_assert_nonnull (line);
  return (gsize) g_ascii_strtoull (line + strlen (prefix), NULL, 10);
}

guint
ly_test_scaled (guint count)
{
  if (g_getenv ("LY_TEST_QUICK") != NULL)
    return MAX (count / 20, 1);
  return count;
}

GSubprocess *
ly_test_spawn_peer (const char  *channel_name,
                    LyChannel  **channel,
                    const char  *first_arg,
                    ...)
{
  g_autoptr(GSubprocessLauncher) launcher = g_subprocess_launcher_new (G_SUBPROCESS_FLAGS_NONE);
  g_autoptr(GPtrArray) argv = g_ptr_array_new_with_free_func (g_free);
  g_autoptr(GError) error = NULL;
  GSubprocess *child;
  const char *arg;
  va_list args;
  int fds[2];

  g_ptr_array_add (argv, g_test_build_filename (G_TEST_BUILT, "ly-test-peer", NULL));
  va_start (args, first_arg);
  for (arg = first_arg; arg != NULL; arg = va_arg (args, const char *))
    g_ptr_array_add (argv, g_strdup (arg));
  va_end (args);
  g_ptr_array_add (argv, NULL);

  g_assert_cmpint (socketpair (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), ==, 0);
  g_subprocess_launcher_take_fd (launcher, fds[1], 3);
  child = g_subprocess_launcher_spawnv (launcher, (const char * const *) argv->pdata, &error);
  g_assert_no_error (error);
  /* the launcher holds the child's end until it is freed: free it now,
   * so that the child's death is the end of the stream */
  g_clear_object (&launcher);

  *channel = ly_channel_new_for_fd (channel_name, fds[0], &error);
  g_assert_no_error (error);

  return child;
}

void
ly_test_send_waiting (LyChannel *channel,
                      GVariant  *message)
{
  g_autoptr(GVariant) owned = g_variant_ref_sink (message);
  g_autoptr(GError) error = NULL;

  while (!ly_channel_send (channel, owned, &error))
    {
      g_assert_error (error, LY_CHANNEL_ERROR, LY_CHANNEL_ERROR_FULL);
      g_clear_error (&error);
      ly_channel_flush (channel, NULL, &error);
      g_assert_no_error (error);
    }
}

static gboolean
tick (gpointer user_data)
{
  return G_SOURCE_CONTINUE;
}

void
ly_test_wait_msec (guint msec)
{
  gint64 until = g_get_monotonic_time () + msec * 1000;
  guint id = g_timeout_add (5, tick, NULL);

  while (g_get_monotonic_time () < until)
    g_main_context_iteration (NULL, TRUE);
  g_source_remove (id);
}

LyTestOutput *
ly_test_output_new (void)
{
  g_autoptr(GError) error = NULL;
  LyTestOutput *output = g_new0 (LyTestOutput, 1);

  output->dir = g_dir_make_tmp ("ly-test-XXXXXX", &error);
  g_assert_no_error (error);
  output->path = g_build_filename (output->dir, "output.txt", NULL);

  return output;
}

void
ly_test_output_free (LyTestOutput *output)
{
  g_autoptr(GDir) dir = g_dir_open (output->dir, 0, NULL);
  const char *name;

  while (dir != NULL && (name = g_dir_read_name (dir)) != NULL)
    {
      g_autofree char *path = g_build_filename (output->dir, name, NULL);
      g_unlink (path);
    }
  g_rmdir (output->dir);
  g_free (output->path);
  g_free (output->dir);
  g_free (output);
}

guint
ly_test_output_count (LyTestOutput *output,
                      const char   *text)
{
  g_autofree char *contents = NULL;
  g_auto(GStrv) lines = NULL;
  guint n = 0;

  if (!g_file_get_contents (output->path, &contents, NULL, NULL))
    return 0;

  /* only whole lines: a child may be writing the last one right now */
  lines = g_strsplit (contents, "\n", -1);
  for (guint i = 0; lines[i] != NULL && lines[i + 1] != NULL; i++)
    if (strstr (lines[i], text) != NULL)
      n++;

  return n;
}

void
ly_test_output_wait (LyTestOutput *output,
                     const char   *text,
                     guint         count,
                     guint         timeout_sec)
{
  gint64 deadline = g_get_monotonic_time () + timeout_sec * G_USEC_PER_SEC;
  guint id = g_timeout_add (10, tick, NULL);

  while (ly_test_output_count (output, text) < count)
    {
      if (g_get_monotonic_time () > deadline)
        {
          g_autofree char *contents = NULL;

          g_file_get_contents (output->path, &contents, NULL, NULL);
          g_error ("Timed out waiting for %u lines with “%s”; the output is:\n%s",
                   count, text, contents != NULL ? contents : "(none)");
        }
      g_main_context_iteration (NULL, TRUE);
    }
  g_source_remove (id);
}

void
ly_test_add_target (LyProcessManager   *manager,
                    const char         *name,
                    const char * const *argv,
                    LyTestOutput       *output)
{
  g_autofree char *variable = g_strconcat ("LY_TEST_OUTPUT=", output->path, NULL);
  const char *environment[] = { variable, NULL };
  g_autoptr(GError) error = NULL;

  ly_process_manager_add_target (manager, name, argv, &error);
  g_assert_no_error (error);
  ly_process_manager_set_environment (manager, name, environment, &error);
  g_assert_no_error (error);
}

static void
on_dbus_client_ready (GObject      *source,
                      GAsyncResult *result,
                      gpointer      user_data)
{
  GDBusConnection **client = user_data;
  g_autoptr(GError) error = NULL;

  *client = g_dbus_connection_new_finish (result, &error);
  g_assert_no_error (error);
}

void
ly_test_dbus_pair_open (GDBusConnection **server,
                        GDBusConnection **client)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(GSocket) socket0 = NULL;
  g_autoptr(GSocket) socket1 = NULL;
  g_autoptr(GSocketConnection) stream0 = NULL;
  g_autoptr(GSocketConnection) stream1 = NULL;
  g_autofree char *guid = g_dbus_generate_guid ();
  int fds[2];

  g_assert_cmpint (socketpair (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), ==, 0);
  socket0 = g_socket_new_from_fd (fds[0], &error);
  g_assert_no_error (error);
  socket1 = g_socket_new_from_fd (fds[1], &error);
  g_assert_no_error (error);
  stream0 = g_socket_connection_factory_create_connection (socket0);
  stream1 = g_socket_connection_factory_create_connection (socket1);

  /* the client authenticates while the server does, in this thread */
  *client = NULL;
  g_dbus_connection_new (G_IO_STREAM (stream1), NULL, G_DBUS_CONNECTION_FLAGS_AUTHENTICATION_CLIENT,
                         NULL, NULL, on_dbus_client_ready, client);
  *server = g_dbus_connection_new_sync (G_IO_STREAM (stream0), guid,
                                        G_DBUS_CONNECTION_FLAGS_AUTHENTICATION_SERVER,
                                        NULL, NULL, &error);
  g_assert_no_error (error);
  while (*client == NULL)
    g_main_context_iteration (NULL, TRUE);
}

/* Whether @pid is gone; a zombie waiting for its new parent to reap it
 * is gone too. */
gboolean
ly_test_process_gone (GPid pid)
{
  g_autofree char *path = g_strdup_printf ("/proc/%d/stat", pid);
  g_autofree char *stat = NULL;
  const char *end;

  if (!g_file_get_contents (path, &stat, NULL, NULL))
    return TRUE;
  end = strrchr (stat, ')');
  return end != NULL && (end[2] == 'Z' || end[2] == 'X');
}

static void
die_with_parent (gpointer user_data)
{
  prctl (PR_SET_PDEATHSIG, SIGKILL);
}

GArray *
ly_test_spawn_hub (GSubprocess **hub,
                   guint         n)
{
  g_autoptr(GSubprocessLauncher) launcher = NULL;
  g_autoptr(GError) error = NULL;
  g_autofree char *path = g_test_build_filename (G_TEST_BUILT, "ly-test-hub", NULL);
  g_autofree char *count = g_strdup_printf ("%u", n);
  g_autoptr(GDataInputStream) out = NULL;
  GArray *pids = g_array_new (FALSE, FALSE, sizeof (GPid));

  launcher = g_subprocess_launcher_new (G_SUBPROCESS_FLAGS_STDOUT_PIPE);
  /* a test that fails takes its hub (and the hub's children) with it */
  g_subprocess_launcher_set_child_setup (launcher, die_with_parent, NULL, NULL);
  *hub = g_subprocess_launcher_spawn (launcher, &error, path, count, NULL);
  g_assert_no_error (error);
  out = g_data_input_stream_new (g_subprocess_get_stdout_pipe (*hub));
  /* the pipe must stay open: the hub's later output would get SIGPIPE */
  g_filter_input_stream_set_close_base_stream (G_FILTER_INPUT_STREAM (out), FALSE);

  while (pids->len < n)
    {
      g_autofree char *line = g_data_input_stream_read_line (out, NULL, NULL, &error);
      GPid pid;

      g_assert_no_error (error);
      g_assert_nonnull (line);
      /* debug messages share stdout when G_MESSAGES_DEBUG is set */
      if (sscanf (line, "pid %d", &pid) != 1)
        continue;
      g_assert_cmpint (pid, >, 0);
      g_assert_false (ly_test_process_gone (pid));
      g_array_append_val (pids, pid);
    }

  return pids;
}

void
ly_test_assert_all_gone (GArray *pids)
{
  for (guint i = 0; i < pids->len; i++)
    {
      GPid pid = g_array_index (pids, GPid, i);
      gint64 deadline = g_get_monotonic_time () + 5 * G_USEC_PER_SEC;

      while (!ly_test_process_gone (pid) && g_get_monotonic_time () < deadline)
        g_usleep (10 * 1000);
      if (!ly_test_process_gone (pid))
        g_error ("child %d outlived its hub", pid);
    }
}

/* Values that check themselves: the key's index, a counter, a check of
 * both, and padding made of the counter.  A torn or misplaced value
 * fails the check. */
static guint64
value_check (guint   key,
             guint64 counter)
{
  return (counter * G_GUINT64_CONSTANT (0x9e3779b97f4a7c15)) ^
         (key * G_GUINT64_CONSTANT (0xc2b2ae3d27d4eb4f)) ^ 0x5bd1e995;
}

GVariant *
ly_test_checked_value (guint   key,
                       guint64 counter,
                       gsize   padding)
{
  g_autofree guint8 *bytes = g_malloc (padding + 1);

  for (gsize i = 0; i < padding; i++)
    bytes[i] = (guint8) (counter + i);
  return g_variant_new ("(utt@ay)", key, counter, value_check (key, counter),
                        g_variant_new_fixed_array (G_VARIANT_TYPE_BYTE, bytes, padding, 1));
}

gboolean
ly_test_value_is_checked (GVariant *value,
                          guint     key,
                          guint64  *counter)
{
  g_autoptr(GVariant) padding = NULL;
  const guint8 *bytes;
  guint32 value_key;
  guint64 check;
  gsize n;

  if (!g_variant_is_of_type (value, G_VARIANT_TYPE ("(uttay)")))
    return FALSE;
  g_variant_get (value, "(utt@ay)", &value_key, counter, &check, &padding);
  bytes = g_variant_get_fixed_array (padding, &n, 1);
  for (gsize i = 0; i < n; i++)
    if (bytes[i] != (guint8) (*counter + i))
      return FALSE;
  return value_key == key && check == value_check (key, *counter);
}

/* Adds a target running tests/ly-test-storage-child with the arguments
 * that follow @name (up to a NULL), reporting to @output. */
void
ly_test_add_storage_child (LyProcessManager *manager,
                           LyTestOutput     *output,
                           const char       *name,
                           ...)
{
  g_autoptr(GPtrArray) argv = g_ptr_array_new_with_free_func (g_free);
  const char *arg;
  va_list args;

  g_ptr_array_add (argv, g_test_build_filename (G_TEST_BUILT, "ly-test-storage-child", NULL));
  va_start (args, name);
  while ((arg = va_arg (args, const char *)) != NULL)
    g_ptr_array_add (argv, g_strdup (arg));
  va_end (args);
  g_ptr_array_add (argv, NULL);

  ly_test_add_target (manager, name, (const char * const *) argv->pdata, output);
}

/* Starts target @name, failing the test if it cannot. */
void
ly_test_start (LyProcessManager *manager,
               const char       *name)
{
  g_autoptr(GError) error = NULL;

  g_assert_true (ly_process_manager_start (manager, name, &error));
  g_assert_no_error (error);
}

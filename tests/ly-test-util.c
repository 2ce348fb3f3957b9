/* ly-test-util.c
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include <sys/socket.h>

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

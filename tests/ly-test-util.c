/* ly-test-util.c
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

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

char *
ly_test_peer_path (void)
{
  return g_test_build_filename (G_TEST_BUILT, "ly-test-peer", NULL);
}

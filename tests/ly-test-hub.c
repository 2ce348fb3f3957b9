/* ly-test-hub.c: a hub process for the tests of what happens when the
 * hub itself is signalled or killed.
 *
 * Usage: ly-test-hub N: starts N ly-test-child echo targets, prints one
 * line "pid PID" per child once all run, then runs until SIGINT or
 * SIGTERM, which stop every child; exits 0 after that.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include <stdio.h>
#include <stdlib.h>

#include <liteyuki-comm.h>

int
main (int   argc,
      char *argv[])
{
  g_autoptr(GMainLoop) loop = g_main_loop_new (NULL, FALSE);
  g_autoptr(LyProcessManager) manager = ly_process_manager_new ();
  g_autoptr(GError) error = NULL;
  g_autofree char *child = g_build_filename (g_getenv ("G_TEST_BUILDDIR"), "ly-test-child", NULL);
  guint n = argc > 1 ? (guint) atoi (argv[1]) : 1;

  for (guint i = 0; i < n; i++)
    {
      g_autofree char *name = g_strdup_printf ("child%u", i);
      const char *child_argv[] = { child, "echo", NULL };

      ly_process_manager_add_target (manager, name, child_argv, &error);
      g_assert_no_error (error);
    }

  /* before the pids are printed: the test signals right after */
  ly_process_manager_stop_on_unix_signals (manager, loop);
  ly_process_manager_start_all (manager, &error);
  g_assert_no_error (error);

  for (guint i = 0; i < n; i++)
    {
      g_autofree char *name = g_strdup_printf ("child%u", i);

      printf ("pid %d\n", ly_process_manager_get_pid (manager, name));
    }
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

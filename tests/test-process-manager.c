/* test-process-manager.c: the hub supervising real child processes
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <glib/gstdio.h>

#include "ly-test-util.h"

typedef struct
{
  LyProcessManager *manager;
  LyTestOutput     *output;
  GPtrArray        *events;        /* "started NAME", "exited NAME", ... */
  GArray           *start_times;   /* gint64, monotonic */
  guint             n_started;
  guint             n_exited;
  int               last_status;
  LyExitReason      last_reason;
  LyProcessState    state_at_exit;   /* the state handlers of process-exited see */
  GPid              last_pid;
  GThread          *signal_thread;  /* when set: where signals must come */
  guint             wrong_thread;   /* signals that came elsewhere */
} Fixture;

static void
check_thread (Fixture *f)
{
  if (f->signal_thread != NULL && g_thread_self () != f->signal_thread)
    g_atomic_int_inc (&f->wrong_thread);
}

static void
on_started (LyProcessManager *manager,
            const char       *name,
            int               pid,
            Fixture          *f)
{
  gint64 now = g_get_monotonic_time ();

  check_thread (f);
  g_ptr_array_add (f->events, g_strdup_printf ("started %s", name));
  g_array_append_val (f->start_times, now);
  f->n_started++;
  f->last_pid = pid;
}

static void
on_exited (LyProcessManager *manager,
           const char       *name,
           int               status,
           LyExitReason      reason,
           Fixture          *f)
{
  g_autoptr(GError) error = NULL;

  check_thread (f);
  g_ptr_array_add (f->events, g_strdup_printf ("exited %s", name));
  f->n_exited++;
  f->last_status = status;
  f->last_reason = reason;
  f->state_at_exit = ly_process_manager_get_state (manager, name, &error);
  g_assert_no_error (error);
}

static void
on_before_shutdown (LyProcessManager *manager,
                    const char       *name,
                    Fixture          *f)
{
  check_thread (f);
  g_ptr_array_add (f->events, g_strdup_printf ("before-shutdown %s", name));
}

static void
on_before_restart (LyProcessManager *manager,
                   const char       *name,
                   Fixture          *f)
{
  check_thread (f);
  g_ptr_array_add (f->events, g_strdup_printf ("before-restart %s", name));
}

static void
fixture_setup (Fixture       *f,
               gconstpointer  data)
{
  f->output = ly_test_output_new ();
  f->events = g_ptr_array_new_with_free_func (g_free);
  f->start_times = g_array_new (FALSE, FALSE, sizeof (gint64));
  f->manager = ly_process_manager_new ();
  g_signal_connect (f->manager, "process-started", G_CALLBACK (on_started), f);
  g_signal_connect (f->manager, "process-exited", G_CALLBACK (on_exited), f);
  g_signal_connect (f->manager, "before-shutdown", G_CALLBACK (on_before_shutdown), f);
  g_signal_connect (f->manager, "before-restart", G_CALLBACK (on_before_restart), f);
}

static void
fixture_teardown (Fixture       *f,
                  gconstpointer  data)
{
  g_autoptr(GError) error = NULL;

  ly_process_manager_stop_all (f->manager, NULL, &error);
  g_assert_no_error (error);
  g_clear_object (&f->manager);
  g_clear_pointer (&f->output, ly_test_output_free);
  g_ptr_array_unref (f->events);
  g_array_unref (f->start_times);
}

static char *
child_path (void)
{
  return g_test_build_filename (G_TEST_BUILT, "ly-test-child", NULL);
}

/* Adds target @name running ly-test-child with @mode (and @arg). */
static void
add_c_child (Fixture    *f,
             const char *name,
             const char *mode,
             const char *arg)
{
  g_autofree char *path = child_path ();
  const char *argv[] = { path, mode, arg, NULL };

  ly_test_add_target (f->manager, name, argv, f->output);
}

static void
add_script_child (Fixture    *f,
                  const char *name,
                  const char *interpreter_variable,
                  const char *flag,
                  const char *script)
{
  g_autofree char *path = g_test_build_filename (G_TEST_DIST, "helpers", script, NULL);
  const char *interpreter = g_getenv (interpreter_variable);
  const char *argv[] = { interpreter, flag != NULL ? flag : path, flag != NULL ? path : NULL, NULL };

  if (interpreter == NULL)
    {
      g_test_skip ("no introspection data in this build");
      return;
    }
  ly_test_add_target (f->manager, name, argv, f->output);
}

static guint
count_lines (Fixture    *f,
             const char *text)
{
  return ly_test_output_count (f->output, text);
}

static void
wait_for_lines (Fixture    *f,
                const char *text,
                guint       count,
                guint       timeout_sec)
{
  ly_test_output_wait (f->output, text, count, timeout_sec);
}

static guint
count_events (Fixture    *f,
              const char *event)
{
  guint n = 0;

  for (guint i = 0; i < f->events->len; i++)
    if (g_str_equal (g_ptr_array_index (f->events, i), event))
      n++;

  return n;
}

/* The reference document's example ---------------------------------------- */

typedef struct
{
  guint   rounds;
  guint   sent;
  guint   passive_replies;
  guint   active_replies;
  guint   wrong_replies;
  LyChannel *active;
  LyChannel *passive;
} Example;

static gboolean
example_send (gpointer user_data)
{
  Example *example = user_data;
  g_autoptr(GError) error = NULL;

  g_assert_true (ly_channel_send (example->passive, g_variant_new_string ("I am liteyuki main process passive"), &error));
  g_assert_true (ly_channel_send (example->active, g_variant_new_string ("I am liteyuki main process active"), &error));
  /* not a string: the child's filter drops it */
  g_assert_true (ly_channel_send (example->passive, g_variant_new_int32 (42), &error));
  g_assert_no_error (error);

  return ++example->sent < example->rounds ? G_SOURCE_CONTINUE : G_SOURCE_REMOVE;
}

static void
example_reply (LyChannel *channel,
               GVariant  *message,
               Example   *example)
{
  const char *text = g_variant_get_string (message, NULL);

  if (channel == example->passive && g_str_equal (text, "child passive got I am liteyuki main process passive"))
    example->passive_replies++;
  else if (channel == example->active && g_str_equal (text, "child active got I am liteyuki main process active"))
    example->active_replies++;
  else
    example->wrong_replies++;
}

static void
run_example (Fixture *f)
{
  g_autoptr(GError) error = NULL;
  Example example = { 5, 0, 0, 0, 0, NULL, NULL };

  /* the hub reaches the channels through the registry, as the original */
  example.active = ly_get_channel ("nonebot-active");
  example.passive = ly_get_channel ("nonebot-passive");
  g_assert_nonnull (example.active);
  g_assert_nonnull (example.passive);
  g_signal_connect (example.active, "received::s", G_CALLBACK (example_reply), &example);
  g_signal_connect (example.passive, "received::s", G_CALLBACK (example_reply), &example);

  g_assert_true (ly_process_manager_start (f->manager, "nonebot", &error));
  g_assert_no_error (error);
  g_assert_true (ly_process_manager_is_alive (f->manager, "nonebot"));
  g_assert_cmpint (ly_process_manager_get_pid (f->manager, "nonebot", NULL), ==, f->last_pid);

  g_timeout_add (50, example_send, &example);
  wait_for_lines (f, "Active receive: I am liteyuki main process active", 5, 30);
  wait_for_lines (f, "Passive receive: I am liteyuki main process passive", 5, 30);
  ly_test_run_until_count (&example.passive_replies, 5, 30);
  ly_test_run_until_count (&example.active_replies, 5, 30);

  g_assert_cmpuint (count_lines (f, "Passive receive:"), ==, 5);
  g_assert_cmpuint (count_lines (f, "Active receive:"), ==, 5);
  g_assert_cmpuint (count_lines (f, "hello from nonebot"), ==, 1);
  g_assert_cmpuint (example.wrong_replies, ==, 0);

  g_signal_handlers_disconnect_by_data (example.active, &example);
  g_signal_handlers_disconnect_by_data (example.passive, &example);
}

static void
test_example_c (Fixture       *f,
                gconstpointer  data)
{
  add_c_child (f, "nonebot", "example", NULL);
  run_example (f);
}

static void
test_example_python (Fixture       *f,
                     gconstpointer  data)
{
  add_script_child (f, "nonebot", "LY_TEST_PYTHON", NULL, "child.py");
  if (g_getenv ("LY_TEST_PYTHON") != NULL)
    run_example (f);
}

static void
test_example_gjs (Fixture       *f,
                  gconstpointer  data)
{
  add_script_child (f, "nonebot", "LY_TEST_GJS", "-m", "child.js");
  if (g_getenv ("LY_TEST_GJS") != NULL)
    run_example (f);
}

/* Stopping ---------------------------------------------------------------- */

static void
test_stop_polite (Fixture       *f,
                  gconstpointer  data)
{
  g_autoptr(GError) error = NULL;
  gint64 start;

  /* SIGTERM would come after 30 s: an exit well before is the polite
   * request's doing, however loaded the machine */
  ly_process_manager_set_stop_timeout (f->manager, 60.0);
  add_c_child (f, "polite", "example", NULL);
  g_assert_true (ly_process_manager_start (f->manager, "polite", &error));
  wait_for_lines (f, "hello from polite", 1, 10);

  start = g_get_monotonic_time ();
  g_assert_true (ly_process_manager_stop (f->manager, "polite", NULL, &error));
  g_assert_no_error (error);
  g_assert_cmpint (g_get_monotonic_time () - start, <, 20 * G_USEC_PER_SEC);
  /* the child runtime ends a polite stop with status 0 */
  g_assert_true (WIFEXITED (f->last_status) && WEXITSTATUS (f->last_status) == 0);
  g_assert_cmpint (f->last_reason, ==, LY_EXIT_REASON_STOPPED);
  g_assert_cmpint (f->state_at_exit, ==, LY_PROCESS_STATE_STOPPED);
  g_assert_false (ly_process_manager_is_alive (f->manager, "polite"));
  g_assert_cmpint (ly_process_manager_get_pid (f->manager, "polite", NULL), ==, 0);
  g_assert_cmpuint (count_events (f, "before-shutdown polite"), ==, 1);
  g_assert_cmpstr (g_ptr_array_index (f->events, f->events->len - 2), ==, "before-shutdown polite");
  g_assert_cmpstr (g_ptr_array_index (f->events, f->events->len - 1), ==, "exited polite");

  /* stopping a stopped target succeeds at once */
  g_assert_true (ly_process_manager_stop (f->manager, "polite", NULL, &error));
  g_assert_no_error (error);
}

static gpointer
run_loop (gpointer loop)
{
  g_main_loop_run (loop);
  return NULL;
}

/* A Python or GJS program may run GLib in a thread of its own and call
 * the synchronous API from another: the thread that runs the manager's
 * context completes the operation while the caller waits. */
static void
test_sync_from_another_thread (Fixture       *f,
                               gconstpointer  data)
{
  g_autoptr(GMainLoop) loop = g_main_loop_new (NULL, FALSE);
  g_autoptr(GError) error = NULL;
  GThread *dispatcher;
  GPid first_pid;

  add_c_child (f, "threaded", "example", NULL);
  g_assert_true (ly_process_manager_start (f->manager, "threaded", &error));
  wait_for_lines (f, "hello from threaded", 1, 10);
  first_pid = ly_process_manager_get_pid (f->manager, "threaded", NULL);

  dispatcher = g_thread_new ("dispatcher", run_loop, loop);
  while (!g_main_loop_is_running (loop))
    g_usleep (1000);
  /* from now on every signal comes in the thread that runs the context */
  f->signal_thread = dispatcher;

  g_assert_true (ly_process_manager_restart (f->manager, "threaded", NULL, &error));
  g_assert_no_error (error);
  g_assert_true (ly_process_manager_is_alive (f->manager, "threaded"));
  g_assert_cmpint (ly_process_manager_get_pid (f->manager, "threaded", NULL), !=, first_pid);
  g_assert_true (ly_process_manager_stop (f->manager, "threaded", NULL, &error));
  g_assert_no_error (error);
  g_assert_false (ly_process_manager_is_alive (f->manager, "threaded"));

  /* adding and starting, too, happen there */
  add_c_child (f, "threaded2", "example", NULL);
  g_assert_true (ly_process_manager_start (f->manager, "threaded2", &error));
  g_assert_no_error (error);
  g_assert_false (ly_process_manager_start (f->manager, "threaded2", &error));
  g_assert_error (error, LY_PROCESS_ERROR, LY_PROCESS_ERROR_RUNNING);
  g_clear_error (&error);
  g_assert_true (ly_process_manager_start_all (f->manager, &error));
  g_assert_no_error (error);
  g_assert_true (ly_process_manager_is_alive (f->manager, "threaded"));
  g_assert_true (ly_process_manager_stop_all (f->manager, NULL, &error));
  g_assert_no_error (error);

  g_main_loop_quit (loop);
  g_thread_join (dispatcher);
  f->signal_thread = NULL;
  g_assert_cmpuint (g_atomic_int_get (&f->wrong_thread), ==, 0);
  g_assert_cmpuint (count_events (f, "exited threaded"), ==, 3);
  g_assert_cmpuint (count_events (f, "started threaded"), ==, 3);
  g_assert_cmpuint (count_events (f, "before-restart threaded"), ==, 1);
  g_assert_cmpuint (count_events (f, "started threaded2"), ==, 1);
  g_assert_cmpuint (count_events (f, "exited threaded2"), ==, 1);
}

static void
test_stop_ignores_sigterm (Fixture       *f,
                           gconstpointer  data)
{
  g_autoptr(GError) error = NULL;
  gint64 elapsed;

  ly_process_manager_set_stop_timeout (f->manager, 1.0);
  add_c_child (f, "stubborn", "ignore-term", NULL);
  g_assert_true (ly_process_manager_start (f->manager, "stubborn", &error));
  wait_for_lines (f, "hello from stubborn", 1, 10);

  elapsed = g_get_monotonic_time ();
  g_assert_true (ly_process_manager_stop (f->manager, "stubborn", NULL, &error));
  elapsed = g_get_monotonic_time () - elapsed;
  g_assert_no_error (error);

  g_assert_cmpuint (count_lines (f, "stop ignored"), ==, 1);
  g_assert_true (WIFSIGNALED (f->last_status) && WTERMSIG (f->last_status) == SIGKILL);
  /* killed, but by the stop it was asked for */
  g_assert_cmpint (f->last_reason, ==, LY_EXIT_REASON_STOPPED);
  g_assert_cmpint (elapsed, >=, 950 * 1000);
  /* well before the polite request could be blamed: it was ignored */
  g_assert_cmpint (elapsed, <, 20 * G_USEC_PER_SEC);
}

static void
test_request_stop (Fixture       *f,
                   gconstpointer  data)
{
  g_autoptr(GError) error = NULL;

  add_c_child (f, "quitter", "request-stop", NULL);
  /* a stop the child asks for is not a failure: no restart */
  ly_process_manager_set_restart_policy (f->manager, "quitter", LY_RESTART_ALWAYS, &error);
  g_assert_true (ly_process_manager_start (f->manager, "quitter", &error));
  ly_test_run_until_count (&f->n_exited, 1, 10);
  g_assert_cmpuint (count_events (f, "before-shutdown quitter"), ==, 1);

  g_assert_cmpint (f->last_reason, ==, LY_EXIT_REASON_STOPPED);
  g_assert_cmpint (f->state_at_exit, ==, LY_PROCESS_STATE_STOPPED);
  ly_test_wait_msec (300);
  g_assert_cmpuint (f->n_started, ==, 1);
  g_assert_cmpint (ly_process_manager_get_state (f->manager, "quitter", NULL), ==, LY_PROCESS_STATE_STOPPED);
}

static void
test_request_restart (Fixture       *f,
                      gconstpointer  data)
{
  g_autoptr(GError) error = NULL;
  GPid first;

  add_c_child (f, "phoenix", "request-restart", NULL);
  g_assert_true (ly_process_manager_start (f->manager, "phoenix", &error));
  first = f->last_pid;
  ly_test_run_until_count (&f->n_started, 2, 10);
  wait_for_lines (f, "hello from phoenix", 2, 10);

  g_assert_cmpint (f->last_pid, !=, first);
  /* the handlers of the exit knew that a restart follows */
  g_assert_cmpint (f->last_reason, ==, LY_EXIT_REASON_STOPPED);
  g_assert_cmpint (f->state_at_exit, ==, LY_PROCESS_STATE_BACKOFF);
  g_assert_cmpint (ly_process_manager_get_pid (f->manager, "phoenix", NULL), ==, f->last_pid);
  g_assert_cmpuint (count_events (f, "before-restart phoenix"), ==, 1);
  g_assert_cmpuint (count_events (f, "before-shutdown phoenix"), ==, 1);
  g_assert_cmpuint (ly_process_manager_get_restart_count (f->manager, "phoenix", NULL), ==, 1);
  g_assert_true (ly_process_manager_is_alive (f->manager, "phoenix"));
}

/* Crashes and the restart policy ------------------------------------------ */

static void
test_crash_restarted (Fixture       *f,
                      gconstpointer  data)
{
  g_autoptr(GError) error = NULL;
  GPid first;

  g_object_set (f->manager, "restart-delay", 0.05, NULL);
  add_c_child (f, "crasher", "abort", NULL);
  ly_process_manager_set_restart_policy (f->manager, "crasher", LY_RESTART_ON_FAILURE, &error);
  g_assert_true (ly_process_manager_start (f->manager, "crasher", &error));
  first = f->last_pid;

  ly_test_run_until_count (&f->n_exited, 1, 10);
  g_assert_true (WIFSIGNALED (f->last_status));
  g_assert_cmpint (WTERMSIG (f->last_status), ==, SIGABRT);
  g_assert_cmpint (f->last_reason, ==, LY_EXIT_REASON_KILLED);
  g_assert_cmpint (f->state_at_exit, ==, LY_PROCESS_STATE_BACKOFF);

  ly_test_run_until_count (&f->n_started, 2, 10);
  g_assert_cmpint (f->last_pid, !=, first);
  g_assert_cmpuint (count_events (f, "before-restart crasher"), ==, 1);
  g_assert_cmpuint (count_events (f, "before-shutdown crasher"), ==, 0);
}

static void
test_policy_never_and_on_failure (Fixture       *f,
                                  gconstpointer  data)
{
  g_autoptr(GError) error = NULL;

  g_object_set (f->manager, "restart-delay", 0.02, NULL);
  add_c_child (f, "three", "exit", "3");
  add_c_child (f, "clean", "exit", "0");
  ly_process_manager_set_restart_policy (f->manager, "clean", LY_RESTART_ON_FAILURE, &error);

  /* never (the default): reported, not restarted */
  g_assert_true (ly_process_manager_start (f->manager, "three", &error));
  ly_test_run_until_count (&f->n_exited, 1, 10);
  g_assert_true (WIFEXITED (f->last_status));
  g_assert_cmpint (WEXITSTATUS (f->last_status), ==, 3);

  /* on-failure: a clean exit is not a failure */
  g_assert_true (ly_process_manager_start (f->manager, "clean", &error));
  ly_test_run_until_count (&f->n_exited, 2, 10);
  g_assert_true (WIFEXITED (f->last_status) && WEXITSTATUS (f->last_status) == 0);

  ly_test_wait_msec (300);
  g_assert_cmpuint (f->n_started, ==, 2);
  g_assert_cmpint (ly_process_manager_get_state (f->manager, "three", NULL), ==, LY_PROCESS_STATE_STOPPED);
  g_assert_cmpint (ly_process_manager_get_state (f->manager, "clean", NULL), ==, LY_PROCESS_STATE_STOPPED);
}

static void
test_backoff_and_crash_loop (Fixture       *f,
                             gconstpointer  data)
{
  g_autoptr(GError) error = NULL;

  g_object_set (f->manager, "restart-delay", 0.05, "crash-loop-limit", 4, NULL);
  add_c_child (f, "looper", "exit", "1");
  ly_process_manager_set_restart_policy (f->manager, "looper", LY_RESTART_ALWAYS, &error);
  g_assert_true (ly_process_manager_start (f->manager, "looper", &error));

  g_test_expect_message ("Liteyuki", G_LOG_LEVEL_WARNING, "*“looper” failed more than 4 times within 60 s*");
  ly_test_run_until_count (&f->n_exited, 5, 20);
  ly_test_wait_msec (200);
  g_test_assert_expected_messages ();

  /* 4 restarts tolerated within the interval, the 5th exit gives up */
  g_assert_cmpuint (f->n_started, ==, 5);
  g_assert_cmpint (ly_process_manager_get_state (f->manager, "looper", NULL), ==, LY_PROCESS_STATE_FAILED);
  g_assert_cmpuint (ly_process_manager_get_restart_count (f->manager, "looper", NULL), ==, 4);

  /* the delays double: 50, 100, 200, 400 ms, plus the process's life
   * (no upper bound: a loaded machine stretches any time) */
  for (guint i = 1; i < f->start_times->len; i++)
    {
      gint64 gap = g_array_index (f->start_times, gint64, i) - g_array_index (f->start_times, gint64, i - 1);
      gint64 delay = 50 * 1000 * (1 << (i - 1));

      g_test_message ("restart %u after %" G_GINT64_FORMAT " µs", i, gap);
      g_assert_cmpint (gap, >=, delay);
    }

  /* a failed target starts again on demand */
  g_assert_true (ly_process_manager_start (f->manager, "looper", &error));
  g_assert_no_error (error);
}

/* Channels across restarts ------------------------------------------------ */

static void
collect_echo (LyChannel *channel,
              GVariant  *message,
              GPtrArray *got)
{
  g_ptr_array_add (got, g_variant_dup_string (message, NULL));
}

static void
test_channels_survive_restarts (Fixture       *f,
                                gconstpointer  data)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(GPtrArray) got = g_ptr_array_new_with_free_func (g_free);
  LyChannel *active;

  add_c_child (f, "echoer", "echo", NULL);
  active = ly_get_channel ("echoer-active");
  g_signal_connect (active, "received::s", G_CALLBACK (collect_echo), got);

  /* sent while no process runs: goes to the first one */
  g_assert_true (ly_channel_send (active, g_variant_new_string ("before start"), &error));
  g_assert_true (ly_process_manager_start (f->manager, "echoer", &error));
  ly_test_run_until_count (&got->len, 1, 10);
  g_assert_cmpstr (g_ptr_array_index (got, 0), ==, "before start");
  g_assert_cmpint (ly_channel_get_peer_pid (active), ==, f->last_pid);

  /* the same object and handler serve the next instance */
  g_assert_true (ly_process_manager_restart (f->manager, "echoer", NULL, &error));
  g_assert_no_error (error);
  g_assert_true (ly_channel_send (active, g_variant_new_string ("after restart"), &error));
  ly_test_run_until_count (&got->len, 2, 10);
  g_assert_cmpstr (g_ptr_array_index (got, 1), ==, "after restart");
  g_assert_false (ly_channel_is_closed (active));
  g_assert_true (ly_get_channel ("echoer-active") == active);

  /* and while stopped, sends wait for the next start */
  g_assert_true (ly_process_manager_stop (f->manager, "echoer", NULL, &error));
  g_assert_true (ly_channel_send (active, g_variant_new_string ("while stopped"), &error));
  g_assert_true (ly_process_manager_start (f->manager, "echoer", &error));
  ly_test_run_until_count (&got->len, 3, 10);
  g_assert_cmpstr (g_ptr_array_index (got, 2), ==, "while stopped");
}

static void
test_child_registry (Fixture       *f,
                     gconstpointer  data)
{
  g_autoptr(GError) error = NULL;
  g_auto(GStrv) names = NULL;

  add_c_child (f, "reg", "registry", NULL);
  names = ly_list_channels ();
  g_assert_true (g_strv_contains ((const char * const *) names, "reg-active"));
  g_assert_true (g_strv_contains ((const char * const *) names, "reg-passive"));
  g_assert_true (ly_is_main_process ());
  g_assert_null (ly_get_process_name ());
  g_assert_null (ly_active_channel ());

  g_assert_true (ly_process_manager_start (f->manager, "reg", &error));
  wait_for_lines (f, "registry reg-active,reg-passive active=same passive=same", 1, 10);
}

static void
test_grandchild_environment (Fixture       *f,
                             gconstpointer  data)
{
  g_autoptr(GError) error = NULL;

  add_c_child (f, "parent", "grandchild-env", NULL);
  g_assert_true (ly_process_manager_start (f->manager, "parent", &error));
  wait_for_lines (f, "grandchild sees", 1, 10);
  g_assert_cmpuint (count_lines (f, "grandchild sees none"), ==, 1);
}

/* Only the three sockets (and stdin, stdout, stderr) reach a child, even
 * though the hub holds many other fds. */
static void
test_child_fds (Fixture       *f,
                gconstpointer  data)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(LyChannel) a = NULL, b = NULL;
  int extra = open ("/dev/null", O_RDONLY);   /* without O_CLOEXEC */

  g_assert_cmpint (extra, >=, 0);
  ly_channel_new_pair ("unrelated", &a, &b, &error);
  add_c_child (f, "fds", "fds", NULL);
  g_assert_true (ly_process_manager_start (f->manager, "fds", &error));
  wait_for_lines (f, "fds ", 1, 10);
  if (count_lines (f, "fds 0,1,2,3,4,5,6") != 1)
    {
      g_autofree char *reported = NULL;

      g_file_get_contents (f->output->path, &reported, NULL, NULL);
      g_error ("the child was started with other fds than its own three and stdio: %s", reported);
    }
  close (extra);
}

/* Errors ------------------------------------------------------------------ */

static void
test_errors (Fixture       *f,
             gconstpointer  data)
{
  g_autoptr(GError) error = NULL;
  const char *argv[] = { "true", NULL };
  const char *missing[] = { "/nonexistent/program", NULL };
  const char *empty[] = { NULL };
  const char *bad_names[] = { "", "has space", "slash/name", "ünïcode",
                              "a-name-that-is-much-too-long-for-a-target-because-it-has-more-than-64" };

  for (gsize i = 0; i < G_N_ELEMENTS (bad_names); i++)
    {
      g_assert_false (ly_process_manager_add_target (f->manager, bad_names[i], argv, &error));
      g_assert_error (error, LY_PROCESS_ERROR, LY_PROCESS_ERROR_INVALID_NAME);
      g_clear_error (&error);
    }

  g_assert_false (ly_process_manager_add_target (f->manager, "empty", empty, &error));
  g_assert_error (error, LY_PROCESS_ERROR, LY_PROCESS_ERROR_INVALID_ARGUMENT);
  g_clear_error (&error);

  g_assert_true (ly_process_manager_add_target (f->manager, "ok", argv, &error));
  g_assert_false (ly_process_manager_add_target (f->manager, "ok", argv, &error));
  g_assert_error (error, LY_PROCESS_ERROR, LY_PROCESS_ERROR_EXISTS);
  g_clear_error (&error);

  g_assert_false (ly_process_manager_start (f->manager, "unknown", &error));
  g_assert_error (error, LY_PROCESS_ERROR, LY_PROCESS_ERROR_UNKNOWN_TARGET);
  g_clear_error (&error);
  g_assert_false (ly_process_manager_stop (f->manager, "unknown", NULL, &error));
  g_assert_error (error, LY_PROCESS_ERROR, LY_PROCESS_ERROR_UNKNOWN_TARGET);
  g_clear_error (&error);
  g_assert_false (ly_process_manager_is_alive (f->manager, "unknown"));
  g_assert_cmpint (ly_process_manager_get_pid (f->manager, "unknown", &error), ==, 0);
  g_assert_error (error, LY_PROCESS_ERROR, LY_PROCESS_ERROR_UNKNOWN_TARGET);
  g_clear_error (&error);
  g_assert_cmpint (ly_process_manager_get_state (f->manager, "unknown", &error), ==, LY_PROCESS_STATE_STOPPED);
  g_assert_error (error, LY_PROCESS_ERROR, LY_PROCESS_ERROR_UNKNOWN_TARGET);
  g_clear_error (&error);
  g_assert_cmpuint (ly_process_manager_get_restart_count (f->manager, "unknown", &error), ==, 0);
  g_assert_error (error, LY_PROCESS_ERROR, LY_PROCESS_ERROR_UNKNOWN_TARGET);
  g_clear_error (&error);

  g_assert_true (ly_process_manager_add_target (f->manager, "missing", missing, &error));
  g_assert_false (ly_process_manager_start (f->manager, "missing", &error));
  g_assert_error (error, LY_PROCESS_ERROR, LY_PROCESS_ERROR_SPAWN_FAILED);
  g_test_message ("%s", error->message);
  g_clear_error (&error);
  g_assert_false (ly_process_manager_is_alive (f->manager, "missing"));
  g_assert_cmpint (ly_process_manager_get_state (f->manager, "missing", NULL), ==, LY_PROCESS_STATE_FAILED);

  {
    const char *bad_environment[][2] = { { "1FOO=x", NULL }, { "=x", NULL }, { "FOO", NULL },
                                         { "FO O=x", NULL }, { "FOO-BAR=x", NULL } };
    const char *good_environment[] = { "_FOO1=x=y", "B=", NULL };

    for (guint i = 0; i < G_N_ELEMENTS (bad_environment); i++)
      {
        g_assert_false (ly_process_manager_set_environment (f->manager, "ok", bad_environment[i], &error));
        g_assert_error (error, LY_PROCESS_ERROR, LY_PROCESS_ERROR_INVALID_ARGUMENT);
        g_clear_error (&error);
      }
    g_assert_true (ly_process_manager_set_environment (f->manager, "ok", good_environment, &error));
    g_assert_no_error (error);
  }

  {
    const double bad_timeouts[] = { -2, -0.5, NAN, INFINITY, 3601 };

    for (guint i = 0; i < G_N_ELEMENTS (bad_timeouts); i++)
      {
        g_assert_false (ly_process_manager_set_target_stop_timeout (f->manager, "ok", bad_timeouts[i], &error));
        g_assert_error (error, LY_PROCESS_ERROR, LY_PROCESS_ERROR_INVALID_ARGUMENT);
        g_clear_error (&error);
      }
    g_assert_true (ly_process_manager_set_target_stop_timeout (f->manager, "ok", -1, &error));
    g_assert_true (ly_process_manager_set_target_stop_timeout (f->manager, "ok", 0, &error));
    g_assert_no_error (error);
  }

  add_c_child (f, "twice", "echo", NULL);
  g_assert_true (ly_process_manager_start (f->manager, "twice", &error));
  g_assert_false (ly_process_manager_start (f->manager, "twice", &error));
  g_assert_error (error, LY_PROCESS_ERROR, LY_PROCESS_ERROR_RUNNING);
  g_clear_error (&error);

  g_assert_false (ly_request_stop (&error));
  g_assert_error (error, LY_PROCESS_ERROR, LY_PROCESS_ERROR_NOT_A_CHILD);
  g_clear_error (&error);
  g_assert_false (ly_request_restart (&error));
  g_assert_error (error, LY_PROCESS_ERROR, LY_PROCESS_ERROR_NOT_A_CHILD);
  g_clear_error (&error);

  {
    g_auto(GStrv) targets = ly_process_manager_list_targets (f->manager);
    const char *expected[] = { "ok", "missing", "twice", NULL };

    g_assert_cmpstrv (targets, expected);
  }
}

/* A target that cannot be spawned is reported and left to its restart
 * policy; the others start (the daemon used to stop them all). */
static void
test_start_all_past_a_failure (Fixture       *f,
                               gconstpointer  data)
{
  g_autoptr(GError) error = NULL;
  const char *missing[] = { "/nonexistent/python3.99", "nothing.py", NULL };

  /* the warnings that say so are expected here */
  GLogLevelFlags fatal = g_log_set_always_fatal (G_LOG_FATAL_MASK | G_LOG_LEVEL_CRITICAL);

  g_object_set (f->manager, "restart-delay", 0.02, "crash-loop-limit", 2, NULL);
  ly_test_add_target (f->manager, "missing", missing, f->output);
  add_c_child (f, "fine", "example", NULL);
  ly_process_manager_set_restart_policy (f->manager, "missing", LY_RESTART_ON_FAILURE, &error);

  g_assert_false (ly_process_manager_start_all (f->manager, &error));
  g_assert_error (error, LY_PROCESS_ERROR, LY_PROCESS_ERROR_SPAWN_FAILED);
  g_assert_nonnull (strstr (error->message, "missing"));
  g_clear_error (&error);

  wait_for_lines (f, "hello from fine", 1, 10);
  g_assert_true (ly_process_manager_is_alive (f->manager, "fine"));
  g_assert_cmpint (ly_process_manager_get_state (f->manager, "missing", NULL), ==, LY_PROCESS_STATE_BACKOFF);

  /* retried, then given up by the crash-loop limit */
  for (guint i = 0; i < 500 && ly_process_manager_get_state (f->manager, "missing", NULL) != LY_PROCESS_STATE_FAILED; i++)
    ly_test_wait_msec (10);
  g_assert_cmpint (ly_process_manager_get_state (f->manager, "missing", NULL), ==, LY_PROCESS_STATE_FAILED);
  g_assert_true (ly_process_manager_is_alive (f->manager, "fine"));
  g_log_set_always_fatal (fatal);
}

/* Resources --------------------------------------------------------------- */

static guint
count_zombie_children (void)
{
  g_autoptr(GDir) dir = g_dir_open ("/proc", 0, NULL);
  const char *entry;
  guint n = 0;

  while ((entry = g_dir_read_name (dir)) != NULL)
    {
      g_autofree char *path = g_build_filename ("/proc", entry, "stat", NULL);
      g_autofree char *stat = NULL;
      const char *end;
      char state;
      int ppid;

      if (!g_ascii_isdigit (entry[0]) || !g_file_get_contents (path, &stat, NULL, NULL))
        continue;
      /* "pid (comm) S ppid ...": comm may hold spaces and parentheses */
      end = strrchr (stat, ')');
      if (end != NULL && sscanf (end + 1, " %c %d", &state, &ppid) == 2 &&
          ppid == getpid () && state == 'Z')
        n++;
    }

  return n;
}

static void
test_start_stop_cycles (Fixture       *f,
                        gconstpointer  data)
{
  g_autoptr(GError) error = NULL;
  guint cycles = ly_test_scaled (200);
  guint fds_before, zombies_before;

  add_c_child (f, "cycler", "echo", NULL);

  /* one cycle first, so that GLib's lazily made resources exist */
  g_assert_true (ly_process_manager_start (f->manager, "cycler", &error));
  g_assert_true (ly_process_manager_stop (f->manager, "cycler", NULL, &error));
  fds_before = ly_test_count_fds ();
  zombies_before = count_zombie_children ();

  for (guint i = 0; i < cycles; i++)
    {
      g_assert_true (ly_process_manager_start (f->manager, "cycler", &error));
      g_assert_no_error (error);
      g_assert_true (ly_process_manager_stop (f->manager, "cycler", NULL, &error));
      g_assert_no_error (error);
    }

  g_assert_cmpuint (f->n_started, ==, cycles + 1);
  g_assert_cmpuint (f->n_exited, ==, cycles + 1);
  g_assert_cmpuint (ly_test_count_fds (), ==, fds_before);
  g_assert_cmpuint (count_zombie_children (), ==, zombies_before);
  g_assert_cmpuint (count_zombie_children (), ==, 0);
}

#define N_MANY 32

typedef struct
{
  guint next[N_MANY];
  guint total;
} ManyEchoes;

static void
many_echo (LyChannel  *channel,
           GVariant   *message,
           ManyEchoes *echoes)
{
  guint child, seq;

  g_variant_get (message, "(uu)", &child, &seq);
  g_assert_cmpuint (child, <, N_MANY);
  g_assert_cmpuint (seq, ==, echoes->next[child]);
  echoes->next[child]++;
  echoes->total++;
}

static void
test_many_children (Fixture       *f,
                    gconstpointer  data)
{
  g_autoptr(GError) error = NULL;
  guint per_child = ly_test_scaled (10000);
  ManyEchoes echoes = { { 0, }, 0 };
  guint threads_with_one;

  for (guint i = 0; i < N_MANY; i++)
    {
      g_autofree char *name = g_strdup_printf ("echo%02u", i);
      g_autofree char *channel_name = g_strdup_printf ("echo%02u-active", i);

      add_c_child (f, name, "echo", NULL);
      g_signal_connect (ly_get_channel (channel_name), "received::(uu)", G_CALLBACK (many_echo), &echoes);
    }

  g_assert_true (ly_process_manager_start (f->manager, "echo00", &error));
  wait_for_lines (f, "hello from echo00", 1, 10);
  threads_with_one = (guint) ly_test_proc_status ("Threads");

  g_assert_true (ly_process_manager_start_all (f->manager, &error));
  g_assert_no_error (error);
  wait_for_lines (f, "hello from echo", N_MANY, 30);
  g_assert_cmpuint ((guint) ly_test_proc_status ("Threads"), ==, threads_with_one);
  g_test_message ("threads with 1 child: %u, with %u: %u", threads_with_one, N_MANY, (guint) ly_test_proc_status ("Threads"));

  for (guint seq = 0; seq < per_child; seq++)
    for (guint i = 0; i < N_MANY; i++)
      {
        g_autofree char *channel_name = g_strdup_printf ("echo%02u-active", i);

        ly_test_send_waiting (ly_get_channel (channel_name), g_variant_new ("(uu)", i, seq));
      }

  ly_test_run_until_count (&echoes.total, per_child * N_MANY, 120);
  for (guint i = 0; i < N_MANY; i++)
    g_assert_cmpuint (echoes.next[i], ==, per_child);
  g_assert_cmpuint ((guint) ly_test_proc_status ("Threads"), ==, threads_with_one);
}

/* The hub itself killed or signalled -------------------------------------- */

static void
test_hub_killed (void)
{
  g_autoptr(GSubprocess) hub = NULL;
  g_autoptr(GArray) pids = ly_test_spawn_hub (&hub, 3);

  g_subprocess_force_exit (hub);
  g_subprocess_wait (hub, NULL, NULL);
  ly_test_assert_all_gone (pids);
}

/* The pids children's shells reported as "grandchild PID" lines, all
 * of them so far. */
static GArray *
read_grandchildren (LyTestOutput *output,
                    guint         n)
{
  g_autofree char *text = NULL;
  g_auto(GStrv) lines = NULL;
  GArray *pids = g_array_new (FALSE, FALSE, sizeof (GPid));

  ly_test_output_wait (output, "grandchild ", n, 10);
  g_assert_true (g_file_get_contents (output->path, &text, NULL, NULL));
  lines = g_strsplit (text, "\n", -1);
  for (guint i = 0; lines[i] != NULL; i++)
    {
      GPid pid;

      if (sscanf (lines[i], "grandchild %d", &pid) == 1)
        g_array_append_val (pids, pid);
    }
  g_assert_cmpuint (pids->len, ==, n);

  return pids;
}

/* What a child started in the background ends with it: on a stop, on
 * its own exit, and when the hub is killed (4 orphans lived on before). */
#define GRANDCHILD_SHELL "sleep 777 & echo grandchild $! >>\"$LY_TEST_OUTPUT\"; "

static void
test_stop_reaches_grandchildren (Fixture       *f,
                                 gconstpointer  data)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(GArray) pids = NULL;
  const char *waiting[] = { "/bin/sh", "-c", GRANDCHILD_SHELL "wait; echo", NULL };
  const char *leaving[] = { "/bin/sh", "-c", GRANDCHILD_SHELL "exit 0", NULL };

  ly_process_manager_set_stop_timeout (f->manager, 1.0);
  ly_test_add_target (f->manager, "waiting", waiting, f->output);
  g_assert_true (ly_process_manager_start (f->manager, "waiting", &error));
  g_clear_pointer (&pids, g_array_unref);
  pids = read_grandchildren (f->output, 1);
  g_assert_false (ly_test_process_gone (g_array_index (pids, GPid, 0)));
  g_assert_true (ly_process_manager_stop (f->manager, "waiting", NULL, &error));
  g_assert_no_error (error);
  ly_test_assert_all_gone (pids);

  ly_test_add_target (f->manager, "leaving", leaving, f->output);
  ly_process_manager_set_restart_policy (f->manager, "leaving", LY_RESTART_NEVER, &error);
  g_assert_true (ly_process_manager_start (f->manager, "leaving", &error));
  g_clear_pointer (&pids, g_array_unref);
  pids = read_grandchildren (f->output, 2);
  ly_test_run_until_count (&f->n_exited, 2, 10);
  ly_test_assert_all_gone (pids);
}

static void
test_hub_killed_grandchildren (void)
{
  g_autoptr(LyTestOutput) output = ly_test_output_new ();
  g_autoptr(GSubprocess) hub = NULL;
  g_autoptr(GArray) pids = NULL;
  g_autoptr(GArray) grandchildren = NULL;

  g_setenv ("LY_TEST_OUTPUT", output->path, TRUE);
  g_setenv ("LY_TEST_HUB_CHILD", "/bin/sh -c '" GRANDCHILD_SHELL "wait'", TRUE);
  pids = ly_test_spawn_hub (&hub, 4);
  grandchildren = read_grandchildren (output, 4);
  g_unsetenv ("LY_TEST_HUB_CHILD");
  for (guint i = 0; i < grandchildren->len; i++)
    g_assert_false (ly_test_process_gone (g_array_index (grandchildren, GPid, i)));

  g_subprocess_force_exit (hub);
  g_subprocess_wait (hub, NULL, NULL);
  ly_test_assert_all_gone (pids);
  ly_test_assert_all_gone (grandchildren);
  g_unsetenv ("LY_TEST_OUTPUT");
}

static void
test_hub_sigterm (void)
{
  g_autoptr(GSubprocess) hub = NULL;
  g_autoptr(GArray) pids = ly_test_spawn_hub (&hub, 3);
  g_autoptr(GError) error = NULL;

  g_subprocess_send_signal (hub, SIGTERM);
  g_assert_true (g_subprocess_wait (hub, NULL, &error));
  g_test_message ("hub status %d", g_subprocess_get_status (hub));
  g_assert_true (g_subprocess_get_if_exited (hub));
  g_assert_cmpint (g_subprocess_get_exit_status (hub), ==, 0);
  ly_test_assert_all_gone (pids);
}

int
main (int   argc,
      char *argv[])
{
  g_test_init (&argc, &argv, NULL);
  signal (SIGPIPE, SIG_IGN);

#define MANAGER_TEST(path, func) \
  g_test_add ("/process-manager/" path, Fixture, NULL, fixture_setup, func, fixture_teardown)

  MANAGER_TEST ("example/c", test_example_c);
  MANAGER_TEST ("example/python", test_example_python);
  MANAGER_TEST ("example/gjs", test_example_gjs);
  MANAGER_TEST ("stop/polite", test_stop_polite);
  MANAGER_TEST ("stop/ignores-sigterm", test_stop_ignores_sigterm);
  MANAGER_TEST ("sync-from-another-thread", test_sync_from_another_thread);
  MANAGER_TEST ("request-stop", test_request_stop);
  MANAGER_TEST ("request-restart", test_request_restart);
  MANAGER_TEST ("crash-restarted", test_crash_restarted);
  MANAGER_TEST ("policy-never-and-on-failure", test_policy_never_and_on_failure);
  MANAGER_TEST ("backoff-and-crash-loop", test_backoff_and_crash_loop);
  MANAGER_TEST ("channels-survive-restarts", test_channels_survive_restarts);
  MANAGER_TEST ("child-registry", test_child_registry);
  MANAGER_TEST ("grandchild-environment", test_grandchild_environment);
  MANAGER_TEST ("child-fds", test_child_fds);
  MANAGER_TEST ("errors", test_errors);
  MANAGER_TEST ("start-all-past-a-failure", test_start_all_past_a_failure);
  MANAGER_TEST ("stop-reaches-grandchildren", test_stop_reaches_grandchildren);
  MANAGER_TEST ("start-stop-cycles", test_start_stop_cycles);
  MANAGER_TEST ("many-children", test_many_children);
  g_test_add_func ("/process-manager/hub-killed", test_hub_killed);
  g_test_add_func ("/process-manager/hub-killed-grandchildren", test_hub_killed_grandchildren);
  g_test_add_func ("/process-manager/hub-sigterm", test_hub_sigterm);

  return g_test_run ();
}

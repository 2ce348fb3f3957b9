/* ly-test-util.h: helpers shared by the C tests
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#include <liteyuki-comm.h>

G_BEGIN_DECLS

/* Iterates the thread-default context until *flag is set, failing the
 * test after @timeout_sec seconds. */
void     ly_test_run_until      (const gboolean *flag,
                                 guint           timeout_sec);
/* Same, until *counter reaches @target. */
void     ly_test_run_until_count (const guint   *counter,
                                  guint          target,
                                  guint          timeout_sec);
guint    ly_test_count_fds      (void);
/* A peer-to-peer D-Bus connection over a socketpair: the server end
 * (this thread's context) and the client end, both authenticated. */
void     ly_test_dbus_pair_open (GDBusConnection **server,
                                 GDBusConnection **client);
/* A number in /proc/self/status, such as "Threads" or "VmRSS" (KiB). */
gsize    ly_test_proc_status    (const char    *field);
/* Scales a count down under valgrind (LY_TEST_QUICK is set by the
 * valgrind test setup), where the full count takes minutes. */
guint    ly_test_scaled         (guint          count);
/* Spawns tests/ly-test-peer with the given arguments and a channel to it
 * as fd 3; returns the child and sets *channel. */
GSubprocess *ly_test_spawn_peer (const char  *channel_name,
                                 LyChannel  **channel,
                                 const char  *first_arg,
                                 ...) G_GNUC_NULL_TERMINATED;
/* Sends, and when the queue is FULL, flushes (blocking) and tries again. */
void     ly_test_send_waiting   (LyChannel     *channel,
                                 GVariant      *message);

/* Runs the thread-default context for @msec milliseconds. */
void     ly_test_wait_msec      (guint          msec);

/* A file that child processes append report lines to (LY_TEST_OUTPUT). */
typedef struct
{
  char *dir;
  char *path;
} LyTestOutput;

LyTestOutput *ly_test_output_new   (void);
void          ly_test_output_free  (LyTestOutput *output);
guint         ly_test_output_count (LyTestOutput *output,
                                    const char   *text);
void          ly_test_output_wait  (LyTestOutput *output,
                                    const char   *text,
                                    guint         count,
                                    guint         timeout_sec);
/* Adds a target whose processes report to @output. */
void          ly_test_add_target   (LyProcessManager   *manager,
                                    const char         *name,
                                    const char * const *argv,
                                    LyTestOutput       *output);

/* Values that check themselves (key index, counter, check, padding),
 * for readers that must never see a torn one. */
GVariant *ly_test_checked_value    (guint     key,
                                    guint64   counter,
                                    gsize     padding);
gboolean  ly_test_value_is_checked (GVariant *value,
                                    guint     key,
                                    guint64  *counter);

/* Hub processes (tests/ly-test-hub) */
gboolean ly_test_process_gone    (GPid          pid);
/* Starts ly-test-hub with @n children; returns their pids. */
GArray  *ly_test_spawn_hub       (GSubprocess **hub,
                                  guint         n);
/* Fails the test unless every pid is gone within 5 s. */
void     ly_test_assert_all_gone (GArray       *pids);

/* Adds a target running ly-test-storage-child with the arguments after
 * @name, up to a NULL. */
void          ly_test_add_storage_child (LyProcessManager *manager,
                                         LyTestOutput     *output,
                                         const char       *name,
                                         ...) G_GNUC_NULL_TERMINATED;
void          ly_test_start        (LyProcessManager   *manager,
                                    const char         *name);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (LyTestOutput, ly_test_output_free)

G_END_DECLS

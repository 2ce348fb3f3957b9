/* ly-process-manager.h: the hub's supervisor of named child processes
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#if !defined(LITEYUKI_COMM_INSIDE) && !defined(LITEYUKI_COMM_COMPILATION)
# error "Only <liteyuki-comm.h> can be included directly."
#endif

#include <gio/gio.h>

#include "ly-errors.h"
#include "ly-version-macros.h"

G_BEGIN_DECLS

/**
 * LyProcessState:
 * @LY_PROCESS_STATE_STOPPED: not running
 * @LY_PROCESS_STATE_RUNNING: running
 * @LY_PROCESS_STATE_STOPPING: asked to stop, not gone yet
 * @LY_PROCESS_STATE_BACKOFF: exited, and about to be restarted: by its
 *   restart policy after a delay, or at once when a restart was asked
 * @LY_PROCESS_STATE_FAILED: restarted too often in too short a time
 *   ([property@Ly.ProcessManager:crash-loop-limit]): given up until started again
 *
 * The state of a target.
 *
 * Since: 1.0
 */
typedef enum
{
  LY_PROCESS_STATE_STOPPED,
  LY_PROCESS_STATE_RUNNING,
  LY_PROCESS_STATE_STOPPING,
  LY_PROCESS_STATE_BACKOFF,
  LY_PROCESS_STATE_FAILED,
} LyProcessState;

/**
 * LyExitReason:
 * @LY_EXIT_REASON_STOPPED: it was asked to stop (by a stop, a restart, or
 *   the child's own request), and ended, however it ended
 * @LY_EXIT_REASON_EXITED: it exited by itself; the wait status says with
 *   which status
 * @LY_EXIT_REASON_KILLED: a signal the hub did not send killed it (a crash,
 *   the kernel's OOM killer, a `kill` by hand); the wait status says which
 *
 * Why a target's process ended, as [signal@Ly.ProcessManager::process-exited]
 * says.  Whether it is restarted is the target's state at that moment:
 * %LY_PROCESS_STATE_BACKOFF when a restart is pending.
 *
 * Since: 1.0
 */
typedef enum
{
  LY_EXIT_REASON_STOPPED,
  LY_EXIT_REASON_EXITED,
  LY_EXIT_REASON_KILLED,
} LyExitReason;

/**
 * LyRestartPolicy:
 * @LY_RESTART_NEVER: an exited process stays stopped
 * @LY_RESTART_ON_FAILURE: restart a process that exited with a non-zero
 *   status or was killed by a signal
 * @LY_RESTART_ALWAYS: restart a process however it exited
 *
 * What happens when a process exits on its own (not by a stop).
 *
 * Since: 1.0
 */
typedef enum
{
  LY_RESTART_NEVER,
  LY_RESTART_ON_FAILURE,
  LY_RESTART_ALWAYS,
} LyRestartPolicy;

#define LY_TYPE_PROCESS_MANAGER (ly_process_manager_get_type ())

LY_AVAILABLE_IN_ALL
G_DECLARE_FINAL_TYPE (LyProcessManager, ly_process_manager, LY, PROCESS_MANAGER, GObject)


LY_AVAILABLE_IN_ALL
LyProcessManager *ly_process_manager_new                (void);
LY_AVAILABLE_IN_ALL
gboolean          ly_process_manager_add_target         (LyProcessManager     *self,
                                                         const char           *name,
                                                         const char * const   *argv,
                                                         GError              **error);
LY_AVAILABLE_IN_ALL
gboolean          ly_process_manager_set_restart_policy (LyProcessManager     *self,
                                                         const char           *name,
                                                         LyRestartPolicy       policy,
                                                         GError              **error);
LY_AVAILABLE_IN_ALL
gboolean          ly_process_manager_set_target_stop_timeout (LyProcessManager *self,
                                                         const char           *name,
                                                         double                seconds,
                                                         GError              **error);
LY_AVAILABLE_IN_ALL
gboolean          ly_process_manager_set_environment    (LyProcessManager     *self,
                                                         const char           *name,
                                                         const char * const   *environment,
                                                         GError              **error);
LY_AVAILABLE_IN_ALL
gboolean          ly_process_manager_set_working_directory (LyProcessManager  *self,
                                                         const char           *name,
                                                         const char           *directory,
                                                         GError              **error);
LY_AVAILABLE_IN_ALL
char            **ly_process_manager_list_targets       (LyProcessManager     *self);

LY_AVAILABLE_IN_ALL
gboolean          ly_process_manager_start              (LyProcessManager     *self,
                                                         const char           *name,
                                                         GError              **error);
LY_AVAILABLE_IN_ALL
gboolean          ly_process_manager_start_all          (LyProcessManager     *self,
                                                         GError              **error);

LY_AVAILABLE_IN_ALL
gboolean          ly_process_manager_stop               (LyProcessManager     *self,
                                                         const char           *name,
                                                         GCancellable         *cancellable,
                                                         GError              **error);
LY_AVAILABLE_IN_ALL
void              ly_process_manager_stop_async         (LyProcessManager     *self,
                                                         const char           *name,
                                                         GCancellable         *cancellable,
                                                         GAsyncReadyCallback   callback,
                                                         gpointer              user_data);
LY_AVAILABLE_IN_ALL
gboolean          ly_process_manager_stop_finish        (LyProcessManager     *self,
                                                         GAsyncResult         *result,
                                                         GError              **error);

LY_AVAILABLE_IN_ALL
gboolean          ly_process_manager_restart            (LyProcessManager     *self,
                                                         const char           *name,
                                                         GCancellable         *cancellable,
                                                         GError              **error);
LY_AVAILABLE_IN_ALL
void              ly_process_manager_restart_async      (LyProcessManager     *self,
                                                         const char           *name,
                                                         GCancellable         *cancellable,
                                                         GAsyncReadyCallback   callback,
                                                         gpointer              user_data);
LY_AVAILABLE_IN_ALL
gboolean          ly_process_manager_restart_finish     (LyProcessManager     *self,
                                                         GAsyncResult         *result,
                                                         GError              **error);

LY_AVAILABLE_IN_ALL
gboolean          ly_process_manager_stop_all           (LyProcessManager     *self,
                                                         GCancellable         *cancellable,
                                                         GError              **error);
LY_AVAILABLE_IN_ALL
void              ly_process_manager_stop_all_async     (LyProcessManager     *self,
                                                         GCancellable         *cancellable,
                                                         GAsyncReadyCallback   callback,
                                                         gpointer              user_data);
LY_AVAILABLE_IN_ALL
gboolean          ly_process_manager_stop_all_finish    (LyProcessManager     *self,
                                                         GAsyncResult         *result,
                                                         GError              **error);

LY_AVAILABLE_IN_ALL
gboolean          ly_process_manager_set_storage_access (LyProcessManager   *self,
                                                         const char         *name,
                                                         const char * const *readable,
                                                         const char * const *writable,
                                                         GError            **error);
LY_AVAILABLE_IN_ALL
gboolean          ly_process_manager_set_storage_quota  (LyProcessManager   *self,
                                                         const char         *name,
                                                         guint               max_keys,
                                                         guint64             max_bytes,
                                                         guint               max_subscriptions,
                                                         GError            **error);

LY_AVAILABLE_IN_ALL
gboolean          ly_process_manager_is_alive           (LyProcessManager     *self,
                                                         const char           *name);
LY_AVAILABLE_IN_ALL
GPid              ly_process_manager_get_pid            (LyProcessManager     *self,
                                                         const char           *name,
                                                         GError              **error);
LY_AVAILABLE_IN_ALL
LyProcessState    ly_process_manager_get_state          (LyProcessManager     *self,
                                                         const char           *name,
                                                         GError              **error);
LY_AVAILABLE_IN_ALL
guint             ly_process_manager_get_restart_count  (LyProcessManager     *self,
                                                         const char           *name,
                                                         GError              **error);

LY_AVAILABLE_IN_ALL
double            ly_process_manager_get_stop_timeout   (LyProcessManager     *self);
LY_AVAILABLE_IN_ALL
void              ly_process_manager_set_stop_timeout   (LyProcessManager     *self,
                                                         double                seconds);

LY_AVAILABLE_IN_ALL
void              ly_process_manager_stop_on_unix_signals (LyProcessManager   *self,
                                                           GMainLoop          *loop);

G_END_DECLS

/* ly-process-manager.c
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "config.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <glib-unix.h>
#include <glib/gstdio.h>

#include "ly-channel-private.h"
#include "ly-context-private.h"
#include "ly-control-private.h"
#include "ly-enums.h"
#include "ly-i18n-private.h"
#include "ly-process-groups-private.h"
#include "ly-process-manager.h"
#include "ly-registry.h"
#include "ly-runtime-private.h"
#include "ly-storage-policy-private.h"
#include "ly-storage-private.h"

/**
 * LyProcessManager:
 *
 * The hub's supervisor of named child processes.
 *
 * A target is a name and an argv vector: a C program, `python3 plugin.py`,
 * `gjs -m worker.js`.  Adding a target creates the hub's ends of its two
 * channels, `NAME-active` and `NAME-passive`, and puts them in the
 * registry ([func@Ly.get_channel]).  Starting it spawns the process with
 * three sockets: the two channels and a control connection, which the
 * child runtime finds by itself ([func@Ly.active_channel],
 * [func@Ly.passive_channel], [func@Ly.request_stop]).  No other file
 * descriptor of the hub reaches the child, its standard input is
 * `/dev/null` and it shares the hub's standard output and error, and the child is killed if the
 * hub dies (`PR_SET_PDEATHSIG`; spawn from a thread that lives as long as
 * the hub, the main thread usually).
 *
 * The hub's channel objects outlive the processes: handlers stay
 * connected across restarts, messages that arrived stay receivable, and
 * a message sent while the process is not running waits in the channel's
 * queue (within [property@Ly.Channel:max-queued-bytes]) and goes to the next
 * instance.  What was queued for, or written to, an instance that dies
 * is lost with it.
 *
 * Stopping a process asks it politely over the control connection, sends
 * `SIGTERM` after half of [property@Ly.ProcessManager:stop-timeout] and `SIGKILL`
 * after all of it.  A process that exits on its own is restarted
 * according to its [enum@Ly.RestartPolicy], after a delay that doubles
 * with each quick failure ([property@Ly.ProcessManager:restart-delay] up to
 * [property@Ly.ProcessManager:restart-delay-max]), until it fails more than
 * [property@Ly.ProcessManager:crash-loop-limit] times within
 * [property@Ly.ProcessManager:crash-loop-interval]: then it is given up
 * (%LY_PROCESS_STATE_FAILED).
 *
 * The manager belongs to the thread-default main context of the thread
 * that created it: every change of its targets happens there, and its
 * signals and completions are emitted there.  A call from another
 * thread is handed to that context, and a synchronous one waits for it
 * (when nobody runs the context, the calling thread runs it meanwhile).
 * The getters may be called from any thread.  No thread is created per
 * child: the hub's thread count does not grow with the number of
 * children.
 *
 * The topic page [Processes](processes.html) says more, with examples, and
 * [Overview](overview.html) shows how the pieces fit.
 *
 * Since: 1.0
 */

#define MAX_NAME_LENGTH 64

/* How many requests of a child one dispatch handles at most (fewer
 * when they take more than about 20 µs together): the
 * children get the hub's context in turns, one flooding child no more
 * than the others. */
#define CONTROL_FRAME_BUDGET 16

/* A process that ran this long before failing starts the back-off over. */
#define STABLE_RUN_USEC (10 * G_USEC_PER_SEC)

typedef struct _Target Target;

struct _Target
{
  LyProcessManager *manager;
  char             *name;
  GStrv             argv;
  GStrv             environment;
  char             *working_directory;
  LyRestartPolicy   policy;
  double            stop_timeout;     /* < 0: the manager's */
  LyStoragePolicy  *storage_policy;   /* NULL: everything shared */

  /* written in the manager's context with its @state_mutex held, read
   * there without it and elsewhere with it (the getters) */
  LyProcessState    state;
  GPid              pid;              /* 0 when no process runs */
  guint             restarts;

  /* the manager's context's alone */
  GSource          *child_watch;      /* reaps @pid: until then the pid cannot be reused */
  LyChannel        *active;
  LyChannel        *passive;
  LyControl        *control;

  guint             quick_failures;
  gint64            started_at;
  GQueue            failure_times;    /* of gint64*, within crash-loop-interval */

  GSource          *term_source;
  GSource          *kill_source;
  GSource          *backoff_source;

  GQueue            stop_tasks;       /* GTasks waiting for the process to exit */
  GQueue            restart_tasks;    /* GTasks waiting for the next start */
  gboolean          restart_after_stop;
};

struct _LyProcessManager
{
  GObject       parent_instance;

  GMainContext *context;
  LyStorage    *storage;              /* serves the children's storage requests */

  /* @state_mutex protects @targets and @order (which change only in
   * @context) and each target's state, pid and restarts, for the
   * getters of other threads */
  GMutex        state_mutex;
  GHashTable   *targets;              /* name → Target* */
  GPtrArray    *order;                /* Target*, in the order they were added */

  double        stop_timeout;
  double        restart_delay;
  double        restart_delay_max;
  guint         crash_loop_limit;
  double        crash_loop_interval;

  LyProcessGroups *groups;           /* the children's, once one started */

  GSource      *signal_sources[2];
  GMainLoop    *signal_loop;

  gint64        busy_poll_usec;       /* of the control connections */
};

enum {
  PROP_0,
  PROP_STORAGE,
  PROP_STOP_TIMEOUT,
  PROP_RESTART_DELAY,
  PROP_RESTART_DELAY_MAX,
  PROP_CRASH_LOOP_LIMIT,
  PROP_CRASH_LOOP_INTERVAL,
  N_PROPS
};

enum {
  STATE_CHANGED,
  PROCESS_STARTED,
  PROCESS_EXITED,
  BEFORE_SHUTDOWN,
  BEFORE_RESTART,
  N_SIGNALS
};

static GParamSpec *properties[N_PROPS];
static guint signals[N_SIGNALS];

G_DEFINE_FINAL_TYPE (LyProcessManager, ly_process_manager, G_TYPE_OBJECT)

static void start_after_backoff (Target *target);
static void target_spawn_failed (Target       *target,
                                 const GError *error);

static void
target_set_state (Target         *target,
                  LyProcessState  state)
{
  if (target->state == state)
    return;

  g_mutex_lock (&target->manager->state_mutex);
  target->state = state;
  g_mutex_unlock (&target->manager->state_mutex);
  g_signal_emit (target->manager, signals[STATE_CHANGED], 0, target->name, state);
}

/* Targets ----------------------------------------------------------------- */

static gboolean
name_is_valid (const char *name)
{
  gsize length = strlen (name);

  if (length == 0 || length > MAX_NAME_LENGTH)
    return FALSE;

  for (const char *p = name; *p != '\0'; p++)
    if (!g_ascii_isalnum (*p) && *p != '_' && *p != '-' && *p != '.')
      return FALSE;

  return TRUE;
}

/* NAME=VALUE, with a NAME a shell accepts: [A-Za-z_][A-Za-z0-9_]* */
static gboolean
environment_entry_is_valid (const char *entry)
{
  const char *p = entry;

  if (!g_ascii_isalpha (*p) && *p != '_')
    return FALSE;
  while (g_ascii_isalnum (*p) || *p == '_')
    p++;

  return *p == '=';
}

static void
clear_source (GSource **source)
{
  if (*source != NULL)
    {
      g_source_destroy (*source);
      g_clear_pointer (source, g_source_unref);
    }
}

static void
target_clear_timers (Target *target)
{
  clear_source (&target->term_source);
  clear_source (&target->kill_source);
  clear_source (&target->backoff_source);
}

/* A one-shot timer in the manager's context. */
static GSource *
timer_new (Target      *target,
           guint        msec,
           GSourceFunc  func,
           const char  *name)
{
  GSource *source = g_timeout_source_new (msec);

  g_source_set_callback (source, func, target, NULL);
  g_source_set_static_name (source, name);
  g_source_attach (source, target->manager->context);

  return source;
}

/* The process is gone: so is its control connection, and what it
 * served. */
static void
target_drop_control (Target *target)
{
  if (target->control == NULL)
    return;

  ly_control_remove_handlers (target->control, target);
  ly_storage_remove_peer (target->manager->storage, target->control);
  ly_channel_close (ly_control_get_channel (target->control));
  g_clear_object (&target->control);
}

static void
target_set_pid (Target *target,
                GPid    pid)
{
  g_mutex_lock (&target->manager->state_mutex);
  target->pid = pid;
  g_mutex_unlock (&target->manager->state_mutex);
}

static void
target_free (Target *target)
{
  target_clear_timers (target);
  clear_source (&target->child_watch);
  if (target->pid > 0)
    {
      /* no child outlives its manager: kill it, and reap it ourselves
       * since its watch is gone */
      ly_process_groups_signal (target->pid, SIGKILL);
      kill (target->pid, SIGKILL);
      waitpid (target->pid, NULL, 0);
      ly_process_groups_remove (target->manager->groups, target->pid);
      target_set_pid (target, 0);
    }
  target_drop_control (target);
  if (ly_get_channel (ly_channel_get_name (target->active)) == target->active)
    ly_set_channel (ly_channel_get_name (target->active), NULL);
  if (ly_get_channel (ly_channel_get_name (target->passive)) == target->passive)
    ly_set_channel (ly_channel_get_name (target->passive), NULL);
  g_clear_object (&target->active);
  g_clear_object (&target->passive);
  g_queue_clear_full (&target->failure_times, g_free);
  g_clear_pointer (&target->storage_policy, ly_storage_policy_free);
  g_strfreev (target->argv);
  g_strfreev (target->environment);
  g_free (target->working_directory);
  g_free (target->name);
  g_free (target);
}

static Target *
lookup_target (LyProcessManager  *self,
               const char        *name,
               GError           **error)
{
  Target *target = g_hash_table_lookup (self->targets, name);

  if (target == NULL)
    g_set_error (error, LY_PROCESS_ERROR, LY_PROCESS_ERROR_UNKNOWN_TARGET,
                 _("There is no target named “%s”"), name);

  return target;
}

static gboolean
is_running (Target *target)
{
  return target->state == LY_PROCESS_STATE_RUNNING || target->state == LY_PROCESS_STATE_STOPPING;
}

/* Completes every task of @queue, with @error (not taken) or success. */
static void
complete_tasks (GQueue       *queue,
                const GError *error)
{
  GTask *task;

  while ((task = g_queue_pop_head (queue)) != NULL)
    {
      if (error != NULL)
        g_task_return_error (task, g_error_copy (error));
      else
        g_task_return_boolean (task, TRUE);
      g_object_unref (task);
    }
}

/* Spawning ---------------------------------------------------------------- */

/* In the child, between fork and exec: a process group of its own (a
 * stop reaches what it starts), and die with the hub. */
static void
child_setup (gpointer user_data)
{
  pid_t hub = GPOINTER_TO_INT (user_data);

  ly_process_groups_enter_own ();
  prctl (PR_SET_PDEATHSIG, SIGKILL);
  /* the hub may have died before prctl(): then nobody would kill us */
  if (getppid () != hub)
    _exit (127);
}

typedef struct
{
  int hub[3];
  int child[3];
} SocketPairs;

static void
socket_pairs_close (SocketPairs *pairs)
{
  for (guint i = 0; i < 3; i++)
    {
      if (pairs->hub[i] >= 0)
        g_close (pairs->hub[i], NULL);
      if (pairs->child[i] >= 0)
        g_close (pairs->child[i], NULL);
    }
}

static gboolean
socket_pairs_open (SocketPairs  *pairs,
                   GError      **error)
{
  for (guint i = 0; i < 3; i++)
    pairs->hub[i] = pairs->child[i] = -1;

  for (guint i = 0; i < 3; i++)
    {
      int fds[2];

      /* close-on-exec: only what take_fd() maps reaches the child */
      if (socketpair (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) < 0)
        {
          int saved_errno = errno;

          socket_pairs_close (pairs);
          g_set_error (error, LY_PROCESS_ERROR, LY_PROCESS_ERROR_SPAWN_FAILED,
                       _("Could not create a socket pair: %s"), g_strerror (saved_errno));
          return FALSE;
        }
      pairs->hub[i] = fds[0];
      pairs->child[i] = fds[1];
    }

  return TRUE;
}

/* The hub's environment, the target's variables, and the runtime's. */
static GStrv
child_environment (Target *target,
                   int     storage_fd)
{
  GStrv envp = g_get_environ ();

  for (guint i = 0; target->environment != NULL && target->environment[i] != NULL; i++)
    {
      g_auto(GStrv) pair = g_strsplit (target->environment[i], "=", 2);

      envp = g_environ_setenv (envp, pair[0], pair[1], TRUE);
    }

  envp = g_environ_setenv (envp, LY_ENV_PROCESS_NAME, target->name, TRUE);
  envp = g_environ_setenv (envp, LY_ENV_CONTROL_FD, G_STRINGIFY (LY_CHILD_CONTROL_FD), TRUE);
  envp = g_environ_setenv (envp, LY_ENV_ACTIVE_FD, G_STRINGIFY (LY_CHILD_ACTIVE_FD), TRUE);
  envp = g_environ_setenv (envp, LY_ENV_PASSIVE_FD, G_STRINGIFY (LY_CHILD_PASSIVE_FD), TRUE);
  if (storage_fd >= 0)
    envp = g_environ_setenv (envp, LY_ENV_STORAGE_FD, G_STRINGIFY (LY_CHILD_STORAGE_FD), TRUE);

  return envp;
}

/* The storage's shared table, for a child allowed to read every key
 * (the table holds them all), or -1. */
static int
target_storage_fd (Target *target)
{
  if (target->storage_policy != NULL && target->storage_policy->readable != NULL)
    return -1;
  return ly_storage_get_shared_fd (target->manager->storage);
}

/* Spawns without reaping: the child watch reaps, so the pid stays the
 * child's (a zombie at worst) for as long as the hub may signal it. */
static gboolean
spawn_process (Target       *target,
               SocketPairs  *pairs,
               GPid         *pid,
               GError      **error)
{
  int storage_fd = target_storage_fd (target);
  g_auto(GStrv) envp = child_environment (target, storage_fd);
  const int source_fds[4] = { pairs->child[0], pairs->child[1], pairs->child[2], storage_fd };
  const int target_fds[4] = { LY_CHILD_CONTROL_FD, LY_CHILD_ACTIVE_FD, LY_CHILD_PASSIVE_FD,
                              LY_CHILD_STORAGE_FD };

  /* Only the mapped fds reach the child: GLib closes every other one. */
  return g_spawn_async_with_pipes_and_fds (target->working_directory,
                                           (const char * const *) target->argv,
                                           (const char * const *) envp,
                                           G_SPAWN_SEARCH_PATH | G_SPAWN_DO_NOT_REAP_CHILD,
                                           child_setup, GINT_TO_POINTER (getpid ()),
                                           -1, -1, -1,
                                           source_fds, target_fds, storage_fd >= 0 ? 4 : 3,
                                           pid, NULL, NULL, NULL,
                                           error);
}

static void on_request_stop    (LyControl *control,
                                guint32    serial,
                                GVariant  *args,
                                gpointer   user_data);
static void on_request_restart (LyControl *control,
                                guint32    serial,
                                GVariant  *args,
                                gpointer   user_data);
static void on_process_exited  (GPid       pid,
                                int        wait_status,
                                gpointer   user_data);

static gboolean
target_spawn (Target  *target,
              GError **error)
{
  LyProcessManager *self = target->manager;
  g_autoptr(GError) spawn_error = NULL;
  g_autoptr(LyChannel) control_channel = NULL;
  g_autofree char *control_name = NULL;
  SocketPairs pairs;
  gboolean spawned;
  GPid pid = 0;

  if (!socket_pairs_open (&pairs, error))
    return FALSE;

  if (self->groups == NULL)
    self->groups = ly_process_groups_new ();

  spawned = spawn_process (target, &pairs, &pid, &spawn_error);
  /* the child has its ends now (or never will) */
  for (guint i = 0; i < 3; i++)
    {
      g_close (pairs.child[i], NULL);
      pairs.child[i] = -1;
    }

  if (!spawned)
    {
      socket_pairs_close (&pairs);
      g_set_error (error, LY_PROCESS_ERROR, LY_PROCESS_ERROR_SPAWN_FAILED,
                   _("Could not start “%s”: %s"), target->name, spawn_error->message);
      return FALSE;
    }

  ly_process_groups_add (self->groups, pid);
  target->started_at = g_get_monotonic_time ();
  target_set_pid (target, pid);
  target_set_state (target, LY_PROCESS_STATE_RUNNING);

  /* the control channel runs in the manager's context; the manager
   * serves the lifecycle requests, the storage the rest */
  control_name = g_strconcat (target->name, "-control", NULL);
  control_channel = ly_channel_new_for_socket (control_name, pairs.hub[0], self->context);
  ly_channel_set_busy_poll (control_channel, self->busy_poll_usec);
  ly_channel_set_frame_budget (control_channel, CONTROL_FRAME_BUDGET);
  target->control = ly_control_new (control_channel);
  ly_control_add_handler (target->control, "RequestStop", "()", on_request_stop, target, NULL);
  ly_control_add_handler (target->control, "RequestRestart", "()", on_request_restart, target, NULL);
  ly_storage_add_peer (self->storage, target->control, target->storage_policy);
  ly_channel_attach_socket (target->active, pairs.hub[1]);
  ly_channel_attach_socket (target->passive, pairs.hub[2]);

  target->child_watch = g_child_watch_source_new (target->pid);
  g_source_set_callback (target->child_watch, (GSourceFunc) (void (*) (void)) on_process_exited, target, NULL);
  g_source_set_static_name (target->child_watch, "[liteyuki-comm] child watch");
  g_source_attach (target->child_watch, self->context);

  g_debug ("Started “%s” as process %d", target->name, target->pid);
  g_signal_emit (self, signals[PROCESS_STARTED], 0, target->name, target->pid);

  return TRUE;
}

/* Starting after an exit, by a restart or the restart policy. */
static void
target_respawn (Target *target)
{
  g_autoptr(GError) error = NULL;

  if (target_spawn (target, &error))
    {
      g_mutex_lock (&target->manager->state_mutex);
      target->restarts++;
      g_mutex_unlock (&target->manager->state_mutex);
      complete_tasks (&target->restart_tasks, NULL);
      return;
    }

  complete_tasks (&target->restart_tasks, error);
  target_spawn_failed (target, error);
}

/* Exit -------------------------------------------------------------------- */

/* Whether the restart policy restarts a process that exited with @status,
 * and when: the delay doubles with every failure in a row. */
static gboolean
policy_wants_restart (Target *target,
                      int     status)
{
  gboolean failed = !(WIFEXITED (status) && WEXITSTATUS (status) == 0);

  switch (target->policy)
    {
    case LY_RESTART_ALWAYS:
      return TRUE;
    case LY_RESTART_ON_FAILURE:
      return failed;
    case LY_RESTART_NEVER:
    default:
      return FALSE;
    }
}

static gboolean
crash_loop_reached (Target *target)
{
  LyProcessManager *self = target->manager;
  gint64 now = g_get_monotonic_time ();
  gint64 window = (gint64) (self->crash_loop_interval * G_USEC_PER_SEC);
  gint64 *oldest;

  g_queue_push_tail (&target->failure_times, g_memdup2 (&now, sizeof now));
  while ((oldest = g_queue_peek_head (&target->failure_times)) != NULL && now - *oldest > window)
    g_free (g_queue_pop_head (&target->failure_times));

  return g_queue_get_length (&target->failure_times) > self->crash_loop_limit;
}

static gboolean
backoff_done (gpointer user_data)
{
  Target *target = user_data;

  g_clear_pointer (&target->backoff_source, g_source_unref);
  start_after_backoff (target);
  return G_SOURCE_REMOVE;
}

static void
schedule_policy_restart (Target *target)
{
  LyProcessManager *self = target->manager;
  double delay;

  if (g_get_monotonic_time () - target->started_at > STABLE_RUN_USEC)
    target->quick_failures = 0;

  if (crash_loop_reached (target))
    {
      g_warning (_("“%s” failed more than %u times within %.0f s: not restarting it"),
                 target->name, self->crash_loop_limit, self->crash_loop_interval);
      target_set_state (target, LY_PROCESS_STATE_FAILED);
      return;
    }

  delay = MIN (self->restart_delay * (1u << MIN (target->quick_failures, 20u)), self->restart_delay_max);
  target->quick_failures++;
  target_set_state (target, LY_PROCESS_STATE_BACKOFF);
  g_debug ("Restarting “%s” in %.3f s", target->name, delay);
  target->backoff_source = timer_new (target, (guint) (delay * 1000), backoff_done,
                                      "[liteyuki-comm] restart back-off");
}

static void
start_after_backoff (Target *target)
{
  g_signal_emit (target->manager, signals[BEFORE_RESTART], 0, target->name);
  target_respawn (target);
}

/* A process that could not be started counts as one that failed at
 * once (as a shell's status 127): its restart policy tries again, with
 * the usual back-off, until the crash-loop limit gives it up. */
static void
target_spawn_failed (Target       *target,
                     const GError *error)
{
  g_warning ("%s", error->message);
  /* a failure at once: the back-off grows as for a quick crash */
  target->started_at = g_get_monotonic_time ();
  if (policy_wants_restart (target, 127 << 8))
    schedule_policy_restart (target);
  else
    target_set_state (target, LY_PROCESS_STATE_FAILED);
}

static LyExitReason
exit_reason (gboolean requested,
             int      status)
{
  if (requested)
    return LY_EXIT_REASON_STOPPED;
  if (WIFSIGNALED (status))
    return LY_EXIT_REASON_KILLED;
  return LY_EXIT_REASON_EXITED;
}

/* A requested restart, once the old process is gone: unless a handler
 * of process-exited stopped the target meanwhile. */
static void
finish_requested_restart (Target *target)
{
  g_autoptr(GError) error = NULL;

  target->restart_after_stop = FALSE;
  if (target->state == LY_PROCESS_STATE_BACKOFF)
    {
      target_respawn (target);
      return;
    }

  g_set_error (&error, LY_PROCESS_ERROR, LY_PROCESS_ERROR_STOPPED,
               _("“%s” was stopped before it restarted"), target->name);
  complete_tasks (&target->restart_tasks, error);
}

static void
on_process_exited (GPid     pid,
                   int      status,
                   gpointer user_data)
{
  Target *target = user_data;
  g_autoptr(LyProcessManager) self = g_object_ref (target->manager);
  gboolean requested = target->state == LY_PROCESS_STATE_STOPPING;
  gboolean restart_requested = requested && target->restart_after_stop;

  g_spawn_close_pid (pid);
  /* what it started ends with it */
  ly_process_groups_signal (pid, SIGKILL);
  ly_process_groups_remove (self->groups, pid);
  target_clear_timers (target);
  g_clear_pointer (&target->child_watch, g_source_unref);
  target_drop_control (target);
  ly_channel_detach (target->active);
  ly_channel_detach (target->passive);
  target_set_pid (target, 0);

  /* the state the handlers see says whether it comes back */
  if (restart_requested)
    target_set_state (target, LY_PROCESS_STATE_BACKOFF);
  else if (!requested && policy_wants_restart (target, status))
    schedule_policy_restart (target);
  else
    target_set_state (target, LY_PROCESS_STATE_STOPPED);

  g_debug ("“%s” exited with wait status %d", target->name, status);
  g_signal_emit (self, signals[PROCESS_EXITED], 0, target->name, status,
                 exit_reason (requested, status));

  if (requested)
    {
      complete_tasks (&target->stop_tasks, NULL);
      if (restart_requested)
        finish_requested_restart (target);
    }
}

/* Stopping ---------------------------------------------------------------- */

static gboolean
send_sigkill (gpointer user_data)
{
  Target *target = user_data;

  g_clear_pointer (&target->kill_source, g_source_unref);
  if (target->pid > 0)
    {
      g_debug ("“%s” did not stop in time: SIGKILL", target->name);
      ly_process_groups_signal (target->pid, SIGKILL);
      kill (target->pid, SIGKILL);
    }
  return G_SOURCE_REMOVE;
}

static gboolean
send_sigterm (gpointer user_data)
{
  Target *target = user_data;

  g_clear_pointer (&target->term_source, g_source_unref);
  if (target->pid > 0)
    {
      g_debug ("“%s” did not stop when asked: SIGTERM", target->name);
      ly_process_groups_signal (target->pid, SIGTERM);
      kill (target->pid, SIGTERM);
    }
  return G_SOURCE_REMOVE;
}

/* Polite request now, SIGTERM at half the timeout, SIGKILL at its end. */
static void
target_begin_stop (Target *target)
{
  LyProcessManager *self = target->manager;
  double seconds = target->stop_timeout >= 0 ? target->stop_timeout : self->stop_timeout;
  guint timeout_ms = (guint) (seconds * 1000);

  if (target->state == LY_PROCESS_STATE_STOPPING)
    return;

  target_set_state (target, LY_PROCESS_STATE_STOPPING);
  g_signal_emit (self, signals[BEFORE_SHUTDOWN], 0, target->name);

  /* a process gone during the handlers needs no more */
  if (target->pid == 0)
    return;

  if (target->control != NULL)
    ly_control_notify (target->control, "Stop", NULL, NULL);

  target->term_source = timer_new (target, timeout_ms / 2, send_sigterm, "[liteyuki-comm] SIGTERM");
  target->kill_source = timer_new (target, MAX (timeout_ms, 1), send_sigkill, "[liteyuki-comm] SIGKILL");
}

/* Cancels a pending policy restart; TRUE if the target is now stopped. */
static gboolean
target_settle (Target *target)
{
  if (target->state == LY_PROCESS_STATE_BACKOFF)
    {
      clear_source (&target->backoff_source);
      target_set_state (target, LY_PROCESS_STATE_STOPPED);
    }

  return !is_running (target);
}

static void
target_stop_async (LyProcessManager *self,
                   Target           *target,
                   GTask            *task)
{
  if (target_settle (target))
    {
      g_task_return_boolean (task, TRUE);
      return;
    }

  g_queue_push_tail (&target->stop_tasks, g_object_ref (task));
  target_begin_stop (target);
}

/* Control requests of the child ------------------------------------------- */

static void
on_request_stop (LyControl *control,
                 guint32    serial,
                 GVariant  *args,
                 gpointer   user_data)
{
  Target *target = user_data;

  if (serial != 0)
    ly_control_reply (control, serial, NULL);
  target_begin_stop (target);
}

static void
on_request_restart (LyControl *control,
                    guint32    serial,
                    GVariant  *args,
                    gpointer   user_data)
{
  Target *target = user_data;

  if (serial != 0)
    ly_control_reply (control, serial, NULL);
  ly_process_manager_restart_async (target->manager, target->name, NULL, NULL, NULL);
}

/* Async plumbing ---------------------------------------------------------- */

static gboolean
finish_boolean (LyProcessManager  *self,
                GAsyncResult      *result,
                gpointer           source_tag,
                GError           **error)
{
  g_return_val_if_fail (LY_IS_PROCESS_MANAGER (self), FALSE);
  g_return_val_if_fail (g_task_is_valid (result, self), FALSE);
  g_return_val_if_fail (g_task_get_source_tag (G_TASK (result)) == source_tag, FALSE);

  return g_task_propagate_boolean (G_TASK (result), error);
}

/* Thread affinity ------------------------------------------------------------
 *
 * The targets change only in the manager's context, in the thread that
 * runs it: a call from another thread is handed over (run_in_context()
 * and wait_in_context() for a synchronous one, ly_context_invoke() for an
 * asynchronous one).  A thread that can acquire the context (it runs it,
 * or nobody does) is that thread for the time of the call: the context
 * is acquired meanwhile, so nothing else runs in it. */

/* Waits until @waiter is signalled: running the manager's context when
 * this thread can acquire it, else waiting for the thread that runs it,
 * and taking the context over should that thread stop running it. */
static void
wait_in_context (LyProcessManager *self,
                 LyWaiter         *waiter)
{
  while (!ly_waiter_is_done (waiter))
    {
      if (g_main_context_acquire (self->context))
        {
          g_main_context_push_thread_default (self->context);
          while (!ly_waiter_is_done (waiter))
            g_main_context_iteration (self->context, TRUE);
          g_main_context_pop_thread_default (self->context);
          g_main_context_release (self->context);
          return;
        }

      ly_waiter_wait_until (waiter, g_get_monotonic_time () + 50 * G_TIME_SPAN_MILLISECOND);
    }
}

/* Runs @func (@data) in the manager's context, and returns when it ran;
 * @func returns G_SOURCE_REMOVE. */
typedef struct
{
  GMainContext *context;
  GSourceFunc   func;
  gpointer      data;
  LyWaiter      waiter;
} ContextCall;

static gboolean
context_call_dispatch (gpointer user_data)
{
  ContextCall *call = user_data;

  g_main_context_push_thread_default (call->context);
  call->func (call->data);
  g_main_context_pop_thread_default (call->context);
  ly_waiter_signal (&call->waiter);
  return G_SOURCE_REMOVE;
}

static void
run_in_context (LyProcessManager *self,
                GSourceFunc       func,
                gpointer          data)
{
  ContextCall call = { self->context, func, data, };

  if (ly_context_run_if_owner (self->context, func, data))
    return;

  ly_waiter_init (&call.waiter);
  g_main_context_invoke_full (self->context, G_PRIORITY_DEFAULT, context_call_dispatch, &call, NULL);
  wait_in_context (self, &call.waiter);
  ly_waiter_clear (&call.waiter);
}

/* The state-changing half of a call that completes at once. */
typedef gboolean (*ContextFunc) (LyProcessManager  *self,
                                 gpointer           data,
                                 GError           **error);

typedef struct
{
  LyProcessManager  *self;
  ContextFunc        func;
  gpointer           data;
  gboolean           result;
  GError            *error;
} SyncCall;

static gboolean
sync_call_run (gpointer user_data)
{
  SyncCall *call = user_data;

  call->result = call->func (call->self, call->data, &call->error);
  return G_SOURCE_REMOVE;
}

static gboolean
call_in_context (LyProcessManager  *self,
                 ContextFunc        func,
                 gpointer           data,
                 GError           **error)
{
  SyncCall call = { self, func, data, FALSE, NULL };

  run_in_context (self, sync_call_run, &call);
  if (call.error != NULL)
    g_propagate_error (error, call.error);
  return call.result;
}

/* An asynchronous operation on a target, begun in the manager's context;
 * its task was made in the caller's. */
typedef void (*TargetOpFunc) (LyProcessManager *self,
                              Target           *target,
                              GTask            *task);

typedef struct
{
  LyProcessManager *self;
  char             *name;      /* NULL: every target */
  GTask            *task;
  TargetOpFunc      func;
} TargetOp;

static void
target_op_free (gpointer data)
{
  TargetOp *op = data;

  g_object_unref (op->self);
  g_free (op->name);
  g_object_unref (op->task);
  g_free (op);
}

static gboolean
target_op_run (gpointer data)
{
  TargetOp *op = data;
  GError *error = NULL;
  Target *target = NULL;

  if (op->name == NULL || (target = lookup_target (op->self, op->name, &error)) != NULL)
    op->func (op->self, target, op->task);
  else
    g_task_return_error (op->task, error);

  return G_SOURCE_REMOVE;
}

static void
begin_target_op (LyProcessManager *self,
                 const char       *name,
                 GTask            *task,
                 TargetOpFunc      func)
{
  TargetOp *op = g_new0 (TargetOp, 1);

  op->self = g_object_ref (self);
  op->name = g_strdup (name);
  op->task = g_object_ref (task);
  op->func = func;
  ly_context_invoke (self->context, target_op_run, op, target_op_free);
}

/* The synchronous form of an _async() call: it is made in the manager's
 * context (its completion comes there), and this thread waits. */
typedef void (*AsyncStart) (LyProcessManager    *self,
                            const char          *name,
                            GCancellable        *cancellable,
                            GAsyncReadyCallback  callback,
                            gpointer             user_data);

typedef struct
{
  LyProcessManager *self;
  AsyncStart        start;
  const char       *name;
  GCancellable     *cancellable;
  GAsyncResult     *result;
  LyWaiter          waiter;
} SyncOp;

static void
sync_op_done (GObject      *source,
              GAsyncResult *result,
              gpointer      user_data)
{
  SyncOp *op = user_data;

  op->result = g_object_ref (result);
  ly_waiter_signal (&op->waiter);
}

static gboolean
sync_op_start (gpointer user_data)
{
  SyncOp *op = user_data;

  op->start (op->self, op->name, op->cancellable, sync_op_done, op);
  return G_SOURCE_REMOVE;
}

static GAsyncResult *
sync_run (LyProcessManager *self,
          AsyncStart        start,
          const char       *name,
          GCancellable     *cancellable)
{
  SyncOp op = { self, start, name, cancellable, NULL, };

  ly_waiter_init (&op.waiter);
  run_in_context (self, sync_op_start, &op);
  wait_in_context (self, &op.waiter);
  ly_waiter_clear (&op.waiter);

  return op.result;
}

static void
start_stop_all (LyProcessManager    *self,
                const char          *name,
                GCancellable        *cancellable,
                GAsyncReadyCallback  callback,
                gpointer             user_data)
{
  ly_process_manager_stop_all_async (self, cancellable, callback, user_data);
}

/* GObject ----------------------------------------------------------------- */

static void
ly_process_manager_constructed (GObject *object)
{
  LyProcessManager *self = LY_PROCESS_MANAGER (object);

  G_OBJECT_CLASS (ly_process_manager_parent_class)->constructed (object);

  if (self->storage == NULL)
    self->storage = g_object_ref (ly_storage_get_default ());
}

static void
ly_process_manager_dispose (GObject *object)
{
  LyProcessManager *self = LY_PROCESS_MANAGER (object);

  for (guint i = 0; i < G_N_ELEMENTS (self->signal_sources); i++)
    clear_source (&self->signal_sources[i]);
  g_clear_pointer (&self->signal_loop, g_main_loop_unref);

  /* No child outlives its manager: the ones still running are killed. */
  if (self->order != NULL)
    {
      g_ptr_array_set_free_func (self->order, (GDestroyNotify) target_free);
      g_clear_pointer (&self->order, g_ptr_array_unref);
    }
  g_clear_pointer (&self->targets, g_hash_table_unref);
  g_clear_pointer (&self->groups, ly_process_groups_free);
  g_clear_object (&self->storage);

  G_OBJECT_CLASS (ly_process_manager_parent_class)->dispose (object);
}

static void
ly_process_manager_finalize (GObject *object)
{
  LyProcessManager *self = LY_PROCESS_MANAGER (object);

  g_clear_pointer (&self->context, g_main_context_unref);
  g_mutex_clear (&self->state_mutex);

  G_OBJECT_CLASS (ly_process_manager_parent_class)->finalize (object);
}

static void
ly_process_manager_get_property (GObject    *object,
                                 guint       prop_id,
                                 GValue     *value,
                                 GParamSpec *pspec)
{
  LyProcessManager *self = LY_PROCESS_MANAGER (object);

  switch (prop_id)
    {
    case PROP_STORAGE:
      g_value_set_object (value, self->storage);
      break;
    case PROP_STOP_TIMEOUT:
      g_value_set_double (value, self->stop_timeout);
      break;
    case PROP_RESTART_DELAY:
      g_value_set_double (value, self->restart_delay);
      break;
    case PROP_RESTART_DELAY_MAX:
      g_value_set_double (value, self->restart_delay_max);
      break;
    case PROP_CRASH_LOOP_LIMIT:
      g_value_set_uint (value, self->crash_loop_limit);
      break;
    case PROP_CRASH_LOOP_INTERVAL:
      g_value_set_double (value, self->crash_loop_interval);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
ly_process_manager_set_property (GObject      *object,
                                 guint         prop_id,
                                 const GValue *value,
                                 GParamSpec   *pspec)
{
  LyProcessManager *self = LY_PROCESS_MANAGER (object);

  switch (prop_id)
    {
    case PROP_STORAGE:
      self->storage = g_value_dup_object (value);
      break;
    case PROP_STOP_TIMEOUT:
      self->stop_timeout = g_value_get_double (value);
      break;
    case PROP_RESTART_DELAY:
      self->restart_delay = g_value_get_double (value);
      break;
    case PROP_RESTART_DELAY_MAX:
      self->restart_delay_max = g_value_get_double (value);
      break;
    case PROP_CRASH_LOOP_LIMIT:
      self->crash_loop_limit = g_value_get_uint (value);
      break;
    case PROP_CRASH_LOOP_INTERVAL:
      self->crash_loop_interval = g_value_get_double (value);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
ly_process_manager_class_init (LyProcessManagerClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);

  ly_i18n_init ();

  object_class->constructed = ly_process_manager_constructed;
  object_class->dispose = ly_process_manager_dispose;
  object_class->finalize = ly_process_manager_finalize;
  object_class->get_property = ly_process_manager_get_property;
  object_class->set_property = ly_process_manager_set_property;

  /**
   * LyProcessManager:storage:
   *
   * The storage whose requests the children's storage proxies make: the
   * children share it with the hub.  The default is
   * [func@Ly.Storage.get_default].
   *
   * Since: 1.0
   */
  properties[PROP_STORAGE] =
    g_param_spec_object ("storage", NULL, NULL,
                         LY_TYPE_STORAGE,
                         (G_PARAM_READWRITE | G_PARAM_CONSTRUCT_ONLY | G_PARAM_STATIC_STRINGS));

  /**
   * LyProcessManager:stop-timeout:
   *
   * Seconds a stopping process gets: it is asked politely at once, sent
   * `SIGTERM` after half of this and `SIGKILL` after all of it.  The
   * default, 10 s, is the original's.
   *
   * Since: 1.0
   */
  properties[PROP_STOP_TIMEOUT] =
    g_param_spec_double ("stop-timeout", NULL, NULL,
                         0.0, 3600.0, 10.0,
                         (G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS));

  /**
   * LyProcessManager:restart-delay:
   *
   * Seconds before a process that exited on its own is restarted by its
   * policy.  Doubles with each failure of a process that ran less than
   * 10 s, up to [property@Ly.ProcessManager:restart-delay-max].
   *
   * Since: 1.0
   */
  properties[PROP_RESTART_DELAY] =
    g_param_spec_double ("restart-delay", NULL, NULL,
                         0.0, 3600.0, 0.1,
                         (G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS));

  /**
   * LyProcessManager:restart-delay-max:
   *
   * The longest delay of a policy restart, in seconds.
   *
   * Since: 1.0
   */
  properties[PROP_RESTART_DELAY_MAX] =
    g_param_spec_double ("restart-delay-max", NULL, NULL,
                         0.0, 86400.0, 30.0,
                         (G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS));

  /**
   * LyProcessManager:crash-loop-limit:
   *
   * How many exits within [property@Ly.ProcessManager:crash-loop-interval] the
   * restart policy tolerates; one more and the target is given up
   * (%LY_PROCESS_STATE_FAILED) until it is started again.
   *
   * Since: 1.0
   */
  properties[PROP_CRASH_LOOP_LIMIT] =
    g_param_spec_uint ("crash-loop-limit", NULL, NULL,
                       0, G_MAXUINT, 5,
                       (G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS));

  /**
   * LyProcessManager:crash-loop-interval:
   *
   * The window of [property@Ly.ProcessManager:crash-loop-limit], in seconds.
   *
   * Since: 1.0
   */
  properties[PROP_CRASH_LOOP_INTERVAL] =
    g_param_spec_double ("crash-loop-interval", NULL, NULL,
                         0.0, 86400.0, 60.0,
                         (G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS));

  g_object_class_install_properties (object_class, N_PROPS, properties);

  /**
   * LyProcessManager::state-changed:
   * @self: the manager
   * @name: the target
   * @state: its new state
   *
   * A target's state changed.
   *
   * Since: 1.0
   */
  signals[STATE_CHANGED] =
    g_signal_new ("state-changed", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST,
                  0, NULL, NULL, NULL, G_TYPE_NONE, 2, G_TYPE_STRING, LY_TYPE_PROCESS_STATE);

  /**
   * LyProcessManager::process-started:
   * @self: the manager
   * @name: the target
   * @pid: its new process id
   *
   * A target's process started.
   *
   * Since: 1.0
   */
  signals[PROCESS_STARTED] =
    g_signal_new ("process-started", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST,
                  0, NULL, NULL, NULL, G_TYPE_NONE, 2, G_TYPE_STRING, G_TYPE_INT);

  /**
   * LyProcessManager::process-exited:
   * @self: the manager
   * @name: the target
   * @wait_status: the wait status, as waitpid() gives it (use
   *   `WIFEXITED()`, `WEXITSTATUS()`, `WIFSIGNALED()`, `WTERMSIG()`)
   * @reason: why it ended: asked to stop, exited by itself, or killed by
   *   a signal the hub did not send
   *
   * A target's process exited.  The processes it started in its process
   * group are killed with it.  The target's state tells what comes
   * next: %LY_PROCESS_STATE_BACKOFF when it is restarted (by its policy
   * or a requested restart), %LY_PROCESS_STATE_FAILED when its policy
   * gave it up, %LY_PROCESS_STATE_STOPPED otherwise.
   *
   * Since: 1.0
   */
  signals[PROCESS_EXITED] =
    g_signal_new ("process-exited", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST,
                  0, NULL, NULL, NULL, G_TYPE_NONE, 3, G_TYPE_STRING, G_TYPE_INT, LY_TYPE_EXIT_REASON);

  /**
   * LyProcessManager::before-shutdown:
   * @self: the manager
   * @name: the target
   *
   * A target's process is about to be stopped (the original's
   * `before_process_shutdown` hook).
   *
   * Since: 1.0
   */
  signals[BEFORE_SHUTDOWN] =
    g_signal_new ("before-shutdown", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST,
                  0, NULL, NULL, NULL, G_TYPE_NONE, 1, G_TYPE_STRING);

  /**
   * LyProcessManager::before-restart:
   * @self: the manager
   * @name: the target
   *
   * A target is about to be restarted: asked by the hub, by the child,
   * or by its restart policy (the original's `before_process_restart`
   * hook).
   *
   * Since: 1.0
   */
  signals[BEFORE_RESTART] =
    g_signal_new ("before-restart", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST,
                  0, NULL, NULL, NULL, G_TYPE_NONE, 1, G_TYPE_STRING);
}

/* A child's storage round trip takes about 30 µs; a hub that busy-polls
 * for the next request that long saves a sleep and a wake-up on each.
 * LY_HUB_BUSY_POLL_USEC=0 turns it off (a laptop on battery may prefer
 * that). */
static gint64
busy_poll_usec_from_environment (void)
{
  const char *value = g_getenv ("LY_HUB_BUSY_POLL_USEC");
  guint64 usec;

  if (value == NULL || !g_ascii_string_to_unsigned (value, 10, 0, 10000, &usec, NULL))
    return 50;

  return (gint64) usec;
}

static void
ly_process_manager_init (LyProcessManager *self)
{
  g_mutex_init (&self->state_mutex);
  self->context = g_main_context_ref_thread_default ();
  self->targets = g_hash_table_new (g_str_hash, g_str_equal);
  self->order = g_ptr_array_new ();
  self->stop_timeout = 10.0;
  self->restart_delay = 0.1;
  self->restart_delay_max = 30.0;
  self->crash_loop_limit = 5;
  self->crash_loop_interval = 60.0;
  self->busy_poll_usec = busy_poll_usec_from_environment ();
}

/* Public API -------------------------------------------------------------- */

typedef struct
{
  const char         *name;
  const char * const *argv;
} AddTarget;

static gboolean
add_target_in_context (LyProcessManager  *self,
                       gpointer           data,
                       GError           **error)
{
  AddTarget *add = data;
  g_autofree char *active_name = NULL;
  g_autofree char *passive_name = NULL;
  Target *target;

  if (!name_is_valid (add->name))
    {
      g_set_error (error, LY_PROCESS_ERROR, LY_PROCESS_ERROR_INVALID_NAME,
                   _("“%s” is not a valid target name: use 1 to %d ASCII letters, digits, “_”, “-” or “.”"),
                   add->name, MAX_NAME_LENGTH);
      return FALSE;
    }

  if (add->argv[0] == NULL || add->argv[0][0] == '\0')
    {
      g_set_error (error, LY_PROCESS_ERROR, LY_PROCESS_ERROR_INVALID_ARGUMENT,
                   _("The command of target “%s” is empty"), add->name);
      return FALSE;
    }

  if (g_hash_table_contains (self->targets, add->name))
    {
      g_set_error (error, LY_PROCESS_ERROR, LY_PROCESS_ERROR_EXISTS,
                   _("A target named “%s” exists already"), add->name);
      return FALSE;
    }

  target = g_new0 (Target, 1);
  target->manager = self;
  target->name = g_strdup (add->name);
  target->argv = g_strdupv ((char **) add->argv);
  target->policy = LY_RESTART_NEVER;
  target->stop_timeout = -1;

  /* The channels run in the manager's context. */
  active_name = g_strdup_printf ("%s-active", add->name);
  passive_name = g_strdup_printf ("%s-passive", add->name);
  target->active = ly_channel_new_persistent (active_name, self->context);
  target->passive = ly_channel_new_persistent (passive_name, self->context);

  ly_set_channel (active_name, target->active);
  ly_set_channel (passive_name, target->passive);

  g_mutex_lock (&self->state_mutex);
  g_hash_table_insert (self->targets, target->name, target);
  g_ptr_array_add (self->order, target);
  g_mutex_unlock (&self->state_mutex);

  return TRUE;
}

/* A change of a target's configuration, made in the manager's context. */
typedef void (*ConfigureFunc) (Target   *target,
                               gpointer  data);

typedef struct
{
  const char    *name;
  ConfigureFunc  func;
  gpointer       data;
} Configure;

static gboolean
configure_in_context (LyProcessManager  *self,
                      gpointer           data,
                      GError           **error)
{
  Configure *configure = data;
  Target *target = lookup_target (self, configure->name, error);

  if (target != NULL)
    configure->func (target, configure->data);
  return target != NULL;
}

static gboolean
configure_target (LyProcessManager  *self,
                  const char        *name,
                  ConfigureFunc      func,
                  gpointer           data,
                  GError           **error)
{
  Configure configure = { name, func, data };

  return call_in_context (self, configure_in_context, &configure, error);
}

static void
set_policy (Target   *target,
            gpointer  data)
{
  target->policy = *(LyRestartPolicy *) data;
}

static void
set_stop_timeout (Target   *target,
                  gpointer  data)
{
  target->stop_timeout = *(double *) data;
}

static void
set_environment (Target   *target,
                 gpointer  data)
{
  g_strfreev (target->environment);
  target->environment = g_strdupv (data);
}

static void
set_working_directory (Target   *target,
                       gpointer  data)
{
  g_free (target->working_directory);
  target->working_directory = g_strdup (data);
}

/**
 * ly_process_manager_new:
 *
 * Creates a process manager.  Its signals are emitted in the
 * thread-default main context of the calling thread, which must run.
 *
 * Returns: (transfer full): a new [class@Ly.ProcessManager]
 *
 * Since: 1.0
 */
LyProcessManager *
ly_process_manager_new (void)
{
  return g_object_new (LY_TYPE_PROCESS_MANAGER, NULL);
}

/**
 * ly_process_manager_add_target:
 * @self: a [class@Ly.ProcessManager]
 * @name: the target's name: ASCII letters, digits, `_`, `-` and `.`, at
 *   most 64 characters
 * @argv: (array zero-terminated=1): the program and its arguments; the
 *   program is looked up in `PATH`
 * @error: return location for a #GError
 *
 * Adds a target, not started.  Its channels `NAME-active` and
 * `NAME-passive` exist from now on, in the registry.
 *
 * Returns: %TRUE on success
 *
 * Since: 1.0
 */
gboolean
ly_process_manager_add_target (LyProcessManager    *self,
                               const char          *name,
                               const char * const  *argv,
                               GError             **error)
{
  AddTarget add = { name, argv };

  g_return_val_if_fail (LY_IS_PROCESS_MANAGER (self), FALSE);
  g_return_val_if_fail (name != NULL, FALSE);
  g_return_val_if_fail (argv != NULL, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  return call_in_context (self, add_target_in_context, &add, error);
}

/**
 * ly_process_manager_set_restart_policy:
 * @self: a [class@Ly.ProcessManager]
 * @name: a target
 * @policy: what to do when its process exits on its own
 * @error: return location for a #GError
 *
 * Sets the restart policy of a target; the default is
 * %LY_RESTART_NEVER.
 *
 * Returns: %TRUE on success
 *
 * Since: 1.0
 */
gboolean
ly_process_manager_set_restart_policy (LyProcessManager  *self,
                                       const char        *name,
                                       LyRestartPolicy    policy,
                                       GError           **error)
{
  g_return_val_if_fail (LY_IS_PROCESS_MANAGER (self), FALSE);
  g_return_val_if_fail (name != NULL, FALSE);

  return configure_target (self, name, set_policy, &policy, error);
}

/**
 * ly_process_manager_set_target_stop_timeout:
 * @self: a [class@Ly.ProcessManager]
 * @name: a target
 * @seconds: how long its process gets to stop, from 0 to 3600 (see
 *   [property@Ly.ProcessManager:stop-timeout]), or -1 for the manager's
 *   [property@Ly.ProcessManager:stop-timeout]
 * @error: return location for a #GError
 *
 * Gives a target a stop timeout of its own.  Any other number (another
 * negative one, NaN, more than an hour) fails with
 * %LY_PROCESS_ERROR_INVALID_ARGUMENT.
 *
 * Returns: %TRUE on success
 *
 * Since: 1.0
 */
gboolean
ly_process_manager_set_target_stop_timeout (LyProcessManager  *self,
                                            const char        *name,
                                            double             seconds,
                                            GError           **error)
{
  g_return_val_if_fail (LY_IS_PROCESS_MANAGER (self), FALSE);
  g_return_val_if_fail (name != NULL, FALSE);

  if (seconds != -1 && !(seconds >= 0 && seconds <= 3600))
    {
      g_set_error (error, LY_PROCESS_ERROR, LY_PROCESS_ERROR_INVALID_ARGUMENT,
                   _("%g is not a stop timeout: give 0 to 3600 seconds, or -1 for the manager’s"), seconds);
      return FALSE;
    }

  return configure_target (self, name, set_stop_timeout, &seconds, error);
}

static LyStoragePolicy *
target_storage_policy (Target *target)
{
  if (target->storage_policy == NULL)
    target->storage_policy = ly_storage_policy_new (target->name);
  return target->storage_policy;
}

typedef struct
{
  const char * const *readable;
  const char * const *writable;
} StorageAccess;

static void
set_storage_access (Target   *target,
                    gpointer  data)
{
  const StorageAccess *access = data;
  LyStoragePolicy *policy = target_storage_policy (target);

  g_strfreev (policy->readable);
  g_strfreev (policy->writable);
  policy->readable = g_strdupv ((char **) access->readable);
  policy->writable = g_strdupv ((char **) access->writable);
}

/**
 * ly_process_manager_set_storage_access:
 * @self: a [class@Ly.ProcessManager]
 * @name: a target
 * @readable: (array zero-terminated=1) (nullable): the keys and topics
 *   its processes may read, or %NULL for all of them
 * @writable: (array zero-terminated=1) (nullable): the keys and topics
 *   they may write, or %NULL for all of them
 * @error: return location for a #GError
 *
 * Limits what a target's processes may do with the hub's storage, from
 * their next start.  A pattern is a key (`config`), a prefix and a
 * final `*` (`nonebot.*`), or `*` for every name; an empty array allows
 * nothing.  Reading covers get, contains, listing (which shows only the
 * readable keys), the `changed` notifications it gets, and subscribing;
 * writing covers set, delete, compare-and-set (which needs reading too)
 * and publishing.  A refused operation fails in the child with
 * %LY_STORAGE_ERROR_PERMISSION_DENIED.  By default everything is shared,
 * as in the original `liteyuki.comm`.
 *
 * Returns: %TRUE on success
 *
 * Since: 1.0
 */
gboolean
ly_process_manager_set_storage_access (LyProcessManager    *self,
                                       const char          *name,
                                       const char * const  *readable,
                                       const char * const  *writable,
                                       GError             **error)
{
  StorageAccess access = { readable, writable };

  g_return_val_if_fail (LY_IS_PROCESS_MANAGER (self), FALSE);
  g_return_val_if_fail (name != NULL, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  if (!ly_storage_patterns_valid (readable, error) || !ly_storage_patterns_valid (writable, error))
    return FALSE;

  return configure_target (self, name, set_storage_access, &access, error);
}

typedef struct
{
  guint   max_keys;
  guint64 max_bytes;
  guint   max_subscriptions;
} StorageQuota;

static void
set_storage_quota (Target   *target,
                   gpointer  data)
{
  const StorageQuota *quota = data;
  LyStoragePolicy *policy = target_storage_policy (target);

  policy->max_keys = quota->max_keys;
  policy->max_bytes = quota->max_bytes;
  policy->max_subscriptions = quota->max_subscriptions;
}

/**
 * ly_process_manager_set_storage_quota:
 * @self: a [class@Ly.ProcessManager]
 * @name: a target
 * @max_keys: how many keys its processes may hold, or 0 for no limit
 * @max_bytes: how many bytes of values they may hold, or 0 for no limit
 * @max_subscriptions: to how many topics each of its processes may
 *   subscribe, or 0 for no limit
 * @error: return location for a #GError
 *
 * Bounds what a target's processes may hold in the hub's storage, from
 * their next start.  What they hold is what they wrote last: a key
 * counts for the target that set it last (another's write takes it over,
 * a delete frees it), with the size of its value.  A write past a quota
 * fails in the child with %LY_STORAGE_ERROR_QUOTA, and so does a
 * subscription past its quota.  No quota by default.
 *
 * Returns: %TRUE on success
 *
 * Since: 1.0
 */
gboolean
ly_process_manager_set_storage_quota (LyProcessManager  *self,
                                      const char        *name,
                                      guint              max_keys,
                                      guint64            max_bytes,
                                      guint              max_subscriptions,
                                      GError           **error)
{
  StorageQuota quota = { max_keys, max_bytes, max_subscriptions };

  g_return_val_if_fail (LY_IS_PROCESS_MANAGER (self), FALSE);
  g_return_val_if_fail (name != NULL, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  return configure_target (self, name, set_storage_quota, &quota, error);
}

/**
 * ly_process_manager_set_environment:
 * @self: a [class@Ly.ProcessManager]
 * @name: a target
 * @environment: (array zero-terminated=1) (nullable): `KEY=VALUE`
 *   strings added to the hub's environment for the target's processes
 * @error: return location for a #GError
 *
 * Sets extra environment variables of a target, for its next start.
 *
 * Returns: %TRUE on success
 *
 * Since: 1.0
 */
gboolean
ly_process_manager_set_environment (LyProcessManager    *self,
                                    const char          *name,
                                    const char * const  *environment,
                                    GError             **error)
{
  g_return_val_if_fail (LY_IS_PROCESS_MANAGER (self), FALSE);
  g_return_val_if_fail (name != NULL, FALSE);

  for (guint i = 0; environment != NULL && environment[i] != NULL; i++)
    if (!environment_entry_is_valid (environment[i]))
      {
        g_set_error (error, LY_PROCESS_ERROR, LY_PROCESS_ERROR_INVALID_ARGUMENT,
                     _("“%s” is not of the form NAME=VALUE, with a NAME of ASCII letters, digits and “_” that does not start with a digit"),
                     environment[i]);
        return FALSE;
      }

  return configure_target (self, name, set_environment, (gpointer) environment, error);
}

/**
 * ly_process_manager_set_working_directory:
 * @self: a [class@Ly.ProcessManager]
 * @name: a target
 * @directory: (type filename) (nullable): the directory its processes
 *   start in, or %NULL for the hub's
 * @error: return location for a #GError
 *
 * Sets the working directory of a target, for its next start.
 *
 * Returns: %TRUE on success
 *
 * Since: 1.0
 */
gboolean
ly_process_manager_set_working_directory (LyProcessManager  *self,
                                          const char        *name,
                                          const char        *directory,
                                          GError           **error)
{
  g_return_val_if_fail (LY_IS_PROCESS_MANAGER (self), FALSE);
  g_return_val_if_fail (name != NULL, FALSE);

  return configure_target (self, name, set_working_directory, (gpointer) directory, error);
}

/**
 * ly_process_manager_list_targets:
 * @self: a [class@Ly.ProcessManager]
 *
 * The targets of the manager.  May be called from any thread.
 *
 * Returns: (transfer full) (array zero-terminated=1): the names of the
 *   targets, in the order they were added
 *
 * Since: 1.0
 */
char **
ly_process_manager_list_targets (LyProcessManager *self)
{
  GStrvBuilder *builder;
  char **names;

  g_return_val_if_fail (LY_IS_PROCESS_MANAGER (self), NULL);

  builder = g_strv_builder_new ();
  g_mutex_lock (&self->state_mutex);
  for (guint i = 0; i < self->order->len; i++)
    g_strv_builder_add (builder, ((Target *) g_ptr_array_index (self->order, i))->name);
  g_mutex_unlock (&self->state_mutex);
  names = g_strv_builder_end (builder);
  g_strv_builder_unref (builder);

  return names;
}

static gboolean
start_in_context (LyProcessManager  *self,
                  gpointer           data,
                  GError           **error)
{
  const char *name = data;
  Target *target;

  if ((target = lookup_target (self, name, error)) == NULL)
    return FALSE;

  target_settle (target);
  if (is_running (target))
    {
      g_set_error (error, LY_PROCESS_ERROR, LY_PROCESS_ERROR_RUNNING,
                   _("“%s” is running already (process %d)"), name, target->pid);
      return FALSE;
    }

  target->quick_failures = 0;
  g_queue_clear_full (&target->failure_times, g_free);

  if (target_spawn (target, error))
    return TRUE;
  target_set_state (target, LY_PROCESS_STATE_FAILED);
  return FALSE;
}

/* Every target is tried: one that cannot be started is left to its
 * restart policy, and the others run. */
static gboolean
start_all_in_context (LyProcessManager  *self,
                      gpointer           data,
                      GError           **error)
{
  g_autoptr(GString) failures = NULL;
  guint n_failed = 0;

  for (guint i = 0; i < self->order->len; i++)
    {
      Target *target = g_ptr_array_index (self->order, i);
      g_autoptr(GError) spawn_error = NULL;

      target_settle (target);
      if (is_running (target))
        continue;

      target->quick_failures = 0;
      g_queue_clear_full (&target->failure_times, g_free);
      if (target_spawn (target, &spawn_error))
        continue;

      target_spawn_failed (target, spawn_error);
      if (failures == NULL)
        failures = g_string_new (spawn_error->message);
      n_failed++;
    }

  if (n_failed == 0)
    return TRUE;

  if (n_failed > 1)
    g_string_append_printf (failures,
                            g_dngettext (GETTEXT_PACKAGE, " (and %u more target)", " (and %u more targets)",
                                         n_failed - 1),
                            n_failed - 1);
  g_set_error_literal (error, LY_PROCESS_ERROR, LY_PROCESS_ERROR_SPAWN_FAILED, failures->str);
  return FALSE;
}

/**
 * ly_process_manager_start:
 * @self: a [class@Ly.ProcessManager]
 * @name: a target
 * @error: return location for a #GError
 *
 * Starts a target's process.  It fails with %LY_PROCESS_ERROR_RUNNING
 * when the process runs, and with %LY_PROCESS_ERROR_SPAWN_FAILED when it
 * cannot be started (a program that does not exist, say): the target is
 * then %LY_PROCESS_STATE_FAILED, and not retried.  A target
 * waiting for a policy restart, or given up, starts at once.
 *
 * Returns: %TRUE if the process was started
 *
 * Since: 1.0
 */
gboolean
ly_process_manager_start (LyProcessManager  *self,
                          const char        *name,
                          GError           **error)
{
  g_return_val_if_fail (LY_IS_PROCESS_MANAGER (self), FALSE);
  g_return_val_if_fail (name != NULL, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  return call_in_context (self, start_in_context, (gpointer) name, error);
}

/**
 * ly_process_manager_start_all:
 * @self: a [class@Ly.ProcessManager]
 * @error: return location for a #GError
 *
 * Starts every target that does not run, in the order they were added.
 * A target that cannot be started does not keep the others from
 * starting: it is logged with g_warning(), and its restart policy
 * tries it again as if its process had failed at once (status 127),
 * until [property@Ly.ProcessManager:crash-loop-limit] gives it up
 * (%LY_PROCESS_STATE_FAILED); with %LY_RESTART_NEVER it fails at once.
 *
 * Returns: %TRUE if all of them were started; otherwise the error names
 *   the first that was not, and how many more
 *
 * Since: 1.0
 */
gboolean
ly_process_manager_start_all (LyProcessManager  *self,
                              GError           **error)
{
  g_return_val_if_fail (LY_IS_PROCESS_MANAGER (self), FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  return call_in_context (self, start_all_in_context, NULL, error);
}

/**
 * ly_process_manager_stop_async:
 * @self: a [class@Ly.ProcessManager]
 * @name: a target
 * @cancellable: (nullable): a #GCancellable; cancelling stops the
 *   waiting, not the stopping
 * @callback: called when the process exited
 * @user_data: data for @callback
 *
 * Stops a target's process: a polite request over its control
 * connection, `SIGTERM` after half of [property@Ly.ProcessManager:stop-timeout],
 * `SIGKILL` after all of it.  Emits [signal@Ly.ProcessManager::before-shutdown]
 * first.  The restart policy does not apply.  Stopping a target that
 * does not run succeeds at once.
 *
 * Since: 1.0
 */
void
ly_process_manager_stop_async (LyProcessManager    *self,
                               const char          *name,
                               GCancellable        *cancellable,
                               GAsyncReadyCallback  callback,
                               gpointer             user_data)
{
  g_autoptr(GTask) task = NULL;

  g_return_if_fail (LY_IS_PROCESS_MANAGER (self));
  g_return_if_fail (name != NULL);

  task = g_task_new (self, cancellable, callback, user_data);
  g_task_set_source_tag (task, ly_process_manager_stop_async);
  begin_target_op (self, name, task, target_stop_async);
}

/**
 * ly_process_manager_stop_finish:
 * @self: a [class@Ly.ProcessManager]
 * @result: the #GAsyncResult given to the callback
 * @error: return location for a #GError
 *
 * Finishes ly_process_manager_stop_async().
 *
 * Returns: %TRUE when the process is gone
 *
 * Since: 1.0
 */
gboolean
ly_process_manager_stop_finish (LyProcessManager  *self,
                                GAsyncResult      *result,
                                GError           **error)
{
  return finish_boolean (self, result, ly_process_manager_stop_async, error);
}

/**
 * ly_process_manager_stop:
 * @self: a [class@Ly.ProcessManager]
 * @name: a target
 * @cancellable: (nullable): a #GCancellable
 * @error: return location for a #GError
 *
 * Stops a target's process and waits until it exited, at most
 * [property@Ly.ProcessManager:stop-timeout].  It runs the manager's main context
 * meanwhile, as a nested main loop, when no other thread is running it;
 * when one is, that thread completes the stop while this one waits.
 *
 * Returns: %TRUE when the process is gone
 *
 * Since: 1.0
 */
gboolean
ly_process_manager_stop (LyProcessManager  *self,
                         const char        *name,
                         GCancellable      *cancellable,
                         GError           **error)
{
  g_autoptr(GAsyncResult) result = NULL;

  g_return_val_if_fail (LY_IS_PROCESS_MANAGER (self), FALSE);

  result = sync_run (self, ly_process_manager_stop_async, name, cancellable);

  return ly_process_manager_stop_finish (self, result, error);
}

static void
target_restart_async (LyProcessManager *self,
                      Target           *target,
                      GTask            *task)
{
  g_signal_emit (self, signals[BEFORE_RESTART], 0, target->name);
  g_queue_push_tail (&target->restart_tasks, g_object_ref (task));

  if (target_settle (target))
    {
      target_respawn (target);
      return;
    }

  target->restart_after_stop = TRUE;
  target_begin_stop (target);
}

/**
 * ly_process_manager_restart_async:
 * @self: a [class@Ly.ProcessManager]
 * @name: a target
 * @cancellable: (nullable): a #GCancellable
 * @callback: called when the new process started
 * @user_data: data for @callback
 *
 * Restarts a target: emits [signal@Ly.ProcessManager::before-restart], stops the
 * running process as ly_process_manager_stop_async() does, and starts
 * a new one.  A target that does not run is started.
 *
 * Since: 1.0
 */
void
ly_process_manager_restart_async (LyProcessManager    *self,
                                  const char          *name,
                                  GCancellable        *cancellable,
                                  GAsyncReadyCallback  callback,
                                  gpointer             user_data)
{
  g_autoptr(GTask) task = NULL;

  g_return_if_fail (LY_IS_PROCESS_MANAGER (self));
  g_return_if_fail (name != NULL);

  task = g_task_new (self, cancellable, callback, user_data);
  g_task_set_source_tag (task, ly_process_manager_restart_async);
  begin_target_op (self, name, task, target_restart_async);
}

/**
 * ly_process_manager_restart_finish:
 * @self: a [class@Ly.ProcessManager]
 * @result: the #GAsyncResult given to the callback
 * @error: return location for a #GError
 *
 * Finishes ly_process_manager_restart_async().
 *
 * Returns: %TRUE when the new process started
 *
 * Since: 1.0
 */
gboolean
ly_process_manager_restart_finish (LyProcessManager  *self,
                                   GAsyncResult      *result,
                                   GError           **error)
{
  return finish_boolean (self, result, ly_process_manager_restart_async, error);
}

/**
 * ly_process_manager_restart:
 * @self: a [class@Ly.ProcessManager]
 * @name: a target
 * @cancellable: (nullable): a #GCancellable
 * @error: return location for a #GError
 *
 * Restarts a target and waits until the new process started, running
 * the manager's main context meanwhile (see ly_process_manager_stop()).
 *
 * Returns: %TRUE when the new process started
 *
 * Since: 1.0
 */
gboolean
ly_process_manager_restart (LyProcessManager  *self,
                            const char        *name,
                            GCancellable      *cancellable,
                            GError           **error)
{
  g_autoptr(GAsyncResult) result = NULL;

  g_return_val_if_fail (LY_IS_PROCESS_MANAGER (self), FALSE);

  result = sync_run (self, ly_process_manager_restart_async, name, cancellable);

  return ly_process_manager_restart_finish (self, result, error);
}

typedef struct
{
  guint pending;
} StopAll;

static void
stopped_one (GObject      *source,
             GAsyncResult *result,
             gpointer      user_data)
{
  g_autoptr(GTask) task = user_data;
  StopAll *all = g_task_get_task_data (task);

  ly_process_manager_stop_finish (LY_PROCESS_MANAGER (source), result, NULL);
  if (--all->pending == 0)
    g_task_return_boolean (task, TRUE);
}

static void
stop_all_targets (LyProcessManager *self,
                  Target           *unused,
                  GTask            *task)
{
  StopAll *all = g_new0 (StopAll, 1);

  g_task_set_task_data (task, all, g_free);

  /* one extra count, released below, so that stops completing at once
   * do not finish the task before all have begun */
  all->pending = 1;
  for (guint i = 0; i < self->order->len; i++)
    {
      Target *target = g_ptr_array_index (self->order, i);

      all->pending++;
      ly_process_manager_stop_async (self, target->name, g_task_get_cancellable (task),
                                     stopped_one, g_object_ref (task));
    }

  if (--all->pending == 0)
    g_task_return_boolean (task, TRUE);
}

/**
 * ly_process_manager_stop_all_async:
 * @self: a [class@Ly.ProcessManager]
 * @cancellable: (nullable): a #GCancellable
 * @callback: called when every process exited
 * @user_data: data for @callback
 *
 * Stops every target's process, all at once.
 *
 * Since: 1.0
 */
void
ly_process_manager_stop_all_async (LyProcessManager    *self,
                                   GCancellable        *cancellable,
                                   GAsyncReadyCallback  callback,
                                   gpointer             user_data)
{
  g_autoptr(GTask) task = NULL;

  g_return_if_fail (LY_IS_PROCESS_MANAGER (self));

  task = g_task_new (self, cancellable, callback, user_data);
  g_task_set_source_tag (task, ly_process_manager_stop_all_async);
  begin_target_op (self, NULL, task, stop_all_targets);
}

/**
 * ly_process_manager_stop_all_finish:
 * @self: a [class@Ly.ProcessManager]
 * @result: the #GAsyncResult given to the callback
 * @error: return location for a #GError
 *
 * Finishes ly_process_manager_stop_all_async().
 *
 * Returns: %TRUE when every process is gone
 *
 * Since: 1.0
 */
gboolean
ly_process_manager_stop_all_finish (LyProcessManager  *self,
                                    GAsyncResult      *result,
                                    GError           **error)
{
  return finish_boolean (self, result, ly_process_manager_stop_all_async, error);
}

/**
 * ly_process_manager_stop_all:
 * @self: a [class@Ly.ProcessManager]
 * @cancellable: (nullable): a #GCancellable
 * @error: return location for a #GError
 *
 * Stops every target's process and waits for all, running the
 * manager's main context meanwhile (see ly_process_manager_stop()).
 *
 * Returns: %TRUE when every process is gone
 *
 * Since: 1.0
 */
gboolean
ly_process_manager_stop_all (LyProcessManager  *self,
                             GCancellable      *cancellable,
                             GError           **error)
{
  g_autoptr(GAsyncResult) result = NULL;

  g_return_val_if_fail (LY_IS_PROCESS_MANAGER (self), FALSE);

  result = sync_run (self, start_stop_all, NULL, cancellable);

  return ly_process_manager_stop_all_finish (self, result, error);
}

/* What the getters of other threads see of a target. */
typedef struct
{
  gboolean       exists;
  LyProcessState state;
  GPid           pid;
  guint          restarts;
} TargetSnapshot;

static TargetSnapshot
snapshot_target (LyProcessManager *self,
                 const char       *name)
{
  TargetSnapshot snapshot = { FALSE, LY_PROCESS_STATE_STOPPED, 0, 0 };
  Target *target;

  g_mutex_lock (&self->state_mutex);
  target = g_hash_table_lookup (self->targets, name);
  if (target != NULL)
    {
      snapshot.exists = TRUE;
      snapshot.state = target->state;
      snapshot.pid = target->pid;
      snapshot.restarts = target->restarts;
    }
  g_mutex_unlock (&self->state_mutex);

  return snapshot;
}

/* A snapshot of a target that must exist. */
static gboolean
snapshot_known_target (LyProcessManager  *self,
                       const char        *name,
                       TargetSnapshot    *snapshot,
                       GError           **error)
{
  *snapshot = snapshot_target (self, name);
  if (!snapshot->exists)
    {
      g_set_error (error, LY_PROCESS_ERROR, LY_PROCESS_ERROR_UNKNOWN_TARGET,
                   _("There is no target named “%s”"), name);
      return FALSE;
    }
  return TRUE;
}

/**
 * ly_process_manager_is_alive:
 * @self: a [class@Ly.ProcessManager]
 * @name: a target
 *
 * Whether a target's process runs.  May be called from any thread.
 *
 * Returns: whether the target's process runs (stopping included)
 *
 * Since: 1.0
 */
gboolean
ly_process_manager_is_alive (LyProcessManager *self,
                             const char       *name)
{
  TargetSnapshot target;

  g_return_val_if_fail (LY_IS_PROCESS_MANAGER (self), FALSE);
  g_return_val_if_fail (name != NULL, FALSE);

  target = snapshot_target (self, name);
  return target.state == LY_PROCESS_STATE_RUNNING || target.state == LY_PROCESS_STATE_STOPPING;
}

/**
 * ly_process_manager_get_pid:
 * @self: a [class@Ly.ProcessManager]
 * @name: a target
 * @error: return location for a #GError
 *
 * The process id of a target's process.  May be called from any thread.
 *
 * Returns: the process id of the target's process, or 0 when it does
 *   not run or on error (%LY_PROCESS_ERROR_UNKNOWN_TARGET)
 *
 * Since: 1.0
 */
GPid
ly_process_manager_get_pid (LyProcessManager  *self,
                            const char        *name,
                            GError           **error)
{
  TargetSnapshot target;

  g_return_val_if_fail (LY_IS_PROCESS_MANAGER (self), 0);
  g_return_val_if_fail (name != NULL, 0);

  g_return_val_if_fail (error == NULL || *error == NULL, 0);

  if (!snapshot_known_target (self, name, &target, error))
    return 0;
  return target.pid;
}

/**
 * ly_process_manager_get_state:
 * @self: a [class@Ly.ProcessManager]
 * @name: a target
 * @error: return location for a #GError
 *
 * The state of a target.  May be called from any thread.
 *
 * Returns: the target's state; %LY_PROCESS_STATE_STOPPED on error
 *   (%LY_PROCESS_ERROR_UNKNOWN_TARGET)
 *
 * Since: 1.0
 */
LyProcessState
ly_process_manager_get_state (LyProcessManager  *self,
                              const char        *name,
                              GError           **error)
{
  TargetSnapshot target;

  g_return_val_if_fail (LY_IS_PROCESS_MANAGER (self), LY_PROCESS_STATE_STOPPED);
  g_return_val_if_fail (name != NULL, LY_PROCESS_STATE_STOPPED);

  g_return_val_if_fail (error == NULL || *error == NULL, LY_PROCESS_STATE_STOPPED);

  if (!snapshot_known_target (self, name, &target, error))
    return LY_PROCESS_STATE_STOPPED;
  return target.state;
}

/**
 * ly_process_manager_get_restart_count:
 * @self: a [class@Ly.ProcessManager]
 * @name: a target
 * @error: return location for a #GError
 *
 * How often a target was restarted.  May be called from any thread.
 *
 * Returns: how often the target was restarted (by a restart, by its
 *   child, or by its policy); 0 on error (%LY_PROCESS_ERROR_UNKNOWN_TARGET)
 *
 * Since: 1.0
 */
guint
ly_process_manager_get_restart_count (LyProcessManager  *self,
                                      const char        *name,
                                      GError           **error)
{
  TargetSnapshot target;

  g_return_val_if_fail (LY_IS_PROCESS_MANAGER (self), 0);
  g_return_val_if_fail (name != NULL, 0);

  g_return_val_if_fail (error == NULL || *error == NULL, 0);

  if (!snapshot_known_target (self, name, &target, error))
    return 0;
  return target.restarts;
}

/**
 * ly_process_manager_get_stop_timeout:
 * @self: a [class@Ly.ProcessManager]
 *
 * Gets [property@Ly.ProcessManager:stop-timeout].
 *
 * Returns: [property@Ly.ProcessManager:stop-timeout], in seconds
 *
 * Since: 1.0
 */
double
ly_process_manager_get_stop_timeout (LyProcessManager *self)
{
  g_return_val_if_fail (LY_IS_PROCESS_MANAGER (self), 0);

  return self->stop_timeout;
}

/**
 * ly_process_manager_set_stop_timeout:
 * @self: a [class@Ly.ProcessManager]
 * @seconds: the new timeout
 *
 * Sets [property@Ly.ProcessManager:stop-timeout].
 *
 * Since: 1.0
 */
void
ly_process_manager_set_stop_timeout (LyProcessManager *self,
                                     double            seconds)
{
  g_return_if_fail (LY_IS_PROCESS_MANAGER (self));
  g_return_if_fail (seconds >= 0 && seconds <= 3600);

  g_object_set (self, "stop-timeout", seconds, NULL);
}

static void
stopped_on_signal (GObject      *source,
                   GAsyncResult *result,
                   gpointer      user_data)
{
  LyProcessManager *self = LY_PROCESS_MANAGER (source);

  ly_process_manager_stop_all_finish (self, result, NULL);
  if (self->signal_loop != NULL)
    g_main_loop_quit (self->signal_loop);
}

static gboolean
on_unix_signal (gpointer user_data)
{
  LyProcessManager *self = user_data;

  g_debug ("Signal received: stopping every process");
  ly_process_manager_stop_all_async (self, NULL, stopped_on_signal, NULL);
  return G_SOURCE_CONTINUE;
}

/**
 * ly_process_manager_stop_on_unix_signals:
 * @self: a [class@Ly.ProcessManager]
 * @loop: (nullable): a main loop to quit once every process is gone
 *
 * Makes `SIGINT` and `SIGTERM` stop every target's process (as
 * ly_process_manager_stop_all_async() does) and then quit @loop: what a
 * hub daemon wants.  The signals are caught with g_unix_signal_add() for
 * as long as the manager lives.
 *
 * Since: 1.0
 */
void
ly_process_manager_stop_on_unix_signals (LyProcessManager *self,
                                         GMainLoop        *loop)
{
  const int unix_signals[2] = { SIGINT, SIGTERM };

  g_return_if_fail (LY_IS_PROCESS_MANAGER (self));

  g_clear_pointer (&self->signal_loop, g_main_loop_unref);
  if (loop != NULL)
    self->signal_loop = g_main_loop_ref (loop);

  for (guint i = 0; i < G_N_ELEMENTS (unix_signals); i++)
    if (self->signal_sources[i] == NULL)
      {
        self->signal_sources[i] = g_unix_signal_source_new (unix_signals[i]);
        g_source_set_callback (self->signal_sources[i], on_unix_signal, self, NULL);
        g_source_attach (self->signal_sources[i], self->context);
      }
}

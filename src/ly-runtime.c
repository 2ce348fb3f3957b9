/* ly-runtime.c: the runtime of a child started by a LyProcessManager
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "config.h"

#include <glib/gstdio.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ly-channel-private.h"
#include "ly-context-private.h"
#include "ly-control-private.h"
#include "ly-errors.h"
#include "ly-i18n-private.h"
#include "ly-registry.h"
#include "ly-registry-private.h"
#include "ly-runtime.h"
#include "ly-runtime-private.h"
#include "ly-storage-shm-private.h"

/* The child runtime ------------------------------------------------------- */

/* What the hub passed, read when the library is loaded, before any
 * thread of the program could race getenv(), and removed from the
 * environment so that grandchildren do not inherit it. */
static struct
{
  char *process_name;
  int   control_fd;
  int   active_fd;
  int   passive_fd;
  int   storage_fd;
} inherited = { NULL, -1, -1, -1, -1 };

static int
take_fd_variable (const char *variable)
{
  const char *value = getenv (variable);
  char *end = NULL;
  long fd;

  if (value == NULL)
    return -1;

  fd = strtol (value, &end, 10);
  unsetenv (variable);
  return (end != value && *end == '\0' && fd >= 0 && fd < G_MAXINT) ? (int) fd : -1;
}

static void ensure_child_runtime (void);

__attribute__((constructor))
static void
capture_inherited_environment (void)
{
  const char *name = getenv (LY_ENV_PROCESS_NAME);

  if (name == NULL || name[0] == '\0')
    return;

  inherited.process_name = strdup (name);
  unsetenv (LY_ENV_PROCESS_NAME);
  ly_registry_set_loader (ensure_child_runtime);
  inherited.control_fd = take_fd_variable (LY_ENV_CONTROL_FD);
  inherited.active_fd = take_fd_variable (LY_ENV_ACTIVE_FD);
  inherited.passive_fd = take_fd_variable (LY_ENV_PASSIVE_FD);
  inherited.storage_fd = take_fd_variable (LY_ENV_STORAGE_FD);
}

typedef struct
{
  LyChannel      *active;
  LyChannel      *passive;
  LyControl      *control;
  LyShmReader    *storage_table;   /* until the storage takes it */

  /* @mutex protects the stop handler (@stop_func, @stop_data,
   * @stop_destroy) */
  GMutex          mutex;
  LyStopFunc      stop_func;
  gpointer        stop_data;
  GDestroyNotify  stop_destroy;
} ChildRuntime;

static ChildRuntime *child_runtime;

static LyChannel *
channel_for_inherited_fd (const char *suffix,
                          int         fd)
{
  g_autofree char *name = g_strdup_printf ("%s-%s", inherited.process_name, suffix);
  g_autoptr(GError) error = NULL;
  LyChannel *channel;

  if (fd < 0 || (channel = ly_channel_new_for_fd (name, fd, &error)) == NULL)
    {
      g_warning ("This process was started as “%s” by a liteyuki-comm hub, but its channel “%s” is unusable: %s",
                 inherited.process_name, name, error != NULL ? error->message : _("no file descriptor"));
      return NULL;
    }

  ly_set_channel (name, channel);
  return channel;
}

/* Whether the program handles SIGTERM itself (a handler, or ignores it). */
static gboolean
program_handles_sigterm (void)
{
  struct sigaction action;

  return sigaction (SIGTERM, NULL, &action) == 0 && action.sa_handler != SIG_DFL;
}

/* The default answer to a polite stop: flush the channels (for at most
 * a second), then exit with status 0, a clean end the hub reports as
 * such; a program that handles SIGTERM itself gets SIGTERM instead, so
 * that its own shutdown runs. */
static void
default_stop (ChildRuntime *runtime)
{
  g_autoptr(GCancellable) cancellable = g_cancellable_new ();
  GSource *timeout = ly_context_cancel_after (g_main_context_get_thread_default (), cancellable, 1000,
                                              "[liteyuki-comm] flush before stopping");
  LyChannel *channels[2] = { runtime->active, runtime->passive };

  for (guint i = 0; i < G_N_ELEMENTS (channels); i++)
    if (channels[i] != NULL)
      {
        ly_channel_close (channels[i]);
        ly_channel_flush (channels[i], cancellable, NULL);
      }

  g_source_destroy (timeout);
  g_source_unref (timeout);
  if (program_handles_sigterm ())
    {
      raise (SIGTERM);
      return;
    }
  fflush (NULL);
  _exit (0);
}

/* The hub asks this process to stop. */
static void
on_stop (LyControl *control,
         guint32    serial,
         GVariant  *args,
         gpointer   user_data)
{
  ChildRuntime *runtime = user_data;
  LyStopFunc func;
  gpointer data;

  g_mutex_lock (&runtime->mutex);
  func = runtime->stop_func;
  data = runtime->stop_data;
  g_mutex_unlock (&runtime->mutex);

  if (func != NULL)
    func (data);
  else
    default_stop (runtime);
}

/* The hub's shared storage table, mapped (the fd is not needed after);
 * NULL when the hub passed none, or one this process cannot use: its
 * storage then reads with round trips. */
static LyShmReader *
map_storage_table (void)
{
  g_autoptr(GError) error = NULL;
  LyShmReader *table;

  if (inherited.storage_fd < 0)
    return NULL;

  table = ly_shm_reader_new (inherited.storage_fd, &error);
  if (table == NULL)
    g_warning ("This process reads the storage with round trips to its hub: %s", error->message);
  g_close (inherited.storage_fd, NULL);
  inherited.storage_fd = -1;

  return table;
}

/* Sets the runtime of a managed child up on first use: its channels, in
 * the registry and in the calling thread's main context, and its control
 * connection. */
static void
ensure_child_runtime (void)
{
  static gsize initialized = 0;

  if (g_once_init_enter (&initialized))
    {
      if (inherited.process_name != NULL)
        {
          ChildRuntime *runtime = g_new0 (ChildRuntime, 1);
          g_autoptr(LyChannel) control = NULL;
          g_autoptr(GError) error = NULL;

          g_mutex_init (&runtime->mutex);
          runtime->active = channel_for_inherited_fd ("active", inherited.active_fd);
          runtime->passive = channel_for_inherited_fd ("passive", inherited.passive_fd);

          if (inherited.control_fd >= 0 &&
              (control = ly_channel_new_for_fd ("control", inherited.control_fd, &error)) != NULL)
            {
              runtime->control = ly_control_new (control);
              ly_control_add_handler (runtime->control, "Stop", "()", on_stop, runtime, NULL);
            }
          else
            g_warning ("This process was started by a liteyuki-comm hub, but its control connection is unusable: %s",
                       error != NULL ? error->message : _("no file descriptor"));

          runtime->storage_table = map_storage_table ();

          child_runtime = runtime;
        }
      g_once_init_leave (&initialized, 1);
    }
}

/* The control connection of a managed child, made on first use; NULL in
 * any other process. */
LyControl *
ly_runtime_get_control (void)
{
  ensure_child_runtime ();

  return child_runtime != NULL ? child_runtime->control : NULL;
}

/* The hub's shared storage table, for the storage proxy; NULL in any
 * other process, and after the first call. */
LyShmReader *
ly_runtime_take_storage_table (void)
{
  ensure_child_runtime ();

  if (child_runtime == NULL)
    return NULL;
  return g_atomic_pointer_exchange (&child_runtime->storage_table, NULL);
}

/**
 * ly_is_main_process:
 *
 * Tells whether this is the main process (the hub), or a child started
 * by a [class@Ly.ProcessManager].
 *
 * Returns: %FALSE in a process started by a [class@Ly.ProcessManager], %TRUE in
 *   any other (the hub, or a program on its own)
 *
 * Since: 1.0
 */
gboolean
ly_is_main_process (void)
{
  return inherited.process_name == NULL;
}

/**
 * ly_get_process_name:
 *
 * The target name of this process, as the hub that started it knows it.
 *
 * Returns: (nullable): the name of the target this process was started
 *   as by a [class@Ly.ProcessManager], or %NULL in any other process
 *
 * Since: 1.0
 */
const char *
ly_get_process_name (void)
{
  return inherited.process_name;
}

/**
 * ly_active_channel:
 *
 * In a process started by a [class@Ly.ProcessManager], this process's end of
 * `NAME-active`: the hub sends on its end, this process receives (the
 * original's `active_channel` singleton).  The channel belongs to the
 * thread-default main context of the thread that first asks for any
 * channel of the runtime.
 *
 * Returns: (transfer none) (nullable): the channel, or %NULL in a
 *   process that was not started by a hub
 *
 * Since: 1.0
 */
LyChannel *
ly_active_channel (void)
{
  ensure_child_runtime ();
  return child_runtime != NULL ? child_runtime->active : NULL;
}

/**
 * ly_passive_channel:
 *
 * In a process started by a [class@Ly.ProcessManager], this process's end of
 * `NAME-passive` (the original's `passive_channel` singleton).  See
 * ly_active_channel().
 *
 * Returns: (transfer none) (nullable): the channel, or %NULL in a
 *   process that was not started by a hub
 *
 * Since: 1.0
 */
LyChannel *
ly_passive_channel (void)
{
  ensure_child_runtime ();
  return child_runtime != NULL ? child_runtime->passive : NULL;
}

static gboolean
call_hub (const char  *method,
          GError     **error)
{
  g_autoptr(GVariant) reply = NULL;

  ensure_child_runtime ();

  if (child_runtime == NULL || child_runtime->control == NULL)
    {
      g_set_error_literal (error, LY_PROCESS_ERROR, LY_PROCESS_ERROR_NOT_A_CHILD,
                           _("This process was not started by a liteyuki-comm hub"));
      return FALSE;
    }

  reply = ly_control_call_sync (child_runtime->control, method, NULL, G_VARIANT_TYPE_UNIT,
                                LY_CONTROL_TIMEOUT_MSEC, NULL, error);
  return reply != NULL;
}

/**
 * ly_request_stop:
 * @error: return location for a #GError
 *
 * Asks the hub to stop this process (the original's `0` on the active
 * channel).  The hub emits [signal@Ly.ProcessManager::before-shutdown] and stops
 * the process as ly_process_manager_stop() does; the restart policy does
 * not apply.  Returns once the hub agreed, which may be just before the
 * end of the process.
 *
 * Returns: %TRUE if the hub agreed; %FALSE with
 *   %LY_PROCESS_ERROR_NOT_A_CHILD in a process not started by a hub
 *
 * Since: 1.0
 */
gboolean
ly_request_stop (GError **error)
{
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  return call_hub ("RequestStop", error);
}

/**
 * ly_request_restart:
 * @error: return location for a #GError
 *
 * Asks the hub to restart this process (the original's `1` on the
 * active channel): the hub emits [signal@Ly.ProcessManager::before-restart],
 * stops this process and starts a new one.
 *
 * Returns: %TRUE if the hub agreed; %FALSE with
 *   %LY_PROCESS_ERROR_NOT_A_CHILD in a process not started by a hub
 *
 * Since: 1.0
 */
gboolean
ly_request_restart (GError **error)
{
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  return call_hub ("RequestRestart", error);
}

/**
 * ly_set_stop_handler:
 * @handler: (scope notified) (nullable): called when the hub asks this
 *   process to stop, or %NULL for the default
 * @user_data: (closure handler): data for @handler
 * @destroy: (destroy user_data): frees @user_data
 *
 * Sets what a managed child does when the hub asks it to stop politely.
 * By default it closes and flushes its channels (for at most a second)
 * and exits with status 0; a program with a `SIGTERM` handler of its own
 * gets `SIGTERM` instead, so that its handler runs.  The handler runs in the main context
 * of the runtime (see ly_active_channel()).
 *
 * Since: 1.0
 */
void
ly_set_stop_handler (LyStopFunc     handler,
                     gpointer       user_data,
                     GDestroyNotify destroy)
{
  GDestroyNotify old_destroy = NULL;
  gpointer old_data = NULL;

  ensure_child_runtime ();
  if (child_runtime == NULL)
    {
      if (destroy != NULL)
        destroy (user_data);
      return;
    }

  g_mutex_lock (&child_runtime->mutex);
  old_destroy = child_runtime->stop_destroy;
  old_data = child_runtime->stop_data;
  child_runtime->stop_func = handler;
  child_runtime->stop_data = user_data;
  child_runtime->stop_destroy = destroy;
  g_mutex_unlock (&child_runtime->mutex);

  if (old_destroy != NULL)
    old_destroy (old_data);
}

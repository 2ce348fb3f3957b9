/* ly-registry.c: the process-wide table of channels, and the child runtime
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "config.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "ly-channel-private.h"
#include "ly-control-private.h"
#include "ly-i18n-private.h"
#include "ly-process-manager.h"
#include "ly-registry.h"
#include "ly-runtime-private.h"
#include "ly-storage-private.h"

/* The registry ------------------------------------------------------------ */

static GMutex registry_mutex;
static GHashTable *registry;   /* name → LyChannel (a reference) */

static void ensure_child_runtime (void);

/**
 * ly_get_channel:
 * @name: a channel name, such as `nonebot-active`
 *
 * Looks a channel up in the process-wide registry.  In the hub it holds
 * `NAME-active` and `NAME-passive` of every target of a
 * #LyProcessManager; in a managed child, the child's own two ends,
 * under the same names, so that code reads the same on both sides.
 *
 * Returns: (transfer none) (nullable): the channel, or %NULL
 */
LyChannel *
ly_get_channel (const char *name)
{
  LyChannel *channel = NULL;

  g_return_val_if_fail (name != NULL, NULL);

  ensure_child_runtime ();

  g_mutex_lock (&registry_mutex);
  if (registry != NULL)
    channel = g_hash_table_lookup (registry, name);
  g_mutex_unlock (&registry_mutex);

  return channel;
}

/**
 * ly_set_channel:
 * @name: a channel name
 * @channel: (nullable): the channel, or %NULL to remove the name
 *
 * Puts a channel in the process-wide registry under @name, replacing
 * what was there.  The registry keeps a reference.
 */
void
ly_set_channel (const char *name,
                LyChannel  *channel)
{
  g_return_if_fail (name != NULL);
  g_return_if_fail (channel == NULL || LY_IS_CHANNEL (channel));

  g_mutex_lock (&registry_mutex);
  if (registry == NULL)
    registry = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_object_unref);
  if (channel != NULL)
    g_hash_table_replace (registry, g_strdup (name), g_object_ref (channel));
  else
    g_hash_table_remove (registry, name);
  g_mutex_unlock (&registry_mutex);
}

static int
compare_names (gconstpointer a,
               gconstpointer b)
{
  return strcmp (*(const char * const *) a, *(const char * const *) b);
}

/**
 * ly_list_channels:
 *
 * Returns: (transfer full) (array zero-terminated=1): the names in the
 *   registry, sorted
 */
char **
ly_list_channels (void)
{
  g_autoptr(GPtrArray) names = g_ptr_array_new ();
  GHashTableIter iter;
  const char *name;

  ensure_child_runtime ();

  g_mutex_lock (&registry_mutex);
  if (registry != NULL)
    {
      g_hash_table_iter_init (&iter, registry);
      while (g_hash_table_iter_next (&iter, (gpointer *) &name, NULL))
        g_ptr_array_add (names, g_strdup (name));
    }
  g_mutex_unlock (&registry_mutex);

  g_ptr_array_sort (names, compare_names);
  g_ptr_array_add (names, NULL);
  return (char **) g_ptr_array_free (g_steal_pointer (&names), FALSE);
}

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
} inherited = { NULL, -1, -1, -1 };

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

__attribute__((constructor))
static void
capture_inherited_environment (void)
{
  const char *name = getenv (LY_ENV_PROCESS_NAME);

  if (name == NULL || name[0] == '\0')
    return;

  inherited.process_name = strdup (name);
  unsetenv (LY_ENV_PROCESS_NAME);
  inherited.control_fd = take_fd_variable (LY_ENV_CONTROL_FD);
  inherited.active_fd = take_fd_variable (LY_ENV_ACTIVE_FD);
  inherited.passive_fd = take_fd_variable (LY_ENV_PASSIVE_FD);
}

typedef struct
{
  LyChannel      *active;
  LyChannel      *passive;
  LyControl      *control;
  LyStorage      *storage;          /* made on first use */

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

static gboolean
cancel_flush (gpointer user_data)
{
  g_cancellable_cancel (user_data);
  return G_SOURCE_REMOVE;
}

/* The default answer to a polite stop: flush the channels (for at most
 * a second), then end the way SIGTERM ends the process, so that a
 * program's own SIGTERM handling applies. */
static void
default_stop (ChildRuntime *runtime)
{
  g_autoptr(GCancellable) cancellable = g_cancellable_new ();
  GSource *timeout = g_timeout_source_new (1000);
  LyChannel *channels[2] = { runtime->active, runtime->passive };

  g_source_set_callback (timeout, cancel_flush, cancellable, NULL);
  g_source_attach (timeout, g_main_context_get_thread_default ());

  for (guint i = 0; i < G_N_ELEMENTS (channels); i++)
    if (channels[i] != NULL)
      {
        ly_channel_close (channels[i]);
        ly_channel_flush (channels[i], cancellable, NULL);
      }

  g_source_destroy (timeout);
  g_source_unref (timeout);
  raise (SIGTERM);
}

static void
on_hub_request (LyControl  *control,
                guint32     serial,
                const char *method,
                GVariant   *args,
                gpointer    user_data)
{
  ChildRuntime *runtime = user_data;
  LyStorage *storage;

  g_mutex_lock (&runtime->mutex);
  storage = runtime->storage;
  g_mutex_unlock (&runtime->mutex);

  /* notifications for a storage nobody asked for have no listener */
  if (g_str_has_prefix (method, "Storage") && serial == 0)
    {
      if (storage != NULL)
        ly_storage_handle_notification (storage, method, args);
      return;
    }

  if (g_str_equal (method, "Stop"))
    {
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
  else if (serial != 0)
    {
      g_autoptr(GError) error = g_error_new (G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED,
                                             _("This process does not know the request “%s”"), method);
      ly_control_reply_error (control, serial, error);
    }
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
            runtime->control = ly_control_new (control, on_hub_request, runtime);
          else
            g_warning ("This process was started by a liteyuki-comm hub, but its control connection is unusable: %s",
                       error != NULL ? error->message : _("no file descriptor"));

          child_runtime = runtime;
        }
      g_once_init_leave (&initialized, 1);
    }
}

LyStorage *
ly_runtime_storage (void)
{
  LyStorage *storage = NULL;

  ensure_child_runtime ();
  if (child_runtime == NULL || child_runtime->control == NULL)
    return NULL;

  g_mutex_lock (&child_runtime->mutex);
  if (child_runtime->storage == NULL)
    child_runtime->storage = ly_storage_new_proxy (child_runtime->control);
  storage = child_runtime->storage;
  g_mutex_unlock (&child_runtime->mutex);

  return storage;
}

/**
 * ly_is_main_process:
 *
 * Returns: %FALSE in a process started by a #LyProcessManager, %TRUE in
 *   any other (the hub, or a program on its own)
 */
gboolean
ly_is_main_process (void)
{
  return inherited.process_name == NULL;
}

/**
 * ly_get_process_name:
 *
 * Returns: (nullable): the name of the target this process was started
 *   as by a #LyProcessManager, or %NULL in any other process
 */
const char *
ly_get_process_name (void)
{
  return inherited.process_name;
}

/**
 * ly_active_channel:
 *
 * In a process started by a #LyProcessManager, this process's end of
 * `NAME-active`: the hub sends on its end, this process receives (the
 * original's `active_channel` singleton).  The channel belongs to the
 * thread-default main context of the thread that first asks for any
 * channel of the runtime.
 *
 * Returns: (transfer none) (nullable): the channel, or %NULL in a
 *   process that was not started by a hub
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
 * In a process started by a #LyProcessManager, this process's end of
 * `NAME-passive` (the original's `passive_channel` singleton).  See
 * ly_active_channel().
 *
 * Returns: (transfer none) (nullable): the channel, or %NULL in a
 *   process that was not started by a hub
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

  reply = ly_control_call_sync (child_runtime->control, method, NULL,
                                LY_CONTROL_TIMEOUT_MSEC, NULL, error);
  return reply != NULL;
}

/**
 * ly_request_stop:
 * @error: return location for a #GError
 *
 * Asks the hub to stop this process (the original's `0` on the active
 * channel).  The hub emits #LyProcessManager::before-shutdown and stops
 * the process as ly_process_manager_stop() does; the restart policy does
 * not apply.  Returns once the hub agreed, which may be just before the
 * end of the process.
 *
 * Returns: %TRUE if the hub agreed; %FALSE with
 *   %LY_PROCESS_ERROR_NOT_A_CHILD in a process not started by a hub
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
 * active channel): the hub emits #LyProcessManager::before-restart,
 * stops this process and starts a new one.
 *
 * Returns: %TRUE if the hub agreed; %FALSE with
 *   %LY_PROCESS_ERROR_NOT_A_CHILD in a process not started by a hub
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
 * and raises `SIGTERM` in itself.  The handler runs in the main context
 * of the runtime (see ly_active_channel()).
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

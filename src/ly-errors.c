/* ly-errors.c: the error domains, registered with GDBus so that they
 * cross D-Bus and the control connection with their domain and code
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "config.h"

#include <gio/gio.h>

#include "ly-errors.h"
#include "ly-i18n-private.h"

/* Registered on first use: from then on a GError of the domain crosses
 * D-Bus (and the control connection, which encodes errors the same way)
 * as icu.liteyuki.Comm1.Error.*, and comes back with its domain and
 * code.  Messages are translated, so the translations are set up first. */
static GQuark
register_domain (const char            *name,
                 gsize                 *quark,
                 const GDBusErrorEntry *entries,
                 guint                  n_entries)
{
  ly_i18n_init ();
  g_dbus_error_register_error_domain (name, quark, entries, n_entries);
  return (GQuark) *quark;
}

static const GDBusErrorEntry channel_error_entries[] = {
  { LY_CHANNEL_ERROR_CLOSED,        "icu.liteyuki.Comm1.Error.Channel.Closed" },
  { LY_CHANNEL_ERROR_TYPE_MISMATCH, "icu.liteyuki.Comm1.Error.Channel.TypeMismatch" },
  { LY_CHANNEL_ERROR_TOO_LARGE,     "icu.liteyuki.Comm1.Error.Channel.TooLarge" },
  { LY_CHANNEL_ERROR_MODE,          "icu.liteyuki.Comm1.Error.Channel.Mode" },
  { LY_CHANNEL_ERROR_FULL,          "icu.liteyuki.Comm1.Error.Channel.Full" },
  { LY_CHANNEL_ERROR_PROTOCOL,      "icu.liteyuki.Comm1.Error.Channel.Protocol" },
  { LY_CHANNEL_ERROR_DISCONNECTED,  "icu.liteyuki.Comm1.Error.Channel.Disconnected" },
};

G_STATIC_ASSERT (G_N_ELEMENTS (channel_error_entries) == LY_CHANNEL_ERROR_DISCONNECTED + 1);

/**
 * ly_channel_error_quark:
 *
 * The error domain of channels, [error@Ly.ChannelError], registered with GDBus.
 *
 * Returns: the quark of the domain
 *
 * Since: 1.0
 */
GQuark
ly_channel_error_quark (void)
{
  static gsize quark = 0;

  return register_domain ("ly-channel-error-quark", &quark, channel_error_entries,
                          G_N_ELEMENTS (channel_error_entries));
}

static const GDBusErrorEntry process_error_entries[] = {
  { LY_PROCESS_ERROR_INVALID_NAME,   "icu.liteyuki.Comm1.Error.Process.InvalidName" },
  { LY_PROCESS_ERROR_EXISTS,         "icu.liteyuki.Comm1.Error.Process.Exists" },
  { LY_PROCESS_ERROR_UNKNOWN_TARGET, "icu.liteyuki.Comm1.Error.Process.UnknownTarget" },
  { LY_PROCESS_ERROR_RUNNING,        "icu.liteyuki.Comm1.Error.Process.Running" },
  { LY_PROCESS_ERROR_SPAWN_FAILED,   "icu.liteyuki.Comm1.Error.Process.SpawnFailed" },
  { LY_PROCESS_ERROR_NOT_A_CHILD,    "icu.liteyuki.Comm1.Error.Process.NotAChild" },
  { LY_PROCESS_ERROR_STOPPED,        "icu.liteyuki.Comm1.Error.Process.Stopped" },
  { LY_PROCESS_ERROR_INVALID_ARGUMENT, "icu.liteyuki.Comm1.Error.Process.InvalidArgument" },
};

G_STATIC_ASSERT (G_N_ELEMENTS (process_error_entries) == LY_PROCESS_ERROR_INVALID_ARGUMENT + 1);

/**
 * ly_process_error_quark:
 *
 * The error domain of the process manager and the child runtime, [error@Ly.ProcessError], registered with GDBus.
 *
 * Returns: the quark of the domain
 *
 * Since: 1.0
 */
GQuark
ly_process_error_quark (void)
{
  static gsize quark = 0;

  return register_domain ("ly-process-error-quark", &quark, process_error_entries,
                          G_N_ELEMENTS (process_error_entries));
}

static const GDBusErrorEntry storage_error_entries[] = {
  { LY_STORAGE_ERROR_INVALID_KEY, "icu.liteyuki.Comm1.Error.Storage.InvalidKey" },
  { LY_STORAGE_ERROR_TOO_LARGE,   "icu.liteyuki.Comm1.Error.Storage.TooLarge" },
  { LY_STORAGE_ERROR_NO_SUCH_KEY, "icu.liteyuki.Comm1.Error.Storage.NoSuchKey" },
  { LY_STORAGE_ERROR_UNAVAILABLE, "icu.liteyuki.Comm1.Error.Storage.Unavailable" },
  { LY_STORAGE_ERROR_INVALID_URI, "icu.liteyuki.Comm1.Error.Storage.InvalidUri" },
  { LY_STORAGE_ERROR_PERMISSION_DENIED, "icu.liteyuki.Comm1.Error.Storage.PermissionDenied" },
  { LY_STORAGE_ERROR_QUOTA,       "icu.liteyuki.Comm1.Error.Storage.Quota" },
};

G_STATIC_ASSERT (G_N_ELEMENTS (storage_error_entries) == LY_STORAGE_ERROR_QUOTA + 1);

/**
 * ly_storage_error_quark:
 *
 * The error domain of the storage, [error@Ly.StorageError], registered with GDBus.
 *
 * Returns: the quark of the domain
 *
 * Since: 1.0
 */
GQuark
ly_storage_error_quark (void)
{
  static gsize quark = 0;

  return register_domain ("ly-storage-error-quark", &quark, storage_error_entries,
                          G_N_ELEMENTS (storage_error_entries));
}

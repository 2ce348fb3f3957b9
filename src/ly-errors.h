/* ly-errors.h: the error domains of the library, in one place
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#if !defined(LITEYUKI_COMM_INSIDE) && !defined(LITEYUKI_COMM_COMPILATION)
# error "Only <liteyuki-comm.h> can be included directly."
#endif

#include <glib.h>

#include "ly-version-macros.h"

G_BEGIN_DECLS

/**
 * LY_CHANNEL_ERROR:
 *
 * The error domain of channels.  Errors of this domain cross D-Bus as
 * `icu.liteyuki.Comm1.Error.Channel.*`.
 *
 * Since: 1.0
 */
#define LY_CHANNEL_ERROR (ly_channel_error_quark ())

/**
 * LyChannelError:
 * @LY_CHANNEL_ERROR_CLOSED: the channel is closed
 * @LY_CHANNEL_ERROR_TYPE_MISMATCH: the message is not of the channel's [property@Ly.Channel:message-type]
 * @LY_CHANNEL_ERROR_TOO_LARGE: the message is larger than [property@Ly.Channel:max-message-size]
 * @LY_CHANNEL_ERROR_MODE: the call does not fit the channel's [property@Ly.Channel:mode]
 * @LY_CHANNEL_ERROR_FULL: the send queue is over [property@Ly.Channel:max-queued-bytes]
 * @LY_CHANNEL_ERROR_PROTOCOL: the peer sent something that is not valid
 *   in the wire protocol; the connection was closed
 * @LY_CHANNEL_ERROR_DISCONNECTED: the peer went away without closing the
 *   channel (it crashed or was killed), or the connection failed
 *
 * Errors of [error@Ly.ChannelError].
 *
 * Since: 1.0
 */
typedef enum
{
  LY_CHANNEL_ERROR_CLOSED,
  LY_CHANNEL_ERROR_TYPE_MISMATCH,
  LY_CHANNEL_ERROR_TOO_LARGE,
  LY_CHANNEL_ERROR_MODE,
  LY_CHANNEL_ERROR_FULL,
  LY_CHANNEL_ERROR_PROTOCOL,
  LY_CHANNEL_ERROR_DISCONNECTED,
} LyChannelError;

/**
 * LY_PROCESS_ERROR:
 *
 * The error domain of the process manager and of the child runtime.
 * Errors of this domain cross D-Bus as `icu.liteyuki.Comm1.Error.Process.*`.
 *
 * Since: 1.0
 */
#define LY_PROCESS_ERROR (ly_process_error_quark ())

/**
 * LyProcessError:
 * @LY_PROCESS_ERROR_INVALID_NAME: a target name is empty, too long, or
 *   has characters other than ASCII letters, digits, `_`, `-` and `.`
 * @LY_PROCESS_ERROR_EXISTS: a target of that name exists already
 * @LY_PROCESS_ERROR_UNKNOWN_TARGET: no target has that name
 * @LY_PROCESS_ERROR_RUNNING: the target is running already
 * @LY_PROCESS_ERROR_SPAWN_FAILED: the process could not be started
 * @LY_PROCESS_ERROR_NOT_A_CHILD: the call is for a process started by a
 *   [class@Ly.ProcessManager], and this one was not
 * @LY_PROCESS_ERROR_STOPPED: the target was stopped before the operation
 *   could complete
 * @LY_PROCESS_ERROR_INVALID_ARGUMENT: a command, an environment variable or
 *   a timeout given for a target is not valid
 *
 * Errors of [error@Ly.ProcessError].
 *
 * Since: 1.0
 */
typedef enum
{
  LY_PROCESS_ERROR_INVALID_NAME,
  LY_PROCESS_ERROR_EXISTS,
  LY_PROCESS_ERROR_UNKNOWN_TARGET,
  LY_PROCESS_ERROR_RUNNING,
  LY_PROCESS_ERROR_SPAWN_FAILED,
  LY_PROCESS_ERROR_NOT_A_CHILD,
  LY_PROCESS_ERROR_STOPPED,
  LY_PROCESS_ERROR_INVALID_ARGUMENT,
} LyProcessError;

/**
 * LY_STORAGE_ERROR:
 *
 * The error domain of the storage.  Errors of this domain cross D-Bus as
 * `icu.liteyuki.Comm1.Error.Storage.*`.
 *
 * Since: 1.0
 */
#define LY_STORAGE_ERROR (ly_storage_error_quark ())

/**
 * LyStorageError:
 * @LY_STORAGE_ERROR_INVALID_KEY: a key or topic is empty, longer than
 *   %LY_STORAGE_MAX_KEY_LENGTH bytes, or not valid UTF-8
 * @LY_STORAGE_ERROR_TOO_LARGE: a value is larger than
 *   [property@Ly.Storage:max-value-size]
 * @LY_STORAGE_ERROR_UNAVAILABLE: the store behind the storage (a Redis
 *   server) cannot be reached, refused the connection, or did not answer
 *   within [property@Ly.Storage:timeout]; nothing was changed, or the change is not
 *   known to have been made
 * @LY_STORAGE_ERROR_INVALID_URI: a storage URI is not one that
 *   ly_storage_new_for_uri() understands
 * @LY_STORAGE_ERROR_NO_SUCH_KEY: the key does not exist (only D-Bus's
 *   Get says so: ly_storage_get() returns %NULL)
 * @LY_STORAGE_ERROR_PERMISSION_DENIED: the hub's policy for this process
 *   does not let it read or write that key or topic
 * @LY_STORAGE_ERROR_QUOTA: the operation would take this process past a
 *   quota of the hub's policy (keys, bytes or subscriptions)
 *
 * Errors of [error@Ly.StorageError].
 *
 * Since: 1.0
 */
typedef enum
{
  LY_STORAGE_ERROR_INVALID_KEY,
  LY_STORAGE_ERROR_TOO_LARGE,
  LY_STORAGE_ERROR_NO_SUCH_KEY,
  LY_STORAGE_ERROR_UNAVAILABLE,
  LY_STORAGE_ERROR_INVALID_URI,
  LY_STORAGE_ERROR_PERMISSION_DENIED,
  LY_STORAGE_ERROR_QUOTA,
} LyStorageError;

LY_AVAILABLE_IN_ALL
GQuark ly_channel_error_quark (void);
LY_AVAILABLE_IN_ALL
GQuark ly_process_error_quark (void);
LY_AVAILABLE_IN_ALL
GQuark ly_storage_error_quark (void);

G_END_DECLS

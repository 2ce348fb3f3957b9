/* ly-dbus.h: the hub on D-Bus
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#if !defined(LITEYUKI_COMM_INSIDE) && !defined(LITEYUKI_COMM_COMPILATION)
# error "Only <liteyuki-comm.h> can be included directly."
#endif

#include <gio/gio.h>

#include "ly-process-manager.h"
#include "ly-storage.h"
#include "ly-version-macros.h"

G_BEGIN_DECLS

/**
 * LY_DBUS_NAME:
 *
 * The default well-known name of a hub on the session bus.
 *
 * Since: 1.0
 */
#define LY_DBUS_NAME "icu.liteyuki.Comm1"

/**
 * LY_DBUS_STORAGE_PATH:
 *
 * The object path of `icu.liteyuki.Comm1.Storage`.
 *
 * Since: 1.0
 */
#define LY_DBUS_STORAGE_PATH "/icu/liteyuki/Comm1/Storage"

/**
 * LY_DBUS_MANAGER_PATH:
 *
 * The object path of `icu.liteyuki.Comm1.Manager`.
 *
 * Since: 1.0
 */
#define LY_DBUS_MANAGER_PATH "/icu/liteyuki/Comm1/Manager"

/**
 * LY_DBUS_WRAPPED_VALUE:
 *
 * The tag of the wrapped form `(ssay)` in which a value D-Bus cannot
 * carry crosses it (see ly_dbus_value_to_wire()).
 *
 * Since: 1.0
 */
#define LY_DBUS_WRAPPED_VALUE "icu.liteyuki.Comm1.Value"

/**
 * LY_DBUS_MAX_MESSAGE_SIZE:
 *
 * The largest D-Bus reply the hub sends (32 MiB, the reference bus's
 * default limit): a bus disconnects a peer that sends more.  A GetAll
 * that would be larger fails with %LY_STORAGE_ERROR_TOO_LARGE.
 *
 * Since: 1.0
 */
#define LY_DBUS_MAX_MESSAGE_SIZE (32 * 1024 * 1024)

LY_AVAILABLE_IN_ALL
GVariant    *ly_dbus_value_to_wire       (GVariant          *value);
LY_AVAILABLE_IN_ALL
GVariant    *ly_dbus_value_from_wire     (GVariant          *value,
                                          GError           **error);

LY_AVAILABLE_IN_ALL
gboolean     ly_storage_export           (LyStorage         *self,
                                          GDBusConnection   *connection,
                                          GError           **error);
LY_AVAILABLE_IN_ALL
void         ly_storage_unexport         (LyStorage         *self,
                                          GDBusConnection   *connection);
LY_AVAILABLE_IN_ALL
gboolean     ly_process_manager_export   (LyProcessManager  *self,
                                          GDBusConnection   *connection,
                                          GError           **error);
LY_AVAILABLE_IN_ALL
void         ly_process_manager_unexport (LyProcessManager  *self,
                                          GDBusConnection   *connection);

G_END_DECLS

/* ly-dbus-server.h: the hub's private D-Bus server, for when there is no
 * session bus
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

#define LY_TYPE_DBUS_SERVER (ly_dbus_server_get_type ())

LY_AVAILABLE_IN_ALL
G_DECLARE_FINAL_TYPE (LyDBusServer, ly_dbus_server, LY, DBUS_SERVER, GObject)

LY_AVAILABLE_IN_ALL
LyDBusServer *ly_dbus_server_new                (const char        *address,
                                                 LyProcessManager  *manager,
                                                 LyStorage         *storage,
                                                 GError           **error);
LY_AVAILABLE_IN_ALL
const char   *ly_dbus_server_get_client_address (LyDBusServer      *self);
LY_AVAILABLE_IN_ALL
void          ly_dbus_server_stop               (LyDBusServer      *self);
LY_AVAILABLE_IN_ALL
char         *ly_dbus_server_find_address       (void);

G_END_DECLS

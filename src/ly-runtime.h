/* ly-runtime.h: what a child started by a LyProcessManager knows of its hub
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#if !defined(LITEYUKI_COMM_INSIDE) && !defined(LITEYUKI_COMM_COMPILATION)
# error "Only <liteyuki-comm.h> can be included directly."
#endif

#include "ly-channel.h"

G_BEGIN_DECLS

/**
 * LyStopFunc:
 * @user_data: the data given to ly_set_stop_handler()
 *
 * Called in a managed child when the hub asks it to stop politely.  It
 * should make the process end soon: the hub sends `SIGTERM`, then
 * `SIGKILL`, when it does not.
 *
 * Since: 1.0
 */
typedef void (*LyStopFunc) (gpointer user_data);

LY_AVAILABLE_IN_ALL
gboolean    ly_is_main_process   (void);
LY_AVAILABLE_IN_ALL
const char *ly_get_process_name  (void);
LY_AVAILABLE_IN_ALL
LyChannel  *ly_active_channel    (void);
LY_AVAILABLE_IN_ALL
LyChannel  *ly_passive_channel   (void);
LY_AVAILABLE_IN_ALL
gboolean    ly_request_stop      (GError        **error);
LY_AVAILABLE_IN_ALL
gboolean    ly_request_restart   (GError        **error);
LY_AVAILABLE_IN_ALL
void        ly_set_stop_handler  (LyStopFunc      handler,
                                  gpointer        user_data,
                                  GDestroyNotify  destroy);

G_END_DECLS

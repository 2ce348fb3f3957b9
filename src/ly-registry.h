/* ly-registry.h: the process-wide table of channels
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#if !defined(LITEYUKI_COMM_INSIDE) && !defined(LITEYUKI_COMM_COMPILATION)
# error "Only <liteyuki-comm.h> can be included directly."
#endif

#include "ly-channel.h"

G_BEGIN_DECLS

LY_AVAILABLE_IN_ALL
LyChannel  *ly_get_channel       (const char     *name);
LY_AVAILABLE_IN_ALL
void        ly_set_channel       (const char     *name,
                                  LyChannel      *channel);
LY_AVAILABLE_IN_ALL
char      **ly_list_channels     (void);

G_END_DECLS

/* ly-context-private.h: who runs a main context
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#include <glib.h>

G_BEGIN_DECLS

gboolean ly_context_will_dispatch (GMainContext *context);

G_END_DECLS

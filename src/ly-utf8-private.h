/* ly-utf8-private.h: UTF-8 validation at memory speed
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#include <glib.h>

G_BEGIN_DECLS

gboolean ly_utf8_validate (const char *text,
                           gsize       length);

G_END_DECLS

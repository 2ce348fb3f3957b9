/* ly-variant-private.h: checking received GVariant data
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#include <glib.h>

G_BEGIN_DECLS

gboolean ly_variant_is_surely_normal (const char   *type,
                                      const guint8 *data,
                                      gsize         size);

gboolean ly_variant_same             (GVariant     *a,
                                      GVariant     *b);

G_END_DECLS

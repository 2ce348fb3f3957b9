/* ly-i18n-private.h: translations of the library's messages
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#include "config.h"

#include <glib/gi18n-lib.h>

G_BEGIN_DECLS

void ly_i18n_init (void);

G_END_DECLS

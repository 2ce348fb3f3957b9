/* ly-registry-private.h
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* Called before every lookup in the registry: the child runtime puts its
 * channels there on first use.  The registry knows no more of it. */
typedef void (*LyRegistryLoader) (void);

void ly_registry_set_loader (LyRegistryLoader loader);

G_END_DECLS

/* ly-version-macros.h: symbol visibility for the public API
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#if !defined(LITEYUKI_COMM_INSIDE) && !defined(LITEYUKI_COMM_COMPILATION)
# error "Only <liteyuki-comm.h> can be included directly."
#endif

#include <glib.h>

/* The library is built with -fvisibility=hidden: only symbols marked
 * LY_AVAILABLE_IN_ALL are exported. */
#if defined(LITEYUKI_COMM_COMPILATION) && defined(__GNUC__)
# define _LY_EXTERN __attribute__((visibility("default"))) extern
#else
# define _LY_EXTERN extern
#endif

#define LY_AVAILABLE_IN_ALL _LY_EXTERN

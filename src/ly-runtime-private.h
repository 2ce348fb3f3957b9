/* ly-runtime-private.h: what a hub tells the children it starts
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* A child started by a LyProcessManager finds its connections to the hub
 * in these file descriptors, named in these environment variables, which
 * the library removes at load time so that grandchildren do not inherit
 * them. */
#define LY_ENV_PROCESS_NAME  "LY_PROCESS_NAME"
#define LY_ENV_CONTROL_FD    "LY_CONTROL_FD"
#define LY_ENV_ACTIVE_FD     "LY_ACTIVE_FD"
#define LY_ENV_PASSIVE_FD    "LY_PASSIVE_FD"
#define LY_ENV_STORAGE_FD    "LY_STORAGE_FD"   /* the storage's shared table, if any */

#define LY_CHILD_CONTROL_FD  3
#define LY_CHILD_ACTIVE_FD   4
#define LY_CHILD_PASSIVE_FD  5
#define LY_CHILD_STORAGE_FD  6

typedef struct _LyControl LyControl;

typedef struct _LyShmReader LyShmReader;

LyControl   *ly_runtime_get_control       (void);
LyShmReader *ly_runtime_take_storage_table (void);

G_END_DECLS

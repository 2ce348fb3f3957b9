/* ly-process-groups-private.h: the process groups of a hub's children,
 * killed when the hub dies
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#include <glib.h>

G_BEGIN_DECLS

typedef struct _LyProcessGroups LyProcessGroups;

LyProcessGroups *ly_process_groups_new    (void);
void             ly_process_groups_free   (LyProcessGroups *groups);
void             ly_process_groups_add    (LyProcessGroups *groups,
                                           GPid             leader);
void             ly_process_groups_remove (LyProcessGroups *groups,
                                           GPid             leader);
void             ly_process_groups_signal (GPid             leader,
                                           int              signo);

/* For a child between fork and exec: a process group of its own. */
void             ly_process_groups_enter_own (void);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (LyProcessGroups, ly_process_groups_free)

G_END_DECLS

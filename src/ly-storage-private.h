/* ly-storage-private.h: what the rest of the library uses of LyStorage
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#include "ly-control-private.h"
#include "ly-storage.h"

G_BEGIN_DECLS

typedef enum
{
  LY_STORAGE_EVENT_CHANGED,
  LY_STORAGE_EVENT_PUBLISHED,
  LY_STORAGE_EVENT_MISSED,     /* no name, no value */
} LyStorageEventKind;

/* Called in the storage's context for every change, every publication
 * (subscribed or not) and every report of missed changes (the D-Bus
 * surface). */
typedef void (*LyStorageMonitor) (LyStorage          *storage,
                                  LyStorageEventKind  kind,
                                  const char         *name,
                                  GVariant           *value,
                                  gpointer            user_data);

void       ly_storage_add_monitor     (LyStorage        *self,
                                       LyStorageMonitor  func,
                                       gpointer          data);
void       ly_storage_remove_monitor  (LyStorage        *self,
                                       LyStorageMonitor  func,
                                       gpointer          data);

/* The hub's storage serves a child's requests on @control (see
 * ly-storage-server.c) from add_peer until remove_peer, which must be
 * called in the control's context; within @policy (copied; NULL:
 * everything is shared). */
typedef struct _LyStoragePolicy LyStoragePolicy;

void       ly_storage_add_peer        (LyStorage              *self,
                                       LyControl              *control,
                                       const LyStoragePolicy  *policy);
void       ly_storage_remove_peer     (LyStorage  *self,
                                       LyControl  *control);

int        ly_storage_get_shared_fd   (LyStorage  *self);

gboolean   ly_storage_delete_existed  (LyStorage   *self,
                                       const char  *key,
                                       gboolean    *existed,
                                       GError     **error);

G_END_DECLS

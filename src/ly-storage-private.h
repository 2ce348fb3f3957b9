/* ly-storage-private.h
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#include "ly-control-private.h"
#include "ly-storage.h"

G_BEGIN_DECLS

/*
 * The storage on the control connection
 * =====================================
 *
 * A child's storage is a proxy: each operation is a request to the hub,
 * which applies it to the authoritative store, in one order for all.
 *
 *     StorageSet (sv)                  → (b) whether it changed the value
 *     StorageSetMany ay (a payload)    → (aba(us)) changed flags, and the
 *                                        sets refused (index, message);
 *                                        the ay holds wire frames (see
 *                                        ly-wire-private.h): key (s), value
 *     StorageGet (s)                   → (mv)
 *     StorageDelete (s)                → (b) whether the key existed
 *     StorageContains (s)              → (b)
 *     StorageListKeys ()               → (as)
 *     StorageGetAll ()                 → (a{sv})
 *     StorageCompareAndSet (smvmv)     → (bb) swapped, changed
 *     StoragePublish (sv)              → ()
 *     StorageSubscribe (s), StorageUnsubscribe (s) → ()
 *
 * The hub notifies every child of every change (StorageChanged (smv),
 * except the one that made it, whose reply says so) and every subscriber
 * of every publication (StoragePublished (sv)).
 */

typedef void (*LyStorageMonitor) (LyStorage  *storage,
                                  gboolean    publication,
                                  const char *name,
                                  GVariant   *value,
                                  gpointer    user_data);

LyStorage *ly_storage_new_proxy            (LyControl  *control);
void       ly_storage_add_monitor          (LyStorage        *self,
                                            LyStorageMonitor  func,
                                            gpointer          data);
void       ly_storage_remove_monitor       (LyStorage        *self,
                                            LyStorageMonitor  func,
                                            gpointer          data);
void       ly_storage_add_peer             (LyStorage  *self,
                                            LyControl  *control);
void       ly_storage_remove_peer          (LyStorage  *self,
                                            LyControl  *control);
gboolean   ly_storage_handle_request       (LyStorage  *self,
                                            LyControl  *control,
                                            guint32     serial,
                                            const char *method,
                                            GVariant   *args);
gboolean   ly_storage_handle_notification  (LyStorage  *self,
                                            const char *method,
                                            GVariant   *args);

G_END_DECLS

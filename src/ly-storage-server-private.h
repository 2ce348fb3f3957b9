/* ly-storage-server-private.h: the hub serves its children's storage
 * requests (see ly-storage-server.c)
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#include "ly-storage-backend-private.h"
#include "ly-storage-policy-private.h"

G_BEGIN_DECLS

typedef struct _LyStorageServer LyStorageServer;

LyStorageServer *ly_storage_server_new                (LyStorageBackend *backend,
                                                       gsize             max_value_size);
void             ly_storage_server_free               (LyStorageServer  *self);
void             ly_storage_server_set_max_value_size (LyStorageServer  *self,
                                                       gsize             max_value_size);
void             ly_storage_server_add_peer           (LyStorageServer       *self,
                                                       LyControl             *control,
                                                       const LyStoragePolicy *policy);
void             ly_storage_server_remove_peer        (LyStorageServer  *self,
                                                       LyControl        *control);
void             ly_storage_server_notify_changed     (LyStorageServer  *self,
                                                       const char       *key,
                                                       GVariant         *value,
                                                       gconstpointer     origin);
void             ly_storage_server_notify_published   (LyStorageServer  *self,
                                                       const char       *topic,
                                                       GVariant         *value);

void             ly_storage_server_notify_missed      (LyStorageServer  *self);

G_END_DECLS

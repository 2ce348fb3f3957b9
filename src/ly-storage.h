/* ly-storage.h: one key-value storage shared by every process, with
 * publish/subscribe
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#if !defined(LITEYUKI_COMM_INSIDE) && !defined(LITEYUKI_COMM_COMPILATION)
# error "Only <liteyuki-comm.h> can be included directly."
#endif

#include <gio/gio.h>

#include "ly-errors.h"
#include "ly-version-macros.h"

G_BEGIN_DECLS

/**
 * LY_STORAGE_MAX_KEY_LENGTH:
 *
 * The longest key or topic, in bytes: 1 KiB.
 *
 * Since: 1.0
 */
#define LY_STORAGE_MAX_KEY_LENGTH 1024

/**
 * LY_STORAGE_DEFAULT_MAX_VALUE_SIZE:
 *
 * The default of [property@Ly.Storage:max-value-size]: the channel limit (16 MiB)
 * less room for the request around the value.
 *
 * Since: 1.0
 */
#define LY_STORAGE_DEFAULT_MAX_VALUE_SIZE (16 * 1024 * 1024 - 64 * 1024)

#define LY_TYPE_STORAGE (ly_storage_get_type ())

LY_AVAILABLE_IN_ALL
G_DECLARE_FINAL_TYPE (LyStorage, ly_storage, LY, STORAGE, GObject)


LY_AVAILABLE_IN_ALL
LyStorage *ly_storage_get_default       (void);
LY_AVAILABLE_IN_ALL
LyStorage *ly_storage_new               (void);
LY_AVAILABLE_IN_ALL
LyStorage *ly_storage_new_for_uri       (const char           *uri,
                                         GError              **error);
LY_AVAILABLE_IN_ALL
gboolean   ly_storage_set_default       (LyStorage            *storage);
LY_AVAILABLE_IN_ALL
gboolean   ly_storage_is_proxy          (LyStorage            *self);

LY_AVAILABLE_IN_ALL
gboolean   ly_storage_set               (LyStorage            *self,
                                         const char           *key,
                                         GVariant             *value,
                                         GError              **error);
LY_AVAILABLE_IN_ALL
void       ly_storage_set_async         (LyStorage            *self,
                                         const char           *key,
                                         GVariant             *value,
                                         GCancellable         *cancellable,
                                         GAsyncReadyCallback   callback,
                                         gpointer              user_data);
LY_AVAILABLE_IN_ALL
gboolean   ly_storage_set_finish        (LyStorage            *self,
                                         GAsyncResult         *result,
                                         GError              **error);

LY_AVAILABLE_IN_ALL
GVariant  *ly_storage_get               (LyStorage            *self,
                                         const char           *key,
                                         GError              **error);
LY_AVAILABLE_IN_ALL
void       ly_storage_get_async         (LyStorage            *self,
                                         const char           *key,
                                         GCancellable         *cancellable,
                                         GAsyncReadyCallback   callback,
                                         gpointer              user_data);
LY_AVAILABLE_IN_ALL
GVariant  *ly_storage_get_finish        (LyStorage            *self,
                                         GAsyncResult         *result,
                                         GError              **error);

LY_AVAILABLE_IN_ALL
gboolean   ly_storage_delete            (LyStorage            *self,
                                         const char           *key,
                                         GError              **error);
LY_AVAILABLE_IN_ALL
gboolean   ly_storage_contains          (LyStorage            *self,
                                         const char           *key,
                                         GError              **error);
LY_AVAILABLE_IN_ALL
char     **ly_storage_list_keys         (LyStorage            *self,
                                         GError              **error);
LY_AVAILABLE_IN_ALL
GVariant  *ly_storage_get_all           (LyStorage            *self,
                                         GError              **error);

LY_AVAILABLE_IN_ALL
gboolean   ly_storage_compare_and_set   (LyStorage            *self,
                                         const char           *key,
                                         GVariant             *expected,
                                         GVariant             *value,
                                         GError              **error);
LY_AVAILABLE_IN_ALL
void       ly_storage_compare_and_set_async  (LyStorage       *self,
                                              const char      *key,
                                              GVariant        *expected,
                                              GVariant        *value,
                                              GCancellable    *cancellable,
                                              GAsyncReadyCallback callback,
                                              gpointer         user_data);
LY_AVAILABLE_IN_ALL
gboolean   ly_storage_compare_and_set_finish (LyStorage       *self,
                                              GAsyncResult    *result,
                                              gboolean        *swapped,
                                              GError         **error);

LY_AVAILABLE_IN_ALL
gboolean   ly_storage_publish           (LyStorage            *self,
                                         const char           *topic,
                                         GVariant             *value,
                                         GError              **error);
LY_AVAILABLE_IN_ALL
void       ly_storage_publish_async     (LyStorage            *self,
                                         const char           *topic,
                                         GVariant             *value,
                                         GCancellable         *cancellable,
                                         GAsyncReadyCallback   callback,
                                         gpointer              user_data);
LY_AVAILABLE_IN_ALL
gboolean   ly_storage_publish_finish    (LyStorage            *self,
                                         GAsyncResult         *result,
                                         GError              **error);
LY_AVAILABLE_IN_ALL
gboolean   ly_storage_subscribe         (LyStorage            *self,
                                         const char           *topic,
                                         GError              **error);
LY_AVAILABLE_IN_ALL
gboolean   ly_storage_unsubscribe       (LyStorage            *self,
                                         const char           *topic,
                                         GError              **error);

G_END_DECLS

/* ly-control-private.h: requests and replies between the hub and a child
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#include "ly-channel.h"

G_BEGIN_DECLS

/*
 * The control connection
 * ======================
 *
 * Every child has one, besides its two channels: a LyChannel in passive
 * mode that carries three kinds of messages, told apart by their type.
 *
 *     (usv)  request       serial > 0, method, arguments
 *     (usv)  notification  serial 0, method, arguments: no reply
 *     (ust)  payload request  serial > 0, method, and the size of the `ay`
 *                          frame that follows at once: the argument
 *     (ubv)  reply         serial of the request, success, and the result,
 *                          or on failure (ss): the D-Bus name of the
 *                          GError (its registered domain and code, see
 *                          ly-errors.c) and its message
 *
 * Either side sends requests and notifications; replies come in any
 * order.  Each side serves the methods that its components registered
 * with ly_control_add_handler(), each with the type of its arguments:
 * a request for a method nobody registered, or with arguments of
 * another type, is answered with an error (G_IO_ERROR_NOT_SUPPORTED,
 * G_IO_ERROR_INVALID_ARGUMENT) without reaching any handler; such a
 * notification is dropped.  A caller names the type of the reply it
 * expects, and gets LY_CHANNEL_ERROR_PROTOCOL for any other, as
 * g_dbus_connection_call_sync() does.
 *
 * Who serves what:
 *   the hub's process manager   RequestStop (), RequestRestart ()
 *   the hub's storage server    Storage* (see ly-storage-server.c)
 *   a child's runtime           Stop () (a notification)
 *   a child's storage proxy     StorageChanged, StoragePublished
 *                               (notifications, ly-storage-proxy.c)
 *
 * Batches
 * -------
 * Many values travel as one payload (ly_control_call_batch()): an `ay`
 * of wire frames, which the receiver checks at memory speed and
 * unpacks with ly_control_batch_unpack().  A reply that reports the
 * failures of single items uses ly_control_error_to_variant() for each,
 * so that they keep their domain and code.
 */

/* How long a child's blocking request to the hub may take. */
#define LY_CONTROL_TIMEOUT_MSEC (10 * 1000)

#define LY_TYPE_CONTROL (ly_control_get_type ())

G_DECLARE_FINAL_TYPE (LyControl, ly_control, LY, CONTROL, GObject)

/* A registered method: @serial > 0 for a request, to be answered with
 * ly_control_reply() or ly_control_reply_error(); 0 for a notification.
 * @args has the type given at registration.  Called in the context of
 * the control's channel. */
typedef void (*LyControlHandler) (LyControl  *control,
                                  guint32     serial,
                                  GVariant   *args,
                                  gpointer    user_data);

/* Called with the reply of a call, of the type the caller named, in the
 * channel's context (or at once, with an error, when the request could
 * not be sent). */
typedef void (*LyControlReplyFunc) (GVariant     *result,
                                    const GError *error,
                                    gpointer      user_data);

LyControl    *ly_control_new             (LyChannel           *channel);
LyChannel    *ly_control_get_channel     (LyControl           *self);
GMainContext *ly_control_get_context     (LyControl           *self);
const char   *ly_control_get_name        (LyControl           *self);

void          ly_control_add_handler     (LyControl           *self,
                                          const char          *method,
                                          const char          *args_type,
                                          LyControlHandler     func,
                                          gpointer             user_data,
                                          GDestroyNotify       destroy);
void          ly_control_remove_handlers (LyControl           *self,
                                          gpointer             user_data);

void          ly_control_reply           (LyControl           *self,
                                          guint32              serial,
                                          GVariant            *result);
void          ly_control_reply_error     (LyControl           *self,
                                          guint32              serial,
                                          const GError        *error);
gboolean      ly_control_notify          (LyControl           *self,
                                          const char          *method,
                                          GVariant            *args,
                                          GError             **error);

void          ly_control_call            (LyControl           *self,
                                          const char          *method,
                                          GVariant            *args,
                                          const GVariantType  *reply_type,
                                          LyControlReplyFunc   func,
                                          gpointer             user_data);
GVariant     *ly_control_call_sync       (LyControl           *self,
                                          const char          *method,
                                          GVariant            *args,
                                          const GVariantType  *reply_type,
                                          int                  timeout_msec,
                                          GCancellable        *cancellable,
                                          GError             **error);

typedef struct _LyControlBatch LyControlBatch;

LyControlBatch *ly_control_batch_new        (void);
void            ly_control_batch_free       (LyControlBatch  *batch);
gsize           ly_control_batch_add        (LyControlBatch  *batch,
                                             GVariant        *item);
gsize           ly_control_batch_add_string (LyControlBatch  *batch,
                                             const char      *item);
void            ly_control_call_batch       (LyControl           *self,
                                             const char          *method,
                                             LyControlBatch      *batch,
                                             const GVariantType  *reply_type,
                                             LyControlReplyFunc   func,
                                             gpointer             user_data);
gboolean        ly_control_batch_unpack     (GVariant        *payload,
                                             gsize            max_item_size,
                                             GPtrArray       *items,
                                             GError         **error);

GVariant       *ly_control_error_to_variant   (const GError  *error);
GError         *ly_control_error_from_variant (GVariant      *value);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (LyControlBatch, ly_control_batch_free)

G_END_DECLS

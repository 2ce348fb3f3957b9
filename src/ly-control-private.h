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
 *                          GError (its registered domain and code) and
 *                          its message
 *
 * Either side sends requests and notifications; replies come in any
 * order.  Requests of the child: RequestStop, RequestRestart.
 * Notifications of the hub: Stop.
 */

#define LY_TYPE_CONTROL (ly_control_get_type ())

G_DECLARE_FINAL_TYPE (LyControl, ly_control, LY, CONTROL, GObject)

/* Called for each request (@serial > 0, to be answered with
 * ly_control_reply() or ly_control_reply_error()) and notification
 * (@serial 0), in the context of the channel. */
typedef void (*LyControlRequestFunc) (LyControl  *control,
                                      guint32     serial,
                                      const char *method,
                                      GVariant   *args,
                                      gpointer    user_data);

/* Called with the reply of ly_control_call(), in the channel's context
 * (or at once, with an error, when the request could not be sent). */
typedef void (*LyControlReplyFunc) (GVariant     *result,
                                    const GError *error,
                                    gpointer      user_data);

LyControl *ly_control_new          (LyChannel             *channel,
                                    LyControlRequestFunc   func,
                                    gpointer               user_data);
LyChannel *ly_control_get_channel  (LyControl             *self);
void       ly_control_reply        (LyControl             *self,
                                    guint32                serial,
                                    GVariant              *result);
void       ly_control_reply_error  (LyControl             *self,
                                    guint32                serial,
                                    const GError          *error);
gboolean   ly_control_notify       (LyControl             *self,
                                    const char            *method,
                                    GVariant              *args,
                                    GError               **error);
void       ly_control_call         (LyControl             *self,
                                    const char            *method,
                                    GVariant              *args,
                                    LyControlReplyFunc     func,
                                    gpointer               user_data);
void       ly_control_call_payload (LyControl             *self,
                                    const char            *method,
                                    GBytes                *payload,
                                    LyControlReplyFunc     func,
                                    gpointer               user_data);
void       ly_control_call_async   (LyControl             *self,
                                    const char            *method,
                                    GVariant              *args,
                                    GCancellable          *cancellable,
                                    GAsyncReadyCallback    callback,
                                    gpointer               user_data);
GVariant  *ly_control_call_finish  (LyControl             *self,
                                    GAsyncResult          *result,
                                    GError               **error);
GVariant  *ly_control_call_sync    (LyControl             *self,
                                    const char            *method,
                                    GVariant              *args,
                                    int                    timeout_msec,
                                    GCancellable          *cancellable,
                                    GError               **error);

G_END_DECLS

/* ly-channel-private.h
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#include "ly-channel.h"

G_BEGIN_DECLS

/* How long a channel that was closed and then dropped keeps trying to
 * write what was queued before it: close() promises a flush, but a peer
 * that never reads must not keep the fd forever. */
#define LY_CHANNEL_LINGER_USEC (10 * G_USEC_PER_SEC)

/* What the rest of the library needs of a channel beyond its API.  Its
 * connections are sockets here; the transport under them is the
 * channel's business (tests reach it through ly-transport-private.h). */
typedef struct _LyTransport LyTransport;

typedef void (*LyChannelMessageFunc) (LyChannel *channel,
                                      GVariant  *message,
                                      gpointer   user_data);

void       ly_channel_set_message_func  (LyChannel            *self,
                                         LyChannelMessageFunc  func,
                                         gpointer              user_data);
LyChannel *ly_channel_new_for_transport (const char   *name,
                                         LyTransport  *transport,
                                         GMainContext *context);
LyChannel *ly_channel_new_persistent    (const char   *name,
                                         GMainContext *context);
LyChannel *ly_channel_new_for_socket    (const char   *name,
                                         int           fd,
                                         GMainContext *context);
void       ly_channel_attach            (LyChannel   *self,
                                         LyTransport *transport);
void       ly_channel_attach_socket     (LyChannel   *self,
                                         int          fd);
void       ly_channel_detach            (LyChannel   *self);
void       ly_channel_abort             (LyChannel   *self,
                                         GError      *error);
gboolean   ly_channel_is_connected      (LyChannel   *self);
gboolean   ly_channel_wait_until        (LyChannel     *self,
                                         gboolean     (*done) (gpointer data),
                                         gpointer       data,
                                         gint64         deadline,
                                         GCancellable  *cancellable,
                                         GError       **error);
void       ly_channel_wake              (LyChannel   *self);
GMainContext *ly_channel_get_context    (LyChannel   *self);
void       ly_channel_set_busy_poll     (LyChannel   *self,
                                         gint64       usec);
void       ly_channel_set_frame_budget  (LyChannel   *self,
                                         guint        frames);

G_END_DECLS

/* ly-channel.h: an ordered, reliable, full-duplex message link
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
 * LyChannelMode:
 * @LY_CHANNEL_MODE_UNSET: nothing has received from the channel yet
 * @LY_CHANNEL_MODE_PASSIVE: messages are delivered to [signal@Ly.Channel::received] handlers
 * @LY_CHANNEL_MODE_ACTIVE: messages are taken with ly_channel_receive() or
 *   ly_channel_receive_async()
 *
 * How a channel's messages reach the application.  The first use fixes
 * the mode: a `received` handler present when the first message is
 * delivered makes the channel passive; ly_channel_receive() or
 * ly_channel_receive_async() make it active.  Using the other mode
 * afterwards fails with %LY_CHANNEL_ERROR_MODE.
 *
 * Since: 1.0
 */
typedef enum
{
  LY_CHANNEL_MODE_UNSET,
  LY_CHANNEL_MODE_PASSIVE,
  LY_CHANNEL_MODE_ACTIVE,
} LyChannelMode;

/**
 * LY_CHANNEL_DEFAULT_MAX_MESSAGE_SIZE:
 *
 * The default of [property@Ly.Channel:max-message-size]: 16 MiB.
 *
 * Since: 1.0
 */
#define LY_CHANNEL_DEFAULT_MAX_MESSAGE_SIZE (16 * 1024 * 1024)

/**
 * LY_CHANNEL_DEFAULT_MAX_QUEUED_BYTES:
 *
 * The default of [property@Ly.Channel:max-queued-bytes]: 32 MiB.
 *
 * Since: 1.0
 */
#define LY_CHANNEL_DEFAULT_MAX_QUEUED_BYTES (32 * 1024 * 1024)

/**
 * LY_CHANNEL_DEFAULT_MEMFD_THRESHOLD:
 *
 * The default of [property@Ly.Channel:memfd-threshold]: 0, every
 * message inline.  Measured on the project's machines (virtual, 2
 * cores), a fresh memfd's pages cost about 2.5 µs each to allocate:
 * 620 µs to put 1 MiB in a memfd against 200 µs to send it through the
 * socket and read it, at every size up to 16 MiB.  Where pages are
 * cheap, 64 KiB (what Mojo's BigBuffer uses) is the value to try.
 *
 * Since: 1.0
 */
#define LY_CHANNEL_DEFAULT_MEMFD_THRESHOLD 0

#define LY_TYPE_CHANNEL (ly_channel_get_type ())

LY_AVAILABLE_IN_ALL
G_DECLARE_FINAL_TYPE (LyChannel, ly_channel, LY, CHANNEL, GObject)


LY_AVAILABLE_IN_ALL
LyChannel          *ly_channel_new_for_stream       (const char           *name,
                                                     GIOStream            *stream);
LY_AVAILABLE_IN_ALL
LyChannel          *ly_channel_new_for_fd           (const char           *name,
                                                     int                   fd,
                                                     GError              **error);
LY_AVAILABLE_IN_ALL
gboolean            ly_channel_new_pair             (const char           *name,
                                                     LyChannel           **first,
                                                     LyChannel           **second,
                                                     GError              **error);

LY_AVAILABLE_IN_ALL
const char         *ly_channel_get_name             (LyChannel            *self);
LY_AVAILABLE_IN_ALL
const GVariantType *ly_channel_get_message_type     (LyChannel            *self);
LY_AVAILABLE_IN_ALL
void                ly_channel_set_message_type     (LyChannel            *self,
                                                     const GVariantType   *message_type);
LY_AVAILABLE_IN_ALL
LyChannelMode       ly_channel_get_mode             (LyChannel            *self);
LY_AVAILABLE_IN_ALL
gboolean            ly_channel_is_closed            (LyChannel            *self);
LY_AVAILABLE_IN_ALL
gsize               ly_channel_get_max_message_size (LyChannel            *self);
LY_AVAILABLE_IN_ALL
void                ly_channel_set_max_message_size (LyChannel            *self,
                                                     gsize                 max_message_size);
LY_AVAILABLE_IN_ALL
gsize               ly_channel_get_max_queued_bytes (LyChannel            *self);
LY_AVAILABLE_IN_ALL
void                ly_channel_set_max_queued_bytes (LyChannel            *self,
                                                     gsize                 max_queued_bytes);
LY_AVAILABLE_IN_ALL
gsize               ly_channel_get_memfd_threshold  (LyChannel            *self);
LY_AVAILABLE_IN_ALL
void                ly_channel_set_memfd_threshold  (LyChannel            *self,
                                                     gsize                 threshold);
LY_AVAILABLE_IN_ALL
gsize               ly_channel_get_queued_bytes     (LyChannel            *self);
LY_AVAILABLE_IN_ALL
const char         *ly_channel_get_peer_process_name (LyChannel           *self);
LY_AVAILABLE_IN_ALL
GPid                ly_channel_get_peer_pid         (LyChannel            *self);

LY_AVAILABLE_IN_ALL
gboolean            ly_channel_send                 (LyChannel            *self,
                                                     GVariant             *message,
                                                     GError              **error);
LY_AVAILABLE_IN_ALL
void                ly_channel_send_async           (LyChannel            *self,
                                                     GVariant             *message,
                                                     GCancellable         *cancellable,
                                                     GAsyncReadyCallback   callback,
                                                     gpointer              user_data);
LY_AVAILABLE_IN_ALL
gboolean            ly_channel_send_finish          (LyChannel            *self,
                                                     GAsyncResult         *result,
                                                     GError              **error);

LY_AVAILABLE_IN_ALL
gboolean            ly_channel_flush                (LyChannel            *self,
                                                     GCancellable         *cancellable,
                                                     GError              **error);
LY_AVAILABLE_IN_ALL
void                ly_channel_flush_async          (LyChannel            *self,
                                                     GCancellable         *cancellable,
                                                     GAsyncReadyCallback   callback,
                                                     gpointer              user_data);
LY_AVAILABLE_IN_ALL
gboolean            ly_channel_flush_finish         (LyChannel            *self,
                                                     GAsyncResult         *result,
                                                     GError              **error);

LY_AVAILABLE_IN_ALL
GVariant           *ly_channel_receive              (LyChannel            *self,
                                                     GCancellable         *cancellable,
                                                     GError              **error);
LY_AVAILABLE_IN_ALL
GVariant           *ly_channel_receive_timeout      (LyChannel            *self,
                                                     int                   timeout_msec,
                                                     GCancellable         *cancellable,
                                                     GError              **error);
LY_AVAILABLE_IN_ALL
void                ly_channel_receive_async        (LyChannel            *self,
                                                     GCancellable         *cancellable,
                                                     GAsyncReadyCallback   callback,
                                                     gpointer              user_data);
LY_AVAILABLE_IN_ALL
GVariant           *ly_channel_receive_finish       (LyChannel            *self,
                                                     GAsyncResult         *result,
                                                     GError              **error);

LY_AVAILABLE_IN_ALL
void                ly_channel_close                (LyChannel            *self);

G_END_DECLS

/* ly-transport-private.h: non-blocking byte transport under a channel
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#include <gio/gio.h>

G_BEGIN_DECLS

/* A transport moves bytes without ever blocking, except in
 * ly_transport_wait().  Two kinds exist: a socket file descriptor (the
 * fast path: recv() and sendmsg() on the fd, watched by the channel's
 * own GSource) and any pollable GIOStream (TLS, pipes of a subprocess,
 * whatever GIO gives).  A transport is reference counted so that a
 * thread blocked in ly_transport_wait() keeps its fd valid while
 * another thread closes the channel: the fd is closed with the last
 * reference. */
typedef struct _LyTransport LyTransport;

LyTransport *ly_transport_new_for_fd     (int            fd,
                                          GIOStream     *owner);
LyTransport *ly_transport_new_for_stream (GIOStream     *stream);
gboolean     ly_transport_stream_is_supported (GIOStream *stream);
LyTransport *ly_transport_ref            (LyTransport   *transport);
void         ly_transport_unref          (LyTransport   *transport);

/* File descriptors one read or write carries at most. */
#define LY_TRANSPORT_MAX_FDS 16

gboolean     ly_transport_can_pass_fds   (LyTransport   *transport);
gssize       ly_transport_read           (LyTransport   *transport,
                                          void          *buffer,
                                          gsize          size,
                                          int           *fds,
                                          gsize         *n_fds,
                                          GError       **error);
gssize       ly_transport_read_blocking  (LyTransport   *transport,
                                          void          *buffer,
                                          gsize          size,
                                          int           *fds,
                                          gsize         *n_fds);
gssize       ly_transport_writev         (LyTransport   *transport,
                                          GOutputVector *vectors,
                                          gsize          n_vectors,
                                          const int     *fds,
                                          gsize          n_fds,
                                          GError       **error);

void         ly_transport_attach         (LyTransport   *transport,
                                          GSource       *source);
void         ly_transport_detach         (LyTransport   *transport,
                                          GSource       *source);
void         ly_transport_forget_source  (LyTransport   *transport);
void         ly_transport_set_interest   (LyTransport   *transport,
                                          GSource       *source,
                                          GIOCondition   condition);
GIOCondition ly_transport_query          (LyTransport   *transport,
                                          GSource       *source);

void         ly_transport_wait           (LyTransport   *transport,
                                          GIOCondition   condition,
                                          int            wakeup_fd,
                                          gint64         deadline);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (LyTransport, ly_transport_unref)

G_END_DECLS

/* ly-transport.c
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <glib-unix.h>
#include <glib/gstdio.h>

#include "ly-transport-private.h"

/* One sendmsg() hands at most this many buffers to the kernel. */
#define MAX_VECTORS 64

struct _LyTransport
{
  gatomicrefcount ref_count;

  /* fd transport: @fd is read and written directly; @owner, when set,
   * is the GSocketConnection the fd belongs to and closes it. */
  int        fd;
  gpointer   fd_tag;
  gboolean   can_block;

  /* stream transport */
  GIOStream *stream;
  GPollableInputStream *input;
  GPollableOutputStream *output;
  GSource   *in_child;
  GSource   *out_child;

  GIOStream *owner;
};

static gboolean
is_fd_transport (LyTransport *transport)
{
  return transport->fd >= 0;
}

/* How long one blocking read may wait: callers check their deadline and
 * cancellation in between. */
#define BLOCKING_READ_SLICE_USEC (250 * 1000)

LyTransport *
ly_transport_new_for_fd (int        fd,
                         GIOStream *owner)
{
  LyTransport *transport = g_new0 (LyTransport, 1);
  struct timeval slice = { 0, BLOCKING_READ_SLICE_USEC };
  int flags = fcntl (fd, F_GETFL);

  g_atomic_ref_count_init (&transport->ref_count);
  transport->fd = fd;
  transport->owner = owner != NULL ? g_object_ref (owner) : NULL;

  /* Every other read says MSG_DONTWAIT: only ly_transport_read_blocking()
   * blocks, on a blocking fd, for one slice at most. */
  transport->can_block = flags >= 0 && (flags & O_NONBLOCK) == 0 &&
                         setsockopt (fd, SOL_SOCKET, SO_RCVTIMEO, &slice, sizeof slice) == 0;

  return transport;
}

gboolean
ly_transport_stream_is_supported (GIOStream *stream)
{
  GInputStream *input = g_io_stream_get_input_stream (stream);
  GOutputStream *output = g_io_stream_get_output_stream (stream);

  return G_IS_POLLABLE_INPUT_STREAM (input) &&
         g_pollable_input_stream_can_poll (G_POLLABLE_INPUT_STREAM (input)) &&
         G_IS_POLLABLE_OUTPUT_STREAM (output) &&
         g_pollable_output_stream_can_poll (G_POLLABLE_OUTPUT_STREAM (output));
}

LyTransport *
ly_transport_new_for_stream (GIOStream *stream)
{
  LyTransport *transport = g_new0 (LyTransport, 1);

  g_atomic_ref_count_init (&transport->ref_count);
  transport->fd = -1;
  transport->stream = g_object_ref (stream);
  transport->input = G_POLLABLE_INPUT_STREAM (g_io_stream_get_input_stream (stream));
  transport->output = G_POLLABLE_OUTPUT_STREAM (g_io_stream_get_output_stream (stream));

  return transport;
}

LyTransport *
ly_transport_ref (LyTransport *transport)
{
  g_atomic_ref_count_inc (&transport->ref_count);
  return transport;
}

void
ly_transport_unref (LyTransport *transport)
{
  if (!g_atomic_ref_count_dec (&transport->ref_count))
    return;

  g_assert (transport->fd_tag == NULL);
  g_assert (transport->in_child == NULL && transport->out_child == NULL);

  if (transport->owner != NULL)
    {
      g_io_stream_close (transport->owner, NULL, NULL);
      g_object_unref (transport->owner);
    }
  else if (transport->fd >= 0)
    {
      g_close (transport->fd, NULL);
    }

  if (transport->stream != NULL)
    {
      g_io_stream_close (transport->stream, NULL, NULL);
      g_object_unref (transport->stream);
    }

  g_free (transport);
}

static void
set_errno_error (GError     **error,
                 int          saved_errno)
{
  g_set_error_literal (error, G_IO_ERROR, g_io_error_from_errno (saved_errno),
                       g_strerror (saved_errno));
}

/* Whether file descriptors can travel with the bytes: an AF_UNIX socket. */
gboolean
ly_transport_can_pass_fds (LyTransport *transport)
{
  int domain = 0;
  socklen_t length = sizeof domain;

  return is_fd_transport (transport) &&
         getsockopt (transport->fd, SOL_SOCKET, SO_DOMAIN, &domain, &length) == 0 &&
         domain == AF_UNIX;
}

/* recv() that also takes the file descriptors sent with the bytes (at
 * most LY_TRANSPORT_MAX_FDS, close-on-exec), into @fds.  More than fit
 * is an error (the kernel closed the rest): no peer of ours sends that
 * many at once. */
static gssize
receive_with_fds (int     fd,
                  void   *buffer,
                  gsize   size,
                  int     flags,
                  int    *fds,
                  gsize  *n_fds)
{
  union
  {
    struct cmsghdr header;
    char           space[CMSG_SPACE (sizeof (int) * LY_TRANSPORT_MAX_FDS)];
  } control;
  struct iovec iov = { buffer, size };
  struct msghdr msg = { 0 };
  gssize n;

  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = &control;
  msg.msg_controllen = sizeof control;
  *n_fds = 0;

  do
    n = recvmsg (fd, &msg, flags | MSG_CMSG_CLOEXEC);
  while (n < 0 && errno == EINTR);
  if (n < 0)
    return n;

  for (struct cmsghdr *c = CMSG_FIRSTHDR (&msg); c != NULL; c = CMSG_NXTHDR (&msg, c))
    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS)
      {
        gsize count = (c->cmsg_len - CMSG_LEN (0)) / sizeof (int);

        for (gsize i = 0; i < count; i++)
          {
            int received;

            memcpy (&received, CMSG_DATA (c) + i * sizeof (int), sizeof (int));
            if (*n_fds < LY_TRANSPORT_MAX_FDS)
              fds[(*n_fds)++] = received;
            else
              close (received);
          }
      }

  if ((msg.msg_flags & MSG_CTRUNC) != 0)
    {
      for (gsize i = 0; i < *n_fds; i++)
        close (fds[i]);
      *n_fds = 0;
      errno = EMSGSIZE;
      return -1;
    }
  return n;
}

/* Returns the number of bytes read, 0 at end of stream, or -1 with
 * G_IO_ERROR_WOULD_BLOCK when nothing is there.  File descriptors sent
 * with the bytes land in @fds (room for LY_TRANSPORT_MAX_FDS), their
 * count in @n_fds: the caller owns them. */
gssize
ly_transport_read (LyTransport  *transport,
                   void         *buffer,
                   gsize         size,
                   int          *fds,
                   gsize        *n_fds,
                   GError      **error)
{
  gssize n;

  *n_fds = 0;
  if (!is_fd_transport (transport))
    return g_pollable_input_stream_read_nonblocking (transport->input, buffer, size, NULL, error);

  n = receive_with_fds (transport->fd, buffer, size, MSG_DONTWAIT, fds, n_fds);
  if (n < 0)
    set_errno_error (error, errno);

  return n;
}

/* Waits for bytes and reads them in one syscall: the count, 0 at end of
 * stream, -1 when a slice passed with nothing (or on an error, which the
 * next non-blocking read reports), -2 when this transport cannot block.
 * File descriptors as for ly_transport_read(). */
gssize
ly_transport_read_blocking (LyTransport *transport,
                            void        *buffer,
                            gsize        size,
                            int         *fds,
                            gsize       *n_fds)
{
  gssize n;

  *n_fds = 0;
  if (!is_fd_transport (transport) || !transport->can_block)
    return -2;

  n = receive_with_fds (transport->fd, buffer, size, 0, fds, n_fds);
  return n < 0 ? -1 : n;
}

/* Writes what it can of @vectors, and with the first byte the @n_fds
 * file descriptors (sent means duplicated into the peer: the caller
 * still closes its own).  Only an AF_UNIX transport takes fds. */
gssize
ly_transport_writev (LyTransport    *transport,
                     GOutputVector  *vectors,
                     gsize           n_vectors,
                     const int      *fds,
                     gsize           n_fds,
                     GError        **error)
{
  union
  {
    struct cmsghdr header;
    char           space[CMSG_SPACE (sizeof (int) * LY_TRANSPORT_MAX_FDS)];
  } control;
  struct iovec iov[MAX_VECTORS];
  struct msghdr msg = { 0 };
  gssize n;

  n_vectors = MIN (n_vectors, MAX_VECTORS);
  g_return_val_if_fail (n_fds <= LY_TRANSPORT_MAX_FDS, -1);
  g_return_val_if_fail (n_fds == 0 || is_fd_transport (transport), -1);

  if (!is_fd_transport (transport))
    {
      gsize written = 0;

      switch (g_pollable_output_stream_writev_nonblocking (transport->output, vectors, n_vectors,
                                                           &written, NULL, error))
        {
        case G_POLLABLE_RETURN_OK:
          return (gssize) written;
        case G_POLLABLE_RETURN_WOULD_BLOCK:
          g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK, g_strerror (EAGAIN));
          return -1;
        case G_POLLABLE_RETURN_FAILED:
        default:
          return -1;
        }
    }

  for (gsize i = 0; i < n_vectors; i++)
    {
      iov[i].iov_base = (void *) vectors[i].buffer;
      iov[i].iov_len = vectors[i].size;
    }
  msg.msg_iov = iov;
  msg.msg_iovlen = n_vectors;
  if (n_fds > 0)
    {
      struct cmsghdr *c;

      memset (&control, 0, sizeof control);
      msg.msg_control = &control;
      msg.msg_controllen = CMSG_SPACE (sizeof (int) * n_fds);
      c = CMSG_FIRSTHDR (&msg);
      c->cmsg_level = SOL_SOCKET;
      c->cmsg_type = SCM_RIGHTS;
      c->cmsg_len = CMSG_LEN (sizeof (int) * n_fds);
      memcpy (CMSG_DATA (c), fds, sizeof (int) * n_fds);
    }

  /* MSG_NOSIGNAL: a vanished peer is an error to report, not a SIGPIPE
   * that kills the process. */
  do
    n = sendmsg (transport->fd, &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
  while (n < 0 && errno == EINTR);

  if (n < 0)
    set_errno_error (error, errno);

  return n;
}

void
ly_transport_attach (LyTransport *transport,
                     GSource     *source)
{
  if (is_fd_transport (transport))
    transport->fd_tag = g_source_add_unix_fd (source, transport->fd, 0);
}

void
ly_transport_detach (LyTransport *transport,
                     GSource     *source)
{
  if (transport->fd_tag != NULL)
    {
      g_source_remove_unix_fd (source, transport->fd_tag);
      transport->fd_tag = NULL;
    }

  ly_transport_set_interest (transport, source, 0);
}

/* For a source that is already destroyed: GLib drops its fds and
 * children itself. */
void
ly_transport_forget_source (LyTransport *transport)
{
  transport->fd_tag = NULL;
  g_clear_pointer (&transport->in_child, g_source_unref);
  g_clear_pointer (&transport->out_child, g_source_unref);
}

static void
set_child (GSource  *parent,
           GSource **child,
           GSource  *(*create) (gpointer stream),
           gpointer  stream,
           gboolean  wanted)
{
  if (wanted && *child == NULL)
    {
      *child = create (stream);
      g_source_set_dummy_callback (*child);
      g_source_add_child_source (parent, *child);
    }
  else if (!wanted && *child != NULL)
    {
      g_source_remove_child_source (parent, *child);
      g_clear_pointer (child, g_source_unref);
    }
}

static GSource *
create_in_source (gpointer stream)
{
  return g_pollable_input_stream_create_source (stream, NULL);
}

static GSource *
create_out_source (gpointer stream)
{
  return g_pollable_output_stream_create_source (stream, NULL);
}

/* What the channel's source waits for: G_IO_IN, G_IO_OUT, both or none. */
void
ly_transport_set_interest (LyTransport  *transport,
                           GSource      *source,
                           GIOCondition  condition)
{
  if (is_fd_transport (transport))
    {
      if (transport->fd_tag != NULL)
        g_source_modify_unix_fd (source, transport->fd_tag, condition);
      return;
    }

  set_child (source, &transport->in_child, create_in_source, transport->input,
             (condition & G_IO_IN) != 0);
  set_child (source, &transport->out_child, create_out_source, transport->output,
             (condition & G_IO_OUT) != 0);
}

/* What the transport is ready for, in the channel source's dispatch. */
GIOCondition
ly_transport_query (LyTransport *transport,
                    GSource     *source)
{
  GIOCondition ready = 0;

  if (is_fd_transport (transport))
    return transport->fd_tag != NULL ? g_source_query_unix_fd (source, transport->fd_tag) : 0;

  if (transport->in_child != NULL && g_pollable_input_stream_is_readable (transport->input))
    ready |= G_IO_IN;
  if (transport->out_child != NULL && g_pollable_output_stream_is_writable (transport->output))
    ready |= G_IO_OUT;

  return ready;
}

static int
timeout_ms_until (gint64 deadline)
{
  gint64 left;

  if (deadline < 0)
    return -1;

  left = deadline - g_get_monotonic_time ();
  if (left <= 0)
    return 0;

  return (int) MIN ((left + 999) / 1000, G_MAXINT);
}

static gboolean
quit_iteration (gpointer user_data)
{
  return G_SOURCE_REMOVE;
}

static void
wait_stream (LyTransport  *transport,
             GIOCondition  condition,
             int           wakeup_fd,
             gint64        deadline)
{
  g_autoptr(GMainContext) context = g_main_context_new ();
  GSource *sources[4] = { NULL, };
  guint n = 0;
  int timeout = timeout_ms_until (deadline);

  if (condition & G_IO_IN)
    sources[n++] = create_in_source (transport->input);
  if (condition & G_IO_OUT)
    sources[n++] = create_out_source (transport->output);
  if (wakeup_fd >= 0)
    sources[n++] = g_unix_fd_source_new (wakeup_fd, G_IO_IN);
  if (timeout >= 0)
    sources[n++] = g_timeout_source_new (timeout);

  for (guint i = 0; i < n; i++)
    {
      g_source_set_callback (sources[i], quit_iteration, NULL, NULL);
      g_source_attach (sources[i], context);
    }

  g_main_context_iteration (context, TRUE);

  for (guint i = 0; i < n; i++)
    {
      g_source_destroy (sources[i]);
      g_source_unref (sources[i]);
    }
}

/* Blocks until the transport is ready for @condition, @wakeup_fd is
 * readable, or the monotonic @deadline (-1 for none) passes.  The caller
 * checks again what it waits for: this may return early. */
void
ly_transport_wait (LyTransport  *transport,
                   GIOCondition  condition,
                   int           wakeup_fd,
                   gint64        deadline)
{
  struct pollfd fds[2];
  nfds_t n = 0;

  if (!is_fd_transport (transport))
    {
      wait_stream (transport, condition, wakeup_fd, deadline);
      return;
    }

  fds[n].fd = transport->fd;
  fds[n].events = ((condition & G_IO_IN) ? POLLIN : 0) | ((condition & G_IO_OUT) ? POLLOUT : 0);
  n++;
  if (wakeup_fd >= 0)
    {
      fds[n].fd = wakeup_fd;
      fds[n].events = POLLIN;
      n++;
    }

  /* EINTR simply returns: the caller checks its condition and comes back. */
  (void) poll (fds, n, timeout_ms_until (deadline));
}

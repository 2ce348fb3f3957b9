/* ly-channel.c
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <glib-unix.h>
#include <glib/gstdio.h>

#include "ly-channel-private.h"
#include "ly-context-private.h"
#include "ly-enums.h"
#include "ly-i18n-private.h"
#include "ly-transport-private.h"
#include "ly-wire-private.h"

/**
 * LyChannel:
 *
 * One endpoint of an ordered, reliable, full-duplex message link
 * between exactly two endpoints, usually in two processes.
 *
 * Messages are [struct@GLib.Variant]s of any type.  A channel is created
 * over a connected socket ([ctor@Ly.Channel.new_for_fd]), over any
 * [class@Gio.IOStream] ([ctor@Ly.Channel.new_for_stream]), or as a
 * connected pair inside one process ([func@Ly.Channel.new_pair]).
 *
 * ## Sending
 *
 * [method@Ly.Channel.send] never blocks: it queues the message and
 * returns.  Queued messages leave in batches, many per system call, when
 * the channel's main context next runs (or at once when no thread runs
 * that context).  It fails when the channel is closed, when the message
 * does not match [property@Ly.Channel:message-type], when it exceeds
 * [property@Ly.Channel:max-message-size], and when the queue is over
 * [property@Ly.Channel:max-queued-bytes].  [method@Ly.Channel.send_async]
 * waits for room instead (back-pressure) and completes once the message
 * is written.
 *
 * ## Receiving
 *
 * A channel is used in one of two modes, fixed by its first use (see
 * [enum@Ly.ChannelMode]):
 *
 * - passive: the [signal@Ly.Channel::received] signal is emitted for
 *   each message, in the thread-default main context of the thread that
 *   created the channel.  The signal is detailed by the message's type
 *   string, so a handler connected to `received::s` gets only strings.
 * - active: [method@Ly.Channel.receive] blocks (for worker threads, or
 *   programs without a main loop) and [method@Ly.Channel.receive_async]
 *   does not.
 *
 * ## Closing
 *
 * [method@Ly.Channel.close] writes what was queued, then tells the peer,
 * whose channel emits [signal@Ly.Channel::closed] with no error.  A
 * peer that goes away without closing (a crash) gives `closed` with
 * %LY_CHANNEL_ERROR_DISCONNECTED, and invalid input from the peer gives
 * %LY_CHANNEL_ERROR_PROTOCOL.  Messages that arrived before the end can
 * still be received; then receiving fails with %LY_CHANNEL_ERROR_CLOSED.
 *
 * All methods may be called from any thread.
 *
 * The topic page [Channels](channels.html) says more, with examples, and
 * [Overview](overview.html) shows how the pieces fit.
 *
 * Since: 1.0
 */

/* How the work is split.
 *
 * All state is under @mutex.  No thread is created: a GSource attached
 * to the creating thread's context reads, writes and delivers.  A
 * thread blocked in receive() or flush() does not rely on that context
 * running: one of them at a time (the "poller") polls the socket itself
 * and does the same non-blocking I/O, and the others wait on @cond.
 * Whoever reads wakes the poller through @wakeup_fd and the others
 * through @cond.  Signals and GTask completions happen only in the
 * source's dispatch, outside the lock, so handlers may call back into
 * the channel.
 *
 * Sending appends a frame to @writer.  A batch is written when the
 * context runs the source, right after a dispatch that delivered
 * messages (so replies leave in one write), or by the sender itself
 * once 64 KiB are queued or when no thread runs the context. */

typedef struct
{
  GSource  source;
  GWeakRef channel;
} ChannelSource;

/* A GTask waiting on the channel: a receive, a send waiting for room or
 * for its bytes to be written, or a flush. */
typedef struct
{
  GTask        *task;
  GVariant     *message;
  guint64       target;
  GCancellable *cancellable;
  gulong        cancel_id;
} PendingOp;

struct _LyChannel
{
  GObject       parent_instance;

  /* @mutex protects every field below (the functions named *_locked
   * are called with it held; the few that drop it for a while say
   * so); @cond wakes the threads blocked in a receive or a flush */
  GMutex        mutex;
  GCond         cond;

  char         *name;
  GMainContext *context;
  GSource      *source;

  LyTransport  *transport;          /* NULL once the connection ended */
  GIOCondition  interest;
  LyWireReader *reader;
  LyWireWriter *writer;

  GVariantType *message_type;
  LyChannelMode mode;
  gsize         max_message_size;
  gsize         max_queued_bytes;

  const char   *peer_process_name;  /* one of @peer_names, or NULL */
  GHashTable   *peer_names;         /* every name a peer announced: what
                                     * get_peer_process_name() returned
                                     * stays valid while the channel lives */
  GPid          peer_pid;
  GError       *end_error;          /* why the connection ended; NULL when clean */

  GQueue        incoming;           /* of GVariant*, oldest first */
  gsize         incoming_bytes;
  GQueue        receive_ops;        /* of PendingOp* */
  GQueue        send_waiters;       /* sends waiting for room, and flushes behind them */
  GQueue        send_acks;          /* sends and flushes waiting for their bytes to leave */
  GQueue        lost_acks;          /* sends whose connection went away before they left */
  GError       *lost_error;

  int           wakeup_fd;
  guint         n_waiters;          /* threads blocked on @cond */
  guint         n_iterating;        /* threads running @context for a blocking call */

  guint         hello_received : 1;
  guint         closed : 1;         /* closed locally, or the connection ended */
  guint         ended : 1;          /* the transport is gone */
  guint         closed_emitted : 1;
  guint         poller_active : 1;
  guint         wakeup_signaled : 1; /* @wakeup_fd was written since drained */
  guint         write_blocked : 1;  /* the last write met a full socket */
  guint         dispatching : 1;    /* in channel_source_dispatch(), maybe nested */
  guint         persistent : 1;     /* outlives its connections (a hub's channel) */
  guint         read_since_write : 1; /* the peer sent something since our last write */
  guint         memfd_capable : 1;  /* the transport carries fds: memfds are offered */
  guint         peer_memfd : 1;     /* the peer's hello offered memfds */
  gsize         memfd_threshold;    /* messages this large go in memfds; 0: never */
  gsize         retry_write_at;     /* queued bytes at which a send tries a full socket again */
  gint64        last_write_at;      /* when a write last left (monotonic) */

  /* under flusher_mutex, not @mutex: the channel is in flusher_queue */
  gboolean      flush_queued;

  /* the library's own reader of a passive channel, instead of signals */
  LyChannelMessageFunc message_func;
  gpointer      message_data;
  guint         mode_changed : 1;
  guint         warned_mixed : 1;

  /* busy polling after a reply (see ly_channel_set_busy_poll()) */
  gint64        busy_poll_usec;
  gint64        last_written_at;    /* when the last dispatch wrote */

  /* fairness among a hub's children (see ly_channel_set_frame_budget()) */
  guint         frame_budget;       /* messages one read takes at most; 0: no limit */
  guint         frames_left;        /* of this read */
  gint64        frame_cost_ns;      /* what handling one took lately (a moving average) */
  guint         frames_pending : 1; /* the reader holds frames not decoded yet */
  guint64       busy_poll_written;  /* bytes written until then */
};

enum {
  PROP_0,
  PROP_NAME,
  PROP_MESSAGE_TYPE,
  PROP_MODE,
  PROP_CLOSED,
  PROP_MAX_MESSAGE_SIZE,
  PROP_MAX_QUEUED_BYTES,
  PROP_MEMFD_THRESHOLD,
  PROP_PEER_PROCESS_NAME,
  PROP_PEER_PID,
  N_PROPS
};

enum {
  RECEIVED,
  CLOSED,
  N_SIGNALS
};

static GParamSpec *properties[N_PROPS];
static guint signals[N_SIGNALS];

/* What a received message costs while it waits, beyond its data: the
 * GVariant, its GBytes, the queue's link and the allocator's share.  A
 * queue of empty messages is not free: counted this way, the bound in
 * bytes also bounds the count, to max-queued-bytes / MESSAGE_OVERHEAD. */
#define MESSAGE_OVERHEAD 256

static gsize
message_cost (GVariant *message)
{
  return g_variant_get_size (message) + MESSAGE_OVERHEAD;
}

/* While a UNSET channel holds messages, look again this often. */
#define UNSET_RECHECK_USEC (50 * 1000)

/* A thread blocked on @cond looks at the channel again this often even
 * without a wake-up, so that a context that stopped running cannot
 * leave it waiting forever. */
#define WAIT_SLICE_USEC (250 * 1000)

/* The longest a channel's source busy-polls before the other sources of
 * its context get their turn. */
#define BUSY_POLL_BUDGET_USEC 500

/* A send without a main loop that comes this soon after the last write,
 * with nothing heard from the peer since (a burst, not a request and
 * its reply), leaves its message to the flusher, which writes the
 * burst's messages together this long after. */
#define COALESCE_USEC 50

/* How soon the flusher tries a full socket again, and how rarely at
 * most while its peer reads nothing. */
#define ROOM_RETRY_USEC     1000
#define ROOM_RETRY_MAX_USEC (64 * 1000)

G_DEFINE_FINAL_TYPE (LyChannel, ly_channel, G_TYPE_OBJECT)

static void write_locked (LyChannel *self);
static void update_interest_locked (LyChannel *self);
static void schedule_needed_dispatch_locked (LyChannel *self);

/* The flusher ---------------------------------------------------------------
 *
 * A program without a main loop (a plain script, a worker thread) that
 * sends a burst would otherwise write each message with a syscall of
 * its own, and wake its peer for each: half of what a message costs
 * both ends.  Nobody runs the channel's source to gather them, so one
 * thread for all channels, started on first use, writes the messages
 * of a burst together a moment later.  A message alone, or a request
 * after a reply, is written at once: only bursts wait, at most about
 * COALESCE_USEC (plus the thread's wake-up) each.
 *
 * flusher_mutex protects flusher_queue (channels, not referenced: a
 * channel's dispose takes itself out and waits while the flusher writes
 * it), flusher_current, flusher_started and each channel's
 * flush_queued.  Lock order: a channel's mutex, then flusher_mutex; the
 * flusher takes a channel's mutex with flusher_mutex released. */
static GMutex     flusher_mutex;
static GCond      flusher_work_cond;   /* flusher_queue is not empty */
static GCond      flusher_done_cond;   /* flusher_current changed */
static GQueue     flusher_queue = G_QUEUE_INIT;
static LyChannel *flusher_current;     /* the channel the flusher is writing */
static gboolean   flusher_started;

/* Writes what @channel queued.  TRUE when some is left for a full
 * socket that nobody else will write to: the flusher tries again, so
 * that a program without a main loop loses nothing it sent, even if it
 * never calls the library again.  *progressed: whether some left. */
static gboolean
flusher_write (LyChannel *channel,
               gboolean  *progressed)
{
  gsize before;
  gboolean again;

  g_mutex_lock (&channel->mutex);
  *progressed = FALSE;

  /* a thread runs the context now: the channel's source writes */
  if (ly_context_will_dispatch (channel->context))
    {
      g_mutex_unlock (&channel->mutex);
      return FALSE;
    }

  before = ly_wire_writer_get_queued (channel->writer);
  write_locked (channel);
  update_interest_locked (channel);
  /* sends and flushes whose bytes left complete in the channel's context */
  schedule_needed_dispatch_locked (channel);
  *progressed = ly_wire_writer_get_queued (channel->writer) < before;
  again = channel->transport != NULL && ly_wire_writer_get_queued (channel->writer) > 0;
  g_mutex_unlock (&channel->mutex);

  return again;
}

static gpointer
flusher_run (gpointer data)
{
  gulong pause = COALESCE_USEC;

  g_mutex_lock (&flusher_mutex);
  for (;;)
    {
      gboolean waiting_for_room = FALSE, progressed = FALSE;
      guint n;

      while (g_queue_is_empty (&flusher_queue))
        g_cond_wait (&flusher_work_cond, &flusher_mutex);

      /* a burst goes on meanwhile, its messages queue up; or a full
       * socket gets room */
      g_mutex_unlock (&flusher_mutex);
      g_usleep (pause);
      g_mutex_lock (&flusher_mutex);

      /* this round: the channels queued now (one put back for a full
       * socket waits for the next) */
      n = g_queue_get_length (&flusher_queue);
      for (guint i = 0; i < n && !g_queue_is_empty (&flusher_queue); i++)
        {
          LyChannel *channel = g_queue_pop_head (&flusher_queue);
          gboolean again, moved;

          channel->flush_queued = FALSE;
          flusher_current = channel;
          g_mutex_unlock (&flusher_mutex);

          again = flusher_write (channel, &moved);

          g_mutex_lock (&flusher_mutex);
          progressed |= moved;
          if (again && !channel->flush_queued)
            {
              channel->flush_queued = TRUE;
              g_queue_push_tail (&flusher_queue, channel);
              waiting_for_room = TRUE;
            }
          flusher_current = NULL;
          g_cond_broadcast (&flusher_done_cond);
        }

      /* a peer that reads nothing costs a try every 64 ms at most */
      if (!waiting_for_room)
        pause = COALESCE_USEC;
      else if (progressed || pause < ROOM_RETRY_USEC)
        pause = ROOM_RETRY_USEC;
      else
        pause = MIN (pause * 2, ROOM_RETRY_MAX_USEC);
    }
  return NULL;
}

/* A forked child has no flusher thread: the next burst starts one. */
static void
flusher_forget_after_fork (void)
{
  LyChannel *channel;

  g_mutex_init (&flusher_mutex);
  g_cond_init (&flusher_work_cond);
  g_cond_init (&flusher_done_cond);
  while ((channel = g_queue_pop_head (&flusher_queue)) != NULL)
    channel->flush_queued = FALSE;
  flusher_current = NULL;
  flusher_started = FALSE;
}

static void
flusher_lock_for_fork (void)
{
  g_mutex_lock (&flusher_mutex);
}

static void
flusher_unlock_after_fork (void)
{
  g_mutex_unlock (&flusher_mutex);
}

/* Has the flusher write @self soon.  Called with @self's mutex held. */
static void
flusher_add_locked (LyChannel *self)
{
  g_mutex_lock (&flusher_mutex);
  if (!self->flush_queued)
    {
      if (!flusher_started)
        {
          static gsize registered = 0;

          if (g_once_init_enter (&registered))
            {
              pthread_atfork (flusher_lock_for_fork, flusher_unlock_after_fork, flusher_forget_after_fork);
              g_once_init_leave (&registered, 1);
            }
          g_thread_unref (g_thread_new ("ly-flusher", flusher_run, NULL));
          flusher_started = TRUE;
        }
      self->flush_queued = TRUE;
      g_queue_push_tail (&flusher_queue, self);
      g_cond_signal (&flusher_work_cond);
    }
  g_mutex_unlock (&flusher_mutex);
}

/* Takes @self out of the flusher's hands, waiting while it writes
 * @self.  Called without @self's mutex.  The wait comes first: a write
 * that met a full socket puts @self back in the queue before it
 * counts as done. */
static void
flusher_remove (LyChannel *self)
{
  g_mutex_lock (&flusher_mutex);
  while (flusher_current == self)
    g_cond_wait (&flusher_done_cond, &flusher_mutex);
  if (self->flush_queued)
    {
      g_queue_remove (&flusher_queue, self);
      self->flush_queued = FALSE;
    }
  g_mutex_unlock (&flusher_mutex);
}

/* A send in a burst, with nobody to run the source (see above).  Never
 * while the queue holds half its bound: what waits for the flusher must
 * not make a send fail with FULL while the socket has room. */
static gboolean
in_burst_locked (LyChannel *self)
{
  return !self->read_since_write && !self->closed &&
         ly_wire_writer_get_queued (self->writer) < self->max_queued_bytes / 2 &&
         g_get_monotonic_time () - self->last_write_at < COALESCE_USEC;
}

/* Pending operations ------------------------------------------------------ */

static PendingOp *
pending_op_new (GTask    *task,
                GVariant *message)
{
  PendingOp *op = g_new0 (PendingOp, 1);

  op->task = g_object_ref (task);
  op->message = message != NULL ? g_variant_ref (message) : NULL;
  op->cancellable = g_task_get_cancellable (task);
  if (op->cancellable != NULL)
    g_object_ref (op->cancellable);

  return op;
}

/* Ends @op; called without the lock, since disconnecting may wait for a
 * cancellation handler that takes it. */
static void
pending_op_finish (PendingOp *op,
                   GError    *error,
                   GVariant  *received)
{
  if (op->cancel_id != 0)
    g_cancellable_disconnect (op->cancellable, op->cancel_id);

  if (error != NULL)
    g_task_return_error (op->task, error);
  else if (received != NULL)
    g_task_return_pointer (op->task, received, (GDestroyNotify) g_variant_unref);
  else
    g_task_return_boolean (op->task, TRUE);

  g_clear_pointer (&op->message, g_variant_unref);
  g_clear_object (&op->cancellable);
  g_object_unref (op->task);
  g_free (op);
}

static PendingOp *
ops_steal_task (GQueue *ops,
                GTask  *task)
{
  for (GList *l = ops->head; l != NULL; l = l->next)
    {
      PendingOp *op = l->data;

      if (op->task == task)
        {
          g_queue_delete_link (ops, l);
          return op;
        }
    }

  return NULL;
}

/* Errors ------------------------------------------------------------------ */

static GError *
closed_error_new_locked (LyChannel *self)
{
  if (self->end_error != NULL)
    return g_error_new (LY_CHANNEL_ERROR, LY_CHANNEL_ERROR_CLOSED,
                        _("Channel “%s” is closed: %s"), self->name, self->end_error->message);

  return g_error_new (LY_CHANNEL_ERROR, LY_CHANNEL_ERROR_CLOSED,
                      _("Channel “%s” is closed"), self->name);
}

/* Waking and scheduling --------------------------------------------------- */

static void
wake_waiters_locked (LyChannel *self)
{
  if (self->n_waiters > 0)
    g_cond_broadcast (&self->cond);

  /* the iterating thread needs a wake-up only if it is not this one */
  if (self->n_iterating > 0 && !g_main_context_is_owner (self->context))
    g_main_context_wakeup (self->context);

  if (self->poller_active && self->wakeup_fd >= 0)
    {
      guint64 one = 1;

      /* a full counter is still readable: the poller wakes either way */
      if (write (self->wakeup_fd, &one, sizeof one) < 0 && errno != EAGAIN)
        g_warning ("Could not wake a thread waiting on channel “%s”: %s",
                   self->name, g_strerror (errno));
      self->wakeup_signaled = TRUE;
    }
}

static void
schedule_dispatch_locked (LyChannel *self,
                          gint64     delay_usec)
{
  gint64 when;
  gint64 current;

  if (self->source == NULL)
    return;

  when = delay_usec == 0 ? 0 : g_get_monotonic_time () + delay_usec;
  current = g_source_get_ready_time (self->source);
  if (current == -1 || when < current)
    g_source_set_ready_time (self->source, when);
}

static void
update_interest_locked (LyChannel *self)
{
  GIOCondition interest = 0;

  if (self->transport == NULL || self->source == NULL)
    return;

  /* Reading stops while the receive queue is over its bound: the
   * kernel's buffer fills and the peer's sends wait.  That is the
   * back-pressure. */
  if (!self->closed && self->incoming_bytes < self->max_queued_bytes)
    interest |= G_IO_IN;
  if (ly_wire_writer_get_queued (self->writer) > 0)
    interest |= G_IO_OUT;

  if (interest != self->interest)
    {
      self->interest = interest;
      ly_transport_set_interest (self->transport, self->source, interest);
    }
}

static gboolean
dispatching_own_source (LyChannel *self)
{
  return self->source != NULL && g_main_current_source () == self->source;
}

/* Arms the source for what only a dispatch can do: emit, complete
 * operations.  A UNSET channel holding messages is looked at again
 * later: a handler may be connected, and no GObject hook tells us. */
static void
schedule_needed_dispatch_locked (LyChannel *self)
{
  PendingOp *ack = g_queue_peek_head (&self->send_acks);
  gboolean has_messages = !g_queue_is_empty (&self->incoming);

  if ((has_messages && self->mode == LY_CHANNEL_MODE_PASSIVE) ||
      (has_messages && !g_queue_is_empty (&self->receive_ops)) ||
      (ack != NULL && ack->target <= ly_wire_writer_get_written_total (self->writer)) ||
      (self->closed && !self->closed_emitted) ||
      !g_queue_is_empty (&self->lost_acks) ||
      self->mode_changed || self->frames_pending)
    schedule_dispatch_locked (self, 0);
  else if (has_messages && self->mode == LY_CHANNEL_MODE_UNSET)
    schedule_dispatch_locked (self, UNSET_RECHECK_USEC);
}

/* The end of a connection ------------------------------------------------- */

/* Takes @error (NULL for a clean end). */
static void detach_connection_locked (LyChannel *self,
                                      GError    *error);

static void
end_connection_locked (LyChannel *self,
                       GError    *error)
{
  /* Ended already; or, for a hub's channel, detached already: a second
   * detach would drop what waits for the next process. */
  if (self->ended || self->transport == NULL)
    {
      g_clear_error (&error);
      return;
    }

  if (self->persistent && !self->closed)
    {
      detach_connection_locked (self, error);
      return;
    }

  if (error != NULL)
    g_debug ("Channel “%s” ended: %s", self->name, error->message);

  self->ended = TRUE;
  self->closed = TRUE;
  self->end_error = error;

  if (self->source != NULL)
    ly_transport_detach (self->transport, self->source);
  self->interest = 0;
  /* A poller still holds a reference: the fd closes when it lets go. */
  g_clear_pointer (&self->transport, ly_transport_unref);
  ly_wire_writer_clear (self->writer);

  wake_waiters_locked (self);
  schedule_dispatch_locked (self, 0);
}

/* Writing ----------------------------------------------------------------- */

static void read_locked (LyChannel *self);

static gsize
message_frame_size (GVariant *message)
{
  return ly_wire_frame_size (strlen (g_variant_get_type_string (message)),
                             g_variant_get_size (message));
}

static gboolean
has_room_locked (LyChannel *self,
                 gsize      frame_size)
{
  gsize queued = ly_wire_writer_get_backlog (self->writer);

  /* An empty queue takes any one message: the bound is on backlog. */
  return queued == 0 || queued + frame_size <= self->max_queued_bytes;
}

/* Queues @message: in a sealed memfd when it is large and the peer
 * takes them (the data then crosses without the socket's two copies
 * and is not copied again on the other side), inline otherwise, or
 * when the system refuses a memfd. */
static void
append_message_locked (LyChannel *self,
                       GVariant  *message)
{
  gsize size = g_variant_get_size (message);

  if (self->peer_memfd && self->memfd_capable && self->memfd_threshold > 0 && size >= self->memfd_threshold)
    {
      g_autoptr(GError) error = NULL;
      int fd = ly_wire_memfd_new (message, &error);

      if (fd >= 0)
        {
          ly_wire_writer_append_memfd (self->writer, g_variant_get_type_string (message), size, fd);
          return;
        }
      g_debug ("Channel “%s”: %s; sending it inline", self->name, error->message);
    }
  ly_wire_writer_append (self->writer, LY_WIRE_KIND_MESSAGE, message);
}

/* Moves sends that waited for room into the queue, in order. */
static void
pump_send_waiters_locked (LyChannel *self)
{
  PendingOp *op;

  while ((op = g_queue_peek_head (&self->send_waiters)) != NULL)
    {
      if (op->message != NULL)
        {
          if (!has_room_locked (self, message_frame_size (op->message)))
            break;
          append_message_locked (self, op->message);
          g_clear_pointer (&op->message, g_variant_unref);
        }

      op->target = ly_wire_writer_get_enqueued_total (self->writer);
      g_queue_push_tail (&self->send_acks, g_queue_pop_head (&self->send_waiters));
    }
}

/* One write of what @writer holds, with the file descriptors of the
 * memfd frames that start in it (which then are the peer's: ours are
 * closed).  *@offered: how many bytes it tried. */
static gssize
write_some (LyTransport  *transport,
            LyWireWriter *writer,
            gsize        *offered,
            GError      **error)
{
  GOutputVector vectors[64];
  int fds[LY_TRANSPORT_MAX_FDS];
  gsize n_vectors = ly_wire_writer_get_vectors (writer, vectors, G_N_ELEMENTS (vectors));
  gsize total = 0, limit, n_fds;
  gssize n;

  for (gsize i = 0; i < n_vectors; i++)
    total += vectors[i].size;

  /* no more bytes than the fds that fit in one write go with */
  limit = total;
  n_fds = ly_wire_writer_get_fds (writer, fds, G_N_ELEMENTS (fds), &limit);
  for (gsize i = 0, sum = 0; limit < total && i < n_vectors; i++)
    {
      if (sum + vectors[i].size >= limit)
        {
          vectors[i].size = limit - sum;
          n_vectors = i + 1;
          break;
        }
      sum += vectors[i].size;
    }

  *offered = limit;
  n = ly_transport_writev (transport, vectors, n_vectors, fds, n_fds, error);
  if (n > 0)
    {
      ly_wire_writer_sent_fds (writer, n_fds);
      ly_wire_writer_consume (writer, n);
    }
  return n;
}

static void
write_locked (LyChannel *self)
{
  while (self->transport != NULL && ly_wire_writer_get_queued (self->writer) > 0)
    {
      g_autoptr(GError) error = NULL;
      gsize offered = 0;
      gssize n;

      n = write_some (self->transport, self->writer, &offered, &error);
      self->write_blocked = n < 0 && g_error_matches (error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK);
      if (n < 0)
        {
          if (self->write_blocked)
            break;

          /* The peer may have closed cleanly and its goodbye be
           * waiting to be read: that, not the failed write, is the news,
           * and reading it may have ended the connection already. */
          read_locked (self);
          if (self->transport == NULL)
            return;
          end_connection_locked (self,
                                 g_error_new (LY_CHANNEL_ERROR, LY_CHANNEL_ERROR_DISCONNECTED,
                                              _("Could not write to the peer of channel “%s”: %s"),
                                              self->name, error->message));
          return;
        }

      self->last_write_at = g_get_monotonic_time ();
      self->read_since_write = FALSE;
      pump_send_waiters_locked (self);

      if ((gsize) n < offered)
        break;
    }

  self->retry_write_at = ly_wire_writer_get_queued (self->writer) + LY_WIRE_LARGE_MESSAGE;

  if (ly_wire_writer_get_queued (self->writer) == 0)
    {
      /* After close(), the goodbye was the last frame: its leaving ends
       * the connection cleanly. */
      if (self->closed && !self->ended)
        end_connection_locked (self, NULL);
      else
        wake_waiters_locked (self);
    }
}

/* Reading ----------------------------------------------------------------- */

/* The peer's announced name (taken), as the string kept for it: a
 * reconnecting peer announces its name again, and a caller of
 * ly_channel_get_peer_process_name() in another thread may still hold
 * the last one.  Only a new connection adds a name. */
static const char *
remember_peer_name_locked (LyChannel *self,
                           char      *name)
{
  const char *kept;

  if (self->peer_names == NULL)
    self->peer_names = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);

  kept = g_hash_table_lookup (self->peer_names, name);
  if (kept != NULL)
    {
      g_free (name);
      return kept;
    }

  g_hash_table_add (self->peer_names, name);
  return name;
}

static void
handle_frame_locked (LyChannel  *self,
                     LyWireKind  kind,
                     GVariant   *value)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *peer_name = NULL;

  if (!self->hello_received)
    {
      gboolean peer_memfd = FALSE;

      if (kind != LY_WIRE_KIND_HELLO)
        {
          end_connection_locked (self,
                                 g_error_new (LY_CHANNEL_ERROR, LY_CHANNEL_ERROR_PROTOCOL,
                                              _("The peer of channel “%s” did not start with a hello frame"),
                                              self->name));
          g_clear_pointer (&value, g_variant_unref);
          return;
        }

      if (!ly_wire_hello_parse (value, &peer_name, &self->peer_pid, &peer_memfd, &error))
        {
          end_connection_locked (self,
                                 g_error_new (LY_CHANNEL_ERROR, LY_CHANNEL_ERROR_PROTOCOL,
                                              "%s", error->message));
          g_variant_unref (value);
          return;
        }
      self->peer_process_name = remember_peer_name_locked (self, g_steal_pointer (&peer_name));
      self->peer_memfd = peer_memfd;

      self->hello_received = TRUE;
      g_variant_unref (value);
      return;
    }

  switch (kind)
    {
    case LY_WIRE_KIND_MESSAGE:
      self->incoming_bytes += message_cost (value);
      g_queue_push_tail (&self->incoming, value);
      break;

    case LY_WIRE_KIND_GOODBYE:
      end_connection_locked (self, NULL);
      break;

    case LY_WIRE_KIND_HELLO:
    default:
      g_clear_pointer (&value, g_variant_unref);
      end_connection_locked (self,
                             g_error_new (LY_CHANNEL_ERROR, LY_CHANNEL_ERROR_PROTOCOL,
                                          _("The peer of channel “%s” sent a second hello frame"),
                                          self->name));
      break;
    }
}

static void
read_eof_locked (LyChannel *self)
{
  /* A stream that ends inside a frame is malformed, whatever the cause. */
  if (ly_wire_reader_has_partial (self->reader))
    end_connection_locked (self,
                           g_error_new (LY_CHANNEL_ERROR, LY_CHANNEL_ERROR_PROTOCOL,
                                        _("The connection of channel “%s” ended in the middle of a frame"),
                                        self->name));
  else
    end_connection_locked (self,
                           g_error_new (LY_CHANNEL_ERROR, LY_CHANNEL_ERROR_DISCONNECTED,
                                        _("The peer of channel “%s” went away without closing it"),
                                        self->name));
}

/* Decodes every complete frame in the reader's buffer. */
static void
decode_locked (LyChannel *self)
{
  for (;;)
    {
      g_autoptr(GError) error = NULL;
      GVariant *value = NULL;
      LyWireKind kind;

      switch (ly_wire_reader_next (self->reader, &kind, &value, &error))
        {
        case LY_WIRE_FRAME:
          self->read_since_write = TRUE;
          handle_frame_locked (self, kind, value);
          if (self->ended)
            return;
          if (--self->frames_left == 0)
            {
              /* the budget is spent: the rest on the next dispatch */
              self->frames_pending = TRUE;
              return;
            }
          break;

        case LY_WIRE_ERROR:
          g_prefix_error (&error, _("Channel “%s”: "), self->name);
          end_connection_locked (self, g_steal_pointer (&error));
          return;

        case LY_WIRE_NEED_MORE:
        default:
          return;
        }
    }
}

/* With a frame budget, one dispatch handles about DISPATCH_SLICE_NSEC
 * worth of messages, by what they cost lately, and at least one: a
 * flood of storage sets gets a message or two a turn, so another child's
 * request waits for little more than that, while cheap requests still
 * go several to a turn (one turn of a busy context costs microseconds
 * of polling). */
#define DISPATCH_SLICE_NSEC (20 * 1000)

static guint
frames_for_one_dispatch (LyChannel *self)
{
  gint64 frames;

  if (self->frame_budget == 0)
    return G_MAXUINT;
  frames = DISPATCH_SLICE_NSEC / MAX (self->frame_cost_ns, 1);
  return (guint) CLAMP (frames, 1, (gint64) self->frame_budget);
}

/* Reads what is there, up to one buffer's worth so that one busy
 * channel cannot starve the rest of the context; with a frame budget, up
 * to that many messages (see ly_channel_set_frame_budget()). */
static void
read_locked (LyChannel *self)
{
  gsize budget = LY_WIRE_READ_BUFFER_SIZE;

  self->frames_left = frames_for_one_dispatch (self);
  if (self->frames_pending)
    {
      /* what the last dispatch left in the reader comes first */
      self->frames_pending = FALSE;
      decode_locked (self);
    }

  while (self->transport != NULL && !self->closed && budget > 0 &&
         self->incoming_bytes < self->max_queued_bytes)
    {
      g_autoptr(GError) error = NULL;
      int fds[LY_TRANSPORT_MAX_FDS];
      gsize space_size, n_fds = 0;
      guint8 *space;
      gssize n;

      if (self->frames_pending)
        break;
      space = ly_wire_reader_get_space (self->reader, &space_size);
      n = ly_transport_read (self->transport, space, space_size, fds, &n_fds, &error);
      if (n > 0 && !ly_wire_reader_take_fds (self->reader, fds, n_fds, &error))
        {
          g_prefix_error (&error, _("Channel “%s”: "), self->name);
          end_connection_locked (self, g_steal_pointer (&error));
          break;
        }

      if (n < 0)
        {
          if (!g_error_matches (error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK))
            end_connection_locked (self,
                                   g_error_new (LY_CHANNEL_ERROR, LY_CHANNEL_ERROR_DISCONNECTED,
                                                _("Could not read from the peer of channel “%s”: %s"),
                                                self->name, error->message));
          break;
        }

      if (n == 0)
        {
          read_eof_locked (self);
          break;
        }

      ly_wire_reader_commit (self->reader, n);
      decode_locked (self);

      /* A short read means the socket is drained: save the EAGAIN. */
      if ((gsize) n < space_size)
        break;
      budget -= MIN (budget, (gsize) n);
    }

  if (!g_queue_is_empty (&self->incoming))
    wake_waiters_locked (self);
}

/* Bytes read outside the reader (a blocking read): 0 is end of stream. */
static void
take_bytes_locked (LyChannel    *self,
                   const guint8 *data,
                   gsize         size,
                   const int    *fds,
                   gsize         n_fds)
{
  g_autoptr(GError) error = NULL;

  if (!ly_wire_reader_take_fds (self->reader, fds, n_fds, &error))
    {
      g_prefix_error (&error, _("Channel “%s”: "), self->name);
      end_connection_locked (self, g_steal_pointer (&error));
      return;
    }
  if (size == 0)
    {
      read_eof_locked (self);
      return;
    }

  /* a blocking read takes everything: no budget */
  self->frames_left = G_MAXUINT;
  self->frames_pending = FALSE;
  while (size > 0 && !self->ended)
    {
      gsize space_size;
      guint8 *space = ly_wire_reader_get_space (self->reader, &space_size);
      gsize n = MIN (space_size, size);

      memcpy (space, data, n);
      ly_wire_reader_commit (self->reader, n);
      decode_locked (self);
      data += n;
      size -= n;
    }
}

static void
do_io_locked (LyChannel    *self,
              GIOCondition  ready)
{
  /* Reading first: a goodbye from the peer explains a failed write.
   * Frames the last read's budget left in the reader are taken even when
   * the socket has nothing new. */
  if (self->transport != NULL &&
      ((ready & (G_IO_IN | G_IO_ERR | G_IO_HUP)) != 0 || self->frames_pending))
    read_locked (self);
  if (self->transport != NULL && (ready & (G_IO_OUT | G_IO_ERR | G_IO_HUP)) != 0)
    write_locked (self);
  update_interest_locked (self);
}

/* Delivery ---------------------------------------------------------------- */

typedef struct
{
  GQueue  messages;          /* to emit as `received` */
  GQueue  received_ops;      /* receive ops, ->message set to what they get */
  GQueue  done_ops;          /* sends and flushes that succeeded */
  GQueue  failed_ops;        /* operations to fail with a closed error */
  GError *closed_error;      /* for the failed ops */
  GQueue  lost_ops;          /* sends whose connection went away first */
  GError *lost_error;
  gboolean emit_closed;
  GError  *emit_closed_error;
  gboolean notify_mode;
} Delivery;

/* Any handler of `received`, whatever its detail (which
 * g_signal_has_handler_pending() does not give with detail 0). */
static gboolean
has_received_handler (LyChannel *self)
{
  return g_signal_handler_find (self, G_SIGNAL_MATCH_ID, signals[RECEIVED],
                                0, NULL, NULL, NULL) != 0;
}

static void
collect_mode_locked (LyChannel *self,
                     Delivery  *delivery)
{
  if (self->mode == LY_CHANNEL_MODE_UNSET && !g_queue_is_empty (&self->incoming))
    {
      if (self->message_func != NULL || has_received_handler (self))
        {
          self->mode = LY_CHANNEL_MODE_PASSIVE;
          self->mode_changed = TRUE;
        }
    }

  if (self->mode == LY_CHANNEL_MODE_ACTIVE && !self->warned_mixed &&
      has_received_handler (self))
    {
      self->warned_mixed = TRUE;
      g_warning ("Channel “%s” is in active mode: its “received” handlers are not called",
                 self->name);
    }

  delivery->notify_mode = self->mode_changed;
  self->mode_changed = FALSE;
}

static void
collect_messages_locked (LyChannel *self,
                         Delivery  *delivery)
{
  if (self->mode == LY_CHANNEL_MODE_PASSIVE)
    {
      delivery->messages = self->incoming;
      g_queue_init (&self->incoming);
      self->incoming_bytes = 0;
    }
  else if (self->mode == LY_CHANNEL_MODE_ACTIVE)
    {
      while (!g_queue_is_empty (&self->receive_ops) && !g_queue_is_empty (&self->incoming))
        {
          PendingOp *op = g_queue_pop_head (&self->receive_ops);

          op->message = g_queue_pop_head (&self->incoming);
          self->incoming_bytes -= message_cost (op->message);
          g_queue_push_tail (&delivery->received_ops, op);
        }
    }
}

static void
move_all (GQueue *from,
          GQueue *to)
{
  PendingOp *op;

  while ((op = g_queue_pop_head (from)) != NULL)
    g_queue_push_tail (to, op);
}

static void
collect_ops_locked (LyChannel *self,
                    Delivery  *delivery)
{
  guint64 written = ly_wire_writer_get_written_total (self->writer);
  PendingOp *op;

  pump_send_waiters_locked (self);

  while ((op = g_queue_peek_head (&self->send_acks)) != NULL && op->target <= written)
    g_queue_push_tail (&delivery->done_ops, g_queue_pop_head (&self->send_acks));

  if (self->closed)
    {
      move_all (&self->send_waiters, &delivery->failed_ops);
      if (g_queue_is_empty (&self->incoming))
        move_all (&self->receive_ops, &delivery->failed_ops);
    }

  if (self->ended)
    move_all (&self->send_acks, &delivery->failed_ops);

  if (!g_queue_is_empty (&delivery->failed_ops))
    delivery->closed_error = closed_error_new_locked (self);

  move_all (&self->lost_acks, &delivery->lost_ops);
  delivery->lost_error = g_steal_pointer (&self->lost_error);

  if (self->closed && !self->closed_emitted)
    {
      self->closed_emitted = TRUE;
      delivery->emit_closed = TRUE;
      /* A local close is clean even if flushing it fails later. */
      if (self->end_error != NULL)
        delivery->emit_closed_error = g_error_copy (self->end_error);
    }
}

static void
deliver (LyChannel *self,
         Delivery  *delivery)
{
  GVariant *message;
  PendingOp *op;

  if (delivery->notify_mode)
    g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_MODE]);

  while ((message = g_queue_pop_head (&delivery->messages)) != NULL)
    {
      if (self->message_func != NULL)
        self->message_func (self, message, self->message_data);
      else
        g_signal_emit (self, signals[RECEIVED],
                       g_quark_try_string (g_variant_get_type_string (message)), message);
      g_variant_unref (message);
    }

  while ((op = g_queue_pop_head (&delivery->received_ops)) != NULL)
    pending_op_finish (op, NULL, g_steal_pointer (&op->message));

  while ((op = g_queue_pop_head (&delivery->done_ops)) != NULL)
    pending_op_finish (op, NULL, NULL);

  while ((op = g_queue_pop_head (&delivery->failed_ops)) != NULL)
    pending_op_finish (op, g_error_copy (delivery->closed_error), NULL);
  g_clear_error (&delivery->closed_error);

  while ((op = g_queue_pop_head (&delivery->lost_ops)) != NULL)
    pending_op_finish (op, g_error_copy (delivery->lost_error), NULL);
  g_clear_error (&delivery->lost_error);

  if (delivery->emit_closed)
    {
      g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_CLOSED]);
      g_signal_emit (self, signals[CLOSED], 0, delivery->emit_closed_error);
      g_clear_error (&delivery->emit_closed_error);
    }
}

/* Delivers, and notes what each message cost its handler, for
 * frames_for_one_dispatch(). */
static void
deliver_timed (LyChannel *self,
               Delivery  *delivery)
{
  guint n_messages = g_queue_get_length (&delivery->messages);
  gint64 started = g_get_monotonic_time ();
  gint64 cost_ns;

  deliver (self, delivery);
  if (n_messages == 0)
    return;
  cost_ns = (g_get_monotonic_time () - started) * 1000 / n_messages;
  g_mutex_lock (&self->mutex);
  self->frame_cost_ns = (3 * self->frame_cost_ns + cost_ns) / 4;
  g_mutex_unlock (&self->mutex);
}

/* One round of the channel's work: the I/O that @ready allows, then the
 * delivery of what arrived.  Runs in the channel's context: from its
 * source, or inline from a blocking call of the thread that owns the
 * context. */
static void
channel_process (LyChannel    *self,
                 GIOCondition  ready)
{
  Delivery delivery = { G_QUEUE_INIT, G_QUEUE_INIT, G_QUEUE_INIT, G_QUEUE_INIT, };
  gboolean timed;

  g_queue_init (&delivery.lost_ops);

  g_mutex_lock (&self->mutex);
  if (self->transport != NULL)
    do_io_locked (self, ready);

  /* A handler that runs a nested main loop brings us back here: do the
   * I/O, but deliver nothing until the outer dispatch has delivered
   * what it took, or messages would overtake each other. */
  if (self->dispatching)
    {
      g_mutex_unlock (&self->mutex);
      return;
    }
  self->dispatching = TRUE;

  collect_mode_locked (self, &delivery);
  collect_messages_locked (self, &delivery);
  collect_ops_locked (self, &delivery);
  update_interest_locked (self);
  timed = self->frame_budget > 0;
  g_mutex_unlock (&self->mutex);

  if (timed)
    deliver_timed (self, &delivery);
  else
    deliver (self, &delivery);

  /* Replies sent by the handlers leave now, in one write, instead of
   * after another round of polling. */
  g_mutex_lock (&self->mutex);
  if (self->transport != NULL && ly_wire_writer_get_queued (self->writer) > 0)
    {
      write_locked (self);
      update_interest_locked (self);
    }
  self->dispatching = FALSE;
  schedule_needed_dispatch_locked (self);
  g_mutex_unlock (&self->mutex);
}

/* Reads what has arrived without waiting; TRUE if a message came. */
static gboolean
read_now (LyChannel *self)
{
  guint before;
  gboolean got = FALSE;

  g_mutex_lock (&self->mutex);
  if (self->transport != NULL && !self->closed)
    {
      before = g_queue_get_length (&self->incoming);
      read_locked (self);
      got = g_queue_get_length (&self->incoming) != before;
    }
  g_mutex_unlock (&self->mutex);

  return got;
}

/* Notes when this dispatch wrote (a reply) and says whether the peer is
 * in a run of round trips: its request came back within the busy-poll
 * window of our previous reply. */
static gboolean
in_round_trips (LyChannel *self,
                gint64     window,
                gint64     started)
{
  gint64 previous = self->last_written_at;
  gboolean wrote;

  g_mutex_lock (&self->mutex);
  wrote = ly_wire_writer_get_written_total (self->writer) != self->busy_poll_written;
  self->busy_poll_written = ly_wire_writer_get_written_total (self->writer);
  g_mutex_unlock (&self->mutex);

  if (!wrote)
    return FALSE;
  self->last_written_at = g_get_monotonic_time ();

  return previous > 0 && started - previous <= window;
}

/* Whether the peer sent more than this dispatch took: it does not wait
 * for each reply, and busy polling would only give it more than its
 * share of the context (a flood of requests, 500 µs at a time). */
static gboolean
is_pipelining (LyChannel *self)
{
  gboolean pipelining;

  g_mutex_lock (&self->mutex);
  pipelining = self->frames_pending;
  g_mutex_unlock (&self->mutex);

  return pipelining;
}

/* A peer that makes one blocking request after another (a child's
 * ly_storage_get() in a loop) comes back tens of microseconds after
 * each reply.  Sleeping in poll() and waking up costs about as much
 * again, so during such a run the channel waits for the next request
 * by reading without blocking, as an adaptive mutex spins before it
 * sleeps: at most @window for each request, and at most
 * BUSY_POLL_BUDGET_USEC in all before the other sources get their
 * turn.  An isolated request never spins. */
static void
busy_poll (LyChannel *self,
           gint64     window)
{
  gint64 started = g_get_monotonic_time ();
  gint64 budget_end = started + BUSY_POLL_BUDGET_USEC;

  if (!in_round_trips (self, window, started) || is_pipelining (self))
    return;

  for (;;)
    {
      gint64 now = g_get_monotonic_time ();
      gint64 until = MIN (now + window, budget_end);

      while (!read_now (self))
        if ((now = g_get_monotonic_time ()) >= until)
          return;

      channel_process (self, G_IO_OUT);
      if (!in_round_trips (self, window, now) || is_pipelining (self) || now >= budget_end)
        return;
    }
}

static gboolean
channel_source_dispatch (GSource     *source,
                         GSourceFunc  callback,
                         gpointer     user_data)
{
  ChannelSource *channel_source = (ChannelSource *) source;
  g_autoptr(LyChannel) self = g_weak_ref_get (&channel_source->channel);
  GIOCondition ready = 0;
  gint64 busy_poll_usec;

  if (self == NULL)
    return G_SOURCE_CONTINUE;

  g_source_set_ready_time (source, -1);

  g_mutex_lock (&self->mutex);
  if (self->transport != NULL)
    ready = ly_transport_query (self->transport, source);
  busy_poll_usec = self->busy_poll_usec;
  g_mutex_unlock (&self->mutex);

  channel_process (self, ready | G_IO_OUT);
  if ((ready & G_IO_IN) != 0 && busy_poll_usec > 0)
    busy_poll (self, busy_poll_usec);

  return G_SOURCE_CONTINUE;
}

static void
channel_source_finalize (GSource *source)
{
  g_weak_ref_clear (&((ChannelSource *) source)->channel);
}

static GSourceFuncs channel_source_funcs = {
  .dispatch = channel_source_dispatch,
  .finalize = channel_source_finalize,
};

/* Blocking waits ---------------------------------------------------------- */

typedef enum
{
  WAIT_AGAIN,
  WAIT_DONE,
  WAIT_FAILED,
} WaitStatus;

typedef WaitStatus (*WaitFunc) (LyChannel *self,
                                gpointer   data,
                                GError   **error);

static void
wake_on_cancel (GCancellable *cancellable,
                LyChannel    *self)
{
  g_mutex_lock (&self->mutex);
  wake_waiters_locked (self);
  g_mutex_unlock (&self->mutex);
}

static gboolean
ensure_wakeup_fd_locked (LyChannel  *self,
                         GError    **error)
{
  if (self->wakeup_fd < 0)
    {
      self->wakeup_fd = eventfd (0, EFD_CLOEXEC | EFD_NONBLOCK);
      if (self->wakeup_fd < 0)
        {
          int saved_errno = errno;

          g_set_error (error, G_IO_ERROR, g_io_error_from_errno (saved_errno),
                       _("Could not create an event file descriptor: %s"), g_strerror (saved_errno));
          return FALSE;
        }
    }
  else if (self->wakeup_signaled)
    {
      guint64 count;

      /* drain: the poll below must sleep until the next wake-up */
      (void) read (self->wakeup_fd, &count, sizeof count);
      self->wakeup_signaled = FALSE;
    }

  return TRUE;
}

/* This thread polls the socket itself, with @mutex dropped; then takes
 * it again and does the I/O. */
static gboolean
poll_once_locked (LyChannel  *self,
                  gint64      deadline,
                  GError    **error)
{
  g_autoptr(LyTransport) transport = NULL;
  GIOCondition want = self->interest;
  gint64 until;

  if (!ensure_wakeup_fd_locked (self, error))
    return FALSE;

  if (!self->closed && self->incoming_bytes < self->max_queued_bytes)
    want |= G_IO_IN;
  if (ly_wire_writer_get_queued (self->writer) > 0)
    want |= G_IO_OUT;

  /* a time slice, not the whole wait: what this thread reads may need
   * the context (a passive channel's delivery), whose thread may stop
   * running it meanwhile; then this one takes it over */
  until = g_get_monotonic_time () + WAIT_SLICE_USEC;
  if (deadline >= 0)
    until = MIN (until, deadline);

  transport = ly_transport_ref (self->transport);
  self->poller_active = TRUE;
  g_mutex_unlock (&self->mutex);

  ly_transport_wait (transport, want, self->wakeup_fd, until);

  g_mutex_lock (&self->mutex);
  self->poller_active = FALSE;
  if (self->transport == transport)
    do_io_locked (self, G_IO_IN | G_IO_OUT);
  schedule_needed_dispatch_locked (self);
  /* let another waiting thread take over the polling */
  if (self->n_waiters > 0)
    g_cond_broadcast (&self->cond);

  return TRUE;
}

/* Ends an iteration of a blocking call at the end of its time slice. */
static gboolean
slice_dispatch (GSource     *source,
                GSourceFunc  callback,
                gpointer     user_data)
{
  g_source_set_ready_time (source, -1);
  return G_SOURCE_CONTINUE;
}

static GSourceFuncs slice_source_funcs = {
  .dispatch = slice_dispatch,
};

/* Nobody else runs the channel's context: run it here, as a nested main
 * loop would, so that our source and every other one in the context
 * (other channels' writes, their passive handlers) make progress.  At
 * most WAIT_SLICE_USEC at a time, so that a thread that wants to start
 * a main loop on the context gets it soon. */
/* Drops @mutex while the context runs, and takes it again. */
static void
iterate_once_locked (LyChannel *self,
                     gint64     deadline)
{
  gint64 until = g_get_monotonic_time () + WAIT_SLICE_USEC;
  GSource *timeout = g_source_new (&slice_source_funcs, sizeof (GSource));

  if (deadline >= 0)
    until = MIN (until, deadline);
  g_source_set_ready_time (timeout, until);
  g_source_attach (timeout, self->context);

  self->n_iterating++;
  g_mutex_unlock (&self->mutex);

  g_main_context_iteration (self->context, TRUE);

  g_mutex_lock (&self->mutex);
  self->n_iterating--;

  g_source_destroy (timeout);
  g_source_unref (timeout);
}

/* Waits on @cond, which drops @mutex meanwhile. */
static void
wait_on_cond_locked (LyChannel *self,
                     gint64     now,
                     gint64     deadline)
{
  gint64 until = now + WAIT_SLICE_USEC;

  if (deadline >= 0)
    until = MIN (until, deadline);

  self->n_waiters++;
  g_cond_wait_until (&self->cond, &self->mutex, until);
  self->n_waiters--;
}

/* Waits until @func says done or failed.  Cancellation gives
 * G_IO_ERROR_CANCELLED, a passed @deadline (monotonic, -1 for none)
 * G_IO_ERROR_TIMED_OUT.
 *
 * How this thread waits depends on who runs the channel's context:
 * nobody (run it here), another thread (poll the socket directly, or
 * wait for the thread that does), or this very dispatch of our own
 * source, which cannot recurse (poll directly). */
static gboolean
channel_wait (LyChannel     *self,
              WaitFunc       func,
              gpointer       data,
              gint64         deadline,
              GCancellable  *cancellable,
              GError       **error)
{
  WaitStatus status;
  gulong cancel_id = 0;

  if (cancellable != NULL)
    cancel_id = g_cancellable_connect (cancellable, G_CALLBACK (wake_on_cancel), self, NULL);

  g_mutex_lock (&self->mutex);
  while ((status = func (self, data, error)) == WAIT_AGAIN)
    {
      gint64 now = g_get_monotonic_time ();

      if (g_cancellable_set_error_if_cancelled (cancellable, error))
        {
          status = WAIT_FAILED;
          break;
        }

      if (deadline >= 0 && now >= deadline)
        {
          g_set_error (error, G_IO_ERROR, G_IO_ERROR_TIMED_OUT,
                       _("Timed out waiting on channel “%s”"), self->name);
          status = WAIT_FAILED;
          break;
        }

      if (!dispatching_own_source (self) && g_main_context_acquire (self->context))
        {
          iterate_once_locked (self, deadline);
          g_main_context_release (self->context);
        }
      else if (self->transport != NULL && !self->poller_active)
        {
          if (!poll_once_locked (self, deadline, error))
            {
              status = WAIT_FAILED;
              break;
            }
        }
      else
        wait_on_cond_locked (self, now, deadline);
    }
  g_mutex_unlock (&self->mutex);

  if (cancel_id != 0)
    g_cancellable_disconnect (cancellable, cancel_id);

  return status == WAIT_DONE;
}

typedef struct
{
  gboolean (*done) (gpointer data);
  gpointer   data;
} ExternalWait;

static WaitStatus
external_done_locked (LyChannel  *self,
                      gpointer    data,
                      GError    **error)
{
  ExternalWait *wait = data;

  if (wait->done (wait->data))
    return WAIT_DONE;

  if (self->closed && g_queue_is_empty (&self->incoming))
    {
      g_propagate_error (error, closed_error_new_locked (self));
      return WAIT_FAILED;
    }

  return WAIT_AGAIN;
}

/* The fast way to wait for the reply of a request, when nobody else runs
 * the channel's context: poll this channel only and deliver what arrives
 * here, without a round of the whole context (the reply comes in tens of
 * microseconds; the other sources wait that long).  Gives up, and lets
 * channel_wait() do the general waiting, after one slice or on anything
 * unusual. */
static gboolean
wait_inline (LyChannel     *self,
             ExternalWait  *wait,
             gint64         deadline,
             GCancellable  *cancellable)
{
  gint64 until = g_get_monotonic_time () + WAIT_SLICE_USEC;
  gboolean done = FALSE;

  if (cancellable != NULL || dispatching_own_source (self) || !g_main_context_acquire (self->context))
    return FALSE;

  if (deadline >= 0)
    until = MIN (until, deadline);

  g_mutex_lock (&self->mutex);
  while (!(done = wait->done (wait->data)) && self->transport != NULL && !self->poller_active &&
         g_get_monotonic_time () < until && ensure_wakeup_fd_locked (self, NULL))
    {
      g_autoptr(LyTransport) transport = ly_transport_ref (self->transport);
      gboolean writing = ly_wire_writer_get_queued (self->writer) > 0;
      guint8 buffer[16 * 1024];
      int fds[LY_TRANSPORT_MAX_FDS];
      gsize n_fds = 0;
      gssize n = -1;

      self->poller_active = TRUE;
      g_mutex_unlock (&self->mutex);

      /* Nothing to write: block in recv() itself, one syscall instead of
       * poll() and recv() (bounded by the socket's receive timeout). */
      if (writing || (n = ly_transport_read_blocking (transport, buffer, sizeof buffer, fds, &n_fds)) == -2)
        ly_transport_wait (transport, G_IO_IN | (writing ? G_IO_OUT : 0), self->wakeup_fd, until);

      g_mutex_lock (&self->mutex);
      self->poller_active = FALSE;
      if (n >= 0 && self->transport == transport)
        take_bytes_locked (self, buffer, n, fds, n_fds);
      else
        for (gsize i = 0; i < n_fds; i++)
          close (fds[i]);
      if (self->n_waiters > 0)
        g_cond_broadcast (&self->cond);
      g_mutex_unlock (&self->mutex);

      /* a short blocking read drained the socket: no read to try again */
      channel_process (self, (n >= 0 && (gsize) n < sizeof buffer) ? G_IO_OUT : (G_IO_IN | G_IO_OUT));
      g_mutex_lock (&self->mutex);
    }
  g_mutex_unlock (&self->mutex);

  g_main_context_release (self->context);
  return done;
}

/* Blocks until @done says so, driving the channel as ly_channel_receive()
 * does; whoever makes @done true calls ly_channel_wake().  For calls
 * whose answer arrives through a passive channel's handlers. */
gboolean
ly_channel_wait_until (LyChannel     *self,
                       gboolean     (*done) (gpointer data),
                       gpointer       data,
                       gint64         deadline,
                       GCancellable  *cancellable,
                       GError       **error)
{
  ExternalWait wait = { done, data };

  if (wait_inline (self, &wait, deadline, cancellable))
    return TRUE;

  return channel_wait (self, external_done_locked, &wait, deadline, cancellable, error);
}

/* Gives every message of a passive channel to @func, in the channel's
 * context, instead of emitting `received`: for the library's own
 * protocols, where a signal emission per message is a cost worth
 * saving.  Set before the first message. */
void
ly_channel_set_message_func (LyChannel            *self,
                             LyChannelMessageFunc  func,
                             gpointer              user_data)
{
  g_mutex_lock (&self->mutex);
  self->message_func = func;
  self->message_data = user_data;
  if (func != NULL && self->mode == LY_CHANNEL_MODE_UNSET)
    self->mode = LY_CHANNEL_MODE_PASSIVE;
  schedule_needed_dispatch_locked (self);
  g_mutex_unlock (&self->mutex);
}

GMainContext *
ly_channel_get_context (LyChannel *self)
{
  return self->context;
}

void
ly_channel_wake (LyChannel *self)
{
  g_mutex_lock (&self->mutex);
  wake_waiters_locked (self);
  g_mutex_unlock (&self->mutex);
}

/* Construction ------------------------------------------------------------ */

static void
ly_channel_init (LyChannel *self)
{
  g_mutex_init (&self->mutex);
  g_cond_init (&self->cond);
  self->wakeup_fd = -1;
  self->max_message_size = LY_CHANNEL_DEFAULT_MAX_MESSAGE_SIZE;
  self->max_queued_bytes = LY_CHANNEL_DEFAULT_MAX_QUEUED_BYTES;
  self->frames_left = G_MAXUINT;
  self->reader = ly_wire_reader_new (self->max_message_size);
  self->writer = ly_wire_writer_new ();
  self->memfd_threshold = LY_CHANNEL_DEFAULT_MEMFD_THRESHOLD;
  self->context = g_main_context_ref_thread_default ();
}

/* The source, in the creating thread's context, that does the I/O and
 * the delivery of the channel, whatever connection it has. */
static void
create_source (LyChannel *self)
{
  ChannelSource *source;

  source = (ChannelSource *) g_source_new (&channel_source_funcs, sizeof (ChannelSource));
  g_weak_ref_init (&source->channel, self);
  g_source_set_static_name ((GSource *) source, "[liteyuki-comm] channel");
  /* A source that cannot recurse is blocked during its dispatch, which
   * removes and re-adds its fd to the poll set and wakes the context
   * twice per dispatch: two syscalls per message in a ping-pong.  The
   * dispatch guards against recursion itself. */
  g_source_set_can_recurse ((GSource *) source, TRUE);

  self->source = (GSource *) source;
  g_source_attach (self->source, self->context);
}

/* What the reader takes: messages up to max-message-size, in memfds
 * too when this side offers them. */
static void
set_reader_limits_locked (LyChannel *self)
{
  ly_wire_reader_set_max_message_size (self->reader, self->max_message_size);
  ly_wire_reader_set_max_memfd_size (self->reader, self->memfd_capable ? self->max_message_size : 0);
}

/* The hello is the first frame every side writes on a connection. */
static void
queue_hello_locked (LyChannel *self)
{
  g_autoptr(GVariant) hello = g_variant_ref_sink (ly_wire_hello_new (g_get_prgname (), self->name,
                                                                     self->memfd_capable));

  ly_wire_writer_append (self->writer, LY_WIRE_KIND_HELLO, hello);
}

/* Takes @transport; the hello is already queued. */
static void
attach_locked (LyChannel   *self,
               LyTransport *transport)
{
  self->transport = transport;
  self->hello_received = FALSE;
  self->write_blocked = FALSE;
  self->interest = 0;
  ly_transport_attach (transport, self->source);
  update_interest_locked (self);
  schedule_dispatch_locked (self, 0);
}

/* A persistent channel loses its connection (the process on the other
 * end stopped) but not its handlers, its received messages or its mode.
 * What was queued for the old connection is dropped: it went away with
 * the process.  Sends from now on wait for the next connection. */
static void
detach_connection_locked (LyChannel *self,
                          GError    *error)
{
  PendingOp *op;

  if (error != NULL)
    g_debug ("Channel “%s” lost its connection: %s", self->name, error->message);
  g_clear_error (&error);

  if (self->source != NULL)
    ly_transport_detach (self->transport, self->source);
  g_clear_pointer (&self->transport, ly_transport_unref);
  self->interest = 0;
  self->write_blocked = FALSE;

  ly_wire_writer_clear (self->writer);
  while ((op = g_queue_pop_head (&self->send_acks)) != NULL)
    g_queue_push_tail (&self->lost_acks, op);
  if (!g_queue_is_empty (&self->lost_acks) && self->lost_error == NULL)
    self->lost_error = g_error_new (LY_CHANNEL_ERROR, LY_CHANNEL_ERROR_DISCONNECTED,
                                    _("The process on the other end of channel “%s” went away before the message was written"),
                                    self->name);

  ly_wire_reader_free (self->reader);
  self->reader = ly_wire_reader_new (self->max_message_size);
  set_reader_limits_locked (self);
  self->hello_received = FALSE;
  self->peer_memfd = FALSE;
  self->peer_process_name = NULL;
  self->peer_pid = 0;

  queue_hello_locked (self);
  wake_waiters_locked (self);
  schedule_dispatch_locked (self, 0);
}

/* A channel that runs in @context (or the thread-default one, when %NULL):
 * the hub's channels run in its manager's context, whichever thread makes
 * them and whether or not another thread is running that context. */
static LyChannel *
channel_new_in (const char   *name,
                GMainContext *context)
{
  LyChannel *self = g_object_new (LY_TYPE_CHANNEL, "name", name, NULL);

  if (context != NULL && context != self->context)
    {
      g_main_context_unref (self->context);
      self->context = g_main_context_ref (context);
    }
  create_source (self);

  return self;
}

LyChannel *
ly_channel_new_for_transport (const char   *name,
                              LyTransport  *transport,
                              GMainContext *context)
{
  LyChannel *self = channel_new_in (name, context);

  g_mutex_lock (&self->mutex);
  self->memfd_capable = ly_transport_can_pass_fds (transport);
  set_reader_limits_locked (self);
  queue_hello_locked (self);
  attach_locked (self, transport);
  g_mutex_unlock (&self->mutex);

  return self;
}

/* A channel without a connection yet, that outlives its connections:
 * the hub's end of a child's channel.  Messages sent while it has none
 * wait (within max-queued-bytes) for the next one. */
LyChannel *
ly_channel_new_persistent (const char   *name,
                           GMainContext *context)
{
  LyChannel *self = channel_new_in (name, context);

  g_mutex_lock (&self->mutex);
  self->persistent = TRUE;
  /* its connections are socketpairs the hub makes (ly_channel_attach_socket()) */
  self->memfd_capable = TRUE;
  set_reader_limits_locked (self);
  queue_hello_locked (self);
  g_mutex_unlock (&self->mutex);

  return self;
}

/* Gives a persistent channel its next connection; takes @transport. */
void
ly_channel_attach (LyChannel   *self,
                   LyTransport *transport)
{
  g_return_if_fail (LY_IS_CHANNEL (self));

  g_mutex_lock (&self->mutex);
  g_warn_if_fail (self->persistent);
  if (self->transport != NULL)
    detach_connection_locked (self, NULL);

  if (self->closed)
    ly_transport_unref (transport);
  else
    attach_locked (self, transport);
  g_mutex_unlock (&self->mutex);
}

/* A channel over a connected stream socket (taken) that runs in
 * @context: a hub's end of a child's control connection. */
LyChannel *
ly_channel_new_for_socket (const char   *name,
                           int           fd,
                           GMainContext *context)
{
  return ly_channel_new_for_transport (name, ly_transport_new_for_fd (fd, NULL), context);
}

/* ly_channel_attach() of a connected stream socket (taken). */
void
ly_channel_attach_socket (LyChannel *self,
                          int        fd)
{
  ly_channel_attach (self, ly_transport_new_for_fd (fd, NULL));
}

/* Drops the connection of a persistent channel, if it has one. */
void
ly_channel_detach (LyChannel *self)
{
  g_return_if_fail (LY_IS_CHANNEL (self));

  g_mutex_lock (&self->mutex);
  if (self->transport != NULL && self->persistent && !self->closed)
    detach_connection_locked (self, NULL);
  g_mutex_unlock (&self->mutex);
}

/* Ends the connection now, dropping whatever was queued for it: for a
 * peer that broke the rules of a protocol above the wire (a child that
 * floods its control connection without reading the replies), which
 * deserves no flush.  Takes @error, the reason, reported by `closed`. */
void
ly_channel_abort (LyChannel *self,
                  GError    *error)
{
  g_mutex_lock (&self->mutex);
  self->persistent = FALSE;
  end_connection_locked (self, error);
  g_mutex_unlock (&self->mutex);
}

gboolean
ly_channel_is_connected (LyChannel *self)
{
  gboolean connected;

  g_mutex_lock (&self->mutex);
  connected = self->transport != NULL && self->hello_received;
  g_mutex_unlock (&self->mutex);

  return connected;
}

/* Hands what is still queued after close() to a source of its own that
 * writes it out, so that dropping the last reference right after
 * close() loses nothing, within LY_CHANNEL_LINGER_USEC. */
typedef struct
{
  GSource       source;
  LyTransport  *transport;
  LyWireWriter *writer;
  gint64        deadline;
} LingerSource;

static gboolean
linger_dispatch (GSource     *source,
                 GSourceFunc  callback,
                 gpointer     user_data)
{
  LingerSource *linger = (LingerSource *) source;

  while (ly_wire_writer_get_queued (linger->writer) > 0 &&
         g_get_monotonic_time () < linger->deadline)
    {
      g_autoptr(GError) error = NULL;
      gsize offered;
      gssize n = write_some (linger->transport, linger->writer, &offered, &error);

      if (n < 0)
        {
          if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK))
            return G_SOURCE_CONTINUE;
          break;
        }
    }

  ly_transport_detach (linger->transport, source);
  return G_SOURCE_REMOVE;
}

static void
linger_finalize (GSource *source)
{
  LingerSource *linger = (LingerSource *) source;

  ly_transport_forget_source (linger->transport);
  ly_transport_unref (linger->transport);
  ly_wire_writer_free (linger->writer);
}

static GSourceFuncs linger_source_funcs = {
  .dispatch = linger_dispatch,
  .finalize = linger_finalize,
};

static void
linger_start_locked (LyChannel *self)
{
  LingerSource *linger;

  linger = (LingerSource *) g_source_new (&linger_source_funcs, sizeof (LingerSource));
  g_source_set_static_name ((GSource *) linger, "[liteyuki-comm] closing channel");
  linger->transport = g_steal_pointer (&self->transport);
  linger->writer = g_steal_pointer (&self->writer);
  linger->deadline = g_get_monotonic_time () + LY_CHANNEL_LINGER_USEC;
  self->writer = ly_wire_writer_new ();
  self->ended = TRUE;

  ly_transport_attach (linger->transport, (GSource *) linger);
  ly_transport_set_interest (linger->transport, (GSource *) linger, G_IO_OUT);
  g_source_set_ready_time ((GSource *) linger, linger->deadline);
  g_source_attach ((GSource *) linger, self->context);
  g_source_unref ((GSource *) linger);
}

static void
ly_channel_dispose (GObject *object)
{
  LyChannel *self = LY_CHANNEL (object);

  ly_channel_close (self);
  flusher_remove (self);

  g_mutex_lock (&self->mutex);
  if (self->source != NULL)
    {
      if (self->transport != NULL)
        ly_transport_detach (self->transport, self->source);
      self->interest = 0;
      g_source_destroy (self->source);
      g_clear_pointer (&self->source, g_source_unref);
    }
  if (self->transport != NULL && ly_wire_writer_get_queued (self->writer) > 0)
    linger_start_locked (self);
  g_clear_pointer (&self->transport, ly_transport_unref);
  g_mutex_unlock (&self->mutex);

  G_OBJECT_CLASS (ly_channel_parent_class)->dispose (object);
}

static void
ly_channel_finalize (GObject *object)
{
  LyChannel *self = LY_CHANNEL (object);

  /* Operations hold references to the channel, so none is pending. */
  g_queue_clear_full (&self->incoming, (GDestroyNotify) g_variant_unref);
  ly_wire_reader_free (self->reader);
  ly_wire_writer_free (self->writer);
  g_clear_pointer (&self->message_type, g_variant_type_free);
  g_clear_pointer (&self->context, g_main_context_unref);
  g_clear_error (&self->end_error);
  g_clear_error (&self->lost_error);
  g_clear_pointer (&self->peer_names, g_hash_table_unref);
  g_free (self->name);
  if (self->wakeup_fd >= 0)
    g_close (self->wakeup_fd, NULL);
  g_cond_clear (&self->cond);
  g_mutex_clear (&self->mutex);

  G_OBJECT_CLASS (ly_channel_parent_class)->finalize (object);
}

static void
ly_channel_get_property (GObject    *object,
                         guint       prop_id,
                         GValue     *value,
                         GParamSpec *pspec)
{
  LyChannel *self = LY_CHANNEL (object);

  switch (prop_id)
    {
    case PROP_NAME:
      g_value_set_string (value, self->name);
      break;
    case PROP_MESSAGE_TYPE:
      g_mutex_lock (&self->mutex);
      g_value_set_boxed (value, self->message_type);
      g_mutex_unlock (&self->mutex);
      break;
    case PROP_MODE:
      g_value_set_enum (value, ly_channel_get_mode (self));
      break;
    case PROP_CLOSED:
      g_value_set_boolean (value, ly_channel_is_closed (self));
      break;
    case PROP_MAX_MESSAGE_SIZE:
      g_value_set_uint64 (value, ly_channel_get_max_message_size (self));
      break;
    case PROP_MAX_QUEUED_BYTES:
      g_value_set_uint64 (value, ly_channel_get_max_queued_bytes (self));
      break;
    case PROP_MEMFD_THRESHOLD:
      g_value_set_uint64 (value, ly_channel_get_memfd_threshold (self));
      break;
    case PROP_PEER_PROCESS_NAME:
      g_mutex_lock (&self->mutex);
      g_value_set_string (value, self->peer_process_name);
      g_mutex_unlock (&self->mutex);
      break;
    case PROP_PEER_PID:
      g_value_set_int (value, ly_channel_get_peer_pid (self));
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
ly_channel_set_property (GObject      *object,
                         guint         prop_id,
                         const GValue *value,
                         GParamSpec   *pspec)
{
  LyChannel *self = LY_CHANNEL (object);

  switch (prop_id)
    {
    case PROP_NAME:
      self->name = g_value_dup_string (value);
      if (self->name == NULL)
        self->name = g_strdup ("");
      break;
    case PROP_MESSAGE_TYPE:
      ly_channel_set_message_type (self, g_value_get_boxed (value));
      break;
    case PROP_MAX_MESSAGE_SIZE:
      ly_channel_set_max_message_size (self, g_value_get_uint64 (value));
      break;
    case PROP_MAX_QUEUED_BYTES:
      ly_channel_set_max_queued_bytes (self, g_value_get_uint64 (value));
      break;
    case PROP_MEMFD_THRESHOLD:
      ly_channel_set_memfd_threshold (self, g_value_get_uint64 (value));
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
ly_channel_class_init (LyChannelClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);

  ly_i18n_init ();

  object_class->dispose = ly_channel_dispose;
  object_class->finalize = ly_channel_finalize;
  object_class->get_property = ly_channel_get_property;
  object_class->set_property = ly_channel_set_property;

  /**
   * LyChannel:name:
   *
   * The channel's name, such as `nonebot-active`.  It appears in error
   * messages and is sent to the peer in the hello frame.
   *
   * Since: 1.0
   */
  properties[PROP_NAME] =
    g_param_spec_string ("name", NULL, NULL,
                         "",
                         (G_PARAM_READWRITE | G_PARAM_CONSTRUCT_ONLY | G_PARAM_STATIC_STRINGS));

  /**
   * LyChannel:message-type: (type GLib.VariantType)
   *
   * The type every sent message must have, or %NULL for any type.  It
   * may be an indefinite type such as `a{s*}`.  Sending a message of
   * another type fails with %LY_CHANNEL_ERROR_TYPE_MISMATCH.
   */
  properties[PROP_MESSAGE_TYPE] =
    g_param_spec_boxed ("message-type", NULL, NULL,
                        G_TYPE_VARIANT_TYPE,
                        (G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS));

  /**
   * LyChannel:mode:
   *
   * How messages are received: fixed by the first use.
   *
   * Since: 1.0
   */
  properties[PROP_MODE] =
    g_param_spec_enum ("mode", NULL, NULL,
                       LY_TYPE_CHANNEL_MODE,
                       LY_CHANNEL_MODE_UNSET,
                       (G_PARAM_READABLE | G_PARAM_STATIC_STRINGS));

  /**
   * LyChannel:closed:
   *
   * Whether the channel is closed: by ly_channel_close(), by the peer,
   * or because the connection failed.  Sends fail from then on.
   *
   * Since: 1.0
   */
  properties[PROP_CLOSED] =
    g_param_spec_boolean ("closed", NULL, NULL,
                          FALSE,
                          (G_PARAM_READABLE | G_PARAM_STATIC_STRINGS));

  /**
   * LyChannel:max-message-size:
   *
   * The largest message, in bytes of serialised data, that this side
   * sends or accepts.  A larger send fails with
   * %LY_CHANNEL_ERROR_TOO_LARGE; a larger frame from the peer closes
   * the connection with %LY_CHANNEL_ERROR_PROTOCOL.
   *
   * Since: 1.0
   */
  properties[PROP_MAX_MESSAGE_SIZE] =
    g_param_spec_uint64 ("max-message-size", NULL, NULL,
                         0, G_MAXUINT32, LY_CHANNEL_DEFAULT_MAX_MESSAGE_SIZE,
                         (G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS));

  /**
   * LyChannel:max-queued-bytes:
   *
   * The bound of both queues, in bytes.  Sending fails with
   * %LY_CHANNEL_ERROR_FULL when this much is waiting to be written
   * (an empty queue still takes one message of any allowed size), and
   * the channel stops reading from the peer while this much has been
   * received and not yet taken.  What a message costs is counted, not
   * only its data: a queued message counts 256 bytes more than its
   * serialised size (a frame's header and padding on the sending side),
   * so that a peer sending empty messages cannot queue more than
   * max-queued-bytes / 256 of them.
   *
   * Since: 1.0
   */
  properties[PROP_MAX_QUEUED_BYTES] =
    g_param_spec_uint64 ("max-queued-bytes", NULL, NULL,
                         1, G_MAXUINT64, LY_CHANNEL_DEFAULT_MAX_QUEUED_BYTES,
                         (G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS));

  /**
   * LyChannel:memfd-threshold:
   *
   * Messages of at least this many bytes (their serialised data) travel
   * in a sealed memfd passed with the frame, when the peer offered that
   * in its hello (every liteyuki-comm peer on a local socket does): the
   * data crosses without the socket's two copies, and the receiver maps
   * it read-only instead of copying it.  0 sends every message inline.
   * A memfd message counts against [property@Ly.Channel:max-queued-bytes]
   * with its whole size, and against [property@Ly.Channel:max-message-size]
   * like any message.
   *
   * Since: 1.0
   */
  properties[PROP_MEMFD_THRESHOLD] =
    g_param_spec_uint64 ("memfd-threshold", NULL, NULL,
                         0, G_MAXUINT64, LY_CHANNEL_DEFAULT_MEMFD_THRESHOLD,
                         (G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS));

  /**
   * LyChannel:peer-process-name:
   *
   * The process name the peer announced in its hello, or %NULL before
   * the hello arrived.
   *
   * Since: 1.0
   */
  properties[PROP_PEER_PROCESS_NAME] =
    g_param_spec_string ("peer-process-name", NULL, NULL,
                         NULL,
                         (G_PARAM_READABLE | G_PARAM_STATIC_STRINGS));

  /**
   * LyChannel:peer-pid:
   *
   * The process id the peer announced in its hello, or 0 before the
   * hello arrived.
   *
   * Since: 1.0
   */
  properties[PROP_PEER_PID] =
    g_param_spec_int ("peer-pid", NULL, NULL,
                      0, G_MAXINT, 0,
                      (G_PARAM_READABLE | G_PARAM_STATIC_STRINGS));

  g_object_class_install_properties (object_class, N_PROPS, properties);

  /**
   * LyChannel::received:
   * @self: the channel
   * @message: the message
   *
   * Emitted for each message of a passive channel, in order, in the
   * thread-default main context of the thread that created the channel.
   * The detail is the message's type string: a handler connected to
   * `received::s` gets only strings, one connected to `received::a{sv}`
   * only dictionaries.
   *
   * Since: 1.0
   */
  signals[RECEIVED] =
    g_signal_new ("received",
                  G_TYPE_FROM_CLASS (klass),
                  G_SIGNAL_RUN_LAST | G_SIGNAL_DETAILED,
                  0,
                  NULL, NULL,
                  g_cclosure_marshal_VOID__VARIANT,
                  G_TYPE_NONE, 1, G_TYPE_VARIANT);
  g_signal_set_va_marshaller (signals[RECEIVED], G_TYPE_FROM_CLASS (klass),
                              g_cclosure_marshal_VOID__VARIANTv);

  /**
   * LyChannel::closed:
   * @self: the channel
   * @error: (nullable): why the connection ended, or %NULL for a clean close
   *
   * Emitted once when the channel closes: after ly_channel_close(), when
   * the peer closed its end (both with a %NULL @error), or when the
   * connection failed: %LY_CHANNEL_ERROR_DISCONNECTED when the peer went
   * away without closing, %LY_CHANNEL_ERROR_PROTOCOL when it sent
   * invalid data.
   *
   * Since: 1.0
   */
  signals[CLOSED] =
    g_signal_new ("closed",
                  G_TYPE_FROM_CLASS (klass),
                  G_SIGNAL_RUN_LAST,
                  0,
                  NULL, NULL,
                  g_cclosure_marshal_VOID__BOXED,
                  G_TYPE_NONE, 1, G_TYPE_ERROR);
  g_signal_set_va_marshaller (signals[CLOSED], G_TYPE_FROM_CLASS (klass),
                              g_cclosure_marshal_VOID__BOXEDv);
}

/* Constructors ------------------------------------------------------------ */

static gboolean
prepare_socket_fd (int      fd,
                   GError **error)
{
  struct stat st;
  int type = 0;
  socklen_t len = sizeof type;

  if (fstat (fd, &st) < 0 || !S_ISSOCK (st.st_mode) ||
      getsockopt (fd, SOL_SOCKET, SO_TYPE, &type, &len) < 0 || type != SOCK_STREAM)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                   _("File descriptor %d is not a connected stream socket"), fd);
      return FALSE;
    }

  /* The fd stays blocking: every read and write of a channel says
   * MSG_DONTWAIT, and a blocked caller may read with one syscall. */
  if (fcntl (fd, F_SETFD, FD_CLOEXEC) < 0)
    {
      int saved_errno = errno;

      g_set_error (error, G_IO_ERROR, g_io_error_from_errno (saved_errno),
                   _("Could not set close-on-exec on file descriptor %d: %s"),
                   fd, g_strerror (saved_errno));
      return FALSE;
    }

  return TRUE;
}

/**
 * ly_channel_new_for_fd:
 * @name: the channel's name
 * @fd: a connected stream socket (`AF_UNIX` usually)
 * @error: return location for a #GError
 *
 * Creates a channel over @fd, which it owns from now on, and closes when
 * the channel ends, even when this fails.  The fd is made close-on-exec;
 * whether it blocks does not matter (the channel never blocks on it
 * unless asked to).  Signals are emitted in the thread-default main
 * context of the calling thread.
 *
 * Returns: (transfer full): the new channel, or %NULL with @error set
 *   when @fd is not a stream socket
 *
 * Since: 1.0
 */
LyChannel *
ly_channel_new_for_fd (const char  *name,
                       int          fd,
                       GError     **error)
{
  g_return_val_if_fail (name != NULL, NULL);
  g_return_val_if_fail (fd >= 0, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  if (!prepare_socket_fd (fd, error))
    {
      g_close (fd, NULL);
      return NULL;
    }

  return ly_channel_new_for_transport (name, ly_transport_new_for_fd (fd, NULL), NULL);
}

/**
 * ly_channel_new_for_stream:
 * @name: the channel's name
 * @stream: a connected stream: a #GSocketConnection, or any #GIOStream
 *   whose streams are pollable
 *
 * Creates a channel over @stream.  A socket connection's file
 * descriptor is used directly; other streams go through
 * #GPollableInputStream and #GPollableOutputStream.  The channel closes
 * @stream when it ends.
 *
 * Returns: (transfer full): the new channel
 *
 * Since: 1.0
 */
LyChannel *
ly_channel_new_for_stream (const char *name,
                           GIOStream  *stream)
{
  LyTransport *transport;

  g_return_val_if_fail (name != NULL, NULL);
  g_return_val_if_fail (G_IS_IO_STREAM (stream), NULL);

  if (G_IS_SOCKET_CONNECTION (stream))
    {
      GSocket *socket = g_socket_connection_get_socket (G_SOCKET_CONNECTION (stream));

      g_socket_set_blocking (socket, FALSE);
      transport = ly_transport_new_for_fd (g_socket_get_fd (socket), stream);
    }
  else
    {
      g_return_val_if_fail (ly_transport_stream_is_supported (stream), NULL);
      transport = ly_transport_new_for_stream (stream);
    }

  return ly_channel_new_for_transport (name, transport, NULL);
}

/**
 * ly_channel_new_pair:
 * @name: the name of both channels
 * @first: (out) (transfer full): return location for one end
 * @second: (out) (transfer full): return location for the other end
 * @error: return location for a #GError
 *
 * Creates two connected channels in this process, for threads and
 * tests.  What one sends, the other receives.
 *
 * Returns: (skip): %TRUE on success; %FALSE with @error set when no
 *   socket pair could be made (out of file descriptors)
 *
 * Since: 1.0
 */
gboolean
ly_channel_new_pair (const char  *name,
                     LyChannel  **first,
                     LyChannel  **second,
                     GError     **error)
{
  int fds[2];

  g_return_val_if_fail (name != NULL, FALSE);
  g_return_val_if_fail (first != NULL && second != NULL, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  if (socketpair (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) < 0)
    {
      int saved_errno = errno;

      g_set_error (error, G_IO_ERROR, g_io_error_from_errno (saved_errno),
                   _("Could not create a socket pair: %s"), g_strerror (saved_errno));
      return FALSE;
    }

  *first = ly_channel_new_for_transport (name, ly_transport_new_for_fd (fds[0], NULL), NULL);
  *second = ly_channel_new_for_transport (name, ly_transport_new_for_fd (fds[1], NULL), NULL);

  return TRUE;
}

/* Properties -------------------------------------------------------------- */

/**
 * ly_channel_get_name:
 * @self: a [class@Ly.Channel]
 *
 * Gets [property@Ly.Channel:name].
 *
 * Returns: the channel's name
 *
 * Since: 1.0
 */
const char *
ly_channel_get_name (LyChannel *self)
{
  g_return_val_if_fail (LY_IS_CHANNEL (self), NULL);

  return self->name;
}

/**
 * ly_channel_get_message_type:
 * @self: a [class@Ly.Channel]
 *
 * Gets [property@Ly.Channel:message-type].
 *
 * Returns: (nullable): the type every sent message must have, or %NULL
 *
 * Since: 1.0
 */
const GVariantType *
ly_channel_get_message_type (LyChannel *self)
{
  const GVariantType *type;

  g_return_val_if_fail (LY_IS_CHANNEL (self), NULL);

  g_mutex_lock (&self->mutex);
  type = self->message_type;
  g_mutex_unlock (&self->mutex);

  return type;
}

/**
 * ly_channel_set_message_type:
 * @self: a [class@Ly.Channel]
 * @message_type: (nullable): the type every sent message must have, or
 *   %NULL to allow any type
 *
 * Sets [property@Ly.Channel:message-type].
 *
 * Since: 1.0
 */
void
ly_channel_set_message_type (LyChannel          *self,
                             const GVariantType *message_type)
{
  g_return_if_fail (LY_IS_CHANNEL (self));

  g_mutex_lock (&self->mutex);
  g_clear_pointer (&self->message_type, g_variant_type_free);
  if (message_type != NULL)
    self->message_type = g_variant_type_copy (message_type);
  g_mutex_unlock (&self->mutex);

  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_MESSAGE_TYPE]);
}

/**
 * ly_channel_get_mode:
 * @self: a [class@Ly.Channel]
 *
 * Gets [property@Ly.Channel:mode]: how the channel's messages reach the
 * application.
 *
 * Returns: how the channel receives
 *
 * Since: 1.0
 */
LyChannelMode
ly_channel_get_mode (LyChannel *self)
{
  LyChannelMode mode;

  g_return_val_if_fail (LY_IS_CHANNEL (self), LY_CHANNEL_MODE_UNSET);

  g_mutex_lock (&self->mutex);
  mode = self->mode;
  g_mutex_unlock (&self->mutex);

  return mode;
}

/**
 * ly_channel_is_closed:
 * @self: a [class@Ly.Channel]
 *
 * Whether the channel is closed, here or by its peer
 * ([property@Ly.Channel:closed]).
 *
 * Returns: whether the channel is closed
 *
 * Since: 1.0
 */
gboolean
ly_channel_is_closed (LyChannel *self)
{
  gboolean closed;

  g_return_val_if_fail (LY_IS_CHANNEL (self), TRUE);

  g_mutex_lock (&self->mutex);
  closed = self->closed;
  g_mutex_unlock (&self->mutex);

  return closed;
}

/**
 * ly_channel_get_max_message_size:
 * @self: a [class@Ly.Channel]
 *
 * Gets [property@Ly.Channel:max-message-size].
 *
 * Returns: the largest message sent or accepted, in bytes
 *
 * Since: 1.0
 */
gsize
ly_channel_get_max_message_size (LyChannel *self)
{
  gsize size;

  g_return_val_if_fail (LY_IS_CHANNEL (self), 0);

  g_mutex_lock (&self->mutex);
  size = self->max_message_size;
  g_mutex_unlock (&self->mutex);

  return size;
}

/**
 * ly_channel_set_max_message_size:
 * @self: a [class@Ly.Channel]
 * @max_message_size: the largest message, in bytes (at most 4 GiB - 1)
 *
 * Sets [property@Ly.Channel:max-message-size].
 *
 * Since: 1.0
 */
void
ly_channel_set_max_message_size (LyChannel *self,
                                 gsize      max_message_size)
{
  g_return_if_fail (LY_IS_CHANNEL (self));
  g_return_if_fail (max_message_size <= G_MAXUINT32);

  g_mutex_lock (&self->mutex);
  self->max_message_size = max_message_size;
  set_reader_limits_locked (self);
  g_mutex_unlock (&self->mutex);

  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_MAX_MESSAGE_SIZE]);
}

/**
 * ly_channel_get_max_queued_bytes:
 * @self: a [class@Ly.Channel]
 *
 * Gets [property@Ly.Channel:max-queued-bytes].
 *
 * Returns: the bound of the send and receive queues, in bytes
 *
 * Since: 1.0
 */
gsize
ly_channel_get_max_queued_bytes (LyChannel *self)
{
  gsize size;

  g_return_val_if_fail (LY_IS_CHANNEL (self), 0);

  g_mutex_lock (&self->mutex);
  size = self->max_queued_bytes;
  g_mutex_unlock (&self->mutex);

  return size;
}

/**
 * ly_channel_set_max_queued_bytes:
 * @self: a [class@Ly.Channel]
 * @max_queued_bytes: the bound of the queues, in bytes; at least 1
 *
 * Sets [property@Ly.Channel:max-queued-bytes].
 *
 * Since: 1.0
 */
void
ly_channel_set_max_queued_bytes (LyChannel *self,
                                 gsize      max_queued_bytes)
{
  g_return_if_fail (LY_IS_CHANNEL (self));
  g_return_if_fail (max_queued_bytes > 0);

  g_mutex_lock (&self->mutex);
  self->max_queued_bytes = max_queued_bytes;
  update_interest_locked (self);
  g_mutex_unlock (&self->mutex);

  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_MAX_QUEUED_BYTES]);
}

/**
 * ly_channel_get_memfd_threshold:
 * @self: a [class@Ly.Channel]
 *
 * Gets [property@Ly.Channel:memfd-threshold].
 *
 * Returns: the size from which messages travel in a memfd, 0 for never
 *
 * Since: 1.0
 */
gsize
ly_channel_get_memfd_threshold (LyChannel *self)
{
  gsize threshold;

  g_return_val_if_fail (LY_IS_CHANNEL (self), 0);

  g_mutex_lock (&self->mutex);
  threshold = self->memfd_threshold;
  g_mutex_unlock (&self->mutex);

  return threshold;
}

/**
 * ly_channel_set_memfd_threshold:
 * @self: a [class@Ly.Channel]
 * @threshold: the size in bytes from which messages travel in a memfd;
 *   0 for never
 *
 * Sets [property@Ly.Channel:memfd-threshold].
 *
 * Since: 1.0
 */
void
ly_channel_set_memfd_threshold (LyChannel *self,
                                gsize      threshold)
{
  g_return_if_fail (LY_IS_CHANNEL (self));

  g_mutex_lock (&self->mutex);
  self->memfd_threshold = threshold;
  g_mutex_unlock (&self->mutex);

  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_MEMFD_THRESHOLD]);
}

/**
 * ly_channel_get_queued_bytes:
 * @self: a [class@Ly.Channel]
 *
 * How many bytes wait in the send queue: the back-pressure a sender
 * sees.
 *
 * Returns: how many bytes are waiting to be written to the peer
 *
 * Since: 1.0
 */
gsize
ly_channel_get_queued_bytes (LyChannel *self)
{
  gsize queued;

  g_return_val_if_fail (LY_IS_CHANNEL (self), 0);

  g_mutex_lock (&self->mutex);
  queued = ly_wire_writer_get_backlog (self->writer);
  g_mutex_unlock (&self->mutex);

  return queued;
}

/**
 * ly_channel_get_peer_process_name:
 * @self: a [class@Ly.Channel]
 *
 * The name the current peer announced.  A hub's channel gets a new peer
 * each time its process restarts; the string returned stays valid for as
 * long as the channel lives, whichever thread asks.
 *
 * Returns: (nullable): the process name the peer announced, or %NULL
 *   before its hello arrived
 *
 * Since: 1.0
 */
const char *
ly_channel_get_peer_process_name (LyChannel *self)
{
  const char *name;

  g_return_val_if_fail (LY_IS_CHANNEL (self), NULL);

  /* the strings are kept until finalize (remember_peer_name_locked()) */
  g_mutex_lock (&self->mutex);
  name = self->peer_process_name;
  g_mutex_unlock (&self->mutex);

  return name;
}

/**
 * ly_channel_get_peer_pid:
 * @self: a [class@Ly.Channel]
 *
 * The process id the current peer announced in its hello.
 *
 * Returns: the process id the peer announced, or 0 before its hello
 *   arrived
 *
 * Since: 1.0
 */
GPid
ly_channel_get_peer_pid (LyChannel *self)
{
  GPid pid;

  g_return_val_if_fail (LY_IS_CHANNEL (self), 0);

  g_mutex_lock (&self->mutex);
  pid = self->peer_pid;
  g_mutex_unlock (&self->mutex);

  return pid;
}

/* Sending ----------------------------------------------------------------- */

static gboolean
check_sendable_locked (LyChannel  *self,
                       GVariant   *message,
                       GError    **error)
{
  gsize size;

  if (self->closed)
    {
      g_propagate_error (error, closed_error_new_locked (self));
      return FALSE;
    }

  if (self->message_type != NULL && !g_variant_is_of_type (message, self->message_type))
    {
      g_autofree char *expected = g_variant_type_dup_string (self->message_type);

      g_set_error (error, LY_CHANNEL_ERROR, LY_CHANNEL_ERROR_TYPE_MISMATCH,
                   _("Channel “%s” carries messages of type “%s”, not “%s”"),
                   self->name, expected, g_variant_get_type_string (message));
      return FALSE;
    }

  size = g_variant_get_size (message);
  if (size > self->max_message_size)
    {
      g_set_error (error, LY_CHANNEL_ERROR, LY_CHANNEL_ERROR_TOO_LARGE,
                   _("A message of %zu bytes is larger than the limit of channel “%s” (%zu bytes)"),
                   size, self->name, self->max_message_size);
      return FALSE;
    }

  return TRUE;
}

/* Starts writing what was just queued: at once when a batch is full or
 * nobody would run the source, otherwise from the source.  While the
 * socket is full, the source writes when it becomes writable; but
 * nobody may run it (a sender without a main loop, busy sending): then
 * the send that queues another batch tries again, so that the peer
 * never runs dry while messages wait here (one write a batch), and the
 * flusher keeps trying once the sends stop, so that nothing is left
 * behind.  A burst without a loop goes to the flusher. */
static void
kick_writer_locked (LyChannel *self)
{
  gsize queued = ly_wire_writer_get_queued (self->writer);
  gboolean loopless;

  /* A handler of our own `received` is sending: the dispatch writes
   * when the handlers return, one write for all their replies. */
  if (dispatching_own_source (self) && queued < LY_WIRE_LARGE_MESSAGE)
    return;

  loopless = !ly_context_will_dispatch (self->context);

  if (self->write_blocked || (self->interest & G_IO_OUT) != 0)
    {
      if (loopless && queued >= self->retry_write_at)
        write_locked (self);
    }
  else if (queued >= LY_WIRE_LARGE_MESSAGE || (loopless && !in_burst_locked (self)))
    write_locked (self);

  /* a burst, or what a full socket left: the flusher writes it */
  if (loopless && self->transport != NULL && ly_wire_writer_get_queued (self->writer) > 0)
    flusher_add_locked (self);

  update_interest_locked (self);
}

/**
 * ly_channel_send:
 * @self: a [class@Ly.Channel]
 * @message: the message; a floating reference is sunk
 * @error: return location for a #GError
 *
 * Queues @message for the peer and returns at once: it never blocks.
 * Messages leave in order.
 *
 * Fails with %LY_CHANNEL_ERROR_CLOSED when the channel is closed,
 * %LY_CHANNEL_ERROR_TYPE_MISMATCH when @message is not of
 * [property@Ly.Channel:message-type], %LY_CHANNEL_ERROR_TOO_LARGE when it is over
 * [property@Ly.Channel:max-message-size] and %LY_CHANNEL_ERROR_FULL when the send
 * queue is over [property@Ly.Channel:max-queued-bytes], or sends of
 * ly_channel_send_async() wait for room: use ly_channel_send_async()
 * to wait instead.
 *
 * Returns: %TRUE if the message was queued
 *
 * Since: 1.0
 */
gboolean
ly_channel_send (LyChannel  *self,
                 GVariant   *message,
                 GError    **error)
{
  g_autoptr(GVariant) owned = NULL;
  gboolean queued = FALSE;

  g_return_val_if_fail (LY_IS_CHANNEL (self), FALSE);
  g_return_val_if_fail (message != NULL, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  owned = g_variant_ref_sink (message);

  g_mutex_lock (&self->mutex);
  if (check_sendable_locked (self, owned, error))
    {
      if (g_queue_is_empty (&self->send_waiters) &&
          has_room_locked (self, message_frame_size (owned)))
        {
          append_message_locked (self, owned);
          kick_writer_locked (self);
          queued = TRUE;
        }
      else if (error != NULL)
        {
          /* A sender that retries until there is room may be refused
           * thousands of times: without a GError to fill, that costs
           * nothing, not even the message's translation. */
          g_set_error (error, LY_CHANNEL_ERROR, LY_CHANNEL_ERROR_FULL,
                       _("The send queue of channel “%s” is full (%zu bytes waiting, the limit is %zu)"),
                       self->name, ly_wire_writer_get_backlog (self->writer), self->max_queued_bytes);
        }
    }
  g_mutex_unlock (&self->mutex);

  return queued;
}

static void
send_op_cancelled (GCancellable *cancellable,
                   GTask        *task)
{
  LyChannel *self = g_task_get_source_object (task);
  PendingOp *op;

  g_mutex_lock (&self->mutex);
  op = ops_steal_task (&self->send_waiters, task);
  if (op == NULL)
    op = ops_steal_task (&self->receive_ops, task);
  g_mutex_unlock (&self->mutex);

  /* Only what still waits is cancelled: a message already queued is on
   * its way and its send completes normally. */
  if (op != NULL)
    {
      op->cancel_id = 0;
      pending_op_finish (op, g_error_new_literal (G_IO_ERROR, G_IO_ERROR_CANCELLED,
                                                  _("The operation was cancelled")), NULL);
    }
}

/* Connects the cancellable of @task, whose op was put in @ops. */
static void
watch_cancellable (LyChannel *self,
                   GQueue    *ops,
                   GTask     *task)
{
  GCancellable *cancellable = g_task_get_cancellable (task);
  gulong id;
  gboolean still_waiting = FALSE;

  if (cancellable == NULL)
    return;

  id = g_cancellable_connect (cancellable, G_CALLBACK (send_op_cancelled),
                              g_object_ref (task), g_object_unref);

  g_mutex_lock (&self->mutex);
  for (GList *l = ops->head; l != NULL; l = l->next)
    {
      PendingOp *op = l->data;

      if (op->task == task)
        {
          op->cancel_id = id;
          still_waiting = TRUE;
          break;
        }
    }
  g_mutex_unlock (&self->mutex);

  if (!still_waiting && id != 0)
    g_cancellable_disconnect (cancellable, id);
}

static GTask *
channel_task_new (LyChannel           *self,
                  gpointer             source_tag,
                  GCancellable        *cancellable,
                  GAsyncReadyCallback  callback,
                  gpointer             user_data)
{
  GTask *task = g_task_new (self, cancellable, callback, user_data);

  g_task_set_source_tag (task, source_tag);
  /* We return cancellation ourselves: a message that was taken must
   * reach the caller, not vanish into a CANCELLED error. */
  g_task_set_check_cancellable (task, FALSE);

  return task;
}

/**
 * ly_channel_send_async:
 * @self: a [class@Ly.Channel]
 * @message: the message; a floating reference is sunk
 * @cancellable: (nullable): a #GCancellable
 * @callback: called when the message was written, or failed
 * @user_data: data for @callback
 *
 * Sends @message, waiting for room in the send queue instead of failing
 * with %LY_CHANNEL_ERROR_FULL: this is the back-pressure of a peer that
 * reads slowly.  Completes when the message has been written to the
 * connection.  Cancelling works while the message waits for room; once
 * queued, it is sent.
 *
 * Since: 1.0
 */
void
ly_channel_send_async (LyChannel           *self,
                       GVariant            *message,
                       GCancellable        *cancellable,
                       GAsyncReadyCallback  callback,
                       gpointer             user_data)
{
  g_autoptr(GTask) task = NULL;
  g_autoptr(GVariant) owned = NULL;
  g_autoptr(GError) error = NULL;
  gboolean waiting = FALSE;

  g_return_if_fail (LY_IS_CHANNEL (self));
  g_return_if_fail (message != NULL);
  g_return_if_fail (cancellable == NULL || G_IS_CANCELLABLE (cancellable));

  owned = g_variant_ref_sink (message);
  task = channel_task_new (self, ly_channel_send_async, cancellable, callback, user_data);

  if (g_cancellable_set_error_if_cancelled (cancellable, &error))
    {
      g_task_return_error (task, g_steal_pointer (&error));
      return;
    }

  g_mutex_lock (&self->mutex);
  if (check_sendable_locked (self, owned, &error))
    {
      PendingOp *op = pending_op_new (task, owned);

      g_queue_push_tail (&self->send_waiters, op);
      pump_send_waiters_locked (self);
      waiting = op->message != NULL;
      kick_writer_locked (self);
      schedule_needed_dispatch_locked (self);
    }
  g_mutex_unlock (&self->mutex);

  if (error != NULL)
    g_task_return_error (task, g_steal_pointer (&error));
  else if (waiting)
    watch_cancellable (self, &self->send_waiters, task);
}

/**
 * ly_channel_send_finish:
 * @self: a [class@Ly.Channel]
 * @result: the #GAsyncResult given to the callback
 * @error: return location for a #GError
 *
 * Finishes ly_channel_send_async().
 *
 * Returns: %TRUE if the message was written
 *
 * Since: 1.0
 */
gboolean
ly_channel_send_finish (LyChannel     *self,
                        GAsyncResult  *result,
                        GError       **error)
{
  g_return_val_if_fail (LY_IS_CHANNEL (self), FALSE);
  g_return_val_if_fail (g_task_is_valid (result, self), FALSE);
  g_return_val_if_fail (g_task_get_source_tag (G_TASK (result)) == ly_channel_send_async, FALSE);

  return g_task_propagate_boolean (G_TASK (result), error);
}

typedef struct
{
  guint64 target;
} FlushWait;

static WaitStatus
flush_done_locked (LyChannel  *self,
                   gpointer    data,
                   GError    **error)
{
  FlushWait *wait = data;

  /* sends that wait for room were sent before the flush too */
  if (!g_queue_is_empty (&self->send_waiters))
    wait->target = MAX (wait->target, ly_wire_writer_get_enqueued_total (self->writer));

  if (g_queue_is_empty (&self->send_waiters) &&
      ly_wire_writer_get_written_total (self->writer) >= wait->target)
    return WAIT_DONE;

  if (self->ended)
    {
      g_propagate_error (error, closed_error_new_locked (self));
      return WAIT_FAILED;
    }

  return WAIT_AGAIN;
}

/**
 * ly_channel_flush:
 * @self: a [class@Ly.Channel]
 * @cancellable: (nullable): a #GCancellable
 * @error: return location for a #GError
 *
 * Blocks until every message sent so far has been written to the
 * connection.  This works whether or not a main loop runs the channel's
 * context.
 *
 * Returns: %TRUE when everything was written; %FALSE with @error set
 *   when the connection ended first or @cancellable was cancelled
 *
 * Since: 1.0
 */
gboolean
ly_channel_flush (LyChannel     *self,
                  GCancellable  *cancellable,
                  GError       **error)
{
  FlushWait wait;

  g_return_val_if_fail (LY_IS_CHANNEL (self), FALSE);
  g_return_val_if_fail (cancellable == NULL || G_IS_CANCELLABLE (cancellable), FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  g_mutex_lock (&self->mutex);
  wait.target = ly_wire_writer_get_enqueued_total (self->writer);
  if (self->transport != NULL)
    {
      write_locked (self);
      update_interest_locked (self);
    }
  g_mutex_unlock (&self->mutex);

  return channel_wait (self, flush_done_locked, &wait, -1, cancellable, error);
}

/**
 * ly_channel_flush_async:
 * @self: a [class@Ly.Channel]
 * @cancellable: (nullable): a #GCancellable
 * @callback: called when everything sent so far was written
 * @user_data: data for @callback
 *
 * Waits, without blocking, until every message sent so far has been
 * written to the connection.
 *
 * Since: 1.0
 */
void
ly_channel_flush_async (LyChannel           *self,
                        GCancellable        *cancellable,
                        GAsyncReadyCallback  callback,
                        gpointer             user_data)
{
  g_autoptr(GTask) task = NULL;
  g_autoptr(GError) error = NULL;
  gboolean waiting = FALSE;

  g_return_if_fail (LY_IS_CHANNEL (self));
  g_return_if_fail (cancellable == NULL || G_IS_CANCELLABLE (cancellable));

  task = channel_task_new (self, ly_channel_flush_async, cancellable, callback, user_data);

  if (g_cancellable_set_error_if_cancelled (cancellable, &error))
    {
      g_task_return_error (task, g_steal_pointer (&error));
      return;
    }

  g_mutex_lock (&self->mutex);
  if (self->ended && ly_wire_writer_get_queued (self->writer) == 0 &&
      g_queue_is_empty (&self->send_waiters) && self->end_error == NULL)
    {
      /* a clean close wrote everything */
    }
  else if (self->ended)
    {
      error = closed_error_new_locked (self);
    }
  else
    {
      PendingOp *op = pending_op_new (task, NULL);

      waiting = !g_queue_is_empty (&self->send_waiters);
      g_queue_push_tail (&self->send_waiters, op);
      pump_send_waiters_locked (self);
      kick_writer_locked (self);
      schedule_needed_dispatch_locked (self);
      g_mutex_unlock (&self->mutex);

      if (waiting)
        watch_cancellable (self, &self->send_waiters, task);
      return;
    }
  g_mutex_unlock (&self->mutex);

  if (error != NULL)
    g_task_return_error (task, g_steal_pointer (&error));
  else
    g_task_return_boolean (task, TRUE);
}

/**
 * ly_channel_flush_finish:
 * @self: a [class@Ly.Channel]
 * @result: the #GAsyncResult given to the callback
 * @error: return location for a #GError
 *
 * Finishes ly_channel_flush_async().
 *
 * Returns: %TRUE when everything was written
 *
 * Since: 1.0
 */
gboolean
ly_channel_flush_finish (LyChannel     *self,
                         GAsyncResult  *result,
                         GError       **error)
{
  g_return_val_if_fail (LY_IS_CHANNEL (self), FALSE);
  g_return_val_if_fail (g_task_is_valid (result, self), FALSE);
  g_return_val_if_fail (g_task_get_source_tag (G_TASK (result)) == ly_channel_flush_async, FALSE);

  return g_task_propagate_boolean (G_TASK (result), error);
}

/* Receiving --------------------------------------------------------------- */

static gboolean
enter_active_mode_locked (LyChannel  *self,
                          GError    **error)
{
  switch (self->mode)
    {
    case LY_CHANNEL_MODE_ACTIVE:
      return TRUE;

    case LY_CHANNEL_MODE_UNSET:
      self->mode = LY_CHANNEL_MODE_ACTIVE;
      self->mode_changed = TRUE;
      schedule_dispatch_locked (self, 0);
      return TRUE;

    case LY_CHANNEL_MODE_PASSIVE:
    default:
      g_set_error (error, LY_CHANNEL_ERROR, LY_CHANNEL_ERROR_MODE,
                   _("Channel “%s” is in passive mode: its messages go to “received” handlers and cannot be received with receive()"),
                   self->name);
      return FALSE;
    }
}

static GVariant *
pop_incoming_locked (LyChannel *self)
{
  GVariant *message = g_queue_pop_head (&self->incoming);

  if (message != NULL)
    {
      self->incoming_bytes -= message_cost (message);
      /* taking a message may lift the back-pressure */
      update_interest_locked (self);
    }

  return message;
}

static WaitStatus
pop_message_locked (LyChannel  *self,
                    gpointer    data,
                    GError    **error)
{
  GVariant **message = data;

  if (self->mode != LY_CHANNEL_MODE_ACTIVE)
    {
      enter_active_mode_locked (self, error);
      return WAIT_FAILED;
    }

  if ((*message = pop_incoming_locked (self)) != NULL)
    return WAIT_DONE;

  if (self->closed)
    {
      g_propagate_error (error, closed_error_new_locked (self));
      return WAIT_FAILED;
    }

  return WAIT_AGAIN;
}

/**
 * ly_channel_receive_timeout:
 * @self: a [class@Ly.Channel]
 * @timeout_msec: how long to wait, in milliseconds; -1 to wait forever
 * @cancellable: (nullable): a #GCancellable
 * @error: return location for a #GError
 *
 * Like ly_channel_receive(), but gives up with %G_IO_ERROR_TIMED_OUT
 * after @timeout_msec milliseconds.
 *
 * Returns: (transfer full): the next message, or %NULL with @error set
 *
 * Since: 1.0
 */
GVariant *
ly_channel_receive_timeout (LyChannel     *self,
                            int            timeout_msec,
                            GCancellable  *cancellable,
                            GError       **error)
{
  GVariant *message = NULL;
  gint64 deadline = -1;
  gboolean ok;

  g_return_val_if_fail (LY_IS_CHANNEL (self), NULL);
  g_return_val_if_fail (cancellable == NULL || G_IS_CANCELLABLE (cancellable), NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  if (timeout_msec >= 0)
    deadline = g_get_monotonic_time () + (gint64) timeout_msec * 1000;

  g_mutex_lock (&self->mutex);
  ok = enter_active_mode_locked (self, error);
  g_mutex_unlock (&self->mutex);

  if (!ok)
    return NULL;

  if (!channel_wait (self, pop_message_locked, &message, deadline, cancellable, error))
    return NULL;

  return message;
}

/**
 * ly_channel_receive:
 * @self: a [class@Ly.Channel]
 * @cancellable: (nullable): a #GCancellable
 * @error: return location for a #GError
 *
 * Takes the next message, blocking until one arrives.  For worker
 * threads and programs without a main loop; it works whether or not a
 * main loop runs the channel's context.  The first call makes the
 * channel active; on a passive channel it fails with
 * %LY_CHANNEL_ERROR_MODE.  Once the channel is closed, the messages that
 * arrived before are still returned, then it fails with
 * %LY_CHANNEL_ERROR_CLOSED.
 *
 * Returns: (transfer full): the next message, or %NULL with @error set
 *
 * Since: 1.0
 */
GVariant *
ly_channel_receive (LyChannel     *self,
                    GCancellable  *cancellable,
                    GError       **error)
{
  return ly_channel_receive_timeout (self, -1, cancellable, error);
}

/**
 * ly_channel_receive_async:
 * @self: a [class@Ly.Channel]
 * @cancellable: (nullable): a #GCancellable
 * @callback: called with the next message
 * @user_data: data for @callback
 *
 * Takes the next message without blocking.  Several calls are served
 * in the order they were made.  The first call makes the channel
 * active.  The channel's context (that of the thread that created it)
 * must be running for the message to be read.
 *
 * Since: 1.0
 */
void
ly_channel_receive_async (LyChannel           *self,
                          GCancellable        *cancellable,
                          GAsyncReadyCallback  callback,
                          gpointer             user_data)
{
  g_autoptr(GTask) task = NULL;
  g_autoptr(GError) error = NULL;
  GVariant *message = NULL;
  gboolean waiting = FALSE;

  g_return_if_fail (LY_IS_CHANNEL (self));
  g_return_if_fail (cancellable == NULL || G_IS_CANCELLABLE (cancellable));

  task = channel_task_new (self, ly_channel_receive_async, cancellable, callback, user_data);

  if (g_cancellable_set_error_if_cancelled (cancellable, &error))
    {
      g_task_return_error (task, g_steal_pointer (&error));
      return;
    }

  g_mutex_lock (&self->mutex);
  if (enter_active_mode_locked (self, &error))
    {
      /* earlier receives are served first */
      if (g_queue_is_empty (&self->receive_ops))
        message = pop_incoming_locked (self);

      if (message == NULL && self->closed && g_queue_is_empty (&self->incoming))
        error = closed_error_new_locked (self);
      else if (message == NULL)
        {
          g_queue_push_tail (&self->receive_ops, pending_op_new (task, NULL));
          schedule_needed_dispatch_locked (self);
          waiting = TRUE;
        }
    }
  g_mutex_unlock (&self->mutex);

  if (message != NULL)
    g_task_return_pointer (task, message, (GDestroyNotify) g_variant_unref);
  else if (error != NULL)
    g_task_return_error (task, g_steal_pointer (&error));
  else if (waiting)
    watch_cancellable (self, &self->receive_ops, task);
}

/**
 * ly_channel_receive_finish:
 * @self: a [class@Ly.Channel]
 * @result: the #GAsyncResult given to the callback
 * @error: return location for a #GError
 *
 * Finishes ly_channel_receive_async().
 *
 * Returns: (transfer full): the message, or %NULL with @error set
 *
 * Since: 1.0
 */
GVariant *
ly_channel_receive_finish (LyChannel     *self,
                           GAsyncResult  *result,
                           GError       **error)
{
  g_return_val_if_fail (LY_IS_CHANNEL (self), NULL);
  g_return_val_if_fail (g_task_is_valid (result, self), NULL);
  g_return_val_if_fail (g_task_get_source_tag (G_TASK (result)) == ly_channel_receive_async, NULL);

  return g_task_propagate_pointer (G_TASK (result), error);
}

/**
 * ly_channel_close:
 * @self: a [class@Ly.Channel]
 *
 * Closes the channel.  What was queued is still written, then the peer
 * is told, and its channel emits [signal@Ly.Channel::closed] with no error.
 * Sends fail from now on; messages that already arrived can still be
 * received.  This channel emits [signal@Ly.Channel::closed] too.  Closing twice
 * does nothing.  Dropping the last reference closes the channel too.
 *
 * Since: 1.0
 */
void
ly_channel_close (LyChannel *self)
{
  g_return_if_fail (LY_IS_CHANNEL (self));

  g_mutex_lock (&self->mutex);
  if (!self->closed)
    {
      self->closed = TRUE;
      if (self->transport != NULL)
        {
          ly_wire_writer_append (self->writer, LY_WIRE_KIND_GOODBYE, NULL);
          write_locked (self);
          update_interest_locked (self);
        }
      else
        {
          /* a persistent channel between connections: nothing to flush */
          self->ended = TRUE;
          ly_wire_writer_clear (self->writer);
        }
      wake_waiters_locked (self);
      schedule_dispatch_locked (self, 0);
    }
  g_mutex_unlock (&self->mutex);
}

/* Makes the channel's source poll for the next message, for up to @usec
 * after each reply, when its peer is in a run of round trips (0: never).
 * For the hub's control connections, whose peers wait for each reply. */
/* How many messages one dispatch of the channel's source takes at most
 * (fewer when they cost more than DISPATCH_SLICE_NSEC together); the
 * rest waits in the reader for the next.  A hub gives each child's
 * control connection a small share, so that a child flooding requests
 * gets its turn like the others and no more: the context goes round. */
void
ly_channel_set_frame_budget (LyChannel *self,
                             guint      frames)
{
  g_return_if_fail (LY_IS_CHANNEL (self));

  g_mutex_lock (&self->mutex);
  self->frame_budget = frames;
  g_mutex_unlock (&self->mutex);
}

void
ly_channel_set_busy_poll (LyChannel *self,
                          gint64     usec)
{
  g_mutex_lock (&self->mutex);
  self->busy_poll_usec = MAX (usec, 0);
  g_mutex_unlock (&self->mutex);
}

/* ly-wire.c: encoding and decoding of frames (see ly-wire-private.h)
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#define _GNU_SOURCE  /* memfd_create(), F_ADD_SEALS */

#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gio/gio.h>

#include "ly-channel.h"
#include "ly-version.h"
#include "ly-i18n-private.h"
#include "ly-wire-private.h"
#include "ly-variant-private.h"
#include "ly-variant-type-private.h"

/* The seals a memfd must carry: its contents can no longer change. */
#define MEMFD_SEALS (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE)

/* A send-buffer segment grows to at least this size, so a burst of small
 * messages shares one allocation and leaves in one writev(). */
#define SEGMENT_MIN_CAPACITY (64 * 1024)

gsize
ly_wire_frame_size (gsize type_length,
                    gsize data_length)
{
  return LY_WIRE_HEADER_SIZE + ly_wire_pad (type_length + 1) + ly_wire_pad (data_length);
}

static inline void
write_header (guint8     *dest,
              LyWireKind  kind,
              gsize       type_length,
              gsize       data_length)
{
  guint16 type_le = GUINT16_TO_LE ((guint16) type_length);
  guint32 data_le = GUINT32_TO_LE ((guint32) data_length);

  dest[0] = (guint8) kind;
  dest[1] = 0;
  memcpy (dest + 2, &type_le, sizeof type_le);
  memcpy (dest + 4, &data_le, sizeof data_le);
}

static inline void
read_header (const guint8 *src,
             guint        *kind,
             guint        *flags,
             gsize        *type_length,
             gsize        *data_length)
{
  guint16 type_le;
  guint32 data_le;

  memcpy (&type_le, src + 2, sizeof type_le);
  memcpy (&data_le, src + 4, sizeof data_le);
  *kind = src[0];
  *flags = src[1];
  *type_length = GUINT16_FROM_LE (type_le);
  *data_length = GUINT32_FROM_LE (data_le);
}

GVariant *
ly_wire_hello_new (const char *process_name,
                   const char *channel_name,
                   gboolean    memfd)
{
  g_auto(GVariantBuilder) extensions = G_VARIANT_BUILDER_INIT (G_VARIANT_TYPE_VARDICT);

  if (channel_name != NULL)
    g_variant_builder_add (&extensions, "{sv}", "channel", g_variant_new_string (channel_name));
  if (memfd)
    g_variant_builder_add (&extensions, "{sv}", "memfd", g_variant_new_boolean (TRUE));

  return g_variant_new (LY_WIRE_HELLO_TYPE,
                        (guint32) LY_WIRE_PROTOCOL_VERSION,
                        process_name != NULL ? process_name : "",
                        (guint32) getpid (),
                        &extensions);
}

gboolean
ly_wire_hello_parse (GVariant  *hello,
                     char     **process_name,
                     GPid      *pid,
                     gboolean  *memfd,
                     GError   **error)
{
  g_autoptr(GVariant) extensions = NULL;
  guint32 version;
  guint32 peer_pid;
  const char *name;

  if (!g_variant_is_of_type (hello, G_VARIANT_TYPE (LY_WIRE_HELLO_TYPE)))
    {
      g_set_error (error, LY_CHANNEL_ERROR, LY_CHANNEL_ERROR_PROTOCOL,
                   _("The peer’s hello has type “%s” instead of “%s”"),
                   g_variant_get_type_string (hello), LY_WIRE_HELLO_TYPE);
      return FALSE;
    }

  g_variant_get (hello, "(u&su@a{sv})", &version, &name, &peer_pid, &extensions);

  if (version != LY_WIRE_PROTOCOL_VERSION)
    {
      g_set_error (error, LY_CHANNEL_ERROR, LY_CHANNEL_ERROR_PROTOCOL,
                   _("The peer speaks wire protocol version %u, but this side speaks version %u"),
                   version, (guint) LY_WIRE_PROTOCOL_VERSION);
      return FALSE;
    }

  if (process_name != NULL)
    *process_name = g_strdup (name);
  if (pid != NULL)
    *pid = (GPid) peer_pid;
  if (memfd != NULL && !g_variant_lookup (extensions, "memfd", "b", memfd))
    *memfd = FALSE;

  return TRUE;
}

/* A sealed memfd holding @value's data in normal form (little-endian):
 * what a MEMFD frame sends.  -1 with @error when the system refuses
 * (out of file descriptors or memory): the caller may send it inline. */
int
ly_wire_memfd_new (GVariant  *value,
                   GError   **error)
{
  g_autoptr(GVariant) normal = g_variant_get_normal_form (value);
  const guint8 *data = g_variant_get_data (normal);
  gsize size = g_variant_get_size (normal), done = 0;
  int fd = memfd_create ("liteyuki-comm message", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  int saved_errno;

  if (fd < 0)
    goto failed;
  while (done < size)
    {
      gssize n = pwrite (fd, data + done, size - done, (off_t) done);

      if (n < 0 && errno == EINTR)
        continue;
      if (n <= 0)
        goto failed;
      done += (gsize) n;
    }
  if (fcntl (fd, F_ADD_SEALS, MEMFD_SEALS | F_SEAL_SEAL) < 0)
    goto failed;
  return fd;

failed:
  saved_errno = errno;
  if (fd >= 0)
    close (fd);
  g_set_error (error, G_IO_ERROR, g_io_error_from_errno (saved_errno),
               _("Could not put a message of %zu bytes in shared memory: %s"),
               size, g_strerror (saved_errno));
  return -1;
}

/* Writer ------------------------------------------------------------------ */

typedef struct
{
  guint8 *data;
  gsize   length;
  gsize   capacity;   /* 0 for a segment that borrows @bytes */
  GBytes *bytes;
} Segment;

/* A MEMFD frame's file descriptor, sent with the bytes from @offset. */
typedef struct
{
  guint64 offset;          /* where its frame starts, in enqueued_total */
  int     fd;
  gsize   size;            /* of the message in it */
} PendingFd;

struct _LyWireWriter
{
  GArray  *fds;            /* of PendingFd, oldest first; NULL until one */
  GQueue   segments;       /* of Segment*, oldest first */
  Segment *spare;          /* a drained owned segment, kept for reuse */
  gsize    head_offset;    /* bytes of the first segment already written */
  gsize    queued;         /* bytes not yet written */
  gsize    memfd_bytes;    /* in the memfds of @fds */
  guint64  enqueued_total;
  guint64  written_total;
};

static void
segment_free (Segment *segment)
{
  if (segment->bytes != NULL)
    g_bytes_unref (segment->bytes);
  else
    g_free (segment->data);
  g_free (segment);
}

LyWireWriter *
ly_wire_writer_new (void)
{
  return g_new0 (LyWireWriter, 1);
}

void
ly_wire_writer_clear (LyWireWriter *writer)
{
  Segment *segment;

  while ((segment = g_queue_pop_head (&writer->segments)))
    segment_free (segment);
  if (writer->fds != NULL)
    ly_wire_writer_sent_fds (writer, writer->fds->len);
  writer->written_total += writer->queued;
  writer->head_offset = 0;
  writer->queued = 0;
}

void
ly_wire_writer_free (LyWireWriter *writer)
{
  if (writer == NULL)
    return;

  ly_wire_writer_clear (writer);
  if (writer->spare != NULL)
    segment_free (writer->spare);
  g_clear_pointer (&writer->fds, g_array_unref);
  g_free (writer);
}

/* Room for @size more bytes at the end of the queue. */
static guint8 *
writer_reserve (LyWireWriter *writer,
                gsize         size)
{
  Segment *tail = g_queue_peek_tail (&writer->segments);
  guint8 *dest;

  if (tail == NULL || tail->bytes != NULL || tail->capacity - tail->length < size)
    {
      if (writer->spare != NULL && writer->spare->capacity >= size)
        {
          tail = g_steal_pointer (&writer->spare);
          tail->length = 0;
        }
      else
        {
          tail = g_new0 (Segment, 1);
          tail->capacity = MAX (size, SEGMENT_MIN_CAPACITY);
          tail->data = g_malloc (tail->capacity);
        }
      g_queue_push_tail (&writer->segments, tail);
    }

  dest = tail->data + tail->length;
  tail->length += size;
  return dest;
}

static void
writer_push_bytes (LyWireWriter *writer,
                   GBytes       *bytes)
{
  Segment *segment = g_new0 (Segment, 1);
  gsize size;

  segment->data = (guint8 *) g_bytes_get_data (bytes, &size);
  segment->length = size;
  segment->bytes = g_bytes_ref (bytes);
  g_queue_push_tail (&writer->segments, segment);
}

static const guint8 zeros[LY_WIRE_ALIGNMENT] = { 0, };

/* Queues one frame; returns its size on the wire.  @value must be NULL
 * for a GOODBYE. */
gsize
ly_wire_writer_append (LyWireWriter *writer,
                       LyWireKind    kind,
                       GVariant     *value)
{
  g_autoptr(GVariant) normal = NULL;
  const char *type = "";
  gsize type_length = 0;
  gsize data_length = 0;
  gsize head_size;
  gsize padding;
  guint8 *dest;

  if (value != NULL)
    {
      /* Only values built from untrusted data can be out of normal form;
       * for everything else this is a flag test. */
      if (!g_variant_is_normal_form (value))
        value = normal = g_variant_get_normal_form (value);
#if G_BYTE_ORDER == G_BIG_ENDIAN
      value = normal = g_variant_byteswap (value);
#endif
      type = g_variant_get_type_string (value);
      type_length = strlen (type);
      data_length = g_variant_get_size (value);
    }

  head_size = LY_WIRE_HEADER_SIZE + ly_wire_pad (type_length + 1);
  padding = ly_wire_pad (data_length) - data_length;

  if (data_length >= LY_WIRE_LARGE_MESSAGE)
    {
      g_autoptr(GBytes) data = g_variant_get_data_as_bytes (value);

      dest = writer_reserve (writer, head_size);
      memset (dest, 0, head_size);
      write_header (dest, kind, type_length, data_length);
      memcpy (dest + LY_WIRE_HEADER_SIZE, type, type_length);
      writer_push_bytes (writer, data);
      /* The padding gets a segment of its own so that the next frame
       * starts a fresh segment: g_variant_store() needs aligned memory. */
      if (padding > 0)
        {
          g_autoptr(GBytes) pad = g_bytes_new_static (zeros, padding);
          writer_push_bytes (writer, pad);
        }
    }
  else
    {
      dest = writer_reserve (writer, head_size + data_length + padding);
      memset (dest, 0, head_size);
      write_header (dest, kind, type_length, data_length);
      memcpy (dest + LY_WIRE_HEADER_SIZE, type, type_length);
      if (value != NULL)
        g_variant_store (value, dest + head_size);
      memset (dest + head_size + data_length, 0, padding);
    }

  writer->queued += head_size + data_length + padding;
  writer->enqueued_total += head_size + data_length + padding;

  return head_size + data_length + padding;
}

/* A MESSAGE frame of type `s`, without making a GVariant of @string. */
gsize
ly_wire_writer_append_string (LyWireWriter *writer,
                              const char   *string)
{
  gsize data_length = strlen (string) + 1;
  gsize head_size = LY_WIRE_HEADER_SIZE + ly_wire_pad (2);
  gsize total = head_size + ly_wire_pad (data_length);
  guint8 *dest = writer_reserve (writer, total);

  memset (dest, 0, total);
  write_header (dest, LY_WIRE_KIND_MESSAGE, 1, data_length);
  dest[LY_WIRE_HEADER_SIZE] = 's';
  memcpy (dest + head_size, string, data_length);

  writer->queued += total;
  writer->enqueued_total += total;
  return total;
}

/* A MEMFD frame for a message of @type whose @size bytes are in the
 * sealed memfd @fd, which the writer takes: it goes with the frame's
 * bytes (see ly_wire_writer_get_fds()) or is closed with the writer. */
gsize
ly_wire_writer_append_memfd (LyWireWriter *writer,
                             const char   *type,
                             gsize         size,
                             int           fd)
{
  gsize type_length = strlen (type);
  gsize head_size = LY_WIRE_HEADER_SIZE + ly_wire_pad (type_length + 1);
  guint64 size_le = GUINT64_TO_LE ((guint64) size);
  PendingFd pending = { writer->enqueued_total, fd, size };
  guint8 *dest = writer_reserve (writer, head_size + sizeof size_le);

  memset (dest, 0, head_size);
  write_header (dest, LY_WIRE_KIND_MEMFD, type_length, sizeof size_le);
  memcpy (dest + LY_WIRE_HEADER_SIZE, type, type_length);
  memcpy (dest + head_size, &size_le, sizeof size_le);

  if (writer->fds == NULL)
    writer->fds = g_array_new (FALSE, FALSE, sizeof (PendingFd));
  g_array_append_val (writer->fds, pending);
  writer->memfd_bytes += size;

  writer->queued += head_size + sizeof size_le;
  writer->enqueued_total += head_size + sizeof size_le;
  return head_size + sizeof size_le;
}

/* The file descriptors that go with the next write of at most
 * *@max_bytes: those of the frames that start in it, @max_fds at most;
 * *@max_bytes shrinks to end before a frame whose fd does not fit. */
gsize
ly_wire_writer_get_fds (LyWireWriter *writer,
                        int          *fds,
                        gsize         max_fds,
                        gsize        *max_bytes)
{
  gsize n = 0;

  for (guint i = 0; writer->fds != NULL && i < writer->fds->len; i++)
    {
      PendingFd *pending = &g_array_index (writer->fds, PendingFd, i);

      if (pending->offset >= writer->written_total + *max_bytes)
        break;
      if (n == max_fds)
        {
          *max_bytes = pending->offset - writer->written_total;
          break;
        }
      fds[n++] = pending->fd;
    }
  return n;
}

/* The first @n_fds were sent (the peer has copies now): closes ours. */
void
ly_wire_writer_sent_fds (LyWireWriter *writer,
                         gsize         n_fds)
{
  for (gsize i = 0; i < n_fds; i++)
    {
      PendingFd *pending = &g_array_index (writer->fds, PendingFd, i);

      close (pending->fd);
      writer->memfd_bytes -= pending->size;
    }
  if (n_fds > 0)
    g_array_remove_range (writer->fds, 0, n_fds);
}

/* Everything queued, as one buffer; the writer is empty afterwards. */
GBytes *
ly_wire_writer_steal_bytes (LyWireWriter *writer)
{
  guint8 *data = g_malloc (MAX (writer->queued, 1));
  gsize offset = 0;
  Segment *segment;

  while ((segment = g_queue_pop_head (&writer->segments)) != NULL)
    {
      gsize skip = offset == 0 ? writer->head_offset : 0;

      memcpy (data + offset, segment->data + skip, segment->length - skip);
      offset += segment->length - skip;
      segment_free (segment);
    }
  writer->written_total += writer->queued;
  writer->head_offset = 0;
  writer->queued = 0;

  return g_bytes_new_take (data, offset);
}

gsize
ly_wire_writer_get_vectors (LyWireWriter  *writer,
                            GOutputVector *vectors,
                            gsize          n_vectors)
{
  gsize n = 0;

  for (GList *l = writer->segments.head; l != NULL && n < n_vectors; l = l->next)
    {
      Segment *segment = l->data;
      gsize skip = (n == 0) ? writer->head_offset : 0;

      vectors[n].buffer = segment->data + skip;
      vectors[n].size = segment->length - skip;
      n++;
    }

  return n;
}

void
ly_wire_writer_consume (LyWireWriter *writer,
                        gsize         n_written)
{
  g_return_if_fail (n_written <= writer->queued);

  writer->queued -= n_written;
  writer->written_total += n_written;

  while (n_written > 0)
    {
      Segment *head = g_queue_peek_head (&writer->segments);
      gsize left = head->length - writer->head_offset;

      if (n_written < left)
        {
          writer->head_offset += n_written;
          return;
        }

      n_written -= left;
      writer->head_offset = 0;
      g_queue_pop_head (&writer->segments);

      if (head->bytes == NULL && writer->spare == NULL)
        writer->spare = head;
      else
        segment_free (head);
    }
}

gsize
ly_wire_writer_get_queued (LyWireWriter *writer)
{
  return writer->queued;
}

/* What waits to be sent, as memory: the bytes to write and the
 * messages in memfds not sent yet (the back-pressure a sender sees). */
gsize
ly_wire_writer_get_backlog (LyWireWriter *writer)
{
  return writer->queued + writer->memfd_bytes;
}

guint64
ly_wire_writer_get_enqueued_total (LyWireWriter *writer)
{
  return writer->enqueued_total;
}

guint64
ly_wire_writer_get_written_total (LyWireWriter *writer)
{
  return writer->written_total;
}

/* Reader ------------------------------------------------------------------ */

struct _LyWireReader
{
  guint8 *buffer;            /* @capacity bytes */
  gsize   capacity;          /* up to LY_WIRE_READ_BUFFER_SIZE */
  gsize   head;              /* first byte not yet decoded */
  gsize   tail;              /* end of the bytes received */
  gboolean filled;           /* the last read took all the space offered */
  gsize   max_message_size;

  /* A large frame's data is read into its own allocation, so that it
   * becomes the message without another copy. */
  guint8 *large;
  gsize   large_filled;
  gsize   large_length;      /* data length, without padding */
  guint   large_kind;
  char    large_type[LY_WIRE_MAX_TYPE_LENGTH + 1];

  /* file descriptors received, for the MEMFD frames to come */
  GQueue  fds;               /* of GINT_TO_POINTER (fd), oldest first */
  gsize   max_memfd_size;    /* 0: MEMFD frames are refused */
};

/* Large frames' buffers -------------------------------------------------------
 *
 * A large frame's data is read into an allocation of its own, which its
 * message then keeps (no copy).  Allocations that large come from mmap()
 * and go back to the kernel when freed: each large message would fault
 * in every page of a fresh one (on these machines that costs more than
 * reading the data).  So the last one freed is kept for the next large
 * frame: one per process, of at most SPARE_MAX_SIZE bytes. */

#define SPARE_MAX_SIZE (16 * 1024 * 1024)

typedef struct
{
  gsize  capacity;
  guint8 data[];                /* 16-byte aligned, as malloc()'s */
} LargeBuffer;

G_STATIC_ASSERT (G_STRUCT_OFFSET (LargeBuffer, data) % 8 == 0);

static GMutex       spare_mutex;  /* protects spare */
static LargeBuffer *spare;

static LargeBuffer *
large_buffer_of (gpointer data)
{
  return (LargeBuffer *) ((guint8 *) data - G_STRUCT_OFFSET (LargeBuffer, data));
}

/* Room for @size bytes: the spare when it fits without wasting most of
 * itself. */
static guint8 *
large_buffer_take (gsize size)
{
  LargeBuffer *buffer = NULL;

  g_mutex_lock (&spare_mutex);
  if (spare != NULL && spare->capacity >= size && spare->capacity / 4 <= size)
    buffer = g_steal_pointer (&spare);
  g_mutex_unlock (&spare_mutex);

  if (buffer == NULL)
    {
      buffer = g_malloc (sizeof *buffer + size);
      buffer->capacity = size;
    }
  return buffer->data;
}

/* Frees the buffer of @data, or keeps it as the spare (the larger wins). */
static void
large_buffer_free (gpointer data)
{
  LargeBuffer *buffer;

  if (data == NULL)
    return;

  buffer = large_buffer_of (data);
  if (buffer->capacity <= SPARE_MAX_SIZE)
    {
      g_mutex_lock (&spare_mutex);
      if (spare == NULL || spare->capacity < buffer->capacity)
        {
          LargeBuffer *smaller = spare;

          spare = buffer;
          buffer = smaller;
        }
      g_mutex_unlock (&spare_mutex);
    }
  g_free (buffer);
}

LyWireReader *
ly_wire_reader_new (gsize max_message_size)
{
  LyWireReader *reader = g_new0 (LyWireReader, 1);

  reader->capacity = LY_WIRE_READ_BUFFER_MIN_SIZE;
  reader->buffer = g_malloc (reader->capacity);
  reader->max_message_size = max_message_size;

  return reader;
}

void
ly_wire_reader_free (LyWireReader *reader)
{
  if (reader == NULL)
    return;

  g_free (reader->buffer);
  large_buffer_free (reader->large);
  while (!g_queue_is_empty (&reader->fds))
    close (GPOINTER_TO_INT (g_queue_pop_head (&reader->fds)));
  g_free (reader);
}

/* Accepts MEMFD frames of up to @max_size bytes of data (0: none). */
void
ly_wire_reader_set_max_memfd_size (LyWireReader *reader,
                                   gsize         max_size)
{
  reader->max_memfd_size = max_size;
}

/* Takes file descriptors received with the bytes, for the MEMFD frames
 * among them.  A peer that sends more than its frames take, or any to
 * a reader that accepts no MEMFD frame, is told off: they are closed
 * and it is a protocol error. */
gboolean
ly_wire_reader_take_fds (LyWireReader  *reader,
                         const int     *fds,
                         gsize          n_fds,
                         GError       **error)
{
  if (n_fds == 0)
    return TRUE;

  if (reader->max_memfd_size == 0 || g_queue_get_length (&reader->fds) + n_fds > LY_WIRE_MAX_PENDING_FDS)
    {
      for (gsize i = 0; i < n_fds; i++)
        close (fds[i]);
      g_set_error_literal (error, LY_CHANNEL_ERROR, LY_CHANNEL_ERROR_PROTOCOL,
                           _("Received file descriptors that no message of the peer’s needs"));
      return FALSE;
    }

  for (gsize i = 0; i < n_fds; i++)
    g_queue_push_tail (&reader->fds, GINT_TO_POINTER (fds[i]));
  return TRUE;
}

void
ly_wire_reader_set_max_message_size (LyWireReader *reader,
                                     gsize         max_message_size)
{
  reader->max_message_size = max_message_size;
}

guint8 *
ly_wire_reader_get_space (LyWireReader *reader,
                          gsize        *size)
{
  if (reader->large != NULL)
    {
      *size = ly_wire_pad (reader->large_length) - reader->large_filled;
      return reader->large + reader->large_filled;
    }

  if (reader->head == reader->tail)
    reader->head = reader->tail = 0;
  else if (reader->head > 0 && reader->capacity - reader->tail < reader->capacity / 4)
    {
      /* head stays a multiple of 8, so data in the buffer stays aligned */
      memmove (reader->buffer, reader->buffer + reader->head, reader->tail - reader->head);
      reader->tail -= reader->head;
      reader->head = 0;
    }

  /* A quiet connection keeps a small buffer; one that fills it (a busy
   * sender, or a frame larger than the buffer) gets a larger one. */
  if ((reader->filled || reader->capacity - reader->tail < reader->capacity / 4) &&
      reader->capacity < LY_WIRE_READ_BUFFER_SIZE)
    {
      reader->capacity *= 2;
      reader->buffer = g_realloc (reader->buffer, reader->capacity);
    }
  reader->filled = FALSE;

  *size = reader->capacity - reader->tail;
  return reader->buffer + reader->tail;
}

void
ly_wire_reader_commit (LyWireReader *reader,
                       gsize         n_read)
{
  if (reader->large != NULL)
    reader->large_filled += n_read;
  else
    {
      reader->filled = reader->tail + n_read == reader->capacity;
      reader->tail += n_read;
    }
}

/* Whether bytes of an incomplete frame are waiting: end-of-stream now
 * would cut a frame. */
gboolean
ly_wire_reader_has_partial (LyWireReader *reader)
{
  return reader->large != NULL || reader->head != reader->tail;
}


static gboolean
check_header (LyWireReader *reader,
              guint         kind,
              guint         flags,
              gsize         type_length,
              gsize         data_length,
              GError      **error)
{
  if (kind < LY_WIRE_KIND_HELLO || kind > LY_WIRE_KIND_MEMFD ||
      (kind == LY_WIRE_KIND_MEMFD && reader->max_memfd_size == 0))
    {
      g_set_error (error, LY_CHANNEL_ERROR, LY_CHANNEL_ERROR_PROTOCOL,
                   _("Received a frame of unknown kind %u"), kind);
      return FALSE;
    }

  if (flags != 0)
    {
      g_set_error (error, LY_CHANNEL_ERROR, LY_CHANNEL_ERROR_PROTOCOL,
                   _("Received a frame with unknown flags 0x%02x"), flags);
      return FALSE;
    }

  if (type_length > LY_WIRE_MAX_TYPE_LENGTH)
    {
      g_set_error (error, LY_CHANNEL_ERROR, LY_CHANNEL_ERROR_PROTOCOL,
                   _("Received a type string of %zu bytes; the limit is %u bytes"),
                   type_length, (guint) LY_WIRE_MAX_TYPE_LENGTH);
      return FALSE;
    }

  if (kind == LY_WIRE_KIND_GOODBYE && (type_length != 0 || data_length != 0))
    {
      g_set_error_literal (error, LY_CHANNEL_ERROR, LY_CHANNEL_ERROR_PROTOCOL,
                           _("Received a goodbye frame that carries data"));
      return FALSE;
    }

  if (kind != LY_WIRE_KIND_GOODBYE && type_length == 0)
    {
      g_set_error_literal (error, LY_CHANNEL_ERROR, LY_CHANNEL_ERROR_PROTOCOL,
                           _("Received a frame without a type string"));
      return FALSE;
    }

  if (kind == LY_WIRE_KIND_MEMFD && data_length != sizeof (guint64))
    {
      g_set_error (error, LY_CHANNEL_ERROR, LY_CHANNEL_ERROR_PROTOCOL,
                   _("Received a shared-memory frame of %zu bytes instead of 8"), data_length);
      return FALSE;
    }

  if (kind == LY_WIRE_KIND_HELLO && data_length > LY_WIRE_MAX_HELLO_SIZE)
    {
      g_set_error (error, LY_CHANNEL_ERROR, LY_CHANNEL_ERROR_PROTOCOL,
                   _("Received a hello of %zu bytes; the limit is %u bytes"),
                   data_length, (guint) LY_WIRE_MAX_HELLO_SIZE);
      return FALSE;
    }

  if (data_length > reader->max_message_size)
    {
      g_set_error (error, LY_CHANNEL_ERROR, LY_CHANNEL_ERROR_PROTOCOL,
                   _("Received a message of %zu bytes; the limit is %zu bytes"),
                   data_length, reader->max_message_size);
      return FALSE;
    }

  return TRUE;
}

static gboolean
check_type (const char *type,
            gsize       type_length,
            gsize       type_area,
            GError    **error)
{
  const char *end = NULL;

  /* The type string is followed by at least one NUL; all padding is zero. */
  if (!ly_variant_is_zero ((const guint8 *) type + type_length, type_area - type_length))
    {
      g_set_error_literal (error, LY_CHANNEL_ERROR, LY_CHANNEL_ERROR_PROTOCOL,
                           _("Received a frame whose type padding is not zero"));
      return FALSE;
    }

  if (type_length == 0)
    return TRUE;

  if (!g_variant_type_string_scan (type, type + type_length, &end) || end != type + type_length)
    {
      g_autofree char *escaped = g_strescape (type, NULL);

      if (strlen (escaped) > 64)
        strcpy (escaped + 60, "…");
      g_set_error (error, LY_CHANNEL_ERROR, LY_CHANNEL_ERROR_PROTOCOL,
                   _("Received an invalid GVariant type string “%s”"), escaped);
      return FALSE;
    }

  if (!g_variant_type_is_definite (LY_VARIANT_TYPE_VALID (type)))
    {
      g_set_error (error, LY_CHANNEL_ERROR, LY_CHANNEL_ERROR_PROTOCOL,
                   _("Received a message of type “%s”, which is not a definite type"), type);
      return FALSE;
    }

  return TRUE;
}

/* Element size of a basic type in which every bit pattern is valid, or
 * 0.  (Booleans are not: only 0 and 1 are.) */
static gsize
any_bits_size (char type)
{
  switch (type)
    {
    case 'y':
      return 1;
    case 'n': case 'q':
      return 2;
    case 'i': case 'u': case 'h':
      return 4;
    case 'x': case 't': case 'd':
      return 8;
    default:
      return 0;
    }
}

/* Whether data of @size bytes is surely in normal form for @type without
 * looking at it: a number, or an array of numbers (a byte array above
 * all).  GLib would check such an array element by element, which costs
 * more than the copy. */
static gboolean
is_normal_by_size (const char *type,
                   gsize       size)
{
  gsize element;

  if (type[0] == 'a' && type[1] != '\0' && type[2] == '\0')
    return (element = any_bits_size (type[1])) != 0 && size % element == 0;

  return type[1] == '\0' && (element = any_bits_size (type[0])) != 0 && size == element;
}

/* Turns checked bytes into a value: owned by the GVariant from now on. */
static GVariant *
make_value (const char *type,
            GBytes     *data,
            GError    **error)
{
  g_autoptr(GVariant) value = NULL;
  gsize size = g_bytes_get_size (data);
  gboolean normal = is_normal_by_size (type, size) ||
                    ly_variant_is_surely_normal (type, g_bytes_get_data (data, NULL), size);

  ly_variant_keep_type (type);
  value = g_variant_take_ref (g_variant_new_from_bytes (LY_VARIANT_TYPE_VALID (type), data, normal));

  /* An untrusted value in normal form becomes trusted here, so the
   * application's accesses to it are not checked again.  What the fast
   * check is not sure of, GLib decides. */
  if (!normal && !g_variant_is_normal_form (value))
    {
      g_set_error (error, LY_CHANNEL_ERROR, LY_CHANNEL_ERROR_PROTOCOL,
                   _("Received a message of type “%s” that is not in GVariant normal form"), type);
      return NULL;
    }

#if G_BYTE_ORDER == G_BIG_ENDIAN
  {
    GVariant *swapped = g_variant_take_ref (g_variant_byteswap (value));
    g_variant_unref (value);
    value = swapped;
  }
#endif

  return g_steal_pointer (&value);
}

typedef struct
{
  gpointer address;
  gsize    size;
} Mapping;

static void
mapping_free (gpointer data)
{
  Mapping *mapping = data;

  munmap (mapping->address, mapping->size);
  g_free (mapping);
}

/* The data of a MEMFD frame: @fd (taken) must be a memfd sealed against
 * any change, of exactly @size bytes, within the limit; mapped
 * read-only, it becomes the message's bytes without a copy. */
static GBytes *
map_memfd (LyWireReader  *reader,
           int            fd,
           guint64        size,
           GError       **error)
{
  int seals = fcntl (fd, F_GET_SEALS);
  struct stat info;
  gint64 actual;
  Mapping *mapping;
  gpointer address;

  if (seals < 0 || (seals & MEMFD_SEALS) != MEMFD_SEALS)
    {
      close (fd);
      g_set_error_literal (error, LY_CHANNEL_ERROR, LY_CHANNEL_ERROR_PROTOCOL,
                           _("Received shared memory that is not sealed against changes"));
      return NULL;
    }
  if (size == 0 || size > reader->max_memfd_size)
    {
      close (fd);
      g_set_error (error, LY_CHANNEL_ERROR, LY_CHANNEL_ERROR_PROTOCOL,
                   _("Received a message of %" G_GUINT64_FORMAT " bytes in shared memory; the limit is %zu bytes"),
                   size, reader->max_memfd_size);
      return NULL;
    }
  actual = fstat (fd, &info) == 0 && S_ISREG (info.st_mode) ? (gint64) info.st_size : -1;
  if (actual < 0 || (guint64) actual != size)
    {
      close (fd);
      g_set_error (error, LY_CHANNEL_ERROR, LY_CHANNEL_ERROR_PROTOCOL,
                   _("Received shared memory of %" G_GINT64_FORMAT " bytes for a message of %" G_GUINT64_FORMAT " bytes"),
                   actual, size);
      return NULL;
    }

  address = mmap (NULL, size, PROT_READ, MAP_SHARED, fd, 0);
  close (fd);
  if (address == MAP_FAILED)
    {
      int saved_errno = errno;

      g_set_error (error, LY_CHANNEL_ERROR, LY_CHANNEL_ERROR_PROTOCOL,
                   _("Could not map a message of %" G_GUINT64_FORMAT " bytes: %s"),
                   size, g_strerror (saved_errno));
      return NULL;
    }

  mapping = g_new (Mapping, 1);
  mapping->address = address;
  mapping->size = size;
  return g_bytes_new_with_free_func (address, size, mapping_free, mapping);
}

/* A complete MEMFD frame at the reader's head: the message. */
static LyWireStatus
read_memfd_frame (LyWireReader  *reader,
                  const char    *type,
                  const guint8  *data,
                  gsize          frame_size,
                  LyWireKind    *kind,
                  GVariant     **value,
                  GError       **error)
{
  g_autoptr(GBytes) bytes = NULL;
  guint64 size_le;

  memcpy (&size_le, data, sizeof size_le);
  reader->head += frame_size;

  if (g_queue_is_empty (&reader->fds))
    {
      g_set_error_literal (error, LY_CHANNEL_ERROR, LY_CHANNEL_ERROR_PROTOCOL,
                           _("Received a shared-memory frame without its file descriptor"));
      return LY_WIRE_ERROR;
    }

  bytes = map_memfd (reader, GPOINTER_TO_INT (g_queue_pop_head (&reader->fds)), GUINT64_FROM_LE (size_le), error);
  if (bytes == NULL)
    return LY_WIRE_ERROR;

  *kind = LY_WIRE_KIND_MESSAGE;
  *value = make_value (type, bytes, error);
  return *value != NULL ? LY_WIRE_FRAME : LY_WIRE_ERROR;
}

static LyWireStatus
finish_large (LyWireReader  *reader,
              LyWireKind    *kind,
              GVariant     **value,
              GError       **error)
{
  gsize padded = ly_wire_pad (reader->large_length);
  g_autoptr(GBytes) data = NULL;

  if (reader->large_filled < padded)
    return LY_WIRE_NEED_MORE;

  if (!ly_variant_is_zero (reader->large + reader->large_length, padded - reader->large_length))
    {
      g_set_error_literal (error, LY_CHANNEL_ERROR, LY_CHANNEL_ERROR_PROTOCOL,
                           _("Received a frame whose data padding is not zero"));
      return LY_WIRE_ERROR;
    }

  data = g_bytes_new_with_free_func (reader->large, reader->large_length, large_buffer_free, reader->large);
  reader->large = NULL;
  *kind = reader->large_kind;
  *value = make_value (reader->large_type, data, error);

  return *value != NULL ? LY_WIRE_FRAME : LY_WIRE_ERROR;
}

/* Decodes the next complete frame.  A GOODBYE gives a NULL @value. */
LyWireStatus
ly_wire_reader_next (LyWireReader  *reader,
                     LyWireKind    *kind,
                     GVariant     **value,
                     GError       **error)
{
  const guint8 *frame = reader->buffer + reader->head;
  gsize available = reader->tail - reader->head;
  guint frame_kind, flags;
  gsize type_length, data_length, type_area, data_area;
  const char *type;

  *value = NULL;

  if (reader->large != NULL)
    return finish_large (reader, kind, value, error);

  if (available < LY_WIRE_HEADER_SIZE)
    return LY_WIRE_NEED_MORE;

  read_header (frame, &frame_kind, &flags, &type_length, &data_length);
  if (!check_header (reader, frame_kind, flags, type_length, data_length, error))
    return LY_WIRE_ERROR;

  type_area = ly_wire_pad (type_length + 1);
  data_area = ly_wire_pad (data_length);
  if (available < LY_WIRE_HEADER_SIZE + type_area)
    return LY_WIRE_NEED_MORE;

  type = (const char *) frame + LY_WIRE_HEADER_SIZE;
  if (!check_type (type, type_length, type_area, error))
    return LY_WIRE_ERROR;

  if (frame_kind == LY_WIRE_KIND_MEMFD)
    {
      if (available < LY_WIRE_HEADER_SIZE + type_area + data_area)
        return LY_WIRE_NEED_MORE;
      return read_memfd_frame (reader, type, frame + LY_WIRE_HEADER_SIZE + type_area,
                               LY_WIRE_HEADER_SIZE + type_area + data_area, kind, value, error);
    }

  if (data_length >= LY_WIRE_LARGE_MESSAGE)
    {
      gsize have = MIN (available - LY_WIRE_HEADER_SIZE - type_area, data_area);

      /* data_length was checked against max_message_size above */
      reader->large = large_buffer_take (data_area);
      reader->large_length = data_length;
      reader->large_kind = frame_kind;
      memcpy (reader->large_type, type, type_length + 1);
      memcpy (reader->large, frame + LY_WIRE_HEADER_SIZE + type_area, have);
      reader->large_filled = have;
      reader->head += LY_WIRE_HEADER_SIZE + type_area + have;

      return finish_large (reader, kind, value, error);
    }

  if (available < LY_WIRE_HEADER_SIZE + type_area + data_area)
    return LY_WIRE_NEED_MORE;

  {
    const guint8 *data = frame + LY_WIRE_HEADER_SIZE + type_area;
    g_autoptr(GBytes) bytes = NULL;

    if (!ly_variant_is_zero (data + data_length, data_area - data_length))
      {
        g_set_error_literal (error, LY_CHANNEL_ERROR, LY_CHANNEL_ERROR_PROTOCOL,
                             _("Received a frame whose data padding is not zero"));
        return LY_WIRE_ERROR;
      }

    reader->head += LY_WIRE_HEADER_SIZE + type_area + data_area;
    *kind = frame_kind;

    if (frame_kind == LY_WIRE_KIND_GOODBYE)
      return LY_WIRE_FRAME;

    bytes = g_bytes_new (data, data_length);
    *value = make_value (type, bytes, error);
  }

  return *value != NULL ? LY_WIRE_FRAME : LY_WIRE_ERROR;
}

/* Decodes a buffer that holds MESSAGE frames only (no hello), such as a
 * batch inside a control request, into @messages.  Untrusted, like any
 * input: the same checks as on a connection. */
gboolean
ly_wire_decode_messages (const guint8  *data,
                         gsize          size,
                         gsize          max_message_size,
                         GPtrArray     *messages,
                         GError       **error)
{
  g_autoptr(LyWireReader) reader = ly_wire_reader_new (max_message_size);
  gsize offset = 0;

  for (;;)
    {
      GVariant *value = NULL;
      LyWireKind kind;

      switch (ly_wire_reader_next (reader, &kind, &value, error))
        {
        case LY_WIRE_FRAME:
          if (kind != LY_WIRE_KIND_MESSAGE)
            {
              g_clear_pointer (&value, g_variant_unref);
              g_set_error_literal (error, LY_CHANNEL_ERROR, LY_CHANNEL_ERROR_PROTOCOL,
                                   _("A batch holds a frame that is not a message"));
              return FALSE;
            }
          g_ptr_array_add (messages, value);
          break;

        case LY_WIRE_NEED_MORE:
          {
            gsize space_size;
            guint8 *space;

            if (offset == size)
              {
                if (!ly_wire_reader_has_partial (reader))
                  return TRUE;
                g_set_error_literal (error, LY_CHANNEL_ERROR, LY_CHANNEL_ERROR_PROTOCOL,
                                     _("A batch ends in the middle of a frame"));
                return FALSE;
              }
            space = ly_wire_reader_get_space (reader, &space_size);
            space_size = MIN (space_size, size - offset);
            memcpy (space, data + offset, space_size);
            ly_wire_reader_commit (reader, space_size);
            offset += space_size;
          }
          break;

        case LY_WIRE_ERROR:
        default:
          return FALSE;
        }
    }
}

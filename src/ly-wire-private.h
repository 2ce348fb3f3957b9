/* ly-wire-private.h: the frame format spoken on every channel
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#include <gio/gio.h>

G_BEGIN_DECLS

/*
 * Wire protocol, version 1
 * ========================
 *
 * A connection is a reliable, ordered byte stream (an AF_UNIX stream
 * socket, or any GIOStream).  Both ends write a sequence of frames and
 * read the peer's.  All integers are little-endian; every frame starts
 * and ends on a multiple of 8 bytes, so GVariant data inside it is
 * suitably aligned when the reader's buffer is.
 *
 *     offset  size  field
 *     0       1     kind         1 = HELLO, 2 = MESSAGE, 3 = GOODBYE
 *     1       1     flags        must be 0 in version 1
 *     2       2     type_length  bytes of the GVariant type string (u16)
 *     4       4     data_length  bytes of the serialised GVariant (u32)
 *     8       T     type string, then 1 to 8 NUL bytes: T = pad8 (type_length + 1)
 *     8 + T   D     data in GVariant normal form (little-endian), then
 *                   0 to 7 NUL bytes: D = pad8 (data_length)
 *
 * HELLO is the first frame each side writes.  Its type is (usua{sv}):
 * protocol version (1), process name, process id, and a dictionary of
 * extensions (version 1 sends "channel": the channel's name; unknown
 * keys are ignored).  A connection whose first frame is not a HELLO of
 * this version is refused.
 *
 * MESSAGE carries one application message: any definite type.
 *
 * GOODBYE has an empty type and no data.  It is the last frame of a
 * clean close; end-of-stream without it means the peer went away
 * (crashed, was killed) and is reported as an error.
 *
 * MEMFD carries one message whose data is in a sealed memfd sent with
 * the frame's bytes (SCM_RIGHTS, on an AF_UNIX socket): the frame's type
 * string is the message's, its data the data's size (t, 8 bytes).  The
 * file descriptors a connection receives are taken by its MEMFD frames
 * in order.  A side sends MEMFD frames only to a peer whose hello offered
 * them ("memfd": true among the extensions); the receiver checks the
 * seals (no shrinking, growing or writing) and the size before it maps
 * the memfd read-only.  Version 1 peers that do not offer it keep
 * getting MESSAGE frames.
 *
 * The reader trusts nothing: the lengths are checked against the
 * limits before anything is allocated, the type string must be a valid
 * definite type, the data must be in normal form and the padding zero.
 * Any violation is a protocol error that ends the connection.
 */

#define LY_WIRE_HEADER_SIZE       8
#define LY_WIRE_ALIGNMENT         8
#define LY_WIRE_MAX_TYPE_LENGTH   4096
#define LY_WIRE_MAX_HELLO_SIZE    (64 * 1024)
#define LY_WIRE_HELLO_TYPE        "(usua{sv})"
/* Messages at least this large are written from their own memory with
 * writev() instead of being copied into the send buffer. */
#define LY_WIRE_LARGE_MESSAGE     (64 * 1024)
/* Size of a reader's buffer: one read drains up to this much.  It
 * starts at the minimum and doubles while reads fill it. */
#define LY_WIRE_READ_BUFFER_SIZE  (256 * 1024)
#define LY_WIRE_READ_BUFFER_MIN_SIZE (8 * 1024)

typedef enum
{
  LY_WIRE_KIND_HELLO   = 1,
  LY_WIRE_KIND_MESSAGE = 2,
  LY_WIRE_KIND_GOODBYE = 3,
  LY_WIRE_KIND_MEMFD   = 4,
} LyWireKind;

/* Received file descriptors no MEMFD frame took yet, at most. */
#define LY_WIRE_MAX_PENDING_FDS 64

typedef enum
{
  LY_WIRE_NEED_MORE,
  LY_WIRE_FRAME,
  LY_WIRE_ERROR,
} LyWireStatus;

static inline gsize
ly_wire_pad (gsize size)
{
  return (size + (LY_WIRE_ALIGNMENT - 1)) & ~(gsize) (LY_WIRE_ALIGNMENT - 1);
}

gsize     ly_wire_frame_size       (gsize type_length,
                                    gsize data_length);

GVariant *ly_wire_hello_new        (const char *process_name,
                                    const char *channel_name,
                                    gboolean    memfd);
gboolean  ly_wire_hello_parse      (GVariant    *hello,
                                    char       **process_name,
                                    GPid        *pid,
                                    gboolean    *memfd,
                                    GError     **error);
int       ly_wire_memfd_new        (GVariant    *value,
                                    GError     **error);

/* The reader decodes frames from bytes received. */
typedef struct _LyWireReader LyWireReader;

LyWireReader *ly_wire_reader_new         (gsize          max_message_size);
void          ly_wire_reader_free        (LyWireReader  *reader);
void          ly_wire_reader_set_max_message_size (LyWireReader *reader,
                                                   gsize         max_message_size);
gboolean      ly_wire_decode_messages    (const guint8  *data,
                                          gsize          size,
                                          gsize          max_message_size,
                                          GPtrArray     *messages,
                                          GError       **error);
guint8       *ly_wire_reader_get_space   (LyWireReader  *reader,
                                          gsize         *size);
void          ly_wire_reader_commit      (LyWireReader  *reader,
                                          gsize          n_read);
gboolean      ly_wire_reader_has_partial (LyWireReader  *reader);
void          ly_wire_reader_set_max_memfd_size (LyWireReader *reader,
                                                 gsize         max_size);
gboolean      ly_wire_reader_take_fds    (LyWireReader  *reader,
                                          const int     *fds,
                                          gsize          n_fds,
                                          GError       **error);
LyWireStatus  ly_wire_reader_next        (LyWireReader  *reader,
                                          LyWireKind    *kind,
                                          GVariant     **value,
                                          GError       **error);

/* The writer queues frames to send, and hands them out as vectors. */
typedef struct _LyWireWriter LyWireWriter;

LyWireWriter *ly_wire_writer_new          (void);
void          ly_wire_writer_free         (LyWireWriter        *writer);
gsize         ly_wire_writer_append       (LyWireWriter        *writer,
                                           LyWireKind           kind,
                                           GVariant            *value);
gsize         ly_wire_writer_append_string (LyWireWriter       *writer,
                                           const char          *string);
gsize         ly_wire_writer_append_memfd (LyWireWriter        *writer,
                                           const char          *type,
                                           gsize                size,
                                           int                  fd);
gsize         ly_wire_writer_get_fds      (LyWireWriter        *writer,
                                           int                 *fds,
                                           gsize                max_fds,
                                           gsize               *max_bytes);
void          ly_wire_writer_sent_fds     (LyWireWriter        *writer,
                                           gsize                n_fds);
GBytes       *ly_wire_writer_steal_bytes  (LyWireWriter        *writer);
gsize         ly_wire_writer_get_vectors  (LyWireWriter        *writer,
                                           GOutputVector       *vectors,
                                           gsize                n_vectors);
void          ly_wire_writer_consume      (LyWireWriter        *writer,
                                           gsize                n_written);
void          ly_wire_writer_clear        (LyWireWriter        *writer);
gsize         ly_wire_writer_get_queued   (LyWireWriter        *writer);
gsize         ly_wire_writer_get_backlog  (LyWireWriter        *writer);
guint64       ly_wire_writer_get_enqueued_total (LyWireWriter  *writer);
guint64       ly_wire_writer_get_written_total  (LyWireWriter  *writer);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (LyWireReader, ly_wire_reader_free)
G_DEFINE_AUTOPTR_CLEANUP_FUNC (LyWireWriter, ly_wire_writer_free)

G_END_DECLS

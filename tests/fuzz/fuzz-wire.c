/* fuzz-wire.c: the frame decoder, on bytes from a peer
 *
 * The first byte chooses how the bytes arrive (the sizes of the reads),
 * the second the largest message allowed; the rest is the stream.  The
 * stream goes through the incremental reader, as a channel reads it, and
 * through ly_wire_decode_messages(), as a storage batch is read.  Every
 * frame the reader accepts must be a well-formed value of its type.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "fuzz-common.h"

#include "ly-wire-private.h"

FUZZ_DEFINE_INITIALIZE ()

static void
check_frame (LyWireKind  kind,
             GVariant   *value)
{
  g_autofree char *process_name = NULL;
  g_autoptr(GError) error = NULL;
  GPid pid;

  if (kind == LY_WIRE_KIND_HELLO)
    {
      if (ly_wire_hello_parse (value, &process_name, &pid, NULL, &error))
        g_assert (process_name != NULL);
      else
        g_assert (error != NULL);
      return;
    }

  if (value == NULL)
    return;

  /* what a handler does with a message: look inside it */
  g_assert (g_variant_is_normal_form (value));
  if (g_variant_get_size (value) < 4096)
    g_free (g_variant_print (value, TRUE));
}

/* Feeds @data to a reader in reads of the sizes @chunks picks. */
static void
feed_reader (const guint8 *data,
             gsize         size,
             gsize         max_message_size,
             guint8        chunks)
{
  g_autoptr(LyWireReader) reader = ly_wire_reader_new (max_message_size);
  GRand *rand = g_rand_new_with_seed (chunks);
  gsize offset = 0;
  gboolean failed = FALSE;

  while (offset < size && !failed)
    {
      gsize space_size;
      guint8 *space = ly_wire_reader_get_space (reader, &space_size);
      gsize n = chunks == 0 ? space_size : (gsize) g_rand_int_range (rand, 1, 1 + chunks);
      LyWireStatus status;

      n = MIN (MIN (n, space_size), size - offset);
      memcpy (space, data + offset, n);
      ly_wire_reader_commit (reader, n);
      offset += n;

      do
        {
          g_autoptr(GVariant) value = NULL;
          g_autoptr(GError) error = NULL;
          LyWireKind kind = 0;

          status = ly_wire_reader_next (reader, &kind, &value, &error);
          if (status == LY_WIRE_FRAME)
            check_frame (kind, value);
          else if (status == LY_WIRE_ERROR)
            {
              g_assert (error != NULL && error->message != NULL);
              failed = TRUE;
            }
        }
      while (status == LY_WIRE_FRAME);
    }

  if (!failed)
    (void) ly_wire_reader_has_partial (reader);
  g_rand_free (rand);
}

int
LLVMFuzzerTestOneInput (const uint8_t *data,
                        size_t         size)
{
  g_autoptr(GPtrArray) messages = g_ptr_array_new_with_free_func ((GDestroyNotify) g_variant_unref);
  g_autoptr(GError) error = NULL;
  gsize max_message_size;
  guint8 chunks;

  if (size < 2)
    return 0;

  chunks = data[0];
  max_message_size = (gsize) 16 << (data[1] % 20);     /* 16 B to 8 MiB */
  data += 2;
  size -= 2;

  feed_reader (data, size, max_message_size, chunks);

  if (ly_wire_decode_messages (data, size, max_message_size, messages, &error))
    for (guint i = 0; i < messages->len; i++)
      check_frame (LY_WIRE_KIND_MESSAGE, g_ptr_array_index (messages, i));
  else
    g_assert (error != NULL);

  return 0;
}

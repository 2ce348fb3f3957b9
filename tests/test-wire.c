/* test-wire.c: the frame encoder and decoder, without sockets
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include <string.h>
#include <unistd.h>

#include "ly-channel.h"
#include "ly-wire-private.h"

/* Everything the writer queued, as one buffer (consumed from the writer). */
static GByteArray *
drain_writer (LyWireWriter *writer)
{
  GByteArray *bytes = g_byte_array_new ();
  GOutputVector vectors[8];

  while (ly_wire_writer_get_queued (writer) > 0)
    {
      gsize n = ly_wire_writer_get_vectors (writer, vectors, G_N_ELEMENTS (vectors));
      gsize total = 0;

      for (gsize i = 0; i < n; i++)
        {
          /* take part of the last vector only, to exercise partial writes */
          gsize size = (i == n - 1 && vectors[i].size > 3) ? vectors[i].size - 3 : vectors[i].size;

          g_byte_array_append (bytes, vectors[i].buffer, size);
          total += size;
          if (size < vectors[i].size)
            break;
        }
      ly_wire_writer_consume (writer, total);
    }

  return bytes;
}

static GPtrArray *
sample_messages (void)
{
  GPtrArray *messages = g_ptr_array_new_with_free_func ((GDestroyNotify) g_variant_unref);
  g_autofree guint8 *big = g_malloc (200 * 1024);

  for (gsize i = 0; i < 200 * 1024; i++)
    big[i] = (guint8) (i ^ (i >> 8));

  g_ptr_array_add (messages, g_variant_ref_sink (g_variant_new_string ("")));
  g_ptr_array_add (messages, g_variant_ref_sink (g_variant_new_string ("hello")));
  g_ptr_array_add (messages, g_variant_parse (NULL, "{'a': <(1, [2.5])>}", NULL, NULL, NULL));
  g_ptr_array_add (messages, g_variant_ref_sink (g_variant_new_fixed_array (G_VARIANT_TYPE_BYTE, big, 200 * 1024, 1)));
  g_ptr_array_add (messages, g_variant_parse (NULL, "@ay []", NULL, NULL, NULL));
  g_ptr_array_add (messages, g_variant_parse (NULL, "(byte 1, int64 2, 'x', @mv nothing)", NULL, NULL, NULL));

  return messages;
}

/* Feeds @bytes to a reader in chunks of @chunk bytes (0: random sizes)
 * and checks it gives back hello, @messages, goodbye. */
static void
decode_in_chunks (GByteArray *bytes,
                  GPtrArray  *messages,
                  gsize       chunk)
{
  g_autoptr(LyWireReader) reader = ly_wire_reader_new (16 * 1024 * 1024);
  gsize offset = 0;
  guint index = 0;
  gboolean hello = FALSE, goodbye = FALSE;

  while (offset < bytes->len || ly_wire_reader_has_partial (reader))
    {
      g_autoptr(GError) error = NULL;
      GVariant *value = NULL;
      LyWireKind kind;
      LyWireStatus status = ly_wire_reader_next (reader, &kind, &value, &error);

      if (status == LY_WIRE_NEED_MORE)
        {
          gsize space_size;
          guint8 *space = ly_wire_reader_get_space (reader, &space_size);
          gsize n = chunk != 0 ? chunk : (gsize) g_test_rand_int_range (1, 5000);

          g_assert_cmpuint (offset, <, bytes->len);
          n = MIN (MIN (n, space_size), bytes->len - offset);
          memcpy (space, bytes->data + offset, n);
          ly_wire_reader_commit (reader, n);
          offset += n;
          continue;
        }

      g_assert_no_error (error);
      g_assert_cmpint (status, ==, LY_WIRE_FRAME);
      if (kind == LY_WIRE_KIND_HELLO)
        {
          g_autofree char *name = NULL;
          GPid pid;

          g_assert_false (hello);
          hello = TRUE;
          g_assert_true (ly_wire_hello_parse (value, &name, &pid, NULL, &error));
          g_assert_no_error (error);
          g_assert_cmpstr (name, ==, "test-wire");
          g_assert_cmpint (pid, ==, getpid ());
        }
      else if (kind == LY_WIRE_KIND_MESSAGE)
        {
          g_assert_true (hello);
          g_assert_cmpuint (index, <, messages->len);
          g_assert_true (g_variant_equal (value, g_ptr_array_index (messages, index)));
          g_assert_true (g_variant_is_normal_form (value));
          index++;
        }
      else
        {
          g_assert_cmpint (kind, ==, LY_WIRE_KIND_GOODBYE);
          g_assert_null (value);
          goodbye = TRUE;
        }
      g_clear_pointer (&value, g_variant_unref);
    }

  g_assert_true (goodbye);
  g_assert_cmpuint (index, ==, messages->len);
}

static void
test_roundtrip_chunks (void)
{
  g_autoptr(GPtrArray) messages = sample_messages ();
  g_autoptr(LyWireWriter) writer = ly_wire_writer_new ();
  g_autoptr(GByteArray) bytes = NULL;
  g_autoptr(GVariant) hello = g_variant_ref_sink (ly_wire_hello_new ("test-wire", "c", FALSE));
  gsize expected = 0;
  const gsize chunks[] = { 1, 2, 7, 8, 9, 4096, 65536, 1 << 20, 0, 0, 0 };

  expected += ly_wire_writer_append (writer, LY_WIRE_KIND_HELLO, hello);
  for (guint i = 0; i < messages->len; i++)
    expected += ly_wire_writer_append (writer, LY_WIRE_KIND_MESSAGE, g_ptr_array_index (messages, i));
  expected += ly_wire_writer_append (writer, LY_WIRE_KIND_GOODBYE, NULL);

  g_assert_cmpuint (ly_wire_writer_get_queued (writer), ==, expected);
  bytes = drain_writer (writer);
  g_assert_cmpuint (bytes->len, ==, expected);
  g_assert_cmpuint (bytes->len % 8, ==, 0);
  g_assert_cmpuint (ly_wire_writer_get_written_total (writer), ==, expected);

  for (gsize i = 0; i < G_N_ELEMENTS (chunks); i++)
    decode_in_chunks (bytes, messages, chunks[i]);
}

static void
test_frame_layout (void)
{
  g_autoptr(LyWireWriter) writer = ly_wire_writer_new ();
  g_autoptr(GByteArray) bytes = NULL;
  const guint8 expected[] = {
    2, 0, 1, 0, 6, 0, 0, 0,      /* MESSAGE, flags 0, type "s", 6 bytes of data */
    's', 0, 0, 0, 0, 0, 0, 0,    /* type, NUL-padded to 8 */
    'h', 'e', 'l', 'l', 'o', 0, 0, 0,
  };

  g_autoptr(GVariant) hello = g_variant_ref_sink (g_variant_new_string ("hello"));

  ly_wire_writer_append (writer, LY_WIRE_KIND_MESSAGE, hello);
  bytes = drain_writer (writer);
  g_assert_cmpmem (bytes->data, bytes->len, expected, sizeof expected);
  g_assert_cmpuint (ly_wire_frame_size (1, 6), ==, sizeof expected);
}

static void
expect_error (const guint8 *data,
              gsize         size,
              gsize         max_message_size,
              const char   *message_part)
{
  g_autoptr(LyWireReader) reader = ly_wire_reader_new (max_message_size);
  g_autoptr(GError) error = NULL;
  GVariant *value = NULL;
  LyWireKind kind;
  gsize space_size;
  guint8 *space = ly_wire_reader_get_space (reader, &space_size);

  memcpy (space, data, size);
  ly_wire_reader_commit (reader, size);
  g_assert_cmpint (ly_wire_reader_next (reader, &kind, &value, &error), ==, LY_WIRE_ERROR);
  g_assert_error (error, LY_CHANNEL_ERROR, LY_CHANNEL_ERROR_PROTOCOL);
  g_assert_null (value);
  if (strstr (error->message, message_part) == NULL)
    g_error ("“%s” does not mention “%s”", error->message, message_part);
}

static void
test_decode_errors (void)
{
  const guint8 huge[] = { 2, 0, 1, 0, 0xff, 0xff, 0xff, 0x7f, 's', 0, 0, 0, 0, 0, 0, 0 };
  const guint8 kind[] = { 0, 0, 1, 0, 0, 0, 0, 0, 's', 0, 0, 0, 0, 0, 0, 0 };
  const guint8 flags[] = { 2, 4, 1, 0, 0, 0, 0, 0, 's', 0, 0, 0, 0, 0, 0, 0 };
  const guint8 long_type[] = { 2, 0, 0xff, 0xff, 0, 0, 0, 0 };
  const guint8 bad_type[] = { 2, 0, 2, 0, 0, 0, 0, 0, '{', 's', 0, 0, 0, 0, 0, 0 };
  const guint8 indefinite[] = { 2, 0, 1, 0, 0, 0, 0, 0, '*', 0, 0, 0, 0, 0, 0, 0 };
  const guint8 type_padding[] = { 2, 0, 1, 0, 0, 0, 0, 0, 'b', 0, 9, 0, 0, 0, 0, 0 };
  const guint8 no_nul[] = { 2, 0, 8, 0, 0, 0, 0, 0, 'a', 'a', 'a', 'a', 'a', 'a', 'a', 'y',
                            'x', 0, 0, 0, 0, 0, 0, 0 };
  const guint8 not_normal[] = { 2, 0, 1, 0, 2, 0, 0, 0, 'b', 0, 0, 0, 0, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0 };
  const guint8 data_padding[] = { 2, 0, 1, 0, 1, 0, 0, 0, 'b', 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 1, 0, 0, 0, 0 };
  const guint8 goodbye_data[] = { 3, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0 };
  const guint8 no_type[] = { 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0 };
  const guint8 big_hello[] = { 1, 0, 10, 0, 0, 0, 2, 0, '(', 'u', 's', 'u', 'a', '{', 's', 'v', '}', ')', 0, 0, 0, 0, 0, 0 };

  expect_error (huge, sizeof huge, 16 * 1024 * 1024, "limit");
  expect_error (kind, sizeof kind, 1024, "kind 0");
  expect_error (flags, sizeof flags, 1024, "flags 0x04");
  expect_error (long_type, sizeof long_type, 1024, "65535");
  expect_error (bad_type, sizeof bad_type, 1024, "invalid GVariant type string");
  expect_error (indefinite, sizeof indefinite, 1024, "not a definite type");
  expect_error (type_padding, sizeof type_padding, 1024, "padding");
  expect_error (no_nul, sizeof no_nul, 1024, "padding");
  expect_error (not_normal, sizeof not_normal, 1024, "normal form");
  expect_error (data_padding, sizeof data_padding, 1024, "padding");
  expect_error (goodbye_data, sizeof goodbye_data, 1024, "goodbye");
  expect_error (no_type, sizeof no_type, 1024, "without a type");
  expect_error (big_hello, sizeof big_hello, 16 * 1024 * 1024, "hello");
}

/* A frame's length is checked before anything is allocated for it. */
static void
test_limit_before_allocation (void)
{
  g_autoptr(LyWireReader) reader = ly_wire_reader_new (1024 * 1024);
  const guint8 header[] = { 2, 0, 2, 0, 0x01, 0x00, 0x10, 0x00, 'a', 'y', 0, 0, 0, 0, 0, 0 };
  g_autoptr(GError) error = NULL;
  GVariant *value = NULL;
  LyWireKind kind;
  gsize space_size;
  guint8 *space = ly_wire_reader_get_space (reader, &space_size);

  /* 1 MiB + 1 byte announced, limit 1 MiB */
  memcpy (space, header, sizeof header);
  ly_wire_reader_commit (reader, sizeof header);
  g_assert_cmpint (ly_wire_reader_next (reader, &kind, &value, &error), ==, LY_WIRE_ERROR);
  g_assert_error (error, LY_CHANNEL_ERROR, LY_CHANNEL_ERROR_PROTOCOL);
  g_assert_null (value);
}

static void
test_hello_version (void)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(GVariant) other = g_variant_ref_sink (g_variant_new ("(usua{sv})", 2, "x", 1, NULL));
  g_autoptr(GVariant) wrong_type = g_variant_ref_sink (g_variant_new ("(us)", 1, "x"));

  g_assert_false (ly_wire_hello_parse (other, NULL, NULL, NULL, &error));
  g_assert_error (error, LY_CHANNEL_ERROR, LY_CHANNEL_ERROR_PROTOCOL);
  g_assert_nonnull (strstr (error->message, "version 2"));
  g_clear_error (&error);
  g_assert_false (ly_wire_hello_parse (wrong_type, NULL, NULL, NULL, &error));
  g_assert_error (error, LY_CHANNEL_ERROR, LY_CHANNEL_ERROR_PROTOCOL);
}

int
main (int   argc,
      char *argv[])
{
  g_test_init (&argc, &argv, NULL);
  g_set_prgname ("test-wire");

  g_test_add_func ("/wire/roundtrip-chunks", test_roundtrip_chunks);
  g_test_add_func ("/wire/frame-layout", test_frame_layout);
  g_test_add_func ("/wire/decode-errors", test_decode_errors);
  g_test_add_func ("/wire/limit-before-allocation", test_limit_before_allocation);
  g_test_add_func ("/wire/hello-version", test_hello_version);

  return g_test_run ();
}

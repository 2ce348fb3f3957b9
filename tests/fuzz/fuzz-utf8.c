/* fuzz-utf8.c: the fast UTF-8 validator against GLib's, both ways
 *
 * The input is text as a peer sends it in a string.  The fast validator
 * must say exactly what g_utf8_validate_len() says, for the whole input
 * and for every suffix of its first 16 bytes (the input at every
 * alignment); and a string value made of it must be normal for the
 * wire's fast check exactly when GLib says it is.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "fuzz-common.h"

#include "ly-utf8-private.h"
#include "ly-variant-private.h"

FUZZ_DEFINE_INITIALIZE ()

static void
check_text (const char *text,
            gsize       length)
{
  gboolean fast = ly_utf8_validate (text, length);
  gboolean glib = g_utf8_validate_len (text, length, NULL);

  if (fast != glib)
    {
      g_printerr ("UTF-8 of %zu bytes: GLib says %d, the fast validator %d\n", length, glib, fast);
      abort ();
    }
}

static void
check_string_value (const char *text,
                    gsize       length)
{
  g_autofree char *data = g_malloc (length + 1);
  g_autoptr(GBytes) bytes = NULL;
  g_autoptr(GVariant) value = NULL;
  gboolean fast;

  memcpy (data, text, length);
  data[length] = '\0';
  fast = ly_variant_is_surely_normal ("s", (const guint8 *) data, length + 1);
  bytes = g_bytes_new_take (g_steal_pointer (&data), length + 1);
  value = g_variant_ref_sink (g_variant_new_from_bytes (G_VARIANT_TYPE_STRING, bytes, FALSE));
  if (fast != g_variant_is_normal_form (value))
    {
      g_printerr ("string of %zu bytes: GLib says normal %d, the wire's check %d\n",
                  length, !fast, fast);
      abort ();
    }
}

int
LLVMFuzzerTestOneInput (const uint8_t *data,
                        size_t         size)
{
  const char *text = (const char *) data;

  check_text (text, size);
  for (gsize skip = 1; skip < 16 && skip < size; skip++)
    check_text (text + skip, size - skip);
  check_string_value (text, size);
  return 0;
}

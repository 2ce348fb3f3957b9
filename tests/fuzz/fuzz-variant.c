/* fuzz-variant.c: the wire's fast normal-form check against GLib's
 *
 * The input is a type string, a NUL, then serialised data.  Whenever
 * ly_variant_is_surely_normal() accepts the data, GLib must find it in
 * normal form too: the fast check lets GLib trust what it accepts.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "fuzz-common.h"

#include "ly-variant-private.h"

FUZZ_DEFINE_INITIALIZE ()

int
LLVMFuzzerTestOneInput (const uint8_t *data,
                        size_t         size)
{
  const uint8_t *zero = memchr (data, '\0', size);
  g_autofree char *type = NULL;
  g_autoptr(GBytes) bytes = NULL;
  g_autoptr(GVariant) value = NULL;
  const guint8 *body;
  gsize body_size;

  if (zero == NULL || zero == data || zero - data > 255)
    return 0;
  type = g_strndup ((const char *) data, zero - data);
  if (!g_variant_type_string_is_valid (type) || !g_variant_type_is_definite (G_VARIANT_TYPE (type)))
    return 0;

  /* the data in memory of its own, as the wire hands it over */
  body_size = size - (zero - data) - 1;
  bytes = g_bytes_new (zero + 1, body_size);
  body = g_bytes_get_data (bytes, NULL);
  if (!ly_variant_is_surely_normal (type, body, body_size))
    return 0;

  value = g_variant_ref_sink (g_variant_new_from_bytes (G_VARIANT_TYPE (type), bytes, FALSE));
  if (!g_variant_is_normal_form (value))
    {
      g_printerr ("accepted, but not in normal form for GLib: type %s, %zu bytes\n", type, body_size);
      abort ();
    }
  return 0;
}

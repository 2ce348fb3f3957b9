/* ly-variant.c: a fast check that received GVariant data is in normal form
 *
 * Untrusted data must be in normal form before GLib may trust it, and
 * g_variant_is_normal_form() costs more than everything else a message
 * costs on its way in (an allocation and a type lookup per node, UTF-8
 * validated byte by byte).  This walks the serialised data once, with
 * the rules of GLib's gvariant-serialiser.c, and validates strings 16
 * bytes at a time (ly-utf8.c).
 *
 * It only ever says "surely normal": wherever it is not sure (deep
 * nesting, a variant's type it does not vouch for, anything unusual) it
 * says FALSE, and the caller asks GLib, whose answer stands.  So the
 * result is exactly GLib's, faster for what peers really send.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "config.h"

#include <string.h>

#include "ly-utf8-private.h"
#include "ly-variant-private.h"
#include "ly-variant-type-private.h"

/* Levels of nesting checked here; deeper data goes to GLib (whose limit
 * is G_VARIANT_MAX_RECURSION_DEPTH, 128). */
#define MAX_DEPTH 32

static gboolean is_normal_items (const guint8          *data,
                                 gsize                  size,
                                 const LyVariantLayout *layout,
                                 guint                  depth);
static gboolean is_normal (const guint8 *data,
                           gsize         size,
                           const char   *type,
                           guint         depth);

static gboolean
is_normal_string (const guint8 *data,
                  gsize         size,
                  char          code)
{
  if (size == 0 || data[size - 1] != '\0' || !ly_utf8_validate ((const char *) data, size - 1))
    return FALSE;
  if (code == 'o')
    return g_variant_is_object_path ((const char *) data);
  if (code == 'g')
    return g_variant_is_signature ((const char *) data);
  return TRUE;
}

/* Vouched for: a short type of basic types and containers of them, no
 * deeper than this module checks. */
static gboolean
is_normal_variant (const guint8 *data,
                   gsize         size,
                   guint         depth)
{
  gsize zero = size, alignment, fixed_size;
  const char *type, *limit, *end = NULL;
  char copy[64];

  while (zero > 0 && data[zero - 1] != '\0')
    zero--;
  if (zero == 0 || size - zero >= sizeof copy)
    return FALSE;

  type = (const char *) data + zero;
  limit = (const char *) data + size;

  /* the usual child: one basic type */
  if (limit - type == 1 && strchr ("bynqiuxthdsog", *type) != NULL && *type != '\0')
    {
      char basic[2] = { *type, '\0' };

      return is_normal (data, zero - 1, basic, depth + 1);
    }

  if (type == limit || !g_variant_type_string_scan (type, limit, &end) || end != limit)
    return FALSE;
  memcpy (copy, type, size - zero);
  copy[size - zero] = '\0';
  if (strpbrk (copy, "*?r") != NULL)
    return FALSE;     /* indefinite */

  /* a fixed-size child must have exactly its size */
  ly_variant_type_info (copy, &alignment, &fixed_size, &end);
  if (fixed_size != 0 && fixed_size != zero - 1)
    return FALSE;

  return is_normal (data, zero - 1, copy, depth + 1 + (guint) (size - zero));
}

static gboolean
is_normal_maybe (const guint8 *data,
                 gsize         size,
                 const char   *type,
                 guint         depth)
{
  gsize alignment, fixed_size;
  const char *end;

  if (size == 0)
    return TRUE;
  ly_variant_type_info (type + 1, &alignment, &fixed_size, &end);
  if (fixed_size != 0)
    return size == fixed_size && is_normal (data, size, type + 1, depth + 1);
  return data[size - 1] == '\0' && is_normal (data, size - 1, type + 1, depth + 1);
}

static gboolean
is_normal_fixed_array (const guint8 *data,
                       gsize         size,
                       const char   *element,
                       gsize         fixed_size,
                       guint         depth)
{
  if (size % fixed_size != 0)
    return FALSE;

  switch (*element)
    {
    case 'y': case 'n': case 'q': case 'i': case 'u': case 'h': case 'x': case 't': case 'd':
      return TRUE;      /* every bit pattern is a value */
    case 'b':
      for (gsize i = 0; i < size; i++)
        if (data[i] > 1)
          return FALSE;
      return TRUE;
    default:
      for (gsize offset = 0; offset < size; offset += fixed_size)
        if (!is_normal (data + offset, fixed_size, element, depth + 1))
          return FALSE;
      return TRUE;
    }
}

static gboolean
is_normal_array (const guint8 *data,
                 gsize         size,
                 const char   *type,
                 guint         depth)
{
  const char *element = type + 1, *end;
  gsize alignment, fixed_size, start, stop;
  LyVariantArrayIter iter;
  LyVariantLayout layout;
  const LyVariantLayout *items = NULL;

  ly_variant_type_info (element, &alignment, &fixed_size, &end);
  if (fixed_size != 0)
    return is_normal_fixed_array (data, size, element, fixed_size, depth);
  if (!ly_variant_array_iter_init (&iter, data, size, alignment, fixed_size))
    return FALSE;

  if (*element == '(' || *element == '{')
    {
      if (!ly_variant_layout_init (&layout, element))
        return FALSE;
      items = &layout;
    }

  while (ly_variant_array_iter_next (&iter, &start, &stop))
    {
      if (!ly_variant_is_zero (data + iter.previous_end, start - iter.previous_end))
        return FALSE;
      if (items != NULL ? !is_normal_items (data + start, stop - start, items, depth + 1)
                        : !is_normal (data + start, stop - start, element, depth + 1))
        return FALSE;
      iter.previous_end = stop;
    }
  return ly_variant_array_iter_at_end (&iter);
}

static gboolean
is_normal_items (const guint8          *data,
                 gsize                  size,
                 const LyVariantLayout *layout,
                 guint                  depth)
{
  gsize offset_size = ly_variant_offset_size (size), framing = size, offset = 0, n_offsets;

  if (layout->fixed_size != 0 && size != layout->fixed_size)
    return FALSE;
  if (layout->n_items == 0)
    return size == 1 && data[0] == '\0';

  for (guint i = 0; i < layout->n_items; i++)
    {
      const LyVariantItem *item = &layout->items[i];
      gsize start = (offset + item->alignment - 1) & ~(item->alignment - 1), stop;

      if (start > framing || !ly_variant_is_zero (data + offset, start - offset))
        return FALSE;

      if (item->fixed_size != 0)
        stop = start + item->fixed_size;
      else if (i + 1 == layout->n_items)
        stop = framing;
      else
        {
          if (framing < offset_size)
            return FALSE;
          framing -= offset_size;
          if (framing < start)
            return FALSE;
          stop = ly_variant_read_offset (data + framing, offset_size);
        }
      if (stop < start || stop > framing || !is_normal (data + start, stop - start, item->type, depth + 1))
        return FALSE;
      offset = stop;
    }

  if (layout->fixed_size != 0)
    return ly_variant_is_zero (data + offset, size - offset);   /* the padding that makes its size */
  n_offsets = (size - framing) / MAX (offset_size, 1);
  return offset == framing && ly_variant_framed_size (framing, n_offsets) == size;
}

static gboolean
is_normal_tuple (const guint8 *data,
                 gsize         size,
                 const char   *type,
                 guint         depth)
{
  LyVariantLayout layout;

  return ly_variant_layout_init (&layout, type) && is_normal_items (data, size, &layout, depth);
}

static gboolean
is_normal (const guint8 *data,
           gsize         size,
           const char   *type,
           guint         depth)
{
  if (depth > MAX_DEPTH)
    return FALSE;

  switch (*type)
    {
    case 'y':
      return size == 1;
    case 'n': case 'q':
      return size == 2;
    case 'i': case 'u': case 'h':
      return size == 4;
    case 'x': case 't': case 'd':
      return size == 8;
    case 'b':
      return size == 1 && data[0] <= 1;
    case 's': case 'o': case 'g':
      return is_normal_string (data, size, *type);
    case 'v':
      return is_normal_variant (data, size, depth);
    case 'm':
      return is_normal_maybe (data, size, type, depth);
    case 'a':
      return is_normal_array (data, size, type, depth);
    case '(': case '{':
      return is_normal_tuple (data, size, type, depth);
    default:
      return FALSE;
    }
}

/* ly_variant_is_surely_normal:
 * @type: a valid definite GVariant type string
 * @data: (array length=size): serialised data, little-endian
 * @size: its size
 *
 * Returns: %TRUE when @data is in normal form for @type; %FALSE when it
 *   is not, or when this check is not sure (ask g_variant_is_normal_form())
 */
gboolean
ly_variant_is_surely_normal (const char   *type,
                             const guint8 *data,
                             gsize         size)
{
  gsize type_length = strlen (type);

  /* GLib's limit counts type nesting too */
  if (type_length > MAX_DEPTH || (data == NULL && size > 0))
    return FALSE;
  return is_normal (size > 0 ? data : (const guint8 *) "", size, type, (guint) type_length);
}

/* Whether @a and @b are the same value: the same type, and the same
 * bytes in normal form.  g_variant_equal() compares containers by
 * printing both to text: close to a second for a value of 1 MiB, which
 * stalled the hub on every such set (it tests whether a set changes
 * anything). */
gboolean
ly_variant_same (GVariant *a,
                 GVariant *b)
{
  g_autoptr(GVariant) normal_a = NULL;
  g_autoptr(GVariant) normal_b = NULL;
  gsize size;

  if (a == b)
    return TRUE;
  if (!g_str_equal (g_variant_get_type_string (a), g_variant_get_type_string (b)))
    return FALSE;

  normal_a = g_variant_get_normal_form (a);
  normal_b = g_variant_get_normal_form (b);
  size = g_variant_get_size (normal_a);

  return size == g_variant_get_size (normal_b) &&
         (size == 0 || memcmp (g_variant_get_data (normal_a), g_variant_get_data (normal_b), size) == 0);
}

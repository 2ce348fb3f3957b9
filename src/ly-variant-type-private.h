/* ly-variant-type-private.h: what the GVariant serialisation format says
 * about a type, from its type string alone
 *
 * Shared by the wire's validator (ly-variant.c) and the Python
 * extension's writer and reader (src/python/), which is not linked with
 * the library's private objects: hence static inline.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#include <glib.h>
#include <string.h>

G_BEGIN_DECLS

/* A type string known to be valid, as a GVariantType: G_VARIANT_TYPE()
 * checks the string again (a scan of it) on every use. */
#define LY_VARIANT_TYPE_VALID(string) ((const GVariantType *) (string))

/* Alignment and fixed size (0: variable) of the single complete type at
 * @type, a valid type string; *end is where that type ends.  As
 * GVariantTypeInfo computes them: a tuple of fixed items is fixed, its
 * size padded to its alignment, and the unit tuple is one byte. */
static inline void
ly_variant_type_info (const char  *type,
                      gsize       *alignment,
                      gsize       *fixed_size,
                      const char **end)
{
  switch (*type)
    {
    case 'b': case 'y':
      *alignment = 1, *fixed_size = 1, *end = type + 1;
      return;
    case 'n': case 'q':
      *alignment = 2, *fixed_size = 2, *end = type + 1;
      return;
    case 'i': case 'u': case 'h':
      *alignment = 4, *fixed_size = 4, *end = type + 1;
      return;
    case 'x': case 't': case 'd':
      *alignment = 8, *fixed_size = 8, *end = type + 1;
      return;
    case 'v':
      *alignment = 8, *fixed_size = 0, *end = type + 1;
      return;
    case 'm': case 'a':
      {
        gsize element_fixed;

        ly_variant_type_info (type + 1, alignment, &element_fixed, end);
        *fixed_size = 0;
        return;
      }
    case '(': case '{':
      {
        gsize max_alignment = 1, offset = 0;
        gboolean fixed = TRUE;
        const char *item = type + 1;

        while (*item != ')' && *item != '}')
          {
            gsize item_alignment, item_fixed;

            ly_variant_type_info (item, &item_alignment, &item_fixed, &item);
            max_alignment = MAX (max_alignment, item_alignment);
            if (item_fixed == 0)
              fixed = FALSE;
            else if (fixed)
              offset = ((offset + item_alignment - 1) & ~(item_alignment - 1)) + item_fixed;
          }
        *alignment = max_alignment;
        if (!fixed)
          *fixed_size = 0;
        else if (offset == 0)
          *fixed_size = 1;
        else
          *fixed_size = (offset + max_alignment - 1) & ~(max_alignment - 1);
        *end = item + 1;
        return;
      }
    default:
      /* s, o, g */
      *alignment = 1, *fixed_size = 0, *end = type + 1;
      return;
    }
}

/* The items of a tuple or dict entry type, worked out once for all the
 * values of an array. */
#define LY_VARIANT_LAYOUT_MAX_ITEMS 8

typedef struct
{
  const char *type;
  gsize       alignment;
  gsize       fixed_size;   /* 0: variable */
} LyVariantItem;

typedef struct
{
  guint         n_items;
  gsize         alignment;
  gsize         fixed_size;  /* 0: variable */
  LyVariantItem items[LY_VARIANT_LAYOUT_MAX_ITEMS];
} LyVariantLayout;

/* FALSE for a tuple of more items than a layout holds. */
static inline gboolean
ly_variant_layout_init (LyVariantLayout *layout,
                        const char      *type)
{
  const char *item = type + 1, *end;

  layout->n_items = 0;
  while (*item != ')' && *item != '}')
    {
      LyVariantItem *info;

      if (layout->n_items == LY_VARIANT_LAYOUT_MAX_ITEMS)
        return FALSE;
      info = &layout->items[layout->n_items++];
      info->type = item;
      ly_variant_type_info (item, &info->alignment, &info->fixed_size, &item);
    }
  ly_variant_type_info (type, &layout->alignment, &layout->fixed_size, &end);
  return TRUE;
}

/* Whether @size bytes at @data are all zero: padding must be. */
static inline gboolean
ly_variant_is_zero (const guint8 *data,
                    gsize         size)
{
  for (gsize i = 0; i < size; i++)
    if (data[i] != 0)
      return FALSE;
  return TRUE;
}

/* The size of the framing offsets of a container of @size bytes. */
static inline gsize
ly_variant_offset_size (gsize size)
{
  return size > G_MAXUINT32 ? 8 : size > G_MAXUINT16 ? 4 : size > G_MAXUINT8 ? 2 : size > 0 ? 1 : 0;
}

/* The size of a container of @body bytes and @n framing offsets in
 * normal form: the offsets as small as the whole allows. */
static inline gsize
ly_variant_framed_size (gsize body,
                        gsize n)
{
  if (body + n <= G_MAXUINT8)
    return body + n;
  if (body + 2 * n <= G_MAXUINT16)
    return body + 2 * n;
  if (body + 4 * n <= G_MAXUINT32)
    return body + 4 * n;
  return body + 8 * n;
}

static inline guint64
ly_variant_read_offset (const guint8 *data,
                        gsize         size)
{
  guint64 offset = 0;

  memcpy (&offset, data, size);
  return GUINT64_FROM_LE (offset);
}

/* The elements of an array in normal form, one after another: their
 * framing is checked as it is walked.  Fixed-size elements follow one
 * another; variable-size ones end where the framing offsets say, each
 * after the padding of its alignment. */
typedef struct
{
  const guint8 *data;
  gsize         alignment;
  gsize         fixed_size;
  gsize         offset_size;
  gsize         offsets_start;  /* where the framing offsets begin */
  gsize         n_elements;
  gsize         index;
  gsize         previous_end;   /* where the padding before the next begins */
} LyVariantArrayIter;

/* FALSE when the array's size or framing is not normal form. */
static inline gboolean
ly_variant_array_iter_init (LyVariantArrayIter *iter,
                            const guint8       *data,
                            gsize               size,
                            gsize               alignment,
                            gsize               fixed_size)
{
  memset (iter, 0, sizeof *iter);
  iter->data = data;
  iter->alignment = alignment;
  iter->fixed_size = fixed_size;

  if (fixed_size != 0)
    {
      iter->n_elements = size / fixed_size;
      return size % fixed_size == 0;
    }
  if (size == 0)
    return TRUE;

  iter->offset_size = ly_variant_offset_size (size);
  iter->offsets_start = ly_variant_read_offset (data + size - iter->offset_size, iter->offset_size);
  if (iter->offsets_start > size || (size - iter->offsets_start) % iter->offset_size != 0)
    return FALSE;
  iter->n_elements = (size - iter->offsets_start) / iter->offset_size;
  /* no element, or offsets wider than the size needs: not normal */
  return iter->n_elements > 0 && ly_variant_framed_size (iter->offsets_start, iter->n_elements) == size;
}

/* The bounds of the next element; FALSE at the end, or when they are not
 * normal form (ly_variant_array_iter_at_end() tells which). */
static inline gboolean
ly_variant_array_iter_next (LyVariantArrayIter *iter,
                            gsize              *start,
                            gsize              *stop)
{
  if (iter->index == iter->n_elements)
    return FALSE;

  if (iter->fixed_size != 0)
    {
      *start = iter->index * iter->fixed_size;
      *stop = *start + iter->fixed_size;
    }
  else
    {
      *start = (iter->previous_end + iter->alignment - 1) & ~(iter->alignment - 1);
      *stop = ly_variant_read_offset (iter->data + iter->offsets_start + iter->index * iter->offset_size,
                                      iter->offset_size);
      if (*start > *stop || *stop > iter->offsets_start)
        return FALSE;
    }
  iter->index++;
  return TRUE;
}

/* After the last element: it ended where the framing offsets begin. */
static inline gboolean
ly_variant_array_iter_at_end (const LyVariantArrayIter *iter)
{
  return iter->index == iter->n_elements &&
         (iter->fixed_size != 0 || iter->n_elements == 0 || iter->previous_end == iter->offsets_start);
}

/* Keeping type information alive ----------------------------------------------
 *
 * GLib frees a container type's GVariantTypeInfo when its last value goes,
 * and builds it again (allocations, a tuple's member offsets, an insertion
 * into and a removal from a global table, under a global lock) for the
 * next value of that type: for values made and dropped one at a time (a
 * conversion, a message received while nothing else is queued), once per
 * value.  Holding one value of each type recently made in this thread
 * keeps the information alive.  A value of zero bytes: GLib makes a
 * fixed-size one as large as it must be (all zero). */

#define LY_VARIANT_KEPT_TYPES 8

typedef struct
{
  GVariant *values[LY_VARIANT_KEPT_TYPES];
  guint     next;
} LyVariantKeptTypes;

static inline void
ly_variant_kept_types_free (gpointer data)
{
  LyVariantKeptTypes *kept = data;

  for (guint i = 0; i < LY_VARIANT_KEPT_TYPES; i++)
    g_clear_pointer (&kept->values[i], g_variant_unref);
  g_free (kept);
}

/* Keeps the type information of @type (a valid definite type string,
 * maybe followed by more) alive in this thread, among the last
 * LY_VARIANT_KEPT_TYPES types it was asked for.  Basic types and
 * variants need nothing: GLib's are static. */
static inline void
ly_variant_keep_type (const char *type)
{
  static GPrivate kept_key = G_PRIVATE_INIT (ly_variant_kept_types_free);
  LyVariantKeptTypes *kept;
  gsize alignment, fixed_size, length;
  const char *end;
  guint slot;

  if (*type != 'a' && *type != 'm' && *type != '(' && *type != '{')
    return;

  ly_variant_type_info (type, &alignment, &fixed_size, &end);
  length = end - type;

  if ((kept = g_private_get (&kept_key)) == NULL)
    g_private_set (&kept_key, (kept = g_new0 (LyVariantKeptTypes, 1)));

  for (guint i = 0; i < LY_VARIANT_KEPT_TYPES && kept->values[i] != NULL; i++)
    {
      const char *known = g_variant_get_type_string (kept->values[i]);

      if (strncmp (known, type, length) == 0 && known[length] == '\0')
        return;
    }

  slot = kept->next++ % LY_VARIANT_KEPT_TYPES;
  g_clear_pointer (&kept->values[slot], g_variant_unref);
  {
    g_autofree char *copy = g_strndup (type, length);

    kept->values[slot] = g_variant_ref_sink (g_variant_new_from_data (LY_VARIANT_TYPE_VALID (copy), NULL, 0,
                                                                      FALSE, NULL, NULL));
  }
}

G_END_DECLS

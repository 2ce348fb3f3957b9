/* ly-python-serialise.c: Python values straight to GVariant's serialised
 * form, and back
 *
 * Building a GVariant tree node by node costs an allocation and a type
 * lookup (under GLib's global lock) per node, and serialising the tree
 * costs as much again; reading children with g_variant_get_child_value()
 * allocates one GVariant each.  Here a value is written in one pass into
 * one buffer, in the GVariant serialisation format (the format of
 * GVariant's documentation, in normal form: zero padding, the smallest
 * framing offsets), and read back with bounds checked at every step.
 * Anything the reader does not find in normal form it leaves to GLib's
 * own accessors (lypy_parse() says so), so its results are GLib's.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "ly-python-private.h"

#include <string.h>

#include "ly-variant-type-private.h"

/* Type strings: ly-variant-type-private.h ---------------------------------- */

#define type_info ly_variant_type_info
#define offset_size_of ly_variant_offset_size
#define read_offset ly_variant_read_offset

/* The buffer ------------------------------------------------------------------ */

typedef struct
{
  guint8 *data;
  gsize   length;
  gsize   allocated;
} Buffer;

static inline guint8 *
buffer_grow (Buffer *buffer,
             gsize   n)
{
  if (buffer->length + n > buffer->allocated)
    {
      buffer->allocated = MAX (buffer->allocated * 2, buffer->length + n);
      buffer->allocated = MAX (buffer->allocated, 256);
      buffer->data = g_realloc (buffer->data, buffer->allocated);
    }
  buffer->length += n;
  return buffer->data + buffer->length - n;
}

static inline void
buffer_append (Buffer        *buffer,
               gconstpointer  data,
               gsize          n)
{
  if (n > 0)
    memcpy (buffer_grow (buffer, n), data, n);
}

/* Offsets are relative to a container's start, which is aligned as the
 * container is: aligning the absolute length aligns the relative one. */
static inline void
buffer_pad (Buffer *buffer,
            gsize   alignment)
{
  gsize padding = (alignment - (buffer->length & (alignment - 1))) & (alignment - 1);

  if (padding > 0)
    memset (buffer_grow (buffer, padding), 0, padding);
}

/* Appends @n framing offsets (in the order given) after a body of
 * @body bytes: the smallest size that addresses the whole container. */
static void
buffer_append_offsets (Buffer      *buffer,
                       gsize        body,
                       const gsize *offsets,
                       gsize        n)
{
  gsize size;

  if (n == 0)
    return;
  if (body + n <= G_MAXUINT8)
    size = 1;
  else if (body + 2 * n <= G_MAXUINT16)
    size = 2;
  else if (body + 4 * n <= G_MAXUINT32)
    size = 4;
  else
    size = 8;

  for (gsize i = 0; i < n; i++)
    {
      guint64 offset = GUINT64_TO_LE (offsets[i]);

      buffer_append (buffer, &offset, size);
    }
}

/* Errors ---------------------------------------------------------------------- */

static gboolean
not_of_type (PyObject   *value,
             const char *type,
             const char *reason)
{
  const char *end = NULL;
  g_autofree char *type_string = NULL;

  g_variant_type_string_scan (type, NULL, &end);
  type_string = g_strndup (type, end - type);
  PyErr_Format (PyExc_TypeError, "%.200R is not a value of GVariant type %s%s%s",
                value, type_string, reason != NULL ? ": " : "", reason != NULL ? reason : "");
  return FALSE;
}

/* Inferring a type --------------------------------------------------------------- */

static gboolean infer_type (PyObject *value,
                            GString  *type,
                            int       depth);

static gboolean
same_kind (PyObject     *list,
           PyTypeObject *kind)
{
  for (Py_ssize_t i = 0; i < PyList_GET_SIZE (list); i++)
    if (Py_TYPE (PyList_GET_ITEM (list, i)) != kind)
      return FALSE;
  return TRUE;
}

static gboolean
fits_int64 (PyObject *value)
{
  int overflow;

  PyLong_AsLongLongAndOverflow (value, &overflow);
  return overflow == 0;
}

/* 'aT' when every item has the type T, else 'av' */
static gboolean
infer_list_type (PyObject *list,
                 GString  *type,
                 int       depth)
{
  Py_ssize_t n = PyList_GET_SIZE (list);
  gsize start = type->len;
  g_autoptr(GString) other = NULL;

  g_string_append_c (type, 'a');
  if (n == 0)
    {
      g_string_append_c (type, 'v');
      return TRUE;
    }

  /* the common homogeneous lists, without a type per item */
  if (Py_TYPE (PyList_GET_ITEM (list, 0)) == &PyUnicode_Type && same_kind (list, &PyUnicode_Type))
    {
      g_string_append_c (type, 's');
      return TRUE;
    }
  if (Py_TYPE (PyList_GET_ITEM (list, 0)) == &PyFloat_Type && same_kind (list, &PyFloat_Type))
    {
      g_string_append_c (type, 'd');
      return TRUE;
    }
  if (Py_TYPE (PyList_GET_ITEM (list, 0)) == &PyLong_Type && same_kind (list, &PyLong_Type))
    {
      gboolean all_int64 = TRUE;

      for (Py_ssize_t i = 0; all_int64 && i < n; i++)
        all_int64 = fits_int64 (PyList_GET_ITEM (list, i));
      if (all_int64)
        {
          g_string_append_c (type, 'x');
          return TRUE;
        }
    }

  if (!infer_type (PyList_GET_ITEM (list, 0), type, depth + 1))
    return FALSE;
  other = g_string_new (NULL);
  for (Py_ssize_t i = 1; i < n; i++)
    {
      g_string_truncate (other, 0);
      if (!infer_type (PyList_GET_ITEM (list, i), other, depth + 1))
        return FALSE;
      if (other->len != type->len - start - 1 || memcmp (other->str, type->str + start + 1, other->len) != 0)
        {
          g_string_truncate (type, start);
          g_string_append (type, "av");
          return TRUE;
        }
    }
  return TRUE;
}

static gboolean
infer_dict_type (PyObject *dict,
                 GString  *type)
{
  PyObject *key, *item;
  Py_ssize_t position = 0;
  gboolean str_keys = TRUE, int_keys = TRUE;

  while (PyDict_Next (dict, &position, &key, &item))
    {
      str_keys = str_keys && PyUnicode_Check (key);
      int_keys = int_keys && PyLong_Check (key) && !PyBool_Check (key);
    }
  if (!str_keys && !int_keys)
    {
      PyErr_SetString (PyExc_TypeError, "a dict needs keys that are all str or all int");
      return FALSE;
    }
  g_string_append (type, str_keys ? "a{sv}" : "a{xv}");
  return TRUE;
}

/* Appends the type of @value to @type: the README's table. */
static gboolean
infer_type (PyObject *value,
            GString  *type,
            int       depth)
{
  GVariant *variant;

  if (depth > LYPY_MAX_DEPTH)
    {
      PyErr_Format (PyExc_TypeError, "a value nested more than %d levels deep has no GVariant form",
                    LYPY_MAX_DEPTH);
      return FALSE;
    }

  if (value == Py_None)
    g_string_append (type, "mv");
  else if (PyBool_Check (value))
    g_string_append_c (type, 'b');
  else if (PyLong_Check (value))
    {
      int overflow;

      PyLong_AsLongLongAndOverflow (value, &overflow);
      if (overflow > 0)
        {
          PyLong_AsUnsignedLongLong (value);
          if (PyErr_Occurred ())
            overflow = -1;
        }
      if (overflow < 0)
        {
          PyErr_Clear ();
          PyErr_Format (PyExc_OverflowError, "%.100R does not fit in 64 bits", value);
          return FALSE;
        }
      g_string_append_c (type, overflow == 0 ? 'x' : 't');
    }
  else if (PyFloat_Check (value))
    g_string_append_c (type, 'd');
  else if (PyUnicode_Check (value))
    g_string_append_c (type, 's');
  else if (PyBytes_Check (value) || PyByteArray_Check (value) || PyMemoryView_Check (value))
    g_string_append (type, "ay");
  else if (PyTuple_Check (value))
    {
      g_string_append_c (type, '(');
      for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE (value); i++)
        if (!infer_type (PyTuple_GET_ITEM (value, i), type, depth + 1))
          return FALSE;
      g_string_append_c (type, ')');
    }
  else if (PyList_Check (value))
    return infer_list_type (value, type, depth);
  else if (PyDict_Check (value))
    return infer_dict_type (value, type);
  else if ((variant = lypy_peek_variant (value)) != NULL)
    g_string_append (type, g_variant_get_type_string (variant));
  else
    {
      PyErr_Format (PyExc_TypeError,
                    "a %.100s has no GVariant form: send a bool, int, float, str, bytes, None, "
                    "or a tuple, list or dict of those, or a GLib.Variant",
                    Py_TYPE (value)->tp_name);
      return FALSE;
    }
  return TRUE;
}

gboolean
lypy_infer_type (PyObject *value,
                 GString  *type)
{
  return infer_type (value, type, 0);
}

/* Writing --------------------------------------------------------------------- */

static gboolean write_value (Buffer     *buffer,
                             PyObject   *value,
                             const char *type,
                             int         depth);
static gboolean write_items (Buffer      *buffer,
                             PyObject    *value,
                             PyObject   **items,
                             gsize        n_items,
                             const char  *type,
                             int          depth);

static gboolean
write_number (Buffer     *buffer,
              PyObject   *value,
              const char *type)
{
  long long number;
  unsigned long long unsigned_number;
  int overflow = 0;

  if (*type == 'd')
    {
      double real;

      if (!PyFloat_Check (value) && !PyLong_Check (value))
        return not_of_type (value, type, NULL);
      real = PyFloat_AsDouble (value);
      if (real == -1.0 && PyErr_Occurred ())
        return FALSE;
      buffer_append (buffer, &real, 8);
      return TRUE;
    }

  if (!PyLong_Check (value))
    return not_of_type (value, type, NULL);
  if (*type == 'b')
    {
      guint8 truth = PyObject_IsTrue (value);

      buffer_append (buffer, &truth, 1);
      return TRUE;
    }

  number = PyLong_AsLongLongAndOverflow (value, &overflow);
  if (*type == 't')
    {
      if (overflow < 0 || (overflow == 0 && number < 0))
        return not_of_type (value, type, "out of range");
      unsigned_number = overflow == 0 ? (unsigned long long) number : PyLong_AsUnsignedLongLong (value);
      if (unsigned_number == (unsigned long long) -1 && PyErr_Occurred ())
        {
          PyErr_Clear ();
          return not_of_type (value, type, "out of range");
        }
      buffer_append (buffer, &unsigned_number, 8);
      return TRUE;
    }
  if (overflow != 0)
    return not_of_type (value, type, "out of range");

#define WRITE_IN_RANGE(ctype, low, high) \
  G_STMT_START { \
    ctype item = (ctype) number; \
    if (number < (low) || number > (high)) \
      return not_of_type (value, type, "out of range"); \
    buffer_append (buffer, &item, sizeof item); \
    return TRUE; \
  } G_STMT_END

  switch (*type)
    {
    case 'y': WRITE_IN_RANGE (guint8, 0, G_MAXUINT8);
    case 'n': WRITE_IN_RANGE (gint16, G_MININT16, G_MAXINT16);
    case 'q': WRITE_IN_RANGE (guint16, 0, G_MAXUINT16);
    case 'i': case 'h': WRITE_IN_RANGE (gint32, G_MININT32, G_MAXINT32);
    case 'u': WRITE_IN_RANGE (guint32, 0, G_MAXUINT32);
    case 'x': WRITE_IN_RANGE (gint64, G_MININT64, G_MAXINT64);
    default: g_assert_not_reached ();
    }
#undef WRITE_IN_RANGE
}

static gboolean
write_string (Buffer     *buffer,
              PyObject   *value,
              const char *type)
{
  Py_ssize_t length;
  const char *text;

  if (!PyUnicode_Check (value))
    return not_of_type (value, type, NULL);
  if ((text = PyUnicode_AsUTF8AndSize (value, &length)) == NULL)
    return FALSE;
  if (memchr (text, '\0', length) != NULL)
    return not_of_type (value, type, "a GVariant string cannot hold a NUL character");
  if (*type == 'o' && !g_variant_is_object_path (text))
    return not_of_type (value, type, "not a D-Bus object path");
  if (*type == 'g' && !g_variant_is_signature (text))
    return not_of_type (value, type, "not a D-Bus signature");
  buffer_append (buffer, text, length + 1);
  return TRUE;
}

static gboolean
write_bytes (Buffer   *buffer,
             PyObject *value)
{
  Py_buffer view;

  if (PyBytes_Check (value))
    {
      buffer_append (buffer, PyBytes_AS_STRING (value), PyBytes_GET_SIZE (value));
      return TRUE;
    }
  if (PyObject_GetBuffer (value, &view, PyBUF_C_CONTIGUOUS) < 0)
    return FALSE;
  buffer_append (buffer, view.buf, view.len);
  PyBuffer_Release (&view);
  return TRUE;
}

static gboolean
write_variant (Buffer   *buffer,
               PyObject *value,
               int       depth)
{
  GVariant *variant = lypy_peek_variant (value);
  g_autoptr(GString) type = NULL;

  if (variant != NULL)
    {
      buffer_append (buffer, g_variant_get_data (variant), g_variant_get_size (variant));
      buffer_append (buffer, "", 1);
      buffer_append (buffer, g_variant_get_type_string (variant), strlen (g_variant_get_type_string (variant)));
      return TRUE;
    }

  /* the scalars that dict values mostly are: no type to build */
  {
    const char *scalar = NULL;
    PyTypeObject *kind = Py_TYPE (value);

    if (kind == &PyUnicode_Type)
      scalar = "s";
    else if (kind == &PyLong_Type && fits_int64 (value))
      scalar = "x";
    else if (kind == &PyBool_Type)
      scalar = "b";
    else if (kind == &PyFloat_Type)
      scalar = "d";
    else if (kind == &PyBytes_Type)
      scalar = "ay";
    if (scalar != NULL)
      {
        if (!write_value (buffer, value, scalar, depth + 1))
          return FALSE;
        buffer_append (buffer, "", 1);
        buffer_append (buffer, scalar, strlen (scalar));
        return TRUE;
      }
  }

  type = g_string_sized_new (16);
  if (!infer_type (value, type, depth + 1) || !write_value (buffer, value, type->str, depth + 1))
    return FALSE;
  buffer_append (buffer, "", 1);
  buffer_append (buffer, type->str, type->len);
  return TRUE;
}

/* Offsets of up to this many items live on the stack */
#define FEW 16

typedef struct
{
  gsize  few[FEW];
  gsize *items;
  gsize  n;
  gsize  allocated;
} Offsets;

static void
offsets_add (Offsets *offsets,
             gsize    offset)
{
  if (offsets->items == NULL)
    offsets->items = offsets->few, offsets->allocated = FEW;
  if (offsets->n == offsets->allocated)
    {
      gsize *items = g_new (gsize, offsets->allocated * 2);

      memcpy (items, offsets->items, offsets->n * sizeof (gsize));
      if (offsets->items != offsets->few)
        g_free (offsets->items);
      offsets->items = items;
      offsets->allocated *= 2;
    }
  offsets->items[offsets->n++] = offset;
}

static void
offsets_clear (Offsets *offsets)
{
  if (offsets->items != offsets->few)
    g_free (offsets->items);
}

G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC (Offsets, offsets_clear)

/* A dict entry: key and value as @layout says ('{KV}'). */
static gboolean
write_entry (Buffer                *buffer,
             PyObject             **entry,
             const LyVariantLayout *layout,
             int                    depth)
{
  gsize start = buffer->length, key_end;

  if (!write_value (buffer, entry[0], layout->items[0].type, depth + 1))
    return FALSE;
  key_end = buffer->length - start;
  buffer_pad (buffer, layout->items[1].alignment);
  if (!write_value (buffer, entry[1], layout->items[1].type, depth + 1))
    return FALSE;
  if (layout->fixed_size != 0)
    buffer_pad (buffer, layout->alignment);
  else if (layout->items[0].fixed_size == 0)
    buffer_append_offsets (buffer, buffer->length - start, &key_end, 1);
  return TRUE;
}

static gboolean
write_array (Buffer     *buffer,
             PyObject   *value,
             const char *type,
             int         depth)
{
  const char *element = type + 1, *end;
  gsize alignment, fixed_size, start = buffer->length;
  g_auto(Offsets) offsets = { 0 };

  type_info (element, &alignment, &fixed_size, &end);

  if (*element == 'y' && (PyBytes_Check (value) || PyByteArray_Check (value) || PyMemoryView_Check (value)))
    return write_bytes (buffer, value);

  if (*element == '{')
    {
      PyObject *entry[2];
      Py_ssize_t position = 0;
      LyVariantLayout layout;

      if (!PyDict_Check (value))
        return not_of_type (value, type, "a dict is needed");
      ly_variant_layout_init (&layout, element);      /* two items: always fits */
      while (PyDict_Next (value, &position, &entry[0], &entry[1]))
        {
          gboolean written;

          buffer_pad (buffer, alignment);
          /* held: a __bool__ or __float__ of a value may change the dict */
          Py_INCREF (entry[0]);
          Py_INCREF (entry[1]);
          written = write_entry (buffer, entry, &layout, depth + 1);
          Py_DECREF (entry[0]);
          Py_DECREF (entry[1]);
          if (!written)
            return FALSE;
          if (fixed_size == 0)
            offsets_add (&offsets, buffer->length - start);
        }
    }
  else
    {
      g_autoptr(PyObject) items = NULL;
      Py_ssize_t n;

      if (!PyList_Check (value) && !PyTuple_Check (value))
        return not_of_type (value, type, "a list or a tuple is needed");
      items = PySequence_Fast (value, "");
      n = PySequence_Fast_GET_SIZE (items);
      for (Py_ssize_t i = 0; i < n; i++)
        {
          g_autoptr(PyObject) item = NULL;

          /* held, and looked for again: a __bool__ or __float__ of an
           * item may change the list */
          if (i >= PySequence_Fast_GET_SIZE (items))
            return not_of_type (value, type, "the list changed while it was converted");
          item = Py_NewRef (PySequence_Fast_GET_ITEM (items, i));
          buffer_pad (buffer, alignment);
          if (!write_value (buffer, item, element, depth + 1))
            return FALSE;
          if (fixed_size == 0)
            offsets_add (&offsets, buffer->length - start);
        }
    }

  buffer_append_offsets (buffer, buffer->length - start, offsets.items, offsets.n);
  return TRUE;
}

/* The items of a tuple or a dict entry of @type (@value is for errors) */
static gboolean
write_items (Buffer      *buffer,
             PyObject    *value,
             PyObject   **items,
             gsize        n_items,
             const char  *type,
             int          depth)
{
  g_auto(Offsets) offsets = { 0 };
  gsize alignment, fixed_size, start = buffer->length, n = 0;
  const char *item_type, *end;

  type_info (type, &alignment, &fixed_size, &end);
  for (item_type = type + 1; *item_type != ')' && *item_type != '}'; n++)
    {
      gsize item_alignment, item_fixed;
      const char *next;

      type_info (item_type, &item_alignment, &item_fixed, &next);
      if (n >= n_items)
        return not_of_type (value, type, "the number of items differs");
      buffer_pad (buffer, item_alignment);
      {
        g_autoptr(PyObject) held = Py_NewRef (items[n]);

        if (!write_value (buffer, held, item_type, depth + 1))
          return FALSE;
      }
      if (item_fixed == 0 && *next != ')' && *next != '}')
        offsets_add (&offsets, buffer->length - start);
      item_type = next;
    }
  if (n != n_items)
    return not_of_type (value, type, "the number of items differs");

  if (n == 0)
    buffer_append (buffer, "", 1);     /* the unit tuple */
  else if (fixed_size != 0)
    buffer_pad (buffer, alignment);
  else
    {
      /* framing offsets go in reverse order */
      for (gsize i = 0; i < offsets.n / 2; i++)
        {
          gsize swap = offsets.items[i];

          offsets.items[i] = offsets.items[offsets.n - 1 - i];
          offsets.items[offsets.n - 1 - i] = swap;
        }
      buffer_append_offsets (buffer, buffer->length - start, offsets.items, offsets.n);
    }
  return TRUE;
}

static gboolean
write_tuple (Buffer     *buffer,
             PyObject   *value,
             const char *type,
             int         depth)
{
  g_autoptr(PyObject) items = NULL;

  if (!PyTuple_Check (value) && !PyList_Check (value))
    return not_of_type (value, type, "a tuple is needed");
  items = PySequence_Fast (value, "");
  return write_items (buffer, value, PySequence_Fast_ITEMS (items), PySequence_Fast_GET_SIZE (items),
                      type, depth);
}

static gboolean
write_value (Buffer     *buffer,
             PyObject   *value,
             const char *type,
             int         depth)
{
  GVariant *variant = lypy_peek_variant (value);

  if (depth > LYPY_MAX_DEPTH)
    {
      PyErr_Format (PyExc_TypeError, "a value nested more than %d levels deep has no GVariant form",
                    LYPY_MAX_DEPTH);
      return FALSE;
    }

  if (variant != NULL && *type != 'v')
    {
      const char *end = NULL;

      g_variant_type_string_scan (type, NULL, &end);
      if (strlen (g_variant_get_type_string (variant)) != (gsize) (end - type) ||
          strncmp (g_variant_get_type_string (variant), type, end - type) != 0)
        return not_of_type (value, type, g_variant_get_type_string (variant));
      buffer_append (buffer, g_variant_get_data (variant), g_variant_get_size (variant));
      return TRUE;
    }

  switch (*type)
    {
    case 'b': case 'y': case 'n': case 'q': case 'i': case 'u':
    case 'x': case 't': case 'h': case 'd':
      return write_number (buffer, value, type);
    case 's': case 'o': case 'g':
      return write_string (buffer, value, type);
    case 'v':
      return write_variant (buffer, value, depth);
    case 'm':
      {
        gsize alignment, fixed_size;
        const char *end;

        if (value == Py_None)
          return TRUE;
        type_info (type + 1, &alignment, &fixed_size, &end);
        if (!write_value (buffer, value, type + 1, depth + 1))
          return FALSE;
        if (fixed_size == 0)
          buffer_append (buffer, "", 1);
        return TRUE;
      }
    case 'a':
      return write_array (buffer, value, type, depth);
    case '(': case '{':
      return write_tuple (buffer, value, type, depth);
    default:
      return not_of_type (value, type, "the type is not definite: give a GLib.Variant");
    }
}

/**
 * lypy_serialise:
 * @value: a Python value
 * @type: a definite GVariant type string
 *
 * Returns: (transfer full): a GVariant of @type in normal form, or
 *   %NULL with a Python exception set
 */
GVariant *
lypy_serialise (PyObject   *value,
                const char *type)
{
  Buffer buffer = { 0 };

  if (!write_value (&buffer, value, type, 0))
    {
      g_free (buffer.data);
      return NULL;
    }
  ly_variant_keep_type (type);
  return g_variant_ref_sink (g_variant_new_from_data (LY_VARIANT_TYPE_VALID (type), buffer.data, buffer.length,
                                                      TRUE, g_free, buffer.data));
}

/* Reading ------------------------------------------------------------------- */

/* NULL without an exception: not normal form here, let GLib read it */
static PyObject *read_value (const guint8 *data,
                             gsize         size,
                             const char   *type,
                             int           depth);

static PyObject *
read_fixed (const guint8 *data,
            char          code)
{
  union { gint16 n; guint16 q; gint32 i; guint32 u; gint64 x; guint64 t; double d; } item;

  switch (code)
    {
    case 'b': return PyBool_FromLong (data[0] != 0);
    case 'y': return PyLong_FromLong (data[0]);
    case 'n': memcpy (&item.n, data, 2); return PyLong_FromLong (item.n);
    case 'q': memcpy (&item.q, data, 2); return PyLong_FromLong (item.q);
    case 'i': case 'h': memcpy (&item.i, data, 4); return PyLong_FromLong (item.i);
    case 'u': memcpy (&item.u, data, 4); return PyLong_FromUnsignedLong (item.u);
    case 'x': memcpy (&item.x, data, 8); return PyLong_FromLongLong (item.x);
    case 't': memcpy (&item.t, data, 8); return PyLong_FromUnsignedLongLong (item.t);
    default: memcpy (&item.d, data, 8); return PyFloat_FromDouble (item.d);
    }
}

static PyObject *
read_string (const guint8 *data,
             gsize         size,
             char          code)
{
  if (size == 0 || data[size - 1] != '\0' || memchr (data, '\0', size - 1) != NULL)
    return NULL;
  if ((code == 'o' && !g_variant_is_object_path ((const char *) data)) ||
      (code == 'g' && !g_variant_is_signature ((const char *) data)))
    return NULL;
  return PyUnicode_DecodeUTF8 ((const char *) data, size - 1, "strict");
}

static PyObject *
read_variant (const guint8 *data,
              gsize         size,
              int           depth)
{
  gsize zero = size;
  const char *type, *limit, *end = NULL;

  while (zero > 0 && data[zero - 1] != '\0')
    zero--;
  if (zero == 0)
    return NULL;

  /* one complete definite type, up to the end of the data: type
   * strings are walked by their structure, no NUL needed */
  type = (const char *) data + zero;
  limit = (const char *) data + size;
  if (limit - type == 1 && *type != '\0' && strchr ("bynqiuxthdsog", *type) != NULL)
    return read_value (data, zero - 1, type, depth + 1);    /* the usual child */
  if (type == limit || !g_variant_type_string_scan (type, limit, &end) || end != limit)
    return NULL;
  for (const char *c = type; c < limit; c++)
    if (*c == '*' || *c == '?' || *c == 'r')
      return NULL;
  return read_value (data, zero - 1, type, depth + 1);
}

/* Dict keys come again and again (every event has its 'type' and
 * 'user_id'): the str objects of short keys are kept, with their hash,
 * in a small table (the GIL guards it).  A key not found is decoded. */
#define KEY_CACHE_SIZE 512
#define KEY_CACHE_MAX_LENGTH 48

static PyObject *key_cache[KEY_CACHE_SIZE];

static PyObject *
read_key_string (const guint8 *data,
                 gsize         size)
{
  PyObject **slot, *key;
  guint hash = 5381;
  Py_ssize_t length;
  const char *cached;

  if (size == 0 || size > KEY_CACHE_MAX_LENGTH + 1)
    return read_string (data, size, 's');
  for (gsize i = 0; i + 1 < size; i++)
    hash = hash * 33 + data[i];
  slot = &key_cache[hash % KEY_CACHE_SIZE];
  if (*slot != NULL && (cached = PyUnicode_AsUTF8AndSize (*slot, &length)) != NULL &&
      (gsize) length == size - 1 && memcmp (cached, data, size) == 0)
    return Py_NewRef (*slot);

  if ((key = read_string (data, size, 's')) == NULL)
    return NULL;
  Py_XSETREF (*slot, Py_NewRef (key));
  return key;
}

/* A dict entry laid out as @entry ('{KV}'), added to @dict: no tuple
 * between. */
static gboolean
read_entry_into (PyObject              *dict,
                 const guint8          *data,
                 gsize                  size,
                 const LyVariantLayout *entry,
                 int                    depth)
{
  const LyVariantItem *key_item = &entry->items[0], *value_item = &entry->items[1];
  gsize key_end, value_start, value_end = size;
  g_autoptr(PyObject) key = NULL;
  g_autoptr(PyObject) value = NULL;

  if (entry->fixed_size != 0 && size != entry->fixed_size)
    return FALSE;

  if (key_item->fixed_size != 0)
    key_end = key_item->fixed_size;
  else
    {
      gsize offset_size = offset_size_of (size);

      if (size < offset_size || ly_variant_framed_size (size - offset_size, 1) != size)
        return FALSE;
      value_end = size - offset_size;
      key_end = read_offset (data + value_end, offset_size);
    }
  value_start = (key_end + value_item->alignment - 1) & ~(value_item->alignment - 1);
  if (value_item->fixed_size != 0)
    value_end = value_start + value_item->fixed_size;
  if (key_end > value_end || value_start > value_end || value_end > size)
    return FALSE;

  key = *key_item->type == 's' ? read_key_string (data, key_end)
                                : read_value (data, key_end, key_item->type, depth + 1);
  value = key != NULL ? read_value (data + value_start, value_end - value_start, value_item->type, depth + 1) : NULL;
  return value != NULL && PyDict_SetItem (dict, key, value) == 0;
}

static PyObject *
read_array (const guint8 *data,
            gsize         size,
            const char   *type,
            int           depth)
{
  const char *element = type + 1, *end;
  gsize alignment, fixed_size, start, stop;
  gboolean is_dict = *element == '{', basic;
  LyVariantArrayIter iter;
  LyVariantLayout entry;
  PyObject *result;

  type_info (element, &alignment, &fixed_size, &end);
  if (*element == 'y')
    return PyBytes_FromStringAndSize ((const char *) data, size);
  if (!ly_variant_array_iter_init (&iter, data, size, alignment, fixed_size))
    return NULL;      /* not normal form: GLib reads it */

  basic = end == element + 1 && fixed_size != 0;
  if (is_dict)
    ly_variant_layout_init (&entry, element);    /* two items: always fits */
  result = is_dict ? PyDict_New () : PyList_New (iter.n_elements);
  while (result != NULL && ly_variant_array_iter_next (&iter, &start, &stop))
    {
      gsize index = iter.index - 1;
      PyObject *item;

      iter.previous_end = stop;
      if (is_dict)
        {
          if (!read_entry_into (result, data + start, stop - start, &entry, depth + 1))
            g_clear_pointer (&result, Py_DecRef);
          continue;
        }
      item = basic ? read_fixed (data + start, *element)
                   : read_value (data + start, stop - start, element, depth + 1);
      if (item == NULL)
        g_clear_pointer (&result, Py_DecRef);
      else
        PyList_SET_ITEM (result, index, item);
    }
  if (result != NULL && !ly_variant_array_iter_at_end (&iter))
    g_clear_pointer (&result, Py_DecRef);
  return result;
}

static PyObject *
read_tuple (const guint8 *data,
            gsize         size,
            const char   *type,
            int           depth)
{
  gsize alignment, fixed_size, offset_size = offset_size_of (size), framing = size, position = 0;
  const char *item_type, *end;
  g_autoptr(PyObject) items = PyList_New (0);

  type_info (type, &alignment, &fixed_size, &end);
  if (fixed_size != 0 && size != fixed_size)
    return NULL;
  if (type[1] == ')')
    return size == 1 && data[0] == '\0' ? PyTuple_New (0) : NULL;

  for (item_type = type + 1; *item_type != ')' && *item_type != '}';)
    {
      gsize item_alignment, item_fixed, stop;
      const char *next;
      g_autoptr(PyObject) item = NULL;

      type_info (item_type, &item_alignment, &item_fixed, &next);
      position = (position + item_alignment - 1) & ~(item_alignment - 1);
      if (item_fixed != 0)
        stop = position + item_fixed;
      else if (*next == ')' || *next == '}')
        stop = fixed_size != 0 ? size : framing;
      else
        {
          if (framing < offset_size)
            return NULL;
          framing -= offset_size;
          stop = read_offset (data + framing, offset_size);
        }
      if (position > stop || stop > framing)
        return NULL;
      if ((item = read_value (data + position, stop - position, item_type, depth + 1)) == NULL ||
          PyList_Append (items, item) < 0)
        return NULL;
      position = stop;
      item_type = next;
    }
  if (fixed_size == 0 &&
      (position != framing || ly_variant_framed_size (framing, (size - framing) / MAX (offset_size, 1)) != size))
    return NULL;      /* not normal form: GLib reads it */
  return PyList_AsTuple (items);
}

static PyObject *
read_value (const guint8 *data,
            gsize         size,
            const char   *type,
            int           depth)
{
  if (depth > 2 * LYPY_MAX_DEPTH + 2)
    return NULL;

  switch (*type)
    {
    case 'b': case 'y': case 'n': case 'q': case 'i': case 'u':
    case 'x': case 't': case 'h': case 'd':
      {
        gsize alignment, fixed_size;
        const char *end;

        type_info (type, &alignment, &fixed_size, &end);
        return size == fixed_size ? read_fixed (data, *type) : NULL;
      }
    case 's': case 'o': case 'g':
      return read_string (data, size, *type);
    case 'v':
      return read_variant (data, size, depth);
    case 'm':
      {
        gsize alignment, fixed_size;
        const char *end;

        if (size == 0)
          Py_RETURN_NONE;
        type_info (type + 1, &alignment, &fixed_size, &end);
        if (fixed_size != 0)
          return size == fixed_size ? read_value (data, size, type + 1, depth + 1) : NULL;
        return data[size - 1] == '\0' ? read_value (data, size - 1, type + 1, depth + 1) : NULL;
      }
    case 'a':
      return read_array (data, size, type, depth);
    case '(': case '{':
      return read_tuple (data, size, type, depth);
    default:
      return NULL;
    }
}

/**
 * lypy_parse:
 * @variant: a GVariant
 *
 * Returns: (transfer full) (nullable): the Python value of @variant;
 *   %NULL without an exception when GLib's accessors must read it
 *   (it is not in normal form), %NULL with one on failure
 */
PyObject *
lypy_parse (GVariant *variant)
{
  gsize size = g_variant_get_size (variant);
  const guint8 *data = g_variant_get_data (variant);
  PyObject *value;

  /* GLib gives no data for a fixed-size value made from bytes of
   * another size: its accessors read zeros, which its normal form says */
  if (data == NULL && size > 0)
    return NULL;
  value = read_value (size > 0 ? data : (const guint8 *) "", size, g_variant_get_type_string (variant), 0);

  if (value == NULL && PyErr_Occurred ())
    {
      /* a memory error is real; a decoding error means GLib reads it */
      if (!PyErr_ExceptionMatches (PyExc_UnicodeDecodeError))
        return NULL;
      PyErr_Clear ();
    }
  return value;
}

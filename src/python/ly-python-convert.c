/* ly-python-convert.c: Python values to GVariant and back, in C
 *
 * The mapping is the README's table: bool 'b', int 'x' ('t' above the
 * int64 range), float 'd', str 's', bytes-like 'ay', None '@mv nothing',
 * tuple '(…)', list 'aT' when every item has the type T else 'av', dict
 * 'a{sv}' ('a{xv}' for int keys), a GLib.Variant as it is; with a type
 * (a channel's message-type) the value is built as that type.
 *
 * GLib.Variant objects are PyGObject's foreign structs: a PyGPointer
 * whose pointer is the GVariant, released with g_variant_unref() when
 * the wrapper goes.  lypy_convert_init() checks that layout on the
 * running PyGObject before anything relies on it.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "ly-python-private.h"

#define NO_IMPORT_PYGOBJECT
#include <pygobject.h>
#include <string.h>

/* Deeper values than GVariant's own limit cannot be serialised. */
#define MAX_DEPTH 64

/* bytes objects at least this large are referenced, not copied */
#define BYTES_BY_REFERENCE 4096

/* gi.Struct: a PyGPointer followed by this flag (pygi-struct.h) */
typedef struct
{
  PyGPointer base;
  gboolean   free_on_dealloc;
} LyPyStruct;

static PyTypeObject *variant_class;   /* GLib.Variant */

/* GLib.Variant ---------------------------------------------------------- */

GVariant *
lypy_peek_variant (PyObject *object)
{
  if (variant_class == NULL || !PyObject_TypeCheck (object, variant_class))
    return NULL;
  return ((PyGPointer *) object)->pointer;
}

/* Takes the reference. */
PyObject *
lypy_wrap_variant (GVariant *variant)
{
  LyPyStruct *self = (LyPyStruct *) variant_class->tp_alloc (variant_class, 0);

  if (self == NULL)
    {
      g_variant_unref (variant);
      return NULL;
    }
  self->base.pointer = variant;
  self->base.gtype = G_TYPE_VARIANT;
  self->free_on_dealloc = FALSE;
  return (PyObject *) self;
}

static void
note_released (gpointer data)
{
  *(gboolean *) data = TRUE;
}

/* The layout and the release of GLib.Variant as this module assumes
 * them: a wrapper made by PyGObject has its GVariant where PyGPointer
 * says, and dropping a wrapper made here releases its reference. */
static gboolean
check_variant_layout (PyObject *glib)
{
  static const char probe_text[] = "ly-probe";
  g_autoptr(PyObject) class = PyObject_GetAttrString (glib, "Variant");
  g_autoptr(PyObject) probe = NULL;
  g_autoptr(PyObject) wrapper = NULL;
  gboolean released = FALSE;
  GVariant *inner;
  GBytes *bytes;

  if (class == NULL || !PyType_Check (class))
    return FALSE;
  if (((PyTypeObject *) class)->tp_basicsize < (Py_ssize_t) sizeof (LyPyStruct))
    return FALSE;
  variant_class = (PyTypeObject *) g_steal_pointer (&class);

  probe = PyObject_CallMethod ((PyObject *) variant_class, "new_string", "s", probe_text);
  if (probe == NULL)
    return FALSE;
  inner = lypy_peek_variant (probe);
  if (inner == NULL || ((PyGPointer *) probe)->gtype != G_TYPE_VARIANT ||
      !g_variant_is_of_type (inner, G_VARIANT_TYPE_STRING) ||
      strcmp (g_variant_get_string (inner, NULL), probe_text) != 0)
    return FALSE;

  bytes = g_bytes_new_with_free_func (probe_text, sizeof probe_text, note_released, &released);
  wrapper = lypy_wrap_variant (g_variant_ref_sink (g_variant_new_from_bytes (G_VARIANT_TYPE_BYTESTRING,
                                                                             bytes, TRUE)));
  g_bytes_unref (bytes);
  if (wrapper == NULL)
    return FALSE;
  g_clear_pointer (&wrapper, Py_DecRef);
  return released;
}

gboolean
lypy_convert_init (PyObject *module)
{
  g_autoptr(PyObject) gi = PyImport_ImportModule ("gi");
  g_autoptr(PyObject) result = NULL;
  g_autoptr(PyObject) repository = NULL;
  g_autoptr(PyObject) glib = NULL;

  if (gi == NULL)
    return FALSE;
  result = PyObject_CallMethod (gi, "require_version", "ss", "GLib", "2.0");
  if (result == NULL)
    return FALSE;
  repository = PyImport_ImportModule ("gi.repository.GLib");
  if (repository == NULL)
    return FALSE;
  glib = g_steal_pointer (&repository);

  if (!check_variant_layout (glib))
    {
      if (!PyErr_Occurred ())
        PyErr_SetString (PyExc_ImportError,
                         "this PyGObject lays out GLib.Variant differently: the Ly override falls back to Python");
      return FALSE;
    }
  return TRUE;
}

gboolean
lypy_is_awaitable (PyObject *object)
{
  PyAsyncMethods *async = Py_TYPE (object)->tp_as_async;

  return PyCoro_CheckExact (object) || (async != NULL && async->am_await != NULL);
}

/* Errors ---------------------------------------------------------------- */

static GVariant *
not_of_type (PyObject           *value,
             const GVariantType *type,
             const char         *reason)
{
  g_autofree char *type_string = g_variant_type_dup_string (type);

  PyErr_Format (PyExc_TypeError, "%.200R is not a value of GVariant type %s%s%s",
                value, type_string, reason != NULL ? ": " : "", reason != NULL ? reason : "");
  return NULL;
}

static GVariant *
too_deep (void)
{
  PyErr_Format (PyExc_TypeError, "a value nested more than %d levels deep has no GVariant form", MAX_DEPTH);
  return NULL;
}

/* Leaves: what both ways of converting share ------------------------------ */

static GVariant *
string_variant (PyObject           *value,
                const GVariantType *type)
{
  Py_ssize_t length;
  const char *text = PyUnicode_AsUTF8AndSize (value, &length);
  char *copy;

  if (text == NULL)
    return NULL;
  if (memchr (text, '\0', length) != NULL)
    return not_of_type (value, type, "a GVariant string cannot hold a NUL character");

  if (g_variant_type_equal (type, G_VARIANT_TYPE_OBJECT_PATH) && !g_variant_is_object_path (text))
    return not_of_type (value, type, "not a D-Bus object path");
  if (g_variant_type_equal (type, G_VARIANT_TYPE_SIGNATURE) && !g_variant_is_signature (text))
    return not_of_type (value, type, "not a D-Bus signature");

  /* Python's UTF-8 is valid: no second validation */
  copy = g_malloc (length + 1);
  memcpy (copy, text, length + 1);
  return g_variant_new_from_data (type, copy, length + 1, TRUE, g_free, copy);
}

static void
release_object (gpointer data)
{
  PyGILState_STATE state;

  if (!Py_IsInitialized ())
    return;   /* at exit: the object is gone with the interpreter */
  state = PyGILState_Ensure ();
  Py_DECREF ((PyObject *) data);
  PyGILState_Release (state);
}

static gboolean
is_bytes_like (PyObject *value)
{
  return PyBytes_Check (value) || PyByteArray_Check (value) || PyMemoryView_Check (value);
}

/* bytes are immutable: a large one is referenced where it is */
static GVariant *
bytes_variant (PyObject *value)
{
  Py_buffer view;
  GVariant *variant;

  if (PyBytes_Check (value))
    {
      Py_ssize_t size = PyBytes_GET_SIZE (value);

      if (size < BYTES_BY_REFERENCE)
        return g_variant_new_fixed_array (G_VARIANT_TYPE_BYTE, PyBytes_AS_STRING (value), size, 1);
      Py_INCREF (value);
      return g_variant_new_from_data (G_VARIANT_TYPE_BYTESTRING, PyBytes_AS_STRING (value), size,
                                      TRUE, release_object, value);
    }

  if (PyObject_GetBuffer (value, &view, PyBUF_C_CONTIGUOUS) < 0)
    return NULL;
  variant = g_variant_new_fixed_array (G_VARIANT_TYPE_BYTE, view.buf, view.len, 1);
  PyBuffer_Release (&view);
  return variant;
}

static void
free_children (GVariant   **children,
               Py_ssize_t   n)
{
  for (Py_ssize_t i = 0; i < n; i++)
    g_variant_unref (g_variant_ref_sink (children[i]));
  g_free (children);
}

/* Inferring the type ------------------------------------------------------- */

static GVariant *infer (PyObject *value,
                        int       depth);

static GVariant *
infer_int (PyObject *value)
{
  int overflow;
  long long number = PyLong_AsLongLongAndOverflow (value, &overflow);
  unsigned long long unsigned_number;

  if (number == -1 && PyErr_Occurred ())
    return NULL;
  if (overflow == 0)
    return g_variant_new_int64 (number);

  if (overflow > 0)
    {
      unsigned_number = PyLong_AsUnsignedLongLong (value);
      if (!(unsigned_number == (unsigned long long) -1 && PyErr_Occurred ()))
        return g_variant_new_uint64 (unsigned_number);
      PyErr_Clear ();
    }
  PyErr_Format (PyExc_OverflowError, "%.100R does not fit in 64 bits", value);
  return NULL;
}

/* A list of int, float or bool alone: one fixed array, no node per item. */
static GVariant *
infer_fixed_list (PyObject *list)
{
  Py_ssize_t n = PyList_GET_SIZE (list);
  PyObject *first = PyList_GET_ITEM (list, 0);
  PyTypeObject *kind = Py_TYPE (first);
  GVariant *variant = NULL;

  if (kind != &PyLong_Type && kind != &PyFloat_Type && kind != &PyBool_Type)
    return NULL;
  for (Py_ssize_t i = 1; i < n; i++)
    if (Py_TYPE (PyList_GET_ITEM (list, i)) != kind)
      return NULL;

  if (kind == &PyFloat_Type)
    {
      double *items = g_new (double, n);

      for (Py_ssize_t i = 0; i < n; i++)
        items[i] = PyFloat_AS_DOUBLE (PyList_GET_ITEM (list, i));
      variant = g_variant_new_fixed_array (G_VARIANT_TYPE_DOUBLE, items, n, sizeof (double));
      g_free (items);
    }
  else if (kind == &PyBool_Type)
    {
      guint8 *items = g_new (guint8, n);

      for (Py_ssize_t i = 0; i < n; i++)
        items[i] = PyList_GET_ITEM (list, i) == Py_True;
      variant = g_variant_new_fixed_array (G_VARIANT_TYPE_BOOLEAN, items, n, 1);
      g_free (items);
    }
  else
    {
      gint64 *items = g_new (gint64, n);

      for (Py_ssize_t i = 0; i < n; i++)
        {
          int overflow;

          items[i] = PyLong_AsLongLongAndOverflow (PyList_GET_ITEM (list, i), &overflow);
          if (overflow != 0)
            {
              /* a 't' among them: the general way decides */
              g_free (items);
              return NULL;
            }
        }
      variant = g_variant_new_fixed_array (G_VARIANT_TYPE_INT64, items, n, sizeof (gint64));
      g_free (items);
    }
  return variant;
}

static GVariant *
infer_sequence (PyObject *sequence,
                gboolean  is_tuple,
                int       depth)
{
  Py_ssize_t n = PySequence_Fast_GET_SIZE (sequence);
  PyObject **items = PySequence_Fast_ITEMS (sequence);
  GVariant **children;
  GVariant *variant;
  gboolean same_type = TRUE;

  if (!is_tuple && n == 0)
    return g_variant_new_array (G_VARIANT_TYPE_VARIANT, NULL, 0);
  if (!is_tuple && (variant = infer_fixed_list (sequence)) != NULL)
    return variant;

  children = g_new (GVariant *, MAX (n, 1));
  for (Py_ssize_t i = 0; i < n; i++)
    {
      children[i] = infer (items[i], depth + 1);
      if (children[i] == NULL)
        {
          free_children (children, i);
          return NULL;
        }
      if (i > 0 && same_type)
        same_type = g_variant_type_equal (g_variant_get_type (children[i]),
                                          g_variant_get_type (children[0]));
    }

  if (is_tuple)
    variant = g_variant_new_tuple (children, n);
  else if (same_type)
    variant = g_variant_new_array (NULL, children, n);
  else
    {
      for (Py_ssize_t i = 0; i < n; i++)
        children[i] = g_variant_new_variant (children[i]);
      variant = g_variant_new_array (G_VARIANT_TYPE_VARIANT, children, n);
    }
  g_free (children);
  return variant;
}

static GVariant *
infer_dict (PyObject *dict,
            int       depth)
{
  Py_ssize_t n = PyDict_GET_SIZE (dict), i = 0, position = 0;
  PyObject *key, *item;
  GVariant **entries;
  gboolean str_keys = TRUE, int_keys = TRUE;

  while (PyDict_Next (dict, &position, &key, &item))
    {
      str_keys = str_keys && PyUnicode_Check (key);
      int_keys = int_keys && PyLong_Check (key) && !PyBool_Check (key);
    }
  if (n == 0)
    return g_variant_new_array (G_VARIANT_TYPE ("{sv}"), NULL, 0);
  if (!str_keys && !int_keys)
    {
      PyErr_SetString (PyExc_TypeError, "a dict needs keys that are all str or all int");
      return NULL;
    }

  entries = g_new (GVariant *, n);
  position = 0;
  while (PyDict_Next (dict, &position, &key, &item))
    {
      GVariant *key_variant, *value;

      if (str_keys)
        key_variant = string_variant (key, G_VARIANT_TYPE_STRING);
      else
        {
          int overflow;
          long long number = PyLong_AsLongLongAndOverflow (key, &overflow);

          if (overflow != 0)
            PyErr_Format (PyExc_OverflowError, "the dict key %.100R does not fit in 64 bits", key);
          key_variant = overflow == 0 ? g_variant_new_int64 (number) : NULL;
        }
      value = key_variant != NULL ? infer (item, depth + 1) : NULL;
      if (value == NULL)
        {
          if (key_variant != NULL)
            g_variant_unref (g_variant_ref_sink (key_variant));
          free_children (entries, i);
          return NULL;
        }
      entries[i++] = g_variant_new_dict_entry (key_variant, g_variant_new_variant (value));
    }

  {
    GVariant *variant = g_variant_new_array (NULL, entries, n);

    g_free (entries);
    return variant;
  }
}

/* Returns a floating or a full reference, as g_variant_new_*() do. */
static GVariant *
infer (PyObject *value,
       int       depth)
{
  GVariant *variant;

  if (depth > MAX_DEPTH)
    return too_deep ();

  if (value == Py_None)
    return g_variant_new_maybe (G_VARIANT_TYPE_VARIANT, NULL);
  if (PyBool_Check (value))
    return g_variant_new_boolean (value == Py_True);
  if (PyLong_Check (value))
    return infer_int (value);
  if (PyFloat_Check (value))
    return g_variant_new_double (PyFloat_AS_DOUBLE (value));
  if (PyUnicode_Check (value))
    return string_variant (value, G_VARIANT_TYPE_STRING);
  if (is_bytes_like (value))
    return bytes_variant (value);
  if (PyTuple_Check (value))
    return infer_sequence (value, TRUE, depth);
  if (PyList_Check (value))
    return infer_sequence (value, FALSE, depth);
  if (PyDict_Check (value))
    return infer_dict (value, depth);
  if ((variant = lypy_peek_variant (value)) != NULL)
    return g_variant_ref (variant);

  PyErr_Format (PyExc_TypeError,
                "a %.100s has no GVariant form: send a bool, int, float, str, bytes, None, "
                "or a tuple, list or dict of those, or a GLib.Variant",
                Py_TYPE (value)->tp_name);
  return NULL;
}

/* Building a given type ----------------------------------------------------- */

static GVariant *typed (PyObject           *value,
                        const GVariantType *type,
                        int                 depth);

static GVariant *
typed_number (PyObject           *value,
              const GVariantType *type)
{
  char code = *g_variant_type_peek_string (type);
  long long number;
  unsigned long long unsigned_number = 0;
  int overflow = 0;

  if (code == 'd')
    {
      double real;

      if (!PyFloat_Check (value) && !PyLong_Check (value))
        return not_of_type (value, type, NULL);
      real = PyFloat_AsDouble (value);
      if (real == -1.0 && PyErr_Occurred ())
        return NULL;
      return g_variant_new_double (real);
    }

  if (!PyLong_Check (value))
    return not_of_type (value, type, NULL);
  if (code == 'b')
    return g_variant_new_boolean (PyObject_IsTrue (value));

  number = PyLong_AsLongLongAndOverflow (value, &overflow);
  if (code == 't')
    {
      if (overflow < 0 || (overflow == 0 && number < 0))
        return not_of_type (value, type, "out of range");
      unsigned_number = overflow == 0 ? (unsigned long long) number : PyLong_AsUnsignedLongLong (value);
      if (unsigned_number == (unsigned long long) -1 && PyErr_Occurred ())
        {
          PyErr_Clear ();
          return not_of_type (value, type, "out of range");
        }
      return g_variant_new_uint64 (unsigned_number);
    }
  if (overflow != 0)
    return not_of_type (value, type, "out of range");

  switch (code)
    {
    case 'y':
      if (number < 0 || number > G_MAXUINT8)
        break;
      return g_variant_new_byte (number);
    case 'n':
      if (number < G_MININT16 || number > G_MAXINT16)
        break;
      return g_variant_new_int16 (number);
    case 'q':
      if (number < 0 || number > G_MAXUINT16)
        break;
      return g_variant_new_uint16 (number);
    case 'i':
      if (number < G_MININT32 || number > G_MAXINT32)
        break;
      return g_variant_new_int32 (number);
    case 'h':
      if (number < G_MININT32 || number > G_MAXINT32)
        break;
      return g_variant_new_handle (number);
    case 'u':
      if (number < 0 || number > G_MAXUINT32)
        break;
      return g_variant_new_uint32 (number);
    case 'x':
      return g_variant_new_int64 (number);
    default:
      g_assert_not_reached ();
    }
  return not_of_type (value, type, "out of range");
}

static GVariant *
typed_array (PyObject           *value,
             const GVariantType *type,
             int                 depth)
{
  const GVariantType *element = g_variant_type_element (type);
  g_autoptr(PyObject) items = NULL;
  GVariant **children;
  GVariant *variant;
  Py_ssize_t n, i = 0;

  if (g_variant_type_equal (element, G_VARIANT_TYPE_BYTE) && is_bytes_like (value))
    return bytes_variant (value);

  if (g_variant_type_is_dict_entry (element))
    {
      PyObject *key, *item;
      Py_ssize_t position = 0;

      if (!PyDict_Check (value))
        return not_of_type (value, type, "a dict is needed");
      n = PyDict_GET_SIZE (value);
      children = g_new (GVariant *, MAX (n, 1));
      while (PyDict_Next (value, &position, &key, &item))
        {
          GVariant *k = typed (key, g_variant_type_key (element), depth + 1);
          GVariant *v = k != NULL ? typed (item, g_variant_type_value (element), depth + 1) : NULL;

          if (v == NULL)
            {
              if (k != NULL)
                g_variant_unref (g_variant_ref_sink (k));
              free_children (children, i);
              return NULL;
            }
          children[i++] = g_variant_new_dict_entry (k, v);
        }
    }
  else
    {
      if (!PyList_Check (value) && !PyTuple_Check (value))
        return not_of_type (value, type, "a list or a tuple is needed");
      items = PySequence_Fast (value, "");
      n = PySequence_Fast_GET_SIZE (items);
      children = g_new (GVariant *, MAX (n, 1));
      for (i = 0; i < n; i++)
        {
          children[i] = typed (PySequence_Fast_GET_ITEM (items, i), element, depth + 1);
          if (children[i] == NULL)
            {
              free_children (children, i);
              return NULL;
            }
        }
    }

  variant = g_variant_new_array (element, children, n);
  g_free (children);
  return variant;
}

static GVariant *
typed_tuple (PyObject           *value,
             const GVariantType *type,
             int                 depth)
{
  gsize n = g_variant_type_n_items (type);
  const GVariantType *item_type = g_variant_type_first (type);
  g_autoptr(PyObject) items = NULL;
  GVariant **children;
  GVariant *variant;

  if (!PyTuple_Check (value) && !PyList_Check (value))
    return not_of_type (value, type, "a tuple is needed");
  items = PySequence_Fast (value, "");
  if ((gsize) PySequence_Fast_GET_SIZE (items) != n)
    return not_of_type (value, type, "the number of items differs");

  children = g_new (GVariant *, MAX (n, 1));
  for (gsize i = 0; i < n; i++, item_type = g_variant_type_next (item_type))
    {
      children[i] = typed (PySequence_Fast_GET_ITEM (items, i), item_type, depth + 1);
      if (children[i] == NULL)
        {
          free_children (children, i);
          return NULL;
        }
    }

  if (g_variant_type_is_dict_entry (type))
    variant = g_variant_new_dict_entry (children[0], children[1]);
  else
    variant = g_variant_new_tuple (children, n);
  g_free (children);
  return variant;
}

static GVariant *
typed (PyObject           *value,
       const GVariantType *type,
       int                 depth)
{
  GVariant *variant = lypy_peek_variant (value);

  if (depth > MAX_DEPTH)
    return too_deep ();

  if (variant != NULL)
    {
      if (g_variant_is_of_type (variant, type))
        return g_variant_ref (variant);
      if (!g_variant_type_equal (type, G_VARIANT_TYPE_VARIANT))
        return not_of_type (value, type, g_variant_get_type_string (variant));
      return g_variant_new_variant (variant);
    }

  if (!g_variant_type_is_definite (type))
    return not_of_type (value, type, "the type is not definite: give a GLib.Variant");

  switch (*g_variant_type_peek_string (type))
    {
    case 'b': case 'y': case 'n': case 'q': case 'i': case 'u':
    case 'x': case 't': case 'h': case 'd':
      return typed_number (value, type);
    case 's': case 'o': case 'g':
      if (!PyUnicode_Check (value))
        return not_of_type (value, type, NULL);
      return string_variant (value, type);
    case 'v':
      variant = infer (value, depth + 1);
      return variant != NULL ? g_variant_new_variant (variant) : NULL;
    case 'm':
      if (value == Py_None)
        return g_variant_new_maybe (g_variant_type_element (type), NULL);
      variant = typed (value, g_variant_type_element (type), depth + 1);
      return variant != NULL ? g_variant_new_maybe (NULL, variant) : NULL;
    case 'a':
      return typed_array (value, type, depth);
    case '(': case '{':
      return typed_tuple (value, type, depth);
    default:
      return not_of_type (value, type, NULL);
    }
}

/**
 * lypy_to_variant:
 * @value: a Python value
 * @type: (nullable): the type to build, or %NULL to infer it
 *
 * Returns: (transfer full): a new GVariant, or %NULL with a Python
 *   exception set
 */
GVariant *
lypy_to_variant (PyObject           *value,
                 const GVariantType *type)
{
  GVariant *variant = lypy_peek_variant (value);

  /* a GLib.Variant goes as it is: the channel's own check says
   * TYPE_MISMATCH, as it does in C */
  if (variant != NULL)
    return g_variant_ref (variant);

  variant = type != NULL ? typed (value, type, 0) : infer (value, 0);
  return variant != NULL ? g_variant_ref_sink (variant) : NULL;
}

/* GVariant to Python --------------------------------------------------------- */

static PyObject *from_variant (GVariant *variant,
                               int       depth);

static PyObject *
from_fixed_array (GVariant *variant,
                  char      code)
{
  gsize n, size;
  gconstpointer data;
  PyObject *list;

  switch (code)
    {
    case 'b': case 'y': size = 1; break;
    case 'n': case 'q': size = 2; break;
    case 'i': case 'u': case 'h': size = 4; break;
    default: size = 8; break;
    }
  data = g_variant_get_fixed_array (variant, &n, size);
  if ((list = PyList_New (n)) == NULL)
    return NULL;

  for (gsize i = 0; i < n; i++)
    {
      PyObject *item;

      switch (code)
        {
        case 'b': item = PyBool_FromLong (((const guint8 *) data)[i]); break;
        case 'n': item = PyLong_FromLong (((const gint16 *) data)[i]); break;
        case 'q': item = PyLong_FromLong (((const guint16 *) data)[i]); break;
        case 'i': case 'h': item = PyLong_FromLong (((const gint32 *) data)[i]); break;
        case 'u': item = PyLong_FromUnsignedLong (((const guint32 *) data)[i]); break;
        case 'x': item = PyLong_FromLongLong (((const gint64 *) data)[i]); break;
        case 't': item = PyLong_FromUnsignedLongLong (((const guint64 *) data)[i]); break;
        default: item = PyFloat_FromDouble (((const double *) data)[i]); break;
        }
      if (item == NULL)
        {
          Py_DECREF (list);
          return NULL;
        }
      PyList_SET_ITEM (list, i, item);
    }
  return list;
}

static PyObject *
from_strings (GVariant *variant)
{
  gsize n;
  g_autofree const char **strings = g_variant_get_strv (variant, &n);
  PyObject *list = PyList_New (n);

  for (gsize i = 0; list != NULL && i < n; i++)
    {
      PyObject *item = PyUnicode_DecodeUTF8 (strings[i], strlen (strings[i]), "strict");

      if (item == NULL)
        g_clear_pointer (&list, Py_DecRef);
      else
        PyList_SET_ITEM (list, i, item);
    }
  return list;
}

static PyObject *
from_dict (GVariant *variant,
           int       depth)
{
  gsize n = g_variant_n_children (variant);
  PyObject *dict = PyDict_New ();

  for (gsize i = 0; dict != NULL && i < n; i++)
    {
      g_autoptr(GVariant) entry = g_variant_get_child_value (variant, i);
      g_autoptr(GVariant) key = g_variant_get_child_value (entry, 0);
      g_autoptr(GVariant) item = g_variant_get_child_value (entry, 1);
      g_autoptr(PyObject) py_key = from_variant (key, depth + 1);
      g_autoptr(PyObject) py_item = py_key != NULL ? from_variant (item, depth + 1) : NULL;

      if (py_item == NULL || PyDict_SetItem (dict, py_key, py_item) < 0)
        g_clear_pointer (&dict, Py_DecRef);
    }
  return dict;
}

static PyObject *
from_children (GVariant *variant,
               gboolean  as_tuple,
               int       depth)
{
  gsize n = g_variant_n_children (variant);
  PyObject *result = as_tuple ? PyTuple_New (n) : PyList_New (n);

  for (gsize i = 0; result != NULL && i < n; i++)
    {
      g_autoptr(GVariant) child = g_variant_get_child_value (variant, i);
      PyObject *item = from_variant (child, depth + 1);

      if (item == NULL)
        g_clear_pointer (&result, Py_DecRef);
      else if (as_tuple)
        PyTuple_SET_ITEM (result, i, item);
      else
        PyList_SET_ITEM (result, i, item);
    }
  return result;
}

static PyObject *
from_array (GVariant *variant,
            int       depth)
{
  const char *element = g_variant_get_type_string (variant) + 1;

  switch (*element)
    {
    case 'y':
      {
        gsize n;
        gconstpointer data = g_variant_get_fixed_array (variant, &n, 1);

        return PyBytes_FromStringAndSize (data, n);
      }
    case 'b': case 'n': case 'q': case 'i': case 'u': case 'h':
    case 'x': case 't': case 'd':
      return from_fixed_array (variant, *element);
    case 's': case 'o': case 'g':
      return from_strings (variant);
    case '{':
      return from_dict (variant, depth);
    default:
      return from_children (variant, FALSE, depth);
    }
}

static PyObject *
from_string (GVariant *variant)
{
  gsize length;
  const char *text = g_variant_get_string (variant, &length);

  return PyUnicode_DecodeUTF8 (text, length, "strict");
}

static PyObject *
from_variant (GVariant *variant,
              int       depth)
{
  if (depth > 2 * MAX_DEPTH + 2)
    {
      PyErr_SetString (PyExc_RecursionError, "the GVariant is nested too deeply for Python");
      return NULL;
    }

  switch (g_variant_classify (variant))
    {
    case G_VARIANT_CLASS_BOOLEAN:
      return PyBool_FromLong (g_variant_get_boolean (variant));
    case G_VARIANT_CLASS_BYTE:
      return PyLong_FromLong (g_variant_get_byte (variant));
    case G_VARIANT_CLASS_INT16:
      return PyLong_FromLong (g_variant_get_int16 (variant));
    case G_VARIANT_CLASS_UINT16:
      return PyLong_FromLong (g_variant_get_uint16 (variant));
    case G_VARIANT_CLASS_INT32:
      return PyLong_FromLong (g_variant_get_int32 (variant));
    case G_VARIANT_CLASS_HANDLE:
      return PyLong_FromLong (g_variant_get_handle (variant));
    case G_VARIANT_CLASS_UINT32:
      return PyLong_FromUnsignedLong (g_variant_get_uint32 (variant));
    case G_VARIANT_CLASS_INT64:
      return PyLong_FromLongLong (g_variant_get_int64 (variant));
    case G_VARIANT_CLASS_UINT64:
      return PyLong_FromUnsignedLongLong (g_variant_get_uint64 (variant));
    case G_VARIANT_CLASS_DOUBLE:
      return PyFloat_FromDouble (g_variant_get_double (variant));
    case G_VARIANT_CLASS_STRING:
    case G_VARIANT_CLASS_OBJECT_PATH:
    case G_VARIANT_CLASS_SIGNATURE:
      return from_string (variant);
    case G_VARIANT_CLASS_VARIANT:
      {
        g_autoptr(GVariant) inner = g_variant_get_variant (variant);

        return from_variant (inner, depth + 1);
      }
    case G_VARIANT_CLASS_MAYBE:
      {
        g_autoptr(GVariant) inner = g_variant_get_maybe (variant);

        if (inner == NULL)
          Py_RETURN_NONE;
        return from_variant (inner, depth + 1);
      }
    case G_VARIANT_CLASS_ARRAY:
      return from_array (variant, depth);
    case G_VARIANT_CLASS_TUPLE:
    case G_VARIANT_CLASS_DICT_ENTRY:
      return from_children (variant, TRUE, depth);
    default:
      PyErr_SetString (PyExc_TypeError, "a GVariant of an unknown class");
      return NULL;
    }
}

/**
 * lypy_from_variant:
 * @variant: (nullable): a GVariant
 *
 * Returns: (transfer full): the Python value of @variant (None for
 *   %NULL), or %NULL with a Python exception set
 */
PyObject *
lypy_from_variant (GVariant *variant)
{
  if (variant == NULL)
    Py_RETURN_NONE;
  return from_variant (variant, 0);
}

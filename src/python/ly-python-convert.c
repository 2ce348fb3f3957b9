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

/* Python to GVariant ------------------------------------------------------- */

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

/* bytes are immutable: a large one is referenced where it is, no copy */
static GVariant *
bytes_by_reference (PyObject *value)
{
  Py_INCREF (value);
  return g_variant_ref_sink (g_variant_new_from_data (G_VARIANT_TYPE_BYTESTRING, PyBytes_AS_STRING (value),
                                                      PyBytes_GET_SIZE (value), TRUE, release_object, value));
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
  g_autoptr(GString) inferred = NULL;
  g_autofree char *given = NULL;

  /* a GLib.Variant goes as it is: the channel's own check says
   * TYPE_MISMATCH, as it does in C */
  if (variant != NULL)
    return g_variant_ref (variant);

  if (PyBytes_Check (value) && PyBytes_GET_SIZE (value) >= BYTES_BY_REFERENCE &&
      (type == NULL || g_variant_type_equal (type, G_VARIANT_TYPE_BYTESTRING)))
    return bytes_by_reference (value);

  if (type != NULL)
    {
      given = g_variant_type_dup_string (type);
      if (!g_variant_type_is_definite (type))
        {
          PyErr_Format (PyExc_TypeError, "%.200R is not a value of GVariant type %s: "
                        "the type is not definite: give a GLib.Variant", value, given);
          return NULL;
        }
      return lypy_serialise (value, given);
    }

  inferred = g_string_sized_new (16);
  if (!lypy_infer_type (value, inferred))
    return NULL;
  return lypy_serialise (value, inferred->str);
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
  if (depth > 2 * LYPY_MAX_DEPTH + 2)
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
  PyObject *value;

  if (variant == NULL)
    Py_RETURN_NONE;
  /* the serialised form directly; GLib's accessors where it is not in
   * normal form */
  if ((value = lypy_parse (variant)) != NULL || PyErr_Occurred ())
    return value;
  return from_variant (variant, 0);
}

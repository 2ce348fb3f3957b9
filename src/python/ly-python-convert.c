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
static PyTypeObject *wrapper_class;   /* ours: see make_wrapper_class() */

/* GLib.Variant ---------------------------------------------------------- */

GVariant *
lypy_peek_variant (PyObject *object)
{
  PyTypeObject *type = Py_TYPE (object);

  /* asked of every value converted: the builtins answer at once */
  if (type == &PyUnicode_Type || type == &PyLong_Type || type == &PyDict_Type || type == &PyList_Type ||
      type == &PyTuple_Type || type == &PyFloat_Type || type == &PyBool_Type || type == &PyBytes_Type ||
      object == Py_None)
    return NULL;
  if (variant_class == NULL || !PyObject_TypeCheck (object, variant_class))
    return NULL;
  return ((PyGPointer *) object)->pointer;
}

/* Takes the reference. */
PyObject *
lypy_wrap_variant (GVariant *variant)
{
  LyPyStruct *self = (LyPyStruct *) wrapper_class->tp_alloc (wrapper_class, 0);

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

/* GLib.Variant's __del__ releases the GVariant with unref() called
 * through GObject-introspection: two microseconds for every value a
 * program drops, as much as converting a bot event.  Ours release it
 * directly. */
static PyObject *
release_wrapped (PyObject *self,
                 PyObject *unused)
{
  GVariant *variant = ((PyGPointer *) self)->pointer;

  ((PyGPointer *) self)->pointer = NULL;
  g_clear_pointer (&variant, g_variant_unref);
  Py_RETURN_NONE;
}

static PyMethodDef release_method = {
  "__del__", release_wrapped, METH_NOARGS, "Releases the GVariant.",
};

/* The class of the GLib.Variant objects made here: a subclass of
 * GLib.Variant (so isinstance() holds, and every method is there) whose
 * __del__ is release_wrapped(). */
static gboolean
make_wrapper_class (void)
{
  g_autoptr(PyObject) name = PyUnicode_FromString ("Variant");
  g_autoptr(PyObject) bases = PyTuple_Pack (1, (PyObject *) variant_class);
  g_autoptr(PyObject) namespace = Py_BuildValue ("{s:s,s:s,s:()}", "__module__", "gi.repository.GLib",
                                                 "__qualname__", "Variant", "__slots__");
  g_autoptr(PyObject) class = NULL;
  g_autoptr(PyObject) release = NULL;

  if (name == NULL || bases == NULL || namespace == NULL)
    return FALSE;
  class = PyObject_CallFunctionObjArgs ((PyObject *) Py_TYPE (variant_class), name, bases, namespace, NULL);
  if (class == NULL || !PyType_Check (class) ||
      ((PyTypeObject *) class)->tp_basicsize != variant_class->tp_basicsize)
    return FALSE;
  release = PyDescr_NewMethod ((PyTypeObject *) class, &release_method);
  if (release == NULL || PyObject_SetAttrString (class, "__del__", release) < 0)
    return FALSE;
  wrapper_class = (PyTypeObject *) g_steal_pointer (&class);
  return TRUE;
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
  if (!make_wrapper_class ())
    return FALSE;

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

/* Python objects lent to the library (large bytes, referenced where
 * they are) come back from any thread, and often from one that holds a
 * lock of the library (a channel writing them out), which a thread
 * holding the GIL may be waiting for: taking the GIL there would
 * deadlock.  So, unless this thread holds the GIL, they are released
 * later, in the main thread, by a pending call. */
static GMutex     released_mutex;      /* protects released, drain_scheduled */
static GPtrArray *released;            /* of PyObject *, to release */
static gboolean   drain_scheduled;

static int
drain_released (void *unused)
{
  g_autoptr(GPtrArray) objects = NULL;

  g_mutex_lock (&released_mutex);
  objects = g_steal_pointer (&released);
  drain_scheduled = FALSE;
  g_mutex_unlock (&released_mutex);

  for (guint i = 0; objects != NULL && i < objects->len; i++)
    Py_DECREF ((PyObject *) g_ptr_array_index (objects, i));
  return 0;
}

static void
release_object (gpointer data)
{
  gboolean schedule;

  if (!Py_IsInitialized ())
    return;   /* at exit: the object is gone with the interpreter */

  if (PyGILState_Check ())
    {
      Py_DECREF ((PyObject *) data);
      return;
    }

  g_mutex_lock (&released_mutex);
  if (released == NULL)
    released = g_ptr_array_new ();
  g_ptr_array_add (released, data);
  schedule = !drain_scheduled;
  drain_scheduled = TRUE;
  g_mutex_unlock (&released_mutex);

  /* no GIL needed; when Python's queue of them is full, the next
   * release schedules it again */
  if (schedule && Py_AddPendingCall (drain_released, NULL) < 0)
    {
      g_mutex_lock (&released_mutex);
      drain_scheduled = FALSE;
      g_mutex_unlock (&released_mutex);
    }
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

  /* a GLib.Variant goes as it is: the channel's own check says
   * TYPE_MISMATCH, as it does in C */
  if (variant != NULL)
    return g_variant_ref (variant);

  if (PyBytes_Check (value) && PyBytes_GET_SIZE (value) >= BYTES_BY_REFERENCE &&
      (type == NULL || g_variant_type_equal (type, G_VARIANT_TYPE_BYTESTRING)))
    return bytes_by_reference (value);

  if (type != NULL)
    {
      if (!g_variant_type_is_definite (type))
        {
          g_autofree char *given = g_variant_type_dup_string (type);

          PyErr_Format (PyExc_TypeError, "%.200R is not a value of GVariant type %s: "
                        "the type is not definite: give a GLib.Variant", value, given);
          return NULL;
        }
      /* the writer walks type strings by their structure: no copy with a
       * NUL (this runs for every send on a typed channel) */
      return lypy_serialise (value, g_variant_type_peek_string (type));
    }

  inferred = g_string_sized_new (16);
  if (!lypy_infer_type (value, inferred))
    return NULL;
  return lypy_serialise (value, inferred->str);
}

/* GVariant to Python --------------------------------------------------------- */

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
  g_autoptr(GVariant) normal = NULL;
  PyObject *value;

  if (variant == NULL)
    Py_RETURN_NONE;
  /* the serialised form directly; data not in normal form (a value a
   * program made from untrusted bytes) is read in GLib's normal form of
   * it, which says what GLib's accessors would give */
  if ((value = lypy_parse (variant)) != NULL || PyErr_Occurred ())
    return value;
  normal = g_variant_get_normal_form (variant);
  if ((value = lypy_parse (normal)) != NULL || PyErr_Occurred ())
    return value;
  PyErr_SetString (PyExc_RecursionError, "the GVariant is nested too deeply for Python");
  return NULL;
}

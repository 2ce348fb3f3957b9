/* ly-python.c: the gi.overrides._Ly module
 *
 * What the override calls once per message: conversion, send and
 * receive, storage calls, and the delivery of `received` and `published`
 * to Python handlers without PyGObject's per-emission marshalling.
 * Blocking calls release the GIL, so that other Python threads (and
 * handlers the wait itself dispatches) run meanwhile.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "ly-python-private.h"

#include <pygobject.h>

/* PyGObject objects ---------------------------------------------------------- */

gpointer
lypy_peek_gobject (PyObject   *object,
                   GType       type,
                   const char *what)
{
  GObject *gobject;

  if (!PyObject_TypeCheck (object, &PyGObject_Type) ||
      (gobject = pygobject_get (object)) == NULL ||
      !G_TYPE_CHECK_INSTANCE_TYPE (gobject, type))
    {
      PyErr_Format (PyExc_TypeError, "a %s is needed, not %.100R", what, object);
      return NULL;
    }
  return gobject;
}

static gboolean
peek_cancellable (PyObject      *object,
                  GCancellable **cancellable)
{
  *cancellable = NULL;
  if (object == NULL || object == Py_None)
    return TRUE;
  *cancellable = lypy_peek_gobject (object, G_TYPE_CANCELLABLE, "Gio.Cancellable");
  return *cancellable != NULL;
}

/* Takes @error; raises it as GLib.Error. */
PyObject *
lypy_raise_gerror (GError *error)
{
  pyg_error_check (&error);
  g_clear_error (&error);
  return NULL;
}

/* Conversion ---------------------------------------------------------------- */

static PyObject *
py_to_variant (PyObject *module,
               PyObject *args)
{
  PyObject *value;
  const char *type_string = NULL;
  GVariant *variant;

  if (!PyArg_ParseTuple (args, "O|z:to_variant", &value, &type_string))
    return NULL;

  if (type_string != NULL && !g_variant_type_string_is_valid (type_string))
    return PyErr_Format (PyExc_TypeError, "%.100s is not a GVariant type string", type_string);

  variant = lypy_to_variant (value, type_string != NULL ? G_VARIANT_TYPE (type_string) : NULL);
  return variant != NULL ? lypy_wrap_variant (variant) : NULL;
}

static PyObject *
py_from_variant (PyObject *module,
                 PyObject *object)
{
  GVariant *variant;

  if (object == Py_None)
    Py_RETURN_NONE;
  if ((variant = lypy_peek_variant (object)) == NULL)
    return PyErr_Format (PyExc_TypeError, "a GLib.Variant is needed, not %.100R", object);
  return lypy_from_variant (variant);
}

/* Channels ------------------------------------------------------------------ */

static PyObject *
py_channel_send (PyObject *module,
                 PyObject *args)
{
  PyObject *py_channel, *value;
  LyChannel *channel;
  g_autoptr(GVariant) message = NULL;
  GError *error = NULL;

  if (!PyArg_ParseTuple (args, "OO:channel_send", &py_channel, &value) ||
      (channel = lypy_peek_gobject (py_channel, LY_TYPE_CHANNEL, "Ly.Channel")) == NULL)
    return NULL;

  if ((message = lypy_to_variant (value, ly_channel_get_message_type (channel))) == NULL)
    return NULL;
  if (!ly_channel_send (channel, message, &error))
    return lypy_raise_gerror (error);
  Py_RETURN_NONE;
}

/* The next message of @channel (the GIL released while waiting). */
static PyObject *
receive_message (LyChannel    *channel,
                 int           timeout_msec,
                 GCancellable *cancellable,
                 gboolean      as_variant)
{
  GVariant *message;
  GError *error = NULL;

  Py_BEGIN_ALLOW_THREADS
  if (timeout_msec < 0)
    message = ly_channel_receive (channel, cancellable, &error);
  else
    message = ly_channel_receive_timeout (channel, timeout_msec, cancellable, &error);
  Py_END_ALLOW_THREADS

  if (message == NULL)
    return lypy_raise_gerror (error);
  if (as_variant)
    return lypy_wrap_variant (message);

  {
    PyObject *value = lypy_from_variant (message);

    g_variant_unref (message);
    return value;
  }
}

static PyObject *
py_channel_receive (PyObject *module,
                    PyObject *args)
{
  PyObject *py_channel, *py_cancellable = Py_None;
  int timeout_msec = -1, as_variant = 0;
  LyChannel *channel;
  GCancellable *cancellable;

  if (!PyArg_ParseTuple (args, "O|iOp:channel_receive", &py_channel, &timeout_msec,
                         &py_cancellable, &as_variant) ||
      (channel = lypy_peek_gobject (py_channel, LY_TYPE_CHANNEL, "Ly.Channel")) == NULL ||
      !peek_cancellable (py_cancellable, &cancellable))
    return NULL;

  return receive_message (channel, timeout_msec, cancellable, as_variant);
}

/* Methods of the override's Channel class ------------------------------------
 *
 * What a program calls once per message, as methods of the class itself
 * (method descriptors, as a C type's methods are): no Python frame and
 * no tuple of arguments per call. */

/* (cancellable=None, timeout=None), positional or by keyword */
static gboolean
parse_receive_arguments (PyObject *const *args,
                         Py_ssize_t       nargs,
                         PyObject        *kwnames,
                         GCancellable   **cancellable,
                         int             *timeout_msec)
{
  static const char *const names[] = { "cancellable", "timeout" };
  PyObject *given[2] = { NULL, NULL };

  if (nargs > 2)
    {
      PyErr_Format (PyExc_TypeError, "receive() takes at most 2 arguments (%zd given)", nargs);
      return FALSE;
    }
  for (Py_ssize_t i = 0; i < nargs; i++)
    given[i] = args[i];
  for (Py_ssize_t k = 0; kwnames != NULL && k < PyTuple_GET_SIZE (kwnames); k++)
    {
      PyObject *name = PyTuple_GET_ITEM (kwnames, k);
      gsize which;

      for (which = 0; which < G_N_ELEMENTS (names); which++)
        if (PyUnicode_CompareWithASCIIString (name, names[which]) == 0)
          break;
      if (which == G_N_ELEMENTS (names))
        {
          PyErr_Format (PyExc_TypeError, "receive() got an unexpected keyword argument %R", name);
          return FALSE;
        }
      if (given[which] != NULL)
        {
          PyErr_Format (PyExc_TypeError, "receive() got multiple values for argument %R", name);
          return FALSE;
        }
      given[which] = args[nargs + k];
    }

  if (!peek_cancellable (given[0], cancellable))
    return FALSE;

  *timeout_msec = -1;
  if (given[1] != NULL && given[1] != Py_None)
    {
      double seconds = PyFloat_AsDouble (given[1]);

      if (seconds == -1.0 && PyErr_Occurred ())
        return FALSE;
      /* as int(timeout * 1000), at least 0 */
      *timeout_msec = seconds > 0 ? (int) MIN (seconds * 1000, (double) G_MAXINT) : 0;
    }
  return TRUE;
}

/* A message given back by an awaitable cancelled after it had taken it
 * (Channel._return() in the override): the next receive gets it. */
static PyObject *
take_returned (PyObject *self)
{
  static PyObject *key, *popleft;
  g_autoptr(PyObject) dict = PyObject_GenericGetDict (self, NULL);
  PyObject *returned;

  if (key == NULL && (key = PyUnicode_InternFromString ("_ly_returned")) == NULL)
    return NULL;
  if (popleft == NULL && (popleft = PyUnicode_InternFromString ("popleft")) == NULL)
    return NULL;
  if (dict == NULL)
    return NULL;
  returned = PyDict_GetItemWithError (dict, key);       /* borrowed */
  if (returned == NULL && PyErr_Occurred ())
    return NULL;
  if (returned == NULL || PyObject_Length (returned) <= 0)
    {
      PyErr_Clear ();
      return Py_NewRef (Py_None);
    }
  return PyObject_CallMethodNoArgs (returned, popleft);
}

static PyObject *
receive_or_returned (PyObject         *self,
                     PyObject *const  *args,
                     Py_ssize_t        nargs,
                     PyObject         *kwnames,
                     gboolean          as_variant)
{
  LyChannel *channel = lypy_peek_gobject (self, LY_TYPE_CHANNEL, "Ly.Channel");
  g_autoptr(PyObject) returned = NULL;
  GCancellable *cancellable;
  int timeout_msec;

  if (channel == NULL || !parse_receive_arguments (args, nargs, kwnames, &cancellable, &timeout_msec) ||
      (returned = take_returned (self)) == NULL)
    return NULL;

  if (returned != Py_None)
    {
      GVariant *variant;

      if (as_variant)
        return Py_NewRef (returned);
      if ((variant = lypy_peek_variant (returned)) == NULL)
        return PyErr_Format (PyExc_TypeError, "a GLib.Variant is needed, not %.100R", returned);
      return lypy_from_variant (variant);
    }

  return receive_message (channel, timeout_msec, cancellable, as_variant);
}

static PyObject *
channel_method_receive (PyObject         *self,
                        PyObject *const  *args,
                        Py_ssize_t        nargs,
                        PyObject         *kwnames)
{
  return receive_or_returned (self, args, nargs, kwnames, FALSE);
}

static PyObject *
channel_method_receive_variant (PyObject         *self,
                                PyObject *const  *args,
                                Py_ssize_t        nargs,
                                PyObject         *kwnames)
{
  return receive_or_returned (self, args, nargs, kwnames, TRUE);
}

static PyObject *
channel_method_send (PyObject *self,
                     PyObject *value)
{
  LyChannel *channel = lypy_peek_gobject (self, LY_TYPE_CHANNEL, "Ly.Channel");
  g_autoptr(GVariant) message = NULL;
  GError *error = NULL;

  if (channel == NULL || (message = lypy_to_variant (value, ly_channel_get_message_type (channel))) == NULL)
    return NULL;
  if (!ly_channel_send (channel, message, &error))
    return lypy_raise_gerror (error);
  Py_RETURN_TRUE;
}

static PyMethodDef channel_methods[] = {
  { "send", (PyCFunction) channel_method_send, METH_O,
    "send(value) -> True\n\nQueues value (a Python value or a GLib.Variant) and returns at\n"
    "once.  Converted to the channel's message-type when it has one\n(TypeError when it "
    "cannot be); GLib.Error FULL when the queue is\nover max-queued-bytes." },
  { "receive", (PyCFunction) (void (*) (void)) channel_method_receive, METH_FASTCALL | METH_KEYWORDS,
    "receive(cancellable=None, timeout=None)\n\nThe next message as a Python value; waits "
    "for it, at most timeout\nseconds when given (then GLib.Error TIMED_OUT)." },
  { "receive_variant", (PyCFunction) (void (*) (void)) channel_method_receive_variant,
    METH_FASTCALL | METH_KEYWORDS,
    "receive_variant(cancellable=None, timeout=None)\n\nThe next message as a GLib.Variant." },
  { NULL, NULL, 0, NULL },
};

/* Puts channel_methods on @cls, the override's Channel class. */
static PyObject *
py_install_channel_methods (PyObject *module,
                            PyObject *cls)
{
  if (!PyType_Check (cls) || !PyType_IsSubtype ((PyTypeObject *) cls, &PyGObject_Type))
    return PyErr_Format (PyExc_TypeError, "a GObject class is needed, not %.100R", cls);

  for (PyMethodDef *def = channel_methods; def->ml_name != NULL; def++)
    {
      g_autoptr(PyObject) descriptor = PyDescr_NewMethod ((PyTypeObject *) cls, def);

      if (descriptor == NULL || PyObject_SetAttrString (cls, def->ml_name, descriptor) < 0)
        return NULL;
    }
  Py_RETURN_NONE;
}

/* Handlers ------------------------------------------------------------------- */

/* One Python handler of `received` or `published`: filter (sync or
 * async, or None) and handler (sync or async); schedule(awaitable,
 * handler, value) takes what is to be awaited elsewhere. */
typedef struct
{
  PyObject *filter;
  PyObject *handler;
  PyObject *schedule;
} Handler;

static void
handler_free (gpointer data,
              GClosure *closure)
{
  Handler *handler = data;
  PyGILState_STATE state;

  if (Py_IsInitialized ())
    {
      state = PyGILState_Ensure ();
      Py_XDECREF (handler->filter);
      Py_DECREF (handler->handler);
      Py_DECREF (handler->schedule);
      PyGILState_Release (state);
    }
  g_free (handler);
}

static PyObject *
schedule (Handler  *handler,
          PyObject *awaitable,
          PyObject *then,
          PyObject *value)
{
  return PyObject_CallFunctionObjArgs (handler->schedule, awaitable, then, value, NULL);
}

static void
deliver (Handler  *handler,
         GVariant *message)
{
  g_autoptr(PyObject) value = lypy_from_variant (message);
  g_autoptr(PyObject) accepted = NULL;
  g_autoptr(PyObject) result = NULL;

  if (value == NULL)
    goto failed;

  if (handler->filter != NULL)
    {
      if ((accepted = PyObject_CallOneArg (handler->filter, value)) == NULL)
        goto failed;
      if (lypy_is_awaitable (accepted))
        {
          result = schedule (handler, accepted, handler->handler, value);
          goto done;
        }
      switch (PyObject_IsTrue (accepted))
        {
        case 0:
          return;
        case -1:
          goto failed;
        }
    }

  if ((result = PyObject_CallOneArg (handler->handler, value)) != NULL && lypy_is_awaitable (result))
    {
      PyObject *awaitable = g_steal_pointer (&result);

      result = schedule (handler, awaitable, Py_None, Py_None);
      Py_DECREF (awaitable);
    }

done:
  if (result != NULL)
    return;
failed:
  /* as PyGObject does for an exception in a signal handler */
  PyErr_Print ();
}

static void
on_received (LyChannel *channel,
             GVariant  *message,
             gpointer   data)
{
  PyGILState_STATE state = PyGILState_Ensure ();

  deliver (data, message);
  PyGILState_Release (state);
}

static void
on_published (LyStorage  *storage,
              const char *topic,
              GVariant   *value,
              gpointer    data)
{
  PyGILState_STATE state = PyGILState_Ensure ();

  deliver (data, value);
  PyGILState_Release (state);
}

static PyObject *
connect_handler (gpointer    instance,
                 const char *detailed_signal,
                 GCallback   callback,
                 PyObject   *filter,
                 PyObject   *function,
                 PyObject   *scheduler)
{
  Handler *handler;
  gulong id;

  if ((filter != Py_None && !PyCallable_Check (filter)) || !PyCallable_Check (function) ||
      !PyCallable_Check (scheduler))
    return PyErr_Format (PyExc_TypeError, "the handler and the filter must be callable");

  handler = g_new0 (Handler, 1);
  handler->filter = filter != Py_None ? Py_NewRef (filter) : NULL;
  handler->handler = Py_NewRef (function);
  handler->schedule = Py_NewRef (scheduler);
  id = g_signal_connect_data (instance, detailed_signal, callback, handler, handler_free, 0);
  if (id == 0)
    return PyErr_Format (PyExc_ValueError, "no signal %s", detailed_signal);
  return PyLong_FromUnsignedLong (id);
}

static PyObject *
py_connect_received (PyObject *module,
                     PyObject *args)
{
  PyObject *py_channel, *filter, *function, *scheduler;
  LyChannel *channel;

  if (!PyArg_ParseTuple (args, "OOOO:connect_received", &py_channel, &filter, &function, &scheduler) ||
      (channel = lypy_peek_gobject (py_channel, LY_TYPE_CHANNEL, "Ly.Channel")) == NULL)
    return NULL;
  return connect_handler (channel, "received", G_CALLBACK (on_received), filter, function, scheduler);
}

static PyObject *
py_connect_published (PyObject *module,
                      PyObject *args)
{
  PyObject *py_storage, *function, *scheduler;
  const char *topic;
  LyStorage *storage;
  g_autofree char *detailed = NULL;

  if (!PyArg_ParseTuple (args, "OsOO:connect_published", &py_storage, &topic, &function, &scheduler) ||
      (storage = lypy_peek_gobject (py_storage, LY_TYPE_STORAGE, "Ly.Storage")) == NULL)
    return NULL;
  detailed = g_strconcat ("published::", topic, NULL);
  return connect_handler (storage, detailed, G_CALLBACK (on_published), Py_None, function, scheduler);
}

/* Storage -------------------------------------------------------------------- */

static LyStorage *
parse_storage (PyObject *py_storage)
{
  return lypy_peek_gobject (py_storage, LY_TYPE_STORAGE, "Ly.Storage");
}

static PyObject *
py_storage_set (PyObject *module,
                PyObject *args)
{
  PyObject *py_storage, *value;
  const char *key;
  LyStorage *storage;
  g_autoptr(GVariant) variant = NULL;
  GError *error = NULL;
  gboolean done;

  if (!PyArg_ParseTuple (args, "OsO:storage_set", &py_storage, &key, &value) ||
      (storage = parse_storage (py_storage)) == NULL ||
      (variant = lypy_to_variant (value, NULL)) == NULL)
    return NULL;

  Py_BEGIN_ALLOW_THREADS
  done = ly_storage_set (storage, key, variant, &error);
  Py_END_ALLOW_THREADS

  if (!done)
    return lypy_raise_gerror (error);
  Py_RETURN_NONE;
}

static PyObject *
py_storage_set_async (PyObject *module,
                      PyObject *args)
{
  PyObject *py_storage, *value;
  const char *key;
  LyStorage *storage;
  g_autoptr(GVariant) variant = NULL;

  if (!PyArg_ParseTuple (args, "OsO:storage_set_async", &py_storage, &key, &value) ||
      (storage = parse_storage (py_storage)) == NULL ||
      (variant = lypy_to_variant (value, NULL)) == NULL)
    return NULL;

  /* without a callback: no GTask, packed with the other sets of this
   * main loop iteration */
  ly_storage_set_async (storage, key, variant, NULL, NULL, NULL);
  Py_RETURN_NONE;
}

/* Returns default when the key is absent. */
static PyObject *
py_storage_get (PyObject *module,
                PyObject *args)
{
  PyObject *py_storage, *fallback = Py_None;
  const char *key;
  int as_variant = 0;
  LyStorage *storage;
  GVariant *variant;
  GError *error = NULL;

  if (!PyArg_ParseTuple (args, "Os|Op:storage_get", &py_storage, &key, &fallback, &as_variant) ||
      (storage = parse_storage (py_storage)) == NULL)
    return NULL;

  Py_BEGIN_ALLOW_THREADS
  variant = ly_storage_get (storage, key, &error);
  Py_END_ALLOW_THREADS

  if (error != NULL)
    return lypy_raise_gerror (error);
  if (variant == NULL)
    return Py_NewRef (fallback);
  if (as_variant)
    return lypy_wrap_variant (variant);

  {
    PyObject *value = lypy_from_variant (variant);

    g_variant_unref (variant);
    return value;
  }
}

static PyObject *
py_storage_get_all (PyObject *module,
                    PyObject *py_storage)
{
  LyStorage *storage = parse_storage (py_storage);
  GVariant *all;
  PyObject *value;
  GError *error = NULL;

  if (storage == NULL)
    return NULL;

  Py_BEGIN_ALLOW_THREADS
  all = ly_storage_get_all (storage, &error);
  Py_END_ALLOW_THREADS

  if (all == NULL)
    return lypy_raise_gerror (error);
  value = lypy_from_variant (all);
  g_variant_unref (all);
  return value;
}

static PyObject *
py_storage_compare_and_set (PyObject *module,
                            PyObject *args)
{
  PyObject *py_storage, *py_expected, *py_value;
  const char *key;
  LyStorage *storage;
  g_autoptr(GVariant) expected = NULL;
  g_autoptr(GVariant) value = NULL;
  GError *error = NULL;
  gboolean swapped;

  if (!PyArg_ParseTuple (args, "OsOO:storage_compare_and_set", &py_storage, &key, &py_expected, &py_value) ||
      (storage = parse_storage (py_storage)) == NULL)
    return NULL;

  /* None: the key is absent (old), or is to be deleted (new) */
  if (py_expected != Py_None && (expected = lypy_to_variant (py_expected, NULL)) == NULL)
    return NULL;
  if (py_value != Py_None && (value = lypy_to_variant (py_value, NULL)) == NULL)
    return NULL;

  Py_BEGIN_ALLOW_THREADS
  swapped = ly_storage_compare_and_set (storage, key, expected, value, &error);
  Py_END_ALLOW_THREADS

  if (error != NULL)
    return lypy_raise_gerror (error);
  return PyBool_FromLong (swapped);
}

static PyObject *
py_storage_publish (PyObject *module,
                    PyObject *args)
{
  PyObject *py_storage, *py_value;
  const char *topic;
  LyStorage *storage;
  g_autoptr(GVariant) value = NULL;
  GError *error = NULL;
  gboolean done;

  if (!PyArg_ParseTuple (args, "OsO:storage_publish", &py_storage, &topic, &py_value) ||
      (storage = parse_storage (py_storage)) == NULL ||
      (value = lypy_to_variant (py_value, NULL)) == NULL)
    return NULL;

  Py_BEGIN_ALLOW_THREADS
  done = ly_storage_publish (storage, topic, value, &error);
  Py_END_ALLOW_THREADS

  if (!done)
    return lypy_raise_gerror (error);
  Py_RETURN_NONE;
}

/* The module ------------------------------------------------------------------- */

static PyMethodDef methods[] = {
  { "to_variant", py_to_variant, METH_VARARGS,
    "to_variant(value, type_string=None) -> GLib.Variant" },
  { "from_variant", py_from_variant, METH_O,
    "from_variant(variant) -> the Python value" },
  { "channel_send", py_channel_send, METH_VARARGS,
    "channel_send(channel, value): converts to the channel's message-type and queues" },
  { "channel_receive", py_channel_receive, METH_VARARGS,
    "channel_receive(channel, timeout_msec=-1, cancellable=None, as_variant=False)" },
  { "install_channel_methods", py_install_channel_methods, METH_O,
    "install_channel_methods(cls): send, receive and receive_variant in C on cls" },
  { "connect_received", py_connect_received, METH_VARARGS,
    "connect_received(channel, filter, handler, schedule) -> handler id" },
  { "connect_published", py_connect_published, METH_VARARGS,
    "connect_published(storage, topic, handler, schedule) -> handler id" },
  { "storage_set", py_storage_set, METH_VARARGS, "storage_set(storage, key, value)" },
  { "storage_set_async", py_storage_set_async, METH_VARARGS,
    "storage_set_async(storage, key, value): queued, no completion" },
  { "storage_get", py_storage_get, METH_VARARGS,
    "storage_get(storage, key, default=None, as_variant=False)" },
  { "storage_get_all", py_storage_get_all, METH_O, "storage_get_all(storage) -> dict" },
  { "storage_compare_and_set", py_storage_compare_and_set, METH_VARARGS,
    "storage_compare_and_set(storage, key, old, new) -> bool (None: absent)" },
  { "storage_publish", py_storage_publish, METH_VARARGS, "storage_publish(storage, topic, value)" },
  { NULL, NULL, 0, NULL },
};

static struct PyModuleDef module_def = {
  PyModuleDef_HEAD_INIT,
  .m_name = "_Ly",
  .m_doc = "The C half of the Ly override: conversions and hot paths.",
  .m_size = -1,
  .m_methods = methods,
};

PyMODINIT_FUNC PyInit__Ly (void);

PyMODINIT_FUNC
PyInit__Ly (void)
{
  g_autoptr(PyObject) gobject = pygobject_init (3, 42, 0);
  PyObject *module;

  if (gobject == NULL)
    return NULL;
  if ((module = PyModule_Create (&module_def)) == NULL)
    return NULL;
  if (!lypy_convert_init (module) || !lypy_pump_init (module))
    {
      Py_DECREF (module);
      return NULL;
    }
  return module;
}

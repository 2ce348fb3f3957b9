/* ly-python-pump.c: the default GLib main context, driven by asyncio
 *
 * An asyncio program runs its own loop, not GLib's; the channels'
 * signals, the storage's events and the child runtime's control
 * connection need the GLib context to be dispatched.  ContextPump owns
 * the default context in the loop's thread and exposes it as one file
 * descriptor: an epoll set that holds every descriptor the context
 * polls.  The override adds that descriptor to the loop (add_reader)
 * and calls iterate() when it is readable or the context's timeout is
 * due: check and dispatch what is ready, prepare the next round, sync
 * the epoll set, return the next timeout.  So handlers run on the
 * program's own loop thread, between its tasks, with no thread of ours.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "ly-python-private.h"

#include <errno.h>
#include <poll.h>
#include <sys/epoll.h>
#include <unistd.h>

typedef struct
{
  PyObject_HEAD
  GMainContext *context;      /* acquired while the pump is open */
  int           epoll_fd;
  GPollFD      *fds;          /* of the last query */
  gint          n_fds;
  gint          allocated;
  GHashTable   *registered;   /* fd → epoll events registered */
  gint          priority;
  gboolean      prepared;     /* between prepare/query and check */
  gboolean      iterating;
} Pump;

static guint32
epoll_events_of (gushort events)
{
  return ((events & G_IO_IN) ? EPOLLIN : 0) | ((events & G_IO_OUT) ? EPOLLOUT : 0) |
         ((events & G_IO_PRI) ? EPOLLPRI : 0);
}

/* The epoll set becomes what the last query asked for. */
static void
sync_epoll_set (Pump *self)
{
  g_autoptr(GHashTable) wanted = g_hash_table_new (NULL, NULL);
  GHashTableIter iter;
  gpointer key, value;

  for (gint i = 0; i < self->n_fds; i++)
    {
      gpointer fd = GINT_TO_POINTER (self->fds[i].fd);
      guint32 events = GPOINTER_TO_UINT (g_hash_table_lookup (wanted, fd));

      g_hash_table_insert (wanted, fd, GUINT_TO_POINTER (events | epoll_events_of (self->fds[i].events) | 1u << 31));
    }

  g_hash_table_iter_init (&iter, self->registered);
  while (g_hash_table_iter_next (&iter, &key, &value))
    if (!g_hash_table_contains (wanted, key))
      {
        epoll_ctl (self->epoll_fd, EPOLL_CTL_DEL, GPOINTER_TO_INT (key), NULL);
        g_hash_table_iter_remove (&iter);
      }

  g_hash_table_iter_init (&iter, wanted);
  while (g_hash_table_iter_next (&iter, &key, &value))
    {
      gpointer old;
      gboolean known = g_hash_table_lookup_extended (self->registered, key, NULL, &old);
      struct epoll_event event = { .events = GPOINTER_TO_UINT (value) & ~(1u << 31),
                                   .data.fd = GPOINTER_TO_INT (key) };

      if (known && old == value)
        continue;
      if (epoll_ctl (self->epoll_fd, known ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, event.data.fd, &event) < 0 &&
          errno == EEXIST)
        epoll_ctl (self->epoll_fd, EPOLL_CTL_MOD, event.data.fd, &event);
      g_hash_table_insert (self->registered, key, value);
    }
}

static gint
prepare_round (Pump *self)
{
  gint timeout = -1;
  gboolean ready = g_main_context_prepare (self->context, &self->priority);

  while ((self->n_fds = g_main_context_query (self->context, self->priority, &timeout,
                                              self->fds, self->allocated)) > self->allocated)
    {
      self->allocated = self->n_fds;
      self->fds = g_renew (GPollFD, self->fds, self->allocated);
    }
  self->prepared = TRUE;
  sync_epoll_set (self);
  return ready ? 0 : timeout;
}

static void
dispatch_round (Pump *self)
{
  if (!self->prepared)
    return;
  self->prepared = FALSE;

  /* the revents of this round; GPollFD is struct pollfd on Unix */
  if (self->n_fds > 0)
    while (poll ((struct pollfd *) self->fds, self->n_fds, 0) < 0 && errno == EINTR)
      ;
  if (g_main_context_check (self->context, self->priority, self->fds, self->n_fds))
    g_main_context_dispatch (self->context);
}

static int
pump_init (Pump     *self,
           PyObject *args,
           PyObject *kwargs)
{
  static char *keywords[] = { NULL };

  if (!PyArg_ParseTupleAndKeywords (args, kwargs, ":ContextPump", keywords))
    return -1;
  if (self->context != NULL)
    {
      PyErr_SetString (PyExc_RuntimeError, "the pump is already open");
      return -1;
    }
  if (!g_main_context_acquire (g_main_context_default ()))
    {
      PyErr_SetString (PyExc_RuntimeError, "another thread runs the default GLib main context");
      return -1;
    }
  self->context = g_main_context_ref (g_main_context_default ());
  self->epoll_fd = epoll_create1 (EPOLL_CLOEXEC);
  if (self->epoll_fd < 0)
    {
      PyErr_SetFromErrno (PyExc_OSError);
      g_main_context_release (self->context);
      g_clear_pointer (&self->context, g_main_context_unref);
      return -1;
    }
  self->registered = g_hash_table_new (NULL, NULL);
  return 0;
}

static void
pump_close_internal (Pump *self)
{
  if (self->context == NULL)
    return;
  /* a round prepared and never checked needs no undoing: the next
   * owner prepares its own */
  self->prepared = FALSE;
  g_main_context_release (self->context);
  g_clear_pointer (&self->context, g_main_context_unref);
  close (self->epoll_fd);
  self->epoll_fd = -1;
  g_clear_pointer (&self->registered, g_hash_table_unref);
  g_clear_pointer (&self->fds, g_free);
  self->n_fds = self->allocated = 0;
}

static PyObject *
pump_close (Pump     *self,
            PyObject *unused)
{
  if (self->context != NULL && !g_main_context_is_owner (self->context))
    return PyErr_Format (PyExc_RuntimeError, "close the pump in the thread that opened it");
  pump_close_internal (self);
  Py_RETURN_NONE;
}

static PyObject *
pump_fileno (Pump     *self,
             PyObject *unused)
{
  if (self->context == NULL)
    return PyErr_Format (PyExc_ValueError, "the pump is closed");
  return PyLong_FromLong (self->epoll_fd);
}

/* iterate() -> the milliseconds until the context wants to run again
 * (-1: only when a descriptor is ready, 0: at once) */
static PyObject *
pump_iterate (Pump     *self,
              PyObject *unused)
{
  gint timeout;

  if (self->context == NULL)
    return PyErr_Format (PyExc_ValueError, "the pump is closed");
  if (!g_main_context_is_owner (self->context))
    return PyErr_Format (PyExc_RuntimeError, "iterate the pump in the thread that opened it");
  if (self->iterating)
    return PyLong_FromLong (0);   /* a handler ran the asyncio loop: the outer round goes on */

  self->iterating = TRUE;
  dispatch_round (self);
  timeout = prepare_round (self);
  self->iterating = FALSE;
  return PyLong_FromLong (timeout);
}

static void
pump_dealloc (Pump *self)
{
  /* only the owner may release; elsewhere the context stays acquired,
   * which is what leaking it would do anyway */
  if (self->context != NULL && g_main_context_is_owner (self->context))
    pump_close_internal (self);
  Py_TYPE (self)->tp_free ((PyObject *) self);
}

static PyMethodDef pump_methods[] = {
  { "fileno", (PyCFunction) pump_fileno, METH_NOARGS,
    "fileno() -> the epoll descriptor that is readable when the context has work" },
  { "iterate", (PyCFunction) pump_iterate, METH_NOARGS,
    "iterate() -> dispatches what is ready, prepares the next round; the next timeout in ms (-1: none)" },
  { "close", (PyCFunction) pump_close, METH_NOARGS,
    "close(): releases the default main context" },
  { NULL, NULL, 0, NULL },
};

static PyTypeObject pump_type = {
  PyVarObject_HEAD_INIT (NULL, 0)
  .tp_name = "gi.overrides._Ly.ContextPump",
  .tp_basicsize = sizeof (Pump),
  .tp_flags = Py_TPFLAGS_DEFAULT,
  .tp_doc = "ContextPump(): owns the default GLib main context in this thread and lets "
            "another event loop dispatch it through one descriptor.",
  .tp_new = PyType_GenericNew,
  .tp_init = (initproc) pump_init,
  .tp_dealloc = (destructor) pump_dealloc,
  .tp_methods = pump_methods,
};

gboolean
lypy_pump_init (PyObject *module)
{
  if (PyType_Ready (&pump_type) < 0)
    return FALSE;
  Py_INCREF (&pump_type);
  return PyModule_AddObject (module, "ContextPump", (PyObject *) &pump_type) == 0;
}

/* ly-python-private.h: the CPython extension behind the Ly override
 *
 * The override (src/Ly.py) converts Python values to GVariants and back,
 * and calls the channel and storage hot paths, through this module
 * (gi.overrides._Ly): one C call per message instead of a PyGObject
 * invocation per GVariant node.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <liteyuki-comm.h>

G_BEGIN_DECLS

G_DEFINE_AUTOPTR_CLEANUP_FUNC (PyObject, Py_DecRef)

/* Deeper values than this have no GVariant form here (GLib's own limit
 * is 128 levels of type nesting; a dict adds two a level). */
#define LYPY_MAX_DEPTH 64

/* ly-python-convert.c */
gboolean   lypy_convert_init      (PyObject           *module);
GVariant  *lypy_to_variant        (PyObject           *value,
                                   const GVariantType *type);
PyObject  *lypy_from_variant      (GVariant           *variant);
PyObject  *lypy_wrap_variant      (GVariant           *variant);
GVariant  *lypy_peek_variant      (PyObject           *object);
gboolean   lypy_is_awaitable      (PyObject           *object);

/* ly-python-serialise.c */
gboolean   lypy_infer_type        (PyObject           *value,
                                   GString            *type);
GVariant  *lypy_serialise         (PyObject           *value,
                                   const char         *type);
PyObject  *lypy_parse             (GVariant           *variant);

/* ly-python-pump.c */
gboolean   lypy_pump_init         (PyObject           *module);

/* ly-python.c */
gpointer   lypy_peek_gobject      (PyObject           *object,
                                   GType               type,
                                   const char         *what);
PyObject  *lypy_raise_gerror      (GError             *error);

G_END_DECLS

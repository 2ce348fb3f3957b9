/* ly-storage-backend.c: what every storage backend, the front end and the
 * server share (see ly-storage-backend-private.h)
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "config.h"

#include <string.h>

#include "ly-errors.h"
#include "ly-i18n-private.h"
#include "ly-storage.h"
#include "ly-storage-backend-private.h"

const LyStorageMethod ly_storage_methods[LY_STORAGE_N_METHODS] = {
  [LY_STORAGE_OP_GET]             = { "StorageGet",           "(s)",     "(mv)" },
  [LY_STORAGE_OP_CONTAINS]        = { "StorageContains",      "(s)",     "(b)" },
  [LY_STORAGE_OP_LIST_KEYS]       = { "StorageListKeys",      "()",      "(as)" },
  [LY_STORAGE_OP_GET_ALL]         = { "StorageGetAll",        "()",      "(a{sv})" },
  [LY_STORAGE_OP_SET]             = { "StorageSet",           "(sv)",    "(b)" },
  [LY_STORAGE_OP_DELETE]          = { "StorageDelete",        "(s)",     "(b)" },
  [LY_STORAGE_OP_COMPARE_AND_SET] = { "StorageCompareAndSet", "(smvmv)", "(bb)" },
  [LY_STORAGE_OP_PUBLISH]         = { "StoragePublish",       "(sv)",    "()" },
  [LY_STORAGE_OP_SUBSCRIBE]       = { "StorageSubscribe",     "(s)",     "()" },
  [LY_STORAGE_OP_UNSUBSCRIBE]     = { "StorageUnsubscribe",   "(s)",     "()" },
  [LY_STORAGE_METHOD_SET_MANY]    = { "StorageSetMany",       "ay",      "(aba(uss))" },
};

/* Operations and results ---------------------------------------------------- */

void
ly_storage_op_init (LyStorageOp     *op,
                    LyStorageOpKind  kind,
                    const char      *name,
                    GVariant        *expected,
                    GVariant        *value)
{
  op->kind = kind;
  op->name = name;
  op->expected = expected != NULL ? g_variant_ref_sink (expected) : NULL;
  op->value = value != NULL ? g_variant_ref_sink (value) : NULL;
  op->origin = NULL;
}

void
ly_storage_op_clear (LyStorageOp *op)
{
  g_clear_pointer (&op->expected, g_variant_unref);
  g_clear_pointer (&op->value, g_variant_unref);
}

void
ly_storage_result_clear (LyStorageResult *result)
{
  g_clear_pointer (&result->value, g_variant_unref);
  g_clear_pointer (&result->keys, g_strfreev);
}

/* Validation -------------------------------------------------------------- */

static gboolean
is_topic_op (LyStorageOpKind kind)
{
  return kind == LY_STORAGE_OP_PUBLISH || kind == LY_STORAGE_OP_SUBSCRIBE ||
         kind == LY_STORAGE_OP_UNSUBSCRIBE;
}

static gboolean
check_name (const char       *name,
            gboolean          topic,
            GError          **error)
{
  gsize length = strlen (name);
  /* translated only on failure: this runs for every operation */
  const char *problem = NULL;

  if (length == 0)
    problem = topic ? _("The topic is empty") : _("The key is empty");
  else if (length > LY_STORAGE_MAX_KEY_LENGTH)
    {
      g_set_error (error, LY_STORAGE_ERROR, LY_STORAGE_ERROR_INVALID_KEY,
                   topic ? _("The topic is %zu bytes long; the limit is %d bytes")
                         : _("The key is %zu bytes long; the limit is %d bytes"),
                   length, LY_STORAGE_MAX_KEY_LENGTH);
      return FALSE;
    }
  else if (!g_utf8_validate (name, length, NULL))
    problem = topic ? _("The topic is not valid UTF-8") : _("The key is not valid UTF-8");

  if (problem != NULL)
    {
      g_set_error_literal (error, LY_STORAGE_ERROR, LY_STORAGE_ERROR_INVALID_KEY, problem);
      return FALSE;
    }

  return TRUE;
}

static gboolean
check_value (GVariant  *value,
             gsize      max_value_size,
             GError   **error)
{
  gsize size;

  if (value == NULL)
    return TRUE;

  size = g_variant_get_size (value);
  if (size > max_value_size)
    {
      g_set_error (error, LY_STORAGE_ERROR, LY_STORAGE_ERROR_TOO_LARGE,
                   _("A value of %zu bytes is larger than the limit of the storage (%zu bytes)"),
                   size, max_value_size);
      return FALSE;
    }

  return TRUE;
}

/* What the front end checks of a caller's operation and the server of a
 * child's: its key or topic, and the size of the value it stores or
 * publishes.  Nothing else reaches a backend. */
gboolean
ly_storage_check_op (const LyStorageOp  *op,
                     gsize               max_value_size,
                     GError            **error)
{
  if (op->name != NULL && !check_name (op->name, is_topic_op (op->kind), error))
    return FALSE;

  return check_value (op->value, max_value_size, error);
}

/* The protocol ------------------------------------------------------------ */

GVariant *
ly_storage_maybe_variant (GVariant *value)
{
  return g_variant_new_maybe (G_VARIANT_TYPE_VARIANT, value != NULL ? g_variant_new_variant (value) : NULL);
}

/* Unwraps an mv: NULL for nothing. */
GVariant *
ly_storage_unmaybe (GVariant *maybe)
{
  g_autoptr(GVariant) inner = g_variant_get_maybe (maybe);

  return inner != NULL ? g_variant_get_variant (inner) : NULL;
}

/* The arguments of @op's request, of the type its method names. */
GVariant *
ly_storage_op_to_args (const LyStorageOp *op)
{
  switch (op->kind)
    {
    case LY_STORAGE_OP_LIST_KEYS:
    case LY_STORAGE_OP_GET_ALL:
      return g_variant_new ("()");
    case LY_STORAGE_OP_SET:
    case LY_STORAGE_OP_PUBLISH:
      return g_variant_new ("(s@v)", op->name, g_variant_new_variant (op->value));
    case LY_STORAGE_OP_COMPARE_AND_SET:
      return g_variant_new ("(s@mv@mv)", op->name, ly_storage_maybe_variant (op->expected),
                            ly_storage_maybe_variant (op->value));
    default:    /* the key or topic alone */
      return g_variant_new ("(s)", op->name);
    }
}

/* The operation of a request whose arguments are of its method's type
 * (the control connection checked them); @op borrows the name from
 * @args. */
void
ly_storage_op_init_from_args (LyStorageOp     *op,
                              LyStorageOpKind  kind,
                              GVariant        *args)
{
  g_autoptr(GVariant) expected = NULL;
  g_autoptr(GVariant) value = NULL;
  const char *name = NULL;

  switch (kind)
    {
    case LY_STORAGE_OP_LIST_KEYS:
    case LY_STORAGE_OP_GET_ALL:
      break;
    case LY_STORAGE_OP_SET:
    case LY_STORAGE_OP_PUBLISH:
      g_variant_get (args, "(&sv)", &name, &value);
      break;
    case LY_STORAGE_OP_COMPARE_AND_SET:
      {
        g_autoptr(GVariant) expected_maybe = NULL;
        g_autoptr(GVariant) value_maybe = NULL;

        g_variant_get (args, "(&s@mv@mv)", &name, &expected_maybe, &value_maybe);
        expected = ly_storage_unmaybe (expected_maybe);
        value = ly_storage_unmaybe (value_maybe);
      }
      break;
    default:    /* the key or topic alone */
      g_variant_get (args, "(&s)", &name);
      break;
    }

  ly_storage_op_init (op, kind, name, expected, value);
}

/* The reply to a request of @kind, of the type its method names. */
GVariant *
ly_storage_result_to_reply (LyStorageOpKind        kind,
                            const LyStorageResult *result)
{
  switch (kind)
    {
    case LY_STORAGE_OP_GET:
      return g_variant_new ("(@mv)", ly_storage_maybe_variant (result->value));
    case LY_STORAGE_OP_GET_ALL:
      return g_variant_new ("(@a{sv})", result->value);
    case LY_STORAGE_OP_LIST_KEYS:
      return g_variant_new ("(^as)", result->keys);
    case LY_STORAGE_OP_COMPARE_AND_SET:
      return g_variant_new ("(bb)", result->done, result->changed);
    case LY_STORAGE_OP_CONTAINS:
    case LY_STORAGE_OP_SET:
    case LY_STORAGE_OP_DELETE:
      return g_variant_new ("(b)", result->done);
    default:
      return g_variant_new ("()");
    }
}

/* The result in a reply of @kind's reply type (the control connection
 * checked it). */
void
ly_storage_result_from_reply (LyStorageOpKind  kind,
                              GVariant        *reply,
                              LyStorageResult *result)
{
  switch (kind)
    {
    case LY_STORAGE_OP_GET:
      {
        g_autoptr(GVariant) maybe = g_variant_get_child_value (reply, 0);

        result->value = ly_storage_unmaybe (maybe);
      }
      break;
    case LY_STORAGE_OP_GET_ALL:
      result->value = g_variant_get_child_value (reply, 0);
      break;
    case LY_STORAGE_OP_LIST_KEYS:
      g_variant_get (reply, "(^as)", &result->keys);
      break;
    case LY_STORAGE_OP_COMPARE_AND_SET:
      g_variant_get (reply, "(bb)", &result->done, &result->changed);
      break;
    case LY_STORAGE_OP_CONTAINS:
    case LY_STORAGE_OP_SET:
    case LY_STORAGE_OP_DELETE:
      g_variant_get (reply, "(b)", &result->done);
      break;
    default:
      break;
    }
}

/* A submitted operation failed and nobody waited for it. */
void
ly_storage_warn_unanswered (const char   *name,
                            const GError *error)
{
  g_warning ("A storage operation on “%s” that nobody waits for failed: %s", name, error->message);
}

/* Backends ------------------------------------------------------------------ */

void
ly_storage_backend_init (LyStorageBackend             *self,
                         const LyStorageBackendVTable *vtable,
                         const LyStorageEvents        *events,
                         gpointer                      front)
{
  self->vtable = vtable;
  self->events = events;
  self->front = front;
}

void
ly_storage_backend_free (LyStorageBackend *self)
{
  self->vtable->free (self);
}

gboolean
ly_storage_backend_run (LyStorageBackend   *self,
                        const LyStorageOp  *op,
                        LyStorageResult    *result,
                        GError            **error)
{
  return self->vtable->run (self, op, result, error);
}

void
ly_storage_backend_submit (LyStorageBackend    *self,
                           const LyStorageOp   *op,
                           LyStorageResultFunc  func,
                           gpointer             user_data)
{
  self->vtable->submit (self, op, func, user_data);
}

void
ly_storage_backend_set_timeout (LyStorageBackend *self,
                                gint64            usec)
{
  if (self->vtable->set_timeout != NULL)
    self->vtable->set_timeout (self, usec);
}

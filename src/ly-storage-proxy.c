/* ly-storage-proxy.c: a managed child's storage, over its control
 * connection to the hub
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "config.h"

#include "ly-context-private.h"
#include "ly-control-private.h"
#include "ly-i18n-private.h"
#include "ly-storage-backend-private.h"
#include "ly-storage-shm-private.h"

/* Every operation is a request to the hub, which applies it in one order
 * for all its children (the methods are listed in
 * ly-storage-backend-private.h).  The hub tells this process about the
 * changes other processes make, and about publications on the topics it
 * subscribed to; about its own changes, the replies say.
 *
 * Pipelined sets: the sets submitted in one main loop iteration travel
 * as one StorageSetMany request, applied by the hub in order, answered by
 * one reply: per set, a message and a dispatch less on both sides.  Any
 * other request sends the pending batch first, so order holds.
 *
 * Reads from shared memory: a hub whose store is in its memory passes
 * its children a table of it (ly-storage-shm.c), which answers GET,
 * CONTAINS, LIST_KEYS and GET_ALL without a round trip.  Not while a
 * change of this process is on its way: a read after a set must see
 * the set, and only the hub's reply says it was applied (the hub
 * updates the table before it replies). */

#define BATCH_MAX_SETS  4096
#define BATCH_MAX_BYTES (1024 * 1024)

typedef struct
{
  LyStorageBackend  parent;

  LyControl        *control;
  LyShmReader      *table;        /* the hub's shared table, or NULL */
  int               changes_in_flight;  /* atomic: sent, not answered */
  GMainContext     *context;      /* the control's */
  int               timeout_msec; /* of a blocking call */
  GSource          *batch_source; /* sends the batch at the next iteration */

  /* @mutex protects the batch (@batch, @batch_calls, @batch_bytes) and
   * is held while a batch is handed to the control connection, so that
   * batches leave in the order they were made */
  GMutex            mutex;
  LyControlBatch   *batch;        /* sets not sent yet: key and value frames */
  GPtrArray        *batch_calls;  /* their Call* */
  gsize             batch_bytes;
} LyStorageProxy;

/* A submitted operation waiting for its reply; what it needs of the op,
 * copied, to report its own change. */
typedef struct
{
  LyStorageProxy      *proxy;
  LyStorageOpKind      kind;
  char                *name;
  GVariant            *value;
  LyStorageResultFunc  func;
  gpointer             func_data;
} Call;

static gboolean
is_change (LyStorageOpKind kind)
{
  return kind == LY_STORAGE_OP_SET || kind == LY_STORAGE_OP_DELETE ||
         kind == LY_STORAGE_OP_COMPARE_AND_SET;
}

static Call *
call_new (LyStorageProxy      *proxy,
          const LyStorageOp   *op,
          LyStorageResultFunc  func,
          gpointer             user_data)
{
  Call *call = g_new0 (Call, 1);

  call->proxy = proxy;
  call->kind = op->kind;
  call->name = g_strdup (op->name);
  call->value = op->value != NULL ? g_variant_ref (op->value) : NULL;
  call->func = func;
  call->func_data = user_data;
  if (is_change (op->kind))
    g_atomic_int_inc (&proxy->changes_in_flight);

  return call;
}

static void
call_free (Call *call)
{
  if (is_change (call->kind))
    g_atomic_int_dec_and_test (&call->proxy->changes_in_flight);
  g_free (call->name);
  g_clear_pointer (&call->value, g_variant_unref);
  g_free (call);
}

/* This process's own changes: the hub does not notify it of them, its
 * reply says whether there was one. */
static void
report_own_change (LyStorageProxy        *self,
                   LyStorageOpKind        kind,
                   const char            *key,
                   GVariant              *value,
                   const LyStorageResult *result)
{
  switch (kind)
    {
    case LY_STORAGE_OP_SET:
      if (result->done)
        ly_storage_backend_changed (&self->parent, key, value, NULL);
      break;
    case LY_STORAGE_OP_DELETE:
      if (result->done)
        ly_storage_backend_changed (&self->parent, key, NULL, NULL);
      break;
    case LY_STORAGE_OP_COMPARE_AND_SET:
      if (result->changed)
        ly_storage_backend_changed (&self->parent, key, value, NULL);
      break;
    default:
      break;
    }
}

/* Hands @result (or @error) to whoever waits for @call. */
static void
call_complete (Call                  *call,
               const LyStorageResult *result,
               const GError          *error)
{
  if (error == NULL)
    report_own_change (call->proxy, call->kind, call->name, call->value, result);

  if (call->func != NULL)
    call->func (result, error, call->func_data);
  else if (error != NULL)
    ly_storage_warn_unanswered (call->name, error);

  call_free (call);
}

/* The batch ------------------------------------------------------------------ */

/* The error of set @index of a batch, or NULL. */
static GError *
batch_item_error (GVariant *failures,
                  guint     index)
{
  gsize n = g_variant_n_children (failures);

  for (gsize i = 0; i < n; i++)
    {
      const char *name, *message;
      guint32 failed;

      g_variant_get_child (failures, i, "(u&s&s)", &failed, &name, &message);
      if (failed == index)
        return ly_control_error_from_variant (g_variant_new ("(ss)", name, message));
    }

  return NULL;
}

static void
batch_replied (GVariant     *reply,
               const GError *error,
               gpointer      user_data)
{
  g_autoptr(GPtrArray) calls = user_data;
  g_autoptr(GError) local_error = NULL;
  g_autoptr(GVariant) changed = NULL;
  g_autoptr(GVariant) failures = NULL;
  const guint8 *flags = NULL;
  gsize n_flags = 0;

  /* each call is freed as it completes */
  g_ptr_array_set_free_func (calls, NULL);

  if (error == NULL)
    {
      g_variant_get (reply, "(@ab@a(uss))", &changed, &failures);
      flags = g_variant_get_fixed_array (changed, &n_flags, 1);
      if (n_flags != calls->len)
        error = local_error = g_error_new (LY_CHANNEL_ERROR, LY_CHANNEL_ERROR_PROTOCOL,
                                           _("The hub answered %u sets with %zu results"),
                                           calls->len, n_flags);
    }

  for (guint i = 0; i < calls->len; i++)
    {
      LyStorageResult result = { error == NULL && flags[i], FALSE, NULL, NULL };
      g_autoptr(GError) item_error = error == NULL ? batch_item_error (failures, i) : NULL;

      call_complete (g_ptr_array_index (calls, i), &result, error != NULL ? error : item_error);
    }
}

/* Sends the pending sets; the caller holds @mutex. */
static void
send_batch_locked (LyStorageProxy *self)
{
  if (self->batch == NULL)
    return;

  self->batch_bytes = 0;
  ly_control_call_batch (self->control, ly_storage_methods[LY_STORAGE_METHOD_SET_MANY].method,
                         g_steal_pointer (&self->batch),
                         G_VARIANT_TYPE (ly_storage_methods[LY_STORAGE_METHOD_SET_MANY].reply_type),
                         batch_replied, g_steal_pointer (&self->batch_calls));
}

static void
send_batch (LyStorageProxy *self)
{
  g_mutex_lock (&self->mutex);
  send_batch_locked (self);
  g_mutex_unlock (&self->mutex);
}

static gboolean
on_batch_source (gpointer user_data)
{
  send_batch (user_data);
  return G_SOURCE_CONTINUE;
}

static gboolean
batch_source_dispatch (GSource     *source,
                       GSourceFunc  callback,
                       gpointer     user_data)
{
  g_source_set_ready_time (source, -1);
  return callback (user_data);
}

static GSourceFuncs batch_source_funcs = {
  .dispatch = batch_source_dispatch,
};

static void
queue_set (LyStorageProxy      *self,
           const LyStorageOp   *op,
           LyStorageResultFunc  func,
           gpointer             user_data)
{
  Call *call = call_new (self, op, func, user_data);

  g_mutex_lock (&self->mutex);
  if (self->batch == NULL)
    {
      self->batch = ly_control_batch_new ();
      self->batch_calls = g_ptr_array_new_with_free_func ((GDestroyNotify) call_free);
      g_source_set_ready_time (self->batch_source, 0);
    }
  self->batch_bytes += ly_control_batch_add_string (self->batch, op->name);
  self->batch_bytes += ly_control_batch_add (self->batch, op->value);
  g_ptr_array_add (self->batch_calls, call);
  /* nobody would run the batch source: no batching then */
  if (self->batch_calls->len >= BATCH_MAX_SETS || self->batch_bytes >= BATCH_MAX_BYTES ||
      !ly_context_will_dispatch (self->context))
    send_batch_locked (self);
  g_mutex_unlock (&self->mutex);
}

/* Operations ------------------------------------------------------------------ */

/* Answers a read from the hub's table when it can. */
static gboolean
read_from_table (LyStorageProxy    *self,
                 const LyStorageOp *op,
                 LyStorageResult   *result)
{
  LyShmAnswer answer;

  if (self->table == NULL || g_atomic_int_get (&self->changes_in_flight) > 0)
    return FALSE;

  switch (op->kind)
    {
    case LY_STORAGE_OP_GET:
      answer = ly_shm_reader_get (self->table, op->name, &result->value);
      break;
    case LY_STORAGE_OP_CONTAINS:
      answer = ly_shm_reader_contains (self->table, op->name);
      result->done = answer == LY_SHM_ANSWER_FOUND;
      break;
    case LY_STORAGE_OP_LIST_KEYS:
      answer = ly_shm_reader_list_keys (self->table, &result->keys);
      break;
    case LY_STORAGE_OP_GET_ALL:
      answer = ly_shm_reader_get_all (self->table, &result->value);
      break;
    default:
      return FALSE;
    }

  return answer != LY_SHM_ANSWER_ASK_HUB;
}

static gboolean
proxy_run (LyStorageBackend   *backend,
           const LyStorageOp  *op,
           LyStorageResult    *result,
           GError            **error)
{
  LyStorageProxy *self = (LyStorageProxy *) backend;
  const LyStorageMethod *method = &ly_storage_methods[op->kind];
  g_autoptr(GVariant) reply = NULL;

  if (read_from_table (self, op, result))
    return TRUE;

  send_batch (self);
  if (is_change (op->kind))
    g_atomic_int_inc (&self->changes_in_flight);
  reply = ly_control_call_sync (self->control, method->method, ly_storage_op_to_args (op),
                                G_VARIANT_TYPE (method->reply_type), self->timeout_msec,
                                NULL, error);
  if (is_change (op->kind))
    g_atomic_int_dec_and_test (&self->changes_in_flight);
  if (reply == NULL)
    return FALSE;

  ly_storage_result_from_reply (op->kind, reply, result);
  report_own_change (self, op->kind, op->name, op->value, result);
  return TRUE;
}

static void
call_replied (GVariant     *reply,
              const GError *error,
              gpointer      user_data)
{
  Call *call = user_data;
  g_auto(LyStorageResult) result = { 0, };

  if (error == NULL)
    ly_storage_result_from_reply (call->kind, reply, &result);
  call_complete (call, &result, error);
}

static void
proxy_submit (LyStorageBackend    *backend,
              const LyStorageOp   *op,
              LyStorageResultFunc  func,
              gpointer             user_data)
{
  LyStorageProxy *self = (LyStorageProxy *) backend;
  const LyStorageMethod *method = &ly_storage_methods[op->kind];
  g_auto(LyStorageResult) result = { 0, };

  if (read_from_table (self, op, &result))
    {
      if (func != NULL)
        func (&result, NULL, user_data);
      return;
    }

  if (op->kind == LY_STORAGE_OP_SET)
    {
      queue_set (self, op, func, user_data);
      return;
    }

  send_batch (self);
  ly_control_call (self->control, method->method, ly_storage_op_to_args (op),
                   G_VARIANT_TYPE (method->reply_type), call_replied,
                   call_new (self, op, func, user_data));
}

/* What the hub tells ------------------------------------------------------------ */

static void
on_changed (LyControl *control,
            guint32    serial,
            GVariant  *args,
            gpointer   user_data)
{
  LyStorageProxy *self = user_data;
  g_autoptr(GVariant) maybe = NULL;
  g_autoptr(GVariant) value = NULL;
  const char *key;

  g_variant_get (args, "(&s@mv)", &key, &maybe);
  value = ly_storage_unmaybe (maybe);
  ly_storage_backend_changed (&self->parent, key, value, NULL);
}

static void
on_published (LyControl *control,
              guint32    serial,
              GVariant  *args,
              gpointer   user_data)
{
  LyStorageProxy *self = user_data;
  g_autoptr(GVariant) value = NULL;
  const char *topic;

  g_variant_get (args, "(&sv)", &topic, &value);
  ly_storage_backend_published (&self->parent, topic, value, NULL);
}

static void
on_changes_missed (LyControl *control,
                   guint32    serial,
                   GVariant  *args,
                   gpointer   user_data)
{
  LyStorageProxy *self = user_data;

  ly_storage_backend_missed (&self->parent);
}

static void
proxy_set_timeout (LyStorageBackend *backend,
                   gint64            usec)
{
  LyStorageProxy *self = (LyStorageProxy *) backend;

  self->timeout_msec = usec > 0 ? (int) MIN (usec / 1000, G_MAXINT) : LY_CONTROL_TIMEOUT_MSEC;
}

static void
proxy_free (LyStorageBackend *backend)
{
  LyStorageProxy *self = (LyStorageProxy *) backend;

  ly_control_remove_handlers (self->control, self);
  g_clear_pointer (&self->table, ly_shm_reader_free);
  g_source_destroy (self->batch_source);
  g_source_unref (self->batch_source);
  g_clear_pointer (&self->batch, ly_control_batch_free);
  g_clear_pointer (&self->batch_calls, g_ptr_array_unref);
  g_object_unref (self->control);
  g_main_context_unref (self->context);
  g_mutex_clear (&self->mutex);
  g_free (self);
}

static const LyStorageBackendVTable proxy_vtable = {
  .name = "proxy",
  .is_proxy = TRUE,
  .free = proxy_free,
  .run = proxy_run,
  .submit = proxy_submit,
  .set_timeout = proxy_set_timeout,
};

LyStorageBackend *
ly_storage_proxy_new (LyControl             *control,
                      LyShmReader           *table,
                      const LyStorageEvents *events,
                      gpointer               front)
{
  LyStorageProxy *self = g_new0 (LyStorageProxy, 1);

  ly_storage_backend_init (&self->parent, &proxy_vtable, events, front);
  g_mutex_init (&self->mutex);
  self->timeout_msec = LY_CONTROL_TIMEOUT_MSEC;
  self->control = g_object_ref (control);
  self->table = table;
  self->context = g_main_context_ref (ly_control_get_context (control));

  self->batch_source = g_source_new (&batch_source_funcs, sizeof (GSource));
  g_source_set_callback (self->batch_source, on_batch_source, self, NULL);
  g_source_set_static_name (self->batch_source, "[liteyuki-comm] storage sets");
  g_source_attach (self->batch_source, self->context);

  ly_control_add_handler (control, LY_STORAGE_CHANGED_METHOD, LY_STORAGE_CHANGED_TYPE,
                          on_changed, self, NULL);
  ly_control_add_handler (control, LY_STORAGE_PUBLISHED_METHOD, LY_STORAGE_PUBLISHED_TYPE,
                          on_published, self, NULL);
  ly_control_add_handler (control, LY_STORAGE_MISSED_METHOD, "()", on_changes_missed, self, NULL);

  return &self->parent;
}

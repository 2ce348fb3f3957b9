/* ly-control.c: requests and replies over a channel (see ly-control-private.h)
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "config.h"

#include "ly-channel-private.h"
#include "ly-control-private.h"
#include "ly-i18n-private.h"
#include "ly-wire-private.h"

#define REQUEST_TYPE         "(usv)"
#define REPLY_TYPE           "(ubv)"
#define PAYLOAD_REQUEST_TYPE "(ust)"

/* A call waiting for its reply: with a callback (@func), or blocking
 * (the other fields, read by the blocked thread under the control's
 * mutex). */
typedef struct
{
  const GVariantType *reply_type;
  LyControlReplyFunc  func;
  gpointer            func_data;
  gboolean            done;
  GVariant           *result;
  GError             *error;
} Call;

/* A method this side serves. */
typedef struct
{
  GVariantType     *args_type;
  LyControlHandler  func;
  gpointer          data;
  GDestroyNotify    destroy;
} Handler;

struct _LyControl
{
  GObject               parent_instance;

  LyChannel            *channel;

  /* @mutex protects @calls, @next_serial, @ended and @handlers */
  GMutex                mutex;
  GHashTable           *calls;       /* serial → Call* */
  guint32               next_serial;
  gboolean              ended;
  GHashTable           *handlers;    /* method → Handler* */

  /* @send_mutex: a request and its payload leave together */
  GMutex                send_mutex;

  /* a payload request waiting for its payload frame; only the channel's
   * dispatch touches these */
  guint32               payload_serial;
  char                 *payload_method;
  guint64               payload_length;
};

G_DEFINE_FINAL_TYPE (LyControl, ly_control, G_TYPE_OBJECT)

/* Completes @call, taken out of the table; called without the lock. */
static void
call_complete (LyControl *self,
               Call      *call,
               GVariant  *result,
               GError    *error)
{
  if (call->func != NULL)
    {
      call->func (result, error, call->func_data);
      g_clear_error (&error);
      g_free (call);
      return;
    }

  g_mutex_lock (&self->mutex);
  call->result = result != NULL ? g_variant_ref (result) : NULL;
  call->error = error;
  call->done = TRUE;
  g_mutex_unlock (&self->mutex);
  ly_channel_wake (self->channel);
}

static Call *
steal_call (LyControl *self,
            guint32    serial)
{
  Call *call = NULL;

  g_mutex_lock (&self->mutex);
  g_hash_table_steal_extended (self->calls, GUINT_TO_POINTER (serial), NULL, (gpointer *) &call);
  g_mutex_unlock (&self->mutex);

  return call;
}

/* An error in the form replies carry it, (ss): its D-Bus name, which
 * names its registered domain and code (or encodes an unregistered
 * one), and its message. */
GVariant *
ly_control_error_to_variant (const GError *error)
{
  g_autofree char *name = g_dbus_error_encode_gerror (error);

  return g_variant_new ("(ss)", name, error->message);
}

/* A floating @value is sunk. */
GError *
ly_control_error_from_variant (GVariant *value)
{
  g_autoptr(GVariant) owned = g_variant_ref_sink (value);
  const char *name, *message;
  GError *error;

  if (!g_variant_is_of_type (value, G_VARIANT_TYPE ("(ss)")))
    return g_error_new (LY_CHANNEL_ERROR, LY_CHANNEL_ERROR_PROTOCOL,
                        _("Received an error reply of type “%s” instead of “(ss)”"),
                        g_variant_get_type_string (value));

  g_variant_get (value, "(&s&s)", &name, &message);
  error = g_dbus_error_new_for_dbus_error (name, message);
  g_dbus_error_strip_remote_error (error);

  return error;
}

static void
handle_reply (LyControl *self,
              GVariant  *message)
{
  g_autoptr(GVariant) value = NULL;
  guint32 serial;
  gboolean ok;
  Call *call;

  g_variant_get (message, "(ubv)", &serial, &ok, &value);
  call = steal_call (self, serial);
  if (call == NULL)
    {
      /* a call that timed out or was cancelled meanwhile */
      g_debug ("Control of “%s”: reply to unknown request %u", ly_channel_get_name (self->channel), serial);
      return;
    }

  if (!ok)
    call_complete (self, call, NULL, ly_control_error_from_variant (value));
  else if (!g_variant_is_of_type (value, call->reply_type))
    call_complete (self, call, NULL,
                   g_error_new (LY_CHANNEL_ERROR, LY_CHANNEL_ERROR_PROTOCOL,
                                _("The peer on “%s” answered with a value of type “%s” instead of “%.*s”"),
                                ly_channel_get_name (self->channel), g_variant_get_type_string (value),
                                (int) g_variant_type_get_string_length (call->reply_type),
                                g_variant_type_peek_string (call->reply_type)));
  else
    call_complete (self, call, value, NULL);
}

static void
handler_free (Handler *handler)
{
  if (handler->destroy != NULL)
    handler->destroy (handler->data);
  g_variant_type_free (handler->args_type);
  g_free (handler);
}

/* Hands a request or notification to the handler of its method, or
 * answers for the missing one: nothing reaches a handler with arguments
 * of a type it did not ask for. */
static void
dispatch_request (LyControl  *self,
                  guint32     serial,
                  const char *method,
                  GVariant   *args)
{
  g_autoptr(GError) error = NULL;
  LyControlHandler func = NULL;
  gpointer data = NULL;
  Handler *handler;

  g_mutex_lock (&self->mutex);
  handler = g_hash_table_lookup (self->handlers, method);
  if (handler == NULL)
    error = g_error_new (G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED,
                         _("The process on “%s” does not know the request “%s”"),
                         ly_channel_get_name (self->channel), method);
  else if (!g_variant_is_of_type (args, handler->args_type))
    error = g_error_new (G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                         _("The request “%s” takes arguments of type “%.*s”, not “%s”"),
                         method, (int) g_variant_type_get_string_length (handler->args_type),
                         g_variant_type_peek_string (handler->args_type),
                         g_variant_get_type_string (args));
  else
    {
      func = handler->func;
      data = handler->data;
    }
  g_mutex_unlock (&self->mutex);

  if (error == NULL)
    func (self, serial, args, data);
  else if (serial != 0)
    ly_control_reply_error (self, serial, error);
  else
    g_debug ("Control of “%s”: notification dropped: %s", ly_channel_get_name (self->channel), error->message);
}

static void
on_received (LyChannel *channel,
             GVariant  *message,
             LyControl *self)
{
  const char *type = g_variant_get_type_string (message);

  if (g_str_equal (type, REQUEST_TYPE))
    {
      g_autoptr(GVariant) args = NULL;
      const char *method;
      guint32 serial;

      g_variant_get (message, "(u&sv)", &serial, &method, &args);
      dispatch_request (self, serial, method, args);
    }
  else if (g_str_equal (type, REPLY_TYPE))
    {
      handle_reply (self, message);
    }
  else if (g_str_equal (type, PAYLOAD_REQUEST_TYPE) && self->payload_method == NULL)
    {
      const char *method;

      g_variant_get (message, "(u&st)", &self->payload_serial, &method, &self->payload_length);
      self->payload_method = g_strdup (method);
    }
  else if (g_str_equal (type, "ay") && self->payload_method != NULL &&
           g_variant_get_size (message) == self->payload_length)
    {
      g_autofree char *method = g_steal_pointer (&self->payload_method);

      dispatch_request (self, self->payload_serial, method, message);
    }
  else
    {
      /* The peer speaks something else: this connection is useless and
       * may be hostile.  Cut it; the process goes on. */
      g_warning ("Control connection “%s” received a message of type “%s”; closing it",
                 ly_channel_get_name (channel), type);
      ly_channel_close (channel);
    }
}

static void
fail_all_calls (LyControl    *self,
                const GError *reason)
{
  GHashTableIter iter;
  GPtrArray *calls = g_ptr_array_new ();
  Call *call;

  g_mutex_lock (&self->mutex);
  self->ended = TRUE;
  g_hash_table_iter_init (&iter, self->calls);
  while (g_hash_table_iter_next (&iter, NULL, (gpointer *) &call))
    {
      g_ptr_array_add (calls, call);
      g_hash_table_iter_steal (&iter);
    }
  g_mutex_unlock (&self->mutex);

  for (guint i = 0; i < calls->len; i++)
    call_complete (self, g_ptr_array_index (calls, i), NULL,
                   reason != NULL ? g_error_copy (reason)
                                  : g_error_new (LY_CHANNEL_ERROR, LY_CHANNEL_ERROR_CLOSED,
                                                 _("The control connection “%s” closed before the reply came"),
                                                 ly_channel_get_name (self->channel)));
  g_ptr_array_unref (calls);
}

static void
on_closed (LyChannel    *channel,
           const GError *error,
           LyControl    *self)
{
  fail_all_calls (self, error);
}

static void
ly_control_dispose (GObject *object)
{
  LyControl *self = LY_CONTROL (object);

  if (self->channel != NULL)
    {
      ly_channel_set_message_func (self->channel, NULL, NULL);
      g_signal_handlers_disconnect_by_data (self->channel, self);
      fail_all_calls (self, NULL);
      g_clear_object (&self->channel);
    }

  G_OBJECT_CLASS (ly_control_parent_class)->dispose (object);
}

static void
ly_control_finalize (GObject *object)
{
  LyControl *self = LY_CONTROL (object);

  g_hash_table_unref (self->calls);
  g_hash_table_unref (self->handlers);
  g_free (self->payload_method);
  g_mutex_clear (&self->mutex);
  g_mutex_clear (&self->send_mutex);

  G_OBJECT_CLASS (ly_control_parent_class)->finalize (object);
}

static void
ly_control_class_init (LyControlClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);

  object_class->dispose = ly_control_dispose;
  object_class->finalize = ly_control_finalize;

  /* error replies name the domain: it must be known to decode them */
  (void) LY_CHANNEL_ERROR;
}

static void
ly_control_init (LyControl *self)
{
  g_mutex_init (&self->mutex);
  g_mutex_init (&self->send_mutex);
  self->calls = g_hash_table_new (NULL, NULL);
  self->handlers = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, (GDestroyNotify) handler_free);
  self->next_serial = 1;
}

/* Takes over @channel (which must be fresh: it becomes passive).  It
 * serves no method until handlers are added. */
LyControl *
ly_control_new (LyChannel *channel)
{
  LyControl *self = g_object_new (LY_TYPE_CONTROL, NULL);

  self->channel = g_object_ref (channel);
  ly_channel_set_message_func (channel, (LyChannelMessageFunc) on_received, self);
  g_signal_connect (channel, "closed", G_CALLBACK (on_closed), self);

  return self;
}

LyChannel *
ly_control_get_channel (LyControl *self)
{
  return self->channel;
}

/* Where requests, notifications and replies are dispatched. */
GMainContext *
ly_control_get_context (LyControl *self)
{
  return ly_channel_get_context (self->channel);
}

const char *
ly_control_get_name (LyControl *self)
{
  return ly_channel_get_name (self->channel);
}

/* Serves @method: requests and notifications whose arguments are of
 * @args_type go to @func, in the channel's context.  A second handler
 * for a method replaces the first. */
void
ly_control_add_handler (LyControl        *self,
                        const char       *method,
                        const char       *args_type,
                        LyControlHandler  func,
                        gpointer          user_data,
                        GDestroyNotify    destroy)
{
  Handler *handler = g_new0 (Handler, 1);

  g_return_if_fail (g_variant_type_string_is_valid (args_type));

  handler->args_type = g_variant_type_new (args_type);
  handler->func = func;
  handler->data = user_data;
  handler->destroy = destroy;

  g_mutex_lock (&self->mutex);
  g_hash_table_replace (self->handlers, g_strdup (method), handler);
  g_mutex_unlock (&self->mutex);
}

/* Stops serving the methods whose handlers have @user_data.  Call it in
 * the channel's context: a handler running in another thread could
 * still be using its data. */
void
ly_control_remove_handlers (LyControl *self,
                            gpointer   user_data)
{
  g_autoptr(GPtrArray) removed = g_ptr_array_new_with_free_func ((GDestroyNotify) handler_free);
  GHashTableIter iter;
  Handler *handler;
  char *method;

  /* destroy notifies run without the lock: they may call back */
  g_mutex_lock (&self->mutex);
  g_hash_table_iter_init (&iter, self->handlers);
  while (g_hash_table_iter_next (&iter, (gpointer *) &method, (gpointer *) &handler))
    if (handler->data == user_data)
      {
        g_ptr_array_add (removed, handler);
        g_hash_table_iter_steal (&iter);
        g_free (method);
      }
  g_mutex_unlock (&self->mutex);
}

static void
send_or_warn (LyControl *self,
              GVariant  *message)
{
  g_autoptr(GError) error = NULL;
  gboolean sent;

  g_mutex_lock (&self->send_mutex);
  sent = ly_channel_send (self->channel, message, &error);
  g_mutex_unlock (&self->send_mutex);

  if (sent)
    return;

  /* A peer that sends requests without reading the replies has filled
   * the queue: serving it further would take memory without bound, and
   * a reply cannot be dropped.  Cut it; nobody else is affected. */
  if (g_error_matches (error, LY_CHANNEL_ERROR, LY_CHANNEL_ERROR_FULL))
    {
      const char *name = ly_channel_get_name (self->channel);

      g_warning (_("The process on “%s” sends requests without reading the replies "
                   "(%zu bytes wait for it); the connection is cut"),
                 name, ly_channel_get_queued_bytes (self->channel));
      ly_channel_abort (self->channel,
                        g_error_new (LY_CHANNEL_ERROR, LY_CHANNEL_ERROR_FULL,
                                     _("The connection “%s” was cut: its process sent requests "
                                       "without reading the replies"), name));
      return;
    }

  /* otherwise the peer is gone: a reply has nobody to reach */
  g_debug ("Control of “%s”: %s", ly_channel_get_name (self->channel), error->message);
}

void
ly_control_reply (LyControl *self,
                  guint32    serial,
                  GVariant  *result)
{
  g_autoptr(GVariant) owned = g_variant_ref_sink (result != NULL ? result : g_variant_new ("()"));

  g_return_if_fail (serial != 0);

  send_or_warn (self, g_variant_new (REPLY_TYPE, serial, TRUE, owned));
}

void
ly_control_reply_error (LyControl    *self,
                        guint32       serial,
                        const GError *error)
{
  g_return_if_fail (serial != 0);

  send_or_warn (self, g_variant_new (REPLY_TYPE, serial, FALSE, ly_control_error_to_variant (error)));
}

gboolean
ly_control_notify (LyControl   *self,
                   const char  *method,
                   GVariant    *args,
                   GError     **error)
{
  g_autoptr(GVariant) owned = g_variant_ref_sink (args != NULL ? args : g_variant_new ("()"));
  gboolean sent;

  g_mutex_lock (&self->send_mutex);
  sent = ly_channel_send (self->channel, g_variant_new (REQUEST_TYPE, 0, method, owned), error);
  g_mutex_unlock (&self->send_mutex);

  return sent;
}

static void
request_sent (GObject      *source,
              GAsyncResult *result,
              gpointer      user_data)
{
  /* a request that could not be written is failed with all the others
   * when the channel closes */
  ly_channel_send_finish (LY_CHANNEL (source), result, NULL);
}

/* A request waits for room rather than fail: a burst of pipelined calls
 * must not lose any.  Later requests queue behind it, in order. */
static gboolean
send_request (LyControl  *self,
              GVariant   *request,
              GError    **error)
{
  g_autoptr(GVariant) owned = g_variant_ref_sink (request);
  g_autoptr(GError) local_error = NULL;

  if (ly_channel_send (self->channel, owned, &local_error))
    return TRUE;

  if (!g_error_matches (local_error, LY_CHANNEL_ERROR, LY_CHANNEL_ERROR_FULL))
    {
      g_propagate_error (error, g_steal_pointer (&local_error));
      return FALSE;
    }

  ly_channel_send_async (self->channel, owned, NULL, request_sent, NULL);
  return TRUE;
}

/* Registers @call and sends the request (and @payload, if any, in the
 * frame right after it); FALSE with @error when it could not be sent. */
static gboolean
start_call (LyControl   *self,
            Call        *call,
            const char  *method,
            GVariant    *args,
            GBytes      *payload,
            guint32     *serial,
            GError     **error)
{
  g_autoptr(GVariant) owned = g_variant_ref_sink (args != NULL ? args : g_variant_new ("()"));
  gboolean sent;

  g_mutex_lock (&self->mutex);
  if (self->ended)
    {
      g_mutex_unlock (&self->mutex);
      g_set_error (error, LY_CHANNEL_ERROR, LY_CHANNEL_ERROR_CLOSED,
                   _("The control connection “%s” is closed"), ly_channel_get_name (self->channel));
      return FALSE;
    }
  *serial = self->next_serial++;
  if (self->next_serial == 0)
    self->next_serial = 1;
  g_hash_table_insert (self->calls, GUINT_TO_POINTER (*serial), call);
  g_mutex_unlock (&self->mutex);

  g_mutex_lock (&self->send_mutex);
  if (payload == NULL)
    sent = send_request (self, g_variant_new (REQUEST_TYPE, *serial, method, owned), error);
  else
    sent = send_request (self, g_variant_new (PAYLOAD_REQUEST_TYPE, *serial, method,
                                              (guint64) g_bytes_get_size (payload)), error) &&
           send_request (self, g_variant_new_from_bytes (G_VARIANT_TYPE_BYTESTRING, payload, TRUE), error);
  g_mutex_unlock (&self->send_mutex);

  if (!sent)
    {
      steal_call (self, *serial);
      return FALSE;
    }

  return TRUE;
}

static void
call_with_func (LyControl          *self,
                const char         *method,
                GVariant           *args,
                GBytes             *payload,
                const GVariantType *reply_type,
                LyControlReplyFunc  func,
                gpointer            user_data)
{
  g_autoptr(GError) error = NULL;
  Call *call = g_new0 (Call, 1);
  guint32 serial;

  call->reply_type = reply_type;
  call->func = func;
  call->func_data = user_data;

  if (!start_call (self, call, method, args, payload, &serial, &error))
    {
      g_free (call);
      func (NULL, error, user_data);
    }
}

/* The lightest call: no GTask, the reply goes to @func. */
void
ly_control_call (LyControl          *self,
                 const char         *method,
                 GVariant           *args,
                 const GVariantType *reply_type,
                 LyControlReplyFunc  func,
                 gpointer            user_data)
{
  call_with_func (self, method, args, NULL, reply_type, func, user_data);
}

/* Batches ------------------------------------------------------------------ */

struct _LyControlBatch
{
  LyWireWriter *frames;
};

LyControlBatch *
ly_control_batch_new (void)
{
  LyControlBatch *batch = g_new0 (LyControlBatch, 1);

  batch->frames = ly_wire_writer_new ();
  return batch;
}

void
ly_control_batch_free (LyControlBatch *batch)
{
  ly_wire_writer_free (batch->frames);
  g_free (batch);
}

/* Appends @item (a floating one is sunk); returns the bytes it takes. */
gsize
ly_control_batch_add (LyControlBatch *batch,
                      GVariant       *item)
{
  g_autoptr(GVariant) owned = g_variant_ref_sink (item);

  return ly_wire_writer_append (batch->frames, LY_WIRE_KIND_MESSAGE, owned);
}

/* ly_control_batch_add() of a string, without a GVariant. */
gsize
ly_control_batch_add_string (LyControlBatch *batch,
                             const char     *item)
{
  return ly_wire_writer_append_string (batch->frames, item);
}

/* Sends @batch (taken) as the argument of @method.  It travels as a
 * frame of its own, which the reader checks at memory speed (a byte
 * string inside a tuple is checked byte by byte); the handler, which
 * registered @method with the type `ay`, unpacks it with
 * ly_control_batch_unpack(). */
void
ly_control_call_batch (LyControl          *self,
                       const char         *method,
                       LyControlBatch     *batch,
                       const GVariantType *reply_type,
                       LyControlReplyFunc  func,
                       gpointer            user_data)
{
  g_autoptr(GBytes) payload = ly_wire_writer_steal_bytes (batch->frames);

  ly_control_batch_free (batch);
  call_with_func (self, method, NULL, payload, reply_type, func, user_data);
}

/* The items of a batch, checked as strictly as anything read from a
 * connection (they come from another process). */
gboolean
ly_control_batch_unpack (GVariant   *payload,
                         gsize       max_item_size,
                         GPtrArray  *items,
                         GError    **error)
{
  gsize size;
  const guint8 *data = g_variant_get_fixed_array (payload, &size, 1);

  return ly_wire_decode_messages (data, size, max_item_size, items, error);
}

typedef struct
{
  LyControl *self;
  Call      *call;
} SyncWait;

static gboolean
sync_call_done (gpointer data)
{
  SyncWait *wait = data;
  gboolean done;

  g_mutex_lock (&wait->self->mutex);
  done = wait->call->done;
  g_mutex_unlock (&wait->self->mutex);

  return done;
}

/* Blocks for the reply, driving the channel as a blocking receive does. */
GVariant *
ly_control_call_sync (LyControl           *self,
                      const char          *method,
                      GVariant            *args,
                      const GVariantType  *reply_type,
                      int                  timeout_msec,
                      GCancellable        *cancellable,
                      GError             **error)
{
  Call call = { reply_type, NULL, NULL, FALSE, NULL, NULL };
  SyncWait wait = { self, &call };
  gint64 deadline = timeout_msec < 0 ? -1 : g_get_monotonic_time () + (gint64) timeout_msec * 1000;
  guint32 serial;

  if (!start_call (self, &call, method, args, NULL, &serial, error))
    return NULL;

  if (!ly_channel_wait_until (self->channel, sync_call_done, &wait, deadline, cancellable, error))
    {
      /* timed out or cancelled: forget the call, unless its reply is
       * being delivered right now, into @call on this stack */
      if (steal_call (self, serial) != NULL)
        return NULL;
      g_clear_error (error);
      while (!sync_call_done (&wait))
        g_thread_yield ();
    }

  if (call.error != NULL)
    {
      g_clear_pointer (&call.result, g_variant_unref);
      g_propagate_error (error, call.error);
      return NULL;
    }

  return call.result;
}

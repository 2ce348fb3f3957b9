/* ly-storage.c
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "config.h"

#include <string.h>

#include "ly-channel-private.h"
#include "ly-context-private.h"
#include "ly-i18n-private.h"
#include "ly-registry.h"
#include "ly-runtime-private.h"
#include "ly-storage-private.h"
#include "ly-wire-private.h"

/**
 * LyStorage:
 *
 * A key-value storage shared by every process of a hub, with
 * publish/subscribe: the original's `shared_memory`, exact and
 * inspectable.
 *
 * Keys are non-empty UTF-8 strings of at most %LY_STORAGE_MAX_KEY_LENGTH
 * bytes; values are [struct@GLib.Variant]s of any type, up to
 * #LyStorage:max-value-size.  The same API works in every process:
 * [func@Ly.Storage.get_default] is the authoritative store in the hub
 * and a proxy in a managed child, whose every operation is a request to
 * the hub over the child's control connection (one round trip; the async
 * calls pipeline).  The hub applies every operation in one order; a
 * child's ly_storage_set() returns after the hub applied it, so any
 * process that reads afterwards sees it.
 *
 * #LyStorage::changed is emitted in every process after each real change
 * (never for a set to an equal value), detailed by the key: connect to
 * `changed::counter` to hear about `counter` only.  A publication
 * reaches, as #LyStorage::published detailed by the topic, every process
 * that subscribed to the topic (the hub included), in order per topic.
 * Signals are emitted in the thread-default main context of the thread
 * that made the storage (in a child, the context of its channels).
 *
 * Every method may be called from any thread.
 */

typedef enum
{
  EVENT_CHANGED,
  EVENT_PUBLISHED,
} EventKind;

typedef struct
{
  EventKind  kind;
  char      *name;
  GVariant  *value;    /* NULL for a deleted key */
  gboolean   emit;     /* FALSE: a publication only the monitors see */
} Event;

typedef struct
{
  LyStorageMonitor func;
  gpointer         data;
} Monitor;

/* A child connected to the authoritative store. */
typedef struct
{
  LyControl  *control;
  GHashTable *topics;      /* topics it subscribed to */
  gboolean    warned;
} Peer;

struct _LyStorage
{
  GObject       parent_instance;

  GMutex        mutex;
  GMainContext *context;
  GSource      *event_source;
  GQueue        events;              /* of Event*, to emit in @context */
  gboolean      draining;
  gsize         max_value_size;

  /* the authoritative store */
  GHashTable   *values;              /* key → GVariant */
  GHashTable   *subscriptions;       /* topics this process subscribed to */
  GPtrArray    *peers;               /* of Peer* */
  GArray       *monitors;            /* of Monitor */

  /* a child's proxy */
  LyControl    *control;
  LyWireWriter *batch;               /* async sets not sent yet: key and value frames */
  GPtrArray    *batch_calls;         /* their SetCall*, NULL for no callback */
  gsize         batch_bytes;
  GSource      *batch_source;        /* sends the batch at the next iteration */
};

enum {
  PROP_0,
  PROP_MAX_VALUE_SIZE,
  N_PROPS
};

enum {
  CHANGED,
  PUBLISHED,
  N_SIGNALS
};

static GParamSpec *properties[N_PROPS];
static guint signals[N_SIGNALS];

G_DEFINE_FINAL_TYPE (LyStorage, ly_storage, G_TYPE_OBJECT)

/* Events ------------------------------------------------------------------ */

static void
event_free (Event *event)
{
  g_free (event->name);
  g_clear_pointer (&event->value, g_variant_unref);
  g_free (event);
}

static void
queue_event_locked (LyStorage  *self,
                    EventKind   kind,
                    const char *name,
                    GVariant   *value,
                    gboolean    emit)
{
  Event *event;

  if (!emit && self->monitors->len == 0)
    return;

  event = g_new0 (Event, 1);
  event->kind = kind;
  event->name = g_strdup (name);
  event->value = value != NULL ? g_variant_ref (value) : NULL;
  event->emit = emit;
  g_queue_push_tail (&self->events, event);
}

/* Monitors (the D-Bus surface) see every change and every publication,
 * subscribed or not, in the storage's context. */
void
ly_storage_add_monitor (LyStorage        *self,
                        LyStorageMonitor  func,
                        gpointer          data)
{
  Monitor monitor = { func, data };

  g_mutex_lock (&self->mutex);
  g_array_append_val (self->monitors, monitor);
  g_mutex_unlock (&self->mutex);
}

void
ly_storage_remove_monitor (LyStorage        *self,
                           LyStorageMonitor  func,
                           gpointer          data)
{
  g_mutex_lock (&self->mutex);
  for (guint i = 0; i < self->monitors->len; i++)
    {
      Monitor *monitor = &g_array_index (self->monitors, Monitor, i);

      if (monitor->func == func && monitor->data == data)
        {
          g_array_remove_index (self->monitors, i);
          break;
        }
    }
  g_mutex_unlock (&self->mutex);
}

static void
call_monitors_locked (LyStorage *self,
                      Event     *event)
{
  g_autoptr(GArray) monitors = g_array_copy (self->monitors);

  g_mutex_unlock (&self->mutex);
  for (guint i = 0; i < monitors->len; i++)
    {
      Monitor *monitor = &g_array_index (monitors, Monitor, i);

      monitor->func (self, event->kind == EVENT_PUBLISHED, event->name, event->value, monitor->data);
    }
  g_mutex_lock (&self->mutex);
}

/* Emits the queued events, in order.  A handler that changes the storage
 * queues more: the loop emits them after the current one. */
static void
drain_events (LyStorage *self)
{
  Event *event;

  g_mutex_lock (&self->mutex);
  if (self->draining)
    {
      g_mutex_unlock (&self->mutex);
      return;
    }
  self->draining = TRUE;

  while ((event = g_queue_pop_head (&self->events)) != NULL)
    {
      /* try_string: a quark per key ever seen would grow without bound;
       * a handler's detail made its quark already */
      GQuark detail = g_quark_try_string (event->name);

      if (self->monitors->len > 0)
        call_monitors_locked (self, event);

      if (event->emit)
        {
          g_mutex_unlock (&self->mutex);
          g_signal_emit (self, signals[event->kind == EVENT_CHANGED ? CHANGED : PUBLISHED],
                         detail, event->name, event->value);
          g_mutex_lock (&self->mutex);
        }
      event_free (event);
    }

  self->draining = FALSE;
  g_mutex_unlock (&self->mutex);
}

/* Emits now when this thread may run the storage's context, otherwise
 * from the context. */
static void
flush_events (LyStorage *self)
{
  gboolean pending;

  g_mutex_lock (&self->mutex);
  pending = !g_queue_is_empty (&self->events);
  g_mutex_unlock (&self->mutex);

  if (!pending)
    return;

  if (g_main_context_acquire (self->context))
    {
      drain_events (self);
      g_main_context_release (self->context);
    }
  else
    g_source_set_ready_time (self->event_source, 0);
}

static gboolean
event_source_dispatch (GSource     *source,
                       GSourceFunc  callback,
                       gpointer     user_data)
{
  g_source_set_ready_time (source, -1);
  return callback (user_data);
}

static GSourceFuncs event_source_funcs = {
  .dispatch = event_source_dispatch,
};

static gboolean
on_event_source (gpointer user_data)
{
  drain_events (user_data);
  return G_SOURCE_CONTINUE;
}

/* Validation -------------------------------------------------------------- */

typedef enum
{
  NAME_KEY,
  NAME_TOPIC,
} NameKind;

static gboolean
check_name (const char  *name,
            NameKind     kind,
            GError     **error)
{
  gsize length = strlen (name);
  /* translated only on failure: this runs for every operation */
  const char *problem = NULL;

  if (length == 0)
    problem = kind == NAME_KEY ? _("The key is empty") : _("The topic is empty");
  else if (length > LY_STORAGE_MAX_KEY_LENGTH)
    {
      g_set_error (error, LY_STORAGE_ERROR, LY_STORAGE_ERROR_INVALID_KEY,
                   kind == NAME_KEY ? _("The key is %zu bytes long; the limit is %d bytes")
                                    : _("The topic is %zu bytes long; the limit is %d bytes"),
                   length, LY_STORAGE_MAX_KEY_LENGTH);
      return FALSE;
    }
  else if (!g_utf8_validate (name, length, NULL))
    problem = kind == NAME_KEY ? _("The key is not valid UTF-8") : _("The topic is not valid UTF-8");

  if (problem != NULL)
    {
      g_set_error_literal (error, LY_STORAGE_ERROR, LY_STORAGE_ERROR_INVALID_KEY, problem);
      return FALSE;
    }

  return TRUE;
}

static gboolean
check_key (const char  *key,
           GError     **error)
{
  return check_name (key, NAME_KEY, error);
}

static gboolean
check_topic (const char  *topic,
             GError     **error)
{
  return check_name (topic, NAME_TOPIC, error);
}

static gboolean
check_value (LyStorage  *self,
             GVariant   *value,
             GError    **error)
{
  gsize size;

  if (value == NULL)
    return TRUE;

  size = g_variant_get_size (value);
  if (size > self->max_value_size)
    {
      g_set_error (error, LY_STORAGE_ERROR, LY_STORAGE_ERROR_TOO_LARGE,
                   _("A value of %zu bytes is larger than the limit of the storage (%zu bytes)"),
                   size, self->max_value_size);
      return FALSE;
    }

  return TRUE;
}

/* The authoritative store ------------------------------------------------- */

/* Tells every peer but @origin about a change; a peer whose queue is full
 * misses it (and the hub says so once): the hub never waits for a child. */
static void
notify_peers_locked (LyStorage  *self,
                     LyControl  *origin,
                     const char *method,
                     GVariant   *args,
                     const char *topic)
{
  g_autoptr(GVariant) owned = g_variant_ref_sink (args);

  for (guint i = 0; i < self->peers->len; i++)
    {
      Peer *peer = g_ptr_array_index (self->peers, i);
      g_autoptr(GError) error = NULL;

      if (peer->control == origin)
        continue;
      if (topic != NULL && !g_hash_table_contains (peer->topics, topic))
        continue;

      if (!ly_control_notify (peer->control, method, owned, &error) && !peer->warned &&
          !g_error_matches (error, LY_CHANNEL_ERROR, LY_CHANNEL_ERROR_CLOSED))
        {
          peer->warned = TRUE;
          g_warning ("A child misses storage notifications: %s", error->message);
        }
    }
}

/* Sets @key to @value, or deletes it when @value is NULL.  Returns
 * whether that changed anything: setting an equal value does not. */
static gboolean
apply_set_locked (LyStorage  *self,
                  LyControl  *origin,
                  const char *key,
                  GVariant   *value)
{
  GVariant *old = g_hash_table_lookup (self->values, key);

  if (value == NULL ? old == NULL : (old != NULL && g_variant_equal (old, value)))
    return FALSE;

  if (value != NULL)
    g_hash_table_replace (self->values, g_strdup (key), g_variant_ref_sink (value));
  else
    g_hash_table_remove (self->values, key);

  queue_event_locked (self, EVENT_CHANGED, key, value, TRUE);
  notify_peers_locked (self, origin, "StorageChanged",
                       g_variant_new ("(s@mv)", key, g_variant_new_maybe (G_VARIANT_TYPE_VARIANT,
                                                                           value != NULL ? g_variant_new_variant (value) : NULL)),
                       NULL);
  return TRUE;
}

static gboolean
matches_locked (LyStorage  *self,
                const char *key,
                GVariant   *expected)
{
  GVariant *current = g_hash_table_lookup (self->values, key);

  return expected == NULL ? current == NULL : (current != NULL && g_variant_equal (current, expected));
}

static void
apply_publish_locked (LyStorage  *self,
                      const char *topic,
                      GVariant   *value)
{
  queue_event_locked (self, EVENT_PUBLISHED, topic, value,
                      g_hash_table_contains (self->subscriptions, topic));
  notify_peers_locked (self, NULL, "StoragePublished", g_variant_new ("(sv)", topic, value), topic);
}

static Peer *
find_peer_locked (LyStorage *self,
                  LyControl *control)
{
  for (guint i = 0; i < self->peers->len; i++)
    {
      Peer *peer = g_ptr_array_index (self->peers, i);

      if (peer->control == control)
        return peer;
    }

  return NULL;
}

static void
peer_free (Peer *peer)
{
  g_object_unref (peer->control);
  g_hash_table_unref (peer->topics);
  g_free (peer);
}

void
ly_storage_add_peer (LyStorage *self,
                     LyControl *control)
{
  Peer *peer = g_new0 (Peer, 1);

  peer->control = g_object_ref (control);
  peer->topics = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);

  g_mutex_lock (&self->mutex);
  g_ptr_array_add (self->peers, peer);
  g_mutex_unlock (&self->mutex);
}

void
ly_storage_remove_peer (LyStorage *self,
                        LyControl *control)
{
  g_mutex_lock (&self->mutex);
  for (guint i = 0; i < self->peers->len; i++)
    if (((Peer *) g_ptr_array_index (self->peers, i))->control == control)
      {
        g_ptr_array_remove_index (self->peers, i);
        break;
      }
  g_mutex_unlock (&self->mutex);
}

/* The hub's side of the requests ------------------------------------------ */

static gboolean
check_args (const char  *method,
            GVariant    *args,
            const char  *type,
            GError     **error)
{
  if (g_variant_is_of_type (args, G_VARIANT_TYPE (type)))
    return TRUE;

  g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
               _("The request “%s” takes arguments of type “%s”, not “%s”"),
               method, type, g_variant_get_type_string (args));
  return FALSE;
}

static GVariant *
maybe_variant (GVariant *value)
{
  return g_variant_new_maybe (G_VARIANT_TYPE_VARIANT, value != NULL ? g_variant_new_variant (value) : NULL);
}

/* Unwraps an mv argument: NULL for nothing. */
static GVariant *
unmaybe (GVariant *maybe)
{
  g_autoptr(GVariant) inner = g_variant_get_maybe (maybe);

  return inner != NULL ? g_variant_get_variant (inner) : NULL;
}

/* A batch of sets, in order: the changed flags, and the sets refused
 * (index and message) — the others are applied all the same.  The batch
 * is one `ay` of wire frames, key (`s`) then value, checked as strictly
 * as anything read from a connection. */
static GVariant *
apply_set_many (LyStorage   *self,
                LyControl   *origin,
                GVariant    *args,
                GError     **error)
{
  g_autoptr(GPtrArray) frames = g_ptr_array_new_with_free_func ((GDestroyNotify) g_variant_unref);
  g_autofree guint8 *changed = NULL;
  GVariantBuilder failures;
  const guint8 *data;
  gsize size, n;

  if (!check_args ("StorageSetMany", args, "ay", error))
    return NULL;

  data = g_variant_get_fixed_array (args, &size, 1);
  if (!ly_wire_decode_messages (data, size, self->max_value_size + 64 * 1024, frames, error))
    return NULL;

  n = frames->len / 2;
  for (gsize i = 0; i < frames->len; i += 2)
    if (i + 1 >= frames->len ||
        !g_variant_is_of_type (g_ptr_array_index (frames, i), G_VARIANT_TYPE_STRING))
      {
        g_set_error_literal (error, LY_CHANNEL_ERROR, LY_CHANNEL_ERROR_PROTOCOL,
                             _("A batch of sets is not made of key and value pairs"));
        return NULL;
      }

  changed = g_malloc0 (MAX (n, 1));
  g_variant_builder_init (&failures, G_VARIANT_TYPE ("a(us)"));

  g_mutex_lock (&self->mutex);
  for (gsize i = 0; i < n; i++)
    {
      const char *key = g_variant_get_string (g_ptr_array_index (frames, 2 * i), NULL);
      GVariant *value = g_ptr_array_index (frames, 2 * i + 1);
      g_autoptr(GError) set_error = NULL;

      if (check_key (key, &set_error) && check_value (self, value, &set_error))
        changed[i] = apply_set_locked (self, origin, key, value);
      else
        g_variant_builder_add (&failures, "(us)", (guint32) i, set_error->message);
    }
  g_mutex_unlock (&self->mutex);

  return g_variant_new ("(@ab@a(us))",
                        g_variant_new_fixed_array (G_VARIANT_TYPE_BOOLEAN, changed, n, 1),
                        g_variant_builder_end (&failures));
}

/* Applies one request of a child; the reply, or NULL with @error. */
static GVariant *
apply_request (LyStorage   *self,
               LyControl   *origin,
               const char  *method,
               GVariant    *args,
               GError     **error)
{
  g_autoptr(GVariant) value = NULL;
  g_autoptr(GVariant) expected = NULL;
  GVariant *reply = NULL;
  const char *name = NULL;

  if (g_str_equal (method, "StorageSetMany"))
    return apply_set_many (self, origin, args, error);

  if (g_str_equal (method, "StorageSet") || g_str_equal (method, "StoragePublish"))
    {
      if (!check_args (method, args, "(sv)", error))
        return NULL;
      g_variant_get (args, "(&sv)", &name, &value);
      if (!(g_str_equal (method, "StorageSet") ? check_key (name, error) : check_topic (name, error)) ||
          !check_value (self, value, error))
        return NULL;
    }
  else if (g_str_equal (method, "StorageCompareAndSet"))
    {
      g_autoptr(GVariant) expected_maybe = NULL;
      g_autoptr(GVariant) value_maybe = NULL;

      if (!check_args (method, args, "(smvmv)", error))
        return NULL;
      g_variant_get (args, "(&s@mv@mv)", &name, &expected_maybe, &value_maybe);
      expected = unmaybe (expected_maybe);
      value = unmaybe (value_maybe);
      if (!check_key (name, error) || !check_value (self, value, error))
        return NULL;
    }
  else if (g_str_equal (method, "StorageListKeys") || g_str_equal (method, "StorageGetAll"))
    {
      if (!check_args (method, args, "()", error))
        return NULL;
    }
  else
    {
      if (!check_args (method, args, "(s)", error))
        return NULL;
      g_variant_get (args, "(&s)", &name);
      if (!(g_str_has_suffix (method, "scribe") ? check_topic (name, error) : check_key (name, error)))
        return NULL;
    }

  g_mutex_lock (&self->mutex);

  if (g_str_equal (method, "StorageSet"))
    reply = g_variant_new ("(b)", apply_set_locked (self, origin, name, value));
  else if (g_str_equal (method, "StorageGet"))
    reply = g_variant_new ("(@mv)", maybe_variant (g_hash_table_lookup (self->values, name)));
  else if (g_str_equal (method, "StorageDelete"))
    reply = g_variant_new ("(b)", apply_set_locked (self, origin, name, NULL));
  else if (g_str_equal (method, "StorageContains"))
    reply = g_variant_new ("(b)", g_hash_table_contains (self->values, name));
  else if (g_str_equal (method, "StorageCompareAndSet"))
    {
      gboolean swapped = matches_locked (self, name, expected);
      gboolean changed = swapped && apply_set_locked (self, origin, name, value);

      reply = g_variant_new ("(bb)", swapped, changed);
    }
  else if (g_str_equal (method, "StoragePublish"))
    {
      apply_publish_locked (self, name, value);
      reply = g_variant_new ("()");
    }
  else if (g_str_equal (method, "StorageSubscribe") || g_str_equal (method, "StorageUnsubscribe"))
    {
      Peer *peer = find_peer_locked (self, origin);

      if (peer != NULL && g_str_equal (method, "StorageSubscribe"))
        g_hash_table_add (peer->topics, g_strdup (name));
      else if (peer != NULL)
        g_hash_table_remove (peer->topics, name);
      reply = g_variant_new ("()");
    }

  g_mutex_unlock (&self->mutex);

  if (reply == NULL)
    {
      if (g_str_equal (method, "StorageListKeys"))
        {
          g_auto(GStrv) list = ly_storage_list_keys (self, NULL);
          reply = g_variant_new ("(^as)", list);
        }
      else if (g_str_equal (method, "StorageGetAll"))
        {
          g_autoptr(GVariant) all = ly_storage_get_all (self, NULL);
          reply = g_variant_new ("(@a{sv})", all);
        }
      else
        g_set_error (error, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED,
                     _("The hub does not know the request “%s”"), method);
    }

  return reply;
}

/* For the process manager: TRUE if @method was a storage request (then
 * answered). */
gboolean
ly_storage_handle_request (LyStorage  *self,
                           LyControl  *control,
                           guint32     serial,
                           const char *method,
                           GVariant   *args)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(GVariant) reply = NULL;

  if (!g_str_has_prefix (method, "Storage"))
    return FALSE;

  reply = apply_request (self, control, method, args, &error);
  if (serial != 0)
    {
      if (reply != NULL)
        ly_control_reply (control, serial, g_steal_pointer (&reply));
      else
        ly_control_reply_error (control, serial, error);
    }

  flush_events (self);
  return TRUE;
}

/* For the child runtime: TRUE if @method was a storage notification. */
gboolean
ly_storage_handle_notification (LyStorage  *self,
                                const char *method,
                                GVariant   *args)
{
  if (g_str_equal (method, "StorageChanged") && g_variant_is_of_type (args, G_VARIANT_TYPE ("(smv)")))
    {
      g_autoptr(GVariant) maybe = NULL;
      g_autoptr(GVariant) value = NULL;
      const char *key;

      g_variant_get (args, "(&s@mv)", &key, &maybe);
      value = unmaybe (maybe);
      g_mutex_lock (&self->mutex);
      queue_event_locked (self, EVENT_CHANGED, key, value, TRUE);
      g_mutex_unlock (&self->mutex);
    }
  else if (g_str_equal (method, "StoragePublished") && g_variant_is_of_type (args, G_VARIANT_TYPE ("(sv)")))
    {
      g_autoptr(GVariant) value = NULL;
      const char *topic;

      g_variant_get (args, "(&sv)", &topic, &value);
      g_mutex_lock (&self->mutex);
      queue_event_locked (self, EVENT_PUBLISHED, topic, value,
                          g_hash_table_contains (self->subscriptions, topic));
      g_mutex_unlock (&self->mutex);
    }
  else
    return FALSE;

  flush_events (self);
  return TRUE;
}

/* The proxy --------------------------------------------------------------- */

static void send_batch (LyStorage *self);

static GVariant *
proxy_call (LyStorage   *self,
            const char  *method,
            GVariant    *args,
            GError     **error)
{
  send_batch (self);
  return ly_control_call_sync (self->control, method, args, LY_CONTROL_TIMEOUT_MSEC, NULL, error);
}

/* A set or delete the hub reports as a change: emitted here too. */
static void
proxy_changed (LyStorage  *self,
               const char *key,
               GVariant   *value)
{
  g_mutex_lock (&self->mutex);
  queue_event_locked (self, EVENT_CHANGED, key, value, TRUE);
  g_mutex_unlock (&self->mutex);
  flush_events (self);
}

/* Pipelined sets ------------------------------------------------------------
 *
 * A child's async sets made in one main loop iteration travel as one
 * StorageSetMany request, applied by the hub in order, answered by one
 * reply: per set, a message and a dispatch less on both sides.  Any other
 * request sends the pending batch first, so order holds. */

#define BATCH_MAX_SETS  4096
#define BATCH_MAX_BYTES (1024 * 1024)

typedef struct
{
  char     *key;
  GVariant *value;
  GTask    *task;      /* NULL: nobody waits for this one */
} SetCall;

static void
set_call_free (SetCall *call)
{
  g_free (call->key);
  g_variant_unref (call->value);
  g_clear_object (&call->task);
  g_free (call);
}

typedef struct
{
  LyStorage *storage;
  GPtrArray *calls;
} Batch;

static void
batch_replied (GVariant     *reply,
               const GError *error,
               gpointer      user_data)
{
  Batch *batch = user_data;
  g_autoptr(GError) local_error = NULL;
  g_autoptr(GVariant) changed = NULL;
  g_autoptr(GVariant) failures = NULL;
  const guint8 *flags = NULL;
  gsize n_flags = 0;

  if (error == NULL && !g_variant_is_of_type (reply, G_VARIANT_TYPE ("(aba(us))")))
    error = local_error = g_error_new (LY_CHANNEL_ERROR, LY_CHANNEL_ERROR_PROTOCOL,
                                       _("The hub answered a storage request with “%s”"),
                                       g_variant_get_type_string (reply));
  if (error == NULL)
    {
      g_variant_get (reply, "(@ab@a(us))", &changed, &failures);
      flags = g_variant_get_fixed_array (changed, &n_flags, 1);
      if (n_flags != batch->calls->len)
        error = local_error = g_error_new (LY_CHANNEL_ERROR, LY_CHANNEL_ERROR_PROTOCOL,
                                           _("The hub answered %zu sets with %zu results"),
                                           (gsize) batch->calls->len, n_flags);
    }

  for (guint i = 0; i < batch->calls->len; i++)
    {
      SetCall *call = g_ptr_array_index (batch->calls, i);
      g_autoptr(GError) call_error = error != NULL ? g_error_copy (error) : NULL;
      gboolean was_changed = error == NULL && flags[i];

      if (call_error == NULL && failures != NULL)
        for (gsize j = 0; j < g_variant_n_children (failures); j++)
          {
            const char *message;
            guint32 index;

            g_variant_get_child (failures, j, "(u&s)", &index, &message);
            if (index == i)
              call_error = g_error_new_literal (LY_STORAGE_ERROR, LY_STORAGE_ERROR_TOO_LARGE, message);
          }

      if (was_changed)
        proxy_changed (batch->storage, call->key, call->value);

      if (call->task != NULL && call_error != NULL)
        g_task_return_error (call->task, g_steal_pointer (&call_error));
      else if (call->task != NULL)
        g_task_return_boolean (call->task, TRUE);
      else if (call_error != NULL)
        g_warning ("A set of “%s” without a callback failed: %s", call->key, call_error->message);
    }

  g_object_unref (batch->storage);
  g_ptr_array_unref (batch->calls);
  g_free (batch);
}

/* Sends the pending sets; the caller holds the storage's mutex, so that
 * batches leave in the order they were made. */
static void
send_batch_locked (LyStorage *self)
{
  g_autoptr(GBytes) packed = NULL;
  Batch *batch;

  if (self->batch == NULL)
    return;

  batch = g_new0 (Batch, 1);
  batch->storage = g_object_ref (self);
  batch->calls = g_steal_pointer (&self->batch_calls);
  self->batch_bytes = 0;
  packed = ly_wire_writer_steal_bytes (self->batch);
  g_clear_pointer (&self->batch, ly_wire_writer_free);
  ly_control_call_payload (self->control, "StorageSetMany", packed, batch_replied, batch);
}

static void
send_batch (LyStorage *self)
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

static void
queue_set (LyStorage  *self,
           const char *key,
           GVariant   *value,
           GTask      *task)
{
  SetCall *call = g_new0 (SetCall, 1);

  call->key = g_strdup (key);
  call->value = g_variant_ref (value);
  call->task = task != NULL ? g_object_ref (task) : NULL;

  g_mutex_lock (&self->mutex);
  if (self->batch == NULL)
    {
      self->batch = ly_wire_writer_new ();
      self->batch_calls = g_ptr_array_new_with_free_func ((GDestroyNotify) set_call_free);
      g_source_set_ready_time (self->batch_source, 0);
    }
  self->batch_bytes += ly_wire_writer_append_string (self->batch, key);
  self->batch_bytes += ly_wire_writer_append (self->batch, LY_WIRE_KIND_MESSAGE, value);
  g_ptr_array_add (self->batch_calls, call);
  /* nobody would run the batch source: no batching then */
  if (self->batch_calls->len >= BATCH_MAX_SETS || self->batch_bytes >= BATCH_MAX_BYTES ||
      !ly_context_will_dispatch (self->context))
    send_batch_locked (self);
  g_mutex_unlock (&self->mutex);
}

/* GObject ----------------------------------------------------------------- */

static void
ly_storage_finalize (GObject *object)
{
  LyStorage *self = LY_STORAGE (object);

  g_source_destroy (self->event_source);
  g_source_unref (self->event_source);
  if (self->batch_source != NULL)
    {
      g_source_destroy (self->batch_source);
      g_source_unref (self->batch_source);
    }
  g_clear_pointer (&self->batch, ly_wire_writer_free);
  g_clear_pointer (&self->batch_calls, g_ptr_array_unref);
  g_queue_clear_full (&self->events, (GDestroyNotify) event_free);
  g_hash_table_unref (self->values);
  g_hash_table_unref (self->subscriptions);
  g_ptr_array_unref (self->peers);
  g_array_unref (self->monitors);
  g_clear_object (&self->control);
  g_main_context_unref (self->context);
  g_mutex_clear (&self->mutex);

  G_OBJECT_CLASS (ly_storage_parent_class)->finalize (object);
}

static void
ly_storage_get_property (GObject    *object,
                         guint       prop_id,
                         GValue     *value,
                         GParamSpec *pspec)
{
  LyStorage *self = LY_STORAGE (object);

  switch (prop_id)
    {
    case PROP_MAX_VALUE_SIZE:
      g_value_set_uint64 (value, self->max_value_size);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
ly_storage_set_property (GObject      *object,
                         guint         prop_id,
                         const GValue *value,
                         GParamSpec   *pspec)
{
  LyStorage *self = LY_STORAGE (object);

  switch (prop_id)
    {
    case PROP_MAX_VALUE_SIZE:
      self->max_value_size = g_value_get_uint64 (value);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
ly_storage_class_init (LyStorageClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);

  ly_i18n_init ();
  (void) LY_STORAGE_ERROR;

  object_class->finalize = ly_storage_finalize;
  object_class->get_property = ly_storage_get_property;
  object_class->set_property = ly_storage_set_property;

  /**
   * LyStorage:max-value-size:
   *
   * The largest value, in bytes of serialised data.  A larger one fails
   * with %LY_STORAGE_ERROR_TOO_LARGE and nothing is stored.  The hub's
   * store enforces its own limit for every process.
   */
  properties[PROP_MAX_VALUE_SIZE] =
    g_param_spec_uint64 ("max-value-size", NULL, NULL,
                         0, LY_STORAGE_DEFAULT_MAX_VALUE_SIZE, LY_STORAGE_DEFAULT_MAX_VALUE_SIZE,
                         (G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS));

  g_object_class_install_properties (object_class, N_PROPS, properties);

  /**
   * LyStorage::changed:
   * @self: the storage
   * @key: the key
   * @value: (nullable): its new value, or %NULL when it was deleted
   *
   * A key changed, by any process.  Detailed by the key.
   */
  signals[CHANGED] =
    g_signal_new ("changed", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST | G_SIGNAL_DETAILED,
                  0, NULL, NULL, NULL, G_TYPE_NONE, 2, G_TYPE_STRING, G_TYPE_VARIANT);

  /**
   * LyStorage::published:
   * @self: the storage
   * @topic: the topic
   * @value: what was published
   *
   * A value was published on a topic this process subscribed to.
   * Detailed by the topic.
   */
  signals[PUBLISHED] =
    g_signal_new ("published", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST | G_SIGNAL_DETAILED,
                  0, NULL, NULL, NULL, G_TYPE_NONE, 2, G_TYPE_STRING, G_TYPE_VARIANT);
}

static void
ly_storage_init (LyStorage *self)
{
  g_mutex_init (&self->mutex);
  self->max_value_size = LY_STORAGE_DEFAULT_MAX_VALUE_SIZE;
  self->values = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, (GDestroyNotify) g_variant_unref);
  self->subscriptions = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  self->peers = g_ptr_array_new_with_free_func ((GDestroyNotify) peer_free);
  self->monitors = g_array_new (FALSE, FALSE, sizeof (Monitor));
}

static void
attach_event_source (LyStorage    *self,
                     GMainContext *context)
{
  self->context = g_main_context_ref (context);
  self->event_source = g_source_new (&event_source_funcs, sizeof (GSource));
  g_source_set_callback (self->event_source, on_event_source, self, NULL);
  g_source_set_static_name (self->event_source, "[liteyuki-comm] storage events");
  g_source_attach (self->event_source, context);
}

/**
 * ly_storage_new:
 *
 * Creates an authoritative storage of its own, not shared with other
 * processes unless exported.  Most programs want
 * ly_storage_get_default().
 *
 * Returns: (transfer full): a new #LyStorage
 */
LyStorage *
ly_storage_new (void)
{
  LyStorage *self = g_object_new (LY_TYPE_STORAGE, NULL);
  g_autoptr(GMainContext) context = g_main_context_ref_thread_default ();

  attach_event_source (self, context);
  return self;
}

LyStorage *
ly_storage_new_proxy (LyControl *control)
{
  LyStorage *self = g_object_new (LY_TYPE_STORAGE, NULL);

  self->control = g_object_ref (control);
  attach_event_source (self, ly_channel_get_context (ly_control_get_channel (control)));
  self->batch_source = g_source_new (&event_source_funcs, sizeof (GSource));
  g_source_set_callback (self->batch_source, on_batch_source, self, NULL);
  g_source_set_static_name (self->batch_source, "[liteyuki-comm] storage sets");
  g_source_attach (self->batch_source, self->context);
  return self;
}

/**
 * ly_storage_get_default:
 *
 * The storage shared by the hub and its children: in the hub (any
 * process not started by a #LyProcessManager), the authoritative store,
 * made on first use in the calling thread's thread-default context; in
 * a managed child, a proxy to the hub's.
 *
 * Returns: (transfer none): the default storage
 */
LyStorage *
ly_storage_get_default (void)
{
  static gsize instance = 0;

  if (g_once_init_enter (&instance))
    {
      LyStorage *storage = ly_runtime_storage ();

      if (storage == NULL)
        storage = ly_storage_new ();
      g_once_init_leave (&instance, (gsize) storage);
    }

  return (LyStorage *) instance;
}

/**
 * ly_storage_is_proxy:
 * @self: a #LyStorage
 *
 * Returns: whether @self is a child's proxy to the hub's storage
 */
gboolean
ly_storage_is_proxy (LyStorage *self)
{
  g_return_val_if_fail (LY_IS_STORAGE (self), FALSE);

  return self->control != NULL;
}

/* Public API -------------------------------------------------------------- */

/**
 * ly_storage_set:
 * @self: a #LyStorage
 * @key: the key
 * @value: the value; a floating reference is sunk
 * @error: return location for a #GError
 *
 * Sets @key to @value.  In a child, returns once the hub applied it.
 * #LyStorage::changed follows in every process, unless the key had an
 * equal value already.
 *
 * Returns: %TRUE on success; %FALSE with %LY_STORAGE_ERROR_INVALID_KEY or
 *   %LY_STORAGE_ERROR_TOO_LARGE (nothing stored), or an error of the
 *   connection to the hub
 */
gboolean
ly_storage_set (LyStorage   *self,
                const char  *key,
                GVariant    *value,
                GError     **error)
{
  g_autoptr(GVariant) owned = NULL;
  g_autoptr(GVariant) reply = NULL;
  gboolean changed;

  g_return_val_if_fail (LY_IS_STORAGE (self), FALSE);
  g_return_val_if_fail (key != NULL, FALSE);
  g_return_val_if_fail (value != NULL, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  owned = g_variant_ref_sink (value);
  if (!check_key (key, error) || !check_value (self, owned, error))
    return FALSE;

  if (self->control == NULL)
    {
      g_mutex_lock (&self->mutex);
      apply_set_locked (self, NULL, key, owned);
      g_mutex_unlock (&self->mutex);
      flush_events (self);
      return TRUE;
    }

  reply = proxy_call (self, "StorageSet", g_variant_new ("(sv)", key, owned), error);
  if (reply == NULL)
    return FALSE;
  g_variant_get (reply, "(b)", &changed);
  if (changed)
    proxy_changed (self, key, owned);
  return TRUE;
}

/**
 * ly_storage_set_async:
 * @self: a #LyStorage
 * @key: the key
 * @value: the value; a floating reference is sunk
 * @cancellable: (nullable): a #GCancellable
 * @callback: (nullable): called once the hub applied the set, or %NULL
 *   when nobody waits for it (a failure is then logged)
 * @user_data: data for @callback
 *
 * Sets @key to @value without waiting.  In a child, the sets made in one
 * main loop iteration travel to the hub together, as one request, and
 * are applied in the order they were made, before any later request of
 * this process: a ly_storage_get() after them sees them.
 */
void
ly_storage_set_async (LyStorage           *self,
                      const char          *key,
                      GVariant            *value,
                      GCancellable        *cancellable,
                      GAsyncReadyCallback  callback,
                      gpointer             user_data)
{
  g_autoptr(GTask) task = NULL;
  g_autoptr(GVariant) owned = NULL;
  GError *error = NULL;

  g_return_if_fail (LY_IS_STORAGE (self));
  g_return_if_fail (key != NULL);
  g_return_if_fail (value != NULL);

  owned = g_variant_ref_sink (value);

  /* Without a callback nobody waits: no GTask, the cheapest pipelining. */
  if (callback != NULL)
    {
      task = g_task_new (self, cancellable, callback, user_data);
      g_task_set_source_tag (task, ly_storage_set_async);
    }

  if (self->control == NULL || !check_key (key, &error) || !check_value (self, owned, &error))
    {
      if (error == NULL)
        ly_storage_set (self, key, owned, &error);
      if (task != NULL && error != NULL)
        g_task_return_error (task, error);
      else if (task != NULL)
        g_task_return_boolean (task, TRUE);
      else if (error != NULL)
        {
          g_warning ("A set of “%s” without a callback failed: %s", key, error->message);
          g_error_free (error);
        }
      return;
    }

  queue_set (self, key, owned, task);
}

/**
 * ly_storage_set_finish:
 * @self: a #LyStorage
 * @result: the #GAsyncResult given to the callback
 * @error: return location for a #GError
 *
 * Finishes ly_storage_set_async().
 *
 * Returns: %TRUE if the value was stored
 */
gboolean
ly_storage_set_finish (LyStorage     *self,
                       GAsyncResult  *result,
                       GError       **error)
{
  g_return_val_if_fail (g_task_is_valid (result, self), FALSE);
  g_return_val_if_fail (g_task_get_source_tag (G_TASK (result)) == ly_storage_set_async, FALSE);

  return g_task_propagate_boolean (G_TASK (result), error);
}

/**
 * ly_storage_get:
 * @self: a #LyStorage
 * @key: the key
 * @error: return location for a #GError
 *
 * Reads @key.  In a child, one round trip to the hub.
 *
 * Returns: (transfer full) (nullable): the value, or %NULL without an
 *   error when the key does not exist
 */
GVariant *
ly_storage_get (LyStorage   *self,
                const char  *key,
                GError     **error)
{
  g_autoptr(GVariant) reply = NULL;
  g_autoptr(GVariant) maybe = NULL;
  GVariant *value;

  g_return_val_if_fail (LY_IS_STORAGE (self), NULL);
  g_return_val_if_fail (key != NULL, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  if (!check_key (key, error))
    return NULL;

  if (self->control == NULL)
    {
      g_mutex_lock (&self->mutex);
      value = g_hash_table_lookup (self->values, key);
      if (value != NULL)
        g_variant_ref (value);
      g_mutex_unlock (&self->mutex);
      return value;
    }

  reply = proxy_call (self, "StorageGet", g_variant_new ("(s)", key), error);
  if (reply == NULL)
    return NULL;
  g_variant_get (reply, "(@mv)", &maybe);
  return unmaybe (maybe);
}

static void
get_inline (GTask        *task,
               gpointer      source,
               gpointer      task_data,
               GCancellable *cancellable)
{
  GError *error = NULL;
  GVariant *value = ly_storage_get (source, task_data, &error);

  if (error != NULL)
    g_task_return_error (task, error);
  else
    g_task_return_pointer (task, value, (GDestroyNotify) g_variant_unref);
}

static void
get_replied (GVariant     *reply,
             const GError *error,
             gpointer      user_data)
{
  g_autoptr(GTask) task = user_data;
  g_autoptr(GVariant) maybe = NULL;

  if (error != NULL)
    g_task_return_error (task, g_error_copy (error));
  else if (!g_variant_is_of_type (reply, G_VARIANT_TYPE ("(mv)")))
    g_task_return_new_error (task, LY_CHANNEL_ERROR, LY_CHANNEL_ERROR_PROTOCOL,
                             _("The hub answered a storage request with “%s”"),
                             g_variant_get_type_string (reply));
  else
    {
      g_variant_get (reply, "(@mv)", &maybe);
      g_task_return_pointer (task, unmaybe (maybe), (GDestroyNotify) g_variant_unref);
    }
}

/**
 * ly_storage_get_async:
 * @self: a #LyStorage
 * @key: the key
 * @cancellable: (nullable): a #GCancellable
 * @callback: called with the value
 * @user_data: data for @callback
 *
 * Reads @key without blocking.
 */
void
ly_storage_get_async (LyStorage           *self,
                      const char          *key,
                      GCancellable        *cancellable,
                      GAsyncReadyCallback  callback,
                      gpointer             user_data)
{
  g_autoptr(GTask) task = NULL;
  GError *error = NULL;

  g_return_if_fail (LY_IS_STORAGE (self));
  g_return_if_fail (key != NULL);

  task = g_task_new (self, cancellable, callback, user_data);
  g_task_set_source_tag (task, ly_storage_get_async);
  g_task_set_task_data (task, g_strdup (key), g_free);

  if (!check_key (key, &error))
    g_task_return_error (task, error);
  else if (self->control == NULL)
    get_inline (task, self, (gpointer) key, cancellable);
  else
    {
      send_batch (self);
      ly_control_call (self->control, "StorageGet", g_variant_new ("(s)", key),
                       get_replied, g_steal_pointer (&task));
    }
}

/**
 * ly_storage_get_finish:
 * @self: a #LyStorage
 * @result: the #GAsyncResult given to the callback
 * @error: return location for a #GError
 *
 * Finishes ly_storage_get_async().
 *
 * Returns: (transfer full) (nullable): the value, or %NULL without an
 *   error when the key does not exist
 */
GVariant *
ly_storage_get_finish (LyStorage     *self,
                       GAsyncResult  *result,
                       GError       **error)
{
  g_return_val_if_fail (g_task_is_valid (result, self), NULL);
  g_return_val_if_fail (g_task_get_source_tag (G_TASK (result)) == ly_storage_get_async, NULL);

  return g_task_propagate_pointer (G_TASK (result), error);
}

/**
 * ly_storage_delete:
 * @self: a #LyStorage
 * @key: the key
 * @error: return location for a #GError
 *
 * Deletes @key; deleting a key that does not exist is not an error (as
 * the original's `ignore_key_error=True`).  #LyStorage::changed, with a
 * %NULL value, follows in every process if the key existed.
 *
 * Returns: %TRUE on success
 */
gboolean
ly_storage_delete (LyStorage   *self,
                   const char  *key,
                   GError     **error)
{
  g_autoptr(GVariant) reply = NULL;
  gboolean existed;

  g_return_val_if_fail (LY_IS_STORAGE (self), FALSE);
  g_return_val_if_fail (key != NULL, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  if (!check_key (key, error))
    return FALSE;

  if (self->control == NULL)
    {
      g_mutex_lock (&self->mutex);
      apply_set_locked (self, NULL, key, NULL);
      g_mutex_unlock (&self->mutex);
      flush_events (self);
      return TRUE;
    }

  reply = proxy_call (self, "StorageDelete", g_variant_new ("(s)", key), error);
  if (reply == NULL)
    return FALSE;
  g_variant_get (reply, "(b)", &existed);
  if (existed)
    proxy_changed (self, key, NULL);
  return TRUE;
}

/**
 * ly_storage_contains:
 * @self: a #LyStorage
 * @key: the key
 * @error: return location for a #GError
 *
 * Returns: whether @key exists; %FALSE with @error set on failure
 */
gboolean
ly_storage_contains (LyStorage   *self,
                     const char  *key,
                     GError     **error)
{
  g_autoptr(GVariant) reply = NULL;
  gboolean contains;

  g_return_val_if_fail (LY_IS_STORAGE (self), FALSE);
  g_return_val_if_fail (key != NULL, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  if (!check_key (key, error))
    return FALSE;

  if (self->control == NULL)
    {
      g_mutex_lock (&self->mutex);
      contains = g_hash_table_contains (self->values, key);
      g_mutex_unlock (&self->mutex);
      return contains;
    }

  reply = proxy_call (self, "StorageContains", g_variant_new ("(s)", key), error);
  if (reply == NULL)
    return FALSE;
  g_variant_get (reply, "(b)", &contains);
  return contains;
}

static int
compare_keys (gconstpointer a,
              gconstpointer b)
{
  return strcmp (*(const char * const *) a, *(const char * const *) b);
}

/**
 * ly_storage_list_keys:
 * @self: a #LyStorage
 * @error: return location for a #GError
 *
 * Returns: (transfer full) (array zero-terminated=1) (nullable): the
 *   keys, sorted; %NULL with @error set on failure
 */
char **
ly_storage_list_keys (LyStorage  *self,
                      GError    **error)
{
  g_autoptr(GVariant) reply = NULL;
  char **keys;

  g_return_val_if_fail (LY_IS_STORAGE (self), NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  if (self->control == NULL)
    {
      g_mutex_lock (&self->mutex);
      keys = (char **) g_hash_table_get_keys_as_array (self->values, NULL);
      for (guint i = 0; keys[i] != NULL; i++)
        keys[i] = g_strdup (keys[i]);
      g_mutex_unlock (&self->mutex);
      qsort (keys, g_strv_length (keys), sizeof (char *), compare_keys);
      return keys;
    }

  reply = proxy_call (self, "StorageListKeys", NULL, error);
  if (reply == NULL)
    return NULL;
  g_variant_get (reply, "(^as)", &keys);
  return keys;
}

/**
 * ly_storage_get_all:
 * @self: a #LyStorage
 * @error: return location for a #GError
 *
 * A consistent copy of the whole storage (the original's `get_all()`
 * returned the live dictionary, unlocked).
 *
 * Returns: (transfer full) (nullable): every key and value, as `a{sv}`;
 *   %NULL with @error set on failure
 */
GVariant *
ly_storage_get_all (LyStorage  *self,
                    GError    **error)
{
  g_autoptr(GVariant) reply = NULL;
  GVariant *all;

  g_return_val_if_fail (LY_IS_STORAGE (self), NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  if (self->control == NULL)
    {
      g_auto(GVariantBuilder) builder = G_VARIANT_BUILDER_INIT (G_VARIANT_TYPE_VARDICT);
      GHashTableIter iter;
      const char *key;
      GVariant *value;

      g_mutex_lock (&self->mutex);
      g_hash_table_iter_init (&iter, self->values);
      while (g_hash_table_iter_next (&iter, (gpointer *) &key, (gpointer *) &value))
        g_variant_builder_add (&builder, "{sv}", key, value);
      g_mutex_unlock (&self->mutex);

      return g_variant_ref_sink (g_variant_builder_end (&builder));
    }

  reply = proxy_call (self, "StorageGetAll", NULL, error);
  if (reply == NULL)
    return NULL;
  g_variant_get (reply, "(@a{sv})", &all);
  return all;
}

/**
 * ly_storage_compare_and_set:
 * @self: a #LyStorage
 * @key: the key
 * @expected: (nullable): the value the key must have, or %NULL for a
 *   key that must not exist
 * @value: (nullable): the new value, or %NULL to delete the key
 * @error: return location for a #GError
 *
 * Sets @key to @value only if its value equals @expected, atomically
 * across every process: the building block of counters and locks.
 * Floating references are sunk.
 *
 * Returns: %TRUE if the value was swapped; %FALSE without an error on a
 *   mismatch, or with @error set on failure
 */
gboolean
ly_storage_compare_and_set (LyStorage   *self,
                            const char  *key,
                            GVariant    *expected,
                            GVariant    *value,
                            GError     **error)
{
  g_autoptr(GVariant) owned_expected = NULL;
  g_autoptr(GVariant) owned_value = NULL;
  g_autoptr(GVariant) reply = NULL;
  gboolean swapped, changed;

  g_return_val_if_fail (LY_IS_STORAGE (self), FALSE);
  g_return_val_if_fail (key != NULL, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  owned_expected = expected != NULL ? g_variant_ref_sink (expected) : NULL;
  owned_value = value != NULL ? g_variant_ref_sink (value) : NULL;
  if (!check_key (key, error) || !check_value (self, owned_value, error))
    return FALSE;

  if (self->control == NULL)
    {
      g_mutex_lock (&self->mutex);
      swapped = matches_locked (self, key, owned_expected);
      if (swapped)
        apply_set_locked (self, NULL, key, owned_value);
      g_mutex_unlock (&self->mutex);
      flush_events (self);
      return swapped;
    }

  reply = proxy_call (self, "StorageCompareAndSet",
                      g_variant_new ("(s@mv@mv)", key, maybe_variant (owned_expected), maybe_variant (owned_value)),
                      error);
  if (reply == NULL)
    return FALSE;
  g_variant_get (reply, "(bb)", &swapped, &changed);
  if (changed)
    proxy_changed (self, key, owned_value);
  return swapped;
}

typedef struct
{
  char     *key;
  GVariant *expected;
  GVariant *value;
} CasData;

static void
cas_data_free (CasData *data)
{
  g_free (data->key);
  g_clear_pointer (&data->expected, g_variant_unref);
  g_clear_pointer (&data->value, g_variant_unref);
  g_free (data);
}

static void
cas_replied (GVariant     *reply,
             const GError *error,
             gpointer      user_data)
{
  g_autoptr(GTask) task = user_data;
  CasData *data = g_task_get_task_data (task);
  gboolean swapped, changed;

  if (error != NULL)
    g_task_return_error (task, g_error_copy (error));
  else if (!g_variant_is_of_type (reply, G_VARIANT_TYPE ("(bb)")))
    g_task_return_new_error (task, LY_CHANNEL_ERROR, LY_CHANNEL_ERROR_PROTOCOL,
                             _("The hub answered a storage request with “%s”"),
                             g_variant_get_type_string (reply));
  else
    {
      g_variant_get (reply, "(bb)", &swapped, &changed);
      if (changed)
        proxy_changed (g_task_get_source_object (task), data->key, data->value);
      g_task_return_int (task, swapped);
    }
}

/**
 * ly_storage_compare_and_set_async:
 * @self: a #LyStorage
 * @key: the key
 * @expected: (nullable): the value the key must have, or %NULL
 * @value: (nullable): the new value, or %NULL to delete the key
 * @cancellable: (nullable): a #GCancellable
 * @callback: called with the outcome
 * @user_data: data for @callback
 *
 * ly_storage_compare_and_set() without blocking.
 */
void
ly_storage_compare_and_set_async (LyStorage           *self,
                                  const char          *key,
                                  GVariant            *expected,
                                  GVariant            *value,
                                  GCancellable        *cancellable,
                                  GAsyncReadyCallback  callback,
                                  gpointer             user_data)
{
  g_autoptr(GTask) task = NULL;
  CasData *data = g_new0 (CasData, 1);
  GError *error = NULL;

  g_return_if_fail (LY_IS_STORAGE (self));
  g_return_if_fail (key != NULL);

  data->key = g_strdup (key);
  data->expected = expected != NULL ? g_variant_ref_sink (expected) : NULL;
  data->value = value != NULL ? g_variant_ref_sink (value) : NULL;
  task = g_task_new (self, cancellable, callback, user_data);
  g_task_set_source_tag (task, ly_storage_compare_and_set_async);
  g_task_set_task_data (task, data, (GDestroyNotify) cas_data_free);

  if (self->control == NULL || !check_key (key, &error) || !check_value (self, data->value, &error))
    {
      gboolean swapped = error == NULL && ly_storage_compare_and_set (self, key, data->expected, data->value, &error);

      if (error != NULL)
        g_task_return_error (task, error);
      else
        g_task_return_int (task, swapped);
      return;
    }

  send_batch (self);
  ly_control_call (self->control, "StorageCompareAndSet",
                   g_variant_new ("(s@mv@mv)", key, maybe_variant (data->expected), maybe_variant (data->value)),
                   cas_replied, g_steal_pointer (&task));
}

/**
 * ly_storage_compare_and_set_finish:
 * @self: a #LyStorage
 * @result: the #GAsyncResult given to the callback
 * @swapped: (out) (optional): whether the value was swapped
 * @error: return location for a #GError
 *
 * Finishes ly_storage_compare_and_set_async().
 *
 * Returns: %TRUE if the operation was applied (swapped or not); %FALSE
 *   with @error set on failure
 */
gboolean
ly_storage_compare_and_set_finish (LyStorage     *self,
                                   GAsyncResult  *result,
                                   gboolean      *swapped,
                                   GError       **error)
{
  g_autoptr(GError) local_error = NULL;
  gssize outcome;

  g_return_val_if_fail (g_task_is_valid (result, self), FALSE);
  g_return_val_if_fail (g_task_get_source_tag (G_TASK (result)) == ly_storage_compare_and_set_async, FALSE);

  outcome = g_task_propagate_int (G_TASK (result), &local_error);
  if (local_error != NULL)
    {
      g_propagate_error (error, g_steal_pointer (&local_error));
      return FALSE;
    }

  if (swapped != NULL)
    *swapped = outcome != 0;
  return TRUE;
}

/**
 * ly_storage_publish:
 * @self: a #LyStorage
 * @topic: the topic
 * @value: the value; a floating reference is sunk
 * @error: return location for a #GError
 *
 * Publishes @value on @topic: every process that subscribed to the topic
 * gets #LyStorage::published, in the order of publication.  Nothing is
 * stored.
 *
 * Returns: %TRUE on success
 */
gboolean
ly_storage_publish (LyStorage   *self,
                    const char  *topic,
                    GVariant    *value,
                    GError     **error)
{
  g_autoptr(GVariant) owned = NULL;
  g_autoptr(GVariant) reply = NULL;

  g_return_val_if_fail (LY_IS_STORAGE (self), FALSE);
  g_return_val_if_fail (topic != NULL, FALSE);
  g_return_val_if_fail (value != NULL, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  owned = g_variant_ref_sink (value);
  if (!check_topic (topic, error) || !check_value (self, owned, error))
    return FALSE;

  if (self->control == NULL)
    {
      g_mutex_lock (&self->mutex);
      apply_publish_locked (self, topic, owned);
      g_mutex_unlock (&self->mutex);
      flush_events (self);
      return TRUE;
    }

  reply = proxy_call (self, "StoragePublish", g_variant_new ("(sv)", topic, owned), error);
  return reply != NULL;
}

static void
publish_replied (GVariant     *reply,
                 const GError *error,
                 gpointer      user_data)
{
  g_autoptr(GTask) task = user_data;

  if (error != NULL)
    g_task_return_error (task, g_error_copy (error));
  else
    g_task_return_boolean (task, TRUE);
}

/**
 * ly_storage_publish_async:
 * @self: a #LyStorage
 * @topic: the topic
 * @value: the value; a floating reference is sunk
 * @cancellable: (nullable): a #GCancellable
 * @callback: called once the hub passed it on
 * @user_data: data for @callback
 *
 * ly_storage_publish() without blocking; publications pipeline.
 */
void
ly_storage_publish_async (LyStorage           *self,
                          const char          *topic,
                          GVariant            *value,
                          GCancellable        *cancellable,
                          GAsyncReadyCallback  callback,
                          gpointer             user_data)
{
  g_autoptr(GTask) task = NULL;
  g_autoptr(GVariant) owned = NULL;
  GError *error = NULL;

  g_return_if_fail (LY_IS_STORAGE (self));
  g_return_if_fail (topic != NULL);
  g_return_if_fail (value != NULL);

  owned = g_variant_ref_sink (value);
  task = g_task_new (self, cancellable, callback, user_data);
  g_task_set_source_tag (task, ly_storage_publish_async);

  if (self->control == NULL || !check_topic (topic, &error) || !check_value (self, owned, &error))
    {
      if (error == NULL && ly_storage_publish (self, topic, owned, &error))
        g_task_return_boolean (task, TRUE);
      else
        g_task_return_error (task, error);
      return;
    }

  send_batch (self);
  ly_control_call (self->control, "StoragePublish", g_variant_new ("(sv)", topic, owned),
                   publish_replied, g_steal_pointer (&task));
}

/**
 * ly_storage_publish_finish:
 * @self: a #LyStorage
 * @result: the #GAsyncResult given to the callback
 * @error: return location for a #GError
 *
 * Finishes ly_storage_publish_async().
 *
 * Returns: %TRUE on success
 */
gboolean
ly_storage_publish_finish (LyStorage     *self,
                           GAsyncResult  *result,
                           GError       **error)
{
  g_return_val_if_fail (g_task_is_valid (result, self), FALSE);
  g_return_val_if_fail (g_task_get_source_tag (G_TASK (result)) == ly_storage_publish_async, FALSE);

  return g_task_propagate_boolean (G_TASK (result), error);
}

static gboolean
change_subscription (LyStorage   *self,
                     const char  *topic,
                     gboolean     subscribe,
                     GError     **error)
{
  g_autoptr(GVariant) reply = NULL;

  if (!check_topic (topic, error))
    return FALSE;

  /* this process's own table filters what it emits, in the hub and in a
   * child alike; a child's is the hub's too */
  if (self->control != NULL)
    {
      reply = proxy_call (self, subscribe ? "StorageSubscribe" : "StorageUnsubscribe",
                          g_variant_new ("(s)", topic), error);
      if (reply == NULL)
        return FALSE;
    }

  g_mutex_lock (&self->mutex);
  if (subscribe)
    g_hash_table_add (self->subscriptions, g_strdup (topic));
  else
    g_hash_table_remove (self->subscriptions, topic);
  g_mutex_unlock (&self->mutex);

  return TRUE;
}

/**
 * ly_storage_subscribe:
 * @self: a #LyStorage
 * @topic: the topic
 * @error: return location for a #GError
 *
 * Makes this process receive the publications on @topic, as
 * #LyStorage::published.  Subscribing twice is subscribing once.
 *
 * Returns: %TRUE on success
 */
gboolean
ly_storage_subscribe (LyStorage   *self,
                      const char  *topic,
                      GError     **error)
{
  g_return_val_if_fail (LY_IS_STORAGE (self), FALSE);
  g_return_val_if_fail (topic != NULL, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  return change_subscription (self, topic, TRUE, error);
}

/**
 * ly_storage_unsubscribe:
 * @self: a #LyStorage
 * @topic: the topic
 * @error: return location for a #GError
 *
 * Stops the publications on @topic for this process.
 *
 * Returns: %TRUE on success
 */
gboolean
ly_storage_unsubscribe (LyStorage   *self,
                        const char  *topic,
                        GError     **error)
{
  g_return_val_if_fail (LY_IS_STORAGE (self), FALSE);
  g_return_val_if_fail (topic != NULL, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  return change_subscription (self, topic, FALSE, error);
}

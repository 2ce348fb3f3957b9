/* ly-storage.c: the front end of the storage (its backends are behind
 * ly-storage-backend-private.h)
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "config.h"

#include "ly-i18n-private.h"
#include "ly-runtime-private.h"
#include "ly-storage-backend-private.h"
#include "ly-storage-private.h"
#include "ly-storage-server-private.h"
#include "ly-storage-shm-private.h"

/**
 * LyStorage:
 *
 * A key-value storage shared by every process of a hub, with
 * publish/subscribe: the original's `shared_memory`, exact and
 * inspectable.
 *
 * Keys are non-empty UTF-8 strings of at most %LY_STORAGE_MAX_KEY_LENGTH
 * bytes; values are [struct@GLib.Variant]s of any type, up to
 * [property@Ly.Storage:max-value-size].  The same API works in every process:
 * [func@Ly.Storage.get_default] is the authoritative store in the hub
 * and a proxy in a managed child.  A child reads the hub's store from
 * shared memory, without asking the hub (see
 * [property@Ly.Storage:shared-memory-size]); its writes are requests to
 * the hub over its control connection (one round trip; the async calls
 * pipeline).  A process never reads a value older than one it was told
 * of (in a reply or a signal).  The hub applies every operation in one order; a
 * child's ly_storage_set() returns after the hub applied it, so any
 * process that reads afterwards sees it.
 *
 * [signal@Ly.Storage::changed] is emitted in every process after each real change
 * (never for a set to an equal value), detailed by the key: connect to
 * `changed::counter` to hear about `counter` only.  A publication
 * reaches, as [signal@Ly.Storage::published] detailed by the topic, every process
 * that subscribed to the topic (the hub included), in order per topic.
 * Signals are emitted in the thread-default main context of the thread
 * that made the storage (in a child, the context of its channels).
 *
 * Every method may be called from any thread.
 *
 * The topic page [Storage](storage.html) says more, with examples, and
 * [Overview](overview.html) shows how the pieces fit.
 *
 * Since: 1.0
 */

/* The front end checks what callers give, hands each operation to its
 * backend, and emits what the backend reports, in the storage's context:
 * events are queued as the backend reports them (in the order of the
 * store) and emitted by the event source, or at once after an operation
 * of a thread that may run the context. */

typedef LyStorageEventKind EventKind;

#define EVENT_CHANGED   LY_STORAGE_EVENT_CHANGED
#define EVENT_PUBLISHED LY_STORAGE_EVENT_PUBLISHED
#define EVENT_MISSED    LY_STORAGE_EVENT_MISSED

typedef struct
{
  EventKind  kind;
  char      *name;     /* NULL for EVENT_MISSED */
  GVariant  *value;    /* NULL for a deleted key */
  gboolean   emit;     /* FALSE: a publication only the monitors see */
} Event;

typedef struct
{
  LyStorageMonitor func;
  gpointer         data;
} Monitor;

struct _LyStorage
{
  GObject           parent_instance;

  LyStorageBackend *backend;
  GMainContext     *context;
  GSource          *event_source;
  gsize             max_value_size;
  double            timeout;

  /* @mutex protects @events, @draining, @monitors, @subscriptions,
   * @server, @table, @table_failed and @shared_memory_size.  Backends report events with their own lock held: never
   * call a backend with @mutex held. */
  GMutex            mutex;
  GQueue            events;          /* of Event*, to emit in @context */
  gboolean          draining;
  GArray           *monitors;        /* of Monitor */
  GHashTable       *subscriptions;   /* topics this process subscribed to */
  LyStorageServer  *server;          /* the hub's, made with its first child */
  LyShmWriter      *table;           /* the hub's shared table, made with its first child */
  gboolean          table_failed;    /* it could not be made: not again */
  guint64           shared_memory_size;

  /* @subscribe_mutex: one subscription change at a time, so that the
   * backend hears of a topic once */
  GMutex            subscribe_mutex;
};

enum {
  PROP_0,
  PROP_MAX_VALUE_SIZE,
  PROP_TIMEOUT,
  PROP_SHARED_MEMORY_SIZE,
  N_PROPS
};

enum {
  CHANGED,
  PUBLISHED,
  CHANGES_MISSED,
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

/* Queues an event; the first of a run wakes the event source, which
 * emits them unless an operation's flush_events() did first. */
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
  if (g_queue_is_empty (&self->events))
    g_source_set_ready_time (self->event_source, 0);
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

/* Called with @mutex held; drops it around the calls and takes it
 * again. */
static void
call_monitors_locked (LyStorage *self,
                        Event     *event)
{
  g_autoptr(GArray) monitors = g_array_copy (self->monitors);

  g_mutex_unlock (&self->mutex);
  for (guint i = 0; i < monitors->len; i++)
    {
      Monitor *monitor = &g_array_index (monitors, Monitor, i);

      monitor->func (self, event->kind, event->name, event->value, monitor->data);
    }
  g_mutex_lock (&self->mutex);
}

static void
emit_event (LyStorage *self,
            Event     *event)
{
  /* try_string: a quark per key ever seen would grow without bound; a
   * handler's detail made its quark already */
  if (event->kind == EVENT_MISSED)
    g_signal_emit (self, signals[CHANGES_MISSED], 0);
  else
    g_signal_emit (self, signals[event->kind == EVENT_CHANGED ? CHANGED : PUBLISHED],
                   g_quark_try_string (event->name), event->name, event->value);
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
      if (self->monitors->len > 0)
        call_monitors_locked (self, event);

      if (event->emit)
        {
          g_mutex_unlock (&self->mutex);
          emit_event (self, event);
          g_mutex_lock (&self->mutex);
        }
      event_free (event);
    }

  self->draining = FALSE;
  g_mutex_unlock (&self->mutex);
}

/* Emits now when this thread may run the storage's context; otherwise
 * the event source does, in the context. */
static void
flush_events (LyStorage *self)
{
  gboolean pending;

  g_mutex_lock (&self->mutex);
  pending = !g_queue_is_empty (&self->events);
  g_mutex_unlock (&self->mutex);

  if (pending && g_main_context_acquire (self->context))
    {
      drain_events (self);
      g_main_context_release (self->context);
    }
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

/* What the backend reports: queued for the signals, and passed at once
 * to the children (the server), in the order of the store.  A
 * publication is emitted here only on a topic this process subscribed
 * to; the monitors see them all. */
static void
report_event (LyStorage     *self,
              EventKind      kind,
              const char    *name,
              GVariant      *value,
              gconstpointer  origin)
{
  LyStorageServer *server;
  LyShmWriter *table;

  g_mutex_lock (&self->mutex);
  server = self->server;
  table = self->table;
  queue_event_locked (self, kind, name, value,
                      kind == EVENT_CHANGED || g_hash_table_contains (self->subscriptions, name));
  g_mutex_unlock (&self->mutex);

  /* the table first: whoever hears of the change can read it there */
  if (table != NULL && kind == EVENT_CHANGED)
    ly_shm_writer_changed (table, name, value);

  if (server == NULL)
    return;
  if (kind == EVENT_CHANGED)
    ly_storage_server_notify_changed (server, name, value, origin);
  else
    ly_storage_server_notify_published (server, name, value);
}

static void
on_backend_changed (gpointer       front,
                    const char    *key,
                    GVariant      *value,
                    gconstpointer  origin)
{
  report_event (front, EVENT_CHANGED, key, value, origin);
}

static void
on_backend_published (gpointer       front,
                      const char    *topic,
                      GVariant      *value,
                      gconstpointer  origin)
{
  report_event (front, EVENT_PUBLISHED, topic, value, origin);
}

/* Changes were not reported: this process, and every child, is told. */
static void
on_backend_missed (gpointer front)
{
  LyStorage *self = front;
  LyStorageServer *server;

  g_mutex_lock (&self->mutex);
  server = self->server;
  queue_event_locked (self, EVENT_MISSED, NULL, NULL, TRUE);
  g_mutex_unlock (&self->mutex);

  if (server != NULL)
    ly_storage_server_notify_missed (server);
}

static const LyStorageEvents storage_events = {
  .changed = on_backend_changed,
  .published = on_backend_published,
  .missed = on_backend_missed,
};

/* Operations -------------------------------------------------------------- */

static gboolean
run_op (LyStorage          *self,
        const LyStorageOp  *op,
        LyStorageResult    *result,
        GError            **error)
{
  gboolean ok = ly_storage_check_op (op, self->max_value_size, error) &&
                ly_storage_backend_run (self->backend, op, result, error);

  flush_events (self);
  return ok;
}

static void
task_completed (const LyStorageResult *result,
                const GError          *error,
                gpointer               user_data)
{
  g_autoptr(GTask) task = user_data;
  LyStorageOpKind kind = GPOINTER_TO_UINT (g_task_get_task_data (task));

  /* the changes come before the completion, as after a blocking call */
  flush_events (g_task_get_source_object (task));

  if (error != NULL)
    g_task_return_error (task, g_error_copy (error));
  else if (kind == LY_STORAGE_OP_GET)
    g_task_return_pointer (task, result->value != NULL ? g_variant_ref (result->value) : NULL,
                           (GDestroyNotify) g_variant_unref);
  else if (kind == LY_STORAGE_OP_COMPARE_AND_SET)
    g_task_return_int (task, result->done);
  else
    g_task_return_boolean (task, TRUE);
}

/* Submits @op; @task (or, when NULL, a warning) gets the outcome. */
static void
submit_op (LyStorage         *self,
           const LyStorageOp *op,
           GTask             *task)
{
  g_autoptr(GError) error = NULL;

  if (!ly_storage_check_op (op, self->max_value_size, &error))
    {
      if (task != NULL)
        g_task_return_error (task, g_steal_pointer (&error));
      else
        ly_storage_warn_unanswered (op->name, error);
      return;
    }

  if (task != NULL)
    {
      g_task_set_task_data (task, GUINT_TO_POINTER (op->kind), NULL);
      ly_storage_backend_submit (self->backend, op, task_completed, g_object_ref (task));
    }
  else
    ly_storage_backend_submit (self->backend, op, NULL, NULL);

  flush_events (self);
}

static GTask *
task_new (LyStorage           *self,
          GCancellable        *cancellable,
          GAsyncReadyCallback  callback,
          gpointer             user_data,
          gpointer             source_tag)
{
  GTask *task = g_task_new (self, cancellable, callback, user_data);

  g_task_set_source_tag (task, source_tag);
  return task;
}

/* GObject ----------------------------------------------------------------- */

static void
ly_storage_finalize (GObject *object)
{
  LyStorage *self = LY_STORAGE (object);

  g_clear_pointer (&self->server, ly_storage_server_free);
  g_clear_pointer (&self->backend, ly_storage_backend_free);
  g_clear_pointer (&self->table, ly_shm_writer_free);
  g_source_destroy (self->event_source);
  g_source_unref (self->event_source);
  g_queue_clear_full (&self->events, (GDestroyNotify) event_free);
  g_hash_table_unref (self->subscriptions);
  g_array_unref (self->monitors);
  g_main_context_unref (self->context);
  g_mutex_clear (&self->mutex);
  g_mutex_clear (&self->subscribe_mutex);

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
    case PROP_TIMEOUT:
      g_value_set_double (value, self->timeout);
      break;
    case PROP_SHARED_MEMORY_SIZE:
      g_mutex_lock (&self->mutex);
      g_value_set_uint64 (value, self->shared_memory_size);
      g_mutex_unlock (&self->mutex);
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
      g_mutex_lock (&self->mutex);
      if (self->server != NULL)
        ly_storage_server_set_max_value_size (self->server, self->max_value_size);
      g_mutex_unlock (&self->mutex);
      break;
    case PROP_TIMEOUT:
      self->timeout = g_value_get_double (value);
      if (self->backend != NULL)
        ly_storage_backend_set_timeout (self->backend, (gint64) (self->timeout * G_USEC_PER_SEC));
      break;
    case PROP_SHARED_MEMORY_SIZE:
      g_mutex_lock (&self->mutex);
      self->shared_memory_size = g_value_get_uint64 (value);
      if (self->shared_memory_size > 0)
        self->shared_memory_size = MAX (self->shared_memory_size, LY_SHM_MIN_SIZE);
      g_mutex_unlock (&self->mutex);
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
   *
   * Since: 1.0
   */
  properties[PROP_MAX_VALUE_SIZE] =
    g_param_spec_uint64 ("max-value-size", NULL, NULL,
                         0, LY_STORAGE_DEFAULT_MAX_VALUE_SIZE, LY_STORAGE_DEFAULT_MAX_VALUE_SIZE,
                         (G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS));

  /**
   * LyStorage:timeout:
   *
   * How long, in seconds, an operation may wait for the store behind the
   * storage before it fails: the hub, for a child's storage (10 s when
   * 0, the default), or the Redis server (2 s when 0), whose operations
   * then fail with %LY_STORAGE_ERROR_UNAVAILABLE.  The hub's own store
   * answers at once.
   *
   * Since: 1.0
   */
  properties[PROP_TIMEOUT] =
    g_param_spec_double ("timeout", NULL, NULL,
                         0.0, 3600.0, 0.0,
                         (G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS));

  /**
   * LyStorage:shared-memory-size:
   *
   * The size, in bytes, of the table in which a hub publishes its store
   * for its children: they read it from shared memory, without a round
   * trip (a get costs well under a microsecond).  Made, at this size,
   * when the first child starts; later changes do not resize it.  0
   * turns it off (children then make a round trip for every read);
   * sizes below 64 KiB count as 64 KiB.
   *
   * A full table does not fail writes: the keys that find no room, and
   * values over 16 KiB, are read with a round trip.  The table is
   * memory the hub touches as it fills it (a slot of 32 bytes for every
   * 256 bytes of the size, and the keys and values); children map it
   * read-only.  Only a hub whose store is in its own memory (not on a
   * Redis server) makes one, and only children allowed to read every
   * key get it (ly_process_manager_set_storage_access()).
   *
   * Since: 1.0
   */
  properties[PROP_SHARED_MEMORY_SIZE] =
    g_param_spec_uint64 ("shared-memory-size", NULL, NULL,
                         0, LY_SHM_MAX_SIZE, LY_SHM_DEFAULT_SIZE,
                         (G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS | G_PARAM_EXPLICIT_NOTIFY));

  g_object_class_install_properties (object_class, N_PROPS, properties);

  /**
   * LyStorage::changed:
   * @self: the storage
   * @key: the key
   * @value: (nullable): its new value, or %NULL when it was deleted
   *
   * A key changed, by any process.  Detailed by the key.
   *
   * Since: 1.0
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
   *
   * Since: 1.0
   */
  signals[PUBLISHED] =
    g_signal_new ("published", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST | G_SIGNAL_DETAILED,
                  0, NULL, NULL, NULL, G_TYPE_NONE, 2, G_TYPE_STRING, G_TYPE_VARIANT);

  /**
   * LyStorage::changes-missed:
   * @self: the storage
   *
   * The store behind the storage was out of reach and is back (a Redis
   * server that went away, see ly_storage_new_for_uri()): changes made
   * meanwhile were not announced with [signal@Ly.Storage::changed].  Read again
   * what you depend on.  Every process of the hub gets it.
   *
   * Since: 1.0
   */
  signals[CHANGES_MISSED] =
    g_signal_new ("changes-missed", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST,
                  0, NULL, NULL, NULL, G_TYPE_NONE, 0);
}

static void
ly_storage_init (LyStorage *self)
{
  g_mutex_init (&self->mutex);
  g_mutex_init (&self->subscribe_mutex);
  self->max_value_size = LY_STORAGE_DEFAULT_MAX_VALUE_SIZE;
  self->shared_memory_size = LY_SHM_DEFAULT_SIZE;
  self->subscriptions = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  self->monitors = g_array_new (FALSE, FALSE, sizeof (Monitor));
}

/* A storage whose signals are emitted in @context. */
static LyStorage *
storage_new (GMainContext *context)
{
  LyStorage *self = g_object_new (LY_TYPE_STORAGE, NULL);

  self->context = g_main_context_ref (context);
  self->event_source = g_source_new (&event_source_funcs, sizeof (GSource));
  g_source_set_callback (self->event_source, on_event_source, self, NULL);
  g_source_set_static_name (self->event_source, "[liteyuki-comm] storage events");
  g_source_attach (self->event_source, context);

  return self;
}

/**
 * ly_storage_new:
 *
 * Creates an authoritative storage of its own, not shared with other
 * processes unless exported.  Most programs want
 * ly_storage_get_default().
 *
 * Returns: (transfer full): a new [class@Ly.Storage]
 *
 * Since: 1.0
 */
LyStorage *
ly_storage_new (void)
{
  g_autoptr(GMainContext) context = g_main_context_ref_thread_default ();
  LyStorage *self = storage_new (context);

  self->backend = ly_storage_local_new (&storage_events, self);
  return self;
}

/**
 * ly_storage_new_for_uri:
 * @uri: where the store is: `local:` for a store of this process's own
 *   (as ly_storage_new()), `redis://[:PASSWORD@]HOST[:PORT][/DB]` or
 *   `unix:///PATH[?db=N]` for a Redis server; both Redis forms take
 *   `prefix=P` (the namespace of the keys, default `ly:`) and
 *   `password-file=PATH` in their query
 * @error: return location for a #GError
 *
 * Creates a storage on the store @uri names.  Several hubs, on several
 * hosts, that use the same Redis server and prefix share one storage:
 * every process of every hub sees every change, in the same order, and
 * publications reach the subscribers of every hub.  A password may come
 * from the URI, from the file `password-file` names, or from the
 * environment variable `LY_STORAGE_PASSWORD`.
 *
 * The server is contacted at once: a server that cannot be reached,
 * refuses the password, or does not answer as Redis does gives
 * %LY_STORAGE_ERROR_UNAVAILABLE.  Later, an operation the server does
 * not answer within [property@Ly.Storage:timeout] fails with
 * %LY_STORAGE_ERROR_UNAVAILABLE, and the storage reconnects by itself;
 * [signal@Ly.Storage::changes-missed] tells when it is back.  Make it the hub's
 * storage with ly_storage_set_default() before anything uses the
 * default one; the hub's children keep talking to their hub.
 *
 * Returns: (transfer full): a new [class@Ly.Storage], or %NULL with @error set
 *
 * Since: 1.0
 */
LyStorage *
ly_storage_new_for_uri (const char  *uri,
                        GError     **error)
{
  g_autoptr(GMainContext) context = NULL;
  g_autoptr(LyStorage) self = NULL;

  g_return_val_if_fail (uri != NULL, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  if (g_str_equal (uri, "local:"))
    return ly_storage_new ();

#ifdef HAVE_HIREDIS
  context = g_main_context_ref_thread_default ();
  self = storage_new (context);
  self->backend = ly_storage_redis_new (uri, &storage_events, self, context, error);
  if (self->backend == NULL)
    return NULL;
  return g_steal_pointer (&self);
#else
  g_set_error (error, LY_STORAGE_ERROR, LY_STORAGE_ERROR_INVALID_URI,
               _("“%s”: this build of liteyuki-comm has only the local storage (it was built without hiredis)"),
               uri);
  return NULL;
#endif
}

/* A child's storage: a proxy over its control connection to the hub,
 * emitting in the control's context. */
static LyStorage *
storage_new_proxy (LyControl *control)
{
  LyStorage *self = storage_new (ly_control_get_context (control));

  self->backend = ly_storage_proxy_new (control, ly_runtime_take_storage_table (),
                                        &storage_events, self);
  return self;
}

/**
 * ly_storage_get_default:
 *
 * The storage shared by the hub and its children: in the hub (any
 * process not started by a [class@Ly.ProcessManager]), the authoritative store,
 * made on first use in the calling thread's thread-default context; in
 * a managed child, a proxy to the hub's.
 *
 * Returns: (transfer none): the default storage
 *
 * Since: 1.0
 */
/* @default_mutex protects @default_storage */
static GMutex default_mutex;
static LyStorage *default_storage;

LyStorage *
ly_storage_get_default (void)
{
  LyStorage *storage;

  g_mutex_lock (&default_mutex);
  if (default_storage == NULL)
    {
      LyControl *control = ly_runtime_get_control ();

      default_storage = control != NULL ? storage_new_proxy (control) : ly_storage_new ();
    }
  storage = default_storage;
  g_mutex_unlock (&default_mutex);

  return storage;
}

/**
 * ly_storage_set_default:
 * @storage: (transfer none): the storage to make the default one
 *
 * Makes @storage what ly_storage_get_default() returns in this process:
 * a hub on a Redis server (ly_storage_new_for_uri()) does this before
 * it creates its [class@Ly.ProcessManager], whose children then share it.  It
 * fails (with a critical warning) once a default storage exists, and in
 * a managed child, whose storage is its hub's.
 *
 * Returns: %TRUE if @storage is now the default one
 *
 * Since: 1.0
 */
gboolean
ly_storage_set_default (LyStorage *storage)
{
  gboolean set = FALSE;

  g_return_val_if_fail (LY_IS_STORAGE (storage), FALSE);
  g_return_val_if_fail (ly_runtime_get_control () == NULL, FALSE);

  g_mutex_lock (&default_mutex);
  if (default_storage == NULL)
    {
      default_storage = g_object_ref (storage);
      set = TRUE;
    }
  g_mutex_unlock (&default_mutex);

  if (!set)
    g_critical ("ly_storage_set_default() called after the default storage was made");
  return set;
}

/**
 * ly_storage_is_proxy:
 * @self: a [class@Ly.Storage]
 *
 * Tells whether @self is a child's proxy to its hub's storage.
 *
 * Returns: whether @self is a child's proxy to the hub's storage
 *
 * Since: 1.0
 */
gboolean
ly_storage_is_proxy (LyStorage *self)
{
  g_return_val_if_fail (LY_IS_STORAGE (self), FALSE);

  return self->backend->vtable->is_proxy;
}

/* Serving children -------------------------------------------------------- */

void
ly_storage_add_peer (LyStorage             *self,
                     LyControl             *control,
                     const LyStoragePolicy *policy)
{
  LyStorageServer *server;

  g_mutex_lock (&self->mutex);
  if (self->server == NULL)
    self->server = ly_storage_server_new (self->backend, self->max_value_size);
  server = self->server;
  g_mutex_unlock (&self->mutex);

  ly_storage_server_add_peer (server, control, policy);
}

/* Makes the table, or returns NULL (having warned why, once). */
static LyShmWriter *
table_new_locked (LyStorage *self)
{
  g_autoptr(GError) error = NULL;
  LyShmWriter *table;

  if (self->table_failed || self->shared_memory_size == 0 || !self->backend->vtable->in_memory)
    return NULL;

  table = ly_shm_writer_new (self->shared_memory_size, &error);
  if (table == NULL)
    {
      g_warning ("%s; the hub’s children will make a round trip for every read", error->message);
      self->table_failed = TRUE;
    }
  return table;
}

/* The memfd of the table the hub's children read the store from, made
 * on first use (and filled from a snapshot of the store), or -1 when
 * there is none: not a hub's store in its memory, turned off, or it
 * could not be made. */
int
ly_storage_get_shared_fd (LyStorage *self)
{
  g_auto(LyStorageOp) op = { 0, };
  g_auto(LyStorageResult) result = { 0, };
  LyShmWriter *table, *made = NULL;

  g_mutex_lock (&self->mutex);
  if (self->table == NULL && (made = table_new_locked (self)) != NULL)
    {
      /* changes reach the table from now on, the snapshot does not undo them */
      ly_shm_writer_begin_snapshot (made);
      self->table = made;
    }
  table = self->table;
  g_mutex_unlock (&self->mutex);

  if (made != NULL)
    {
      ly_storage_op_init (&op, LY_STORAGE_OP_GET_ALL, NULL, NULL, NULL);
      if (ly_storage_backend_run (self->backend, &op, &result, NULL))
        ly_shm_writer_load_snapshot (made, result.value);
    }

  return table != NULL ? ly_shm_writer_get_fd (table) : -1;
}

void
ly_storage_remove_peer (LyStorage *self,
                        LyControl *control)
{
  LyStorageServer *server;

  g_mutex_lock (&self->mutex);
  server = self->server;
  g_mutex_unlock (&self->mutex);

  if (server != NULL)
    ly_storage_server_remove_peer (server, control);
}

/* Public API -------------------------------------------------------------- */

/**
 * ly_storage_set:
 * @self: a [class@Ly.Storage]
 * @key: the key
 * @value: the value; a floating reference is sunk
 * @error: return location for a #GError
 *
 * Sets @key to @value.  In a child, returns once the hub applied it.
 * [signal@Ly.Storage::changed] follows in every process, unless the key had an
 * equal value already.
 *
 * Returns: %TRUE on success; %FALSE with %LY_STORAGE_ERROR_INVALID_KEY or
 *   %LY_STORAGE_ERROR_TOO_LARGE (nothing stored), or an error of the
 *   connection to the hub
 *
 * Since: 1.0
 */
gboolean
ly_storage_set (LyStorage   *self,
                const char  *key,
                GVariant    *value,
                GError     **error)
{
  g_auto(LyStorageOp) op = { 0, };
  g_auto(LyStorageResult) result = { 0, };

  g_return_val_if_fail (LY_IS_STORAGE (self), FALSE);
  g_return_val_if_fail (key != NULL, FALSE);
  g_return_val_if_fail (value != NULL, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  ly_storage_op_init (&op, LY_STORAGE_OP_SET, key, NULL, value);
  return run_op (self, &op, &result, error);
}

/**
 * ly_storage_set_async:
 * @self: a [class@Ly.Storage]
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
 *
 * Since: 1.0
 */
void
ly_storage_set_async (LyStorage           *self,
                      const char          *key,
                      GVariant            *value,
                      GCancellable        *cancellable,
                      GAsyncReadyCallback  callback,
                      gpointer             user_data)
{
  g_auto(LyStorageOp) op = { 0, };
  g_autoptr(GTask) task = NULL;

  g_return_if_fail (LY_IS_STORAGE (self));
  g_return_if_fail (key != NULL);
  g_return_if_fail (value != NULL);

  /* Without a callback nobody waits: no GTask, the cheapest pipelining. */
  if (callback != NULL)
    task = task_new (self, cancellable, callback, user_data, ly_storage_set_async);

  ly_storage_op_init (&op, LY_STORAGE_OP_SET, key, NULL, value);
  submit_op (self, &op, task);
}

/**
 * ly_storage_set_finish:
 * @self: a [class@Ly.Storage]
 * @result: the #GAsyncResult given to the callback
 * @error: return location for a #GError
 *
 * Finishes ly_storage_set_async().
 *
 * Returns: %TRUE if the value was stored
 *
 * Since: 1.0
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
 * @self: a [class@Ly.Storage]
 * @key: the key
 * @error: return location for a #GError
 *
 * Reads @key.  In a child, from the hub's table in shared memory (well
 * under a microsecond), or with one round trip to the hub when the table
 * cannot answer (a value over 16 KiB, no table, a write of this process
 * still on its way).
 *
 * Returns: (transfer full) (nullable): the value, or %NULL without an
 *   error when the key does not exist
 *
 * Since: 1.0
 */
GVariant *
ly_storage_get (LyStorage   *self,
                const char  *key,
                GError     **error)
{
  g_auto(LyStorageOp) op = { 0, };
  g_auto(LyStorageResult) result = { 0, };

  g_return_val_if_fail (LY_IS_STORAGE (self), NULL);
  g_return_val_if_fail (key != NULL, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  ly_storage_op_init (&op, LY_STORAGE_OP_GET, key, NULL, NULL);
  if (!run_op (self, &op, &result, error))
    return NULL;

  return g_steal_pointer (&result.value);
}

/**
 * ly_storage_get_async:
 * @self: a [class@Ly.Storage]
 * @key: the key
 * @cancellable: (nullable): a #GCancellable
 * @callback: called with the value
 * @user_data: data for @callback
 *
 * Reads @key without blocking.
 *
 * Since: 1.0
 */
void
ly_storage_get_async (LyStorage           *self,
                      const char          *key,
                      GCancellable        *cancellable,
                      GAsyncReadyCallback  callback,
                      gpointer             user_data)
{
  g_auto(LyStorageOp) op = { 0, };
  g_autoptr(GTask) task = NULL;

  g_return_if_fail (LY_IS_STORAGE (self));
  g_return_if_fail (key != NULL);

  task = task_new (self, cancellable, callback, user_data, ly_storage_get_async);
  ly_storage_op_init (&op, LY_STORAGE_OP_GET, key, NULL, NULL);
  submit_op (self, &op, task);
}

/**
 * ly_storage_get_finish:
 * @self: a [class@Ly.Storage]
 * @result: the #GAsyncResult given to the callback
 * @error: return location for a #GError
 *
 * Finishes ly_storage_get_async().
 *
 * Returns: (transfer full) (nullable): the value, or %NULL without an
 *   error when the key does not exist
 *
 * Since: 1.0
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

/* ly_storage_delete(), and whether the key existed (the D-Bus surface
 * says so). */
gboolean
ly_storage_delete_existed (LyStorage   *self,
                           const char  *key,
                           gboolean    *existed,
                           GError     **error)
{
  g_auto(LyStorageOp) op = { 0, };
  g_auto(LyStorageResult) result = { 0, };

  ly_storage_op_init (&op, LY_STORAGE_OP_DELETE, key, NULL, NULL);
  if (!run_op (self, &op, &result, error))
    return FALSE;

  if (existed != NULL)
    *existed = result.done;
  return TRUE;
}

/**
 * ly_storage_delete:
 * @self: a [class@Ly.Storage]
 * @key: the key
 * @error: return location for a #GError
 *
 * Deletes @key; deleting a key that does not exist is not an error (as
 * the original's `ignore_key_error=True`).  [signal@Ly.Storage::changed], with a
 * %NULL value, follows in every process if the key existed.
 *
 * Returns: %TRUE on success
 *
 * Since: 1.0
 */
gboolean
ly_storage_delete (LyStorage   *self,
                   const char  *key,
                   GError     **error)
{
  g_return_val_if_fail (LY_IS_STORAGE (self), FALSE);
  g_return_val_if_fail (key != NULL, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  return ly_storage_delete_existed (self, key, NULL, error);
}

/**
 * ly_storage_contains:
 * @self: a [class@Ly.Storage]
 * @key: the key
 * @error: return location for a #GError
 *
 * Tells whether @key exists.  In a child, from the hub's table in shared
 * memory, or with one round trip to the hub when the table cannot answer
 * (or none, from a hub's cache on Redis).
 *
 * Returns: whether @key exists; %FALSE with @error set on failure
 *
 * Since: 1.0
 */
gboolean
ly_storage_contains (LyStorage   *self,
                     const char  *key,
                     GError     **error)
{
  g_auto(LyStorageOp) op = { 0, };
  g_auto(LyStorageResult) result = { 0, };

  g_return_val_if_fail (LY_IS_STORAGE (self), FALSE);
  g_return_val_if_fail (key != NULL, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  ly_storage_op_init (&op, LY_STORAGE_OP_CONTAINS, key, NULL, NULL);
  return run_op (self, &op, &result, error) && result.done;
}

/**
 * ly_storage_list_keys:
 * @self: a [class@Ly.Storage]
 * @error: return location for a #GError
 *
 * Lists the keys of the storage.
 *
 * Returns: (transfer full) (array zero-terminated=1) (nullable): the
 *   keys, sorted; %NULL with @error set on failure
 *
 * Since: 1.0
 */
char **
ly_storage_list_keys (LyStorage  *self,
                      GError    **error)
{
  g_auto(LyStorageOp) op = { 0, };
  g_auto(LyStorageResult) result = { 0, };

  g_return_val_if_fail (LY_IS_STORAGE (self), NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  ly_storage_op_init (&op, LY_STORAGE_OP_LIST_KEYS, NULL, NULL, NULL);
  if (!run_op (self, &op, &result, error))
    return NULL;

  return g_steal_pointer (&result.keys);
}

/**
 * ly_storage_get_all:
 * @self: a [class@Ly.Storage]
 * @error: return location for a #GError
 *
 * A consistent copy of the whole storage (the original's `get_all()`
 * returned the live dictionary, unlocked).
 *
 * Returns: (transfer full) (nullable): every key and value, as `a{sv}`;
 *   %NULL with @error set on failure
 *
 * Since: 1.0
 */
GVariant *
ly_storage_get_all (LyStorage  *self,
                    GError    **error)
{
  g_auto(LyStorageOp) op = { 0, };
  g_auto(LyStorageResult) result = { 0, };

  g_return_val_if_fail (LY_IS_STORAGE (self), NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  ly_storage_op_init (&op, LY_STORAGE_OP_GET_ALL, NULL, NULL, NULL);
  if (!run_op (self, &op, &result, error))
    return NULL;

  return g_steal_pointer (&result.value);
}

/**
 * ly_storage_compare_and_set:
 * @self: a [class@Ly.Storage]
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
 *
 * Since: 1.0
 */
gboolean
ly_storage_compare_and_set (LyStorage   *self,
                            const char  *key,
                            GVariant    *expected,
                            GVariant    *value,
                            GError     **error)
{
  g_auto(LyStorageOp) op = { 0, };
  g_auto(LyStorageResult) result = { 0, };

  g_return_val_if_fail (LY_IS_STORAGE (self), FALSE);
  g_return_val_if_fail (key != NULL, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  ly_storage_op_init (&op, LY_STORAGE_OP_COMPARE_AND_SET, key, expected, value);
  return run_op (self, &op, &result, error) && result.done;
}

/**
 * ly_storage_compare_and_set_async:
 * @self: a [class@Ly.Storage]
 * @key: the key
 * @expected: (nullable): the value the key must have, or %NULL
 * @value: (nullable): the new value, or %NULL to delete the key
 * @cancellable: (nullable): a #GCancellable
 * @callback: called with the outcome
 * @user_data: data for @callback
 *
 * ly_storage_compare_and_set() without blocking.
 *
 * Since: 1.0
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
  g_auto(LyStorageOp) op = { 0, };
  g_autoptr(GTask) task = NULL;

  g_return_if_fail (LY_IS_STORAGE (self));
  g_return_if_fail (key != NULL);

  task = task_new (self, cancellable, callback, user_data, ly_storage_compare_and_set_async);
  ly_storage_op_init (&op, LY_STORAGE_OP_COMPARE_AND_SET, key, expected, value);
  submit_op (self, &op, task);
}

/**
 * ly_storage_compare_and_set_finish:
 * @self: a [class@Ly.Storage]
 * @result: the #GAsyncResult given to the callback
 * @swapped: (out) (optional): whether the value was swapped
 * @error: return location for a #GError
 *
 * Finishes ly_storage_compare_and_set_async().
 *
 * Returns: %TRUE if the operation was applied (swapped or not); %FALSE
 *   with @error set on failure
 *
 * Since: 1.0
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
 * @self: a [class@Ly.Storage]
 * @topic: the topic
 * @value: the value; a floating reference is sunk
 * @error: return location for a #GError
 *
 * Publishes @value on @topic: every process that subscribed to the topic
 * gets [signal@Ly.Storage::published], in the order of publication.  Nothing is
 * stored.
 *
 * Returns: %TRUE on success
 *
 * Since: 1.0
 */
gboolean
ly_storage_publish (LyStorage   *self,
                    const char  *topic,
                    GVariant    *value,
                    GError     **error)
{
  g_auto(LyStorageOp) op = { 0, };
  g_auto(LyStorageResult) result = { 0, };

  g_return_val_if_fail (LY_IS_STORAGE (self), FALSE);
  g_return_val_if_fail (topic != NULL, FALSE);
  g_return_val_if_fail (value != NULL, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  ly_storage_op_init (&op, LY_STORAGE_OP_PUBLISH, topic, NULL, value);
  return run_op (self, &op, &result, error);
}

/**
 * ly_storage_publish_async:
 * @self: a [class@Ly.Storage]
 * @topic: the topic
 * @value: the value; a floating reference is sunk
 * @cancellable: (nullable): a #GCancellable
 * @callback: called once the hub passed it on
 * @user_data: data for @callback
 *
 * ly_storage_publish() without blocking; publications pipeline.
 *
 * Since: 1.0
 */
void
ly_storage_publish_async (LyStorage           *self,
                          const char          *topic,
                          GVariant            *value,
                          GCancellable        *cancellable,
                          GAsyncReadyCallback  callback,
                          gpointer             user_data)
{
  g_auto(LyStorageOp) op = { 0, };
  g_autoptr(GTask) task = NULL;

  g_return_if_fail (LY_IS_STORAGE (self));
  g_return_if_fail (topic != NULL);
  g_return_if_fail (value != NULL);

  task = task_new (self, cancellable, callback, user_data, ly_storage_publish_async);
  ly_storage_op_init (&op, LY_STORAGE_OP_PUBLISH, topic, NULL, value);
  submit_op (self, &op, task);
}

/**
 * ly_storage_publish_finish:
 * @self: a [class@Ly.Storage]
 * @result: the #GAsyncResult given to the callback
 * @error: return location for a #GError
 *
 * Finishes ly_storage_publish_async().
 *
 * Returns: %TRUE on success
 *
 * Since: 1.0
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

/* This process's own set of topics filters what it emits; the backend
 * hears of a topic when the first subscription comes and when the last
 * one goes.  The topic is in the set before the backend is asked, so no
 * publication that follows the subscription is filtered out. */
static gboolean
change_subscription (LyStorage   *self,
                     const char  *topic,
                     gboolean     subscribe,
                     GError     **error)
{
  g_auto(LyStorageOp) op = { 0, };
  g_auto(LyStorageResult) result = { 0, };
  gboolean subscribed, ok;

  ly_storage_op_init (&op, subscribe ? LY_STORAGE_OP_SUBSCRIBE : LY_STORAGE_OP_UNSUBSCRIBE, topic, NULL, NULL);
  if (!ly_storage_check_op (&op, self->max_value_size, error))
    return FALSE;

  g_mutex_lock (&self->subscribe_mutex);

  g_mutex_lock (&self->mutex);
  subscribed = g_hash_table_contains (self->subscriptions, topic);
  if (subscribe)
    g_hash_table_add (self->subscriptions, g_strdup (topic));
  else
    g_hash_table_remove (self->subscriptions, topic);
  g_mutex_unlock (&self->mutex);

  ok = subscribed == subscribe || run_op (self, &op, &result, error);
  if (!ok)
    {
      /* as it was */
      g_mutex_lock (&self->mutex);
      if (subscribe)
        g_hash_table_remove (self->subscriptions, topic);
      else
        g_hash_table_add (self->subscriptions, g_strdup (topic));
      g_mutex_unlock (&self->mutex);
    }

  g_mutex_unlock (&self->subscribe_mutex);
  return ok;
}

/**
 * ly_storage_subscribe:
 * @self: a [class@Ly.Storage]
 * @topic: the topic
 * @error: return location for a #GError
 *
 * Makes this process receive the publications on @topic, as
 * [signal@Ly.Storage::published].  Subscribing twice is subscribing once.
 *
 * Returns: %TRUE on success
 *
 * Since: 1.0
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
 * @self: a [class@Ly.Storage]
 * @topic: the topic
 * @error: return location for a #GError
 *
 * Stops the publications on @topic for this process.
 *
 * Returns: %TRUE on success
 *
 * Since: 1.0
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

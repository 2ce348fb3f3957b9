/* ly-storage-server.c: the hub serves its children's storage requests
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "config.h"

#include "ly-control-private.h"
#include "ly-i18n-private.h"
#include "ly-storage-policy-private.h"
#include "ly-storage-server-private.h"

/* Each child's control connection gets a handler per storage method (the
 * table below); each handler turns the request into an LyStorageOp,
 * checks it as the front end checks a caller's, and submits it to the
 * hub's backend, naming the child as its origin.  The reply leaves when
 * the backend answers.  Changes and publications come back from the
 * backend through ly_storage_server_notify_*(), in the order of the
 * store: every child but the origin hears of every change (the origin's
 * reply says it), every subscriber of a topic of its publications. */

typedef struct _Peer Peer;

typedef void (*ServeFunc) (Peer     *peer,
                           guint32   serial,
                           GVariant *args,
                           guint     kind);

/* The handlers: the method (an index into ly_storage_methods, which
 * names it and its arguments' type) and what serves it. */
typedef struct
{
  guint       method;
  ServeFunc   serve;
} ServerMethod;

static void serve_op        (Peer *peer, guint32 serial, GVariant *args, guint kind);
static void serve_subscribe (Peer *peer, guint32 serial, GVariant *args, guint kind);
static void serve_set_many  (Peer *peer, guint32 serial, GVariant *args, guint unused);

static const ServerMethod server_methods[] = {
  { LY_STORAGE_OP_GET,             serve_op },
  { LY_STORAGE_OP_CONTAINS,        serve_op },
  { LY_STORAGE_OP_LIST_KEYS,       serve_op },
  { LY_STORAGE_OP_GET_ALL,         serve_op },
  { LY_STORAGE_OP_SET,             serve_op },
  { LY_STORAGE_OP_DELETE,          serve_op },
  { LY_STORAGE_OP_COMPARE_AND_SET, serve_op },
  { LY_STORAGE_OP_PUBLISH,         serve_op },
  { LY_STORAGE_OP_SUBSCRIBE,       serve_subscribe },
  { LY_STORAGE_OP_UNSUBSCRIBE,     serve_subscribe },
  { LY_STORAGE_METHOD_SET_MANY,    serve_set_many },
};

/* What a handler gets as its data: the peer, and which method. */
typedef struct
{
  Peer               *peer;
  const ServerMethod *method;
} Binding;

struct _Peer
{
  LyStorageServer *server;
  LyControl       *control;
  GHashTable      *topics;        /* it subscribed to; under the server's mutex */
  LyStoragePolicy *policy;        /* what it may do; NULL: everything */
  gboolean         warned;        /* about missed notifications */
  gboolean         missed;        /* notifications were not sent: tell it */
  Binding          bindings[G_N_ELEMENTS (server_methods)];
};

struct _LyStorageServer
{
  LyStorageBackend *backend;

  /* @mutex protects @peers, each peer's @topics and @warned,
   * @subscribers and @max_value_size */
  GMutex            mutex;
  GPtrArray        *peers;        /* of Peer* */
  GHashTable       *subscribers;  /* topic → how many peers subscribed */
  gsize             max_value_size;

  /* the quotas' accounts, of the targets that have quotas only: @owners
   * names who wrote each key last and its size, @usage sums them up */
  GHashTable       *owners;       /* key → KeyOwner* */
  GHashTable       *usage;        /* owner → Usage* */
};

typedef struct
{
  char  *owner;
  gsize  size;
} KeyOwner;

typedef struct
{
  guint    keys;
  guint64  bytes;
} Usage;

static void
key_owner_free (gpointer data)
{
  KeyOwner *key_owner = data;

  g_free (key_owner->owner);
  g_free (key_owner);
}

static Usage *
usage_of_locked (LyStorageServer *self,
                 const char      *owner)
{
  Usage *usage = g_hash_table_lookup (self->usage, owner);

  if (usage == NULL)
    {
      usage = g_new0 (Usage, 1);
      g_hash_table_insert (self->usage, g_strdup (owner), usage);
    }
  return usage;
}

/* Whether a write of @value (NULL: a delete) to @key keeps @peer within
 * its quotas: the keys it wrote last, and their bytes. */
static gboolean
within_quota_locked (Peer        *peer,
                     const char  *key,
                     GVariant    *value,
                     GError     **error)
{
  LyStoragePolicy *policy = peer->policy;
  KeyOwner *current;
  Usage *usage;
  guint keys;
  guint64 bytes;

  if (policy == NULL || !ly_storage_policy_has_quota (policy) || value == NULL)
    return TRUE;

  usage = usage_of_locked (peer->server, policy->owner);
  current = g_hash_table_lookup (peer->server->owners, key);
  keys = usage->keys;
  bytes = usage->bytes + g_variant_get_size (value);
  if (current != NULL && g_str_equal (current->owner, policy->owner))
    bytes -= current->size;
  else
    keys++;

  if ((policy->max_keys > 0 && keys > policy->max_keys) ||
      (policy->max_bytes > 0 && bytes > policy->max_bytes))
    {
      g_set_error (error, LY_STORAGE_ERROR, LY_STORAGE_ERROR_QUOTA,
                   _("“%s” may hold %u keys of %" G_GUINT64_FORMAT " bytes in all: writing “%s” would make %u keys of %" G_GUINT64_FORMAT " bytes"),
                   policy->owner, policy->max_keys, policy->max_bytes, key, keys, bytes);
      return FALSE;
    }

  return TRUE;
}

/* A change, in the store's order: who holds @key now. */
static void
account_change_locked (LyStorageServer *self,
                       const char      *key,
                       GVariant        *value,
                       Peer            *origin)
{
  KeyOwner *previous = g_hash_table_lookup (self->owners, key);

  if (previous != NULL)
    {
      Usage *usage = usage_of_locked (self, previous->owner);

      usage->keys--;
      usage->bytes -= previous->size;
      g_hash_table_remove (self->owners, key);
    }

  if (value != NULL && origin != NULL && origin->policy != NULL && ly_storage_policy_has_quota (origin->policy))
    {
      KeyOwner *key_owner = g_new0 (KeyOwner, 1);
      Usage *usage = usage_of_locked (self, origin->policy->owner);

      key_owner->owner = g_strdup (origin->policy->owner);
      key_owner->size = g_variant_get_size (value);
      usage->keys++;
      usage->bytes += key_owner->size;
      g_hash_table_insert (self->owners, g_strdup (key), key_owner);
    }
}

static gsize
get_max_value_size (LyStorageServer *self)
{
  gsize size;

  g_mutex_lock (&self->mutex);
  size = self->max_value_size;
  g_mutex_unlock (&self->mutex);

  return size;
}

/* Replies ------------------------------------------------------------------ */

typedef struct
{
  LyControl       *control;
  guint32          serial;
  LyStorageOpKind  kind;
  LyStoragePolicy *policy;     /* a copy, for what a listing may show */
} Reply;

static Reply *
reply_new (Peer            *peer,
           guint32          serial,
           LyStorageOpKind  kind)
{
  Reply *reply = g_new0 (Reply, 1);

  /* the backend may answer after the peer left */
  reply->control = g_object_ref (peer->control);
  reply->serial = serial;
  reply->kind = kind;
  if (peer->policy != NULL && peer->policy->readable != NULL &&
      (kind == LY_STORAGE_OP_LIST_KEYS || kind == LY_STORAGE_OP_GET_ALL))
    reply->policy = ly_storage_policy_copy (peer->policy);

  return reply;
}

/* A listing as @policy lets its target see it: the readable keys only. */
static void
filter_readable (const LyStoragePolicy  *policy,
                 const LyStorageResult  *result,
                 char                 ***keys,
                 GVariant              **all)
{
  if (result->keys != NULL)
    {
      g_autoptr(GStrvBuilder) builder = g_strv_builder_new ();

      for (guint i = 0; result->keys[i] != NULL; i++)
        if (ly_storage_policy_may_read (policy, result->keys[i]))
          g_strv_builder_add (builder, result->keys[i]);
      *keys = g_strv_builder_end (builder);
    }

  if (result->value != NULL && g_variant_is_of_type (result->value, G_VARIANT_TYPE_VARDICT))
    {
      GVariantBuilder builder;
      GVariantIter iter;
      const char *key;
      GVariant *value;

      g_variant_builder_init (&builder, G_VARIANT_TYPE_VARDICT);
      g_variant_iter_init (&iter, result->value);
      while (g_variant_iter_next (&iter, "{&sv}", &key, &value))
        {
          if (ly_storage_policy_may_read (policy, key))
            g_variant_builder_add (&builder, "{sv}", key, value);
          g_variant_unref (value);
        }
      *all = g_variant_ref_sink (g_variant_builder_end (&builder));
    }
}

static void
send_reply (const LyStorageResult *result,
            const GError          *error,
            gpointer               user_data)
{
  Reply *reply = user_data;

  if (error != NULL)
    ly_control_reply_error (reply->control, reply->serial, error);
  else if (reply->policy != NULL)
    {
      LyStorageResult readable = *result;
      g_auto(GStrv) keys = NULL;
      g_autoptr(GVariant) all = NULL;

      filter_readable (reply->policy, result, &keys, &all);
      readable.keys = keys;
      readable.value = all;
      ly_control_reply (reply->control, reply->serial, ly_storage_result_to_reply (reply->kind, &readable));
    }
  else
    ly_control_reply (reply->control, reply->serial, ly_storage_result_to_reply (reply->kind, result));

  g_clear_pointer (&reply->policy, ly_storage_policy_free);
  g_object_unref (reply->control);
  g_free (reply);
}

/* A notification (serial 0) asks for no reply: it is applied all the
 * same, and the backend logs a failure. */
static void
submit_op (Peer              *peer,
           guint32            serial,
           const LyStorageOp *op)
{
  if (serial == 0)
    ly_storage_backend_submit (peer->server->backend, op, NULL, NULL);
  else
    ly_storage_backend_submit (peer->server->backend, op, send_reply, reply_new (peer, serial, op->kind));
}

/* What the hub's policy lets @peer do: the names it may touch, and its
 * quotas (the server's accounts say what it holds). */
static gboolean
peer_allows (Peer               *peer,
             const LyStorageOp  *op,
             GError            **error)
{
  gboolean allowed;

  if (peer->policy == NULL)
    return TRUE;
  if (!ly_storage_policy_check_op (peer->policy, op, error))
    return FALSE;

  g_mutex_lock (&peer->server->mutex);
  if (op->kind == LY_STORAGE_OP_SUBSCRIBE)
    allowed = peer->policy->max_subscriptions == 0 ||
              g_hash_table_contains (peer->topics, op->name) ||
              g_hash_table_size (peer->topics) < peer->policy->max_subscriptions;
  else
    allowed = TRUE;
  if (!allowed)
    g_set_error (error, LY_STORAGE_ERROR, LY_STORAGE_ERROR_QUOTA,
                 _("“%s” may subscribe to %u topics at most"), peer->policy->owner, peer->policy->max_subscriptions);
  else if (op->kind == LY_STORAGE_OP_SET ||
           (op->kind == LY_STORAGE_OP_COMPARE_AND_SET && op->value != NULL))
    allowed = within_quota_locked (peer, op->name, op->value, error);
  g_mutex_unlock (&peer->server->mutex);

  return allowed;
}

static gboolean
check_op_or_reply (Peer              *peer,
                   guint32            serial,
                   const LyStorageOp *op)
{
  g_autoptr(GError) error = NULL;

  if (ly_storage_check_op (op, get_max_value_size (peer->server), &error) &&
      peer_allows (peer, op, &error))
    return TRUE;

  if (serial != 0)
    ly_control_reply_error (peer->control, serial, error);
  return FALSE;
}

/* Handlers ----------------------------------------------------------------- */

static void
serve_op (Peer     *peer,
          guint32   serial,
          GVariant *args,
          guint     kind)
{
  g_auto(LyStorageOp) op = { 0, };

  ly_storage_op_init_from_args (&op, kind, args);
  op.origin = peer->control;
  if (check_op_or_reply (peer, serial, &op))
    submit_op (peer, serial, &op);
}

/* Updates @peer's topics; TRUE if that made the first or took the last
 * subscriber of the topic among all peers: then the backend is told. */
static gboolean
change_peer_topic_locked (Peer       *peer,
                          const char *topic,
                          gboolean    subscribe)
{
  GHashTable *subscribers = peer->server->subscribers;
  guint count = GPOINTER_TO_UINT (g_hash_table_lookup (subscribers, topic));

  if (subscribe)
    {
      if (!g_hash_table_add (peer->topics, g_strdup (topic)))
        return FALSE;
      g_hash_table_replace (subscribers, g_strdup (topic), GUINT_TO_POINTER (count + 1));
      return count == 0;
    }

  if (!g_hash_table_remove (peer->topics, topic))
    return FALSE;
  if (count <= 1)
    g_hash_table_remove (subscribers, topic);
  else
    g_hash_table_replace (subscribers, g_strdup (topic), GUINT_TO_POINTER (count - 1));
  return count <= 1;
}

static void
serve_subscribe (Peer     *peer,
                 guint32   serial,
                 GVariant *args,
                 guint     kind)
{
  g_auto(LyStorageOp) op = { 0, };
  gboolean tell_backend;

  ly_storage_op_init_from_args (&op, kind, args);
  op.origin = peer->control;
  if (!check_op_or_reply (peer, serial, &op))
    return;

  g_mutex_lock (&peer->server->mutex);
  tell_backend = change_peer_topic_locked (peer, op.name, kind == LY_STORAGE_OP_SUBSCRIBE);
  g_mutex_unlock (&peer->server->mutex);

  if (tell_backend)
    submit_op (peer, serial, &op);
  else if (serial != 0)
    ly_control_reply (peer->control, serial, NULL);
}

/* A batch of sets, applied in order; the reply comes when the backend
 * answered all of them.  A refused set is reported with its error; the
 * others are applied all the same. */
typedef struct
{
  LyControl       *control;
  guint32          serial;
  guint            pending;
  guint8          *changed;
  guint            n;
  GVariantBuilder  failures;
} SetMany;

static void
set_many_fail (SetMany      *many,
               guint         index,
               const GError *error)
{
  g_autoptr(GVariant) encoded = g_variant_ref_sink (ly_control_error_to_variant (error));
  const char *name, *message;

  g_variant_get (encoded, "(&s&s)", &name, &message);
  g_variant_builder_add (&many->failures, "(uss)", (guint32) index, name, message);
}

static void
set_many_release (SetMany *many)
{
  if (--many->pending > 0)
    return;

  if (many->serial != 0)
    ly_control_reply (many->control, many->serial,
                      g_variant_new ("(@ab@a(uss))",
                                     g_variant_new_fixed_array (G_VARIANT_TYPE_BOOLEAN, many->changed, many->n, 1),
                                     g_variant_builder_end (&many->failures)));
  else
    g_variant_builder_clear (&many->failures);

  g_object_unref (many->control);
  g_free (many->changed);
  g_free (many);
}

typedef struct
{
  SetMany *many;
  guint    index;
} SetManyItem;

static void
set_many_item_done (const LyStorageResult *result,
                    const GError          *error,
                    gpointer               user_data)
{
  SetManyItem *item = user_data;

  if (error != NULL)
    set_many_fail (item->many, item->index, error);
  else
    item->many->changed[item->index] = result->done;
  set_many_release (item->many);
  g_free (item);
}

/* The items of a batch, checked: key (s) and value pairs. */
static gboolean
unpack_set_many (GVariant   *args,
                 gsize       max_value_size,
                 GPtrArray  *items,
                 GError    **error)
{
  if (!ly_control_batch_unpack (args, max_value_size + 64 * 1024, items, error))
    return FALSE;

  for (guint i = 0; i < items->len; i += 2)
    if (i + 1 >= items->len ||
        !g_variant_is_of_type (g_ptr_array_index (items, i), G_VARIANT_TYPE_STRING))
      {
        g_set_error_literal (error, LY_CHANNEL_ERROR, LY_CHANNEL_ERROR_PROTOCOL,
                             _("A batch of sets is not made of key and value pairs"));
        return FALSE;
      }

  return TRUE;
}

static void
serve_set_many (Peer     *peer,
                guint32   serial,
                GVariant *args,
                guint     unused)
{
  g_autoptr(GPtrArray) items = g_ptr_array_new_with_free_func ((GDestroyNotify) g_variant_unref);
  g_autoptr(GError) error = NULL;
  gsize max_value_size = get_max_value_size (peer->server);
  SetMany *many;

  if (!unpack_set_many (args, max_value_size, items, &error))
    {
      if (serial != 0)
        ly_control_reply_error (peer->control, serial, error);
      return;
    }

  many = g_new0 (SetMany, 1);
  many->control = g_object_ref (peer->control);
  many->serial = serial;
  many->n = items->len / 2;
  many->changed = g_malloc0 (MAX (many->n, 1));
  many->pending = 1;    /* released below, once every set was submitted */
  g_variant_builder_init (&many->failures, G_VARIANT_TYPE ("a(uss)"));

  for (guint i = 0; i < many->n; i++)
    {
      g_auto(LyStorageOp) op = { 0, };
      g_autoptr(GError) set_error = NULL;
      SetManyItem *item;

      ly_storage_op_init (&op, LY_STORAGE_OP_SET, g_variant_get_string (g_ptr_array_index (items, 2 * i), NULL),
                          NULL, g_ptr_array_index (items, 2 * i + 1));
      op.origin = peer->control;
      if (!ly_storage_check_op (&op, max_value_size, &set_error) ||
          !peer_allows (peer, &op, &set_error))
        {
          set_many_fail (many, i, set_error);
          continue;
        }

      item = g_new0 (SetManyItem, 1);
      item->many = many;
      item->index = i;
      many->pending++;
      ly_storage_backend_submit (peer->server->backend, &op, set_many_item_done, item);
    }

  set_many_release (many);
}

static void
on_request (LyControl *control,
            guint32    serial,
            GVariant  *args,
            gpointer   user_data)
{
  Binding *binding = user_data;

  binding->method->serve (binding->peer, serial, args, binding->method->method);
}

/* Peers -------------------------------------------------------------------- */

/* Serves @control's storage requests, and tells it about changes. */
void
ly_storage_server_add_peer (LyStorageServer       *self,
                            LyControl             *control,
                            const LyStoragePolicy *policy)
{
  Peer *peer = g_new0 (Peer, 1);

  peer->server = self;
  peer->control = g_object_ref (control);
  peer->policy = policy != NULL ? ly_storage_policy_copy (policy) : NULL;
  peer->topics = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);

  g_mutex_lock (&self->mutex);
  g_ptr_array_add (self->peers, peer);
  g_mutex_unlock (&self->mutex);

  for (guint i = 0; i < G_N_ELEMENTS (server_methods); i++)
    {
      const LyStorageMethod *method = &ly_storage_methods[server_methods[i].method];

      peer->bindings[i].peer = peer;
      peer->bindings[i].method = &server_methods[i];
      ly_control_add_handler (control, method->method, method->args_type, on_request, &peer->bindings[i], NULL);
    }
}

/* Its subscriptions end with it. */
static void
peer_free (Peer *peer)
{
  LyStorageServer *self = peer->server;
  g_autoptr(GPtrArray) unsubscribed = g_ptr_array_new_with_free_func (g_free);
  GHashTableIter iter;
  const char *topic;

  g_mutex_lock (&self->mutex);
  g_hash_table_iter_init (&iter, peer->topics);
  while (g_hash_table_iter_next (&iter, (gpointer *) &topic, NULL))
    {
      guint count = GPOINTER_TO_UINT (g_hash_table_lookup (self->subscribers, topic));

      if (count <= 1)
        {
          g_hash_table_remove (self->subscribers, topic);
          g_ptr_array_add (unsubscribed, g_strdup (topic));
        }
      else
        g_hash_table_replace (self->subscribers, g_strdup (topic), GUINT_TO_POINTER (count - 1));
    }
  g_mutex_unlock (&self->mutex);

  for (guint i = 0; i < unsubscribed->len; i++)
    {
      g_auto(LyStorageOp) op = { 0, };

      ly_storage_op_init (&op, LY_STORAGE_OP_UNSUBSCRIBE, g_ptr_array_index (unsubscribed, i), NULL, NULL);
      ly_storage_backend_submit (self->backend, &op, NULL, NULL);
    }

  for (guint i = 0; i < G_N_ELEMENTS (peer->bindings); i++)
    ly_control_remove_handlers (peer->control, &peer->bindings[i]);
  g_object_unref (peer->control);
  g_hash_table_unref (peer->topics);
  g_clear_pointer (&peer->policy, ly_storage_policy_free);
  g_free (peer);
}

/* Call it in the control's context (see ly_control_remove_handlers()). */
void
ly_storage_server_remove_peer (LyStorageServer *self,
                               LyControl       *control)
{
  Peer *peer = NULL;

  g_mutex_lock (&self->mutex);
  for (guint i = 0; i < self->peers->len; i++)
    if (((Peer *) g_ptr_array_index (self->peers, i))->control == control)
      {
        peer = g_ptr_array_steal_index (self->peers, i);
        break;
      }
  g_mutex_unlock (&self->mutex);

  if (peer != NULL)
    peer_free (peer);
}

/* Notifications ------------------------------------------------------------ */

/* What may wait for a child in notifications before it misses the next
 * ones: its replies queue behind them, so a child that another one's
 * changes flood would otherwise wait for megabytes of them before each
 * reply. */
#define NOTIFY_BACKLOG (16 * 1024)

/* Tells @peer, unless it fell behind.  A change notification (which the
 * child can make up for by reading again) is skipped while more than
 * NOTIFY_BACKLOG waits for it; a publication only when its queue is
 * full.  A child that missed some is told so (its storage's
 * changes-missed) before the next one it gets: nothing is lost
 * silently, and the hub never waits for a child. */
static void
notify_peer_locked (Peer       *peer,
                    const char *method,
                    GVariant   *args,
                    gboolean    may_skip)
{
  if (may_skip && ly_channel_get_queued_bytes (ly_control_get_channel (peer->control)) > NOTIFY_BACKLOG)
    {
      if (!peer->warned)
        g_debug ("“%s” falls behind: it misses storage notifications, and is told so",
                 ly_control_get_name (peer->control));
      peer->warned = TRUE;
      peer->missed = TRUE;
      return;
    }

  if (peer->missed && ly_control_notify (peer->control, LY_STORAGE_MISSED_METHOD, NULL, NULL))
    peer->missed = FALSE;
  if (!ly_control_notify (peer->control, method, args, NULL))
    peer->missed = TRUE;
}

void
ly_storage_server_notify_changed (LyStorageServer *self,
                                  const char      *key,
                                  GVariant        *value,
                                  gconstpointer    origin)
{
  g_autoptr(GVariant) args = NULL;

  Peer *origin_peer = NULL;

  g_mutex_lock (&self->mutex);
  for (guint i = 0; i < self->peers->len; i++)
    {
      Peer *peer = g_ptr_array_index (self->peers, i);

      if (peer->control == origin)
        {
          origin_peer = peer;
          continue;
        }
      if (!ly_storage_policy_may_read (peer->policy, key))
        continue;
      if (args == NULL)
        args = g_variant_ref_sink (g_variant_new ("(s@mv)", key, ly_storage_maybe_variant (value)));
      notify_peer_locked (peer, LY_STORAGE_CHANGED_METHOD, args, TRUE);
    }
  account_change_locked (self, key, value, origin_peer);
  g_mutex_unlock (&self->mutex);
}

void
ly_storage_server_notify_published (LyStorageServer *self,
                                    const char      *topic,
                                    GVariant        *value)
{
  g_autoptr(GVariant) args = NULL;

  g_mutex_lock (&self->mutex);
  for (guint i = 0; i < self->peers->len; i++)
    {
      Peer *peer = g_ptr_array_index (self->peers, i);

      if (!g_hash_table_contains (peer->topics, topic))
        continue;
      if (args == NULL)
        args = g_variant_ref_sink (g_variant_new ("(sv)", topic, value));
      notify_peer_locked (peer, LY_STORAGE_PUBLISHED_METHOD, args, FALSE);
    }
  g_mutex_unlock (&self->mutex);
}

void
ly_storage_server_notify_missed (LyStorageServer *self)
{
  g_mutex_lock (&self->mutex);
  for (guint i = 0; i < self->peers->len; i++)
    notify_peer_locked (g_ptr_array_index (self->peers, i), LY_STORAGE_MISSED_METHOD, NULL, FALSE);
  g_mutex_unlock (&self->mutex);
}

/* The server --------------------------------------------------------------- */

LyStorageServer *
ly_storage_server_new (LyStorageBackend *backend,
                       gsize             max_value_size)
{
  LyStorageServer *self = g_new0 (LyStorageServer, 1);

  g_mutex_init (&self->mutex);
  self->backend = backend;
  self->peers = g_ptr_array_new ();
  self->subscribers = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  self->owners = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, key_owner_free);
  self->usage = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
  self->max_value_size = max_value_size;

  return self;
}

void
ly_storage_server_set_max_value_size (LyStorageServer *self,
                                      gsize            max_value_size)
{
  g_mutex_lock (&self->mutex);
  self->max_value_size = max_value_size;
  g_mutex_unlock (&self->mutex);
}

void
ly_storage_server_free (LyStorageServer *self)
{
  while (self->peers->len > 0)
    peer_free (g_ptr_array_steal_index (self->peers, self->peers->len - 1));
  g_ptr_array_unref (self->peers);
  g_hash_table_unref (self->subscribers);
  g_hash_table_unref (self->owners);
  g_hash_table_unref (self->usage);
  g_mutex_clear (&self->mutex);
  g_free (self);
}

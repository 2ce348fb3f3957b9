/* ly-storage-redis.c: the storage on a Redis server, shared by the hubs
 * of several hosts
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "config.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>
#include <hiredis/async.h>

#include "ly-context-private.h"
#include "ly-errors.h"
#include "ly-i18n-private.h"
#include "ly-storage-backend-private.h"

/*
 * What is in Redis
 * ================
 *
 * With the key prefix P (default `ly:`) and the database number D:
 *
 *     P k:KEY      a string: the value of KEY, encoded as its GVariant type
 *                  string, one NUL byte, then its serialised data in
 *                  GVariant's normal form (little-endian)
 *     P keys       a set: every KEY there is
 *     P seq        an integer: how many changes were ever made
 *     P D:changes  the pub/sub channel of the changes, in the order of
 *                  Redis: "HUB FIRST COUNT\n", then COUNT records
 *                  "OPID KEYLENGTH VALUELENGTH\n" KEY VALUE (a length of
 *                  -1 and no value for a deleted key); record i is change
 *                  number FIRST + i, made by the operation OPID of HUB
 *     P D:t:TOPIC  the pub/sub channel of TOPIC: each message one encoded
 *                  value
 *
 * Every write is one Lua script (write_script) that applies a batch of
 * sets, deletes and compare-and-sets, counts the real changes and
 * publishes them, all at once: every process of every hub hears of every
 * change once, in Redis's order.
 *
 * A hub keeps what it read and what it heard of (the change stream
 * carries the values), numbered by change: a read answered from Redis
 * comes with the number the store had, so a change heard of later wins
 * only if it is newer (the subscribe-then-load race).  A write completes
 * once the change stream has reached the number its reply gave: by then
 * this hub emitted every earlier change, and its cache has the new value,
 * so a process never reads older than what it was told.  The cache is
 * used only while the change stream is known to be whole: after a lost
 * connection it is dropped, and the reconnection is announced (the
 * missed event) once the stream is whole again.
 *
 * Threads: hiredis is used by the thread that runs the backend's main
 * context (or holds it, in a blocking call); other threads hand their
 * operations over (ly_context_invoke()).  Only the cache is shared, under
 * @cache_mutex.
 */

#define DEFAULT_PORT            6379
#define DEFAULT_PREFIX          "ly:"
#define DEFAULT_TIMEOUT_USEC    (2 * G_USEC_PER_SEC)
#define RECONNECT_MIN_MSEC      100
#define RECONNECT_MAX_MSEC      5000
#define MAX_BATCH               4096
#define MAX_CACHE_ENTRIES       (64 * 1024)
/* How long a new storage may take to follow the change stream: longer
 * than an operation's bound, since a loaded machine (or one starting
 * Redis) takes a while to set two connections up. */
#define FOLLOW_TIMEOUT_USEC     (10 * G_USEC_PER_SEC)

/* The writes of a batch, packed in one argument (a Redis argument per
 * field would cost Redis an object each) as a MessagePack array that
 * Redis's cmsgpack reads in C: four strings an operation, KIND (S set,
 * D delete, C compare-and-set), KEY, EXPECTED and VALUE, an empty string
 * for none (an encoded value is never empty).  The script reads every
 * key once (MGET), applies the operations in order on what it read, and
 * writes what changed once (MSET, DEL, SADD, SREM); operation i of the
 * batch is OPID BASE + i.  It returns the swapped and changed flags, two
 * characters an operation, and the number of the last change. */
static const char write_script[] =
  "local p, hub, base, ops, channel = ARGV[1], ARGV[2], tonumber(ARGV[3]), cmsgpack.unpack(ARGV[4]), ARGV[5]\n"
  "local function call_chunked (command, first, items)\n"
  "  local out = {}\n"
  "  for i = 1, #items, 1000 do\n"
  "    local chunk = { unpack(items, i, math.min(i + 999, #items)) }\n"
  "    if first then table.insert(chunk, 1, first) end\n"
  "    local got = redis.call(command, unpack(chunk))\n"
  "    if type(got) == 'table' then for _, v in ipairs(got) do out[#out + 1] = v end end\n"
  "  end\n"
  "  return out\n"
  "end\n"
  "local keys, names, current, original = {}, {}, {}, {}\n"
  "for i = 2, #ops, 4 do\n"
  "  local k = p .. 'k:' .. ops[i]\n"
  "  if names[k] == nil then names[k] = ops[i]; keys[#keys + 1] = k end\n"
  "  ops[i] = k\n"
  "end\n"
  "local got = call_chunked('MGET', nil, keys)\n"
  "for i, k in ipairs(keys) do original[k] = got[i]; current[k] = got[i] end\n"
  "local seq = tonumber(redis.call('GET', p .. 'seq') or '0')\n"
  "local first, records, results = seq + 1, {}, {}\n"
  "for i = 1, #ops, 4 do\n"
  "  local kind, k, expected, value = ops[i], ops[i + 1], ops[i + 2], ops[i + 3]\n"
  "  local old = current[k]\n"
  "  local swapped, changed = '1', '0'\n"
  "  if kind == 'C' then\n"
  "    if expected == '' then swapped = old and '0' or '1' else swapped = (old == expected) and '1' or '0' end\n"
  "  end\n"
  "  if swapped == '1' then\n"
  "    if value == '' then\n"
  "      if old then current[k] = false; changed = '1' end\n"
  "    elseif old ~= value then\n"
  "      current[k] = value; changed = '1'\n"
  "    end\n"
  "  end\n"
  "  if changed == '1' then\n"
  "    seq = seq + 1\n"
  "    local n, name = #records, names[k]\n"
  "    records[n + 1] = string.format('%d %d %d\\n', base + (i - 1) / 4, #name, value == '' and -1 or #value)\n"
  "    records[n + 2] = name\n"
  "    records[n + 3] = value\n"
  "  end\n"
  "  results[#results + 1] = swapped .. changed\n"
  "end\n"
  "if seq >= first then\n"
  "  local sets, dels, added, removed = {}, {}, {}, {}\n"
  "  for _, k in ipairs(keys) do\n"
  "    local o, c = original[k], current[k]\n"
  "    if c ~= o then\n"
  "      if c then\n"
  "        sets[#sets + 1] = k; sets[#sets + 1] = c\n"
  "        if not o then added[#added + 1] = names[k] end\n"
  "      else\n"
  "        dels[#dels + 1] = k; removed[#removed + 1] = names[k]\n"
  "      end\n"
  "    end\n"
  "  end\n"
  "  if #sets > 0 then call_chunked('MSET', nil, sets) end\n"
  "  if #dels > 0 then call_chunked('DEL', nil, dels) end\n"
  "  if #added > 0 then call_chunked('SADD', p .. 'keys', added) end\n"
  "  if #removed > 0 then call_chunked('SREM', p .. 'keys', removed) end\n"
  "  redis.call('SET', p .. 'seq', string.format('%d', seq))\n"
  "  redis.call('PUBLISH', channel, string.format('%s %d %d\\n', hub, first, seq - first + 1) .. table.concat(records))\n"
  "end\n"
  "return { table.concat(results), seq }\n";

static const char read_script[] =
  "return {redis.call('GET', ARGV[1] .. 'k:' .. ARGV[2]), tonumber(redis.call('GET', ARGV[1] .. 'seq') or '0')}\n";

static const char read_all_script[] =
  "local out = {}\n"
  "for _, key in ipairs(redis.call('SMEMBERS', ARGV[1] .. 'keys')) do\n"
  "  local v = redis.call('GET', ARGV[1] .. 'k:' .. key)\n"
  "  if v then out[#out + 1] = key; out[#out + 1] = v end\n"
  "end\n"
  "return out\n";

enum { SCRIPT_WRITE, SCRIPT_READ, SCRIPT_READ_ALL, N_SCRIPTS };

static const char * const scripts[N_SCRIPTS] = { write_script, read_script, read_all_script };

typedef struct _LyStorageRedis LyStorageRedis;
typedef struct _Connection Connection;

/* The GSource of a hiredis connection.  Unlike hiredis's GLib adapter,
 * it does not read after a write that ended the connection (and freed
 * its context). */
typedef struct
{
  GSource     source;
  GPollFD     poll_fd;
  Connection *connection;
} RedisSource;

struct _Connection
{
  LyStorageRedis    *redis;
  redisAsyncContext *ac;          /* NULL when there is none */
  RedisSource       *source;
  gboolean           subscriber;
};

/* An operation, from its submission to its completion. */
typedef struct
{
  gint                 ref_count;
  LyStorageRedis      *redis;
  LyStorageOpKind      kind;
  char                *name;
  GVariant            *value;       /* NULL for none */
  GVariant            *expected;    /* NULL for none */
  gconstpointer        origin;
  guint64              id;
  LyStorageResultFunc  func;
  gpointer             func_data;
  LyWaiter            *waiter;      /* a blocking run() */
  LyStorageResult      result;
  GError              *error;
  guint64              wait_seq;    /* completes once the stream is there */
  gint64               deadline;
  gboolean             started;
  gboolean             completed;
  GList                link;        /* in @outstanding or @parked */
  GQueue              *queue;       /* which, or NULL */
} Op;

struct _LyStorageRedis
{
  LyStorageBackend  parent;

  /* what the URI said */
  char             *description;    /* the URI without its password */
  char             *host;
  int               port;
  char             *path;           /* a unix socket, or NULL */
  int               db;
  char             *password;
  char             *prefix;
  char             *changes_channel;
  char             *topic_prefix;   /* of the topics' channels */
  char              hub_id[17];
  char              shas[N_SCRIPTS][41];
  gint64            timeout_usec;

  /* the rest belongs to the thread that runs @context */
  GMainContext     *context;
  Connection        commands;
  Connection        subscriber;
  gboolean          connected;      /* both connections are up (or coming) */
  gboolean          was_connected;  /* a reconnection is news */
  guint             reconnect_msec;
  GSource          *reconnect_source;
  GSource          *flush_source;   /* sends the pending writes */
  GSource          *deadline_source;
  GPtrArray        *pending_writes; /* of Op*, not sent yet */
  GQueue            outstanding;    /* of Op*, sent, waiting for a reply */
  GQueue            parked;         /* of Op*, answered, waiting for the stream */
  GHashTable       *writes_by_id;   /* id → Op*, this hub's writes in flight */
  guint64           next_id;
  guint64           stream_seq;     /* the last change heard of */
  gboolean          baseline_known; /* @stream_seq is Redis's at least */
  GHashTable       *topics;         /* topic → how many subscriptions */
  GHashTable       *subscribing;    /* channel → GQueue of Op* waiting */

  /* @cache_mutex protects @cache and @synced (read by any thread) */
  GMutex            cache_mutex;
  GHashTable       *cache;          /* key → CacheEntry* */
  gboolean          synced;         /* the change stream is whole */
  gint              writes_in_flight; /* atomic: this hub's writes, submitted,
                                       * not completed */
};

typedef struct
{
  GVariant *value;                  /* NULL: the key does not exist */
  guint64   seq;
} CacheEntry;

static void connection_start (Connection *connection);
static void connection_lost  (LyStorageRedis *self,
                              const char     *why);
static void flush_writes     (LyStorageRedis *self);

/* Errors ------------------------------------------------------------------- */

static GError *
unavailable_error (LyStorageRedis *self,
                   const char     *why)
{
  return g_error_new (LY_STORAGE_ERROR, LY_STORAGE_ERROR_UNAVAILABLE,
                      _("The storage server %s is unavailable: %s"), self->description, why);
}

/* Values ------------------------------------------------------------------- */

/* Appends the encoding of @value in Redis (see the top of this file);
 * returns its length, 0 for none. */
static gsize
append_encoded (GString  *out,
                GVariant *value)
{
  g_autoptr(GVariant) normal = NULL;
  const char *type;
  gsize type_length, size, start = out->len;

  if (value == NULL)
    return 0;

  normal = g_variant_get_normal_form (value);
  type = g_variant_get_type_string (normal);
  type_length = strlen (type);
  size = g_variant_get_size (normal);
  g_string_append_len (out, type, (gssize) type_length + 1);
  g_string_set_size (out, out->len + size);
  g_variant_store (normal, out->str + out->len - size);

  return out->len - start;
}

/* A value from Redis, checked as anything from another process is; NULL
 * when it is not one. */
static GVariant *
decode_value (const char *data,
              gsize       length)
{
  const char *nul = memchr (data, '\0', length);
  g_autoptr(GBytes) bytes = NULL;
  g_autoptr(GVariant) value = NULL;

  if (nul == NULL || nul == data || !g_variant_type_string_is_valid (data))
    return NULL;

  bytes = g_bytes_new (nul + 1, length - (gsize) (nul + 1 - data));
  value = g_variant_ref_sink (g_variant_new_from_bytes (G_VARIANT_TYPE (data), bytes, FALSE));

  /* the hubs write normal forms: anything else was not written by one */
  return g_variant_is_normal_form (value) ? g_steal_pointer (&value) : NULL;
}

/* The cache ------------------------------------------------------------------ */

static void
cache_entry_free (CacheEntry *entry)
{
  g_clear_pointer (&entry->value, g_variant_unref);
  g_free (entry);
}

/* What the cache knows of @key: TRUE with *value (a reference, NULL for
 * a key that does not exist), or FALSE. */
static gboolean
cache_lookup (LyStorageRedis  *self,
              const char      *key,
              GVariant       **value)
{
  CacheEntry *entry = NULL;

  /* a write of this hub not completed yet may change what is read: the
   * read then goes behind it, to Redis */
  if (g_atomic_int_get (&self->writes_in_flight) > 0)
    return FALSE;

  g_mutex_lock (&self->cache_mutex);
  if (self->synced)
    entry = g_hash_table_lookup (self->cache, key);
  if (entry != NULL)
    *value = entry->value != NULL ? g_variant_ref (entry->value) : NULL;
  g_mutex_unlock (&self->cache_mutex);

  return entry != NULL;
}

/* Keeps @value (NULL: absent) as @key's at change @seq, unless the cache
 * knows a newer one. */
static void
cache_store (LyStorageRedis *self,
             const char     *key,
             GVariant       *value,
             guint64         seq)
{
  CacheEntry *entry;

  g_mutex_lock (&self->cache_mutex);
  if (!self->synced)
    {
      g_mutex_unlock (&self->cache_mutex);
      return;
    }

  entry = g_hash_table_lookup (self->cache, key);
  if (entry == NULL)
    {
      /* a bound: when full, start over (reads refill it) */
      if (g_hash_table_size (self->cache) >= MAX_CACHE_ENTRIES)
        g_hash_table_remove_all (self->cache);
      entry = g_new0 (CacheEntry, 1);
      g_hash_table_insert (self->cache, g_strdup (key), entry);
    }
  else if (entry->seq > seq)
    {
      g_mutex_unlock (&self->cache_mutex);
      return;
    }

  g_clear_pointer (&entry->value, g_variant_unref);
  entry->value = value != NULL ? g_variant_ref (value) : NULL;
  entry->seq = seq;
  g_mutex_unlock (&self->cache_mutex);
}

static void
set_synced (LyStorageRedis *self,
            gboolean        synced)
{
  g_mutex_lock (&self->cache_mutex);
  self->synced = synced;
  if (!synced)
    g_hash_table_remove_all (self->cache);
  g_mutex_unlock (&self->cache_mutex);
}

/* Operations ---------------------------------------------------------------- */

static gboolean
is_write (LyStorageOpKind kind)
{
  return kind == LY_STORAGE_OP_SET || kind == LY_STORAGE_OP_DELETE || kind == LY_STORAGE_OP_COMPARE_AND_SET;
}

static Op *
op_new (LyStorageRedis      *self,
        const LyStorageOp   *op,
        LyStorageResultFunc  func,
        gpointer             user_data)
{
  Op *o = g_new0 (Op, 1);

  o->ref_count = 1;
  o->redis = self;
  o->kind = op->kind;
  o->name = g_strdup (op->name);
  o->value = op->value != NULL ? g_variant_ref (op->value) : NULL;
  o->expected = op->expected != NULL ? g_variant_ref (op->expected) : NULL;
  o->origin = op->origin;
  o->func = func;
  o->func_data = user_data;
  o->deadline = g_get_monotonic_time () + self->timeout_usec;

  if (is_write (o->kind))
    g_atomic_int_inc (&self->writes_in_flight);

  return o;
}

static Op *
op_ref (Op *o)
{
  o->ref_count++;
  return o;
}

/* @outstanding and @parked hold a reference to each op in them, by a
 * link in the op (no allocation per op). */
static void
queue_op (GQueue *queue,
          Op     *o)
{
  o->link.data = op_ref (o);
  o->queue = queue;
  g_queue_push_tail_link (queue, &o->link);
}

/* Takes @o out of its queue, if it is in @queue; FALSE if not. */
static gboolean
unqueue_op (GQueue *queue,
            Op     *o)
{
  if (o->queue != queue)
    return FALSE;

  g_queue_unlink (queue, &o->link);
  o->queue = NULL;
  return TRUE;
}

static Op *
pop_op (GQueue *queue)
{
  GList *link = g_queue_pop_head_link (queue);
  Op *o;

  if (link == NULL)
    return NULL;
  o = link->data;
  o->queue = NULL;
  return o;
}

static void
op_unref (Op *o)
{
  if (--o->ref_count > 0)
    return;

  g_free (o->name);
  g_clear_pointer (&o->value, g_variant_unref);
  g_clear_pointer (&o->expected, g_variant_unref);
  ly_storage_result_clear (&o->result);
  g_clear_error (&o->error);
  g_free (o);
}

static void
schedule_deadline (LyStorageRedis *self,
                   gint64          deadline)
{
  gint64 current = g_source_get_ready_time (self->deadline_source);

  if (current < 0 || deadline < current)
    g_source_set_ready_time (self->deadline_source, deadline);
}

/* Completes @o (once) with its result or @error (taken). */
static void
op_complete (Op     *o,
             GError *error)
{
  LyStorageRedis *self = o->redis;

  if (o->completed)
    {
      g_clear_error (&error);
      return;
    }
  o->completed = TRUE;
  o->error = error;

  if (is_write (o->kind))
    g_atomic_int_dec_and_test (&self->writes_in_flight);

  if (o->id != 0)
    g_hash_table_remove (self->writes_by_id, &o->id);

  if (o->waiter != NULL)
    ly_waiter_signal (o->waiter);
  else if (o->func != NULL)
    o->func (&o->result, o->error, o->func_data);
  else if (o->error != NULL)
    ly_storage_warn_unanswered (o->name, o->error);
}

/* A write's reply came: it completes when the stream reached @seq. */
static void
op_park (Op      *o,
         guint64  seq)
{
  LyStorageRedis *self = o->redis;

  if (self->baseline_known && self->stream_seq >= seq)
    {
      op_complete (o, NULL);
      return;
    }

  o->wait_seq = seq;
  queue_op (&self->parked, o);
  schedule_deadline (self, o->deadline);
}

static void
complete_parked (LyStorageRedis *self)
{
  Op *o;

  while ((o = g_queue_peek_head (&self->parked)) != NULL &&
         self->baseline_known && o->wait_seq <= self->stream_seq)
    {
      pop_op (&self->parked);
      op_complete (o, NULL);
      op_unref (o);
    }
}

static void
fail_queue (LyStorageRedis *self,
            GQueue         *queue,
            const char     *why)
{
  Op *o;

  while ((o = pop_op (queue)) != NULL)
    {
      op_complete (o, unavailable_error (self, why));
      op_unref (o);
    }
}

/* Every operation not completed fails: the connection is gone. */
static void
fail_everything (LyStorageRedis *self,
                 const char     *why)
{
  GHashTableIter iter;
  GQueue *waiting;

  for (guint i = 0; i < self->pending_writes->len; i++)
    op_complete (g_ptr_array_index (self->pending_writes, i), unavailable_error (self, why));
  g_ptr_array_set_size (self->pending_writes, 0);

  fail_queue (self, &self->outstanding, why);
  fail_queue (self, &self->parked, why);

  g_hash_table_iter_init (&iter, self->subscribing);
  while (g_hash_table_iter_next (&iter, NULL, (gpointer *) &waiting))
    fail_queue (self, waiting, why);
  g_hash_table_remove_all (self->subscribing);
}

/* The hiredis source ------------------------------------------------------------ */

static gboolean
redis_source_check (GSource *source)
{
  RedisSource *redis = (RedisSource *) source;

  return (redis->poll_fd.revents & (redis->poll_fd.events | G_IO_ERR | G_IO_HUP)) != 0;
}

static gboolean
redis_source_prepare (GSource *source,
                      gint    *timeout)
{
  *timeout = -1;
  return redis_source_check (source);
}

/* hiredis writes with write(): to a server that went away, that raises
 * SIGPIPE, which would end the hub.  It is blocked in this thread while
 * hiredis writes, and one it raised is taken before it is unblocked. */
typedef struct
{
  sigset_t old_mask;
  gboolean pending_before;
} PipeGuard;

static void
pipe_guard_begin (PipeGuard *guard)
{
  sigset_t pipe_only, pending;

  sigemptyset (&pipe_only);
  sigaddset (&pipe_only, SIGPIPE);
  pthread_sigmask (SIG_BLOCK, &pipe_only, &guard->old_mask);
  sigpending (&pending);
  guard->pending_before = sigismember (&pending, SIGPIPE);
}

static void
pipe_guard_end (PipeGuard *guard)
{
  sigset_t pipe_only, pending;
  const struct timespec no_wait = { 0, 0 };

  sigemptyset (&pipe_only);
  sigaddset (&pipe_only, SIGPIPE);
  sigpending (&pending);
  if (!guard->pending_before && sigismember (&pending, SIGPIPE))
    while (sigtimedwait (&pipe_only, NULL, &no_wait) < 0 && errno == EINTR)
      ;
  pthread_sigmask (SIG_SETMASK, &guard->old_mask, NULL);
}

/* Writes, then reads, unless the write ended the connection. */
static void
connection_handle_io (Connection *connection,
                      gushort     revents)
{
  if (connection->ac != NULL && (revents & (G_IO_OUT | G_IO_ERR | G_IO_HUP)))
    {
      PipeGuard guard;

      pipe_guard_begin (&guard);
      redisAsyncHandleWrite (connection->ac);
      pipe_guard_end (&guard);
    }
  if (connection->ac != NULL && (revents & (G_IO_IN | G_IO_ERR | G_IO_HUP)))
    redisAsyncHandleRead (connection->ac);
}

static gboolean
redis_source_dispatch (GSource     *source,
                       GSourceFunc  callback,
                       gpointer     user_data)
{
  RedisSource *redis = (RedisSource *) source;
  gushort revents = redis->poll_fd.revents;

  redis->poll_fd.revents = 0;
  connection_handle_io (redis->connection, revents);
  return G_SOURCE_CONTINUE;
}

static GSourceFuncs redis_source_funcs = {
  .prepare = redis_source_prepare,
  .check = redis_source_check,
  .dispatch = redis_source_dispatch,
};

/* The hooks hiredis calls; always in the thread that holds the context,
 * whose next poll sees the change. */
static void
hook_add_read (void *data)
{
  ((RedisSource *) data)->poll_fd.events |= G_IO_IN;
}

static void
hook_del_read (void *data)
{
  ((RedisSource *) data)->poll_fd.events &= ~G_IO_IN;
}

static void
hook_add_write (void *data)
{
  ((RedisSource *) data)->poll_fd.events |= G_IO_OUT;
}

static void
hook_del_write (void *data)
{
  ((RedisSource *) data)->poll_fd.events &= ~G_IO_OUT;
}

/* hiredis frees the context: the source goes with it. */
static void
hook_cleanup (void *data)
{
  RedisSource *source = data;
  Connection *connection = source->connection;

  if (connection->source == source)
    {
      connection->ac = NULL;
      connection->source = NULL;
    }
  g_source_destroy ((GSource *) source);
  g_source_unref ((GSource *) source);
}

static void
connection_attach (Connection        *connection,
                   redisAsyncContext *ac)
{
  RedisSource *source = (RedisSource *) g_source_new (&redis_source_funcs, sizeof (RedisSource));

  source->connection = connection;
  source->poll_fd.fd = ac->c.fd;
  g_source_add_poll ((GSource *) source, &source->poll_fd);
  g_source_set_static_name ((GSource *) source, "[liteyuki-comm] redis");
  g_source_attach ((GSource *) source, connection->redis->context);

  ac->data = connection;
  ac->ev.addRead = hook_add_read;
  ac->ev.delRead = hook_del_read;
  ac->ev.addWrite = hook_add_write;
  ac->ev.delWrite = hook_del_write;
  ac->ev.cleanup = hook_cleanup;
  ac->ev.data = source;
  connection->ac = ac;
  connection->source = source;
}

static void
connection_close (Connection *connection)
{
  if (connection->ac != NULL)
    redisAsyncFree (connection->ac);   /* hook_cleanup clears it */
}

/* Commands -------------------------------------------------------------------- */

/* Sends a command; FALSE when there is no connection (the caller fails
 * what it waits for). */
static gboolean
send_command (Connection      *connection,
              redisCallbackFn *callback,
              gpointer         privdata,
              GPtrArray       *args,
              GArray          *lengths)
{
  if (connection->ac == NULL)
    return FALSE;

  return redisAsyncCommandArgv (connection->ac, callback, privdata, (int) args->len,
                                (const char **) args->pdata, (const size_t *) (gpointer) lengths->data) == REDIS_OK;
}

typedef struct
{
  GPtrArray *args;
  GArray    *lengths;
  GPtrArray *owned;
} Command;

static void
command_init (Command *command)
{
  command->args = g_ptr_array_new ();
  command->lengths = g_array_new (FALSE, FALSE, sizeof (size_t));
  command->owned = g_ptr_array_new_with_free_func (g_free);
}

static void
command_clear (Command *command)
{
  g_ptr_array_unref (command->args);
  g_array_unref (command->lengths);
  g_ptr_array_unref (command->owned);
}

static void
command_add (Command    *command,
             const void *data,
             size_t      length)
{
  g_ptr_array_add (command->args, (gpointer) data);
  g_array_append_val (command->lengths, length);
}

static void
command_add_string (Command    *command,
                    const char *string)
{
  command_add (command, string, strlen (string));
}

/* A string the command keeps until it is cleared. */
static void
command_add_take (Command *command,
                  char    *string)
{
  g_ptr_array_add (command->owned, string);
  command_add_string (command, string);
}

static void
command_add_script (LyStorageRedis *self,
                    Command        *command,
                    guint           script)
{
  command_add_string (command, "EVALSHA");
  command_add_string (command, self->shas[script]);
  command_add_string (command, "0");
  command_add_string (command, self->prefix);
}

/* A reply that is not an error, or NULL with @error. */
static redisReply *
check_reply (LyStorageRedis  *self,
             void            *reply,
             GError         **error)
{
  redisReply *r = reply;

  if (r == NULL)
    {
      g_propagate_error (error, unavailable_error (self, _("the connection was lost")));
      return NULL;
    }
  if (r->type == REDIS_REPLY_ERROR)
    {
      g_set_error (error, LY_STORAGE_ERROR, LY_STORAGE_ERROR_UNAVAILABLE,
                   _("The storage server %s refused an operation: %s"), self->description, r->str);
      return NULL;
    }
  return r;
}

static gboolean
reply_is_array (redisReply *r,
                gsize       min_elements)
{
  return r->type == REDIS_REPLY_ARRAY && r->elements >= min_elements;
}

static GError *
unexpected_reply (LyStorageRedis *self)
{
  return g_error_new (LY_STORAGE_ERROR, LY_STORAGE_ERROR_UNAVAILABLE,
                      _("The storage server %s answered in a way this version does not know"),
                      self->description);
}

/* Takes @o out of the outstanding queue (replies come in order, but a
 * lost connection may have failed it already). */
static void
take_outstanding (LyStorageRedis *self,
                  Op             *o)
{
  if (unqueue_op (&self->outstanding, o))
    op_unref (o);
}

/* Writes ---------------------------------------------------------------------- */

typedef struct
{
  LyStorageRedis *redis;
  GPtrArray      *ops;      /* of Op*, references */
} WriteBatch;

static void
write_replied (redisAsyncContext *ac,
               void              *reply,
               void              *privdata)
{
  WriteBatch *batch = privdata;
  LyStorageRedis *self = batch->redis;
  GError *error = NULL;
  redisReply *r = check_reply (self, reply, &error);
  guint n = batch->ops->len;

  if (r != NULL && (!reply_is_array (r, 2) || r->element[0]->type != REDIS_REPLY_STRING ||
                    r->element[0]->len != 2 * n || r->element[1]->type != REDIS_REPLY_INTEGER))
    error = unexpected_reply (self);

  for (guint i = 0; i < n; i++)
    {
      Op *o = g_ptr_array_index (batch->ops, i);

      take_outstanding (self, o);
      if (error != NULL)
        op_complete (o, g_error_copy (error));
      else if (!o->completed)
        {
          o->result.done = r->element[0]->str[2 * i] == '1';
          o->result.changed = r->element[0]->str[2 * i + 1] == '1';
          if (o->kind != LY_STORAGE_OP_COMPARE_AND_SET)
            o->result.done = o->result.changed;
          op_park (o, (guint64) r->element[1]->integer);
        }
    }

  g_clear_error (&error);
  g_ptr_array_unref (batch->ops);
  g_free (batch);
}

static char
write_kind (LyStorageOpKind kind)
{
  switch (kind)
    {
    case LY_STORAGE_OP_COMPARE_AND_SET:
      return 'C';
    case LY_STORAGE_OP_DELETE:
      return 'D';
    default:
      return 'S';
    }
}

/* MessagePack: a string of @length bytes (str 32 holds any), its header
 * first. */
static void
append_msgpack_string_header (GString *out,
                              gsize    length)
{
  guint8 header[5] = { 0xdb, (guint8) (length >> 24), (guint8) (length >> 16), (guint8) (length >> 8), (guint8) length };

  if (length < 32)
    g_string_append_c (out, (char) (0xa0 | length));
  else if (length < 256)
    {
      g_string_append_c (out, (char) 0xd9);
      g_string_append_c (out, (char) length);
    }
  else
    g_string_append_len (out, (const char *) header, sizeof header);
}

static void
append_msgpack_string (GString    *out,
                       const char *data,
                       gsize       length)
{
  append_msgpack_string_header (out, length);
  g_string_append_len (out, data, (gssize) length);
}

/* An encoded value (or an empty string for none), as a MessagePack
 * string: the header is written once the length is known. */
static void
append_msgpack_value (GString  *out,
                      GString  *scratch,
                      GVariant *value)
{
  g_string_truncate (scratch, 0);
  append_encoded (scratch, value);
  append_msgpack_string (out, scratch->str, scratch->len);
}

/* Packs @o as write_script reads it. */
static void
pack_write (GString *packed,
            GString *scratch,
            Op      *o)
{
  char kind = write_kind (o->kind);

  append_msgpack_string (packed, &kind, 1);
  append_msgpack_string (packed, o->name, strlen (o->name));
  append_msgpack_value (packed, scratch, o->expected);
  append_msgpack_value (packed, scratch, o->value);
}

/* The pending writes, as one script. */
static void
flush_writes (LyStorageRedis *self)
{
  g_autoptr(GString) packed = NULL;
  g_autoptr(GString) scratch = NULL;
  g_autofree char *base = NULL;
  WriteBatch *batch;
  Command command;
  guint32 n_items;

  /* until this hub hears the change stream, a write's change could pass
   * unheard: writes wait for it */
  if (self->pending_writes->len == 0 || !self->baseline_known)
    return;

  batch = g_new0 (WriteBatch, 1);
  batch->redis = self;
  batch->ops = g_steal_pointer (&self->pending_writes);
  self->pending_writes = g_ptr_array_new_with_free_func ((GDestroyNotify) op_unref);

  packed = g_string_sized_new (batch->ops->len * 64);
  scratch = g_string_new (NULL);
  base = g_strdup_printf ("%" G_GUINT64_FORMAT, self->next_id + 1);

  /* MessagePack array 32 of four strings an operation */
  n_items = batch->ops->len * 4;
  g_string_append_c (packed, (char) 0xdd);
  g_string_append_c (packed, (char) (n_items >> 24));
  g_string_append_c (packed, (char) (n_items >> 16));
  g_string_append_c (packed, (char) (n_items >> 8));
  g_string_append_c (packed, (char) n_items);
  for (guint i = 0; i < batch->ops->len; i++)
    {
      Op *o = g_ptr_array_index (batch->ops, i);

      o->id = ++self->next_id;
      g_hash_table_insert (self->writes_by_id, &o->id, o);
      pack_write (packed, scratch, o);
      queue_op (&self->outstanding, o);
    }

  command_init (&command);
  command_add_script (self, &command, SCRIPT_WRITE);
  command_add_string (&command, self->hub_id);
  command_add_string (&command, base);
  command_add (&command, packed->str, packed->len);
  command_add_string (&command, self->changes_channel);

  if (!send_command (&self->commands, write_replied, batch, command.args, command.lengths))
    {
      /* nothing was sent: the replies will not come */
      for (guint i = 0; i < batch->ops->len; i++)
        take_outstanding (self, g_ptr_array_index (batch->ops, i));
      for (guint i = 0; i < batch->ops->len; i++)
        op_complete (g_ptr_array_index (batch->ops, i), unavailable_error (self, _("not connected")));
      g_ptr_array_unref (batch->ops);
      g_free (batch);
    }
  command_clear (&command);
}

static gboolean
on_flush_source (gpointer user_data)
{
  flush_writes (user_data);
  return G_SOURCE_CONTINUE;
}

/* Reads and the rest ---------------------------------------------------------- */

static void
read_replied (redisAsyncContext *ac,
              void              *reply,
              void              *privdata)
{
  Op *o = privdata;
  LyStorageRedis *self = o->redis;
  GError *error = NULL;
  redisReply *r = check_reply (self, reply, &error);
  g_autoptr(GVariant) value = NULL;

  take_outstanding (self, o);

  if (r != NULL && (!reply_is_array (r, 2) || r->element[1]->type != REDIS_REPLY_INTEGER))
    error = unexpected_reply (self);
  else if (r != NULL && r->element[0]->type == REDIS_REPLY_STRING &&
           (value = decode_value (r->element[0]->str, r->element[0]->len)) == NULL)
    error = g_error_new (LY_STORAGE_ERROR, LY_STORAGE_ERROR_UNAVAILABLE,
                         _("The storage server %s holds a value of “%s” that is not in the storage’s encoding"),
                         self->description, o->name);

  if (error == NULL)
    {
      cache_store (self, o->name, value, (guint64) r->element[1]->integer);
      if (o->kind == LY_STORAGE_OP_CONTAINS)
        o->result.done = value != NULL;
      else
        o->result.value = g_steal_pointer (&value);
    }

  op_complete (o, error);
  op_unref (o);
}

static int
compare_strings (gconstpointer a,
                 gconstpointer b)
{
  return strcmp (*(const char * const *) a, *(const char * const *) b);
}

static void
list_replied (redisAsyncContext *ac,
              void              *reply,
              void              *privdata)
{
  Op *o = privdata;
  LyStorageRedis *self = o->redis;
  GError *error = NULL;
  redisReply *r = check_reply (self, reply, &error);

  take_outstanding (self, o);

  if (r != NULL && r->type != REDIS_REPLY_ARRAY)
    error = unexpected_reply (self);

  if (error == NULL && o->kind == LY_STORAGE_OP_LIST_KEYS)
    {
      gsize n = 0;

      o->result.keys = g_new0 (char *, r->elements + 1);
      for (gsize i = 0; i < r->elements; i++)
        if (r->element[i]->type == REDIS_REPLY_STRING && g_utf8_validate (r->element[i]->str, r->element[i]->len, NULL))
          o->result.keys[n++] = g_strndup (r->element[i]->str, r->element[i]->len);
      qsort (o->result.keys, n, sizeof (char *), compare_strings);
    }
  else if (error == NULL)
    {
      g_auto(GVariantBuilder) builder = G_VARIANT_BUILDER_INIT (G_VARIANT_TYPE_VARDICT);

      for (gsize i = 0; i + 1 < r->elements; i += 2)
        {
          g_autofree char *key = NULL;
          g_autoptr(GVariant) value = NULL;

          if (r->element[i]->type != REDIS_REPLY_STRING || r->element[i + 1]->type != REDIS_REPLY_STRING ||
              !g_utf8_validate (r->element[i]->str, r->element[i]->len, NULL))
            continue;
          key = g_strndup (r->element[i]->str, r->element[i]->len);
          value = decode_value (r->element[i + 1]->str, r->element[i + 1]->len);
          if (value != NULL)
            g_variant_builder_add (&builder, "{sv}", key, value);
        }
      o->result.value = g_variant_ref_sink (g_variant_builder_end (&builder));
    }

  op_complete (o, error);
  op_unref (o);
}

static void
publish_replied (redisAsyncContext *ac,
                 void              *reply,
                 void              *privdata)
{
  Op *o = privdata;
  GError *error = NULL;

  take_outstanding (o->redis, o);
  check_reply (o->redis, reply, &error);
  op_complete (o, error);
  op_unref (o);
}

static void
send_op (LyStorageRedis    *self,
         Op                *o,
         redisCallbackFn   *callback,
         Command           *command)
{
  queue_op (&self->outstanding, o);
  schedule_deadline (self, o->deadline);

  if (!send_command (&self->commands, callback, op_ref (o), command->args, command->lengths))
    {
      take_outstanding (self, o);
      op_unref (o);
      op_complete (o, unavailable_error (self, _("not connected")));
    }
}

/* Subscriptions ----------------------------------------------------------------- */

static char *
topic_channel (LyStorageRedis *self,
               const char     *topic)
{
  return g_strconcat (self->topic_prefix, topic, NULL);
}

static void on_subscriber_message (redisAsyncContext *ac,
                                   void              *reply,
                                   void              *privdata);

static gboolean
send_subscription (LyStorageRedis *self,
                   const char     *verb,
                   const char     *channel)
{
  Command command;
  gboolean sent;

  command_init (&command);
  command_add_string (&command, verb);
  command_add_string (&command, channel);
  sent = send_command (&self->subscriber, on_subscriber_message, self, command.args, command.lengths);
  command_clear (&command);

  return sent;
}

/* Counts the subscriptions of a topic; the first one subscribes this hub
 * to it (completing when Redis confirms), the last one unsubscribes. */
static void
change_subscription (LyStorageRedis *self,
                     Op             *o)
{
  g_autofree char *channel = topic_channel (self, o->name);
  guint count = GPOINTER_TO_UINT (g_hash_table_lookup (self->topics, o->name));
  GQueue *waiting;

  if (o->kind == LY_STORAGE_OP_UNSUBSCRIBE)
    {
      if (count > 1)
        g_hash_table_insert (self->topics, g_strdup (o->name), GUINT_TO_POINTER (count - 1));
      else if (count == 1)
        {
          g_hash_table_remove (self->topics, o->name);
          send_subscription (self, "UNSUBSCRIBE", channel);
        }
      op_complete (o, NULL);
      return;
    }

  g_hash_table_insert (self->topics, g_strdup (o->name), GUINT_TO_POINTER (count + 1));
  if (count > 0 || !self->connected)
    {
      /* already subscribed; or it will be, on the reconnection */
      op_complete (o, NULL);
      return;
    }

  if (!send_subscription (self, "SUBSCRIBE", channel))
    {
      op_complete (o, unavailable_error (self, _("not connected")));
      return;
    }

  waiting = g_hash_table_lookup (self->subscribing, channel);
  if (waiting == NULL)
    {
      waiting = g_queue_new ();
      g_hash_table_insert (self->subscribing, g_steal_pointer (&channel), waiting);
    }
  queue_op (waiting, o);
  schedule_deadline (self, o->deadline);
}

/* The change stream ----------------------------------------------------------- */

/* Reads "A B C\n" (three integers, the last two may be -1) at *@data,
 * within @end. */
static gboolean
parse_header (const char **data,
              const char  *end,
              char        *first,
              gsize        first_size,
              gint64      *second,
              gint64      *third)
{
  const char *newline = memchr (*data, '\n', (gsize) (end - *data));
  g_autofree char *line = NULL;
  g_auto(GStrv) fields = NULL;

  if (newline == NULL)
    return FALSE;
  line = g_strndup (*data, (gsize) (newline - *data));
  fields = g_strsplit (line, " ", 4);
  if (g_strv_length (fields) != 3 || strlen (fields[0]) >= first_size ||
      !g_ascii_string_to_signed (fields[1], 10, -1, G_MAXINT64, second, NULL) ||
      !g_ascii_string_to_signed (fields[2], 10, -1, G_MAXINT64, third, NULL))
    return FALSE;

  g_strlcpy (first, fields[0], first_size);
  *data = newline + 1;
  return TRUE;
}

static void
stream_advanced (LyStorageRedis *self,
                 guint64         seq)
{
  self->stream_seq = MAX (self->stream_seq, seq);
  complete_parked (self);
}

/* A message of the change stream: each change is reported, with its
 * origin when it is an operation of this hub, and kept in the cache. */
static void
handle_changes (LyStorageRedis *self,
                const char     *data,
                gsize           length)
{
  const char *end = data + length;
  char hub[32], opid[32];
  gint64 first, count;

  if (!parse_header (&data, end, hub, sizeof hub, &first, &count) || first < 1 || count < 1)
    {
      g_warning ("The change stream of %s carries a message this version does not know", self->description);
      return;
    }

  for (gint64 i = 0; i < count; i++)
    {
      g_autofree char *key = NULL;
      g_autoptr(GVariant) value = NULL;
      gint64 key_length, value_length;
      gconstpointer origin = NULL;
      guint64 id;

      if (!parse_header (&data, end, opid, sizeof opid, &key_length, &value_length) ||
          key_length < 0 || key_length > end - data ||
          value_length > end - data - key_length)
        {
          g_warning ("The change stream of %s carries a message this version does not know", self->description);
          break;
        }

      key = g_strndup (data, (gsize) key_length);
      data += key_length;

      /* this hub's own change: its origin, and its value (a set's, or a
       * swap's new one) without decoding it again */
      if (g_str_equal (hub, self->hub_id) && g_ascii_string_to_unsigned (opid, 10, 1, G_MAXUINT64, &id, NULL))
        {
          Op *o = g_hash_table_lookup (self->writes_by_id, &id);

          if (o != NULL)
            {
              origin = o->origin;
              if (value_length >= 0 && o->value != NULL)
                value = g_variant_ref (o->value);
            }
        }

      if (value_length >= 0)
        {
          if (value == NULL)
            value = decode_value (data, (gsize) value_length);
          data += value_length;
          if (value == NULL)
            {
              g_warning ("The storage server %s holds a value of “%s” that is not in the storage’s encoding",
                         self->description, key);
              continue;
            }
        }

      cache_store (self, key, value, (guint64) (first + i));
      if (g_utf8_validate (key, -1, NULL))
        ly_storage_backend_changed (&self->parent, key, value, origin);
    }

  stream_advanced (self, (guint64) (first + count - 1));
}

/* How many changes Redis had when the stream was surely whole: from
 * then on, a write's number can be waited for. */
static void
baseline_replied (redisAsyncContext *ac,
                  void              *reply,
                  void              *privdata)
{
  LyStorageRedis *self = privdata;
  redisReply *r = reply;
  guint64 seq = 0;

  if (r == NULL || (r->type != REDIS_REPLY_NIL &&
                    (r->type != REDIS_REPLY_STRING || !g_ascii_string_to_unsigned (r->str, 10, 0, G_MAXUINT64, &seq, NULL))))
    return;   /* the connection is lost, or the key was tampered with */

  g_atomic_int_set (&self->baseline_known, TRUE);
  set_synced (self, TRUE);
  stream_advanced (self, seq);
  flush_writes (self);

  if (self->was_connected)
    ly_storage_backend_missed (&self->parent);
  self->was_connected = TRUE;
  self->reconnect_msec = RECONNECT_MIN_MSEC;
}

static void
request_baseline (LyStorageRedis *self)
{
  g_autofree char *key = g_strconcat (self->prefix, "seq", NULL);
  Command command;

  command_init (&command);
  command_add_string (&command, "GET");
  command_add_string (&command, key);
  send_command (&self->commands, baseline_replied, self, command.args, command.lengths);
  command_clear (&command);
}

static void
subscribed (LyStorageRedis *self,
            const char     *channel)
{
  GQueue *waiting;
  Op *o;

  if (g_str_equal (channel, self->changes_channel))
    {
      request_baseline (self);
      return;
    }

  waiting = g_hash_table_lookup (self->subscribing, channel);
  if (waiting == NULL)
    return;
  while ((o = pop_op (waiting)) != NULL)
    {
      op_complete (o, NULL);
      op_unref (o);
    }
  g_hash_table_remove (self->subscribing, channel);
}

static void
on_subscriber_message (redisAsyncContext *ac,
                       void              *reply,
                       void              *privdata)
{
  LyStorageRedis *self = privdata;
  redisReply *r = reply;
  g_autofree char *channel = NULL;
  const char *kind;

  if (r == NULL || !reply_is_array (r, 3) || r->element[0]->type != REDIS_REPLY_STRING ||
      r->element[1]->type != REDIS_REPLY_STRING)
    return;

  kind = r->element[0]->str;
  channel = g_strndup (r->element[1]->str, r->element[1]->len);

  if (g_str_equal (kind, "subscribe"))
    subscribed (self, channel);
  else if (g_str_equal (kind, "message") && r->element[2]->type == REDIS_REPLY_STRING)
    {
      if (g_str_equal (channel, self->changes_channel))
        handle_changes (self, r->element[2]->str, r->element[2]->len);
      else if (g_str_has_prefix (channel, self->topic_prefix))
        {
          const char *topic = channel + strlen (self->topic_prefix);
          g_autoptr(GVariant) value = decode_value (r->element[2]->str, r->element[2]->len);

          if (value != NULL && g_hash_table_contains (self->topics, topic))
            ly_storage_backend_published (&self->parent, topic, value, NULL);
        }
    }
}

/* Connections ----------------------------------------------------------------- */

static void
setup_replied (redisAsyncContext *ac,
               void              *reply,
               void              *privdata)
{
  Connection *connection = privdata;
  LyStorageRedis *self = connection->redis;
  g_autoptr(GError) error = NULL;

  if (reply != NULL && check_reply (self, reply, &error) == NULL)
    {
      g_autofree char *why = g_strdup (error->message);

      connection_lost (self, why);
    }
}

static void
send_setup (Connection *connection,
            const char *first,
            const char *second,
            const char *third)
{
  Command command;

  command_init (&command);
  command_add_string (&command, first);
  if (second != NULL)
    command_add_string (&command, second);
  if (third != NULL)
    command_add_string (&command, third);
  send_command (connection, setup_replied, connection, command.args, command.lengths);
  command_clear (&command);
}

static void
on_connected (const redisAsyncContext *ac,
              int                      status)
{
  Connection *connection = ac->data;
  g_autofree char *why = NULL;

  if (status == REDIS_OK)
    return;

  /* hiredis frees this context when we return: it is not ours to free */
  why = g_strdup (ac->errstr);
  connection->ac = NULL;
  connection_lost (connection->redis, why);
}

static void
on_disconnected (const redisAsyncContext *ac,
                 int                      status)
{
  Connection *connection = ac->data;

  connection_lost (connection->redis, ac->err != 0 ? ac->errstr : _("the server closed the connection"));
}

static gboolean
on_reconnect (gpointer user_data)
{
  LyStorageRedis *self = user_data;

  g_clear_pointer (&self->reconnect_source, g_source_unref);
  self->connected = TRUE;
  connection_start (&self->commands);
  connection_start (&self->subscriber);
  return G_SOURCE_REMOVE;
}

/* Whatever broke: both connections go, everything waiting fails, the
 * cache is forgotten, and a reconnection comes after a back-off. */
static void
connection_lost (LyStorageRedis *self,
                 const char     *why)
{
  if (!self->connected)
    return;

  g_warning ("The storage server %s is unavailable (%s); reconnecting in %u ms",
             self->description, why, self->reconnect_msec);
  self->connected = FALSE;
  self->baseline_known = FALSE;
  set_synced (self, FALSE);
  fail_everything (self, why);
  connection_close (&self->commands);
  connection_close (&self->subscriber);

  if (self->reconnect_source == NULL)
    {
      self->reconnect_source = g_timeout_source_new (self->reconnect_msec);
      g_source_set_callback (self->reconnect_source, on_reconnect, self, NULL);
      g_source_set_static_name (self->reconnect_source, "[liteyuki-comm] redis reconnect");
      g_source_attach (self->reconnect_source, self->context);
      self->reconnect_msec = MIN (self->reconnect_msec * 2, RECONNECT_MAX_MSEC);
    }
}

/* Connects, authenticates, and sets the connection up: the scripts and
 * the database for the commands, the change stream and the topics for
 * the subscriber. */
static void
connection_start (Connection *connection)
{
  LyStorageRedis *self = connection->redis;
  redisAsyncContext *ac = self->path != NULL ? redisAsyncConnectUnix (self->path)
                                             : redisAsyncConnect (self->host, self->port);
  g_autofree char *db = g_strdup_printf ("%d", self->db);
  GHashTableIter iter;
  const char *topic;

  if (ac == NULL || ac->err != 0)
    {
      g_autofree char *why = g_strdup (ac != NULL ? ac->errstr : g_strerror (ENOMEM));

      if (ac != NULL)
        redisAsyncFree (ac);
      connection_lost (self, why);
      return;
    }

  connection_attach (connection, ac);
  redisAsyncSetConnectCallback (ac, on_connected);
  redisAsyncSetDisconnectCallback (ac, on_disconnected);

  if (self->password != NULL)
    send_setup (connection, "AUTH", self->password, NULL);

  if (!connection->subscriber)
    {
      send_setup (connection, "SELECT", db, NULL);
      for (guint i = 0; i < N_SCRIPTS; i++)
        send_setup (connection, "SCRIPT", "LOAD", scripts[i]);
      return;
    }

  send_subscription (self, "SUBSCRIBE", self->changes_channel);
  g_hash_table_iter_init (&iter, self->topics);
  while (g_hash_table_iter_next (&iter, (gpointer *) &topic, NULL))
    {
      g_autofree char *channel = topic_channel (self, topic);

      send_subscription (self, "SUBSCRIBE", channel);
    }
}

/* Deadlines --------------------------------------------------------------------- */

static gint64
earliest_deadline (LyStorageRedis *self)
{
  gint64 earliest = G_MAXINT64;
  GQueue *queues[2] = { &self->outstanding, &self->parked };

  for (guint i = 0; i < G_N_ELEMENTS (queues); i++)
    {
      Op *head = g_queue_peek_head (queues[i]);

      if (head != NULL)
        earliest = MIN (earliest, head->deadline);
    }
  if (self->pending_writes->len > 0)
    earliest = MIN (earliest, ((Op *) g_ptr_array_index (self->pending_writes, 0))->deadline);

  return earliest;
}

/* An operation waited too long: Redis is not answering.  The connection
 * is given up (so that no late answer can be mistaken for another), and
 * every operation fails. */
static gboolean
check_deadlines (LyStorageRedis *self)
{
  gint64 earliest = earliest_deadline (self);

  if (earliest == G_MAXINT64)
    return FALSE;
  if (earliest > g_get_monotonic_time ())
    {
      g_source_set_ready_time (self->deadline_source, earliest);
      return FALSE;
    }

  connection_lost (self, _("it did not answer in time"));
  return TRUE;
}

static gboolean
on_deadline_source (gpointer user_data)
{
  check_deadlines (user_data);
  return G_SOURCE_CONTINUE;
}

/* Starting operations (in the context) ------------------------------------------ */

static void
start_op (LyStorageRedis *self,
          Op             *o)
{
  Command command;

  if (o->started)
    return;
  o->started = TRUE;

  if (!self->connected)
    {
      op_complete (o, unavailable_error (self, _("not connected")));
      return;
    }

  if (is_write (o->kind))
    {
      g_ptr_array_add (self->pending_writes, op_ref (o));
      schedule_deadline (self, o->deadline);
      if (self->pending_writes->len >= MAX_BATCH)
        flush_writes (self);
      else
        g_source_set_ready_time (self->flush_source, 0);
      return;
    }
  if (o->kind == LY_STORAGE_OP_SUBSCRIBE || o->kind == LY_STORAGE_OP_UNSUBSCRIBE)
    {
      change_subscription (self, o);
      return;
    }

  /* what was written before is applied before */
  flush_writes (self);

  command_init (&command);
  if (o->kind == LY_STORAGE_OP_GET || o->kind == LY_STORAGE_OP_CONTAINS)
    {
      command_add_script (self, &command, SCRIPT_READ);
      command_add_string (&command, o->name);
      send_op (self, o, read_replied, &command);
    }
  else if (o->kind == LY_STORAGE_OP_GET_ALL)
    {
      command_add_script (self, &command, SCRIPT_READ_ALL);
      send_op (self, o, list_replied, &command);
    }
  else if (o->kind == LY_STORAGE_OP_LIST_KEYS)
    {
      command_add_string (&command, "SMEMBERS");
      command_add_take (&command, g_strconcat (self->prefix, "keys", NULL));
      send_op (self, o, list_replied, &command);
    }
  else
    {
      g_autoptr(GString) value = g_string_new (NULL);

      append_encoded (value, o->value);
      command_add_string (&command, "PUBLISH");
      command_add_take (&command, topic_channel (self, o->name));
      command_add (&command, value->str, value->len);
      send_op (self, o, publish_replied, &command);
    }
  command_clear (&command);
}

static gboolean
start_op_in_context (gpointer data)
{
  Op *o = data;

  start_op (o->redis, o);
  return G_SOURCE_REMOVE;
}

/* Answers GET and CONTAINS from the cache when it can. */
static gboolean
answer_from_cache (LyStorageRedis    *self,
                   const LyStorageOp *op,
                   LyStorageResult   *result)
{
  GVariant *value = NULL;

  if ((op->kind != LY_STORAGE_OP_GET && op->kind != LY_STORAGE_OP_CONTAINS) ||
      !cache_lookup (self, op->name, &value))
    return FALSE;

  if (op->kind == LY_STORAGE_OP_CONTAINS)
    {
      result->done = value != NULL;
      g_clear_pointer (&value, g_variant_unref);
    }
  else
    result->value = value;
  return TRUE;
}

static void
redis_submit (LyStorageBackend    *backend,
              const LyStorageOp   *op,
              LyStorageResultFunc  func,
              gpointer             user_data)
{
  LyStorageRedis *self = (LyStorageRedis *) backend;
  g_auto(LyStorageResult) result = { 0, };
  Op *o;

  if (answer_from_cache (self, op, &result))
    {
      if (func != NULL)
        func (&result, NULL, user_data);
      return;
    }

  o = op_new (self, op, func, user_data);
  if (g_main_context_is_owner (self->context))
    start_op (self, o);     /* the usual case: a child's request */
  else
    ly_context_invoke (self->context, start_op_in_context, op_ref (o), (GDestroyNotify) op_unref);
  op_unref (o);
}

/* Blocking operations ------------------------------------------------------------ */

/* Polls both connections once, for at most until @deadline, and
 * handles what they have; FALSE when there is no connection. */
static gboolean
poll_connections (LyStorageRedis *self,
                  gint64          deadline)
{
  Connection *connections[2] = { &self->commands, &self->subscriber };
  struct pollfd fds[2];
  gint64 wait_usec;
  guint n = 0;

  for (guint i = 0; i < 2; i++)
    if (connections[i]->source != NULL)
      {
        fds[n].fd = connections[i]->source->poll_fd.fd;
        fds[n].events = POLLIN | ((connections[i]->source->poll_fd.events & G_IO_OUT) ? POLLOUT : 0);
        fds[n].revents = 0;
        n++;
      }
  if (n == 0)
    return FALSE;

  wait_usec = MAX (deadline - g_get_monotonic_time (), 0);
  if (poll (fds, n, (int) MIN (wait_usec / 1000 + 1, 1000)) < 0 && errno != EINTR)
    return FALSE;

  for (guint i = 0, j = 0; i < 2 && j < n; i++)
    if (connections[i]->source != NULL && fds[j].fd == connections[i]->source->poll_fd.fd)
      {
        gushort revents = (fds[j].revents & POLLIN ? G_IO_IN : 0) | (fds[j].revents & POLLOUT ? G_IO_OUT : 0) |
                          (fds[j].revents & POLLERR ? G_IO_ERR : 0) | (fds[j].revents & POLLHUP ? G_IO_HUP : 0);

        j++;
        connection_handle_io (connections[i], revents);
      }

  return TRUE;
}

/* Drives both connections in this thread, which holds the context,
 * until @o completes; its deadline bounds the wait. */
static void
drive_until_done (LyStorageRedis *self,
                  Op             *o)
{
  flush_writes (self);

  while (!o->completed)
    {
      if (check_deadlines (self) || o->completed)
        break;
      if (g_get_monotonic_time () > o->deadline)
        {
          connection_lost (self, _("it did not answer in time"));
          op_complete (o, unavailable_error (self, _("it did not answer in time")));
          break;
        }

      if (!poll_connections (self, MIN (earliest_deadline (self), o->deadline)))
        {
          /* no connection (it was just lost): the op failed with it */
          op_complete (o, unavailable_error (self, _("not connected")));
          break;
        }
    }
}

typedef struct
{
  LyStorageRedis *self;
  Op             *op;
} DriveCall;

static gboolean
start_and_drive (gpointer data)
{
  DriveCall *call = data;

  start_op (call->self, call->op);
  drive_until_done (call->self, call->op);
  return G_SOURCE_REMOVE;
}

static gboolean
drive (gpointer data)
{
  DriveCall *call = data;

  /* the thread it was handed to may not have started it */
  start_op (call->self, call->op);
  drive_until_done (call->self, call->op);
  return G_SOURCE_REMOVE;
}

/* In the thread that holds the context: the operation, and the I/O of
 * both connections until it completes.  Elsewhere: handed to the
 * context's thread; should that one stop running the context, this one
 * takes over. */
static gboolean
redis_run (LyStorageBackend   *backend,
           const LyStorageOp  *op,
           LyStorageResult    *result,
           GError            **error)
{
  LyStorageRedis *self = (LyStorageRedis *) backend;
  LyWaiter waiter;
  DriveCall call = { self, NULL };
  gboolean ok;
  Op *o;

  if (answer_from_cache (self, op, result))
    return TRUE;

  o = op_new (self, op, NULL, NULL);
  o->waiter = &waiter;
  ly_waiter_init (&waiter);
  call.op = o;

  if (!ly_context_run_if_owner (self->context, start_and_drive, &call))
    {
      g_main_context_invoke_full (self->context, G_PRIORITY_DEFAULT, start_op_in_context,
                                  op_ref (o), (GDestroyNotify) op_unref);
      while (!ly_waiter_wait_until (&waiter, g_get_monotonic_time () + 50 * G_TIME_SPAN_MILLISECOND))
        ly_context_run_if_owner (self->context, drive, &call);
    }

  ly_waiter_clear (&waiter);
  ok = o->error == NULL;
  if (ok)
    {
      *result = o->result;
      memset (&o->result, 0, sizeof o->result);
    }
  else
    g_propagate_error (error, g_steal_pointer (&o->error));
  op_unref (o);

  return ok;
}

/* Creation ---------------------------------------------------------------------- */

static gint64
follow_deadline (LyStorageRedis *self)
{
  return g_get_monotonic_time () + MAX (self->timeout_usec, FOLLOW_TIMEOUT_USEC);
}

/* Until the change stream is followed, within FOLLOW_TIMEOUT_USEC. */
static gboolean
drive_until_synced (gpointer data)
{
  LyStorageRedis *self = data;
  gint64 deadline = follow_deadline (self);

  while (!self->baseline_known && self->connected && g_get_monotonic_time () < deadline &&
         poll_connections (self, deadline))
    ;

  return G_SOURCE_REMOVE;
}

static void
redis_free (LyStorageBackend *backend)
{
  LyStorageRedis *self = (LyStorageRedis *) backend;

  self->connected = FALSE;
  fail_everything (self, _("the storage is closed"));
  connection_close (&self->commands);
  connection_close (&self->subscriber);
  fail_everything (self, _("the storage is closed"));

  if (self->reconnect_source != NULL)
    {
      g_source_destroy (self->reconnect_source);
      g_source_unref (self->reconnect_source);
    }
  g_source_destroy (self->flush_source);
  g_source_unref (self->flush_source);
  g_source_destroy (self->deadline_source);
  g_source_unref (self->deadline_source);
  g_ptr_array_unref (self->pending_writes);
  g_hash_table_unref (self->writes_by_id);
  g_hash_table_unref (self->topics);
  g_hash_table_unref (self->subscribing);
  g_hash_table_unref (self->cache);
  g_mutex_clear (&self->cache_mutex);
  g_main_context_unref (self->context);
  g_free (self->description);
  g_free (self->host);
  g_free (self->path);
  g_free (self->password);
  g_free (self->prefix);
  g_free (self->changes_channel);
  g_free (self->topic_prefix);
  g_free (self);
}

static void
redis_set_timeout (LyStorageBackend *backend,
                   gint64            usec)
{
  LyStorageRedis *self = (LyStorageRedis *) backend;

  self->timeout_usec = usec > 0 ? usec : DEFAULT_TIMEOUT_USEC;
}

static const LyStorageBackendVTable redis_vtable = {
  .name = "redis",
  .is_proxy = FALSE,
  .free = redis_free,
  .run = redis_run,
  .submit = redis_submit,
  .set_timeout = redis_set_timeout,
};

static gboolean
ready_time_dispatch (GSource     *source,
                     GSourceFunc  callback,
                     gpointer     user_data)
{
  g_source_set_ready_time (source, -1);
  return callback (user_data);
}

static GSource *
ready_time_source_new (LyStorageRedis *self,
                       GSourceFunc     func,
                       const char     *name)
{
  static GSourceFuncs funcs = { .dispatch = ready_time_dispatch, };
  GSource *source = g_source_new (&funcs, sizeof (GSource));

  g_source_set_callback (source, func, self, NULL);
  g_source_set_static_name (source, name);
  g_source_attach (source, self->context);
  return source;
}

/* The URI ------------------------------------------------------------------------- */

static gboolean
invalid_uri (GError     **error,
             const char  *uri,
             const char  *why)
{
  g_set_error (error, LY_STORAGE_ERROR, LY_STORAGE_ERROR_INVALID_URI,
               _("“%s” is not a storage URI this version understands: %s"), uri, why);
  return FALSE;
}

static gboolean
read_password_file (LyStorageRedis  *self,
                    const char      *path,
                    GError         **error)
{
  g_autoptr(GError) local_error = NULL;
  g_autofree char *contents = NULL;

  if (!g_file_get_contents (path, &contents, NULL, &local_error))
    {
      g_set_error (error, LY_STORAGE_ERROR, LY_STORAGE_ERROR_UNAVAILABLE,
                   _("Could not read the storage password from “%s”: %s"), path, local_error->message);
      return FALSE;
    }

  g_strchomp (contents);
  g_free (self->password);
  self->password = g_steal_pointer (&contents);
  return TRUE;
}

/* redis://[:PASSWORD@]HOST[:PORT][/DB][?prefix=P&password-file=F] and
 * unix:///PATH[?db=N&prefix=P&password-file=F]; without a password, the
 * environment's LY_STORAGE_PASSWORD. */
static gboolean
parse_uri (LyStorageRedis  *self,
           const char      *uri,
           GError         **error)
{
  g_autoptr(GUri) parsed = g_uri_parse (uri, G_URI_FLAGS_HAS_PASSWORD | G_URI_FLAGS_ENCODED_QUERY, NULL);
  g_autoptr(GHashTable) params = NULL;
  const char *scheme, *value;

  if (parsed == NULL)
    return invalid_uri (error, uri, _("it is not a URI"));

  scheme = g_uri_get_scheme (parsed);
  if (g_uri_get_query (parsed) != NULL &&
      (params = g_uri_parse_params (g_uri_get_query (parsed), -1, "&", G_URI_PARAMS_NONE, NULL)) == NULL)
    return invalid_uri (error, uri, _("its query is not made of NAME=VALUE pairs"));

  if (g_str_equal (scheme, "redis"))
    {
      const char *path = g_uri_get_path (parsed);
      guint64 db = 0;

      if (g_uri_get_host (parsed) == NULL || g_uri_get_host (parsed)[0] == '\0')
        return invalid_uri (error, uri, _("it names no host"));
      self->host = g_strdup (g_uri_get_host (parsed));
      self->port = g_uri_get_port (parsed) > 0 ? g_uri_get_port (parsed) : DEFAULT_PORT;
      if (path[0] != '\0' && !(path[0] == '/' && (path[1] == '\0' || g_ascii_string_to_unsigned (path + 1, 10, 0, 65535, &db, NULL))))
        return invalid_uri (error, uri, _("its path is not a database number"));
      self->db = (int) db;
      self->password = g_strdup (g_uri_get_password (parsed));
      self->description = g_strdup_printf ("redis://%s:%d/%d", self->host, self->port, self->db);
    }
  else if (g_str_equal (scheme, "unix"))
    {
      guint64 db = 0;

      if (g_uri_get_path (parsed)[0] != '/')
        return invalid_uri (error, uri, _("it names no socket path"));
      self->path = g_strdup (g_uri_get_path (parsed));
      if (params != NULL && (value = g_hash_table_lookup (params, "db")) != NULL &&
          !g_ascii_string_to_unsigned (value, 10, 0, 65535, &db, NULL))
        return invalid_uri (error, uri, _("its db is not a database number"));
      self->db = (int) db;
      self->description = g_strdup_printf ("unix://%s?db=%d", self->path, self->db);
    }
  else
    return invalid_uri (error, uri, _("use redis://HOST[:PORT][/DB] or unix:///PATH[?db=N]"));

  self->prefix = g_strdup (params != NULL && (value = g_hash_table_lookup (params, "prefix")) != NULL
                           ? value : DEFAULT_PREFIX);
  if (params != NULL && (value = g_hash_table_lookup (params, "password-file")) != NULL &&
      !read_password_file (self, value, error))
    return FALSE;
  if (self->password == NULL && g_getenv ("LY_STORAGE_PASSWORD") != NULL)
    self->password = g_strdup (g_getenv ("LY_STORAGE_PASSWORD"));

  return TRUE;
}

/* The first contact: blocking, bounded, so that a wrong address, a wrong
 * password or another kind of server is said at once.  It loads the
 * scripts, whose digests the commands name. */
static gboolean
check_server (LyStorageRedis  *self,
              GError         **error)
{
  struct timeval tv = { (time_t) (self->timeout_usec / G_USEC_PER_SEC), (suseconds_t) (self->timeout_usec % G_USEC_PER_SEC) };
  redisContext *c = self->path != NULL ? redisConnectUnixWithTimeout (self->path, tv)
                                       : redisConnectWithTimeout (self->host, self->port, tv);
  redisReply *reply = NULL;
  gboolean ok = FALSE;
  PipeGuard guard;

  pipe_guard_begin (&guard);
  if (c == NULL || c->err != 0)
    {
      g_set_error (error, LY_STORAGE_ERROR, LY_STORAGE_ERROR_UNAVAILABLE,
                   _("Could not connect to the storage server %s: %s"), self->description,
                   c != NULL ? c->errstr : g_strerror (ENOMEM));
      goto out;
    }
  redisSetTimeout (c, tv);

  if (self->password != NULL)
    {
      reply = redisCommand (c, "AUTH %s", self->password);
      if (reply == NULL || reply->type == REDIS_REPLY_ERROR)
        {
          g_set_error (error, LY_STORAGE_ERROR, LY_STORAGE_ERROR_UNAVAILABLE,
                       _("The storage server %s refused the password: %s"), self->description,
                       reply != NULL ? reply->str : c->errstr);
          goto out;
        }
      g_clear_pointer (&reply, freeReplyObject);
    }

  reply = redisCommand (c, "PING");
  if (reply != NULL && reply->type == REDIS_REPLY_ERROR && g_str_has_prefix (reply->str, "NOAUTH"))
    {
      g_set_error (error, LY_STORAGE_ERROR, LY_STORAGE_ERROR_UNAVAILABLE,
                   _("The storage server %s asks for a password: give it in the URI, in a "
                     "password-file, or in LY_STORAGE_PASSWORD"), self->description);
      goto out;
    }
  if (reply == NULL || reply->type != REDIS_REPLY_STATUS || !g_str_equal (reply->str, "PONG"))
    {
      g_set_error (error, LY_STORAGE_ERROR, LY_STORAGE_ERROR_UNAVAILABLE,
                   _("The server at %s does not answer as a Redis server does: %s"), self->description,
                   reply == NULL ? c->errstr : reply->type == REDIS_REPLY_ERROR ? reply->str : _("an unexpected answer"));
      goto out;
    }
  g_clear_pointer (&reply, freeReplyObject);

  reply = redisCommand (c, "SELECT %d", self->db);
  if (reply == NULL || reply->type == REDIS_REPLY_ERROR)
    {
      g_set_error (error, LY_STORAGE_ERROR, LY_STORAGE_ERROR_UNAVAILABLE,
                   _("The storage server %s refused database %d: %s"), self->description, self->db,
                   reply != NULL ? reply->str : c->errstr);
      goto out;
    }
  g_clear_pointer (&reply, freeReplyObject);

  for (guint i = 0; i < N_SCRIPTS; i++)
    {
      reply = redisCommand (c, "SCRIPT LOAD %s", scripts[i]);
      if (reply == NULL || reply->type != REDIS_REPLY_STRING || reply->len != 40)
        {
          g_set_error (error, LY_STORAGE_ERROR, LY_STORAGE_ERROR_UNAVAILABLE,
                       _("The storage server %s did not load the storage’s scripts: %s"), self->description,
                       reply != NULL && reply->type == REDIS_REPLY_ERROR ? reply->str : c->errstr);
          goto out;
        }
      memcpy (self->shas[i], reply->str, 40);
      self->shas[i][40] = '\0';
      g_clear_pointer (&reply, freeReplyObject);
    }

  ok = TRUE;

out:
  g_clear_pointer (&reply, freeReplyObject);
  g_clear_pointer (&c, redisFree);
  pipe_guard_end (&guard);
  return ok;
}

/* A Redis backend for @uri, connected and ready; NULL with @error when
 * the URI is not one, or the server cannot be reached, refuses the
 * password or is not a Redis server. */
LyStorageBackend *
ly_storage_redis_new (const char             *uri,
                      const LyStorageEvents  *events,
                      gpointer                front,
                      GMainContext           *context,
                      GError                **error)
{
  LyStorageRedis *self = g_new0 (LyStorageRedis, 1);

  ly_storage_backend_init (&self->parent, &redis_vtable, events, front);
  self->timeout_usec = DEFAULT_TIMEOUT_USEC;
  self->context = g_main_context_ref (context);
  self->commands.redis = self;
  self->subscriber.redis = self;
  self->subscriber.subscriber = TRUE;
  self->reconnect_msec = RECONNECT_MIN_MSEC;
  self->pending_writes = g_ptr_array_new_with_free_func ((GDestroyNotify) op_unref);
  self->writes_by_id = g_hash_table_new (g_int64_hash, g_int64_equal);
  self->topics = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  self->subscribing = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, (GDestroyNotify) g_queue_free);
  self->cache = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, (GDestroyNotify) cache_entry_free);
  g_mutex_init (&self->cache_mutex);
  self->flush_source = ready_time_source_new (self, on_flush_source, "[liteyuki-comm] redis writes");
  self->deadline_source = ready_time_source_new (self, on_deadline_source, "[liteyuki-comm] redis deadlines");
  g_snprintf (self->hub_id, sizeof self->hub_id, "%08x%08x", g_random_int (), g_random_int ());

  if (!parse_uri (self, uri, error) || !check_server (self, error))
    {
      redis_free (&self->parent);
      return NULL;
    }

  self->changes_channel = g_strdup_printf ("%s%d:changes", self->prefix, self->db);
  self->topic_prefix = g_strdup_printf ("%s%d:t:", self->prefix, self->db);
  self->connected = TRUE;
  connection_start (&self->commands);
  connection_start (&self->subscriber);

  /* from its return on, the storage hears every change */
  if (!ly_context_run_if_owner (context, drive_until_synced, self))
    {
      /* the thread that runs the context drives the connections */
      gint64 deadline = follow_deadline (self);

      while (!g_atomic_int_get (&self->baseline_known) && g_get_monotonic_time () < deadline)
        g_usleep (5000);
    }
  if (!g_atomic_int_get (&self->baseline_known))
    {
      g_set_error (error, LY_STORAGE_ERROR, LY_STORAGE_ERROR_UNAVAILABLE,
                   _("The storage server %s did not let the storage follow its changes in time"),
                   self->description);
      redis_free (&self->parent);
      return NULL;
    }

  return &self->parent;
}

/* ly-storage-backend-private.h: the seam between LyStorage and its stores
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#include <gio/gio.h>

G_BEGIN_DECLS

/*
 * Storage backends
 * ================
 *
 * LyStorage (ly-storage.c) is a front end: it checks what callers give
 * it, emits the signals in its context and holds the API.  What it
 * stores, and where, is a backend's business, as a dconf engine's
 * sources are:
 *
 *     local   ly-storage-local.c   the authoritative store, in the hub
 *     proxy   ly-storage-proxy.c   a child's, over its control connection
 *                                  to the hub (sets batched)
 *     redis   ly-storage-redis.c   a hub's, on a Redis server that hubs on
 *                                  several hosts share (with a cache kept
 *                                  whole by Redis's change stream)
 *
 * and the hub serves its children from whatever backend it has
 * (ly-storage-server.c).  Every operation is an LyStorageOp; a backend
 * answers it either blocking (run) or through a callback (submit).
 *
 * Adding a backend
 * ----------------
 * Embed LyStorageBackend first in a struct of your own, fill an
 * LyStorageBackendVTable, and have a constructor that takes the events
 * (LyStorageEvents) and the front end's pointer for them
 * (ly_storage_backend_init()).  The contract:
 *
 *   - run() answers in the calling thread, any thread, and may block
 *     (for at most a bound of the backend's: every wait has one).
 *     submit() must not block: it answers at once or later, in the
 *     backend's own main context, by calling @func (which may be NULL:
 *     nobody waits; a failure is then the backend's to log, with
 *     ly_storage_warn_unanswered()).
 *   - The front end validated names and sizes (ly_storage_check_op());
 *     the server did the same for a child's requests.  A backend adds
 *     the errors of its own (a lost connection: a clear GError).
 *   - Operations of one thread are applied in the order they were
 *     made, submitted or run alike.
 *   - Every real change (never a set to an equal value) and every
 *     publication is reported through the events, exactly once each,
 *     in the order of the store, with the op's origin.  A backend may
 *     call the events from any thread, with its own lock held: the
 *     front end only queues them (and the server sends notifications),
 *     never calls back into the backend from there.
 *   - SUBSCRIBE and UNSUBSCRIBE are counted: the front end and the
 *     server each send one SUBSCRIBE when the first of their
 *     subscribers wants a topic, and one UNSUBSCRIBE when the last one
 *     leaves.  A backend that hears about every publication anyway
 *     (local) ignores them; one that must ask for them (a proxy, a
 *     Redis connection) asks while the count is above zero.
 *   - Reads (GET, CONTAINS, LIST_KEYS, GET_ALL) see every change this
 *     process made or was told about: a read path of its own (a cache,
 *     shared memory) must hold to that.
 */

typedef enum
{
  LY_STORAGE_OP_GET,
  LY_STORAGE_OP_CONTAINS,
  LY_STORAGE_OP_LIST_KEYS,
  LY_STORAGE_OP_GET_ALL,
  LY_STORAGE_OP_SET,
  LY_STORAGE_OP_DELETE,
  LY_STORAGE_OP_COMPARE_AND_SET,
  LY_STORAGE_OP_PUBLISH,
  LY_STORAGE_OP_SUBSCRIBE,
  LY_STORAGE_OP_UNSUBSCRIBE,
  LY_STORAGE_N_OPS
} LyStorageOpKind;

/* An operation.  It holds references to its values
 * (ly_storage_op_init(), ly_storage_op_clear()); @name is borrowed for
 * the duration of the call: a backend copies it if it keeps it. */
typedef struct
{
  LyStorageOpKind  kind;
  const char      *name;       /* the key or topic; NULL for LIST_KEYS, GET_ALL */
  GVariant        *expected;   /* COMPARE_AND_SET: NULL for "must not exist" */
  GVariant        *value;      /* SET, PUBLISH; COMPARE_AND_SET: NULL deletes */
  gconstpointer    origin;     /* who asked: NULL for this process, or the
                                * server's peer; the events name it */
} LyStorageOp;

/* The outcome of an operation, by kind:
 *   GET              @value, NULL for a missing key
 *   CONTAINS         @done: the key exists
 *   LIST_KEYS        @keys, sorted
 *   GET_ALL          @value, an a{sv}
 *   SET              @done: it changed the value
 *   DELETE           @done: the key existed
 *   COMPARE_AND_SET  @done: swapped; @changed: that changed the value
 *   the others       nothing */
typedef struct
{
  gboolean   done;
  gboolean   changed;
  GVariant  *value;
  char     **keys;
} LyStorageResult;

typedef void (*LyStorageResultFunc) (const LyStorageResult *result,
                                     const GError          *error,
                                     gpointer               user_data);

/* What a backend reports to its front end (see the contract above). */
typedef struct
{
  void (*changed)   (gpointer       front,
                     const char    *key,
                     GVariant      *value,      /* NULL: deleted */
                     gconstpointer  origin);
  void (*published) (gpointer       front,
                     const char    *topic,
                     GVariant      *value,
                     gconstpointer  origin);
  /* the store was out of reach: changes made meanwhile were not
   * reported (a backend that reconnects says so once its reports are
   * whole again) */
  void (*missed)    (gpointer       front);
} LyStorageEvents;

typedef struct _LyStorageBackend LyStorageBackend;

typedef struct
{
  const char *name;
  gboolean    is_proxy;       /* operations go to a hub */
  gboolean    in_memory;      /* the whole store is in this process and
                               * reports its changes in the order a
                               * snapshot (GET_ALL) sees them: the hub
                               * may publish it in shared memory */

  void     (*free)   (LyStorageBackend       *self);
  gboolean (*run)    (LyStorageBackend       *self,
                      const LyStorageOp      *op,
                      LyStorageResult        *result,
                      GError                **error);
  void     (*submit) (LyStorageBackend       *self,
                      const LyStorageOp      *op,
                      LyStorageResultFunc     func,
                      gpointer                user_data);
  /* optional: the bound of an operation's wait, 0 for the backend's
   * default */
  void     (*set_timeout) (LyStorageBackend  *self,
                           gint64             usec);
} LyStorageBackendVTable;

struct _LyStorageBackend
{
  const LyStorageBackendVTable *vtable;
  const LyStorageEvents        *events;
  gpointer                      front;
};

/* The methods of the control connection that carry the operations (the
 * proxy sends them, the server serves them), one per kind, with the
 * types of their arguments and replies:
 *
 *     StorageGet (s)                   → (mv)
 *     StorageContains (s)              → (b)
 *     StorageListKeys ()               → (as)
 *     StorageGetAll ()                 → (a{sv})
 *     StorageSet (sv)                  → (b) whether it changed the value
 *     StorageDelete (s)                → (b) whether the key existed
 *     StorageCompareAndSet (smvmv)     → (bb) swapped, changed
 *     StoragePublish (sv)              → ()
 *     StorageSubscribe (s), StorageUnsubscribe (s) → ()
 *
 * and the batch of sets, StorageSetMany: an `ay` payload of key (s) and
 * value pairs (ly_control_call_batch()) → (aba(uss)): the changed
 * flags, and the sets refused (index, and the error as
 * ly_control_error_to_variant() gives it).  The hub notifies every
 * child of every change but the one that made it (whose reply says so)
 * with StorageChanged (smv), every subscriber of every publication with
 * StoragePublished (sv), and every child with StorageChangesMissed ()
 * when its store was out of reach and changes may have gone unreported. */
typedef struct
{
  const char *method;
  const char *args_type;
  const char *reply_type;
} LyStorageMethod;

/* ly_storage_methods[] has one more entry after the op kinds: */
#define LY_STORAGE_METHOD_SET_MANY      LY_STORAGE_N_OPS
#define LY_STORAGE_N_METHODS            (LY_STORAGE_N_OPS + 1)

#define LY_STORAGE_CHANGED_METHOD       "StorageChanged"
#define LY_STORAGE_CHANGED_TYPE         "(smv)"
#define LY_STORAGE_PUBLISHED_METHOD     "StoragePublished"
#define LY_STORAGE_PUBLISHED_TYPE       "(sv)"
#define LY_STORAGE_MISSED_METHOD        "StorageChangesMissed"

extern const LyStorageMethod ly_storage_methods[LY_STORAGE_N_METHODS];

void      ly_storage_op_init             (LyStorageOp            *op,
                                          LyStorageOpKind         kind,
                                          const char             *name,
                                          GVariant               *expected,
                                          GVariant               *value);
void      ly_storage_op_clear            (LyStorageOp            *op);
void      ly_storage_result_clear        (LyStorageResult        *result);
gboolean  ly_storage_check_op            (const LyStorageOp      *op,
                                          gsize                   max_value_size,
                                          GError                **error);
GVariant *ly_storage_op_to_args          (const LyStorageOp      *op);
void      ly_storage_op_init_from_args   (LyStorageOp            *op,
                                          LyStorageOpKind         kind,
                                          GVariant               *args);
GVariant *ly_storage_result_to_reply     (LyStorageOpKind         kind,
                                          const LyStorageResult  *result);
void      ly_storage_result_from_reply   (LyStorageOpKind         kind,
                                          GVariant               *reply,
                                          LyStorageResult        *result);
GVariant *ly_storage_maybe_variant       (GVariant               *value);
GVariant *ly_storage_unmaybe             (GVariant               *maybe);
void      ly_storage_warn_unanswered     (const char             *name,
                                          const GError           *error);

void      ly_storage_backend_init        (LyStorageBackend              *self,
                                          const LyStorageBackendVTable  *vtable,
                                          const LyStorageEvents         *events,
                                          gpointer                       front);
void      ly_storage_backend_free        (LyStorageBackend       *self);
gboolean  ly_storage_backend_run         (LyStorageBackend       *self,
                                          const LyStorageOp      *op,
                                          LyStorageResult        *result,
                                          GError                **error);
void      ly_storage_backend_submit      (LyStorageBackend       *self,
                                          const LyStorageOp      *op,
                                          LyStorageResultFunc     func,
                                          gpointer                user_data);
void      ly_storage_backend_set_timeout (LyStorageBackend       *self,
                                          gint64                  usec);

static inline void
ly_storage_backend_changed (LyStorageBackend *self,
                            const char       *key,
                            GVariant         *value,
                            gconstpointer     origin)
{
  self->events->changed (self->front, key, value, origin);
}

static inline void
ly_storage_backend_missed (LyStorageBackend *self)
{
  self->events->missed (self->front);
}

static inline void
ly_storage_backend_published (LyStorageBackend *self,
                              const char       *topic,
                              GVariant         *value,
                              gconstpointer     origin)
{
  self->events->published (self->front, topic, value, origin);
}

/* The backends */
typedef struct _LyControl LyControl;
typedef struct _LyShmReader LyShmReader;

LyStorageBackend *ly_storage_local_new (const LyStorageEvents *events,
                                        gpointer               front);
LyStorageBackend *ly_storage_proxy_new (LyControl             *control,
                                        LyShmReader           *table,
                                        const LyStorageEvents *events,
                                        gpointer               front);
#ifdef HAVE_HIREDIS
LyStorageBackend *ly_storage_redis_new (const char            *uri,
                                        const LyStorageEvents *events,
                                        gpointer               front,
                                        GMainContext          *context,
                                        GError               **error);
#endif

G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC (LyStorageOp, ly_storage_op_clear)
G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC (LyStorageResult, ly_storage_result_clear)

G_END_DECLS

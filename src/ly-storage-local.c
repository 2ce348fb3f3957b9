/* ly-storage-local.c: the authoritative store of a hub, in its memory
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "config.h"

#include <string.h>

#include "ly-storage-backend-private.h"
#include "ly-variant-private.h"

typedef struct
{
  LyStorageBackend  parent;

  /* @mutex protects @values; the events are reported with it held, so
   * that they come in the order of the store */
  GMutex            mutex;
  GHashTable       *values;     /* key → GVariant */
} LyStorageLocal;

/* Sets @key to @value, or deletes it when @value is NULL.  Returns
 * whether that changed anything: setting an equal value does not. */
static gboolean
store_locked (LyStorageLocal *self,
              const char     *key,
              GVariant       *value,
              gconstpointer   origin)
{
  GVariant *old = g_hash_table_lookup (self->values, key);

  if (value == NULL ? old == NULL : (old != NULL && ly_variant_same (old, value)))
    return FALSE;

  if (value != NULL)
    g_hash_table_replace (self->values, g_strdup (key), g_variant_ref (value));
  else
    g_hash_table_remove (self->values, key);

  ly_storage_backend_changed (&self->parent, key, value, origin);
  return TRUE;
}

static gboolean
matches_locked (LyStorageLocal *self,
                const char     *key,
                GVariant       *expected)
{
  GVariant *current = g_hash_table_lookup (self->values, key);

  return expected == NULL ? current == NULL : (current != NULL && ly_variant_same (current, expected));
}

static int
compare_keys (gconstpointer a,
              gconstpointer b)
{
  return strcmp (*(const char * const *) a, *(const char * const *) b);
}

static char **
list_keys_locked (LyStorageLocal *self)
{
  char **keys = (char **) g_hash_table_get_keys_as_array (self->values, NULL);

  for (guint i = 0; keys[i] != NULL; i++)
    keys[i] = g_strdup (keys[i]);
  qsort (keys, g_strv_length (keys), sizeof (char *), compare_keys);

  return keys;
}

static GVariant *
get_all_locked (LyStorageLocal *self)
{
  g_auto(GVariantBuilder) builder = G_VARIANT_BUILDER_INIT (G_VARIANT_TYPE_VARDICT);
  GHashTableIter iter;
  const char *key;
  GVariant *value;

  g_hash_table_iter_init (&iter, self->values);
  while (g_hash_table_iter_next (&iter, (gpointer *) &key, (gpointer *) &value))
    g_variant_builder_add (&builder, "{sv}", key, value);

  return g_variant_ref_sink (g_variant_builder_end (&builder));
}

static void
apply_locked (LyStorageLocal    *self,
              const LyStorageOp *op,
              LyStorageResult   *result)
{
  GVariant *value;

  switch (op->kind)
    {
    case LY_STORAGE_OP_GET:
      value = g_hash_table_lookup (self->values, op->name);
      result->value = value != NULL ? g_variant_ref (value) : NULL;
      break;
    case LY_STORAGE_OP_CONTAINS:
      result->done = g_hash_table_contains (self->values, op->name);
      break;
    case LY_STORAGE_OP_LIST_KEYS:
      result->keys = list_keys_locked (self);
      break;
    case LY_STORAGE_OP_GET_ALL:
      result->value = get_all_locked (self);
      break;
    case LY_STORAGE_OP_SET:
      result->done = store_locked (self, op->name, op->value, op->origin);
      break;
    case LY_STORAGE_OP_DELETE:
      result->done = store_locked (self, op->name, NULL, op->origin);
      break;
    case LY_STORAGE_OP_COMPARE_AND_SET:
      result->done = matches_locked (self, op->name, op->expected);
      result->changed = result->done && store_locked (self, op->name, op->value, op->origin);
      break;
    case LY_STORAGE_OP_PUBLISH:
      ly_storage_backend_published (&self->parent, op->name, op->value, op->origin);
      break;
    case LY_STORAGE_OP_SUBSCRIBE:
    case LY_STORAGE_OP_UNSUBSCRIBE:
      /* every publication is reported anyway */
      break;
    case LY_STORAGE_N_OPS:
    default:
      g_assert_not_reached ();
    }
}

static gboolean
local_run (LyStorageBackend   *backend,
           const LyStorageOp  *op,
           LyStorageResult    *result,
           GError            **error)
{
  LyStorageLocal *self = (LyStorageLocal *) backend;

  g_mutex_lock (&self->mutex);
  apply_locked (self, op, result);
  g_mutex_unlock (&self->mutex);

  return TRUE;
}

/* Nothing to wait for: answered at once. */
static void
local_submit (LyStorageBackend    *backend,
              const LyStorageOp   *op,
              LyStorageResultFunc  func,
              gpointer             user_data)
{
  g_auto(LyStorageResult) result = { 0, };

  local_run (backend, op, &result, NULL);
  if (func != NULL)
    func (&result, NULL, user_data);
}

static void
local_free (LyStorageBackend *backend)
{
  LyStorageLocal *self = (LyStorageLocal *) backend;

  g_hash_table_unref (self->values);
  g_mutex_clear (&self->mutex);
  g_free (self);
}

static const LyStorageBackendVTable local_vtable = {
  .name = "local",
  .is_proxy = FALSE,
  .in_memory = TRUE,
  .free = local_free,
  .run = local_run,
  .submit = local_submit,
};

LyStorageBackend *
ly_storage_local_new (const LyStorageEvents *events,
                      gpointer               front)
{
  LyStorageLocal *self = g_new0 (LyStorageLocal, 1);

  ly_storage_backend_init (&self->parent, &local_vtable, events, front);
  g_mutex_init (&self->mutex);
  self->values = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, (GDestroyNotify) g_variant_unref);

  return &self->parent;
}

/* ly-registry.c: the process-wide table of channels
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "config.h"

#include <string.h>

#include "ly-registry.h"
#include "ly-registry-private.h"

/* The registry ------------------------------------------------------------ */

/* @registry_mutex protects @registry */
static GMutex registry_mutex;
static GHashTable *registry;   /* name → LyChannel (a reference) */

/* Fills the registry on first use (a child's runtime, which sets it
 * before main() runs); called before every lookup. */
static LyRegistryLoader registry_loader;

void
ly_registry_set_loader (LyRegistryLoader loader)
{
  registry_loader = loader;
}

static void
load_registry (void)
{
  if (registry_loader != NULL)
    registry_loader ();
}

/**
 * ly_get_channel:
 * @name: a channel name, such as `nonebot-active`
 *
 * Looks a channel up in the process-wide registry.  In the hub it holds
 * `NAME-active` and `NAME-passive` of every target of a
 * [class@Ly.ProcessManager]; in a managed child, the child's own two ends,
 * under the same names, so that code reads the same on both sides.
 *
 * Returns: (transfer none) (nullable): the channel, or %NULL
 *
 * Since: 1.0
 */
LyChannel *
ly_get_channel (const char *name)
{
  LyChannel *channel = NULL;

  g_return_val_if_fail (name != NULL, NULL);

  load_registry ();

  g_mutex_lock (&registry_mutex);
  if (registry != NULL)
    channel = g_hash_table_lookup (registry, name);
  g_mutex_unlock (&registry_mutex);

  return channel;
}

/**
 * ly_set_channel:
 * @name: a channel name
 * @channel: (nullable): the channel, or %NULL to remove the name
 *
 * Puts a channel in the process-wide registry under @name, replacing
 * what was there.  The registry keeps a reference.
 *
 * Since: 1.0
 */
void
ly_set_channel (const char *name,
                LyChannel  *channel)
{
  g_return_if_fail (name != NULL);
  g_return_if_fail (channel == NULL || LY_IS_CHANNEL (channel));

  g_mutex_lock (&registry_mutex);
  if (registry == NULL)
    registry = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_object_unref);
  if (channel != NULL)
    g_hash_table_replace (registry, g_strdup (name), g_object_ref (channel));
  else
    g_hash_table_remove (registry, name);
  g_mutex_unlock (&registry_mutex);
}

static int
compare_names (gconstpointer a,
               gconstpointer b)
{
  return strcmp (*(const char * const *) a, *(const char * const *) b);
}

/**
 * ly_list_channels:
 *
 * Lists the names of the process-wide registry of channels.
 *
 * Returns: (transfer full) (array zero-terminated=1): the names in the
 *   registry, sorted
 *
 * Since: 1.0
 */
char **
ly_list_channels (void)
{
  g_autoptr(GPtrArray) names = g_ptr_array_new ();
  GHashTableIter iter;
  const char *name;

  load_registry ();

  g_mutex_lock (&registry_mutex);
  if (registry != NULL)
    {
      g_hash_table_iter_init (&iter, registry);
      while (g_hash_table_iter_next (&iter, (gpointer *) &name, NULL))
        g_ptr_array_add (names, g_strdup (name));
    }
  g_mutex_unlock (&registry_mutex);

  g_ptr_array_sort (names, compare_names);
  g_ptr_array_add (names, NULL);
  return (char **) g_ptr_array_free (g_steal_pointer (&names), FALSE);
}


/* ly-storage-policy.c: what a child may do with the hub's storage
 *
 * A policy names the keys (and topics) a target's processes may read and
 * write, as patterns: "KEY" is that key, "PREFIX*" every name that
 * starts with PREFIX, "*" every name.  Reading covers get, contains,
 * list, get-all (which show only the readable keys), the changes it is
 * told of, and subscribing; writing covers set, delete,
 * compare-and-set and publishing.  Quotas bound what it may hold: the
 * keys it wrote last and their bytes, and its subscriptions.  The hub
 * enforces it (ly-storage-server.c); without one, everything is shared,
 * as in the original.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "config.h"

#include <string.h>

#include "ly-errors.h"
#include "ly-i18n-private.h"
#include "ly-storage-policy-private.h"

LyStoragePolicy *
ly_storage_policy_new (const char *owner)
{
  LyStoragePolicy *policy = g_new0 (LyStoragePolicy, 1);

  policy->owner = g_strdup (owner);
  return policy;
}

LyStoragePolicy *
ly_storage_policy_copy (const LyStoragePolicy *policy)
{
  LyStoragePolicy *copy = g_memdup2 (policy, sizeof *policy);

  copy->owner = g_strdup (policy->owner);
  copy->readable = g_strdupv (policy->readable);
  copy->writable = g_strdupv (policy->writable);
  return copy;
}

void
ly_storage_policy_free (LyStoragePolicy *policy)
{
  g_free (policy->owner);
  g_strfreev (policy->readable);
  g_strfreev (policy->writable);
  g_free (policy);
}

gboolean
ly_storage_policy_has_quota (const LyStoragePolicy *policy)
{
  return policy->max_keys > 0 || policy->max_bytes > 0;
}

/* A pattern is a name, or a prefix and a final `*`: nothing else may
 * hold a `*`, so that no pattern means more than it seems to. */
gboolean
ly_storage_patterns_valid (const char * const  *patterns,
                           GError             **error)
{
  for (guint i = 0; patterns != NULL && patterns[i] != NULL; i++)
    {
      const char *star = strchr (patterns[i], '*');

      if (patterns[i][0] == '\0' || (star != NULL && star[1] != '\0'))
        {
          g_set_error (error, LY_PROCESS_ERROR, LY_PROCESS_ERROR_INVALID_ARGUMENT,
                       _("“%s” is not a key pattern: give a key, or a prefix followed by “*”"), patterns[i]);
          return FALSE;
        }
    }

  return TRUE;
}

static gboolean
matches (const char * const *patterns,
         const char         *name)
{
  if (patterns == NULL)
    return TRUE;

  for (guint i = 0; patterns[i] != NULL; i++)
    {
      gsize length = strlen (patterns[i]);

      if (length > 0 && patterns[i][length - 1] == '*'
          ? strncmp (name, patterns[i], length - 1) == 0
          : g_str_equal (name, patterns[i]))
        return TRUE;
    }

  return FALSE;
}

gboolean
ly_storage_policy_may_read (const LyStoragePolicy *policy,
                            const char            *name)
{
  return policy == NULL || matches ((const char * const *) policy->readable, name);
}

/* Whether @policy lets its target do @op (the quotas are the server's:
 * they depend on what the storage holds). */
gboolean
ly_storage_policy_check_op (const LyStoragePolicy  *policy,
                            const LyStorageOp      *op,
                            GError                **error)
{
  gboolean writes;

  if (policy == NULL || op->name == NULL || op->kind == LY_STORAGE_OP_UNSUBSCRIBE)
    return TRUE;

  writes = op->kind == LY_STORAGE_OP_SET || op->kind == LY_STORAGE_OP_DELETE ||
           op->kind == LY_STORAGE_OP_COMPARE_AND_SET || op->kind == LY_STORAGE_OP_PUBLISH;
  if (matches ((const char * const *) (writes ? policy->writable : policy->readable), op->name) &&
      (op->kind != LY_STORAGE_OP_COMPARE_AND_SET || matches ((const char * const *) policy->readable, op->name)))
    return TRUE;

  g_set_error (error, LY_STORAGE_ERROR, LY_STORAGE_ERROR_PERMISSION_DENIED,
               writes ? _("“%s” may not write “%s”") : _("“%s” may not read “%s”"),
               policy->owner, op->name);
  return FALSE;
}

/* ly-storage-policy-private.h: what a child may do with the hub's
 * storage (see ly-storage-policy.c)
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#include "ly-storage-backend-private.h"

G_BEGIN_DECLS

typedef struct _LyStoragePolicy LyStoragePolicy;

struct _LyStoragePolicy
{
  char    *owner;              /* the target: its quotas count what it wrote */
  GStrv    readable;           /* key and topic patterns; NULL: everything */
  GStrv    writable;
  guint    max_keys;           /* 0: no limit */
  guint64  max_bytes;
  guint    max_subscriptions;
};

LyStoragePolicy *ly_storage_policy_new       (const char            *owner);
LyStoragePolicy *ly_storage_policy_copy      (const LyStoragePolicy *policy);
void             ly_storage_policy_free      (LyStoragePolicy       *policy);
gboolean         ly_storage_policy_has_quota (const LyStoragePolicy *policy);
gboolean         ly_storage_policy_may_read  (const LyStoragePolicy *policy,
                                              const char            *name);
gboolean         ly_storage_policy_check_op  (const LyStoragePolicy *policy,
                                              const LyStorageOp     *op,
                                              GError               **error);
gboolean         ly_storage_patterns_valid   (const char * const    *patterns,
                                              GError               **error);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (LyStoragePolicy, ly_storage_policy_free)

G_END_DECLS

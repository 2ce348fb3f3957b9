/* ly-context.c
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "config.h"

#include "ly-context-private.h"

/* Whether @context will run its sources soon: this thread is dispatching
 * it, or another thread owns it.  When nobody runs it, work that waits
 * for its next iteration (a batch of sends) must be done at once. */
gboolean
ly_context_will_dispatch (GMainContext *context)
{
  GSource *current = g_main_current_source ();

  if (current != NULL && g_source_get_context (current) == context)
    return TRUE;

  if (g_main_context_acquire (context))
    {
      g_main_context_release (context);
      return FALSE;
    }

  return TRUE;
}

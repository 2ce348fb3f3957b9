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

/* Runs @func in this thread if it can acquire @context, with @context
 * as its thread-default one; TRUE if it did.  The context is acquired
 * meanwhile: nothing else runs in it. */
gboolean
ly_context_run_if_owner (GMainContext *context,
                         GSourceFunc   func,
                         gpointer      data)
{
  if (!g_main_context_acquire (context))
    return FALSE;

  g_main_context_push_thread_default (context);
  func (data);
  g_main_context_pop_thread_default (context);
  g_main_context_release (context);
  return TRUE;
}

/* Runs @func (@data, freed with @destroy) in @context: now when this
 * thread can acquire it, else when the thread that runs it gets to it.
 * Unlike g_main_context_invoke_full(), a context nobody runs is run
 * here, whether or not it is this thread's thread-default one. */
void
ly_context_invoke (GMainContext   *context,
                   GSourceFunc     func,
                   gpointer        data,
                   GDestroyNotify  destroy)
{
  if (ly_context_run_if_owner (context, func, data))
    {
      if (destroy != NULL)
        destroy (data);
    }
  else
    g_main_context_invoke_full (context, G_PRIORITY_DEFAULT, func, data, destroy);
}

void
ly_waiter_init (LyWaiter *waiter)
{
  g_mutex_init (&waiter->mutex);
  g_cond_init (&waiter->cond);
  waiter->done = FALSE;
}

void
ly_waiter_clear (LyWaiter *waiter)
{
  g_mutex_clear (&waiter->mutex);
  g_cond_clear (&waiter->cond);
}

void
ly_waiter_signal (LyWaiter *waiter)
{
  g_mutex_lock (&waiter->mutex);
  waiter->done = TRUE;
  g_cond_signal (&waiter->cond);
  g_mutex_unlock (&waiter->mutex);
}

gboolean
ly_waiter_is_done (LyWaiter *waiter)
{
  gboolean done;

  g_mutex_lock (&waiter->mutex);
  done = waiter->done;
  g_mutex_unlock (&waiter->mutex);

  return done;
}

/* Waits until the waiter is signalled or @end_time (monotonic); returns
 * whether it was signalled. */
gboolean
ly_waiter_wait_until (LyWaiter *waiter,
                      gint64    end_time)
{
  gboolean done;

  g_mutex_lock (&waiter->mutex);
  while (!waiter->done && g_cond_wait_until (&waiter->cond, &waiter->mutex, end_time))
    ;
  done = waiter->done;
  g_mutex_unlock (&waiter->mutex);

  return done;
}

static gboolean
cancel_now (gpointer user_data)
{
  g_cancellable_cancel (user_data);
  return G_SOURCE_REMOVE;
}

/* A timer in @context that cancels @cancellable after @msec: the bound of
 * a wait made of an async call.  The caller destroys and unrefs it when
 * the wait ends first. */
GSource *
ly_context_cancel_after (GMainContext *context,
                         GCancellable *cancellable,
                         guint         msec,
                         const char   *name)
{
  GSource *timer = g_timeout_source_new (msec);

  g_source_set_callback (timer, cancel_now, g_object_ref (cancellable), g_object_unref);
  g_source_set_static_name (timer, name);
  g_source_attach (timer, context);
  return timer;
}

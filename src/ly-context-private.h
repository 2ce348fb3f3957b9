/* ly-context-private.h: who runs a main context
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#include <gio/gio.h>

G_BEGIN_DECLS

gboolean ly_context_will_dispatch (GMainContext *context);
gboolean ly_context_run_if_owner  (GMainContext *context,
                                   GSourceFunc   func,
                                   gpointer      data);
void     ly_context_invoke        (GMainContext   *context,
                                   GSourceFunc     func,
                                   gpointer        data,
                                   GDestroyNotify  destroy);
GSource *ly_context_cancel_after  (GMainContext   *context,
                                   GCancellable   *cancellable,
                                   guint           msec,
                                   const char     *name);

/* Something a thread waits for, set by another.  @mutex protects @done;
 * @cond is signalled when it is set. */
typedef struct
{
  GMutex   mutex;
  GCond    cond;
  gboolean done;
} LyWaiter;

void     ly_waiter_init        (LyWaiter *waiter);
void     ly_waiter_clear       (LyWaiter *waiter);
void     ly_waiter_signal      (LyWaiter *waiter);
gboolean ly_waiter_is_done     (LyWaiter *waiter);
gboolean ly_waiter_wait_until  (LyWaiter *waiter,
                                gint64    end_time);

G_END_DECLS

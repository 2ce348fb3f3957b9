/* ly-test-util.h: helpers shared by the C tests
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#include <liteyuki-comm.h>

G_BEGIN_DECLS

/* Iterates the thread-default context until *flag is set, failing the
 * test after @timeout_sec seconds. */
void     ly_test_run_until      (const gboolean *flag,
                                 guint           timeout_sec);
/* Same, until *counter reaches @target. */
void     ly_test_run_until_count (const guint   *counter,
                                  guint          target,
                                  guint          timeout_sec);
guint    ly_test_count_fds      (void);
/* Scales a count down under valgrind (LY_TEST_QUICK is set by the
 * valgrind test setup), where the full count takes minutes. */
guint    ly_test_scaled         (guint          count);
char    *ly_test_peer_path      (void);

G_END_DECLS

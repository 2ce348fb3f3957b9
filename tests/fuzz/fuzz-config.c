/* fuzz-config.c: the configuration file of `liteyuki-comm run`
 *
 * The input is the file's text.  A file is either refused with an error
 * that names the file, or its targets are added to the manager; nothing
 * is started.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "fuzz-common.h"

#include "lc-common.h"

FUZZ_DEFINE_INITIALIZE ()

int
LLVMFuzzerTestOneInput (const uint8_t *data,
                        size_t         size)
{
  g_autoptr(LyProcessManager) manager = ly_process_manager_new ();
  g_autofree char *text = fuzz_input_to_string (data, size);
  g_autoptr(GError) error = NULL;
  g_auto(GStrv) names = NULL;

  if (!lc_config_load_data ("fuzz.conf", text, LC_CONFIG_NONE, manager, &error))
    {
      g_assert (error != NULL);
      g_assert (strstr (error->message, "fuzz.conf") != NULL);
      return 0;
    }

  g_assert_no_error (error);
  names = ly_process_manager_list_targets (manager);
  g_assert (names != NULL && names[0] != NULL);
  return 0;
}

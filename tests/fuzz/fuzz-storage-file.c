/* fuzz-storage-file.c: the storage file of `liteyuki-comm run --storage`
 *
 * The input is the file.  It is either refused with an error that names
 * it, or its entries are in the storage afterwards.
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
  LyStorage *storage = ly_storage_get_default ();
  g_autoptr(GError) error = NULL;
  g_auto(GStrv) keys = NULL;

  if (!lc_storage_file_load_data ("fuzz.store", (const char *) data, size, storage, &error))
    g_assert (error != NULL && strstr (error->message, "fuzz.store") != NULL);
  else
    g_assert_no_error (error);

  keys = ly_storage_list_keys (storage, NULL);
  for (guint i = 0; keys[i] != NULL; i++)
    g_assert_true (ly_storage_delete (storage, keys[i], NULL));

  return 0;
}

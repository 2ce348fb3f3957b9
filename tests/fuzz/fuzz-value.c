/* fuzz-value.c: values on the command line of `liteyuki-comm set`,
 * `cas` and `publish`, in GVariant text format
 *
 * The input is the argument.  It is either refused with an error, or
 * parsed into a value that the command can print back, in text and as
 * JSON (`get --json`), and that parses again into the same value.
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
  g_autofree char *text = fuzz_input_to_string (data, size);
  g_autoptr(GVariant) value = NULL;
  g_autoptr(GVariant) again = NULL;
  g_autoptr(GError) error = NULL;
  g_autofree char *printed = NULL;
  g_autofree char *json = NULL;

  /* an argument is a C string; the command line cannot hold NUL */
  if (memchr (data, '\0', size) != NULL || size > 16 * 1024)
    return 0;

  value = lc_parse_value (text, &error);
  if (value == NULL)
    {
      g_assert (error != NULL && error->domain == G_VARIANT_PARSE_ERROR);
      return 0;
    }

  printed = g_variant_print (value, TRUE);
  json = lc_variant_to_json (value);
  g_assert (json != NULL && g_utf8_validate (json, -1, NULL));

  again = lc_parse_value (printed, &error);
  g_assert_no_error (error);
  g_assert (g_variant_equal (value, again));
  return 0;
}

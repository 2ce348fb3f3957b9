/* lc-value.c: values given on the command line, in GVariant text format
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "lc-common.h"

#include <string.h>

/* Returns a new value, not floating, or %NULL with an @error that says
 * what is wrong, without the parser's character positions. */
GVariant *
lc_parse_value (const char  *text,
                GError     **error)
{
  g_autoptr(GError) local_error = NULL;
  GVariant *value;

  /* GLib's parser takes a string with invalid UTF-8 between its quotes
   * to g_variant_new_string(), which refuses it with a critical: found
   * by fuzz-value (tests/fuzz/regressions/value/). */
  if (!g_utf8_validate (text, -1, NULL))
    {
      g_set_error (error, G_VARIANT_PARSE_ERROR, G_VARIANT_PARSE_ERROR_INVALID_CHARACTER,
                   _("The value is not valid UTF-8 text"));
      return NULL;
    }

  value = g_variant_parse (NULL, text, NULL, NULL, &local_error);
  if (value == NULL)
    {
      /* "3-8:unknown keyword": the position is for programs, not people */
      const char *reason = strchr (local_error->message, ':');

      g_set_error (error, G_VARIANT_PARSE_ERROR, local_error->code,
                   _("“%s” is not a GVariant text value: %s (a string needs quotes: \"'%s'\")"),
                   text, reason != NULL ? reason + 1 : local_error->message, text);
    }

  return value;
}

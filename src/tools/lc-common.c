/* lc-common.c: what every subcommand of liteyuki-comm uses
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "lc-common.h"

#include <stdio.h>

void
lc_print_error (const char *format,
                ...)
{
  g_autofree char *message = NULL;
  va_list args;

  va_start (args, format);
  message = g_strdup_vprintf (format, args);
  va_end (args);

  /* one line: a multi-line message keeps its lines apart from ours */
  fprintf (stderr, "liteyuki-comm: %s\n", message);
}

/* Each line of @message as an error line of its own. */
void
lc_print_error_lines (const char *message)
{
  g_auto(GStrv) lines = g_strsplit (message, "\n", -1);

  for (guint i = 0; lines[i] != NULL; i++)
    if (lines[i][0] != '\0')
      lc_print_error ("%s", lines[i]);
}

gboolean
lc_parse_options (GOptionContext   *context,
                  int              *argc,
                  char           ***argv)
{
  g_autoptr(GError) error = NULL;

  if (g_option_context_parse (context, argc, argv, &error))
    return TRUE;

  lc_print_error ("%s", error->message);
  return FALSE;
}

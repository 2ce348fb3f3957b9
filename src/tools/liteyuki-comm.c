/* liteyuki-comm.c: the liteyuki-comm command
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "lc-common.h"

#include <locale.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The commands of the hub's side; the clients' are in lc-client.c. */
static const struct
{
  const char    *name;
  LcCommandFunc  func;
} commands[] = {
  { "run", lc_run_main },
  { "demo", lc_demo_main },
  { "demo-child", lc_demo_child_main },
};

static void
print_usage (FILE *out)
{
  fprintf (out, "%s\n\n", _("Usage: liteyuki-comm COMMAND [OPTION…] [ARGUMENT…]"));
  fprintf (out, "%s\n", _("Process channels and shared storage for GLib applications."));
  fprintf (out, "\n%s\n", _("Commands:"));
  fprintf (out, "  %-10s %s\n", "run", _("Runs the hub as a daemon: the targets of a configuration file"));
  fprintf (out, "  %-10s %s\n", "demo", _("Runs the example of the reference document"));
  if (out == stdout)
    lc_print_client_commands ();
  else
    fprintf (out, "  %-10s %s\n", "…", _("ps, start, stop, restart, storage, publish, subscribe, send, receive"));
  fprintf (out, "\n%s\n", _("“liteyuki-comm COMMAND --help” tells more about a command."));
}

/* Options given before the command (`liteyuki-comm --address A ps`)
 * are moved after it, where the command's option parser finds them:
 * argv becomes PROGRAM COMMAND OPTIONS… REST…. */
static void
move_command_first (int    argc,
                    char **argv)
{
  int i = 1;
  char *command;

  while (i < argc && argv[i][0] == '-' &&
         !g_str_equal (argv[i], "--help") && !g_str_equal (argv[i], "-h") &&
         !g_str_equal (argv[i], "--version"))
    {
      /* the options that take a value as the next argument */
      if (g_str_equal (argv[i], "--address") || g_str_equal (argv[i], "--bus-name"))
        i++;
      i++;
    }
  if (i == 1 || i >= argc || argv[i][0] == '-')
    return;

  command = argv[i];
  memmove (argv + 2, argv + 1, (gsize) (i - 1) * sizeof (char *));
  argv[1] = command;
}

int
main (int   argc,
      char *argv[])
{
  const char *command;

  setlocale (LC_ALL, "");
  bindtextdomain (GETTEXT_PACKAGE, g_getenv ("LY_LOCALEDIR") ? g_getenv ("LY_LOCALEDIR") : LOCALEDIR);
  bind_textdomain_codeset (GETTEXT_PACKAGE, "UTF-8");
  textdomain (GETTEXT_PACKAGE);
  g_set_prgname ("liteyuki-comm");

  move_command_first (argc, argv);
  command = argc >= 2 ? argv[1] : NULL;

  if (command == NULL)
    {
      print_usage (stderr);
      return LC_EXIT_USAGE;
    }

  if (g_str_equal (command, "--help") || g_str_equal (command, "-h") || g_str_equal (command, "help"))
    {
      print_usage (stdout);
      return 0;
    }

  if (g_str_equal (command, "--version"))
    {
      printf ("liteyuki-comm %s\n", PACKAGE_VERSION);
      return 0;
    }

  /* --help of a command reads “liteyuki-comm COMMAND [OPTION…]” */
  {
    g_autofree char *prgname = g_strdup_printf ("liteyuki-comm %s", command);
    g_set_prgname (prgname);
  }

  for (guint i = 0; i < G_N_ELEMENTS (commands); i++)
    if (g_str_equal (command, commands[i].name))
      return commands[i].func (argc, argv);
  if (lc_is_client_command (command))
    return lc_client_main (command, argc, argv);

  lc_print_error (_("unknown command “%s”; see “liteyuki-comm --help”"), command);
  return LC_EXIT_USAGE;
}

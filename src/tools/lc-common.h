/* lc-common.h: shared parts of the liteyuki-comm command
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#include "config.h"

#include <glib/gi18n.h>

#include <liteyuki-comm.h>

G_BEGIN_DECLS

/* Exit statuses: 0 success, 1 failure, 2 bad usage. */
#define LC_EXIT_FAILURE 1
#define LC_EXIT_USAGE   2

typedef int (*LcCommandFunc) (int argc, char **argv);

int   lc_run_main     (int argc, char **argv);
int   lc_demo_main    (int argc, char **argv);
int   lc_demo_child_main (int argc, char **argv);
int   lc_client_main  (const char *command, int argc, char **argv);
gboolean lc_is_client_command (const char *name);
void  lc_print_client_commands (void);

/* Prints "liteyuki-comm: MESSAGE" on stderr. */
void  lc_print_error  (const char *format,
                       ...) G_GNUC_PRINTF (1, 2);

/* The same, a line each for a message of several lines. */
void  lc_print_error_lines (const char *message);

/* Parses an option context: on error, says so and returns FALSE. */
gboolean lc_parse_options (GOptionContext *context,
                           int            *argc,
                           char         ***argv);

/* A configuration file: targets to add to a manager.  An error holds
 * every problem of the file, a line each. */
typedef enum
{
  LC_CONFIG_NONE           = 0,
  LC_CONFIG_CHECK_PROGRAMS = 1 << 0,  /* each Exec's program must exist (run --check) */
} LcConfigFlags;

gboolean lc_config_load    (const char        *path,
                            LcConfigFlags      flags,
                            LyProcessManager  *manager,
                            GError           **error);
gboolean lc_config_load_data (const char        *path,
                               const char        *text,
                               LcConfigFlags      flags,
                               LyProcessManager  *manager,
                               GError           **error);
char    *lc_default_config_path (void);
char    *lc_config_get_storage  (const char        *path);

/* A value given on the command line, in GVariant text format. */
GVariant *lc_parse_value (const char  *text,
                          GError     **error);

/* GVariant as JSON, for --json. */
char    *lc_variant_to_json (GVariant *value);
char    *lc_string_to_json  (const char *text);
GVariant *lc_json_to_variant (const char  *text,
                              GError     **error);

/* Storage kept in a file across restarts of the daemon. */
typedef struct _LcStorageFile LcStorageFile;

LcStorageFile *lc_storage_file_open  (const char     *path,
                                      LyStorage      *storage,
                                      GError        **error);
gboolean       lc_storage_file_save  (LcStorageFile  *file,
                                      GError        **error);
void           lc_storage_file_free  (LcStorageFile  *file);
gboolean       lc_storage_file_load_data (const char  *path,
                                          const char  *contents,
                                          gsize        length,
                                          LyStorage   *storage,
                                          GError     **error);

/* How long a change waits before the storage file is written: changes
 * in that time are written together. */
#define LC_STORAGE_SAVE_DELAY_MSEC 1000

G_END_DECLS

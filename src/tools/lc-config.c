/* lc-config.c: the configuration file of `liteyuki-comm run`
 *
 *     [hub]
 *     StopTimeout=10
 *     Storage=redis://db.example:6379/0?password-file=/etc/liteyuki/redis.pw
 *     SharedMemorySize=256M
 *
 *     [target nonebot]
 *     Exec=python3 -m nonebot_plugin
 *     Restart=on-failure
 *     StopTimeout=5
 *     Environment=LANG=zh_CN.UTF-8 "GREETING=hello world"
 *     WorkingDirectory=/srv/bot
 *
 * Errors name the file, the line and the key; every error of a file is
 * reported, not only the first.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "lc-common.h"

#include <stdlib.h>
#include <string.h>

#define TARGET_PREFIX "target "

/* The largest LyStorage:shared-memory-size */
#define LC_MAX_SHARED_MEMORY_SIZE (G_GUINT64_CONSTANT (16) << 30)

typedef struct
{
  const char    *path;
  GKeyFile      *file;
  char         **lines;     /* the raw text, to say where things are */
  LcConfigFlags  flags;
  GPtrArray     *errors;    /* of ConfigError*, sorted by line at the end */
} Config;

typedef struct
{
  guint  line;
  char  *text;
} ConfigError;

static void
config_error_free (gpointer data)
{
  ConfigError *error = data;

  g_free (error->text);
  g_free (error);
}

static void
add_error (Config *config,
           guint   line,
           char   *text)
{
  ConfigError *error = g_new (ConfigError, 1);

  error->line = line;
  error->text = text;
  g_ptr_array_add (config->errors, error);
}

static int
compare_lines (gconstpointer a,
               gconstpointer b)
{
  const ConfigError *first = *(const ConfigError * const *) a;
  const ConfigError *second = *(const ConfigError * const *) b;

  return first->line < second->line ? -1 : first->line > second->line;
}

/* Every error, in the order of the file, a line each. */
static char *
join_errors (GPtrArray *errors)
{
  GString *text = g_string_new (NULL);

  g_ptr_array_sort (errors, compare_lines);
  for (guint i = 0; i < errors->len; i++)
    {
      const ConfigError *error = g_ptr_array_index (errors, i);

      if (i > 0)
        g_string_append_c (text, '\n');
      g_string_append (text, error->text);
    }

  return g_string_free (text, FALSE);
}

/* The 1-based line of @key in @group (or of the group itself). */
static guint
find_line (Config     *config,
           const char *group,
           const char *key)
{
  g_autofree char *header = g_strdup_printf ("[%s]", group);
  gboolean in_group = FALSE;
  guint group_line = 0;

  for (guint i = 0; config->lines[i] != NULL; i++)
    {
      g_autofree char *line = g_strstrip (g_strdup (config->lines[i]));

      if (line[0] == '[')
        {
          in_group = g_str_equal (line, header);
          if (in_group)
            group_line = i + 1;
          continue;
        }

      if (in_group && key != NULL && g_str_has_prefix (line, key))
        {
          const char *rest = line + strlen (key);

          while (*rest == ' ' || *rest == '\t')
            rest++;
          if (*rest == '=')
            return i + 1;
        }
    }

  return group_line;
}

/* Notes an error of @key in @group (or of the group, @key NULL) and
 * returns FALSE; the checking goes on. */
static gboolean G_GNUC_PRINTF (4, 5)
config_error (Config      *config,
              const char  *group,
              const char  *key,
              const char  *format,
              ...)
{
  g_autofree char *message = NULL;
  va_list args;
  guint line;

  va_start (args, format);
  message = g_strdup_vprintf (format, args);
  va_end (args);

  line = find_line (config, group, key);
  if (key != NULL)
    add_error (config, line, g_strdup_printf (_("%s:%u: key “%s” of [%s]: %s"),
                                              config->path, line, key, group, message));
  else
    add_error (config, line, g_strdup_printf (_("%s:%u: [%s]: %s"), config->path, line, group, message));
  return FALSE;
}

static gboolean
check_keys (Config              *config,
            const char          *group,
            const char * const  *allowed)
{
  g_auto(GStrv) keys = g_key_file_get_keys (config->file, group, NULL, NULL);
  gboolean valid = TRUE;

  for (guint i = 0; keys != NULL && keys[i] != NULL; i++)
    if (!g_strv_contains (allowed, keys[i]))
      valid = config_error (config, group, keys[i], _("unknown key"));

  return valid;
}

/* A group given twice would be merged by GKeyFile without a word. */
static void
check_duplicate_groups (Config *config)
{
  g_autoptr(GHashTable) first_lines = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);

  for (guint i = 0; config->lines[i] != NULL; i++)
    {
      g_autofree char *line = g_strstrip (g_strdup (config->lines[i]));
      gsize length = strlen (line);
      char *name;
      gpointer first;

      if (length < 2 || line[0] != '[' || line[length - 1] != ']')
        continue;
      name = g_strndup (line + 1, length - 2);
      if (g_hash_table_lookup_extended (first_lines, name, NULL, &first))
        {
          add_error (config, i + 1, g_strdup_printf (_("%s:%u: [%s]: given again (first on line %u)"),
                                                     config->path, i + 1, name, GPOINTER_TO_UINT (first)));
          g_free (name);
        }
      else
        g_hash_table_insert (first_lines, name, GUINT_TO_POINTER (i + 1));
    }
}

static gboolean
parse_seconds (Config      *config,
               const char  *group,
               const char  *key,
               double      *seconds)
{
  g_autofree char *text = g_key_file_get_string (config->file, group, key, NULL);
  char *end = NULL;
  double value;

  if (text == NULL)
    return TRUE;

  /* written so that NaN, which fails every comparison, fails it too */
  value = g_ascii_strtod (text, &end);
  if (end == text || *end != '\0' || !(value >= 0 && value <= 3600))
    return config_error (config, group, key,
                         _("“%s” is not a number of seconds from 0 to 3600"), text);

  *seconds = value;
  return TRUE;
}

/* A size in bytes, with an optional K, M or G (powers of 1024), from 0
 * to the largest shared table. */
static gboolean
parse_size (Config      *config,
            const char  *group,
            const char  *key,
            guint64     *size)
{
  g_autofree char *text = g_key_file_get_string (config->file, group, key, NULL);
  guint64 value = 0, unit = 1;
  char *end = NULL;

  if (text == NULL)
    return TRUE;

  if (g_ascii_isdigit (text[0]))
    value = g_ascii_strtoull (text, &end, 10);
  if (end != NULL && *end != '\0' && end[1] == '\0')
    {
      const char *units = "KMG";
      const char *found = strchr (units, g_ascii_toupper (*end));

      if (found != NULL)
        {
          unit = G_GUINT64_CONSTANT (1) << (10 * (found - units + 1));
          end++;
        }
    }
  if (end == NULL || *end != '\0' || value > LC_MAX_SHARED_MEMORY_SIZE / unit)
    return config_error (config, group, key,
                         _("“%s” is not a size from 0 to 16G (bytes, or with K, M or G)"), text);

  *size = value * unit;
  return TRUE;
}

/* Whether the program of @argv can be run from @directory (or the
 * hub's): a path, or a name found in PATH. */
static gboolean
program_exists (const char *program,
                const char *directory)
{
  g_autofree char *found = NULL;
  g_autofree char *path = NULL;

  if (strchr (program, '/') == NULL)
    return (found = g_find_program_in_path (program)) != NULL;

  path = g_path_is_absolute (program) || directory == NULL
         ? g_strdup (program) : g_build_filename (directory, program, NULL);
  return g_file_test (path, G_FILE_TEST_IS_EXECUTABLE) && !g_file_test (path, G_FILE_TEST_IS_DIR);
}

static gboolean
parse_restart_policy (const char      *text,
                      LyRestartPolicy *policy)
{
  if (g_str_equal (text, "never") || g_str_equal (text, "no"))
    *policy = LY_RESTART_NEVER;
  else if (g_str_equal (text, "on-failure"))
    *policy = LY_RESTART_ON_FAILURE;
  else if (g_str_equal (text, "always"))
    *policy = LY_RESTART_ALWAYS;
  else
    return FALSE;
  return TRUE;
}

/* StorageRead= and StorageWrite=: key patterns, separated by spaces. */
static gboolean
parse_patterns (Config       *config,
                const char   *group,
                const char   *key,
                char       ***patterns)
{
  g_autofree char *text = g_key_file_get_string (config->file, group, key, NULL);
  g_autoptr(GError) error = NULL;
  g_auto(GStrv) words = NULL;

  *patterns = NULL;
  if (text == NULL)
    return TRUE;
  if (!g_shell_parse_argv (text, NULL, &words, &error) &&
      !g_error_matches (error, G_SHELL_ERROR, G_SHELL_ERROR_EMPTY_STRING))
    return config_error (config, group, key, "%s", error->message);
  g_clear_error (&error);
  if (words == NULL)
    words = g_new0 (char *, 1);    /* nothing allowed */

  *patterns = g_steal_pointer (&words);
  return TRUE;
}

/* A count, or a size with a K, M or G suffix (powers of 1024). */
static gboolean
parse_quantity (Config      *config,
                const char  *group,
                const char  *key,
                gboolean     size,
                guint64     *quantity)
{
  g_autofree char *text = g_key_file_get_string (config->file, group, key, NULL);
  char *end = NULL;
  guint64 value, unit = 1;

  *quantity = 0;
  if (text == NULL)
    return TRUE;

  value = g_ascii_strtoull (text, &end, 10);
  if (size && end != text && end[0] != '\0' && end[1] == '\0')
    {
      unit = end[0] == 'K' ? 1024 : end[0] == 'M' ? 1024 * 1024 : end[0] == 'G' ? 1024 * 1024 * 1024 : 0;
      if (unit != 0)
        end++;
    }
  if (end == text || *end != '\0' || text[0] == '-' || unit == 0 ||
      value > (size ? G_MAXUINT64 / unit : G_MAXUINT))
    return config_error (config, group, key,
                         size ? _("“%s” is not a size (a number of bytes, or with K, M or G)")
                              : _("“%s” is not a count"), text);

  *quantity = value * unit;
  return TRUE;
}

/* What the target's processes may do with the storage: by default
 * everything, with no quota. */
static void
load_storage_policy (Config           *config,
                     const char       *group,
                     LyProcessManager *manager,
                     const char       *name)
{
  g_auto(GStrv) readable = NULL;
  g_auto(GStrv) writable = NULL;
  g_autoptr(GError) error = NULL;
  guint64 max_keys = 0, max_bytes = 0, max_subscriptions = 0;
  gboolean valid;

  if (parse_patterns (config, group, "StorageRead", &readable) &&
      parse_patterns (config, group, "StorageWrite", &writable) &&
      (readable != NULL || writable != NULL) &&
      !ly_process_manager_set_storage_access (manager, name, (const char * const *) readable,
                                              (const char * const *) writable, &error))
    config_error (config, group, readable != NULL ? "StorageRead" : "StorageWrite", "%s", error->message);

  /* each key is checked, so that each mistake is reported */
  valid = parse_quantity (config, group, "MaxKeys", FALSE, &max_keys);
  valid = parse_quantity (config, group, "MaxBytes", TRUE, &max_bytes) && valid;
  valid = parse_quantity (config, group, "MaxSubscriptions", FALSE, &max_subscriptions) && valid;
  if (valid)
    ly_process_manager_set_storage_quota (manager, name, (guint) max_keys, max_bytes,
                                          (guint) max_subscriptions, NULL);
}

static void
load_target (Config            *config,
             const char        *group,
             LyProcessManager  *manager)
{
  static const char * const allowed[] = { "Exec", "Restart", "StopTimeout", "Environment",
                                          "WorkingDirectory", "StorageRead", "StorageWrite",
                                          "MaxKeys", "MaxBytes", "MaxSubscriptions", NULL };
  const char *name = group + strlen (TARGET_PREFIX);
  g_autofree char *exec = NULL;
  g_autofree char *restart = NULL;
  g_autofree char *environment = NULL;
  g_autofree char *directory = NULL;
  g_auto(GStrv) argv = NULL;
  g_auto(GStrv) env = NULL;
  g_autoptr(GError) local_error = NULL;
  double stop_timeout = -1;

  check_keys (config, group, allowed);
  directory = g_key_file_get_string (config->file, group, "WorkingDirectory", NULL);
  if (directory != NULL && !g_file_test (directory, G_FILE_TEST_IS_DIR))
    {
      config_error (config, group, "WorkingDirectory", _("“%s” is not a directory"), directory);
      g_clear_pointer (&directory, g_free);
    }

  exec = g_key_file_get_string (config->file, group, "Exec", NULL);
  if (exec == NULL)
    {
      config_error (config, group, NULL, _("Exec= is missing"));
      return;
    }
  if (!g_shell_parse_argv (exec, NULL, &argv, &local_error))
    {
      config_error (config, group, "Exec", "%s", local_error->message);
      return;
    }
  if ((config->flags & LC_CONFIG_CHECK_PROGRAMS) != 0 && !program_exists (argv[0], directory))
    config_error (config, group, "Exec", _("“%s” is not a program that can be run (not found, or not executable)"),
                  argv[0]);

  if (!ly_process_manager_add_target (manager, name, (const char * const *) argv, &local_error))
    {
      config_error (config, group, NULL, "%s", local_error->message);
      return;
    }

  restart = g_key_file_get_string (config->file, group, "Restart", NULL);
  if (restart != NULL)
    {
      LyRestartPolicy policy;

      if (parse_restart_policy (restart, &policy))
        ly_process_manager_set_restart_policy (manager, name, policy, NULL);
      else
        config_error (config, group, "Restart", _("“%s” is not one of never, on-failure, always"), restart);
    }

  if (parse_seconds (config, group, "StopTimeout", &stop_timeout))
    ly_process_manager_set_target_stop_timeout (manager, name, stop_timeout, NULL);

  environment = g_key_file_get_string (config->file, group, "Environment", NULL);
  g_clear_error (&local_error);
  if (environment != NULL &&
      (!g_shell_parse_argv (environment, NULL, &env, &local_error) ||
       !ly_process_manager_set_environment (manager, name, (const char * const *) env, &local_error)))
    config_error (config, group, "Environment", "%s", local_error->message);

  if (directory != NULL)
    ly_process_manager_set_working_directory (manager, name, directory, NULL);

  load_storage_policy (config, group, manager, name);
}

gboolean
lc_config_load (const char        *path,
                LcConfigFlags      flags,
                LyProcessManager  *manager,
                GError           **error)
{
  g_autofree char *text = NULL;

  if (!g_file_get_contents (path, &text, NULL, error))
    return FALSE;

  return lc_config_load_data (path, text, flags, manager, error);
}

/* The table the hub's children read the storage from (made when the
 * first one starts, after the file is loaded). */
static void
set_shared_memory_size (LyProcessManager *manager,
                        guint64           size)
{
  g_autoptr(LyStorage) storage = NULL;

  g_object_get (manager, "storage", &storage, NULL);
  if (storage != NULL)
    g_object_set (storage, "shared-memory-size", size, NULL);
}

/* The file's @text, read already; @path is for the messages.  The
 * fuzzer feeds it arbitrary bytes. */
gboolean
lc_config_load_data (const char        *path,
                     const char        *text,
                     LcConfigFlags      flags,
                     LyProcessManager  *manager,
                     GError           **error)
{
  static const char * const hub_keys[] = { "StopTimeout", "Storage", "SharedMemorySize", NULL };
  g_autoptr(GKeyFile) file = g_key_file_new ();
  g_auto(GStrv) lines = NULL;
  g_auto(GStrv) groups = NULL;
  g_autoptr(GError) local_error = NULL;
  g_autoptr(GPtrArray) errors = g_ptr_array_new_with_free_func (config_error_free);
  Config config = { path, NULL, NULL, flags, errors };
  g_autofree char *message = NULL;
  guint n_targets = 0;

  if (!g_key_file_load_from_data (file, text, -1, G_KEY_FILE_NONE, &local_error))
    {
      g_set_error (error, local_error->domain, local_error->code, "%s: %s", path, local_error->message);
      return FALSE;
    }

  lines = g_strsplit (text, "\n", -1);
  config.file = file;
  config.lines = lines;
  groups = g_key_file_get_groups (file, NULL);
  check_duplicate_groups (&config);

  for (guint i = 0; groups[i] != NULL; i++)
    {
      if (g_str_equal (groups[i], "hub"))
        {
          double stop_timeout = -1;
          guint64 shared_memory_size = G_MAXUINT64;
          g_autofree char *storage = g_key_file_get_string (file, groups[i], "Storage", NULL);

          check_keys (&config, groups[i], hub_keys);
          /* opened by the daemon before the targets (lc_config_get_storage()) */
          if (storage != NULL && strchr (storage, ':') == NULL)
            config_error (&config, groups[i], "Storage",
                          _("“%s” is not a storage URI (local:, redis://HOST…, unix:///PATH…)"), storage);
          if (parse_seconds (&config, groups[i], "StopTimeout", &stop_timeout) && stop_timeout >= 0)
            ly_process_manager_set_stop_timeout (manager, stop_timeout);
          if (parse_size (&config, groups[i], "SharedMemorySize", &shared_memory_size) &&
              shared_memory_size != G_MAXUINT64)
            set_shared_memory_size (manager, shared_memory_size);
        }
      else if (g_str_has_prefix (groups[i], TARGET_PREFIX))
        {
          load_target (&config, groups[i], manager);
          n_targets++;
        }
      else
        config_error (&config, groups[i], NULL, _("unknown group: use [hub] or [target NAME]"));
    }

  if (n_targets == 0)
    add_error (&config, G_MAXUINT, g_strdup_printf (_("%s: no [target NAME] group"), path));

  if (errors->len == 0)
    return TRUE;

  message = join_errors (errors);
  g_set_error_literal (error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_INVALID_VALUE, message);
  return FALSE;
}

/* [hub] Storage= of the file at @path, or NULL (also when the file
 * cannot be read: lc_config_load() says why). */
char *
lc_config_get_storage (const char *path)
{
  g_autoptr(GKeyFile) file = g_key_file_new ();

  if (!g_key_file_load_from_file (file, path, G_KEY_FILE_NONE, NULL))
    return NULL;

  return g_key_file_get_string (file, "hub", "Storage", NULL);
}

/* Where `run` looks when it is given no configuration: the file the
 * systemd unit and the D-Bus service start the hub with. */
char *
lc_default_config_path (void)
{
  return g_build_filename (g_get_user_config_dir (), "liteyuki-comm", "hub.conf", NULL);
}

/* lc-config.c: the configuration file of `liteyuki-comm run`
 *
 *     [hub]
 *     StopTimeout=10
 *     Storage=redis://db.example:6379/0?password-file=/etc/liteyuki/redis.pw
 *
 *     [target nonebot]
 *     Exec=python3 -m nonebot_plugin
 *     Restart=on-failure
 *     StopTimeout=5
 *     Environment=LANG=zh_CN.UTF-8 "GREETING=hello world"
 *     WorkingDirectory=/srv/bot
 *
 * Errors name the file, the line and the key.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "lc-common.h"

#include <stdlib.h>
#include <string.h>

#define TARGET_PREFIX "target "

typedef struct
{
  const char *path;
  GKeyFile   *file;
  char      **lines;     /* the raw text, to say where things are */
} Config;

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

static gboolean G_GNUC_PRINTF (5, 6)
config_error (Config      *config,
              GError     **error,
              const char  *group,
              const char  *key,
              const char  *format,
              ...)
{
  g_autofree char *message = NULL;
  va_list args;

  va_start (args, format);
  message = g_strdup_vprintf (format, args);
  va_end (args);

  if (key != NULL)
    g_set_error (error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_INVALID_VALUE,
                 _("%s:%u: key “%s” of [%s]: %s"),
                 config->path, find_line (config, group, key), key, group, message);
  else
    g_set_error (error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_GROUP_NOT_FOUND,
                 _("%s:%u: [%s]: %s"), config->path, find_line (config, group, NULL), group, message);
  return FALSE;
}

static gboolean
check_keys (Config              *config,
            const char          *group,
            const char * const  *allowed,
            GError             **error)
{
  g_auto(GStrv) keys = g_key_file_get_keys (config->file, group, NULL, NULL);

  for (guint i = 0; keys != NULL && keys[i] != NULL; i++)
    if (!g_strv_contains (allowed, keys[i]))
      return config_error (config, error, group, keys[i], _("unknown key"));

  return TRUE;
}

static gboolean
parse_seconds (Config      *config,
               const char  *group,
               const char  *key,
               double      *seconds,
               GError     **error)
{
  g_autofree char *text = g_key_file_get_string (config->file, group, key, NULL);
  char *end = NULL;

  if (text == NULL)
    return TRUE;

  *seconds = g_ascii_strtod (text, &end);
  if (end == text || *end != '\0' || *seconds < 0 || *seconds > 3600)
    return config_error (config, error, group, key,
                         _("“%s” is not a number of seconds from 0 to 3600"), text);

  return TRUE;
}

static gboolean
load_target (Config            *config,
             const char        *group,
             LyProcessManager  *manager,
             GError           **error)
{
  static const char * const allowed[] = { "Exec", "Restart", "StopTimeout", "Environment",
                                          "WorkingDirectory", NULL };
  const char *name = group + strlen (TARGET_PREFIX);
  g_autofree char *exec = NULL;
  g_autofree char *restart = NULL;
  g_autofree char *environment = NULL;
  g_autofree char *directory = NULL;
  g_auto(GStrv) argv = NULL;
  g_auto(GStrv) env = NULL;
  g_autoptr(GError) local_error = NULL;
  double stop_timeout = -1;

  if (!check_keys (config, group, allowed, error))
    return FALSE;

  exec = g_key_file_get_string (config->file, group, "Exec", NULL);
  if (exec == NULL)
    return config_error (config, error, group, NULL, _("Exec= is missing"));
  if (!g_shell_parse_argv (exec, NULL, &argv, &local_error))
    return config_error (config, error, group, "Exec", "%s", local_error->message);

  if (!ly_process_manager_add_target (manager, name, (const char * const *) argv, &local_error))
    return config_error (config, error, group, NULL, "%s", local_error->message);

  restart = g_key_file_get_string (config->file, group, "Restart", NULL);
  if (restart != NULL)
    {
      LyRestartPolicy policy;

      if (g_str_equal (restart, "never") || g_str_equal (restart, "no"))
        policy = LY_RESTART_NEVER;
      else if (g_str_equal (restart, "on-failure"))
        policy = LY_RESTART_ON_FAILURE;
      else if (g_str_equal (restart, "always"))
        policy = LY_RESTART_ALWAYS;
      else
        return config_error (config, error, group, "Restart",
                             _("“%s” is not one of never, on-failure, always"), restart);
      ly_process_manager_set_restart_policy (manager, name, policy, NULL);
    }

  if (!parse_seconds (config, group, "StopTimeout", &stop_timeout, error))
    return FALSE;
  ly_process_manager_set_target_stop_timeout (manager, name, stop_timeout, NULL);

  environment = g_key_file_get_string (config->file, group, "Environment", NULL);
  if (environment != NULL &&
      (!g_shell_parse_argv (environment, NULL, &env, &local_error) ||
       !ly_process_manager_set_environment (manager, name, (const char * const *) env, &local_error)))
    return config_error (config, error, group, "Environment", "%s", local_error->message);

  directory = g_key_file_get_string (config->file, group, "WorkingDirectory", NULL);
  if (directory != NULL)
    {
      if (!g_file_test (directory, G_FILE_TEST_IS_DIR))
        return config_error (config, error, group, "WorkingDirectory",
                             _("“%s” is not a directory"), directory);
      ly_process_manager_set_working_directory (manager, name, directory, NULL);
    }

  return TRUE;
}

gboolean
lc_config_load (const char        *path,
                LyProcessManager  *manager,
                GError           **error)
{
  g_autofree char *text = NULL;

  if (!g_file_get_contents (path, &text, NULL, error))
    return FALSE;

  return lc_config_load_data (path, text, manager, error);
}

/* The file's @text, read already; @path is for the messages.  The
 * fuzzer feeds it arbitrary bytes. */
gboolean
lc_config_load_data (const char        *path,
                     const char        *text,
                     LyProcessManager  *manager,
                     GError           **error)
{
  static const char * const hub_keys[] = { "StopTimeout", "Storage", NULL };
  g_autoptr(GKeyFile) file = g_key_file_new ();
  g_auto(GStrv) lines = NULL;
  g_auto(GStrv) groups = NULL;
  g_autoptr(GError) local_error = NULL;
  Config config = { path, NULL, NULL };
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

  for (guint i = 0; groups[i] != NULL; i++)
    {
      if (g_str_equal (groups[i], "hub"))
        {
          double stop_timeout = -1;

          g_autofree char *storage = g_key_file_get_string (file, groups[i], "Storage", NULL);

          if (!check_keys (&config, groups[i], hub_keys, error) ||
              !parse_seconds (&config, groups[i], "StopTimeout", &stop_timeout, error))
            return FALSE;
          /* opened by the daemon before the targets (lc_config_get_storage()) */
          if (storage != NULL && strchr (storage, ':') == NULL)
            return config_error (&config, error, groups[i], "Storage",
                                 _("“%s” is not a storage URI (local:, redis://HOST…, unix:///PATH…)"), storage);
          if (stop_timeout >= 0)
            ly_process_manager_set_stop_timeout (manager, stop_timeout);
        }
      else if (g_str_has_prefix (groups[i], TARGET_PREFIX))
        {
          if (!load_target (&config, groups[i], manager, error))
            return FALSE;
          n_targets++;
        }
      else
        return config_error (&config, error, groups[i], NULL,
                             _("unknown group: use [hub] or [target NAME]"));
    }

  if (n_targets == 0)
    {
      g_set_error (error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_GROUP_NOT_FOUND,
                   _("%s: no [target NAME] group"), path);
      return FALSE;
    }

  return TRUE;
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

/* lc-client.c: the client subcommands, over D-Bus
 *
 *   ps | start NAME | stop NAME | restart NAME
 *   storage get KEY | set KEY VALUE | delete KEY | list | watch [KEY]
 *   publish TOPIC VALUE | subscribe TOPIC | send CHANNEL VALUE
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "lc-common.h"

#include <stdio.h>

#include <glib-unix.h>

#define STORAGE_IFACE "icu.liteyuki.Comm1.Storage"
#define MANAGER_IFACE "icu.liteyuki.Comm1.Manager"
#define CALL_TIMEOUT_MSEC (60 * 1000)

typedef struct
{
  GDBusConnection *connection;
  const char      *dest;        /* NULL on a private server */
  gboolean         json;
  GDBusCallFlags   call_flags;  /* no auto-start, unless --start */
  int              count;       /* events to wait for, 0 for no end */
  int              status;      /* the exit status of a command that succeeded */
  int              seen;
  GMainLoop       *loop;
} Client;

static char *option_address;
static char *option_bus_name;
static gboolean option_json;
static gboolean option_start;
static int option_count;

static GOptionEntry client_entries[] = {
  { "address", 0, 0, G_OPTION_ARG_STRING, &option_address,
    N_("Talk to the hub at this D-Bus address instead of the session bus"), N_("ADDRESS") },
  { "bus-name", 0, 0, G_OPTION_ARG_STRING, &option_bus_name,
    N_("The hub's name on the session bus (default icu.liteyuki.Comm1)"), N_("NAME") },
  { "json", 0, 0, G_OPTION_ARG_NONE, &option_json, N_("Read and print values as JSON instead of GVariant text"), NULL },
  { "start", 0, 0, G_OPTION_ARG_NONE, &option_start,
    N_("Start the hub through D-Bus activation when none is running (by default a command never starts one)"), NULL },
  { NULL }
};

static GOptionEntry watch_entries[] = {
  { "count", 'n', 0, G_OPTION_ARG_INT, &option_count, N_("Exit after N events"), N_("N") },
  { NULL }
};

static gboolean
client_connect (Client  *client,
                GError **error)
{
  g_autoptr(GError) local_error = NULL;

  client->json = option_json;
  client->count = option_count;
  /* a ps, a get or a TAB in completion must not start every bot */
  client->call_flags = option_start ? G_DBUS_CALL_FLAGS_NONE : G_DBUS_CALL_FLAGS_NO_AUTO_START;

  if (option_address == NULL && option_bus_name == NULL)
    {
      /* a hub serving privately (no session bus) says where */
      g_autofree char *found = ly_dbus_server_find_address ();

      if (found != NULL &&
          (client->connection = g_dbus_connection_new_for_address_sync (found,
                                                                        G_DBUS_CONNECTION_FLAGS_AUTHENTICATION_CLIENT,
                                                                        NULL, NULL, NULL)) != NULL)
        {
          client->dest = NULL;
          return TRUE;
        }
    }

  if (option_address != NULL)
    {
      client->connection = g_dbus_connection_new_for_address_sync (option_address,
                                                                   G_DBUS_CONNECTION_FLAGS_AUTHENTICATION_CLIENT,
                                                                   NULL, NULL, &local_error);
      client->dest = NULL;
    }
  else
    {
      client->connection = g_bus_get_sync (G_BUS_TYPE_SESSION, NULL, &local_error);
      client->dest = option_bus_name != NULL ? option_bus_name : LY_DBUS_NAME;
    }

  if (client->connection == NULL)
    {
      g_set_error (error, local_error->domain, local_error->code,
                   option_address != NULL ? _("cannot connect to %s: %s")
                                          : _("cannot reach the session bus%s: %s (use --address)"),
                   option_address != NULL ? option_address : "", local_error->message);
      return FALSE;
    }

  return TRUE;
}

static GVariant *
client_call (Client              *client,
             const char          *path,
             const char          *iface,
             const char          *method,
             GVariant            *parameters,
             const GVariantType  *reply_type,
             GError             **error)
{
  GVariant *reply = g_dbus_connection_call_sync (client->connection, client->dest, path, iface, method,
                                                 parameters, reply_type, client->call_flags,
                                                 CALL_TIMEOUT_MSEC, NULL, error);

  if (reply == NULL && error != NULL && *error != NULL)
    {
      if (g_error_matches (*error, G_DBUS_ERROR, G_DBUS_ERROR_SERVICE_UNKNOWN) ||
          g_error_matches (*error, G_DBUS_ERROR, G_DBUS_ERROR_NAME_HAS_NO_OWNER))
        {
          g_clear_error (error);
          g_set_error (error, G_DBUS_ERROR, G_DBUS_ERROR_SERVICE_UNKNOWN,
                       _("no hub is running as %s on the session bus (--start starts one)"), client->dest);
        }
      else
        g_dbus_error_strip_remote_error (*error);
    }

  return reply;
}

/* A value as the user gave it, in the form D-Bus carries it (a maybe
 * type, say, goes wrapped). */
static GVariant *
parse_wire_value (const char  *text,
                  GError     **error)
{
  /* --json: values going in are JSON too */
  g_autoptr(GVariant) value = option_json ? lc_json_to_variant (text, error) : lc_parse_value (text, error);

  return value != NULL ? ly_dbus_value_to_wire (value) : NULL;
}

static void
print_value (Client   *client,
             GVariant *wire)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(GVariant) value = ly_dbus_value_from_wire (wire, &error);
  g_autofree char *text = NULL;

  if (value == NULL)
    {
      lc_print_error ("%s", error->message);
      return;
    }
  text = client->json ? lc_variant_to_json (value) : g_variant_print (value, TRUE);

  printf ("%s\n", text);
  fflush (stdout);
}

/* Commands ---------------------------------------------------------------- */

static gboolean
command_ps (Client  *client,
            char   **args,
            GError **error)
{
  g_autoptr(GVariant) reply = client_call (client, LY_DBUS_MANAGER_PATH, MANAGER_IFACE, "ListProcesses",
                                           NULL, G_VARIANT_TYPE ("(a(sisu))"), error);
  g_autoptr(GVariant) table = NULL;
  GVariantIter iter;
  const char *name, *state;
  gint32 pid;
  guint32 restarts;

  if (reply == NULL)
    return FALSE;

  table = g_variant_get_child_value (reply, 0);
  if (client->json)
    {
      GString *out = g_string_new ("[");

      g_variant_iter_init (&iter, table);
      while (g_variant_iter_next (&iter, "(&si&su)", &name, &pid, &state, &restarts))
        {
          g_autofree char *name_json = lc_string_to_json (name);

          g_string_append_printf (out, "%s{\"name\":%s,\"pid\":%d,\"state\":\"%s\",\"restarts\":%u}",
                                  out->len > 1 ? "," : "", name_json, pid, state, restarts);
        }
      g_string_append_c (out, ']');
      printf ("%s\n", out->str);
      g_string_free (out, TRUE);
      return TRUE;
    }

  /* TRANSLATORS: the heading of `liteyuki-comm ps`; keep the columns */
  printf ("%-20s %8s %-10s %s\n", _("NAME"), _("PID"), _("STATE"), _("RESTARTS"));
  g_variant_iter_init (&iter, table);
  while (g_variant_iter_next (&iter, "(&si&su)", &name, &pid, &state, &restarts))
    printf ("%-20s %8d %-10s %u\n", name, pid, state, restarts);

  return TRUE;
}

static gboolean
command_lifecycle (Client      *client,
                   const char  *method,
                   char       **args,
                   GError     **error)
{
  g_autoptr(GVariant) reply = client_call (client, LY_DBUS_MANAGER_PATH, MANAGER_IFACE, method,
                                           g_variant_new ("(s)", args[0]), NULL, error);

  return reply != NULL;
}

/* A call whose arguments are a name and a value given as GVariant text:
 * Send and Publish. */
static gboolean
call_with_value (Client      *client,
                 const char  *path,
                 const char  *iface,
                 const char  *method,
                 char       **args,
                 GError     **error)
{
  g_autoptr(GVariant) value = parse_wire_value (args[1], error);
  g_autoptr(GVariant) reply = NULL;

  if (value == NULL)
    return FALSE;

  reply = client_call (client, path, iface, method, g_variant_new ("(sv)", args[0], value), NULL, error);
  return reply != NULL;
}

static gboolean
quit_on_signal (gpointer user_data)
{
  g_main_loop_quit (user_data);
  return G_SOURCE_REMOVE;
}

static void
on_signal (GDBusConnection *connection,
           const char      *sender,
           const char      *path,
           const char      *iface,
           const char      *member,
           GVariant        *parameters,
           gpointer         user_data)
{
  Client *client = user_data;
  g_autoptr(GVariant) value = NULL;
  const char *name;

  if (g_str_equal (member, "Changed"))
    {
      g_autoptr(GVariant) optional = NULL;

      g_variant_get (parameters, "(&s@av)", &name, &optional);
      /* the value itself, as get prints it: 5, not <5> */
      if (g_variant_n_children (optional) > 0)
        g_variant_get_child (optional, 0, "v", &value);
      if (value != NULL)
        {
          GVariant *wire = value;

          value = ly_dbus_value_from_wire (wire, NULL);
          g_variant_unref (wire);
        }
      if (client->json)
        {
          g_autofree char *key = lc_string_to_json (name);
          g_autofree char *text = value != NULL ? lc_variant_to_json (value) : g_strdup ("null");

          printf ("{\"key\":%s,\"value\":%s}\n", key, text);
        }
      else
        {
          g_autofree char *text = value != NULL ? g_variant_print (value, TRUE) : g_strdup (_("(deleted)"));

          printf ("%s %s\n", name, text);
        }
      fflush (stdout);
    }
  else
    {
      g_variant_get (parameters, "(&sv)", &name, &value);
      print_value (client, value);
    }

  if (client->count > 0 && ++client->seen >= client->count)
    g_main_loop_quit (client->loop);
}

/* Prints the events until SIGINT or SIGTERM (or --count of them). */
static gboolean
watch (Client      *client,
       const char  *member,
       const char  *arg0)
{
  g_autoptr(GMainLoop) loop = g_main_loop_new (NULL, FALSE);
  guint id;

  client->loop = loop;
  id = g_dbus_connection_signal_subscribe (client->connection, client->dest, STORAGE_IFACE, member,
                                           LY_DBUS_STORAGE_PATH, arg0, G_DBUS_SIGNAL_FLAGS_NONE,
                                           on_signal, client, NULL);
  g_unix_signal_add (SIGINT, quit_on_signal, loop);
  g_unix_signal_add (SIGTERM, quit_on_signal, loop);
  g_main_loop_run (loop);
  g_dbus_connection_signal_unsubscribe (client->connection, id);

  return TRUE;
}

/* A value for an `av` of zero or one values: "-" is no value (an
 * absent key), anything else a value in GVariant text.  @builder is
 * cleared on error. */
static gboolean
add_optional_value (GVariantBuilder  *builder,
                    const char       *text,
                    GError          **error)
{
  GVariant *value;

  g_variant_builder_init (builder, G_VARIANT_TYPE ("av"));
  if (g_str_equal (text, "-"))
    return TRUE;

  if ((value = parse_wire_value (text, error)) == NULL)
    {
      g_variant_builder_clear (builder);
      return FALSE;
    }
  g_variant_builder_add (builder, "v", value);
  g_variant_unref (value);
  return TRUE;
}

static gboolean
command_storage (Client  *client,
                 char   **args,
                 GError **error)
{
  const char *verb = args[0];
  g_autoptr(GVariant) reply = NULL;
  guint n = g_strv_length (args);

#define NEED(count) \
  if (n != (count) + 1) \
    { \
      g_set_error (error, G_OPTION_ERROR, G_OPTION_ERROR_FAILED, \
                   _("storage %s takes %d argument(s); see “liteyuki-comm storage --help”"), verb, (count)); \
      return FALSE; \
    }

  if (g_str_equal (verb, "get"))
    {
      g_autoptr(GVariant) value = NULL;

      NEED (1);
      reply = client_call (client, LY_DBUS_STORAGE_PATH, STORAGE_IFACE, "Get",
                           g_variant_new ("(s)", args[1]), G_VARIANT_TYPE ("(v)"), error);
      if (reply == NULL)
        return FALSE;
      g_variant_get (reply, "(v)", &value);
      print_value (client, value);
      return TRUE;
    }

  if (g_str_equal (verb, "set"))
    {
      g_autoptr(GVariant) value = NULL;

      NEED (2);
      if ((value = parse_wire_value (args[2], error)) == NULL)
        return FALSE;
      reply = client_call (client, LY_DBUS_STORAGE_PATH, STORAGE_IFACE, "Set",
                           g_variant_new ("(sv)", args[1], value), NULL, error);
      return reply != NULL;
    }

  if (g_str_equal (verb, "delete"))
    {
      gboolean existed;

      NEED (1);
      reply = client_call (client, LY_DBUS_STORAGE_PATH, STORAGE_IFACE, "Delete",
                           g_variant_new ("(s)", args[1]), G_VARIANT_TYPE ("(b)"), error);
      if (reply == NULL)
        return FALSE;
      g_variant_get (reply, "(b)", &existed);
      if (!existed)
        g_set_error (error, LY_STORAGE_ERROR, LY_STORAGE_ERROR_NO_SUCH_KEY,
                     _("There is no key “%s”"), args[1]);
      return existed;
    }

  if (g_str_equal (verb, "contains"))
    {
      gboolean contains;

      NEED (1);
      reply = client_call (client, LY_DBUS_STORAGE_PATH, STORAGE_IFACE, "Contains",
                           g_variant_new ("(s)", args[1]), G_VARIANT_TYPE ("(b)"), error);
      if (reply == NULL)
        return FALSE;
      g_variant_get (reply, "(b)", &contains);
      /* like test(1): the answer is the exit status too */
      printf ("%s\n", contains ? "true" : "false");
      client->status = contains ? 0 : LC_EXIT_FAILURE;
      return TRUE;
    }

  if (g_str_equal (verb, "cas"))
    {
      GVariantBuilder expected, value;
      gboolean swapped;

      NEED (3);
      if (!add_optional_value (&expected, args[2], error) || !add_optional_value (&value, args[3], error))
        return FALSE;
      reply = client_call (client, LY_DBUS_STORAGE_PATH, STORAGE_IFACE, "CompareAndSet",
                           g_variant_new ("(sav@av)", args[1], &expected, g_variant_builder_end (&value)),
                           G_VARIANT_TYPE ("(b)"), error);
      if (reply == NULL)
        return FALSE;
      g_variant_get (reply, "(b)", &swapped);
      if (!swapped)
        g_set_error (error, LY_STORAGE_ERROR, LY_STORAGE_ERROR_NO_SUCH_KEY,
                     _("“%s” did not hold %s: not changed"), args[1], args[2]);
      return swapped;
    }

  if (g_str_equal (verb, "list"))
    {
      g_autoptr(GVariant) keys = NULL;

      NEED (0);
      reply = client_call (client, LY_DBUS_STORAGE_PATH, STORAGE_IFACE, "ListKeys",
                           NULL, G_VARIANT_TYPE ("(as)"), error);
      if (reply == NULL)
        return FALSE;
      keys = g_variant_get_child_value (reply, 0);
      if (client->json)
        print_value (client, keys);
      else
        for (gsize i = 0; i < g_variant_n_children (keys); i++)
          {
            const char *key;

            g_variant_get_child (keys, i, "&s", &key);
            printf ("%s\n", key);
          }
      return TRUE;
    }

  if (g_str_equal (verb, "watch"))
    {
      if (n > 2)
        {
          NEED (1);
        }
      return watch (client, "Changed", n == 2 ? args[1] : NULL);
    }

#undef NEED

  g_set_error (error, G_OPTION_ERROR, G_OPTION_ERROR_UNKNOWN_OPTION,
               _("unknown storage command “%s”: use get, set, delete, contains, cas, list or watch"), verb);
  return FALSE;
}

static gboolean
note_stop (gpointer user_data)
{
  *(gboolean *) user_data = TRUE;
  return G_SOURCE_CONTINUE;
}

/* Takes the messages of a hub's channel as they come, until --count of
 * them (or SIGINT/SIGTERM): a call that waits up to a second each time. */
static gboolean
command_receive (Client      *client,
                 const char  *channel,
                 GError     **error)
{
  gboolean stop = FALSE;
  guint sigint = g_unix_signal_add (SIGINT, note_stop, &stop);
  guint sigterm = g_unix_signal_add (SIGTERM, note_stop, &stop);
  gboolean ok = TRUE;

  while (!stop && (client->count <= 0 || client->seen < client->count))
    {
      guint wanted = client->count > 0 ? (guint) (client->count - client->seen) : 256;
      g_autoptr(GVariant) reply = client_call (client, LY_DBUS_MANAGER_PATH, MANAGER_IFACE, "Receive",
                                               g_variant_new ("(sui)", channel, MIN (wanted, 4096u), 1000),
                                               G_VARIANT_TYPE ("(av)"), error);
      g_autoptr(GVariant) messages = NULL;
      GVariantIter iter;
      GVariant *message;

      if (reply == NULL)
        {
          ok = FALSE;
          break;
        }
      messages = g_variant_get_child_value (reply, 0);
      g_variant_iter_init (&iter, messages);
      while (g_variant_iter_next (&iter, "v", &message))
        {
          print_value (client, message);
          g_variant_unref (message);
          client->seen++;
        }
      while (g_main_context_iteration (NULL, FALSE))
        ;
    }

  g_source_remove (sigint);
  g_source_remove (sigterm);
  return ok;
}

/* The table of commands --------------------------------------------------- */

typedef struct
{
  const char *name;
  const char *parameters;
  const char *summary;
  int         n_args;          /* -1: the command checks */
  gboolean    watches;
} ClientCommand;

static const ClientCommand commands[] = {
  { "ps", "", N_("Lists the hub's processes: name, pid, state, restarts."), 0, FALSE },
  { "start", N_("NAME"), N_("Starts a target."), 1, FALSE },
  { "stop", N_("NAME"), N_("Stops a target; returns when its process is gone."), 1, FALSE },
  { "restart", N_("NAME"), N_("Restarts a target; returns when the new process started."), 1, FALSE },
  { "storage", N_("get KEY | set KEY VALUE | delete KEY | contains KEY | cas KEY EXPECTED VALUE | list | watch [KEY]"),
    N_("Reads and writes the hub's storage; watch prints every change.  In cas, “-” is no value: a key expected absent, or deleted."), -1, TRUE },
  { "publish", N_("TOPIC VALUE"), N_("Publishes a value on a topic."), 2, FALSE },
  { "subscribe", N_("TOPIC"), N_("Prints every value published on a topic."), 1, TRUE },
  { "send", N_("CHANNEL VALUE"), N_("Sends a message on one of the hub's channels, such as nonebot-passive."), 2, FALSE },
  { "receive", N_("CHANNEL"), N_("Prints the messages a child sent on the hub's end of a channel, such as nonebot-active, as they come."), 1, TRUE },
};

gboolean
lc_is_client_command (const char *name)
{
  for (gsize i = 0; i < G_N_ELEMENTS (commands); i++)
    if (g_str_equal (commands[i].name, name))
      return TRUE;
  return FALSE;
}

void
lc_print_client_commands (void)
{
  for (gsize i = 0; i < G_N_ELEMENTS (commands); i++)
    printf ("  %-10s %s\n", commands[i].name, _(commands[i].summary));
}

int
lc_client_main (const char  *name,
                int          argc,
                char       **argv)
{
  const ClientCommand *command = NULL;
  g_autoptr(GOptionContext) context = NULL;
  g_autoptr(GError) error = NULL;
  Client client = { NULL, };
  char **args;
  gboolean ok;

  for (gsize i = 0; i < G_N_ELEMENTS (commands); i++)
    if (g_str_equal (commands[i].name, name))
      command = &commands[i];
  g_assert (command != NULL);

  /* the program name, set in main(), says the command */
  context = g_option_context_new (command->parameters[0] ? _(command->parameters) : NULL);
  g_option_context_set_translation_domain (context, GETTEXT_PACKAGE);
  g_option_context_set_summary (context, _(command->summary));
  g_option_context_add_main_entries (context, client_entries, GETTEXT_PACKAGE);
  if (command->watches)
    g_option_context_add_main_entries (context, watch_entries, GETTEXT_PACKAGE);
  if (!lc_parse_options (context, &argc, &argv))
    return LC_EXIT_USAGE;

  /* argv[0] is the program, argv[1] the command */
  args = argv + 2;
  if ((command->n_args >= 0 && argc - 2 != command->n_args) || (command->n_args < 0 && argc < 3))
    {
      lc_print_error (_("wrong arguments; see “liteyuki-comm %s --help”"), command->name);
      return LC_EXIT_USAGE;
    }

  if (!client_connect (&client, &error))
    {
      lc_print_error ("%s", error->message);
      return LC_EXIT_FAILURE;
    }

  if (g_str_equal (name, "ps"))
    ok = command_ps (&client, args, &error);
  else if (g_str_equal (name, "start"))
    ok = command_lifecycle (&client, "Start", args, &error);
  else if (g_str_equal (name, "stop"))
    ok = command_lifecycle (&client, "Stop", args, &error);
  else if (g_str_equal (name, "restart"))
    ok = command_lifecycle (&client, "Restart", args, &error);
  else if (g_str_equal (name, "storage"))
    ok = command_storage (&client, args, &error);
  else if (g_str_equal (name, "publish"))
    ok = call_with_value (&client, LY_DBUS_STORAGE_PATH, STORAGE_IFACE, "Publish", args, &error);
  else if (g_str_equal (name, "subscribe"))
    ok = watch (&client, "Published", args[0]);
  else if (g_str_equal (name, "receive"))
    ok = command_receive (&client, args[0], &error);
  else
    ok = call_with_value (&client, LY_DBUS_MANAGER_PATH, MANAGER_IFACE, "Send", args, &error);

  g_clear_object (&client.connection);

  if (!ok)
    {
      lc_print_error ("%s", error->message);
      return (error->domain == G_VARIANT_PARSE_ERROR || error->domain == G_OPTION_ERROR)
             ? LC_EXIT_USAGE : LC_EXIT_FAILURE;
    }

  return client.status;
}

/* ly-dbus-server.c
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "config.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gio/gunixsocketaddress.h>
#include <glib/gstdio.h>

#include "ly-context-private.h"
#include "ly-dbus.h"
#include "ly-dbus-server.h"
#include "ly-i18n-private.h"

/**
 * LyDBusServer:
 *
 * The hub's private D-Bus server, for when there is no session bus:
 * every client that connects finds the process manager and the storage
 * exported, as on the bus (`gdbus call --address`, `liteyuki-comm
 * --address`).
 *
 * Only the hub's own user gets in, and other users cannot even knock:
 *
 * - it listens on a socket file, by default
 *   `$XDG_RUNTIME_DIR/liteyuki-comm/hub.socket` in a directory of mode
 *   0700, never on an abstract socket (which every local user can
 *   reach) nor on TCP (where EXTERNAL authentication cannot work);
 * - a connection from another user, as the kernel tells, is closed at
 *   once, before any authentication;
 * - at most 16 authentications are in progress at a time, each for at
 *   most 5 s, and the refusals are logged once per 10 s at most, counted:
 *   a flood of half-open connections costs the hub neither threads nor
 *   its log.
 *
 * A second hub on the same socket refuses to start while the first
 * answers on it.  The address is written to
 * `$XDG_RUNTIME_DIR/liteyuki-comm/address`, where
 * ly_dbus_server_find_address() (and `liteyuki-comm`) find it.
 *
 * Since: 1.0
 */

/* Authentications in progress at once, and how long one may take. */
#define MAX_PENDING       16
#define AUTH_TIMEOUT_MSEC (5 * 1000)

/* Refusals are logged in one line per this many seconds at most. */
#define REFUSAL_LOG_INTERVAL_USEC (10 * G_USEC_PER_SEC)

#define DEFAULT_SOCKET_NAME  "hub.socket"
#define ADDRESS_FILE_NAME    "address"

struct _LyDBusServer
{
  GObject            parent_instance;

  LyProcessManager  *manager;
  LyStorage         *storage;
  GSocketService    *service;
  GDBusAuthObserver *observer;
  char              *guid;
  char              *socket_path;      /* the file made here, removed at stop */
  char              *client_address;
  char              *address_file;     /* written by this server, or NULL */
  GHashTable        *pending;          /* Pending* being authenticated */

  guint              n_refused;        /* since the last log line */
  gint64             last_refusal_log;
};

typedef struct
{
  LyDBusServer *server;
  GCancellable *cancellable;
  GSource      *timeout;
} Pending;

G_DEFINE_FINAL_TYPE (LyDBusServer, ly_dbus_server, G_TYPE_OBJECT)

/* Refusals ---------------------------------------------------------------- */

static void
note_refusal (LyDBusServer *self,
              const char   *why)
{
  gint64 now = g_get_monotonic_time ();

  self->n_refused++;
  g_debug ("Refused a D-Bus client: %s", why);
  if (self->last_refusal_log != 0 && now - self->last_refusal_log < REFUSAL_LOG_INTERVAL_USEC)
    return;

  g_message (g_dngettext (GETTEXT_PACKAGE,
                          "Refused %u D-Bus connection (another user, failed or slow authentication, or too many at once)",
                          "Refused %u D-Bus connections (another user, failed or slow authentication, or too many at once)",
                          self->n_refused),
             self->n_refused);
  self->n_refused = 0;
  self->last_refusal_log = now;
}

/* Authentication ---------------------------------------------------------- */

static gboolean
allow_mechanism (GDBusAuthObserver *observer,
                 const char        *mechanism,
                 gpointer           user_data)
{
  return g_str_equal (mechanism, "EXTERNAL");
}

/* The kernel's word on who connected: only this user is let in. */
static gboolean
authorize_peer (GDBusAuthObserver *observer,
                GIOStream         *stream,
                GCredentials      *credentials,
                gpointer           user_data)
{
  return credentials != NULL && g_credentials_get_unix_user (credentials, NULL) == getuid ();
}

/* Tools such as `gdbus call --address` expect a message bus at the
 * other end and say Hello first: answer the few bus calls they make, so
 * that they work on a private server too. */
static const char bus_shim_xml[] =
  "<node>"
  "  <interface name='org.freedesktop.DBus'>"
  "    <method name='Hello'><arg type='s' direction='out'/></method>"
  "    <method name='AddMatch'><arg type='s' direction='in'/></method>"
  "    <method name='RemoveMatch'><arg type='s' direction='in'/></method>"
  "  </interface>"
  "</node>";

static void
bus_shim_method_call (GDBusConnection       *connection,
                      const char            *sender,
                      const char            *object_path,
                      const char            *interface_name,
                      const char            *method_name,
                      GVariant              *parameters,
                      GDBusMethodInvocation *invocation,
                      gpointer               user_data)
{
  static gint next_peer = 0;

  if (g_str_equal (method_name, "Hello"))
    {
      g_autofree char *unique = g_strdup_printf (":1.%d", g_atomic_int_add (&next_peer, 1));
      g_dbus_method_invocation_return_value (invocation, g_variant_new ("(s)", unique));
    }
  else
    g_dbus_method_invocation_return_value (invocation, NULL);
}

static void
register_bus_shim (GDBusConnection *connection)
{
  static GDBusNodeInfo *info = NULL;
  static const GDBusInterfaceVTable vtable = { bus_shim_method_call, NULL, NULL, { 0 } };

  if (g_once_init_enter (&info))
    g_once_init_leave (&info, g_dbus_node_info_new_for_xml (bus_shim_xml, NULL));

  g_dbus_connection_register_object (connection, "/org/freedesktop/DBus", info->interfaces[0],
                                     &vtable, NULL, NULL, NULL);
}

/* An authenticated client: it finds the hub's objects.  The exports
 * hold the connection until it closes. */
static void
serve_connection (LyDBusServer    *self,
                  GDBusConnection *connection)
{
  g_autoptr(GError) error = NULL;

  register_bus_shim (connection);
  if ((self->storage != NULL && !ly_storage_export (self->storage, connection, &error)) ||
      (self->manager != NULL && !ly_process_manager_export (self->manager, connection, &error)))
    {
      g_warning ("Could not serve a D-Bus client: %s", error->message);
      g_dbus_connection_close (connection, NULL, NULL, NULL);
      return;
    }
  g_dbus_connection_start_message_processing (connection);
}

static void
pending_free (gpointer data)
{
  Pending *pending = data;

  g_source_destroy (pending->timeout);
  g_source_unref (pending->timeout);
  g_object_unref (pending->cancellable);
  g_free (pending);
}

static void
authenticated (GObject      *source,
               GAsyncResult *result,
               gpointer      user_data)
{
  Pending *pending = user_data;
  g_autoptr(LyDBusServer) self = pending->server;
  g_autoptr(GError) error = NULL;
  g_autoptr(GDBusConnection) connection = g_dbus_connection_new_finish (result, &error);

  g_hash_table_remove (self->pending, pending);
  if (connection == NULL)
    {
      note_refusal (self, error->message);
      return;
    }
  if (self->service == NULL)
    {
      g_dbus_connection_close (connection, NULL, NULL, NULL);
      return;
    }

  serve_connection (self, connection);
}

static void
start_authentication (LyDBusServer      *self,
                      GSocketConnection *stream)
{
  Pending *pending = g_new0 (Pending, 1);

  pending->server = g_object_ref (self);
  pending->cancellable = g_cancellable_new ();
  pending->timeout = ly_context_cancel_after (g_main_context_get_thread_default (), pending->cancellable,
                                              AUTH_TIMEOUT_MSEC, "[liteyuki-comm] D-Bus authentication timeout");
  g_hash_table_add (self->pending, pending);

  g_dbus_connection_new (G_IO_STREAM (stream), self->guid,
                         G_DBUS_CONNECTION_FLAGS_AUTHENTICATION_SERVER |
                         G_DBUS_CONNECTION_FLAGS_DELAY_MESSAGE_PROCESSING,
                         self->observer, pending->cancellable, authenticated, pending);
}

/* Before anything is read: whose connection it is, and whether there
 * is room for one more authentication. */
static gboolean
on_incoming (GSocketService    *service,
             GSocketConnection *stream,
             GObject           *source_object,
             LyDBusServer      *self)
{
  g_autoptr(GCredentials) credentials = g_socket_get_credentials (g_socket_connection_get_socket (stream), NULL);

  if (credentials == NULL || g_credentials_get_unix_user (credentials, NULL) != getuid ())
    note_refusal (self, "another user");
  else if (g_hash_table_size (self->pending) >= MAX_PENDING)
    note_refusal (self, "too many authentications at once");
  else
    {
      start_authentication (self, stream);
      return TRUE;
    }

  g_io_stream_close (G_IO_STREAM (stream), NULL, NULL);
  return TRUE;
}

/* Addresses --------------------------------------------------------------- */

static char *
default_directory (void)
{
  return g_build_filename (g_get_user_runtime_dir (), "liteyuki-comm", NULL);
}

/* A directory of this user's that nobody else may enter. */
static gboolean
is_private_directory (const char *directory)
{
  struct stat info;

  return g_lstat (directory, &info) == 0 && S_ISDIR (info.st_mode) &&
         info.st_uid == getuid () && (info.st_mode & 077) == 0;
}

/* The directory of the default socket: made with mode 0700, and
 * refused when somebody else made it, or opened it to others. */
static gboolean
ensure_private_directory (const char  *directory,
                          GError     **error)
{
  if (g_mkdir_with_parents (directory, 0700) < 0 && errno != EEXIST)
    {
      int saved_errno = errno;

      g_set_error (error, G_IO_ERROR, g_io_error_from_errno (saved_errno),
                   _("Cannot make the directory %s: %s"), directory, g_strerror (saved_errno));
      return FALSE;
    }

  if (!is_private_directory (directory))
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_PERMISSION_DENIED,
                   _("%s is not a private directory of this user (mode 0700): refused"), directory);
      return FALSE;
    }

  return TRUE;
}

/* The value of @key in a `unix:` address, unescaped, or NULL. */
static char *
address_value (const char *address,
               const char *key)
{
  g_auto(GStrv) pairs = g_strsplit (address + strlen ("unix:"), ",", -1);

  for (guint i = 0; pairs[i] != NULL; i++)
    {
      const char *equal = strchr (pairs[i], '=');

      if (equal != NULL && strncmp (pairs[i], key, (gsize) (equal - pairs[i])) == 0 &&
          strlen (key) == (gsize) (equal - pairs[i]))
        return g_uri_unescape_string (equal + 1, NULL);
    }

  return NULL;
}

/* The socket file an address names.  EXTERNAL authentication, the only
 * one allowed, needs the kernel's word on who connects: not over TCP,
 * where nobody could get in and a port would only be an open door; and
 * an abstract socket any local user may reach is not taken either. */
static char *
socket_path_for_address (const char  *address,
                         gboolean    *is_default,
                         GError     **error)
{
  g_autofree char *path = NULL;
  g_autofree char *directory = NULL;

  *is_default = address == NULL;
  if (address == NULL)
    {
      directory = default_directory ();
      if (!ensure_private_directory (directory, error))
        return NULL;
      return g_build_filename (directory, DEFAULT_SOCKET_NAME, NULL);
    }

  if (g_str_has_prefix (address, "tcp:") || g_str_has_prefix (address, "nonce-tcp:"))
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED,
                   _("“%s” is a TCP address: the hub serves only local clients it can identify, on a unix: address"),
                   address);
      return NULL;
    }
  if (!g_str_has_prefix (address, "unix:") || strchr (address, ';') != NULL)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED,
                   _("“%s” is not an address the hub serves on: use unix:path=FILE or unix:dir=DIRECTORY"), address);
      return NULL;
    }

  if ((path = address_value (address, "path")) != NULL)
    return g_steal_pointer (&path);
  if ((directory = address_value (address, "dir")) != NULL ||
      (directory = address_value (address, "tmpdir")) != NULL)
    {
      g_autofree char *name = g_strdup_printf ("liteyuki-comm-%d-%08x.socket", (int) getpid (), g_random_int ());

      return g_build_filename (directory, name, NULL);
    }

  g_set_error (error, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED,
               _("“%s” is not an address the hub serves on: an abstract socket can be reached by every local user; use unix:path=FILE or unix:dir=DIRECTORY"),
               address);
  return NULL;
}

/* A socket file left at @path: another hub's that answers (refused), or
 * a dead one's (removed). */
static gboolean
take_socket_path (const char  *path,
                  GError     **error)
{
  g_autoptr(GSocketClient) client = NULL;
  g_autoptr(GSocketConnection) connection = NULL;
  g_autoptr(GSocketAddress) address = NULL;
  struct stat info;

  if (g_lstat (path, &info) < 0)
    return TRUE;
  if (!S_ISSOCK (info.st_mode))
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_EXISTS,
                   _("%s exists and is not a socket: refused"), path);
      return FALSE;
    }

  client = g_socket_client_new ();
  address = g_unix_socket_address_new (path);
  connection = g_socket_client_connect (client, G_SOCKET_CONNECTABLE (address), NULL, NULL);
  if (connection != NULL)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_ADDRESS_IN_USE,
                   _("Another hub serves on %s"), path);
      return FALSE;
    }

  g_unlink (path);
  return TRUE;
}

static gboolean
listen_on (LyDBusServer  *self,
           const char    *path,
           GError       **error)
{
  g_autoptr(GSocketAddress) address = g_unix_socket_address_new (path);

  if (!take_socket_path (path, error) ||
      !g_socket_listener_add_address (G_SOCKET_LISTENER (self->service), address, G_SOCKET_TYPE_STREAM,
                                      G_SOCKET_PROTOCOL_DEFAULT, NULL, NULL, error))
    return FALSE;

  self->socket_path = g_strdup (path);
  g_chmod (path, 0600);
  return TRUE;
}

/* Where clients find the address without reading the hub's output. */
static void
write_address_file (LyDBusServer *self)
{
  g_autofree char *directory = default_directory ();
  g_autofree char *path = g_build_filename (directory, ADDRESS_FILE_NAME, NULL);
  g_autofree char *contents = g_strconcat (self->client_address, "\n", NULL);
  g_autoptr(GError) error = NULL;

  if (!ensure_private_directory (directory, &error) ||
      !g_file_set_contents_full (path, contents, -1, G_FILE_SET_CONTENTS_CONSISTENT, 0600, &error))
    {
      g_debug ("Not writing the address file: %s", error->message);
      return;
    }
  self->address_file = g_steal_pointer (&path);
}

static void
remove_address_file (LyDBusServer *self)
{
  g_autofree char *contents = NULL;

  if (self->address_file == NULL)
    return;

  /* unless a newer hub wrote its own since */
  if (g_file_get_contents (self->address_file, &contents, NULL, NULL) &&
      g_str_equal (g_strstrip (contents), self->client_address))
    g_unlink (self->address_file);
  g_clear_pointer (&self->address_file, g_free);
}

/* The object -------------------------------------------------------------- */

static void
ly_dbus_server_dispose (GObject *object)
{
  LyDBusServer *self = LY_DBUS_SERVER (object);

  ly_dbus_server_stop (self);
  g_clear_object (&self->manager);
  g_clear_object (&self->storage);
  g_clear_object (&self->observer);

  G_OBJECT_CLASS (ly_dbus_server_parent_class)->dispose (object);
}

static void
ly_dbus_server_finalize (GObject *object)
{
  LyDBusServer *self = LY_DBUS_SERVER (object);

  g_hash_table_unref (self->pending);
  g_free (self->guid);
  g_free (self->socket_path);
  g_free (self->client_address);

  G_OBJECT_CLASS (ly_dbus_server_parent_class)->finalize (object);
}

static void
ly_dbus_server_class_init (LyDBusServerClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);

  object_class->dispose = ly_dbus_server_dispose;
  object_class->finalize = ly_dbus_server_finalize;
}

static void
ly_dbus_server_init (LyDBusServer *self)
{
  self->guid = g_dbus_generate_guid ();
  self->pending = g_hash_table_new_full (NULL, NULL, pending_free, NULL);
  self->observer = g_dbus_auth_observer_new ();
  g_signal_connect (self->observer, "allow-mechanism", G_CALLBACK (allow_mechanism), NULL);
  g_signal_connect (self->observer, "authorize-authenticated-peer", G_CALLBACK (authorize_peer), NULL);
}

/**
 * ly_dbus_server_new:
 * @address: (nullable): a `unix:path=FILE` or `unix:dir=DIRECTORY`
 *   address, or %NULL for `$XDG_RUNTIME_DIR/liteyuki-comm/hub.socket`
 * @manager: (nullable): the process manager to export
 * @storage: (nullable): the storage to export
 * @error: return location for a #GError
 *
 * Starts a private D-Bus server in the thread-default main context:
 * every client of the same user that connects finds @manager and
 * @storage exported.  A TCP or abstract address fails with
 * %G_IO_ERROR_NOT_SUPPORTED, a socket another hub answers on with
 * %G_IO_ERROR_ADDRESS_IN_USE.  Give
 * ly_dbus_server_get_client_address() to clients; `liteyuki-comm` and
 * ly_dbus_server_find_address() find it by themselves.
 *
 * Returns: (transfer full): the running server, or %NULL with @error set
 *
 * Since: 1.0
 */
LyDBusServer *
ly_dbus_server_new (const char        *address,
                    LyProcessManager  *manager,
                    LyStorage         *storage,
                    GError           **error)
{
  g_autoptr(LyDBusServer) self = NULL;
  g_autofree char *path = NULL;
  g_autofree char *escaped = NULL;
  gboolean is_default;

  g_return_val_if_fail (manager == NULL || LY_IS_PROCESS_MANAGER (manager), NULL);
  g_return_val_if_fail (storage == NULL || LY_IS_STORAGE (storage), NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  if ((path = socket_path_for_address (address, &is_default, error)) == NULL)
    return NULL;

  self = g_object_new (LY_TYPE_DBUS_SERVER, NULL);
  self->manager = manager != NULL ? g_object_ref (manager) : NULL;
  self->storage = storage != NULL ? g_object_ref (storage) : NULL;
  self->service = g_socket_service_new ();
  g_signal_connect (self->service, "incoming", G_CALLBACK (on_incoming), self);
  if (!listen_on (self, path, error))
    {
      g_socket_listener_close (G_SOCKET_LISTENER (self->service));
      g_clear_object (&self->service);
      return NULL;
    }

  escaped = g_dbus_address_escape_value (path);
  self->client_address = g_strconcat ("unix:path=", escaped, NULL);
  write_address_file (self);
  g_socket_service_start (self->service);

  return g_steal_pointer (&self);
}

/**
 * ly_dbus_server_get_client_address:
 * @self: a [class@Ly.DBusServer]
 *
 * The address clients connect to (`unix:path=…`).
 *
 * Returns: the address
 *
 * Since: 1.0
 */
const char *
ly_dbus_server_get_client_address (LyDBusServer *self)
{
  g_return_val_if_fail (LY_IS_DBUS_SERVER (self), NULL);

  return self->client_address;
}

/**
 * ly_dbus_server_stop:
 * @self: a [class@Ly.DBusServer]
 *
 * Stops listening: the socket file and the address file are removed,
 * authentications in progress are ended.  Clients connected already
 * stay connected.
 *
 * Since: 1.0
 */
void
ly_dbus_server_stop (LyDBusServer *self)
{
  GHashTableIter iter;
  Pending *pending;

  g_return_if_fail (LY_IS_DBUS_SERVER (self));

  if (self->service == NULL)
    return;

  g_socket_service_stop (self->service);
  g_socket_listener_close (G_SOCKET_LISTENER (self->service));
  g_signal_handlers_disconnect_by_data (self->service, self);
  g_clear_object (&self->service);

  g_hash_table_iter_init (&iter, self->pending);
  while (g_hash_table_iter_next (&iter, (gpointer *) &pending, NULL))
    g_cancellable_cancel (pending->cancellable);

  if (self->socket_path != NULL)
    g_unlink (self->socket_path);
  remove_address_file (self);
}

/**
 * ly_dbus_server_find_address:
 *
 * The address of the private server a hub of this user serves on, as
 * it wrote it to `$XDG_RUNTIME_DIR/liteyuki-comm/address`, if that file
 * is there and private.
 *
 * Returns: (transfer full) (nullable): the address, or %NULL
 *
 * Since: 1.0
 */
char *
ly_dbus_server_find_address (void)
{
  g_autofree char *directory = default_directory ();
  g_autofree char *path = g_build_filename (directory, ADDRESS_FILE_NAME, NULL);
  g_autofree char *contents = NULL;

  /* only what this user wrote, in its private directory */
  if (!is_private_directory (directory))
    return NULL;
  if (!g_file_get_contents (path, &contents, NULL, NULL))
    return NULL;

  g_strstrip (contents);
  return contents[0] != '\0' ? g_steal_pointer (&contents) : NULL;
}

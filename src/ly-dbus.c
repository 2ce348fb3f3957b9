/* ly-dbus.c: the hub's storage and process table as D-Bus objects
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "config.h"

#include <string.h>
#include <unistd.h>

#include "ly-channel.h"
#include "ly-context-private.h"
#include "ly-dbus-generated.h"
#include "ly-dbus.h"
#include "ly-enums.h"
#include "ly-i18n-private.h"
#include "ly-registry.h"
#include "ly-storage-private.h"

/* An exported object: one skeleton per object and connection. */
typedef struct
{
  GObject                *object;       /* the LyStorage or LyProcessManager */
  GDBusConnection        *connection;
  GDBusInterfaceSkeleton *skeleton;
  gulong                  closed_id;
  gsize                   backlog;      /* bytes sent while its socket was full */
} Export;

/* What a D-Bus client that does not read may fall behind by before it is
 * disconnected: GDBus queues without a bound what it cannot write. */
#define MAX_CLIENT_BACKLOG (16 * 1024 * 1024)

static GQuark
exports_quark (void)
{
  return g_quark_from_static_string ("ly-dbus-exports");
}

static void
export_free (Export *item)
{
  g_signal_handler_disconnect (item->connection, item->closed_id);
  g_dbus_interface_skeleton_unexport_from_connection (item->skeleton, item->connection);
  g_signal_handlers_disconnect_by_data (item->skeleton, item->object);
  g_object_unref (item->skeleton);
  g_object_unref (item->connection);
  g_free (item);
}

static GPtrArray *
get_exports (GObject *object)
{
  GPtrArray *exports = g_object_get_qdata (object, exports_quark ());

  if (exports == NULL)
    {
      /* an object finalized while exported leaves D-Bus with it */
      exports = g_ptr_array_new_with_free_func ((GDestroyNotify) export_free);
      g_object_set_qdata_full (object, exports_quark (), exports, (GDestroyNotify) g_ptr_array_unref);
    }

  return exports;
}

static void unexport (GObject         *object,
                      GDBusConnection *connection);

static void
on_connection_closed (GDBusConnection *connection,
                      gboolean         remote_peer_vanished,
                      GError          *error,
                      GObject         *object)
{
  unexport (object, connection);
}

static gboolean
export (GObject                 *object,
        GDBusInterfaceSkeleton  *skeleton,
        GDBusConnection         *connection,
        const char              *path,
        GError                 **error)
{
  Export *item;

  if (!g_dbus_interface_skeleton_export (skeleton, connection, path, error))
    return FALSE;

  item = g_new0 (Export, 1);
  item->object = object;
  item->connection = g_object_ref (connection);
  item->skeleton = g_object_ref (skeleton);
  item->closed_id = g_signal_connect (connection, "closed", G_CALLBACK (on_connection_closed), object);
  g_ptr_array_add (get_exports (object), item);

  return TRUE;
}

static void
unexport (GObject         *object,
          GDBusConnection *connection)
{
  GPtrArray *exports = get_exports (object);

  for (guint i = 0; i < exports->len; i++)
    {
      Export *item = g_ptr_array_index (exports, i);

      if (item->connection == connection)
        {
          g_ptr_array_remove_index (exports, i);
          return;
        }
    }
}

/* Values D-Bus cannot carry ------------------------------------------------
 *
 * GVariant has maybe types, the unit type `()` and deeper nesting than
 * D-Bus (at most 32 arrays, 32 structures, 64 containers in all,
 * variants included).  Sending such a value failed: the reply of a Get
 * never came (the client waited for its timeout), a signal was dropped,
 * and a message the bus refused made it disconnect the hub.  Such a
 * value crosses D-Bus in a wrapped form instead, and back. */

#define WRAPPED_TYPE "(ssay)"

/* Room for the envelope around a value: the `a{sv}` of GetAll, the
 * `av` of Changed. */
#define ENVELOPE_ARRAYS  1
#define ENVELOPE_STRUCTS 1
#define ENVELOPE_TOTAL   3

#define DBUS_MAX_ARRAYS  32
#define DBUS_MAX_STRUCTS 32
#define DBUS_MAX_TOTAL   64

/* Whether the type at *p (advanced past it) fits D-Bus at this depth;
 * *has_variant tells whether the values must be looked into too. */
static gboolean
type_fits (const char **p,
           guint        arrays,
           guint        structs,
           guint        total,
           gboolean    *has_variant)
{
  char c = *(*p)++;

  switch (c)
    {
    case 'm':
      return FALSE;
    case 'a':
      return arrays < DBUS_MAX_ARRAYS && total < DBUS_MAX_TOTAL &&
             type_fits (p, arrays + 1, structs, total + 1, has_variant);
    case '(':
    case '{':
      if (structs >= DBUS_MAX_STRUCTS || total >= DBUS_MAX_TOTAL || **p == ')')
        return FALSE;   /* too deep, or `()`, which D-Bus does not have */
      while (**p != ')' && **p != '}')
        if (!type_fits (p, arrays, structs + 1, total + 1, has_variant))
          return FALSE;
      (*p)++;
      return TRUE;
    case 'v':
      *has_variant = TRUE;
      return TRUE;
    default:
      return TRUE;
    }
}

static gboolean
value_fits (GVariant *value,
            guint     arrays,
            guint     structs,
            guint     total)
{
  const char *type = g_variant_get_type_string (value);
  gboolean has_variant = FALSE;
  GVariantIter iter;
  GVariant *child;

  if (!type_fits (&type, arrays, structs, total, &has_variant))
    return FALSE;
  if (!has_variant)
    return TRUE;

  if (g_variant_is_of_type (value, G_VARIANT_TYPE_VARIANT))
    {
      g_autoptr(GVariant) inner = g_variant_get_variant (value);

      return total < DBUS_MAX_TOTAL && value_fits (inner, arrays, structs, total + 1);
    }

  /* a container holding variants: each child, one level down */
  if (g_variant_is_of_type (value, G_VARIANT_TYPE_ARRAY))
    arrays++;
  else
    structs++;
  total++;
  g_variant_iter_init (&iter, value);
  while ((child = g_variant_iter_next_value (&iter)) != NULL)
    {
      gboolean fits = value_fits (child, arrays, structs, total);

      g_variant_unref (child);
      if (!fits)
        return FALSE;
    }

  return TRUE;
}

static gboolean
is_wrapped_form (GVariant *value)
{
  const char *tag;

  if (!g_variant_is_of_type (value, G_VARIANT_TYPE (WRAPPED_TYPE)))
    return FALSE;
  g_variant_get_child (value, 0, "&s", &tag);
  return g_str_equal (tag, LY_DBUS_WRAPPED_VALUE);
}

/**
 * ly_dbus_value_to_wire:
 * @value: a value; a floating reference is sunk
 *
 * @value as it crosses D-Bus: itself when D-Bus can carry it, or else
 * the wrapped form `(ssay)`: the tag %LY_DBUS_WRAPPED_VALUE, the value's
 * type string, and its serialized bytes in normal form, little-endian
 * (what g_variant_get_data() gives on a little-endian machine).  That is
 * a value of a maybe type (`@mv nothing`, Python's `None` in a dict),
 * the unit type `()`, a value nested deeper than D-Bus allows (32
 * arrays, 32 structures, 64 containers in all, with room left for the
 * envelope of a signal), and a value that happens to look like the
 * wrapped form itself.  The hub uses it in every method reply and
 * signal of `icu.liteyuki.Comm1.Storage`.
 *
 * Returns: (transfer full): the value to put in a D-Bus `v`
 *
 * Since: 1.0
 */
GVariant *
ly_dbus_value_to_wire (GVariant *value)
{
  g_autoptr(GVariant) normal = NULL;
  g_autoptr(GBytes) bytes = NULL;

  g_return_val_if_fail (value != NULL, NULL);

  if (!is_wrapped_form (value) &&
      value_fits (value, ENVELOPE_ARRAYS, ENVELOPE_STRUCTS, ENVELOPE_TOTAL))
    return g_variant_ref_sink (value);

  normal = g_variant_get_normal_form (value);
#if G_BYTE_ORDER == G_BIG_ENDIAN
  {
    GVariant *swapped = g_variant_byteswap (normal);

    g_variant_unref (normal);
    normal = swapped;
  }
#endif
  bytes = g_variant_get_data_as_bytes (normal);
  return g_variant_ref_sink (g_variant_new ("(s@s@ay)", LY_DBUS_WRAPPED_VALUE,
                                            g_variant_new_string (g_variant_get_type_string (value)),
                                            g_variant_new_from_bytes (G_VARIANT_TYPE_BYTESTRING, bytes, TRUE)));
}

/**
 * ly_dbus_value_from_wire:
 * @value: what a D-Bus `v` held; a floating reference is sunk
 * @error: return location for a #GError
 *
 * The value a D-Bus peer meant: @value itself, or the value in its
 * wrapped form (see ly_dbus_value_to_wire()).  A wrapped form with a
 * type string that is not a definite type, or bytes that are not that
 * type in normal form, fails with %G_DBUS_ERROR_INVALID_ARGS.
 *
 * Returns: (transfer full): the value, or %NULL with @error set
 *
 * Since: 1.0
 */
GVariant *
ly_dbus_value_from_wire (GVariant  *value,
                         GError   **error)
{
  g_autoptr(GVariant) data = NULL;
  g_autoptr(GBytes) bytes = NULL;
  g_autoptr(GVariant) inner = NULL;
  const char *type;

  g_return_val_if_fail (value != NULL, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  if (!is_wrapped_form (value))
    return g_variant_ref_sink (value);

  g_variant_get (value, "(&s&s@ay)", NULL, &type, &data);
  if (!g_variant_type_string_is_valid (type) || !g_variant_type_is_definite (G_VARIANT_TYPE (type)))
    {
      g_set_error (error, G_DBUS_ERROR, G_DBUS_ERROR_INVALID_ARGS,
                   _("“%s” is not the type of a value"), type);
      return NULL;
    }

  bytes = g_variant_get_data_as_bytes (data);
  inner = g_variant_ref_sink (g_variant_new_from_bytes (G_VARIANT_TYPE (type), bytes, FALSE));
  if (!g_variant_is_normal_form (inner))
    {
      g_set_error (error, G_DBUS_ERROR, G_DBUS_ERROR_INVALID_ARGS,
                   _("The wrapped value is not a value of type “%s” in normal form"), type);
      return NULL;
    }
#if G_BYTE_ORDER == G_BIG_ENDIAN
  {
    GVariant *swapped = g_variant_ref_sink (g_variant_byteswap (inner));

    g_variant_unref (inner);
    inner = swapped;
  }
#endif

  return g_steal_pointer (&inner);
}

/* The value inside a D-Bus `v` argument, in the form D-Bus carried it. */
static GVariant *
unwrap (GVariant  *value,
        GError   **error)
{
  g_autoptr(GVariant) inner = g_variant_is_of_type (value, G_VARIANT_TYPE_VARIANT)
                              ? g_variant_get_variant (value) : g_variant_ref (value);

  return ly_dbus_value_from_wire (inner, error);
}

/* A value for a D-Bus `v`, wrapped if D-Bus cannot carry it. */
static GVariant *
to_wire_variant (GVariant *value)
{
  g_autoptr(GVariant) wire = ly_dbus_value_to_wire (value);

  return g_variant_new_variant (wire);
}

/* A D-Bus `av` of zero or one element: the optional value. */
static gboolean
unwrap_optional (GVariant  *array,
                 GVariant **value,
                 GError   **error)
{
  gsize n = g_variant_n_children (array);
  g_autoptr(GVariant) child = NULL;

  if (n > 1)
    {
      g_set_error (error, G_DBUS_ERROR, G_DBUS_ERROR_INVALID_ARGS,
                   _("An optional value is an array of zero or one variant, not of %zu"), n);
      return FALSE;
    }

  child = n == 1 ? g_variant_get_child_value (array, 0) : NULL;
  *value = NULL;
  if (child != NULL && (*value = unwrap (child, error)) == NULL)
    return FALSE;
  return TRUE;
}

static GVariant *
wrap_optional (GVariant *value)
{
  GVariant *wrapped = value != NULL ? to_wire_variant (value) : NULL;

  return g_variant_new_array (G_VARIANT_TYPE_VARIANT, &wrapped, value != NULL ? 1 : 0);
}

/* Storage ----------------------------------------------------------------- */

static gboolean
handle_set (LyDBusStorage *skeleton,
            GDBusMethodInvocation *invocation,
            const char *key,
            GVariant *value,
            LyStorage *storage)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(GVariant) inner = unwrap (value, &error);

  if (inner != NULL && ly_storage_set (storage, key, inner, &error))
    ly_dbus_storage_complete_set (skeleton, invocation);
  else
    g_dbus_method_invocation_return_gerror (invocation, error);
  return TRUE;
}

static gboolean
handle_get (LyDBusStorage *skeleton,
            GDBusMethodInvocation *invocation,
            const char *key,
            LyStorage *storage)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(GVariant) value = ly_storage_get (storage, key, &error);

  if (value != NULL)
    ly_dbus_storage_complete_get (skeleton, invocation, to_wire_variant (value));
  else if (error != NULL)
    g_dbus_method_invocation_return_gerror (invocation, error);
  else
    g_dbus_method_invocation_return_error (invocation, LY_STORAGE_ERROR, LY_STORAGE_ERROR_NO_SUCH_KEY,
                                           _("There is no key “%s”"), key);
  return TRUE;
}

static gboolean
handle_delete (LyDBusStorage *skeleton,
               GDBusMethodInvocation *invocation,
               const char *key,
               LyStorage *storage)
{
  g_autoptr(GError) error = NULL;
  gboolean existed = FALSE;

  if (ly_storage_delete_existed (storage, key, &existed, &error))
    ly_dbus_storage_complete_delete (skeleton, invocation, existed);
  else
    g_dbus_method_invocation_return_gerror (invocation, error);
  return TRUE;
}

static gboolean
handle_contains (LyDBusStorage *skeleton,
                 GDBusMethodInvocation *invocation,
                 const char *key,
                 LyStorage *storage)
{
  g_autoptr(GError) error = NULL;
  gboolean contains = ly_storage_contains (storage, key, &error);

  if (error == NULL)
    ly_dbus_storage_complete_contains (skeleton, invocation, contains);
  else
    g_dbus_method_invocation_return_gerror (invocation, error);
  return TRUE;
}

static gboolean
handle_list_keys (LyDBusStorage *skeleton,
                  GDBusMethodInvocation *invocation,
                  LyStorage *storage)
{
  g_autoptr(GError) error = NULL;
  g_auto(GStrv) keys = ly_storage_list_keys (storage, &error);

  if (keys != NULL)
    ly_dbus_storage_complete_list_keys (skeleton, invocation, (const char * const *) keys);
  else
    g_dbus_method_invocation_return_gerror (invocation, error);
  return TRUE;
}

/* Every value in the form D-Bus carries; a reply the bus would refuse
 * (and disconnect the hub for) is an error instead. */
static GVariant *
get_all_to_wire (GVariant  *all,
                 GError   **error)
{
  GVariantBuilder builder;
  GVariantIter iter;
  const char *key;
  GVariant *value;
  gsize total = 0;

  g_variant_builder_init (&builder, G_VARIANT_TYPE_VARDICT);
  g_variant_iter_init (&iter, all);
  while (g_variant_iter_next (&iter, "{&sv}", &key, &value))
    {
      g_autoptr(GVariant) wire = ly_dbus_value_to_wire (value);

      total += strlen (key) + g_variant_get_size (wire) + 16;
      g_variant_builder_add (&builder, "{sv}", key, wire);
      g_variant_unref (value);
    }

  if (total > LY_DBUS_MAX_MESSAGE_SIZE)
    {
      g_variant_builder_clear (&builder);
      g_set_error (error, LY_STORAGE_ERROR, LY_STORAGE_ERROR_TOO_LARGE,
                   _("The whole storage (%zu bytes) is more than one D-Bus message may carry (%d): read it with ListKeys and Get"),
                   total, LY_DBUS_MAX_MESSAGE_SIZE);
      return NULL;
    }

  return g_variant_ref_sink (g_variant_builder_end (&builder));
}

static gboolean
handle_get_all (LyDBusStorage *skeleton,
                GDBusMethodInvocation *invocation,
                LyStorage *storage)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(GVariant) all = ly_storage_get_all (storage, &error);
  g_autoptr(GVariant) wire = all != NULL ? get_all_to_wire (all, &error) : NULL;

  if (wire != NULL)
    ly_dbus_storage_complete_get_all (skeleton, invocation, wire);
  else
    g_dbus_method_invocation_return_gerror (invocation, error);
  return TRUE;
}

static gboolean
handle_compare_and_set (LyDBusStorage *skeleton,
                        GDBusMethodInvocation *invocation,
                        const char *key,
                        GVariant *expected_array,
                        GVariant *value_array,
                        LyStorage *storage)
{
  g_autoptr(GVariant) expected = NULL;
  g_autoptr(GVariant) value = NULL;
  g_autoptr(GError) error = NULL;
  gboolean swapped = FALSE;

  if (unwrap_optional (expected_array, &expected, &error) &&
      unwrap_optional (value_array, &value, &error))
    swapped = ly_storage_compare_and_set (storage, key, expected, value, &error);

  if (error == NULL)
    ly_dbus_storage_complete_compare_and_set (skeleton, invocation, swapped);
  else
    g_dbus_method_invocation_return_gerror (invocation, error);
  return TRUE;
}

static gboolean
handle_publish (LyDBusStorage *skeleton,
                GDBusMethodInvocation *invocation,
                const char *topic,
                GVariant *value,
                LyStorage *storage)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(GVariant) inner = unwrap (value, &error);

  if (inner != NULL && ly_storage_publish (storage, topic, inner, &error))
    ly_dbus_storage_complete_publish (skeleton, invocation);
  else
    g_dbus_method_invocation_return_gerror (invocation, error);
  return TRUE;
}

/* Whether @item's client keeps up: a socket the kernel cannot take more
 * for means its reader is behind, and what is sent meanwhile waits in
 * GDBus's queue; past MAX_CLIENT_BACKLOG the client is disconnected (on
 * the session bus the peer is the bus, which reads). */
static gboolean
client_keeps_up (Export *item,
                 gsize   size)
{
  GIOStream *stream = g_dbus_connection_get_stream (item->connection);
  GSocket *socket;

  /* a message bus reads what it is sent: no poll per signal for it */
  if (g_dbus_connection_get_unique_name (item->connection) != NULL || !G_IS_SOCKET_CONNECTION (stream))
    return TRUE;
  socket = g_socket_connection_get_socket (G_SOCKET_CONNECTION (stream));
  if (g_socket_condition_check (socket, G_IO_OUT) & G_IO_OUT)
    {
      item->backlog = 0;
      return TRUE;
    }

  item->backlog += size;
  if (item->backlog <= MAX_CLIENT_BACKLOG)
    return TRUE;

  g_warning (_("A D-Bus client fell more than %d MiB behind without reading: disconnected"),
             MAX_CLIENT_BACKLOG / (1024 * 1024));
  g_dbus_connection_close (item->connection, NULL, NULL, NULL);
  return FALSE;
}

/* Every change and publication becomes a D-Bus signal on every export
 * whose client keeps up. */
static void
storage_monitor (LyStorage          *storage,
                 LyStorageEventKind  kind,
                 const char         *name,
                 GVariant           *value,
                 gpointer            user_data)
{
  GPtrArray *exports = get_exports (G_OBJECT (storage));
  gsize size = (name != NULL ? strlen (name) : 0) + (value != NULL ? g_variant_get_size (value) : 0) + 64;

  for (guint i = 0; i < exports->len; i++)
    {
      Export *item = g_ptr_array_index (exports, i);
      LyDBusStorage *skeleton = LY_DBUS_STORAGE (item->skeleton);

      if (!client_keeps_up (item, size))
        continue;

      if (kind == LY_STORAGE_EVENT_PUBLISHED)
        ly_dbus_storage_emit_published (skeleton, name, to_wire_variant (value));
      else if (kind == LY_STORAGE_EVENT_CHANGED)
        ly_dbus_storage_emit_changed (skeleton, name, wrap_optional (value));
      else
        ly_dbus_storage_emit_changes_missed (skeleton);
    }
}

/**
 * ly_storage_export:
 * @self: a [class@Ly.Storage], the authoritative one (not a child's proxy)
 * @connection: a #GDBusConnection
 * @error: return location for a #GError
 *
 * Exports @self as `icu.liteyuki.Comm1.Storage` at
 * %LY_DBUS_STORAGE_PATH on @connection, until the connection closes or
 * ly_storage_unexport().  Errors cross D-Bus in their registered domains
 * (`icu.liteyuki.Comm1.Error.Storage.InvalidKey`...).
 *
 * Returns: %TRUE on success
 *
 * Since: 1.0
 */
gboolean
ly_storage_export (LyStorage        *self,
                   GDBusConnection  *connection,
                   GError          **error)
{
  g_autoptr(LyDBusStorage) skeleton = NULL;
  GPtrArray *exports;

  g_return_val_if_fail (LY_IS_STORAGE (self), FALSE);
  g_return_val_if_fail (G_IS_DBUS_CONNECTION (connection), FALSE);
  g_return_val_if_fail (!ly_storage_is_proxy (self), FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  skeleton = ly_dbus_storage_skeleton_new ();
  g_signal_connect (skeleton, "handle-set", G_CALLBACK (handle_set), self);
  g_signal_connect (skeleton, "handle-get", G_CALLBACK (handle_get), self);
  g_signal_connect (skeleton, "handle-delete", G_CALLBACK (handle_delete), self);
  g_signal_connect (skeleton, "handle-contains", G_CALLBACK (handle_contains), self);
  g_signal_connect (skeleton, "handle-list-keys", G_CALLBACK (handle_list_keys), self);
  g_signal_connect (skeleton, "handle-get-all", G_CALLBACK (handle_get_all), self);
  g_signal_connect (skeleton, "handle-compare-and-set", G_CALLBACK (handle_compare_and_set), self);
  g_signal_connect (skeleton, "handle-publish", G_CALLBACK (handle_publish), self);

  exports = get_exports (G_OBJECT (self));
  if (!export (G_OBJECT (self), G_DBUS_INTERFACE_SKELETON (skeleton), connection, LY_DBUS_STORAGE_PATH, error))
    return FALSE;
  if (exports->len == 1)
    ly_storage_add_monitor (self, storage_monitor, NULL);

  return TRUE;
}

/**
 * ly_storage_unexport:
 * @self: a [class@Ly.Storage]
 * @connection: a #GDBusConnection it was exported on
 *
 * Undoes ly_storage_export().
 *
 * Since: 1.0
 */
void
ly_storage_unexport (LyStorage       *self,
                     GDBusConnection *connection)
{
  g_return_if_fail (LY_IS_STORAGE (self));
  g_return_if_fail (G_IS_DBUS_CONNECTION (connection));

  unexport (G_OBJECT (self), connection);
  if (get_exports (G_OBJECT (self))->len == 0)
    ly_storage_remove_monitor (self, storage_monitor, NULL);
}

/* Manager ----------------------------------------------------------------- */

static GVariant *
process_table (LyProcessManager *manager)
{
  g_auto(GStrv) names = ly_process_manager_list_targets (manager);
  g_autoptr(GEnumClass) states = g_type_class_ref (LY_TYPE_PROCESS_STATE);
  GVariantBuilder builder;

  g_variant_builder_init (&builder, G_VARIANT_TYPE ("a(sisu)"));
  for (guint i = 0; names[i] != NULL; i++)
    {
      LyProcessState state = ly_process_manager_get_state (manager, names[i], NULL);

      g_variant_builder_add (&builder, "(sisu)", names[i],
                             (gint32) ly_process_manager_get_pid (manager, names[i], NULL),
                             g_enum_get_value (states, state)->value_nick,
                             ly_process_manager_get_restart_count (manager, names[i], NULL));
    }

  return g_variant_builder_end (&builder);
}

static void
refresh_properties (LyProcessManager *manager,
                    LyDBusManager    *skeleton)
{
  g_auto(GStrv) channels = ly_list_channels ();

  ly_dbus_manager_set_processes (skeleton, process_table (manager));
  ly_dbus_manager_set_channels (skeleton, (const char * const *) channels);
}

static void
on_state_changed (LyProcessManager *manager,
                  const char       *name,
                  LyProcessState    state,
                  LyDBusManager    *skeleton)
{
  refresh_properties (manager, skeleton);
}

static void
on_process_started (LyProcessManager *manager,
                    const char       *name,
                    int               pid,
                    LyDBusManager    *skeleton)
{
  refresh_properties (manager, skeleton);
  ly_dbus_manager_emit_process_started (skeleton, name, pid);
}

static void
on_process_exited (LyProcessManager *manager,
                   const char       *name,
                   int               status,
                   LyExitReason      reason,
                   LyDBusManager    *skeleton)
{
  g_autoptr(GEnumClass) reasons = g_type_class_ref (LY_TYPE_EXIT_REASON);
  GEnumValue *value = g_enum_get_value (reasons, reason);
  gboolean restarting = ly_process_manager_get_state (manager, name, NULL) == LY_PROCESS_STATE_BACKOFF;

  refresh_properties (manager, skeleton);
  ly_dbus_manager_emit_process_exited (skeleton, name, status, value->value_nick, restarting);
}

static gboolean
handle_list_processes (LyDBusManager         *skeleton,
                       GDBusMethodInvocation *invocation,
                       LyProcessManager      *manager)
{
  ly_dbus_manager_complete_list_processes (skeleton, invocation, process_table (manager));
  return TRUE;
}

static gboolean
handle_start (LyDBusManager         *skeleton,
              GDBusMethodInvocation *invocation,
              const char            *name,
              LyProcessManager      *manager)
{
  g_autoptr(GError) error = NULL;

  if (ly_process_manager_start (manager, name, &error))
    ly_dbus_manager_complete_start (skeleton, invocation);
  else
    g_dbus_method_invocation_return_gerror (invocation, error);
  return TRUE;
}

static void
stopped_for_dbus (GObject      *source,
                  GAsyncResult *result,
                  gpointer      user_data)
{
  GDBusMethodInvocation *invocation = user_data;
  g_autoptr(GError) error = NULL;

  if (ly_process_manager_stop_finish (LY_PROCESS_MANAGER (source), result, &error))
    g_dbus_method_invocation_return_value (invocation, NULL);
  else
    g_dbus_method_invocation_return_gerror (invocation, error);
}

static void
restarted_for_dbus (GObject      *source,
                    GAsyncResult *result,
                    gpointer      user_data)
{
  GDBusMethodInvocation *invocation = user_data;
  g_autoptr(GError) error = NULL;

  if (ly_process_manager_restart_finish (LY_PROCESS_MANAGER (source), result, &error))
    g_dbus_method_invocation_return_value (invocation, NULL);
  else
    g_dbus_method_invocation_return_gerror (invocation, error);
}

static gboolean
handle_stop (LyDBusManager         *skeleton,
             GDBusMethodInvocation *invocation,
             const char            *name,
             LyProcessManager      *manager)
{
  ly_process_manager_stop_async (manager, name, NULL, stopped_for_dbus, invocation);
  return TRUE;
}

static gboolean
handle_restart (LyDBusManager         *skeleton,
                GDBusMethodInvocation *invocation,
                const char            *name,
                LyProcessManager      *manager)
{
  ly_process_manager_restart_async (manager, name, NULL, restarted_for_dbus, invocation);
  return TRUE;
}

static gboolean
handle_send (LyDBusManager         *skeleton,
             GDBusMethodInvocation *invocation,
             const char            *channel_name,
             GVariant              *value,
             LyProcessManager      *manager)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(GVariant) inner = unwrap (value, &error);
  LyChannel *channel = ly_get_channel (channel_name);

  if (inner == NULL)
    g_dbus_method_invocation_return_gerror (invocation, error);
  else if (channel == NULL)
    g_dbus_method_invocation_return_error (invocation, G_DBUS_ERROR, G_DBUS_ERROR_INVALID_ARGS,
                                           _("There is no channel named “%s”"), channel_name);
  else if (ly_channel_send (channel, inner, &error))
    ly_dbus_manager_complete_send (skeleton, invocation);
  else
    g_dbus_method_invocation_return_gerror (invocation, error);
  return TRUE;
}

/* Receive: up to max_count messages, waiting up to timeout_msec for the
 * first.  The wait does not hold the hub: it is a receive_async. */

#define RECEIVE_MAX_COUNT   4096
#define RECEIVE_MAX_TIMEOUT 60000

typedef struct
{
  LyDBusManager         *skeleton;
  GDBusMethodInvocation *invocation;
  LyChannel             *channel;
  GCancellable          *cancellable;
  GSource               *timer;
  guint                  max_count;
} ReceiveCall;

static void
receive_call_free (ReceiveCall *call)
{
  g_source_destroy (call->timer);
  g_source_unref (call->timer);
  g_object_unref (call->cancellable);
  g_object_unref (call->channel);
  g_object_unref (call->skeleton);
  g_free (call);
}

/* Takes what is queued, up to @max_count, without waiting. */
static void
take_queued (LyChannel       *channel,
             guint            max_count,
             GVariantBuilder *builder,
             guint           *count)
{
  GVariant *message;

  while (*count < max_count && (message = ly_channel_receive_timeout (channel, 0, NULL, NULL)) != NULL)
    {
      g_autoptr(GVariant) wire = ly_dbus_value_to_wire (message);

      g_variant_builder_add (builder, "v", wire);
      g_variant_unref (message);
      (*count)++;
    }
}

static void
received_for_dbus (GObject      *source,
                   GAsyncResult *result,
                   gpointer      user_data)
{
  ReceiveCall *call = user_data;
  g_autoptr(GError) error = NULL;
  g_autoptr(GVariant) first = ly_channel_receive_finish (call->channel, result, &error);
  GVariantBuilder builder;
  guint count = 0;

  if (first == NULL && !g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
    {
      g_dbus_method_invocation_return_gerror (call->invocation, error);
      receive_call_free (call);
      return;
    }

  g_variant_builder_init (&builder, G_VARIANT_TYPE ("av"));
  if (first != NULL)
    {
      g_autoptr(GVariant) wire = ly_dbus_value_to_wire (first);

      g_variant_builder_add (&builder, "v", wire);
      count++;
      take_queued (call->channel, call->max_count, &builder, &count);
    }
  ly_dbus_manager_complete_receive (call->skeleton, call->invocation, g_variant_builder_end (&builder));
  receive_call_free (call);
}

static gboolean
handle_receive (LyDBusManager         *skeleton,
                GDBusMethodInvocation *invocation,
                const char            *channel_name,
                guint                  max_count,
                int                    timeout_msec,
                LyProcessManager      *manager)
{
  LyChannel *channel = ly_get_channel (channel_name);
  GVariantBuilder builder;
  ReceiveCall *call;
  guint count = 0;

  if (channel == NULL)
    {
      g_dbus_method_invocation_return_error (invocation, G_DBUS_ERROR, G_DBUS_ERROR_INVALID_ARGS,
                                             _("There is no channel named “%s”"), channel_name);
      return TRUE;
    }
  if (max_count < 1 || max_count > RECEIVE_MAX_COUNT || timeout_msec < 0 || timeout_msec > RECEIVE_MAX_TIMEOUT)
    {
      g_dbus_method_invocation_return_error (invocation, G_DBUS_ERROR, G_DBUS_ERROR_INVALID_ARGS,
                                             _("Receive takes 1 to %d messages and waits 0 to %d ms"),
                                             RECEIVE_MAX_COUNT, RECEIVE_MAX_TIMEOUT);
      return TRUE;
    }
  if (ly_channel_get_mode (channel) == LY_CHANNEL_MODE_PASSIVE)
    {
      g_dbus_method_invocation_return_error (invocation, LY_CHANNEL_ERROR, LY_CHANNEL_ERROR_MODE,
                                             _("The hub’s own handlers read channel “%s”"), channel_name);
      return TRUE;
    }

  g_variant_builder_init (&builder, G_VARIANT_TYPE ("av"));
  take_queued (channel, max_count, &builder, &count);
  if (count > 0 || timeout_msec == 0)
    {
      ly_dbus_manager_complete_receive (skeleton, invocation, g_variant_builder_end (&builder));
      return TRUE;
    }
  g_variant_builder_clear (&builder);

  call = g_new0 (ReceiveCall, 1);
  call->skeleton = g_object_ref (skeleton);
  call->invocation = invocation;
  call->channel = g_object_ref (channel);
  call->cancellable = g_cancellable_new ();
  call->max_count = max_count;
  call->timer = ly_context_cancel_after (g_main_context_get_thread_default (), call->cancellable,
                                         (guint) timeout_msec, "[liteyuki-comm] D-Bus Receive timeout");
  ly_channel_receive_async (channel, call->cancellable, received_for_dbus, call);
  return TRUE;
}

/**
 * ly_process_manager_export:
 * @self: a [class@Ly.ProcessManager]
 * @connection: a #GDBusConnection
 * @error: return location for a #GError
 *
 * Exports @self as `icu.liteyuki.Comm1.Manager` at
 * %LY_DBUS_MANAGER_PATH on @connection: the process table (name, pid,
 * state, restarts), the channel names, Start, Stop, Restart and Send, and
 * signals for process starts and exits.
 *
 * Returns: %TRUE on success
 *
 * Since: 1.0
 */
gboolean
ly_process_manager_export (LyProcessManager  *self,
                           GDBusConnection   *connection,
                           GError           **error)
{
  g_autoptr(LyDBusManager) skeleton = NULL;

  g_return_val_if_fail (LY_IS_PROCESS_MANAGER (self), FALSE);
  g_return_val_if_fail (G_IS_DBUS_CONNECTION (connection), FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  skeleton = ly_dbus_manager_skeleton_new ();
  refresh_properties (self, skeleton);
  g_signal_connect (skeleton, "handle-list-processes", G_CALLBACK (handle_list_processes), self);
  g_signal_connect (skeleton, "handle-start", G_CALLBACK (handle_start), self);
  g_signal_connect (skeleton, "handle-stop", G_CALLBACK (handle_stop), self);
  g_signal_connect (skeleton, "handle-restart", G_CALLBACK (handle_restart), self);
  g_signal_connect (skeleton, "handle-send", G_CALLBACK (handle_send), self);
  g_signal_connect (skeleton, "handle-receive", G_CALLBACK (handle_receive), self);

  if (!export (G_OBJECT (self), G_DBUS_INTERFACE_SKELETON (skeleton), connection, LY_DBUS_MANAGER_PATH, error))
    return FALSE;

  g_signal_connect_object (self, "state-changed", G_CALLBACK (on_state_changed), skeleton, 0);
  g_signal_connect_object (self, "process-started", G_CALLBACK (on_process_started), skeleton, 0);
  g_signal_connect_object (self, "process-exited", G_CALLBACK (on_process_exited), skeleton, 0);

  return TRUE;
}

/**
 * ly_process_manager_unexport:
 * @self: a [class@Ly.ProcessManager]
 * @connection: a #GDBusConnection it was exported on
 *
 * Undoes ly_process_manager_export().
 *
 * Since: 1.0
 */
void
ly_process_manager_unexport (LyProcessManager *self,
                             GDBusConnection  *connection)
{
  g_return_if_fail (LY_IS_PROCESS_MANAGER (self));
  g_return_if_fail (G_IS_DBUS_CONNECTION (connection));

  unexport (G_OBJECT (self), connection);
}

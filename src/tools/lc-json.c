/* lc-json.c: GVariant as JSON, for --json
 *
 * Numbers stay numbers, strings, object paths and signatures become
 * strings, byte strings (ay) strings when they are UTF-8, dictionaries
 * with string keys objects, other arrays and tuples arrays, variants
 * their value, maybes their value or null.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "lc-common.h"

#include <math.h>

static void append_value (GString *out, GVariant *value);

static void
append_string (GString    *out,
               const char *text)
{
  g_string_append_c (out, '"');
  for (const char *p = text; *p != '\0'; p++)
    {
      guchar c = (guchar) *p;

      switch (c)
        {
        case '"':  g_string_append (out, "\\\""); break;
        case '\\': g_string_append (out, "\\\\"); break;
        case '\n': g_string_append (out, "\\n"); break;
        case '\r': g_string_append (out, "\\r"); break;
        case '\t': g_string_append (out, "\\t"); break;
        default:
          if (c < 0x20)
            g_string_append_printf (out, "\\u%04x", c);
          else
            g_string_append_c (out, (char) c);
        }
    }
  g_string_append_c (out, '"');
}

static gboolean
is_string_keyed_dict (GVariant *value)
{
  const GVariantType *type = g_variant_get_type (value);

  return g_variant_type_is_dict_entry (g_variant_type_element (type)) &&
         g_variant_type_equal (g_variant_type_key (g_variant_type_element (type)), G_VARIANT_TYPE_STRING);
}

static void
append_children (GString  *out,
                 GVariant *value,
                 gboolean  object)
{
  gsize n = g_variant_n_children (value);

  g_string_append_c (out, object ? '{' : '[');
  for (gsize i = 0; i < n; i++)
    {
      g_autoptr(GVariant) child = g_variant_get_child_value (value, i);

      if (i > 0)
        g_string_append_c (out, ',');
      if (object)
        {
          g_autoptr(GVariant) key = g_variant_get_child_value (child, 0);
          g_autoptr(GVariant) item = g_variant_get_child_value (child, 1);

          append_string (out, g_variant_get_string (key, NULL));
          g_string_append_c (out, ':');
          append_value (out, item);
        }
      else
        append_value (out, child);
    }
  g_string_append_c (out, object ? '}' : ']');
}

static void
append_value (GString  *out,
              GVariant *value)
{
  switch (g_variant_classify (value))
    {
    case G_VARIANT_CLASS_BOOLEAN:
      g_string_append (out, g_variant_get_boolean (value) ? "true" : "false");
      break;
    case G_VARIANT_CLASS_BYTE:
      g_string_append_printf (out, "%u", g_variant_get_byte (value));
      break;
    case G_VARIANT_CLASS_INT16:
      g_string_append_printf (out, "%d", g_variant_get_int16 (value));
      break;
    case G_VARIANT_CLASS_UINT16:
      g_string_append_printf (out, "%u", g_variant_get_uint16 (value));
      break;
    case G_VARIANT_CLASS_INT32:
      g_string_append_printf (out, "%d", g_variant_get_int32 (value));
      break;
    case G_VARIANT_CLASS_HANDLE:
      g_string_append_printf (out, "%d", g_variant_get_handle (value));
      break;
    case G_VARIANT_CLASS_UINT32:
      g_string_append_printf (out, "%u", g_variant_get_uint32 (value));
      break;
    case G_VARIANT_CLASS_INT64:
      g_string_append_printf (out, "%" G_GINT64_FORMAT, g_variant_get_int64 (value));
      break;
    case G_VARIANT_CLASS_UINT64:
      g_string_append_printf (out, "%" G_GUINT64_FORMAT, g_variant_get_uint64 (value));
      break;
    case G_VARIANT_CLASS_DOUBLE:
      {
        char buffer[G_ASCII_DTOSTR_BUF_SIZE];
        double d = g_variant_get_double (value);

        /* JSON has no NaN nor infinity */
        if (isfinite (d))
          g_string_append (out, g_ascii_dtostr (buffer, sizeof buffer, d));
        else
          g_string_append (out, "null");
      }
      break;
    case G_VARIANT_CLASS_STRING:
    case G_VARIANT_CLASS_OBJECT_PATH:
    case G_VARIANT_CLASS_SIGNATURE:
      append_string (out, g_variant_get_string (value, NULL));
      break;
    case G_VARIANT_CLASS_VARIANT:
      {
        g_autoptr(GVariant) inner = g_variant_get_variant (value);
        append_value (out, inner);
      }
      break;
    case G_VARIANT_CLASS_MAYBE:
      {
        g_autoptr(GVariant) inner = g_variant_get_maybe (value);

        if (inner != NULL)
          append_value (out, inner);
        else
          g_string_append (out, "null");
      }
      break;
    case G_VARIANT_CLASS_ARRAY:
      if (g_variant_is_of_type (value, G_VARIANT_TYPE_BYTESTRING))
        {
          gsize size;
          const char *bytes = g_variant_get_fixed_array (value, &size, 1);

          if (size > 0 && bytes[size - 1] == '\0' && g_utf8_validate (bytes, size - 1, NULL))
            {
              append_string (out, bytes);
              break;
            }
        }
      append_children (out, value, is_string_keyed_dict (value));
      break;
    case G_VARIANT_CLASS_TUPLE:
    case G_VARIANT_CLASS_DICT_ENTRY:
    default:
      append_children (out, value, FALSE);
      break;
    }
}

char *
lc_variant_to_json (GVariant *value)
{
  GString *out = g_string_new (NULL);

  append_value (out, value);
  return g_string_free (out, FALSE);
}

/* A string as a JSON string. */
char *
lc_string_to_json (const char *text)
{
  GString *out = g_string_new (NULL);

  append_string (out, text);
  return g_string_free (out, FALSE);
}

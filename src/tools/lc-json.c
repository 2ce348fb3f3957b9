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
#include <string.h>

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

/* JSON in --------------------------------------------------------------------
 *
 * With --json, values given on the command line are JSON: an object is an
 * a{sv}, an array an av, a string s, an integer x (t beyond int64), any
 * other number d, true and false b, null @mv nothing.  Nesting is bounded
 * as GVariant's own is (64 levels). */

#define JSON_MAX_DEPTH 64

typedef struct
{
  const char *p;
  GError    **error;
} JsonReader;

static GVariant *read_json_value (JsonReader *reader,
                                  guint       depth);

static gboolean G_GNUC_PRINTF (2, 3)
json_error (JsonReader *reader,
            const char *format,
            ...)
{
  g_autofree char *message = NULL;
  va_list args;

  if (reader->error == NULL || *reader->error != NULL)
    return FALSE;
  va_start (args, format);
  message = g_strdup_vprintf (format, args);
  va_end (args);
  g_set_error_literal (reader->error, G_VARIANT_PARSE_ERROR, G_VARIANT_PARSE_ERROR_FAILED, message);
  return FALSE;
}

static void
skip_space (JsonReader *reader)
{
  while (*reader->p == ' ' || *reader->p == '\t' || *reader->p == '\n' || *reader->p == '\r')
    reader->p++;
}

static char *
read_json_string (JsonReader *reader)
{
  GString *text = g_string_new (NULL);

  reader->p++;    /* the opening quote */
  while (*reader->p != '"')
    {
      gunichar c = (guchar) *reader->p;

      if (c == '\0' || c < 0x20)
        goto fail;
      if (c != '\\')
        {
          g_string_append_c (text, *reader->p++);
          continue;
        }

      reader->p++;
      switch (*reader->p++)
        {
        case '"': g_string_append_c (text, '"'); break;
        case '\\': g_string_append_c (text, '\\'); break;
        case '/': g_string_append_c (text, '/'); break;
        case 'b': g_string_append_c (text, '\b'); break;
        case 'f': g_string_append_c (text, '\f'); break;
        case 'n': g_string_append_c (text, '\n'); break;
        case 'r': g_string_append_c (text, '\r'); break;
        case 't': g_string_append_c (text, '\t'); break;
        case 'u':
          {
            char hex[5] = { 0, };
            char *end = NULL;

            memcpy (hex, reader->p, 4);
            c = (gunichar) g_ascii_strtoull (hex, &end, 16);
            if (strlen (hex) != 4 || end != hex + 4)
              goto fail;
            reader->p += 4;
            /* a surrogate pair makes one character */
            if (c >= 0xd800 && c < 0xdc00 && reader->p[0] == '\\' && reader->p[1] == 'u')
              {
                gunichar low;

                memcpy (hex, reader->p + 2, 4);
                low = (gunichar) g_ascii_strtoull (hex, &end, 16);
                if (end != hex + 4 || low < 0xdc00 || low >= 0xe000)
                  goto fail;
                c = 0x10000 + ((c - 0xd800) << 10) + (low - 0xdc00);
                reader->p += 6;
              }
            if (c == 0 || !g_unichar_validate (c))
              goto fail;
            g_string_append_unichar (text, c);
          }
          break;
        default:
          goto fail;
        }
    }
  reader->p++;

  if (g_utf8_validate (text->str, (gssize) text->len, NULL))
    return g_string_free (text, FALSE);

fail:
  g_string_free (text, TRUE);
  json_error (reader, _("The value is not valid JSON: a string is malformed"));
  return NULL;
}

static GVariant *
read_json_number (JsonReader *reader)
{
  const char *start = reader->p;
  gboolean integer = TRUE;
  char *end = NULL;

  if (*reader->p == '-')
    reader->p++;
  if (!g_ascii_isdigit (*reader->p))
    return json_error (reader, _("The value is not valid JSON")), NULL;
  while (g_ascii_isdigit (*reader->p) || *reader->p == '.' || *reader->p == 'e' || *reader->p == 'E' ||
         ((*reader->p == '+' || *reader->p == '-') && (reader->p[-1] == 'e' || reader->p[-1] == 'E')))
    {
      if (!g_ascii_isdigit (*reader->p))
        integer = FALSE;
      reader->p++;
    }

  if (integer)
    {
      g_autofree char *text = g_strndup (start, (gsize) (reader->p - start));
      gint64 value;
      guint64 unsigned_value;

      if (g_ascii_string_to_signed (text, 10, G_MININT64, G_MAXINT64, &value, NULL))
        return g_variant_new_int64 (value);
      if (g_ascii_string_to_unsigned (text, 10, 0, G_MAXUINT64, &unsigned_value, NULL))
        return g_variant_new_uint64 (unsigned_value);
    }

  {
    g_autofree char *text = g_strndup (start, (gsize) (reader->p - start));
    double value = g_ascii_strtod (text, &end);

    if (end == text || *end != '\0' || !isfinite (value))
      return json_error (reader, _("The value is not valid JSON: “%s” is not a number"), text), NULL;
    return g_variant_new_double (value);
  }
}

static GVariant *
read_json_container (JsonReader *reader,
                     guint       depth,
                     gboolean    object)
{
  GVariantBuilder builder;
  char close = object ? '}' : ']';

  g_variant_builder_init (&builder, object ? G_VARIANT_TYPE_VARDICT : G_VARIANT_TYPE ("av"));
  reader->p++;
  skip_space (reader);
  if (*reader->p == close)
    {
      reader->p++;
      return g_variant_builder_end (&builder);
    }

  for (;;)
    {
      g_autofree char *key = NULL;
      GVariant *item;

      skip_space (reader);
      if (object)
        {
          if (*reader->p != '"' || (key = read_json_string (reader)) == NULL)
            break;
          skip_space (reader);
          if (*reader->p++ != ':')
            break;
        }
      if ((item = read_json_value (reader, depth + 1)) == NULL)
        break;
      if (object)
        g_variant_builder_add (&builder, "{sv}", key, item);
      else
        g_variant_builder_add (&builder, "v", item);

      skip_space (reader);
      if (*reader->p == ',')
        {
          reader->p++;
          continue;
        }
      if (*reader->p == close)
        {
          reader->p++;
          return g_variant_builder_end (&builder);
        }
      break;
    }

  g_variant_builder_clear (&builder);
  json_error (reader, _("The value is not valid JSON"));
  return NULL;
}

static GVariant *
read_json_value (JsonReader *reader,
                 guint       depth)
{
  skip_space (reader);
  if (depth > JSON_MAX_DEPTH)
    return json_error (reader, _("The value is nested more than %d levels deep"), JSON_MAX_DEPTH), NULL;

  switch (*reader->p)
    {
    case '{':
      return read_json_container (reader, depth, TRUE);
    case '[':
      return read_json_container (reader, depth, FALSE);
    case '"':
      {
        char *text = read_json_string (reader);

        return text != NULL ? g_variant_new_take_string (text) : NULL;
      }
    case 't':
      if (g_str_has_prefix (reader->p, "true"))
        return reader->p += 4, g_variant_new_boolean (TRUE);
      break;
    case 'f':
      if (g_str_has_prefix (reader->p, "false"))
        return reader->p += 5, g_variant_new_boolean (FALSE);
      break;
    case 'n':
      if (g_str_has_prefix (reader->p, "null"))
        return reader->p += 4, g_variant_new_maybe (G_VARIANT_TYPE_VARIANT, NULL);
      break;
    default:
      if (*reader->p == '-' || g_ascii_isdigit (*reader->p))
        return read_json_number (reader);
    }

  json_error (reader, _("The value is not valid JSON"));
  return NULL;
}

/* A value given as JSON text. */
GVariant *
lc_json_to_variant (const char  *text,
                    GError     **error)
{
  JsonReader reader = { text, error };
  GVariant *value;

  if (!g_utf8_validate (text, -1, NULL))
    {
      g_set_error (error, G_VARIANT_PARSE_ERROR, G_VARIANT_PARSE_ERROR_INVALID_CHARACTER,
                   _("The value is not valid UTF-8 text"));
      return NULL;
    }

  value = read_json_value (&reader, 0);
  if (value == NULL)
    return NULL;
  g_variant_ref_sink (value);
  skip_space (&reader);
  if (*reader.p != '\0')
    {
      g_variant_unref (value);
      g_set_error (error, G_VARIANT_PARSE_ERROR, G_VARIANT_PARSE_ERROR_FAILED,
                   _("The value is not valid JSON: something follows it"));
      return NULL;
    }

  return value;
}

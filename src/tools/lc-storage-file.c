/* lc-storage-file.c: the daemon's storage, kept in a file
 *
 * The file is "LYSTORE1", then the whole storage as one GVariant of
 * type a{sv}, in normal form, little-endian.  It is loaded at start,
 * written LC_STORAGE_SAVE_DELAY_MSEC after a change (the changes of that
 * second together) and at exit, each time atomically (a new file renamed
 * over the old).  A file that cannot be read back is reported and left
 * as it is: never replaced by an empty storage.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "lc-common.h"

#include <string.h>

#define MAGIC "LYSTORE1"
#define MAGIC_LENGTH 8

struct _LcStorageFile
{
  char      *path;
  LyStorage *storage;
  guint      save_source;
};

/* The file is little-endian; swapping is its own inverse, so this serves
 * both ways. */
static void
to_file_byte_order (GVariant **value)
{
#if G_BYTE_ORDER == G_BIG_ENDIAN
  GVariant *swapped = g_variant_ref_sink (g_variant_byteswap (*value));

  g_variant_unref (*value);
  *value = swapped;
#endif
}

static gboolean
load (const char  *path,
      LyStorage   *storage,
      GError     **error)
{
  g_autofree char *contents = NULL;
  g_autoptr(GError) local_error = NULL;
  gsize length;

  if (!g_file_get_contents (path, &contents, &length, &local_error))
    {
      if (g_error_matches (local_error, G_FILE_ERROR, G_FILE_ERROR_NOENT))
        return TRUE;    /* the first start */
      g_propagate_error (error, g_steal_pointer (&local_error));
      return FALSE;
    }

  return lc_storage_file_load_data (path, contents, length, storage, error);
}

/* The file's @contents, read already; @path is for the messages.  The
 * fuzzer feeds it arbitrary bytes. */
gboolean
lc_storage_file_load_data (const char  *path,
                           const char  *contents,
                           gsize        length,
                           LyStorage   *storage,
                           GError     **error)
{
  g_autoptr(GVariant) all = NULL;
  g_autoptr(GBytes) bytes = NULL;
  g_autoptr(GError) local_error = NULL;
  GVariantIter iter;
  const char *key;
  GVariant *value;

  if (length < MAGIC_LENGTH || memcmp (contents, MAGIC, MAGIC_LENGTH) != 0)
    {
      g_set_error (error, G_FILE_ERROR, G_FILE_ERROR_INVAL,
                   _("%s is not a liteyuki-comm storage file (it is left as it is)"), path);
      return FALSE;
    }

  bytes = g_bytes_new (contents + MAGIC_LENGTH, length - MAGIC_LENGTH);
  all = g_variant_ref_sink (g_variant_new_from_bytes (G_VARIANT_TYPE_VARDICT, bytes, FALSE));
  if (!g_variant_is_normal_form (all))
    {
      g_set_error (error, G_FILE_ERROR, G_FILE_ERROR_INVAL,
                   _("%s is corrupt (it is left as it is)"), path);
      return FALSE;
    }
  to_file_byte_order (&all);

  g_variant_iter_init (&iter, all);
  while (g_variant_iter_next (&iter, "{&sv}", &key, &value))
    {
      gboolean ok = ly_storage_set (storage, key, value, &local_error);

      g_variant_unref (value);
      if (!ok)
        {
          g_set_error (error, G_FILE_ERROR, G_FILE_ERROR_INVAL,
                       _("%s holds an invalid entry (it is left as it is): %s"), path, local_error->message);
          return FALSE;
        }
    }

  return TRUE;
}

gboolean
lc_storage_file_save (LcStorageFile  *file,
                      GError        **error)
{
  g_autoptr(GVariant) all = ly_storage_get_all (file->storage, error);
  g_autoptr(GByteArray) data = NULL;

  if (all == NULL)
    return FALSE;

  to_file_byte_order (&all);

  data = g_byte_array_sized_new (MAGIC_LENGTH + g_variant_get_size (all));
  g_byte_array_append (data, (const guint8 *) MAGIC, MAGIC_LENGTH);
  g_byte_array_set_size (data, MAGIC_LENGTH + g_variant_get_size (all));
  g_variant_store (all, data->data + MAGIC_LENGTH);

  return g_file_set_contents_full (file->path, (const char *) data->data, data->len,
                                   G_FILE_SET_CONTENTS_CONSISTENT | G_FILE_SET_CONTENTS_DURABLE,
                                   0600, error);
}

static gboolean
save_now (gpointer user_data)
{
  LcStorageFile *file = user_data;
  g_autoptr(GError) error = NULL;

  file->save_source = 0;
  if (!lc_storage_file_save (file, &error))
    g_warning (_("Could not save the storage: %s"), error->message);
  return G_SOURCE_REMOVE;
}

static void
on_changed (LyStorage     *storage,
            const char    *key,
            GVariant      *value,
            LcStorageFile *file)
{
  if (file->save_source == 0)
    file->save_source = g_timeout_add (LC_STORAGE_SAVE_DELAY_MSEC, save_now, file);
}

LcStorageFile *
lc_storage_file_open (const char  *path,
                      LyStorage   *storage,
                      GError     **error)
{
  LcStorageFile *file;

  if (!load (path, storage, error))
    return NULL;

  file = g_new0 (LcStorageFile, 1);
  file->path = g_strdup (path);
  file->storage = g_object_ref (storage);
  g_signal_connect (storage, "changed", G_CALLBACK (on_changed), file);

  return file;
}

void
lc_storage_file_free (LcStorageFile *file)
{
  g_signal_handlers_disconnect_by_data (file->storage, file);
  g_clear_handle_id (&file->save_source, g_source_remove);
  g_object_unref (file->storage);
  g_free (file->path);
  g_free (file);
}

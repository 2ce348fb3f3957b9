/* lc-storage-file.c: the daemon's storage, kept in a file
 *
 * The file is "LYSTORE1", then the whole storage as one GVariant of
 * type a{sv}, in normal form, little-endian.  It is loaded at start,
 * written LC_STORAGE_SAVE_DELAY_MSEC after a change (the changes of that
 * second together) and at exit, each time atomically (a new file renamed
 * over the old).  A file that cannot be read back is reported and left
 * as it is: never replaced by an empty storage.
 *
 * The path may be in a directory other users can write to: the file is
 * opened without following a symbolic link and without blocking (a
 * FIFO), and read only if it is a regular file of the daemon's user, of
 * at most LC_STORAGE_FILE_MAX bytes.  The new file is created
 * exclusively with mode 0600 and synced, and so is its directory after
 * the rename.  The directory is checked at start, before any write is
 * acknowledged.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "lc-common.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <glib/gstdio.h>

#define MAGIC "LYSTORE1"
#define MAGIC_LENGTH 8

/* far more than a storage holds: a larger "file" is not ours (/dev/zero) */
#define LC_STORAGE_FILE_MAX (1024 * 1024 * 1024)

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

static gboolean G_GNUC_PRINTF (3, 4)
file_error (GError     **error,
            int          saved_errno,
            const char  *format,
            ...)
{
  g_autofree char *message = NULL;
  va_list args;

  va_start (args, format);
  message = g_strdup_vprintf (format, args);
  va_end (args);
  g_set_error_literal (error, G_FILE_ERROR, g_file_error_from_errno (saved_errno), message);
  return FALSE;
}

/* The directory the file is written in exists and can be written to:
 * known at start, not at the first save after writes were acknowledged. */
static gboolean
check_directory (const char  *path,
                 GError     **error)
{
  g_autofree char *directory = g_path_get_dirname (path);
  struct stat info;

  if (g_stat (directory, &info) < 0)
    return file_error (error, errno, _("The directory of the storage file, %s, cannot be used: %s"),
                       directory, g_strerror (errno));
  if (!S_ISDIR (info.st_mode))
    return file_error (error, ENOTDIR, _("The directory of the storage file, %s, is not a directory"), directory);
  if (access (directory, W_OK | X_OK) < 0)
    return file_error (error, errno, _("The storage file cannot be written in %s: %s"),
                       directory, g_strerror (errno));
  return TRUE;
}

/* Reads the file at @path, if it is one the daemon wrote: a regular file
 * of its user, not through a symbolic link, of a sane size.  *contents
 * stays NULL when there is no file yet. */
static gboolean
read_own_file (const char  *path,
               char       **contents,
               gsize       *length,
               GError     **error)
{
  struct stat info;
  gsize done = 0;
  int fd;

  *contents = NULL;
  fd = g_open (path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0);
  if (fd < 0)
    {
      int saved_errno = errno;

      if (saved_errno == ENOENT)
        return TRUE;    /* the first start */
      if (saved_errno == ELOOP)
        return file_error (error, saved_errno, _("%s is a symbolic link: refused (it is left as it is)"), path);
      return file_error (error, saved_errno, _("Cannot open %s: %s"), path, g_strerror (saved_errno));
    }

  if (fstat (fd, &info) < 0 || !S_ISREG (info.st_mode))
    {
      g_close (fd, NULL);
      return file_error (error, EINVAL, _("%s is not a regular file: refused (it is left as it is)"), path);
    }
  if (info.st_uid != geteuid ())
    {
      g_close (fd, NULL);
      return file_error (error, EPERM, _("%s belongs to another user: refused (it is left as it is)"), path);
    }
  if (info.st_size > LC_STORAGE_FILE_MAX)
    {
      g_close (fd, NULL);
      return file_error (error, EFBIG, _("%s is larger than a storage file can be: refused (it is left as it is)"), path);
    }

  *length = (gsize) info.st_size;
  *contents = g_malloc (*length + 1);
  while (done < *length)
    {
      gssize n = read (fd, *contents + done, *length - done);

      if (n < 0 && errno == EINTR)
        continue;
      if (n <= 0)
        {
          int saved_errno = n < 0 ? errno : EIO;

          g_close (fd, NULL);
          g_clear_pointer (contents, g_free);
          return file_error (error, saved_errno, _("Cannot read %s: %s"), path, g_strerror (saved_errno));
        }
      done += (gsize) n;
    }
  (*contents)[*length] = '\0';
  g_close (fd, NULL);
  return TRUE;
}

static gboolean
load (const char  *path,
      LyStorage   *storage,
      GError     **error)
{
  g_autofree char *contents = NULL;
  gsize length = 0;

  if (!check_directory (path, error) || !read_own_file (path, &contents, &length, error))
    return FALSE;
  if (contents == NULL)
    return TRUE;

  return lc_storage_file_load_data (path, contents, length, storage, error);
}

/* After the rename: the directory entry is on disk too. */
static void
sync_directory (const char *path)
{
  g_autofree char *directory = g_path_get_dirname (path);
  int fd = g_open (directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);

  if (fd >= 0)
    {
      fsync (fd);
      g_close (fd, NULL);
    }
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

  /* a new file made exclusively (0600), synced, renamed over the old
   * one: a link planted at the path is replaced, never followed */
  if (!g_file_set_contents_full (file->path, (const char *) data->data, data->len,
                                 G_FILE_SET_CONTENTS_CONSISTENT | G_FILE_SET_CONTENTS_DURABLE,
                                 0600, error))
    return FALSE;
  sync_directory (file->path);
  return TRUE;
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

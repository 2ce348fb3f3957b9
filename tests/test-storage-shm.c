/* test-storage-shm.c: the hub's storage in shared memory, read by its
 * children (ly-storage-shm.c): the table alone, hostile files, threads,
 * and real children of a real hub
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#define _GNU_SOURCE  /* memfd_create(), F_ADD_SEALS */

#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <glib/gstdio.h>

#include "ly-storage-shm-private.h"
#include "ly-test-util.h"

#ifndef F_SEAL_FUTURE_WRITE
#define F_SEAL_FUTURE_WRITE 0x0010
#endif

/* The table alone ------------------------------------------------------------ */

static LyShmWriter *
writer_new (guint64 size)
{
  g_autoptr(GError) error = NULL;
  LyShmWriter *writer = ly_shm_writer_new (size, &error);

  g_assert_no_error (error);
  g_assert_nonnull (writer);
  return writer;
}

static LyShmReader *
reader_new (LyShmWriter *writer)
{
  g_autoptr(GError) error = NULL;
  LyShmReader *reader = ly_shm_reader_new (ly_shm_writer_get_fd (writer), &error);

  g_assert_no_error (error);
  g_assert_nonnull (reader);
  return reader;
}

/* The writer takes no reference: these sink and drop the floating ones
 * the tests make. */
static void
change (LyShmWriter *writer,
        const char  *key,
        GVariant    *value)
{
  g_autoptr(GVariant) owned = value != NULL ? g_variant_ref_sink (value) : NULL;

  ly_shm_writer_changed (writer, key, owned);
}

static void
load_snapshot (LyShmWriter *writer,
               GVariant    *all)
{
  g_autoptr(GVariant) owned = g_variant_ref_sink (all);

  ly_shm_writer_load_snapshot (writer, owned);
}

static void
load_empty_snapshot (LyShmWriter *writer)
{
  ly_shm_writer_begin_snapshot (writer);
  load_snapshot (writer, g_variant_new_array (G_VARIANT_TYPE ("{sv}"), NULL, 0));
}

static void
assert_get (LyShmReader *reader,
            const char  *key,
            LyShmAnswer  expected_answer,
            GVariant    *expected)
{
  g_autoptr(GVariant) owned = expected != NULL ? g_variant_take_ref (expected) : NULL;
  g_autoptr(GVariant) value = NULL;
  LyShmAnswer answer = ly_shm_reader_get (reader, key, &value);

  g_assert_cmpint (answer, ==, expected_answer);
  if (answer == LY_SHM_ANSWER_FOUND)
    {
      g_assert_nonnull (value);
      g_assert_true (g_variant_equal (value, owned));
    }
}

static void
test_table_operations (void)
{
  g_autoptr(LyShmWriter) writer = writer_new (1024 * 1024);
  g_autoptr(LyShmReader) reader = reader_new (writer);
  GVariant *odd[] = {
    g_variant_new_string (""),
    g_variant_new ("()"),
    g_variant_new ("mi", NULL),
    g_variant_new_array (G_VARIANT_TYPE_STRING, NULL, 0),
    g_variant_new_parsed ("{'a': <[<(1, 'x')>]>, 'b': <@ay []>}"),
    g_variant_new_string ("长城 and ünïcode"),
  };
  g_autoptr(GVariantBuilder) all = g_variant_builder_new (G_VARIANT_TYPE_VARDICT);
  g_autoptr(GVariant) got_all = NULL;
  g_auto(GStrv) keys = NULL;

  /* nothing until the snapshot is in */
  assert_get (reader, "a", LY_SHM_ANSWER_ASK_HUB, NULL);
  g_assert_cmpint (ly_shm_reader_list_keys (reader, &keys), ==, LY_SHM_ANSWER_ASK_HUB);

  g_variant_builder_add (all, "{sv}", "b", g_variant_new_string ("text"));
  g_variant_builder_add (all, "{sv}", "a", g_variant_new_int32 (1));
  ly_shm_writer_begin_snapshot (writer);
  load_snapshot (writer, g_variant_builder_end (all));

  assert_get (reader, "a", LY_SHM_ANSWER_FOUND, g_variant_new_int32 (1));
  assert_get (reader, "b", LY_SHM_ANSWER_FOUND, g_variant_new_string ("text"));
  assert_get (reader, "c", LY_SHM_ANSWER_MISSING, NULL);
  g_assert_cmpint (ly_shm_reader_contains (reader, "b"), ==, LY_SHM_ANSWER_FOUND);
  g_assert_cmpint (ly_shm_reader_contains (reader, "c"), ==, LY_SHM_ANSWER_MISSING);
  g_assert_cmpint (ly_shm_reader_list_keys (reader, &keys), ==, LY_SHM_ANSWER_FOUND);
  g_assert_cmpstrv (keys, ((const char *[]) { "a", "b", NULL }));

  change (writer, "a", g_variant_new_int32 (2));
  change (writer, "b", NULL);
  assert_get (reader, "a", LY_SHM_ANSWER_FOUND, g_variant_new_int32 (2));
  assert_get (reader, "b", LY_SHM_ANSWER_MISSING, NULL);

  for (guint i = 0; i < G_N_ELEMENTS (odd); i++)
    {
      g_autofree char *key = g_strdup_printf ("odd%u", i);

      g_variant_ref_sink (odd[i]);
      change (writer, key, odd[i]);
      assert_get (reader, key, LY_SHM_ANSWER_FOUND, g_variant_ref (odd[i]));
    }

  g_assert_cmpint (ly_shm_reader_get_all (reader, &got_all), ==, LY_SHM_ANSWER_FOUND);
  g_assert_cmpuint (g_variant_n_children (got_all), ==, 1 + G_N_ELEMENTS (odd));
  for (guint i = 0; i < G_N_ELEMENTS (odd); i++)
    {
      g_autofree char *key = g_strdup_printf ("odd%u", i);
      g_autoptr(GVariant) value = g_variant_lookup_value (got_all, key, NULL);

      g_assert_true (g_variant_equal (value, odd[i]));
      g_variant_unref (odd[i]);
    }
}

/* Values over 16 KiB stay in the hub: present, read with a round trip. */
static void
test_table_large_values (void)
{
  g_autoptr(LyShmWriter) writer = writer_new (1024 * 1024);
  g_autoptr(LyShmReader) reader = reader_new (writer);
  g_autofree guint8 *big = g_malloc0 (20000);
  g_autoptr(GVariant) all = NULL;
  g_auto(GStrv) keys = NULL;

  load_empty_snapshot (writer);
  change (writer, "big",
                         g_variant_new_fixed_array (G_VARIANT_TYPE_BYTE, big, 20000, 1));
  assert_get (reader, "big", LY_SHM_ANSWER_ASK_HUB, NULL);
  g_assert_cmpint (ly_shm_reader_contains (reader, "big"), ==, LY_SHM_ANSWER_FOUND);
  g_assert_cmpint (ly_shm_reader_list_keys (reader, &keys), ==, LY_SHM_ANSWER_FOUND);
  g_assert_cmpstrv (keys, ((const char *[]) { "big", NULL }));
  g_assert_cmpint (ly_shm_reader_get_all (reader, &all), ==, LY_SHM_ANSWER_ASK_HUB);

  change (writer, "big", g_variant_new_uint32 (7));
  assert_get (reader, "big", LY_SHM_ANSWER_FOUND, g_variant_new_uint32 (7));
  g_assert_cmpint (ly_shm_reader_get_all (reader, &all), ==, LY_SHM_ANSWER_FOUND);
}

/* A full table fails no write: what finds no room is read with round
 * trips, a miss is no answer while any key is missing, and the table
 * is whole again once they are gone. */
static void
test_table_full (void)
{
  g_autoptr(LyShmWriter) writer = writer_new (LY_SHM_MIN_SIZE);
  g_autoptr(LyShmReader) reader = reader_new (writer);
  LyShmWriterStats stats;
  guint n = 2000, found = 0;

  load_empty_snapshot (writer);
  for (guint i = 0; i < n; i++)
    {
      g_autofree char *key = g_strdup_printf ("key%u", i);

      change (writer, key, ly_test_checked_value (i, i, 24));
    }
  ly_shm_writer_get_stats (writer, &stats);
  g_test_message ("%u keys in a 64 KiB table: %u with a slot, %u missing", n, stats.n_keys, stats.n_missing);
  g_assert_cmpuint (stats.n_missing, >, 0);
  g_assert_cmpuint (stats.n_keys + stats.n_missing, ==, n);

  for (guint i = 0; i < n; i++)
    {
      g_autofree char *key = g_strdup_printf ("key%u", i);
      g_autoptr(GVariant) value = NULL;
      LyShmAnswer answer = ly_shm_reader_get (reader, key, &value);
      guint64 counter;

      g_assert_cmpint (answer, !=, LY_SHM_ANSWER_MISSING);
      if (answer == LY_SHM_ANSWER_FOUND)
        {
          g_assert_true (ly_test_value_is_checked (value, i, &counter));
          g_assert_cmpuint (counter, ==, i);
          found++;
        }
    }
  g_assert_cmpuint (found, ==, stats.n_keys);
  assert_get (reader, "never-set", LY_SHM_ANSWER_ASK_HUB, NULL);

  /* large values fill the data: their keys stay, their values go remote */
  for (guint i = 0; i < n; i++)
    {
      g_autofree char *key = g_strdup_printf ("key%u", i);

      if (i >= 40)
        change (writer, key, NULL);
      else
        change (writer, key, ly_test_checked_value (i, i + 1, 3000));
    }
  ly_shm_writer_get_stats (writer, &stats);
  g_test_message ("40 values of 3 KB: %u with a slot, %u of them remote, %u missing",
                  stats.n_keys, stats.n_remote, stats.n_missing);
  g_assert_cmpuint (stats.n_missing, ==, 0);
  g_assert_cmpuint (stats.n_remote, >, 0);
  assert_get (reader, "never-set", LY_SHM_ANSWER_MISSING, NULL);
  for (guint i = 0; i < 40; i++)
    {
      g_autofree char *key = g_strdup_printf ("key%u", i);
      g_autoptr(GVariant) value = NULL;
      guint64 counter;

      g_assert_cmpint (ly_shm_reader_contains (reader, key), ==, LY_SHM_ANSWER_FOUND);
      if (ly_shm_reader_get (reader, key, &value) == LY_SHM_ANSWER_FOUND)
        {
          g_assert_true (ly_test_value_is_checked (value, i, &counter));
          g_assert_cmpuint (counter, ==, i + 1);
        }
    }
}

/* Sets PREFIX0..PREFIX(n-1) to 0..n-1. */
static void
set_numbered (LyShmWriter *writer,
              const char  *prefix,
              guint        n)
{
  for (guint i = 0; i < n; i++)
    {
      g_autofree char *key = g_strdup_printf ("%s%u", prefix, i);

      change (writer, key, g_variant_new_uint32 (i));
    }
}

/* Reads PREFIX0..PREFIX(n-1) back as 0..n-1. */
static void
assert_numbered (LyShmReader *reader,
                 const char  *prefix,
                 guint        n)
{
  for (guint i = 0; i < n; i++)
    {
      g_autofree char *key = g_strdup_printf ("%s%u", prefix, i);

      assert_get (reader, key, LY_SHM_ANSWER_FOUND, g_variant_new_uint32 (i));
    }
}

/* Keys come and go by the hundred thousand in a small table: the
 * tombstones are cleared by laying the slots out again, and no key is
 * ever lost. */
static void
test_table_churn (void)
{
  g_autoptr(LyShmWriter) writer = writer_new (LY_SHM_MIN_SIZE);
  g_autoptr(LyShmReader) reader = reader_new (writer);
  LyShmWriterStats stats;
  guint n = ly_test_scaled (100000);

  load_empty_snapshot (writer);
  set_numbered (writer, "stable", 50);
  for (guint i = 0; i < n; i++)
    {
      g_autofree char *key = g_strdup_printf ("passing%u", i);

      change (writer, key, g_variant_new_uint32 (i));
      if (i % 7 == 0)
        assert_get (reader, key, LY_SHM_ANSWER_FOUND, g_variant_new_uint32 (i));
      change (writer, key, NULL);
    }

  ly_shm_writer_get_stats (writer, &stats);
  g_test_message ("%u keys passed: %u rebuilds", n, stats.n_rebuilds);
  g_assert_cmpuint (stats.n_rebuilds, >, 0);
  g_assert_cmpuint (stats.n_missing, ==, 0);
  g_assert_cmpuint (stats.n_keys, ==, 50);
  assert_numbered (reader, "stable", 50);
  assert_get (reader, "passing0", LY_SHM_ANSWER_MISSING, NULL);
}

/* A table nearly full of live keys is not laid out again at every new
 * key (each re-layout costs every slot): new keys that find no room
 * are asked of the hub, and the live ones stay. */
static void
test_table_full_churn (void)
{
  g_autoptr(LyShmWriter) writer = writer_new (LY_SHM_MIN_SIZE);
  g_autoptr(LyShmReader) reader = reader_new (writer);
  LyShmWriterStats stats;
  guint live = 220, n = ly_test_scaled (20000);

  load_empty_snapshot (writer);
  set_numbered (writer, "live", live);
  for (guint i = 0; i < n; i++)
    {
      g_autofree char *key = g_strdup_printf ("passing%u", i);
      g_autoptr(GVariant) value = NULL;
      LyShmAnswer answer;

      change (writer, key, g_variant_new_uint32 (i));
      answer = ly_shm_reader_get (reader, key, &value);
      g_assert_cmpint (answer, !=, LY_SHM_ANSWER_MISSING);
      if (answer == LY_SHM_ANSWER_FOUND)
        g_assert_cmpuint (g_variant_get_uint32 (value), ==, i);
      change (writer, key, NULL);
    }

  ly_shm_writer_get_stats (writer, &stats);
  g_test_message ("%u keys passed a table holding %u live keys: %u re-layouts", n, live, stats.n_rebuilds);
  g_assert_cmpuint (stats.n_rebuilds, <=, n / 16);
  g_assert_cmpuint (stats.n_missing, ==, 0);
  assert_numbered (reader, "live", live);
  assert_get (reader, "passing0", LY_SHM_ANSWER_MISSING, NULL);
}

/* A change made while the snapshot was taken is newer than the
 * snapshot's value for its key. */
static void
test_table_snapshot_order (void)
{
  g_autoptr(LyShmWriter) writer = writer_new (LY_SHM_MIN_SIZE);
  g_autoptr(LyShmReader) reader = reader_new (writer);

  ly_shm_writer_begin_snapshot (writer);
  change (writer, "k", g_variant_new_uint32 (2));
  change (writer, "gone", NULL);
  load_snapshot (writer, g_variant_new_parsed ("{'k': <@u 1>, 'gone': <5>, 'other': <3>}"));

  assert_get (reader, "k", LY_SHM_ANSWER_FOUND, g_variant_new_uint32 (2));
  assert_get (reader, "gone", LY_SHM_ANSWER_MISSING, NULL);
  assert_get (reader, "other", LY_SHM_ANSWER_FOUND, g_variant_new_int32 (3));
}

/* A hub that ends closes its table: a child still holding it asks the
 * hub (and learns it is gone) instead of reading a store nobody keeps. */
static void
test_table_writer_gone (void)
{
  LyShmWriter *writer = writer_new (LY_SHM_MIN_SIZE);
  g_autoptr(LyShmReader) reader = reader_new (writer);
  g_auto(GStrv) keys = NULL;

  load_empty_snapshot (writer);
  change (writer, "k", g_variant_new_uint32 (1));
  assert_get (reader, "k", LY_SHM_ANSWER_FOUND, g_variant_new_uint32 (1));

  ly_shm_writer_free (writer);
  assert_get (reader, "k", LY_SHM_ANSWER_ASK_HUB, NULL);
  g_assert_cmpint (ly_shm_reader_contains (reader, "k"), ==, LY_SHM_ANSWER_ASK_HUB);
  g_assert_cmpint (ly_shm_reader_list_keys (reader, &keys), ==, LY_SHM_ANSWER_ASK_HUB);
}

/* Only the hub writes: a child cannot map the table writable, write it,
 * grow it or shrink it, not even through /proc. */
static void
test_table_read_only (void)
{
  g_autoptr(LyShmWriter) writer = writer_new (LY_SHM_MIN_SIZE);
  int fd = ly_shm_writer_get_fd (writer);
  g_autofree char *path = g_strdup_printf ("/proc/self/fd/%d", fd);
  int reopened;
  void *map;

  map = mmap (NULL, LY_SHM_MIN_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  g_assert_true (map == MAP_FAILED);
  g_assert_cmpint (errno, ==, EPERM);
  g_assert_cmpint (pwrite (fd, "x", 1, 0), ==, -1);
  g_assert_cmpint (errno, ==, EPERM);
  g_assert_cmpint (ftruncate (fd, LY_SHM_MIN_SIZE / 2), ==, -1);
  g_assert_cmpint (ftruncate (fd, LY_SHM_MIN_SIZE * 2), ==, -1);
  g_assert_cmpint (fcntl (fd, F_ADD_SEALS, F_SEAL_WRITE), ==, -1);

  reopened = open (path, O_RDWR);
  g_assert_cmpint (reopened, >=, 0);
  g_assert_cmpint (pwrite (reopened, "x", 1, 0), ==, -1);
  g_assert_cmpint (errno, ==, EPERM);
  map = mmap (NULL, LY_SHM_MIN_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, reopened, 0);
  g_assert_true (map == MAP_FAILED);
  close (reopened);
}

/* A memfd holding @header_bytes (a table's first bytes), sealed with
 * @seals. */
static int
crafted_table (const guint8 *header_bytes,
               gsize         size,
               int           seals)
{
  int fd = memfd_create ("crafted", MFD_CLOEXEC | MFD_ALLOW_SEALING);

  g_assert_cmpint (fd, >=, 0);
  g_assert_cmpint (ftruncate (fd, (off_t) size), ==, 0);
  g_assert_cmpint (pwrite (fd, header_bytes, 128, 0), ==, 128);
  if (seals != 0)
    g_assert_cmpint (fcntl (fd, F_ADD_SEALS, seals), ==, 0);
  return fd;
}

static void
assert_refused (int         fd,
                const char *why)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(LyShmReader) reader = ly_shm_reader_new (fd, &error);

  g_assert_null (reader);
  g_assert_error (error, LY_STORAGE_ERROR, LY_STORAGE_ERROR_UNAVAILABLE);
  g_test_message ("%s", error->message);
  g_assert_nonnull (strstr (error->message, why));
  close (fd);
}

/* What a child is given instead of a table is refused with a reason,
 * never mapped blindly or followed out of bounds. */
static void
test_table_hostile_files (void)
{
  g_autoptr(LyShmWriter) writer = writer_new (LY_SHM_MIN_SIZE);
  const int seals = F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_FUTURE_WRITE;
  guint8 good[128], bad[128];
  int pipe_fds[2];

  g_assert_cmpint (pread (ly_shm_writer_get_fd (writer), good, sizeof good, 0), ==, sizeof good);

  /* the good header, sealed: accepted */
  {
    g_autoptr(GError) error = NULL;
    int fd = crafted_table (good, LY_SHM_MIN_SIZE, seals);
    g_autoptr(LyShmReader) reader = ly_shm_reader_new (fd, &error);

    g_assert_no_error (error);
    g_assert_nonnull (reader);
    close (fd);
  }

  assert_refused (crafted_table (good, LY_SHM_MIN_SIZE, 0), "not sealed");
  assert_refused (crafted_table (good, LY_SHM_MIN_SIZE, F_SEAL_SHRINK | F_SEAL_GROW), "not sealed");
  assert_refused (open ("/dev/null", O_RDONLY | O_CLOEXEC), "not sealed");
  g_assert_cmpint (pipe (pipe_fds), ==, 0);
  close (pipe_fds[1]);
  assert_refused (pipe_fds[0], "not sealed");

  memcpy (bad, good, sizeof bad);
  bad[0] ^= 0xff;
  assert_refused (crafted_table (bad, LY_SHM_MIN_SIZE, seals), "not a table");
  /* a size that is not the file's */
  assert_refused (crafted_table (good, LY_SHM_MIN_SIZE * 2, seals), "size");

  /* slot counts that are not powers of two, or run past the end */
  for (guint i = 0; i < 3; i++)
    {
      const guint32 counts[] = { 100, 1u << 20, 0 };

      memcpy (bad, good, sizeof bad);
      memcpy (bad + 32, &counts[i], sizeof counts[i]);
      assert_refused (crafted_table (bad, LY_SHM_MIN_SIZE, seals), i == 1 ? "do not fit" : "power of two");
    }
  /* data that does not end where the file does */
  {
    guint64 data_size;

    memcpy (bad, good, sizeof bad);
    memcpy (&data_size, bad + 48, sizeof data_size);
    data_size += 4096;
    memcpy (bad + 48, &data_size, sizeof data_size);
    assert_refused (crafted_table (bad, LY_SHM_MIN_SIZE, seals), "do not fit");
  }
  /* empty */
  {
    int fd = memfd_create ("empty", MFD_CLOEXEC | MFD_ALLOW_SEALING);

    g_assert_cmpint (fcntl (fd, F_ADD_SEALS, seals), ==, 0);
    assert_refused (fd, "not a memory file");
  }
}

/* Threads: the hub writes checked values as fast as it can (values of
 * varying sizes, so that blocks are freed and used again, and keys
 * deleted and set again), readers check every value they get. */
typedef struct
{
  LyShmWriter *writer;
  LyShmReader *reader;
  guint        n_keys;
  gint         stop;
  gint         readers_found;   /* readers that found a value so far */
  guint64      writes;
} Race;

static gpointer
race_write (gpointer data)
{
  Race *race = data;
  guint64 counter = 0;

  while (!g_atomic_int_get (&race->stop))
    {
      guint key = (guint) (counter % race->n_keys);
      g_autofree char *name = g_strdup_printf ("race%u", key);

      counter++;
      if (counter % 97 == 0)
        change (race->writer, name, NULL);
      else
        change (race->writer, name, ly_test_checked_value (key, counter, counter % 300));
    }
  race->writes = counter;
  return NULL;
}

typedef struct
{
  guint64 reads, found, asked, scans;
} RaceCounts;

static gpointer
race_read (gpointer data)
{
  Race *race = data;
  RaceCounts *counts = g_new0 (RaceCounts, 1);
  g_autoptr(GRand) rand = g_rand_new ();

  while (!g_atomic_int_get (&race->stop))
    {
      guint key = (guint) g_rand_int_range (rand, 0, (gint32) race->n_keys);
      g_autofree char *name = g_strdup_printf ("race%u", key);
      g_autoptr(GVariant) value = NULL;
      LyShmAnswer answer = ly_shm_reader_get (race->reader, name, &value);
      guint64 counter;

      counts->reads++;
      if (answer == LY_SHM_ANSWER_FOUND)
        {
          if (!ly_test_value_is_checked (value, key, &counter))
            g_error ("torn value read for %s: %s", name, g_variant_print (value, TRUE));
          if (counts->found++ == 0)
            g_atomic_int_inc (&race->readers_found);
        }
      else if (answer == LY_SHM_ANSWER_ASK_HUB)
        counts->asked++;
    }
  return counts;
}

static gpointer
race_scan (gpointer data)
{
  Race *race = data;
  RaceCounts *counts = g_new0 (RaceCounts, 1);

  while (!g_atomic_int_get (&race->stop))
    {
      g_autoptr(GVariant) all = NULL;
      GVariantIter iter;
      const char *name;
      GVariant *value;

      counts->reads++;
      if (ly_shm_reader_get_all (race->reader, &all) != LY_SHM_ANSWER_FOUND)
        continue;
      counts->scans++;
      g_variant_iter_init (&iter, all);
      while (g_variant_iter_next (&iter, "{&sv}", &name, &value))
        {
          guint64 counter;

          if (!ly_test_value_is_checked (value, (guint) atoi (name + 4), &counter))
            g_error ("torn value in get-all for %s", name);
          g_variant_unref (value);
        }
    }
  return counts;
}

static void
test_table_threads (void)
{
  g_autoptr(LyShmWriter) writer = writer_new (1024 * 1024);
  g_autoptr(LyShmReader) reader = reader_new (writer);
  Race race = { writer, reader, 64, 0, 0, 0 };
  gint64 deadline;
  GThread *readers[3], *scanner, *writer_thread;
  RaceCounts total = { 0, };
  g_autofree RaceCounts *scans = NULL;

  load_empty_snapshot (writer);
  writer_thread = g_thread_new ("writer", race_write, &race);
  for (guint i = 0; i < G_N_ELEMENTS (readers); i++)
    readers[i] = g_thread_new ("reader", race_read, &race);
  scanner = g_thread_new ("scanner", race_scan, &race);

  /* a second, and under valgrind (which runs one thread at a time) until
   * every reader found a value */
  g_usleep (ly_test_scaled (1000) * 1000);
  deadline = g_get_monotonic_time () + 60 * G_USEC_PER_SEC;
  while (g_atomic_int_get (&race.readers_found) < (gint) G_N_ELEMENTS (readers) &&
         g_get_monotonic_time () < deadline)
    g_usleep (10000);
  g_atomic_int_set (&race.stop, 1);

  g_thread_join (writer_thread);
  for (guint i = 0; i < G_N_ELEMENTS (readers); i++)
    {
      g_autofree RaceCounts *counts = g_thread_join (readers[i]);

      total.reads += counts->reads;
      total.found += counts->found;
      total.asked += counts->asked;
    }
  scans = g_thread_join (scanner);

  g_test_message ("%" G_GUINT64_FORMAT " writes; %" G_GUINT64_FORMAT " reads, %" G_GUINT64_FORMAT
                  " found, %" G_GUINT64_FORMAT " asked of the hub; %" G_GUINT64_FORMAT
                  " of %" G_GUINT64_FORMAT " get-alls answered",
                  race.writes, total.reads, total.found, total.asked, scans->scans, scans->reads);
  g_assert_cmpuint (race.writes, >, 0);
  g_assert_cmpuint (total.found, >, 0);
}

/* Real children -------------------------------------------------------------- */

typedef struct
{
  LyProcessManager *manager;
  LyTestOutput     *output;
  LyStorage        *storage;
} Fixture;

static void
fixture_setup (Fixture       *f,
               gconstpointer  data)
{
  f->output = ly_test_output_new ();
  f->storage = g_object_ref (ly_storage_get_default ());
  f->manager = ly_process_manager_new ();
}

static void
fixture_teardown (Fixture       *f,
                  gconstpointer  data)
{
  g_auto(GStrv) keys = ly_storage_list_keys (f->storage, NULL);

  ly_process_manager_stop_all (f->manager, NULL, NULL);
  g_clear_object (&f->manager);
  g_clear_pointer (&f->output, ly_test_output_free);
  for (guint i = 0; keys[i] != NULL; i++)
    ly_storage_delete (f->storage, keys[i], NULL);
  g_clear_object (&f->storage);
}

static char *
storage_child_path (void)
{
  return g_test_build_filename (G_TEST_BUILT, "ly-test-storage-child", NULL);
}

/* Children that are not restarted: an exit is the end of their work. */
#define add_child(f, name, ...) \
  G_STMT_START { \
    g_autoptr(GError) policy_error = NULL; \
    ly_test_add_storage_child ((f)->manager, (f)->output, name, __VA_ARGS__); \
    ly_process_manager_set_restart_policy ((f)->manager, name, LY_RESTART_NEVER, &policy_error); \
    g_assert_no_error (policy_error); \
  } G_STMT_END
#define start(f, name) ly_test_start ((f)->manager, name)

static void
set (LyStorage  *storage,
     const char *key,
     GVariant   *value)
{
  g_autoptr(GError) error = NULL;

  g_assert_true (ly_storage_set (storage, key, value, &error));
  g_assert_no_error (error);
}

/* The hub changes its keys while children read them. */
typedef struct
{
  LyStorage *storage;
  guint      n_keys;
  guint64    counter;
} Changer;

static gboolean
change_some (gpointer data)
{
  Changer *changer = data;

  for (guint i = 0; i < 16; i++)
    {
      guint key = (guint) (changer->counter % changer->n_keys);
      g_autofree char *name = g_strdup_printf ("shm%u", key);

      changer->counter++;
      set (changer->storage, name, ly_test_checked_value (key, changer->counter, changer->counter % 200));
    }
  return G_SOURCE_CONTINUE;
}

static void
fill_checked_keys (LyStorage *storage,
                   guint      n_keys)
{
  for (guint i = 0; i < n_keys; i++)
    {
      g_autofree char *name = g_strdup_printf ("shm%u", i);

      set (storage, name, ly_test_checked_value (i, 0, 0));
    }
}

/* The hammered line of every reader says nothing was wrong. */
static void
assert_hammered_clean (LyTestOutput *output,
                       guint         n)
{
  g_autofree char *contents = NULL;
  g_auto(GStrv) lines = NULL;
  guint seen = 0;

  g_assert_true (g_file_get_contents (output->path, &contents, NULL, NULL));
  lines = g_strsplit (contents, "\n", -1);
  for (guint i = 0; lines[i] != NULL; i++)
    {
      guint64 reads = 0;
      const char *counts;

      if (!g_str_has_prefix (lines[i], "hammered"))
        continue;
      g_test_message ("%s", lines[i]);
      seen++;
      g_assert_nonnull (strstr (lines[i], "(table mapped)"));
      counts = strstr (lines[i], "): ");
      g_assert_nonnull (counts);
      g_assert_cmpint (sscanf (counts, "): %" G_GUINT64_FORMAT " reads", &reads), ==, 1);
      g_assert_cmpuint (reads, >, 0);
      g_assert_nonnull (strstr (counts, " reads, 0 torn, 0 stale, 0 regressions, 0 own sets missed, 0 absent"));
    }
  g_assert_cmpuint (seen, ==, n);
}

/* Four children read 64 keys as fast as they can while the hub changes
 * them: no value fails its check, none is older than one read or
 * announced before, and a child's own set is seen by its next get. */
static void
test_children_hammer (Fixture       *f,
                      gconstpointer  data)
{
  Changer changer = { f->storage, 64, 0 };
  g_autofree char *msec = g_strdup_printf ("%u", ly_test_scaled (1500));
  guint source;

  fill_checked_keys (f->storage, changer.n_keys);
  for (guint i = 0; i < 4; i++)
    {
      g_autofree char *name = g_strdup_printf ("reader%u", i);

      add_child (f, name, "hammer", "64", msec, NULL);
      start (f, name);
    }

  source = g_idle_add (change_some, &changer);
  ly_test_output_wait (f->output, "hammered", 4, 120);
  g_source_remove (source);

  g_test_message ("the hub made %" G_GUINT64_FORMAT " changes", changer.counter);
  assert_hammered_clean (f->output, 4);
}

/* A child killed while it reads leaves the hub and the other readers
 * as they were; started again, it reads. */
static void
test_children_killed_mid_read (Fixture       *f,
                               gconstpointer  data)
{
  Changer changer = { f->storage, 64, 0 };
  g_autoptr(GError) error = NULL;
  guint fds_before, source;
  GPid victim;

  fill_checked_keys (f->storage, changer.n_keys);
  fds_before = ly_test_count_fds ();
  for (guint i = 0; i < 4; i++)
    {
      g_autofree char *name = g_strdup_printf ("reader%u", i);

      /* long enough to be killed mid-read, even under valgrind */
      add_child (f, name, "hammer", "64", "3000", NULL);
      start (f, name);
    }
  source = g_idle_add (change_some, &changer);
  ly_test_output_wait (f->output, "hammering", 4, 60);
  ly_test_wait_msec (100);

  victim = ly_process_manager_get_pid (f->manager, "reader0", &error);
  g_assert_no_error (error);
  g_assert_cmpint (victim, >, 0);
  g_assert_cmpint (kill (victim, SIGKILL), ==, 0);

  ly_test_output_wait (f->output, "hammered", 3, 120);
  g_assert_cmpuint (ly_test_output_count (f->output, "hammered reader0"), ==, 0);

  /* again */
  ly_test_wait_msec (100);
  start (f, "reader0");
  ly_test_output_wait (f->output, "hammered", 4, 120);
  g_source_remove (source);
  assert_hammered_clean (f->output, 4);

  /* the hub holds no more descriptors than before, once they are gone */
  ly_process_manager_stop_all (f->manager, NULL, NULL);
  ly_test_wait_msec (100);
  g_assert_cmpuint (ly_test_count_fds (), <=, fds_before + 1);
}

/* Reads need no hub: a child reads 10,000 times while the hub serves
 * nobody (its main context does not run).  With the table turned off,
 * the same child waits for the hub. */
static void
read_alone (Fixture  *f,
            gboolean  table)
{
  g_autofree char *flag = g_build_filename (f->output->dir, table ? "frozen" : "frozen-off", NULL);
  g_autofree char *name = g_strdup_printf ("alone-%d", table);
  gint64 deadline;
  guint done = 0;

  add_child (f, name, "read-alone", "greeting", "10000", flag, NULL);
  start (f, name);
  ly_test_output_wait (f->output, "waiting", table ? 1 : 2, 30);

  /* from here on the hub serves nobody for 2 s */
  g_assert_true (g_file_set_contents (flag, "", 0, NULL));
  deadline = g_get_monotonic_time () + 2 * G_USEC_PER_SEC;
  while (g_get_monotonic_time () < deadline && done == 0)
    {
      g_usleep (10000);
      done = ly_test_output_count (f->output, "read greeting 10000 times alone: 10000 present, last hello");
      done -= table ? 0 : MIN (done, 1);
    }
  g_assert_cmpuint (done, ==, table ? 1 : 0);
}

static void
test_children_read_without_hub (Fixture       *f,
                                gconstpointer  data)
{
  g_autoptr(LyStorage) off = ly_storage_new ();

  set (f->storage, "greeting", g_variant_new_string ("hello"));
  read_alone (f, TRUE);

  /* the same with a storage whose table is off */
  g_object_set (off, "shared-memory-size", (guint64) 0, NULL);
  g_clear_object (&f->manager);
  f->manager = g_object_new (LY_TYPE_PROCESS_MANAGER, "storage", off, NULL);
  set (off, "greeting", g_variant_new_string ("hello"));
  read_alone (f, FALSE);
  ly_test_output_wait (f->output, "read greeting 10000 times alone", 2, 60);
}

/* A child allowed to read only some keys gets no table (it holds every
 * key) and reads the others with round trips, refused where it must
 * be; one allowed everything gets it. */
static void
test_children_read_policy (Fixture       *f,
                           gconstpointer  data)
{
  const char *readable[] = { "public.*", NULL };
  const char *writable[] = { NULL };
  g_autoptr(GError) error = NULL;

  set (f->storage, "public.x", g_variant_new_string ("shown"));
  set (f->storage, "secret.y", g_variant_new_string ("hidden"));

  add_child (f, "limited", "table", "public.x", "secret.y", NULL);
  g_assert_true (ly_process_manager_set_storage_access (f->manager, "limited", readable, writable, &error));
  g_assert_no_error (error);
  add_child (f, "trusted", "table", "secret.y", NULL);
  start (f, "limited");
  start (f, "trusted");

  ly_test_output_wait (f->output, "read secret.y", 2, 30);
  g_assert_cmpuint (ly_test_output_count (f->output, "table not mapped"), ==, 1);
  g_assert_cmpuint (ly_test_output_count (f->output, "table mapped"), ==, 1);
  g_assert_cmpuint (ly_test_output_count (f->output, "read public.x = 'shown' (no error)"), ==, 1);
  g_assert_cmpuint (ly_test_output_count (f->output, "read secret.y = absent (ly-storage-error-quark)"), ==, 1);
  g_assert_cmpuint (ly_test_output_count (f->output, "read secret.y = 'hidden' (no error)"), ==, 1);
}

/* A hub killed while its children read takes them with it; the next
 * hub's children read the next hub's values, in a table of its own. */
static void
test_hub_restart (void)
{
  g_autoptr(LyTestOutput) output = ly_test_output_new ();
  g_autofree char *child = storage_child_path ();
  g_autofree char *commands = NULL;

  g_setenv ("LY_TEST_OUTPUT", output->path, TRUE);
  for (guint round = 0; round < 2; round++)
    {
      g_autoptr(GSubprocess) hub = NULL;
      g_autoptr(GArray) pids = NULL;
      const char *value = round == 0 ? "one" : "two";
      g_autofree char *expected = g_strdup_printf ("follow greeting = '%s'", value);

      g_free (commands);
      /* the setter stays, so that the hub reports both children alive */
      commands = g_strdup_printf ("/bin/sh -c '%s set greeting %s; exec sleep 600'|%s follow greeting",
                                  child, value, child);
      g_setenv ("LY_TEST_HUB_CHILD", commands, TRUE);
      pids = ly_test_spawn_hub (&hub, 2);
      ly_test_output_wait (output, expected, 1, 30);
      g_assert_cmpuint (ly_test_output_count (output, "follower: table mapped"), ==, round + 1);

      g_subprocess_force_exit (hub);
      g_subprocess_wait (hub, NULL, NULL);
      ly_test_assert_all_gone (pids);
    }
  g_unsetenv ("LY_TEST_HUB_CHILD");
  g_unsetenv ("LY_TEST_OUTPUT");

  /* each follower saw its own hub's value, never the other's */
  g_assert_cmpuint (ly_test_output_count (output, "follow greeting = 'one'"), ==, 1);
  g_assert_cmpuint (ly_test_output_count (output, "follow greeting = 'two'"), ==, 1);
}

int
main (int   argc,
      char *argv[])
{
  g_test_init (&argc, &argv, NULL);
  signal (SIGPIPE, SIG_IGN);

  g_test_add_func ("/storage-shm/table/operations", test_table_operations);
  g_test_add_func ("/storage-shm/table/large-values", test_table_large_values);
  g_test_add_func ("/storage-shm/table/full", test_table_full);
  g_test_add_func ("/storage-shm/table/churn", test_table_churn);
  g_test_add_func ("/storage-shm/table/full-churn", test_table_full_churn);
  g_test_add_func ("/storage-shm/table/snapshot-order", test_table_snapshot_order);
  g_test_add_func ("/storage-shm/table/writer-gone", test_table_writer_gone);
  g_test_add_func ("/storage-shm/table/read-only", test_table_read_only);
  g_test_add_func ("/storage-shm/table/hostile-files", test_table_hostile_files);
  g_test_add_func ("/storage-shm/table/threads", test_table_threads);

#define CHILDREN_TEST(path, func) \
  g_test_add ("/storage-shm/children/" path, Fixture, NULL, fixture_setup, func, fixture_teardown)

  CHILDREN_TEST ("hammer", test_children_hammer);
  CHILDREN_TEST ("killed-mid-read", test_children_killed_mid_read);
  CHILDREN_TEST ("read-without-hub", test_children_read_without_hub);
  CHILDREN_TEST ("read-policy", test_children_read_policy);
  g_test_add_func ("/storage-shm/hub-restart", test_hub_restart);

  return g_test_run ();
}

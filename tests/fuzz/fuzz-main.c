/* fuzz-main.c: runs a fuzz target without libFuzzer
 *
 * Usage: fuzz-TARGET [--mutations N] [--seed S] PATH...
 *
 * Runs the target on every file given (a directory: on each file in it),
 * then on N mutations of those inputs (bit flips, byte changes, inserted,
 * deleted and repeated ranges, splices of two inputs), chosen by a
 * random generator seeded with S, so that a failure can be replayed.
 * A crash, an abort or a sanitizer report ends the program; reaching the
 * end means every input passed.  This is what `meson test` runs: the
 * seed corpus and the regressions on every change, with the sanitizers
 * in the ASan build.  libFuzzer (-Dfuzzing=true) explores much further.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "fuzz-common.h"

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <unistd.h>

#define MAX_INPUT_SIZE (64 * 1024)

/* The input being run, written out by a crash, so that it can become a
 * regression input: only async-signal-safe calls in the handler. */
static const guint8 *current_data;
static gsize current_size;

static void
on_crash (int signum)
{
  static const char message[] = "fuzz-main: the input that failed is in ./fuzz-failed-input\n";
  int fd = open ("fuzz-failed-input", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

  if (fd >= 0)
    {
      if (write (fd, current_data, current_size) < 0 || write (2, message, sizeof message - 1) < 0)
        {
          /* nothing more can be done in a crashing process */
        }
      close (fd);
    }
  signal (signum, SIG_DFL);
  raise (signum);
}

static void
run_one (const guint8 *data,
         gsize         size)
{
  current_data = data;
  current_size = size;
  LLVMFuzzerTestOneInput (data, size);
}

static int
compare_paths (gconstpointer a,
               gconstpointer b)
{
  return g_strcmp0 (*(const char * const *) a, *(const char * const *) b);
}

static void
add_path (GPtrArray  *inputs,
          const char *path)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(GDir) dir = NULL;
  g_autoptr(GPtrArray) names = NULL;
  char *contents;
  gsize length;
  const char *name;

  if (!g_file_test (path, G_FILE_TEST_IS_DIR))
    {
      if (!g_file_get_contents (path, &contents, &length, &error))
        g_error ("%s", error->message);
      g_ptr_array_add (inputs, g_bytes_new_take (contents, length));
      return;
    }

  dir = g_dir_open (path, 0, &error);
  if (dir == NULL)
    g_error ("%s", error->message);
  names = g_ptr_array_new_with_free_func (g_free);
  while ((name = g_dir_read_name (dir)) != NULL)
    if (name[0] != '.')
      g_ptr_array_add (names, g_build_filename (path, name, NULL));
  g_ptr_array_sort (names, compare_paths);
  for (guint i = 0; i < names->len; i++)
    add_path (inputs, g_ptr_array_index (names, i));
}

static const guint8 interesting[] = { 0x00, 0x01, 0x7f, 0x80, 0xff, 0xfe, '(', ')', '\'', '"', '[', '{', '\n', '=' };

/* One random change of @data. */
static void
mutate_once (GByteArray *data,
             GRand      *rand,
             GPtrArray  *inputs)
{
  guint len = data->len;
  guint at = len > 0 ? (guint) g_rand_int_range (rand, 0, (gint32) len) : 0;
  guint span = (guint) g_rand_int_range (rand, 1, 17);
  guint8 byte = (guint8) g_rand_int_range (rand, 0, 256);

  span = MIN (span, len - at);

  switch (g_rand_int_range (rand, 0, 8))
    {
    case 0:     /* flip a bit */
      if (len > 0)
        data->data[at] ^= (guint8) (1u << g_rand_int_range (rand, 0, 8));
      break;
    case 1:     /* a random byte */
      if (len > 0)
        data->data[at] = byte;
      break;
    case 2:     /* an interesting byte */
      if (len > 0)
        data->data[at] = interesting[g_rand_int_range (rand, 0, G_N_ELEMENTS (interesting))];
      break;
    case 3:     /* insert a byte */
      g_array_insert_val ((GArray *) data, at, byte);
      break;
    case 4:     /* delete a range */
      if (len > 0)
        g_byte_array_remove_range (data, at, span);
      break;
    case 5:     /* repeat a range */
      if (len > 0 && len + span <= MAX_INPUT_SIZE)
        {
          g_byte_array_set_size (data, len + span);
          memmove (data->data + at + span, data->data + at, len - at);
        }
      break;
    case 6:     /* truncate */
      g_byte_array_set_size (data, at);
      break;
    default:    /* splice: the tail of another input */
      {
        GBytes *other = g_ptr_array_index (inputs, g_rand_int_range (rand, 0, (gint32) inputs->len));
        gsize other_len;
        const guint8 *other_data = g_bytes_get_data (other, &other_len);
        gsize from = other_len > 0 ? (gsize) g_rand_int_range (rand, 0, (gint32) other_len) : 0;

        g_byte_array_set_size (data, at);
        g_byte_array_append (data, other_data + from, MIN (other_len - from, MAX_INPUT_SIZE - at));
      }
    }
}

int
main (int   argc,
      char *argv[])
{
  gint64 mutations = 0;
  gint64 seed = 1;
  GOptionEntry entries[] = {
    { "mutations", 'm', 0, G_OPTION_ARG_INT64, &mutations, "Run this many mutated inputs after the given ones", "N" },
    { "seed", 's', 0, G_OPTION_ARG_INT64, &seed, "Seed of the mutations", "S" },
    { NULL }
  };
  g_autoptr(GOptionContext) context = g_option_context_new ("PATH… — run a fuzz target on files and their mutations");
  g_autoptr(GPtrArray) inputs = g_ptr_array_new_with_free_func ((GDestroyNotify) g_bytes_unref);
  g_autoptr(GError) error = NULL;
  g_autoptr(GRand) rand = NULL;
  guint n_files;

  g_option_context_add_main_entries (context, entries, NULL);
  if (!g_option_context_parse (context, &argc, &argv, &error))
    {
      g_printerr ("%s\n", error->message);
      return 2;
    }

  LLVMFuzzerInitialize (&argc, &argv);
  signal (SIGABRT, on_crash);
  signal (SIGSEGV, on_crash);
  signal (SIGBUS, on_crash);
  signal (SIGFPE, on_crash);

  for (int i = 1; i < argc; i++)
    add_path (inputs, argv[i]);
  n_files = inputs->len;
  if (n_files == 0 && mutations > 0)
    g_ptr_array_add (inputs, g_bytes_new (NULL, 0));

  for (guint i = 0; i < n_files; i++)
    {
      gsize size;
      const guint8 *data = g_bytes_get_data (g_ptr_array_index (inputs, i), &size);

      run_one (data, size);
    }

  rand = g_rand_new_with_seed ((guint32) seed);
  for (gint64 i = 0; i < mutations; i++)
    {
      gsize size;
      const guint8 *data = g_bytes_get_data (g_ptr_array_index (inputs, g_rand_int_range (rand, 0, (gint32) inputs->len)), &size);
      g_autoptr(GByteArray) mutated = g_byte_array_sized_new ((guint) size + 16);
      guint n_changes = (guint) g_rand_int_range (rand, 1, 9);

      g_byte_array_append (mutated, data, (guint) size);
      for (guint j = 0; j < n_changes; j++)
        mutate_once (mutated, rand, inputs);

      run_one (mutated->data, mutated->len);
    }

  printf ("%s: %u inputs and %" G_GINT64_FORMAT " mutations (seed %" G_GINT64_FORMAT ") passed\n",
          argv[0], n_files, mutations, seed);
  return 0;
}

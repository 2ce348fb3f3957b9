/* fuzz-common.h: what every fuzz target shares
 *
 * Each target defines LLVMFuzzerTestOneInput().  Built with
 * -Dfuzzing=true (clang), libFuzzer drives it; otherwise fuzz-main.c
 * replays the corpus and a bounded number of mutations of it, so that
 * every `meson test` (and the sanitizer build of .ci/run) runs it.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <glib.h>

int LLVMFuzzerTestOneInput (const uint8_t *data,
                            size_t         size);
int LLVMFuzzerInitialize   (int           *argc,
                            char        ***argv);

/* Bad input may be reported with g_warning() (a hostile peer is cut with
 * one), but a critical is a bug in the library: abort, so that the
 * fuzzer keeps the input.  The rest is not printed: millions of runs. */
static inline GLogWriterOutput
fuzz_log_writer (GLogLevelFlags   log_level,
                 const GLogField *fields,
                 gsize            n_fields,
                 gpointer         user_data)
{
  if ((log_level & (G_LOG_LEVEL_CRITICAL | G_LOG_LEVEL_ERROR)) != 0)
    {
      g_log_writer_standard_streams (log_level, fields, n_fields, user_data);
      abort ();
    }

  return G_LOG_WRITER_HANDLED;
}

static inline void
fuzz_init_logging (void)
{
  g_log_set_writer_func (fuzz_log_writer, NULL, NULL);
}

/* The LLVMFuzzerInitialize() of a target: quiet logging, and no child
 * runtime (the fuzzer is the hub). */
#define FUZZ_DEFINE_INITIALIZE() \
  int \
  LLVMFuzzerInitialize (int    *argc, \
                        char ***argv) \
  { \
    fuzz_init_logging (); \
    g_unsetenv ("LY_PROCESS_NAME"); \
    return 0; \
  }

/* The input as a NUL-terminated string (text formats are read as such). */
static inline char *
fuzz_input_to_string (const uint8_t *data,
                      size_t         size)
{
  char *text = g_malloc (size + 1);

  memcpy (text, data, size);
  text[size] = '\0';
  return text;
}

/* test-variant.c: the wire's fast normal-form check against GLib's
 *
 * ly_variant_is_surely_normal() may say FALSE where GLib says TRUE (then
 * GLib decides), never TRUE where GLib says FALSE; and for the normal
 * data GLib itself writes it must say TRUE, or it would be no faster.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "config.h"

#include <string.h>

#include "ly-variant-private.h"

static const char *const basic = "bynqiuxthdsog";

static void
random_type (GRand   *rand,
             GString *type,
             int      depth)
{
  guint kind = g_rand_int_range (rand, 0, depth > 3 ? 6 : 11);

  if (kind < 5)
    g_string_append_c (type, basic[g_rand_int_range (rand, 0, strlen (basic))]);
  else if (kind == 5)
    g_string_append_c (type, 'v');
  else if (kind == 6)
    {
      g_string_append_c (type, 'm');
      random_type (rand, type, depth + 1);
    }
  else if (kind == 7 || kind == 8)
    {
      g_string_append_c (type, 'a');
      random_type (rand, type, depth + 1);
    }
  else if (kind == 9)
    {
      g_string_append (type, "a{");
      g_string_append_c (type, basic[g_rand_int_range (rand, 0, strlen (basic))]);
      random_type (rand, type, depth + 1);
      g_string_append_c (type, '}');
    }
  else
    {
      guint n = g_rand_int_range (rand, 0, 4);

      g_string_append_c (type, '(');
      for (guint i = 0; i < n; i++)
        random_type (rand, type, depth + 1);
      g_string_append_c (type, ')');
    }
}

static gboolean
glib_says_normal (const char   *type,
                  const guint8 *data,
                  gsize         size)
{
  g_autoptr(GBytes) bytes = g_bytes_new (data, size);
  g_autoptr(GVariant) value = g_variant_ref_sink (g_variant_new_from_bytes (G_VARIANT_TYPE (type), bytes, FALSE));

  return g_variant_is_normal_form (value);
}

/* A normal value of @type that is not all defaults: GLib's normal form
 * of random bytes, many times, keeping the largest. */
static GVariant *
random_normal_value (GRand      *rand,
                     const char *type)
{
  GVariant *best = NULL;

  for (int attempt = 0; attempt < 8; attempt++)
    {
      gsize size = g_rand_int_range (rand, 0, 64);
      guint8 *data = g_malloc (size + 1);
      g_autoptr(GBytes) bytes = NULL;
      g_autoptr(GVariant) raw = NULL;
      GVariant *normal;

      for (gsize i = 0; i < size; i++)
        data[i] = g_rand_int_range (rand, 0, 4) == 0 ? g_rand_int_range (rand, 0, 256)
                                                      : "\0\1\2a/ys"[g_rand_int_range (rand, 0, 7)];
      bytes = g_bytes_new_take (data, size);
      raw = g_variant_ref_sink (g_variant_new_from_bytes (G_VARIANT_TYPE (type), bytes, FALSE));
      normal = g_variant_get_normal_form (raw);
      if (best == NULL || g_variant_get_size (normal) > g_variant_get_size (best))
        {
          g_clear_pointer (&best, g_variant_unref);
          best = normal;
        }
      else
        g_variant_unref (normal);
    }
  return best;
}

static void
test_never_more_lenient_than_glib (void)
{
  g_autoptr(GRand) rand = g_rand_new_with_seed (20261201);
  guint normal_values = 0, recognised = 0, mutants = 0, accepted_mutants = 0;
  guint rounds = g_getenv ("LY_TEST_QUICK") != NULL ? 300 : 3000;

  for (guint round = 0; round < rounds; round++)
    {
      g_autoptr(GString) type = g_string_new (NULL);
      g_autoptr(GVariant) value = NULL;
      const guint8 *data;
      gsize size;

      random_type (rand, type, 0);
      value = random_normal_value (rand, type->str);
      data = g_variant_get_data (value);
      size = g_variant_get_size (value);

      g_assert_true (glib_says_normal (type->str, data, size));
      normal_values++;
      if (ly_variant_is_surely_normal (type->str, data, size))
        recognised++;

      /* mutants: a byte changed, one cut off, one added */
      for (int m = 0; m < 12; m++)
        {
          gsize mutant_size = size;
          guint8 *mutant = g_malloc0 (size + 2);
          gboolean fast;

          if (size > 0)
            memcpy (mutant, data, size);
          switch (m % 3)
            {
            case 0:
              if (size > 0)
                mutant[g_rand_int_range (rand, 0, size)] = g_rand_int_range (rand, 0, 256);
              break;
            case 1:
              if (size > 0)
                mutant_size--;
              break;
            default:
              mutant[mutant_size++] = g_rand_int_range (rand, 0, 3);
              break;
            }
          fast = ly_variant_is_surely_normal (type->str, mutant, mutant_size);
          if (fast && !glib_says_normal (type->str, mutant, mutant_size))
            g_error ("type %s: %zu bytes accepted that GLib rejects", type->str, mutant_size);
          mutants++;
          accepted_mutants += fast;
          g_free (mutant);
        }
    }

  g_test_message ("%u normal values, %u recognised as surely normal; %u mutants, %u accepted (all normal)",
                  normal_values, recognised, mutants, accepted_mutants);
  /* no faster than GLib if it vouched for little */
  g_assert_cmpuint (recognised * 10, >=, normal_values * 9);
}

typedef struct
{
  const char *type;
  const char *data;
  gsize       size;
} Case;

static void
test_known_cases (void)
{
  static const Case cases[] = {
    { "s", "hello", 6 },
    { "s", "he\0lo", 6 },                      /* a NUL inside */
    { "s", "hello", 5 },                       /* no NUL at the end */
    { "s", "\xc3\x28", 3 },                    /* invalid UTF-8 */
    { "s", "\xed\xa0\x80", 4 },                /* a surrogate */
    { "s", "\xc0\xaf", 3 },                    /* overlong */
    { "s", "abcdefgh\xc3\xa9ijklmnop", 19 },   /* non-ASCII after a word */
    { "s", "", 0 },
    { "o", "/a/b", 5 },
    { "o", "a/b", 4 },
    { "g", "a{sv}", 6 },
    { "g", "a{vs}", 6 },
    { "b", "\x01", 1 },
    { "b", "\x02", 1 },
    { "ab", "\x00\x01\x02", 3 },
    { "v", "\x05\x00\x00\x00\x00u", 6 },
    { "v", "x\x00\x00*", 4 },                  /* indefinite */
    { "v", "\x05\x00u", 3 },                   /* a u of one byte */
    { "as", "a\0bc\0\x02\x05", 7 },
    { "as", "a\0bc\0\x02\x06", 7 },            /* an offset out of place */
    { "(ys)", "\x01" "ab\0", 4 },
    { "(sy)", "ab\0\x01\x03", 5 },
    { "(sy)", "ab\0\x01\x07\x03", 6 },         /* a byte left over */
    { "(yx)", "\x01\0\0\0\0\0\0\0\x01\0\0\0\0\0\0\0", 16 },
    { "(yx)", "\x01\0\0\x01\0\0\0\0\x01\0\0\0\0\0\0\0", 16 },   /* padding not zero */
    { "ms", "", 0 },
    { "ms", "a\0\0", 3 },
    { "ms", "a\0", 2 },                        /* no maybe's NUL */
    { "a{sv}", "k\0\0\0\0\0\0\0\x01\0\0\0\0\0\0\0\0x\x02", 19 },
    { "()", "\0", 1 },
    { "()", "\1", 1 },
  };
  static const guint8 zeros[256] = { 0 };

  for (gsize i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      gboolean fast = ly_variant_is_surely_normal (cases[i].type, (const guint8 *) cases[i].data, cases[i].size);
      gboolean glib = glib_says_normal (cases[i].type, (const guint8 *) cases[i].data, cases[i].size);

      if (fast)
        g_assert_true (glib);
      /* every one of these is simple enough to be decided here */
      g_assert_cmpint (fast, ==, glib);
    }

  /* found by fuzz-variant: 128 empty arrays framed with two-byte offsets
   * where one byte does (GLib: not normal) */
  g_assert_false (ly_variant_is_surely_normal ("aas", zeros, sizeof zeros));
  g_assert_false (glib_says_normal ("aas", zeros, sizeof zeros));
  g_assert_true (ly_variant_is_surely_normal ("aas", zeros, 128));
}

int
main (int   argc,
      char *argv[])
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/variant/known-cases", test_known_cases);
  g_test_add_func ("/variant/never-more-lenient-than-glib", test_never_more_lenient_than_glib);
  return g_test_run ();
}

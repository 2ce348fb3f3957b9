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

#include "ly-utf8-private.h"
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

static void
assert_utf8_prefix_as_glib (const guint8 *buffer,
                            gsize         end,
                            const guint8 *text,
                            gsize         length,
                            gsize         offset)
{
  gboolean fast = ly_utf8_validate ((const char *) buffer, end);
  gboolean glib = g_utf8_validate_len ((const char *) buffer, end, NULL);

  if (fast != glib)
    {
      g_autoptr(GString) hex = g_string_new (NULL);

      for (gsize i = 0; i < length; i++)
        g_string_append_printf (hex, " %02x", text[i]);
      g_error ("UTF-8 of%s at byte %zu of %zu: GLib says %d, the fast validator %d",
               hex->str, offset, end, glib, fast);
    }
}

/* The fast validator and GLib's on @text, placed across each boundary
 * of the 16-, 32- and 64-byte blocks the fast ones work in (at 32, 48
 * and 64), in ASCII long enough for them: followed by more ASCII, and
 * at the very end. */
static void
assert_utf8_as_glib (const guint8 *text,
                     gsize         length)
{
  static const gsize boundaries[] = { 32, 48, 64 };
  /* under valgrind, the 64-byte one only */
  gsize first = g_getenv ("LY_TEST_QUICK") != NULL ? 2 : 0;
  guint8 buffer[128];

  g_assert_cmpuint (length, <=, 32);
  memset (buffer, 'a', sizeof buffer);
  for (gsize b = first; b < G_N_ELEMENTS (boundaries); b++)
    for (gsize start = boundaries[b] - MIN (length, 5); start <= boundaries[b]; start++)
      {
        memcpy (buffer + start, text, length);
        assert_utf8_prefix_as_glib (buffer, sizeof buffer, text, length, start);
        assert_utf8_prefix_as_glib (buffer, start + length, text, length, start);
        memset (buffer + start, 'a', length);
      }
}

/* Every sequence of one or two bytes, every three-byte one with a lead
 * of 0xe0 or more, the four-byte ones with every second byte, and the
 * same followed by a continuation or a lead: the fast validator says
 * what GLib says of each, wherever it falls across a block's end. */
static void
test_utf8_sequences (void)
{
  static const guint8 tails[] = { 0x80, 0xbf, 0x41, 0xc0, 0x00 };
  gboolean quick = g_getenv ("LY_TEST_QUICK") != NULL;
  guint checked = 0;

  for (guint a = 0; a < 256; a++)
    {
      guint8 one[1] = { a };

      assert_utf8_as_glib (one, 1);
      for (guint b = 0; b < 256; b++)
        {
          guint8 two[2] = { a, b };

          assert_utf8_as_glib (two, 2);
          checked += 2;
        }
    }

  for (guint a = 0xe0; a < 0x100; a += quick ? 7 : 1)
    for (guint b = 0; b < 256; b += quick ? 3 : 1)
      for (guint c = 0; c < 256; c += (b >= 0x80 && b < 0xc0) ? 1 : 17)
        {
          guint8 three[3] = { a, b, c };

          assert_utf8_as_glib (three, 3);
          checked++;
        }

  for (guint a = 0xf0; a < 0x100; a++)
    for (guint b = 0; b < 256; b++)
      for (gsize c = 0; c < G_N_ELEMENTS (tails); c++)
        for (gsize d = 0; d < G_N_ELEMENTS (tails); d++)
          {
            guint8 four[5] = { a, b, tails[c], tails[d], 0x80 };

            assert_utf8_as_glib (four, 4);
            assert_utf8_as_glib (four, 5);
            checked += 2;
          }
  g_test_message ("%u sequences checked across block boundaries", checked);
}

/* Real text (CJK, emoji, Latin) with random damage: the same answers. */
static void
test_utf8_damaged_text (void)
{
  static const char *const texts[] = {
    "轻雪机器人，一个基于 NoneBot2 的机器人框架。",
    "Grüße aus Köln — naïve café, ½ € ≠ ¥ 😀👍🏽🇨🇳",
    "𝄞 music, 𐍈 gothic, ᚠ runes, ☃ snow",
  };
  g_autoptr(GRand) rand = g_rand_new_with_seed (14);
  guint rounds = g_getenv ("LY_TEST_QUICK") != NULL ? 2000 : 100000;

  for (guint round = 0; round < rounds; round++)
    {
      const char *text = texts[round % G_N_ELEMENTS (texts)];
      gsize length = strlen (text);
      g_autofree guint8 *copy = (guint8 *) g_strdup (text);
      g_autoptr(GString) long_text = g_string_new (NULL);
      guint damage = g_rand_int_range (rand, 0, 3);

      for (guint i = 0; i < damage; i++)
        copy[g_rand_int_range (rand, 0, length)] = (guint8) g_rand_int_range (rand, 0, 256);

      /* long enough for the 16-byte path, the damage anywhere in it */
      for (guint i = g_rand_int_range (rand, 0, 8); i > 0; i--)
        g_string_append (long_text, texts[g_rand_int_range (rand, 0, G_N_ELEMENTS (texts))]);
      g_string_append_len (long_text, (const char *) copy, length);
      g_string_append (long_text, texts[0]);
      for (gsize end = long_text->len - 16; end <= long_text->len; end++)
        g_assert_cmpint (ly_utf8_validate (long_text->str, end), ==,
                         g_utf8_validate_len (long_text->str, end, NULL));
    }
}

int
main (int   argc,
      char *argv[])
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/variant/known-cases", test_known_cases);
  g_test_add_func ("/variant/never-more-lenient-than-glib", test_never_more_lenient_than_glib);
  g_test_add_func ("/utf8/sequences", test_utf8_sequences);
  g_test_add_func ("/utf8/damaged-text", test_utf8_damaged_text);
  return g_test_run ();
}

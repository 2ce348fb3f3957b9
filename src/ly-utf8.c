/* ly-utf8.c: UTF-8 validation at memory speed
 *
 * Every string a peer sends is validated before GLib may trust it, and
 * g_utf8_validate_len() goes byte by byte: for a megabyte of text it
 * costs more than the socket.  This validates 16 bytes at a time with
 * SSSE3 where the processor has it, by the lookup-table method of
 * Keiser and Lemire ("Validating UTF-8 in less than one instruction per
 * byte", 2021, as simdjson and simdutf do it): each byte's high nibble
 * and its predecessor's two nibbles index three 16-entry tables whose
 * entries are bit sets of the errors the pair could be; the AND of the
 * three is the errors the pair is.  What the pairs cannot see (a third
 * or fourth byte that must be a continuation) comes from the bytes two
 * and three back.
 *
 * The answer is exactly g_utf8_validate_len()'s: well-formed UTF-8
 * (no overlong forms, no surrogates, nothing above U+10FFFF, no
 * truncated sequence) without a NUL byte.  tests/fuzz/fuzz-utf8.c and
 * test-variant compare the two on every input they have.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "config.h"

#include <string.h>

#include "ly-utf8-private.h"

#define ONES  G_GUINT64_CONSTANT (0x0101010101010101)
#define HIGHS G_GUINT64_CONSTANT (0x8080808080808080)

/* Whether @word's 8 bytes are ASCII other than NUL. */
static inline gboolean
word_is_plain_ascii (guint64 word)
{
  /* a byte with its high bit set, or a zero byte */
  return (word & HIGHS) == 0 && ((word - ONES) & ~word & HIGHS) == 0;
}

/* The portable way: ASCII a word at a time, the rest by GLib. */
static gboolean
validate_scalar (const char *text,
                 gsize       length)
{
  gsize i = 0;

  for (; i + 8 <= length; i += 8)
    {
      guint64 word;

      memcpy (&word, text + i, 8);
      if (!word_is_plain_ascii (word))
        break;
    }
  for (; i < length && (guchar) text[i] < 0x80; i++)
    if (text[i] == '\0')
      return FALSE;
  return i == length || g_utf8_validate_len (text + i, length - i, NULL);
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define HAVE_SSSE3_VALIDATOR 1

#include <immintrin.h>

/* The errors a pair of bytes can show, one bit each. */
enum
{
  TOO_SHORT      = 1 << 0,  /* 11______ 0_______, 11______ 11______ */
  TOO_LONG       = 1 << 1,  /* 0_______ 10______ */
  OVERLONG_3     = 1 << 2,  /* 11100000 100_____ */
  TOO_LARGE      = 1 << 3,  /* 11110100 1001____, 11110100 101_____, 11110101+ 1001____+ */
  SURROGATE      = 1 << 4,  /* 11101101 101_____ */
  OVERLONG_2     = 1 << 5,  /* 1100000_ 10______ */
  TOO_LARGE_1000 = 1 << 6,  /* 11110101+ 1000____ */
  OVERLONG_4     = 1 << 6,  /* 11110000 1000____ (shares the bit: the first nibble tells) */
  TWO_CONTS      = 1 << 7,  /* 10______ 10______ */
  CARRY          = TOO_SHORT | TOO_LONG | TWO_CONTS,
};

static const char byte_1_high[16] = {
  /* 0_______ ________: ASCII first */
  TOO_LONG, TOO_LONG, TOO_LONG, TOO_LONG, TOO_LONG, TOO_LONG, TOO_LONG, TOO_LONG,
  /* 10______ ________: a continuation first */
  TWO_CONTS, TWO_CONTS, TWO_CONTS, TWO_CONTS,
  /* 1100____, 1101____: a two-byte lead */
  TOO_SHORT | OVERLONG_2, TOO_SHORT,
  /* 1110____: a three-byte lead */
  TOO_SHORT | OVERLONG_3 | SURROGATE,
  /* 1111____: a four-byte lead (or worse) */
  (char) (TOO_SHORT | TOO_LARGE | TOO_LARGE_1000 | OVERLONG_4),
};
static const char byte_1_low[16] = {
  /* ____0000 */ (char) (CARRY | OVERLONG_3 | OVERLONG_2 | OVERLONG_4),
  /* ____0001 */ (char) (CARRY | OVERLONG_2),
  /* ____001_ */ (char) CARRY, (char) CARRY,
  /* ____0100 */ (char) (CARRY | TOO_LARGE),
  /* ____0101 */ (char) (CARRY | TOO_LARGE | TOO_LARGE_1000),
  /* ____011_ */ (char) (CARRY | TOO_LARGE | TOO_LARGE_1000), (char) (CARRY | TOO_LARGE | TOO_LARGE_1000),
  /* ____1___ */ (char) (CARRY | TOO_LARGE | TOO_LARGE_1000), (char) (CARRY | TOO_LARGE | TOO_LARGE_1000),
                 (char) (CARRY | TOO_LARGE | TOO_LARGE_1000), (char) (CARRY | TOO_LARGE | TOO_LARGE_1000),
                 (char) (CARRY | TOO_LARGE | TOO_LARGE_1000),
  /* ____1101 */ (char) (CARRY | TOO_LARGE | TOO_LARGE_1000 | SURROGATE),
  /* ____111_ */ (char) (CARRY | TOO_LARGE | TOO_LARGE_1000), (char) (CARRY | TOO_LARGE | TOO_LARGE_1000),
};
static const char byte_2_high[16] = {
  /* ________ 0_______: ASCII second */
  TOO_SHORT, TOO_SHORT, TOO_SHORT, TOO_SHORT, TOO_SHORT, TOO_SHORT, TOO_SHORT, TOO_SHORT,
  /* ________ 1000____ */
  (char) (TOO_LONG | OVERLONG_2 | TWO_CONTS | OVERLONG_3 | TOO_LARGE_1000 | OVERLONG_4),
  /* ________ 1001____ */
  (char) (TOO_LONG | OVERLONG_2 | TWO_CONTS | OVERLONG_3 | TOO_LARGE),
  /* ________ 101_____ */
  (char) (TOO_LONG | OVERLONG_2 | TWO_CONTS | SURROGATE | TOO_LARGE),
  (char) (TOO_LONG | OVERLONG_2 | TWO_CONTS | SURROGATE | TOO_LARGE),
  /* ________ 11______: a lead second */
  TOO_SHORT, TOO_SHORT, TOO_SHORT, TOO_SHORT,
};

#define TARGET_SSSE3 __attribute__ ((target ("ssse3")))

static inline TARGET_SSSE3 __m128i
lookup (__m128i     nibbles,
        const char *table)
{
  return _mm_shuffle_epi8 (_mm_loadu_si128 ((const __m128i *) table), nibbles);
}

static inline TARGET_SSSE3 __m128i
high_nibbles (__m128i bytes)
{
  return _mm_and_si128 (_mm_srli_epi16 (bytes, 4), _mm_set1_epi8 (0x0f));
}

/* The errors of each byte with the one before it. */
static inline TARGET_SSSE3 __m128i
pair_errors (__m128i input,
             __m128i prev1)
{
  return _mm_and_si128 (_mm_and_si128 (lookup (high_nibbles (prev1), byte_1_high),
                                       lookup (_mm_and_si128 (prev1, _mm_set1_epi8 (0x0f)), byte_1_low)),
                        lookup (high_nibbles (input), byte_2_high));
}

/* All errors of a block: the pairs', and the third and fourth bytes of
 * sequences (which must be continuations, and are where the pair
 * tables said TWO_CONTS). */
static inline TARGET_SSSE3 __m128i
block_errors (__m128i input,
              __m128i previous)
{
  __m128i prev1 = _mm_alignr_epi8 (input, previous, 15);
  __m128i prev2 = _mm_alignr_epi8 (input, previous, 14);
  __m128i prev3 = _mm_alignr_epi8 (input, previous, 13);
  /* >= 0x80 exactly where the byte two back is 111_____, or three back 1111____ */
  __m128i third = _mm_subs_epu8 (prev2, _mm_set1_epi8 ((char) (0xe0 - 0x80)));
  __m128i fourth = _mm_subs_epu8 (prev3, _mm_set1_epi8 ((char) (0xf0 - 0x80)));
  __m128i must_continue = _mm_and_si128 (_mm_or_si128 (third, fourth), _mm_set1_epi8 ((char) 0x80));
  __m128i nul = _mm_cmpeq_epi8 (input, _mm_setzero_si128 ());

  return _mm_or_si128 (_mm_xor_si128 (must_continue, pair_errors (input, prev1)), nul);
}

/* Nonzero where the block's last bytes start a sequence it does not
 * finish: the next block must, or the text is truncated. */
static inline TARGET_SSSE3 __m128i
unfinished (__m128i input)
{
  const __m128i max = _mm_setr_epi8 (-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
                                     (char) (0xf0 - 1), (char) (0xe0 - 1), (char) (0xc0 - 1));

  return _mm_subs_epu8 (input, max);
}

static TARGET_SSSE3 gboolean
validate_ssse3 (const char *text,
                gsize       length)
{
  __m128i previous = _mm_setzero_si128 ();
  __m128i errors = _mm_setzero_si128 ();
  __m128i pending = _mm_setzero_si128 ();
  gsize i = 0;

  for (; i + 16 <= length; i += 16)
    {
      __m128i input = _mm_loadu_si128 ((const __m128i *) (text + i));

      if (_mm_movemask_epi8 (input) == 0)
        {
          /* ASCII: only a sequence left unfinished, or a NUL, is wrong */
          errors = _mm_or_si128 (errors, _mm_or_si128 (pending, _mm_cmpeq_epi8 (input, _mm_setzero_si128 ())));
          pending = _mm_setzero_si128 ();
        }
      else
        {
          errors = _mm_or_si128 (errors, block_errors (input, previous));
          pending = unfinished (input);
        }
      previous = input;

      /* give up early on a bad megabyte, not at its end */
      if ((i & 0xfff) == 0 && _mm_movemask_epi8 (_mm_cmpeq_epi8 (errors, _mm_setzero_si128 ())) != 0xffff)
        return FALSE;
    }

  if (i < length)
    {
      /* the tail, padded with spaces (ASCII, not NUL) */
      char tail[16];
      __m128i input;

      memset (tail, ' ', sizeof tail);
      memcpy (tail, text + i, length - i);
      input = _mm_loadu_si128 ((const __m128i *) tail);
      errors = _mm_or_si128 (errors, block_errors (input, previous));
      pending = unfinished (input);
    }
  errors = _mm_or_si128 (errors, pending);

  return _mm_movemask_epi8 (_mm_cmpeq_epi8 (errors, _mm_setzero_si128 ())) == 0xffff;
}

/* The same 32 bytes at a time.  AVX2's byte shifts work within each
 * 16-byte lane: the bytes before a block come from joining the previous
 * block's high lane with this one's low lane. */
#define TARGET_AVX2 __attribute__ ((target ("avx2")))

static inline TARGET_AVX2 __m256i
lookup_256 (__m256i     nibbles,
            const char *table)
{
  return _mm256_shuffle_epi8 (_mm256_broadcastsi128_si256 (_mm_loadu_si128 ((const __m128i *) table)), nibbles);
}

static inline TARGET_AVX2 __m256i
high_nibbles_256 (__m256i bytes)
{
  return _mm256_and_si256 (_mm256_srli_epi16 (bytes, 4), _mm256_set1_epi8 (0x0f));
}

static inline TARGET_AVX2 __m256i
block_errors_256 (__m256i input,
                  __m256i previous)
{
  __m256i joined = _mm256_permute2x128_si256 (previous, input, 0x21);
  __m256i prev1 = _mm256_alignr_epi8 (input, joined, 15);
  __m256i prev2 = _mm256_alignr_epi8 (input, joined, 14);
  __m256i prev3 = _mm256_alignr_epi8 (input, joined, 13);
  __m256i pairs = _mm256_and_si256 (_mm256_and_si256 (lookup_256 (high_nibbles_256 (prev1), byte_1_high),
                                                      lookup_256 (_mm256_and_si256 (prev1, _mm256_set1_epi8 (0x0f)), byte_1_low)),
                                    lookup_256 (high_nibbles_256 (input), byte_2_high));
  __m256i third = _mm256_subs_epu8 (prev2, _mm256_set1_epi8 ((char) (0xe0 - 0x80)));
  __m256i fourth = _mm256_subs_epu8 (prev3, _mm256_set1_epi8 ((char) (0xf0 - 0x80)));
  __m256i must_continue = _mm256_and_si256 (_mm256_or_si256 (third, fourth), _mm256_set1_epi8 ((char) 0x80));
  __m256i nul = _mm256_cmpeq_epi8 (input, _mm256_setzero_si256 ());

  return _mm256_or_si256 (_mm256_xor_si256 (must_continue, pairs), nul);
}

static inline TARGET_AVX2 __m256i
unfinished_256 (__m256i input)
{
  const __m256i max = _mm256_setr_epi8 (-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
                                        -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
                                        (char) (0xf0 - 1), (char) (0xe0 - 1), (char) (0xc0 - 1));

  return _mm256_subs_epu8 (input, max);
}

static TARGET_AVX2 gboolean
validate_avx2 (const char *text,
               gsize       length)
{
  __m256i previous = _mm256_setzero_si256 ();
  __m256i errors = _mm256_setzero_si256 ();
  __m256i pending = _mm256_setzero_si256 ();
  gsize i = 0;

  /* 64 bytes a turn: two independent blocks keep the processor busier */
  for (; i + 64 <= length; i += 64)
    {
      __m256i first = _mm256_loadu_si256 ((const __m256i *) (text + i));
      __m256i second = _mm256_loadu_si256 ((const __m256i *) (text + i + 32));

      if (_mm256_movemask_epi8 (_mm256_or_si256 (first, second)) == 0)
        {
          __m256i zero = _mm256_setzero_si256 ();

          errors = _mm256_or_si256 (errors, _mm256_or_si256 (pending, _mm256_or_si256 (_mm256_cmpeq_epi8 (first, zero),
                                                                                      _mm256_cmpeq_epi8 (second, zero))));
          pending = zero;
        }
      else
        {
          errors = _mm256_or_si256 (errors, _mm256_or_si256 (block_errors_256 (first, previous),
                                                             block_errors_256 (second, first)));
          pending = unfinished_256 (second);
        }
      previous = second;

      if ((i & 0xfff) == 0 && !_mm256_testz_si256 (errors, errors))
        return FALSE;
    }

  for (; i + 32 <= length; i += 32)
    {
      __m256i input = _mm256_loadu_si256 ((const __m256i *) (text + i));

      if (_mm256_movemask_epi8 (input) == 0)
        {
          errors = _mm256_or_si256 (errors, _mm256_or_si256 (pending, _mm256_cmpeq_epi8 (input, _mm256_setzero_si256 ())));
          pending = _mm256_setzero_si256 ();
        }
      else
        {
          errors = _mm256_or_si256 (errors, block_errors_256 (input, previous));
          pending = unfinished_256 (input);
        }
      previous = input;

      if ((i & 0xfff) == 0 && !_mm256_testz_si256 (errors, errors))
        return FALSE;
    }

  if (i < length)
    {
      char tail[32];
      __m256i input;

      memset (tail, ' ', sizeof tail);
      memcpy (tail, text + i, length - i);
      input = _mm256_loadu_si256 ((const __m256i *) tail);
      errors = _mm256_or_si256 (errors, block_errors_256 (input, previous));
      pending = unfinished_256 (input);
    }
  errors = _mm256_or_si256 (errors, pending);

  return _mm256_testz_si256 (errors, errors);
}

typedef enum
{
  VALIDATOR_UNKNOWN,
  VALIDATOR_SCALAR,
  VALIDATOR_SSSE3,
  VALIDATOR_AVX2,
} Validator;

/* LY_UTF8_VALIDATOR=scalar|ssse3|avx2 picks one (for the tests, which
 * check each against GLib); a processor without it gets the default. */
static Validator
forced_validator (void)
{
  const char *name = g_getenv ("LY_UTF8_VALIDATOR");

  if (name == NULL)
    return VALIDATOR_UNKNOWN;
  if (g_str_equal (name, "scalar"))
    return VALIDATOR_SCALAR;
  if (g_str_equal (name, "ssse3") && __builtin_cpu_supports ("ssse3"))
    return VALIDATOR_SSSE3;
  if (g_str_equal (name, "avx2") && __builtin_cpu_supports ("avx2"))
    return VALIDATOR_AVX2;
  return VALIDATOR_UNKNOWN;
}

#endif

/* ly_utf8_validate:
 * @text: (array length=length): bytes
 * @length: how many
 *
 * Returns: whether @text is well-formed UTF-8 without a NUL byte: what
 *   g_utf8_validate_len (@text, @length, NULL) says, faster
 */
gboolean
ly_utf8_validate (const char *text,
                  gsize       length)
{
#ifdef HAVE_SSSE3_VALIDATOR
  static gsize validator = VALIDATOR_UNKNOWN;

  if (g_once_init_enter (&validator))
    g_once_init_leave (&validator, forced_validator () != VALIDATOR_UNKNOWN ? forced_validator () :
                                   __builtin_cpu_supports ("avx2") ? VALIDATOR_AVX2 :
                                   __builtin_cpu_supports ("ssse3") ? VALIDATOR_SSSE3 : VALIDATOR_SCALAR);

  /* short strings, the most common ones, are not worth the set-up */
  if (length >= 64 && validator == VALIDATOR_AVX2)
    return validate_avx2 (text, length);
  if (length >= 64 && validator == VALIDATOR_SSSE3)
    return validate_ssse3 (text, length);
#endif
  return validate_scalar (text, length);
}

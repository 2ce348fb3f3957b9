/* ly-storage-shm-private.h: the hub's storage, published in shared memory
 * for its children to read without a round trip
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#include <glib.h>

G_BEGIN_DECLS

/*
 * The shared table
 * ================
 *
 * A hub whose store is in its own memory writes every key and value into
 * a sealed memfd (the table); each child it starts maps the table
 * read-only and answers get, contains, list-keys and get-all from it,
 * without a system call.  Only the hub writes: the memfd is sealed
 * against writes (F_SEAL_FUTURE_WRITE), shrinking and growing before any
 * child sees it.
 *
 * Readers never trust what they read: every slot has a sequence counter
 * (odd while the hub changes it), the whole table a write counter and a
 * layout counter, and a reader that sees one move retries, a bounded
 * number of times, then asks the hub.  Every offset and length is
 * checked against the table's bounds before it is followed.
 *
 * Consistency: the hub changes the table when the store reports the
 * change, before it replies to the process that made it or tells any
 * other process about it.  So a process never reads a value older than
 * one it has seen in a reply or a change notification.
 *
 * The table never fails a write: a value above the table's record limit
 * is kept as "present, ask the hub", and a key that finds no room makes
 * the table incomplete (a miss is then asked of the hub) until it is
 * deleted or finds room.
 */

typedef enum
{
  LY_SHM_ANSWER_ASK_HUB,    /* the table cannot answer: make a round trip */
  LY_SHM_ANSWER_MISSING,
  LY_SHM_ANSWER_FOUND,
} LyShmAnswer;

/* The hub's side */
typedef struct _LyShmWriter LyShmWriter;

#define LY_SHM_MIN_SIZE      (64 * 1024)
#define LY_SHM_MAX_SIZE      (G_GUINT64_CONSTANT (16) * 1024 * 1024 * 1024)
#define LY_SHM_DEFAULT_SIZE  (64 * 1024 * 1024)

LyShmWriter *ly_shm_writer_new            (guint64       size,
                                           GError      **error);
void         ly_shm_writer_free           (LyShmWriter  *self);
int          ly_shm_writer_get_fd         (LyShmWriter  *self);
void         ly_shm_writer_changed        (LyShmWriter  *self,
                                           const char   *key,
                                           GVariant     *value);
void         ly_shm_writer_begin_snapshot (LyShmWriter  *self);
void         ly_shm_writer_load_snapshot  (LyShmWriter  *self,
                                           GVariant     *all);

/* What a writer holds, for tests and benchmarks */
typedef struct
{
  guint  n_keys;         /* with a slot */
  guint  n_remote;       /* with a slot, but the value is asked of the hub */
  guint  n_missing;      /* without a slot: the table is incomplete */
  guint  n_rebuilds;     /* times the slots were laid out again */
} LyShmWriterStats;

void         ly_shm_writer_get_stats      (LyShmWriter       *self,
                                           LyShmWriterStats  *stats);

/* A child's side */
typedef struct _LyShmReader LyShmReader;

LyShmReader *ly_shm_reader_new            (int           fd,
                                           GError      **error);
void         ly_shm_reader_free           (LyShmReader  *self);
LyShmAnswer  ly_shm_reader_get            (LyShmReader  *self,
                                           const char   *key,
                                           GVariant    **value);
LyShmAnswer  ly_shm_reader_contains       (LyShmReader  *self,
                                           const char   *key);
LyShmAnswer  ly_shm_reader_list_keys      (LyShmReader  *self,
                                           char       ***keys);
LyShmAnswer  ly_shm_reader_get_all        (LyShmReader  *self,
                                           GVariant    **all);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (LyShmWriter, ly_shm_writer_free)
G_DEFINE_AUTOPTR_CLEANUP_FUNC (LyShmReader, ly_shm_reader_free)

G_END_DECLS

/* ly-storage-shm.c: the hub's storage, published in shared memory for its
 * children to read (see ly-storage-shm-private.h)
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#define _GNU_SOURCE  /* memfd_create(), F_ADD_SEALS */

#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <glib/gstdio.h>

#include "ly-errors.h"
#include "ly-i18n-private.h"
#include "ly-storage.h"
#include "ly-storage-shm-private.h"

#ifndef F_SEAL_FUTURE_WRITE
#define F_SEAL_FUTURE_WRITE 0x0010
#endif

/* The layout --------------------------------------------------------------- */

/*
 *   header    128 bytes
 *   slots     n_slots × 128 bytes, an open-addressing hash table (linear
 *             probing) of the keys
 *   data      the records too large for their slot
 *
 * A record is a key's bytes, its value's type string and, from the next
 * multiple of 8 (GVariant data is aligned), its value's serialized
 * data.  One of up to 96 bytes (a short
 * key and a small value: the common case) lives in its slot, so that a
 * read touches one place of the table, not two: on these machines a
 * random access to memory costs more than everything else a read does.
 *
 * A slot is EMPTY, FULL (key and value in its record), REMOTE (the key
 * is in its record, the value must be asked of the hub) or a TOMBSTONE
 * (a deleted key: probing goes on past it).  Slots only become EMPTY
 * again when the hub lays them out anew, under the layout counter, so a
 * reader that meets an EMPTY slot has seen every key that hashed before
 * it.
 */

#define SHM_MAGIC        "LYSHMTB1"
#define SHM_VERSION      1
#define HEADER_SIZE      128
#define SLOT_SIZE        128
#define INLINE_BYTES     (SLOT_SIZE - 32)
#define IN_SLOT          G_MAXUINT64  /* the offset of a record in its slot */
#define BYTES_PER_SLOT   256     /* of the table's size: one slot */
#define MIN_SLOTS        64
#define MAX_LOAD(n)      ((n) / 8 * 7)
#define MIN_TOMBSTONES(n) ((n) / 16)   /* to lay the slots out again */

/* The largest value kept in the table (its serialized data); larger
 * ones are REMOTE: copying them would cost more than the round trip
 * saves.  So are values of types longer than MAX_TYPE_LENGTH. */
#define MAX_INLINE_VALUE (16 * 1024)
#define MAX_TYPE_LENGTH  255

/* Records are allocated in blocks of 64 << class bytes. */
#define MIN_BLOCK        64
#define N_CLASSES        10

/* How often a reader tries again when the hub writes what it reads,
 * before it asks the hub instead. */
#define MAX_ATTEMPTS     64

enum
{
  FLAG_READY    = 1 << 0,  /* the table has every key the store had when it was made */
  FLAG_COMPLETE = 1 << 1,  /* every key has a slot: a miss is an answer */
};

enum
{
  SLOT_EMPTY,
  SLOT_FULL,
  SLOT_REMOTE,
  SLOT_TOMBSTONE,
};

typedef struct
{
  char    magic[8];
  guint32 version;
  guint32 header_size;
  guint64 size;
  guint64 slots_offset;
  guint32 n_slots;
  guint32 max_value;      /* the largest value a FULL record holds */
  guint64 data_offset;
  guint64 data_size;
  guint32 flags;          /* FLAG_*, atomic */
  guint32 layout_seq;     /* odd while the slots are laid out anew */
  guint32 write_seq;      /* odd while any slot changes */
} Header;

typedef struct
{
  guint32 seq;            /* odd while the hub changes the slot */
  guint16 state;
  guint16 type_length;    /* of the value's type string; 0 for REMOTE */
  guint64 hash;
  guint64 offset;         /* of the record in the data, or IN_SLOT */
  guint32 key_length;
  guint32 value_length;   /* of the value's data */
  guint8  record[INLINE_BYTES];
} Slot;

G_STATIC_ASSERT (sizeof (Header) <= HEADER_SIZE);
G_STATIC_ASSERT (sizeof (Slot) == SLOT_SIZE);

#define load_acquire(p)   __atomic_load_n ((p), __ATOMIC_ACQUIRE)
#define load_relaxed(p)   __atomic_load_n ((p), __ATOMIC_RELAXED)
#define store_release(p, v) __atomic_store_n ((p), (v), __ATOMIC_RELEASE)
#define store_relaxed(p, v) __atomic_store_n ((p), (v), __ATOMIC_RELAXED)

static inline guint64
key_hash (const char *key,
          gsize       length)
{
  guint64 hash = G_GUINT64_CONSTANT (0xcbf29ce484222325);

  for (gsize i = 0; i < length; i++)
    hash = (hash ^ (guint8) key[i]) * G_GUINT64_CONSTANT (0x100000001b3);

  return hash;
}

/* Sequence counters: a writer makes a counter odd, changes what it
 * guards, makes it even; a reader reads it, reads the data, and reads
 * it again after an acquire fence. */
static inline void
seq_begin (guint32 *seq)
{
  store_relaxed (seq, *seq + 1);
  __atomic_thread_fence (__ATOMIC_RELEASE);
}

static inline void
seq_end (guint32 *seq)
{
  store_release (seq, *seq + 1);
}

static inline gboolean
seq_unchanged (const guint32 *seq,
               guint32        seen)
{
  __atomic_thread_fence (__ATOMIC_ACQUIRE);
  return load_relaxed (seq) == seen;
}

/* The writer ----------------------------------------------------------------- */

struct _LyShmWriter
{
  int       fd;
  guint8   *base;
  guint64   size;
  Header   *header;
  Slot     *slots;
  guint32   mask;
  guint8   *data;
  guint64   data_size;

  /* @mutex protects the table's contents and everything below: the
   * allocator (@bump, @free_blocks), the counts, @missing and
   * @touched.  It is taken in the store's change reports, with the
   * store's lock held: never call the store with it held. */
  GMutex       mutex;
  guint64      bump;                     /* the data not handed out yet */
  GArray      *free_blocks[N_CLASSES];   /* offsets of free blocks */
  guint        n_full;                   /* FULL and REMOTE slots */
  guint        n_remote;
  guint        n_tombstones;
  guint        n_rebuilds;
  GHashTable  *missing;                  /* keys in the store without a slot */
  GHashTable  *touched;                  /* while a snapshot is taken: keys changed since */
  gboolean     ready;
};

static int
block_class (guint64 length)
{
  for (int c = 0; c < N_CLASSES; c++)
    if (length <= ((guint64) MIN_BLOCK << c))
      return c;
  return -1;
}

/* A block for a record of @length bytes, or FALSE when none is free. */
static gboolean
block_alloc (LyShmWriter *self,
             guint64      length,
             guint64     *offset)
{
  int c = block_class (length);
  guint64 block_size;

  if (c < 0)
    return FALSE;
  block_size = (guint64) MIN_BLOCK << c;

  if (self->free_blocks[c]->len > 0)
    {
      *offset = g_array_index (self->free_blocks[c], guint64, self->free_blocks[c]->len - 1);
      g_array_set_size (self->free_blocks[c], self->free_blocks[c]->len - 1);
    }
  else if (self->data_size - self->bump >= block_size)
    {
      *offset = self->bump;
      self->bump += block_size;
    }
  else
    return FALSE;

  return TRUE;
}

/* Where a record's data starts. */
static inline guint64
data_start (guint32 key_length,
            guint32 type_length)
{
  return ((guint64) key_length + type_length + 7) & ~G_GUINT64_CONSTANT (7);
}

static inline guint64
record_length (guint32 key_length,
               guint32 type_length,
               guint32 value_length)
{
  return data_start (key_length, type_length) + value_length;
}

static void
block_free (LyShmWriter *self,
            const Slot  *slot)
{
  int c;

  if (slot->offset == IN_SLOT)
    return;
  c = block_class (record_length (slot->key_length, slot->type_length, slot->value_length));
  g_array_append_val (self->free_blocks[c], slot->offset);
}

static const guint8 *
writer_record (LyShmWriter *self,
               const Slot  *slot)
{
  return slot->offset == IN_SLOT ? slot->record : self->data + slot->offset;
}

static gboolean
slot_has_key (LyShmWriter *self,
              const Slot  *slot,
              guint64      hash,
              const char  *key,
              gsize        key_length)
{
  return (slot->state == SLOT_FULL || slot->state == SLOT_REMOTE) &&
         slot->hash == hash && slot->key_length == key_length &&
         memcmp (writer_record (self, slot), key, key_length) == 0;
}

/* The slot holding @key, or NULL; *@free_slot: where it would go (the
 * first tombstone or the empty slot that ends the probe), or NULL when
 * the probe found neither. */
static Slot *
find_slot (LyShmWriter  *self,
           guint64       hash,
           const char   *key,
           gsize         key_length,
           Slot        **free_slot)
{
  *free_slot = NULL;

  for (guint32 i = 0; i <= self->mask; i++)
    {
      Slot *slot = &self->slots[(hash + i) & self->mask];

      if (slot->state == SLOT_EMPTY)
        {
          if (*free_slot == NULL)
            *free_slot = slot;
          return NULL;
        }
      if (slot->state == SLOT_TOMBSTONE)
        {
          if (*free_slot == NULL)
            *free_slot = slot;
          continue;
        }
      if (slot_has_key (self, slot, hash, key, key_length))
        return slot;
    }

  return NULL;
}

static void
set_flags_locked (LyShmWriter *self)
{
  guint32 flags = 0;

  if (self->ready)
    flags |= FLAG_READY;
  if (self->ready && g_hash_table_size (self->missing) == 0)
    flags |= FLAG_COMPLETE;
  store_release (&self->header->flags, flags);
}

/* Lays the slots out anew, without their tombstones: readers see the
 * layout counter move and try again (or ask the hub). */
static void
rebuild_slots_locked (LyShmWriter *self)
{
  guint32 n_slots = self->mask + 1;
  g_autofree Slot *live = g_new (Slot, self->n_full);
  guint n_live = 0;

  for (guint32 i = 0; i < n_slots; i++)
    if (self->slots[i].state == SLOT_FULL || self->slots[i].state == SLOT_REMOTE)
      live[n_live++] = self->slots[i];

  seq_begin (&self->header->layout_seq);
  for (guint32 i = 0; i < n_slots; i++)
    {
      store_relaxed (&self->slots[i].state, SLOT_EMPTY);
      /* a reader mid-slot sees its counter move too */
      store_relaxed (&self->slots[i].seq, self->slots[i].seq + 2);
    }
  for (guint i = 0; i < n_live; i++)
    {
      guint32 index = live[i].hash & self->mask;

      while (self->slots[index].state != SLOT_EMPTY)
        index = (index + 1) & self->mask;
      live[i].seq = self->slots[index].seq;
      self->slots[index] = live[i];
    }
  seq_end (&self->header->layout_seq);

  self->n_tombstones = 0;
  self->n_rebuilds++;
}

/* Writes the record of @key and @value (NULL: the key alone, REMOTE)
 * in @slot (not published yet) when it fits, else in a block of its
 * own; FALSE when no block is free. */
static gboolean
write_record (LyShmWriter *self,
              const char  *key,
              gsize        key_length,
              GVariant    *value,
              Slot        *slot)
{
  const char *type = value != NULL ? g_variant_get_type_string (value) : "";
  guint32 type_length = (guint32) strlen (type);
  guint32 value_length = value != NULL ? (guint32) g_variant_get_size (value) : 0;
  guint64 length = record_length ((guint32) key_length, type_length, value_length);
  guint8 *record;

  if (length <= INLINE_BYTES)
    {
      slot->offset = IN_SLOT;
      record = slot->record;
    }
  else
    {
      if (!block_alloc (self, length, &slot->offset))
        return FALSE;
      /* the block may have been a record a reader still looks at: the
       * slot that pointed to it changed before, and this fence makes
       * the change visible to whoever sees what follows */
      __atomic_thread_fence (__ATOMIC_RELEASE);
      record = self->data + slot->offset;
    }

  memcpy (record, key, key_length);
  memcpy (record + key_length, type, type_length);
  if (value != NULL)
    g_variant_store (value, record + data_start ((guint32) key_length, type_length));

  slot->key_length = (guint32) key_length;
  slot->type_length = (guint16) type_length;
  slot->value_length = value_length;
  slot->state = value != NULL ? SLOT_FULL : SLOT_REMOTE;
  return TRUE;
}

/* Publishes @next (its record written) in @slot, which held @key or was
 * free, under the counters readers check. */
static void
publish_slot (LyShmWriter *self,
              Slot        *slot,
              const Slot  *next)
{
  seq_begin (&self->header->write_seq);
  seq_begin (&slot->seq);
  store_relaxed (&slot->state, next->state);
  store_relaxed (&slot->type_length, next->type_length);
  store_relaxed (&slot->hash, next->hash);
  store_relaxed (&slot->offset, next->offset);
  store_relaxed (&slot->key_length, next->key_length);
  store_relaxed (&slot->value_length, next->value_length);
  if (next->offset == IN_SLOT && next != slot)
    memcpy (slot->record, next->record,
            record_length (next->key_length, next->type_length, next->value_length));
  seq_end (&slot->seq);
  seq_end (&self->header->write_seq);
}

static void
count_slot (LyShmWriter *self,
            const Slot  *slot,
            int          sign)
{
  if (slot->state == SLOT_FULL || slot->state == SLOT_REMOTE)
    self->n_full += sign;
  if (slot->state == SLOT_REMOTE)
    self->n_remote += sign;
  if (slot->state == SLOT_TOMBSTONE)
    self->n_tombstones += sign;
}

/* Puts @next in @slot, keeping the counts. */
static void
replace_slot (LyShmWriter *self,
              Slot        *slot,
              const Slot  *next)
{
  Slot old = *slot;

  count_slot (self, &old, -1);
  count_slot (self, next, +1);
  publish_slot (self, slot, next);
  if (old.state == SLOT_FULL || old.state == SLOT_REMOTE)
    block_free (self, &old);
}

static void
delete_locked (LyShmWriter *self,
               Slot        *slot)
{
  Slot next;

  if (slot == NULL)
    return;
  next = *slot;
  next.state = SLOT_TOMBSTONE;
  replace_slot (self, slot, &next);
}

/* A key without room: it leaves the table, which says it is incomplete
 * before the key's slot goes, so that no reader takes the miss for an
 * answer. */
static void
mark_missing_locked (LyShmWriter *self,
                     const char  *key,
                     Slot        *slot)
{
  g_hash_table_add (self->missing, g_strdup (key));
  set_flags_locked (self);
  delete_locked (self, slot);
}

/* A slot for a new key, or NULL when the table is too full. */
static Slot *
claim_slot_locked (LyShmWriter *self,
                   guint64      hash,
                   const char  *key,
                   gsize        key_length,
                   Slot        *free_slot)
{
  Slot *found;

  if (free_slot != NULL && free_slot->state == SLOT_TOMBSTONE)
    return free_slot;
  if (self->n_full + self->n_tombstones < MAX_LOAD (self->mask + 1))
    return free_slot;
  /* a re-layout costs every slot: only worth it when it frees a good
   * share of them, or a table nearly full of live keys would be laid
   * out again at every new key */
  if (self->n_tombstones < MIN_TOMBSTONES (self->mask + 1))
    return NULL;

  rebuild_slots_locked (self);
  found = find_slot (self, hash, key, key_length, &free_slot);
  g_assert (found == NULL);
  return free_slot;
}

static void
write_locked (LyShmWriter *self,
              const char  *key,
              GVariant    *value)
{
  gsize key_length = strlen (key);
  guint64 hash = key_hash (key, key_length);
  Slot *free_slot;
  Slot *slot = find_slot (self, hash, key, key_length, &free_slot);
  Slot next = { .hash = hash };
  Slot *own_slot = slot;
  gboolean inline_value;

  if (value == NULL)
    {
      delete_locked (self, slot);
      if (g_hash_table_remove (self->missing, key))
        set_flags_locked (self);
      return;
    }

  if (slot == NULL && (slot = claim_slot_locked (self, hash, key, key_length, free_slot)) == NULL)
    {
      mark_missing_locked (self, key, NULL);
      return;
    }

  /* a large value stays in the hub; so does one that finds no room,
   * if its key does */
  inline_value = g_variant_get_size (value) <= MAX_INLINE_VALUE &&
                 strlen (g_variant_get_type_string (value)) <= MAX_TYPE_LENGTH;
  if (!write_record (self, key, key_length, inline_value ? value : NULL, &next) &&
      (!inline_value || !write_record (self, key, key_length, NULL, &next)))
    {
      mark_missing_locked (self, key, own_slot);
      return;
    }

  replace_slot (self, slot, &next);
  if (g_hash_table_remove (self->missing, key))
    set_flags_locked (self);
}

/* Records @key's new @value (NULL: deleted); called in the order of the
 * store, before anybody is told of the change. */
void
ly_shm_writer_changed (LyShmWriter *self,
                       const char  *key,
                       GVariant    *value)
{
  g_mutex_lock (&self->mutex);
  if (self->touched != NULL)
    g_hash_table_add (self->touched, g_strdup (key));
  write_locked (self, key, value);
  g_mutex_unlock (&self->mutex);
}

/* From now on, keys changed are remembered, so that the snapshot taken
 * after this call does not put back their older values. */
void
ly_shm_writer_begin_snapshot (LyShmWriter *self)
{
  g_mutex_lock (&self->mutex);
  g_clear_pointer (&self->touched, g_hash_table_unref);
  self->touched = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  g_mutex_unlock (&self->mutex);
}

/* Writes @all (an a{sv} of the store, taken after begin_snapshot())
 * but what changed since, and opens the table to its readers. */
void
ly_shm_writer_load_snapshot (LyShmWriter *self,
                             GVariant    *all)
{
  GVariantIter iter;
  const char *key;
  GVariant *value;

  g_mutex_lock (&self->mutex);
  g_variant_iter_init (&iter, all);
  while (g_variant_iter_next (&iter, "{&sv}", &key, &value))
    {
      if (self->touched == NULL || !g_hash_table_contains (self->touched, key))
        write_locked (self, key, value);
      g_variant_unref (value);
    }
  g_clear_pointer (&self->touched, g_hash_table_unref);
  self->ready = TRUE;
  set_flags_locked (self);
  g_mutex_unlock (&self->mutex);
}

void
ly_shm_writer_get_stats (LyShmWriter      *self,
                         LyShmWriterStats *stats)
{
  g_mutex_lock (&self->mutex);
  stats->n_keys = self->n_full;
  stats->n_remote = self->n_remote;
  stats->n_missing = g_hash_table_size (self->missing);
  stats->n_rebuilds = self->n_rebuilds;
  g_mutex_unlock (&self->mutex);
}

int
ly_shm_writer_get_fd (LyShmWriter *self)
{
  return self->fd;
}

static guint32
slots_for_size (guint64 size)
{
  guint64 n = MIN_SLOTS;

  while (n * 2 <= size / BYTES_PER_SLOT && n * 2 <= G_MAXUINT32 / 2)
    n *= 2;
  return (guint32) n;
}

/* A sealed memfd of @size bytes, mapped writable here: nobody else can
 * ever map it writable or change its size. */
static gboolean
open_region (LyShmWriter  *self,
             GError      **error)
{
  int saved_errno;

  self->fd = memfd_create ("liteyuki-comm storage", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (self->fd < 0)
    goto failed;
  if (ftruncate (self->fd, (off_t) self->size) < 0)
    goto failed;
  self->base = mmap (NULL, self->size, PROT_READ | PROT_WRITE, MAP_SHARED, self->fd, 0);
  if (self->base == MAP_FAILED)
    {
      self->base = NULL;
      goto failed;
    }
  if (fcntl (self->fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_FUTURE_WRITE | F_SEAL_SEAL) < 0)
    goto failed;

  return TRUE;

failed:
  saved_errno = errno;
  g_set_error (error, LY_STORAGE_ERROR, LY_STORAGE_ERROR_UNAVAILABLE,
               _("Could not make the storage’s shared memory: %s"), g_strerror (saved_errno));
  return FALSE;
}

/* A table of @size bytes (LY_SHM_MIN_SIZE to LY_SHM_MAX_SIZE) for the
 * hub to publish its store in; not open to readers until a snapshot is
 * loaded. */
LyShmWriter *
ly_shm_writer_new (guint64   size,
                   GError  **error)
{
  g_autoptr(LyShmWriter) self = g_new0 (LyShmWriter, 1);
  guint32 n_slots;

  g_return_val_if_fail (size >= LY_SHM_MIN_SIZE && size <= LY_SHM_MAX_SIZE, NULL);

  g_mutex_init (&self->mutex);
  self->fd = -1;
  self->size = size;
  self->missing = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  for (int c = 0; c < N_CLASSES; c++)
    self->free_blocks[c] = g_array_new (FALSE, FALSE, sizeof (guint64));

  if (!open_region (self, error))
    return NULL;

  n_slots = slots_for_size (size);
  self->header = (Header *) self->base;
  self->slots = (Slot *) (self->base + HEADER_SIZE);
  self->mask = n_slots - 1;
  self->data = self->base + HEADER_SIZE + (guint64) n_slots * SLOT_SIZE;
  self->data_size = size - HEADER_SIZE - (guint64) n_slots * SLOT_SIZE;

  memcpy (self->header->magic, SHM_MAGIC, sizeof self->header->magic);
  self->header->version = SHM_VERSION;
  self->header->header_size = HEADER_SIZE;
  self->header->size = size;
  self->header->slots_offset = HEADER_SIZE;
  self->header->n_slots = n_slots;
  self->header->max_value = MAX_INLINE_VALUE;
  self->header->data_offset = HEADER_SIZE + (guint64) n_slots * SLOT_SIZE;
  self->header->data_size = self->data_size;

  return g_steal_pointer (&self);
}

void
ly_shm_writer_free (LyShmWriter *self)
{
  if (self->base != NULL)
    {
      /* readers that outlive the hub ask it, and learn that it is gone */
      store_release (&self->header->flags, 0);
      munmap (self->base, self->size);
    }
  if (self->fd >= 0)
    g_close (self->fd, NULL);
  for (int c = 0; c < N_CLASSES; c++)
    g_clear_pointer (&self->free_blocks[c], g_array_unref);
  g_clear_pointer (&self->missing, g_hash_table_unref);
  g_clear_pointer (&self->touched, g_hash_table_unref);
  g_mutex_clear (&self->mutex);
  g_free (self);
}

/* The reader ----------------------------------------------------------------- */

struct _LyShmReader
{
  guint8       *base;
  guint64       size;
  const Header *header;
  const Slot   *slots;
  guint32       mask;
  const guint8 *data;
  guint64       data_size;
  guint32       max_value;
};

static gboolean
reader_refuse (GError     **error,
               const char  *why)
{
  g_set_error (error, LY_STORAGE_ERROR, LY_STORAGE_ERROR_UNAVAILABLE,
               _("The hub’s shared storage table is unusable: %s"), why);
  return FALSE;
}

/* Checks what the hub wrote once, when it made the table, and keeps
 * it: nothing read later can take the reader out of the mapping. */
static gboolean
reader_check_layout (LyShmReader  *self,
                     GError      **error)
{
  Header header;
  guint64 slots_end;

  if (self->size < HEADER_SIZE)
    return reader_refuse (error, _("it is too small"));
  memcpy (&header, self->base, sizeof header);

  if (memcmp (header.magic, SHM_MAGIC, sizeof header.magic) != 0 || header.version != SHM_VERSION)
    return reader_refuse (error, _("it is not a table of this version"));
  if (header.size != self->size || header.header_size != HEADER_SIZE || header.slots_offset != HEADER_SIZE)
    return reader_refuse (error, _("its size does not match"));
  if (header.n_slots < MIN_SLOTS || (header.n_slots & (header.n_slots - 1)) != 0)
    return reader_refuse (error, _("its slot count is not a power of two"));
  slots_end = HEADER_SIZE + (guint64) header.n_slots * SLOT_SIZE;
  if (slots_end > self->size || header.data_offset != slots_end ||
      header.data_size != self->size - slots_end || header.max_value > MAX_INLINE_VALUE)
    return reader_refuse (error, _("its parts do not fit in it"));

  self->header = (const Header *) self->base;
  self->slots = (const Slot *) (self->base + HEADER_SIZE);
  self->mask = header.n_slots - 1;
  self->data = self->base + slots_end;
  self->data_size = header.data_size;
  self->max_value = header.max_value;
  return TRUE;
}

/* Maps the hub's table read-only from @fd (not kept: close it after),
 * if it is sealed as the hub seals it and laid out as this version lays
 * it out. */
LyShmReader *
ly_shm_reader_new (int      fd,
                   GError **error)
{
  g_autoptr(LyShmReader) self = g_new0 (LyShmReader, 1);
  const int required = F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_FUTURE_WRITE;
  struct stat st;
  int seals = fcntl (fd, F_GET_SEALS);

  if (seals < 0 || (seals & required) != required)
    {
      reader_refuse (error, _("it is not sealed against writes"));
      return NULL;
    }
  if (fstat (fd, &st) < 0 || !S_ISREG (st.st_mode) || st.st_size <= 0)
    {
      reader_refuse (error, _("it is not a memory file"));
      return NULL;
    }

  self->size = (guint64) st.st_size;
  self->base = mmap (NULL, self->size, PROT_READ, MAP_SHARED, fd, 0);
  if (self->base == MAP_FAILED)
    {
      self->base = NULL;
      reader_refuse (error, g_strerror (errno));
      return NULL;
    }

  if (!reader_check_layout (self, error))
    return NULL;

  return g_steal_pointer (&self);
}

void
ly_shm_reader_free (LyShmReader *self)
{
  if (self->base != NULL)
    munmap (self->base, self->size);
  g_free (self);
}

/* What one look at the table found. */
typedef enum
{
  LOOK_RETRY,      /* the hub was writing: look again */
  LOOK_ASK_HUB,
  LOOK_MISSING,
  LOOK_FOUND,
  LOOK_REMOTE,     /* present, the value only in the hub */
} Look;

/* A value as copied out of the table: its type string and its data. */
typedef struct
{
  char      type[MAX_TYPE_LENGTH + 1];
  gpointer  data;
  gsize     length;
} Copied;

/* Where a slot's record, as read, is; NULL when it does not lie wholly
 * in its slot or in the data. */
static inline const guint8 *
reader_record (const LyShmReader *self,
               const Slot        *slot,
               guint64            offset,
               guint32            key_length,
               guint32            type_length,
               guint32            value_length)
{
  guint64 length = record_length (key_length, type_length, value_length);

  if (key_length > LY_STORAGE_MAX_KEY_LENGTH || type_length > MAX_TYPE_LENGTH ||
      value_length > self->max_value)
    return NULL;
  if (offset == IN_SLOT)
    return length <= INLINE_BYTES ? slot->record : NULL;
  if (offset > self->data_size || length > self->data_size - offset)
    return NULL;
  return self->data + offset;
}

/* Looks for @key in the slots; a FOUND value is copied to *@copied
 * when @copied is not NULL (its data to free). */
static Look
look_up (const LyShmReader  *self,
         const char         *key,
         gsize               key_length,
         guint64             hash,
         Copied             *copied)
{
  for (guint32 i = 0; i <= self->mask; i++)
    {
      const Slot *slot = &self->slots[(hash + i) & self->mask];
      guint32 seq = load_acquire (&slot->seq);
      guint32 state, slot_key_length, type_length, value_length;
      const guint8 *record;
      gboolean same_key;
      gpointer data = NULL;

      if (seq & 1)
        return LOOK_RETRY;

      state = load_relaxed (&slot->state);
      if (state == SLOT_EMPTY)
        return seq_unchanged (&slot->seq, seq) ? LOOK_MISSING : LOOK_RETRY;
      if (state == SLOT_TOMBSTONE || load_relaxed (&slot->hash) != hash)
        continue;

      slot_key_length = load_relaxed (&slot->key_length);
      type_length = load_relaxed (&slot->type_length);
      value_length = load_relaxed (&slot->value_length);
      record = reader_record (self, slot, load_relaxed (&slot->offset),
                              slot_key_length, type_length, value_length);
      if (record == NULL)
        return LOOK_RETRY;

      same_key = slot_key_length == key_length && memcmp (record, key, key_length) == 0;
      if (same_key && state == SLOT_FULL && copied != NULL)
        {
          memcpy (copied->type, record + key_length, type_length);
          copied->type[type_length] = '\0';
          data = g_memdup2 (record + data_start (key_length, type_length), value_length);
        }

      if (!seq_unchanged (&slot->seq, seq))
        {
          g_free (data);
          return LOOK_RETRY;
        }
      if (!same_key)
        continue;
      if (state == SLOT_REMOTE)
        return LOOK_REMOTE;
      if (copied != NULL)
        {
          copied->data = data;
          copied->length = value_length;
        }
      return LOOK_FOUND;
    }

  return LOOK_MISSING;
}

/* Runs look_up() until it sees the table still: a miss counts only
 * when the table was complete before and after the look. */
static Look
look_up_stable (const LyShmReader  *self,
                const char         *key,
                Copied             *copied)
{
  gsize key_length = strlen (key);
  guint64 hash = key_hash (key, key_length);

  for (guint attempt = 0; attempt < MAX_ATTEMPTS; attempt++)
    {
      guint32 layout = load_acquire (&self->header->layout_seq);
      guint32 flags = load_acquire (&self->header->flags);
      Look look;

      if (!(flags & FLAG_READY))
        return LOOK_ASK_HUB;
      if (layout & 1)
        continue;

      look = look_up (self, key, key_length, hash, copied);
      if (!seq_unchanged (&self->header->layout_seq, layout))
        {
          if (look == LOOK_FOUND && copied != NULL)
            g_clear_pointer (&copied->data, g_free);
          continue;
        }
      if (look == LOOK_RETRY)
        continue;
      if (look == LOOK_MISSING &&
          !((flags & load_relaxed (&self->header->flags)) & FLAG_COMPLETE))
        return LOOK_ASK_HUB;
      return look;
    }

  return LOOK_ASK_HUB;
}

/* The value @type and @data (taken) make, or NULL when they do not
 * make one (never from the hub's table as the counters vouched for
 * it: a reader checks anyway). */
static GVariant *
value_from_copy (const char *type,
                 gpointer    data,
                 gsize       length)
{
  GBytes *bytes = g_bytes_new_take (data, length);
  GVariant *value = NULL;

  if (g_variant_type_string_is_valid (type))
    value = g_variant_ref_sink (g_variant_new_from_bytes (G_VARIANT_TYPE (type), bytes, FALSE));
  g_bytes_unref (bytes);
  return value;
}

/* Reads @key: FOUND with *@value, MISSING, or ASK_HUB when the table
 * cannot say (not ready, incomplete, a large value, the hub writing it
 * for too long). */
LyShmAnswer
ly_shm_reader_get (LyShmReader  *self,
                   const char   *key,
                   GVariant    **value)
{
  Copied copied;

  switch (look_up_stable (self, key, &copied))
    {
    case LOOK_MISSING:
      *value = NULL;
      return LY_SHM_ANSWER_MISSING;
    case LOOK_FOUND:
      *value = value_from_copy (copied.type, copied.data, copied.length);
      return *value != NULL ? LY_SHM_ANSWER_FOUND : LY_SHM_ANSWER_ASK_HUB;
    case LOOK_RETRY:
    case LOOK_ASK_HUB:
    case LOOK_REMOTE:
    default:
      return LY_SHM_ANSWER_ASK_HUB;
    }
}

LyShmAnswer
ly_shm_reader_contains (LyShmReader *self,
                        const char  *key)
{
  switch (look_up_stable (self, key, NULL))
    {
    case LOOK_MISSING:
      return LY_SHM_ANSWER_MISSING;
    case LOOK_FOUND:
    case LOOK_REMOTE:
      return LY_SHM_ANSWER_FOUND;
    case LOOK_RETRY:
    case LOOK_ASK_HUB:
    default:
      return LY_SHM_ANSWER_ASK_HUB;
    }
}

typedef struct
{
  char     *key;
  char     *type;      /* NULL when only the keys are wanted */
  gpointer  data;
  gsize     length;
} Entry;

static void
entry_clear (gpointer data)
{
  Entry *entry = data;

  g_free (entry->key);
  g_free (entry->type);
  g_free (entry->data);
}

static int
compare_entries (gconstpointer a,
                 gconstpointer b)
{
  return strcmp (((const Entry *) a)->key, ((const Entry *) b)->key);
}

/* Copies every entry while no write happens; FALSE when one did (or the
 * table cannot answer). */
static gboolean
scan_entries (const LyShmReader *self,
              gboolean           with_values,
              GArray            *entries)
{
  guint32 layout = load_acquire (&self->header->layout_seq);
  guint32 writes = load_acquire (&self->header->write_seq);
  guint32 flags = load_acquire (&self->header->flags);

  if ((layout & 1) || (writes & 1) || (flags & (FLAG_READY | FLAG_COMPLETE)) != (FLAG_READY | FLAG_COMPLETE))
    return FALSE;

  for (guint32 i = 0; i <= self->mask; i++)
    {
      const Slot *slot = &self->slots[i];
      guint32 state = load_relaxed (&slot->state);
      guint32 key_length = load_relaxed (&slot->key_length);
      guint32 type_length = load_relaxed (&slot->type_length);
      guint32 value_length = load_relaxed (&slot->value_length);
      const guint8 *record;
      Entry entry = { NULL, NULL, NULL, 0 };

      if (state != SLOT_FULL && state != SLOT_REMOTE)
        continue;
      record = reader_record (self, slot, load_relaxed (&slot->offset), key_length, type_length, value_length);
      if ((state == SLOT_REMOTE && with_values) || record == NULL)
        return FALSE;

      entry.key = g_strndup ((const char *) record, key_length);
      if (with_values)
        {
          entry.type = g_strndup ((const char *) record + key_length, type_length);
          entry.data = g_memdup2 (record + data_start (key_length, type_length), value_length);
          entry.length = value_length;
        }
      g_array_append_val (entries, entry);
    }

  __atomic_thread_fence (__ATOMIC_ACQUIRE);
  return load_relaxed (&self->header->write_seq) == writes &&
         load_relaxed (&self->header->layout_seq) == layout &&
         (load_relaxed (&self->header->flags) & FLAG_COMPLETE);
}

/* Every entry, sorted by key, or NULL when the table cannot answer. */
static GArray *
read_entries (const LyShmReader *self,
              gboolean           with_values)
{
  for (guint attempt = 0; attempt < 4; attempt++)
    {
      g_autoptr(GArray) entries = g_array_new (FALSE, FALSE, sizeof (Entry));

      g_array_set_clear_func (entries, entry_clear);
      if (scan_entries (self, with_values, entries))
        {
          g_array_sort (entries, compare_entries);
          return g_steal_pointer (&entries);
        }
    }

  return NULL;
}

LyShmAnswer
ly_shm_reader_list_keys (LyShmReader   *self,
                         char        ***keys)
{
  g_autoptr(GArray) entries = read_entries (self, FALSE);
  char **list;

  if (entries == NULL)
    return LY_SHM_ANSWER_ASK_HUB;

  list = g_new (char *, entries->len + 1);
  for (guint i = 0; i < entries->len; i++)
    list[i] = g_steal_pointer (&g_array_index (entries, Entry, i).key);
  list[entries->len] = NULL;

  *keys = list;
  return LY_SHM_ANSWER_FOUND;
}

LyShmAnswer
ly_shm_reader_get_all (LyShmReader  *self,
                       GVariant    **all)
{
  g_autoptr(GArray) entries = read_entries (self, TRUE);
  g_auto(GVariantBuilder) builder = G_VARIANT_BUILDER_INIT (G_VARIANT_TYPE_VARDICT);

  if (entries == NULL)
    return LY_SHM_ANSWER_ASK_HUB;

  for (guint i = 0; i < entries->len; i++)
    {
      Entry *entry = &g_array_index (entries, Entry, i);
      g_autoptr(GVariant) value = value_from_copy (entry->type, g_steal_pointer (&entry->data), entry->length);

      if (value == NULL)
        return LY_SHM_ANSWER_ASK_HUB;
      g_variant_builder_add (&builder, "{sv}", entry->key, value);
    }

  *all = g_variant_ref_sink (g_variant_builder_end (&builder));
  return LY_SHM_ANSWER_FOUND;
}

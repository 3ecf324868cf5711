//! The buffer as a `replay_buffer` artifact (schemas/replay_buffer.yaml).
//!
//! Rows are written in ascending id order (the tensor writer requires it); each row carries
//! its label, insertion counter and `class_pos`, its position in its class's member list.
//! Loading copies the codes into a fresh store (slots numbered in id order) and rebuilds
//! every member list from `class_pos`, so the canonical enumeration that sampling and
//! eviction use, and with it all future behaviour, is the saved buffer's. The file is not
//! kept mapped: the loaded buffer owns its memory and the file can be replaced at once.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{ensure, Context, Result};
use arrow::array::{Array, ArrayRef, Int64Array, UInt64Array};

use super::{pack, Class, Eviction, ReplayBuffer, MAX_ID};
use crate::artifact::{DType, Payload, Producer, TensorFile, TensorSpec, TensorWriter};

pub const BUFFER_CAPACITY_KEY: &str = "remind.buffer.capacity";
pub const BUFFER_EVICTION_KEY: &str = "remind.buffer.eviction";
pub const BUFFER_CLOCK_KEY: &str = "remind.buffer.clock";
const CODEBOOK_HASH_KEY: &str = "remind.codebook_hash";
/// Producer stage recorded by [`ReplayBuffer::save`].
pub const BUFFER_PRODUCER_STAGE: &str = "replay-buffer";
const ROWS_PER_BATCH: usize = 4096;

impl ReplayBuffer {
    /// Writes the buffer to `path` (atomically) as a `replay_buffer` artifact whose items
    /// have shape `item_shape` (e.g. `[7, 7, 32]`, layout HWM) and were encoded with the
    /// codebook of hash `codebook_hash`. Fails on duplicate ids.
    pub fn save(&self, path: &Path, codebook_hash: &str, item_shape: &[usize]) -> Result<PathBuf> {
        let producer = Producer::new(BUFFER_PRODUCER_STAGE, "")
            .param("capacity", self.capacity.map(|c| c as u64))
            .param("eviction", self.eviction.name());
        self.save_as(path, codebook_hash, item_shape, producer)
    }

    /// [`save`](Self::save) with the caller's producer record.
    pub fn save_as(
        &self,
        path: &Path,
        codebook_hash: &str,
        item_shape: &[usize],
        producer: Producer,
    ) -> Result<PathBuf> {
        let p = path.display();
        let width: usize = item_shape.iter().product();
        ensure!(
            width == self.item_bytes,
            "{p}: item shape {item_shape:?} holds {width} bytes, the buffer's items {}",
            self.item_bytes
        );
        let n = self.len();
        let mut class_pos = vec![0u32; n];
        for class in &self.classes {
            for (pos, &slot) in class.members.iter().enumerate() {
                class_pos[slot as usize] = pos as u32;
            }
        }
        let mut order: Vec<u32> = (0..n as u32).collect();
        order.sort_unstable_by_key(|&s| self.id(s as usize));
        for w in order.windows(2) {
            let id = self.id(w[0] as usize);
            ensure!(
                id != self.id(w[1] as usize),
                "{p}: the replay buffer holds id {id} twice"
            );
        }
        let capacity = match self.capacity {
            Some(c) => c.to_string(),
            None => "unbounded".into(),
        };
        let spec = TensorSpec::new("replay_buffer", item_shape, "HWM", DType::U8, producer)
            .with(CODEBOOK_HASH_KEY, codebook_hash)
            .with(BUFFER_CAPACITY_KEY, capacity)
            .with(BUFFER_EVICTION_KEY, self.eviction.name())
            .with(BUFFER_CLOCK_KEY, self.clock.to_string());
        let mut writer = TensorWriter::create(path, spec)?;
        let mut codes = Vec::with_capacity(ROWS_PER_BATCH.min(n) * self.item_bytes);
        for chunk in order.chunks(ROWS_PER_BATCH) {
            let slots: Vec<usize> = chunk.iter().map(|&s| s as usize).collect();
            self.gather(&slots, &mut codes);
            let ids = self.ids_of(&slots);
            let labels: ArrayRef = Arc::new(Int64Array::from(self.labels_of(&slots)));
            let inserted: ArrayRef = Arc::new(UInt64Array::from(
                slots.iter().map(|&s| self.inserted(s)).collect::<Vec<_>>(),
            ));
            let pos: ArrayRef = Arc::new(UInt64Array::from(
                slots
                    .iter()
                    .map(|&s| u64::from(class_pos[s]))
                    .collect::<Vec<_>>(),
            ));
            writer.write(&ids, Payload::U8(&codes), vec![labels, inserted, pos])?;
        }
        writer.finish()
    }

    /// Reads a buffer written by [`save`](Self::save): codes, ids, labels, insertion
    /// counters, per-class order, capacity and eviction policy. Returns the buffer with the
    /// file's item shape and codebook hash, for the caller to check against its codebook.
    pub fn load(path: &Path) -> Result<LoadedBuffer> {
        let p = path.display();
        let file = TensorFile::open(path, "replay_buffer")?;
        ensure!(
            file.dtype() == DType::U8,
            "{p}: field 'remind.dtype': expected uint8, found {}",
            file.dtype().name()
        );
        let capacity = match file.meta(BUFFER_CAPACITY_KEY)? {
            "unbounded" => None,
            s => Some(s.parse::<usize>().with_context(|| {
                format!("{p}: field '{BUFFER_CAPACITY_KEY}': expected a number or 'unbounded', found '{s}'")
            })?),
        };
        let eviction = Eviction::parse(file.meta(BUFFER_EVICTION_KEY)?)
            .with_context(|| format!("{p}: field '{BUFFER_EVICTION_KEY}'"))?;
        let clock_text = file.meta(BUFFER_CLOCK_KEY)?;
        let clock: u32 = clock_text.parse().with_context(|| {
            format!(
                "{p}: field '{BUFFER_CLOCK_KEY}': expected a 32-bit counter, found '{clock_text}'"
            )
        })?;
        let n = file.len();
        let mut buf = ReplayBuffer::new(file.width(), capacity, eviction)
            .with_context(|| format!("{p}: invalid buffer parameters"))?;
        if let Some(c) = capacity {
            ensure!(n <= c, "{p}: holds {n} items, more than its capacity {c}");
        }
        ensure!(
            n < u32::MAX as usize,
            "{p}: holds {n} items, more than a buffer can"
        );
        buf.store.reserve_exact(n * buf.item_bytes);
        buf.keys.reserve_exact(n);
        buf.inserted.reserve_exact(n);
        let mut class_pos: Vec<u32> = Vec::with_capacity(n);
        for b in 0..file.num_batches() {
            let ids = file.batch_ids(b)?;
            buf.store.extend_from_slice(file.batch_u8(b)?);
            let batch = file.batch(b);
            let labels = column::<Int64Array>(path, batch, "label")?;
            let inserted = column::<UInt64Array>(path, batch, "inserted")?;
            let pos = column::<UInt64Array>(path, batch, "class_pos")?;
            for (i, &id) in ids.iter().enumerate() {
                ensure!(
                    id <= MAX_ID,
                    "{p}: id {id} exceeds the largest storable id {MAX_ID}"
                );
                let label = labels.value(i);
                let class = match buf.class_of_label.get(&label) {
                    Some(&c) => c,
                    None => buf.add_class(label).with_context(|| format!("{p}"))?,
                };
                let ins = inserted.value(i);
                ensure!(
                    ins < u64::from(clock),
                    "{p}: item {id}: inserted {ins} is not below the clock {clock}"
                );
                buf.keys.push(pack(id, class));
                buf.inserted.push(ins as u32);
                let cp = pos.value(i);
                class_pos.push(
                    u32::try_from(cp)
                        .ok()
                        .filter(|&v| (v as usize) < n)
                        .with_context(|| format!("{p}: item {id}: class_pos {cp} out of range"))?,
                );
                buf.classes[class as usize].members.push_back(u32::MAX);
            }
        }
        // Place every slot at its saved position in its class's list.
        for class in &mut buf.classes {
            class.members.shrink_to_fit();
        }
        for (slot, &at) in class_pos.iter().enumerate() {
            let class = buf.class_at(slot);
            let at = at as usize;
            let id = buf.keys[slot] & MAX_ID;
            let Class { label, members } = &mut buf.classes[class];
            ensure!(
                at < members.len() && members[at] == u32::MAX,
                "{p}: item {id}: class_pos {at} is out of range or taken within label {label} ({} items)",
                members.len()
            );
            members[at] = slot as u32;
        }
        buf.clock = clock;
        buf.rebuild_index();
        let item_shape = file.shape().to_vec();
        let codebook_hash = file.meta(CODEBOOK_HASH_KEY)?.to_string();
        Ok(LoadedBuffer {
            buffer: buf,
            item_shape,
            codebook_hash,
        })
    }
}

/// A buffer read back by [`ReplayBuffer::load`], with what its file says about its codes.
#[derive(Debug)]
pub struct LoadedBuffer {
    pub buffer: ReplayBuffer,
    /// Shape of one item's codes (e.g. `[7, 7, 32]`).
    pub item_shape: Vec<usize>,
    /// Hash of the codebook the codes were made with.
    pub codebook_hash: String,
}

fn column<'a, T: Array + 'static>(
    path: &Path,
    batch: &'a arrow::array::RecordBatch,
    name: &str,
) -> Result<&'a T> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<T>())
        .with_context(|| {
            format!(
                "{}: column '{name}' is missing or has the wrong type",
                path.display()
            )
        })
}

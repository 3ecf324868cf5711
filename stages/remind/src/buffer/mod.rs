//! The replay buffer: PQ codes of past examples with their ids and labels, a per-class
//! index, class-balanced eviction and uniform sampling. Knows nothing of models; its only
//! file is the `replay_buffer` artifact (see [`ReplayBuffer::save`] / [`ReplayBuffer::load`]).
//!
//! # Layout
//!
//! Every item lives in a *slot*. The codes of all slots are one contiguous `Vec<u8>`
//! (`slot * item_bytes ..`), beside parallel per-slot arrays. A slot is a handle: valid
//! until the next mutation (an eviction reuses the evicted item's slot for the new item).
//!
//! # Behaviour
//!
//! - [`ReplayBuffer::insert`] is O(1) (amortised) plus O(log K) for K classes. When the
//!   buffer is at capacity it first evicts one item of the class holding the most items
//!   (ties: lowest label), either a uniformly random one ([`Eviction::Random`]) or its
//!   oldest ([`Eviction::Oldest`], the reference's `queue`), then stores the new item in the
//!   freed slot. The new item is never the one evicted.
//! - [`ReplayBuffer::sample`] draws r distinct items uniformly at random (all items when
//!   r >= len, as the reference does).
//!
//! Both are defined on a canonical enumeration of the items: classes in ascending label
//! order, and within a class the order of its member list (insertion order under
//! `Oldest`; under `Random`, the order that swap-removal leaves). A sample draws distinct
//! indices of that enumeration and maps them to slots through a Fenwick tree over class
//! sizes (O(log K) each). Slot numbers therefore are not part of the state: a buffer saved
//! and loaded again (slots renumbered in id order) draws the same items and evicts the same
//! items as the original, given the same RNG state.
//!
//! # Memory accounting (per item, beyond its `item_bytes` of codes)
//!
//! - `keys: Vec<u64>`: the id (48 bits) and the dense class index (16 bits): 8 bytes.
//! - `inserted: Vec<u32>`: the insertion counter (oldest-first order, persisted): 4 bytes.
//! - the class's member list (`VecDeque<u32>` of slots): 4 bytes.
//!
//! That is 16 bytes. The label of a class is stored once per class. Growth is capped
//! (3% steps, never past the capacity) so the arrays hold at most ~3% slack, which the 5%
//! allowance on the code store covers; per-class overhead (hash map, size index, Fenwick
//! tree) is O(K). Limits that follow: ids below 2^48, at most 65,536 distinct labels, at
//! most 2^32 - 1 items.

mod persist;
#[cfg(test)]
mod tests;

use std::cmp::Reverse;
use std::collections::{BTreeSet, HashMap, VecDeque};

use anyhow::{bail, ensure, Context, Result};
use rand::Rng;
use serde::{Deserialize, Serialize};

pub use persist::{
    LoadedBuffer, BUFFER_CAPACITY_KEY, BUFFER_CLOCK_KEY, BUFFER_EVICTION_KEY, BUFFER_PRODUCER_STAGE,
};

/// Largest id a buffer can hold (ids share a word with the class index).
pub const MAX_ID: u64 = (1 << ID_BITS) - 1;
/// Most distinct labels a buffer can hold.
pub const MAX_CLASSES: usize = 1 << 16;

const ID_BITS: u32 = 48;
/// Smallest growth step of the per-slot arrays, in items.
const MIN_GROW_ITEMS: usize = 64;
/// Smallest growth step of a class's member list.
const MIN_GROW_MEMBERS: usize = 16;

/// Which item of the largest class an insert into a full buffer evicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Eviction {
    /// A uniformly random item of the class (the REMIND default).
    #[default]
    Random,
    /// The class's oldest item (the reference's `queue` mode).
    #[serde(alias = "queue")]
    Oldest,
}

impl Eviction {
    pub fn name(self) -> &'static str {
        match self {
            Eviction::Random => "random",
            Eviction::Oldest => "oldest",
        }
    }
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "random" => Ok(Eviction::Random),
            "oldest" | "queue" => Ok(Eviction::Oldest),
            other => bail!("unknown eviction policy '{other}' (expected random or oldest)"),
        }
    }
}

/// What an insert evicted to make room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Evicted {
    pub id: u64,
    pub label: i64,
    /// Its insertion counter.
    pub inserted: u64,
}

#[derive(Debug, Clone)]
struct Class {
    label: i64,
    /// Slots of the class's items, in eviction/enumeration order.
    members: VecDeque<u32>,
}

/// See the [module documentation](self).
#[derive(Debug, Clone)]
pub struct ReplayBuffer {
    item_bytes: usize,
    capacity: Option<usize>,
    eviction: Eviction,
    /// Codes of slot s at `s * item_bytes ..`.
    store: Vec<u8>,
    /// Per slot: id | class << 48.
    keys: Vec<u64>,
    /// Per slot: insertion counter.
    inserted: Vec<u32>,
    /// The next insertion counter.
    clock: u32,
    classes: Vec<Class>,
    class_of_label: HashMap<i64, u16>,
    /// (size, Reverse(label), class): the last element is the class to evict from.
    by_size: BTreeSet<(u32, Reverse<i64>, u16)>,
    /// Classes in ascending label order (rank -> class).
    ranked: Vec<u16>,
    /// class -> rank.
    rank_of: Vec<u16>,
    /// Fenwick tree of class sizes over ranks (entry i - 1 holds node i).
    fenwick: Vec<u32>,
}

impl ReplayBuffer {
    /// An empty buffer of items of `item_bytes` bytes, holding at most `capacity` items
    /// (`None`: unbounded).
    pub fn new(item_bytes: usize, capacity: Option<usize>, eviction: Eviction) -> Result<Self> {
        ensure!(
            item_bytes > 0,
            "replay buffer: items must hold at least one byte"
        );
        if let Some(c) = capacity {
            ensure!(c > 0, "replay buffer: capacity must be at least 1");
            ensure!(
                c < u32::MAX as usize,
                "replay buffer: capacity {c} exceeds the limit of {} items",
                u32::MAX - 1
            );
            ensure!(
                c.checked_mul(item_bytes).is_some(),
                "replay buffer: capacity {c} x {item_bytes} bytes overflows"
            );
        }
        Ok(Self {
            item_bytes,
            capacity,
            eviction,
            store: Vec::new(),
            keys: Vec::new(),
            inserted: Vec::new(),
            clock: 0,
            classes: Vec::new(),
            class_of_label: HashMap::new(),
            by_size: BTreeSet::new(),
            ranked: Vec::new(),
            rank_of: Vec::new(),
            fenwick: Vec::new(),
        })
    }

    /// Bytes of one item's codes.
    pub fn item_bytes(&self) -> usize {
        self.item_bytes
    }
    pub fn capacity(&self) -> Option<usize> {
        self.capacity
    }
    pub fn eviction(&self) -> Eviction {
        self.eviction
    }
    /// Number of stored items.
    pub fn len(&self) -> usize {
        self.keys.len()
    }
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
    pub fn is_full(&self) -> bool {
        self.capacity == Some(self.len())
    }
    /// Bytes of codes held (`len * item_bytes`).
    pub fn code_bytes(&self) -> usize {
        self.len() * self.item_bytes
    }

    /// Reserves room for `additional` more items exactly (e.g. before filling the buffer
    /// with a base-initialisation set of known size), never past the capacity.
    pub fn reserve(&mut self, additional: usize) {
        let target = match self.capacity {
            Some(c) => (self.len() + additional).min(c),
            None => self.len() + additional,
        };
        let extra = target.saturating_sub(self.len());
        let have = self.store.capacity() / self.item_bytes;
        if have < target {
            self.store
                .reserve_exact((target - self.len()) * self.item_bytes);
        }
        self.keys.reserve_exact(extra);
        self.inserted.reserve_exact(extra);
    }

    /// Codes of `slot`. Panics if `slot >= len()`.
    pub fn codes(&self, slot: usize) -> &[u8] {
        &self.store[slot * self.item_bytes..(slot + 1) * self.item_bytes]
    }
    /// Id of `slot`. Panics if `slot >= len()`.
    pub fn id(&self, slot: usize) -> u64 {
        self.keys[slot] & MAX_ID
    }
    /// Label of `slot`. Panics if `slot >= len()`.
    pub fn label(&self, slot: usize) -> i64 {
        self.classes[self.class_at(slot)].label
    }
    /// Insertion counter of `slot` (increasing with insertion order). Panics if
    /// `slot >= len()`.
    pub fn inserted(&self, slot: usize) -> u64 {
        u64::from(self.inserted[slot])
    }
    /// Copies the codes of `slots` into `out` (cleared first), one item after another:
    /// ready for a batched decode. Panics if a slot is out of range.
    pub fn gather(&self, slots: &[usize], out: &mut Vec<u8>) {
        out.clear();
        out.reserve(slots.len() * self.item_bytes);
        for &s in slots {
            out.extend_from_slice(self.codes(s));
        }
    }
    /// Labels of `slots`. Panics if a slot is out of range.
    pub fn labels_of(&self, slots: &[usize]) -> Vec<i64> {
        slots.iter().map(|&s| self.label(s)).collect()
    }
    /// Ids of `slots`. Panics if a slot is out of range.
    pub fn ids_of(&self, slots: &[usize]) -> Vec<u64> {
        slots.iter().map(|&s| self.id(s)).collect()
    }

    /// (label, items) of every class that has been seen, in ascending label order.
    pub fn class_sizes(&self) -> Vec<(i64, usize)> {
        self.ranked
            .iter()
            .map(|&c| {
                let class = &self.classes[c as usize];
                (class.label, class.members.len())
            })
            .collect()
    }

    /// All slots in the canonical enumeration order (classes by label, then member order).
    pub fn slots(&self) -> Vec<usize> {
        let mut out = Vec::with_capacity(self.len());
        for &c in &self.ranked {
            out.extend(self.classes[c as usize].members.iter().map(|&s| s as usize));
        }
        out
    }

    /// Draws `r` distinct items uniformly at random and returns their slots (in draw
    /// order); when `r >= len()`, returns every slot in enumeration order without
    /// drawing.
    pub fn sample<R: Rng + ?Sized>(&self, r: usize, rng: &mut R) -> Vec<usize> {
        let n = self.len();
        if r >= n {
            return self.slots();
        }
        rand::seq::index::sample(rng, n, r)
            .into_iter()
            .map(|g| self.slot_at(g))
            .collect()
    }

    /// Stores an item; if the buffer is full, first evicts one item of its largest class
    /// (see [`Eviction`]) and returns it. `rng` is used by random eviction only.
    pub fn insert<R: Rng + ?Sized>(
        &mut self,
        id: u64,
        label: i64,
        codes: &[u8],
        rng: &mut R,
    ) -> Result<Option<Evicted>> {
        ensure!(
            codes.len() == self.item_bytes,
            "replay buffer: item {id} has {} bytes of codes, expected {}",
            codes.len(),
            self.item_bytes
        );
        ensure!(
            id <= MAX_ID,
            "replay buffer: id {id} exceeds the largest storable id {MAX_ID}"
        );
        let full = self.is_full();
        ensure!(
            full || self.len() < u32::MAX as usize - 1,
            "replay buffer: cannot hold more than {} items",
            u32::MAX - 1
        );
        let class = match self.class_of_label.get(&label) {
            Some(&c) => c,
            None => {
                let c = self.add_class(label)?;
                self.rebuild_index();
                c
            }
        };
        if self.clock == u32::MAX {
            self.renumber_inserted();
        }
        let mut evicted = None;
        let slot = if full {
            let (slot, ev) = self.evict_one(rng)?;
            evicted = Some(ev);
            let at = slot as usize * self.item_bytes;
            self.store[at..at + self.item_bytes].copy_from_slice(codes);
            self.keys[slot as usize] = pack(id, class);
            self.inserted[slot as usize] = self.clock;
            slot
        } else {
            let slot = self.len() as u32;
            self.grow_store();
            self.store.extend_from_slice(codes);
            grow_vec(&mut self.keys, self.capacity);
            self.keys.push(pack(id, class));
            grow_vec(&mut self.inserted, self.capacity);
            self.inserted.push(self.clock);
            slot
        };
        self.clock += 1;
        let members = &mut self.classes[class as usize].members;
        if members.len() == members.capacity() {
            members.reserve_exact((members.len() / 32).max(MIN_GROW_MEMBERS));
        }
        members.push_back(slot);
        self.resized(class, 1);
        Ok(evicted)
    }

    /// Approximate heap bytes held (code store, per-slot arrays, class index), by
    /// allocated capacity.
    pub fn memory_bytes(&self) -> usize {
        use std::mem::size_of;
        let members: usize = self
            .classes
            .iter()
            .map(|c| c.members.capacity() * size_of::<u32>())
            .sum();
        // hashbrown: one control byte per bucket beside each entry.
        let map = self.class_of_label.capacity() * (size_of::<(i64, u16)>() + 1);
        // B-tree nodes hold up to 11 keys plus edges; count twice the key bytes.
        let tree = self.by_size.len() * 2 * size_of::<(u32, Reverse<i64>, u16)>();
        self.store.capacity()
            + self.keys.capacity() * size_of::<u64>()
            + self.inserted.capacity() * size_of::<u32>()
            + members
            + self.classes.capacity() * size_of::<Class>()
            + map
            + tree
            + (self.ranked.capacity() + self.rank_of.capacity()) * size_of::<u16>()
            + self.fenwick.capacity() * size_of::<u32>()
    }

    fn class_at(&self, slot: usize) -> usize {
        (self.keys[slot] >> ID_BITS) as usize
    }

    /// Registers a new label (index structures are rebuilt by the caller).
    fn add_class(&mut self, label: i64) -> Result<u16> {
        ensure!(
            self.classes.len() < MAX_CLASSES,
            "replay buffer: label {label} would be distinct label number {}, more than the {MAX_CLASSES} a buffer holds",
            self.classes.len() + 1
        );
        let c = self.classes.len() as u16;
        self.classes.push(Class {
            label,
            members: VecDeque::new(),
        });
        self.class_of_label.insert(label, c);
        Ok(c)
    }

    /// Recomputes label ranks, the Fenwick tree and the size index from the member lists.
    fn rebuild_index(&mut self) {
        let mut ranked: Vec<u16> = (0..self.classes.len() as u16).collect();
        ranked.sort_unstable_by_key(|&c| self.classes[c as usize].label);
        self.rank_of = vec![0; ranked.len()];
        for (r, &c) in ranked.iter().enumerate() {
            self.rank_of[c as usize] = r as u16;
        }
        let k = ranked.len();
        self.fenwick = ranked
            .iter()
            .map(|&c| self.classes[c as usize].members.len() as u32)
            .collect();
        for i in 1..=k {
            let j = i + lowbit(i);
            if j <= k {
                self.fenwick[j - 1] += self.fenwick[i - 1];
            }
        }
        self.ranked = ranked;
        self.by_size = self
            .classes
            .iter()
            .enumerate()
            .map(|(c, class)| (class.members.len() as u32, Reverse(class.label), c as u16))
            .collect();
    }

    /// Updates the size index and Fenwick tree after class `class` changed size by `delta`
    /// (its member list already changed).
    fn resized(&mut self, class: u16, delta: i32) {
        let cl = &self.classes[class as usize];
        let now = cl.members.len() as u32;
        let before = now.wrapping_add_signed(-delta);
        self.by_size.remove(&(before, Reverse(cl.label), class));
        self.by_size.insert((now, Reverse(cl.label), class));
        let mut i = self.rank_of[class as usize] as usize + 1;
        while i <= self.fenwick.len() {
            self.fenwick[i - 1] = self.fenwick[i - 1].wrapping_add_signed(delta);
            i += lowbit(i);
        }
    }

    /// Slot of the item at position `g` of the enumeration (`g < len()`).
    fn slot_at(&self, g: usize) -> usize {
        let k = self.fenwick.len();
        let mut rest = g as u32;
        let mut pos = 0usize;
        let mut step = if k == 0 {
            0
        } else {
            1 << (usize::BITS - 1 - k.leading_zeros())
        };
        while step > 0 {
            let next = pos + step;
            if next <= k && self.fenwick[next - 1] <= rest {
                pos = next;
                rest -= self.fenwick[next - 1];
            }
            step >>= 1;
        }
        // pos classes (by rank) hold at most g items in all; the item is in rank `pos`.
        let class = self.ranked[pos] as usize;
        self.classes[class].members[rest as usize] as usize
    }

    /// Removes one item of the largest class; returns its (now free) slot.
    fn evict_one<R: Rng + ?Sized>(&mut self, rng: &mut R) -> Result<(u32, Evicted)> {
        let &(size, _, class) = self
            .by_size
            .last()
            .context("replay buffer: full but holds no class (internal error)")?;
        ensure!(
            size > 0,
            "replay buffer: full but its largest class is empty (internal error)"
        );
        let members = &mut self.classes[class as usize].members;
        let slot = match self.eviction {
            Eviction::Random => {
                let p = rng.random_range(0..size as usize);
                members.swap_remove_back(p)
            }
            Eviction::Oldest => members.pop_front(),
        }
        .context("replay buffer: class index out of step (internal error)")?;
        let ev = Evicted {
            id: self.id(slot as usize),
            label: self.classes[class as usize].label,
            inserted: self.inserted(slot as usize),
        };
        self.resized(class, -1);
        Ok((slot, ev))
    }

    /// Replaces insertion counters by their ranks (keeps their order) when the counter
    /// would overflow.
    fn renumber_inserted(&mut self) {
        let mut order: Vec<u32> = (0..self.len() as u32).collect();
        order.sort_unstable_by_key(|&s| self.inserted[s as usize]);
        for (rank, &s) in order.iter().enumerate() {
            self.inserted[s as usize] = rank as u32;
        }
        self.clock = self.len() as u32;
    }

    /// Makes room in the code store for one more item (3% steps, capped at capacity).
    fn grow_store(&mut self) {
        if self.store.capacity() - self.store.len() >= self.item_bytes {
            return;
        }
        let items = grow_step(self.len(), self.capacity);
        self.store.reserve_exact(items * self.item_bytes);
    }
}

fn pack(id: u64, class: u16) -> u64 {
    id | (u64::from(class) << ID_BITS)
}

fn lowbit(i: usize) -> usize {
    i & i.wrapping_neg()
}

/// Items to add when a per-slot array of `len` items is full.
fn grow_step(len: usize, capacity: Option<usize>) -> usize {
    let step = (len / 32).max(MIN_GROW_ITEMS);
    match capacity {
        Some(c) => step.min(c.saturating_sub(len)).max(1),
        None => step,
    }
}

fn grow_vec<T>(v: &mut Vec<T>, capacity: Option<usize>) {
    if v.len() == v.capacity() {
        v.reserve_exact(grow_step(v.len(), capacity));
    }
}

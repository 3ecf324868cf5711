use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::*;

fn item(id: u64, bytes: usize) -> Vec<u8> {
    (0..bytes).map(|i| (id as usize * 31 + i) as u8).collect()
}

/// A buffer filled with `n` items of skewed labels (label = id % 7, plus extra 0s).
fn filled(
    n: u64,
    capacity: Option<usize>,
    eviction: Eviction,
    rng: &mut ChaCha8Rng,
) -> ReplayBuffer {
    let mut b = ReplayBuffer::new(6, capacity, eviction).unwrap();
    for id in 0..n {
        let label = if id % 3 == 0 { 0 } else { (id % 7) as i64 - 2 };
        b.insert(id, label, &item(id, 6), rng).unwrap();
    }
    b
}

fn check_invariants(b: &ReplayBuffer) {
    let mut seen = vec![false; b.len()];
    let mut total = 0;
    for class in &b.classes {
        for &s in &class.members {
            assert!(!seen[s as usize], "slot {s} twice");
            seen[s as usize] = true;
            assert_eq!(b.label(s as usize), class.label);
        }
        total += class.members.len();
    }
    assert_eq!(total, b.len());
    for g in 0..b.len() {
        assert_eq!(b.slot_at(g), b.slots()[g]);
    }
}

#[test]
fn insert_and_access() {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let b = filled(50, None, Eviction::Random, &mut rng);
    assert_eq!(b.len(), 50);
    for s in 0..50 {
        assert_eq!(b.id(s), s as u64);
        assert_eq!(b.codes(s), &item(s as u64, 6)[..]);
        assert_eq!(b.inserted(s), s as u64);
    }
    let mut out = Vec::new();
    b.gather(&[3, 1], &mut out);
    assert_eq!(out, [item(3, 6), item(1, 6)].concat());
    let sizes = b.class_sizes();
    assert_eq!(sizes.iter().map(|s| s.1).sum::<usize>(), 50);
    assert!(sizes.windows(2).all(|w| w[0].0 < w[1].0));
    check_invariants(&b);
}

#[test]
fn rejects_bad_items() {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let mut b = ReplayBuffer::new(4, Some(2), Eviction::Random).unwrap();
    let e = b.insert(1, 0, &[0; 3], &mut rng).unwrap_err().to_string();
    assert!(e.contains("3 bytes") && e.contains("expected 4"), "{e}");
    let e = b
        .insert(MAX_ID + 1, 0, &[0; 4], &mut rng)
        .unwrap_err()
        .to_string();
    assert!(e.contains("exceeds"), "{e}");
    assert!(b.is_empty());
    assert!(ReplayBuffer::new(4, Some(0), Eviction::Random).is_err());
    assert!(ReplayBuffer::new(0, None, Eviction::Random).is_err());
}

#[test]
fn sample_is_distinct_uniform_and_all_when_small() {
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let b = filled(40, None, Eviction::Random, &mut rng);
    let mut counts = [0usize; 40];
    for _ in 0..2000 {
        let s = b.sample(10, &mut rng);
        assert_eq!(s.len(), 10);
        let mut ids = b.ids_of(&s);
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), 10);
        for id in ids {
            counts[id as usize] += 1;
        }
    }
    // Each item is drawn with probability 1/4: 500 expected, sd ~19.
    assert!(
        counts.iter().all(|&c| (400..600).contains(&c)),
        "{counts:?}"
    );
    let all = b.sample(40, &mut rng);
    assert_eq!(all, b.slots());
    assert_eq!(b.sample(100, &mut rng).len(), 40);
}

#[test]
fn evicts_from_largest_class_lowest_label_on_ties() {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let mut b = ReplayBuffer::new(1, Some(4), Eviction::Random).unwrap();
    for (id, label) in [(0u64, 5i64), (1, 5), (2, 3), (3, 3)] {
        assert!(b.insert(id, label, &[0], &mut rng).unwrap().is_none());
    }
    // Tie 2-2: evict from label 3.
    let ev = b.insert(4, 9, &[1], &mut rng).unwrap().unwrap();
    assert_eq!(ev.label, 3);
    // Now 5:2, 3:1, 9:1: evict from 5.
    let ev = b.insert(5, 9, &[1], &mut rng).unwrap().unwrap();
    assert_eq!(ev.label, 5);
    assert_eq!(b.len(), 4);
    assert_eq!(b.class_sizes(), vec![(3, 1), (5, 1), (9, 2)]);
    check_invariants(&b);
}

#[test]
fn oldest_eviction_is_fifo_per_class() {
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    let mut b = ReplayBuffer::new(2, Some(5), Eviction::Oldest).unwrap();
    for id in 0..5u64 {
        b.insert(id, (id % 2) as i64, &[id as u8; 2], &mut rng)
            .unwrap();
    }
    // Label 0 holds 0, 2, 4 (largest): evicts 0; then label 1 (1, 3, 5) is largest: 1,
    // then 3.
    let evicted: Vec<u64> = (5..8u64)
        .map(|id| b.insert(id, 1, &[0; 2], &mut rng).unwrap().unwrap().id)
        .collect();
    assert_eq!(evicted, vec![0, 1, 3]);
    check_invariants(&b);
}

#[test]
fn random_eviction_is_uniform_within_class() {
    let mut counts = [0usize; 4];
    for seed in 0..400 {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut b = ReplayBuffer::new(1, Some(5), Eviction::Random).unwrap();
        for id in 0..4u64 {
            b.insert(id, 0, &[0], &mut rng).unwrap();
        }
        b.insert(4, 1, &[0], &mut rng).unwrap();
        let ev = b.insert(5, 1, &[0], &mut rng).unwrap().unwrap();
        counts[ev.id as usize] += 1;
    }
    assert!(counts.iter().all(|&c| (60..140).contains(&c)), "{counts:?}");
}

fn continue_run(
    b: &mut ReplayBuffer,
    rng: &mut ChaCha8Rng,
    from: u64,
) -> Vec<(Vec<u64>, Option<u64>)> {
    (from..from + 300)
        .map(|id| {
            let s = b.ids_of(&b.sample(7, rng));
            let label = rng.random_range(0..6i64);
            let ev = b
                .insert(id, label, &item(id, 6), rng)
                .unwrap()
                .map(|e| e.id);
            (s, ev)
        })
        .collect()
}

#[test]
fn save_load_round_trip_behaves_identically() {
    let dir = std::env::temp_dir().join(format!("remind-buffer-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for eviction in [Eviction::Random, Eviction::Oldest] {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let mut b = filled(500, Some(200), eviction, &mut rng);
        let path = dir.join(format!("buffer-{}.arrow", eviction.name()));
        b.save(&path, "abc123", &[1, 2, 3]).unwrap();
        let loaded = ReplayBuffer::load(&path).unwrap();
        assert_eq!(loaded.item_shape, vec![1, 2, 3]);
        assert_eq!(loaded.codebook_hash, "abc123");
        let mut l = loaded.buffer;
        assert_eq!(l.len(), 200);
        assert_eq!(l.capacity(), Some(200));
        assert_eq!(l.eviction(), eviction);
        assert_eq!(l.ids_of(&l.slots()), b.ids_of(&b.slots()));
        for s in 0..l.len() {
            let orig = b.slots().into_iter().find(|&o| b.id(o) == l.id(s)).unwrap();
            assert_eq!(l.codes(s), b.codes(orig));
            assert_eq!(l.label(s), b.label(orig));
            assert_eq!(l.inserted(s), b.inserted(orig));
        }
        // The RNG state travels through serde, as a checkpoint would carry it.
        let json = serde_json::to_string(&rng).unwrap();
        let mut rng2: ChaCha8Rng = serde_json::from_str(&json).unwrap();
        let a = continue_run(&mut b, &mut rng, 1000);
        let c = continue_run(&mut l, &mut rng2, 1000);
        assert_eq!(a, c, "{eviction:?}");
        assert!(a.iter().all(|x| x.1.is_some()));
        check_invariants(&l);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn load_rejects_corrupt_positions() {
    let dir = std::env::temp_dir().join(format!("remind-buffer-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(6);
    let b = filled(20, None, Eviction::Random, &mut rng);
    let path = dir.join("b.arrow");
    let e = b.save(&path, "h", &[7]).unwrap_err().to_string();
    assert!(e.contains("[7]"), "{e}");
    let mut dup = b.clone();
    dup.insert(3, 1, &item(3, 6), &mut rng).unwrap();
    let e = dup.save(&path, "h", &[6]).unwrap_err().to_string();
    assert!(e.contains("id 3 twice"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn renumbering_keeps_order() {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let mut b = ReplayBuffer::new(1, Some(3), Eviction::Oldest).unwrap();
    for id in 0..3u64 {
        b.insert(id, 0, &[0], &mut rng).unwrap();
    }
    b.clock = u32::MAX;
    b.inserted[2] = u32::MAX - 1;
    let ev = b.insert(3, 0, &[0], &mut rng).unwrap().unwrap();
    assert_eq!(ev.id, 0);
    assert_eq!((b.inserted(1), b.inserted(2), b.inserted(0)), (1, 2, 3));
}

/// Raw bytes of codes plus 16 bytes per item, with 5% slack on the codes.
fn bound(b: &ReplayBuffer) -> f64 {
    1.05 * b.code_bytes() as f64 + 16.0 * b.len() as f64
}

#[test]
fn memory_within_bound_at_100k() {
    let mut rng = ChaCha8Rng::seed_from_u64(8);
    let bytes = 7 * 7 * 32;
    let codes = vec![7u8; bytes];
    for capacity in [None, Some(100_000)] {
        let mut b = ReplayBuffer::new(bytes, capacity, Eviction::Random).unwrap();
        for id in 0..100_000u64 {
            b.insert(id, (id % 1000) as i64, &codes, &mut rng).unwrap();
            if id % 9973 == 0 && id > 0 {
                assert!(
                    b.memory_bytes() as f64 <= bound(&b),
                    "{} items: {} > {}",
                    b.len(),
                    b.memory_bytes(),
                    bound(&b)
                );
            }
        }
        assert!(
            b.memory_bytes() as f64 <= bound(&b),
            "{} > {}",
            b.memory_bytes(),
            bound(&b)
        );
        // Keep going at capacity: evictions must not grow anything.
        if capacity.is_some() {
            let before = b.memory_bytes();
            for id in 100_000..120_000u64 {
                b.insert(id, (id % 1000) as i64, &codes, &mut rng).unwrap();
            }
            assert!(b.memory_bytes() <= before + 1000 * 16 * 4);
            assert!(b.memory_bytes() as f64 <= bound(&b));
        }
    }
}

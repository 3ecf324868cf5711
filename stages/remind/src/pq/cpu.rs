//! The CPU nearest-centroid kernel behind encoding and k-means assignment.
//!
//! A BLAS GEMM would write the whole `n x K` distance matrix to memory and read it back for
//! the argmin; with d/M = 16 the GEMM is tiny and that traffic dominates. This kernel keeps
//! a block of V vectors x KC centroids of distances in registers, fuses the argmin, and is
//! compiled for AVX-512 and AVX2+FMA with runtime dispatch (plain code elsewhere).

/// Centroids of all sub-spaces laid out for the kernel: per sub-space, `dsub` rows of
/// `kp` values (centroid-minor, padded to a multiple of 64 with +inf norms). The AVX-512
/// path is written with intrinsics (`super::avx512`): the portable version below keeps its
/// accumulators in memory when compiled for AVX-512 and ran at a quarter of the speed.
#[derive(Debug)]
pub struct KernelCodebook {
    m: usize,
    k: usize,
    kp: usize,
    dsub: usize,
    /// `[M][dsub][kp]`.
    ct: Vec<f32>,
    /// `[M][kp]` squared norms (+inf for padding).
    norms: Vec<f32>,
}

const PAD: usize = 64;

/// Where sub-vector s of row i lives in the input.
#[derive(Debug, Clone, Copy)]
enum Layout {
    /// Rows of M * dsub floats: at `i * M * dsub + s * dsub`.
    Rows,
    /// Sub-space major, M blocks of `n` sub-vectors: at `(s * n + i) * dsub`.
    SubspaceMajor { n: usize },
}

impl KernelCodebook {
    /// From `[M, K, dsub]` centroids (row-major).
    pub fn new(centroids: &[f32], m: usize, k: usize, dsub: usize) -> Self {
        let kp = k.div_ceil(PAD) * PAD;
        let mut ct = vec![0f32; m * dsub * kp];
        let mut norms = vec![f32::INFINITY; m * kp];
        for s in 0..m {
            for c in 0..k {
                let src = &centroids[(s * k + c) * dsub..(s * k + c + 1) * dsub];
                norms[s * kp + c] = src.iter().map(|v| v * v).sum();
                for (j, &v) in src.iter().enumerate() {
                    ct[(s * dsub + j) * kp + c] = v;
                }
            }
        }
        Self {
            m,
            k,
            kp,
            dsub,
            ct,
            norms,
        }
    }

    pub fn num_subspaces(&self) -> usize {
        self.m
    }

    /// Nearest centroid of every sub-vector of `x` (`n` rows of `M * dsub` floats) into
    /// `codes` (`n` rows of M), using up to `threads` threads. Ties go to the lower index.
    pub fn assign(&self, x: &[f32], codes: &mut [u8], threads: usize) {
        let n = x.len() / (self.m * self.dsub);
        self.assign_split(x, Layout::Rows, n, codes, threads);
    }

    /// As [`Self::assign`] for vectors stored sub-space major: M blocks of `n` sub-vectors
    /// of `dsub` floats (k-means keeps its training vectors so).
    pub fn assign_subspace_major(&self, xt: &[f32], codes: &mut [u8], threads: usize) {
        let n = xt.len() / (self.m * self.dsub);
        self.assign_split(xt, Layout::SubspaceMajor { n }, n, codes, threads);
    }

    /// Rows split into one contiguous range per thread.
    fn assign_split(&self, x: &[f32], layout: Layout, n: usize, codes: &mut [u8], threads: usize) {
        debug_assert_eq!(codes.len(), n * self.m);
        debug_assert!(self.k <= 256);
        let threads = threads.max(1).min(n.div_ceil(256).max(1));
        if threads == 1 {
            self.assign_range(x, layout, 0, codes);
            return;
        }
        let per = n.div_ceil(threads);
        std::thread::scope(|scope| {
            for (t, cs) in codes.chunks_mut(per * self.m).enumerate() {
                scope.spawn(move || self.assign_range(x, layout, t * per, cs));
            }
        });
    }

    /// Rows `r0..` (as many as `codes` holds) of `x`.
    fn assign_range(&self, x: &[f32], layout: Layout, r0: usize, codes: &mut [u8]) {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f")
                && std::arch::is_x86_feature_detected!("fma")
            {
                // SAFETY: the features the function is compiled for were detected above.
                return unsafe { self.assign_avx512(x, layout, r0, codes) };
            }
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                // SAFETY: as above.
                return unsafe { self.assign_avx2(x, layout, r0, codes) };
            }
        }
        self.assign_generic::<2, 32>(x, layout, r0, codes);
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,fma")]
    fn assign_avx512(&self, x: &[f32], layout: Layout, r0: usize, codes: &mut [u8]) {
        self.assign_with::<6>(
            x,
            layout,
            r0,
            codes,
            |rows, ct, norms| super::avx512::nearest(rows, ct, norms, self.kp, self.dsub),
            |row, ct, norms| super::avx512::nearest(row, ct, norms, self.kp, self.dsub),
        );
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    fn assign_avx2(&self, x: &[f32], layout: Layout, r0: usize, codes: &mut [u8]) {
        self.assign_generic::<4, 32>(x, layout, r0, codes);
    }

    #[inline(always)]
    fn assign_generic<const V: usize, const KC: usize>(
        &self,
        x: &[f32],
        layout: Layout,
        r0: usize,
        codes: &mut [u8],
    ) {
        self.assign_with::<V>(
            x,
            layout,
            r0,
            codes,
            |rows, ct, norms| nearest::<V, KC>(rows, ct, norms, self.kp, self.dsub),
            |row, ct, norms| nearest::<1, KC>(row, ct, norms, self.kp, self.dsub),
        );
    }

    /// Tiles of vectors (kept in L1/L2) against every sub-space, V vectors at a time
    /// through `near` (the remainder one at a time through `near1`), each given the
    /// sub-vectors, the sub-space's `[dsub][kp]` centroids and its `[kp]` norms. Rows
    /// `r0..r0 + codes.len() / M` of `x`; `codes` starts at row `r0`.
    #[inline(always)]
    fn assign_with<const V: usize>(
        &self,
        x: &[f32],
        layout: Layout,
        r0: usize,
        codes: &mut [u8],
        near: impl Fn(&[&[f32]; V], &[f32], &[f32]) -> [u32; V],
        near1: impl Fn(&[&[f32]; 1], &[f32], &[f32]) -> [u32; 1],
    ) {
        let (m, dsub) = (self.m, self.dsub);
        let n = codes.len() / m;
        let tile = 8 * V;
        for t0 in (0..n).step_by(tile) {
            let t1 = (t0 + tile).min(n);
            for s in 0..m {
                let ct = &self.ct[s * dsub * self.kp..(s + 1) * dsub * self.kp];
                let norms = &self.norms[s * self.kp..(s + 1) * self.kp];
                // Sub-vector s of local row i.
                let sub = |i: usize| {
                    let at = match layout {
                        Layout::Rows => (r0 + i) * m * dsub + s * dsub,
                        Layout::SubspaceMajor { n } => (s * n + r0 + i) * dsub,
                    };
                    &x[at..at + dsub]
                };
                let mut i = t0;
                while i + V <= t1 {
                    let rows: [&[f32]; V] = std::array::from_fn(|v| sub(i + v));
                    let best = near(&rows, ct, norms);
                    for v in 0..V {
                        codes[(i + v) * m + s] = best[v] as u8;
                    }
                    i += V;
                }
                while i < t1 {
                    codes[i * m + s] = near1(&[sub(i)], ct, norms)[0] as u8;
                    i += 1;
                }
            }
        }
    }
}

/// Reconstructs `codes` (`n` rows of M) from `[M, K, dsub]` centroids into `out` (`n` rows
/// of `M * dsub`), using up to `threads` threads.
pub fn decode_into(
    centroids: &[f32],
    m: usize,
    k: usize,
    dsub: usize,
    codes: &[u8],
    out: &mut [f32],
    threads: usize,
) {
    let n = codes.len() / m;
    let d = m * dsub;
    let run = |codes: &[u8], out: &mut [f32]| match dsub {
        // The common widths as fixed-size copies (a few vector moves, not a memcpy call).
        8 => decode_rows::<8>(centroids, m, k, codes, out),
        16 => decode_rows::<16>(centroids, m, k, codes, out),
        32 => decode_rows::<32>(centroids, m, k, codes, out),
        _ => {
            for (code, dst) in codes.chunks_exact(m).zip(out.chunks_exact_mut(d)) {
                for (s, (&c, piece)) in code.iter().zip(dst.chunks_exact_mut(dsub)).enumerate() {
                    let src = (s * k + c as usize) * dsub;
                    piece.copy_from_slice(&centroids[src..src + dsub]);
                }
            }
        }
    };
    let threads = threads.max(1).min(n.div_ceil(4096).max(1));
    if threads == 1 {
        return run(codes, out);
    }
    let per = n.div_ceil(threads);
    std::thread::scope(|scope| {
        for (c, o) in codes.chunks(per * m).zip(out.chunks_mut(per * d)) {
            scope.spawn(move || run(c, o));
        }
    });
}

/// [`decode_into`]'s loop for sub-vectors of `DSUB` floats.
fn decode_rows<const DSUB: usize>(
    centroids: &[f32],
    m: usize,
    k: usize,
    codes: &[u8],
    out: &mut [f32],
) {
    let (table, _) = centroids.as_chunks::<DSUB>();
    let (out, _) = out.as_chunks_mut::<DSUB>();
    for (code, dst) in codes.chunks_exact(m).zip(out.chunks_exact_mut(m)) {
        for (s, (&c, piece)) in code.iter().zip(dst.iter_mut()).enumerate() {
            *piece = table[s * k + c as usize];
        }
    }
}

/// argmin over centroids of `||c||^2 - 2 x.c` for V sub-vectors, KC centroids at a time.
#[inline(always)]
fn nearest<const V: usize, const KC: usize>(
    x: &[&[f32]; V],
    ct: &[f32],
    norms: &[f32],
    kp: usize,
    dsub: usize,
) -> [u32; V] {
    let mut best_d = [[f32::INFINITY; KC]; V];
    let mut best_i = [[0u32; KC]; V];
    for kc in (0..kp).step_by(KC) {
        let mut acc = [[0f32; KC]; V];
        for j in 0..dsub {
            let row: &[f32; KC] = ct[j * kp + kc..j * kp + kc + KC]
                .try_into()
                .expect("KC-wide row");
            for v in 0..V {
                let xv = x[v][j];
                for l in 0..KC {
                    acc[v][l] = xv.mul_add(row[l], acc[v][l]);
                }
            }
        }
        let nrm: &[f32; KC] = norms[kc..kc + KC].try_into().expect("KC-wide norms");
        for v in 0..V {
            for l in 0..KC {
                let dist = (-2.0f32).mul_add(acc[v][l], nrm[l]);
                let better = dist < best_d[v][l];
                best_d[v][l] = if better { dist } else { best_d[v][l] };
                best_i[v][l] = if better {
                    (kc + l) as u32
                } else {
                    best_i[v][l]
                };
            }
        }
    }
    std::array::from_fn(|v| {
        let (mut bd, mut bi) = (f32::INFINITY, 0u32);
        for l in 0..KC {
            let (dl, il) = (best_d[v][l], best_i[v][l]);
            if dl < bd || (dl == bd && il < bi) {
                bd = dl;
                bi = il;
            }
        }
        bi
    })
}

#[cfg(test)]
mod tests {
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use super::*;

    /// Small integers, so exact distance ties happen often.
    fn values(n: usize, rng: &mut ChaCha8Rng) -> Vec<f32> {
        (0..n).map(|_| rng.random_range(-3i32..=3) as f32).collect()
    }

    /// The index of the smallest `|c|^2 - 2 x.c` (the kernel's score), lowest on ties.
    fn brute_force(x: &[f32], cent: &[f32], k: usize, dsub: usize) -> u8 {
        let score = |c: usize| {
            let row = &cent[c * dsub..(c + 1) * dsub];
            let norm: f32 = row.iter().map(|v| v * v).sum();
            norm - 2.0 * row.iter().zip(x).map(|(a, b)| a * b).sum::<f32>()
        };
        (0..k).fold(0, |best, c| if score(c) < score(best) { c } else { best }) as u8
    }

    /// The dispatched kernel (AVX-512 or AVX2 where the CPU has them), the portable one and
    /// both input layouts give the same codes, the lowest index among exact ties.
    #[test]
    fn every_kernel_and_layout_agrees_with_brute_force() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        for (m, k, dsub, n) in [
            (4, 256, 16, 301),
            (3, 16, 3, 97),
            (2, 200, 32, 64),
            (5, 2, 1, 13),
        ] {
            let mut cent = values(m * k * dsub, &mut rng);
            // Exact duplicates at many index distances (same lane, next register, next
            // block, next lane): only the lowest index may win.
            for c in 7..k {
                if c % 3 == 0 {
                    let src = (c % 7) * dsub;
                    for s in 0..m {
                        let (a, b) = ((s * k + c) * dsub, s * k * dsub + src);
                        cent.copy_within(b..b + dsub, a);
                    }
                }
            }
            let x = values(n * m * dsub, &mut rng);
            let kc = KernelCodebook::new(&cent, m, k, dsub);
            let mut fast = vec![0u8; n * m];
            kc.assign(&x, &mut fast, 2);
            let mut portable = vec![0u8; n * m];
            kc.assign_generic::<2, 32>(&x, Layout::Rows, 0, &mut portable);
            assert_eq!(fast, portable, "m={m} k={k} dsub={dsub}");
            let mut xt = vec![0f32; x.len()];
            for i in 0..n {
                for s in 0..m {
                    xt[(s * n + i) * dsub..(s * n + i + 1) * dsub]
                        .copy_from_slice(&x[(i * m + s) * dsub..(i * m + s + 1) * dsub]);
                }
            }
            let mut major = vec![0u8; n * m];
            kc.assign_subspace_major(&xt, &mut major, 3);
            assert_eq!(major, fast, "sub-space major, m={m} k={k} dsub={dsub}");
            for i in 0..n {
                for s in 0..m {
                    let sub = &x[(i * m + s) * dsub..(i * m + s + 1) * dsub];
                    let want = brute_force(sub, &cent[s * k * dsub..(s + 1) * k * dsub], k, dsub);
                    assert_eq!(fast[i * m + s], want, "row {i} sub-space {s}");
                }
            }
        }
    }
}

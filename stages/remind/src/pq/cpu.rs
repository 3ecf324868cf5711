//! The CPU nearest-centroid kernel behind encoding and k-means assignment.
//!
//! A BLAS GEMM would write the whole `n x K` distance matrix to memory and read it back for
//! the argmin; with d/M = 16 the GEMM is tiny and that traffic dominates. This kernel keeps
//! a block of V vectors x KC centroids of distances in registers, fuses the argmin, and is
//! compiled for AVX-512 and AVX2+FMA with runtime dispatch (plain code elsewhere).

/// Centroids of all sub-spaces laid out for the kernel: per sub-space, `dsub` rows of
/// `kp` values (centroid-minor, padded to a multiple of 64 with +inf norms).
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
        let d = self.m * self.dsub;
        let n = x.len() / d;
        debug_assert_eq!(codes.len(), n * self.m);
        debug_assert!(self.k <= 256);
        let threads = threads.max(1).min(n.div_ceil(256).max(1));
        if threads == 1 {
            self.assign_range(x, codes);
            return;
        }
        let per = n.div_ceil(threads);
        std::thread::scope(|scope| {
            for (xs, cs) in x.chunks(per * d).zip(codes.chunks_mut(per * self.m)) {
                scope.spawn(move || self.assign_range(xs, cs));
            }
        });
    }

    fn assign_range(&self, x: &[f32], codes: &mut [u8]) {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f")
                && std::arch::is_x86_feature_detected!("fma")
            {
                // SAFETY: the features the function is compiled for were detected above.
                return unsafe { self.assign_avx512(x, codes) };
            }
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                // SAFETY: as above.
                return unsafe { self.assign_avx2(x, codes) };
            }
        }
        self.assign_generic::<2, 32>(x, codes);
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,fma")]
    unsafe fn assign_avx512(&self, x: &[f32], codes: &mut [u8]) {
        self.assign_generic::<4, 64>(x, codes);
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn assign_avx2(&self, x: &[f32], codes: &mut [u8]) {
        self.assign_generic::<4, 32>(x, codes);
    }

    /// Tiles of vectors (kept in L1/L2) against every sub-space, V vectors at a time.
    #[inline(always)]
    fn assign_generic<const V: usize, const KC: usize>(&self, x: &[f32], codes: &mut [u8]) {
        let d = self.m * self.dsub;
        let n = x.len() / d;
        const TILE: usize = 32;
        for t0 in (0..n).step_by(TILE) {
            let t1 = (t0 + TILE).min(n);
            for s in 0..self.m {
                let ct = &self.ct[s * self.dsub * self.kp..(s + 1) * self.dsub * self.kp];
                let norms = &self.norms[s * self.kp..(s + 1) * self.kp];
                let mut i = t0;
                while i + V <= t1 {
                    let rows: [&[f32]; V] = std::array::from_fn(|v| {
                        &x[(i + v) * d + s * self.dsub..(i + v) * d + (s + 1) * self.dsub]
                    });
                    let best = nearest::<V, KC>(&rows, ct, norms, self.kp, self.dsub);
                    for v in 0..V {
                        codes[(i + v) * self.m + s] = best[v] as u8;
                    }
                    i += V;
                }
                while i < t1 {
                    let row = [&x[i * d + s * self.dsub..i * d + (s + 1) * self.dsub]];
                    codes[i * self.m + s] =
                        nearest::<1, KC>(&row, ct, norms, self.kp, self.dsub)[0] as u8;
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
    let run = |codes: &[u8], out: &mut [f32]| {
        for (code, dst) in codes.chunks_exact(m).zip(out.chunks_exact_mut(d)) {
            for (s, (&c, piece)) in code.iter().zip(dst.chunks_exact_mut(dsub)).enumerate() {
                let src = (s * k + c as usize) * dsub;
                piece.copy_from_slice(&centroids[src..src + dsub]);
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

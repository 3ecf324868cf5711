//! k-means over all M sub-spaces at once: the assignment step is one batched GEMM per chunk
//! of training vectors, the update one `index_add_` over all sub-spaces.

use anyhow::Result;
use rand::seq::index::sample;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tch::{Device, Kind, Tensor};

use super::cpu::KernelCodebook;
use super::{chunk_rows, PqParams};

pub(super) struct KmeansFit {
    /// `[M, K, dsub]`.
    pub centroids: Tensor,
    /// The (subsampled) training vectors, `[n_train, d]`.
    pub train: Tensor,
    /// How many empty clusters were re-seeded by splitting a large one.
    pub splits: usize,
}

/// M codebooks of K centroids of `dsub` floats: the shape of the flat centroid arrays.
#[derive(Debug, Clone, Copy)]
struct Shape {
    m: usize,
    k: usize,
    dsub: usize,
}

/// Relative perturbation applied when an empty cluster is re-seeded from a large one.
const SPLIT_EPS: f32 = 1.0 / 1024.0;

pub(super) fn fit_subspaces(x: &Tensor, p: &PqParams) -> Result<KmeansFit> {
    if x.device() == Device::Cpu {
        fit_subspaces_cpu(x, p)
    } else {
        fit_subspaces_tch(x, p)
    }
}

/// The training subsample (seeded) and the initial centroid rows, shared by both paths.
fn draw(n: usize, p: &PqParams) -> (Option<Vec<i64>>, ChaCha8Rng) {
    let mut rng = ChaCha8Rng::seed_from_u64(p.seed);
    let limit = p.max_points_per_centroid.saturating_mul(p.ksub());
    let sub = (n > limit).then(|| {
        sample(&mut rng, n, limit)
            .into_iter()
            .map(|i| i as i64)
            .collect()
    });
    (sub, rng)
}

/// CPU k-means: assignment by the fused kernel, update by one pass over the vectors.
fn fit_subspaces_cpu(x: &Tensor, p: &PqParams) -> Result<KmeansFit> {
    let (n, d) = (x.size()[0] as usize, x.size()[1] as usize);
    let (m, k) = (p.num_subspaces, p.ksub());
    let dsub = d / m;
    let (sub, mut rng) = draw(n, p);
    let train = match &sub {
        Some(idx) => x.index_select(0, &Tensor::from_slice(idx)),
        None => x.shallow_clone(),
    }
    .to_kind(Kind::Float)
    .contiguous();
    let nt = train.size()[0] as usize;
    // Sub-space major ([M][nt][dsub]): each sub-space's vectors contiguous for both steps.
    let xt: Vec<f32> = Vec::<f32>::try_from(
        &train
            .view([nt as i64, m as i64, dsub as i64])
            .transpose(0, 1)
            .contiguous()
            .view([-1]),
    )?;
    let init: Vec<usize> = sample(&mut rng, nt, k).into_vec();
    let mut cent = vec![0f32; m * k * dsub];
    for s in 0..m {
        for (c, &row) in init.iter().enumerate() {
            let at = (s * nt + row) * dsub;
            cent[(s * k + c) * dsub..(s * k + c + 1) * dsub].copy_from_slice(&xt[at..at + dsub]);
        }
    }
    let threads = usize::try_from(tch::get_num_threads()).unwrap_or(1).max(1);
    let mut codes = vec![0u8; nt * m];
    let mut splits = 0;
    let shape = Shape { m, k, dsub };
    for _ in 0..p.iterations {
        KernelCodebook::new(&cent, m, k, dsub).assign_subspace_major(&xt, &mut codes, threads);
        let mut counts = vec![0f64; m * k];
        update_centroids(&xt, &codes, &mut cent, &mut counts, shape, threads);
        if counts.contains(&0.0) {
            splits += split_empty(&mut cent, &mut counts, shape, nt, p.seed);
        }
    }
    let centroids = Tensor::from_slice(&cent).view([m as i64, k as i64, dsub as i64]);
    Ok(KmeansFit {
        centroids,
        train,
        splits,
    })
}

/// The k-means update: every centroid becomes the mean of the vectors assigned to it
/// (centroids of empty clusters are left as they are; `counts` gets the cluster sizes).
/// `xt` is sub-space major (`[M][n][dsub]`); threads take whole sub-spaces, one at a time
/// so its sums (K x dsub) stay in cache, and sum in row order in f64: the result does not
/// depend on the thread count.
fn update_centroids(
    xt: &[f32],
    codes: &[u8],
    cent: &mut [f32],
    counts: &mut [f64],
    shape: Shape,
    threads: usize,
) {
    let Shape { m, k, dsub } = shape;
    let n = codes.len() / m;
    let run = |s0: usize, cent: &mut [f32], counts: &mut [f64]| {
        let mut sums = vec![0f64; k * dsub];
        for (t, (cent, counts)) in cent
            .chunks_exact_mut(k * dsub)
            .zip(counts.chunks_exact_mut(k))
            .enumerate()
        {
            let s = s0 + t;
            sums.fill(0.0);
            let block = &xt[s * n * dsub..(s + 1) * n * dsub];
            for (i, src) in block.chunks_exact(dsub).enumerate() {
                let c = codes[i * m + s] as usize;
                counts[c] += 1.0;
                for (acc, &v) in sums[c * dsub..(c + 1) * dsub].iter_mut().zip(src) {
                    *acc += f64::from(v);
                }
            }
            for (c, &count) in counts.iter().enumerate() {
                if count > 0.0 {
                    for j in 0..dsub {
                        cent[c * dsub + j] = (sums[c * dsub + j] / count) as f32;
                    }
                }
            }
        }
    };
    let per = m.div_ceil(threads.clamp(1, m));
    std::thread::scope(|scope| {
        for (i, (cent, counts)) in cent
            .chunks_mut(per * k * dsub)
            .zip(counts.chunks_mut(per * k))
            .enumerate()
        {
            scope.spawn(move || run(i * per, cent, counts));
        }
    });
}

/// Batched-GEMM k-means with tch (for CUDA).
fn fit_subspaces_tch(x: &Tensor, p: &PqParams) -> Result<KmeansFit> {
    let device = x.device();
    let (n, d) = (x.size()[0] as usize, x.size()[1] as usize);
    let (m, k) = (p.num_subspaces, p.ksub());
    let dsub = d / m;
    // Subsample to at most max_points_per_centroid * K vectors, shared by all sub-spaces.
    let (sub, mut rng) = draw(n, p);
    let train = match &sub {
        Some(idx) => x.index_select(0, &Tensor::from_slice(idx).to_device(device)),
        None => x.shallow_clone(),
    }
    .to_kind(Kind::Float)
    .contiguous();
    let nt = train.size()[0] as usize;

    // [M, n, dsub]: each sub-space's vectors contiguous, as the batched GEMM wants them.
    let xs = train
        .view([nt as i64, m as i64, dsub as i64])
        .transpose(0, 1)
        .contiguous();
    let flat_x = xs.view([(m * nt) as i64, dsub as i64]);

    // Initialise every codebook with the same K distinct random training vectors.
    let init: Vec<i64> = sample(&mut rng, nt, k)
        .into_iter()
        .map(|i| i as i64)
        .collect();
    let mut c = xs
        .index_select(1, &Tensor::from_slice(&init).to_device(device))
        .contiguous();

    let offsets = (Tensor::arange(m as i64, (Kind::Int64, device)) * k as i64).unsqueeze(1);
    let chunk = chunk_rows(m, k);
    let mut splits = 0;
    for _ in 0..p.iterations {
        let norms = c
            .square()
            .sum_dim_intlist([-1i64].as_slice(), false, Kind::Float)
            .unsqueeze(1);
        let ct = c.transpose(1, 2);
        let assign: Vec<Tensor> = (0..nt as i64)
            .step_by(chunk as usize)
            .map(|s| {
                let part = xs.narrow(1, s, chunk.min(nt as i64 - s));
                norms.baddbmm(&part, &ct, 1.0, -2.0).argmin(-1, false)
            })
            .collect();
        let flat = (Tensor::cat(&assign, 1) + &offsets).view([-1]);
        let sums = Tensor::zeros([(m * k) as i64, dsub as i64], (Kind::Float, device))
            .index_add(0, &flat, &flat_x);
        let counts = flat.bincount::<Tensor>(None, (m * k) as i64);
        c = (sums / counts.clamp_min(1).to_kind(Kind::Float).unsqueeze(1)).view([
            m as i64,
            k as i64,
            dsub as i64,
        ]);
        if counts.eq(0).any().int64_value(&[]) == 1 {
            let mut cent = Vec::<f32>::try_from(&c.to_device(Device::Cpu).contiguous().view([-1]))?;
            let mut cnt: Vec<f64> = Vec::<i64>::try_from(&counts.to_device(Device::Cpu))?
                .into_iter()
                .map(|v| v as f64)
                .collect();
            splits += split_empty(&mut cent, &mut cnt, Shape { m, k, dsub }, nt, p.seed);
            c = Tensor::from_slice(&cent)
                .view([m as i64, k as i64, dsub as i64])
                .to_device(device);
        }
    }
    Ok(KmeansFit {
        centroids: c,
        train,
        splits,
    })
}

/// Re-seeds each empty cluster from a cluster chosen with probability growing with its
/// size, perturbing the two copies symmetrically so they separate on the next iteration.
/// Returns how many clusters were re-seeded.
fn split_empty(cent: &mut [f32], cnt: &mut [f64], shape: Shape, n: usize, seed: u64) -> usize {
    let Shape { m, k, dsub } = shape;
    use rand::Rng;
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5eed_5b17);
    let mut splits = 0;
    for sub in 0..m {
        let base = sub * k;
        for ci in 0..k {
            if cnt[base + ci] != 0.0 {
                continue;
            }
            let mut cj = 0;
            loop {
                let prob = (cnt[base + cj] - 1.0) / (n as f64 - k as f64).max(1.0);
                if rng.random::<f64>() < prob {
                    break;
                }
                cj = (cj + 1) % k;
            }
            let (src, dst) = ((base + cj) * dsub, (base + ci) * dsub);
            for j in 0..dsub {
                let v = cent[src + j];
                let (up, down) = (v * (1.0 + SPLIT_EPS), v * (1.0 - SPLIT_EPS));
                if j % 2 == 0 {
                    cent[dst + j] = up;
                    cent[src + j] = down;
                } else {
                    cent[dst + j] = down;
                    cent[src + j] = up;
                }
            }
            cnt[base + ci] = (cnt[base + cj] / 2.0).floor();
            cnt[base + cj] -= cnt[base + ci];
            splits += 1;
        }
    }
    splits
}

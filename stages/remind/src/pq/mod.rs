//! Product quantization on tch tensors (CPU or CUDA): vectors of dim d are split into M
//! sub-spaces of d/M dims, each quantized by its own k-means codebook of 2^nbits centroids.
//! Fitting follows faiss's `ProductQuantizer` defaults (25 iterations, at most 256 training
//! points per centroid, random-point initialisation, empty-cluster splitting) but runs all
//! M sub-spaces at once as batched matrix products. Knows nothing of datasets or files
//! beyond the faiss interchange format.

#[cfg(target_arch = "x86_64")]
mod avx512;
mod cpu;
mod faiss;
mod kmeans;
mod opq;

pub use cpu::KernelCodebook;

use anyhow::{bail, ensure, Result};
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

pub use faiss::{faiss_object_name, from_faiss_bytes, to_faiss_bytes};

/// Fitting parameters (config section `fit_pq`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PqParams {
    /// M: number of sub-spaces (codebooks).
    pub num_subspaces: usize,
    /// Bits per code: 2^nbits centroids per sub-space (at most 8: codes are bytes).
    pub nbits: u32,
    /// k-means iterations.
    pub iterations: usize,
    /// Training vectors are subsampled to at most this many per centroid.
    pub max_points_per_centroid: usize,
    pub seed: u64,
    /// Learn an OPQ rotation before quantizing (see [`opq`]).
    pub opq: bool,
    /// Alternations of the OPQ fit (PQ fit of the rotated vectors, Procrustes update).
    pub opq_iterations: usize,
}

impl Default for PqParams {
    fn default() -> Self {
        Self {
            num_subspaces: 32,
            nbits: 8,
            iterations: 25,
            max_points_per_centroid: 256,
            seed: 1234,
            opq: false,
            opq_iterations: 20,
        }
    }
}

impl PqParams {
    pub fn ksub(&self) -> usize {
        1 << self.nbits
    }

    /// Checks the parameters against vectors of dimension `d`.
    pub fn check(&self, d: usize) -> Result<()> {
        ensure!(
            self.nbits >= 1 && self.nbits <= 8,
            "nbits must be between 1 and 8 (codes are bytes), found {}",
            self.nbits
        );
        ensure!(self.num_subspaces >= 1, "num_subspaces must be at least 1");
        ensure!(
            d.is_multiple_of(self.num_subspaces),
            "vector dimension d={d} is not divisible by num_subspaces M={}",
            self.num_subspaces
        );
        ensure!(self.iterations >= 1, "iterations must be at least 1");
        ensure!(
            self.max_points_per_centroid >= 1,
            "max_points_per_centroid must be at least 1"
        );
        ensure!(
            !self.opq || self.opq_iterations >= 1,
            "opq_iterations must be at least 1 with opq"
        );
        Ok(())
    }
}

/// A fitted product quantizer.
#[derive(Debug)]
pub struct ProductQuantizer {
    d: usize,
    m: usize,
    nbits: u32,
    /// `[M, 2^nbits, d/M]` float32.
    centroids: Tensor,
    /// `[M, 1, K]`: squared norms of the centroids (cached for encoding on GPUs).
    norms: Tensor,
    /// The CPU kernel's layout of the centroids (CPU quantizers only).
    kernel: Option<KernelCodebook>,
    /// Flat `[M, K, dsub]` centroids (CPU quantizers only), for decoding.
    flat: Vec<f32>,
    /// OPQ: the `[d, d]` orthogonal rotation applied before quantizing (`x R`), undone
    /// after decoding (`y R^T`).
    rotation: Option<Tensor>,
}

/// What a fit did, for the fit report.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FitStats {
    pub train_vectors: usize,
    pub input_vectors: usize,
    pub empty_cluster_splits: usize,
    /// Mean squared reconstruction error per vector (sum over dims) on the training vectors.
    pub train_mse: f64,
    pub seconds: f64,
}

/// Vectors per chunk in encode and assignment: bounds the `[M, chunk, K]` score tensor.
fn chunk_rows(m: usize, ksub: usize) -> i64 {
    let budget = 64usize << 20; // bytes of scores per chunk
    (budget / (4 * m * ksub)).clamp(256, 16384) as i64
}

/// A quantizer lent for decoding only, which may be shared across threads (the stream's
/// decoder on a second thread, `stream::overlap`): a plain `&ProductQuantizer` may not,
/// since its public tensors could be shallow-cloned and written in place.
#[derive(Debug, Clone, Copy)]
pub struct DecodeView<'a>(&'a ProductQuantizer);

// SAFETY: a quantizer owns its tensors' storage (its constructors copy what they are given)
// and writes them only while it is built; after that no method takes `&mut self` or
// changes a tensor in place, and the tensors are reachable only inside this crate
// (`centroids()`, `rotation()` are `pub(crate)`), where nothing writes them. This view
// exposes only the decoding methods, which read the centroids and rotation and allocate
// their own outputs; libtorch tensors may be read from several threads at once (atomic
// reference counts).
unsafe impl Send for DecodeView<'_> {}
// SAFETY: as for `Send` above: shared, the view only reads.
unsafe impl Sync for DecodeView<'_> {}

impl DecodeView<'_> {
    /// d: the decoded vectors' dimension.
    pub fn dim(&self) -> usize {
        self.0.dim()
    }
    /// M: codes per vector.
    pub fn num_subspaces(&self) -> usize {
        self.0.num_subspaces()
    }
    pub fn device(&self) -> Device {
        self.0.device()
    }
    /// [`ProductQuantizer::decode`].
    pub fn decode(&self, codes: &Tensor) -> Result<Tensor> {
        self.0.decode(codes)
    }
    /// [`ProductQuantizer::decode_into`].
    pub fn decode_into(&self, codes: &[u8], out: &mut [f32]) -> Result<()> {
        self.0.decode_into(codes, out)
    }
}

impl ProductQuantizer {
    /// Builds a quantizer from `[M, K, d/M]` centroids.
    pub fn from_centroids(centroids: Tensor) -> Result<Self> {
        let size = centroids.size();
        ensure!(
            size.len() == 3,
            "centroids must be [M, K, d/M], found {size:?}"
        );
        let (m, k, dsub) = (size[0] as usize, size[1] as usize, size[2] as usize);
        ensure!(
            k.is_power_of_two() && (2..=256).contains(&k),
            "codebooks must have 2^nbits centroids (2..256), found {k}"
        );
        ensure!(
            centroids.isfinite().all().int64_value(&[]) == 1,
            "centroids contain NaN or Inf"
        );
        // A copy: no handle the caller keeps can write the quantizer's storage
        // (`DecodeView`'s safety).
        let centroids = centroids.to_kind(Kind::Float).contiguous().copy();
        let norms = centroids
            .square()
            .sum_dim_intlist([-1i64].as_slice(), false, Kind::Float)
            .unsqueeze(1);
        let (kernel, flat) = if centroids.device() == Device::Cpu {
            let flat = Vec::<f32>::try_from(&centroids.view([-1]))?;
            (Some(KernelCodebook::new(&flat, m, k, dsub)), flat)
        } else {
            (None, Vec::new())
        };
        Ok(Self {
            d: m * dsub,
            m,
            nbits: k.trailing_zeros(),
            centroids,
            norms,
            kernel,
            flat,
            rotation: None,
        })
    }

    /// The same codebooks behind an OPQ rotation `r` (`[d, d]`, orthogonal).
    pub fn with_rotation(mut self, r: Tensor) -> Result<Self> {
        let d = self.d as i64;
        ensure!(
            r.size() == [d, d],
            "OPQ rotation must be [{d}, {d}], found {:?}",
            r.size()
        );
        let r = r
            .to_kind(Kind::Float)
            .to_device(self.device())
            .contiguous()
            .copy();
        let eye = Tensor::eye(d, (Kind::Float, self.device()));
        let err = (r.transpose(0, 1).matmul(&r) - eye)
            .abs()
            .max()
            .double_value(&[]);
        ensure!(
            err < 1e-3,
            "OPQ rotation is not orthogonal (|R^T R - I| = {err:.2e})"
        );
        self.rotation = Some(r);
        Ok(self)
    }

    /// The OPQ rotation, if any.
    pub(crate) fn rotation(&self) -> Option<&Tensor> {
        self.rotation.as_ref()
    }

    fn rotate(&self, x: &Tensor) -> Tensor {
        match &self.rotation {
            Some(r) => x.matmul(r),
            None => x.shallow_clone(),
        }
    }

    /// Fits on `x` (`[n, d]` float32) on `x`'s device.
    pub fn fit(x: &Tensor, params: &PqParams) -> Result<(Self, FitStats)> {
        let start = std::time::Instant::now();
        let size = x.size();
        ensure!(
            size.len() == 2,
            "training vectors must be [n, d], found {size:?}"
        );
        let (n, d) = (size[0] as usize, size[1] as usize);
        params.check(d)?;
        let k = params.ksub();
        ensure!(
            n >= k,
            "{n} training vectors are fewer than the {k} centroids per codebook (2^nbits): \
                         use more items or a smaller nbits"
        );
        let _guard = tch::no_grad_guard();
        let (pq, train_mse, fit) = if params.opq {
            let r = opq::fit_rotation(x, params)?;
            let xr = x.to_kind(Kind::Float).matmul(&r);
            let fit = kmeans::fit_subspaces(&xr, params)?;
            let pq = Self::from_centroids(fit.centroids.shallow_clone())?
                .with_rotation(r.shallow_clone())?;
            // The training vectors in the original space: the error of the whole transform.
            let mse = pq.mse(&fit.train.matmul(&r.transpose(0, 1)))?;
            (pq, mse, fit)
        } else {
            let fit = kmeans::fit_subspaces(x, params)?;
            let pq = Self::from_centroids(fit.centroids.shallow_clone())?;
            let mse = pq.mse(&fit.train)?;
            (pq, mse, fit)
        };
        let stats = FitStats {
            train_vectors: fit.train.size()[0] as usize,
            input_vectors: n,
            empty_cluster_splits: fit.splits,
            train_mse,
            seconds: start.elapsed().as_secs_f64(),
        };
        Ok((pq, stats))
    }

    pub fn dim(&self) -> usize {
        self.d
    }
    pub fn num_subspaces(&self) -> usize {
        self.m
    }
    pub fn nbits(&self) -> u32 {
        self.nbits
    }
    pub fn ksub(&self) -> usize {
        1 << self.nbits
    }
    pub fn dsub(&self) -> usize {
        self.d / self.m
    }
    pub fn device(&self) -> Device {
        self.centroids.device()
    }
    /// This quantizer for decoding only, shareable across threads.
    pub fn decode_view(&self) -> DecodeView<'_> {
        DecodeView(self)
    }
    /// `[M, K, d/M]` centroids.
    pub(crate) fn centroids(&self) -> &Tensor {
        &self.centroids
    }

    /// Moves the quantizer to `device`.
    pub fn to_device(&self, device: Device) -> Result<Self> {
        let pq = Self::from_centroids(self.centroids.to_device(device))?;
        match &self.rotation {
            Some(r) => pq.with_rotation(r.to_device(device)),
            None => Ok(pq),
        }
    }

    /// Centroids as a flat `M * K * d/M` vector (faiss's layout).
    pub fn centroids_vec(&self) -> Result<Vec<f32>> {
        let c = self
            .centroids
            .to_device(Device::Cpu)
            .contiguous()
            .view([-1]);
        Ok(Vec::<f32>::try_from(&c)?)
    }

    /// Nearest centroid per sub-space: `[n, d]` float -> `[n, M]` uint8.
    pub fn encode(&self, x: &Tensor) -> Result<Tensor> {
        let size = x.size();
        ensure!(
            size.len() == 2 && size[1] as usize == self.d,
            "vectors to encode must be [n, {}], found {size:?}",
            self.d
        );
        let _guard = tch::no_grad_guard();
        let x = self.rotate(&x.to_device(self.device()).to_kind(Kind::Float));
        let n = size[0];
        if let Some(kernel) = &self.kernel {
            let codes = with_f32_slice(&x, |flat| self.encode_slice_with(kernel, flat));
            return Ok(Tensor::from_slice(&codes).view([n, self.m as i64]));
        }
        let chunk = chunk_rows(self.m, self.ksub());
        let parts: Vec<Tensor> = (0..n)
            .step_by(chunk as usize)
            .map(|s| {
                let len = chunk.min(n - s);
                self.assign(&x.narrow(0, s, len)).transpose(0, 1)
            })
            .collect();
        if parts.is_empty() {
            return Ok(Tensor::zeros(
                [0, self.m as i64],
                (Kind::Uint8, self.device()),
            ));
        }
        Ok(Tensor::cat(&parts, 0).to_kind(Kind::Uint8).contiguous())
    }

    /// CPU encoding of `x` (rows of d floats) straight from a slice: `rows x M` codes.
    pub fn encode_slice(&self, x: &[f32]) -> Result<Vec<u8>> {
        ensure!(
            x.len().is_multiple_of(self.d),
            "{} values are not whole vectors of d={}",
            x.len(),
            self.d
        );
        match &self.kernel {
            Some(kernel) if self.rotation.is_none() => Ok(self.encode_slice_with(kernel, x)),
            _ => {
                let n = (x.len() / self.d) as i64;
                let codes = self.encode(&Tensor::from_slice(x).view([n, self.d as i64]))?;
                Ok(Vec::<u8>::try_from(
                    &codes.to_device(Device::Cpu).view([-1]),
                )?)
            }
        }
    }

    fn encode_slice_with(&self, kernel: &KernelCodebook, x: &[f32]) -> Vec<u8> {
        let mut codes = vec![0u8; x.len() / self.d * self.m];
        let threads = usize::try_from(tch::get_num_threads()).unwrap_or(1).max(1);
        kernel.assign(x, &mut codes, threads);
        codes
    }

    /// `[rows, d]` -> `[M, rows]` int64 nearest-centroid indices.
    fn assign(&self, x: &Tensor) -> Tensor {
        let rows = x.size()[0];
        let xs = x
            .view([rows, self.m as i64, self.dsub() as i64])
            .transpose(0, 1);
        // argmin_k ||x - c_k||^2 = argmin_k (||c_k||^2 - 2 x.c_k): one fused batched GEMM.
        let scores = self
            .norms
            .baddbmm(&xs, &self.centroids.transpose(1, 2), 1.0, -2.0);
        scores.argmin(-1, false)
    }

    /// Reconstruction: `[n, M]` uint8 codes -> `[n, d]` float.
    pub fn decode(&self, codes: &Tensor) -> Result<Tensor> {
        let size = codes.size();
        ensure!(
            size.len() == 2 && size[1] as usize == self.m,
            "codes to decode must be [n, {}], found {size:?}",
            self.m
        );
        let _guard = tch::no_grad_guard();
        if self.kernel.is_some() {
            let codes = Vec::<u8>::try_from(
                &codes
                    .to_device(Device::Cpu)
                    .to_kind(Kind::Uint8)
                    .contiguous()
                    .view([-1]),
            )?;
            let out = Tensor::empty([size[0], self.d as i64], (Kind::Float, Device::Cpu));
            let len = codes.len() / self.m * self.d;
            // SAFETY: `out` is a fresh contiguous float32 CPU tensor of exactly `len` values,
            // owned here and not aliased until this function returns it.
            let dst = unsafe { std::slice::from_raw_parts_mut(out.data_ptr() as *mut f32, len) };
            advise_huge_pages(dst);
            self.decode_into(&codes, dst)?;
            return Ok(out);
        }
        let k = self.ksub() as i64;
        let codes = codes.to_device(self.device()).to_kind(Kind::Int64);
        let offsets = Tensor::arange(self.m as i64, (Kind::Int64, self.device())) * k;
        let flat = (codes + offsets.unsqueeze(0)).view([-1]);
        let table = self.centroids.view([-1, self.dsub() as i64]);
        let y = table.index_select(0, &flat).view([size[0], self.d as i64]);
        Ok(match &self.rotation {
            Some(r) => y.matmul(&r.transpose(0, 1)),
            None => y,
        })
    }

    /// CPU decoding into a slice: `codes` rows of M -> `out` rows of d.
    pub fn decode_into(&self, codes: &[u8], out: &mut [f32]) -> Result<()> {
        ensure!(
            codes.len().is_multiple_of(self.m) && out.len() == codes.len() / self.m * self.d,
            "decode: {} codes do not fill {} values",
            codes.len(),
            out.len()
        );
        ensure!(self.kernel.is_some(), "decode_into needs a CPU quantizer");
        let threads = usize::try_from(tch::get_num_threads()).unwrap_or(1).max(1);
        cpu::decode_into(
            &self.flat,
            self.m,
            self.ksub(),
            self.dsub(),
            codes,
            out,
            threads,
        );
        if let Some(r) = &self.rotation {
            let _guard = tch::no_grad_guard();
            let n = (out.len() / self.d) as i64;
            let y = Tensor::from_slice(out)
                .view([n, self.d as i64])
                .matmul(&r.transpose(0, 1))
                .contiguous();
            y.view([-1]).copy_data(out, out.len());
        }
        Ok(())
    }

    /// Mean over vectors of the squared reconstruction error (summed over dims).
    pub fn mse(&self, x: &Tensor) -> Result<f64> {
        let n = x.size()[0];
        if n == 0 {
            bail!("cannot measure the reconstruction error of zero vectors");
        }
        let chunk = chunk_rows(self.m, self.ksub());
        let mut total = 0.0;
        let x = x.to_device(self.device()).to_kind(Kind::Float);
        for s in (0..n).step_by(chunk as usize) {
            let part = x.narrow(0, s, chunk.min(n - s));
            let rec = self.decode(&self.encode(&part)?)?;
            total += (part - rec).square().sum(Kind::Double).double_value(&[]);
        }
        Ok(total / n as f64)
    }

    /// A short stable hash of the codebooks; codes record it so streaming can tell codes
    /// of another codebook apart.
    pub fn hash(&self) -> Result<String> {
        let v = self.centroids_vec()?;
        let mut h = crc32fast::Hasher::new();
        h.update(&(self.d as u64).to_le_bytes());
        h.update(&(self.m as u64).to_le_bytes());
        h.update(bytemuck::cast_slice(&v));
        if let Some(r) = self.rotation_vec()? {
            h.update(b"opq");
            h.update(bytemuck::cast_slice(&r));
        }
        Ok(format!("{:08x}", h.finalize()))
    }

    /// The OPQ rotation as a flat row-major `d * d` vector, if any.
    pub fn rotation_vec(&self) -> Result<Option<Vec<f32>>> {
        match &self.rotation {
            Some(r) => Ok(Some(Vec::<f32>::try_from(
                &r.to_device(Device::Cpu).contiguous().view([-1]),
            )?)),
            None => Ok(None),
        }
    }
}

/// Asks Linux to back a large fresh buffer with transparent huge pages: decoding writes
/// hundreds of megabytes into new memory, and faulting it in 4 KiB pages cost more than
/// the decoding itself. Only whole 2 MiB pages inside the buffer are advised; a no-op
/// elsewhere or when the kernel declines.
fn advise_huge_pages(buf: &mut [f32]) {
    #[cfg(target_os = "linux")]
    {
        const HUGE: usize = 2 << 20;
        let (start, end) = (buf.as_ptr() as usize, buf.as_ptr() as usize + buf.len() * 4);
        let (first, last) = (start.next_multiple_of(HUGE), end / HUGE * HUGE);
        if last > first {
            // SAFETY: [first, last) lies inside `buf`, which this process owns; MADV_HUGEPAGE
            // only changes how the kernel backs the pages, not their contents.
            unsafe {
                libc::madvise(
                    first as *mut libc::c_void,
                    last - first,
                    libc::MADV_HUGEPAGE,
                );
            }
        }
    }
}

/// Runs `f` on the values of the float32 CPU tensor `x`, read in place when it is
/// contiguous (encoding 100,000 vectors of d=512 would otherwise first copy 200 MB).
fn with_f32_slice<R>(x: &Tensor, f: impl FnOnce(&[f32]) -> R) -> R {
    debug_assert!(x.kind() == Kind::Float && x.device() == Device::Cpu);
    let x = x.contiguous();
    let len = x.numel();
    if len == 0 {
        return f(&[]);
    }
    // SAFETY: `x` is a contiguous float32 CPU tensor of `len` values (its data pointer is
    // non-null since it is not empty); it is owned here and outlives the borrow, and nothing
    // writes to it while `f` runs.
    let values = unsafe { std::slice::from_raw_parts(x.data_ptr() as *const f32, len) };
    f(values)
}

/// Index of the first vector of `x` (`[n, d]`) holding NaN or Inf, if any.
pub fn first_non_finite(x: &Tensor) -> Option<usize> {
    let bad = x.isfinite().logical_not().any_dim(1, false);
    let idx = bad.nonzero();
    (idx.size()[0] > 0).then(|| idx.int64_value(&[0, 0]) as usize)
}

#[cfg(test)]
mod tests;

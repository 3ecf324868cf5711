//! PQ codes back to feature maps, where training happens.

use std::path::Path;

use anyhow::{ensure, Result};
use tch::{Device, Tensor};

use crate::artifact::TensorDataset;
use crate::codes::codebook::load_codebook;
use crate::pq::ProductQuantizer;

/// The PQ side of a run: the codebook (on the training device), its hash and the `[H, W, M]`
/// shape of one item's codes.
pub struct StreamCodes {
    pub pq: ProductQuantizer,
    pub codebook_hash: String,
    pub code_shape: [usize; 3],
    pub device: Device,
    /// L2-normalise every decoded spatial position's vector (TDIUC).
    pub l2_normalize: bool,
}

impl StreamCodes {
    /// Loads the codebook at `codebook` after checking that every dataset of `codes` was
    /// made with it and has one shape; the codebook moves to `device`, where decoding
    /// happens (see [`Decoder::decode`]). Errors name the dataset and say to re-extract.
    pub fn open(
        codebook: &Path,
        codes: &[&TensorDataset],
        device: Device,
        l2_normalize: bool,
    ) -> Result<Self> {
        let (pq, info) = load_codebook(codebook)?;
        let mut shape = None;
        for ds in codes {
            let h = ds.meta("remind.codebook_hash")?;
            ensure!(
                h == info.codebook_hash,
                "{}: codes made with codebook {h}, but {} is {}: re-extract the codes",
                ds.root().display(),
                codebook.display(),
                info.codebook_hash
            );
            let s = ds.shape();
            ensure!(
                s.len() == 3 && s[2] == pq.num_subspaces(),
                "{}: codes shape {s:?} does not fit M={}",
                ds.root().display(),
                pq.num_subspaces()
            );
            let s = [s[0], s[1], s[2]];
            if let Some(first) = shape {
                ensure!(
                    first == s,
                    "{}: codes of shape {s:?}, the other codes are {first:?}",
                    ds.root().display()
                );
            }
            shape = Some(s);
        }
        let code_shape = shape.ok_or_else(|| anyhow::anyhow!("no codes given"))?;
        Ok(Self {
            pq: pq.to_device(device)?,
            codebook_hash: info.codebook_hash,
            code_shape,
            device,
            l2_normalize,
        })
    }

    pub fn decoder(&self) -> Decoder<'_> {
        Decoder {
            pq: &self.pq,
            code_shape: self.code_shape,
            device: self.device,
            l2_normalize: self.l2_normalize,
        }
    }

    /// Items' codes back to back -> `[B, C, H, W]` float on the device.
    pub fn decode(&self, codes: &[u8]) -> Result<Tensor> {
        self.decoder().decode(codes)
    }
}

/// Turns batches of codes into feature-map tensors.
pub struct Decoder<'a> {
    pub pq: &'a ProductQuantizer,
    /// `[H, W, M]` of one item's codes.
    pub code_shape: [usize; 3],
    pub device: Device,
    /// L2-normalise every spatial position's vector (TDIUC).
    pub l2_normalize: bool,
}

impl Decoder<'_> {
    /// `codes` holds whole items back to back; returns `[B, C, H, W]` float on the device.
    /// A quantizer on a GPU decodes there: the codes travel (one byte per sub-vector, not
    /// d/M floats) and the maps are never transposed on the CPU.
    pub fn decode(&self, codes: &[u8]) -> Result<Tensor> {
        let [h, w, m] = self.code_shape;
        let per_item = h * w * m;
        ensure!(
            codes.len().is_multiple_of(per_item),
            "codes are not whole items of {per_item} bytes"
        );
        let b = codes.len() / per_item;
        let c = self.pq.dim();
        let shape = [b as i64, h as i64, w as i64, c as i64];
        let mut x = if self.pq.device() == Device::Cpu {
            let mut values = vec![0f32; b * h * w * c];
            self.pq.decode_into(codes, &mut values)?;
            Tensor::from_slice(&values).view(shape)
        } else {
            let codes = Tensor::from_slice(codes)
                .view([(b * h * w) as i64, m as i64])
                .to_device(self.pq.device());
            self.pq.decode(&codes)?.view(shape)
        };
        if self.l2_normalize {
            x = &x
                / x.norm_scalaropt_dim(2.0, [-1i64].as_slice(), true)
                    .clamp_min(1e-12);
        }
        Ok(x.permute([0, 3, 1, 2]).contiguous().to_device(self.device))
    }
}

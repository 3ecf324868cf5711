//! PQ codes back to feature maps, where training happens.

use std::path::Path;

use anyhow::{bail, ensure, Result};
use tch::{Device, Tensor};

use crate::artifact::TensorDataset;
use crate::codes::codebook::load_codebook;
use crate::pq::{DecodeView, ProductQuantizer};
use crate::run::device::upload;

/// The PQ side of a run: the codebook (on the training device), its hash and the `[H, W, M]`
/// shape of one item's codes.
pub struct StreamCodes {
    pub pq: ProductQuantizer,
    pub codebook_hash: String,
    pub code_shape: [usize; 3],
    pub device: Device,
    /// L2-normalise every decoded spatial position's vector (TDIUC).
    pub l2_normalize: bool,
    /// Decode into channels-last maps ([`Decoder::channels_last`]); set for bf16.
    pub channels_last: bool,
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
            check_code_range(ds, info.nbits, codebook)?;
        }
        let code_shape = shape.ok_or_else(|| anyhow::anyhow!("no codes given"))?;
        Ok(Self {
            pq: pq.to_device(device)?,
            codebook_hash: info.codebook_hash,
            code_shape,
            device,
            l2_normalize,
            channels_last: false,
        })
    }

    pub fn decoder(&self) -> Decoder<'_> {
        Decoder {
            pq: self.pq.decode_view(),
            code_shape: self.code_shape,
            device: self.device,
            l2_normalize: self.l2_normalize,
            channels_last: self.channels_last,
        }
    }

    /// Items' codes back to back -> `[B, C, H, W]` float on the device.
    pub fn decode(&self, codes: &[u8]) -> Result<Tensor> {
        self.decoder().decode(codes)
    }
}

/// Refuses codes of `ds` that name no centroid: a byte >= 2^`nbits` (possible when nbits
/// < 8) would index past its sub-space's table, or decode another sub-space's centroids.
/// One pass over the memory-mapped codes, before training reads any.
fn check_code_range(ds: &TensorDataset, nbits: u32, codebook: &Path) -> Result<()> {
    let ksub = 1usize << nbits.min(8);
    if ksub > usize::from(u8::MAX) {
        return Ok(());
    }
    let m = ds.shape().last().copied().unwrap_or(1).max(1);
    for part in ds.parts() {
        for b in 0..part.num_batches() {
            let codes = part.batch_u8(b)?;
            if let Some(at) = codes.iter().position(|&c| usize::from(c) >= ksub) {
                let width = part.width().max(1);
                let ids = part.batch_ids(b)?;
                let id = ids.get(at / width).copied().unwrap_or_default();
                bail!(
                    "{}: column 'data': row id {id}: code {} in sub-space {} (value {} of the \
                     row), expected < 2^{nbits} = {ksub} as {} has {ksub} centroids per \
                     sub-space",
                    part.path().display(),
                    codes[at],
                    (at % width) % m,
                    at % width,
                    codebook.display()
                );
            }
        }
    }
    Ok(())
}

/// Turns batches of codes into feature-map tensors.
#[derive(Clone, Copy)]
pub struct Decoder<'a> {
    pub pq: DecodeView<'a>,
    /// `[H, W, M]` of one item's codes.
    pub code_shape: [usize; 3],
    pub device: Device,
    /// L2-normalise every spatial position's vector (TDIUC).
    pub l2_normalize: bool,
    /// Return the maps laid out channels-last (`[B, C, H, W]` with NHWC strides), as
    /// decoding writes them: what bf16's convolutions take ([`crate::run::Precision::input`]),
    /// so the transpose to NCHW and the copy back are both saved (same values).
    pub channels_last: bool,
}

impl Decoder<'_> {
    /// `codes` holds whole items back to back; returns `[B, C, H, W]` float on the device
    /// (NCHW, or channels-last with [`Self::channels_last`]). A quantizer on a GPU decodes
    /// there: the codes travel (one byte per sub-vector, not d/M floats) and the maps are
    /// never transposed on the CPU.
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
            let codes = upload(
                &Tensor::from_slice(codes).view([(b * h * w) as i64, m as i64]),
                self.pq.device(),
            );
            self.pq.decode(&codes)?.view(shape)
        };
        if self.l2_normalize {
            x = &x
                / x.norm_scalaropt_dim(2.0, [-1i64].as_slice(), true)
                    .clamp_min(1e-12);
        }
        // Decoding fills [B, H, W, C]: as [B, C, H, W] that is channels-last already.
        let x = x.permute([0, 3, 1, 2]);
        let x = if self.channels_last {
            x
        } else {
            x.contiguous()
        };
        Ok(x.to_device(self.device))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::artifact::dataset::write_single_part;
    use crate::artifact::{DType, Payload, Producer, TensorSpec};
    use crate::codes::codebook::{save_codebook, CodebookInfo, CODEBOOK_HASH_KEY};
    use crate::pq::PqParams;
    use tch::Kind;

    #[test]
    fn channels_last_decoding_has_the_same_values_and_nhwc_strides() {
        // M = 2 sub-spaces of 4 centroids of 3 values: C = 6; 2 items of 2x3 maps.
        let pq = ProductQuantizer::from_centroids(
            Tensor::arange(24, (Kind::Float, Device::Cpu)).view([2, 4, 3]),
        )
        .unwrap();
        let codes: Vec<u8> = (0..2 * 2 * 3 * 2).map(|i| (i * 7 % 4) as u8).collect();
        let decode = |channels_last| {
            Decoder {
                pq: pq.decode_view(),
                code_shape: [2, 3, 2],
                device: Device::Cpu,
                l2_normalize: false,
                channels_last,
            }
            .decode(&codes)
            .unwrap()
        };
        let (nchw, nhwc) = (decode(false), decode(true));
        assert_eq!(nchw.size(), vec![2, 6, 2, 3]);
        assert_eq!(nchw.stride(), vec![36, 6, 3, 1]);
        assert_eq!(nhwc.stride(), vec![36, 1, 18, 6]);
        assert!(nchw.equal(&nhwc));
        // bf16's input: no copy of a channels-last decode.
        let input = crate::run::Precision::Bf16.input(&nhwc);
        assert_eq!(input.data_ptr(), nhwc.data_ptr());
    }

    #[test]
    fn codes_that_name_no_centroid_are_refused() {
        let dir = std::env::temp_dir().join(format!("remind-code-range-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        // M = 2 sub-spaces of 4 centroids (nbits 2) of 3 values.
        let pq = ProductQuantizer::from_centroids(
            Tensor::arange(24, (Kind::Float, Device::Cpu)).view([2, 4, 3]),
        )
        .unwrap();
        let info = CodebookInfo {
            d: 6,
            num_subspaces: 2,
            nbits: 2,
            dsub: 3,
            params: PqParams::default(),
            train_vectors: 0,
            train_mse: None,
            codebook_hash: pq.hash().unwrap(),
        };
        let codebook = dir.join("codebook.arrow");
        save_codebook(&codebook, &pq, &info, Producer::new("test", "0")).unwrap();
        let spec = || {
            TensorSpec::new(
                "codes",
                &[1, 1, 2],
                "HWM",
                DType::U8,
                Producer::new("t", "0"),
            )
            .with(CODEBOOK_HASH_KEY, info.codebook_hash.clone())
        };
        for (name, codes) in [("good", [0, 3, 2, 1]), ("bad", [0, 3, 2, 7])] {
            write_single_part(&dir.join(name), spec(), &[5, 6], Payload::U8(&codes)).unwrap();
        }
        let open = |name: &str| {
            let ds = TensorDataset::open(&dir.join(name), "codes").unwrap();
            StreamCodes::open(&codebook, &[&ds], Device::Cpu, false).map(|_| ())
        };
        open("good").unwrap();
        let err = format!("{:#}", open("bad").unwrap_err());
        assert!(
            err.contains("column 'data': row id 6: code 7 in sub-space 1")
                && err.contains("expected < 2^2 = 4"),
            "{err}"
        );

        // A codebook claiming 2^200 centroids per sub-space (1 << 200 wraps to 2^8).
        let lying = dir.join("lying.arrow");
        let claims = CodebookInfo {
            nbits: 200,
            ..info.clone()
        };
        save_codebook(&lying, &pq, &claims, Producer::new("test", "0")).unwrap();
        let err = format!("{:#}", load_codebook(&lying).unwrap_err());
        assert!(
            err.contains("nbits must be 1 to 8") && err.contains("found 200"),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

//! Augmentation of replayed feature maps (REMIND's ImageNet setting): random resized crops
//! on the decoded maps and mixup across two replay draws.

use anyhow::Result;
use rand::Rng;
use rand_distr::{Beta, Distribution};
use tch::Tensor;

use crate::run::device::upload;

/// A crop box on an `h x w` map: rows `top..top+height`, columns `left..left+width`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Crop {
    pub top: i64,
    pub left: i64,
    pub height: i64,
    pub width: i64,
}

/// Area fraction and aspect-ratio range of the crops.
pub const CROP_SCALE: (f64, f64) = (2.0 / 7.0, 1.0);
pub const CROP_RATIO: (f64, f64) = (3.0 / 4.0, 4.0 / 3.0);

/// Draws a crop as torchvision's `RandomResizedCrop.get_params` does: area fraction uniform
/// in `CROP_SCALE`, aspect ratio log-uniform in `CROP_RATIO`, up to 10 tries; else a centre
/// crop clamped to the ratio range.
pub fn draw_crop<R: Rng + ?Sized>(h: i64, w: i64, rng: &mut R) -> Crop {
    let area = (h * w) as f64;
    let (lr0, lr1) = (CROP_RATIO.0.ln(), CROP_RATIO.1.ln());
    for _ in 0..10 {
        let target = area * rng.random_range(CROP_SCALE.0..=CROP_SCALE.1);
        let ratio = rng.random_range(lr0..=lr1).exp();
        let cw = (target * ratio).sqrt().round() as i64;
        let ch = (target / ratio).sqrt().round() as i64;
        if cw > 0 && cw <= w && ch > 0 && ch <= h {
            let top = rng.random_range(0..=h - ch);
            let left = rng.random_range(0..=w - cw);
            return Crop {
                top,
                left,
                height: ch,
                width: cw,
            };
        }
    }
    let in_ratio = w as f64 / h as f64;
    let (cw, ch) = if in_ratio < CROP_RATIO.0 {
        (w, (w as f64 / CROP_RATIO.0).round() as i64)
    } else if in_ratio > CROP_RATIO.1 {
        ((h as f64 * CROP_RATIO.1).round() as i64, h)
    } else {
        (w, h)
    };
    Crop {
        top: (h - ch) / 2,
        left: (w - cw) / 2,
        height: ch,
        width: cw,
    }
}

/// Applies one drawn crop per map of `maps` (`[N, C, H, W]`), each resized back to `H x W`
/// with bilinear interpolation (align_corners = false). On the CPU crops of the same size
/// are resized together ([`resize_crops_grouped`], exactly `upsample_bilinear2d` of each
/// window); on a GPU all maps are resized in a few batched gathers
/// ([`resize_crops_batched`]), since one small kernel launch per crop size cost more there
/// than the whole network step.
pub fn random_resized_crops<R: Rng + ?Sized>(maps: &Tensor, rng: &mut R) -> Result<Tensor> {
    let size = maps.size();
    let (n, h, w) = (size[0], size[2], size[3]);
    let crops: Vec<Crop> = (0..n).map(|_| draw_crop(h, w, rng)).collect();
    if maps.device().is_cuda() {
        resize_crops_batched(maps, &crops)
    } else {
        resize_crops_grouped(maps, &crops)
    }
}

/// Crop `crops[i]` of map i resized back to the map's size, one `upsample_bilinear2d` per
/// distinct crop size. Maps whose crop is the whole map are left as they are.
pub fn resize_crops_grouped(maps: &Tensor, crops: &[Crop]) -> Result<Tensor> {
    let size = maps.size();
    let (h, w) = (size[2], size[3]);
    let mut groups: std::collections::BTreeMap<(i64, i64), Vec<i64>> = Default::default();
    for (i, c) in crops.iter().enumerate() {
        if c.height != h || c.width != w {
            groups
                .entry((c.height, c.width))
                .or_default()
                .push(i as i64);
        }
    }
    if groups.is_empty() {
        return Ok(maps.shallow_clone());
    }
    let mut out = maps.copy();
    for ((ch, cw), members) in groups {
        let windows: Vec<Tensor> = members
            .iter()
            .map(|&i| {
                let c = crops[i as usize];
                maps.narrow(0, i, 1)
                    .narrow(2, c.top, ch)
                    .narrow(3, c.left, cw)
            })
            .collect();
        let resized = Tensor::f_cat(&windows, 0)?.upsample_bilinear2d([h, w], false, None, None);
        let idx = upload(&Tensor::from_slice(&members), maps.device());
        let _ = out.f_index_copy_(0, &idx, &resized)?;
    }
    Ok(out)
}

/// Bilinear taps of one axis for every map: output position o of map i reads positions
/// `lo[i][o]` and `hi[i][o]` of the input with weight `frac[i][o]` on `hi`, sampling the
/// window `start..start + len` as `upsample_bilinear2d` (align_corners = false) does:
/// source `max((o + 0.5) len / out - 0.5, 0)` within the window.
fn axis_taps(windows: &[(i64, i64)], out: i64) -> (Vec<i64>, Vec<i64>, Vec<f32>) {
    let cap = windows.len() * out as usize;
    let (mut lo, mut hi, mut frac) = (
        Vec::with_capacity(cap),
        Vec::with_capacity(cap),
        Vec::with_capacity(cap),
    );
    for &(start, len) in windows {
        let scale = len as f32 / out as f32;
        for o in 0..out {
            let src = (scale * (o as f32 + 0.5) - 0.5).max(0.0);
            let i0 = (src as i64).min(len - 1);
            let step = i64::from(i0 < len - 1);
            lo.push(start + i0);
            hi.push(start + i0 + step);
            frac.push(src - i0 as f32);
        }
    }
    (lo, hi, frac)
}

/// The same resize as [`resize_crops_grouped`] for all maps at once: rows, then columns,
/// each two gathers and a blend. Equal to it up to float rounding (the blends are
/// associated differently).
pub fn resize_crops_batched(maps: &Tensor, crops: &[Crop]) -> Result<Tensor> {
    let size = maps.size();
    let (n, c, h, w) = (size[0], size[1], size[2], size[3]);
    anyhow::ensure!(
        crops.len() as i64 == n,
        "{} crops for {n} maps",
        crops.len()
    );
    let dev = maps.device();
    let rows: Vec<(i64, i64)> = crops.iter().map(|k| (k.top, k.height)).collect();
    let cols: Vec<(i64, i64)> = crops.iter().map(|k| (k.left, k.width)).collect();
    let (mut r0, r1, mut fr) = axis_taps(&rows, h);
    let (c0, c1, fc) = axis_taps(&cols, w);
    // One upload for the four index sets and one for the two weight sets (each upload is
    // a host-side call that costs more than its bytes on a GPU).
    let (nh, nw) = ((n * h) as usize, (n * w) as usize);
    r0.extend_from_slice(&r1);
    r0.extend_from_slice(&c0);
    r0.extend_from_slice(&c1);
    fr.extend_from_slice(&fc);
    let taps = upload(&Tensor::from_slice(&r0), dev);
    let weights = upload(&Tensor::from_slice(&fr), dev);
    let index = |at: usize, len: usize, shape: [i64; 4]| {
        taps.narrow(0, at as i64, len as i64)
            .view(shape)
            .expand([n, c, h, w], false)
    };
    let weight = |at: usize, len: usize, shape: [i64; 4]| {
        weights.narrow(0, at as i64, len as i64).view(shape)
    };
    let (rs, cs) = ([n, 1, h, 1], [n, 1, 1, w]);
    let blend = |a: Tensor, b: Tensor, f: Tensor| &a + (b - &a) * f;
    let y = blend(
        maps.f_gather(2, &index(0, nh, rs), false)?,
        maps.f_gather(2, &index(nh, nh, rs), false)?,
        weight(0, nh, rs),
    );
    Ok(blend(
        y.f_gather(3, &index(2 * nh, nw, cs), false)?,
        y.f_gather(3, &index(2 * nh + nw, nw, cs), false)?,
        weight(nh, nw, cs),
    ))
}

/// Draws mixup's lambda ~ Beta(alpha, alpha).
pub fn draw_lambda<R: Rng + ?Sized>(alpha: f64, rng: &mut R) -> Result<f64> {
    let beta = Beta::new(alpha, alpha)
        .map_err(|e| anyhow::anyhow!("mixup alpha {alpha} is not valid: {e}"))?;
    Ok(beta.sample(rng))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;
    use tch::{Device, Kind};

    #[test]
    fn crops_stay_inside_and_cover_the_allowed_areas() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let (mut small, mut full) = (0, 0);
        for _ in 0..2000 {
            let c = draw_crop(7, 7, &mut rng);
            assert!(c.top >= 0 && c.left >= 0 && c.top + c.height <= 7 && c.left + c.width <= 7);
            let frac = (c.height * c.width) as f64 / 49.0;
            // Rounding of the sides can leave the area a little outside the range.
            assert!(frac > 0.15 && frac <= 1.0, "{c:?}");
            let r = c.width as f64 / c.height as f64;
            assert!((0.5..=2.0).contains(&r), "{c:?}");
            small += (frac < 0.5) as usize;
            full += (frac == 1.0) as usize;
        }
        assert!(small > 100 && full > 10, "small {small}, full {full}");
    }

    #[test]
    fn crop_resize_matches_bilinear_of_the_window() {
        let _rng = crate::testing::tch_rng_lock();
        let maps = Tensor::arange(2 * 3 * 4 * 4, (Kind::Float, Device::Cpu)).view([2, 3, 4, 4]);
        let mut a = ChaCha8Rng::seed_from_u64(9);
        let mut b = a.clone();
        let out = random_resized_crops(&maps, &mut a).unwrap();
        assert_eq!(out.size(), [2, 3, 4, 4]);
        for i in 0..2 {
            let c = draw_crop(4, 4, &mut b);
            let want = maps
                .narrow(0, i, 1)
                .narrow(2, c.top, c.height)
                .narrow(3, c.left, c.width)
                .upsample_bilinear2d([4, 4], false, None, None);
            let got = out.narrow(0, i, 1);
            assert_eq!(f64::try_from((got - want).abs().max()).unwrap(), 0.0);
        }
    }

    /// The batched resize (the GPU path) against the grouped one, on the CPU.
    #[test]
    fn batched_crops_match_grouped_crops() {
        let _rng = crate::testing::tch_rng_lock();
        tch::manual_seed(4);
        let maps = Tensor::randn([300, 3, 7, 7], (Kind::Float, Device::Cpu));
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let crops: Vec<Crop> = (0..300).map(|_| draw_crop(7, 7, &mut rng)).collect();
        let a = resize_crops_grouped(&maps, &crops).unwrap();
        let b = resize_crops_batched(&maps, &crops).unwrap();
        let diff = f64::try_from((a - b).abs().max()).unwrap();
        assert!(diff < 1e-5, "max difference {diff}");
        // Also on a non-square map with crops of every size.
        let maps = Tensor::randn([40, 2, 5, 9], (Kind::Float, Device::Cpu));
        let crops: Vec<Crop> = (0..40).map(|_| draw_crop(5, 9, &mut rng)).collect();
        let a = resize_crops_grouped(&maps, &crops).unwrap();
        let b = resize_crops_batched(&maps, &crops).unwrap();
        assert!(f64::try_from((a - b).abs().max()).unwrap() < 1e-5);
    }

    #[test]
    fn lambda_is_in_unit_interval_and_u_shaped_for_small_alpha() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let l: Vec<f64> = (0..1000)
            .map(|_| draw_lambda(0.1, &mut rng).unwrap())
            .collect();
        assert!(l.iter().all(|&x| (0.0..=1.0).contains(&x)));
        let extreme = l.iter().filter(|&&x| !(0.1..=0.9).contains(&x)).count();
        assert!(extreme > 700, "{extreme}");
        assert!(draw_lambda(0.0, &mut rng).is_err());
    }
}

//! Augmentation of replayed feature maps (REMIND's ImageNet setting): random resized crops
//! on the decoded maps and mixup across two replay draws.

use anyhow::Result;
use rand::Rng;
use rand_distr::{Beta, Distribution};
use tch::Tensor;

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
/// with bilinear interpolation (align_corners = false). Maps whose crop is the whole map
/// are left as they are (the resize would be the identity). Crops of the same size are
/// resized together, so a batch costs one interpolation per distinct crop size, not one
/// per map.
pub fn random_resized_crops<R: Rng + ?Sized>(maps: &Tensor, rng: &mut R) -> Result<Tensor> {
    let size = maps.size();
    let (n, h, w) = (size[0], size[2], size[3]);
    let crops: Vec<Crop> = (0..n).map(|_| draw_crop(h, w, rng)).collect();
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
        let idx = Tensor::from_slice(&members).to_device(maps.device());
        let _ = out.f_index_copy_(0, &idx, &resized)?;
    }
    Ok(out)
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

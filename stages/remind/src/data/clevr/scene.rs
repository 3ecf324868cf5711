//! Scenes: 3-8 objects on a ground plane, placed without interpenetration and rejected
//! when the rendered image hides too much of any object.

use anyhow::{bail, Result};
use rand::Rng;

use super::attributes::{Attr, COLORS, MATERIALS, SHAPES, SIZES, SIZE_RADIUS};
use super::render::{render, Rendered};

/// Objects are placed with x and y in `[-WORLD_HALF, WORLD_HALF]` (world units, CLEVR's
/// range). Larger y is further from the camera.
pub const WORLD_HALF: f32 = 3.0;
/// Extra gap kept between two objects' bounding circles on the ground.
const MIN_GAP: f32 = 0.15;
/// Every object must keep at least this fraction of its own area visible.
pub const MIN_VISIBLE_FRACTION: f32 = 0.6;
/// ... and at least this many pixels (at the output resolution).
pub const MIN_VISIBLE_PIXELS: f32 = 12.0;
const PLACEMENT_TRIES: usize = 60;
const SCENE_TRIES: usize = 400;

/// One object: its attribute values (indices into [`Attr::values`], in [`Attr::ALL`]
/// order), ground position and rotation (degrees; recorded as CLEVR does, the renderer
/// draws every shape facing the camera).
#[derive(Debug, Clone, PartialEq)]
pub struct Object {
    pub attrs: [usize; 4],
    pub x: f32,
    pub y: f32,
    pub rotation: f32,
}

impl Object {
    pub fn get(&self, attr: Attr) -> usize {
        self.attrs[attr.index()]
    }

    pub fn value(&self, attr: Attr) -> &'static str {
        attr.values()[self.get(attr)]
    }

    /// Radius in world units (0.7 large, 0.35 small).
    pub fn radius(&self) -> f32 {
        SIZE_RADIUS[self.get(Attr::Size)]
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Scene {
    pub objects: Vec<Object>,
}

/// The fixed camera: maps ground positions to image positions for an image of `size`
/// pixels, with a mild perspective (far objects smaller and higher in the image).
#[derive(Debug, Clone, Copy)]
pub struct Camera {
    pub size: f32,
}

impl Camera {
    pub fn new(size: f32) -> Self {
        Self { size }
    }

    /// 0 at the front edge of the ground, 1 at the back.
    pub fn depth(y: f32) -> f32 {
        ((y + WORLD_HALF) / (2.0 * WORLD_HALF)).clamp(0.0, 1.0)
    }

    /// Image x, image y of the ground point, pixels per world unit there.
    pub fn project(&self, x: f32, y: f32) -> (f32, f32, f32) {
        let t = Self::depth(y);
        let k = 0.13 * self.size * (1.0 - 0.35 * t);
        let px = self.size / 2.0 + x * k;
        let ground = self.size * (0.88 - 0.52 * t);
        (px, ground, k)
    }

    /// Distance from the camera used as CLEVR's third pixel coordinate.
    pub fn camera_distance(x: f32, y: f32) -> f32 {
        let forward = 8.0 + (y + WORLD_HALF);
        (forward * forward + x * x + 25.0).sqrt()
    }
}

/// Draws a scene of `min..=max` objects and renders it at `size` pixels; retries until every
/// object is clearly visible.
pub fn sample_scene<R: Rng>(
    rng: &mut R,
    min_objects: usize,
    max_objects: usize,
    size: usize,
) -> Result<(Scene, Rendered)> {
    for _ in 0..SCENE_TRIES {
        let n = rng.random_range(min_objects..=max_objects);
        let Some(scene) = place_objects(rng, n) else {
            continue;
        };
        let rendered = render(&scene, size);
        if rendered.all_visible(MIN_VISIBLE_FRACTION, MIN_VISIBLE_PIXELS) {
            return Ok((scene, rendered));
        }
    }
    bail!(
        "could not place {min_objects}-{max_objects} objects visibly in {SCENE_TRIES} tries \
         (lower max_objects)"
    )
}

fn place_objects<R: Rng>(rng: &mut R, n: usize) -> Option<Scene> {
    let mut objects: Vec<Object> = Vec::with_capacity(n);
    for _ in 0..n {
        let attrs = [
            rng.random_range(0..SIZES.len()),
            rng.random_range(0..COLORS.len()),
            rng.random_range(0..MATERIALS.len()),
            rng.random_range(0..SHAPES.len()),
        ];
        let radius = SIZE_RADIUS[attrs[0]];
        let mut placed = None;
        for _ in 0..PLACEMENT_TRIES {
            let x = rng.random_range(-WORLD_HALF..=WORLD_HALF);
            let y = rng.random_range(-WORLD_HALF..=WORLD_HALF);
            let clear = objects.iter().all(|o| {
                let d2 = (o.x - x).powi(2) + (o.y - y).powi(2);
                d2 >= (o.radius() + radius + MIN_GAP).powi(2)
            });
            if clear {
                placed = Some((x, y));
                break;
            }
        }
        let (x, y) = placed?;
        let rotation = rng.random_range(0.0f32..360.0);
        objects.push(Object {
            attrs,
            x,
            y,
            rotation,
        });
    }
    Some(Scene { objects })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn scenes_respect_counts_and_visibility() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        for _ in 0..20 {
            let (scene, img) = sample_scene(&mut rng, 3, 8, 64).unwrap();
            assert!((3..=8).contains(&scene.objects.len()));
            assert_eq!(img.rgb.len(), 64 * 64 * 3);
            assert!(img.all_visible(MIN_VISIBLE_FRACTION, MIN_VISIBLE_PIXELS));
        }
    }
}

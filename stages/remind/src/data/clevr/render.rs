//! A small software rasteriser for mini-CLEVR scenes: a gray floor, soft contact shadows and
//! three shaded silhouettes (sphere: shaded disc; cube: front face, lighter top face and a
//! darker side face; cylinder: shaded body under a lighter elliptical cap), painted far to
//! near at 2x2 supersampling. Metal gets strong shading, a specular highlight and a gray
//! reflection at grazing angles; rubber is flat and matte.

use anyhow::{Context, Result};

use super::attributes::{Attr, COLOR_RGB, CUBE, METAL, SPHERE};
use super::scene::{Camera, Scene};

/// Samples per pixel along each axis.
const SS: usize = 2;
/// Image size the visible-pixel threshold is stated for.
const REFERENCE_SIZE: f32 = 128.0;

type Rgb = [f32; 3];

/// A rendered image with, per object, how many samples it covers when drawn and how many
/// stay visible once nearer objects are painted over it.
pub struct Rendered {
    pub size: usize,
    /// Row-major RGB bytes, `size * size * 3`.
    pub rgb: Vec<u8>,
    pub covered: Vec<u32>,
    pub visible: Vec<u32>,
}

impl Rendered {
    /// Whether every object keeps `min_fraction` of its area and `min_pixels` pixels
    /// (stated for a 128 px image, scaled by area for other sizes) visible.
    pub fn all_visible(&self, min_fraction: f32, min_pixels: f32) -> bool {
        let per_pixel = (SS * SS) as f32;
        let scale = (self.size as f32 / REFERENCE_SIZE).powi(2);
        let min_samples = min_pixels * scale * per_pixel;
        self.covered
            .iter()
            .zip(&self.visible)
            .all(|(&c, &v)| c > 0 && v as f32 >= min_fraction * c as f32 && v as f32 >= min_samples)
    }

    /// The image as PNG bytes (8-bit RGB).
    pub fn to_png(&self) -> Result<Vec<u8>> {
        encode_png(&self.rgb, self.size)
    }
}

/// Encodes square RGB bytes as a PNG.
pub fn encode_png(rgb: &[u8], size: usize) -> Result<Vec<u8>> {
    let side = u32::try_from(size).context("image size does not fit a PNG")?;
    crate::plot::rgb_png(rgb, side, side)
}

struct Lighting {
    light: Rgb,
    half: Rgb,
}

impl Lighting {
    fn new() -> Self {
        let light = normalize([-0.45, -0.55, 0.70]);
        let half = normalize([light[0], light[1], light[2] + 1.0]);
        Self { light, half }
    }

    fn shade(&self, base: Rgb, normal: Rgb, metal: bool) -> Rgb {
        let ndl = dot(normal, self.light).max(0.0);
        if metal {
            let nh = dot(normal, self.half).max(0.0);
            let spec = nh.powf(40.0) * 0.9 + nh.powf(6.0) * 0.25;
            let grazing = (1.0 - normal[2].max(0.0)).powi(2) * 0.35;
            let k = (0.18 + 0.72 * ndl) * (1.0 - grazing);
            base.map(|c| c * k + 0.55 * grazing + spec)
        } else {
            let k = 0.42 + 0.5 * ndl;
            base.map(|c| c * k)
        }
    }
}

fn dot(a: Rgb, b: Rgb) -> f32 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}

fn normalize(v: Rgb) -> Rgb {
    let n = dot(v, v).sqrt().max(1e-12);
    v.map(|c| c / n)
}

/// One object's silhouette in (supersampled) image space.
struct Sprite {
    shape: usize,
    metal: bool,
    base: Rgb,
    cx: f32,
    cy: f32,
    /// Radius in samples.
    r: f32,
    ground: f32,
}

impl Sprite {
    fn new(obj: &super::scene::Object, cam: &Camera) -> Self {
        let (px, ground, k) = cam.project(obj.x, obj.y);
        let r = obj.radius() * k;
        let shape = obj.get(Attr::Shape);
        let half_height = if shape == SPHERE { r } else { 1.15 * 0.85 * r };
        let rgb = COLOR_RGB[obj.get(Attr::Color)];
        Self {
            shape,
            metal: obj.get(Attr::Material) == METAL,
            base: rgb.map(|c| c as f32 / 255.0),
            cx: px,
            cy: ground - half_height,
            r,
            ground,
        }
    }

    /// Half width and half height of the bounding box.
    fn extent(&self) -> (f32, f32) {
        let a = 0.85 * self.r;
        match self.shape {
            SPHERE => (self.r, self.r),
            CUBE => (a * 1.225, 1.15 * a),
            _ => (a, 1.15 * a),
        }
    }

    /// The colour of sample point (u, v) if it lies on the object.
    fn shade(&self, u: f32, v: f32, lit: &Lighting) -> Option<Rgb> {
        let normal = match self.shape {
            SPHERE => {
                let (dx, dy) = ((u - self.cx) / self.r, (v - self.cy) / self.r);
                let d2 = dx * dx + dy * dy;
                if d2 > 1.0 {
                    return None;
                }
                [dx, dy, (1.0 - d2).sqrt()]
            }
            CUBE => self.cube_normal(u, v)?,
            _ => self.cylinder_normal(u, v)?,
        };
        Some(lit.shade(self.base, normal, self.metal))
    }

    fn cube_normal(&self, u: f32, v: f32) -> Option<Rgb> {
        let a = 0.85 * self.r;
        let (front_h, top_d, shear) = (1.7 * a, 0.6 * a, 0.45 * a);
        let y0 = self.cy - (front_h + top_d) / 2.0;
        let x0 = self.cx - a - shear / 2.0;
        let front_top = y0 + top_d;
        if (x0..=x0 + 2.0 * a).contains(&u) && (front_top..=front_top + front_h).contains(&v) {
            let du = (u - x0) / a - 1.0;
            let dv = (v - front_top) / front_h * 2.0 - 1.0;
            return Some(normalize([du * 0.35, -0.15 + dv * 0.35, 1.0]));
        }
        if (y0..front_top).contains(&v) {
            let q = (front_top - v) / top_d;
            let xs = x0 + q * shear;
            if (xs..=xs + 2.0 * a).contains(&u) {
                let du = (u - xs) / a - 1.0;
                return Some(normalize([du * 0.25, -1.0, 0.55 + 0.2 * q]));
            }
        }
        let side_x = x0 + 2.0 * a;
        if u > side_x && u <= side_x + shear {
            let q = (u - side_x) / shear;
            let ys = front_top - q * top_d;
            if (ys..=ys + front_h).contains(&v) {
                let dv = (v - ys) / front_h * 2.0 - 1.0;
                return Some(normalize([1.0, 0.1 + dv * 0.2, 0.45]));
            }
        }
        None
    }

    fn cylinder_normal(&self, u: f32, v: f32) -> Option<Rgb> {
        let a = 0.85 * self.r;
        let (ellipse, body_h) = (0.35 * a, 1.6 * a);
        let dx = (u - self.cx) / a;
        if dx.abs() > 1.0 {
            return None;
        }
        let top = self.cy - body_h / 2.0;
        let bottom = self.cy + body_h / 2.0;
        let dy = (v - top) / ellipse;
        if dx * dx + dy * dy <= 1.0 {
            return Some(normalize([dx * 0.3, -0.85 + dy * 0.15, 0.53]));
        }
        let rim = (1.0 - dx * dx).sqrt();
        if v >= top && v <= bottom + ellipse * rim {
            return Some(normalize([dx, -0.2, rim]));
        }
        None
    }

    /// Darkens the floor under the object with a soft elliptical contact shadow.
    fn draw_shadow(&self, buf: &mut [Rgb], side: usize) {
        let (cx, cy) = (self.cx + 0.35 * self.r, self.ground - 0.05 * self.r);
        let (ax, ay) = (1.2 * self.r, 0.42 * self.r);
        for py in span(cy - ay, cy + ay, side) {
            for px in span(cx - ax, cx + ax, side) {
                let dx = (px as f32 + 0.5 - cx) / ax;
                let dy = (py as f32 + 0.5 - cy) / ay;
                let d2 = dx * dx + dy * dy;
                if d2 < 1.0 {
                    let k = 1.0 - 0.35 * (1.0 - d2);
                    let c = &mut buf[py * side + px];
                    *c = c.map(|x| x * k);
                }
            }
        }
    }
}

/// Sample indices covering `[lo, hi]`, clipped to the image.
fn span(lo: f32, hi: f32, side: usize) -> std::ops::Range<usize> {
    let a = lo.floor().max(0.0) as usize;
    let b = (hi.ceil().max(0.0) as usize + 1).min(side);
    a.min(b)..b
}

fn floor_color(x: f32, y: f32) -> Rgb {
    let d2 = (x - 0.5).powi(2) + (y - 0.45).powi(2);
    let v = 0.47 + 0.06 * (1.0 - 2.0 * d2);
    [v, v, v * 0.985]
}

/// Renders `scene` as a `size` x `size` RGB image.
pub fn render(scene: &Scene, size: usize) -> Rendered {
    let side = size * SS;
    let cam = Camera::new(side as f32);
    let lit = Lighting::new();
    let mut buf: Vec<Rgb> = Vec::with_capacity(side * side);
    for y in 0..side {
        for x in 0..side {
            buf.push(floor_color(
                (x as f32 + 0.5) / side as f32,
                (y as f32 + 0.5) / side as f32,
            ));
        }
    }
    let sprites: Vec<Sprite> = scene.objects.iter().map(|o| Sprite::new(o, &cam)).collect();
    for s in &sprites {
        s.draw_shadow(&mut buf, side);
    }
    let n = sprites.len();
    let mut order: Vec<usize> = (0..n).collect();
    // Painter's order: far (large y) first, nearer objects painted over them.
    order.sort_by(|&a, &b| {
        scene.objects[b]
            .y
            .total_cmp(&scene.objects[a].y)
            .then(a.cmp(&b))
    });
    let mut owner = vec![usize::MAX; side * side];
    let mut covered = vec![0u32; n];
    for &i in &order {
        let s = &sprites[i];
        let (hw, hh) = s.extent();
        for py in span(s.cy - hh, s.cy + hh, side) {
            for px in span(s.cx - hw, s.cx + hw, side) {
                if let Some(c) = s.shade(px as f32 + 0.5, py as f32 + 0.5, &lit) {
                    buf[py * side + px] = c;
                    owner[py * side + px] = i;
                    covered[i] += 1;
                }
            }
        }
    }
    let mut visible = vec![0u32; n];
    for &o in &owner {
        if o != usize::MAX {
            visible[o] += 1;
        }
    }
    let mut rgb = Vec::with_capacity(size * size * 3);
    let norm = 1.0 / (SS * SS) as f32;
    for y in 0..size {
        for x in 0..size {
            let mut acc = [0f32; 3];
            for sy in 0..SS {
                for sx in 0..SS {
                    let c = buf[(y * SS + sy) * side + x * SS + sx];
                    for (a, v) in acc.iter_mut().zip(c) {
                        *a += v;
                    }
                }
            }
            for a in acc {
                rgb.push(((a * norm).clamp(0.0, 1.0) * 255.0 + 0.5) as u8);
            }
        }
    }
    Rendered {
        size,
        rgb,
        covered,
        visible,
    }
}

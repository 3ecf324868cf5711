//! Mini-CORe50: a small continual-learning data set generated deterministically from a seed,
//! in exactly the release layout of CORe50 (Lomonaco & Maltoni, CoRL 2017):
//!
//! ```text
//! <out>/s{1..11}/o{oo}/C_{ss}_{oo}_{fff}.png   8-bit RGB, image_size x image_size
//! <out>/mini_core50.json                       config, counts, categories, sessions
//! ```
//!
//! `ss` is the session (01..11), `oo` the object (01..50), `fff` the frame (000.., in
//! temporal order). As in the release, category `c` (0..10, [`CATEGORY_NAMES`]) owns the
//! objects `o{5c+1}..o{5c+5}`; the generator writes the first `objects_per_category` of each
//! block, every object in all 11 sessions.
//!
//! What is drawn:
//! - each category is a shape family (a plug adapter is a box with two prongs, a ball a disc
//!   with a stripe, ...), drawn as signed-distance layers with analytic anti-aliasing;
//! - each object has its own colours, size (±20%) and proportions within its family;
//! - each session has its own background (gradient, stripes, tiles, foliage, horizon) and
//!   lighting (brightness, colour cast, light direction and shadow); like the release, 8
//!   sessions are indoor and 3 outdoor (brighter, sky and foliage backgrounds): here
//!   [`OUTDOOR_SESSIONS`], so that the usual training sessions (1, 2, 4, 5, 6, 8, 9, 11) and
//!   test sessions (3, 7, 10) both hold indoor and outdoor ones, as the release's split is
//!   balanced;
//! - each (session, object) sequence is video-like: the object drifts along a smooth path
//!   (a few pixels a frame at 128 px), turns back and forth and breathes in scale, with a
//!   little pixel noise; its longest side covers 30-60% of the image side.
//!
//! Every object's look comes from a random stream seeded by (seed, object), every session's
//! from (seed, session) and every sequence's motion and noise from (seed, session, object),
//! so the output is a function of the config alone (byte-identical for the same config,
//! whatever the thread count), and smaller configs are prefixes of larger ones at the same
//! seed and image size (the same objects and the same first frames).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{ensure, Context, Result};
use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::layout::{
    category_of, image_path, object_number, CATEGORIES, CATEGORY_NAMES, OBJECTS_PER_CATEGORY,
    SESSIONS,
};
use crate::artifact::atomic::{host_tag, TEMP_PREFIX};
use crate::run::Progress;

/// The sessions drawn outdoor (the others are indoor): 3 of 11 as in the release, two of
/// them among the usual training sessions and one among the test sessions (3, 7, 10).
pub const OUTDOOR_SESSIONS: [usize; 3] = [4, 7, 11];
/// `generator` of the info file: marks a folder this generator may replace.
pub const GENERATOR: &str = "remind-generate-core50";
/// The info file written at the data-set root (not part of the release layout).
pub const INFO_FILE: &str = "mini_core50.json";

/// Config section `generate_core50` (the output folder is the binary's `--out`): the
/// generated data set is a function of these four keys. Absent keys take the defaults
/// (seed 0, 3 objects per category, 8 frames, 32 px: 2640 images); unknown keys are refused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GenerateCore50Config {
    /// Seed: the data set is a function of the config and this seed.
    pub seed: u64,
    /// Objects drawn per category, 1..=5: objects `o{5c+1}..o{5c+objects_per_category}`.
    pub objects_per_category: usize,
    /// Frames per (session, object) sequence, 1..=999 (file names hold 3 digits).
    pub frames_per_session: usize,
    /// Images are `image_size` x `image_size` RGB, 8..=512 (the release has 128).
    pub image_size: usize,
}

impl Default for GenerateCore50Config {
    fn default() -> Self {
        Self {
            seed: 0,
            objects_per_category: 3,
            frames_per_session: 8,
            image_size: 32,
        }
    }
}

impl GenerateCore50Config {
    /// Checks every key's range; the error names the key, what it must be and what it is.
    pub fn validate(&self) -> Result<()> {
        ensure!(
            (1..=OBJECTS_PER_CATEGORY).contains(&self.objects_per_category),
            "generate_core50.objects_per_category must be 1..={OBJECTS_PER_CATEGORY} (CORe50 \
             has {OBJECTS_PER_CATEGORY} objects per category), found {}",
            self.objects_per_category
        );
        ensure!(
            (1..=999).contains(&self.frames_per_session),
            "generate_core50.frames_per_session must be 1..=999 (frame numbers have 3 digits), \
             found {}",
            self.frames_per_session
        );
        ensure!(
            (8..=512).contains(&self.image_size),
            "generate_core50.image_size must be 8..=512, found {}",
            self.image_size
        );
        Ok(())
    }

    /// The object numbers written (1-based, ascending): `5c + k + 1` for every category `c`
    /// and `k < objects_per_category`.
    pub fn objects(&self) -> Vec<usize> {
        (0..CATEGORIES)
            .flat_map(|c| (0..self.objects_per_category).map(move |k| object_number(c, k)))
            .collect()
    }

    /// Images written: objects x [`SESSIONS`] x frames.
    pub fn images(&self) -> usize {
        CATEGORIES * self.objects_per_category * SESSIONS * self.frames_per_session
    }
}

/// What [`generate`] wrote.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// Objects written (every session holds each).
    pub objects: usize,
    /// Always [`SESSIONS`].
    pub sessions: usize,
    /// Frames per (session, object) sequence.
    pub frames_per_session: usize,
    /// PNG files written: objects x sessions x frames.
    pub images: usize,
    /// Image side in pixels.
    pub image_size: usize,
    /// The data-set root.
    pub out: PathBuf,
}

/// The info file's content.
#[derive(Serialize)]
struct Info<'a> {
    generator: &'static str,
    layout: &'static str,
    config: &'a GenerateCore50Config,
    sessions: usize,
    objects: Vec<usize>,
    frames_per_session: usize,
    images: usize,
    image_size: usize,
    categories: Vec<CategoryInfo>,
    session_settings: Vec<SessionInfo>,
}

#[derive(Serialize)]
struct CategoryInfo {
    category: usize,
    name: &'static str,
    objects: Vec<usize>,
}

#[derive(Serialize)]
struct SessionInfo {
    session: usize,
    setting: &'static str,
    background: &'static str,
}

/// Threads that write and sync image files: syncs of several files overlap (the file
/// system commits them together), which rendering threads alone would serialise.
const WRITERS: usize = 8;

/// Generates the data set described by `cfg` under the data-set root `out`.
///
/// Everything is written under a hidden staging folder beside `out`
/// (`.tmp-<name>.<host>.<pid>`), synced, then renamed to `out`; an existing `out` is
/// replaced only then, and only when it is empty or was written by this generator (its
/// [`INFO_FILE`] names [`GENERATOR`]). Errors: an invalid config (before anything is
/// written), an `out` that is a file, a link or a folder of other data (a real CORe50
/// release), or any I/O failure (the staging folder is then removed).
pub fn generate(cfg: &GenerateCore50Config, out: &Path) -> Result<Report> {
    cfg.validate()?;
    check_replaceable(out)?;
    let name = out
        .file_name()
        .with_context(|| format!("--out {} has no folder name", out.display()))?
        .to_string_lossy()
        .into_owned();
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent)
        .with_context(|| format!("cannot create folder {}", parent.display()))?;
    remove_stale_staging(&parent, &name);
    let tag = format!("{}.{}", host_tag(), std::process::id());
    let staging = Staging::new(parent.join(format!("{TEMP_PREFIX}{name}.{tag}")))?;
    let objects = cfg.objects();
    for session in 1..=SESSIONS {
        for &object in &objects {
            let dir = staging.path.join(format!("s{session}/o{object}"));
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create folder {}", dir.display()))?;
        }
    }
    write_images(cfg, &objects, &staging.path)?;
    let info = Info {
        generator: GENERATOR,
        layout:
            "s{session}/o{object}/C_{ss}_{oo}_{fff}.png (CORe50, Lomonaco & Maltoni, CoRL 2017)",
        config: cfg,
        sessions: SESSIONS,
        objects: objects.clone(),
        frames_per_session: cfg.frames_per_session,
        images: cfg.images(),
        image_size: cfg.image_size,
        categories: (0..CATEGORIES)
            .map(|c| CategoryInfo {
                category: c,
                name: CATEGORY_NAMES[c],
                objects: (0..cfg.objects_per_category)
                    .map(|k| object_number(c, k))
                    .collect(),
            })
            .collect(),
        session_settings: (1..=SESSIONS)
            .map(|s| {
                let style = SessionStyle::new(cfg.seed, s);
                SessionInfo {
                    session: s,
                    setting: if style.outdoor { "outdoor" } else { "indoor" },
                    background: style.pattern.name(),
                }
            })
            .collect(),
    };
    let mut json = serde_json::to_vec_pretty(&info)?;
    json.push(b'\n');
    write_synced(&staging.path.join(INFO_FILE), &json)?;
    sync_folders(&staging.path, &objects)?;
    install(
        staging,
        out,
        &parent.join(format!("{TEMP_PREFIX}{name}-old.{tag}")),
    )?;
    Ok(Report {
        objects: objects.len(),
        sessions: SESSIONS,
        frames_per_session: cfg.frames_per_session,
        images: cfg.images(),
        image_size: cfg.image_size,
        out: out.to_path_buf(),
    })
}

/// Renders every sequence on all CPUs (each sequence from its own random stream, so the
/// bytes do not depend on the thread order) and writes the PNGs through [`WRITERS`] threads.
fn write_images(cfg: &GenerateCore50Config, objects: &[usize], root: &Path) -> Result<()> {
    let sequences: Vec<(usize, usize)> = (1..=SESSIONS)
        .flat_map(|s| objects.iter().map(move |&o| (s, o)))
        .collect();
    let sessions: Vec<SessionStyle> = (1..=SESSIONS)
        .map(|s| SessionStyle::new(cfg.seed, s))
        .collect();
    // Indexed by object number - 1.
    let looks: Vec<Option<ObjectStyle>> = (1..=CATEGORIES * OBJECTS_PER_CATEGORY)
        .map(|o| objects.contains(&o).then(|| ObjectStyle::new(cfg.seed, o)))
        .collect();
    let renderers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 16)
        .min(sequences.len());
    let next = AtomicUsize::new(0);
    let mut progress = Progress::new("generate-core50", cfg.images() as u64);
    std::thread::scope(|scope| -> Result<()> {
        let (tx, rx) = crossbeam_channel::bounded::<(PathBuf, Vec<u8>)>(4 * WRITERS);
        let (done_tx, done_rx) = crossbeam_channel::unbounded::<u64>();
        let writers: Vec<_> = (0..WRITERS)
            .map(|_| {
                let rx = rx.clone();
                let done_tx = done_tx.clone();
                scope.spawn(move || -> Result<()> {
                    for (path, bytes) in rx {
                        write_synced(&path, &bytes)?;
                        let _ = done_tx.send(1);
                    }
                    Ok(())
                })
            })
            .collect();
        drop(rx);
        drop(done_tx);
        let render_threads: Vec<_> = (0..renderers)
            .map(|_| {
                let tx = tx.clone();
                let (next, sequences, sessions, looks) = (&next, &sequences, &sessions, &looks);
                scope.spawn(move || -> Result<()> {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(&(session, object)) = sequences.get(i) else {
                            return Ok(());
                        };
                        let look = looks[object - 1]
                            .as_ref()
                            .context("an object without its look")?;
                        let mut renderer =
                            Sequence::new(cfg, &sessions[session - 1], look, session, object);
                        for frame in 0..cfg.frames_per_session {
                            let rgb = renderer.frame(frame);
                            let png = crate::plot::rgb_png(
                                &rgb,
                                cfg.image_size as u32,
                                cfg.image_size as u32,
                            )?;
                            if tx
                                .send((image_path(root, session, object, frame), png))
                                .is_err()
                            {
                                // Every writer stopped on an error; joining them reports it.
                                return Ok(());
                            }
                        }
                    }
                })
            })
            .collect();
        drop(tx);
        for n in done_rx {
            progress.inc(n);
        }
        let mut result = Ok(());
        for t in render_threads.into_iter().chain(writers) {
            let joined = t
                .join()
                .map_err(|_| anyhow::anyhow!("a generator thread panicked"))
                .and_then(|r| r);
            if result.is_ok() {
                result = joined;
            }
        }
        result
    })?;
    progress.finish();
    Ok(())
}

/// Writes `bytes` to a new file `path` and syncs it to disk.
fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut file =
        std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(bytes)
        .with_context(|| format!("cannot write {}", path.display()))?;
    file.sync_all()
        .with_context(|| format!("cannot sync {}", path.display()))
}

/// Syncs the folder entries of the staging tree (best effort: some file systems refuse
/// fsync on folders).
fn sync_folders(root: &Path, objects: &[usize]) -> Result<()> {
    let mut dirs = vec![root.to_path_buf()];
    for s in 1..=SESSIONS {
        let session = root.join(format!("s{s}"));
        dirs.extend(objects.iter().map(|o| session.join(format!("o{o}"))));
        dirs.push(session);
    }
    for d in dirs {
        if let Ok(f) = std::fs::File::open(&d) {
            let _ = f.sync_all();
        }
    }
    Ok(())
}

/// Refuses an `out` that [`generate`] must not replace: a file, a link, or a non-empty
/// folder without this generator's [`INFO_FILE`].
fn check_replaceable(out: &Path) -> Result<()> {
    let meta = match std::fs::symlink_metadata(out) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", out.display())),
    };
    ensure!(
        meta.is_dir(),
        "{} exists and is not a folder (a file or a link): refusing to replace it; give \
         another --out",
        out.display()
    );
    let empty = std::fs::read_dir(out)
        .with_context(|| format!("cannot read folder {}", out.display()))?
        .next()
        .is_none();
    if empty {
        return Ok(());
    }
    let info = out.join(INFO_FILE);
    let generator = std::fs::read(&info)
        .ok()
        .and_then(|t| serde_json::from_slice::<serde_json::Value>(&t).ok())
        .and_then(|v| v["generator"].as_str().map(str::to_string));
    ensure!(
        generator.as_deref() == Some(GENERATOR),
        "{} holds other data ({} {}): refusing to generate over it; give another --out",
        out.display(),
        info.display(),
        match generator {
            Some(g) => format!("names generator '{g}', not '{GENERATOR}'"),
            None => "is absent or unreadable".into(),
        }
    );
    Ok(())
}

/// The staging folder; removed on drop unless installed.
struct Staging {
    path: PathBuf,
    installed: bool,
}

impl Staging {
    fn new(path: PathBuf) -> Result<Self> {
        if path.exists() {
            std::fs::remove_dir_all(&path)
                .with_context(|| format!("cannot remove the stale {}", path.display()))?;
        }
        std::fs::create_dir(&path)
            .with_context(|| format!("cannot create folder {}", path.display()))?;
        Ok(Self {
            path,
            installed: false,
        })
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.installed {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// Renames the finished staging folder to `out`; an existing `out` (checked again) is first
/// renamed to `old`, then removed, so `out` always holds a whole data set (it is absent only
/// between the two renames).
fn install(mut staging: Staging, out: &Path, old: &Path) -> Result<()> {
    check_replaceable(out)?;
    let replacing = out.exists();
    if replacing {
        std::fs::rename(out, old).with_context(|| {
            format!(
                "cannot move the earlier {} aside to {}",
                out.display(),
                old.display()
            )
        })?;
    }
    if let Err(e) = std::fs::rename(&staging.path, out) {
        if replacing {
            let _ = std::fs::rename(old, out);
        }
        return Err(e).with_context(|| {
            format!(
                "cannot rename {} to {}",
                staging.path.display(),
                out.display()
            )
        });
    }
    staging.installed = true;
    if replacing {
        std::fs::remove_dir_all(old)
            .with_context(|| format!("cannot remove the earlier data set {}", old.display()))?;
    }
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        if let Ok(dir) = std::fs::File::open(parent) {
            let _ = dir.sync_all();
        }
    }
    Ok(())
}

/// Removes staging and set-aside folders of `name` left in `parent` by dead generators of
/// this host (those of live processes and of other hosts stay).
fn remove_stale_staging(parent: &Path, name: &str) {
    let host = host_tag();
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some(n) = file_name.to_str() else {
            continue;
        };
        let rest = n
            .strip_prefix(&format!("{TEMP_PREFIX}{name}."))
            .or_else(|| n.strip_prefix(&format!("{TEMP_PREFIX}{name}-old.")));
        let Some((h, pid)) = rest.and_then(|r| r.rsplit_once('.')) else {
            continue;
        };
        if h == host
            && pid.parse::<u32>().is_ok()
            && !Path::new("/proc").join(pid).exists()
            && entry.path().is_dir()
        {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

// ---------------------------------------------------------------------------------------
// Random streams.

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Purposes of the random streams.
const OBJECT_STREAM: u64 = 1;
const SESSION_STREAM: u64 = 2;
const SEQUENCE_STREAM: u64 = 3;

/// The random stream for (seed, purpose, a, b).
fn stream(seed: u64, purpose: u64, a: u64, b: u64) -> ChaCha8Rng {
    let s = [purpose, a, b]
        .into_iter()
        .fold(splitmix(seed), |h, x| splitmix(h ^ x));
    ChaCha8Rng::seed_from_u64(s)
}

// ---------------------------------------------------------------------------------------
// Geometry: signed distances in the object's local frame (the object fits in [-1, 1]^2,
// y up), negative inside.

type V2 = [f32; 2];
type Rgb = [f32; 3];

fn len(v: V2) -> f32 {
    (v[0] * v[0] + v[1] * v[1]).sqrt()
}

fn sub(a: V2, b: V2) -> V2 {
    [a[0] - b[0], a[1] - b[1]]
}

fn rotate(p: V2, angle: f32) -> V2 {
    let (s, c) = angle.sin_cos();
    [c * p[0] - s * p[1], s * p[0] + c * p[1]]
}

fn mix(a: Rgb, b: Rgb, t: f32) -> Rgb {
    [
        a[0] + (b[0] - a[0]) * t,
        a[1] + (b[1] - a[1]) * t,
        a[2] + (b[2] - a[2]) * t,
    ]
}

fn scale_rgb(a: Rgb, k: f32) -> Rgb {
    [a[0] * k, a[1] * k, a[2] * k]
}

fn smoothstep(e0: f32, e1: f32, x: f32) -> f32 {
    let t = ((x - e0) / (e1 - e0)).clamp(0.0, 1.0);
    t * t * (3.0 - 2.0 * t)
}

/// Colour from hue (turns), saturation and value, all in 0..1.
fn hsv(h: f32, s: f32, v: f32) -> Rgb {
    let h = h.rem_euclid(1.0) * 6.0;
    let f = h - h.floor();
    let (p, q, t) = (v * (1.0 - s), v * (1.0 - s * f), v * (1.0 - s * (1.0 - f)));
    match h as u32 {
        0 => [v, t, p],
        1 => [q, v, p],
        2 => [p, v, t],
        3 => [p, q, v],
        4 => [t, p, v],
        _ => [v, p, q],
    }
}

/// A drawing primitive (local units, angles in radians).
#[derive(Debug, Clone, Copy)]
enum Prim {
    /// Rounded box: centre, half extents, corner radius, rotation.
    Box { c: V2, h: V2, r: f32, rot: f32 },
    /// Disc: centre, radius.
    Circle { c: V2, r: f32 },
    /// Ellipse: centre, radii, rotation (approximate distance, exact on the outline).
    Ellipse { c: V2, r: V2, rot: f32 },
    /// Outline of an ellipse of radii `r`, `t` thick on each side.
    Ring { c: V2, r: V2, t: f32 },
    /// Segment `a`-`b` thickened by `r`.
    Capsule { a: V2, b: V2, r: f32 },
    /// Isosceles trapezoid about x = 0: half width `w0` at y = `y0` (bottom), `w1` at `y1`.
    Trapezoid { y0: f32, y1: f32, w0: f32, w1: f32 },
    /// Grid of `n` = (columns, rows) discs of radius `r`, spaced `s`, centred on `c`.
    Dots { c: V2, n: [u8; 2], s: V2, r: f32 },
}

fn ellipse_sdf(p: V2, r: V2) -> f32 {
    // k0 (k0 - 1) / k1: exact on the outline, a close bound near it.
    let k0 = len([p[0] / r[0], p[1] / r[1]]);
    let k1 = len([p[0] / (r[0] * r[0]), p[1] / (r[1] * r[1])]);
    if k1 < 1e-6 {
        -r[0].min(r[1])
    } else {
        k0 * (k0 - 1.0) / k1
    }
}

impl Prim {
    fn sdf(&self, p: V2) -> f32 {
        match *self {
            Prim::Box { c, h, r, rot } => {
                let q = rotate(sub(p, c), -rot);
                let d = [q[0].abs() - h[0] + r, q[1].abs() - h[1] + r];
                len([d[0].max(0.0), d[1].max(0.0)]) + d[0].max(d[1]).min(0.0) - r
            }
            Prim::Circle { c, r } => len(sub(p, c)) - r,
            Prim::Ellipse { c, r, rot } => ellipse_sdf(rotate(sub(p, c), -rot), r),
            Prim::Ring { c, r, t } => ellipse_sdf(sub(p, c), r).abs() - t,
            Prim::Capsule { a, b, r } => {
                let pa = sub(p, a);
                let ba = sub(b, a);
                let h = ((pa[0] * ba[0] + pa[1] * ba[1]) / (ba[0] * ba[0] + ba[1] * ba[1]))
                    .clamp(0.0, 1.0);
                len([pa[0] - ba[0] * h, pa[1] - ba[1] * h]) - r
            }
            Prim::Trapezoid { y0, y1, w0, w1 } => {
                // Inigo Quilez's exact isosceles trapezoid.
                let he = 0.5 * (y1 - y0);
                let px = p[0].abs();
                let py = p[1] - 0.5 * (y0 + y1);
                let ca = [px - px.min(if py < 0.0 { w0 } else { w1 }), py.abs() - he];
                let k1 = [w1, he];
                let k2 = [w1 - w0, 2.0 * he];
                let t = (((k1[0] - px) * k2[0] + (k1[1] - py) * k2[1])
                    / (k2[0] * k2[0] + k2[1] * k2[1]))
                    .clamp(0.0, 1.0);
                let cb = [px - k1[0] + k2[0] * t, py - k1[1] + k2[1] * t];
                let s = if cb[0] < 0.0 && ca[1] < 0.0 {
                    -1.0
                } else {
                    1.0
                };
                s * (ca[0] * ca[0] + ca[1] * ca[1])
                    .min(cb[0] * cb[0] + cb[1] * cb[1])
                    .sqrt()
            }
            Prim::Dots { c, n, s, r } => {
                let q = sub(p, c);
                let nearest = |x: f32, n: u8, s: f32| {
                    let half = 0.5 * (f32::from(n) - 1.0);
                    ((x / s + half).round().clamp(0.0, f32::from(n) - 1.0) - half) * s
                };
                len([
                    q[0] - nearest(q[0], n[0], s[0]),
                    q[1] - nearest(q[1], n[1], s[1]),
                ]) - r
            }
        }
    }
}

/// One colour of an object: the union of `prims`, cut to `clip` when given.
#[derive(Debug, Clone)]
struct Layer {
    prims: Vec<Prim>,
    clip: Option<Prim>,
    colour: Rgb,
    /// Opacity (glass is see-through).
    alpha: f32,
    /// How strongly the session's light shades it across the object (metal more).
    shine: f32,
}

impl Layer {
    fn new(colour: Rgb, prims: Vec<Prim>) -> Self {
        Self {
            prims,
            clip: None,
            colour,
            alpha: 1.0,
            shine: 0.3,
        }
    }

    fn alpha(mut self, alpha: f32) -> Self {
        self.alpha = alpha;
        self
    }

    fn shine(mut self, shine: f32) -> Self {
        self.shine = shine;
        self
    }

    fn clip(mut self, clip: Prim) -> Self {
        self.clip = Some(clip);
        self
    }

    fn sdf(&self, p: V2) -> f32 {
        let d = self
            .prims
            .iter()
            .map(|q| q.sdf(p))
            .fold(f32::INFINITY, f32::min);
        match &self.clip {
            Some(c) => d.max(c.sdf(p)),
            None => d,
        }
    }
}

/// An object's look: its layers back to front, its size factor (0.8..1.2) and the box
/// around its silhouette (local units), by which it is centred and sized.
#[derive(Debug, Clone)]
struct ObjectStyle {
    layers: Vec<Layer>,
    size: f32,
    /// Centre of the silhouette's bounding box.
    centre: V2,
    /// Longest side of the silhouette's bounding box.
    extent: f32,
}

/// Cells per side of the grid on which [`silhouette_box`] looks for the silhouette.
const BOX_GRID: usize = 96;
/// Every shape lies within this many local units of the origin, in x and in y.
const LOCAL_REACH: f32 = 1.2;

/// The bounding box `(lo, hi)` of the points where `inside` holds, found on a
/// `cells` x `cells` grid over [-LOCAL_REACH, LOCAL_REACH]^2 (to half a cell).
fn silhouette_box(cells: usize, inside: impl Fn(V2) -> bool) -> (V2, V2) {
    let step = 2.0 * LOCAL_REACH / cells as f32;
    let (mut lo, mut hi) = ([f32::MAX; 2], [f32::MIN; 2]);
    for j in 0..cells {
        for i in 0..cells {
            let p = [
                -LOCAL_REACH + (i as f32 + 0.5) * step,
                -LOCAL_REACH + (j as f32 + 0.5) * step,
            ];
            if inside(p) {
                for k in 0..2 {
                    lo[k] = lo[k].min(p[k] - 0.5 * step);
                    hi[k] = hi[k].max(p[k] + 0.5 * step);
                }
            }
        }
    }
    (lo, hi)
}

impl ObjectStyle {
    /// The look of object number `object` (its category's shape family, its own colours,
    /// size and proportions).
    fn new(seed: u64, object: usize) -> Self {
        let mut rng = stream(seed, OBJECT_STREAM, object as u64, 0);
        let main = hsv(
            rng.random(),
            rng.random_range(0.35..0.9),
            rng.random_range(0.45..0.95),
        );
        let accent = hsv(
            rng.random(),
            rng.random_range(0.4..0.9),
            rng.random_range(0.35..0.95),
        );
        let grey = rng.random_range(0.55..0.82);
        let metal = if rng.random::<f32>() < 0.3 {
            [grey, grey * 0.85, grey * 0.55]
        } else {
            [grey, grey, grey * 1.04]
        };
        let dark = scale_rgb(hsv(rng.random(), 0.3, 1.0), rng.random_range(0.08..0.22));
        let size = rng.random_range(0.8..1.2);
        // Proportions: width factor and a free shape parameter.
        let w: f32 = rng.random_range(0.85..1.15);
        let v: f32 = rng.random_range(0.0..1.0);
        let layers = match category_of(object) {
            // plug_adapter: a box with two prongs and two socket holes.
            0 => {
                let prong_h = 0.2 + 0.1 * v;
                let body_h = 0.55;
                let top = -0.25 + body_h;
                vec![
                    Layer::new(
                        metal,
                        [-1.0f32, 1.0]
                            .iter()
                            .map(|s| Prim::Box {
                                c: [s * 0.24 * w, top + prong_h],
                                h: [0.07, prong_h + 0.05],
                                r: 0.02,
                                rot: 0.0,
                            })
                            .collect(),
                    )
                    .shine(0.5),
                    Layer::new(
                        main,
                        vec![Prim::Box {
                            c: [0.0, -0.25],
                            h: [0.62 * w, body_h],
                            r: 0.12,
                            rot: 0.0,
                        }],
                    ),
                    Layer::new(
                        dark,
                        [-1.0f32, 1.0]
                            .iter()
                            .map(|s| Prim::Circle {
                                c: [s * 0.24 * w, -0.3],
                                r: 0.08 + 0.03 * v,
                            })
                            .collect(),
                    ),
                ]
            }
            // mobile_phone: a tall rounded slab with a dark screen and a button.
            1 => {
                let hw = 0.5 * w;
                vec![
                    Layer::new(
                        main,
                        vec![Prim::Box {
                            c: [0.0, 0.0],
                            h: [hw, 0.95],
                            r: 0.12 + 0.08 * v,
                            rot: 0.0,
                        }],
                    ),
                    Layer::new(
                        dark,
                        vec![Prim::Box {
                            c: [0.0, 0.06],
                            h: [hw - 0.08, 0.72],
                            r: 0.04,
                            rot: 0.0,
                        }],
                    )
                    .shine(0.15),
                    Layer::new(
                        mix(main, [1.0; 3], 0.5),
                        vec![Prim::Circle {
                            c: [0.0, -0.84],
                            r: 0.065,
                        }],
                    ),
                ]
            }
            // scissors: two crossed blades over two handle rings.
            2 => {
                let spread = 0.22 + 0.15 * v;
                let ring = [0.2 * w, 0.2];
                vec![
                    Layer::new(
                        main,
                        [-1.0f32, 1.0]
                            .iter()
                            .flat_map(|s| {
                                [
                                    Prim::Ring {
                                        c: [s * 0.3 * w, -0.6],
                                        r: ring,
                                        t: 0.055,
                                    },
                                    Prim::Capsule {
                                        a: [s * 0.22 * w, -0.42],
                                        b: [0.0, -0.05],
                                        r: 0.06,
                                    },
                                ]
                            })
                            .collect(),
                    ),
                    Layer::new(
                        metal,
                        [-1.0f32, 1.0]
                            .iter()
                            .map(|s| Prim::Ellipse {
                                c: [-s * 0.5 * spread, 0.38],
                                r: [0.09 + 0.03 * w, 0.6],
                                rot: s * spread,
                            })
                            .collect(),
                    )
                    .shine(0.55),
                    Layer::new(
                        dark,
                        vec![Prim::Circle {
                            c: [0.0, -0.02],
                            r: 0.06,
                        }],
                    ),
                ]
            }
            // light_bulb: a pale glass globe on a threaded metal base.
            3 => {
                let globe = 0.52 + 0.1 * v;
                let neck = 0.24 * w;
                let mut threads = Vec::new();
                for i in 0..3 {
                    threads.push(Prim::Box {
                        c: [0.0, -0.5 - 0.1 * i as f32],
                        h: [neck + 0.01, 0.018],
                        r: 0.0,
                        rot: 0.0,
                    });
                }
                vec![
                    Layer::new(
                        dark,
                        vec![Prim::Circle {
                            c: [0.0, -0.84],
                            r: 0.09,
                        }],
                    ),
                    Layer::new(
                        metal,
                        vec![Prim::Box {
                            c: [0.0, -0.6],
                            h: [neck, 0.2],
                            r: 0.03,
                            rot: 0.0,
                        }],
                    )
                    .shine(0.55),
                    Layer::new(scale_rgb(metal, 0.6), threads).shine(0.5),
                    Layer::new(
                        mix(main, [1.0, 0.98, 0.9], 0.65),
                        vec![
                            Prim::Circle {
                                c: [0.0, 0.9 - globe],
                                r: globe,
                            },
                            Prim::Trapezoid {
                                y0: -0.42,
                                y1: 0.2,
                                w0: neck,
                                w1: globe * 0.7,
                            },
                        ],
                    )
                    .shine(0.2),
                ]
            }
            // can: an upright cylinder with an elliptic lid and a label band.
            4 => {
                let hw = 0.42 * w;
                let lid = [hw, 0.12 + 0.04 * v];
                vec![
                    Layer::new(
                        metal,
                        vec![
                            Prim::Box {
                                c: [0.0, 0.0],
                                h: [hw, 0.8],
                                r: 0.02,
                                rot: 0.0,
                            },
                            Prim::Ellipse {
                                c: [0.0, -0.8],
                                r: lid,
                                rot: 0.0,
                            },
                        ],
                    )
                    .shine(0.5),
                    Layer::new(
                        main,
                        vec![Prim::Box {
                            c: [0.0, -0.05],
                            h: [hw, 0.5 + 0.15 * v],
                            r: 0.0,
                            rot: 0.0,
                        }],
                    ),
                    Layer::new(
                        accent,
                        vec![Prim::Box {
                            c: [0.0, -0.05],
                            h: [hw, 0.1],
                            r: 0.0,
                            rot: 0.0,
                        }],
                    ),
                    Layer::new(
                        mix(metal, [1.0; 3], 0.3),
                        vec![Prim::Ellipse {
                            c: [0.0, 0.8],
                            r: lid,
                            rot: 0.0,
                        }],
                    )
                    .shine(0.4),
                ]
            }
            // glass: a see-through trapezoid, wider at the top, with a bright rim and base.
            5 => {
                let top = 0.58 * w;
                let bottom = (0.36 + 0.1 * v) * w;
                let tint = mix(main, [0.92, 0.96, 1.0], 0.55);
                vec![
                    Layer::new(
                        tint,
                        vec![Prim::Trapezoid {
                            y0: -0.85,
                            y1: 0.85,
                            w0: bottom,
                            w1: top,
                        }],
                    )
                    .alpha(0.55)
                    .shine(0.2),
                    Layer::new(
                        [0.97, 0.98, 1.0],
                        vec![
                            Prim::Ring {
                                c: [0.0, 0.85],
                                r: [top, 0.1],
                                t: 0.03,
                            },
                            Prim::Capsule {
                                a: [-0.75 * bottom, -0.6],
                                b: [-0.75 * top, 0.65],
                                r: 0.035,
                            },
                        ],
                    )
                    .alpha(0.85)
                    .shine(0.1),
                    Layer::new(
                        tint,
                        vec![Prim::Box {
                            c: [0.0, -0.82],
                            h: [bottom, 0.07],
                            r: 0.02,
                            rot: 0.0,
                        }],
                    )
                    .alpha(0.8)
                    .shine(0.2),
                ]
            }
            // ball: a disc with a stripe across it.
            6 => {
                let r = 0.82;
                let ball = Prim::Circle { c: [0.0, 0.0], r };
                vec![
                    Layer::new(main, vec![ball]).shine(0.45),
                    Layer::new(
                        accent,
                        vec![Prim::Box {
                            c: [0.0, 0.0],
                            h: [1.0, 0.12 + 0.1 * v],
                            r: 0.0,
                            rot: 0.35 * (w - 1.0) / 0.15,
                        }],
                    )
                    .clip(ball)
                    .shine(0.45),
                ]
            }
            // marker: a thin long bar with a cap and a tip.
            7 => {
                let r = 0.13 * w;
                let cap_from = 0.25 + 0.15 * v;
                vec![
                    Layer::new(
                        dark,
                        vec![Prim::Trapezoid {
                            y0: -0.98,
                            y1: -0.8,
                            w0: 0.035,
                            w1: r * 0.6,
                        }],
                    ),
                    Layer::new(
                        main,
                        vec![Prim::Capsule {
                            a: [0.0, -0.78],
                            b: [0.0, cap_from],
                            r,
                        }],
                    ),
                    Layer::new(
                        accent,
                        vec![
                            Prim::Capsule {
                                a: [0.0, cap_from],
                                b: [0.0, 0.82],
                                r: r * 1.15,
                            },
                            Prim::Box {
                                c: [r * 1.1, 0.58],
                                h: [0.035, 0.22],
                                r: 0.02,
                                rot: 0.0,
                            },
                        ],
                    ),
                ]
            }
            // cup: a slightly tapered body with a handle ring and a dark opening.
            8 => {
                let top = 0.5 * w;
                let bottom = 0.4 * w;
                let handle = 0.24 + 0.08 * v;
                vec![
                    Layer::new(
                        main,
                        vec![Prim::Ring {
                            c: [top, 0.05],
                            r: [handle, handle * 1.15],
                            t: 0.07,
                        }],
                    ),
                    Layer::new(
                        main,
                        vec![
                            Prim::Trapezoid {
                                y0: -0.75,
                                y1: 0.65,
                                w0: bottom,
                                w1: top,
                            },
                            Prim::Ellipse {
                                c: [0.0, 0.65],
                                r: [top, 0.12],
                                rot: 0.0,
                            },
                        ],
                    ),
                    Layer::new(
                        scale_rgb(main, 0.35),
                        vec![Prim::Ellipse {
                            c: [0.0, 0.65],
                            r: [top - 0.05, 0.08],
                            rot: 0.0,
                        }],
                    )
                    .shine(0.1),
                ]
            }
            // remote_control: a long narrow slab with a grid of buttons.
            _ => {
                let hw = 0.3 * w;
                let rows = 4 + (v * 2.99) as u8;
                vec![
                    Layer::new(
                        scale_rgb(main, 0.55),
                        vec![Prim::Box {
                            c: [0.0, 0.0],
                            h: [hw, 0.95],
                            r: 0.12,
                            rot: 0.0,
                        }],
                    ),
                    Layer::new(
                        accent,
                        vec![Prim::Dots {
                            c: [0.0, -0.25],
                            n: [3, rows],
                            s: [0.55 * hw, 0.15],
                            r: 0.05,
                        }],
                    )
                    .shine(0.2),
                    Layer::new(
                        [0.85, 0.12, 0.1],
                        vec![Prim::Circle {
                            c: [0.0, 0.72],
                            r: 0.08,
                        }],
                    ),
                    Layer::new(
                        mix(accent, [1.0; 3], 0.4),
                        vec![Prim::Ring {
                            c: [0.0, 0.4],
                            r: [0.13, 0.13],
                            t: 0.03,
                        }],
                    ),
                ]
            }
        };
        let mut style = Self {
            layers,
            size,
            centre: [0.0; 2],
            extent: 2.0,
        };
        let (lo, hi) = silhouette_box(BOX_GRID, |p| style.silhouette(p) < 0.0);
        style.centre = [0.5 * (lo[0] + hi[0]), 0.5 * (lo[1] + hi[1])];
        style.extent = (hi[0] - lo[0]).max(hi[1] - lo[1]).max(0.1);
        style
    }

    /// Distance to the object's outline (its opaque layers).
    fn silhouette(&self, p: V2) -> f32 {
        self.layers
            .iter()
            .filter(|l| l.alpha >= 0.5)
            .map(|l| l.sdf(p))
            .fold(f32::INFINITY, f32::min)
    }
}

// ---------------------------------------------------------------------------------------
// Sessions: background and lighting.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pattern {
    Gradient,
    Stripes,
    Tiles,
    Foliage,
    Horizon,
}

impl Pattern {
    fn name(self) -> &'static str {
        match self {
            Pattern::Gradient => "gradient",
            Pattern::Stripes => "stripes",
            Pattern::Tiles => "tiles",
            Pattern::Foliage => "foliage",
            Pattern::Horizon => "horizon",
        }
    }
}

/// A session's background and lighting.
#[derive(Debug, Clone)]
struct SessionStyle {
    outdoor: bool,
    pattern: Pattern,
    c1: Rgb,
    c2: Rgb,
    /// Unit direction of the pattern (gradients, stripes).
    dir: V2,
    /// Pattern repeats per image side.
    freq: f32,
    phase: [f32; 3],
    /// Foliage: three wave directions.
    waves: [V2; 3],
    /// Per-channel gain: brightness and colour cast.
    gain: Rgb,
    /// Unit direction the light comes from, in image coordinates (y down).
    light: V2,
    /// Darkening under the object's shadow, 0..1.
    shadow: f32,
}

impl SessionStyle {
    fn new(seed: u64, session: usize) -> Self {
        let outdoor = OUTDOOR_SESSIONS.contains(&session);
        let mut rng = stream(seed, SESSION_STREAM, session as u64, 0);
        // Indoor sessions cycle through the indoor patterns, outdoor ones through the
        // outdoor patterns, from a per-seed offset, so neighbouring sessions differ.
        let offset = stream(seed, SESSION_STREAM, 0, 1).next_u32() as usize;
        let pattern = if outdoor {
            let rank = OUTDOOR_SESSIONS
                .iter()
                .position(|&s| s == session)
                .unwrap_or(0);
            let p = [Pattern::Foliage, Pattern::Horizon, Pattern::Gradient];
            p[(rank + offset) % p.len()]
        } else {
            let rank = (1..session)
                .filter(|s| !OUTDOOR_SESSIONS.contains(s))
                .count();
            let p = [
                Pattern::Stripes,
                Pattern::Tiles,
                Pattern::Gradient,
                Pattern::Foliage,
            ];
            p[(rank + offset) % p.len()]
        };
        let (c1, c2) = if outdoor {
            let sky = hsv(
                rng.random_range(0.52..0.64),
                rng.random_range(0.2..0.6),
                rng.random_range(0.7..0.97),
            );
            let ground = hsv(
                rng.random_range(0.15..0.38),
                rng.random_range(0.25..0.7),
                rng.random_range(0.3..0.65),
            );
            if pattern == Pattern::Foliage {
                (ground, mix(ground, sky, rng.random_range(0.3..0.6)))
            } else {
                (sky, ground)
            }
        } else {
            let h: f32 = rng.random();
            let c1 = hsv(h, rng.random_range(0.08..0.5), rng.random_range(0.35..0.88));
            let dv: f32 = rng.random_range(0.12..0.3);
            let c2 = hsv(
                h + rng.random_range(-0.1..0.1),
                rng.random_range(0.05..0.45),
                (c1[0].max(c1[1]).max(c1[2]) + if rng.random() { dv } else { -dv })
                    .clamp(0.15, 0.95),
            );
            (c1, c2)
        };
        let angle: f32 = rng.random_range(0.0..std::f32::consts::TAU);
        let waves = [0; 3].map(|_| {
            let a: f32 = rng.random_range(0.0..std::f32::consts::TAU);
            let f: f32 = rng.random_range(2.0..6.0);
            [a.cos() * f, a.sin() * f]
        });
        let freq = rng.random_range(2.5..6.0);
        let phase = [0; 3].map(|_| rng.random_range(0.0..std::f32::consts::TAU));
        let brightness: f32 = if outdoor {
            rng.random_range(1.0..1.2)
        } else {
            rng.random_range(0.7..1.0)
        };
        let cast = [0; 3].map(|_| rng.random_range(-0.08f32..0.08));
        let tint: Rgb = if outdoor {
            [0.98, 1.0, 1.05]
        } else {
            [1.05, 1.0, 0.93]
        };
        let gain = [0, 1, 2].map(|i| brightness * tint[i] * (1.0 + cast[i]));
        let la: f32 = rng.random_range(0.0..std::f32::consts::TAU);
        let shadow = if outdoor {
            rng.random_range(0.35..0.55)
        } else {
            rng.random_range(0.2..0.4)
        };
        Self {
            outdoor,
            pattern,
            c1,
            c2,
            dir: [angle.cos(), angle.sin()],
            freq,
            phase,
            waves,
            gain,
            light: [la.cos(), la.sin()],
            shadow,
        }
    }

    /// Background colour at (u, v) in 0..1 image coordinates (v down), before lighting.
    fn background(&self, u: f32, v: f32) -> Rgb {
        use std::f32::consts::TAU;
        let (x, y) = (u - 0.5, v - 0.5);
        let along = x * self.dir[0] + y * self.dir[1];
        let t = match self.pattern {
            Pattern::Gradient => (0.5 + 1.2 * along).clamp(0.0, 1.0),
            Pattern::Stripes => {
                smoothstep(-0.6, 0.6, (TAU * self.freq * along + self.phase[0]).sin())
            }
            Pattern::Tiles => {
                let across = -x * self.dir[1] + y * self.dir[0];
                let s = (TAU * 0.5 * self.freq * along + self.phase[0]).sin()
                    * (TAU * 0.5 * self.freq * across + self.phase[1]).sin();
                smoothstep(-0.3, 0.3, s)
            }
            Pattern::Foliage => {
                let s: f32 = self
                    .waves
                    .iter()
                    .zip(self.phase)
                    .map(|(w, ph)| (TAU * (w[0] * x + w[1] * y) + ph).sin())
                    .sum();
                smoothstep(-1.2, 1.2, s)
            }
            Pattern::Horizon => {
                let horizon = 0.15 * self.dir[1] + 0.03 * (TAU * u + self.phase[0]).sin();
                let ground = smoothstep(horizon - 0.02, horizon + 0.02, y);
                let grain = 0.06 * (TAU * 3.0 * self.freq * (y + 0.05 * x)).sin() * ground;
                return scale_rgb(
                    mix(scale_rgb(self.c1, 1.0 - 0.25 * (0.5 - v)), self.c2, ground),
                    1.0 + grain,
                );
            }
        };
        mix(self.c1, self.c2, t)
    }
}

// ---------------------------------------------------------------------------------------
// Sequences.

/// Where the object is in one frame.
#[derive(Debug, Clone, Copy)]
struct Pose {
    /// Centre of the object's bounding box, in pixels (x right, y down).
    centre: V2,
    /// Rotation, radians (counter-clockwise on screen).
    angle: f32,
    /// Pixels per local unit.
    scale: f32,
}

impl Pose {
    /// An image point (pixels) in the object's local frame.
    fn local(&self, object: &ObjectStyle, px: f32, py: f32) -> V2 {
        let d = [
            (px - self.centre[0]) / self.scale,
            -(py - self.centre[1]) / self.scale,
        ];
        let q = rotate(d, -self.angle);
        [q[0] + object.centre[0], q[1] + object.centre[1]]
    }
}

/// One (session, object) sequence: its motion and its noise stream.
struct Sequence<'a> {
    session: &'a SessionStyle,
    object: &'a ObjectStyle,
    size: usize,
    background: Vec<Rgb>,
    /// Path: centre = side * (0.5 + offset + amp * sin(w t + phase)), per axis.
    offset: V2,
    amp: V2,
    w: V2,
    phase: V2,
    /// Angle = a0 + ra * sin(wr t + pr) radians.
    a0: f32,
    ra: f32,
    wr: f32,
    pr: f32,
    /// Scale breathing: 1 + 0.05 sin(ws t + ps).
    ws: f32,
    ps: f32,
    rng: ChaCha8Rng,
    next_frame: usize,
}

/// Fraction of the image side that the longest side of an object's bounding box spans at
/// size 1 (sizes are 0.8..1.2 and breathe ±5%: 34-57% of the side).
const OBJECT_SIDE: f32 = 0.45;
/// Pixel noise amplitude in 8-bit levels.
const NOISE_LEVELS: u32 = 3;

impl<'a> Sequence<'a> {
    fn new(
        cfg: &GenerateCore50Config,
        session_style: &'a SessionStyle,
        object_style: &'a ObjectStyle,
        session: usize,
        object: usize,
    ) -> Self {
        let mut rng = stream(cfg.seed, SEQUENCE_STREAM, session as u64, object as u64);
        let size = cfg.image_size;
        let background = (0..size * size)
            .map(|i| {
                let (x, y) = (i % size, i / size);
                session_style.background(
                    (x as f32 + 0.5) / size as f32,
                    (y as f32 + 0.5) / size as f32,
                )
            })
            .collect();
        let mut r = |lo: f32, hi: f32| rng.random_range(lo..hi);
        let offset = [r(-0.04, 0.04), r(-0.04, 0.04)];
        let amp = [r(0.05, 0.11), r(0.05, 0.11)];
        let w = [r(0.12, 0.3), r(0.12, 0.3)];
        let phase = [r(0.0, 6.3), r(0.0, 6.3)];
        let a0 = r(-0.5, 0.5);
        let ra = r(0.25, 0.6);
        let wr = r(0.08, 0.2);
        let pr = r(0.0, 6.3);
        let ws = r(0.1, 0.25);
        let ps = r(0.0, 6.3);
        Self {
            session: session_style,
            object: object_style,
            size,
            background,
            offset,
            amp,
            w,
            phase,
            a0,
            ra,
            wr,
            pr,
            ws,
            ps,
            rng,
            next_frame: 0,
        }
    }

    /// The object's pose in frame `frame`: a smooth path, a back-and-forth turn and a
    /// slight breathing of scale, all sinusoids of the frame index.
    fn pose(&self, frame: usize) -> Pose {
        let side = self.size as f32;
        let t = frame as f32;
        let length =
            side * OBJECT_SIDE * self.object.size * (1.0 + 0.05 * (self.ws * t + self.ps).sin());
        Pose {
            centre: [0, 1].map(|i| {
                side * (0.5 + self.offset[i] + self.amp[i] * (self.w[i] * t + self.phase[i]).sin())
            }),
            angle: self.a0 + self.ra * (self.wr * t + self.pr).sin(),
            scale: length / self.object.extent,
        }
    }

    /// Renders frame `frame` (frames must be asked for in order, as the noise stream runs
    /// on): `size * size * 3` RGB bytes, rows top to bottom.
    fn frame(&mut self, frame: usize) -> Vec<u8> {
        assert_eq!(frame, self.next_frame, "frames are rendered in order");
        self.next_frame += 1;
        let n = self.size;
        let pose = self.pose(frame);
        let (centre, scale) = (pose.centre, pose.scale);
        // The object's longest side in pixels.
        let length = scale * self.object.extent;
        let light = self.session.light;
        // The shadow falls away from the light (and a little down, onto a table).
        let shadow_off = [
            -light[0] * 0.06 * length,
            (-light[1] * 0.06 + 0.04) * length,
        ];
        let soft = (0.06 * length).max(1.0);
        // The bounding box's half diagonal, the shadow's offset and blur, and a margin.
        let reach = (0.71 + 0.1) * length + soft + 2.0;
        let mut rgb = vec![0u8; n * n * 3];
        for y in 0..n {
            for x in 0..n {
                let (px, py) = (x as f32 + 0.5, y as f32 + 0.5);
                let mut c = self.background[y * n + x];
                let (dx, dy) = (px - centre[0], py - centre[1]);
                if dx.abs() < reach && dy.abs() < reach {
                    let sp = pose.local(self.object, px - shadow_off[0], py - shadow_off[1]);
                    let ds = self.object.silhouette(sp) * scale;
                    let cover = (0.5 - ds / soft).clamp(0.0, 1.0);
                    c = scale_rgb(c, 1.0 - self.session.shadow * cover);
                    let p = pose.local(self.object, px, py);
                    let lit = (dx * light[0] + dy * light[1]) / (0.5 * length);
                    for layer in &self.object.layers {
                        let d = layer.sdf(p) * scale;
                        let cover = (0.5 - d).clamp(0.0, 1.0) * layer.alpha;
                        if cover > 0.0 {
                            let shade = (1.0 + layer.shine * lit).clamp(0.45, 1.5);
                            c = mix(c, scale_rgb(layer.colour, shade), cover);
                        }
                    }
                }
                let noise = self.rng.next_u32();
                for (k, v) in c.iter().enumerate() {
                    let byte = (noise >> (8 * k)) & 0xff;
                    let jitter =
                        ((byte * (2 * NOISE_LEVELS + 1)) >> 8) as f32 - NOISE_LEVELS as f32;
                    let level = v * self.session.gain[k] * 255.0 + jitter;
                    rgb[(y * n + x) * 3 + k] = level.round().clamp(0.0, 255.0) as u8;
                }
            }
        }
        rgb
    }
}

/// The frames of one sequence in memory (for tests and previews).
#[cfg(test)]
fn render_sequence(cfg: &GenerateCore50Config, session: usize, object: usize) -> Vec<Vec<u8>> {
    let style = SessionStyle::new(cfg.seed, session);
    let object_style = ObjectStyle::new(cfg.seed, object);
    let mut seq = Sequence::new(cfg, &style, &object_style, session, object);
    (0..cfg.frames_per_session).map(|f| seq.frame(f)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn temp_dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("remind-core50-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn small(seed: u64) -> GenerateCore50Config {
        GenerateCore50Config {
            seed,
            objects_per_category: 2,
            frames_per_session: 3,
            image_size: 16,
        }
    }

    fn files_under(root: &Path) -> Vec<PathBuf> {
        let mut out: Vec<PathBuf> = walkdir::WalkDir::new(root)
            .into_iter()
            .map(|e| e.unwrap())
            .filter(|e| e.file_type().is_file())
            .map(|e| e.path().strip_prefix(root).unwrap().to_path_buf())
            .collect();
        out.sort();
        out
    }

    #[test]
    fn layout_and_file_names_are_the_releases() {
        let dir = temp_dir("layout");
        let out = dir.join("core50");
        let cfg = small(0);
        let report = generate(&cfg, &out).unwrap();
        assert_eq!(report.objects, 20);
        assert_eq!(report.images, 20 * 11 * 3);
        let mut expected = BTreeSet::new();
        expected.insert(PathBuf::from(INFO_FILE));
        for s in 1..=11 {
            for c in 0..10 {
                for k in 0..2 {
                    let o = 5 * c + k + 1;
                    for f in 0..3 {
                        expected.insert(PathBuf::from(format!(
                            "s{s}/o{o}/C_{s:02}_{o:02}_{f:03}.png"
                        )));
                    }
                }
            }
        }
        let found: BTreeSet<PathBuf> = files_under(&out).into_iter().collect();
        assert_eq!(found, expected);
        for p in [
            "s1/o1/C_01_01_000.png",
            "s1/o2/C_01_02_002.png",
            "s11/o47/C_11_47_001.png",
            "s3/o6/C_03_06_000.png",
        ] {
            assert!(out.join(p).is_file(), "{p}");
        }
        assert!(!out.join("s1/o3").exists() && !out.join("s12").exists());
        assert_eq!(
            image_path(&out, 4, 12, 7),
            out.join("s4/o12/C_04_12_007.png")
        );
        assert_eq!(category_of(5), 0);
        assert_eq!(category_of(6), 1);
        assert_eq!(category_of(50), 9);
        // 8-bit RGB of the configured side.
        let decoder = png::Decoder::new(std::io::BufReader::new(
            std::fs::File::open(out.join("s5/o16/C_05_16_001.png")).unwrap(),
        ));
        let reader = decoder.read_info().unwrap();
        let info = reader.info();
        assert_eq!((info.width, info.height), (16, 16));
        assert_eq!(info.color_type, png::ColorType::Rgb);
        assert_eq!(info.bit_depth, png::BitDepth::Eight);
        // The info file.
        let v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.join(INFO_FILE)).unwrap()).unwrap();
        assert_eq!(v["generator"], GENERATOR);
        assert_eq!(v["images"], 660);
        assert_eq!(v["categories"][1]["name"], "mobile_phone");
        assert_eq!(v["categories"][1]["objects"], serde_json::json!([6, 7]));
        assert_eq!(v["session_settings"][3]["setting"], "outdoor");
        assert_eq!(v["session_settings"][2]["setting"], "indoor");
        assert_eq!(v["config"]["objects_per_category"], 2);
        // Nothing left beside it.
        let left: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, vec![std::ffi::OsString::from("core50")]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn same_seed_same_bytes_other_seed_other_bytes_and_replacement() {
        let dir = temp_dir("determinism");
        let cfg = GenerateCore50Config {
            seed: 7,
            objects_per_category: 1,
            frames_per_session: 2,
            image_size: 12,
        };
        let read_all = |root: &Path| -> Vec<(PathBuf, Vec<u8>)> {
            files_under(root)
                .into_iter()
                .map(|p| {
                    let bytes = std::fs::read(root.join(&p)).unwrap();
                    (p, bytes)
                })
                .collect()
        };
        let (a, b, c) = (dir.join("a"), dir.join("b"), dir.join("c"));
        generate(&cfg, &a).unwrap();
        generate(&cfg, &b).unwrap();
        let first = read_all(&a);
        assert_eq!(first, read_all(&b));
        generate(
            &GenerateCore50Config {
                seed: 8,
                ..cfg.clone()
            },
            &c,
        )
        .unwrap();
        let other = read_all(&c);
        let differ = first
            .iter()
            .zip(&other)
            .filter(|((pa, ba), (pb, bb))| pa == pb && ba != bb)
            .count();
        assert!(
            differ >= first.len() - 1,
            "{differ} of {} differ",
            first.len()
        );
        // Regenerating over an earlier data set replaces it whole (the other seed's bytes
        // are gone, nothing is left beside it).
        generate(&cfg, &c).unwrap();
        assert_eq!(first, read_all(&c));
        let mut left: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["a", "b", "c"]);
        // A folder of other data is refused, and left as it was.
        let foreign = dir.join("real");
        std::fs::create_dir_all(foreign.join("s1")).unwrap();
        let err = generate(&cfg, &foreign).unwrap_err().to_string();
        assert!(err.contains("refusing"), "{err}");
        assert!(foreign.join("s1").is_dir() && !foreign.join(INFO_FILE).exists());
        // An empty folder is fine.
        let empty = dir.join("empty");
        std::fs::create_dir_all(&empty).unwrap();
        generate(&cfg, &empty).unwrap();
        assert_eq!(first, read_all(&empty));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn mad(a: &[u8], b: &[u8]) -> f64 {
        a.iter()
            .zip(b)
            .map(|(x, y)| (f64::from(*x) - f64::from(*y)).abs())
            .sum::<f64>()
            / a.len() as f64
    }

    #[test]
    fn consecutive_frames_are_much_closer_than_other_objects() {
        let cfg = GenerateCore50Config {
            seed: 3,
            objects_per_category: 1,
            frames_per_session: 6,
            image_size: 32,
        };
        let (mut within, mut across) = (Vec::new(), Vec::new());
        for session in [1, 4, 8] {
            let seqs: Vec<Vec<Vec<u8>>> = (0..10)
                .map(|c| render_sequence(&cfg, session, object_number(c, 0)))
                .collect();
            for (c, seq) in seqs.iter().enumerate() {
                for f in 1..seq.len() {
                    within.push(mad(&seq[f - 1], &seq[f]));
                }
                let other = &seqs[(c + 1 + session) % 10];
                for f in 0..seq.len() {
                    across.push(mad(&seq[f], &other[f]));
                }
            }
        }
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        let (w, a) = (mean(&within), mean(&across));
        assert!(
            w * 2.5 < a,
            "consecutive frames {w:.2}, other objects {a:.2}"
        );
    }

    #[test]
    fn objects_cover_30_to_60_percent_of_the_side() {
        let cfg = GenerateCore50Config {
            frames_per_session: 40,
            image_size: 64,
            ..GenerateCore50Config::default()
        };
        let session = SessionStyle::new(0, 1);
        let side = cfg.image_size as f32;
        for object in (0..10)
            .map(|c| object_number(c, 0))
            .chain([2, 9, 14, 33, 41, 50])
        {
            for seed in 0..3 {
                let look = ObjectStyle::new(seed, object);
                // Measured on a grid 4x finer than the one that sized the object.
                let (lo, hi) = silhouette_box(4 * BOX_GRID, |p| look.silhouette(p) < 0.0);
                let longest = (hi[0] - lo[0]).max(hi[1] - lo[1]);
                // The grid that sized it saw the whole shape.
                for k in 0..2 {
                    assert!(
                        lo[k] > -LOCAL_REACH + 0.05 && hi[k] < LOCAL_REACH - 0.05,
                        "object {object} seed {seed} reaches the edge of the grid"
                    );
                }
                let seq = Sequence::new(&cfg, &session, &look, 1, object);
                for frame in 0..cfg.frames_per_session {
                    let pose = seq.pose(frame);
                    let share = longest * pose.scale / side;
                    assert!(
                        (0.3..=0.6).contains(&share),
                        "object {object} seed {seed} frame {frame}: longest side {share:.3} \
                         of the image side"
                    );
                    // Its bounding box's centre stays in the middle of the image.
                    for c in pose.centre {
                        assert!((0.3 * side..=0.7 * side).contains(&c), "centre {c}");
                    }
                }
            }
        }
    }

    #[test]
    fn config_errors_name_the_key_the_range_and_the_value() {
        let ok = GenerateCore50Config::default();
        ok.validate().unwrap();
        assert_eq!(ok.images(), 2640);
        assert_eq!(ok.objects()[..4], [1, 2, 3, 6]);
        for (cfg, key, range, found) in [
            (
                GenerateCore50Config {
                    objects_per_category: 0,
                    ..ok.clone()
                },
                "objects_per_category",
                "1..=5",
                "found 0",
            ),
            (
                GenerateCore50Config {
                    objects_per_category: 6,
                    ..ok.clone()
                },
                "objects_per_category",
                "1..=5",
                "found 6",
            ),
            (
                GenerateCore50Config {
                    frames_per_session: 0,
                    ..ok.clone()
                },
                "frames_per_session",
                "1..=999",
                "found 0",
            ),
            (
                GenerateCore50Config {
                    frames_per_session: 1000,
                    ..ok.clone()
                },
                "frames_per_session",
                "1..=999",
                "found 1000",
            ),
            (
                GenerateCore50Config {
                    image_size: 7,
                    ..ok.clone()
                },
                "image_size",
                "8..=512",
                "found 7",
            ),
            (
                GenerateCore50Config {
                    image_size: 513,
                    ..ok.clone()
                },
                "image_size",
                "8..=512",
                "found 513",
            ),
        ] {
            let err = cfg.validate().unwrap_err().to_string();
            for want in [&format!("generate_core50.{key}"), range, found] {
                assert!(err.contains(want), "{err:?} lacks {want:?}");
            }
            // generate refuses it before writing anything.
            let out =
                std::env::temp_dir().join(format!("remind-core50-invalid-{}", std::process::id()));
            assert!(generate(&cfg, &out).is_err());
            assert!(!out.exists());
        }
        let unknown = serde_yaml::from_str::<GenerateCore50Config>("sessions: 3\n")
            .unwrap_err()
            .to_string();
        assert!(unknown.contains("sessions"), "{unknown}");
        // A pipeline file's section: its keys over the defaults, unknown keys refused.
        let dir = temp_dir("config");
        let config = dir.join("pipeline.yaml");
        std::fs::write(&config, "generate_core50:\n  seed: 4\n  image_size: 16\n").unwrap();
        let read: GenerateCore50Config =
            crate::run::load_section(Some(&config), "generate_core50").unwrap();
        assert_eq!(
            read,
            GenerateCore50Config {
                seed: 4,
                image_size: 16,
                ..ok
            }
        );
        std::fs::write(&config, "generate_core50:\n  sessions: 3\n").unwrap();
        let err =
            crate::run::load_section::<GenerateCore50Config>(Some(&config), "generate_core50")
                .unwrap_err();
        assert!(format!("{err:#}").contains("sessions"), "{err:#}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

//! The input side of feature extraction: which images, with which ids, and decoding them
//! to square RGB pixels.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, ensure, Context, Result};
use image::imageops::FilterType;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use walkdir::WalkDir;

/// How an image gets its id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum IdFrom {
    /// Position in the byte-wise sorted list of relative paths (0, 1, 2, ...).
    #[default]
    Sorted,
    /// The image index of CLEVR's file names, `CLEVR_{split}_{NNNNNN}.png`, so features
    /// join the questions' `image_index` directly.
    ClevrFilename,
    /// The image id of COCO's file names, `COCO_{split}_{NNNNNNNNNNNN}.jpg` (TDIUC's
    /// `Images/{train2014,val2014}/`), so features join the questions' `image_id`.
    CocoFilename,
}

named_enum!(IdFrom, "id scheme", {
    Sorted => "sorted",
    ClevrFilename => "clevr-filename",
    CocoFilename => "coco-filename",
});

/// One input image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageItem {
    pub id: u64,
    /// Path relative to the image folder, `/`-separated.
    pub rel: String,
    pub path: PathBuf,
}

fn is_image(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| matches!(e.to_ascii_lowercase().as_str(), "png" | "jpg" | "jpeg"))
}

/// The PNG and JPEG files under `root` (recursively, following links, skipping hidden
/// names), in ascending id order.
pub fn list_images(root: &Path, id_from: IdFrom) -> Result<Vec<ImageItem>> {
    let r = root.display();
    ensure!(root.is_dir(), "{r}: no such image folder");
    let mut items = Vec::new();
    let walk = WalkDir::new(root)
        .follow_links(true)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|e| e.depth() == 0 || !e.file_name().to_string_lossy().starts_with('.'));
    for entry in walk {
        let entry = entry.with_context(|| format!("cannot walk image folder {r}"))?;
        if !entry.file_type().is_file() || !is_image(entry.path()) {
            continue;
        }
        let rel_path = entry
            .path()
            .strip_prefix(root)
            .with_context(|| format!("{} is outside {r}", entry.path().display()))?;
        let parts: Option<Vec<&str>> = rel_path
            .components()
            .map(|c| c.as_os_str().to_str())
            .collect();
        let rel = parts
            .with_context(|| format!("{}: file name is not valid UTF-8", entry.path().display()))?
            .join("/");
        items.push(ImageItem {
            id: 0,
            rel,
            path: entry.path().to_path_buf(),
        });
    }
    ensure!(
        !items.is_empty(),
        "{r}: no PNG or JPEG images in the folder"
    );
    match id_from {
        IdFrom::Sorted => {
            items.sort_by(|a, b| a.rel.cmp(&b.rel));
            for (i, item) in items.iter_mut().enumerate() {
                item.id = i as u64;
            }
        }
        IdFrom::ClevrFilename | IdFrom::CocoFilename => {
            let prefix = match id_from {
                IdFrom::CocoFilename => "COCO",
                _ => "CLEVR",
            };
            for item in items.iter_mut() {
                item.id = filename_index(&item.rel, prefix)
                    .with_context(|| format!("{}: --id-from {id_from}", item.path.display()))?;
            }
            items.sort_by_key(|i| i.id);
            for pair in items.windows(2) {
                ensure!(
                    pair[0].id != pair[1].id,
                    "{r}: {} and {} both have image index {} (mixed splits in one folder?)",
                    pair[0].rel,
                    pair[1].rel,
                    pair[0].id
                );
            }
        }
    }
    Ok(items)
}

/// The image index of a CLEVR file name `CLEVR_{split}_{NNNNNN}.png` (any folder).
pub fn clevr_index(rel: &str) -> Result<u64> {
    filename_index(rel, "CLEVR")
}

/// The number of a file name `{prefix}_{split}_{digits}.{ext}` (any folder): CLEVR's image
/// index, COCO's image id.
pub fn filename_index(rel: &str, prefix: &str) -> Result<u64> {
    let name = rel.rsplit('/').next().unwrap_or(rel);
    let bad = || {
        anyhow!("file name '{name}' is not of the form {prefix}_{{split}}_{{NNNNNN}}.{{png,jpg}}")
    };
    let stem = name.rsplit_once('.').map_or(name, |(s, _)| s);
    let rest = stem
        .strip_prefix(prefix)
        .and_then(|r| r.strip_prefix('_'))
        .ok_or_else(bad)?;
    let (split, digits) = rest.rsplit_once('_').ok_or_else(bad)?;
    ensure!(
        !split.is_empty() && !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()),
        bad()
    );
    digits.parse().map_err(|_| bad())
}

/// Hash of the listing (ids and relative paths): what the images part of a run's config
/// amounts to, independent of where the folder is mounted.
pub fn listing_hash(items: &[ImageItem]) -> String {
    let mut h = Sha256::new();
    for item in items {
        h.update(item.id.to_le_bytes());
        h.update(item.rel.as_bytes());
        h.update([0u8]);
    }
    crate::artifact::weights::hex(&h.finalize()[..8])
}

/// Decodes `path` (PNG or JPEG, by content) to RGB and resizes it to `size x size` with
/// bicubic interpolation (Catmull-Rom, a = -0.5, widened when shrinking: what PIL's
/// `Image.resize(..., BICUBIC)` and torchvision's `Resize` on PIL images do). Returns HWC
/// bytes. Fails for unreadable, truncated or corrupt files.
pub fn decode_image(path: &Path, size: u32) -> Result<Vec<u8>> {
    let p = path.display();
    let img = image::ImageReader::open(path)
        .with_context(|| format!("cannot open {p}"))?
        .with_guessed_format()
        .with_context(|| format!("cannot read {p}"))?
        .decode()
        .map_err(|e| {
            // Say what the file is when it is not a PNG or JPEG at all (an HTML error page
            // saved as .jpg, a WebP under a .png name); a damaged PNG or JPEG needs no more.
            let kind = crate::artifact::sniff::describe(&crate::artifact::sniff::head(path))
                .filter(|k| k != "a PNG image" && k != "a JPEG image")
                .map(|k| format!(" (it is {k}, not a PNG or JPEG image)"))
                .unwrap_or_default();
            anyhow!("{p}: cannot decode image: {e}{kind}")
        })?;
    let rgb = img.to_rgb8();
    let rgb = if rgb.width() == size && rgb.height() == size {
        rgb
    } else {
        image::imageops::resize(&rgb, size, size, FilterType::CatmullRom)
    };
    Ok(rgb.into_raw())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clevr_names() {
        assert_eq!(clevr_index("CLEVR_train_000123.png").unwrap(), 123);
        assert_eq!(clevr_index("a/b/CLEVR_val_000000.png").unwrap(), 0);
        assert_eq!(clevr_index("CLEVR_new_split_000007.png").unwrap(), 7);
        for bad in [
            "img_0001.png",
            "CLEVR_train_.png",
            "CLEVR_train_12a.png",
            "CLEVR_0001.png",
        ] {
            assert!(clevr_index(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn listing_sorts_skips_hidden_and_checks_ids() {
        let dir = std::env::temp_dir().join(format!("remind-images-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::create_dir_all(dir.join(".hidden")).unwrap();
        for name in [
            "b.png",
            "a.JPG",
            "sub/c.jpeg",
            ".hidden/x.png",
            "notes.txt",
            ".y.png",
        ] {
            std::fs::write(dir.join(name), b"x").unwrap();
        }
        let items = list_images(&dir, IdFrom::Sorted).unwrap();
        let rels: Vec<_> = items.iter().map(|i| (i.id, i.rel.as_str())).collect();
        assert_eq!(rels, vec![(0, "a.JPG"), (1, "b.png"), (2, "sub/c.jpeg")]);
        let err = format!(
            "{:#}",
            list_images(&dir, IdFrom::ClevrFilename).unwrap_err()
        );
        assert!(err.contains("a.JPG") && err.contains("CLEVR_"), "{err}");
        assert!(listing_hash(&items) != listing_hash(&items[1..]));

        let clevr = dir.join("clevr");
        std::fs::create_dir_all(clevr.join("v")).unwrap();
        std::fs::write(clevr.join("CLEVR_train_000010.png"), b"x").unwrap();
        std::fs::write(clevr.join("CLEVR_train_000002.png"), b"x").unwrap();
        let items = list_images(&clevr, IdFrom::ClevrFilename).unwrap();
        assert_eq!(items.iter().map(|i| i.id).collect::<Vec<_>>(), vec![2, 10]);
        std::fs::write(clevr.join("v/CLEVR_val_000002.png"), b"x").unwrap();
        let err = list_images(&clevr, IdFrom::ClevrFilename)
            .unwrap_err()
            .to_string();
        assert!(err.contains("both have image index 2"), "{err}");

        let coco = dir.join("coco");
        std::fs::create_dir_all(&coco).unwrap();
        std::fs::write(coco.join("COCO_val2014_000000000042.jpg"), b"x").unwrap();
        std::fs::write(coco.join("COCO_val2014_000000000009.png"), b"x").unwrap();
        let items = list_images(&coco, IdFrom::CocoFilename).unwrap();
        assert_eq!(items.iter().map(|i| i.id).collect::<Vec<_>>(), vec![9, 42]);
        let err = format!(
            "{:#}",
            list_images(&clevr, IdFrom::CocoFilename).unwrap_err()
        );
        assert!(
            err.contains("--id-from coco-filename") && err.contains("COCO_"),
            "{err}"
        );
        assert_eq!(
            "coco-filename".parse::<IdFrom>().unwrap(),
            IdFrom::CocoFilename
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

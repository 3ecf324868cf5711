//! End to end: `remind-import-images` on small IDX fixtures written here (raw and gzipped),
//! on generated ImageNet-style folders and, when installed, on the real Fashion-MNIST
//! files; bad input fails naming the file and the problem and writes nothing.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use arrow::array::{Int64Array, StringArray, UInt64Array};
use remind::artifact::table::read_id_column;
use remind::artifact::Table;
use remind::backbone::features::images::{list_images, IdFrom};
use remind::data::images::idx::{encode_images, encode_labels};
use remind_e2e::{run_fail, run_ok, scratch, stage};
use serde_json::Value;

const ROWS: usize = 4;
const COLS: usize = 5;
const NAMES: &str = "T-shirt/top,Trouser,Ankle boot";
/// Labels of the fixture: train 12 items (4 per class), val 6 (2 per class).
const TRAIN_LABELS: [u8; 12] = [2, 0, 1, 0, 2, 1, 0, 1, 2, 2, 0, 1];
const VAL_LABELS: [u8; 6] = [1, 0, 2, 2, 1, 0];

/// Pixels of item `i` of a split: distinct, known values.
fn pixels(split_offset: usize, i: usize) -> Vec<u8> {
    (0..ROWS * COLS)
        .map(|j| ((split_offset + i * 23 + j * 7) % 256) as u8)
        .collect()
}

fn split_pixels(split_offset: usize, n: usize) -> Vec<u8> {
    (0..n).flat_map(|i| pixels(split_offset, i)).collect()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

/// Writes the four IDX files of the fixture into `dir` (gzipped with `.gz` names when `gz`).
fn write_fixture(dir: &Path, gz: bool) {
    std::fs::create_dir_all(dir).unwrap();
    let files = [
        (
            "train-images-idx3-ubyte",
            encode_images(ROWS, COLS, &split_pixels(0, TRAIN_LABELS.len())),
        ),
        ("train-labels-idx1-ubyte", encode_labels(&TRAIN_LABELS)),
        (
            "t10k-images-idx3-ubyte",
            encode_images(ROWS, COLS, &split_pixels(100, VAL_LABELS.len())),
        ),
        ("t10k-labels-idx1-ubyte", encode_labels(&VAL_LABELS)),
    ];
    for (name, bytes) in files {
        if gz {
            std::fs::write(dir.join(format!("{name}.gz")), gzip(&bytes)).unwrap();
        } else {
            std::fs::write(dir.join(name), bytes).unwrap();
        }
    }
}

fn import(args: &[&str], out: &Path, run_dir: &Path) -> Command {
    let mut cmd = stage("remind-import-images");
    cmd.args(args)
        .arg("--out")
        .arg(out)
        .arg("--run-dir")
        .arg(run_dir);
    cmd
}

/// One row of the labels table.
#[derive(Debug, Clone, PartialEq)]
struct Row {
    id: u64,
    split: String,
    source: String,
    class_name: String,
    label: i64,
}

fn rows(t: &Table) -> Vec<Row> {
    let id = t.column::<UInt64Array>("id").unwrap();
    let s = |c: &str| t.column::<StringArray>(c).unwrap().clone();
    let (split, source, class) = (s("split"), s("source"), s("class_name"));
    let label = t.column::<Int64Array>("label").unwrap();
    (0..t.num_rows())
        .map(|i| Row {
            id: id.value(i),
            split: split.value(i).into(),
            source: source.value(i).into(),
            class_name: class.value(i).into(),
            label: label.value(i),
        })
        .collect()
}

fn meta(t: &Table, key: &str) -> String {
    t.batch.schema_ref().metadata()[key].clone()
}

fn read_order(out: &Path) -> Vec<String> {
    std::fs::read_to_string(out.join("class_order.txt"))
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

fn report(out: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(out.join("import_report.json")).unwrap()).unwrap()
}

/// Checks the labels table of an IDX import against the fixture, the PNGs on disk and the
/// listing of the image root; returns the rows.
fn check_idx_import(out: &Path, names: &[&str]) -> Vec<Row> {
    let table = Table::read(&out.join("labels.parquet"), "labels").unwrap();
    let image_root = out.join("images");
    assert_eq!(
        meta(&table, "remind.image_root"),
        image_root.display().to_string()
    );
    assert_eq!(meta(&table, "remind.num_classes"), names.len().to_string());
    let order = read_order(out);
    let rows = rows(&table);
    // Ids: exactly the positions in the sorted listing of the image root.
    let listing = list_images(&image_root, IdFrom::Sorted).unwrap();
    assert_eq!(
        listing.len(),
        rows.len(),
        "only kept items are materialised"
    );
    let listed: HashMap<&str, u64> = listing.iter().map(|i| (i.rel.as_str(), i.id)).collect();
    for (k, row) in rows.iter().enumerate() {
        assert_eq!(row.id, k as u64, "rows in id order");
        assert_eq!(listed[row.source.as_str()], row.id, "{row:?}");
        let (split, rest) = row.source.split_once('/').unwrap();
        assert_eq!(split, row.split);
        let index: usize = rest
            .rsplit_once('/')
            .unwrap()
            .1
            .strip_suffix(".png")
            .unwrap()
            .parse()
            .unwrap();
        let (labels, offset): (&[u8], usize) = if split == "train" {
            (&TRAIN_LABELS, 0)
        } else {
            (&VAL_LABELS, 100)
        };
        assert_eq!(row.class_name, names[labels[index] as usize], "{row:?}");
        assert_eq!(
            order[row.label as usize], row.class_name,
            "label = position in the class order"
        );
        let img = image::open(image_root.join(&row.source)).unwrap();
        assert_eq!(img.color(), image::ColorType::L8, "8-bit grayscale");
        assert_eq!((img.width(), img.height()), (COLS as u32, ROWS as u32));
        assert_eq!(img.to_luma8().into_raw(), pixels(offset, index), "{row:?}");
    }
    // The base split: training items of the first base_classes classes of the order.
    let base_classes: i64 = meta(&table, "remind.base_classes").parse().unwrap();
    let base = read_id_column(&out.join("base_train.parquet"), "id").unwrap();
    let expected: Vec<u64> = rows
        .iter()
        .filter(|r| r.split == "train" && r.label < base_classes)
        .map(|r| r.id)
        .collect();
    assert_eq!(base, expected);
    assert!(!base.is_empty());
    Table::read(&out.join("base_train.parquet"), "ids").unwrap();
    rows
}

/// Everything in `dir`, recursively (relative paths), for "nothing written" checks.
fn tree(dir: &Path) -> Vec<String> {
    if !dir.exists() {
        return Vec::new();
    }
    let mut out: Vec<String> = walk(dir)
        .into_iter()
        .map(|p| p.strip_prefix(dir).unwrap().display().to_string())
        .collect();
    out.sort();
    out
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        }
        out.push(p);
    }
    out
}

#[test]
fn idx_import_raw_and_gzipped() {
    let dir = scratch("import_images_idx");
    let names = ["T-shirt/top", "Trouser", "Ankle boot"];
    let mut tables = Vec::new();
    for gz in [false, true] {
        let data = dir.join(if gz { "gz" } else { "raw" });
        write_fixture(&data, gz);
        let (out, run_dir) = (data.join("out"), data.join("run"));
        run_ok(&mut import(
            &[
                "--idx",
                data.to_str().unwrap(),
                "--class-names",
                NAMES,
                "--seed",
                "5",
            ],
            &out,
            &run_dir,
        ));
        let rows = check_idx_import(&out, &names);
        assert_eq!(rows.len(), 18);
        assert_eq!(rows.iter().filter(|r| r.split == "train").count(), 12);
        // File-system-safe class folders, 5-digit indices.
        assert!(rows
            .iter()
            .any(|r| r.source == "train/T-shirt_top/00001.png"));
        assert!(rows.iter().any(|r| r.source == "val/Ankle_boot/00002.png"));
        let rep = report(&out);
        assert_eq!(rep["source"], "idx");
        assert_eq!(rep["seed"], 5);
        assert_eq!(rep["num_classes"], 3);
        assert_eq!(rep["splits"]["train"]["items"], 12);
        assert_eq!(rep["splits"]["val"]["available"], 6);
        assert_eq!(rep["class_order"], "seeded shuffle");
        assert_eq!(rep["sources"].as_array().unwrap().len(), 4);
        let classes = rep["classes"].as_array().unwrap();
        assert_eq!(classes.len(), 3);
        assert!(classes.iter().all(|c| c["train"] == 4 && c["val"] == 2));
        let manifest = std::fs::read_to_string(run_dir.join("manifest.json")).unwrap();
        assert!(manifest.contains("import-images"), "{manifest}");
        assert!(manifest.contains("labels.parquet") && manifest.contains("base_train.parquet"));
        assert!(
            !tree(&out).iter().any(|p| p.contains(".tmp-")),
            "temporaries left: {:?}",
            tree(&out)
        );
        tables.push((rows, read_order(&out)));
    }
    assert_eq!(tables[0], tables[1], "raw and gzipped imports differ");

    // A second import into the same folder replaces the images (now subsampled).
    let data = dir.join("raw");
    let out = data.join("out");
    run_ok(&mut import(
        &[
            "--idx",
            data.to_str().unwrap(),
            "--class-names",
            NAMES,
            "--max-train-per-class",
            "1",
        ],
        &out,
        &data.join("run"),
    ));
    assert_eq!(check_idx_import(&out, &names).len(), 3 + 6);
}

#[test]
fn idx_class_order_file_and_subsampling() {
    let dir = scratch("import_images_order");
    let data = dir.join("idx");
    write_fixture(&data, true);
    let order_file = dir.join("order.txt");
    std::fs::write(&order_file, "\n  Ankle boot \n\nT-shirt/top\r\nTrouser\n\n").unwrap();
    let names = ["T-shirt/top", "Trouser", "Ankle boot"];
    let args = |out: &Path| {
        let mut cmd = import(
            &[
                "--idx",
                data.to_str().unwrap(),
                "--class-names",
                NAMES,
                "--class-order",
                order_file.to_str().unwrap(),
                "--base-classes",
                "2",
                "--max-train-per-class",
                "3",
                "--max-val-per-class",
                "1",
                "--seed",
                "9",
            ],
            out,
            &dir.join("run"),
        );
        run_ok(&mut cmd);
    };
    let out = dir.join("out");
    args(&out);
    assert_eq!(read_order(&out), ["Ankle boot", "T-shirt/top", "Trouser"]);
    let rows = check_idx_import(&out, &names);
    assert_eq!(rows.len(), 3 * 3 + 3);
    for (name, label) in [("Ankle boot", 0), ("T-shirt/top", 1), ("Trouser", 2)] {
        let of_class: Vec<&Row> = rows.iter().filter(|r| r.class_name == name).collect();
        assert!(of_class.iter().all(|r| r.label == label));
        assert_eq!(of_class.iter().filter(|r| r.split == "train").count(), 3);
        assert_eq!(of_class.iter().filter(|r| r.split == "val").count(), 1);
    }
    let base = read_id_column(&out.join("base_train.parquet"), "id").unwrap();
    assert_eq!(base.len(), 6, "two base classes, three training items each");
    let rep = report(&out);
    assert_eq!(rep["base_classes"], 2);
    assert_eq!(rep["splits"]["train"]["items"], 9);
    assert_eq!(rep["splits"]["train"]["available"], 12);
    assert!(rep["class_order"].as_str().unwrap().contains("order.txt"));

    // Same seed, same sample; the class order file is only a label order.
    let again = dir.join("again");
    args(&again);
    assert_eq!(check_idx_import(&again, &names), rows);

    // Without names and order: labels "0".."2" in a seeded shuffle, the same every run.
    let mut orders = Vec::new();
    for (k, seed) in ["1", "1", "2", "3"].iter().enumerate() {
        let out = dir.join(format!("shuffle{k}"));
        run_ok(&mut import(
            &["--idx", data.to_str().unwrap(), "--seed", seed],
            &out,
            &dir.join("run"),
        ));
        check_idx_import(&out, &["0", "1", "2"]);
        let order = read_order(&out);
        let mut sorted = order.clone();
        sorted.sort();
        assert_eq!(sorted, ["0", "1", "2"]);
        orders.push(order);
    }
    assert_eq!(orders[0], orders[1]);
    assert!(orders[1..].iter().any(|o| *o != orders[0]), "{orders:?}");
}

/// Runs an import expected to fail; checks the message names `needles` and nothing was
/// written.
fn expect_failure(args: &[&str], out: &Path, needles: &[&str]) {
    let run_dir = out.with_file_name("run-failing");
    let err = run_fail(&mut import(args, out, &run_dir));
    for n in needles {
        assert!(err.contains(n), "expected '{n}' in:\n{err}");
    }
    assert!(
        tree(out).is_empty(),
        "written despite the error: {:?}",
        tree(out)
    );
    assert!(!run_dir.join("manifest.json").exists());
}

#[test]
fn bad_idx_input_fails_and_writes_nothing() {
    let dir = scratch("import_images_bad_idx");
    let out = dir.join("out");
    let data = dir.join("idx");
    let d = data.to_str().unwrap().to_string();
    let fresh = |gz: bool| {
        let _ = std::fs::remove_dir_all(&data);
        write_fixture(&data, gz);
    };
    let images = data.join("train-images-idx3-ubyte");
    let labels = data.join("t10k-labels-idx1-ubyte");

    // Wrong magic, in an images and in a labels file.
    fresh(false);
    let mut bytes = std::fs::read(&images).unwrap();
    bytes[3] = 0x01;
    std::fs::write(&images, &bytes).unwrap();
    expect_failure(
        &["--idx", &d],
        &out,
        &[
            "train-images-idx3-ubyte",
            "expected magic 0x00000803, found 0x00000801",
        ],
    );
    fresh(false);
    let mut bytes = std::fs::read(&labels).unwrap();
    bytes[2] = 0x09;
    std::fs::write(&labels, &bytes).unwrap();
    expect_failure(
        &["--idx", &d],
        &out,
        &["t10k-labels-idx1-ubyte", "found 0x00000901"],
    );

    // Image and label counts that disagree.
    fresh(false);
    std::fs::write(&labels, encode_labels(&VAL_LABELS[..5])).unwrap();
    expect_failure(
        &["--idx", &d],
        &out,
        &["holds 6 images", "t10k-labels-idx1-ubyte holds 5 labels"],
    );

    // A file whose size does not match its header.
    fresh(false);
    let bytes = std::fs::read(&images).unwrap();
    std::fs::write(&images, &bytes[..bytes.len() - 3]).unwrap();
    let (expected, found) = (16 + 12 * ROWS * COLS, 16 + 12 * ROWS * COLS - 3);
    expect_failure(
        &["--idx", &d],
        &out,
        &[
            "train-images-idx3-ubyte",
            &format!("expected {expected} bytes, found {found}"),
        ],
    );

    // Truncated gzip.
    fresh(true);
    let gz = data.join("t10k-images-idx3-ubyte.gz");
    let bytes = std::fs::read(&gz).unwrap();
    std::fs::write(&gz, &bytes[..bytes.len() - 20]).unwrap();
    expect_failure(
        &["--idx", &d],
        &out,
        &["t10k-images-idx3-ubyte.gz", "truncated gzip"],
    );

    // A missing file.
    fresh(false);
    std::fs::remove_file(&labels).unwrap();
    expect_failure(&["--idx", &d], &out, &["t10k-labels-idx1-ubyte"]);

    // Labels beyond the given class names.
    fresh(false);
    expect_failure(
        &["--idx", &d, "--class-names", "a,b"],
        &out,
        &[
            "train-labels-idx1-ubyte",
            "item 0 has label 2",
            "2 class names",
        ],
    );

    // Both or neither source; bad base_classes.
    expect_failure(&["--idx", &d, "--folder", &d], &out, &["not several"]);
    expect_failure(&[], &out, &["give --idx, --folder or --core50"]);
    for b in ["0", "3"] {
        expect_failure(
            &["--idx", &d, "--base-classes", b],
            &out,
            &[&format!("base_classes is {b}"), "expected 1 to 2"],
        );
    }

    // Class-order files naming unknown classes, repeating or missing some.
    let order = dir.join("order.txt");
    std::fs::write(&order, "Trouser\nCoat\nT-shirt/top\nBag\n").unwrap();
    let o = order.to_str().unwrap();
    expect_failure(
        &["--idx", &d, "--class-names", NAMES, "--class-order", o],
        &out,
        &[
            "order.txt",
            "'Coat', 'Bag'",
            "missing from the order: 'Ankle boot'",
        ],
    );
    std::fs::write(&order, "Trouser\nT-shirt/top\nTrouser\nAnkle boot\n").unwrap();
    expect_failure(
        &["--idx", &d, "--class-names", NAMES, "--class-order", o],
        &out,
        &["order.txt", "more than once: 'Trouser'"],
    );

    // A config section with an unknown key.
    let config = dir.join("p.yaml");
    std::fs::write(&config, format!("import_images:\n  idx: {d}\n  seeed: 3\n")).unwrap();
    expect_failure(
        &["--config", config.to_str().unwrap()],
        &out,
        &["seeed", "did you mean 'seed'"],
    );
}

/// Writes a tiny RGB PNG whose pixels encode `seed`.
fn png(path: &Path, seed: u8) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let img = image::RgbImage::from_fn(3, 2, |x, y| image::Rgb([seed, x as u8 * 40, y as u8 * 90]));
    img.save(path).unwrap();
}

/// An ImageNet-style folder: `counts` images per class in train and val.
fn write_folder(root: &Path, classes: &[&str], train: usize, val: usize) {
    for (c, class) in classes.iter().enumerate() {
        for (split, n) in [("train", train), ("val", val)] {
            for i in 0..n {
                png(
                    &root.join(split).join(class).join(format!("img_{i:03}.png")),
                    (c * 10 + i) as u8,
                );
            }
        }
    }
}

#[test]
fn folder_import_uses_the_folder_listing() {
    let dir = scratch("import_images_folder");
    let root = dir.join("imagenet");
    write_folder(&root, &["n01", "n02", "n03", "n04"], 5, 2);
    // Images outside train/ and val/ still take ids in the listing.
    png(&root.join("extra/aaa.png"), 1);
    png(&root.join("test/x.png"), 2);
    std::fs::write(root.join("train/n01/notes.txt"), "not an image").unwrap();
    let out = dir.join("out");
    run_ok(&mut import(
        &[
            "--folder",
            root.to_str().unwrap(),
            "--base-classes",
            "2",
            "--max-train-per-class",
            "3",
        ],
        &out,
        &dir.join("run"),
    ));
    assert!(!out.join("images").exists(), "folder mode copies no images");
    let table = Table::read(&out.join("labels.parquet"), "labels").unwrap();
    assert_eq!(
        meta(&table, "remind.image_root"),
        root.display().to_string()
    );
    assert_eq!(meta(&table, "remind.num_classes"), "4");
    let rows = rows(&table);
    assert_eq!(rows.len(), 4 * 3 + 4 * 2);
    let listing = list_images(&root, IdFrom::Sorted).unwrap();
    assert_eq!(listing.len(), 4 * 7 + 2);
    let listed: HashMap<&str, u64> = listing.iter().map(|i| (i.rel.as_str(), i.id)).collect();
    let order = read_order(&out);
    for row in &rows {
        assert_eq!(listed[row.source.as_str()], row.id, "{row:?}");
        let parts: Vec<&str> = row.source.split('/').collect();
        assert_eq!(parts[0], row.split);
        assert_eq!(parts[1], row.class_name);
        assert_eq!(order[row.label as usize], row.class_name);
    }
    assert!(rows.windows(2).all(|w| w[0].id < w[1].id));
    let base = read_id_column(&out.join("base_train.parquet"), "id").unwrap();
    assert_eq!(base.len(), 2 * 3);
    let rep = report(&out);
    assert_eq!(rep["source"], "folder");
    assert_eq!(rep["ignored_images"], 2);
    assert_eq!(rep["splits"]["train"]["available"], 20);

    // Bad folders: nothing written.
    let bad_out = dir.join("bad-out");
    let r = root.to_str().unwrap();
    expect_failure(
        &["--folder", r, "--class-names", "a,b"],
        &bad_out,
        &["class_names applies to IDX files only"],
    );
    let mismatch = dir.join("mismatch");
    write_folder(&mismatch, &["cat", "dog"], 2, 1);
    png(&mismatch.join("train/fish/a.png"), 3);
    png(&mismatch.join("train/eel/a.png"), 3);
    png(&mismatch.join("val/cow/a.png"), 3);
    expect_failure(
        &["--folder", mismatch.to_str().unwrap()],
        &bad_out,
        &["only in train/: ['eel', 'fish']", "only in val/: ['cow']"],
    );
    let no_val = dir.join("no-val");
    write_folder(&no_val, &["cat", "dog"], 2, 1);
    std::fs::remove_dir_all(no_val.join("val")).unwrap();
    expect_failure(
        &["--folder", no_val.to_str().unwrap()],
        &bad_out,
        &["no-val", "no val/ folder"],
    );
    let empty = dir.join("empty-class");
    write_folder(&empty, &["cat", "dog"], 2, 1);
    std::fs::create_dir_all(empty.join("train/eel")).unwrap();
    std::fs::create_dir_all(empty.join("val/eel")).unwrap();
    std::fs::write(empty.join("val/eel/readme.txt"), "x").unwrap();
    expect_failure(
        &["--folder", empty.to_str().unwrap()],
        &bad_out,
        &["no PNG or JPEG images", "train/eel", "val/eel"],
    );
    let loose = dir.join("loose");
    write_folder(&loose, &["cat", "dog"], 2, 1);
    png(&loose.join("train/stray.png"), 4);
    expect_failure(
        &["--folder", loose.to_str().unwrap()],
        &bad_out,
        &["train/stray.png is not inside a class folder"],
    );
}

#[test]
fn real_fashion_mnist() {
    let data = Path::new("/usr/share/datasets/fashion-mnist");
    if !data.join("train-images-idx3-ubyte.gz").exists() {
        eprintln!(
            "skipped: {} is not installed (Debian package dataset-fashion-mnist)",
            data.display()
        );
        return;
    }
    let dir = scratch("import_images_fashion");
    let names = [
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ];
    let config = dir.join("fashion.yaml");
    let quoted: Vec<String> = names.iter().map(|n| format!("\"{n}\"")).collect();
    std::fs::write(
        &config,
        format!(
            "import_images:\n  idx: {}\n  class_names: [{}]\n  base_classes: 2\n  \
             max_train_per_class: 20\n  max_val_per_class: 5\n",
            data.display(),
            quoted.join(", ")
        ),
    )
    .unwrap();
    let out = dir.join("out");
    run_ok(&mut import(
        &["--config", config.to_str().unwrap()],
        &out,
        &dir.join("run"),
    ));
    let table = Table::read(&out.join("labels.parquet"), "labels").unwrap();
    assert_eq!(meta(&table, "remind.num_classes"), "10");
    let rows = rows(&table);
    assert_eq!(rows.iter().filter(|r| r.split == "train").count(), 200);
    assert_eq!(rows.iter().filter(|r| r.split == "val").count(), 50);
    for name in names {
        assert_eq!(rows.iter().filter(|r| r.class_name == name).count(), 25);
    }
    let listing = list_images(&out.join("images"), IdFrom::Sorted).unwrap();
    assert_eq!(listing.len(), 250);
    for (row, item) in rows.iter().zip(&listing) {
        assert_eq!((row.id, row.source.as_str()), (item.id, item.rel.as_str()));
    }
    for item in listing.iter().step_by(25) {
        let img = image::open(&item.path).unwrap();
        assert_eq!(img.color(), image::ColorType::L8);
        assert_eq!((img.width(), img.height()), (28, 28));
    }
    assert!(rows
        .iter()
        .any(|r| r.source.starts_with("train/T-shirt_top/")));
    assert_eq!(
        read_id_column(&out.join("base_train.parquet"), "id")
            .unwrap()
            .len(),
        40
    );
    let rep = report(&out);
    assert_eq!(rep["splits"]["train"]["available"], 60000);
    assert_eq!(rep["splits"]["val"]["available"], 10000);
    assert_eq!(rep["image_size"]["train"], serde_json::json!([28, 28]));
}

//! Times REMIND's per-image update for image classification against the bare compute floor
//! in the same process: the floor is F's forward, backward and SGD step (libtorch's own
//! optimiser) on a prepared batch of r+1 decoded maps; REMIND's update is the real one
//! (sample 2r codes from a full buffer, decode, feature-map crops, mixup, the per-class
//! learning rate, the step, the insertion of the new item). The two alternate in blocks so
//! that machine noise hits both. Prints one JSON line and a table.

use std::process::ExitCode;
use std::time::Instant;

use anyhow::Result;
use clap::Parser;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use remind::buffer::{Eviction, ReplayBuffer};
use remind::models::{Arch, Cut, ResNet, ResNetConfig, Stem};
use remind::pq::ProductQuantizer;
use remind::stream::classify::augment::{
    draw_crop, resize_crops_batched, resize_crops_grouped, Crop,
};
use remind::stream::classify::{ClassifySettings, Updater};
use remind::stream::decode::Decoder;
use remind::stream::Replay;
use remind::train::optim::{OptimKind, Optimizer};
use remind_stages::{main_with, tune_allocator, Compute};
use tch::nn::{self, ModuleT, OptimizerConfig};
use tch::{Device, Kind, Tensor};

#[derive(Parser)]
#[command(
    name = env!("CARGO_BIN_NAME"),
    version = remind_stages::VERSION,
    about = "Time REMIND's classification update against the bare F step (same process)"
)]
struct Cli {
    #[command(flatten)]
    compute: Compute,
    /// Base channels of the ResNet-18 (64: the paper's; F then takes 512-channel maps).
    #[arg(long, default_value_t = 64)]
    width: i64,
    /// Feature-map side (7 for 224 px ImageNet inputs).
    #[arg(long, default_value_t = 7)]
    map: i64,
    /// Classes of the output layer (1000: ImageNet).
    #[arg(long, default_value_t = 1000)]
    classes: i64,
    /// PQ sub-spaces.
    #[arg(long, default_value_t = 32)]
    m: usize,
    /// r: replayed items per update.
    #[arg(long, default_value_t = 50)]
    replay: usize,
    /// Items in the buffer.
    #[arg(long, default_value_t = 20000)]
    items: usize,
    /// Untimed updates before each block.
    #[arg(long, default_value_t = 3)]
    warmup: usize,
    /// Timed updates per block (and blocks of each).
    #[arg(long, default_value_t = 10)]
    iters: usize,
    /// Blocks of each kind, alternated (so that drift hits both alike).
    #[arg(long, default_value_t = 4)]
    blocks: usize,
}

/// A fresh F on `device`, with its own variables (drawn from libtorch's generator).
fn fresh_f(device: Device, cfg: ResNetConfig, cut: Cut) -> Result<(nn::VarStore, ResNet)> {
    let vs = nn::VarStore::new(device);
    let f = ResNet::f(&vs.root(), cfg, cut)?;
    Ok((vs, f))
}

/// REMIND's optimiser over `vs`: SGD with momentum 0.9 and weight decay 1e-5.
fn remind_sgd(vs: &nn::VarStore) -> Optimizer {
    Optimizer::new(
        vs,
        OptimKind::Sgd {
            momentum: 0.9,
            weight_decay: 1e-5,
        },
    )
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() -> ExitCode {
    main_with("remind-bench-classify", || {
        let cli = Cli::parse();
        tune_allocator();
        cli.compute.apply_threads()?;
        run(&cli)
    })
}

fn run(cli: &Cli) -> Result<()> {
    let device = cli.compute.device.device()?;
    tch::manual_seed(0);
    let mut cfg = ResNetConfig::new(Arch::ResNet18, cli.width, Stem::ImageNet);
    cfg.num_classes = cli.classes;
    let cut: Cut = "layer4.0".parse()?;
    let c = cfg.channels_after(cut)?;
    let (h, w) = (cli.map, cli.map);
    let centroids = Tensor::randn(
        [cli.m as i64, 256, c / cli.m as i64],
        (Kind::Float, tch::Device::Cpu),
    )
    .relu();
    let pq = ProductQuantizer::from_centroids(centroids.to_device(device))?;
    let item_bytes = (h * w) as usize * cli.m;
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let mut buffer = ReplayBuffer::new(item_bytes, Some(cli.items), Eviction::Random)?;
    let mut codes = vec![0u8; item_bytes];
    for i in 0..cli.items {
        rng.fill(&mut codes[..]);
        let y = rng.random_range(0..cli.classes);
        buffer.insert(i as u64, y, &codes, &mut rng)?;
    }
    let s = ClassifySettings {
        replay: cli.replay,
        ..Default::default()
    };
    let updater = Updater {
        s: &s,
        decoder: Decoder {
            pq: &pq,
            code_shape: [h as usize, w as usize, cli.m],
            device,
            l2_normalize: false,
        },
    };
    // REMIND's F and optimiser.
    let (vs, f) = fresh_f(device, cfg, cut)?;
    let mut opt = remind_sgd(&vs);
    let mut counters = vec![0u64; cli.classes as usize];
    let mut next_id = cli.items as u64;
    let mut remind_step = |rng: &mut ChaCha8Rng| -> Result<()> {
        rng.fill(&mut codes[..]);
        let y = rng.random_range(0..cli.classes);
        let slots = buffer.sample(updater.replay_draws(), rng);
        let replay = Replay {
            buffer: &buffer,
            slots: &slots,
        };
        updater.update(&f, &mut opt, &codes, y, Some(replay), rng, &mut counters)?;
        buffer.insert(next_id, y, &codes, rng)?;
        next_id += 1;
        Ok(())
    };
    // The floor: the same F shape, libtorch's SGD, a prepared batch of r+1 maps.
    let (vs2, f2) = fresh_f(device, cfg, cut)?;
    let mut sgd = nn::Sgd {
        momentum: 0.9,
        wd: 1e-5,
        ..Default::default()
    }
    .build(&vs2, 0.1)?;
    let n = cli.replay as i64 + 1;
    let x = Tensor::randn([n, c, h, w], (Kind::Float, device)).relu();
    let y = Tensor::randint(cli.classes, [n], (Kind::Int64, device));
    let mut floor_step = || {
        let loss = f2.forward_t(&x, true).cross_entropy_for_logits(&y);
        sgd.backward_step(&loss);
        let _ = loss.double_value(&[]);
    };
    // The floor's batch through REMIND's own optimiser (written on tensors): separates the
    // optimiser's cost from the rest of the update.
    let (vs3, f3) = fresh_f(device, cfg, cut)?;
    let mut opt3 = remind_sgd(&vs3);
    let mut own_opt_step = || {
        let loss = f3.forward_t(&x, true).cross_entropy_for_logits(&y);
        opt3.backward_step(&loss, 0.1);
        let _ = loss.double_value(&[]);
    };
    for _ in 0..cli.warmup {
        floor_step();
        own_opt_step();
        remind_step(&mut rng)?;
    }
    let (mut floor, mut ours, mut own) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..cli.blocks {
        for _ in 0..cli.iters {
            let t = Instant::now();
            floor_step();
            floor.push(t.elapsed().as_secs_f64());
        }
        for _ in 0..cli.iters {
            let t = Instant::now();
            own_opt_step();
            own.push(t.elapsed().as_secs_f64());
        }
        for _ in 0..cli.iters {
            let t = Instant::now();
            remind_step(&mut rng)?;
            ours.push(t.elapsed().as_secs_f64());
        }
    }
    let (fm, om, wm) = (median(&mut floor), median(&mut ours), median(&mut own));
    // Pieces of REMIND's update on their own (median ms, device synchronised): decoding 2r
    // replayed items, and their crops resized per crop size or in one batch.
    let sync = || {
        if let tch::Device::Cuda(i) = device {
            tch::Cuda::synchronize(i as i64);
        }
    };
    let piece = |f: &mut dyn FnMut() -> Result<()>| -> Result<f64> {
        let mut t = Vec::new();
        for i in 0..cli.warmup + cli.iters {
            sync();
            let start = Instant::now();
            f()?;
            sync();
            if i >= cli.warmup {
                t.push(start.elapsed().as_secs_f64());
            }
        }
        Ok(1e3 * median(&mut t))
    };
    let slots = buffer.sample(2 * cli.replay, &mut rng);
    let mut gathered = Vec::new();
    let decode_ms = piece(&mut || {
        buffer.gather(&slots, &mut gathered);
        let _ = updater.decoder.decode(&gathered)?;
        Ok(())
    })?;
    let maps = updater.decoder.decode(&gathered)?;
    let crops: Vec<Crop> = (0..maps.size()[0])
        .map(|_| draw_crop(h, w, &mut rng))
        .collect();
    let grouped_ms = piece(&mut || resize_crops_grouped(&maps, &crops).map(|_| ()))?;
    let batched_ms = piece(&mut || resize_crops_batched(&maps, &crops).map(|_| ()))?;
    let json = serde_json::json!({
        "bench": "classification_update",
        "device": format!("{device:?}"),
        "threads": tch::get_num_threads(),
        "width": cli.width,
        "map": [h, w, c],
        "replay": cli.replay,
        "buffer_items": cli.items,
        "floor_ms_per_update": 1e3 * fm,
        "remind_ms_per_update": 1e3 * om,
        "floor_updates_per_s": 1.0 / fm,
        "remind_updates_per_s": 1.0 / om,
        "remind_over_floor": fm / om,
        "floor_with_own_optimizer_ms": 1e3 * wm,
        "decode_2r_ms": decode_ms,
        "crops_grouped_ms": grouped_ms,
        "crops_batched_ms": batched_ms,
    });
    println!("{json}");
    eprintln!(
        "| update ({}x{}x{}, r={}, {} threads) | updates/s |\n| --- | --- |\n| bare F step (libtorch SGD, batch {n}) | {:.2} |\n| same batch, REMIND's optimiser | {:.2} |\n| REMIND update (sample 2r, decode, crops, mixup, step, insert) | {:.2} |\n| ratio REMIND / floor | {:.3} |\n\npieces (ms): decode 2r {decode_ms:.3}, crops per size {grouped_ms:.3}, crops batched {batched_ms:.3}",
        h, w, c, cli.replay, tch::get_num_threads(), 1.0 / fm, 1.0 / wm, 1.0 / om, fm / om
    );
    Ok(())
}

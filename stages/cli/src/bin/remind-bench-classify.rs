//! Times REMIND's per-image update for image classification against the bare compute floor
//! in the same process: the floor is F's forward, backward and SGD step (libtorch's own
//! optimiser) on a prepared batch of r+1 decoded maps; REMIND's update is the real one
//! (sample 2r codes from a full buffer, decode, feature-map crops, mixup, the per-class
//! learning rate, the step, the insertion of the new item; its losses read in windows, as
//! `stream-train` reads them). The two alternate in blocks so that machine noise hits both;
//! each block is timed between two device synchronisations (a GPU runs the queued work
//! asynchronously, so one step's wall time means nothing there), and the median block is
//! reported. On CUDA the bare step is also timed without reading its loss every step
//! (`floor_queued_*`). REMIND's update is timed with both step arithmetics: the device's
//! default (`arithmetic`) and the other one (`remind_other_arithmetic_*`): per tensor (the
//! authors' two cross-entropies and a per-parameter SGD, the CPU's) or multi-tensor (one
//! gathered mixup loss and a multi-tensor SGD, a GPU's). Prints one JSON line and a table.

use std::process::ExitCode;
use std::time::Instant;

use anyhow::Result;
use clap::Parser;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use remind::buffer::{Eviction, ReplayBuffer};
use remind::models::{Arch, Cut, ResNet, ResNetConfig, Stem};
use remind::pq::ProductQuantizer;
use remind::run::device::upload;
use remind::run::precision::CpuBf16;
use remind::run::Precision;
use remind::stream::classify::augment::{
    draw_crop, resize_crops_batched, resize_crops_grouped, Crop,
};
use remind::stream::classify::loss::{batch_loss, MixupLoss};
use remind::stream::classify::{ClassifySettings, Updater};
use remind::stream::decode::Decoder;
use remind::stream::divergence::LossWatch;
use remind::stream::overlap::overlapped;
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
    /// Timed updates per block.
    #[arg(long, default_value_t = 8)]
    iters: usize,
    /// Blocks of each kind, alternated (so that drift hits both alike); the median block's
    /// time per update is reported.
    #[arg(long, default_value_t = 5)]
    blocks: usize,
    /// bf16: also time the bare F step and REMIND's update in bf16 mixed precision (where
    /// the CPU has bf16 instructions or on CUDA); fp32: fp32 only.
    #[arg(long, default_value = "bf16")]
    precision: Precision,
}

/// A fresh F on `device`, with its own variables (drawn from libtorch's generator).
fn fresh_f(device: Device, cfg: ResNetConfig, cut: Cut) -> Result<(nn::VarStore, ResNet)> {
    let vs = nn::VarStore::new(device);
    let f = ResNet::f(&vs.root(), cfg, cut)?;
    Ok((vs, f))
}

/// REMIND's optimiser over `vs`: SGD with momentum 0.9 and weight decay 1e-5, stepping
/// with multi-tensor operations or per tensor.
fn remind_sgd(vs: &nn::VarStore, multi_tensor: bool) -> Optimizer {
    Optimizer::new(
        vs,
        OptimKind::Sgd {
            momentum: 0.9,
            weight_decay: 1e-5,
        },
    )
    .multi_tensor(multi_tensor)
}

/// A step arithmetic's name in the JSON (see the module's documentation).
fn arithmetic_name(loss: MixupLoss) -> &'static str {
    match loss {
        MixupLoss::Gathered => "multi_tensor",
        MixupLoss::TwoCrossEntropies => "per_tensor",
    }
}

/// REMIND's real update with its own F, optimiser, counters and buffer: per step, a new
/// random item, 2r replayed items drawn, the update, the new item inserted.
struct RemindUpdate<'a> {
    updater: &'a Updater<'a>,
    _vs: nn::VarStore,
    f: ResNet,
    opt: Optimizer,
    counters: Vec<u64>,
    buffer: ReplayBuffer,
    codes: Vec<u8>,
    classes: i64,
    next_id: u64,
    watch: LossWatch,
}

impl<'a> RemindUpdate<'a> {
    fn new(
        updater: &'a Updater<'a>,
        device: Device,
        cfg: ResNetConfig,
        cut: Cut,
        buffer: ReplayBuffer,
        cli: &Cli,
    ) -> Result<Self> {
        let (vs, f) = fresh_f(device, cfg, cut)?;
        let opt = remind_sgd(&vs, updater.loss == MixupLoss::Gathered);
        Ok(Self {
            updater,
            _vs: vs,
            f,
            opt,
            counters: vec![0; cli.classes as usize],
            codes: vec![0; buffer.item_bytes()],
            buffer,
            classes: cli.classes,
            next_id: cli.items as u64,
            watch: LossWatch::default(),
        })
    }

    fn step(&mut self, rng: &mut ChaCha8Rng) -> Result<()> {
        rng.fill(&mut self.codes[..]);
        let y = rng.random_range(0..self.classes);
        let slots = self.buffer.sample(self.updater.replay_draws(), rng);
        let replay = Replay {
            buffer: &self.buffer,
            slots: &slots,
        };
        let (f, opt) = (&self.f, &mut self.opt);
        let step = self.updater.update(
            f,
            opt,
            &self.codes,
            y,
            Some(replay),
            rng,
            &mut self.counters,
        )?;
        let describe = |_: usize| "the benchmark's item".to_string();
        self.watch.push(step.loss, 0, &describe, "--lr")?;
        self.buffer.insert(self.next_id, y, &self.codes, rng)?;
        self.next_id += 1;
        Ok(())
    }

    /// `n` updates with their halves on two threads, as `stream-train` runs them on a GPU
    /// (`stream::overlap`): the same draws in the same order as `n` calls of `step`.
    fn steps_overlapped(&mut self, n: usize, rng: &mut ChaCha8Rng) -> Result<()> {
        let Self {
            updater,
            f,
            opt,
            counters,
            buffer,
            codes,
            classes,
            next_id,
            watch,
            ..
        } = self;
        let produce = |_| {
            rng.fill(&mut codes[..]);
            let y = rng.random_range(0..*classes);
            let slots = buffer.sample(updater.replay_draws(), rng);
            let replay = Replay {
                buffer,
                slots: &slots,
            };
            let batch = updater.prepare(codes, y, Some(replay), rng)?;
            buffer.insert(*next_id, y, codes, rng)?;
            *next_id += 1;
            Ok(batch)
        };
        let describe = |_: usize| "the benchmark's item".to_string();
        overlapped(n, 2, produce, |_, batch| {
            let step = updater.train(f, opt, batch, counters)?;
            watch.push(step.loss, 0, &describe, "--lr")
        })
    }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() -> ExitCode {
    main_with("remind-bench-classify", || {
        let cli = remind_stages::parse_args::<Cli>();
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
    // bf16 is timed beside fp32 where it runs natively (the CPU's bf16 instructions, or the
    // card); `--precision fp32` times fp32 only.
    let bf16 =
        cli.precision == Precision::Bf16 && Precision::Bf16.check(device, "--precision").is_ok();
    let s = ClassifySettings {
        replay: cli.replay,
        ..Default::default()
    };
    let s16 = ClassifySettings {
        precision: Precision::Bf16,
        ..s.clone()
    };
    let decoder = Decoder {
        pq: pq.decode_view(),
        code_shape: [h as usize, w as usize, cli.m],
        device,
        l2_normalize: false,
        channels_last: false,
    };
    let arithmetic = MixupLoss::for_device(device);
    let other = match arithmetic {
        MixupLoss::Gathered => MixupLoss::TwoCrossEntropies,
        MixupLoss::TwoCrossEntropies => MixupLoss::Gathered,
    };
    let updater = Updater {
        s: &s,
        decoder,
        loss: arithmetic,
    };
    let updater_other = Updater {
        s: &s,
        decoder,
        loss: other,
    };
    // bf16 decodes channels-last, as stream-train does.
    let decoder16 = Decoder {
        channels_last: true,
        ..decoder
    };
    let updater16 = Updater {
        s: &s16,
        decoder: decoder16,
        loss: arithmetic,
    };
    // REMIND's F and optimiser, one per precision and arithmetic, each with its own copy
    // of the buffer.
    let mut remind32 = RemindUpdate::new(&updater, device, cfg, cut, buffer.clone(), cli)?;
    let mut remind_other =
        RemindUpdate::new(&updater_other, device, cfg, cut, buffer.clone(), cli)?;
    let mut remind16 = RemindUpdate::new(&updater16, device, cfg, cut, buffer, cli)?;
    // The floor: the same F shape, libtorch's SGD, a prepared batch of r+1 maps; in bf16,
    // the same under autocast (what PyTorch's `torch.autocast` gives a training loop).
    let n = cli.replay as i64 + 1;
    let x = Tensor::randn([n, c, h, w], (Kind::Float, device)).relu();
    let y = Tensor::randint(cli.classes, [n], (Kind::Int64, device));
    // `read_loss`: read the loss after every step (a plain training loop's habit; on a GPU
    // it waits for the step).
    let floor_of = |precision: Precision, read_loss: bool| -> Result<_> {
        let (vs, f) = fresh_f(device, cfg, cut)?;
        let mut sgd = nn::Sgd {
            momentum: 0.9,
            wd: 1e-5,
            ..Default::default()
        }
        .build(&vs, 0.1)?;
        let (x, y) = (x.shallow_clone(), y.shallow_clone());
        Ok(move || -> Result<()> {
            let _vs = &vs;
            let loss = precision
                .forward(device, &x, |x| f.forward_t(x, true))
                .cross_entropy_for_logits(&y);
            sgd.backward_step(&loss);
            if read_loss {
                let _ = loss.double_value(&[]);
            }
            Ok(())
        })
    };
    let mut floor_step = floor_of(Precision::Fp32, true)?;
    let mut floor16_step = floor_of(Precision::Bf16, true)?;
    let queued = device.is_cuda();
    let mut floor_queued_step = floor_of(Precision::Fp32, false)?;
    // The floor's batch through REMIND's own optimiser (written on tensors): separates the
    // optimiser's cost from the rest of the update.
    let (vs3, f3) = fresh_f(device, cfg, cut)?;
    let mut opt3 = remind_sgd(&vs3, arithmetic == MixupLoss::Gathered);
    let mut own_opt_step = || -> Result<()> {
        let loss = f3.forward_t(&x, true).cross_entropy_for_logits(&y);
        opt3.backward_step(&loss, 0.1)?;
        let _ = loss.double_value(&[]);
        Ok(())
    };
    let sync = || {
        if let tch::Device::Cuda(i) = device {
            tch::Cuda::synchronize(i as i64);
        }
    };
    for _ in 0..cli.warmup {
        floor_step()?;
        if queued {
            floor_queued_step()?;
        }
        own_opt_step()?;
        remind32.step(&mut rng)?;
        remind_other.step(&mut rng)?;
        if bf16 {
            floor16_step()?;
            remind16.step(&mut rng)?;
        }
    }
    let (mut floor, mut ours, mut own) = (Vec::new(), Vec::new(), Vec::new());
    let (mut floor16, mut ours16, mut floor_queued) = (Vec::new(), Vec::new(), Vec::new());
    let (mut ours_whole, mut ours_other) = (Vec::new(), Vec::new());
    // Seconds per step of one block of `--iters` steps (`f` runs them all), between two
    // synchronisations.
    let block = |f: &mut dyn FnMut() -> Result<()>, into: &mut Vec<f64>| -> Result<()> {
        sync();
        let t = Instant::now();
        f()?;
        sync();
        into.push(t.elapsed().as_secs_f64() / cli.iters as f64);
        Ok(())
    };
    let time = |f: &mut dyn FnMut() -> Result<()>, into: &mut Vec<f64>| -> Result<()> {
        block(&mut || (0..cli.iters).try_for_each(|_| f()), into)
    };
    // REMIND's update as stream-train runs it: on a GPU its halves on two threads (the
    // whole update on one thread is timed beside it there), on the CPU whole.
    let iters = cli.iters;
    let remind_block = |r: &mut RemindUpdate, rng: &mut ChaCha8Rng| -> Result<()> {
        if queued {
            r.steps_overlapped(iters, rng)
        } else {
            (0..iters).try_for_each(|_| r.step(rng))
        }
    };
    for _ in 0..cli.blocks {
        time(&mut floor_step, &mut floor)?;
        if queued {
            time(&mut floor_queued_step, &mut floor_queued)?;
        }
        time(&mut own_opt_step, &mut own)?;
        block(&mut || remind_block(&mut remind32, &mut rng), &mut ours)?;
        block(
            &mut || remind_block(&mut remind_other, &mut rng),
            &mut ours_other,
        )?;
        if queued {
            time(&mut || remind32.step(&mut rng), &mut ours_whole)?;
        }
        if bf16 {
            time(&mut floor16_step, &mut floor16)?;
            block(&mut || remind_block(&mut remind16, &mut rng), &mut ours16)?;
        }
    }
    // Losses still queued (a GPU reads them in windows): none may have diverged.
    let describe = |_: usize| "the benchmark's item".to_string();
    remind32.watch.check(&describe, "--lr")?;
    remind_other.watch.check(&describe, "--lr")?;
    remind16.watch.check(&describe, "--lr")?;
    let buffer = remind32.buffer;
    let (fm, om, wm) = (median(&mut floor), median(&mut ours), median(&mut own));
    let other_m = median(&mut ours_other);
    // Pieces of REMIND's update on their own (median ms, device synchronised): decoding 2r
    // replayed items, and their crops resized per crop size or in one batch.
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
    // bf16's input of the decoded maps: NCHW decode then the channels-last copy, against
    // decoding channels-last (what stream-train does in bf16: two passes saved).
    let to_input = |d: &Decoder| -> Result<()> {
        let _ = Precision::Bf16.input(&d.decode(&gathered)?);
        Ok(())
    };
    let input_nchw_ms = piece(&mut || to_input(&updater.decoder))?;
    let input_nhwc_ms = piece(&mut || to_input(&updater16.decoder))?;
    let maps = updater.decoder.decode(&gathered)?;
    let crops: Vec<Crop> = (0..maps.size()[0])
        .map(|_| draw_crop(h, w, &mut rng))
        .collect();
    let grouped_ms = piece(&mut || resize_crops_grouped(&maps, &crops).map(|_| ()))?;
    let batched_ms = piece(&mut || resize_crops_batched(&maps, &crops).map(|_| ()))?;
    let maps16 = updater16.decoder.decode(&gathered)?;
    let grouped16_ms = piece(&mut || resize_crops_grouped(&maps16, &crops).map(|_| ()))?;
    // The rest of the update, piece by piece: drawing 2r slots and gathering their codes
    // (host only), mixing the 2r maps into r, uploading both label sets, and the step on
    // the floor's batch with REMIND's mixup loss and optimiser in the device's arithmetic
    // (the gathered loss's weights made beforehand, as the preparing thread makes them).
    let sample_gather_ms = piece(&mut || {
        let slots = buffer.sample(2 * cli.replay, &mut rng);
        buffer.gather(&slots, &mut gathered);
        Ok(())
    })?;
    let r = cli.replay as i64;
    let mixup_ms = piece(&mut || {
        let (a, b) = (maps.narrow(0, 0, r), maps.narrow(0, r, r));
        let _ = Tensor::cat(&[maps.narrow(0, 0, 1), a * 0.3 + b * 0.7], 0);
        Ok(())
    })?;
    let labels: Vec<i64> = (0..2 * n).map(|i| i % cli.classes).collect();
    let labels_upload_ms = piece(&mut || {
        let _ = upload(&Tensor::from_slice(&labels), device);
        Ok(())
    })?;
    let y2 = Tensor::cat(&[&y, &y.roll([1], [0])], 0);
    let mix_weights = arithmetic.weights(0.3, n as usize, device);
    let mixup_loss_step_ms = piece(&mut || {
        let logits = f3.forward_t(&x, true);
        let loss = batch_loss(&logits, &y2, 0.3, mix_weights.as_ref());
        opt3.backward_step(&loss, 0.1)?;
        Ok(())
    })?;
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
        "arithmetic": arithmetic_name(arithmetic),
        "other_arithmetic": arithmetic_name(other),
        "remind_other_arithmetic_ms_per_update": 1e3 * other_m,
        "remind_other_arithmetic_over_floor": fm / other_m,
        "floor_with_own_optimizer_ms": 1e3 * wm,
        "decode_2r_ms": decode_ms,
        "crops_grouped_ms": grouped_ms,
        "crops_batched_ms": batched_ms,
        "crops_grouped_channels_last_ms": grouped16_ms,
        "sample_gather_2r_ms": sample_gather_ms,
        "mixup_ms": mixup_ms,
        "labels_upload_ms": labels_upload_ms,
        "step_mixup_loss_own_optimizer_ms": mixup_loss_step_ms,
        "bf16_input_nchw_decode_ms": input_nchw_ms,
        "bf16_input_channels_last_decode_ms": input_nhwc_ms,
        "fp32_floor_per_s": 1.0 / fm,
        "cpu_bf16": CpuBf16::detect(),
    });
    let mut json = json;
    if queued {
        let q = median(&mut floor_queued);
        json["floor_queued_ms_per_update"] = (1e3 * q).into();
        json["remind_over_floor_queued"] = (q / om).into();
        let w = median(&mut ours_whole);
        json["remind_one_thread_ms_per_update"] = (1e3 * w).into();
        json["remind_one_thread_over_floor"] = (fm / w).into();
    }
    if bf16 {
        let (f16, o16) = (median(&mut floor16), median(&mut ours16));
        json["bf16_floor_per_s"] = (1.0 / f16).into();
        json["bf16_update_per_s"] = (1.0 / o16).into();
        json["bf16_floor_vs_fp32_floor"] = (fm / f16).into();
        json["bf16_update_vs_fp32_floor"] = (fm / o16).into();
    } else {
        json["bf16"] = format!(
            "not measured: {}",
            match cli.precision {
                Precision::Fp32 => "--precision fp32".to_string(),
                Precision::Bf16 => format!(
                    "{:#}",
                    Precision::Bf16.check(device, "--precision").unwrap_err()
                ),
            }
        )
        .into();
    }
    println!("{json}");
    eprintln!(
        "| update ({}x{}x{}, r={}, {} threads) | updates/s |\n| --- | --- |\n| bare F step (libtorch SGD, batch {n}) | {:.2} |\n| same batch, REMIND's optimiser | {:.2} |\n| REMIND update (sample 2r, decode, crops, mixup, step, insert), {} | {:.2} |\n| ratio REMIND / floor | {:.3} |\n| REMIND update, {} | {:.2} ({:.3}x the floor) |\n\npieces (ms): decode 2r {decode_ms:.3}, crops per size {grouped_ms:.3}, crops batched {batched_ms:.3}, crops per size on channels-last maps {grouped16_ms:.3}; bf16 input of 2r maps: NCHW decode + channels-last copy {input_nchw_ms:.3}, channels-last decode {input_nhwc_ms:.3}; sample + gather 2r {sample_gather_ms:.3}, mixup {mixup_ms:.3}, labels upload {labels_upload_ms:.3}, step with mixup's loss and REMIND's optimiser {mixup_loss_step_ms:.3}",
        h,
        w,
        c,
        cli.replay,
        tch::get_num_threads(),
        1.0 / fm,
        1.0 / wm,
        arithmetic_name(arithmetic),
        1.0 / om,
        fm / om,
        arithmetic_name(other),
        1.0 / other_m,
        fm / other_m
    );
    if let (Some(f16), Some(o16)) = (
        json["bf16_floor_per_s"].as_f64(),
        json["bf16_update_per_s"].as_f64(),
    ) {
        eprintln!(
            "bf16 (autocast, fp32 master weights): bare F step {f16:.2}/s ({:.2}x the fp32 floor), REMIND update {o16:.2}/s ({:.2}x the fp32 floor); {}",
            f16 * fm, o16 * fm, CpuBf16::detect()
        );
    }
    Ok(())
}

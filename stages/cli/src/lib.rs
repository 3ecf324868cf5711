//! What the stage binaries share: the common flags and the error-reporting entry point.
//! Every binary is a thin clap front over one library function of the `remind` crate.

pub mod launch;
pub mod sections;

/// Every binary's `--version`: the package version and the git revision it was built from.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (git ",
    env!("REMIND_GIT_REV"),
    ")"
);

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser};
use remind::models::{Arch, Cut, Stem};
use remind::run::{DeviceChoice, Precision, Shard};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Flags every stage takes.
#[derive(Debug, Args)]
pub struct Common {
    /// Pipeline config (pipelines/X.yaml); flags given here override its values.
    #[arg(long, env = "REMIND_CONFIG")]
    pub config: Option<PathBuf>,
    /// Run folder: where the manifest is kept (default: the config's run_dir, else artifacts/run).
    #[arg(long)]
    pub run_dir: Option<PathBuf>,
    /// Run even when the outputs are up to date (same inputs, config and version as
    /// recorded in the run manifest).
    #[arg(long)]
    pub force: bool,
}

/// Flags of stages that map over items.
#[derive(Debug, Args)]
pub struct Sharding {
    /// This job's slice of the items, K/N with 0-based K (default: from SLURM_ARRAY_TASK_ID
    /// and SLURM_ARRAY_TASK_COUNT when set, else the whole input).
    #[arg(long)]
    pub shard: Option<Shard>,
}

/// Flags of stages that compute with libtorch.
#[derive(Debug, Args)]
pub struct Compute {
    /// cpu, cuda or auto.
    #[arg(long, default_value = "auto")]
    pub device: DeviceChoice,
    /// Intra-op threads for libtorch (default: the CPUs this process may use: its affinity
    /// mask, cgroup quota and SLURM_CPUS_PER_TASK; more are capped to those).
    #[arg(long)]
    pub threads: Option<i32>,
}

/// The flags of a stage that computes with libtorch: [`Common`] then [`Compute`]. It
/// dereferences to [`Common`], so a `Cli` holding it as `common` reads like one holding
/// [`Common`] itself.
#[derive(Debug, Args)]
pub struct ComputeStage {
    #[command(flatten)]
    pub common: Common,
    #[command(flatten)]
    pub compute: Compute,
}

/// The flags of a stage that maps over items with libtorch: [`Common`], [`Sharding`] then
/// [`Compute`]; it dereferences to [`Common`] like [`ComputeStage`].
#[derive(Debug, Args)]
pub struct ShardedComputeStage {
    #[command(flatten)]
    pub common: Common,
    #[command(flatten)]
    pub sharding: Sharding,
    #[command(flatten)]
    pub compute: Compute,
}

macro_rules! deref_to_common {
    ($($group:ty),*) => {$(
        impl std::ops::Deref for $group {
            type Target = Common;
            fn deref(&self) -> &Common {
                &self.common
            }
        }
    )*};
}
deref_to_common!(ComputeStage, ShardedComputeStage);

/// What `--lr` is in a stage's [`Training`]: the rate of that stage's optimizer and
/// schedule, told by its help.
pub trait LearningRate {
    /// The help of `--lr`.
    const HELP: &'static str;
}

/// How a training stage trains, laid over its config section like the rest of its flags;
/// `L` says what its learning rate is.
#[derive(Args, Serialize)]
#[serde(bound = "")]
pub struct Training<L: LearningRate> {
    /// Training epochs.
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Images per step.
    #[arg(long)]
    pub batch: Option<usize>,
    #[arg(long, help = L::HELP)]
    pub lr: Option<f64>,
    /// Compute precision: fp32, or bf16 mixed precision (bf16 forward passes, fp32 master
    /// weights, optimiser and losses; refused on a CPU without bf16 instructions)
    /// [default: fp32].
    #[arg(long)]
    pub precision: Option<Precision>,
    #[arg(skip)]
    #[serde(skip)]
    rate: std::marker::PhantomData<L>,
}

/// The network shape, shared by every stage that builds a ResNet. Each flag, when given,
/// replaces the key of the same name in the stage's config section (see
/// [`remind::run::load_section_over`]; a flag not given serialises as null and is skipped).
#[derive(Debug, Args, Serialize)]
pub struct NetworkShape {
    /// resnet18, resnet34, resnet50, resnet101 or resnet152.
    #[arg(long)]
    pub arch: Option<Arch>,
    /// Base channels (64 in torchvision's ResNets).
    #[arg(long)]
    pub width: Option<i64>,
    /// imagenet (7x7 stride-2 conv and max-pool, 224 px inputs) or small (3x3 stride-1 conv,
    /// no pool, 28-32 px inputs).
    #[arg(long)]
    pub stem: Option<Stem>,
    /// Where G ends: a stage (layer3) or a block of a stage (layer4.0).
    #[arg(long)]
    pub cut: Option<Cut>,
    /// Input images are resized to this many pixels square.
    #[arg(long)]
    pub image_size: Option<usize>,
}

/// The defaults of a config section `T`, for [`parse_with_defaults`].
pub fn defaults_of<T: Serialize + Default>() -> serde_yaml::Mapping {
    match serde_yaml::to_value(T::default()) {
        Ok(serde_yaml::Value::Mapping(m)) => m,
        _ => serde_yaml::Mapping::new(),
    }
}

/// Parses the command line of `C`, first appending `[default: V]` to the help of every flag
/// named like a key of `defaults` (the config sections the binary reads): the defaults are
/// written once, in the sections' `Default` impls, and `--help` shows them. A config file
/// or flag still overrides them.
pub fn parse_with_defaults<C: Parser>(defaults: &[serde_yaml::Mapping]) -> C {
    let mut cmd = negative_values(C::command());
    // Per key, its default in each section that has it, in section order.
    let mut shown: Vec<(String, Vec<String>)> = Vec::new();
    for map in defaults {
        for (key, value) in map {
            let (Some(key), Some(v)) = (key.as_str(), scalar(value)) else {
                continue;
            };
            match shown.iter_mut().find(|(k, _)| k == key) {
                Some((_, vs)) if !vs.contains(&v) => vs.push(v),
                Some(_) => {}
                None => shown.push((key.to_string(), vec![v])),
            }
        }
    }
    for (id, values) in shown {
        // A key whose sections default differently (stream-train's order: qtype for VQA,
        // class_iid for classification) shows none: its help says which is which.
        let [value] = values.as_slice() else {
            continue;
        };
        if cmd.get_arguments().any(|a| a.get_id() == id.as_str()) {
            cmd = cmd.mut_arg(id, |a| {
                let help = a.get_help().map(|h| h.to_string()).unwrap_or_default();
                a.help(
                    format!("{help} [default: {value}]")
                        .trim_start()
                        .to_string(),
                )
            });
        }
    }
    let matches = cmd.get_matches();
    C::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
}

/// Parses the command line of `C` as [`parse_with_defaults`] does, for binaries without a
/// config section (benchmarks, tools).
pub fn parse_args<C: Parser>() -> C {
    parse_with_defaults(&[])
}

/// Lets every flag of `cmd` and its subcommands take a negative number (`--lr -0.1`): clap
/// would read `-0.1` as a flag and answer "unexpected argument '-0'", hiding the value's own
/// check (which names the key and the accepted range).
fn negative_values(cmd: clap::Command) -> clap::Command {
    cmd.allow_negative_numbers(true)
        .mut_subcommands(negative_values)
}

/// How `--help` shows a default: scalars as written in YAML; maps, lists and nulls not at all.
fn scalar(v: &serde_yaml::Value) -> Option<String> {
    match v {
        serde_yaml::Value::Bool(b) => Some(b.to_string()),
        serde_yaml::Value::Number(n) => Some(n.to_string()),
        serde_yaml::Value::String(s) if !s.is_empty() => Some(s.clone()),
        _ => None,
    }
}

impl Compute {
    /// Sets libtorch's intra-op threads from `--threads` (capped at the CPUs this process
    /// may use; [`launch::thread_count`]). Errors on `--threads 0`.
    pub fn apply_threads(&self) -> anyhow::Result<()> {
        if let Some(t) = self.threads {
            tch::set_num_threads(launch::thread_count(t)?);
        }
        Ok(())
    }

    /// What a computing stage does first: [`Compute::apply_threads`], then the `--device`.
    pub fn setup(&self) -> anyhow::Result<tch::Device> {
        self.apply_threads()?;
        self.device.device()
    }
}

/// Lays source flags over the config's sources. A source given on the command line replaces
/// the config's source as a whole: when any flag is given, every slot takes its flag's value
/// (none where not given); when none is, the config's stand. Returns whether they replaced it.
pub fn replace_sources<const N: usize>(
    slots: [(&mut Option<PathBuf>, &Option<PathBuf>); N],
) -> bool {
    let given = slots.iter().any(|(_, flag)| flag.is_some());
    if given {
        for (slot, flag) in slots {
            *slot = flag.clone();
        }
    }
    given
}

impl Common {
    /// The contract of stage `stage` (`fit-pq`) in this run folder, `--force` applied
    /// ([`remind::run::contract`]).
    pub fn contract(&self, stage: &str) -> anyhow::Result<remind::run::Contract> {
        Ok(remind::run::Contract::new(stage, &self.run_dir()?).force(self.force))
    }

    /// The run folder: flag, else the config's `run_dir`, else `artifacts/run`.
    pub fn run_dir(&self) -> anyhow::Result<PathBuf> {
        if let Some(d) = &self.run_dir {
            return Ok(d.clone());
        }
        let from_config: Option<String> = match &self.config {
            Some(path) => remind::run::config::top_level_string(path, "run_dir")?,
            None => None,
        };
        Ok(PathBuf::from(
            from_config.unwrap_or_else(|| "artifacts/run".into()),
        ))
    }
}

/// Keeps freed memory in the process instead of returning it to the OS at once (glibc:
/// mmap threshold 256 MiB, trim threshold 1 GiB, top pad 64 MiB). Training loops free and
/// reallocate the same megabyte-sized activation buffers every update; by default glibc
/// unmaps or trims them, and the kernel zero-fills fresh pages on the next update, which
/// costs about 7% of a small S-MAC update on CPU. Call once at start-up, before other
/// threads run; a no-op on other C libraries.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; called before other threads allocate.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
        libc::mallopt(libc::M_TOP_PAD, 64 << 20);
    }
}

pub use serde_yaml;

/// A stage binary whose config-backed flags lay over one config section; implemented by
/// [`stage!`] for a `Cli` holding `common: Common` and the flags in `section`.
pub trait Stage: Parser {
    /// The config section its flags lay over (`fit_pq`, ...).
    const SECTION: &'static str;
    /// The section's type: its `Default` holds every default, which `--help` shows.
    type Config: DeserializeOwned + Serialize + Default;
    fn common(&self) -> &Common;
    /// The flags laid over the section: a map of the given ones ([`given_flags`]).
    fn flags(&self) -> anyhow::Result<serde_yaml::Value>;
}

/// The flags of `section` that were given, as a map for
/// [`remind::run::load_section_over`]: a flag not given is an unset `Option` (null, which it
/// skips) or a switch left off (false, dropped here), so neither replaces the config's value.
pub fn given_flags<F: Serialize>(section: &F) -> anyhow::Result<serde_yaml::Value> {
    let mut value = serde_yaml::to_value(section)?;
    if let serde_yaml::Value::Mapping(map) = &mut value {
        map.retain(|_, v| !matches!(v, serde_yaml::Value::Bool(false)));
    }
    Ok(value)
}

/// Declares a stage binary: implements [`Stage`] for its `Cli` type and defines `main`, which
/// runs `body` (a closure taking the parsed `Cli` and the config section) through
/// [`run_stage`] under the binary's name: `stage!(Cli, "fit_pq", PqParams, |cli, p| { ... });`.
#[macro_export]
macro_rules! stage {
    ($cli:ty, $section:literal, $config:ty, $body:expr) => {
        impl $crate::Stage for $cli {
            const SECTION: &'static str = $section;
            type Config = $config;
            fn common(&self) -> &$crate::Common {
                &self.common
            }
            fn flags(&self) -> anyhow::Result<$crate::serde_yaml::Value> {
                $crate::given_flags(&self.section)
            }
        }

        fn main() -> std::process::ExitCode {
            $crate::run_stage::<$cli>(env!("CARGO_BIN_NAME"), $body)
        }
    };
}

/// The entry point of a [`Stage`]: parses the command line (`--help` showing the section's
/// defaults), lays the flags over the config section (the one place flags and config meet,
/// [`remind::run::load_section_over`]) and runs `body` with both; an error is printed after
/// `name` and the exit is non-zero.
pub fn run_stage<S: Stage>(
    name: &str,
    body: impl FnOnce(S, S::Config) -> anyhow::Result<()>,
) -> ExitCode {
    launch::openmp_env();
    let cli = parse_with_defaults::<S>(&[defaults_of::<S::Config>()]);
    main_with(name, || {
        let config = cli.common().config.clone();
        let cfg = remind::run::load_section_over(config.as_deref(), S::SECTION, &cli.flags()?)?;
        body(cli, cfg)
    })
}

/// Lets a closed pipe end the process quietly, as it does other Unix tools (`inspect | head`):
/// Rust ignores SIGPIPE, so `println!` to a closed pipe would panic instead.
fn quiet_on_closed_pipe() {
    // SAFETY: restores the default disposition of one signal, before other threads start.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// Runs a stage body, printing its error chain and exiting non-zero on failure.
/// First of all, sets OpenMP's environment ([`launch::openmp_env`]; a no-op when
/// [`run_stage`] did).
pub fn main_with(name: &str, body: impl FnOnce() -> anyhow::Result<()>) -> ExitCode {
    launch::openmp_env();
    quiet_on_closed_pipe();
    match body() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{name}: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

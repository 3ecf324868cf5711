//! The OpenMP environment of libtorch's thread pool, fixed before libtorch loads.
//!
//! libtorch's CPU kernels run on libgomp, which reads its settings once, when the library
//! loads (before `main`): how long a thread that waits at a barrier spins before it sleeps
//! (`GOMP_SPINCOUNT`, `OMP_WAIT_POLICY`) and how many threads to start (`OMP_NUM_THREADS`;
//! without it libtorch takes the machine's physical cores, not the CPUs the process may use).
//! libgomp's default spin (300,000 iterations, about a millisecond) is ruinous when another
//! OpenMP process shares the cores: a thread spins through the time slice its partner needs,
//! at every one of the thousands of barriers of an S-MAC update (issue #16: 0.19x of the idle
//! rate beside a second stream, where a fair share is 0.5x).
//!
//! So every binary starts with [`openmp_env`]: when the settings are missing it re-executes
//! itself once with them in the environment. What a user sets wins: `OMP_WAIT_POLICY` or
//! `GOMP_SPINCOUNT` keep libgomp's behaviour as set, `OMP_NUM_THREADS` the thread count;
//! `REMIND_SPIN_COUNT=N` picks another spin count, `REMIND_SPIN_COUNT=libgomp` keeps libgomp's
//! default. The chosen default and its cost idle and beside a second process are measured by
//! `make bench-contention` (BENCHMARKS.md).

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::process::Command;

/// Set in the re-executed process, so that it does not re-execute again.
pub const LAUNCHED: &str = "REMIND_OPENMP_SET";
/// Overrides [`DEFAULT_SPIN_COUNT`]: a number, or `libgomp` for libgomp's own default.
pub const SPIN_COUNT_ENV: &str = "REMIND_SPIN_COUNT";
/// Spin iterations before a waiting OpenMP thread sleeps (libgomp's default: 300,000).
/// Chosen from both rates of `make bench-contention` (BENCHMARKS.md, "Shared cores").
pub const DEFAULT_SPIN_COUNT: u64 = 1_000;

/// The environment variables [`openmp_env`] would add, given the current environment.
pub fn settings(get: impl Fn(&str) -> Option<OsString>) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    let user_policy = get("OMP_WAIT_POLICY").is_some() || get("GOMP_SPINCOUNT").is_some();
    let spin = match get(SPIN_COUNT_ENV).and_then(|v| v.into_string().ok()) {
        Some(v) if v.trim() == "libgomp" => None,
        Some(v) => match v.trim().parse::<u64>() {
            Ok(n) => Some(n),
            Err(_) => {
                eprintln!(
                    "warning: {SPIN_COUNT_ENV}='{v}' is neither a number nor 'libgomp'; using \
                     {DEFAULT_SPIN_COUNT}"
                );
                Some(DEFAULT_SPIN_COUNT)
            }
        },
        None => Some(DEFAULT_SPIN_COUNT),
    };
    if let (false, Some(n)) = (user_policy, spin) {
        out.push(("GOMP_SPINCOUNT", n.to_string()));
    }
    if get("OMP_NUM_THREADS").is_none() {
        let slurm = get("SLURM_CPUS_PER_TASK").and_then(|v| v.into_string().ok());
        out.push((
            "OMP_NUM_THREADS",
            available_cpus(slurm.as_deref()).to_string(),
        ));
    }
    out
}

/// CPUs this process may compute on: those of its affinity mask and cgroup quota
/// (`std::thread::available_parallelism`), and no more than Slurm's `--cpus-per-task`.
pub fn available_cpus(slurm_cpus_per_task: Option<&str>) -> usize {
    let mine = std::thread::available_parallelism().map_or(1, |n| n.get());
    match slurm_cpus_per_task.and_then(|v| v.trim().parse::<usize>().ok()) {
        Some(n) if n > 0 => mine.min(n),
        _ => mine,
    }
}

/// Re-executes the running binary once with the OpenMP settings it lacks (see the module
/// docs); returns at once when they are present or this is the re-executed process. If the
/// re-execution fails the binary goes on with libgomp's defaults, after a warning.
pub fn openmp_env() {
    if std::env::var_os(LAUNCHED).is_some() {
        return;
    }
    let set = settings(|k| std::env::var_os(k));
    if set.is_empty() {
        return;
    }
    let exe = match std::env::current_exe() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("warning: cannot find this binary to set OpenMP's environment: {e}");
            return;
        }
    };
    let mut args = std::env::args_os();
    let arg0 = args.next().unwrap_or_else(|| exe.clone().into_os_string());
    let err = Command::new(&exe)
        .arg0(arg0)
        .args(args)
        .envs(set)
        .env(LAUNCHED, "1")
        .exec();
    eprintln!(
        "warning: cannot re-execute {} with OpenMP's settings ({err}); running with libgomp's \
         defaults",
        exe.display()
    );
}

/// The intra-op thread count for `--threads t`: `t` when the process may use that many CPUs;
/// more threads than CPUs only make them wait for each other (and spin), so the count is
/// capped at [`available_cpus`], with a note. Errors on 0.
pub fn thread_count(requested: i32) -> anyhow::Result<i32> {
    anyhow::ensure!(
        requested > 0,
        "--threads {requested}: expected at least 1 thread"
    );
    let slurm = std::env::var("SLURM_CPUS_PER_TASK").ok();
    let cpus = i32::try_from(available_cpus(slurm.as_deref())).unwrap_or(i32::MAX);
    if requested > cpus {
        eprintln!(
            "note: --threads {requested} is more than the {cpus} CPU(s) this process may use; \
             using {cpus}"
        );
        return Ok(cpus);
    }
    Ok(requested)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<OsString> + 'a {
        move |k| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.into())
    }

    #[test]
    fn settings_fill_only_what_the_user_left_unset() {
        let cpus = available_cpus(None).to_string();
        assert_eq!(
            settings(env(&[])),
            [
                ("GOMP_SPINCOUNT", DEFAULT_SPIN_COUNT.to_string()),
                ("OMP_NUM_THREADS", cpus.clone())
            ]
        );
        assert_eq!(
            settings(env(&[
                ("OMP_WAIT_POLICY", "active"),
                ("OMP_NUM_THREADS", "3")
            ])),
            []
        );
        assert_eq!(
            settings(env(&[
                (SPIN_COUNT_ENV, "libgomp"),
                ("SLURM_CPUS_PER_TASK", "1")
            ])),
            [("OMP_NUM_THREADS", "1".to_string())]
        );
        assert_eq!(
            settings(env(&[(SPIN_COUNT_ENV, "50"), ("OMP_NUM_THREADS", "2")])),
            [("GOMP_SPINCOUNT", "50".to_string())]
        );
    }

    #[test]
    fn threads_are_capped_at_the_cpus() {
        assert!(thread_count(0).is_err());
        assert!(thread_count(-3).is_err());
        assert_eq!(thread_count(1).unwrap(), 1);
        let cpus = available_cpus(std::env::var("SLURM_CPUS_PER_TASK").ok().as_deref());
        assert_eq!(thread_count(100_000).unwrap() as usize, cpus);
    }
}

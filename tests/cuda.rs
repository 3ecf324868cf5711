//! The CUDA path from the command line: on a machine with an NVIDIA driver,
//! `remind-cuda-check` must pass; on one without, asking for CUDA fails clearly (naming the
//! missing driver, writing nothing) and `--device auto` runs on the CPU.

use std::path::Path;

use remind_e2e::{run_fail, run_ok, scratch, stage};

fn has_nvidia_driver() -> bool {
    ["/proc/driver/nvidia/version", "/dev/nvidiactl"]
        .iter()
        .any(|p| Path::new(p).exists())
}

#[test]
fn cuda_is_checked_where_present_and_refused_clearly_elsewhere() {
    if has_nvidia_driver() {
        run_ok(&mut stage("remind-cuda-check"));
        return;
    }
    let err = run_fail(&mut stage("remind-cuda-check"));
    assert!(err.contains("no NVIDIA driver"), "{err}");

    let dir = scratch("cuda_refusal");
    let features = dir.join("features");
    run_ok(
        stage("remind-synth-features")
            .arg("--out")
            .arg(&features)
            .arg("--run-dir")
            .arg(&dir)
            .args([
                "--items",
                "60",
                "--height",
                "4",
                "--width",
                "4",
                "--channels",
                "16",
            ]),
    );
    let fit = |device: &str, out: &Path| {
        let mut cmd = stage("remind-fit-pq");
        cmd.arg("--features")
            .arg(&features)
            .arg("--out")
            .arg(out)
            .arg("--run-dir")
            .arg(&dir)
            .args(["--num-subspaces", "4", "--device", device]);
        cmd
    };
    let refused = dir.join("cuda.arrow");
    let err = run_fail(&mut fit("cuda", &refused));
    assert!(err.contains("--device cuda: no NVIDIA driver"), "{err}");
    assert!(
        !refused.exists(),
        "a refused run left {}",
        refused.display()
    );
    let auto = dir.join("auto.arrow");
    run_ok(&mut fit("auto", &auto));
    assert!(auto.exists());
}

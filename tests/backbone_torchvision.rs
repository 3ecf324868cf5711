//! Parity with torchvision: the same weights and input through torchvision (Python) and
//! through `remind-backbone` (Rust) give the same feature maps and logits.
//!
//! Python builds randomly initialised torchvision networks (seeded, with randomised
//! BatchNorm statistics and affine parameters so that eval-mode BN matters), saves the
//! state_dict with `torch.save`, and `scripts/convert_weights.py` turns it into safetensors.
//! Rust loads those weights, runs the same input and writes its output; the test compares
//! them with a relative error max|a - b| / max|b| below 1e-4.

use std::path::{Path, PathBuf};

use remind::artifact::weights::read_weights;
use remind_e2e::{python, run_fail, run_ok, run_python, scratch, stage};
use tch::Tensor;

const TOL: f64 = 1e-4;

const MAKE_REFERENCE: &str = r#"
import sys, torch, torchvision
from safetensors.torch import save_file

arch, cut, out = sys.argv[1], sys.argv[2], sys.argv[3]
torch.manual_seed(1234)
model = getattr(torchvision.models, arch)(weights=None)
with torch.no_grad():
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            c = m.num_features
            m.running_mean.copy_(torch.randn(c) * 0.2)
            m.running_var.copy_(torch.rand(c) * 1.5 + 0.5)
            m.weight.copy_(torch.rand(c) * 0.8 + 0.6)
            m.bias.copy_(torch.randn(c) * 0.2)
            m.num_batches_tracked.fill_(11)
model.eval()
torch.save(model.state_dict(), f"{out}/{arch}.pth")

def g(m, x, cut):
    x = m.maxpool(m.relu(m.bn1(m.conv1(x))))
    for name in ["layer1", "layer2", "layer3", "layer4"]:
        layer = getattr(m, name)
        for i, block in enumerate(layer):
            x = block(x)
            if cut == f"{name}.{i}" or (cut == name and i == len(layer) - 1):
                return x
    raise SystemExit(f"bad cut {cut}")

def f(m, z, cut):
    names = [f"{n}.{i}" for n in ["layer1", "layer2", "layer3", "layer4"]
             for i in range(len(getattr(m, n)))]
    last = max(i for i, n in enumerate(names) if n == cut or n.startswith(cut + "."))
    for n in names[last + 1:]:
        layer, i = n.split(".")
        z = getattr(m, layer)[int(i)](z)
    return m.fc(torch.flatten(m.avgpool(z), 1))

x = torch.randn(2, 3, 224, 224)
with torch.no_grad():
    z = g(model, x, cut)
    logits = f(model, z, cut)
    full = model(x)
assert torch.allclose(logits, full, atol=1e-4 * full.abs().max().item())
save_file({"input": x.contiguous()}, f"{out}/x.safetensors")
save_file({"input": z.contiguous()}, f"{out}/z.safetensors")
save_file({"z": z.contiguous(), "logits": logits.contiguous()}, f"{out}/expected.safetensors")
print(list(z.shape))
"#;

fn tensor(path: &Path, name: &str) -> Tensor {
    let file = read_weights(path).unwrap_or_else(|e| panic!("{e:#}"));
    file.tensors
        .into_iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("{}: no tensor '{name}'", path.display()))
        .1
}

fn rel_err(ours: &Tensor, reference: &Tensor) -> f64 {
    assert_eq!(ours.size(), reference.size());
    let diff = (ours - reference).abs().max().double_value(&[]);
    diff / reference.abs().max().double_value(&[])
}

fn convert(pth: &Path) -> PathBuf {
    let out = pth.with_extension("safetensors");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/convert_weights.py");
    run_ok(python().arg(script).arg(pth).arg(&out));
    out
}

fn forward(arch: &str, weights: &Path, part: &[&str], input: &Path, output: &Path) -> Tensor {
    run_ok(
        stage("remind-backbone")
            .args(["forward", "--arch", arch, "--device", "cpu", "--weights"])
            .arg(weights)
            .args(part)
            .arg("--input")
            .arg(input)
            .arg("--output")
            .arg(output),
    );
    tensor(output, "output")
}

fn check(arch: &str, cut: &str, check_f: bool) {
    let dir = scratch(&format!("backbone_torchvision_{arch}"));
    let d = dir.to_string_lossy();
    let shape = run_python(MAKE_REFERENCE, &[arch, cut, &d]);
    eprintln!("{arch} {cut}: torchvision feature map {}", shape.trim());
    let weights = convert(&dir.join(format!("{arch}.pth")));
    let expected = dir.join("expected.safetensors");

    let z = forward(
        arch,
        &weights,
        &["--g-until", cut],
        &dir.join("x.safetensors"),
        &dir.join("z_rust.safetensors"),
    );
    let err = rel_err(&z, &tensor(&expected, "z"));
    eprintln!("{arch} G (.. {cut}): relative error {err:.2e}");
    assert!(err < TOL, "{arch} G until {cut}: relative error {err}");

    if check_f {
        let logits = forward(
            arch,
            &weights,
            &["--f-after", cut],
            &dir.join("z.safetensors"),
            &dir.join("logits_rust.safetensors"),
        );
        let err = rel_err(&logits, &tensor(&expected, "logits"));
        eprintln!("{arch} F (after {cut}): relative error {err:.2e}");
        assert!(err < TOL, "{arch} F after {cut}: relative error {err}");
    }

    // A pickled checkpoint is refused with the way to convert it.
    let err = run_fail(
        stage("remind-backbone")
            .args(["forward", "--arch", arch, "--weights"])
            .arg(dir.join(format!("{arch}.pth")))
            .arg("--input")
            .arg(dir.join("x.safetensors"))
            .arg("--output")
            .arg(dir.join("never.safetensors")),
    );
    assert!(err.contains("convert_weights.py"), "{err}");
}

#[test]
fn resnet101_layer3_matches_torchvision() {
    check("resnet101", "layer3", false);
}

#[test]
fn resnet18_layer4_0_and_f_match_torchvision() {
    check("resnet18", "layer4.0", true);
}

/// Weights initialised in Rust load into torchvision with strict name checking, and the
/// two implementations agree on them.
#[test]
fn rust_weights_load_strictly_into_torchvision() {
    let dir = scratch("backbone_rust_weights_in_torchvision");
    let weights = dir.join("r50.safetensors");
    run_ok(
        stage("remind-backbone")
            .args(["init", "--arch", "resnet50", "--seed", "5", "--out"])
            .arg(&weights),
    );
    let code = r#"
import sys, torch, torchvision
from safetensors.torch import load_file, save_file
w, out = sys.argv[1], sys.argv[2]
m = torchvision.models.resnet50(weights=None)
m.load_state_dict(load_file(w), strict=True)
m.eval()
torch.manual_seed(3)
x = torch.rand(1, 3, 96, 96)
with torch.no_grad():
    save_file({"input": x, "logits": m(x).contiguous()}, out)
"#;
    let io = dir.join("io.safetensors");
    run_python(code, &[&weights.to_string_lossy(), &io.to_string_lossy()]);
    let logits = forward(
        "resnet50",
        &weights,
        &[],
        &io,
        &dir.join("logits_rust.safetensors"),
    );
    let err = rel_err(&logits, &tensor(&io, "logits"));
    assert!(err < TOL, "resnet50 full: relative error {err}");
}

//! `--device cpu|cuda|auto`.

use std::ffi::CStr;
use std::sync::OnceLock;

use anyhow::{bail, Result};
use tch::Device;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceChoice {
    Cpu,
    Cuda,
    #[default]
    Auto,
}

impl DeviceChoice {
    /// The tch device; `cuda` fails clearly when no GPU is usable.
    pub fn device(self) -> Result<Device> {
        match self {
            DeviceChoice::Cpu => Ok(Device::Cpu),
            DeviceChoice::Cuda => match cuda_backend() {
                Ok(()) => Ok(Device::Cuda(0)),
                Err(why) => bail!("--device cuda: {why}"),
            },
            DeviceChoice::Auto if cuda_backend().is_ok() => Ok(Device::Cuda(0)),
            DeviceChoice::Auto => Ok(Device::Cpu),
        }
    }
}

/// Whether libtorch can use a CUDA device (loading its CUDA backend first, see
/// [`cuda_backend`]).
pub fn cuda_available() -> bool {
    cuda_backend().is_ok()
}

/// Loads libtorch's CUDA backend when an NVIDIA driver is present and says why CUDA is not
/// usable otherwise. The binaries do not link libtorch_cuda: nothing calls it directly (its
/// kernels and hooks register themselves when it loads), so the linker drops it, and
/// linking it anyway would cost every process on a CPU machine about 0.3 s and 400 MB of
/// mappings at start-up. libtorch caches its CUDA hooks at the first CUDA query, so every
/// query goes through here.
pub fn cuda_backend() -> std::result::Result<(), String> {
    static STATE: OnceLock<std::result::Result<(), String>> = OnceLock::new();
    STATE
        .get_or_init(|| {
            let driver = ["/proc/driver/nvidia/version", "/dev/nvidiactl"];
            if !driver.iter().any(|p| std::path::Path::new(p).exists()) {
                return Err("no NVIDIA driver on this machine (no /proc/driver/nvidia)".into());
            }
            // Found through the binaries' rpath (libtorch's folder) or LD_LIBRARY_PATH.
            // SAFETY: dlopen with a NUL-terminated name; the handle is never closed, so the
            // library stays loaded for the life of the process.
            let handle = unsafe {
                libc::dlopen(
                    c"libtorch_cuda.so".as_ptr(),
                    libc::RTLD_NOW | libc::RTLD_GLOBAL,
                )
            };
            if handle.is_null() {
                // SAFETY: dlerror returns NULL or a NUL-terminated message owned by libc.
                let msg = unsafe {
                    let e = libc::dlerror();
                    if e.is_null() {
                        "unknown error".to_string()
                    } else {
                        CStr::from_ptr(e).to_string_lossy().into_owned()
                    }
                };
                return Err(format!(
                    "libtorch's CUDA backend could not be loaded (a CPU-only libtorch?): {msg}"
                ));
            }
            if tch::Cuda::is_available() {
                Ok(())
            } else {
                Err("libtorch's CUDA backend is loaded but sees no usable CUDA device".into())
            }
        })
        .clone()
}

named_enum!(DeviceChoice, "device", { Cpu => "cpu", Cuda => "cuda", Auto => "auto" });

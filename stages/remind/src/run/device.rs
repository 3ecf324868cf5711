//! `--device cpu|cuda|auto`.

use std::ffi::CStr;
use std::sync::OnceLock;

use anyhow::{bail, Result};
use tch::{Device, Tensor};

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

/// `t` (a CPU tensor) on `device`. To a GPU it travels from pinned memory without waiting:
/// a copy from ordinary (pageable) memory makes libtorch wait for every kernel already
/// queued on the stream, so each small upload inside an update (codes, crop taps, labels)
/// stopped the host until the GPU caught up, and the host's work could never overlap the
/// GPU's. Pinned blocks come from libtorch's caching host allocator, which keeps a block
/// until the copies queued from it have run. Values are the same either way; on the CPU
/// this is `to_device`.
pub fn upload(t: &Tensor, device: Device) -> Tensor {
    if let (Device::Cuda(index), Device::Cpu) = (device, t.device()) {
        // SAFETY: `t.as_ptr()` is the at::Tensor* tch owns, valid for the call; the shim
        // catches every C++ exception and returns a new at::Tensor* (ownership passes to
        // the returned Tensor, which frees it) or NULL.
        let out = unsafe { remind_upload_pinned(t.as_ptr(), index as i32) };
        if !out.is_null() {
            // SAFETY: a fresh, owned at::Tensor* from the shim.
            return unsafe { Tensor::from_ptr(out) };
        }
    }
    t.to_device(device)
}

extern "C" {
    /// csrc/upload.cpp.
    fn remind_upload_pinned(t: *const torch_sys::C_tensor, index: i32) -> *mut torch_sys::C_tensor;
}

named_enum!(DeviceChoice, "device", { Cpu => "cpu", Cuda => "cuda", Auto => "auto" });

//! `--device cpu|cuda|auto`.

use std::str::FromStr;

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
            DeviceChoice::Cuda if tch::Cuda::is_available() => Ok(Device::Cuda(0)),
            DeviceChoice::Cuda => bail!("--device cuda: no CUDA device is available to libtorch"),
            DeviceChoice::Auto => Ok(Device::cuda_if_available()),
        }
    }
}

impl FromStr for DeviceChoice {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "cpu" => Ok(Self::Cpu),
            "cuda" => Ok(Self::Cuda),
            "auto" => Ok(Self::Auto),
            other => bail!("unknown device '{other}' (expected cpu, cuda or auto)"),
        }
    }
}

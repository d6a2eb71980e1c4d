//! Where the network runs: CUDA when available, else CPU, overridable by the user.

use serde::{Deserialize, Serialize};
use tch::Device;

use crate::PriorError;

/// The user's choice of device. The same code path runs on every device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceChoice {
    /// The first CUDA device if libtorch sees one, else the CPU.
    #[default]
    Auto,
    /// The CPU.
    Cpu,
    /// CUDA device `n`.
    Cuda(usize),
}

impl DeviceChoice {
    /// Resolve to a tch device. Asking for a CUDA device that does not exist is an error, not a
    /// silent fall-back.
    pub fn resolve(self) -> Result<Device, PriorError> {
        match self {
            DeviceChoice::Auto => Ok(Device::cuda_if_available()),
            DeviceChoice::Cpu => Ok(Device::Cpu),
            DeviceChoice::Cuda(n) => {
                let count = tch::Cuda::device_count();
                if (n as i64) < count {
                    Ok(Device::Cuda(n))
                } else {
                    Err(PriorError::InvalidParameter {
                        name: "device",
                        reason: format!("cuda:{n} requested but libtorch sees {count} CUDA device(s)"),
                    })
                }
            }
        }
    }
}

impl std::str::FromStr for DeviceChoice {
    type Err = PriorError;
    /// `auto`, `cpu`, `cuda` (device 0) or `cuda:N`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || PriorError::InvalidParameter { name: "device", reason: format!("{s:?} is not auto, cpu, cuda or cuda:N") };
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(Self::Auto),
            "cpu" => Ok(Self::Cpu),
            "cuda" => Ok(Self::Cuda(0)),
            other => match other.strip_prefix("cuda:") {
                Some(n) => n.parse().map(Self::Cuda).map_err(|_| bad()),
                None => Err(bad()),
            },
        }
    }
}

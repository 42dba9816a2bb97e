//! Where a model's weights come from: the seeded initialisation, a GPT-2 safetensors
//! checkpoint, or a Hugging Face model directory.

use super::directory::ModelDir;
use super::weights::{init_tensor, tensor_specs, Checkpoint, TensorSpec};
use crate::config::ModelConfig;
use crate::error::Result;

/// The files a model's weights are read from: a single safetensors checkpoint in the
/// GPT-2 layout, or a Hugging Face model directory.
pub enum WeightFiles {
    Checkpoint(Checkpoint),
    Directory(Box<ModelDir>),
}

/// Where the values of each tensor come from.
pub enum WeightSource {
    Seeded(u64),
    Checkpoint(Checkpoint),
    Directory(Box<ModelDir>),
}

impl WeightSource {
    /// Values of tensor `index` (its place in [`tensor_specs`]).
    pub fn values(&self, spec: &TensorSpec, index: usize) -> Result<Vec<f32>> {
        match self {
            WeightSource::Seeded(seed) => init_tensor(spec, index, *seed),
            WeightSource::Checkpoint(c) => c.load(spec),
            WeightSource::Directory(d) => d.load(spec),
        }
    }
}

/// All weights on the host, by name (tests and the CPU reference forward only: the
/// model itself keeps no host copy).
pub fn host_weights(
    cfg: &ModelConfig,
    source: &WeightSource,
) -> Result<std::collections::HashMap<String, Vec<f32>>> {
    tensor_specs(cfg)
        .iter()
        .enumerate()
        .map(|(i, s)| Ok((s.name.clone(), source.values(s, i)?)))
        .collect()
}

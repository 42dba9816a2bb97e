//! How the engine is run: the server's flags that reach the engine thread.

use std::path::PathBuf;
use std::time::Duration;

/// How the engine is run (the server's flags).
#[derive(Clone, Debug)]
pub struct EngineOptions {
    /// Requests that may wait; more are refused at once.
    pub queue_capacity: usize,
    /// Device memory a model may need (`None`: what the adapter reports).
    pub max_model_bytes: Option<u64>,
    /// Where client configs may name checkpoints and tokenizers (`None`: nowhere).
    pub models_dir: Option<PathBuf>,
    /// Deadline of a forward or a generation, from the moment it is queued.
    pub request_timeout: Duration,
    /// Deadline of building a model.
    pub load_timeout: Duration,
    /// Most generations admitted at once, all of which share each decode step.
    pub max_batch: usize,
    /// Device bytes of the paged KV cache (`None`: a share of the memory budget, see
    /// [`super::kv_pool_pages`]).
    pub kv_pool_bytes: Option<u64>,
    /// Keep the KV pages of full prompt pages for later prompts that start with the
    /// same tokens (a system prompt, a conversation's earlier turns), which are then
    /// prefilled from the first page not kept.
    pub prefix_cache: bool,
    /// Prompt tokens prefilled per engine step, between decode steps (one long
    /// prompt in chunks of this, or several short ones); `None`: [`PREFILL_CHUNK_GPU`]
    /// with the GPU-shaped kernels, [`PREFILL_CHUNK_CPU`] on a software adapter.
    pub prefill_chunk: Option<usize>,
    /// Time every dispatch of one model traversal (decode step or prefill) in this
    /// many with device timestamps (`gpu::profile`) and add the kernels' device time to
    /// the scheduler's figures (`/metrics`); 0: never. Adapters without timestamps
    /// inside passes are not profiled.
    pub profile_every: u64,
    /// The model id clients see and name (`/v1/models`, `model` in requests); `None`:
    /// the model directory's name, the checkpoint's file stem, or `wgformer`.
    pub served_model_name: Option<String>,
}

/// The prefill chunk on a software adapter: a prefill step there is compute-bound,
/// and 256 tokens keep the running streams' pauses short.
pub const PREFILL_CHUNK_CPU: usize = 256;

/// The prefill chunk with the GPU-shaped kernels: a GPU's matmuls are latency-bound at
/// small T (on an H200 a T = 16 forward took 8.8 ms, T = 128 13.2 ms), so a larger
/// chunk takes more prompts arriving together in one traversal.
pub const PREFILL_CHUNK_GPU: usize = 1024;

impl EngineOptions {
    /// The prompt tokens one prefill step takes for a model with (or without) the
    /// GPU-shaped kernels.
    pub fn prefill_chunk_for(&self, hardware_kernels: bool) -> usize {
        let auto = if hardware_kernels {
            PREFILL_CHUNK_GPU
        } else {
            PREFILL_CHUNK_CPU
        };
        self.prefill_chunk.unwrap_or(auto).max(1)
    }
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            queue_capacity: 64,
            max_model_bytes: None,
            models_dir: None,
            request_timeout: Duration::from_secs(120),
            load_timeout: Duration::from_secs(600),
            max_batch: 16,
            kv_pool_bytes: None,
            prefix_cache: true,
            prefill_chunk: None,
            profile_every: 0,
            served_model_name: None,
        }
    }
}

//! # wgformer
//!
//! A GPT-2-shaped transformer that runs on any GPU through wgpu with hand-written
//! WGSL compute shaders, served over HTTP with continuous batching. On machines
//! without a GPU the same shaders run on a software Vulkan adapter (Mesa lavapipe).
//!
//! ## Shape vocabulary
//!
//! | name | meaning |
//! |---|---|
//! | B | rows of a decode step, one per generation (a forward has one) |
//! | T | tokens in the sequence (≤ `context_size`) |
//! | C | width of the residual stream (`n_embed`) |
//! | NH | attention heads (`n_head`) |
//! | HS | head size, C / NH |
//! | H | MLP hidden width, `ffn_hidden_multiplier` · C |
//! | V | vocabulary (`vocab_size`) |
//! | E | experts per MoE layer (`moe_num_experts`) |
//! | K | experts chosen per token (`moe_top_k`) |
//!
//! Data flows one way: request → engine thread → kernels recorded into one command
//! encoder → one submit → read back the few numbers the response needs.
//!
//! Layers, each importing only from those below it (`tests/it/layers.rs` checks):
//! [`server`] > [`engine`] > [`model`] > [`kernels`] > [`reference`](mod@reference) > [`gpu`] >
//! [`config`], [`error`], [`sparse`], [`files`], [`tokenizer`], [`stats`]; [`chat`],
//! [`json`], [`reasoning`], [`tool_calls`] (read replies).

pub mod chat;
pub mod config;
pub mod engine;
pub mod error;
pub mod files;
pub mod gpu;
pub mod json;
pub mod kernels;
pub mod model;
pub mod reasoning;
pub mod reference;
pub mod server;
pub mod sparse;
pub mod stats;
pub mod tokenizer;
pub mod tool_calls;

pub use config::ModelConfig;
pub use error::{Error, Result};

//! The integration tests, one binary (matklad's layout): wgpu, naga, tokenizers, axum
//! and reqwest are linked once, and the kernel and model tests share one adapter and
//! one compiled kernel table (`common::gpu`). A module per area:
//!
//! | module | what it tests |
//! |---|---|
//! | `kernels`, `moe`, `shaders` | every kernel against its CPU reference; WGSL validation |
//! | `fusions` | a decode step's fused dispatches against the kernels they replace; its dispatch count |
//! | `model`, `generate`, `hf_fixture`, `tokenizer` | the model on the device, KV-cache decoding, a `transformers` checkpoint |
//! | `families`, `encoders` | Hugging Face directories of each family against `transformers`' numbers |
//! | `pipeline` | decode steps in flight: chained to the one before, read back later |
//! | `batching` | the engine: continuous batching, the paged KV pool, steps in flight |
//! | `server`, `generation_api`, `openai`, `hardening`, `fuzz` | the HTTP service on loopback |
//! | `explorer`, `lifecycle` | the page in Chromium; the binary's start and stop |
//! | `layers` | the house rules of `src/`: no import up the layers, no import circle |
//!
//! Filter by module as usual: `cargo test --release --test it kernels::`.

mod common;

mod batching;
mod chat;
mod encoders;
mod explorer;
mod families;
mod fusions;
mod fuzz;
mod generate;
mod generation_api;
mod hardening;
mod hf_fixture;
mod kernels;
mod layers;
#[cfg(unix)]
mod lifecycle;
mod messages;
mod model;
mod moe;
mod openai;
mod partials;
mod pipeline;
mod responses;
mod schema;
mod server;
mod shaders;
mod shutdown;
mod tokenizer;

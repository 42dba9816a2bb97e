//! One error type for the whole engine, grouped by category. It carries no HTTP
//! knowledge: the server maps each category to a status code in one place.

use thiserror::Error;

/// Every failure the engine can report.
#[derive(Debug, Error)]
pub enum Error {
    /// The model configuration is invalid (names the key and the rule).
    #[error("invalid config: {0}")]
    Config(String),

    /// A request field is invalid (names the field and the rule).
    #[error("{0}")]
    InvalidInput(String),

    /// More tokens than the model's context.
    #[error("input length {len} exceeds the model's maximum length {max}")]
    SequenceTooLong { len: usize, max: usize },

    /// No model has been built yet.
    #[error("no model is loaded: call /api/v1/initialize first")]
    ModelNotInitialized,

    /// No adapter matched the requested device.
    #[error("no adapter available: {0}")]
    NoAdapter(String),

    /// wgpu reported a validation or internal error.
    #[error("GPU error in {context}: {message}")]
    Gpu { context: String, message: String },

    /// The device ran out of memory.
    #[error("GPU out of memory in {0}")]
    OutOfMemory(String),

    /// The device was lost (driver reset, removal); the model must be rebuilt.
    #[error("GPU device lost: {0}")]
    DeviceLost(String),

    /// A checkpoint could not be read or does not match the config.
    #[error("checkpoint error: {0}")]
    Checkpoint(String),

    /// The tokenizer could not be loaded or failed on the input.
    #[error("tokenizer error: {0}")]
    Tokenizer(String),

    /// The engine's queue is full or it has stopped.
    #[error("engine unavailable: {0}")]
    Unavailable(String),

    /// The service is draining for shutdown: it takes no new work, and at the
    /// shutdown deadline ends the work still in hand with this error.
    #[error("the service is shutting down: {0}")]
    ShuttingDown(String),

    /// Work on the engine passed its deadline.
    #[error("deadline exceeded: {0}")]
    Timeout(String),

    /// File system and other I/O.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

impl Error {
    /// The same error for another party (a failed batch step fails each of its
    /// generations); I/O errors keep their kind and text.
    pub fn duplicate(&self) -> Error {
        match self {
            Error::Config(s) => Error::Config(s.clone()),
            Error::InvalidInput(s) => Error::InvalidInput(s.clone()),
            Error::SequenceTooLong { len, max } => Error::SequenceTooLong {
                len: *len,
                max: *max,
            },
            Error::ModelNotInitialized => Error::ModelNotInitialized,
            Error::NoAdapter(s) => Error::NoAdapter(s.clone()),
            Error::Gpu { context, message } => Error::Gpu {
                context: context.clone(),
                message: message.clone(),
            },
            Error::OutOfMemory(s) => Error::OutOfMemory(s.clone()),
            Error::DeviceLost(s) => Error::DeviceLost(s.clone()),
            Error::Checkpoint(s) => Error::Checkpoint(s.clone()),
            Error::Tokenizer(s) => Error::Tokenizer(s.clone()),
            Error::Unavailable(s) => Error::Unavailable(s.clone()),
            Error::ShuttingDown(s) => Error::ShuttingDown(s.clone()),
            Error::Timeout(s) => Error::Timeout(s.clone()),
            Error::Io(e) => Error::Io(std::io::Error::new(e.kind(), e.to_string())),
        }
    }

    /// Stable upper-case name of the category, used as `error_code` by the server.
    pub fn code(&self) -> &'static str {
        match self {
            Error::Config(_) | Error::Checkpoint(_) | Error::NoAdapter(_) => "CONFIG_ERROR",
            Error::InvalidInput(_) | Error::Tokenizer(_) => "INVALID_INPUT",
            Error::SequenceTooLong { .. } => "SEQUENCE_TOO_LONG",
            Error::ModelNotInitialized => "MODEL_NOT_INITIALIZED",
            Error::Unavailable(_) => "SERVICE_UNAVAILABLE",
            Error::ShuttingDown(_) => "SHUTTING_DOWN",
            Error::Timeout(_) => "TIMEOUT",
            Error::Gpu { .. } | Error::OutOfMemory(_) | Error::DeviceLost(_) | Error::Io(_) => {
                "INFERENCE_ERROR"
            }
        }
    }
}

/// Result alias used across the crate.
pub type Result<T> = std::result::Result<T, Error>;

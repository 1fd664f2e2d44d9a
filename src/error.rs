//! The crate's error type. Every variant names what it is about (the kernel, the tensor, the adapter), so a
//! user reading one line knows where to look.

use std::fmt;

/// Everything that can go wrong in the library. `main.rs` wraps it in `anyhow` for the CLI.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No adapter matched the requested backend and adapter filter.
    #[error("no GPU adapter found{filter}; adapters seen: {seen}")]
    NoAdapter {
        /// A description of the filter that was applied (empty when none).
        filter: String,
        /// The adapters that exist, `name (backend, type)`, or `none`.
        seen: String,
    },

    /// An unknown backend name was given to `--backend` or `DDIM_BACKEND`.
    #[error("unknown backend `{0}`: expected one of vulkan, metal, dx12, gl")]
    UnknownBackend(String),

    /// The adapter refused to create a device with the requested features and limits.
    #[error("could not open a device on adapter `{adapter}`: {message}")]
    RequestDevice {
        /// The adapter's name.
        adapter: String,
        /// wgpu's message.
        message: String,
    },

    /// A wgpu validation error, out-of-memory or internal error, caught by an error scope.
    #[error("GPU error in {what}: {message}")]
    Gpu {
        /// The kernel, tensor or operation that was being recorded or run.
        what: String,
        /// wgpu's message, first line.
        message: String,
    },

    /// The device was lost (driver reset, GPU removed, timeout).
    #[error("GPU device lost while running {what}: {message}")]
    DeviceLost {
        /// What was running.
        what: String,
        /// The reason the driver gave.
        message: String,
    },

    /// Reading a buffer back from the GPU failed.
    #[error("could not read back tensor `{tensor}`: {message}")]
    Readback {
        /// The tensor's label.
        tensor: String,
        /// wgpu's message.
        message: String,
    },

    /// An operation was given tensors whose shapes do not fit together.
    #[error("{op}: {message}")]
    Shape {
        /// The operation (kernel) that checked the shapes.
        op: &'static str,
        /// What does not fit, with the shapes.
        message: String,
    },

    /// A tensor is larger than the device can bind in one storage binding.
    #[error(
        "{op}: tensor `{tensor}` needs {bytes} bytes, more than this device's storage binding limit of {limit} bytes"
    )]
    TooLarge {
        /// The operation.
        op: &'static str,
        /// The tensor's label.
        tensor: String,
        /// Its size in bytes.
        bytes: u64,
        /// `max_storage_buffer_binding_size` of the device.
        limit: u64,
    },

    /// Reading or writing a file failed.
    #[error("{path}: {message}")]
    Io {
        /// The file.
        path: String,
        /// The system's message.
        message: String,
    },

    /// A PyTorch checkpoint that cannot be read, or that this engine refuses to read (a hostile pickle).
    #[error("checkpoint: {0}")]
    Checkpoint(String),

    /// A weight is missing, misshaped, of an unsupported dtype, or not needed by the model.
    #[error("weight `{tensor}`: {message}")]
    Weights {
        /// The tensor's name.
        tensor: String,
        /// What is wrong.
        message: String,
    },

    /// A graph node whose inputs do not fit together (shape inference failed).
    #[error("graph node `{node}`: {message}")]
    Graph {
        /// The node's name.
        node: String,
        /// What does not fit.
        message: String,
    },

    /// A model configuration this engine cannot run, or that contradicts itself; names the key.
    #[error("unsupported or invalid model config: {0}")]
    Config(String),

    /// A parameter is outside its valid range (a negative eta, zero groups, ...).
    #[error("{op}: invalid parameter: {message}")]
    InvalidParameter {
        /// The operation or component.
        op: &'static str,
        /// What is wrong.
        message: String,
    },
}

impl Error {
    /// Shorthand for a shape error.
    pub(crate) fn shape(op: &'static str, message: impl fmt::Display) -> Self {
        Error::Shape {
            op,
            message: message.to_string(),
        }
    }

    /// Shorthand for an invalid-parameter error.
    pub(crate) fn param(op: &'static str, message: impl fmt::Display) -> Self {
        Error::InvalidParameter {
            op,
            message: message.to_string(),
        }
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

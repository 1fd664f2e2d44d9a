//! The crate's error type. Every variant names what it is about (the kernel, the tensor, the adapter), so a
//! user reading one line knows where to look.

use std::fmt;

/// Everything that can go wrong in the library. `main.rs` wraps it in `anyhow` for the CLI.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No adapter matched the requested backend and adapter filter.
    #[error("no GPU adapter found{}; adapters seen: {}", line(filter), line(seen))]
    NoAdapter {
        /// A description of the filter that was applied (empty when none).
        filter: String,
        /// The adapters that exist, `name (backend, type)`, or `none`.
        seen: String,
    },

    /// An unknown backend name was given to `--backend` or `DDIM_BACKEND`.
    #[error("unknown backend `{}`: expected one of vulkan, metal, dx12, gl", line(.0))]
    UnknownBackend(String),

    /// The adapter refused to create a device with the requested features and limits.
    #[error("could not open a device on adapter `{}`: {}", line(adapter), line(message))]
    RequestDevice {
        /// The adapter's name.
        adapter: String,
        /// wgpu's message.
        message: String,
    },

    /// A wgpu validation error, out-of-memory or internal error, caught by an error scope.
    #[error("GPU error in {}: {}", line(what), line(message))]
    Gpu {
        /// The kernel, tensor or operation that was being recorded or run.
        what: String,
        /// wgpu's message, first line.
        message: String,
    },

    /// The device was lost (driver reset, GPU removed, timeout).
    #[error("GPU device lost while running {}: {}", line(what), line(message))]
    DeviceLost {
        /// What was running.
        what: String,
        /// The reason the driver gave.
        message: String,
    },

    /// Reading a buffer back from the GPU failed.
    #[error("could not read back tensor `{}`: {}", line(tensor), line(message))]
    Readback {
        /// The tensor's label.
        tensor: String,
        /// wgpu's message.
        message: String,
    },

    /// An operation was given tensors whose shapes do not fit together.
    #[error("{op}: {}", line(message))]
    Shape {
        /// The operation (kernel) that checked the shapes.
        op: &'static str,
        /// What does not fit, with the shapes.
        message: String,
    },

    /// A tensor is larger than the device can bind in one storage binding.
    #[error(
        "{op}: tensor `{}` needs {bytes} bytes, more than this device's storage binding limit of {limit} bytes",
        line(tensor)
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

    /// A kernel binds more buffers of a kind than the device allows in one shader stage.
    #[error(
        "kernel `{kernel}` binds {count} buffers, more than this device's {what} of {limit} (a GLES adapter may \
         allow as few as 4 storage buffers)"
    )]
    TooManyBindings {
        /// The kernel.
        kernel: &'static str,
        /// The buffers of that kind it binds.
        count: usize,
        /// The device's limit.
        limit: u64,
        /// Which limit (`max_storage_buffers_per_shader_stage` or `max_uniform_buffers_per_shader_stage`).
        what: &'static str,
    },

    /// One image alone needs an activation larger than the device can bind, so no batch split helps.
    #[error(
        "one image needs {bytes} bytes for the output of node `{}`, more than this device's storage binding limit \
         of {limit} bytes (every kernel binds a whole activation, and the batch is already 1); activations grow \
         with the square of the image side, and the largest side this model fits on this device is {largest} \
         (it is {side})",
        line(node)
    )]
    ImageTooLarge {
        /// The node whose output is the largest activation.
        node: String,
        /// That activation's size for one image.
        bytes: u64,
        /// `max_storage_buffer_binding_size` of the device.
        limit: u64,
        /// The model's image side.
        side: usize,
        /// The largest image side (a multiple of the UNet's total downsampling) whose activations would fit;
        /// 0 when none does.
        largest: usize,
    },

    /// An array whose size a file or a flag sets would exceed the host memory budget
    /// ([`crate::limits::MAX_ARRAY_BYTES`]).
    #[error(
        "{} of shape {dims:?} would take {bytes} bytes, more than the {limit} bytes one array may take (use \
         fewer images or frames, or split the run with --shard)",
        line(what)
    )]
    TooLargeForHost {
        /// The array.
        what: String,
        /// Its shape.
        dims: Vec<usize>,
        /// Its size in bytes (saturating).
        bytes: u128,
        /// The budget.
        limit: u64,
    },

    /// An image turned NaN or infinite during a run of the sampler (its finiteness watch saw it). `image`
    /// counts within the run's batch; the pipeline makes it the image's global index.
    #[error(
        "image {image} turned non-finite (NaN or infinity) at step {step} of {steps} (t = {t}): the model or the \
         settings overflow f32 there"
    )]
    NonFinite {
        /// The image.
        image: usize,
        /// The step, from 1.
        step: usize,
        /// Its timestep.
        t: usize,
        /// The run's number of steps.
        steps: usize,
    },

    /// Reading or writing a file failed.
    #[error("{}: {}", line(path), line(message))]
    Io {
        /// The file.
        path: String,
        /// The system's message.
        message: String,
    },

    /// A PyTorch checkpoint that cannot be read, or that this engine refuses to read (a hostile pickle).
    #[error("checkpoint: {}", line(.0))]
    Checkpoint(String),

    /// A weight is missing, misshaped, of an unsupported dtype, or not needed by the model.
    #[error("weight `{}`: {}", line(tensor), line(message))]
    Weights {
        /// The tensor's name.
        tensor: String,
        /// What is wrong.
        message: String,
    },

    /// A graph node whose inputs do not fit together (shape inference failed).
    #[error("graph node `{}`: {}", line(node), line(message))]
    Graph {
        /// The node's name.
        node: String,
        /// What does not fit.
        message: String,
    },

    /// A model configuration this engine cannot run, or that contradicts itself; names the key.
    #[error("unsupported or invalid model config: {}", line(.0))]
    Config(String),

    /// A parameter is outside its valid range (a negative eta, zero groups, ...).
    #[error("{op}: invalid parameter: {}", line(message))]
    InvalidParameter {
        /// The operation or component.
        op: &'static str,
        /// What is wrong.
        message: String,
    },
}

/// The longest a single field of an error message may be before it is cut: names and messages from input
/// files are the input's, and a hostile file may hold megabytes in a tensor name.
const MAX_FIELD_CHARS: usize = 400;

/// A field of an error message as one printable line: control characters (newlines, NUL, terminal escapes,
/// which input files may put in names and strings) are written as escapes, and a field longer than
/// `MAX_FIELD_CHARS` is cut. Every variant's message goes through this, so an error is always one line.
fn line(field: &str) -> String {
    match field.char_indices().nth(MAX_FIELD_CHARS) {
        Some((at, _)) => {
            format!("{}... ({} more bytes)", printable(&field[..at]), field.len() - at)
        }
        None => printable(field),
    }
}

/// `text` as one printable line: control characters (newlines, NUL, terminal escapes) written as escapes
/// (`\n`, `\u{1b}`). The one escaping function: every field of an [`Error`] goes through it, and the CLI
/// passes each whole message through it again before printing, so that text from any source (a path in a
/// context, a value echoed by the argument parser) reaches the terminal as one line of plain characters.
pub fn printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

impl Error {
    /// Shorthand for a shape error.
    pub(crate) fn shape(op: &'static str, message: impl fmt::Display) -> Self {
        Error::Shape { op, message: message.to_string() }
    }

    /// Shorthand for an invalid-parameter error.
    pub(crate) fn param(op: &'static str, message: impl fmt::Display) -> Self {
        Error::InvalidParameter { op, message: message.to_string() }
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_message_is_one_printable_line() {
        let e =
            Error::Weights { tensor: "conv\n\u{1b}[31mred\0".into(), message: "x".repeat(1000) };
        let s = e.to_string();
        assert!(!s.chars().any(char::is_control), "{s:?}");
        assert!(s.starts_with(r"weight `conv\n\u{1b}[31mred\u{0}`: xxx"), "{s}");
        assert!(s.ends_with("... (600 more bytes)"), "{s}");
    }
}

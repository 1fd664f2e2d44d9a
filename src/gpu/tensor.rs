//! Tensors: f32 storage buffers with an NCHW (or any row-major) shape and a label that errors can name.

use wgpu::util::DeviceExt;

use super::Gpu;
use crate::error::{Error, Result};

/// A row-major f32 tensor on the GPU. Usable as a storage binding, a copy source and a copy destination.
pub struct Tensor {
    buffer: wgpu::Buffer,
    shape: Vec<usize>,
    label: String,
}

impl Tensor {
    /// The buffer.
    pub fn buffer(&self) -> &wgpu::Buffer {
        &self.buffer
    }

    /// The shape, outermost dimension first.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The label errors use.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The number of elements.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// True when the tensor holds no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The size in bytes of the data (the buffer may be padded to 4 bytes more when empty).
    pub fn bytes(&self) -> u64 {
        (self.len() * 4) as u64
    }
}

fn usage() -> wgpu::BufferUsages {
    wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST
}

impl Gpu {
    /// Uploads `data` as a tensor of `shape`. The element count must match the shape.
    pub fn upload(&self, label: &str, shape: &[usize], data: &[f32]) -> Result<Tensor> {
        let n: usize = shape.iter().product();
        if n != data.len() {
            return Err(Error::shape(
                "upload",
                format!(
                    "tensor `{label}`: shape {shape:?} holds {n} elements but {} were given",
                    data.len()
                ),
            ));
        }
        // wgpu refuses zero-sized storage bindings; keep one element of padding for empty tensors.
        let padded;
        let contents: &[f32] = if data.is_empty() {
            padded = [0.0f32];
            &padded
        } else {
            data
        };
        let buffer = self.scoped(&format!("upload of `{label}`"), || {
            self.device()
                .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                    label: Some(label),
                    contents: bytemuck::cast_slice(contents),
                    usage: usage(),
                })
        })?;
        Ok(Tensor {
            buffer,
            shape: shape.to_vec(),
            label: label.to_string(),
        })
    }

    /// A zero-filled tensor of `shape`.
    pub fn zeros(&self, label: &str, shape: &[usize]) -> Result<Tensor> {
        let n: usize = shape.iter().product();
        let bytes = (n.max(1) * 4) as u64;
        let buffer = self.scoped(&format!("allocation of `{label}` ({bytes} bytes)"), || {
            self.device().create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size: bytes,
                usage: usage(),
                mapped_at_creation: false,
            })
        })?;
        Ok(Tensor {
            buffer,
            shape: shape.to_vec(),
            label: label.to_string(),
        })
    }

    /// Reads a tensor back to the CPU. Waits for all submitted work.
    pub fn download(&self, tensor: &Tensor) -> Result<Vec<f32>> {
        let bytes = self.download_bytes(tensor.buffer(), tensor.bytes(), tensor.label())?;
        Ok(bytemuck::pod_collect_to_vec(&bytes))
    }

    /// Reads the first `size` bytes of any copy-source buffer back to the CPU.
    pub fn download_bytes(&self, buffer: &wgpu::Buffer, size: u64, label: &str) -> Result<Vec<u8>> {
        if size == 0 {
            return Ok(Vec::new());
        }
        let what = format!("readback of `{label}`");
        let staging = self.scoped(&what, || {
            let staging = self.device().create_buffer(&wgpu::BufferDescriptor {
                label: Some("readback staging"),
                size,
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            });
            let mut encoder = self
                .device()
                .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some(&what) });
            encoder.copy_buffer_to_buffer(buffer, 0, &staging, 0, size);
            self.queue().submit([encoder.finish()]);
            staging
        })?;
        let (tx, rx) = std::sync::mpsc::channel();
        staging.map_async(wgpu::MapMode::Read, .., move |r| {
            // The receiver lives until after the poll below; a failed send only means we stopped waiting.
            let _ = tx.send(r);
        });
        self.wait(&what, None)?;
        let mapped = rx.recv().map_err(|_| Error::Readback {
            tensor: label.to_string(),
            message: "the map callback never ran".into(),
        })?;
        mapped.map_err(|e| Error::Readback {
            tensor: label.to_string(),
            message: e.to_string(),
        })?;
        let data = staging
            .get_mapped_range(..)
            .map_err(|e| Error::Readback {
                tensor: label.to_string(),
                message: e.to_string(),
            })?
            .to_vec();
        staging.unmap();
        Ok(data)
    }
}

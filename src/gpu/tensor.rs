//! Tensors: storage buffers of f32 or f16 values with an NCHW (or any row-major) shape and a label that errors
//! can name. The host always sees f32: uploads round to the tensor's element type, downloads widen from it.

use std::borrow::Cow;

use wgpu::util::DeviceExt;

use super::Gpu;
use super::lock;
use crate::error::{Error, Result};

/// The element type of a tensor's storage.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum DType {
    /// 32-bit floats (and the u32 words of the few kernels that store bits).
    #[default]
    F32,
    /// 16-bit floats (`shader-f16`): activations and weights on a device opened with
    /// [`Precision::F16`](super::Precision::F16).
    F16,
}

impl DType {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            DType::F32 => 4,
            DType::F16 => 2,
        }
    }

    /// The WGSL scalar type.
    pub fn wgsl(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F16 => "f16",
        }
    }

    /// Bytes of `n` elements as a storage binding holds them: rounded up to whole 4-byte words, which WebGPU
    /// requires of a binding's size.
    pub fn bytes(self, n: usize) -> u64 {
        ((n * self.size()).div_ceil(4) * 4) as u64
    }
}

/// A row-major f32 or f16 tensor on the GPU. Usable as a storage binding, a uniform binding (64 KiB windows of it), a
/// copy source and a copy destination.
///
/// Several tensors may share one buffer ([`Tensor::view`], [`Tensor::view_at`]): the memory planner places
/// tensors whose lifetimes do not overlap in the same bytes. A tensor binds only its own `bytes()` bytes, from
/// its offset.
#[derive(Clone)]
pub struct Tensor {
    buffer: wgpu::Buffer,
    offset: u64,
    shape: Vec<usize>,
    label: String,
    dtype: DType,
}

impl Tensor {
    /// The element type of its storage.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// The buffer.
    pub fn buffer(&self) -> &wgpu::Buffer {
        &self.buffer
    }

    /// Where the tensor's data starts in its buffer, in bytes.
    pub fn offset(&self) -> u64 {
        self.offset
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

    /// The size in bytes of the data, in whole 4-byte words (the buffer may be larger: padding for empty
    /// tensors, or a shared buffer).
    pub fn bytes(&self) -> u64 {
        self.dtype.bytes(self.len())
    }

    /// The binding of this tensor's data: `bytes()` bytes (at least 4) from its offset.
    pub fn binding(&self) -> wgpu::BindingResource<'_> {
        wgpu::BindingResource::Buffer(wgpu::BufferBinding {
            buffer: &self.buffer,
            offset: self.offset,
            size: wgpu::BufferSize::new(self.bytes().max(4)),
        })
    }

    /// Another tensor over the same data (same buffer and offset), with its own shape and label. Fails if the
    /// buffer is too small for `shape`.
    pub fn view(&self, label: &str, shape: &[usize]) -> Result<Tensor> {
        self.view_at(label, shape, self.offset)
    }

    /// Another tensor in the same buffer, `offset` bytes from its start (a multiple of the device's
    /// `min_storage_buffer_offset_alignment`, which the caller keeps; 256 always is). Fails if the buffer is too
    /// small for `shape` there.
    pub fn view_at(&self, label: &str, shape: &[usize], offset: u64) -> Result<Tensor> {
        self.view_as(label, shape, offset, self.dtype)
    }

    /// [`Tensor::view_at`] with elements of `dtype` (an arena's bytes hold activations of the device's
    /// precision).
    pub fn view_as(
        &self,
        label: &str,
        shape: &[usize],
        offset: u64,
        dtype: DType,
    ) -> Result<Tensor> {
        let bytes = dtype.bytes(shape.iter().product::<usize>());
        if offset + bytes.max(4) > self.buffer.size() {
            return Err(Error::shape(
                "view",
                format!(
                    "`{label}` {shape:?} needs {bytes} bytes from byte {offset}; the buffer of `{}` holds {}",
                    self.label,
                    self.buffer.size()
                ),
            ));
        }
        Ok(Tensor {
            buffer: self.buffer.clone(),
            offset,
            shape: shape.to_vec(),
            label: label.to_string(),
            dtype,
        })
    }

    /// Overwrites the tensor's data from the CPU (queued; ordered before the next submit), rounded to the
    /// tensor's element type.
    pub fn write(&self, gpu: &Gpu, data: &[f32]) -> Result<()> {
        if data.len() != self.len() {
            return Err(Error::shape(
                "write",
                format!(
                    "tensor `{}` {:?} holds {} elements but {} were given",
                    self.label,
                    self.shape,
                    self.len(),
                    data.len()
                ),
            ));
        }
        if !data.is_empty() {
            let bytes = encode(&self.label, data, self.dtype)?;
            gpu.queue().write_buffer(&self.buffer, self.offset, &bytes);
        }
        Ok(())
    }
}

/// `data` for tensor `label` as the bytes of a binding of `dtype` elements (f16 rounded to nearest even, padded
/// to whole words). A finite value beyond f16's range is refused, naming the tensor: it would become infinite.
fn encode<'a>(label: &str, data: &'a [f32], dtype: DType) -> Result<Cow<'a, [u8]>> {
    match dtype {
        DType::F32 => Ok(Cow::Borrowed(bytemuck::cast_slice(data))),
        DType::F16 => {
            let max = f32::from(half::f16::MAX);
            if let Some((i, v)) =
                data.iter().enumerate().find(|(_, v)| v.is_finite() && v.abs() > max)
            {
                return Err(Error::shape(
                    "f16 tensor",
                    format!(
                        "`{label}` element {i} is {v}, beyond f16's range (65504): use --precision f32"
                    ),
                ));
            }
            let mut bytes: Vec<u8> =
                data.iter().flat_map(|&v| half::f16::from_f32(v).to_le_bytes()).collect();
            bytes.resize(dtype.bytes(data.len()) as usize, 0);
            Ok(Cow::Owned(bytes))
        }
    }
}

/// The first `n` values of a binding of `dtype` elements, widened to f32.
fn decode(bytes: &[u8], n: usize, dtype: DType) -> Vec<f32> {
    match dtype {
        DType::F32 => bytemuck::pod_collect_to_vec(&bytes[..n * 4]),
        DType::F16 => bytes[..n * 2]
            .chunks_exact(2)
            .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
    }
}

/// Every tensor's buffer: a storage binding, a uniform binding (kernels that read an operand through 64 KiB
/// uniform windows, `ops::conv2d::KERNEL_1X1`), a copy source and destination.
fn usage() -> wgpu::BufferUsages {
    wgpu::BufferUsages::STORAGE
        | wgpu::BufferUsages::UNIFORM
        | wgpu::BufferUsages::COPY_SRC
        | wgpu::BufferUsages::COPY_DST
}

impl Gpu {
    /// Uploads `data` as an f32 tensor of `shape`. The element count must match the shape.
    pub fn upload(&self, label: &str, shape: &[usize], data: &[f32]) -> Result<Tensor> {
        self.upload_as(label, shape, data, DType::F32)
    }

    /// Uploads `data` as a tensor of `shape` with elements of `dtype` (f16 rounded to nearest even).
    pub fn upload_as(
        &self,
        label: &str,
        shape: &[usize],
        data: &[f32],
        dtype: DType,
    ) -> Result<Tensor> {
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
        let bytes = encode(label, contents, dtype)?;
        let buffer = self.scoped(&format!("upload of `{label}`"), || {
            self.device().create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some(label),
                contents: &bytes,
                usage: usage(),
            })
        })?;
        Ok(Tensor { buffer, offset: 0, shape: shape.to_vec(), label: label.to_string(), dtype })
    }

    /// A zero-filled storage buffer for a tensor of `shape` (at least one element) of `dtype`, or the error
    /// naming it.
    fn tensor_buffer(&self, label: &str, shape: &[usize], dtype: DType) -> Result<wgpu::Buffer> {
        let bytes = dtype.bytes(shape.iter().product::<usize>().max(1));
        self.scoped(&format!("allocation of `{label}` ({bytes} bytes)"), || {
            self.device().create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size: bytes,
                usage: usage(),
                mapped_at_creation: false,
            })
        })
    }

    /// A zero-filled f32 tensor of `shape`.
    pub fn zeros(&self, label: &str, shape: &[usize]) -> Result<Tensor> {
        self.zeros_as(label, shape, DType::F32)
    }

    /// A zero-filled tensor of `shape` with elements of `dtype`.
    pub fn zeros_as(&self, label: &str, shape: &[usize], dtype: DType) -> Result<Tensor> {
        let buffer = self.tensor_buffer(label, shape, dtype)?;
        Ok(Tensor { buffer, offset: 0, shape: shape.to_vec(), label: label.to_string(), dtype })
    }

    /// A working tensor of `shape` in the device's scratch buffer `name`, shared by every dispatch that asks for
    /// `name`: its contents belong to whichever dispatch ran last, so a dispatch may only use it for values it
    /// writes and reads itself (the dispatches of one pass, and of successive submissions, run one after
    /// another). The buffer grows to the largest request; a dispatch keeps the buffer it was given alive
    /// through its bind groups, so a smaller one outlives the growth as long as dispatches use it.
    pub fn scratch(&self, name: &'static str, shape: &[usize]) -> Result<Tensor> {
        let bytes = (shape.iter().product::<usize>().max(1) * 4) as u64;
        let mut cache = lock(&self.scratch);
        let buffer = match cache.get(name) {
            Some(b) if b.size() >= bytes => b.clone(),
            _ => {
                let b = self.tensor_buffer(name, shape, DType::F32)?;
                cache.insert(name, b.clone());
                b
            }
        };
        let dtype = DType::F32;
        Ok(Tensor { buffer, offset: 0, shape: shape.to_vec(), label: name.to_string(), dtype })
    }

    /// Bytes of the scratch buffers the device holds now (`Gpu::scratch`).
    pub fn scratch_bytes(&self) -> u64 {
        let cache = lock(&self.scratch);
        cache.values().map(|b| b.size()).sum()
    }

    /// Reads a tensor back to the CPU as f32. Waits for all submitted work.
    pub async fn download(&self, tensor: &Tensor) -> Result<Vec<f32>> {
        let bytes = self
            .download_range(tensor.buffer(), tensor.offset(), tensor.bytes(), tensor.label())
            .await?;
        Ok(decode(&bytes, tensor.len(), tensor.dtype()))
    }

    /// Reads the first `size` bytes of any copy-source buffer back to the CPU.
    pub async fn download_bytes(
        &self,
        buffer: &wgpu::Buffer,
        size: u64,
        label: &str,
    ) -> Result<Vec<u8>> {
        self.download_range(buffer, 0, size, label).await
    }

    /// Reads `size` bytes from `offset` (both multiples of 4) of any copy-source buffer back to the CPU.
    pub async fn download_range(
        &self,
        buffer: &wgpu::Buffer,
        offset: u64,
        size: u64,
        label: &str,
    ) -> Result<Vec<u8>> {
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
            encoder.copy_buffer_to_buffer(buffer, offset, &staging, 0, size);
            self.queue().submit([encoder.finish()]);
            staging
        })?;
        let (tx, rx) = futures_channel::oneshot::channel();
        staging.map_async(wgpu::MapMode::Read, .., move |r| {
            // The receiver is awaited below; a failed send only means nobody waits any more.
            let _ = tx.send(r);
        });
        self.wait(&what).await?;
        let mapped = rx.await.map_err(|_| Error::Readback {
            tensor: label.to_string(),
            message: "the map callback never ran".into(),
        })?;
        mapped
            .map_err(|e| Error::Readback { tensor: label.to_string(), message: e.to_string() })?;
        let data = staging
            .get_mapped_range(..)
            .map_err(|e| Error::Readback { tensor: label.to_string(), message: e.to_string() })?
            .to_vec();
        staging.unmap();
        Ok(data)
    }
}

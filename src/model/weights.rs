//! Our weights file: one safetensors file holding the UNet's tensors (f32, or f16 to halve the size) and, in
//! its metadata, the format name and version and the model config as JSON. Loading checks the header, the
//! format, the config, and every tensor's presence, dtype and shape against the graph the config builds, and
//! names the first problem.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use half::{bf16, f16};
use safetensors::{Dtype, SafeTensors, tensor::TensorView};

use serde::{Deserialize, Serialize};

use crate::diffusion::philox::{NoiseKey, Stream, normals};
use crate::diffusion::schedule::TrainingSchedule;
use crate::diffusion::step::{Prediction, Threshold, check_x0_rules};
use crate::diffusion::timesteps::Spacing;
use crate::error::{Error, Result};
use crate::gpu::{DType, Gpu, Tensor};
use crate::graph::ir::{Graph, TensorKind};
use crate::unet::config::UNetConfig;

/// The `format` metadata value of our files.
pub const FORMAT: &str = "ddim-wgpu";
/// The `format_version` this build writes. Version 3 added the sampling defaults to the training metadata
/// ([`SamplingDefaults`]; files of version 2 and 1 load with none), version 2 the `checksum` (version 1 files,
/// written before it, load unverified).
pub const FORMAT_VERSION: u32 = 3;

/// CRC-32 over everything a model is made of: from version 3 the format version itself, then the config and
/// training JSON as stored, then every tensor in name order (name, dtype, shape, bytes), each field
/// length-prefixed. Any single flipped bit of a file changes it (or breaks the header), so a damaged file is
/// refused instead of sampling with a wrong weight; a version flipped to an older one is caught too.
fn checksum<'a>(
    version: u32,
    config: &str,
    training: Option<&str>,
    tensors: impl Iterator<Item = (&'a str, Dtype, &'a [usize], &'a [u8])>,
) -> String {
    let mut h = crc32fast::Hasher::new();
    let mut field = |bytes: &[u8]| {
        h.update(&(bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    };
    if version >= 3 {
        field(version.to_string().as_bytes());
    }
    field(config.as_bytes());
    field(training.unwrap_or("").as_bytes());
    for (name, dtype, shape, data) in tensors {
        field(name.as_bytes());
        field(format!("{dtype:?}").as_bytes());
        let dims: Vec<u8> = shape.iter().flat_map(|&d| (d as u64).to_le_bytes()).collect();
        field(&dims);
        field(data);
    }
    format!("crc32:{:08x}", h.finalize())
}

/// How tensors are stored in the file (they are always f32 once loaded).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum StorageDtype {
    /// 4 bytes per value.
    #[default]
    F32,
    /// 2 bytes per value: IEEE half, widened to f32 at load.
    F16,
}

/// A tensor on the host: shape and f32 data.
#[derive(Clone, Debug, PartialEq)]
pub struct HostTensor {
    /// Outermost first.
    pub shape: Vec<usize>,
    /// Row-major values.
    pub data: Vec<f32>,
}

/// How a model was trained, where the source said so (diffusers' scheduler_config.json, the official YAML's
/// `diffusion` section): the sampler's defaults.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Training {
    /// Betas and T.
    pub schedule: TrainingSchedule,
    /// What the model predicts.
    pub prediction: Prediction,
    /// diffusers' `steps_offset`.
    pub steps_offset: usize,
    /// diffusers' `set_alpha_to_one`.
    pub set_alpha_to_one: bool,
    /// How the model's source samples it by default.
    #[serde(default)]
    pub sampling: SamplingDefaults,
}

/// The sampling settings a model's source recommends: diffusers' `scheduler_config.json` (`timestep_spacing`,
/// `clip_sample` with `clip_sample_range`, `thresholding` with `dynamic_thresholding_ratio` and
/// `sample_max_value`), or the official DDIM code's sampler for its checkpoints (uniform spacing, no clipping).
/// A file that records none (written before format version 3) samples with leading spacing and no clipping.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SamplingDefaults {
    /// How the sampling timesteps are spread.
    pub spacing: Spacing,
    /// Clip x0 to [-r, r].
    pub clip: Option<f32>,
    /// Dynamic thresholding of x0 (diffusers applies it in place of clipping).
    pub threshold: Option<Threshold>,
}

impl Training {
    /// Checks what the sampler relies on: 1 ..= [`MAX_TRAIN_STEPS`] timesteps, a `steps_offset` below T, betas
    /// that are all inside (0, 1), and sampling defaults the sampler takes (a positive clip range or a threshold,
    /// not both).
    ///
    /// [`MAX_TRAIN_STEPS`]: crate::diffusion::schedule::MAX_TRAIN_STEPS
    pub fn validate(&self) -> Result<()> {
        self.schedule.betas().map_err(|e| Error::Config(format!("training schedule: {e}")))?;
        let t = self.schedule.train_steps;
        if self.steps_offset >= t {
            return Err(Error::Config(format!(
                "training schedule: steps_offset {} is not below the {t} training timesteps",
                self.steps_offset
            )));
        }
        check_x0_rules(self.sampling.clip, self.sampling.threshold)
            .map_err(|e| Error::Config(format!("sampling defaults: {e}")))
    }
}

impl Default for Training {
    /// DDPM's: linear betas 1e-4..0.02, T = 1000, epsilon prediction, a_p = 1 past the end.
    fn default() -> Self {
        Training {
            schedule: TrainingSchedule::default(),
            prediction: Prediction::Epsilon,
            steps_offset: 0,
            set_alpha_to_one: true,
            sampling: SamplingDefaults::default(),
        }
    }
}

/// A model: its config, how it was trained (when known), and every parameter by diffusers name.
#[derive(Clone, Debug)]
pub struct Weights {
    /// The architecture.
    pub config: UNetConfig,
    /// The training schedule, if the source recorded it.
    pub training: Option<Training>,
    /// The parameters.
    pub tensors: BTreeMap<String, HostTensor>,
}

/// Decodes little-endian `bytes` of `dtype` into f32; `what` names the tensor in errors.
pub fn decode(what: &str, dtype: Dtype, bytes: &[u8]) -> Result<Vec<f32>> {
    let bad = |m: String| Error::Weights { tensor: what.to_string(), message: m };
    let width = match dtype {
        Dtype::F32 => 4,
        Dtype::F16 | Dtype::BF16 => 2,
        Dtype::F64 => 8,
        other => {
            return Err(bad(format!(
                "dtype {other:?} is not a floating-point type this engine reads"
            )));
        }
    };
    if !bytes.len().is_multiple_of(width) {
        return Err(bad(format!(
            "{} bytes is not a whole number of {dtype:?} values",
            bytes.len()
        )));
    }
    let chunks = bytes.chunks_exact(width);
    Ok(match dtype {
        Dtype::F32 => chunks.map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect(),
        Dtype::F16 => chunks.map(|c| f16::from_le_bytes(c.try_into().unwrap()).to_f32()).collect(),
        Dtype::BF16 => {
            chunks.map(|c| bf16::from_le_bytes(c.try_into().unwrap()).to_f32()).collect()
        }
        _ => chunks.map(|c| f64::from_le_bytes(c.try_into().unwrap()) as f32).collect(),
    })
}

/// Rewrites a safetensors header with its JSON keys sorted, so that the same model always gives the same bytes
/// (the safetensors crate writes the metadata in a `HashMap`'s random order). The sorted JSON has the same
/// length as the original (the same members, compact), so the data offsets stand; should it not, the file is
/// returned as it was, which is equally valid.
fn sort_header(mut bytes: Vec<u8>) -> Vec<u8> {
    let Some(len) =
        bytes.get(..8).map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")) as usize)
    else {
        return bytes;
    };
    let Some(header) = bytes.get(8..8 + len) else {
        return bytes;
    };
    let text = std::str::from_utf8(header).unwrap_or("").trim_end_matches(' ');
    let Ok(value) = serde_json::from_str::<serde_json::Value>(text) else {
        return bytes;
    };
    // serde_json's map keeps keys sorted (its `preserve_order` feature is off), and so does its output.
    let Ok(sorted) = serde_json::to_string(&value) else {
        return bytes;
    };
    if sorted.len() == text.len() {
        bytes[8..8 + sorted.len()].copy_from_slice(sorted.as_bytes());
    }
    bytes
}

/// The most parameters [`Weights::random`] makes (4 GiB of f32): far above the CIFAR-10 UNet's 35.7 million.
pub const MAX_RANDOM_PARAMETERS: usize = 1 << 30;

/// Tensors gathered under their final names (a loader's renaming: legacy attention names, the original
/// code's key map, a `module.` prefix), refusing a second key for a name: which of two values a weight gets is
/// not something a file may leave to map order, so the error names both keys.
#[derive(Debug, Default)]
pub(crate) struct UniqueNames {
    tensors: BTreeMap<String, HostTensor>,
    /// The key each name came from.
    keys: BTreeMap<String, String>,
}

impl UniqueNames {
    /// Adds `tensor`, read under `key`, as `name`.
    pub(crate) fn insert(&mut self, key: &str, name: String, tensor: HostTensor) -> Result<()> {
        if let Some(other) = self.keys.get(&name) {
            return Err(Error::Weights {
                tensor: name,
                message: format!(
                    "both `{other}` and `{key}` name this weight; which to use is ambiguous"
                ),
            });
        }
        self.keys.insert(name.clone(), key.to_string());
        self.tensors.insert(name, tensor);
        Ok(())
    }

    /// The tensors by name.
    pub(crate) fn into_tensors(self) -> BTreeMap<String, HostTensor> {
        self.tensors
    }
}

impl Weights {
    /// Checks the tensors against the graph the config builds: every parameter present with its shape, no
    /// tensor the model does not use, every value finite. The error names the first offending tensor.
    pub fn validate(&self) -> Result<()> {
        let graph = crate::unet::builder::build(&self.config)?;
        let params = graph.params();
        for (name, shape) in &params {
            let t = self.tensors.get(*name).ok_or_else(|| Error::Weights {
                tensor: name.to_string(),
                message: "missing from the weights".into(),
            })?;
            if t.shape != *shape {
                return Err(Error::Weights {
                    tensor: name.to_string(),
                    message: format!("has shape {:?}, the config needs {shape:?}", t.shape),
                });
            }
            if let Some(i) = t.data.iter().position(|v| !v.is_finite()) {
                return Err(Error::Weights {
                    tensor: name.to_string(),
                    message: format!("value {i} is {}", t.data[i]),
                });
            }
        }
        if params.len() != self.tensors.len() {
            let needed: std::collections::HashSet<&str> = params.iter().map(|(n, _)| *n).collect();
            if let Some(extra) = self.tensors.keys().find(|k| !needed.contains(k.as_str())) {
                return Err(Error::Weights {
                    tensor: extra.clone(),
                    message: "is not a parameter of the configured model".into(),
                });
            }
        }
        Ok(())
    }

    /// Serialises to our format.
    pub fn to_bytes(&self, dtype: StorageDtype) -> Result<Vec<u8>> {
        let encoded: Vec<(String, Vec<usize>, Vec<u8>)> = self
            .tensors
            .iter()
            .map(|(name, t)| {
                let bytes = match dtype {
                    StorageDtype::F32 => bytemuck::cast_slice(&t.data).to_vec(),
                    StorageDtype::F16 => {
                        // A weight beyond f16's range would be stored as infinity, which loading refuses: the
                        // file could never be used, so it is not written.
                        if let Some(v) = t.data.iter().find(|v| f16::from_f32(**v).is_infinite()) {
                            return Err(Error::Weights {
                                tensor: name.clone(),
                                message: format!(
                                    "holds {v}, beyond f16's range (65504): store this model as f32"
                                ),
                            });
                        }
                        t.data.iter().flat_map(|&v| f16::from_f32(v).to_le_bytes()).collect()
                    }
                };
                Ok((name.clone(), t.shape.clone(), bytes))
            })
            .collect::<Result<_>>()?;
        let st_dtype = match dtype {
            StorageDtype::F32 => Dtype::F32,
            StorageDtype::F16 => Dtype::F16,
        };
        let views = encoded
            .iter()
            .map(|(name, shape, bytes)| {
                TensorView::new(st_dtype, shape.clone(), bytes)
                    .map(|v| (name.as_str(), v))
                    .map_err(|e| Error::Weights { tensor: name.clone(), message: e.to_string() })
            })
            .collect::<Result<Vec<_>>>()?;
        let config = serde_json::to_string(&self.config)
            .map_err(|e| Error::Config(format!("config does not serialise: {e}")))?;
        let training = match &self.training {
            Some(t) => Some(serde_json::to_string(t).map_err(|e| {
                Error::Config(format!("training schedule does not serialise: {e}"))
            })?),
            None => None,
        };
        let sum = checksum(
            FORMAT_VERSION,
            &config,
            training.as_deref(),
            encoded.iter().map(|(name, shape, bytes)| {
                (name.as_str(), st_dtype, shape.as_slice(), &bytes[..])
            }),
        );
        let mut metadata = HashMap::from([
            ("format".to_string(), FORMAT.to_string()),
            ("format_version".to_string(), FORMAT_VERSION.to_string()),
            ("config".to_string(), config),
            ("checksum".to_string(), sum),
        ]);
        if let Some(json) = training {
            metadata.insert("training".to_string(), json);
        }
        let bytes = safetensors::serialize(views, Some(metadata))
            .map_err(|e| Error::Weights { tensor: "(file)".into(), message: e.to_string() })?;
        Ok(sort_header(bytes))
    }

    /// Writes our format to `path` through a temporary file, so a failure leaves no partial file.
    pub fn save(&self, path: &Path, dtype: StorageDtype) -> Result<()> {
        let bytes = self.to_bytes(dtype)?;
        crate::io::write_atomic(path, &bytes)
    }

    /// Parses and validates our format.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let file_error = |m: String| Error::Weights { tensor: "(file)".into(), message: m };
        let (_, header) = SafeTensors::read_metadata(bytes)
            .map_err(|e| file_error(format!("not a valid safetensors file: {e}")))?;
        let meta = header.metadata().clone().unwrap_or_default();
        match meta.get("format").map(String::as_str) {
            Some(FORMAT) => {}
            Some(other) => {
                return Err(file_error(format!("format is `{other}`, expected `{FORMAT}`")));
            }
            None => {
                return Err(file_error(
                    "has no ddim-wgpu metadata: convert the model first with `ddim convert`".into(),
                ));
            }
        }
        let version = meta.get("format_version").map(String::as_str).unwrap_or("");
        let version = match version {
            "1" => 1,
            "2" => 2,
            v if v == FORMAT_VERSION.to_string() => FORMAT_VERSION,
            _ => {
                return Err(file_error(format!(
                    "format version `{version}` is not one this build reads (1 ..= {FORMAT_VERSION})"
                )));
            }
        };
        if version == 1 && meta.contains_key("checksum") {
            // Version 1 predates the checksum: a file with one is a later file whose version is damaged.
            return Err(file_error(
                "format version 1 with a checksum, which version 1 files never have: the file is damaged".into(),
            ));
        }
        let config_json =
            meta.get("config").ok_or_else(|| file_error("metadata has no `config`".into()))?;
        let config: UNetConfig = serde_json::from_str(config_json)
            .map_err(|e| Error::Config(format!("config in the weights file: {e}")))?;
        config.validate()?;
        let training = match meta.get("training") {
            Some(json) => Some(serde_json::from_str::<Training>(json).map_err(|e| {
                Error::Config(format!("training schedule in the weights file: {e}"))
            })?),
            None => None,
        };
        if let Some(t) = &training {
            t.validate()?;
        }
        let st = SafeTensors::deserialize(bytes)
            .map_err(|e| file_error(format!("not a valid safetensors file: {e}")))?;
        if version >= 2 {
            let stored = meta
                .get("checksum")
                .ok_or_else(|| file_error("metadata has no `checksum`".into()))?;
            let mut names = st.names();
            names.sort();
            let views = names
                .iter()
                .map(|n| st.tensor(n).map(|v| (*n, v)))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| file_error(format!("not a valid safetensors file: {e}")))?;
            let actual = checksum(
                version,
                config_json,
                meta.get("training").map(String::as_str),
                views.iter().map(|(n, v)| (*n, v.dtype(), v.shape(), v.data())),
            );
            if *stored != actual {
                return Err(file_error(format!(
                    "checksum {stored} does not match the contents ({actual}): the file is damaged"
                )));
            }
        }
        let mut tensors = BTreeMap::new();
        for (name, view) in st.iter() {
            if !matches!(view.dtype(), Dtype::F32 | Dtype::F16) {
                return Err(Error::Weights {
                    tensor: name.to_string(),
                    message: format!("dtype {:?}; our files hold F32 or F16", view.dtype()),
                });
            }
            let data = decode(name, view.dtype(), view.data())?;
            tensors.insert(name.to_string(), HostTensor { shape: view.shape().to_vec(), data });
        }
        let w = Weights { config, training, tensors };
        w.validate()?;
        Ok(w)
    }

    /// Reads and validates our format from `path`.
    pub fn load(path: &Path) -> Result<Self> {
        let bytes = crate::io::read(path)?;
        Self::from_bytes(&bytes)
    }

    /// Uploads the parameter tensors of the config's graph ([`Weights::upload_for`] the graph
    /// [`unet::build`](crate::unet::build) makes).
    pub fn upload(&self, gpu: &Gpu) -> Result<HashMap<String, Tensor>> {
        self.upload_for(gpu, &crate::unet::builder::build(&self.config)?)
    }

    /// Uploads the parameter tensors `graph` (built from this config) binds, by
    /// [`param_name`](crate::graph::ir::Graph::param_name): each weight by its name, and weights the graph
    /// stacks (`TensorKind::Stacked`) once, as the stacked tensor only; as the device stores activations
    /// ([`Gpu::act`]), refusing a weight beyond f16's range on an f16 device.
    pub fn upload_for(&self, gpu: &Gpu, graph: &Graph) -> Result<HashMap<String, Tensor>> {
        let dtype = gpu.act();
        let upload = |name: &str, shape: &[usize], data: &[f32]| {
            if dtype == DType::F16
                && let Some(v) = data.iter().find(|v| v.abs() > f32::from(f16::MAX))
            {
                return Err(Error::Weights {
                    tensor: name.to_string(),
                    message: format!(
                        "holds {v}, beyond f16's range (65504): run this model with --precision f32"
                    ),
                });
            }
            gpu.upload_as(name, shape, data, dtype)
        };
        let stored = |name: &str| {
            self.tensors.get(name).ok_or_else(|| Error::Weights {
                tensor: name.to_string(),
                message: "missing from the weights".into(),
            })
        };
        let mut uploaded = HashMap::new();
        for t in &graph.tensors {
            match &t.kind {
                TensorKind::Param(name) => {
                    let host = stored(name)?;
                    uploaded.insert(name.clone(), upload(name, &host.shape, &host.data)?);
                }
                TensorKind::Stacked { name, parts } => {
                    let mut data = Vec::with_capacity(t.shape.iter().product());
                    for (part, _) in parts {
                        data.extend_from_slice(&stored(part)?.data);
                    }
                    uploaded.insert(name.clone(), upload(name, &t.shape, &data)?);
                }
                TensorKind::Input | TensorKind::Activation => {}
            }
        }
        Ok(uploaded)
    }

    /// Weights for `config` drawn from the project's Philox generator: weights ~ N(0, 1/fan_in), biases
    /// ~ N(0, 0.01), norm scales ~ 1 + N(0, 0.01). Activations stay of order 1 through any depth, which is what
    /// tests and benchmarks of the whole network need. Deterministic in `seed`.
    pub fn random(config: &UNetConfig, seed: u64) -> Result<Self> {
        let graph = crate::unet::builder::build(config)?;
        // A config within `UNetConfig`'s bounds can still describe more parameters than memory holds (8 levels
        // of 8,192 channels); a model file cannot (its tensors are in the file), but random weights are made
        // from the config alone (`ddim profile config.json`).
        let count = graph.params().iter().try_fold(0usize, |a, (_, s)| {
            a.checked_add(s.iter().try_fold(1usize, |n, &d| n.checked_mul(d))?)
        });
        if count.is_none_or(|n| n > MAX_RANDOM_PARAMETERS) {
            return Err(Error::Config(format!(
                "random weights for more than {MAX_RANDOM_PARAMETERS} parameters (this config's UNet is \
                 larger); use a smaller config"
            )));
        }
        let mut tensors = BTreeMap::new();
        for (i, (name, shape)) in graph.params().into_iter().enumerate() {
            let key = NoiseKey { seed, step: i as u32, stream: Stream::Latent };
            let n: usize = shape.iter().product();
            let z = normals(key, 0, 1, n);
            let is_norm = name.contains("norm");
            let data = if name.ends_with(".bias") {
                z.iter().map(|v| (0.1 * v) as f32).collect()
            } else if is_norm {
                z.iter().map(|v| (1.0 + 0.1 * v) as f32).collect()
            } else {
                let fan_in: usize = shape[1..].iter().product();
                let std = 1.0 / (fan_in as f64).sqrt();
                z.iter().map(|v| (std * v) as f32).collect()
            };
            tensors.insert(name.to_string(), HostTensor { shape: shape.to_vec(), data });
        }
        Ok(Weights { config: config.clone(), training: None, tensors })
    }

    /// The number of parameters.
    pub fn parameter_count(&self) -> usize {
        self.tensors.values().map(|t| t.data.len()).sum()
    }
}

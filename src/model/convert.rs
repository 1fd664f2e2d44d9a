//! Converters into our weights file, in Rust, with no Python: a diffusers `UNet2DModel` directory
//! (`config.json` with `diffusion_pytorch_model.safetensors` or `.bin`), and an original DDPM/DDIM checkpoint
//! (the official DDIM repository's `model-*.ckpt`) with the repository's YAML config.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use safetensors::SafeTensors;
use yaml_rust2::{Yaml, YamlLoader};

use super::torch::{CheckpointEntry, read_checkpoint, read_checkpoint_entry};
use super::weights::{HostTensor, SamplingDefaults, Training, UniqueNames, Weights, decode};
use crate::diffusion::schedule::{BetaSchedule, TrainingSchedule};
use crate::diffusion::step::{Prediction, Threshold};
use crate::diffusion::timesteps::Spacing;
use crate::error::{Error, Result};
use crate::io;
use crate::unet::config::{DownBlock, MAX_LEVELS, UNetConfig, UpBlock};

/// Loads a model from our weights file, or converts a diffusers directory on the fly.
pub fn load_model(path: &Path) -> Result<Weights> {
    if path.is_dir() { from_diffusers_dir(path) } else { Weights::load(path) }
}

/// A diffusers `UNet2DModel` directory, or a pipeline directory holding one in `unet/` (with its
/// `model_index.json` where it has one).
pub fn from_diffusers_dir(dir: &Path) -> Result<Weights> {
    from_diffusers_dir_variant(dir, None)
}

/// [`from_diffusers_dir`], reading the weights of `variant` where given (`fp16`:
/// `diffusion_pytorch_model.fp16.safetensors`, or its shards). The weights are one safetensors file, shards
/// listed by `diffusion_pytorch_model.safetensors.index.json`, or a PyTorch `.bin`.
pub fn from_diffusers_dir_variant(dir: &Path, variant: Option<&str>) -> Result<Weights> {
    let unet = unet_dir(dir)?;
    let config = UNetConfig::from_diffusers_json(&io::read_text(&unet.join("config.json"))?)?;
    diffusers_model(config, unet_weights(&unet, variant)?, scheduler_config(&unet)?)
}

/// A diffusers model from its config, its tensors under diffusers' names (legacy attention names renamed) and
/// its training schedule, validated.
fn diffusers_model(
    config: UNetConfig,
    raw: BTreeMap<String, HostTensor>,
    training: Option<Training>,
) -> Result<Weights> {
    let tensors = renamed(raw, |k| Ok(rename_legacy_attention(k)))?;
    let w = Weights { config, training, tensors };
    w.validate()?;
    Ok(w)
}

/// The folder of the UNet: the one `model_index.json` names (which must be a `UNet2DModel`), else `dir` itself
/// where it has a `config.json`, else its `unet/`.
fn unet_dir(dir: &Path) -> Result<PathBuf> {
    let index = dir.join("model_index.json");
    if index.exists() {
        let what = index.display().to_string();
        let v: serde_json::Value = serde_json::from_str(&io::read_text(&index)?)
            .map_err(|e| Error::Config(format!("{what}: {e}")))?;
        let class = v
            .get("unet")
            .and_then(|u| u.as_array())
            .and_then(|u| u.get(1))
            .and_then(|c| c.as_str())
            .ok_or_else(|| Error::Config(format!("{what}: no `unet` entry [library, class]")))?;
        if class != "UNet2DModel" {
            return Err(Error::Config(format!(
                "{what}: the pipeline's unet is a {class}; only UNet2DModel (an unconditional DDPM UNet) runs here"
            )));
        }
        return Ok(dir.join("unet"));
    }
    if !dir.join("config.json").exists() && dir.join("unet/config.json").exists() {
        return Ok(dir.join("unet"));
    }
    Ok(dir.to_path_buf())
}

/// The UNet's tensors in `dir`: `diffusion_pytorch_model[.variant].safetensors`, its shards, or its `.bin`.
fn unet_weights(dir: &Path, variant: Option<&str>) -> Result<BTreeMap<String, HostTensor>> {
    let stem = match variant {
        Some(v) => format!("diffusion_pytorch_model.{v}"),
        None => "diffusion_pytorch_model".to_string(),
    };
    let single = dir.join(format!("{stem}.safetensors"));
    if single.exists() {
        return parse_safetensors(&io::read(&single)?, &single.display().to_string());
    }
    let index = dir.join(match variant {
        Some(v) => format!("diffusion_pytorch_model.safetensors.index.{v}.json"),
        None => "diffusion_pytorch_model.safetensors.index.json".to_string(),
    });
    if index.exists() {
        return sharded(dir, &index);
    }
    let bin = dir.join(format!("{stem}.bin"));
    if bin.exists() {
        return read_checkpoint(&io::read(&bin)?);
    }
    // Say what is there: a variant asked for that is missing, or only variants where none was asked for.
    let variants: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().into_string().ok())
                .filter_map(|n| {
                    let v = n.strip_prefix("diffusion_pytorch_model.")?;
                    let v = v.strip_suffix(".safetensors").or_else(|| v.strip_suffix(".bin"))?;
                    (!v.is_empty() && !v.contains('.') && !v.contains('-')).then(|| v.to_string())
                })
                .collect()
        })
        .unwrap_or_default();
    let hint = match (variant, variants.first()) {
        (None, Some(v)) => format!("; it holds variant weights: pass --variant {v}"),
        (Some(_), Some(_)) => format!("; its variants: {}", variants.join(", ")),
        _ => String::new(),
    };
    Err(Error::Io {
        path: dir.display().to_string(),
        message: format!("holds neither {stem}.safetensors (or its shards) nor {stem}.bin{hint}"),
    })
}

/// The tensors of a sharded safetensors model: the files its index's `weight_map` names (plain file names in
/// `dir`), each read once, every listed weight in the shard the index names.
fn sharded(dir: &Path, index: &Path) -> Result<BTreeMap<String, HostTensor>> {
    let what = index.display().to_string();
    let bad = |m: String| Error::Config(format!("{what}: {m}"));
    let v: serde_json::Value =
        serde_json::from_str(&io::read_text(index)?).map_err(|e| bad(e.to_string()))?;
    let map = v
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| bad("no `weight_map` object".into()))?;
    let mut shards: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (name, file) in map {
        let file = file
            .as_str()
            .ok_or_else(|| bad(format!("`{name}` maps to {file}, not a file name")))?;
        if file.is_empty() || file.contains(['/', '\\']) || file == ".." || file == "." {
            return Err(bad(format!("`{file}` is not a file name in the model's folder")));
        }
        shards.entry(file).or_default().push(name);
    }
    let mut out = BTreeMap::new();
    for (file, names) in shards {
        let path = dir.join(file);
        let mut tensors = parse_safetensors(&io::read(&path)?, &path.display().to_string())?;
        for name in names {
            let t = tensors.remove(name).ok_or_else(|| {
                bad(format!("`{name}` is listed in {file}, which does not hold it"))
            })?;
            if out.insert(name.to_string(), t).is_some() {
                return Err(bad(format!("`{name}` is listed twice")));
            }
        }
    }
    Ok(out)
}

/// The floating-point tensors of a third-party safetensors file (a diffusers
/// `diffusion_pytorch_model.safetensors`), widened to f32; `what` (the path) names it in errors.
pub fn parse_safetensors(bytes: &[u8], what: &str) -> Result<BTreeMap<String, HostTensor>> {
    let st = SafeTensors::deserialize(bytes).map_err(|e| Error::Weights {
        tensor: "(file)".into(),
        message: format!("{what}: not a valid safetensors file: {e}"),
    })?;
    st.iter()
        .filter(|(_, view)| {
            use safetensors::Dtype;
            matches!(view.dtype(), Dtype::F32 | Dtype::F16 | Dtype::BF16 | Dtype::F64)
        })
        .map(|(name, view)| {
            let data = decode(name, view.dtype(), view.data())?;
            Ok((name.to_string(), HostTensor { shape: view.shape().to_vec(), data }))
        })
        .collect()
}

/// `raw`'s tensors under the names `rename` gives, refusing two keys that give one name ([`UniqueNames`]).
fn renamed(
    raw: BTreeMap<String, HostTensor>,
    rename: impl Fn(&str) -> Result<String>,
) -> Result<BTreeMap<String, HostTensor>> {
    let mut out = UniqueNames::default();
    for (key, t) in raw {
        out.insert(&key, rename(&key)?, t)?;
    }
    Ok(out.into_tensors())
}

/// diffusers' old `AttentionBlock` names (`query`, `key`, `value`, `proj_attn`) to today's `Attention` names.
fn rename_legacy_attention(key: &str) -> String {
    let parts: Vec<&str> = key.split('.').collect();
    if let Some(i) = parts.iter().position(|p| *p == "attentions")
        && i + 2 < parts.len()
    {
        let new = match parts[i + 2] {
            "query" => Some("to_q"),
            "key" => Some("to_k"),
            "value" => Some("to_v"),
            "proj_attn" => Some("to_out.0"),
            _ => None,
        };
        if let Some(new) = new {
            let mut out: Vec<&str> = parts[..i + 2].to_vec();
            out.push(new);
            out.extend(&parts[i + 3..]);
            return out.join(".");
        }
    }
    key.to_string()
}

/// An original DDPM/DDIM checkpoint with its YAML config (the official DDIM repository's `configs/*.yml`): the
/// EMA weights where the checkpoint holds them (as the official sampler loads them), else the model's.
pub fn from_original(ckpt: &Path, yaml: &Path) -> Result<Weights> {
    from_original_entry(ckpt, yaml, CheckpointEntry::EmaIfAny).map(|(w, _)| w)
}

/// [`from_original`], of the checkpoint's weights `entry` asks for; also says which entry it read.
pub fn from_original_entry(
    ckpt: &Path,
    yaml: &Path,
    entry: CheckpointEntry,
) -> Result<(Weights, CheckpointEntry)> {
    let text = String::from_utf8(io::read(yaml)?)
        .map_err(|_| Error::Io { path: yaml.display().to_string(), message: "not UTF-8".into() })?;
    let config = config_from_original_yaml(&text)?;
    let training = Some(training_from_original_yaml(&text)?);
    let levels = config.block_out_channels.len();
    let (raw, read) = read_checkpoint_entry(&io::read(ckpt)?, entry)?;
    let mut tensors = renamed(raw, |key| {
        rename_original(key, levels).ok_or_else(|| Error::Weights {
            tensor: key.to_string(),
            message: "is not a parameter of the original DDPM/DDIM UNet".into(),
        })
    })?;
    for (name, t) in &mut tensors {
        // The original attention's q, k, v and proj_out are 1x1 convolutions: (C, C, 1, 1) -> Linear (C, C).
        if name.contains(".attentions.") && t.shape.len() == 4 && t.shape[2..] == [1, 1] {
            t.shape.truncate(2);
        }
    }
    let w = Weights { config, training, tensors };
    w.validate()?;
    Ok((w, read))
}

/// The diffusers name of an original DDPM/DDIM parameter (the key map ARCHITECTURE.md gives), or `None` if it has none.
pub fn rename_original(key: &str, levels: usize) -> Option<String> {
    let (module, param) = key.rsplit_once('.')?;
    let parts: Vec<&str> = module.split('.').collect();
    fn resnet_part(p: &str) -> &str {
        match p {
            "temb_proj" => "time_emb_proj",
            "nin_shortcut" => "conv_shortcut",
            other => other,
        }
    }
    let attn_part = |p: &str| match p {
        "norm" => Some("group_norm"),
        "q" => Some("to_q"),
        "k" => Some("to_k"),
        "v" => Some("to_v"),
        "proj_out" => Some("to_out.0"),
        _ => None,
    };
    let mapped = match parts.as_slice() {
        ["temb", "dense", "0"] => "time_embedding.linear_1".to_string(),
        ["temb", "dense", "1"] => "time_embedding.linear_2".to_string(),
        ["conv_in"] | ["conv_out"] => module.to_string(),
        ["norm_out"] => "conv_norm_out".to_string(),
        [side @ ("down" | "up"), level, kind, rest @ ..] => {
            let level: usize = level.parse().ok()?;
            if level >= levels {
                return None;
            }
            let (block, index) = if *side == "down" {
                ("down_blocks", level)
            } else {
                ("up_blocks", levels - 1 - level)
            };
            match (*kind, rest) {
                ("block", [j, p]) => format!("{block}.{index}.resnets.{j}.{}", resnet_part(p)),
                ("attn", [j, p]) => format!("{block}.{index}.attentions.{j}.{}", attn_part(p)?),
                ("downsample", ["conv"]) if *side == "down" => {
                    format!("{block}.{index}.downsamplers.0.conv")
                }
                ("upsample", ["conv"]) if *side == "up" => {
                    format!("{block}.{index}.upsamplers.0.conv")
                }
                _ => return None,
            }
        }
        ["mid", "block_1", p] => format!("mid_block.resnets.0.{}", resnet_part(p)),
        ["mid", "block_2", p] => format!("mid_block.resnets.1.{}", resnet_part(p)),
        ["mid", "attn_1", p] => format!("mid_block.attentions.0.{}", attn_part(p)?),
        _ => return None,
    };
    Some(format!("{mapped}.{param}"))
}

/// The diffusers-equivalent config of the original DDPM/DDIM `Model` described by a DDIM-repository YAML.
pub fn config_from_original_yaml(text: &str) -> Result<UNetConfig> {
    let docs = load_yaml(text)?;
    let doc = docs.first().ok_or_else(|| Error::Config("YAML: empty document".into()))?;
    let model = &doc["model"];
    let data = &doc["data"];
    let int = |section: &Yaml, s: &str, key: &str| -> Result<usize> {
        section[key].as_i64().and_then(|v| usize::try_from(v).ok()).ok_or_else(|| {
            Error::Config(format!("YAML: {s}.{key} is missing or not a non-negative integer"))
        })
    };
    let list = |key: &str| -> Result<Vec<usize>> {
        model[key]
            .as_vec()
            .ok_or_else(|| Error::Config(format!("YAML: model.{key} is missing or not a list")))?
            .iter()
            .map(|v| {
                v.as_i64()
                    .and_then(|v| usize::try_from(v).ok())
                    .ok_or_else(|| Error::Config(format!("YAML: model.{key} holds a non-integer")))
            })
            .collect()
    };
    if let Some(kind) = model["type"].as_str()
        && kind != "simple"
    {
        return Err(Error::Config(format!(
            "YAML: model.type `{kind}` is not supported (only `simple`, the DDPM UNet)"
        )));
    }
    if model["resamp_with_conv"].as_bool() == Some(false) {
        return Err(Error::Config(
            "YAML: model.resamp_with_conv = false (average-pool downsampling) is not supported"
                .into(),
        ));
    }
    let ch = int(model, "model", "ch")?;
    let mult = list("ch_mult")?;
    let attn = list("attn_resolutions")?;
    let resolution = int(data, "data", "image_size")?;
    let in_channels = int(model, "model", "in_channels")?;
    let out_channels = int(model, "model", "out_ch")?;
    let layers = int(model, "model", "num_res_blocks")?;
    let levels = mult.len();
    if levels > MAX_LEVELS {
        return Err(Error::Config(format!(
            "YAML: model.ch_mult has {levels} entries; at most {MAX_LEVELS} resolution levels are supported"
        )));
    }
    let res_at = |level: usize| resolution >> level;
    let block_out_channels = mult
        .iter()
        .map(|m| {
            ch.checked_mul(*m).ok_or_else(|| {
                Error::Config(format!("YAML: model.ch {ch} x ch_mult entry {m} overflows"))
            })
        })
        .collect::<Result<Vec<usize>>>()?;
    let time_embed_dim =
        ch.checked_mul(4).ok_or_else(|| Error::Config(format!("YAML: model.ch {ch} overflows")))?;
    let config = UNetConfig {
        sample_size: resolution,
        in_channels,
        out_channels,
        block_out_channels,
        layers_per_block: layers,
        down_block_types: (0..levels)
            .map(|i| {
                if attn.contains(&res_at(i)) {
                    DownBlock::AttnDownBlock2D
                } else {
                    DownBlock::DownBlock2D
                }
            })
            .collect(),
        up_block_types: (0..levels)
            .map(|i| {
                if attn.contains(&res_at(levels - 1 - i)) {
                    UpBlock::AttnUpBlock2D
                } else {
                    UpBlock::UpBlock2D
                }
            })
            .collect(),
        mid_block_attention: true,
        mid_block_scale_factor: 1.0,
        norm_num_groups: 32,
        attn_norm_num_groups: None,
        norm_eps: 1e-6,
        attention_head_dim: None,
        downsample_padding: 0,
        flip_sin_to_cos: false,
        freq_shift: 1.0,
        time_embed_dim,
    };
    config.validate()?;
    Ok(config)
}

/// The training schedule from a diffusers `scheduler_config.json` beside the UNet (the model directory itself,
/// `../scheduler/` for a pipeline's `unet/`, or `scheduler/` of a pipeline), if there is one.
fn scheduler_config(dir: &Path) -> Result<Option<Training>> {
    let candidates = [
        dir.join("scheduler_config.json"),
        dir.join("../scheduler/scheduler_config.json"),
        dir.join("scheduler/scheduler_config.json"),
    ];
    let Some(path) = candidates.iter().find(|p| p.exists()) else {
        return Ok(None);
    };
    training_from_scheduler_json(&io::read_text(path)?, &path.display().to_string()).map(Some)
}

/// A diffusers `UNet2DModel` from the contents of its files, for callers without a file system (a web page):
/// `config` (`config.json`'s text), `weights` (`diffusion_pytorch_model.safetensors`'s bytes, named `what` in
/// errors) and, where there is one, `scheduler` (`scheduler_config.json`'s text and its name).
pub fn from_diffusers_parts(
    config: &str,
    weights: &[u8],
    what: &str,
    scheduler: Option<(&str, &str)>,
) -> Result<Weights> {
    let config = UNetConfig::from_diffusers_json(config)?;
    let raw = parse_safetensors(weights, what)?;
    let training =
        scheduler.map(|(text, name)| training_from_scheduler_json(text, name)).transpose()?;
    diffusers_model(config, raw, training)
}

/// The training schedule of a diffusers `scheduler_config.json` (DDIMScheduler's or DDPMScheduler's keys;
/// missing keys take diffusers' defaults); `what` (the path) names it in errors.
pub fn training_from_scheduler_json(text: &str, what: &str) -> Result<Training> {
    let v: serde_json::Value =
        serde_json::from_str(text).map_err(|e| Error::Config(format!("{what}: {e}")))?;
    let bad = |m: String| Error::Config(format!("{what}: {m}"));
    // Every key is read as its type or refused, never coerced (a string "0.1", 1.9 steps, -3 as 0).
    let field = |k: &str| v.get(k).filter(|x| !x.is_null());
    let float = |k: &str, default: f64| match field(k) {
        None => Ok(default),
        Some(x) => x.as_f64().ok_or_else(|| bad(format!("`{k}` is {x}, not a number"))),
    };
    let count = |k: &str, default: usize| match field(k) {
        None => Ok(default),
        Some(x) => x
            .as_u64()
            .and_then(|n| usize::try_from(n).ok())
            .ok_or_else(|| bad(format!("`{k}` is {x}, not a non-negative integer"))),
    };
    let flag = |k: &str, default: bool| match field(k) {
        None => Ok(default),
        Some(x) => x.as_bool().ok_or_else(|| bad(format!("`{k}` is {x}, not true or false"))),
    };
    let name = |k: &str, default: &'static str| match field(k) {
        None => Ok(default.to_string()),
        Some(x) => {
            x.as_str().map(str::to_string).ok_or_else(|| bad(format!("`{k}` is {x}, not a string")))
        }
    };
    let train_steps = count("num_train_timesteps", 1000)?;
    let (start, end) = (float("beta_start", 1e-4)?, float("beta_end", 0.02)?);
    let betas = match field("trained_betas") {
        Some(list) => BetaSchedule::Trained {
            betas: list
                .as_array()
                .ok_or_else(|| bad("trained_betas is not a list".into()))?
                .iter()
                .map(|b| {
                    b.as_f64().ok_or_else(|| {
                        bad("trained_betas holds something other than a number (one beta per timestep)"
                            .into())
                    })
                })
                .collect::<Result<_>>()?,
        },
        None => match name("beta_schedule", "linear")?.as_str() {
            "linear" => BetaSchedule::Linear { start, end },
            "scaled_linear" => BetaSchedule::ScaledLinear { start, end },
            "squaredcos_cap_v2" => BetaSchedule::SquaredcosCapV2,
            other => return Err(bad(format!("beta_schedule `{other}` is not supported"))),
        },
    };
    let spacing = match name("timestep_spacing", "leading")?.as_str() {
        s @ ("leading" | "linspace" | "trailing") => s.parse()?,
        other => return Err(bad(format!("timestep_spacing `{other}` is not supported"))),
    };
    // diffusers' DDIMScheduler (and DDPMScheduler): thresholding in place of clipping where both are set; clip_sample
    // true unless the config says otherwise.
    let (clip, threshold) = if flag("thresholding", false)? {
        let ratio = float("dynamic_thresholding_ratio", 0.995)? as f32;
        let max_value = float("sample_max_value", 1.0)? as f32;
        (None, Some(Threshold { ratio, max_value }))
    } else if flag("clip_sample", true)? {
        (Some(float("clip_sample_range", 1.0)? as f32), None)
    } else {
        (None, None)
    };
    let prediction = match name("prediction_type", "epsilon")?.as_str() {
        "epsilon" => Prediction::Epsilon,
        "v_prediction" => Prediction::V,
        "sample" => Prediction::Sample,
        other => return Err(bad(format!("prediction_type `{other}` is not supported"))),
    };
    let training = Training {
        schedule: TrainingSchedule {
            betas,
            train_steps,
            zero_snr: flag("rescale_betas_zero_snr", false)?,
        },
        prediction,
        steps_offset: count("steps_offset", 0)?,
        set_alpha_to_one: flag("set_alpha_to_one", true)?,
        sampling: SamplingDefaults { spacing, clip, threshold },
    };
    training
        .validate()
        .map_err(|e| match e {
            Error::Config(m) => bad(m),
            other => other,
        })
        .map(|()| training)
}

/// The most nodes a YAML config may expand to, aliases counted at the size of what they repeat: the official
/// configs have about 60. Aliases are expanded by copying, so a few hundred bytes of nested aliases would
/// otherwise expand to gigabytes.
const MAX_YAML_NODES: usize = 100_000;

/// Parses YAML after checking, on the parser's events, that expanding its aliases stays within
/// [`MAX_YAML_NODES`].
fn load_yaml(text: &str) -> Result<Vec<Yaml>> {
    use yaml_rust2::parser::{Event, Parser};
    let err = |m: String| Error::Config(format!("YAML: {m}"));
    let mut parser = Parser::new_from_str(text);
    // Nodes so far (aliases expanded); the size of each anchored node; open collections' anchors and starts.
    let mut nodes = 0usize;
    let mut anchored: HashMap<usize, usize> = HashMap::new();
    let mut open: Vec<(usize, usize)> = Vec::new();
    loop {
        let (event, _) = parser.next_token().map_err(|e| err(e.to_string()))?;
        match event {
            Event::StreamEnd => break,
            Event::Scalar(_, _, anchor, _) => {
                nodes += 1;
                if anchor > 0 {
                    anchored.insert(anchor, 1);
                }
            }
            Event::SequenceStart(anchor, _) | Event::MappingStart(anchor, _) => {
                nodes += 1;
                open.push((anchor, nodes - 1));
            }
            Event::SequenceEnd | Event::MappingEnd => {
                if let Some((anchor, start)) = open.pop()
                    && anchor > 0
                {
                    anchored.insert(anchor, nodes - start);
                }
            }
            Event::Alias(anchor) => {
                nodes = nodes.saturating_add(anchored.get(&anchor).copied().unwrap_or(1));
            }
            _ => {}
        }
        if nodes > MAX_YAML_NODES {
            return Err(err(format!(
                "expands to more than {MAX_YAML_NODES} nodes (aliases count as what they repeat); a model \
                 config has a few dozen"
            )));
        }
    }
    YamlLoader::load_from_str(text).map_err(|e| err(e.to_string()))
}

/// The training schedule of the official DDIM YAML's `diffusion` section (its `quad` schedule is diffusers'
/// `scaled_linear`).
pub fn training_from_original_yaml(text: &str) -> Result<Training> {
    let docs = load_yaml(text)?;
    let d = &docs.first().ok_or_else(|| Error::Config("YAML: empty document".into()))?["diffusion"];
    let f = |k: &str, default: f64| match &d[k] {
        Yaml::BadValue | Yaml::Null => Ok(default),
        Yaml::Real(_) | Yaml::Integer(_) => d[k]
            .as_f64()
            .or_else(|| d[k].as_i64().map(|v| v as f64))
            .ok_or_else(|| Error::Config(format!("YAML: diffusion.{k} is not a number"))),
        other => Err(Error::Config(format!("YAML: diffusion.{k} is {other:?}, not a number"))),
    };
    let (start, end) = (f("beta_start", 1e-4)?, f("beta_end", 0.02)?);
    let train_steps = match &d["num_diffusion_timesteps"] {
        Yaml::BadValue | Yaml::Null => 1000,
        Yaml::Integer(n) => usize::try_from(*n).map_err(|_| {
            Error::Config(format!("YAML: diffusion.num_diffusion_timesteps {n} is negative"))
        })?,
        other => {
            return Err(Error::Config(format!(
                "YAML: diffusion.num_diffusion_timesteps is {other:?}, not an integer"
            )));
        }
    };
    let betas = match d["beta_schedule"].as_str().unwrap_or("linear") {
        "linear" => BetaSchedule::Linear { start, end },
        "quad" => BetaSchedule::ScaledLinear { start, end },
        other => {
            return Err(Error::Config(format!(
                "YAML: diffusion.beta_schedule `{other}` is not supported (linear, quad)"
            )));
        }
    };
    // The official code samples its checkpoints with uniform skips (`--skip_type uniform`) and, in
    // `generalized_steps`, no clipping.
    let training = Training {
        schedule: TrainingSchedule { betas, train_steps, zero_snr: false },
        sampling: SamplingDefaults { spacing: Spacing::Uniform, clip: None, threshold: None },
        ..Training::default()
    };
    training.validate()?;
    Ok(training)
}

/// Where `ddim convert` writes when `--out` is not given: beside the source, `<name>.safetensors`.
pub fn default_output(src: &Path) -> PathBuf {
    let stem =
        src.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "model".into());
    src.with_file_name(format!("{stem}.ddim.safetensors"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scheduler_configs_give_their_sampling_defaults() {
        let read = |json: &str| training_from_scheduler_json(json, "s").map(|t| t.sampling);
        // diffusers' DDIMScheduler defaults: clip_sample true at range 1, leading spacing.
        assert_eq!(
            read("{}").unwrap(),
            SamplingDefaults { spacing: Spacing::Leading, clip: Some(1.0), threshold: None }
        );
        let d = read(
            r#"{"clip_sample": true, "clip_sample_range": 2.5, "timestep_spacing": "trailing"}"#,
        );
        assert_eq!(
            d.unwrap(),
            SamplingDefaults { spacing: Spacing::Trailing, clip: Some(2.5), threshold: None }
        );
        assert_eq!(read(r#"{"clip_sample": false}"#).unwrap().clip, None);
        // Thresholding takes the place of clipping, as in DDIMScheduler.step.
        let d = read(
            r#"{"thresholding": true, "dynamic_thresholding_ratio": 0.9, "sample_max_value": 2.0}"#,
        );
        assert_eq!(
            d.unwrap(),
            SamplingDefaults {
                spacing: Spacing::Leading,
                clip: None,
                threshold: Some(Threshold { ratio: 0.9, max_value: 2.0 })
            }
        );
        for bad in [
            r#"{"timestep_spacing": "quad"}"#,
            r#"{"clip_sample": "yes"}"#,
            r#"{"clip_sample_range": -1}"#,
            r#"{"thresholding": true, "sample_max_value": 0.5}"#,
        ] {
            assert!(read(bad).is_err(), "{bad}");
        }
        // The official code's checkpoints: its sampler's uniform skips, no clipping.
        let yaml = "diffusion:\n  beta_schedule: linear\n  num_diffusion_timesteps: 1000\n";
        assert_eq!(
            training_from_original_yaml(yaml).unwrap().sampling,
            SamplingDefaults { spacing: Spacing::Uniform, clip: None, threshold: None }
        );
    }

    #[test]
    fn original_names_map_to_diffusers() {
        let cases = [
            ("temb.dense.0.weight", "time_embedding.linear_1.weight"),
            ("temb.dense.1.bias", "time_embedding.linear_2.bias"),
            ("down.0.block.1.temb_proj.weight", "down_blocks.0.resnets.1.time_emb_proj.weight"),
            ("down.1.block.0.nin_shortcut.bias", "down_blocks.1.resnets.0.conv_shortcut.bias"),
            ("down.1.attn.0.q.weight", "down_blocks.1.attentions.0.to_q.weight"),
            ("down.1.attn.1.proj_out.bias", "down_blocks.1.attentions.1.to_out.0.bias"),
            ("down.1.attn.1.norm.weight", "down_blocks.1.attentions.1.group_norm.weight"),
            ("down.2.downsample.conv.weight", "down_blocks.2.downsamplers.0.conv.weight"),
            ("mid.block_1.norm1.weight", "mid_block.resnets.0.norm1.weight"),
            ("mid.attn_1.k.bias", "mid_block.attentions.0.to_k.bias"),
            ("mid.block_2.conv2.weight", "mid_block.resnets.1.conv2.weight"),
            ("up.3.block.2.conv1.weight", "up_blocks.0.resnets.2.conv1.weight"),
            ("up.0.block.0.norm2.bias", "up_blocks.3.resnets.0.norm2.bias"),
            ("up.2.attn.1.v.weight", "up_blocks.1.attentions.1.to_v.weight"),
            ("up.1.upsample.conv.bias", "up_blocks.2.upsamplers.0.conv.bias"),
            ("norm_out.weight", "conv_norm_out.weight"),
            ("conv_out.bias", "conv_out.bias"),
        ];
        for (from, to) in cases {
            assert_eq!(rename_original(from, 4).as_deref(), Some(to), "{from}");
        }
        for unknown in [
            "up.4.block.0.conv1.weight",
            "down.0.upsample.conv.weight",
            "logvar",
            "mid.attn_1.x.bias",
        ] {
            assert_eq!(rename_original(unknown, 4), None, "{unknown}");
        }
    }

    #[test]
    fn legacy_attention_names() {
        assert_eq!(
            rename_legacy_attention("mid_block.attentions.0.query.weight"),
            "mid_block.attentions.0.to_q.weight"
        );
        assert_eq!(
            rename_legacy_attention("up_blocks.1.attentions.2.proj_attn.bias"),
            "up_blocks.1.attentions.2.to_out.0.bias"
        );
        assert_eq!(
            rename_legacy_attention("down_blocks.1.attentions.0.group_norm.weight"),
            "down_blocks.1.attentions.0.group_norm.weight"
        );
        assert_eq!(rename_legacy_attention("conv_in.weight"), "conv_in.weight");
    }

    #[test]
    fn the_cifar10_yaml_gives_the_cifar10_config() {
        let yaml = "data:\n    dataset: \"CIFAR10\"\n    image_size: 32\n    channels: 3\nmodel:\n    type: \"simple\"\n    \
                    in_channels: 3\n    out_ch: 3\n    ch: 128\n    ch_mult: [1, 2, 2, 2]\n    num_res_blocks: 2\n    \
                    attn_resolutions: [16, ]\n    dropout: 0.1\n    var_type: fixedlarge\n    ema_rate: 0.9999\n    \
                    ema: True\n    resamp_with_conv: True\ndiffusion:\n    beta_schedule: linear\n    beta_start: 0.0001\n    \
                    beta_end: 0.02\n    num_diffusion_timesteps: 1000\n";
        let c = config_from_original_yaml(yaml).unwrap();
        assert_eq!(c.block_out_channels, [128, 256, 256, 256]);
        assert_eq!(
            c.down_block_types,
            [
                DownBlock::DownBlock2D,
                DownBlock::AttnDownBlock2D,
                DownBlock::DownBlock2D,
                DownBlock::DownBlock2D
            ]
        );
        assert_eq!(
            c.up_block_types,
            [UpBlock::UpBlock2D, UpBlock::UpBlock2D, UpBlock::AttnUpBlock2D, UpBlock::UpBlock2D]
        );
        assert_eq!(c.time_embed_dim, 512);
        let bad = yaml.replace("ch: 128", "ch: many");
        let e = config_from_original_yaml(&bad).unwrap_err().to_string();
        assert!(e.contains("model.ch"), "{e}");
    }
}

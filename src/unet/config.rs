//! The UNet configuration: what `unet::builder` builds from. Read from a diffusers `config.json` (missing keys
//! take diffusers' defaults) or from the official DDIM repository's YAML, validated once, and stored in our
//! weights file.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// A down block of `UNet2DModel`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DownBlock {
    /// `DownBlock2D`: ResNet blocks, then a downsampler.
    DownBlock2D,
    /// `AttnDownBlock2D`: ResNet blocks each followed by self-attention, then a downsampler.
    AttnDownBlock2D,
}

/// An up block of `UNet2DModel`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum UpBlock {
    /// `UpBlock2D`: ResNet blocks over [h, skip], then an upsampler.
    UpBlock2D,
    /// `AttnUpBlock2D`: ResNet blocks each followed by self-attention, then an upsampler.
    AttnUpBlock2D,
}

/// The most resolution levels (entries of `block_out_channels`) a config may have.
pub const MAX_LEVELS: usize = 8;
/// The most ResNet blocks per down block.
pub const MAX_LAYERS_PER_BLOCK: usize = 16;
/// The most channels of any block, input or output (the time embedding may be 4x wider).
pub const MAX_CHANNELS: usize = 8192;
/// The largest `sample_size`.
pub const MAX_SAMPLE_SIZE: usize = 4096;
/// The range of `norm_eps` (group norm's epsilon) this engine runs.
pub const NORM_EPS_RANGE: (f64, f64) = (1e-12, 1.0);
/// The range of `mid_block_scale_factor` this engine runs.
pub const SCALE_FACTOR_RANGE: (f64, f64) = (1e-4, 1e4);

/// A validated `UNet2DModel` configuration (the subset this engine runs).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UNetConfig {
    /// Height and width of the images.
    pub sample_size: usize,
    /// Channels of the input image.
    pub in_channels: usize,
    /// Channels of the output (the predicted noise).
    pub out_channels: usize,
    /// Channels of each resolution level.
    pub block_out_channels: Vec<usize>,
    /// ResNet blocks per down block (up blocks have one more).
    pub layers_per_block: usize,
    /// One per level, highest resolution first.
    pub down_block_types: Vec<DownBlock>,
    /// One per level, lowest resolution first.
    pub up_block_types: Vec<UpBlock>,
    /// Whether the mid block has its attention layer.
    pub mid_block_attention: bool,
    /// Output scale of the mid block's ResNet and attention layers (`mid_block_scale_factor`).
    pub mid_block_scale_factor: f64,
    /// GroupNorm groups of every norm.
    pub norm_num_groups: usize,
    /// GroupNorm groups of the mid block's attention (defaults to `norm_num_groups`).
    pub attn_norm_num_groups: Option<usize>,
    /// GroupNorm epsilon.
    pub norm_eps: f64,
    /// Channels per attention head; `None` means one head spanning all channels.
    pub attention_head_dim: Option<usize>,
    /// 0: pad right and bottom by one, then a stride-2 conv without padding (the original DDPM); 1: pad 1.
    pub downsample_padding: usize,
    /// Swap the sin and cos halves of the timestep embedding.
    pub flip_sin_to_cos: bool,
    /// The embedding's frequency shift (`downscale_freq_shift`).
    pub freq_shift: f64,
    /// Width of the time embedding (`time_embedding_dim`, default `4 * block_out_channels[0]`).
    pub time_embed_dim: usize,
}

impl UNetConfig {
    /// Checks everything the graph builder relies on; the error names the key.
    pub fn validate(&self) -> Result<()> {
        let bad = |msg: String| Err(Error::Config(msg));
        let levels = self.block_out_channels.len();
        if levels == 0 {
            return bad("block_out_channels is empty".into());
        }
        if self.down_block_types.len() != levels || self.up_block_types.len() != levels {
            return bad(format!(
                "{} down and {} up block types for {levels} entries of block_out_channels",
                self.down_block_types.len(),
                self.up_block_types.len()
            ));
        }
        for (key, v) in [
            ("in_channels", self.in_channels),
            ("out_channels", self.out_channels),
            ("layers_per_block", self.layers_per_block),
            ("norm_num_groups", self.norm_num_groups),
            ("time_embedding_dim", self.time_embed_dim),
            ("sample_size", self.sample_size),
        ] {
            if v == 0 {
                return bad(format!("{key} is 0"));
            }
        }
        // Bounds far above any published DDPM/DDIM UNet, so that a hostile config cannot make the graph builder
        // allocate without limit or overflow a shape product.
        if levels > MAX_LEVELS {
            return bad(format!(
                "{levels} entries of block_out_channels; at most {MAX_LEVELS} resolution levels are supported"
            ));
        }
        if self.layers_per_block > MAX_LAYERS_PER_BLOCK {
            return bad(format!(
                "layers_per_block {} is more than the {MAX_LAYERS_PER_BLOCK} supported",
                self.layers_per_block
            ));
        }
        for (key, v, max) in [
            ("in_channels", self.in_channels, MAX_CHANNELS),
            ("out_channels", self.out_channels, MAX_CHANNELS),
            ("time_embedding_dim", self.time_embed_dim, 4 * MAX_CHANNELS),
            ("sample_size", self.sample_size, MAX_SAMPLE_SIZE),
        ]
        .into_iter()
        .chain(self.block_out_channels.iter().map(|&c| ("block_out_channels", c, MAX_CHANNELS)))
        {
            if v > max {
                return bad(format!("{key} {v} is more than the {max} supported"));
            }
        }
        let groups = self.norm_num_groups;
        for &c in &self.block_out_channels {
            if c == 0 || c % groups != 0 {
                return bad(format!(
                    "block_out_channels entry {c} is not a positive multiple of norm_num_groups {groups}"
                ));
            }
            if let Some(d) = self.attention_head_dim
                && (d == 0 || c % d != 0)
            {
                return bad(format!(
                    "attention_head_dim {d} does not divide the {c} channels of a block"
                ));
            }
        }
        if let Some(g) = self.attn_norm_num_groups {
            let c = self.block_out_channels[levels - 1];
            if g == 0 || !c.is_multiple_of(g) {
                return bad(format!(
                    "attn_norm_num_groups {g} does not divide the {c} mid-block channels"
                ));
            }
        }
        let halvings = levels - 1;
        if !self.sample_size.is_multiple_of(1 << halvings) {
            return bad(format!(
                "sample_size {} does not halve cleanly {halvings} times",
                self.sample_size
            ));
        }
        if self.downsample_padding > 1 {
            return bad(format!("downsample_padding {} is not 0 or 1", self.downsample_padding));
        }
        // The kernels take these as f32: eps keeps 1 / sqrt(variance + eps) finite for a constant group (under
        // f32's smallest normal it is 0 there), and the mid block divides by its factor, so a factor near 0 or
        // huge overflows f32. Published models use eps 1e-5 or 1e-6 and factor 1 (sqrt(2) in some).
        if !(NORM_EPS_RANGE.0..=NORM_EPS_RANGE.1).contains(&self.norm_eps) {
            return bad(format!(
                "norm_eps {:e} is outside [{:e}, {}]",
                self.norm_eps, NORM_EPS_RANGE.0, NORM_EPS_RANGE.1
            ));
        }
        if !(SCALE_FACTOR_RANGE.0..=SCALE_FACTOR_RANGE.1).contains(&self.mid_block_scale_factor) {
            return bad(format!(
                "mid_block_scale_factor {:e} is outside [{:e}, {:e}]",
                self.mid_block_scale_factor, SCALE_FACTOR_RANGE.0, SCALE_FACTOR_RANGE.1
            ));
        }
        // One image must fit the host budget: latents and samples are held on the host.
        crate::limits::f32_array(
            "one image of this model",
            &[self.in_channels, self.sample_size, self.sample_size],
        )
        .map_err(|e| Error::Config(e.to_string()))?;
        crate::limits::f32_array(
            "one output of this model",
            &[self.out_channels, self.sample_size, self.sample_size],
        )
        .map_err(|e| Error::Config(e.to_string()))?;
        let half = self.block_out_channels[0] / 2;
        if !self.freq_shift.is_finite() || half as f64 - self.freq_shift <= 0.0 {
            return bad(format!(
                "freq_shift {} leaves no frequencies for a {}-wide embedding",
                self.freq_shift, self.block_out_channels[0]
            ));
        }
        Ok(())
    }

    /// Parses a diffusers `UNet2DModel` config.json. Missing keys take diffusers' defaults; keys that select
    /// something this engine does not run (cross-attention blocks, class embeddings, Fourier embeddings, ...)
    /// are refused, naming the key.
    pub fn from_diffusers_json(text: &str) -> Result<Self> {
        let raw: DiffusersConfig =
            serde_json::from_str(text).map_err(|e| Error::Config(format!("config.json: {e}")))?;
        raw.into_config()
    }
}

fn default_sample_size() -> usize {
    64
}
fn three() -> usize {
    3
}
fn default_true() -> bool {
    true
}
fn default_down() -> Vec<String> {
    ["DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"]
        .map(String::from)
        .to_vec()
}
fn default_up() -> Vec<String> {
    ["AttnUpBlock2D", "AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D"].map(String::from).to_vec()
}
fn default_channels() -> Vec<usize> {
    vec![224, 448, 672, 896]
}
fn two() -> usize {
    2
}
fn one_f() -> f64 {
    1.0
}
fn one() -> usize {
    1
}
fn thirty_two() -> usize {
    32
}
fn default_eps() -> f64 {
    1e-5
}
fn default_head_dim() -> Option<usize> {
    Some(8)
}

/// diffusers' `UNet2DModel.__init__` arguments with their defaults (diffusers 0.42).
#[derive(Deserialize)]
struct DiffusersConfig {
    #[serde(rename = "_class_name", default)]
    class_name: Option<String>,
    #[serde(default = "default_sample_size")]
    sample_size: usize,
    #[serde(default = "three")]
    in_channels: usize,
    #[serde(default = "three")]
    out_channels: usize,
    #[serde(default)]
    center_input_sample: bool,
    #[serde(default)]
    time_embedding_type: Option<String>,
    #[serde(default)]
    time_embedding_dim: Option<usize>,
    #[serde(default)]
    freq_shift: f64,
    #[serde(default = "default_true")]
    flip_sin_to_cos: bool,
    #[serde(default = "default_down")]
    down_block_types: Vec<String>,
    #[serde(default)]
    mid_block_type: Option<String>,
    #[serde(default = "default_up")]
    up_block_types: Vec<String>,
    #[serde(default = "default_channels")]
    block_out_channels: Vec<usize>,
    #[serde(default = "two")]
    layers_per_block: usize,
    #[serde(default = "one_f")]
    mid_block_scale_factor: f64,
    #[serde(default = "one")]
    downsample_padding: usize,
    #[serde(default)]
    downsample_type: Option<String>,
    #[serde(default)]
    upsample_type: Option<String>,
    #[serde(default)]
    act_fn: Option<String>,
    #[serde(default = "default_head_dim")]
    attention_head_dim: Option<usize>,
    #[serde(default = "thirty_two")]
    norm_num_groups: usize,
    #[serde(default)]
    attn_norm_num_groups: Option<usize>,
    #[serde(default = "default_eps")]
    norm_eps: f64,
    #[serde(default)]
    resnet_time_scale_shift: Option<String>,
    #[serde(default = "default_true")]
    add_attention: bool,
    #[serde(default)]
    class_embed_type: Option<String>,
    #[serde(default)]
    num_class_embeds: Option<usize>,
}

impl DiffusersConfig {
    fn into_config(self) -> Result<UNetConfig> {
        let refuse = |key: &str, value: &str| {
            Err(Error::Config(format!(
                "config.json: {key} = {value} is not supported (this engine runs UNet2DModel with positional \
                 time embeddings, DownBlock2D/AttnDownBlock2D/UpBlock2D/AttnUpBlock2D and UNetMidBlock2D)"
            )))
        };
        if let Some(c) = &self.class_name
            && c != "UNet2DModel"
        {
            return refuse("_class_name", c);
        }
        let is = |v: &Option<String>, default: &str| v.as_deref().is_none_or(|s| s == default);
        if !is(&self.time_embedding_type, "positional") {
            return refuse(
                "time_embedding_type",
                self.time_embedding_type.as_deref().unwrap_or(""),
            );
        }
        if !is(&self.mid_block_type, "UNetMidBlock2D") {
            return refuse("mid_block_type", self.mid_block_type.as_deref().unwrap_or(""));
        }
        for (key, v) in
            [("downsample_type", &self.downsample_type), ("upsample_type", &self.upsample_type)]
        {
            if !is(v, "conv") {
                return refuse(key, v.as_deref().unwrap_or(""));
            }
        }
        if !is(&self.act_fn, "silu") {
            return refuse("act_fn", self.act_fn.as_deref().unwrap_or(""));
        }
        if !is(&self.resnet_time_scale_shift, "default") {
            return refuse(
                "resnet_time_scale_shift",
                self.resnet_time_scale_shift.as_deref().unwrap_or(""),
            );
        }
        if let Some(c) = &self.class_embed_type {
            return refuse("class_embed_type", c);
        }
        if let Some(n) = self.num_class_embeds {
            return refuse("num_class_embeds", &n.to_string());
        }
        if self.center_input_sample {
            return refuse("center_input_sample", "true");
        }
        let down = self
            .down_block_types
            .iter()
            .map(|s| match s.as_str() {
                "DownBlock2D" => Ok(DownBlock::DownBlock2D),
                "AttnDownBlock2D" => Ok(DownBlock::AttnDownBlock2D),
                other => Err(Error::Config(format!(
                    "config.json: down block type {other} is not supported (DownBlock2D, AttnDownBlock2D)"
                ))),
            })
            .collect::<Result<Vec<_>>>()?;
        let up = self
            .up_block_types
            .iter()
            .map(|s| match s.as_str() {
                "UpBlock2D" => Ok(UpBlock::UpBlock2D),
                "AttnUpBlock2D" => Ok(UpBlock::AttnUpBlock2D),
                other => Err(Error::Config(format!(
                    "config.json: up block type {other} is not supported (UpBlock2D, AttnUpBlock2D)"
                ))),
            })
            .collect::<Result<Vec<_>>>()?;
        let first = self.block_out_channels.first().copied().unwrap_or(0);
        let config = UNetConfig {
            sample_size: self.sample_size,
            in_channels: self.in_channels,
            out_channels: self.out_channels,
            block_out_channels: self.block_out_channels,
            layers_per_block: self.layers_per_block,
            down_block_types: down,
            up_block_types: up,
            mid_block_attention: self.add_attention,
            mid_block_scale_factor: self.mid_block_scale_factor,
            norm_num_groups: self.norm_num_groups,
            attn_norm_num_groups: self.attn_norm_num_groups,
            norm_eps: self.norm_eps,
            attention_head_dim: self.attention_head_dim,
            downsample_padding: self.downsample_padding,
            flip_sin_to_cos: self.flip_sin_to_cos,
            freq_shift: self.freq_shift,
            time_embed_dim: self.time_embedding_dim.unwrap_or(first.saturating_mul(4)),
        };
        config.validate()?;
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CIFAR10: &str = r#"{
        "_class_name": "UNet2DModel", "act_fn": "silu", "attention_head_dim": null,
        "block_out_channels": [128, 256, 256, 256], "center_input_sample": false,
        "down_block_types": ["DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"],
        "downsample_padding": 0, "flip_sin_to_cos": false, "freq_shift": 1, "in_channels": 3,
        "layers_per_block": 2, "mid_block_scale_factor": 1, "norm_eps": 1e-06, "norm_num_groups": 32,
        "out_channels": 3, "sample_size": 32, "time_embedding_type": "positional",
        "up_block_types": ["UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"]
    }"#;

    #[test]
    fn reads_the_cifar10_config() {
        let c = UNetConfig::from_diffusers_json(CIFAR10).unwrap();
        assert_eq!(c.block_out_channels, [128, 256, 256, 256]);
        assert_eq!(c.attention_head_dim, None);
        assert_eq!(c.downsample_padding, 0);
        assert_eq!(c.time_embed_dim, 512);
        assert!(!c.flip_sin_to_cos);
        assert_eq!(c.freq_shift, 1.0);
    }

    #[test]
    fn missing_keys_take_diffusers_defaults() {
        let c = UNetConfig::from_diffusers_json(
            r#"{"block_out_channels": [32, 64], "down_block_types": ["DownBlock2D", "AttnDownBlock2D"],
                "up_block_types": ["AttnUpBlock2D", "UpBlock2D"], "sample_size": 16}"#,
        )
        .unwrap();
        assert_eq!(c.attention_head_dim, Some(8));
        assert_eq!(c.norm_eps, 1e-5);
        assert!(c.flip_sin_to_cos);
        assert_eq!(c.freq_shift, 0.0);
        assert_eq!(c.downsample_padding, 1);
        assert_eq!(c.layers_per_block, 2);
    }

    #[test]
    fn unsupported_blocks_and_keys_are_named() {
        let cross = CIFAR10.replace(
            "\"DownBlock2D\", \"AttnDownBlock2D\"",
            "\"CrossAttnDownBlock2D\", \"AttnDownBlock2D\"",
        );
        let e = UNetConfig::from_diffusers_json(&cross).unwrap_err().to_string();
        assert!(e.contains("CrossAttnDownBlock2D"), "{e}");
        let class = CIFAR10.replace("\"act_fn\": \"silu\"", "\"num_class_embeds\": 10");
        let e = UNetConfig::from_diffusers_json(&class).unwrap_err().to_string();
        assert!(e.contains("num_class_embeds"), "{e}");
        let fourier = CIFAR10.replace("\"positional\"", "\"fourier\"");
        let e = UNetConfig::from_diffusers_json(&fourier).unwrap_err().to_string();
        assert!(e.contains("time_embedding_type"), "{e}");
        let groups = CIFAR10.replace("\"norm_num_groups\": 32", "\"norm_num_groups\": 48");
        let e = UNetConfig::from_diffusers_json(&groups).unwrap_err().to_string();
        assert!(e.contains("norm_num_groups"), "{e}");
        let size = CIFAR10.replace("\"sample_size\": 32", "\"sample_size\": 36");
        let e = UNetConfig::from_diffusers_json(&size).unwrap_err().to_string();
        assert!(e.contains("halve"), "{e}");
    }
}

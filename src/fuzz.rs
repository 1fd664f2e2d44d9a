//! The entry points of the fuzz targets in `fuzz/` (cargo-fuzz), one per parser of outside input. The regression
//! tests (`tests/fuzz_corpus.rs`) replay the committed corpora through these same functions, so CI checks every
//! input the fuzzers ever kept or crashed on without running a fuzzer.
//!
//! Each function feeds arbitrary bytes to one parser and checks what every parser of outside input promises:
//! it returns (no panic, no abort, no unbounded allocation: the fuzzers and the replay test run under
//! [`CappedAllocator`]) and any error is one non-empty line. A broken promise panics, which the fuzzer reports
//! as a crash.

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::HashMap;
use std::io::Write;

use crate::error::Error;
use crate::io;
use crate::model::convert::{
    config_from_original_yaml, parse_safetensors, training_from_original_yaml,
    training_from_scheduler_json,
};
use crate::model::torch::{pickled_shapes, read_checkpoint};
use crate::model::weights::Weights;
use crate::unet::config::UNetConfig;

/// A fuzz target's entry point: arbitrary bytes in, a panic on a broken promise.
pub type Target = fn(&[u8]);

/// The fuzz targets, by name: the name of each cargo-fuzz target and of its corpus folders.
pub const TARGETS: &[(&str, Target)] = &[
    ("pickle", pickle),
    ("checkpoint", checkpoint),
    ("weights", weights),
    ("model_file", model_file),
    ("npy", npy),
    ("yaml", yaml),
    ("json_config", json_config),
    ("image", image),
];

/// Panics unless a parser's result keeps the promise: success, or an error of one non-empty line.
fn check<T>(target: &str, result: Result<T, Error>) {
    if let Err(e) = result {
        let line = e.to_string();
        assert!(
            !line.is_empty() && !line.contains('\n'),
            "{target}: the error is not one line: {line:?}"
        );
    }
}

/// The restricted pickle machine over a `data.pkl`.
pub fn pickle(data: &[u8]) {
    check("pickle", pickled_shapes(data));
}

/// A whole PyTorch checkpoint: zip container, pickle, tensor storages.
pub fn checkpoint(data: &[u8]) {
    check("checkpoint", read_checkpoint(data));
}

/// Our weights file (safetensors header, metadata, checksum, config and training JSON, every tensor against
/// the graph), and the same bytes as a diffusers model's third-party safetensors file.
pub fn weights(data: &[u8]) {
    check("weights", Weights::from_bytes(data));
    check("weights", parse_safetensors(data, "fuzz.safetensors"));
}

/// Our weights file as a model maker writes it, from a description in the fuzz input (see
/// [`model_file_bytes`]): the checksum and the JSON are always valid, so every input gets past them to what a
/// raw-bytes fuzzer rarely reaches: config validation, the tensors against the graph the config builds, the
/// training schedule, and, for a file that loads, the graph's shape inference and the sampler's step plan for
/// a step count and eta from the input.
pub fn model_file(data: &[u8]) {
    let mut input = Input(data);
    let Some(bytes) = model_file_bytes(&mut input) else { return };
    let loaded = Weights::from_bytes(&bytes);
    let Ok(weights) = loaded else {
        return check("model_file", loaded);
    };
    let graph = crate::unet::builder::build(&weights.config);
    let Ok(graph) = graph else {
        return check("model_file", graph);
    };
    for node in &graph.nodes {
        let elements = graph.shape(node.output).iter().try_fold(1usize, |n, &d| n.checked_mul(d));
        assert!(elements.is_some(), "model_file: a node's shape overflows: {}", node.name);
    }
    let mut settings = crate::pipeline::default_settings(weights.training.as_ref());
    settings.steps = 1 + input.byte() as usize * 4;
    settings.eta = [0.0, 0.5, 1.0, 1.5, 1e20, f64::NAN][input.byte() as usize % 6];
    check("model_file", crate::pipeline::check_settings(&settings));
}

/// Bytes of a fuzz input read in order, zero past the end.
pub struct Input<'a>(pub &'a [u8]);

impl Input<'_> {
    /// The next byte (0 past the end).
    pub fn byte(&mut self) -> u8 {
        let (first, rest) = self.0.split_first().unwrap_or((&0, &[]));
        self.0 = rest;
        *first
    }

    /// One of `choices`, picked by the next byte.
    pub fn pick<T: Copy>(&mut self, choices: &[T]) -> T {
        choices[self.byte() as usize % choices.len()]
    }
}

/// Writes a weights file from a description read from `input`: a small UNet config (each number usually in a
/// sane small range, sometimes an edge: 0, a huge count, a non-finite or tiny float), a training schedule (any
/// of the four kinds, with edge betas), tensors made for that config (or, when it is refused, for a small valid
/// one), then zero or more damages to the tensors (one dropped, renamed, reshaped, given a NaN), stored as f32
/// or f16 with a valid checksum. `None` when the description cannot be serialised (an f16 overflow).
pub fn model_file_bytes(input: &mut Input) -> Option<Vec<u8>> {
    use crate::diffusion::schedule::{BetaSchedule, TrainingSchedule};
    use crate::diffusion::step::{Prediction, Threshold};
    use crate::diffusion::timesteps::Spacing;
    use crate::model::weights::{SamplingDefaults, StorageDtype, Training};

    let config = describe_config(input);
    let train_steps = count(input, &[10, 1000]);
    let (start, end) = (real(input, 1e-4), real(input, 0.02));
    let betas = match input.byte() % 5 {
        0 => BetaSchedule::Linear { start, end },
        1 => BetaSchedule::ScaledLinear { start, end },
        2 => BetaSchedule::SquaredcosCapV2,
        3 => BetaSchedule::Trained {
            betas: (0..train_steps.min(64)).map(|i| real(input, 0.01 + i as f64 * 1e-3)).collect(),
        },
        _ => BetaSchedule::Linear { start: 0.2, end: 0.3 },
    };
    let training = (!input.byte().is_multiple_of(4)).then(|| Training {
        schedule: TrainingSchedule { betas, train_steps, zero_snr: input.byte().is_multiple_of(5) },
        prediction: input.pick(&[Prediction::Epsilon, Prediction::V, Prediction::Sample]),
        steps_offset: count(input, &[0, 1]),
        set_alpha_to_one: input.byte().is_multiple_of(2),
        sampling: SamplingDefaults::default(),
    });
    // Tensors for the config if it is valid and small; else those of a small valid model, which the loader
    // must then find do not fit the config (if the config gets past validation at all).
    let seed = input.byte() as u64;
    let small = crate::unet::builder::build(&config).is_ok_and(|graph| {
        let count = graph.params().iter().map(|(_, s)| s.iter().product::<usize>()).sum::<usize>();
        count <= 1 << 14
    });
    let make = |config: &UNetConfig, seed: u64| {
        // Random weights are most of an execution's time and depend only on (config, seed): kept for reuse.
        thread_local! {
            static MADE: std::cell::RefCell<HashMap<String, Option<Weights>>> = Default::default();
        }
        let key = format!("{seed} {config:?}");
        MADE.with_borrow_mut(|made| {
            if made.len() > 512 {
                made.clear();
            }
            let w = made.entry(key).or_insert_with(|| Weights::random(config, seed).ok());
            w.as_ref().map(|w| w.tensors.clone())
        })
    };
    let tensors = small
        .then(|| make(&config, seed))
        .flatten()
        .or_else(|| make(&describe_config(&mut Input(&[])), 0))
        .expect("the empty description is a valid config");
    let mut weights = Weights { config, training, tensors };
    for _ in 0..input.byte() % 4 {
        let names: Vec<String> = weights.tensors.keys().cloned().collect();
        if names.is_empty() {
            break;
        }
        let name = names[input.byte() as usize % names.len()].clone();
        match input.byte() % 4 {
            0 => {
                weights.tensors.remove(&name);
            }
            1 => {
                let t = weights.tensors.remove(&name).expect("listed");
                weights.tensors.insert(format!("{name}.x"), t);
            }
            2 => {
                let t = weights.tensors.get_mut(&name).expect("listed");
                if let Some(d) = t.shape.first_mut() {
                    *d += 1;
                    t.data.resize(t.shape.iter().product(), 0.5);
                }
            }
            _ => {
                let t = weights.tensors.get_mut(&name).expect("listed");
                if let Some(v) = t.data.first_mut() {
                    *v = f32::NAN;
                }
            }
        }
    }
    let dtype = if input.byte().is_multiple_of(2) { StorageDtype::F32 } else { StorageDtype::F16 };
    // The sampling defaults last, so that descriptions written before they existed (which end before these
    // bytes: an exhausted input reads zeros) still make the files they made.
    if let Some(t) = weights.training.as_mut() {
        let spacing = [
            Spacing::Leading,
            Spacing::Linspace,
            Spacing::Trailing,
            Spacing::Uniform,
            Spacing::Quad,
        ];
        t.sampling =
            SamplingDefaults { spacing: input.pick(&spacing), clip: None, threshold: None };
        match input.byte() % 4 {
            1 => t.sampling.clip = Some(real(input, 1.0) as f32),
            2 => {
                t.sampling.threshold = Some(Threshold {
                    ratio: real(input, 0.995) as f32,
                    max_value: real(input, 1.0) as f32,
                })
            }
            // Both, which the loader must refuse.
            3 => {
                t.sampling.clip = Some(real(input, 1.0) as f32);
                t.sampling.threshold = Some(Threshold { ratio: 0.995, max_value: 1.0 });
            }
            _ => {}
        }
    }
    weights.to_bytes(dtype).ok()
}

/// A count from the input: usually one of `sane`, sometimes an edge (0, 2^20, usize::MAX).
fn count(input: &mut Input, sane: &[usize]) -> usize {
    if input.byte() < 240 { input.pick(sane) } else { input.pick(&[0, 1 << 20, usize::MAX]) }
}

/// A float from the input: usually `sane`, sometimes an edge (0, -1, the smallest subnormal, 1e300, NaN,
/// infinity).
fn real(input: &mut Input, sane: f64) -> f64 {
    match input.byte() {
        0..=239 => sane,
        b => [0.0, -1.0, 5e-324, 1e300, f64::NAN, f64::INFINITY][b as usize % 6],
    }
}

/// A UNet config from the input: a few small levels, each number usually sane. An empty input describes a
/// valid one-level model of 4 channels on 8x8 grey images.
fn describe_config(input: &mut Input) -> UNetConfig {
    use crate::unet::config::{DownBlock, UpBlock};
    let levels = input.pick(&[1usize, 1, 2, 2, 3, 0, 9]);
    let channels: Vec<usize> = (0..levels).map(|_| count(input, &[4, 8])).collect();
    let attention: Vec<bool> = (0..levels).map(|_| !input.byte().is_multiple_of(2)).collect();
    UNetConfig {
        sample_size: count(input, &[8, 16, 4096]),
        in_channels: count(input, &[1, 3, 4, 8192]),
        out_channels: count(input, &[1, 3, 4]),
        block_out_channels: channels.clone(),
        layers_per_block: count(input, &[1, 2]),
        down_block_types: attention
            .iter()
            .map(|&a| if a { DownBlock::AttnDownBlock2D } else { DownBlock::DownBlock2D })
            .collect(),
        up_block_types: attention
            .iter()
            .rev()
            .map(|&a| if a { UpBlock::AttnUpBlock2D } else { UpBlock::UpBlock2D })
            .collect(),
        mid_block_attention: input.byte().is_multiple_of(2),
        mid_block_scale_factor: real(input, 1.0),
        norm_num_groups: count(input, &[2, 4]),
        attn_norm_num_groups: None,
        norm_eps: real(input, 1e-6),
        attention_head_dim: Some(count(input, &[2, 4])),
        downsample_padding: count(input, &[0, 1]),
        flip_sin_to_cos: input.byte().is_multiple_of(2),
        freq_shift: real(input, 1.0),
        time_embed_dim: channels.first().map_or(16, |c| c.saturating_mul(4)),
    }
}

/// A `.npy` array (`--input`, `--latent`, `--image x.npy`, `ddim merge`).
pub fn npy(data: &[u8]) {
    check("npy", io::parse_npy(data, "fuzz.npy"));
}

/// The official repository's YAML: the model and the diffusion sections.
pub fn yaml(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        check("yaml", config_from_original_yaml(text));
        check("yaml", training_from_original_yaml(text));
    }
}

/// diffusers JSON: a UNet2DModel `config.json` and a `scheduler_config.json`.
pub fn json_config(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        check("json_config", UNetConfig::from_diffusers_json(text));
        check("json_config", training_from_scheduler_json(text, "scheduler_config.json"));
    }
}

/// An image file for `--image` (what this build decodes: PNG), at both channel counts, resized and not.
pub fn image(data: &[u8]) {
    check("image", io::decode_image(data, "fuzz.png", 3, 32, true));
    check("image", io::decode_image(data, "fuzz.png", 1, 28, false));
}

/// The global allocator of the fuzz targets: the system allocator, aborting on any single allocation larger
/// than `LIMIT` bytes. A parser that allocates for what a header claims, rather than for what the input holds,
/// is then reported as a crash even where the machine could satisfy the request, and without a sanitizer's
/// malloc hooks (the targets run uninstrumented for speed; the crate has no `unsafe` code to check).
pub struct CappedAllocator<const LIMIT: usize>;

// SAFETY: every method forwards to `System` with the caller's arguments unchanged, or aborts; it never returns
// memory `System` did not hand out.
unsafe impl<const LIMIT: usize> GlobalAlloc for CappedAllocator<LIMIT> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        check_size::<LIMIT>(layout.size());
        // SAFETY: forwarded unchanged (see the impl).
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        check_size::<LIMIT>(layout.size());
        // SAFETY: forwarded unchanged.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        check_size::<LIMIT>(new_size);
        // SAFETY: forwarded unchanged.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged.
        unsafe { System.dealloc(ptr, layout) }
    }
}

/// Aborts (which libFuzzer reports as a crash, saving the input) when `size` is over `LIMIT`. Allocation-free:
/// it runs inside the allocator.
fn check_size<const LIMIT: usize>(size: usize) {
    if size <= LIMIT {
        return;
    }
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut n = size;
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(b"fuzz: refused a single allocation of ");
    let _ = err.write_all(&digits[at..]);
    let _ = err.write_all(b" bytes: a parser allocates for what its input claims\n");
    std::process::abort();
}

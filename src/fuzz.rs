//! The entry points of the fuzz targets in `fuzz/` (cargo-fuzz), one per parser of outside input. The regression
//! tests (`tests/fuzz_corpus.rs`) replay the committed corpora through these same functions, so CI checks every
//! input the fuzzers ever kept or crashed on without running a fuzzer.
//!
//! Each function feeds arbitrary bytes to one parser and checks what every parser of outside input promises:
//! it returns (no panic, no abort, no unbounded allocation: the fuzzers and the replay test run under
//! [`CappedAllocator`]) and any error is one non-empty line. A broken promise panics, which the fuzzer reports
//! as a crash.

use std::alloc::{GlobalAlloc, Layout, System};
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

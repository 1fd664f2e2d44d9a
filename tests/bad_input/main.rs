//! The bad-input suite: one test per class of hostile or broken input. Each ends in an error of one
//! line that names the problem; through the CLI also a non-zero exit code and no output file, not even a
//! partial one (outputs are staged to temporary files and renamed into place only when all are ready).

#[path = "../support/mod.rs"]
mod support;

mod checkpoints;
mod hostile;

use support::{ddim, error_line, fixture, gpu_required, small_config, temp_dir};

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use ddim_wgpu::model::weights::{StorageDtype, Weights};
use ddim_wgpu::unet::config::UNetConfig;

/// A one-level model small enough that a test can try every byte of its file.
fn small_model() -> Weights {
    Weights::random(&small_config(&[4]), 3).unwrap()
}

fn load_err(bytes: &[u8]) -> String {
    let e = Weights::from_bytes(bytes).expect_err("a damaged file must be refused").to_string();
    assert!(!e.is_empty() && !e.contains('\n'), "not one line: {e:?}");
    e
}

/// Asserts a CLI run failed with a non-zero exit code (1; 2 for a flag clap rejects), one error line containing `expected`, and left none of `outputs`
/// (nor any staged temporary file in their directories).
fn assert_refused(out: &std::process::Output, expected: &str, outputs: &[&Path]) {
    assert!(
        matches!(out.status.code(), Some(1 | 2)),
        "{:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let line = error_line(out);
    assert!(line.contains(expected), "expected `{expected}` in: {line}");
    for p in outputs {
        assert!(!p.exists(), "{} was written by a failed run", p.display());
        if let Some(dir) = p.parent().filter(|d| d.is_dir()) {
            let partial: Vec<_> = std::fs::read_dir(dir)
                .unwrap()
                .filter_map(|e| e.ok())
                .filter(|e| is_staging(&e.file_name().to_string_lossy()))
                .collect();
            assert!(partial.is_empty(), "staged files left in {}", dir.display());
        }
    }
}

/// A staging file's name: ours (`.ddim-<random>.partial`, `.probe`, `.old`) or the old pattern
/// (`.<name>.partial-<pid>`).
fn is_staging(name: &str) -> bool {
    name.starts_with(".ddim-") || name.contains(".partial-")
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A model file for the CLI tests.
fn model_file(dir: &Path) -> PathBuf {
    let path = dir.join("model.safetensors");
    small_model().save(&path, StorageDtype::F16).unwrap();
    path
}

/// True when the CLI found no adapter and none is required (the GPU-dependent part of a test then stops).
fn no_gpu(out: &std::process::Output) -> bool {
    !out.status.success()
        && !gpu_required()
        && String::from_utf8_lossy(&out.stderr).contains("no GPU adapter")
}

#[test]
fn a_weights_file_truncated_anywhere_is_refused() {
    let bytes = small_model().to_bytes(StorageDtype::F16).unwrap();
    for len in 0..bytes.len() {
        load_err(&bytes[..len]);
    }
    // Through the CLI: exit code 1, one line, no output.
    let dir = temp_dir("bad-truncated");
    let cut = dir.join("cut.safetensors");
    std::fs::write(&cut, &bytes[..bytes.len() - 1000]).unwrap();
    let png = dir.join("x.png");
    let out = ddim(&["sample", "--model", s(&cut), "--out", s(&png)]);
    assert_refused(&out, "not a valid safetensors file", &[&png]);
    std::fs::remove_dir_all(&dir).ok();
}

/// Every one of the file's bits, flipped alone, is refused: in the data or the config by the checksum (format
/// version 2), in the header's structure by the safetensors and JSON parsers and the validation against the
/// graph. None loads as a different model.
#[test]
fn every_single_bit_flip_of_a_weights_file_is_refused() {
    let bytes = small_model().to_bytes(StorageDtype::F16).unwrap();
    let mut flipped = bytes.clone();
    let mut checksum_errors = 0;
    for bit in 0..bytes.len() * 8 {
        flipped[bit / 8] ^= 1 << (bit % 8);
        let e = load_err(&flipped);
        checksum_errors += e.contains("checksum") as usize;
        flipped[bit / 8] = bytes[bit / 8];
    }
    // Most flips land in the tensor data, which only the checksum can catch.
    assert!(checksum_errors > bytes.len() * 8 / 2, "{checksum_errors}");
    println!(
        "{} bytes: {} single-bit flips refused, {checksum_errors} of them by the checksum",
        bytes.len(),
        bytes.len() * 8
    );
}

/// Builds a safetensors file with our metadata (format version 1, which has no checksum, so that the checks
/// behind it are reached) from `(name, dtype, shape, bytes)`.
fn version1_file(
    config: &UNetConfig,
    tensors: &[(String, safetensors::Dtype, Vec<usize>, Vec<u8>)],
) -> Vec<u8> {
    let views = tensors.iter().map(|(n, d, shape, b)| {
        (n.as_str(), safetensors::tensor::TensorView::new(*d, shape.clone(), b).unwrap())
    });
    let meta = HashMap::from([
        ("format".to_string(), "ddim-wgpu".to_string()),
        ("format_version".to_string(), "1".to_string()),
        ("config".to_string(), serde_json::to_string(config).unwrap()),
    ]);
    safetensors::serialize(views, Some(meta)).unwrap()
}

fn f32_tensors(w: &Weights) -> Vec<(String, safetensors::Dtype, Vec<usize>, Vec<u8>)> {
    w.tensors
        .iter()
        .map(|(n, t)| {
            let b = t.data.iter().flat_map(|v| v.to_le_bytes()).collect();
            (n.clone(), safetensors::Dtype::F32, t.shape.clone(), b)
        })
        .collect()
}

#[test]
fn a_tensor_of_the_wrong_dtype_is_refused() {
    let w = small_model();
    // The version 1 layout loads as it is.
    Weights::from_bytes(&version1_file(&w.config, &f32_tensors(&w))).unwrap();
    for dtype in [safetensors::Dtype::BF16, safetensors::Dtype::I64, safetensors::Dtype::U8] {
        let mut t = f32_tensors(&w);
        let entry = t.iter_mut().find(|e| e.0 == "conv_in.bias").unwrap();
        let n: usize = entry.2.iter().product();
        entry.1 = dtype;
        entry.3 = vec![0; n * dtype.bitsize() / 8];
        let e = load_err(&version1_file(&w.config, &t));
        assert!(e.contains("conv_in.bias") && e.contains("dtype"), "{e}");
    }
}

#[test]
fn a_tensor_of_the_wrong_shape_is_refused() {
    let mut w = small_model();
    w.tensors.get_mut("conv_in.weight").unwrap().shape = vec![4, 1, 9];
    let e = load_err(&w.to_bytes(StorageDtype::F32).unwrap());
    assert!(e.contains("conv_in.weight") && e.contains("shape"), "{e}");
    // A config that contradicts the tensors: the first tensor that does not fit is named.
    let mut w = small_model();
    w.config.block_out_channels = vec![6];
    let e = load_err(&w.to_bytes(StorageDtype::F32).unwrap());
    assert!(e.starts_with("weight `") && e.contains("shape"), "{e}");
}

#[test]
fn missing_and_extra_tensors_are_named() {
    let mut w = small_model();
    w.tensors.remove("mid_block.attentions.0.to_k.bias");
    let e = load_err(&w.to_bytes(StorageDtype::F32).unwrap());
    assert!(e.contains("mid_block.attentions.0.to_k.bias") && e.contains("missing"), "{e}");
    let mut w = small_model();
    let extra = w.tensors["conv_in.bias"].clone();
    w.tensors.insert("class_embedding.weight".into(), extra);
    let e = load_err(&w.to_bytes(StorageDtype::F32).unwrap());
    assert!(e.contains("class_embedding.weight"), "{e}");
}

/// Policy: a weight that is NaN or infinite is refused, not warned about. One such value turns every image
/// the model makes into NaN (or, through a norm, into noise), so loading it could only produce wrong images.
#[test]
fn nan_or_infinite_weights_are_refused() {
    for (value, word) in [(f32::NAN, "NaN"), (f32::INFINITY, "inf"), (f32::NEG_INFINITY, "inf")] {
        let mut w = small_model();
        w.tensors.get_mut("conv_out.bias").unwrap().data[0] = value;
        let e = load_err(&w.to_bytes(StorageDtype::F32).unwrap());
        assert!(e.contains("conv_out.bias") && e.contains(word), "{value}: {e}");
    }
    // A weight beyond f16's range (1e5; the largest is 65504) would be stored as inf: it is refused when
    // saving instead, so that no file is written that its own loader refuses.
    let mut w = small_model();
    w.tensors.get_mut("conv_out.bias").unwrap().data[0] = 1e5;
    let e = w.to_bytes(StorageDtype::F16).unwrap_err().to_string();
    assert!(e.contains("conv_out.bias") && e.contains("beyond f16's range"), "{e}");
}

#[test]
fn unsupported_block_types_are_named() {
    let dir = temp_dir("bad-blocks");
    let model = dir.join("model");
    std::fs::create_dir_all(&model).unwrap();
    let src = PathBuf::from(fixture("pad0_onehead_safetensors/model"));
    std::fs::copy(
        src.join("diffusion_pytorch_model.safetensors"),
        model.join("diffusion_pytorch_model.safetensors"),
    )
    .unwrap();
    let config = std::fs::read_to_string(src.join("config.json")).unwrap();
    let out_file = dir.join("out.safetensors");
    for (from, to, expected) in [
        ("\"AttnDownBlock2D\"", "\"CrossAttnDownBlock2D\"", "CrossAttnDownBlock2D"),
        ("\"UpBlock2D\"", "\"ResnetUpsampleBlock2D\"", "ResnetUpsampleBlock2D"),
    ] {
        assert!(config.contains(from));
        std::fs::write(model.join("config.json"), config.replacen(from, to, 1)).unwrap();
        let out = ddim(&["convert", s(&model), "--out", s(&out_file)]);
        assert_refused(&out, expected, &[&out_file]);
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_pickle_naming_a_global_outside_the_allow_list_is_refused_unexecuted() {
    let dir = temp_dir("bad-pickle");
    let out_file = dir.join("h.safetensors");
    let out = ddim(&[
        "convert",
        &fixture("hostile.bin"),
        "--config",
        &fixture("original_ckpt/config.yml"),
        "--out",
        s(&out_file),
    ]);
    // os.system pickles as posix.system on Linux (nt.system on Windows).
    assert_refused(&out, "system", &[&out_file]);
    assert!(error_line(&out).contains("refusing"));
    // The payload is `echo this must never run`.
    assert!(!String::from_utf8_lossy(&out.stdout).contains("must never run"));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_damaged_checkpoint_or_mismatched_config_is_refused() {
    let dir = temp_dir("bad-ckpt");
    let out_file = dir.join("w.safetensors");
    // A YAML config given for a checkpoint, but a JSON file.
    let out = ddim(&[
        "convert",
        &fixture("original_ckpt/model-1000.ckpt"),
        "--config",
        &fixture("pad1_multihead_bin/model/config.json"),
        "--out",
        s(&out_file),
    ]);
    assert_refused(&out, "YAML", &[&out_file]);
    // A checkpoint cut in half.
    let bytes = std::fs::read(fixture("original_ckpt/model-1000.ckpt")).unwrap();
    let cut = dir.join("cut.ckpt");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let out = ddim(&[
        "convert",
        s(&cut),
        "--config",
        &fixture("original_ckpt/config.yml"),
        "--out",
        s(&out_file),
    ]);
    assert_refused(&out, "checkpoint:", &[&out_file]);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn impossible_flags_are_refused() {
    let dir = temp_dir("bad-flags");
    let model = model_file(&dir);
    let png = dir.join("x.png");
    let cases: &[(&[&str], &str)] = &[
        (&["--steps", "0"], "steps is 0"),
        (&["--steps", "1001"], "more than the model's 1000 training steps"),
        (&["--eta", "-0.5"], "eta must be finite and >= 0"),
        (&["--eta", "nan"], "eta must be finite and >= 0"),
        (&["--shard", "3/2"], "need 0 <= i < n"),
        (&["--shard", "0/0"], "need 0 <= i < n"),
        (&["--batch", "0"], "nothing to sample"),
        (&["--batch", "2", "--shard", "0/3"], "more shards than the 2 images"),
        (&["--spacing", "cosine"], "unknown spacing `cosine`"),
        (&["--train-steps", "1000000000000"], "need 1 ..= 100000"),
        (&["--clip-sample", "1", "--threshold", "0.995,1.5"], "exclude each other"),
        (&["--precision", "f8"], "precision `f8`: expected f32 or f16"),
        (
            &["--precision", "f16", "--kernels", "cpu"],
            "f16 precision runs the GPU family's kernels",
        ),
    ];
    for (flags, expected) in cases {
        let mut a = vec!["sample", "--model", s(&model), "--out", s(&png)];
        a.extend_from_slice(flags);
        let out = ddim(&a);
        assert_refused(&out, expected, &[&png]);
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn an_image_of_the_wrong_size_or_not_an_image_is_refused() {
    let dir = temp_dir("bad-image");
    let model = model_file(&dir);
    let out_file = dir.join("latents.npy");
    // 10x10 for a model of 8x8, without --resize.
    let wrong = dir.join("wrong.png");
    ddim_wgpu::io::write_png(&wrong, &[0.0; 100], [1, 10, 10]).unwrap();
    let invert = |image: &Path| {
        ddim(&[
            "invert",
            "--model",
            s(&model),
            "--image",
            s(image),
            "--steps",
            "2",
            "--out",
            s(&out_file),
        ])
    };
    assert_refused(&invert(&wrong), "is 10x10, the model takes 8x8", &[&out_file]);
    // Not an image at all, with an image's name.
    let text = dir.join("text.png");
    std::fs::write(&text, "these are not pixels").unwrap();
    assert_refused(&invert(&text), "not an image this build reads", &[&out_file]);
    // An image whose header claims 100,000 x 100,000 pixels: refused before the decoder allocates for it.
    let mut huge = std::fs::read(&wrong).unwrap();
    huge[16..20].copy_from_slice(&100_000u32.to_be_bytes());
    huge[20..24].copy_from_slice(&100_000u32.to_be_bytes());
    let crc = crc32fast::hash(&huge[12..29]); // the IHDR chunk's CRC, so only the size is wrong
    huge[29..33].copy_from_slice(&crc.to_be_bytes());
    let huge_path = dir.join("huge.png");
    std::fs::write(&huge_path, huge).unwrap();
    assert_refused(&invert(&huge_path), "limit", &[&out_file]);
    // A .npy batch of the wrong shape, and one that is not a .npy file.
    let npy = dir.join("wrong.npy");
    ddim_wgpu::io::write_npy(&npy, &[2, 1, 10, 10], &[0.0; 200]).unwrap();
    assert_refused(&invert(&npy), "the model takes [N, 1, 8, 8]", &[&out_file]);
    let garbage = dir.join("garbage.npy");
    std::fs::write(&garbage, "\u{93}NUMPY but not really").unwrap();
    assert_refused(&invert(&garbage), "not a .npy file", &[&out_file]);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_truncated_or_empty_npy_input_is_refused() {
    let dir = temp_dir("bad-npy");
    let model = model_file(&dir);
    let x = dir.join("x.npy");
    ddim_wgpu::io::write_npy(&x, &[2, 1, 8, 8], &[0.5; 128]).unwrap();
    let bytes = std::fs::read(&x).unwrap();
    std::fs::write(&x, &bytes[..bytes.len() - 7]).unwrap();
    let out_file = dir.join("eps.npy");
    let out = ddim(&[
        "eval",
        "--model",
        s(&model),
        "--input",
        s(&x),
        "--timestep",
        "3",
        "--out",
        s(&out_file),
    ]);
    assert_refused(&out, "x.npy", &[&out_file]);
    // Empty batches, where a command needs at least one array.
    let empty = dir.join("empty.npy");
    ddim_wgpu::io::write_npy(&empty, &[0, 1, 8, 8], &[]).unwrap();
    let png = dir.join("x.png");
    let m = s(&model);
    let both = format!("{},{}", s(&empty), s(&empty));
    let cases: [(Vec<&str>, &str, &Path); 3] = [
        (
            vec![
                "eval",
                "--model",
                m,
                "--input",
                s(&empty),
                "--timestep",
                "3",
                "--out",
                s(&out_file),
            ],
            "with N >= 1",
            &out_file,
        ),
        (
            vec!["invert", "--model", m, "--image", s(&empty), "--out", s(&out_file)],
            "no images to invert",
            &out_file,
        ),
        (
            vec!["interpolate", "--model", m, "--latents", &both, "--out", s(&png)],
            "holds no latents",
            &png,
        ),
    ];
    for (args, expected, output) in cases {
        assert_refused(&ddim(&args), expected, &[output]);
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// An output that cannot be written fails before any sampling, and a run with several outputs writes all of
/// them or none.
#[test]
fn an_output_that_cannot_be_written_leaves_nothing() {
    let dir = temp_dir("bad-output");
    let model = model_file(&dir);
    let good = dir.join("good.png");
    let sample = |extra: &[&str]| {
        let mut a = vec!["sample", "--model", s(&model), "--steps", "2", "--batch", "2"];
        a.extend_from_slice(extra);
        ddim(&a)
    };
    // A directory that does not exist.
    let missing = dir.join("no/such/dir/x.png");
    assert_refused(&sample(&["--out", s(&missing)]), "its folder cannot be opened", &[&missing]);
    // A directory where a file should go.
    assert_refused(&sample(&["--out", s(&dir)]), "is not a regular file", &[]);
    // One path given for two outputs.
    let twice = dir.join("twice.png");
    let out = sample(&["--out", s(&twice), "--save-latents", s(&twice)]);
    if no_gpu(&out) {
        return;
    }
    assert_refused(&out, "is the same file as", &[&twice]);
    // A good grid with an unwritable .npy: neither is written.
    let npy = dir.join("no/such/dir/x.npy");
    assert_refused(
        &sample(&["--out", s(&good), "--out-npy", s(&npy)]),
        "its folder cannot be opened",
        &[&good, &npy],
    );
    // A per-image directory that cannot be created (a file is in the way): refused before any sampling.
    let blocker = dir.join("blocker");
    std::fs::write(&blocker, "a file").unwrap();
    let imgs = blocker.join("imgs");
    let out = sample(&["--out", s(&good), "--out-dir", s(&imgs)]);
    if no_gpu(&out) {
        return;
    }
    assert_refused(&out, "blocker", &[&good]);
    std::fs::remove_dir_all(&dir).ok();
}

/// When one image alone needs an activation larger than the device binds (batch splitting, the
/// other half, is tests/cli.rs), the error names the node and states the largest image side that fits: that
/// side, checked here on the graph the config builds, fits and the next supported one does not.
#[test]
fn an_image_too_large_for_the_device_is_a_clear_error() {
    let mut config = small_config(&[4, 4]);
    config.sample_size = 16;
    let dir = temp_dir("bad-too-large");
    let model = dir.join("model.safetensors");
    Weights::random(&config, 4).unwrap().save(&model, StorageDtype::F32).unwrap();
    let png = dir.join("x.png");
    let limit = 4000u64; // above every weight (at most 1,152 bytes), below one 16x16 image's activations
    let out = ddim(&[
        "sample",
        "--max-binding",
        &limit.to_string(),
        "--model",
        s(&model),
        "--steps",
        "2",
        "--out",
        s(&png),
    ]);
    if no_gpu(&out) {
        return;
    }
    assert_refused(&out, "one image needs", &[&png]);
    let line = error_line(&out);
    let largest: usize = line
        .split("the largest side this model fits on this device is ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no largest side in: {line}"));
    let activation_bytes = |side: usize| {
        let mut c = config.clone();
        c.sample_size = side;
        let g = ddim_wgpu::unet::builder::build(&c).unwrap();
        g.nodes
            .iter()
            .map(|n| g.shape(n.output).iter().product::<usize>() as u64 * 4)
            .max()
            .unwrap()
    };
    assert!(largest > 0 && largest.is_multiple_of(2), "{line}");
    assert!(activation_bytes(largest) <= limit, "{line}");
    assert!(activation_bytes(largest + 2) > limit, "{line}");
    assert!(line.contains("(it is 16)"), "{line}");
    std::fs::remove_dir_all(&dir).ok();
}

/// Configs past the engine's bounds are refused before anything is built from them: the graph builder's
/// (levels, layers, channels, sample size) and, for random weights made from a config alone, the parameter count.
#[test]
fn a_config_too_large_to_build_is_refused() {
    type Change = fn(&mut UNetConfig);
    let too_big: [(&str, Change); 4] = [
        ("resolution levels", |c| {
            c.block_out_channels = vec![4; 9];
            c.down_block_types = vec![c.down_block_types[0]; 9];
            c.up_block_types = vec![c.up_block_types[0]; 9];
        }),
        ("layers_per_block 17", |c| c.layers_per_block = 17),
        ("block_out_channels 16384", |c| c.block_out_channels = vec![16384]),
        ("sample_size 8192", |c| c.sample_size = 8192),
    ];
    for (expected, change) in too_big {
        let mut c = small_config(&[4]);
        change(&mut c);
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains(expected), "{e}");
    }
    // Within those bounds, but 8 levels of 8,192 channels: billions of parameters.
    let mut c = small_config(&[8192; 8]);
    c.sample_size = 256;
    let e = Weights::random(&c, 1).unwrap_err().to_string();
    assert!(e.contains("more than 1073741824 parameters"), "{e}");
}

/// A device allowing fewer storage buffers per shader stage than a kernel binds (a GLES 3.1 adapter may allow 4)
/// refuses that kernel by name, with its count and the limit, before any sampling; allowing the most any
/// kernel binds, the same run samples.
#[test]
fn a_device_with_too_few_storage_buffers_refuses_the_kernels_that_need_more() {
    use ddim_wgpu::gpu::Access;
    let most = ddim_wgpu::ops::KERNELS
        .iter()
        .map(|k| k.bindings.iter().filter(|a| !matches!(a, Access::UniformWindow)).count())
        .max()
        .unwrap();
    let dir = temp_dir("bad-storage-buffers");
    let model = dir.join("model.safetensors");
    Weights::random(&small_config(&[4, 4]), 4).unwrap().save(&model, StorageDtype::F32).unwrap();
    let png = dir.join("x.png");
    let run = |cap: usize| {
        let cap = cap.to_string();
        ddim(&[
            "sample",
            "--max-storage-buffers",
            &cap,
            "-m",
            s(&model),
            "-s",
            "2",
            "-n",
            "2",
            "-o",
            s(&png),
        ])
    };
    let out = run(4);
    if no_gpu(&out) {
        return;
    }
    assert_refused(
        &out,
        "more than this device's max_storage_buffers_per_shader_stage of 4",
        &[&png],
    );
    let line = error_line(&out);
    let count: usize =
        line.split(" binds ").nth(1).and_then(|r| r.split(' ').next()?.parse().ok()).unwrap();
    assert!(count > 4 && count <= most, "{line}");
    let out = run(most);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    std::fs::remove_dir_all(&dir).ok();
}

/// At f16 precision an input value beyond f16's range (it would become infinite) is refused by name, with
/// nothing written; the same input runs at f32.
#[test]
fn an_input_beyond_f16_is_refused_at_f16() {
    let dir = temp_dir("f16-range");
    let model = model_file(&dir);
    let x = dir.join("x.npy");
    let mut values = vec![0.5; 128];
    values[37] = 1e6;
    ddim_wgpu::io::write_npy(&x, &[2, 1, 8, 8], &values).unwrap();
    let out_file = dir.join("eps.npy");
    let eval = |precision: &str| {
        let args = ["--timestep", "3", "--precision", precision, "--out", s(&out_file)];
        let mut a = vec!["eval", "--model", s(&model), "--input", s(&x)];
        a.extend_from_slice(&args);
        ddim(&a)
    };
    let out = eval("f16");
    if no_gpu(&out) || error_line(&out).contains("needs the adapter's shader-f16 feature") {
        return;
    }
    assert_refused(&out, "element 37 is 1000000, beyond f16's range (65504)", &[&out_file]);
    assert!(eval("f32").status.success());
    std::fs::remove_dir_all(&dir).ok();
}

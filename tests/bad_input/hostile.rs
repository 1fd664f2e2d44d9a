//! The classes of input a hostile tester used to break the promises above: links planted where outputs are
//! staged, small files claiming huge sizes, numbers past what a flag can mean, one file under two spellings,
//! values that turn the maths non-finite, two names for one weight, control characters in messages, outputs
//! that could only fail after the work. Each test generates its inputs.

use std::path::Path;
use std::process::Command;

use ddim_wgpu::diffusion::schedule::{BetaSchedule, TrainingSchedule};
use ddim_wgpu::model::convert::{from_diffusers_dir, from_original, training_from_scheduler_json};
use ddim_wgpu::model::torch::read_checkpoint;
use ddim_wgpu::model::weights::{HostTensor, StorageDtype, Training, Weights};

use super::checkpoints::{View, checkpoint, whole};
use super::{assert_refused, is_staging, model_file, no_gpu, s, small_model};
use crate::support::{ddim, error_line, fixture, quiet_mesa, small_config, temp_dir};

/// Writes a float32 `.npy` of `shape` holding `values` (which may be NaN), or float64 when `f64` is set (the
/// library writes float32 only: its header is rewritten, one byte of `descr`, and the data widened).
fn npy(path: &Path, shape: &[usize], values: &[f64], f64: bool) {
    let narrow: Vec<f32> = values.iter().map(|&v| v as f32).collect();
    let mut bytes = ddim_wgpu::io::npy_bytes(path, shape, &narrow).unwrap();
    if f64 {
        let header_end = bytes.len() - 4 * values.len();
        let descr = bytes.windows(3).position(|w| w == b"<f4").unwrap();
        bytes[descr + 2] = b'8';
        bytes.truncate(header_end);
        bytes.extend(values.iter().flat_map(|v| v.to_le_bytes()));
    }
    std::fs::write(path, bytes).unwrap();
}

/// The names in `dir`, sorted.
fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Runs `ddim` through `sh -c`, so that `script` can plant files named after the pid ddim will have (`$$`
/// before `exec`), with `$D` the binary; in `dir`.
fn ddim_in_shell(dir: &Path, script: &str) -> std::process::Output {
    let mut cmd = Command::new("sh");
    quiet_mesa(&mut cmd);
    cmd.arg("-c").arg(script).env("D", env!("CARGO_BIN_EXE_ddim")).current_dir(dir);
    cmd.output().expect("run sh")
}

/// Links planted at the names outputs were once staged under (`.<name>.partial-<pid>`), and at the outputs
/// themselves, are never written through: the file they point to keeps its bytes, and each output ends as a
/// regular file. (`sample`, and `merge`, which once left its output as the link.)
#[test]
fn staging_never_follows_a_planted_link() {
    let dir = temp_dir("hostile-links");
    let model = model_file(&dir);
    std::fs::write(dir.join("victim"), "precious").unwrap();
    std::os::unix::fs::symlink("victim", dir.join("linked.png")).unwrap();
    let out = ddim_in_shell(
        &dir,
        &format!(
            "for f in a.png x.npy linked.png; do ln -s victim .$f.partial-$$; done; \
             exec \"$D\" sample --model {} --batch 1 --steps 2 --out a.png --out-npy x.npy --save-latents linked.png",
            s(&model)
        ),
    );
    if no_gpu(&out) {
        return;
    }
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(std::fs::read_to_string(dir.join("victim")).unwrap(), "precious");
    for f in ["a.png", "x.npy", "linked.png"] {
        let meta = std::fs::symlink_metadata(dir.join(f)).unwrap();
        assert!(meta.is_file(), "{f} is not a regular file");
    }
    // merge, into a planted staging link and over a link at its output.
    std::os::unix::fs::symlink("victim", dir.join("merged.npy")).unwrap();
    let out = ddim_in_shell(
        &dir,
        "ln -s victim .merged.npy.partial-$$; exec \"$D\" merge x.npy --out merged.npy",
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(std::fs::read_to_string(dir.join("victim")).unwrap(), "precious");
    assert!(std::fs::symlink_metadata(dir.join("merged.npy")).unwrap().is_file());
    // Nothing of ours is left beside them: only the planted links remain.
    for name in listing(&dir).iter().filter(|n| is_staging(n)) {
        assert!(name.contains(".partial-"), "staging file {name} left");
        let target = std::fs::read_link(dir.join(name)).unwrap();
        assert_eq!(target, Path::new("victim"));
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// A small file whose config claims huge images, a few hundred bytes of nested YAML aliases, and a checkpoint
/// whose names all view one storage: each is refused before anything is allocated for what it claims.
#[test]
fn small_files_claiming_huge_sizes_are_refused_before_allocating() {
    let dir = temp_dir("hostile-sizes");
    // A valid weights file (checksum and all) whose config claims 8,192 input channels of 4,096 x 4,096.
    let mut w = small_model();
    w.config.in_channels = 8192;
    w.config.sample_size = 4096;
    let conv_in = w.tensors.get_mut("conv_in.weight").unwrap();
    conv_in.shape[1] = 8192;
    conv_in.data = vec![0.01; conv_in.shape.iter().product()];
    let huge = dir.join("huge.safetensors");
    std::fs::write(&huge, w.to_bytes(StorageDtype::F16).unwrap()).unwrap();
    assert!(std::fs::metadata(&huge).unwrap().len() < 2 << 20);
    let png = dir.join("x.png");
    for command in [&["sample", "--batch", "1"][..], &["interpolate", "--seeds", "1,2"]] {
        let mut a = command.to_vec();
        a.extend(["--model", s(&huge), "--out", s(&png)]);
        assert_refused(&ddim(&a), "one image of this model of shape [8192, 4096, 4096]", &[&png]);
    }

    // Nested aliases: each level repeats the one before ten times (10^9 nodes at the ninth).
    let mut yaml = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for level in 1..10 {
        let prev = format!("*a{}", level - 1);
        yaml += &format!("a{level}: &a{level} [{}]\n", vec![prev; 10].join(", "));
    }
    yaml += "model: *a9\n";
    let bomb = dir.join("bomb.yml");
    std::fs::write(&bomb, &yaml).unwrap();
    assert!(yaml.len() < 1000);
    let e = from_original(Path::new(&fixture("original_ckpt/model-1000.ckpt")), &bomb)
        .unwrap_err()
        .to_string();
    assert!(e.contains("expands to more than 100000 nodes"), "{e}");

    // 3,000 names over one storage of 4,096 values: copied per name, 12,288,000 values from a 16 KB storage.
    let names: Vec<String> = (0..3000).map(|i| format!("w{i}")).collect();
    let views: Vec<View> = names.iter().map(|n| whole(n, "0", &[4096])).collect();
    let bytes = checkpoint(&views, &[("0", vec![0.5; 4096])]);
    let e = read_checkpoint(&bytes).unwrap_err().to_string();
    assert!(e.contains("weight `w2`") && e.contains("overlapping views"), "{e}");
    // Tied weights (two names over one storage) are how some models are saved, and are read.
    let tied = read_checkpoint(&checkpoint(&views[..2], &[("0", vec![0.5; 4096])])).unwrap();
    assert_eq!(tied["w0"].data, tied["w1"].data);
    // Views that share a storage without overlapping (a flat parameter buffer) are fine.
    let halves = [
        View { name: "a", storage: "0", offset: 0, size: &[2048], stride: &[1] },
        View { name: "b", storage: "0", offset: 2048, size: &[2048], stride: &[1] },
    ];
    let read =
        read_checkpoint(&checkpoint(&halves, &[("0", (0..4096).map(|v| v as f32).collect())]));
    let read = read.unwrap();
    assert_eq!(read["b"].data[0], 2048.0);
    std::fs::remove_dir_all(&dir).ok();
}

/// Numbers past what a flag can mean, from the command line: errors, never a panic, an abort or a silent
/// run that writes nothing.
#[test]
fn numbers_past_their_meaning_are_one_line_errors() {
    let dir = temp_dir("hostile-numbers");
    let model = model_file(&dir);
    let png = dir.join("x.png");
    let max = u64::MAX.to_string();
    let shard = format!("{}/{}", u64::MAX - 2, u64::MAX - 1);
    // Noise for 1 step where the settings take 2 (the model is 1x8x8).
    let noise = dir.join("noise.npy");
    npy(&noise, &[1, 1, 1, 8, 8], &[0.5; 64], false);
    let cases: &[(&[&str], &str)] = &[
        (
            &["sample", "--steps", "2", "--batch", "1", "--noise", s(&noise)],
            "these settings take [2, 1, 1, 8, 8]",
        ),
        (&["sample", "--batch", "1000000000"], "would take 256000000000 bytes"),
        (&["sample", "--batch", &max], "at most 4294967296 images"),
        (&["sample", "--batch", &max, "--shard", &shard], "at most 4294967296 images"),
        (&["interpolate", "--seeds", "1,2", "--frames", "1000000000"], "interpolation frames"),
        (&["sample", "--eta", "1e154"], "eta 1e154 is too large"),
        (&["sample", "--eta", "1e20"], "eta 1e20 is too large"),
        (&["sample", "--beta-start", "0.2", "--beta-end", "0.3"], "below 1e-30"),
        (&["sample", "--steps-offset", &max], "is not below the model's 1000 training steps"),
        (&["sample", "--max-batch", "0"], "a batch holds one image or more"),
    ];
    for (args, expected) in cases {
        let mut a = args.to_vec();
        a.extend(["--model", s(&model), "--out", s(&png)]);
        assert_refused(&ddim(&a), expected, &[&png]);
    }
    // merge: first dimensions that overflow when added (empty arrays of 2^64 - 1 rows hold no bytes).
    let rows = dir.join("rows.npy");
    npy(&rows, &[usize::MAX, 0], &[], false);
    let merged = dir.join("merged.npy");
    let out = ddim(&["merge", s(&rows), s(&rows), "--out", s(&merged)]);
    assert_refused(&out, "the merged first dimension overflows", &[&merged]);
    std::fs::remove_dir_all(&dir).ok();
}

/// One file named two ways is one output, refused before any work; a path that cannot be renamed into is
/// refused up front; an interrupted run leaves no output and no staged file.
#[test]
fn outputs_stay_all_or_nothing() {
    let dir = temp_dir("hostile-all-or-nothing");
    let model = model_file(&dir);
    let m = s(&model);
    let (a, x) = (dir.join("a.png"), dir.join("x.npy"));
    let d = dir.join("d");
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec![
                "--out-npy".into(),
                format!("{}/./x.npy", dir.display()),
                "--save-latents".into(),
                s(&x).into(),
            ],
            "is the same file as",
        ),
        (
            vec![
                "--out".into(),
                format!("{}/d/../d/000000.png", dir.display()),
                "--out-dir".into(),
                s(&d).into(),
            ],
            "is the same file as",
        ),
        (vec!["--out-npy".into(), format!("{}/", s(&x))], "ends with a path separator"),
    ];
    for (extra, expected) in cases {
        let mut args = vec!["sample", "--model", m, "--batch", "2", "--steps", "2"];
        if !extra.contains(&"--out".to_string()) {
            args.extend(["--out", s(&a)]);
        }
        args.extend(extra.iter().map(String::as_str));
        let out = ddim(&args);
        assert_refused(&out, expected, &[&a, &x]);
        assert!(!d.exists(), "{} left behind", d.display());
    }
    let t = dir.join("t.json");
    let out = ddim(&[
        "profile",
        "--model",
        m,
        "--steps",
        "2",
        "--trace",
        s(&t),
        "--json",
        &format!("{}/", s(&x)),
    ]);
    assert_refused(&out, "ends with a path separator", &[&t]);
    // eval writing its output into the folder of block dumps under a block's name.
    let input = dir.join("in.npy");
    npy(&input, &[1, 1, 8, 8], &[0.25; 64], false);
    let out = ddim(&[
        "eval",
        "--model",
        m,
        "--input",
        s(&input),
        "--timestep",
        "3",
        "--out",
        &format!("{}/conv_out.npy", s(&d)),
        "--dump-dir",
        s(&d),
    ]);
    if no_gpu(&out) {
        return;
    }
    assert_refused(&out, "is the same file as", &[]);
    assert!(!d.exists(), "{} left behind", d.display());
    assert!(listing(&dir).iter().all(|n| !is_staging(n)), "{:?}", listing(&dir));
    std::fs::remove_dir_all(&dir).ok();
}

/// SIGINT while a run's outputs are being written (sent as soon as the first staged file shows in the per-image
/// folder), and at a few fixed moments before, leaves either every output or none: never a staged file or a
/// half-filled --out-dir.
#[test]
fn an_interrupted_run_leaves_all_or_nothing() {
    let dir = temp_dir("hostile-sigint");
    let model = model_file(&dir);
    let staged = |cells: &Path| {
        std::fs::read_dir(cells).is_ok_and(|d| {
            d.filter_map(|e| e.ok()).any(|e| e.file_name().to_string_lossy().contains(".partial"))
        })
    };
    let mut caught_writing = 0;
    for (i, delay_ms) in [None, None, None, Some(100u64), Some(400)].into_iter().enumerate() {
        let run = dir.join(format!("run{i}"));
        std::fs::create_dir(&run).unwrap();
        let cells = run.join("cells/deeper");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ddim"));
        quiet_mesa(&mut cmd);
        cmd.args(["sample", "--model", s(&model), "--batch", "256", "--steps", "2", "--quiet"])
            .args(["--out", "grid.png", "--out-dir", "cells/deeper", "--out-npy", "x.npy"])
            .current_dir(&run)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        let mut child = cmd.spawn().unwrap();
        match delay_ms {
            Some(ms) => std::thread::sleep(std::time::Duration::from_millis(ms)),
            None => {
                let start = std::time::Instant::now();
                while child.try_wait().unwrap().is_none() && start.elapsed().as_secs() < 120 {
                    if staged(&cells) {
                        caught_writing += 1;
                        break;
                    }
                }
            }
        }
        let sent = Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
        assert!(sent.success() || child.try_wait().unwrap().is_some());
        let status = child.wait().unwrap();
        let names = listing(&run);
        let complete = names == ["cells", "grid.png", "x.npy", "x.npy.run.json"]
            && listing(&cells).len() == 256
            && !staged(&cells);
        // Interrupted (by our handler, or before it was installed), or done before the signal came; a signal
        // that arrives while the outputs are renamed into place lets the renaming finish first.
        let interrupted = matches!(status.code(), Some(130) | None);
        assert!(interrupted || status.success(), "run {i}: {status:?}");
        assert!(names.is_empty() || complete, "run {i}: {status:?}, left {names:?}");
    }
    // The point of the test: at least one signal arrived while outputs were being staged.
    assert!(caught_writing > 0, "no run was interrupted while writing its outputs");
    std::fs::remove_dir_all(&dir).ok();
}

/// Inputs and settings that turn the maths non-finite are refused with where they are; a model that
/// overflows during sampling is an error naming the image and the step, never a NaN image and exit 0.
#[test]
fn non_finite_inputs_and_results_are_errors() {
    let dir = temp_dir("hostile-finite");
    let model = model_file(&dir);
    let m = s(&model);
    let png = dir.join("x.png");
    let mut values = vec![0.5; 2 * 64];
    values[64 + 9] = f64::NAN;
    let nan = dir.join("nan.npy");
    npy(&nan, &[2, 1, 8, 8], &values, false);
    let big = dir.join("big.npy");
    npy(&big, &[1, 1, 8, 8], &[1e300; 64], true);
    let inf = dir.join("inf.npy");
    npy(&inf, &[1, 1, 8, 8], &[f64::NEG_INFINITY; 64], false);
    let zero = dir.join("zero.npy");
    npy(&zero, &[1, 1, 8, 8], &[0.0; 64], false);
    let zero_nan = format!("{},{}", s(&zero), s(&nan));
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["sample", "--latent", s(&nan)], "value 73 (flat index) is NaN"),
        (vec!["sample", "--latent", s(&big)], "value 0 (flat index) is inf"),
        (vec!["sample", "--latent", s(&inf)], "is -inf"),
        (vec!["interpolate", "--latents", &zero_nan], "value 73"),
    ];
    for (mut args, expected) in cases {
        args.extend(["--model", m, "--steps", "2", "--out", s(&png)]);
        assert_refused(&ddim(&args), expected, &[&png]);
    }
    // A schedule whose alphas_cumprod underflow, stored in the model's own metadata.
    let mut w = small_model();
    w.training = Some(Training {
        schedule: TrainingSchedule {
            betas: BetaSchedule::Linear { start: 0.2, end: 0.3 },
            train_steps: 1000,
            zero_snr: false,
        },
        ..Training::default()
    });
    let underflow = dir.join("underflow.safetensors");
    w.save(&underflow, StorageDtype::F32).unwrap();
    let out = ddim(&["sample", "--model", s(&underflow), "--steps", "5", "--out", s(&png)]);
    assert_refused(&out, "below 1e-30", &[&png]);
    // A mid-block factor whose reciprocal overflows f32, in a file with a valid checksum.
    let mut w = small_model();
    w.config.mid_block_scale_factor = 5e-324;
    let tiny = dir.join("tiny.safetensors");
    std::fs::write(&tiny, w.to_bytes(StorageDtype::F32).unwrap()).unwrap();
    let out = ddim(&["sample", "--model", s(&tiny), "--steps", "2", "--out", s(&png)]);
    assert_refused(&out, "mid_block_scale_factor 5e-324 is outside", &[&png]);
    // The zero latent through the library: interpolation needs directions.
    // A model whose output convolution overflows f32: finite weights, infinite results by the first step.
    let mut w = small_model();
    for v in &mut w.tensors.get_mut("conv_out.weight").unwrap().data {
        *v *= 1e37;
    }
    let overflow = dir.join("overflow.safetensors");
    w.save(&overflow, StorageDtype::F32).unwrap();
    let npy_out = dir.join("x.npy");
    let out = ddim(&[
        "sample",
        "--model",
        s(&overflow),
        "--steps",
        "3",
        "--batch",
        "3",
        "--out",
        s(&png),
        "--out-npy",
        s(&npy_out),
    ]);
    if no_gpu(&out) {
        return;
    }
    // (Which step overflows first depends on the schedule; the watch's own test checks the step it names.)
    assert_refused(&out, "image 0 turned non-finite (NaN or infinity) at step ", &[&png, &npy_out]);
    assert!(error_line(&out).contains(" of 3 (t = "), "{}", error_line(&out));
    let out =
        ddim(&["interpolate", "--model", m, "--latents", &format!("{},{}", s(&zero), s(&zero))]);
    assert_refused(&out, "the first latent is all zeros", &[]);
    std::fs::remove_dir_all(&dir).ok();
}

/// Two keys of one checkpoint that name one weight are an error naming both, whichever order they come in:
/// diffusers' new and legacy attention names, the original code's `down.00.` beside `down.0.` and `temb_proj`
/// beside `time_emb_proj`, a `module.` prefix beside the plain name.
#[test]
fn two_names_for_one_weight_are_refused() {
    let dir = temp_dir("hostile-two-names");
    // A diffusers folder whose safetensors holds `to_q` and the legacy `query` for one attention.
    let src = Path::new(&fixture("pad0_onehead_safetensors/model")).to_path_buf();
    let bytes = std::fs::read(src.join("diffusion_pytorch_model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut tensors: Vec<(String, safetensors::tensor::TensorView)> =
        st.tensors().into_iter().collect();
    let (name, view) = tensors.iter().find(|(n, _)| n.ends_with(".to_q.weight")).unwrap().clone();
    tensors.push((name.replace(".to_q.", ".query."), view));
    let folder = dir.join("diffusers");
    std::fs::create_dir(&folder).unwrap();
    std::fs::copy(src.join("config.json"), folder.join("config.json")).unwrap();
    let doubled = safetensors::serialize(tensors, None).unwrap();
    std::fs::write(folder.join("diffusion_pytorch_model.safetensors"), doubled).unwrap();
    let e = from_diffusers_dir(&folder).unwrap_err().to_string();
    assert!(e.contains(&name) && e.contains("query.weight") && e.contains("ambiguous"), "{e}");

    // Original checkpoints: every pair, in both orders of the file.
    let yaml = Path::new(&fixture("original_ckpt/config.yml")).to_path_buf();
    let pairs = [
        ("down.0.block.0.conv1.weight", "down.00.block.0.conv1.weight"),
        ("down.0.block.0.temb_proj.bias", "down.0.block.0.time_emb_proj.bias"),
        ("module.conv_in.weight", "conv_in.weight"),
    ];
    for (a, b) in pairs {
        for (first, second) in [(a, b), (b, a)] {
            let views = [whole(first, "0", &[4]), whole(second, "1", &[4])];
            let ckpt = dir.join("two.ckpt");
            std::fs::write(&ckpt, checkpoint(&views, &[("0", vec![1.0; 4]), ("1", vec![2.0; 4])]))
                .unwrap();
            let e = from_original(&ckpt, &yaml).unwrap_err().to_string();
            assert!(e.contains(first) && e.contains(second), "{first} / {second}: {e}");
        }
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// Paths with newlines and terminal escapes, in any context an error may put them (the model, a latent file,
/// a flag's value), print as one line of plain characters.
#[test]
fn errors_are_one_line_without_escapes_whatever_the_path() {
    let dir = temp_dir("hostile-escapes");
    let model = model_file(&dir);
    let latent = dir.join("lat\nerror: fake\u{1b}[2J.npy");
    std::fs::write(&latent, b"not an array").unwrap();
    let fake_model = dir.join("a\nerror: fake\u{1b}[31m");
    let runs = [
        ddim(&["sample", "--model", s(&fake_model)]),
        ddim(&["sample", "--model", s(&model), "--latent", s(&latent)]),
        ddim(&["sample", "--model", s(&model), "--seed", "1\n\u{1b}[2J"]),
        ddim(&["convert", s(&fake_model), "--out", s(&dir.join("o\u{1b}[31m.safetensors"))]),
    ];
    for out in runs {
        assert!(matches!(out.status.code(), Some(1 | 2)), "{out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains('\u{1b}'), "an escape reached the terminal: {stderr:?}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "not one line: {stderr:?}");
        assert!(!stderr.contains("\nerror: fake"), "{stderr:?}");
        error_line(&out);
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// Every output is checked before the first GPU dispatch: a folder for per-image files that is a file, a
/// device, or cannot be made; a dump folder that is a file; a PNG of images that have neither 1 nor 3 channels.
/// Such a model samples to `.npy`.
#[test]
fn outputs_are_checked_before_any_work() {
    let dir = temp_dir("hostile-before-work");
    let model = model_file(&dir);
    let m = s(&model);
    let png = dir.join("x.png");
    let file = dir.join("a-file");
    std::fs::write(&file, "x").unwrap();
    let input = dir.join("in.npy");
    npy(&input, &[1, 1, 8, 8], &[0.25; 64], false);
    let cases: [(&[&str], &str); 4] = [
        (&["sample", "--steps", "2", "--out-dir", s(&file)], "is not a folder"),
        (&["sample", "--steps", "2", "--out-dir", "/dev/null"], "is not a folder"),
        (&["sample", "--steps", "2", "--out-dir", "/proc/x"], "cannot be created"),
        (
            &["eval", "--input", s(&input), "--timestep", "1", "--dump-dir", s(&file)],
            "is not a folder",
        ),
    ];
    for (args, expected) in cases {
        let mut a = args.to_vec();
        a.extend(["--model", m, "--out", s(&png)]);
        let start = std::time::Instant::now();
        let out = ddim(&a);
        assert_refused(&out, expected, &[&png]);
        assert!(start.elapsed().as_secs() < 20, "{args:?} took {:?}", start.elapsed());
    }
    // A 4-channel model: PNG refused up front, .npy written.
    let mut c = small_config(&[4]);
    c.in_channels = 4;
    c.out_channels = 4;
    let four = dir.join("four.safetensors");
    Weights::random(&c, 5).unwrap().save(&four, StorageDtype::F32).unwrap();
    let out = ddim(&["sample", "--model", s(&four), "--steps", "2", "--batch", "2"]);
    assert_refused(&out, "pass --out-npy FILE", &[]);
    let out = ddim(&["sample", "--model", s(&four), "--steps", "2", "--out", s(&png)]);
    assert_refused(&out, "PNG holds 1 (grey) or 3 (RGB)", &[&png]);
    let x = dir.join("four.npy");
    let out =
        ddim(&["sample", "--model", s(&four), "--steps", "2", "--batch", "2", "--out-npy", s(&x)]);
    if no_gpu(&out) {
        return;
    }
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let a = ddim_wgpu::io::read_npy(&x).unwrap();
    assert_eq!(a.shape, [2, 4, 8, 8]);
    std::fs::remove_dir_all(&dir).ok();
}

/// The smaller holes: an f16 file its own loader would refuse, scheduler configs coerced, a 2-D schedule, a
/// FIFO as input, a long output name.
#[test]
fn the_smaller_holes_are_closed() {
    let dir = temp_dir("hostile-smaller");
    let model = model_file(&dir);
    // A weight beyond f16's range: refused by convert, nothing written.
    let mut w = small_model();
    w.tensors.insert(
        "conv_in.bias".into(),
        HostTensor { shape: vec![4], data: vec![1e5, 0.0, 0.0, 0.0] },
    );
    let big = dir.join("big.safetensors");
    w.save(&big, StorageDtype::F32).unwrap();
    let half = dir.join("half.safetensors");
    let out = ddim(&["convert", s(&big), "--dtype", "f16", "--out", s(&half)]);
    assert_refused(&out, "weight `conv_in.bias`: holds 100000, beyond f16's range", &[&half]);
    // scheduler_config.json values of the wrong type or sign.
    for (json, expected) in [
        (r#"{"steps_offset": -3}"#, "`steps_offset` is -3, not a non-negative integer"),
        (r#"{"steps_offset": 1.9}"#, "`steps_offset` is 1.9, not a non-negative integer"),
        (r#"{"beta_start": "0.1"}"#, r#"`beta_start` is "0.1", not a number"#),
        (r#"{"num_train_timesteps": 1e3}"#, "not a non-negative integer"),
        (r#"{"set_alpha_to_one": 1}"#, "not true or false"),
        (r#"{"trained_betas": [[0.1, 0.2]]}"#, "one beta per timestep"),
    ] {
        let e =
            training_from_scheduler_json(json, "scheduler_config.json").unwrap_err().to_string();
        assert!(e.contains(expected), "{json}: {e}");
    }
    // A 2-D --trained-betas.
    let betas = dir.join("betas.npy");
    npy(&betas, &[10, 100], &[1e-3; 1000], false);
    let png = dir.join("x.png");
    let out =
        ddim(&["sample", "--model", s(&model), "--trained-betas", s(&betas), "--out", s(&png)]);
    assert_refused(&out, "takes a 1-D array", &[&png]);
    // A FIFO (nobody writes to it): refused at once, not waited on.
    let fifo = dir.join("fifo.npy");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    let start = std::time::Instant::now();
    let out = ddim(&["sample", "--model", s(&model), "--latent", s(&fifo), "--out", s(&png)]);
    assert_refused(&out, "is not a regular file", &[&png]);
    assert!(start.elapsed().as_secs() < 20);
    // An output name of 250 characters (the longest most file systems allow is 255).
    let long = dir.join(format!("{}.png", "n".repeat(246)));
    let out =
        ddim(&["sample", "--model", s(&model), "--batch", "1", "--steps", "2", "--out", s(&long)]);
    if no_gpu(&out) {
        return;
    }
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(long.is_file());
    std::fs::remove_dir_all(&dir).ok();
}

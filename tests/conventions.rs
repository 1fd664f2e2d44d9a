//! Users' conventions, end to end through the binary: diffusers' names and values for the sampler's flags, a
//! model's own sampling defaults (and flags over them), the default model wherever `ddim` runs, inversion that
//! clips as diffusers' inverse scheduler does, and help that lists only what a command takes.

mod support;
use support::{ddim, error_line, fixture, gpu_required, temp_dir};

#[path = "bad_input/checkpoints.rs"]
mod checkpoints;

use std::path::Path;

/// Runs `ddim` with `args`; returns stdout, or None where there is no adapter and none is required.
fn ok(args: &[&str]) -> Option<String> {
    succeeded(ddim(args), &format!("ddim {args:?}"))
}

/// `out`'s stdout where the run succeeded; None where it found no adapter and none is required; else a failure
/// naming `what`.
fn succeeded(out: std::process::Output, what: &str) -> Option<String> {
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() && !gpu_required() && stderr.contains("no GPU adapter") {
        return None;
    }
    assert!(out.status.success(), "{what}: {stderr}");
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The fixture network converted, with `extra` flags recording sampling defaults.
fn converted(dir: &Path, name: &str, extra: &[&str]) -> String {
    let (model, src) = (dir.join(name), fixture("pad0_onehead_safetensors/model"));
    let mut args = vec!["convert", &src, "-o", s(&model)];
    args.extend_from_slice(extra);
    let out = ddim(&args);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    s(&model).to_string()
}

#[test]
fn diffusers_names_and_values_are_the_flags_or_their_aliases() {
    let dir = temp_dir("conventions-names");
    let model = converted(&dir, "m.safetensors", &[]);
    let npy = |name: &str| dir.join(format!("{name}.npy"));
    // Each pair: our spelling and diffusers', which must sample the same bytes.
    let pairs: [(&str, &[&str], &[&str]); 6] = [
        ("steps", &["--steps", "3"], &["--num-inference-steps", "3"]),
        (
            "spacing",
            &["-s", "3", "--spacing", "trailing"],
            &["-s", "3", "--timestep-spacing", "trailing"],
        ),
        ("clip", &["-s", "3", "--clip-sample", "1"], &["-s", "3", "--clip-sample-range", "1"]),
        (
            "betas",
            &["-s", "3", "--beta-schedule", "scaled-linear", "--train-steps", "500"],
            &["-s", "3", "--beta-schedule", "scaled_linear", "--num-train-timesteps", "500"],
        ),
        (
            "cosine",
            &["-s", "3", "--beta-schedule", "squaredcos-cap-v2"],
            &["-s", "3", "--beta-schedule", "squaredcos_cap_v2"],
        ),
        (
            "v",
            &["-s", "3", "--prediction", "v", "--zero-snr", "--spacing", "trailing"],
            &[
                "-s",
                "3",
                "--prediction-type",
                "v_prediction",
                "--rescale-betas-zero-snr",
                "--timestep-spacing",
                "trailing",
            ],
        ),
    ];
    for (name, ours, theirs) in pairs {
        for (k, flags) in [ours, theirs].iter().enumerate() {
            let (out, png) = (npy(&format!("{name}{k}")), dir.join(format!("{name}{k}.png")));
            let mut args =
                vec!["sample", "-m", &model, "-n", "2", "--seed", "3", "--out-npy", s(&out)];
            args.extend_from_slice(flags);
            args.extend(["-o", s(&png)]);
            if ok(&args).is_none() {
                return;
            }
        }
        let (a, b) = (std::fs::read(npy(&format!("{name}0"))).unwrap(), npy(&format!("{name}1")));
        assert_eq!(a, std::fs::read(b).unwrap(), "{name}: our spelling and diffusers' differ");
    }
    // -b is -n.
    assert!(
        ok(&["sample", "-m", &model, "-b", "2", "-s", "2", "-o", s(&dir.join("b.png"))]).is_some()
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_model_carries_its_sampling_defaults_and_flags_override_them() {
    let dir = temp_dir("conventions-defaults");
    let plain = converted(&dir, "plain.safetensors", &[]);
    let clipped = converted(
        &dir,
        "clipped.safetensors",
        &["--clip-sample", "1", "--timestep-spacing", "trailing"],
    );
    let info = ok(&["info", "--model", &clipped]).expect("info --model needs no GPU");
    assert!(info.contains("spacing:          trailing"), "{info}");
    assert!(info.contains("clip x0:          [-1, 1]"), "{info}");
    let info = ok(&["info", "-m", &plain]).unwrap();
    assert!(info.contains("training: not recorded"), "{info}");
    let run = |model: &str, name: &str, flags: &[&str]| {
        let (out, png) = (dir.join(format!("{name}.npy")), dir.join(format!("{name}.png")));
        let mut args = vec!["sample", "-m", model, "-n", "2", "-s", "3", "--out-npy", s(&out)];
        args.extend(["-o", s(&png)]);
        args.extend_from_slice(flags);
        ok(&args).map(|_| std::fs::read(out).unwrap())
    };
    let Some(defaults) = run(&clipped, "defaults", &[]) else { return };
    let explicit =
        run(&plain, "explicit", &["--clip-sample", "1", "--spacing", "trailing"]).unwrap();
    assert_eq!(defaults, explicit, "the model's defaults are the flags it records");
    let off = run(&clipped, "off", &["--clip-sample", "off", "--spacing", "leading"]).unwrap();
    assert_eq!(off, run(&plain, "none", &[]).unwrap(), "flags override the model's defaults");
    assert_ne!(defaults, off, "the defaults change the samples");
    // A threshold given replaces the model's clip (diffusers applies one or the other).
    assert!(run(&clipped, "threshold", &["--threshold", "0.995,1.5"]).is_some());
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn the_default_model_samples_from_any_directory_and_clips_as_its_file_says() {
    let dir = temp_dir("conventions-anywhere");
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_ddim"));
    support::quiet_mesa(&mut cmd);
    let out = cmd
        .current_dir(&dir)
        .args(["sample", "-n", "1", "-s", "2", "-o", "x.png"])
        .output()
        .unwrap();
    if succeeded(out, "sample from an empty directory").is_none() {
        return;
    }
    assert!(dir.join("x.png").exists());
    let info = ok(&[
        "info",
        "--model",
        &format!("{}/weights/default.safetensors", env!("CARGO_MANIFEST_DIR")),
    ])
    .unwrap();
    assert!(info.contains("clip x0:          [-1, 1]"), "the default model clips: {info}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn invert_clips_as_the_model_says_and_says_so() {
    let dir = temp_dir("conventions-invert");
    let clipped = converted(&dir, "clipped.safetensors", &["--clip-sample", "1"]);
    let image = dir.join("x.npy");
    let values: Vec<f32> = (0..3 * 64).map(|i| (i % 17) as f32 / 8.5 - 1.0).collect();
    std::fs::write(&image, ddim_wgpu::io::npy_bytes(&image, &[1, 3, 8, 8], &values).unwrap())
        .unwrap();
    let invert = |name: &str, flags: &[&str]| {
        let out = dir.join(name);
        let mut args =
            vec!["invert", "-m", &clipped, "--image", s(&image), "-s", "3", "-o", s(&out)];
        args.extend_from_slice(flags);
        ok(&args).map(|said| (said, std::fs::read(out).unwrap()))
    };
    let Some((said, clipped_latents)) = invert("clipped.npy", &[]) else { return };
    assert!(said.contains("x0 clipped to [-1, 1]"), "{said}");
    let (said, exact) = invert("exact.npy", &["--clip-sample", "off"]).unwrap();
    assert!(said.contains("not clipped: the exact ODE"), "{said}");
    assert_ne!(clipped_latents, exact, "the clip is used, not ignored");
    // Inversion is deterministic: the noise flags are not offered, so they are refused as unknown.
    let out = ddim(&[
        "invert",
        "-m",
        &clipped,
        "--image",
        s(&image),
        "--eta",
        "0.5",
        "-o",
        s(&dir.join("e.npy")),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(error_line(&out).contains("--eta"));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn help_lists_only_what_a_command_takes() {
    let help = |cmd: &str| String::from_utf8_lossy(&ddim(&[cmd, "--help"]).stdout).into_owned();
    for cmd in ["merge", "convert"] {
        let h = help(cmd);
        assert!(!h.contains("--backend") && !h.contains("--kernels"), "{cmd}: {h}");
    }
    for cmd in ["sample", "invert", "interpolate", "profile", "eval", "info"] {
        let h = help(cmd);
        assert!(h.contains("Device:") && h.contains("--backend"), "{cmd}: {h}");
    }
    let invert = help("invert");
    assert!(
        !invert.contains("--eta")
            && !invert.contains("--sigma-hat")
            && !invert.contains("--threshold")
    );
    assert!(help("sample").contains("Sampling:"));
}

#[test]
fn a_config_alone_is_for_profile_only() {
    let dir = temp_dir("conventions-config");
    let config = fixture("pad0_onehead_safetensors/model/config.json");
    let out = ddim(&["sample", "-m", &config, "-o", s(&dir.join("x.png"))]);
    assert_eq!(out.status.code(), Some(1));
    assert!(!dir.join("x.png").exists());
    let line = error_line(&out);
    assert!(
        line.contains("a config alone gives random weights, which only `ddim profile` takes"),
        "{line}"
    );
}

/// An official training checkpoint `[model, optimizer, epoch, step, ema]` (the fixture's weights as the model,
/// half of them as the moving average): convert takes the EMA weights by default and says so, `--no-ema` the raw
/// ones.
#[test]
fn convert_takes_the_ema_weights_of_a_training_checkpoint() {
    use ddim_wgpu::model::convert::from_original;
    use ddim_wgpu::model::torch::read_checkpoint;
    use ddim_wgpu::model::weights::Weights;
    let dir = temp_dir("conventions-ema");
    let (ckpt, yaml) =
        (fixture("original_ckpt/model-1000.ckpt"), fixture("original_ckpt/config.yml"));
    let raw = read_checkpoint(&std::fs::read(&ckpt).unwrap()).unwrap();
    let dims: Vec<(String, Vec<i32>, Vec<i32>)> = raw
        .iter()
        .map(|(name, t)| {
            let size: Vec<i32> = t.shape.iter().map(|&d| d as i32).collect();
            let mut stride = vec![1i32; size.len()];
            for i in (0..size.len().saturating_sub(1)).rev() {
                stride[i] = stride[i + 1] * size[i + 1];
            }
            (name.clone(), size, stride)
        })
        .collect();
    let keys: Vec<(String, String)> =
        (0..raw.len()).map(|i| (format!("m{i}"), format!("e{i}"))).collect();
    let views = |ema: bool| -> Vec<checkpoints::View<'_>> {
        dims.iter()
            .zip(&keys)
            .map(|((name, size, stride), (m, e))| checkpoints::View {
                name,
                storage: if ema { e } else { m },
                offset: 0,
                size,
                stride,
            })
            .collect()
    };
    let mut storages: Vec<(&str, Vec<f32>)> = Vec::new();
    for ((m, e), t) in keys.iter().zip(raw.values()) {
        storages.push((m, t.data.clone()));
        storages.push((e, t.data.iter().map(|v| v * 0.5).collect()));
    }
    let training = dir.join("training.ckpt");
    std::fs::write(
        &training,
        checkpoints::training_checkpoint(&views(false), &views(true), &storages),
    )
    .unwrap();

    let convert = |name: &str, extra: &[&str]| {
        let out = dir.join(name);
        let mut args = vec!["convert", s(&training), "--config", &yaml, "-o", s(&out)];
        args.extend_from_slice(extra);
        let o = ddim(&args);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        (String::from_utf8_lossy(&o.stderr).into_owned(), Weights::load(&out).unwrap())
    };
    let want = from_original(Path::new(&ckpt), Path::new(&yaml)).unwrap();
    let (said, ema) = convert("ema.safetensors", &[]);
    assert!(said.contains("the checkpoint's EMA weights"), "{said}");
    let (said, plain) = convert("raw.safetensors", &["--no-ema"]);
    assert!(!said.contains("EMA"), "{said}");
    for (name, t) in &want.tensors {
        assert_eq!(plain.tensors[name].data, t.data, "{name}: --no-ema takes the model's weights");
        let half: Vec<f32> = t.data.iter().map(|v| v * 0.5).collect();
        assert_eq!(ema.tensors[name].data, half, "{name}: the default takes the EMA weights");
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// Hub-style folders: a pipeline's `model_index.json` with `unet/` and `scheduler/`, a variant's weights
/// (`--variant fp16`), and weights in shards with their index: each gives the fixture's weights, and the
/// scheduler's settings; a conditional UNet and a missing variant are one-line errors that say what is there.
#[test]
fn hub_folders_variants_and_shards() {
    use ddim_wgpu::model::convert::{from_diffusers_dir, from_diffusers_dir_variant};
    use safetensors::tensor::TensorView;
    let dir = temp_dir("conventions-hub");
    let src = Path::new(&fixture("pad0_onehead_safetensors/model")).to_path_buf();
    let want = from_diffusers_dir(&src).unwrap();
    let (unet, scheduler) = (dir.join("unet"), dir.join("scheduler"));
    std::fs::create_dir_all(&unet).unwrap();
    std::fs::create_dir_all(&scheduler).unwrap();
    std::fs::copy(src.join("config.json"), unet.join("config.json")).unwrap();
    let weights = std::fs::read(src.join("diffusion_pytorch_model.safetensors")).unwrap();
    std::fs::write(unet.join("diffusion_pytorch_model.fp16.safetensors"), &weights).unwrap();
    std::fs::write(
        scheduler.join("scheduler_config.json"),
        r#"{"_class_name": "DDIMScheduler", "clip_sample": false, "timestep_spacing": "trailing"}"#,
    )
    .unwrap();
    let index = |unet_class: &str| {
        let text = format!(
            r#"{{"_class_name": "DDPMPipeline", "scheduler": ["diffusers", "DDIMScheduler"], "unet": ["diffusers", "{unet_class}"]}}"#
        );
        std::fs::write(dir.join("model_index.json"), text).unwrap();
    };
    index("UNet2DModel");
    let w = from_diffusers_dir_variant(&dir, Some("fp16")).unwrap();
    assert_eq!(w.tensors, want.tensors);
    let sampling = w.training.unwrap().sampling;
    assert_eq!((sampling.clip, sampling.spacing.to_string()), (None, "trailing".to_string()));
    // Without the variant: says which there is.
    let e = from_diffusers_dir(&dir).unwrap_err().to_string();
    assert!(e.contains("it holds variant weights: pass --variant fp16"), "{e}");
    // Through the CLI.
    let out = dir.join("hub.safetensors");
    assert!(ddim(&["convert", s(&dir), "--variant", "fp16", "-o", s(&out)]).status.success());
    // Shards: the fixture's tensors split over two files, with the index naming each tensor's file.
    std::fs::remove_file(unet.join("diffusion_pytorch_model.fp16.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&weights).unwrap();
    let mut names = st.names();
    names.sort();
    let mut map = serde_json::Map::new();
    for (k, part) in names.chunks(names.len().div_ceil(2)).enumerate() {
        let file = format!("diffusion_pytorch_model-0000{}-of-00002.safetensors", k + 1);
        let views: Vec<(&str, TensorView)> =
            part.iter().map(|n| (*n, st.tensor(n).unwrap())).collect();
        std::fs::write(unet.join(&file), safetensors::serialize(views, None).unwrap()).unwrap();
        for n in part {
            map.insert(n.to_string(), serde_json::Value::String(file.clone()));
        }
    }
    let index_json = serde_json::json!({ "metadata": {}, "weight_map": map });
    std::fs::write(
        unet.join("diffusion_pytorch_model.safetensors.index.json"),
        index_json.to_string(),
    )
    .unwrap();
    assert_eq!(from_diffusers_dir(&dir).unwrap().tensors, want.tensors, "from shards");
    // A weight the index places in a shard that lacks it.
    let mut wrong = index_json.clone();
    let first = names[0].to_string();
    wrong["weight_map"][&first] = "diffusion_pytorch_model-00002-of-00002.safetensors".into();
    std::fs::write(unet.join("diffusion_pytorch_model.safetensors.index.json"), wrong.to_string())
        .unwrap();
    let e = from_diffusers_dir(&dir).unwrap_err().to_string();
    assert!(
        e.contains(&format!(
            "`{first}` is listed in diffusion_pytorch_model-00002-of-00002.safetensors"
        )),
        "{e}"
    );
    // A conditional pipeline is refused by name.
    index("UNet2DConditionModel");
    let e = from_diffusers_dir(&dir).unwrap_err().to_string();
    assert!(e.contains("the pipeline's unet is a UNet2DConditionModel"), "{e}");
    std::fs::remove_dir_all(&dir).ok();
}

/// On a headless machine Mesa's device-select layer prints `XDG_RUNTIME_DIR is invalid` notices that read like
/// ours; `ddim` turns the layer off unless the user set `NODEVICE_SELECT`, so its output has none of them.
#[test]
fn a_headless_run_prints_no_mesa_notices() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ddim"))
        .args(["info"])
        .env_remove("NODEVICE_SELECT")
        .env_remove("XDG_RUNTIME_DIR")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if succeeded(out, "info without NODEVICE_SELECT").is_none() {
        return;
    }
    assert!(!stderr.contains("XDG_RUNTIME_DIR"), "{stderr}");
}

/// `invert --image` takes JPEG as its help says (people invert photos): a JPEG and the PNG of the same pixels
/// give latents within JPEG's loss of each other.
#[test]
fn invert_takes_jpeg_images() {
    let dir = temp_dir("conventions-jpeg");
    let model = converted(&dir, "m.safetensors", &["--clip-sample", "off"]);
    // A smooth 8x8 RGB gradient, which JPEG at quality 100 keeps to a few levels.
    let pixels: Vec<u8> = (0..64).flat_map(|i| [(i * 4) as u8, (255 - i * 4) as u8, 128]).collect();
    let img = image::RgbImage::from_raw(8, 8, pixels).unwrap();
    let (jpg, png) = (dir.join("x.jpg"), dir.join("x.png"));
    let mut bytes = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 100).encode_image(&img).unwrap();
    std::fs::write(&jpg, bytes).unwrap();
    img.save(&png).unwrap();
    let invert = |input: &Path, name: &str| {
        let out = dir.join(name);
        ok(&["invert", "-m", &model, "--image", s(input), "-s", "2", "-o", s(&out)])
            .map(|_| ddim_wgpu::io::read_npy(&out).unwrap().data)
    };
    let Some(from_jpeg) = invert(&jpg, "jpg.npy") else { return };
    let from_png = invert(&png, "png.npy").unwrap();
    let worst = from_jpeg.iter().zip(&from_png).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    // Quality 100 moves a smooth gradient's pixels by a few levels of 255 (0.01 to 0.03 in [-1, 1]), which two
    // steps of inversion carry through: measured 0.026. 0.1 leaves a 4x margin; a wrong decode (channels swapped
    // or read as gray) moves the latents by 0.5 or more.
    assert!(worst < 0.1, "JPEG and PNG of one image: latents {worst} apart");
    std::fs::remove_dir_all(&dir).ok();
}

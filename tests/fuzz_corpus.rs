//! The fuzzers' corpora as ordinary tests (fuzzing itself stays outside CI; tools/fuzz/run.sh). Every committed
//! input of every target (fuzz/seeds/, the minimized corpus fuzz/corpus/, and the inputs of crashes found and
//! fixed, fuzz/regressions/) goes through the same entry point the fuzzer calls, which panics on a broken
//! promise (a panic in the parser, an error of more than one line; an allocation over the cap aborts). The
//! seeds, which are real files, must also parse.

use std::path::{Path, PathBuf};

use ddim_wgpu::fuzz::{CappedAllocator, Input, TARGETS, model_file_bytes};
use ddim_wgpu::io::{decode_image, parse_npy};
use ddim_wgpu::model::convert::{
    config_from_original_yaml, parse_safetensors, training_from_original_yaml,
    training_from_scheduler_json,
};
use ddim_wgpu::model::torch::{pickled_shapes, read_checkpoint};
use ddim_wgpu::model::weights::Weights;
use ddim_wgpu::pipeline::{check_settings, default_settings};
use ddim_wgpu::unet::config::UNetConfig;

// The fuzzers' allocation cap (320 MiB, the image target's), so that an input which once made a parser
// allocate for what it claims aborts this test as it crashed the fuzzer.
#[global_allocator]
static ALLOCATOR: CappedAllocator<{ 320 << 20 }> = CappedAllocator;

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    out.retain(|p| p.is_file());
    out.sort();
    out
}

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

#[test]
fn every_committed_fuzz_input_is_handled() {
    let mut total = 0;
    for (name, target) in TARGETS {
        let mut count = 0;
        for kind in ["seeds", "corpus", "regressions"] {
            for file in files(&fuzz_dir().join(kind).join(name)) {
                let bytes = std::fs::read(&file).unwrap();
                let start = std::time::Instant::now();
                let outcome = std::panic::catch_unwind(|| target(&bytes));
                // A hang the fuzzer found (its limit: 10 s per input) must stay fixed. Every committed input
                // takes milliseconds; 5 s leaves room for this unoptimised build on a loaded machine.
                let took = start.elapsed();
                assert!(took.as_secs() < 5, "{name}: {} took {took:?}", file.display());
                assert!(outcome.is_ok(), "{name}: {} broke a promise", file.display());
                count += 1;
            }
        }
        assert!(count > 0, "{name}: no committed inputs");
        total += count;
        println!("{name}: {count} inputs");
    }
    println!("{total} inputs in all");
}

/// The seeds are real files: each must parse (except the one hostile pickle, which must be refused).
#[test]
fn the_seeds_parse() {
    let seeds = |t: &str| files(&fuzz_dir().join("seeds").join(t));
    let text = |p: &Path| std::fs::read_to_string(p).unwrap();
    for p in seeds("pickle") {
        let r = pickled_shapes(&std::fs::read(&p).unwrap());
        let hostile = p.file_name().unwrap().to_string_lossy().starts_with("hostile");
        assert_eq!(r.is_ok(), !hostile, "{}: {r:?}", p.display());
    }
    for p in seeds("checkpoint") {
        let r = read_checkpoint(&std::fs::read(&p).unwrap());
        let hostile = p.file_name().unwrap().to_string_lossy().starts_with("hostile");
        assert_eq!(r.is_ok(), !hostile, "{}: {:?}", p.display(), r.err());
    }
    for p in seeds("weights") {
        let bytes = std::fs::read(&p).unwrap();
        if p.to_string_lossy().contains("diffusers_") {
            let tensors = parse_safetensors(&bytes, "seed").unwrap();
            assert_eq!(tensors.len(), 4, "the float tensors, not the integer one");
        } else {
            Weights::from_bytes(&bytes).unwrap();
        }
    }
    for p in seeds("npy") {
        parse_npy(&std::fs::read(&p).unwrap(), "seed").unwrap();
    }
    for p in seeds("yaml") {
        config_from_original_yaml(&text(&p)).unwrap();
        training_from_original_yaml(&text(&p)).unwrap();
    }
    for p in seeds("json_config") {
        if p.to_string_lossy().contains("scheduler") {
            training_from_scheduler_json(&text(&p), "seed").unwrap();
        } else {
            UNetConfig::from_diffusers_json(&text(&p)).unwrap();
        }
    }
    // The model_file seeds are descriptions: the files they make carry valid checksums, so the sane ones load
    // and the hostile ones are refused by what comes after the checksum (config validation).
    for p in seeds("model_file") {
        let bytes = std::fs::read(&p).unwrap();
        let file = model_file_bytes(&mut Input(&bytes)).expect("serialisable");
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        let loaded = Weights::from_bytes(&file);
        match name.as_str() {
            "damaged" | "nan_weight" => {
                let e = loaded.unwrap_err().to_string();
                assert!(e.starts_with("weight `"), "{name}: {e}");
            }
            "huge_image" | "tiny_factor" => {
                let e = loaded.unwrap_err().to_string();
                assert!(e.contains("model config"), "{name}: {e}");
            }
            "underflowing_schedule" => {
                let w = loaded.unwrap();
                let settings = default_settings(w.training.as_ref());
                let e = check_settings(&settings).unwrap_err().to_string();
                assert!(e.contains("below 1e-30"), "{e}");
            }
            _ => assert!(loaded.is_ok(), "{name}: {:?}", loaded.err()),
        }
    }
    for p in seeds("image") {
        decode_image(&std::fs::read(&p).unwrap(), "seed", 3, 32, true).unwrap();
    }
}

/// The cargo-fuzz crate is not built by CI (it needs nightly): check here that it has one binary per target,
/// each calling the entry point of its name, so the fuzzers and these replays stay the same functions.
#[test]
fn every_target_has_its_cargo_fuzz_binary() {
    let manifest = std::fs::read_to_string(fuzz_dir().join("Cargo.toml")).unwrap();
    assert_eq!(manifest.matches("[[bin]]").count(), TARGETS.len(), "{manifest}");
    for (name, _) in TARGETS {
        assert!(manifest.contains(&format!("name = \"{name}\"")), "no [[bin]] `{name}`");
        let source = fuzz_dir().join("fuzz_targets").join(format!("{name}.rs"));
        let text = std::fs::read_to_string(&source).unwrap();
        assert!(
            text.contains(&format!("ddim_wgpu::fuzz::{name}(data)")),
            "{} does not call ddim_wgpu::fuzz::{name}",
            source.display()
        );
    }
}

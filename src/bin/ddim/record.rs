//! The record of a sampling run that `ddim sample --out-npy x.npy` writes beside its array (`x.npy.run.json`):
//! the model, the settings, the seed and which images of the run the file holds. `ddim merge` refuses inputs
//! that do not come from one run or do not continue each other, and writes the merged file's record.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use ddim_wgpu::io::read_text;
use ddim_wgpu::model::weights::Weights;

/// One `.npy` file's place in its run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunRecord {
    /// CRC-32 of the model's parameters, in name order.
    pub model: String,
    /// The sampler's settings, as the library prints them.
    pub settings: String,
    /// Where the latents came from: `seed <s>`, or the file given.
    pub start: String,
    /// Images in the whole run (every shard).
    pub images: usize,
    /// The run's index of the file's first image.
    pub first: usize,
    /// Images in the file.
    pub count: usize,
}

/// Where the record of `npy` lives.
pub fn path_for(npy: &Path) -> PathBuf {
    let mut name = npy.as_os_str().to_owned();
    name.push(".run.json");
    PathBuf::from(name)
}

/// The identity of a model: CRC-32 over its parameters' names, shapes and values.
pub fn model_id(weights: &Weights) -> String {
    let mut h = crc32fast::Hasher::new();
    for (name, t) in &weights.tensors {
        h.update(name.as_bytes());
        for d in &t.shape {
            h.update(&(*d as u64).to_le_bytes());
        }
        for v in &t.data {
            h.update(&v.to_le_bytes());
        }
    }
    format!("crc32:{:08x}", h.finalize())
}

impl RunRecord {
    /// The record as written.
    pub fn to_json(&self) -> Vec<u8> {
        let mut text = serde_json::to_string_pretty(self).expect("plain fields serialise");
        text.push('\n');
        text.into_bytes()
    }

    /// The record beside `npy`, if there is one.
    pub fn read_beside(npy: &Path) -> Result<Option<RunRecord>> {
        let path = path_for(npy);
        if !path.exists() {
            return Ok(None);
        }
        let text = read_text(&path)?;
        serde_json::from_str(&text)
            .map(Some)
            .with_context(|| format!("{}: not a run record", path.display()))
    }

    /// The record of `records` merged in order, refusing records of different runs and files that do not
    /// continue each other.
    pub fn merged(records: &[(&Path, RunRecord)]) -> Result<RunRecord> {
        let (first_path, first) = &records[0];
        let mut merged = first.clone();
        for (path, r) in &records[1..] {
            for (what, a, b) in [
                ("model", &first.model, &r.model),
                ("settings", &first.settings, &r.settings),
                ("latents", &first.start, &r.start),
            ] {
                if a != b {
                    bail!(
                        "{} and {} come from different runs: their {what} differ ({a} against {b})",
                        first_path.display(),
                        path.display()
                    );
                }
            }
            if r.images != first.images {
                bail!(
                    "{} and {} come from different runs: {} against {} images",
                    first_path.display(),
                    path.display(),
                    first.images,
                    r.images
                );
            }
            let next = merged.first + merged.count;
            if r.first != next {
                bail!(
                    "{}: holds images {}..{} of the run, but the files before it end at image {next} (give the \
                     shards in order, each once)",
                    path.display(),
                    r.first,
                    r.first + r.count
                );
            }
            merged.count += r.count;
        }
        Ok(merged)
    }
}

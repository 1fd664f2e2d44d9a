//! `ddim merge`: shards' `.npy` outputs concatenated along the first axis, checked against their run records
//! (`record.rs`) to come from one run and to continue each other.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use ddim_wgpu::io::{OutputSet, npy_bytes, read_npy};
use ddim_wgpu::limits;

use crate::record::{self, RunRecord};

/// The flags of `ddim merge`.
#[derive(clap::Args)]
pub struct Args {
    /// The shard files, in shard order.
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
    /// The merged file (and its run record beside it, where the inputs have theirs).
    #[arg(short = 'o', long)]
    pub out: PathBuf,
}

/// Runs `ddim merge`.
pub fn run(args: Args) -> Result<()> {
    merge(&args.inputs, &args.out)
}

fn merge(inputs: &[PathBuf], out: &Path) -> Result<()> {
    // The run records first: inputs of different runs are refused before any array is read.
    let records: Vec<Option<RunRecord>> =
        inputs.iter().map(|p| RunRecord::read_beside(p)).collect::<Result<_>>()?;
    let merged_record = match records.iter().filter(|r| r.is_some()).count() {
        0 => {
            eprintln!(
                "note: no run records beside the inputs (`ddim sample --out-npy` writes them): not checked that \
                 they come from one run"
            );
            None
        }
        n if n == inputs.len() => {
            let pairs: Vec<(&Path, RunRecord)> =
                inputs.iter().map(PathBuf::as_path).zip(records.into_iter().flatten()).collect();
            Some(RunRecord::merged(&pairs)?)
        }
        _ => {
            let missing = inputs.iter().zip(&records).find(|(_, r)| r.is_none()).expect("some");
            bail!(
                "{} has no run record ({}) while other inputs do: it may not come from the same run",
                missing.0.display(),
                record::path_for(missing.0).display()
            )
        }
    };
    let record_path = record::path_for(out);
    let mut outputs = OutputSet::new();
    outputs.reserve(out)?;
    if merged_record.is_some() {
        outputs.reserve(&record_path)?;
    }
    let mut shape: Option<Vec<usize>> = None;
    let mut data = Vec::new();
    for path in inputs {
        let a = read_npy(path)?;
        if a.shape.is_empty() {
            bail!("{}: a scalar cannot be concatenated", path.display());
        }
        match &mut shape {
            None => shape = Some(a.shape.clone()),
            Some(s) if s[1..] == a.shape[1..] => {
                s[0] = s[0].checked_add(a.shape[0]).with_context(|| {
                    format!("{}: the merged first dimension overflows", path.display())
                })?;
                // The merged array grows with every input: checked before it does.
                limits::f32_array("the merged array", s)?;
            }
            Some(s) => bail!(
                "{}: shape {:?} does not continue {:?} along the first axis",
                path.display(),
                a.shape,
                s
            ),
        }
        data.extend(a.data);
    }
    let shape = shape.expect("clap requires one input");
    if let Some(r) = &merged_record {
        if r.count != shape[0] {
            bail!(
                "the run records name {} images and the arrays hold {}: a file and its record disagree",
                r.count,
                shape[0]
            );
        }
        outputs.write(&record_path, &r.to_json())?;
    }
    outputs.write(out, &npy_bytes(out, &shape, &data)?)?;
    outputs.commit()?;
    println!("wrote {} {shape:?} from {} files", out.display(), inputs.len());
    Ok(())
}

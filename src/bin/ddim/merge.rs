//! `ddim merge`: shards' `.npy` outputs concatenated along the first axis.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use ddim_wgpu::io::{OutputSet, npy_bytes, read_npy};
use ddim_wgpu::limits;

/// The flags of `ddim merge`.
#[derive(clap::Args)]
pub struct Args {
    /// The shard files, in shard order.
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
    /// The merged file.
    #[arg(long)]
    pub out: PathBuf,
}

/// Runs `ddim merge`.
pub fn run(args: Args) -> Result<()> {
    merge(&args.inputs, &args.out)
}

fn merge(inputs: &[PathBuf], out: &Path) -> Result<()> {
    let mut outputs = OutputSet::new();
    outputs.reserve(out)?;
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
    outputs.write(out, &npy_bytes(out, &shape, &data)?)?;
    outputs.commit()?;
    println!("wrote {} {shape:?} from {} files", out.display(), inputs.len());
    Ok(())
}

//! `ddim merge`: shards' `.npy` outputs concatenated along the first axis.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};

use ddim_wgpu::io::{read_npy, write_npy};

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
    let mut shape: Option<Vec<usize>> = None;
    let mut data = Vec::new();
    for path in inputs {
        let a = read_npy(path)?;
        if a.shape.is_empty() {
            bail!("{}: a scalar cannot be concatenated", path.display());
        }
        match &mut shape {
            None => shape = Some(a.shape.clone()),
            Some(s) if s[1..] == a.shape[1..] => s[0] += a.shape[0],
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
    write_npy(out, &shape, &data)?;
    println!("wrote {} {shape:?} from {} files", out.display(), inputs.len());
    Ok(())
}

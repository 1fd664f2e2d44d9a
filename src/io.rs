//! File I/O with errors that name the path, and writes that never leave a partial file.

use std::io::Write;
use std::path::Path;

use crate::error::{Error, Result};

/// Reads a whole file.
pub fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::Io {
        path: path.display().to_string(),
        message: e.to_string(),
    })
}

/// Writes `bytes` to a temporary file beside `path`, then renames it over `path`.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let err = |e: std::io::Error| Error::Io {
        path: path.display().to_string(),
        message: e.to_string(),
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path.file_name().ok_or_else(|| Error::Io {
        path: path.display().to_string(),
        message: "not a file name".into(),
    })?;
    let tmp = dir.join(format!(
        ".{}.partial-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(err)
}

/// An array read from a `.npy` file, widened to f32 (float32, float64, and integer arrays are accepted).
#[derive(Clone, Debug, PartialEq)]
pub struct NpyArray {
    /// Outermost first (C order).
    pub shape: Vec<usize>,
    /// Row-major values.
    pub data: Vec<f32>,
}

/// Reads a C-order `.npy` array of float32, float64, int64 or int32.
pub fn read_npy(path: &Path) -> Result<NpyArray> {
    let bytes = read(path)?;
    let err = |m: String| Error::Io {
        path: path.display().to_string(),
        message: m,
    };
    let npy = npyz::NpyFile::new(&bytes[..]).map_err(|e| err(format!("not a .npy file: {e}")))?;
    if npy.order() != npyz::Order::C {
        return Err(err(
            "Fortran-order arrays are not supported; save with np.ascontiguousarray".into(),
        ));
    }
    let shape: Vec<usize> = npy.shape().iter().map(|&d| d as usize).collect();
    let npyz::DType::Plain(ts) = npy.dtype() else {
        return Err(err("structured arrays are not supported".into()));
    };
    let kind = (ts.type_char(), ts.num_bytes());
    let io = |e: std::io::Error| err(e.to_string());
    let data: Vec<f32> = match kind {
        (npyz::TypeChar::Float, Some(4)) => npy.into_vec::<f32>().map_err(io)?,
        (npyz::TypeChar::Float, Some(8)) => npy
            .into_vec::<f64>()
            .map_err(io)?
            .into_iter()
            .map(|v| v as f32)
            .collect(),
        (npyz::TypeChar::Int, Some(8)) => npy
            .into_vec::<i64>()
            .map_err(io)?
            .into_iter()
            .map(|v| v as f32)
            .collect(),
        (npyz::TypeChar::Int, Some(4)) => npy
            .into_vec::<i32>()
            .map_err(io)?
            .into_iter()
            .map(|v| v as f32)
            .collect(),
        _ => {
            return Err(err(format!(
                "dtype {ts} is not float32, float64, int64 or int32"
            )));
        }
    };
    if data.len() != shape.iter().product::<usize>() {
        return Err(err(format!(
            "holds {} values for shape {shape:?}",
            data.len()
        )));
    }
    Ok(NpyArray { shape, data })
}

/// Writes a float32 `.npy` array (atomically).
pub fn write_npy(path: &Path, shape: &[usize], data: &[f32]) -> Result<()> {
    use npyz::WriterBuilder;
    let err = |e: std::io::Error| Error::Io {
        path: path.display().to_string(),
        message: e.to_string(),
    };
    let mut bytes = Vec::new();
    let dims: Vec<u64> = shape.iter().map(|&d| d as u64).collect();
    let mut w = npyz::WriteOptions::new()
        .default_dtype()
        .shape(&dims)
        .writer(&mut bytes)
        .begin_nd()
        .map_err(err)?;
    w.extend(data.iter().copied()).map_err(err)?;
    w.finish().map_err(err)?;
    write_atomic(path, &bytes)
}

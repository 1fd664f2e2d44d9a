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

/// Writes `bytes` to a temporary file beside `path`, then renames it over `path`, so that a failure never leaves
/// a partial file. An existing `path` that is not a regular file (a device such as /dev/null, a directory) is
/// refused rather than replaced.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let err = |e: std::io::Error| Error::Io {
        path: path.display().to_string(),
        message: e.to_string(),
    };
    if let Ok(meta) = std::fs::metadata(path)
        && !meta.is_file()
    {
        return Err(Error::Io {
            path: path.display().to_string(),
            message: "exists and is not a regular file; outputs are written to a temporary file and renamed \
                      over their path"
                .into(),
        });
    }
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

/// Maps model space [-1, 1] to a byte, clamping.
fn to_byte(v: f32) -> u8 {
    ((v.clamp(-1.0, 1.0) + 1.0) * 127.5).round() as u8
}

/// Writes images `[n, c, h, w]` (model space, [-1, 1]) as one PNG grid with `cols` columns (1 channel: grey,
/// 3: RGB). A pixel of border separates the cells.
pub fn write_png_grid(
    path: &Path,
    images: &[f32],
    [n, c, h, w]: [usize; 4],
    cols: usize,
) -> Result<()> {
    let err = |m: String| Error::Io {
        path: path.display().to_string(),
        message: m,
    };
    if c != 1 && c != 3 {
        return Err(err(format!(
            "cannot write {c}-channel images as PNG (1 or 3 channels)"
        )));
    }
    let cols = cols.clamp(1, n.max(1));
    let rows = n.div_ceil(cols);
    let (gw, gh) = (cols * (w + 1) + 1, rows * (h + 1) + 1);
    let mut rgb = vec![255u8; gw * gh * 3];
    for k in 0..n {
        let (ox, oy) = (1 + (k % cols) * (w + 1), 1 + (k / cols) * (h + 1));
        for y in 0..h {
            for x in 0..w {
                for ch in 0..3 {
                    let src = if c == 1 { 0 } else { ch };
                    let v = images[((k * c + src) * h + y) * w + x];
                    rgb[((oy + y) * gw + ox + x) * 3 + ch] = to_byte(v);
                }
            }
        }
    }
    let img = image::RgbImage::from_raw(gw as u32, gh as u32, rgb).expect("sized above");
    let mut bytes = Vec::new();
    img.write_to(
        &mut std::io::Cursor::new(&mut bytes),
        image::ImageFormat::Png,
    )
    .map_err(|e| err(e.to_string()))?;
    write_atomic(path, &bytes)
}

/// Writes one image `[c, h, w]` (model space) as a PNG without border.
pub fn write_png(path: &Path, image: &[f32], [c, h, w]: [usize; 3]) -> Result<()> {
    let err = |m: String| Error::Io {
        path: path.display().to_string(),
        message: m,
    };
    let mut bytes = Vec::new();
    let mut cursor = std::io::Cursor::new(&mut bytes);
    let result = match c {
        1 => image::GrayImage::from_raw(
            w as u32,
            h as u32,
            image.iter().map(|&v| to_byte(v)).collect(),
        )
        .expect("sized")
        .write_to(&mut cursor, image::ImageFormat::Png),
        3 => {
            let mut rgb = vec![0u8; h * w * 3];
            for ch in 0..3 {
                for i in 0..h * w {
                    rgb[i * 3 + ch] = to_byte(image[ch * h * w + i]);
                }
            }
            image::RgbImage::from_raw(w as u32, h as u32, rgb)
                .expect("sized")
                .write_to(&mut cursor, image::ImageFormat::Png)
        }
        _ => {
            return Err(err(format!(
                "cannot write {c}-channel images as PNG (1 or 3 channels)"
            )));
        }
    };
    result.map_err(|e| err(e.to_string()))?;
    write_atomic(path, &bytes)
}

/// Reads an image as `[c, size, size]` in model space [-1, 1] (c = 1: grey, 3: RGB). An image of another size
/// is resized (Catmull-Rom) when `resize` is set, and refused otherwise.
pub fn read_image(path: &Path, c: usize, size: usize, resize: bool) -> Result<Vec<f32>> {
    let err = |m: String| Error::Io {
        path: path.display().to_string(),
        message: m,
    };
    let bytes = read(path)?;
    let img = image::load_from_memory(&bytes)
        .map_err(|e| err(format!("not an image this build reads: {e}")))?;
    let img = if (img.width() as usize, img.height() as usize) != (size, size) {
        if !resize {
            return Err(err(format!(
                "is {}x{}, the model takes {size}x{size} (pass --resize to resize it)",
                img.width(),
                img.height()
            )));
        }
        img.resize_exact(
            size as u32,
            size as u32,
            image::imageops::FilterType::CatmullRom,
        )
    } else {
        img
    };
    let to_model = |b: u8| b as f32 / 127.5 - 1.0;
    match c {
        1 => Ok(img
            .to_luma8()
            .into_raw()
            .into_iter()
            .map(to_model)
            .collect()),
        3 => {
            let rgb = img.to_rgb8().into_raw();
            let mut out = vec![0.0; 3 * size * size];
            for (i, px) in rgb.chunks_exact(3).enumerate() {
                for ch in 0..3 {
                    out[ch * size * size + i] = to_model(px[ch]);
                }
            }
            Ok(out)
        }
        _ => Err(err(format!(
            "the model takes {c}-channel images; only 1 or 3 can be read from image files"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_writes_replace_files_and_refuse_the_rest() {
        let dir = std::env::temp_dir().join(format!("ddim-io-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("a.bin");
        write_atomic(&f, b"one").unwrap();
        write_atomic(&f, b"two").unwrap();
        assert_eq!(std::fs::read(&f).unwrap(), b"two");
        // A directory (and a device such as /dev/null) is not replaced.
        let e = write_atomic(&dir, b"x").unwrap_err().to_string();
        assert!(e.contains("not a regular file"), "{e}");
        if Path::new("/dev/null").exists() {
            assert!(write_atomic(Path::new("/dev/null"), b"x").is_err());
        }
        // Nothing partial is left behind.
        let leftovers: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .collect();
        assert_eq!(leftovers.len(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

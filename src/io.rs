//! File I/O with errors that name the path, and writes that never leave a partial file.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Reads a whole file.
pub fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path)
        .map_err(|e| Error::Io { path: path.display().to_string(), message: e.to_string() })
}

/// Writes `bytes` to a temporary file beside `path`, then renames it over `path`, so that a failure never leaves
/// a partial file. An existing `path` that is not a regular file (a device such as /dev/null, a directory) is
/// refused rather than replaced.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut set = OutputSet::default();
    set.stage(path, bytes)?;
    set.commit()
}

/// Output files written all or none: each is staged to a temporary file beside its path, and
/// [`OutputSet::commit`] renames them into place only once every one is staged. A set dropped uncommitted (an
/// error on the way) removes what it staged, so a failed command leaves no output at all, not some of them.
#[derive(Debug, Default)]
pub struct OutputSet {
    /// (temporary file, final path), in staging order.
    staged: Vec<(PathBuf, PathBuf)>,
    /// Directories this set created, removed again (when empty) if it is dropped uncommitted.
    created: Vec<PathBuf>,
}

fn io_error(path: &Path, message: impl std::fmt::Display) -> Error {
    Error::Io { path: path.display().to_string(), message: message.to_string() }
}

/// The temporary file an output is staged to: beside it (so the rename stays on one file system), hidden.
fn staging_path(path: &Path) -> Result<PathBuf> {
    let name = path.file_name().ok_or_else(|| io_error(path, "not a file name"))?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    Ok(dir.join(format!(".{}.partial-{}", name.to_string_lossy(), std::process::id())))
}

/// Checks, before any long work, that `path` can be written: it is not a directory or device, its directory
/// exists, and a file can be created there (the probe is removed at once). Commands call this for every output
/// first, so that an unwritable output fails in a moment rather than after the sampling.
pub fn check_writable(path: &Path) -> Result<()> {
    refuse_non_file(path)?;
    let probe = staging_path(path)?;
    std::fs::File::create(&probe).map_err(|e| io_error(path, format!("cannot be written: {e}")))?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

/// Refuses an existing `path` that is not a regular file (a directory, a device such as /dev/null): it is
/// never replaced.
fn refuse_non_file(path: &Path) -> Result<()> {
    match std::fs::metadata(path) {
        Ok(meta) if !meta.is_file() => Err(io_error(
            path,
            "exists and is not a regular file; outputs are written to a temporary file and renamed over \
             their path",
        )),
        _ => Ok(()),
    }
}

/// [`check_writable`] for each of a command's outputs, which must also be distinct paths.
pub fn check_outputs(paths: &[&Path]) -> Result<()> {
    for (i, path) in paths.iter().enumerate() {
        if paths[..i].contains(path) {
            return Err(io_error(path, "is given for two outputs of one command"));
        }
        check_writable(path)?;
    }
    Ok(())
}

impl OutputSet {
    /// Writes `bytes` to `path`'s temporary file (synced to disk); `path` itself is untouched until
    /// [`OutputSet::commit`].
    pub fn stage(&mut self, path: &Path, bytes: &[u8]) -> Result<()> {
        if self.staged.iter().any(|(_, p)| p == path) {
            return Err(io_error(path, "is given for two outputs of one command"));
        }
        // Creating the temporary file is the writability check; no separate probe.
        refuse_non_file(path)?;
        let tmp = staging_path(path)?;
        let result = (|| {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(bytes)?;
            f.sync_all()
        })();
        if let Err(e) = result {
            let _ = std::fs::remove_file(&tmp);
            return Err(io_error(path, e));
        }
        self.staged.push((tmp, path.to_path_buf()));
        Ok(())
    }

    /// Creates `dir` (and missing parents) for outputs staged into it; what it created is removed again if the
    /// set is dropped uncommitted.
    pub fn create_dir(&mut self, dir: &Path) -> Result<()> {
        let mut missing = Vec::new();
        let mut d = Some(dir);
        while let Some(p) = d.filter(|p| !p.as_os_str().is_empty() && !p.exists()) {
            missing.push(p.to_path_buf());
            d = p.parent();
        }
        for p in missing.into_iter().rev() {
            std::fs::create_dir(&p).map_err(|e| io_error(&p, format!("cannot be created: {e}")))?;
            self.created.push(p);
        }
        if !dir.is_dir() {
            return Err(io_error(dir, "is not a directory"));
        }
        Ok(())
    }

    /// Renames every staged file into place. (A rename within one directory fails only when the file system
    /// does; the files not yet renamed are then removed.)
    pub fn commit(mut self) -> Result<()> {
        self.created.clear();
        let mut result = Ok(());
        for (tmp, path) in std::mem::take(&mut self.staged) {
            if result.is_ok() {
                match std::fs::rename(&tmp, &path) {
                    Ok(()) => continue,
                    Err(e) => result = Err(io_error(&path, e)),
                }
            }
            let _ = std::fs::remove_file(&tmp);
        }
        result
    }
}

impl Drop for OutputSet {
    fn drop(&mut self) {
        for (tmp, _) in &self.staged {
            let _ = std::fs::remove_file(tmp);
        }
        for dir in self.created.iter().rev() {
            let _ = std::fs::remove_dir(dir);
        }
    }
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
    parse_npy(&read(path)?, &path.display().to_string())
}

/// Parses the bytes of a C-order, little-endian `.npy` array of float32, float64, int64 or int32; `what` (the
/// path) names it in errors. The header's claims (its length, the shape) are checked against the bytes there
/// before anything is allocated for them.
///
/// The reading is ours, not npyz's (which writes our `.npy` files): fuzzing found npyz's reader allocating the
/// header length a file claims (662 MB for a 118-byte file) and its header parser taking exponential time on
/// malformed Python literals (over 10 s for a 352-byte header). The header numpy writes is a small fixed
/// grammar, read here in one linear pass.
pub fn parse_npy(bytes: &[u8], what: &str) -> Result<NpyArray> {
    let err = |m: String| Error::Io {
        path: what.to_string(),
        message: format!("not a .npy file this build reads: {m}"),
    };
    let (len_at, len_size) = match bytes.get(..7) {
        Some([0x93, b'N', b'U', b'M', b'P', b'Y', 1]) => (8, 2),
        Some([0x93, b'N', b'U', b'M', b'P', b'Y', 2 | 3]) => (8, 4),
        _ => return Err(err("no NUMPY format 1, 2 or 3 magic".into())),
    };
    let header_len = bytes
        .get(len_at..len_at + len_size)
        .map(|b| b.iter().rev().fold(0usize, |a, &x| a << 8 | x as usize))
        .ok_or_else(|| err("truncated header".into()))?;
    let data_at = len_at + len_size + header_len;
    if data_at > bytes.len() {
        return Err(err(format!(
            "the header claims {header_len} bytes, more than the file's {}",
            bytes.len()
        )));
    }
    let header = std::str::from_utf8(&bytes[len_at + len_size..data_at])
        .map_err(|_| err("the header is not text".into()))?;
    let header = NpyHeader::parse(header).map_err(|m| err(format!("header: {m}")))?;
    if header.fortran_order {
        return Err(err(
            "Fortran-order arrays are not supported; save with np.ascontiguousarray".into()
        ));
    }
    let width = match header.descr.as_str() {
        "<f4" | "<i4" => 4,
        "<f8" | "<i8" => 8,
        other => {
            return Err(err(format!(
                "dtype `{other}` is not little-endian float32, float64, int64 or int32"
            )));
        }
    };
    let data = &bytes[data_at..];
    let count = header
        .shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .filter(|n| n.checked_mul(width) == Some(data.len()))
        .ok_or_else(|| {
            err(format!(
                "shape {:?} of {} does not match the {} bytes of data",
                header.shape,
                header.descr,
                data.len()
            ))
        })?;
    let values = data.chunks_exact(width);
    let data: Vec<f32> = match header.descr.as_str() {
        "<f4" => values.map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes"))).collect(),
        "<f8" => {
            values.map(|b| f64::from_le_bytes(b.try_into().expect("8 bytes")) as f32).collect()
        }
        "<i4" => {
            values.map(|b| i32::from_le_bytes(b.try_into().expect("4 bytes")) as f32).collect()
        }
        _ => values.map(|b| i64::from_le_bytes(b.try_into().expect("8 bytes")) as f32).collect(),
    };
    debug_assert_eq!(data.len(), count);
    Ok(NpyArray { shape: header.shape, data })
}

/// The header of a `.npy` file: a Python dict literal with the keys `descr` (a string), `fortran_order`
/// (`True` or `False`) and `shape` (a tuple of integers), as numpy writes it.
struct NpyHeader {
    descr: String,
    fortran_order: bool,
    shape: Vec<usize>,
}

impl NpyHeader {
    /// One pass over the text; no backtracking. Errors say what was expected where.
    fn parse(text: &str) -> std::result::Result<Self, String> {
        let mut p = Literal { s: text.as_bytes(), at: 0 };
        let (mut descr, mut fortran_order, mut shape) = (None, None, None);
        p.expect(b'{')?;
        loop {
            if p.eat(b'}') {
                break;
            }
            let key = p.string()?;
            p.expect(b':')?;
            match key.as_str() {
                "descr" => descr = Some(p.string()?),
                "fortran_order" => fortran_order = Some(p.boolean()?),
                "shape" => shape = Some(p.tuple()?),
                other => return Err(format!("unknown key `{other}`")),
            }
            if !p.eat(b',') {
                p.expect(b'}')?;
                break;
            }
        }
        if p.s[p.at..].iter().any(|c| !c.is_ascii_whitespace()) {
            return Err(format!("text after the dict at byte {}", p.at));
        }
        Ok(NpyHeader {
            descr: descr.ok_or("no `descr`")?,
            fortran_order: fortran_order.ok_or("no `fortran_order`")?,
            shape: shape.ok_or("no `shape`")?,
        })
    }
}

/// A cursor over a Python literal.
struct Literal<'a> {
    s: &'a [u8],
    at: usize,
}

impl Literal<'_> {
    fn skip_space(&mut self) {
        while self.s.get(self.at).is_some_and(|c| c.is_ascii_whitespace()) {
            self.at += 1;
        }
    }
    /// Consumes `c` (after whitespace) if it is next.
    fn eat(&mut self, c: u8) -> bool {
        self.skip_space();
        let found = self.s.get(self.at) == Some(&c);
        self.at += found as usize;
        found
    }
    fn expect(&mut self, c: u8) -> std::result::Result<(), String> {
        match self.eat(c) {
            true => Ok(()),
            false => Err(format!("expected `{}` at byte {}", c as char, self.at)),
        }
    }
    /// A string in single or double quotes, without escapes (numpy writes none).
    fn string(&mut self) -> std::result::Result<String, String> {
        self.skip_space();
        let quote = match self.s.get(self.at) {
            Some(&q @ (b'\'' | b'"')) => q,
            _ => return Err(format!("expected a string at byte {}", self.at)),
        };
        let start = self.at + 1;
        let len =
            self.s[start..].iter().position(|&c| c == quote).ok_or("an unterminated string")?;
        let text = &self.s[start..start + len];
        if text.contains(&b'\\') {
            return Err("escapes in a string".into());
        }
        self.at = start + len + 1;
        Ok(String::from_utf8_lossy(text).into_owned())
    }
    fn boolean(&mut self) -> std::result::Result<bool, String> {
        self.skip_space();
        for (word, value) in [(&b"True"[..], true), (&b"False"[..], false)] {
            if self.s[self.at..].starts_with(word) {
                self.at += word.len();
                return Ok(value);
            }
        }
        Err(format!("expected True or False at byte {}", self.at))
    }
    /// `(d0, d1, ...)`, `(d0,)` or `()`: non-negative integers.
    fn tuple(&mut self) -> std::result::Result<Vec<usize>, String> {
        self.expect(b'(')?;
        let mut dims = Vec::new();
        loop {
            if self.eat(b')') {
                return Ok(dims);
            }
            let start = self.at;
            while self.s.get(self.at).is_some_and(u8::is_ascii_digit) {
                self.at += 1;
            }
            let digits = std::str::from_utf8(&self.s[start..self.at]).unwrap_or("");
            dims.push(digits.parse().map_err(|_| format!("expected a dimension at byte {start}"))?);
            if !self.eat(b',') {
                self.expect(b')')?;
                return Ok(dims);
            }
        }
    }
}

/// Writes a float32 `.npy` array (atomically).
pub fn write_npy(path: &Path, shape: &[usize], data: &[f32]) -> Result<()> {
    write_atomic(path, &npy_bytes(path, shape, data)?)
}

/// The bytes of a float32 `.npy` array; `path` (where they will go) names it in errors.
pub fn npy_bytes(path: &Path, shape: &[usize], data: &[f32]) -> Result<Vec<u8>> {
    use npyz::WriterBuilder;
    let err =
        |e: std::io::Error| Error::Io { path: path.display().to_string(), message: e.to_string() };
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
    Ok(bytes)
}

/// Maps model space [-1, 1] to a byte, clamping.
fn to_byte(v: f32) -> u8 {
    ((v.clamp(-1.0, 1.0) + 1.0) * 127.5).round() as u8
}

/// Writes images `[n, c, h, w]` (model space, [-1, 1]) as one PNG grid with `cols` columns (1 channel: grey,
/// 3: RGB). A pixel of border separates the cells.
pub fn write_png_grid(path: &Path, images: &[f32], dims: [usize; 4], cols: usize) -> Result<()> {
    write_atomic(path, &png_grid_bytes(path, images, dims, cols)?)
}

/// The bytes of [`write_png_grid`]'s file; `path` names it in errors.
pub fn png_grid_bytes(
    path: &Path,
    images: &[f32],
    [n, c, h, w]: [usize; 4],
    cols: usize,
) -> Result<Vec<u8>> {
    let err = |m: String| Error::Io { path: path.display().to_string(), message: m };
    if c != 1 && c != 3 {
        return Err(err(format!("cannot write {c}-channel images as PNG (1 or 3 channels)")));
    }
    if images.len() != n * c * h * w {
        return Err(err(format!("{} values for {n} images of {c}x{h}x{w}", images.len())));
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
    img.write_to(&mut std::io::Cursor::new(&mut bytes), image::ImageFormat::Png)
        .map_err(|e| err(e.to_string()))?;
    Ok(bytes)
}

/// Writes one image `[c, h, w]` (model space) as a PNG without border.
pub fn write_png(path: &Path, image: &[f32], dims: [usize; 3]) -> Result<()> {
    write_atomic(path, &png_bytes(path, image, dims)?)
}

/// The bytes of [`write_png`]'s file; `path` names it in errors.
pub fn png_bytes(path: &Path, image: &[f32], [c, h, w]: [usize; 3]) -> Result<Vec<u8>> {
    let err = |m: String| Error::Io { path: path.display().to_string(), message: m };
    if image.len() != c * h * w {
        return Err(err(format!("{} values for an image of {c}x{h}x{w}", image.len())));
    }
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
            return Err(err(format!("cannot write {c}-channel images as PNG (1 or 3 channels)")));
        }
    };
    result.map_err(|e| err(e.to_string()))?;
    Ok(bytes)
}

/// Reads an image as `[c, size, size]` in model space [-1, 1] (c = 1: grey, 3: RGB). An image of another size
/// is resized (Catmull-Rom) when `resize` is set, and refused otherwise.
pub fn read_image(path: &Path, c: usize, size: usize, resize: bool) -> Result<Vec<f32>> {
    decode_image(&read(path)?, &path.display().to_string(), c, size, resize)
}

/// The largest width or height of an image file this engine decodes, and the most memory its decoder may
/// take: far above any model's `sample_size`, so that a file whose header claims a huge image is refused
/// before the decoder allocates for it. At this side, the conversion to 8-bit RGB after decoding takes at most
/// 192 MiB.
pub const MAX_IMAGE_SIDE: u32 = 8192;
const MAX_IMAGE_DECODE_BYTES: u64 = 256 << 20;

/// [`read_image`] on the bytes of an image file; `what` (the path) names it in errors.
pub fn decode_image(
    bytes: &[u8],
    what: &str,
    c: usize,
    size: usize,
    resize: bool,
) -> Result<Vec<f32>> {
    let err = |m: String| Error::Io { path: what.to_string(), message: m };
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_IMAGE_SIDE);
    limits.max_image_height = Some(MAX_IMAGE_SIDE);
    limits.max_alloc = Some(MAX_IMAGE_DECODE_BYTES);
    let mut reader = image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| err(e.to_string()))?;
    reader.limits(limits);
    let img = reader.decode().map_err(|e| err(format!("not an image this build reads: {e}")))?;
    let img = if (img.width() as usize, img.height() as usize) != (size, size) {
        if !resize {
            return Err(err(format!(
                "is {}x{}, the model takes {size}x{size} (pass --resize to resize it)",
                img.width(),
                img.height()
            )));
        }
        img.resize_exact(size as u32, size as u32, image::imageops::FilterType::CatmullRom)
    } else {
        img
    };
    let to_model = |b: u8| b as f32 / 127.5 - 1.0;
    match c {
        1 => Ok(img.to_luma8().into_raw().into_iter().map(to_model).collect()),
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

    fn npy(header: &str, data: &[u8]) -> Vec<u8> {
        let mut b = b"\x93NUMPY\x01\x00".to_vec();
        b.extend((header.len() as u16).to_le_bytes());
        b.extend(header.as_bytes());
        b.extend(data);
        b
    }

    #[test]
    fn npy_headers_as_numpy_writes_them_and_refusals() {
        let four: Vec<u8> = [1.5f32, -2.0, 0.0, 8.0].iter().flat_map(|v| v.to_le_bytes()).collect();
        for header in [
            "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), }          \n",
            "{\"descr\":\"<f4\",\"fortran_order\":False,\"shape\":(4,)}\n",
            "{'shape': (1,2,2), 'fortran_order': False, 'descr': '<f4'}",
        ] {
            let a = parse_npy(&npy(header, &four), "t").unwrap();
            assert_eq!(a.data, [1.5, -2.0, 0.0, 8.0], "{header}");
            assert_eq!(a.shape.iter().product::<usize>(), 4, "{header}");
        }
        let scalar = parse_npy(
            &npy("{'descr': '<f4', 'fortran_order': False, 'shape': ()}", &four[..4]),
            "t",
        );
        assert_eq!(scalar.unwrap().shape, Vec::<usize>::new());
        for (header, data, expected) in [
            ("{'descr': '<f4', 'fortran_order': True, 'shape': (4,)}", &four[..], "Fortran"),
            ("{'descr': '>f4', 'fortran_order': False, 'shape': (4,)}", &four[..], "little-endian"),
            (
                "{'descr': '<f4', 'fortran_order': False, 'shape': (5,)}",
                &four[..],
                "does not match",
            ),
            (
                "{'descr': '<f4', 'fortran_order': False, 'shape': (3,)}",
                &four[..],
                "does not match",
            ),
            ("{'descr': '<f4', 'fortran_order': False}", &four[..], "no `shape`"),
            (
                "{'descr': '<f4', 'fortran_order': False, 'shape': (4,), 'x': 1}",
                &four[..],
                "unknown key",
            ),
            ("{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{", &four[..], "expected a string"),
            (
                "{'descr': '<f4', 'fortran_order': False, 'shape': (18446744073709551616,)}",
                &four[..],
                "dimension",
            ),
        ] {
            let e = parse_npy(&npy(header, data), "t").unwrap_err().to_string();
            assert!(e.contains(expected), "{header}: {e}");
        }
    }

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
        let leftovers: Vec<_> = std::fs::read_dir(&dir).unwrap().filter_map(|e| e.ok()).collect();
        assert_eq!(leftovers.len(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

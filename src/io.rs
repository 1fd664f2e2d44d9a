//! File I/O with errors that name the path, and outputs written all or none.
//!
//! Inputs are opened without blocking and refused unless they are regular files, so a pipe or a device given
//! as a file is an error, not a hang or an endless read.
//!
//! Outputs go through an [`OutputSet`]. A command first reserves every path it will write
//! ([`OutputSet::reserve`], [`OutputSet::create_dir`]), before any long work: a path is resolved to its
//! folder's canonical path plus its name, so two spellings of one file are one output and refused as two; what
//! cannot be replaced (a folder, a device, a pipe) is refused; the folder is checked to be writable. The bytes
//! of each output are written to a staging file created exclusively (`O_EXCL`: never through a link someone
//! planted) under an unpredictable name in the output's folder. [`OutputSet::commit`] renames every staged file
//! over its path, so a link at an output path is replaced, never written through; if a rename fails, the renames
//! already made are undone. A set dropped uncommitted removes what it staged and the folders it created, and
//! [`abandon_outputs`] does the same for every live set (the CLI calls it on SIGINT and SIGTERM).

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use tempfile::TempPath;

use crate::error::{Error, Result};

fn io_error(path: &Path, message: impl std::fmt::Display) -> Error {
    Error::Io { path: path.display().to_string(), message: message.to_string() }
}

/// Opens `path` for reading, refusing anything but a regular file. The open does not block (a FIFO would wait
/// for a writer), and the type is checked on the opened file, so nothing can be swapped in between.
fn open_regular(path: &Path) -> Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NONBLOCK);
    }
    let file = options.open(path).map_err(|e| io_error(path, e))?;
    let meta = file.metadata().map_err(|e| io_error(path, e))?;
    if !meta.is_file() {
        return Err(io_error(path, "is not a regular file (a folder, a device or a pipe)"));
    }
    Ok(file)
}

/// Reads a whole regular file.
pub fn read(path: &Path) -> Result<Vec<u8>> {
    let mut file = open_regular(path)?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).map_err(|e| io_error(path, e))?;
    Ok(bytes)
}

/// Reads a whole regular file as UTF-8 text.
pub fn read_text(path: &Path) -> Result<String> {
    String::from_utf8(read(path)?).map_err(|_| io_error(path, "is not UTF-8 text"))
}

/// Writes one output all or nothing: [`OutputSet`] with a single path.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut set = OutputSet::new();
    set.write(path, bytes)?;
    set.commit()
}

/// The name prefix of staging files; the rest of the name is random.
const STAGING_PREFIX: &str = ".ddim-";

fn staging_file(dir: &Path, suffix: &str) -> std::io::Result<tempfile::NamedTempFile> {
    tempfile::Builder::new().prefix(STAGING_PREFIX).suffix(suffix).rand_bytes(12).tempfile_in(dir)
}

/// What every live [`OutputSet`] has staged, so that [`abandon_outputs`] can remove it from another thread.
static LIVE: Mutex<BTreeMap<u64, Staging>> = Mutex::new(BTreeMap::new());
static NEXT_SET: AtomicU64 = AtomicU64::new(0);

fn live() -> MutexGuard<'static, BTreeMap<u64, Staging>> {
    // A panic while holding the lock leaves the map consistent (every change is one insert or remove).
    LIVE.lock().unwrap_or_else(PoisonError::into_inner)
}

#[derive(Debug, Default)]
struct Staging {
    /// Resolved paths reserved, with the spelling first given for each (for messages).
    reserved: BTreeMap<PathBuf, PathBuf>,
    /// Staging files by resolved path; each removes itself when dropped.
    staged: BTreeMap<PathBuf, TempPath>,
    /// Folders already checked to be writable.
    writable: BTreeSet<PathBuf>,
    /// Folders this set created, outermost first.
    created: Vec<PathBuf>,
}

impl Staging {
    /// [`OutputSet::reserve`] of `path`, resolved.
    fn reserve(&mut self, path: &Path, resolved: PathBuf) -> Result<()> {
        if let Some(first) = self.reserved.get(&resolved) {
            return Err(io_error(
                path,
                format!(
                    "is the same file as `{}`, given for another output of this command",
                    first.display()
                ),
            ));
        }
        let folder = resolved.parent().expect("a resolved path has a folder").to_path_buf();
        if !self.writable.contains(&folder) {
            staging_file(&folder, ".probe")
                .map_err(|e| io_error(path, format!("cannot be written: {e}")))?;
            self.writable.insert(folder);
        }
        self.reserved.insert(resolved, path.to_path_buf());
        Ok(())
    }

    /// Removes every staged file, then the folders this set created.
    fn discard(self) {
        drop(self.staged);
        for dir in self.created.iter().rev() {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// Removes what every live [`OutputSet`] has staged, and the folders they created; a set committing meanwhile
/// finishes first (its outputs are then all in place), and a call on another thread meanwhile returns only when
/// the removal is done. Returns how many sets held staged files. For a signal handler, and for any thread that
/// would exit the process while one may be running: the process should exit after it.
pub fn abandon_outputs() -> usize {
    // The lock is held until everything is removed: another thread that exits the process must first take it.
    let mut live = live();
    let sets = std::mem::take(&mut *live);
    let staged = sets.values().filter(|s| !s.staged.is_empty()).count();
    for staging in sets.into_values() {
        staging.discard();
    }
    staged
}

/// `path` as the output it names: its folder's canonical path joined with its file name. Refuses a path that
/// does not end in a file name (`x.npy/`, `..`), whose folder does not exist, or that exists as something a
/// rename must not replace (a folder, a device, a pipe); a link there is fine, as it is replaced.
fn resolve(path: &Path) -> Result<PathBuf> {
    let bytes = path.as_os_str().as_encoded_bytes();
    if bytes.is_empty() {
        return Err(io_error(path, "an empty path"));
    }
    if bytes.last().is_some_and(|&b| std::path::is_separator(b as char)) {
        return Err(io_error(
            path,
            "ends with a path separator; an output is a file, not a folder",
        ));
    }
    let name = match path.components().next_back() {
        Some(Component::Normal(name)) => name,
        _ => return Err(io_error(path, "does not end in a file name")),
    };
    let folder = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let folder = std::fs::canonicalize(folder)
        .map_err(|e| io_error(path, format!("its folder cannot be opened: {e}")))?;
    if !folder.is_dir() {
        return Err(io_error(path, "its folder is not a folder"));
    }
    let resolved = folder.join(name);
    match std::fs::symlink_metadata(&resolved) {
        Ok(meta) if meta.is_file() || meta.file_type().is_symlink() => Ok(resolved),
        Ok(_) => Err(io_error(
            path,
            "exists and is not a regular file; outputs are renamed over their path, and a folder, device or \
             pipe is never replaced",
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(resolved),
        Err(e) => Err(io_error(path, e)),
    }
}

/// Output files written all or none (the module's documentation has the protocol).
#[derive(Debug)]
pub struct OutputSet {
    id: u64,
}

impl Default for OutputSet {
    fn default() -> Self {
        Self::new()
    }
}

impl OutputSet {
    /// An empty set.
    pub fn new() -> Self {
        let id = NEXT_SET.fetch_add(1, Ordering::Relaxed);
        live().insert(id, Staging::default());
        OutputSet { id }
    }

    /// Runs `f` on this set's staging state; an error if [`abandon_outputs`] took it.
    fn with<T>(&self, f: impl FnOnce(&mut Staging) -> Result<T>) -> Result<T> {
        let mut live = live();
        let staging = live.get_mut(&self.id).ok_or_else(|| Error::Io {
            path: "outputs".into(),
            message: "interrupted: the staged outputs were removed".into(),
        })?;
        f(staging)
    }

    /// Reserves `path` for an output of this command, before any work: resolves it, refuses it if another
    /// output of the set is the same file under any spelling, and checks that its folder is writable.
    pub fn reserve(&mut self, path: &Path) -> Result<()> {
        let resolved = resolve(path)?;
        self.with(|s| s.reserve(path, resolved))
    }

    /// [`OutputSet::reserve`] for each of `paths`.
    pub fn reserve_all<'p>(&mut self, paths: impl IntoIterator<Item = &'p Path>) -> Result<()> {
        paths.into_iter().try_for_each(|p| self.reserve(p))
    }

    /// Creates `dir` (and missing parents) for outputs to go into, before any work, and checks it is a
    /// writable folder; what it created is removed again if the set is not committed.
    pub fn create_dir(&mut self, dir: &Path) -> Result<()> {
        self.with(|s| {
            let mut missing = Vec::new();
            let mut d = Some(dir);
            while let Some(p) = d.filter(|p| !p.as_os_str().is_empty()) {
                match std::fs::symlink_metadata(p) {
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => missing.push(p),
                    _ => break,
                }
                d = p.parent();
            }
            for p in missing.into_iter().rev() {
                std::fs::create_dir(p)
                    .map_err(|e| io_error(p, format!("cannot be created: {e}")))?;
                s.created.push(p.to_path_buf());
            }
            let folder = std::fs::canonicalize(dir).map_err(|e| io_error(dir, e))?;
            if !folder.is_dir() {
                return Err(io_error(dir, "is not a folder"));
            }
            staging_file(&folder, ".probe")
                .map_err(|e| io_error(dir, format!("cannot be written: {e}")))?;
            s.writable.insert(folder);
            Ok(())
        })
    }

    /// Writes `bytes` as the output `path` (reserving it if it is not yet): to a staging file beside it,
    /// created exclusively and synced to disk; `path` itself is untouched until [`OutputSet::commit`].
    pub fn write(&mut self, path: &Path, bytes: &[u8]) -> Result<()> {
        let resolved = resolve(path)?;
        self.with(|s| {
            if !s.reserved.contains_key(&resolved) {
                s.reserve(path, resolved.clone())?;
            }
            if s.staged.contains_key(&resolved) {
                return Err(io_error(path, "is written twice by one command"));
            }
            let folder = resolved.parent().expect("a resolved path has a folder");
            let mut file = staging_file(folder, ".partial").map_err(|e| io_error(path, e))?;
            file.write_all(bytes)
                .and_then(|()| file.as_file().sync_all())
                .map_err(|e| io_error(path, e))?;
            s.staged.insert(resolved, file.into_temp_path());
            Ok(())
        })
    }

    /// Renames every staged file over its path. If one rename fails, the ones already made are undone (the
    /// files they replaced restored), so that the command leaves no output, or all of them.
    pub fn commit(self) -> Result<()> {
        // The lock is held until every rename is done, so that a signal's cleanup waits for the commit.
        let mut live = live();
        let Some(staging) = live.remove(&self.id) else {
            return Err(Error::Io {
                path: "outputs".into(),
                message: "interrupted: the staged outputs were removed".into(),
            });
        };
        let Staging { staged, created, .. } = staging;
        let mut done: Vec<(PathBuf, Option<TempPath>)> = Vec::new();
        let mut pending = staged.into_iter();
        let failure =
            pending.by_ref().find_map(|(resolved, file)| match replace(&resolved, file) {
                Ok(backup) => {
                    done.push((resolved, backup));
                    None
                }
                Err(e) => Some(e),
            });
        let Some(error) = failure else {
            // The replaced files, kept aside until now, go.
            drop(done);
            return Ok(());
        };
        for (resolved, backup) in done.into_iter().rev() {
            let _ = std::fs::remove_file(&resolved);
            if let Some(old) = backup {
                let _ = old.persist(&resolved);
            }
        }
        Staging { staged: pending.collect(), created, ..Staging::default() }.discard();
        Err(error)
    }
}

/// Renames the staging `file` over `resolved`, first moving a file already there aside (returned, so that the
/// caller can restore it or let it go).
fn replace(resolved: &Path, file: TempPath) -> Result<Option<TempPath>> {
    let folder = resolved.parent().expect("a resolved path has a folder");
    let backup = match std::fs::symlink_metadata(resolved) {
        Ok(_) => {
            let aside =
                staging_file(folder, ".old").map_err(|e| io_error(resolved, e))?.into_temp_path();
            std::fs::rename(resolved, &aside).map_err(|e| io_error(resolved, e))?;
            Some(aside)
        }
        Err(_) => None,
    };
    match file.persist(resolved) {
        Ok(()) => Ok(backup),
        Err(e) => {
            if let Some(old) = backup {
                let _ = old.persist(resolved);
            }
            Err(io_error(resolved, e.error))
        }
    }
}

impl Drop for OutputSet {
    fn drop(&mut self) {
        // Under the lock, so that a signal's cleanup on another thread waits for this one.
        let mut live = live();
        if let Some(staging) = live.remove(&self.id) {
            staging.discard();
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
/// The reading is ours (as is the writing): fuzzing found npyz's reader allocating the
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
    // Every array this engine reads is an input to the maths (latents, noise, images, betas, timesteps): one
    // NaN or infinity there turns every result into NaN, so it is refused here, with where it is.
    if let Some((i, v)) = data.iter().enumerate().find(|(_, v)| !v.is_finite()) {
        return Err(Error::Io {
            path: what.to_string(),
            message: format!(
                "value {i} (flat index) is {v} as float32: arrays must hold finite values (float64 values beyond \
             float32's range, about 3.4e38, become infinite)"
            ),
        });
    }
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
    let count = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
    if count != Some(data.len()) {
        return Err(Error::Io {
            path: path.display().to_string(),
            message: format!("{} values do not make an array of shape {shape:?}", data.len()),
        });
    }
    // NumPy's format 1.0: magic, version, a little-endian u16 header length, then the header dict padded with
    // spaces and ended by a newline so that the data starts at a multiple of 64 bytes, as numpy.save writes it.
    let dims: Vec<String> = shape.iter().map(usize::to_string).collect();
    let tuple = match dims.len() {
        1 => format!("({},)", dims[0]),
        _ => format!("({})", dims.join(", ")),
    };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {tuple}, }}");
    let unpadded = 10 + header.len() + 1;
    header.push_str(&" ".repeat(unpadded.next_multiple_of(64) - unpadded));
    header.push('\n');
    let len = u16::try_from(header.len()).map_err(|_| Error::Io {
        path: path.display().to_string(),
        message: format!("shape {shape:?}: a header past 64 KiB"),
    })?;
    let mut bytes = Vec::with_capacity(10 + header.len() + 4 * data.len());
    bytes.extend_from_slice(b"\x93NUMPY\x01\x00");
    bytes.extend_from_slice(&len.to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend(data.iter().flat_map(|v| v.to_le_bytes()));
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

/// Columns of a grid of `n` images with no empty cell, as square as that allows: the smallest divisor of `n`
/// that is at least its square root (64 -> 8 x 8, 8 -> 4 x 2, 12 -> 4 x 3; a prime count makes one row).
pub fn grid_columns(n: usize) -> usize {
    (1..=n.max(1)).find(|&c| n.max(1).is_multiple_of(c) && c * c >= n).unwrap_or(1)
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
    fn npy_as_numpy_writes_it_and_back() {
        let data: Vec<f32> = (0..6).map(|i| i as f32 * 0.5 - 1.0).collect();
        for shape in [vec![2, 3], vec![6], vec![1, 2, 3, 1]] {
            let bytes = npy_bytes(Path::new("x.npy"), &shape, &data).unwrap();
            let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
            // numpy.save: the data starts at a multiple of 64; the header ends with a newline.
            assert_eq!((10 + header_len) % 64, 0);
            assert_eq!(bytes[9 + header_len], b'\n');
            let back = parse_npy(&bytes, "x.npy").unwrap();
            assert_eq!((back.shape, back.data), (shape, data.clone()));
        }
        let header =
            String::from_utf8_lossy(&npy_bytes(Path::new("x"), &[6], &data).unwrap()[10..74])
                .into_owned();
        assert!(
            header.starts_with("{'descr': '<f4', 'fortran_order': False, 'shape': (6,), }"),
            "{header}"
        );
        assert!(npy_bytes(Path::new("x"), &[4], &data).is_err(), "6 values are not shape [4]");
    }

    #[test]
    fn grids_have_no_empty_cells() {
        for n in 1..200 {
            let cols = grid_columns(n);
            assert_eq!(n % cols, 0, "{n} images in {cols} columns");
            // As square as a full grid allows: no divisor between sqrt(n) and cols.
            assert!(cols * cols >= n && (1..cols).all(|c| n % c != 0 || c * c < n), "{n}: {cols}");
        }
        assert_eq!(
            [grid_columns(64), grid_columns(8), grid_columns(12), grid_columns(7)],
            [8, 4, 4, 7]
        );
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

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_failed_commit_restores_what_it_replaced() {
        let dir = std::env::temp_dir().join(format!("ddim-io-commit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (a, b, c) = (dir.join("a"), dir.join("b"), dir.join("c"));
        std::fs::write(&a, "old a").unwrap();
        let mut set = OutputSet::new();
        set.reserve_all([a.as_path(), b.as_path(), c.as_path()]).unwrap();
        for p in [&a, &b, &c] {
            set.write(p, b"new").unwrap();
        }
        // Something outside the command puts a folder where `b` goes: its rename fails mid-commit (outputs
        // are renamed in path order, so `a` is already in place), and `a` must get its old bytes back.
        std::fs::create_dir(&b).unwrap();
        std::fs::write(b.join("inside"), "x").unwrap();
        assert!(set.commit().is_err());
        assert_eq!(std::fs::read_to_string(&a).unwrap(), "old a");
        assert!(!c.exists());
        assert_eq!(names(&dir), ["a", "b"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn links_are_replaced_and_spellings_resolved() {
        let dir = std::env::temp_dir().join(format!("ddim-io-links-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        let victim = dir.join("victim");
        std::fs::write(&victim, "precious").unwrap();
        let link = dir.join("out");
        #[cfg(unix)]
        std::os::unix::fs::symlink(&victim, &link).unwrap();
        write_atomic(&link, b"output").unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
        assert!(std::fs::symlink_metadata(&link).unwrap().is_file());
        // One file under two spellings is one output.
        let mut set = OutputSet::new();
        set.reserve(&dir.join("x")).unwrap();
        let e = set.reserve(&dir.join("sub/../x")).unwrap_err().to_string();
        assert!(e.contains("is the same file as"), "{e}");
        for bad in ["x/", "..", ""] {
            assert!(set.reserve(Path::new(bad)).is_err(), "{bad:?}");
        }
        drop(set);
        assert_eq!(names(&dir), ["out", "sub", "victim"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_set_dropped_uncommitted_removes_what_it_staged_and_made() {
        let dir = std::env::temp_dir().join(format!("ddim-io-drop-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let made = dir.join("new/deeper");
        let mut set = OutputSet::new();
        set.create_dir(&made).unwrap();
        set.write(&made.join("f"), b"x").unwrap();
        set.write(&dir.join("g"), b"y").unwrap();
        assert_eq!(names(&made).len(), 1, "one staging file");
        drop(set);
        assert!(names(&dir).is_empty(), "{:?}", names(&dir));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn non_finite_arrays_are_refused() {
        let nan: Vec<u8> = [0.0f32, f32::NAN].iter().flat_map(|v| v.to_le_bytes()).collect();
        let e =
            parse_npy(&npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2,)}", &nan), "t");
        assert!(e.unwrap_err().to_string().contains("value 1 (flat index) is NaN"));
        let huge: Vec<u8> = 1e300f64.to_le_bytes().to_vec();
        let e =
            parse_npy(&npy("{'descr': '<f8', 'fortran_order': False, 'shape': (1,)}", &huge), "t");
        assert!(e.unwrap_err().to_string().contains("is inf"));
    }
}

//! Reading PyTorch checkpoints (`torch.save`'s zip container) without Python and without executing a pickle.
//!
//! The pickle in `*/data.pkl` is interpreted by a small stack machine that knows only the opcodes `torch.save`
//! emits for nested dicts, lists and tuples of tensors and plain values, and only these globals:
//! `collections.OrderedDict`, `torch._utils._rebuild_tensor_v2`, `torch._utils._rebuild_parameter` and the
//! `torch.*Storage` types. Anything else (another global such as `os.system`, an opcode it does not expect, a
//! call to anything but those functions) is refused with an error; nothing is ever executed. Tensor data is read
//! from the container's `*/data/<key>` entries, with every size and stride checked against the entry.

use std::collections::{BTreeMap, HashMap};
use std::io::{Cursor, Read};

use safetensors::Dtype;

use super::weights::{HostTensor, UniqueNames, decode};
use crate::error::{Error, Result};

fn bad(message: impl Into<String>) -> Error {
    Error::Checkpoint(message.into())
}

/// A value on the pickle machine's stack.
#[derive(Clone, Debug)]
enum Value {
    None,
    Int(i64),
    Str(String),
    /// A bool, float or bytes value: parsed (checkpoints carry them beside tensors), never needed.
    Plain,
    Tuple(Vec<Value>),
    List(Vec<Value>),
    Dict(Vec<(Value, Value)>),
    Global(Global),
    Storage(Storage),
    Tensor(TensorRef),
    Mark,
}

/// The only callables and classes a checkpoint may name.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Global {
    OrderedDict,
    RebuildTensorV2,
    RebuildParameter,
    StorageType(Dtype),
}

#[derive(Clone, Debug)]
struct Storage {
    key: String,
    dtype: Dtype,
    numel: u64,
}

#[derive(Clone, Debug)]
struct TensorRef {
    storage: Storage,
    offset: u64,
    shape: Vec<usize>,
    stride: Vec<usize>,
}

fn global(module: &str, name: &str) -> Result<Global> {
    let storage = |d| Ok(Global::StorageType(d));
    match (module, name) {
        ("collections", "OrderedDict") => Ok(Global::OrderedDict),
        ("torch._utils", "_rebuild_tensor_v2") => Ok(Global::RebuildTensorV2),
        ("torch._utils", "_rebuild_parameter") => Ok(Global::RebuildParameter),
        ("torch", "FloatStorage") => storage(Dtype::F32),
        ("torch", "HalfStorage") => storage(Dtype::F16),
        ("torch", "BFloat16Storage") => storage(Dtype::BF16),
        ("torch", "DoubleStorage") => storage(Dtype::F64),
        ("torch", "LongStorage") => storage(Dtype::I64),
        ("torch", "IntStorage") => storage(Dtype::I32),
        ("torch", "BoolStorage") => storage(Dtype::BOOL),
        ("torch", "ByteStorage") => storage(Dtype::U8),
        _ => Err(bad(format!(
            "the pickle references `{module}.{name}`, which is not part of a PyTorch tensor state dict; refusing \
             to load it (pickles are never executed)"
        ))),
    }
}

struct Machine<'a> {
    data: &'a [u8],
    pos: usize,
    stack: Vec<Value>,
    memo: HashMap<u32, Value>,
    /// Values copied by memo reads and writes so far.
    copied: usize,
}

/// Limits that keep a hostile pickle from exhausting memory or the call stack through the machine itself: the
/// stack and memo sizes, the values copied by memo reads and writes (a few bytes of pickle can otherwise double
/// a value with every `GET`), and the nesting depth (the machine's values are dropped and inspected
/// recursively). A state dict pickle needs a depth of about 5 and copies a few values per tensor.
const MAX_STACK: usize = 1 << 20;
const MAX_MEMO: usize = 1 << 22;
const MAX_COPIED: usize = 1 << 20;
const MAX_DEPTH: usize = 64;

impl Value {
    /// Folds `f` over the values this one holds directly (a container's items, a dict's keys and values).
    fn fold_children<A>(&self, init: A, f: impl Fn(A, &Value) -> A) -> A {
        match self {
            Value::Tuple(items) | Value::List(items) => items.iter().fold(init, f),
            Value::Dict(pairs) => pairs.iter().fold(init, |a, (k, v)| f(f(a, k), v)),
            _ => init,
        }
    }
    /// Nesting depth: 0 for a plain value. Recursion is bounded by `MAX_DEPTH`, which every value obeys.
    fn depth(&self) -> usize {
        self.fold_children(0, |d, c| d.max(c.depth() + 1))
    }
    /// The number of values in this one, itself included.
    fn size(&self) -> usize {
        self.fold_children(1, |n, c| n + c.size())
    }
}

/// Refuses to nest `items` one level deeper if that would pass `MAX_DEPTH`.
fn nestable<'v>(items: impl IntoIterator<Item = &'v Value>) -> Result<()> {
    if items.into_iter().any(|v| v.depth() + 1 > MAX_DEPTH) {
        return Err(bad(format!(
            "the pickle nests values more than {MAX_DEPTH} deep, far beyond any state dict"
        )));
    }
    Ok(())
}

impl<'a> Machine<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.data.len()).ok_or_else(|| {
            bad("the pickle ends in the middle of an instruction (truncated file?)")
        })?;
        let s = &self.data[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().unwrap()))
    }
    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().unwrap()))
    }
    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().unwrap()))
    }
    fn line(&mut self) -> Result<String> {
        let rest = &self.data[self.pos..];
        let n = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or_else(|| bad("unterminated GLOBAL in the pickle"))?;
        let s = std::str::from_utf8(&rest[..n]).map_err(|_| bad("a GLOBAL name is not UTF-8"))?;
        self.pos += n + 1;
        Ok(s.to_string())
    }
    fn text(&mut self, n: usize) -> Result<Value> {
        let b = self.take(n)?;
        let s = std::str::from_utf8(b).map_err(|_| bad("a pickled string is not UTF-8"))?;
        Ok(Value::Str(s.to_string()))
    }
    fn push(&mut self, v: Value) -> Result<()> {
        if self.stack.len() >= MAX_STACK {
            return Err(bad("the pickle's stack grows beyond any state dict's"));
        }
        self.stack.push(v);
        Ok(())
    }
    fn pop(&mut self) -> Result<Value> {
        self.stack.pop().ok_or_else(|| bad("the pickle pops an empty stack"))
    }
    fn top(&mut self) -> Result<&mut Value> {
        self.stack.last_mut().ok_or_else(|| bad("the pickle reads an empty stack"))
    }
    /// Pops everything above the topmost MARK, and the MARK.
    fn pop_mark(&mut self) -> Result<Vec<Value>> {
        let m = self
            .stack
            .iter()
            .rposition(|v| matches!(v, Value::Mark))
            .ok_or_else(|| bad("the pickle has no MARK where one is needed"))?;
        let items = self.stack.split_off(m + 1);
        self.stack.pop();
        Ok(items)
    }
    /// Counts `n` copied values against `MAX_COPIED`.
    fn copy_budget(&mut self, n: usize) -> Result<()> {
        self.copied += n;
        if self.copied > MAX_COPIED {
            return Err(bad(format!(
                "the pickle copies more than {MAX_COPIED} values through its memo, far beyond any state dict"
            )));
        }
        Ok(())
    }
    fn memoize(&mut self, key: u32) -> Result<()> {
        if self.memo.len() >= MAX_MEMO {
            return Err(bad("the pickle's memo grows beyond any state dict's"));
        }
        let n = self.top()?.size();
        self.copy_budget(n)?;
        let v = self.top()?.clone();
        self.memo.insert(key, v);
        Ok(())
    }
    fn get(&mut self, key: u32) -> Result<()> {
        let n = self.memo.get(&key).map(Value::size).ok_or_else(|| {
            bad(format!("the pickle reads memo entry {key}, which was never stored"))
        })?;
        self.copy_budget(n)?;
        let v = self.memo[&key].clone();
        self.push(v)
    }

    fn run(mut self) -> Result<Value> {
        loop {
            let op = self.u8()?;
            match op {
                0x80 => {
                    let proto = self.u8()?;
                    if proto > 5 {
                        return Err(bad(format!(
                            "pickle protocol {proto} is newer than any torch.save writes"
                        )));
                    }
                }
                0x95 => {
                    self.u64()?; // FRAME: a length hint only
                }
                b'.' => return self.pop(),
                b'}' => self.push(Value::Dict(Vec::new()))?,
                b']' => self.push(Value::List(Vec::new()))?,
                b')' => self.push(Value::Tuple(Vec::new()))?,
                b'(' => self.push(Value::Mark)?,
                b'N' => self.push(Value::None)?,
                0x88 | 0x89 => self.push(Value::Plain)?,
                b'K' => {
                    let v = self.u8()? as i64;
                    self.push(Value::Int(v))?
                }
                b'M' => {
                    let v = self.u16()? as i64;
                    self.push(Value::Int(v))?
                }
                b'J' => {
                    let v = self.u32()? as i32 as i64;
                    self.push(Value::Int(v))?
                }
                0x8a => {
                    let n = self.u8()? as usize;
                    let b = self.take(n)?;
                    if n > 8 {
                        return Err(bad("an integer in the pickle does not fit in 64 bits"));
                    }
                    let mut buf =
                        if b.last().is_some_and(|&x| x & 0x80 != 0) { [0xff; 8] } else { [0; 8] };
                    buf[..n].copy_from_slice(b);
                    self.push(Value::Int(i64::from_le_bytes(buf)))?
                }
                b'G' => {
                    self.take(8)?;
                    self.push(Value::Plain)?
                }
                b'X' => {
                    let n = self.u32()? as usize;
                    let v = self.text(n)?;
                    self.push(v)?
                }
                0x8c => {
                    let n = self.u8()? as usize;
                    let v = self.text(n)?;
                    self.push(v)?
                }
                0x8d => {
                    let n = usize::try_from(self.u64()?).map_err(|_| bad("string too long"))?;
                    let v = self.text(n)?;
                    self.push(v)?
                }
                b'T' => {
                    let n = self.u32()? as usize;
                    let v = self.text(n)?;
                    self.push(v)?
                }
                b'U' => {
                    let n = self.u8()? as usize;
                    let v = self.text(n)?;
                    self.push(v)?
                }
                b'B' => {
                    let n = self.u32()? as usize;
                    self.take(n)?;
                    self.push(Value::Plain)?
                }
                b'C' => {
                    let n = self.u8()? as usize;
                    self.take(n)?;
                    self.push(Value::Plain)?
                }
                b'q' => {
                    let k = self.u8()? as u32;
                    self.memoize(k)?
                }
                b'r' => {
                    let k = self.u32()?;
                    self.memoize(k)?
                }
                0x94 => {
                    let k = self.memo.len() as u32;
                    self.memoize(k)?
                }
                b'h' => {
                    let k = self.u8()? as u32;
                    self.get(k)?
                }
                b'j' => {
                    let k = self.u32()?;
                    self.get(k)?
                }
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    self.push(Value::Global(global(&module, &name)?))?
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    match (module, name) {
                        (Value::Str(m), Value::Str(n)) => {
                            self.push(Value::Global(global(&m, &n)?))?
                        }
                        _ => return Err(bad("STACK_GLOBAL without two strings")),
                    }
                }
                b't' => {
                    let items = self.pop_mark()?;
                    nestable(&items)?;
                    self.push(Value::Tuple(items))?
                }
                0x85..=0x87 => {
                    let n = (op - 0x84) as usize;
                    if self.stack.len() < n {
                        return Err(bad("a TUPLE opcode finds too few values"));
                    }
                    let items = self.stack.split_off(self.stack.len() - n);
                    nestable(&items)?;
                    self.push(Value::Tuple(items))?
                }
                b'a' => {
                    let v = self.pop()?;
                    nestable([&v])?;
                    match self.top()? {
                        Value::List(l) => l.push(v),
                        _ => return Err(bad("APPEND to something that is not a list")),
                    }
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    nestable(&items)?;
                    match self.top()? {
                        Value::List(l) => l.extend(items),
                        _ => return Err(bad("APPENDS to something that is not a list")),
                    }
                }
                b's' => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    nestable([&k, &v])?;
                    match self.top()? {
                        Value::Dict(d) => d.push((k, v)),
                        _ => return Err(bad("SETITEM on something that is not a dict")),
                    }
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    nestable(&items)?;
                    if items.len() % 2 != 0 {
                        return Err(bad("SETITEMS with an odd number of values"));
                    }
                    let mut it = items.into_iter();
                    let mut pairs = Vec::new();
                    while let (Some(k), Some(v)) = (it.next(), it.next()) {
                        pairs.push((k, v));
                    }
                    match self.top()? {
                        Value::Dict(d) => d.extend(pairs),
                        _ => return Err(bad("SETITEMS on something that is not a dict")),
                    }
                }
                b'b' => {
                    // BUILD: state_dict() sets `_metadata` on its OrderedDict; the attributes are not needed.
                    let _state = self.pop()?;
                    if !matches!(self.top()?, Value::Dict(_)) {
                        return Err(bad("BUILD on something other than an OrderedDict"));
                    }
                }
                b'Q' => {
                    let pid = self.pop()?;
                    let storage = persistent_storage(pid)?;
                    self.push(Value::Storage(storage))?
                }
                b'R' => {
                    let args = self.pop()?;
                    let callable = self.pop()?;
                    let v = reduce(callable, args)?;
                    self.push(v)?
                }
                other => {
                    return Err(bad(format!(
                        "the pickle uses opcode 0x{other:02x} at byte {}, which torch.save does not emit for a \
                         state dict; refusing to load it",
                        self.pos - 1
                    )));
                }
            }
        }
    }
}

fn int(v: &Value, what: &str) -> Result<i64> {
    match v {
        Value::Int(i) => Ok(*i),
        _ => Err(bad(format!("{what} is not an integer"))),
    }
}

fn dims(v: &Value, what: &str) -> Result<Vec<usize>> {
    match v {
        Value::Tuple(items) | Value::List(items) => items
            .iter()
            .map(|x| usize::try_from(int(x, what)?).map_err(|_| bad(format!("{what} is negative"))))
            .collect(),
        _ => Err(bad(format!("{what} is not a tuple"))),
    }
}

/// `('storage', StorageType, key, location, numel)`.
fn persistent_storage(pid: Value) -> Result<Storage> {
    let Value::Tuple(items) = pid else {
        return Err(bad("a persistent id is not a tuple"));
    };
    match items.as_slice() {
        [Value::Str(tag), Value::Global(Global::StorageType(dtype)), Value::Str(key), _, numel]
            if tag == "storage" =>
        {
            let numel = u64::try_from(int(numel, "a storage size")?)
                .map_err(|_| bad("negative storage size"))?;
            if key.is_empty() || key.contains(['/', '\\']) || key.contains("..") {
                return Err(bad(format!("storage key `{key}` is not a plain name")));
            }
            Ok(Storage { key: key.clone(), dtype: *dtype, numel })
        }
        _ => Err(bad("a persistent id is not a tensor storage reference")),
    }
}

fn reduce(callable: Value, args: Value) -> Result<Value> {
    let Value::Tuple(args) = args else {
        return Err(bad("REDUCE arguments are not a tuple"));
    };
    match callable {
        Value::Global(Global::OrderedDict) if args.is_empty() => Ok(Value::Dict(Vec::new())),
        Value::Global(Global::RebuildTensorV2) => match args.as_slice() {
            [Value::Storage(storage), offset, shape, stride, ..] => Ok(Value::Tensor(TensorRef {
                storage: storage.clone(),
                offset: u64::try_from(int(offset, "a storage offset")?)
                    .map_err(|_| bad("negative offset"))?,
                shape: dims(shape, "a tensor size")?,
                stride: dims(stride, "a tensor stride")?,
            })),
            _ => Err(bad("_rebuild_tensor_v2 called with unexpected arguments")),
        },
        Value::Global(Global::RebuildParameter) => match args.into_iter().next() {
            Some(t @ Value::Tensor(_)) => Ok(t),
            _ => Err(bad("_rebuild_parameter called without a tensor")),
        },
        Value::Global(g) => {
            Err(bad(format!("the pickle calls {g:?} in a way torch.save never does")))
        }
        _ => Err(bad("the pickle calls something that is not an allowed global")),
    }
}

fn is_state_dict(v: &Value) -> bool {
    matches!(v, Value::Dict(items) if !items.is_empty()
        && items.iter().all(|(k, v)| matches!((k, v), (Value::Str(_), Value::Tensor(_)))))
}

/// Which weights of a training checkpoint to read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CheckpointEntry {
    /// The model's own weights: the state dict itself, or the first of a list.
    Model,
    /// The exponential moving average of the weights where the checkpoint has one (the fifth entry of the
    /// official DDIM code's `[model, optimizer, epoch, step, ema]`, which its sampler loads), else the model's.
    EmaIfAny,
    /// The moving average, as found (what [`read_checkpoint_entry`] reports it read).
    Ema,
}

/// Runs the pickle machine over a checkpoint's `data.pkl` and finds its state dict (see [`read_checkpoint`]).
fn state_dict(pickle: &[u8]) -> Result<Vec<(String, TensorRef)>> {
    state_dict_entry(pickle, CheckpointEntry::Model).map(|(items, _)| items)
}

/// [`state_dict`], of `entry`; also says which entry it read.
fn state_dict_entry(
    pickle: &[u8],
    entry: CheckpointEntry,
) -> Result<(Vec<(String, TensorRef)>, CheckpointEntry)> {
    let root = Machine { data: pickle, pos: 0, stack: Vec::new(), memo: HashMap::new(), copied: 0 }
        .run()?;
    let mut read = CheckpointEntry::Model;
    let dict = match root {
        d if is_state_dict(&d) => d,
        Value::List(mut items) | Value::Tuple(mut items)
            if entry != CheckpointEntry::Model && items.len() >= 5 && is_state_dict(&items[4]) =>
        {
            read = CheckpointEntry::Ema;
            items.swap_remove(4)
        }
        Value::List(items) | Value::Tuple(items) => items
            .into_iter()
            .find(is_state_dict)
            .ok_or_else(|| bad("the checkpoint's list holds no state dict of tensors"))?,
        Value::Dict(items) => items
            .into_iter()
            .find(|(k, v)| matches!(k, Value::Str(s) if s == "state_dict") && is_state_dict(v))
            .map(|(_, v)| v)
            .ok_or_else(|| bad("the checkpoint is a dict but neither a state dict nor one holding `state_dict`"))?,
        _ => return Err(bad("the checkpoint holds no state dict of tensors")),
    };
    let Value::Dict(items) = dict else { unreachable!("checked by is_state_dict") };
    let items = items
        .into_iter()
        .map(|(k, v)| match (k, v) {
            (Value::Str(name), Value::Tensor(t)) => (name, t),
            _ => unreachable!("checked by is_state_dict"),
        })
        .collect();
    Ok((items, read))
}

/// The names and shapes of the tensors in the state dict of a checkpoint's pickle (`data.pkl` alone, without
/// its zip container): the first half of [`read_checkpoint`], with the same refusals, and no tensor data read.
pub fn pickled_shapes(pickle: &[u8]) -> Result<Vec<(String, Vec<usize>)>> {
    Ok(state_dict(pickle)?.into_iter().map(|(name, t)| (name, t.shape)).collect())
}

/// How many times over the tensors of a checkpoint may view its stored values, together.
const MAX_VIEWS_PER_VALUE: usize = 2;

/// Reads the tensors of a PyTorch checkpoint: a state dict at the top level (`torch.save(model.state_dict())`),
/// or the first state dict of a top-level list or tuple (the DDIM repository's `[model, optimizer, ...]`), or
/// the state dict under a `state_dict` key. Floating-point tensors are widened to f32; others are skipped.
pub fn read_checkpoint(bytes: &[u8]) -> Result<BTreeMap<String, HostTensor>> {
    read_checkpoint_entry(bytes, CheckpointEntry::Model).map(|(tensors, _)| tensors)
}

/// [`read_checkpoint`], of the weights `entry` asks for; also says which entry it read ([`CheckpointEntry::Model`]
/// or [`CheckpointEntry::Ema`]).
pub fn read_checkpoint_entry(
    bytes: &[u8],
    entry: CheckpointEntry,
) -> Result<(BTreeMap<String, HostTensor>, CheckpointEntry)> {
    if !bytes.starts_with(b"PK\x03\x04") {
        if bytes.starts_with(&[0x80, 0x02, 0x8a, 0x0a]) {
            return Err(bad(
                "this is PyTorch's legacy (pre-1.6) format; load and re-save it with torch>=1.6 to get the zip \
                 format",
            ));
        }
        return Err(bad("not a PyTorch checkpoint (no zip container)"));
    }
    let mut zip = zip::ZipArchive::new(Cursor::new(bytes))
        .map_err(|e| bad(format!("the zip container is damaged: {e}")))?;
    let names: Vec<String> =
        zip.file_names().filter_map(|n| n.ok()).map(|n| n.into_owned()).collect();
    let pkl = names
        .iter()
        .find(|n| n.ends_with("/data.pkl") || n.as_str() == "data.pkl")
        .ok_or_else(|| bad("the zip container has no data.pkl"))?
        .clone();
    let prefix = pkl.trim_end_matches("data.pkl").to_string();
    if let Some(order) = names.iter().find(|n| **n == format!("{prefix}byteorder")) {
        let mut s = String::new();
        let mut f = zip.by_name(order).map_err(|e| bad(e.to_string()))?;
        f.by_ref().take(16).read_to_string(&mut s).map_err(|e| bad(e.to_string()))?;
        if s.trim() != "little" {
            return Err(bad(format!("byte order `{}` is not supported", s.trim())));
        }
    }
    let pickle = read_entry(&mut zip, &pkl, bytes.len() as u64)?;
    let (items, read) = state_dict_entry(&pickle, entry)?;

    // Each storage is read and decoded once, however many names view it. The values materialised for the
    // names together may not exceed twice the values stored: enough for tied weights (two names, one storage)
    // and for views that overlap a little, while 3,000 names over one storage, which would copy it per name,
    // are refused, so memory stays proportional to the file.
    let mut storages: HashMap<String, Vec<f32>> = HashMap::new();
    let (mut stored, mut materialised) = (0usize, 0usize);
    let mut out = UniqueNames::default();
    for (key, t) in items {
        if !matches!(t.storage.dtype, Dtype::F32 | Dtype::F16 | Dtype::BF16 | Dtype::F64) {
            continue;
        }
        let entry = format!("{prefix}data/{}", t.storage.key);
        if !storages.contains_key(&t.storage.key) {
            let raw = read_entry(&mut zip, &entry, bytes.len() as u64)?;
            let values = decode(&key, t.storage.dtype, &raw)?;
            stored += values.len();
            storages.insert(t.storage.key.clone(), values);
        }
        let values = &storages[&t.storage.key];
        if (values.len() as u64) < t.storage.numel {
            return Err(Error::Weights {
                tensor: key,
                message: format!(
                    "its storage `{entry}` holds {} values but the pickle claims {}",
                    values.len(),
                    t.storage.numel
                ),
            });
        }
        let numel = t.shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d));
        materialised = match numel.and_then(|n| materialised.checked_add(n)) {
            Some(total) if total <= stored.saturating_mul(MAX_VIEWS_PER_VALUE) => total,
            _ => {
                return Err(Error::Weights {
                    tensor: key,
                    message: format!(
                        "with the tensors before it, views more than {MAX_VIEWS_PER_VALUE} times the \
                         checkpoint's {stored} stored values (overlapping views of storage `{entry}`): a model's \
                         weights hold their own values, or share them in pairs"
                    ),
                });
            }
        };
        let data = gather(&key, values, &t)?;
        // `module.x` (saved from DataParallel) is `x`; both in one file are two values for one weight.
        let name = key.strip_prefix("module.").unwrap_or(&key).to_string();
        out.insert(&key, name, HostTensor { shape: t.shape.clone(), data })?;
    }
    Ok((out.into_tensors(), read))
}

/// Reads one stored (uncompressed) zip entry; its size is bounded by the file's own size.
fn read_entry(
    zip: &mut zip::ZipArchive<Cursor<&[u8]>>,
    name: &str,
    file_len: u64,
) -> Result<Vec<u8>> {
    let mut f = zip.by_name(name).map_err(|e| bad(format!("entry `{name}`: {e}")))?;
    if f.compression() != zip::CompressionMethod::Stored || f.size() > file_len {
        return Err(bad(format!(
            "entry `{name}` is compressed or larger than the file; torch.save stores entries uncompressed"
        )));
    }
    let mut data = Vec::with_capacity(f.size() as usize);
    f.read_to_end(&mut data).map_err(|e| bad(format!("entry `{name}`: {e}")))?;
    Ok(data)
}

/// Copies a strided view of a storage into a contiguous vector, checking every index is inside the storage.
fn gather(name: &str, storage: &[f32], t: &TensorRef) -> Result<Vec<f32>> {
    let err = |m: String| Error::Weights { tensor: name.to_string(), message: m };
    if t.shape.len() != t.stride.len() {
        return Err(err(format!("size {:?} and stride {:?} differ in rank", t.shape, t.stride)));
    }
    let numel = t
        .shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| err("size overflows".into()))?;
    if numel == 0 {
        return Ok(Vec::new());
    }
    // A weight never has more elements than its storage holds; a view that repeats elements (stride 0, or
    // overlapping strides) could otherwise claim any size over a one-value storage and be materialised.
    if numel > storage.len() {
        return Err(err(format!(
            "size {:?} has {numel} elements but its storage only {}: a broadcast or overlapping view, not a weight",
            t.shape,
            storage.len()
        )));
    }
    let extent = t
        .shape
        .iter()
        .zip(&t.stride)
        .try_fold(t.offset, |a, (&d, &s)| a.checked_add((d as u64 - 1).checked_mul(s as u64)?))
        .ok_or_else(|| err("strides overflow".into()))?;
    if extent >= storage.len() as u64 {
        return Err(err(format!(
            "size {:?}, stride {:?} and offset {} reach past its storage of {} values",
            t.shape,
            t.stride,
            t.offset,
            storage.len()
        )));
    }
    let mut out = Vec::with_capacity(numel);
    let mut index = vec![0usize; t.shape.len()];
    for _ in 0..numel {
        let at = t.offset as usize + index.iter().zip(&t.stride).map(|(i, s)| i * s).sum::<usize>();
        out.push(storage[at]);
        for d in (0..index.len()).rev() {
            index[d] += 1;
            if index[d] < t.shape[d] {
                break;
            }
            index[d] = 0;
        }
    }
    Ok(out)
}

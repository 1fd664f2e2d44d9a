//! PyTorch checkpoints written from scratch for the tests (no Python here): the zip container `torch.save`
//! writes, with a protocol-2 pickle of a state dict whose tensors view f32 storages, or of the official DDIM
//! code's training list. Shared by tests/bad_input and tests/conventions, each of which uses part of it.
#![allow(dead_code)]

use std::io::Write;

/// One tensor of a checkpoint: its name, the storage it views (by key), offset, size and stride (elements).
pub struct View<'a> {
    pub name: &'a str,
    pub storage: &'a str,
    pub offset: i32,
    pub size: &'a [i32],
    pub stride: &'a [i32],
}

fn text(out: &mut Vec<u8>, s: &str) {
    out.push(b'X');
    out.extend((s.len() as u32).to_le_bytes());
    out.extend(s.as_bytes());
}

fn int(out: &mut Vec<u8>, v: i32) {
    out.push(b'J');
    out.extend(v.to_le_bytes());
}

fn ints(out: &mut Vec<u8>, vs: &[i32]) {
    out.push(b'(');
    vs.iter().for_each(|&v| int(out, v));
    out.push(b't');
}

/// The bytes of `data.pkl` for a state dict of `views`; `numel` gives each storage's length.
pub fn state_dict_pickle(views: &[View], numel: &dyn Fn(&str) -> i32) -> Vec<u8> {
    let mut p = b"\x80\x02".to_vec();
    dict(&mut p, views, numel);
    p.push(b'.');
    p
}

/// Pushes a state dict of `views` onto the pickle's stack.
fn dict(p: &mut Vec<u8>, views: &[View], numel: &dyn Fn(&str) -> i32) {
    p.push(b'}');
    for v in views {
        text(p, v.name);
        p.extend(b"ctorch._utils\n_rebuild_tensor_v2\n(");
        // The persistent id: ('storage', torch.FloatStorage, key, 'cpu', numel).
        p.push(b'(');
        text(p, "storage");
        p.extend(b"ctorch\nFloatStorage\n");
        text(p, v.storage);
        text(p, "cpu");
        int(p, numel(v.storage));
        p.extend(b"tQ");
        int(p, v.offset);
        ints(p, v.size);
        ints(p, v.stride);
        p.extend(b"\x89}tRs");
    }
}

/// The bytes of `data.pkl` of the official DDIM code's training checkpoint, `[model, optimizer, epoch, step, ema]`
/// (the optimizer's state an empty dict).
fn training_pickle(model: &[View], ema: &[View], numel: &dyn Fn(&str) -> i32) -> Vec<u8> {
    let mut p = b"\x80\x02](".to_vec();
    dict(&mut p, model, numel);
    p.push(b'}');
    int(&mut p, 7);
    int(&mut p, 1000);
    dict(&mut p, ema, numel);
    p.extend(b"e.");
    p
}

/// A checkpoint file: `views` over `storages` (key, values), in torch.save's zip layout (entries stored).
pub fn checkpoint(views: &[View], storages: &[(&str, Vec<f32>)]) -> Vec<u8> {
    container(storages, &|numel| state_dict_pickle(views, numel))
}

/// A training checkpoint file (see [`training_pickle`]) over `storages`.
pub fn training_checkpoint(model: &[View], ema: &[View], storages: &[(&str, Vec<f32>)]) -> Vec<u8> {
    container(storages, &|numel| training_pickle(model, ema, numel))
}

/// Each storage's length, by key.
type Numel<'a> = dyn Fn(&str) -> i32 + 'a;

/// torch.save's zip layout around the pickle `pickle` makes (given each storage's length) and `storages`.
fn container(storages: &[(&str, Vec<f32>)], pickle: &dyn Fn(&Numel) -> Vec<u8>) -> Vec<u8> {
    let numel =
        |key: &str| storages.iter().find(|(k, _)| *k == key).map_or(0, |(_, v)| v.len() as i32);
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let stored =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    zip.start_file("archive/data.pkl", stored).unwrap();
    zip.write_all(&pickle(&numel)).unwrap();
    zip.start_file("archive/byteorder", stored).unwrap();
    zip.write_all(b"little").unwrap();
    for (key, values) in storages {
        zip.start_file(format!("archive/data/{key}"), stored).unwrap();
        zip.write_all(bytemuck::cast_slice(values)).unwrap();
    }
    zip.finish().unwrap().into_inner()
}

/// A contiguous view of a whole storage of `len` values as a vector.
pub fn whole<'a>(name: &'a str, storage: &'a str, size: &'a [i32]) -> View<'a> {
    View { name, storage, offset: 0, size, stride: &[1] }
}

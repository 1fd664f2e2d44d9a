//! PyTorch checkpoints written from scratch for the tests (no Python here): the zip container `torch.save`
//! writes, with a protocol-2 pickle of a state dict whose tensors view f32 storages.

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
    let mut p = b"\x80\x02}".to_vec();
    for v in views {
        text(&mut p, v.name);
        p.extend(b"ctorch._utils\n_rebuild_tensor_v2\n(");
        // The persistent id: ('storage', torch.FloatStorage, key, 'cpu', numel).
        p.push(b'(');
        text(&mut p, "storage");
        p.extend(b"ctorch\nFloatStorage\n");
        text(&mut p, v.storage);
        text(&mut p, "cpu");
        int(&mut p, numel(v.storage));
        p.extend(b"tQ");
        int(&mut p, v.offset);
        ints(&mut p, v.size);
        ints(&mut p, v.stride);
        p.extend(b"\x89}tRs");
    }
    p.push(b'.');
    p
}

/// A checkpoint file: `views` over `storages` (key, values), in torch.save's zip layout (entries stored).
pub fn checkpoint(views: &[View], storages: &[(&str, Vec<f32>)]) -> Vec<u8> {
    let numel =
        |key: &str| storages.iter().find(|(k, _)| *k == key).map_or(0, |(_, v)| v.len() as i32);
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let stored =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    zip.start_file("archive/data.pkl", stored).unwrap();
    zip.write_all(&state_dict_pickle(views, &numel)).unwrap();
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

//! Writes the seeds of the fuzz targets that this crate's own writers make (fuzz/seeds/{weights,npy,image}/):
//! small weights files in f32 and f16 (one- and two-level UNets, with and without a training schedule),
//! `.npy` arrays of every accepted dtype and rank, and PNG images of both channel counts. The YAML and JSON
//! seeds are the test fixtures' configs; checkpoint and pickle seeds come from tools/fuzz/make_seeds.py.
//!
//! Run: `cargo run --example fuzz_seeds`

use std::path::Path;

use ddim_wgpu::diffusion::schedule::{BetaSchedule, TrainingSchedule};
use ddim_wgpu::io::{write_npy, write_png};
use ddim_wgpu::model::weights::{StorageDtype, Training, Weights};
use ddim_wgpu::unet::config::{DownBlock, UNetConfig, UpBlock};

fn config(channels: Vec<usize>) -> UNetConfig {
    let levels = channels.len();
    UNetConfig {
        sample_size: 8,
        in_channels: 1,
        out_channels: 1,
        block_out_channels: channels,
        layers_per_block: 1,
        down_block_types: (0..levels)
            .map(|i| [DownBlock::DownBlock2D, DownBlock::AttnDownBlock2D][i % 2])
            .collect(),
        up_block_types: (0..levels)
            .map(|i| [UpBlock::AttnUpBlock2D, UpBlock::UpBlock2D][i % 2])
            .collect(),
        mid_block_attention: true,
        mid_block_scale_factor: 1.0,
        norm_num_groups: 2,
        attn_norm_num_groups: None,
        norm_eps: 1e-6,
        attention_head_dim: Some(2),
        downsample_padding: 0,
        flip_sin_to_cos: false,
        freq_shift: 1.0,
        time_embed_dim: 8,
    }
}

fn main() -> ddim_wgpu::Result<()> {
    let seeds = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds");
    for dir in ["weights", "npy", "image"] {
        std::fs::create_dir_all(seeds.join(dir)).expect("create the seed folders");
    }
    let one = Weights::random(&config(vec![4]), 1)?;
    one.save(&seeds.join("weights/one_level_f16.safetensors"), StorageDtype::F16)?;
    one.save(&seeds.join("weights/one_level_f32.safetensors"), StorageDtype::F32)?;
    // The same file as format version 1 (no checksum, which version 2 requires): the fuzzer can mutate past
    // the header only where no checksum guards the contents.
    let mut v1 = one.to_bytes(StorageDtype::F16)?;
    let (from, to) = (br#""format_version":"2""#, br#""format_version":"1""#);
    let at = v1
        .windows(from.len())
        .position(|w| w == from)
        .expect("the header names its format version");
    v1[at..at + to.len()].copy_from_slice(to);
    std::fs::write(seeds.join("weights/one_level_f16_version1.safetensors"), v1).expect("write");
    let mut two = Weights::random(&config(vec![4, 6]), 2)?;
    two.training = Some(Training {
        schedule: TrainingSchedule {
            betas: BetaSchedule::Trained { betas: (1..=10).map(|i| i as f64 * 0.01).collect() },
            train_steps: 10,
            zero_snr: true,
        },
        ..Training::default()
    });
    two.save(&seeds.join("weights/two_levels_trained_betas_f16.safetensors"), StorageDtype::F16)?;

    // A third-party safetensors file as diffusers writes one (no metadata of ours), with every float dtype and
    // one integer tensor (skipped by the reader).
    let bytes = |n: usize, width: usize| -> Vec<u8> {
        (0..n * width).map(|i| (i * 37 % 251) as u8).collect()
    };
    let tensors = [
        ("conv_in.weight", safetensors::Dtype::F32, vec![2, 1, 3, 3], bytes(18, 4)),
        ("conv_in.bias", safetensors::Dtype::F16, vec![2], bytes(2, 2)),
        ("norm.weight", safetensors::Dtype::BF16, vec![2], bytes(2, 2)),
        ("norm.bias", safetensors::Dtype::F64, vec![2], bytes(2, 8)),
        ("steps", safetensors::Dtype::I64, vec![1], bytes(1, 8)),
    ];
    let views = tensors.iter().map(|(name, dtype, shape, data)| {
        let view =
            safetensors::tensor::TensorView::new(*dtype, shape.clone(), data).expect("sized");
        (*name, view)
    });
    let file = safetensors::serialize(views, None).expect("serialise");
    std::fs::write(seeds.join("weights/diffusers_style.safetensors"), file).expect("write");

    let values: Vec<f32> = (0..24).map(|i| i as f32 * 0.25 - 3.0).collect();
    write_npy(&seeds.join("npy/f32_2x3x4.npy"), &[2, 3, 4], &values)?;
    write_npy(&seeds.join("npy/f32_scalar.npy"), &[], &values[..1])?;
    write_npy(&seeds.join("npy/f32_empty.npy"), &[0, 3], &[])?;
    let other = |name: &str, bytes: Vec<u8>| std::fs::write(seeds.join("npy").join(name), bytes);
    let npy = |descr: &str, shape: &str, data: Vec<u8>| {
        let header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
        let pad = 64 - (10 + header.len() + 1) % 64;
        let header = format!("{header}{}\n", " ".repeat(pad % 64));
        let mut b = b"\x93NUMPY\x01\x00".to_vec();
        b.extend((header.len() as u16).to_le_bytes());
        b.extend(header.as_bytes());
        b.extend(data);
        b
    };
    other("f64_4.npy", npy("<f8", "(4,)", (0..4).flat_map(|i| (i as f64).to_le_bytes()).collect()))
        .expect("write");
    other(
        "i64_2x2.npy",
        npy("<i8", "(2, 2)", (0..4).flat_map(|i| (i as i64).to_le_bytes()).collect()),
    )
    .expect("write");
    other("i32_3.npy", npy("<i4", "(3,)", (0..3i32).flat_map(|i| i.to_le_bytes()).collect()))
        .expect("write");

    let gray: Vec<f32> = (0..28 * 28).map(|i| (i % 29) as f32 / 14.0 - 1.0).collect();
    write_png(&seeds.join("image/gray_28.png"), &gray, [1, 28, 28])?;
    let rgb: Vec<f32> = (0..3 * 8 * 8).map(|i| (i % 7) as f32 / 3.5 - 1.0).collect();
    write_png(&seeds.join("image/rgb_8.png"), &rgb, [3, 8, 8])?;
    write_png(&seeds.join("image/rgb_32.png"), &[0.5; 3 * 32 * 32], [3, 32, 32])?;
    println!("seeds written under {}", seeds.display());
    Ok(())
}

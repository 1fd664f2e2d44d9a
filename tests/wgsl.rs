//! Every kernel parses and validates with naga (no GPU needed), and the host's view of each kernel (Params
//! size, workgroup size, bindings) matches the shader.

use ddim_wgpu::gpu::{Access, DType, Kernel};
use ddim_wgpu::ops::KERNELS;

fn module(name: &str, source: &str) -> (naga::Module, naga::valid::ModuleInfo) {
    let module = naga::front::wgsl::parse_str(source)
        .unwrap_or_else(|e| panic!("{name}: {}", e.emit_to_string(source)));
    // Subgroup operations only for the kernels written for devices that have them (`#entry N subgroups`).
    let subgroups = ddim_wgpu::gpu::template::uses_subgroups(source);
    let mut capabilities = naga::valid::Capabilities::default();
    capabilities.set(naga::valid::Capabilities::SUBGROUP, subgroups);
    capabilities.set(naga::valid::Capabilities::SHADER_FLOAT16, source.contains("enable f16;"));
    let info = naga::valid::Validator::new(naga::valid::ValidationFlags::all(), capabilities)
        .subgroup_stages(naga::valid::ShaderStages::COMPUTE)
        .subgroup_operations(naga::valid::SubgroupOperationSet::all())
        .validate(&module)
        .unwrap_or_else(|e| panic!("{name}: {}", e.emit_to_string(source)));
    (module, info)
}

#[test]
fn every_kernel_file_is_registered() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/kernels");
    let mut files: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|f| f.ends_with(".wgsl") && !f.ends_with(".inc.wgsl") && f != "common.wgsl")
        .map(|f| f.trim_end_matches(".wgsl").to_string())
        .collect();
    files.sort();
    let mut registered: Vec<String> = KERNELS.iter().map(|k| k.file.to_string()).collect();
    registered.sort();
    registered.dedup();
    assert_eq!(files, registered);
    // A variant's name is unique: it keys the pipeline cache.
    let mut names: Vec<&str> = KERNELS.iter().map(|k| k.name).collect();
    names.sort();
    let n = names.len();
    names.dedup();
    assert_eq!(names.len(), n, "two kernels share a name");
}

/// Each kernel's expanded source at each precision it runs at: f32, and f16 where it stores activations.
fn sources() -> Vec<(&'static Kernel, String)> {
    let mut all = Vec::new();
    for &kernel in KERNELS {
        all.push((kernel, kernel.full_source(DType::F32).unwrap()));
        if kernel.stores_activations() {
            all.push((kernel, kernel.full_source(DType::F16).unwrap()));
        }
    }
    all
}

/// The expanded sources hold no directive: what naga validates below is what runs.
#[test]
fn variants_expand_to_plain_wgsl() {
    for (kernel, source) in sources() {
        for (i, line) in source.lines().enumerate() {
            assert!(
                !line.trim_start().starts_with('#') && !line.contains("{{"),
                "{}: line {} left unexpanded: {line}",
                kernel.name,
                i + 1
            );
        }
    }
}

#[test]
fn kernels_validate_and_match_their_host_mirrors() {
    for (kernel, source) in sources() {
        let (module, _) = module(kernel.name, &source);
        let entry = module
            .entry_points
            .iter()
            .find(|e| e.name == "main")
            .unwrap_or_else(|| panic!("{}: no entry point `main`", kernel.name));
        assert_eq!(
            entry.workgroup_size,
            [kernel.workgroup_size, 1, 1],
            "{}: workgroup size",
            kernel.name
        );

        let mut seen = vec![false; kernel.bindings.len() + 1];
        for (_, var) in module.global_variables.iter() {
            let Some(binding) = &var.binding else {
                continue;
            };
            assert_eq!(binding.group, 0, "{}: bind group", kernel.name);
            let slot = binding.binding as usize;
            assert!(slot < seen.len(), "{}: unexpected binding {slot}", kernel.name);
            seen[slot] = true;
            match (slot, var.space) {
                (0, naga::AddressSpace::Uniform) => {
                    let size = module.types[var.ty].inner.size(module.to_ctx()) as usize;
                    assert_eq!(size, kernel.params_size, "{}: Params size", kernel.name);
                    assert_eq!(
                        size % 16,
                        0,
                        "{}: uniform size must be a multiple of 16",
                        kernel.name
                    );
                }
                (0, space) => {
                    panic!("{}: binding 0 must be the uniform, is {space:?}", kernel.name)
                }
                (i, naga::AddressSpace::Storage { access }) => {
                    let writable = access.contains(naga::StorageAccess::STORE);
                    let declared = kernel.bindings[i - 1];
                    assert_ne!(declared, Access::UniformWindow, "{}: binding {i}", kernel.name);
                    assert_eq!(
                        writable,
                        declared == Access::ReadWrite,
                        "{}: binding {i} access",
                        kernel.name
                    );
                }
                (i, naga::AddressSpace::Uniform) => {
                    assert_eq!(
                        kernel.bindings[i - 1],
                        Access::UniformWindow,
                        "{}: binding {i} is a uniform",
                        kernel.name
                    );
                    let size = module.types[var.ty].inner.size(module.to_ctx()) as u64;
                    assert_eq!(
                        size,
                        ddim_wgpu::gpu::UNIFORM_WINDOW,
                        "{}: binding {i} must declare exactly one uniform window",
                        kernel.name
                    );
                }
                (i, space) => panic!("{}: binding {i} is {space:?}", kernel.name),
            }
        }
        assert!(seen.iter().all(|&s| s), "{}: bindings declared {seen:?}", kernel.name);
    }
}

#[test]
fn every_kernel_documents_layouts_and_grid() {
    for kernel in KERNELS {
        let header: String = kernel
            .source
            .lines()
            .take_while(|l| l.starts_with("//"))
            .collect::<Vec<_>>()
            .join("\n");
        for word in ["Layout", "Grid", "Invariant"] {
            assert!(header.contains(word), "{}: header comment lacks `{word}`", kernel.name);
        }
    }
}

//! Kernel variants from one WGSL source: a small, line-oriented preprocessor. A kernel file may hold
//! directives, each on a line of its own, which [`expand`] turns into plain WGSL before it is compiled:
//!
//! - `#for w in 0..N` ... `#end`: the lines between, once for each `w` in `0..N`, with `{w}` (and `{w+K}`,
//!   `{w-K}`, `{w*K}` for a whole number `K`) replaced by the value. Loops nest.
//! - `#if NAME` / `#if !NAME` / `#if NAME == VALUE` / `#if NAME != VALUE`, or several joined by `&&`, an
//!   optional `#else`, `#end`: the lines of the branch that holds. `NAME` alone holds when the variant defines
//!   it as anything but `0`.
//! - `{{NAME}}` anywhere: the variant's value of `NAME` (an error where it has none), also inside directives
//!   (`#for w in 0..{{WINDOWS}}`); `{{NAME+K}}` adds a whole number to a whole-number value (binding numbers
//!   after a variant's windows).
//! - `#entry N [id] [subgroups]`: the compute entry point `main` with workgroup size `N` and the builtins
//!   every kernel flattens its 2-D grid with (`wg`, `nwg`, `li`); with `id`, also
//!   `let id = flat_index(wg, nwg, li, N);`; with `subgroups`, also the subgroup builtins (`sg`: this
//!   invocation's subgroup, `nsg`: the workgroup's subgroups, `lane`: the invocation within its subgroup,
//!   `sgsize`: the subgroup size;
//!   naga takes subgroup operations from the device's features, with no `enable` directive). The function
//!   body follows and closes it.
//!
//! - `#bindings x:act weight:act4 u0..4 out`: the declarations of bindings 1.. in order, named so (`u0..4` is
//!   `u0 u1 u2 u3`; `:vec4` or `:u32` sets a storage array's element, f32 otherwise; `:act` and `:act4` make
//!   it the device's activation type, `act`), each with the access the host binds it with: the host's list
//!   and the shader's cannot disagree.
//!
//! Every kernel is compiled after [`precision_header`]: the aliases `act` and `act4` (`f32` and `vec4<f32>`,
//! or `f16` and `vec4<f16>` with `enable f16;` on a device opened at f16 precision). A kernel that stores
//! activations declares them `:act`, loads them as `f32(x[i])` (`vec4<f32>(x4[i])`) and stores `act(v)`, so
//! it computes in f32 at either precision and its f32 variant is the source as written; at f16 precision the
//! define `F16` is set too, for a kernel that computes differently there (`conv2d_tiled.wgsl`'s f16 products).
//!
//! Nothing else changes: comments, blank lines and code pass through as written, so the expanded source reads
//! like a hand-written kernel (`cargo run --example kernels -- DIR` writes every one out). A variant is a
//! [`Kernel`](super::Kernel) with its own name and defines over the shared source; the pipeline cache keys
//! on the name.

/// The WGSL that comes before every kernel: the activation aliases for elements of `act`.
pub fn precision_header(act: crate::gpu::DType) -> String {
    let (enable, t) = match act {
        crate::gpu::DType::F32 => ("", "f32"),
        crate::gpu::DType::F16 => ("enable f16;\n", "f16"),
    };
    format!("{enable}alias act = {t};\nalias act4 = vec4<{t}>;\n")
}

/// Whether each storage binding (1.., in order) of expanded WGSL holds activations (`array<act>` or
/// `array<act4>`); uniform bindings other than the Params (windows) hold f32 and read as `false`. What the host
/// checks the tensors it binds against.
pub fn activation_bindings(wgsl: &str) -> Vec<(u32, bool)> {
    wgsl.lines()
        .filter_map(|line| {
            let rest = line.trim().strip_prefix("@group(0) @binding(")?;
            let (n, decl) = rest.split_once(')')?;
            let n: u32 = n.parse().ok()?;
            (n > 0).then(|| (n, decl.contains("array<act>") || decl.contains("array<act4>")))
        })
        .collect()
}

/// Whether expanded WGSL uses subgroup operations: its entry point was written by `#entry N subgroups`.
pub fn uses_subgroups(wgsl: &str) -> bool {
    wgsl.contains("@builtin(subgroup_id)")
}

/// How the host binds one binding after the Params uniform, for `#bindings`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Slot {
    /// `var<storage, read>`
    Read,
    /// `var<storage, read_write>`
    ReadWrite,
    /// `var<uniform>`, one 64 KiB window of vec4s.
    Window,
}

/// `source` with every directive applied for `defines` (name, value), `#bindings` declaring `slots`. Errors
/// name the line.
pub fn expand(source: &str, defines: &[(&str, &str)], slots: &[Slot]) -> Result<String, String> {
    let lines: Vec<&str> = source.lines().collect();
    let mut out = String::with_capacity(source.len());
    let mut vars = Vec::new();
    let cx = Context { defines, slots };
    block(&lines, 0, &cx, &mut vars, &mut out)?;
    Ok(out)
}

/// What a variant brings to its source.
struct Context<'a> {
    defines: &'a [(&'a str, &'a str)],
    slots: &'a [Slot],
}

/// The declarations of bindings 1.. named by `#bindings NAME[:TYPE] ...`: `NAMEa..b` stands for NAMEa,
/// NAMEa+1, .. NAMEb-1; TYPE is the storage array's element (f32 unless given); a uniform window is always
/// `array<vec4<f32>, 4096>`. The access comes from the host's list, so the two cannot disagree.
fn bindings(spec: &str, slots: &[Slot]) -> Result<String, String> {
    let mut names = Vec::new();
    for word in spec.split_whitespace() {
        let (name, ty) = word.split_once(':').unwrap_or((word, "f32"));
        let ty = match ty {
            "vec4" => "vec4<f32>",
            "u32" => "u32",
            "f32" => "f32",
            "act" => "act",
            "act4" => "act4",
            other => {
                return Err(format!("`{other}`: binding types are f32, vec4, u32, act and act4"));
            }
        };
        match name.split_once("..") {
            Some((stem_from, to)) => {
                let digits = stem_from.trim_start_matches(|c: char| !c.is_ascii_digit());
                let stem = &stem_from[..stem_from.len() - digits.len()];
                let (from, to) = (
                    digits.parse::<usize>().map_err(|_| format!("`{word}`: expected NAMEa..b"))?,
                    to.parse::<usize>().map_err(|_| format!("`{word}`: expected NAMEa..b"))?,
                );
                names.extend((from..to).map(|i| (format!("{stem}{i}"), ty)));
            }
            None => names.push((name.to_string(), ty)),
        }
    }
    if names.len() != slots.len() {
        return Err(format!(
            "`#bindings` names {} bindings, the host binds {}",
            names.len(),
            slots.len()
        ));
    }
    let mut out = String::new();
    for (i, ((name, ty), slot)) in names.iter().zip(slots).enumerate() {
        let decl = match slot {
            Slot::Read => format!("var<storage, read> {name}: array<{ty}>"),
            Slot::ReadWrite => format!("var<storage, read_write> {name}: array<{ty}>"),
            Slot::Window => format!("var<uniform> {name}: array<vec4<f32>, 4096>"),
        };
        out.push_str(&format!("@group(0) @binding({}) {decl};\n", i + 1));
    }
    Ok(out)
}

/// A directive's keyword and the rest of its line, where `line` is one.
fn directive(line: &str) -> Option<(&str, &str)> {
    let d = line.trim_start().strip_prefix('#')?;
    let (word, rest) = d.split_once(char::is_whitespace).unwrap_or((d, ""));
    matches!(word, "for" | "if" | "else" | "end" | "entry" | "bindings")
        .then_some((word, rest.trim()))
}

/// The index of the `#end` that closes the block opened at `start`, and of its `#else` at the same depth.
fn close(lines: &[&str], start: usize, first: usize) -> Result<(Option<usize>, usize), String> {
    let mut depth = 0;
    let mut otherwise = None;
    for (i, line) in lines.iter().enumerate().skip(start + 1) {
        match directive(line).map(|d| d.0) {
            Some("for" | "if") => depth += 1,
            Some("else") if depth == 0 => otherwise = Some(i),
            Some("end") if depth == 0 => return Ok((otherwise, i)),
            Some("end") => depth -= 1,
            _ => {}
        }
    }
    Err(format!("line {}: no #end", first + start + 1))
}

fn block(
    lines: &[&str],
    first: usize,
    cx: &Context<'_>,
    vars: &mut Vec<(String, i64)>,
    out: &mut String,
) -> Result<(), String> {
    let defines = cx.defines;
    let mut i = 0;
    while i < lines.len() {
        let at = first + i + 1;
        let line = substitute(lines[i], defines, vars).map_err(|e| format!("line {at}: {e}"))?;
        match directive(&line) {
            Some(("for", rest)) => {
                let (_, end) = close(lines, i, first)?;
                let (var, range) = rest
                    .split_once(" in ")
                    .ok_or_else(|| format!("line {at}: expected `#for NAME in A..B`"))?;
                let (a, b) = range
                    .split_once("..")
                    .ok_or_else(|| format!("line {at}: expected a range A..B"))?;
                let number = |s: &str| {
                    s.trim()
                        .parse::<i64>()
                        .map_err(|_| format!("line {at}: `{s}` is not a whole number"))
                };
                for v in number(a)?..number(b)? {
                    vars.push((var.trim().to_string(), v));
                    block(&lines[i + 1..end], first + i + 1, cx, vars, out)?;
                    vars.pop();
                }
                i = end + 1;
            }
            Some(("if", cond)) => {
                let (otherwise, end) = close(lines, i, first)?;
                let then_end = otherwise.unwrap_or(end);
                if holds(cond, defines) {
                    block(&lines[i + 1..then_end], first + i + 1, cx, vars, out)?;
                } else if let Some(e) = otherwise {
                    block(&lines[e + 1..end], first + e + 1, cx, vars, out)?;
                }
                i = end + 1;
            }
            Some(("entry", rest)) => {
                let mut words = rest.split_whitespace();
                let size: u32 = words
                    .next()
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| format!("line {at}: expected `#entry SIZE [id] [subgroups]`"))?;
                let (mut id, mut with_subgroups) = (false, false);
                for word in words {
                    match word {
                        "id" if !id => id = true,
                        "subgroups" if !with_subgroups => with_subgroups = true,
                        other => {
                            return Err(format!("line {at}: unexpected `#entry` option `{other}`"));
                        }
                    }
                }
                out.push_str(&format!(
                    "@compute @workgroup_size({size})\nfn main(\n    \
                     @builtin(workgroup_id) wg: vec3<u32>,\n    \
                     @builtin(num_workgroups) nwg: vec3<u32>,\n    \
                     @builtin(local_invocation_index) li: u32,\n"
                ));
                if with_subgroups {
                    out.push_str(
                        "    @builtin(subgroup_id) sg: u32,\n    \
                         @builtin(num_subgroups) nsg: u32,\n    \
                         @builtin(subgroup_invocation_id) lane: u32,\n    \
                         @builtin(subgroup_size) sgsize: u32,\n",
                    );
                }
                out.push_str(") {\n");
                if id {
                    out.push_str(&format!("    let id = flat_index(wg, nwg, li, {size}u);\n"));
                }
                i += 1;
            }
            Some(("bindings", spec)) => {
                out.push_str(&bindings(spec, cx.slots).map_err(|e| format!("line {at}: {e}"))?);
                i += 1;
            }
            Some((word, _)) => return Err(format!("line {at}: `#{word}` without its opening")),
            None => {
                out.push_str(&line);
                out.push('\n');
                i += 1;
            }
        }
    }
    Ok(())
}

/// Whether an `#if` condition holds for `defines`.
fn holds(cond: &str, defines: &[(&str, &str)]) -> bool {
    let cond = cond.trim();
    if let Some((first, rest)) = cond.split_once("&&") {
        return holds(first, defines) && holds(rest, defines);
    }
    let value = |name: &str| defines.iter().find(|(n, _)| *n == name.trim()).map(|(_, v)| *v);
    if let Some((name, v)) = cond.split_once("==") {
        value(name) == Some(v.trim())
    } else if let Some((name, v)) = cond.split_once("!=") {
        value(name) != Some(v.trim())
    } else if let Some(name) = cond.strip_prefix('!') {
        !matches!(value(name), Some(v) if v != "0")
    } else {
        matches!(value(cond), Some(v) if v != "0")
    }
}

/// `line` with `{{NAME}}` replaced by its define and `{var}`, `{var+K}`, `{var-K}`, `{var*K}` by the loop
/// variable's value.
fn substitute(
    line: &str,
    defines: &[(&str, &str)],
    vars: &[(String, i64)],
) -> Result<String, String> {
    let mut s = line.to_string();
    while let Some(start) = s.find("{{") {
        let end = s[start..].find("}}").map(|e| start + e).ok_or("`{{` without `}}`")?;
        let expr = s[start + 2..end].trim();
        let (name, offset) = match expr.split_once('+') {
            Some((n, k)) => (
                n.trim(),
                Some(
                    k.trim()
                        .parse::<i64>()
                        .map_err(|_| format!("`{expr}`: expected NAME+K with K a whole number"))?,
                ),
            ),
            None => (expr, None),
        };
        let value = defines
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| *v)
            .ok_or_else(|| format!("`{name}` is not defined for this variant"))?;
        let value = match offset {
            Some(k) => value
                .parse::<i64>()
                .map(|v| (v + k).to_string())
                .map_err(|_| format!("`{expr}`: `{name}` is `{value}`, not a whole number"))?,
            None => value.to_string(),
        };
        s.replace_range(start..end + 2, &value);
    }
    if vars.is_empty() {
        return Ok(s);
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s.as_str();
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        let replaced = after.find('}').and_then(|end| {
            let expr = &after[..end];
            let (name, op, k) = match expr.find(['+', '-', '*']) {
                Some(p) => {
                    (&expr[..p], Some(&expr[p..p + 1]), expr[p + 1..].trim().parse::<i64>().ok()?)
                }
                None => (expr, None, 0),
            };
            let v = vars.iter().rev().find(|(n, _)| n == name.trim())?.1;
            let value = match op {
                Some("+") => v + k,
                Some("-") => v - k,
                Some("*") => v * k,
                _ => v,
            };
            Some((value, end))
        });
        match replaced {
            Some((value, end)) => {
                out.push_str(&value.to_string());
                rest = &after[end + 1..];
            }
            None => {
                out.push('{');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::{Slot, expand};

    #[test]
    fn loops_repeat_their_lines_with_the_index_and_nest() {
        let src = "a\n#for w in 0..3\n@binding({w+1}) var u{w}: T;\n#end\nb {\n}\n";
        assert_eq!(
            expand(src, &[], &[]).unwrap(),
            "a\n@binding(1) var u0: T;\n@binding(2) var u1: T;\n@binding(3) var u2: T;\nb {\n}\n"
        );
        let nested = "#for i in 0..2\n#for j in 0..{{N}}\n{i}{j}{j*2}\n#end\n#end\n";
        assert_eq!(expand(nested, &[("N", "2")], &[]).unwrap(), "000\n012\n100\n112\n");
    }

    #[test]
    fn conditions_pick_a_branch_by_the_variant() {
        let src =
            "#if DDIM\nfused\n#else\nplain\n#end\n#if W == 4\nfour\n#end\n#if !W\nnone\n#end\n";
        assert_eq!(expand(src, &[("DDIM", "1"), ("W", "4")], &[]).unwrap(), "fused\nfour\n");
        assert_eq!(expand(src, &[("DDIM", "0")], &[]).unwrap(), "plain\nnone\n");
        assert_eq!(expand("x = {{X}};\n", &[("X", "7u")], &[]).unwrap(), "x = 7u;\n");
        assert_eq!(expand("@binding({{W+5}})\n", &[("W", "4")], &[]).unwrap(), "@binding(9)\n");
        assert!(expand("{{X+1}}\n", &[("X", "7u")], &[]).is_err());
    }

    #[test]
    fn the_entry_point_is_written_out() {
        let out = expand("#entry 64 id\n    f(id);\n}\n", &[], &[]).unwrap();
        assert!(out.starts_with("@compute @workgroup_size(64)\nfn main(\n"));
        assert!(out.contains("    let id = flat_index(wg, nwg, li, 64u);\n    f(id);\n}\n"));
        assert!(!out.contains("subgroup"));
    }

    #[test]
    fn conditions_join_with_and() {
        let src =
            "#if F16 && RM == 4\nboth\n#else\nnot both\n#end\n#if RM == 4 && !F16\nf32 4x4\n#end\n";
        let with = |defines: &[(&str, &str)]| expand(src, defines, &[]).unwrap();
        assert_eq!(with(&[("F16", "1"), ("RM", "4")]), "both\n");
        assert_eq!(with(&[("F16", "1"), ("RM", "8")]), "not both\n");
        assert_eq!(with(&[("RM", "4")]), "not both\nf32 4x4\n");
    }

    #[test]
    fn an_entry_with_subgroups_has_their_builtins() {
        let out =
            expand("#entry 256 subgroups id\n    f(id, sg, nsg, lane);\n}\n", &[], &[]).unwrap();
        assert!(out.starts_with("@compute @workgroup_size(256)\n"));
        assert!(out.contains("@builtin(subgroup_id) sg: u32"));
        assert!(out.contains("@builtin(num_subgroups) nsg: u32"));
        assert!(out.contains("@builtin(subgroup_invocation_id) lane: u32"));
        assert!(out.contains("@builtin(subgroup_size) sgsize: u32"));
        assert!(
            out.contains(
                "    let id = flat_index(wg, nwg, li, 256u);\n    f(id, sg, nsg, lane);\n"
            )
        );
        assert!(expand("#entry 64 id id\n}\n", &[], &[]).unwrap_err().contains("`id`"));
        assert!(expand("#entry 64 warp\n}\n", &[], &[]).unwrap_err().contains("`warp`"));
    }

    #[test]
    fn bindings_take_the_hosts_access() {
        let slots = [Slot::Window, Slot::Window, Slot::Read, Slot::ReadWrite];
        assert_eq!(
            expand("#bindings w0..2 bias out:vec4\n", &[], &slots).unwrap(),
            "@group(0) @binding(1) var<uniform> w0: array<vec4<f32>, 4096>;\n\
             @group(0) @binding(2) var<uniform> w1: array<vec4<f32>, 4096>;\n\
             @group(0) @binding(3) var<storage, read> bias: array<f32>;\n\
             @group(0) @binding(4) var<storage, read_write> out: array<vec4<f32>>;\n"
        );
        assert!(expand("#bindings a b\n", &[], &slots).unwrap_err().contains("host binds 4"));
    }

    #[test]
    fn mistakes_are_errors_that_name_the_line() {
        assert_eq!(expand("a\n#for w in 0..2\nb\n", &[], &[]).unwrap_err(), "line 2: no #end");
        assert_eq!(expand("#end\n", &[], &[]).unwrap_err(), "line 1: `#end` without its opening");
        assert!(expand("{{MISSING}}\n", &[], &[]).unwrap_err().contains("MISSING"));
        // WGSL's own braces pass through.
        assert_eq!(expand("fn f() { return; }\n", &[], &[]).unwrap(), "fn f() { return; }\n");
    }
}

#!/usr/bin/env bash
# Prepares a device-machine check (tools/bench/gpu_check.sh) on this machine: release binaries of `ddim` and
# the studies, stripped, in .gpubin/, and the Vulkan and EGL loaders the device machine lacks, in .gl/ (both
# ignored by git, carried to the device machine by name). Needs apt-get and an x86-64 build machine.
#
#   tools/bench/gpu_prep.sh
#   then, with the device tool: run(command="bash tools/bench/gpu_check.sh", carry=[".gpubin", ".gl"])
set -euo pipefail
cd "$(dirname "$0")/../.."
mkdir -p .git/info
for d in /.gpubin/ /.gl/; do
  grep -qxF "$d" .git/info/exclude 2>/dev/null || echo "$d" >>.git/info/exclude
done
cargo build --release --quiet --bin ddim --example conv_study --example norm_study --example attention_study
rm -rf .gpubin && mkdir -p .gpubin
cp target/release/ddim target/release/examples/{conv_study,norm_study,attention_study} .gpubin/
strip .gpubin/*
if [[ ! -d .gl ]] || ! ls .gl/*.deb >/dev/null 2>&1; then
  mkdir -p .gl /tmp/amd64/partial
  o='-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64'
  # shellcheck disable=SC2086 # $o is several options
  apt-get $o update -qq
  # shellcheck disable=SC2086
  (cd .gl && apt-get $o download -qq libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2)
fi
du -sh .gpubin .gl

#!/usr/bin/env bash
# Installs NVIDIA's runtime compiler (NVRTC) from Debian 12's non-free component so that the
# NeuralCore.Cuda tests can compile every kernels/*.cu file on a machine without a GPU.
# Debian packages the CUDA 11.8 NVRTC as libnvrtc11.2 (soname libnvrtc.so.11.2), which needs
# libnvrtc-builtins11.8 (libnvrtc-builtins.so.11.8). No GPU and no driver are needed.
# Idempotent; run as root (CI runs as root).
set -euo pipefail

if ldconfig -p | grep -q 'libnvrtc\.so\.11\.2' && ldconfig -p | grep -q 'libnvrtc-builtins\.so\.11\.8'; then
  exit 0
fi

# The default bookworm sources list only 'main'; NVRTC lives in 'non-free' (its dependencies in
# 'contrib' for some CUDA packages), so add a deb822 entry for both components.
cat > /etc/apt/sources.list.d/neuralcore-nvrtc.sources <<'SOURCES'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: contrib non-free
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SOURCES

apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libnvrtc11.2 libnvrtc-builtins11.8 >/dev/null
ldconfig -p | grep -E 'libnvrtc(-builtins)?\.so'

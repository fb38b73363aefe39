#!/usr/bin/env bash
# Install everything the test suite needs (Debian packages, then gen and its test
# dependencies into the repo's .venv through install.sh), then run it with the venv's
# Python, so the tests' `python -m generator` runs this checkout. This is the README's
# second set-up command, and what .ci/run calls.
# Daemons installed here must not start outside the tests' lo-only network namespaces:
# a policy-rc.d keeps apt from starting them (BIND would otherwise prime the root servers).
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
  python3-venv  # the venv gen and pytest run in (Debian's python3 is PEP 668 managed)
  # boot-service daemons and their checkers
  bind9 bind9-dnsutils dnsmasq-base isc-dhcp-server kea-dhcp4-server isc-dhcp-client
  haproxy tftpd-hpa nfs-kernel-server apache2 curl iproute2 iptables
  nodejs  # runs the GitHub workflow's github-script step in tests/test_ci_templates.py
  graphviz  # `dot` for gen graph --format svg and the picture of gen diff --format html
  chromium chromium-driver  # headless browser for tests/test_html_report.py (via selenium)
  # node configs
  ignition cloud-init genisoimage xorriso
  containerd openssl  # the mirror's hosts.toml pulled through by a real containerd
  # lockfile: real registry, skopeo, nix for NAR hashes
  docker-registry skopeo nix-bin
  apache2-utils  # htpasswd: the mirror registry's auth in tests/test_images_mirror.py
  # libvirt: test driver, real libvirtd with qemu, libvirt-python build deps
  libvirt-daemon-system libvirt-daemon-driver-qemu libvirt-clients libvirt-dev pkg-config gcc
  libxml2-utils  # xmllint, which virt-xml-validate needs
  qemu-system-x86 qemu-utils ipxe-qemu
  # end-to-end PXE boot
  pxelinux syslinux-common ovmf grub-efi-amd64-bin busybox-static linux-image-cloud-amd64 cpio
  openssh-server openssh-client  # the files provider over SSH (tests/test_files_ssh.py)
  # real cloud-init in a booted Debian VM (tests/e2e/test_cloudinit_apply.py): the image,
  # the stand-in pkgs.k8s.io repository (apt-ftparchive) and its signing key
  mmdebstrap e2fsprogs apt-utils gpg
)

# npm installs the mermaid package (tests/mermaid_parse.mjs). A machine whose nodejs comes
# from NodeSource has npm inside it, and Debian's npm package cannot go beside that nodejs.
command -v npm >/dev/null || APT_PACKAGES+=(npm)

install_apt() {
  local missing=()
  for pkg in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  local guard=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    guard=1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
  [ -z "$guard" ] || rm -f /usr/sbin/policy-rc.d
}

install_apt
# The real Mermaid library for tests/test_graph_mermaid.py (parser under node) and
# tests/test_html_report.py (drawn in Chromium), pinned, into tests/.mermaid.
[ -d tests/.mermaid/node_modules/mermaid ] || npm install --prefix tests/.mermaid --no-audit \
  --no-fund --silent mermaid@11.17.2 jsdom@29.1.1
./install.sh test
# Tools the test extra installs (kubectl, ansible-inventory, kolla-genpwd) live in the venv.
export PATH="$PWD/.venv/bin:$PATH"
exec .venv/bin/python -m pytest "$@"

#!/usr/bin/env bash
# Makes sure the programs the tests use are on PATH: etcd and etcdctl (the distributed-mode tests start their
# own etcd), openssl (the TLS tests make their certificates with it), and git, cmake and a C++ compiler (npm
# test builds llama.cpp's llama-server once per machine, for the llama.cpp-server engine's tests), and
# systemd-analyze (test/deploy/systemd.test.ts verifies the systemd units with it), and chromium and firefox-esr (the web console tests).
# All present: does nothing. Missing and root: installs the Debian packages with apt-get.
# Missing and not root: says how to install them and exits 1.
set -euo pipefail

declare -A package_of=([etcd]=etcd-server [etcdctl]=etcd-client [openssl]=openssl [git]=git [cmake]=cmake [c++]=g++ [systemd-analyze]=systemd [kubectl]=kubernetes-client [ip]=iproute2 [iptables]=iptables [chromium]=chromium [firefox-esr]=firefox-esr)
missing=()
packages=()
# kubectl: test/deploy/k8s.test.ts renders deploy/k8s with `kubectl kustomize`. Debian's kubernetes-client is
# 1.20 (kustomize v2.0.3); the manifests keep to what it renders (bases, patchesStrategicMerge,
# configMapGenerator), as kubectl 1.21+ does.
# chromium: test/console/ drives the web console in it (playwright-core); firefox-esr: and in Firefox
# (puppeteer-core over WebDriver BiDi).
# ip and iptables: the multi-host rig (rig/, test/rig/) builds network namespaces, veth pairs, a bridge and DROP rules.
for cmd in etcd etcdctl openssl git cmake c++ systemd-analyze kubectl ip iptables chromium firefox-esr; do
  if ! command -v "$cmd" >/dev/null 2>&1; then
    missing+=("$cmd")
    packages+=("${package_of[$cmd]}")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  cat >&2 <<MSG
ensure-tools: ${missing[*]} not on PATH, and this is not root, so they cannot be installed here.
The tests need them. Install them once, e.g. on Debian/Ubuntu:
  sudo apt-get install -y ${packages[*]}
(etcd 3.4 or later), then run the tests again.
MSG
  exit 1
fi

if ! command -v apt-get >/dev/null 2>&1; then
  echo "ensure-tools: ${missing[*]} missing and apt-get not found; install them by hand (etcd 3.4 or later)." >&2
  exit 1
fi

echo "ensure-tools: installing ${packages[*]} with apt-get" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y "${packages[@]}"

for cmd in "${missing[@]}"; do
  if ! command -v "$cmd" >/dev/null 2>&1; then
    echo "ensure-tools: apt-get finished but $cmd is still not on PATH" >&2
    exit 1
  fi
done

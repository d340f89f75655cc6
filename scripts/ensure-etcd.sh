#!/usr/bin/env bash
# Makes sure etcd and etcdctl (used by the distributed-mode tests) are on PATH.
# Present: does nothing. Missing and root: installs Debian's etcd-server and etcd-client with apt-get.
# Missing and not root: says how to install them and exits 1.
set -euo pipefail

if command -v etcd >/dev/null 2>&1 && command -v etcdctl >/dev/null 2>&1; then
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  cat >&2 <<'MSG'
ensure-etcd: etcd and/or etcdctl are not on PATH, and this is not root, so they cannot be installed here.
The distributed-mode tests start their own etcd. Install it once, e.g. on Debian/Ubuntu:
  sudo apt-get install -y etcd-server etcd-client
(or put etcd and etcdctl from https://github.com/etcd-io/etcd/releases on PATH), then run the tests again.
MSG
  exit 1
fi

if ! command -v apt-get >/dev/null 2>&1; then
  echo "ensure-etcd: etcd/etcdctl missing and apt-get not found; install etcd and etcdctl (3.4 or later) by hand." >&2
  exit 1
fi

echo "ensure-etcd: installing etcd-server and etcd-client with apt-get" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y etcd-server etcd-client

if ! command -v etcd >/dev/null 2>&1 || ! command -v etcdctl >/dev/null 2>&1; then
  echo "ensure-etcd: apt-get finished but etcd/etcdctl are still not on PATH" >&2
  exit 1
fi

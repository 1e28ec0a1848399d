#!/usr/bin/env bash
# Debian packages that building Caffe (scripts/build_caffe.sh) and running
# drnngen need. Idempotent: asks dpkg first and touches apt only for what is
# missing, so a second run is a quick no-op. Uses sudo only when not root.
set -euo pipefail

# Caffe's classic Makefile build (CPU, HDF5, OpenBLAS, boost.python for pycaffe);
# ccache makes a rebuild take seconds; graphviz is `drnngen draw`'s `dot`;
# python3-venv lets `make venv` create the virtualenv; redis-server is the
# `drnngen serve --store redis://` option's server (its tests start one).
PACKAGES=(
    g++ make patch
    protobuf-compiler libprotobuf-dev
    libgoogle-glog-dev libgflags-dev
    libboost-system-dev libboost-thread-dev libboost-filesystem-dev
    libboost-regex-dev libboost-python-dev
    libopenblas-dev libhdf5-dev
    ccache graphviz python3-venv redis-server
)

say() { echo "[system-deps] $*"; }

is_installed() {
    # dpkg-query exits 0 for removed-but-configured packages too; check the status.
    [[ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null)" == "installed" ]]
}

as_root() {
    if [[ "$(id -u)" -eq 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null; then
        sudo "$@"
    else
        say "error: need root (or sudo) to run: $*" >&2
        exit 1
    fi
}

main() {
    if ! command -v dpkg-query >/dev/null; then
        say "error: not a Debian/Ubuntu system; install the equivalents of: ${PACKAGES[*]}" >&2
        exit 1
    fi
    local missing=()
    for pkg in "${PACKAGES[@]}"; do
        is_installed "$pkg" || missing+=("$pkg")
    done
    if [[ ${#missing[@]} -eq 0 ]]; then
        say "all ${#PACKAGES[@]} packages present"
        return
    fi
    say "installing ${#missing[@]} missing: ${missing[*]}"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    say "done"
}

main "$@"

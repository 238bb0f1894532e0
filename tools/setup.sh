#!/bin/sh
# Installs what clattn needs on Debian 12 or Ubuntu 24.04 (compiler, meson,
# OpenCL headers and loader, CLBlast, cmocka, and PoCL as a CPU device), then
# configures and builds it in build/. Running it again skips apt when nothing
# is missing.
set -eu

cd "$(dirname "$0")/.."

packages="gcc libc6-dev meson ninja-build pkg-config ocl-icd-opencl-dev
opencl-c-headers libclblast-dev libcmocka-dev pocl-opencl-icd"

missing=""
for p in $packages; do
    status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
    if [ "$status" != "install ok installed" ]; then
        missing="$missing $p"
    fi
done

if [ -n "$missing" ]; then
    if [ "$(id -u)" -eq 0 ]; then
        sudo=""
    elif command -v sudo >/dev/null 2>&1; then
        sudo="sudo"
    else
        echo "setup.sh: need root or sudo to install:$missing" >&2
        exit 1
    fi

    echo "setup.sh: installing$missing"
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get update
    # The package names are meant to split into words here.
    # shellcheck disable=SC2086
    $sudo env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y --no-install-recommends $missing
fi

if [ -d build/meson-private ]; then
    meson setup --reconfigure build
else
    meson setup build
fi
ninja -C build

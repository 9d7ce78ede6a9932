#!/usr/bin/env bash
# Builds the device packages of iotjobsd into target/ (or $CARGO_TARGET_DIR):
#   target/debian/iotjobsd_<version>-1_<arch>.deb
#   target/generate-rpm/iotjobsd-<version>-1.<arch>.rpm
# Installs cargo-deb and cargo-generate-rpm (pinned, --locked) when missing, builds the
# daemon in release WITHOUT the `local` feature (the device must not carry the local
# service) and packs both. Idempotent; prints the package paths, one per line, last.
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_DEB_VERSION=3.8.0
CARGO_GENERATE_RPM_VERSION=0.21.1

# Installs $1 at version $2 unless that exact version is already there.
ensure_tool() {
    local crate=$1 version=$2 have=
    if command -v "$crate" >/dev/null 2>&1; then
        have=$(cargo install --list | sed -n "s/^$crate v\([^:]*\):.*/\1/p")
    fi
    if [ "$have" != "$version" ]; then
        echo "build.sh: installing $crate $version" >&2
        cargo install --locked --quiet "$crate@$version" >&2
    fi
}
ensure_tool cargo-deb "$CARGO_DEB_VERSION"
ensure_tool cargo-generate-rpm "$CARGO_GENERATE_RPM_VERSION"

echo "build.sh: cargo build --release --no-default-features --bin iotjobsd" >&2
cargo build --locked --release --no-default-features --bin iotjobsd >&2

# --no-build: cargo-deb would otherwise rebuild with its own idea of features.
deb=$(cargo deb --locked --no-build --quiet)
target_dir=${CARGO_TARGET_DIR:-target}
rm -f "$target_dir"/generate-rpm/iotjobsd-*.rpm
cargo generate-rpm >&2
rpm=$(realpath "$target_dir"/generate-rpm/iotjobsd-*.rpm)

echo "$deb"
echo "$rpm"

#!/usr/bin/env bash
# Publish readiness of the library crates (called by scripts/test.sh):
#  * the toolchain that builds everything here is the declared rust-version (MSRV),
#  * the packaged files are source, docs and licenses only (no test data, no
#    secrets, nothing from target/ or the service),
#  * `cargo publish --dry-run` packages and builds both crates together, tierstamp-axum
#    against the packaged tierstamp (nothing is uploaded).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

CRATES=(tierstamp tierstamp-axum)

declared=$(sed -n 's/^rust-version = "\(.*\)"/\1/p' Cargo.toml)
built=$(rustc --version | sed -n 's/^rustc \([0-9]*\.[0-9]*\).*/\1/p')
if [[ -z $declared || $declared != "$built" ]]; then
    echo "rust-version \"$declared\" in Cargo.toml, but the toolchain is $built" >&2
    exit 1
fi
echo "    MSRV: rust-version $declared = the toolchain every step builds with" >&2

# Anything outside this list fails the check until someone decides it belongs.
allowed='^(Cargo\.toml|Cargo\.toml\.orig|Cargo\.lock|\.cargo_vcs_info\.json|README\.md|LICENSE-MIT|LICENSE-APACHE|src/[A-Za-z0-9_/]+\.(rs|lua)|(examples|tests|benches)/[A-Za-z0-9_/]+\.rs)$'
for crate in "${CRATES[@]}"; do
    files=$(cargo package --list --allow-dirty -p "$crate")
    unexpected=$(grep -Ev "$allowed" <<<"$files" || true)
    if [[ -n $unexpected ]]; then
        printf 'unexpected files in the %s package:\n%s\n' "$crate" "$unexpected" >&2
        exit 1
    fi
    for required in README.md LICENSE-MIT LICENSE-APACHE; do
        grep -qx "$required" <<<"$files" || { echo "$crate package lacks $required" >&2; exit 1; }
    done
    echo "    $crate: $(wc -l <<<"$files") files, all source, docs or licenses" >&2
done

# --allow-dirty: a local run with uncommitted work checks what would be packaged.
packages=()
for crate in "${CRATES[@]}"; do packages+=(-p "$crate"); done
log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo publish --dry-run --allow-dirty "${packages[@]}" 2>&1 | tee "$log"
# A dry run only warns when a name belongs to someone else; say it louder. Not a
# failure: the packaging and the build are what this step checks.
if grep -q 'already exists on crates.io index' "$log"; then
    echo "    NOTE: $(grep -o 'crate [^ ]* already exists on crates.io index' "$log" | sort -u | paste -sd';' -)" >&2
    echo "    (an unrelated crate owns the name: a real publish needs a new name)" >&2
fi

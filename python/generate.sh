#!/usr/bin/env bash
# Regenerates probe-user/src/python/layouts.rs from the headers of the installed CPythons.
#
# Usage: python/generate.sh [OUTPUT]   (default: probe-user/src/python/layouts.rs)
# Needs a C compiler (cc) and pyenv interpreters 3.8-3.13 with their headers
# ($PYENV_ROOT, or `pyenv root`, or ~/.pyenv). Each version's row comes from compiling
# python/offsets.c against that version's own include/python3.X (with -DPy_BUILD_CORE, so the
# internal pycore_*.h headers are usable), linking it against that version's libpython, and
# running it.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
out="${1:-$here/../probe-user/src/python/layouts.rs}"
root="${PYENV_ROOT:-$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

{
    echo "//! CPython struct layouts, one row per minor version. GENERATED: do not edit."
    echo "//!"
    echo "//! Regenerate with \`python/generate.sh\` (compiles python/offsets.c against each"
    echo "//! installed CPython's own headers and prints offsetof/sizeof of every field used)."
    echo
    echo "use super::offsets::{"
    echo "    DebugOffsetsLayout, InstrKind, LineTableKind, LongTag, ManagedDict, PyLayout,"
    echo "};"
    for minor in 8 9 10 11 12 13; do
        dir="$(ls -d "$root"/versions/3."$minor".* 2>/dev/null | sort -V | tail -n 1 || true)"
        inc="$dir/include/python3.$minor"
        if [ -z "$dir" ] || [ ! -d "$inc/internal" ]; then
            echo "generate.sh: no CPython 3.$minor with internal headers under $root/versions" >&2
            exit 1
        fi
        # Linked against its libpython: before 3.11 the dict internals are in no header, so
        # the program starts that interpreter and measures real dicts (see offsets.c).
        cc -O0 -w -I"$inc" -I"$inc/internal" -o "$work/offsets-3.$minor" "$here/offsets.c" \
            -L"$dir/lib" -lpython3."$minor" -Wl,-rpath,"$dir/lib"
        echo
        echo "/// CPython 3.$minor (from $(basename "$dir") headers)."
        PYTHONHOME="$dir" "$work/offsets-3.$minor" | sed '/^pub(crate) const DEBUG/i\
\
/// Where the values probe reads sit inside `_Py_DebugOffsets` of CPython 3.'"$minor"'.'
    done
} > "$work/layouts.rs"
mv "$work/layouts.rs" "$out"

#!/usr/bin/env bash
# fast/isolate_isa_objects.sh ARCHIVE — run after libplx_fast.a is built (fast/CMakeLists.txt).
#
# tiles_avx512.cpp and tiles_amx.cpp are compiled with -mavx512* / -mamx-*, so every inline
# function of a shared header they emit out of line (std::vector's constructors, Eigen, plx's
# headers) carries AVX-512 instructions. Such functions are weak COMDAT symbols: the linker keeps
# one copy per name for the whole program, and may keep the AVX-512 copy for a caller in the
# portable code, which then dies with SIGILL on a CPU without AVX-512 (seen in the ASan build:
# std::vector<float>(n) from the generic decode). This renames, in those two members only, every
# weak function symbol and COMDAT group signature outside their own ISA namespace (plx::fast::avx512 / plx::fast::amx) to a
# name private to the member, so only the member's own code calls its copies. A renamed symbol
# that another object needed would fail the link, never run the wrong code.
set -euo pipefail
A=$(realpath "$1")
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"
for m in tiles_avx512.cpp.o tiles_amx.cpp.o; do
  ar x "$A" "$m"
  tag=${m%%.*}
  # the weak functions, and the COMDAT groups' signatures (the linker keeps one group per
  # signature: ours must not stand in for, or be dropped in favour of, a portable object's group)
  { nm --defined-only "$m" | awk '$2 == "W" {print $3}'
    readelf -gW "$m" | sed -n "s/^COMDAT group section \[ *[0-9]*\] \`.group' \[\(.*\)\] contains.*/\1/p"; } |
    grep -vE '3plx4fast(6avx512|3amx)' | sort -u | awk -v t="$tag" '{print $1, $1 ".plx_" t}' > rename.txt || true
  if [ -s rename.txt ]; then
    objcopy --redefine-syms=rename.txt "$m"
    ar r "$A" "$m"
  fi
done

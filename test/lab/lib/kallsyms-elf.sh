#!/usr/bin/env bash
# Turn a Linux /proc/kallsyms into an ELF that gdb can load as a symbol file, so that
# a guest of the same kernel image shows function names (`bt`, `x/4i $pc`,
# `break do_sys_open`). Debian ships no usable System.map and its -dbg package is 1 GB;
# a PV kernel runs at its link address, and a PVH one is entered past the decompressor
# (no KASLR), so dom0's kallsyms names the guests' addresses too.
#
# Only kernel text symbols (t, T, w, W; not modules') go in, as section-relative
# symbols of one NOBITS .text section spanning them: gdb takes them as functions and
# reads the code itself from the target.
#
# usage: kallsyms-elf.sh KALLSYMS OUT.elf
set -euo pipefail
in=$1 out=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# address type name, text only, no [module] symbols, names ld can take, first of each name
awk 'NF == 3 && $2 ~ /^[tTwW]$/ && $3 ~ /^[A-Za-z_][A-Za-z0-9_.$]*$/ && !seen[$3]++ { print $1, $3 }' "$in" \
  | LC_ALL=C sort > "$work/syms"
[ -s "$work/syms" ] || { echo "kallsyms-elf: no text symbols in $in (kptr_restrict?)" >&2; exit 1; }
lo=$(head -1 "$work/syms" | cut -d' ' -f1)
hi=$(tail -1 "$work/syms" | cut -d' ' -f1)
[ "$lo" != 0000000000000000 ] || { echo "kallsyms-elf: addresses are zero in $in (read it as root)" >&2; exit 1; }

{
  echo "SECTIONS {"
  echo "  .text 0x$lo (NOLOAD) : {"
  # section-relative values: ld adds the section's address
  awk -v lo="$lo" '
    function hex(s,   i, c, v) { v = 0; s = tolower(s); for (i = 1; i <= length(s); i++) { c = index("0123456789abcdef", substr(s, i, 1)) - 1; v = v * 16 + c } return v }
    BEGIN { base = hex(substr(lo, 9)) }
    # all kernel text lies in one 4 GiB window: compare the low 32 bits only (awk doubles)
    { printf "    %s = 0x%x;\n", $2, hex(substr($1, 9)) - base }' "$work/syms"
  awk -v lo="$lo" -v hi="$hi" '
    function hex(s,   i, c, v) { v = 0; s = tolower(s); for (i = 1; i <= length(s); i++) { c = index("0123456789abcdef", substr(s, i, 1)) - 1; v = v * 16 + c } return v }
    BEGIN { printf "    . = 0x%x;\n", hex(substr(hi, 9)) - hex(substr(lo, 9)) + 16 }'
  echo "  }"
  echo "}"
} > "$work/syms.ld"
if [ "${lo:0:8}" != "${hi:0:8}" ]; then
  echo "kallsyms-elf: text spans more than 4 GiB ($lo..$hi)" >&2; exit 1
fi
echo '.text' > "$work/empty.s"
as --64 -o "$work/empty.o" "$work/empty.s"
ld -m elf_x86_64 -T "$work/syms.ld" -o "$out.tmp" "$work/empty.o"
mv "$out.tmp" "$out"
echo "kallsyms-elf: $(wc -l < "$work/syms") symbols, 0x$lo..0x$hi -> $out" >&2

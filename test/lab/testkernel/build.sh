#!/bin/sh
# Build the gdbsx test kernels:
#   test/lab/testkernel/build/testkernel64.elf
#   test/lab/testkernel/build/testkernel32.elf
# Needs gcc, binutils (as, ld) and make; nothing else (no libc, no libgcc,
# no gcc-multilib: the 32-bit build is freestanding and includes no system
# header). make only rebuilds what is out of date.
# Usage: build.sh [make args, e.g. clean]
set -eu
here=$(cd "$(dirname "$0")" && pwd)
for tool in gcc ld make; do
    command -v "$tool" >/dev/null 2>&1 || {
        echo "testkernel: '$tool' not found (apt-get install gcc binutils make)" >&2
        exit 1
    }
done
exec make -C "$here" --no-print-directory "$@"

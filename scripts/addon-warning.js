// The addon is only needed on a real dom0; the simulated Xen works without it.
console.warn('gdbsx: the native Xen addon did not build; --sim still works. Rebuild with `npx node-gyp rebuild` on a dom0.');

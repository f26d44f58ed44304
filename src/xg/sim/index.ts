// The simulated Xen hypervisor (see docs/sim.md).
export { SimXen, defaultGuestImage } from './simxen';
export type { CreateDomainOptions, GuestLayout, ShutdownName, SimDomainState, SimEvent, SimRegisters, SimXenOptions } from './simxen';
export { MemoryMap } from './loader';

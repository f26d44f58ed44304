// The binary interface with the Linux Xen drivers and the hypervisor: the only
// numbers and layouts this addon depends on. Written from the public headers
// (Linux include/uapi/xen/privcmd.h and evtchn.h, Xen xen/include/public/xen.h);
// abi_check.cc compares them with the system's copies when those are installed.
#pragma once

#include <sys/ioctl.h>

#include <cstddef>
#include <cstdint>

namespace xg {

// struct privcmd_hypercall: the argument of IOCTL_PRIVCMD_HYPERCALL. The kernel
// loads op and arg[0..4] into the hypercall registers and returns Xen's result
// (a negative Xen errno becomes ioctl() == -1 with errno set).
struct PrivcmdHypercall {
  uint64_t op;
  uint64_t arg[5];
};
static_assert(sizeof(PrivcmdHypercall) == 48, "struct privcmd_hypercall is 48 bytes");
static_assert(offsetof(PrivcmdHypercall, arg) == 8, "privcmd_hypercall.arg[0] is at offset 8");

// struct ioctl_evtchn_bind_virq / ioctl_evtchn_unbind: one unsigned int each.
struct EvtchnBindVirq {
  uint32_t virq;
};
struct EvtchnUnbind {
  uint32_t port;
};
static_assert(sizeof(EvtchnBindVirq) == 4 && sizeof(EvtchnUnbind) == 4, "evtchn ioctl args are 4 bytes");

// _IOC(_IOC_NONE, type, nr, size): no direction bits, the size is still encoded.
constexpr unsigned long kIoctlPrivcmdHypercall = _IOC(_IOC_NONE, 'P', 0, sizeof(PrivcmdHypercall));
constexpr unsigned long kIoctlEvtchnBindVirq = _IOC(_IOC_NONE, 'E', 0, sizeof(EvtchnBindVirq));
constexpr unsigned long kIoctlEvtchnUnbind = _IOC(_IOC_NONE, 'E', 3, sizeof(EvtchnUnbind));

#if defined(__x86_64__) || defined(__i386__) || defined(__aarch64__) || defined(__arm__)
// _IOC_NONE is 0 on the architectures Xen runs dom0 on.
static_assert(kIoctlPrivcmdHypercall == 0x00305000, "IOCTL_PRIVCMD_HYPERCALL");
static_assert(kIoctlEvtchnBindVirq == 0x00044500, "IOCTL_EVTCHN_BIND_VIRQ");
static_assert(kIoctlEvtchnUnbind == 0x00044503, "IOCTL_EVTCHN_UNBIND");
#endif

// Hypercall numbers (xen/include/public/xen.h).
constexpr uint64_t kHypervisorXenVersion = 17;
constexpr uint64_t kHypervisorDomctl = 36;

// sizeof(struct xen_domctl) (xen/include/public/domctl.h): 16-byte header + 128-byte union.
constexpr size_t kDomctlSize = 144;
constexpr size_t kDomctlHeaderSize = 16;

constexpr uint32_t kVirqDebugger = 6;

// XEN_DOMCTL_gdbsx_guestmemio and the absolute offsets of its fields inside
// struct xen_domctl (for the length check in privcmd.cc and the loopback double).
constexpr uint32_t kDomctlGdbsxGuestMemio = 1000;
constexpr size_t kMemioPgd3val = 16, kMemioGva = 24, kMemioUva = 32, kMemioLen = 40, kMemioRemain = 48;

// Device paths.
constexpr const char* kPrivcmdPaths[] = {"/dev/xen/privcmd", "/proc/xen/privcmd"};
constexpr const char* kHypercallBufPath = "/dev/xen/hypercall";
constexpr const char* kEvtchnPath = "/dev/xen/evtchn";

}  // namespace xg

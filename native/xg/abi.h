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

// struct ioctl_evtchn_bind_interdomain: two unsigned ints; the ioctl returns the local port.
struct EvtchnBindInterdomain {
  uint32_t remote_domain;
  uint32_t remote_port;
};
static_assert(sizeof(EvtchnBindInterdomain) == 8, "struct ioctl_evtchn_bind_interdomain is 8 bytes");
static_assert(offsetof(EvtchnBindInterdomain, remote_port) == 4, "bind_interdomain.remote_port is at offset 4");

// struct ioctl_evtchn_notify: the local port to signal.
struct EvtchnNotify {
  uint32_t port;
};
static_assert(sizeof(EvtchnNotify) == 4, "struct ioctl_evtchn_notify is 4 bytes");

// Xen's frames are 4 KiB whatever the dom0 kernel's page size (XEN_PAGE_SIZE).
constexpr size_t kXenPageSize = 4096;
// xen_pfn_t: an unsigned long on x86_64, a uint64_t on Arm.
using XenPfn = uint64_t;

// struct privcmd_mmapbatch_v2: map `num` frames of `dom` at `addr`, the start of
// a VMA made by mmap() of the privcmd fd that the batch must cover exactly.
// `err[i]` receives 0 or -errno per frame (written only when some frame failed).
struct PrivcmdMmapBatchV2 {
  uint32_t num;
  uint16_t dom;  // domid_t
  uint64_t addr;
  const XenPfn* arr;
  int* err;
};

// struct privcmd_dm_op_buf / privcmd_dm_op: the kernel pins the user pages
// itself (so plain process memory will do) and refuses more than kDmOpMaxBufs
// buffers or any larger than kDmOpMaxBufSize with E2BIG (module parameters
// dm_op_max_nr_bufs and dm_op_buf_max_size, defaults 16 and 4096).
struct PrivcmdDmOpBuf {
  void* uptr;
  size_t size;
};
struct PrivcmdDmOp {
  uint16_t dom;  // domid_t
  uint16_t num;
  const PrivcmdDmOpBuf* ubufs;
};
constexpr size_t kDmOpMaxBufs = 16;
constexpr size_t kDmOpMaxBufSize = 4096;

#if UINTPTR_MAX == UINT64_MAX
// The layouts of a 64-bit dom0 (x86_64, aarch64).
static_assert(sizeof(PrivcmdMmapBatchV2) == 32, "struct privcmd_mmapbatch_v2 is 32 bytes");
static_assert(offsetof(PrivcmdMmapBatchV2, dom) == 4 && offsetof(PrivcmdMmapBatchV2, addr) == 8 &&
                  offsetof(PrivcmdMmapBatchV2, arr) == 16 && offsetof(PrivcmdMmapBatchV2, err) == 24,
              "privcmd_mmapbatch_v2: num@0 dom@4 addr@8 arr@16 err@24");
static_assert(sizeof(PrivcmdDmOpBuf) == 16 && offsetof(PrivcmdDmOpBuf, size) == 8,
              "privcmd_dm_op_buf: 16 bytes, uptr@0 size@8");
static_assert(sizeof(PrivcmdDmOp) == 16 && offsetof(PrivcmdDmOp, num) == 2 && offsetof(PrivcmdDmOp, ubufs) == 8,
              "privcmd_dm_op: 16 bytes, dom@0 num@2 ubufs@8");
#endif

// _IOC(_IOC_NONE, type, nr, size): no direction bits, the size is still encoded.
constexpr unsigned long kIoctlPrivcmdHypercall = _IOC(_IOC_NONE, 'P', 0, sizeof(PrivcmdHypercall));
constexpr unsigned long kIoctlPrivcmdMmapBatchV2 = _IOC(_IOC_NONE, 'P', 4, sizeof(PrivcmdMmapBatchV2));
constexpr unsigned long kIoctlPrivcmdDmOp = _IOC(_IOC_NONE, 'P', 5, sizeof(PrivcmdDmOp));
constexpr unsigned long kIoctlEvtchnBindVirq = _IOC(_IOC_NONE, 'E', 0, sizeof(EvtchnBindVirq));
constexpr unsigned long kIoctlEvtchnBindInterdomain = _IOC(_IOC_NONE, 'E', 1, sizeof(EvtchnBindInterdomain));
constexpr unsigned long kIoctlEvtchnUnbind = _IOC(_IOC_NONE, 'E', 3, sizeof(EvtchnUnbind));
constexpr unsigned long kIoctlEvtchnNotify = _IOC(_IOC_NONE, 'E', 4, sizeof(EvtchnNotify));

#if defined(__x86_64__) || defined(__i386__) || defined(__aarch64__) || defined(__arm__)
// _IOC_NONE is 0 on the architectures Xen runs dom0 on.
static_assert(kIoctlPrivcmdHypercall == 0x00305000, "IOCTL_PRIVCMD_HYPERCALL");
static_assert(kIoctlEvtchnBindVirq == 0x00044500, "IOCTL_EVTCHN_BIND_VIRQ");
static_assert(kIoctlEvtchnBindInterdomain == 0x00084501, "IOCTL_EVTCHN_BIND_INTERDOMAIN");
static_assert(kIoctlEvtchnUnbind == 0x00044503, "IOCTL_EVTCHN_UNBIND");
static_assert(kIoctlEvtchnNotify == 0x00044504, "IOCTL_EVTCHN_NOTIFY");
#endif
#if defined(__x86_64__) || defined(__aarch64__)
static_assert(kIoctlPrivcmdMmapBatchV2 == 0x00205004, "IOCTL_PRIVCMD_MMAPBATCH_V2");
static_assert(kIoctlPrivcmdDmOp == 0x00105005, "IOCTL_PRIVCMD_DM_OP");
#endif

// Hypercall numbers (xen/include/public/xen.h).
constexpr uint64_t kHypervisorMemoryOp = 12;
constexpr uint64_t kHypervisorXenVersion = 17;
constexpr uint64_t kHypervisorEventChannelOp = 32;
constexpr uint64_t kHypervisorHvmOp = 34;
constexpr uint64_t kHypervisorDomctl = 36;
constexpr uint64_t kHypervisorDmOp = 41;

// DOMID_INVALID (xen.h): the loopback double's "no such domain".
constexpr uint16_t kDomidInvalid = 0x7ff4;

// memory_op commands that take a struct xen_memory_reservation (32 bytes:
// extent_start handle @0, nr_extents u64 @8, extent_order u32 @16,
// mem_flags u32 @20, domid u16 @24): XENMEM_increase_reservation,
// XENMEM_decrease_reservation, XENMEM_populate_physmap. Xen reads (and, for
// increase, writes) nr_extents 8-byte entries at extent_start. The low 6 bits
// of cmd are the command, the rest the extent to start from (MEMOP_EXTENT_SHIFT).
constexpr uint32_t kXenmemIncreaseReservation = 0, kXenmemDecreaseReservation = 1, kXenmemPopulatePhysmap = 6;
constexpr uint64_t kMemopCmdMask = 0x3f;
constexpr size_t kReservationSize = 32, kReservationExtentStart = 0, kReservationNrExtents = 8,
                 kReservationDomid = 24;

// EVTCHNOP_status and struct evtchn_status (24 bytes: dom u16 @0, port u32 @4,
// status u32 @8, vcpu u32 @12, union u @16), for the loopback double.
constexpr uint64_t kEvtchnopStatus = 5;
constexpr size_t kEvtchnStatusPort = 4, kEvtchnStatusStatus = 8, kEvtchnStatusVcpu = 12, kEvtchnStatusU = 16;
constexpr uint32_t kEvtchnStatInterdomain = 2;

// hvm_op commands (xen/include/public/hvm/hvm_op.h) and struct xen_hvm_param
// (16 bytes: domid u16 @0, index u32 @4, value u64 @8), for the loopback double.
constexpr uint64_t kHvmopSetParam = 0, kHvmopGetParam = 1;
constexpr size_t kHvmParamSize = 16, kHvmParamDomid = 0, kHvmParamIndex = 4, kHvmParamValue = 8;

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

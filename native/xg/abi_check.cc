// Compile-time cross-check of abi.h against the system's Xen headers, when the
// build machine has them (Debian/Ubuntu: libxen-dev). Nothing here ends up in
// the binary; without the headers only abi.h's own static_asserts apply.
#include "abi.h"

#if __has_include(<xen/xen.h>) && __has_include(<xen/sys/privcmd.h>) && __has_include(<xen/sys/evtchn.h>)
#define __XEN_TOOLS__ 1  // domctl.h is tools-only
#include <xen/xen.h>  // domid_t, needed by the two headers below
#include <xen/sys/evtchn.h>
#include <xen/sys/privcmd.h>

static_assert(xg::kIoctlPrivcmdHypercall == IOCTL_PRIVCMD_HYPERCALL, "IOCTL_PRIVCMD_HYPERCALL differs");
static_assert(sizeof(xg::PrivcmdHypercall) == sizeof(privcmd_hypercall_t), "privcmd_hypercall size differs");
static_assert(xg::kIoctlEvtchnBindVirq == IOCTL_EVTCHN_BIND_VIRQ, "IOCTL_EVTCHN_BIND_VIRQ differs");
static_assert(xg::kIoctlEvtchnUnbind == IOCTL_EVTCHN_UNBIND, "IOCTL_EVTCHN_UNBIND differs");
static_assert(xg::kHypervisorDomctl == __HYPERVISOR_domctl, "__HYPERVISOR_domctl differs");
static_assert(xg::kHypervisorXenVersion == __HYPERVISOR_xen_version, "__HYPERVISOR_xen_version differs");
static_assert(xg::kVirqDebugger == VIRQ_DEBUGGER, "VIRQ_DEBUGGER differs");
static_assert(xg::kHypervisorMemoryOp == __HYPERVISOR_memory_op, "__HYPERVISOR_memory_op differs");
static_assert(xg::kHypervisorHvmOp == __HYPERVISOR_hvm_op, "__HYPERVISOR_hvm_op differs");
static_assert(xg::kHypervisorEventChannelOp == __HYPERVISOR_event_channel_op, "__HYPERVISOR_event_channel_op differs");
#if __has_include(<xen/event_channel.h>)
#include <xen/event_channel.h>
static_assert(xg::kEvtchnopStatus == EVTCHNOP_status, "EVTCHNOP_status differs");
static_assert(offsetof(evtchn_status_t, port) == xg::kEvtchnStatusPort && offsetof(evtchn_status_t, status) == xg::kEvtchnStatusStatus &&
                  offsetof(evtchn_status_t, vcpu) == xg::kEvtchnStatusVcpu && offsetof(evtchn_status_t, u) == xg::kEvtchnStatusU,
              "struct evtchn_status differs");
#endif
static_assert(xg::kDomidInvalid == DOMID_INVALID, "DOMID_INVALID differs");

// Foreign mappings.
static_assert(xg::kIoctlPrivcmdMmapBatchV2 == IOCTL_PRIVCMD_MMAPBATCH_V2, "IOCTL_PRIVCMD_MMAPBATCH_V2 differs");
static_assert(sizeof(xg::PrivcmdMmapBatchV2) == sizeof(privcmd_mmapbatch_v2_t), "privcmd_mmapbatch_v2 size differs");
static_assert(offsetof(xg::PrivcmdMmapBatchV2, dom) == offsetof(privcmd_mmapbatch_v2_t, dom) &&
                  offsetof(xg::PrivcmdMmapBatchV2, addr) == offsetof(privcmd_mmapbatch_v2_t, addr) &&
                  offsetof(xg::PrivcmdMmapBatchV2, arr) == offsetof(privcmd_mmapbatch_v2_t, arr) &&
                  offsetof(xg::PrivcmdMmapBatchV2, err) == offsetof(privcmd_mmapbatch_v2_t, err),
              "privcmd_mmapbatch_v2 field offsets differ");
static_assert(sizeof(xg::XenPfn) == sizeof(xen_pfn_t), "xen_pfn_t size differs");

// Interdomain event channels.
static_assert(xg::kIoctlEvtchnBindInterdomain == IOCTL_EVTCHN_BIND_INTERDOMAIN, "IOCTL_EVTCHN_BIND_INTERDOMAIN differs");
static_assert(sizeof(xg::EvtchnBindInterdomain) == sizeof(struct ioctl_evtchn_bind_interdomain),
              "ioctl_evtchn_bind_interdomain size differs");
static_assert(offsetof(xg::EvtchnBindInterdomain, remote_port) == offsetof(struct ioctl_evtchn_bind_interdomain, remote_port),
              "ioctl_evtchn_bind_interdomain.remote_port offset differs");
static_assert(xg::kIoctlEvtchnNotify == IOCTL_EVTCHN_NOTIFY, "IOCTL_EVTCHN_NOTIFY differs");

// dm_op arrived with Xen 4.9 and Linux 4.11; older headers lack it.
#ifdef IOCTL_PRIVCMD_DM_OP
static_assert(xg::kIoctlPrivcmdDmOp == IOCTL_PRIVCMD_DM_OP, "IOCTL_PRIVCMD_DM_OP differs");
static_assert(sizeof(xg::PrivcmdDmOp) == sizeof(privcmd_dm_op_t), "privcmd_dm_op size differs");
static_assert(offsetof(xg::PrivcmdDmOp, num) == offsetof(privcmd_dm_op_t, num) &&
                  offsetof(xg::PrivcmdDmOp, ubufs) == offsetof(privcmd_dm_op_t, ubufs),
              "privcmd_dm_op field offsets differ");
static_assert(sizeof(xg::PrivcmdDmOpBuf) == sizeof(privcmd_dm_op_buf_t) &&
                  offsetof(xg::PrivcmdDmOpBuf, size) == offsetof(privcmd_dm_op_buf_t, size),
              "privcmd_dm_op_buf layout differs");
#endif
#ifdef __HYPERVISOR_dm_op
static_assert(xg::kHypervisorDmOp == __HYPERVISOR_dm_op, "__HYPERVISOR_dm_op differs");
#endif

#if __has_include(<xen/domctl.h>)
#include <xen/domctl.h>
static_assert(xg::kDomctlSize == sizeof(struct xen_domctl), "sizeof(struct xen_domctl) differs");
static_assert(xg::kDomctlHeaderSize == offsetof(struct xen_domctl, u), "xen_domctl.u offset differs");
static_assert(xg::kDomctlGdbsxGuestMemio == XEN_DOMCTL_gdbsx_guestmemio, "XEN_DOMCTL_gdbsx_guestmemio differs");
static_assert(xg::kMemioGva == 16 + offsetof(struct xen_domctl_gdbsx_memio, gva), "memio.gva offset differs");
static_assert(xg::kMemioUva == 16 + offsetof(struct xen_domctl_gdbsx_memio, uva), "memio.uva offset differs");
static_assert(xg::kMemioLen == 16 + offsetof(struct xen_domctl_gdbsx_memio, len), "memio.len offset differs");
static_assert(xg::kMemioRemain == 16 + offsetof(struct xen_domctl_gdbsx_memio, remain), "memio.remain offset differs");
// The vcpu context guest handle src/xg/domctl.ts writes at absolute offset 24.
static_assert(16 + offsetof(struct xen_domctl_vcpucontext, ctxt) == 24, "vcpucontext.ctxt offset differs");
#endif

#if __has_include(<xen/memory.h>)
#include <xen/memory.h>
static_assert(xg::kXenmemIncreaseReservation == XENMEM_increase_reservation, "XENMEM_increase_reservation differs");
static_assert(xg::kXenmemDecreaseReservation == XENMEM_decrease_reservation, "XENMEM_decrease_reservation differs");
static_assert(xg::kXenmemPopulatePhysmap == XENMEM_populate_physmap, "XENMEM_populate_physmap differs");
static_assert(xg::kReservationSize == sizeof(struct xen_memory_reservation), "xen_memory_reservation size differs");
static_assert(xg::kReservationExtentStart == offsetof(struct xen_memory_reservation, extent_start) &&
                  xg::kReservationNrExtents == offsetof(struct xen_memory_reservation, nr_extents) &&
                  xg::kReservationDomid == offsetof(struct xen_memory_reservation, domid),
              "xen_memory_reservation field offsets differ");
#endif

#if __has_include(<xen/hvm/params.h>) && __has_include(<xen/hvm/hvm_op.h>)
#include <xen/hvm/hvm_op.h>
static_assert(xg::kHvmopSetParam == HVMOP_set_param && xg::kHvmopGetParam == HVMOP_get_param, "HVMOP_*_param differ");
static_assert(xg::kHvmParamSize == sizeof(struct xen_hvm_param) &&
                  xg::kHvmParamIndex == offsetof(struct xen_hvm_param, index) &&
                  xg::kHvmParamValue == offsetof(struct xen_hvm_param, value),
              "xen_hvm_param layout differs");
#endif
#endif

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
#endif

// Privcmd: one open /dev/xen/privcmd and its cached hypercall buffer.
//   domctl(op: Buffer(144), data?: Buffer, handleOffset?: number): number
//   xenVersion(cmd: number, arg?: Buffer): number
//   hvmOp(cmd: number, arg: Buffer): number
//   eventChannelOp(cmd: number, arg: Buffer): number
//   memoryOp(cmd: number, arg: Buffer, data?: Buffer, handleOffset?: number): number
//   dmOp(domid: number, bufs: Buffer[]): number
//   mapForeign(domid: number, frames: BigUint64Array, writable: boolean): ForeignMapping (foreign.cc)
//   close(); .path; .bufferKind
#include <fcntl.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string>

#include "abi.h"
#include "common.h"
#include "hcbuf.h"

namespace xg {
namespace {

// Layout of the hypercall buffer: the domctl struct in the first page, the
// caller's data from the second page on. The data area is never smaller than
// kMinDataArea, because Xen writes the size *it* expects (a 5168-byte vcpu
// context, a 1024-byte capabilities string) whatever the JS buffer's length.
constexpr size_t kMinDataArea = 16 * 1024;
// The largest data buffer accepted (memio lengths are 32-bit; keep it sane).
constexpr size_t kMaxData = 256 * 1024 * 1024;

// The handle is a 64-bit field inside the union, so 8-aligned within it.
constexpr int64_t kMinHandleOffset = kDomctlHeaderSize;
constexpr int64_t kMaxHandleOffset = kDomctlSize - sizeof(uint64_t);
// The most frames one mapForeign() takes (4 GiB of guest memory).
constexpr size_t kMaxForeignFrames = size_t{1} << 20;
// The loopback's HVM parameter table (HVM_NR_PARAMS is below this).
constexpr size_t kLoopbackHvmParams = 64;

// What a call copies into the hypercall buffer and back: `op` (at most a page)
// into the first page, `data` into the data area. With both, the data copy's
// address goes at `handle_offset` in the op copy, and the caller's own 8 bytes
// there are restored when the op is copied back.
struct Bounce {
  bool has_op = false;
  Napi::Buffer<uint8_t> op;
  bool has_data = false;
  Napi::Buffer<uint8_t> data;
  size_t handle_offset = 0;
};

// Parses the optional `data, handleOffset` pair at info[i], info[i + 1] into `b`.
void ParseData(const Napi::CallbackInfo& info, size_t i, int64_t min_offset, int64_t max_offset, const std::string& what,
               Bounce& b) {
  Napi::Env env = info.Env();
  b.has_data = !info[i].IsUndefined() && !info[i].IsNull();
  if (b.has_data) {
    if (!info[i].IsBuffer()) throw Napi::TypeError::New(env, what + ": data must be a Buffer");
    b.data = info[i].As<Napi::Buffer<uint8_t>>();
    if (b.data.Length() > kMaxData) throw Napi::TypeError::New(env, what + ": data is larger than 256 MiB");
    b.handle_offset = static_cast<size_t>(IntegerArg(info[i + 1], min_offset, max_offset, (what + ": handleOffset").c_str()));
    if (b.handle_offset % 8 != 0) throw Napi::TypeError::New(env, what + ": handleOffset must be a multiple of 8");
  } else if (!info[i + 1].IsUndefined()) {
    throw Napi::TypeError::New(env, what + ": handleOffset given without a data buffer");
  }
}

class Privcmd : public Napi::ObjectWrap<Privcmd> {
 public:
  // JS: new Privcmd(path: string, loopback: boolean); only created by open() / _openLoopback().
  explicit Privcmd(const Napi::CallbackInfo& info);
  ~Privcmd() override { Close(); }

  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "Privcmd",
                       {
                           InstanceMethod<&Privcmd::Domctl>("domctl"),
                           InstanceMethod<&Privcmd::XenVersion>("xenVersion"),
                           InstanceMethod<&Privcmd::HvmOp>("hvmOp"),
                           InstanceMethod<&Privcmd::EventChannelOp>("eventChannelOp"),
                           InstanceMethod<&Privcmd::MemoryOp>("memoryOp"),
                           InstanceMethod<&Privcmd::DmOp>("dmOp"),
                           InstanceMethod<&Privcmd::MapForeignJs>("mapForeign"),
                           InstanceMethod<&Privcmd::CloseJs>("close"),
                           InstanceAccessor<&Privcmd::Path>("path"),
                           InstanceAccessor<&Privcmd::BufferKind>("bufferKind"),
                       });
  }

 private:
  Napi::Value Domctl(const Napi::CallbackInfo& info);
  Napi::Value XenVersion(const Napi::CallbackInfo& info);
  Napi::Value HvmOp(const Napi::CallbackInfo& info);
  Napi::Value EventChannelOp(const Napi::CallbackInfo& info);
  Napi::Value MemoryOp(const Napi::CallbackInfo& info);
  Napi::Value DmOp(const Napi::CallbackInfo& info);
  Napi::Value MapForeignJs(const Napi::CallbackInfo& info);
  Napi::Value CloseJs(const Napi::CallbackInfo& info) {
    Close();
    return info.Env().Undefined();
  }
  Napi::Value Path(const Napi::CallbackInfo& info) { return Napi::String::New(info.Env(), path_); }
  Napi::Value BufferKind(const Napi::CallbackInfo& info) { return Napi::String::New(info.Env(), buf_.kind()); }

  void Close();
  // Throws unless open; then makes the buffer hold the op page plus `data_len` bytes.
  uint8_t* Prepare(Napi::Env env, size_t data_len);
  // >= 0: the hypercall's result; < 0: -errno.
  long Issue(PrivcmdHypercall& hc);
  // Copies `b` in, calls issue(op copy address, data copy address) (which
  // sets the registers and calls Issue), copies `b` back whatever the result,
  // and returns issue's result.
  template <typename Issuer>
  long WithBuffers(Napi::Env env, const Bounce& b, Issuer issue);
  // __HYPERVISOR_hvm_op / memory_op: (cmd, address of the `arg` copy).
  Napi::Value TwoArg(const Napi::CallbackInfo& info, uint64_t nr, const char* what, bool with_data);
  long Loopback(const PrivcmdHypercall& hc);
  static long LoopbackDmOp(const PrivcmdDmOp& op);

  std::string path_;
  int fd_ = -1;
  int hcbuf_fd_ = -1;
  bool loopback_ = false;
  bool open_ = false;
  HypercallBuffer buf_;
  int loopback_guest_fd_ = -1;                   // created by the loopback's first mapForeign()
  uint64_t loopback_hvm_params_[kLoopbackHvmParams] = {};
};

Privcmd::Privcmd(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Privcmd>(info) {
  Napi::Env env = info.Env();
  loopback_ = info[1].ToBoolean();
  if (loopback_) {
    path_ = "<loopback>";
    open_ = true;
    return;
  }
  // Either the one path asked for, or the standard ones in order. Report the
  // first failure that is not ENOENT, else the first path's ENOENT.
  std::string asked = info[0].IsString() ? info[0].As<Napi::String>().Utf8Value() : "";
  int first_err = 0;
  std::string first_path;
  for (const std::string& candidate : {asked, std::string(kPrivcmdPaths[0]), std::string(kPrivcmdPaths[1])}) {
    if (candidate.empty()) continue;
    int fd = open(candidate.c_str(), O_RDWR | O_CLOEXEC);
    if (fd >= 0) {
      fd_ = fd;
      path_ = candidate;
      break;
    }
    int err = errno;
    if (first_err == 0 || (first_err == ENOENT && err != ENOENT)) {
      first_err = err;
      first_path = candidate;
    }
    if (!asked.empty()) break;  // an explicit path has no fallback
  }
  if (fd_ < 0) throw SysError(env, first_err, "open", first_path);

  // Optional: the hypercall-buffer device (Linux 4.18+). Without it, anonymous memory.
  hcbuf_fd_ = open(kHypercallBufPath, O_RDWR | O_CLOEXEC);
  buf_.SetDevice(hcbuf_fd_);
  open_ = true;
}

void Privcmd::Close() {
  buf_.Release();
  if (hcbuf_fd_ >= 0) close(hcbuf_fd_);
  if (fd_ >= 0) close(fd_);
  if (loopback_guest_fd_ >= 0) close(loopback_guest_fd_);  // its mappings keep their pages
  hcbuf_fd_ = fd_ = loopback_guest_fd_ = -1;
  open_ = false;
}

uint8_t* Privcmd::Prepare(Napi::Env env, size_t data_len) {
  if (!open_) throw Napi::Error::New(env, "privcmd: the device is closed");
  const size_t page = HypercallBuffer::PageSize();
  const size_t data_area = std::max(kMinDataArea, (data_len + page - 1) / page * page);
  if (int err = buf_.Reserve(page + data_area)) {
    throw SysError(env, err, "mmap", "anonymous MAP_LOCKED memory");
  }
  return buf_.data();
}

long Privcmd::Issue(PrivcmdHypercall& hc) {
  if (loopback_) return Loopback(hc);
  int r = ioctl(fd_, kIoctlPrivcmdHypercall, &hc);
  return r < 0 ? -errno : r;
}

template <typename Issuer>
long Privcmd::WithBuffers(Napi::Env env, const Bounce& b, Issuer issue) {
  const size_t page = HypercallBuffer::PageSize();
  const size_t op_len = b.has_op ? b.op.Length() : 0;  // callers keep it within a page
  const size_t len = b.has_data ? b.data.Length() : 0;
  uint8_t* hop = Prepare(env, len);
  uint8_t* hdata = hop + page;
  if (b.has_op) {
    std::memcpy(hop, b.op.Data(), op_len);
    // Xen reads the size *it* expects: zero what follows a short op (no stale data).
    std::memset(hop + op_len, 0, page - op_len);
  }
  if (b.has_data) {
    std::memcpy(hdata, b.data.Data(), len);
    // Zero the slack Xen may read beyond the caller's buffer (no stale data).
    if (len < kMinDataArea) std::memset(hdata + len, 0, kMinDataArea - len);
  }
  const bool handle = b.has_op && b.has_data;
  if (handle) {
    const uint64_t addr = AddressOf(hdata);
    std::memcpy(hop + b.handle_offset, &addr, sizeof addr);
  }

  const long r = issue(AddressOf(hop), AddressOf(hdata));

  // Copy back even on failure: a failed gdbsx memio read may have filled a
  // prefix. The handle field keeps the caller's bytes, not our address.
  if (b.has_op) {
    uint8_t saved_handle[sizeof(uint64_t)];
    if (handle) std::memcpy(saved_handle, b.op.Data() + b.handle_offset, sizeof saved_handle);
    std::memcpy(b.op.Data(), hop, op_len);
    if (handle) std::memcpy(b.op.Data() + b.handle_offset, saved_handle, sizeof saved_handle);
  }
  if (b.has_data) std::memcpy(b.data.Data(), hdata, len);
  return r;
}

Napi::Value Privcmd::Domctl(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsBuffer()) throw Napi::TypeError::New(env, "domctl: op must be a Buffer");
  Bounce b;
  b.has_op = true;
  b.op = info[0].As<Napi::Buffer<uint8_t>>();
  if (b.op.Length() != kDomctlSize) {
    throw Napi::TypeError::New(env, "domctl: op must be " + std::to_string(kDomctlSize) + " bytes (struct xen_domctl), got " +
                                        std::to_string(b.op.Length()));
  }
  ParseData(info, 1, kMinHandleOffset, kMaxHandleOffset, "domctl", b);

  // The one domctl whose buffer has a caller-chosen length: Xen copies memio.len
  // bytes at memio.uva, so that must be our copy of a buffer at least as long,
  // or Xen would write past it into this process.
  uint32_t cmd, memio_len;
  std::memcpy(&cmd, b.op.Data(), sizeof cmd);
  std::memcpy(&memio_len, b.op.Data() + kMemioLen, sizeof memio_len);
  if (cmd == kDomctlGdbsxGuestMemio && (!b.has_data || b.handle_offset != kMemioUva || memio_len > b.data.Length())) {
    throw Napi::TypeError::New(env, "domctl: gdbsx_guestmemio needs data at handleOffset 32 of at least memio.len bytes");
  }

  const long r = WithBuffers(env, b, [this](uint64_t op_addr, uint64_t) {
    PrivcmdHypercall hc{};
    hc.op = kHypervisorDomctl;
    hc.arg[0] = op_addr;
    return Issue(hc);
  });
  if (r < 0) throw SysError(env, static_cast<int>(-r), "ioctl", path_);
  return Napi::Number::New(env, static_cast<double>(r));
}

Napi::Value Privcmd::XenVersion(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const int64_t cmd = IntegerArg(info[0], 0, INT32_MAX, "xenVersion: cmd");
  Bounce b;  // the arg goes to the data area (at least 16 KiB); the op page is unused
  b.has_data = !info[1].IsUndefined() && !info[1].IsNull();
  if (b.has_data) {
    if (!info[1].IsBuffer()) throw Napi::TypeError::New(env, "xenVersion: arg must be a Buffer");
    b.data = info[1].As<Napi::Buffer<uint8_t>>();
    if (b.data.Length() > kMaxData) throw Napi::TypeError::New(env, "xenVersion: arg is larger than 256 MiB");
  }
  const long r = WithBuffers(env, b, [&](uint64_t, uint64_t data_addr) {
    PrivcmdHypercall hc{};
    hc.op = kHypervisorXenVersion;
    hc.arg[0] = static_cast<uint64_t>(cmd);
    hc.arg[1] = b.has_data ? data_addr : 0;
    return Issue(hc);
  });
  if (r < 0) throw SysError(env, static_cast<int>(-r), "ioctl", path_);
  return Napi::Number::New(env, static_cast<double>(r));
}

Napi::Value Privcmd::TwoArg(const Napi::CallbackInfo& info, uint64_t nr, const char* what, bool with_data) {
  Napi::Env env = info.Env();
  const std::string name = what;
  const auto cmd = static_cast<uint64_t>(IntegerArg(info[0], 0, UINT32_MAX, (name + ": cmd").c_str()));
  if (!info[1].IsBuffer()) throw Napi::TypeError::New(env, name + ": arg must be a Buffer");
  Bounce b;
  b.has_op = true;
  b.op = info[1].As<Napi::Buffer<uint8_t>>();
  const size_t page = HypercallBuffer::PageSize();
  if (b.op.Length() > page) {
    throw Napi::TypeError::New(env, name + ": arg must be at most " + std::to_string(page) + " bytes");
  }
  if (with_data) {
    if (!info[2].IsUndefined() && !info[2].IsNull() && b.op.Length() < sizeof(uint64_t)) {
      throw Napi::TypeError::New(env, name + ": arg is too short to hold a handle");
    }
    ParseData(info, 2, 0, static_cast<int64_t>(b.op.Length()) - 8, name, b);
  } else if (info.Length() > 2 && !info[2].IsUndefined()) {
    throw Napi::TypeError::New(env, name + ": takes no data buffer");
  }

  // The memory_ops with a caller-sized array: Xen reads (increase_reservation:
  // also writes) nr_extents 8-byte entries at extent_start. That must be our
  // copy of a buffer at least as long, or nothing (a null handle).
  const uint64_t sub = cmd & kMemopCmdMask;
  if (nr == kHypervisorMemoryOp &&
      (sub == kXenmemIncreaseReservation || sub == kXenmemDecreaseReservation || sub == kXenmemPopulatePhysmap)) {
    if (b.op.Length() < kReservationSize) {
      throw Napi::TypeError::New(env, name + ": this cmd takes a 32-byte struct xen_memory_reservation");
    }
    uint64_t nr_extents, extent_start;
    std::memcpy(&nr_extents, b.op.Data() + kReservationNrExtents, sizeof nr_extents);
    std::memcpy(&extent_start, b.op.Data() + kReservationExtentStart, sizeof extent_start);
    const bool ok = b.has_data ? b.handle_offset == kReservationExtentStart && nr_extents <= b.data.Length() / 8
                               : extent_start == 0;
    if (!ok) {
      throw Napi::TypeError::New(env, name + ": a reservation needs data at handleOffset 0 of at least 8 * nr_extents "
                                             "bytes, or no data and a null extent_start");
    }
  }

  const long r = WithBuffers(env, b, [&](uint64_t op_addr, uint64_t) {
    PrivcmdHypercall hc{};
    hc.op = nr;
    hc.arg[0] = cmd;
    hc.arg[1] = op_addr;
    return Issue(hc);
  });
  if (r < 0) throw SysError(env, static_cast<int>(-r), "ioctl", path_);
  return Napi::Number::New(env, static_cast<double>(r));
}

Napi::Value Privcmd::HvmOp(const Napi::CallbackInfo& info) { return TwoArg(info, kHypervisorHvmOp, "hvmOp", false); }

// __HYPERVISOR_event_channel_op(cmd, address of the `arg` copy), e.g. EVTCHNOP_status.
Napi::Value Privcmd::EventChannelOp(const Napi::CallbackInfo& info) {
  return TwoArg(info, kHypervisorEventChannelOp, "eventChannelOp", false);
}

Napi::Value Privcmd::MemoryOp(const Napi::CallbackInfo& info) {
  return TwoArg(info, kHypervisorMemoryOp, "memoryOp", true);
}

Napi::Value Privcmd::DmOp(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const auto dom = static_cast<uint16_t>(IntegerArg(info[0], 0, UINT16_MAX, "dmOp: domid"));
  if (!info[1].IsArray()) throw Napi::TypeError::New(env, "dmOp: bufs must be an array of Buffers");
  auto bufs = info[1].As<Napi::Array>();
  const uint32_t n = bufs.Length();
  for (uint32_t i = 0; i < n; i++) {
    if (!bufs.Get(i).IsBuffer()) throw Napi::TypeError::New(env, "dmOp: bufs[" + std::to_string(i) + "] must be a Buffer");
  }
  if (!open_) throw Napi::Error::New(env, "privcmd: the device is closed");
  // Refuse what Linux would refuse, before the call.
  if (n == 0) throw ErrnoError(env, EINVAL, "ioctl", "dmOp: no buffers (buffer 0 holds struct xen_dm_op)");
  if (n > kDmOpMaxBufs) {
    throw ErrnoError(env, E2BIG, "ioctl", "dmOp: " + std::to_string(n) + " buffers; privcmd takes at most " +
                                               std::to_string(kDmOpMaxBufs));
  }
  PrivcmdDmOpBuf ubufs[kDmOpMaxBufs] = {};
  for (uint32_t i = 0; i < n; i++) {
    auto buf = bufs.Get(i).As<Napi::Buffer<uint8_t>>();
    if (buf.Length() > kDmOpMaxBufSize) {
      throw ErrnoError(env, E2BIG, "ioctl", "dmOp: bufs[" + std::to_string(i) + "] is " + std::to_string(buf.Length()) +
                                                 " bytes; privcmd takes at most " + std::to_string(kDmOpMaxBufSize));
    }
    // Plain process memory: the kernel pins these pages for the call itself.
    ubufs[i].uptr = buf.Data();
    ubufs[i].size = buf.Length();
  }
  PrivcmdDmOp op{};
  op.dom = dom;
  op.num = static_cast<uint16_t>(n);
  op.ubufs = ubufs;
  long r;
  if (loopback_) {
    r = LoopbackDmOp(op);
  } else {
    r = ioctl(fd_, kIoctlPrivcmdDmOp, &op);
    if (r < 0) r = -errno;
  }
  if (r < 0) throw SysError(env, static_cast<int>(-r), "ioctl", path_);
  return Napi::Number::New(env, static_cast<double>(r));
}

Napi::Value Privcmd::MapForeignJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const auto dom = static_cast<uint16_t>(IntegerArg(info[0], 0, UINT16_MAX, "mapForeign: domid"));
  if (!info[1].IsTypedArray() || info[1].As<Napi::TypedArray>().TypedArrayType() != napi_biguint64_array) {
    throw Napi::TypeError::New(env, "mapForeign: frames must be a BigUint64Array");
  }
  auto frames = info[1].As<Napi::TypedArrayOf<uint64_t>>();
  const size_t n = frames.ElementLength();
  if (n == 0 || n > kMaxForeignFrames) {
    throw Napi::TypeError::New(env, "mapForeign: between 1 and " + std::to_string(kMaxForeignFrames) + " frames");
  }
  if (!info[2].IsBoolean()) throw Napi::TypeError::New(env, "mapForeign: writable must be a boolean");
  if (!open_) throw Napi::Error::New(env, "privcmd: the device is closed");
  if (loopback_ && loopback_guest_fd_ < 0) {
    const int fd = CreateLoopbackGuest();
    if (fd < 0) throw SysError(env, -fd, "memfd_create", "");
    loopback_guest_fd_ = fd;
  }
  const ForeignSource src{fd_, loopback_ ? loopback_guest_fd_ : -1, path_};
  return MapForeign(env, src, dom, frames.Data(), n, info[2].As<Napi::Boolean>().Value());
}

// A stand-in for the hypervisor, so that tests on machines without Xen can
// check what the addon hands over: it dereferences the addresses exactly as
// Xen would. Implements:
//   xen_version: returns 4.19; for cmd 1 (XENVER_extraversion) writes "-loopback".
//   domctl XEN_DOMCTL_gdbsx_guestmemio (read): fills uva[i] = (gva + i) & 0xff,
//     sets remain = 0 and returns uva (so tests can inspect that mapping); a
//     non-zero pgd3val N means "fault after N bytes": fills N bytes and fails
//     with EFAULT, leaving the struct alone, like Xen.
//   any other domctl: fails with the errno stored at offset 16, or returns 0.
//   hvm_op HVMOP_set_param / get_param: a table of 64 parameters per Privcmd;
//     an index past it is EINVAL, DOMID_INVALID is ESRCH, other cmds ENOSYS.
//   memory_op increase_reservation / decrease_reservation / populate_physmap:
//     walks extent_start[start_extent .. nr_extents) and returns the count done;
//     an entry of ~0 stops the walk there (partial success); increase writes
//     0x100000 + i into entry i (as Xen writes the MFNs back). A null
//     extent_start is EFAULT, DOMID_INVALID ESRCH, other cmds ENOSYS.
long Privcmd::Loopback(const PrivcmdHypercall& hc) {
  if (hc.op == kHypervisorXenVersion) {
    if (hc.arg[0] == 1 && hc.arg[1] != 0) {
      std::memcpy(reinterpret_cast<char*>(static_cast<uintptr_t>(hc.arg[1])), "-loopback", 10);
    }
    return (4 << 16) | 19;
  }
  if (hc.op == kHypervisorEventChannelOp) {
    // EVTCHNOP_status (5) only: port 0 and ports from 4096 are EINVAL; others answer
    // "interdomain to dom0's port + 100", so a test sees the struct read and written in place.
    if (hc.arg[0] != kEvtchnopStatus) return -ENOSYS;
    uint8_t* p = reinterpret_cast<uint8_t*>(static_cast<uintptr_t>(hc.arg[1]));
    uint32_t port;
    std::memcpy(&port, p + kEvtchnStatusPort, sizeof port);
    if (port == 0 || port >= 4096) return -EINVAL;
    const uint32_t status = kEvtchnStatInterdomain, vcpu = 0, remote_port = port + 100;
    const uint16_t remote_dom = 0;
    std::memcpy(p + kEvtchnStatusStatus, &status, sizeof status);
    std::memcpy(p + kEvtchnStatusVcpu, &vcpu, sizeof vcpu);
    std::memcpy(p + kEvtchnStatusU, &remote_dom, sizeof remote_dom);
    std::memcpy(p + kEvtchnStatusU + 4, &remote_port, sizeof remote_port);
    return 0;
  }
  if (hc.op == kHypervisorHvmOp) {
    if (hc.arg[0] != kHvmopSetParam && hc.arg[0] != kHvmopGetParam) return -ENOSYS;
    uint8_t* p = reinterpret_cast<uint8_t*>(static_cast<uintptr_t>(hc.arg[1]));
    uint16_t domid;
    uint32_t index;
    std::memcpy(&domid, p + kHvmParamDomid, sizeof domid);
    std::memcpy(&index, p + kHvmParamIndex, sizeof index);
    if (domid == kDomidInvalid) return -ESRCH;
    if (index >= kLoopbackHvmParams) return -EINVAL;
    if (hc.arg[0] == kHvmopSetParam) {
      std::memcpy(&loopback_hvm_params_[index], p + kHvmParamValue, sizeof(uint64_t));
    } else {
      std::memcpy(p + kHvmParamValue, &loopback_hvm_params_[index], sizeof(uint64_t));
    }
    return 0;
  }
  if (hc.op == kHypervisorMemoryOp) {
    const uint64_t sub = hc.arg[0] & kMemopCmdMask, start = hc.arg[0] >> 6;
    if (sub != kXenmemIncreaseReservation && sub != kXenmemDecreaseReservation && sub != kXenmemPopulatePhysmap) {
      return -ENOSYS;
    }
    uint8_t* r = reinterpret_cast<uint8_t*>(static_cast<uintptr_t>(hc.arg[1]));
    uint64_t handle, nr_extents;
    uint16_t domid;
    std::memcpy(&handle, r + kReservationExtentStart, sizeof handle);
    std::memcpy(&nr_extents, r + kReservationNrExtents, sizeof nr_extents);
    std::memcpy(&domid, r + kReservationDomid, sizeof domid);
    if (domid == kDomidInvalid) return -ESRCH;
    uint8_t* extents = reinterpret_cast<uint8_t*>(static_cast<uintptr_t>(handle));
    for (uint64_t i = start; i < nr_extents; i++) {
      if (extents == nullptr) return -EFAULT;
      uint64_t e;
      std::memcpy(&e, extents + 8 * i, sizeof e);
      if (e == ~uint64_t{0}) return static_cast<long>(i);
      if (sub == kXenmemIncreaseReservation) {
        e = 0x100000 + i;
        std::memcpy(extents + 8 * i, &e, sizeof e);
      }
    }
    return static_cast<long>(nr_extents);
  }
  if (hc.op != kHypervisorDomctl) return -ENOSYS;
  uint8_t* op = reinterpret_cast<uint8_t*>(static_cast<uintptr_t>(hc.arg[0]));
  uint32_t cmd, len, err;
  uint64_t gva, uva, fault_after;
  std::memcpy(&cmd, op, 4);
  if (cmd != kDomctlGdbsxGuestMemio) {
    std::memcpy(&err, op + kDomctlHeaderSize, 4);
    return err ? -static_cast<long>(err) : 0;
  }
  std::memcpy(&fault_after, op + kMemioPgd3val, 8);
  std::memcpy(&gva, op + kMemioGva, 8);
  std::memcpy(&uva, op + kMemioUva, 8);
  std::memcpy(&len, op + kMemioLen, 4);
  uint8_t* dst = reinterpret_cast<uint8_t*>(static_cast<uintptr_t>(uva));
  const uint64_t n = fault_after ? std::min<uint64_t>(fault_after, len) : len;
  for (uint64_t i = 0; i < n; i++) dst[i] = static_cast<uint8_t>(gva + i);
  if (fault_after) return -EFAULT;
  const uint32_t remain = 0;
  std::memcpy(op + kMemioRemain, &remain, 4);
  return static_cast<long>(uva);
}

// The loopback's IOCTL_PRIVCMD_DM_OP, acting on the struct the kernel would
// get. Like Linux: no buffers is a no-op, more than 16 or one above 4096
// bytes E2BIG. Then, standing in for Xen: DOMID_INVALID is ESRCH; a non-zero
// u32 at offset 4 of buffer 0 (xen_dm_op's pad) fails with that errno;
// otherwise every byte of buffer i gets i + 1 added, and the result is dom.
long Privcmd::LoopbackDmOp(const PrivcmdDmOp& op) {
  if (op.num == 0) return 0;
  if (op.num > kDmOpMaxBufs) return -E2BIG;
  for (size_t i = 0; i < op.num; i++) {
    if (op.ubufs[i].size > kDmOpMaxBufSize) return -E2BIG;
  }
  if (op.dom == kDomidInvalid) return -ESRCH;
  if (op.ubufs[0].size < 8) return -EFAULT;
  uint32_t err;
  std::memcpy(&err, static_cast<uint8_t*>(op.ubufs[0].uptr) + 4, sizeof err);
  if (err != 0) return -static_cast<long>(err);
  for (size_t i = 0; i < op.num; i++) {
    auto* p = static_cast<uint8_t*>(op.ubufs[i].uptr);
    for (size_t j = 0; j < op.ubufs[i].size; j++) p[j] = static_cast<uint8_t>(p[j] + i + 1);
  }
  return op.dom;
}

}  // namespace

Napi::Function DefinePrivcmd(Napi::Env env) { return Privcmd::Define(env); }

Napi::Value OpenPrivcmd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsUndefined() && !info[0].IsString()) throw Napi::TypeError::New(env, "open: path must be a string");
  return env.GetInstanceData<AddonData>()->privcmd.New({info[0], Napi::Boolean::New(env, false)});
}

Napi::Value OpenLoopback(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return env.GetInstanceData<AddonData>()->privcmd.New({env.Undefined(), Napi::Boolean::New(env, true)});
}

}  // namespace xg

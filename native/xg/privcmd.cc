// Privcmd: one open /dev/xen/privcmd and its cached hypercall buffer.
//   domctl(op: Buffer(144), data?: Buffer, handleOffset?: number): number
//   xenVersion(cmd: number, arg?: Buffer): number
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

uint64_t AddressOf(const void* p) { return static_cast<uint64_t>(reinterpret_cast<uintptr_t>(p)); }

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
                           InstanceMethod<&Privcmd::CloseJs>("close"),
                           InstanceAccessor<&Privcmd::Path>("path"),
                           InstanceAccessor<&Privcmd::BufferKind>("bufferKind"),
                       });
  }

 private:
  Napi::Value Domctl(const Napi::CallbackInfo& info);
  Napi::Value XenVersion(const Napi::CallbackInfo& info);
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
  static long Loopback(const PrivcmdHypercall& hc);

  std::string path_;
  int fd_ = -1;
  int hcbuf_fd_ = -1;
  bool loopback_ = false;
  bool open_ = false;
  HypercallBuffer buf_;
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
  hcbuf_fd_ = fd_ = -1;
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

Napi::Value Privcmd::Domctl(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsBuffer()) throw Napi::TypeError::New(env, "domctl: op must be a Buffer");
  auto op = info[0].As<Napi::Buffer<uint8_t>>();
  if (op.Length() != kDomctlSize) {
    throw Napi::TypeError::New(env, "domctl: op must be " + std::to_string(kDomctlSize) + " bytes (struct xen_domctl), got " +
                                        std::to_string(op.Length()));
  }
  const bool has_data = !info[1].IsUndefined() && !info[1].IsNull();
  Napi::Buffer<uint8_t> data;
  size_t handle_offset = 0;
  if (has_data) {
    if (!info[1].IsBuffer()) throw Napi::TypeError::New(env, "domctl: data must be a Buffer");
    data = info[1].As<Napi::Buffer<uint8_t>>();
    if (data.Length() > kMaxData) throw Napi::TypeError::New(env, "domctl: data is larger than 256 MiB");
    handle_offset = static_cast<size_t>(IntegerArg(info[2], kMinHandleOffset, kMaxHandleOffset, "domctl: handleOffset"));
    if (handle_offset % 8 != 0) throw Napi::TypeError::New(env, "domctl: handleOffset must be a multiple of 8");
  } else if (!info[2].IsUndefined()) {
    throw Napi::TypeError::New(env, "domctl: handleOffset given without a data buffer");
  }

  // The one domctl whose buffer has a caller-chosen length: Xen copies memio.len
  // bytes at memio.uva, so that must be our copy of a buffer at least as long,
  // or Xen would write past it into this process.
  uint32_t cmd, memio_len;
  std::memcpy(&cmd, op.Data(), sizeof cmd);
  std::memcpy(&memio_len, op.Data() + kMemioLen, sizeof memio_len);
  if (cmd == kDomctlGdbsxGuestMemio && (!has_data || handle_offset != kMemioUva || memio_len > data.Length())) {
    throw Napi::TypeError::New(env, "domctl: gdbsx_guestmemio needs data at handleOffset 32 of at least memio.len bytes");
  }

  const size_t len = has_data ? data.Length() : 0;
  uint8_t* hop = Prepare(env, len);
  uint8_t* hdata = hop + HypercallBuffer::PageSize();
  std::memcpy(hop, op.Data(), kDomctlSize);
  if (has_data) {
    std::memcpy(hdata, data.Data(), len);
    // Zero the slack Xen may read beyond the caller's buffer (no stale data).
    if (len < kMinDataArea) std::memset(hdata + len, 0, kMinDataArea - len);
    const uint64_t addr = AddressOf(hdata);
    std::memcpy(hop + handle_offset, &addr, sizeof addr);
  }

  PrivcmdHypercall hc{};
  hc.op = kHypervisorDomctl;
  hc.arg[0] = AddressOf(hop);
  const long r = Issue(hc);

  // Copy back even on failure: a failed gdbsx memio read may have filled a
  // prefix. The handle field keeps the caller's bytes, not our address.
  uint8_t saved_handle[sizeof(uint64_t)];
  if (has_data) std::memcpy(saved_handle, op.Data() + handle_offset, sizeof saved_handle);
  std::memcpy(op.Data(), hop, kDomctlSize);
  if (has_data) {
    std::memcpy(op.Data() + handle_offset, saved_handle, sizeof saved_handle);
    std::memcpy(data.Data(), hdata, len);
  }
  if (r < 0) throw SysError(env, static_cast<int>(-r), "ioctl", path_);
  return Napi::Number::New(env, static_cast<double>(r));
}

Napi::Value Privcmd::XenVersion(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const int64_t cmd = IntegerArg(info[0], 0, INT32_MAX, "xenVersion: cmd");
  const bool has_arg = !info[1].IsUndefined() && !info[1].IsNull();
  Napi::Buffer<uint8_t> arg;
  if (has_arg) {
    if (!info[1].IsBuffer()) throw Napi::TypeError::New(env, "xenVersion: arg must be a Buffer");
    arg = info[1].As<Napi::Buffer<uint8_t>>();
    if (arg.Length() > kMaxData) throw Napi::TypeError::New(env, "xenVersion: arg is larger than 256 MiB");
  }
  const size_t len = has_arg ? arg.Length() : 0;
  // Same layout as domctl; the first page is unused here.
  uint8_t* harg = Prepare(env, len) + HypercallBuffer::PageSize();
  if (has_arg) {
    std::memcpy(harg, arg.Data(), len);
    if (len < kMinDataArea) std::memset(harg + len, 0, kMinDataArea - len);
  }

  PrivcmdHypercall hc{};
  hc.op = kHypervisorXenVersion;
  hc.arg[0] = static_cast<uint64_t>(cmd);
  hc.arg[1] = has_arg ? AddressOf(harg) : 0;
  const long r = Issue(hc);
  if (has_arg) std::memcpy(arg.Data(), harg, len);
  if (r < 0) throw SysError(env, static_cast<int>(-r), "ioctl", path_);
  return Napi::Number::New(env, static_cast<double>(r));
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
long Privcmd::Loopback(const PrivcmdHypercall& hc) {
  if (hc.op == kHypervisorXenVersion) {
    if (hc.arg[0] == 1 && hc.arg[1] != 0) {
      std::memcpy(reinterpret_cast<char*>(static_cast<uintptr_t>(hc.arg[1])), "-loopback", 10);
    }
    return (4 << 16) | 19;
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

// ForeignMapping: frames of another domain mapped into this process.
//   Privcmd.mapForeign(domid, frames: BigUint64Array, writable) -> ForeignMapping
//   { frames, writable, errors, mapped, read(offset, into), write(offset, from), unmap() }
// The mapping is mmap() of the privcmd fd plus one IOCTL_PRIVCMD_MMAPBATCH_V2
// over the whole VMA. A frame Xen refused stays a hole in which any access
// raises SIGBUS, so JS never sees the memory itself: read/write copy, after
// checking bounds, that the mapping is still there, and that every frame the
// copy touches was mapped.
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "abi.h"
#include "common.h"
#include "hcbuf.h"

namespace xg {
namespace {

class ForeignMapping : public Napi::ObjectWrap<ForeignMapping> {
 public:
  // JS: only created by MapForeign(), which then hands over the mapping.
  explicit ForeignMapping(const Napi::CallbackInfo& info) : Napi::ObjectWrap<ForeignMapping>(info) {}
  ~ForeignMapping() override { Unmap(); }  // the finalizer unmaps a mapping left mapped

  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "ForeignMapping",
                       {
                           InstanceMethod<&ForeignMapping::Read>("read"),
                           InstanceMethod<&ForeignMapping::Write>("write"),
                           InstanceMethod<&ForeignMapping::UnmapJs>("unmap"),
                           InstanceAccessor<&ForeignMapping::Frames>("frames"),
                           InstanceAccessor<&ForeignMapping::Writable>("writable"),
                           InstanceAccessor<&ForeignMapping::Errors>("errors"),
                           InstanceAccessor<&ForeignMapping::Mapped>("mapped"),
                       });
  }

  // Takes ownership of [addr, addr + map_len).
  void Adopt(uint8_t* addr, size_t map_len, bool writable, std::vector<uint64_t> frames, std::vector<int> errors) {
    addr_ = addr;
    map_len_ = map_len;
    writable_ = writable;
    frames_ = std::move(frames);
    errors_ = std::move(errors);
    failed_ = static_cast<size_t>(std::count_if(errors_.begin(), errors_.end(), [](int e) { return e != 0; }));
  }

 private:
  Napi::Value Read(const Napi::CallbackInfo& info) {
    Access(info, false);
    return info.Env().Undefined();
  }
  Napi::Value Write(const Napi::CallbackInfo& info) {
    Access(info, true);
    return info.Env().Undefined();
  }
  Napi::Value UnmapJs(const Napi::CallbackInfo& info) {
    Unmap();
    return info.Env().Undefined();
  }
  Napi::Value Frames(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), frames_.size()); }
  Napi::Value Writable(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), writable_); }
  Napi::Value Mapped(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), addr_ != nullptr); }
  Napi::Value Errors(const Napi::CallbackInfo& info) {
    Napi::Array a = Napi::Array::New(info.Env(), errors_.size());
    for (size_t i = 0; i < errors_.size(); i++) a.Set(static_cast<uint32_t>(i), Napi::Number::New(info.Env(), errors_[i]));
    return a;
  }

  void Access(const Napi::CallbackInfo& info, bool write);
  void Unmap() {
    if (addr_ != nullptr) munmap(addr_, map_len_);
    addr_ = nullptr;
  }

  uint8_t* addr_ = nullptr;
  size_t map_len_ = 0;  // the VMA: frames * 4 KiB rounded up to the kernel's page size
  bool writable_ = false;
  std::vector<uint64_t> frames_;
  std::vector<int> errors_;  // positive errnos, 0 for mapped frames
  size_t failed_ = 0;        // frames with an error
};

void ForeignMapping::Access(const Napi::CallbackInfo& info, bool write) {
  Napi::Env env = info.Env();
  const char* what = write ? "write" : "read";
  const int64_t offset = IntegerArg(info[0], 0, INT64_C(1) << 53, write ? "write: offset" : "read: offset");
  if (!info[1].IsBuffer()) throw Napi::TypeError::New(env, std::string(what) + ": the buffer must be a Buffer");
  auto buf = info[1].As<Napi::Buffer<uint8_t>>();
  const size_t len = buf.Length();
  const size_t size = frames_.size() * kXenPageSize;

  if (addr_ == nullptr) throw ErrnoError(env, EFAULT, what, std::string(what) + ": the foreign mapping is unmapped");
  if (static_cast<uint64_t>(offset) > size || len > size - static_cast<size_t>(offset)) {
    throw Napi::RangeError::New(env, std::string(what) + ": " + std::to_string(len) + " bytes at offset " +
                                         std::to_string(offset) + " are outside the " + std::to_string(size) +
                                         "-byte mapping");
  }
  if (write && !writable_) throw ErrnoError(env, EACCES, what, "write: the foreign mapping is read-only");
  if (len == 0) return;
  const size_t off = static_cast<size_t>(offset);
  if (failed_ != 0) {
    // A frame Xen refused is a hole: touching it would raise SIGBUS.
    for (size_t i = off / kXenPageSize; i <= (off + len - 1) / kXenPageSize; i++) {
      if (errors_[i] == 0) continue;
      char frame[24];
      std::snprintf(frame, sizeof frame, "0x%llx", static_cast<unsigned long long>(frames_[i]));
      Napi::Error e = ErrnoError(env, EFAULT, what,
                                 std::string(what) + ": frame " + std::to_string(i) + " (" + frame +
                                     ") of the mapping is not mapped: " + std::strerror(errors_[i]));
      e.Set("frame", Napi::Number::New(env, static_cast<double>(i)));
      e.Set("frameErrno", Napi::Number::New(env, errors_[i]));
      throw e;
    }
  }
  if (write) {
    std::memcpy(addr_ + off, buf.Data(), len);
  } else {
    std::memcpy(buf.Data(), addr_ + off, len);
  }
}

// Unmaps unless released: the VMA between mmap() and Adopt().
struct VmaGuard {
  void* addr;
  size_t len;
  ~VmaGuard() {
    if (addr != nullptr) munmap(addr, len);
  }
};

// The loopback double's IOCTL_PRIVCMD_MMAPBATCH_V2, acting on the same struct
// the kernel would get. Like Linux: the batch must cover the VMA made for it
// exactly (else EINVAL); err[] is written only when some frame failed; the
// call fails with ENOENT if a frame was "paged out", otherwise succeeds.
// Like Xen: a frame below kLoopbackGuestFrames maps that page of the guest
// memfd (so two mappings of a frame share it); kLoopbackErrorFrames + E fails
// with E; any other frame is a hole (EINVAL); DOMID_INVALID is ESRCH.
long LoopbackMmapBatch(int guest_fd, int prot, const void* vma, size_t vma_len, const PrivcmdMmapBatchV2& m) {
  if (m.addr != AddressOf(vma) || static_cast<uint64_t>(m.num) * kXenPageSize != vma_len) return -EINVAL;
  if (m.dom == kDomidInvalid) return -ESRCH;
  std::vector<int> err(m.num, 0);
  for (size_t i = 0; i < m.num; i++) {
    const XenPfn f = m.arr[i];
    if (f < kLoopbackGuestFrames) {
      void* at = reinterpret_cast<uint8_t*>(static_cast<uintptr_t>(m.addr)) + i * kXenPageSize;
      if (mmap(at, kXenPageSize, prot, MAP_SHARED | MAP_FIXED, guest_fd, static_cast<off_t>(f * kXenPageSize)) ==
          MAP_FAILED) {
        err[i] = -errno;
      }
    } else if (f > kLoopbackErrorFrames && f < kLoopbackErrorFrames + 4096) {
      err[i] = -static_cast<int>(f - kLoopbackErrorFrames);
    } else {
      err[i] = -EINVAL;
    }
  }
  if (std::none_of(err.begin(), err.end(), [](int e) { return e != 0; })) return 0;
  std::copy(err.begin(), err.end(), m.err);
  return std::find(err.begin(), err.end(), -ENOENT) != err.end() ? -ENOENT : 0;
}

}  // namespace

Napi::Function DefineForeignMapping(Napi::Env env) { return ForeignMapping::Define(env); }

int CreateLoopbackGuest() {
  const int fd = memfd_create("xg-loopback-guest", MFD_CLOEXEC);
  if (fd < 0) return -errno;
  const size_t len = kLoopbackGuestFrames * kXenPageSize;
  void* p = MAP_FAILED;
  if (ftruncate(fd, static_cast<off_t>(len)) == 0) p = mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) {
    const int err = errno;
    close(fd);
    return -err;
  }
  auto* words = static_cast<uint64_t*>(p);
  for (size_t i = 0; i < len / sizeof(uint64_t); i++) words[i] = i * sizeof(uint64_t);
  munmap(p, len);
  return fd;
}

Napi::Value MapForeign(Napi::Env env, const ForeignSource& src, uint16_t dom, const uint64_t* frames, size_t n,
                       bool writable) {
  const bool loopback = src.loopback_guest_fd >= 0;
  const size_t page = HypercallBuffer::PageSize();
  const size_t map_len = (n * kXenPageSize + page - 1) / page * page;
  const int prot = PROT_READ | (writable ? PROT_WRITE : 0);
  if (loopback && page != kXenPageSize) {
    throw ErrnoError(env, ENOSYS, "mmap", "the loopback double maps 4 KiB frames onto 4 KiB pages only");
  }

  // The VMA. privcmd's has no pages until the batch fills it; the loopback's
  // stands in with an inaccessible reservation.
  void* addr = loopback ? mmap(nullptr, map_len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0)
                        : mmap(nullptr, map_len, prot, MAP_SHARED, src.privcmd_fd, 0);
  if (addr == MAP_FAILED) throw SysError(env, errno, "mmap", src.path);
  VmaGuard guard{addr, map_len};

  // err[] must start zeroed: Linux writes it only when some frame fails.
  std::vector<int> err(n, 0);
  PrivcmdMmapBatchV2 m{};
  m.num = static_cast<uint32_t>(n);
  m.dom = dom;
  m.addr = AddressOf(addr);
  m.arr = frames;
  m.err = err.data();
  long r;
  if (loopback) {
    r = LoopbackMmapBatch(src.loopback_guest_fd, prot, addr, map_len, m);
  } else {
    r = ioctl(src.privcmd_fd, kIoctlPrivcmdMmapBatchV2, &m) < 0 ? -errno : 0;
  }
  const bool frame_failed = std::any_of(err.begin(), err.end(), [](int e) { return e != 0; });
  // ENOENT with per-frame errors means "some frames are paged out or shared":
  // the others are mapped. Anything else failed the whole batch.
  if (r < 0 && !(r == -ENOENT && frame_failed)) throw SysError(env, static_cast<int>(-r), "ioctl", src.path);

  std::vector<int> errors(n);
  std::transform(err.begin(), err.end(), errors.begin(), [](int e) { return e < 0 ? -e : e; });
  Napi::Object obj = env.GetInstanceData<AddonData>()->foreign_mapping.New({});
  ForeignMapping::Unwrap(obj)->Adopt(static_cast<uint8_t*>(addr), map_len, writable,
                                     std::vector<uint64_t>(frames, frames + n), std::move(errors));
  guard.addr = nullptr;
  return obj;
}

}  // namespace xg

// Shared helpers of the xg addon.
#pragma once

#include <napi.h>

#include <cstddef>
#include <cstdint>
#include <string>

namespace xg {

// Per-environment data: the constructors of the wrapped classes.
struct AddonData {
  Napi::FunctionReference privcmd;
  Napi::FunctionReference event_channel;
  Napi::FunctionReference foreign_mapping;
};

inline uint64_t AddressOf(const void* p) { return static_cast<uint64_t>(reinterpret_cast<uintptr_t>(p)); }

// A JS Error for a failed system call: message "<syscall> <path>: <strerror>",
// plus .errno (the positive Linux/Xen value, unlike Node's negative uv codes),
// .syscall and .path.
Napi::Error SysError(Napi::Env env, int err, const char* syscall, const std::string& path);

// The same fields with a message of our own: for refusals made before the
// system call (limits the kernel would enforce) and for foreign-mapping access.
Napi::Error ErrnoError(Napi::Env env, int err, const char* syscall, const std::string& message);

// The integer in `v`, if it is a Number holding an integer in [min, max];
// otherwise throws a TypeError naming `what`.
int64_t IntegerArg(const Napi::Value& v, int64_t min, int64_t max, const char* what);

// Class registration (privcmd.cc, evtchn.cc, foreign.cc).
Napi::Function DefinePrivcmd(Napi::Env env);
Napi::Function DefineEventChannel(Napi::Env env);
Napi::Function DefineForeignMapping(Napi::Env env);

// Module functions.
Napi::Value OpenPrivcmd(const Napi::CallbackInfo& info);       // open(path?)
Napi::Value OpenLoopback(const Napi::CallbackInfo& info);      // _openLoopback()
Napi::Value BindVirq(const Napi::CallbackInfo& info);          // bindVirq(virq, onEvent, path?)
Napi::Value BindInterdomain(const Napi::CallbackInfo& info);   // bindInterdomain(domid, remotePort, onEvent, path?)
Napi::Value TestEventChannel(const Napi::CallbackInfo& info);  // _testEventChannel(onEvent, port?)

// Foreign mappings (foreign.cc), for Privcmd.mapForeign().
struct ForeignSource {
  int privcmd_fd;         // the real device: mmap() it, then IOCTL_PRIVCMD_MMAPBATCH_V2
  int loopback_guest_fd;  // >= 0: the loopback double; its frames are the pages of this memfd
  const std::string& path;
};
// Maps frames[0..n) of `dom` in one batch and returns a ForeignMapping object.
// Per-frame refusals land in its `errors`; throws only when the whole mapping fails.
Napi::Value MapForeign(Napi::Env env, const ForeignSource& src, uint16_t dom, const uint64_t* frames, size_t n,
                       bool writable);
// The loopback's guest memory: a memfd of kLoopbackGuestFrames frames in which
// the 8-byte word at guest-physical address a holds a. Returns the fd or -errno.
constexpr size_t kLoopbackGuestFrames = 256;
// Loopback frames kLoopbackErrorFrames + E (0 < E < 4096) fail with errno E.
constexpr uint64_t kLoopbackErrorFrames = 0xe0000;
int CreateLoopbackGuest();

}  // namespace xg

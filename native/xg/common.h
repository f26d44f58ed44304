// Shared helpers of the xg addon.
#pragma once

#include <napi.h>

#include <cstddef>
#include <cstdint>
#include <string>

namespace xg {

// Per-environment data: the constructors of the two wrapped classes.
struct AddonData {
  Napi::FunctionReference privcmd;
  Napi::FunctionReference event_channel;
};

// A JS Error for a failed system call: message "<syscall> <path>: <strerror>",
// plus .errno (the positive Linux/Xen value, unlike Node's negative uv codes),
// .syscall and .path.
Napi::Error SysError(Napi::Env env, int err, const char* syscall, const std::string& path);

// The integer in `v`, if it is a Number holding an integer in [min, max];
// otherwise throws a TypeError naming `what`.
int64_t IntegerArg(const Napi::Value& v, int64_t min, int64_t max, const char* what);

// Class registration (privcmd.cc, evtchn.cc).
Napi::Function DefinePrivcmd(Napi::Env env);
Napi::Function DefineEventChannel(Napi::Env env);

// Module functions.
Napi::Value OpenPrivcmd(const Napi::CallbackInfo& info);       // open(path?)
Napi::Value OpenLoopback(const Napi::CallbackInfo& info);      // _openLoopback()
Napi::Value BindVirq(const Napi::CallbackInfo& info);          // bindVirq(virq, onEvent, path?)
Napi::Value TestEventChannel(const Napi::CallbackInfo& info);  // _testEventChannel(onEvent)

}  // namespace xg

// Module entry point of xg.node: the Xen privcmd and event-channel devices,
// as thin syscall wrappers. See docs/native-addon.md for the API and ABI.
#include <cmath>
#include <cstring>

#include "abi.h"
#include "common.h"
#include "hcbuf.h"

namespace xg {

Napi::Error ErrnoError(Napi::Env env, int err, const char* syscall, const std::string& message) {
  Napi::Error e = Napi::Error::New(env, message);
  e.Set("errno", Napi::Number::New(env, err));
  e.Set("syscall", Napi::String::New(env, syscall));
  return e;
}

Napi::Error SysError(Napi::Env env, int err, const char* syscall, const std::string& path) {
  std::string message = syscall;
  if (!path.empty()) message += " " + path;
  message += ": ";
  message += std::strerror(err);
  Napi::Error e = ErrnoError(env, err, syscall, message);
  if (!path.empty()) e.Set("path", Napi::String::New(env, path));
  return e;
}

int64_t IntegerArg(const Napi::Value& v, int64_t min, int64_t max, const char* what) {
  const double d = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : NAN;
  if (!(d >= static_cast<double>(min) && d <= static_cast<double>(max)) || d != std::floor(d)) {
    throw Napi::TypeError::New(v.Env(), std::string(what) + " must be an integer in [" + std::to_string(min) + ", " +
                                            std::to_string(max) + "]");
  }
  return static_cast<int64_t>(d);
}

namespace {

Napi::Object Constants(Napi::Env env) {
  Napi::Object c = Napi::Object::New(env);
  c.Set("IOCTL_PRIVCMD_HYPERCALL", Napi::Number::New(env, kIoctlPrivcmdHypercall));
  c.Set("IOCTL_EVTCHN_BIND_VIRQ", Napi::Number::New(env, kIoctlEvtchnBindVirq));
  c.Set("IOCTL_EVTCHN_UNBIND", Napi::Number::New(env, kIoctlEvtchnUnbind));
  c.Set("IOCTL_EVTCHN_BIND_INTERDOMAIN", Napi::Number::New(env, kIoctlEvtchnBindInterdomain));
  c.Set("IOCTL_EVTCHN_NOTIFY", Napi::Number::New(env, kIoctlEvtchnNotify));
  c.Set("IOCTL_PRIVCMD_MMAPBATCH_V2", Napi::Number::New(env, kIoctlPrivcmdMmapBatchV2));
  c.Set("IOCTL_PRIVCMD_DM_OP", Napi::Number::New(env, kIoctlPrivcmdDmOp));
  c.Set("DM_OP_MAX_BUFS", Napi::Number::New(env, kDmOpMaxBufs));
  c.Set("DM_OP_MAX_BUF_SIZE", Napi::Number::New(env, kDmOpMaxBufSize));
  c.Set("XEN_PAGE_SIZE", Napi::Number::New(env, kXenPageSize));
  c.Set("LOOPBACK_GUEST_FRAMES", Napi::Number::New(env, kLoopbackGuestFrames));
  c.Set("LOOPBACK_ERROR_FRAMES", Napi::Number::New(env, static_cast<double>(kLoopbackErrorFrames)));
  c.Set("PRIVCMD_HYPERCALL_SIZE", Napi::Number::New(env, sizeof(PrivcmdHypercall)));
  c.Set("DOMCTL_SIZE", Napi::Number::New(env, kDomctlSize));
  c.Set("PAGE_SIZE", Napi::Number::New(env, HypercallBuffer::PageSize()));
  return c;
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  auto* data = new AddonData();
  data->privcmd = Napi::Persistent(DefinePrivcmd(env));
  data->event_channel = Napi::Persistent(DefineEventChannel(env));
  data->foreign_mapping = Napi::Persistent(DefineForeignMapping(env));
  env.SetInstanceData(data);  // deleted with the environment

  exports.Set("open", Napi::Function::New<OpenPrivcmd>(env, "open"));
  exports.Set("bindVirq", Napi::Function::New<BindVirq>(env, "bindVirq"));
  exports.Set("bindInterdomain", Napi::Function::New<BindInterdomain>(env, "bindInterdomain"));
  exports.Set("constants", Constants(env));
  exports.Set("_openLoopback", Napi::Function::New<OpenLoopback>(env, "_openLoopback"));
  exports.Set("_testEventChannel", Napi::Function::New<TestEventChannel>(env, "_testEventChannel"));
  return exports;
}

}  // namespace
}  // namespace xg

static Napi::Object InitXg(Napi::Env env, Napi::Object exports) { return xg::Init(env, exports); }
NODE_API_MODULE(xg, InitXg)

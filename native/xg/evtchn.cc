// EventChannel: one bound event-channel port whose events reach a JS callback.
//   bindVirq(virq, onEvent(port), path?) -> { port, notify(), close() }
//   bindInterdomain(domid, remotePort, onEvent(port), path?) -> the same, port = the local port
// Both bind on their own /dev/xen/evtchn fd and share everything after the bind.
// A background thread sleeps in poll() on the channel fd (and on an eventfd
// that close() uses to stop it), reads the pending ports, unmasks them by
// writing them back, and queues one call of onEvent per port through a
// thread-safe function. The thread-safe function is unref'd: a bound channel
// does not keep the process alive.
#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "abi.h"
#include "common.h"

namespace xg {
namespace {

// Runs on the JS thread for each queued port; env is null when the queue is
// being dropped (close() or environment teardown): then only free the data.
void DeliverEvent(Napi::Env env, Napi::Function on_event, void* /*context*/, uint32_t* port) {
  std::unique_ptr<uint32_t> owned(port);
  if (static_cast<napi_env>(env) != nullptr && !on_event.IsEmpty()) {
    on_event.Call({Napi::Number::New(env, *owned)});
  }
}
using EventTsfn = Napi::TypedThreadSafeFunction<void, uint32_t, DeliverEvent>;

class EventChannel : public Napi::ObjectWrap<EventChannel> {
 public:
  // JS: new EventChannel(fd, port, onEvent, test); only created by bindVirq(),
  // bindInterdomain() and _testEventChannel(). Owns fd from here on. A test
  // channel records its port ioctls (notify, unbind) instead of issuing them.
  explicit EventChannel(const Napi::CallbackInfo& info);
  ~EventChannel() override { Stop(); }

  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "EventChannel",
                       {
                           InstanceMethod<&EventChannel::NotifyJs>("notify"),
                           InstanceMethod<&EventChannel::CloseJs>("close"),
                           InstanceAccessor<&EventChannel::Port>("port"),
                           InstanceAccessor<&EventChannel::IoctlLog>("_ioctls"),
                       });
  }

 private:
  Napi::Value CloseJs(const Napi::CallbackInfo& info) {
    Stop();
    return info.Env().Undefined();
  }
  Napi::Value NotifyJs(const Napi::CallbackInfo& info);
  Napi::Value Port(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), port_); }
  Napi::Value IoctlLog(const Napi::CallbackInfo& info);

  // An ioctl whose argument is our port (IOCTL_EVTCHN_NOTIFY, _UNBIND): 0 or -errno.
  int PortIoctl(unsigned long request);
  void Run();
  void Stop();
  static void OnEnvCleanup(void* self) {
    static_cast<EventChannel*>(self)->hooked_ = false;
    static_cast<EventChannel*>(self)->Stop();
  }

  napi_env env_;
  int fd_ = -1;
  int stop_fd_ = -1;
  uint32_t port_ = 0;
  EventTsfn tsfn_;
  std::thread thread_;
  bool running_ = false;
  bool hooked_ = false;
  bool test_ = false;
  std::vector<std::pair<unsigned long, uint32_t>> ioctl_log_;  // test channels: (request, port)
};

EventChannel::EventChannel(const Napi::CallbackInfo& info) : Napi::ObjectWrap<EventChannel>(info), env_(info.Env()) {
  fd_ = info[0].As<Napi::Number>().Int32Value();
  port_ = info[1].As<Napi::Number>().Uint32Value();
  test_ = info[3].ToBoolean();
  stop_fd_ = eventfd(0, EFD_CLOEXEC);
  if (stop_fd_ < 0) {
    const int err = errno;
    close(fd_);
    fd_ = -1;
    throw SysError(info.Env(), err, "eventfd", "");
  }
  tsfn_ = EventTsfn::New(info.Env(), info[2].As<Napi::Function>(), "xg.EventChannel", 0, 1);
  tsfn_.Unref(info.Env());
  thread_ = std::thread(&EventChannel::Run, this);
  running_ = true;
  // Stop the thread before the environment (e.g. a worker) goes away.
  hooked_ = napi_add_env_cleanup_hook(env_, OnEnvCleanup, this) == napi_ok;
}

void EventChannel::Run() {
  uint32_t ports[64];
  for (;;) {
    pollfd fds[2] = {{fd_, POLLIN, 0}, {stop_fd_, POLLIN, 0}};
    if (poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      return;
    }
    if (fds[1].revents != 0) return;                   // close()
    if (fds[0].revents & (POLLERR | POLLNVAL)) return;  // the device gave up
    const ssize_t n = read(fd_, ports, sizeof ports);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
    if (n <= 0) return;  // error or end of file
    const size_t count = static_cast<size_t>(n) / sizeof(uint32_t);
    // The driver masks a port when it queues it; writing it back unmasks it.
    // If that fails the port stays masked: callers poll anyway.
    if (write(fd_, ports, count * sizeof(uint32_t)) < 0) {
    }
    for (size_t i = 0; i < count; i++) {
      auto* port = new uint32_t(ports[i]);
      if (tsfn_.NonBlockingCall(port) != napi_ok) delete port;  // closing
    }
  }
}

int EventChannel::PortIoctl(unsigned long request) {
  static_assert(sizeof(EvtchnNotify) == sizeof(EvtchnUnbind), "both take just the port");
  if (test_) {
    ioctl_log_.emplace_back(request, port_);
    return 0;
  }
  EvtchnNotify arg{port_};
  return ioctl(fd_, request, &arg) < 0 ? -errno : 0;
}

Napi::Value EventChannel::NotifyJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!running_) throw Napi::Error::New(env, "evtchn: the event channel is closed");
  if (const int err = PortIoctl(kIoctlEvtchnNotify)) {
    throw ErrnoError(env, -err, "ioctl",
                     "ioctl IOCTL_EVTCHN_NOTIFY (port " + std::to_string(port_) + "): " + std::strerror(-err));
  }
  return env.Undefined();
}

Napi::Value EventChannel::IoctlLog(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Array a = Napi::Array::New(env, ioctl_log_.size());
  for (size_t i = 0; i < ioctl_log_.size(); i++) {
    Napi::Object o = Napi::Object::New(env);
    o.Set("request", Napi::Number::New(env, static_cast<double>(ioctl_log_[i].first)));
    o.Set("port", Napi::Number::New(env, ioctl_log_[i].second));
    a.Set(static_cast<uint32_t>(i), o);
  }
  return a;
}

void EventChannel::Stop() {
  if (!running_) return;
  running_ = false;
  const uint64_t one = 1;
  if (write(stop_fd_, &one, sizeof one) < 0) {
    // Cannot fail for an eventfd whose counter is far from overflowing.
  }
  thread_.join();
  close(stop_fd_);
  // Unbind explicitly; closing the fd would too (it unbinds every port bound
  // through it), so a failure here changes nothing.
  PortIoctl(kIoctlEvtchnUnbind);
  close(fd_);
  stop_fd_ = fd_ = -1;
  tsfn_.Abort();  // drop events still queued: none is delivered after close()
  if (hooked_) napi_remove_env_cleanup_hook(env_, OnEnvCleanup, this);
  hooked_ = false;
}

// Opens `path`, binds with `request` (whose result is the local port), and
// wraps the fd in an EventChannel delivering to `on_event`.
template <typename Arg>
Napi::Value BindOnDevice(Napi::Env env, const std::string& path, unsigned long request, Arg& arg,
                         const Napi::Value& on_event) {
  const int fd = open(path.c_str(), O_RDWR | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) throw SysError(env, errno, "open", path);
  const int port = ioctl(fd, request, &arg);
  if (port < 0) {
    const int err = errno;
    close(fd);
    throw SysError(env, err, "ioctl", path);
  }
  return env.GetInstanceData<AddonData>()->event_channel.New(
      {Napi::Number::New(env, fd), Napi::Number::New(env, port), on_event, Napi::Boolean::New(env, false)});
}

// The optional device path at info[i].
std::string EvtchnPathArg(const Napi::CallbackInfo& info, size_t i, const char* what) {
  if (!info[i].IsUndefined() && !info[i].IsString()) {
    throw Napi::TypeError::New(info.Env(), std::string(what) + ": path must be a string");
  }
  return info[i].IsString() ? info[i].As<Napi::String>().Utf8Value() : kEvtchnPath;
}

}  // namespace

Napi::Function DefineEventChannel(Napi::Env env) { return EventChannel::Define(env); }

Napi::Value BindVirq(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const auto virq = static_cast<uint32_t>(IntegerArg(info[0], 0, 63, "bindVirq: virq"));
  if (!info[1].IsFunction()) throw Napi::TypeError::New(env, "bindVirq: onEvent must be a function");
  const std::string path = EvtchnPathArg(info, 2, "bindVirq");
  EvtchnBindVirq bind{virq};
  return BindOnDevice(env, path, kIoctlEvtchnBindVirq, bind, info[1]);
}

Napi::Value BindInterdomain(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  EvtchnBindInterdomain bind{};
  bind.remote_domain = static_cast<uint32_t>(IntegerArg(info[0], 0, UINT16_MAX, "bindInterdomain: domid"));
  bind.remote_port = static_cast<uint32_t>(IntegerArg(info[1], 0, UINT32_MAX, "bindInterdomain: remotePort"));
  if (!info[2].IsFunction()) throw Napi::TypeError::New(env, "bindInterdomain: onEvent must be a function");
  const std::string path = EvtchnPathArg(info, 3, "bindInterdomain");
  return BindOnDevice(env, path, kIoctlEvtchnBindInterdomain, bind, info[2]);
}

// Test double: an EventChannel on one end of a socketpair instead of a bound
// port (`port`, default 0). Writing 4-byte port numbers to .peerFd raises
// events; the channel's unmask writes come back on .peerFd; notify() and the
// unbind in close() are recorded in ._ioctls instead of issued.
Napi::Value TestEventChannel(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsFunction()) throw Napi::TypeError::New(env, "_testEventChannel: onEvent must be a function");
  const int64_t port = info[1].IsUndefined() ? 0 : IntegerArg(info[1], 0, UINT32_MAX, "_testEventChannel: port");
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) throw SysError(env, errno, "socketpair", "");
  if (fcntl(sv[0], F_SETFL, O_NONBLOCK) != 0) {
    const int err = errno;
    close(sv[0]);
    close(sv[1]);
    throw SysError(env, err, "fcntl", "");
  }
  Napi::Object channel;
  try {
    channel = env.GetInstanceData<AddonData>()->event_channel.New(
        {Napi::Number::New(env, sv[0]), Napi::Number::New(env, static_cast<double>(port)), info[0],
         Napi::Boolean::New(env, true)});
  } catch (...) {
    close(sv[1]);
    throw;
  }
  channel.Set("peerFd", Napi::Number::New(env, sv[1]));
  return channel;
}

}  // namespace xg

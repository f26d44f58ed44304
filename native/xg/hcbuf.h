// Hypercall buffers: memory Xen may read and write through our virtual
// addresses while a hypercall runs, so it must stay mapped and resident and
// must not become copy-on-write after a fork().
#pragma once

#include <cstddef>
#include <cstdint>

namespace xg {

class HypercallBuffer {
 public:
  HypercallBuffer() = default;
  ~HypercallBuffer() { Release(); }
  HypercallBuffer(const HypercallBuffer&) = delete;
  HypercallBuffer& operator=(const HypercallBuffer&) = delete;

  // Use /dev/xen/hypercall (an fd we keep open) for the mappings; -1: anonymous only.
  void SetDevice(int fd) { device_fd_ = fd; }

  // Makes the buffer at least `size` bytes (kept and reused; grows by doubling,
  // never shrinks until Release). Returns 0 or an errno; on failure the old
  // buffer is gone too. Contents are unspecified after a grow.
  int Reserve(size_t size);
  void Release();

  uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  // "hypercall-device", "anonymous" or "" (nothing mapped yet).
  const char* kind() const;

  static size_t PageSize();

 private:
  int device_fd_ = -1;
  uint8_t* data_ = nullptr;
  size_t size_ = 0;
  bool from_device_ = false;
};

}  // namespace xg

#include "hcbuf.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace xg {

size_t HypercallBuffer::PageSize() {
  static const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  return page;
}

const char* HypercallBuffer::kind() const {
  if (data_ == nullptr) return "";
  return from_device_ ? "hypercall-device" : "anonymous";
}

void HypercallBuffer::Release() {
  if (data_ != nullptr) munmap(data_, size_);
  data_ = nullptr;
  size_ = 0;
  from_device_ = false;
}

int HypercallBuffer::Reserve(size_t size) {
  if (size <= size_) return 0;
  const size_t page = PageSize();
  size_t want = size_ ? size_ * 2 : page;
  while (want < size) want *= 2;
  want = (want + page - 1) / page * page;
  Release();

  // Preferred: pages from the privcmd-buf driver: kernel-allocated, resident,
  // and shared (never copy-on-write) with fork() children. The driver caps
  // each open file at a few pages (module parameter "limit", default 64), so
  // big requests fail here with EINVAL and take the anonymous path.
  if (device_fd_ >= 0) {
    void* p = mmap(nullptr, want, PROT_READ | PROT_WRITE, MAP_SHARED, device_fd_, 0);
    if (p != MAP_FAILED) {
      data_ = static_cast<uint8_t*>(p);
      size_ = want;
      from_device_ = true;
      return 0;
    }
    // Fall through to anonymous memory, as on kernels without the driver.
  }

  // Fallback: locked, prefaulted anonymous memory that a fork() child does not
  // share (otherwise a copy-on-write fault could move a page under Xen).
  void* p = mmap(nullptr, want, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_LOCKED | MAP_POPULATE, -1, 0);
  if (p == MAP_FAILED) return errno;
  if (madvise(p, want, MADV_DONTFORK) != 0) {
    int err = errno;
    munmap(p, want);
    return err;
  }
  // Touch every page for writing so none is still the shared zero page.
  std::memset(p, 0, want);
  data_ = static_cast<uint8_t*>(p);
  size_ = want;
  from_device_ = false;
  return 0;
}

}  // namespace xg

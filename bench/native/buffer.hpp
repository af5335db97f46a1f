// Uninitialised, aligned arrays of int64_t length. Construction does not touch the memory, so
// the caller decides which thread first writes (and so faults in) each page, before any timing.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <memory>
#include <new>

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace fastloss_bench {

template <class T>
class Buffer {
public:
    Buffer() = default;
    explicit Buffer(int64_t size) : size_(size) {
        // 2 MiB alignment lets transparent huge pages back large arrays from their first byte.
        const size_t align = bytes() >= kHugePage ? kHugePage : 64;
        const size_t rounded = (bytes() + align - 1) / align * align;
        void* p = std::aligned_alloc(align, rounded == 0 ? align : rounded);
        if (!p) throw std::bad_alloc();
#if defined(__linux__) && defined(MADV_HUGEPAGE)
        // NumPy asks for huge pages on large arrays too (madvise, the common THP setting), so the
        // harness sees the same TLB behaviour as the Python API. A refusal is harmless.
        if (bytes() >= kHugePage) madvise(p, rounded, MADV_HUGEPAGE);
#endif
        data_.reset(static_cast<T*>(p));
    }

    T* data() { return data_.get(); }
    const T* data() const { return data_.get(); }
    int64_t size() const { return size_; }
    size_t bytes() const { return static_cast<size_t>(size_) * sizeof(T); }

private:
    static constexpr size_t kHugePage = size_t(2) << 20;
    struct Free {
        void operator()(T* p) const { std::free(p); }
    };
    std::unique_ptr<T[], Free> data_;
    int64_t size_ = 0;
};

}  // namespace fastloss_bench

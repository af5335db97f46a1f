// Scratch memory of a kernel call. A failed allocation becomes AllocationFailure, a std::bad_alloc
// whose message names the size and the purpose; pybind11 raises it as MemoryError with that
// message. Inside a parallel region it is carried out by parallel_for (parallel.hpp), never left
// to escape the region (which would abort the process).
#pragma once

#include <cstdint>
#include <limits>
#include <memory>
#include <new>
#include <stdexcept>
#include <string>
#include <vector>

namespace fastloss {

class AllocationFailure : public std::bad_alloc {
  public:
    // `count` values of `size` bytes each (their product may exceed int64: it is not formed).
    AllocationFailure(int64_t count, size_t size, const char* purpose)
        : message_("fastloss could not allocate " + bytes(count, size) + " bytes (" + purpose + ")") {}
    const char* what() const noexcept override { return message_.c_str(); }

  private:
    static std::string bytes(int64_t count, size_t size) {
        const unsigned long long n = static_cast<unsigned long long>(count);
        if (size != 0 && n > ~0ULL / size) return std::to_string(n) + " x " + std::to_string(size);
        return std::to_string(n * size);
    }
    std::string message_;
};

// a * b (a, b >= 0) as an element count, saturated at INT64_MAX: a count that large then fails
// to allocate cleanly instead of wrapping around to a small one.
inline int64_t count_product(int64_t a, int64_t b) {
    return b != 0 && a > std::numeric_limits<int64_t>::max() / b ? std::numeric_limits<int64_t>::max() : a * b;
}

// std::vector<T>(count, value), or AllocationFailure naming count * sizeof(T) bytes and `purpose`.
template <class T>
std::vector<T> scratch_vector(int64_t count, const char* purpose, T value = T()) {
    try {
        return std::vector<T>(static_cast<size_t>(count), value);
    } catch (const std::bad_alloc&) {
        throw AllocationFailure(count, sizeof(T), purpose);
    } catch (const std::length_error&) {
        throw AllocationFailure(count, sizeof(T), purpose);
    }
}

// `count` values left uninitialised (for scratch that is written whole before it is read: no
// zeroing pass), or AllocationFailure.
template <class T>
std::unique_ptr<T[]> uninitialised_scratch(int64_t count, const char* purpose) {
    try {
        return std::unique_ptr<T[]>(new T[static_cast<size_t>(count)]);
    } catch (const std::bad_alloc&) {  // bad_array_new_length too
        throw AllocationFailure(count, sizeof(T), purpose);
    }
}

}  // namespace fastloss

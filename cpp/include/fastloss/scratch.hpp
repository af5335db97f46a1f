// Scratch memory of a kernel call. A failed allocation becomes AllocationFailure, a std::bad_alloc
// whose message names the size and the purpose; pybind11 raises it as MemoryError with that
// message. Inside a parallel region it is carried out by parallel_for (parallel.hpp), never left
// to escape the region (which would abort the process).
#pragma once

#include <cstdint>
#include <memory>
#include <new>
#include <stdexcept>
#include <string>
#include <vector>

namespace fastloss {

class AllocationFailure : public std::bad_alloc {
  public:
    AllocationFailure(int64_t bytes, const char* purpose)
        : message_("fastloss could not allocate " + std::to_string(bytes) + " bytes (" + purpose + ")") {}
    const char* what() const noexcept override { return message_.c_str(); }

  private:
    std::string message_;
};

// std::vector<T>(count, value), or AllocationFailure naming count * sizeof(T) bytes and `purpose`.
template <class T>
std::vector<T> scratch_vector(int64_t count, const char* purpose, T value = T()) {
    try {
        return std::vector<T>(static_cast<size_t>(count), value);
    } catch (const std::bad_alloc&) {
        throw AllocationFailure(count * int64_t(sizeof(T)), purpose);
    } catch (const std::length_error&) {
        throw AllocationFailure(count * int64_t(sizeof(T)), purpose);
    }
}

// `count` values left uninitialised (for scratch that is written whole before it is read: no
// zeroing pass), or AllocationFailure.
template <class T>
std::unique_ptr<T[]> uninitialised_scratch(int64_t count, const char* purpose) {
    try {
        return std::unique_ptr<T[]>(new T[static_cast<size_t>(count)]);
    } catch (const std::bad_alloc&) {  // bad_array_new_length too
        throw AllocationFailure(count * int64_t(sizeof(T)), purpose);
    }
}

}  // namespace fastloss

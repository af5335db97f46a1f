// Shapes, strides and per-operand lists, held inline. Describing one call (its shape, every
// operand's strides, the merged geometry) took about 25 heap allocations of a few dozen bytes each:
// malloc and free were a fifth of a small call's time. These lists are bounded by NumPy's limit
// on axes and by the number of operands, so they live in fixed arrays instead.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <stdexcept>
#include <string>
#include <type_traits>

namespace fastloss {

// NumPy's most axes (NPY_MAXDIMS since NumPy 2.0; 32 before).
constexpr size_t kMaxDims = 64;

// The part of std::vector's interface the drivers use, over at most N elements held inline.
// Growing past N throws std::length_error (never reached through NumPy arrays).
template <class T, size_t N>
class InlineVector {
    static_assert(std::is_trivially_destructible<T>::value, "nothing to destroy when the size shrinks");

  public:
    InlineVector() = default;
    explicit InlineVector(size_t n, const T& value = T()) { resize(n, value); }
    template <class It, class = decltype(*std::declval<It&>(), ++std::declval<It&>())>
    InlineVector(It first, It last) {
        for (; first != last; ++first) push_back(T(*first));
    }
    InlineVector(std::initializer_list<T> values) : InlineVector(values.begin(), values.end()) {}
    // Copies only the elements in use, not all N.
    InlineVector(const InlineVector& other) { copy_from(other); }
    InlineVector& operator=(const InlineVector& other) {
        if (this != &other) copy_from(other);
        return *this;
    }

    size_t size() const { return size_; }
    bool empty() const { return size_ == 0; }
    T* data() { return values_; }
    const T* data() const { return values_; }
    T& operator[](size_t i) { return values_[i]; }
    const T& operator[](size_t i) const { return values_[i]; }
    T* begin() { return values_; }
    T* end() { return values_ + size_; }
    const T* begin() const { return values_; }
    const T* end() const { return values_ + size_; }
    T& front() { return values_[0]; }
    const T& front() const { return values_[0]; }
    T& back() { return values_[size_ - 1]; }
    const T& back() const { return values_[size_ - 1]; }

    void push_back(const T& value) {
        check_capacity(size_ + 1);
        values_[size_++] = value;
    }
    void resize(size_t n, const T& value = T()) {
        check_capacity(n);
        for (size_t i = size_; i < n; ++i) values_[i] = value;
        size_ = n;
    }
    void assign(size_t n, const T& value) {
        size_ = 0;
        resize(n, value);
    }
    T* insert(T* at, const T& value) {
        check_capacity(size_ + 1);
        for (T* p = end(); p != at; --p) *p = *(p - 1);
        *at = value;
        ++size_;
        return at;
    }

    friend bool operator==(const InlineVector& a, const InlineVector& b) {
        if (a.size_ != b.size_) return false;
        for (size_t i = 0; i < a.size_; ++i) {
            if (!(a.values_[i] == b.values_[i])) return false;
        }
        return true;
    }
    friend bool operator!=(const InlineVector& a, const InlineVector& b) { return !(a == b); }

  private:
    static void check_capacity(size_t n) {
        if (n > N) throw std::length_error("more than " + std::to_string(N) + " entries in an inline list");
    }
    // Element by element, not as a memcpy: these lists are copied right after their elements
    // were stored one by one, and memcpy's wider loads of such fresh stores stall until the
    // stores complete (a failed store-to-load forwarding); GCC would turn the loop into memcpy.
#if defined(__GNUC__) && !defined(__clang__)
    __attribute__((optimize("no-tree-loop-distribute-patterns")))
#endif
    void copy_from(const InlineVector& other) {
        size_ = other.size_;
        for (size_t i = 0; i < size_; ++i) values_[i] = other.values_[i];
    }

    size_t size_ = 0;
    T values_[N];
};

// A shape, or an operand's strides in elements: one entry per axis.
using Extents = InlineVector<int64_t, kMaxDims>;

// Every operand's strides, in the driver's operand order.
constexpr size_t kMaxListedOperands = 8;
using OperandExtents = InlineVector<Extents, kMaxListedOperands>;

}  // namespace fastloss

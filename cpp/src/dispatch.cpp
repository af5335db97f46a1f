// Detects the CPU once and chooses the widest kernel table it can run. FASTLOSS_CPU_CAPABILITY
// (scalar | avx2 | avx512) overrides the choice, so every variant can be tested on one machine.
//
// A table's kernel_table() is only ever called for a variant this CPU supports: the per-ISA
// translation units may use their instructions anywhere, static initialisation included.
#include <atomic>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <vector>

#include "fastloss/dispatch.hpp"

namespace fastloss {
namespace {

struct Variant {
    const char* name;
    const KernelTable& (*table)();
    bool (*supported)();
};

bool always() { return true; }

// (Defined whenever a variant needs it: the AVX-512 check builds on it even in a build that
// leaves the AVX2 variant out, FASTLOSS_SKIP_ISAS=avx2.)
#if defined(FASTLOSS_HAVE_AVX2) || defined(FASTLOSS_HAVE_AVX512)
bool cpu_has_avx2() {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
           __builtin_cpu_supports("f16c");
}
#endif
#if defined(FASTLOSS_HAVE_AVX512)
bool cpu_has_avx512() {
    __builtin_cpu_init();
    // libgcc checks XCR0 too, so these are false when the OS does not save the zmm state.
    return cpu_has_avx2() && __builtin_cpu_supports("avx512f") &&
           __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
           __builtin_cpu_supports("avx512dq");
}
#endif

// Slowest first.
const std::vector<Variant>& compiled_variants() {
    static const std::vector<Variant> variants = {
        {"scalar", &scalar::kernel_table, &always},
#if defined(FASTLOSS_HAVE_AVX2)
        {"avx2", &avx2::kernel_table, &cpu_has_avx2},
#endif
#if defined(FASTLOSS_HAVE_AVX512)
        {"avx512", &avx512::kernel_table, &cpu_has_avx512},
#endif
    };
    return variants;
}

std::string join(const std::vector<std::string>& names) {
    std::string out;
    for (const auto& n : names) out += (out.empty() ? "" : ", ") + n;
    return out;
}

const Variant& find_available(const std::string& name, const char* what) {
    for (const auto& v : compiled_variants()) {
        if (name == v.name) {
            if (!v.supported()) {
                throw std::invalid_argument(std::string(what) + "='" + name +
                                            "' is not supported by this CPU (available: " +
                                            join(available_capabilities()) + ")");
            }
            return v;
        }
    }
    throw std::invalid_argument(std::string(what) + "='" + name +
                                "' is not a known capability (expected one of: " +
                                join(compiled_capabilities()) + ")");
}

const KernelTable* choose_initial_table() {
    if (const char* env = std::getenv("FASTLOSS_CPU_CAPABILITY"); env && *env) {
        return &find_available(env, "FASTLOSS_CPU_CAPABILITY").table();
    }
    const Variant* best = nullptr;
    for (const auto& v : compiled_variants()) {
        if (v.supported()) best = &v;
    }
    return &best->table();
}

std::atomic<const KernelTable*> g_active{nullptr};

}  // namespace

const KernelTable& active_kernels() {
    const KernelTable* table = g_active.load(std::memory_order_acquire);
    if (!table) {
        table = choose_initial_table();
        const KernelTable* expected = nullptr;
        if (!g_active.compare_exchange_strong(expected, table)) table = expected;
    }
    return *table;
}

std::vector<std::string> available_capabilities() {
    std::vector<std::string> names;
    for (const auto& v : compiled_variants()) {
        if (v.supported()) names.emplace_back(v.name);
    }
    return names;
}

std::vector<std::string> compiled_capabilities() {
    std::vector<std::string> names;
    for (const auto& v : compiled_variants()) names.emplace_back(v.name);
    return names;
}

void set_capability(const std::string& name) {
    g_active.store(&find_available(name, "capability").table(), std::memory_order_release);
}

}  // namespace fastloss

// Chooses the kernel table for this CPU once, honouring FASTLOSS_CPU_CAPABILITY, as ATen's
// DispatchStub does with ATEN_CPU_CAPABILITY.
#pragma once

#include <string>
#include <vector>

#include "fastloss/kernel_table.hpp"

namespace fastloss {

// The active table. The first call detects the CPU and reads FASTLOSS_CPU_CAPABILITY; an unknown
// or unsupported value throws std::invalid_argument (the module import then fails with it).
const KernelTable& active_kernels();

// Variants compiled into this build that this CPU can run, slowest first ("scalar", "avx2", ...).
std::vector<std::string> available_capabilities();

// Variants compiled into this build, whether or not this CPU can run them.
std::vector<std::string> compiled_capabilities();

// Makes `name` the active variant (tests use it to run every variant in one process). Throws
// std::invalid_argument for a name that is not available on this CPU.
void set_capability(const std::string& name);

}  // namespace fastloss

// What the numbers were measured on, printed at the top of every run.
#pragma once

#include <string>

namespace fastloss_bench {

// "model name" from /proc/cpuinfo, or "unknown" where there is none (not Linux, some VMs).
std::string cpu_model();

// The active transparent-huge-page mode ("always", "madvise", "never"), or "unknown".
std::string transparent_huge_pages();

}  // namespace fastloss_bench

// What the numbers were measured on, printed at the top of every run.
#pragma once

#include <string>

namespace fastloss_bench {

// "model name" from /proc/cpuinfo, or "unknown" where there is none (not Linux, some VMs).
std::string cpu_model();

// The active transparent-huge-page mode ("always", "madvise", "never"), or "unknown".
std::string transparent_huge_pages();

// /proc/loadavg's 1-, 5- and 15-minute averages, or "unknown". On a machine with few cores, any
// other busy process slows the all-threads numbers far more than the one-thread ones.
std::string load_average();

// CPU time used by the whole machine and by this process so far, to tell afterwards how much
// other processes (and, in a VM, the host: steal) took from the run.
struct CpuUsage {
    double wall_s = 0;
    double machine_busy_s = 0;  // all CPUs: user + nice + system + irq + softirq
    double steal_s = 0;         // time the hypervisor ran something else
    double self_s = 0;          // this process: user + system
    bool valid = false;         // false where /proc/stat is missing
};
CpuUsage sample_cpu_usage();

// "other processes: 0.03 cores on average, steal 0.0%" between two samples, with a warning when
// the others took enough to distort the all-threads numbers.
std::string describe_interference(const CpuUsage& start, const CpuUsage& end, int cpus);

}  // namespace fastloss_bench

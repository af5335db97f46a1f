#include "system_info.hpp"

#include <sys/resource.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>

#include "timing.hpp"

namespace fastloss_bench {
namespace {

std::string trim(const std::string& s) {
    const size_t b = s.find_first_not_of(" \t");
    const size_t e = s.find_last_not_of(" \t\r\n");
    return b == std::string::npos ? std::string() : s.substr(b, e - b + 1);
}

}  // namespace

std::string cpu_model() {
    std::ifstream in("/proc/cpuinfo");
    for (std::string line; std::getline(in, line);) {
        if (line.rfind("model name", 0) == 0) {
            const size_t colon = line.find(':');
            if (colon != std::string::npos) return trim(line.substr(colon + 1));
        }
    }
    return "unknown";
}

std::string transparent_huge_pages() {
    // The file reads e.g. "always [madvise] never"; the bracketed word is the active mode.
    std::ifstream in("/sys/kernel/mm/transparent_hugepage/enabled");
    std::string line;
    if (!std::getline(in, line)) return "unknown";
    const size_t open = line.find('['), close = line.find(']');
    if (open == std::string::npos || close == std::string::npos || close < open) return trim(line);
    return line.substr(open + 1, close - open - 1);
}

CpuUsage sample_cpu_usage() {
    CpuUsage u;
    u.wall_s = now_seconds();
    rusage self{};
    if (getrusage(RUSAGE_SELF, &self) == 0) {
        u.self_s = double(self.ru_utime.tv_sec) + 1e-6 * double(self.ru_utime.tv_usec) +
                   double(self.ru_stime.tv_sec) + 1e-6 * double(self.ru_stime.tv_usec);
    }
    std::ifstream in("/proc/stat");
    std::string cpu;
    long long user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0;
    if (in >> cpu >> user >> nice >> system >> idle >> iowait >> irq >> softirq >> steal &&
        cpu == "cpu") {
        const double tick = 1.0 / double(sysconf(_SC_CLK_TCK));
        u.machine_busy_s = double(user + nice + system + irq + softirq) * tick;
        u.steal_s = double(steal) * tick;
        u.valid = true;
    }
    return u;
}

std::string describe_interference(const CpuUsage& a, const CpuUsage& b, int cpus) {
    if (!a.valid || !b.valid || b.wall_s <= a.wall_s) return "other load: unknown";
    const double wall = b.wall_s - a.wall_s;
    double others = ((b.machine_busy_s - a.machine_busy_s) - (b.self_s - a.self_s)) / wall;
    if (others < 0) others = 0;  // tick granularity
    const double steal = (b.steal_s - a.steal_s) / (wall * cpus);
    char buf[200];
    std::snprintf(buf, sizeof buf, "other processes used %.2f of %d cores on average, steal %.1f%%",
                  others, cpus, 100.0 * steal);
    std::string text = buf;
    // A tenth of a core on average is enough for a 2-thread run to lose whole time slices.
    if (others > 0.1 || steal > 0.02) text += ": all-threads numbers are unreliable, rerun when idle";
    return text;
}

std::string load_average() {
    std::ifstream in("/proc/loadavg");
    std::string one, five, fifteen;
    if (!(in >> one >> five >> fifteen)) return "unknown";
    return one + " " + five + " " + fifteen;
}

}  // namespace fastloss_bench

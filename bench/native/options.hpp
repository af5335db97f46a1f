// Command line and the run plan it resolves to (which ISAs, thread counts, sizes, repeats).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace fastloss_bench {

enum class DType { f32, f64, f16, bf16 };
const char* dtype_name(DType t);
// The exps and logs of float16 and bfloat16 kernels are float32's: they compute in float32.
inline DType compute_dtype(DType t) { return t == DType::f64 ? DType::f64 : DType::f32; }

// Where the class axis lies: rows of contiguous classes (N, C), axis 1, or the class axis in
// columns, (C, N) with axis 0, every position's classes a stride of N apart.
enum class Layout { rows, columns };
const char* layout_name(Layout l);

struct KernelShape {
    int64_t rows;     // positions
    int64_t classes;
};

struct Plan {
    bool quick = false;
    std::vector<std::string> isas;  // benchmarked kernel variants, slowest first
    std::vector<int> threads;       // thread counts, ascending
    int max_threads = 1;            // fastloss::get_num_threads() at start
    std::string csv_path;           // empty: no CSV
    int repeats = 0;                // timed calls per measurement (after one warm-up call)
    int64_t bandwidth_bytes = 0;    // read/write arrays; copy uses two arrays of half this
    double math_seconds = 0;        // target duration of one math-throughput measurement
    std::vector<KernelShape> shapes;
    std::vector<DType> dtypes;
    std::vector<Layout> layouts;
    std::vector<std::string> ops;  // names from kernel_cases.hpp; every op when empty
    int64_t stream_min_bytes = -1;  // outputs streamed from this size on; -1: the library's default
};

// Parses argv and fills in the defaults. Throws std::invalid_argument (with a message meant for
// the user) on a bad flag or an ISA that this CPU cannot run; returns false after printing
// --help.
bool make_plan(int argc, char** argv, Plan& plan);

const char* usage();

}  // namespace fastloss_bench

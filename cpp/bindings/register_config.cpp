// Capability and thread-count introspection: cpu_capability(), set_num_threads(), ...
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "fastloss/dispatch.hpp"
#include "fastloss/parallel.hpp"
#include "ops/streaming_stores.hpp"

#ifndef FASTLOSS_VERSION
#define FASTLOSS_VERSION "unknown"
#endif

namespace py = pybind11;

namespace fastloss::bindings {

void register_config(py::module_& m) {
    m.attr("__version__") = FASTLOSS_VERSION;
    m.def("cpu_capability", [] { return std::string(active_kernels().isa_name); },
          "Name of the active instruction-set variant.");
    m.def("available_capabilities", &available_capabilities,
          "Variants compiled into this build that this CPU can run, slowest first.");
    m.def("compiled_capabilities", &compiled_capabilities, "Variants compiled into this build.");
    m.def("_set_capability", &set_capability, py::arg("name"),
          "Make `name` the active variant (for tests).");
    m.def("get_num_threads", &get_num_threads);
    m.def("set_num_threads", [](int n) {
        if (n < 1) throw std::invalid_argument("set_num_threads: n must be >= 1, got " + std::to_string(n));
        set_num_threads(n);
    }, py::arg("n"));
    m.def("_set_streaming_store_min_bytes", &set_streaming_store_min_bytes, py::arg("bytes"),
          "Outputs at least this large are streamed (for tests; negative: the default). Returns the "
          "previous threshold.");
    m.def("forked_child_runs_serially", &forked_child_runs_serially);
    m.def("openmp_runtime", [] { return std::string(openmp_runtime()); });
}

}  // namespace fastloss::bindings

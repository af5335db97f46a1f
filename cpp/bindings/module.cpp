// fastloss._core: the compiled half of fastloss. Each family of functions registers itself from
// its own file; this file only assembles the module.
#include <pybind11/pybind11.h>

#include "fastloss/dispatch.hpp"

namespace py = pybind11;

namespace fastloss::bindings {
void register_config(py::module_& m);
void register_softmax(py::module_& m);
void register_losses(py::module_& m);
void register_distillation(py::module_& m);
void register_cosine_embedding(py::module_& m);
void register_elementwise_losses(py::module_& m);
void register_vector_math(py::module_& m);
void register_row_statistics(py::module_& m);
void register_linear_cross_entropy(py::module_& m);
void register_topk_distillation(py::module_& m);
}  // namespace fastloss::bindings

PYBIND11_MODULE(_core, m, py::mod_gil_not_used()) {
    m.doc() = "fastloss native kernels (private: use the fastloss package)";
    // Choose the kernel table now, so an invalid FASTLOSS_CPU_CAPABILITY fails the import with a
    // clear message instead of failing the first call.
    fastloss::active_kernels();
    fastloss::bindings::register_config(m);
    fastloss::bindings::register_softmax(m);
    fastloss::bindings::register_losses(m);
    fastloss::bindings::register_distillation(m);
    fastloss::bindings::register_cosine_embedding(m);
    fastloss::bindings::register_elementwise_losses(m);
    fastloss::bindings::register_vector_math(m);
    fastloss::bindings::register_row_statistics(m);
    fastloss::bindings::register_linear_cross_entropy(m);
    fastloss::bindings::register_topk_distillation(m);
}

// This ISA's kernel table: the one external entry point of the per-ISA build.
#include "fastloss/kernel_table.hpp"

#define FASTLOSS_STRINGIFY_(x) #x
#define FASTLOSS_STRINGIFY(x) FASTLOSS_STRINGIFY_(x)

namespace fastloss {
namespace FASTLOSS_ISA_NS {

void register_softmax_kernels(KernelTable& table);
void register_softmax_backward_kernels(KernelTable& table);
void register_cross_entropy_kernels(KernelTable& table);
void register_cross_entropy_grad_kernels(KernelTable& table);
void register_cross_entropy_softcap_kernels(KernelTable& table);
void register_distillation_kernels(KernelTable& table);
void register_entropy_kernels(KernelTable& table);
void register_cosine_kernels(KernelTable& table);
void register_kl_div_kernels(KernelTable& table);
void register_binary_cross_entropy_kernels(KernelTable& table);
void register_sigmoid_focal_loss_kernels(KernelTable& table);
void register_linear_cross_entropy_kernels(KernelTable& table);
void register_topk_distillation_kernels(KernelTable& table);
void register_softcap_kernels(KernelTable& table);
void register_vector_math_kernels(KernelTable& table);
void register_bandwidth_kernels(KernelTable& table);

namespace {
KernelTable build_table() {
    KernelTable table{};
    table.isa_name = FASTLOSS_STRINGIFY(FASTLOSS_ISA_NS);
    register_softmax_kernels(table);
    register_softmax_backward_kernels(table);
    register_cross_entropy_kernels(table);
    register_cross_entropy_grad_kernels(table);
    register_cross_entropy_softcap_kernels(table);
    register_distillation_kernels(table);
    register_entropy_kernels(table);
    register_cosine_kernels(table);
    register_kl_div_kernels(table);
    register_binary_cross_entropy_kernels(table);
    register_sigmoid_focal_loss_kernels(table);
    register_linear_cross_entropy_kernels(table);
    register_topk_distillation_kernels(table);
    register_softcap_kernels(table);
    register_vector_math_kernels(table);
    register_bandwidth_kernels(table);
    return table;
}
}  // namespace

const KernelTable& kernel_table() {
    static const KernelTable table = build_table();
    return table;
}

}  // namespace FASTLOSS_ISA_NS
}  // namespace fastloss

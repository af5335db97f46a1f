// The merge of mergeable row statistics ([Note: mergeable row statistics] in row_statistics.hpp).
// Baseline code with libm: it runs once per row and piece, never per class.
#include "fastloss/row_statistics.hpp"

#include <cmath>

#include "fastloss/parallel.hpp"

namespace fastloss {

namespace {
// S_P exp(M_P - M) for a piece whose max is M_P, once the merged max is M. A piece without a
// finite max contributes nothing when it is empty (-inf, S = 0): exp(-inf - -inf) would be NaN.
double rescaled_sum(double piece_max, double piece_sum, double merged_max) {
    if (piece_sum == 0.0 && piece_max == -HUGE_VAL) return 0.0;
    if (piece_max == merged_max) return piece_sum;  // also M = +inf: S stays what the piece had
    return piece_sum * std::exp(piece_max - merged_max);
}
}  // namespace

RowStatistics merged_row_statistics(const RowStatistics& a, const RowStatistics& b) {
    // NaN-propagating max: a NaN logit anywhere in the row makes the merged row NaN.
    const double m = std::isnan(a.max) || std::isnan(b.max) ? NAN : (a.max < b.max ? b.max : a.max);
    return {m, rescaled_sum(a.max, a.sum_exp, m) + rescaled_sum(b.max, b.sum_exp, m), a.target_logit + b.target_logit,
            a.weighted_logit_sum + b.weighted_logit_sum, a.target_mass + b.target_mass};
}

void merge_row_statistics(RowStatistics* into, const RowStatistics* piece, int64_t rows) {
    parallel_for(rows, kRowStatisticsFields * 8, [&](int64_t begin, int64_t end) {
        for (int64_t r = begin; r < end; ++r) into[r] = merged_row_statistics(into[r], piece[r]);
    });
}

}  // namespace fastloss

// Mergeable softmax row statistics: the one primitive that lets a row's softmax be computed in
// pieces (vocabulary tiles of linear_cross_entropy, class-axis chunks of fastloss.dask, vocabulary
// shards across workers) and combined exactly afterwards.
//
// [Note: mergeable row statistics] A piece of a row, classes c in P, is summarised by
//   max                 M_P = max_{c in P} x_c                      (-inf for no class)
//   sum_exp             S_P = sum_{c in P} exp(x_c - M_P)           (0 when M_P = -inf)
//   target_logit        x_y if the row's index target y is in P, else 0
//   weighted_logit_sum  sum_{c in P} u_c x_c, with u_c = w_c (index targets with label smoothing)
//                       or w_c q'_c (probability targets, q' = (1-eps) q + eps/C)
//   target_mass         sum_{c in P} w_c q'_c (probability targets)
// Two pieces merge by online-softmax merging (Milakov and Gimelshein, arXiv:1805.02867):
//   M = max(M_a, M_b),  S = S_a exp(M_a - M) + S_b exp(M_b - M),  the other fields add.
// The merge is associative and commutative up to rounding, so any split of the classes gives the
// row's logsumexp M + log S and, from the sums, every term of a cross-entropy. The fields are
// float64 whatever the logits' dtype: a merge of many pieces must not lose what the pieces kept.
// A NaN in any piece makes M NaN and the row's loss NaN; M = +inf makes S NaN, as torch does.
#pragma once

#include <cstdint>

namespace fastloss {

struct RowStatistics {
    double max;
    double sum_exp;
    double target_logit;
    double weighted_logit_sum;
    double target_mass;
};

// The number of float64 fields, as Python sees a statistics array: shape (..., kRowStatisticsFields).
constexpr int64_t kRowStatisticsFields = 5;
static_assert(sizeof(RowStatistics) == kRowStatisticsFields * sizeof(double), "RowStatistics must be packed");

// The statistics of an empty piece: the identity of the merge.
constexpr RowStatistics kEmptyRowStatistics{-__builtin_inf(), 0.0, 0.0, 0.0, 0.0};

// into[r] = merge(into[r], piece[r]) for r in [0, rows); threads as parallel.hpp decides.
void merge_row_statistics(RowStatistics* into, const RowStatistics* piece, int64_t rows);

// One row's merge (for callers that already run per row).
RowStatistics merged_row_statistics(const RowStatistics& a, const RowStatistics& b);

}  // namespace fastloss

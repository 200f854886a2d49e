// The CPU backend's projections: y[t, j] = dot(x[t, :], w[j, :]) for a row-major x [n, in] and a
// row-major weight w [out, in] (PyTorch's Linear layout), float32.
//
// Every output element is computed with the same arithmetic whatever n is and wherever the element
// falls in the blocking or the thread split: an 8-lane FMA chain over k (k = 0, 8, 16, ...), a
// fixed horizontal sum of the 8 lanes, then the k tail (in % 8) by scalar fma. So a sequence's
// logits do not depend on which other sequences share its batch (a BLAS sgemm picks different
// micro-kernels for different row counts and sgemv sums in yet another order, so with BLAS a seeded
// sample changed with the batch composition). This needs AVX2 + FMA at run time (x86-64); elsewhere
// it falls back to OpenBLAS sgemm, which is batch-dependent.
//
// Work is split over output columns j across up to num_threads std::threads when it is large
// enough to pay for their start-up.
//
// Thread-safety: a pure function of its arguments.
#pragma once

namespace kiln::cpu {

void LinearRows(const float* x, int n, int in, const float* w, int out, float* y, int num_threads);

// Whether LinearRows uses the batch-independent kernel on this machine (AVX2 + FMA).
bool LinearRowsIsBatchIndependent();

}  // namespace kiln::cpu

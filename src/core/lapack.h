// The few LAPACK routines lowbit needs, called through OpenBLAS's Fortran interface. (We link the OpenMP
// build of OpenBLAS directly; Debian's liblapacke would pull in the default pthread OpenBLAS as a second
// copy, whose spinning threads fight our OpenMP threads for the cores.)
#pragma once

extern "C" {
void spotrf_(const char* uplo, const int* n, float* a, const int* lda, int* info);
void spotri_(const char* uplo, const int* n, float* a, const int* lda, int* info);
void dpotrf_(const char* uplo, const int* n, double* a, const int* lda, int* info);
}

namespace lowbit::lapack {

// Row-major n×n symmetric matrices. LAPACK is column-major: a row-major matrix is its transpose, so asking
// for the Fortran "L" factor of the row-major array gives the row-major upper factor, and vice versa.

// Cholesky factorisation in place: A = Uᵀ U with U upper triangular (row-major), the strictly lower part left
// untouched. Returns LAPACK's info (0 = success, k > 0 = leading minor k not positive definite).
inline int cholesky_upper(float* a, int n) {
  int info = 0;
  const char uplo = 'L';
  spotrf_(&uplo, &n, a, &n, &info);
  return info;
}

// The same in double (QuIP's LDLQ).
inline int cholesky_upper(double* a, int n) {
  int info = 0;
  const char uplo = 'L';
  dpotrf_(&uplo, &n, a, &n, &info);
  return info;
}

// Inverse of a symmetric positive definite A from its upper Cholesky factor (as left by cholesky_upper): the
// upper triangle of `a` becomes the upper triangle of A⁻¹.
inline int cholesky_inverse_upper(float* a, int n) {
  int info = 0;
  const char uplo = 'L';
  spotri_(&uplo, &n, a, &n, &info);
  return info;
}

}  // namespace lowbit::lapack

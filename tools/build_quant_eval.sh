#!/bin/sh
# Builds tools/quant_eval against the release build's static libraries (run `cmake --build --preset release` first).
set -e
cd "$(dirname "$0")/.."
B=build/release
c++ -std=c++20 -O2 -march=x86-64-v2 -fopenmp -DFMT_SHARED -DHWY_SHARED_DEFINE -Isrc \
  -isystem /usr/include/x86_64-linux-gnu/openblas-openmp tools/quant_eval.cpp -o $B/quant_eval \
  -Wl,-rpath,/usr/lib/x86_64-linux-gnu/openblas-openmp \
  $B/liblowbit_eval.a $B/liblowbit_quant.a $B/liblowbit_model.a $B/liblowbit_io.a $B/liblowbit_kernels.a $B/liblowbit_formats.a \
  $B/liblowbit_core.a -Wl,--undefined=lowbit_blas_startup_check -lfmt -lhwy -lopenblas -lpcre2-8 -lsentencepiece -lgomp -lpthread
echo "built $B/quant_eval"

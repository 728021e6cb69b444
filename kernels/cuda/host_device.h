// DYTRAIN_HOST_DEVICE marks the functions that kernels call and CPU tests run too (cross_entropy_math.h,
// flash_attention_tiles.h): __host__ __device__ under nvcc, plain inline for a host compiler, so those headers need
// no CUDA header and their math is tested on machines without a GPU.
#pragma once

#ifdef __CUDACC__
#define DYTRAIN_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define DYTRAIN_HOST_DEVICE inline
#endif

#include "cuda-kernels.h"
#include <cuda_runtime.h>
#include <cublas_v2.h>
static cublasHandle_t handle;
extern "C" int oftcu_init (int ordinal, char *name, size_t name_len)
{
  if (cudaSetDevice (ordinal) != cudaSuccess) return -1;
  if (cublasCreate (&handle) != CUBLAS_STATUS_SUCCESS) return -1;
  return 0;
}

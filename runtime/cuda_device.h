// The cuda device: memory through the CUDA runtime, registered with the
// allocator on first use. Present in every build; without the CUDA backend or
// without a GPU, cuda_device_count() is 0 and cuda tensors cannot be made.
#pragma once

namespace visplay {

// Number of visible GPUs (0 when the build has no CUDA backend or the machine
// has no GPU). Registers the cuda device memory functions when > 0.
int cuda_device_count();

// Selects the GPU for this process (e.g. the local rank under MPI).
void cuda_set_device(int index);

// Blocks until all work queued on the current GPU is done.
void cuda_synchronize();

}  // namespace visplay

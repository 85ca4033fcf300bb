// The NCCL process group: collectives on GPU tensors, one GPU per rank. The
// communicator is set up from an ncclUniqueId that rank 0 creates and the
// MPI group broadcasts, so NCCL runs are launched with mpirun like CPU ones.
#pragma once
#include <memory>

#include "runtime/dist/process_group.h"

namespace visplay::dist {

// True when the build has NCCL (and CUDA).
bool nccl_available();

// A group over the ranks of `bootstrap` (normally world_group(), the MPI
// group), each rank on GPU `device`. Throws when NCCL is not built, there is
// no GPU, or the bootstrap group is not MPI while it has more than one rank.
std::shared_ptr<ProcessGroup> nccl_group(const std::shared_ptr<ProcessGroup>& bootstrap, int device);

}  // namespace visplay::dist

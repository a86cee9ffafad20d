// validation/mpi_shard.hpp — the few MPI calls `plx sweep` and `plx gen` use to shard work.
//
// Charter: one process group, rank 0 the writer. MPI is used only when plx was built with it
// (PLX_HAVE_MPI, CMake option PLX_MPI, on when Open MPI is found) AND the process was started by
// an MPI launcher (mpirun sets OMPI_COMM_WORLD_SIZE / PMI_SIZE); otherwise every call here is the
// single-process identity (rank 0 of 1) and no MPI library is touched. Messages are text.
#pragma once
#include <string>
#include <vector>

namespace plx::par {

struct World {
  int rank = 0, size = 1;
  bool active = false;  // MPI initialised by init()
};
const World& world();

// Messages are at most INT_MAX bytes (MPI counts are int): send_text refuses a longer one.

// Initialise MPI when built with it and launched by mpirun; safe to call once per process.
void init(int* argc, char*** argv);
void finalize();
// Stop every rank (after rank-local error reporting). Single process: std::exit(code).
[[noreturn]] void abort_all(int code);

void send_text(int dest, int tag, const std::string& text);
// Blocking receive from any rank; fills source and tag.
std::string recv_text(int* source, int* tag);
// Blocking receive of the next message from `source` with tag `tag` (messages between two ranks
// arrive in the order they were sent).
std::string recv_text_from(int source, int tag);
// Non-blocking test for a pending message (any source, any tag).
bool has_message();
// Gather one string from every rank onto rank 0 (rank order); other ranks get an empty vector.
std::vector<std::string> gather_text(const std::string& mine);
void barrier();

}  // namespace plx::par

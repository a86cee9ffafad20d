// validation/mpi_shard.cpp — see mpi_shard.hpp.
#include "validation/mpi_shard.hpp"

#include <limits>

#include <cstdlib>
#include <vector>

#ifdef PLX_HAVE_MPI
#include <mpi.h>
#endif

#include "reference/errors.hpp"

namespace plx::par {
namespace {
World g_world;
bool launched_by_mpi() {
  for (const char* v : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK"})
    if (std::getenv(v)) return true;
  return false;
}
}  // namespace

const World& world() { return g_world; }

void init(int* argc, char*** argv) {
#ifdef PLX_HAVE_MPI
  if (g_world.active || !launched_by_mpi()) return;
  int provided = 0;
  if (MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS) throw Error("MPI_Init_thread failed");
  MPI_Comm_rank(MPI_COMM_WORLD, &g_world.rank);
  MPI_Comm_size(MPI_COMM_WORLD, &g_world.size);
  g_world.active = true;
#else
  (void)argc, (void)argv;
#endif
}

void finalize() {
#ifdef PLX_HAVE_MPI
  if (g_world.active) MPI_Finalize();
  g_world.active = false;
#endif
}

void abort_all(int code) {
#ifdef PLX_HAVE_MPI
  if (g_world.active) MPI_Abort(MPI_COMM_WORLD, code);
#endif
  std::exit(code);
}

void send_text(int dest, int tag, const std::string& text) {
#ifdef PLX_HAVE_MPI
  if (!g_world.active) throw Error("send_text without MPI");
  if (text.size() > std::size_t(std::numeric_limits<int>::max()))
    throw Error("MPI message of " + std::to_string(text.size()) + " bytes exceeds MPI's int count (2 GiB); use more ranks");
  MPI_Send(text.data(), int(text.size()), MPI_CHAR, dest, tag, MPI_COMM_WORLD);
#else
  (void)dest, (void)tag, (void)text;
  throw Error("send_text: plx was built without MPI");
#endif
}

namespace {
// Blocking receive of the next message matching (source, tag); either may be MPI_ANY_*.
std::string recv_matching(int source, int tag, int* got_source, int* got_tag, const char* who) {
#ifdef PLX_HAVE_MPI
  if (!g_world.active) throw Error(std::string(who) + " without MPI");
  MPI_Status st;
  MPI_Probe(source, tag, MPI_COMM_WORLD, &st);
  int n = 0;
  MPI_Get_count(&st, MPI_CHAR, &n);
  std::string s(std::size_t(n), '\0');
  MPI_Recv(s.data(), n, MPI_CHAR, st.MPI_SOURCE, st.MPI_TAG, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
  if (got_source) *got_source = st.MPI_SOURCE;
  if (got_tag) *got_tag = st.MPI_TAG;
  return s;
#else
  (void)source, (void)tag, (void)got_source, (void)got_tag;
  throw Error(std::string(who) + ": plx was built without MPI");
#endif
}
}  // namespace

std::string recv_text(int* source, int* tag) {
#ifdef PLX_HAVE_MPI
  return recv_matching(MPI_ANY_SOURCE, MPI_ANY_TAG, source, tag, "recv_text");
#else
  return recv_matching(-1, -1, source, tag, "recv_text");
#endif
}

std::string recv_text_from(int source, int tag) { return recv_matching(source, tag, nullptr, nullptr, "recv_text_from"); }

bool has_message() {
#ifdef PLX_HAVE_MPI
  if (!g_world.active) return false;
  int flag = 0;
  MPI_Iprobe(MPI_ANY_SOURCE, MPI_ANY_TAG, MPI_COMM_WORLD, &flag, MPI_STATUS_IGNORE);
  return flag != 0;
#else
  return false;
#endif
}

std::vector<std::string> gather_text(const std::string& mine) {
#ifdef PLX_HAVE_MPI
  if (g_world.active && g_world.size > 1) {
    int n = int(mine.size());
    std::vector<int> counts(g_world.size), displs(g_world.size);
    MPI_Gather(&n, 1, MPI_INT, counts.data(), 1, MPI_INT, 0, MPI_COMM_WORLD);
    std::string all;
    if (g_world.rank == 0) {
      long tot = 0;
      for (int r = 0; r < g_world.size; ++r) displs[r] = int(tot), tot += counts[r];
      all.resize(std::size_t(tot));
    }
    MPI_Gatherv(mine.data(), n, MPI_CHAR, all.data(), counts.data(), displs.data(), MPI_CHAR, 0, MPI_COMM_WORLD);
    std::vector<std::string> out;
    if (g_world.rank == 0)
      for (int r = 0; r < g_world.size; ++r) out.push_back(all.substr(std::size_t(displs[r]), std::size_t(counts[r])));
    return out;
  }
#endif
  return {mine};
}

void barrier() {
#ifdef PLX_HAVE_MPI
  if (g_world.active) MPI_Barrier(MPI_COMM_WORLD);
#endif
}

}  // namespace plx::par

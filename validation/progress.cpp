// validation/progress.cpp — see progress.hpp.
#include "validation/progress.hpp"

#include <unistd.h>

#include <cstdio>

namespace plx {

Progress::Progress(std::string l, bool o, long t, long s)
    : label(std::move(l)), on(o), tty(::isatty(2) != 0), total(t), start_done(s) {}

void Progress::update(long done, const std::string& what) {
  if (!on) return;
  const double el = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const long newly = done - start_done;
  const double eta = newly > 0 ? el / double(newly) * double(total - done) : 0;
  if (tty) {
    const int w = 30, fill = total ? int(w * done / total) : w;
    std::string bar(std::size_t(fill), '#');
    bar += std::string(std::size_t(w - fill), '.');
    std::fprintf(stderr, "\r%s [%s] %ld/%ld %3d%%  elapsed %.0fs  ETA %.0fs   ", label.c_str(), bar.c_str(), done, total,
                 total ? int(100 * done / total) : 100, el, eta);
    if (done == total) std::fputs("\n", stderr);
  } else {
    std::fprintf(stderr, "%s: [%ld/%ld] %s (elapsed %.1f s, ETA %.0f s)\n", label.c_str(), done, total, what.c_str(), el, eta);
  }
  std::fflush(stderr);
}

}  // namespace plx

// validation/progress.hpp — the progress meter of the long-running commands (`plx sweep`, `plx gen`).
//
// On a terminal: one line redrawn in place with a bar, done/total, elapsed time and an ETA
// (elapsed / newly done x remaining). Otherwise (a log file, CI): one plain line per update
// naming what finished, so the log is readable and grep-able. Output goes to stderr only.
#pragma once
#include <chrono>
#include <string>

namespace plx {

struct Progress {
  std::string label;    // "plx sweep", "plx gen: <case>"
  bool on = true, tty = false;
  long total = 0, start_done = 0;  // start_done: already done before this run (resumed work)
  std::chrono::steady_clock::time_point t0 = std::chrono::steady_clock::now();

  Progress(std::string label, bool on, long total, long start_done = 0);
  // `done` items are finished, the last one being `what`.
  void update(long done, const std::string& what);
};

}  // namespace plx

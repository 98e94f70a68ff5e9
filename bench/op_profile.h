// Where the time of a decoding call goes: LibTorch's own op profiler, folded
// into self time per op name (time inside an op minus the ops it called), so
// the table adds up to the wall time measured around the call.
#pragma once

#include <functional>
#include <string>

namespace quantmt::bench {

// Runs `work` once under the op profiler and prints the `top` op names by
// self time, with "(outside any op)" for the rest of the wall time.
// Returns false, having run nothing, when this LibTorch has no profiler.
bool PrintOpProfile(const std::function<void()>& work, int top, const std::string& title);

}  // namespace quantmt::bench

// Ceilings the benchmark measures on this machine, so rates are reported as fractions of them.
#pragma once
#include <cstdint>

namespace jamba::cpu {

// Float32 FMA rate of the whole pool: independent 16-lane FMA chains on every thread (GFLOP/s).
double measure_fma_peak(double seconds);

// Read bandwidth over a buffer much larger than the caches, summed by every thread (GB/s).
double measure_read_bandwidth(double seconds);

}  // namespace jamba::cpu

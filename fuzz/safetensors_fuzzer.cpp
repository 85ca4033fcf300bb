// libFuzzer target: the safetensors header parser (model/safetensors.cpp) on
// arbitrary bytes. A header that is accepted must describe tensors that lie inside
// the data section, do not overlap and have exactly their shape's byte size; every
// accepted tensor's bytes are read so ASan sees any out-of-range offset.
#include <cstddef>
#include <cstdint>

#include "fuzz/fuzz_util.h"
#include "model/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace visplay;
  const std::string name = "fuzz.safetensors";
  SafetensorsHeader header;
  try {
    header = parse_safetensors(data, size, name);
  } catch (const std::runtime_error& e) {
    fuzz::check_error_names(e, name);
    return 0;
  }
  fuzz::check(header.data_offset >= 8 && header.data_offset <= size, "data offset out of range");
  const size_t data_size = size - header.data_offset;
  const uint8_t* section = data + header.data_offset;
  size_t previous_end = 0;
  unsigned checksum = 0;
  for (const SafetensorsEntry& e : header.entries) {
    fuzz::check(e.begin <= e.end && e.end <= data_size, "tensor '" + e.name + "' out of range");
    fuzz::check(e.begin >= previous_end, "tensor '" + e.name + "' overlaps the one before");
    previous_end = e.end;
    uint64_t numel = 1;
    for (int64_t d : e.shape) {
      fuzz::check(d >= 0, "tensor '" + e.name + "' has a negative dimension");
      numel *= static_cast<uint64_t>(d);
    }
    fuzz::check(numel * dtype_size(e.dtype) == e.end - e.begin,
                "tensor '" + e.name + "' byte size does not match its shape");
    for (size_t i = e.begin; i < e.end; ++i) checksum += section[i];
  }
  fuzz::sink = checksum;
  return 0;
}

// End-to-end bit check: 4 AdamW training steps of the demo VLM (1 or 2 threads), then a
// generation; prints each loss bit-exactly and an FNV hash of all parameters and tokens.
#include <cstdio>
#include <cstring>
#include "bench/demo_setup.h"
#include "model/sampler.h"
#include "runtime/ops.h"
#include "runtime/optim.h"
using namespace visplay;
using namespace visplay::bench;
uint64_t fnv(uint64_t h, const void* p, size_t n) { auto* b = (const unsigned char*)p; for (size_t i=0;i<n;++i){h^=b[i];h*=1099511628211ull;} return h; }
int main() {
  VLM model(demo_config());
  model.init_weights(7);
  model.params().set_requires_grad(true);
  std::vector<Tensor> params = model.params().tensors();
  AdamW opt(params, AdamWOptions{1e-3, 0.9, 0.95, 1e-8, 0.01});
  TrainBatch batch = demo_train_batch(model.config(), 16, 40, 11);
  for (int s = 0; s < 4; ++s) {
    opt.zero_grad();
    Tensor loss = demo_loss(model, batch);
    loss.backward();
    opt.step();
    printf("step %d loss %a\n", s, loss.item());
  }
  uint64_t h = 1469598103934665603ull;
  for (const Tensor& p : params) { Tensor c = p.detach().contiguous(); h = fnv(h, c.raw_data(), c.numel() * 4); }
  printf("params hash %016llx\n", (unsigned long long)h);
  NoGradGuard ng;
  std::vector<PromptInput> prompts = demo_prompts(model.config(), 8, 13);
  std::vector<uint64_t> seeds = derive_seeds(17, 64);
  SamplingOptions o; o.temperature = 1.0; o.max_new_tokens = 32;
  std::vector<Generation> out = generate(model, prompts, 8, o, seeds);
  uint64_t g = 1469598103934665603ull;
  for (auto& x : out) g = fnv(g, x.tokens.data(), x.tokens.size() * sizeof(x.tokens[0]));
  printf("tokens hash %016llx (%zu generations)\n", (unsigned long long)g, out.size());
}

#include "family/family.h"

namespace drafteu {

void FamilyCache::truncate(int64_t new_length) {
  for (auto& c : caches_) c.truncate(new_length);
}

void FamilyCache::select_rows(const torch::Tensor& rows) {
  for (auto& c : caches_) c.select_rows(rows);
}

}  // namespace drafteu

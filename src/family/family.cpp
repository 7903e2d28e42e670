#include "family/family.h"

#include "util/error.h"

namespace drafteu {

void FamilyCache::truncate(int64_t new_length) {
  for (auto& c : caches_) c.truncate(new_length);
}

void FamilyCache::select_rows(const torch::Tensor& rows) {
  for (auto& c : caches_) c.select_rows(rows);
}

void FamilyCache::mask_positions(int64_t row, int64_t from, int64_t to) {
  for (auto& c : caches_) c.mask_positions(row, from, to);
}

void FamilyCache::append_rows(const FamilyCache& other) {
  if (other.caches_.size() != caches_.size())
    fail("FamilyCache: cannot append a cache of ", other.caches_.size(), " members to one of ",
         caches_.size());
  for (size_t i = 0; i < caches_.size(); ++i) caches_[i].append_rows(other.caches_[i]);
}

void FamilyCache::compact(double min_fraction) {
  for (auto& c : caches_) c.compact(min_fraction);
}

}  // namespace drafteu

// One table of fields per config struct gives both of its JSON forms: `to_json`, and `from_json`
// (defaults overridden by the fields present; unknown fields, wrong types and out-of-range values
// fail with one error naming the source and the field's dotted path, "cfg.json: field 'train.lr'
// must be > 0 (got 0)"). Each field is declared once:
//
//   config::Fields<OsdConfig> f;
//   f.field("teachers", &OsdConfig::teachers, config::one_of({"family", "posterior"}))
//       .field("n_teachers", &OsdConfig::n_teachers, config::at_least<int64_t>(1))
//       .nested("lora", &OsdConfig::lora, lora_fields());
//
// Keys may be dotted ("family.sigma"): the JSON nests them. JSON null counts as absent.
#pragma once
#include <cstdint>
#include <functional>
#include <limits>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "util/error.h"

namespace drafteu::config {

// Where a value comes from: the file or command (`source`) and the dotted path inside it.
struct Where {
  std::string source, path;
  // Implicit: a bare source ("cfg.json") is the top of that source.
  Where(std::string source_ = {}, std::string path_ = {})  // NOLINT(google-explicit-constructor)
      : source(std::move(source_)), path(std::move(path_)) {}
  Where(const char* source_) : source(source_) {}  // NOLINT(google-explicit-constructor)
  Where at(const std::string& key) const { return {source, path.empty() ? key : path + "." + key}; }
  // "source" or "source path", for validate(source) functions that name fields themselves.
  std::string label() const { return path.empty() ? source : source + " " + path; }
};

// "<source>: field '<path>' <what>".
[[noreturn]] void fail_field(const Where& where, const std::string& what);
std::string preview(const nlohmann::json& j);  // json_preview (util/json.h)

// A rule on a field's value: "" when it holds, else what it must be ("must be >= 1").
template <typename T>
using Check = std::function<std::string(const T&)>;

template <typename T>
Check<T> at_least(T lo) {
  return [lo](const T& v) { return v >= lo ? std::string() : cat("must be at least ", lo); };
}
template <typename T>
Check<T> positive() {
  return [](const T& v) { return v > T{0} ? std::string() : std::string("must be positive"); };
}
template <typename T>
Check<T> in_range(T lo, T hi) {
  return [lo, hi](const T& v) {
    return v >= lo && v <= hi ? std::string() : cat("must lie in [", lo, ", ", hi, "]");
  };
}
Check<std::string> one_of(std::vector<std::string> names);
template <typename T>
Check<std::vector<T>> not_empty() {
  return
      [](const std::vector<T>& v) { return v.empty() ? std::string("is empty") : std::string(); };
}

// JSON <-> value, strictly typed: an integer field takes only JSON integers (never 2.5), an
// unsigned one only non-negative ones.
template <typename T>
struct Codec {
  static nlohmann::json write(const T& v) { return v; }
  static T read(const nlohmann::json& j, const Where& w) {
    if constexpr (std::is_same_v<T, bool>) {
      if (!j.is_boolean()) fail_field(w, "must be true or false (got " + preview(j) + ")");
      return j.get<bool>();
    } else if constexpr (std::is_integral_v<T>) {
      constexpr auto kMax = static_cast<uint64_t>(std::numeric_limits<T>::max());
      constexpr auto kMin = static_cast<int64_t>(std::numeric_limits<T>::min());
      bool ok = false;
      if (j.is_number_unsigned())
        ok = j.get<uint64_t>() <= kMax;
      else if (j.is_number_integer())  // JSON built in code holds positive numbers here too
        ok = j.get<int64_t>() >= kMin &&
             (j.get<int64_t>() < 0 || static_cast<uint64_t>(j.get<int64_t>()) <= kMax);
      if (!ok)
        fail_field(w, cat("must be an integer", std::is_signed_v<T> ? "" : " >= 0", " (got ",
                          preview(j), ")"));
      return j.get<T>();
    } else if constexpr (std::is_floating_point_v<T>) {
      if (!j.is_number()) fail_field(w, "must be a number (got " + preview(j) + ")");
      return j.get<T>();
    } else if constexpr (std::is_same_v<T, std::string>) {
      if (!j.is_string()) fail_field(w, "must be a string (got " + preview(j) + ")");
      return j.get<std::string>();
    } else {
      static_assert(sizeof(T) == 0, "no JSON codec for this field type");
    }
  }
};
template <typename T>
struct Codec<std::vector<T>> {
  static nlohmann::json write(const std::vector<T>& v) {
    nlohmann::json a = nlohmann::json::array();
    for (const auto& x : v) a.push_back(Codec<T>::write(x));
    return a;
  }
  static std::vector<T> read(const nlohmann::json& j, const Where& w) {
    if (!j.is_array()) fail_field(w, "must be an array (got " + preview(j) + ")");
    std::vector<T> out;
    for (size_t i = 0; i < j.size(); ++i) out.push_back(Codec<T>::read(j[i], w.at(cat(i))));
    return out;
  }
};

template <typename S>
class Fields {
 public:
  // The field at `key`, stored where `get` points: a member pointer, or a callable S& -> T& for a
  // member deeper in S (TrainConfig's "schedule" is schedule.kind). std::optional fields are
  // written only when set.
  template <typename Get, typename T = std::remove_cvref_t<std::invoke_result_t<Get, S&>>>
  Fields& field(std::string key, Get get, std::type_identity_t<Check<T>> check = {}) {
    return add<T>(std::move(key), get, std::move(check), /*written=*/true);
  }
  // Read like a field, never written (run controls such as TrainConfig::stop_after, which the
  // manifests and cache keys never held).
  template <typename Get, typename T = std::remove_cvref_t<std::invoke_result_t<Get, S&>>>
  Fields& read_only(std::string key, Get get, std::type_identity_t<Check<T>> check = {}) {
    return add<T>(std::move(key), get, std::move(check), /*written=*/false);
  }
  // A fixed note written for readers (GKD's loss formula); accepted and ignored on reading.
  Fields& constant(std::string key, nlohmann::json value) {
    Entry e;
    e.key = std::move(key);
    e.write = [value](const S&) { return std::optional<nlohmann::json>(value); };
    entries_.push_back(std::move(e));
    return *this;
  }
  // A field with its own conversion (an enum spelt as a name, a value written conditionally).
  Fields& custom(std::string key, std::function<std::optional<nlohmann::json>(const S&)> write,
                 std::function<void(S&, const nlohmann::json&, const Where&)> read) {
    Entry e;
    e.key = std::move(key);
    e.write = std::move(write);
    e.read = std::move(read);
    entries_.push_back(std::move(e));
    return *this;
  }
  // Every field of `sub` under `prefix` (or at this level when `prefix` is empty), with its checks
  // and rules.
  template <typename Get, typename T = std::remove_cvref_t<std::invoke_result_t<Get, S&>>>
  Fields& nested(const std::string& prefix, Get get, const Fields<T>& sub) {
    auto join = [&prefix](const std::string& k) { return prefix.empty() ? k : prefix + "." + k; };
    for (const auto& se : sub.entries_) {
      Entry e;
      e.key = join(se.key);
      if (se.write) e.write = [get, w = se.write](const S& s) { return w(std::invoke(get, s)); };
      if (se.read)
        e.read = [get, r = se.read](S& s, const nlohmann::json& j, const Where& wh) {
          r(std::invoke(get, s), j, wh);
        };
      if (se.check)
        e.check = [get, c = se.check](const S& s, const Where& wh) { c(std::invoke(get, s), wh); };
      entries_.push_back(std::move(e));
    }
    for (const auto& rule : sub.rules_)
      rules_.push_back([get, rule, prefix](const S& s, const Where& w) {
        rule(std::invoke(get, s), prefix.empty() ? w : w.at(prefix));
      });
    return *this;
  }
  // A rule across fields, run after the field checks; it fails naming the field (fail_field).
  Fields& rule(std::function<void(const S&, const Where&)> r) {
    rules_.push_back(std::move(r));
    return *this;
  }

  nlohmann::json to_json(const S& s) const {
    nlohmann::json j = nlohmann::json::object();
    for (const auto& e : entries_) {
      if (!e.write) continue;
      auto v = e.write(s);
      if (!v) continue;
      nlohmann::json* node = &j;
      size_t start = 0;
      for (size_t dot; (dot = e.key.find('.', start)) != std::string::npos; start = dot + 1)
        node = &(*node)[e.key.substr(start, dot - start)];
      (*node)[e.key.substr(start)] = std::move(*v);
    }
    return j;
  }

  // `s` overridden by the fields of `j` (an object), then checked. `where.path` prefixes every
  // field named in errors (a sub-config read from its section).
  S from_json(const nlohmann::json& j, const Where& where, S s) const {
    read_object(s, j, where, "");
    check(s, where);
    return s;
  }

  // Every field's check and every rule, on values set in code or read from JSON.
  void check(const S& s, const Where& where) const {
    for (const auto& e : entries_)
      if (e.check) e.check(s, where.at(e.key));
    for (const auto& r : rules_) r(s, where);
  }

 private:
  template <typename>
  friend class Fields;
  struct Entry {
    std::string key;  // dotted, below this table's root
    std::function<std::optional<nlohmann::json>(const S&)> write;
    std::function<void(S&, const nlohmann::json&, const Where&)> read;
    std::function<void(const S&, const Where&)> check;
  };

  template <typename T, typename Get>
  Fields& add(std::string key, Get get, Check<T> check, bool written) {
    Entry e;
    e.key = std::move(key);
    if constexpr (is_optional<T>::value) {
      using V = typename T::value_type;
      if (written)
        e.write = [get](const S& s) -> std::optional<nlohmann::json> {
          const auto& v = std::invoke(get, s);
          if (!v) return std::nullopt;
          return Codec<V>::write(*v);
        };
      e.read = [get](S& s, const nlohmann::json& j, const Where& w) {
        std::invoke(get, s) = Codec<V>::read(j, w);
      };
    } else {
      if (written)
        e.write = [get](const S& s) {
          return std::optional<nlohmann::json>(Codec<T>::write(std::invoke(get, s)));
        };
      e.read = [get](S& s, const nlohmann::json& j, const Where& w) {
        std::invoke(get, s) = Codec<T>::read(j, w);
      };
    }
    if (check)
      e.check = [get, check](const S& s, const Where& w) {
        const T& v = std::invoke(get, s);
        if (auto what = check(v); !what.empty()) {
          if constexpr (is_optional<T>::value)
            fail_field(
                w, what + " (got " +
                       preview(v ? Codec<typename T::value_type>::write(*v) : nlohmann::json()) +
                       ")");
          else
            fail_field(w, what + " (got " + preview(Codec<T>::write(v)) + ")");
        }
      };
    entries_.push_back(std::move(e));
    return *this;
  }

  template <typename T>
  struct is_optional : std::false_type {};
  template <typename T>
  struct is_optional<std::optional<T>> : std::true_type {};

  void read_object(S& s, const nlohmann::json& j, const Where& where,
                   const std::string& prefix) const {
    if (!j.is_object()) {
      if (prefix.empty() && where.path.empty())
        fail(where.source, ": expected a JSON object (got ", preview(j), ")");
      fail_field(prefix.empty() ? where : where.at(prefix),
                 "must be a JSON object (got " + preview(j) + ")");
    }
    for (const auto& [key, value] : j.items()) {
      const std::string full = prefix.empty() ? key : prefix + "." + key;
      if (const Entry* e = find(full)) {
        if (e->read && !value.is_null()) e->read(s, value, where.at(full));
        continue;
      }
      if (is_section(full)) {
        if (!value.is_null()) read_object(s, value, where, full);
        continue;
      }
      fail(where.source, ": unknown field '", where.at(full).path, "'");
    }
  }
  const Entry* find(const std::string& key) const {
    for (const auto& e : entries_)
      if (e.key == key) return &e;
    return nullptr;
  }
  bool is_section(const std::string& key) const {
    for (const auto& e : entries_)
      if (e.key.size() > key.size() && e.key.compare(0, key.size(), key) == 0 &&
          e.key[key.size()] == '.')
        return true;
    return false;
  }

  std::vector<Entry> entries_;
  std::vector<std::function<void(const S&, const Where&)>> rules_;
};

// `base` with the values of `patch` laid over it, key by key (nulls skipped): the JSON a config
// was run with, as written, where `from_json` gives the typed struct.
nlohmann::json overlay(nlohmann::json base, const nlohmann::json& patch);

}  // namespace drafteu::config

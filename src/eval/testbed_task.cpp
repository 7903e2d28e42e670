#include "eval/testbed_task.h"

#include <algorithm>
#include <functional>
#include <nlohmann/json.hpp>
#include <numeric>
#include <random>
#include <set>

#include "util/error.h"
#include "util/file.h"

namespace drafteu::eval {

namespace {

// Own integer draws: std:: distributions differ between standard libraries.
class Rng {
 public:
  explicit Rng(uint64_t seed) : g_(seed) {}
  int64_t range(int64_t lo, int64_t hi) {  // inclusive
    if (hi <= lo) return lo;
    const auto span = static_cast<uint64_t>(hi - lo) + 1;
    return lo + static_cast<int64_t>(g_() % span);
  }
  double uniform() { return static_cast<double>(g_() >> 11) * 0x1.0p-53; }
  bool coin(double p = 0.5) { return uniform() < p; }
  template <typename T>
  const T& pick(const std::vector<T>& v) {
    return v[static_cast<size_t>(range(0, static_cast<int64_t>(v.size()) - 1))];
  }

 private:
  std::mt19937_64 g_;
};

struct Person {
  std::string name, she, her;
};
const std::vector<Person> kPeople = {
    {"Mia", "she", "her"},   {"Liam", "he", "his"},  {"Emma", "she", "her"},
    {"Noah", "he", "his"},   {"Ava", "she", "her"},  {"Lucas", "he", "his"},
    {"Sofia", "she", "her"}, {"Omar", "he", "his"},  {"Chloe", "she", "her"},
    {"Ben", "he", "his"},    {"Nora", "she", "her"}, {"Jack", "he", "his"},
    {"Lily", "she", "her"},  {"Sam", "he", "his"},   {"Zoe", "she", "her"},
    {"Ryan", "he", "his"}};

std::string cap(std::string s) {
  if (!s.empty() && s[0] >= 'a' && s[0] <= 'z') s[0] = static_cast<char>(s[0] - 'a' + 'A');
  return s;
}

// Builds one problem: question sentences, solution lines and the calculator notes.
struct Builder {
  Rng& rng;
  double scale;  // 0..1: how large this problem's numbers are
  std::vector<std::string> q, sol;
  std::vector<CalcStep> steps;

  // Number ranges that grow with the scale.
  int64_t few() { return rng.range(2, 4 + static_cast<int64_t>(6 * scale)); }
  int64_t some() { return rng.range(3, 9 + static_cast<int64_t>(31 * scale)); }
  int64_t many() { return rng.range(10, 20 + static_cast<int64_t>(100 * scale)); }
  int64_t price() { return rng.range(2, 6 + static_cast<int64_t>(14 * scale)); }

  // "a*b=v": records the note and returns its text.
  std::string note(const std::string& expr, int64_t v) {
    steps.push_back({expr, v});
    return expr + "=" + std::to_string(v);
  }
  std::string mul(int64_t a, int64_t b, int64_t& v) {
    v = a * b;
    return note(std::to_string(a) + "*" + std::to_string(b), v);
  }
  std::string add(int64_t a, int64_t b, int64_t& v) {
    v = a + b;
    return note(std::to_string(a) + "+" + std::to_string(b), v);
  }
  std::string add3(int64_t a, int64_t b, int64_t c, int64_t& v) {
    v = a + b + c;
    return note(std::to_string(a) + "+" + std::to_string(b) + "+" + std::to_string(c), v);
  }
  std::string sub(int64_t a, int64_t b, int64_t& v) {
    v = a - b;
    return note(std::to_string(a) + "-" + std::to_string(b), v);
  }
  std::string div(int64_t a, int64_t b, int64_t& v) {
    v = a / b;
    return note(std::to_string(a) + "/" + std::to_string(b), v);
  }
};

// What a running total is and how sentences about changing it read.
struct Quantity {
  std::string unit;  // "apples"; empty for money
  bool money = false;
  std::string gain = "gets", lose = "gives away";
  std::string fmt(int64_t v) const { return fmt_expr(std::to_string(v)); }
  std::string fmt_expr(const std::string& e) const {
    return money ? cat("$", e) : cat(e, " ", unit);
  }
};

// Extends a running total `v` of person p by one more step (gain, loss or doubling).
void chain_step(Builder& b, const Person& p, const Quantity& qty, int64_t& v) {
  const int kind = static_cast<int>(b.rng.range(0, 2));
  int64_t nv = 0;
  if (kind == 0 || v < 4) {
    const int64_t d = b.some();
    b.q.push_back(cat("Then ", p.she, " ", qty.gain, " ", qty.fmt(d), " more."));
    b.sol.push_back(cat("After that ", p.she, " has ", qty.fmt_expr(b.add(v, d, nv)), "."));
  } else if (kind == 1) {
    const int64_t d = b.rng.range(1, v - 1);
    b.q.push_back(cat("Then ", p.she, " ", qty.lose, " ", qty.fmt(d), "."));
    b.sol.push_back(cat("After that ", p.she, " has ", qty.fmt_expr(b.sub(v, d, nv)), " left."));
  } else {
    b.q.push_back(cat("Then ", p.her, " ", qty.money ? "money" : qty.unit, " doubles."));
    b.sol.push_back(cat("Doubling gives ", qty.fmt_expr(b.mul(v, 2, nv)), "."));
  }
  v = nv;
}

std::string final_question(const Person& p, const Quantity& qty) {
  return qty.money ? cat("How much money does ", p.name, " have now?")
                   : cat("How many ", qty.unit, " does ", p.name, " have now?");
}

using Template = std::function<int64_t(Builder&, int /*target steps*/)>;

struct NamedTemplate {
  std::string name;
  Template make;
};

// A template with an opening of `base` steps that ends in a running total, extended by
// chain steps up to the target.
int64_t extend(Builder& b, int target, const Person& p, const Quantity& qty, int64_t v) {
  while (static_cast<int>(b.steps.size()) < target) chain_step(b, p, qty, v);
  b.q.push_back(final_question(p, qty));
  return v;
}

const std::vector<std::string> kItems = {"apples",  "pencils", "stickers", "marbles",
                                         "cookies", "cards",   "beads",    "stamps"};

std::vector<NamedTemplate> make_templates() {
  std::vector<NamedTemplate> t;
  t.push_back({"packs", [](Builder& b, int target) {
                 const Person& p = b.rng.pick(kPeople);
                 const std::string item = b.rng.pick(kItems);
                 const int64_t n = b.few(), per = b.few() + 1;
                 int64_t v = 0;
                 b.q.push_back(cat(p.name, " buys ", n, " packs of ", item, ". Each pack has ", per,
                                   " ", item, "."));
                 b.sol.push_back(cat(cap(p.she), " buys ", b.mul(n, per, v), " ", item, "."));
                 const int64_t g = b.rng.range(1, v - 1);
                 int64_t w = 0;
                 b.q.push_back(cat(cap(p.she), " gives ", g, " ", item, " to a friend."));
                 b.sol.push_back(cat(cap(p.she), " has ", b.sub(v, g, w), " ", item, " left."));
                 return extend(b, target, p, {item, false, "buys", "loses"}, w);
               }});
  t.push_back(
      {"shopping", [](Builder& b, int target) {
         const Person& p = b.rng.pick(kPeople);
         const int64_t n1 = b.few(), p1 = b.price(), n2 = b.few(), p2 = b.price();
         int64_t c1 = 0, c2 = 0, total = 0;
         b.q.push_back(cat(p.name, " buys ", n1, " notebooks at $", p1, " each and ", n2,
                           " pens at $", p2, " each."));
         b.sol.push_back(cat("The notebooks cost $", b.mul(n1, p1, c1), "."));
         b.sol.push_back(cat("The pens cost $", b.mul(n2, p2, c2), "."));
         if (target >= 4) {
           const int64_t bill = (c1 + c2) / 10 * 10 + 10 * b.rng.range(1, 5);
           b.sol.push_back(cat("In total ", p.she, " spends $", b.add(c1, c2, total), "."));
           int64_t change = 0;
           b.q.push_back(
               cat(cap(p.she), " pays with $", bill, ". How much change does ", p.she, " get?"));
           b.sol.push_back(cat(cap(p.she), " gets $", b.sub(bill, total, change), " in change."));
           return change;
         }
         b.q.push_back(cat("How much does ", p.she, " spend in total?"));
         b.sol.push_back(cat("In total ", p.she, " spends $", b.add(c1, c2, total), "."));
         return total;
       }});
  t.push_back(
      {"sharing", [](Builder& b, int target) {
         const Person& p = b.rng.pick(kPeople);
         const int64_t bags = b.few(), per_bag = b.some();
         const int64_t friends = std::min(b.few(), bags * per_bag / 2);
         int64_t total = 0, share = 0;
         b.q.push_back(cat(p.name, " has ", bags, " bags with ", per_bag, " candies in each bag."));
         b.sol.push_back(cat(cap(p.she), " has ", b.mul(bags, per_bag, total), " candies."));
         if (total % friends != 0) {
           b.q.push_back(cat(cap(p.she), " eats ", total % friends, " candies."));
           int64_t left = 0;
           b.sol.push_back(cat("After eating some ", p.she, " has ",
                               b.sub(total, total % friends, left), " candies."));
           total = left;
         }
         b.q.push_back(cat(cap(p.she), " shares them equally among ", friends, " friends."));
         b.sol.push_back(cat("Each friend gets ", b.div(total, friends, share), " candies."));
         if (static_cast<int>(b.steps.size()) < target && share > 1) {
           const int64_t eat = b.rng.range(1, share - 1);
           int64_t left = 0;
           b.q.push_back(cat("Each friend eats ", eat,
                             " candies. How many candies does each friend have left?"));
           b.sol.push_back(cat("Each friend has ", b.sub(share, eat, left), " candies left."));
           return left;
         }
         b.q.push_back("How many candies does each friend get?");
         return share;
       }});
  t.push_back({"ages", [](Builder& b, int target) {
                 const Person& a = b.rng.pick(kPeople);
                 Person c = b.rng.pick(kPeople);
                 while (c.name == a.name) c = b.rng.pick(kPeople);
                 const int64_t age = b.some(), older = b.few() + 1;
                 int64_t age2 = 0, age3 = 0, sum = 0;
                 b.q.push_back(cat(a.name, " is ", age, " years old. ", c.name, " is ", older,
                                   " years older than ", a.name, "."));
                 b.sol.push_back(cat(c.name, " is ", b.add(age, older, age2), " years old."));
                 if (target >= 3) {
                   b.q.push_back(cat(a.name, "'s aunt is twice as old as ", c.name, "."));
                   b.sol.push_back(cat("The aunt is ", b.mul(age2, 2, age3), " years old."));
                   b.q.push_back("What is the sum of the three ages?");
                   b.sol.push_back(
                       cat("Together they are ", b.add3(age, age2, age3, sum), " years old."));
                   return sum;
                 }
                 b.q.push_back("What is the sum of their ages?");
                 b.sol.push_back(cat("Together they are ", b.add(age, age2, sum), " years old."));
                 return sum;
               }});
  t.push_back(
      {"travel", [](Builder& b, int target) {
         const int64_t s1 = b.some() + 10, h1 = b.few(), s2 = b.some() + 10, h2 = b.few();
         int64_t d1 = 0, d2 = 0, total = 0;
         b.q.push_back(cat("A train travels at ", s1, " miles per hour for ", h1, " hours."));
         b.sol.push_back(cat("First it travels ", b.mul(s1, h1, d1), " miles."));
         b.q.push_back(cat("Then it travels at ", s2, " miles per hour for ", h2, " hours."));
         b.sol.push_back(cat("Then it travels ", b.mul(s2, h2, d2), " miles."));
         b.sol.push_back(cat("In total it travels ", b.add(d1, d2, total), " miles."));
         if (target >= 4) {
           const int64_t trip = total + b.many();
           int64_t left = 0;
           b.q.push_back(
               cat("The whole trip is ", trip, " miles. How many miles are left to travel?"));
           b.sol.push_back(cat("There are ", b.sub(trip, total, left), " miles left."));
           return left;
         }
         b.q.push_back("How many miles does the train travel in total?");
         return total;
       }});
  t.push_back({"saving", [](Builder& b, int target) {
                 const Person& p = b.rng.pick(kPeople);
                 const int64_t weekly = b.price(), weeks = b.few() + 1;
                 int64_t saved = 0, left = 0;
                 b.q.push_back(
                     cat(p.name, " saves $", weekly, " every week for ", weeks, " weeks."));
                 b.sol.push_back(cat(cap(p.she), " saves $", b.mul(weekly, weeks, saved), "."));
                 const int64_t toy = b.rng.range(1, saved - 1);
                 b.q.push_back(cat(cap(p.she), " spends $", toy, " on a toy."));
                 b.sol.push_back(cat(cap(p.she), " has $", b.sub(saved, toy, left), " left."));
                 return extend(b, target, p, {"", true, "earns", "spends"}, left);
               }});
  t.push_back({"garden", [](Builder& b, int target) {
                 const Person& p = b.rng.pick(kPeople);
                 const int64_t rows = b.few(), per = b.few() + 1;
                 int64_t total = 0, left = 0;
                 b.q.push_back(cat(p.name, " plants ", rows, " rows of tulips with ", per,
                                   " tulips in each row."));
                 b.sol.push_back(cat(cap(p.she), " plants ", b.mul(rows, per, total), " tulips."));
                 const int64_t dead = b.rng.range(1, total - 1);
                 b.q.push_back(cat(dead, " of the tulips die."));
                 b.sol.push_back(cat("There are ", b.sub(total, dead, left), " tulips left."));
                 return extend(b, target, p, {"tulips", false, "plants", "picks"}, left);
               }});
  t.push_back({"bakery", [](Builder& b, int target) {
                 const Person& p = b.rng.pick(kPeople);
                 const int64_t trays = b.few(), per = b.few() + 2, cost = b.few();
                 int64_t made = 0, sold = 0, money = 0;
                 b.q.push_back(cat(p.name, " bakes ", trays, " trays of muffins with ", per,
                                   " muffins on each tray."));
                 b.sol.push_back(cat(cap(p.she), " bakes ", b.mul(trays, per, made), " muffins."));
                 const int64_t eaten = b.rng.range(1, made - 1);
                 b.q.push_back(cat(cap(p.she), " eats ", eaten, " muffins and sells the rest for $",
                                   cost, " each."));
                 b.sol.push_back(cat(cap(p.she), " sells ", b.sub(made, eaten, sold), " muffins."));
                 b.sol.push_back(cat(cap(p.she), " makes $", b.mul(sold, cost, money), "."));
                 if (target >= 4) {
                   const int64_t flour = b.rng.range(1, money - 1);
                   int64_t profit = 0;
                   b.q.push_back(
                       cat("The flour cost $", flour, ". How much profit does ", p.she, " make?"));
                   b.sol.push_back(cat("The profit is $", b.sub(money, flour, profit), "."));
                   return profit;
                 }
                 b.q.push_back(cat("How much money does ", p.she, " make?"));
                 return money;
               }});
  t.push_back({"reading", [](Builder& b, int target) {
                 const Person& p = b.rng.pick(kPeople);
                 const int64_t per_day = b.some(), days = b.few();
                 int64_t read = 0, left = 0;
                 const int64_t book = per_day * days + b.many();
                 b.q.push_back(cat(p.name, " reads ", per_day, " pages a day for ", days,
                                   " days. The book has ", book, " pages."));
                 b.sol.push_back(cat(cap(p.she), " reads ", b.mul(per_day, days, read), " pages."));
                 b.sol.push_back(cat("There are ", b.sub(book, read, left), " pages left."));
                 if (target >= 3) {
                   const int64_t today = b.rng.range(1, left - 1);
                   int64_t rest = 0;
                   b.q.push_back(cat("Today ", p.she, " reads ", today,
                                     " more pages. How many pages are left now?"));
                   b.sol.push_back(cat("Now ", b.sub(left, today, rest), " pages are left."));
                   return rest;
                 }
                 b.q.push_back("How many pages are left to read?");
                 return left;
               }});
  t.push_back({"wages", [](Builder& b, int target) {
                 const Person& p = b.rng.pick(kPeople);
                 const int64_t hours = b.few(), days = b.few(), rate = b.price();
                 int64_t total_hours = 0, pay = 0;
                 b.q.push_back(cat(p.name, " works ", hours, " hours a day for ", days,
                                   " days and earns $", rate, " an hour."));
                 b.sol.push_back(
                     cat(cap(p.she), " works ", b.mul(hours, days, total_hours), " hours."));
                 b.sol.push_back(cat(cap(p.she), " earns $", b.mul(total_hours, rate, pay), "."));
                 if (target >= 3) {
                   b.q.push_back(cat("Then ", p.she, " gets a bonus."));
                   return extend(b, target, p, {"", true, "earns", "spends"}, pay);
                 }
                 b.q.push_back(cat("How much does ", p.she, " earn?"));
                 return pay;
               }});
  t.push_back(
      {"school", [](Builder& b, int target) {
         const int64_t classes = b.few(), students = b.some() + 5;
         int64_t total = 0, stay = 0;
         b.q.push_back(
             cat("A school has ", classes, " classes with ", students, " students in each class."));
         b.sol.push_back(cat("The school has ", b.mul(classes, students, total), " students."));
         const int64_t trip = b.rng.range(1, total - 1);
         b.q.push_back(cat(trip, " students go on a trip."));
         b.sol.push_back(cat(b.sub(total, trip, stay), " students stay at school."));
         if (target >= 3) {
           const int64_t sick = b.rng.range(0, stay - 1);
           int64_t present = 0;
           b.q.push_back(cat(sick, " of the other students are sick at home. How many ",
                             "students are in class?"));
           b.sol.push_back(cat(b.sub(stay, sick, present), " students are in class."));
           return present;
         }
         b.q.push_back("How many students stay at school?");
         return stay;
       }});
  t.push_back(
      {"fruit", [](Builder& b, int target) {
         const Person& p = b.rng.pick(kPeople);
         const int64_t red = b.some(), green = b.some();
         int64_t total = 0, left = 0;
         b.q.push_back(cat("A basket has ", red, " red apples and ", green, " green apples."));
         b.sol.push_back(cat("The basket has ", b.add(red, green, total), " apples."));
         const int64_t take = b.rng.range(1, total - 1);
         b.q.push_back(cat(p.name, " takes ", take, " apples."));
         b.sol.push_back(cat("There are ", b.sub(total, take, left), " apples left."));
         if (target >= 3) {
           const int64_t add = b.some();
           int64_t now = 0;
           b.q.push_back(
               cat("Then a farmer adds ", add, " apples. How many apples are in the basket now?"));
           b.sol.push_back(cat("Now there are ", b.add(left, add, now), " apples."));
           return now;
         }
         b.q.push_back("How many apples are left in the basket?");
         return left;
       }});
  t.push_back(
      {"farm", [](Builder& b, int target) {
         const int64_t hens = b.some(), cows = b.some();
         int64_t hen_legs = 0, cow_legs = 0, total = 0;
         b.q.push_back(cat("A farm has ", hens, " chickens and ", cows, " cows."));
         b.sol.push_back(cat("The chickens have ", b.mul(hens, 2, hen_legs), " legs."));
         b.sol.push_back(cat("The cows have ", b.mul(cows, 4, cow_legs), " legs."));
         if (target >= 3) {
           b.q.push_back("How many legs do the animals have in total?");
           b.sol.push_back(cat("In total there are ", b.add(hen_legs, cow_legs, total), " legs."));
           return total;
         }
         // Two steps: legs of the cows only after counting chickens is not needed.
         b.q.push_back("How many more legs do the cows have than the chickens?");
         b.sol.push_back(cat("The difference is ", b.sub(cow_legs, hen_legs, total), " legs."));
         return total;
       }});
  t.push_back(
      {"pizza", [](Builder& b, int target) {
         const int64_t pizzas = b.few(), slices = 2 * b.rng.range(2, 6), people = b.few();
         int64_t total = 0, eaten = 0, left = 0;
         const int64_t each = b.rng.range(1, std::max<int64_t>(1, pizzas * slices / people));
         b.q.push_back(cat("There are ", pizzas, " pizzas cut into ", slices, " slices each."));
         b.sol.push_back(cat("There are ", b.mul(pizzas, slices, total), " slices."));
         b.q.push_back(cat(people, " people eat ", each, " slices each."));
         b.sol.push_back(cat("They eat ", b.mul(people, each, eaten), " slices."));
         b.sol.push_back(cat("There are ", b.sub(total, eaten, left), " slices left."));
         (void)target;
         b.q.push_back("How many slices are left?");
         return left;
       }});
  return t;
}

const std::vector<NamedTemplate>& templates() {
  static const std::vector<NamedTemplate> t = make_templates();
  return t;
}

std::string join(const std::vector<std::string>& parts, const std::string& sep) {
  std::string out;
  for (size_t i = 0; i < parts.size(); ++i) out += (i ? sep : "") + parts[i];
  return out;
}

// Opens each solution line with a connective drawn from the problem's own stream; the first
// letter is lowercased after one unless the line starts with a name.
std::vector<std::string> vary_phrasing(std::vector<std::string> lines, uint64_t seed) {
  static const std::vector<std::string> kConnectives = {"", "So ", "Next, ", "This means "};
  Rng rng(seed);
  for (auto& line : lines) {
    const std::string& c = rng.pick(kConnectives);
    if (c.empty() || line.empty()) continue;
    const bool name = std::any_of(kPeople.begin(), kPeople.end(), [&](const Person& p) {
      return line.rfind(p.name + " ", 0) == 0 || line.rfind(p.name + "'", 0) == 0;
    });
    if (!name && line[0] >= 'A' && line[0] <= 'Z') line[0] = static_cast<char>(line[0] - 'A' + 'a');
    line = c + line;
  }
  return lines;
}

}  // namespace

std::vector<std::string> template_names() {
  std::vector<std::string> names;
  for (const auto& t : templates()) names.push_back(t.name);
  return names;
}

uint64_t stable_hash(std::string_view s) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
  return h;
}

std::string Problem::gsm8k_answer() const {
  // Each note "e=v" in the solution becomes "e=<<e=v>>v", in order.
  std::string out;
  size_t pos = 0;
  for (const auto& st : steps) {
    const std::string plain = st.expr + "=" + std::to_string(st.value);
    const size_t at = solution.find(plain, pos);
    if (at == std::string::npos) fail("testbed problem: note ", plain, " missing in solution");
    out +=
        solution.substr(pos, at - pos) + st.expr + "=<<" + plain + ">>" + std::to_string(st.value);
    pos = at + plain.size();
  }
  out += solution.substr(pos);
  return out + "\n#### " + std::to_string(answer);
}

TaskSplits generate_task(const TaskOptions& o, size_t n_train, size_t n_test) {
  if (o.min_steps < 2 || o.max_steps > 4 || o.min_steps > o.max_steps)
    fail("testbed task: steps must satisfy 2 <= min_steps <= max_steps <= 4");
  if (o.difficulty < 0 || o.difficulty > 1) fail("testbed task: difficulty must be in [0, 1]");
  if (o.test_percent < 1 || o.test_percent > 99) fail("testbed task: test_percent in [1, 99]");
  Rng rng(o.seed);
  TaskSplits out;
  std::set<std::string> seen;
  const auto& ts = templates();
  size_t attempts = 0;
  const size_t max_attempts = 50 * (n_train + n_test) + 1000;
  while (out.train.size() < n_train || out.test.size() < n_test) {
    if (++attempts > max_attempts)
      fail("testbed task: only ", out.train.size(), "+", out.test.size(),
           " distinct problems found; raise difficulty for a larger problem space");
    const auto& t = ts[static_cast<size_t>(rng.range(0, static_cast<int64_t>(ts.size()) - 1))];
    const int target = static_cast<int>(rng.range(o.min_steps, o.max_steps));
    Builder b{rng, o.difficulty * rng.uniform(), {}, {}, {}};
    const int64_t answer = t.make(b, target);
    const int n = static_cast<int>(b.steps.size());
    if (n < o.min_steps || n > o.max_steps || answer < 0) continue;
    Problem p;
    p.template_name = t.name;
    p.question = join(b.q, " ");
    if (o.varied_phrasing)
      b.sol = vary_phrasing(std::move(b.sol), o.seed ^ stable_hash(p.question));
    p.solution = join(b.sol, "\n") + "\n\\boxed{" + std::to_string(answer) + "}";
    p.steps = std::move(b.steps);
    p.answer = answer;
    if (!seen.insert(p.question).second) continue;
    const bool is_test = stable_hash(p.question) % 100 < static_cast<uint64_t>(o.test_percent);
    auto& split = is_test ? out.test : out.train;
    if (split.size() < (is_test ? n_test : n_train)) split.push_back(std::move(p));
  }
  return out;
}

void write_gsm8k_jsonl(const std::filesystem::path& path, const std::vector<Problem>& problems) {
  std::string text;
  for (const auto& p : problems)
    text += nlohmann::json{{"question", p.question}, {"answer", p.gsm8k_answer()}}.dump() + "\n";
  write_file_atomic(path, text);
}

std::vector<QaExample> read_gsm8k_jsonl(const std::filesystem::path& path) {
  std::vector<QaExample> out;
  const std::string text = read_text_file(path);
  size_t line_no = 0, pos = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string::npos) end = text.size();
    const std::string line = text.substr(pos, end - pos);
    pos = end + 1;
    ++line_no;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    try {
      const auto j = nlohmann::json::parse(line);
      out.push_back({j.at("question").get<std::string>(), j.at("answer").get<std::string>()});
    } catch (const nlohmann::json::exception& e) {
      fail(path.string(), ":", line_no, ": expected {\"question\", \"answer\"}: ", e.what());
    }
  }
  return out;
}

}  // namespace drafteu::eval

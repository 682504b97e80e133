#include "qcloud/sched/placement.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <optional>
#include <unordered_map>
#include <unordered_set>

#include <fmt/format.h>

namespace qcloud::sched {

namespace {

// Sums are compared with a little slack, so that 0.1 + 0.2 fits in 0.3.
bool Fits(double used, double cap) { return used <= cap + 1e-9 * std::max(1.0, std::abs(cap)); }

bool ValidAmount(double v) { return std::isfinite(v) && v >= 0; }

// The problem in dense form: resources by index, hosts' usable capacity,
// instances merged into items (an affinity group is one item).
struct Problem {
  std::vector<std::string> resources;
  size_t r = 0;
  std::vector<double> cap;  // host-major, r per host: usable capacity
  std::vector<const Host*> hosts;

  struct Group {
    std::string name;
    std::string spread_by;
    std::vector<int> domain_of_host;  // per host: its domain (host index, or label value id); -1 = not eligible
  };
  std::vector<Group> groups;

  struct Item {
    std::vector<size_t> members;  // instance indices
    std::vector<double> demand;   // r
    std::vector<int> groups;      // anti-affinity groups
    std::vector<std::pair<std::string, std::string>> labels;  // required host labels
    std::string conflict;        // why it cannot be placed at all ("" = none)
    double size = 0;
    int pinned = -1;             // host index it must stay on; -1 = free
  };
  std::vector<Item> items;
};

Result<Problem> Build(std::span<const Host> hosts, std::span<const Instance> instances, double headroom) {
  if (!(headroom >= 0 && headroom < 1)) return InvalidArgument(fmt::format("headroom {} is not in [0, 1)", headroom));
  Problem p;
  std::map<std::string, size_t> res;
  auto add_res = [&](const std::string& name) -> Status {
    if (name.empty()) return InvalidArgument("a resource needs a name");
    if (res.contains(name)) return Status::Ok();
    if (res.size() == kMaxResources) {
      return InvalidArgument(fmt::format("more than {} resources (\"{}\")", kMaxResources, name));
    }
    res.emplace(name, res.size());
    return Status::Ok();
  };
  std::unordered_set<std::string> names;
  for (const Host& h : hosts) {
    if (h.name.empty()) return InvalidArgument("a host needs a name");
    if (!names.insert(h.name).second) return InvalidArgument(fmt::format("host \"{}\" appears twice", h.name));
    for (const auto& [k, v] : h.capacity) {
      QCLOUD_RETURN_IF_ERROR(add_res(k));
      if (!ValidAmount(v)) return InvalidArgument(fmt::format("host \"{}\": capacity {} = {}", h.name, k, v));
    }
  }
  names.clear();
  for (const Instance& in : instances) {
    if (in.name.empty()) return InvalidArgument("an instance needs a name");
    if (!names.insert(in.name).second) return InvalidArgument(fmt::format("instance \"{}\" appears twice", in.name));
    for (const auto& [k, v] : in.demand) {
      QCLOUD_RETURN_IF_ERROR(add_res(k));
      if (!ValidAmount(v)) return InvalidArgument(fmt::format("instance \"{}\": demand {} = {}", in.name, k, v));
    }
    if (!in.spread_by.empty() && in.anti_affinity.empty()) {
      return InvalidArgument(fmt::format("instance \"{}\": spread_by without anti_affinity", in.name));
    }
  }
  std::map<std::string_view, int> host_index;
  for (size_t h = 0; h < hosts.size(); ++h) host_index.emplace(hosts[h].name, static_cast<int>(h));
  for (const Instance& in : instances) {
    if (!in.pinned_host.empty() && !host_index.contains(in.pinned_host)) {
      return InvalidArgument(fmt::format("instance \"{}\": pinned to unknown host \"{}\"", in.name, in.pinned_host));
    }
  }
  p.r = res.size();
  p.resources.resize(p.r);
  for (const auto& [k, i] : res) p.resources[i] = k;
  p.cap.assign(hosts.size() * p.r, 0.0);
  for (size_t h = 0; h < hosts.size(); ++h) {
    p.hosts.push_back(&hosts[h]);
    for (const auto& [k, v] : hosts[h].capacity) p.cap[h * p.r + res.at(k)] = v * (1 - headroom);
  }

  // Anti-affinity groups and their domains.
  std::map<std::string, int> group_ids;
  for (const Instance& in : instances) {
    if (in.anti_affinity.empty()) continue;
    auto [it, fresh] = group_ids.emplace(in.anti_affinity, static_cast<int>(p.groups.size()));
    if (fresh) {
      Problem::Group g{.name = in.anti_affinity, .spread_by = in.spread_by, .domain_of_host = {}};
      std::map<std::string, int> values;
      for (size_t h = 0; h < hosts.size(); ++h) {
        if (g.spread_by.empty()) {
          g.domain_of_host.push_back(static_cast<int>(h));
          continue;
        }
        auto l = hosts[h].labels.find(g.spread_by);
        if (l == hosts[h].labels.end()) {
          g.domain_of_host.push_back(-1);
        } else {
          g.domain_of_host.push_back(values.emplace(l->second, static_cast<int>(values.size())).first->second);
        }
      }
      p.groups.push_back(std::move(g));
    } else if (p.groups[static_cast<size_t>(it->second)].spread_by != in.spread_by) {
      return InvalidArgument(fmt::format("anti-affinity group \"{}\": its instances disagree on spread_by (\"{}\", \"{}\")",
                                         in.anti_affinity, p.groups[static_cast<size_t>(it->second)].spread_by,
                                         in.spread_by));
    }
  }

  // Items: one per instance, or per affinity group.
  std::map<std::string, size_t> item_of_affinity;
  std::vector<double> maxcap(p.r, 0.0);
  for (size_t h = 0; h < hosts.size(); ++h) {
    for (size_t d = 0; d < p.r; ++d) maxcap[d] = std::max(maxcap[d], p.cap[h * p.r + d]);
  }
  for (size_t i = 0; i < instances.size(); ++i) {
    const Instance& in = instances[i];
    size_t at = p.items.size();
    if (!in.affinity.empty()) {
      auto [it, fresh] = item_of_affinity.emplace(in.affinity, p.items.size());
      at = it->second;
      if (!fresh) {
        Problem::Item& item = p.items[at];
        item.members.push_back(i);
        for (const auto& [k, v] : in.demand) item.demand[res.at(k)] += v;
        if (!in.anti_affinity.empty()) {
          const int g = group_ids.at(in.anti_affinity);
          if (std::find(item.groups.begin(), item.groups.end(), g) != item.groups.end()) {
            return InvalidArgument(fmt::format("affinity group \"{}\" holds two instances of anti-affinity group \"{}\"",
                                               in.affinity, in.anti_affinity));
          }
          item.groups.push_back(g);
        }
        if (!in.pinned_host.empty()) {
          const int h = host_index.at(in.pinned_host);
          if (item.pinned >= 0 && item.pinned != h) {
            item.conflict = fmt::format("affinity group \"{}\" is pinned to two hosts", in.affinity);
          }
          item.pinned = h;
        }
        for (const auto& label : in.host_labels) {
          auto same = std::find_if(item.labels.begin(), item.labels.end(),
                                   [&](const auto& l) { return l.first == label.first; });
          if (same == item.labels.end()) {
            item.labels.emplace_back(label);
          } else if (same->second != label.second) {
            item.conflict = fmt::format("affinity group \"{}\" requires both {}={} and {}={}", in.affinity,
                                        label.first, same->second, label.first, label.second);
          }
        }
        continue;
      }
    }
    Problem::Item item;
    item.members.push_back(i);
    item.demand.assign(p.r, 0.0);
    for (const auto& [k, v] : in.demand) item.demand[res.at(k)] += v;
    if (!in.anti_affinity.empty()) item.groups.push_back(group_ids.at(in.anti_affinity));
    for (const auto& [k, v] : in.host_labels) item.labels.emplace_back(k, v);
    if (!in.pinned_host.empty()) item.pinned = host_index.at(in.pinned_host);
    p.items.push_back(std::move(item));
    (void)at;
  }
  for (Problem::Item& item : p.items) {
    for (size_t d = 0; d < p.r; ++d) {
      if (maxcap[d] > 0) item.size += item.demand[d] / maxcap[d];
      else if (item.demand[d] > 0) item.size += 1e9;
    }
  }
  return p;
}

// Per host, what is left; a segment tree of the maxima per resource over
// ranges of hosts, to find the first host (or the first few) with room in
// O(log hosts) when most are full.
class Solver {
 public:
  Solver(const Problem& p, const PlacementOptions& o) : p_(p), o_(o), r_(p.r), n_(p.hosts.size()) {
    size_ = 1;
    while (size_ < std::max<size_t>(n_, 1)) size_ *= 2;
    rem_ = p.cap;
    open_.assign(n_, true);
    tree_.assign(2 * size_ * std::max<size_t>(r_, 1), -1.0);
    for (size_t h = 0; h < n_; ++h) Refresh(h);
    used_domains_.resize(p.groups.size());
    host_of_.assign(p.items.size(), -1);
    items_on_.resize(n_);
    count_.assign(n_, 0);
    has_pinned_.assign(n_, false);
    pin_failed_.assign(p.items.size(), false);
    max_cap_inv_.assign(r_, 0.0);
    for (size_t d = 0; d < r_; ++d) {
      double m = 0;
      for (size_t h = 0; h < n_; ++h) m = std::max(m, p.cap[h * r_ + d]);
      max_cap_inv_[d] = m > 0 ? 1 / m : 0;
    }
  }

  void Run() {
    std::vector<size_t> order(p_.items.size());
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(),
                     [&](size_t a, size_t b) { return p_.items[a].size > p_.items[b].size; });
    const Strategy s = o_.strategy;
    // Instances pinned where they run go there first, or nowhere.
    for (size_t i = 0; i < p_.items.size(); ++i) {
      const int h = p_.items[i].pinned;
      if (h < 0 || !p_.items[i].conflict.empty()) continue;
      if (Feasible(i, static_cast<size_t>(h))) {
        Put(i, static_cast<size_t>(h));
        has_pinned_[static_cast<size_t>(h)] = true;
      } else {
        pin_failed_[i] = true;
      }
    }
    // The least each resource is asked for from each position on: a host
    // with less left than that in any resource takes nothing more, and
    // leaves the search (else, nearly full hosts whose leftovers are in
    // different resources make the tree descend in vain).
    std::vector<double> least((order.size() + 1) * r_, 1e300);
    for (size_t k = order.size(); k-- > 0;) {
      for (size_t d = 0; d < r_; ++d) {
        least[k * r_ + d] = std::min(least[(k + 1) * r_ + d], p_.items[order[k]].demand[d]);
      }
    }
    if (s == Strategy::kDotProduct) FillHosts(order);
    for (size_t k = 0; k < order.size(); ++k) {
      const size_t i = order[k];
      if (!p_.items[i].conflict.empty() || host_of_[i] >= 0 || p_.items[i].pinned >= 0) continue;
      const int h = Choose(i, s == Strategy::kDotProduct ? Strategy::kFirstFitDecreasing : s);
      if (h < 0) continue;
      Put(i, static_cast<size_t>(h));
      for (size_t d = 0; d < r_; ++d) {
        if (!Fits(least[(k + 1) * r_ + d], rem_[static_cast<size_t>(h) * r_ + d])) {
          open_[static_cast<size_t>(h)] = false;
          Refresh(static_cast<size_t>(h));
          break;
        }
      }
    }
  }

  // Items placed, then hosts used: which of two solutions is better.
  std::pair<size_t, size_t> Score() const {
    size_t placed = 0, hosts = 0;
    for (int h : host_of_) placed += h >= 0;
    for (size_t c : count_) hosts += c > 0;
    return {placed, hosts};
  }
  bool BetterThan(const Solver& o) const {
    auto [a_placed, a_hosts] = Score();
    auto [b_placed, b_hosts] = o.Score();
    return a_placed != b_placed ? a_placed > b_placed : a_hosts < b_hosts;
  }

  int host_of(size_t item) const { return host_of_[item]; }

  // Host by host, in order: fill it with the fitting instance whose demand
  // best aligns with what the host has left (dot product of the two,
  // normalized by the host's capacity: Tetris), until none fits. The
  // candidates are kept per set of resources asked for (a host without a
  // gpu never looks at instances that want one) and per resource asked for
  // most (so cpu-heavy and memory-heavy ones both compete for each host),
  // and scanned largest first
  // from the first one small enough in total, up to kCandidates that fit
  // (or kMisses that do not) per set.
  void FillHosts(const std::vector<size_t>& order) {
    constexpr int kCandidates = 16, kMisses = 1024;
    struct Bucket {
      uint32_t mask = 0;
      size_t dominant = 0;  // the resource it asks most of (relative to the largest host)
      std::vector<size_t> items;  // by size, largest first
      std::vector<double> sizes;
      std::vector<size_t> next;   // next[k]: the first position >= k still unplaced
    };
    std::vector<Bucket> buckets;
    for (size_t i : order) {
      if (!p_.items[i].conflict.empty() || p_.items[i].pinned >= 0) continue;
      uint32_t mask = 0;
      size_t dominant = 0;
      for (size_t d = 0; d < r_; ++d) {
        if (p_.items[i].demand[d] > 0) mask |= 1u << d;
        if (p_.items[i].demand[d] * MaxCapInv(d) > p_.items[i].demand[dominant] * MaxCapInv(dominant)) dominant = d;
      }
      auto b = std::find_if(buckets.begin(), buckets.end(),
                            [&](const Bucket& x) { return x.mask == mask && x.dominant == dominant; });
      if (b == buckets.end()) {
        b = buckets.insert(buckets.end(), Bucket{.mask = mask, .dominant = dominant, .items = {}, .sizes = {}, .next = {}});
      }
      b->items.push_back(i);
      b->sizes.push_back(p_.items[i].size);
    }
    size_t left_items = 0;
    for (Bucket& b : buckets) {
      b.next.resize(b.items.size() + 1);
      std::iota(b.next.begin(), b.next.end(), 0);
      left_items += b.items.size();
    }
    auto find = [](std::vector<size_t>& next, size_t k) {
      while (next[k] != k) {
        next[k] = next[next[k]];
        k = next[k];
      }
      return k;
    };
    for (size_t h = 0; h < n_ && left_items > 0; ++h) {
      uint32_t host_mask = 0;
      for (size_t d = 0; d < r_; ++d) {
        if (p_.cap[h * r_ + d] > 0) host_mask |= 1u << d;
      }
      for (;;) {
        double left = 0;
        for (size_t d = 0; d < r_; ++d) left += rem_[h * r_ + d] * MaxCapInv(d);
        Bucket* best_b = nullptr;
        size_t best_k = 0;
        double best = -1;
        for (Bucket& b : buckets) {
          if ((b.mask & ~host_mask) != 0) continue;
          const size_t n = b.items.size();
          // Sizes descend: start at the first that is not larger in total than what is left.
          size_t k = static_cast<size_t>(
              std::lower_bound(b.sizes.begin(), b.sizes.end(), left + 1e-9, [](double a, double x) { return a > x; }) -
              b.sizes.begin());
          int fits = 0, misses = 0;
          for (k = find(b.next, k); k < n && fits < kCandidates && misses < kMisses; k = find(b.next, k + 1)) {
            const size_t i = b.items[k];
            if (!Feasible(i, h)) {
              ++misses;
              continue;
            }
            ++fits;
            double score = 0;
            for (size_t d = 0; d < r_; ++d) {
              const double c = p_.cap[h * r_ + d];
              if (c > 0) score += (p_.items[i].demand[d] / c) * (rem_[h * r_ + d] / c);
            }
            if (score > best) {
              best = score;
              best_b = &b;
              best_k = k;
            }
          }
        }
        if (best_b == nullptr) break;
        Put(best_b->items[best_k], h);
        best_b->next[best_k] = best_k + 1;
        --left_items;
      }
    }
  }

  // Why item i found no host.
  std::string Reason(size_t i) const {
    const Problem::Item& item = p_.items[i];
    if (!item.conflict.empty()) return item.conflict;
    if (item.pinned >= 0) {
      return fmt::format("pinned to host \"{}\", which cannot hold it (room, labels or anti-affinity)",
                         p_.hosts[static_cast<size_t>(item.pinned)]->name);
    }
    bool any_labels = false, any_size = false;
    std::vector<double> largest(r_, 0.0);
    for (size_t h = 0; h < n_; ++h) {
      if (!LabelsMatch(i, h)) continue;
      any_labels = true;
      bool big = true;
      for (size_t d = 0; d < r_; ++d) {
        largest[d] = std::max(largest[d], p_.cap[h * r_ + d]);
        if (!Fits(item.demand[d], p_.cap[h * r_ + d])) big = false;
      }
      any_size = any_size || big;
    }
    if (n_ == 0) return "no hosts";
    if (!any_labels) {
      std::string want;
      for (const auto& [k, v] : item.labels) want += fmt::format("{}{}={}", want.empty() ? "" : ",", k, v);
      return fmt::format("no host has the labels {}", want);
    }
    if (!any_size) {
      for (size_t d = 0; d < r_; ++d) {
        if (!Fits(item.demand[d], largest[d])) {
          return fmt::format("needs {} {}: the largest host{} has {}", p_.resources[d], item.demand[d],
                             item.labels.empty() ? "" : " with its labels", largest[d]);
        }
      }
      return "no host is large enough in every resource at once";
    }
    // Room somewhere, ignoring anti-affinity?
    for (size_t h = 0; h < n_; ++h) {
      if (!LabelsMatch(i, h)) continue;
      bool room = true;
      for (size_t d = 0; d < r_ && room; ++d) room = Fits(item.demand[d], rem_[h * r_ + d]);
      if (room) {
        for (int g : item.groups) {
          const Problem::Group& grp = p_.groups[static_cast<size_t>(g)];
          return grp.spread_by.empty()
                     ? fmt::format("anti-affinity group \"{}\": every host with room holds one already", grp.name)
                     : fmt::format("anti-affinity group \"{}\": every {} with room holds one already (or its hosts lack the label)",
                                   grp.name, grp.spread_by);
        }
      }
    }
    std::string need;
    for (size_t d = 0; d < r_; ++d) {
      if (item.demand[d] > 0) need += fmt::format("{}{}={}", need.empty() ? "" : ", ", p_.resources[d], item.demand[d]);
    }
    return fmt::format("no host has room left for {}", need.empty() ? "it" : need);
  }

 private:
  bool LabelsMatch(size_t i, size_t h) const {
    for (const auto& [k, v] : p_.items[i].labels) {
      auto it = p_.hosts[h]->labels.find(k);
      if (it == p_.hosts[h]->labels.end() || it->second != v) return false;
    }
    return true;
  }

  bool Feasible(size_t i, size_t h) const {
    if (!open_[h]) return false;
    const Problem::Item& item = p_.items[i];
    for (size_t d = 0; d < r_; ++d) {
      if (!Fits(item.demand[d], rem_[h * r_ + d])) return false;
    }
    for (int g : item.groups) {
      const int dom = p_.groups[static_cast<size_t>(g)].domain_of_host[h];
      if (dom < 0 || used_domains_[static_cast<size_t>(g)].contains(dom)) return false;
    }
    return LabelsMatch(i, h);
  }

  void Refresh(size_t h) {
    size_t node = size_ + h;
    for (size_t d = 0; d < r_; ++d) tree_[node * r_ + d] = open_[h] ? rem_[h * r_ + d] : -1.0;
    for (node /= 2; node >= 1; node /= 2) {
      for (size_t d = 0; d < r_; ++d) {
        tree_[node * r_ + d] = std::max(tree_[2 * node * r_ + d], tree_[(2 * node + 1) * r_ + d]);
      }
      if (node == 1) break;
    }
  }

  // Up to `want` feasible hosts, leftmost first (or, with `roomy`, the
  // subtree with more of the item's largest resource first).
  void Find(size_t i, size_t node, size_t want, bool roomy, size_t dom_res, std::vector<size_t>& out) const {
    if (out.size() >= want) return;
    const Problem::Item& item = p_.items[i];
    for (size_t d = 0; d < r_; ++d) {
      if (!Fits(item.demand[d], tree_[node * r_ + d])) return;
    }
    if (node >= size_) {
      const size_t h = node - size_;
      if (h < n_ && Feasible(i, h)) out.push_back(h);
      return;
    }
    size_t first = 2 * node, second = 2 * node + 1;
    if (roomy && r_ > 0 && tree_[second * r_ + dom_res] > tree_[first * r_ + dom_res]) std::swap(first, second);
    Find(i, first, want, roomy, dom_res, out);
    Find(i, second, want, roomy, dom_res, out);
  }

  int Choose(size_t i, Strategy s) const {
    const Problem::Item& item = p_.items[i];
    size_t dom_res = 0;
    for (size_t d = 0; d < r_; ++d) {
      if (item.demand[d] * MaxCapInv(dom_res) < item.demand[d] * MaxCapInv(d) || item.demand[dom_res] == 0) dom_res = d;
    }
    std::vector<size_t> found;
    const bool roomy = s == Strategy::kSpread;
    const size_t want = s == Strategy::kFirstFitDecreasing ? 1 : 8;
    if (r_ == 0) {
      for (size_t h = 0; h < n_ && found.size() < want; ++h) {
        if (Feasible(i, h)) found.push_back(h);
      }
    } else {
      Find(i, 1, want, roomy, dom_res, found);
    }
    if (found.empty()) return -1;
    if (s == Strategy::kFirstFitDecreasing) return static_cast<int>(found.front());
    size_t best = found.front();
    double best_score = -1e300;
    for (size_t h : found) {
      double score = 0;
      if (s == Strategy::kBestFit) {
        // The tightest resource after placing: smaller is better.
        double slack = 1e300;
        for (size_t d = 0; d < r_; ++d) {
          const double c = p_.cap[h * r_ + d];
          if (c > 0) slack = std::min(slack, (rem_[h * r_ + d] - item.demand[d]) / c);
        }
        score = -slack;
      } else if (s == Strategy::kSpread) {
        double least = 1e300;
        for (size_t d = 0; d < r_; ++d) {
          const double c = p_.cap[h * r_ + d];
          if (c > 0) least = std::min(least, (rem_[h * r_ + d] - item.demand[d]) / c);
        }
        score = least;
      } else {  // kDotProduct: demand . free, both normalized by the host
        for (size_t d = 0; d < r_; ++d) {
          const double c = p_.cap[h * r_ + d];
          if (c > 0) score += (item.demand[d] / c) * (rem_[h * r_ + d] / c);
        }
      }
      if (score > best_score) {
        best_score = score;
        best = h;
      }
    }
    return static_cast<int>(best);
  }

  double MaxCapInv(size_t d) const { return max_cap_inv_[d]; }

  void Put(size_t i, size_t h) {
    const Problem::Item& item = p_.items[i];
    for (size_t d = 0; d < r_; ++d) rem_[h * r_ + d] -= item.demand[d];
    for (int g : item.groups) used_domains_[static_cast<size_t>(g)].insert(p_.groups[static_cast<size_t>(g)].domain_of_host[h]);
    host_of_[i] = static_cast<int>(h);
    items_on_[h].push_back(i);
    ++count_[h];
    Refresh(h);
  }

  void Take(size_t i) {
    const size_t h = static_cast<size_t>(host_of_[i]);
    const Problem::Item& item = p_.items[i];
    for (size_t d = 0; d < r_; ++d) rem_[h * r_ + d] += item.demand[d];
    for (int g : item.groups) used_domains_[static_cast<size_t>(g)].erase(p_.groups[static_cast<size_t>(g)].domain_of_host[h]);
    host_of_[i] = -1;
    std::erase(items_on_[h], i);
    --count_[h];
    Refresh(h);
  }

  // Empties the least-filled hosts into the others where everything of a
  // host fits elsewhere; a host that cannot be emptied whole keeps its
  // instances. Only hosts in use receive.
 public:
  // Every host open again; each item still unplaced goes to the first that
  // takes it.
  void PlaceLeftovers() {
    for (size_t h = 0; h < n_; ++h) {
      open_[h] = true;
      Refresh(h);
    }
    for (size_t i = 0; i < p_.items.size(); ++i) {
      if (host_of_[i] >= 0 || !p_.items[i].conflict.empty() || p_.items[i].pinned >= 0) continue;
      const int h = Choose(i, Strategy::kFirstFitDecreasing);
      if (h >= 0) Put(i, static_cast<size_t>(h));
    }
  }

  void LocalSearch() {
    std::vector<size_t> used;
    for (size_t h = 0; h < n_; ++h) {
      open_[h] = count_[h] > 0;  // only hosts in use receive
      if (open_[h]) used.push_back(h);
      Refresh(h);
    }
    for (int pass = 0; pass < o_.local_search_passes; ++pass) {
      std::vector<std::pair<double, size_t>> by_fill;
      for (size_t h : used) {
        if (count_[h] == 0) continue;
        double fill = 0;
        for (size_t d = 0; d < r_; ++d) {
          const double c = p_.cap[h * r_ + d];
          if (c > 0) fill = std::max(fill, 1 - rem_[h * r_ + d] / c);
        }
        by_fill.emplace_back(fill, h);
      }
      std::sort(by_fill.begin(), by_fill.end());
      bool freed = false;
      for (const auto& [fill, h] : by_fill) {
        if (count_[h] == 0 || has_pinned_[h]) continue;
        open_[h] = false;
        Refresh(h);
        std::vector<size_t> moving = items_on_[h];
        std::sort(moving.begin(), moving.end(), [&](size_t a, size_t b) { return p_.items[a].size > p_.items[b].size; });
        std::vector<std::pair<size_t, size_t>> moved;  // item, from
        bool all = true;
        for (size_t i : moving) {
          Take(i);
          const int to = Choose(i, Strategy::kBestFit);
          if (to < 0) {
            Put(i, h);
            all = false;
            break;
          }
          Put(i, static_cast<size_t>(to));
          moved.emplace_back(i, h);
        }
        if (all) {
          freed = true;  // h stays closed: one host fewer
          continue;
        }
        for (const auto& [i, from] : moved) {  // undo: h keeps its instances
          Take(i);
          Put(i, from);
        }
        open_[h] = true;
        Refresh(h);
      }
      if (!freed) break;
    }
  }

 private:
  const Problem& p_;
  PlacementOptions o_;
  size_t r_, n_, size_ = 1;
  std::vector<double> rem_;
  std::vector<bool> open_;
  std::vector<double> tree_;
  std::vector<std::unordered_set<int>> used_domains_;
  std::vector<int> host_of_;
  std::vector<std::vector<size_t>> items_on_;
  std::vector<size_t> count_;
  std::vector<double> max_cap_inv_;
  std::vector<bool> has_pinned_;  // hosts holding a pinned instance: never emptied
  std::vector<bool> pin_failed_;  // pinned instances their host cannot hold
};

}  // namespace

const char* StrategyName(Strategy s) noexcept {
  switch (s) {
    case Strategy::kFirstFitDecreasing: return "ffd";
    case Strategy::kBestFit: return "best-fit";
    case Strategy::kSpread: return "spread";
    case Strategy::kDotProduct: return "dot-product";
    case Strategy::kLocalSearch: return "local-search";
  }
  return "?";
}

Result<Strategy> ParseStrategy(std::string_view name) {
  for (Strategy s : {Strategy::kFirstFitDecreasing, Strategy::kBestFit, Strategy::kSpread, Strategy::kDotProduct,
                     Strategy::kLocalSearch}) {
    if (name == StrategyName(s)) return s;
  }
  return InvalidArgument(
      fmt::format("unknown strategy \"{}\" (ffd, best-fit, spread, dot-product, local-search)", name));
}

Result<Placement> Place(std::span<const Host> hosts, std::span<const Instance> instances,
                        const PlacementOptions& options) {
  QCLOUD_ASSIGN_OR_RETURN(Problem p, Build(hosts, instances, options.headroom));
  // Local search starts from the better of first-fit-decreasing and Tetris
  // (neither wins on every input: Tetris, host by host, may use up large
  // hosts on small instances).
  PlacementOptions first = options;
  if (options.strategy == Strategy::kLocalSearch) first.strategy = Strategy::kDotProduct;
  Solver tetris(p, first);
  tetris.Run();
  std::optional<Solver> ffd;
  if (options.strategy == Strategy::kLocalSearch) {
    PlacementOptions o = options;
    o.strategy = Strategy::kFirstFitDecreasing;
    ffd.emplace(p, o);
    ffd->Run();
  }
  Solver& solver = ffd && ffd->BetterThan(tetris) ? *ffd : tetris;
  if (options.strategy == Strategy::kLocalSearch) {
    solver.LocalSearch();
    solver.PlaceLeftovers();  // a host emptied may take what nothing took
  }
  Placement out;
  std::vector<bool> host_used(hosts.size(), false);
  std::vector<std::string> reason(instances.size());
  for (size_t i = 0; i < p.items.size(); ++i) {
    const int h = solver.host_of(i);
    for (size_t m : p.items[i].members) {
      if (h >= 0) {
        out.placements.emplace(instances[m].name, hosts[static_cast<size_t>(h)].name);
        host_used[static_cast<size_t>(h)] = true;
      } else {
        reason[m] = solver.Reason(i);
      }
    }
  }
  for (size_t m = 0; m < instances.size(); ++m) {
    if (!reason[m].empty()) out.unplaced.push_back({instances[m].name, reason[m]});
  }
  out.hosts_used = static_cast<size_t>(std::count(host_used.begin(), host_used.end(), true));
  return out;
}

Status Check(std::span<const Host> hosts, std::span<const Instance> instances, const Placement& placement,
             double headroom) {
  QCLOUD_ASSIGN_OR_RETURN(Problem p, Build(hosts, instances, headroom));
  std::unordered_map<std::string, size_t> host_index;
  for (size_t h = 0; h < hosts.size(); ++h) host_index.emplace(hosts[h].name, h);
  std::unordered_set<std::string> unplaced;
  for (const Unplaced& u : placement.unplaced) unplaced.insert(u.name);
  std::vector<double> used(hosts.size() * p.r, 0.0);
  std::map<std::pair<int, int>, std::string> domains;  // (group, domain) -> instance
  std::map<std::string, std::string> affinity_host;
  std::map<std::string, std::string> group_of;
  for (const Instance& in : instances) {
    auto it = placement.placements.find(in.name);
    const bool placed = it != placement.placements.end();
    if (placed == unplaced.contains(in.name)) {
      return Status(Errc::kInvalidArgument,
                    fmt::format("instance \"{}\" is {} placed and unplaced", in.name, placed ? "both" : "neither"));
    }
    const std::string where = placed ? it->second : "";
    if (!in.affinity.empty()) {
      auto [a, fresh] = affinity_host.emplace(in.affinity, where);
      if (!fresh && a->second != where) {
        return Status(Errc::kInvalidArgument,
                      fmt::format("affinity group \"{}\" is split (\"{}\" on \"{}\", another on \"{}\")", in.affinity,
                                  in.name, where, a->second));
      }
    }
    if (!placed) continue;
    auto h = host_index.find(where);
    if (h == host_index.end()) {
      return Status(Errc::kInvalidArgument, fmt::format("instance \"{}\" is on unknown host \"{}\"", in.name, where));
    }
    const Host& host = hosts[h->second];
    if (!in.pinned_host.empty() && in.pinned_host != host.name) {
      return InvalidArgument(fmt::format("instance \"{}\" is pinned to \"{}\" but placed on \"{}\"", in.name,
                                         in.pinned_host, host.name));
    }
    for (const auto& [k, v] : in.host_labels) {
      auto l = host.labels.find(k);
      if (l == host.labels.end() || l->second != v) {
        return Status(Errc::kInvalidArgument,
                      fmt::format("instance \"{}\" needs {}={}; host \"{}\" has not", in.name, k, v, host.name));
      }
    }
    for (size_t d = 0; d < p.r; ++d) {
      auto dm = in.demand.find(p.resources[d]);
      if (dm != in.demand.end()) used[h->second * p.r + d] += dm->second;
    }
    if (!in.anti_affinity.empty()) {
      int g = 0;
      while (p.groups[static_cast<size_t>(g)].name != in.anti_affinity) ++g;
      const int dom = p.groups[static_cast<size_t>(g)].domain_of_host[h->second];
      if (dom < 0) {
        return Status(Errc::kInvalidArgument, fmt::format("instance \"{}\" (spread by {}) is on host \"{}\" without that label",
                                                             in.name, in.spread_by, host.name));
      }
      auto [d, fresh] = domains.emplace(std::pair{g, dom}, in.name);
      if (!fresh) {
        return Status(Errc::kInvalidArgument,
                      fmt::format("anti-affinity group \"{}\": \"{}\" and \"{}\" share {} of host \"{}\"",
                                  in.anti_affinity, d->second, in.name, in.spread_by.empty() ? "the host" : in.spread_by,
                                  host.name));
      }
    }
  }
  for (size_t h = 0; h < hosts.size(); ++h) {
    for (size_t d = 0; d < p.r; ++d) {
      if (!Fits(used[h * p.r + d], p.cap[h * p.r + d])) {
        return Status(Errc::kInvalidArgument, fmt::format("host \"{}\": {} {} placed, {} usable", hosts[h].name,
                                                             p.resources[d], used[h * p.r + d], p.cap[h * p.r + d]));
      }
    }
  }
  std::unordered_set<std::string_view> known;
  for (const Instance& in : instances) known.insert(in.name);
  for (const auto& [name, where] : placement.placements) {
    if (!known.contains(name)) {
      return Status(Errc::kInvalidArgument, fmt::format("unknown instance \"{}\" placed", name));
    }
  }
  return Status::Ok();
}

size_t LowerBound(std::span<const Host> hosts, std::span<const Instance> instances, double headroom) {
  std::map<std::string, double> total;
  for (const Instance& in : instances) {
    for (const auto& [k, v] : in.demand) total[k] += v;
  }
  size_t bound = 0;
  for (const auto& [k, need] : total) {
    if (need <= 0) continue;
    std::vector<double> caps;
    for (const Host& h : hosts) {
      auto it = h.capacity.find(k);
      if (it != h.capacity.end()) caps.push_back(it->second * (1 - headroom));
    }
    std::sort(caps.rbegin(), caps.rend());
    double sum = 0;
    size_t k_hosts = 0;
    while (k_hosts < caps.size() && !Fits(need, sum)) sum += caps[k_hosts++];
    if (!Fits(need, sum)) k_hosts = hosts.size() + 1;  // cannot hold it at all
    bound = std::max(bound, k_hosts);
  }
  return bound;
}

}  // namespace qcloud::sched

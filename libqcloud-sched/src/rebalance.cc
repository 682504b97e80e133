#include <algorithm>
#include <cmath>
#include <set>

#include <fmt/format.h>

#include "qcloud/sched/placement.h"

namespace qcloud::sched {

namespace {

bool FitsIn(double used, double cap) { return used <= cap + 1e-9 * std::max(1.0, std::abs(cap)); }

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const double rank = std::clamp(p, 0.0, 100.0) / 100.0 * static_cast<double>(v.size() - 1);
  const size_t lo = static_cast<size_t>(std::floor(rank));
  const size_t hi = std::min(lo + 1, v.size() - 1);
  return v[lo] + (v[hi] - v[lo]) * (rank - static_cast<double>(lo));
}

}  // namespace

Result<RebalancePlan> Rebalance(std::span<const Host> hosts, std::span<const Instance> instances,
                                const std::map<std::string, std::string>& current,
                                const std::map<std::string, std::vector<std::map<std::string, double>>>& usage,
                                const RebalanceOptions& options) {
  if (!(options.percentile >= 0 && options.percentile <= 100)) {
    return InvalidArgument(fmt::format("rebalance: percentile {} is not in [0, 100]", options.percentile));
  }
  // Demands: declared, or the percentile of what was used.
  std::vector<Instance> sized(instances.begin(), instances.end());
  for (Instance& in : sized) {
    auto u = usage.find(in.name);
    if (u == usage.end() || u->second.empty()) continue;
    std::map<std::string, std::vector<double>> per;
    for (const auto& sample : u->second) {
      for (const auto& [r, v] : sample) {
        if (!std::isfinite(v) || v < 0) return InvalidArgument(fmt::format("usage of \"{}\": {} = {}", in.name, r, v));
        per[r].push_back(v);
      }
    }
    in.demand.clear();
    for (auto& [r, vs] : per) in.demand[r] = Percentile(std::move(vs), options.percentile);
  }
  Placement now;
  for (const Instance& in : sized) {
    auto at = current.find(in.name);
    if (at == current.end()) {
      now.unplaced.push_back({in.name, "not running"});
    } else {
      now.placements[in.name] = at->second;
    }
  }
  QCLOUD_RETURN_IF_ERROR(Check(hosts, sized, now, options.headroom).WithContext("the current placement"));

  // Dense state.
  std::map<std::string, size_t> res_index;
  for (const Host& h : hosts) {
    for (const auto& [r, v] : h.capacity) res_index.emplace(r, res_index.size());
  }
  for (const Instance& in : sized) {
    for (const auto& [r, v] : in.demand) res_index.emplace(r, res_index.size());
  }
  const size_t R = res_index.size(), H = hosts.size();
  std::map<std::string, size_t> host_index;
  for (size_t h = 0; h < H; ++h) host_index.emplace(hosts[h].name, h);
  std::vector<double> cap(H * R, 0.0), used(H * R, 0.0);
  for (size_t h = 0; h < H; ++h) {
    for (const auto& [r, v] : hosts[h].capacity) cap[h * R + res_index.at(r)] = v * (1 - options.headroom);
  }
  struct Inst {
    size_t index;
    std::vector<double> demand;
    int host = -1;
    bool fixed = false;  // pinned or in an affinity group: stays
  };
  std::vector<Inst> inst;
  for (size_t i = 0; i < sized.size(); ++i) {
    Inst x{.index = i, .demand = std::vector<double>(R, 0.0)};
    for (const auto& [r, v] : sized[i].demand) x.demand[res_index.at(r)] = v;
    auto at = now.placements.find(sized[i].name);
    if (at != now.placements.end()) x.host = static_cast<int>(host_index.at(at->second));
    x.fixed = !sized[i].pinned_host.empty() || !sized[i].affinity.empty();
    if (x.host >= 0) {
      for (size_t d = 0; d < R; ++d) used[static_cast<size_t>(x.host) * R + d] += x.demand[d];
    }
    inst.push_back(std::move(x));
  }
  // Anti-affinity: (group, domain) -> count.
  auto domain = [&](const Instance& in, size_t h) -> std::string {
    if (in.spread_by.empty()) return hosts[h].name;
    auto l = hosts[h].labels.find(in.spread_by);
    return l == hosts[h].labels.end() ? std::string() : "=" + l->second;
  };
  std::map<std::pair<std::string, std::string>, int> taken;
  for (const Inst& x : inst) {
    if (x.host >= 0 && !sized[x.index].anti_affinity.empty()) {
      ++taken[{sized[x.index].anti_affinity, domain(sized[x.index], static_cast<size_t>(x.host))}];
    }
  }
  auto can_move = [&](const Inst& x, size_t to) {
    if (static_cast<int>(to) == x.host) return false;
    for (size_t d = 0; d < R; ++d) {
      if (!FitsIn(used[to * R + d] + x.demand[d], cap[to * R + d])) return false;
    }
    const Instance& in = sized[x.index];
    for (const auto& [k, v] : in.host_labels) {
      auto l = hosts[to].labels.find(k);
      if (l == hosts[to].labels.end() || l->second != v) return false;
    }
    if (!in.anti_affinity.empty()) {
      const std::string dom = domain(in, to);
      if (dom.empty()) return false;
      const std::string here = domain(in, static_cast<size_t>(x.host));
      auto t = taken.find({in.anti_affinity, dom});
      if (t != taken.end() && t->second > 0 && dom != here) return false;
    }
    return true;
  };
  std::vector<size_t> count(H, 0);
  for (const Inst& x : inst) {
    if (x.host >= 0) ++count[static_cast<size_t>(x.host)];
  }
  auto move = [&](Inst& x, size_t to) {
    const size_t from = static_cast<size_t>(x.host);
    --count[from];
    ++count[to];
    for (size_t d = 0; d < R; ++d) {
      used[from * R + d] -= x.demand[d];
      used[to * R + d] += x.demand[d];
    }
    const Instance& in = sized[x.index];
    if (!in.anti_affinity.empty()) {
      --taken[{in.anti_affinity, domain(in, from)}];
      ++taken[{in.anti_affinity, domain(in, to)}];
    }
    x.host = static_cast<int>(to);
  };
  auto load = [&](size_t h, size_t* which = nullptr) {
    double worst = 0;
    for (size_t d = 0; d < R; ++d) {
      const double c = cap[h * R + d];
      const double l = c > 0 ? used[h * R + d] / c : (used[h * R + d] > 0 ? 1e9 : 0);
      if (l > worst) {
        worst = l;
        if (which) *which = d;
      }
    }
    return worst;
  };
  auto count_on = [&](size_t h) { return count[h]; };
  auto stats = [&](size_t& hosts_used, double& peak) {
    std::vector<bool> busy(H, false);
    for (const Inst& x : inst) {
      if (x.host >= 0) busy[static_cast<size_t>(x.host)] = true;
    }
    hosts_used = static_cast<size_t>(std::count(busy.begin(), busy.end(), true));
    peak = 0;
    for (size_t h = 0; h < H; ++h) peak = std::max(peak, load(h));
  };
  std::vector<std::string> res_names(R);
  for (const auto& [r, i] : res_index) res_names[i] = r;

  RebalancePlan plan;
  stats(plan.hosts_before, plan.peak_before);
  if (R == 0) {  // nothing is asked of anything: nothing to move
    plan.hosts_after = plan.hosts_before;
    plan.peak_after = plan.peak_before;
    return plan;
  }
  if (options.goal == RebalanceGoal::kFreeHosts) {
    std::set<size_t> freed;
    bool progress = true;
    while (progress && plan.moves.size() < options.max_moves) {
      progress = false;
      std::vector<std::pair<double, size_t>> order;
      for (size_t h = 0; h < H; ++h) {
        if (count_on(h) > 0) order.emplace_back(load(h), h);
      }
      std::sort(order.begin(), order.end());
      for (const auto& [l, h] : order) {
        std::vector<size_t> on;
        bool stuck = false;
        for (size_t k = 0; k < inst.size(); ++k) {
          if (inst[k].host != static_cast<int>(h)) continue;
          if (inst[k].fixed) stuck = true;
          on.push_back(k);
        }
        if (stuck || on.empty() || plan.moves.size() + on.size() > options.max_moves) continue;
        // Largest first, each to the fullest host it fits (never an empty or freed one).
        std::sort(on.begin(), on.end(), [&](size_t a, size_t b) {
          double sa = 0, sb = 0;
          for (size_t d = 0; d < R; ++d) sa += inst[a].demand[d], sb += inst[b].demand[d];
          return sa > sb;
        });
        std::vector<std::pair<size_t, size_t>> done;  // inst, from
        bool all = true;
        for (size_t k : on) {
          int best = -1;
          double best_load = -1;
          for (size_t to = 0; to < H; ++to) {
            if (to == h || freed.contains(to) || count_on(to) == 0 || !can_move(inst[k], to)) continue;
            const double l2 = load(to);
            if (l2 > best_load) {
              best_load = l2;
              best = static_cast<int>(to);
            }
          }
          if (best < 0) {
            all = false;
            break;
          }
          done.emplace_back(k, h);
          move(inst[k], static_cast<size_t>(best));
        }
        if (!all) {
          for (auto it = done.rbegin(); it != done.rend(); ++it) move(inst[it->first], it->second);
          continue;
        }
        freed.insert(h);
        for (size_t j = 0; j < done.size(); ++j) {
          const Inst& x = inst[done[j].first];
          const bool last = j + 1 == done.size();
          plan.moves.push_back({sized[x.index].name, hosts[h].name, hosts[static_cast<size_t>(x.host)].name,
                                last ? 1.0 : 0.0, last ? "frees " + hosts[h].name : "emptying " + hosts[h].name});
        }
        progress = true;
        break;  // loads changed: order again
      }
    }
  } else {
    while (plan.moves.size() < options.max_moves) {
      size_t hot = 0, dim = 0;
      double peak = -1;
      for (size_t h = 0; h < H; ++h) {
        size_t d = 0;
        const double l = load(h, &d);
        if (l > peak) peak = l, hot = h, dim = d;
      }
      // The move off `hot` that lowers the cluster's peak most. The peak
      // after a move is the larger of the two hosts' new loads and the
      // highest load elsewhere (from the top three).
      std::vector<std::pair<double, size_t>> top;
      for (size_t h = 0; h < H; ++h) {
        top.emplace_back(load(h), h);
        std::sort(top.rbegin(), top.rend());
        if (top.size() > 3) top.pop_back();
      }
      auto load_with = [&](size_t h, const std::vector<double>& delta, double sign) {
        double worst = 0;
        for (size_t d = 0; d < R; ++d) {
          const double c = cap[h * R + d];
          const double u = used[h * R + d] + sign * delta[d];
          worst = std::max(worst, c > 0 ? u / c : (u > 1e-12 ? 1e9 : 0));
        }
        return worst;
      };
      int best_k = -1, best_to = -1;
      double best_peak = peak - 1e-9;
      for (size_t k = 0; k < inst.size(); ++k) {
        if (inst[k].host != static_cast<int>(hot) || inst[k].fixed || inst[k].demand[dim] <= 0) continue;
        const double hot_after = load_with(hot, inst[k].demand, -1);
        for (size_t to = 0; to < H; ++to) {
          if (!can_move(inst[k], to)) continue;
          double after = std::max(hot_after, load_with(to, inst[k].demand, +1));
          for (const auto& [l, h] : top) {
            if (h != hot && h != to) {
              after = std::max(after, l);
              break;
            }
          }
          if (after < best_peak) {
            best_peak = after;
            best_k = static_cast<int>(k);
            best_to = static_cast<int>(to);
          }
        }
      }
      if (best_k < 0) break;
      move(inst[static_cast<size_t>(best_k)], static_cast<size_t>(best_to));
      plan.moves.push_back({sized[inst[static_cast<size_t>(best_k)].index].name, hosts[hot].name,
                            hosts[static_cast<size_t>(best_to)].name, peak - best_peak,
                            fmt::format("peak {:.3g} -> {:.3g} ({} {})", peak, best_peak, hosts[hot].name, res_names[dim])});
    }
  }
  stats(plan.hosts_after, plan.peak_after);
  return plan;
}

}  // namespace qcloud::sched

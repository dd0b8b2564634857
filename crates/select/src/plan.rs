//! The order in which one request tries a set of targets.
//!
//! Targets are tried by priority, lower first. Within a priority the first
//! is the balancer's choice: smooth weighted round robin, so that over each
//! cycle of `sum(weights)` requests every target leads exactly `weight`
//! times, spread out rather than in runs; or, with least-requests, the
//! target with the fewest requests in flight for its weight (ties keep the
//! round-robin order). The others of the priority follow in rotation after
//! the first. A target that is not ready (down, circuit open or busy with
//! its trial, resting) goes after every ready one, kept as a last resort
//! rather than failing a request that nothing else can serve.
//!
//! The plan is the same for upstream pools and AI routes; what differs is
//! who reports back (`health`) and what a failure is.

use std::sync::atomic::{AtomicUsize, Ordering};

use smallvec::SmallVec;

/// How the first target of a priority is chosen.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Balance {
    /// Smooth weighted round robin.
    #[default]
    RoundRobin,
    /// Fewest requests in flight for the weight.
    LeastRequests,
}

/// A target as the plan sees it.
#[derive(Debug, Clone, Copy)]
pub struct Member {
    /// Its share of its priority's requests (0 counts as 1).
    pub weight: u32,
    /// Lower is tried first.
    pub priority: u32,
}

/// A member's standing when a request is planned.
#[derive(Debug, Clone, Copy)]
pub struct Standing {
    /// Requests in flight to it (least-requests only).
    pub in_flight: u32,
    /// Whether it should be asked before the members that are not.
    pub ready: bool,
}

/// One priority's members and their round-robin schedule.
#[derive(Debug)]
struct Group {
    /// Indices into the members, in config order.
    members: Vec<usize>,
    /// Their weights, as given.
    weights: Vec<u32>,
    /// Positions in `members`, one cycle of smooth weighted round robin.
    schedule: Vec<usize>,
}

/// The planner for one set of members.
#[derive(Debug)]
pub struct Planner {
    groups: Vec<Group>,
    balance: Balance,
    turn: AtomicUsize,
    count: usize,
}

impl Planner {
    /// A planner for `members`, indexed as given.
    pub fn new(members: &[Member], balance: Balance) -> Planner {
        let mut priorities: Vec<u32> = members.iter().map(|m| m.priority).collect();
        priorities.sort_unstable();
        priorities.dedup();
        let groups = priorities
            .into_iter()
            .map(|priority| {
                let indices: Vec<usize> = (0..members.len())
                    .filter(|&i| members[i].priority == priority)
                    .collect();
                let weights: Vec<u32> = indices.iter().map(|&i| members[i].weight.max(1)).collect();
                Group {
                    schedule: weighted_schedule(&weights),
                    members: indices,
                    weights,
                }
            })
            .collect();
        Planner {
            groups,
            balance,
            turn: AtomicUsize::new(0),
            count: members.len(),
        }
    }

    /// The members in the order the next request tries them. `standing`
    /// tells each member's state by index; it is asked once per member.
    /// Kept inline up to [`INLINE`] members: a plan is made per request.
    pub fn plan(&self, standing: impl Fn(usize) -> Standing) -> Plan {
        let turn = self.turn.fetch_add(1, Ordering::Relaxed);
        let standings: SmallVec<[Standing; INLINE]> = (0..self.count).map(standing).collect();
        let mut ready = Plan::new();
        let mut rest = Plan::new();
        for group in &self.groups {
            let n = group.members.len();
            let first = group.schedule[turn % group.schedule.len()];
            let mut order: Plan = (0..n).map(|k| (first + k) % n).collect();
            if self.balance == Balance::LeastRequests {
                // Fewest in flight for the weight; ties keep the turn order.
                let load = |k: usize| {
                    (
                        u64::from(standings[group.members[k]].in_flight),
                        u64::from(group.weights[k]),
                    )
                };
                order.sort_by(|&a, &b| {
                    let ((load_a, weight_a), (load_b, weight_b)) = (load(a), load(b));
                    (load_a * weight_b).cmp(&(load_b * weight_a))
                });
            }
            for k in order {
                let index = group.members[k];
                if standings[index].ready {
                    ready.push(index);
                } else {
                    rest.push(index);
                }
            }
        }
        ready.extend(rest);
        ready
    }
}

/// How many members a plan holds without allocating.
pub const INLINE: usize = 8;

/// Member indices in the order to try them.
pub type Plan = SmallVec<[usize; INLINE]>;

/// One cycle of smooth weighted round robin over `weights` (nginx's): each
/// index appears `weight` times (after dividing by the weights' greatest
/// common divisor), interleaved.
fn weighted_schedule(weights: &[u32]) -> Vec<usize> {
    fn gcd(a: u32, b: u32) -> u32 {
        if b == 0 { a } else { gcd(b, a % b) }
    }
    let divisor = weights.iter().copied().fold(0, gcd).max(1);
    let weights: Vec<i64> = weights.iter().map(|&w| i64::from(w / divisor)).collect();
    let total: i64 = weights.iter().sum();
    let mut current = vec![0i64; weights.len()];
    let mut schedule = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
    for _ in 0..total {
        for (c, w) in current.iter_mut().zip(&weights) {
            *c += w;
        }
        let best = (0..weights.len())
            .max_by_key(|&i| (current[i], std::cmp::Reverse(i)))
            .unwrap_or(0);
        current[best] -= total;
        schedule.push(best);
    }
    if schedule.is_empty() {
        schedule.push(0);
    }
    schedule
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ready(_: usize) -> Standing {
        Standing {
            in_flight: 0,
            ready: true,
        }
    }

    #[test]
    fn the_schedule_spreads_targets_by_weight() {
        assert_eq!(weighted_schedule(&[1, 1, 1]), [0, 1, 2]);
        assert_eq!(weighted_schedule(&[5, 1, 1]), [0, 0, 1, 0, 2, 0, 0]);
        assert_eq!(
            weighted_schedule(&[300, 100]),
            [0, 0, 1, 0],
            "reduced by the common divisor"
        );
        let schedule = weighted_schedule(&[1000, 999, 1]);
        assert_eq!(schedule.len(), 2000);
        assert_eq!(schedule.iter().filter(|&&i| i == 2).count(), 1);
    }

    #[test]
    fn weights_split_the_lead_within_a_priority_and_priorities_go_in_order() {
        let members = [
            Member { weight: 3, priority: 0 },
            Member { weight: 1, priority: 0 },
            Member { weight: 1, priority: 1 },
        ];
        let planner = Planner::new(&members, Balance::RoundRobin);
        let mut leads = [0; 3];
        for _ in 0..400 {
            let plan = planner.plan(ready);
            assert_eq!(plan.len(), 3);
            assert_eq!(plan[2], 2, "the lower priority comes last");
            leads[plan[0]] += 1;
        }
        assert_eq!(leads, [300, 100, 0]);
    }

    #[test]
    fn members_not_ready_go_last_in_plan_order() {
        let members = [Member { weight: 1, priority: 0 }; 3];
        let planner = Planner::new(&members, Balance::RoundRobin);
        let standing = |i: usize| Standing {
            in_flight: 0,
            ready: i != 0,
        };
        assert_eq!(planner.plan(standing)[..], [1, 2, 0]);
        assert_eq!(planner.plan(standing)[..], [1, 2, 0]);
        assert_eq!(planner.plan(standing)[..], [2, 1, 0]);
    }

    #[test]
    fn least_requests_leads_with_the_fewest_in_flight_for_the_weight() {
        let members = [Member { weight: 1, priority: 0 }, Member { weight: 2, priority: 0 }];
        let planner = Planner::new(&members, Balance::LeastRequests);
        let busy = |first: u32, second: u32| {
            move |i: usize| Standing {
                in_flight: [first, second][i],
                ready: true,
            }
        };
        // 2 in flight at weight 2 is as loaded as 1 at weight 1: a tie.
        assert_eq!(planner.plan(busy(3, 2))[0], 1);
        assert_eq!(planner.plan(busy(1, 4))[0], 0);
    }
}

//! The nemesis: every few hundred simulated milliseconds it picks a fault
//! from the seed. Either the links change (mended, the leader isolated, a
//! minority split off, a bridge, one direction of a link cut, messages lost
//! or slowed), or a node does (a crash, at most a minority down at once; a
//! restart; a leadership transfer).

use std::collections::BTreeSet;
use std::time::Duration;

use rand::seq::{IndexedRandom, SliceRandom};
use rand::Rng;

use super::cluster::Cluster;
use super::world::{Faults, World};

/// Every directed link between a node of `a` and a node of `b`.
fn links_between(a: &[u64], b: &[u64]) -> BTreeSet<(u64, u64)> {
    let mut cut = BTreeSet::new();
    for &x in a {
        for &y in b {
            cut.insert((x, y));
            cut.insert((y, x));
        }
    }
    cut
}

/// Injects faults until the run's simulated clock reaches `until`.
pub async fn run(cluster: &mut Cluster, until: Duration) {
    let world = cluster.world.clone();
    while world.elapsed() < until {
        let pause = world.rand(|r| r.random_range(100..600));
        tokio::time::sleep(Duration::from_millis(pause)).await;
        let roll = world.rand(|r| r.random_range(0..100));
        let mut nodes = world.ids.clone();
        world.rand(|r| nodes.shuffle(r));
        let leader = cluster.leader();
        if roll < 65 {
            // A new link fault replaces the last one.
            if let Some((faults, what)) = link_fault(&world, roll, &nodes, leader) {
                *world.faults.lock().unwrap() = faults;
                world.record(format_args!("nemesis: {what}"));
            }
        } else {
            node_fault(cluster, roll, &nodes, leader).await;
        }
    }
}

/// The link fault for `roll` (0 to 64), on the shuffled `nodes`.
fn link_fault(
    world: &World,
    roll: u32,
    nodes: &[u64],
    leader: Option<u64>,
) -> Option<(Faults, String)> {
    let minority = (nodes.len() - 1) / 2;
    let mut faults = Faults::default();
    let what = match roll {
        0..12 => "mend links".to_string(),
        12..22 => {
            let l = leader?;
            let rest: Vec<u64> = nodes.iter().copied().filter(|&i| i != l).collect();
            faults.cut = links_between(&[l], &rest);
            format!("isolate leader {l}")
        }
        22..32 => {
            let (a, b) = nodes.split_at(world.rand(|r| r.random_range(1..=minority)));
            faults.cut = links_between(a, b);
            format!("split {a:?} | {b:?}")
        }
        32..38 => {
            // Two halves that only the bridge node hears both of.
            let (bridge, rest) = nodes.split_first().expect("a node");
            let (a, b) = rest.split_at(rest.len() / 2);
            faults.cut = links_between(a, b);
            format!("bridge {a:?} <{bridge}> {b:?}")
        }
        38..45 => {
            faults.cut.insert((nodes[0], nodes[1]));
            format!("cut {}->{}", nodes[0], nodes[1])
        }
        45..55 => {
            faults.loss_permille = world.rand(|r| r.random_range(20..150));
            format!("lose {} per mille", faults.loss_permille)
        }
        _ => {
            faults.delay_max_ms = world.rand(|r| r.random_range(30..150));
            format!("delay up to {} ms", faults.delay_max_ms)
        }
    };
    Some((faults, what))
}

/// The node fault for `roll` (65 to 99); the links stay as they are.
async fn node_fault(cluster: &mut Cluster, roll: u32, nodes: &[u64], leader: Option<u64>) {
    let world = cluster.world.clone();
    let minority = (nodes.len() - 1) / 2;
    match roll {
        65..78 if cluster.down().len() < minority => {
            let victim = match leader {
                Some(l) if world.chance(500) => l,
                _ => nodes[0],
            };
            cluster.crash(victim).await;
        }
        78..90 => {
            let down = cluster.down();
            if let Some(id) = world.rand(|r| down.choose(r).copied()) {
                cluster.start_node(id).await;
            }
        }
        90.. => {
            let Some(l) = leader else { return };
            let to = *nodes.iter().find(|&&i| i != l).expect("another node");
            let raft = world.raft(l).expect("the leader is up");
            // A refusal (the leader changed meanwhile) is a fine outcome.
            let _ = raft.trigger().transfer_leader(to).await;
            world.record(format_args!("nemesis: transfer leadership {l} -> {to}"));
        }
        _ => {}
    }
}

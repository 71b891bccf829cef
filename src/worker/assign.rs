//! Which of the worker's GPUs each running task holds. A task that asks
//! for gpu=N is given N GPUs that no other running task holds, the lowest
//! indices first, and gives them back when its command has ended, before
//! its completion is reported (so that the cluster, which then counts
//! them free, never leases a task the worker cannot seat).

use std::collections::BTreeMap;

use crate::proto::v1::AssignedGpu;

/// Who holds GPUs: a task's run under one lease, as (task id, fencing
/// token). A task leased to this worker again (its old lease expired while
/// the old run is still being stopped) is another holder: the old run's
/// GPUs are not the new run's until the old run gives them back.
pub type Holder = (u64, u64);

/// The worker's GPUs: free ones by index, held ones by holder.
#[derive(Debug, Default)]
pub struct GpuPool {
    free: BTreeMap<u32, AssignedGpu>,
    held: BTreeMap<Holder, Vec<AssignedGpu>>,
}

impl GpuPool {
    pub fn new(devices: Vec<AssignedGpu>) -> Self {
        Self {
            free: devices.into_iter().map(|d| (d.index, d)).collect(),
            held: BTreeMap::new(),
        }
    }

    /// Gives `holder` `n` free GPUs; `None` (and nothing taken) when fewer
    /// are free. A holder that already holds some keeps those.
    pub fn take(&mut self, holder: Holder, n: usize) -> Option<Vec<AssignedGpu>> {
        if let Some(held) = self.held.get(&holder) {
            return Some(held.clone());
        }
        if self.free.len() < n {
            return None;
        }
        let picked: Vec<u32> = self.free.keys().take(n).copied().collect();
        let gpus: Vec<AssignedGpu> = (picked.iter())
            .filter_map(|i| self.free.remove(i))
            .collect();
        if !gpus.is_empty() {
            self.held.insert(holder, gpus.clone());
        }
        Some(gpus)
    }

    /// Frees what `holder` holds.
    pub fn give_back(&mut self, holder: Holder) {
        for g in self.held.remove(&holder).unwrap_or_default() {
            self.free.insert(g.index, g);
        }
    }

    #[cfg(test)]
    fn free(&self) -> usize {
        self.free.len()
    }
}

/// The devices a worker may use: all of `devices`, or those of `only`
/// (`--gpus`), refusing an index the machine does not have.
pub fn restrict(
    devices: Vec<AssignedGpu>,
    only: Option<&[u32]>,
) -> Result<Vec<AssignedGpu>, String> {
    let Some(only) = only else {
        return Ok(devices);
    };
    for i in only {
        if !devices.iter().any(|d| d.index == *i) {
            let have: Vec<String> = devices.iter().map(|d| d.index.to_string()).collect();
            return Err(match have.is_empty() {
                true => format!("--gpus: no GPU {i}: this machine shows no NVIDIA GPU"),
                false => format!("--gpus: no GPU {i} (this machine has {})", have.join(",")),
            });
        }
    }
    Ok(devices
        .into_iter()
        .filter(|d| only.contains(&d.index))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn devices(n: u32) -> Vec<AssignedGpu> {
        (0..n)
            .map(|index| AssignedGpu {
                index,
                uuid: format!("GPU-{index}"),
            })
            .collect()
    }

    fn indexes(gpus: &[AssignedGpu]) -> Vec<u32> {
        gpus.iter().map(|g| g.index).collect()
    }

    #[test]
    fn tasks_get_different_gpus_and_freed_ones_are_reused() {
        let mut pool = GpuPool::new(devices(4));
        let got: Vec<Vec<u32>> = (1..=4)
            .map(|task| indexes(&pool.take((task, 1), 1).unwrap()))
            .collect();
        assert_eq!(got, vec![vec![0], vec![1], vec![2], vec![3]]);
        assert_eq!(pool.take((5, 1), 1), None, "none free");
        pool.give_back((3, 1));
        assert_eq!(indexes(&pool.take((5, 1), 1).unwrap()), vec![2]);
        // Task 1 leased again under token 2 while its old run holds GPU 0.
        assert_eq!(
            pool.take((1, 2), 1),
            None,
            "the old run's GPU is not the new run's"
        );
        pool.give_back((1, 1));
        assert_eq!(indexes(&pool.take((1, 2), 1).unwrap()), vec![0]);
    }

    #[test]
    fn a_two_gpu_task_waits_for_two() {
        let mut pool = GpuPool::new(devices(2));
        pool.take((1, 1), 1).unwrap();
        assert_eq!(pool.take((2, 1), 2), None);
        assert_eq!(pool.free(), 1, "a refused take takes nothing");
        pool.give_back((1, 1));
        assert_eq!(indexes(&pool.take((2, 1), 2).unwrap()), vec![0, 1]);
        assert_eq!(pool.take((3, 1), 0), Some(vec![]), "a task without GPUs");
        pool.give_back((3, 1));
        assert_eq!(pool.free(), 0);
    }

    #[test]
    fn restricted_to_some() {
        let only = restrict(devices(4), Some(&[0, 2])).unwrap();
        assert_eq!(indexes(&only), vec![0, 2]);
        assert_eq!(restrict(devices(2), None).unwrap().len(), 2);
        let e = restrict(devices(2), Some(&[5])).unwrap_err();
        assert!(e.contains("no GPU 5 (this machine has 0,1)"), "{e}");
        let e = restrict(vec![], Some(&[0])).unwrap_err();
        assert!(e.contains("shows no NVIDIA GPU"), "{e}");
    }
}

//! Which of the worker's GPUs each running task holds. A task that asks
//! for gpu=N is given N GPUs that no other running task holds, the lowest
//! indices first, and gives them back when its command has ended, before
//! its completion is reported (so that the cluster, which then counts
//! them free, never leases a task the worker cannot seat).

use std::collections::BTreeMap;

use crate::proto::v1::AssignedGpu;

/// The worker's GPUs: free ones by index, held ones by task.
#[derive(Debug, Default)]
pub struct GpuPool {
    free: BTreeMap<u32, AssignedGpu>,
    held: BTreeMap<u64, Vec<AssignedGpu>>,
}

impl GpuPool {
    pub fn new(devices: Vec<AssignedGpu>) -> Self {
        Self {
            free: devices.into_iter().map(|d| (d.index, d)).collect(),
            held: BTreeMap::new(),
        }
    }

    /// Gives `task` `n` free GPUs; `None` (and nothing taken) when fewer
    /// are free. A task that already holds some keeps those.
    pub fn take(&mut self, task: u64, n: usize) -> Option<Vec<AssignedGpu>> {
        if let Some(held) = self.held.get(&task) {
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
            self.held.insert(task, gpus.clone());
        }
        Some(gpus)
    }

    /// Frees what `task` holds.
    pub fn give_back(&mut self, task: u64) {
        for g in self.held.remove(&task).unwrap_or_default() {
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
            .map(|task| indexes(&pool.take(task, 1).unwrap()))
            .collect();
        assert_eq!(got, vec![vec![0], vec![1], vec![2], vec![3]]);
        assert_eq!(pool.take(5, 1), None, "none free");
        pool.give_back(3);
        assert_eq!(indexes(&pool.take(5, 1).unwrap()), vec![2]);
    }

    #[test]
    fn a_two_gpu_task_waits_for_two() {
        let mut pool = GpuPool::new(devices(2));
        pool.take(1, 1).unwrap();
        assert_eq!(pool.take(2, 2), None);
        assert_eq!(pool.free(), 1, "a refused take takes nothing");
        pool.give_back(1);
        assert_eq!(indexes(&pool.take(2, 2).unwrap()), vec![0, 1]);
        assert_eq!(pool.take(3, 0), Some(vec![]), "a task without GPUs");
        pool.give_back(3);
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

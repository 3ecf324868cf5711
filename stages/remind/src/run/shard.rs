//! `--shard K/N`: which contiguous slice of the items one job of N handles. K and N
//! default from Slurm array variables, so the same command line works as an array task.

use std::fmt;
use std::ops::Range;
use std::str::FromStr;

use anyhow::{anyhow, bail, ensure, Context, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// 0-based index of this job.
    pub index: usize,
    /// Number of jobs.
    pub count: usize,
}

impl Shard {
    pub const WHOLE: Shard = Shard { index: 0, count: 1 };

    pub fn new(index: usize, count: usize) -> Result<Self> {
        ensure!(count >= 1, "shard count must be at least 1");
        ensure!(
            index < count,
            "shard index {index} out of range for {count} shards (K is 0-based)"
        );
        Ok(Self { index, count })
    }

    /// The explicit `--shard` value when given, else Slurm's array variables when set,
    /// else the whole input.
    pub fn resolve(flag: Option<Shard>) -> Result<Shard> {
        if let Some(s) = flag {
            return Ok(s);
        }
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        match (var("SLURM_ARRAY_TASK_ID"), var("SLURM_ARRAY_TASK_COUNT")) {
            (Some(k), Some(n)) => {
                let k: usize = k
                    .parse()
                    .with_context(|| format!("SLURM_ARRAY_TASK_ID='{k}' is not a number"))?;
                let n: usize = n
                    .parse()
                    .with_context(|| format!("SLURM_ARRAY_TASK_COUNT='{n}' is not a number"))?;
                // Arrays submitted as --array=1-N are 1-based; accept both.
                let min = var("SLURM_ARRAY_TASK_MIN")
                    .and_then(|m| m.parse::<usize>().ok())
                    .unwrap_or(0);
                Shard::new(
                    k.checked_sub(min)
                        .ok_or_else(|| anyhow!("array task {k} below minimum {min}"))?,
                    n,
                )
            }
            _ => Ok(Shard::WHOLE),
        }
    }

    /// The contiguous item range of this shard among `len` items.
    pub fn range(&self, len: usize) -> Range<usize> {
        let start = len * self.index / self.count;
        let end = len * (self.index + 1) / self.count;
        start..end
    }

    /// File name of this shard's part in a dataset folder.
    pub fn part_name(&self) -> String {
        format!("part-{:05}-of-{:05}.arrow", self.index, self.count)
    }

    /// Parses a part file name back into its shard.
    pub fn from_part_name(name: &str) -> Option<Shard> {
        let rest = name.strip_prefix("part-")?.strip_suffix(".arrow")?;
        let (k, n) = rest.split_once("-of-")?;
        Shard::new(k.parse().ok()?, n.parse().ok()?).ok()
    }
}

impl FromStr for Shard {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        let Some((k, n)) = s.split_once('/') else {
            bail!("expected K/N (e.g. 0/4), found '{s}'")
        };
        let k = k
            .trim()
            .parse()
            .map_err(|_| anyhow!("shard index '{k}' is not a number"))?;
        let n = n
            .trim()
            .parse()
            .map_err(|_| anyhow!("shard count '{n}' is not a number"))?;
        Shard::new(k, n)
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_cover_items_once() {
        for n in 1..7 {
            let mut next = 0;
            for k in 0..n {
                let r = Shard::new(k, n).unwrap().range(23);
                assert_eq!(r.start, next);
                next = r.end;
            }
            assert_eq!(next, 23);
        }
        assert!("3/3".parse::<Shard>().is_err());
        assert_eq!(
            Shard::from_part_name(&Shard::new(2, 5).unwrap().part_name()),
            Some(Shard::new(2, 5).unwrap())
        );
    }
}

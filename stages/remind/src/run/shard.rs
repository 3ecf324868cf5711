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

/// The most shards a dataset may have: part names hold 5 digits, and a count read from a
/// file name or a flag is bounded before anything is sized from it (issue #12).
pub const MAX_SHARDS: usize = 99_999;

impl Shard {
    pub const WHOLE: Shard = Shard { index: 0, count: 1 };

    pub fn new(index: usize, count: usize) -> Result<Self> {
        ensure!(count >= 1, "shard count must be at least 1");
        ensure!(
            count <= MAX_SHARDS,
            "shard count {count}: at most {MAX_SHARDS} shards (part names have 5 digits)"
        );
        ensure!(
            index < count,
            "shard index {index} out of range for {count} shards (K is 0-based)"
        );
        Ok(Self { index, count })
    }

    /// The explicit `--shard` value when given, else Slurm's array variables when set,
    /// else the whole input.
    pub fn resolve(flag: Option<Shard>) -> Result<Shard> {
        Shard::resolve_with(flag, |name| std::env::var(name).ok())
    }

    /// [`Shard::resolve`] with the environment given by `env`.
    pub fn resolve_with(
        flag: Option<Shard>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Shard> {
        if let Some(s) = flag {
            return Ok(s);
        }
        let var = |name: &str| env(name).filter(|v| !v.is_empty());
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
                // A subset (--array=1,2 to redo two of three shards) or a stepped range
                // would be read as a different N: refused, the whole range is resubmitted
                // instead (finished parts are skipped).
                if let Some(max) = var("SLURM_ARRAY_TASK_MAX").and_then(|m| m.parse::<usize>().ok())
                {
                    ensure!(
                        max.checked_sub(min).map(|span| span + 1) == Some(n),
                        "the job array's task ids are not one contiguous range (min {min}, max \
                         {max}, {n} tasks), so K/N cannot be taken from it: submit the whole range \
                         --array=0-<N-1> (finished shards are skipped), or pass --shard K/N"
                    );
                }
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
    fn shard_counts_are_bounded() {
        assert!("0/18446744073709551615".parse::<Shard>().is_err());
        assert!(Shard::from_part_name("part-00000-of-18446744073709551615.arrow").is_none());
        assert_eq!("3/99999".parse::<Shard>().unwrap().count, MAX_SHARDS);
        let err = "0/100000".parse::<Shard>().unwrap_err().to_string();
        assert!(err.contains("at most 99999 shards"), "{err}");
    }

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
        assert!("1/0".parse::<Shard>().is_err());
        assert_eq!(
            Shard::from_part_name(&Shard::new(2, 5).unwrap().part_name()),
            Some(Shard::new(2, 5).unwrap())
        );
    }

    fn slurm<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn slurm_array_variables_give_the_shard() {
        let s = |vars: &[(&str, &str)]| Shard::resolve_with(None, slurm(vars));
        assert_eq!(s(&[]).unwrap(), Shard::WHOLE);
        let zero_based = [
            ("SLURM_ARRAY_TASK_ID", "2"),
            ("SLURM_ARRAY_TASK_COUNT", "3"),
            ("SLURM_ARRAY_TASK_MIN", "0"),
            ("SLURM_ARRAY_TASK_MAX", "2"),
        ];
        assert_eq!(s(&zero_based).unwrap(), Shard::new(2, 3).unwrap());
        let one_based = [
            ("SLURM_ARRAY_TASK_ID", "1"),
            ("SLURM_ARRAY_TASK_COUNT", "3"),
            ("SLURM_ARRAY_TASK_MIN", "1"),
            ("SLURM_ARRAY_TASK_MAX", "3"),
        ];
        assert_eq!(s(&one_based).unwrap(), Shard::new(0, 3).unwrap());
        // The flag wins over the environment.
        let flag = Shard::new(1, 4).unwrap();
        assert_eq!(
            Shard::resolve_with(Some(flag), slurm(&zero_based)).unwrap(),
            flag
        );
        // --array=0,2 (a subset) or --array=0-4:2 (a step): K/N would be wrong; refused.
        let subset = [
            ("SLURM_ARRAY_TASK_ID", "2"),
            ("SLURM_ARRAY_TASK_COUNT", "2"),
            ("SLURM_ARRAY_TASK_MIN", "0"),
            ("SLURM_ARRAY_TASK_MAX", "2"),
        ];
        let err = s(&subset).unwrap_err().to_string();
        assert!(err.contains("not one contiguous range"), "{err}");
        let bad = [
            ("SLURM_ARRAY_TASK_ID", "x"),
            ("SLURM_ARRAY_TASK_COUNT", "3"),
        ];
        assert!(s(&bad).is_err());
    }
}

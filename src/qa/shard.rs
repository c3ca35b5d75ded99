//! `calmline score --shard I/N`: one of N parts of the input, split by conversation id, so N
//! runs — an Indexed Job's pods, each with its own `--out` — score every conversation exactly
//! once between them, and each resumes on its own. The split is a SHA-256 of the id, the same on
//! every machine and in every release (never Rust's seeded hasher).

use std::fmt;
use std::str::FromStr;

use sha2::{Digest, Sha256};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

impl Shard {
    /// Whether the record with this key (its conversation id; its file and line when it has
    /// none) belongs to this shard.
    pub fn owns(&self, key: &str) -> bool {
        let digest = Sha256::digest(key.as_bytes());
        let head = u64::from_be_bytes(digest[..8].try_into().expect("a SHA-256 digest has 32 bytes"));
        head % u64::from(self.count) == u64::from(self.index)
    }
}

impl FromStr for Shard {
    type Err = String;

    fn from_str(s: &str) -> Result<Shard, String> {
        let bad = || format!("{s:?}: expected I/N with 0 <= I < N, e.g. 0/4");
        let (index, count) = s.split_once('/').ok_or_else(bad)?;
        let (index, count): (u32, u32) = (index.trim().parse().map_err(|_| bad())?, count.trim().parse().map_err(|_| bad())?);
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(Shard { index, count })
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
    fn every_id_belongs_to_exactly_one_shard_and_the_parts_are_even() {
        let shards: Vec<Shard> = (0..4).map(|i| Shard { index: i, count: 4 }).collect();
        let mut sizes = [0usize; 4];
        for n in 0..4000 {
            let id = format!("conv-{n}");
            let owners: Vec<usize> = (0..4).filter(|&i| shards[i].owns(&id)).collect();
            assert_eq!(owners.len(), 1, "{id}");
            sizes[owners[0]] += 1;
        }
        assert!(sizes.iter().all(|&s| (850..=1150).contains(&s)), "{sizes:?}");
        // Stable across machines and releases: fixed ids land where they always did (checked
        // against Python's hashlib: int.from_bytes(sha256(id).digest()[:8], "big") % N).
        assert!(shards[2].owns("conv-hu-003") && Shard { index: 0, count: 3 }.owns("c7"));
    }

    #[test]
    fn the_option_is_parsed_strictly() {
        assert_eq!("2/5".parse::<Shard>(), Ok(Shard { index: 2, count: 5 }));
        for bad in ["5/5", "1/0", "-1/4", "1", "a/b", "1/2/3"] {
            assert!(bad.parse::<Shard>().is_err(), "{bad}");
        }
    }
}

//! Which context ids each child stream may claim.
//!
//! Every id in the tree is handed out by the master, in blocks, and each
//! block travels down one path, hop by hop (`ALLOCATE_ID` is answered by the
//! parent, which asks its own parent). Each hop records which child stream
//! a block (or a single id, for a child it started itself) went to. An
//! `ADD_ROUTE` from a child stream is honoured only for an id granted to
//! that stream, so a child can never claim the master, a parent, a sibling,
//! or an id nobody allocated.

use std::collections::{BTreeMap, HashMap};

/// Blocks one child stream's subtree may hold at a hop (each `ID_BLOCK`
/// ids): far more than any real tree needs, few enough to bound memory.
pub(crate) const MAX_BLOCKS_PER_STREAM: usize = 1024;

#[derive(Default)]
pub(crate) struct Grants {
    /// start → (end, child stream's context id); ranges never overlap.
    ranges: BTreeMap<u32, (u32, u32)>,
    blocks: HashMap<u32, usize>,
}

impl Grants {
    /// Record that ids `[start, end)` belong to the subtree behind `stream`.
    pub(crate) fn grant(&mut self, start: u32, end: u32, stream: u32) {
        if start < end {
            self.ranges.insert(start, (end, stream));
            *self.blocks.entry(stream).or_default() += 1;
        }
    }

    /// The child stream `id` was granted to, if any.
    pub(crate) fn owner(&self, id: u32) -> Option<u32> {
        let (_, &(end, stream)) = self.ranges.range(..=id).next_back()?;
        (id < end).then_some(stream)
    }

    /// How many grants `stream` holds.
    pub(crate) fn count(&self, stream: u32) -> usize {
        self.blocks.get(&stream).copied().unwrap_or(0)
    }

    /// Drop every grant of a lost stream (its ids are never handed out again).
    pub(crate) fn forget(&mut self, stream: u32) {
        self.ranges.retain(|_, (_, s)| *s != stream);
        self.blocks.remove(&stream);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_is_exact_at_block_edges() {
        let mut g = Grants::default();
        g.grant(1000, 2000, 5);
        g.grant(7, 8, 7);
        assert_eq!(g.owner(999), None);
        assert_eq!(g.owner(1000), Some(5));
        assert_eq!(g.owner(1999), Some(5));
        assert_eq!(g.owner(2000), None);
        assert_eq!(g.owner(7), Some(7));
        assert_eq!(g.owner(0), None);
        assert_eq!(g.count(5), 1);
        g.forget(5);
        assert_eq!(g.owner(1500), None);
        assert_eq!(g.count(5), 0);
    }
}
